//! The `service` layer: the Service exists, exposes the port, and its targetPort resolves.

use netdiag_proto::{TcpOutcome, Transport};

use super::*;
use crate::check::target::PortRef;

pub(super) fn judge_service(cx: &Context) -> Judgment {
    let mut judgment = judge_service_port(cx);
    if let Some(svc) = cx.target_service
        && let Some(alias) = &svc.alias_of
        && judgment.status != Status::Skip
    {
        let line = format!(
            "{} is an ExternalName Service for {}: the check follows it to Service {}",
            alias.service,
            alias.host,
            svc.key()
        );
        judgment.evidence.insert(0, line.into());
        judgment.finding = Box::new(Finding::ThroughAlias {
            alias: alias.service.clone(),
            host: alias.host.clone(),
            finding: judgment.finding,
        });
    }
    if judgment.status == Status::Pass {
        judgment.evidence.extend(node_port_line(cx).map(Into::into));
    }
    judgment
}

/// For a NodePort or LoadBalancer Service checked by its ClusterIP, how its clients outside
/// the pod network enter it, and the check that does as they do.
fn node_port_line(cx: &Context) -> Option<String> {
    let svc = cx.target_service?;
    let node_port = svc.requested_port()?.node_port?;
    let port = svc.requested_port()?.port;
    let by_load_balancer = match svc.service_type.as_str() {
        "LoadBalancer" => format!(", or by its load balancer's address (--to ADDRESS:{port})"),
        _ => String::new(),
    };
    svc.entry.is_none().then(|| {
        format!(
            "{} Service: clients outside the pod network enter by a node's node port {node_port} (--to NODE-ADDRESS:{node_port} checks it as they do){by_load_balancer}",
            svc.service_type
        )
    })
}

/// The Service port the target asked for, and its targetPort on the selected pods.
fn judge_service_port(cx: &Context) -> Judgment {
    let svc = match found_service(cx) {
        Ok(svc) => svc,
        Err(judgment) => return judgment,
    };
    let key = svc.key();
    if let Some(external) = &svc.external_name {
        return pass(
            ServiceFinding::ExternalName {
                service: key,
                external: external.clone(),
            },
            vec![],
        );
    }
    let Some(port) = svc.requested_port() else {
        return fail(
            ServiceFinding::PortNotExposed {
                service: key,
                requested: svc.requested.clone(),
                requested_protocol: svc.requested_protocol,
                exposed: svc.ports.clone(),
            },
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
        ServiceFacts::NotApplicable => Err(not_applicable(ServiceFinding::NotApplicable {
            destination: cx.destination,
        })),
        ServiceFacts::Unknown(reason) => Err(undetermined(
            ServiceFinding::Unreadable {
                reason: reason.clone(),
            },
            vec![],
            vec![],
        )),
        ServiceFacts::Missing {
            namespace,
            name,
            names_in_namespace,
        } => Err(fail(
            ServiceFinding::NotFound {
                service: NamespacedName::new(namespace.clone(), name.clone()),
                did_you_mean: closest(name, names_in_namespace).map(str::to_string),
            },
            vec![match NonEmpty::from_vec(names_in_namespace.clone()) {
                Some(names) => format!("Services in namespace {namespace}: {}", names.joined()),
                None => format!("namespace {namespace} has no Services"),
            }],
            vec![cmd(format!("kubectl get svc -n {namespace}"))],
        )),
        ServiceFacts::Found(svc) => Ok(svc),
    }
}

fn get_svc(svc: &ServiceSpecFacts) -> FixLine {
    cmd(format!(
        "kubectl -n {} get svc {} -o yaml",
        svc.namespace, svc.name
    ))
}

/// A targetPort by name resolves on each selected pod to the container port of that name; it
/// fails when no selected pod declares it.
fn named_target_port(svc: &ServiceSpecFacts, port: &ServicePortFacts, tp: &str) -> Judgment {
    let selected = &svc.selected_pods;
    let declares = |c: &&ServingPort| c.name.as_deref() == Some(tp);
    let declaring: Vec<&PodFacts> = selected
        .iter()
        .filter(|p| p.container_ports.iter().any(|c| declares(&c)))
        .collect();
    if !selected.is_empty() && declaring.is_empty() {
        return no_pod_declares(svc, port, tp);
    }
    let declared: Vec<&ServingPort> = declaring
        .iter()
        .flat_map(|p| p.container_ports.iter().filter(declares))
        .collect();
    // In the order of their text, as the report has always listed them.
    let mut numbers: Vec<u16> = declared.iter().map(|c| c.port).collect();
    numbers.sort_by_key(|n| n.to_string());
    numbers.dedup();
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
    let name = tp.to_string();
    match NonEmpty::from_vec(numbers) {
        Some(numbers) if !selected.is_empty() => pass(
            ServiceFinding::NamedPortResolved {
                port: port.into(),
                name,
                numbers,
                pods: declaring.len(),
            },
            evidence,
        ),
        _ => pass(
            ServiceFinding::NamedPortUnresolved {
                port: port.into(),
                name,
            },
            evidence,
        ),
    }
}

fn no_pod_declares(svc: &ServiceSpecFacts, port: &ServicePortFacts, tp: &str) -> Judgment {
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
        ServiceFinding::NamedPortUndeclared {
            service: svc.key(),
            port: port.into(),
            name: tp.to_string(),
            selected: selected.len(),
        },
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
    let Some(listening) = wrong_numeric_target_port(cx, svc, tp) else {
        return pass(
            ServiceFinding::NumericPortResolved {
                port: port.into(),
                target: tp,
                pods: svc.selected_pods.len(),
            },
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
        ServiceFinding::TargetPortNotListening {
            service: svc.key(),
            port: port.into(),
            target: tp,
            listening,
        },
        evidence,
        fix,
    )
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
