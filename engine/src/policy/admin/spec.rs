//! Validated internal form of the admin policy kinds, built once on the way in with `TryFrom`
//! (the CRDs' own validation rules, so objects from files are judged like applied ones).
//! A policy that fails is skipped whole and reported; a peer this evaluator cannot judge
//! (`nodes`, `domainNames`) or does not know (a newer API's field) is kept as a peer that
//! matches nothing, or fails closed as the API asks, with a warning.

use std::collections::BTreeMap;
use std::net::IpAddr;

use ipnet::IpNet;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};
use kube::core::{Selector, SelectorExt};

use super::objects::{
    AdminNetworkPolicy, AdminPeer, AdminPolicySpecFields, AdminRule, BaselineAdminNetworkPolicy,
    ClusterNetworkPolicy, NamespacedPod, PortMatchV1Alpha1, PortRange, ProtocolMatch,
};
use super::verdict::{AdminAction, AdminKind, AdminPolicyRef, AdminRuleRef, AdminTier};
use crate::policy::spec::{NamedPort, PodAddrs, SpecError, invalid, is_port_name, selector};
use crate::policy::types::{Direction, Protocol};

/// An admin policy that passed validation.
#[derive(Debug, Clone)]
pub(crate) struct AdminPolicySpec {
    pub policy: AdminPolicyRef,
    pub subject: SubjectSpec,
    pub ingress: Vec<AdminRuleSpec>,
    pub egress: Vec<AdminRuleSpec>,
    /// Parts kept with a changed meaning (unjudgeable or unknown peers), for findings.
    pub warnings: Vec<String>,
}

/// The pods a policy applies to (host-network pods never are).
#[derive(Debug, Clone)]
pub(crate) enum SubjectSpec {
    Namespaces(Selector),
    Pods { namespaces: Selector, pods: Selector },
}

#[derive(Debug, Clone)]
pub(crate) struct AdminRuleSpec {
    pub rule: AdminRuleRef,
    /// Alternatives: the rule matches when any peer does.
    pub peers: Vec<AdminPeerSpec>,
    /// `None`: every port and protocol.
    pub ports: Option<Vec<AdminPortSpec>>,
}

#[derive(Debug, Clone)]
pub(crate) enum AdminPeerSpec {
    /// Every pod (not host-network) in the selected namespaces.
    Namespaces(Selector),
    /// Selected pods (not host-network) in the selected namespaces.
    Pods { namespaces: Selector, pods: Selector },
    /// Addresses in any of the CIDRs, pod IPs included.
    Networks(Vec<IpNet>),
    /// A peer this evaluator cannot judge (`nodes`, `domainNames`): matches no flow.
    Nothing,
    /// An unknown peer type in a Deny or Pass rule: fails closed, matches every flow.
    Everything,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum AdminPortSpec {
    /// `protocol` ports `start..=end` (a single number is `start == end`).
    Range {
        protocol: Protocol,
        start: u16,
        end: u16,
    },
    /// A containerPort name of the destination pod, declared with the flow's port and protocol.
    Named(String),
}

impl SubjectSpec {
    pub fn selects(
        &self,
        namespace_labels: &BTreeMap<String, String>,
        pod_labels: &BTreeMap<String, String>,
    ) -> bool {
        match self {
            SubjectSpec::Namespaces(namespaces) => namespaces.matches(namespace_labels),
            SubjectSpec::Pods { namespaces, pods } => {
                namespaces.matches(namespace_labels) && pods.matches(pod_labels)
            }
        }
    }
}

impl AdminPeerSpec {
    pub fn matches_pod(
        &self,
        namespace_labels: &BTreeMap<String, String>,
        pod_labels: &BTreeMap<String, String>,
        pod_ips: PodAddrs,
        host_network: bool,
    ) -> bool {
        match self {
            AdminPeerSpec::Namespaces(namespaces) => !host_network && namespaces.matches(namespace_labels),
            AdminPeerSpec::Pods { namespaces, pods } => {
                !host_network && namespaces.matches(namespace_labels) && pods.matches(pod_labels)
            }
            AdminPeerSpec::Networks(_) => pod_ips.iter().any(|ip| self.matches_ip(ip)),
            AdminPeerSpec::Nothing => false,
            AdminPeerSpec::Everything => true,
        }
    }

    pub fn matches_ip(&self, ip: IpAddr) -> bool {
        match self {
            AdminPeerSpec::Networks(networks) => networks.iter().any(|net| net.contains(&ip)),
            AdminPeerSpec::Everything => true,
            _ => false,
        }
    }
}

impl AdminPortSpec {
    /// Whether this entry admits `port`/`protocol` to a destination whose named container ports are
    /// `dest_ports` (`None` when the destination is not a pod: named ports never match).
    pub fn matches(&self, port: u16, protocol: Protocol, dest_ports: Option<&[NamedPort]>) -> bool {
        match self {
            AdminPortSpec::Range {
                protocol: p,
                start,
                end,
            } => *p == protocol && (*start..=*end).contains(&port),
            AdminPortSpec::Named(name) => dest_ports.is_some_and(|ports| {
                ports
                    .iter()
                    .any(|p| &p.name == name && p.port == port && p.protocol == protocol)
            }),
        }
    }
}

impl AdminRuleSpec {
    pub fn port_matches(&self, port: u16, protocol: Protocol, dest_ports: Option<&[NamedPort]>) -> bool {
        match &self.ports {
            None => true,
            Some(ports) => ports.iter().any(|p| p.matches(port, protocol, dest_ports)),
        }
    }
}

impl TryFrom<&ClusterNetworkPolicy> for AdminPolicySpec {
    type Error = SpecError;

    fn try_from(policy: &ClusterNetworkPolicy) -> Result<Self, Self::Error> {
        let spec = policy.spec.as_ref().ok_or_else(|| invalid("spec is missing"))?;
        let tier = match spec.tier.as_deref() {
            Some("Admin") => AdminTier::Admin,
            Some("Baseline") => AdminTier::Baseline,
            Some(other) => {
                return Err(invalid(format!(
                    "spec.tier: unsupported value {other:?} (expected Admin or Baseline)"
                )));
            }
            None => return Err(invalid("spec.tier is required")),
        };
        build(&policy.metadata, spec, AdminKind::ClusterNetworkPolicy, tier)
    }
}

impl TryFrom<&AdminNetworkPolicy> for AdminPolicySpec {
    type Error = SpecError;

    fn try_from(policy: &AdminNetworkPolicy) -> Result<Self, Self::Error> {
        let spec = policy.spec.as_ref().ok_or_else(|| invalid("spec is missing"))?;
        if spec.tier.is_some() {
            return Err(invalid(
                "spec.tier is not an AdminNetworkPolicy field (it is ClusterNetworkPolicy's)",
            ));
        }
        build(
            &policy.metadata,
            spec,
            AdminKind::AdminNetworkPolicy,
            AdminTier::Admin,
        )
    }
}

impl TryFrom<&BaselineAdminNetworkPolicy> for AdminPolicySpec {
    type Error = SpecError;

    fn try_from(policy: &BaselineAdminNetworkPolicy) -> Result<Self, Self::Error> {
        let spec = policy.spec.as_ref().ok_or_else(|| invalid("spec is missing"))?;
        if policy
            .metadata
            .name
            .as_deref()
            .is_some_and(|name| name != "default")
        {
            return Err(invalid(
                "metadata.name: a BaselineAdminNetworkPolicy must be named default (it is a singleton)",
            ));
        }
        if spec.tier.is_some() || spec.priority.is_some() {
            return Err(invalid(
                "spec.tier and spec.priority are not BaselineAdminNetworkPolicy fields",
            ));
        }
        build(
            &policy.metadata,
            spec,
            AdminKind::BaselineAdminNetworkPolicy,
            AdminTier::Baseline,
        )
    }
}

fn build(
    metadata: &ObjectMeta,
    spec: &AdminPolicySpecFields,
    kind: AdminKind,
    tier: AdminTier,
) -> Result<AdminPolicySpec, SpecError> {
    let name = metadata
        .name
        .clone()
        .ok_or_else(|| invalid("metadata.name is missing"))?;
    let priority = match (kind, spec.priority) {
        (AdminKind::BaselineAdminNetworkPolicy, _) => None,
        (_, None) => return Err(invalid("spec.priority is required")),
        (_, Some(p)) => Some(
            u16::try_from(p)
                .ok()
                .filter(|p| *p <= 1000)
                .ok_or_else(|| invalid(format!("spec.priority: {p} is not in 0-1000")))?,
        ),
    };
    let policy = AdminPolicyRef {
        kind,
        name,
        tier,
        priority,
    };
    let subject = subject_spec(spec.subject.as_ref())?;
    let mut warnings = Vec::new();
    let mut rules = |list: &Option<Vec<AdminRule>>, direction: Direction| {
        list.iter()
            .flatten()
            .enumerate()
            .map(|(index, rule)| rule_spec(&policy, rule, direction, index, &mut warnings))
            .collect::<Result<Vec<_>, _>>()
    };
    let ingress = rules(&spec.ingress, Direction::Ingress)?;
    let egress = rules(&spec.egress, Direction::Egress)?;
    Ok(AdminPolicySpec {
        policy,
        subject,
        ingress,
        egress,
        warnings,
    })
}

fn subject_spec(subject: Option<&super::objects::AdminSubject>) -> Result<SubjectSpec, SpecError> {
    let subject = subject.ok_or_else(|| invalid("spec.subject is required"))?;
    match (&subject.namespaces, &subject.pods) {
        (Some(namespaces), None) => Ok(SubjectSpec::Namespaces(selector(
            Some(namespaces),
            "spec.subject.namespaces",
        )?)),
        (None, Some(pods)) => {
            let (namespaces, pods) = namespaced_pod(pods, "spec.subject.pods")?;
            Ok(SubjectSpec::Pods { namespaces, pods })
        }
        _ => Err(invalid(
            "spec.subject: exactly one of namespaces or pods must be set",
        )),
    }
}

fn namespaced_pod(pods: &NamespacedPod, field: &str) -> Result<(Selector, Selector), SpecError> {
    let empty = LabelSelector::default();
    let namespaces = selector(
        Some(pods.namespace_selector.as_ref().unwrap_or(&empty)),
        &format!("{field}.namespaceSelector"),
    )?;
    let pod_selector = pods
        .pod_selector
        .as_ref()
        .ok_or_else(|| invalid(format!("{field}.podSelector is required")))?;
    let pods = selector(Some(pod_selector), &format!("{field}.podSelector"))?;
    Ok((namespaces, pods))
}

fn action(kind: AdminKind, text: Option<&str>, field: &str) -> Result<AdminAction, SpecError> {
    let expected = match kind {
        AdminKind::ClusterNetworkPolicy => "Accept, Deny or Pass",
        AdminKind::AdminNetworkPolicy => "Allow, Deny or Pass",
        AdminKind::BaselineAdminNetworkPolicy => "Allow or Deny",
    };
    match (kind, text) {
        (AdminKind::ClusterNetworkPolicy, Some("Accept")) => Ok(AdminAction::Accept),
        (AdminKind::AdminNetworkPolicy | AdminKind::BaselineAdminNetworkPolicy, Some("Allow")) => {
            Ok(AdminAction::Accept)
        }
        (_, Some("Deny")) => Ok(AdminAction::Deny),
        (AdminKind::ClusterNetworkPolicy | AdminKind::AdminNetworkPolicy, Some("Pass")) => {
            Ok(AdminAction::Pass)
        }
        (_, Some(other)) => Err(invalid(format!(
            "{field}.action: unsupported value {other:?} (expected {expected})"
        ))),
        (_, None) => Err(invalid(format!("{field}.action is required"))),
    }
}

fn rule_spec(
    policy: &AdminPolicyRef,
    rule: &AdminRule,
    direction: Direction,
    index: usize,
    warnings: &mut Vec<String>,
) -> Result<AdminRuleSpec, SpecError> {
    let field = format!("spec.{direction}[{index}]");
    let mut action = action(policy.kind, rule.action.as_deref(), &field)?;
    let (peers_field, peers, other) = match direction {
        Direction::Ingress => ("from", &rule.from, &rule.to),
        Direction::Egress => ("to", &rule.to, &rule.from),
    };
    if other.is_some() {
        let wrong = if peers_field == "from" { "to" } else { "from" };
        return Err(invalid(format!(
            "{field}.{wrong} is not a field of {direction} rules"
        )));
    }
    let peers = peers
        .as_deref()
        .filter(|peers| !peers.is_empty())
        .ok_or_else(|| invalid(format!("{field}.{peers_field} needs at least one peer")))?;
    let mut specs = Vec::with_capacity(peers.len());
    let mut fail_closed = false;
    for (i, peer) in peers.iter().enumerate() {
        let peer_field = format!("{field}.{peers_field}[{i}]");
        let spec = peer_spec(policy.kind, peer, direction, action, &peer_field, warnings)?;
        fail_closed |= matches!(spec, AdminPeerSpec::Everything);
        specs.push(spec);
    }
    let ports = ports_spec(policy.kind, rule, &field)?;
    if ports
        .as_ref()
        .is_some_and(|ports| ports.iter().any(|p| matches!(p, AdminPortSpec::Named(_))))
        && specs.iter().any(|p| matches!(p, AdminPeerSpec::Networks(_)))
    {
        return Err(invalid(format!(
            "{field}: a named port cannot be used with networks peers (they have no named ports)"
        )));
    }
    let mut ports = ports;
    if fail_closed {
        // The API's "fail closed" for Deny and Pass rules: treat the rule as deny-all.
        action = AdminAction::Deny;
        specs = vec![AdminPeerSpec::Everything];
        ports = None;
    }
    Ok(AdminRuleSpec {
        rule: AdminRuleRef {
            policy: policy.clone(),
            direction,
            index,
            name: rule.name.clone().filter(|name| !name.is_empty()),
            action,
        },
        peers: specs,
        ports,
    })
}

fn peer_spec(
    kind: AdminKind,
    peer: &AdminPeer,
    direction: Direction,
    action: AdminAction,
    field: &str,
    warnings: &mut Vec<String>,
) -> Result<AdminPeerSpec, SpecError> {
    let mut set: Vec<&str> = [
        ("namespaces", peer.namespaces.is_some()),
        ("pods", peer.pods.is_some()),
        ("nodes", peer.nodes.is_some()),
        ("networks", peer.networks.is_some()),
        ("domainNames", peer.domain_names.is_some()),
    ]
    .into_iter()
    .filter_map(|(name, present)| present.then_some(name))
    .collect();
    set.extend(peer.other.keys().map(String::as_str));
    let [only] = set.as_slice() else {
        return Err(invalid(format!(
            "{field}: exactly one peer type must be set (found {})",
            if set.is_empty() {
                "none".to_string()
            } else {
                set.join(", ")
            }
        )));
    };
    let egress_only = matches!(*only, "nodes" | "networks" | "domainNames");
    if egress_only && direction == Direction::Ingress {
        return Err(invalid(format!("{field}.{only} is only allowed in egress peers")));
    }
    match *only {
        "namespaces" => Ok(AdminPeerSpec::Namespaces(selector(
            peer.namespaces.as_ref(),
            &format!("{field}.namespaces"),
        )?)),
        "pods" => {
            let pods = peer.pods.as_ref().expect("pods is set");
            let (namespaces, pods) = namespaced_pod(pods, &format!("{field}.pods"))?;
            Ok(AdminPeerSpec::Pods { namespaces, pods })
        }
        "networks" => networks(peer.networks.as_deref().unwrap_or_default(), field),
        "nodes" => {
            selector(peer.nodes.as_ref(), &format!("{field}.nodes"))?;
            warnings.push(format!(
                "{field}.nodes: node peers are not evaluated (Node objects are not read); this peer matches no flow"
            ));
            Ok(AdminPeerSpec::Nothing)
        }
        "domainNames" => {
            if kind == AdminKind::BaselineAdminNetworkPolicy || action != AdminAction::Accept {
                return Err(invalid(format!(
                    "{field}.domainNames is only allowed in Accept/Allow rules of the admin tier"
                )));
            }
            warnings.push(format!(
                "{field}.domainNames: domain names are not evaluated (the answer depends on DNS); this peer matches no flow"
            ));
            Ok(AdminPeerSpec::Nothing)
        }
        unknown => {
            // The API: an unknown peer type means a newer CRD; Accept rules match nothing,
            // Deny and Pass rules become deny-all.
            let (spec, effect) = if action == AdminAction::Accept {
                (AdminPeerSpec::Nothing, "this peer matches no flow")
            } else {
                (
                    AdminPeerSpec::Everything,
                    "the rule fails closed and denies every flow",
                )
            };
            warnings.push(format!("{field}: unknown peer type {unknown:?}; {effect}"));
            Ok(spec)
        }
    }
}

fn networks(cidrs: &[String], field: &str) -> Result<AdminPeerSpec, SpecError> {
    if cidrs.is_empty() {
        return Err(invalid(format!("{field}.networks needs at least one CIDR")));
    }
    cidrs
        .iter()
        .enumerate()
        .map(|(i, text)| {
            text.parse::<IpNet>()
                .map(|net| net.trunc())
                .map_err(|_| invalid(format!("{field}.networks[{i}]: {text:?} is not a CIDR")))
        })
        .collect::<Result<Vec<_>, _>>()
        .map(AdminPeerSpec::Networks)
}

fn ports_spec(
    kind: AdminKind,
    rule: &AdminRule,
    field: &str,
) -> Result<Option<Vec<AdminPortSpec>>, SpecError> {
    match kind {
        AdminKind::ClusterNetworkPolicy => {
            if rule.ports.is_some() {
                return Err(invalid(format!(
                    "{field}.ports is a v1alpha1 field; ClusterNetworkPolicy uses protocols"
                )));
            }
            match rule.protocols.as_deref() {
                None => Ok(None),
                Some([]) => Err(invalid(format!("{field}.protocols needs at least one entry"))),
                Some(list) => list
                    .iter()
                    .enumerate()
                    .map(|(i, p)| protocol_match(p, &format!("{field}.protocols[{i}]")))
                    .collect::<Result<Vec<_>, _>>()
                    .map(Some),
            }
        }
        _ => {
            if rule.protocols.is_some() {
                return Err(invalid(format!(
                    "{field}.protocols is a v1alpha2 field; {kind} uses ports"
                )));
            }
            match rule.ports.as_deref() {
                None => Ok(None),
                Some([]) => Err(invalid(format!("{field}.ports needs at least one entry"))),
                Some(list) => list
                    .iter()
                    .enumerate()
                    .map(|(i, p)| port_match_v1alpha1(p, &format!("{field}.ports[{i}]")))
                    .collect::<Result<Vec<_>, _>>()
                    .map(Some),
            }
        }
    }
}

fn protocol_match(entry: &ProtocolMatch, field: &str) -> Result<AdminPortSpec, SpecError> {
    let set = [
        entry.tcp.as_ref().map(|p| (Protocol::Tcp, p, "tcp")),
        entry.udp.as_ref().map(|p| (Protocol::Udp, p, "udp")),
        entry.sctp.as_ref().map(|p| (Protocol::Sctp, p, "sctp")),
    ];
    let mut set: Vec<_> = set.into_iter().flatten().collect();
    match (set.pop(), set.is_empty(), &entry.destination_named_port) {
        (None, _, Some(name)) => named_port(name, &format!("{field}.destinationNamedPort")),
        (Some((protocol, port, key)), true, None) => {
            let field = format!("{field}.{key}.destinationPort");
            let port = port
                .destination_port
                .as_ref()
                .ok_or_else(|| invalid(format!("{field} is required")))?;
            match (port.number, &port.range) {
                (Some(number), None) => {
                    let number = port_number(number, &format!("{field}.number"))?;
                    Ok(AdminPortSpec::Range {
                        protocol,
                        start: number,
                        end: number,
                    })
                }
                (None, Some(range)) => port_range(protocol, range, &format!("{field}.range")),
                _ => Err(invalid(format!(
                    "{field}: exactly one of number or range must be set"
                ))),
            }
        }
        _ => Err(invalid(format!(
            "{field}: exactly one of tcp, udp, sctp or destinationNamedPort must be set"
        ))),
    }
}

fn port_match_v1alpha1(entry: &PortMatchV1Alpha1, field: &str) -> Result<AdminPortSpec, SpecError> {
    match (&entry.port_number, &entry.named_port, &entry.port_range) {
        (Some(number), None, None) => {
            let protocol = protocol(
                number.protocol.as_deref(),
                &format!("{field}.portNumber.protocol"),
            )?;
            let port = port_number(number.port, &format!("{field}.portNumber.port"))?;
            Ok(AdminPortSpec::Range {
                protocol,
                start: port,
                end: port,
            })
        }
        (None, Some(name), None) => named_port(name, &format!("{field}.namedPort")),
        (None, None, Some(range)) => {
            let protocol = protocol(range.protocol.as_deref(), &format!("{field}.portRange.protocol"))?;
            port_range(protocol, range, &format!("{field}.portRange"))
        }
        _ => Err(invalid(format!(
            "{field}: exactly one of portNumber, namedPort or portRange must be set"
        ))),
    }
}

fn port_range(protocol: Protocol, range: &PortRange, field: &str) -> Result<AdminPortSpec, SpecError> {
    let start = port_number(range.start, &format!("{field}.start"))?;
    let end = port_number(range.end, &format!("{field}.end"))?;
    if start >= end {
        return Err(invalid(format!(
            "{field}: start {start} must be less than end {end}"
        )));
    }
    Ok(AdminPortSpec::Range { protocol, start, end })
}

fn named_port(name: &str, field: &str) -> Result<AdminPortSpec, SpecError> {
    if !is_port_name(name) {
        return Err(invalid(format!(
            "{field}: {name:?} is not a port name (1-15 lowercase letters, digits and '-', with a letter)"
        )));
    }
    Ok(AdminPortSpec::Named(name.to_string()))
}

fn protocol(text: Option<&str>, field: &str) -> Result<Protocol, SpecError> {
    match text {
        None | Some("TCP") => Ok(Protocol::Tcp),
        Some("UDP") => Ok(Protocol::Udp),
        Some("SCTP") => Ok(Protocol::Sctp),
        Some(other) => Err(invalid(format!(
            "{field}: unsupported value {other:?} (expected TCP, UDP or SCTP)"
        ))),
    }
}

fn port_number(value: i64, field: &str) -> Result<u16, SpecError> {
    u16::try_from(value)
        .ok()
        .filter(|port| *port != 0)
        .ok_or_else(|| invalid(format!("{field}: {value} is not a valid port (expected 1-65535)")))
}
