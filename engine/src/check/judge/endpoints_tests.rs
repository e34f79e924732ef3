//! The `endpoints` layer, judged on evidence built by hand.

use crate::check::judge::test_support::*;

#[test]
fn selector_matching_no_pods_fails_endpoints() {
    let mut ev = healthy();
    service_mut(&mut ev).selected_pods.clear();
    ev.endpoints = EndpointsFacts::Known(vec![]);
    ev.cluster_ip = Some(ClusterIpFacts {
        ip: ip(VIP),
        port: 80,
        live: LiveFact::Tcp(refused()),
    });
    let report = judge(&ev, 0);
    assert_fails_at(&report, Layer::Endpoints);
    assert_eq!(
        finding(&ev, judge_endpoints),
        Finding::Endpoints(EndpointsFinding::SelectorMatchesNoPods {
            service: NamespacedName::new("shop", "payments"),
            selector: "app=payments".into(),
        })
    );
    assert_eq!(
        finding(&ev, judge_service),
        Finding::Service(ServiceFinding::NamedPortUnresolved {
            port: PORT_80,
            name: "http".into(),
        })
    );
    assert!(report.fix.iter().any(|f| f.contains("--show-labels")));
}

#[test]
fn pods_selected_but_not_ready_fail_endpoints() {
    let mut ev = healthy();
    for p in &mut service_mut(&mut ev).selected_pods {
        p.ready = false;
    }
    for e in endpoints_mut(&mut ev) {
        e.conditions.ready = false;
    }
    let report = judge(&ev, 0);
    assert_fails_at(&report, Layer::Endpoints);
    assert_eq!(
        finding(&ev, judge_endpoints),
        Finding::Endpoints(EndpointsFinding::NoneReady {
            service: NamespacedName::new("shop", "payments"),
            selected: 2,
            selector: "app=payments".into(),
        })
    );
    assert!(
        step(&report, Layer::Endpoints)
            .evidence
            .iter()
            .any(|e| e.contains("Ready=False"))
    );
}

#[test]
fn partially_ready_endpoints_pass_and_list_the_unready_ones() {
    let mut ev = healthy();
    endpoints_mut(&mut ev)[1].conditions.ready = false;
    let report = judge(&ev, 0);
    assert_eq!(report.verdict, Verdict::Reachable);
    assert_eq!(finding(&ev, judge_endpoints), ready_of(&["payments-0"], 2));
    assert_eq!(evidence_text(&report, Layer::Endpoints), "not ready: payments-1");
}

#[test]
fn missing_target_pod_fails_endpoints() {
    let mut ev = healthy();
    ev.destination = Destination::Pod;
    ev.dns = None;
    ev.service = ServiceFacts::NotApplicable;
    ev.cluster_ip = None;
    ev.endpoints = EndpointsFacts::TargetPodMissing {
        namespace: "shop".into(),
        name: "nope".into(),
    };
    assert_fails_at(&judge(&ev, 0), Layer::Endpoints);
    assert_eq!(
        finding(&ev, judge_endpoints),
        Finding::Endpoints(EndpointsFinding::TargetPodNotFound {
            pod: NamespacedName::new("shop", "nope"),
        })
    );
}

fn terminating(serving: bool) -> Conditions {
    Conditions {
        ready: false,
        serving,
        terminating: true,
    }
}

#[test]
fn only_serving_terminating_endpoints_carry_the_service_as_kube_proxy_falls_back_to_them() {
    let mut ev = healthy();
    for p in &mut service_mut(&mut ev).selected_pods {
        p.terminating = true;
    }
    for e in endpoints_mut(&mut ev) {
        e.conditions = terminating(true);
    }
    let report = judge(&ev, 0);
    assert_eq!(report.verdict, Verdict::Reachable, "{report:#?}");
    assert_eq!(
        finding(&ev, judge_endpoints),
        Finding::Endpoints(EndpointsFinding::ServingTerminating {
            serving: NonEmpty::from_vec(vec!["payments-0".into(), "payments-1".into()]).unwrap(),
            total: 2,
        })
    );
    assert!(summary(&report, Layer::Application).starts_with("2/2"));
}

#[test]
fn terminating_endpoints_that_no_longer_serve_fail_endpoints() {
    let mut ev = healthy();
    for p in &mut service_mut(&mut ev).selected_pods {
        p.terminating = true;
        p.ready = false;
    }
    for e in endpoints_mut(&mut ev) {
        e.conditions = terminating(false);
    }
    let report = judge(&ev, 0);
    assert_fails_at(&report, Layer::Endpoints);
    assert_eq!(
        finding(&ev, judge_endpoints),
        Finding::Endpoints(EndpointsFinding::AllTerminating {
            service: NamespacedName::new("shop", "payments"),
            selected: 2,
        })
    );
}

#[test]
fn ready_endpoints_are_used_and_serving_terminating_ones_are_not_probed_targets() {
    let mut ev = healthy();
    let list = endpoints_mut(&mut ev);
    list[1].conditions = terminating(true);
    list[1].live = LiveFact::Tcp(refused());
    let report = judge(&ev, 0);
    assert_eq!(report.verdict, Verdict::Reachable, "{report:#?}");
    assert_eq!(finding(&ev, judge_endpoints), ready_of(&["payments-0"], 2));
}

#[test]
fn an_endpoint_no_pod_holds_that_does_not_answer_is_stale_and_names_its_slice() {
    let mut ev = healthy();
    service_mut(&mut ev).selector = None;
    let list = endpoints_mut(&mut ev);
    list[1].pod = None;
    list[1].ip = ip("10.244.9.9");
    list[1].slice = Some(NamespacedName::new("shop", "payments-manual"));
    list[1].live = LiveFact::Tcp(timeout());
    let report = judge(&ev, 0);
    assert_fails_at(&report, Layer::Endpoints);
    assert_eq!(
        finding(&ev, judge_endpoints),
        Finding::Endpoints(EndpointsFinding::Stale {
            stale: NonEmpty::new(Listed {
                slice: Some(NamespacedName::new("shop", "payments-manual")),
                endpoint: "10.244.9.9:8080".into(),
            }),
            live: 2,
            selector: false,
        })
    );
    assert!(report.fix[0].contains("get endpointslice payments-manual"));
}

#[test]
fn an_address_no_pod_holds_that_answers_is_a_healthy_external_backend() {
    let mut ev = healthy();
    let list = endpoints_mut(&mut ev);
    list[1].pod = None;
    list[1].ip = ip("192.0.2.10");
    let report = judge(&ev, 0);
    assert_eq!(report.verdict, Verdict::Reachable, "{report:#?}");
}
