//! What the destination pod's sockets say about a refusal, one finding for TCP and UDP: a TCP
//! RST and a UDP port-unreachable are the same answer ("nothing here takes this"), and the
//! sockets explain both the same way, including an address family the socket does not take.
//! The wording is the `application` finding's (`findings::application`).

use std::net::IpAddr;

use netdiag_proto::{ListeningSocket, Transport};

use super::*;

/// What the destination pod's listening (TCP) or bound (UDP) sockets say about a refusal.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum ListenerFinding {
    /// The sockets could not be read.
    Unknown(ToolFailure),
    /// It listens on the port, but only on a loopback address.
    LoopbackOnly(IpAddr),
    /// Nothing listens on the port; these are what it does listen on.
    NotOnPort(Vec<String>),
    /// It listens on the port only on addresses that do not take this address's family (an
    /// IPv4 wildcard asked over IPv6, an IPv6-only wildcard asked over IPv4): these.
    OtherFamilyOnly(Vec<String>),
    /// It does listen: the refusal came from the path (or a full accept queue).
    ListensAnyway,
}

/// The finding for endpoint `e` on `port` over `transport`.
pub(super) fn listener_finding(e: &EndpointFacts, port: u16, transport: Transport) -> ListenerFinding {
    let sockets = match &e.listeners {
        Fact::Known(s) => s,
        Fact::Unknown(reason) => return ListenerFinding::Unknown(reason.clone()),
    };
    let ours: Vec<_> = sockets.iter().filter(|s| s.protocol == transport).collect();
    let on_port: Vec<_> = ours.iter().filter(|s| s.local_port == port).collect();
    if !on_port.is_empty() && on_port.iter().all(|s| s.local_ip.is_loopback()) {
        return ListenerFinding::LoopbackOnly(on_port[0].local_ip);
    }
    let addresses = |list: &mut dyn Iterator<Item = &&ListeningSocket>| {
        let mut out: Vec<String> = list
            .map(|s| format!("{}:{}", fmt_ip(s.local_ip), s.local_port))
            .collect();
        out.sort();
        out.dedup();
        out
    };
    if on_port.is_empty() {
        return ListenerFinding::NotOnPort(addresses(&mut ours.iter()));
    }
    if !on_port.iter().any(|s| takes_family_of(s, e.ip)) {
        return ListenerFinding::OtherFamilyOnly(addresses(&mut on_port.iter().copied()));
    }
    ListenerFinding::ListensAnyway
}

/// Whether a socket can take traffic to `ip` by its address family: the same family, or an
/// IPv6 socket not IPv6-only (a dual-stack `[::]` takes IPv4 as mapped addresses). Loopback and
/// specific addresses are left to the other findings.
pub(super) fn takes_family_of(socket: &ListeningSocket, ip: IpAddr) -> bool {
    match (socket.local_ip, ip) {
        (IpAddr::V4(_), IpAddr::V4(_)) | (IpAddr::V6(_), IpAddr::V6(_)) => true,
        (IpAddr::V6(local), IpAddr::V4(_)) => local.is_unspecified() && socket.v6_only != Some(true),
        (IpAddr::V4(_), IpAddr::V6(_)) => false,
    }
}

/// The fix for the findings that name a binding to change, first in the list.
pub(super) fn binding_hints(findings: &[&ListenerFinding]) -> Vec<FixLine> {
    let mut out = vec![];
    if findings
        .iter()
        .any(|f| matches!(f, ListenerFinding::OtherFamilyOnly(_)))
    {
        out.push(hint(
            "make the application listen on [::] with IPV6_V6ONLY off (both families), or on each family's address",
        ));
    }
    if findings
        .iter()
        .any(|f| matches!(f, ListenerFinding::LoopbackOnly(_)))
    {
        out.push(hint(
            "make the application listen on 0.0.0.0 (all addresses), not 127.0.0.1",
        ));
    }
    out
}
