//! What one destination address's datagram probe shows, read with its bound UDP sockets and
//! NetworkPolicy: the per-address status the layers and the endpoint table share.

use netdiag_proto::{Transport, UdpOutcome};

use super::Certainty;
use crate::check::evidence::*;
use crate::check::judge::describe::{describe_unreachable, fmt_us};
use crate::check::judge::outcomes::EndpointStatus;
use crate::check::judge::sockets::{ListenerFinding, listener_finding};
use crate::check::report::Layer;

pub(crate) fn describe_udp(outcome: &UdpOutcome) -> String {
    match outcome {
        UdpOutcome::Answered { rtt_us, bytes } => format!("answered ({bytes} bytes in {})", fmt_us(*rtt_us)),
        UdpOutcome::Refused { .. } => "refused (ICMP port unreachable)".into(),
        UdpOutcome::Unreachable { reason, detail, .. } => describe_unreachable(*reason, detail),
        UdpOutcome::Silent { after_ms } => format!("no answer and no ICMP error within {after_ms} ms"),
        UdpOutcome::Error { detail } => format!("probe error: {detail}"),
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
    e.udp.as_ref().and_then(Fact::known)
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

/// The first layer at which `e` fails over UDP, if it does.
pub(crate) fn udp_endpoint_status(e: &EndpointFacts) -> EndpointStatus {
    udp_reading(e).0
}

/// Why a silent address cannot be judged: the sentence for its evidence line.
pub(crate) fn silence_unexplained(e: &EndpointFacts) -> String {
    let port = e.port.unwrap_or_default();
    match (&e.policy, bound(e)) {
        (PolicyCheck::NotEvaluated(why), _) => {
            format!("NetworkPolicy could not be evaluated ({why}), so a policy drop cannot be ruled out")
        }
        (_, Some(true)) => format!(
            "the pod has a UDP socket bound to {port} and NetworkPolicy allows the flow: an application that \
             ignores this datagram and a drop on the path look the same over UDP"
        ),
        (_, None) => "the pod's sockets are unknown, so silence cannot be weighed".into(),
        (_, Some(false)) => format!("nothing is bound to {port}/UDP in the pod"),
    }
}
