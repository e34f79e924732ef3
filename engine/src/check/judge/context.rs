//! What every layer reads, derived once from the evidence before the walk: the source pod, the
//! Service, the destination addresses traffic goes to, and whether DNS is blocked by policy.

use std::ops::Deref;

use netdiag_proto::Transport;

use super::dns::{DnsBlocked, dns_blocked_by_policy};
use crate::check::evidence::*;
use crate::cluster::ToolFailure;
use crate::cluster::endpoints::{ClientNode, Routing, TrafficPolicy, in_service, used_from_node};

/// The evidence, and the facts the layers share. Derefs to the evidence.
pub(crate) struct Context<'a> {
    ev: &'a Evidence,
    /// The source pod, when it was found.
    pub source_pod: Option<&'a PodFacts>,
    /// The target Service, when the target is one that exists.
    pub target_service: Option<&'a ServiceSpecFacts>,
    /// The destination addresses new connections from the source go to: a Service's endpoints
    /// as kube-proxy on the source's node picks them ([`used_from_node`]), or the one pod or
    /// address.
    pub live: Vec<&'a EndpointFacts>,
    /// A Service's endpoints as kube-proxy picks them cluster-wide (ready; else
    /// serving-and-terminating): what any node's rules may translate the VIP to.
    pub all_live: Vec<&'a EndpointFacts>,
    /// Why the source's node uses the endpoints in `live`; `None` unless the target is a
    /// Service and the source's node is known.
    pub route: Option<NodeRoute<'a>>,
    /// When the pod's DNS queries time out because NetworkPolicy denies them: why.
    pub dns_blocked: Option<DnsBlocked>,
    /// What the live probes were: TCP connects, or datagrams to a UDP Service port. The plan
    /// chose it ([`LiveProbe`](crate::check::plan::LiveProbe)); every live fact carries it.
    pub transport: Transport,
}

impl<'a> Context<'a> {
    pub fn new(ev: &'a Evidence) -> Self {
        let all = match &ev.endpoints {
            EndpointsFacts::Known(list) => list.as_slice(),
            _ => &[],
        };
        let all_live = match ev.destination {
            Destination::Service => in_service(all, |e| e.conditions),
            _ => all.iter().collect(),
        };
        let route = node_route(ev, all);
        let live = match &route {
            Some(route) => route.used.clone(),
            None => all_live.clone(),
        };
        Context {
            ev,
            source_pod: match &ev.source {
                SourceFacts::Found { pod, .. } => Some(pod),
                _ => None,
            },
            target_service: match &ev.service {
                ServiceFacts::Found(svc) => Some(svc),
                _ => None,
            },
            transport: live_transport(ev, all),
            live,
            all_live,
            route,
            dns_blocked: dns_blocked_by_policy(ev),
        }
    }

    pub fn source_node(&self) -> Option<&'a str> {
        self.source_pod.and_then(|p| p.node.as_deref())
    }

    /// The node whose Service rules translate the connection: the source's, or for a node port
    /// the node whose address it is.
    pub fn translating_node(&self) -> Option<&'a str> {
        match self.target_service.and_then(|s| s.entry.as_ref()) {
            Some(ServiceEntry::NodePort { node, .. }) => Some(node),
            _ => self.source_node(),
        }
    }

    pub fn is_external_name(&self) -> bool {
        self.target_service.is_some_and(|s| s.external_name.is_some())
    }
}

/// Which endpoints kube-proxy on the source's node sends the Service's traffic to, and why.
#[derive(Debug, Clone)]
pub(crate) struct NodeRoute<'a> {
    pub node: &'a str,
    pub routing: Routing,
    pub used: Vec<&'a EndpointFacts>,
    /// Why the node's zone is not known, when endpoints carry zone hints: they were then taken
    /// as kube-proxy takes them on a node without a zone (ignored).
    pub zone_unread: Option<&'a ToolFailure>,
}

fn node_route<'a>(ev: &'a Evidence, all: &'a [EndpointFacts]) -> Option<NodeRoute<'a>> {
    let ServiceFacts::Found(svc) = &ev.service else {
        return None;
    };
    let SourceFacts::Found { pod, .. } = &ev.source else {
        return None;
    };
    let node = pod.node.as_deref()?;
    let (zone, zone_unread) = match &ev.source_zone {
        Some(Fact::Known(zone)) => (zone.as_deref(), None),
        Some(Fact::Unknown(failure)) => (None, Some(failure)),
        None => (None, None),
    };
    // Traffic entering by a node port or a LoadBalancer address goes to the cluster-wide
    // endpoints whatever internalTrafficPolicy says, chosen by the node that translates it
    // (a node port's own: its zone is not read, so hints count as on a node without one).
    let (policy, node, zone) = match &svc.entry {
        None => (svc.internal_traffic_policy, node, zone),
        Some(ServiceEntry::NodePort { node: entered, .. }) => {
            (TrafficPolicy::Cluster, entered.as_str(), None)
        }
        Some(ServiceEntry::LoadBalancer { .. }) => (TrafficPolicy::Cluster, node, zone),
    };
    let client = ClientNode { name: node, zone };
    let (used, routing) = used_from_node(all, |e| (e.conditions, &e.topology), policy, client);
    Some(NodeRoute {
        node,
        routing,
        used,
        zone_unread,
    })
}

/// The transport of the check's live facts (TCP when it has none).
fn live_transport(ev: &Evidence, endpoints: &[EndpointFacts]) -> Transport {
    let cluster_ip = ev.cluster_ip.as_ref().map(|c| &c.live);
    cluster_ip
        .into_iter()
        .chain(endpoints.iter().map(|e| &e.live))
        .map(LiveFact::transport)
        .next()
        .unwrap_or(Transport::Tcp)
}

impl Deref for Context<'_> {
    type Target = Evidence;

    fn deref(&self) -> &Evidence {
        self.ev
    }
}
