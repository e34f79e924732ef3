//! `pod-network` for a UDP port: datagrams from the source netns reach each endpoint's pod IP.

use super::Certainty;
use super::reading::{describe_udp, outcome, silence_unexplained, udp_reading};
use crate::check::judge::outcomes::EndpointStatus;
use crate::check::judge::*;
use crate::check::report::Layer;

pub(in crate::check::judge) fn judge_udp_pod_network(cx: &Context) -> Judgment {
    let live = &cx.live;
    let src_node = cx.source_node();
    let mut failing = vec![];
    let mut answering = vec![];
    let mut unknown = vec![];
    for e in live {
        let place = match (e.node(), src_node) {
            (Some(n), Some(s)) if n == s => format!("same node {n}"),
            (Some(n), _) => format!("node {n}"),
            _ => "outside the cluster's pods".into(),
        };
        let what = match &e.udp {
            Some(Fact::Known(o)) => describe_udp(o),
            Some(Fact::Unknown(why)) => format!("not probed ({why})"),
            None => "not probed".into(),
        };
        let line = format!("UDP to {} [{place}]: {what}", e.label());
        match udp_reading(e) {
            (EndpointStatus::Fail(Layer::PodNetwork), certainty) => failing.push((*e, line, certainty)),
            (EndpointStatus::Undetermined, _) if outcome(e).is_some() => {
                unknown.push((e.label(), format!("{line}; {}", silence_unexplained(e))))
            }
            (EndpointStatus::Undetermined, _) => unknown.push((e.label(), line)),
            _ => answering.push(line),
        }
    }
    if let Some((first, line, _)) = failing.first() {
        // One rejected address makes the finding certain; silence alone keeps it likely.
        let certainty = if failing.iter().any(|(_, _, c)| *c == Certainty::Certain) {
            Certainty::Certain
        } else {
            Certainty::Likely
        };
        let why = match outcome(first) {
            Some(netdiag_proto::UdpOutcome::Silent { .. }) => format!(
                "; {}, so the kernel there would have answered port-unreachable: the datagram or that answer was dropped on the way",
                silence_unexplained(first)
            ),
            _ => String::new(),
        };
        let summary = format!(
            "{} {} although NetworkPolicy allows it: {line}{why}{} ({})",
            endpoints_of(failing.len(), live.len()),
            if failing.len() == 1 { "fails" } else { "fail" },
            connection_share(failing.len(), live.len()),
            certainty.text()
        );
        let mut evidence: Vec<String> = failing.iter().map(|(_, l, _)| l.clone()).collect();
        evidence.extend(answering);
        evidence.extend(cx.node_witnesses.iter().map(node_witness_line));
        evidence.push(format!("certainty: {}", certainty.text()));
        return fail(
            summary,
            evidence,
            cmds(vec![
                "kubectl get nodes -o wide".to_string(),
                "kubectl -n kube-system get pods -o wide   # CNI pods on the affected nodes".to_string(),
            ]),
        );
    }
    if let Some((first, _)) = unknown.first() {
        return undetermined(
            format!(
                "{} {} no answer, and UDP silence alone does not tell a drop on the path from an application that does not answer ({}): {first}",
                endpoints_of(unknown.len(), live.len()),
                if unknown.len() == 1 { "gets" } else { "get" },
                Certainty::CannotTell.text()
            ),
            unknown.into_iter().map(|(_, line)| line).collect(),
            vec![hint(
                "send the application a datagram it answers (e.g. its own client) from the source pod, or capture on the destination pod's interface",
            )],
        );
    }
    pass(
        format!(
            "{}/{} destination addresses answer a datagram (or refuse it with ICMP) from {}'s netns",
            answering.len(),
            live.len(),
            cx.from
        ),
        answering,
    )
}

fn node_witness_line(w: &NodeWitness) -> String {
    let what = match &w.tcp {
        Fact::Known(o) => describe_tcp(o),
        Fact::Unknown(why) => format!("not probed ({why})"),
    };
    format!(
        "TCP to node {} itself ({}:{}): {what}",
        w.node,
        fmt_ip(w.ip),
        w.port
    )
}
