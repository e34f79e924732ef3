//! The `application` layer: the destination listens on the target port on its pod IP (accepts
//! the connection over TCP; has a socket bound to the port over UDP).

use netdiag_proto::{TcpOutcome, Transport, UdpOutcome};

use super::outcomes::{nothing_bound, outcome};
use super::sockets::{ListenerFinding, binding_hints, describe_finding, listener_finding};
use super::*;

pub(super) fn judge_application(cx: &Context) -> Judgment {
    if cx.is_external_name() {
        return not_applicable("not applicable: an ExternalName Service");
    }
    let live = &cx.live;
    if live.is_empty() {
        return not_applicable("not applicable: no destination address");
    }
    match cx.transport {
        Transport::Tcp => tcp_application(cx),
        Transport::Udp => udp_application(cx),
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
        let port = e.port.unwrap_or_default();
        match &e.live {
            LiveFact::Tcp(Fact::Known(TcpOutcome::Connected { .. })) => connected += 1,
            LiveFact::Tcp(Fact::Known(TcpOutcome::Refused { .. })) => {
                refused.push((e.label(), listener_finding(e, port, Transport::Tcp), port));
                fix.extend(pod_fix(e));
            }
            other => unknown.push(format!("{}: {}", e.label(), not_probed(other))),
        }
    }
    if let Some((label, finding, port)) = refused.first() {
        let why = describe_finding(finding, *port, Transport::Tcp);
        let evidence = refused
            .iter()
            .map(|(l, f, p)| format!("TCP to {l} refused; {}", describe_finding(f, *p, Transport::Tcp)))
            .collect();
        let findings: Vec<&ListenerFinding> = refused.iter().map(|(_, f, _)| f).collect();
        fix.splice(0..0, binding_hints(&findings));
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

/// Over UDP: something in the destination pod is bound to the port.
fn udp_application(cx: &Context) -> Judgment {
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
                unbound.push((e.label(), listener_finding(e, port, Transport::Udp), port, o));
                fix.extend(pod_fix(e));
            }
            Some(o) => unknown.push(format!("{}: {}", e.label(), describe_udp(o))),
            None => unknown.push(format!("{}: not probed", e.label())),
        }
    }
    if let Some((label, finding, port, _)) = unbound.first() {
        let why = describe_finding(finding, *port, Transport::Udp);
        let mut evidence: Vec<String> = unbound
            .iter()
            .map(|(l, f, p, o)| {
                format!(
                    "UDP to {l}: {}; {}",
                    describe_udp(o),
                    describe_finding(f, *p, Transport::Udp)
                )
            })
            .collect();
        let findings: Vec<&ListenerFinding> = unbound.iter().map(|(_, f, _, _)| f).collect();
        fix.splice(0..0, binding_hints(&findings));
        if unbound
            .iter()
            .any(|(_, _, _, o)| matches!(o, UdpOutcome::Silent { .. }))
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
