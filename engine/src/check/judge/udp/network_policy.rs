//! `network-policy` for a UDP port: the policy evaluation, with what the datagrams met.

use netdiag_proto::UdpOutcome;

use super::Certainty;
use super::reading::{describe_udp, not_delivered, outcome, udp_reading};
use crate::check::judge::network_policy::{denied_line, policy_fix};
use crate::check::judge::*;
use crate::check::report::EvidenceLine;

pub(in crate::check::judge) fn judge_udp_policy(cx: &Context) -> Judgment {
    let live = &cx.live;
    let src_ns = cx.source_pod.map(|p| p.namespace.clone()).unwrap_or_default();
    let mut denied: Vec<&EndpointFacts> = vec![];
    let mut lines: Vec<EvidenceLine> = vec![];
    let mut unknown = vec![];
    let mut allowed = vec![];
    for e in live {
        match &e.policy {
            PolicyCheck::Denied { egress, ingress } => {
                let line = denied_line(e, egress, ingress);
                match outcome(e) {
                    Some(UdpOutcome::Answered { .. }) => lines.push(EvidenceLine::disagreement(format!(
                        "disagreement: {line}, yet the datagram was answered"
                    ))),
                    Some(o) => {
                        denied.push(e);
                        lines.push(format!("{line} — UDP {}", describe_udp(o)).into());
                    }
                    None => {
                        denied.push(e);
                        lines.push(line.into());
                    }
                }
            }
            PolicyCheck::NotEvaluated(reason) => unknown.push((e, reason.clone())),
            PolicyCheck::Allowed { detail } => allowed.push(format!("{}: {detail}", e.label())),
        }
    }
    if let Some(first) = denied.first() {
        let certainty = udp_reading(first).1;
        lines.push(certainty_line(first, certainty).into());
        let headline = match &first.policy {
            PolicyCheck::Denied {
                ingress: Some(side), ..
            } => format!("ingress to {} denied: {}", first.label(), side.why),
            PolicyCheck::Denied {
                egress: Some(side), ..
            } => format!("egress from {} denied: {}", cx.from, side.why),
            _ => "the flow is denied by NetworkPolicy".to_string(),
        };
        let count = if live.len() > 1 {
            format!(" ({}/{} endpoints)", denied.len(), live.len())
        } else {
            String::new()
        };
        return Judgment::Fail {
            summary: format!(
                "{headline}{count}{} ({})",
                connection_share(denied.len(), live.len()),
                certainty.text()
            ),
            evidence: lines,
            fix: policy_fix(cx, &denied, &src_ns),
        };
    }
    let blocked: Vec<String> = unknown
        .iter()
        .filter(|(e, _)| outcome(e).is_some_and(not_delivered))
        .map(|(e, reason)| format!("{}: policy not evaluated ({reason})", e.label()))
        .collect();
    if !blocked.is_empty() {
        return undetermined(
            "datagrams get no answer and NetworkPolicy could not be evaluated, so policy cannot be ruled out",
            blocked,
            vec![
                cmd("kubectl auth can-i list networkpolicies -A"),
                cmd(format!("kubectl -n {src_ns} get networkpolicy")),
            ],
        );
    }
    let disagreements = lines.len();
    lines.extend(allowed.into_iter().map(Into::into));
    lines.extend(
        unknown
            .iter()
            .map(|(e, reason)| format!("{}: not evaluated ({reason})", e.label()).into()),
    );
    let summary = if disagreements > 0 {
        format!(
            "NetworkPolicy denies {disagreements} flow(s) but the datagrams are answered: the CNI does not enforce NetworkPolicy"
        )
    } else {
        format!(
            "egress of {} and ingress of the destination allow the flow (UDP)",
            cx.from
        )
    };
    Judgment::Pass {
        summary,
        evidence: lines,
    }
}

/// Why the denial is as sure as it is: a REJECT's ICMP proves the drop, silence only agrees.
fn certainty_line(e: &EndpointFacts, certainty: Certainty) -> String {
    match (certainty, outcome(e)) {
        (Certainty::Certain, Some(o)) => format!(
            "certainty: {} — the datagram to {} was rejected ({}) while the policy denies it",
            certainty.text(),
            e.label(),
            describe_udp(o)
        ),
        (_, Some(UdpOutcome::Refused { .. })) => format!(
            "certainty: {} — the policy evaluation denies the flow, yet {} answered port-unreachable: the \
             datagram got through, so the CNI may not enforce the policy, and nothing is bound there",
            certainty.text(),
            e.label()
        ),
        _ => format!(
            "certainty: {} — the policy evaluation denies the flow and the datagrams got no answer, as a drop \
             gives; UDP silence alone is not proof",
            certainty.text()
        ),
    }
}
