//! The `dns` layer, judged on evidence built by hand.

use crate::check::judge::test_support::*;

#[test]
fn nxdomain_for_a_typo_fails_dns_and_suggests_the_close_service_name() {
    let mut ev = healthy();
    let dns = dns_mut(&mut ev);
    dns.name = "paymnts.shop".into();
    dns.service_guess = Some(NamespacedName::new("shop", "paymnts"));
    dns.result = Fact::Known(dns_result("paymnts.shop", DnsOutcome::Nxdomain));
    ev.service = ServiceFacts::Missing {
        namespace: "shop".into(),
        name: "paymnts".into(),
        names_in_namespace: vec!["payments".into()],
    };
    let report = judge(&ev, 0);
    assert_fails_at(&report, Layer::Dns);
    assert_eq!(
        finding(&ev, judge_dns),
        Finding::Dns(DnsFinding::NoSuchService {
            name: "paymnts.shop".into(),
            outcome: DnsOutcome::Nxdomain,
            service: NamespacedName::new("shop", "paymnts"),
            did_you_mean: Some("payments".into()),
        })
    );
    assert!(
        step(&report, Layer::Dns)
            .evidence
            .iter()
            .any(|e| e.contains("NXDOMAIN"))
    );
}

/// `web/frontend` asks for the short name `payments`, which `web` does not have.
fn short_name_from_web() -> Evidence {
    let mut ev = healthy();
    ev.source = SourceFacts::Found {
        pod: pod("web", "frontend", "node-a", "10.244.1.6"),
        agent: AgentFacts::Answered {
            agent_pod: "netdiag/agent-a".into(),
            netns: "/proc/9/ns/net".into(),
        },
    };
    let dns = dns_mut(&mut ev);
    dns.name = "payments".into();
    dns.service_guess = Some(NamespacedName::new("web", "payments"));
    dns.names_in_namespace = vec!["frontend".into()];
    dns.result = Fact::Known(dns_result("payments", DnsOutcome::Nxdomain));
    ev
}

#[test]
fn short_name_from_another_namespace_fails_dns_and_names_the_real_namespace() {
    let mut ev = short_name_from_web();
    dns_mut(&mut ev).same_name_elsewhere = vec![NamespacedName::new("shop", "payments")];
    let report = judge(&ev, 0);
    assert_fails_at(&report, Layer::Dns);
    assert_eq!(
        code(&report, Layer::Dns),
        Some(Code::DnsShortNameAcrossNamespaces)
    );
    assert!(
        report.fix.iter().any(|f| f.contains("payments.shop")),
        "{:?}",
        report.fix
    );
}

#[test]
fn short_name_whose_service_exists_in_several_namespaces_names_each_of_them() {
    let mut ev = short_name_from_web();
    dns_mut(&mut ev).same_name_elsewhere = vec![
        NamespacedName::new("billing", "payments"),
        NamespacedName::new("shop", "payments"),
    ];
    let report = judge(&ev, 0);
    assert_fails_at(&report, Layer::Dns);
    let Finding::Dns(DnsFinding::ShortNameAcrossNamespaces { services, .. }) = finding(&ev, judge_dns) else {
        panic!("{report:#?}");
    };
    assert_eq!(
        services.to_vec(),
        [
            NamespacedName::new("billing", "payments"),
            NamespacedName::new("shop", "payments")
        ]
    );
    for fqdn in ["payments.billing", "payments.shop"] {
        assert!(
            report.fix.iter().any(|f| f.contains(fqdn)),
            "{fqdn}: {:?}",
            report.fix
        );
    }
}

#[test]
fn nxdomain_for_an_existing_service_from_cluster_dns_blames_the_dns_server_not_the_service() {
    let mut ev = healthy();
    dns_mut(&mut ev).result = Fact::Known(dns_result("payments.shop", DnsOutcome::Nxdomain));
    let report = judge(&ev, 0);
    assert_fails_at(&report, Layer::Dns);
    assert_eq!(
        finding(&ev, judge_dns),
        Finding::Dns(DnsFinding::ClusterZoneNotServed {
            outcome: DnsOutcome::Nxdomain,
            fqdn: "payments.shop.svc.cluster.local.".into(),
            service: NamespacedName::new("shop", "payments"),
        })
    );
}

#[test]
fn nxdomain_for_an_existing_service_with_a_resolver_off_cluster_names_resolv_conf() {
    let mut ev = healthy();
    let mut result = dns_result("payments.shop", DnsOutcome::Nxdomain);
    result.resolv_conf.nameservers = vec!["169.254.0.53:53".parse().unwrap()];
    dns_mut(&mut ev).result = Fact::Known(result);
    let report = judge(&ev, 0);
    assert_fails_at(&report, Layer::Dns);
    assert_eq!(
        finding(&ev, judge_dns),
        Finding::Dns(DnsFinding::ResolverOffCluster {
            name: "payments.shop".into(),
            outcome: DnsOutcome::Nxdomain,
            existing: Some(NamespacedName::new("shop", "payments")),
            dns_service_ip: ip(DNS_VIP),
        })
    );
    assert!(report.fix[0].contains("dnsPolicy"), "{:?}", report.fix);
}

#[test]
fn nxdomain_for_an_existing_service_never_asked_by_its_full_name_names_the_search_list() {
    let mut ev = healthy();
    let mut result = dns_result("payments.shop", DnsOutcome::Nxdomain);
    result.resolv_conf.search = vec!["shop.svc.cluster.local".into()];
    result.candidates.truncate(1);
    dns_mut(&mut ev).result = Fact::Known(result);
    let report = judge(&ev, 0);
    assert_fails_at(&report, Layer::Dns);
    let Finding::Dns(DnsFinding::SearchListIncomplete { search, .. }) = finding(&ev, judge_dns) else {
        panic!("{report:#?}");
    };
    assert_eq!(
        search.map(|s| s.to_vec()),
        Some(vec!["shop.svc.cluster.local".to_string()])
    );
}

#[test]
fn dns_timeout_with_silent_dns_pods_is_the_dns_server_down() {
    let mut ev = healthy();
    let dns = dns_mut(&mut ev);
    dns.result = Fact::Known(dns_result("payments.shop", DnsOutcome::Timeout));
    if let Fact::Known(c) = &mut dns.cluster_dns {
        c.pods[0].direct = Fact::Known(DnsOutcome::Timeout);
    }
    let report = judge(&ev, 0);
    assert_fails_at(&report, Layer::Dns);
    assert_eq!(code(&report, Layer::Dns), Some(Code::DnsServerDown));
}

#[test]
fn dns_timeout_while_dns_pods_answer_directly_blames_the_dns_service_ip() {
    let mut ev = healthy();
    dns_mut(&mut ev).result = Fact::Known(dns_result("payments.shop", DnsOutcome::Timeout));
    let report = judge(&ev, 0);
    assert_fails_at(&report, Layer::Dns);
    assert_eq!(code(&report, Layer::Dns), Some(Code::DnsServiceIpNotProxied));
}

#[test]
fn dns_timeout_without_ready_dns_endpoints_says_so() {
    let mut ev = healthy();
    let dns = dns_mut(&mut ev);
    dns.result = Fact::Known(dns_result("payments.shop", DnsOutcome::Timeout));
    if let Fact::Known(c) = &mut dns.cluster_dns {
        c.pods[0].ready = false;
    }
    let report = judge(&ev, 0);
    assert_fails_at(&report, Layer::Dns);
    assert_eq!(code(&report, Layer::Dns), Some(Code::DnsNoReadyPods));
}

#[test]
fn dns_refused_rcode_via_the_service_ip_is_the_server_declining_not_an_unproxied_ip() {
    let mut ev = healthy();
    dns_mut(&mut ev).result = Fact::Known(dns_result("payments.shop", DnsOutcome::Refused));
    let report = judge(&ev, 0);
    assert_fails_at(&report, Layer::Dns);
    assert_eq!(code(&report, Layer::Dns), Some(Code::DnsRefused));
}

#[test]
fn dns_timeout_with_unevaluated_dns_egress_policy_is_undetermined_not_dns_down() {
    let mut ev = healthy();
    let dns = dns_mut(&mut ev);
    dns.result = Fact::Known(dns_result("payments.shop", DnsOutcome::Timeout));
    if let Fact::Known(c) = &mut dns.cluster_dns {
        c.pods[0].direct = Fact::Known(DnsOutcome::Timeout);
        c.pods[0].egress_policy =
            PolicyCheck::NotEvaluated(forbidden("list networkpolicies in all namespaces"));
    }
    let report = judge(&ev, 0);
    assert_eq!(report.verdict, Verdict::Undetermined, "{report:#?}");
    assert_eq!(report.failing_layer, None);
    let dns = step(&report, Layer::Dns);
    assert_eq!(dns.status, Status::Undetermined);
    assert_eq!(dns.summary.code, Some(Code::DnsPolicyNotEvaluated), "{dns:?}");
    assert!(
        dns.evidence
            .iter()
            .any(|e| e.contains("forbidden to list networkpolicies")),
        "{dns:?}"
    );
}

#[test]
fn dns_answer_that_is_not_the_service_address_fails_dns() {
    let mut ev = healthy();
    dns_mut(&mut ev).result = Fact::Known(dns_result(
        "payments.shop",
        DnsOutcome::Resolved {
            addresses: vec![ip("10.96.99.99")],
            ttl: 5,
        },
    ));
    let report = judge(&ev, 0);
    assert_fails_at(&report, Layer::Dns);
    assert!(matches!(
        finding(&ev, judge_dns),
        Finding::Dns(DnsFinding::WrongAddress { expected, .. }) if expected == [ip(VIP)]
    ));
}

#[test]
fn dns_probe_that_could_not_run_is_undetermined() {
    let mut ev = healthy();
    dns_mut(&mut ev).result = Fact::Unknown(ToolFailure::Agent {
        detail: "agent timed out".into(),
    });
    let report = judge(&ev, 0);
    assert_eq!(report.verdict, Verdict::Undetermined);
    assert_eq!(step(&report, Layer::Dns).status, Status::Undetermined);
    assert_eq!(code(&report, Layer::Dns), Some(Code::DnsProbeFailed));
}

#[test]
fn a_resolv_conf_without_a_search_list_or_nameserver_is_said_in_words() {
    let mut result = dns_result("payments.shop", DnsOutcome::Timeout);
    result.resolv_conf.search.clear();
    result.resolv_conf.nameservers.clear();
    let line = &dns_evidence(&result)[0];
    assert!(
        line.contains(": no nameserver, no search list, ndots 5"),
        "{line}"
    );
    result.resolv_conf.search = vec!["shop.svc.cluster.local".into(), "cluster.local".into()];
    let line = &dns_evidence(&result)[0];
    assert!(
        line.contains("search shop.svc.cluster.local cluster.local, ndots"),
        "{line}"
    );
}

#[test]
fn cluster_nxdomain_decides_even_when_the_bare_name_is_refused_upstream() {
    let mut ev = healthy();
    let server: SocketAddr = format!("{DNS_VIP}:53").parse().unwrap();
    let mut result = dns_result("paymnts.shop", DnsOutcome::Nxdomain);
    result.candidates.push(DnsCandidate {
        name: "paymnts.shop.".into(),
        server,
        outcome: DnsOutcome::Refused,
        rtt_us: 200,
        truncated: false,
        cnames: vec![],
    });
    result.answer = DnsAnswer {
        name: None,
        outcome: DnsOutcome::Refused,
    };
    let dns = dns_mut(&mut ev);
    dns.name = "paymnts.shop".into();
    dns.service_guess = Some(NamespacedName::new("shop", "paymnts"));
    dns.result = Fact::Known(result);
    let report = judge(&ev, 0);
    assert_fails_at(&report, Layer::Dns);
    assert!(matches!(
        finding(&ev, judge_dns),
        Finding::Dns(DnsFinding::NoSuchService {
            outcome: DnsOutcome::Nxdomain,
            did_you_mean: Some(close),
            ..
        }) if close == "payments"
    ));
}

/// `healthy()` with a second ready DNS pod whose direct query met `outcome`.
fn second_dns_pod(outcome: DnsOutcome) -> Evidence {
    let mut ev = healthy();
    if let Fact::Known(c) = &mut dns_mut(&mut ev).cluster_dns {
        let mut broken = c.pods[0].clone();
        broken.pod = Some(NamespacedName::new("kube-system", "coredns-1"));
        broken.ip = ip("10.244.2.9");
        broken.direct = Fact::Known(outcome);
        c.pods.push(broken);
    }
    ev
}

#[test]
fn one_dns_pod_of_two_failing_fails_dns_whether_or_not_this_lookup_reached_it() {
    // This lookup reached the good pod and resolved.
    let ev = second_dns_pod(DnsOutcome::Timeout);
    let report = judge(&ev, 0);
    assert_fails_at(&report, Layer::Dns);
    assert_eq!(code(&report, Layer::Dns), Some(Code::DnsSomeServersFail));
    let resolved = summary(&report, Layer::Dns);
    assert!(
        resolved.starts_with(
            "1 of 2 DNS pods fails when asked directly: kube-system/coredns-1 (10.244.2.9): timed out; \
             the lookups the kube-dns Service sends there fail (about 1 in 2)"
        ),
        "{resolved}"
    );
    assert!(report.commands.iter().any(|c| c.contains("logs coredns-1")));
    // This lookup reached the failing pod: the same finding, not an unproxied Service IP.
    let mut ev = second_dns_pod(DnsOutcome::Servfail);
    dns_mut(&mut ev).result = Fact::Known(dns_result("payments.shop", DnsOutcome::Servfail));
    let report = judge(&ev, 0);
    assert_eq!(code(&report, Layer::Dns), Some(Code::DnsSomeServersFail));
    assert!(summary(&report, Layer::Dns).contains("coredns-1 (10.244.2.9): SERVFAIL"));
}

#[test]
fn every_dns_pod_failing_is_the_server_down_not_a_share() {
    let mut ev = second_dns_pod(DnsOutcome::Timeout);
    let dns = dns_mut(&mut ev);
    dns.result = Fact::Known(dns_result("payments.shop", DnsOutcome::Timeout));
    if let Fact::Known(c) = &mut dns.cluster_dns {
        c.pods[0].direct = Fact::Known(DnsOutcome::Timeout);
    }
    let report = judge(&ev, 0);
    assert_eq!(code(&report, Layer::Dns), Some(Code::DnsServerDown));
}

#[test]
fn a_truncated_answer_whose_tcp_retry_fails_names_tcp_53_not_the_server() {
    let mut ev = healthy();
    let mut result = dns_result("payments.shop", DnsOutcome::Timeout);
    result.candidates[1].truncated = true;
    dns_mut(&mut ev).result = Fact::Known(result);
    let report = judge(&ev, 0);
    assert_fails_at(&report, Layer::Dns);
    assert_eq!(code(&report, Layer::Dns), Some(Code::DnsTcpFallbackFailed));
    assert_eq!(
        summary(&report, Layer::Dns),
        "payments.shop: the answer is too large for UDP (truncated) and the retry over TCP to 10.96.0.10:53 timed out: \
         TCP/53 to cluster DNS is blocked (a firewall, or NetworkPolicy that allows only UDP/53)"
    );
    assert!(evidence_text(&report, Layer::Dns).contains("truncated over UDP, asked again over TCP"));
    assert!(
        report
            .hints
            .iter()
            .any(|h| h.contains("TCP/53 as well as UDP/53"))
    );
}

/// `healthy()` with the pod's resolv.conf naming the NodeLocal DNSCache, and the lookup's outcome.
fn via_node_local(outcome: DnsOutcome) -> Evidence {
    let mut ev = healthy();
    let mut result = dns_result("payments.shop", outcome);
    let cache: SocketAddr = "169.254.20.10:53".parse().unwrap();
    result.resolv_conf.nameservers = vec![cache];
    for c in &mut result.candidates {
        c.server = cache;
    }
    dns_mut(&mut ev).result = Fact::Known(result);
    ev
}

#[test]
fn a_node_local_cache_is_the_cluster_resolver_and_its_failure_is_named() {
    assert_eq!(
        judge(&via_node_local(resolved_vip()), 0).verdict,
        Verdict::Reachable
    );
    let report = judge(&via_node_local(DnsOutcome::Timeout), 0);
    assert_fails_at(&report, Layer::Dns);
    assert_eq!(code(&report, Layer::Dns), Some(Code::DnsNodeLocalCacheDown));
    assert_eq!(
        summary(&report, Layer::Dns),
        "payments.shop fails via the NodeLocal DNSCache at 169.254.20.10 on node-a (timed out), while the DNS \
         pods answer directly: the node-local cache is down"
    );
    assert!(
        report
            .commands
            .iter()
            .any(|c| c.contains("k8s-app=node-local-dns"))
    );
    // NXDOMAIN through the cache is judged as the cluster's answer, not an off-cluster resolver.
    let report = judge(&via_node_local(DnsOutcome::Nxdomain), 0);
    assert_ne!(code(&report, Layer::Dns), Some(Code::DnsResolverOffCluster));
}

/// `healthy()` asked for example.com, a name outside the cluster, whose own query met `answer`
/// after the search list's NXDOMAINs.
fn outside(answer: DnsOutcome) -> Evidence {
    let mut ev = healthy();
    ev.destination = Destination::External;
    let dns = dns_mut(&mut ev);
    dns.name = "example.com".into();
    dns.service_guess = None;
    dns.expected = vec![];
    let mut result = dns_result("example.com", answer.clone());
    result.candidates[1].outcome = DnsOutcome::Nxdomain;
    let mut own = result.candidates[1].clone();
    own.name = "example.com.".into();
    own.outcome = answer.clone();
    result.candidates.push(own);
    result.answer = DnsAnswer {
        name: Some("example.com.".into()),
        outcome: answer,
    };
    dns.result = Fact::Known(result);
    ev
}

#[test]
fn a_name_outside_the_cluster_is_judged_by_its_own_answer_not_as_a_missing_service() {
    let report = judge(&outside(DnsOutcome::Refused), 0);
    assert_fails_at(&report, Layer::Dns);
    assert_eq!(code(&report, Layer::Dns), Some(Code::DnsUpstreamFailed));
    assert_eq!(
        summary(&report, Layer::Dns),
        "example.com, a name outside the cluster, is REFUSED by the cluster DNS: it serves only the cluster's \
         zones and forwards such names nowhere (CoreDNS without a forward upstream)"
    );
    let report = judge(&outside(DnsOutcome::Servfail), 0);
    assert!(
        summary(&report, Layer::Dns).contains("the cluster DNS answers SERVFAIL — the upstream resolvers")
    );
    let report = judge(&outside(DnsOutcome::Nxdomain), 0);
    assert_eq!(code(&report, Layer::Dns), Some(Code::DnsNameNotFound));
}

#[test]
fn a_name_that_resolved_through_cnames_shows_the_chain_before_its_addresses() {
    let mut ev = healthy();
    let dns = dns_mut(&mut ev);
    dns.expected = vec![];
    let outside = DnsOutcome::Resolved {
        addresses: vec![ip("198.51.100.10")],
        ttl: 30,
    };
    let mut result = dns_result("partner.shop", outside);
    result.candidates[1].cnames = vec!["partner.example".into()];
    dns.name = "partner.shop".into();
    dns.result = Fact::Known(result);
    let report = judge(&ev, 0);
    assert_eq!(step(&report, Layer::Dns).status, Status::Pass);
    let text = summary(&report, Layer::Dns);
    assert!(
        text.starts_with("partner.shop → CNAME partner.example → 198.51.100.10 (2nd search candidate"),
        "{text}"
    );
}
