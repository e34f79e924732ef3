//! The planner's rules with snapshots built by hand: what each target designates and which
//! agent gets which probe.

use k8s_openapi::api::core::v1::{Pod, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use serde_json::json;

use super::*;

fn mk_pod(ns: &str, name: &str, node: &str, ip: &str, labels: serde_json::Value, ready: bool) -> Pod {
    serde_json::from_value(json!({
        "metadata": {"namespace": ns, "name": name, "labels": labels},
        "spec": {"nodeName": node, "containers": [{"name": "app",
                 "ports": [{"name": "http", "containerPort": 8080}]}]},
        "status": {"phase": "Running", "podIP": ip,
                   "conditions": [{"type": "Ready", "status": if ready { "True" } else { "False" }}]}
    }))
    .unwrap()
}

fn mk_service(ns: &str, name: &str, cluster_ip: &str, ports: serde_json::Value) -> Service {
    serde_json::from_value(json!({
        "metadata": {"namespace": ns, "name": name},
        "spec": {"clusterIP": cluster_ip, "selector": {"app": name}, "ports": ports}
    }))
    .unwrap()
}

fn mk_slice(
    ns: &str,
    service: &str,
    ports: serde_json::Value,
    endpoints: serde_json::Value,
) -> EndpointSlice {
    serde_json::from_value(json!({
        "metadata": {"namespace": ns, "name": format!("{service}-x1"),
                     "labels": {"kubernetes.io/service-name": service}},
        "addressType": "IPv4", "ports": ports, "endpoints": endpoints
    }))
    .unwrap()
}

fn endpoint(ip: &str, pod: &str, conditions: serde_json::Value) -> serde_json::Value {
    json!({"addresses": [ip], "conditions": conditions,
           "targetRef": {"kind": "Pod", "name": pod}})
}

/// shop/checkout on node-a; payments-0 (node-b, ready), payments-1 (node-a, not ready) behind
/// svc/payments; one CoreDNS pod behind kube-dns.
fn shop() -> Snapshot {
    let pods = vec![
        mk_pod(
            "shop",
            "checkout",
            "node-a",
            "10.244.1.2",
            json!({"app": "checkout"}),
            true,
        ),
        mk_pod(
            "shop",
            "payments-0",
            "node-b",
            "10.244.2.2",
            json!({"app": "payments"}),
            true,
        ),
        mk_pod(
            "shop",
            "payments-1",
            "node-a",
            "10.244.1.3",
            json!({"app": "payments"}),
            false,
        ),
        mk_pod(
            "kube-system",
            "coredns-0",
            "node-b",
            "10.244.2.53",
            json!({"app": "kube-dns"}),
            true,
        ),
    ];
    let services = vec![
        mk_service(
            "shop",
            "payments",
            "10.96.1.1",
            json!([{"name": "http", "port": 80, "targetPort": "http"}]),
        ),
        mk_service(
            "kube-system",
            "kube-dns",
            "10.96.0.10",
            json!([{"name": "dns", "port": 53, "protocol": "UDP"}]),
        ),
    ];
    let slices = vec![
        mk_slice(
            "shop",
            "payments",
            json!([{"name": "http", "port": 8080, "protocol": "TCP"}]),
            json!([
                endpoint("10.244.2.2", "payments-0", json!({"ready": true})),
                endpoint("10.244.1.3", "payments-1", json!({"ready": false}))
            ]),
        ),
        mk_slice(
            "kube-system",
            "kube-dns",
            json!([{"name": "dns", "port": 53, "protocol": "UDP"}]),
            json!([endpoint("10.244.2.53", "coredns-0", json!({"ready": true}))]),
        ),
    ];
    Snapshot {
        pods: Fact::Known(pods),
        services: Fact::Known(services),
        slices: Fact::Known(slices),
        namespaces: Fact::Known(vec![]),
        policies: Fact::Known(vec![]),
        admin: Fact::Known(Default::default()),
        cluster_dns_unread: None,
        ..Snapshot::unread(crate::cluster::ToolFailure::NotProbed(String::new()))
    }
}

fn request(to: &str) -> CheckRequest {
    CheckRequest {
        from: NamespacedName::new("shop", "checkout"),
        target: to.parse().unwrap(),
        target_namespace: "shop".into(),
        to_text: to.into(),
        timeout: Duration::from_secs(1),
    }
}

/// The planned probes other than the datapath witnesses (planned alongside, tested apart).
fn keys(plan: &CheckPlan) -> Vec<(ProbeKey, &str, String)> {
    plan.probes
        .iter()
        .filter(|p| !is_witness(&p.key))
        .map(|p| {
            let run_in = match p.run_in {
                RunIn::Pod(ip) => ip.to_string(),
                RunIn::Node => "node".to_string(),
            };
            (p.key, p.node.as_str(), run_in)
        })
        .collect()
}

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

#[test]
fn a_service_target_probes_dns_the_vip_and_each_ready_endpoint_from_the_source_and_listeners_on_their_node() {
    let plan = plan(&shop(), &request("svc/payments:80"));
    assert_eq!(plan.dns.as_ref().map(|d| d.name.as_str()), Some("payments.shop"));
    assert_eq!(
        keys(&plan),
        [
            (ProbeKey::Resolve, "node-a", "10.244.1.2".into()),
            (
                ProbeKey::DirectDns(ip("10.244.2.53")),
                "node-a",
                "10.244.1.2".into()
            ),
            (ProbeKey::ClusterIp, "node-a", "10.244.1.2".into()),
            (
                ProbeKey::Endpoint(ip("10.244.2.2"), 8080),
                "node-a",
                "10.244.1.2".into()
            ),
            (ProbeKey::Listeners(ip("10.244.2.2")), "node-b", "node".into()),
        ]
    );
    assert_eq!(plan.destination.expected_dns, [ip("10.96.1.1")]);
    assert!(!plan.follow_dns);
}

#[test]
fn the_path_mtu_is_measured_once_per_destination_node_to_its_lowest_address() {
    let mut snap = shop();
    let Fact::Known(pods) = &mut snap.pods else {
        unreachable!()
    };
    pods.push(mk_pod(
        "shop",
        "payments-2",
        "node-b",
        "10.244.2.9",
        json!({"app": "payments"}),
        true,
    ));
    pods.push(mk_pod(
        "shop",
        "payments-3",
        "node-b",
        "10.244.2.1",
        json!({"app": "payments"}),
        true,
    ));
    pods.push(mk_pod(
        "shop",
        "payments-4",
        "node-c",
        "10.244.3.7",
        json!({"app": "payments"}),
        true,
    ));
    let Fact::Known(slices) = &mut snap.slices else {
        unreachable!()
    };
    slices[0] = mk_slice(
        "shop",
        "payments",
        json!([{"name": "http", "port": 8080, "protocol": "TCP"}]),
        json!([
            endpoint("10.244.2.2", "payments-0", json!({"ready": true})),
            endpoint("10.244.2.9", "payments-2", json!({"ready": true})),
            endpoint("10.244.2.1", "payments-3", json!({"ready": true})),
            endpoint("10.244.3.7", "payments-4", json!({"ready": true}))
        ]),
    );
    let plan = plan(&snap, &request("svc/payments:80"));
    let mut measured: Vec<IpAddr> = plan
        .probes
        .iter()
        .filter_map(|p| match p.key {
            ProbeKey::PathMtu(ip, _) => Some(ip),
            _ => None,
        })
        .collect();
    measured.sort();
    assert_eq!(measured, [ip("10.244.2.1"), ip("10.244.3.7")]);
    // Every destination pod still gets its capture.
    let captures = plan
        .probes
        .iter()
        .filter(|p| matches!(p.key, ProbeKey::Capture(_)))
        .count();
    assert_eq!(captures, 4);
}

#[test]
fn witnesses_ride_along_mtu_and_dataplane_at_the_source_capture_at_each_destination_pod() {
    let plan = plan(&shop(), &request("svc/payments:80"));
    let witnesses: Vec<(ProbeKey, &str, String)> = plan
        .probes
        .iter()
        .filter(|p| is_witness(&p.key))
        .map(|p| {
            let run_in = match p.run_in {
                RunIn::Pod(ip) => ip.to_string(),
                RunIn::Node => "node".to_string(),
            };
            (p.key, p.node.as_str(), run_in)
        })
        .collect();
    assert_eq!(
        witnesses,
        [
            (
                ProbeKey::PathMtu(ip("10.244.2.2"), 8080),
                "node-a",
                "10.244.1.2".into()
            ),
            (ProbeKey::Capture(ip("10.244.2.2")), "node-b", "node".into()),
            (ProbeKey::NodeDataplane, "node-a", "10.244.1.2".into()),
        ]
    );
    let capture = plan
        .probes
        .iter()
        .find(|p| p.key == ProbeKey::Capture(ip("10.244.2.2")));
    let Some(Probe::Capture(c)) = capture.map(|p| &p.probe) else {
        panic!("no capture planned")
    };
    // The capture starts at the witness grace at the earliest and watches past the TCP probe's
    // timeout.
    assert_eq!((c.peer, c.port), (ip("10.244.1.2"), 8080));
    let grace_ms = request("svc/payments:80").witness_grace().as_millis() as u64;
    assert!(
        grace_ms > 0 && grace_ms + c.duration_ms > 1000,
        "{grace_ms} + {}",
        c.duration_ms
    );
    let dataplane = plan.probes.iter().find(|p| p.key == ProbeKey::NodeDataplane);
    let Some(Probe::NodeDataplane(d)) = dataplane.map(|p| &p.probe) else {
        panic!("no dataplane probe planned")
    };
    assert_eq!(
        d.service.as_ref().map(|s| (s.ip, s.port)),
        Some((ip("10.96.1.1"), 80))
    );
}

#[test]
fn with_no_ready_endpoint_the_serving_terminating_ones_are_probed_as_kube_proxy_uses_them() {
    let mut snap = shop();
    if let Fact::Known(slices) = &mut snap.slices {
        slices[0] = mk_slice(
            "shop",
            "payments",
            json!([{"name": "http", "port": 8080, "protocol": "TCP"}]),
            json!([
                endpoint(
                    "10.244.2.2",
                    "payments-0",
                    json!({"ready": false, "serving": true, "terminating": true})
                ),
                endpoint(
                    "10.244.1.3",
                    "payments-1",
                    json!({"ready": false, "serving": false, "terminating": true})
                )
            ]),
        );
    }
    let plan = plan(&snap, &request("svc/payments:80"));
    let endpoints: Vec<ProbeKey> = plan
        .probes
        .iter()
        .map(|p| p.key)
        .filter(|k| matches!(k, ProbeKey::Endpoint(..)))
        .collect();
    assert_eq!(endpoints, [ProbeKey::Endpoint(ip("10.244.2.2"), 8080)]);
}

#[test]
fn a_name_the_api_ties_to_no_service_is_resolved_first_and_followed_to_the_address() {
    let snap = shop();
    let req = request("db.example.internal:5432");
    let first = plan(&snap, &req);
    assert!(first.follow_dns);
    assert_eq!(first.destination.destination, Destination::External);
    assert!(
        first
            .probes
            .iter()
            .all(|p| matches!(p.key, ProbeKey::Resolve | ProbeKey::DirectDns(_)))
    );

    let (dest, probes) = follow_resolved(&snap, &req, &first, ip("10.244.2.2")).unwrap();
    assert_eq!(dest.destination, Destination::Pod);
    assert!(
        probes
            .iter()
            .any(|p| p.key == ProbeKey::Endpoint(ip("10.244.2.2"), 5432))
    );

    let (dest, _) = follow_resolved(&snap, &req, &first, ip("10.96.1.1")).unwrap();
    assert_eq!(dest.destination, Destination::Service);
    assert_eq!(dest.cluster_ip, None, "the Service has no port 5432");
}

#[test]
fn a_host_name_that_designates_an_existing_service_is_planned_as_that_service() {
    let plan = plan(&shop(), &request("payments.shop.svc.cluster.local:80"));
    assert!(!plan.follow_dns);
    assert_eq!(plan.destination.cluster_ip, Some((ip("10.96.1.1"), 80)));
}

#[test]
fn a_udp_service_port_is_probed_with_datagrams_carrying_a_dns_query_on_53() {
    let plan = plan(&shop(), &request("svc/kube-dns.kube-system:53"));
    assert_eq!(plan.destination.not_probed, None);
    assert_eq!(plan.destination.live, LiveProbe::Udp(UdpPayload::DnsQuery));
    let udp: Vec<(ProbeKey, IpAddr)> = plan
        .probes
        .iter()
        .filter_map(|p| match &p.probe {
            Probe::Udp(u) => Some((p.key, u.ip)),
            _ => None,
        })
        .collect();
    assert_eq!(
        udp,
        vec![
            (ProbeKey::ClusterIp, ip("10.96.0.10")),
            (ProbeKey::Endpoint(ip("10.244.2.53"), 53), ip("10.244.2.53"))
        ]
    );
    assert!(
        !plan
            .probes
            .iter()
            .any(|p| matches!(p.key, ProbeKey::PathMtu(..) | ProbeKey::Capture(_))),
        "the TCP-only witnesses are not planned for a UDP port"
    );
    let rules = plan.probes.iter().find_map(|p| match &p.probe {
        Probe::NodeDataplane(d) => d.service.clone(),
        _ => None,
    });
    assert_eq!(rules.map(|r| r.protocol), Some(Transport::Udp));
}

#[test]
fn a_port_served_over_udp_and_tcp_is_checked_over_the_protocol_the_target_names() {
    let mut snap = shop();
    if let Fact::Known(services) = &mut snap.services {
        services[1] = mk_service(
            "kube-system",
            "kube-dns",
            "10.96.0.10",
            json!([{"name": "dns", "port": 53, "protocol": "UDP"},
                   {"name": "dns-tcp", "port": 53, "protocol": "TCP"}]),
        );
    }
    assert_eq!(
        plan(&snap, &request("svc/kube-dns.kube-system:53"))
            .destination
            .live,
        LiveProbe::Tcp
    );
    let udp = plan(&snap, &request("svc/kube-dns.kube-system:53/udp"));
    assert_eq!(udp.destination.live, LiveProbe::Udp(UdpPayload::DnsQuery));
    let ServiceFacts::Found(svc) = &udp.destination.service else {
        panic!("{:?}", udp.destination.service)
    };
    assert_eq!(svc.requested_port().map(|p| p.protocol), Some(Protocol::Udp));
}

#[test]
fn an_sctp_service_port_is_not_probed_and_says_why() {
    let mut snap = shop();
    if let Fact::Known(services) = &mut snap.services {
        services.push(mk_service(
            "shop",
            "signal",
            "10.96.1.9",
            json!([{"port": 3868, "protocol": "SCTP"}]),
        ));
    }
    let plan = plan(&snap, &request("svc/signal:3868"));
    assert_eq!(
        plan.destination.not_probed.as_deref(),
        Some("SCTP port 3868: netdiag probes TCP and UDP only")
    );
    assert!(
        !plan
            .probes
            .iter()
            .any(|p| matches!(p.key, ProbeKey::ClusterIp | ProbeKey::Endpoint(..)))
    );
}

#[test]
fn a_source_that_is_not_running_gets_no_probes() {
    let mut snap = shop();
    if let Fact::Known(pods) = &mut snap.pods {
        pods[0].status.as_mut().unwrap().phase = Some("Pending".into());
    }
    assert!(plan(&snap, &request("svc/payments:80")).probes.is_empty());
}

#[test]
fn with_nothing_to_probe_the_agent_is_still_asked_to_find_the_source_netns() {
    let plan = plan(&shop(), &request("pod/payments-9:8080"));
    assert_eq!(
        plan.destination.missing_pod,
        Some(NamespacedName::new("shop", "payments-9"))
    );
    assert_eq!(keys(&plan), [(ProbeKey::Netns, "node-a", "10.244.1.2".into())]);
}

#[test]
fn a_pod_target_resolves_a_named_port_on_a_native_sidecar() {
    let mut snap = shop();
    let sidecar: Pod = serde_json::from_value(json!({
        "metadata": {"namespace": "shop", "name": "meshed-0", "labels": {"app": "meshed"}},
        "spec": {"nodeName": "node-b", "containers": [{"name": "app"}],
                 "initContainers": [{"name": "proxy", "restartPolicy": "Always",
                                     "ports": [{"name": "admin", "containerPort": 15000}]}]},
        "status": {"phase": "Running", "podIP": "10.244.2.9"}
    }))
    .unwrap();
    if let Fact::Known(pods) = &mut snap.pods {
        pods.push(sidecar);
    }
    let plan = plan(&snap, &request("pod/meshed-0:admin"));
    assert!(
        plan.probes
            .iter()
            .any(|p| p.key == ProbeKey::Endpoint(ip("10.244.2.9"), 15000))
    );
}

#[test]
fn an_address_that_is_a_cluster_ip_is_planned_as_its_service() {
    let plan = plan(&shop(), &request("10.96.1.1:80"));
    assert_eq!(plan.destination.destination, Destination::Service);
    assert!(plan.dns.is_none());
    assert!(plan.probes.iter().any(|p| p.key == ProbeKey::ClusterIp));
}

#[test]
fn unreadable_services_leave_the_service_and_endpoints_unknown_with_the_failure() {
    let mut snap = shop();
    let failure = ToolFailure::Forbidden {
        action: "list services in all namespaces".into(),
        message: "no".into(),
        access: None,
    };
    snap.services = Fact::Unknown(failure.clone());
    let plan = plan(&snap, &request("svc/payments:80"));
    assert_eq!(plan.destination.service, ServiceFacts::Unknown(failure.clone()));
    assert_eq!(plan.destination.endpoints, Fact::Unknown(failure));
}

#[test]
fn service_names_follow_the_cluster_naming_rules() {
    let key = |ns, name| Some(NamespacedName::new(ns, name));
    assert_eq!(service_guess("payments", "web"), key("web", "payments"));
    assert_eq!(service_guess("payments.shop", "web"), key("shop", "payments"));
    assert_eq!(service_guess("payments.shop.svc", "web"), key("shop", "payments"));
    assert_eq!(
        service_guess("payments.shop.svc.cluster.local.", "web"),
        key("shop", "payments")
    );
    assert_eq!(service_guess("www.example.com", "web"), None);
}

#[test]
fn an_address_outside_the_pods_gets_a_watch_of_the_source_nodes_uplink_instead_of_a_capture() {
    let planned = plan(&shop(), &request("198.51.100.10:443"));
    let witnesses: Vec<(ProbeKey, &str, RunIn)> = planned
        .probes
        .iter()
        .filter(|p| is_witness(&p.key))
        .map(|p| (p.key, p.node.as_str(), p.run_in))
        .collect();
    assert_eq!(
        witnesses,
        [
            (
                ProbeKey::PathMtu(ip("198.51.100.10"), 443),
                "node-a",
                RunIn::Pod(ip("10.244.1.2"))
            ),
            (ProbeKey::Egress(ip("198.51.100.10")), "node-a", RunIn::Node),
            (ProbeKey::NodeDataplane, "node-a", RunIn::Pod(ip("10.244.1.2"))),
        ]
    );
    let egress = planned
        .probes
        .iter()
        .find(|p| matches!(p.key, ProbeKey::Egress(_)))
        .unwrap();
    let Probe::Egress(e) = &egress.probe else {
        panic!("not an egress watch: {:?}", egress.probe)
    };
    assert_eq!(
        (e.pod_ip, e.ip, e.port),
        (ip("10.244.1.2"), ip("198.51.100.10"), 443)
    );
    // Speculative, as a capture is: only a lost connection to the address makes it needed.
    assert_eq!(explains(egress), Some(ip("198.51.100.10")));
    // A pod destination gets none.
    let to_service = plan(&shop(), &request("svc/payments:80"));
    assert!(
        !to_service
            .probes
            .iter()
            .any(|p| matches!(p.key, ProbeKey::Egress(_)))
    );
}

/// Planning for IPv6 and dual-stack targets.
#[path = "plan_family_tests.rs"]
mod family;

/// Whether a probe is one of the datapath witnesses (they ride along with the TCP probes).
fn is_witness(key: &ProbeKey) -> bool {
    matches!(
        key,
        ProbeKey::PathMtu(..) | ProbeKey::Capture(_) | ProbeKey::Egress(_) | ProbeKey::NodeDataplane
    )
}

/// `shop()` with ExternalName Services in namespace web: one aliasing shop/payments, one for a
/// host outside the cluster.
fn with_aliases() -> Snapshot {
    let mut snap = shop();
    if let Fact::Known(services) = &mut snap.services {
        for (name, host) in [
            ("payments-alias", "payments.shop.svc.cluster.local."),
            ("billing", "billing.example.com"),
        ] {
            services.push(
                serde_json::from_value(json!({
                    "metadata": {"namespace": "web", "name": name},
                    "spec": {"type": "ExternalName", "externalName": host}
                }))
                .unwrap(),
            );
        }
    }
    snap
}

#[test]
fn an_external_name_alias_for_a_cluster_service_is_planned_as_that_service() {
    let aliased = plan(&with_aliases(), &request("svc/payments-alias.web:80"));
    let ServiceFacts::Found(svc) = &aliased.destination.service else {
        panic!("{:?}", aliased.destination.service)
    };
    assert_eq!(svc.key(), NamespacedName::new("shop", "payments"));
    let alias = svc.alias_of.as_ref().expect("the alias is said");
    assert_eq!(alias.service, NamespacedName::new("web", "payments-alias"));
    assert_eq!(aliased.destination.cluster_ip, Some((ip("10.96.1.1"), 80)));
    assert_eq!(aliased.destination.expected_dns, vec![ip("10.96.1.1")]);
    assert!(
        keys(&aliased)
            .iter()
            .any(|(k, _, _)| *k == ProbeKey::Endpoint(ip("10.244.2.2"), 8080))
    );
    // The name still resolved is the alias's, as the client asks it.
    assert_eq!(aliased.dns.as_ref().unwrap().name, "payments-alias.web");
    // A host outside the cluster stays an ExternalName until its name resolves.
    let external = plan(&with_aliases(), &request("svc/billing.web:80"));
    let ServiceFacts::Found(svc) = &external.destination.service else {
        panic!()
    };
    assert_eq!(svc.external_name.as_deref(), Some("billing.example.com"));
    assert!(external.follow_dns);
    assert_eq!(in_cluster_alias("billing.example.com"), None);
    assert_eq!(
        in_cluster_alias("payments.shop.svc"),
        Some(NamespacedName::new("shop", "payments"))
    );
}

#[test]
fn an_external_name_for_an_outside_host_is_followed_to_the_address_its_name_resolved_to() {
    let snap = with_aliases();
    let req = request("svc/billing.web:443");
    let first = plan(&snap, &req);
    assert!(first.follow_dns);
    let (dest, probes) = follow_resolved(&snap, &req, &first, ip("198.51.100.10")).expect("followed");
    // Still the ExternalName Service, now with the host's address as its one destination.
    assert_eq!(dest.destination, Destination::Service);
    let ServiceFacts::Found(svc) = &dest.service else {
        panic!("{:?}", dest.service)
    };
    assert_eq!(svc.key(), NamespacedName::new("web", "billing"));
    let Fact::Known(endpoints) = &dest.endpoints else {
        panic!("{:?}", dest.endpoints)
    };
    assert_eq!(
        endpoints.iter().map(|e| (e.ip, e.port)).collect::<Vec<_>>(),
        [(ip("198.51.100.10"), Some(443))]
    );
    let keys: Vec<ProbeKey> = probes.iter().map(|p| p.key).collect();
    assert!(
        keys.contains(&ProbeKey::Endpoint(ip("198.51.100.10"), 443)),
        "{keys:?}"
    );
    assert!(keys.contains(&ProbeKey::Egress(ip("198.51.100.10"))), "{keys:?}");
    // A named port an ExternalName Service does not declare has no number to connect to.
    let named = request("svc/billing.web:https");
    assert!(!plan(&snap, &named).follow_dns);
    // The same Service named as a host is followed the same way.
    let as_host = request("billing.web.svc.cluster.local:443");
    let first = plan(&snap, &as_host);
    assert!(first.follow_dns);
    let (dest, _) = follow_resolved(&snap, &as_host, &first, ip("198.51.100.10")).expect("followed");
    assert!(
        matches!(&dest.service, ServiceFacts::Found(svc) if svc.key() == NamespacedName::new("web", "billing"))
    );
}

#[test]
fn a_udp_port_of_an_external_name_is_followed_over_udp() {
    let mut snap = with_aliases();
    if let Fact::Known(services) = &mut snap.services {
        services.push(
            serde_json::from_value(json!({
                "metadata": {"namespace": "web", "name": "syslog"},
                "spec": {"type": "ExternalName", "externalName": "logs.example.com",
                         "ports": [{"name": "syslog", "port": 514, "protocol": "UDP"}]}
            }))
            .unwrap(),
        );
    }
    let req = request("svc/syslog.web:514");
    let first = plan(&snap, &req);
    assert!(first.follow_dns);
    let (dest, probes) = follow_resolved(&snap, &req, &first, ip("198.51.100.20")).expect("followed");
    assert_eq!(dest.protocol(), Protocol::Udp);
    assert!(
        probes.iter().any(
            |p| p.key == ProbeKey::Endpoint(ip("198.51.100.20"), 514) && matches!(p.probe, Probe::Udp(_))
        ),
        "{probes:?}"
    );
    // The uplink watch reads TCP segments: a UDP port gets none.
    assert!(!probes.iter().any(|p| matches!(p.key, ProbeKey::Egress(_))));
}

#[test]
fn a_two_label_host_is_a_service_guess_only_when_its_namespace_exists() {
    let outside = plan(&shop(), &request("example.com:443"));
    assert_eq!(outside.dns.as_ref().unwrap().service_guess, None);
    let mut snap = shop();
    snap.namespaces = Fact::Known(vec![
        serde_json::from_value(json!({"metadata": {"name": "com"}})).unwrap(),
    ]);
    let guessed = plan(&snap, &request("example.com:443"));
    assert_eq!(
        guessed.dns.as_ref().unwrap().service_guess,
        Some(NamespacedName::new("com", "example"))
    );
    // Namespaces that could not be read leave the guess standing.
    snap.namespaces = Fact::Unknown(crate::cluster::ToolFailure::NotProbed(String::new()));
    assert!(
        plan(&snap, &request("example.com:443"))
            .dns
            .unwrap()
            .service_guess
            .is_some()
    );
}

/// `shop()` with svc/payments a LoadBalancer (node port 30080, ingress 203.0.113.7), node-a at
/// 172.18.0.2 (checkout's hostIP) and node-b at 172.18.0.3 (its Node's address).
fn with_node_ports(external_traffic_policy: &str) -> Snapshot {
    let mut snap = shop();
    let Fact::Known(services) = &mut snap.services else {
        unreachable!()
    };
    services[0] = serde_json::from_value(json!({
        "metadata": {"namespace": "shop", "name": "payments"},
        "spec": {"type": "LoadBalancer", "clusterIP": "10.96.1.1", "selector": {"app": "payments"},
                 "externalTrafficPolicy": external_traffic_policy, "healthCheckNodePort": 32100,
                 "ports": [{"name": "http", "port": 80, "targetPort": "http", "nodePort": 30080}]},
        "status": {"loadBalancer": {"ingress": [{"ip": "203.0.113.7"}]}}
    }))
    .unwrap();
    let Fact::Known(pods) = &mut snap.pods else {
        unreachable!()
    };
    pods[0].status.as_mut().unwrap().host_ip = Some("172.18.0.2".into());
    // node-b's address from the Nodes; node-a's from a pod's status.hostIP.
    snap.node_addresses
        .insert("node-b".into(), vec![ip("172.18.0.3")]);
    snap
}

#[test]
fn a_node_address_with_a_node_port_is_planned_as_that_service_entered_on_that_node() {
    let plan = plan(&with_node_ports("Cluster"), &request("172.18.0.3:30080"));
    let ServiceFacts::Found(svc) = &plan.destination.service else {
        panic!("{:?}", plan.destination.service)
    };
    assert_eq!((svc.namespace.as_str(), svc.name.as_str()), ("shop", "payments"));
    assert_eq!(svc.requested, PortRef::Number(80));
    assert_eq!(
        svc.entry,
        Some(ServiceEntry::NodePort {
            node: "node-b".into(),
            address: ip("172.18.0.3"),
            node_port: 30080
        })
    );
    assert_eq!(svc.health_check_node_port, Some(32100));
    // The node port stands where the ClusterIP would, its endpoints the Service's.
    assert_eq!(plan.destination.cluster_ip, Some((ip("172.18.0.3"), 30080)));
    let probed: Vec<_> = keys(&plan).into_iter().map(|(k, node, _)| (k, node)).collect();
    assert!(probed.contains(&(ProbeKey::ClusterIp, "node-a")), "{probed:?}");
    assert!(
        probed.contains(&(ProbeKey::Endpoint(ip("10.244.2.2"), 8080), "node-a")),
        "{probed:?}"
    );
    // A client outside the pod network: the source's node, in its own namespace.
    let outside = plan
        .probes
        .iter()
        .find(|p| p.key == ProbeKey::EntryFromNode)
        .unwrap();
    assert_eq!((outside.node.as_str(), outside.run_in), ("node-a", RunIn::Node));
    assert_eq!(
        outside.probe,
        Probe::Tcp(TcpProbe {
            ip: ip("172.18.0.3"),
            port: 30080,
            timeout_ms: 1000
        })
    );
    // The rules read back are a ClusterIP's: none for a node port.
    let dataplane = plan
        .probes
        .iter()
        .find(|p| p.key == ProbeKey::NodeDataplane)
        .unwrap();
    assert_eq!(
        dataplane.probe,
        Probe::NodeDataplane(NodeDataplaneProbe { service: None })
    );
}

#[test]
fn the_source_nodes_own_node_port_is_tried_from_another_node_an_endpoint_runs_on() {
    let plan = plan(&with_node_ports("Local"), &request("172.18.0.2:30080"));
    let outside = plan
        .probes
        .iter()
        .find(|p| p.key == ProbeKey::EntryFromNode)
        .unwrap();
    assert_eq!(outside.node, "node-b");
}

#[test]
fn a_load_balancer_address_is_planned_as_its_service_without_a_node_to_try_from() {
    let plan = plan(&with_node_ports("Local"), &request("203.0.113.7:80"));
    let ServiceFacts::Found(svc) = &plan.destination.service else {
        panic!("{:?}", plan.destination.service)
    };
    assert_eq!(
        svc.entry,
        Some(ServiceEntry::LoadBalancer {
            address: ip("203.0.113.7"),
            port: 80
        })
    );
    assert_eq!(svc.external_traffic_policy, TrafficPolicy::Local);
    assert_eq!(plan.destination.cluster_ip, Some((ip("203.0.113.7"), 80)));
    // Every node captures the address itself: another node's connection proves nothing more.
    assert!(!plan.probes.iter().any(|p| p.key == ProbeKey::EntryFromNode));
}

#[test]
fn a_node_address_on_a_port_no_service_opens_stays_an_address() {
    let snap = with_node_ports("Cluster");
    for to in [
        "172.18.0.3:30081",
        "172.18.0.3:80",
        "203.0.113.7:443",
        "203.0.113.8:80",
    ] {
        let plan = plan(&snap, &request(to));
        assert_eq!(plan.destination.destination, Destination::External, "{to}");
    }
}

/// `with_node_ports` where payments admits only checkout's pods and checkout may send only to
/// payments' pods.
fn node_ports_with_policies(external_traffic_policy: &str) -> Snapshot {
    let mut snap = with_node_ports(external_traffic_policy);
    let policy = |name: &str, spec: serde_json::Value| {
        serde_json::from_value::<k8s_openapi::api::networking::v1::NetworkPolicy>(json!({
            "metadata": {"namespace": "shop", "name": name}, "spec": spec
        }))
        .unwrap()
    };
    snap.policies = Fact::Known(vec![
        policy(
            "payments-from-checkout",
            json!({"podSelector": {"matchLabels": {"app": "payments"}}, "policyTypes": ["Ingress"],
                   "ingress": [{"from": [{"podSelector": {"matchLabels": {"app": "checkout"}}}]}]}),
        ),
        policy(
            "checkout-to-payments",
            json!({"podSelector": {"matchLabels": {"app": "checkout"}}, "policyTypes": ["Egress"],
                   "egress": [{"to": [{"podSelector": {"matchLabels": {"app": "payments"}}}]}]}),
        ),
    ]);
    snap
}

/// What policy says of each live endpoint of the check of `to`: (address, egress denied,
/// ingress denied), `None` for an allowed flow.
fn entered_policy(snap: &Snapshot, to: &str) -> Vec<(IpAddr, Option<(bool, bool)>)> {
    let plan = plan(snap, &request(to));
    let policy = crate::check::assemble::PolicyEvaluation::new(snap, &plan.source);
    live_targets(&plan.destination)
        .into_iter()
        .map(|e| {
            let from = NamespacedName::new("shop", "checkout");
            let checked = match policy.entered_endpoint(&from, e, &plan.destination) {
                Some(entered) => entered,
                None => policy.endpoint(&from, e, &plan.destination),
            };
            let sides = match checked {
                PolicyCheck::Allowed { .. } => None,
                PolicyCheck::Denied { egress, ingress } => Some((egress.is_some(), ingress.is_some())),
                PolicyCheck::NotEvaluated(why) => panic!("{why:?}"),
            };
            (e.ip, sides)
        })
        .collect()
}

#[test]
fn policy_sees_the_node_port_and_the_masquerading_node_where_kube_proxy_leaves_them() {
    let endpoint = ip("10.244.2.2"); // payments-0, on node-b
    // The ClusterIP: pod to pod, both policies admit it.
    let snap = node_ports_with_policies("Cluster");
    assert_eq!(entered_policy(&snap, "10.96.1.1:80"), vec![(endpoint, None)]);
    // node-b's node port from node-a: egress goes to node-b's address, which no rule admits;
    // node-b masquerades it, and payments-0 runs on node-b: its own node, never blocked.
    assert_eq!(
        entered_policy(&snap, "172.18.0.3:30080"),
        vec![(endpoint, Some((true, false)))]
    );
    // node-a's own node port: node-a translates it before policy, then masquerades it as
    // itself towards node-b, which payments' ingress does not admit.
    assert_eq!(
        entered_policy(&snap, "172.18.0.2:30080"),
        vec![(endpoint, Some((false, true)))]
    );
    // The LoadBalancer address: the same, from the source's node.
    assert_eq!(
        entered_policy(&snap, "203.0.113.7:80"),
        vec![(endpoint, Some((false, true)))]
    );
    // Under Local, kube-proxy keeps the pod's address: only the other node's egress is left.
    let snap = node_ports_with_policies("Local");
    assert_eq!(entered_policy(&snap, "172.18.0.2:30080"), vec![(endpoint, None)]);
    assert_eq!(entered_policy(&snap, "203.0.113.7:80"), vec![(endpoint, None)]);
    assert_eq!(
        entered_policy(&snap, "172.18.0.3:30080"),
        vec![(endpoint, Some((true, false)))]
    );
}
