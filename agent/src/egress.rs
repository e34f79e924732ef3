//! The `egress` probe: where a pod's connection to an address outside the cluster leaves the
//! node, and what comes back there.
//!
//! Runs in the node's network namespace. The kernel's route to the address (`RTM_GETROUTE`) names
//! the interface, next hop and preferred source; an `AF_PACKET` socket then watches that interface
//! only (the receive address names each packet's interface) for SYNs to `ip:port` and for what
//! answers them. Seen on the uplink, a SYN carries the source address it leaves the node with:
//! the pod's own when nothing translated it, the node's (or an egress address) after SNAT.
//! Needs CAP_NET_RAW. Bounded by the probe's duration and packet budget; it stops shortly after an
//! answer. Parsing is pure ([`Uplink::observe`]) and tested on byte fixtures.

use std::net::{IpAddr, Ipv4Addr};
use std::os::fd::AsRawFd;
use std::time::{Duration, Instant};

use netdiag_proto::{CaptureStop, EgressProbe, EgressResult, EgressSource};
use nix::libc;
use nix::sys::socket::LinkAddr;
use pnet_packet::Packet;
use pnet_packet::icmp::{IcmpPacket, IcmpTypes};
use pnet_packet::ip::IpNextHeaderProtocols;
use pnet_packet::ipv4::Ipv4Packet;
use pnet_packet::tcp::{TcpFlags, TcpPacket};
use socket2::{Domain, Protocol, Socket, Type};
use tokio::io::Interest;

use crate::capture::unix_us;
use crate::interfaces::{self, RouteTo};
use crate::netns::{self, NetnsFile};

/// After an answer, how long to keep watching (a reset often follows an ICMP error, or the
/// reverse) before stopping.
const GRACE: Duration = Duration::from_millis(50);
/// Unrelated packets read at most, per packet of the budget.
const UNRELATED_FACTOR: u32 = 16;

/// Runs one egress watch in the node's namespace (`node_netns`).
pub async fn probe_in_node(p: &EgressProbe, net_raw: bool, node_netns: &str) -> EgressResult {
    let failed = |why: String| EgressResult {
        ip: Some(p.ip),
        port: p.port,
        started_unix_us: unix_us(),
        duration_ms: p.duration_ms,
        error: Some(why),
        ..Default::default()
    };
    let ns = match NetnsFile::open(node_netns) {
        Ok(ns) => ns,
        Err(err) => return failed(err.to_string()),
    };
    let owned = p.clone();
    netns::run_in(&ns, move || async move { probe(&owned, net_raw).await })
        .await
        .unwrap_or_else(|e| failed(e.to_string()))
}

/// Runs one egress watch in the calling thread's namespace.
pub async fn probe(p: &EgressProbe, net_raw: bool) -> EgressResult {
    let mut result = EgressResult {
        ip: Some(p.ip),
        port: p.port,
        started_unix_us: unix_us(),
        duration_ms: p.duration_ms,
        ..Default::default()
    };
    let IpAddr::V4(dest) = p.ip else {
        result.error = Some("the egress witness watches IPv4 only".into());
        return result;
    };
    let route = match interfaces::route_to(p.ip) {
        Ok(Some(route)) => route,
        Ok(None) => {
            result.error = Some(format!("the node has no route to {}", p.ip));
            return result;
        }
        Err(err) => {
            result.error = Some(format!("cannot read the node's route to {}: {err}", p.ip));
            return result;
        }
    };
    describe_route(&mut result, &route);
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
    let mut uplink = Uplink::new(dest, p.port);
    let deadline = Instant::now() + Duration::from_millis(p.duration_ms);
    result.stopped = watch(&socket, route.index, &mut uplink, deadline, p.max_packets).await;
    uplink.fill(&mut result);
    result
}

fn describe_route(result: &mut EgressResult, route: &RouteTo) {
    result.interface = Some(route.interface.clone());
    result.gateway = route.gateway;
    result.node_address = route.source;
}

/// A datagram packet socket for every protocol, registered with the runtime (tokio's UdpSocket
/// takes any datagram fd, as in `capture`); read with `recvfrom`, each packet comes with the
/// index of the interface it crossed.
fn open() -> std::io::Result<tokio::net::UdpSocket> {
    let all = i32::from((libc::ETH_P_ALL as u16).to_be());
    let socket = Socket::new(Domain::PACKET, Type::DGRAM, Some(Protocol::from(all)))?;
    socket.set_nonblocking(true)?;
    tokio::net::UdpSocket::from_std(socket.into())
}

/// Reads packets until the deadline, the budget, or an answer plus the grace.
async fn watch(
    socket: &tokio::net::UdpSocket,
    index: u32,
    uplink: &mut Uplink,
    deadline: Instant,
    max_packets: u32,
) -> CaptureStop {
    let mut buf = [0u8; 2048];
    let (mut matched, mut read) = (0u32, 0u32);
    let mut stop_at = deadline;
    loop {
        let recv = socket.async_io(Interest::READABLE, || {
            nix::sys::socket::recvfrom::<LinkAddr>(socket.as_raw_fd(), &mut buf).map_err(std::io::Error::from)
        });
        let (n, from) = match tokio::time::timeout_at(stop_at.into(), recv).await {
            Ok(Ok(packet)) => packet,
            // A read error (an interface going down) counts against the budget, so that one
            // that repeats cannot spin until the deadline.
            Ok(Err(_)) => (0, None),
            Err(_) if stop_at < deadline => return CaptureStop::Answered,
            Err(_) => return CaptureStop::Window,
        };
        read += 1;
        let on_uplink = from.is_some_and(|a| a.ifindex() == index as usize);
        if on_uplink && uplink.observe(&buf[..n]) {
            matched += 1;
        }
        if matched >= max_packets || read >= max_packets.saturating_mul(UNRELATED_FACTOR) {
            return CaptureStop::PacketLimit;
        }
        if stop_at == deadline && uplink.answered() {
            stop_at = (Instant::now() + GRACE).min(deadline);
        }
    }
}

/// The connections to one outside address and port, as the node's uplink shows them.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Uplink {
    dest: Option<Ipv4Addr>,
    port: u16,
    left: Vec<EgressSource>,
    syn_ack: bool,
    rst: bool,
    icmp: Option<String>,
}

impl Uplink {
    pub fn new(dest: Ipv4Addr, port: u16) -> Self {
        Uplink {
            dest: Some(dest),
            port,
            ..Default::default()
        }
    }

    /// Whether something answered the SYNs that left.
    pub fn answered(&self) -> bool {
        !self.left.is_empty() && (self.syn_ack || self.rst || self.icmp.is_some())
    }

    fn fill(self, result: &mut EgressResult) {
        result.left = self.left;
        result.syn_ack_seen = self.syn_ack;
        result.rst_seen = self.rst;
        result.icmp_seen = self.icmp;
    }

    /// Records one IPv4 packet seen on the uplink; `true` when it belongs to a connection to the
    /// watched address and port.
    pub fn observe(&mut self, packet: &[u8]) -> bool {
        let Some(ip) = Ipv4Packet::new(packet) else {
            return false;
        };
        if ip.get_version() != 4 {
            return false;
        }
        match ip.get_next_level_protocol() {
            IpNextHeaderProtocols::Tcp => self.tcp(&ip),
            IpNextHeaderProtocols::Icmp => self.icmp(&ip),
            _ => false,
        }
    }

    fn tcp(&mut self, ip: &Ipv4Packet) -> bool {
        let Some(tcp) = TcpPacket::new(ip.payload()) else {
            return false;
        };
        let flags = tcp.get_flags();
        let has = |f: u8| flags & f != 0;
        if Some(ip.get_destination()) == self.dest && tcp.get_destination() == self.port {
            if has(TcpFlags::SYN) && !has(TcpFlags::ACK) {
                self.syn_left(IpAddr::V4(ip.get_source()));
            }
            return true;
        }
        if Some(ip.get_source()) == self.dest && tcp.get_source() == self.port {
            self.syn_ack |= has(TcpFlags::SYN) && has(TcpFlags::ACK);
            self.rst |= has(TcpFlags::RST);
            return true;
        }
        false
    }

    fn syn_left(&mut self, source: IpAddr) {
        match self.left.iter_mut().find(|s| s.address == source) {
            Some(s) => s.syns += 1,
            None => self.left.push(EgressSource {
                address: source,
                syns: 1,
            }),
        }
    }

    /// An ICMP error that came back quoting a TCP segment to the watched address and port.
    fn icmp(&mut self, ip: &Ipv4Packet) -> bool {
        let Some(icmp) = IcmpPacket::new(ip.payload()) else {
            return false;
        };
        let kind = icmp.get_icmp_type();
        if kind != IcmpTypes::DestinationUnreachable && kind != IcmpTypes::TimeExceeded {
            return false;
        }
        // Type, code, checksum and 4 unused bytes precede the quoted header.
        let Some(inner) = icmp.payload().get(4..).and_then(Ipv4Packet::new) else {
            return false;
        };
        if Some(inner.get_destination()) != self.dest
            || inner.get_next_level_protocol() != IpNextHeaderProtocols::Tcp
        {
            return false;
        }
        let Some(dst) = inner.payload().get(2..4) else {
            return false;
        };
        if u16::from_be_bytes([dst[0], dst[1]]) != self.port {
            return false;
        }
        self.icmp = Some(format!(
            "type {} code {} from {}",
            kind.0,
            icmp.get_icmp_code().0,
            ip.get_source()
        ));
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DEST: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 10);
    const POD: Ipv4Addr = Ipv4Addr::new(10, 244, 1, 5);
    const NODE: Ipv4Addr = Ipv4Addr::new(172, 18, 0, 2);
    const ROUTER: Ipv4Addr = Ipv4Addr::new(172, 18, 0, 1);

    /// An IPv4/TCP packet without options.
    fn tcp(src: (Ipv4Addr, u16), dst: (Ipv4Addr, u16), flags: u8) -> Vec<u8> {
        let mut p = vec![0x45, 0, 0, 40, 0, 0, 0x40, 0, 64, 6, 0, 0];
        p.extend_from_slice(&src.0.octets());
        p.extend_from_slice(&dst.0.octets());
        p.extend_from_slice(&src.1.to_be_bytes());
        p.extend_from_slice(&dst.1.to_be_bytes());
        p.extend_from_slice(&[0, 0, 0, 1, 0, 0, 0, 0, 0x50, flags, 0xff, 0xff, 0, 0, 0, 0]);
        p
    }

    fn icmp_error(from: Ipv4Addr, quoting: &[u8], kind: u8, code: u8) -> Vec<u8> {
        let mut icmp = vec![kind, code, 0, 0, 0, 0, 0, 0];
        icmp.extend_from_slice(&quoting[..28]);
        let total = u16::try_from(20 + icmp.len()).unwrap();
        let mut outer = vec![0x45, 0, 0, 0, 0, 0, 0, 0, 64, 1, 0, 0];
        outer[2..4].copy_from_slice(&total.to_be_bytes());
        outer.extend_from_slice(&from.octets());
        outer.extend_from_slice(&quoting[12..16]);
        outer.extend_from_slice(&icmp);
        outer
    }

    fn result(uplink: Uplink) -> EgressResult {
        let mut r = EgressResult::default();
        uplink.fill(&mut r);
        r
    }

    #[test]
    fn syns_are_counted_by_the_source_address_they_left_with() {
        let mut uplink = Uplink::new(DEST, 443);
        assert!(uplink.observe(&tcp((NODE, 40000), (DEST, 443), TcpFlags::SYN)));
        assert!(uplink.observe(&tcp((NODE, 40001), (DEST, 443), TcpFlags::SYN)));
        assert!(uplink.observe(&tcp((POD, 40002), (DEST, 443), TcpFlags::SYN)));
        assert!(!uplink.answered());
        let r = result(uplink);
        assert_eq!(
            r.left,
            vec![
                EgressSource {
                    address: IpAddr::V4(NODE),
                    syns: 2
                },
                EgressSource {
                    address: IpAddr::V4(POD),
                    syns: 1
                },
            ]
        );
        assert!(!r.syn_ack_seen && !r.rst_seen && r.icmp_seen.is_none());
    }

    #[test]
    fn a_syn_ack_from_the_destination_is_an_answer() {
        let mut uplink = Uplink::new(DEST, 443);
        uplink.observe(&tcp((NODE, 40000), (DEST, 443), TcpFlags::SYN));
        assert!(uplink.observe(&tcp((DEST, 443), (NODE, 40000), TcpFlags::SYN | TcpFlags::ACK)));
        assert!(uplink.answered());
        assert!(result(uplink).syn_ack_seen);
    }

    #[test]
    fn an_answer_without_a_syn_that_left_is_not_an_answer_to_ours() {
        let mut uplink = Uplink::new(DEST, 443);
        uplink.observe(&tcp((DEST, 443), (NODE, 40000), TcpFlags::RST | TcpFlags::ACK));
        assert!(!uplink.answered());
    }

    #[test]
    fn an_icmp_error_quoting_a_syn_names_its_sender() {
        let mut uplink = Uplink::new(DEST, 443);
        let syn = tcp((NODE, 40000), (DEST, 443), TcpFlags::SYN);
        uplink.observe(&syn);
        assert!(uplink.observe(&icmp_error(ROUTER, &syn, 3, 1)));
        assert!(uplink.answered());
        assert_eq!(
            result(uplink).icmp_seen.as_deref(),
            Some("type 3 code 1 from 172.18.0.1")
        );
    }

    #[test]
    fn other_destinations_ports_and_protocols_are_not_recorded() {
        let mut uplink = Uplink::new(DEST, 443);
        assert!(!uplink.observe(&tcp((NODE, 40000), (DEST, 80), TcpFlags::SYN)));
        assert!(!uplink.observe(&tcp((NODE, 40000), (ROUTER, 443), TcpFlags::SYN)));
        let other = tcp((NODE, 40000), (ROUTER, 443), TcpFlags::SYN);
        assert!(!uplink.observe(&icmp_error(ROUTER, &other, 3, 1)));
        assert!(!uplink.observe(&[0x60, 0, 0, 0]));
        assert_eq!(result(uplink), EgressResult::default());
    }
}
