//! The `dns` layer: the name resolves from the pod as its libc would, to the expected address.

use std::net::IpAddr;

use netdiag_proto::{DnsOutcome, DnsResult};

use super::*;

/// The pod's DNS queries time out because NetworkPolicy denies them.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct DnsBlocked {
    /// The family the queries travel in, when the DNS pods also have addresses of the other
    /// family (whose flows the policy may allow: an ipBlock admits only its own family).
    pub family: Option<IpFamily>,
    /// The denying sides, one per distinct explanation.
    pub reasons: DnsDenials,
}

/// The DNS pods the pod's queries can reach: those of the families of its resolv.conf
/// nameservers (a query to an IPv6 Service IP reaches the DNS pods' IPv6 addresses only); every
/// DNS pod when the resolv.conf names no nameserver.
pub(super) fn queried_dns_pods<'a>(cluster: &'a ClusterDnsFacts, result: &DnsResult) -> Vec<&'a DnsPodFacts> {
    let families: Vec<IpFamily> = result
        .resolv_conf
        .nameservers
        .iter()
        .map(|s| IpFamily::of(s.ip()))
        .collect();
    cluster
        .pods
        .iter()
        .filter(|p| families.is_empty() || families.contains(&IpFamily::of(p.ip)))
        .collect()
}

/// When DNS timed out and NetworkPolicy denies the source's egress to every DNS pod it queries
/// (on 53/UDP, in the queries' address family), the failing layer is network-policy, not dns.
pub(super) fn dns_blocked_by_policy(ev: &Evidence) -> Option<DnsBlocked> {
    let dns = ev.dns.as_ref()?;
    let result = dns.result.known()?;
    if !matches!(result.answer.outcome, DnsOutcome::Timeout) {
        return None;
    }
    let cluster = dns.cluster_dns.known()?;
    let queried = queried_dns_pods(cluster, result);
    if queried.is_empty() {
        return None;
    }
    let mut reasons: Vec<DeniedSide> = Vec::new();
    for pod in &queried {
        match &pod.egress_policy {
            PolicyCheck::Denied {
                egress: Some(side), ..
            }
            | PolicyCheck::Denied {
                ingress: Some(side), ..
            } => reasons.push(DeniedSide::clone(side)),
            _ => return None,
        }
    }
    reasons.dedup_by(|a, b| a.same_reason(b));
    let family = IpFamily::of(queried[0].ip);
    let other_family = cluster.pods.iter().any(|p| IpFamily::of(p.ip) != family);
    let one_family = queried.iter().all(|p| IpFamily::of(p.ip) == family);
    Some(DnsBlocked {
        family: (one_family && other_family).then_some(family),
        reasons: DnsDenials(reasons),
    })
}

pub(super) fn dns_evidence(result: &DnsResult) -> Vec<String> {
    let rc = &result.resolv_conf;
    let servers = NonEmpty::from_vec(rc.nameservers.iter().map(ToString::to_string).collect());
    let search = NonEmpty::from_vec(rc.search.clone());
    let mut evidence = vec![format!(
        "resolv.conf {}: {}, {}, ndots {}",
        rc.path,
        servers.map_or("no nameserver".into(), |s| format!("nameserver {}", s.spaced())),
        search.map_or("no search list".into(), |s| format!("search {}", s.spaced())),
        rc.ndots
    )];
    for c in &result.candidates {
        evidence.push(format!(
            "{} @{} → {} ({}{})",
            c.name,
            c.server,
            describe_dns(&c.outcome),
            fmt_us(c.rtt_us),
            if c.truncated {
                ", truncated over UDP, asked again over TCP"
            } else {
                ""
            }
        ));
    }
    evidence
}

pub(super) fn judge_dns(cx: &Context) -> Judgment {
    let Some(dns) = &cx.dns else {
        return not_applicable(DnsFinding::NotApplicable {
            destination: cx.destination,
        });
    };
    let result = match &dns.result {
        Fact::Known(result) => result,
        Fact::Unknown(reason) => {
            return undetermined(
                DnsFinding::ProbeFailed {
                    name: dns.name.clone(),
                    reason: reason.clone(),
                },
                vec![],
                vec![],
            );
        }
    };
    let evidence = dns_evidence(result);
    match effective_outcome(dns, result) {
        DnsOutcome::Resolved { addresses, .. } => resolved(dns, result, addresses, evidence),
        outcome @ (DnsOutcome::Nxdomain | DnsOutcome::Nodata) => {
            name_not_found(cx, dns, result, outcome, evidence)
        }
        failure => judge_dns_failure(cx, dns, result, failure, evidence),
    }
}

/// The outcome that decides. The cluster's own answers do: when every candidate under the cluster
/// domain is NXDOMAIN and nothing resolved, the name does not exist in the cluster, whatever the
/// upstream said about names outside it (REFUSED, SERVFAIL, ...). For a name that designates
/// nothing in the cluster (`example.com`), the search list's NXDOMAINs are expected and the
/// name's own answer decides.
fn effective_outcome<'a>(dns: &DnsFacts, result: &'a DnsResult) -> &'a DnsOutcome {
    if is_outside_cluster(dns) {
        return &result.answer.outcome;
    }
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
    if cluster_nxdomain && !matches!(result.answer.outcome, DnsOutcome::Nodata) {
        &DnsOutcome::Nxdomain
    } else {
        &result.answer.outcome
    }
}

/// The name resolved: it passes unless the answer is not the Service's address.
fn resolved(dns: &DnsFacts, result: &DnsResult, addresses: &[IpAddr], evidence: Vec<String>) -> Judgment {
    let name = &dns.name;
    if !dns.expected.is_empty() && !addresses.iter().any(|a| dns.expected.contains(a)) {
        let expected: Vec<String> = dns.expected.iter().map(ToString::to_string).collect();
        return fail(
            DnsFinding::WrongAddress {
                name: name.clone(),
                addresses: addresses.to_vec(),
                expected: dns.expected.clone(),
            },
            evidence,
            cmds(vec![format!(
                "kubectl get svc -A -o wide | grep -e {}",
                expected.join(" -e ")
            )]),
        );
    }
    let via = result
        .candidates
        .iter()
        .position(|c| c.outcome.is_resolved())
        .map(|position| {
            let c = &result.candidates[position];
            Via {
                position,
                candidate: c.name.clone(),
                rtt_us: c.rtt_us,
                server: c.server.ip(),
                cnames: c.cnames.clone(),
            }
        });
    if let Some(partial) = some_servers_fail(dns, result, &result.answer.outcome, evidence.clone()) {
        return partial;
    }
    pass(
        DnsFinding::Resolved {
            name: name.clone(),
            addresses: addresses.to_vec(),
            via,
        },
        evidence,
    )
}

/// Some ready DNS pods (of the queries' family, not denied by policy) fail the query asked of
/// them directly while others answer: a share of every pod's lookups fails, whichever pod this
/// one reached, so the verdict does not depend on it.
fn some_servers_fail(
    dns: &DnsFacts,
    result: &DnsResult,
    outcome: &DnsOutcome,
    mut evidence: Vec<String>,
) -> Option<Judgment> {
    let Fact::Known(cluster) = &dns.cluster_dns else {
        return None;
    };
    let ready: Vec<&DnsPodFacts> = queried_dns_pods(cluster, result)
        .into_iter()
        .filter(|p| p.ready && !matches!(p.egress_policy, PolicyCheck::Denied { .. }))
        .collect();
    let answers = |o: &DnsOutcome| {
        matches!(
            o,
            DnsOutcome::Resolved { .. } | DnsOutcome::Nxdomain | DnsOutcome::Nodata
        )
    };
    let failing: Vec<ServerFailure> = ready
        .iter()
        .filter_map(|p| {
            let direct = p.direct.known()?;
            (!answers(direct)).then(|| ServerFailure {
                server: p.label(),
                ip: p.ip,
                outcome: direct.clone(),
            })
        })
        .collect();
    let answered = ready
        .iter()
        .filter(|p| p.direct.known().is_some_and(answers))
        .count();
    if answered == 0 {
        return None;
    }
    let failing = NonEmpty::from_vec(failing)?;
    direct_answers(&ready, &mut evidence);
    let fix: Vec<FixLine> = failing
        .iter()
        .filter_map(|f| f.server.split_once('/'))
        .flat_map(|(ns, pod)| {
            [
                cmd(format!("kubectl -n {ns} logs {pod} --tail=50")),
                cmd(format!("kubectl -n {ns} describe pod {pod}")),
            ]
        })
        .collect();
    let finding = DnsFinding::SomeServersFail {
        name: dns.name.clone(),
        outcome: outcome.clone(),
        failing,
        servers: ready.len(),
    };
    Some(fail(finding, evidence, fix))
}

/// NXDOMAIN or NODATA: which Service was meant, and why the name did not reach it.
fn name_not_found(
    cx: &Context,
    dns: &DnsFacts,
    result: &DnsResult,
    outcome: &DnsOutcome,
    mut evidence: Vec<String>,
) -> Judgment {
    let name = dns.name.clone();
    if let Some(guess) = &dns.service_guess
        && dns.names_in_namespace.contains(&guess.name)
    {
        return nxdomain_for_existing_service(cx, dns, result, guess, outcome, evidence);
    }
    let outcome = outcome.clone();
    let mut fix = vec![];
    let finding = match &dns.service_guess {
        Some(service) => {
            let (ns, svc) = (&service.namespace, &service.name);
            fix.push(cmd(format!("kubectl get svc -n {ns}")));
            let source_ns = cx.source_pod.map(|p| p.namespace.as_str());
            let elsewhere = NonEmpty::from_vec(dns.same_name_elsewhere.clone());
            match elsewhere {
                Some(services) if source_ns == Some(ns.as_str()) => {
                    // Every namespace that has the Service: the tool cannot know which one was meant.
                    for other in services.iter() {
                        let other_ns = &other.namespace;
                        evidence.push(format!(
                            "Service {other} exists; a short name only resolves within its own namespace"
                        ));
                        fix.push(hint(format!(
                            "use {svc}.{other_ns} (or {svc}.{other_ns}.svc.cluster.local) from namespace {ns}"
                        )));
                    }
                    DnsFinding::ShortNameAcrossNamespaces {
                        name,
                        outcome,
                        namespace: ns.clone(),
                        services,
                    }
                }
                _ => {
                    let close = closest(svc, &dns.names_in_namespace);
                    if let Some(close) = close {
                        evidence.push(format!(
                            "Services in namespace {ns}: {}",
                            dns.names_in_namespace.join(", ")
                        ));
                        fix.push(hint(format!("did you mean {close}? use {close}.{ns}")));
                    }
                    DnsFinding::NoSuchService {
                        name,
                        outcome,
                        service: service.clone(),
                        did_you_mean: close.map(str::to_string),
                    }
                }
            }
        }
        None => DnsFinding::NameNotFound { name, outcome },
    };
    fail(finding, evidence, fix)
}

/// The cluster DNS Service IP, when the pod's resolv.conf names nameservers and none is it.
pub(super) fn resolver_off_cluster(cluster: &ClusterDnsFacts, result: &DnsResult) -> Option<IpAddr> {
    let vip = cluster.service_ip?;
    let servers = &result.resolv_conf.nameservers;
    let cluster_resolver = |ip: IpAddr| ip == vip || is_node_local_cache(ip);
    (!servers.is_empty() && !servers.iter().any(|s| cluster_resolver(s.ip()))).then_some(vip)
}

/// NodeLocal DNSCache's address, as the project and every distribution that ships it (GKE, the
/// EKS add-on, kops, kubespray) configure it: the cache on each node listens there and kubelet's
/// `--cluster-dns` names it. Other link-local resolvers (a cloud's VPC resolver) are off-cluster.
pub(super) const NODE_LOCAL_CACHE: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(169, 254, 20, 10));

pub(super) fn is_node_local_cache(ip: IpAddr) -> bool {
    ip == NODE_LOCAL_CACHE
}

/// The lookup failed and the pod asks only a NodeLocal DNSCache, while a DNS pod answers when
/// asked directly: the cache on the source's node is what fails.
fn node_local_cache_down(
    cx: &Context,
    result: &DnsResult,
    failure: &DnsOutcome,
    answered: usize,
) -> Option<DnsFinding> {
    let servers = &result.resolv_conf.nameservers;
    let cache = servers.first()?.ip();
    let failed = matches!(
        failure,
        DnsOutcome::Timeout | DnsOutcome::Error { .. } | DnsOutcome::Refused
    );
    (failed && answered > 0 && servers.iter().all(|s| is_node_local_cache(s.ip()))).then(|| {
        DnsFinding::NodeLocalCacheDown {
            name: result.name.clone(),
            outcome: failure.clone(),
            cache,
            node: cx.source_node().map(str::to_string),
        }
    })
}

pub(super) fn dns_policy_command(cx: &Context) -> String {
    let (ns, pod) = (&cx.from.namespace, &cx.from.name);
    format!("kubectl -n {ns} get pod {pod} -o jsonpath='{{.spec.dnsPolicy}} {{.spec.dnsConfig}}'")
}

/// NXDOMAIN for a name whose Service does exist: the pod's resolver or the DNS server is at fault,
/// never the Service.
pub(super) fn nxdomain_for_existing_service(
    cx: &Context,
    dns: &DnsFacts,
    result: &DnsResult,
    service: &NamespacedName,
    outcome: &DnsOutcome,
    evidence: Vec<String>,
) -> Judgment {
    let (name, outcome) = (dns.name.clone(), outcome.clone());
    let (ns, svc) = (&service.namespace, &service.name);
    let fqdn = format!("{svc}.{ns}.svc.{CLUSTER_DOMAIN}.");
    if let Some(vip) = dns
        .cluster_dns
        .known()
        .and_then(|c| resolver_off_cluster(c, result))
    {
        return fail(
            DnsFinding::ResolverOffCluster {
                name,
                outcome,
                existing: Some(service.clone()),
                dns_service_ip: vip,
            },
            evidence,
            vec![cmd(dns_policy_command(cx))],
        );
    }
    if !result
        .candidates
        .iter()
        .any(|c| c.name.eq_ignore_ascii_case(&fqdn))
    {
        let fix = vec![
            cmd(dns_policy_command(cx)),
            hint(format!("use {fqdn} from {}", cx.from)),
        ];
        return fail(
            DnsFinding::SearchListIncomplete {
                name,
                outcome,
                service: service.clone(),
                fqdn,
                search: NonEmpty::from_vec(result.resolv_conf.search.clone()),
            },
            evidence,
            fix,
        );
    }
    fail(
        DnsFinding::ClusterZoneNotServed {
            outcome,
            fqdn,
            service: service.clone(),
        },
        evidence,
        vec![
            cmd("kubectl -n kube-system logs -l k8s-app=kube-dns --tail=50"),
            cmd("kubectl -n kube-system get configmap coredns -o yaml"),
        ],
    )
}

/// Timeout, SERVFAIL, REFUSED or an error: explain it from the cluster DNS facts.
pub(super) fn judge_dns_failure(
    cx: &Context,
    dns: &DnsFacts,
    result: &DnsResult,
    failure: &DnsOutcome,
    mut evidence: Vec<String>,
) -> Judgment {
    let (name, outcome) = (dns.name.clone(), failure.clone());
    if let Some(blocked) = &cx.dns_blocked {
        return not_applicable(DnsFinding::BlockedByPolicy {
            name,
            outcome,
            denials: blocked.reasons.clone(),
        });
    }
    if let Some(truncated) = tcp_fallback_failed(result) {
        let finding = DnsFinding::TcpFallbackFailed {
            name,
            server: truncated.server,
            outcome: truncated.outcome.clone(),
        };
        let fix = vec![
            hint(
                "let the pods reach cluster DNS over TCP/53 as well as UDP/53 (NetworkPolicy egress rules and node firewalls): answers over 512 bytes come only over TCP",
            ),
            cmd(format!(
                "kubectl -n {} get networkpolicy -o yaml",
                cx.from.namespace
            )),
        ];
        return fail(finding, evidence, fix);
    }
    let fix = vec![
        cmd("kubectl -n kube-system get pods -l k8s-app=kube-dns -o wide"),
        cmd("kubectl -n kube-system get endpointslices -l kubernetes.io/service-name=kube-dns"),
    ];
    let cluster = match &dns.cluster_dns {
        Fact::Known(cluster) => cluster,
        Fact::Unknown(reason) => {
            evidence.push(format!("cluster DNS could not be inspected: {reason}"));
            let from = cx.from.clone();
            return fail(DnsFinding::Failed { name, outcome, from }, evidence, fix);
        }
    };
    if let Some(vip) = resolver_off_cluster(cluster, result) {
        return fail(
            DnsFinding::ResolverOffCluster {
                name,
                outcome,
                existing: None,
                dns_service_ip: vip,
            },
            evidence,
            vec![cmd(dns_policy_command(cx))],
        );
    }
    // Only the DNS pods of the queries' family say whether the queries could be answered.
    let ready: Vec<&DnsPodFacts> = queried_dns_pods(cluster, result)
        .into_iter()
        .filter(|p| p.ready)
        .collect();
    if ready.is_empty() {
        evidence.push(format!(
            "kube-dns endpoints: {} listed, none ready",
            cluster.pods.len()
        ));
        return fail(DnsFinding::NoReadyPods { name, outcome }, evidence, fix);
    }
    if let Some(partial) = some_servers_fail(dns, result, failure, evidence.clone()) {
        return partial;
    }
    let answered = direct_answers(&ready, &mut evidence);
    if let Some(finding) = node_local_cache_down(cx, result, failure, answered) {
        let fix = vec![
            cmd("kubectl -n kube-system get pods -l k8s-app=node-local-dns -o wide"),
            cmd("kubectl -n kube-system logs -l k8s-app=node-local-dns --tail=50"),
        ];
        return fail(finding, evidence, fix);
    }
    let unevaluated: Vec<String> = ready
        .iter()
        .filter_map(|p| match &p.egress_policy {
            PolicyCheck::NotEvaluated(reason) => Some(format!("{}: {reason}", p.label())),
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
            DnsFinding::PolicyNotEvaluated { name, outcome },
            evidence,
            can_i_fix(
                ready.iter().filter_map(|p| match &p.egress_policy {
                    PolicyCheck::NotEvaluated(reason) => Some(reason),
                    _ => None,
                }),
                "kubectl auth can-i list networkpolicies -A",
            ),
        );
    }
    let upstream_silent = matches!(outcome, DnsOutcome::Timeout) && server_answered_others(result);
    if is_outside_cluster(dns)
        && (matches!(outcome, DnsOutcome::Servfail | DnsOutcome::Refused) || upstream_silent)
    {
        let fix = vec![
            cmd("kubectl -n kube-system get configmap coredns -o yaml"),
            cmd("kubectl -n kube-system logs -l k8s-app=kube-dns --tail=50"),
        ];
        return fail(DnsFinding::UpstreamFailed { name, outcome }, evidence, fix);
    }
    fail(
        failure_finding(cx, name, outcome, answered, &ready),
        evidence,
        fix,
    )
}

/// Whether the server the failing query went to answered other queries of the same lookup (the
/// search list's candidates): it is up and reachable, so what it did not answer in time is what
/// it forwards.
fn server_answered_others(result: &DnsResult) -> bool {
    let Some(failed) = result
        .candidates
        .iter()
        .rev()
        .find(|c| matches!(c.outcome, DnsOutcome::Timeout))
    else {
        return false;
    };
    result.candidates.iter().any(|c| {
        c.server == failed.server
            && matches!(
                c.outcome,
                DnsOutcome::Resolved { .. } | DnsOutcome::Nxdomain | DnsOutcome::Nodata
            )
    })
}

/// A name the API ties to no Service and that is not under the cluster's domain: the cluster DNS
/// hands it to its upstream resolvers.
fn is_outside_cluster(dns: &DnsFacts) -> bool {
    let name = dns.name.trim_end_matches('.');
    dns.service_guess.is_none() && name != CLUSTER_DOMAIN && !name.ends_with(&format!(".{CLUSTER_DOMAIN}"))
}

/// The query whose answer came truncated over UDP and whose retry over TCP failed, if one did:
/// the name exists, but its answer is too large for UDP and TCP/53 does not get through.
fn tcp_fallback_failed(result: &DnsResult) -> Option<&netdiag_proto::DnsCandidate> {
    result.candidates.iter().find(|c| {
        c.truncated
            && !matches!(
                c.outcome,
                DnsOutcome::Resolved { .. } | DnsOutcome::Nxdomain | DnsOutcome::Nodata
            )
    })
}

/// Puts each ready DNS pod's direct answer into `evidence`; returns how many answered the name
/// (resolved, NXDOMAIN or NODATA).
pub(super) fn direct_answers(ready: &[&DnsPodFacts], evidence: &mut Vec<String>) -> usize {
    let mut answered = 0;
    for pod in ready {
        match &pod.direct {
            Fact::Known(outcome) => {
                evidence.push(format!(
                    "direct query to DNS pod {} ({}): {}",
                    pod.label(),
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
            Fact::Unknown(reason) => evidence.push(format!(
                "direct query to DNS pod {}: not run ({reason})",
                pod.label()
            )),
        }
    }
    answered
}

/// What a failed lookup says, given how the DNS pods answered directly.
fn failure_finding(
    cx: &Context,
    name: String,
    outcome: DnsOutcome,
    answered: usize,
    ready: &[&DnsPodFacts],
) -> DnsFinding {
    match outcome {
        DnsOutcome::Servfail => DnsFinding::Servfail { name },
        // An rcode is an answer: the Service IP reached a server, which declined the name.
        DnsOutcome::Refused => DnsFinding::Refused { name },
        _ if answered > 0 => DnsFinding::ServiceIpNotProxied { name, outcome },
        _ if ready.iter().all(|p| p.direct.known().is_some()) => DnsFinding::ServerDown { name, outcome },
        _ => DnsFinding::Failed {
            name,
            outcome,
            from: cx.from.clone(),
        },
    }
}

#[cfg(test)]
#[path = "dns_tests.rs"]
mod tests;
