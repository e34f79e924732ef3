//! Repeated probes on plain values: tallies, the usual result and percentiles.

use netdiag_proto::{TcpResult, UnreachableReason};

use super::*;

fn tcp(outcome: TcpOutcome) -> Result<ProbeResult, ToolFailure> {
    Ok(ProbeResult::Tcp(TcpResult {
        ip: "10.244.2.3".parse().unwrap(),
        port: 8080,
        timeout_ms: 1000,
        outcome,
        local_port: None,
        started_unix_us: None,
        last_syn_unix_us: None,
    }))
}

fn connected(rtt_us: u64) -> Result<ProbeResult, ToolFailure> {
    tcp(TcpOutcome::Connected { rtt_us })
}

fn timeout() -> Result<ProbeResult, ToolFailure> {
    tcp(TcpOutcome::Timeout { after_ms: 1000 })
}

/// Samples of one endpoint probe, one result per round.
fn samples(results: Vec<Result<ProbeResult, ToolFailure>>) -> Samples {
    let key = ProbeKey::Endpoint("10.244.2.3".parse().unwrap(), 8080);
    let mut s = Samples::default();
    for r in results {
        let mut replies = Replies::default();
        replies.results.insert(key, r);
        replies.results.insert(
            ProbeKey::NodeDataplane,
            Err(ToolFailure::Agent { detail: "x".into() }),
        );
        s.add(&replies);
    }
    s
}

fn endpoint(_: ProbeKey) -> Option<Probed> {
    Some(Probed::Endpoint {
        ip: "10.244.2.3".parse().unwrap(),
        port: 8080,
        pod: Some(NamespacedName::new("shop", "payments-2")),
    })
}

#[test]
fn one_lost_connection_in_twenty_leaves_the_usual_result_a_success_and_is_tallied() {
    let mut results: Vec<_> = (1..=19).map(|i| connected(100 * i)).collect();
    results.insert(7, timeout());
    let s = samples(results);
    assert_eq!(s.rounds, 20);
    let usual = s.usual();
    assert_eq!(usual.len(), 1, "only repeated probes are sampled");
    assert!(matches!(usual.values().next(), Some(Ok(ProbeResult::Tcp(t))) if t.outcome.is_connected()));
    let facts = s.facts(endpoint);
    let probe = &facts.probes[0];
    assert_eq!((probe.usual, probe.attempts()), (Attempt::Ok, 20));
    assert_eq!(probe.intermittent(), BTreeMap::from([(Attempt::Timeout, 1)]));
    assert_eq!(probe.percentile_us(50), Some(1000));
    assert_eq!(probe.percentile_us(90), Some(1800));
    assert_eq!(probe.percentile_us(100), Some(1900));
    assert_eq!(probe.probed.to_string(), "shop/payments-2 (10.244.2.3:8080)");
}

#[test]
fn a_path_that_fails_most_of_the_time_stays_a_failure_and_a_tie_goes_to_success() {
    let mostly = samples(vec![timeout(), connected(1), timeout()]);
    let probe = &mostly.facts(endpoint).probes[0];
    assert_eq!(probe.usual, Attempt::Timeout);
    assert!(
        probe.intermittent().is_empty(),
        "a steady failure is judged by the checklist"
    );
    let tie = samples(vec![timeout(), connected(1)]);
    assert_eq!(tie.facts(endpoint).probes[0].usual, Attempt::Ok);
    let unreachable = tcp(TcpOutcome::Unreachable {
        reason: UnreachableReason::Network,
        detail: String::new(),
        rtt_us: 1,
    });
    assert_eq!(Attempt::of(&unreachable), Attempt::Unreachable);
}

#[test]
fn tool_errors_are_no_attempts() {
    let s = samples(vec![
        connected(5),
        Err(ToolFailure::Agent {
            detail: "gone".into(),
        }),
        connected(7),
    ]);
    let probe = &s.facts(endpoint).probes[0];
    assert_eq!((probe.usual, probe.attempts()), (Attempt::Ok, 2));
    assert!(probe.intermittent().is_empty());
}

#[test]
fn repetition_counts_rounds_or_time() {
    let rounds = Repetition::Rounds(3);
    assert!(rounds.another(2, Duration::from_secs(99)) && !rounds.another(3, Duration::ZERO));
    let timed = Repetition::For {
        duration: Duration::from_secs(10),
        interval: Duration::from_secs(1),
    };
    assert!(timed.another(5, Duration::from_secs(9)) && !timed.another(5, Duration::from_secs(10)));
    assert!(!timed.another(MAX_ROUNDS, Duration::ZERO));
    assert_eq!(timed.pause(), Duration::from_secs(1));
}
