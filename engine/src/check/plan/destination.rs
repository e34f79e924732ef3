//! What the target designates in cluster terms (a Service port, a pod, an address) and the
//! endpoints behind it, from the snapshot.

use k8s_openapi::api::core::v1::Pod;

use super::*;
use crate::check::snapshot::NodeAddresses;

/// What the target is, in cluster terms, before probing.
#[derive(Debug, Clone)]
pub(super) enum DestKey {
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
pub(super) fn destination_key(snap: &Snapshot, request: &CheckRequest) -> (Option<String>, Option<DestKey>) {
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

/// The Service an ExternalName Service's `externalName` designates when it names one of the
/// cluster's own (`payments.shop.svc.cluster.local`, or without the domain): an alias CoreDNS
/// answers with a CNAME to that Service's name. `None` for any other host (`db.example.com`).
pub fn in_cluster_alias(external_name: &str) -> Option<NamespacedName> {
    let host = external_name.trim_end_matches('.');
    let labels: Vec<&str> = host.split('.').collect();
    let cluster_suffix: Vec<&str> = CLUSTER_DOMAIN.split('.').collect();
    match labels.as_slice() {
        [name, ns, "svc"] => Some(NamespacedName::new(*ns, *name)),
        [name, ns, "svc", rest @ ..] if rest == cluster_suffix.as_slice() => {
            Some(NamespacedName::new(*ns, *name))
        }
        _ => None,
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

pub(super) fn find_service<'a>(services: &'a [Service], key: &NamespacedName) -> Option<&'a Service> {
    services.iter().find(|s| key.is(*s))
}

pub(super) fn service_cluster_ip(svc: &Service) -> Option<IpAddr> {
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

pub(super) fn plan_destination(snap: &Snapshot, key: DestKey) -> DestinationPlan {
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
    if let Some((key, service_port, entry)) =
        service_entry(snap.pods(), &snap.node_addresses, snap.services(), ip, port)
    {
        let requested = PortRef::Number(service_port.port);
        return plan_service_entered(snap, key, requested, Some(service_port.protocol), Some(entry));
    }
    external(Fact::Known(vec![EndpointTarget {
        ip,
        port: Some(port),
        pod: None,
        slice: None,
        conditions: Conditions::READY,
        topology: Topology::default(),
    }]))
}

/// The node whose own address `ip` is: by the Nodes' addresses when they were read, else by a
/// pod's `status.hostIP` or a host-network pod's address.
fn node_with_address(pods: &[Pod], nodes: &NodeAddresses, ip: IpAddr) -> Option<String> {
    if let Some((node, _)) = nodes.iter().find(|(_, addresses)| addresses.contains(&ip)) {
        return Some(node.clone());
    }
    pods.iter()
        .find(|p| {
            let facts = read_pod(p);
            facts.host_ips.contains(&ip) || (facts.host_network && pod_ips(p).contains(&ip))
        })
        .and_then(|p| p.spec.as_ref()?.node_name.clone())
}

/// `status.loadBalancer.ingress` addresses of a LoadBalancer Service that kube-proxy captures.
fn load_balancer_ips(svc: &Service) -> Vec<IpAddr> {
    let is_lb = svc.spec.as_ref().and_then(|s| s.type_.as_deref()) == Some("LoadBalancer");
    let ingress = svc
        .status
        .as_ref()
        .and_then(|s| s.load_balancer.as_ref()?.ingress.as_ref());
    ingress
        .into_iter()
        .flatten()
        .filter(|_| is_lb)
        // ipMode Proxy: the load balancer proxies, and kube-proxy captures nothing in-cluster.
        .filter(|i| i.ip_mode.as_deref() != Some("Proxy"))
        .filter_map(|i| i.ip.as_deref()?.parse().ok())
        .collect()
}

/// The Service an address and port enter other than by its ClusterIP: a node's address with one
/// of its node ports, or one of its LoadBalancer addresses with one of its ports (the TCP port
/// first when a number is served on both protocols).
pub(crate) fn service_entry(
    pods: &[Pod],
    nodes: &NodeAddresses,
    services: &[Service],
    ip: IpAddr,
    port: u16,
) -> Option<(NamespacedName, ServicePortFacts, ServiceEntry)> {
    let node = node_with_address(pods, nodes, ip);
    let tcp_first = |mut ports: Vec<ServicePortFacts>| {
        ports.sort_by_key(|p| p.protocol != Protocol::Tcp);
        ports
    };
    services.iter().find_map(|svc| {
        let ports = tcp_first(service_ports(svc));
        let by_node_port = node.as_ref().and_then(|node| {
            let p = ports.iter().find(|p| p.node_port == Some(port))?;
            let entry = ServiceEntry::NodePort {
                node: node.clone(),
                address: ip,
                node_port: port,
            };
            Some((p.clone(), entry))
        });
        let by_load_balancer = || {
            let p = ports.iter().find(|p| p.port == port)?;
            load_balancer_ips(svc)
                .contains(&ip)
                .then(|| (p.clone(), ServiceEntry::LoadBalancer { address: ip, port }))
        };
        let (p, entry) = by_node_port.or_else(by_load_balancer)?;
        Some((NamespacedName::of(svc), p, entry))
    })
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
                        topology: Topology::default(),
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
                node_port: p
                    .node_port
                    .and_then(|n| u16::try_from(n).ok())
                    .filter(|n| *n != 0),
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
        alias_of: None,
        internal_traffic_policy: TrafficPolicy::from_api(spec.internal_traffic_policy.as_deref()),
        traffic_distribution: spec.traffic_distribution.clone(),
        requested: port,
        requested_protocol: protocol,
        selector,
        selected_pods,
        entry: None,
        external_traffic_policy: TrafficPolicy::from_api(spec.external_traffic_policy.as_deref()),
        health_check_node_port: spec
            .health_check_node_port
            .and_then(|n| u16::try_from(n).ok())
            .filter(|n| *n != 0),
        load_balancer_source_ranges: spec
            .load_balancer_source_ranges
            .iter()
            .flatten()
            .map(|r| r.trim().to_string())
            .filter(|r| !r.is_empty())
            .collect(),
    }
}

fn plan_service(
    snap: &Snapshot,
    key: NamespacedName,
    port: PortRef,
    protocol: Option<Protocol>,
) -> DestinationPlan {
    plan_service_entered(snap, key, port, protocol, None)
}

/// A Service port, connected to by its ClusterIP, or by `entry` when the target named one.
fn plan_service_entered(
    snap: &Snapshot,
    key: NamespacedName,
    port: PortRef,
    protocol: Option<Protocol>,
    entry: Option<ServiceEntry>,
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
    let mut facts = service_spec(snap, svc, &key, port.clone(), protocol);
    facts.entry = entry.clone();
    if let Some(alias) = followed_alias(snap, &facts) {
        // The client's connection goes where the CNAME points: the aliased Service, same port.
        let mut plan = plan_service(snap, alias, port, protocol);
        if let ServiceFacts::Found(aliased) = &mut plan.service
            && aliased.alias_of.is_none()
        {
            aliased.alias_of = Some(ExternalNameAlias {
                service: key,
                host: facts.external_name.clone().unwrap_or_default(),
            });
        }
        return plan;
    }
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
    if let Some(entry) = &entry {
        // The address the client named stands where the ClusterIP would: translated by
        // kube-proxy to the same endpoints.
        plan.cluster_ip = Some(entry.address());
    } else if let (Some(p), Some(ip)) = (&requested, cluster_ip)
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
    if let (Some(entry), Fact::Known(list)) = (&entry, &mut plan.endpoints) {
        // kube-proxy translates an address to endpoints of its own family only.
        let family = entry.address().0.is_ipv4();
        list.retain(|e| e.ip.is_ipv4() == family);
    }
    plan.expected_dns = match (cluster_ip, &plan.endpoints) {
        // One address, one family: the check is not split by family.
        _ if entry.is_some() => plan.cluster_ip.iter().map(|(ip, _)| *ip).collect(),
        (Some(_), _) => cluster_ips,
        (None, Fact::Known(list)) if facts.headless => {
            list.iter().filter(|e| e.conditions.ready).map(|e| e.ip).collect()
        }
        _ => vec![],
    };
    plan.service = ServiceFacts::Found(Box::new(facts));
    plan
}

/// The Service an ExternalName Service aliases, when it is one of the cluster's that the
/// snapshot holds (never itself, nor another alias: one CNAME is followed).
fn followed_alias(snap: &Snapshot, facts: &ServiceSpecFacts) -> Option<NamespacedName> {
    let alias = in_cluster_alias(facts.external_name.as_deref()?)?;
    let target = find_service(snap.services(), &alias)?;
    let is_alias = target.spec.as_ref().and_then(|s| s.type_.as_deref()) == Some("ExternalName");
    (alias != facts.key() && !is_alias).then_some(alias)
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

pub(super) fn names_in_namespace(services: &[Service], namespace: &str) -> Vec<String> {
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
            topology: e.topology,
        })
        .collect()
}
