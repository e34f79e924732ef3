//! The `application` layer: the destination listens on the target port on its pod IP (accepts
//! the connection over TCP; has a socket bound to the port over UDP).

use netdiag_proto::{TcpOutcome, Transport, UdpOutcome};

use super::outcomes::{nothing_bound, outcome};
use super::sockets::{ListenerFinding, binding_hints, listener_finding};
use super::*;

pub(super) fn judge_application(cx: &Context) -> Judgment {
    if cx.is_external_name() && cx.live.is_empty() {
        return not_applicable(ApplicationFinding::NotApplicable(NoDestination::ExternalName));
    }
    let live = &cx.live;
    if live.is_empty() {
        return not_applicable(ApplicationFinding::NotApplicable(NoDestination::NoAddress));
    }
    match cx.transport {
        Transport::Tcp => tcp_application(cx),
        Transport::Udp => udp_application(cx),
    }
}

/// What a destination's sockets say about its refusal.
fn refusal(e: &EndpointFacts, transport: Transport) -> Refusal {
    let port = e.port.unwrap_or_default();
    Refusal {
        endpoint: e.label(),
        port,
        sockets: listener_finding(e, port, transport),
    }
}

/// Over TCP: the destination accepts the connection.
fn tcp_application(cx: &Context) -> Judgment {
    let live = &cx.live;
    let mut refused = vec![];
    let mut fix = vec![];
    let mut connected = 0;
    let mut unknown = vec![];
    for e in live {
        match &e.live {
            LiveFact::Tcp(Fact::Known(TcpOutcome::Connected { .. })) => connected += 1,
            LiveFact::Tcp(Fact::Known(TcpOutcome::Refused { .. })) => {
                refused.push(refusal(e, Transport::Tcp));
                fix.extend(pod_fix(e));
            }
            other => unknown.push(format!("{}: {}", e.label(), not_probed(other))),
        }
    }
    if let Some(refused) = NonEmpty::from_vec(refused) {
        let evidence = refused
            .iter()
            .map(|r| format!("TCP to {} refused; {}", r.endpoint, r.why(Transport::Tcp)))
            .collect();
        return refused_judgment(Transport::Tcp, refused, live.len(), evidence, fix);
    }
    if !unknown.is_empty() {
        let finding = ApplicationFinding::NotChecked {
            transport: Transport::Tcp,
        };
        return undetermined(finding, unknown, vec![]);
    }
    pass(
        ApplicationFinding::Accepts {
            transport: Transport::Tcp,
            pods: live.iter().all(|e| e.pod.is_some()),
            accepted: connected,
            total: live.len(),
        },
        vec![],
    )
}

/// The failure for destinations that refuse, the fixes that change a binding first.
fn refused_judgment(
    transport: Transport,
    refused: NonEmpty<Refusal>,
    total: usize,
    evidence: Vec<String>,
    mut fix: Vec<FixLine>,
) -> Judgment {
    let sockets: Vec<&ListenerFinding> = refused.iter().map(|r| &r.sockets).collect();
    fix.splice(0..0, binding_hints(&sockets));
    let finding = ApplicationFinding::Refused {
        transport,
        refused,
        total,
    };
    fail(finding, evidence, fix)
}

/// Over UDP: something in the destination pod is bound to the port.
fn udp_application(cx: &Context) -> Judgment {
    let live = &cx.live;
    let mut unbound = vec![];
    let mut fix = vec![];
    let mut answered = 0;
    let mut unknown = vec![];
    for e in live {
        match outcome(e) {
            Some(UdpOutcome::Answered { .. }) => answered += 1,
            Some(o) if nothing_bound(e) => {
                unbound.push((refusal(e, Transport::Udp), o));
                fix.extend(pod_fix(e));
            }
            Some(o) => unknown.push(format!("{}: {}", e.label(), describe_udp(o))),
            None => unknown.push(format!("{}: not probed", e.label())),
        }
    }
    if !unbound.is_empty() {
        let mut evidence: Vec<String> = unbound
            .iter()
            .map(|(r, o)| {
                format!(
                    "UDP to {}: {}; {}",
                    r.endpoint,
                    describe_udp(o),
                    r.why(Transport::Udp)
                )
            })
            .collect();
        if unbound
            .iter()
            .any(|(_, o)| matches!(o, UdpOutcome::Silent { .. }))
        {
            evidence.push(
                "no ICMP port-unreachable came back where nothing is bound: the pod's kernel rate-limits ICMP errors \
                 (a burst of 6, then one a second per client), or the path drops them; the pod's sockets decide"
                    .into(),
            );
        }
        // The same summary whether the port-unreachable came back or was rate-limited away.
        if let Some(refused) = NonEmpty::from_vec(unbound.into_iter().map(|(r, _)| r).collect()) {
            return refused_judgment(Transport::Udp, refused, live.len(), evidence, fix);
        }
    }
    if !unknown.is_empty() {
        let finding = ApplicationFinding::NotChecked {
            transport: Transport::Udp,
        };
        return undetermined(finding, unknown, vec![]);
    }
    pass(
        ApplicationFinding::Accepts {
            transport: Transport::Udp,
            pods: live.iter().all(|e| e.pod.is_some()),
            accepted: answered,
            total: live.len(),
        },
        vec![],
    )
}

/// The commands that show what the destination pod runs: its logs and its description.
fn pod_fix(e: &EndpointFacts) -> Vec<FixLine> {
    match &e.pod {
        Some(pod) => vec![
            cmd(format!("kubectl -n {} logs {}", pod.namespace, pod.name)),
            cmd(format!("kubectl -n {} describe pod {}", pod.namespace, pod.name)),
        ],
        None => vec![],
    }
}

#[cfg(test)]
#[path = "application_tests.rs"]
mod tests;
