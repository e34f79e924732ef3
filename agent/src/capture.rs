//! The `capture` probe: a packet witness on the destination pod's interface.
//!
//! Runs inside the destination pod's network namespace (the worker entered it), on an `AF_PACKET`
//! socket bound to no interface, so it sees what crosses the pod's own `eth0` in both directions:
//! whether the peer's SYN arrived, and what the pod sent back (SYN-ACK, RST, ICMP error). The pod
//! side is chosen over the host-side veth because it needs no knowledge of the CNI's interface
//! naming (cali*, lxc*, veth*), and "reached the pod's interface" is exactly what it proves.
//! Needs CAP_NET_RAW. Bounded by the probe's duration and packet budget; it stops early once a
//! connection from the peer has been answered and a short grace has passed.
//!
//! Parsing is pure ([`Flows::observe`]) and tested on byte fixtures.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use netdiag_proto::{CaptureProbe, CaptureResult, CaptureStop, CapturedFlow};
use nix::libc;
use pnet_packet::Packet;
use pnet_packet::ip::IpNextHeaderProtocols;
use pnet_packet::ipv4::Ipv4Packet;
use pnet_packet::tcp::{TcpFlags, TcpPacket};
use socket2::{Domain, Protocol, Socket, Type};

use crate::netns::{self, NetnsFile};
use crate::packets::icmp_error_quoting_tcp;

/// After a connection from the peer has been answered, how long to keep watching for the peer's
/// ACK (the reply coming back) before stopping.
const GRACE: Duration = Duration::from_millis(50);
/// Unrelated packets read at most, per packet of the budget.
const UNRELATED_FACTOR: u32 = 16;

/// Microseconds since the Unix epoch on this node's clock.
pub fn unix_us() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_micros()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

/// The namespaces of the pods the request's captures name (`podIp`), located once before the
/// probes start, or why one could not be found.
#[derive(Debug, Default)]
pub struct PodNamespaces(BTreeMap<IpAddr, Result<NetnsFile, String>>);

impl PodNamespaces {
    /// From the pods the request located (see [`crate::locate::Locator::locate_pods`]).
    pub fn of(
        pods: &BTreeMap<IpAddr, Result<crate::locate::Located, String>>,
        probes: &[netdiag_proto::Probe],
    ) -> Arc<Self> {
        let mut found = BTreeMap::new();
        for p in probes {
            if let netdiag_proto::Probe::Capture(CaptureProbe { pod_ip: Some(ip), .. }) = p {
                let ns = match pods.get(ip) {
                    Some(Ok(located)) => located.netns.try_clone().map_err(|e| e.to_string()),
                    Some(Err(why)) => Err(why.clone()),
                    None => Err(format!("the namespace of {ip} was not looked up")),
                };
                found.insert(*ip, ns);
            }
        }
        Arc::new(PodNamespaces(found))
    }

    /// The pod addresses the request's captures name.
    pub fn named(probes: &[netdiag_proto::Probe]) -> impl Iterator<Item = IpAddr> + '_ {
        probes.iter().filter_map(|p| match p {
            netdiag_proto::Probe::Capture(CaptureProbe { pod_ip, .. }) => *pod_ip,
            _ => None,
        })
    }
}

/// Runs one capture: in the namespace of the pod it names (on a worker of its own), else on the
/// calling thread's namespace.
pub async fn probe_in(p: &CaptureProbe, net_raw: bool, pods: &PodNamespaces) -> CaptureResult {
    let Some(ip) = p.pod_ip else {
        return probe(p, net_raw).await;
    };
    let failed = |why: String| CaptureResult {
        peer: Some(p.peer),
        port: p.port,
        started_unix_us: unix_us(),
        duration_ms: p.duration_ms,
        error: Some(why),
        ..Default::default()
    };
    match pods.0.get(&ip) {
        Some(Ok(ns)) => {
            let owned = p.clone();
            netns::run_in(ns, move || async move { probe(&owned, net_raw).await })
                .await
                .unwrap_or_else(|e| failed(e.to_string()))
        }
        Some(Err(why)) => failed(why.clone()),
        None => failed(format!("the namespace of {ip} was not looked up")),
    }
}

/// Runs one capture on the calling thread's namespace. `net_raw` says whether packet sockets may
/// be opened.
pub async fn probe(p: &CaptureProbe, net_raw: bool) -> CaptureResult {
    let mut result = CaptureResult {
        peer: Some(p.peer),
        port: p.port,
        interfaces: interface_names(),
        started_unix_us: unix_us(),
        duration_ms: p.duration_ms,
        ..Default::default()
    };
    let IpAddr::V4(peer) = p.peer else {
        result.error = Some("the packet witness watches IPv4 only".into());
        return result;
    };
    if !net_raw {
        result.error = Some(
            "the agent lacks CAP_NET_RAW (add NET_RAW to the container's securityContext.capabilities.add)"
                .into(),
        );
        return result;
    }
    let socket = match open() {
        Ok(s) => s,
        Err(err) => {
            result.error = Some(format!("cannot open a packet socket: {err}"));
            return result;
        }
    };
    result.started_unix_us = unix_us();
    let mut flows = Flows::new(peer, p.port);
    let deadline = Instant::now() + Duration::from_millis(p.duration_ms);
    result.stopped = watch(&socket, &mut flows, deadline, p.max_packets).await;
    result.flows = flows.list;
    result
}

/// The packet socket, registered with the runtime. A datagram packet socket is read with plain
/// recv; tokio's UdpSocket offers that on any datagram fd (as `tcp` does for raw ICMP).
fn open() -> std::io::Result<tokio::net::UdpSocket> {
    // ETH_P_ALL in network byte order; a DGRAM packet socket hands over the IP packet without its
    // link-layer header.
    let all = i32::from((libc::ETH_P_ALL as u16).to_be());
    let socket = Socket::new(Domain::PACKET, Type::DGRAM, Some(Protocol::from(all)))?;
    socket.set_nonblocking(true)?;
    tokio::net::UdpSocket::from_std(socket.into())
}

/// Reads packets until the deadline, the budget, or an answered connection plus the grace.
async fn watch(
    socket: &tokio::net::UdpSocket,
    flows: &mut Flows,
    deadline: Instant,
    max_packets: u32,
) -> CaptureStop {
    let mut buf = [0u8; 2048];
    let mut matched = 0u32;
    let mut read = 0u32;
    let mut stop_at = deadline;
    loop {
        let now = Instant::now();
        if now >= stop_at {
            return if stop_at < deadline {
                CaptureStop::Answered
            } else {
                CaptureStop::Window
            };
        }
        let ready = tokio::time::timeout_at(stop_at.into(), socket.readable()).await;
        if !matches!(ready, Ok(Ok(()))) {
            continue;
        }
        while let Ok(n) = socket.try_recv(&mut buf) {
            read += 1;
            if flows.observe(&buf[..n]) {
                matched += 1;
            }
            if matched >= max_packets || read >= max_packets.saturating_mul(UNRELATED_FACTOR) {
                return CaptureStop::PacketLimit;
            }
            if stop_at == deadline && flows.answered() {
                stop_at = (Instant::now() + GRACE).min(deadline);
            }
        }
    }
}

fn interface_names() -> Vec<String> {
    nix::net::if_::if_nameindex()
        .map(|list| {
            list.iter()
                .map(|i| i.name().to_string_lossy().into_owned())
                .filter(|n| n != "lo")
                .collect()
        })
        .unwrap_or_default()
}

/// The connections from one peer to one local port, as packets show them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Flows {
    peer: Ipv4Addr,
    port: u16,
    pub list: Vec<CapturedFlow>,
}

impl Flows {
    pub fn new(peer: Ipv4Addr, port: u16) -> Self {
        Flows {
            peer,
            port,
            list: vec![],
        }
    }

    fn flow(&mut self, peer_port: u16) -> &mut CapturedFlow {
        let i = match self.list.iter().position(|f| f.peer_port == peer_port) {
            Some(i) => i,
            None => {
                self.list.push(CapturedFlow {
                    peer_port,
                    ..Default::default()
                });
                self.list.len() - 1
            }
        };
        &mut self.list[i]
    }

    /// Whether some connection from the peer has been answered (SYN-ACK, RST or ICMP).
    pub fn answered(&self) -> bool {
        self.list
            .iter()
            .any(|f| f.syn_seen && (f.syn_ack_sent || f.rst_sent || f.icmp_sent.is_some()))
    }

    /// Records one IPv4 packet; `true` when it belongs to a connection of the peer.
    pub fn observe(&mut self, packet: &[u8]) -> bool {
        let Some(ip) = Ipv4Packet::new(packet) else {
            return false;
        };
        if ip.get_version() != 4 {
            return false;
        }
        match ip.get_next_level_protocol() {
            IpNextHeaderProtocols::Tcp => self.tcp(&ip),
            IpNextHeaderProtocols::Icmp if ip.get_destination() == self.peer => self.icmp(&ip),
            _ => false,
        }
    }

    fn tcp(&mut self, ip: &Ipv4Packet) -> bool {
        let Some(tcp) = TcpPacket::new(ip.payload()) else {
            return false;
        };
        let flags = tcp.get_flags();
        let has = |f: u8| flags & f != 0;
        if ip.get_source() == self.peer && tcp.get_destination() == self.port {
            let flow = self.flow(tcp.get_source());
            if has(TcpFlags::SYN) && !has(TcpFlags::ACK) {
                flow.syn_seen = true;
            } else if has(TcpFlags::ACK) && flow.syn_ack_sent {
                flow.peer_ack_seen = true;
            }
            return true;
        }
        if ip.get_destination() == self.peer && tcp.get_source() == self.port {
            let flow = self.flow(tcp.get_destination());
            if has(TcpFlags::SYN) && has(TcpFlags::ACK) {
                flow.syn_ack_sent = true;
            }
            if has(TcpFlags::RST) {
                flow.rst_sent = true;
            }
            return true;
        }
        false
    }

    /// An ICMP error to the peer quoting a TCP segment from the peer to our port.
    fn icmp(&mut self, ip: &Ipv4Packet) -> bool {
        let Some((kind, quoted)) = icmp_error_quoting_tcp(ip) else {
            return false;
        };
        if quoted.source != self.peer || quoted.destination_port != self.port {
            return false;
        }
        self.flow(quoted.source_port).icmp_sent = Some(kind);
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::packets::fixtures::{icmp_error, tcp};

    const PEER: Ipv4Addr = Ipv4Addr::new(10, 244, 1, 5);
    const POD: Ipv4Addr = Ipv4Addr::new(10, 244, 2, 5);

    #[test]
    fn syn_and_syn_ack_of_one_connection_make_one_answered_flow() {
        let mut flows = Flows::new(PEER, 8080);
        assert!(flows.observe(&tcp((PEER, 40000), (POD, 8080), TcpFlags::SYN)));
        assert!(!flows.answered());
        assert!(flows.observe(&tcp((POD, 8080), (PEER, 40000), TcpFlags::SYN | TcpFlags::ACK)));
        assert!(flows.answered());
        assert!(flows.observe(&tcp((PEER, 40000), (POD, 8080), TcpFlags::ACK)));
        assert_eq!(
            flows.list,
            vec![CapturedFlow {
                peer_port: 40000,
                syn_seen: true,
                syn_ack_sent: true,
                peer_ack_seen: true,
                ..Default::default()
            }]
        );
    }

    #[test]
    fn other_ports_and_peers_are_not_recorded() {
        let mut flows = Flows::new(PEER, 8080);
        assert!(!flows.observe(&tcp((PEER, 40000), (POD, 9090), TcpFlags::SYN)));
        let other = Ipv4Addr::new(10, 244, 3, 3);
        assert!(!flows.observe(&tcp((other, 40000), (POD, 8080), TcpFlags::SYN)));
        assert!(flows.list.is_empty());
    }

    #[test]
    fn a_reset_answer_is_recorded_for_its_connection() {
        let mut flows = Flows::new(PEER, 8080);
        flows.observe(&tcp((PEER, 40001), (POD, 8080), TcpFlags::SYN));
        flows.observe(&tcp((POD, 8080), (PEER, 40001), TcpFlags::RST | TcpFlags::ACK));
        assert!(flows.list[0].rst_sent && !flows.list[0].syn_ack_sent);
        assert!(flows.answered());
    }

    #[test]
    fn an_icmp_error_quoting_the_syn_is_recorded() {
        let mut flows = Flows::new(PEER, 8080);
        let inner = tcp((PEER, 40002), (POD, 8080), TcpFlags::SYN);
        let outer = icmp_error(POD, &inner, 3, 13);
        flows.observe(&inner);
        assert!(flows.observe(&outer));
        assert_eq!(flows.list[0].icmp_sent.as_deref(), Some("type 3 code 13"));
    }
}
