//! The checklist judge: a pure function from [`Evidence`] to the [`Report`].
//!
//! Rules (DESIGN.md, "Rules of judgment"): layers are judged in causal order; the first
//! layer proven at fault is the one failing layer and every later layer is "not judged";
//! a layer that could not be checked is UNDETERMINED with the reason (a tool failure is
//! never blamed on the network); live probes and policy analysis must agree, or the
//! disagreement is reported.

use std::net::IpAddr;

use netdiag_proto::{DnsOutcome, DnsResult, TcpOutcome, Transport};

use super::evidence::*;
use super::report::{Layer, Report, Status, Step, Verdict};
use super::target::PortRef;

/// One layer's judgment before the walk decides what is reported.
#[derive(Debug, Clone, PartialEq)]
enum Judgment {
    Pass {
        summary: String,
        evidence: Vec<String>,
    },
    Fail {
        summary: String,
        evidence: Vec<String>,
        fix: Vec<String>,
    },
    /// Not applicable to this target; the walk goes on.
    NotApplicable(String),
    Undetermined {
        summary: String,
        evidence: Vec<String>,
        fix: Vec<String>,
    },
}

fn pass(summary: impl Into<String>, evidence: Vec<String>) -> Judgment {
    Judgment::Pass {
        summary: summary.into(),
        evidence,
    }
}

fn fail(summary: impl Into<String>, evidence: Vec<String>, fix: Vec<String>) -> Judgment {
    Judgment::Fail {
        summary: summary.into(),
        evidence,
        fix,
    }
}

fn undetermined(summary: impl Into<String>, evidence: Vec<String>, fix: Vec<String>) -> Judgment {
    Judgment::Undetermined {
        summary: summary.into(),
        evidence,
        fix,
    }
}

fn not_applicable(summary: impl Into<String>) -> Judgment {
    Judgment::NotApplicable(summary.into())
}

const CLUSTER_DOMAIN: &str = "cluster.local";

/// Judges the evidence; `duration_ms` is copied into the report.
pub fn judge(ev: &Evidence, duration_ms: u64) -> Report {
    let mut steps = Vec::with_capacity(Layer::ALL.len());
    let mut fix = Vec::new();
    let mut stopped: Option<(Layer, Status)> = None;
    let dns_blocked = dns_blocked_by_policy(ev);
    for layer in Layer::ALL {
        if let Some((at, status)) = stopped {
            let why = if status == Status::Fail {
                format!("not judged (blocked upstream at {})", at.id())
            } else {
                format!("not judged ({} could not be checked)", at.id())
            };
            steps.push(Step {
                layer,
                status: Status::Skip,
                summary: why,
                evidence: vec![],
            });
            continue;
        }
        let judgment = match layer {
            Layer::Source => judge_source(ev),
            Layer::Dns => judge_dns(ev, dns_blocked.as_ref()),
            Layer::Service | Layer::Endpoints if dns_blocked.is_some() => behind_blocked_dns(layer, ev),
            Layer::Service => judge_service(ev),
            Layer::Endpoints => judge_endpoints(ev),
            Layer::NetworkPolicy => judge_policy(ev, dns_blocked.as_ref()),
            Layer::PodNetwork => judge_pod_network(ev),
            Layer::ServiceProxy => judge_service_proxy(ev),
            Layer::Application => judge_application(ev),
        };
        let step = match judgment {
            Judgment::Pass { summary, evidence } => Step {
                layer,
                status: Status::Pass,
                summary,
                evidence,
            },
            Judgment::NotApplicable(summary) => Step {
                layer,
                status: Status::Skip,
                summary,
                evidence: vec![],
            },
            Judgment::Fail {
                summary,
                evidence,
                fix: f,
            } => {
                stopped = Some((layer, Status::Fail));
                fix.extend(f);
                Step {
                    layer,
                    status: Status::Fail,
                    summary,
                    evidence,
                }
            }
            Judgment::Undetermined {
                summary,
                evidence,
                fix: f,
            } => {
                stopped = Some((layer, Status::Undetermined));
                fix.extend(f);
                Step {
                    layer,
                    status: Status::Undetermined,
                    summary,
                    evidence,
                }
            }
        };
        steps.push(step);
    }
    let (verdict, reachable, failing_layer) = match stopped {
        None => (Verdict::Reachable, Some(true), None),
        Some((layer, Status::Fail)) => (Verdict::Unreachable, Some(false), Some(layer)),
        Some(_) => (Verdict::Undetermined, None, None),
    };
    Report {
        verdict,
        reachable,
        failing_layer,
        steps,
        fix,
        duration_ms,
    }
}

/// The Service and endpoints layers while DNS lookups are dropped by NetworkPolicy: the client
/// never gets past DNS, so the policy (judged at network-policy) is the one failing layer. A fault
/// these layers would also show is kept in the summary, not reported as a second failing layer.
fn behind_blocked_dns(layer: Layer, ev: &Evidence) -> Judgment {
    let judgment = if layer == Layer::Service {
        judge_service(ev)
    } else {
        judge_endpoints(ev)
    };
    match judgment {
        Judgment::Fail { summary, .. } | Judgment::Undetermined { summary, .. } => not_applicable(format!(
            "not judged (DNS is blocked by NetworkPolicy first, judged at network-policy); also: {summary}"
        )),
        other => other,
    }
}

// ---------------------------------------------------------------- helpers

fn describe_tcp(outcome: &TcpOutcome) -> String {
    match outcome {
        TcpOutcome::Connected { rtt_us } => format!("connected in {}", fmt_us(*rtt_us)),
        TcpOutcome::Refused { .. } => "refused (RST)".into(),
        TcpOutcome::Timeout { after_ms } => format!("timed out after {after_ms} ms"),
        TcpOutcome::Unreachable { reason, detail, .. } => {
            let reason = serde_json::to_value(reason)
                .ok()
                .and_then(|v| v.as_str().map(str::to_string))
                .unwrap_or_default();
            if detail.is_empty() {
                format!("unreachable ({reason})")
            } else {
                format!("unreachable ({reason}: {detail})")
            }
        }
        TcpOutcome::Error { detail } => format!("probe error: {detail}"),
    }
}

fn fmt_us(us: u64) -> String {
    if us < 10_000 {
        format!("{:.1} ms", us as f64 / 1000.0)
    } else {
        format!("{} ms", us / 1000)
    }
}

fn describe_dns(outcome: &DnsOutcome) -> String {
    match outcome {
        DnsOutcome::Resolved { addresses, .. } => {
            let list: Vec<String> = addresses.iter().map(ToString::to_string).collect();
            format!("resolved to {}", list.join(", "))
        }
        DnsOutcome::Nxdomain => "NXDOMAIN".into(),
        DnsOutcome::Nodata => "no records (NODATA)".into(),
        DnsOutcome::Servfail => "SERVFAIL".into(),
        DnsOutcome::Refused => "REFUSED".into(),
        DnsOutcome::Timeout => "timed out".into(),
        DnsOutcome::Error { detail } => format!("error: {detail}"),
    }
}

/// The network did not deliver the SYN (or its answer): the symptoms of a path or policy drop.
fn is_blocked(outcome: &TcpOutcome) -> bool {
    matches!(
        outcome,
        TcpOutcome::Timeout { .. } | TcpOutcome::Unreachable { .. }
    )
}

fn ordinal(n: usize) -> String {
    let suffix = match (n % 10, n % 100) {
        (1, 11) | (2, 12) | (3, 13) => "th",
        (1, _) => "st",
        (2, _) => "nd",
        (3, _) => "rd",
        _ => "th",
    };
    format!("{n}{suffix}")
}

fn source_pod(ev: &Evidence) -> Option<&PodFacts> {
    match &ev.source {
        SourceFacts::Found { pod, .. } => Some(pod),
        _ => None,
    }
}

fn source_node(ev: &Evidence) -> Option<&str> {
    source_pod(ev).and_then(|p| p.node.as_deref())
}

fn endpoints(ev: &Evidence) -> &[EndpointFacts] {
    match &ev.endpoints {
        EndpointsFacts::Known(list) => list,
        _ => &[],
    }
}

/// The endpoints traffic would go to: ready ones (a Service) or the single destination.
fn live_endpoints(ev: &Evidence) -> Vec<&EndpointFacts> {
    match ev.destination {
        Destination::Service => endpoints(ev).iter().filter(|e| e.ready).collect(),
        _ => endpoints(ev).iter().collect(),
    }
}

fn service(ev: &Evidence) -> Option<&ServiceSpecFacts> {
    match &ev.service {
        ServiceFacts::Found(svc) => Some(svc),
        _ => None,
    }
}

fn is_external_name(ev: &Evidence) -> bool {
    service(ev).is_some_and(|s| s.external_name.is_some())
}

fn closest<'a>(wanted: &str, names: &'a [String]) -> Option<&'a str> {
    names
        .iter()
        .filter(|n| n.as_str() != wanted)
        .map(|n| (strsim::levenshtein(wanted, n), n))
        .filter(|(d, n)| *d <= 2.max(wanted.len().min(n.len()) / 4))
        .min_by_key(|(d, _)| *d)
        .map(|(_, n)| n.as_str())
}

// ---------------------------------------------------------------- source

fn judge_source(ev: &Evidence) -> Judgment {
    match &ev.source {
        SourceFacts::Unknown(reason) => {
            let fix = if reason.contains("forbidden") {
                "kubectl auth can-i list pods --all-namespaces".to_string()
            } else if reason.contains("kubeconfig") {
                "kubectl config get-contexts".to_string()
            } else {
                "kubectl cluster-info".to_string()
            };
            undetermined(
                format!("could not read the source pod {}: {reason}", ev.from),
                vec![],
                vec![fix],
            )
        }
        SourceFacts::Missing {
            namespace,
            name,
            elsewhere,
        } => {
            let mut evidence = vec![];
            if !elsewhere.is_empty() {
                evidence.push(format!(
                    "a pod named {name} exists in namespace(s): {}",
                    elsewhere.join(", ")
                ));
            }
            fail(
                format!("pod {namespace}/{name} not found"),
                evidence,
                vec![format!("kubectl get pods -n {namespace}")],
            )
        }
        SourceFacts::Found { pod, agent } => {
            let key = pod.key();
            let describe = format!("kubectl -n {} describe pod {}", pod.namespace, pod.name);
            let (Some(node), Some(ip)) = (&pod.node, pod.ip) else {
                return fail(
                    format!("{key} is {} without an IP; it cannot send traffic yet", pod.phase),
                    vec![format!(
                        "phase {}, node {}",
                        pod.phase,
                        pod.node.as_deref().unwrap_or("(unscheduled)")
                    )],
                    vec![describe],
                );
            };
            if pod.phase != "Running" {
                return fail(
                    format!("{key} is {} on {node}, not Running", pod.phase),
                    vec![format!("pod IP {ip}")],
                    vec![describe],
                );
            }
            match agent {
                AgentFacts::Answered { agent_pod, netns } => pass(
                    format!("{key} Running on {node} ({ip}), netns found by the agent on {node}"),
                    vec![format!("agent {agent_pod} probed from {netns}")],
                ),
                AgentFacts::NotAsked => undetermined(
                    format!("{key} Running on {node} but its agent was not asked"),
                    vec![],
                    agent_pods_fix(ev),
                ),
                AgentFacts::Failed(reason) => {
                    let fix = match &ev.agents {
                        Some(at) if reason.contains("forbidden") || reason.contains("Forbidden") => {
                            vec![format!(
                                "kubectl auth can-i create pods/portforward -n {}",
                                at.namespace
                            )]
                        }
                        _ => agent_pods_fix(ev),
                    };
                    undetermined(
                        format!("cannot probe as {key} on {node}: {reason}"),
                        vec!["no probe ran, so no network layer can be judged".into()],
                        fix,
                    )
                }
            }
        }
    }
}

/// Commands that show the agents where the check looked for them.
fn agent_pods_fix(ev: &Evidence) -> Vec<String> {
    match &ev.agents {
        Some(AgentPods { namespace, selector }) => vec![
            format!("kubectl -n {namespace} get pods -l {selector} -o wide"),
            format!("kubectl -n {namespace} get daemonsets"),
        ],
        None => vec![],
    }
}

// ---------------------------------------------------------------- dns

/// When DNS timed out and NetworkPolicy denies the source's egress to every DNS pod on 53/UDP,
/// the failing layer is network-policy, not dns.
fn dns_blocked_by_policy(ev: &Evidence) -> Option<String> {
    let dns = ev.dns.as_ref()?;
    let result = dns.result.known()?;
    if !matches!(result.answer.outcome, DnsOutcome::Timeout) {
        return None;
    }
    let cluster = dns.cluster_dns.known()?;
    if cluster.pods.is_empty() {
        return None;
    }
    let mut reasons = Vec::new();
    for pod in &cluster.pods {
        match &pod.egress_policy {
            PolicyCheck::Denied {
                egress: Some(side), ..
            }
            | PolicyCheck::Denied {
                ingress: Some(side), ..
            } => reasons.push(side.why.clone()),
            _ => return None,
        }
    }
    reasons.dedup();
    Some(reasons.join("; "))
}

fn dns_evidence(result: &DnsResult) -> Vec<String> {
    let rc = &result.resolv_conf;
    let servers: Vec<String> = rc.nameservers.iter().map(ToString::to_string).collect();
    let mut evidence = vec![format!(
        "resolv.conf {}: nameserver {}, search {}, ndots {}",
        rc.path,
        servers.join(" "),
        rc.search.join(" "),
        rc.ndots
    )];
    for c in &result.candidates {
        evidence.push(format!(
            "{} @{} → {} ({})",
            c.name,
            c.server,
            describe_dns(&c.outcome),
            fmt_us(c.rtt_us)
        ));
    }
    evidence
}

fn judge_dns(ev: &Evidence, blocked: Option<&String>) -> Judgment {
    let Some(dns) = &ev.dns else {
        return not_applicable(match ev.destination {
            Destination::Pod => "not applicable: a pod target is reached at its IP, no name to resolve",
            _ => "not applicable: the target is an address, no name to resolve",
        });
    };
    let result = match &dns.result {
        Fact::Known(result) => result,
        Fact::Unknown(reason) => {
            return undetermined(
                format!("could not resolve {} as the pod: {reason}", dns.name),
                vec![],
                vec![],
            );
        }
    };
    let mut evidence = dns_evidence(result);
    let name = &dns.name;
    // The cluster's own answers decide: when every candidate under the cluster domain is NXDOMAIN
    // and nothing resolved, the name does not exist in the cluster, whatever the upstream said
    // about names outside it (REFUSED, SERVFAIL, ...).
    let in_cluster: Vec<&DnsOutcome> = result
        .candidates
        .iter()
        .filter(|c| c.name.trim_end_matches('.').ends_with(CLUSTER_DOMAIN))
        .map(|c| &c.outcome)
        .collect();
    let cluster_nxdomain = !result.answer.outcome.is_resolved()
        && !in_cluster.is_empty()
        && in_cluster
            .iter()
            .all(|o| matches!(o, DnsOutcome::Nxdomain | DnsOutcome::Nodata));
    let outcome = if cluster_nxdomain && !matches!(result.answer.outcome, DnsOutcome::Nodata) {
        &DnsOutcome::Nxdomain
    } else {
        &result.answer.outcome
    };
    match outcome {
        DnsOutcome::Resolved { addresses, .. } => {
            let position = result.candidates.iter().position(|c| c.outcome.is_resolved());
            let via = position.map(|i| &result.candidates[i]);
            let list: Vec<String> = addresses.iter().map(ToString::to_string).collect();
            if !dns.expected.is_empty() && !addresses.iter().any(|a| dns.expected.contains(a)) {
                let expected: Vec<String> = dns.expected.iter().map(ToString::to_string).collect();
                return fail(
                    format!(
                        "{name} resolves to {}, but the Service's address is {}",
                        list.join(", "),
                        expected.join(", ")
                    ),
                    evidence,
                    vec![format!(
                        "kubectl get svc -A -o wide | grep -e {}",
                        expected.join(" -e ")
                    )],
                );
            }
            let detail = match (position, via) {
                (Some(i), Some(c)) => format!(
                    " ({} search candidate {}, {}, via {})",
                    ordinal(i + 1),
                    c.name,
                    fmt_us(c.rtt_us),
                    c.server.ip()
                ),
                _ => String::new(),
            };
            pass(format!("{name} → {}{detail}", list.join(", ")), evidence)
        }
        DnsOutcome::Nxdomain | DnsOutcome::Nodata => {
            let what = describe_dns(outcome);
            if let Some((ns, svc)) = &dns.service_guess
                && dns.names_in_namespace.contains(svc)
            {
                return nxdomain_for_existing_service(ev, dns, result, (ns, svc), &what, evidence);
            }
            let mut fix = vec![];
            let summary = match &dns.service_guess {
                Some((ns, svc)) => {
                    fix.push(format!("kubectl get svc -n {ns}"));
                    let source_ns = source_pod(ev).map(|p| p.namespace.as_str());
                    if !dns.same_name_elsewhere.is_empty() && source_ns == Some(ns.as_str()) {
                        // Every namespace that has the Service: the tool cannot know which one was meant.
                        for other in &dns.same_name_elsewhere {
                            let other_ns = other.split('/').next().unwrap_or(other);
                            evidence.push(format!(
                                "Service {other} exists; a short name only resolves within its own namespace"
                            ));
                            fix.push(format!(
                                "use {svc}.{other_ns} (or {svc}.{other_ns}.svc.cluster.local) from namespace {ns}"
                            ));
                        }
                        let which = match dns.same_name_elsewhere.as_slice() {
                            [one] => format!("the Service is {one}"),
                            many => format!("Services of that name: {}", many.join(", ")),
                        };
                        format!(
                            "{name} is {what} from namespace {ns}: short name used across namespaces ({which})"
                        )
                    } else if let Some(close) = closest(svc, &dns.names_in_namespace) {
                        evidence.push(format!(
                            "Services in namespace {ns}: {}",
                            dns.names_in_namespace.join(", ")
                        ));
                        fix.push(format!("did you mean {close}? use {close}.{ns}"));
                        format!(
                            "{name} is {what}: no Service {svc} in namespace {ns} (did you mean {close}?)"
                        )
                    } else {
                        format!("{name} is {what}: no Service {svc} in namespace {ns}")
                    }
                }
                None => format!("{name} is {what} for every search candidate"),
            };
            fail(summary, evidence, fix)
        }
        failure => judge_dns_failure(ev, dns, result, failure, blocked, evidence),
    }
}

/// The cluster DNS Service IP, when the pod's resolv.conf names nameservers and none is it.
fn resolver_off_cluster(cluster: &ClusterDnsFacts, result: &DnsResult) -> Option<IpAddr> {
    let vip = cluster.service_ip?;
    let servers = &result.resolv_conf.nameservers;
    (!servers.is_empty() && !servers.iter().any(|s| s.ip() == vip)).then_some(vip)
}

fn dns_policy_command(ev: &Evidence) -> String {
    let (ns, pod) = ev.from.split_once('/').unwrap_or(("", &ev.from));
    format!("kubectl -n {ns} get pod {pod} -o jsonpath='{{.spec.dnsPolicy}} {{.spec.dnsConfig}}'")
}

/// NXDOMAIN for a name whose Service does exist: the pod's resolver or the DNS server is at fault,
/// never the Service.
fn nxdomain_for_existing_service(
    ev: &Evidence,
    dns: &DnsFacts,
    result: &DnsResult,
    (ns, svc): (&str, &str),
    what: &str,
    evidence: Vec<String>,
) -> Judgment {
    let name = &dns.name;
    let fqdn = format!("{svc}.{ns}.svc.{CLUSTER_DOMAIN}.");
    if let Some(vip) = dns
        .cluster_dns
        .known()
        .and_then(|c| resolver_off_cluster(c, result))
    {
        return fail(
            format!(
                "{name} is {what} although Service {ns}/{svc} exists: the pod's resolv.conf does not use the cluster DNS Service {vip}"
            ),
            evidence,
            vec![dns_policy_command(ev)],
        );
    }
    if !result
        .candidates
        .iter()
        .any(|c| c.name.eq_ignore_ascii_case(&fqdn))
    {
        return fail(
            format!(
                "{name} is {what} although Service {ns}/{svc} exists: no query asked for {fqdn}; the pod's search list ({}) does not complete the name",
                result.resolv_conf.search.join(" ")
            ),
            evidence,
            vec![dns_policy_command(ev), format!("use {fqdn} from {}", ev.from)],
        );
    }
    fail(
        format!(
            "cluster DNS answers {what} for {fqdn} although Service {ns}/{svc} exists: the DNS server does not serve the cluster zone (CoreDNS kubernetes plugin or its RBAC) or is stale"
        ),
        evidence,
        vec![
            "kubectl -n kube-system logs -l k8s-app=kube-dns --tail=50".into(),
            "kubectl -n kube-system get configmap coredns -o yaml".into(),
        ],
    )
}

/// Timeout, SERVFAIL, REFUSED or an error: explain it from the cluster DNS facts.
fn judge_dns_failure(
    ev: &Evidence,
    dns: &DnsFacts,
    result: &DnsResult,
    failure: &DnsOutcome,
    blocked: Option<&String>,
    mut evidence: Vec<String>,
) -> Judgment {
    let name = &dns.name;
    let what = describe_dns(failure);
    if let Some(reason) = blocked {
        return not_applicable(format!(
            "{name} {what}: queries to cluster DNS are blocked by NetworkPolicy ({reason}); judged at network-policy"
        ));
    }
    let fix = vec![
        "kubectl -n kube-system get pods -l k8s-app=kube-dns -o wide".to_string(),
        "kubectl -n kube-system get endpointslices -l kubernetes.io/service-name=kube-dns".to_string(),
    ];
    let cluster = match &dns.cluster_dns {
        Fact::Known(cluster) => cluster,
        Fact::Unknown(reason) => {
            evidence.push(format!("cluster DNS could not be inspected: {reason}"));
            return fail(format!("{name} {what} from {}", ev.from), evidence, fix);
        }
    };
    if let Some(vip) = resolver_off_cluster(cluster, result) {
        return fail(
            format!("{name} {what}: the pod's resolv.conf does not use the cluster DNS Service {vip}"),
            evidence,
            vec![dns_policy_command(ev)],
        );
    }
    let ready: Vec<&DnsPodFacts> = cluster.pods.iter().filter(|p| p.ready).collect();
    if ready.is_empty() {
        evidence.push(format!(
            "kube-dns endpoints: {} listed, none ready",
            cluster.pods.len()
        ));
        return fail(
            format!("{name} {what}: the cluster DNS Service kube-dns has no ready endpoints (DNS pods down)"),
            evidence,
            fix,
        );
    }
    let mut answered = 0;
    for pod in &ready {
        match &pod.direct {
            Fact::Known(outcome) => {
                evidence.push(format!(
                    "direct query to DNS pod {} ({}): {}",
                    pod.pod,
                    pod.ip,
                    describe_dns(outcome)
                ));
                if matches!(
                    outcome,
                    DnsOutcome::Resolved { .. } | DnsOutcome::Nxdomain | DnsOutcome::Nodata
                ) {
                    answered += 1;
                }
            }
            Fact::Unknown(reason) => {
                evidence.push(format!("direct query to DNS pod {}: not run ({reason})", pod.pod))
            }
        }
    }
    let unevaluated: Vec<String> = ready
        .iter()
        .filter_map(|p| match &p.egress_policy {
            PolicyCheck::NotEvaluated(reason) => Some(format!("{}: {reason}", p.pod)),
            _ => None,
        })
        .collect();
    if matches!(failure, DnsOutcome::Timeout) && answered == 0 && !unevaluated.is_empty() {
        evidence.extend(
            unevaluated
                .iter()
                .map(|u| format!("NetworkPolicy for egress to DNS pod {u}: not evaluated")),
        );
        return undetermined(
            format!(
                "{name} {what} and NetworkPolicy for egress to cluster DNS could not be evaluated, so a policy drop cannot be ruled out"
            ),
            evidence,
            vec!["kubectl auth can-i list networkpolicies -A".into()],
        );
    }
    let summary = match failure {
        DnsOutcome::Servfail => {
            format!("{name}: the DNS server answers SERVFAIL (server failing: upstream, RBAC or config)")
        }
        // An rcode is an answer: the Service IP reached a server, which declined the name.
        DnsOutcome::Refused => {
            format!(
                "{name}: the DNS server answers REFUSED (it declines to serve the name: server config or ACL)"
            )
        }
        _ if answered > 0 => format!(
            "{name} {what} via the kube-dns Service IP, but the DNS pods answer directly: the DNS Service IP is not proxied"
        ),
        _ if ready.iter().all(|p| p.direct.known().is_some()) => {
            format!("{name} {what}: the DNS pods do not answer (DNS server down)")
        }
        _ => format!("{name} {what} from {}", ev.from),
    };
    fail(summary, evidence, fix)
}

// ---------------------------------------------------------------- service

fn target_port_text(tp: &PortRef) -> String {
    tp.to_string()
}

fn judge_service(ev: &Evidence) -> Judgment {
    let svc = match &ev.service {
        ServiceFacts::NotApplicable => {
            return not_applicable(match ev.destination {
                Destination::Pod => "not applicable: the target is a pod",
                _ => "not applicable: the target belongs to no Service",
            });
        }
        ServiceFacts::Unknown(reason) => {
            return undetermined(format!("could not read the Service: {reason}"), vec![], vec![]);
        }
        ServiceFacts::Missing {
            namespace,
            name,
            names_in_namespace,
        } => {
            let hint = closest(name, names_in_namespace)
                .map(|c| format!(" (did you mean {c}?)"))
                .unwrap_or_default();
            return fail(
                format!("Service {namespace}/{name} not found{hint}"),
                vec![format!(
                    "Services in namespace {namespace}: {}",
                    names_in_namespace.join(", ")
                )],
                vec![format!("kubectl get svc -n {namespace}")],
            );
        }
        ServiceFacts::Found(svc) => svc,
    };
    let key = svc.key();
    let get_svc = format!("kubectl -n {} get svc {} -o yaml", svc.namespace, svc.name);
    if let Some(external) = &svc.external_name {
        return pass(format!("{key} is an ExternalName Service for {external}"), vec![]);
    }
    let exposed: Vec<String> = svc
        .ports
        .iter()
        .map(|p| match &p.name {
            Some(n) => format!("{}/{} ({n})", p.port, p.protocol),
            None => format!("{}/{}", p.port, p.protocol),
        })
        .collect();
    let Some(port) = svc.requested_port() else {
        return fail(
            format!(
                "{key} does not expose port {}; it exposes {}",
                svc.requested,
                exposed.join(", ")
            ),
            vec![],
            vec![get_svc],
        );
    };
    let port_text = format!("port {}/{}", port.port, port.protocol);
    let selected = &svc.selected_pods;
    match &port.target_port {
        PortRef::Name(tp) => {
            let declaring: Vec<&PodFacts> = selected
                .iter()
                .filter(|p| {
                    p.container_ports
                        .iter()
                        .any(|c| c.name.as_deref() == Some(tp.as_str()))
                })
                .collect();
            if !selected.is_empty() && declaring.is_empty() {
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
                return fail(
                    format!(
                        "{key} {port_text} targets the port named {tp}, which none of the {} selected pods declares",
                        selected.len()
                    ),
                    declared,
                    vec![
                        get_svc,
                        format!(
                            "kubectl -n {} get pods -l {} -o yaml",
                            svc.namespace,
                            selector_text(svc)
                        ),
                    ],
                );
            }
            let numbers: Vec<String> = declaring
                .iter()
                .flat_map(|p| {
                    p.container_ports
                        .iter()
                        .filter(|c| c.name.as_deref() == Some(tp.as_str()))
                })
                .map(|c| c.port.to_string())
                .collect::<std::collections::BTreeSet<_>>()
                .into_iter()
                .collect();
            let mut evidence = vec![];
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
        PortRef::Number(tp) => {
            if let Some(listening) = wrong_numeric_target_port(ev, svc, *tp) {
                let ports: Vec<String> = listening.iter().map(u16::to_string).collect();
                let evidence = live_endpoints(ev)
                    .iter()
                    .map(|e| {
                        format!(
                            "TCP to {} refused; the pod listens on {}",
                            e.label(),
                            ports.join(", ")
                        )
                    })
                    .collect();
                let mut fix = vec![get_svc];
                let index = svc
                    .ports
                    .iter()
                    .position(|p| p.port == port.port && p.protocol == port.protocol);
                if let ([only], Some(i)) = (listening.as_slice(), index) {
                    fix.push(format!(
                        "kubectl -n {} patch svc {} --type=json -p '[{{\"op\":\"replace\",\"path\":\"/spec/ports/{i}/targetPort\",\"value\":{only}}}]'",
                        svc.namespace, svc.name
                    ));
                }
                return fail(
                    format!(
                        "{key} {port_text} → targetPort {tp}, but nothing listens on {tp} in the selected pods; they listen on {}",
                        ports.join(", ")
                    ),
                    evidence,
                    fix,
                );
            }
            pass(
                format!(
                    "{port_text} → targetPort {} on {}",
                    target_port_text(&port.target_port),
                    selected_pods(selected.len())
                ),
                vec![],
            )
        }
    }
}

fn selected_pods(n: usize) -> String {
    if n == 1 {
        "1 selected pod".into()
    } else {
        format!("{n} selected pods")
    }
}

fn selector_text(svc: &ServiceSpecFacts) -> String {
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
fn wrong_numeric_target_port(ev: &Evidence, svc: &ServiceSpecFacts, tp: u16) -> Option<Vec<u16>> {
    let live = live_endpoints(ev);
    let all_refused = live
        .iter()
        .all(|e| matches!(e.tcp, Fact::Known(TcpOutcome::Refused { .. })));
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
    for e in &live {
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
    (!listening.is_empty()).then(|| listening.into_iter().collect())
}

// ---------------------------------------------------------------- endpoints

fn judge_endpoints(ev: &Evidence) -> Judgment {
    match ev.destination {
        Destination::External => {
            return not_applicable("not applicable: the target belongs to no Service or pod");
        }
        Destination::Service if is_external_name(ev) => {
            return not_applicable("not applicable: an ExternalName Service has no endpoints");
        }
        _ => {}
    }
    let list = match &ev.endpoints {
        EndpointsFacts::Unknown(reason) => {
            return undetermined(format!("could not read the endpoints: {reason}"), vec![], vec![]);
        }
        EndpointsFacts::TargetPodMissing { namespace, name } => {
            return fail(
                format!("pod {namespace}/{name} not found"),
                vec![],
                vec![format!("kubectl get pods -n {namespace}")],
            );
        }
        EndpointsFacts::Known(list) => list,
    };
    if ev.destination == Destination::Pod {
        let Some(e) = list.first() else {
            return fail("the target pod has no address", vec![], vec![]);
        };
        let Some(pod) = &e.pod else {
            return pass(format!("{} is a pod address", fmt_ip(e.ip)), vec![]);
        };
        let describe = format!("kubectl -n {} describe pod {}", pod.namespace, pod.name);
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
            evidence.push(
                "the pod is not Ready: Services leave it out, but direct traffic still reaches it".into(),
            );
        }
        return pass(
            format!(
                "{} Running on {} ({}:{port})",
                pod.key(),
                pod.node.as_deref().unwrap_or("?"),
                fmt_ip(e.ip)
            ),
            evidence,
        );
    }
    let Some(svc) = service(ev) else {
        return not_applicable("not applicable: no Service");
    };
    let ready: Vec<&EndpointFacts> = list.iter().filter(|e| e.ready).collect();
    let names = |eps: &[&EndpointFacts]| -> String {
        eps.iter()
            .map(|e| {
                e.pod
                    .as_ref()
                    .map(|p| p.name.clone())
                    .unwrap_or_else(|| e.ip.to_string())
            })
            .collect::<Vec<_>>()
            .join(", ")
    };
    if !ready.is_empty() {
        let mut evidence = vec![];
        let not_ready: Vec<&EndpointFacts> = list.iter().filter(|e| !e.ready).collect();
        if !not_ready.is_empty() {
            evidence.push(format!("not ready: {}", names(&not_ready)));
        }
        return pass(
            format!("{}/{} ready ({})", ready.len(), list.len(), names(&ready)),
            evidence,
        );
    }
    let key = svc.key();
    let ns = &svc.namespace;
    let selector = selector_text(svc);
    if svc.selector.as_ref().is_none_or(|s| s.is_empty()) {
        return fail(
            format!("{key} has no selector and no ready endpoints"),
            vec![],
            vec![format!(
                "kubectl -n {ns} get endpointslices -l kubernetes.io/service-name={}",
                svc.name
            )],
        );
    }
    let selected = &svc.selected_pods;
    if selected.is_empty() {
        return fail(
            format!("{key} selector {selector} matches no pods in namespace {ns}"),
            vec![],
            vec![
                format!("kubectl -n {ns} get pods --show-labels"),
                format!("kubectl -n {ns} get svc {} -o yaml", svc.name),
            ],
        );
    }
    let describe = format!("kubectl -n {ns} describe pods -l {selector}");
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
        vec![format!(
            "kubectl -n {ns} get endpointslices -l kubernetes.io/service-name={} -o yaml",
            svc.name
        )],
    )
}

// ---------------------------------------------------------------- network-policy

fn judge_policy(ev: &Evidence, dns_blocked: Option<&String>) -> Judgment {
    let src_ns = source_pod(ev).map(|p| p.namespace.clone()).unwrap_or_default();
    if let Some(reason) = dns_blocked {
        return fail(
            format!(
                "egress from {} to cluster DNS (port 53/UDP) is denied: {reason}",
                ev.from
            ),
            {
                let mut evidence = vec![
                    "DNS queries from the pod time out while the policy evaluation denies them".to_string(),
                ];
                if let Some(Fact::Known(result)) = ev.dns.as_ref().map(|d| &d.result) {
                    evidence.extend(dns_evidence(result));
                }
                evidence
            },
            dns_policy_fix(ev, &src_ns),
        );
    }
    if is_external_name(ev) {
        return not_applicable("not applicable: an ExternalName Service");
    }
    let live = live_endpoints(ev);
    if live.is_empty() {
        return not_applicable("not applicable: no destination address");
    }
    let mut denied = vec![];
    let mut disagreements = vec![];
    let mut unknown = vec![];
    let mut allowed = vec![];
    for e in &live {
        match &e.policy {
            PolicyCheck::Denied { egress, ingress } => {
                let why: Vec<String> = [
                    egress.as_ref().map(|w| format!("egress: {}", w.why)),
                    ingress.as_ref().map(|w| format!("ingress: {}", w.why)),
                ]
                .into_iter()
                .flatten()
                .collect();
                let line = format!("{}: {}", e.label(), why.join("; "));
                match &e.tcp {
                    Fact::Known(TcpOutcome::Connected { .. }) => disagreements.push(line),
                    Fact::Known(outcome) => denied.push(format!("{line} — TCP {}", describe_tcp(outcome))),
                    Fact::Unknown(_) => denied.push(line),
                }
            }
            PolicyCheck::NotEvaluated(reason) => unknown.push((e, reason.clone())),
            PolicyCheck::Allowed { detail } => allowed.push(format!("{}: {detail}", e.label())),
        }
    }
    if !denied.is_empty() {
        let first = live
            .iter()
            .find(|e| e.policy.is_denied() && !matches!(e.tcp, Fact::Known(TcpOutcome::Connected { .. })));
        let headline = match first.map(|e| &e.policy) {
            Some(PolicyCheck::Denied {
                ingress: Some(side), ..
            }) => format!(
                "ingress to {} denied: {}",
                first.map(|e| e.label()).unwrap_or_default(),
                side.why
            ),
            Some(PolicyCheck::Denied {
                egress: Some(side), ..
            }) => format!("egress from {} denied: {}", ev.from, side.why),
            _ => "the flow is denied by NetworkPolicy".to_string(),
        };
        let count = if live.len() > 1 {
            format!(" ({}/{} endpoints)", denied.len(), live.len())
        } else {
            String::new()
        };
        let mut evidence = denied;
        evidence.extend(
            disagreements
                .into_iter()
                .map(|d| format!("disagreement: {d}, yet TCP connected")),
        );
        return fail(
            format!("{headline}{count}"),
            evidence,
            policy_fix(ev, &live, &src_ns),
        );
    }
    if !unknown.is_empty() {
        let blocked: Vec<String> = unknown
            .iter()
            .filter(|(e, _)| matches!(&e.tcp, Fact::Known(o) if is_blocked(o)))
            .map(|(e, reason)| format!("{}: policy not evaluated ({reason})", e.label()))
            .collect();
        if !blocked.is_empty() {
            return undetermined(
                "connections fail and NetworkPolicy could not be evaluated, so policy cannot be ruled out",
                blocked,
                vec![
                    format!("kubectl auth can-i list networkpolicies -A"),
                    format!("kubectl -n {src_ns} get networkpolicy"),
                ],
            );
        }
    }
    let mut evidence = allowed;
    evidence.extend(
        unknown
            .iter()
            .map(|(e, reason)| format!("{}: not evaluated ({reason})", e.label())),
    );
    if !disagreements.is_empty() {
        let n = disagreements.len();
        evidence.extend(
            disagreements
                .into_iter()
                .map(|d| format!("disagreement: {d}, yet TCP connected")),
        );
        return pass(
            format!(
                "NetworkPolicy denies {n} flow(s) but the connections succeed: the CNI does not enforce NetworkPolicy"
            ),
            evidence,
        );
    }
    pass(
        format!(
            "egress of {} and ingress of the destination allow the flow",
            ev.from
        ),
        evidence,
    )
}

/// How a NetworkPolicy peer selector can name the pod: its `app` (or `app.kubernetes.io/name`)
/// label when it has one, else all its labels; `None` when it has no labels.
fn pod_selector(pod: &PodFacts) -> Option<String> {
    let preferred = ["app", "app.kubernetes.io/name"]
        .iter()
        .find_map(|k| pod.labels.get(*k).map(|v| format!("{k}={v}")));
    preferred.or_else(|| {
        (!pod.labels.is_empty()).then(|| {
            let all: Vec<String> = pod.labels.iter().map(|(k, v)| format!("{k}={v}")).collect();
            all.join(",")
        })
    })
}

/// The pod as a NetworkPolicy peer: `pods with app=checkout in namespace shop`.
fn peer_phrase(pod: &PodFacts) -> String {
    match pod_selector(pod) {
        Some(sel) => format!("pods with {sel} in namespace {}", pod.namespace),
        None => format!("pod {} (it has no labels to select it by)", pod.key()),
    }
}

/// The pod as the subject of a new policy: `app=payments in namespace shop`.
fn subject_phrase(pod: &PodFacts) -> String {
    match pod_selector(pod) {
        Some(sel) => format!("{sel} in namespace {}", pod.namespace),
        None => format!("pod {} (it has no labels to select it by)", pod.key()),
    }
}

fn policies_phrase(policies: &[(String, String)]) -> String {
    let names: Vec<String> = policies.iter().map(|(ns, name)| format!("{ns}/{name}")).collect();
    match names.as_slice() {
        [one] => one.clone(),
        _ => format!("one of {}", names.join(", ")),
    }
}

/// The `kubectl get networkpolicy` lines for the isolating policies (at most 3), or the
/// namespace listing when no policy is named.
fn policy_get_lines(policies: &[(String, String)], fallback_ns: &str) -> Vec<String> {
    let mut seen: Vec<&(String, String)> = Vec::new();
    for p in policies {
        if !seen.contains(&p) {
            seen.push(p);
        }
    }
    if seen.is_empty() {
        return vec![format!("kubectl -n {fallback_ns} get networkpolicy -o yaml")];
    }
    seen.iter()
        .take(3)
        .map(|(ns, name)| format!("kubectl -n {ns} get networkpolicy {name} -o yaml"))
        .collect()
}

fn push_unique(lines: &mut Vec<String>, line: String) {
    if !lines.contains(&line) {
        lines.push(line);
    }
}

/// What to change for the denied flows: which rule to add to which isolating policy, naming the
/// peers by the labels a selector can match, then the commands that show those policies.
fn policy_fix(ev: &Evidence, live: &[&EndpointFacts], src_ns: &str) -> Vec<String> {
    let src = source_pod(ev);
    let mut advice = Vec::new();
    let mut policies = Vec::new();
    for e in live {
        if matches!(e.tcp, Fact::Known(TcpOutcome::Connected { .. })) {
            continue;
        }
        let PolicyCheck::Denied { egress, ingress } = &e.policy else {
            continue;
        };
        if let Some(side) = ingress {
            let from = src.map(peer_phrase).unwrap_or_else(|| ev.from.clone());
            let to = match &e.pod {
                Some(pod) => subject_phrase(pod),
                None => e.label(),
            };
            push_unique(
                &mut advice,
                format!(
                    "allow ingress from {from} to port {}/{} in {}, or add a NetworkPolicy selecting {to} that allows it",
                    side.port,
                    side.protocol,
                    policies_phrase(&side.policies)
                ),
            );
            policies.extend(side.policies.iter().cloned());
        }
        if let Some(side) = egress {
            let to = match &e.pod {
                Some(pod) => peer_phrase(pod),
                None => match e.ip {
                    IpAddr::V4(ip) => format!("ipBlock {ip}/32"),
                    IpAddr::V6(ip) => format!("ipBlock {ip}/128"),
                },
            };
            let subject = src.map(subject_phrase).unwrap_or_else(|| ev.from.clone());
            push_unique(
                &mut advice,
                format!(
                    "allow egress to {to} on port {}/{} in {}, or add a NetworkPolicy selecting {subject} that allows it",
                    side.port,
                    side.protocol,
                    policies_phrase(&side.policies)
                ),
            );
            policies.extend(side.policies.iter().cloned());
        }
    }
    advice.extend(policy_get_lines(&policies, src_ns));
    advice
}

/// What to change when policy blocks the source's DNS queries: egress to the cluster DNS pods
/// on port 53 (UDP and TCP) in the isolating policies, then the commands that show them.
fn dns_policy_fix(ev: &Evidence, src_ns: &str) -> Vec<String> {
    let src = source_pod(ev);
    let pods = ev
        .dns
        .as_ref()
        .and_then(|d| d.cluster_dns.known())
        .map(|c| c.pods.as_slice())
        .unwrap_or_default();
    let mut advice = Vec::new();
    let mut policies = Vec::new();
    for pod in pods {
        let PolicyCheck::Denied { egress, ingress } = &pod.egress_policy else {
            continue;
        };
        if let Some(side) = egress {
            let subject = src.map(subject_phrase).unwrap_or_else(|| ev.from.clone());
            push_unique(
                &mut advice,
                format!(
                    "allow egress to pods with k8s-app=kube-dns in namespace kube-system on port 53/UDP and 53/TCP in {}, or add a NetworkPolicy selecting {subject} that allows it",
                    policies_phrase(&side.policies)
                ),
            );
            policies.extend(side.policies.iter().cloned());
        }
        if let Some(side) = ingress {
            let from = src.map(peer_phrase).unwrap_or_else(|| ev.from.clone());
            push_unique(
                &mut advice,
                format!(
                    "allow ingress from {from} to port 53/UDP and 53/TCP in {}, or add a NetworkPolicy selecting k8s-app=kube-dns in namespace kube-system that allows it",
                    policies_phrase(&side.policies)
                ),
            );
            policies.extend(side.policies.iter().cloned());
        }
    }
    advice.extend(policy_get_lines(&policies, src_ns));
    advice
}

// ---------------------------------------------------------------- pod-network

fn judge_pod_network(ev: &Evidence) -> Judgment {
    if let Some(svc) = service(ev)
        && let Some(host) = &svc.external_name
    {
        // The name resolving proves nothing about reaching the host behind it: say so rather
        // than call it reachable, and give the check that does probe it.
        let port = svc
            .requested_port()
            .map(|p| p.port.to_string())
            .unwrap_or_else(|| svc.requested.to_string());
        let host = host.trim_end_matches('.');
        return undetermined(
            format!(
                "{} is an ExternalName for {host}, outside the cluster's Services: this check does not connect to it",
                svc.key()
            ),
            vec![],
            vec![format!(
                "kubectl netdiag check --from {} --to {host}:{port}",
                ev.from
            )],
        );
    }
    let live = live_endpoints(ev);
    if live.is_empty() {
        return not_applicable("not applicable: no destination address");
    }
    let src_node = source_node(ev);
    let mut failing = vec![];
    let mut ok = vec![];
    let mut unknown = vec![];
    for e in &live {
        let place = match (e.node(), src_node) {
            (Some(n), Some(s)) if n == s => format!("same node {n}"),
            (Some(n), _) => format!("node {n}"),
            _ => "outside the cluster's pods".into(),
        };
        match &e.tcp {
            Fact::Known(o) if is_blocked(o) => failing.push((e, place, describe_tcp(o))),
            Fact::Known(TcpOutcome::Error { detail }) => {
                unknown.push(format!("{}: probe error: {detail}", e.label()))
            }
            Fact::Known(o) => ok.push(format!("{} [{place}]: {}", e.label(), describe_tcp(o))),
            Fact::Unknown(reason) => unknown.push(format!("{}: not probed ({reason})", e.label())),
        }
    }
    if !failing.is_empty() {
        let mut evidence: Vec<String> = failing
            .iter()
            .map(|(e, place, what)| format!("TCP to {} [{place}] {what} from {}'s netns", e.label(), ev.from))
            .collect();
        evidence.extend(ok.iter().map(|o| format!("TCP to {o}")));
        let cross: Vec<&str> = failing
            .iter()
            .filter_map(|(e, _, _)| e.node())
            .filter(|n| Some(*n) != src_node)
            .collect();
        let all_cross = cross.len() == failing.len();
        let count = if live.len() > 1 {
            format!(" ({}/{} endpoints)", failing.len(), live.len())
        } else {
            String::new()
        };
        let summary = match (src_node, all_cross) {
            (Some(src), true) => {
                let mut nodes: Vec<&str> = cross.clone();
                nodes.sort();
                nodes.dedup();
                let same_ok = !ok.is_empty();
                format!(
                    "TCP from {src} to pods on {} fails ({}){count} {}: the cross-node pod network path is broken",
                    nodes.join(", "),
                    failing[0].2,
                    if same_ok {
                        "while same-node endpoints connect"
                    } else {
                        "and NetworkPolicy allows it"
                    }
                )
            }
            _ => format!(
                "TCP to {} [{}] {} although NetworkPolicy allows it{count}",
                failing[0].0.label(),
                failing[0].1,
                failing[0].2
            ),
        };
        return fail(
            summary,
            evidence,
            vec![
                "kubectl get nodes -o wide".into(),
                "kubectl -n kube-system get pods -o wide   # CNI pods on the affected nodes".into(),
            ],
        );
    }
    if !unknown.is_empty() {
        let summary = format!("the pod network could not be probed: {}", unknown[0]);
        return undetermined(summary, unknown, vec![]);
    }
    pass(
        format!(
            "{}/{} destination addresses answer from {}'s netns",
            ok.len(),
            live.len(),
            ev.from
        ),
        ok,
    )
}

// ---------------------------------------------------------------- service-proxy

fn judge_service_proxy(ev: &Evidence) -> Judgment {
    let Some(cip) = &ev.cluster_ip else {
        return not_applicable(match (ev.destination, service(ev)) {
            (Destination::Service, Some(s)) if s.headless => {
                "not applicable: headless Service (no virtual IP)"
            }
            (Destination::Service, _) => "not applicable: the Service has no ClusterIP",
            _ => "not applicable: no Service virtual IP on the path",
        });
    };
    let vip = format!("{}:{}", fmt_ip(cip.ip), cip.port);
    let outcome = match &cip.tcp {
        Fact::Known(o) => o,
        Fact::Unknown(reason) => {
            return undetermined(
                format!("ClusterIP {vip} was not probed: {reason}"),
                vec![],
                vec![],
            );
        }
    };
    let live = live_endpoints(ev);
    let any_connected = live
        .iter()
        .any(|e| matches!(e.tcp, Fact::Known(TcpOutcome::Connected { .. })));
    let all_refused = !live.is_empty()
        && live
            .iter()
            .all(|e| matches!(e.tcp, Fact::Known(TcpOutcome::Refused { .. })));
    let node = source_node(ev).unwrap_or("the source node");
    let proxy_fix = vec![
        format!(
            "kubectl -n kube-system get pods -l k8s-app=kube-proxy -o wide --field-selector spec.nodeName={node}"
        ),
        "kubectl -n kube-system logs -l k8s-app=kube-proxy --tail=50".into(),
    ];
    let evidence = vec![format!("TCP to ClusterIP {vip}: {}", describe_tcp(outcome))];
    match outcome {
        TcpOutcome::Connected { .. } => pass(format!("ClusterIP {vip} {}", describe_tcp(outcome)), vec![]),
        TcpOutcome::Refused { .. } if all_refused => pass(
            format!("ClusterIP {vip} refused, as its endpoints do (judged at application)"),
            evidence,
        ),
        TcpOutcome::Refused { .. } if any_connected => fail(
            format!(
                "ClusterIP {vip} is refused while the pod IPs connect: the Service rules on {node} act as if it had no endpoints (stale)"
            ),
            evidence,
            proxy_fix,
        ),
        TcpOutcome::Error { detail } => {
            undetermined(format!("ClusterIP {vip}: probe error: {detail}"), vec![], vec![])
        }
        _ if any_connected || all_refused => fail(
            format!(
                "ClusterIP {vip} {} while the pod IPs answer: the Service's rules are missing on {node} (kube-proxy/dataplane)",
                describe_tcp(outcome)
            ),
            evidence,
            proxy_fix,
        ),
        _ => undetermined(
            format!(
                "ClusterIP {vip} {} and no endpoint answered to compare with",
                describe_tcp(outcome)
            ),
            evidence,
            vec![],
        ),
    }
}

// ---------------------------------------------------------------- application

fn listener_summary(e: &EndpointFacts, port: u16) -> String {
    let sockets = match &e.listeners {
        Fact::Known(s) => s,
        Fact::Unknown(reason) => return format!("its listening sockets are unknown ({reason})"),
    };
    let tcp: Vec<_> = sockets.iter().filter(|s| s.protocol == Transport::Tcp).collect();
    let on_port: Vec<_> = tcp.iter().filter(|s| s.local_port == port).collect();
    if !on_port.is_empty() && on_port.iter().all(|s| s.local_ip.is_loopback()) {
        let ip: IpAddr = on_port[0].local_ip;
        return format!("it listens on {}:{port} only, not on its pod IP", fmt_ip(ip));
    }
    if on_port.is_empty() {
        let mut others: Vec<String> = tcp
            .iter()
            .map(|s| format!("{}:{}", fmt_ip(s.local_ip), s.local_port))
            .collect();
        others.sort();
        others.dedup();
        return if others.is_empty() {
            format!("nothing in the pod listens on any TCP port (wanted {port})")
        } else {
            format!(
                "nothing in the pod listens on {port}; it listens on {}",
                others.join(", ")
            )
        };
    }
    format!(
        "yet it listens on {port}: a reset from the path (a REJECT rule) or a full accept queue, not a missing listener"
    )
}

fn judge_application(ev: &Evidence) -> Judgment {
    if is_external_name(ev) {
        return not_applicable("not applicable: an ExternalName Service");
    }
    let live = live_endpoints(ev);
    if live.is_empty() {
        return not_applicable("not applicable: no destination address");
    }
    let mut refused = vec![];
    let mut fix = vec![];
    let mut connected = 0;
    let mut unknown = vec![];
    for e in &live {
        let port = e.port.unwrap_or_default();
        match &e.tcp {
            Fact::Known(TcpOutcome::Connected { .. }) => connected += 1,
            Fact::Known(TcpOutcome::Refused { .. }) => {
                refused.push((e.label(), listener_summary(e, port)));
                if let Some(pod) = &e.pod {
                    fix.push(format!("kubectl -n {} logs {}", pod.namespace, pod.name));
                    fix.push(format!("kubectl -n {} describe pod {}", pod.namespace, pod.name));
                }
            }
            Fact::Known(o) => unknown.push(format!("{}: {}", e.label(), describe_tcp(o))),
            Fact::Unknown(reason) => unknown.push(format!("{}: not probed ({reason})", e.label())),
        }
    }
    if let Some((label, why)) = refused.first() {
        let count = if live.len() > 1 {
            format!(" ({}/{} endpoints refuse)", refused.len(), live.len())
        } else {
            String::new()
        };
        let evidence = refused
            .iter()
            .map(|(l, w)| format!("TCP to {l} refused; {w}"))
            .collect();
        if why.contains("127.0.0.1") || why.contains("[::1]") {
            fix.insert(
                0,
                "make the application listen on 0.0.0.0 (all addresses), not 127.0.0.1".into(),
            );
        }
        return fail(
            format!("{label} refuses the connection: {why}{count}"),
            evidence,
            fix,
        );
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
#[path = "judge_tests.rs"]
mod tests;
