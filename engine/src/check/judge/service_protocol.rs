//! The `service` layer's protocol rule: a Service port's protocol must be one the selected pods
//! declare and serve the target port over. A UDP port in front of pods that serve TCP (or the
//! reverse) passes every static check yet nothing answers: caught here, statically where the
//! declarations say it, and from the pods' sockets where they show it.

use std::collections::BTreeSet;

use netdiag_proto::Transport;

use super::*;
use crate::check::target::PortRef;
use crate::policy::Protocol;

/// What the pods declare and serve on the target port, beside the Service port's protocol.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct ProtocolMismatch {
    /// The protocols the selected pods declare the target port with (none of them the Service's).
    pub declared: BTreeSet<Protocol>,
    /// The protocols the live endpoints' sockets serve the port over (none of them the Service's).
    pub served: BTreeSet<Protocol>,
    pub lines: Vec<String>,
}

fn transport(protocol: Protocol) -> Option<Transport> {
    match protocol {
        Protocol::Tcp => Some(Transport::Tcp),
        Protocol::Udp => Some(Transport::Udp),
        Protocol::Sctp => None,
    }
}

fn protocol_of(transport: Transport) -> Protocol {
    match transport {
        Transport::Tcp => Protocol::Tcp,
        Transport::Udp => Protocol::Udp,
    }
}

/// The mismatch between `port` and the pods, if there is one. Declarations decide for a named
/// targetPort (the EndpointSlice controller matches name and protocol, so such pods are left out
/// of the endpoints); for a number the sockets decide when they are known, since Kubernetes does
/// not require declaring it; the declarations otherwise.
pub(super) fn protocol_mismatch(
    port: &ServicePortFacts,
    selected: &[PodFacts],
    live: &[&EndpointFacts],
) -> Option<ProtocolMismatch> {
    let declares = |c: &&ServingPort| match &port.target_port {
        PortRef::Name(name) => c.name.as_deref() == Some(name.as_str()),
        PortRef::Number(n) => c.port == *n,
    };
    let declarations: Vec<(&PodFacts, &ServingPort)> = selected
        .iter()
        .flat_map(|p| p.container_ports.iter().filter(declares).map(move |c| (p, c)))
        .collect();
    let declared: BTreeSet<Protocol> = declarations.iter().map(|(_, c)| c.protocol).collect();
    let mut lines: Vec<String> = declarations
        .iter()
        .map(|(p, c)| format!("{} declares {}/{}", p.key(), c.port, c.protocol))
        .collect();
    let declared_other = !declared.is_empty() && !declared.contains(&port.protocol);
    if let PortRef::Name(_) = port.target_port {
        return declared_other.then(|| ProtocolMismatch {
            declared,
            served: BTreeSet::new(),
            lines,
        });
    }
    // SCTP sockets are not read: nothing to compare with.
    transport(port.protocol)?;
    let mut served = BTreeSet::new();
    let mut known = 0;
    for e in live {
        let (Some(tp), Some(sockets)) = (e.port, e.listeners.known()) else {
            continue;
        };
        known += 1;
        let on_port: BTreeSet<Protocol> = sockets
            .iter()
            .filter(|s| s.local_port == tp && !s.local_ip.is_loopback())
            .map(|s| protocol_of(s.protocol))
            .collect();
        if on_port.contains(&port.protocol) {
            return None;
        }
        served.extend(on_port.iter().copied());
        let list: Vec<String> = on_port.iter().map(ToString::to_string).collect();
        lines.push(match list.is_empty() {
            true => format!("{} has no socket on {tp}", e.label()),
            false => format!("{} serves {tp} over {} only", e.label(), list.join(", ")),
        });
    }
    let mismatch = if known > 0 {
        !served.is_empty()
    } else {
        declared_other
    };
    mismatch.then_some(ProtocolMismatch {
        declared,
        served,
        lines,
    })
}

/// The `service` failure for a mismatch.
pub(super) fn mismatch_judgment(
    svc: &ServiceSpecFacts,
    port: &ServicePortFacts,
    m: ProtocolMismatch,
) -> Judgment {
    let target = format!("targetPort {}", port.target_port);
    let index = svc.ports.iter().position(|p| p == port).unwrap_or_default();
    let other = m
        .served
        .iter()
        .chain(&m.declared)
        .next()
        .copied()
        .unwrap_or(port.protocol);
    let fix = vec![
        hint(format!(
            "set the Service port's protocol to {other} (spec.ports[{index}].protocol), or make the pods serve {target} over {}",
            port.protocol
        )),
        cmd(format!(
            "kubectl -n {} get svc {} -o yaml",
            svc.namespace, svc.name
        )),
    ];
    fail(
        ServiceFinding::ProtocolMismatch {
            service: svc.key(),
            port: port.into(),
            target: port.target_port.clone(),
            declared: m.declared,
            served: m.served,
        },
        m.lines,
        fix,
    )
}

#[cfg(test)]
#[path = "service_protocol_tests.rs"]
mod tests;
