//! The `pod-network` layer's findings and their wording: what the connections (or datagrams) from
//! the source netns met, and what the datapath witnesses (path MTU, captures, the destination
//! node itself) say about where they died.

use std::fmt;
use std::net::IpAddr;

use netdiag_proto::{TcpOutcome, Transport};

use super::NoDestination;
use crate::check::evidence::{LiveFact, fmt_ip};
use crate::check::judge::describe::{connection_share, describe_tcp, endpoints_of, not_probed};
use crate::check::judge::outcomes::Certainty;
use crate::check::prose::NonEmpty;
use crate::check::report::Code;
use crate::cluster::{NamespacedName, ToolFailure};

/// Where a destination address is, seen from the source pod.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Place {
    SameNode(String),
    Node(String),
    /// An address no pod of the cluster holds, or on no known node.
    Outside,
}

impl fmt::Display for Place {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Place::SameNode(n) => write!(f, "same node {n}"),
            Place::Node(n) => write!(f, "node {n}"),
            Place::Outside => f.write_str("outside the cluster's pods"),
        }
    }
}

/// The source node as a sentence names it.
fn source(src: &Option<String>) -> &str {
    src.as_deref().unwrap_or("the source node")
}

/// The stretch of path a path MTU black hole lies on; `src` is the source node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Span {
    Nodes {
        src: Option<String>,
        node: String,
    },
    /// The measured address is on the source's own node.
    OnNode(String),
    /// The measured address is on no known node.
    ToAddress {
        src: Option<String>,
        ip: IpAddr,
    },
}

impl fmt::Display for Span {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Span::Nodes { src, node } => write!(f, "between {} and {node}", source(src)),
            Span::OnNode(node) => write!(f, "on {node}"),
            Span::ToAddress { src, ip } => write!(f, "between {} and {}", source(src), fmt_ip(*ip)),
        }
    }
}

/// One measured black hole: DF packets above `largest_passed_bytes` vanish on `span`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Hole {
    pub span: Span,
    pub largest_passed_bytes: u32,
    pub interface_mtu: u32,
}

/// Path MTU black holes on the path to endpoints whose connections succeed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct MtuFinding {
    pub holes: NonEmpty<Hole>,
    /// The address the first black hole was measured to.
    pub to: IpAddr,
    /// The endpoints behind a black hole (pod, or address), of `total`.
    pub behind: Vec<String>,
    pub total: usize,
}

impl fmt::Display for MtuFinding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut spans: Vec<String> = Vec::new();
        for span in self.holes.iter().map(|h| h.span.to_string()) {
            if !spans.contains(&span) {
                spans.push(span);
            }
        }
        let spans = spans.join(" and ");
        let (behind, total) = (self.behind.len(), self.total);
        if total <= 1 || behind == 0 {
            let to = format!(" to {}", fmt_ip(self.to));
            return write!(f, "{}: an MTU black hole {spans}", self.dropped(&to));
        }
        let share = if behind < total {
            format!(" — about {behind} in {total} new connections hang once a large packet is sent")
        } else {
            String::new()
        };
        write!(
            f,
            "{} ({}): {}: an MTU black hole {spans}{share}",
            endpoints_of(behind, total),
            self.behind.join(", "),
            self.dropped("")
        )
    }
}

impl MtuFinding {
    /// `packets > 1200 bytes{to} are silently dropped (pod MTU 1500)`, each span's size when the
    /// black holes differ.
    fn dropped(&self, to: &str) -> String {
        let size = |h: &Hole| (h.largest_passed_bytes, h.interface_mtu);
        let first = self.holes.first();
        if self.holes.iter().all(|h| size(h) == size(first)) {
            return format!(
                "packets > {} bytes{to} are silently dropped (pod MTU {})",
                first.largest_passed_bytes, first.interface_mtu
            );
        }
        let sizes: Vec<String> = self
            .holes
            .iter()
            .map(|h| format!("> {} bytes {}", h.largest_passed_bytes, h.span))
            .collect();
        format!(
            "packets {} are silently dropped (pod MTU {})",
            sizes.join(", "),
            first.interface_mtu
        )
    }
}

/// What the capture at a destination pod saw of the source's SYNs (`pod`: the pod's name, or
/// its address; `from`: the source pod's name).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum PacketReading {
    NeverArrived {
        from: String,
        pod: String,
    },
    /// A SYN-ACK left the pod; `completed`: the handshake finished on that connection.
    SynAckLeft {
        from: String,
        pod: String,
        completed: bool,
    },
    /// A RST (`icmp: None`) or an ICMP error left the pod, and the source never saw it.
    RefusalLeft {
        from: String,
        pod: String,
        icmp: Option<String>,
    },
    Unanswered {
        pod: String,
    },
}

impl fmt::Display for PacketReading {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PacketReading::NeverArrived { from, pod } => {
                write!(f, "the SYN from {from} never reached {pod}'s interface")
            }
            PacketReading::SynAckLeft { from, pod, completed } => {
                write!(f, "the SYN arrived at {pod}'s interface and a SYN-ACK left it, ")?;
                match completed {
                    true => f.write_str("and the handshake completed on that connection"),
                    false => write!(f, "but the reply never came back to {from}"),
                }
            }
            PacketReading::RefusalLeft { from, pod, icmp } => {
                let what = match icmp {
                    Some(icmp) => format!("an ICMP error ({icmp})"),
                    None => "a RST".to_string(),
                };
                write!(
                    f,
                    "the SYN arrived at {pod}'s interface and {what} left it, but {from} never saw it"
                )
            }
            PacketReading::Unanswered { pod } => {
                write!(f, "the SYN arrived at {pod}'s interface and nothing answered it")
            }
        }
    }
}

/// A destination address a datagram was sent to, where it is, and what the datagram met.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Probed {
    /// The endpoint's label.
    pub endpoint: String,
    pub place: Place,
    pub live: LiveFact,
}

/// `UDP to shop/payments-0 (10.244.2.2:5353) [node node-b]: no answer …`.
impl fmt::Display for Probed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "UDP to {} [{}]: {}",
            self.endpoint,
            self.place,
            not_probed(&self.live)
        )
    }
}

/// A TCP connection that timed out or met an unreachable, where its address is.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Dropped {
    /// The endpoint's label.
    pub endpoint: String,
    pub place: Place,
    pub outcome: TcpOutcome,
}

/// What the failing TCP addresses show about the path, claiming no more than the witnesses do.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum PathReading {
    /// The same node, or an address outside the cluster's pods: no cross-node claim.
    NotCrossNode,
    /// `answering` other endpoints on `node` connect: a drop of the failing `pods` or port.
    OthersOnNodeConnect {
        src: Option<String>,
        node: String,
        pods: Vec<String>,
        answering: usize,
    },
    /// `node` itself answers at `ip:port` (what it met: `outcome`): a drop of the pods or port.
    NodeAnswers {
        src: Option<String>,
        node: String,
        pods: Vec<String>,
        from: NamespacedName,
        ip: IpAddr,
        port: u16,
        outcome: TcpOutcome,
    },
    /// `node` itself does not answer either: the cross-node path is broken.
    PathBroken {
        src: Option<String>,
        node: String,
        ip: IpAddr,
        outcome: TcpOutcome,
    },
    /// No second witness on `node` tells the path from the pods.
    NoSecondWitness { node: String, pods: Vec<String> },
}

/// Why silence from a destination cannot be judged.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Unexplained {
    PolicyNotEvaluated(ToolFailure),
    /// A socket is bound to `port` and NetworkPolicy allows the flow.
    BoundAndAllowed(u16),
    SocketsUnknown,
    NothingBound(u16),
}

impl fmt::Display for Unexplained {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Unexplained::PolicyNotEvaluated(why) => write!(
                f,
                "NetworkPolicy could not be evaluated ({why}), so a policy drop cannot be ruled out"
            ),
            Unexplained::BoundAndAllowed(port) => write!(
                f,
                "the pod has a UDP socket bound to {port} and NetworkPolicy allows the flow: an application that \
                 ignores this datagram and a drop on the path look the same over UDP"
            ),
            Unexplained::SocketsUnknown => {
                f.write_str("the pod's sockets are unknown, so silence cannot be weighed")
            }
            Unexplained::NothingBound(port) => write!(f, "nothing is bound to {port}/UDP in the pod"),
        }
    }
}

/// A destination that sent no answer, and (when its datagram went out) why that is not judged.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Silence {
    pub probed: Probed,
    pub unexplained: Option<Unexplained>,
}

impl fmt::Display for Silence {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.probed.fmt(f)?;
        match &self.unexplained {
            Some(why) => write!(f, "; {why}"),
            None => Ok(()),
        }
    }
}

/// What the source node showed of the pod's connections to an address outside the cluster's
/// pods: the last stretch of path the cluster can witness.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct EgressReading {
    pub node: String,
    /// The interface the SYNs left by (else the node's route's), and the route's next hop and
    /// the node's own address there (when they left by the route's interface).
    pub interface: String,
    pub gateway: Option<IpAddr>,
    pub node_address: Option<IpAddr>,
    /// The address connected to.
    pub ip: IpAddr,
    pub seen: EgressSeen,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum EgressSeen {
    /// The watch covered the probe and none of the pod's SYNs left the node; `arrived` of them
    /// were seen coming in from the pod.
    NeverLeft { arrived: u32 },
    /// The SYNs left with `source` (`pod` is the pod's own address) and nothing came back while
    /// the probe waited, or only the ICMP error `icmp`.
    NoAnswer {
        source: IpAddr,
        pod: IpAddr,
        icmp: Option<String>,
    },
    /// The destination answered at the node (a SYN-ACK, or a reset) while the probe still
    /// waited, and the pod's connection timed out all the same: the answer was lost on the node.
    AnswerLost { source: IpAddr, reset: bool },
}

impl EgressReading {
    /// Whether the SYNs left a private pod address untranslated towards a next hop, for a public
    /// destination: nothing on the way there routes a private address back, so the node's SNAT
    /// is missing. Pod addresses a VPC routes, node and pod addresses of the cluster, and the
    /// node's own address (a host-network pod) are not this.
    pub fn untranslated(&self) -> bool {
        self.pod_address_unanswered()
            .is_some_and(|source| self.gateway.is_some() && is_private(source) && !is_private(self.ip))
    }

    /// Whether the pod's own address went untranslated, unanswered, to an address of a private
    /// network or on the node's own link (a node, an address of the pod network no pod holds, a
    /// host of the VPC): pods reach those without SNAT, so this is no connection leaving the
    /// cluster to hand off, and the path is judged as any lost connection's. Not for a
    /// host-network pod, whose address is the node's.
    pub fn stays_inside(&self) -> bool {
        self.pod_address_unanswered().is_some() && (self.gateway.is_none() || is_private(self.ip))
    }

    /// The pod's own address, when the SYNs left with it (it is not the node's) and met neither
    /// an answer nor an ICMP error.
    fn pod_address_unanswered(&self) -> Option<IpAddr> {
        match self.seen {
            EgressSeen::NoAnswer {
                source,
                pod,
                icmp: None,
            } if source == pod && Some(source) != self.node_address => Some(source),
            _ => None,
        }
    }
}

/// An address of a private network (RFC 1918, the shared CGNAT range, IPv6 unique-local), or one
/// that never leaves a host or link.
fn is_private(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => {
            let [a, b, ..] = v4.octets();
            v4.is_private() || v4.is_loopback() || v4.is_link_local() || (a == 100 && (64..128).contains(&b))
        }
        IpAddr::V6(v6) => {
            v6.is_loopback() || (v6.segments()[0] & 0xfe00) == 0xfc00 || (v6.segments()[0] & 0xffc0) == 0xfe80
        }
    }
}

impl fmt::Display for EgressReading {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let EgressReading {
            node,
            interface,
            gateway,
            seen,
            ..
        } = self;
        let via = gateway
            .map(|g| format!(" towards {}", fmt_ip(g)))
            .unwrap_or_default();
        match seen {
            EgressSeen::NeverLeft { arrived: 0 } => write!(
                f,
                "no SYN of the pod's reached {node} from its interface or left by {interface}: dropped before or on the node"
            ),
            EgressSeen::NeverLeft { arrived } => write!(
                f,
                "the pod's SYNs reached {node} ({arrived}) and none left by {interface}, its route to the address: dropped on the node"
            ),
            EgressSeen::NoAnswer { source, pod, icmp } => {
                let as_what = if source == pod {
                    format!("with the pod's own address {} (not translated)", fmt_ip(*source))
                } else {
                    format!("as {} (SNAT of {})", fmt_ip(*source), fmt_ip(*pod))
                };
                write!(f, "left {node} by {interface} {as_what}{via}; ")?;
                match icmp {
                    Some(icmp) => write!(f, "the answer was an ICMP error ({icmp})"),
                    None => f.write_str("no answer came back"),
                }
            }
            EgressSeen::AnswerLost { source, reset } => {
                let answer = if *reset { "a reset" } else { "a SYN-ACK" };
                write!(
                    f,
                    "left {node} by {interface} as {}{via} and {answer} came back there, but never reached the pod",
                    fmt_ip(*source)
                )
            }
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub(crate) enum PodNetworkFinding {
    NotApplicable(NoDestination),
    /// An ExternalName Service: the host behind it is not connected to.
    ExternalName {
        service: NamespacedName,
        host: String,
    },
    /// The first destination whose probe did not run or failed.
    NotProbed {
        endpoint: String,
        live: LiveFact,
    },
    /// `answered` of `total` addresses answer from `from`'s netns; over UDP `unbound` more have
    /// nothing bound (judged at application).
    Answer {
        transport: Transport,
        answered: usize,
        total: usize,
        from: NamespacedName,
        unbound: usize,
    },
    MtuBlackHole(MtuFinding),
    /// `failing` of `total` TCP connections time out or meet an unreachable although policy
    /// allows them; the first is `first`, read with the witnesses.
    PathFailed {
        first: Dropped,
        failing: usize,
        total: usize,
        path: PathReading,
        packet: Option<PacketReading>,
    },
    /// A TCP connection to an address outside the cluster's pods timed out, read at the source
    /// node's uplink.
    Egress {
        first: Dropped,
        reading: EgressReading,
    },
    /// `failing` of `total` datagrams meet an ICMP unreachable although policy allows them.
    DatagramRejected {
        first: Probed,
        failing: usize,
        total: usize,
    },
    /// `silent` of `total` destinations get no answer that tells the path from the application;
    /// the first is named (its evidence line says why it cannot be judged).
    Silent {
        first: Silence,
        silent: usize,
        total: usize,
    },
}

impl PodNetworkFinding {
    pub fn code(&self) -> Code {
        match self {
            PodNetworkFinding::NotApplicable(_) => Code::PodNetworkNotApplicable,
            PodNetworkFinding::ExternalName { .. } => Code::PodNetworkExternalName,
            PodNetworkFinding::NotProbed { .. } => Code::PodNetworkNotProbed,
            PodNetworkFinding::Answer { .. } => Code::PodNetworkAnswers,
            PodNetworkFinding::MtuBlackHole(_) => Code::PodNetworkMtuBlackHole,
            PodNetworkFinding::PathFailed { path, .. } => match path {
                PathReading::NotCrossNode => Code::PodNetworkConnectFailed,
                PathReading::OthersOnNodeConnect { .. } | PathReading::NodeAnswers { .. } => {
                    Code::PodNetworkPodDrops
                }
                PathReading::PathBroken { .. } => Code::PodNetworkPathBroken,
                PathReading::NoSecondWitness { .. } => Code::PodNetworkNoSecondWitness,
            },
            PodNetworkFinding::Egress { reading, .. } => match &reading.seen {
                EgressSeen::NeverLeft { .. } => Code::PodNetworkEgressNeverLeft,
                EgressSeen::AnswerLost { .. } => Code::PodNetworkEgressAnswerLost,
                EgressSeen::NoAnswer { .. } if reading.untranslated() => Code::PodNetworkEgressNotTranslated,
                EgressSeen::NoAnswer { .. } => Code::PodNetworkEgressNoAnswer,
            },
            PodNetworkFinding::DatagramRejected { .. } => Code::PodNetworkDatagramRejected,
            PodNetworkFinding::Silent { .. } => Code::PodNetworkSilent,
        }
    }
}

impl fmt::Display for PodNetworkFinding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PodNetworkFinding::NotApplicable(why) => why.fmt(f),
            PodNetworkFinding::ExternalName { service, host } => write!(
                f,
                "{service} is an ExternalName for {host}, outside the cluster's Services: this check does not connect to it"
            ),
            PodNetworkFinding::NotProbed { endpoint, live } => write!(
                f,
                "the pod network could not be probed: {endpoint}: {}",
                not_probed(live)
            ),
            PodNetworkFinding::Answer {
                transport: Transport::Tcp,
                answered,
                total,
                from,
                ..
            } => write!(
                f,
                "{answered}/{total} destination addresses answer from {from}'s netns"
            ),
            PodNetworkFinding::Answer {
                answered,
                total,
                from,
                unbound,
                ..
            } => {
                write!(
                    f,
                    "{answered}/{total} destination addresses answer a datagram from {from}'s netns"
                )?;
                match unbound {
                    0 => Ok(()),
                    n => write!(f, "; {n} with nothing bound to the port (judged at application)"),
                }
            }
            PodNetworkFinding::MtuBlackHole(mtu) => mtu.fmt(f),
            PodNetworkFinding::PathFailed {
                first,
                failing,
                total,
                path,
                packet,
            } => {
                path_failed(f, first, *failing, *total, path)?;
                match packet {
                    Some(packet) => write!(f, "; packet witness: {packet}"),
                    None => Ok(()),
                }
            }
            PodNetworkFinding::Egress { first, reading } => {
                let what = describe_tcp(&first.outcome);
                write!(f, "TCP to {} {what}: {reading}", first.endpoint)?;
                match &reading.seen {
                    EgressSeen::NoAnswer { .. } if reading.untranslated() => f.write_str(
                        ": unless the network beyond routes the pod CIDR back, the node's SNAT (masquerade) for traffic leaving the cluster is missing",
                    ),
                    EgressSeen::NoAnswer { .. } => write!(
                        f,
                        ": nothing on the node dropped it; the fault is beyond {} (the network past {}, or the host itself), outside the cluster's reach",
                        reading.node, reading.interface
                    ),
                    _ => Ok(()),
                }
            }
            PodNetworkFinding::DatagramRejected {
                first,
                failing,
                total,
            } => write!(
                f,
                "{} {} although NetworkPolicy allows it: {}{} ({})",
                endpoints_of(*failing, *total),
                if *failing == 1 { "fails" } else { "fail" },
                first,
                connection_share(*failing, *total),
                Certainty::Certain.text()
            ),
            PodNetworkFinding::Silent { first, silent, total } => write!(
                f,
                "{} {} no answer, and UDP silence alone does not tell a drop on the path from an application that does not answer ({}): {}",
                endpoints_of(*silent, *total),
                if *silent == 1 { "gets" } else { "get" },
                Certainty::CannotTell.text(),
                first.probed.endpoint
            ),
        }
    }
}

/// The failing TCP addresses, read with the path's witnesses.
fn path_failed(
    f: &mut fmt::Formatter<'_>,
    first: &Dropped,
    failing: usize,
    total: usize,
    path: &PathReading,
) -> fmt::Result {
    let count = if total > 1 {
        format!(" ({failing}/{total} endpoints)")
    } else {
        String::new()
    };
    let share = connection_share(failing, total);
    let what = describe_tcp(&first.outcome);
    match path {
        PathReading::NotCrossNode => write!(
            f,
            "TCP to {} [{}] {what} although NetworkPolicy allows it{count}{share}",
            first.endpoint, first.place
        ),
        PathReading::OthersOnNodeConnect {
            src,
            node,
            pods,
            answering,
        } => write!(
            f,
            "{} fail: {} on {node} {what} while {answering} other endpoint(s) on {node} connect, and NetworkPolicy allows it: a drop of that pod or port, not the path between {} and {node}{share}",
            endpoints_of(failing, total),
            pods.join(", "),
            source(src)
        ),
        PathReading::NodeAnswers {
            src,
            node,
            pods,
            from,
            ip,
            port,
            outcome,
        } => write!(
            f,
            "TCP to {} on {node} {what} although NetworkPolicy allows it{count}, while {node} itself answers from {from} ({}:{port} {}): a drop of that pod or port on {node}, not the path between {} and {node}{share}",
            pods.join(", "),
            fmt_ip(*ip),
            // What answered, not how fast: the summary must read the same on every run (the
            // round trip is in the witness's evidence).
            match outcome {
                TcpOutcome::Connected { .. } => "connects".to_string(),
                other => describe_tcp(other),
            },
            source(src)
        ),
        // Not what each met: a cut path times out, or a router answers "unreachable" once its
        // neighbour entry has failed, and the summary must read the same on every run of the same
        // state (each outcome is in the evidence).
        PathReading::PathBroken { src, node, ip, .. } => {
            let src = source(src);
            write!(
                f,
                "TCP from {src} to pods on {node} fails{count} and {node} itself ({}) does not answer either: the cross-node path between {src} and {node} is broken{share}",
                fmt_ip(*ip),
            )
        }
        PathReading::NoSecondWitness { node, pods } => write!(
            f,
            "TCP to {} on {node} {what} although NetworkPolicy allows it{count}; no second witness tells whether the path to {node} or that pod drops it{share}",
            pods.join(", ")
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn black_holes_of_different_sizes_say_each_span_and_share() {
        let hole = |node: &str, passed| Hole {
            span: Span::Nodes {
                src: Some("node-a".into()),
                node: node.into(),
            },
            largest_passed_bytes: passed,
            interface_mtu: 1500,
        };
        let mtu = MtuFinding {
            holes: NonEmpty::from_vec(vec![hole("node-b", 1200), hole("node-c", 1400)]).unwrap(),
            to: "10.244.2.14".parse().unwrap(),
            behind: vec!["shop/payments-1".into(), "shop/payments-2".into()],
            total: 3,
        };
        assert_eq!(
            mtu.to_string(),
            "2 of 3 endpoints (shop/payments-1, shop/payments-2): packets > 1200 bytes between node-a \
             and node-b, > 1400 bytes between node-a and node-c are silently dropped (pod MTU 1500): \
             an MTU black hole between node-a and node-b and between node-a and node-c — about 2 in 3 \
             new connections hang once a large packet is sent"
        );
    }

    #[test]
    fn a_path_failure_without_a_second_witness_claims_no_broken_path() {
        let finding = PodNetworkFinding::PathFailed {
            first: Dropped {
                endpoint: "shop/payments-1 (10.244.2.14:8080)".into(),
                place: Place::Node("node-b".into()),
                outcome: TcpOutcome::Timeout { after_ms: 1000 },
            },
            failing: 1,
            total: 1,
            path: PathReading::NoSecondWitness {
                node: "node-b".into(),
                pods: vec!["shop/payments-1 (10.244.2.14:8080)".into()],
            },
            packet: Some(PacketReading::Unanswered {
                pod: "payments-1".into(),
            }),
        };
        assert_eq!(
            finding.to_string(),
            "TCP to shop/payments-1 (10.244.2.14:8080) on node-b timed out after 1000 ms although \
             NetworkPolicy allows it; no second witness tells whether the path to node-b or that pod \
             drops it; packet witness: the SYN arrived at payments-1's interface and nothing answered it"
        );
        assert_eq!(finding.code(), Code::PodNetworkNoSecondWitness);
    }

    #[test]
    fn silence_names_the_first_silent_endpoint_and_its_line_says_why_it_cannot_be_judged() {
        let first = Silence {
            probed: Probed {
                endpoint: "shop/payments-0 (10.244.1.14:5353)".into(),
                place: Place::SameNode("node-a".into()),
                live: LiveFact::Udp(crate::check::evidence::Fact::Known(
                    netdiag_proto::UdpOutcome::Silent { after_ms: 1000 },
                )),
            },
            unexplained: Some(Unexplained::SocketsUnknown),
        };
        assert_eq!(
            first.to_string(),
            "UDP to shop/payments-0 (10.244.1.14:5353) [same node node-a]: no answer and no ICMP error \
             within 1000 ms; the pod's sockets are unknown, so silence cannot be weighed"
        );
        let finding = PodNetworkFinding::Silent {
            first,
            silent: 1,
            total: 2,
        };
        assert_eq!(
            finding.to_string(),
            "1 of 2 endpoints gets no answer, and UDP silence alone does not tell a drop on the path \
             from an application that does not answer (cannot tell): shop/payments-0 (10.244.1.14:5353)"
        );
    }
}
