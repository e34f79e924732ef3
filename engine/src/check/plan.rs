//! The pure planner: from the [`Snapshot`] and the [`CheckRequest`], what the target is in
//! cluster terms (the static facts) and which probes which agent must run to judge it.
//!
//! No I/O: `probe` executes the plan, `assemble` turns plan and replies into evidence.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;
use std::time::Duration;

use k8s_openapi::api::core::v1::Service;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::core::{Selector, SelectorExt};
use netdiag_proto::{
    CaptureProbe, DnsProbe, NameserverAddr, NodeDataplaneProbe, PathMtuProbe, PodListenersProbe, Probe,
    ProbeSource, RecordType, ServiceVip, TcpProbe, Transport, UdpPayload, UdpProbe,
};

use super::evidence::*;
use super::snapshot::Snapshot;
use super::target::Target;
use crate::cluster::endpoints::{self, Conditions};
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
    /// The source node's Service rules and conntrack fill.
    NodeDataplane,
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
    /// A `HOST:PORT` name the API ties to no Service: once it resolves, plan the address it
    /// resolved to ([`follow_resolved`]).
    pub follow_dns: bool,
}

impl CheckPlan {
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
    let follow_dns = key.is_none();
    let destination = plan_destination(snap, key.unwrap_or(DestKey::Nothing));
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
    let Target::Host { port, .. } = &request.target else {
        return None;
    };
    let destination = plan_destination(
        snap,
        DestKey::Address {
            ip: resolved,
            port: *port,
        },
    );
    let (node, ip) = first.probe_source()?;
    let probes = destination_probes(&destination, request, node, ip);
    Some((destination, probes))
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

/// What the target is, in cluster terms, before probing.
#[derive(Debug, Clone)]
enum DestKey {
    /// A Service port, and the protocol the target asked for when it named one.
    Service(NamespacedName, PortRef, Option<Protocol>),
    Pod(NamespacedName, PortRef),
    Address {
        ip: IpAddr,
        port: u16,
    },
    /// A name that designates no Service: nothing to probe until it resolves.
    Nothing,
}

/// The name to resolve (if any) and what the target designates (`None` until a name resolves).
fn destination_key(snap: &Snapshot, request: &CheckRequest) -> (Option<String>, Option<DestKey>) {
    let ns = |given: &Option<String>| given.clone().unwrap_or_else(|| request.target_namespace.clone());
    match &request.target {
        Target::Service {
            name,
            namespace,
            port,
            protocol,
        } => {
            let key = NamespacedName::new(ns(namespace), name.clone());
            (
                Some(format!("{}.{}", key.name, key.namespace)),
                Some(DestKey::Service(key, port.clone(), *protocol)),
            )
        }
        Target::Pod {
            name,
            namespace,
            port,
        } => (
            None,
            Some(DestKey::Pod(
                NamespacedName::new(ns(namespace), name.clone()),
                port.clone(),
            )),
        ),
        Target::Ip { ip, port } => (None, Some(DestKey::Address { ip: *ip, port: *port })),
        Target::Host { host, port } => {
            let key = service_guess(host, &request.from.namespace)
                .filter(|svc| find_service(snap.services(), svc).is_some())
                .map(|svc| DestKey::Service(svc, PortRef::Number(*port), None));
            (Some(host.clone()), key)
        }
    }
}

/// The Service a DNS name designates under the cluster's naming rules, seen from `source_ns`.
pub fn service_guess(host: &str, source_ns: &str) -> Option<NamespacedName> {
    let host = host.trim_end_matches('.');
    let labels: Vec<&str> = host.split('.').collect();
    let cluster_suffix: Vec<&str> = CLUSTER_DOMAIN.split('.').collect();
    match labels.as_slice() {
        [name] => Some(NamespacedName::new(source_ns, *name)),
        [name, ns] | [name, ns, "svc"] => Some(NamespacedName::new(*ns, *name)),
        [name, ns, "svc", rest @ ..] if rest == cluster_suffix.as_slice() => {
            Some(NamespacedName::new(*ns, *name))
        }
        _ => None,
    }
}

fn find_service<'a>(services: &'a [Service], key: &NamespacedName) -> Option<&'a Service> {
    services.iter().find(|s| key.is(*s))
}

fn service_cluster_ip(svc: &Service) -> Option<IpAddr> {
    svc.spec.as_ref()?.cluster_ip.as_deref()?.parse().ok()
}

/// `spec.clusterIPs` (with `spec.clusterIP`): one virtual IP per family, the primary first.
fn service_cluster_ips(svc: &Service) -> Vec<IpAddr> {
    let Some(spec) = &svc.spec else {
        return vec![];
    };
    let mut ips: Vec<IpAddr> = service_cluster_ip(svc).into_iter().collect();
    for ip in spec.cluster_ips.iter().flatten().filter_map(|ip| ip.parse().ok()) {
        if !ips.contains(&ip) {
            ips.push(ip);
        }
    }
    ips
}

fn plan_destination(snap: &Snapshot, key: DestKey) -> DestinationPlan {
    match key {
        DestKey::Nothing => external(Fact::Known(vec![])),
        DestKey::Address { ip, port } => plan_address(snap, ip, port),
        DestKey::Pod(key, port) => plan_pod(snap, key, port),
        DestKey::Service(key, port, protocol) => plan_service(snap, key, port, protocol),
    }
}

fn external(endpoints: Fact<Vec<EndpointTarget>>) -> DestinationPlan {
    DestinationPlan {
        destination: Destination::External,
        service: ServiceFacts::NotApplicable,
        endpoints,
        missing_pod: None,
        cluster_ip: None,
        secondary_cluster_ip: None,
        not_probed: None,
        live: LiveProbe::Tcp,
        expected_dns: vec![],
    }
}

/// The running pod whose network namespace holds `ip` (hostNetwork pods share their node's).
fn pod_with_ip(snap: &Snapshot, ip: IpAddr) -> Option<&k8s_openapi::api::core::v1::Pod> {
    snap.pods().iter().find(|p| {
        let phase = p.status.as_ref().and_then(|s| s.phase.as_deref());
        pod_ips(p).contains(&ip)
            && !matches!(phase, Some("Succeeded" | "Failed"))
            && !p.spec.as_ref().and_then(|s| s.host_network).unwrap_or(false)
    })
}

/// An address is a Service's ClusterIP, a pod's IP, or outside the cluster's objects.
fn plan_address(snap: &Snapshot, ip: IpAddr, port: u16) -> DestinationPlan {
    if let Some(svc) = snap
        .services()
        .iter()
        .find(|s| service_cluster_ips(s).contains(&ip))
    {
        return plan_service(snap, NamespacedName::of(svc), PortRef::Number(port), None);
    }
    if let Some(pod) = pod_with_ip(snap, ip) {
        return plan_pod(snap, NamespacedName::of(pod), PortRef::Number(port));
    }
    external(Fact::Known(vec![EndpointTarget {
        ip,
        port: Some(port),
        pod: None,
        slice: None,
        conditions: Conditions::READY,
    }]))
}

fn plan_pod(snap: &Snapshot, key: NamespacedName, port: PortRef) -> DestinationPlan {
    let mut plan = external(Fact::Known(vec![]));
    plan.destination = Destination::Pod;
    match &snap.pods {
        Fact::Unknown(failure) => plan.endpoints = Fact::Unknown(failure.clone()),
        Fact::Known(pods) => match pods.iter().find(|p| key.is(*p)) {
            None => plan.missing_pod = Some(key),
            Some(pod) => {
                let facts = read_pod(pod);
                if let Some(ip) = facts.ip {
                    let conditions = Conditions {
                        ready: facts.ready && !facts.terminating,
                        serving: facts.ready,
                        terminating: facts.terminating,
                    };
                    plan.endpoints = Fact::Known(vec![EndpointTarget {
                        ip,
                        port: facts.resolve_port(&port, Protocol::Tcp),
                        pod: Some(facts),
                        slice: None,
                        conditions,
                    }]);
                }
            }
        },
    }
    plan
}

fn service_ports(svc: &Service) -> Vec<ServicePortFacts> {
    svc.spec
        .iter()
        .flat_map(|s| s.ports.iter().flatten())
        .filter_map(|p| {
            let port = u16::try_from(p.port).ok()?;
            let target_port = match &p.target_port {
                Some(IntOrString::Int(n)) => PortRef::Number(u16::try_from(*n).ok()?),
                Some(IntOrString::String(s)) => match s.parse::<u16>() {
                    Ok(n) => PortRef::Number(n),
                    Err(_) => PortRef::Name(s.clone()),
                },
                None => PortRef::Number(port),
            };
            Some(ServicePortFacts {
                name: p.name.clone().filter(|n| !n.is_empty()),
                port,
                protocol: p.protocol.as_deref().unwrap_or("TCP").parse().ok()?,
                target_port,
            })
        })
        .collect()
}

fn service_spec(
    snap: &Snapshot,
    svc: &Service,
    key: &NamespacedName,
    port: PortRef,
    protocol: Option<Protocol>,
) -> ServiceSpecFacts {
    let spec = svc.spec.clone().unwrap_or_default();
    let selector = spec.selector.clone().filter(|s| !s.is_empty());
    let selected_pods = match &selector {
        Some(sel) => {
            let matcher: Selector = sel.clone().into_iter().collect();
            let none = BTreeMap::new();
            snap.pods()
                .iter()
                .filter(|p| p.metadata.namespace.as_deref() == Some(key.namespace.as_str()))
                .filter(|p| matcher.matches(p.metadata.labels.as_ref().unwrap_or(&none)))
                .map(read_pod)
                .collect()
        }
        None => vec![],
    };
    ServiceSpecFacts {
        namespace: key.namespace.clone(),
        name: key.name.clone(),
        service_type: spec.type_.clone().unwrap_or_else(|| "ClusterIP".into()),
        headless: spec.cluster_ip.as_deref() == Some("None"),
        external_name: spec
            .external_name
            .clone()
            .filter(|_| spec.type_.as_deref() == Some("ExternalName")),
        ports: service_ports(svc),
        requested: port,
        requested_protocol: protocol,
        selector,
        selected_pods,
    }
}

fn plan_service(
    snap: &Snapshot,
    key: NamespacedName,
    port: PortRef,
    protocol: Option<Protocol>,
) -> DestinationPlan {
    let mut plan = external(Fact::Known(vec![]));
    plan.destination = Destination::Service;
    let services = match &snap.services {
        Fact::Known(s) => s,
        Fact::Unknown(failure) => {
            plan.service = ServiceFacts::Unknown(failure.clone());
            plan.endpoints = Fact::Unknown(failure.clone());
            return plan;
        }
    };
    let Some(svc) = find_service(services, &key) else {
        plan.service = ServiceFacts::Missing {
            names_in_namespace: names_in_namespace(services, &key.namespace),
            namespace: key.namespace,
            name: key.name,
        };
        return plan;
    };
    let facts = service_spec(snap, svc, &key, port, protocol);
    let cluster_ips = service_cluster_ips(svc);
    let cluster_ip = cluster_ips.first().copied();
    let requested = facts.requested_port().cloned();
    match requested.as_ref().map(|p| (p.protocol, p)) {
        Some((Protocol::Udp, p)) => plan.live = LiveProbe::Udp(udp_payload(p)),
        Some((Protocol::Sctp, p)) => {
            plan.not_probed = Some(format!("SCTP port {}: netdiag probes TCP and UDP only", p.port))
        }
        _ => {}
    }
    if let (Some(p), Some(ip)) = (&requested, cluster_ip)
        && facts.external_name.is_none()
    {
        plan.cluster_ip = Some((ip, p.port));
        plan.secondary_cluster_ip = cluster_ips.get(1).map(|ip| (*ip, p.port));
    }
    if let Some(p) = &requested {
        plan.endpoints = match &snap.slices {
            Fact::Unknown(failure) => Fact::Unknown(failure.clone()),
            Fact::Known(slices) => Fact::Known(service_endpoints(snap, slices, &key, p)),
        };
    }
    plan.expected_dns = match (cluster_ip, &plan.endpoints) {
        (Some(_), _) => cluster_ips,
        (None, Fact::Known(list)) if facts.headless => {
            list.iter().filter(|e| e.conditions.ready).map(|e| e.ip).collect()
        }
        _ => vec![],
    };
    plan.service = ServiceFacts::Found(Box::new(facts));
    plan
}

/// What the datagrams to a UDP Service port carry: a DNS query where the Service port or its
/// numeric targetPort is 53, else what the agent picks for the port it sends to.
fn udp_payload(port: &ServicePortFacts) -> UdpPayload {
    if port.port == 53 || port.target_port == PortRef::Number(53) {
        UdpPayload::DnsQuery
    } else {
        UdpPayload::Auto
    }
}

fn names_in_namespace(services: &[Service], namespace: &str) -> Vec<String> {
    services
        .iter()
        .filter(|s| s.metadata.namespace.as_deref() == Some(namespace))
        .filter_map(|s| s.metadata.name.clone())
        .collect()
}

/// The endpoints of one Service port, with the pods behind them.
fn service_endpoints(
    snap: &Snapshot,
    slices: &[k8s_openapi::api::discovery::v1::EndpointSlice],
    key: &NamespacedName,
    port: &ServicePortFacts,
) -> Vec<EndpointTarget> {
    // By namespace and name, once: a Service of hundreds of endpoints looks each one up.
    let pods: BTreeMap<(&str, &str), &k8s_openapi::api::core::v1::Pod> = snap
        .pods()
        .iter()
        .filter_map(|p| Some(((p.metadata.namespace.as_deref()?, p.metadata.name.as_deref()?), p)))
        .collect();
    endpoints::port_endpoints(slices, key, port.name.as_deref(), port.protocol)
        .into_iter()
        .map(|e| EndpointTarget {
            ip: e.ip,
            port: Some(e.port),
            pod: match &e.pod {
                Some(key) => pods
                    .get(&(key.namespace.as_str(), key.name.as_str()))
                    .map(|p| read_pod(p)),
                // A hand-written slice may name no pod: the pod holding the address, if any.
                None => pod_with_ip(snap, e.ip).map(read_pod),
            },
            slice: Some(e.slice),
            conditions: e.conditions,
        })
        .collect()
}

fn plan_dns(snap: &Snapshot, request: &CheckRequest, name: String) -> DnsPlan {
    let service_guess = match &request.target {
        Target::Service { name, namespace, .. } => Some(NamespacedName::new(
            namespace
                .clone()
                .unwrap_or_else(|| request.target_namespace.clone()),
            name.clone(),
        )),
        _ => service_guess(&name, &request.from.namespace),
    };
    let services = snap.services();
    let (same_name_elsewhere, names_in_namespace) = match &service_guess {
        Some(guess) => (
            services
                .iter()
                .map(NamespacedName::of)
                .filter(|s| s.name == guess.name && s.namespace != guess.namespace)
                .collect(),
            self::names_in_namespace(services, &guess.namespace),
        ),
        None => (vec![], vec![]),
    };
    let kube_dns = NamespacedName::kube_dns();
    let dns_service_ip = match &snap.services {
        Fact::Known(services) => Fact::Known(find_service(services, &kube_dns).and_then(service_cluster_ip)),
        Fact::Unknown(failure) => Fact::Unknown(failure.clone()),
    };
    let servers = match &snap.slices {
        Fact::Known(slices) => Fact::Known(dns_servers(slices, &kube_dns)),
        Fact::Unknown(failure) => Fact::Unknown(failure.clone()),
    };
    DnsPlan {
        name,
        service_guess,
        same_name_elsewhere,
        names_in_namespace,
        dns_service_ip,
        servers,
    }
}

/// The DNS pods behind kube-dns: its endpoints for 53/UDP (a slice that lists no ports is
/// taken as serving DNS), one per address, marked as kube-proxy would use them.
fn dns_servers(
    slices: &[k8s_openapi::api::discovery::v1::EndpointSlice],
    kube_dns: &NamespacedName,
) -> Vec<DnsServerTarget> {
    let mut listed = endpoints::endpoints_where(slices, kube_dns, |ports| {
        if ports.is_empty() {
            return Some(53);
        }
        ports
            .iter()
            .find(|p| p.protocol.as_deref() == Some("UDP") && p.port == Some(53))
            .map(|_| 53)
    });
    let mut seen = std::collections::BTreeSet::new();
    listed.retain(|e| seen.insert(e.ip));
    let used: Vec<IpAddr> = endpoints::in_service(&listed, |e| e.conditions)
        .iter()
        .map(|e| e.ip)
        .collect();
    listed
        .into_iter()
        .map(|e| DnsServerTarget {
            in_service: used.contains(&e.ip),
            pod: e.pod,
            ip: e.ip,
        })
        .collect()
}

/// Every probe of the check: DNS as the pod, each DNS pod directly, the ClusterIP, every
/// endpoint in service, and the listening sockets of each destination pod on its own node.
fn probes(plan: &CheckPlan, request: &CheckRequest) -> Vec<PlannedProbe> {
    let Some((node, ip)) = plan.probe_source() else {
        return vec![];
    };
    let mut probes = vec![];
    if let Some(dns) = &plan.dns {
        let (primary, secondary) = dns_record_types(dns, &plan.destination);
        let mut at_source = |key, name: &str, nameserver, record_type| {
            probes.push(PlannedProbe {
                key,
                node: node.to_string(),
                run_in: RunIn::Pod(ip),
                probe: Probe::Dns(DnsProbe {
                    name: name.to_string(),
                    record_type,
                    nameserver,
                    timeout_ms: request.dns_timeout_ms(),
                }),
            })
        };
        at_source(ProbeKey::Resolve, &dns.name, None, primary);
        if let Some(record_type) = secondary {
            at_source(ProbeKey::ResolveSecondary, &dns.name, None, record_type);
        }
        for server in dns.servers.known().into_iter().flatten().filter(|s| s.in_service) {
            at_source(
                ProbeKey::DirectDns(server.ip),
                DNS_LIVENESS_NAME,
                Some(NameserverAddr::Ip(server.ip)),
                RecordType::A,
            );
        }
    }
    probes.extend(destination_probes(&plan.destination, request, node, ip));
    if probes.is_empty() {
        probes.push(PlannedProbe {
            key: ProbeKey::Netns,
            node: node.to_string(),
            run_in: RunIn::Pod(ip),
            probe: Probe::Listeners,
        });
    }
    probes
}

/// The record types the target name is asked for: the family of the first address the name
/// should resolve to (for a name the API ties to nothing, the cluster DNS Service's family), and
/// for a dual-stack target the other family's as well (what getaddrinfo with AF_UNSPEC asks).
pub fn dns_record_types(dns: &DnsPlan, dest: &DestinationPlan) -> (RecordType, Option<RecordType>) {
    let record = |family| match family {
        IpFamily::V4 => RecordType::A,
        IpFamily::V6 => RecordType::Aaaa,
    };
    let mut families: Vec<IpFamily> = Vec::new();
    for ip in &dest.expected_dns {
        if !families.contains(&IpFamily::of(*ip)) {
            families.push(IpFamily::of(*ip));
        }
    }
    match families.as_slice() {
        [first, second, ..] => (record(*first), Some(record(*second))),
        [only] => (record(*only), None),
        [] => match dns.dns_service_ip.known().copied().flatten() {
            Some(ip) => (record(IpFamily::of(ip)), None),
            None => (RecordType::A, None),
        },
    }
}

/// The destination addresses traffic goes to: a Service's endpoints in service (kube-proxy's
/// rule), or the one pod or address.
pub fn live_targets(dest: &DestinationPlan) -> Vec<&EndpointTarget> {
    let all = dest.endpoints.known().map(Vec::as_slice).unwrap_or_default();
    match dest.destination {
        Destination::Service => endpoints::in_service(all, |e| e.conditions),
        _ => all.iter().collect(),
    }
}

fn destination_probes(
    dest: &DestinationPlan,
    request: &CheckRequest,
    node: &str,
    ip: IpAddr,
) -> Vec<PlannedProbe> {
    if dest.not_probed.is_some() {
        return vec![];
    }
    let timeout_ms = request.timeout_ms();
    let tcp = |key, to: IpAddr, port| PlannedProbe {
        key,
        node: node.to_string(),
        run_in: RunIn::Pod(ip),
        probe: Probe::Tcp(TcpProbe {
            ip: to,
            port,
            timeout_ms,
        }),
    };
    // The VIP and the endpoints are probed over the Service port's protocol.
    let live_probe = |key, to: IpAddr, port| PlannedProbe {
        probe: dest.live.probe(to, port, timeout_ms),
        ..tcp(key, to, port)
    };
    let mut probes = vec![];
    if let Some((vip, port)) = dest.cluster_ip {
        probes.push(live_probe(ProbeKey::ClusterIp, vip, port));
    }
    if let Some((vip, port)) = dest.secondary_cluster_ip {
        probes.push(live_probe(ProbeKey::ClusterIpSecondary, vip, port));
    }
    let live = live_targets(dest);
    for e in &live {
        if let Some(port) = e.port {
            probes.push(live_probe(ProbeKey::Endpoint(e.ip, port), e.ip, port));
        }
    }
    for e in &live {
        if let Some(dest_node) = e.pod.as_ref().and_then(|p| p.node.clone()) {
            // Every destination pod of a node in one request to that node's agent.
            probes.push(PlannedProbe {
                key: ProbeKey::Listeners(e.ip),
                node: dest_node,
                run_in: RunIn::Node,
                probe: Probe::PodListeners(PodListenersProbe { pod_ip: e.ip }),
            });
        }
    }
    for (_, host_ip) in witness_nodes(&live, node) {
        probes.push(tcp(ProbeKey::NodeWitness(host_ip), host_ip, NODE_WITNESS_PORT));
    }
    probes.extend(datapath_witnesses(dest, &live, request, node, ip));
    probes
}

/// How much longer than the TCP probes a capture watches. A capture whose request reached its
/// agent after the source's still sees SYNs: a probe not yet connected sends a fresh one every
/// 100 ms until the timeout, so what a capture sees does not hang on its last moments. The
/// margin only covers the last SYN's way across the path (the capture also starts a few
/// milliseconds after its request leaves), and it is paid by every check whose connection is
/// lost, so it stays small.
pub const CAPTURE_MARGIN_MS: u64 = 10;
/// Packets of the peer's connections a capture records at most.
pub const CAPTURE_MAX_PACKETS: u32 = 256;

/// The datapath witnesses, sent in the same round as the TCP probes: the path MTU to each
/// endpoint, a capture on each destination pod's interface, and the source node's dataplane.
fn datapath_witnesses(
    dest: &DestinationPlan,
    live: &[&EndpointTarget],
    request: &CheckRequest,
    node: &str,
    ip: IpAddr,
) -> Vec<PlannedProbe> {
    let at_source = |key, probe| PlannedProbe {
        key,
        node: node.to_string(),
        run_in: RunIn::Pod(ip),
        probe,
    };
    if live.is_empty() && dest.cluster_ip.is_none() {
        return vec![];
    }
    let mut probes = vec![];
    let measured = path_mtu_measured(live);
    // The path MTU and the capture witness TCP segments: a UDP port has neither.
    let tcp_live = match dest.live {
        LiveProbe::Tcp => live,
        LiveProbe::Udp(_) => &[][..],
    };
    for e in tcp_live {
        let Some(port) = e.port else { continue };
        // Path MTU and the packet witness watch IPv4 only: an IPv6 endpoint gets neither,
        // rather than a witness that would see nothing and seem to accuse the path.
        if !(e.ip.is_ipv4() && ip.is_ipv4()) {
            continue;
        }
        if measured.contains(&e.ip) {
            probes.push(at_source(
                ProbeKey::PathMtu(e.ip, port),
                Probe::PathMtu(PathMtuProbe {
                    ip: e.ip,
                    port,
                    timeout_ms: request.timeout_ms(),
                }),
            ));
        }
        if let Some(dest_node) = e.pod.as_ref().and_then(|p| p.node.clone()) {
            // In the destination node's one request, naming its pod like `podListeners`.
            probes.push(PlannedProbe {
                key: ProbeKey::Capture(e.ip),
                node: dest_node,
                run_in: RunIn::Node,
                probe: Probe::Capture(CaptureProbe {
                    pod_ip: Some(e.ip),
                    peer: ip,
                    port,
                    duration_ms: request.capture_ms(),
                    max_packets: CAPTURE_MAX_PACKETS,
                }),
            });
        }
    }
    let service = dest.cluster_ip.map(|(vip, port)| ServiceVip {
        ip: vip,
        port,
        protocol: dest.live.transport(),
    });
    probes.push(at_source(
        ProbeKey::NodeDataplane,
        Probe::NodeDataplane(NodeDataplaneProbe { service }),
    ));
    probes
}

/// The endpoints whose path MTU is measured: the path MTU belongs to the path between two nodes,
/// so one endpoint per destination node and address family (the lowest address, so that every run
/// picks the same), and each endpoint that is no pod. A measurement opens a round of
/// connections, which at hundreds of endpoints would be most of the check's cost.
fn path_mtu_measured(live: &[&EndpointTarget]) -> BTreeSet<IpAddr> {
    let mut lowest: BTreeMap<(&str, bool), IpAddr> = BTreeMap::new();
    let mut measured = BTreeSet::new();
    for e in live.iter().filter(|e| e.port.is_some()) {
        match e.pod.as_ref().and_then(|p| p.node.as_deref()) {
            Some(node) => {
                let low = lowest.entry((node, e.ip.is_ipv4())).or_insert(e.ip);
                *low = (*low).min(e.ip);
            }
            None => {
                measured.insert(e.ip);
            }
        }
    }
    measured.extend(lowest.into_values());
    measured
}

/// For a speculative probe, the destination address whose probes' failure it would explain: a
/// destination pod's listening sockets explain a refused connection, a capture on its interface
/// a lost one. They have nothing to tell when every connection to that address was established,
/// so a healthy check never waits for them ([`super::probe::execute`] says when they are sent).
/// `None` for every other probe.
pub fn explains(p: &PlannedProbe) -> Option<IpAddr> {
    match (&p.key, &p.probe) {
        (ProbeKey::Capture(ip), Probe::Capture(_)) | (ProbeKey::Listeners(ip), Probe::PodListeners(_)) => {
            Some(*ip)
        }
        _ => None,
    }
}

/// The destination pods' nodes other than the source's, with their address in the family of
/// the endpoint (a dual-stack endpoint's node is witnessed per family), once each.
pub fn witness_nodes(live: &[&EndpointTarget], source_node: &str) -> BTreeSet<(String, IpAddr)> {
    live.iter()
        .filter_map(|e| {
            let pod = e.pod.as_ref()?;
            let node = pod.node.clone().filter(|n| n != source_node)?;
            let host = pod.host_ips.iter().find(|h| h.is_ipv4() == e.ip.is_ipv4());
            Some((node, *host?))
        })
        .collect()
}

#[cfg(test)]
#[path = "plan_tests.rs"]
mod tests;
