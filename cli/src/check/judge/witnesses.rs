//! Reading the datapath witnesses for the `pod-network` and `service-proxy` layers: the path MTU,
//! the packet captures at the destination pods, and the source node's dataplane (Service rules,
//! conntrack fill). Each witness is optional; a missing one is said in a line, never guessed.

use netdiag_proto::{CaptureResult, NodeDataplaneResult, PathMtuOutcome, ServiceRules};

use super::*;

/// Conntrack fill from which the table counts as nearly full.
const CONNTRACK_NEARLY_FULL_PERCENT: u64 = 90;

/// An MTU black hole on the path to some endpoint that connects: the summary, its evidence lines.
pub(super) fn mtu_black_hole(cx: &Context) -> Option<(String, Vec<String>)> {
    let src = cx.source_node().unwrap_or("the source node");
    cx.witnesses.path_mtu.iter().find_map(|w| {
        let Fact::Known(PathMtuOutcome::Measured {
            interface_mtu,
            largest_passed_bytes,
            smallest_dropped_bytes: Some(dropped),
            learned_pmtu_bytes: None,
        }) = &w.outcome
        else {
            return None;
        };
        let between = match w.node.as_deref() {
            Some(n) if n != src => format!("between {src} and {n}"),
            Some(n) => format!("on {n}"),
            None => format!("between {src} and {}", fmt_ip(w.ip)),
        };
        let summary = format!(
            "packets > {largest_passed_bytes} bytes to {} are silently dropped (pod MTU {interface_mtu}): an MTU black hole {between}",
            fmt_ip(w.ip)
        );
        let evidence = vec![format!(
            "path MTU to {}:{}: {largest_passed_bytes}-byte TCP segments with DF are acknowledged, {dropped}-byte ones never are and no ICMP fragmentation-needed came back",
            fmt_ip(w.ip),
            w.port
        )];
        Some((summary, evidence))
    })
}

/// Lines for witnesses that could not run, so that the step says which is missing.
pub(super) fn gaps(cx: &Context) -> Vec<String> {
    let mut out = vec![];
    let mtu_gap = cx.witnesses.path_mtu.iter().find_map(|w| match &w.outcome {
        Fact::Unknown(why) => Some(format!("path MTU to {} not measured: {why}", fmt_ip(w.ip))),
        _ => None,
    });
    out.extend(mtu_gap);
    let capture_gap = cx.witnesses.captures.iter().find_map(|c| match &c.capture {
        Fact::Known(CaptureResult { error: Some(err), .. }) => {
            Some(format!("packet witness at {} unavailable: {err}", fmt_ip(c.ip)))
        }
        _ => None,
    });
    out.extend(capture_gap);
    out
}

/// Learned (working) path MTU discovery below the pod MTU: worth a line, not a failure.
pub(super) fn mtu_notes(cx: &Context) -> Vec<String> {
    cx.witnesses
        .path_mtu
        .iter()
        .filter_map(|w| match &w.outcome {
            Fact::Known(PathMtuOutcome::Measured {
                interface_mtu,
                learned_pmtu_bytes: Some(pmtu),
                ..
            }) => Some(format!(
                "path MTU to {} is {pmtu} bytes (pod MTU {interface_mtu}), learned from ICMP fragmentation-needed: discovery works",
                fmt_ip(w.ip)
            )),
            _ => None,
        })
        .collect()
}

/// What the capture at endpoint `e`'s pod saw of the source's SYNs, as a sentence, when it
/// tells something. `None` when there was no capture or it cannot tell (the line in [`gaps`]
/// or [`capture_unknown`] says why).
pub(super) fn packet_reading(cx: &Context, e: &EndpointFacts) -> Option<String> {
    let w = cx.witnesses.captures.iter().find(|c| c.ip == e.ip)?;
    let Fact::Known(c) = &w.capture else { return None };
    if c.error.is_some() {
        return None;
    }
    let pod = e
        .pod
        .as_ref()
        .map(|p| p.name.clone())
        .unwrap_or_else(|| fmt_ip(e.ip));
    let from = &cx.from.name;
    let arrived: Vec<_> = c.flows.iter().filter(|f| f.syn_seen).collect();
    if arrived.is_empty() {
        // Claim "never" only if the capture watched its whole window from before a SYN was sent.
        let covered = [
            w.probe_started_unix_us,
            w.probe_last_syn_unix_us,
            w.mtu_syn_unix_us,
        ]
        .into_iter()
        .flatten()
        .any(|sent| c.started_unix_us <= sent);
        return (covered && c.stopped == "window")
            .then(|| format!("the SYN from {from} never reached {pod}'s interface"));
    }
    if let Some(f) = arrived.iter().find(|f| f.syn_ack_sent) {
        let back = if f.peer_ack_seen {
            "and the handshake completed on that connection".to_string()
        } else {
            format!("but the reply never came back to {from}")
        };
        return Some(format!(
            "the SYN arrived at {pod}'s interface and a SYN-ACK left it, {back}"
        ));
    }
    if let Some(f) = arrived.iter().find(|f| f.rst_sent || f.icmp_sent.is_some()) {
        let what = match &f.icmp_sent {
            Some(icmp) => format!("an ICMP error ({icmp})"),
            None => "a RST".to_string(),
        };
        return Some(format!(
            "the SYN arrived at {pod}'s interface and {what} left it, but {from} never saw it"
        ));
    }
    Some(format!(
        "the SYN arrived at {pod}'s interface and nothing answered it"
    ))
}

/// The source node's conntrack fill, as an evidence line.
pub(super) fn conntrack_line(cx: &Context) -> Option<String> {
    let w = cx.witnesses.node_dataplane.as_ref()?;
    let Fact::Known(NodeDataplaneResult { conntrack, .. }) = &w.result else {
        return None;
    };
    match (conntrack.count, conntrack.max, &conntrack.error) {
        (Some(count), Some(max), _) if max > 0 => {
            let percent = count * 100 / max;
            let full = if percent >= CONNTRACK_NEARLY_FULL_PERCENT {
                ": the table is nearly full, new connections may be dropped"
            } else {
                ""
            };
            Some(format!(
                "conntrack on {}: {count}/{max} entries ({percent}%){full}",
                w.node
            ))
        }
        (_, _, Some(err)) => Some(format!("conntrack on {} not read: {err}", w.node)),
        _ => None,
    }
}

/// What the source node programmed for the VIP, when it was read.
pub(super) fn service_rules<'a>(cx: &'a Context) -> Result<(&'a str, &'a ServiceRules), String> {
    let Some(w) = cx.witnesses.node_dataplane.as_ref() else {
        return Err("not asked".into());
    };
    match &w.result {
        Fact::Known(NodeDataplaneResult {
            service_rules: Some(rules),
            ..
        }) => match &rules.error {
            Some(err) => Err(format!("the Service rules on {} were not read: {err}", w.node)),
            None => Ok((w.node.as_str(), rules)),
        },
        Fact::Known(_) => Err("not asked".into()),
        Fact::Unknown(why) => Err(format!("the Service rules on {} were not read: {why}", w.node)),
    }
}
