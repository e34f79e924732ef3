//! The `udp` probe: send a datagram from a connected socket and classify what came back.
//!
//! A connected UDP socket with `IP_RECVERR` (`IPV6_RECVERR`) has the kernel report every ICMP
//! error about its datagrams: the failed `recv` gives the errno, and the socket's error queue
//! holds the ICMP type, code and sender, so port-unreachable (refused), admin-prohibited (a
//! REJECT) and host/net unreachable are told apart without a raw socket. Silence is bounded by
//! the probe's timeout; the same datagram is sent again at half of it, so one lost datagram is
//! not silence. Runs on the namespace worker thread like every probe; classification is pure.

use std::io;
use std::net::{IpAddr, SocketAddr};
use std::os::fd::AsRawFd;
use std::time::Instant;

use hickory_proto::op::{Message, Query};
use hickory_proto::rr::{Name, RecordType};
use netdiag_proto::{UdpOutcome, UdpPayload, UdpProbe, UdpResult, UnreachableReason};
use nix::sys::socket::{ControlMessageOwned, MsgFlags, SockaddrStorage, recvmsg, setsockopt, sockopt};
use socket2::{Domain, Protocol, Socket, Type};

use crate::tcp::Deadline;

/// The name a DNS payload asks: every cluster DNS answers it from its own data; any other DNS
/// server answers it too, if only with NXDOMAIN or REFUSED, and any answer counts.
pub const DNS_PAYLOAD_NAME: &str = netdiag_proto::KUBE_DNS_FQDN;

/// `ee_origin` of an error-queue message that an ICMP (ICMPv6) packet caused.
const SO_EE_ORIGIN_ICMP: u8 = 2;
const SO_EE_ORIGIN_ICMP6: u8 = 3;

/// Runs one UDP probe on the calling thread's namespace. The timeout counts from `since` (the
/// start of the probe's wave, see [`crate::engine`]), else from the probe's own start.
pub async fn probe(p: &UdpProbe, since: Option<Instant>) -> UdpResult {
    let payload = resolve_payload(p.payload, p.port);
    let mut local_port = None;
    let deadline = Deadline::new(since, p.timeout_ms);
    let outcome = exchange(
        SocketAddr::new(p.ip, p.port),
        &payload_bytes(payload),
        deadline,
        &mut local_port,
    )
    .await;
    UdpResult {
        ip: p.ip,
        port: p.port,
        timeout_ms: p.timeout_ms,
        payload,
        outcome,
        local_port,
    }
}

/// The payload `auto` stands for at `port`.
pub fn resolve_payload(payload: UdpPayload, port: u16) -> UdpPayload {
    match (payload, port) {
        (UdpPayload::Auto, 53) => UdpPayload::DnsQuery,
        (UdpPayload::Auto, _) => UdpPayload::Empty,
        (chosen, _) => chosen,
    }
}

/// The datagram for a resolved payload.
pub fn payload_bytes(payload: UdpPayload) -> Vec<u8> {
    match payload {
        UdpPayload::DnsQuery => {
            let mut message = Message::query();
            message.metadata.recursion_desired = true;
            let name = Name::from_ascii(DNS_PAYLOAD_NAME).expect("a valid constant name");
            message.add_query(Query::query(name, RecordType::A));
            message.to_vec().unwrap_or_default()
        }
        UdpPayload::Auto | UdpPayload::Empty => vec![],
    }
}

/// Connects, sends, and waits for an answer or an ICMP error until `deadline`; the datagram is
/// sent again halfway.
async fn exchange(
    target: SocketAddr,
    payload: &[u8],
    deadline: Deadline,
    local_port: &mut Option<u16>,
) -> UdpOutcome {
    let error = |what: &str, err: io::Error| UdpOutcome::Error {
        detail: format!("{what}: {err}"),
    };
    let socket = match open(target) {
        Ok(s) => s,
        Err(err) => return error("cannot create a udp socket", err),
    };
    let start = Instant::now();
    let elapsed_us = || u64::try_from(start.elapsed().as_micros()).unwrap_or(u64::MAX);
    if let Err(err) = socket.connect(&target.into()) {
        return classify(&err, None, elapsed_us());
    }
    *local_port = socket
        .local_addr()
        .ok()
        .and_then(|a| a.as_socket())
        .map(|a| a.port());
    let socket = match tokio::net::UdpSocket::from_std(std::net::UdpSocket::from(socket)) {
        Ok(s) => s,
        Err(err) => return error("cannot register the udp socket", err),
    };
    let (after_ms, Deadline { since, timeout }) = (deadline.timeout_ms(), deadline);
    let resend_at = tokio::time::Instant::from_std(since + timeout / 2);
    let deadline = tokio::time::Instant::from_std(deadline.at());
    let mut resent = false;
    let mut buf = vec![0u8; 2048];
    if let Err(err) = socket.send(payload).await {
        return classify(&err, icmp_report(&socket), elapsed_us());
    }
    loop {
        let wake = if resent { deadline } else { resend_at };
        tokio::select! {
            received = socket.recv(&mut buf) => return match received {
                Ok(n) => UdpOutcome::Answered {
                    rtt_us: elapsed_us(),
                    bytes: u32::try_from(n).unwrap_or(u32::MAX),
                },
                Err(err) => classify(&err, icmp_report(&socket), elapsed_us()),
            },
            () = tokio::time::sleep_until(wake) => {
                if resent {
                    return UdpOutcome::Silent { after_ms };
                }
                resent = true;
                if let Err(err) = socket.send(payload).await {
                    return classify(&err, icmp_report(&socket), elapsed_us());
                }
            }
        }
    }
}

/// A non-blocking UDP socket that reports ICMP errors with their details.
fn open(target: SocketAddr) -> io::Result<Socket> {
    let socket = Socket::new(Domain::for_address(target), Type::DGRAM, Some(Protocol::UDP))?;
    socket.set_nonblocking(true)?;
    match target {
        SocketAddr::V4(_) => setsockopt(&socket, sockopt::Ipv4RecvErr, &true)?,
        SocketAddr::V6(_) => setsockopt(&socket, sockopt::Ipv6RecvErr, &true)?,
    }
    Ok(socket)
}

/// An ICMP error the kernel queued for the socket: its type, code and sender.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IcmpReport {
    pub v6: bool,
    pub icmp_type: u8,
    pub code: u8,
    pub from: Option<IpAddr>,
}

/// Reads the socket's error queue for the ICMP message about our datagram, if one is queued.
fn icmp_report(socket: &tokio::net::UdpSocket) -> Option<IcmpReport> {
    let mut data = [0u8; 512];
    let mut iov = [io::IoSliceMut::new(&mut data)];
    let mut control = nix::cmsg_space!(nix::libc::sock_extended_err, SockaddrStorage);
    let flags = MsgFlags::MSG_ERRQUEUE | MsgFlags::MSG_DONTWAIT;
    let message = recvmsg::<SockaddrStorage>(socket.as_raw_fd(), &mut iov, Some(&mut control), flags).ok()?;
    // The queue is the socket's own and the socket is connected to the target: it is ours.
    message.cmsgs().ok()?.find_map(|cmsg| match cmsg {
        ControlMessageOwned::Ipv4RecvErr(err, from) if err.ee_origin == SO_EE_ORIGIN_ICMP => {
            Some(IcmpReport {
                v6: false,
                icmp_type: err.ee_type,
                code: err.ee_code,
                from: from.map(|a| IpAddr::from(std::net::Ipv4Addr::from(u32::from_be(a.sin_addr.s_addr)))),
            })
        }
        ControlMessageOwned::Ipv6RecvErr(err, from) if err.ee_origin == SO_EE_ORIGIN_ICMP6 => {
            Some(IcmpReport {
                v6: true,
                icmp_type: err.ee_type,
                code: err.ee_code,
                from: from.map(|a| IpAddr::from(std::net::Ipv6Addr::from(a.sin6_addr.s6_addr))),
            })
        }
        _ => None,
    })
}

/// What an ICMP destination-unreachable says, for ICMPv4 (type 3) and ICMPv6 (type 1).
fn icmp_meaning(report: &IcmpReport) -> Option<Result<(), UnreachableReason>> {
    match (report.v6, report.icmp_type, report.code) {
        (false, 3, 3) | (true, 1, 4) => Some(Ok(())),
        (false, 3, code) => Some(Err(crate::tcp::icmp_reason(code))),
        (true, 1, 1 | 5 | 6) => Some(Err(UnreachableReason::AdminProhibited)),
        (true, 1, 0) => Some(Err(UnreachableReason::Network)),
        (true, 1, 3) => Some(Err(UnreachableReason::Host)),
        (true, 1, _) => Some(Err(UnreachableReason::Other)),
        _ => None,
    }
}

/// Turns a failed send or receive into an observation; the ICMP report decides when there is
/// one (the kernel folds several codes into one errno), else the errno.
pub fn classify(err: &io::Error, icmp: Option<IcmpReport>, rtt_us: u64) -> UdpOutcome {
    use nix::errno::Errno;
    let unreachable = |reason, detail: String| UdpOutcome::Unreachable {
        reason,
        detail,
        rtt_us,
    };
    if let Some(report) = icmp
        && let Some(meaning) = icmp_meaning(&report)
    {
        let from = report.from.map(|ip| format!(" from {ip}")).unwrap_or_default();
        let family = if report.v6 { "icmpv6" } else { "icmp" };
        let detail = format!("{family} type {} code {}{from}", report.icmp_type, report.code);
        return match meaning {
            Ok(()) => UdpOutcome::Refused { rtt_us },
            Err(reason) => unreachable(reason, detail),
        };
    }
    let Some(errno) = err.raw_os_error().map(Errno::from_raw) else {
        return UdpOutcome::Error {
            detail: err.to_string(),
        };
    };
    match errno {
        Errno::ECONNREFUSED => UdpOutcome::Refused { rtt_us },
        Errno::ENETUNREACH => unreachable(
            UnreachableReason::Network,
            "network is unreachable (ENETUNREACH)".into(),
        ),
        Errno::EHOSTUNREACH | Errno::EHOSTDOWN | Errno::ENONET => unreachable(
            UnreachableReason::Host,
            format!("no route to host ({errno}) and no icmp message about the datagram"),
        ),
        // A local firewall DROP/REJECT on output fails the send itself.
        Errno::EACCES | Errno::EPERM => unreachable(
            UnreachableReason::AdminProhibited,
            format!("the datagram was administratively prohibited ({errno})"),
        ),
        _ => UdpOutcome::Error {
            detail: format!("udp exchange failed: {err}"),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use nix::errno::Errno;

    fn os(errno: Errno) -> io::Error {
        io::Error::from_raw_os_error(errno as i32)
    }

    fn icmp4(code: u8) -> IcmpReport {
        IcmpReport {
            v6: false,
            icmp_type: 3,
            code,
            from: Some("10.0.0.2".parse().unwrap()),
        }
    }

    #[test]
    fn port_unreachable_is_refused() {
        assert_eq!(
            classify(&os(Errno::ECONNREFUSED), Some(icmp4(3)), 7),
            UdpOutcome::Refused { rtt_us: 7 }
        );
        assert_eq!(
            classify(&os(Errno::ECONNREFUSED), None, 7),
            UdpOutcome::Refused { rtt_us: 7 }
        );
        let v6 = IcmpReport {
            v6: true,
            icmp_type: 1,
            code: 4,
            from: None,
        };
        assert_eq!(
            classify(&os(Errno::ECONNREFUSED), Some(v6), 2),
            UdpOutcome::Refused { rtt_us: 2 }
        );
    }

    #[test]
    fn admin_prohibited_is_told_from_host_unreachable_by_the_icmp_code() {
        let UdpOutcome::Unreachable { reason, detail, .. } =
            classify(&os(Errno::EHOSTUNREACH), Some(icmp4(13)), 1)
        else {
            panic!()
        };
        assert_eq!(reason, UnreachableReason::AdminProhibited);
        assert_eq!(detail, "icmp type 3 code 13 from 10.0.0.2");
        let host = classify(&os(Errno::EHOSTUNREACH), Some(icmp4(1)), 1);
        assert!(matches!(
            host,
            UdpOutcome::Unreachable {
                reason: UnreachableReason::Host,
                ..
            }
        ));
    }

    #[test]
    fn errno_alone_classifies_when_no_icmp_is_queued() {
        assert!(matches!(
            classify(&os(Errno::ENETUNREACH), None, 1),
            UdpOutcome::Unreachable {
                reason: UnreachableReason::Network,
                ..
            }
        ));
        assert!(matches!(
            classify(&os(Errno::EPERM), None, 1),
            UdpOutcome::Unreachable {
                reason: UnreachableReason::AdminProhibited,
                ..
            }
        ));
        assert!(matches!(
            classify(&os(Errno::EINVAL), None, 1),
            UdpOutcome::Error { .. }
        ));
    }

    #[test]
    fn port_53_gets_a_dns_query_and_other_ports_an_empty_datagram() {
        assert_eq!(resolve_payload(UdpPayload::Auto, 53), UdpPayload::DnsQuery);
        assert_eq!(resolve_payload(UdpPayload::Auto, 5353), UdpPayload::Empty);
        assert_eq!(resolve_payload(UdpPayload::DnsQuery, 5353), UdpPayload::DnsQuery);
        assert!(payload_bytes(UdpPayload::Empty).is_empty());
        let query = Message::from_vec(&payload_bytes(UdpPayload::DnsQuery)).unwrap();
        assert_eq!(query.queries.len(), 1);
        assert_eq!(query.queries[0].name().to_ascii(), DNS_PAYLOAD_NAME);
    }

    /// Real sockets on loopback (no privilege needed): an answer, and port-unreachable.
    #[tokio::test]
    async fn loopback_answer_and_refusal_are_observed() {
        let server = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let port = server.local_addr().unwrap().port();
        std::thread::spawn(move || {
            let mut buf = [0u8; 64];
            if let Ok((_, peer)) = server.recv_from(&mut buf) {
                let _ = server.send_to(b"pong", peer);
            }
        });
        let probe = |port| UdpProbe {
            ip: "127.0.0.1".parse().unwrap(),
            port,
            payload: UdpPayload::Auto,
            timeout_ms: 2000,
        };
        let answered = super::probe(&probe(port), None).await;
        assert!(
            matches!(answered.outcome, UdpOutcome::Answered { bytes: 4, .. }),
            "{answered:?}"
        );
        assert_eq!(answered.payload, UdpPayload::Empty);
        let closed = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let closed_port = closed.local_addr().unwrap().port();
        drop(closed);
        let refused = super::probe(&probe(closed_port), None).await;
        assert!(
            matches!(refused.outcome, UdpOutcome::Refused { .. }),
            "{refused:?}"
        );
    }
}
