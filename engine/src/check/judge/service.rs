//! The `service` layer: the Service exists, exposes the port, and its targetPort resolves.

use netdiag_proto::{TcpOutcome, Transport};

use super::*;
use crate::check::target::PortRef;

pub(super) fn target_port_text(tp: &PortRef) -> String {
    tp.to_string()
}

pub(super) fn judge_service(cx: &Context) -> Judgment {
    let svc = match found_service(cx) {
        Ok(svc) => svc,
        Err(judgment) => return judgment,
    };
    let key = svc.key();
    if let Some(external) = &svc.external_name {
        return pass(format!("{key} is an ExternalName Service for {external}"), vec![]);
    }
    let Some(port) = svc.requested_port() else {
        let exposed: Vec<String> = svc
            .ports
            .iter()
            .map(|p| match &p.name {
                Some(n) => format!("{}/{} ({n})", p.port, p.protocol),
                None => format!("{}/{}", p.port, p.protocol),
            })
            .collect();
        return fail(
            format!(
                "{key} does not expose port {}{}; it exposes {}",
                svc.requested,
                svc.requested_protocol
                    .map(|p| format!("/{p}"))
                    .unwrap_or_default(),
                NonEmpty::from_vec(exposed).map_or("no port".into(), |ports| ports.joined())
            ),
            vec![],
            vec![get_svc(svc)],
        );
    };
    if let Some(mismatch) = service_protocol::protocol_mismatch(port, &svc.selected_pods, &cx.live) {
        return service_protocol::mismatch_judgment(svc, port, mismatch);
    }
    match &port.target_port {
        PortRef::Name(tp) => named_target_port(svc, port, tp.as_str()),
        PortRef::Number(tp) => numeric_target_port(cx, svc, port, tp.to_owned()),
    }
}

/// The Service the check is about, or the judgment when there is none to judge.
fn found_service<'a>(cx: &'a Context) -> Result<&'a ServiceSpecFacts, Judgment> {
    match &cx.service {
        ServiceFacts::NotApplicable => Err(not_applicable(match cx.destination {
            Destination::Pod => "not applicable: the target is a pod",
            _ => "not applicable: the target belongs to no Service",
        })),
        ServiceFacts::Unknown(reason) => Err(undetermined(
            format!("could not read the Service: {reason}"),
            vec![],
            vec![],
        )),
        ServiceFacts::Missing {
            namespace,
            name,
            names_in_namespace,
        } => {
            let hint = closest(name, names_in_namespace)
                .map(|c| format!(" (did you mean {c}?)"))
                .unwrap_or_default();
            Err(fail(
                format!("Service {namespace}/{name} not found{hint}"),
                vec![match NonEmpty::from_vec(names_in_namespace.clone()) {
                    Some(names) => format!("Services in namespace {namespace}: {}", names.joined()),
                    None => format!("namespace {namespace} has no Services"),
                }],
                vec![cmd(format!("kubectl get svc -n {namespace}"))],
            ))
        }
        ServiceFacts::Found(svc) => Ok(svc),
    }
}

fn get_svc(svc: &ServiceSpecFacts) -> FixLine {
    cmd(format!(
        "kubectl -n {} get svc {} -o yaml",
        svc.namespace, svc.name
    ))
}

fn port_text(port: &ServicePortFacts) -> String {
    format!("port {}/{}", port.port, port.protocol)
}

/// A targetPort by name resolves on each selected pod to the container port of that name; it
/// fails when no selected pod declares it.
fn named_target_port(svc: &ServiceSpecFacts, port: &ServicePortFacts, tp: &str) -> Judgment {
    let selected = &svc.selected_pods;
    let port_text = port_text(port);
    let declares = |c: &&ServingPort| c.name.as_deref() == Some(tp);
    let declaring: Vec<&PodFacts> = selected
        .iter()
        .filter(|p| p.container_ports.iter().any(|c| declares(&c)))
        .collect();
    if !selected.is_empty() && declaring.is_empty() {
        return no_pod_declares(svc, &port_text, tp);
    }
    let declared: Vec<&ServingPort> = declaring
        .iter()
        .flat_map(|p| p.container_ports.iter().filter(declares))
        .collect();
    let numbers: Vec<String> = declared
        .iter()
        .map(|c| c.port.to_string())
        .collect::<std::collections::BTreeSet<_>>()
        .into_iter()
        .collect();
    let mut evidence = vec![];
    let sidecars: std::collections::BTreeSet<&str> = declared
        .iter()
        .filter(|c| c.sidecar)
        .map(|c| c.container.as_str())
        .collect();
    if !sidecars.is_empty() {
        evidence.push(format!(
            "{tp} is declared by the native sidecar container {} (an init container with restartPolicy Always)",
            sidecars.into_iter().collect::<Vec<_>>().join(", ")
        ));
    }
    if declaring.len() < selected.len() {
        evidence.push(format!(
            "{} of {} selected pods declare {tp}",
            declaring.len(),
            selected.len()
        ));
    }
    if selected.is_empty() {
        return pass(
            format!("{port_text} → targetPort {tp} (no selected pod to resolve it on)"),
            evidence,
        );
    }
    pass(
        format!(
            "{port_text} → targetPort {tp} ({}) on {}",
            numbers.join(", "),
            selected_pods(declaring.len())
        ),
        evidence,
    )
}

fn no_pod_declares(svc: &ServiceSpecFacts, port_text: &str, tp: &str) -> Judgment {
    let selected = &svc.selected_pods;
    let declared: Vec<String> = selected
        .iter()
        .map(|p| {
            let ports: Vec<String> = p
                .container_ports
                .iter()
                .map(|c| format!("{}:{}", c.name.as_deref().unwrap_or("(unnamed)"), c.port))
                .collect();
            format!(
                "{} declares {}",
                p.key(),
                if ports.is_empty() {
                    "no ports".into()
                } else {
                    ports.join(", ")
                }
            )
        })
        .collect();
    fail(
        format!(
            "{} {port_text} targets the port named {tp}, which none of the {} selected pods declares",
            svc.key(),
            selected.len()
        ),
        declared,
        vec![
            get_svc(svc),
            cmd(format!(
                "kubectl -n {} get pods -l {} -o yaml",
                svc.namespace,
                selector_text(svc)
            )),
        ],
    )
}

/// A numeric targetPort fails only when every endpoint refuses it and the pods listen elsewhere.
fn numeric_target_port(cx: &Context, svc: &ServiceSpecFacts, port: &ServicePortFacts, tp: u16) -> Judgment {
    let port_text = port_text(port);
    let Some(listening) = wrong_numeric_target_port(cx, svc, tp) else {
        return pass(
            format!(
                "{port_text} → targetPort {} on {}",
                target_port_text(&port.target_port),
                selected_pods(svc.selected_pods.len())
            ),
            vec![],
        );
    };
    let ports = listening.joined();
    let evidence = cx
        .live
        .iter()
        .map(|e| format!("TCP to {} refused; the pod listens on {ports}", e.label(),))
        .collect();
    let mut fix = vec![get_svc(svc)];
    let index = svc
        .ports
        .iter()
        .position(|p| p.port == port.port && p.protocol == port.protocol);
    if let ([only], Some(i)) = (listening.as_slice(), index) {
        fix.push(cmd(format!(
            "kubectl -n {} patch svc {} --type=json -p '[{{\"op\":\"replace\",\"path\":\"/spec/ports/{i}/targetPort\",\"value\":{only}}}]'",
            svc.namespace, svc.name
        )));
    }
    fail(
        format!(
            "{} {port_text} → targetPort {tp}, but nothing listens on {tp} in the selected pods; they listen on {ports}",
            svc.key(),
        ),
        evidence,
        fix,
    )
}

pub(super) fn selected_pods(n: usize) -> String {
    if n == 1 {
        "1 selected pod".into()
    } else {
        format!("{n} selected pods")
    }
}

pub(super) fn selector_text(svc: &ServiceSpecFacts) -> String {
    svc.selector
        .as_ref()
        .map(|s| {
            s.iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect::<Vec<_>>()
                .join(",")
        })
        .unwrap_or_default()
}

/// A numeric targetPort is wrong when every live endpoint refuses it, no selected pod declares it,
/// nothing listens on it, and the pods do listen on other ports. Returns those ports.
pub(super) fn wrong_numeric_target_port(
    cx: &Context,
    svc: &ServiceSpecFacts,
    tp: u16,
) -> Option<NonEmpty<u16>> {
    let live = &cx.live;
    let all_refused = live
        .iter()
        .all(|e| matches!(e.live.tcp_outcome(), Some(TcpOutcome::Refused { .. })));
    if live.is_empty() || !all_refused {
        return None;
    }
    if svc
        .selected_pods
        .iter()
        .any(|p| p.container_ports.iter().any(|c| c.port == tp))
    {
        return None;
    }
    let mut listening = std::collections::BTreeSet::new();
    for e in live {
        let sockets = e.listeners.known()?;
        if sockets
            .iter()
            .any(|s| s.protocol == Transport::Tcp && s.local_port == tp)
        {
            return None;
        }
        listening.extend(
            sockets
                .iter()
                .filter(|s| s.protocol == Transport::Tcp && !s.local_ip.is_loopback())
                .map(|s| s.local_port),
        );
    }
    NonEmpty::from_vec(listening.into_iter().collect())
}

#[cfg(test)]
#[path = "service_tests.rs"]
mod tests;
