//! Reading the datapath witnesses for the `pod-network` and `service-proxy` layers: the path MTU,
//! the packet captures at the destination pods, and the source node's dataplane (Service rules,
//! conntrack fill). Each witness is optional; a missing one is said in a line, never guessed.

use netdiag_proto::{
    CaptureResult, CaptureStop, EgressResult, NodeDataplaneResult, PathMtuOutcome, ServiceRules,
};

use super::*;

/// Conntrack fill from which the table counts as nearly full.
const CONNTRACK_NEARLY_FULL_PERCENT: u64 = 90;

/// A path MTU measurement that found a black hole: DF packets above `largest_passed_bytes`
/// vanish with no ICMP fragmentation-needed. The path belongs to the pair of nodes, so the
/// finding holds for every endpoint on the measured endpoint's node ([`black_hole_behind`]).
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct MtuBlackHole<'a> {
    pub witness: &'a PathMtuWitness,
    pub interface_mtu: u32,
    pub largest_passed_bytes: u32,
    pub smallest_dropped_bytes: u32,
}

impl MtuBlackHole<'_> {
    /// The stretch of path it lies on: between the source node and the measured address's node,
    /// on the source node itself, or between the source node and the address.
    pub fn between(&self, source_node: Option<&str>) -> Span {
        let src = source_node.map(str::to_string);
        match self.witness.node.as_deref() {
            Some(n) if Some(n) != source_node => Span::Nodes {
                src,
                node: n.to_string(),
            },
            Some(n) => Span::OnNode(n.to_string()),
            None => Span::ToAddress {
                src,
                ip: self.witness.ip,
            },
        }
    }
}

impl MtuBlackHole<'_> {
    /// The measurement as an evidence line.
    fn evidence(&self, source_node: Option<&str>) -> String {
        format!(
            "path MTU to {}:{} {}: {}-byte TCP segments with DF are acknowledged, {}-byte ones never are and no ICMP fragmentation-needed came back",
            fmt_ip(self.witness.ip),
            self.witness.port,
            self.between(source_node),
            self.largest_passed_bytes,
            self.smallest_dropped_bytes
        )
    }
}

/// The witness's black hole, when it found one.
fn black_hole(w: &PathMtuWitness) -> Option<MtuBlackHole<'_>> {
    let Fact::Known(PathMtuOutcome::Measured {
        interface_mtu,
        largest_passed_bytes,
        smallest_dropped_bytes: Some(dropped),
        learned_pmtu_bytes: None,
    }) = &w.outcome
    else {
        return None;
    };
    Some(MtuBlackHole {
        witness: w,
        interface_mtu: *interface_mtu,
        largest_passed_bytes: *largest_passed_bytes,
        smallest_dropped_bytes: *dropped,
    })
}

/// The black hole on the path to endpoint `e`: measured to `e` itself, or to another endpoint
/// of the same address family on `e`'s node (the path MTU is measured once per node and family).
pub(crate) fn black_hole_behind<'a>(
    witnesses: &'a [PathMtuWitness],
    e: &EndpointFacts,
) -> Option<MtuBlackHole<'a>> {
    let same_path = |w: &&PathMtuWitness| {
        w.ip == e.ip
            || (w.node.is_some() && w.node.as_deref() == e.node() && w.ip.is_ipv4() == e.ip.is_ipv4())
    };
    witnesses.iter().filter(same_path).find_map(black_hole)
}

/// An MTU black hole on the path to endpoints that connect: the finding naming the share of
/// endpoints behind it and every span it lies on, and its evidence lines.
pub(super) fn mtu_black_hole(cx: &Context) -> Option<(MtuFinding, Vec<String>)> {
    let witnesses = &cx.witnesses.path_mtu;
    let holes = NonEmpty::from_vec(witnesses.iter().filter_map(black_hole).collect())?;
    let src = cx.source_node();
    let behind: Vec<String> = cx
        .live
        .iter()
        .filter(|e| black_hole_behind(witnesses, e).is_some())
        .map(|e| {
            e.pod
                .as_ref()
                .map(|p| p.key().to_string())
                .unwrap_or_else(|| e.label())
        })
        .collect();
    let evidence = holes.iter().map(|h| h.evidence(src)).collect();
    let finding = MtuFinding {
        to: holes.first().witness.ip,
        holes: NonEmpty::from_vec(
            holes
                .iter()
                .map(|h| Hole {
                    span: h.between(src),
                    largest_passed_bytes: h.largest_passed_bytes,
                    interface_mtu: h.interface_mtu,
                })
                .collect(),
        )?,
        behind,
        total: cx.live.len(),
    };
    Some((finding, evidence))
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
    let egress_gap = cx.witnesses.egress.iter().find_map(|w| {
        let Fact::Known(r) = &w.watch else {
            return None;
        };
        let (node, ip) = (&w.node, fmt_ip(w.ip));
        match r {
            EgressResult { error: Some(err), .. } => {
                Some(format!("egress witness on {node} for {ip} unavailable: {err}"))
            }
            EgressResult { left, others, .. } if left.is_empty() && *others > 0 => Some(format!(
                "egress witness on {node}: {others} SYNs to {ip} left that cannot be tied to the pod (SNAT that changed the port, or other pods)"
            )),
            EgressResult {
                stopped: CaptureStop::PacketLimit,
                ..
            } => Some(format!(
                "egress witness on {node} for {ip} stopped at its packet budget: it cannot say nothing came back"
            )),
            _ => None,
        }
    });
    out.extend(egress_gap);
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

/// What the capture at endpoint `e`'s pod saw of the source's SYNs, when it tells something.
/// `None` when there was no capture or it cannot tell (the line in [`gaps`] says why).
pub(super) fn packet_reading(cx: &Context, e: &EndpointFacts) -> Option<PacketReading> {
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
    let from = cx.from.name.clone();
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
        return (covered && c.stopped == CaptureStop::Window)
            .then_some(PacketReading::NeverArrived { from, pod });
    }
    if let Some(f) = arrived.iter().find(|f| f.syn_ack_sent) {
        return Some(PacketReading::SynAckLeft {
            from,
            pod,
            completed: f.peer_ack_seen,
        });
    }
    if let Some(f) = arrived.iter().find(|f| f.rst_sent || f.icmp_sent.is_some()) {
        return Some(PacketReading::RefusalLeft {
            from,
            pod,
            icmp: f.icmp_sent.clone(),
        });
    }
    Some(PacketReading::Unanswered { pod })
}

/// What the source node showed of the pod's connections to `e`, an address outside the
/// cluster's pods, when it tells something. `None` when there was no watch or it cannot tell:
/// it could not run, or stopped at its packet budget before it could say nothing came back, or
/// no SYN of the pod's left but others to the address did (the line in [`gaps`] says which).
pub(super) fn egress_reading(cx: &Context, e: &EndpointFacts) -> Option<EgressReading> {
    let w = cx.witnesses.egress.iter().find(|w| w.ip == e.ip)?;
    let Fact::Known(r) = &w.watch else { return None };
    if r.error.is_some() {
        return None;
    }
    let reading = |seen| {
        Some(EgressReading {
            node: w.node.clone(),
            interface: r.interface.clone()?,
            gateway: r.gateway,
            node_address: r.node_address,
            ip: e.ip,
            seen,
        })
    };
    let answered_in_time = r.answered_unix_us.map(|at| {
        let deadline = w.probe_started_unix_us.map(|t| t + cx.timeout_ms * 1000);
        deadline.is_none_or(|deadline| at <= deadline)
    });
    // The translated address, when SNAT gave one, else the pod's own.
    let pod = w.pod_ip;
    let source = r
        .left
        .iter()
        .find(|s| s.address != pod)
        .or(r.left.first())
        .map(|s| s.address);
    let whole_window = r.stopped == CaptureStop::Window;
    match (source, answered_in_time) {
        (None, _) if r.others > 0 => None,
        (None, _) => {
            // "Never left" only if the watch covered its whole window from before a SYN left.
            let covered = [w.probe_started_unix_us, w.probe_last_syn_unix_us]
                .into_iter()
                .flatten()
                .any(|sent| r.started_unix_us <= sent);
            (covered && whole_window)
                .then(|| reading(EgressSeen::NeverLeft { arrived: r.from_pod }))
                .flatten()
        }
        (Some(source), Some(true)) if r.syn_ack_seen || r.rst_seen => reading(EgressSeen::AnswerLost {
            source,
            reset: !r.syn_ack_seen,
        }),
        (Some(source), Some(true)) => reading(EgressSeen::NoAnswer {
            source,
            pod,
            icmp: r.icmp_seen.clone(),
        }),
        // Nothing came back while the probe waited: said only of a watch that saw it through.
        (Some(source), _) if whole_window || r.stopped == CaptureStop::Answered => {
            reading(EgressSeen::NoAnswer {
                source,
                pod,
                icmp: None,
            })
        }
        (Some(_), _) => None,
    }
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

/// What the source node programmed for the VIP: `None` when it was not asked, else the node and
/// its rules, or the evidence line saying why they were not read.
pub(super) fn service_rules<'a>(cx: &'a Context) -> Option<Result<(&'a str, &'a ServiceRules), String>> {
    let w = cx.witnesses.node_dataplane.as_ref()?;
    match &w.result {
        Fact::Known(NodeDataplaneResult {
            service_rules: Some(rules),
            ..
        }) => Some(match &rules.error {
            Some(err) => Err(format!("the Service rules on {} were not read: {err}", w.node)),
            None => Ok((w.node.as_str(), rules)),
        }),
        Fact::Known(_) => None,
        Fact::Unknown(why) => Some(Err(format!(
            "the Service rules on {} were not read: {why}",
            w.node
        ))),
    }
}
