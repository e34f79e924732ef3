//! The `tcp` probe: open a connection, classify what answered, close it with RST.
//!
//! Linux reports ICMP host-unreachable and admin-prohibited both as `EHOSTUNREACH` to a TCP socket.
//! With CAP_NET_RAW raw ICMP and ICMPv6 sockets are opened in the namespace before the probes
//! connect (an [`IcmpInbox`], one per worker), and the destination-unreachable message whose
//! embedded TCP header carries a probe's ports tells the two apart. Without it the reason stays
//! `host`, with a detail that says why.

use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6};
use std::os::fd::{AsRawFd, BorrowedFd};
use std::time::{Duration, Instant};

use netdiag_proto::{TcpOutcome, TcpProbe, TcpResult, UnreachableReason};
use nix::libc;
use pnet_packet::Packet;
use pnet_packet::icmp::IcmpTypes;
use pnet_packet::icmp::destination_unreachable::DestinationUnreachablePacket;
use pnet_packet::icmpv6::{Icmpv6Packet, Icmpv6Types};
use pnet_packet::ip::IpNextHeaderProtocols;
use pnet_packet::ipv4::Ipv4Packet;
use pnet_packet::ipv6::Ipv6Packet;
use socket2::{Domain, Protocol, Socket, Type};

/// Runs one TCP probe on the calling thread's namespace; `icmp` is the inbox of that namespace's
/// ICMP errors, opened before the probe. The timeout counts from `since` (the start of the
/// probe's wave, see [`crate::engine`]), else from the probe's own start.
pub async fn probe(p: &TcpProbe, icmp: &IcmpInbox, since: Option<Instant>) -> TcpResult {
    let started_unix_us = crate::capture::unix_us();
    let mut sent = SentSyns::default();
    let deadline = Deadline::new(since, p.timeout_ms);
    let outcome = connect(SocketAddr::new(p.ip, p.port), deadline, icmp, &mut sent).await;
    TcpResult {
        ip: p.ip,
        port: p.port,
        timeout_ms: p.timeout_ms,
        outcome,
        local_port: sent.local_port,
        started_unix_us: Some(started_unix_us),
        last_syn_unix_us: sent.last_beacon_unix_us,
    }
}

/// When a probe stops waiting: `timeout` after `since`, the start of its wave (or its own).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Deadline {
    pub since: Instant,
    pub timeout: Duration,
}

impl Deadline {
    /// `timeout_ms` from `since`, else from now.
    pub fn new(since: Option<Instant>, timeout_ms: u64) -> Deadline {
        Deadline {
            since: since.unwrap_or_else(Instant::now),
            timeout: Duration::from_millis(timeout_ms),
        }
    }

    pub fn at(&self) -> Instant {
        self.since + self.timeout
    }

    /// The timeout as the outcome reports it.
    pub fn timeout_ms(&self) -> u64 {
        u64::try_from(self.timeout.as_millis()).unwrap_or(u64::MAX)
    }
}

/// What the probe sent: the source port of its connection (for the packet witness), and when the
/// last beacon SYN left.
#[derive(Debug, Default)]
struct SentSyns {
    local_port: Option<u16>,
    last_beacon_unix_us: Option<u64>,
}

/// A SYN from a socket of its own, closed at once (a socket closed in SYN-SENT sends nothing
/// more): while the probe's connection is not established, one leaves every
/// [`SYN_INTERVAL`], so a packet capture at the destination that started after the
/// probe's own SYN still sees one. A connection that is established at once sends none.
fn beacon(target: SocketAddr) {
    if let Ok(socket) = Socket::new(
        Domain::for_address(target),
        NONBLOCKING_STREAM,
        Some(Protocol::TCP),
    ) {
        let _ = socket.connect(&target.into());
    }
}

/// While a connection is not established, a fresh SYN leaves this often until the deadline (the
/// TCP probe's beacons, the path MTU probe's first connection): SYNs a capture started in the same
/// round at the destination can witness even when its request arrived late.
pub const SYN_INTERVAL: Duration = Duration::from_millis(100);

/// A TCP socket created non-blocking (one system call, not three).
const NONBLOCKING_STREAM: Type = Type::STREAM.nonblocking();

/// Connects, waiting until `deadline`; `sent` receives the source port the kernel chose and the
/// last beacon's time, for the packet witness.
async fn connect(
    target: SocketAddr,
    deadline: Deadline,
    icmp: &IcmpInbox,
    sent: &mut SentSyns,
) -> TcpOutcome {
    let error = |what: &str, err: io::Error| TcpOutcome::Error {
        detail: format!("{what}: {err}"),
    };
    let socket = match Socket::new(
        Domain::for_address(target),
        NONBLOCKING_STREAM,
        Some(Protocol::TCP),
    ) {
        Ok(s) => s,
        Err(err) => return error("cannot create a tcp socket", err),
    };
    // Linger 0: closing sends RST, so thousands of probes leave no TIME_WAIT behind.
    if let Err(err) = socket.set_linger(Some(Duration::ZERO)) {
        return error("cannot configure the tcp socket", err);
    }
    let start = Instant::now();
    let elapsed_us = || u64::try_from(start.elapsed().as_micros()).unwrap_or(u64::MAX);
    let connected = socket.connect(&target.into());
    // Read now: after a failed handshake the kernel may have released the port.
    let local = local(&socket);
    sent.local_port = Some(local.port()).filter(|p| *p != 0);
    match connected {
        Ok(()) => return TcpOutcome::Connected { rtt_us: elapsed_us() },
        Err(err) if err.raw_os_error() == Some(nix::errno::Errno::EINPROGRESS as i32) => {}
        Err(err) => return classify_error(&err, elapsed_us(), icmp.evidence(target, local)),
    }
    let stream = match tokio::net::TcpStream::from_std(socket.into()) {
        Ok(s) => s,
        Err(err) => return error("cannot register the tcp socket", err),
    };
    let timeout_ms = deadline.timeout_ms();
    let deadline = tokio::time::Instant::from_std(deadline.at());
    let writable = loop {
        let next_beacon = (tokio::time::Instant::now() + SYN_INTERVAL).min(deadline);
        match tokio::time::timeout_at(next_beacon, stream.writable()).await {
            Ok(ready) => break ready,
            Err(_) if next_beacon >= deadline => {
                // An ICMP error that arrived while connect() still held the socket is kept as
                // its soft error, and the kernel goes on retrying: SO_ERROR returns it, as the
                // kernel itself would once its retries ran out.
                return match stream.take_error() {
                    Ok(Some(err)) => classify_error(&err, elapsed_us(), icmp.evidence(target, local)),
                    _ => TcpOutcome::Timeout { after_ms: timeout_ms },
                };
            }
            Err(_) => {
                beacon(target);
                sent.last_beacon_unix_us = Some(crate::capture::unix_us());
            }
        }
    };
    match writable {
        Err(err) => error("waiting for the connection failed", err),
        Ok(()) => {
            let rtt_us = elapsed_us();
            match stream.take_error() {
                Ok(None) => TcpOutcome::Connected {
                    rtt_us: handshake_rtt_us(&stream).unwrap_or(rtt_us),
                },
                Ok(Some(err)) => classify_error(&err, rtt_us, icmp.evidence(target, local)),
                Err(err) => error("cannot read the socket error", err),
            }
        }
    }
}

/// The connection's `TCP_INFO`.
pub fn tcp_info(fd: BorrowedFd<'_>) -> io::Result<libc::tcp_info> {
    // SAFETY: tcp_info is a plain C struct of integers, for which all-zero bytes are a valid value.
    let mut info: libc::tcp_info = unsafe { std::mem::zeroed() };
    let mut len = libc::socklen_t::try_from(std::mem::size_of::<libc::tcp_info>()).unwrap_or(0);
    // SAFETY: the pointer and length describe `info`, which outlives the call; the kernel writes
    // at most `len` bytes. Neither nix nor socket2 exposes TCP_INFO (nix has no sockopt for it,
    // socket2 none either), hence the direct call.
    let rc = unsafe {
        libc::getsockopt(
            fd.as_raw_fd(),
            libc::IPPROTO_TCP,
            libc::TCP_INFO,
            (&raw mut info).cast(),
            &mut len,
        )
    };
    if rc == 0 {
        Ok(info)
    } else {
        Err(io::Error::last_os_error())
    }
}

/// The handshake's round trip as the kernel timed it (SYN sent to SYN-ACK received, in
/// softirq): unlike the wall clock around `connect`, it does not grow while the agent's threads
/// wait for a CPU, which at hundreds of probes in one request would inflate every latency shown.
fn handshake_rtt_us(stream: &tokio::net::TcpStream) -> Option<u64> {
    use std::os::fd::AsFd;
    let info = tcp_info(stream.as_fd()).ok()?;
    (info.tcpi_rtt > 0).then_some(u64::from(info.tcpi_rtt))
}

/// The socket's bound address (unspecified before the kernel picked one).
fn local(socket: &Socket) -> SocketAddr {
    socket
        .local_addr()
        .ok()
        .and_then(|a| a.as_socket())
        .unwrap_or_else(|| SocketAddr::from((Ipv4Addr::UNSPECIFIED, 0)))
}

/// What the raw ICMP socket saw, if one could be opened.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IcmpEvidence {
    /// No raw socket: the reason why.
    Unavailable(String),
    /// The socket was open but held no matching destination-unreachable message.
    NoneMatched,
    /// ICMP (for an IPv6 `from`, ICMPv6) destination unreachable with this code, sent by `from`.
    Unreachable { code: u8, from: IpAddr },
}

/// The ICMP and ICMPv6 errors that reached one namespace, read through raw sockets opened once
/// for all the probes of a worker (a socket per probe cost as much as the connect itself at
/// hundreds of probes). Each probe that failed drains the sockets into the inbox, then looks for
/// the message about its own SYN: a message drained by another probe stays there for it.
pub struct IcmpInbox {
    v4: IcmpSocket,
    v6: IcmpSocket,
    /// Messages read so far: the IPv4 packet (with its IP header) or the ICMPv6 message, and
    /// its sender.
    seen: std::cell::RefCell<Vec<(Vec<u8>, SocketAddr)>>,
}

enum IcmpSocket {
    Open(std::net::UdpSocket),
    Unavailable(String),
}

/// Messages an inbox keeps at most; older ones are dropped first.
const INBOX_MESSAGES: usize = 4096;

impl IcmpInbox {
    /// Opens the raw sockets in the calling thread's namespace, when `net_raw` allows it.
    pub fn open(net_raw: bool) -> Self {
        let socket = |domain, protocol| match net_raw {
            false => IcmpSocket::Unavailable("the agent lacks CAP_NET_RAW".into()),
            true => match Socket::new(domain, Type::RAW, Some(protocol))
                .and_then(|s| s.set_nonblocking(true).map(|()| s))
            {
                // A raw socket is read with plain recv; std's UdpSocket offers that on any datagram fd.
                Ok(s) => IcmpSocket::Open(s.into()),
                Err(err) => IcmpSocket::Unavailable(format!("cannot open a raw icmp socket: {err}")),
            },
        };
        IcmpInbox {
            v4: socket(Domain::IPV4, Protocol::ICMPV4),
            v6: socket(Domain::IPV6, Protocol::ICMPV6),
            seen: std::cell::RefCell::default(),
        }
    }

    /// The message about the SYN from `local` to `target`. ICMP reaches raw sockets before TCP
    /// hears about it, so by the time connect fails the message is already queued.
    fn evidence(&self, target: SocketAddr, local: SocketAddr) -> IcmpEvidence {
        let socket = match (&self.v4, &self.v6, target) {
            (IcmpSocket::Open(s), _, SocketAddr::V4(_)) | (_, IcmpSocket::Open(s), SocketAddr::V6(_)) => s,
            (IcmpSocket::Unavailable(why), _, SocketAddr::V4(_))
            | (_, IcmpSocket::Unavailable(why), SocketAddr::V6(_)) => {
                return IcmpEvidence::Unavailable(why.clone());
            }
        };
        let mut seen = self.seen.borrow_mut();
        let mut buf = [0u8; 1500];
        while let Ok((n, from)) = socket.recv_from(&mut buf) {
            if seen.len() == INBOX_MESSAGES {
                seen.remove(0);
            }
            seen.push((buf[..n].to_vec(), from));
        }
        seen.iter()
            .find_map(|(message, from)| about_syn(message, *from, target, local))
            .unwrap_or(IcmpEvidence::NoneMatched)
    }
}

/// The evidence in one message read from a raw socket, if it is about the SYN from `local` to
/// `target`. A raw IPv4 socket hands over the IP header too; a raw ICMPv6 socket only the
/// message, with the sender in the socket address.
fn about_syn(
    message: &[u8],
    from: SocketAddr,
    target: SocketAddr,
    local: SocketAddr,
) -> Option<IcmpEvidence> {
    match (target, local, from) {
        (SocketAddr::V4(t), SocketAddr::V4(l), SocketAddr::V4(_)) => match_unreachable(message, l, t),
        (SocketAddr::V6(t), SocketAddr::V6(l), SocketAddr::V6(f)) => {
            match_unreachable6(message, *f.ip(), l, t)
        }
        // An IPv6 socket not yet bound reports an unspecified IPv4 local address.
        (SocketAddr::V6(t), SocketAddr::V4(_), SocketAddr::V6(f)) => match_unreachable6(
            message,
            *f.ip(),
            SocketAddrV6::new(Ipv6Addr::UNSPECIFIED, 0, 0, 0),
            t,
        ),
        _ => None,
    }
}

/// Parses an ICMPv6 message from a raw ICMPv6 socket (sent by `from`) and returns the evidence if
/// it is a destination-unreachable about a TCP segment from `local` to `target`. The quoted packet
/// is taken to carry TCP right after its fixed header, as a SYN from Linux does.
pub fn match_unreachable6(
    message: &[u8],
    from: Ipv6Addr,
    local: SocketAddrV6,
    target: SocketAddrV6,
) -> Option<IcmpEvidence> {
    let icmp = Icmpv6Packet::new(message)?;
    if icmp.get_icmpv6_type() != Icmpv6Types::DestinationUnreachable {
        return None;
    }
    // Four unused bytes, then as much of the invoking packet as fits.
    let quoted = icmp.payload().get(4..)?;
    let inner = Ipv6Packet::new(quoted)?;
    if inner.get_destination() != *target.ip()
        || inner.get_next_header() != IpNextHeaderProtocols::Tcp
        || (!local.ip().is_unspecified() && inner.get_source() != *local.ip())
    {
        return None;
    }
    let ports = quoted.get(40..44)?;
    let (sport, dport) = (
        u16::from_be_bytes([ports[0], ports[1]]),
        u16::from_be_bytes([ports[2], ports[3]]),
    );
    (sport == local.port() && dport == target.port()).then(|| IcmpEvidence::Unreachable {
        code: icmp.get_icmpv6_code().0,
        from: IpAddr::V6(from),
    })
}

/// Parses an IPv4 packet from a raw ICMP socket and returns the evidence if it is a
/// destination-unreachable about a TCP segment from `local` to `target`. The source address is
/// compared only when `local` has one (a multi-homed namespace may use one port on two addresses).
pub fn match_unreachable(packet: &[u8], local: SocketAddrV4, target: SocketAddrV4) -> Option<IcmpEvidence> {
    let ip = Ipv4Packet::new(packet)?;
    if ip.get_next_level_protocol() != IpNextHeaderProtocols::Icmp {
        return None;
    }
    let icmp = DestinationUnreachablePacket::new(ip.payload())?;
    if icmp.get_icmp_type() != IcmpTypes::DestinationUnreachable {
        return None;
    }
    let inner = Ipv4Packet::new(icmp.payload())?;
    if inner.get_destination() != *target.ip()
        || inner.get_next_level_protocol() != IpNextHeaderProtocols::Tcp
        || (!local.ip().is_unspecified() && inner.get_source() != *local.ip())
    {
        return None;
    }
    // The original datagram is quoted with at least 8 bytes of its payload: the TCP ports.
    let offset = usize::from(inner.get_header_length()) * 4;
    let ports = icmp.payload().get(offset..offset + 4)?;
    let (sport, dport) = (
        u16::from_be_bytes([ports[0], ports[1]]),
        u16::from_be_bytes([ports[2], ports[3]]),
    );
    (sport == local.port() && dport == target.port()).then(|| IcmpEvidence::Unreachable {
        code: icmp.get_icmp_code().0,
        from: IpAddr::V4(ip.get_source()),
    })
}

/// The reason an ICMPv4 destination-unreachable code gives (RFC 792, RFC 1812).
pub fn icmp_reason(code: u8) -> UnreachableReason {
    match code {
        0 | 6 | 11 => UnreachableReason::Network,
        1 | 7 | 12 => UnreachableReason::Host,
        2 => UnreachableReason::Protocol,
        9 | 10 | 13 => UnreachableReason::AdminProhibited,
        _ => UnreachableReason::Other,
    }
}

/// The reason an ICMPv6 destination-unreachable code gives (RFC 4443).
pub fn icmp6_reason(code: u8) -> UnreachableReason {
    match code {
        0 => UnreachableReason::Network,
        3 => UnreachableReason::Host,
        1 | 5 | 6 => UnreachableReason::AdminProhibited,
        _ => UnreachableReason::Other,
    }
}

/// The reason and the words for an ICMP or ICMPv6 destination-unreachable code from `from`.
fn icmp_explained(code: u8, from: IpAddr) -> (UnreachableReason, String) {
    match from {
        IpAddr::V4(_) => (icmp_reason(code), format!("icmp type 3 code {code} from {from}")),
        IpAddr::V6(_) => (
            icmp6_reason(code),
            format!("icmpv6 type 1 code {code} from {from}"),
        ),
    }
}

/// Turns a failed connect into an observation.
pub fn classify_error(err: &io::Error, rtt_us: u64, icmp: IcmpEvidence) -> TcpOutcome {
    use nix::errno::Errno;
    let unreachable = |reason, detail: String| TcpOutcome::Unreachable {
        reason,
        detail,
        rtt_us,
    };
    let Some(errno) = err.raw_os_error().map(Errno::from_raw) else {
        return TcpOutcome::Error {
            detail: err.to_string(),
        };
    };
    match (errno, icmp) {
        (Errno::ECONNREFUSED, _) => TcpOutcome::Refused { rtt_us },
        // The kernel folds several ICMP codes into one errno (net-prohibited, code 9, arrives as
        // ENETUNREACH; host-prohibited and filtered, 10 and 13, as EHOSTUNREACH; ICMPv6
        // admin-prohibited and reject-route as EACCES): the message about this connection decides
        // when there is one.
        (
            Errno::ENETUNREACH | Errno::EHOSTUNREACH | Errno::EHOSTDOWN | Errno::ENONET | Errno::EACCES,
            IcmpEvidence::Unreachable { code, from },
        ) => {
            let (reason, detail) = icmp_explained(code, from);
            unreachable(reason, detail)
        }
        (Errno::ENETUNREACH, _) => unreachable(
            UnreachableReason::Network,
            "network is unreachable (ENETUNREACH)".into(),
        ),
        (Errno::EHOSTUNREACH | Errno::EHOSTDOWN | Errno::ENONET, IcmpEvidence::Unavailable(why)) => {
            unreachable(
                UnreachableReason::Host,
                format!(
                    "no route to host ({errno}); host-unreachable and admin-prohibited cannot be told \
                     apart because {why}"
                ),
            )
        }
        (Errno::EHOSTUNREACH | Errno::EHOSTDOWN | Errno::ENONET, _) => unreachable(
            UnreachableReason::Host,
            format!(
                "no route to host ({errno}) and no icmp message about this connection: the neighbour \
                 did not answer or the route is unreachable"
            ),
        ),
        // ICMPv6 admin-prohibited arrives as EACCES; a local firewall DROP/REJECT on output as EPERM.
        (Errno::EACCES | Errno::EPERM, _) => unreachable(
            UnreachableReason::AdminProhibited,
            format!("the connection was administratively prohibited ({errno})"),
        ),
        (Errno::ETIMEDOUT, _) => TcpOutcome::Timeout {
            after_ms: rtt_us / 1000,
        },
        (_, _) => TcpOutcome::Error {
            detail: format!("connect failed: {err}"),
        },
    }
}

/// For tests: a target whose SYNs are dropped (a loopback listener whose accept queue is full:
/// backlog 0, one connection waiting), and a wave that started an hour less 200 ms ago for
/// probes with a one-hour timeout. A probe that counts from the wave has 200 ms left; one that
/// counts from its own start, an hour.
#[cfg(test)]
pub(crate) struct LateWave {
    pub addr: SocketAddr,
    pub timeout_ms: u64,
    pub since: Instant,
    _listener: Socket,
    _waiting: std::net::TcpStream,
}

#[cfg(test)]
impl LateWave {
    pub(crate) fn new() -> LateWave {
        let listener = Socket::new(Domain::IPV4, Type::STREAM, Some(Protocol::TCP)).unwrap();
        listener
            .bind(&SocketAddr::from((Ipv4Addr::LOCALHOST, 0)).into())
            .unwrap();
        listener.listen(0).unwrap();
        let addr = listener.local_addr().unwrap().as_socket().unwrap();
        let waiting = std::net::TcpStream::connect(addr).unwrap();
        let hour = Duration::from_secs(3600);
        LateWave {
            addr,
            timeout_ms: u64::try_from(hour.as_millis()).unwrap(),
            since: Instant::now()
                .checked_sub(hour - Duration::from_millis(200))
                .unwrap(),
            _listener: listener,
            _waiting: waiting,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_deadline_ends_its_timeout_after_the_wave_started_else_after_now() {
        let wave = Instant::now() - Duration::from_secs(5);
        let deadline = Deadline::new(Some(wave), 1500);
        assert_eq!(deadline.at(), wave + Duration::from_millis(1500));
        assert_eq!(deadline.timeout_ms(), 1500);
        let before = Instant::now();
        let own = Deadline::new(None, 20);
        assert!(own.since >= before && own.at() >= before + Duration::from_millis(20));
    }

    #[tokio::test]
    async fn the_timeout_counts_from_the_start_of_the_probes_wave() {
        let wave = LateWave::new();
        let dropped = TcpProbe {
            ip: wave.addr.ip(),
            port: wave.addr.port(),
            timeout_ms: wave.timeout_ms,
        };
        let icmp = IcmpInbox::open(false);
        let result = tokio::time::timeout(Duration::from_secs(30), probe(&dropped, &icmp, Some(wave.since)))
            .await
            .expect("the probe waited past its wave's deadline");
        assert_eq!(
            result.outcome,
            TcpOutcome::Timeout {
                after_ms: dropped.timeout_ms
            }
        );
    }

    /// An IPv4/ICMP destination-unreachable (code 13) from 10.0.0.2 quoting a SYN from
    /// 10.0.0.1:40000 to 10.0.0.2:8080.
    fn admin_prohibited_fixture() -> Vec<u8> {
        let mut inner = vec![
            0x45, 0, 0, 40, 0, 0, 0x40, 0, 64, 6, 0, 0, 10, 0, 0, 1, 10, 0, 0, 2, // IPv4, proto 6
        ];
        inner.extend_from_slice(&40000u16.to_be_bytes());
        inner.extend_from_slice(&8080u16.to_be_bytes());
        inner.extend_from_slice(&[0, 0, 0, 1]); // sequence number
        let mut icmp = vec![3, 13, 0, 0, 0, 0, 0, 0];
        icmp.extend_from_slice(&inner);
        let total = u16::try_from(20 + icmp.len()).unwrap();
        let mut outer = vec![0x45, 0, 0, 0, 0, 0, 0, 0, 64, 1, 0, 0, 10, 0, 0, 2, 10, 0, 0, 1];
        outer[2..4].copy_from_slice(&total.to_be_bytes());
        outer.extend_from_slice(&icmp);
        outer
    }

    #[test]
    fn icmp_about_our_syn_is_matched_by_ports() {
        let packet = admin_prohibited_fixture();
        let dst = Ipv4Addr::new(10, 0, 0, 2);
        let src = Ipv4Addr::new(10, 0, 0, 1);
        let target = SocketAddrV4::new(dst, 8080);
        assert_eq!(
            match_unreachable(&packet, SocketAddrV4::new(src, 40000), target),
            Some(IcmpEvidence::Unreachable {
                code: 13,
                from: IpAddr::V4(dst)
            })
        );
        let local = SocketAddrV4::new(src, 40000);
        assert_eq!(
            match_unreachable(&packet, SocketAddrV4::new(src, 40001), target),
            None
        );
        assert_eq!(
            match_unreachable(&packet, local, SocketAddrV4::new(dst, 8081)),
            None
        );
        assert_eq!(
            match_unreachable(
                &packet,
                local,
                SocketAddrV4::new(Ipv4Addr::new(10, 0, 0, 3), 8080)
            ),
            None
        );
        // Same port, another source address of the namespace: another connection's message.
        let other_source = SocketAddrV4::new(Ipv4Addr::new(10, 0, 0, 9), 40000);
        assert_eq!(match_unreachable(&packet, other_source, target), None);
    }

    /// An ICMPv6 destination-unreachable (code 1, admin prohibited) quoting a SYN from
    /// [fd00::1]:40000 to [fd00::2]:8080, as a raw ICMPv6 socket delivers it (no IPv6 header).
    fn icmp6_admin_prohibited_fixture() -> Vec<u8> {
        let src: Ipv6Addr = "fd00::1".parse().unwrap();
        let dst: Ipv6Addr = "fd00::2".parse().unwrap();
        let mut inner = vec![0x60, 0, 0, 0, 0, 20, 6, 64]; // IPv6, payload 20, next header TCP
        inner.extend_from_slice(&src.octets());
        inner.extend_from_slice(&dst.octets());
        inner.extend_from_slice(&40000u16.to_be_bytes());
        inner.extend_from_slice(&8080u16.to_be_bytes());
        inner.extend_from_slice(&[0, 0, 0, 1]);
        let mut icmp = vec![1, 1, 0, 0, 0, 0, 0, 0];
        icmp.extend_from_slice(&inner);
        icmp
    }

    #[test]
    fn icmpv6_about_our_syn_is_matched_by_ports_and_classified() {
        let message = icmp6_admin_prohibited_fixture();
        let router: Ipv6Addr = "fd00::fe".parse().unwrap();
        let local = SocketAddrV6::new("fd00::1".parse().unwrap(), 40000, 0, 0);
        let target = SocketAddrV6::new("fd00::2".parse().unwrap(), 8080, 0, 0);
        let found = match_unreachable6(&message, router, local, target);
        assert_eq!(
            found,
            Some(IcmpEvidence::Unreachable {
                code: 1,
                from: IpAddr::V6(router)
            })
        );
        let other_port = SocketAddrV6::new(*local.ip(), 40001, 0, 0);
        assert_eq!(match_unreachable6(&message, router, other_port, target), None);
        let other_target = SocketAddrV6::new("fd00::3".parse().unwrap(), 8080, 0, 0);
        assert_eq!(match_unreachable6(&message, router, local, other_target), None);

        let err = io::Error::from_raw_os_error(nix::errno::Errno::EACCES as i32);
        let TcpOutcome::Unreachable { reason, detail, .. } = classify_error(&err, 2, found.unwrap()) else {
            panic!("not unreachable")
        };
        assert_eq!(reason, UnreachableReason::AdminProhibited);
        assert_eq!(detail, "icmpv6 type 1 code 1 from fd00::fe");
    }

    #[test]
    fn icmpv6_codes_map_to_reasons() {
        assert_eq!(icmp6_reason(0), UnreachableReason::Network);
        assert_eq!(icmp6_reason(1), UnreachableReason::AdminProhibited);
        assert_eq!(icmp6_reason(3), UnreachableReason::Host);
        assert_eq!(icmp6_reason(6), UnreachableReason::AdminProhibited);
        assert_eq!(icmp6_reason(2), UnreachableReason::Other);
    }

    #[test]
    fn icmp_codes_map_to_reasons() {
        assert_eq!(icmp_reason(13), UnreachableReason::AdminProhibited);
        assert_eq!(icmp_reason(1), UnreachableReason::Host);
        assert_eq!(icmp_reason(0), UnreachableReason::Network);
        assert_eq!(icmp_reason(4), UnreachableReason::Other);
    }

    #[test]
    fn host_unreachable_without_raw_socket_says_why() {
        let err = io::Error::from_raw_os_error(nix::errno::Errno::EHOSTUNREACH as i32);
        let outcome = classify_error(
            &err,
            5,
            IcmpEvidence::Unavailable("the agent lacks CAP_NET_RAW".into()),
        );
        let TcpOutcome::Unreachable { reason, detail, .. } = outcome else {
            panic!("{outcome:?}")
        };
        assert_eq!(reason, UnreachableReason::Host);
        assert!(detail.contains("CAP_NET_RAW"), "{detail}");
    }

    #[test]
    fn icmp_net_prohibited_reported_as_enetunreach_is_admin_prohibited() {
        let err = io::Error::from_raw_os_error(nix::errno::Errno::ENETUNREACH as i32);
        let router = Ipv4Addr::new(10, 0, 0, 254);
        let outcome = classify_error(
            &err,
            3,
            IcmpEvidence::Unreachable {
                code: 9,
                from: IpAddr::V4(router),
            },
        );
        let TcpOutcome::Unreachable { reason, detail, .. } = outcome else {
            panic!("{outcome:?}")
        };
        assert_eq!(reason, UnreachableReason::AdminProhibited);
        assert_eq!(detail, "icmp type 3 code 9 from 10.0.0.254");
    }

    #[test]
    fn refused_and_no_route_are_told_apart() {
        let refused = io::Error::from_raw_os_error(nix::errno::Errno::ECONNREFUSED as i32);
        assert_eq!(
            classify_error(&refused, 7, IcmpEvidence::NoneMatched),
            TcpOutcome::Refused { rtt_us: 7 }
        );
        let no_route = io::Error::from_raw_os_error(nix::errno::Errno::ENETUNREACH as i32);
        assert!(matches!(
            classify_error(&no_route, 1, IcmpEvidence::NoneMatched),
            TcpOutcome::Unreachable {
                reason: UnreachableReason::Network,
                ..
            }
        ));
    }
}
