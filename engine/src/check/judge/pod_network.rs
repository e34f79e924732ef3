//! The `pod-network` layer: TCP connections (or, for a UDP port, datagrams) from the source
//! netns reach each endpoint's pod IP, and the datapath witnesses (path MTU, captures at the destination pods, conntrack) explain or overrule.

use netdiag_proto::{TcpOutcome, Transport};

use super::outcomes::{Certainty, EndpointStatus, nothing_bound, outcome, silence_unexplained, udp_reading};
use super::witnesses::{conntrack_line, gaps, mtu_black_hole, mtu_notes, packet_reading};
use super::*;

pub(super) fn judge_pod_network(cx: &Context) -> Judgment {
    with_witnesses(cx, connectivity(cx))
}

/// Adds what the datapath witnesses saw to the connect-based judgment: an MTU black hole fails a
/// layer whose connections all succeed; a capture says where a failing connection's packets
/// died; conntrack fill is evidence when the path fails; a witness that could not run says so.
fn with_witnesses(cx: &Context, judgment: Judgment) -> Judgment {
    match judgment {
        Judgment::Pass {
            summary,
            mut evidence,
        } => {
            if let Some((mtu_summary, mtu_evidence)) = mtu_black_hole(cx) {
                let mut lines: Vec<String> = evidence.into_iter().map(|l| l.text).collect();
                lines.extend(mtu_evidence);
                lines.extend(conntrack_line(cx));
                let fix = vec![
                    cmd("kubectl get nodes -o wide   # compare the node interface MTUs on the path"),
                    hint(
                        "set the CNI's MTU to the path MTU (e.g. Calico veth_mtu, Cilium --mtu) or fix the link MTU",
                    ),
                ];
                return fail(mtu_summary, lines, fix);
            }
            evidence.extend(mtu_notes(cx).into_iter().chain(gaps(cx)).map(Into::into));
            Judgment::Pass { summary, evidence }
        }
        Judgment::Fail {
            mut summary,
            mut evidence,
            fix,
        } => {
            let readings: Vec<String> = cx
                .live
                .iter()
                .filter(|e| e.live.tcp_outcome().is_some_and(is_blocked))
                .filter_map(|e| packet_reading(cx, e))
                .collect();
            if let Some(first) = readings.first() {
                summary = format!("{summary}; packet witness: {first}");
            }
            let extra = readings
                .iter()
                .map(|r| format!("packet witness: {r}"))
                .chain(conntrack_line(cx))
                .chain(gaps(cx));
            evidence.extend(extra.map(Into::into));
            Judgment::Fail {
                summary,
                evidence,
                fix,
            }
        }
        other => other,
    }
}

fn connectivity(cx: &Context) -> Judgment {
    if let Some(svc) = cx.target_service
        && let Some(host) = &svc.external_name
    {
        // The name resolving proves nothing about reaching the host behind it: say so rather
        // than call it reachable, and give the check that does probe it.
        let port = svc
            .requested_port()
            .map(|p| p.port.to_string())
            .unwrap_or_else(|| svc.requested.to_string());
        let host = host.trim_end_matches('.');
        return undetermined(
            format!(
                "{} is an ExternalName for {host}, outside the cluster's Services: this check does not connect to it",
                svc.key()
            ),
            vec![],
            cmds(vec![format!(
                "kubectl netdiag check --from {} --to {host}:{port}",
                cx.from
            )]),
        );
    }
    let live = &cx.live;
    if live.is_empty() {
        return not_applicable("not applicable: no destination address");
    }
    match cx.transport {
        Transport::Tcp => tcp_connectivity(cx),
        Transport::Udp => udp_connectivity(cx),
    }
}

/// Over TCP: a connection that times out or meets an ICMP unreachable, with NetworkPolicy
/// allowing it, fails this layer; the node witnesses tell a broken path from a drop at the pod.
fn tcp_connectivity(cx: &Context) -> Judgment {
    let live = &cx.live;
    let src_node = cx.source_node();
    let mut failing = vec![];
    let mut ok = vec![];
    let mut unknown = vec![];
    for e in live {
        let place = match (e.node(), src_node) {
            (Some(n), Some(s)) if n == s => format!("same node {n}"),
            (Some(n), _) => format!("node {n}"),
            _ => "outside the cluster's pods".into(),
        };
        match &e.live {
            LiveFact::Tcp(Fact::Known(o)) if is_blocked(o) => failing.push((*e, place, describe_tcp(o))),
            LiveFact::Tcp(Fact::Known(TcpOutcome::Error { detail })) => {
                unknown.push(format!("{}: probe error: {detail}", e.label()))
            }
            LiveFact::Tcp(Fact::Known(o)) => {
                ok.push((*e, format!("{} [{place}]: {}", e.label(), describe_tcp(o))))
            }
            other => unknown.push(format!("{}: {}", e.label(), not_probed(other))),
        }
    }
    if !failing.is_empty() {
        let mut evidence: Vec<String> = failing
            .iter()
            .map(|(e, place, what)| format!("TCP to {} [{place}] {what} from {}'s netns", e.label(), cx.from))
            .collect();
        evidence.extend(ok.iter().map(|(_, o)| format!("TCP to {o}")));
        evidence.extend(cx.node_witnesses.iter().map(witness_line));
        let (summary, fix) = path_finding(cx, &failing, &ok);
        return fail(summary, evidence, cmds(fix));
    }
    if !unknown.is_empty() {
        let summary = format!("the pod network could not be probed: {}", unknown[0]);
        return undetermined(summary, unknown, vec![]);
    }
    pass(
        format!(
            "{}/{} destination addresses answer from {}'s netns",
            ok.len(),
            live.len(),
            cx.from
        ),
        ok.into_iter().map(|(_, line)| line).collect(),
    )
}

/// A failing address, where it is, and what TCP saw.
type Failing<'a> = (&'a EndpointFacts, String, String);

/// `TCP to node node-b itself (172.18.0.3:10250): connected in 0.1 ms`: the second witness.
pub(super) fn witness_line(w: &NodeWitness) -> String {
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

/// What the failing addresses show about the path, claiming no more than the witnesses do:
/// a drop of one pod or port when other pods on that node, or the node itself, answer; a
/// broken path between the nodes only when the node does not answer either.
fn path_finding(cx: &Context, failing: &[Failing], ok: &[(&EndpointFacts, String)]) -> (String, Vec<String>) {
    let total = cx.live.len();
    let count = if total > 1 {
        format!(" ({}/{total} endpoints)", failing.len())
    } else {
        String::new()
    };
    let share = connection_share(failing.len(), total);
    let cni_fix = vec![
        "kubectl get nodes -o wide".to_string(),
        "kubectl -n kube-system get pods -o wide   # CNI pods on the affected nodes".to_string(),
    ];
    let (first, place, what) = &failing[0];
    let src = cx.source_node();
    let Some(node) = first.node().filter(|n| Some(*n) != src) else {
        // The same node, or an address outside the cluster's pods: no cross-node claim.
        let summary = format!(
            "TCP to {} [{place}] {what} although NetworkPolicy allows it{count}{share}",
            first.label()
        );
        return (summary, cni_fix);
    };
    let src = src.unwrap_or("the source node");
    let on_node: Vec<String> = failing
        .iter()
        .filter(|(e, _, _)| e.node() == Some(node))
        .map(|(e, _, _)| e.label())
        .collect();
    let pods = on_node.join(", ");
    let pod_fix = |cx: &Context| -> Vec<String> {
        let mut fix: Vec<String> = failing
            .iter()
            .filter_map(|(e, _, _)| e.pod.as_ref())
            .map(|p| format!("kubectl -n {} get pod {} -o wide", p.namespace, p.name))
            .take(3)
            .collect();
        fix.push(format!("kubectl -n {} get networkpolicy", cx.from.namespace));
        fix
    };
    let answering = ok.iter().filter(|(e, _)| e.node() == Some(node)).count();
    if answering > 0 {
        let summary = format!(
            "{} fail: {pods} on {node} {what} while {answering} other endpoint(s) on {node} connect, and NetworkPolicy allows it: a drop of that pod or port, not the path between {src} and {node}{share}",
            endpoints_of(failing.len(), total)
        );
        return (summary, pod_fix(cx));
    }
    let witness = cx.node_witnesses.iter().find(|w| w.node == node);
    match witness.map(|w| (w, &w.tcp)) {
        Some((w, Fact::Known(o))) if !is_blocked(o) => {
            let summary = format!(
                "TCP to {pods} on {node} {what} although NetworkPolicy allows it{count}, while {node} itself answers from {} ({}:{} {}): a drop of that pod or port on {node}, not the path between {src} and {node}{share}",
                cx.from,
                fmt_ip(w.ip),
                w.port,
                // What answered, not how fast: the summary must read the same on every run (the
                // round trip is in the witness's evidence).
                match o {
                    TcpOutcome::Connected { .. } => "connects".to_string(),
                    other => describe_tcp(other),
                }
            );
            (summary, pod_fix(cx))
        }
        Some((w, Fact::Known(o))) => {
            let summary = format!(
                "TCP from {src} to pods on {node} fails ({what}){count} and {node} itself ({}) does not answer either ({}): the cross-node path between {src} and {node} is broken{share}",
                fmt_ip(w.ip),
                describe_tcp(o)
            );
            (summary, cni_fix)
        }
        _ => {
            let summary = format!(
                "TCP to {pods} on {node} {what} although NetworkPolicy allows it{count}; no second witness tells whether the path to {node} or that pod drops it{share}"
            );
            (summary, cni_fix)
        }
    }
}

/// Over UDP: only an ICMP unreachable fails this layer (it proves the path rejected the
/// datagram); silence from a pod with a bound socket is `undetermined`, and silence from a pod
/// with nothing bound is left to `application`, which that alone proves at fault.
fn udp_connectivity(cx: &Context) -> Judgment {
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
        let what = not_probed(&e.live);
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

#[cfg(test)]
#[path = "pod_network_tests.rs"]
mod tests;
