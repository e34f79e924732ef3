//! `service-proxy` for a UDP port: the ClusterIP answers a datagram when the pod IPs do.

use netdiag_proto::UdpOutcome;

use super::reading::{describe_udp, nothing_bound, outcome};
use crate::check::judge::*;

/// The VIP-versus-pod-IP differential over UDP (the caller adds the node's rules witness).
pub(in crate::check::judge) fn udp_differential(cx: &Context, cip: &ClusterIpFacts) -> Judgment {
    let vip = format!("{}:{}/UDP", fmt_ip(cip.ip), cip.port);
    let vip_outcome = match &cip.udp {
        Some(Fact::Known(o)) => o,
        Some(Fact::Unknown(reason)) => {
            return undetermined(
                format!("ClusterIP {vip} was not probed: {reason}"),
                vec![],
                vec![],
            );
        }
        None => return undetermined(format!("ClusterIP {vip} was not probed"), vec![], vec![]),
    };
    let live = &cx.live;
    let answered = live
        .iter()
        .filter(|e| matches!(outcome(e), Some(UdpOutcome::Answered { .. })))
        .count();
    // Endpoints with nothing bound refuse, or stay silent when their kernel rate-limits ICMP.
    let unbound = live.iter().filter(|e| nothing_bound(e)).count();
    let node = cx.source_node().unwrap_or("the source node");
    let what = describe_udp(vip_outcome);
    let evidence = vec![format!("UDP to ClusterIP {vip}: {what}")];
    let proxy_fix = || {
        cmds(vec![
            format!(
                "kubectl -n kube-system get pods -l k8s-app=kube-proxy -o wide --field-selector spec.nodeName={node}"
            ),
            "kubectl -n kube-system logs -l k8s-app=kube-proxy --tail=50".into(),
        ])
    };
    match vip_outcome {
        UdpOutcome::Answered { .. } if answered > 0 => pass(
            format!(
                "ClusterIP {vip} {what}, as {answered} of its {} endpoints do",
                live.len()
            ),
            vec![],
        ),
        UdpOutcome::Refused { .. } | UdpOutcome::Silent { .. } if unbound > 0 => pass(
            format!(
                "ClusterIP {vip} {what}, as the {unbound} of its {} endpoints with nothing bound do (judged at application)",
                live.len()
            ),
            evidence,
        ),
        UdpOutcome::Refused { .. } if answered > 0 => fail(
            format!(
                "ClusterIP {vip} is refused while {answered} endpoint(s) answer the same datagram: the Service rules on {node} act as if it had no endpoints (stale)"
            ),
            evidence,
            proxy_fix(),
        ),
        UdpOutcome::Silent { .. } | UdpOutcome::Unreachable { .. } if answered > 0 => fail(
            format!(
                "ClusterIP {vip} {what} while {answered} pod IP(s) answer the same datagram: the Service's rules are missing on {node} (kube-proxy/dataplane)"
            ),
            evidence,
            proxy_fix(),
        ),
        _ => undetermined(
            format!("ClusterIP {vip} {what} and no endpoint answered alike to compare with"),
            evidence,
            vec![],
        ),
    }
}
