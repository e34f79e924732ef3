//! The `service-proxy` layer: the ClusterIP connects (or answers a datagram) when the pod IPs do, and what the source
//! node programmed for the VIP agrees with the EndpointSlices.

use std::collections::BTreeSet;
use std::net::{IpAddr, SocketAddr};

use ipnet::IpNet;
use netdiag_proto::{ServiceRules, TcpOutcome, Transport, UdpOutcome, UnreachableReason};

use super::outcomes::{nothing_bound, outcome};
use super::witnesses::{conntrack_line, service_rules};
use super::*;
use crate::check::repeat;
use crate::cluster::endpoints::TrafficPolicy;

pub(super) fn judge_service_proxy(cx: &Context) -> Judgment {
    if let Some(lost) = local_not_masqueraded(cx) {
        return lost;
    }
    let ranges = SourceRanges::of(cx);
    if let Some(Ok(ranges)) = &ranges
        && let Some(dropped) = source_range_excluded(cx, ranges)
    {
        return dropped;
    }
    let line = ranges.map(|r| r.map_or_else(|unread| unread, |r| r.line(cx)));
    let judgment = with_evidence(judge_vip(cx), line.into_iter().collect());
    match (&cx.cluster_ip, &cx.witnesses.entry_from_node) {
        (Some(cip), Some(outside)) if judgment.status == Status::Pass => {
            from_outside(cx, cip, outside, judgment)
        }
        _ => with_evidence(judgment, load_balancer_nodes(cx).into_iter().collect()),
    }
}

/// What the connection to the address met, when it was lost: timed out or unreachable over
/// TCP, no answer to a datagram.
fn lost(cip: &ClusterIpFacts) -> Option<VipOutcome> {
    match &cip.live {
        LiveFact::Tcp(Fact::Known(o)) if is_blocked(o) => Some(VipOutcome::Tcp(o.clone())),
        LiveFact::Udp(Fact::Known(o @ UdpOutcome::Silent { .. })) => Some(VipOutcome::Udp(o.clone())),
        _ => None,
    }
}

/// A LoadBalancer address's `loadBalancerSourceRanges` of its family, and the source's address
/// kube-proxy on the source's node filters by them (a host-network pod's is its node's).
struct SourceRanges {
    source: IpAddr,
    host_network: bool,
    ranges: NonEmpty<IpNet>,
}

impl SourceRanges {
    /// The ranges the address is filtered by; `Err` with the evidence line when one of them
    /// could not be read (kube-proxy may read it: nothing is judged by them).
    fn of(cx: &Context) -> Option<Result<SourceRanges, String>> {
        let svc = cx.target_service?;
        let Some(ServiceEntry::LoadBalancer { address, .. }) = &svc.entry else {
            return None;
        };
        let ranges = match svc.source_ranges_for(*address) {
            Ok(ranges) => ranges?,
            Err(entry) => {
                return Some(Err(format!(
                    "loadBalancerSourceRanges entry {entry:?} could not be read: the check is not judged by them"
                )));
            }
        };
        let pod = cx.source_pod?;
        let same_family = |ip: &IpAddr| ip.is_ipv4() == address.is_ipv4();
        let source = match pod.host_network {
            true => pod.host_ips.iter().copied().find(same_family),
            false => pod.ip.filter(same_family),
        }?;
        let host_network = pod.host_network;
        Some(Ok(SourceRanges {
            source,
            host_network,
            ranges,
        }))
    }

    fn admit(&self) -> bool {
        self.ranges.iter().any(|r| r.contains(&self.source))
    }

    fn line(&self, cx: &Context) -> String {
        let (source, ranges) = (fmt_ip(self.source), self.ranges.joined());
        let whose = match self.host_network {
            true => "the source's node's address",
            false => "the source's address",
        };
        let got_through = match cx.cluster_ip.as_ref().map(|c| &c.live) {
            Some(LiveFact::Tcp(Fact::Known(o))) => matches!(o, TcpOutcome::Connected { .. }),
            Some(LiveFact::Udp(Fact::Known(o))) => matches!(o, UdpOutcome::Answered { .. }),
            _ => false,
        };
        match (self.admit(), got_through) {
            (true, _) => format!("loadBalancerSourceRanges {ranges} admit {whose} {source}"),
            (false, true) => format!(
                "loadBalancerSourceRanges {ranges} leave out {whose} {source}, yet the connection got through: this dataplane does not filter pods' connections by them"
            ),
            (false, false) => format!("loadBalancerSourceRanges {ranges} leave out {whose} {source}"),
        }
    }
}

/// What kube-proxy's load balancer firewall makes of a connection it drops: a TCP connection
/// times out, a datagram goes unanswered (from the node itself, the send is refused locally:
/// admin-prohibited).
fn dropped_by_firewall(cip: &ClusterIpFacts, host_network: bool) -> Option<VipOutcome> {
    match &cip.live {
        LiveFact::Tcp(Fact::Known(o @ TcpOutcome::Timeout { .. })) => Some(VipOutcome::Tcp(o.clone())),
        LiveFact::Udp(Fact::Known(o @ UdpOutcome::Silent { .. })) => Some(VipOutcome::Udp(o.clone())),
        LiveFact::Udp(Fact::Known(
            o @ UdpOutcome::Unreachable {
                reason: UnreachableReason::AdminProhibited,
                ..
            },
        )) if host_network => Some(VipOutcome::Udp(o.clone())),
        _ => None,
    }
}

/// Whether any repeated connection to the address got through: the firewall drops every one.
fn ever_got_through(cx: &Context) -> bool {
    cx.repeats.as_ref().is_some_and(|facts| {
        facts.probes.iter().any(|p| {
            matches!(p.probed, repeat::Probed::ClusterIp { .. }) && p.tally.contains_key(&repeat::Attempt::Ok)
        })
    })
}

/// A LoadBalancer address whose `loadBalancerSourceRanges` leave the source's address out,
/// and the connection dropped every time: kube-proxy sends on only connections from those
/// ranges and drops the rest (its load balancer firewall), endpoints or not.
fn source_range_excluded(cx: &Context, ranges: &SourceRanges) -> Option<Judgment> {
    let svc = cx.target_service?;
    let cip = cx.cluster_ip.as_ref()?;
    if ranges.admit() || ever_got_through(cx) {
        return None;
    }
    let outcome = dropped_by_firewall(cip, ranges.host_network)?;
    let vip = vip_of(cx, cip);
    let node = cx.source_node().unwrap_or("the source's node").to_string();
    let evidence = vec![
        format!("{} to {vip:#}: {outcome}", vip.transport_name()),
        ranges.line(cx),
    ];
    let target = format!(
        "svc/{}.{}:{}",
        svc.name,
        svc.namespace,
        svc.requested_port().map_or(0, |p| p.port)
    );
    let whose = match ranges.host_network {
        true => "the node's address",
        false => "the pods' addresses",
    };
    let fix = vec![
        cmd(format!(
            "kubectl -n {} get svc {} -o jsonpath='{{.spec.loadBalancerSourceRanges}}'",
            svc.namespace, svc.name
        )),
        FixLine::Hint(format!(
            "connect pods to the Service's ClusterIP ({target}), or add {whose} to loadBalancerSourceRanges"
        )),
        FixLine::Hint(format!(
            "if --to {target} (the ClusterIP) fails too, kube-proxy on {node} has not programmed the Service at all"
        )),
    ];
    let finding = ServiceProxyFinding::SourceRangeExcluded {
        vip,
        node,
        source: ranges.source,
        ranges: ranges.ranges.clone(),
        outcome,
    };
    Some(fail(finding, evidence, fix))
}

/// Another node's node port under `externalTrafficPolicy: Local`, with live endpoints on other
/// nodes than that one, and the connection lost: kube-proxy there hands a pod's connection
/// (one its own node did not masquerade) to any endpoint unmasqueraded, and an endpoint
/// elsewhere answers the pod straight, so the pod drops the answer. Not from a host-network
/// pod, whose connection the node port's node takes for an outside client's.
fn local_not_masqueraded(cx: &Context) -> Option<Judgment> {
    let svc = cx.target_service?;
    let Some(ServiceEntry::NodePort { node: entered, .. }) = &svc.entry else {
        return None;
    };
    let cip = cx.cluster_ip.as_ref()?;
    let from_pod_network = cx.source_pod.is_some_and(|p| !p.host_network);
    if svc.external_traffic_policy != TrafficPolicy::Local
        || cx.source_node() == Some(entered.as_str())
        || !from_pod_network
    {
        return None;
    }
    let elsewhere: Vec<String> = cx
        .all_live
        .iter()
        .filter(|e| e.node() != Some(entered.as_str()))
        .map(|e| match (&e.pod, e.node()) {
            (Some(pod), Some(node)) => format!("{} on {node}", pod.name),
            _ => e.label(),
        })
        .collect();
    let elsewhere = NonEmpty::from_vec(elsewhere)?;
    let outcome = lost(cip)?;
    let vip = vip_of(cx, cip);
    let evidence = vec![format!("{} to {vip:#}: {outcome}", vip.transport_name())];
    let fix = vec![
        FixLine::Hint(format!(
            "connect pods to the Service's ClusterIP (svc/{}.{}:{}), or to the node port of their own node",
            svc.name,
            svc.namespace,
            svc.requested_port().map_or(0, |p| p.port)
        )),
        FixLine::Hint(
            "or set externalTrafficPolicy: Cluster (clients' addresses are then masqueraded)".into(),
        ),
    ];
    let finding = ServiceProxyFinding::LocalNotMasqueraded {
        vip,
        entered: entered.clone(),
        elsewhere,
        outcome,
    };
    Some(fail(finding, evidence, fix))
}

/// For a LoadBalancer address under `externalTrafficPolicy: Local`, which nodes the load
/// balancer outside must send to: pods pass on any node, its clients only on those.
fn load_balancer_nodes(cx: &Context) -> Option<String> {
    let svc = cx.target_service?;
    if !matches!(svc.entry, Some(ServiceEntry::LoadBalancer { .. }))
        || svc.external_traffic_policy != TrafficPolicy::Local
    {
        return None;
    }
    let nodes: BTreeSet<&str> = cx.all_live.iter().filter_map(|e| e.node()).collect();
    let nodes = nodes.into_iter().collect::<Vec<_>>().join(", ");
    let health = match svc.health_check_node_port {
        Some(port) => format!("kube-proxy's health check on node port {port} answers 200 only there"),
        None => "kube-proxy's health check answers 200 only there".into(),
    };
    Some(format!(
        "externalTrafficPolicy: Local: the load balancer's clients are served only on the nodes with an endpoint ({nodes}); {health}, and a load balancer that sends elsewhere loses them"
    ))
}

/// A node port the pods pass, as a client outside the pod network meets it: from another
/// node's own address, where `externalTrafficPolicy` applies.
fn from_outside(cx: &Context, cip: &ClusterIpFacts, outside: &EntryFromNode, judgment: Judgment) -> Judgment {
    let entered = cx.translating_node().unwrap_or("the node").to_string();
    let from = &outside.node;
    let outcome = match &outside.tcp {
        Fact::Known(TcpOutcome::Connected { .. }) => {
            let line = format!("TCP from {from}'s own address (a client outside the pod network): connected");
            return with_evidence(judgment, vec![line]);
        }
        Fact::Known(TcpOutcome::Error { detail }) => {
            return with_evidence(
                judgment,
                vec![format!("TCP from {from}'s own address: probe error: {detail}")],
            );
        }
        Fact::Unknown(why) => {
            return with_evidence(
                judgment,
                vec![format!("not tried from {from}'s own address: {why}")],
            );
        }
        Fact::Known(outcome) => outcome.clone(),
    };
    let local = cx
        .target_service
        .is_some_and(|s| s.external_traffic_policy == TrafficPolicy::Local);
    // The endpoints the node port's node sends an outside client to: its own under Local.
    let served_by: Vec<&EndpointFacts> = cx
        .all_live
        .iter()
        .copied()
        .filter(|e| !local || e.node() == Some(entered.as_str()))
        .collect();
    let no_local_endpoint = local && served_by.is_empty();
    // Met as one of those endpoints meets any connection: theirs to judge, not the node's.
    if let Some(like) = served_by
        .iter()
        .find(|e| e.live.tcp_outcome().is_some_and(|o| same_symptom(o, &outcome)))
    {
        let line = format!(
            "TCP from {from}'s own address: {}, as {} does",
            describe_tcp(&outcome),
            like.label()
        );
        return with_evidence(judgment, vec![line]);
    }
    let vip = vip_of(cx, cip);
    let evidence = vec![format!(
        "TCP from {from}'s own address: {}",
        describe_tcp(&outcome)
    )];
    let fix = match cx.target_service.map(|s| s.key()) {
        Some(svc) if no_local_endpoint => vec![format!(
            "kubectl -n {} get endpointslices -l kubernetes.io/service-name={} -o wide",
            svc.namespace, svc.name
        )],
        _ => proxy_fix(&entered),
    };
    let mut fix = cmds(fix);
    if no_local_endpoint {
        fix.push(FixLine::Hint(format!(
            "send clients only to nodes with an endpoint (a load balancer's health check on healthCheckNodePort does), run an endpoint on {entered}, or set externalTrafficPolicy: Cluster (clients' addresses are then masqueraded)"
        )));
    }
    let finding = ServiceProxyFinding::ClosedOutside {
        vip,
        entered,
        from: from.clone(),
        outcome,
        no_local_endpoint,
    };
    let mut failed = fail(finding, evidence, fix);
    failed.evidence.extend(judgment.evidence);
    failed
}

/// The address the check connected to in place of the endpoints, named by its kind.
fn vip_of(cx: &Context, cip: &ClusterIpFacts) -> Vip {
    Vip {
        ip: cip.ip,
        port: cip.port,
        transport: cx.transport,
        kind: VipKind::of(cx.target_service.and_then(|s| s.entry.as_ref())),
    }
}

/// The VIP against its endpoints, and what the source node programmed for it.
fn judge_vip(cx: &Context) -> Judgment {
    let Some(cip) = &cx.cluster_ip else {
        return not_applicable(ServiceProxyFinding::NotApplicable(
            match (cx.destination, cx.target_service) {
                (Destination::Service, Some(s)) if s.headless => NoVip::Headless,
                (Destination::Service, _) => NoVip::NoClusterIp,
                _ => NoVip::NotAService,
            },
        ));
    };
    let vip = vip_of(cx, cip);
    let reading = match service_rules(cx) {
        None => return differential(cx, cip, vip, None),
        Some(Err(why)) => return with_evidence(differential(cx, cip, vip, None), vec![why]),
        Some(Ok((node, rules))) => rules_reading(cx, vip, node, rules),
    };
    let stale: Vec<SocketAddr> = match &reading.programmed {
        Programmed::TranslatesTo(to) => to
            .iter()
            .filter(|a| !addrs(&cx.all_live).contains(a) && !addrs(&cx.live).contains(a))
            .copied()
            .collect(),
        _ => vec![],
    };
    if let Some(stale) = NonEmpty::from_vec(stale) {
        let mut evidence = vec![reading.to_string()];
        evidence.extend(conntrack_line(cx));
        let fix = cmds(proxy_fix(&reading.node));
        let finding = ServiceProxyFinding::StaleRules {
            node: reading.node,
            vip,
            stale,
        };
        return fail(finding, evidence, fix);
    }
    // A missing rule explains a failing VIP; it never fails a working one (IPVS, nftables mode
    // or an eBPF dataplane program the VIP elsewhere).
    let explains = match reading.programmed {
        Programmed::NoRule => true,
        Programmed::Rejects | Programmed::Drops => reading.ready > 0,
        Programmed::TranslatesTo(_) => false,
    };
    let line = reading.to_string();
    let judgment = differential(cx, cip, vip, explains.then_some(reading));
    with_evidence(judgment, vec![line])
}

/// The addresses of `endpoints` that have a port: where traffic to the Service may go. Any
/// node's rules may translate to the cluster-wide ones, and the source's to those it uses (its
/// own terminating ones, under a Local traffic policy).
fn addrs(endpoints: &[&EndpointFacts]) -> Vec<SocketAddr> {
    endpoints
        .iter()
        .filter_map(|e| Some(SocketAddr::new(e.ip, e.port?)))
        .collect()
}

/// What `node` programmed for the VIP, beside the slice's ready endpoints.
fn rules_reading(cx: &Context, vip: Vip, node: &str, rules: &ServiceRules) -> RulesReading {
    RulesReading {
        node: node.to_string(),
        vip,
        programmed: match (rules.found, rules.rejects, rules.drops) {
            (false, _, _) => Programmed::NoRule,
            (true, true, _) => Programmed::Rejects,
            (true, false, true) => Programmed::Drops,
            (true, false, false) => Programmed::TranslatesTo(rules.endpoints.clone()),
        },
        ready: addrs(&cx.all_live).len(),
    }
}

/// Adds the rules witness's lines to a judgment's evidence.
fn with_evidence(mut judgment: Judgment, lines: Vec<String>) -> Judgment {
    if judgment.status != Status::Skip {
        judgment.evidence.extend(lines.into_iter().map(Into::into));
    }
    judgment
}

fn proxy_fix(node: &str) -> Vec<String> {
    vec![
        format!(
            "kubectl -n kube-system get pods -l k8s-app=kube-proxy -o wide --field-selector spec.nodeName={node}"
        ),
        "kubectl -n kube-system logs -l k8s-app=kube-proxy --tail=50".into(),
    ]
}

/// The VIP against the pod IPs; `rules`: the node's rules, when they explain a failing VIP.
fn differential(cx: &Context, cip: &ClusterIpFacts, vip: Vip, rules: Option<RulesReading>) -> Judgment {
    match cx.transport {
        Transport::Tcp => tcp_differential(cx, cip, vip, rules),
        Transport::Udp => udp_differential(cx, cip, vip, rules),
    }
}

/// The VIP probe's outcome, or the finding that it has none.
fn not_probed(live: &LiveFact, vip: Vip) -> Judgment {
    let finding = ServiceProxyFinding::NotProbed {
        vip,
        reason: live.not_probed().cloned(),
    };
    undetermined(finding, vec![], vec![])
}

/// The VIP-versus-pod-IP differential over TCP.
fn tcp_differential(cx: &Context, cip: &ClusterIpFacts, vip: Vip, rules: Option<RulesReading>) -> Judgment {
    let LiveFact::Tcp(Fact::Known(outcome)) = &cip.live else {
        return not_probed(&cip.live, vip);
    };
    let live = &cx.live;
    let like_vip = live
        .iter()
        .filter(|e| e.live.tcp_outcome().is_some_and(|o| same_symptom(o, outcome)))
        .count();
    let answered = live
        .iter()
        .filter(|e| {
            e.live
                .tcp_outcome()
                .is_some_and(|o| !matches!(o, TcpOutcome::Error { .. }))
        })
        .count();
    let all_refused = !live.is_empty()
        && live
            .iter()
            .all(|e| matches!(e.live.tcp_outcome(), Some(TcpOutcome::Refused { .. })));
    let node = cx.translating_node().unwrap_or("the source node").to_string();
    let fix = cmds(proxy_fix(&node));
    let evidence = vec![format!("TCP to {vip:#}: {}", describe_tcp(outcome))];
    let seen = VipOutcome::Tcp(outcome.clone());
    let alike = |alike| ServiceProxyFinding::AsEndpoints {
        vip,
        outcome: seen.clone(),
        alike,
    };
    match outcome {
        TcpOutcome::Error { detail } => {
            let finding = ServiceProxyFinding::ProbeError {
                vip,
                detail: detail.clone(),
            };
            undetermined(finding, vec![], vec![])
        }
        // The VIP connection reached one endpoint: it behaves like some endpoint does, so the
        // rules translate to the endpoints, whichever one this connection happened to reach.
        TcpOutcome::Connected { .. } if like_vip == live.len() => pass(alike(Alike::All), vec![]),
        TcpOutcome::Refused { .. } if all_refused => pass(alike(Alike::AllRefused), evidence),
        _ if like_vip > 0 => pass(
            alike(Alike::Some {
                like: like_vip,
                total: live.len(),
                node,
            }),
            evidence,
        ),
        TcpOutcome::Refused { .. } if answered > 0 => fail(
            ServiceProxyFinding::RefusedAsEmpty {
                vip,
                node,
                answered,
                rules,
            },
            evidence,
            fix,
        ),
        TcpOutcome::Timeout { .. } | TcpOutcome::Unreachable { .. } if answered > 0 => fail(
            ServiceProxyFinding::RulesMissing {
                vip,
                outcome: seen,
                node,
                answered,
                rules,
            },
            evidence,
            fix,
        ),
        _ => undetermined(
            ServiceProxyFinding::NothingToCompare { vip, outcome: seen },
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

/// The VIP-versus-pod-IP differential over UDP.
fn udp_differential(cx: &Context, cip: &ClusterIpFacts, vip: Vip, rules: Option<RulesReading>) -> Judgment {
    let LiveFact::Udp(Fact::Known(vip_outcome)) = &cip.live else {
        return not_probed(&cip.live, vip);
    };
    let live = &cx.live;
    let total = live.len();
    let answered = live
        .iter()
        .filter(|e| matches!(outcome(e), Some(UdpOutcome::Answered { .. })))
        .count();
    // Endpoints with nothing bound refuse, or stay silent when their kernel rate-limits ICMP.
    let unbound = live.iter().filter(|e| nothing_bound(e)).count();
    let node = cx.translating_node().unwrap_or("the source node").to_string();
    let fix = cmds(proxy_fix(&node));
    let evidence = vec![format!("UDP to {vip:#}: {}", describe_udp(vip_outcome))];
    let seen = VipOutcome::Udp(vip_outcome.clone());
    let alike = |alike| ServiceProxyFinding::AsEndpoints {
        vip,
        outcome: seen.clone(),
        alike,
    };
    match vip_outcome {
        UdpOutcome::Answered { .. } if answered > 0 => {
            pass(alike(Alike::Answered { answered, total }), vec![])
        }
        UdpOutcome::Refused { .. } | UdpOutcome::Silent { .. } if unbound > 0 => {
            pass(alike(Alike::Unbound { unbound, total }), evidence)
        }
        UdpOutcome::Refused { .. } if answered > 0 => fail(
            ServiceProxyFinding::RefusedAsEmpty {
                vip,
                node,
                answered,
                rules,
            },
            evidence,
            fix,
        ),
        UdpOutcome::Silent { .. } | UdpOutcome::Unreachable { .. } if answered > 0 => fail(
            ServiceProxyFinding::RulesMissing {
                vip,
                outcome: seen,
                node,
                answered,
                rules,
            },
            evidence,
            fix,
        ),
        _ => undetermined(
            ServiceProxyFinding::NothingToCompare { vip, outcome: seen },
            evidence,
            vec![],
        ),
    }
}

#[cfg(test)]
#[path = "service_proxy_tests.rs"]
mod tests;
