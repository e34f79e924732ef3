//! The `service-proxy` layer, judged on evidence built by hand.

use crate::check::judge::test_support::*;
use crate::check::repeat::{Attempt, Probed, RepeatFacts, RepeatedProbe};

/// The ClusterIP of `healthy()` (TCP, port 80) or `healthy_udp()` (UDP, port 5353).
fn vip(transport: Transport) -> Vip {
    let port = match transport {
        Transport::Tcp => 80,
        Transport::Udp => 5353,
    };
    Vip {
        ip: ip(VIP),
        port,
        transport,
        kind: VipKind::ClusterIp,
    }
}

fn proxy_finding(ev: &Evidence) -> ServiceProxyFinding {
    match finding(ev, judge_service_proxy) {
        Finding::ServiceProxy(f) => f,
        other => panic!("not a service-proxy finding: {other:?}"),
    }
}

/// The ClusterIP (TCP) drops what both pod IPs answer; `rules`: what the node's rules show.
fn tcp_rules_missing(rules: Option<RulesReading>) -> ServiceProxyFinding {
    ServiceProxyFinding::RulesMissing {
        vip: vip(Transport::Tcp),
        outcome: VipOutcome::Tcp(TcpOutcome::Timeout { after_ms: 1000 }),
        node: "node-a".into(),
        answered: 2,
        rules,
    }
}

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
    assert_eq!(
        code(&report, Layer::ServiceProxy),
        Some(Code::ServiceProxyRulesMissing)
    );
    assert_eq!(proxy_finding(&ev), tcp_rules_missing(None));
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
    assert_eq!(
        code(&report, Layer::ServiceProxy),
        Some(Code::ServiceProxyRefusedAsEmpty)
    );
}

#[test]
fn a_vip_refused_while_no_endpoint_refuses_is_stale_proxy_rules() {
    let mut ev = healthy();
    ev.cluster_ip.as_mut().unwrap().live = LiveFact::Tcp(refused());
    let report = judge(&ev, 0);
    assert_fails_at(&report, Layer::ServiceProxy);
    assert_eq!(
        proxy_finding(&ev),
        ServiceProxyFinding::RefusedAsEmpty {
            vip: vip(Transport::Tcp),
            node: "node-a".into(),
            answered: 2,
            rules: None,
        }
    );
}

fn rules(found: bool, rejects: bool, endpoints: &[&str]) -> NodeDataplaneWitness {
    NodeDataplaneWitness {
        node: "node-a".into(),
        result: Fact::Known(netdiag_proto::NodeDataplaneResult {
            service_rules: Some(netdiag_proto::ServiceRules {
                source: "iptables".into(),
                found,
                rejects,
                drops: false,
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
    assert_eq!(
        proxy_finding(&ev),
        ServiceProxyFinding::StaleRules {
            node: "node-a".into(),
            vip: vip(Transport::Tcp),
            stale: NonEmpty::new("10.244.2.4:8080".parse().unwrap()),
        }
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
    assert_eq!(
        proxy_finding(&ev),
        tcp_rules_missing(Some(RulesReading {
            node: "node-a".into(),
            vip: vip(Transport::Tcp),
            programmed: Programmed::NoRule,
            ready: 2,
        }))
    );
}

#[test]
fn a_missing_vip_rule_never_fails_a_vip_that_connects() {
    // IPVS, nftables mode or an eBPF dataplane program the VIP outside iptables.
    let mut ev = healthy();
    ev.witnesses.node_dataplane = Some(rules(false, false, &[]));
    let report = judge(&ev, 0);
    assert_eq!(report.verdict, Verdict::Reachable);
    assert_eq!(
        code(&report, Layer::ServiceProxy),
        Some(Code::ServiceProxyAsEndpoints)
    );
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
    assert_eq!(proxy_finding(&ev), tcp_rules_missing(None));
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
        assert_eq!(
            code(&report, Layer::ServiceProxy),
            Some(Code::ServiceProxyAsEndpoints)
        );
        assert!(summary(&report, Layer::Application).starts_with("1 of 2 endpoints has nothing bound"));
    }
}

#[test]
fn cluster_ip_silent_while_pod_ips_answer_fails_service_proxy() {
    let mut ev = healthy_udp();
    ev.cluster_ip.as_mut().unwrap().live = LiveFact::Udp(silent());
    let report = judge(&ev, 0);
    assert_fails_at(&report, Layer::ServiceProxy);
    assert_eq!(
        proxy_finding(&ev),
        ServiceProxyFinding::RulesMissing {
            vip: vip(Transport::Udp),
            outcome: VipOutcome::Udp(UdpOutcome::Silent { after_ms: 1000 }),
            node: "node-a".into(),
            answered: 2,
            rules: None,
        }
    );
}

#[test]
fn a_local_services_rule_to_the_nodes_own_terminating_endpoint_is_not_stale() {
    let mut ev = healthy();
    service_mut(&mut ev).internal_traffic_policy = TrafficPolicy::Local;
    // payments-0 on node-a (the source's node) terminates but serves; payments-1 elsewhere is ready.
    endpoints_mut(&mut ev)[0].conditions = Conditions {
        ready: false,
        serving: true,
        terminating: true,
    };
    ev.witnesses.node_dataplane = Some(rules(true, false, &["10.244.1.14:8080"]));
    let report = judge(&ev, 0);
    assert_eq!(
        report.verdict,
        Verdict::Reachable,
        "{:?}",
        step(&report, Layer::ServiceProxy)
    );
    // Without the Local policy the same rule points at an address no node should use.
    service_mut(&mut ev).internal_traffic_policy = TrafficPolicy::Cluster;
    assert_fails_at(&judge(&ev, 0), Layer::ServiceProxy);
}

/// `healthy()` (checkout on node-a; payments-0 on node-a, payments-1 on node-b) entered by
/// `node`'s node port 30080 under `policy`, with another node's own connection to it meeting
/// `outside`.
fn node_port_of(node: &str, policy: TrafficPolicy, outside: Fact<TcpOutcome>) -> Evidence {
    let mut ev = healthy();
    let svc = service_mut(&mut ev);
    svc.service_type = "NodePort".into();
    svc.external_traffic_policy = policy;
    svc.entry = Some(ServiceEntry::NodePort {
        node: node.into(),
        address: ip("192.168.0.9"),
        node_port: 30080,
    });
    ev.cluster_ip = Some(ClusterIpFacts {
        ip: ip("192.168.0.9"),
        port: 30080,
        live: LiveFact::Tcp(connected()),
    });
    ev.witnesses.entry_from_node = Some(EntryFromNode {
        node: "node-b".into(),
        tcp: outside,
    });
    ev
}

#[test]
fn a_local_node_port_without_an_endpoint_on_its_node_fails_for_clients_outside_the_pod_network() {
    // node-a's own node port, both endpoints moved to node-b: pods pass, node-b's address not.
    let mut ev = node_port_of("node-a", TrafficPolicy::Local, timeout());
    endpoints_mut(&mut ev)[0].pod.as_mut().unwrap().node = Some("node-b".into());
    let report = judge(&ev, 0);
    assert_fails_at(&report, Layer::ServiceProxy);
    assert_eq!(
        code(&report, Layer::ServiceProxy),
        Some(Code::ServiceProxyNoLocalEndpoint)
    );
    let summary = summary(&report, Layer::ServiceProxy);
    assert!(
        summary.starts_with("node port 192.168.0.9:30080 timed out after 1000 ms from node-b's own address while pods reach it: externalTrafficPolicy: Local and node-a runs no ready endpoint"),
        "{summary}"
    );
}

#[test]
fn a_node_port_closed_to_other_nodes_though_its_node_has_an_endpoint_is_told_apart() {
    let ev = node_port_of("node-a", TrafficPolicy::Local, timeout());
    let report = judge(&ev, 0);
    assert_eq!(
        code(&report, Layer::ServiceProxy),
        Some(Code::ServiceProxyClosedOutside)
    );
    // Under the Cluster policy an endpoint anywhere serves: only the node is left to blame.
    let ev = node_port_of("node-c", TrafficPolicy::Cluster, refused());
    let report = judge(&ev, 0);
    assert_eq!(
        code(&report, Layer::ServiceProxy),
        Some(Code::ServiceProxyClosedOutside)
    );
}

#[test]
fn a_node_port_open_from_another_node_passes_with_that_connection_as_evidence() {
    let ev = node_port_of("node-a", TrafficPolicy::Local, connected());
    let report = judge(&ev, 0);
    assert_eq!(step(&report, Layer::ServiceProxy).status, Status::Pass);
    let summary = summary(&report, Layer::ServiceProxy);
    assert!(
        summary.starts_with("node port 192.168.0.9:30080 connected"),
        "{summary}"
    );
    let evidence = evidence_text(&report, Layer::ServiceProxy);
    assert!(
        evidence.contains("TCP from node-b's own address (a client outside the pod network): connected"),
        "{evidence}"
    );
}

#[test]
fn another_nodes_local_node_port_that_loses_the_connection_names_the_endpoints_answering_past_it() {
    // node-b's node port from node-a: payments-0 runs on node-a, not node-b.
    {
        let mut ev = node_port_of("node-b", TrafficPolicy::Local, connected());
        ev.cluster_ip.as_mut().unwrap().live = LiveFact::Tcp(timeout());
        let report = judge(&ev, 0);
        assert_fails_at(&report, Layer::ServiceProxy);
        assert_eq!(
            code(&report, Layer::ServiceProxy),
            Some(Code::ServiceProxyLocalNotMasqueraded)
        );
        let summary = summary(&report, Layer::ServiceProxy);
        assert!(
            summary.contains("kube-proxy on node-b sends a pod's connection on to every endpoint without masquerading it, and payments-0 on node-a answers the pod directly"),
            "{summary}"
        );
    }
    // A connection that reached payments-1, on node-b itself, came back through it.
    let ev = node_port_of("node-b", TrafficPolicy::Local, connected());
    assert_eq!(step(&judge(&ev, 0), Layer::ServiceProxy).status, Status::Pass);
    // From a host-network pod node-b takes the connection for an outside client's.
    let mut ev = node_port_of("node-b", TrafficPolicy::Local, connected());
    ev.cluster_ip.as_mut().unwrap().live = LiveFact::Tcp(timeout());
    if let SourceFacts::Found { pod, .. } = &mut ev.source {
        pod.host_network = true;
    }
    assert_ne!(
        code(&judge(&ev, 0), Layer::ServiceProxy),
        Some(Code::ServiceProxyLocalNotMasqueraded)
    );
    // Every endpoint on node-b: its answers pass node-b's translation back.
    let mut ev = node_port_of("node-b", TrafficPolicy::Local, connected());
    endpoints_mut(&mut ev)[0].pod.as_mut().unwrap().node = Some("node-b".into());
    assert_eq!(step(&judge(&ev, 0), Layer::ServiceProxy).status, Status::Pass);
    // Under Cluster node-b masquerades it: nothing is lost.
    let ev = node_port_of("node-b", TrafficPolicy::Cluster, connected());
    assert_eq!(step(&judge(&ev, 0), Layer::ServiceProxy).status, Status::Pass);
}

#[test]
fn a_local_load_balancer_address_names_the_nodes_its_clients_are_served_on() {
    let mut ev = healthy();
    let svc = service_mut(&mut ev);
    svc.service_type = "LoadBalancer".into();
    svc.external_traffic_policy = TrafficPolicy::Local;
    svc.health_check_node_port = Some(32100);
    svc.entry = Some(ServiceEntry::LoadBalancer {
        address: ip("203.0.113.7"),
        port: 80,
    });
    let report = judge(&ev, 0);
    assert_eq!(step(&report, Layer::ServiceProxy).status, Status::Pass);
    let evidence = evidence_text(&report, Layer::ServiceProxy);
    assert!(
        evidence.contains("served only on the nodes with an endpoint (node-a, node-b); kube-proxy's health check on node port 32100 answers 200 only there"),
        "{evidence}"
    );
    // Under the Cluster policy every node serves them: nothing to say.
    service_mut(&mut ev).external_traffic_policy = TrafficPolicy::Cluster;
    let evidence = evidence_text(&judge(&ev, 0), Layer::ServiceProxy);
    assert!(!evidence.contains("served only"), "{evidence}");
}

#[test]
fn a_node_port_refused_from_another_node_as_one_of_its_endpoints_refuses_is_not_the_nodes() {
    // Under Cluster the node port's node may send node-b's connection to either endpoint, and
    // payments-1 refuses everything: that is payments-1's to judge.
    let mut ev = node_port_of("node-a", TrafficPolicy::Cluster, refused());
    endpoints_mut(&mut ev)[1].live = LiveFact::Tcp(refused());
    let report = judge(&ev, 0);
    assert_ne!(
        code(&report, Layer::ServiceProxy),
        Some(Code::ServiceProxyClosedOutside)
    );
    let evidence = evidence_text(&report, Layer::ServiceProxy);
    assert!(
        evidence.contains("TCP from node-b's own address: refused (RST), as shop/payments-1"),
        "{evidence}"
    );
}

/// `healthy()` (checkout, 10.244.1.5 on node-a) entered by the LoadBalancer address
/// 203.0.113.7:80 with `ranges` as its `loadBalancerSourceRanges`, the connection meeting `live`.
fn load_balancer_with_ranges(ranges: &[&str], live: Fact<TcpOutcome>) -> Evidence {
    let mut ev = healthy();
    let svc = service_mut(&mut ev);
    svc.service_type = "LoadBalancer".into();
    svc.load_balancer_source_ranges = ranges.iter().map(|r| r.to_string()).collect();
    svc.entry = Some(ServiceEntry::LoadBalancer {
        address: ip("203.0.113.7"),
        port: 80,
    });
    ev.cluster_ip = Some(ClusterIpFacts {
        ip: ip("203.0.113.7"),
        port: 80,
        live: LiveFact::Tcp(live),
    });
    ev
}

fn fix_text(report: &Report) -> String {
    report.fix.join("\n")
}

fn host_network(ev: &mut Evidence) {
    if let SourceFacts::Found { pod, .. } = &mut ev.source {
        pod.host_network = true;
    }
}

#[test]
fn a_load_balancer_address_whose_source_ranges_leave_out_the_pod_fails_on_them() {
    let ev = load_balancer_with_ranges(&["192.0.2.0/24", "2001:db8::/32"], timeout());
    let report = judge(&ev, 0);
    assert_fails_at(&report, Layer::ServiceProxy);
    assert_eq!(
        code(&report, Layer::ServiceProxy),
        Some(Code::ServiceProxySourceRangeExcluded)
    );
    // Only the address's family's ranges are named.
    assert_eq!(
        summary(&report, Layer::ServiceProxy),
        "LoadBalancer address 203.0.113.7:80 timed out after 1000 ms: the Service's loadBalancerSourceRanges (192.0.2.0/24) leave out the source's address 10.244.1.5, so kube-proxy on node-a drops the connection at its load balancer firewall instead of sending it to an endpoint"
    );
    let fix = fix_text(&report);
    assert!(
        fix.contains("add the pods' addresses to loadBalancerSourceRanges"),
        "{fix}"
    );
    // A host-network pod is filtered by its node's address.
    let mut ev = load_balancer_with_ranges(&["10.244.0.0/16"], timeout());
    host_network(&mut ev);
    let report = judge(&ev, 0);
    assert_eq!(
        code(&report, Layer::ServiceProxy),
        Some(Code::ServiceProxySourceRangeExcluded)
    );
    let evidence = evidence_text(&report, Layer::ServiceProxy);
    assert!(
        evidence.contains("10.244.0.0/16 leave out the source's node's address 192.168.0.1"),
        "{evidence}"
    );
    assert!(fix_text(&report).contains("add the node's address"));
}

#[test]
fn source_ranges_that_admit_the_pod_or_any_source_leave_a_lost_connection_to_the_rules() {
    for ranges in [
        &["10.244.0.0/16"][..],
        &["192.0.2.0/24", "0.0.0.0/0"],
        &["2001:db8::/32"],
        &["010.244.000.000/16"],
        &["::ffff:10.244.0.0/112"],
        &[],
    ] {
        let report = judge(&load_balancer_with_ranges(ranges, timeout()), 0);
        assert_eq!(
            code(&report, Layer::ServiceProxy),
            Some(Code::ServiceProxyRulesMissing),
            "{ranges:?}"
        );
    }
    let report = judge(&load_balancer_with_ranges(&["10.244.1.1/16"], timeout()), 0);
    let evidence = evidence_text(&report, Layer::ServiceProxy);
    assert!(
        evidence.contains("loadBalancerSourceRanges 10.244.0.0/16 admit the source's address 10.244.1.5"),
        "{evidence}"
    );
}

#[test]
fn an_unreadable_source_range_judges_nothing_by_them_and_says_which() {
    let report = judge(
        &load_balancer_with_ranges(&["192.0.2.0/24", "10.244.0.0/33"], timeout()),
        0,
    );
    assert_eq!(
        code(&report, Layer::ServiceProxy),
        Some(Code::ServiceProxyRulesMissing)
    );
    let evidence = evidence_text(&report, Layer::ServiceProxy);
    assert!(
        evidence.contains("loadBalancerSourceRanges entry \"10.244.0.0/33\" could not be read"),
        "{evidence}"
    );
}

#[test]
fn only_a_drop_is_the_firewalls_and_only_a_connection_says_it_got_through() {
    let report = judge(&load_balancer_with_ranges(&["192.0.2.0/24"], connected()), 0);
    assert_eq!(step(&report, Layer::ServiceProxy).status, Status::Pass);
    let evidence = evidence_text(&report, Layer::ServiceProxy);
    assert!(
        evidence.contains("leave out the source's address 10.244.1.5, yet the connection got through"),
        "{evidence}"
    );
    // Refused or unreachable is not kube-proxy's firewall, which drops; nor is it a sign the
    // dataplane ignores the ranges.
    let unreachable = Fact::Known(TcpOutcome::Unreachable {
        reason: UnreachableReason::Host,
        detail: String::new(),
        rtt_us: 300,
    });
    for live in [refused(), unreachable] {
        let report = judge(&load_balancer_with_ranges(&["192.0.2.0/24"], live.clone()), 0);
        assert_ne!(
            code(&report, Layer::ServiceProxy),
            Some(Code::ServiceProxySourceRangeExcluded),
            "{live:?}"
        );
        let evidence = evidence_text(&report, Layer::ServiceProxy);
        assert!(!evidence.contains("got through"), "{evidence}");
    }
}

#[test]
fn a_datagram_dropped_or_refused_on_a_host_network_sources_node_is_the_firewalls() {
    let refused_locally = LiveFact::Udp(Fact::Known(UdpOutcome::Unreachable {
        reason: UnreachableReason::AdminProhibited,
        detail: "Operation not permitted".into(),
        rtt_us: 10,
    }));
    let mut ev = healthy_udp();
    host_network(&mut ev);
    let svc = service_mut(&mut ev);
    svc.service_type = "LoadBalancer".into();
    svc.load_balancer_source_ranges = vec!["10.244.0.0/16".into()];
    svc.entry = Some(ServiceEntry::LoadBalancer {
        address: ip("203.0.113.7"),
        port: 5353,
    });
    let cip = ev.cluster_ip.as_mut().unwrap();
    cip.ip = ip("203.0.113.7");
    cip.live = refused_locally;
    assert_eq!(
        code(&judge(&ev, 0), Layer::ServiceProxy),
        Some(Code::ServiceProxySourceRangeExcluded)
    );
    // A silent datagram from a pod is dropped on the way.
    if let SourceFacts::Found { pod, .. } = &mut ev.source {
        pod.host_network = false;
    }
    service_mut(&mut ev).load_balancer_source_ranges = vec!["192.0.2.0/24".into()];
    ev.cluster_ip.as_mut().unwrap().live = LiveFact::Udp(silent());
    assert_eq!(
        code(&judge(&ev, 0), Layer::ServiceProxy),
        Some(Code::ServiceProxySourceRangeExcluded)
    );
}

#[test]
fn a_repeated_connection_that_got_through_once_is_not_the_source_ranges() {
    let mut ev = load_balancer_with_ranges(&["192.0.2.0/24"], timeout());
    ev.repeats = Some(RepeatFacts {
        rounds: 3,
        probes: vec![RepeatedProbe {
            probed: Probed::ClusterIp {
                ip: ip("203.0.113.7"),
                port: 80,
                named: "LoadBalancer address",
            },
            usual: Attempt::Timeout,
            tally: [(Attempt::Timeout, 2), (Attempt::Ok, 1)].into_iter().collect(),
            latencies_us: vec![400],
        }],
    });
    assert_ne!(
        code(&judge(&ev, 0), Layer::ServiceProxy),
        Some(Code::ServiceProxySourceRangeExcluded)
    );
}

#[test]
fn a_node_port_is_not_filtered_by_source_ranges() {
    let mut ev = node_port_of("node-a", TrafficPolicy::Cluster, connected());
    service_mut(&mut ev).load_balancer_source_ranges = vec!["192.0.2.0/24".into()];
    ev.cluster_ip.as_mut().unwrap().live = LiveFact::Tcp(timeout());
    assert_ne!(
        code(&judge(&ev, 0), Layer::ServiceProxy),
        Some(Code::ServiceProxySourceRangeExcluded)
    );
}
