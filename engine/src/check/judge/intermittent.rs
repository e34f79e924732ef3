//! A repeated check's intermittent failures: probes whose usual result is a success but whose
//! attempts now and then fail. The steady checklist judged the usual results; when it passes,
//! the first layer in causal order whose probes failed now and then becomes the failing layer:
//! - `dns`: lookups of the target name as the pod makes them, or queries to one DNS pod;
//! - `pod-network`: connections to an endpoint that timed out or were unreachable;
//! - `service-proxy`: connections to the ClusterIP that failed while no endpoint's ever did;
//! - `application`: connections to an endpoint that were refused.
//!
//! A steady failure is never replaced: it names its layer, and the tallies ride along.

use std::collections::BTreeMap;

use super::findings::{Flaky, IntermittentFinding};
use crate::check::evidence::Evidence;
use crate::check::prose::NonEmpty;
use crate::check::repeat::{Attempt, Probed, RepeatFacts, RepeatedProbe};
use crate::check::report::{FixLine, Layer, Report, Status, Step, Verdict};

/// Adds the tallies of a repeated check to `report`, and fails it at the first layer whose
/// probes failed intermittently when the steady checklist passed.
pub fn apply(report: &mut Report, ev: &Evidence) {
    let Some(facts) = &ev.repeats else {
        return;
    };
    report.repeat = Some(crate::check::report::RepeatReport::of(facts));
    if report.verdict != Verdict::Reachable {
        return;
    }
    let Some(finding) = first_intermittent(facts) else {
        return;
    };
    let layer = finding.layer;
    for step in &mut report.steps {
        if step.layer == layer {
            *step = Step {
                layer,
                status: Status::Fail,
                summary: finding.summary(),
                evidence: evidence(&finding).into_iter().map(Into::into).collect(),
            };
        } else if step.layer > layer {
            step.status = Status::Skip;
            step.summary = format!("not judged (blocked upstream at {})", layer.id()).into();
            step.evidence.clear();
        }
    }
    report.verdict = Verdict::Unreachable;
    report.reachable = Some(false);
    report.failing_layer = Some(layer);
    let mut fix: Vec<FixLine> = report.hints.iter().cloned().map(FixLine::Hint).collect();
    fix.extend(report.commands.iter().cloned().map(FixLine::Command));
    fix.extend(advice(&finding));
    report.set_fix(fix);
}

/// The first layer, in causal order, whose probes failed now and then.
fn first_intermittent(facts: &RepeatFacts) -> Option<IntermittentFinding> {
    let flaky =
        |layer: Layer| -> Vec<Flaky> { facts.probes.iter().filter_map(|p| flaky_at(p, layer)).collect() };
    let endpoints_ever_failed = facts
        .probes
        .iter()
        .any(|p| matches!(p.probed, Probed::Endpoint { .. }) && p.tally.keys().any(|a| failed(*a)));
    [
        Layer::Dns,
        Layer::PodNetwork,
        Layer::ServiceProxy,
        Layer::Application,
    ]
    .into_iter()
    .filter(|layer| *layer != Layer::ServiceProxy || !endpoints_ever_failed)
    .find_map(|layer| {
        Some(IntermittentFinding {
            layer,
            rounds: facts.rounds,
            flaky: NonEmpty::from_vec(flaky(layer))?,
        })
    })
}

fn failed(attempt: Attempt) -> bool {
    !matches!(attempt, Attempt::Ok | Attempt::Error)
}

/// `probe`'s intermittent failures that belong to `layer`, if any.
fn flaky_at(probe: &RepeatedProbe, layer: Layer) -> Option<Flaky> {
    let belongs = |attempt: Attempt| match (&probe.probed, layer) {
        (Probed::Lookup { .. } | Probed::DnsServer { .. }, Layer::Dns) => true,
        (Probed::Endpoint { .. }, Layer::PodNetwork) => {
            matches!(attempt, Attempt::Timeout | Attempt::Unreachable)
        }
        (Probed::Endpoint { .. }, Layer::Application) => attempt == Attempt::Refused,
        (Probed::ClusterIp { .. }, Layer::ServiceProxy) => true,
        _ => false,
    };
    let failures: BTreeMap<Attempt, u32> = probe
        .intermittent()
        .into_iter()
        .filter(|(a, _)| belongs(*a))
        .collect();
    (!failures.is_empty()).then(|| Flaky {
        probed: probe.probed.clone(),
        failures,
        attempts: probe.attempts(),
    })
}

/// Each flaky probe's latency beside its failures: what the successful attempts took.
fn evidence(finding: &IntermittentFinding) -> Vec<String> {
    finding
        .flaky
        .iter()
        .map(|f| {
            let failed: u32 = f.failures.values().sum();
            format!(
                "{}: {} of {} attempts succeeded, {failed} failed ({})",
                f.probed,
                f.attempts - failed,
                f.attempts,
                f.failures
                    .iter()
                    .map(|(a, n)| format!("{n} {}", a.words()))
                    .collect::<Vec<_>>()
                    .join(", ")
            )
        })
        .collect()
}

/// Where to look next, by layer.
fn advice(finding: &IntermittentFinding) -> Vec<FixLine> {
    let hint = |s: &str| FixLine::Hint(s.to_string());
    match finding.layer {
        Layer::Dns => vec![
            hint(
                "a lost DNS query stalls the pod's lookup for the resolver's timeout (5 s by default): look at the DNS pods' load and logs; NodeLocal DNSCache or `options single-request-reopen` in the pod's dnsConfig avoids the A/AAAA conntrack race",
            ),
            FixLine::Command("kubectl -n kube-system logs -l k8s-app=kube-dns --tail=50".into()),
        ],
        Layer::PodNetwork => vec![hint(
            "connections are lost now and then on the path to that endpoint: look for conntrack insert failures (conntrack -S) and drops on the nodes between the pods, and the node's load",
        )],
        Layer::ServiceProxy => vec![hint(
            "the ClusterIP loses connections the endpoints never do: look for conntrack insert failures (conntrack -S) on the source's node and stale conntrack entries for the ClusterIP",
        )],
        _ => vec![hint(
            "the endpoint refuses some connections: a full accept queue (listen backlog), or a process restarting; look at its logs and restarts",
        )],
    }
}

#[cfg(test)]
#[path = "intermittent_tests.rs"]
mod tests;
