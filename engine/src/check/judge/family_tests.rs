//! Dual-stack evidence judged per family: built from the IPv4 `healthy()` evidence by adding an
//! IPv6 address to every endpoint and an IPv6 ClusterIP and AAAA answer.

use super::test_support::*;
use crate::check::family;

const VIP6: &str = "fd00:10:96::c07";

/// The IPv6 twin of an IPv4 lab address `10.244.N.H`: `fd00:10:244:N::H`.
fn v6_of(e: &EndpointFacts) -> IpAddr {
    let IpAddr::V4(v4) = e.ip else { panic!("not ipv4") };
    let o = v4.octets();
    ip(&format!("fd00:10:244:{}::{}", o[2], o[3]))
}

/// `healthy()` as a dual-stack Service (IPv4 primary): every pod has an IPv6 endpoint too.
fn dual_stack() -> Evidence {
    let mut ev = healthy();
    let v6: Vec<EndpointFacts> = endpoints_mut(&mut ev)
        .iter()
        .map(|e| EndpointFacts {
            ip: v6_of(e),
            ..e.clone()
        })
        .collect();
    endpoints_mut(&mut ev).extend(v6);
    dns_mut(&mut ev).expected.push(ip(VIP6));
    let aaaa = DnsOutcome::Resolved {
        addresses: vec![ip(VIP6)],
        ttl: 5,
    };
    ev.secondary = Some(SecondaryFamily {
        family: IpFamily::V6,
        cluster_ip: Some(ClusterIpFacts {
            ip: ip(VIP6),
            port: 80,
            live: LiveFact::Tcp(connected()),
        }),
        dns: Some(Fact::Known(DnsResult {
            record_type: RecordType::Aaaa,
            ..dns_result("payments.shop", aaaa)
        })),
    });
    ev
}

#[test]
fn single_family_evidence_is_judged_as_the_checklist_judge_does() {
    let ev = healthy();
    assert_eq!(family::judge(&ev, 7), judge(&ev, 7));
}

#[test]
fn a_family_view_keeps_that_familys_clusterip_answer_and_endpoints_only() {
    let v = family::view(&dual_stack(), IpFamily::V6);
    assert!(v.secondary.is_none());
    assert_eq!(v.cluster_ip.as_ref().unwrap().ip, ip(VIP6));
    let dns = v.dns.as_ref().unwrap();
    assert_eq!(dns.expected, [ip(VIP6)]);
    assert_eq!(dns.result.known().unwrap().record_type, RecordType::Aaaa);
    let EndpointsFacts::Known(list) = &v.endpoints else {
        panic!("endpoints unknown")
    };
    assert_eq!(list.len(), 2);
    assert!(list.iter().all(|e| e.ip.is_ipv6()));
    assert!(
        v.node_witnesses.is_empty(),
        "the IPv4 node witness is not IPv6 evidence"
    );
    let v4 = family::view(&dual_stack(), IpFamily::V4);
    assert_eq!(v4.cluster_ip.as_ref().unwrap().ip, ip(VIP));
    assert_eq!(v4.node_witnesses.len(), 1);
}

#[test]
fn dual_stack_reachable_in_both_families_shows_each_familys_verdict() {
    let report = family::judge(&dual_stack(), 0);
    assert_eq!(report.verdict, Verdict::Reachable);
    let verdicts: Vec<(IpFamily, Verdict)> = report.families.iter().map(|f| (f.family, f.verdict)).collect();
    assert_eq!(
        verdicts,
        [
            (IpFamily::V4, Verdict::Reachable),
            (IpFamily::V6, Verdict::Reachable)
        ]
    );
    let dns = step(&report, Layer::Dns);
    assert!(
        dns.evidence
            .iter()
            .any(|l| l.starts_with("IPv6: ") && l.contains(VIP6)),
        "{dns:#?}"
    );
    assert_eq!(report.endpoints.len(), 4);
}

#[test]
fn ipv6_endpoints_timing_out_while_ipv4_connects_is_an_ipv6_pod_network_failure() {
    let mut ev = dual_stack();
    for e in endpoints_mut(&mut ev).iter_mut().filter(|e| e.ip.is_ipv6()) {
        e.live = LiveFact::Tcp(timeout());
    }
    ev.secondary.as_mut().unwrap().cluster_ip.as_mut().unwrap().live = LiveFact::Tcp(timeout());
    let report = family::judge(&ev, 0);
    assert_fails_at(&report, Layer::PodNetwork);
    let s = summary(&report, Layer::PodNetwork);
    assert!(
        s.starts_with("IPv6 path to shop/payments fails, IPv4 works: "),
        "{s}"
    );
    let v6 = &report.families[1];
    assert_eq!((v6.family, v6.verdict), (IpFamily::V6, Verdict::Unreachable));
    assert_eq!(v6.failing_layer, Some(Layer::PodNetwork));
    assert_eq!(report.families[0].verdict, Verdict::Reachable);
}

#[test]
fn dual_stack_service_without_aaaa_fails_dns_for_ipv6_only() {
    let mut ev = dual_stack();
    let second = ev.secondary.as_mut().unwrap();
    second.dns = Some(Fact::Known(DnsResult {
        record_type: RecordType::Aaaa,
        ..dns_result("payments.shop", DnsOutcome::Nodata)
    }));
    let report = family::judge(&ev, 0);
    assert_fails_at(&report, Layer::Dns);
    let s = summary(&report, Layer::Dns);
    assert!(
        s.starts_with("IPv6 path to shop/payments fails, IPv4 works"),
        "{s}"
    );
}

#[test]
fn both_families_failing_says_so() {
    let mut ev = dual_stack();
    for e in endpoints_mut(&mut ev) {
        e.live = LiveFact::Tcp(timeout());
    }
    ev.cluster_ip.as_mut().unwrap().live = LiveFact::Tcp(timeout());
    ev.secondary.as_mut().unwrap().cluster_ip.as_mut().unwrap().live = LiveFact::Tcp(timeout());
    let report = family::judge(&ev, 0);
    assert_fails_at(&report, Layer::PodNetwork);
    let s = summary(&report, Layer::PodNetwork);
    assert!(
        s.starts_with("both the IPv4 and the IPv6 path to shop/payments fail"),
        "{s}"
    );
}

#[test]
fn a_family_that_could_not_be_checked_is_not_called_failing() {
    let mut ev = dual_stack();
    for e in endpoints_mut(&mut ev).iter_mut().filter(|e| e.ip.is_ipv6()) {
        e.live = LiveFact::Tcp(Fact::Unknown(agent_missing("node-b")));
    }
    ev.secondary.as_mut().unwrap().cluster_ip.as_mut().unwrap().live =
        LiveFact::Tcp(Fact::Unknown(agent_missing("node-a")));
    let report = family::judge(&ev, 0);
    assert_eq!(report.verdict, Verdict::Undetermined, "{report:#?}");
    let headed = report
        .steps
        .iter()
        .find(|s| s.status == Status::Undetermined)
        .map(|s| s.summary.clone())
        .unwrap();
    assert!(
        headed.starts_with("IPv6 path to shop/payments could not be checked, IPv4 works"),
        "{headed}"
    );
}

#[test]
fn ipv6_refused_by_an_ipv4_only_listener_names_the_family() {
    let mut ev = family::view(&dual_stack(), IpFamily::V6);
    for e in endpoints_mut(&mut ev) {
        e.live = LiveFact::Tcp(refused());
    }
    ev.cluster_ip.as_mut().unwrap().live = LiveFact::Tcp(refused());
    let report = judge(&ev, 0);
    assert_fails_at(&report, Layer::Application);
    let s = summary(&report, Layer::Application);
    assert!(
        s.contains("only on 0.0.0.0:8080, which takes no connections of this address family"),
        "{s}"
    );
    assert!(
        report.hints[0].contains("[::] with IPV6_V6ONLY off"),
        "{:?}",
        report.hints
    );
}

#[test]
fn a_dual_stack_wildcard_serves_ipv4_unless_it_is_v6_only() {
    let mut ev = healthy();
    for e in endpoints_mut(&mut ev) {
        e.live = LiveFact::Tcp(refused());
        e.listeners = Fact::Known(vec![ListeningSocket {
            v6_only: Some(true),
            ..listening("::", 8080)
        }]);
    }
    ev.cluster_ip.as_mut().unwrap().live = LiveFact::Tcp(refused());
    let s = summary(&judge(&ev, 0), Layer::Application);
    assert!(s.contains("only on [::]:8080, which takes no connections"), "{s}");
    for e in endpoints_mut(&mut ev) {
        e.listeners = Fact::Known(vec![listening("::", 8080)]);
    }
    let s = summary(&judge(&ev, 0), Layer::Application);
    assert!(s.contains("yet it listens on 8080"), "{s}");
}

/// Dual-stack, IPv6 primary: the pod's resolv.conf names the IPv6 kube-dns address and its
/// lookups time out. The DNS pod has an IPv4 address (policy allows egress to it, and it answers
/// a direct query) and an IPv6 one (policy denies egress to it; the direct query times out).
fn dns_over_ipv6_denied_over_ipv4_allowed() -> Evidence {
    let mut ev = dual_stack();
    let dns = dns_mut(&mut ev);
    let mut result = dns_result("payments.shop", DnsOutcome::Timeout);
    let server: std::net::SocketAddr = "[fd00:10:96::a]:53".parse().unwrap();
    result.resolv_conf.nameservers = vec![server];
    for c in &mut result.candidates {
        c.server = server;
        c.outcome = DnsOutcome::Timeout;
    }
    dns.result = Fact::Known(result.clone());
    if let Fact::Known(c) = &mut dns.cluster_dns {
        c.service_ip = Some(server.ip());
        let v4 = c.pods[0].clone();
        c.pods.push(DnsPodFacts {
            ip: ip("fd00:10:244:1::2"),
            direct: Fact::Known(DnsOutcome::Timeout),
            egress_policy: PolicyCheck::Denied {
                egress: Some(denied_side(
                    "shop/checkout",
                    to("kube-system/coredns-0"),
                    "shop/checkout-egress",
                    53,
                    "UDP",
                )),
                ingress: None,
            },
            ..v4
        });
    }
    // The AAAA lookup beside it goes to the same nameserver and times out too.
    if let Some(second) = ev.secondary.as_mut() {
        second.dns = Some(Fact::Known(DnsResult {
            record_type: RecordType::Aaaa,
            ..result
        }));
    }
    ev
}

#[test]
fn dns_denied_in_the_family_the_queries_use_fails_network_policy_for_that_family() {
    let ev = dns_over_ipv6_denied_over_ipv4_allowed();
    for family in [IpFamily::V4, IpFamily::V6] {
        let report = judge(&family::view(&ev, family), 0);
        assert_fails_at(&report, Layer::NetworkPolicy);
        let s = summary(&report, Layer::NetworkPolicy);
        assert!(
            s.contains("to cluster DNS (port 53/UDP) is denied for IPv6: ")
                && s.contains("shop/checkout-egress"),
            "{s}"
        );
        assert!(!summary(&report, Layer::Dns).contains("not proxied"));
        let evidence = evidence_text(&report, Layer::NetworkPolicy);
        assert!(
            evidence.contains("direct query to DNS pod kube-system/coredns-0 (fd00:10:244:1::2): timed out"),
            "{evidence}"
        );
        assert!(!evidence.contains("(10.244.1.2)"), "{evidence}");
        assert!(
            report.fix[0].contains("k8s-app=kube-dns") && report.fix[0].contains("shop/checkout-egress"),
            "{:?}",
            report.fix
        );
    }
    assert_eq!(family::judge(&ev, 0).failing_layer, Some(Layer::NetworkPolicy));
}

#[test]
fn a_direct_answer_in_another_family_does_not_make_a_dns_timeout_an_unproxied_service_ip() {
    let mut ev = dns_over_ipv6_denied_over_ipv4_allowed();
    // Policy allows both families; the IPv6 DNS address just does not answer.
    if let Some(Fact::Known(c)) = ev.dns.as_mut().map(|d| &mut d.cluster_dns) {
        c.pods[1].egress_policy = c.pods[0].egress_policy.clone();
    }
    let report = judge(&family::view(&ev, IpFamily::V6), 0);
    assert_fails_at(&report, Layer::Dns);
    let s = summary(&report, Layer::Dns);
    assert!(s.contains("DNS server down") && !s.contains("not proxied"), "{s}");
}
