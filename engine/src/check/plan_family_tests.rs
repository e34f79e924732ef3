//! The planner on IPv6-only and dual-stack snapshots: record types, ClusterIPs and witnesses per
//! family.

use super::*;

/// `shop()` made dual-stack (IPv4 primary): payments-0 and checkout get IPv6 addresses, the
/// payments Service a second ClusterIP and an IPv6 EndpointSlice.
fn dual_stack() -> Snapshot {
    let mut snap = shop();
    let Fact::Known(pods) = &mut snap.pods else {
        unreachable!()
    };
    for (pod, v6) in pods.iter_mut().zip(["fd00:10:244:1::2", "fd00:10:244:2::2"]) {
        let status = pod.status.as_mut().unwrap();
        let v4 = status.pod_ip.clone().unwrap();
        status.pod_ips = Some(
            [v4, v6.to_string()]
                .into_iter()
                .map(|ip| k8s_openapi::api::core::v1::PodIP { ip })
                .collect(),
        );
        status.host_ips = Some(vec![k8s_openapi::api::core::v1::HostIP {
            ip: "fd00:172:18::3".into(),
        }]);
    }
    let Fact::Known(services) = &mut snap.services else {
        unreachable!()
    };
    services[0].spec.as_mut().unwrap().cluster_ips = Some(vec!["10.96.1.1".into(), "fd00:10:96::101".into()]);
    let Fact::Known(slices) = &mut snap.slices else {
        unreachable!()
    };
    let mut v6 = mk_slice(
        "shop",
        "payments",
        json!([{"name": "http", "port": 8080, "protocol": "TCP"}]),
        json!([endpoint("fd00:10:244:2::2", "payments-0", json!({"ready": true}))]),
    );
    v6.address_type = "IPv6".into();
    v6.metadata.name = Some("payments-x6".into());
    slices.push(v6);
    snap
}

fn record_type(plan: &CheckPlan, key: ProbeKey) -> Option<RecordType> {
    plan.probes
        .iter()
        .find(|p| p.key == key)
        .and_then(|p| match &p.probe {
            Probe::Dns(d) => Some(d.record_type),
            _ => None,
        })
}

#[test]
fn a_dual_stack_service_is_resolved_for_a_and_aaaa_and_both_clusterips_are_probed() {
    let plan = plan(&dual_stack(), &request("svc/payments:80"));
    assert_eq!(record_type(&plan, ProbeKey::Resolve), Some(RecordType::A));
    assert_eq!(
        record_type(&plan, ProbeKey::ResolveSecondary),
        Some(RecordType::Aaaa)
    );
    assert_eq!(
        plan.destination.expected_dns,
        [ip("10.96.1.1"), ip("fd00:10:96::101")]
    );
    let secondary = plan.probes.iter().find(|p| p.key == ProbeKey::ClusterIpSecondary);
    assert!(
        matches!(secondary.map(|p| &p.probe), Some(Probe::Tcp(t)) if t.ip == ip("fd00:10:96::101") && t.port == 80)
    );
    let k = keys(&plan);
    assert!(
        k.iter()
            .any(|(key, _, _)| *key == ProbeKey::Endpoint(ip("fd00:10:244:2::2"), 8080))
    );
    assert!(
        k.iter()
            .any(|(key, node, _)| *key == ProbeKey::Listeners(ip("fd00:10:244:2::2")) && *node == "node-b")
    );
}

#[test]
fn ipv6_endpoints_get_an_ipv6_node_witness_and_no_ipv4_only_witnesses() {
    let plan = plan(&dual_stack(), &request("svc/payments:80"));
    let has = |key: ProbeKey| plan.probes.iter().any(|p| p.key == key);
    assert!(has(ProbeKey::NodeWitness(ip("fd00:172:18::3"))));
    assert!(has(ProbeKey::PathMtu(ip("10.244.2.2"), 8080)));
    assert!(!has(ProbeKey::PathMtu(ip("fd00:10:244:2::2"), 8080)));
    assert!(!has(ProbeKey::Capture(ip("fd00:10:244:2::2"))));
}

#[test]
fn an_ipv6_only_service_is_resolved_for_aaaa_alone() {
    let mut snap = shop();
    let Fact::Known(services) = &mut snap.services else {
        unreachable!()
    };
    services[0].spec.as_mut().unwrap().cluster_ip = Some("fd00:10:96::101".into());
    let plan = plan(&snap, &request("svc/payments:80"));
    assert_eq!(record_type(&plan, ProbeKey::Resolve), Some(RecordType::Aaaa));
    assert_eq!(record_type(&plan, ProbeKey::ResolveSecondary), None);
    assert!(!plan.probes.iter().any(|p| p.key == ProbeKey::ClusterIpSecondary));
}

#[test]
fn a_pod_is_found_by_any_of_its_addresses() {
    let plan = plan(&dual_stack(), &request("[fd00:10:244:2::2]:8080"));
    assert_eq!(plan.destination.destination, Destination::Pod);
}

#[test]
fn a_dual_stack_service_entered_by_an_ipv4_node_port_is_checked_over_ipv4_only() {
    let mut snap = dual_stack();
    let Fact::Known(services) = &mut snap.services else {
        unreachable!()
    };
    let spec = services[0].spec.as_mut().unwrap();
    spec.type_ = Some("NodePort".into());
    spec.ports.as_mut().unwrap()[0].node_port = Some(30080);
    snap.node_addresses
        .insert("node-b".into(), vec![ip("172.18.0.3"), ip("fd00:172:18::3")]);
    let plan = plan(&snap, &request("172.18.0.3:30080"));
    let endpoints = plan.destination.endpoints.known().unwrap();
    assert!(endpoints.iter().all(|e| e.ip.is_ipv4()), "{endpoints:?}");
    assert_eq!(plan.destination.expected_dns, vec![ip("172.18.0.3")]);
    assert_eq!(plan.destination.secondary_cluster_ip, None);
}
