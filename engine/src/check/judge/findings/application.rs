//! The `application` layer's findings and their wording, with what the destination pod's
//! sockets say about a refusal: one wording for a TCP reset and a UDP port-unreachable.

use std::fmt;

use netdiag_proto::Transport;

use super::NoDestination;
use crate::check::evidence::fmt_ip;
use crate::check::judge::describe::{connection_share, endpoints_of};
use crate::check::judge::sockets::ListenerFinding;
use crate::check::prose::NonEmpty;
use crate::check::report::Code;

/// A destination that refused the connection (TCP) or has nothing bound to the port (UDP),
/// with what its sockets say about it.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Refusal {
    /// The endpoint's label (`shop/payments-0 (10.244.2.2:8080)`).
    pub endpoint: String,
    pub port: u16,
    pub sockets: ListenerFinding,
}

impl Refusal {
    /// What the sockets say, as the clause after "refuses the connection: " (TCP) or "has
    /// nothing bound to the port: " (UDP).
    pub fn why(&self, transport: Transport) -> Why<'_> {
        Why {
            sockets: &self.sockets,
            port: self.port,
            transport,
        }
    }
}

/// The wording of a [`ListenerFinding`] for one port and transport.
pub(crate) struct Why<'a> {
    sockets: &'a ListenerFinding,
    port: u16,
    transport: Transport,
}

impl fmt::Display for Why<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let port = self.port;
        let tcp = self.transport == Transport::Tcp;
        match self.sockets {
            ListenerFinding::Unknown(reason) if tcp => {
                write!(f, "its listening sockets are unknown ({reason})")
            }
            ListenerFinding::Unknown(reason) => write!(f, "its sockets are unknown ({reason})"),
            ListenerFinding::LoopbackOnly(ip) if tcp => {
                write!(f, "it listens on {}:{port} only, not on its pod IP", fmt_ip(*ip))
            }
            ListenerFinding::LoopbackOnly(ip) => write!(
                f,
                "it is bound to {}:{port}/UDP only, not on its pod IP",
                fmt_ip(*ip)
            ),
            ListenerFinding::NotOnPort(others) if others.is_empty() && tcp => {
                write!(f, "nothing in the pod listens on any TCP port (wanted {port})")
            }
            ListenerFinding::NotOnPort(others) if others.is_empty() => {
                write!(f, "nothing in the pod is bound to any UDP port (wanted {port})")
            }
            ListenerFinding::NotOnPort(others) if tcp => write!(
                f,
                "nothing in the pod listens on {port}; it listens on {}",
                others.join(", ")
            ),
            ListenerFinding::NotOnPort(others) => write!(
                f,
                "nothing in the pod is bound to {port}/UDP; it has UDP sockets on {}",
                others.join(", ")
            ),
            ListenerFinding::OtherFamilyOnly(bound) if tcp => write!(
                f,
                "it listens on {port} only on {}, which takes no connections of this address family",
                bound.join(", ")
            ),
            ListenerFinding::OtherFamilyOnly(bound) => write!(
                f,
                "it is bound to {port}/UDP only on {}, which takes no datagrams of this address family",
                bound.join(", ")
            ),
            ListenerFinding::ListensAnyway if tcp => write!(
                f,
                "yet it listens on {port}: a reset from the path (a REJECT rule) or a full accept queue, not a missing listener"
            ),
            ListenerFinding::ListensAnyway => write!(
                f,
                "yet a socket is bound to {port}/UDP: an ICMP port-unreachable from the path (a REJECT rule), not a missing socket"
            ),
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub(crate) enum ApplicationFinding {
    NotApplicable(NoDestination),
    /// Destinations refuse the connection (TCP) or have nothing bound (UDP), of `total`; the
    /// first one is named, and its sockets give the code.
    Refused {
        transport: Transport,
        refused: NonEmpty<Refusal>,
        total: usize,
    },
    /// Some destination's probe did not run, and none refused.
    NotChecked {
        transport: Transport,
    },
    /// `accepted` of `total` destinations accept the connection or answer the datagram.
    Accepts {
        transport: Transport,
        accepted: usize,
        total: usize,
        /// The destinations are pods (else addresses outside the cluster's pods).
        pods: bool,
    },
}

impl ApplicationFinding {
    pub fn code(&self) -> Code {
        match self {
            ApplicationFinding::NotApplicable(_) => Code::ApplicationNotApplicable,
            ApplicationFinding::Refused { refused, .. } => match refused.first().sockets {
                ListenerFinding::Unknown(_) => Code::ApplicationSocketsUnknown,
                ListenerFinding::LoopbackOnly(_) => Code::ApplicationLoopbackOnly,
                ListenerFinding::NotOnPort(_) => Code::ApplicationNotListening,
                ListenerFinding::OtherFamilyOnly(_) => Code::ApplicationOtherFamilyOnly,
                ListenerFinding::ListensAnyway => Code::ApplicationRefusedOnPath,
            },
            ApplicationFinding::NotChecked { .. } => Code::ApplicationNotChecked,
            ApplicationFinding::Accepts { .. } => Code::ApplicationAccepts,
        }
    }
}

impl fmt::Display for ApplicationFinding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let tcp = |t: &Transport| *t == Transport::Tcp;
        match self {
            ApplicationFinding::NotApplicable(why) => why.fmt(f),
            ApplicationFinding::Refused {
                transport,
                refused,
                total,
            } => {
                let first = refused.first();
                let why = first.why(*transport);
                let n = refused.as_slice().len();
                let (one, many, single) = if tcp(transport) {
                    ("refuses", "refuse", "refuses the connection")
                } else {
                    (
                        "has nothing bound to the port",
                        "have nothing bound to the port",
                        "has nothing bound to the port",
                    )
                };
                if *total > 1 {
                    write!(
                        f,
                        "{} {}: {}: {why}{}",
                        endpoints_of(n, *total),
                        if n == 1 { one } else { many },
                        first.endpoint,
                        connection_share(n, *total)
                    )
                } else {
                    write!(f, "{} {single}: {why}", first.endpoint)
                }
            }
            ApplicationFinding::NotChecked { transport } if tcp(transport) => {
                f.write_str("the application could not be checked")
            }
            ApplicationFinding::NotChecked { .. } => {
                f.write_str("the application could not be checked over UDP")
            }
            ApplicationFinding::Accepts {
                transport,
                accepted,
                total,
                pods,
            } if tcp(transport) => write!(
                f,
                "{accepted}/{total} destination {} accept the connection",
                if *pods { "pods" } else { "addresses" }
            ),
            ApplicationFinding::Accepts {
                accepted,
                total,
                pods,
                ..
            } => write!(
                f,
                "{accepted}/{total} destination {} answer the datagram",
                if *pods { "pods" } else { "addresses" }
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refusal(endpoint: &str, sockets: ListenerFinding) -> Refusal {
        Refusal {
            endpoint: endpoint.into(),
            port: 8080,
            sockets,
        }
    }

    #[test]
    fn one_destination_refuses_the_connection_and_its_sockets_say_why() {
        let finding = ApplicationFinding::Refused {
            transport: Transport::Tcp,
            refused: NonEmpty::new(refusal("payments-0", ListenerFinding::NotOnPort(vec![]))),
            total: 1,
        };
        assert_eq!(
            finding.to_string(),
            "payments-0 refuses the connection: nothing in the pod listens on any TCP port (wanted 8080)"
        );
        assert_eq!(finding.code(), Code::ApplicationNotListening);
    }

    #[test]
    fn a_share_of_udp_destinations_with_nothing_bound_is_counted_and_costed() {
        let finding = ApplicationFinding::Refused {
            transport: Transport::Udp,
            refused: NonEmpty::new(refusal(
                "payments-0",
                ListenerFinding::NotOnPort(vec!["0.0.0.0:9999".into()]),
            )),
            total: 2,
        };
        assert_eq!(
            finding.to_string(),
            "1 of 2 endpoints has nothing bound to the port: payments-0: nothing in the pod is bound to \
             8080/UDP; it has UDP sockets on 0.0.0.0:9999 — about 1 in 2 new connections fail"
        );
    }
}
