//! Validated internal form of a NetworkPolicy (`networking.k8s.io/v1`), built once on the way in.

use std::collections::BTreeMap;
use std::net::IpAddr;

use ipnet::IpNet;
use k8s_openapi::api::networking::v1::{IPBlock, NetworkPolicy, NetworkPolicyPeer, NetworkPolicyPort};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::core::{Selector, SelectorExt};

use super::types::{IpFamily, PolicyRef, Protocol};

/// Why a NetworkPolicy was rejected; the message names the offending field.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct SpecError(pub String);

pub(crate) fn invalid(message: impl Into<String>) -> SpecError {
    SpecError(message.into())
}

/// A NetworkPolicy that passed validation.
#[derive(Debug, Clone)]
pub(crate) struct PolicySpec {
    pub policy: PolicyRef,
    pub pod_selector: Selector,
    /// `Some` when the policy isolates selected pods for ingress (its rules, possibly none).
    pub ingress: Option<Vec<RuleSpec>>,
    /// `Some` when the policy isolates selected pods for egress.
    pub egress: Option<Vec<RuleSpec>>,
}

/// One ingress or egress rule.
#[derive(Debug, Clone)]
pub(crate) struct RuleSpec {
    /// `None`: the `from`/`to` list is absent or empty, so every peer matches.
    pub peers: Option<Vec<PeerSpec>>,
    /// `None`: the `ports` list is absent or empty, so every port matches.
    pub ports: Option<Vec<PortSpec>>,
}

#[derive(Debug, Clone)]
pub(crate) enum PeerSpec {
    /// Pods selected by `podSelector` (absent = every pod) in the namespaces `namespaces` admits.
    Pods {
        namespaces: NamespaceMatch,
        pods: Selector,
    },
    /// Addresses inside `cidr` and outside every `except` block.
    IpBlock { cidr: IpNet, except: Vec<IpNet> },
}

#[derive(Debug, Clone)]
pub(crate) enum NamespaceMatch {
    /// `namespaceSelector` absent: the policy's own namespace.
    Own(String),
    /// `namespaceSelector` present (`{}` selects every namespace).
    Selector(Selector),
}

#[derive(Debug, Clone)]
pub(crate) struct PortSpec {
    pub protocol: Protocol,
    pub port: PortMatch,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum PortMatch {
    /// `port` absent: every port of the protocol.
    Any,
    /// `port` numeric, through `endPort` when set (inclusive).
    Range(u16, u16),
    /// `port` is a name, resolved against the destination pod's containerPorts.
    Named(String),
}

/// A pod's addresses as one packet carries them: only those of the flow's address family. An
/// ipBlock is compared with these, never with every address of a dual-stack pod: an IPv4 block
/// admits a pod's IPv4 traffic, not its IPv6 (NetworkPolicy applies ipBlocks per address).
#[derive(Debug, Clone, Copy)]
pub(crate) struct PodAddrs<'a> {
    ips: &'a [IpAddr],
    /// `None` only when the flow has no address at all (no pod end has an IP).
    family: Option<IpFamily>,
}

impl<'a> PodAddrs<'a> {
    pub fn new(ips: &'a [IpAddr], family: Option<IpFamily>) -> Self {
        PodAddrs { ips, family }
    }

    pub fn iter(self) -> impl Iterator<Item = IpAddr> + 'a {
        let family = self.family;
        self.ips
            .iter()
            .copied()
            .filter(move |ip| family.is_none_or(|f| IpFamily::of(*ip) == f))
    }
}

impl PeerSpec {
    /// For an ipBlock whose `cidr` holds `ip` and whose `except` carves it out again: the cidr
    /// and that except block.
    pub fn excepts(&self, ip: IpAddr) -> Option<(IpNet, IpNet)> {
        match self {
            PeerSpec::IpBlock { cidr, except } if cidr.contains(&ip) => except
                .iter()
                .find(|block| block.contains(&ip))
                .map(|block| (*cidr, *block)),
            _ => None,
        }
    }

    pub fn matches_ip(&self, ip: IpAddr) -> bool {
        match self {
            PeerSpec::IpBlock { cidr, except } => {
                cidr.contains(&ip) && !except.iter().any(|block| block.contains(&ip))
            }
            PeerSpec::Pods { .. } => false,
        }
    }

    pub fn matches_pod(
        &self,
        namespace: &str,
        namespace_labels: &BTreeMap<String, String>,
        pod_labels: &BTreeMap<String, String>,
        pod_ips: PodAddrs,
    ) -> bool {
        match self {
            PeerSpec::Pods { namespaces, pods } => {
                namespaces.matches(namespace, namespace_labels) && pods.matches(pod_labels)
            }
            PeerSpec::IpBlock { .. } => pod_ips.iter().any(|ip| self.matches_ip(ip)),
        }
    }
}

impl NamespaceMatch {
    pub fn matches(&self, namespace: &str, labels: &BTreeMap<String, String>) -> bool {
        match self {
            NamespaceMatch::Own(own) => own == namespace,
            NamespaceMatch::Selector(selector) => selector.matches(labels),
        }
    }
}

impl PortSpec {
    /// Whether this entry admits `port`/`protocol` to a destination whose container ports are
    /// `dest_ports` (`None` when the destination is not a pod, so named ports never match).
    pub fn matches(&self, port: u16, protocol: Protocol, dest_ports: Option<&[NamedPort]>) -> bool {
        if self.protocol != protocol {
            return false;
        }
        match &self.port {
            PortMatch::Any => true,
            PortMatch::Range(start, end) => (*start..=*end).contains(&port),
            PortMatch::Named(name) => dest_ports.is_some_and(|ports| {
                ports
                    .iter()
                    .any(|p| &p.name == name && p.protocol == protocol && p.port == port)
            }),
        }
    }
}

/// A named containerPort of a pod.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct NamedPort {
    pub name: String,
    pub port: u16,
    pub protocol: Protocol,
}

impl RuleSpec {
    pub fn port_matches(&self, port: u16, protocol: Protocol, dest_ports: Option<&[NamedPort]>) -> bool {
        match &self.ports {
            None => true,
            Some(ports) => ports.iter().any(|p| p.matches(port, protocol, dest_ports)),
        }
    }
}

impl TryFrom<&NetworkPolicy> for PolicySpec {
    type Error = SpecError;

    fn try_from(policy: &NetworkPolicy) -> Result<Self, Self::Error> {
        let name = policy
            .metadata
            .name
            .clone()
            .ok_or_else(|| invalid("metadata.name is missing"))?;
        let namespace = policy
            .metadata
            .namespace
            .clone()
            .unwrap_or_else(|| "default".to_string());
        let spec = policy.spec.as_ref().ok_or_else(|| invalid("spec is missing"))?;
        let pod_selector = selector(spec.pod_selector.as_ref(), "spec.podSelector")?;
        let has_egress_rules = spec.egress.as_ref().is_some_and(|rules| !rules.is_empty());

        let (isolates_ingress, isolates_egress) = match &spec.policy_types {
            // Defaulting as the API server does it: Ingress always; Egress only when the policy
            // has at least one egress rule (`egress: []` counts as no egress section).
            None => (true, has_egress_rules),
            Some(types) if types.is_empty() => (true, has_egress_rules),
            Some(types) => {
                let mut ingress = false;
                let mut egress = false;
                for kind in types {
                    match kind.as_str() {
                        "Ingress" => ingress = true,
                        "Egress" => egress = true,
                        other => {
                            return Err(invalid(format!(
                                "spec.policyTypes: unsupported value {other:?} (expected Ingress or Egress)"
                            )));
                        }
                    }
                }
                (ingress, egress)
            }
        };

        let mut ingress = Vec::new();
        for (index, rule) in spec.ingress.iter().flatten().enumerate() {
            let field = format!("spec.ingress[{index}]");
            ingress.push(rule_spec(
                &namespace,
                rule.from.as_deref(),
                rule.ports.as_deref(),
                &field,
                "from",
            )?);
        }
        let mut egress = Vec::new();
        for (index, rule) in spec.egress.iter().flatten().enumerate() {
            let field = format!("spec.egress[{index}]");
            egress.push(rule_spec(
                &namespace,
                rule.to.as_deref(),
                rule.ports.as_deref(),
                &field,
                "to",
            )?);
        }

        Ok(PolicySpec {
            policy: PolicyRef { namespace, name },
            pod_selector,
            ingress: isolates_ingress.then_some(ingress),
            egress: isolates_egress.then_some(egress),
        })
    }
}

fn rule_spec(
    namespace: &str,
    peers: Option<&[NetworkPolicyPeer]>,
    ports: Option<&[NetworkPolicyPort]>,
    field: &str,
    peers_field: &str,
) -> Result<RuleSpec, SpecError> {
    let peers = match peers {
        None | Some([]) => None,
        Some(peers) => Some(
            peers
                .iter()
                .enumerate()
                .map(|(i, peer)| peer_spec(namespace, peer, &format!("{field}.{peers_field}[{i}]")))
                .collect::<Result<Vec<_>, _>>()?,
        ),
    };
    let ports = match ports {
        None | Some([]) => None,
        Some(ports) => Some(
            ports
                .iter()
                .enumerate()
                .map(|(i, port)| port_spec(port, &format!("{field}.ports[{i}]")))
                .collect::<Result<Vec<_>, _>>()?,
        ),
    };
    Ok(RuleSpec { peers, ports })
}

fn peer_spec(namespace: &str, peer: &NetworkPolicyPeer, field: &str) -> Result<PeerSpec, SpecError> {
    match (&peer.ip_block, &peer.pod_selector, &peer.namespace_selector) {
        (Some(block), None, None) => ip_block(block, &format!("{field}.ipBlock")),
        (Some(_), _, _) => Err(invalid(format!(
            "{field}: ipBlock cannot be combined with podSelector or namespaceSelector"
        ))),
        (None, None, None) => Err(invalid(format!(
            "{field}: a peer needs podSelector, namespaceSelector or ipBlock"
        ))),
        (None, pods, namespaces) => {
            let pods = selector(pods.as_ref(), &format!("{field}.podSelector"))?;
            let namespaces = match namespaces {
                None => NamespaceMatch::Own(namespace.to_string()),
                Some(ns) => {
                    NamespaceMatch::Selector(selector(Some(ns), &format!("{field}.namespaceSelector"))?)
                }
            };
            Ok(PeerSpec::Pods { namespaces, pods })
        }
    }
}

fn ip_block(block: &IPBlock, field: &str) -> Result<PeerSpec, SpecError> {
    let cidr: IpNet = block
        .cidr
        .parse()
        .map_err(|_| invalid(format!("{field}.cidr: {:?} is not a CIDR", block.cidr)))?;
    let cidr = cidr.trunc();
    let mut except = Vec::new();
    for (i, text) in block.except.iter().flatten().enumerate() {
        let net: IpNet = text
            .parse()
            .map_err(|_| invalid(format!("{field}.except[{i}]: {text:?} is not a CIDR")))?;
        let net = net.trunc();
        // The API server wants a strict subset: an except equal to the cidr is rejected too.
        if !cidr.contains(&net) || net.prefix_len() <= cidr.prefix_len() {
            return Err(invalid(format!(
                "{field}.except[{i}]: {text} is not a strict subset of cidr {}",
                block.cidr
            )));
        }
        except.push(net);
    }
    Ok(PeerSpec::IpBlock { cidr, except })
}

fn port_spec(port: &NetworkPolicyPort, field: &str) -> Result<PortSpec, SpecError> {
    let protocol = match port.protocol.as_deref() {
        None => Protocol::Tcp,
        Some("TCP") => Protocol::Tcp,
        Some("UDP") => Protocol::Udp,
        Some("SCTP") => Protocol::Sctp,
        Some(other) => {
            return Err(invalid(format!(
                "{field}.protocol: unsupported value {other:?} (expected TCP, UDP or SCTP)"
            )));
        }
    };
    let port_match = match (&port.port, port.end_port) {
        (None, None) => PortMatch::Any,
        (None, Some(_)) => return Err(invalid(format!("{field}.endPort requires a numeric port"))),
        (Some(IntOrString::Int(number)), end) => {
            let start = port_number(*number, &format!("{field}.port"))?;
            let end = match end {
                None => start,
                Some(end) => {
                    let end = port_number(end, &format!("{field}.endPort"))?;
                    if end < start {
                        return Err(invalid(format!(
                            "{field}.endPort: {end} is less than port {start}"
                        )));
                    }
                    end
                }
            };
            PortMatch::Range(start, end)
        }
        (Some(IntOrString::String(name)), end) => {
            if end.is_some() {
                return Err(invalid(format!(
                    "{field}.endPort requires a numeric port, not {name:?}"
                )));
            }
            if !is_port_name(name) {
                return Err(invalid(format!(
                    "{field}.port: {name:?} is neither a port number nor a port name \
                     (1-15 lowercase letters, digits and '-', with a letter)"
                )));
            }
            PortMatch::Named(name.clone())
        }
    };
    Ok(PortSpec {
        protocol,
        port: port_match,
    })
}

/// An IANA service name, as the API server checks `port` strings: at most 15 characters of
/// `a-z`, `0-9` and `-`, at least one letter, no leading, trailing or doubled `-`.
pub(crate) fn is_port_name(name: &str) -> bool {
    (1..=15).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && name.bytes().any(|b| b.is_ascii_lowercase())
        && !name.starts_with('-')
        && !name.ends_with('-')
        && !name.contains("--")
}

fn port_number(value: i32, field: &str) -> Result<u16, SpecError> {
    u16::try_from(value)
        .ok()
        .filter(|port| *port != 0)
        .ok_or_else(|| invalid(format!("{field}: {value} is not a valid port (expected 1-65535)")))
}

/// kube's selector, after the checks the API server makes that kube's conversion leaves out.
pub(crate) fn selector(selector: Option<&LabelSelector>, field: &str) -> Result<Selector, SpecError> {
    let Some(selector) = selector else {
        return Ok(Selector::default());
    };
    for (i, requirement) in selector.match_expressions.iter().flatten().enumerate() {
        let values = requirement.values.as_deref().unwrap_or_default();
        match requirement.operator.as_str() {
            "In" | "NotIn" if values.is_empty() => {
                return Err(invalid(format!(
                    "{field}.matchExpressions[{i}]: operator {} needs values",
                    requirement.operator
                )));
            }
            "Exists" | "DoesNotExist" if !values.is_empty() => {
                return Err(invalid(format!(
                    "{field}.matchExpressions[{i}]: operator {} takes no values",
                    requirement.operator
                )));
            }
            "In" | "NotIn" | "Exists" | "DoesNotExist" => {}
            other => {
                return Err(invalid(format!(
                    "{field}.matchExpressions[{i}]: unsupported operator {other:?}"
                )));
            }
        }
    }
    Selector::try_from(selector.clone()).map_err(|err| invalid(format!("{field}: {err}")))
}
