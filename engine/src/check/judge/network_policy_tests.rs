//! The `network-policy` layer, judged on evidence built by hand.

use crate::check::judge::test_support::*;

fn policy_finding(ev: &Evidence) -> NetworkPolicyFinding {
    match finding(ev, judge_policy) {
        Finding::NetworkPolicy(f) => f,
        other => panic!("not a network-policy finding: {other:?}"),
    }
}

#[test]
fn dns_timeout_with_egress_to_dns_denied_is_a_network_policy_failure() {
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
    let report = judge(&ev, 0);
    assert_fails_at(&report, Layer::NetworkPolicy);
    assert_eq!(step(&report, Layer::Dns).status, Status::Skip);
    assert!(matches!(
        finding(&ev, judge_dns),
        Finding::Dns(DnsFinding::BlockedByPolicy { denials: DnsDenials(sides), .. })
            if sides.len() == 1 && sides[0].port == 53
    ));
    assert_eq!(step(&report, Layer::Service).status, Status::Pass);
    assert_eq!(step(&report, Layer::Endpoints).status, Status::Pass);
    assert_eq!(
        policy_finding(&ev),
        NetworkPolicyFinding::DnsDenied {
            from: NamespacedName::new("shop", "checkout"),
            family: None,
            denials: DnsDenials(vec![*denied_side(
                "shop/checkout",
                to("kube-system/coredns-0"),
                "shop/egress-lockdown",
                53,
                "UDP",
            )]),
        }
    );
    assert_eq!(
        report.fix,
        [
            "allow egress to pods with k8s-app=kube-dns in namespace kube-system on port 53/UDP and 53/TCP in \
             shop/egress-lockdown, or add a NetworkPolicy selecting app=checkout in namespace shop that allows it",
            "kubectl -n shop get networkpolicy egress-lockdown -o yaml",
        ]
    );
    let evidence = &step(&report, Layer::NetworkPolicy).evidence;
    assert!(
        evidence.iter().any(|e| e.contains("@10.96.0.10:53 → timed out")),
        "{evidence:?}"
    );
}

#[test]
fn ingress_denied_and_probes_timing_out_fail_network_policy() {
    let mut ev = healthy();
    for e in endpoints_mut(&mut ev) {
        e.policy = ingress_denied();
        e.live = LiveFact::Tcp(timeout());
    }
    ev.cluster_ip = Some(ClusterIpFacts {
        ip: ip(VIP),
        port: 80,
        live: LiveFact::Tcp(timeout()),
    });
    let report = judge(&ev, 0);
    assert_fails_at(&report, Layer::NetworkPolicy);
    assert_eq!(
        code(&report, Layer::NetworkPolicy),
        Some(Code::NetworkPolicyIngressDenied)
    );
    let PolicyCheck::Denied {
        ingress: Some(side), ..
    } = ingress_denied()
    else {
        unreachable!()
    };
    assert_eq!(
        policy_finding(&ev),
        NetworkPolicyFinding::Denied {
            head: DeniedHead::Ingress {
                endpoint: endpoints_mut(&mut ev)[0].label(),
                side,
            },
            denied: 2,
            total: 2,
            certainty: None,
        }
    );
    assert_eq!(
        report.fix,
        [
            "allow ingress from pods with app=checkout in namespace shop to port 8080/TCP in shop/default-deny, \
             or add a NetworkPolicy selecting app=payments in namespace shop that allows it",
            "kubectl -n shop get networkpolicy default-deny -o yaml",
        ]
    );
    assert!(
        step(&report, Layer::NetworkPolicy)
            .evidence
            .iter()
            .all(|e| e.contains("timed out"))
    );
}

#[test]
fn ingress_fix_names_a_pod_without_labels_and_falls_back_to_all_labels_without_an_app_label() {
    let mut ev = healthy();
    if let SourceFacts::Found { pod, .. } = &mut ev.source {
        pod.labels.clear();
    }
    let policies = NonEmpty::from_vec(
        ["a", "b", "c", "d"]
            .map(|name| PolicyRef {
                namespace: "shop".into(),
                name: name.into(),
            })
            .to_vec(),
    )
    .unwrap();
    for e in endpoints_mut(&mut ev) {
        e.policy = PolicyCheck::Denied {
            egress: None,
            ingress: Some(Box::new(DeniedSide {
                cause: DenialCause::Isolated(policies.clone()),
                policies: Some(policies.clone()),
                ..*denied_side("shop/payments-0", from("shop/checkout"), "shop/a", 8080, "TCP")
            })),
        };
        e.live = LiveFact::Tcp(timeout());
        if let Some(p) = &mut e.pod {
            p.labels = BTreeMap::from([
                ("role".to_string(), "pay".to_string()),
                ("tier".to_string(), "x".to_string()),
            ]);
        }
    }
    let report = judge(&ev, 0);
    assert_fails_at(&report, Layer::NetworkPolicy);
    assert_eq!(
        report.fix,
        [
            "allow ingress from pod shop/checkout (it has no labels to select it by) to port 8080/TCP in one of \
             shop/a, shop/b, shop/c, shop/d, or add a NetworkPolicy selecting role=pay,tier=x in namespace shop \
             that allows it",
            "kubectl -n shop get networkpolicy a -o yaml",
            "kubectl -n shop get networkpolicy b -o yaml",
            "kubectl -n shop get networkpolicy c -o yaml",
        ]
    );
}

#[test]
fn egress_denied_fails_network_policy_naming_the_source() {
    let mut ev = healthy();
    for e in endpoints_mut(&mut ev) {
        e.policy = PolicyCheck::Denied {
            egress: Some(denied_side(
                "shop/checkout",
                to("shop/payments-0"),
                "shop/lockdown",
                8080,
                "TCP",
            )),
            ingress: None,
        };
        e.live = LiveFact::Tcp(timeout());
    }
    let report = judge(&ev, 0);
    assert_fails_at(&report, Layer::NetworkPolicy);
    assert_eq!(
        code(&report, Layer::NetworkPolicy),
        Some(Code::NetworkPolicyEgressDenied)
    );
    assert!(matches!(
        policy_finding(&ev),
        NetworkPolicyFinding::Denied {
            head: DeniedHead::Egress { from, .. },
            ..
        } if from == NamespacedName::new("shop", "checkout")
    ));
    assert_eq!(
        report.fix,
        [
            "allow egress to pods with app=payments in namespace shop on port 8080/TCP in shop/lockdown, \
             or add a NetworkPolicy selecting app=checkout in namespace shop that allows it",
            "kubectl -n shop get networkpolicy lockdown -o yaml",
        ]
    );
}

#[test]
fn a_baseline_deny_with_no_isolating_policy_advises_a_new_policy_never_an_empty_list() {
    use crate::policy::{AdminAction, AdminKind, AdminPolicyRef, AdminRuleRef, AdminTier, Direction};
    let mut ev = healthy();
    for e in endpoints_mut(&mut ev) {
        let mut side = denied_side("shop/checkout", to("shop/payments-0"), "shop/unused", 8080, "TCP");
        side.policies = None;
        side.cause = DenialCause::BaselineTier(AdminRuleRef {
            policy: AdminPolicyRef {
                kind: AdminKind::BaselineAdminNetworkPolicy,
                name: "default".into(),
                tier: AdminTier::Baseline,
                priority: None,
            },
            direction: Direction::Egress,
            index: 0,
            name: None,
            action: AdminAction::Deny,
        });
        e.policy = PolicyCheck::Denied {
            egress: Some(side),
            ingress: None,
        };
        e.live = LiveFact::Tcp(timeout());
    }
    let report = judge(&ev, 0);
    assert_fails_at(&report, Layer::NetworkPolicy);
    let advice = report
        .fix
        .iter()
        .find(|line| line.contains("8080/TCP"))
        .expect("advice for the denied port");
    assert_eq!(
        advice,
        "add a NetworkPolicy selecting app=checkout in namespace shop that allows egress to pods with \
         app=payments in namespace shop on port 8080/TCP"
    );
    assert!(
        report
            .fix
            .iter()
            .all(|line| !line.contains("one of ,") && !line.contains(" in ,"))
    );
}

#[test]
fn policy_denying_a_flow_that_connects_is_reported_as_a_disagreement() {
    let mut ev = healthy();
    for e in endpoints_mut(&mut ev) {
        e.policy = ingress_denied();
    }
    let report = judge(&ev, 0);
    assert_eq!(report.verdict, Verdict::Reachable);
    let s = step(&report, Layer::NetworkPolicy);
    let NetworkPolicyFinding::NotEnforced {
        transport,
        flows,
        first,
        ..
    } = policy_finding(&ev)
    else {
        panic!("not a not-enforced finding: {:?}", policy_finding(&ev));
    };
    assert_eq!((transport, flows), (Transport::Tcp, 2));
    // The first endpoint's ingress should have been enforced on its own node.
    assert_eq!(first.node.as_deref(), Some("node-a"));
    assert_eq!(
        s.summary.text,
        "shop/default-deny selects shop/payments-0 (ingress) but the connection succeeded: \
         NetworkPolicy is not enforced on node-a (2 denied flows got through)"
    );
    assert!(s.evidence.iter().any(|e| e.starts_with("disagreement")));
    // Reachable, with its own exit code: the policy relied on does not hold.
    assert_eq!(report.exit_code(), crate::check::report::EXIT_POLICY_NOT_ENFORCED);
    assert_eq!(
        judge(&healthy(), 0).exit_code(),
        crate::check::report::EXIT_REACHABLE
    );
}

fn enforcer(name: &'static str, daemonset: &str) -> crate::cluster::enforcers::Enforcer {
    let (namespace, ds) = daemonset.split_once('/').unwrap();
    crate::cluster::enforcers::Enforcer {
        name,
        daemonset: NamespacedName::new(namespace, ds),
        ready: 3,
        desired: 3,
    }
}

#[test]
fn a_policy_that_is_not_enforced_names_what_should_enforce_it_or_that_nothing_does() {
    let mut ev = healthy();
    for e in endpoints_mut(&mut ev) {
        e.policy = ingress_denied();
    }
    ev.policy_enforcers = Some(Fact::Known(vec![enforcer("Calico", "kube-system/calico-node")]));
    let report = judge(&ev, 0);
    let s = step(&report, Layer::NetworkPolicy);
    assert!(
        s.summary.text.contains(
            "NetworkPolicy is not enforced on node-a, where Calico (DaemonSet kube-system/calico-node, \
             3/3 pods ready) should enforce it"
        ),
        "{}",
        s.summary.text
    );
    assert!(
        report
            .fix
            .iter()
            .any(|f| f == "kubectl -n kube-system get pods -o wide --field-selector spec.nodeName=node-a"),
        "{:?}",
        report.fix
    );
    assert_eq!(report.exit_code(), crate::check::report::EXIT_POLICY_NOT_ENFORCED);

    ev.policy_enforcers = Some(Fact::Known(vec![]));
    let report = judge(&ev, 0);
    let s = step(&report, Layer::NetworkPolicy);
    assert!(
        s.summary.text.ends_with(
            "on node-a, and no known NetworkPolicy enforcer runs in this cluster (2 denied flows got through)"
        ),
        "{}",
        s.summary.text
    );
    assert!(
        s.evidence
            .iter()
            .any(|e| e.starts_with("policy enforcers: none of Calico, Cilium, Antrea")),
        "{:?}",
        s.evidence
    );
    assert!(
        report
            .fix
            .iter()
            .any(|f| f.starts_with("install a NetworkPolicy enforcer"))
    );

    // The DaemonSets could not be read: the finding stands, without naming an enforcer.
    ev.policy_enforcers = Some(Fact::Unknown(forbidden("list daemonsets in all namespaces")));
    let report = judge(&ev, 0);
    let s = step(&report, Layer::NetworkPolicy);
    assert!(
        s.summary.text.contains("not enforced on node-a (2 denied"),
        "{}",
        s.summary.text
    );
    assert!(
        s.evidence
            .iter()
            .any(|e| e.starts_with("policy enforcers: not known ("))
    );
    assert_eq!(report.verdict, Verdict::Reachable);
}

#[test]
fn a_denied_egress_that_connects_is_not_enforced_on_the_source_node() {
    let mut ev = healthy();
    for e in endpoints_mut(&mut ev) {
        e.policy = PolicyCheck::Denied {
            egress: Some(denied_side(
                "shop/checkout",
                FlowEnd::To("shop/payments-0".parse().unwrap()),
                "shop/egress-lockdown",
                8080,
                "TCP",
            )),
            ingress: None,
        };
    }
    let report = judge(&ev, 0);
    let s = step(&report, Layer::NetworkPolicy);
    assert_eq!(
        s.summary.text,
        "shop/egress-lockdown selects shop/checkout (egress) but the connection succeeded: \
         NetworkPolicy is not enforced on node-a (2 denied flows got through)"
    );
}

#[test]
fn unevaluated_policy_with_timeouts_is_undetermined_not_pod_network() {
    let mut ev = healthy();
    for e in endpoints_mut(&mut ev) {
        e.policy = PolicyCheck::NotEvaluated(forbidden("list networkpolicies"));
        e.live = LiveFact::Tcp(timeout());
    }
    let report = judge(&ev, 0);
    assert_eq!(report.verdict, Verdict::Undetermined);
    assert_eq!(step(&report, Layer::NetworkPolicy).status, Status::Undetermined);
    assert_eq!(
        code(&report, Layer::NetworkPolicy),
        Some(Code::NetworkPolicyNotEvaluated)
    );
    assert_eq!(step(&report, Layer::PodNetwork).status, Status::Skip);
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
    assert!(matches!(
        policy_finding(&ev),
        NetworkPolicyFinding::Denied {
            certainty: Some(Certainty::Likely),
            ..
        }
    ));
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
    assert!(matches!(
        policy_finding(&ev),
        NetworkPolicyFinding::Denied {
            certainty: Some(Certainty::Certain),
            ..
        }
    ));
}

#[test]
fn answered_datagram_despite_a_denying_policy_is_a_disagreement() {
    let mut ev = healthy_udp();
    for e in endpoints_mut(&mut ev) {
        e.policy = ingress_denied();
    }
    let report = judge(&ev, 0);
    assert_eq!(report.verdict, Verdict::Reachable);
    assert!(
        matches!(
            policy_finding(&ev),
            NetworkPolicyFinding::NotEnforced {
                transport: Transport::Udp,
                flows: 2,
                ..
            }
        ),
        "{:?}",
        policy_finding(&ev)
    );
    assert!(
        step(&report, Layer::NetworkPolicy)
            .summary
            .text
            .contains("but the datagram was answered: NetworkPolicy is not enforced on node-a"),
        "{report:?}"
    );
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
    assert_eq!(
        policy_finding(&ev),
        NetworkPolicyFinding::NotEvaluated {
            transport: Transport::Udp,
        }
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

/// `healthy()` entered by node-b's node port: each endpoint's own flow allowed and connected,
/// the flow by the node port (masqueraded by node-b) denied by ingress policy, and the node
/// port's connection meeting `vip`.
fn entered_denied(vip: Fact<TcpOutcome>) -> Evidence {
    let mut ev = healthy();
    service_mut(&mut ev).entry = Some(ServiceEntry::NodePort {
        node: "node-b".into(),
        address: ip("192.168.0.2"),
        node_port: 30080,
    });
    ev.cluster_ip = Some(ClusterIpFacts {
        ip: ip("192.168.0.2"),
        port: 30080,
        live: LiveFact::Tcp(vip),
    });
    for e in endpoints_mut(&mut ev) {
        e.entered_policy = Some(ingress_denied());
    }
    ev
}

#[test]
fn a_node_port_connection_policy_denies_fails_network_policy_though_pod_ips_connect() {
    let report = judge(&entered_denied(timeout()), 0);
    assert_fails_at(&report, Layer::NetworkPolicy);
    assert_eq!(
        code(&report, Layer::NetworkPolicy),
        Some(Code::NetworkPolicyDenied)
    );
}

#[test]
fn a_node_port_connection_policy_denies_that_connects_is_policy_not_enforced() {
    let report = judge(&entered_denied(connected()), 0);
    assert_eq!(step(&report, Layer::NetworkPolicy).status, Status::Pass);
    assert_eq!(
        code(&report, Layer::NetworkPolicy),
        Some(Code::NetworkPolicyNotEnforced)
    );
}
