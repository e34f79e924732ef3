//! The scenario file: topology, objects, faults, the check to run and the expected verdict.
//!
//! Parsing and validation are pure: [`Scenario::parse`] turns YAML text into a validated value or
//! a [`ScenarioError`] naming the problem. The format is documented in the lab's README.

use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, Ipv4Addr};
use std::path::Path;

use ipnet::IpNet;
use serde::{Deserialize, Serialize};

/// Problems with a scenario file, each naming the offending object.
#[derive(Debug, thiserror::Error)]
pub enum ScenarioError {
    #[error("failed to read scenario {path}")]
    Read {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("scenario is not valid yaml for the lab's format")]
    Yaml(#[source] serde_yaml_ng::Error),
    #[error("scenario {0}")]
    Invalid(String),
}

fn invalid(msg: impl Into<String>) -> ScenarioError {
    ScenarioError::Invalid(msg.into())
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Scenario {
    pub name: String,
    #[serde(default)]
    pub description: String,
    pub nodes: Vec<String>,
    /// Each node's `topology.kubernetes.io/zone` label (node → zone); a node not listed has none.
    #[serde(default)]
    pub zones: BTreeMap<String, String>,
    /// The cluster's address families, the primary first: `[IPv4]` (default), `[IPv6]`, or
    /// dual-stack `[IPv4, IPv6]` / `[IPv6, IPv4]`.
    #[serde(default = "ipv4_only")]
    pub ip_families: Vec<IpFamily>,
    /// How real kube-proxy programs Services when the lab runs the real dataplane.
    #[serde(default)]
    pub proxy_mode: ProxyMode,
    /// NodeLocal DNSCache: a DNS cache on every node at 169.254.20.10, forwarding to kube-dns,
    /// and the pods' resolv.conf naming it (kubelet `--cluster-dns`). IPv4 clusters only.
    #[serde(default)]
    pub node_local_dns: bool,
    /// A network outside the cluster (198.51.100.0/24, beyond the underlay router, which does not
    /// route pod addresses back): a host at 198.51.100.10 serving TCP 80 and 443, and a DNS
    /// server at 198.51.100.53 answering `partner.example` with it, which the cluster DNS forwards
    /// names outside the cluster to. Every node masquerades its pods' traffic to it (the CNI's
    /// outgoing NAT). IPv4 clusters only.
    #[serde(default)]
    pub outside: bool,
    #[serde(default)]
    pub pods: Vec<PodSpec>,
    #[serde(default)]
    pub services: Vec<ServiceSpec>,
    /// Raw EndpointSlices replacing the derived ones of the Service named by their
    /// `kubernetes.io/service-name` label.
    #[serde(default)]
    pub endpoint_slices: Vec<serde_json::Value>,
    /// Extra objects (NetworkPolicies, ...) served as they are.
    #[serde(default)]
    pub objects: Vec<serde_json::Value>,
    #[serde(default)]
    pub faults: Vec<Fault>,
    /// Bearer tokens the API stand-in's TokenReview accepts.
    #[serde(default)]
    pub tokens: Vec<crate::rbac::TokenSpec>,
    /// Roles, ClusterRoles, RoleBindings and ClusterRoleBindings its SubjectAccessReview evaluates.
    #[serde(default)]
    pub rbac: Vec<serde_json::Value>,
    #[serde(default)]
    pub check: Option<Check>,
    #[serde(default)]
    pub expect: Option<Expect>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PodSpec {
    pub namespace: String,
    pub name: String,
    pub node: String,
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    #[serde(default = "yes")]
    pub ready: bool,
    #[serde(default)]
    pub ip: Option<Ipv4Addr>,
    #[serde(default)]
    pub ports: Vec<ContainerPortSpec>,
    /// Ports of a native sidecar (an init container with `restartPolicy: Always`).
    #[serde(default)]
    pub sidecar_ports: Vec<ContainerPortSpec>,
    /// Being deleted: the pod has a deletionTimestamp and its endpoints are terminating
    /// (still `serving` while it passes readiness).
    #[serde(default)]
    pub terminating: bool,
    #[serde(default)]
    pub listen: Vec<ListenSpec>,
}

fn yes() -> bool {
    true
}

/// An address family, spelled as Kubernetes spells it in `ipFamilies`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum IpFamily {
    #[serde(rename = "IPv4")]
    V4,
    #[serde(rename = "IPv6")]
    V6,
}

impl IpFamily {
    /// The Kubernetes spelling (`IPv4`, `IPv6`).
    pub fn as_k8s(self) -> &'static str {
        match self {
            IpFamily::V4 => "IPv4",
            IpFamily::V6 => "IPv6",
        }
    }

    pub fn of(ip: IpAddr) -> IpFamily {
        if ip.is_ipv4() { IpFamily::V4 } else { IpFamily::V6 }
    }
}

fn ipv4_only() -> Vec<IpFamily> {
    vec![IpFamily::V4]
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, Default)]
pub enum Protocol {
    #[default]
    #[serde(rename = "TCP")]
    Tcp,
    #[serde(rename = "UDP")]
    Udp,
}

impl Protocol {
    /// The Kubernetes spelling (`TCP`, `UDP`).
    pub fn as_k8s(self) -> &'static str {
        match self {
            Protocol::Tcp => "TCP",
            Protocol::Udp => "UDP",
        }
    }

    /// The iptables spelling (`tcp`, `udp`).
    pub fn as_iptables(self) -> &'static str {
        match self {
            Protocol::Tcp => "tcp",
            Protocol::Udp => "udp",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ContainerPortSpec {
    #[serde(default)]
    pub name: Option<String>,
    pub container_port: u16,
    #[serde(default)]
    pub protocol: Protocol,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ListenSpec {
    pub port: u16,
    #[serde(default)]
    pub protocol: Protocol,
    /// Where the process binds; absent means the wildcard: `0.0.0.0` in an IPv4-only cluster,
    /// `[::]` (dual-stack socket, serving IPv4 too) when the cluster has IPv6.
    #[serde(default)]
    pub address: Option<IpAddr>,
}

impl ListenSpec {
    /// The address the pod's process binds in a cluster with `families`.
    pub fn bind_address(&self, families: &[IpFamily]) -> IpAddr {
        self.address.unwrap_or(if families.contains(&IpFamily::V6) {
            IpAddr::from(std::net::Ipv6Addr::UNSPECIFIED)
        } else {
            IpAddr::from(Ipv4Addr::UNSPECIFIED)
        })
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ServiceSpec {
    pub namespace: String,
    pub name: String,
    /// `None` means a Service without selector (no derived EndpointSlices).
    #[serde(default)]
    pub selector: Option<BTreeMap<String, String>>,
    #[serde(default)]
    pub headless: bool,
    /// A fixed ClusterIP inside 10.96.0.0/16; allocated when absent.
    #[serde(default, rename = "clusterIP")]
    pub cluster_ip: Option<Ipv4Addr>,
    /// The Service's families (a subset of the cluster's); absent means all of the cluster's
    /// (`PreferDualStack` in a dual-stack cluster).
    #[serde(default)]
    pub ip_families: Option<Vec<IpFamily>>,
    #[serde(default)]
    pub ports: Vec<ServicePortSpec>,
    /// `spec.internalTrafficPolicy` (`Cluster` when absent).
    #[serde(default)]
    pub internal_traffic_policy: TrafficPolicy,
    /// `spec.trafficDistribution`: `PreferClose`, `PreferSameZone` or `PreferSameNode`.
    #[serde(default)]
    pub traffic_distribution: Option<String>,
    /// `spec.type`: `ClusterIP` (default), `NodePort` or `LoadBalancer`.
    #[serde(default, rename = "type")]
    pub service_type: ServiceType,
    /// `spec.externalTrafficPolicy` of a NodePort or LoadBalancer Service (`Cluster` when absent).
    #[serde(default)]
    pub external_traffic_policy: Option<TrafficPolicy>,
    /// `spec.healthCheckNodePort` of a LoadBalancer Service with `externalTrafficPolicy: Local`;
    /// absent, the API server allocates one (the stand-in picks a free one deterministically).
    #[serde(default)]
    pub health_check_node_port: Option<u16>,
    /// A LoadBalancer Service's address: the lab, as its load-balancer controller, writes it into
    /// `status.loadBalancer.ingress[0].ip`. IPv4.
    #[serde(default, rename = "loadBalancerIP")]
    pub load_balancer_ip: Option<IpAddr>,
    /// `spec.loadBalancerSourceRanges` of a LoadBalancer Service: the client ranges its load
    /// balancer address admits (kube-proxy drops the rest; node ports are not subject to them).
    /// Empty admits every client, as does a zero-length prefix of a family.
    #[serde(default, with = "source_ranges", skip_serializing_if = "Vec::is_empty")]
    pub load_balancer_source_ranges: Vec<IpNet>,
}

impl ServiceSpec {
    /// The `externalTrafficPolicy` in effect (`Cluster` unless set).
    pub fn effective_external_traffic_policy(&self) -> TrafficPolicy {
        self.external_traffic_policy.unwrap_or_default()
    }
}

/// `loadBalancerSourceRanges` as YAML strings, each checked by [`parse_source_range`].
mod source_ranges {
    use ipnet::IpNet;
    use serde::de::Error as _;
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(ranges: &[IpNet], s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(ranges.iter().map(ToString::to_string))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<IpNet>, D::Error> {
        Vec::<String>::deserialize(d)?
            .iter()
            .map(|text| {
                super::parse_source_range(text)
                    .map_err(|why| D::Error::custom(format!("loadBalancerSourceRanges entry {text:?} {why}")))
            })
            .collect()
    }
}

/// One `loadBalancerSourceRanges` entry as kube-apiserver v1.36 validates it (its strict CIDR
/// validation, on by default): spaces around it allowed, as the API always has; an address
/// without leading zeros and not IPv4-mapped IPv6; a prefix length of the address's family,
/// without leading zeros; no address bits set beyond the prefix length. The error says why not.
pub fn parse_source_range(text: &str) -> Result<IpNet, String> {
    const NOT_A_CIDR: &str = "is not a CIDR like 192.0.2.0/24 or 2001:db8::/64";
    let (addr, len) = text.trim().split_once('/').ok_or(NOT_A_CIDR)?;
    // Rust's address parser refuses IPv4 octets with leading zeros, as Go's netip does.
    let addr: IpAddr = addr.parse().map_err(|_| NOT_A_CIDR)?;
    let len_ok =
        !len.is_empty() && len.bytes().all(|b| b.is_ascii_digit()) && (len == "0" || !len.starts_with('0'));
    let len: u8 = len.parse().ok().filter(|_| len_ok).ok_or(NOT_A_CIDR)?;
    let net = IpNet::new(addr, len).map_err(|_| NOT_A_CIDR)?;
    if let IpAddr::V6(v6) = addr
        && v6.to_ipv4_mapped().is_some()
    {
        return Err("has an IPv4-mapped IPv6 address; write the IPv4 range".into());
    }
    if net.trunc() != net {
        return Err(format!(
            "has bits set beyond its prefix length (the range is {})",
            net.trunc()
        ));
    }
    Ok(net)
}

/// A Service's `internalTrafficPolicy` or `externalTrafficPolicy`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
pub enum TrafficPolicy {
    #[default]
    Cluster,
    Local,
}

impl TrafficPolicy {
    /// The Kubernetes spelling (`Cluster`, `Local`).
    pub fn as_k8s(self) -> &'static str {
        match self {
            TrafficPolicy::Cluster => "Cluster",
            TrafficPolicy::Local => "Local",
        }
    }
}

/// A Service's `spec.type` (an ExternalName Service is an `objects` entry).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
pub enum ServiceType {
    #[default]
    #[serde(rename = "ClusterIP")]
    ClusterIp,
    NodePort,
    LoadBalancer,
}

impl ServiceType {
    /// The Kubernetes spelling (`ClusterIP`, `NodePort`, `LoadBalancer`).
    pub fn as_k8s(self) -> &'static str {
        match self {
            ServiceType::ClusterIp => "ClusterIP",
            ServiceType::NodePort => "NodePort",
            ServiceType::LoadBalancer => "LoadBalancer",
        }
    }

    /// Whether the Service takes traffic on node ports (NodePort and LoadBalancer do).
    pub fn has_node_ports(self) -> bool {
        self != ServiceType::ClusterIp
    }
}

/// The port range kube-apiserver allocates node ports from (its default `--service-node-port-range`).
pub const NODE_PORT_RANGE: std::ops::RangeInclusive<u16> = 30000..=32767;

/// The `trafficDistribution` values the API accepts.
pub const TRAFFIC_DISTRIBUTIONS: [&str; 3] = ["PreferClose", "PreferSameZone", "PreferSameNode"];

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ServicePortSpec {
    #[serde(default)]
    pub name: Option<String>,
    pub port: u16,
    /// Defaults to `port`, as in Kubernetes.
    #[serde(default)]
    pub target_port: Option<TargetPort>,
    #[serde(default)]
    pub protocol: Protocol,
    /// The port on every node (NodePort and LoadBalancer Services; required there).
    #[serde(default)]
    pub node_port: Option<u16>,
}

impl ServicePortSpec {
    pub fn effective_target(&self) -> TargetPort {
        self.target_port.clone().unwrap_or(TargetPort::Number(self.port))
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum TargetPort {
    Number(u16),
    Name(String),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DenyMode {
    Drop,
    Reject,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case", deny_unknown_fields)]
pub enum Fault {
    /// Traffic from one pod to another dropped or rejected on the nodes' forwarding path.
    /// `from`/`to` are `namespace/name`, or `namespace/*` for every pod of a namespace; `to` may
    /// be `outside` (the outside network's host, with `outside: true`).
    Deny {
        from: String,
        to: String,
        #[serde(default)]
        port: Option<u16>,
        #[serde(default)]
        protocol: Option<Protocol>,
        #[serde(default = "drop_mode")]
        mode: DenyMode,
        /// Only this family's traffic (a policy that admits the pod by one family's ipBlock);
        /// absent: both.
        #[serde(default)]
        family: Option<IpFamily>,
    },
    /// The cluster DNS server is not running (its pod is not ready).
    DnsDown,
    /// The NodeLocal DNSCache of `node` is not running: its address answers nothing.
    NodeLocalDnsDown { node: String },
    /// A Service's kube-proxy rules are missing on one node (stale kube-proxy).
    ServiceRulesMissing { service: String, node: String },
    /// The node's link to the other nodes is down; with `family`, only that family's traffic
    /// crosses it no more (dropped on the node's uplink).
    LinkCut {
        node: String,
        #[serde(default)]
        family: Option<IpFamily>,
    },
    /// The node's link to the other nodes carries at most `mtu` bytes; larger packets are dropped
    /// silently (no ICMP), TCP too: the lab's node links then run without segmentation offloads.
    LinkMtu { node: String, mtu: u32 },
    /// Replies lost on the way back: the SYN from `to` reaches `from`, and `from`'s SYN-ACKs are
    /// dropped on the nodes' forwarding path. `from`/`to` are `namespace/name`.
    ReplyDrop { from: String, to: String },
    /// One in `every` new connections (or datagrams) from pod `from` to pod `to` dropped on the
    /// way out of `from`'s node: an intermittent loss, counted (iptables `statistic --mode nth`,
    /// the first one dropped) so that the share is the same on every run. Only those sent to
    /// `to`'s own address, unless `throughService`: then also those a Service address was
    /// translated to. The agent's probe of a lost connection sends a fresh SYN every 100 ms
    /// until its timeout, and each counts: `every` above 10 keeps the loss one connection in
    /// `every` rounds.
    IntermittentDrop {
        from: String,
        to: String,
        #[serde(default)]
        port: Option<u16>,
        #[serde(default)]
        protocol: Option<Protocol>,
        every: u32,
        #[serde(default, rename = "throughService")]
        through_service: bool,
    },
    /// Node `node` does not masquerade its pods' traffic to the outside network: it leaves with
    /// the pod's own address, which nothing there routes back (the CNI's outgoing NAT missing).
    EgressNoSnat { node: String },
    /// Node `node` drops its pods' traffic to the outside network on its forwarding path.
    EgressDrop { node: String },
    /// Node `node` drops what the outside network answers, on its forwarding path back to the pod.
    EgressReplyDrop { node: String },
    /// The outside host drops every TCP connection to it (a firewall beyond the cluster).
    OutsideDrop,
    /// The outside network's DNS server does not run: the cluster DNS's upstream does not answer.
    UpstreamDnsDown,
    /// A stale Service rule on one node: its rules for `service` also translate to the pod `to`,
    /// which does not back the Service (kube-proxy on that node missed an update).
    ServiceRuleStale {
        service: String,
        node: String,
        to: String,
    },
}

/// The name a `deny` fault's `to` gives the outside network's host.
pub const OUTSIDE_HOST: &str = "outside";

impl Fault {
    /// The fault's `kind`, as a scenario names it.
    pub fn kind(&self) -> String {
        serde_json::to_value(self)
            .ok()
            .and_then(|v| v["kind"].as_str().map(str::to_string))
            .unwrap_or_default()
    }
}

/// kube-proxy's mode (`iptables`, the default, or `nftables`; this kernel has no IPVS).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ProxyMode {
    #[default]
    Iptables,
    Nftables,
}

impl ProxyMode {
    pub fn as_str(self) -> &'static str {
        match self {
            ProxyMode::Iptables => "iptables",
            ProxyMode::Nftables => "nftables",
        }
    }
}

fn drop_mode() -> DenyMode {
    DenyMode::Drop
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Check {
    pub from: String,
    pub to: String,
    /// `--repeat N`: the live probes sent N times (for intermittent faults).
    #[serde(default)]
    pub repeat: Option<u32>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Expect {
    pub verdict: Verdict,
    #[serde(default)]
    pub failing_layer: Option<String>,
    /// Words the check's output must contain (its evidence, e.g. "MTU black hole").
    #[serde(default)]
    pub evidence: Vec<String>,
    /// Words the check's output must not contain (e.g. no MTU finding on a healthy path).
    #[serde(default)]
    pub absent: Vec<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Verdict {
    Reachable,
    Unreachable,
    Undetermined,
}

impl Verdict {
    pub fn as_str(self) -> &'static str {
        match self {
            Verdict::Reachable => "reachable",
            Verdict::Unreachable => "unreachable",
            Verdict::Undetermined => "undetermined",
        }
    }
}

/// Namespaces the lab itself uses, created in every lab.
pub const SYSTEM_NAMESPACES: [&str; 3] = ["default", "kube-system", "netdiag"];

/// Splits `namespace/name`.
pub fn split_ref(s: &str) -> Option<(&str, &str)> {
    let (ns, name) = s.split_once('/')?;
    (!ns.is_empty() && !name.is_empty() && !name.contains('/')).then_some((ns, name))
}

fn is_dns_label(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 63
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !s.starts_with('-')
        && !s.ends_with('-')
}

/// Two LoadBalancer Services may share an address, but not a port of it.
fn validate_load_balancer_ports(services: &[ServiceSpec]) -> Result<(), ScenarioError> {
    let mut taken: BTreeMap<(IpAddr, u16, Protocol), String> = BTreeMap::new();
    for svc in services {
        let Some(ip) = svc.load_balancer_ip else { continue };
        let id = format!("{}/{}", svc.namespace, svc.name);
        for p in &svc.ports {
            if let Some(owner) = taken.insert((ip, p.port, p.protocol), id.clone()) {
                return Err(invalid(format!(
                    "service {id} loadBalancerIP {ip} port {}/{} is already served for service {owner}",
                    p.port,
                    p.protocol.as_k8s()
                )));
            }
        }
    }
    Ok(())
}

/// A families list: one or two distinct families, each one of `allowed`.
fn check_families(what: &str, families: &[IpFamily], allowed: &[IpFamily]) -> Result<(), ScenarioError> {
    let distinct: BTreeSet<&IpFamily> = families.iter().collect();
    if families.is_empty() || distinct.len() != families.len() {
        return Err(invalid(format!("{what} must list IPv4, IPv6 or both, each once")));
    }
    if let Some(f) = families.iter().find(|f| !allowed.contains(f)) {
        return Err(invalid(format!(
            "{what} lists {}, which the cluster lacks",
            f.as_k8s()
        )));
    }
    Ok(())
}

impl Scenario {
    pub fn load(path: &Path) -> Result<Self, ScenarioError> {
        let text = std::fs::read_to_string(path).map_err(|source| ScenarioError::Read {
            path: path.display().to_string(),
            source,
        })?;
        Self::parse(&text)
    }

    pub fn parse(text: &str) -> Result<Self, ScenarioError> {
        let scenario: Scenario = serde_yaml_ng::from_str(text).map_err(ScenarioError::Yaml)?;
        scenario.validate()?;
        Ok(scenario)
    }

    /// Every namespace the lab creates: the ones pods, Services and objects use, plus the system ones.
    pub fn namespaces(&self) -> BTreeSet<String> {
        let mut set: BTreeSet<String> = SYSTEM_NAMESPACES.iter().map(|s| s.to_string()).collect();
        set.extend(self.pods.iter().map(|p| p.namespace.clone()));
        set.extend(self.services.iter().map(|s| s.namespace.clone()));
        for obj in self.objects.iter().chain(&self.endpoint_slices) {
            if let Some(ns) = obj.pointer("/metadata/namespace").and_then(|v| v.as_str()) {
                set.insert(ns.to_string());
            }
        }
        set
    }

    pub fn pod(&self, reference: &str) -> Option<&PodSpec> {
        let (ns, name) = split_ref(reference)?;
        self.pods.iter().find(|p| p.namespace == ns && p.name == name)
    }

    fn validate(&self) -> Result<(), ScenarioError> {
        self.validate_rbac()?;
        let nodes = self.validate_nodes()?;
        let pods = self.validate_pods(&nodes)?;
        let services = self.validate_services()?;
        self.validate_objects(&services)?;
        self.validate_faults(&nodes, &pods, &services)?;
        if self.expect.is_some() && self.check.is_none() {
            return Err(invalid("has expect but no check"));
        }
        Ok(())
    }

    fn validate_rbac(&self) -> Result<(), ScenarioError> {
        if let Some(other) = self.rbac.iter().find(|o| !crate::rbac::is_rbac_kind(o)) {
            return Err(invalid(format!(
                "rbac lists {} {}, which is not an rbac.authorization.k8s.io/v1 kind",
                other["kind"], other["metadata"]["name"]
            )));
        }
        crate::rbac::Rbac::from_objects(&self.rbac).map_err(|e| invalid(format!("rbac: {e}")))?;
        Ok(())
    }

    /// The node names, each a DNS label, listed once.
    fn validate_nodes(&self) -> Result<BTreeSet<&str>, ScenarioError> {
        if self.nodes.is_empty() {
            return Err(invalid("has no nodes"));
        }
        check_families("ipFamilies", &self.ip_families, &[IpFamily::V4, IpFamily::V6])?;
        if self.nodes.len() > 200 {
            return Err(invalid("has more than 200 nodes"));
        }
        let mut nodes = BTreeSet::new();
        for node in &self.nodes {
            if !is_dns_label(node) {
                return Err(invalid(format!(
                    "node name {node:?} is not a lowercase dns label"
                )));
            }
            if !nodes.insert(node.as_str()) {
                return Err(invalid(format!("lists node {node} twice")));
            }
        }
        if self.outside && self.ip_families.first() != Some(&IpFamily::V4) {
            return Err(invalid("outside needs an IPv4 (or IPv4-primary) cluster"));
        }
        if self.node_local_dns && self.ip_families.first() != Some(&IpFamily::V4) {
            return Err(invalid("nodeLocalDns needs an IPv4 (or IPv4-primary) cluster"));
        }
        for (node, zone) in &self.zones {
            if !nodes.contains(node.as_str()) {
                return Err(invalid(format!("zones names unknown node {node}")));
            }
            if zone.is_empty() {
                return Err(invalid(format!("zones gives node {node} an empty zone")));
            }
        }
        Ok(nodes)
    }

    /// The pods as `namespace/name`, each on a known node, with distinct addresses and ports.
    fn validate_pods(&self, nodes: &BTreeSet<&str>) -> Result<BTreeSet<String>, ScenarioError> {
        let mut pods = BTreeSet::new();
        let mut ips = BTreeSet::new();
        for pod in &self.pods {
            let id = format!("{}/{}", pod.namespace, pod.name);
            if !is_dns_label(&pod.namespace) || !is_dns_label(&pod.name) {
                return Err(invalid(format!(
                    "pod {id:?} needs lowercase dns-label namespace and name"
                )));
            }
            // kube-system may hold more pods (another DNS replica); the lab's own keep their names.
            let lab_own = pod.namespace == crate::plan::AGENT_NAMESPACE
                || (pod.namespace == crate::plan::DNS_POD_NAMESPACE && pod.name == crate::plan::DNS_POD_NAME);
            if lab_own {
                return Err(invalid(format!(
                    "pod {id} is one the lab reserves for its own pods (namespace {}, or {}/{})",
                    crate::plan::AGENT_NAMESPACE,
                    crate::plan::DNS_POD_NAMESPACE,
                    crate::plan::DNS_POD_NAME
                )));
            }
            if !pods.insert(id.clone()) {
                return Err(invalid(format!("lists pod {id} twice")));
            }
            if !nodes.contains(pod.node.as_str()) {
                return Err(invalid(format!("pod {id} is on unknown node {}", pod.node)));
            }
            if let Some(ip) = pod.ip
                && !ips.insert(ip)
            {
                return Err(invalid(format!("pod {id} reuses ip {ip}")));
            }
            let mut names = BTreeSet::new();
            for port in &pod.ports {
                if let Some(name) = &port.name
                    && !names.insert(name.as_str())
                {
                    return Err(invalid(format!("pod {id} names two container ports {name}")));
                }
            }
            let mut listens = BTreeSet::new();
            for l in &pod.listen {
                if !listens.insert((l.port, l.protocol)) {
                    return Err(invalid(format!(
                        "pod {id} listens twice on {}/{}",
                        l.port,
                        l.protocol.as_k8s()
                    )));
                }
            }
        }
        Ok(pods)
    }

    /// The Services as `namespace/name`, with valid, distinct ClusterIPs and ports.
    fn validate_services(&self) -> Result<BTreeSet<String>, ScenarioError> {
        let mut services = BTreeSet::new();
        let mut cluster_ips = BTreeMap::new();
        for svc in &self.services {
            let id = format!("{}/{}", svc.namespace, svc.name);
            if !is_dns_label(&svc.namespace) || !is_dns_label(&svc.name) {
                return Err(invalid(format!(
                    "service {id:?} needs lowercase dns-label namespace and name"
                )));
            }
            if id == "kube-system/kube-dns" {
                return Err(invalid(
                    "defines kube-system/kube-dns, which the lab provides itself",
                ));
            }
            if !services.insert(id.clone()) {
                return Err(invalid(format!("lists service {id} twice")));
            }
            if let Some(families) = &svc.ip_families {
                check_families(&format!("service {id} ipFamilies"), families, &self.ip_families)?;
            }
            if let Some(td) = &svc.traffic_distribution
                && !TRAFFIC_DISTRIBUTIONS.contains(&td.as_str())
            {
                return Err(invalid(format!(
                    "service {id} trafficDistribution {td:?} is none of {}",
                    TRAFFIC_DISTRIBUTIONS.join(", ")
                )));
            }
            if svc.headless && svc.cluster_ip.is_some() {
                return Err(invalid(format!("service {id} is headless and has a clusterIP")));
            }
            if let Some(ip) = svc.cluster_ip
                && (ip.octets()[0..2] != [10, 96] || ip == crate::plan::DNS_SERVICE_IP)
            {
                return Err(invalid(format!(
                    "service {id} clusterIP {ip} is outside 10.96.0.0/16 or taken by kube-dns"
                )));
            }
            if let Some(ip) = svc.cluster_ip
                && let Some(owner) = cluster_ips.insert(ip, id.clone())
            {
                return Err(invalid(format!(
                    "service {id} clusterIP {ip} is already the clusterIP of service {owner}"
                )));
            }
            let mut seen = BTreeSet::new();
            for p in &svc.ports {
                if !seen.insert((p.port, p.protocol)) {
                    return Err(invalid(format!(
                        "service {id} exposes {}/{} twice",
                        p.port,
                        p.protocol.as_k8s()
                    )));
                }
                if svc.ports.len() > 1 && p.name.is_none() {
                    return Err(invalid(format!(
                        "service {id} has several ports, so each needs a name"
                    )));
                }
            }
            self.validate_service_type(svc, &id)?;
        }
        self.validate_node_ports()?;
        validate_load_balancer_ports(&self.services)?;
        Ok(services)
    }

    /// The fields that go with a Service's type: a nodePort on every port of a NodePort or
    /// LoadBalancer Service and on no other, `externalTrafficPolicy` only there,
    /// `healthCheckNodePort` only on a LoadBalancer with `externalTrafficPolicy: Local`, and a
    /// `loadBalancerIP` on a LoadBalancer and nowhere else, `loadBalancerSourceRanges` only there.
    fn validate_service_type(&self, svc: &ServiceSpec, id: &str) -> Result<(), ScenarioError> {
        let ty = svc.service_type;
        if !ty.has_node_ports() {
            if let Some(p) = svc.ports.iter().find(|p| p.node_port.is_some()) {
                return Err(invalid(format!(
                    "service {id} is of type ClusterIP, so its port {}/{} cannot have a nodePort",
                    p.port,
                    p.protocol.as_k8s()
                )));
            }
            if svc.external_traffic_policy.is_some() {
                return Err(invalid(format!(
                    "service {id} is of type ClusterIP, so it cannot have an externalTrafficPolicy \
                     (only NodePort and LoadBalancer Services have one)"
                )));
            }
        } else if svc.headless {
            return Err(invalid(format!(
                "service {id} is headless, so it cannot be of type {}",
                ty.as_k8s()
            )));
        }
        for p in svc.ports.iter().filter(|_| ty.has_node_ports()) {
            match p.node_port {
                None => {
                    return Err(invalid(format!(
                        "service {id} is of type {}, so its port {}/{} needs a nodePort (the lab \
                         does not allocate them, so that verdicts read the same on every run)",
                        ty.as_k8s(),
                        p.port,
                        p.protocol.as_k8s()
                    )));
                }
                Some(n) if !NODE_PORT_RANGE.contains(&n) => {
                    return Err(invalid(format!(
                        "service {id} nodePort {n} is outside {}-{}",
                        NODE_PORT_RANGE.start(),
                        NODE_PORT_RANGE.end()
                    )));
                }
                Some(_) => {}
            }
        }
        let health_checked = ty == ServiceType::LoadBalancer
            && svc.effective_external_traffic_policy() == TrafficPolicy::Local;
        if let Some(hc) = svc.health_check_node_port {
            if !health_checked {
                return Err(invalid(format!(
                    "service {id} has a healthCheckNodePort, which only a LoadBalancer Service with \
                     externalTrafficPolicy: Local has"
                )));
            }
            if !NODE_PORT_RANGE.contains(&hc) {
                return Err(invalid(format!(
                    "service {id} healthCheckNodePort {hc} is outside {}-{}",
                    NODE_PORT_RANGE.start(),
                    NODE_PORT_RANGE.end()
                )));
            }
        }
        if ty != ServiceType::LoadBalancer && !svc.load_balancer_source_ranges.is_empty() {
            return Err(invalid(format!(
                "service {id} is of type {}, so it cannot have loadBalancerSourceRanges (only a \
                 LoadBalancer Service has them)",
                ty.as_k8s()
            )));
        }
        self.validate_load_balancer_ip(svc, id)
    }

    /// A LoadBalancer Service's address: present on it alone, IPv4, of a family the Service has,
    /// and outside every range the lab takes addresses from.
    fn validate_load_balancer_ip(&self, svc: &ServiceSpec, id: &str) -> Result<(), ScenarioError> {
        let ip = match (svc.service_type, svc.load_balancer_ip) {
            (ServiceType::LoadBalancer, Some(ip)) => ip,
            (ServiceType::LoadBalancer, None) => {
                return Err(invalid(format!(
                    "service {id} is of type LoadBalancer, so it needs a loadBalancerIP (the \
                     address the lab's load balancer gives it)"
                )));
            }
            (_, None) => return Ok(()),
            (ty, Some(_)) => {
                return Err(invalid(format!(
                    "service {id} is of type {}, so it cannot have a loadBalancerIP (only a \
                     LoadBalancer Service has one)",
                    ty.as_k8s()
                )));
            }
        };
        let IpAddr::V4(v4) = ip else {
            return Err(invalid(format!(
                "service {id} loadBalancerIP {ip} is not an IPv4 address (the lab's load balancer \
                 gives IPv4 addresses only)"
            )));
        };
        let families = svc.ip_families.as_deref().unwrap_or(&self.ip_families);
        if !families.contains(&IpFamily::V4) {
            return Err(invalid(format!(
                "service {id} is of type LoadBalancer with the IPv4 loadBalancerIP {ip}, so it needs \
                 the IPv4 family, which it lacks"
            )));
        }
        if let Some(what) = crate::plan::lab_range_of(v4) {
            return Err(invalid(format!(
                "service {id} loadBalancerIP {ip} lies in {what}, which the lab uses itself; take \
                 one from 203.0.113.0/24"
            )));
        }
        if v4.is_unspecified() || v4.is_broadcast() || v4.is_multicast() {
            return Err(invalid(format!(
                "service {id} loadBalancerIP {ip} is not a unicast address"
            )));
        }
        Ok(())
    }

    /// Node ports are one pool for the whole cluster, as kube-apiserver allocates them: a
    /// nodePort belongs to one Service, where only the TCP and UDP ports of one port number may
    /// share it; a healthCheckNodePort is a node port of its own.
    fn validate_node_ports(&self) -> Result<(), ScenarioError> {
        // nodePort → (the Service holding it, the Service port that has it, protocols).
        let mut owners: BTreeMap<u16, (String, u16, BTreeSet<Protocol>)> = BTreeMap::new();
        for svc in self.services.iter().filter(|s| s.service_type.has_node_ports()) {
            let id = format!("{}/{}", svc.namespace, svc.name);
            for p in &svc.ports {
                let Some(n) = p.node_port else { continue };
                let (owner, port, protocols) = owners
                    .entry(n)
                    .or_insert_with(|| (id.clone(), p.port, BTreeSet::new()));
                if *owner != id {
                    return Err(invalid(format!(
                        "service {id} nodePort {n} is already the nodePort of service {owner}"
                    )));
                }
                if *port != p.port {
                    return Err(invalid(format!(
                        "service {id} gives nodePort {n} to ports {port} and {}; only the TCP and \
                         UDP ports of one port number may share a nodePort",
                        p.port
                    )));
                }
                if !protocols.insert(p.protocol) {
                    return Err(invalid(format!(
                        "service {id} uses nodePort {n} twice for {}",
                        p.protocol.as_k8s()
                    )));
                }
            }
        }
        let mut health_checks: BTreeMap<u16, String> = BTreeMap::new();
        for svc in &self.services {
            let Some(hc) = svc.health_check_node_port else {
                continue;
            };
            let id = format!("{}/{}", svc.namespace, svc.name);
            if let Some((owner, _, _)) = owners.get(&hc) {
                return Err(invalid(format!(
                    "service {id} healthCheckNodePort {hc} is already the nodePort of service {owner}"
                )));
            }
            if let Some(owner) = health_checks.insert(hc, id.clone()) {
                return Err(invalid(format!(
                    "service {id} healthCheckNodePort {hc} is already the healthCheckNodePort of \
                     service {owner}"
                )));
            }
        }
        Ok(())
    }

    /// The extra objects are served kinds and each EndpointSlice belongs to a known Service.
    fn validate_objects(&self, services: &BTreeSet<String>) -> Result<(), ScenarioError> {
        for (i, obj) in self.objects.iter().enumerate() {
            crate::objects::resource_of(obj).map_err(|e| invalid(format!("objects[{i}]: {e}")))?;
        }
        for (i, obj) in self.endpoint_slices.iter().enumerate() {
            let svc = obj
                .pointer("/metadata/labels/kubernetes.io~1service-name")
                .and_then(|v| v.as_str());
            let ns = obj.pointer("/metadata/namespace").and_then(|v| v.as_str());
            let name = obj.pointer("/metadata/name").and_then(|v| v.as_str());
            match (svc, ns, name) {
                (Some(svc), Some(ns), Some(_)) => {
                    if !services.contains(&format!("{ns}/{svc}")) {
                        return Err(invalid(format!(
                            "endpointSlices[{i}] belongs to unknown service {ns}/{svc}"
                        )));
                    }
                }
                _ => {
                    return Err(invalid(format!(
                        "endpointSlices[{i}] needs metadata.name, metadata.namespace and the \
                         kubernetes.io/service-name label"
                    )));
                }
            }
        }
        Ok(())
    }

    /// Each fault names nodes, pods and Services the scenario has.
    /// A fault's end: `namespace/name` of a scenario pod or of the lab's own (the DNS pod, an
    /// agent), or `namespace/*` when `namespaces` allows it.
    fn validate_fault_end(
        &self,
        kind: &str,
        end: &str,
        pods: &BTreeSet<String>,
        namespaces: bool,
    ) -> Result<(), ScenarioError> {
        let (ns, name) = split_ref(end)
            .ok_or_else(|| invalid(format!("{kind} fault end {end:?} is not namespace/name")))?;
        let lab_pod = (ns == crate::plan::DNS_POD_NAMESPACE && name == crate::plan::DNS_POD_NAME)
            || (ns == crate::plan::AGENT_NAMESPACE
                && self.nodes.iter().any(|n| crate::plan::agent_pod_name(n) == name));
        let lab_ns = ns == crate::plan::DNS_POD_NAMESPACE || ns == crate::plan::AGENT_NAMESPACE;
        if name == "*" && !namespaces {
            return Err(invalid(format!("{kind} fault end {end} must name one pod")));
        }
        if name != "*" && !pods.contains(end) && !lab_pod {
            return Err(invalid(format!("{kind} fault names unknown pod {end}")));
        }
        if name == "*" && !lab_ns && !self.pods.iter().any(|p| p.namespace == ns) {
            return Err(invalid(format!("{kind} fault names namespace {ns} without pods")));
        }
        Ok(())
    }

    fn needs_outside(&self, fault: &Fault) -> Result<(), ScenarioError> {
        if self.outside {
            return Ok(());
        }
        Err(invalid(format!("{} fault needs outside: true", fault.kind())))
    }

    fn validate_faults(
        &self,
        nodes: &BTreeSet<&str>,
        pods: &BTreeSet<String>,
        services: &BTreeSet<String>,
    ) -> Result<(), ScenarioError> {
        for fault in &self.faults {
            match fault {
                Fault::Deny { from, to, .. } => {
                    self.validate_fault_end("deny", from, pods, true)?;
                    if to == OUTSIDE_HOST {
                        self.needs_outside(fault)?;
                    } else {
                        self.validate_fault_end("deny", to, pods, true)?;
                    }
                }
                Fault::IntermittentDrop { from, to, every, .. } => {
                    self.validate_fault_end("intermittent-drop", from, pods, false)?;
                    self.validate_fault_end("intermittent-drop", to, pods, false)?;
                    if !(2..=1000).contains(every) {
                        return Err(invalid(format!(
                            "intermittent-drop fault {from} -> {to}: every {every} is outside 2..=1000"
                        )));
                    }
                }
                Fault::DnsDown => {}
                Fault::EgressNoSnat { node }
                | Fault::EgressDrop { node }
                | Fault::EgressReplyDrop { node } => {
                    self.needs_outside(fault)?;
                    if !nodes.contains(node.as_str()) {
                        return Err(invalid(format!(
                            "{} fault names unknown node {node}",
                            fault.kind()
                        )));
                    }
                }
                Fault::OutsideDrop | Fault::UpstreamDnsDown => self.needs_outside(fault)?,
                Fault::NodeLocalDnsDown { node } => {
                    if !self.node_local_dns {
                        return Err(invalid(format!(
                            "node-local-dns-down fault on node {node} needs nodeLocalDns: true"
                        )));
                    }
                    if !nodes.contains(node.as_str()) {
                        return Err(invalid(format!(
                            "node-local-dns-down fault names unknown node {node}"
                        )));
                    }
                }
                Fault::ServiceRulesMissing { service, node } => {
                    if !services.contains(service.as_str()) {
                        return Err(invalid(format!(
                            "service-rules-missing fault names unknown service {service}"
                        )));
                    }
                    if !nodes.contains(node.as_str()) {
                        return Err(invalid(format!(
                            "service-rules-missing fault names unknown node {node}"
                        )));
                    }
                }
                Fault::LinkCut { node, family } => {
                    if let Some(f) = family
                        && !self.ip_families.contains(f)
                    {
                        return Err(invalid(format!(
                            "link-cut fault on node {node} names family {}, which the cluster lacks",
                            f.as_k8s()
                        )));
                    }
                    if !nodes.contains(node.as_str()) {
                        return Err(invalid(format!("link-cut fault names unknown node {node}")));
                    }
                }
                Fault::LinkMtu { node, mtu } => {
                    if !nodes.contains(node.as_str()) {
                        return Err(invalid(format!("link-mtu fault names unknown node {node}")));
                    }
                    if !(576..=1500).contains(mtu) {
                        return Err(invalid(format!(
                            "link-mtu fault on node {node}: mtu {mtu} is outside 576..=1500"
                        )));
                    }
                }
                Fault::ReplyDrop { from, to } => {
                    for end in [from, to] {
                        if !pods.contains(end.as_str()) {
                            return Err(invalid(format!("reply-drop fault names unknown pod {end}")));
                        }
                    }
                }
                Fault::ServiceRuleStale { service, node, to } => {
                    if !services.contains(service.as_str()) {
                        return Err(invalid(format!(
                            "service-rule-stale fault names unknown service {service}"
                        )));
                    }
                    if !nodes.contains(node.as_str()) {
                        return Err(invalid(format!(
                            "service-rule-stale fault names unknown node {node}"
                        )));
                    }
                    if !pods.contains(to.as_str()) {
                        return Err(invalid(format!(
                            "service-rule-stale fault names unknown pod {to}"
                        )));
                    }
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MINIMAL: &str = "name: t\nnodes: [node-a]\n";

    #[test]
    fn minimal_scenario_gets_defaults() {
        let s = Scenario::parse(
            "name: t\nnodes: [node-a]\npods:\n- {namespace: shop, name: a, node: node-a, \
             listen: [{port: 80}]}\n",
        )
        .unwrap();
        let pod = &s.pods[0];
        assert!(pod.ready);
        assert_eq!(
            pod.listen[0].bind_address(&s.ip_families),
            IpAddr::from(Ipv4Addr::UNSPECIFIED)
        );
        assert_eq!(s.ip_families, [IpFamily::V4]);
        assert_eq!(pod.listen[0].protocol, Protocol::Tcp);
        assert_eq!(
            s.namespaces().into_iter().collect::<Vec<_>>(),
            ["default", "kube-system", "netdiag", "shop"]
        );
        assert!(Scenario::parse(MINIMAL).is_ok());
    }

    #[test]
    fn faults_parse_from_their_kind_tag() {
        let s = Scenario::parse(
            "name: t\nnodes: [node-a, node-b]\npods:\n- {namespace: shop, name: a, node: node-a}\n\
             - {namespace: shop, name: b, node: node-b}\n\
             services:\n- {namespace: shop, name: s, selector: {app: x}, ports: [{port: 80}]}\n\
             faults:\n- {kind: deny, from: shop/a, to: shop/b, port: 8080, protocol: TCP, mode: reject}\n\
             - {kind: dns-down}\n- {kind: service-rules-missing, service: shop/s, node: node-a}\n\
             - {kind: link-cut, node: node-b}\n- {kind: link-mtu, node: node-b, mtu: 1200}\n",
        )
        .unwrap();
        assert_eq!(s.faults.len(), 5);
        assert_eq!(
            s.faults[0],
            Fault::Deny {
                from: "shop/a".into(),
                to: "shop/b".into(),
                port: Some(8080),
                protocol: Some(Protocol::Tcp),
                mode: DenyMode::Reject,
                family: None
            }
        );
        assert_eq!(
            s.faults[4],
            Fault::LinkMtu {
                node: "node-b".into(),
                mtu: 1200
            }
        );
    }

    #[test]
    fn target_port_is_a_number_or_a_name() {
        let s = Scenario::parse(
            "name: t\nnodes: [n]\nservices:\n- namespace: a\n  name: s\n  ports:\n  \
             - {name: x, port: 80, targetPort: http}\n  - {name: y, port: 81, targetPort: 8081}\n  \
             - {name: z, port: 82}\n",
        )
        .unwrap();
        let ports = &s.services[0].ports;
        assert_eq!(ports[0].effective_target(), TargetPort::Name("http".into()));
        assert_eq!(ports[1].effective_target(), TargetPort::Number(8081));
        assert_eq!(ports[2].effective_target(), TargetPort::Number(82));
    }

    fn err(text: &str) -> String {
        Scenario::parse(text).unwrap_err().to_string()
    }

    #[test]
    fn pod_on_unknown_node_is_rejected_by_name() {
        let e = err("name: t\nnodes: [n]\npods:\n- {namespace: a, name: p, node: m}\n");
        assert_eq!(e, "scenario pod a/p is on unknown node m");
    }

    #[test]
    fn the_outside_network_needs_ipv4_and_its_faults_need_it() {
        let e = err("name: t\nnodes: [n]\nipFamilies: [IPv6]\noutside: true\n");
        assert!(e.contains("outside needs an IPv4"), "{e}");
        let e = err("name: t\nnodes: [n]\nfaults: [{kind: egress-no-snat, node: n}]\n");
        assert!(e.contains("egress-no-snat fault needs outside: true"), "{e}");
        let e = err("name: t\nnodes: [n]\nfaults: [{kind: upstream-dns-down}]\n");
        assert!(e.contains("upstream-dns-down fault needs outside: true"), "{e}");
        let e = err("name: t\nnodes: [n]\noutside: true\nfaults: [{kind: egress-drop, node: m}]\n");
        assert!(e.contains("egress-drop fault names unknown node m"), "{e}");
        let s =
            Scenario::parse("name: t\nnodes: [n]\noutside: true\nfaults: [{kind: outside-drop}]\n").unwrap();
        let plan = crate::plan::Plan::new(&s, "ox000001", false).unwrap();
        assert_eq!(plan.outside_netns.as_deref(), Some("ox000001-x"));
        assert!(plan.all_netns().contains(&"ox000001-x".to_string()));
    }

    #[test]
    fn a_node_local_dns_cache_needs_ipv4_and_its_fault_needs_the_cache() {
        let e = err("name: t\nnodes: [n]\nipFamilies: [IPv6]\nnodeLocalDns: true\n");
        assert!(e.contains("nodeLocalDns needs an IPv4"), "{e}");
        let e = err("name: t\nnodes: [n]\nfaults: [{kind: node-local-dns-down, node: n}]\n");
        assert!(e.contains("needs nodeLocalDns: true"), "{e}");
        let e =
            err("name: t\nnodes: [n]\nnodeLocalDns: true\nfaults: [{kind: node-local-dns-down, node: m}]\n");
        assert!(e.contains("unknown node m"), "{e}");
        let s = Scenario::parse("name: t\nnodes: [n]\nnodeLocalDns: true\n").unwrap();
        let plan = crate::plan::Plan::new(&s, "nl000001", false).unwrap();
        assert_eq!(plan.dns_nameserver().to_string(), "169.254.20.10");
    }

    #[test]
    fn an_intermittent_drop_names_one_pod_at_each_end_and_a_sane_share() {
        let base = "name: t\nnodes: [n]\npods:\n- {namespace: a, name: p, node: n}\n- {namespace: a, name: q, node: n}\nfaults:\n";
        let e = err(&format!(
            "{base}- {{kind: intermittent-drop, from: a/p, to: a/q, every: 1}}\n"
        ));
        assert!(e.contains("every 1 is outside 2..=1000"), "{e}");
        let e = err(&format!(
            "{base}- {{kind: intermittent-drop, from: a/*, to: a/q, every: 5}}\n"
        ));
        assert!(e.contains("must name one pod"), "{e}");
        let s = Scenario::parse(&format!(
            "{base}- {{kind: intermittent-drop, from: a/p, to: kube-system/coredns-0, every: 5, throughService: true}}\n"
        ))
        .unwrap();
        assert!(matches!(
            s.faults[0],
            Fault::IntermittentDrop {
                through_service: true,
                every: 5,
                ..
            }
        ));
    }

    #[test]
    fn zones_name_known_nodes_and_traffic_distribution_a_known_value() {
        let e = err("name: t\nnodes: [n]\nzones: {m: zone-a}\n");
        assert_eq!(e, "scenario zones names unknown node m");
        let e = err("name: t\nnodes: [n]\nservices:\n\
             - {namespace: a, name: s, trafficDistribution: Nearby, ports: [{port: 80}]}\n");
        assert!(
            e.contains("trafficDistribution \"Nearby\" is none of PreferClose"),
            "{e}"
        );
        let s = Scenario::parse(
            "name: t\nnodes: [n]\nzones: {n: zone-a}\nservices:\n\
             - {namespace: a, name: s, internalTrafficPolicy: Local, ports: [{port: 80}]}\n",
        )
        .unwrap();
        assert_eq!(s.services[0].internal_traffic_policy, TrafficPolicy::Local);
    }

    #[test]
    fn unknown_fields_and_fault_kinds_are_rejected() {
        assert!(err("name: t\nnodes: [n]\npodz: []\n").contains("not valid yaml"));
        assert!(Scenario::parse("name: t\nnodes: [n]\nfaults: [{kind: meteor}]\n").is_err());
    }

    #[test]
    fn deny_fault_must_name_known_pods() {
        let e = err("name: t\nnodes: [n]\npods:\n- {namespace: a, name: p, node: n}\n\
             faults: [{kind: deny, from: a/p, to: a/q}]\n");
        assert!(e.contains("unknown pod a/q"), "{e}");
    }

    #[test]
    fn deny_fault_may_name_the_labs_own_dns_and_agent_pods() {
        let s = Scenario::parse(
            "name: t\nnodes: [n]\npods:\n- {namespace: a, name: p, node: n}\n\
             faults:\n- {kind: deny, from: a/p, to: kube-system/coredns-0, port: 53, protocol: UDP}\n\
             - {kind: deny, from: a/p, to: netdiag/netdiag-agent-n}\n",
        );
        assert!(s.is_ok(), "{s:?}");
        let e = err("name: t\nnodes: [n]\npods:\n- {namespace: a, name: p, node: n}\n\
             faults: [{kind: deny, from: a/p, to: netdiag/netdiag-agent-m}]\n");
        assert!(e.contains("unknown pod netdiag/netdiag-agent-m"), "{e}");
    }

    #[test]
    fn duplicate_pod_ips_are_rejected() {
        let e = err(
            "name: t\nnodes: [n]\npods:\n- {namespace: a, name: p, node: n, ip: 10.244.1.5}\n\
             - {namespace: a, name: q, node: n, ip: 10.244.1.5}\n",
        );
        assert!(e.contains("reuses ip 10.244.1.5"), "{e}");
    }

    #[test]
    fn endpoint_slice_override_must_name_its_service() {
        let e = err(
            "name: t\nnodes: [n]\nendpointSlices:\n- metadata: {name: x, namespace: a, labels: \
             {kubernetes.io/service-name: nope}}\n",
        );
        assert!(e.contains("unknown service a/nope"), "{e}");
    }

    #[test]
    fn two_services_with_one_cluster_ip_are_rejected() {
        let e = err("name: t\nnodes: [n]\nservices:\n\
             - {namespace: a, name: s, clusterIP: 10.96.5.5, ports: [{port: 80}]}\n\
             - {namespace: b, name: t, clusterIP: 10.96.5.5, ports: [{port: 80}]}\n");
        assert_eq!(
            e,
            "scenario service b/t clusterIP 10.96.5.5 is already the clusterIP of service a/s"
        );
    }

    #[test]
    fn families_parse_in_kubernetes_spelling_and_wildcards_follow_them() {
        let s = Scenario::parse(
            "name: t\nnodes: [n]\nipFamilies: [IPv6, IPv4]\npods:\n\
             - {namespace: a, name: p, node: n, listen: [{port: 80}, {port: 81, address: 0.0.0.0}]}\n\
             services:\n- {namespace: a, name: s, ipFamilies: [IPv4], ports: [{port: 80}]}\n\
             faults: [{kind: link-cut, node: n, family: IPv6}]\n",
        )
        .unwrap();
        assert_eq!(s.ip_families, [IpFamily::V6, IpFamily::V4]);
        assert_eq!(s.services[0].ip_families, Some(vec![IpFamily::V4]));
        let listen = &s.pods[0].listen;
        assert_eq!(
            listen[0].bind_address(&s.ip_families),
            "::".parse::<IpAddr>().unwrap()
        );
        assert_eq!(
            listen[1].bind_address(&s.ip_families),
            "0.0.0.0".parse::<IpAddr>().unwrap()
        );
    }

    #[test]
    fn families_outside_the_cluster_or_repeated_are_rejected() {
        let e = err("name: t\nnodes: [n]\nipFamilies: [IPv4, IPv4]\n");
        assert!(e.contains("must list IPv4, IPv6 or both"), "{e}");
        let e = err("name: t\nnodes: [n]\nservices:\n\
             - {namespace: a, name: s, ipFamilies: [IPv6], ports: [{port: 80}]}\n");
        assert_eq!(
            e,
            "scenario service a/s ipFamilies lists IPv6, which the cluster lacks"
        );
        let e = err("name: t\nnodes: [n]\nfaults: [{kind: link-cut, node: n, family: IPv6}]\n");
        assert!(e.contains("names family IPv6, which the cluster lacks"), "{e}");
    }

    /// A scenario with Service `a/s` of `spec` (its YAML flow-mapping fields) and `extra` Services.
    fn with_service(spec: &str, extra: &str) -> Result<Scenario, ScenarioError> {
        Scenario::parse(&format!(
            "name: t\nnodes: [n]\nservices:\n- {{namespace: a, name: s, selector: {{app: x}}, {spec}}}\n{extra}"
        ))
    }

    fn service_err(spec: &str, extra: &str) -> String {
        with_service(spec, extra).unwrap_err().to_string()
    }

    #[test]
    fn node_port_and_load_balancer_services_parse_with_kubernetes_defaults() {
        let s = with_service(
            "type: LoadBalancer, loadBalancerIP: 203.0.113.10, externalTrafficPolicy: Local, \
             ports: [{port: 80, nodePort: 30080}]",
            "- {namespace: a, name: np, type: NodePort, ports: [{port: 81, nodePort: 30081}]}\n",
        )
        .unwrap();
        let lb = &s.services[0];
        assert_eq!(lb.service_type, ServiceType::LoadBalancer);
        assert_eq!(lb.ports[0].node_port, Some(30080));
        assert_eq!(lb.effective_external_traffic_policy(), TrafficPolicy::Local);
        assert_eq!(lb.load_balancer_ip, Some("203.0.113.10".parse().unwrap()));
        let np = &s.services[1];
        assert_eq!(np.service_type, ServiceType::NodePort);
        assert_eq!(np.effective_external_traffic_policy(), TrafficPolicy::Cluster);
        let plain = Scenario::parse(
            "name: t\nnodes: [n]\nservices:\n- {namespace: a, name: s, ports: [{port: 80}]}\n",
        )
        .unwrap();
        assert_eq!(plain.services[0].service_type, ServiceType::ClusterIp);
    }

    #[test]
    fn node_ports_go_on_every_port_of_an_external_service_and_only_there() {
        assert_eq!(
            service_err("type: NodePort, ports: [{port: 80}]", ""),
            "scenario service a/s is of type NodePort, so its port 80/TCP needs a nodePort (the lab \
             does not allocate them, so that verdicts read the same on every run)"
        );
        assert_eq!(
            service_err("ports: [{port: 80, nodePort: 30080}]", ""),
            "scenario service a/s is of type ClusterIP, so its port 80/TCP cannot have a nodePort"
        );
        assert_eq!(
            service_err("type: NodePort, ports: [{port: 80, nodePort: 8080}]", ""),
            "scenario service a/s nodePort 8080 is outside 30000-32767"
        );
        assert_eq!(
            service_err(
                "type: NodePort, headless: true, ports: [{port: 80, nodePort: 30080}]",
                ""
            ),
            "scenario service a/s is headless, so it cannot be of type NodePort"
        );
        assert_eq!(
            service_err("externalTrafficPolicy: Local, ports: [{port: 80}]", ""),
            "scenario service a/s is of type ClusterIP, so it cannot have an externalTrafficPolicy \
             (only NodePort and LoadBalancer Services have one)"
        );
        assert!(service_err("type: ExternalName, ports: [{port: 80}]", "").contains("not valid yaml"));
    }

    #[test]
    fn a_node_port_belongs_to_one_service_as_the_api_server_allocates_it() {
        let np = "type: NodePort, ports: [{port: 80, nodePort: 30080}]";
        assert_eq!(
            service_err(
                np,
                "- {namespace: b, name: t, type: NodePort, ports: [{port: 80, nodePort: 30080, protocol: UDP}]}\n"
            ),
            "scenario service b/t nodePort 30080 is already the nodePort of service a/s"
        );
        // TCP and UDP of one port number may share a node port, as DNS does.
        assert!(
            with_service(
                "type: NodePort, ports: [{name: d, port: 53, nodePort: 30053, protocol: UDP}, \
                 {name: t, port: 53, nodePort: 30053}]",
                ""
            )
            .is_ok()
        );
        assert_eq!(
            service_err(
                "type: NodePort, ports: [{name: x, port: 80, nodePort: 30080}, {name: y, port: 81, nodePort: 30080}]",
                ""
            ),
            "scenario service a/s gives nodePort 30080 to ports 80 and 81; only the TCP and UDP ports \
             of one port number may share a nodePort"
        );
    }

    #[test]
    fn a_health_check_node_port_needs_a_local_load_balancer_and_a_port_of_its_own() {
        let lb = "type: LoadBalancer, loadBalancerIP: 203.0.113.10, ports: [{port: 80, nodePort: 30080}]";
        assert_eq!(
            service_err(&format!("{lb}, healthCheckNodePort: 30100"), ""),
            "scenario service a/s has a healthCheckNodePort, which only a LoadBalancer Service with \
             externalTrafficPolicy: Local has"
        );
        assert!(
            service_err(
                "type: NodePort, externalTrafficPolicy: Local, healthCheckNodePort: 30100, ports: [{port: 80, nodePort: 30080}]",
                ""
            )
            .contains("has a healthCheckNodePort, which only a LoadBalancer")
        );
        let local = format!("{lb}, externalTrafficPolicy: Local");
        assert_eq!(
            service_err(&format!("{local}, healthCheckNodePort: 30080"), ""),
            "scenario service a/s healthCheckNodePort 30080 is already the nodePort of service a/s"
        );
        assert_eq!(
            service_err(&format!("{local}, healthCheckNodePort: 40000"), ""),
            "scenario service a/s healthCheckNodePort 40000 is outside 30000-32767"
        );
        let s = with_service(&format!("{local}, healthCheckNodePort: 30100"), "").unwrap();
        assert_eq!(s.services[0].health_check_node_port, Some(30100));
    }

    #[test]
    fn a_load_balancer_address_is_ipv4_outside_the_labs_ranges_and_on_load_balancers_only() {
        let ports = "ports: [{port: 80, nodePort: 30080}]";
        assert_eq!(
            service_err(&format!("type: LoadBalancer, {ports}"), ""),
            "scenario service a/s is of type LoadBalancer, so it needs a loadBalancerIP (the address \
             the lab's load balancer gives it)"
        );
        assert_eq!(
            service_err(
                &format!("type: NodePort, loadBalancerIP: 203.0.113.10, {ports}"),
                ""
            ),
            "scenario service a/s is of type NodePort, so it cannot have a loadBalancerIP (only a \
             LoadBalancer Service has one)"
        );
        assert!(
            service_err(
                &format!("type: LoadBalancer, loadBalancerIP: '2001:db8::1', {ports}"),
                ""
            )
            .contains("loadBalancerIP 2001:db8::1 is not an IPv4 address")
        );
        assert_eq!(
            service_err(
                &format!("type: LoadBalancer, loadBalancerIP: 10.244.9.9, {ports}"),
                ""
            ),
            "scenario service a/s loadBalancerIP 10.244.9.9 lies in the pod network 10.244.0.0/16, \
             which the lab uses itself; take one from 203.0.113.0/24"
        );
        for taken in [
            "10.96.7.7",
            "172.18.0.9",
            "198.51.100.10",
            "169.254.20.10",
            "127.0.0.2",
        ] {
            let e = service_err(
                &format!("type: LoadBalancer, loadBalancerIP: {taken}, {ports}"),
                "",
            );
            assert!(e.contains("which the lab uses itself"), "{taken}: {e}");
        }
        assert!(
            service_err(
                &format!("type: LoadBalancer, loadBalancerIP: 224.0.0.1, {ports}"),
                ""
            )
            .contains("is not a unicast address")
        );
        let e = err(&format!(
            "name: t\nnodes: [n]\nipFamilies: [IPv6]\nservices:\n\
             - {{namespace: a, name: s, type: LoadBalancer, loadBalancerIP: 203.0.113.10, {ports}}}\n"
        ));
        assert!(e.contains("so it needs the IPv4 family, which it lacks"), "{e}");
    }

    #[test]
    fn source_ranges_are_cidrs_as_the_api_server_takes_them_on_load_balancers_only() {
        let lb = "type: LoadBalancer, loadBalancerIP: 203.0.113.10, ports: [{port: 80, nodePort: 30080}]";
        let s = with_service(
            &format!(
                "{lb}, loadBalancerSourceRanges: [192.0.2.0/24, ' 10.0.0.0/8 ', '2001:db8::/64', 0.0.0.0/0]"
            ),
            "",
        )
        .unwrap();
        let ranges = &s.services[0].load_balancer_source_ranges;
        assert_eq!(
            ranges.iter().map(ToString::to_string).collect::<Vec<_>>(),
            ["192.0.2.0/24", "10.0.0.0/8", "2001:db8::/64", "0.0.0.0/0"]
        );
        let yaml = serde_yaml_ng::to_string(&s.services[0]).unwrap();
        assert!(
            yaml.contains("loadBalancerSourceRanges:\n- 192.0.2.0/24\n"),
            "{yaml}"
        );
        let without = with_service(lb, "").unwrap();
        assert!(without.services[0].load_balancer_source_ranges.is_empty());
        assert!(
            !serde_yaml_ng::to_string(&without.services[0])
                .unwrap()
                .contains("SourceRanges")
        );
        assert_eq!(
            service_err(
                "type: NodePort, loadBalancerSourceRanges: [192.0.2.0/24], ports: [{port: 80, nodePort: 30080}]",
                ""
            ),
            "scenario service a/s is of type NodePort, so it cannot have loadBalancerSourceRanges (only a \
             LoadBalancer Service has them)"
        );
        assert_eq!(
            service_err(
                "loadBalancerSourceRanges: [192.0.2.0/24], ports: [{port: 80}]",
                ""
            ),
            "scenario service a/s is of type ClusterIP, so it cannot have loadBalancerSourceRanges (only a \
             LoadBalancer Service has them)"
        );
        for (entry, why) in [
            (
                "192.0.2.1/24",
                "has bits set beyond its prefix length (the range is 192.0.2.0/24)",
            ),
            ("192.0.2.0", "is not a CIDR like 192.0.2.0/24 or 2001:db8::/64"),
            ("192.0.2.0/33", "is not a CIDR"),
            ("192.0.2.0/", "is not a CIDR"),
            ("192.0.02.0/24", "is not a CIDR"),
            ("192.0.2.0/024", "is not a CIDR"),
            (
                "::ffff:192.0.2.0/120",
                "has an IPv4-mapped IPv6 address; write the IPv4 range",
            ),
            ("office", "is not a CIDR"),
        ] {
            let e = with_service(&format!("{lb}, loadBalancerSourceRanges: ['{entry}']"), "").unwrap_err();
            assert!(e.to_string().contains("not valid yaml"), "{entry}: {e}");
            let detail = std::error::Error::source(&e).unwrap().to_string();
            assert!(
                detail.contains(&format!("loadBalancerSourceRanges entry \"{entry}\" {why}")),
                "{entry}: {detail}"
            );
        }
    }

    #[test]
    fn two_load_balancers_may_share_an_address_but_not_a_port_of_it() {
        let lb = |ns: &str, port: u16, node_port: u16| {
            format!(
                "- {{namespace: {ns}, name: s, type: LoadBalancer, loadBalancerIP: 203.0.113.10, \
                 ports: [{{port: {port}, nodePort: {node_port}}}]}}\n"
            )
        };
        let text = |second: &str| format!("name: t\nnodes: [n]\nservices:\n{}{second}", lb("a", 80, 30080));
        assert!(Scenario::parse(&text(&lb("b", 443, 30443))).is_ok());
        assert_eq!(
            err(&text(&lb("b", 80, 30081))),
            "scenario service b/s loadBalancerIP 203.0.113.10 port 80/TCP is already served for service a/s"
        );
    }

    #[test]
    fn mtu_out_of_range_is_rejected() {
        let e = err("name: t\nnodes: [n]\nfaults: [{kind: link-mtu, node: n, mtu: 100}]\n");
        assert!(e.contains("outside 576..=1500"), "{e}");
    }
}
