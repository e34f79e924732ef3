//! `application` for a UDP port: something in the destination pod is bound to the port.

use std::net::IpAddr;

use netdiag_proto::{Transport, UdpOutcome};

use super::reading::{describe_udp, outcome};
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
    let mut refused = vec![];
    let mut fix = vec![];
    let mut answered = 0;
    let mut unknown = vec![];
    for e in live {
        let port = e.port.unwrap_or_default();
        match outcome(e) {
            Some(UdpOutcome::Answered { .. }) => answered += 1,
            Some(UdpOutcome::Refused { .. }) => {
                refused.push((e.label(), bound_finding(e, port)));
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
    if let Some((label, why)) = refused.first() {
        let evidence = refused
            .iter()
            .map(|(l, w)| format!("UDP to {l} refused (ICMP port unreachable); {w}"))
            .collect();
        let summary = if live.len() > 1 {
            format!(
                "{} {}: {label}: {why}{} (certain: ICMP port unreachable)",
                endpoints_of(refused.len(), live.len()),
                if refused.len() == 1 { "refuses" } else { "refuse" },
                connection_share(refused.len(), live.len())
            )
        } else {
            format!("{label} refuses the datagram with ICMP port unreachable: {why}")
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
