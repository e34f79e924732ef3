//! The checklist judge: a pure function from [`Evidence`] to the [`Report`].
//!
//! Rules (DESIGN.md, "Rules of judgment"): layers are judged in causal order; the first
//! layer proven at fault is the one failing layer and every later layer is "not judged";
//! a layer that could not be checked is UNDETERMINED with the reason (a tool failure is
//! never blamed on the network); live probes and policy analysis must agree, or the
//! disagreement is reported.

use super::evidence::*;
use super::prose::NonEmpty;
use super::report::{EvidenceLine, FixLine, Layer, Report, Status, Step, Verdict};

mod application;
mod context;
mod describe;
mod dns;
mod endpoints;
mod findings;
pub(crate) mod intermittent;
mod network_policy;
mod outcomes;
mod pod_network;
mod service;
mod service_protocol;
mod service_proxy;
mod sockets;
mod source;
mod witnesses;

use application::*;
use context::Context;
use describe::*;
use dns::*;
use endpoints::*;
use findings::*;
use network_policy::*;
use pod_network::*;
use service::*;
use service_proxy::*;
use source::*;

/// One layer's judgment before the walk decides what is reported: its finding, worded at the
/// walk ([`findings`]), and how the layer stands on it (`Skip`: not applicable, the walk goes on).
#[derive(Debug, Clone, PartialEq)]
pub(super) struct Judgment {
    /// Boxed: a finding carries the values its sentence needs, and judgments are moved around.
    pub finding: Box<Finding>,
    pub status: Status,
    pub evidence: Vec<EvidenceLine>,
    pub fix: Vec<FixLine>,
}

fn lines(evidence: Vec<String>) -> Vec<EvidenceLine> {
    evidence.into_iter().map(Into::into).collect()
}

/// A finding whose evidence lines carry their own kind (a disagreement between probe and policy).
pub(super) fn found_with(
    finding: impl Into<Finding>,
    status: Status,
    evidence: Vec<EvidenceLine>,
    fix: Vec<FixLine>,
) -> Judgment {
    Judgment {
        finding: Box::new(finding.into()),
        status,
        evidence,
        fix,
    }
}

pub(super) fn pass(finding: impl Into<Finding>, evidence: Vec<String>) -> Judgment {
    found_with(finding, Status::Pass, lines(evidence), vec![])
}

pub(super) fn fail(finding: impl Into<Finding>, evidence: Vec<String>, fix: Vec<FixLine>) -> Judgment {
    found_with(finding, Status::Fail, lines(evidence), fix)
}

pub(super) fn undetermined(
    finding: impl Into<Finding>,
    evidence: Vec<String>,
    fix: Vec<FixLine>,
) -> Judgment {
    found_with(finding, Status::Undetermined, lines(evidence), fix)
}

/// A command that confirms or fixes a finding (`kubectl ...`, without connection flags).
pub(super) fn cmd(line: impl Into<String>) -> FixLine {
    FixLine::Command(line.into())
}

/// Commands, each a [`cmd`].
pub(super) fn cmds(lines: Vec<String>) -> Vec<FixLine> {
    lines.into_iter().map(FixLine::Command).collect()
}

/// The `kubectl auth can-i` lines of the permissions these failures lacked, each once, in
/// order; `fallback` when none names one (not forbidden, or a read of several kinds).
pub(super) fn can_i_fix<'a>(
    failures: impl IntoIterator<Item = &'a ToolFailure>,
    fallback: &str,
) -> Vec<FixLine> {
    let mut lines: Vec<String> = Vec::new();
    for line in failures.into_iter().filter_map(ToolFailure::can_i) {
        if !lines.contains(&line) {
            lines.push(line);
        }
    }
    if lines.is_empty() {
        lines.push(fallback.to_string());
    }
    cmds(lines)
}

/// What to change, in words.
pub(super) fn hint(line: impl Into<String>) -> FixLine {
    FixLine::Hint(line.into())
}

/// Not applicable to this target; the walk goes on.
pub(super) fn not_applicable(finding: impl Into<Finding>) -> Judgment {
    found_with(finding, Status::Skip, vec![], vec![])
}

pub(super) use crate::cluster::CLUSTER_DOMAIN;

/// Judges the evidence; `duration_ms` is copied into the report.
pub fn judge(ev: &Evidence, duration_ms: u64) -> Report {
    let mut steps = Vec::with_capacity(Layer::ALL.len());
    let mut fix = Vec::new();
    let mut stopped: Option<(Layer, Status)> = None;
    let cx = Context::new(ev);
    for layer in Layer::ALL {
        if let Some((at, status)) = stopped {
            let why = if status == Status::Fail {
                format!("not judged (blocked upstream at {})", at.id())
            } else {
                format!("not judged ({} could not be checked)", at.id())
            };
            steps.push(Step {
                layer,
                status: Status::Skip,
                summary: why.into(),
                evidence: vec![],
            });
            continue;
        }
        let judgment = match layer {
            Layer::Source => judge_source(&cx),
            Layer::Dns => judge_dns(&cx),
            Layer::Service | Layer::Endpoints if cx.dns_blocked.is_some() => behind_blocked_dns(layer, &cx),
            Layer::Service => judge_service(&cx),
            Layer::Endpoints => judge_endpoints(&cx),
            Layer::NetworkPolicy => judge_policy(&cx),
            Layer::PodNetwork => judge_pod_network(&cx),
            Layer::ServiceProxy => judge_service_proxy(&cx),
            Layer::Application => judge_application(&cx),
        };
        let Judgment {
            finding,
            status,
            evidence,
            fix: layer_fix,
        } = judgment;
        let summary = finding.summary();
        if matches!(status, Status::Fail | Status::Undetermined) {
            stopped = Some((layer, status));
        }
        // A step that passes gives advice only when passing is not the whole story (a policy
        // that is not enforced): kept, as a failing step's is.
        fix.extend(layer_fix);
        steps.push(Step {
            layer,
            status,
            summary,
            evidence,
        });
    }
    let (verdict, reachable, failing_layer) = match stopped {
        None => (Verdict::Reachable, Some(true), None),
        Some((layer, Status::Fail)) => (Verdict::Unreachable, Some(false), Some(layer)),
        Some(_) => (Verdict::Undetermined, None, None),
    };
    let mut report = Report {
        verdict,
        reachable,
        failing_layer,
        steps,
        fix: vec![],
        commands: vec![],
        hints: vec![],
        network_policy: None,
        duration_ms,
        endpoints: cx
            .live
            .iter()
            .map(|e| outcomes::endpoint_report(&cx, e))
            .collect(),
        families: vec![],
        withheld: false,
        repeat: None,
    };
    report.set_fix(fix);
    report
}

/// The Service and endpoints layers while DNS lookups are dropped by NetworkPolicy: the client
/// never gets past DNS, so the policy (judged at network-policy) is the one failing layer. A fault
/// these layers would also show is kept in the summary, not reported as a second failing layer.
fn behind_blocked_dns(layer: Layer, cx: &Context) -> Judgment {
    let judgment = if layer == Layer::Service {
        judge_service(cx)
    } else {
        judge_endpoints(cx)
    };
    match judgment.status {
        Status::Fail | Status::Undetermined => not_applicable(Finding::BehindBlockedDns(judgment.finding)),
        _ => judgment,
    }
}

#[cfg(test)]
mod test_support;

#[cfg(test)]
#[path = "judge_tests.rs"]
mod tests;

/// The per-family judgment of dual-stack targets (`check::family`), on the tests' evidence.
#[cfg(test)]
#[path = "family_tests.rs"]
mod family_tests;
