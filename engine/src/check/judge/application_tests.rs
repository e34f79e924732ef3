//! The `application` layer, judged on evidence built by hand.

use crate::check::judge::test_support::*;

/// What the application layer found about each refusing destination's sockets, and over what.
fn refusals(ev: &Evidence) -> (Transport, Vec<ListenerFinding>) {
    match finding(ev, judge_application) {
        Finding::Application(ApplicationFinding::Refused {
            transport, refused, ..
        }) => (transport, refused.iter().map(|r| r.sockets.clone()).collect()),
        other => panic!("not a refusal: {other:?}"),
    }
}

#[test]
fn refusal_while_the_pod_listens_on_the_port_does_not_claim_a_missing_listener() {
    let mut ev = healthy();
    for e in endpoints_mut(&mut ev) {
        e.live = LiveFact::Tcp(refused());
    }
    ev.cluster_ip = Some(ClusterIpFacts {
        ip: ip(VIP),
        port: 80,
        live: LiveFact::Tcp(refused()),
    });
    let report = judge(&ev, 0);
    assert_fails_at(&report, Layer::Application);
    assert_eq!(
        code(&report, Layer::Application),
        Some(Code::ApplicationRefusedOnPath)
    );
    assert_eq!(
        refusals(&ev),
        (Transport::Tcp, vec![ListenerFinding::ListensAnyway; 2])
    );
}

#[test]
fn app_bound_to_loopback_fails_application_and_says_so() {
    let mut ev = healthy();
    for e in endpoints_mut(&mut ev) {
        e.live = LiveFact::Tcp(refused());
        e.listeners = Fact::Known(vec![listening("127.0.0.1", 8080)]);
    }
    ev.cluster_ip = Some(ClusterIpFacts {
        ip: ip(VIP),
        port: 80,
        live: LiveFact::Tcp(refused()),
    });
    let report = judge(&ev, 0);
    assert_fails_at(&report, Layer::Application);
    assert_eq!(
        code(&report, Layer::Application),
        Some(Code::ApplicationLoopbackOnly)
    );
    assert_eq!(
        refusals(&ev).1,
        vec![ListenerFinding::LoopbackOnly(ip("127.0.0.1")); 2]
    );
    assert!(report.fix[0].contains("0.0.0.0"));
}

#[test]
fn refusal_with_unknown_listeners_is_still_the_application() {
    let mut ev = healthy();
    for e in endpoints_mut(&mut ev) {
        e.live = LiveFact::Tcp(refused());
        e.listeners = Fact::Unknown(agent_missing("node-b"));
    }
    ev.cluster_ip = Some(ClusterIpFacts {
        ip: ip(VIP),
        port: 80,
        live: LiveFact::Tcp(refused()),
    });
    let report = judge(&ev, 0);
    assert_fails_at(&report, Layer::Application);
    assert_eq!(
        code(&report, Layer::Application),
        Some(Code::ApplicationSocketsUnknown)
    );
    assert_eq!(
        refusals(&ev).1,
        vec![ListenerFinding::Unknown(agent_missing("node-b")); 2]
    );
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
    assert_eq!(
        code(&report, Layer::Application),
        Some(Code::ApplicationNotListening)
    );
    assert_eq!(
        refusals(&ev),
        (
            Transport::Udp,
            vec![ListenerFinding::NotOnPort(vec!["0.0.0.0:9999".into()]); 2]
        )
    );
    assert_eq!(
        finding(&ev, judge_service_proxy),
        Finding::ServiceProxy(ServiceProxyFinding::AsEndpoints {
            vip: Vip {
                ip: ip(VIP),
                port: 5353,
                transport: Transport::Udp,
                kind: VipKind::ClusterIp,
            },
            outcome: VipOutcome::Udp(UdpOutcome::Refused { rtt_us: 80 }),
            alike: Alike::Unbound { unbound: 2, total: 2 },
        })
    );
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
    // A rate-limited port-unreachable gives the same verdict, finding and summary as one that
    // came back.
    assert_eq!(
        code(&report, Layer::Application),
        Some(Code::ApplicationNotListening)
    );
    assert_eq!(
        step(&report, Layer::Application).summary,
        step(&refused, Layer::Application).summary
    );
    let evidence = &step(&report, Layer::Application).evidence;
    assert!(
        evidence
            .iter()
            .any(|l| l.text.contains("rate-limits ICMP errors"))
    );
    assert!(matches!(
        finding(&ev, judge_pod_network),
        Finding::PodNetwork(PodNetworkFinding::Answer { unbound: 2, .. })
    ));
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
    let ev = ipv6_to_an_ipv4_wildcard(port_unreachable());
    let report = judge(&ev, 0);
    assert_fails_at(&report, Layer::Application);
    assert_eq!(
        code(&report, Layer::Application),
        Some(Code::ApplicationOtherFamilyOnly)
    );
    assert_eq!(
        refusals(&ev),
        (
            Transport::Udp,
            vec![ListenerFinding::OtherFamilyOnly(vec!["0.0.0.0:5353".into()]); 2]
        )
    );
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
    assert_eq!(
        code(&report, Layer::Application),
        Some(Code::ApplicationOtherFamilyOnly)
    );
}
