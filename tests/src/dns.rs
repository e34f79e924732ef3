//! The cluster DNS server's configuration: dnsmasq answering as CoreDNS's kubernetes plugin does
//! for `<service>.<namespace>.svc.cluster.local` (and SRV records for a ClusterIP Service's named
//! ports), NXDOMAIN for any other name under the cluster domain, and no upstream unless the lab has
//! an outside network (then every other name is forwarded to its DNS server). A Service has an
//! A record per IPv4 ClusterIP and an AAAA per IPv6 one (headless: per ready pod address). Pure.

use std::fmt::Write as _;

use k8s_openapi::api::discovery::v1::EndpointSlice;

use crate::plan::{CLUSTER_DOMAIN, OUTSIDE_HOST_IP, OUTSIDE_NAME, Plan};

/// dnsmasq's configuration file for the lab's cluster DNS pod.
pub fn dnsmasq_conf(plan: &Plan, slices: &[EndpointSlice], objects: &[serde_json::Value]) -> String {
    let dns = plan.dns_pod();
    let listen: Vec<String> = std::iter::once(dns.ip.into())
        .chain(dns.ip6.map(std::net::IpAddr::V6))
        .map(|ip: std::net::IpAddr| ip.to_string())
        .collect();
    let mut out = format!(
        "no-resolv\nno-hosts\nno-poll\nkeep-in-foreground\nbind-interfaces\nlisten-address={}\nport=53\n\
         user=root\npid-file=\nlocal=/{CLUSTER_DOMAIN}/\nlocal-ttl=30\n",
        listen.join(",")
    );
    if let Some(upstream) = crate::outside::upstream_dns(plan) {
        let _ = writeln!(out, "server={upstream}");
    }
    for svc in &plan.services {
        let name = format!("{}.{}.svc.{CLUSTER_DOMAIN}", svc.name, svc.namespace);
        match svc.cluster_ip {
            Some(_) => {
                let ips: Vec<String> = svc.vips().iter().map(|ip| ip.to_string()).collect();
                let _ = writeln!(out, "host-record={name},{}", ips.join(","));
                // CoreDNS's SRV record for each named port: _port._proto.svc.ns.svc.<domain>.
                for port in &svc.ports {
                    if let Some(port_name) = &port.name {
                        let proto = port.protocol.as_iptables();
                        let _ = writeln!(
                            out,
                            "srv-host=_{port_name}._{proto}.{name},{name},{},0,100",
                            port.port
                        );
                    }
                }
            }
            None => {
                let mut ips: Vec<String> = slices
                    .iter()
                    .filter(|s| {
                        s.metadata.namespace.as_deref() == Some(&svc.namespace)
                            && s.metadata
                                .labels
                                .as_ref()
                                .and_then(|l| l.get("kubernetes.io/service-name"))
                                == Some(&svc.name)
                    })
                    .flat_map(|s| &s.endpoints)
                    .filter(|e| e.conditions.as_ref().and_then(|c| c.ready) != Some(false))
                    .flat_map(|e| e.addresses.iter().cloned())
                    .collect();
                ips.sort();
                ips.dedup();
                for ip in ips {
                    let _ = writeln!(out, "host-record={name},{ip}");
                }
            }
        }
    }
    // An ExternalName Service is a CNAME, as CoreDNS answers it (dnsmasq follows it to a name it
    // serves itself: another Service of the cluster).
    for obj in objects.iter().filter(|o| o["kind"] == "Service") {
        let (Some(ns), Some(name)) = (obj.pointer("/metadata/namespace"), obj.pointer("/metadata/name"))
        else {
            continue;
        };
        if obj.pointer("/spec/type").and_then(serde_json::Value::as_str) != Some("ExternalName") {
            continue;
        }
        if let Some(target) = obj
            .pointer("/spec/externalName")
            .and_then(serde_json::Value::as_str)
        {
            let (ns, name) = (ns.as_str().unwrap_or_default(), name.as_str().unwrap_or_default());
            let target = target.trim_end_matches('.');
            let _ = writeln!(out, "cname={name}.{ns}.svc.{CLUSTER_DOMAIN},{target}");
            // dnsmasq follows a CNAME only to a name it holds itself, where CoreDNS resolves the
            // target through its upstream: the outside name is held here while that upstream
            // answers it.
            if target == OUTSIDE_NAME && plan.outside_netns.is_some() && !plan.upstream_dns_down {
                let _ = writeln!(out, "host-record={OUTSIDE_NAME},{OUTSIDE_HOST_IP}");
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::objects::endpoint_slices;
    use crate::scenario::Scenario;
    use k8s_openapi::jiff::Timestamp;

    #[test]
    fn dual_stack_services_get_a_and_aaaa_and_dns_listens_on_both() {
        let s = Scenario::parse(
            "name: t\nnodes: [a]\nipFamilies: [IPv4, IPv6]\npods:\n- {namespace: db, name: d0, node: a, labels: {app: db}}\n\
             services:\n- {namespace: shop, name: pay, ports: [{port: 80}]}\n\
             - {namespace: shop, name: old, ipFamilies: [IPv4], ports: [{port: 80}]}\n\
             - {namespace: db, name: db, headless: true, selector: {app: db}, ports: [{port: 5432}]}\n",
        )
        .unwrap();
        let plan = Plan::new(&s, "nl000001", false).unwrap();
        let conf = dnsmasq_conf(
            &plan,
            &endpoint_slices(&s, &plan, Timestamp::UNIX_EPOCH).unwrap(),
            &s.objects,
        );
        let records: Vec<&str> = conf.lines().filter(|l| l.starts_with("host-record=")).collect();
        assert_eq!(
            records,
            [
                "host-record=kube-dns.kube-system.svc.cluster.local,10.96.0.10,fd00:10:96::a",
                "host-record=pay.shop.svc.cluster.local,10.96.1.1,fd00:10:96::101",
                "host-record=old.shop.svc.cluster.local,10.96.1.2",
                "host-record=db.db.svc.cluster.local,10.244.1.2",
                "host-record=db.db.svc.cluster.local,fd00:10:244:1::2",
            ]
        );
        assert!(
            conf.contains("listen-address=10.244.1.3,fd00:10:244:1::3\n"),
            "{conf}"
        );
    }

    #[test]
    fn services_resolve_to_cluster_ip_and_headless_ones_to_ready_pod_ips() {
        let s = Scenario::parse(
            "name: t\nnodes: [a]\npods:\n- {namespace: db, name: d0, node: a, labels: {app: db}}\n\
             - {namespace: db, name: d1, node: a, labels: {app: db}, ready: false}\n\
             services:\n- {namespace: shop, name: pay, ports: [{port: 80}]}\n\
             - {namespace: db, name: db, headless: true, selector: {app: db}, ports: [{port: 5432}]}\n",
        )
        .unwrap();
        let plan = Plan::new(&s, "nl000001", false).unwrap();
        let conf = dnsmasq_conf(
            &plan,
            &endpoint_slices(&s, &plan, Timestamp::UNIX_EPOCH).unwrap(),
            &s.objects,
        );
        let records: Vec<&str> = conf.lines().filter(|l| l.starts_with("host-record=")).collect();
        assert_eq!(
            records,
            [
                "host-record=kube-dns.kube-system.svc.cluster.local,10.96.0.10",
                "host-record=pay.shop.svc.cluster.local,10.96.1.1",
                "host-record=db.db.svc.cluster.local,10.244.1.2",
            ]
        );
        assert!(
            conf.contains(
                "srv-host=_dns._udp.kube-dns.kube-system.svc.cluster.local,kube-dns.kube-system.svc.cluster.local,53,0,100\n"
            ),
            "{conf}"
        );
        assert!(
            !conf.contains("srv-host=_._"),
            "unnamed ports get no SRV record: {conf}"
        );
        assert!(
            conf.contains("local=/cluster.local/\n"),
            "unknown cluster names must be NXDOMAIN"
        );
        assert!(conf.contains("no-resolv\n"), "no upstream");
        assert!(conf.contains(&format!("listen-address={}\n", plan.dns_pod().ip)));
    }

    #[test]
    fn an_external_name_service_is_a_cname() {
        let s = Scenario::parse(
            "name: t\nnodes: [a]\nservices:\n- {namespace: shop, name: pay, ports: [{port: 80}]}\n\
             objects:\n- {apiVersion: v1, kind: Service, metadata: {name: pay, namespace: web},\n\
             \x20 spec: {type: ExternalName, externalName: pay.shop.svc.cluster.local.}}\n",
        )
        .unwrap();
        let plan = Plan::new(&s, "nl000001", false).unwrap();
        let conf = dnsmasq_conf(
            &plan,
            &endpoint_slices(&s, &plan, Timestamp::UNIX_EPOCH).unwrap(),
            &s.objects,
        );
        assert!(
            conf.contains("cname=pay.web.svc.cluster.local,pay.shop.svc.cluster.local\n"),
            "{conf}"
        );
    }
}
