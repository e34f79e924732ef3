//! The `pod-network` layer: TCP from the source netns reaches each endpoint's pod IP.

use netdiag_proto::TcpOutcome;

use super::*;

pub(super) fn judge_pod_network(cx: &Context) -> Judgment {
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
            vec![format!(
                "kubectl netdiag check --from {} --to {host}:{port}",
                cx.from
            )],
        );
    }
    let live = &cx.live;
    if live.is_empty() {
        return not_applicable("not applicable: no destination address");
    }
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
        match &e.tcp {
            Fact::Known(o) if is_blocked(o) => failing.push((e, place, describe_tcp(o))),
            Fact::Known(TcpOutcome::Error { detail }) => {
                unknown.push(format!("{}: probe error: {detail}", e.label()))
            }
            Fact::Known(o) => ok.push(format!("{} [{place}]: {}", e.label(), describe_tcp(o))),
            Fact::Unknown(reason) => unknown.push(format!("{}: not probed ({reason})", e.label())),
        }
    }
    if !failing.is_empty() {
        let mut evidence: Vec<String> = failing
            .iter()
            .map(|(e, place, what)| format!("TCP to {} [{place}] {what} from {}'s netns", e.label(), cx.from))
            .collect();
        evidence.extend(ok.iter().map(|o| format!("TCP to {o}")));
        let cross: Vec<&str> = failing
            .iter()
            .filter_map(|(e, _, _)| e.node())
            .filter(|n| Some(*n) != src_node)
            .collect();
        let all_cross = cross.len() == failing.len();
        let count = if live.len() > 1 {
            format!(" ({}/{} endpoints)", failing.len(), live.len())
        } else {
            String::new()
        };
        let summary = match (src_node, all_cross) {
            (Some(src), true) => {
                let mut nodes: Vec<&str> = cross.clone();
                nodes.sort();
                nodes.dedup();
                let same_ok = !ok.is_empty();
                format!(
                    "TCP from {src} to pods on {} fails ({}){count} {}: the cross-node pod network path is broken",
                    nodes.join(", "),
                    failing[0].2,
                    if same_ok {
                        "while same-node endpoints connect"
                    } else {
                        "and NetworkPolicy allows it"
                    }
                )
            }
            _ => format!(
                "TCP to {} [{}] {} although NetworkPolicy allows it{count}",
                failing[0].0.label(),
                failing[0].1,
                failing[0].2
            ),
        };
        return fail(
            summary,
            evidence,
            vec![
                "kubectl get nodes -o wide".into(),
                "kubectl -n kube-system get pods -o wide   # CNI pods on the affected nodes".into(),
            ],
        );
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
        ok,
    )
}
