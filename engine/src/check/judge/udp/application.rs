//! `application` for a UDP port: something in the destination pod is bound to the port.

use netdiag_proto::{Transport, UdpOutcome};

use super::reading::{describe_udp, nothing_bound, outcome};
use crate::check::judge::sockets::{ListenerFinding, binding_hints, describe_finding, listener_finding};
use crate::check::judge::*;

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
                unbound.push((e.label(), listener_finding(e, port, Transport::Udp), port, o));
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
