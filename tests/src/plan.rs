//! The lab's layout, computed from a scenario without touching the machine: namespace names,
//! addresses, the lab's own pods (cluster DNS, agents) and Service ClusterIPs.

use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use crate::scenario::{
    ContainerPortSpec, IpFamily, ListenSpec, NODE_PORT_RANGE, PodSpec, Protocol, Scenario, ServicePortSpec,
    ServiceType, TargetPort, TrafficPolicy,
};

/// NodeLocal DNSCache's address on every node (the upstream project's default).
pub const NODE_LOCAL_DNS_IP: Ipv4Addr = Ipv4Addr::new(169, 254, 20, 10);

/// The network outside the cluster (`outside: true`), beyond the underlay router, and its
/// addresses: the router's, the host's, and its DNS server's, which answers [`OUTSIDE_NAME`].
pub const OUTSIDE_CIDR: &str = "198.51.100.0/24";
pub const OUTSIDE_ROUTER_IP: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 1);
pub const OUTSIDE_HOST_IP: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 10);
pub const OUTSIDE_DNS_IP: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 53);
pub const OUTSIDE_NAME: &str = "partner.example";
/// The TCP ports the outside host serves.
pub const OUTSIDE_PORTS: [u16; 2] = [80, 443];

/// ClusterIP of `kube-system/kube-dns`.
pub const DNS_SERVICE_IP: Ipv4Addr = Ipv4Addr::new(10, 96, 0, 10);
/// Address of the underlay router every node reaches the rest of the "datacenter" through.
pub const UNDERLAY_ROUTER_IP: Ipv4Addr = Ipv4Addr::new(172, 18, 0, 1);
/// The link-local gateway every pod routes through (answered by proxy ARP on the node side).
pub const POD_GATEWAY_IP: Ipv4Addr = Ipv4Addr::new(169, 254, 1, 1);
pub const SERVICE_CIDR: &str = "10.96.0.0/16";
/// The IPv4 pod network: every node's /24 lies in it (kube-proxy's `clusterCIDR`).
pub const POD_CIDR: &str = "10.244.0.0/16";
/// The IPv4 ranges the lab takes addresses from (network, prefix length, what for): a
/// load balancer's address must lie outside them.
const LAB_IPV4_RANGES: [(Ipv4Addr, u8, &str); 6] = [
    (Ipv4Addr::new(10, 244, 0, 0), 16, "the pod network 10.244.0.0/16"),
    (
        Ipv4Addr::new(10, 96, 0, 0),
        16,
        "the Service network 10.96.0.0/16",
    ),
    (
        Ipv4Addr::new(172, 18, 0, 0),
        24,
        "the nodes' network 172.18.0.0/24",
    ),
    (
        Ipv4Addr::new(198, 51, 100, 0),
        24,
        "the outside network 198.51.100.0/24",
    ),
    (
        Ipv4Addr::new(169, 254, 0, 0),
        16,
        "the link-local range 169.254.0.0/16 (the pods' gateway, NodeLocal DNS)",
    ),
    (Ipv4Addr::new(127, 0, 0, 0), 8, "the loopback range 127.0.0.0/8"),
];

/// Which of the lab's own IPv4 ranges `ip` lies in, if any.
pub fn lab_range_of(ip: Ipv4Addr) -> Option<&'static str> {
    LAB_IPV4_RANGES.iter().find_map(|&(net, len, what)| {
        let mask = u32::MAX << (32 - len);
        (u32::from(ip) & mask == u32::from(net)).then_some(what)
    })
}

/// ClusterIP of `kube-system/kube-dns` in the IPv6 family.
pub const DNS_SERVICE_IP6: Ipv6Addr = Ipv6Addr::new(0xfd00, 0x10, 0x96, 0, 0, 0, 0, 0xa);
/// The underlay router's IPv6 address.
pub const UNDERLAY_ROUTER_IP6: Ipv6Addr = Ipv6Addr::new(0xfd00, 0x172, 0x18, 0, 0, 0, 0, 1);
/// The link-local IPv6 gateway every pod routes through (an address of every host-side veth).
pub const POD_GATEWAY_IP6: Ipv6Addr = Ipv6Addr::new(0xfe80, 0, 0, 0, 0, 0, 0, 1);
/// The IPv6 Service CIDR: a Service's IPv6 ClusterIP carries the low 16 bits of its IPv4 one.
pub const SERVICE_CIDR6: &str = "fd00:10:96::/112";
/// The IPv6 pod CIDR, one /64 per node.
pub const POD_CIDR6: &str = "fd00:10:244::/56";
pub const CLUSTER_DOMAIN: &str = "cluster.local";
pub const DNS_POD_NAMESPACE: &str = "kube-system";
pub const DNS_POD_NAME: &str = "coredns-0";
pub const AGENT_NAMESPACE: &str = "netdiag";
pub const AGENT_PORT: u16 = 9808;

/// What a pod's process is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PodRole {
    /// The lab's pod app, listening where the scenario says.
    App,
    /// dnsmasq answering as CoreDNS.
    Dns,
    /// `netdiag-agent serve` for its node.
    Agent,
}

#[derive(Debug, Clone)]
pub struct NodePlan {
    pub name: String,
    pub netns: String,
    pub ip: Ipv4Addr,
    /// Third octet of the node's pod CIDR 10.244.N.0/24.
    pub cidr_octet: u8,
    /// Name of the node's uplink port inside the underlay namespace.
    pub underlay_port: String,
    /// The node's IPv6 underlay address (used when the cluster has IPv6).
    pub ip6: Ipv6Addr,
    /// Its `topology.kubernetes.io/zone` label, if it has one.
    pub zone: Option<String>,
}

impl NodePlan {
    pub fn pod_cidr(&self) -> String {
        format!("10.244.{}.0/24", self.cidr_octet)
    }

    /// The node's IPv6 pod CIDR, `fd00:10:244:N::/64`.
    pub fn pod_cidr6(&self) -> String {
        format!("{}/64", pod_ip6(self.cidr_octet, 0))
    }
}

/// A pod's IPv6 address: the node's /64 with the host number of its IPv4 address.
pub fn pod_ip6(cidr_octet: u8, host: u8) -> Ipv6Addr {
    Ipv6Addr::new(
        0xfd00,
        0x10,
        0x244,
        u16::from(cidr_octet),
        0,
        0,
        0,
        u16::from(host),
    )
}

/// A Service's IPv6 ClusterIP, derived from its IPv4 one (the low 16 bits).
pub fn service_ip6(v4: Ipv4Addr) -> Ipv6Addr {
    let o = v4.octets();
    Ipv6Addr::new(0xfd00, 0x10, 0x96, 0, 0, 0, 0, u16::from_be_bytes([o[2], o[3]]))
}

#[derive(Debug, Clone)]
pub struct PodPlan {
    pub spec: PodSpec,
    pub role: PodRole,
    pub node: usize,
    pub netns: String,
    pub ip: Ipv4Addr,
    /// The host side of the pod's veth, inside the node namespace.
    pub host_if: String,
    /// The pod's IPv6 address, when the cluster has IPv6.
    pub ip6: Option<Ipv6Addr>,
    /// The cluster's families, primary first: which of the pod's addresses Kubernetes shows.
    /// (In an IPv6-only cluster the IPv4 address stays as lab plumbing no object mentions.)
    pub families: Vec<IpFamily>,
}

impl PodPlan {
    pub fn key(&self) -> String {
        format!("{}/{}", self.spec.namespace, self.spec.name)
    }

    /// The pod's address in `family`, if the cluster has that family.
    pub fn addr(&self, family: IpFamily) -> Option<IpAddr> {
        match family {
            IpFamily::V4 => self
                .families
                .contains(&IpFamily::V4)
                .then_some(IpAddr::V4(self.ip)),
            IpFamily::V6 => self.ip6.map(IpAddr::V6),
        }
    }

    /// The pod's addresses as `status.podIPs` lists them, primary first.
    pub fn addrs(&self) -> Vec<IpAddr> {
        self.families.iter().filter_map(|f| self.addr(*f)).collect()
    }
}

#[derive(Debug, Clone)]
pub struct ServicePlan {
    pub namespace: String,
    pub name: String,
    pub selector: Option<BTreeMap<String, String>>,
    /// `None` for a headless Service. In a Service without IPv4 it is lab bookkeeping only: the
    /// IPv6 ClusterIP derives from it.
    pub cluster_ip: Option<Ipv4Addr>,
    pub ports: Vec<ServicePortSpec>,
    /// The Service's families, primary first.
    pub families: Vec<IpFamily>,
    pub internal_traffic_policy: TrafficPolicy,
    pub traffic_distribution: Option<String>,
    pub service_type: ServiceType,
    /// `Cluster` unless the scenario says `Local` (NodePort and LoadBalancer Services only).
    pub external_traffic_policy: TrafficPolicy,
    /// A LoadBalancer Service's health check port under `externalTrafficPolicy: Local`: the
    /// scenario's, else the one the stand-in picks (kube-apiserver allocates its own).
    pub health_check_node_port: Option<u16>,
    /// A LoadBalancer Service's address (`status.loadBalancer.ingress[0].ip`).
    pub load_balancer_ip: Option<Ipv4Addr>,
    /// A LoadBalancer Service's `spec.loadBalancerSourceRanges`, as the scenario lists them
    /// (kube-proxy takes each family's own).
    pub load_balancer_source_ranges: Vec<ipnet::IpNet>,
}

impl ServicePlan {
    pub fn key(&self) -> String {
        format!("{}/{}", self.namespace, self.name)
    }

    /// Whether the Service takes traffic from outside its ClusterIP: node ports, a load
    /// balancer's address.
    pub fn is_external(&self) -> bool {
        self.service_type.has_node_ports()
    }

    /// The Service's ClusterIP in `family`, if it has one there.
    pub fn vip(&self, family: IpFamily) -> Option<IpAddr> {
        let v4 = self.cluster_ip?;
        self.families.contains(&family).then(|| match family {
            IpFamily::V4 => IpAddr::V4(v4),
            IpFamily::V6 => IpAddr::V6(service_ip6(v4)),
        })
    }

    /// `spec.clusterIPs`, primary first (empty for a headless Service).
    pub fn vips(&self) -> Vec<IpAddr> {
        self.families.iter().filter_map(|f| self.vip(*f)).collect()
    }
}

#[derive(Debug, Clone)]
pub struct Plan {
    pub prefix: String,
    pub underlay_netns: String,
    pub nodes: Vec<NodePlan>,
    pub pods: Vec<PodPlan>,
    pub services: Vec<ServicePlan>,
    pub dns_down: bool,
    /// NodeLocal DNSCache at [`NODE_LOCAL_DNS_IP`] on every node, in the pods' resolv.conf.
    pub node_local_dns: bool,
    /// The namespace of the network outside the cluster, when the scenario has one.
    pub outside_netns: Option<String>,
    /// Its DNS server is not started (`upstream-dns-down`).
    pub upstream_dns_down: bool,
    /// The cluster's families, primary first.
    pub families: Vec<IpFamily>,
}

#[derive(Debug, thiserror::Error)]
pub enum PlanError {
    #[error("pod {pod} asks for ip {ip}, outside its node {node}'s pod cidr {cidr}")]
    IpOutsideCidr {
        pod: String,
        ip: Ipv4Addr,
        node: String,
        cidr: String,
    },
    #[error("node {node} has more pods than its /24 pod cidr holds")]
    CidrFull { node: String },
    #[error("the service cidr {SERVICE_CIDR} is exhausted")]
    ServiceCidrFull,
    #[error("every node port is taken, none is left for a healthCheckNodePort")]
    NodePortsFull,
}

impl Plan {
    /// Lays out `scenario` under the namespace-name `prefix`. `agents` adds one agent pod per node.
    pub fn new(scenario: &Scenario, prefix: &str, agents: bool) -> Result<Plan, PlanError> {
        let nodes = plan_nodes(scenario, prefix);
        let families = scenario.ip_families.clone();
        let pods = plan_pods(scenario, prefix, agents, &nodes, &families)?;
        let services = plan_services(scenario, &families)?;
        Ok(Plan {
            prefix: prefix.to_string(),
            underlay_netns: format!("{prefix}-u"),
            nodes,
            pods,
            services,
            dns_down: scenario.dns_down(),
            node_local_dns: scenario.node_local_dns,
            outside_netns: scenario.outside.then(|| format!("{prefix}-x")),
            upstream_dns_down: scenario
                .faults
                .iter()
                .any(|f| matches!(f, crate::scenario::Fault::UpstreamDnsDown)),
            families,
        })
    }

    pub fn dns_pod(&self) -> &PodPlan {
        self.pods
            .iter()
            .find(|p| p.role == PodRole::Dns)
            .expect("every plan has a dns pod")
    }

    pub fn has(&self, family: IpFamily) -> bool {
        self.families.contains(&family)
    }

    /// The cluster DNS ClusterIP pods are told to use: the primary family's, as kubelet's
    /// `clusterDNS` lists it first.
    /// The nameserver of the pods' resolv.conf (kubelet `--cluster-dns`): the NodeLocal
    /// DNSCache's address when the cluster runs one, else the kube-dns ClusterIP.
    pub fn dns_nameserver(&self) -> IpAddr {
        if self.node_local_dns {
            return IpAddr::V4(NODE_LOCAL_DNS_IP);
        }
        match self.families[0] {
            IpFamily::V4 => IpAddr::V4(DNS_SERVICE_IP),
            IpFamily::V6 => IpAddr::V6(DNS_SERVICE_IP6),
        }
    }

    pub fn pod(&self, key: &str) -> Option<&PodPlan> {
        self.pods.iter().find(|p| p.key() == key)
    }

    /// Every namespace name the lab creates, the underlay first.
    pub fn all_netns(&self) -> Vec<String> {
        std::iter::once(self.underlay_netns.clone())
            .chain(self.outside_netns.clone())
            .chain(self.nodes.iter().map(|n| n.netns.clone()))
            .chain(self.pods.iter().map(|p| p.netns.clone()))
            .collect()
    }
}

/// The scenario's nodes: namespace, underlay port and addresses by position.
fn plan_nodes(scenario: &Scenario, prefix: &str) -> Vec<NodePlan> {
    scenario
        .nodes
        .iter()
        .enumerate()
        .map(|(i, name)| NodePlan {
            name: name.clone(),
            netns: format!("{prefix}-n{i}"),
            ip: Ipv4Addr::new(172, 18, 0, 2 + i as u8),
            cidr_octet: 1 + i as u8,
            underlay_port: format!("node{i}"),
            ip6: Ipv6Addr::new(0xfd00, 0x172, 0x18, 0, 0, 0, 0, 2 + i as u16),
            zone: scenario.zones.get(name).cloned(),
        })
        .collect()
}

/// The scenario's pods, then the lab's own (the DNS pod, an agent per node with `agents`), each
/// with its namespace and an address in its node's pod CIDR (the one it asks for, else the next
/// free one).
fn plan_pods(
    scenario: &Scenario,
    prefix: &str,
    agents: bool,
    nodes: &[NodePlan],
    families: &[IpFamily],
) -> Result<Vec<PodPlan>, PlanError> {
    let node_index: BTreeMap<&str, usize> = nodes
        .iter()
        .enumerate()
        .map(|(i, n)| (n.name.as_str(), i))
        .collect();
    let mut specs: Vec<(PodSpec, PodRole)> =
        scenario.pods.iter().map(|p| (p.clone(), PodRole::App)).collect();
    specs.push((dns_pod_spec(&nodes[0].name, scenario.dns_down()), PodRole::Dns));
    let has_v6 = families.contains(&IpFamily::V6);
    if agents {
        for node in nodes {
            specs.push((agent_pod_spec(&node.name), PodRole::Agent));
        }
    }
    let mut used: BTreeSet<Ipv4Addr> = specs.iter().filter_map(|(p, _)| p.ip).collect();
    let mut next_host = vec![2u8; nodes.len()];
    let mut pods = Vec::with_capacity(specs.len());
    for (k, (spec, role)) in specs.into_iter().enumerate() {
        let n = node_index[spec.node.as_str()];
        let node = &nodes[n];
        let ip = pod_address(&spec, node, &mut next_host[n], &mut used)?;
        pods.push(PodPlan {
            spec,
            role,
            node: n,
            netns: format!("{prefix}-p{k}"),
            ip,
            host_if: format!("cali{k}"),
            ip6: has_v6.then(|| pod_ip6(node.cidr_octet, ip.octets()[3])),
            families: families.to_vec(),
        });
    }
    Ok(pods)
}

/// A pod's address in its node's pod CIDR: the one it asks for, else the next free one after
/// `next_host` (which it moves on), recorded in `used`.
fn pod_address(
    spec: &PodSpec,
    node: &NodePlan,
    next_host: &mut u8,
    used: &mut BTreeSet<Ipv4Addr>,
) -> Result<Ipv4Addr, PlanError> {
    if let Some(ip) = spec.ip {
        let o = ip.octets();
        if o[0] != 10 || o[1] != 244 || o[2] != node.cidr_octet || o[3] == 0 || o[3] == 255 {
            return Err(PlanError::IpOutsideCidr {
                pod: format!("{}/{}", spec.namespace, spec.name),
                ip,
                node: node.name.clone(),
                cidr: node.pod_cidr(),
            });
        }
        return Ok(ip);
    }
    loop {
        if *next_host == 255 {
            return Err(PlanError::CidrFull {
                node: node.name.clone(),
            });
        }
        let ip = Ipv4Addr::new(10, 244, node.cidr_octet, *next_host);
        *next_host += 1;
        if used.insert(ip) {
            return Ok(ip);
        }
    }
}

/// kube-dns, then the scenario's Services, each with its ClusterIP (the one it asks for, else the
/// next free one in the Service CIDR; none when headless).
fn plan_services(scenario: &Scenario, families: &[IpFamily]) -> Result<Vec<ServicePlan>, PlanError> {
    let mut taken: BTreeSet<Ipv4Addr> = scenario.services.iter().filter_map(|s| s.cluster_ip).collect();
    taken.insert(DNS_SERVICE_IP);
    let mut next_ip = u32::from(Ipv4Addr::new(10, 96, 1, 0));
    let mut services = vec![dns_service(families)];
    let mut node_ports_taken = named_node_ports(scenario);
    for svc in &scenario.services {
        let cluster_ip = if svc.headless {
            None
        } else if let Some(ip) = svc.cluster_ip {
            Some(ip)
        } else {
            loop {
                next_ip += 1;
                let ip = Ipv4Addr::from(next_ip);
                if ip.octets()[1] != 96 {
                    return Err(PlanError::ServiceCidrFull);
                }
                if ip.octets()[3] != 0 && ip.octets()[3] != 255 && taken.insert(ip) {
                    break Some(ip);
                }
            }
        };
        let external_traffic_policy = svc.effective_external_traffic_policy();
        let health_checked =
            svc.service_type == ServiceType::LoadBalancer && external_traffic_policy == TrafficPolicy::Local;
        services.push(ServicePlan {
            namespace: svc.namespace.clone(),
            name: svc.name.clone(),
            selector: svc.selector.clone(),
            cluster_ip,
            ports: svc.ports.clone(),
            families: svc.ip_families.clone().unwrap_or_else(|| families.to_vec()),
            internal_traffic_policy: svc.internal_traffic_policy,
            traffic_distribution: svc.traffic_distribution.clone(),
            service_type: svc.service_type,
            external_traffic_policy,
            health_check_node_port: match svc.health_check_node_port {
                Some(port) => Some(port),
                None if health_checked => Some(free_node_port(&mut node_ports_taken)?),
                None => None,
            },
            load_balancer_ip: match svc.load_balancer_ip {
                Some(IpAddr::V4(ip)) => Some(ip),
                _ => None,
            },
            load_balancer_source_ranges: svc.load_balancer_source_ranges.clone(),
        });
    }
    Ok(services)
}

/// Every node port the scenario names: its Services' nodePorts and healthCheckNodePorts.
fn named_node_ports(scenario: &Scenario) -> BTreeSet<u16> {
    let node_ports = scenario
        .services
        .iter()
        .flat_map(|s| s.ports.iter().filter_map(|p| p.node_port));
    let health_checks = scenario.services.iter().filter_map(|s| s.health_check_node_port);
    node_ports.chain(health_checks).collect()
}

/// The highest node port not in `taken`, which it joins: the stand-in's allocation, from the top
/// of the range as kube-apiserver prefers for the ports it picks itself (leaving the bottom to
/// ports users ask for).
fn free_node_port(taken: &mut BTreeSet<u16>) -> Result<u16, PlanError> {
    let port = NODE_PORT_RANGE
        .rev()
        .find(|p| !taken.contains(p))
        .ok_or(PlanError::NodePortsFull)?;
    taken.insert(port);
    Ok(port)
}

impl Scenario {
    pub fn dns_down(&self) -> bool {
        self.faults
            .iter()
            .any(|f| matches!(f, crate::scenario::Fault::DnsDown))
    }
}

fn dns_pod_spec(node: &str, down: bool) -> PodSpec {
    let port = |name: &str, protocol| ContainerPortSpec {
        name: Some(name.to_string()),
        container_port: 53,
        protocol,
    };
    PodSpec {
        namespace: DNS_POD_NAMESPACE.into(),
        name: DNS_POD_NAME.into(),
        node: node.into(),
        labels: BTreeMap::from([("k8s-app".into(), "kube-dns".into())]),
        ready: !down,
        ip: None,
        ports: vec![port("dns", Protocol::Udp), port("dns-tcp", Protocol::Tcp)],
        sidecar_ports: Vec::new(),
        terminating: false,
        listen: if down {
            Vec::new()
        } else {
            [Protocol::Udp, Protocol::Tcp]
                .map(|protocol| ListenSpec {
                    port: 53,
                    protocol,
                    address: None,
                })
                .to_vec()
        },
    }
}

pub fn agent_pod_name(node: &str) -> String {
    format!("netdiag-agent-{node}")
}

fn agent_pod_spec(node: &str) -> PodSpec {
    PodSpec {
        namespace: AGENT_NAMESPACE.into(),
        name: agent_pod_name(node),
        node: node.into(),
        labels: BTreeMap::from([("app.kubernetes.io/name".into(), "netdiag-agent".into())]),
        ready: true,
        ip: None,
        ports: vec![ContainerPortSpec {
            name: Some("control".into()),
            container_port: AGENT_PORT,
            protocol: Protocol::Tcp,
        }],
        sidecar_ports: Vec::new(),
        terminating: false,
        listen: vec![ListenSpec {
            port: AGENT_PORT,
            protocol: Protocol::Tcp,
            address: Some(IpAddr::V4(Ipv4Addr::LOCALHOST)),
        }],
    }
}

fn dns_service(families: &[IpFamily]) -> ServicePlan {
    let port = |name: &str, protocol| ServicePortSpec {
        name: Some(name.to_string()),
        port: 53,
        target_port: Some(TargetPort::Number(53)),
        protocol,
        node_port: None,
    };
    ServicePlan {
        namespace: "kube-system".into(),
        name: "kube-dns".into(),
        selector: Some(BTreeMap::from([("k8s-app".into(), "kube-dns".into())])),
        cluster_ip: Some(DNS_SERVICE_IP),
        ports: vec![port("dns", Protocol::Udp), port("dns-tcp", Protocol::Tcp)],
        families: families.to_vec(),
        internal_traffic_policy: TrafficPolicy::Cluster,
        traffic_distribution: None,
        service_type: ServiceType::ClusterIp,
        external_traffic_policy: TrafficPolicy::Cluster,
        health_check_node_port: None,
        load_balancer_ip: None,
        load_balancer_source_ranges: Vec::new(),
    }
}

/// The kubelet-style resolv.conf of a pod in `namespace` of an IPv4 cluster.
pub fn resolv_conf(namespace: &str) -> String {
    resolv_conf_via(namespace, IpAddr::V4(DNS_SERVICE_IP))
}

/// The kubelet-style resolv.conf of a pod in `namespace`, with `nameserver` as cluster DNS.
pub fn resolv_conf_via(namespace: &str, nameserver: IpAddr) -> String {
    format!(
        "nameserver {nameserver}\nsearch {namespace}.svc.{CLUSTER_DOMAIN} svc.{CLUSTER_DOMAIN} \
         {CLUSTER_DOMAIN}\noptions ndots:5\n"
    )
}

/// A random namespace-name prefix like `nl3fa9c1`, short enough that every name stays within 15 bytes.
pub fn random_prefix() -> std::io::Result<String> {
    use std::io::Read;
    let mut bytes = [0u8; 3];
    std::fs::File::open("/dev/urandom")?.read_exact(&mut bytes)?;
    Ok(format!("nl{:02x}{:02x}{:02x}", bytes[0], bytes[1], bytes[2]))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scenario(text: &str) -> Scenario {
        Scenario::parse(text).unwrap()
    }

    #[test]
    fn pods_get_addresses_from_their_nodes_cidr_skipping_requested_ones() {
        let s = scenario(
            "name: t\nnodes: [a, b]\npods:\n- {namespace: x, name: p1, node: b}\n\
             - {namespace: x, name: p2, node: b, ip: 10.244.2.3}\n- {namespace: x, name: p3, node: b}\n",
        );
        let plan = Plan::new(&s, "nl000001", false).unwrap();
        let ip = |k: &str| plan.pod(k).unwrap().ip;
        assert_eq!(ip("x/p1"), Ipv4Addr::new(10, 244, 2, 2));
        assert_eq!(ip("x/p2"), Ipv4Addr::new(10, 244, 2, 3));
        assert_eq!(ip("x/p3"), Ipv4Addr::new(10, 244, 2, 4));
        assert_eq!(plan.nodes[1].pod_cidr(), "10.244.2.0/24");
        assert_eq!(plan.nodes[1].ip, Ipv4Addr::new(172, 18, 0, 3));
    }

    #[test]
    fn requested_ip_outside_the_node_cidr_is_an_error() {
        let s =
            scenario("name: t\nnodes: [a, b]\npods:\n- {namespace: x, name: p, node: b, ip: 10.244.1.9}\n");
        let e = Plan::new(&s, "nl000001", false).unwrap_err().to_string();
        assert_eq!(
            e,
            "pod x/p asks for ip 10.244.1.9, outside its node b's pod cidr 10.244.2.0/24"
        );
    }

    #[test]
    fn lab_adds_dns_pod_and_one_agent_per_node() {
        let s = scenario("name: t\nnodes: [a, b]\n");
        let plan = Plan::new(&s, "nl000001", true).unwrap();
        let keys: Vec<String> = plan.pods.iter().map(|p| p.key()).collect();
        assert_eq!(
            keys,
            [
                "kube-system/coredns-0",
                "netdiag/netdiag-agent-a",
                "netdiag/netdiag-agent-b"
            ]
        );
        let agent = plan.pod("netdiag/netdiag-agent-b").unwrap();
        assert_eq!(agent.node, 1);
        assert_eq!(agent.spec.ports[0].name.as_deref(), Some("control"));
        assert!(
            Plan::new(&s, "nl000001", false)
                .unwrap()
                .pod("netdiag/netdiag-agent-a")
                .is_none()
        );
    }

    #[test]
    fn dns_down_leaves_the_dns_pod_not_ready_and_silent() {
        let s = scenario("name: t\nnodes: [a]\nfaults: [{kind: dns-down}]\n");
        let plan = Plan::new(&s, "nl000001", false).unwrap();
        assert!(!plan.dns_pod().spec.ready);
        assert!(plan.dns_pod().spec.listen.is_empty());
    }

    #[test]
    fn services_get_distinct_cluster_ips_and_headless_ones_none() {
        let s = scenario(
            "name: t\nnodes: [a]\nservices:\n- {namespace: x, name: s1, ports: [{port: 80}]}\n\
             - {namespace: x, name: s2, clusterIP: 10.96.1.1, ports: [{port: 80}]}\n\
             - {namespace: x, name: h, headless: true, ports: [{port: 80}]}\n",
        );
        let plan = Plan::new(&s, "nl000001", false).unwrap();
        let ips: Vec<Option<Ipv4Addr>> = plan.services.iter().map(|s| s.cluster_ip).collect();
        assert_eq!(
            ips,
            [
                Some(DNS_SERVICE_IP),
                Some(Ipv4Addr::new(10, 96, 1, 2)),
                Some(Ipv4Addr::new(10, 96, 1, 1)),
                None
            ]
        );
    }

    #[test]
    fn a_local_load_balancer_without_a_health_check_port_gets_the_highest_free_one() {
        let lb = |name: &str, hc: &str| {
            format!(
                "- {{namespace: x, name: {name}, type: LoadBalancer, loadBalancerIP: 203.0.113.10, \
                 externalTrafficPolicy: Local, {hc}ports: [{{port: {}, nodePort: 32767}}]}}\n",
                if name == "a" { 80 } else { 81 }
            )
        };
        let s = scenario(&format!(
            "name: t\nnodes: [a]\nservices:\n{}{}\
             - {{namespace: x, name: c, type: LoadBalancer, loadBalancerIP: 203.0.113.11, ports: [{{port: 80, nodePort: 30080}}]}}\n\
             - {{namespace: x, name: d, type: NodePort, externalTrafficPolicy: Local, ports: [{{port: 80, nodePort: 30081}}]}}\n",
            lb("a", ""),
            lb("b", "healthCheckNodePort: 32765, ").replace("32767", "32766")
        ));
        let plan = Plan::new(&s, "nl000001", false).unwrap();
        let hc: Vec<Option<u16>> = plan.services.iter().map(|s| s.health_check_node_port).collect();
        // kube-dns, a (picked: 32767 and 32766 are nodePorts, 32765 b's), b (its own), c and d none.
        assert_eq!(hc, [None, Some(32764), Some(32765), None, None]);
        assert_eq!(lab_range_of(Ipv4Addr::new(203, 0, 113, 10)), None);
        assert_eq!(
            lab_range_of(Ipv4Addr::new(10, 244, 3, 4)),
            Some("the pod network 10.244.0.0/16")
        );
    }

    #[test]
    fn every_interface_and_namespace_name_fits_the_kernel_limit() {
        let pods: String = (0..300)
            .map(|i| format!("- {{namespace: x, name: p{i}, node: n{}}}\n", i % 3))
            .collect();
        let s = scenario(&format!("name: t\nnodes: [n0, n1, n2]\npods:\n{pods}"));
        let plan = Plan::new(&s, &random_prefix().unwrap(), true).unwrap();
        for name in plan
            .all_netns()
            .iter()
            .chain(plan.pods.iter().map(|p| &p.host_if))
        {
            assert!(name.len() <= 15, "{name} is longer than 15 bytes");
        }
    }

    #[test]
    fn ipv6_addresses_follow_the_node_cidr_and_the_ipv4_allocation() {
        let s = scenario(
            "name: t\nnodes: [a, b]\nipFamilies: [IPv4, IPv6]\npods:\n- {namespace: x, name: p, node: b}\n\
             services:\n- {namespace: x, name: s, ports: [{port: 80}]}\n\
             - {namespace: x, name: v4, ipFamilies: [IPv4], ports: [{port: 80}]}\n",
        );
        let plan = Plan::new(&s, "nl000001", false).unwrap();
        let p = plan.pod("x/p").unwrap();
        let addrs: Vec<String> = p.addrs().iter().map(|a| a.to_string()).collect();
        assert_eq!(addrs, ["10.244.2.2", "fd00:10:244:2::2"]);
        assert_eq!(plan.nodes[1].pod_cidr6(), "fd00:10:244:2::/64");
        let vips =
            |i: usize| -> Vec<String> { plan.services[i].vips().iter().map(|a| a.to_string()).collect() };
        assert_eq!(vips(0), ["10.96.0.10", "fd00:10:96::a"]);
        assert_eq!(vips(1), ["10.96.1.1", "fd00:10:96::101"]);
        assert_eq!(vips(2), ["10.96.1.2"]);
        assert_eq!(plan.dns_nameserver(), IpAddr::V4(DNS_SERVICE_IP));
    }

    #[test]
    fn ipv6_only_cluster_shows_no_ipv4_and_uses_the_ipv6_dns() {
        let s =
            scenario("name: t\nnodes: [a]\nipFamilies: [IPv6]\npods:\n- {namespace: x, name: p, node: a}\n");
        let plan = Plan::new(&s, "nl000001", false).unwrap();
        assert_eq!(plan.pod("x/p").unwrap().addrs(), [IpAddr::V6(pod_ip6(1, 2))]);
        assert_eq!(plan.services[0].vips(), [IpAddr::V6(DNS_SERVICE_IP6)]);
        assert!(resolv_conf_via("x", plan.dns_nameserver()).starts_with("nameserver fd00:10:96::a\n"));
    }

    #[test]
    fn resolv_conf_searches_the_pod_namespace_first() {
        assert_eq!(
            resolv_conf("shop"),
            "nameserver 10.96.0.10\nsearch shop.svc.cluster.local svc.cluster.local cluster.local\n\
             options ndots:5\n"
        );
    }
}
