//! The checklist judge: a pure function from [`Evidence`] to the [`Report`].
//!
//! Rules (DESIGN.md, "Rules of judgment"): layers are judged in causal order; the first
//! layer proven at fault is the one failing layer and every later layer is "not judged";
//! a layer that could not be checked is UNDETERMINED with the reason (a tool failure is
//! never blamed on the network); live probes and policy analysis must agree, or the
//! disagreement is reported.

use super::evidence::*;
use super::prose::NonEmpty;
use super::report::{EvidenceLine, FixLine, Layer, Report, Status, Step, Summary, Verdict};

mod application;
mod context;
mod describe;
mod dns;
mod endpoints;
mod findings;
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

/// One layer's judgment before the walk decides what is reported.
#[derive(Debug, Clone, PartialEq)]
pub(super) enum Judgment {
    /// A layer whose finding is a value, worded at the walk ([`findings`]).
    Found(Box<Found>),
    // The forms below are for layers that still word their findings where they decide them.
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

/// A layer's finding and how the layer stands on it (`Skip`: not applicable, the walk goes on).
#[derive(Debug, Clone, PartialEq)]
pub(super) struct Found {
    pub finding: Finding,
    pub status: Status,
    pub evidence: Vec<EvidenceLine>,
    pub fix: Vec<FixLine>,
}

impl Judgment {
    /// The finding, for a layer whose findings are values.
    #[cfg(test)]
    pub fn finding(&self) -> Option<&Finding> {
        match self {
            Judgment::Found(found) => Some(&found.finding),
            _ => None,
        }
    }
}

/// What a judgment states: a finding, or (for a layer not converted yet) a sentence.
pub(super) enum Said {
    Finding(Finding),
    Prose(String),
}

impl From<String> for Said {
    fn from(text: String) -> Self {
        Said::Prose(text)
    }
}

impl From<&str> for Said {
    fn from(text: &str) -> Self {
        Said::Prose(text.to_string())
    }
}

impl<F: Into<Finding>> From<F> for Said {
    fn from(finding: F) -> Self {
        Said::Finding(finding.into())
    }
}

fn lines(evidence: Vec<String>) -> Vec<EvidenceLine> {
    evidence.into_iter().map(Into::into).collect()
}

fn found(finding: Finding, status: Status, evidence: Vec<String>, fix: Vec<FixLine>) -> Judgment {
    Judgment::Found(Box::new(Found {
        finding,
        status,
        evidence: lines(evidence),
        fix,
    }))
}

pub(super) fn pass(summary: impl Into<Said>, evidence: Vec<String>) -> Judgment {
    match summary.into() {
        Said::Finding(finding) => found(finding, Status::Pass, evidence, vec![]),
        Said::Prose(summary) => Judgment::Pass {
            summary,
            evidence: lines(evidence),
        },
    }
}

pub(super) fn fail(summary: impl Into<Said>, evidence: Vec<String>, fix: Vec<FixLine>) -> Judgment {
    match summary.into() {
        Said::Finding(finding) => found(finding, Status::Fail, evidence, fix),
        Said::Prose(summary) => Judgment::Fail {
            summary,
            evidence: lines(evidence),
            fix,
        },
    }
}

pub(super) fn undetermined(summary: impl Into<Said>, evidence: Vec<String>, fix: Vec<FixLine>) -> Judgment {
    match summary.into() {
        Said::Finding(finding) => found(finding, Status::Undetermined, evidence, fix),
        Said::Prose(summary) => Judgment::Undetermined {
            summary,
            evidence: lines(evidence),
            fix,
        },
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

pub(super) fn not_applicable(summary: impl Into<Said>) -> Judgment {
    match summary.into() {
        Said::Finding(finding) => found(finding, Status::Skip, vec![], vec![]),
        Said::Prose(summary) => Judgment::NotApplicable(summary),
    }
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
        let (status, summary, evidence, f): (Status, Summary, _, _) = match judgment {
            Judgment::Found(found) => {
                let Found {
                    finding,
                    status,
                    evidence,
                    fix,
                } = *found;
                (status, finding.summary(), evidence, fix)
            }
            Judgment::Pass { summary, evidence } => (Status::Pass, summary.into(), evidence, vec![]),
            Judgment::NotApplicable(summary) => (Status::Skip, summary.into(), vec![], vec![]),
            Judgment::Fail {
                summary,
                evidence,
                fix,
            } => (Status::Fail, summary.into(), evidence, fix),
            Judgment::Undetermined {
                summary,
                evidence,
                fix,
            } => (Status::Undetermined, summary.into(), evidence, fix),
        };
        if matches!(status, Status::Fail | Status::Undetermined) {
            stopped = Some((layer, status));
            fix.extend(f);
        }
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
        Judgment::Found(found) if matches!(found.status, Status::Fail | Status::Undetermined) => {
            not_applicable(Finding::BehindBlockedDns(Box::new(found.finding)))
        }
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
