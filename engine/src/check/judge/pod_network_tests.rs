//! The `pod-network` layer, judged on evidence built by hand.

use crate::check::judge::test_support::*;

fn pod_network_finding(ev: &Evidence) -> PodNetworkFinding {
    match finding(ev, judge_pod_network) {
        Finding::PodNetwork(f) => f,
        other => panic!("not a pod-network finding: {other:?}"),
    }
}

/// A failing TCP path: the first failing address, how many fail of how many, and the reading.
fn path_failure(ev: &Evidence) -> (Dropped, usize, usize, PathReading) {
    match pod_network_finding(ev) {
        PodNetworkFinding::PathFailed {
            first,
            failing,
            total,
            path,
            ..
        } => (first, failing, total, path),
        other => panic!("not a path failure: {other:?}"),
    }
}

fn label(ev: &mut Evidence, i: usize) -> String {
    endpoints_mut(ev)[i].label()
}

#[test]
fn a_cross_node_timeout_while_that_node_answers_is_a_drop_of_the_pod_or_port_not_the_path() {
    let mut ev = healthy();
    endpoints_mut(&mut ev)[1].live = LiveFact::Tcp(timeout());
    let report = judge(&ev, 0);
    assert_fails_at(&report, Layer::PodNetwork);
    assert_eq!(code(&report, Layer::PodNetwork), Some(Code::PodNetworkPodDrops));
    let (first, failing, total, path) = path_failure(&ev);
    assert_eq!(first.endpoint, label(&mut ev, 1));
    assert_eq!((failing, total), (1, 2));
    assert_eq!(
        path,
        PathReading::NodeAnswers {
            src: Some("node-a".into()),
            node: "node-b".into(),
            pods: vec![label(&mut ev, 1)],
            from: NamespacedName::new("shop", "checkout"),
            ip: ip("192.168.0.2"),
            port: 10250,
            outcome: TcpOutcome::Refused { rtt_us: 90 },
        }
    );
}

#[test]
fn a_cross_node_timeout_is_a_broken_path_only_when_the_node_does_not_answer_either() {
    let mut ev = healthy();
    endpoints_mut(&mut ev)[1].live = LiveFact::Tcp(timeout());
    ev.node_witnesses[0].tcp = timeout();
    let report = judge(&ev, 0);
    assert_fails_at(&report, Layer::PodNetwork);
    assert_eq!(code(&report, Layer::PodNetwork), Some(Code::PodNetworkPathBroken));
    assert_eq!(
        path_failure(&ev).3,
        PathReading::PathBroken {
            src: Some("node-a".into()),
            node: "node-b".into(),
            ip: ip("192.168.0.2"),
            outcome: TcpOutcome::Timeout { after_ms: 1000 },
        }
    );
    assert!(report.fix.iter().any(|f| f.contains("get nodes")));
}

#[test]
fn a_broken_path_reads_the_same_whether_it_times_out_or_a_router_answers_unreachable() {
    let summary = |outcome: TcpOutcome| {
        let mut ev = healthy();
        endpoints_mut(&mut ev)[1].live = LiveFact::Tcp(Fact::Known(outcome.clone()));
        ev.node_witnesses[0].tcp = Fact::Known(outcome);
        let report = judge(&ev, 0);
        assert_eq!(code(&report, Layer::PodNetwork), Some(Code::PodNetworkPathBroken));
        step(&report, Layer::PodNetwork).summary.clone()
    };
    let unreachable = TcpOutcome::Unreachable {
        reason: netdiag_proto::UnreachableReason::Host,
        detail: "icmpv6 type 1 code 3 from fd00:172:18::2".into(),
        rtt_us: 900,
    };
    let timed_out = summary(TcpOutcome::Timeout { after_ms: 500 });
    assert_eq!(timed_out, summary(unreachable));
    assert!(
        timed_out.contains("the cross-node path between node-a and node-b is broken"),
        "{timed_out}"
    );
}

#[test]
fn without_a_second_witness_a_cross_node_timeout_claims_no_path_failure() {
    let mut ev = healthy();
    endpoints_mut(&mut ev)[1].live = LiveFact::Tcp(timeout());
    ev.node_witnesses[0].tcp = Fact::Unknown(agent_missing("node-a"));
    let report = judge(&ev, 0);
    assert_fails_at(&report, Layer::PodNetwork);
    assert_eq!(
        code(&report, Layer::PodNetwork),
        Some(Code::PodNetworkNoSecondWitness)
    );
    assert_eq!(
        path_failure(&ev).3,
        PathReading::NoSecondWitness {
            node: "node-b".into(),
            pods: vec![label(&mut ev, 1)],
        }
    );
}

#[test]
fn one_dropped_endpoint_among_answering_ones_on_its_node_names_that_endpoint_only() {
    let mut ev = healthy();
    let mut third = pod("shop", "payments-2", "node-b", "10.244.2.15");
    third.labels.insert("app".into(), "payments".into());
    let mut dropped = endpoint(third);
    dropped.live = LiveFact::Tcp(timeout());
    endpoints_mut(&mut ev).push(dropped);
    let report = judge(&ev, 0);
    assert_fails_at(&report, Layer::PodNetwork);
    let (_, failing, total, path) = path_failure(&ev);
    assert_eq!((failing, total), (1, 3));
    assert_eq!(
        path,
        PathReading::OthersOnNodeConnect {
            src: Some("node-a".into()),
            node: "node-b".into(),
            pods: vec![label(&mut ev, 2)],
            answering: 1,
        }
    );
    let failing: Vec<_> = report
        .endpoints
        .iter()
        .filter(|e| e.status == Status::Fail)
        .map(|e| (e.pod.as_deref(), e.failing_layer))
        .collect();
    assert_eq!(failing, [(Some("shop/payments-2"), Some(Layer::PodNetwork))]);
}

#[test]
fn one_same_node_endpoint_timing_out_names_it_its_node_and_the_count() {
    let mut ev = healthy();
    endpoints_mut(&mut ev)[0].live = LiveFact::Tcp(timeout());
    let report = judge(&ev, 0);
    assert_fails_at(&report, Layer::PodNetwork);
    assert_eq!(
        code(&report, Layer::PodNetwork),
        Some(Code::PodNetworkConnectFailed)
    );
    let (first, failing, total, path) = path_failure(&ev);
    assert_eq!(
        first,
        Dropped {
            endpoint: label(&mut ev, 0),
            place: Place::SameNode("node-a".into()),
            outcome: TcpOutcome::Timeout { after_ms: 1000 },
        }
    );
    assert_eq!((failing, total, path), (1, 2, PathReading::NotCrossNode));
}

#[test]
fn icmp_unreachable_is_a_pod_network_failure_too() {
    let mut ev = healthy();
    for e in endpoints_mut(&mut ev) {
        e.live = LiveFact::Tcp(Fact::Known(TcpOutcome::Unreachable {
            reason: UnreachableReason::Host,
            detail: String::new(),
            rtt_us: 5,
        }));
    }
    let report = judge(&ev, 0);
    assert_fails_at(&report, Layer::PodNetwork);
    assert_eq!(
        code(&report, Layer::PodNetwork),
        Some(Code::PodNetworkConnectFailed)
    );
    assert!(step(&report, Layer::PodNetwork).evidence[0].contains("unreachable (host)"));
}

fn mtu(ip_: &str, node: &str, outcome: netdiag_proto::PathMtuOutcome) -> PathMtuWitness {
    PathMtuWitness {
        ip: ip(ip_),
        port: 8080,
        node: Some(node.into()),
        outcome: Fact::Known(outcome),
    }
}

fn measured(passed: u32, dropped: Option<u32>, learned: Option<u32>) -> netdiag_proto::PathMtuOutcome {
    netdiag_proto::PathMtuOutcome::Measured {
        interface_mtu: 1500,
        largest_passed_bytes: passed,
        smallest_dropped_bytes: dropped,
        learned_pmtu_bytes: learned,
    }
}

#[test]
fn an_mtu_black_hole_fails_pod_network_although_every_connection_succeeds() {
    let mut ev = healthy();
    ev.witnesses.path_mtu = vec![
        mtu("10.244.1.14", "node-a", measured(1500, None, None)),
        mtu("10.244.2.14", "node-b", measured(1200, Some(1210), None)),
    ];
    let report = judge(&ev, 0);
    assert_fails_at(&report, Layer::PodNetwork);
    assert_eq!(
        pod_network_finding(&ev),
        PodNetworkFinding::MtuBlackHole(MtuFinding {
            holes: NonEmpty::new(Hole {
                span: Span::Nodes {
                    src: Some("node-a".into()),
                    node: "node-b".into(),
                },
                largest_passed_bytes: 1200,
                interface_mtu: 1500,
            }),
            to: ip("10.244.2.14"),
            behind: vec!["shop/payments-1".into()],
            total: 2,
        })
    );
    assert!(evidence_text(&report, Layer::PodNetwork).contains("1210-byte ones never are"));
}

#[test]
fn an_mtu_black_hole_on_the_source_link_fails_each_endpoint_behind_it_and_names_every_node_pair() {
    let mut ev = healthy();
    let more = [
        pod("shop", "payments-2", "node-c", "10.244.3.14"),
        pod("shop", "payments-3", "node-c", "10.244.3.15"),
    ];
    endpoints_mut(&mut ev).extend(more.into_iter().map(endpoint));
    // Measured once per node (node-c's lowest address): the same path serves payments-3.
    ev.witnesses.path_mtu = vec![
        mtu("10.244.1.14", "node-a", measured(1500, None, None)),
        mtu("10.244.2.14", "node-b", measured(1200, Some(1210), None)),
        mtu("10.244.3.14", "node-c", measured(1200, Some(1210), None)),
    ];
    let report = judge(&ev, 0);
    assert_fails_at(&report, Layer::PodNetwork);
    let PodNetworkFinding::MtuBlackHole(mtu) = pod_network_finding(&ev) else {
        panic!("no black hole: {report:#?}");
    };
    assert_eq!(
        mtu.behind,
        ["shop/payments-1", "shop/payments-2", "shop/payments-3"]
    );
    assert_eq!(mtu.total, 4);
    let spans: Vec<String> = mtu.holes.iter().map(|h| h.span.to_string()).collect();
    assert_eq!(spans, ["between node-a and node-b", "between node-a and node-c"]);
    let statuses: Vec<(Status, Option<Layer>, bool)> = report
        .endpoints
        .iter()
        .map(|e| (e.status, e.failing_layer, e.path_mtu.is_some()))
        .collect();
    let behind = (Status::Fail, Some(Layer::PodNetwork), true);
    assert_eq!(statuses, [(Status::Pass, None, false), behind, behind, behind]);
    assert!(
        report.endpoints[3]
            .path_mtu
            .as_deref()
            .is_some_and(|m| m.contains("between node-a and node-c")),
        "{:?}",
        report.endpoints[3]
    );
}

#[test]
fn a_smaller_path_mtu_learned_from_icmp_is_no_black_hole() {
    let mut ev = healthy();
    ev.witnesses.path_mtu = vec![mtu("10.244.2.14", "node-b", measured(1500, None, Some(1450)))];
    let report = judge(&ev, 0);
    assert_eq!(report.verdict, Verdict::Reachable);
    assert_eq!(code(&report, Layer::PodNetwork), Some(Code::PodNetworkAnswers));
    assert!(evidence_text(&report, Layer::PodNetwork).contains("learned from ICMP"));
}

#[test]
fn an_unmeasured_path_mtu_says_why_and_changes_no_verdict() {
    let mut ev = healthy();
    ev.witnesses.path_mtu = vec![PathMtuWitness {
        ip: ip("10.244.2.14"),
        port: 8080,
        node: Some("node-b".into()),
        outcome: Fact::Unknown(agent_missing("node-a")),
    }];
    ev.witnesses.captures = vec![capture("10.244.2.14", |c| {
        c.error = Some("the agent lacks CAP_NET_RAW".into())
    })];
    let report = judge(&ev, 0);
    assert_eq!(report.verdict, Verdict::Reachable);
    let text = evidence_text(&report, Layer::PodNetwork);
    assert!(text.contains("path MTU to 10.244.2.14 not measured"), "{text}");
    assert!(text.contains("CAP_NET_RAW"), "{text}");
}

/// A capture at `ip_` that started at t=100 and ran its whole window, changed by `edit`; the TCP
/// probe's SYN left port 40000 at t=200.
fn capture(ip_: &str, edit: impl FnOnce(&mut netdiag_proto::CaptureResult)) -> CaptureWitness {
    let mut c = netdiag_proto::CaptureResult {
        peer: Some(ip("10.244.1.5")),
        port: 8080,
        interfaces: vec!["eth0".into()],
        started_unix_us: 100,
        duration_ms: 1150,
        stopped: "window".into(),
        flows: vec![],
        error: None,
    };
    edit(&mut c);
    CaptureWitness {
        ip: ip(ip_),
        probe_port: Some(40000),
        probe_started_unix_us: Some(200),
        probe_last_syn_unix_us: None,
        mtu_syn_unix_us: None,
        capture: Fact::Known(c),
    }
}

fn flow(syn_ack: bool) -> netdiag_proto::CapturedFlow {
    netdiag_proto::CapturedFlow {
        peer_port: 40000,
        syn_seen: true,
        syn_ack_sent: syn_ack,
        ..Default::default()
    }
}

/// What the failing path's finding says the capture saw, and the step's evidence.
fn pod_network_with_capture(witness: CaptureWitness) -> (Option<PacketReading>, String) {
    let mut ev = healthy();
    endpoints_mut(&mut ev)[1].live = LiveFact::Tcp(timeout());
    ev.witnesses.captures = vec![witness];
    let report = judge(&ev, 0);
    assert_fails_at(&report, Layer::PodNetwork);
    let PodNetworkFinding::PathFailed { packet, .. } = pod_network_finding(&ev) else {
        panic!("not a path failure: {report:#?}");
    };
    (packet, evidence_text(&report, Layer::PodNetwork))
}

fn never_reached() -> Option<PacketReading> {
    Some(PacketReading::NeverArrived {
        from: "checkout".into(),
        pod: "payments-1".into(),
    })
}

#[test]
fn a_capture_that_saw_no_syn_says_it_never_reached_the_pod() {
    let (packet, _) = pod_network_with_capture(capture("10.244.2.14", |_| {}));
    assert_eq!(packet, never_reached());
}

#[test]
fn a_capture_started_after_the_syn_claims_nothing() {
    let (packet, e) = pod_network_with_capture(capture("10.244.2.14", |c| c.started_unix_us = 300));
    assert_eq!(packet, None);
    assert!(!e.contains("never reached"), "{e}");
}

#[test]
fn a_capture_started_after_the_syn_but_before_a_later_beacon_says_it_never_reached_the_pod() {
    let mut late = capture("10.244.2.14", |c| c.started_unix_us = 300);
    late.probe_last_syn_unix_us = Some(900);
    let (packet, _) = pod_network_with_capture(late);
    assert_eq!(packet, never_reached());
}

#[test]
fn a_syn_that_arrived_unanswered_and_a_reply_that_never_came_back_are_told_apart() {
    let (packet, _) = pod_network_with_capture(capture("10.244.2.14", |c| c.flows = vec![flow(false)]));
    assert_eq!(
        packet,
        Some(PacketReading::Unanswered {
            pod: "payments-1".into()
        })
    );
    let (packet, _) = pod_network_with_capture(capture("10.244.2.14", |c| c.flows = vec![flow(true)]));
    assert_eq!(
        packet,
        Some(PacketReading::SynAckLeft {
            from: "checkout".into(),
            pod: "payments-1".into(),
            completed: false,
        })
    );
}

#[test]
fn silence_from_a_bound_socket_with_policy_allowing_is_undetermined() {
    let mut ev = healthy_udp();
    set_udp(&mut ev, silent());
    let report = judge(&ev, 0);
    assert_eq!(report.verdict, Verdict::Undetermined, "{report:#?}");
    let s = step(&report, Layer::PodNetwork);
    assert_eq!(s.status, Status::Undetermined);
    assert_eq!(s.summary.code, Some(Code::PodNetworkSilent));
    let PodNetworkFinding::Silent { first, silent, total } = pod_network_finding(&ev) else {
        panic!("not silence: {report:#?}");
    };
    assert_eq!((silent, total), (2, 2));
    assert_eq!(first.unexplained, Some(Unexplained::BoundAndAllowed(5353)));
    assert!(s.evidence.iter().any(|l| l.text.contains("bound to 5353")));
}

#[test]
fn an_icmp_unreachable_with_policy_allowing_fails_pod_network_for_certain() {
    let mut ev = healthy_udp();
    endpoints_mut(&mut ev)[1].live = LiveFact::Udp(Fact::Known(UdpOutcome::Unreachable {
        reason: UnreachableReason::AdminProhibited,
        detail: "icmp type 3 code 13 from 192.168.0.2".into(),
        rtt_us: 40,
    }));
    let report = judge(&ev, 0);
    assert_fails_at(&report, Layer::PodNetwork);
    assert_eq!(
        code(&report, Layer::PodNetwork),
        Some(Code::PodNetworkDatagramRejected)
    );
    let PodNetworkFinding::DatagramRejected {
        first,
        failing,
        total,
    } = pod_network_finding(&ev)
    else {
        panic!("not a rejected datagram: {report:#?}");
    };
    assert_eq!((first.endpoint, failing, total), (label(&mut ev, 1), 1, 2));
}

/// A check of 198.51.100.10:443 from shop/checkout on node-a whose connection timed out, with
/// the watch of node-a: it covered the probe (started before its first SYN, at 2 ms; the probe
/// waited until 1002 ms) and saw what `watch` fills in.
fn egress(watch: impl FnOnce(&mut netdiag_proto::EgressResult)) -> Evidence {
    let mut ev = healthy();
    ev.destination = Destination::External;
    ev.dns = None;
    ev.service = ServiceFacts::NotApplicable;
    ev.cluster_ip = None;
    let mut e = endpoint(pod("x", "y", "node-b", "198.51.100.10"));
    e.pod = None;
    e.port = Some(443);
    e.live = LiveFact::Tcp(timeout());
    ev.endpoints = EndpointsFacts::Known(vec![e]);
    let mut result = netdiag_proto::EgressResult {
        ip: Some(ip("198.51.100.10")),
        port: 443,
        interface: Some("eth0".into()),
        gateway: Some(ip("192.168.0.254")),
        node_address: Some(ip("192.168.0.1")),
        started_unix_us: 1_000,
        duration_ms: 1010,
        stopped: netdiag_proto::CaptureStop::Window,
        from_pod: 10,
        ..Default::default()
    };
    watch(&mut result);
    ev.witnesses.egress = vec![EgressWitness {
        ip: ip("198.51.100.10"),
        node: "node-a".into(),
        pod_ip: ip("10.244.1.5"),
        probe_started_unix_us: Some(2_000),
        probe_last_syn_unix_us: Some(900_000),
        watch: Fact::Known(result),
    }];
    ev
}

fn left(address: &str) -> Vec<netdiag_proto::EgressSource> {
    vec![netdiag_proto::EgressSource {
        address: ip(address),
        syns: 10,
    }]
}

#[test]
fn an_outside_address_that_answers_is_reachable_as_an_address_not_a_pod() {
    let mut ev = egress(|_| {});
    endpoints_mut(&mut ev)[0].live = LiveFact::Tcp(connected());
    endpoints_mut(&mut ev)[0].listeners = Fact::Unknown(ToolFailure::NotProbed("not a pod".into()));
    let report = judge(&ev, 0);
    assert_eq!(report.verdict, Verdict::Reachable, "{report:#?}");
    assert_eq!(
        summary(&report, Layer::Application),
        "1/1 destination addresses accept the connection"
    );
}

#[test]
fn a_connection_that_left_translated_and_got_no_answer_is_a_hand_off_not_a_failing_layer() {
    let ev = egress(|r| r.left = left("192.168.0.1"));
    let report = judge(&ev, 0);
    assert_eq!(report.verdict, Verdict::Undetermined);
    assert_eq!(step(&report, Layer::PodNetwork).status, Status::Undetermined);
    assert_eq!(
        code(&report, Layer::PodNetwork),
        Some(Code::PodNetworkEgressNoAnswer)
    );
    let text = summary(&report, Layer::PodNetwork);
    assert!(
        text.contains(
            "left node-a by eth0 as 192.168.0.1 (SNAT of 10.244.1.5) towards 192.168.0.254; no answer came back"
        ),
        "{text}"
    );
    assert!(text.contains("outside the cluster's reach"), "{text}");
}

#[test]
fn a_private_pod_address_leaving_untranslated_for_a_public_one_fails_on_the_missing_snat() {
    let ev = egress(|r| r.left = left("10.244.1.5"));
    let report = judge(&ev, 0);
    assert_fails_at(&report, Layer::PodNetwork);
    assert_eq!(
        code(&report, Layer::PodNetwork),
        Some(Code::PodNetworkEgressNotTranslated)
    );
    assert!(
        report.commands.iter().any(|f| f.contains("POSTROUTING")),
        "{:?}",
        report.commands
    );
}

#[test]
fn an_untranslated_connection_within_the_clusters_networks_is_judged_as_any_lost_one() {
    // On a link of the node (no next hop); to a private address (a node, an address of the pod
    // network no pod holds, a VPC host): pods reach those without SNAT.
    let on_link = egress(|r| {
        r.left = left("10.244.1.5");
        r.gateway = None;
    });
    let mut private = egress(|r| r.left = left("10.244.1.5"));
    endpoints_mut(&mut private)[0].ip = ip("10.244.2.4");
    private.witnesses.egress[0].ip = ip("10.244.2.4");
    for ev in [on_link, private] {
        let report = judge(&ev, 0);
        assert_fails_at(&report, Layer::PodNetwork);
        assert_eq!(
            code(&report, Layer::PodNetwork),
            Some(Code::PodNetworkConnectFailed)
        );
        let evidence = evidence_text(&report, Layer::PodNetwork);
        assert!(
            evidence.contains("egress witness: left node-a by eth0 with the pod's own address 10.244.1.5"),
            "{evidence}"
        );
    }
}

#[test]
fn a_host_network_pod_leaving_with_the_nodes_address_unanswered_is_handed_off() {
    let mut ev = egress(|r| {
        r.left = left("192.168.0.1");
        r.node_address = Some(ip("192.168.0.1"));
    });
    ev.witnesses.egress[0].pod_ip = ip("192.168.0.1");
    let report = judge(&ev, 0);
    assert_eq!(
        code(&report, Layer::PodNetwork),
        Some(Code::PodNetworkEgressNoAnswer)
    );
    assert_eq!(step(&report, Layer::PodNetwork).status, Status::Undetermined);
}

#[test]
fn the_pods_syns_reaching_the_node_and_none_leaving_is_a_drop_on_the_node() {
    let report = judge(&egress(|_| {}), 0);
    assert_fails_at(&report, Layer::PodNetwork);
    assert_eq!(
        code(&report, Layer::PodNetwork),
        Some(Code::PodNetworkEgressNeverLeft)
    );
    assert!(
        summary(&report, Layer::PodNetwork)
            .contains("the pod's SYNs reached node-a (10) and none left by eth0"),
        "{}",
        summary(&report, Layer::PodNetwork)
    );
}

#[test]
fn a_watch_that_started_after_the_last_syn_claims_nothing_left_or_not() {
    let ev = egress(|r| r.started_unix_us = 950_000);
    let report = judge(&ev, 0);
    assert_fails_at(&report, Layer::PodNetwork);
    assert_eq!(
        code(&report, Layer::PodNetwork),
        Some(Code::PodNetworkConnectFailed)
    );
}

#[test]
fn syns_to_the_address_that_cannot_be_tied_to_the_pod_claim_nothing_and_say_so() {
    let ev = egress(|r| r.others = 4);
    let report = judge(&ev, 0);
    assert_eq!(
        code(&report, Layer::PodNetwork),
        Some(Code::PodNetworkConnectFailed)
    );
    assert!(
        evidence_text(&report, Layer::PodNetwork)
            .contains("4 SYNs to 198.51.100.10 left that cannot be tied to the pod"),
        "{}",
        evidence_text(&report, Layer::PodNetwork)
    );
}

#[test]
fn a_watch_that_ran_out_of_packets_cannot_say_nothing_came_back() {
    let ev = egress(|r| {
        r.left = left("192.168.0.1");
        r.stopped = netdiag_proto::CaptureStop::PacketLimit;
    });
    let report = judge(&ev, 0);
    assert_eq!(
        code(&report, Layer::PodNetwork),
        Some(Code::PodNetworkConnectFailed)
    );
    assert!(evidence_text(&report, Layer::PodNetwork).contains("stopped at its packet budget"));
}

#[test]
fn an_answer_at_the_node_while_the_probe_waited_is_lost_on_the_node_and_a_late_one_is_not() {
    let lost = egress(|r| {
        r.left = left("192.168.0.1");
        r.syn_ack_seen = true;
        r.answered_unix_us = Some(500_000);
    });
    let report = judge(&lost, 0);
    assert_fails_at(&report, Layer::PodNetwork);
    assert_eq!(
        code(&report, Layer::PodNetwork),
        Some(Code::PodNetworkEgressAnswerLost)
    );
    assert!(
        summary(&report, Layer::PodNetwork).contains("a SYN-ACK came back there, but never reached the pod")
    );
    // After the probe gave up (1002 ms): a slow host, not an answer the node lost.
    let late = egress(|r| {
        r.left = left("192.168.0.1");
        r.syn_ack_seen = true;
        r.answered_unix_us = Some(1_500_000);
    });
    assert_eq!(
        code(&judge(&late, 0), Layer::PodNetwork),
        Some(Code::PodNetworkEgressNoAnswer)
    );
}

#[test]
fn a_failing_pod_beside_an_outside_address_keeps_the_pod_paths_judgment() {
    let mut ev = egress(|r| r.left = left("192.168.0.1"));
    let mut p = endpoint(pod("shop", "payments-1", "node-b", "10.244.2.15"));
    p.live = LiveFact::Tcp(timeout());
    endpoints_mut(&mut ev).push(p);
    let report = judge(&ev, 0);
    assert_fails_at(&report, Layer::PodNetwork);
    assert_ne!(
        code(&report, Layer::PodNetwork),
        Some(Code::PodNetworkEgressNoAnswer)
    );
}

#[test]
fn a_watch_that_could_not_run_leaves_the_plain_timeout_and_says_why() {
    let ev = egress(|r| {
        r.left = left("192.168.0.1");
        r.error = Some("the agent lacks CAP_NET_RAW".into());
    });
    let report = judge(&ev, 0);
    assert_eq!(
        code(&report, Layer::PodNetwork),
        Some(Code::PodNetworkConnectFailed)
    );
    assert!(
        evidence_text(&report, Layer::PodNetwork)
            .contains("egress witness on node-a for 198.51.100.10 unavailable")
    );
}
