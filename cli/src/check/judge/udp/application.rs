//! `application` for a UDP port: something in the destination pod is bound to the port.

use std::net::IpAddr;

use netdiag_proto::{Transport, UdpOutcome};

use super::reading::{describe_udp, nothing_bound, outcome};
use crate::check::judge::*;

/// What the pod's UDP sockets say about an ICMP port-unreachable.
fn bound_finding(e: &EndpointFacts, port: u16) -> String {
    let sockets = match &e.listeners {
        Fact::Known(sockets) => sockets,
        Fact::Unknown(reason) => return format!("its sockets are unknown ({reason})"),
    };
    let udp: Vec<_> = sockets.iter().filter(|s| s.protocol == Transport::Udp).collect();
    let on_port: Vec<IpAddr> = udp
        .iter()
        .filter(|s| s.local_port == port)
        .map(|s| s.local_ip)
        .collect();
    if let Some(ip) = on_port.iter().find(|ip| ip.is_loopback())
        && on_port.iter().all(|ip| ip.is_loopback())
    {
        return format!(
            "it is bound to {}:{port}/UDP only, not on its pod IP",
            fmt_ip(*ip)
        );
    }
    if !on_port.is_empty() {
        return format!(
            "yet a socket is bound to {port}/UDP: an ICMP port-unreachable from the path (a REJECT rule), not a missing socket"
        );
    }
    let mut others: Vec<String> = udp
        .iter()
        .map(|s| format!("{}:{}", fmt_ip(s.local_ip), s.local_port))
        .collect();
    others.sort();
    others.dedup();
    if others.is_empty() {
        format!("nothing in the pod is bound to any UDP port (wanted {port})")
    } else {
        format!(
            "nothing in the pod is bound to {port}/UDP; it has UDP sockets on {}",
            others.join(", ")
        )
    }
}

pub(in crate::check::judge) fn judge_udp_application(cx: &Context) -> Judgment {
    let live = &cx.live;
    let mut unbound = vec![];
    let mut fix = vec![];
    let mut answered = 0;
    let mut unknown = vec![];
    for e in live {
        let port = e.port.unwrap_or_default();
        match outcome(e) {
            Some(UdpOutcome::Answered { .. }) => answered += 1,
            Some(o) if nothing_bound(e) => {
                unbound.push((e.label(), bound_finding(e, port), o));
                if let Some(pod) = &e.pod {
                    fix.push(cmd(format!("kubectl -n {} logs {}", pod.namespace, pod.name)));
                    fix.push(cmd(format!(
                        "kubectl -n {} describe pod {}",
                        pod.namespace, pod.name
                    )));
                }
            }
            Some(o) => unknown.push(format!("{}: {}", e.label(), describe_udp(o))),
            None => unknown.push(format!("{}: not probed", e.label())),
        }
    }
    if let Some((label, why, _)) = unbound.first() {
        let mut evidence: Vec<String> = unbound
            .iter()
            .map(|(l, w, o)| format!("UDP to {l}: {}; {w}", describe_udp(o)))
            .collect();
        if unbound
            .iter()
            .any(|(_, _, o)| matches!(o, UdpOutcome::Silent { .. }))
        {
            evidence.push(
                "no ICMP port-unreachable came back where nothing is bound: the pod's kernel rate-limits ICMP errors \
                 (a burst of 6, then one a second per client), or the path drops them; the pod's sockets decide"
                    .into(),
            );
        }
        // The same summary whether the port-unreachable came back or was rate-limited away.
        let summary = if live.len() > 1 {
            format!(
                "{} {} nothing bound to the port: {label}: {why}{}",
                endpoints_of(unbound.len(), live.len()),
                if unbound.len() == 1 { "has" } else { "have" },
                connection_share(unbound.len(), live.len())
            )
        } else {
            format!("{label} has nothing bound to the port: {why}")
        };
        return fail(summary, evidence, fix);
    }
    if !unknown.is_empty() {
        return undetermined("the application could not be checked over UDP", unknown, vec![]);
    }
    pass(
        format!("{answered}/{} destination pods answer the datagram", live.len()),
        vec![],
    )
}
