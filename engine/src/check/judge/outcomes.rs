//! Each destination address's own verdict, by the rules the layers apply: the report lists
//! them, and a layer that fails for some addresses names that share, so "1 in N requests
//! fails" reads as exactly which endpoints fail, where, and how many connections that costs.

use netdiag_proto::TcpOutcome;

use super::context::Context;
use super::describe::is_blocked;
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
    destination == Destination::Service
        && e.pod.is_none()
        && matches!(&e.tcp, Fact::Known(o) if is_blocked(o))
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
    if e.udp.is_some() {
        return super::udp::udp_endpoint_status(e);
    }
    let connected = matches!(e.tcp, Fact::Known(TcpOutcome::Connected { .. }));
    match (&e.tcp, &e.policy) {
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
        tcp: match &e.tcp {
            Fact::Known(o) => super::describe::describe_tcp(o),
            Fact::Unknown(why) => format!("not probed: {why}"),
        },
        udp: e.udp.as_ref().map(|udp| match udp {
            Fact::Known(o) => super::udp::describe_udp(o),
            Fact::Unknown(why) => format!("not probed: {why}"),
        }),
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
