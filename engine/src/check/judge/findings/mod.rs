//! What the layers found, as values: the layer judges decide on these, and each sentence a
//! step shows is worded here, once, beside the stable [`Code`] the JSON report carries. Pure.

use std::fmt;

use crate::check::report::{Code, Summary};

mod application;
mod dns;
mod endpoints;
mod intermittent;
mod network_policy;
mod pod_network;
mod service;
mod service_proxy;
mod source;

pub(crate) use application::{ApplicationFinding, Refusal};
pub(crate) use dns::{DnsDenials, DnsFinding, ServerFailure, Via};
pub(crate) use endpoints::{EndpointsFinding, Listed, NoEndpoints};
pub(crate) use intermittent::{Flaky, IntermittentFinding};
pub(crate) use network_policy::{DeniedHead, Enforcement, NetworkPolicyFinding, Unenforced};
pub(crate) use pod_network::{
    Dropped, EgressReading, EgressSeen, Hole, MtuFinding, PacketReading, PathReading, Place,
    PodNetworkFinding, Probed, Silence, Span, Unexplained,
};
pub(crate) use service::ServiceFinding;
#[cfg(test)]
pub(crate) use service::ServicePort;
pub(crate) use service_proxy::{
    Alike, NoVip, Programmed, RulesReading, ServiceProxyFinding, Vip, VipOutcome,
};
pub(crate) use source::SourceFinding;

/// One layer's finding.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Finding {
    Source(SourceFinding),
    Dns(DnsFinding),
    Service(ServiceFinding),
    Endpoints(EndpointsFinding),
    NetworkPolicy(NetworkPolicyFinding),
    PodNetwork(PodNetworkFinding),
    ServiceProxy(ServiceProxyFinding),
    Application(ApplicationFinding),
    /// The Service or endpoints layer, not judged because DNS is blocked by NetworkPolicy
    /// first, with the fault it would also report.
    BehindBlockedDns(Box<Finding>),
    /// The Service layer's finding about the Service that the ExternalName Service `alias`
    /// (whose `externalName` is `host`) names.
    ThroughAlias {
        alias: crate::cluster::NamespacedName,
        host: String,
        finding: Box<Finding>,
    },
}

impl Finding {
    /// Its stable code; a layer behind blocked DNS keeps the code of what it found.
    pub fn code(&self) -> Code {
        match self {
            Finding::Source(f) => f.code(),
            Finding::Dns(f) => f.code(),
            Finding::Service(f) => f.code(),
            Finding::Endpoints(f) => f.code(),
            Finding::NetworkPolicy(f) => f.code(),
            Finding::PodNetwork(f) => f.code(),
            Finding::ServiceProxy(f) => f.code(),
            Finding::Application(f) => f.code(),
            Finding::BehindBlockedDns(f) => f.code(),
            Finding::ThroughAlias { finding, .. } => finding.code(),
        }
    }

    /// The report's summary: the sentence and the code.
    pub fn summary(&self) -> Summary {
        Summary::coded(self.code(), self.to_string())
    }
}

impl fmt::Display for Finding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Finding::Source(x) => x.fmt(f),
            Finding::Dns(x) => x.fmt(f),
            Finding::Service(x) => x.fmt(f),
            Finding::Endpoints(x) => x.fmt(f),
            Finding::NetworkPolicy(x) => x.fmt(f),
            Finding::PodNetwork(x) => x.fmt(f),
            Finding::ServiceProxy(x) => x.fmt(f),
            Finding::Application(x) => x.fmt(f),
            Finding::BehindBlockedDns(x) => write!(
                f,
                "not judged (DNS is blocked by NetworkPolicy first, judged at network-policy); also: {x}"
            ),
            Finding::ThroughAlias { alias, host, finding } => {
                write!(f, "via ExternalName {alias} ({host}): {finding}")
            }
        }
    }
}

macro_rules! into_finding {
    ($($layer:ident($ty:ty)),*) => {
        $(impl From<$ty> for Finding {
            fn from(f: $ty) -> Self {
                Finding::$layer(f)
            }
        })*
    };
}

into_finding!(
    Source(SourceFinding),
    Dns(DnsFinding),
    Service(ServiceFinding),
    Endpoints(EndpointsFinding),
    NetworkPolicy(NetworkPolicyFinding),
    PodNetwork(PodNetworkFinding),
    ServiceProxy(ServiceProxyFinding),
    Application(ApplicationFinding)
);

/// Why a layer that judges the destination addresses has none to judge.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum NoDestination {
    ExternalName,
    /// No address to send to (no endpoints, or no pod address).
    NoAddress,
}

impl fmt::Display for NoDestination {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            NoDestination::ExternalName => "not applicable: an ExternalName Service",
            NoDestination::NoAddress => "not applicable: no destination address",
        })
    }
}
