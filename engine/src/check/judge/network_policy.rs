//! The `network-policy` layer: egress of the source and ingress of the destination allow the flow.

use std::net::IpAddr;

use netdiag_proto::{TcpOutcome, Transport, UdpOutcome};

use super::outcomes::{Certainty, not_delivered, outcome, udp_reading};
use super::*;
use crate::check::report::EvidenceLine;
use crate::cluster::endpoints::TrafficPolicy;
use crate::policy::PolicyRef;

pub(super) fn judge_policy(cx: &Context) -> Judgment {
    let src_ns = cx.source_pod.map(|p| p.namespace.clone()).unwrap_or_default();
    if let Some(blocked) = &cx.dns_blocked {
        return dns_denied(cx, blocked, &src_ns);
    }
    // An ExternalName Service is judged on the address its host resolved to, once it did.
    if cx.is_external_name() && cx.live.is_empty() {
        return not_applicable(NetworkPolicyFinding::NotApplicable(NoDestination::ExternalName));
    }
    let live = &cx.live;
    if live.is_empty() {
        return not_applicable(NetworkPolicyFinding::NotApplicable(NoDestination::NoAddress));
    }
    let mut judgment = match cx.transport {
        Transport::Tcp => tcp_policy(cx, &src_ns),
        Transport::Udp => udp_policy(cx, &src_ns),
    };
    if judgment.status != Status::Skip {
        judgment
            .evidence
            .extend(entered_path_lines(cx).into_iter().map(Into::into));
    }
    judgment
}

/// For a connection that entered by a node port or a LoadBalancer address, which addresses the
/// policies at each end were evaluated with, and why they are not the pods'.
fn entered_path_lines(cx: &Context) -> Vec<String> {
    let (Some(svc), Some(source)) = (cx.target_service, cx.source_pod) else {
        return vec![];
    };
    if svc.entry.is_none() {
        return vec![];
    }
    let path = EnteredPath::of(svc, source);
    let mut lines = vec![];
    if let Some((ip, port)) = path.egress_to {
        lines.push(format!(
            "{}'s egress is evaluated to {}:{port}: the node port's node translates it only once it arrives there",
            cx.from,
            fmt_ip(ip)
        ));
    }
    let local = svc.external_traffic_policy == TrafficPolicy::Local;
    lines.extend(match &path.masqueraded_by {
        Some((node, address)) => Some(format!(
            "externalTrafficPolicy: Cluster: kube-proxy on {node} masquerades the connection, so the endpoints' ingress is evaluated from {} (an endpoint on {node} sees its own node, which NetworkPolicy never blocks)",
            fmt_ip(*address)
        )),
        None => local.then(|| {
            format!(
                "externalTrafficPolicy: Local: kube-proxy keeps the pod's address, so the endpoints' ingress is evaluated from {}",
                cx.from
            )
        }),
    });
    lines
}

/// Over TCP: the policy evaluation, with what the connections met: each endpoint's own
/// probe, and the connection by the node port or LoadBalancer address the check entered by.
fn tcp_policy(cx: &Context, src_ns: &str) -> Judgment {
    let mut tally = Tally::of(cx);
    tally.extend(Tally::entered(cx));
    if !tally.denied.is_empty() {
        return flow_denied(cx, tally, src_ns);
    }
    if let Some(undetermined) = unevaluated_and_blocked(&tally, src_ns) {
        return undetermined;
    }
    not_denied(cx, tally)
}

fn dns_denied(cx: &Context, blocked: &DnsBlocked, src_ns: &str) -> Judgment {
    let mut evidence =
        vec!["DNS queries from the pod time out while the policy evaluation denies them".to_string()];
    if let Some(family) = blocked.family {
        evidence.push(format!(
            "the pod's resolv.conf sends its queries over {0}: NetworkPolicy denies egress to the DNS pods' {0} addresses, whatever it allows to their {1} ones (an ipBlock admits only addresses of its own family)",
            family.label(),
            family.other().label()
        ));
    }
    if let Some(dns) = cx.dns.as_ref()
        && let Fact::Known(result) = &dns.result
    {
        evidence.extend(dns_evidence(result));
        // What the DNS pods the queries go to said when asked directly, past the Service IP.
        if let Some(cluster) = dns.cluster_dns.known() {
            let queried: Vec<&DnsPodFacts> = queried_dns_pods(cluster, result)
                .into_iter()
                .filter(|p| p.ready)
                .collect();
            direct_answers(&queried, &mut evidence);
        }
    }
    let finding = NetworkPolicyFinding::DnsDenied {
        from: cx.from.clone(),
        family: blocked.family,
        denials: blocked.reasons.clone(),
    };
    fail(finding, evidence, dns_policy_fix(cx, src_ns))
}

/// The endpoints sorted by what policy says of their flow, as evidence lines.
struct Tally<'a> {
    /// Denied, and the connection did not succeed.
    denied: Vec<String>,
    /// Denied, yet the connection succeeded (policy not enforced).
    disagreements: Vec<String>,
    /// The first of those, as the finding names it.
    first_unenforced: Option<Unenforced>,
    unknown: Vec<(&'a EndpointFacts, ToolFailure)>,
    allowed: Vec<String>,
}

impl<'a> Tally<'a> {
    fn empty() -> Self {
        Tally {
            denied: vec![],
            disagreements: vec![],
            first_unenforced: None,
            unknown: vec![],
            allowed: vec![],
        }
    }

    /// Each live endpoint's flow, beside what its own probe met.
    fn of(cx: &Context<'a>) -> Self {
        let mut t = Tally::empty();
        for e in cx.live.iter().copied() {
            t.add(cx, e, &e.policy, e.live.tcp_outcome());
        }
        t
    }

    /// The flows entered by a node port or LoadBalancer address, beside what the one connection
    /// there met (it reached one of them); only their denials and disagreements count, the
    /// endpoints' own tally says the rest.
    fn entered(cx: &Context<'a>) -> Self {
        let mut t = Tally::empty();
        let Some(cip) = &cx.cluster_ip else { return t };
        for e in cx.live.iter().copied() {
            if let Some(policy @ PolicyCheck::Denied { .. }) = &e.entered_policy {
                t.add(cx, e, policy, cip.live.tcp_outcome());
            }
        }
        t
    }

    fn extend(&mut self, other: Tally<'a>) {
        self.denied.extend(other.denied);
        self.disagreements.extend(other.disagreements);
        self.first_unenforced = self.first_unenforced.take().or(other.first_unenforced);
        self.unknown.extend(other.unknown);
        self.allowed.extend(other.allowed);
    }

    /// One flow's verdict, beside the outcome of the connection that took it.
    fn add(
        &mut self,
        cx: &Context<'a>,
        e: &'a EndpointFacts,
        policy: &PolicyCheck,
        outcome: Option<&TcpOutcome>,
    ) {
        match policy {
            PolicyCheck::Denied { egress, ingress } => {
                let line = denied_line(e, egress, ingress);
                match outcome {
                    Some(TcpOutcome::Connected { .. }) => {
                        self.disagreements.push(line);
                        if self.first_unenforced.is_none() {
                            self.first_unenforced = unenforced(cx, e, egress, ingress);
                        }
                    }
                    Some(outcome) => self
                        .denied
                        .push(format!("{line} — TCP {}", describe_tcp(outcome))),
                    None => self.denied.push(line),
                }
            }
            PolicyCheck::NotEvaluated(reason) => self.unknown.push((e, reason.clone())),
            PolicyCheck::Allowed { detail } => self.allowed.push(format!("{}: {detail}", e.label())),
        }
    }
}

/// Denied flows got through: the layer passes (the live probe decides), naming the first flow,
/// what the cluster runs to enforce policy, and where to look.
fn not_enforced(
    cx: &Context,
    transport: Transport,
    flows: usize,
    first: Unenforced,
    mut evidence: Vec<EvidenceLine>,
) -> Judgment {
    let enforcement = match &cx.policy_enforcers {
        Some(Fact::Known(found)) => match NonEmpty::from_vec(found.clone()) {
            Some(found) => Enforcement::Runs(found),
            None => Enforcement::NoneFound,
        },
        Some(Fact::Unknown(failure)) => Enforcement::Unknown(failure.clone()),
        None => Enforcement::Unknown(ToolFailure::NotProbed("the DaemonSets were not read".into())),
    };
    let mut fix = vec![];
    let node = first.node.as_deref().unwrap_or("the pod's node");
    match &enforcement {
        Enforcement::Runs(found) => {
            evidence.push(format!("policy enforcers: {}", found.joined()).into());
            let enforcer = found.first();
            fix.push(cmd(format!(
                "kubectl -n {} get pods -o wide --field-selector spec.nodeName={node}",
                enforcer.daemonset.namespace
            )));
            fix.push(hint(format!(
                "{}'s pod on {node} should enforce the policy: its logs and its policy mode say why it does not",
                enforcer.name
            )));
        }
        Enforcement::NoneFound => {
            evidence.push(
                format!(
                    "policy enforcers: none of {} runs as a DaemonSet in this cluster",
                    crate::cluster::enforcers::known_names().join(", ")
                )
                .into(),
            );
            fix.push(hint(
                "install a NetworkPolicy enforcer, or turn on the CNI's policy mode: until then policies are stored, not applied"
                    .to_string(),
            ));
        }
        Enforcement::Unknown(failure) => {
            evidence.push(format!("policy enforcers: not known ({failure})").into());
        }
    }
    let finding = NetworkPolicyFinding::NotEnforced {
        transport,
        flows,
        first,
        enforcement,
    };
    found_with(finding, Status::Pass, evidence, fix)
}

/// The side of a denied flow that got through, with the node that should have enforced it: the
/// destination's for ingress (named first, as the summary does), the source's for egress.
fn unenforced(
    cx: &Context,
    e: &EndpointFacts,
    egress: &Option<Box<DeniedSide>>,
    ingress: &Option<Box<DeniedSide>>,
) -> Option<Unenforced> {
    let node_of = |pod: Option<&PodFacts>| pod.and_then(|p| p.node.clone());
    match (ingress, egress) {
        (Some(side), _) => Some(Unenforced {
            side: side.clone(),
            node: node_of(e.pod.as_ref()),
        }),
        (None, Some(side)) => Some(Unenforced {
            side: side.clone(),
            node: node_of(cx.source_pod),
        }),
        (None, None) => None,
    }
}

/// `shop/payments-0 (10.244.2.2:8080): ingress: … ; egress: …`, the sides that deny the flow.
pub(super) fn denied_line(
    e: &EndpointFacts,
    egress: &Option<Box<DeniedSide>>,
    ingress: &Option<Box<DeniedSide>>,
) -> String {
    let why: Vec<String> = [
        egress.as_ref().map(|w| format!("egress: {w}")),
        ingress.as_ref().map(|w| format!("ingress: {w}")),
    ]
    .into_iter()
    .flatten()
    .collect();
    format!("{}: {}", e.label(), why.join("; "))
}

/// The side that heads a denial: endpoint `e`'s ingress, else the source's egress.
fn denied_head(cx: &Context, e: Option<&EndpointFacts>) -> DeniedHead {
    match e.map(|e| (e, &e.policy)) {
        Some((
            e,
            PolicyCheck::Denied {
                ingress: Some(side), ..
            },
        )) => DeniedHead::Ingress {
            endpoint: e.label(),
            side: side.clone(),
        },
        Some((
            _,
            PolicyCheck::Denied {
                egress: Some(side), ..
            },
        )) => DeniedHead::Egress {
            from: cx.from.clone(),
            side: side.clone(),
        },
        _ => DeniedHead::Unnamed,
    }
}

/// Some flow is denied and its connection fails: the layer fails, headed by the first such
/// endpoint's denying side.
fn flow_denied(cx: &Context, tally: Tally, src_ns: &str) -> Judgment {
    let live = &cx.live;
    let first = live.iter().copied().find(|e| {
        e.policy.is_denied() && !matches!(e.live.tcp_outcome(), Some(TcpOutcome::Connected { .. }))
    });
    let finding = NetworkPolicyFinding::Denied {
        head: denied_head(cx, first),
        denied: tally.denied.len(),
        total: live.len(),
        certainty: None,
    };
    let mut evidence: Vec<EvidenceLine> = tally.denied.into_iter().map(Into::into).collect();
    evidence.extend(tally.disagreements.into_iter().map(disagreement));
    found_with(finding, Status::Fail, evidence, policy_fix(cx, live, src_ns))
}

/// Connections fail to endpoints whose policy could not be evaluated: policy cannot be ruled out.
fn unevaluated_and_blocked(tally: &Tally, src_ns: &str) -> Option<Judgment> {
    let blocked: Vec<String> = tally
        .unknown
        .iter()
        .filter(|(e, _)| e.live.tcp_outcome().is_some_and(is_blocked))
        .map(|(e, reason)| format!("{}: policy not evaluated ({reason})", e.label()))
        .collect();
    (!blocked.is_empty()).then(|| {
        let mut fix = can_i_fix(
            tally.unknown.iter().map(|(_, reason)| reason),
            "kubectl auth can-i list networkpolicies -A",
        );
        fix.push(cmd(format!("kubectl -n {src_ns} get networkpolicy")));
        undetermined(
            NetworkPolicyFinding::NotEvaluated {
                transport: Transport::Tcp,
            },
            blocked,
            fix,
        )
    })
}

/// Nothing denied fails: the layer passes, saying so when policy denies flows that still connect.
fn not_denied(cx: &Context, tally: Tally) -> Judgment {
    let mut evidence = tally.allowed;
    evidence.extend(
        tally
            .unknown
            .iter()
            .map(|(e, reason)| format!("{}: not evaluated ({reason})", e.label())),
    );
    if let Some(first) = tally.first_unenforced {
        let mut evidence: Vec<EvidenceLine> = evidence.into_iter().map(Into::into).collect();
        evidence.extend(tally.disagreements.iter().cloned().map(disagreement));
        return not_enforced(cx, Transport::Tcp, tally.disagreements.len(), first, evidence);
    }
    pass(
        NetworkPolicyFinding::Allowed {
            transport: Transport::Tcp,
            from: cx.from.clone(),
        },
        evidence,
    )
}

/// How a NetworkPolicy peer selector can name the pod: its `app` (or `app.kubernetes.io/name`)
/// label when it has one, else all its labels; `None` when it has no labels.
pub(super) fn pod_selector(pod: &PodFacts) -> Option<String> {
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
pub(super) fn peer_phrase(pod: &PodFacts) -> String {
    match pod_selector(pod) {
        Some(sel) => format!("pods with {sel} in namespace {}", pod.namespace),
        None => format!("pod {} (it has no labels to select it by)", pod.key()),
    }
}

/// The pod as the subject of a new policy: `app=payments in namespace shop`.
pub(super) fn subject_phrase(pod: &PodFacts) -> String {
    match pod_selector(pod) {
        Some(sel) => format!("{sel} in namespace {}", pod.namespace),
        None => format!("pod {} (it has no labels to select it by)", pod.key()),
    }
}

/// The advice for one denied side: allow `rule` in an isolating policy, or, when no
/// NetworkPolicy isolates the pod (a Baseline-tier rule denied it), add one that allows it.
pub(super) fn allow_hint(rule: &str, subject: &str, isolating: Option<&NonEmpty<PolicyRef>>) -> FixLine {
    match isolating {
        Some(policies) => hint(format!(
            "allow {rule} in {}, or add a NetworkPolicy selecting {subject} that allows it",
            policies.one_of()
        )),
        None => hint(format!(
            "add a NetworkPolicy selecting {subject} that allows {rule}"
        )),
    }
}

/// The `kubectl get networkpolicy` lines for the isolating policies (at most 3), or the
/// namespace listing when no policy is named.
pub(super) fn policy_get_lines(policies: &[PolicyRef], fallback_ns: &str) -> Vec<FixLine> {
    let mut seen: Vec<&PolicyRef> = Vec::new();
    for p in policies {
        if !seen.contains(&p) {
            seen.push(p);
        }
    }
    if seen.is_empty() {
        return vec![cmd(format!("kubectl -n {fallback_ns} get networkpolicy -o yaml"))];
    }
    seen.iter()
        .take(3)
        .map(|p| {
            cmd(format!(
                "kubectl -n {} get networkpolicy {} -o yaml",
                p.namespace, p.name
            ))
        })
        .collect()
}

pub(super) fn push_unique(lines: &mut Vec<FixLine>, line: FixLine) {
    if !lines.contains(&line) {
        lines.push(line);
    }
}

/// What to change for the denied flows: which rule to add to which isolating policy, naming the
/// peers by the labels a selector can match, then the commands that show those policies.
pub(super) fn policy_fix(cx: &Context, live: &[&EndpointFacts], src_ns: &str) -> Vec<FixLine> {
    let src = cx.source_pod;
    let mut advice = Vec::new();
    let mut policies = Vec::new();
    for e in live {
        if matches!(e.live.tcp_outcome(), Some(TcpOutcome::Connected { .. })) {
            continue;
        }
        let PolicyCheck::Denied { egress, ingress } = &e.policy else {
            continue;
        };
        for side in [ingress, egress].into_iter().flatten() {
            admin_fix(side, &mut advice);
        }
        if let Some(side) = ingress.as_ref().filter(|s| !s.needs_cluster_admin()) {
            let from = src.map(peer_phrase).unwrap_or_else(|| cx.from.to_string());
            let to = match &e.pod {
                Some(pod) => subject_phrase(pod),
                None => e.label(),
            };
            let rule = format!("ingress from {from} to port {}/{}", side.port, side.protocol);
            push_unique(&mut advice, allow_hint(&rule, &to, side.policies.as_ref()));
            policies.extend(side.policies.iter().flat_map(NonEmpty::to_vec));
        }
        if let Some(side) = egress.as_ref().filter(|s| !s.needs_cluster_admin()) {
            let to = match &e.pod {
                Some(pod) => peer_phrase(pod),
                None => match e.ip {
                    IpAddr::V4(ip) => format!("ipBlock {ip}/32"),
                    IpAddr::V6(ip) => format!("ipBlock {ip}/128"),
                },
            };
            let subject = src.map(subject_phrase).unwrap_or_else(|| cx.from.to_string());
            let rule = format!("egress to {to} on port {}/{}", side.port, side.protocol);
            push_unique(&mut advice, allow_hint(&rule, &subject, side.policies.as_ref()));
            policies.extend(side.policies.iter().flat_map(NonEmpty::to_vec));
        }
    }
    if !policies.is_empty() || !denied_by_admin_only(live.iter().map(|e| &e.policy)) {
        advice.extend(policy_get_lines(&policies, src_ns));
    }
    advice
}

/// Every denied side was decided by an Admin-tier rule: no NetworkPolicy is worth showing.
fn denied_by_admin_only<'a>(checks: impl Iterator<Item = &'a PolicyCheck>) -> bool {
    let mut sides = checks
        .filter_map(|c| match c {
            PolicyCheck::Denied { egress, ingress } => Some([egress, ingress]),
            _ => None,
        })
        .flatten()
        .flatten()
        .peekable();
    sides.peek().is_some() && sides.all(|side| side.needs_cluster_admin())
}

/// What to change when policy blocks the source's DNS queries: egress to the cluster DNS pods
/// on port 53 (UDP and TCP) in the isolating policies, then the commands that show them.
pub(super) fn dns_policy_fix(cx: &Context, src_ns: &str) -> Vec<FixLine> {
    let src = cx.source_pod;
    let pods = cx
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
        for side in [ingress, egress].into_iter().flatten() {
            admin_fix(side, &mut advice);
        }
        if let Some(side) = egress.as_ref().filter(|s| !s.needs_cluster_admin()) {
            let subject = src.map(subject_phrase).unwrap_or_else(|| cx.from.to_string());
            let rule =
                "egress to pods with k8s-app=kube-dns in namespace kube-system on port 53/UDP and 53/TCP";
            push_unique(&mut advice, allow_hint(rule, &subject, side.policies.as_ref()));
            policies.extend(side.policies.iter().flat_map(NonEmpty::to_vec));
        }
        if let Some(side) = ingress.as_ref().filter(|s| !s.needs_cluster_admin()) {
            let from = src.map(peer_phrase).unwrap_or_else(|| cx.from.to_string());
            let rule = format!("ingress from {from} to port 53/UDP and 53/TCP");
            let dns_pods = "k8s-app=kube-dns in namespace kube-system";
            push_unique(&mut advice, allow_hint(&rule, dns_pods, side.policies.as_ref()));
            policies.extend(side.policies.iter().flat_map(NonEmpty::to_vec));
        }
    }
    advice.extend(policy_get_lines(&policies, src_ns));
    advice
}

/// A denied flow that connected anyway: the CNI does not enforce the policy.
fn disagreement(flow: String) -> EvidenceLine {
    EvidenceLine::disagreement(format!("disagreement: {flow}, yet TCP connected"))
}

/// What to do about a side a cluster-wide admin rule denied: an Admin-tier rule only a cluster
/// admin can change (no NetworkPolicy overrides it); a Baseline-tier one a NetworkPolicy
/// selecting the pod overrides.
fn admin_fix(side: &DeniedSide, advice: &mut Vec<FixLine>) {
    let Some(rule) = side.admin_rule() else {
        return;
    };
    let policy = &rule.policy;
    if side.needs_cluster_admin() {
        push_unique(
            advice,
            hint(format!(
                "a cluster admin must change {rule}: the Admin tier is evaluated before NetworkPolicy, which cannot override it"
            )),
        );
    } else {
        push_unique(
            advice,
            hint(format!(
                "{rule} is a Baseline-tier default: a NetworkPolicy selecting the pod that allows the flow overrides it"
            )),
        );
    }
    push_unique(
        advice,
        cmd(format!(
            "kubectl get {} {} -o yaml",
            policy.kind.as_str().to_lowercase(),
            policy.name
        )),
    );
}

/// Over UDP: the policy evaluation, with what the datagrams met and how sure that makes it.
fn udp_policy(cx: &Context, src_ns: &str) -> Judgment {
    let live = &cx.live;
    let mut denied: Vec<&EndpointFacts> = vec![];
    let mut lines: Vec<EvidenceLine> = vec![];
    let mut unknown = vec![];
    let mut allowed = vec![];
    let mut first_unenforced = None;
    for e in live {
        match &e.policy {
            PolicyCheck::Denied { egress, ingress } => {
                let line = denied_line(e, egress, ingress);
                match outcome(e) {
                    Some(UdpOutcome::Answered { .. }) => {
                        lines.push(EvidenceLine::disagreement(format!(
                            "disagreement: {line}, yet the datagram was answered"
                        )));
                        if first_unenforced.is_none() {
                            first_unenforced = unenforced(cx, e, egress, ingress);
                        }
                    }
                    Some(o) => {
                        denied.push(e);
                        lines.push(format!("{line} — UDP {}", describe_udp(o)).into());
                    }
                    None => {
                        denied.push(e);
                        lines.push(line.into());
                    }
                }
            }
            PolicyCheck::NotEvaluated(reason) => unknown.push((e, reason.clone())),
            PolicyCheck::Allowed { detail } => allowed.push(format!("{}: {detail}", e.label())),
        }
    }
    if let Some(first) = denied.first().copied() {
        let certainty = udp_reading(first).1;
        lines.push(certainty_line(first, certainty).into());
        let finding = NetworkPolicyFinding::Denied {
            head: denied_head(cx, Some(first)),
            denied: denied.len(),
            total: live.len(),
            certainty: Some(certainty),
        };
        return found_with(finding, Status::Fail, lines, policy_fix(cx, &denied, src_ns));
    }
    let blocked: Vec<String> = unknown
        .iter()
        .filter(|(e, _)| outcome(e).is_some_and(not_delivered))
        .map(|(e, reason)| format!("{}: policy not evaluated ({reason})", e.label()))
        .collect();
    if !blocked.is_empty() {
        let mut fix = can_i_fix(
            unknown.iter().map(|(_, reason)| reason),
            "kubectl auth can-i list networkpolicies -A",
        );
        fix.push(cmd(format!("kubectl -n {src_ns} get networkpolicy")));
        return undetermined(
            NetworkPolicyFinding::NotEvaluated {
                transport: Transport::Udp,
            },
            blocked,
            fix,
        );
    }
    let disagreements = lines.len();
    lines.extend(allowed.into_iter().map(Into::into));
    lines.extend(
        unknown
            .iter()
            .map(|(e, reason)| format!("{}: not evaluated ({reason})", e.label()).into()),
    );
    if let Some(first) = first_unenforced {
        return not_enforced(cx, Transport::Udp, disagreements, first, lines);
    }
    let finding = NetworkPolicyFinding::Allowed {
        transport: Transport::Udp,
        from: cx.from.clone(),
    };
    found_with(finding, Status::Pass, lines, vec![])
}

/// Why the denial is as sure as it is: a REJECT's ICMP proves the drop, silence only agrees.
fn certainty_line(e: &EndpointFacts, certainty: Certainty) -> String {
    match (certainty, outcome(e)) {
        (Certainty::Certain, Some(o)) => format!(
            "certainty: {} — the datagram to {} was rejected ({}) while the policy denies it",
            certainty.text(),
            e.label(),
            describe_udp(o)
        ),
        (_, Some(UdpOutcome::Refused { .. })) => format!(
            "certainty: {} — the policy evaluation denies the flow, yet {} answered port-unreachable: the \
             datagram got through, so the CNI may not enforce the policy, and nothing is bound there",
            certainty.text(),
            e.label()
        ),
        _ => format!(
            "certainty: {} — the policy evaluation denies the flow and the datagrams got no answer, as a drop \
             gives; UDP silence alone is not proof",
            certainty.text()
        ),
    }
}

#[cfg(test)]
#[path = "network_policy_tests.rs"]
mod tests;
