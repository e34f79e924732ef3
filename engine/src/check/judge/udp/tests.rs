//! The UDP rules of the judge with evidence built by hand: the service layer's protocol
//! comparison, and each live layer's reading of answers, ICMP errors and silence.

use netdiag_proto::UdpOutcome;

use super::*;

fn answered() -> Fact<UdpOutcome> {
    Fact::Known(UdpOutcome::Answered {
        rtt_us: 300,
        bytes: 12,
    })
}

fn silent() -> Fact<UdpOutcome> {
    Fact::Known(UdpOutcome::Silent { after_ms: 1000 })
}

fn port_unreachable() -> Fact<UdpOutcome> {
    Fact::Known(UdpOutcome::Refused { rtt_us: 80 })
}

fn bound(addr: &str, port: u16) -> ListeningSocket {
    ListeningSocket {
        protocol: Transport::Udp,
        ..listening(addr, port)
    }
}

/// `svc/payments.shop:5353` as a UDP Service port over pods that declare and bind 5353/UDP, every
/// datagram answered.
fn healthy_udp() -> Evidence {
    let mut ev = healthy();
    let svc = service_mut(&mut ev);
    svc.ports = vec![ServicePortFacts {
        name: Some("stats".into()),
        port: 5353,
        protocol: Protocol::Udp,
        target_port: PortRef::Number(5353),
    }];
    svc.requested = PortRef::Number(5353);
    for p in &mut svc.selected_pods {
        p.container_ports[0].port = 5353;
        p.container_ports[0].protocol = Protocol::Udp;
    }
    let pods = svc.selected_pods.clone();
    for (e, p) in endpoints_mut(&mut ev).iter_mut().zip(pods) {
        e.pod = Some(p);
        e.port = Some(5353);
        e.tcp = Fact::Unknown(ToolFailure::NotProbed("a UDP port".into()));
        e.udp = Some(answered());
        e.listeners = Fact::Known(vec![bound("0.0.0.0", 5353)]);
    }
    let cip = ev.cluster_ip.as_mut().unwrap();
    cip.port = 5353;
    cip.tcp = Fact::Unknown(ToolFailure::NotProbed("a UDP port".into()));
    cip.udp = Some(answered());
    ev
}

fn set_udp(ev: &mut Evidence, outcome: Fact<UdpOutcome>) {
    for e in endpoints_mut(ev) {
        e.udp = Some(outcome.clone());
    }
    ev.cluster_ip.as_mut().unwrap().udp = Some(outcome);
}

#[test]
fn answered_datagrams_make_a_udp_service_reachable() {
    let report = judge(&healthy_udp(), 0);
    assert_eq!(report.verdict, Verdict::Reachable, "{report:#?}");
    assert!(summary(&report, Layer::Application).contains("answer the datagram"));
    assert!(summary(&report, Layer::ServiceProxy).contains("/UDP"));
    assert_eq!(
        report.endpoints[0].udp.as_deref(),
        Some("answered (12 bytes in 0.3 ms)")
    );
}

#[test]
fn udp_service_over_pods_serving_tcp_fails_service_with_a_protocol_mismatch() {
    let mut ev = healthy_udp();
    for p in &mut service_mut(&mut ev).selected_pods {
        p.container_ports[0].protocol = Protocol::Tcp;
    }
    set_udp(&mut ev, silent());
    for e in endpoints_mut(&mut ev) {
        e.listeners = Fact::Known(vec![listening("0.0.0.0", 5353)]);
    }
    let report = judge(&ev, 0);
    assert_fails_at(&report, Layer::Service);
    let text = summary(&report, Layer::Service);
    assert!(text.contains("protocol mismatch"), "{text}");
    assert!(text.contains("port 5353/UDP"), "{text}");
    assert!(text.contains("declare and serve it over TCP"), "{text}");
    assert!(
        report.fix.iter().any(|f| f.contains("protocol to TCP")),
        "{:?}",
        report.fix
    );
}

#[test]
fn declared_protocol_alone_decides_when_the_sockets_are_unknown() {
    let mut ev = healthy_udp();
    for p in &mut service_mut(&mut ev).selected_pods {
        p.container_ports[0].protocol = Protocol::Tcp;
    }
    for e in endpoints_mut(&mut ev) {
        e.listeners = Fact::Unknown(ToolFailure::NotProbed("not probed".into()));
    }
    let report = judge(&ev, 0);
    assert_fails_at(&report, Layer::Service);
    assert!(summary(&report, Layer::Service).contains("declare it as TCP only"));
}

#[test]
fn a_socket_of_the_service_protocol_overrides_a_declaration_of_another() {
    let mut ev = healthy_udp();
    for p in &mut service_mut(&mut ev).selected_pods {
        p.container_ports[0].protocol = Protocol::Tcp;
    }
    let report = judge(&ev, 0);
    assert_eq!(report.verdict, Verdict::Reachable, "{report:#?}");
}

#[test]
fn named_target_port_declared_over_another_protocol_fails_service() {
    let mut ev = healthy();
    service_mut(&mut ev).ports[0].protocol = Protocol::Udp;
    let report = judge(&ev, 0);
    assert_fails_at(&report, Layer::Service);
    let text = summary(&report, Layer::Service);
    assert!(text.contains("targetPort http"), "{text}");
    assert!(text.contains("declare it as TCP only"), "{text}");
}

#[test]
fn tcp_service_whose_pods_listen_on_tcp_has_no_protocol_mismatch() {
    assert_eq!(judge(&healthy(), 0).verdict, Verdict::Reachable);
}

#[test]
fn icmp_port_unreachable_fails_application_naming_what_is_bound() {
    let mut ev = healthy_udp();
    set_udp(&mut ev, port_unreachable());
    for e in endpoints_mut(&mut ev) {
        e.listeners = Fact::Known(vec![bound("0.0.0.0", 9999)]);
    }
    for p in &mut service_mut(&mut ev).selected_pods {
        p.container_ports.clear();
    }
    let report = judge(&ev, 0);
    assert_fails_at(&report, Layer::Application);
    let text = summary(&report, Layer::Application);
    assert!(text.contains("nothing in the pod is bound to 5353/UDP"), "{text}");
    assert!(text.contains("0.0.0.0:9999"), "{text}");
    assert!(summary(&report, Layer::ServiceProxy).contains("with nothing bound do"));
}

#[test]
fn silence_with_policy_denying_fails_network_policy_as_likely() {
    let mut ev = healthy_udp();
    set_udp(&mut ev, silent());
    for e in endpoints_mut(&mut ev) {
        e.policy = ingress_denied();
    }
    let report = judge(&ev, 0);
    assert_fails_at(&report, Layer::NetworkPolicy);
    let text = summary(&report, Layer::NetworkPolicy);
    assert!(text.contains("likely, not proven"), "{text}");
    let evidence = &step(&report, Layer::NetworkPolicy).evidence;
    assert!(
        evidence
            .iter()
            .any(|l| l.text.contains("UDP silence alone is not proof"))
    );
}

#[test]
fn admin_prohibited_with_policy_denying_is_certain() {
    let mut ev = healthy_udp();
    set_udp(
        &mut ev,
        Fact::Known(UdpOutcome::Unreachable {
            reason: UnreachableReason::AdminProhibited,
            detail: "icmp type 3 code 13 from 10.244.1.1".into(),
            rtt_us: 40,
        }),
    );
    for e in endpoints_mut(&mut ev) {
        e.policy = ingress_denied();
    }
    let report = judge(&ev, 0);
    assert_fails_at(&report, Layer::NetworkPolicy);
    assert!(summary(&report, Layer::NetworkPolicy).ends_with("(certain)"));
}

#[test]
fn answered_datagram_despite_a_denying_policy_is_a_disagreement() {
    let mut ev = healthy_udp();
    for e in endpoints_mut(&mut ev) {
        e.policy = ingress_denied();
    }
    let report = judge(&ev, 0);
    assert_eq!(report.verdict, Verdict::Reachable);
    assert!(summary(&report, Layer::NetworkPolicy).contains("does not enforce NetworkPolicy"));
}

#[test]
fn silence_from_a_bound_socket_with_policy_allowing_is_undetermined() {
    let mut ev = healthy_udp();
    set_udp(&mut ev, silent());
    let report = judge(&ev, 0);
    assert_eq!(report.verdict, Verdict::Undetermined, "{report:#?}");
    let s = step(&report, Layer::PodNetwork);
    assert_eq!(s.status, Status::Undetermined);
    assert!(s.summary.contains("cannot tell"), "{}", s.summary);
    assert!(
        s.summary.contains("the endpoint gets no answer") || s.summary.contains("endpoints get no answer"),
        "{}",
        s.summary
    );
    assert!(s.evidence.iter().any(|l| l.text.contains("bound to 5353")));
}

#[test]
fn silence_where_nothing_is_bound_fails_application_like_a_refusal_would() {
    let refused = {
        let mut ev = healthy_udp();
        set_udp(&mut ev, port_unreachable());
        for e in endpoints_mut(&mut ev) {
            e.listeners = Fact::Known(vec![]);
        }
        judge(&ev, 0)
    };
    let mut ev = healthy_udp();
    set_udp(&mut ev, silent());
    for e in endpoints_mut(&mut ev) {
        e.listeners = Fact::Known(vec![]);
    }
    let report = judge(&ev, 0);
    assert_fails_at(&report, Layer::Application);
    // A rate-limited port-unreachable gives the same verdict and summary as one that came back.
    assert_eq!(
        summary(&report, Layer::Application),
        summary(&refused, Layer::Application)
    );
    let evidence = &step(&report, Layer::Application).evidence;
    assert!(
        evidence
            .iter()
            .any(|l| l.text.contains("rate-limits ICMP errors"))
    );
    assert!(summary(&report, Layer::PodNetwork).contains("2 with nothing bound"));
}

#[test]
fn an_icmp_unreachable_with_policy_allowing_fails_pod_network_for_certain() {
    let mut ev = healthy_udp();
    endpoints_mut(&mut ev)[1].udp = Some(Fact::Known(UdpOutcome::Unreachable {
        reason: UnreachableReason::AdminProhibited,
        detail: "icmp type 3 code 13 from 192.168.0.2".into(),
        rtt_us: 40,
    }));
    let report = judge(&ev, 0);
    assert_fails_at(&report, Layer::PodNetwork);
    let text = summary(&report, Layer::PodNetwork);
    assert!(text.starts_with("1 of 2 endpoints fails"), "{text}");
    assert!(text.ends_with("(certain)"), "{text}");
}

#[test]
fn a_vip_meeting_an_endpoint_with_nothing_bound_passes_service_proxy() {
    let mut ev = healthy_udp();
    endpoints_mut(&mut ev)[1].udp = Some(port_unreachable());
    endpoints_mut(&mut ev)[1].listeners = Fact::Known(vec![]);
    for vip in [silent(), port_unreachable(), answered()] {
        ev.cluster_ip.as_mut().unwrap().udp = Some(vip);
        let report = judge(&ev, 0);
        assert_fails_at(&report, Layer::Application);
        assert!(summary(&report, Layer::Application).starts_with("1 of 2 endpoints has nothing bound"));
    }
}

#[test]
fn silence_with_policy_not_evaluated_is_undetermined_at_network_policy() {
    let mut ev = healthy_udp();
    set_udp(&mut ev, silent());
    for e in endpoints_mut(&mut ev) {
        e.policy = PolicyCheck::NotEvaluated(forbidden("list networkpolicies"));
    }
    let report = judge(&ev, 0);
    assert_eq!(report.verdict, Verdict::Undetermined);
    assert_eq!(step(&report, Layer::NetworkPolicy).status, Status::Undetermined);
}

#[test]
fn cluster_ip_silent_while_pod_ips_answer_fails_service_proxy() {
    let mut ev = healthy_udp();
    ev.cluster_ip.as_mut().unwrap().udp = Some(silent());
    let report = judge(&ev, 0);
    assert_fails_at(&report, Layer::ServiceProxy);
    assert!(summary(&report, Layer::ServiceProxy).contains("rules are missing"));
}

#[test]
fn a_protocol_the_service_port_is_not_served_over_fails_service_naming_it() {
    let mut ev = healthy();
    service_mut(&mut ev).requested_protocol = Some(Protocol::Udp);
    let report = judge(&ev, 0);
    assert_fails_at(&report, Layer::Service);
    assert_eq!(
        summary(&report, Layer::Service),
        "shop/payments does not expose port 80/UDP; it exposes 80/TCP (http)"
    );
}

#[test]
fn a_refusal_despite_a_denying_policy_is_judged_at_network_policy_and_says_it_got_through() {
    let mut ev = healthy_udp();
    set_udp(&mut ev, port_unreachable());
    for e in endpoints_mut(&mut ev) {
        e.policy = ingress_denied();
        e.listeners = Fact::Known(vec![]);
    }
    let report = judge(&ev, 0);
    assert_fails_at(&report, Layer::NetworkPolicy);
    assert!(
        report
            .endpoints
            .iter()
            .all(|e| e.failing_layer == Some(Layer::NetworkPolicy))
    );
    let evidence = &step(&report, Layer::NetworkPolicy).evidence;
    assert!(
        evidence
            .iter()
            .any(|l| l.text.contains("the datagram got through"))
    );
}

/// `healthy_udp()` over IPv6: every endpoint has an IPv6 pod address, and each pod binds only
/// `0.0.0.0:5353`, which takes no IPv6 datagrams.
fn ipv6_to_an_ipv4_wildcard(outcome: Fact<UdpOutcome>) -> Evidence {
    let mut ev = healthy_udp();
    set_udp(&mut ev, outcome);
    for (i, e) in endpoints_mut(&mut ev).iter_mut().enumerate() {
        e.ip = ip(&format!("fd00:10:244:2::{}", i + 2));
        e.listeners = Fact::Known(vec![bound("0.0.0.0", 5353)]);
    }
    ev
}

#[test]
fn ipv6_refused_by_an_ipv4_only_udp_socket_names_the_family_as_tcp_does() {
    let report = judge(&ipv6_to_an_ipv4_wildcard(port_unreachable()), 0);
    assert_fails_at(&report, Layer::Application);
    let text = summary(&report, Layer::Application);
    assert!(
        text.contains(
            "bound to 5353/UDP only on 0.0.0.0:5353, which takes no datagrams of this address family"
        ),
        "{text}"
    );
    assert!(!text.contains("REJECT rule"), "{text}");
    assert!(
        report.hints[0].contains("[::] with IPV6_V6ONLY off"),
        "{:?}",
        report.hints
    );
}

#[test]
fn ipv6_silence_at_an_ipv4_only_udp_socket_is_nothing_bound_not_undetermined() {
    let report = judge(&ipv6_to_an_ipv4_wildcard(silent()), 0);
    assert_fails_at(&report, Layer::Application);
    let text = summary(&report, Layer::Application);
    assert!(
        text.contains("which takes no datagrams of this address family"),
        "{text}"
    );
}
