//! The I/O of a check: read the objects, ask the agents, evaluate NetworkPolicy, and fill
//! the [`Evidence`] the pure judge decides on. Failures to look become `Fact::Unknown` with the
//! reason, never errors that end the check: a tool failure must reach the report as UNDETERMINED.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::time::Duration;

use futures::future::join_all;
use k8s_openapi::api::core::v1::{Namespace, Pod, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use k8s_openapi::api::networking::v1::NetworkPolicy;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::api::{Api, ListParams};
use kube::core::{Selector, SelectorExt};
use netdiag_proto::{
    DnsOutcome, DnsProbe, ListeningSocket, NameserverAddr, Probe, ProbeReport, ProbeRequest, ProbeResult,
    ProbeSource, RecordType, TcpOutcome, TcpProbe,
};

use super::error_chain;
use super::evidence::*;
use super::target::{PodRef, PortRef, Target};
use crate::agent_client::Agents;
use crate::policy::{Flow, FlowVerdict, Peer, PolicyIndex, Protocol};

/// What to check, with every default already applied.
#[derive(Debug, Clone)]
pub struct Plan {
    pub from: PodRef,
    pub from_namespace: String,
    pub target: Target,
    /// Namespace of a `svc/`/`pod/` target that names none.
    pub target_namespace: String,
    /// `--to` as typed.
    pub to_text: String,
    pub timeout: Duration,
}

/// How agents are reached.
#[derive(Debug, Clone)]
pub enum AgentRoute {
    PortForward { namespace: String, selector: String },
    Url(String),
}

/// Name of the query sent straight to each DNS pod: always answerable by a live cluster DNS.
const DNS_LIVENESS_NAME: &str = "kube-dns.kube-system.svc.cluster.local.";
const CLUSTER_DOMAIN: &str = "cluster.local";

/// A reason string for a failed API read, naming what was read.
fn api_reason(what: &str, err: &kube::Error) -> String {
    match err {
        kube::Error::Api(status) if status.code == 403 => format!("forbidden to {what}: {}", status.message),
        kube::Error::Api(status) => format!("failed to {what}: {} ({})", status.message, status.code),
        other => format!("failed to {what}: {}", error_chain(other)),
    }
}

/// The objects read once per check.
struct Snapshot {
    pods: Fact<Vec<Pod>>,
    services: Fact<Vec<Service>>,
    namespaces: Fact<Vec<Namespace>>,
    policies: Fact<Vec<NetworkPolicy>>,
}

async fn list_all<K>(client: &kube::Client, what: &str) -> Fact<Vec<K>>
where
    K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope>
        + Clone
        + serde::de::DeserializeOwned
        + std::fmt::Debug,
    K::DynamicType: Default,
{
    match Api::<K>::all(client.clone()).list(&ListParams::default()).await {
        Ok(list) => Fact::Known(list.items),
        Err(err) => Fact::Unknown(api_reason(what, &err)),
    }
}

async fn list_slices(client: &kube::Client, namespace: &str, service: &str) -> Fact<Vec<EndpointSlice>> {
    let api: Api<EndpointSlice> = Api::namespaced(client.clone(), namespace);
    let params = ListParams::default().labels(&format!("kubernetes.io/service-name={service}"));
    match api.list(&params).await {
        Ok(list) => Fact::Known(list.items),
        Err(err) => Fact::Unknown(api_reason(
            &format!("list endpointslices of service {namespace}/{service}"),
            &err,
        )),
    }
}

fn name_of<K: kube::Resource>(obj: &K) -> &str {
    obj.meta().name.as_deref().unwrap_or_default()
}

fn ns_of<K: kube::Resource>(obj: &K) -> &str {
    obj.meta().namespace.as_deref().unwrap_or_default()
}

fn pod_ip(pod: &Pod) -> Option<IpAddr> {
    pod.status.as_ref()?.pod_ip.as_deref()?.parse().ok()
}

fn pod_facts(pod: &Pod) -> PodFacts {
    let status = pod.status.as_ref();
    let ready = status
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"));
    let container_ports = pod
        .spec
        .iter()
        .flat_map(|s| s.containers.iter())
        .flat_map(|c| c.ports.iter().flatten())
        .filter_map(|p| {
            Some(ContainerPortFacts {
                name: p.name.clone(),
                port: u16::try_from(p.container_port).ok()?,
                protocol: p.protocol.clone().unwrap_or_else(|| "TCP".into()),
            })
        })
        .collect();
    PodFacts {
        namespace: ns_of(pod).to_string(),
        name: name_of(pod).to_string(),
        phase: status
            .and_then(|s| s.phase.clone())
            .unwrap_or_else(|| "Unknown".into()),
        node: pod.spec.as_ref().and_then(|s| s.node_name.clone()),
        ip: pod_ip(pod),
        ready,
        terminating: pod.metadata.deletion_timestamp.is_some(),
        container_ports,
        labels: pod.metadata.labels.clone().unwrap_or_default(),
    }
}

fn resolve_port_on_pod(pod: &PodFacts, port: &PortRef) -> Option<u16> {
    match port {
        PortRef::Number(n) => Some(*n),
        PortRef::Name(name) => pod
            .container_ports
            .iter()
            .find(|c| c.name.as_deref() == Some(name.as_str()))
            .map(|c| c.port),
    }
}

/// The Service a DNS name designates under the cluster's naming rules, seen from `source_ns`.
pub fn service_guess(host: &str, source_ns: &str) -> Option<(String, String)> {
    let host = host.trim_end_matches('.');
    let labels: Vec<&str> = host.split('.').collect();
    let cluster_suffix: Vec<&str> = CLUSTER_DOMAIN.split('.').collect();
    match labels.as_slice() {
        [name] => Some((source_ns.to_string(), name.to_string())),
        [name, ns] => Some((ns.to_string(), name.to_string())),
        [name, ns, "svc"] => Some((ns.to_string(), name.to_string())),
        [name, ns, "svc", rest @ ..] if rest == cluster_suffix.as_slice() => {
            Some((ns.to_string(), name.to_string()))
        }
        _ => None,
    }
}

fn find_service<'a>(services: &'a [Service], ns: &str, name: &str) -> Option<&'a Service> {
    services.iter().find(|s| ns_of(*s) == ns && name_of(*s) == name)
}

fn service_cluster_ip(svc: &Service) -> Option<IpAddr> {
    svc.spec.as_ref()?.cluster_ip.as_deref()?.parse().ok()
}

/// What the target is, in cluster terms, before probing.
#[derive(Debug, Clone)]
enum DestKey {
    Service {
        namespace: String,
        name: String,
        port: PortRef,
    },
    Pod {
        namespace: String,
        name: String,
        port: PortRef,
    },
    Address {
        ip: IpAddr,
        port: u16,
    },
    /// A name that did not resolve and designates no Service: nothing to probe.
    Nothing,
}

/// The destination, ready to probe: facts with the live parts (tcp, listeners, policy) still unknown.
struct DestPlan {
    destination: Destination,
    service: ServiceFacts,
    endpoints: EndpointsFacts,
    cluster_ip: Option<ClusterIpFacts>,
    /// Only TCP is probed; a UDP/SCTP Service port leaves the live layers undetermined.
    probe_tcp: bool,
    expected_dns: Vec<IpAddr>,
}

const NOT_PROBED: &str = "not probed";

fn endpoint(
    ip: IpAddr,
    port: Option<u16>,
    pod: Option<PodFacts>,
    ready: bool,
    terminating: bool,
) -> EndpointFacts {
    EndpointFacts {
        ip,
        port,
        pod,
        ready,
        terminating,
        tcp: Fact::Unknown(NOT_PROBED.into()),
        listeners: Fact::Unknown(NOT_PROBED.into()),
        policy: PolicyCheck::NotEvaluated(NOT_PROBED.into()),
    }
}

fn service_port_facts(svc: &Service) -> Vec<ServicePortFacts> {
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
                protocol: p.protocol.clone().unwrap_or_else(|| "TCP".into()),
                target_port,
            })
        })
        .collect()
}

async fn plan_destination(client: &kube::Client, snap: &Snapshot, key: DestKey) -> DestPlan {
    let external = |endpoints: EndpointsFacts| DestPlan {
        destination: Destination::External,
        service: ServiceFacts::NotApplicable,
        endpoints,
        cluster_ip: None,
        probe_tcp: true,
        expected_dns: vec![],
    };
    match key {
        DestKey::Nothing => external(EndpointsFacts::Known(vec![])),
        DestKey::Address { ip, port } => {
            if let Fact::Known(services) = &snap.services
                && let Some(svc) = services.iter().find(|s| service_cluster_ip(s) == Some(ip))
            {
                let key = DestKey::Service {
                    namespace: ns_of(svc).to_string(),
                    name: name_of(svc).to_string(),
                    port: PortRef::Number(port),
                };
                return Box::pin(plan_destination(client, snap, key)).await;
            }
            if let Fact::Known(pods) = &snap.pods
                && let Some(pod) = pods.iter().find(|p| pod_ip(p) == Some(ip) && !host_network(p))
            {
                let key = DestKey::Pod {
                    namespace: ns_of(pod).to_string(),
                    name: name_of(pod).to_string(),
                    port: PortRef::Number(port),
                };
                return Box::pin(plan_destination(client, snap, key)).await;
            }
            external(EndpointsFacts::Known(vec![endpoint(
                ip,
                Some(port),
                None,
                true,
                false,
            )]))
        }
        DestKey::Pod {
            namespace,
            name,
            port,
        } => {
            let pods = match &snap.pods {
                Fact::Known(pods) => pods,
                Fact::Unknown(reason) => {
                    return DestPlan {
                        destination: Destination::Pod,
                        service: ServiceFacts::NotApplicable,
                        endpoints: EndpointsFacts::Unknown(reason.clone()),
                        cluster_ip: None,
                        probe_tcp: true,
                        expected_dns: vec![],
                    };
                }
            };
            let endpoints = match pods
                .iter()
                .find(|p| ns_of(*p) == namespace && name_of(*p) == name)
            {
                None => EndpointsFacts::TargetPodMissing { namespace, name },
                Some(pod) => {
                    let facts = pod_facts(pod);
                    match facts.ip {
                        None => EndpointsFacts::Known(vec![]),
                        Some(ip) => {
                            let number = resolve_port_on_pod(&facts, &port);
                            let (ready, terminating) = (facts.ready, facts.terminating);
                            EndpointsFacts::Known(vec![endpoint(ip, number, Some(facts), ready, terminating)])
                        }
                    }
                }
            };
            DestPlan {
                destination: Destination::Pod,
                service: ServiceFacts::NotApplicable,
                endpoints,
                cluster_ip: None,
                probe_tcp: true,
                expected_dns: vec![],
            }
        }
        DestKey::Service {
            namespace,
            name,
            port,
        } => plan_service(client, snap, namespace, name, port).await,
    }
}

fn host_network(pod: &Pod) -> bool {
    pod.spec.as_ref().and_then(|s| s.host_network).unwrap_or(false)
}

async fn plan_service(
    client: &kube::Client,
    snap: &Snapshot,
    namespace: String,
    name: String,
    port: PortRef,
) -> DestPlan {
    let unknown = |reason: String| DestPlan {
        destination: Destination::Service,
        service: ServiceFacts::Unknown(reason.clone()),
        endpoints: EndpointsFacts::Unknown(reason),
        cluster_ip: None,
        probe_tcp: true,
        expected_dns: vec![],
    };
    let services = match &snap.services {
        Fact::Known(s) => s,
        Fact::Unknown(reason) => return unknown(reason.clone()),
    };
    let Some(svc) = find_service(services, &namespace, &name) else {
        let names_in_namespace = services
            .iter()
            .filter(|s| ns_of(*s) == namespace)
            .map(|s| name_of(s).to_string())
            .collect();
        return DestPlan {
            destination: Destination::Service,
            service: ServiceFacts::Missing {
                namespace,
                name,
                names_in_namespace,
            },
            endpoints: EndpointsFacts::Known(vec![]),
            cluster_ip: None,
            probe_tcp: true,
            expected_dns: vec![],
        };
    };
    let spec = svc.spec.clone().unwrap_or_default();
    let cluster_ip = service_cluster_ip(svc);
    let headless = spec.cluster_ip.as_deref() == Some("None");
    let selector = spec.selector.clone().filter(|s| !s.is_empty());
    let selected_pods: Vec<PodFacts> = match (&selector, &snap.pods) {
        (Some(sel), Fact::Known(pods)) => {
            let matcher: Selector = sel.clone().into_iter().collect();
            pods.iter()
                .filter(|p| ns_of(*p) == namespace)
                .filter(|p| matcher.matches(p.metadata.labels.as_ref().unwrap_or(&BTreeMap::new())))
                .map(pod_facts)
                .collect()
        }
        _ => vec![],
    };
    let facts = ServiceSpecFacts {
        namespace: namespace.clone(),
        name: name.clone(),
        service_type: spec.type_.clone().unwrap_or_else(|| "ClusterIP".into()),
        headless,
        external_name: spec
            .external_name
            .clone()
            .filter(|_| spec.type_.as_deref() == Some("ExternalName")),
        ports: service_port_facts(svc),
        requested: port,
        selector,
        selected_pods,
    };
    let requested = facts.requested_port().cloned();
    let probe_tcp = requested.as_ref().is_none_or(|p| p.protocol == "TCP");
    // Only TCP is probed: the live layers of a UDP/SCTP port say so instead of "not probed".
    let unprobed = match &requested {
        Some(p) if !probe_tcp => format!("{} port {}: netdiag probes TCP only", p.protocol, p.port),
        _ => NOT_PROBED.to_string(),
    };
    let cluster_ip_facts = match (&requested, cluster_ip) {
        (Some(p), Some(ip)) if facts.external_name.is_none() => Some(ClusterIpFacts {
            ip,
            port: p.port,
            tcp: Fact::Unknown(unprobed.clone()),
        }),
        _ => None,
    };
    let endpoints = match &requested {
        None => EndpointsFacts::Known(vec![]),
        Some(p) => match list_slices(client, &namespace, &name).await {
            Fact::Unknown(reason) => EndpointsFacts::Unknown(reason),
            Fact::Known(slices) => {
                let mut list = slice_endpoints(&slices, p, snap);
                for e in &mut list {
                    e.tcp = Fact::Unknown(unprobed.clone());
                }
                EndpointsFacts::Known(list)
            }
        },
    };
    let expected_dns = match (cluster_ip, &endpoints) {
        (Some(ip), _) => vec![ip],
        (None, EndpointsFacts::Known(list)) if headless => {
            list.iter().filter(|e| e.ready).map(|e| e.ip).collect()
        }
        _ => vec![],
    };
    DestPlan {
        destination: Destination::Service,
        service: ServiceFacts::Found(Box::new(facts)),
        endpoints,
        cluster_ip: cluster_ip_facts,
        probe_tcp,
        expected_dns,
    }
}

/// The endpoints of one Service port, from its EndpointSlices, as the dataplane sees them.
fn slice_endpoints(slices: &[EndpointSlice], port: &ServicePortFacts, snap: &Snapshot) -> Vec<EndpointFacts> {
    let pods = snap.pods.known().map(Vec::as_slice).unwrap_or_default();
    let mut out = Vec::new();
    let mut seen = std::collections::BTreeSet::new();
    for slice in slices {
        let slice_port = slice.ports.iter().flatten().find(|p| {
            p.name.as_deref().filter(|n| !n.is_empty()) == port.name.as_deref()
                && p.protocol.as_deref().unwrap_or("TCP") == port.protocol
        });
        let Some(number) = slice_port
            .and_then(|p| p.port)
            .and_then(|n| u16::try_from(n).ok())
        else {
            continue;
        };
        for ep in &slice.endpoints {
            let Some(ip) = ep.addresses.first().and_then(|a| a.parse::<IpAddr>().ok()) else {
                continue;
            };
            if !seen.insert((ip, number)) {
                continue;
            }
            let conditions = ep.conditions.clone().unwrap_or_default();
            let terminating = conditions.terminating.unwrap_or(false);
            let ready = conditions.ready.unwrap_or(true) && !terminating;
            let pod = ep
                .target_ref
                .as_ref()
                .filter(|r| r.kind.as_deref() == Some("Pod"))
                .and_then(|r| {
                    let ns = r.namespace.as_deref().or(slice.metadata.namespace.as_deref())?;
                    pods.iter()
                        .find(|p| ns_of(*p) == ns && Some(name_of(*p)) == r.name.as_deref())
                })
                .map(pod_facts);
            out.push(endpoint(ip, Some(number), pod, ready, terminating));
        }
    }
    out
}

async fn cluster_dns(client: &kube::Client, snap: &Snapshot) -> Fact<ClusterDnsFacts> {
    let service_ip = match &snap.services {
        Fact::Known(services) => {
            find_service(services, "kube-system", "kube-dns").and_then(service_cluster_ip)
        }
        Fact::Unknown(reason) => return Fact::Unknown(reason.clone()),
    };
    let slices = match list_slices(client, "kube-system", "kube-dns").await {
        Fact::Known(s) => s,
        Fact::Unknown(reason) => return Fact::Unknown(reason),
    };
    let mut pods = Vec::new();
    let mut seen = std::collections::BTreeSet::new();
    for slice in &slices {
        let has_udp_53 = slice
            .ports
            .iter()
            .flatten()
            .any(|p| p.protocol.as_deref() == Some("UDP") && p.port == Some(53));
        if !has_udp_53 && !slice.ports.as_ref().is_none_or(|p| p.is_empty()) {
            continue;
        }
        for ep in &slice.endpoints {
            let Some(ip) = ep.addresses.first().and_then(|a| a.parse::<IpAddr>().ok()) else {
                continue;
            };
            if !seen.insert(ip) {
                continue;
            }
            let c = ep.conditions.clone().unwrap_or_default();
            let name = ep
                .target_ref
                .as_ref()
                .and_then(|r| {
                    Some(format!(
                        "{}/{}",
                        r.namespace.as_deref().unwrap_or("kube-system"),
                        r.name.as_deref()?
                    ))
                })
                .unwrap_or_else(|| ip.to_string());
            pods.push(DnsPodFacts {
                pod: name,
                ip,
                ready: c.ready.unwrap_or(true) && !c.terminating.unwrap_or(false),
                direct: Fact::Unknown(NOT_PROBED.into()),
                egress_policy: PolicyCheck::NotEvaluated(NOT_PROBED.into()),
            });
        }
    }
    Fact::Known(ClusterDnsFacts { service_ip, pods })
}

/// Where each probe's result goes back to.
#[derive(Debug, Clone, Copy)]
enum Slot {
    Dns,
    DirectDns(usize),
    ClusterIp,
    Endpoint(usize),
    Netns,
}

/// Builds the probes a destination needs: the ClusterIP and every ready endpoint (all at once).
fn destination_probes(dest: &DestPlan, timeout_ms: u64, probes: &mut Vec<(Slot, Probe)>) {
    if !dest.probe_tcp {
        return;
    }
    if let Some(cip) = &dest.cluster_ip {
        probes.push((
            Slot::ClusterIp,
            Probe::Tcp(TcpProbe {
                ip: cip.ip,
                port: cip.port,
                timeout_ms,
            }),
        ));
    }
    if let EndpointsFacts::Known(list) = &dest.endpoints {
        for (i, e) in list.iter().enumerate() {
            let live = e.ready || dest.destination != Destination::Service;
            if let (true, Some(port)) = (live, e.port) {
                probes.push((
                    Slot::Endpoint(i),
                    Probe::Tcp(TcpProbe {
                        ip: e.ip,
                        port,
                        timeout_ms,
                    }),
                ));
            }
        }
    }
}

/// The outcome of asking the source node's agent.
type SourceReply = Result<(String, ProbeReport), String>;

async fn ask_source(
    agents: &Result<Agents, String>,
    node: &str,
    ip: IpAddr,
    probes: &[(Slot, Probe)],
    deadline: Duration,
) -> SourceReply {
    let agents = agents.as_ref().map_err(Clone::clone)?;
    let agent = agents.agent_for(node).map_err(|e| error_chain(&e))?;
    let mut list: Vec<Probe> = probes.iter().map(|(_, p)| p.clone()).collect();
    if list.is_empty() {
        list.push(Probe::Listeners);
    }
    let request = ProbeRequest {
        source: ProbeSource::PodIp { ip },
        probes: list,
    };
    let report = agents
        .probe(node, &request, deadline)
        .await
        .map_err(|e| error_chain(&e))?;
    if report.results.len() != request.probes.len() {
        return Err(format!(
            "agent {agent} returned {} results for {} probes",
            report.results.len(),
            request.probes.len()
        ));
    }
    Ok((agent, report))
}

fn apply_results(
    reply: &SourceReply,
    probes: &[(Slot, Probe)],
    dns: &mut Option<DnsFacts>,
    dest: &mut DestPlan,
) {
    for (i, (slot, _)) in probes.iter().enumerate() {
        let result = match reply {
            Ok((_, report)) => Ok(&report.results[i]),
            Err(reason) => Err(reason.clone()),
        };
        match slot {
            Slot::Dns => {
                if let Some(d) = dns.as_mut() {
                    d.result = match result {
                        Ok(ProbeResult::Dns(r)) => Fact::Known(r.clone()),
                        Ok(other) => Fact::Unknown(format!(
                            "agent answered a {:?} result to a dns probe",
                            kind(other)
                        )),
                        Err(reason) => Fact::Unknown(reason),
                    };
                }
            }
            Slot::DirectDns(j) => {
                if let Some(Fact::Known(cluster)) = dns.as_mut().map(|d| &mut d.cluster_dns) {
                    cluster.pods[*j].direct = match result {
                        Ok(ProbeResult::Dns(r)) => Fact::Known(r.answer.outcome.clone()),
                        Ok(other) => Fact::Unknown(format!("unexpected {} result", kind(other))),
                        Err(reason) => Fact::Unknown(reason),
                    };
                }
            }
            Slot::ClusterIp => {
                if let Some(cip) = dest.cluster_ip.as_mut() {
                    cip.tcp = tcp_fact(result);
                }
            }
            Slot::Endpoint(j) => {
                if let EndpointsFacts::Known(list) = &mut dest.endpoints {
                    list[*j].tcp = tcp_fact(result);
                }
            }
            Slot::Netns => {}
        }
    }
}

fn kind(result: &ProbeResult) -> &'static str {
    match result {
        ProbeResult::Dns(_) => "dns",
        ProbeResult::Tcp(_) => "tcp",
        ProbeResult::Listeners(_) => "listeners",
        ProbeResult::Interfaces(_) => "interfaces",
    }
}

fn tcp_fact(result: Result<&ProbeResult, String>) -> Fact<TcpOutcome> {
    match result {
        Ok(ProbeResult::Tcp(t)) => Fact::Known(t.outcome.clone()),
        Ok(other) => Fact::Unknown(format!("unexpected {} result to a tcp probe", kind(other))),
        Err(reason) => Fact::Unknown(reason),
    }
}

/// Lists the listening sockets of every live destination pod, each through its own node's agent.
async fn ask_listeners(
    agents: &Result<Agents, String>,
    dest: &DestPlan,
    deadline: Duration,
) -> Vec<(usize, Fact<Vec<ListeningSocket>>)> {
    let EndpointsFacts::Known(list) = &dest.endpoints else {
        return vec![];
    };
    let asks = list.iter().enumerate().filter_map(|(i, e)| {
        let live = e.ready || dest.destination != Destination::Service;
        let pod = e.pod.as_ref()?;
        let node = pod.node.clone()?;
        live.then_some((i, node, e.ip))
    });
    let futures = asks.map(|(i, node, ip)| async move {
        let agents = match agents {
            Ok(a) => a,
            Err(reason) => return (i, Fact::Unknown(reason.clone())),
        };
        let request = ProbeRequest {
            source: ProbeSource::PodIp { ip },
            probes: vec![Probe::Listeners],
        };
        let fact = match agents.probe(&node, &request, deadline).await {
            Ok(report) => match report.results.first() {
                Some(ProbeResult::Listeners(l)) => match &l.error {
                    Some(err) => {
                        Fact::Unknown(format!("the agent on {node} could not read the sockets: {err}"))
                    }
                    None => Fact::Known(l.sockets.clone()),
                },
                _ => Fact::Unknown(format!("the agent on {node} returned no listeners result")),
            },
            Err(err) => Fact::Unknown(error_chain(&err)),
        };
        (i, fact)
    });
    join_all(futures).await
}

fn policy_check(index: &Result<PolicyIndex, String>, flow: Flow) -> PolicyCheck {
    let index = match index {
        Ok(index) => index,
        Err(reason) => return PolicyCheck::NotEvaluated(reason.clone()),
    };
    match index.evaluate(&flow) {
        Ok(verdict) if verdict.allowed => PolicyCheck::Allowed {
            detail: verdict.explain(),
        },
        Ok(verdict) => denied(&verdict),
        Err(err) => PolicyCheck::NotEvaluated(err.to_string()),
    }
}

fn denied(v: &FlowVerdict) -> PolicyCheck {
    let side = |d: &crate::policy::DirectionVerdict, subject: &Peer, what: String| {
        (d.applies && !d.allowed).then(|| {
            let by: Vec<String> = d.isolating_policies.iter().map(ToString::to_string).collect();
            DeniedSide {
                why: format!(
                    "{subject} is isolated by {}; no rule allows {what} on {}/{}",
                    by.join(", "),
                    v.port,
                    v.protocol
                ),
                policies: d
                    .isolating_policies
                    .iter()
                    .map(|p| (p.namespace.clone(), p.name.clone()))
                    .collect(),
                port: v.port,
                protocol: v.protocol.to_string(),
            }
        })
    };
    PolicyCheck::Denied {
        egress: side(&v.egress, &v.from, format!("to {}", v.to)),
        ingress: side(&v.ingress, &v.to, format!("from {}", v.from)),
    }
}

fn peer_of(e: &EndpointFacts) -> Peer {
    match &e.pod {
        Some(p) => Peer::pod(p.namespace.clone(), p.name.clone()),
        None => Peer::Ip(e.ip),
    }
}

/// How long one agent request (port-forward, probes, answer) may take for a per-probe `timeout`;
/// every API response is bounded by it too.
pub fn agent_deadline(timeout: Duration) -> Duration {
    timeout * 4 + Duration::from_secs(5)
}

/// Collects everything a check needs. Never fails: what could not be learned is `Fact::Unknown`.
pub async fn gather(client: &kube::Client, route: &AgentRoute, plan: &Plan) -> Evidence {
    let timeout_ms = plan.timeout.as_millis() as u64;
    // A lookup that meets a silent server asks two queries (the first search candidate, then the
    // name as given) before giving up: each gets half the budget, so DNS costs one timeout too.
    let dns_timeout_ms = (timeout_ms / 2).max(1);
    let from_key = format!("{}/{}", plan.from_namespace, plan.from.name);
    let agents_future = async {
        match route {
            AgentRoute::Url(url) => Ok(Agents::direct(url)),
            AgentRoute::PortForward { namespace, selector } => {
                Agents::discover(client.clone(), namespace, selector)
                    .await
                    .map_err(|e| error_chain(&e))
            }
        }
    };
    let (pods, services, namespaces, policies, agents) = tokio::join!(
        list_all::<Pod>(client, "list pods in all namespaces"),
        list_all::<Service>(client, "list services in all namespaces"),
        async {
            match Api::<Namespace>::all(client.clone())
                .list(&ListParams::default())
                .await
            {
                Ok(list) => Fact::Known(list.items),
                Err(err) => Fact::Unknown(api_reason("list namespaces", &err)),
            }
        },
        list_all::<NetworkPolicy>(client, "list networkpolicies in all namespaces"),
        agents_future,
    );
    let snap = Snapshot {
        pods,
        services,
        namespaces,
        policies,
    };

    // The source pod.
    let mut source = match &snap.pods {
        Fact::Unknown(reason) => SourceFacts::Unknown(reason.clone()),
        Fact::Known(pods) => match pods
            .iter()
            .find(|p| ns_of(*p) == plan.from_namespace && name_of(*p) == plan.from.name)
        {
            None => SourceFacts::Missing {
                namespace: plan.from_namespace.clone(),
                name: plan.from.name.clone(),
                elsewhere: pods
                    .iter()
                    .filter(|p| name_of(*p) == plan.from.name)
                    .map(|p| ns_of(p).to_string())
                    .collect(),
            },
            Some(pod) => SourceFacts::Found {
                pod: pod_facts(pod),
                agent: AgentFacts::NotAsked,
            },
        },
    };

    // The target: what to resolve, and what it designates.
    let (dns_name, key) = match &plan.target {
        Target::Service {
            name,
            namespace,
            port,
        } => {
            let ns = namespace.clone().unwrap_or_else(|| plan.target_namespace.clone());
            (
                Some(format!("{name}.{ns}")),
                Some(DestKey::Service {
                    namespace: ns,
                    name: name.clone(),
                    port: port.clone(),
                }),
            )
        }
        Target::Pod {
            name,
            namespace,
            port,
        } => {
            let ns = namespace.clone().unwrap_or_else(|| plan.target_namespace.clone());
            (
                None,
                Some(DestKey::Pod {
                    namespace: ns,
                    name: name.clone(),
                    port: port.clone(),
                }),
            )
        }
        Target::Ip { ip, port } => (None, Some(DestKey::Address { ip: *ip, port: *port })),
        Target::Host { host, port } => {
            let guess = service_guess(host, &plan.from_namespace).filter(|(ns, name)| {
                snap.services
                    .known()
                    .is_some_and(|s| find_service(s, ns, name).is_some())
            });
            let key = guess.map(|(namespace, name)| DestKey::Service {
                namespace,
                name,
                port: PortRef::Number(*port),
            });
            (Some(host.clone()), key)
        }
    };
    let known_now = key.is_some();
    let mut dest = plan_destination(client, &snap, key.clone().unwrap_or(DestKey::Nothing)).await;

    let mut dns = match &dns_name {
        None => None,
        Some(name) => {
            let guess = match &plan.target {
                Target::Service { name, namespace, .. } => Some((
                    namespace.clone().unwrap_or_else(|| plan.target_namespace.clone()),
                    name.clone(),
                )),
                _ => service_guess(name, &plan.from_namespace),
            };
            let services = snap.services.known().map(Vec::as_slice).unwrap_or_default();
            let (same_name_elsewhere, names_in_namespace) = match &guess {
                Some((ns, svc)) => (
                    services
                        .iter()
                        .filter(|s| name_of(*s) == svc && ns_of(*s) != ns)
                        .map(|s| format!("{}/{}", ns_of(s), name_of(s)))
                        .collect(),
                    services
                        .iter()
                        .filter(|s| ns_of(*s) == ns)
                        .map(|s| name_of(s).to_string())
                        .collect(),
                ),
                None => (vec![], vec![]),
            };
            Some(DnsFacts {
                name: name.clone(),
                result: Fact::Unknown(NOT_PROBED.into()),
                expected: dest.expected_dns.clone(),
                service_guess: guess,
                same_name_elsewhere,
                names_in_namespace,
                cluster_dns: cluster_dns(client, &snap).await,
            })
        }
    };

    let policy_index: Result<PolicyIndex, String> = match (&snap.namespaces, &snap.pods, &snap.policies) {
        (Fact::Known(ns), Fact::Known(pods), Fact::Known(pols)) => Ok(PolicyIndex::new(ns, pods, pols)),
        (Fact::Unknown(r), _, _) | (_, Fact::Unknown(r), _) | (_, _, Fact::Unknown(r)) => Err(r.clone()),
    };

    // Probing, as the source pod.
    let deadline = agent_deadline(plan.timeout);
    let (src_node, src_ip) = match &source {
        SourceFacts::Found { pod, .. } if pod.phase == "Running" => (pod.node.clone(), pod.ip),
        _ => (None, None),
    };
    if let (Some(node), Some(ip)) = (src_node.clone(), src_ip) {
        let mut probes: Vec<(Slot, Probe)> = vec![];
        if let Some(d) = &dns {
            probes.push((
                Slot::Dns,
                Probe::Dns(DnsProbe {
                    name: d.name.clone(),
                    record_type: RecordType::A,
                    nameserver: None,
                    timeout_ms: dns_timeout_ms,
                }),
            ));
            if let Fact::Known(cluster) = &d.cluster_dns {
                for (j, pod) in cluster.pods.iter().enumerate().filter(|(_, p)| p.ready) {
                    probes.push((
                        Slot::DirectDns(j),
                        Probe::Dns(DnsProbe {
                            name: DNS_LIVENESS_NAME.into(),
                            record_type: RecordType::A,
                            nameserver: Some(NameserverAddr::Ip(pod.ip)),
                            timeout_ms: dns_timeout_ms,
                        }),
                    ));
                }
            }
        }
        destination_probes(&dest, timeout_ms, &mut probes);
        if probes.is_empty() {
            probes.push((Slot::Netns, Probe::Listeners));
        }
        let (reply, listeners) = tokio::join!(
            ask_source(&agents, &node, ip, &probes, deadline),
            ask_listeners(&agents, &dest, deadline),
        );
        apply_results(&reply, &probes, &mut dns, &mut dest);
        apply_listeners(&mut dest, listeners);
        if let SourceFacts::Found { agent, .. } = &mut source {
            *agent = match &reply {
                Ok((agent_pod, report)) => AgentFacts::Answered {
                    agent_pod: agent_pod.clone(),
                    netns: report.netns.path.clone(),
                },
                Err(reason) => AgentFacts::Failed(reason.clone()),
            };
        }

        // A name the API could not tie to a Service: probe what it resolved to.
        if !known_now
            && reply.is_ok()
            && let Some(Fact::Known(result)) = dns.as_ref().map(|d| &d.result)
            && let DnsOutcome::Resolved { addresses, .. } = &result.answer.outcome
            && let (Some(first), Target::Host { port, .. }) = (addresses.first(), &plan.target)
        {
            dest = plan_destination(
                client,
                &snap,
                DestKey::Address {
                    ip: *first,
                    port: *port,
                },
            )
            .await;
            let mut probes = vec![];
            destination_probes(&dest, timeout_ms, &mut probes);
            if !probes.is_empty() {
                let (reply, listeners) = tokio::join!(
                    ask_source(&agents, &node, ip, &probes, deadline),
                    ask_listeners(&agents, &dest, deadline),
                );
                let mut no_dns = None;
                apply_results(&reply, &probes, &mut no_dns, &mut dest);
                apply_listeners(&mut dest, listeners);
            }
        }
    }

    // NetworkPolicy, for every destination address and for DNS.
    let from_peer = Peer::pod(plan.from_namespace.clone(), plan.from.name.clone());
    if matches!(source, SourceFacts::Found { .. }) {
        if let EndpointsFacts::Known(list) = &mut dest.endpoints {
            for e in list.iter_mut() {
                e.policy = match e.port {
                    Some(port) => policy_check(
                        &policy_index,
                        Flow {
                            from: from_peer.clone(),
                            to: peer_of(e),
                            port,
                            protocol: Protocol::Tcp,
                        },
                    ),
                    None => PolicyCheck::NotEvaluated("the destination port did not resolve".into()),
                };
            }
        }
        if let Some(Fact::Known(cluster)) = dns.as_mut().map(|d| &mut d.cluster_dns) {
            for pod in cluster.pods.iter_mut() {
                let to = match pod.pod.split_once('/') {
                    Some((ns, name)) => Peer::pod(ns, name),
                    None => Peer::Ip(pod.ip),
                };
                pod.egress_policy = policy_check(
                    &policy_index,
                    Flow {
                        from: from_peer.clone(),
                        to,
                        port: 53,
                        protocol: Protocol::Udp,
                    },
                );
            }
        }
    }
    if let Some(d) = dns.as_mut()
        && d.expected.is_empty()
    {
        d.expected = dest.expected_dns.clone();
    }

    Evidence {
        from: from_key,
        to: plan.to_text.clone(),
        destination: dest.destination,
        timeout_ms,
        source,
        dns,
        service: dest.service,
        endpoints: dest.endpoints,
        cluster_ip: dest.cluster_ip,
        agents: match route {
            AgentRoute::PortForward { namespace, selector } => Some(AgentPods {
                namespace: namespace.clone(),
                selector: selector.clone(),
            }),
            AgentRoute::Url(_) => None,
        },
    }
}

fn apply_listeners(dest: &mut DestPlan, listeners: Vec<(usize, Fact<Vec<ListeningSocket>>)>) {
    if let EndpointsFacts::Known(list) = &mut dest.endpoints {
        for (i, fact) in listeners {
            list[i].listeners = fact;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn snapshot(pods: Vec<Pod>) -> Snapshot {
        Snapshot {
            pods: Fact::Known(pods),
            services: Fact::Known(vec![]),
            namespaces: Fact::Known(vec![]),
            policies: Fact::Known(vec![]),
        }
    }

    fn http_port() -> ServicePortFacts {
        ServicePortFacts {
            name: Some("http".into()),
            port: 80,
            protocol: "TCP".into(),
            target_port: PortRef::Name("http".into()),
        }
    }

    #[test]
    fn endpoints_come_from_the_slice_port_of_the_same_name_with_kubernetes_readiness() {
        let slice: EndpointSlice = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "payments-abc", "namespace": "shop"},
            "addressType": "IPv4",
            "ports": [{"name": "metrics", "port": 9100, "protocol": "TCP"},
                      {"name": "http", "port": 8080, "protocol": "TCP"}],
            "endpoints": [
                {"addresses": ["10.244.1.3"], "targetRef": {"kind": "Pod", "name": "payments-0", "namespace": "shop"}},
                {"addresses": ["10.244.2.3"], "conditions": {"ready": false}},
                {"addresses": ["10.244.2.4"], "conditions": {"ready": true, "terminating": true}}
            ]
        }))
        .unwrap();
        let pod: Pod = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "payments-0", "namespace": "shop"},
            "spec": {"nodeName": "node-a", "containers": [{"name": "app"}]},
            "status": {"phase": "Running", "podIP": "10.244.1.3"}
        }))
        .unwrap();
        let eps = slice_endpoints(&[slice], &http_port(), &snapshot(vec![pod]));
        let summary: Vec<(String, Option<u16>, bool, bool)> = eps
            .iter()
            .map(|e| (e.ip.to_string(), e.port, e.ready, e.terminating))
            .collect();
        assert_eq!(
            summary,
            [
                ("10.244.1.3".to_string(), Some(8080), true, false),
                ("10.244.2.3".to_string(), Some(8080), false, false),
                ("10.244.2.4".to_string(), Some(8080), false, true),
            ]
        );
        assert_eq!(
            eps[0].pod.as_ref().map(|p| p.key()),
            Some("shop/payments-0".into())
        );
        assert_eq!(eps[0].node(), Some("node-a"));
        assert!(eps[1].pod.is_none());
    }

    #[test]
    fn a_slice_without_the_service_port_contributes_no_endpoints() {
        let slice: EndpointSlice = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "s", "namespace": "shop"},
            "addressType": "IPv4",
            "ports": [{"name": "web", "port": 8080, "protocol": "TCP"}],
            "endpoints": [{"addresses": ["10.244.1.3"]}]
        }))
        .unwrap();
        assert!(slice_endpoints(&[slice], &http_port(), &snapshot(vec![])).is_empty());
    }

    #[test]
    fn a_denied_flow_names_the_isolating_policies_of_the_denying_side_only() {
        let side = |applies, allowed, policies: &[&str]| crate::policy::DirectionVerdict {
            applies,
            isolated: !policies.is_empty(),
            isolating_policies: policies
                .iter()
                .map(|p| {
                    let (namespace, name) = p.split_once('/').unwrap();
                    crate::policy::PolicyRef {
                        namespace: namespace.into(),
                        name: name.into(),
                    }
                })
                .collect(),
            allowing_rules: vec![],
            allowed,
        };
        let verdict = FlowVerdict {
            from: Peer::pod("shop", "checkout"),
            to: Peer::pod("shop", "payments-0"),
            port: 8080,
            protocol: Protocol::Tcp,
            allowed: false,
            egress: side(true, true, &[]),
            ingress: side(true, false, &["shop/default-deny"]),
            notes: vec![],
        };
        assert_eq!(
            denied(&verdict),
            PolicyCheck::Denied {
                egress: None,
                ingress: Some(DeniedSide {
                    why: "shop/payments-0 is isolated by shop/default-deny; no rule allows from shop/checkout on 8080/TCP"
                        .into(),
                    policies: vec![("shop".into(), "default-deny".into())],
                    port: 8080,
                    protocol: "TCP".into(),
                }),
            }
        );
    }

    #[test]
    fn service_names_follow_the_cluster_naming_rules() {
        assert_eq!(
            service_guess("payments", "web"),
            Some(("web".into(), "payments".into()))
        );
        assert_eq!(
            service_guess("payments.shop", "web"),
            Some(("shop".into(), "payments".into()))
        );
        assert_eq!(
            service_guess("payments.shop.svc", "web"),
            Some(("shop".into(), "payments".into()))
        );
        assert_eq!(
            service_guess("payments.shop.svc.cluster.local.", "web"),
            Some(("shop".into(), "payments".into()))
        );
        assert_eq!(service_guess("www.example.com", "web"), None);
    }
}
