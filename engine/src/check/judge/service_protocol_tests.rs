//! The `service` layer's protocol rule, judged on evidence built by hand.

use crate::check::judge::test_support::*;

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
