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

/// `healthy()` with the source moved to `node` and the Service's internalTrafficPolicy Local.
fn local_from(node: &str) -> Evidence {
    let mut ev = healthy();
    if let SourceFacts::Found { pod, .. } = &mut ev.source {
        pod.node = Some(node.into());
    }
    service_mut(&mut ev).internal_traffic_policy = TrafficPolicy::Local;
    ev
}

#[test]
fn local_traffic_policy_without_an_endpoint_on_the_source_node_fails_endpoints() {
    let mut ev = local_from("node-c");
    ev.cluster_ip.as_mut().unwrap().live = LiveFact::Tcp(timeout());
    let report = judge(&ev, 0);
    assert_fails_at(&report, Layer::Endpoints);
    assert_eq!(
        code(&report, Layer::Endpoints),
        Some(Code::EndpointsNoneOnSourceNode)
    );
    assert_eq!(
        summary(&report, Layer::Endpoints),
        "shop/payments has internalTrafficPolicy: Local and no endpoint on node-c, the source's node: \
         kube-proxy there drops its traffic (its endpoints: payments-0 on node-a, payments-1 on node-b)"
    );
    assert!(
        report
            .fix
            .iter()
            .any(|f| f.contains("internalTrafficPolicy: Cluster"))
    );
    // From a node that has an endpoint, the same Service works.
    let report = judge(&local_from("node-b"), 0);
    assert_eq!(report.verdict, Verdict::Reachable);
}

#[test]
fn local_traffic_policy_judges_only_the_source_nodes_endpoints() {
    let mut ev = local_from("node-a");
    // payments-1 on node-b refuses, but node-a never sends to it.
    endpoints_mut(&mut ev)[1].live = LiveFact::Tcp(refused());
    let report = judge(&ev, 0);
    assert_eq!(report.verdict, Verdict::Reachable);
    assert_eq!(
        summary(&report, Layer::Endpoints),
        "2/2 ready; kube-proxy on node-a uses payments-0 only (internalTrafficPolicy: Local)"
    );
    assert!(
        evidence_text(&report, Layer::Endpoints).contains(
            "internalTrafficPolicy: Local: kube-proxy on node-a sends to the endpoints on node-a only: payments-0"
        ),
        "{}",
        evidence_text(&report, Layer::Endpoints)
    );
    // From node-b the only endpoint it uses refuses: every connection, not a share, fails.
    let mut ev = local_from("node-b");
    endpoints_mut(&mut ev)[1].live = LiveFact::Tcp(refused());
    endpoints_mut(&mut ev)[1].listeners = Fact::Known(vec![]);
    ev.cluster_ip.as_mut().unwrap().live = LiveFact::Tcp(refused());
    let report = judge(&ev, 0);
    assert_fails_at(&report, Layer::Application);
    assert!(!summary(&report, Layer::Application).contains("1 of 2"));
}

#[test]
fn a_dataplane_that_ignores_local_traffic_policy_is_said_not_failed() {
    let ev = local_from("node-c");
    let report = judge(&ev, 0);
    assert_eq!(report.verdict, Verdict::Reachable);
    assert!(evidence_text(&report, Layer::Endpoints).contains("does not apply internalTrafficPolicy"));
}

/// `healthy()` with zone hints: payments-0 for zone-a, payments-1 for zone-b.
fn zoned(source_zone: Option<Fact<Option<String>>>) -> Evidence {
    let mut ev = healthy();
    for (e, zone) in endpoints_mut(&mut ev).iter_mut().zip(["zone-a", "zone-b"]) {
        e.topology.for_zones = vec![zone.into()];
    }
    ev.source_zone = source_zone;
    ev
}

#[test]
fn zone_hints_narrow_the_endpoints_to_the_source_zone() {
    let mut ev = zoned(Some(Fact::Known(Some("zone-b".into()))));
    // The source (node-a, zone-b here) uses payments-1 only, which refuses.
    endpoints_mut(&mut ev)[1].live = LiveFact::Tcp(refused());
    endpoints_mut(&mut ev)[1].listeners = Fact::Known(vec![]);
    ev.cluster_ip.as_mut().unwrap().live = LiveFact::Tcp(refused());
    let report = judge(&ev, 0);
    assert_fails_at(&report, Layer::Application);
    assert_eq!(
        summary(&report, Layer::Endpoints),
        "2/2 ready; kube-proxy on node-a uses payments-1 only (topology hints for zone zone-b)"
    );
    assert!(evidence_text(&report, Layer::Endpoints).contains(
        "kube-proxy on node-a (zone zone-b) sends to the endpoints hinted for zone-b only: payments-1"
    ));
}

#[test]
fn an_unread_zone_is_said_and_every_endpoint_taken_as_used() {
    let ev = zoned(Some(Fact::Unknown(forbidden("get nodes/node-a"))));
    let report = judge(&ev, 0);
    assert_eq!(report.verdict, Verdict::Reachable);
    assert!(evidence_text(&report, Layer::Endpoints).contains("node-a's zone is not known"));
}

#[test]
fn local_traffic_policy_falls_back_to_the_nodes_terminating_endpoint_and_says_so() {
    let mut ev = local_from("node-a");
    // payments-0 on node-a terminates but still serves; payments-1 on node-b is ready but refuses.
    endpoints_mut(&mut ev)[0].conditions = Conditions {
        ready: false,
        serving: true,
        terminating: true,
    };
    endpoints_mut(&mut ev)[1].live = LiveFact::Tcp(refused());
    let report = judge(&ev, 0);
    assert_eq!(report.verdict, Verdict::Reachable);
    assert_eq!(
        summary(&report, Layer::Endpoints),
        "1/2 ready; kube-proxy on node-a uses payments-0 (terminating, still serving) only (internalTrafficPolicy: Local)"
    );
}

#[test]
fn internal_traffic_policy_does_not_narrow_a_service_entered_by_a_load_balancer_address() {
    let mut ev = local_from("node-c");
    service_mut(&mut ev).entry = Some(ServiceEntry::LoadBalancer {
        address: ip("203.0.113.7"),
        port: 80,
    });
    let report = judge(&ev, 0);
    assert_eq!(step(&report, Layer::Endpoints).status, Status::Pass);
    assert_ne!(
        code(&report, Layer::Endpoints),
        Some(Code::EndpointsNoneOnSourceNode)
    );
}
