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
use network_policy::*;
use pod_network::*;
use service::*;
use service_proxy::*;
use source::*;

/// One layer's judgment before the walk decides what is reported.
#[derive(Debug, Clone, PartialEq)]
pub(super) enum Judgment {
    Pass {
        summary: String,
        evidence: Vec<EvidenceLine>,
    },
    Fail {
        summary: String,
        evidence: Vec<EvidenceLine>,
        fix: Vec<FixLine>,
    },
    /// Not applicable to this target; the walk goes on.
    NotApplicable(String),
    Undetermined {
        summary: String,
        evidence: Vec<EvidenceLine>,
        fix: Vec<FixLine>,
    },
}

fn lines(evidence: Vec<String>) -> Vec<EvidenceLine> {
    evidence.into_iter().map(Into::into).collect()
}

pub(super) fn pass(summary: impl Into<String>, evidence: Vec<String>) -> Judgment {
    Judgment::Pass {
        summary: summary.into(),
        evidence: lines(evidence),
    }
}

pub(super) fn fail(summary: impl Into<String>, evidence: Vec<String>, fix: Vec<FixLine>) -> Judgment {
    Judgment::Fail {
        summary: summary.into(),
        evidence: lines(evidence),
        fix,
    }
}

pub(super) fn undetermined(summary: impl Into<String>, evidence: Vec<String>, fix: Vec<FixLine>) -> Judgment {
    Judgment::Undetermined {
        summary: summary.into(),
        evidence: lines(evidence),
        fix,
    }
}

/// A command that confirms or fixes a finding (`kubectl ...`, without connection flags).
pub(super) fn cmd(line: impl Into<String>) -> FixLine {
    FixLine::Command(line.into())
}

/// Commands, each a [`cmd`].
pub(super) fn cmds(lines: Vec<String>) -> Vec<FixLine> {
    lines.into_iter().map(FixLine::Command).collect()
}

/// What to change, in words.
pub(super) fn hint(line: impl Into<String>) -> FixLine {
    FixLine::Hint(line.into())
}

pub(super) fn not_applicable(summary: impl Into<String>) -> Judgment {
    Judgment::NotApplicable(summary.into())
}

pub(super) const CLUSTER_DOMAIN: &str = "cluster.local";

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
                summary: why,
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
        let step = match judgment {
            Judgment::Pass { summary, evidence } => Step {
                layer,
                status: Status::Pass,
                summary,
                evidence,
            },
            Judgment::NotApplicable(summary) => Step {
                layer,
                status: Status::Skip,
                summary,
                evidence: vec![],
            },
            Judgment::Fail {
                summary,
                evidence,
                fix: f,
            } => {
                stopped = Some((layer, Status::Fail));
                fix.extend(f);
                Step {
                    layer,
                    status: Status::Fail,
                    summary,
                    evidence,
                }
            }
            Judgment::Undetermined {
                summary,
                evidence,
                fix: f,
            } => {
                stopped = Some((layer, Status::Undetermined));
                fix.extend(f);
                Step {
                    layer,
                    status: Status::Undetermined,
                    summary,
                    evidence,
                }
            }
        };
        steps.push(step);
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
    match judgment {
        Judgment::Fail { summary, .. } | Judgment::Undetermined { summary, .. } => not_applicable(format!(
            "not judged (DNS is blocked by NetworkPolicy first, judged at network-policy); also: {summary}"
        )),
        other => other,
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
