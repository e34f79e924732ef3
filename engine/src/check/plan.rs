//! The pure planner: from the [`Snapshot`] and the [`CheckRequest`], what the target is in
//! cluster terms (the static facts) and which probes which agent must run to judge it.
//!
//! No I/O: `probe` executes the plan, `assemble` turns plan and replies into evidence.
//!
//! Here the request, the plan's types and its two passes; in [`destination`] what the target
//! designates and the endpoints behind it, in [`dns`] the name and the servers asked, in
//! [`probes`] which agent runs which probe and the datapath witnesses.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;
use std::time::Duration;

use k8s_openapi::api::core::v1::Service;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::core::{Selector, SelectorExt};
use netdiag_proto::{
    CaptureProbe, DnsProbe, EgressProbe, NameserverAddr, NodeDataplaneProbe, PathMtuProbe, PodListenersProbe,
    Probe, ProbeSource, RecordType, ServiceVip, TcpProbe, Transport, UdpPayload, UdpProbe,
};

use super::evidence::*;
use super::snapshot::Snapshot;
use super::target::Target;
use crate::cluster::endpoints::{self, Conditions, Topology, TrafficPolicy};
use crate::cluster::pods::{pod_ips, read_pod};
use crate::cluster::{CLUSTER_DOMAIN, NamespacedName};
use crate::policy::Protocol;

/// The port a node witness probe asks: the kubelet's, which every node listens on. A refusal
/// proves the path just as well as a connection.
pub const NODE_WITNESS_PORT: u16 = 10250;

/// Name of the query sent straight to each DNS pod: always answerable by a live cluster DNS.
pub const DNS_LIVENESS_NAME: &str = netdiag_proto::KUBE_DNS_FQDN;

/// What to check, with every default already applied.
#[derive(Debug, Clone)]
pub struct CheckRequest {
    pub from: NamespacedName,
    pub target: Target,
    /// Namespace of a `svc/`/`pod/` target that names none.
    pub target_namespace: String,
    /// `--to` as typed.
    pub to_text: String,
    /// Per-probe timeout.
    pub timeout: Duration,
}

impl CheckRequest {
    pub fn timeout_ms(&self) -> u64 {
        self.timeout.as_millis().max(1) as u64
    }

    /// A lookup that meets a silent server asks two queries (the first search candidate, then the
    /// name as given) before giving up: each gets half the budget, so DNS costs one timeout too.
    fn dns_timeout_ms(&self) -> u64 {
        (self.timeout_ms() / 2).max(1)
    }

    /// How long the source's probes may take before the witnesses at the destination pods start
    /// ([`super::probe::execute`]): a healthy check answers within it and never asks for them.
    /// A quarter of the timeout at most, so that a capture started then still sees the probes'
    /// SYNs (a new one leaves every 100 ms until the timeout).
    pub fn witness_grace(&self) -> Duration {
        WITNESS_GRACE.min(self.timeout / 4)
    }

    /// How long a capture watches: it starts at [`Self::witness_grace`] at the earliest and
    /// watches until the probes' timeout plus [`CAPTURE_MARGIN_MS`].
    fn capture_ms(&self) -> u64 {
        let grace_ms = self.witness_grace().as_millis() as u64;
        self.timeout_ms().saturating_sub(grace_ms) + CAPTURE_MARGIN_MS
    }
}

/// See [`CheckRequest::witness_grace`]. A healthy check of hundreds of endpoints takes a few tens
/// of milliseconds; a lost connection takes the whole timeout.
const WITNESS_GRACE: Duration = Duration::from_millis(250);

/// What a probe's result is evidence of.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ProbeKey {
    /// The target name, resolved as the source pod's libc would.
    Resolve,
    /// The target name resolved for the second family of a dual-stack target (libc asks A and
    /// AAAA alike).
    ResolveSecondary,
    /// The liveness name asked of one DNS pod directly.
    DirectDns(IpAddr),
    ClusterIp,
    /// The ClusterIP of the second family of a dual-stack Service.
    ClusterIpSecondary,
    /// TCP from the source to one destination address.
    Endpoint(IpAddr, u16),
    /// The listening sockets of the destination pod with this IP.
    Listeners(IpAddr),
    /// TCP from the source to a destination node's own address (its kubelet port).
    NodeWitness(IpAddr),
    /// Nothing else to probe: confirms the agent finds the source pod's netns.
    Netns,
    /// The path MTU from the source to one destination address.
    PathMtu(IpAddr, u16),
    /// A capture on the interface of the destination pod with this IP.
    Capture(IpAddr),
    /// A watch of the source node's uplink for the connections to this address outside the
    /// cluster's pods.
    Egress(IpAddr),
    /// The source node's Service rules and conntrack fill.
    NodeDataplane,
    /// TCP to a node port from another node's own namespace, as a client outside the pod
    /// network connects.
    EntryFromNode,
}

/// The network namespace a request runs in, on its node.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum RunIn {
    /// The pod with this IP (the agent finds its namespace by the address).
    Pod(IpAddr),
    /// The node's own namespace: for probes that name their pods themselves (`podListeners`).
    Node,
}

impl RunIn {
    pub fn source(self) -> ProbeSource {
        match self {
            RunIn::Pod(ip) => ProbeSource::PodIp { ip },
            RunIn::Node => ProbeSource::Node,
        }
    }
}

/// One probe, and where it runs: the node whose agent runs it and the namespace there.
#[derive(Debug, Clone, PartialEq)]
pub struct PlannedProbe {
    pub key: ProbeKey,
    pub node: String,
    pub run_in: RunIn,
    pub probe: Probe,
}

/// A destination address before probing.
#[derive(Debug, Clone, PartialEq)]
pub struct EndpointTarget {
    pub ip: IpAddr,
    pub port: Option<u16>,
    pub pod: Option<PodFacts>,
    pub slice: Option<NamespacedName>,
    pub conditions: Conditions,
    /// Where a Service endpoint runs and its topology hints (empty for a pod or address).
    pub topology: Topology,
}

/// The destination in cluster terms.
#[derive(Debug, Clone, PartialEq)]
pub struct DestinationPlan {
    pub destination: Destination,
    pub service: ServiceFacts,
    pub endpoints: Fact<Vec<EndpointTarget>>,
    /// A target pod that does not exist.
    pub missing_pod: Option<NamespacedName>,
    /// The virtual IP and port, when the Service has one.
    pub cluster_ip: Option<(IpAddr, u16)>,
    /// The second family's virtual IP and port, for a dual-stack Service.
    pub secondary_cluster_ip: Option<(IpAddr, u16)>,
    /// Why the live layers are not probed (an SCTP port), when they are not.
    pub not_probed: Option<String>,
    /// How the VIP and the endpoints are probed: chosen here, from the Service port's protocol.
    pub live: LiveProbe,
    pub expected_dns: Vec<IpAddr>,
}

impl DestinationPlan {
    /// How the target enters a NodePort or LoadBalancer Service, when not by its ClusterIP.
    pub fn entry(&self) -> Option<&ServiceEntry> {
        match &self.service {
            ServiceFacts::Found(svc) => svc.entry.as_ref(),
            _ => None,
        }
    }

    /// The protocol the live probes use.
    pub fn protocol(&self) -> Protocol {
        match self.live {
            LiveProbe::Tcp => Protocol::Tcp,
            LiveProbe::Udp(_) => Protocol::Udp,
        }
    }
}

/// The live probe of the VIP and of each endpoint: a TCP connect, or a datagram for a UDP Service
/// port. The one place a check's transport is chosen; the evidence carries the outcome of the
/// same kind ([`LiveFact`](super::evidence::LiveFact)).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LiveProbe {
    Tcp,
    /// Datagrams with this payload.
    Udp(UdpPayload),
}

impl LiveProbe {
    pub fn transport(self) -> Transport {
        match self {
            LiveProbe::Tcp => Transport::Tcp,
            LiveProbe::Udp(_) => Transport::Udp,
        }
    }

    /// The probe of `ip:port` of this kind.
    pub fn probe(self, ip: IpAddr, port: u16, timeout_ms: u64) -> Probe {
        match self {
            LiveProbe::Tcp => Probe::Tcp(TcpProbe { ip, port, timeout_ms }),
            LiveProbe::Udp(payload) => Probe::Udp(UdpProbe {
                ip,
                port,
                payload,
                timeout_ms,
            }),
        }
    }
}

/// A cluster DNS server endpoint.
#[derive(Debug, Clone, PartialEq)]
pub struct DnsServerTarget {
    pub pod: Option<NamespacedName>,
    pub ip: IpAddr,
    pub in_service: bool,
}

/// The name to resolve and what the API says about it.
#[derive(Debug, Clone, PartialEq)]
pub struct DnsPlan {
    pub name: String,
    pub service_guess: Option<NamespacedName>,
    pub same_name_elsewhere: Vec<NamespacedName>,
    pub names_in_namespace: Vec<String>,
    pub dns_service_ip: Fact<Option<IpAddr>>,
    pub servers: Fact<Vec<DnsServerTarget>>,
}

/// Everything the check knows before probing, and the probes to run.
#[derive(Debug, Clone, PartialEq)]
pub struct CheckPlan {
    pub source: SourceFacts,
    pub dns: Option<DnsPlan>,
    pub destination: DestinationPlan,
    pub probes: Vec<PlannedProbe>,
    /// A `HOST:PORT` name the API ties to no Service, or an ExternalName Service for a host
    /// outside the cluster: once the name resolves, plan the address it resolved to
    /// ([`follow_resolved`]).
    pub follow_dns: bool,
}

impl CheckPlan {
    /// What the repeated probe of `key` reached, in report terms; `None` for a probe a repeat
    /// does not report on its own (the second family's lookup and ClusterIP).
    pub fn probed(&self, key: ProbeKey) -> Option<crate::check::repeat::Probed> {
        use crate::check::repeat::Probed;
        let dest = &self.destination;
        Some(match key {
            ProbeKey::Resolve => Probed::Lookup {
                name: self.dns.as_ref()?.name.clone(),
            },
            ProbeKey::DirectDns(ip) => Probed::DnsServer {
                ip,
                pod: self
                    .dns
                    .as_ref()
                    .and_then(|d| d.servers.known())
                    .and_then(|servers| servers.iter().find(|s| s.ip == ip))
                    .and_then(|s| s.pod.clone()),
            },
            ProbeKey::ClusterIp => {
                let (ip, port) = dest.cluster_ip?;
                let named = VipKind::of(dest.entry()).as_str();
                Probed::ClusterIp { ip, port, named }
            }
            ProbeKey::Endpoint(ip, port) => Probed::Endpoint {
                ip,
                port,
                pod: dest
                    .endpoints
                    .known()
                    .and_then(|list| list.iter().find(|e| e.ip == ip && e.port == Some(port)))
                    .and_then(|e| e.pod.as_ref())
                    .map(|p| p.key()),
            },
            _ => return None,
        })
    }

    /// The source pod's node and IP, when it runs and can be probed from.
    pub fn probe_source(&self) -> Option<(&str, IpAddr)> {
        match &self.source {
            SourceFacts::Found { pod, .. } if pod.phase == "Running" => Some((pod.node.as_deref()?, pod.ip?)),
            _ => None,
        }
    }
}

/// Plans the check: the static facts and the probes, all from the snapshot.
pub fn plan(snap: &Snapshot, request: &CheckRequest) -> CheckPlan {
    let source = source_facts(snap, &request.from);
    let (dns_name, key) = destination_key(snap, request);
    let destination = plan_destination(snap, key.clone().unwrap_or(DestKey::Nothing));
    let follow_dns = key.is_none() || external_host_port(&destination, request).is_some();
    let dns = dns_name.map(|name| plan_dns(snap, request, name));
    let mut plan = CheckPlan {
        source,
        dns,
        destination,
        probes: vec![],
        follow_dns,
    };
    plan.probes = probes(&plan, request);
    plan
}

/// The second pass of a `HOST:PORT` check: the destination is the address the name resolved
/// to (a Service's ClusterIP, a pod, or an outside address), with its probes.
pub fn follow_resolved(
    snap: &Snapshot,
    request: &CheckRequest,
    first: &CheckPlan,
    resolved: IpAddr,
) -> Option<(DestinationPlan, Vec<PlannedProbe>)> {
    let port = followed_port(&first.destination, request)?;
    let mut destination = plan_destination(snap, DestKey::Address { ip: resolved, port });
    if let ServiceFacts::Found(external_name) = &first.destination.service {
        match &mut destination.service {
            // The host behind the ExternalName: judged as the Service's one destination.
            ServiceFacts::NotApplicable => {
                destination.destination = Destination::Service;
                destination.service = first.destination.service.clone();
                // Probed over the Service port's protocol, as the first plan chose.
                destination.live = first.destination.live;
                destination.not_probed = first.destination.not_probed.clone();
            }
            // It named a Service of the cluster by its address: that Service, as an alias.
            ServiceFacts::Found(svc) if svc.alias_of.is_none() => {
                svc.alias_of = Some(ExternalNameAlias {
                    service: external_name.key(),
                    host: external_name.external_name.clone().unwrap_or_default(),
                });
            }
            _ => {}
        }
    }
    let (node, ip) = first.probe_source()?;
    let probes = destination_probes(&destination, request, node, ip);
    Some((destination, probes))
}

/// The port a followed name is connected to: a `HOST:PORT` target's, or an ExternalName
/// Service's requested port ([`external_host_port`]).
pub fn followed_port(dest: &DestinationPlan, request: &CheckRequest) -> Option<u16> {
    match &request.target {
        Target::Host { port, .. } => Some(*port),
        _ => external_host_port(dest, request),
    }
}

/// For an ExternalName Service for a host outside the cluster's Services, the port a client
/// connects to there: the requested number, or the number of the Service's port of that name.
fn external_host_port(dest: &DestinationPlan, request: &CheckRequest) -> Option<u16> {
    let ServiceFacts::Found(svc) = &dest.service else {
        return None;
    };
    svc.external_name.as_ref()?;
    match &request.target {
        Target::Host { port, .. } => Some(*port),
        Target::Service {
            port: PortRef::Number(n),
            ..
        } => Some(*n),
        Target::Service { .. } => svc.requested_port().map(|p| p.port),
        _ => None,
    }
}

fn source_facts(snap: &Snapshot, from: &NamespacedName) -> SourceFacts {
    let pods = match &snap.pods {
        Fact::Unknown(failure) => return SourceFacts::Unknown(failure.clone()),
        Fact::Known(pods) => pods,
    };
    match pods.iter().find(|p| from.is(*p)) {
        Some(pod) => SourceFacts::Found {
            pod: read_pod(pod),
            agent: AgentFacts::NotAsked,
        },
        None => SourceFacts::Missing {
            namespace: from.namespace.clone(),
            name: from.name.clone(),
            elsewhere: pods
                .iter()
                .filter(|p| p.metadata.name.as_deref() == Some(from.name.as_str()))
                .map(|p| p.metadata.namespace.clone().unwrap_or_default())
                .collect(),
        },
    }
}

mod destination;
mod dns;
mod probes;

pub(crate) use destination::service_entry;
pub use destination::{in_cluster_alias, service_guess};
pub use probes::{CAPTURE_MARGIN_MS, explains, live_targets, witness_nodes};

use destination::{DestKey, destination_key, plan_destination};
use dns::plan_dns;
use probes::{destination_probes, probes};

#[cfg(test)]
#[path = "plan_tests.rs"]
mod tests;
