//! The `application` layer: the destination listens on the target port on its pod IP.

use netdiag_proto::{TcpOutcome, Transport};

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
                refused.push((e.label(), listener_finding(e, port, Transport::Tcp), port));
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

#[cfg(test)]
#[path = "application_tests.rs"]
mod tests;
