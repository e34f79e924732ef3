//! The `egress` probe: where a pod's connection to an address outside the cluster leaves the
//! node, and what comes back there.
//!
//! Runs in the node's network namespace. The kernel's route to the address (`RTM_GETROUTE`) names
//! the interface, next hop and preferred source; an `AF_PACKET` socket, filtered in the kernel to
//! IPv4 TCP to or from the address and ICMP, then watches every interface of the node (the
//! receive address names each packet's interface and direction). The pod's SYNs are seen
//! arriving from its interface; the node's copies of them leaving by whichever interface its
//! routing (policy routing included: some CNIs route each pod by rules of its own) chose, with
//! the source address they leave with: the pod's own when nothing translated them, the node's
//! (or an egress address) after SNAT. A SYN that left is the pod's when it carries the pod's
//! address or a source port one of the pod's SYNs arrived with (SNAT usually keeps the port);
//! others (other pods' connections to the same address, or SNAT that changed the port) are only
//! counted, and only answers to the pod's count. Needs CAP_NET_RAW. Bounded by the probe's
//! duration and packet budget; it stops shortly after an answer. Parsing is pure
//! ([`EgressFlows::observe`]) and tested on byte fixtures.

use std::collections::BTreeSet;
use std::net::{IpAddr, Ipv4Addr};
use std::os::fd::AsRawFd;
use std::time::{Duration, Instant};

use netdiag_proto::{CaptureStop, EgressProbe, EgressResult, EgressSource};
use nix::libc;
use nix::sys::socket::LinkAddr;
use pnet_packet::Packet;
use pnet_packet::ip::IpNextHeaderProtocols;
use pnet_packet::ipv4::Ipv4Packet;
use pnet_packet::tcp::{TcpFlags, TcpPacket};
use socket2::{Domain, Protocol, SockFilter, Socket, Type};
use tokio::io::Interest;

use crate::capture::unix_us;
use crate::interfaces::{self, RouteTo};
use crate::netns::{self, NetnsFile};
use crate::packets::icmp_error_quoting_tcp;

/// After an answer, how long to keep watching (a reset often follows an ICMP error, or the
/// reverse) before stopping.
const GRACE: Duration = Duration::from_millis(50);
/// Unrelated packets read at most, per packet of the budget.
const UNRELATED_FACTOR: u32 = 16;
/// `sll_pkttype` of a packet the node sends out (linux/if_packet.h).
const PACKET_OUTGOING: u8 = 4;

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
    let (IpAddr::V4(dest), IpAddr::V4(pod)) = (p.ip, p.pod_ip) else {
        result.error = Some("the egress witness watches IPv4 only".into());
        return result;
    };
    let route = match interfaces::route_to(p.ip) {
        Ok(Some(route)) => route,
        Ok(None) => {
            result.error = Some(format!(
                "the node's routing sends nothing to {} out by an interface (no route, or a local one)",
                p.ip
            ));
            return result;
        }
        Err(err) => {
            result.error = Some(format!("cannot read the node's route to {}: {err}", p.ip));
            return result;
        }
    };
    if !net_raw {
        describe_route(&mut result, &route, None);
        result.error = Some(
            "the agent lacks CAP_NET_RAW (add NET_RAW to the container's securityContext.capabilities.add)"
                .into(),
        );
        return result;
    }
    let socket = match open(dest) {
        Ok(s) => s,
        Err(err) => {
            describe_route(&mut result, &route, None);
            result.error = Some(format!("cannot open a packet socket: {err}"));
            return result;
        }
    };
    result.started_unix_us = unix_us();
    let mut flows = EgressFlows::new(pod, dest, p.port);
    let deadline = Instant::now() + Duration::from_millis(p.duration_ms);
    let watched = watch(&socket, &mut flows, deadline, p.max_packets).await;
    describe_route(&mut result, &route, flows.left_by);
    match watched {
        Ok(stopped) => result.stopped = stopped,
        Err(why) => result.error = Some(why),
    }
    flows.fill(&mut result);
    result
}

/// The interface the SYNs left by (else the route's), and the route's next hop and source when
/// they left by the route's interface: a pod routed by rules of its own may leave elsewhere, by
/// a next hop this route does not name.
fn describe_route(result: &mut EgressResult, route: &RouteTo, left_by: Option<u32>) {
    match left_by {
        Some(index) if index != route.index => {
            result.interface = Some(interfaces::interface_name(index));
        }
        _ => {
            result.interface = Some(route.interface.clone());
            result.gateway = route.gateway;
            result.node_address = route.source;
        }
    }
}

/// A datagram packet socket for every protocol, with a kernel filter that passes only what the
/// watch reads ([`filter`]), registered with the runtime (tokio's UdpSocket takes any datagram
/// fd, as in `capture`); read with `recvfrom`, each packet comes with the index of the interface
/// it crossed and its direction.
fn open(dest: Ipv4Addr) -> std::io::Result<tokio::net::UdpSocket> {
    let all = i32::from((libc::ETH_P_ALL as u16).to_be());
    let socket = Socket::new(Domain::PACKET, Type::DGRAM, Some(Protocol::from(all)))?;
    socket.attach_filter(&filter(dest))?;
    socket.set_nonblocking(true)?;
    tokio::net::UdpSocket::from_std(socket.into())
}

/// The kernel filter of the watch's socket ([`program`]).
fn filter(dest: Ipv4Addr) -> Vec<SockFilter> {
    program(dest)
        .iter()
        .map(|&(code, jt, jf, k)| SockFilter::new(code, jt, jf, k))
        .collect()
}

/// A classic BPF program over the IP packet (a datagram packet socket has no link header), as
/// (code, jump if true, jump if false, k): accept IPv4 ICMP, and IPv4 TCP from or to `dest`; drop
/// everything else, so that a busy node's other traffic neither reaches the agent nor uses up
/// the packet budget.
fn program(dest: Ipv4Addr) -> [(u16, u8, u8, u32); 12] {
    const LDB: u16 = 0x30; // BPF_LD | BPF_B | BPF_ABS
    const LDW: u16 = 0x20; // BPF_LD | BPF_W | BPF_ABS
    const AND: u16 = 0x54; // BPF_ALU | BPF_AND | BPF_K
    const JEQ: u16 = 0x15; // BPF_JMP | BPF_JEQ | BPF_K
    const RET: u16 = 0x06; // BPF_RET | BPF_K
    let dest = u32::from(dest);
    // Jump offsets count from the next instruction: 10 accepts, 11 drops.
    [
        (LDB, 0, 0, 0),
        (AND, 0, 0, 0xf0),
        (JEQ, 0, 8, 0x40), // IPv4, else drop
        (LDB, 0, 0, 9),
        (JEQ, 5, 0, 1), // ICMP: accept
        (JEQ, 0, 5, 6), // TCP, else drop
        (LDW, 0, 0, 12),
        (JEQ, 2, 0, dest), // from dest: accept
        (LDW, 0, 0, 16),
        (JEQ, 0, 1, dest), // to dest: accept, else drop
        (RET, 0, 0, 0x0004_0000),
        (RET, 0, 0, 0),
    ]
}

/// Reads packets until the deadline, the budget, or an answer plus the grace. A packet whose
/// interface and direction the kernel's address does not give ends the watch: without them a
/// SYN leaving cannot be told from one arriving.
async fn watch(
    socket: &tokio::net::UdpSocket,
    flows: &mut EgressFlows,
    deadline: Instant,
    max_packets: u32,
) -> Result<CaptureStop, String> {
    let mut buf = [0u8; 2048];
    let (mut matched, mut read) = (0u32, 0u32);
    let mut stop_at = deadline;
    loop {
        let recv = socket.async_io(Interest::READABLE, || {
            nix::sys::socket::recvfrom::<LinkAddr>(socket.as_raw_fd(), &mut buf).map_err(std::io::Error::from)
        });
        let (n, from) = match tokio::time::timeout_at(stop_at.into(), recv).await {
            Ok(Ok(packet)) => packet,
            Ok(Err(err)) => return Err(format!("reading the packet socket failed: {err}")),
            Err(_) if stop_at < deadline => return Ok(CaptureStop::Answered),
            Err(_) => return Ok(CaptureStop::Window),
        };
        read += 1;
        let Some(link) = from else {
            return Err("the kernel's packet address does not say which interface a packet crossed".into());
        };
        let crossing = Crossing {
            ifindex: u32::try_from(link.ifindex()).unwrap_or(0),
            outgoing: link.pkttype() == PACKET_OUTGOING,
        };
        if flows.observe(&buf[..n], crossing, unix_us()) {
            matched += 1;
        }
        if matched >= max_packets || read >= max_packets.saturating_mul(UNRELATED_FACTOR) {
            return Ok(CaptureStop::PacketLimit);
        }
        if stop_at == deadline && flows.answered() {
            stop_at = (Instant::now() + GRACE).min(deadline);
        }
    }
}

/// Where a packet crossed the node: its interface, and whether the node was sending it out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Crossing {
    pub ifindex: u32,
    pub outgoing: bool,
}

/// The pod's connections to one outside address and port, as the node's interfaces show them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EgressFlows {
    pod: Ipv4Addr,
    dest: Ipv4Addr,
    port: u16,
    /// The source ports of the pod's SYNs seen arriving, and how many arrived.
    pod_ports: BTreeSet<u16>,
    from_pod: u32,
    /// The interface the pod's first SYN left the node by.
    pub left_by: Option<u32>,
    /// The (address, port) each of the pod's SYNs left with; what answers one of these is the
    /// pod's answer.
    sent_as: BTreeSet<(Ipv4Addr, u16)>,
    left: Vec<EgressSource>,
    others: u32,
    syn_ack: bool,
    rst: bool,
    icmp: Option<String>,
    answered_at: Option<u64>,
}

impl EgressFlows {
    pub fn new(pod: Ipv4Addr, dest: Ipv4Addr, port: u16) -> Self {
        EgressFlows {
            pod,
            dest,
            port,
            pod_ports: BTreeSet::new(),
            from_pod: 0,
            left_by: None,
            sent_as: BTreeSet::new(),
            left: vec![],
            others: 0,
            syn_ack: false,
            rst: false,
            icmp: None,
            answered_at: None,
        }
    }

    /// Whether something answered the pod's SYNs that left.
    pub fn answered(&self) -> bool {
        self.answered_at.is_some()
    }

    fn fill(self, result: &mut EgressResult) {
        result.from_pod = self.from_pod;
        result.left = self.left;
        result.others = self.others;
        result.syn_ack_seen = self.syn_ack;
        result.rst_seen = self.rst;
        result.icmp_seen = self.icmp;
        result.answered_unix_us = self.answered_at;
    }

    /// Records one IPv4 packet that crossed the node at `now_us`; `true` when it belongs to a
    /// connection to the watched address and port.
    pub fn observe(&mut self, packet: &[u8], crossing: Crossing, now_us: u64) -> bool {
        let Some(ip) = Ipv4Packet::new(packet) else {
            return false;
        };
        if ip.get_version() != 4 {
            return false;
        }
        match ip.get_next_level_protocol() {
            IpNextHeaderProtocols::Tcp => self.tcp(&ip, crossing, now_us),
            IpNextHeaderProtocols::Icmp if !crossing.outgoing => self.icmp(&ip, now_us),
            _ => false,
        }
    }

    fn tcp(&mut self, ip: &Ipv4Packet, crossing: Crossing, now_us: u64) -> bool {
        let Some(tcp) = TcpPacket::new(ip.payload()) else {
            return false;
        };
        let flags = tcp.get_flags();
        let syn = flags & TcpFlags::SYN != 0 && flags & TcpFlags::ACK == 0;
        let (source, source_port) = (ip.get_source(), tcp.get_source());
        if ip.get_destination() == self.dest && tcp.get_destination() == self.port {
            match (syn, crossing.outgoing) {
                (true, false) if source == self.pod => {
                    self.from_pod += 1;
                    self.pod_ports.insert(source_port);
                }
                (true, true) => self.syn_left(source, source_port, crossing.ifindex),
                _ => {}
            }
            return true;
        }
        let answers_ours = self
            .sent_as
            .contains(&(ip.get_destination(), tcp.get_destination()));
        if ip.get_source() == self.dest && tcp.get_source() == self.port && !crossing.outgoing && answers_ours
        {
            self.syn_ack |= flags & TcpFlags::SYN != 0 && flags & TcpFlags::ACK != 0;
            self.rst |= flags & TcpFlags::RST != 0;
            self.answered_at.get_or_insert(now_us);
            return true;
        }
        false
    }

    /// A SYN the node sent out: the pod's when it carries the pod's address or the source port
    /// one of the pod's SYNs arrived with.
    fn syn_left(&mut self, source: Ipv4Addr, port: u16, ifindex: u32) {
        if source != self.pod && !self.pod_ports.contains(&port) {
            self.others += 1;
            return;
        }
        self.left_by.get_or_insert(ifindex);
        self.sent_as.insert((source, port));
        let address = IpAddr::V4(source);
        match self.left.iter_mut().find(|s| s.address == address) {
            Some(s) => s.syns += 1,
            None => self.left.push(EgressSource { address, syns: 1 }),
        }
    }

    /// An ICMP error that came back quoting one of the pod's SYNs that left.
    fn icmp(&mut self, ip: &Ipv4Packet, now_us: u64) -> bool {
        let Some((kind, quoted)) = icmp_error_quoting_tcp(ip) else {
            return false;
        };
        let ours = self.sent_as.contains(&(quoted.source, quoted.source_port));
        if quoted.destination != self.dest || quoted.destination_port != self.port || !ours {
            return false;
        }
        self.icmp = Some(format!("{kind} from {}", ip.get_source()));
        self.answered_at.get_or_insert(now_us);
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::packets::fixtures::{icmp_error, tcp};

    const DEST: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 10);
    const POD: Ipv4Addr = Ipv4Addr::new(10, 244, 1, 5);
    const OTHER_POD: Ipv4Addr = Ipv4Addr::new(10, 244, 1, 6);
    const NODE: Ipv4Addr = Ipv4Addr::new(172, 18, 0, 2);
    const ROUTER: Ipv4Addr = Ipv4Addr::new(172, 18, 0, 1);
    /// Leaving the node by its uplink (index 2), and coming in there.
    const OUT: Crossing = Crossing {
        ifindex: 2,
        outgoing: true,
    };
    const IN: Crossing = Crossing {
        ifindex: 2,
        outgoing: false,
    };
    /// A SYN coming in from a pod's interface (index 7), before the node forwards it.
    const FROM_POD: Crossing = Crossing {
        ifindex: 7,
        outgoing: false,
    };

    fn result(flows: EgressFlows) -> EgressResult {
        let mut r = EgressResult::default();
        flows.fill(&mut r);
        r
    }

    /// The pod's SYN from `port` arrives at the node and leaves masqueraded as NODE:`port`.
    fn masqueraded(flows: &mut EgressFlows, port: u16) {
        assert!(flows.observe(&tcp((POD, port), (DEST, 443), TcpFlags::SYN), FROM_POD, 1));
        assert!(flows.observe(&tcp((NODE, port), (DEST, 443), TcpFlags::SYN), OUT, 2));
    }

    #[test]
    fn the_pods_syns_are_counted_arriving_and_leaving_by_the_address_they_left_with() {
        let mut flows = EgressFlows::new(POD, DEST, 443);
        masqueraded(&mut flows, 40000);
        masqueraded(&mut flows, 40001);
        // Untranslated: the pod's own address leaving.
        assert!(flows.observe(&tcp((POD, 40002), (DEST, 443), TcpFlags::SYN), OUT, 3));
        assert_eq!(flows.left_by, Some(2));
        assert!(!flows.answered());
        let r = result(flows);
        assert_eq!(r.from_pod, 2);
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
        assert_eq!(r.others, 0);
    }

    #[test]
    fn other_pods_connections_to_the_address_are_counted_apart_and_their_answers_ignored() {
        let mut flows = EgressFlows::new(POD, DEST, 443);
        // Another pod's SYN, masqueraded with its own port, and the answer to it.
        flows.observe(&tcp((OTHER_POD, 50000), (DEST, 443), TcpFlags::SYN), FROM_POD, 1);
        flows.observe(&tcp((NODE, 50000), (DEST, 443), TcpFlags::SYN), OUT, 2);
        flows.observe(
            &tcp((DEST, 443), (NODE, 50000), TcpFlags::SYN | TcpFlags::ACK),
            IN,
            3,
        );
        assert!(!flows.answered());
        let r = result(flows);
        assert_eq!((r.from_pod, r.others), (0, 1));
        assert!(r.left.is_empty() && !r.syn_ack_seen);
    }

    #[test]
    fn a_syn_ack_to_the_pods_connection_is_its_answer_with_the_time_it_came() {
        let mut flows = EgressFlows::new(POD, DEST, 443);
        masqueraded(&mut flows, 40000);
        assert!(flows.observe(
            &tcp((DEST, 443), (NODE, 40000), TcpFlags::SYN | TcpFlags::ACK),
            IN,
            9
        ));
        assert!(flows.answered());
        // The node forwarding it on to the pod is not a second answer from outside.
        let towards_pod = Crossing {
            ifindex: 7,
            outgoing: true,
        };
        flows.observe(&tcp((DEST, 443), (POD, 40000), TcpFlags::RST), towards_pod, 10);
        let r = result(flows);
        assert!(r.syn_ack_seen && !r.rst_seen);
        assert_eq!(r.answered_unix_us, Some(9));
    }

    #[test]
    fn an_answer_without_a_syn_of_the_pods_that_left_is_not_its_answer() {
        let mut flows = EgressFlows::new(POD, DEST, 443);
        flows.observe(
            &tcp((DEST, 443), (NODE, 40000), TcpFlags::RST | TcpFlags::ACK),
            IN,
            1,
        );
        assert!(!flows.answered());
    }

    #[test]
    fn an_icmp_error_quoting_the_pods_syn_names_its_sender() {
        let mut flows = EgressFlows::new(POD, DEST, 443);
        masqueraded(&mut flows, 40000);
        let left = tcp((NODE, 40000), (DEST, 443), TcpFlags::SYN);
        assert!(flows.observe(&icmp_error(ROUTER, &left, 3, 1), IN, 5));
        assert!(flows.answered());
        assert_eq!(
            result(flows).icmp_seen.as_deref(),
            Some("type 3 code 1 from 172.18.0.1")
        );
    }

    #[test]
    fn other_destinations_ports_and_protocols_are_not_recorded() {
        let mut flows = EgressFlows::new(POD, DEST, 443);
        assert!(!flows.observe(&tcp((NODE, 40000), (DEST, 80), TcpFlags::SYN), OUT, 1));
        assert!(!flows.observe(&tcp((NODE, 40000), (ROUTER, 443), TcpFlags::SYN), OUT, 1));
        let other = tcp((NODE, 40000), (ROUTER, 443), TcpFlags::SYN);
        assert!(!flows.observe(&icmp_error(ROUTER, &other, 3, 1), IN, 1));
        assert!(!flows.observe(&[0x60, 0, 0, 0], OUT, 1));
        assert_eq!(result(flows), EgressResult::default());
    }

    #[test]
    fn the_kernel_filter_passes_tcp_from_or_to_the_address_and_icmp_only() {
        let program = program(DEST);
        // Runs the program on a packet: enough of classic BPF for the instructions it uses.
        let run = |packet: &[u8]| -> u32 {
            let (mut pc, mut a) = (0usize, 0u32);
            loop {
                let (code, jt, jf, k) = program[pc];
                pc += 1;
                match code {
                    0x30 => a = u32::from(packet[k as usize]),
                    0x20 => {
                        let i = k as usize;
                        a = u32::from_be_bytes([packet[i], packet[i + 1], packet[i + 2], packet[i + 3]]);
                    }
                    0x54 => a &= k,
                    0x15 => pc += usize::from(if a == k { jt } else { jf }),
                    0x06 => return k,
                    other => panic!("opcode {other:#x}"),
                }
            }
        };
        assert_ne!(run(&tcp((POD, 1), (DEST, 443), TcpFlags::SYN)), 0);
        assert_ne!(run(&tcp((DEST, 443), (NODE, 1), TcpFlags::SYN)), 0);
        assert_eq!(run(&tcp((POD, 1), (ROUTER, 443), TcpFlags::SYN)), 0);
        assert_ne!(run(&icmp_error(ROUTER, &tcp((NODE, 1), (DEST, 443), 2), 3, 1)), 0);
        let mut udp = tcp((POD, 1), (DEST, 443), 0);
        udp[9] = 17;
        assert_eq!(run(&udp), 0);
        assert_eq!(run(&[0x60, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]), 0);
    }
}
