//! The `endpoints` layer: at least one ready endpoint backs the port, and kube-proxy on the
//! source's node uses one.

use netdiag_proto::{TcpOutcome, UdpOutcome};

use super::context::NodeRoute;
use super::*;
use crate::cluster::endpoints::Routing;

pub(super) fn judge_endpoints(cx: &Context) -> Judgment {
    match cx.destination {
        Destination::External => {
            return not_applicable(EndpointsFinding::NotApplicable(NoEndpoints::External));
        }
        Destination::Service if cx.is_external_name() => {
            return not_applicable(EndpointsFinding::NotApplicable(NoEndpoints::ExternalName));
        }
        _ => {}
    }
    let list = match &cx.endpoints {
        EndpointsFacts::Unknown(reason) => {
            return undetermined(
                EndpointsFinding::Unreadable {
                    reason: reason.clone(),
                },
                vec![],
                vec![],
            );
        }
        EndpointsFacts::TargetPodMissing { namespace, name } => {
            return fail(
                EndpointsFinding::TargetPodNotFound {
                    pod: NamespacedName::new(namespace.clone(), name.clone()),
                },
                vec![],
                vec![cmd(format!("kubectl get pods -n {namespace}"))],
            );
        }
        EndpointsFacts::Known(list) => list,
    };
    if cx.destination == Destination::Pod {
        return pod_endpoint(list);
    }
    let Some(svc) = cx.target_service else {
        return not_applicable(EndpointsFinding::NotApplicable(NoEndpoints::NoService));
    };
    if let Some(stale) = stale_endpoints(cx, svc) {
        return stale;
    }
    if let Some(none_here) = none_on_source_node(cx, svc) {
        return none_here;
    }
    let ready: Vec<&EndpointFacts> = list.iter().filter(|e| e.ready()).collect();
    let labels = |eps: &[&EndpointFacts]| -> Vec<String> {
        eps.iter()
            .map(|e| {
                e.pod
                    .as_ref()
                    .map(|p| p.name.clone())
                    .unwrap_or_else(|| e.ip.to_string())
            })
            .collect()
    };
    if let Some(ready) = NonEmpty::from_vec(labels(&ready)) {
        let mut evidence: Vec<String> = cx.route.iter().filter_map(route_line).collect();
        let not_ready: Vec<&EndpointFacts> = list.iter().filter(|e| !e.ready()).collect();
        if !not_ready.is_empty() {
            evidence.push(format!("not ready: {}", labels(&not_ready).join(", ")));
        }
        let finding = match cx.route.as_ref().filter(|r| r.routing != Routing::Cluster) {
            Some(route) => EndpointsFinding::ReadyOnNode {
                ready: ready.as_slice().len(),
                total: list.len(),
                node: route.node.to_string(),
                used: NonEmpty::from_vec(route.used.iter().map(|e| used_name(e)).collect())
                    .unwrap_or_else(|| ready.clone()),
                routing: route.routing.clone(),
            },
            None => EndpointsFinding::Ready {
                ready,
                total: list.len(),
            },
        };
        return pass(finding, evidence);
    }
    if let Some(serving) = NonEmpty::from_vec(labels(&cx.live)) {
        // kube-proxy's fallback: with nothing ready, connections still go to the endpoints that
        // serve while they terminate — the Service works until they finish.
        return pass(
            EndpointsFinding::ServingTerminating {
                serving,
                total: list.len(),
            },
            vec!["no endpoint is ready: once the terminating pods exit, the Service has no endpoints".into()],
        );
    }
    no_ready_endpoints(svc)
}

/// `internalTrafficPolicy: Local` with usable endpoints elsewhere but none on the source's node:
/// kube-proxy there drops the Service's traffic, so the Service works from some nodes and not
/// from this one. Unless the ClusterIP answered all the same (a dataplane that ignores the
/// policy): then that is said, and the layers after judge the endpoints it reached.
fn none_on_source_node(cx: &Context, svc: &ServiceSpecFacts) -> Option<Judgment> {
    let route = cx.route.as_ref()?;
    if route.routing != Routing::Local || !route.used.is_empty() || cx.all_live.is_empty() {
        return None;
    }
    let elsewhere: Vec<String> = cx
        .all_live
        .iter()
        .map(|e| match (e.pod.as_ref(), e.topology.node.as_deref()) {
            (Some(pod), Some(node)) => format!("{} on {node}", pod.name),
            (None, Some(node)) => format!("{} on {node}", e.label()),
            (_, None) => format!("{} (no node named)", e.label()),
        })
        .collect();
    let elsewhere = NonEmpty::from_vec(elsewhere)?;
    let finding = EndpointsFinding::NoneOnSourceNode {
        service: svc.key(),
        node: route.node.to_string(),
        elsewhere,
    };
    let vip = cx.cluster_ip.as_ref().map(|c| &c.live);
    let answered = vip.is_some_and(|live| {
        matches!(live.tcp_outcome(), Some(TcpOutcome::Connected { .. }))
            || matches!(live.udp_outcome(), Some(UdpOutcome::Answered { .. }))
    });
    if answered {
        let line = format!(
            "{finding}; yet the ClusterIP answered: this node's Service dataplane does not apply internalTrafficPolicy"
        );
        let ready = NonEmpty::from_vec(cx.all_live.iter().map(|e| e.label()).collect())?;
        let total = cx.all_live.len();
        return Some(pass(EndpointsFinding::Ready { ready, total }, vec![line]));
    }
    let (ns, name) = (&svc.namespace, &svc.name);
    let mut evidence: Vec<String> = vec![];
    if let Some(Ok((node, rules))) = witnesses::service_rules(cx) {
        evidence.push(format!("{node}: {}", rules_line(rules)));
    }
    let selector = selector_text(svc);
    let fix = vec![
        FixLine::Hint(format!(
            "run a {ns}/{name} endpoint on {} (a DaemonSet runs one on every node), or set internalTrafficPolicy: Cluster",
            route.node
        )),
        cmd(format!("kubectl -n {ns} get pods -l {selector} -o wide")),
        cmd(format!(
            "kubectl -n {ns} get svc {name} -o jsonpath='{{.spec.internalTrafficPolicy}}'"
        )),
    ];
    Some(fail(finding, evidence, fix))
}

/// What the source node's rules do with the VIP, as the `none on this node` finding shows it.
fn rules_line(rules: &netdiag_proto::ServiceRules) -> String {
    match (rules.found, rules.drops, rules.rejects) {
        (true, true, _) => "kube-proxy drops the ClusterIP's traffic (no local endpoint)".into(),
        (true, _, true) => "kube-proxy rejects the ClusterIP as a Service without endpoints".into(),
        (true, _, _) if rules.endpoints.is_empty() => "kube-proxy has a rule for the ClusterIP".into(),
        (true, _, _) => format!(
            "kube-proxy translates the ClusterIP to {}",
            rules
                .endpoints
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join(", ")
        ),
        (false, _, _) => "no kube-proxy rule for the ClusterIP".into(),
    }
}

/// An endpoint the source's node uses, by its pod's name (else its address), said to be
/// terminating when kube-proxy falls back to it for want of a ready one.
fn used_name(e: &EndpointFacts) -> String {
    let name = e.pod.as_ref().map_or_else(|| e.label(), |p| p.name.clone());
    if e.conditions.ready {
        name
    } else {
        format!("{name} (terminating, still serving)")
    }
}

/// Why the source's node uses fewer endpoints than the Service has, as an evidence line.
fn route_line(route: &NodeRoute) -> Option<String> {
    let names = || {
        route
            .used
            .iter()
            .map(|e| used_name(e))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let node = route.node;
    Some(match &route.routing {
        Routing::Local => format!(
            "internalTrafficPolicy: Local: kube-proxy on {node} sends to the endpoints on {node} only: {}",
            names()
        ),
        Routing::SameNode => format!(
            "topology hints: kube-proxy on {node} sends to the endpoints hinted for {node} only: {}",
            names()
        ),
        Routing::SameZone(zone) => format!(
            "topology hints: kube-proxy on {node} (zone {zone}) sends to the endpoints hinted for {zone} only: {}",
            names()
        ),
        Routing::Cluster => {
            let failure = route.zone_unread?;
            format!(
                "the endpoints carry zone hints, but {node}'s zone is not known ({failure}): every ready endpoint is taken as used"
            )
        }
    })
}

/// A pod target: the pod exists, runs, and declares the named port.
fn pod_endpoint(list: &[EndpointFacts]) -> Judgment {
    let Some(e) = list.first() else {
        return fail(EndpointsFinding::PodWithoutAddress, vec![], vec![]);
    };
    let Some(pod) = &e.pod else {
        return pass(EndpointsFinding::PodAddress { ip: e.ip }, vec![]);
    };
    let describe = cmd(format!("kubectl -n {} describe pod {}", pod.namespace, pod.name));
    if pod.phase != "Running" {
        return fail(
            EndpointsFinding::PodNotRunning {
                pod: pod.key(),
                phase: pod.phase.clone(),
            },
            vec![],
            vec![describe],
        );
    }
    let Some(port) = e.port else {
        let names: Vec<String> = pod
            .container_ports
            .iter()
            .filter_map(|c| c.name.as_ref().map(|n| format!("{n}:{}", c.port)))
            .collect();
        return fail(
            EndpointsFinding::PodPortUndeclared { pod: pod.key() },
            vec![format!(
                "named ports: {}",
                if names.is_empty() {
                    "none".into()
                } else {
                    names.join(", ")
                }
            )],
            vec![describe],
        );
    };
    let mut evidence = vec![];
    if !pod.ready {
        evidence
            .push("the pod is not Ready: Services leave it out, but direct traffic still reaches it".into());
    }
    pass(
        EndpointsFinding::PodRunning {
            pod: pod.key(),
            node: pod.node.clone(),
            ip: e.ip,
            port,
        },
        evidence,
    )
}
/// Why a Service with a selector (or without one) has no endpoint to send traffic to.
fn no_ready_endpoints(svc: &ServiceSpecFacts) -> Judgment {
    let key = svc.key();
    let ns = &svc.namespace;
    let selector = selector_text(svc);
    if svc.selector.as_ref().is_none_or(|s| s.is_empty()) {
        return fail(
            EndpointsFinding::NoSelector { service: key },
            vec![],
            cmds(vec![format!(
                "kubectl -n {ns} get endpointslices -l kubernetes.io/service-name={}",
                svc.name
            )]),
        );
    }
    let selected = &svc.selected_pods;
    if selected.is_empty() {
        return fail(
            EndpointsFinding::SelectorMatchesNoPods {
                service: key,
                selector,
            },
            vec![],
            vec![
                cmd(format!("kubectl -n {ns} get pods --show-labels")),
                cmd(format!("kubectl -n {ns} get svc {} -o yaml", svc.name)),
            ],
        );
    }
    let describe = cmd(format!("kubectl -n {ns} describe pods -l {selector}"));
    let evidence: Vec<String> = selected
        .iter()
        .map(|p| {
            format!(
                "{}: {}, Ready={}{}",
                p.key(),
                p.phase,
                if p.ready { "True" } else { "False" },
                if p.terminating { ", terminating" } else { "" }
            )
        })
        .collect();
    if selected.iter().all(|p| p.terminating) {
        return fail(
            EndpointsFinding::AllTerminating {
                service: key,
                selected: selected.len(),
            },
            evidence,
            vec![describe],
        );
    }
    if selected.iter().all(|p| !p.ready) {
        return fail(
            EndpointsFinding::NoneReady {
                service: key,
                selected: selected.len(),
                selector,
            },
            evidence,
            vec![describe],
        );
    }
    fail(
        EndpointsFinding::ReadyPodsUnlisted {
            service: key,
            selected: selected.len(),
        },
        evidence,
        cmds(vec![format!(
            "kubectl -n {ns} get endpointslices -l kubernetes.io/service-name={} -o yaml",
            svc.name
        )]),
    )
}

/// Endpoints that no pod holds and that do not answer: stale or hand-written EndpointSlice
/// entries, named with their slice. Not a network fault: nothing is there to reach.
fn stale_endpoints(cx: &Context, svc: &ServiceSpecFacts) -> Option<Judgment> {
    let stale: Vec<&EndpointFacts> = cx
        .live
        .iter()
        .copied()
        .filter(|e| outcomes::is_stale(cx.destination, e))
        .collect();
    let listed: Vec<Listed> = stale
        .iter()
        .map(|e| Listed {
            slice: e.slice.clone(),
            endpoint: e.label(),
        })
        .collect();
    let evidence = stale
        .iter()
        .zip(&listed)
        .map(|(e, listed)| {
            let tcp = describe_live(&e.live);
            format!(
                "{} lists {}: no pod holds this address; TCP {tcp}",
                listed.slice(),
                listed.endpoint
            )
        })
        .collect();
    let finding = EndpointsFinding::Stale {
        stale: NonEmpty::from_vec(listed)?,
        live: cx.live.len(),
        selector: svc.selector.is_some(),
    };
    let mut fix: Vec<String> = stale
        .iter()
        .filter_map(|e| e.slice.as_ref())
        .map(|s| format!("kubectl -n {} get endpointslice {} -o yaml", s.namespace, s.name))
        .collect();
    fix.dedup();
    fix.push(format!(
        "kubectl -n {} get svc {} -o yaml",
        svc.namespace, svc.name
    ));
    Some(fail(finding, evidence, cmds(fix)))
}

#[cfg(test)]
#[path = "endpoints_tests.rs"]
mod tests;
