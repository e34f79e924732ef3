//! The whole judge on evidence built by hand: the walk over the layers, the endpoint list
//! and what crosses layers.

use crate::check::judge::test_support::*;

#[test]
fn healthy_service_is_reachable_with_every_layer_passing() {
    let report = judge(&healthy(), 42);
    assert_eq!(report.verdict, Verdict::Reachable);
    assert_eq!(report.reachable, Some(true));
    assert_eq!(report.failing_layer, None);
    assert_eq!(report.exit_code(), 0);
    assert_eq!(report.duration_ms, 42);
    let layers: Vec<Layer> = report.steps.iter().map(|s| s.layer).collect();
    assert_eq!(layers, Layer::ALL.to_vec());
    assert!(
        report.steps.iter().all(|s| s.status == Status::Pass),
        "{report:#?}"
    );
    assert_eq!(code(&report, Layer::Source), Some(Code::SourceProbed));
    assert!(matches!(
        finding(&healthy(), judge_dns),
        Finding::Dns(DnsFinding::Resolved {
            via: Some(Via { position: 1, .. }),
            ..
        })
    ));
    assert_eq!(
        finding(&healthy(), judge_endpoints),
        ready_of(&["payments-0", "payments-1"], 2)
    );
    assert!(report.fix.is_empty());
}

#[test]
fn dns_blocked_by_policy_stays_the_one_failing_layer_when_the_service_has_no_ready_pods_too() {
    let mut ev = healthy();
    let dns = dns_mut(&mut ev);
    dns.result = Fact::Known(dns_result("payments.shop", DnsOutcome::Timeout));
    if let Fact::Known(c) = &mut dns.cluster_dns {
        c.pods[0].direct = Fact::Known(DnsOutcome::Timeout);
        c.pods[0].egress_policy = PolicyCheck::Denied {
            egress: Some(denied_side(
                "shop/checkout",
                to("kube-system/coredns-0"),
                "shop/egress-lockdown",
                53,
                "UDP",
            )),
            ingress: None,
        };
    }
    for e in endpoints_mut(&mut ev) {
        e.conditions.ready = false;
    }
    for p in &mut service_mut(&mut ev).selected_pods {
        p.ready = false;
    }
    let report = judge(&ev, 0);
    assert_fails_at(&report, Layer::NetworkPolicy);
    let endpoints = step(&report, Layer::Endpoints);
    assert_eq!(endpoints.status, Status::Skip);
    assert!(
        endpoints.summary.contains("judged at network-policy"),
        "{endpoints:?}"
    );
    assert_eq!(
        endpoints.summary.code,
        Some(Code::EndpointsNoneReady),
        "{endpoints:?}"
    );
}

#[test]
fn pod_target_skips_service_layers_as_not_applicable() {
    let mut ev = healthy();
    ev.destination = Destination::Pod;
    ev.dns = None;
    ev.service = ServiceFacts::NotApplicable;
    ev.cluster_ip = None;
    ev.endpoints = EndpointsFacts::Known(vec![endpoint(pod("shop", "payments-0", "node-b", "10.244.2.14"))]);
    let report = judge(&ev, 0);
    assert_eq!(report.verdict, Verdict::Reachable, "{report:#?}");
    for layer in [Layer::Dns, Layer::Service, Layer::ServiceProxy] {
        assert_eq!(step(&report, layer).status, Status::Skip);
        assert!(summary(&report, layer).starts_with("not applicable"));
    }
    assert_eq!(code(&report, Layer::Dns), Some(Code::DnsNotApplicable));
    assert_eq!(
        finding(&ev, judge_service),
        Finding::Service(ServiceFinding::NotApplicable {
            destination: Destination::Pod
        })
    );
    assert_eq!(
        finding(&ev, judge_endpoints),
        Finding::Endpoints(EndpointsFinding::PodRunning {
            pod: NamespacedName::new("shop", "payments-0"),
            node: Some("node-b".into()),
            ip: ip("10.244.2.14"),
            port: 8080,
        })
    );
}

#[test]
fn external_address_is_judged_on_policy_and_path_only() {
    let mut ev = healthy();
    ev.destination = Destination::External;
    ev.dns = None;
    ev.service = ServiceFacts::NotApplicable;
    ev.cluster_ip = None;
    let mut e = endpoint(pod("x", "y", "node-b", "192.0.2.10"));
    e.pod = None;
    e.live = LiveFact::Tcp(timeout());
    ev.endpoints = EndpointsFacts::Known(vec![e]);
    let report = judge(&ev, 0);
    assert_fails_at(&report, Layer::PodNetwork);
    assert_eq!(step(&report, Layer::Endpoints).status, Status::Skip);
    assert_eq!(
        finding(&ev, judge_endpoints),
        Finding::Endpoints(EndpointsFinding::NotApplicable(NoEndpoints::External))
    );
}

#[test]
fn a_port_that_is_not_probed_leaves_the_live_layers_undetermined_with_the_reason() {
    let mut ev = healthy();
    for e in endpoints_mut(&mut ev) {
        e.live = LiveFact::Tcp(Fact::Unknown(ToolFailure::NotProbed(
            "UDP port 53: netdiag probes TCP only".into(),
        )));
    }
    let report = judge(&ev, 0);
    assert_eq!(report.verdict, Verdict::Undetermined);
    assert!(summary(&report, Layer::PodNetwork).contains("netdiag probes TCP only"));
}

/// One of two endpoints refuses; whichever endpoint the single VIP connection reached, the
/// verdict is the same: the application of the refusing endpoint, with its share.
#[test]
fn one_refusing_endpoint_gives_the_same_verdict_whatever_the_vip_connection_reached() {
    let mut summaries = vec![];
    for vip in [connected(), refused()] {
        let mut ev = healthy();
        let bad = &mut endpoints_mut(&mut ev)[1];
        bad.live = LiveFact::Tcp(refused());
        bad.listeners = Fact::Known(vec![]);
        ev.cluster_ip.as_mut().unwrap().live = LiveFact::Tcp(vip);
        let report = judge(&ev, 0);
        assert_fails_at(&report, Layer::Application);
        assert_eq!(step(&report, Layer::ServiceProxy).status, Status::Pass);
        summaries.push(summary(&report, Layer::Application).to_string());
    }
    assert_eq!(summaries[0], summaries[1]);
    assert!(
        summaries[0].starts_with("1 of 2 endpoints refuses: shop/payments-1")
            && summaries[0].contains("about 1 in 2 new connections fail"),
        "{}",
        summaries[0]
    );
}

#[test]
fn the_report_lists_every_endpoint_with_its_own_layer() {
    let mut ev = healthy();
    endpoints_mut(&mut ev)[0].live = LiveFact::Tcp(refused());
    let report = judge(&ev, 0);
    let json = serde_json::to_value(&report).unwrap();
    let endpoints = json["endpoints"].as_array().unwrap();
    assert_eq!(endpoints.len(), 2);
    assert_eq!(endpoints[0]["status"], "fail");
    assert_eq!(endpoints[0]["failingLayer"], "application");
    assert_eq!(endpoints[0]["tcp"], "refused (RST)");
    assert_eq!(endpoints[1]["status"], "pass");
    assert!(endpoints[1].get("failingLayer").is_none());
    assert_eq!(endpoints[1]["node"], "node-b");
}

#[test]
fn passing_lists_are_shortened_and_say_how_many_more() {
    let names: Vec<String> = (0..90).map(|i| format!("payments-{i}")).collect();
    assert_eq!(
        describe::passing_names(&names, 5),
        "payments-0, payments-1, payments-2, payments-3, payments-4 and 85 more"
    );
    // Never "and 1 more": the one name fits as well.
    assert_eq!(describe::passing_names(&names[..6], 5), names[..6].join(", "));
    assert_eq!(describe::passing_names(&names[..2], 5), "payments-0, payments-1");
}

#[test]
fn answered_datagrams_make_a_udp_service_reachable() {
    let ev = healthy_udp();
    let report = judge(&ev, 0);
    assert_eq!(report.verdict, Verdict::Reachable, "{report:#?}");
    assert_eq!(
        finding(&ev, judge_application),
        Finding::Application(ApplicationFinding::Accepts {
            transport: Transport::Udp,
            accepted: 2,
            total: 2,
            pods: true,
        })
    );
    assert!(matches!(
        finding(&ev, judge_service_proxy),
        Finding::ServiceProxy(ServiceProxyFinding::AsEndpoints {
            vip: Vip {
                transport: Transport::Udp,
                ..
            },
            ..
        })
    ));
    assert_eq!(
        report.endpoints[0].udp.as_deref(),
        Some("answered (12 bytes in 0.3 ms)")
    );
}

#[test]
fn every_judged_step_carries_the_code_of_its_finding_and_a_step_not_judged_none() {
    let mut refusing = healthy();
    for e in endpoints_mut(&mut refusing) {
        e.live = LiveFact::Tcp(refused());
    }
    let mut silence = healthy_udp();
    set_udp(&mut silence, silent());
    for ev in [healthy(), healthy_udp(), refusing, silence] {
        let report = judge(&ev, 0);
        for step in &report.steps {
            let judged = !step.summary.starts_with("not judged");
            assert_eq!(step.summary.code.is_some(), judged, "{step:?}");
        }
    }
}
