//! Intermittent failures of a repeated check, judged on evidence built by hand.

use std::collections::BTreeMap;

use crate::check::judge::test_support::*;
use crate::check::repeat::{Attempt, Probed, RepeatFacts, RepeatedProbe};

use super::apply;

fn probe(probed: Probed, ok: u32, failed: &[(Attempt, u32)]) -> RepeatedProbe {
    let mut tally = BTreeMap::from([(Attempt::Ok, ok)]);
    tally.extend(failed.iter().copied());
    RepeatedProbe {
        probed,
        usual: if ok * 2 >= tally.values().sum::<u32>() {
            Attempt::Ok
        } else {
            failed[0].0
        },
        tally,
        latencies_us: (1..=u64::from(ok)).map(|i| i * 100).collect(),
    }
}

fn endpoint(name: &str, ip_: &str) -> Probed {
    Probed::Endpoint {
        ip: ip(ip_),
        port: 8080,
        pod: Some(NamespacedName::new("shop", name)),
    }
}

fn lookup() -> Probed {
    Probed::Lookup {
        name: "payments.shop".into(),
    }
}

fn vip() -> Probed {
    Probed::ClusterIp {
        ip: ip(VIP),
        port: 80,
        named: "ClusterIP",
    }
}

/// `healthy()` checked 20 times with these tallies, judged.
fn repeated(probes: Vec<RepeatedProbe>, ev: Option<Evidence>) -> Report {
    let mut ev = ev.unwrap_or_else(healthy);
    ev.repeats = Some(RepeatFacts { rounds: 20, probes });
    let mut report = judge(&ev, 0);
    apply(&mut report, &ev);
    report
}

fn clean() -> Vec<RepeatedProbe> {
    vec![
        probe(lookup(), 20, &[]),
        probe(vip(), 20, &[]),
        probe(endpoint("payments-0", "10.244.1.14"), 20, &[]),
        probe(endpoint("payments-1", "10.244.2.14"), 20, &[]),
    ]
}

#[test]
fn one_lost_connection_in_twenty_to_one_endpoint_fails_pod_network_by_name_and_share() {
    let mut probes = clean();
    probes[3] = probe(
        endpoint("payments-1", "10.244.2.14"),
        19,
        &[(Attempt::Timeout, 1)],
    );
    let report = repeated(probes, None);
    assert_fails_at(&report, Layer::PodNetwork);
    assert_eq!(
        code(&report, Layer::PodNetwork),
        Some(Code::PodNetworkIntermittent)
    );
    assert_eq!(
        summary(&report, Layer::PodNetwork),
        "intermittent over 20 rounds: 1 of 20 connections to shop/payments-1 (10.244.2.14:8080) timed out; \
         the other attempts connected"
    );
    assert_eq!(step(&report, Layer::Application).status, Status::Skip);
    assert_eq!(report.exit_code(), 15);
    let repeat = report.repeat.as_ref().unwrap();
    let pod_network = repeat
        .layers
        .iter()
        .find(|l| l.layer == Layer::PodNetwork)
        .unwrap();
    assert_eq!((pod_network.attempts, pod_network.failures), (40, 1));
    let flaky = repeat
        .probes
        .iter()
        .find(|p| p.probe.contains("payments-1"))
        .unwrap();
    assert_eq!((flaky.attempts, flaky.failures), (20, 1));
    assert_eq!(flaky.latency_us.unwrap().p50, 1000);
}

#[test]
fn lookups_that_time_out_now_and_then_fail_dns_with_the_resolver_stall() {
    let mut probes = clean();
    probes[0] = probe(lookup(), 17, &[(Attempt::Timeout, 3)]);
    probes.push(probe(
        Probed::DnsServer {
            ip: ip("10.244.1.2"),
            pod: Some(NamespacedName::new("kube-system", "coredns-0")),
        },
        18,
        &[(Attempt::Timeout, 2)],
    ));
    // An endpoint that also failed now and then: DNS comes first in causal order.
    probes[2] = probe(
        endpoint("payments-0", "10.244.1.14"),
        19,
        &[(Attempt::Refused, 1)],
    );
    let report = repeated(probes, None);
    assert_fails_at(&report, Layer::Dns);
    let text = summary(&report, Layer::Dns);
    assert!(
        text.contains("3 of 20 lookups of payments.shop timed out"),
        "{text}"
    );
    assert!(
        text.contains("2 of 20 queries to DNS pod kube-system/coredns-0 (10.244.1.2) timed out"),
        "{text}"
    );
    assert!(
        text.contains("resolver waits its timeout (5 s by default)"),
        "{text}"
    );
    assert!(report.commands.iter().any(|c| c.contains("k8s-app=kube-dns")));
}

#[test]
fn a_flaky_cluster_ip_fails_service_proxy_only_while_every_endpoint_always_connects() {
    let mut probes = clean();
    probes[1] = probe(vip(), 18, &[(Attempt::Timeout, 2)]);
    let report = repeated(probes.clone(), None);
    assert_fails_at(&report, Layer::ServiceProxy);
    assert!(summary(&report, Layer::ServiceProxy).ends_with("while every endpoint connected each time"));
    // An endpoint that refused now and then explains the ClusterIP's failures: application.
    probes[2] = probe(
        endpoint("payments-0", "10.244.1.14"),
        19,
        &[(Attempt::Refused, 1)],
    );
    let report = repeated(probes, None);
    assert_fails_at(&report, Layer::Application);
    assert_eq!(
        code(&report, Layer::Application),
        Some(Code::ApplicationIntermittent)
    );
}

#[test]
fn a_steady_failure_stands_and_a_clean_repeat_stays_reachable() {
    let mut ev = healthy();
    for e in endpoints_mut(&mut ev) {
        e.live = LiveFact::Tcp(refused());
        e.listeners = Fact::Known(vec![]);
    }
    ev.cluster_ip.as_mut().unwrap().live = LiveFact::Tcp(refused());
    let mut probes = clean();
    probes[3] = probe(
        endpoint("payments-1", "10.244.2.14"),
        19,
        &[(Attempt::Timeout, 1)],
    );
    let report = repeated(probes, Some(ev));
    assert_fails_at(&report, Layer::Application);
    assert!(report.repeat.is_some());
    let report = repeated(clean(), None);
    assert_eq!(report.verdict, Verdict::Reachable);
    assert_eq!(report.repeat.as_ref().unwrap().rounds, 20);
}
