//! The one reading of EndpointSlices: which addresses back a Service port, with their conditions
//! defaulted as the API documents, and the rules kube-proxy applies to pick the ones it sends new
//! connections to: cluster-wide ([`in_service`]) and from one node ([`used_from_node`]), where
//! `internalTrafficPolicy: Local` and topology hints narrow them.

use std::collections::BTreeSet;
use std::net::IpAddr;

use k8s_openapi::api::discovery::v1::{Endpoint, EndpointConditions, EndpointPort, EndpointSlice};

use super::NamespacedName;
use super::Protocol;

/// The label that ties an EndpointSlice to its Service.
pub const SERVICE_NAME_LABEL: &str = "kubernetes.io/service-name";

/// An endpoint's conditions with the API's defaults applied.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Conditions {
    /// Ready for new connections (never true while terminating).
    pub ready: bool,
    /// Passing readiness, whether or not it is terminating.
    pub serving: bool,
    pub terminating: bool,
}

impl Conditions {
    pub const READY: Conditions = Conditions {
        ready: true,
        serving: true,
        terminating: false,
    };

    /// `ready` absent means ready; `serving` absent defers to `ready`; `terminating` absent is false.
    pub fn from_api(conditions: Option<&EndpointConditions>) -> Self {
        let ready = conditions.and_then(|c| c.ready).unwrap_or(true);
        let terminating = conditions.and_then(|c| c.terminating).unwrap_or(false);
        Conditions {
            ready: ready && !terminating,
            serving: conditions.and_then(|c| c.serving).unwrap_or(ready),
            terminating,
        }
    }

    /// Still serving while it terminates: what kube-proxy falls back to when nothing is ready.
    pub fn serving_terminating(self) -> bool {
        self.serving && self.terminating
    }
}

/// Which of a Service's endpoints kube-proxy sends new connections to: the ready ones, or when
/// none is ready, those still serving while they terminate. Empty when neither exists.
pub fn in_service<'a, T>(
    endpoints: impl IntoIterator<Item = &'a T> + Clone,
    conditions: impl Fn(&T) -> Conditions,
) -> Vec<&'a T> {
    let ready: Vec<&T> = endpoints
        .clone()
        .into_iter()
        .filter(|e| conditions(e).ready)
        .collect();
    if !ready.is_empty() {
        return ready;
    }
    endpoints
        .into_iter()
        .filter(|e| conditions(e).serving_terminating())
        .collect()
}

/// Where an endpoint runs, and which clients its slice hints it for.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Topology {
    /// `nodeName`: kube-proxy on this node calls the endpoint local.
    pub node: Option<String>,
    /// `hints.forZones`: the zones whose nodes should use it (`trafficDistribution`).
    pub for_zones: Vec<String>,
    /// `hints.forNodes`: the nodes that should use it (`PreferSameNode`).
    pub for_nodes: Vec<String>,
}

impl Topology {
    pub fn from_api(endpoint: &Endpoint) -> Self {
        let hints = endpoint.hints.as_ref();
        Topology {
            node: endpoint.node_name.clone().filter(|n| !n.is_empty()),
            for_zones: hints
                .and_then(|h| h.for_zones.as_ref())
                .map(|z| z.iter().map(|z| z.name.clone()).collect())
                .unwrap_or_default(),
            for_nodes: hints
                .and_then(|h| h.for_nodes.as_ref())
                .map(|n| n.iter().map(|n| n.name.clone()).collect())
                .unwrap_or_default(),
        }
    }
}

/// A Service's `internalTrafficPolicy`: which endpoints traffic from inside the cluster uses.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum TrafficPolicy {
    /// Every usable endpoint (the default).
    #[default]
    Cluster,
    /// Only the endpoints on the client's own node.
    Local,
}

impl TrafficPolicy {
    /// `Local`, or the default for anything else (absent, `Cluster`).
    pub fn from_api(value: Option<&str>) -> Self {
        match value {
            Some("Local") => TrafficPolicy::Local,
            _ => TrafficPolicy::Cluster,
        }
    }
}

/// The node a client runs on, as kube-proxy there knows it.
#[derive(Debug, Clone, Copy)]
pub struct ClientNode<'a> {
    pub name: &'a str,
    /// Its `topology.kubernetes.io/zone` label (`None`: none, or not known).
    pub zone: Option<&'a str>,
}

/// Why kube-proxy on a node sends a Service's traffic to the endpoints it does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Routing {
    /// Every usable endpoint of the Service.
    Cluster,
    /// `internalTrafficPolicy: Local`: only the usable endpoints on the node.
    Local,
    /// Topology hints: only the endpoints hinted for the node (`PreferSameNode`).
    SameNode,
    /// Topology hints: only the endpoints hinted for the node's zone.
    SameZone(String),
}

/// Which of a Service's endpoints kube-proxy on `node` sends in-cluster traffic to, and why:
/// kube-proxy's own categorisation for traffic from a pod. Under `Local`, the node's ready
/// endpoints, else its serving-and-terminating ones (possibly none: the node then drops the
/// traffic). Under `Cluster`, the ready endpoints its topology hints give the node when every
/// ready endpoint carries hints and one names the node (else its zone); with none ready anywhere,
/// the serving-and-terminating ones.
pub fn used_from_node<'a, T>(
    endpoints: &'a [T],
    facts: impl Fn(&T) -> (Conditions, &Topology),
    policy: TrafficPolicy,
    node: ClientNode,
) -> (Vec<&'a T>, Routing) {
    let local = |e: &&T| facts(e).1.node.as_deref() == Some(node.name);
    if policy == TrafficPolicy::Local {
        return (
            in_service(endpoints.iter().filter(local), |e| facts(e).0),
            Routing::Local,
        );
    }
    let routing = routing_from_hints(endpoints, &facts, node);
    let hinted = |e: &&T| {
        let topology = facts(e).1;
        match &routing {
            Routing::SameNode => topology.for_nodes.iter().any(|n| n == node.name),
            Routing::SameZone(zone) => topology.for_zones.contains(zone),
            Routing::Cluster | Routing::Local => true,
        }
    };
    let ready: Vec<&T> = endpoints
        .iter()
        .filter(|e| facts(e).0.ready)
        .filter(hinted)
        .collect();
    if ready.is_empty() {
        // Hints apply only while something is ready: this is the fallback of a Service without.
        return (in_service(endpoints, |e| facts(e).0), Routing::Cluster);
    }
    (ready, routing)
}

/// The topology mode kube-proxy picks for `node`: same-node when every ready endpoint has a
/// node hint and one names the node; else same-zone when every one has a zone hint and one
/// names the node's zone; else none.
fn routing_from_hints<T>(
    endpoints: &[T],
    facts: &impl Fn(&T) -> (Conditions, &Topology),
    node: ClientNode,
) -> Routing {
    let ready: Vec<&Topology> = endpoints
        .iter()
        .map(facts)
        .filter(|(c, _)| c.ready)
        .map(|(_, t)| t)
        .collect();
    if ready.is_empty() {
        return Routing::Cluster;
    }
    if ready.iter().all(|t| !t.for_nodes.is_empty())
        && ready.iter().any(|t| t.for_nodes.iter().any(|n| n == node.name))
    {
        return Routing::SameNode;
    }
    if let Some(zone) = node.zone
        && ready.iter().all(|t| !t.for_zones.is_empty())
        && ready.iter().any(|t| t.for_zones.iter().any(|z| z == zone))
    {
        return Routing::SameZone(zone.to_string());
    }
    Routing::Cluster
}

/// One address listed for a Service port.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SliceEndpoint {
    pub ip: IpAddr,
    pub port: u16,
    pub conditions: Conditions,
    /// The pod behind the address, when the slice names one (`targetRef` of kind Pod).
    pub pod: Option<NamespacedName>,
    /// The slice that lists it.
    pub slice: NamespacedName,
    pub topology: Topology,
}

/// The slices of `service` (by the service-name label, in its namespace).
pub fn slices_of<'a>(
    slices: &'a [EndpointSlice],
    service: &'a NamespacedName,
) -> impl Iterator<Item = &'a EndpointSlice> + 'a {
    slices.iter().filter(move |s| {
        s.metadata.namespace.as_deref() == Some(service.namespace.as_str())
            && s.metadata
                .labels
                .as_ref()
                .and_then(|l| l.get(SERVICE_NAME_LABEL))
                .is_some_and(|n| *n == service.name)
    })
}

/// The endpoints of the Service port named `port_name` (`None`: the unnamed port) and `protocol`.
/// A slice without that port contributes none: the controller puts pods that lack a named
/// targetPort into such a slice.
pub fn port_endpoints(
    slices: &[EndpointSlice],
    service: &NamespacedName,
    port_name: Option<&str>,
    protocol: Protocol,
) -> Vec<SliceEndpoint> {
    endpoints_where(slices, service, |ports| {
        ports
            .iter()
            .find(|p| {
                p.name.as_deref().filter(|n| !n.is_empty()) == port_name
                    && p.protocol.as_deref().unwrap_or("TCP") == protocol.as_str()
            })
            .and_then(|p| p.port)
    })
}

/// The endpoints of `service` whose slice port `pick` chooses (by the slice's port list).
pub fn endpoints_where(
    slices: &[EndpointSlice],
    service: &NamespacedName,
    pick: impl Fn(&[EndpointPort]) -> Option<i32>,
) -> Vec<SliceEndpoint> {
    let mut out = Vec::new();
    let mut seen = BTreeSet::new();
    for slice in slices_of(slices, service) {
        let ports = slice.ports.as_deref().unwrap_or_default();
        let Some(port) = pick(ports).and_then(|n| u16::try_from(n).ok()) else {
            continue;
        };
        for ep in &slice.endpoints {
            let Some(ip) = ep.addresses.first().and_then(|a| a.parse::<IpAddr>().ok()) else {
                continue;
            };
            if !seen.insert((ip, port)) {
                continue;
            }
            let pod = ep
                .target_ref
                .as_ref()
                .filter(|r| r.kind.as_deref() == Some("Pod"))
                .and_then(|r| {
                    let ns = r.namespace.as_deref().or(slice.metadata.namespace.as_deref())?;
                    Some(NamespacedName::new(ns, r.name.as_deref()?))
                });
            out.push(SliceEndpoint {
                ip,
                port,
                conditions: Conditions::from_api(ep.conditions.as_ref()),
                pod,
                slice: NamespacedName::of(slice),
                topology: Topology::from_api(ep),
            });
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn conditions(ready: Option<bool>, serving: Option<bool>, terminating: Option<bool>) -> Conditions {
        Conditions::from_api(Some(&EndpointConditions {
            ready,
            serving,
            terminating,
        }))
    }

    #[test]
    fn absent_conditions_mean_ready_and_a_terminating_endpoint_is_never_ready() {
        assert_eq!(Conditions::from_api(None), Conditions::READY);
        let c = conditions(Some(true), Some(true), Some(true));
        assert!(!c.ready && c.serving_terminating());
        let c = conditions(Some(false), None, None);
        assert!(!c.ready && !c.serving);
    }

    #[test]
    fn kube_proxy_uses_ready_endpoints_and_falls_back_to_serving_terminating_ones() {
        let ready = Conditions::READY;
        let draining = conditions(Some(false), Some(true), Some(true));
        let dead = conditions(Some(false), Some(false), Some(true));
        let pick = |list: &[Conditions]| -> Vec<Conditions> {
            in_service(list, |c| *c).into_iter().copied().collect()
        };
        assert_eq!(pick(&[ready, draining]), [ready]);
        assert_eq!(pick(&[draining, dead]), [draining]);
        assert!(pick(&[dead]).is_empty());
    }

    fn slice(json: serde_json::Value) -> EndpointSlice {
        serde_json::from_value(json).unwrap()
    }

    #[test]
    fn endpoints_come_from_the_slice_port_of_the_same_name_and_protocol() {
        let slices = [
            slice(serde_json::json!({
                "metadata": {"name": "payments-abc", "namespace": "shop",
                             "labels": {"kubernetes.io/service-name": "payments"}},
                "addressType": "IPv4",
                "ports": [{"name": "metrics", "port": 9100, "protocol": "TCP"},
                          {"name": "http", "port": 8080, "protocol": "TCP"}],
                "endpoints": [
                    {"addresses": ["10.244.1.3"], "targetRef": {"kind": "Pod", "name": "payments-0"}},
                    {"addresses": ["10.244.2.3"], "conditions": {"ready": false}},
                ]
            })),
            slice(serde_json::json!({
                "metadata": {"name": "payments-portless", "namespace": "shop",
                             "labels": {"kubernetes.io/service-name": "payments"}},
                "addressType": "IPv4", "ports": [],
                "endpoints": [{"addresses": ["10.244.2.9"]}]
            })),
            slice(serde_json::json!({
                "metadata": {"name": "other", "namespace": "web",
                             "labels": {"kubernetes.io/service-name": "payments"}},
                "addressType": "IPv4", "ports": [{"name": "http", "port": 80}],
                "endpoints": [{"addresses": ["10.244.3.3"]}]
            })),
        ];
        let service = NamespacedName::new("shop", "payments");
        let eps = port_endpoints(&slices, &service, Some("http"), Protocol::Tcp);
        let got: Vec<(String, u16, bool)> = eps
            .iter()
            .map(|e| (e.ip.to_string(), e.port, e.conditions.ready))
            .collect();
        assert_eq!(
            got,
            [
                ("10.244.1.3".into(), 8080, true),
                ("10.244.2.3".into(), 8080, false)
            ]
        );
        assert_eq!(eps[0].pod, Some(NamespacedName::new("shop", "payments-0")));
        assert_eq!(eps[0].slice, NamespacedName::new("shop", "payments-abc"));
        assert!(port_endpoints(&slices, &service, Some("http"), Protocol::Udp).is_empty());
    }

    /// An endpoint by name, on a node, with its zone and node hints and its conditions.
    struct Ep(&'static str, Conditions, Topology);

    fn ep(name: &'static str, node: &str, zones: &[&str], nodes: &[&str], c: Conditions) -> Ep {
        let strings = |l: &[&str]| l.iter().map(|s| s.to_string()).collect();
        Ep(
            name,
            c,
            Topology {
                node: Some(node.into()),
                for_zones: strings(zones),
                for_nodes: strings(nodes),
            },
        )
    }

    fn used(
        eps: &[Ep],
        policy: TrafficPolicy,
        node: &str,
        zone: Option<&str>,
    ) -> (Vec<&'static str>, Routing) {
        let client = ClientNode { name: node, zone };
        let (used, routing) = used_from_node(eps, |e| (e.1, &e.2), policy, client);
        (used.into_iter().map(|e| e.0).collect(), routing)
    }

    const READY: Conditions = Conditions::READY;
    const DRAINING: Conditions = Conditions {
        ready: false,
        serving: true,
        terminating: true,
    };
    const NOT_READY: Conditions = Conditions {
        ready: false,
        serving: false,
        terminating: false,
    };

    #[test]
    fn internal_traffic_policy_local_uses_the_nodes_endpoints_and_none_when_all_are_remote() {
        let eps = [
            ep("a", "node-a", &[], &[], READY),
            ep("b", "node-b", &[], &[], READY),
        ];
        assert_eq!(
            used(&eps, TrafficPolicy::Local, "node-a", None),
            (vec!["a"], Routing::Local)
        );
        assert_eq!(
            used(&eps, TrafficPolicy::Local, "node-c", None),
            (vec![], Routing::Local)
        );
        assert_eq!(
            used(&eps, TrafficPolicy::Cluster, "node-c", None),
            (vec!["a", "b"], Routing::Cluster)
        );
    }

    #[test]
    fn local_falls_back_to_the_nodes_terminating_endpoints_not_to_remote_ready_ones() {
        let eps = [
            ep("a", "node-a", &[], &[], DRAINING),
            ep("b", "node-b", &[], &[], READY),
        ];
        assert_eq!(
            used(&eps, TrafficPolicy::Local, "node-a", None),
            (vec!["a"], Routing::Local)
        );
        let eps = [
            ep("a", "node-a", &[], &[], NOT_READY),
            ep("b", "node-b", &[], &[], READY),
        ];
        assert_eq!(
            used(&eps, TrafficPolicy::Local, "node-a", None),
            (vec![], Routing::Local)
        );
    }

    #[test]
    fn zone_hints_apply_when_every_ready_endpoint_has_one_and_one_names_the_zone() {
        let eps = [
            ep("a", "node-a", &["zone-a"], &[], READY),
            ep("b", "node-b", &["zone-b"], &[], READY),
            ep("c", "node-c", &["zone-a"], &[], NOT_READY),
        ];
        let zone_a = Routing::SameZone("zone-a".into());
        assert_eq!(
            used(&eps, TrafficPolicy::Cluster, "node-x", Some("zone-a")),
            (vec!["a"], zone_a)
        );
        // A node in a zone no hint names, or without a zone label, uses every endpoint.
        let all = (vec!["a", "b"], Routing::Cluster);
        assert_eq!(used(&eps, TrafficPolicy::Cluster, "node-x", Some("zone-c")), all);
        assert_eq!(used(&eps, TrafficPolicy::Cluster, "node-x", None), all);
        // Topology is ignored under Local.
        assert_eq!(
            used(&eps, TrafficPolicy::Local, "node-b", Some("zone-a")).0,
            ["b"]
        );
    }

    #[test]
    fn hints_are_ignored_when_a_ready_endpoint_lacks_one_or_only_unready_ones_match() {
        let eps = [
            ep("a", "node-a", &["zone-a"], &[], READY),
            ep("b", "node-b", &[], &[], READY),
        ];
        assert_eq!(
            used(&eps, TrafficPolicy::Cluster, "n", Some("zone-a")).1,
            Routing::Cluster
        );
        let eps = [
            ep("a", "node-a", &["zone-a"], &[], NOT_READY),
            ep("b", "node-b", &["zone-b"], &[], READY),
        ];
        assert_eq!(
            used(&eps, TrafficPolicy::Cluster, "n", Some("zone-a")),
            (vec!["b"], Routing::Cluster)
        );
    }

    #[test]
    fn node_hints_come_before_zone_hints_and_fall_back_to_them() {
        let eps = [
            ep("a", "node-a", &["zone-a"], &["node-a"], READY),
            ep("b", "node-b", &["zone-a"], &["node-b"], READY),
        ];
        assert_eq!(
            used(&eps, TrafficPolicy::Cluster, "node-b", Some("zone-a")),
            (vec!["b"], Routing::SameNode)
        );
        assert_eq!(
            used(&eps, TrafficPolicy::Cluster, "node-c", Some("zone-a")),
            (vec!["a", "b"], Routing::SameZone("zone-a".into()))
        );
    }

    #[test]
    fn with_nothing_ready_anywhere_topology_gives_way_to_terminating_endpoints() {
        let eps = [
            ep("a", "node-a", &["zone-a"], &[], DRAINING),
            ep("b", "node-b", &["zone-b"], &[], DRAINING),
        ];
        assert_eq!(
            used(&eps, TrafficPolicy::Cluster, "node-a", Some("zone-a")),
            (vec!["a", "b"], Routing::Cluster)
        );
    }

    #[test]
    fn topology_comes_from_the_slice_endpoint() {
        let endpoint: Endpoint = serde_json::from_value(serde_json::json!({
            "addresses": ["10.244.1.3"], "nodeName": "node-a",
            "hints": {"forZones": [{"name": "zone-a"}], "forNodes": [{"name": "node-a"}]}
        }))
        .unwrap();
        let t = Topology::from_api(&endpoint);
        assert_eq!(t.node.as_deref(), Some("node-a"));
        assert_eq!(
            (t.for_zones, t.for_nodes),
            (vec!["zone-a".to_string()], vec!["node-a".to_string()])
        );
        assert_eq!(TrafficPolicy::from_api(Some("Local")), TrafficPolicy::Local);
        assert_eq!(TrafficPolicy::from_api(None), TrafficPolicy::Cluster);
    }
}
