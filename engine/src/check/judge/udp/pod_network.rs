//! `pod-network` for a UDP port: datagrams from the source netns reach each endpoint's pod IP.
//!
//! Only an ICMP unreachable fails this layer over UDP (it proves the path rejected the datagram);
//! silence from a pod with a bound socket is `undetermined`, and silence from a pod with nothing
//! bound is left to `application`, which that alone proves at fault.

use super::Certainty;
use super::reading::{describe_udp, nothing_bound, outcome, silence_unexplained, udp_reading};
use crate::check::judge::outcomes::EndpointStatus;
use crate::check::judge::pod_network::witness_line;
use crate::check::judge::*;
use crate::check::report::Layer;

pub(in crate::check::judge) fn judge_udp_pod_network(cx: &Context) -> Judgment {
    let live = &cx.live;
    let src_node = cx.source_node();
    let mut failing = vec![];
    let mut answered = vec![];
    let mut unbound = vec![];
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
        match udp_reading(e).0 {
            EndpointStatus::Fail(Layer::PodNetwork) => failing.push(line),
            EndpointStatus::Fail(Layer::Application) if nothing_bound(e) => unbound.push(format!(
                "{line}; nothing is bound to the port there (judged at application)"
            )),
            EndpointStatus::Undetermined if outcome(e).is_some() => {
                unknown.push((e.label(), format!("{line}; {}", silence_unexplained(e))))
            }
            EndpointStatus::Undetermined => unknown.push((e.label(), line)),
            _ => answered.push(line),
        }
    }
    if let Some(first) = failing.first() {
        let summary = format!(
            "{} {} although NetworkPolicy allows it: {first}{} ({})",
            endpoints_of(failing.len(), live.len()),
            if failing.len() == 1 { "fails" } else { "fail" },
            connection_share(failing.len(), live.len()),
            Certainty::Certain.text()
        );
        let mut evidence = failing;
        evidence.extend(answered);
        evidence.extend(cx.node_witnesses.iter().map(witness_line));
        evidence.push(format!(
            "certainty: {} — an ICMP unreachable answered the datagram",
            Certainty::Certain.text()
        ));
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
    let rest = match unbound.len() {
        0 => String::new(),
        n => format!("; {n} with nothing bound to the port (judged at application)"),
    };
    let summary = format!(
        "{}/{} destination addresses answer a datagram from {}'s netns{rest}",
        answered.len(),
        live.len(),
        cx.from
    );
    answered.extend(unbound);
    pass(summary, answered)
}
