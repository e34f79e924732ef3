//! What every layer reads, derived once from the evidence before the walk: the source pod, the
//! Service, the destination addresses traffic goes to, and whether DNS is blocked by policy.

use std::ops::Deref;

use netdiag_proto::Transport;

use super::dns::{DnsBlocked, dns_blocked_by_policy};
use crate::check::evidence::*;
use crate::cluster::endpoints::in_service;

/// The evidence, and the facts the layers share. Derefs to the evidence.
pub(crate) struct Context<'a> {
    ev: &'a Evidence,
    /// The source pod, when it was found.
    pub source_pod: Option<&'a PodFacts>,
    /// The target Service, when the target is one that exists.
    pub target_service: Option<&'a ServiceSpecFacts>,
    /// The destination addresses new connections go to: a Service's endpoints as kube-proxy
    /// picks them (ready; else serving-and-terminating), or the one pod or address.
    pub live: Vec<&'a EndpointFacts>,
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
        let live = match ev.destination {
            Destination::Service => in_service(all, |e| e.conditions),
            _ => all.iter().collect(),
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
            dns_blocked: dns_blocked_by_policy(ev),
        }
    }

    pub fn source_node(&self) -> Option<&'a str> {
        self.source_pod.and_then(|p| p.node.as_deref())
    }

    pub fn is_external_name(&self) -> bool {
        self.target_service.is_some_and(|s| s.external_name.is_some())
    }
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
