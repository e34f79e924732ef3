//! The `service-proxy` layer, judged on evidence built by hand.

use crate::check::judge::test_support::*;

#[test]
fn cluster_ip_timing_out_while_pod_ips_connect_fails_service_proxy() {
    let mut ev = healthy();
    ev.cluster_ip = Some(ClusterIpFacts {
        ip: ip(VIP),
        port: 80,
        live: LiveFact::Tcp(timeout()),
    });
    let report = judge(&ev, 0);
    assert_fails_at(&report, Layer::ServiceProxy);
    assert!(summary(&report, Layer::ServiceProxy).contains("rules are missing on node-a"));
}

#[test]
fn cluster_ip_refused_while_pod_ips_connect_is_stale_service_rules() {
    let mut ev = healthy();
    ev.cluster_ip = Some(ClusterIpFacts {
        ip: ip(VIP),
        port: 80,
        live: LiveFact::Tcp(refused()),
    });
    let report = judge(&ev, 0);
    assert_fails_at(&report, Layer::ServiceProxy);
    assert!(summary(&report, Layer::ServiceProxy).contains("stale"));
}

#[test]
fn a_vip_refused_while_no_endpoint_refuses_is_stale_proxy_rules() {
    let mut ev = healthy();
    ev.cluster_ip.as_mut().unwrap().live = LiveFact::Tcp(refused());
    let report = judge(&ev, 0);
    assert_fails_at(&report, Layer::ServiceProxy);
    assert!(summary(&report, Layer::ServiceProxy).contains("while no endpoint refuses"));
}

fn rules(found: bool, rejects: bool, endpoints: &[&str]) -> NodeDataplaneWitness {
    NodeDataplaneWitness {
        node: "node-a".into(),
        result: Fact::Known(netdiag_proto::NodeDataplaneResult {
            service_rules: Some(netdiag_proto::ServiceRules {
                source: "iptables".into(),
                found,
                rejects,
                endpoints: endpoints.iter().map(|e| e.parse().unwrap()).collect(),
                error: None,
            }),
            conntrack: netdiag_proto::ConntrackFill {
                count: Some(950),
                max: Some(1000),
                error: None,
            },
        }),
    }
}

#[test]
fn a_vip_rule_to_an_address_that_is_no_endpoint_fails_service_proxy_even_when_the_vip_connects() {
    let mut ev = healthy();
    ev.witnesses.node_dataplane = Some(rules(
        true,
        false,
        &["10.244.1.14:8080", "10.244.2.14:8080", "10.244.2.4:8080"],
    ));
    let report = judge(&ev, 0);
    assert_fails_at(&report, Layer::ServiceProxy);
    let s = summary(&report, Layer::ServiceProxy);
    assert!(
        s.starts_with(
            "node-a translates 10.96.12.7:80/TCP to 10.244.2.4:8080 which is no longer an endpoint"
        ),
        "{s}"
    );
    assert!(evidence_text(&report, Layer::ServiceProxy).contains("nearly full"));
}

#[test]
fn a_missing_vip_rule_explains_a_vip_timeout() {
    let mut ev = healthy();
    ev.cluster_ip.as_mut().unwrap().live = LiveFact::Tcp(timeout());
    ev.witnesses.node_dataplane = Some(rules(false, false, &[]));
    let report = judge(&ev, 0);
    assert_fails_at(&report, Layer::ServiceProxy);
    let s = summary(&report, Layer::ServiceProxy);
    assert!(
        s.ends_with("node-a has no rule for 10.96.12.7:80/TCP (2 ready endpoints in the slice)"),
        "{s}"
    );
}

#[test]
fn a_missing_vip_rule_never_fails_a_vip_that_connects() {
    // IPVS, nftables mode or an eBPF dataplane program the VIP outside iptables.
    let mut ev = healthy();
    ev.witnesses.node_dataplane = Some(rules(false, false, &[]));
    let report = judge(&ev, 0);
    assert_eq!(report.verdict, Verdict::Reachable);
}

#[test]
fn unreadable_rules_fall_back_to_the_differential_and_say_why() {
    let mut ev = healthy();
    ev.cluster_ip.as_mut().unwrap().live = LiveFact::Tcp(timeout());
    ev.witnesses.node_dataplane = Some(NodeDataplaneWitness {
        node: "node-a".into(),
        result: Fact::Known(netdiag_proto::NodeDataplaneResult {
            service_rules: Some(netdiag_proto::ServiceRules {
                error: Some("cannot run iptables-save".into()),
                ..Default::default()
            }),
            conntrack: Default::default(),
        }),
    });
    let report = judge(&ev, 0);
    assert_fails_at(&report, Layer::ServiceProxy);
    assert!(summary(&report, Layer::ServiceProxy).contains("rules are missing on node-a"));
    assert!(evidence_text(&report, Layer::ServiceProxy).contains("cannot run iptables-save"));
}

#[test]
fn a_vip_meeting_an_endpoint_with_nothing_bound_passes_service_proxy() {
    let mut ev = healthy_udp();
    endpoints_mut(&mut ev)[1].live = LiveFact::Udp(port_unreachable());
    endpoints_mut(&mut ev)[1].listeners = Fact::Known(vec![]);
    for vip in [silent(), port_unreachable(), answered()] {
        ev.cluster_ip.as_mut().unwrap().live = LiveFact::Udp(vip);
        let report = judge(&ev, 0);
        assert_fails_at(&report, Layer::Application);
        assert!(summary(&report, Layer::Application).starts_with("1 of 2 endpoints has nothing bound"));
    }
}

#[test]
fn cluster_ip_silent_while_pod_ips_answer_fails_service_proxy() {
    let mut ev = healthy_udp();
    ev.cluster_ip.as_mut().unwrap().live = LiveFact::Udp(silent());
    let report = judge(&ev, 0);
    assert_fails_at(&report, Layer::ServiceProxy);
    assert!(summary(&report, Layer::ServiceProxy).contains("rules are missing"));
}
