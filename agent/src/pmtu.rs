//! The `pathMtu` probe: the largest packet that crosses the path to `ip:port` with DF set.
//!
//! Measured on TCP connections of the probe's own, so it works wherever the target port is
//! admitted (a NetworkPolicy that allows only that port blocks ICMP echo). For each candidate size
//! one connection is opened with `TCP_MAXSEG` = size − headers; two full segments are written and
//! the connection is watched through `TCP_INFO` until they are acknowledged. Linux TCP sets DF
//! (path MTU discovery is on by default), so a segment larger than a link on the path is either
//! dropped silently (a black hole: never acknowledged) or answered by ICMP fragmentation-needed,
//! after which the kernel resegments and the data is acknowledged with a smaller learned path MTU
//! (`IP_MTU`): that is reported, but it is no black hole.
//!
//! The search is k-ary, one round of parallel connections at a time, each round narrowing the gap
//! between the largest size acknowledged and the smallest lost; the whole probe is bounded by its
//! `timeoutMs`. A size that was lost is tried again in the next round, so that one random loss
//! does not become a finding. Sockets are created on the calling thread (the namespace worker).

use std::io;
use std::net::SocketAddr;
use std::os::fd::AsFd;
use std::time::{Duration, Instant};

use netdiag_proto::{PathMtuOutcome, PathMtuProbe, PathMtuResult};
use nix::libc;
use nix::sys::socket::{getsockopt, sockopt};
use socket2::{Domain, Protocol, Socket, Type};
use tokio::io::AsyncWriteExt;

use crate::tcp::{SYN_INTERVAL, tcp_info};

/// IPv4 + TCP headers without options: a segment of MSS bytes makes a packet of MSS + 40.
const HEADERS_V4: u32 = 40;
/// The smallest size searched: every IPv4 host must accept 576-byte packets.
const MIN_SIZE: u32 = 576;
/// Sizes tried in parallel per round.
const PER_ROUND: u32 = 8;
/// How long a lost size is waited for at least: covers a delayed ACK on a real network.
const MIN_WAIT: Duration = Duration::from_millis(60);
/// SYNs the first connection sends at most (each a socket held until it connects or times out).
const MAX_SYNS: u32 = 10;
/// Sockets one path MTU probe holds at most at once: the first connection's attempts, or one
/// round of sizes (plus the retried lost size).
pub const MAX_SOCKETS: u32 = if MAX_SYNS > PER_ROUND + 1 {
    MAX_SYNS
} else {
    PER_ROUND + 1
};

/// Sockets the path MTU probes of a request hold beyond the two every network probe is counted
/// for (the engine's socket budget).
pub fn extra_sockets(probes: &[netdiag_proto::Probe]) -> u32 {
    let n = probes
        .iter()
        .filter(|p| matches!(p, netdiag_proto::Probe::PathMtu(_)))
        .count();
    u32::try_from(n)
        .unwrap_or(u32::MAX)
        .saturating_mul(MAX_SOCKETS - 2)
}

/// What one candidate size showed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum SizeOutcome {
    /// Acknowledged; the path MTU the socket knew afterwards.
    Passed { pmtu: u32 },
    /// Never acknowledged within the wait.
    Lost,
    /// The kernel already used smaller segments (a path MTU learned earlier): `pmtu`.
    Capped { pmtu: u32 },
    /// The connection itself failed.
    Failed,
}

/// Runs one path MTU probe on the calling thread's namespace. Its timeout counts from `since`
/// (the start of the probe's wave, see [`crate::engine`]), else from the probe's own start.
pub async fn probe(p: &PathMtuProbe, since: Option<Instant>) -> PathMtuResult {
    let mut last_syn_unix_us = None;
    let deadline = since.unwrap_or_else(Instant::now) + Duration::from_millis(p.timeout_ms);
    let outcome = match p.ip {
        std::net::IpAddr::V4(_) => {
            measure(SocketAddr::new(p.ip, p.port), deadline, &mut last_syn_unix_us).await
        }
        std::net::IpAddr::V6(_) => PathMtuOutcome::NotMeasured {
            reason: "path MTU is measured for IPv4 only".into(),
        },
    };
    PathMtuResult {
        ip: p.ip,
        port: p.port,
        outcome,
        last_syn_unix_us,
    }
}

async fn measure(
    target: SocketAddr,
    deadline: Instant,
    last_syn_unix_us: &mut Option<u64>,
) -> PathMtuOutcome {
    let not = |reason: String| PathMtuOutcome::NotMeasured { reason };
    // A first connection: the interface MTU towards the target and the handshake time.
    let (interface_mtu, rtt) = match first_connection(target, deadline, last_syn_unix_us).await {
        Ok((stream, rtt)) => match getsockopt(&stream, sockopt::IpMtu) {
            Ok(mtu) => (u32::try_from(mtu).unwrap_or(1500), rtt),
            Err(err) => return not(format!("cannot read the route mtu to {target}: {err}")),
        },
        Err(err) => return not(format!("no tcp connection to {target}: {err}")),
    };
    let wait = MIN_WAIT.max(rtt * 10);
    let mut passed = MIN_SIZE.min(interface_mtu);
    let mut lost: Option<u32> = None;
    let mut learned: Option<u32> = None;
    let mut hi = interface_mtu;
    let mut first = true;
    let mut any_passed = false;
    while hi > passed + 1 {
        if Instant::now() + wait + rtt * 2 > deadline {
            break;
        }
        let mut sizes = candidates(passed, hi, first);
        if let Some(l) = lost {
            sizes.push(l);
        }
        sizes.sort_unstable();
        sizes.dedup();
        let outcomes =
            futures::future::join_all(sizes.iter().map(|&s| try_size(target, s, wait, deadline))).await;
        let mut round_lost: Option<u32> = None;
        for (&size, outcome) in sizes.iter().zip(&outcomes) {
            match *outcome {
                SizeOutcome::Passed { pmtu } => {
                    any_passed = true;
                    passed = passed.max(size);
                    if pmtu < size {
                        learned = Some(learned.map_or(pmtu, |l| l.min(pmtu)));
                    }
                }
                SizeOutcome::Capped { pmtu } => learned = Some(learned.map_or(pmtu, |l| l.min(pmtu))),
                SizeOutcome::Lost => round_lost = Some(round_lost.map_or(size, |l| l.min(size))),
                SizeOutcome::Failed => {}
            }
        }
        if round_lost.is_none() && outcomes.iter().all(|o| *o == SizeOutcome::Failed) {
            return not(format!("the measuring connections to {target} failed"));
        }
        // A lost size below one that passed was a random loss, not the path.
        lost = round_lost.filter(|&l| l > passed);
        hi = lost.unwrap_or(passed);
        first = false;
        if learned.is_some() {
            break;
        }
    }
    if !any_passed && learned.is_none() {
        return not(format!(
            "no measuring segment to {target} was acknowledged in time, not even the smallest: loss or \
             time, not size"
        ));
    }
    PathMtuOutcome::Measured {
        interface_mtu,
        largest_passed_bytes: passed,
        smallest_dropped_bytes: lost,
        learned_pmtu_bytes: learned,
    }
}

/// Connects, sending a fresh SYN every [`SYN_INTERVAL`] while the path stays silent, until one
/// connection is established or the deadline passes; records when the last SYN left. Returns the
/// stream and its handshake time. An answer that is no connection (a reset, an ICMP error, no
/// route) ends it at once: the path answered, so there is no silence for a capture to witness
/// and no black hole to measure, and the request is not held for its timeout.
async fn first_connection(
    target: SocketAddr,
    deadline: Instant,
    last_syn_unix_us: &mut Option<u64>,
) -> io::Result<(tokio::net::TcpStream, Duration)> {
    use futures::StreamExt;
    let mut pending = futures::stream::FuturesUnordered::new();
    let mut last_error = io::Error::from(io::ErrorKind::TimedOut);
    let mut syns = 0;
    loop {
        if Instant::now() < deadline && syns < MAX_SYNS {
            syns += 1;
            *last_syn_unix_us = Some(crate::capture::unix_us());
            let start = Instant::now();
            pending.push(async move {
                connect(target, None, deadline)
                    .await
                    .map(|s| (s, start.elapsed()))
            });
        }
        let next_syn = (Instant::now() + SYN_INTERVAL).min(deadline);
        loop {
            match tokio::time::timeout_at(next_syn.into(), pending.next()).await {
                Ok(Some(Ok(found))) => return Ok(found),
                Ok(Some(Err(err))) if err.kind() == io::ErrorKind::TimedOut => last_error = err,
                Ok(Some(Err(answered))) => return Err(answered),
                Ok(None) if Instant::now() >= deadline => return Err(last_error),
                Ok(None) => {
                    tokio::time::sleep_until(next_syn.into()).await;
                    break;
                }
                Err(_) if Instant::now() >= deadline => return Err(last_error),
                Err(_) => break,
            }
        }
    }
}

/// Sizes to try between `lo` (passed) and `hi` (lost, or the interface MTU on the first round,
/// which is then tried too).
fn candidates(lo: u32, hi: u32, include_hi: bool) -> Vec<u32> {
    let top = if include_hi { hi } else { hi.saturating_sub(1) };
    if top <= lo {
        return vec![];
    }
    let span = top - lo;
    let n = PER_ROUND.min(span);
    (1..=n).map(|i| lo + span * i / n).collect()
}

/// Opens a connection, with `mss` when given, before `deadline`.
async fn connect(
    target: SocketAddr,
    mss: Option<u32>,
    deadline: Instant,
) -> io::Result<tokio::net::TcpStream> {
    let socket = Socket::new(Domain::for_address(target), Type::STREAM, Some(Protocol::TCP))?;
    socket.set_linger(Some(Duration::ZERO))?;
    if let Some(mss) = mss {
        socket.set_tcp_mss(mss)?;
    }
    socket.set_nonblocking(true)?;
    match socket.connect(&target.into()) {
        Ok(()) => {}
        Err(err) if err.raw_os_error() == Some(libc::EINPROGRESS) => {}
        Err(err) => return Err(err),
    }
    let stream = tokio::net::TcpStream::from_std(socket.into())?;
    let left = deadline.saturating_duration_since(Instant::now());
    tokio::time::timeout(left, stream.writable())
        .await
        .map_err(|_| io::Error::from(io::ErrorKind::TimedOut))??;
    match stream.take_error()? {
        Some(err) => Err(err),
        None => Ok(stream),
    }
}

async fn try_size(target: SocketAddr, size: u32, wait: Duration, deadline: Instant) -> SizeOutcome {
    let mss = size.saturating_sub(HEADERS_V4);
    let Ok(mut stream) = connect(target, Some(mss), deadline).await else {
        return SizeOutcome::Failed;
    };
    // The kernel sizes segments by the path MTU it knows (which TCP_MAXSEG cannot raise); the
    // MSS it reports excludes TCP options, so compare MTUs, not MSS.
    let known = route_mtu(&stream).unwrap_or(size);
    if known < size {
        return SizeOutcome::Capped { pmtu: known };
    }
    let payload = vec![0u8; 2 * mss as usize];
    let until = Instant::now() + wait;
    if tokio::time::timeout_at(until.into(), stream.write_all(&payload))
        .await
        .map_or(true, |r| r.is_err())
    {
        return SizeOutcome::Lost;
    }
    loop {
        match tcp_info(stream.as_fd()) {
            Ok(info) if info.tcpi_unacked == 0 => {
                return SizeOutcome::Passed {
                    pmtu: route_mtu(&stream).unwrap_or(size),
                };
            }
            Ok(_) if Instant::now() < until => tokio::time::sleep(Duration::from_millis(2)).await,
            Ok(_) => return SizeOutcome::Lost,
            Err(_) => return SizeOutcome::Failed,
        }
    }
}

/// The path MTU the kernel knows for the connection (`IP_MTU`).
fn route_mtu(stream: &tokio::net::TcpStream) -> Option<u32> {
    getsockopt(stream, sockopt::IpMtu)
        .ok()
        .and_then(|m| u32::try_from(m).ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_measurement_ends_at_its_waves_deadline() {
        let wave = crate::tcp::LateWave::new();
        let dropped = PathMtuProbe {
            ip: wave.addr.ip(),
            port: wave.addr.port(),
            timeout_ms: wave.timeout_ms,
        };
        let result = tokio::time::timeout(Duration::from_secs(30), probe(&dropped, Some(wave.since)))
            .await
            .expect("the measurement waited past its wave's deadline");
        assert!(
            matches!(&result.outcome, PathMtuOutcome::NotMeasured { reason } if reason.contains("no tcp connection")),
            "{result:?}"
        );
    }

    #[tokio::test]
    async fn a_refused_first_connection_ends_the_measurement_without_waiting_for_the_timeout() {
        // Bound but not listening: every SYN is answered by a reset.
        let closed = Socket::new(Domain::IPV4, Type::STREAM, Some(Protocol::TCP)).unwrap();
        closed
            .bind(&SocketAddr::from((std::net::Ipv4Addr::LOCALHOST, 0)).into())
            .unwrap();
        let addr = closed.local_addr().unwrap().as_socket().unwrap();
        let refused = PathMtuProbe {
            ip: addr.ip(),
            port: addr.port(),
            timeout_ms: 3_600_000,
        };
        let result = tokio::time::timeout(Duration::from_secs(30), probe(&refused, None))
            .await
            .expect("the measurement waited for its timeout after its connection was refused");
        assert!(
            matches!(&result.outcome, PathMtuOutcome::NotMeasured { reason } if reason.contains("refused")),
            "{result:?}"
        );
    }

    #[test]
    fn first_round_spans_the_range_and_includes_the_interface_mtu() {
        let sizes = candidates(576, 1500, true);
        assert_eq!(sizes.len(), 8);
        assert_eq!(sizes.last(), Some(&1500));
        assert!(sizes.windows(2).all(|w| w[0] < w[1]));
    }

    #[test]
    fn later_rounds_stay_strictly_between_passed_and_lost() {
        let sizes = candidates(1191, 1307, false);
        assert!(sizes.iter().all(|&s| s > 1191 && s < 1307), "{sizes:?}");
        assert!(candidates(1200, 1201, false).is_empty());
        assert_eq!(candidates(1200, 1203, false), vec![1201, 1202]);
    }
}
