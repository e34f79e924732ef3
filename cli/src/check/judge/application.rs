//! The `application` layer: the destination listens on the target port on its pod IP.

use std::net::IpAddr;

use netdiag_proto::{TcpOutcome, Transport};

use super::*;

/// What the destination pod's listening sockets say about a refused connection.
#[derive(Debug, Clone, PartialEq)]
pub(super) enum ListenerFinding {
    /// The sockets could not be read.
    Unknown(ToolFailure),
    /// It listens on the port, but only on a loopback address.
    LoopbackOnly(IpAddr),
    /// Nothing listens on the port; these are what it does listen on.
    NotOnPort(Vec<String>),
    /// It listens on the port only on addresses that do not take this address's family (an
    /// IPv4 wildcard asked over IPv6, an IPv6-only wildcard asked over IPv4): these.
    OtherFamilyOnly(Vec<String>),
    /// It does listen: the reset came from the path or a full accept queue.
    ListensAnyway,
}

pub(super) fn listener_finding(e: &EndpointFacts, port: u16) -> ListenerFinding {
    let sockets = match &e.listeners {
        Fact::Known(s) => s,
        Fact::Unknown(reason) => return ListenerFinding::Unknown(reason.clone()),
    };
    let tcp: Vec<_> = sockets.iter().filter(|s| s.protocol == Transport::Tcp).collect();
    let on_port: Vec<_> = tcp.iter().filter(|s| s.local_port == port).collect();
    if !on_port.is_empty() && on_port.iter().all(|s| s.local_ip.is_loopback()) {
        return ListenerFinding::LoopbackOnly(on_port[0].local_ip);
    }
    if on_port.is_empty() {
        let mut others: Vec<String> = tcp
            .iter()
            .map(|s| format!("{}:{}", fmt_ip(s.local_ip), s.local_port))
            .collect();
        others.sort();
        others.dedup();
        return ListenerFinding::NotOnPort(others);
    }
    if !on_port.iter().any(|s| takes_family_of(s, e.ip)) {
        let mut bound: Vec<String> = on_port
            .iter()
            .map(|s| format!("{}:{}", fmt_ip(s.local_ip), s.local_port))
            .collect();
        bound.sort();
        bound.dedup();
        return ListenerFinding::OtherFamilyOnly(bound);
    }
    ListenerFinding::ListensAnyway
}

/// Whether a listening socket can take connections to `ip` by its address family: the same
/// family, or an IPv6 socket not IPv6-only (a dual-stack `[::]` takes IPv4 as mapped addresses).
/// Loopback and specific addresses are left to the other findings.
fn takes_family_of(socket: &netdiag_proto::ListeningSocket, ip: IpAddr) -> bool {
    match (socket.local_ip, ip) {
        (IpAddr::V4(_), IpAddr::V4(_)) | (IpAddr::V6(_), IpAddr::V6(_)) => true,
        (IpAddr::V6(local), IpAddr::V4(_)) => local.is_unspecified() && socket.v6_only != Some(true),
        (IpAddr::V4(_), IpAddr::V6(_)) => false,
    }
}

fn describe_finding(finding: &ListenerFinding, port: u16) -> String {
    match finding {
        ListenerFinding::Unknown(reason) => format!("its listening sockets are unknown ({reason})"),
        ListenerFinding::LoopbackOnly(ip) => {
            format!("it listens on {}:{port} only, not on its pod IP", fmt_ip(*ip))
        }
        ListenerFinding::NotOnPort(others) if others.is_empty() => {
            format!("nothing in the pod listens on any TCP port (wanted {port})")
        }
        ListenerFinding::NotOnPort(others) => {
            format!(
                "nothing in the pod listens on {port}; it listens on {}",
                others.join(", ")
            )
        }
        ListenerFinding::OtherFamilyOnly(bound) => format!(
            "it listens on {port} only on {}, which takes no connections of this address family",
            bound.join(", ")
        ),
        ListenerFinding::ListensAnyway => format!(
            "yet it listens on {port}: a reset from the path (a REJECT rule) or a full accept queue, not a missing listener"
        ),
    }
}

pub(super) fn judge_application(cx: &Context) -> Judgment {
    if cx.is_external_name() {
        return not_applicable("not applicable: an ExternalName Service");
    }
    let live = &cx.live;
    if live.is_empty() {
        return not_applicable("not applicable: no destination address");
    }
    if udp::probed_over_udp(cx) {
        return udp::judge_udp_application(cx);
    }
    let mut refused = vec![];
    let mut fix = vec![];
    let mut connected = 0;
    let mut unknown = vec![];
    for e in live {
        let port = e.port.unwrap_or_default();
        match &e.tcp {
            Fact::Known(TcpOutcome::Connected { .. }) => connected += 1,
            Fact::Known(TcpOutcome::Refused { .. }) => {
                refused.push((e.label(), listener_finding(e, port), port));
                if let Some(pod) = &e.pod {
                    fix.push(cmd(format!("kubectl -n {} logs {}", pod.namespace, pod.name)));
                    fix.push(cmd(format!(
                        "kubectl -n {} describe pod {}",
                        pod.namespace, pod.name
                    )));
                }
            }
            Fact::Known(o) => unknown.push(format!("{}: {}", e.label(), describe_tcp(o))),
            Fact::Unknown(reason) => unknown.push(format!("{}: not probed ({reason})", e.label())),
        }
    }
    if let Some((label, finding, port)) = refused.first() {
        let why = describe_finding(finding, *port);
        let evidence = refused
            .iter()
            .map(|(l, f, p)| format!("TCP to {l} refused; {}", describe_finding(f, *p)))
            .collect();
        if refused
            .iter()
            .any(|(_, f, _)| matches!(f, ListenerFinding::LoopbackOnly(_)))
        {
            fix.insert(
                0,
                hint("make the application listen on 0.0.0.0 (all addresses), not 127.0.0.1"),
            );
        }
        if refused
            .iter()
            .any(|(_, f, _)| matches!(f, ListenerFinding::OtherFamilyOnly(_)))
        {
            fix.insert(
                0,
                hint(
                    "make the application listen on [::] with IPV6_V6ONLY off (both families), or on each family's address",
                ),
            );
        }
        let summary = if live.len() > 1 {
            format!(
                "{} {}: {label}: {why}{}",
                endpoints_of(refused.len(), live.len()),
                if refused.len() == 1 { "refuses" } else { "refuse" },
                connection_share(refused.len(), live.len())
            )
        } else {
            format!("{label} refuses the connection: {why}")
        };
        return fail(summary, evidence, fix);
    }
    if !unknown.is_empty() {
        return undetermined("the application could not be checked", unknown, vec![]);
    }
    pass(
        format!(
            "{connected}/{} destination pods accept the connection",
            live.len()
        ),
        vec![],
    )
}
