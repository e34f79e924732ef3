//! The `pod-network` layer: TCP connections (or, for a UDP port, datagrams) from the source
//! netns reach each endpoint's pod IP, and the datapath witnesses (path MTU, captures at the destination pods, conntrack) explain or overrule.

use netdiag_proto::{TcpOutcome, Transport};

use super::outcomes::{Certainty, EndpointStatus, nothing_bound, outcome, silence_unexplained, udp_reading};
use super::witnesses::{conntrack_line, egress_reading, gaps, mtu_black_hole, mtu_notes, packet_reading};
use super::*;

pub(super) fn judge_pod_network(cx: &Context) -> Judgment {
    with_witnesses(cx, connectivity(cx))
}

/// Adds what the datapath witnesses saw to the connect-based judgment: an MTU black hole fails a
/// layer whose connections all succeed; conntrack fill is evidence when the path fails; a
/// witness that could not run says so. (What a capture saw is read with the failing TCP
/// connections, in [`tcp_connectivity`].)
fn with_witnesses(cx: &Context, mut found: Judgment) -> Judgment {
    match found.status {
        Status::Pass => {
            if let Some((mtu, mtu_evidence)) = mtu_black_hole(cx) {
                let mut lines: Vec<String> = found.evidence.into_iter().map(|l| l.text).collect();
                lines.extend(mtu_evidence);
                lines.extend(conntrack_line(cx));
                let fix = vec![
                    cmd("kubectl get nodes -o wide   # compare the node interface MTUs on the path"),
                    hint(
                        "set the CNI's MTU to the path MTU (e.g. Calico veth_mtu, Cilium --mtu) or fix the link MTU",
                    ),
                ];
                return fail(PodNetworkFinding::MtuBlackHole(mtu), lines, fix);
            }
            let notes = mtu_notes(cx).into_iter().chain(gaps(cx));
            found.evidence.extend(notes.map(Into::into));
        }
        Status::Fail => {
            let witnessed = conntrack_line(cx).into_iter().chain(gaps(cx));
            found.evidence.extend(witnessed.map(Into::into));
        }
        _ => {}
    }
    found
}

fn connectivity(cx: &Context) -> Judgment {
    if let Some(svc) = cx.target_service
        && let Some(host) = &svc.external_name
        && cx.live.is_empty()
    {
        // The name resolving proves nothing about reaching the host behind it: say so rather
        // than call it reachable, and give the check that does probe it.
        let port = svc
            .requested_port()
            .map(|p| p.port.to_string())
            .unwrap_or_else(|| svc.requested.to_string());
        let host = host.trim_end_matches('.');
        return undetermined(
            PodNetworkFinding::ExternalName {
                service: svc.key(),
                host: host.to_string(),
            },
            vec![],
            cmds(vec![format!(
                "kubectl netdiag check --from {} --to {host}:{port}",
                cx.from
            )]),
        );
    }
    let live = &cx.live;
    if live.is_empty() {
        return not_applicable(PodNetworkFinding::NotApplicable(NoDestination::NoAddress));
    }
    match cx.transport {
        Transport::Tcp => tcp_connectivity(cx),
        Transport::Udp => udp_connectivity(cx),
    }
}

/// Where `e` is, seen from the source pod.
fn place(cx: &Context, e: &EndpointFacts) -> Place {
    match (e.node(), cx.source_node()) {
        (Some(n), Some(s)) if n == s => Place::SameNode(n.to_string()),
        (Some(n), _) => Place::Node(n.to_string()),
        _ => Place::Outside,
    }
}

/// Over TCP: a connection that times out or meets an ICMP unreachable, with NetworkPolicy
/// allowing it, fails this layer; the node witnesses tell a broken path from a drop at the pod.
fn tcp_connectivity(cx: &Context) -> Judgment {
    let live = &cx.live;
    let mut failing: Vec<(&EndpointFacts, Dropped)> = vec![];
    let mut ok = vec![];
    let mut unknown: Vec<&EndpointFacts> = vec![];
    for e in live {
        let place = place(cx, e);
        match &e.live {
            LiveFact::Tcp(Fact::Known(o)) if is_blocked(o) => {
                let dropped = Dropped {
                    endpoint: e.label(),
                    place,
                    outcome: o.clone(),
                };
                failing.push((*e, dropped));
            }
            LiveFact::Tcp(Fact::Known(TcpOutcome::Error { .. })) => unknown.push(e),
            LiveFact::Tcp(Fact::Known(o)) => {
                ok.push((*e, format!("{} [{place}]: {}", e.label(), describe_tcp(o))))
            }
            _ => unknown.push(e),
        }
    }
    if let Some(judged) = egress_judgment(cx, &failing, &ok) {
        return judged;
    }
    if let Some((_, first)) = failing.first() {
        let mut evidence = connection_lines(cx, &failing, &ok);
        // A watch whose reading did not take the step (a pod address sent untranslated within
        // the cluster's networks) is still evidence.
        let watched = failing.iter().filter_map(|(e, _)| egress_reading(cx, e));
        evidence.extend(watched.map(|r| format!("egress witness: {r}")));
        evidence.extend(cx.node_witnesses.iter().map(witness_line));
        // What the captures at the failing pods saw: the first joins the summary.
        let readings: Vec<PacketReading> = failing
            .iter()
            .filter_map(|(e, _)| packet_reading(cx, e))
            .collect();
        evidence.extend(readings.iter().map(|r| format!("packet witness: {r}")));
        let (path, fix) = path_finding(cx, &failing, &ok);
        let finding = PodNetworkFinding::PathFailed {
            first: first.clone(),
            failing: failing.len(),
            total: live.len(),
            path,
            packet: readings.into_iter().next(),
        };
        return fail(finding, evidence, cmds(fix));
    }
    if let Some(first) = unknown.first() {
        let lines = unknown
            .iter()
            .map(|e| format!("{}: {}", e.label(), not_probed(&e.live)))
            .collect();
        let finding = PodNetworkFinding::NotProbed {
            endpoint: first.label(),
            live: first.live.clone(),
        };
        return undetermined(finding, lines, vec![]);
    }
    pass(
        PodNetworkFinding::Answer {
            transport: Transport::Tcp,
            answered: ok.len(),
            total: live.len(),
            from: cx.from.clone(),
            unbound: 0,
        },
        ok.into_iter().map(|(_, line)| line).collect(),
    )
}

/// Connections to addresses outside the cluster's pods that timed out, read where they leave
/// the source node: dropped on the node, sent untranslated, answered but lost on the way back,
/// or gone beyond the node unanswered (a hand-off, not a verdict on a layer). `None` without a
/// reading, or when a pod also fails (its path is judged as any pod's).
fn egress_judgment(
    cx: &Context,
    failing: &[(&EndpointFacts, Dropped)],
    ok: &[(&EndpointFacts, String)],
) -> Option<Judgment> {
    let all_outside = failing
        .iter()
        .all(|(e, d)| e.pod.is_none() && matches!(d.outcome, TcpOutcome::Timeout { .. }));
    let (e, first) = failing.first().filter(|_| all_outside)?;
    let reading = egress_reading(cx, e).filter(|r| !r.stays_inside())?;
    let mut evidence = connection_lines(cx, failing, ok);
    evidence.push(format!("egress witness: {reading}"));
    let (fix, hand_off) = egress_fix(&reading);
    let finding = PodNetworkFinding::Egress {
        first: first.clone(),
        reading,
    };
    Some(if hand_off {
        undetermined(finding, evidence, fix)
    } else {
        fail(finding, evidence, fix)
    })
}

/// What to run or ask for a reading, and whether it hands the fault off beyond the node. The
/// node's own tools, through `chroot /host` (a debug container's image has neither its
/// iptables nor its nft).
fn egress_fix(reading: &EgressReading) -> (Vec<FixLine>, bool) {
    let node = &reading.node;
    let ip = fmt_ip(reading.ip);
    let on_node = |what: &str, why: &str| {
        cmd(format!(
            "kubectl debug node/{node} -it --image=busybox -- chroot /host {what}   # {why}"
        ))
    };
    match &reading.seen {
        EgressSeen::NeverLeft { .. } => (
            vec![
                on_node(
                    "sh -c 'iptables-save; nft list ruleset'",
                    "drop rules for the address",
                ),
                hint("check the CNI's egress rules and any node firewall for this destination"),
            ],
            false,
        ),
        EgressSeen::AnswerLost { .. } => (
            vec![on_node(
                &format!("conntrack -L -d {ip}"),
                "the reply's reverse NAT",
            )],
            false,
        ),
        EgressSeen::NoAnswer { .. } if reading.untranslated() => (
            vec![
                on_node(
                    "sh -c 'iptables -t nat -S POSTROUTING; nft list ruleset'",
                    "masquerade for the pod CIDR",
                ),
                hint(
                    "enable the CNI's outgoing NAT (Calico natOutgoing, ip-masq-agent, Cilium enable-ipv4-masquerade)",
                ),
            ],
            false,
        ),
        EgressSeen::NoAnswer { .. } => (
            vec![hint(format!(
                "ask whoever runs the network beyond {node} (firewall, NAT gateway, the service at {ip}) whether it reaches {ip}"
            ))],
            true,
        ),
    }
}

/// The failing connections' lines, then the ones that connected.
fn connection_lines(
    cx: &Context,
    failing: &[(&EndpointFacts, Dropped)],
    ok: &[(&EndpointFacts, String)],
) -> Vec<String> {
    let mut lines: Vec<String> = failing
        .iter()
        .map(|(e, d)| {
            let what = describe_tcp(&d.outcome);
            format!(
                "TCP to {} [{}] {what} from {}'s netns",
                e.label(),
                d.place,
                cx.from
            )
        })
        .collect();
    lines.extend(ok.iter().map(|(_, o)| format!("TCP to {o}")));
    lines
}

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
/// broken path between the nodes only when the node does not answer either. With the commands
/// that show it.
fn path_finding(
    cx: &Context,
    failing: &[(&EndpointFacts, Dropped)],
    ok: &[(&EndpointFacts, String)],
) -> (PathReading, Vec<String>) {
    let cni_fix = vec![
        "kubectl get nodes -o wide".to_string(),
        "kubectl -n kube-system get pods -o wide   # CNI pods on the affected nodes".to_string(),
    ];
    let src = cx.source_node();
    let Some(node) = failing
        .first()
        .and_then(|(first, _)| first.node())
        .filter(|n| Some(*n) != src)
    else {
        // The same node, or an address outside the cluster's pods: no cross-node claim.
        return (PathReading::NotCrossNode, cni_fix);
    };
    let src = src.map(str::to_string);
    let pods: Vec<String> = failing
        .iter()
        .filter(|(e, _)| e.node() == Some(node))
        .map(|(e, _)| e.label())
        .collect();
    let mut pod_fix: Vec<String> = failing
        .iter()
        .filter_map(|(e, _)| e.pod.as_ref())
        .map(|p| format!("kubectl -n {} get pod {} -o wide", p.namespace, p.name))
        .take(3)
        .collect();
    pod_fix.push(format!("kubectl -n {} get networkpolicy", cx.from.namespace));
    let answering = ok.iter().filter(|(e, _)| e.node() == Some(node)).count();
    let node = node.to_string();
    if answering > 0 {
        let reading = PathReading::OthersOnNodeConnect {
            src,
            node,
            pods,
            answering,
        };
        return (reading, pod_fix);
    }
    let witness = cx.node_witnesses.iter().find(|w| w.node == node);
    match witness.map(|w| (w, &w.tcp)) {
        Some((w, Fact::Known(o))) if !is_blocked(o) => {
            let reading = PathReading::NodeAnswers {
                src,
                node,
                pods,
                from: cx.from.clone(),
                ip: w.ip,
                port: w.port,
                outcome: o.clone(),
            };
            (reading, pod_fix)
        }
        Some((w, Fact::Known(o))) => {
            let reading = PathReading::PathBroken {
                src,
                node,
                ip: w.ip,
                outcome: o.clone(),
            };
            (reading, cni_fix)
        }
        _ => (PathReading::NoSecondWitness { node, pods }, cni_fix),
    }
}

/// Over UDP: only an ICMP unreachable fails this layer (it proves the path rejected the
/// datagram); silence from a pod with a bound socket is `undetermined`, and silence from a pod
/// with nothing bound is left to `application`, which that alone proves at fault.
fn udp_connectivity(cx: &Context) -> Judgment {
    let live = &cx.live;
    let mut failing: Vec<Probed> = vec![];
    let mut answered = vec![];
    let mut unbound = vec![];
    let mut silent: Vec<Silence> = vec![];
    for e in live {
        let probed = Probed {
            endpoint: e.label(),
            place: place(cx, e),
            live: e.live.clone(),
        };
        let line = probed.to_string();
        match udp_reading(e).0 {
            EndpointStatus::Fail(Layer::PodNetwork) => failing.push(probed),
            EndpointStatus::Fail(Layer::Application) if nothing_bound(e) => unbound.push(format!(
                "{line}; nothing is bound to the port there (judged at application)"
            )),
            EndpointStatus::Undetermined => silent.push(Silence {
                probed,
                unexplained: outcome(e).is_some().then(|| silence_unexplained(e)),
            }),
            _ => answered.push(line),
        }
    }
    let total = live.len();
    if let Some(first) = failing.first().cloned() {
        let mut evidence: Vec<String> = failing.iter().map(ToString::to_string).collect();
        evidence.extend(answered);
        evidence.extend(cx.node_witnesses.iter().map(witness_line));
        evidence.push(format!(
            "certainty: {} — an ICMP unreachable answered the datagram",
            Certainty::Certain.text()
        ));
        let finding = PodNetworkFinding::DatagramRejected {
            first,
            failing: failing.len(),
            total,
        };
        let fix = cmds(vec![
            "kubectl get nodes -o wide".to_string(),
            "kubectl -n kube-system get pods -o wide   # CNI pods on the affected nodes".to_string(),
        ]);
        return fail(finding, evidence, fix);
    }
    if let Some(first) = silent.first().cloned() {
        let lines = silent.iter().map(ToString::to_string).collect();
        let finding = PodNetworkFinding::Silent {
            first,
            silent: silent.len(),
            total,
        };
        let fix = vec![hint(
            "send the application a datagram it answers (e.g. its own client) from the source pod, or capture on the destination pod's interface",
        )];
        return undetermined(finding, lines, fix);
    }
    let finding = PodNetworkFinding::Answer {
        transport: Transport::Udp,
        answered: answered.len(),
        total,
        from: cx.from.clone(),
        unbound: unbound.len(),
    };
    answered.extend(unbound);
    pass(finding, answered)
}

#[cfg(test)]
#[path = "pod_network_tests.rs"]
mod tests;
