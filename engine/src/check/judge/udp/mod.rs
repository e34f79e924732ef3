//! The live layers for a UDP Service port: network-policy, pod-network, service-proxy and
//! application judged from datagram probes instead of TCP connects.
//!
//! UDP has no handshake, so the rules differ from TCP's in one place: silence. An answer or an
//! ICMP error is proof; silence alone is not (a server may ignore a datagram it does not
//! understand), so it is judged with the destination's bound UDP sockets and NetworkPolicy, and
//! every finding says how sure it is ([`Certainty`]). Pure: reads only the evidence.

mod application;
mod network_policy;
mod pod_network;
mod reading;
mod service_proxy;

pub(super) use application::judge_udp_application;
pub(super) use network_policy::judge_udp_policy;
pub(super) use pod_network::judge_udp_pod_network;
pub(crate) use reading::{describe_udp, udp_endpoint_status};
pub(super) use service_proxy::udp_differential;

use crate::check::evidence::Evidence;

/// The live probes of this check are datagrams: the target is a UDP Service port.
pub(crate) fn probed_over_udp(ev: &Evidence) -> bool {
    let endpoints = match &ev.endpoints {
        crate::check::evidence::EndpointsFacts::Known(list) => list.as_slice(),
        _ => &[],
    };
    ev.cluster_ip.as_ref().is_some_and(|c| c.udp.is_some()) || endpoints.iter().any(|e| e.udp.is_some())
}

/// How sure a UDP finding is, said in the step so that a reader weighs it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Certainty {
    /// An answer or an ICMP error proves it.
    Certain,
    /// Silence agrees with it and the other evidence leaves no simpler explanation.
    Likely,
    /// Silence with evidence pointing both ways.
    CannotTell,
}

impl Certainty {
    pub(crate) fn text(self) -> &'static str {
        match self {
            Certainty::Certain => "certain",
            Certainty::Likely => "likely, not proven",
            Certainty::CannotTell => "cannot tell",
        }
    }
}
