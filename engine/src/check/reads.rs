//! Which API reads a check needs: the objects its flow depends on, never a whole kind of the
//! cluster. [`needed`] decides, purely, from the request and what earlier rounds returned;
//! [`super::snapshot::Snapshot::read`] runs each round's reads at once until nothing more is
//! needed (the source, the target and its slices first; then the pods, namespaces and policies
//! they name).
//!
//! What a check reads, and why:
//! - the source pod by name (and, only when it is missing, the pods of that name in other
//!   namespaces, for "did you mean");
//! - the target Service by name and its EndpointSlices by the `kubernetes.io/service-name`
//!   label; its pods by the Service's selector, and the pods its slices name that the selector
//!   did not return, by name; the holder of an endpoint address no slice ties to a pod by
//!   `status.podIP` (and, only when the Service is missing, the Services of its namespace and
//!   those of its name elsewhere);
//! - for a DNS name, the cluster DNS Service, its slices and its pods the same way;
//! - for an address, the Service whose `spec.clusterIP` it is, else the pod whose `status.podIP`
//!   it is (the API selects on the primary address only), then that Service's reads; for an
//!   address neither holds, the NodePort and LoadBalancer Services of every namespace (by
//!   `spec.type`, read in the same round), for the one it enters by a LoadBalancer address or
//!   by a node port, and then, only when the port is one's node port, the Nodes, for whether
//!   the address is a node's (hints: their failure leaves the address outside the cluster);
//! - the namespaces of the pods whose policies are evaluated, by name, and their NetworkPolicies;
//!   the cluster-scoped admin policies;
//! - when a policy or admin policy was found, the DaemonSets of every namespace, to name what
//!   enforces NetworkPolicy ([`crate::cluster::enforcers`]); a hint: its failure loses only that;
//! - when an endpoint carries zone hints, the source pod's Node by name, for the zone kube-proxy
//!   there routes by; its failure leaves that zone unknown, said where it matters.

use std::collections::BTreeSet;
use std::net::IpAddr;

use k8s_openapi::api::core::v1::{Pod, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::core::Selector;

use super::plan::{CheckRequest, in_cluster_alias, service_entry, service_guess};
use super::target::Target;
use crate::cluster::pods::pod_ips;
use crate::cluster::{Access, NamespacedName};

/// The label that ties an EndpointSlice to its Service.
pub const SERVICE_NAME_LABEL: &str = "kubernetes.io/service-name";

/// One read of the API server. Each names its verb, resource and namespace, so a read that
/// fails names exactly what was asked ([`Read::action`]).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Read {
    /// `get` one pod.
    Pod(NamespacedName),
    /// `list` the pods of a namespace that a label selector (`app=payments`) selects.
    PodsSelected { namespace: String, selector: String },
    /// `list` the pods of every namespace with this name (`fieldSelector=metadata.name`).
    PodsNamed(String),
    /// `list` the pods of every namespace whose primary address is this (`status.podIP`).
    PodsWithIp(IpAddr),
    /// `get` one Service.
    Service(NamespacedName),
    /// `list` the Services of a namespace.
    ServicesIn(String),
    /// `list` the Services of every namespace with this name (`fieldSelector=metadata.name`).
    ServicesNamed(String),
    /// `list` the Services of every namespace whose primary ClusterIP is this (`spec.clusterIP`).
    ServicesWithClusterIp(IpAddr),
    /// `list` the Services of every namespace of one type (`spec.type`): an address that is no
    /// ClusterIP and no pod's may be a NodePort's node's or a LoadBalancer's.
    ServicesOfType(String),
    /// `list` the Nodes: whether an address is a node's (no field selects a node by address).
    Nodes,
    /// `list` the EndpointSlices of a Service (by the [`SERVICE_NAME_LABEL`] in its namespace).
    SlicesOf(NamespacedName),
    /// `get` one Namespace.
    Namespace(String),
    /// `list` the NetworkPolicies of a namespace.
    PoliciesIn(String),
    /// `list` the cluster-scoped admin policies (each kind whose CRD is installed).
    Admin,
    /// `list` the DaemonSets of every namespace: what enforces NetworkPolicy.
    DaemonSets,
    /// `get` one Node: the source's, for its zone.
    Node(String),
}

impl Read {
    /// `get` or `list`.
    pub fn verb(&self) -> &'static str {
        match self {
            Read::Pod(_) | Read::Service(_) | Read::Namespace(_) | Read::Node(_) => "get",
            _ => "list",
        }
    }

    /// The resource, as RBAC names it.
    pub fn resource(&self) -> &'static str {
        match self {
            Read::Pod(_) | Read::PodsSelected { .. } | Read::PodsNamed(_) | Read::PodsWithIp(_) => "pods",
            Read::Service(_)
            | Read::ServicesIn(_)
            | Read::ServicesNamed(_)
            | Read::ServicesWithClusterIp(_)
            | Read::ServicesOfType(_) => "services",
            Read::SlicesOf(_) => "endpointslices",
            Read::Namespace(_) => "namespaces",
            Read::PoliciesIn(_) => "networkpolicies",
            Read::Admin => "admin network policies",
            Read::DaemonSets => "daemonsets",
            Read::Node(_) | Read::Nodes => "nodes",
        }
    }

    /// The namespace the read is in; `None` for every namespace or a cluster-scoped resource.
    pub fn namespace(&self) -> Option<&str> {
        match self {
            Read::Pod(key) | Read::Service(key) | Read::SlicesOf(key) => Some(&key.namespace),
            Read::PodsSelected { namespace, .. }
            | Read::ServicesIn(namespace)
            | Read::PoliciesIn(namespace) => Some(namespace),
            _ => None,
        }
    }

    /// The read in words, as a failure names it (`get pods/checkout in namespace shop`).
    pub fn action(&self) -> String {
        match self {
            Read::Pod(key) => format!("get pods/{} in namespace {}", key.name, key.namespace),
            Read::PodsSelected { namespace, selector } => {
                format!("list pods in namespace {namespace} with selector {selector}")
            }
            Read::PodsNamed(name) => format!("list pods named {name} in all namespaces"),
            Read::PodsWithIp(ip) => format!("list pods with status.podIP={ip} in all namespaces"),
            Read::Service(key) => format!("get services/{} in namespace {}", key.name, key.namespace),
            Read::ServicesIn(namespace) => format!("list services in namespace {namespace}"),
            Read::ServicesNamed(name) => format!("list services named {name} in all namespaces"),
            Read::ServicesWithClusterIp(ip) => {
                format!("list services with spec.clusterIP={ip} in all namespaces")
            }
            Read::ServicesOfType(service_type) => {
                format!("list services with spec.type={service_type} in all namespaces")
            }
            Read::Nodes => "list nodes".into(),
            Read::SlicesOf(key) => format!(
                "list endpointslices in namespace {} with selector {SERVICE_NAME_LABEL}={}",
                key.namespace, key.name
            ),
            Read::Namespace(name) => format!("get namespaces/{name}"),
            Read::PoliciesIn(namespace) => format!("list networkpolicies in namespace {namespace}"),
            Read::Admin => "list admin network policies".into(),
            Read::DaemonSets => "list daemonsets in all namespaces".into(),
            Read::Node(name) => format!("get nodes/{name}"),
        }
    }

    /// The permission the read needs; `None` for the admin policies (one read of several kinds).
    pub fn access(&self) -> Option<Access> {
        let resource = match self {
            Read::SlicesOf(_) => "endpointslices.discovery.k8s.io",
            Read::PoliciesIn(_) => "networkpolicies.networking.k8s.io",
            Read::DaemonSets => "daemonsets.apps",
            Read::Admin => return None,
            other => other.resource(),
        };
        let name = match self {
            Read::Pod(key) | Read::Service(key) => Some(key.name.clone()),
            Read::Namespace(name) | Read::Node(name) => Some(name.clone()),
            _ => None,
        };
        Some(Access {
            verb: self.verb(),
            resource,
            name,
            // kube-apiserver authorizes a get of a Namespace in that namespace: a RoleBinding
            // there may grant it.
            namespace: match self {
                Read::Namespace(name) => Some(name.clone()),
                other => other.namespace().map(str::to_string),
            },
            cluster_scoped: matches!(self, Read::Namespace(_) | Read::Node(_) | Read::Nodes),
        })
    }

    /// A read that only words a failure better (which names exist elsewhere): when it fails,
    /// the hint is left out and no fact becomes unknown.
    pub fn is_hint(&self) -> bool {
        matches!(
            self,
            Read::PodsNamed(_)
                | Read::ServicesIn(_)
                | Read::ServicesNamed(_)
                | Read::ServicesOfType(_)
                | Read::Nodes
                | Read::DaemonSets
        )
    }
}

/// Whether `read` is of the cluster DNS's objects only (`kube-system` or in it, which neither
/// the source nor the target is in): its failure leaves the DNS facts unknown, not its kind. Never
/// for an address target, whose namespace is known only once the address is found. Pure.
pub fn is_cluster_dns_only(request: &CheckRequest, read: &Read) -> bool {
    let dns = NamespacedName::kube_dns().namespace;
    let target = match &request.target {
        Target::Ip { .. } => return false,
        Target::Service { namespace, .. } | Target::Pod { namespace, .. } => Some(
            namespace
                .clone()
                .unwrap_or_else(|| request.target_namespace.clone()),
        ),
        Target::Host { host, .. } => service_guess(host, &request.from.namespace).map(|g| g.namespace),
    };
    // A Namespace is read for its labels, which policy in and toward it selects on.
    let about = match read {
        Read::Namespace(name) => Some(name.as_str()),
        other => other.namespace(),
    };
    about == Some(dns.as_str())
        && request.from.namespace != dns
        && request.target_namespace != dns
        && target.is_none_or(|ns| ns != dns)
}

/// Where the agent pods are, for a front end whose transport finds its peers in the snapshot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AgentPlace {
    pub namespace: String,
    /// A label selector (`app.kubernetes.io/name=netdiag-agent`).
    pub selector: String,
}

/// What the rounds so far have returned, and which reads they made.
#[derive(Debug, Clone, Copy)]
pub struct Seen<'a> {
    pub pods: &'a [Pod],
    pub services: &'a [Service],
    pub slices: &'a [EndpointSlice],
    pub node_addresses: &'a super::snapshot::NodeAddresses,
    /// Whether a NetworkPolicy or an admin policy was found: then what enforces them is read.
    pub policies: bool,
    pub done: &'a BTreeSet<Read>,
}

impl Seen<'_> {
    fn has_pod(&self, key: &NamespacedName) -> bool {
        self.pods.iter().any(|p| key.is(p))
    }

    fn service(&self, key: &NamespacedName) -> Option<&Service> {
        self.services.iter().find(|s| key.is(*s))
    }

    /// Looked up by ClusterIP and by pod address, and neither a ClusterIP nor a pod network's
    /// address: a node's, a LoadBalancer's, or one outside the cluster.
    fn unclaimed(&self, ip: IpAddr) -> bool {
        self.done.contains(&Read::ServicesWithClusterIp(ip))
            && self.done.contains(&Read::PodsWithIp(ip))
            && !self.services.iter().any(|s| cluster_ips(s).contains(&ip))
            && !self
                .pods
                .iter()
                .any(|p| in_pod_network(p) && pod_ips(p).contains(&ip))
    }

    /// Read and not there.
    fn absent_service(&self, key: &NamespacedName) -> bool {
        self.done.contains(&Read::Service(key.clone())) && self.service(key).is_none()
    }
}

/// Every read the check of `request` needs, given what has been `seen` (the reads already done
/// included: the caller runs those not yet done). Pure.
pub fn needed(request: &CheckRequest, agents: Option<&AgentPlace>, seen: &Seen) -> BTreeSet<Read> {
    let mut wants = Wants::default();
    let from = &request.from;
    wants.reads.insert(Read::Pod(from.clone()));
    wants.evaluated.insert(from.namespace.clone());
    if seen.done.contains(&Read::Pod(from.clone())) && !seen.has_pod(from) {
        wants.reads.insert(Read::PodsNamed(from.name.clone()));
    }
    if let Some(agents) = agents {
        wants.reads.insert(Read::PodsSelected {
            namespace: agents.namespace.clone(),
            selector: agents.selector.clone(),
        });
    }
    let ns = |given: &Option<String>| given.clone().unwrap_or_else(|| request.target_namespace.clone());
    match &request.target {
        Target::Service { name, namespace, .. } => {
            wants.cluster_dns(seen);
            wants.target_service(&NamespacedName::new(ns(namespace), name.clone()), seen);
        }
        Target::Host { host, .. } => {
            wants.cluster_dns(seen);
            if let Some(guess) = service_guess(host, &from.namespace) {
                wants.target_service(&guess, seen);
            }
        }
        Target::Pod { name, namespace, .. } => {
            let key = NamespacedName::new(ns(namespace), name.clone());
            wants.evaluated.insert(key.namespace.clone());
            wants.reads.insert(Read::Pod(key));
        }
        Target::Ip { ip, port } => {
            wants.reads.insert(Read::ServicesWithClusterIp(*ip));
            wants.reads.insert(Read::PodsWithIp(*ip));
            // In the same round, not one more after: an address outside the cluster (most
            // address checks) needs them to be told from a node port or LoadBalancer address.
            for service_type in ["NodePort", "LoadBalancer"] {
                wants.reads.insert(Read::ServicesOfType(service_type.into()));
            }
            let service = match seen.services.iter().find(|s| cluster_ips(s).contains(ip)) {
                Some(svc) => Some(NamespacedName::of(svc)),
                None => service_entry(seen.pods, seen.node_addresses, seen.services, *ip, *port)
                    .map(|(key, ..)| key),
            };
            match &service {
                Some(key) => wants.service(key, true, seen),
                None => wants.holder(*ip, seen),
            }
            if seen.unclaimed(*ip)
                && service.is_none()
                && seen.services.iter().any(|s| has_node_port(s, *port))
            {
                wants.reads.insert(Read::Nodes);
            }
        }
    }
    wants.reads.insert(Read::Admin);
    if seen.policies {
        wants.reads.insert(Read::DaemonSets);
    }
    if let Some(node) = source_node(seen, from)
        && seen.slices.iter().any(has_zone_hints)
    {
        wants.reads.insert(Read::Node(node));
    }
    let Wants { mut reads, evaluated } = wants;
    for namespace in evaluated {
        reads.insert(Read::Namespace(namespace.clone()));
        reads.insert(Read::PoliciesIn(namespace));
    }
    reads
}

#[derive(Default)]
struct Wants {
    reads: BTreeSet<Read>,
    /// Namespaces of the pods whose policies are evaluated: their Namespace and NetworkPolicies.
    evaluated: BTreeSet<String>,
}

impl Wants {
    /// The cluster DNS Service, its slices and pods; its namespace's policies decide whether the
    /// source may reach them.
    fn cluster_dns(&mut self, seen: &Seen) {
        self.service(&NamespacedName::kube_dns(), false, seen);
    }

    /// The Service the target names; when it is missing, the names that may have been meant.
    fn target_service(&mut self, key: &NamespacedName, seen: &Seen) {
        self.service(key, true, seen);
        // An ExternalName alias for one of the cluster's Services: the one it names, once.
        if let Some(alias) = seen.service(key).and_then(external_alias).filter(|a| a != key) {
            self.service(&alias, true, seen);
        }
        if seen.absent_service(key) {
            self.reads.insert(Read::ServicesIn(key.namespace.clone()));
            self.reads.insert(Read::ServicesNamed(key.name.clone()));
        }
    }

    /// A Service, its slices and the pods behind them. The pods its selector selects come in one
    /// list; a pod a slice names that the list did not return is read by name after it. For the
    /// target (not the cluster DNS) an address no slice ties to a pod is looked up by address.
    fn service(&mut self, key: &NamespacedName, target: bool, seen: &Seen) {
        self.reads.insert(Read::Service(key.clone()));
        self.reads.insert(Read::SlicesOf(key.clone()));
        self.evaluated.insert(key.namespace.clone());
        let Some(svc) = seen.service(key) else {
            return;
        };
        let selected = selector(svc).map(|selector| Read::PodsSelected {
            namespace: key.namespace.clone(),
            selector,
        });
        let selected_done = selected.as_ref().is_none_or(|read| seen.done.contains(read));
        self.reads.extend(selected);
        for slice in seen.slices.iter().filter(|s| is_slice_of(s, key)) {
            for endpoint in &slice.endpoints {
                match slice_pod(slice, endpoint) {
                    Some(pod) => {
                        self.evaluated.insert(pod.namespace.clone());
                        if selected_done && !seen.has_pod(&pod) {
                            self.reads.insert(Read::Pod(pod));
                        }
                    }
                    None if target => {
                        if let Some(ip) = endpoint.addresses.first().and_then(|a| a.parse().ok()) {
                            self.holder(ip, seen);
                        }
                    }
                    None => {}
                }
            }
        }
    }

    /// The pod holding `ip`, by address; once found, its namespace is evaluated.
    fn holder(&mut self, ip: IpAddr, seen: &Seen) {
        self.reads.insert(Read::PodsWithIp(ip));
        // A host-network pod holds its node's address, which is no pod's destination.
        let holders = seen
            .pods
            .iter()
            .filter(|p| in_pod_network(p) && pod_ips(p).contains(&ip));
        for pod in holders {
            if let Some(namespace) = &pod.metadata.namespace {
                self.evaluated.insert(namespace.clone());
            }
        }
    }
}

/// Whether a pod has an address of the pod network (not its node's, as a host-network pod).
fn in_pod_network(pod: &Pod) -> bool {
    !pod.spec.as_ref().and_then(|s| s.host_network).unwrap_or(false)
}

/// Whether a Service opens `port` as a node port on every node.
fn has_node_port(svc: &Service, port: u16) -> bool {
    let ports = svc.spec.iter().flat_map(|s| s.ports.iter().flatten());
    ports.filter_map(|p| p.node_port).any(|n| n == i32::from(port))
}

/// The node the source pod was scheduled to, once it was read.
fn source_node(seen: &Seen, from: &NamespacedName) -> Option<String> {
    let pod = seen.pods.iter().find(|p| from.is(*p))?;
    pod.spec.as_ref()?.node_name.clone().filter(|n| !n.is_empty())
}

/// Whether a slice hints an endpoint for zones: kube-proxy then routes by its node's zone.
fn has_zone_hints(slice: &EndpointSlice) -> bool {
    slice.endpoints.iter().any(|e| {
        e.hints
            .as_ref()
            .and_then(|h| h.for_zones.as_ref())
            .is_some_and(|z| !z.is_empty())
    })
}

/// The Service an ExternalName Service names, when it names one of the cluster's.
fn external_alias(svc: &Service) -> Option<NamespacedName> {
    let spec = svc.spec.as_ref()?;
    if spec.type_.as_deref() != Some("ExternalName") {
        return None;
    }
    in_cluster_alias(spec.external_name.as_deref()?)
}

/// The Service's selector as a label selector string; `None` for a Service without one.
fn selector(svc: &Service) -> Option<String> {
    let map = svc.spec.as_ref()?.selector.clone().filter(|s| !s.is_empty())?;
    let selector: Selector = map.into_iter().collect();
    Some(selector.to_string())
}

fn cluster_ips(svc: &Service) -> Vec<IpAddr> {
    let Some(spec) = &svc.spec else {
        return vec![];
    };
    spec.cluster_ip
        .iter()
        .chain(spec.cluster_ips.iter().flatten())
        .filter_map(|ip| ip.parse().ok())
        .collect()
}

fn is_slice_of(slice: &EndpointSlice, key: &NamespacedName) -> bool {
    slice.metadata.namespace.as_deref() == Some(key.namespace.as_str())
        && slice
            .metadata
            .labels
            .as_ref()
            .and_then(|l| l.get(SERVICE_NAME_LABEL))
            .map(String::as_str)
            == Some(key.name.as_str())
}

/// The pod an endpoint's targetRef names (in the slice's namespace unless it names one).
fn slice_pod(
    slice: &EndpointSlice,
    endpoint: &k8s_openapi::api::discovery::v1::Endpoint,
) -> Option<NamespacedName> {
    let r = endpoint
        .target_ref
        .as_ref()
        .filter(|r| r.kind.as_deref() == Some("Pod"))?;
    let namespace = r.namespace.as_deref().or(slice.metadata.namespace.as_deref())?;
    Some(NamespacedName::new(namespace, r.name.as_deref()?))
}

#[cfg(test)]
#[path = "reads_tests.rs"]
mod tests;
