//! The `endpoints` layer: at least one ready endpoint backs the port.

use super::*;

/// Ready endpoints named in a passing summary; the JSON report lists every one.
const SHOWN_READY: usize = 5;

pub(super) fn judge_endpoints(cx: &Context) -> Judgment {
    match cx.destination {
        Destination::External => {
            return not_applicable("not applicable: the target belongs to no Service or pod");
        }
        Destination::Service if cx.is_external_name() => {
            return not_applicable("not applicable: an ExternalName Service has no endpoints");
        }
        _ => {}
    }
    let list = match &cx.endpoints {
        EndpointsFacts::Unknown(reason) => {
            return undetermined(format!("could not read the endpoints: {reason}"), vec![], vec![]);
        }
        EndpointsFacts::TargetPodMissing { namespace, name } => {
            return fail(
                format!("pod {namespace}/{name} not found"),
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
        return not_applicable("not applicable: no Service");
    };
    if let Some(stale) = stale_endpoints(cx, svc) {
        return stale;
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
    let names = |eps: &[&EndpointFacts]| labels(eps).join(", ");
    if !ready.is_empty() {
        let mut evidence = vec![];
        let not_ready: Vec<&EndpointFacts> = list.iter().filter(|e| !e.ready()).collect();
        if !not_ready.is_empty() {
            evidence.push(format!("not ready: {}", names(&not_ready)));
        }
        return pass(
            format!(
                "{}/{} ready ({})",
                ready.len(),
                list.len(),
                passing_names(&labels(&ready), SHOWN_READY)
            ),
            evidence,
        );
    }
    if !cx.live.is_empty() {
        // kube-proxy's fallback: with nothing ready, connections still go to the endpoints that
        // serve while they terminate — the Service works until they finish.
        return pass(
            format!(
                "0/{} ready; kube-proxy falls back to {} serving-but-terminating ({}) until they stop",
                list.len(),
                cx.live.len(),
                names(&cx.live)
            ),
            vec!["no endpoint is ready: once the terminating pods exit, the Service has no endpoints".into()],
        );
    }
    no_ready_endpoints(svc)
}

/// A pod target: the pod exists, runs, and declares the named port.
fn pod_endpoint(list: &[EndpointFacts]) -> Judgment {
    let Some(e) = list.first() else {
        return fail("the target pod has no address", vec![], vec![]);
    };
    let Some(pod) = &e.pod else {
        return pass(format!("{} is a pod address", fmt_ip(e.ip)), vec![]);
    };
    let describe = cmd(format!("kubectl -n {} describe pod {}", pod.namespace, pod.name));
    if pod.phase != "Running" {
        return fail(
            format!("{} is {}, not Running", pod.key(), pod.phase),
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
            format!("{} declares no port of the requested name", pod.key()),
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
        format!(
            "{} Running on {} ({}:{port})",
            pod.key(),
            pod.node.as_deref().unwrap_or("?"),
            fmt_ip(e.ip)
        ),
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
            format!("{key} has no selector and no ready endpoints"),
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
            format!("{key} selector {selector} matches no pods in namespace {ns}"),
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
            format!("{key}: the {} selected pods are all terminating", selected.len()),
            evidence,
            vec![describe],
        );
    }
    if selected.iter().all(|p| !p.ready) {
        return fail(
            format!(
                "{key}: {} pods selected by {selector}, none ready",
                selected.len()
            ),
            evidence,
            vec![describe],
        );
    }
    fail(
        format!(
            "{key}: no ready endpoints although {} selected pods are ready (stale EndpointSlices?)",
            selected.len()
        ),
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
    let first = stale.first()?;
    let slice = |e: &EndpointFacts| {
        e.slice
            .as_ref()
            .map(|s| format!("EndpointSlice {s}"))
            .unwrap_or_else(|| "an EndpointSlice".into())
    };
    let evidence = stale
        .iter()
        .map(|e| {
            let tcp = describe_live(&e.live);
            format!(
                "{} lists {}: no pod holds this address; TCP {tcp}",
                slice(e),
                e.label()
            )
        })
        .collect();
    let owner = if svc.selector.is_none() {
        "the Service has no selector, so its slices are written by hand or by another controller"
    } else {
        "the slice was left behind by its controller"
    };
    let summary = format!(
        "{} {} stale: {} lists {}, which no pod holds and which does not answer ({owner}){}",
        endpoints_of(stale.len(), cx.live.len()),
        if stale.len() == 1 { "is" } else { "are" },
        slice(first),
        first.label(),
        connection_share(stale.len(), cx.live.len())
    );
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
    Some(fail(summary, evidence, cmds(fix)))
}

#[cfg(test)]
#[path = "endpoints_tests.rs"]
mod tests;
