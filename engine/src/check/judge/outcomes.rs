//! Each destination address's own verdict, by the rules the layers apply: the report lists
//! them, and a layer that fails for some addresses names that share, so "1 in N requests
//! fails" reads as exactly which endpoints fail, where, and how many connections that costs.
//!
//! Over UDP the rules differ in one place: silence. An answer or an ICMP error is proof; silence
//! alone is not (a server may ignore a datagram it does not understand), so it is read with the
//! destination's bound UDP sockets and NetworkPolicy, and every UDP finding says how sure it is
//! ([`Certainty`]).

use netdiag_proto::{TcpOutcome, Transport, UdpOutcome};

use super::context::Context;
use super::describe::{describe_live, is_blocked};
use super::findings::Unexplained;
use super::sockets::{ListenerFinding, listener_finding};
use super::witnesses::black_hole_behind;
use crate::check::evidence::*;
use crate::check::report::{EndpointReport, Layer, Status};

/// Where one destination address stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum EndpointStatus {
    Pass,
    Fail(Layer),
    Undetermined,
}

/// A Service endpoint that no pod holds and that does not answer: a stale or hand-written
/// EndpointSlice entry, not a network fault.
pub(crate) fn is_stale(destination: Destination, e: &EndpointFacts) -> bool {
    destination == Destination::Service && e.pod.is_none() && e.live.tcp_outcome().is_some_and(is_blocked)
}

/// The first layer at which `e` fails, if it does. A connection that succeeds behind an MTU
/// black hole fails at pod-network: its first large packet vanishes.
pub(crate) fn endpoint_status(
    destination: Destination,
    path_mtu: &[PathMtuWitness],
    e: &EndpointFacts,
) -> EndpointStatus {
    if is_stale(destination, e) {
        return EndpointStatus::Fail(Layer::Endpoints);
    }
    let tcp = match &e.live {
        LiveFact::Tcp(tcp) => tcp,
        LiveFact::Udp(_) => return udp_reading(e).0,
    };
    let connected = matches!(tcp, Fact::Known(TcpOutcome::Connected { .. }));
    match (tcp, &e.policy) {
        _ if connected && black_hole_behind(path_mtu, e).is_some() => EndpointStatus::Fail(Layer::PodNetwork),
        _ if connected => EndpointStatus::Pass,
        (_, PolicyCheck::Denied { .. }) => EndpointStatus::Fail(Layer::NetworkPolicy),
        (Fact::Known(o), PolicyCheck::NotEvaluated(_)) if is_blocked(o) => EndpointStatus::Undetermined,
        (Fact::Known(o), _) if is_blocked(o) => EndpointStatus::Fail(Layer::PodNetwork),
        (Fact::Known(TcpOutcome::Refused { .. }), _) => EndpointStatus::Fail(Layer::Application),
        _ => EndpointStatus::Undetermined,
    }
}

/// The report's line for one destination address.
pub(crate) fn endpoint_report(cx: &Context, e: &EndpointFacts) -> EndpointReport {
    let path_mtu = &cx.witnesses.path_mtu;
    let (status, layer) = match endpoint_status(cx.destination, path_mtu, e) {
        EndpointStatus::Pass => (Status::Pass, None),
        EndpointStatus::Fail(layer) => (Status::Fail, Some(layer)),
        EndpointStatus::Undetermined => (Status::Undetermined, None),
    };
    EndpointReport {
        address: match e.port {
            Some(port) => format!("{}:{port}", fmt_ip(e.ip)),
            None => fmt_ip(e.ip),
        },
        pod: e.pod.as_ref().map(|p| p.key().to_string()),
        node: e.node().map(str::to_string),
        status,
        failing_layer: layer,
        tcp: match &e.live {
            LiveFact::Tcp(_) => reported(&e.live),
            // A datagram was sent, so no connect was; nothing was sent where the port is unknown.
            LiveFact::Udp(_) if e.port.is_some() => UDP_NOT_TCP.into(),
            LiveFact::Udp(_) => reported(&e.live),
        },
        udp: e.live.udp().map(|_| reported(&e.live)),
        path_mtu: black_hole_behind(path_mtu, e).map(|h| {
            format!(
                "packets > {} bytes are silently dropped (pod MTU {}): an MTU black hole {}",
                h.largest_passed_bytes,
                h.interface_mtu,
                h.between(cx.source_node())
            )
        }),
    }
}

/// The report's TCP column for an address probed with datagrams.
const UDP_NOT_TCP: &str = "not probed: a UDP port: probed with datagrams, not TCP";

/// A live fact as the report's endpoint table shows it.
fn reported(live: &LiveFact) -> String {
    match live.not_probed() {
        Some(why) => format!("not probed: {why}"),
        None => describe_live(live),
    }
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

/// Whether the destination pod has a UDP socket bound to `port` that a datagram to its pod IP
/// reaches (not loopback only, of a family that takes the address); `None` when its sockets are
/// unknown. The same reading of the sockets as the application layer's finding.
pub(crate) fn bound(e: &EndpointFacts) -> Option<bool> {
    let port = e.port?;
    match listener_finding(e, port, Transport::Udp) {
        ListenerFinding::Unknown(_) => None,
        ListenerFinding::ListensAnyway => Some(true),
        _ => Some(false),
    }
}

/// The datagram probe's outcome, when it ran.
pub(crate) fn outcome(e: &EndpointFacts) -> Option<&UdpOutcome> {
    e.live.udp_outcome()
}

/// Nothing bound to the port: refused, or silent where the pod's sockets show nothing bound.
pub(crate) fn nothing_bound(e: &EndpointFacts) -> bool {
    match outcome(e) {
        Some(UdpOutcome::Refused { .. }) => true,
        Some(UdpOutcome::Silent { .. }) => bound(e) == Some(false) && !e.policy.is_denied(),
        _ => false,
    }
}

/// Dropped on the way or rejected: silence or an ICMP unreachable other than port-unreachable.
pub(crate) fn not_delivered(o: &UdpOutcome) -> bool {
    matches!(o, UdpOutcome::Silent { .. } | UdpOutcome::Unreachable { .. })
}

/// Where one address stands over UDP, and how sure that is.
pub(crate) fn udp_reading(e: &EndpointFacts) -> (EndpointStatus, Certainty) {
    use Certainty::*;
    let Some(o) = outcome(e) else {
        return (EndpointStatus::Undetermined, CannotTell);
    };
    let denied = e.policy.is_denied();
    let evaluated = !matches!(e.policy, PolicyCheck::NotEvaluated(_));
    match o {
        UdpOutcome::Answered { .. } => (EndpointStatus::Pass, Certain),
        // A rejection the policy explains is proof; silence or a refusal only agrees with it.
        UdpOutcome::Unreachable { .. } if denied => (EndpointStatus::Fail(Layer::NetworkPolicy), Certain),
        _ if denied => (EndpointStatus::Fail(Layer::NetworkPolicy), Likely),
        UdpOutcome::Unreachable { .. } if evaluated => (EndpointStatus::Fail(Layer::PodNetwork), Certain),
        UdpOutcome::Refused { .. } => (EndpointStatus::Fail(Layer::Application), Certain),
        // Nothing bound, so nothing can answer: the pod's sockets prove the application layer at
        // fault whether or not its kernel's port-unreachable came back (the kernel rate-limits
        // ICMP errors, so a check repeated within seconds meets silence where it met a refusal).
        UdpOutcome::Silent { .. } if evaluated && bound(e) == Some(false) => {
            (EndpointStatus::Fail(Layer::Application), Certain)
        }
        _ => (EndpointStatus::Undetermined, CannotTell),
    }
}

/// Why a silent address cannot be judged.
pub(crate) fn silence_unexplained(e: &EndpointFacts) -> Unexplained {
    let port = e.port.unwrap_or_default();
    match (&e.policy, bound(e)) {
        (PolicyCheck::NotEvaluated(why), _) => Unexplained::PolicyNotEvaluated(why.clone()),
        (_, Some(true)) => Unexplained::BoundAndAllowed(port),
        (_, None) => Unexplained::SocketsUnknown,
        (_, Some(false)) => Unexplained::NothingBound(port),
    }
}
