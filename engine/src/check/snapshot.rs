//! What the API server returned for one check, read once: every later stage (planning, policy
//! evaluation, assembly) works from this value and never reads the cluster again.
//!
//! [`Snapshot::read`] is the only I/O here: it reads what the check's flow depends on
//! ([`super::reads`] decides which objects), never a whole kind of the cluster.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::net::IpAddr;
use std::sync::{Arc, OnceLock};

use futures::StreamExt;
use k8s_openapi::api::apps::v1::DaemonSet;
use k8s_openapi::api::core::v1::{Namespace, Node, Pod, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use k8s_openapi::api::networking::v1::NetworkPolicy;
use kube::Api;
use kube::api::ListParams;

use super::evidence::Fact;
use super::plan::CheckRequest;
use super::reads::{self, AgentPlace, Read, SERVICE_NAME_LABEL, Seen};
use super::target::Target;
use crate::cluster::enforcers::{self, Enforcer};
use crate::cluster::{ToolFailure, get_optional, list_paged};
use crate::policy::admin::{AdminObjects, read_admin_objects};

/// The objects a check depends on, by kind.
#[derive(Debug, Clone)]
pub struct Snapshot {
    pub pods: Fact<Vec<Pod>>,
    pub services: Fact<Vec<Service>>,
    pub slices: Fact<Vec<EndpointSlice>>,
    pub namespaces: Fact<Vec<Namespace>>,
    pub policies: Fact<Vec<NetworkPolicy>>,
    /// The cluster-wide admin policies (none when their CRDs are not installed).
    pub admin: Fact<AdminObjects>,
    /// What enforces NetworkPolicy, recognised from the cluster's DaemonSets; `None` when no
    /// policy was found, so nothing was read.
    pub enforcers: Option<Fact<Vec<Enforcer>>>,
    /// The zone label of the source pod's node, which kube-proxy there routes zone hints by;
    /// `None` when no endpoint carries zone hints, so the Node was not read.
    pub source_zone: Option<Fact<Option<String>>>,
    /// Each node's addresses (`status.addresses`), by node name: read only for an address
    /// target whose port is a node port, to tell whether the address is a node's.
    pub node_addresses: NodeAddresses,
    /// Why the cluster DNS's objects (kube-dns, its slices, pods and policies) could not all be
    /// read, when the check's own namespaces are others: a user bound in their namespace may
    /// not read `kube-system`, and that leaves only the DNS facts unknown, not the kinds.
    pub cluster_dns_unread: Option<ToolFailure>,
    /// Reads more for an address the target name resolved to ([`Snapshot::follow`]); `None`
    /// for a snapshot built from values.
    pub(crate) reader: Option<Reader>,
    /// This snapshot with what [`Snapshot::follow`] read, once it has.
    pub(crate) followed: Arc<OnceLock<Snapshot>>,
}

/// The client a snapshot was read with, and what it was asked to read besides the check.
#[derive(Clone)]
pub(crate) struct Reader {
    client: kube::Client,
    agents: Option<AgentPlace>,
}

impl fmt::Debug for Reader {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Reader")
            .field("agents", &self.agents)
            .finish_non_exhaustive()
    }
}

/// Rounds of reads at most: each depends on the one before (source and target, then the pods
/// and namespaces they name, then the pods a slice names that a selector did not return).
const MAX_ROUNDS: usize = 6;

/// Reads of one round in flight at once at most: a selector-less Service of hundreds of
/// endpoints is read pod by pod.
const CONCURRENT_READS: usize = 16;

impl Snapshot {
    /// Reads what the check of `request` depends on, in rounds of concurrent reads. A failed read
    /// makes its kind an unknown fact naming the read (a hint's failure only drops the hint),
    /// never an error.
    pub async fn read(client: &kube::Client, request: &CheckRequest) -> Self {
        Self::read_with(client, request, None).await
    }

    /// [`Snapshot::read`], plus the agent pods (in `namespace`, with the label `selector`) for a
    /// transport that finds its peers in the snapshot.
    pub async fn read_with_agents(
        client: &kube::Client,
        request: &CheckRequest,
        namespace: &str,
        selector: &str,
    ) -> Self {
        let agents = AgentPlace {
            namespace: namespace.to_string(),
            selector: selector.to_string(),
        };
        Self::read_with(client, request, Some(&agents)).await
    }

    async fn read_with(client: &kube::Client, request: &CheckRequest, agents: Option<&AgentPlace>) -> Self {
        let mut gathered = Gathered::default();
        let mut done = BTreeSet::new();
        for _ in 0..MAX_ROUNDS {
            let seen = Seen {
                pods: &gathered.pods.values().cloned().collect::<Vec<_>>(),
                services: &gathered.services.values().cloned().collect::<Vec<_>>(),
                slices: &gathered.slices.values().cloned().collect::<Vec<_>>(),
                node_addresses: &gathered.node_addresses,
                policies: !gathered.policies.is_empty()
                    || gathered.admin.as_ref().is_some_and(|a| !a.is_empty()),
                done: &done,
            };
            let round: Vec<Read> = reads::needed(request, agents, &seen)
                .into_iter()
                .filter(|r| !done.contains(r))
                .collect();
            if round.is_empty() {
                break;
            }
            tracing::debug!(reads = round.len(), "reading the cluster");
            let results: Vec<(Read, Result<Objects, ToolFailure>)> = futures::stream::iter(round)
                .map(|read| async move {
                    let result = run(client, &read).await;
                    (read, result)
                })
                .buffer_unordered(CONCURRENT_READS)
                .collect()
                .await;
            // In the order of the reads, not of their answers: the failure a kind reports is
            // the same on every run.
            let mut results = results;
            results.sort_by(|a, b| a.0.cmp(&b.0));
            for (read, result) in results {
                let result = result.map_err(|failure| match read.access() {
                    Some(access) => failure.needing(access),
                    None => failure,
                });
                if let Err(failure) = &result
                    && !read.is_hint()
                    && reads::is_cluster_dns_only(request, &read)
                {
                    gathered
                        .cluster_dns_unread
                        .entry(read.clone())
                        .or_insert_with(|| failure.clone());
                } else {
                    gathered.add(&read, result);
                }
                done.insert(read);
            }
        }
        let mut snap = gathered.into_snapshot();
        snap.reader = Some(Reader {
            client: client.clone(),
            agents: agents.cloned(),
        });
        snap
    }

    /// The snapshot for the address a `HOST:PORT` target (a name the API ties to no Service, so
    /// its destination was unknown when this one was read) or an ExternalName Service for an
    /// outside host resolved to, connected to on `port`: this one plus what an
    /// `IP:PORT` check of that address reads (its Service or pod, their slices, pods, namespaces
    /// and policies), read once. Itself for a snapshot built from values.
    pub(crate) async fn follow(&self, request: &CheckRequest, resolved: IpAddr, port: u16) -> &Snapshot {
        let Some(reader) = &self.reader else {
            return self;
        };
        if let Some(followed) = self.followed.get() {
            return followed;
        }
        let address = CheckRequest {
            target: Target::Ip { ip: resolved, port },
            ..request.clone()
        };
        let more = Self::read_with(&reader.client, &address, reader.agents.as_ref()).await;
        let merged = Snapshot {
            pods: union(&self.pods, more.pods),
            services: union(&self.services, more.services),
            slices: union(&self.slices, more.slices),
            namespaces: union(&self.namespaces, more.namespaces),
            policies: union(&self.policies, more.policies),
            admin: self.admin.clone(),
            enforcers: self.enforcers.clone().or(more.enforcers),
            source_zone: self.source_zone.clone().or(more.source_zone),
            node_addresses: self
                .node_addresses
                .iter()
                .chain(&more.node_addresses)
                .map(|(n, a)| (n.clone(), a.clone()))
                .collect(),
            cluster_dns_unread: self.cluster_dns_unread.clone().or(more.cluster_dns_unread),
            reader: None,
            followed: Arc::default(),
        };
        self.followed.get_or_init(|| merged)
    }

    /// The snapshot a report of this check's evidence is judged from: the followed one when the
    /// target name was followed to an address.
    pub(crate) fn as_followed(&self) -> &Snapshot {
        self.followed.get().unwrap_or(self)
    }

    /// Nothing could be read, for one reason (no kubeconfig, no client).
    pub fn unread(failure: ToolFailure) -> Self {
        Snapshot {
            pods: Fact::Unknown(failure.clone()),
            services: Fact::Unknown(failure.clone()),
            slices: Fact::Unknown(failure.clone()),
            namespaces: Fact::Unknown(failure.clone()),
            policies: Fact::Unknown(failure.clone()),
            admin: Fact::Unknown(failure),
            enforcers: None,
            source_zone: None,
            node_addresses: NodeAddresses::new(),
            cluster_dns_unread: None,
            reader: None,
            followed: Arc::default(),
        }
    }

    pub(crate) fn pods(&self) -> &[Pod] {
        self.pods.known().map(Vec::as_slice).unwrap_or_default()
    }

    pub(crate) fn services(&self) -> &[Service] {
        self.services.known().map(Vec::as_slice).unwrap_or_default()
    }
}

/// What one read returned.
enum Objects {
    Pods(Vec<Pod>),
    Services(Vec<Service>),
    Slices(Vec<EndpointSlice>),
    Namespaces(Vec<Namespace>),
    Policies(Vec<NetworkPolicy>),
    Admin(AdminObjects),
    DaemonSets(Vec<DaemonSet>),
    Nodes(Vec<Node>),
    /// Every node, kept as its addresses.
    AllNodes(Vec<Node>),
}

/// Nodes' addresses by node name.
pub type NodeAddresses = BTreeMap<String, Vec<IpAddr>>;

/// A node's name and the addresses of its `status.addresses` (internal and external alike).
fn node_addresses(node: &Node) -> (String, Vec<IpAddr>) {
    let addresses = node.status.iter().flat_map(|s| s.addresses.iter().flatten());
    (
        node.metadata.name.clone().unwrap_or_default(),
        addresses.filter_map(|a| a.address.parse().ok()).collect(),
    )
}

/// The objects of one kind by namespace and name (the order an API server lists them in).
type ByKey<K> = BTreeMap<(String, String), K>;

/// The rounds' objects so far, and the first failed read of each kind.
#[derive(Default)]
struct Gathered {
    pods: ByKey<Pod>,
    services: ByKey<Service>,
    slices: ByKey<EndpointSlice>,
    namespaces: ByKey<Namespace>,
    policies: ByKey<NetworkPolicy>,
    admin: Option<AdminObjects>,
    /// The DaemonSets, or why they could not be read; `None` when not asked.
    daemonsets: Option<Result<Vec<DaemonSet>, ToolFailure>>,
    /// The source's Node (none when it does not exist), or why it could not be read; `None`
    /// when not asked.
    node: Option<Result<Option<Node>, ToolFailure>>,
    node_addresses: NodeAddresses,
    failed: BTreeMap<&'static str, ToolFailure>,
    /// Failed reads of the cluster DNS's objects only ([`reads::is_cluster_dns_only`]).
    cluster_dns_unread: BTreeMap<Read, ToolFailure>,
}

fn key_of<K: kube::Resource>(obj: &K) -> (String, String) {
    let meta = obj.meta();
    (
        meta.namespace.clone().unwrap_or_default(),
        meta.name.clone().unwrap_or_default(),
    )
}

fn insert_all<K: kube::Resource>(into: &mut ByKey<K>, items: Vec<K>) {
    for item in items {
        into.entry(key_of(&item)).or_insert(item);
    }
}

fn fact<K>(objects: ByKey<K>, failure: Option<ToolFailure>) -> Fact<Vec<K>> {
    match failure {
        Some(failure) => Fact::Unknown(failure),
        None => Fact::Known(objects.into_values().collect()),
    }
}

/// The objects of both, each once; unknown when either is.
fn union<K: kube::Resource + Clone>(known: &Fact<Vec<K>>, more: Fact<Vec<K>>) -> Fact<Vec<K>> {
    match (known, more) {
        (Fact::Unknown(failure), _) => Fact::Unknown(failure.clone()),
        (_, Fact::Unknown(failure)) => Fact::Unknown(failure),
        (Fact::Known(known), Fact::Known(more)) => {
            let mut all: ByKey<K> = known.iter().map(|o| (key_of(o), o.clone())).collect();
            insert_all(&mut all, more);
            Fact::Known(all.into_values().collect())
        }
    }
}

impl Gathered {
    fn add(&mut self, read: &Read, result: Result<Objects, ToolFailure>) {
        match result {
            Ok(Objects::Pods(items)) => insert_all(&mut self.pods, items),
            Ok(Objects::Services(items)) => insert_all(&mut self.services, items),
            Ok(Objects::Slices(items)) => insert_all(&mut self.slices, items),
            Ok(Objects::Namespaces(items)) => insert_all(&mut self.namespaces, items),
            Ok(Objects::Policies(items)) => insert_all(&mut self.policies, items),
            Ok(Objects::Admin(admin)) => self.admin = Some(admin),
            Ok(Objects::DaemonSets(items)) => self.daemonsets = Some(Ok(items)),
            Ok(Objects::Nodes(items)) => self.node = Some(Ok(items.into_iter().next())),
            Ok(Objects::AllNodes(items)) => self.node_addresses.extend(items.iter().map(node_addresses)),
            Err(failure) if *read == Read::DaemonSets => self.daemonsets = Some(Err(failure)),
            Err(failure) if matches!(read, Read::Node(_)) => self.node = Some(Err(failure)),
            Err(failure) if read.is_hint() => {
                tracing::debug!(%failure, "a hint's read failed; the hint is left out");
            }
            Err(failure) => {
                self.failed.entry(read.resource()).or_insert(failure);
            }
        }
    }

    fn into_snapshot(mut self) -> Snapshot {
        let mut failure = |resource: &'static str| self.failed.remove(resource);
        let pods = failure("pods");
        let services = failure("services");
        let slices = failure("endpointslices");
        let namespaces = failure("namespaces");
        let policies = failure("networkpolicies");
        let admin = failure(Read::Admin.resource());
        Snapshot {
            pods: fact(self.pods, pods),
            services: fact(self.services, services),
            slices: fact(self.slices, slices),
            namespaces: fact(self.namespaces, namespaces),
            policies: fact(self.policies, policies),
            admin: match admin {
                Some(failure) => Fact::Unknown(failure),
                None => Fact::Known(self.admin.unwrap_or_default()),
            },
            enforcers: self.daemonsets.map(|read| match read {
                Ok(daemonsets) => Fact::Known(enforcers::recognise(&daemonsets)),
                Err(failure) => Fact::Unknown(failure),
            }),
            source_zone: self.node.map(|read| match read {
                Ok(node) => Fact::Known(node.as_ref().and_then(zone_label)),
                Err(failure) => Fact::Unknown(failure),
            }),
            node_addresses: self.node_addresses,
            cluster_dns_unread: self.cluster_dns_unread.into_values().next(),
            reader: None,
            followed: Arc::default(),
        }
    }
}

/// The node label kube-proxy takes its zone from.
const ZONE_LABEL: &str = "topology.kubernetes.io/zone";

fn zone_label(node: &Node) -> Option<String> {
    node.metadata.labels.as_ref()?.get(ZONE_LABEL).cloned()
}

/// Runs one read: a get (absent is no object) or a paginated list.
async fn run(client: &kube::Client, read: &Read) -> Result<Objects, ToolFailure> {
    let action = read.action();
    let action = action.as_str();
    let client = client.clone();
    let fields = |selector: String| ListParams::default().fields(&selector);
    Ok(match read {
        Read::Pod(key) => Objects::Pods(
            get_optional(&Api::<Pod>::namespaced(client, &key.namespace), &key.name, action)
                .await?
                .into_iter()
                .collect(),
        ),
        Read::PodsSelected { namespace, selector } => Objects::Pods(
            list_paged(
                &Api::<Pod>::namespaced(client, namespace),
                &ListParams::default().labels(selector),
                action,
            )
            .await?,
        ),
        Read::PodsNamed(name) => Objects::Pods(
            list_paged(
                &Api::<Pod>::all(client),
                &fields(format!("metadata.name={name}")),
                action,
            )
            .await?,
        ),
        Read::PodsWithIp(ip) => Objects::Pods(
            list_paged(
                &Api::<Pod>::all(client),
                &fields(format!("status.podIP={ip}")),
                action,
            )
            .await?,
        ),
        Read::Service(key) => Objects::Services(
            get_optional(
                &Api::<Service>::namespaced(client, &key.namespace),
                &key.name,
                action,
            )
            .await?
            .into_iter()
            .collect(),
        ),
        Read::ServicesIn(namespace) => Objects::Services(
            list_paged(
                &Api::<Service>::namespaced(client, namespace),
                &ListParams::default(),
                action,
            )
            .await?,
        ),
        Read::ServicesNamed(name) => Objects::Services(
            list_paged(
                &Api::<Service>::all(client),
                &fields(format!("metadata.name={name}")),
                action,
            )
            .await?,
        ),
        Read::ServicesWithClusterIp(ip) => Objects::Services(
            list_paged(
                &Api::<Service>::all(client),
                &fields(format!("spec.clusterIP={ip}")),
                action,
            )
            .await?,
        ),
        Read::ServicesOfType(service_type) => Objects::Services(
            list_paged(
                &Api::<Service>::all(client),
                &fields(format!("spec.type={service_type}")),
                action,
            )
            .await?,
        ),
        Read::Nodes => {
            Objects::AllNodes(list_paged(&Api::<Node>::all(client), &ListParams::default(), action).await?)
        }
        Read::SlicesOf(key) => Objects::Slices(
            list_paged(
                &Api::<EndpointSlice>::namespaced(client, &key.namespace),
                &ListParams::default().labels(&format!("{SERVICE_NAME_LABEL}={}", key.name)),
                action,
            )
            .await?,
        ),
        Read::Namespace(name) => Objects::Namespaces(
            get_optional(&Api::<Namespace>::all(client), name, action)
                .await?
                .into_iter()
                .collect(),
        ),
        Read::PoliciesIn(namespace) => Objects::Policies(
            list_paged(
                &Api::<NetworkPolicy>::namespaced(client, namespace),
                &ListParams::default(),
                action,
            )
            .await?,
        ),
        Read::Admin => Objects::Admin(read_admin_objects(&client).await.map_err(|err| err.source)?),
        Read::Node(name) => Objects::Nodes(
            get_optional(&Api::<Node>::all(client), name, action)
                .await?
                .into_iter()
                .collect(),
        ),
        Read::DaemonSets => Objects::DaemonSets(
            list_paged(&Api::<DaemonSet>::all(client), &ListParams::default(), action).await?,
        ),
    })
}
