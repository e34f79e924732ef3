//! The `service-proxy` layer: the ClusterIP connects when the pod IPs do.

use netdiag_proto::TcpOutcome;

use super::*;

pub(super) fn judge_service_proxy(cx: &Context) -> Judgment {
    let Some(cip) = &cx.cluster_ip else {
        return not_applicable(match (cx.destination, cx.target_service) {
            (Destination::Service, Some(s)) if s.headless => {
                "not applicable: headless Service (no virtual IP)"
            }
            (Destination::Service, _) => "not applicable: the Service has no ClusterIP",
            _ => "not applicable: no Service virtual IP on the path",
        });
    };
    let vip = format!("{}:{}", fmt_ip(cip.ip), cip.port);
    let outcome = match &cip.tcp {
        Fact::Known(o) => o,
        Fact::Unknown(reason) => {
            return undetermined(
                format!("ClusterIP {vip} was not probed: {reason}"),
                vec![],
                vec![],
            );
        }
    };
    let live = &cx.live;
    let any_connected = live
        .iter()
        .any(|e| matches!(e.tcp, Fact::Known(TcpOutcome::Connected { .. })));
    let all_refused = !live.is_empty()
        && live
            .iter()
            .all(|e| matches!(e.tcp, Fact::Known(TcpOutcome::Refused { .. })));
    let node = cx.source_node().unwrap_or("the source node");
    let proxy_fix = vec![
        format!(
            "kubectl -n kube-system get pods -l k8s-app=kube-proxy -o wide --field-selector spec.nodeName={node}"
        ),
        "kubectl -n kube-system logs -l k8s-app=kube-proxy --tail=50".into(),
    ];
    let evidence = vec![format!("TCP to ClusterIP {vip}: {}", describe_tcp(outcome))];
    match outcome {
        TcpOutcome::Connected { .. } => pass(format!("ClusterIP {vip} {}", describe_tcp(outcome)), vec![]),
        TcpOutcome::Refused { .. } if all_refused => pass(
            format!("ClusterIP {vip} refused, as its endpoints do (judged at application)"),
            evidence,
        ),
        TcpOutcome::Refused { .. } if any_connected => fail(
            format!(
                "ClusterIP {vip} is refused while the pod IPs connect: the Service rules on {node} act as if it had no endpoints (stale)"
            ),
            evidence,
            proxy_fix,
        ),
        TcpOutcome::Error { detail } => {
            undetermined(format!("ClusterIP {vip}: probe error: {detail}"), vec![], vec![])
        }
        _ if any_connected || all_refused => fail(
            format!(
                "ClusterIP {vip} {} while the pod IPs answer: the Service's rules are missing on {node} (kube-proxy/dataplane)",
                describe_tcp(outcome)
            ),
            evidence,
            proxy_fix,
        ),
        _ => undetermined(
            format!(
                "ClusterIP {vip} {} and no endpoint answered to compare with",
                describe_tcp(outcome)
            ),
            evidence,
            vec![],
        ),
    }
}
