//! The `service-proxy` layer: the ClusterIP connects (or answers a datagram) when the pod IPs do, and what the source
//! node programmed for the VIP agrees with the EndpointSlices.

use std::net::SocketAddr;

use netdiag_proto::{TcpOutcome, Transport, UdpOutcome};

use super::outcomes::{nothing_bound, outcome};
use super::witnesses::{conntrack_line, service_rules};
use super::*;

pub(super) fn judge_service_proxy(cx: &Context) -> Judgment {
    let judgment = differential(cx);
    let Some(cip) = &cx.cluster_ip else {
        return judgment;
    };
    let protocol = match cx.transport {
        Transport::Tcp => "TCP",
        Transport::Udp => "UDP",
    };
    let vip = format!("{}:{}/{protocol}", fmt_ip(cip.ip), cip.port);
    let (node, rules) = match service_rules(cx) {
        Ok(found) => found,
        Err(why) if why == "not asked" => return judgment,
        Err(why) => return amend(judgment, None, vec![why]),
    };
    let live: Vec<SocketAddr> = cx
        .live
        .iter()
        .filter_map(|e| Some(SocketAddr::new(e.ip, e.port?)))
        .collect();
    let stale: Vec<String> = rules
        .endpoints
        .iter()
        .filter(|a| !live.contains(a))
        .map(|a| format!("{}:{}", fmt_ip(a.ip()), a.port()))
        .collect();
    let ready = format!("{} ready endpoints in the slice", live.len());
    let line = match (rules.found, rules.rejects) {
        (false, _) => format!("{node} has no rule for {vip} ({ready})"),
        (true, true) => format!("{node} rejects {vip} as a Service without endpoints ({ready})"),
        (true, false) => format!(
            "{node} translates {vip} to {} ({ready})",
            NonEmpty::from_vec(
                rules
                    .endpoints
                    .iter()
                    .map(|a| format!("{}:{}", fmt_ip(a.ip()), a.port()))
                    .collect()
            )
            .map_or("no endpoint".into(), |to| to.joined())
        ),
    };
    if !stale.is_empty() {
        let summary = format!(
            "{node} translates {vip} to {} which {} no longer an endpoint: stale Service rules (kube-proxy on {node} is not syncing)",
            stale.join(", "),
            if stale.len() == 1 { "is" } else { "are" }
        );
        let mut evidence = vec![line];
        evidence.extend(conntrack_line(cx));
        return fail(summary, evidence, cmds(proxy_fix(node)));
    }
    // A missing rule explains a failing VIP; it never fails a working one (IPVS, nftables mode
    // or an eBPF dataplane program the VIP elsewhere).
    let explains = (!rules.found || (rules.rejects && !live.is_empty())).then(|| line.clone());
    amend(judgment, explains, vec![line])
}

/// Adds the rules witness to a judgment: `explains` joins a failing summary, `lines` the evidence.
fn amend(judgment: Judgment, explains: Option<String>, lines: Vec<String>) -> Judgment {
    match judgment {
        Judgment::Fail {
            summary,
            mut evidence,
            fix,
        } => {
            evidence.extend(lines.into_iter().map(Into::into));
            let summary = match explains {
                Some(why) => format!("{summary}: {why}"),
                None => summary,
            };
            Judgment::Fail {
                summary,
                evidence,
                fix,
            }
        }
        Judgment::Pass {
            summary,
            mut evidence,
        } => {
            evidence.extend(lines.into_iter().map(Into::into));
            Judgment::Pass { summary, evidence }
        }
        Judgment::Undetermined {
            summary,
            mut evidence,
            fix,
        } => {
            evidence.extend(lines.into_iter().map(Into::into));
            Judgment::Undetermined {
                summary,
                evidence,
                fix,
            }
        }
        other => other,
    }
}

fn proxy_fix(node: &str) -> Vec<String> {
    vec![
        format!(
            "kubectl -n kube-system get pods -l k8s-app=kube-proxy -o wide --field-selector spec.nodeName={node}"
        ),
        "kubectl -n kube-system logs -l k8s-app=kube-proxy --tail=50".into(),
    ]
}

fn differential(cx: &Context) -> Judgment {
    let Some(cip) = &cx.cluster_ip else {
        return not_applicable(match (cx.destination, cx.target_service) {
            (Destination::Service, Some(s)) if s.headless => {
                "not applicable: headless Service (no virtual IP)"
            }
            (Destination::Service, _) => "not applicable: the Service has no ClusterIP",
            _ => "not applicable: no Service virtual IP on the path",
        });
    };
    match cx.transport {
        Transport::Tcp => tcp_differential(cx, cip),
        Transport::Udp => udp_differential(cx, cip),
    }
}

/// The VIP-versus-pod-IP differential over TCP (the caller adds the node's rules witness).
fn tcp_differential(cx: &Context, cip: &ClusterIpFacts) -> Judgment {
    let vip = format!("{}:{}", fmt_ip(cip.ip), cip.port);
    let outcome = match &cip.live {
        LiveFact::Tcp(Fact::Known(o)) => o,
        other => {
            let why = other
                .not_probed()
                .map(|reason| format!(": {reason}"))
                .unwrap_or_default();
            return undetermined(format!("ClusterIP {vip} was not probed{why}"), vec![], vec![]);
        }
    };
    let live = &cx.live;
    let like_vip = live
        .iter()
        .filter(|e| e.live.tcp_outcome().is_some_and(|o| same_symptom(o, outcome)))
        .count();
    let any_answered = live.iter().any(|e| {
        e.live
            .tcp_outcome()
            .is_some_and(|o| !matches!(o, TcpOutcome::Error { .. }))
    });
    let all_refused = !live.is_empty()
        && live
            .iter()
            .all(|e| matches!(e.live.tcp_outcome(), Some(TcpOutcome::Refused { .. })));
    let node = cx.source_node().unwrap_or("the source node");
    let proxy_fix = proxy_fix(node);
    let evidence = vec![format!("TCP to ClusterIP {vip}: {}", describe_tcp(outcome))];
    let what = describe_tcp(outcome);
    match outcome {
        TcpOutcome::Error { detail } => {
            undetermined(format!("ClusterIP {vip}: probe error: {detail}"), vec![], vec![])
        }
        // The VIP connection reached one endpoint: it behaves like some endpoint does, so the
        // rules translate to the endpoints, whichever one this connection happened to reach.
        TcpOutcome::Connected { .. } if like_vip == live.len() => {
            pass(format!("ClusterIP {vip} {what}"), vec![])
        }
        TcpOutcome::Refused { .. } if all_refused => pass(
            format!("ClusterIP {vip} refused, as its endpoints do (judged at application)"),
            evidence,
        ),
        _ if like_vip > 0 => pass(
            format!(
                "ClusterIP {vip} {what}, as {like_vip} of its {} endpoints do: the Service rules on {node} translate to the endpoints (each endpoint is judged at its own layer)",
                live.len()
            ),
            evidence,
        ),
        TcpOutcome::Refused { .. } if any_answered => fail(
            format!(
                "ClusterIP {vip} is refused while no endpoint refuses: the Service rules on {node} act as if it had no endpoints (stale)"
            ),
            evidence,
            cmds(proxy_fix.clone()),
        ),
        TcpOutcome::Timeout { .. } | TcpOutcome::Unreachable { .. } if any_answered => fail(
            format!(
                "ClusterIP {vip} {what} while the pod IPs answer: the Service's rules are missing on {node} (kube-proxy/dataplane)"
            ),
            evidence,
            cmds(proxy_fix.clone()),
        ),
        _ => undetermined(
            format!("ClusterIP {vip} {what} and no endpoint answered alike to compare with"),
            evidence,
            vec![],
        ),
    }
}

/// Whether two TCP outcomes are the same symptom: both connected, both refused, or both
/// dropped on the way (timeout or unreachable).
fn same_symptom(a: &TcpOutcome, b: &TcpOutcome) -> bool {
    use TcpOutcome::*;
    matches!(
        (a, b),
        (Connected { .. }, Connected { .. }) | (Refused { .. }, Refused { .. })
    ) || (is_blocked(a) && is_blocked(b))
}

/// The VIP-versus-pod-IP differential over UDP (the caller adds the node's rules witness).
fn udp_differential(cx: &Context, cip: &ClusterIpFacts) -> Judgment {
    let vip = format!("{}:{}/UDP", fmt_ip(cip.ip), cip.port);
    let vip_outcome = match &cip.live {
        LiveFact::Udp(Fact::Known(o)) => o,
        other => {
            let why = other
                .not_probed()
                .map(|reason| format!(": {reason}"))
                .unwrap_or_default();
            return undetermined(format!("ClusterIP {vip} was not probed{why}"), vec![], vec![]);
        }
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
    let fix = || cmds(proxy_fix(node));
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
            fix(),
        ),
        UdpOutcome::Silent { .. } | UdpOutcome::Unreachable { .. } if answered > 0 => fail(
            format!(
                "ClusterIP {vip} {what} while {answered} pod IP(s) answer the same datagram: the Service's rules are missing on {node} (kube-proxy/dataplane)"
            ),
            evidence,
            fix(),
        ),
        _ => undetermined(
            format!("ClusterIP {vip} {what} and no endpoint answered alike to compare with"),
            evidence,
            vec![],
        ),
    }
}

#[cfg(test)]
#[path = "service_proxy_tests.rs"]
mod tests;
