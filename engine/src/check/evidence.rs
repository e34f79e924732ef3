//! What a check collected, as plain values: the input of the pure judge.
//!
//! The pure assembly (`assemble`) builds this from the plan and the agents' replies; the judge
//! never does I/O, so every branch is tested by building one of these by hand.

use std::collections::BTreeMap;
use std::net::IpAddr;

use ipnet::IpNet;
use netdiag_proto::{DnsOutcome, DnsResult, ListeningSocket, TcpOutcome, Transport, UdpOutcome};

use crate::check::prose::NonEmpty;
use crate::cluster::endpoints::{Conditions, Topology, TrafficPolicy};
use crate::cluster::enforcers::Enforcer;
pub use crate::cluster::pods::{PodFacts, ServingPort};
pub use crate::cluster::{NamespacedName, PortRef, ToolFailure};
pub use crate::policy::IpFamily;
use crate::policy::admin::AdminRuleRef;
use crate::policy::{Peer, PolicyRef, Protocol};

/// A fact the tool either learned or could not learn (the failure says why).
#[derive(Debug, Clone, PartialEq)]
pub enum Fact<T> {
    Known(T),
    Unknown(ToolFailure),
}

impl<T> Fact<T> {
    pub fn known(&self) -> Option<&T> {
        match self {
            Fact::Known(value) => Some(value),
            Fact::Unknown(_) => None,
        }
    }
}

/// What the target turned out to be once resolved against the cluster.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Destination {
    /// A Service port (asked as `svc/`, or a name/IP that is a Service's).
    Service,
    /// One pod (asked as `pod/`, or a pod IP).
    Pod,
    /// An address that belongs to no Service or pod the API knows.
    External,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Evidence {
    /// The source pod.
    pub from: NamespacedName,
    /// `--to` as given.
    pub to: String,
    pub destination: Destination,
    pub timeout_ms: u64,
    pub source: SourceFacts,
    /// `None` when the target has no name to resolve (pod or IP targets).
    pub dns: Option<DnsFacts>,
    pub service: ServiceFacts,
    pub endpoints: EndpointsFacts,
    /// The Service's virtual IP and the probe of it; `None` without a ClusterIP.
    pub cluster_ip: Option<ClusterIpFacts>,
    /// Where the agent pods were looked for; `None` when `--agent-url` named one address.
    pub agents: Option<AgentPods>,
    /// The destination pods' other nodes, probed from the source pod: the second witness that
    /// tells a broken path between nodes from a drop of one pod or port.
    pub node_witnesses: Vec<NodeWitness>,
    /// The datapath witnesses: path MTU, packet captures, the source node's dataplane.
    pub witnesses: DatapathWitnesses,
    /// The second family of a dual-stack target, when it has one: the facts above are the
    /// primary family's (endpoints and witnesses carry both, each with its own address).
    pub secondary: Option<SecondaryFamily>,
    /// What enforces NetworkPolicy in the cluster; `None` when no policy was found.
    pub policy_enforcers: Option<Fact<Vec<Enforcer>>>,
    /// The zone of the source's node, when an endpoint's zone hints made it matter
    /// ([`super::snapshot::Snapshot::source_zone`]).
    pub source_zone: Option<Fact<Option<String>>>,
    /// Every attempt of the live probes of a repeated check (`--repeat`, `--for`); `None` for a
    /// check that looked once.
    pub repeats: Option<crate::check::repeat::RepeatFacts>,
}

/// What was probed for the second family of a dual-stack target, besides its endpoints.
#[derive(Debug, Clone, PartialEq)]
pub struct SecondaryFamily {
    pub family: IpFamily,
    /// The Service's ClusterIP of this family.
    pub cluster_ip: Option<ClusterIpFacts>,
    /// The name resolved for this family's record type (AAAA for IPv6), as the pod's libc asks
    /// it beside the primary one.
    pub dns: Option<Fact<DnsResult>>,
}

/// What the witnesses on the path saw. Each is optional: an empty list or `None` means it was
/// not asked (tests, a target without that part), a [`Fact::Unknown`] says why it could not run.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct DatapathWitnesses {
    pub path_mtu: Vec<PathMtuWitness>,
    pub captures: Vec<CaptureWitness>,
    pub egress: Vec<EgressWitness>,
    pub node_dataplane: Option<NodeDataplaneWitness>,
    /// A node port connected to from another node's own address.
    pub entry_from_node: Option<EntryFromNode>,
}

/// TCP from another node's own network namespace to a node port: how a client outside the pod
/// network enters it. kube-proxy sends pod traffic to every endpoint whatever the Service's
/// `externalTrafficPolicy`, so only this connection meets the policy clients outside meet.
#[derive(Debug, Clone, PartialEq)]
pub struct EntryFromNode {
    pub node: String,
    pub tcp: Fact<TcpOutcome>,
}

/// The path MTU from the source pod to one destination address.
#[derive(Debug, Clone, PartialEq)]
pub struct PathMtuWitness {
    pub ip: IpAddr,
    pub port: u16,
    /// The destination's node, when it is a pod.
    pub node: Option<String>,
    pub outcome: Fact<netdiag_proto::PathMtuOutcome>,
}

/// A capture on a destination pod's interface during the TCP probe of that pod.
#[derive(Debug, Clone, PartialEq)]
pub struct CaptureWitness {
    pub ip: IpAddr,
    /// The source port and send time of the TCP probe to this address, when the agent said.
    pub probe_port: Option<u16>,
    pub probe_started_unix_us: Option<u64>,
    /// When the TCP probe's last beacon SYN left (it sends one every 100 ms while not connected).
    pub probe_last_syn_unix_us: Option<u64>,
    /// When the path MTU measurement sent its last SYN to this address (a later one).
    pub mtu_syn_unix_us: Option<u64>,
    pub capture: Fact<netdiag_proto::CaptureResult>,
}

/// A watch of the source node's uplink during the TCP probe of an address outside the
/// cluster's pods.
#[derive(Debug, Clone, PartialEq)]
pub struct EgressWitness {
    pub ip: IpAddr,
    /// The source's node, where the watch ran, and the source pod's address the probes left with.
    pub node: String,
    pub pod_ip: IpAddr,
    /// When the TCP probe to this address sent its first and its last SYN, when the agent said.
    pub probe_started_unix_us: Option<u64>,
    pub probe_last_syn_unix_us: Option<u64>,
    pub watch: Fact<netdiag_proto::EgressResult>,
}

/// The source node's programming for the Service VIP and its conntrack fill.
#[derive(Debug, Clone, PartialEq)]
pub struct NodeDataplaneWitness {
    pub node: String,
    pub result: Fact<netdiag_proto::NodeDataplaneResult>,
}

/// TCP from the source pod to a destination node's own address (the kubelet port): an answer,
/// connected or refused, proves the path to that node works.
#[derive(Debug, Clone, PartialEq)]
pub struct NodeWitness {
    pub node: String,
    pub ip: IpAddr,
    pub port: u16,
    pub tcp: Fact<TcpOutcome>,
}

/// The namespace and label selector the agent pods were looked for with.
#[derive(Debug, Clone, PartialEq)]
pub struct AgentPods {
    pub namespace: String,
    pub selector: String,
}

#[derive(Debug, Clone, PartialEq)]
pub enum SourceFacts {
    /// The source pod could not be read (API unreachable, forbidden).
    Unknown(ToolFailure),
    Missing {
        namespace: String,
        name: String,
        /// Namespaces that do have a pod of that name.
        elsewhere: Vec<String>,
    },
    Found {
        pod: PodFacts,
        agent: AgentFacts,
    },
}

/// How asking the source node's agent went.
#[derive(Debug, Clone, PartialEq)]
pub enum AgentFacts {
    /// The agent ran the probes in the pod's network namespace.
    Answered { agent_pod: String, netns: String },
    /// Not asked (the pod has no IP or node).
    NotAsked,
    /// The agent could not be used: missing on the node, unreachable, or it could not find the netns.
    Failed(ToolFailure),
}

#[derive(Debug, Clone, PartialEq)]
pub struct DnsFacts {
    /// The name as the source pod's application would ask it.
    pub name: String,
    pub result: Fact<DnsResult>,
    /// The addresses the name should give, when the API says (ClusterIP, or pod IPs when headless).
    pub expected: Vec<IpAddr>,
    /// The Service the name designates under the cluster's naming rules.
    pub service_guess: Option<NamespacedName>,
    /// Services with the guessed name in other namespaces.
    pub same_name_elsewhere: Vec<NamespacedName>,
    /// Service names in the guessed namespace (to suggest a correction for a typo).
    pub names_in_namespace: Vec<String>,
    pub cluster_dns: Fact<ClusterDnsFacts>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct ClusterDnsFacts {
    /// The kube-dns Service's ClusterIP.
    pub service_ip: Option<IpAddr>,
    pub pods: Vec<DnsPodFacts>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct DnsPodFacts {
    /// The DNS pod, when the endpoint names one.
    pub pod: Option<NamespacedName>,
    pub ip: IpAddr,
    /// In service: kube-proxy sends new queries to it (ready, or the serving-terminating fallback).
    pub ready: bool,
    /// The same name asked of this DNS pod directly (bypassing the Service IP).
    pub direct: Fact<DnsOutcome>,
    /// NetworkPolicy for source → this pod, port 53/UDP.
    pub egress_policy: PolicyCheck,
}

impl DnsPodFacts {
    /// The pod's key, or its address when the endpoint names no pod.
    pub fn label(&self) -> String {
        match &self.pod {
            Some(pod) => pod.to_string(),
            None => self.ip.to_string(),
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct ServicePortFacts {
    pub name: Option<String>,
    pub port: u16,
    pub protocol: Protocol,
    pub target_port: PortRef,
    /// The port every node opens for it (a NodePort or LoadBalancer Service's).
    pub node_port: Option<u16>,
}

#[derive(Debug, Clone, PartialEq)]
pub enum ServiceFacts {
    /// The target is not a Service.
    NotApplicable,
    Unknown(ToolFailure),
    Missing {
        namespace: String,
        name: String,
        /// Service names in that namespace, to suggest a correction.
        names_in_namespace: Vec<String>,
    },
    Found(Box<ServiceSpecFacts>),
}

#[derive(Debug, Clone, PartialEq)]
pub struct ServiceSpecFacts {
    pub namespace: String,
    pub name: String,
    /// `ClusterIP`, `NodePort`, `LoadBalancer`, `ExternalName`.
    pub service_type: String,
    pub headless: bool,
    pub external_name: Option<String>,
    pub ports: Vec<ServicePortFacts>,
    /// The ExternalName Service the target named, when it is an alias for this one.
    pub alias_of: Option<ExternalNameAlias>,
    /// Which endpoints in-cluster clients use: all, or those on their own node.
    pub internal_traffic_policy: TrafficPolicy,
    /// `spec.trafficDistribution` (`PreferClose`, `PreferSameZone`, `PreferSameNode`), as given.
    pub traffic_distribution: Option<String>,
    /// The port the target asked for.
    pub requested: PortRef,
    /// The protocol the target asked for (`svc/NAME:PORT/UDP`), when it named one.
    pub requested_protocol: Option<Protocol>,
    /// `None` or empty: the Service has no selector.
    pub selector: Option<BTreeMap<String, String>>,
    /// Pods the selector matches (any readiness).
    pub selected_pods: Vec<PodFacts>,
    /// How the target entered the Service when not by its ClusterIP: a node port or a
    /// LoadBalancer address.
    pub entry: Option<ServiceEntry>,
    /// Which endpoints traffic entering by a node port or a LoadBalancer address uses.
    pub external_traffic_policy: TrafficPolicy,
    /// `spec.healthCheckNodePort`: where kube-proxy tells load balancers whether its node has
    /// endpoints (a LoadBalancer Service with `externalTrafficPolicy: Local`).
    pub health_check_node_port: Option<u16>,
    /// `spec.loadBalancerSourceRanges`, trimmed of the whitespace validation once let through
    /// (kube-proxy trims it too).
    pub load_balancer_source_ranges: Vec<String>,
}

/// The way into a NodePort or LoadBalancer Service that the target named.
#[derive(Debug, Clone, PartialEq)]
pub enum ServiceEntry {
    /// A node's address and the port's nodePort: kube-proxy on that node translates it.
    NodePort {
        node: String,
        address: IpAddr,
        node_port: u16,
    },
    /// An address of `status.loadBalancer.ingress`: kube-proxy on every node captures it, so
    /// from a pod the source's node translates it.
    LoadBalancer { address: IpAddr, port: u16 },
}

impl ServiceEntry {
    /// The address and port the client connects to.
    pub fn address(&self) -> (IpAddr, u16) {
        match self {
            ServiceEntry::NodePort {
                address, node_port, ..
            } => (*address, *node_port),
            ServiceEntry::LoadBalancer { address, port } => (*address, *port),
        }
    }
}

/// Which of a Service's addresses the check connected to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VipKind {
    ClusterIp,
    /// A node's address with the port's nodePort.
    NodePort,
    /// A `status.loadBalancer.ingress` address.
    LoadBalancer,
}

impl VipKind {
    /// The kind of the address a check of a Service entered by `entry` (none: its ClusterIP).
    pub fn of(entry: Option<&ServiceEntry>) -> Self {
        match entry {
            None => VipKind::ClusterIp,
            Some(ServiceEntry::NodePort { .. }) => VipKind::NodePort,
            Some(ServiceEntry::LoadBalancer { .. }) => VipKind::LoadBalancer,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            VipKind::ClusterIp => "ClusterIP",
            VipKind::NodePort => "node port",
            VipKind::LoadBalancer => "LoadBalancer address",
        }
    }
}

/// Where kube-proxy leaves the addresses of a connection that entered a Service by a node port
/// or a LoadBalancer address, as NetworkPolicy at each end sees them.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct EnteredPath {
    /// Another node's node port: the source's egress sees that node's address and the node
    /// port (that node translates it once it arrives there).
    pub egress_to: Option<(IpAddr, u16)>,
    /// Under `externalTrafficPolicy: Cluster`, the node that masquerades the connection and the
    /// address it gives it: the endpoints' ingress sees that address (from an endpoint's own
    /// node, which NetworkPolicy never blocks).
    pub masqueraded_by: Option<(String, IpAddr)>,
}

impl EnteredPath {
    /// The path of a connection from `source` into `svc` by its entry; the ClusterIP's (nothing
    /// rewritten that policy sees) without one.
    pub fn of(svc: &ServiceSpecFacts, source: &PodFacts) -> EnteredPath {
        let cluster = svc.external_traffic_policy == TrafficPolicy::Cluster;
        match &svc.entry {
            None => EnteredPath::default(),
            Some(ServiceEntry::NodePort {
                node,
                address,
                node_port,
            }) => EnteredPath {
                egress_to: (source.node.as_ref() != Some(node)).then_some((*address, *node_port)),
                masqueraded_by: cluster.then(|| (node.clone(), *address)),
            },
            // The source's node translates it, and masquerades it as itself.
            Some(ServiceEntry::LoadBalancer { address, .. }) => {
                let same_family = source
                    .host_ips
                    .iter()
                    .copied()
                    .find(|h| h.is_ipv4() == address.is_ipv4());
                EnteredPath {
                    egress_to: None,
                    masqueraded_by: source.node.clone().zip(same_family).filter(|_| cluster),
                }
            }
        }
    }
}

/// An ExternalName Service whose `externalName` is another Service's name in the cluster.
#[derive(Debug, Clone, PartialEq)]
pub struct ExternalNameAlias {
    pub service: NamespacedName,
    /// Its `externalName` as written.
    pub host: String,
}

impl ServiceSpecFacts {
    pub fn key(&self) -> NamespacedName {
        NamespacedName::new(self.namespace.clone(), self.name.clone())
    }

    /// The Service port the target asked for: of the asked protocol when it named one, else the
    /// TCP one when a number is served on several protocols.
    pub fn requested_port(&self) -> Option<&ServicePortFacts> {
        let matches = |p: &&ServicePortFacts| {
            let port = match &self.requested {
                PortRef::Number(n) => p.port == *n,
                PortRef::Name(name) => p.name.as_deref() == Some(name.as_str()),
            };
            port && self.requested_protocol.is_none_or(|asked| p.protocol == asked)
        };
        self.ports
            .iter()
            .filter(matches)
            .find(|p| p.protocol == Protocol::Tcp)
            .or_else(|| self.ports.iter().find(matches))
    }

    /// The `loadBalancerSourceRanges` kube-proxy admits connections to a LoadBalancer address
    /// from, when it filters them there: those of the address's family, none to filter by when
    /// there are none or one of them is zero-masked (any source). `Err` names an entry that
    /// does not read as a range.
    pub fn source_ranges_for(&self, address: IpAddr) -> Result<Option<NonEmpty<IpNet>>, String> {
        let mut ranges = vec![];
        for entry in &self.load_balancer_source_ranges {
            let range = parse_source_range(entry).ok_or_else(|| entry.clone())?;
            if range.addr().is_ipv4() == address.is_ipv4() {
                ranges.push(range);
            }
        }
        if ranges.iter().any(|r| r.prefix_len() == 0) {
            return Ok(None);
        }
        Ok(NonEmpty::from_vec(ranges))
    }
}

/// A `loadBalancerSourceRanges` entry as kube-proxy reads it (Go's sloppy parse): leading zeros
/// in an IPv4 address taken as decimal, an IPv4-mapped IPv6 range as the IPv4 one, host bits
/// dropped.
fn parse_source_range(entry: &str) -> Option<IpNet> {
    let (addr, prefix) = entry.split_once('/')?;
    let prefix: u8 = prefix.parse().ok()?;
    let v4 = |addr: &str| -> Option<std::net::Ipv4Addr> {
        let octets: Vec<u8> = addr.split('.').map(|o| o.parse().ok()).collect::<Option<_>>()?;
        let octets: [u8; 4] = octets.try_into().ok()?;
        Some(octets.into())
    };
    let net = match (v4(addr), addr.parse::<std::net::Ipv6Addr>()) {
        (Some(v4), _) => IpNet::new(v4.into(), prefix).ok()?,
        (None, Ok(v6)) => match v6.to_ipv4_mapped() {
            Some(v4) => IpNet::new(v4.into(), prefix.checked_sub(96)?).ok()?,
            None => IpNet::new(v6.into(), prefix).ok()?,
        },
        (None, Err(_)) => return None,
    };
    Some(net.trunc())
}

/// The destination addresses: a Service's endpoints, the target pod, or the one external address.
#[derive(Debug, Clone, PartialEq)]
pub enum EndpointsFacts {
    /// They could not be read (the failure names the read).
    Unknown(ToolFailure),
    /// A `pod/` target that does not exist.
    TargetPodMissing {
        namespace: String,
        name: String,
    },
    Known(Vec<EndpointFacts>),
}

/// One destination address: a Service endpoint, the target pod, or the external address.
#[derive(Debug, Clone, PartialEq)]
pub struct EndpointFacts {
    pub ip: IpAddr,
    /// The destination port; `None` when a named port did not resolve on the pod.
    pub port: Option<u16>,
    /// The pod behind the address, when one is.
    pub pod: Option<PodFacts>,
    /// The EndpointSlice that lists the address (`None` for a pod or address target).
    pub slice: Option<NamespacedName>,
    /// The endpoint's conditions (a pod target's readiness; an address is taken as ready).
    pub conditions: Conditions,
    /// Where a Service endpoint runs and its topology hints.
    pub topology: Topology,
    /// The live probe of the address, of the kind the plan chose.
    pub live: LiveFact,
    pub listeners: Fact<Vec<ListeningSocket>>,
    /// NetworkPolicy on the flow to this address, pod to pod.
    pub policy: PolicyCheck,
    /// NetworkPolicy on the flow entered by the node port or LoadBalancer address the check
    /// connected to, with the addresses kube-proxy leaves; `None` by the ClusterIP.
    pub entered_policy: Option<PolicyCheck>,
}

impl EndpointFacts {
    pub fn ready(&self) -> bool {
        self.conditions.ready
    }

    pub fn label(&self) -> String {
        let addr = match self.port {
            Some(port) => format!("{}:{port}", fmt_ip(self.ip)),
            None => fmt_ip(self.ip),
        };
        match &self.pod {
            Some(pod) => format!("{} ({addr})", pod.key()),
            None => addr,
        }
    }

    pub fn node(&self) -> Option<&str> {
        self.pod.as_ref().and_then(|p| p.node.as_deref())
    }
}

pub fn fmt_ip(ip: IpAddr) -> String {
    match ip {
        IpAddr::V4(v4) => v4.to_string(),
        IpAddr::V6(v6) => format!("[{v6}]"),
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct ClusterIpFacts {
    pub ip: IpAddr,
    pub port: u16,
    /// The live probe of the virtual IP, of the kind the plan chose.
    pub live: LiveFact,
}

/// What a live probe (the plan's [`LiveProbe`](super::plan::LiveProbe)) of the VIP or of an
/// endpoint showed: a TCP connect's outcome or a datagram's, never both.
#[derive(Debug, Clone, PartialEq)]
pub enum LiveFact {
    Tcp(Fact<TcpOutcome>),
    Udp(Fact<UdpOutcome>),
}

impl LiveFact {
    pub fn transport(&self) -> Transport {
        match self {
            LiveFact::Tcp(_) => Transport::Tcp,
            LiveFact::Udp(_) => Transport::Udp,
        }
    }

    /// The TCP connect's fact, when the probe was one.
    pub fn tcp(&self) -> Option<&Fact<TcpOutcome>> {
        match self {
            LiveFact::Tcp(fact) => Some(fact),
            LiveFact::Udp(_) => None,
        }
    }

    /// The datagram's fact, when the probe was one.
    pub fn udp(&self) -> Option<&Fact<UdpOutcome>> {
        match self {
            LiveFact::Udp(fact) => Some(fact),
            LiveFact::Tcp(_) => None,
        }
    }

    /// Why the probe has no outcome, when it has none.
    pub fn not_probed(&self) -> Option<&ToolFailure> {
        match self {
            LiveFact::Tcp(Fact::Unknown(why)) | LiveFact::Udp(Fact::Unknown(why)) => Some(why),
            LiveFact::Tcp(Fact::Known(_)) | LiveFact::Udp(Fact::Known(_)) => None,
        }
    }

    /// The TCP connect's outcome, when a connect ran.
    pub fn tcp_outcome(&self) -> Option<&TcpOutcome> {
        self.tcp().and_then(Fact::known)
    }

    /// The datagram's outcome, when a datagram was sent.
    pub fn udp_outcome(&self) -> Option<&UdpOutcome> {
        self.udp().and_then(Fact::known)
    }
}

impl From<Fact<TcpOutcome>> for LiveFact {
    fn from(fact: Fact<TcpOutcome>) -> Self {
        LiveFact::Tcp(fact)
    }
}

impl From<Fact<UdpOutcome>> for LiveFact {
    fn from(fact: Fact<UdpOutcome>) -> Self {
        LiveFact::Udp(fact)
    }
}

/// What NetworkPolicy says about one flow.
#[derive(Debug, Clone, PartialEq)]
pub enum PolicyCheck {
    /// Policies could not be read or evaluated; the failure says why.
    NotEvaluated(ToolFailure),
    Allowed {
        detail: String,
    },
    Denied {
        /// Why egress of the source is denied, when it is.
        egress: Option<Box<DeniedSide>>,
        /// Why ingress of the destination is denied, when it is.
        ingress: Option<Box<DeniedSide>>,
    },
}

/// One direction (egress of the source or ingress of the destination) that NetworkPolicy denies,
/// and why, as values: the judge words it (`judge::findings`).
#[derive(Debug, Clone, PartialEq)]
pub struct DeniedSide {
    /// Whose direction is denied: the source for egress, the destination for ingress.
    pub subject: Peer,
    /// The flow's other end, as the subject sees it.
    pub other: FlowEnd,
    /// What denied it.
    pub cause: DenialCause,
    /// The NetworkPolicies that isolate the pod in this direction; `None` when none does (a
    /// Baseline-tier rule decided) or an Admin-tier rule decided (no NetworkPolicy can change it).
    pub policies: Option<NonEmpty<PolicyRef>>,
    /// The destination port and protocol of the denied flow.
    pub port: u16,
    pub protocol: Protocol,
    /// A rule that would allow it but for an ipBlock `except` holding the remote address.
    pub excepted_by: Option<crate::policy::ExceptedBy>,
}

/// The other end of a denied flow: egress goes `To` it, ingress comes `From` it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FlowEnd {
    To(Peer),
    From(Peer),
}

/// What denied one direction of a flow.
#[derive(Debug, Clone, PartialEq)]
pub enum DenialCause {
    /// An Admin-tier rule, evaluated before any NetworkPolicy.
    AdminTier(AdminRuleRef),
    /// A Baseline-tier rule; no NetworkPolicy selecting the subject allows the flow.
    BaselineTier(AdminRuleRef),
    /// These NetworkPolicies isolate the subject and none of their rules allows the flow.
    Isolated(NonEmpty<PolicyRef>),
    /// Denied, with no rule or isolating policy to name.
    Unnamed,
}

impl DeniedSide {
    /// The cluster-wide admin rule that denied it, when an Admin- or Baseline-tier rule decided
    /// (then `policies` is `None` for an Admin-tier decision: no NetworkPolicy can change it).
    pub fn admin_rule(&self) -> Option<&AdminRuleRef> {
        match &self.cause {
            DenialCause::AdminTier(rule) | DenialCause::BaselineTier(rule) => Some(rule),
            DenialCause::Isolated(_) | DenialCause::Unnamed => None,
        }
    }

    /// Only a cluster admin can change this side: an Admin-tier rule decided it.
    pub fn needs_cluster_admin(&self) -> bool {
        self.admin_rule()
            .is_some_and(|r| r.policy.tier == crate::policy::admin::AdminTier::Admin)
    }

    /// Whether `other` denies for the same reason: the same flow, denied by the same cause.
    pub fn same_reason(&self, other: &DeniedSide) -> bool {
        (&self.subject, &self.other, &self.cause, self.port, self.protocol)
            == (
                &other.subject,
                &other.other,
                &other.cause,
                other.port,
                other.protocol,
            )
    }
}

impl PolicyCheck {
    pub fn is_denied(&self) -> bool {
        matches!(self, PolicyCheck::Denied { .. })
    }
}
