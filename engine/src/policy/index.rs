//! The in-memory index of validated policies and pods, and single-flow evaluation.

use std::collections::{BTreeMap, HashMap};
use std::net::IpAddr;

use k8s_openapi::api::core::v1::{Namespace, Pod};
use k8s_openapi::api::networking::v1::NetworkPolicy;
use kube::core::SelectorExt;

use super::admin::{AdminIndex, AdminObjects};
use ipnet::IpNet;

use super::spec::{NamedPort, PodAddrs, PolicySpec, RuleSpec};
use super::types::{
    Direction, DirectionVerdict, EvalError, ExceptedBy, Finding, Flow, FlowVerdict, IpFamily, Peer,
    PolicyRef, RuleRef, finding,
};

/// The label every namespace carries since Kubernetes 1.22 (set by the API server).
pub(crate) const NAMESPACE_NAME_LABEL: &str = "kubernetes.io/metadata.name";

/// What the evaluator needs of a pod.
#[derive(Debug, Clone)]
pub(crate) struct PodInfo {
    pub namespace: String,
    pub name: String,
    pub labels: BTreeMap<String, String>,
    pub ips: Vec<IpAddr>,
    pub ports: Vec<NamedPort>,
    pub host_network: bool,
    /// `Succeeded` or `Failed`: the pod runs nothing, and its IP (ignored) may be another pod's now.
    pub terminal_phase: Option<String>,
}

impl PodInfo {
    /// The pod's addresses of `family`, as ipBlocks see its packets of that family.
    pub(crate) fn addrs(&self, family: Option<IpFamily>) -> PodAddrs<'_> {
        PodAddrs::new(&self.ips, family)
    }
}

/// Of two families' verdicts on one flow: the first when they agree, else the denying one,
/// with a note saying what the other family gets.
pub(crate) fn pick_family<V>(
    first: V,
    second: V,
    allowed: impl Fn(&V) -> bool,
    notes: impl Fn(&mut V) -> &mut Vec<String>,
    explain: impl Fn(&V) -> String,
) -> V
where
    V: HasFamily,
{
    if allowed(&first) == allowed(&second) {
        return first;
    }
    let (mut shown, other) = if allowed(&first) {
        (second, first)
    } else {
        (first, second)
    };
    let note = format!(
        "{} is {} for {}, {} for {} ({}): an ipBlock applies to the addresses of its own family",
        shown.flow_text(),
        if allowed(&shown) { "allowed" } else { "denied" },
        label(shown.family()),
        if allowed(&other) { "allowed" } else { "denied" },
        label(other.family()),
        explain(&other),
    );
    notes(&mut shown).push(note);
    shown
}

fn label(family: Option<IpFamily>) -> &'static str {
    family.map(IpFamily::label).unwrap_or("no family")
}

/// A verdict on one family's packets of a flow.
pub(crate) trait HasFamily {
    fn family(&self) -> Option<IpFamily>;
    /// `shop/a → shop/b port 53/UDP`.
    fn flow_text(&self) -> String;
}

impl HasFamily for FlowVerdict {
    fn family(&self) -> Option<IpFamily> {
        self.family
    }

    fn flow_text(&self) -> String {
        format!("{} → {} port {}/{}", self.from, self.to, self.port, self.protocol)
    }
}

/// Validated policies, pods and namespace labels, built once from objects; answers flows.
#[derive(Debug, Clone)]
pub struct PolicyIndex {
    pub(crate) namespaces: BTreeMap<String, BTreeMap<String, String>>,
    pub(crate) pods: Vec<PodInfo>,
    /// Pod positions by namespace, then name (lookups by `&str`, no allocation).
    pod_by_name: HashMap<String, HashMap<String, usize>>,
    pub(crate) policies: Vec<PolicySpec>,
    /// Policies by namespace, in input order (a policy only selects pods of its own namespace).
    policies_by_namespace: HashMap<String, Vec<usize>>,
    /// Validated cluster-wide admin policies (empty for [`PolicyIndex::new`]).
    pub(crate) admin: AdminIndex,
    findings: Vec<Finding>,
}

/// The remote or destination end of a flow inside the index.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Endpoint {
    Pod(usize),
    Ip(IpAddr),
}

impl PolicyIndex {
    /// NetworkPolicy only: no admin tiers.
    pub fn new(namespaces: &[Namespace], pods: &[Pod], policies: &[NetworkPolicy]) -> Self {
        Self::with_admin(namespaces, pods, policies, &AdminObjects::default())
    }

    /// NetworkPolicy and the cluster-wide admin policies (ClusterNetworkPolicy, AdminNetworkPolicy,
    /// BaselineAdminNetworkPolicy); [`PolicyIndex::evaluate_tiers`] and [`PolicyIndex::matrix`]
    /// apply the tiers in order. Invalid admin policies become findings and are skipped.
    pub fn with_admin(
        namespaces: &[Namespace],
        pods: &[Pod],
        policies: &[NetworkPolicy],
        admin: &AdminObjects,
    ) -> Self {
        let mut findings = Vec::new();

        let mut namespace_labels = BTreeMap::new();
        for namespace in namespaces {
            let Some(name) = namespace.metadata.name.clone() else {
                findings.push(finding(
                    "namespace",
                    None,
                    "<unnamed>",
                    "metadata.name is missing; skipped",
                ));
                continue;
            };
            let mut labels = namespace.metadata.labels.clone().unwrap_or_default();
            labels
                .entry(NAMESPACE_NAME_LABEL.to_string())
                .or_insert_with(|| name.clone());
            namespace_labels.insert(name, labels);
        }

        let mut pod_infos = Vec::with_capacity(pods.len());
        let mut pod_by_name: HashMap<String, HashMap<String, usize>> = HashMap::new();
        for pod in pods {
            let Some(info) = pod_info(pod, &mut findings) else {
                continue;
            };
            let in_namespace = match pod_by_name.get_mut(info.namespace.as_str()) {
                Some(map) => map,
                None => pod_by_name.entry(info.namespace.clone()).or_default(),
            };
            if in_namespace.contains_key(info.name.as_str()) {
                findings.push(finding(
                    "pod",
                    Some(&info.namespace),
                    &info.name,
                    "appears more than once in the input; the first one is used",
                ));
                continue;
            }
            if !namespace_labels.contains_key(&info.namespace) {
                findings.push(finding(
                    "namespace",
                    None,
                    &info.namespace,
                    &format!(
                        "not in the input (pod {}/{} is); assuming its only label is {NAMESPACE_NAME_LABEL}",
                        info.namespace, info.name
                    ),
                ));
                let labels = BTreeMap::from([(NAMESPACE_NAME_LABEL.to_string(), info.namespace.clone())]);
                namespace_labels.insert(info.namespace.clone(), labels);
            }
            in_namespace.insert(info.name.clone(), pod_infos.len());
            pod_infos.push(info);
        }

        let mut specs = Vec::with_capacity(policies.len());
        for policy in policies {
            match PolicySpec::try_from(policy) {
                Ok(spec) => specs.push(spec),
                Err(err) => findings.push(finding(
                    "networkpolicy",
                    policy.metadata.namespace.as_deref().or(Some("default")),
                    policy.metadata.name.as_deref().unwrap_or("<unnamed>"),
                    &format!("invalid, ignored: {err}"),
                )),
            }
        }

        let mut policies_by_namespace: HashMap<String, Vec<usize>> = HashMap::new();
        for (i, spec) in specs.iter().enumerate() {
            policies_by_namespace
                .entry(spec.policy.namespace.clone())
                .or_default()
                .push(i);
        }

        let admin = AdminIndex::new(admin, &mut findings);
        PolicyIndex {
            admin,
            namespaces: namespace_labels,
            pods: pod_infos,
            pod_by_name,
            policies: specs,
            policies_by_namespace,
            findings,
        }
    }

    /// Objects that could not be used as given (invalid policies are skipped), each naming the object.
    pub fn findings(&self) -> &[Finding] {
        &self.findings
    }

    /// Pods in the index as `(namespace, name)`, in input order.
    pub fn pods(&self) -> impl Iterator<Item = (&str, &str)> {
        self.pods.iter().map(|p| (p.namespace.as_str(), p.name.as_str()))
    }

    /// The pod that has `ip` as one of its pod IPs, when exactly one does.
    pub fn pod_with_ip(&self, ip: IpAddr) -> Option<Peer> {
        let mut found = self.pods.iter().filter(|p| p.ips.contains(&ip));
        let pod = found.next()?;
        if found.next().is_some() {
            return None;
        }
        Some(Peer::pod(&pod.namespace, &pod.name))
    }

    /// The policies whose podSelector selects pod `pod`, in input order.
    pub(crate) fn selecting(&self, pod: usize) -> impl Iterator<Item = usize> + '_ {
        let info = &self.pods[pod];
        self.policies_by_namespace
            .get(&info.namespace)
            .into_iter()
            .flatten()
            .copied()
            .filter(move |&p| self.policies[p].pod_selector.matches(&info.labels))
    }

    pub(crate) fn pod_index(&self, namespace: &str, name: &str) -> Option<usize> {
        self.pod_by_name.get(namespace)?.get(name).copied()
    }

    pub(crate) fn endpoint(&self, peer: &Peer) -> Result<Endpoint, EvalError> {
        match peer {
            Peer::Ip(ip) => Ok(Endpoint::Ip(*ip)),
            Peer::Pod { namespace, name } => {
                self.pod_index(namespace, name)
                    .map(Endpoint::Pod)
                    .ok_or_else(|| EvalError::UnknownPod {
                        namespace: namespace.clone(),
                        name: name.clone(),
                    })
            }
        }
    }

    /// The address families the flow's packets can carry: an address end's family; else the
    /// families both pods have an address of (primary first, as the source lists them); else
    /// those either has. Empty when no end has an address.
    pub(crate) fn flow_families(&self, from: Endpoint, to: Endpoint) -> Vec<IpFamily> {
        let families = |end: Endpoint| -> Vec<IpFamily> {
            match end {
                Endpoint::Ip(ip) => vec![IpFamily::of(ip)],
                Endpoint::Pod(i) => {
                    let mut out: Vec<IpFamily> = Vec::new();
                    for ip in &self.pods[i].ips {
                        if !out.contains(&IpFamily::of(*ip)) {
                            out.push(IpFamily::of(*ip));
                        }
                    }
                    out
                }
            }
        };
        let (a, b) = (families(from), families(to));
        let shared: Vec<IpFamily> = a.iter().copied().filter(|f| b.contains(f)).collect();
        if !shared.is_empty() {
            return shared;
        }
        let extra: Vec<IpFamily> = b.into_iter().filter(|f| !a.contains(f)).collect();
        let mut either = a;
        either.extend(extra);
        either
    }

    /// Decide one flow. `Err` only when the flow cannot be evaluated (unknown pod, port 0).
    /// Between dual-stack pods each family is decided on its own (an ipBlock admits the addresses
    /// of its own family only): the flow is allowed when every family is, and the verdict shown is
    /// a denying family's, with a note on the other.
    pub fn evaluate(&self, flow: &Flow) -> Result<FlowVerdict, EvalError> {
        let (from, to) = (self.endpoint(&flow.from)?, self.endpoint(&flow.to)?);
        let families = self.flow_families(from, to);
        match families.as_slice() {
            [] => self.evaluate_in(flow, None),
            [one] => self.evaluate_in(flow, Some(*one)),
            [first, second, ..] => {
                let a = self.evaluate_in(flow, Some(*first))?;
                let b = self.evaluate_in(flow, Some(*second))?;
                Ok(pick_family(
                    a,
                    b,
                    |v| v.allowed,
                    |v| &mut v.notes,
                    FlowVerdict::explain,
                ))
            }
        }
    }

    /// Decide one flow for the packets of one address family (`None`: no end has an address).
    pub fn evaluate_in(&self, flow: &Flow, family: Option<IpFamily>) -> Result<FlowVerdict, EvalError> {
        if flow.port == 0 {
            return Err(EvalError::PortZero);
        }
        let from = self.endpoint(&flow.from)?;
        let to = self.endpoint(&flow.to)?;
        let egress = match from {
            Endpoint::Pod(source) => self.direction_verdict(source, Direction::Egress, to, to, flow, family),
            Endpoint::Ip(_) => DirectionVerdict::not_applicable(),
        };
        let ingress = match to {
            Endpoint::Pod(dest) => self.direction_verdict(dest, Direction::Ingress, from, to, flow, family),
            Endpoint::Ip(_) => DirectionVerdict::not_applicable(),
        };
        let mut notes = Vec::new();
        if let (Endpoint::Pod(a), Endpoint::Pod(b)) = (from, to)
            && a == b
        {
            notes.push(
                "traffic from a pod to itself: NetworkPolicy leaves this undefined and CNIs differ; \
                 the policies were applied as written"
                    .to_string(),
            );
        }
        // Each pod end once (a pod to itself is one pod).
        let mut pod_ends: Vec<usize> = [from, to]
            .into_iter()
            .filter_map(|end| match end {
                Endpoint::Pod(i) => Some(i),
                Endpoint::Ip(_) => None,
            })
            .collect();
        pod_ends.dedup();
        for i in pod_ends {
            let pod = &self.pods[i];
            if pod.host_network {
                notes.push(format!(
                    "{}/{} uses the host network: NetworkPolicy does not define how it applies, and most \
                     CNIs do not enforce it on such pods",
                    pod.namespace, pod.name
                ));
            }
            if let Some(phase) = &pod.terminal_phase {
                notes.push(format!(
                    "{}/{} is in phase {phase}: it runs no containers, so no traffic flows; its pod IP \
                     is ignored (it may belong to another pod now)",
                    pod.namespace, pod.name
                ));
            }
        }
        Ok(FlowVerdict {
            from: flow.from.clone(),
            to: flow.to.clone(),
            port: flow.port,
            protocol: flow.protocol,
            family,
            allowed: egress.allowed && ingress.allowed,
            egress,
            ingress,
            notes,
        })
    }

    /// One side of a flow: `subject` is the pod whose isolation is judged, `remote` the other end
    /// that rules' peers must match, `dest` the destination whose containerPorts resolve named ports.
    fn direction_verdict(
        &self,
        subject: usize,
        direction: Direction,
        remote: Endpoint,
        dest: Endpoint,
        flow: &Flow,
        family: Option<IpFamily>,
    ) -> DirectionVerdict {
        let mut isolating_policies = Vec::new();
        let mut allowing_rules = Vec::new();
        let mut excepted_by = Vec::new();
        for p in self.selecting(subject) {
            let spec = &self.policies[p];
            let Some(rules) = rules_for(spec, direction) else {
                continue;
            };
            isolating_policies.push(spec.policy.clone());
            for (index, rule) in rules.iter().enumerate() {
                let rule_ref = || rule_ref(&spec.policy, direction, index);
                if self.rule_admits(rule, remote, dest, flow, family) {
                    allowing_rules.push(rule_ref());
                } else if let Some((cidr, except)) = self.rule_excepts(rule, remote, dest, flow) {
                    excepted_by.push(ExceptedBy {
                        rule: rule_ref(),
                        cidr: cidr.to_string(),
                        except: except.to_string(),
                    });
                }
            }
        }
        let isolated = !isolating_policies.is_empty();
        DirectionVerdict {
            applies: true,
            isolated,
            allowed: !isolated || !allowing_rules.is_empty(),
            isolating_policies,
            allowing_rules,
            excepted_by,
        }
    }

    /// For a rule that admits the flow's port, the ipBlock of its peers whose `except` holds the
    /// remote address (an address outside the pods; a pod's own addresses are not told apart).
    fn rule_excepts(
        &self,
        rule: &RuleSpec,
        remote: Endpoint,
        dest: Endpoint,
        flow: &Flow,
    ) -> Option<(IpNet, IpNet)> {
        let Endpoint::Ip(ip) = remote else {
            return None;
        };
        let dest_ports = match dest {
            Endpoint::Pod(i) => Some(self.pods[i].ports.as_slice()),
            Endpoint::Ip(_) => None,
        };
        if !rule.port_matches(flow.port, flow.protocol, dest_ports) {
            return None;
        }
        rule.peers.as_ref()?.iter().find_map(|peer| peer.excepts(ip))
    }

    fn rule_admits(
        &self,
        rule: &RuleSpec,
        remote: Endpoint,
        dest: Endpoint,
        flow: &Flow,
        family: Option<IpFamily>,
    ) -> bool {
        let dest_ports = match dest {
            Endpoint::Pod(i) => Some(self.pods[i].ports.as_slice()),
            Endpoint::Ip(_) => None,
        };
        if !rule.port_matches(flow.port, flow.protocol, dest_ports) {
            return false;
        }
        match &rule.peers {
            None => true,
            Some(peers) => peers.iter().any(|peer| match remote {
                Endpoint::Ip(ip) => peer.matches_ip(ip),
                Endpoint::Pod(i) => {
                    let pod = &self.pods[i];
                    peer.matches_pod(
                        &pod.namespace,
                        &self.namespaces[&pod.namespace],
                        &pod.labels,
                        pod.addrs(family),
                    )
                }
            }),
        }
    }
}

pub(crate) fn rules_for(spec: &PolicySpec, direction: Direction) -> Option<&[RuleSpec]> {
    match direction {
        Direction::Ingress => spec.ingress.as_deref(),
        Direction::Egress => spec.egress.as_deref(),
    }
}

pub(crate) fn rule_ref(policy: &PolicyRef, direction: Direction, index: usize) -> RuleRef {
    RuleRef {
        namespace: policy.namespace.clone(),
        name: policy.name.clone(),
        direction,
        index,
    }
}

fn pod_info(pod: &Pod, findings: &mut Vec<Finding>) -> Option<PodInfo> {
    let namespace = pod
        .metadata
        .namespace
        .clone()
        .unwrap_or_else(|| "default".to_string());
    let Some(name) = pod.metadata.name.clone() else {
        findings.push(finding(
            "pod",
            Some(&namespace),
            "<unnamed>",
            "metadata.name is missing; skipped",
        ));
        return None;
    };
    let terminal_phase = pod
        .status
        .as_ref()
        .and_then(|status| status.phase.clone())
        .filter(|phase| phase == "Succeeded" || phase == "Failed");
    let mut ips = Vec::new();
    if let Some(status) = pod.status.as_ref().filter(|_| terminal_phase.is_none()) {
        let texts = status
            .pod_ips
            .iter()
            .flatten()
            .map(|p| p.ip.as_str())
            .chain(status.pod_ip.as_deref());
        for text in texts {
            match text.parse::<IpAddr>() {
                Ok(ip) if !ips.contains(&ip) => ips.push(ip),
                Ok(_) => {}
                Err(_) => findings.push(finding(
                    "pod",
                    Some(&namespace),
                    &name,
                    &format!("status pod IP {text:?} is not an IP address; ignored"),
                )),
            }
        }
    }
    // The ports a named port can resolve to: those of the running containers and native
    // sidecars, read as every other consumer reads them.
    let ports = crate::cluster::pods::serving_ports(pod)
        .into_iter()
        .filter_map(|p| {
            Some(NamedPort {
                name: p.name?,
                port: p.port,
                protocol: p.protocol,
            })
        })
        .collect();
    Some(PodInfo {
        host_network: pod.spec.as_ref().and_then(|s| s.host_network).unwrap_or(false),
        terminal_phase,
        labels: pod.metadata.labels.clone().unwrap_or_default(),
        namespace,
        name,
        ips,
        ports,
    })
}
