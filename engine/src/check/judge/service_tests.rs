//! The `service` layer, judged on evidence built by hand.

use crate::check::judge::test_support::*;

#[test]
fn external_name_service_is_undetermined_and_gives_the_check_that_probes_its_host() {
    let mut ev = healthy();
    let svc = service_mut(&mut ev);
    svc.service_type = "ExternalName".into();
    svc.external_name = Some("payments.example.com".into());
    svc.selector = None;
    svc.selected_pods.clear();
    ev.endpoints = EndpointsFacts::Known(vec![]);
    ev.cluster_ip = None;
    dns_mut(&mut ev).expected.clear();
    let report = judge(&ev, 0);
    assert_eq!(report.verdict, Verdict::Undetermined, "{report:#?}");
    assert_eq!(step(&report, Layer::Service).status, Status::Pass);
    assert_eq!(
        finding(&ev, judge_service),
        Finding::Service(ServiceFinding::ExternalName {
            service: NamespacedName::new("shop", "payments"),
            external: "payments.example.com".into(),
        })
    );
    assert_eq!(step(&report, Layer::PodNetwork).status, Status::Undetermined);
    assert_eq!(
        report.fix,
        ["kubectl netdiag check --from shop/checkout --to payments.example.com:80"]
    );
}

#[test]
fn a_port_the_service_does_not_expose_fails_service() {
    let mut ev = healthy();
    service_mut(&mut ev).requested = PortRef::Number(81);
    let report = judge(&ev, 0);
    assert_fails_at(&report, Layer::Service);
    assert_eq!(
        finding(&ev, judge_service),
        Finding::Service(ServiceFinding::PortNotExposed {
            service: NamespacedName::new("shop", "payments"),
            requested: PortRef::Number(81),
            requested_protocol: None,
            exposed: payments_service().ports,
        })
    );
}

#[test]
fn named_target_port_no_selected_pod_declares_fails_service() {
    let mut ev = healthy();
    let svc = service_mut(&mut ev);
    for p in &mut svc.selected_pods {
        p.container_ports[0].name = Some("web".into());
    }
    // The EndpointSlice controller leaves such pods out.
    ev.endpoints = EndpointsFacts::Known(vec![]);
    ev.cluster_ip = Some(ClusterIpFacts {
        ip: ip(VIP),
        port: 80,
        live: LiveFact::Tcp(refused()),
    });
    let report = judge(&ev, 0);
    assert_fails_at(&report, Layer::Service);
    assert_eq!(
        finding(&ev, judge_service),
        Finding::Service(ServiceFinding::NamedPortUndeclared {
            service: NamespacedName::new("shop", "payments"),
            port: PORT_80,
            name: "http".into(),
            selected: 2,
        })
    );
    assert!(step(&report, Layer::Service).evidence[0].contains("declares web:8080"));
}

#[test]
fn wrong_numeric_target_port_fails_service_when_pods_listen_elsewhere() {
    let mut ev = healthy();
    service_mut(&mut ev).ports[0].target_port = PortRef::Number(9090);
    for e in endpoints_mut(&mut ev) {
        e.port = Some(9090);
        e.live = LiveFact::Tcp(refused());
    }
    ev.cluster_ip = Some(ClusterIpFacts {
        ip: ip(VIP),
        port: 80,
        live: LiveFact::Tcp(refused()),
    });
    let report = judge(&ev, 0);
    assert_fails_at(&report, Layer::Service);
    assert_eq!(
        finding(&ev, judge_service),
        Finding::Service(ServiceFinding::TargetPortNotListening {
            service: NamespacedName::new("shop", "payments"),
            port: PORT_80,
            target: 9090,
            listening: NonEmpty::new(8080),
        })
    );
    assert!(
        report
            .fix
            .iter()
            .any(|f| f.contains("/spec/ports/0/targetPort") && f.contains(":8080")),
        "{:?}",
        report.fix
    );
}

#[test]
fn numeric_target_port_the_pods_declare_but_nothing_listens_is_application() {
    let mut ev = healthy();
    service_mut(&mut ev).ports[0].target_port = PortRef::Number(8080);
    for e in endpoints_mut(&mut ev) {
        e.live = LiveFact::Tcp(refused());
        e.listeners = Fact::Known(vec![]);
    }
    ev.cluster_ip = Some(ClusterIpFacts {
        ip: ip(VIP),
        port: 80,
        live: LiveFact::Tcp(refused()),
    });
    let report = judge(&ev, 0);
    assert_fails_at(&report, Layer::Application);
    let s = summary(&report, Layer::Application);
    assert!(
        s.starts_with("all 2 endpoints refuse: ")
            && s.ends_with("nothing in the pod listens on any TCP port (wanted 8080)"),
        "{s}"
    );
    assert_eq!(step(&report, Layer::ServiceProxy).status, Status::Pass);
}

#[test]
fn a_service_without_a_named_port_match_in_a_missing_service_fails_service() {
    let mut ev = healthy();
    ev.dns = None;
    ev.service = ServiceFacts::Missing {
        namespace: "shop".into(),
        name: "paymnts".into(),
        names_in_namespace: vec!["payments".into()],
    };
    let report = judge(&ev, 0);
    assert_fails_at(&report, Layer::Service);
    assert_eq!(
        finding(&ev, judge_service),
        Finding::Service(ServiceFinding::NotFound {
            service: NamespacedName::new("shop", "paymnts"),
            did_you_mean: Some("payments".into()),
        })
    );
}

#[test]
fn a_missing_service_in_a_namespace_without_services_says_so_not_an_empty_list() {
    let mut ev = healthy();
    ev.dns = None;
    ev.service = ServiceFacts::Missing {
        namespace: "shop".into(),
        name: "payments".into(),
        names_in_namespace: vec![],
    };
    let report = judge(&ev, 0);
    assert_fails_at(&report, Layer::Service);
    assert_eq!(code(&report, Layer::Service), Some(Code::ServiceNotFound));
    let evidence = evidence_text(&report, Layer::Service);
    assert!(evidence.contains("namespace shop has no Services"), "{evidence}");
    assert!(!evidence.contains("Services in namespace shop:"), "{evidence}");
}

#[test]
fn a_port_number_served_on_udp_and_tcp_is_checked_on_tcp() {
    let mut svc = payments_service();
    svc.ports = ["UDP", "TCP"]
        .map(|protocol| ServicePortFacts {
            name: Some(protocol.to_lowercase()),
            port: 53,
            protocol: protocol.parse().unwrap(),
            target_port: PortRef::Number(53),
            node_port: None,
        })
        .to_vec();
    svc.requested = PortRef::Number(53);
    assert_eq!(svc.requested_port().map(|p| p.protocol.as_str()), Some("TCP"));
    svc.ports.remove(1);
    assert_eq!(svc.requested_port().map(|p| p.protocol.as_str()), Some("UDP"));
}

#[test]
fn a_named_target_port_declared_only_by_a_native_sidecar_resolves() {
    let mut ev = healthy();
    for p in &mut service_mut(&mut ev).selected_pods {
        p.container_ports = vec![ServingPort {
            name: Some("http".into()),
            port: 8080,
            protocol: Protocol::Tcp,
            container: "proxy".into(),
            sidecar: true,
        }];
    }
    let report = judge(&ev, 0);
    assert_eq!(report.verdict, Verdict::Reachable, "{report:#?}");
    assert_eq!(
        finding(&ev, judge_service),
        Finding::Service(ServiceFinding::NamedPortResolved {
            port: PORT_80,
            name: "http".into(),
            numbers: NonEmpty::new(8080),
            pods: 2,
        })
    );
    assert!(
        step(&report, Layer::Service)
            .evidence
            .iter()
            .any(|e| e.contains("native sidecar container proxy"))
    );
}

#[test]
fn a_service_reached_through_an_external_name_alias_says_so() {
    let mut ev = healthy();
    service_mut(&mut ev).alias_of = Some(ExternalNameAlias {
        service: NamespacedName::new("web", "payments"),
        host: "payments.shop.svc.cluster.local".into(),
    });
    let report = judge(&ev, 0);
    assert_eq!(report.verdict, Verdict::Reachable);
    let text = summary(&report, Layer::Service);
    assert!(
        text.starts_with("via ExternalName web/payments (payments.shop.svc.cluster.local): port 80/TCP"),
        "{text}"
    );
    assert_eq!(code(&report, Layer::Service), Some(Code::ServicePortResolved));
    assert!(evidence_text(&report, Layer::Service).contains("the check follows it to Service shop/payments"));
}

#[test]
fn a_node_port_service_checked_by_its_cluster_ip_says_how_clients_outside_enter_it() {
    let mut ev = healthy();
    let svc = service_mut(&mut ev);
    svc.service_type = "NodePort".into();
    svc.ports[0].node_port = Some(30080);
    let report = judge(&ev, 0);
    let evidence = evidence_text(&report, Layer::Service);
    assert!(
        evidence.contains("NodePort Service: clients outside the pod network enter by a node's node port 30080 (--to NODE-ADDRESS:30080 checks it as they do)"),
        "{evidence}"
    );
    // Entered by that node port: the check already does.
    service_mut(&mut ev).entry = Some(ServiceEntry::NodePort {
        node: "node-b".into(),
        address: ip("192.168.0.2"),
        node_port: 30080,
    });
    let evidence = evidence_text(&judge(&ev, 0), Layer::Service);
    assert!(!evidence.contains("enter by node port"), "{evidence}");
}
