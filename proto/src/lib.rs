//! Wire types shared by the netdiag agent and the CLI (API version `v1`).
//!
//! Data only: every type here is plain serde data with camelCase JSON, an explicit
//! `kind` tag on every sum type, units in field names (`timeoutMs`, `rttUs`), and
//! tolerance for unknown fields so that an older reader accepts a newer writer.
//! The one piece of logic is [`ProbeRequest::validate`], which both ends share so
//! that a request is judged well-formed by the same rules everywhere.

use std::net::{IpAddr, SocketAddr};

use serde::{Deserialize, Serialize};

/// Version segment of every agent API path.
pub const API_VERSION: &str = "v1";
/// `POST` a [`ProbeRequest`], receive a [`ProbeReport`].
pub const PROBE_PATH: &str = "/v1/probe";
/// `GET` the agent's [`AgentInfo`].
pub const INFO_PATH: &str = "/v1/info";
/// Port the agent's control listener uses unless configured otherwise.
pub const DEFAULT_AGENT_PORT: u16 = 9808;

/// Per-probe timeout used when a request does not give one.
pub const DEFAULT_TIMEOUT_MS: u64 = 1000;
/// Upper bound on any probe's timeout; longer requests are rejected.
pub const MAX_TIMEOUT_MS: u64 = 30_000;
/// Upper bound on probes in one request.
pub const MAX_PROBES_PER_REQUEST: usize = 1024;

/// The cluster DNS Service's own name (in the default cluster domain): every live cluster DNS
/// answers it from its own data, so the check asks it of each DNS pod and the agent's DNS
/// payload asks it of a UDP port.
pub const KUBE_DNS_FQDN: &str = "kube-dns.kube-system.svc.cluster.local.";

fn default_timeout_ms() -> u64 {
    DEFAULT_TIMEOUT_MS
}

/// Which network namespace the probes run in.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "camelCase")]
pub enum ProbeSource {
    /// A namespace file, e.g. `/run/netns/x` or `/proc/123/ns/net`.
    Netns { path: String },
    /// The network namespace of a process.
    Pid { pid: u32 },
    /// Whichever namespace on this node holds this address (a pod's IP).
    #[serde(rename = "podIP")]
    PodIp { ip: IpAddr },
    /// The node's own network namespace.
    Node,
}

impl ProbeSource {
    /// The `kind` tag of this source as it appears in JSON (`netns`, `pid`, `podIP`, `node`).
    pub fn kind(&self) -> &'static str {
        match self {
            ProbeSource::Netns { .. } => "netns",
            ProbeSource::Pid { .. } => "pid",
            ProbeSource::PodIp { .. } => "podIP",
            ProbeSource::Node => "node",
        }
    }
}

/// DNS record type a [`DnsProbe`] asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
pub enum RecordType {
    #[default]
    A,
    #[serde(rename = "AAAA")]
    Aaaa,
}

/// Resolve a name as the namespace's libc would: its resolv.conf, search list and ndots.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DnsProbe {
    pub name: String,
    #[serde(default)]
    pub record_type: RecordType,
    /// Ask this server instead of the resolv.conf nameservers (search list and
    /// ndots still come from resolv.conf). Port 53 when none is given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nameserver: Option<NameserverAddr>,
    #[serde(default = "default_timeout_ms")]
    pub timeout_ms: u64,
}

/// A nameserver given as `10.96.0.10` or `10.96.0.10:53`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum NameserverAddr {
    Ip(IpAddr),
    Socket(SocketAddr),
}

impl NameserverAddr {
    pub fn socket_addr(self) -> SocketAddr {
        match self {
            NameserverAddr::Ip(ip) => SocketAddr::new(ip, 53),
            NameserverAddr::Socket(addr) => addr,
        }
    }
}

/// Open a TCP connection and close it at once.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TcpProbe {
    pub ip: IpAddr,
    pub port: u16,
    /// How long the connect is awaited, counted from the request's arrival at the agent (at most
    /// 50 ms before its probes start; from the probe's own start when they run in waves).
    #[serde(default = "default_timeout_ms")]
    pub timeout_ms: u64,
}

/// Send one datagram (and the same again at half the timeout) and classify what came back.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct UdpProbe {
    pub ip: IpAddr,
    pub port: u16,
    #[serde(default)]
    pub payload: UdpPayload,
    /// How long an answer is awaited, counted as a [`TcpProbe`]'s is.
    #[serde(default = "default_timeout_ms")]
    pub timeout_ms: u64,
}

/// What a [`UdpProbe`] sends: an application that ignores what it cannot parse stays silent, so
/// where the port is well known the datagram is one its servers answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub enum UdpPayload {
    /// A DNS query when the port is 53, else an empty datagram.
    #[default]
    Auto,
    /// A DNS query (A `kube-dns.kube-system.svc.cluster.local.`): cluster DNS answers it from its
    /// own data, any other DNS server at least with NXDOMAIN or REFUSED.
    DnsQuery,
    /// An empty datagram.
    Empty,
}

/// One probe to run in the namespace.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "camelCase")]
pub enum Probe {
    Dns(DnsProbe),
    Tcp(TcpProbe),
    Udp(UdpProbe),
    /// The namespace's listening TCP sockets and bound UDP sockets.
    Listeners,
    /// The namespace's interfaces (addresses, MTU) and routes.
    Interfaces,
    /// The listening sockets of the pod holding `podIp` on this node, whatever the request's
    /// source: one request reads every destination pod of a node. Answered as `listeners`.
    PodListeners(PodListenersProbe),
    /// The largest packet that crosses the path to `ip:port` with DF set.
    PathMtu(PathMtuProbe),
    /// Watch the namespace's interfaces for TCP between `peer` and local port `port`.
    Capture(CaptureProbe),
    /// Watch the node's interface towards an address outside the cluster for the pod's
    /// connections to it: whether they left, with which source address, and what answered.
    /// Always runs in the node's own network namespace, whatever the request's source.
    Egress(EgressProbe),
    /// The node's dataplane state: Service rules for a VIP and conntrack fill. Always runs in
    /// the node's own network namespace, whatever the request's source.
    NodeDataplane(NodeDataplaneProbe),
}

/// Measure the path MTU to `ip:port` on TCP connections of the probe's own (works wherever the
/// target port is admitted; no ICMP echo needed).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PathMtuProbe {
    pub ip: IpAddr,
    pub port: u16,
    /// Bound on the whole measurement (connects and searching), counted as a [`TcpProbe`]'s is.
    #[serde(default = "default_timeout_ms")]
    pub timeout_ms: u64,
}

/// Capture TCP between `peer` and local port `port` (and ICMP to `peer`) on the namespace's
/// interfaces for at most `durationMs` or `maxPackets` packets.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CaptureProbe {
    /// Capture in the namespace of the pod holding this address on the node (so one request
    /// serves every pod of a node); the request's own namespace when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pod_ip: Option<IpAddr>,
    pub peer: IpAddr,
    pub port: u16,
    pub duration_ms: u64,
    #[serde(default = "default_max_packets")]
    pub max_packets: u32,
}

fn default_max_packets() -> u32 {
    256
}

/// Watch the node's interfaces for the TCP connections to `ip:port` that pod `podIp` opened:
/// whether they leave the node, with which source address (the pod's own, or the node's after
/// SNAT), and what comes back (SYN-ACK, RST, ICMP errors), for at most `durationMs` or
/// `maxPackets` packets. The node's route to `ip` is reported beside.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct EgressProbe {
    pub pod_ip: IpAddr,
    pub ip: IpAddr,
    pub port: u16,
    pub duration_ms: u64,
    #[serde(default = "default_max_packets")]
    pub max_packets: u32,
}

/// Upper bound on a capture's packet budget.
pub const MAX_CAPTURE_PACKETS: u32 = 4096;

/// A Service's virtual address as kube-proxy programs it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ServiceVip {
    pub ip: IpAddr,
    pub port: u16,
    pub protocol: Transport,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub struct NodeDataplaneProbe {
    /// Read the node's rules for this VIP; `None` reads conntrack only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service: Option<ServiceVip>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PodListenersProbe {
    pub pod_ip: IpAddr,
}

impl Probe {
    /// The `kind` tag of this probe, for metrics and messages.
    pub fn kind(&self) -> &'static str {
        match self {
            Probe::Dns(_) => "dns",
            Probe::Tcp(_) => "tcp",
            Probe::Udp(_) => "udp",
            Probe::Listeners => "listeners",
            Probe::Interfaces => "interfaces",
            Probe::PodListeners(_) => "podListeners",
            Probe::PathMtu(_) => "pathMtu",
            Probe::Capture(_) => "capture",
            Probe::Egress(_) => "egress",
            Probe::NodeDataplane(_) => "nodeDataplane",
        }
    }

    /// What kind of work this probe is, for whoever schedules or bounds it.
    pub fn class(&self) -> ProbeClass {
        match self {
            Probe::Dns(_) => ProbeClass::Dns,
            Probe::Tcp(_) | Probe::Udp(_) => ProbeClass::Connect,
            Probe::Listeners | Probe::Interfaces | Probe::PodListeners(_) => ProbeClass::Inventory,
            Probe::PathMtu(_) | Probe::Capture(_) | Probe::Egress(_) | Probe::NodeDataplane(_) => {
                ProbeClass::Witness
            }
        }
    }
}

/// The kinds of work a [`Probe`] is ([`Probe::class`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ProbeClass {
    /// A name lookup as the namespace resolves (`dns`).
    Dns,
    /// A connection or datagram exchange to one address (`tcp`, `udp`).
    Connect,
    /// A read of a namespace's state that sends nothing (`listeners`, `interfaces`,
    /// `podListeners`).
    Inventory,
    /// A datapath witness (`pathMtu`, `capture`, `nodeDataplane`).
    Witness,
}

impl ProbeClass {
    /// Whether probes of this class open sockets (every class but the inventories).
    pub fn holds_sockets(self) -> bool {
        self != ProbeClass::Inventory
    }
}

/// `POST /v1/probe` body, and the one-shot mode's input.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ProbeRequest {
    pub source: ProbeSource,
    pub probes: Vec<Probe>,
}

/// Why a [`ProbeRequest`] is not acceptable; the message names the problem.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InvalidRequest(pub String);

impl std::fmt::Display for InvalidRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for InvalidRequest {}

impl ProbeRequest {
    /// Checks what serde cannot: ranges, emptiness, limits.
    pub fn validate(&self) -> Result<(), InvalidRequest> {
        let bad = |msg: String| Err(InvalidRequest(msg));
        match &self.source {
            ProbeSource::Netns { path } if path.is_empty() => {
                return bad("source netns path is empty".into());
            }
            ProbeSource::Pid { pid: 0 } => return bad("source pid 0 is not a process".into()),
            _ => {}
        }
        if self.probes.is_empty() {
            return bad("request has no probes".into());
        }
        if self.probes.len() > MAX_PROBES_PER_REQUEST {
            return bad(format!(
                "request has {} probes, at most {MAX_PROBES_PER_REQUEST} are allowed",
                self.probes.len()
            ));
        }
        for (i, probe) in self.probes.iter().enumerate() {
            let timeout_ms = match probe {
                Probe::Tcp(tcp) => {
                    if tcp.port == 0 {
                        return bad(format!("probes[{i}]: tcp port 0 is not a valid port"));
                    }
                    if tcp.ip.is_unspecified() || tcp.ip.is_multicast() {
                        return bad(format!("probes[{i}]: tcp ip {} is not a unicast address", tcp.ip));
                    }
                    tcp.timeout_ms
                }
                Probe::Udp(udp) => {
                    if udp.port == 0 {
                        return bad(format!("probes[{i}]: udp port 0 is not a valid port"));
                    }
                    if udp.ip.is_unspecified() || udp.ip.is_multicast() {
                        return bad(format!("probes[{i}]: udp ip {} is not a unicast address", udp.ip));
                    }
                    udp.timeout_ms
                }
                Probe::Dns(dns) => {
                    let name = dns.name.trim_end_matches('.');
                    if name.is_empty() {
                        return bad(format!("probes[{i}]: dns name is empty"));
                    }
                    if dns.name.len() > 253 || name.split('.').any(|l| l.is_empty() || l.len() > 63) {
                        return bad(format!(
                            "probes[{i}]: dns name {:?} is not a valid domain name",
                            dns.name
                        ));
                    }
                    if dns.nameserver.is_some_and(|ns| ns.socket_addr().port() == 0) {
                        return bad(format!("probes[{i}]: dns nameserver port 0 is not a valid port"));
                    }
                    dns.timeout_ms
                }
                Probe::PodListeners(p) if p.pod_ip.is_unspecified() || p.pod_ip.is_multicast() => {
                    return bad(format!(
                        "probes[{i}]: podListeners podIp {} is not a unicast address",
                        p.pod_ip
                    ));
                }
                Probe::PathMtu(mtu) => {
                    if mtu.port == 0 {
                        return bad(format!("probes[{i}]: pathMtu port 0 is not a valid port"));
                    }
                    mtu.timeout_ms
                }
                Probe::Capture(capture) => {
                    if capture.max_packets == 0 || capture.max_packets > MAX_CAPTURE_PACKETS {
                        return bad(format!(
                            "probes[{i}]: capture maxPackets {} is out of range 1..={MAX_CAPTURE_PACKETS}",
                            capture.max_packets
                        ));
                    }
                    capture.duration_ms
                }
                Probe::Egress(egress) => {
                    if egress.port == 0 {
                        return bad(format!("probes[{i}]: egress port 0 is not a valid port"));
                    }
                    if egress.max_packets == 0 || egress.max_packets > MAX_CAPTURE_PACKETS {
                        return bad(format!(
                            "probes[{i}]: egress maxPackets {} is out of range 1..={MAX_CAPTURE_PACKETS}",
                            egress.max_packets
                        ));
                    }
                    egress.duration_ms
                }
                Probe::Listeners | Probe::Interfaces | Probe::PodListeners(_) | Probe::NodeDataplane(_) => {
                    continue;
                }
            };
            if timeout_ms == 0 || timeout_ms > MAX_TIMEOUT_MS {
                return bad(format!(
                    "probes[{i}]: timeoutMs {timeout_ms} is out of range 1..={MAX_TIMEOUT_MS}"
                ));
            }
        }
        Ok(())
    }
}

/// Who answered a request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub struct AgentIdentity {
    /// Node the agent runs on.
    pub node: String,
    /// Agent version (crate version).
    pub version: String,
    /// The agent's own pod, `namespace/name`, when it knows it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pod: Option<String>,
}

/// The namespace a request's probes actually ran in.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub struct ResolvedNetns {
    /// Inode of the network namespace (as in `ls -iL /proc/<pid>/ns/net`).
    pub inode: u64,
    /// The file the agent entered.
    pub path: String,
    /// A process living in that namespace, when one was found (its root
    /// filesystem provides the resolv.conf).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pid: Option<u32>,
}

/// `POST /v1/probe` response: one result per requested probe, in request order.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ProbeReport {
    pub agent: AgentIdentity,
    pub netns: ResolvedNetns,
    pub results: Vec<ProbeResult>,
}

/// The result of one probe.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "camelCase")]
pub enum ProbeResult {
    Dns(DnsResult),
    Tcp(TcpResult),
    Udp(UdpResult),
    Listeners(ListenersResult),
    Interfaces(InterfacesResult),
    PathMtu(PathMtuResult),
    Capture(CaptureResult),
    Egress(EgressResult),
    NodeDataplane(NodeDataplaneResult),
}

// ---------------------------------------------------------------- tcp

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TcpResult {
    pub ip: IpAddr,
    pub port: u16,
    pub timeout_ms: u64,
    pub outcome: TcpOutcome,
    /// The source port the connection used, so that a capture at the destination finds it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub local_port: Option<u16>,
    /// When the SYN was sent (the agent's clock, microseconds since the Unix epoch).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub started_unix_us: Option<u64>,
    /// While the connection was not established, a fresh SYN left every 100 ms from a socket of its
    /// own: when the last one did (same clock), so that a capture at the destination that started
    /// late still has one to witness.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_syn_unix_us: Option<u64>,
}

/// What a TCP connect observed. Symptoms are classified, never collapsed:
/// timeout = silent drop, refused = RST, unreachable = no route / ICMP unreachable.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "camelCase")]
pub enum TcpOutcome {
    /// The handshake completed.
    #[serde(rename_all = "camelCase")]
    Connected { rtt_us: u64 },
    /// A TCP RST (or ICMP port-unreachable) answered the SYN.
    #[serde(rename_all = "camelCase")]
    Refused { rtt_us: u64 },
    /// Nothing answered within the timeout.
    #[serde(rename_all = "camelCase")]
    Timeout { after_ms: u64 },
    /// No route, or an ICMP unreachable answered the SYN.
    #[serde(rename_all = "camelCase")]
    Unreachable {
        reason: UnreachableReason,
        #[serde(default)]
        detail: String,
        rtt_us: u64,
    },
    /// The probe could not be carried out (e.g. socket creation failed).
    Error { detail: String },
}

impl TcpOutcome {
    pub fn is_connected(&self) -> bool {
        matches!(self, TcpOutcome::Connected { .. })
    }
}

/// Why a destination was unreachable, as precisely as the kernel tells.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum UnreachableReason {
    /// ICMP host unreachable, or the neighbour did not answer ARP/ND.
    Host,
    /// No route to the network (locally, or ICMP net unreachable).
    Network,
    /// ICMP communication administratively prohibited (a firewall's REJECT).
    AdminProhibited,
    /// ICMP protocol unreachable.
    Protocol,
    /// Unreachable, but the kernel did not say which kind.
    #[serde(other)]
    Other,
}

// ---------------------------------------------------------------- udp

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct UdpResult {
    pub ip: IpAddr,
    pub port: u16,
    pub timeout_ms: u64,
    /// What was sent (never `auto`: the payload the agent chose).
    pub payload: UdpPayload,
    pub outcome: UdpOutcome,
    /// The source port the datagrams used.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub local_port: Option<u16>,
}

/// What a UDP probe observed. Unlike TCP, silence is not a symptom by itself: a server may
/// ignore a datagram it does not understand, so `silent` is judged with the destination's
/// sockets and NetworkPolicy.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "camelCase")]
pub enum UdpOutcome {
    /// A datagram came back from the target.
    #[serde(rename_all = "camelCase")]
    Answered { rtt_us: u64, bytes: u32 },
    /// ICMP port-unreachable came back: nothing is bound to the port there (or a REJECT rule
    /// with that code, as kube-proxy's for a Service without endpoints).
    #[serde(rename_all = "camelCase")]
    Refused { rtt_us: u64 },
    /// No route, or ICMP unreachable other than port-unreachable (admin-prohibited: a REJECT).
    #[serde(rename_all = "camelCase")]
    Unreachable {
        reason: UnreachableReason,
        #[serde(default)]
        detail: String,
        rtt_us: u64,
    },
    /// Neither an answer nor an ICMP error within the timeout.
    #[serde(rename_all = "camelCase")]
    Silent { after_ms: u64 },
    /// The probe could not be carried out (e.g. socket creation failed).
    Error { detail: String },
}

// ---------------------------------------------------------------- dns

/// The resolver configuration a DNS probe used, as parsed from the namespace's resolv.conf.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub struct ResolvConfSummary {
    /// The file that was read (e.g. `/proc/4242/root/etc/resolv.conf`).
    pub path: String,
    pub nameservers: Vec<SocketAddr>,
    pub search: Vec<String>,
    pub ndots: u8,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DnsResult {
    /// The name as asked.
    pub name: String,
    pub record_type: RecordType,
    pub resolv_conf: ResolvConfSummary,
    /// Every query sent, in the order libc sends them.
    pub candidates: Vec<DnsCandidate>,
    /// What the pod's libc would return for the name.
    pub answer: DnsAnswer,
}

/// The final answer: the first candidate that resolved, else the outcome libc reports.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DnsAnswer {
    /// The fully qualified name that produced this outcome, when one did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    pub outcome: DnsOutcome,
}

/// One query: one fully qualified candidate name to one server.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DnsCandidate {
    pub name: String,
    pub server: SocketAddr,
    pub outcome: DnsOutcome,
    pub rtt_us: u64,
    /// The UDP answer had the TC bit set (and the query was retried over TCP).
    #[serde(default)]
    pub truncated: bool,
    /// The CNAME targets the answer led through before its addresses, in order (an ExternalName
    /// Service's `externalName`, a CDN's names).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub cnames: Vec<String>,
}

/// What one DNS query (or the final answer) observed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "camelCase")]
pub enum DnsOutcome {
    Resolved {
        addresses: Vec<IpAddr>,
        ttl: u32,
    },
    /// The name does not exist.
    Nxdomain,
    /// The name exists but has no record of the asked type.
    Nodata,
    Servfail,
    Refused,
    Timeout,
    Error {
        detail: String,
    },
}

impl DnsOutcome {
    pub fn is_resolved(&self) -> bool {
        matches!(self, DnsOutcome::Resolved { .. })
    }
}

// ---------------------------------------------------------------- listeners

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Transport {
    Tcp,
    Udp,
}

/// A listening TCP socket, or a bound UDP socket.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ListeningSocket {
    pub protocol: Transport,
    /// `0.0.0.0`, `::`, `127.0.0.1`, a pod IP, …
    pub local_ip: IpAddr,
    pub local_port: u16,
    /// Socket inode, to find the owning process through `/proc/<pid>/fd`.
    #[serde(default)]
    pub inode: u64,
    /// For an IPv6 socket: whether it is IPv6-only (`IPV6_V6ONLY`), so a `::` wildcard does not
    /// take IPv4 connections. Absent when not known (or not IPv6).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub v6_only: Option<bool>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub struct ListenersResult {
    pub sockets: Vec<ListeningSocket>,
    /// Set when the socket tables could not be read.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

// ---------------------------------------------------------------- interfaces

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Interface {
    pub name: String,
    pub index: u32,
    pub mtu: u32,
    pub up: bool,
    /// `10.244.1.5/32`, `fe80::1/64`, …
    pub addresses: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Route {
    /// `0.0.0.0/0`, `10.244.1.0/24`, …
    pub destination: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gateway: Option<IpAddr>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub device: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mtu: Option<u32>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub struct InterfacesResult {
    pub interfaces: Vec<Interface>,
    pub routes: Vec<Route>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

// ---------------------------------------------------------------- witnesses

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PathMtuResult {
    pub ip: IpAddr,
    pub port: u16,
    pub outcome: PathMtuOutcome,
    /// When the measurement's last SYN was sent (the agent's clock, microseconds since the Unix
    /// epoch): while its first SYNs go unanswered it sends a fresh one every 100 ms, so a capture
    /// at the destination that started late still has one to witness (a reset or an ICMP error
    /// ends the measurement at once).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_syn_unix_us: Option<u64>,
}

/// What the path MTU measurement found. Sizes are IP packet sizes in bytes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "camelCase")]
pub enum PathMtuOutcome {
    #[serde(rename_all = "camelCase")]
    Measured {
        /// MTU of the interface the route to the target leaves by.
        interface_mtu: u32,
        /// The largest packet acknowledged.
        largest_passed_bytes: u32,
        /// The smallest packet never acknowledged; `None` when every size up to the interface
        /// MTU passed.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        smallest_dropped_bytes: Option<u32>,
        /// A smaller path MTU the kernel learned from ICMP fragmentation-needed (no black hole).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        learned_pmtu_bytes: Option<u32>,
    },
    /// The measurement could not say (no connection, no time left, even small packets lost).
    NotMeasured { reason: String },
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub struct CaptureResult {
    pub peer: Option<IpAddr>,
    pub port: u16,
    /// Interfaces watched (`eth0`, or every interface of the namespace).
    #[serde(default)]
    pub interfaces: Vec<String>,
    /// When capturing started (the agent's clock, microseconds since the Unix epoch).
    pub started_unix_us: u64,
    pub duration_ms: u64,
    /// Why capturing stopped; empty when it did not start.
    #[serde(default)]
    pub stopped: CaptureStop,
    pub flows: Vec<CapturedFlow>,
    /// Set when the capture could not run (e.g. no CAP_NET_RAW).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub struct EgressResult {
    pub ip: Option<IpAddr>,
    pub port: u16,
    /// The node's route to `ip`: the interface it leaves by, the next hop (none for an address
    /// on a link of the node) and the node's own address it prefers there.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interface: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gateway: Option<IpAddr>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node_address: Option<IpAddr>,
    /// When capturing started (the agent's clock, microseconds since the Unix epoch).
    pub started_unix_us: u64,
    pub duration_ms: u64,
    #[serde(default)]
    pub stopped: CaptureStop,
    /// The pod's SYNs to `ip:port` seen arriving at the node from the pod's interface.
    #[serde(default)]
    pub from_pod: u32,
    /// The SYNs to `ip:port` the node sent out that are the pod's (its own address, or a source
    /// port one of its SYNs arrived with), by the source address they left with (the pod's own,
    /// or the one SNAT gave them).
    #[serde(default)]
    pub left: Vec<EgressSource>,
    /// SYNs to `ip:port` the node sent out that cannot be tied to the pod (other pods, or SNAT
    /// that changed the source port).
    #[serde(default)]
    pub others: u32,
    /// What came back for the pod's connections that left.
    #[serde(default)]
    pub syn_ack_seen: bool,
    #[serde(default)]
    pub rst_seen: bool,
    /// An ICMP error about them: `type 3 code 1 from 172.18.0.1`, …
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub icmp_seen: Option<String>,
    /// When the first answer came (the agent's clock, microseconds since the Unix epoch).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub answered_unix_us: Option<u64>,
    /// Set when the capture could not run (e.g. no CAP_NET_RAW, no route).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// The SYNs that left with one source address.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct EgressSource {
    pub address: IpAddr,
    pub syns: u32,
}

/// Why a capture stopped. On the wire, a string.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub enum CaptureStop {
    /// The capture did not run (its result has an `error`): `""`.
    #[default]
    #[serde(rename = "")]
    NotStarted,
    /// The capture's duration passed.
    Window,
    /// A connection from the peer was answered (and a short grace passed).
    Answered,
    /// The capture saw as many packets as it was allowed to.
    PacketLimit,
    /// A reason a newer agent gives that this version does not know.
    #[serde(untagged)]
    Other(String),
}

/// Whose rules a [`ServiceRules`] reading comes from. On the wire, a string.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub enum RuleSource {
    /// No mode could be read (the reading has an `error`).
    #[default]
    None,
    /// kube-proxy's IPVS mode, read from `/proc/net/ip_vs`.
    Ipvs,
    /// kube-proxy's nftables mode, read with `nft -j list table`.
    Nftables,
    /// kube-proxy's iptables mode, read with `iptables-save`.
    Iptables,
    /// A source a newer agent reads that this version does not know.
    #[serde(untagged)]
    Other(String),
}

impl CaptureStop {
    /// The wire name.
    pub fn as_str(&self) -> &str {
        match self {
            CaptureStop::NotStarted => "",
            CaptureStop::Window => "window",
            CaptureStop::Answered => "answered",
            CaptureStop::PacketLimit => "packetLimit",
            CaptureStop::Other(other) => other,
        }
    }
}

impl RuleSource {
    /// The wire name.
    pub fn as_str(&self) -> &str {
        match self {
            RuleSource::None => "none",
            RuleSource::Ipvs => "ipvs",
            RuleSource::Nftables => "nftables",
            RuleSource::Iptables => "iptables",
            RuleSource::Other(other) => other,
        }
    }
}

/// Reads a wire name, as deserializing does: a name this version does not know is `Other`.
macro_rules! from_wire_name {
    ($ty:ty) => {
        impl From<&str> for $ty {
            fn from(name: &str) -> Self {
                serde_json::from_value(serde_json::Value::from(name))
                    .unwrap_or_else(|_| <$ty>::Other(name.to_string()))
            }
        }

        /// Compares with a wire name, for code that still holds the names as text.
        impl PartialEq<&str> for $ty {
            fn eq(&self, name: &&str) -> bool {
                self.as_str() == *name
            }
        }

        impl std::fmt::Display for $ty {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.as_str())
            }
        }
    };
}

from_wire_name!(CaptureStop);
from_wire_name!(RuleSource);

/// One connection from the peer as seen on the interface.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub struct CapturedFlow {
    pub peer_port: u16,
    pub syn_seen: bool,
    pub syn_ack_sent: bool,
    pub rst_sent: bool,
    /// An ICMP error about this connection left towards the peer: `type 3 code 13`, …
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub icmp_sent: Option<String>,
    /// The peer's ACK of the SYN-ACK arrived (the reply made it back).
    pub peer_ack_seen: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub struct NodeDataplaneResult {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service_rules: Option<ServiceRules>,
    pub conntrack: ConntrackFill,
}

/// What the node programmed for one VIP.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub struct ServiceRules {
    /// The kube-proxy mode whose rules were read.
    pub source: RuleSource,
    /// A rule matches the VIP:port.
    pub found: bool,
    /// The rule rejects (kube-proxy's rule for a Service without endpoints).
    #[serde(default)]
    pub rejects: bool,
    /// The rule drops (kube-proxy's rule for a Service with `internalTrafficPolicy: Local` and
    /// no endpoint on this node). Absent on the wire when false, as before it was read.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub drops: bool,
    /// `ip:port` the VIP translates to.
    pub endpoints: Vec<SocketAddr>,
    /// Set when the rules could not be read; the other fields then say nothing.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub struct ConntrackFill {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub count: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

// ---------------------------------------------------------------- info & errors

/// What the agent found it can do, discovered once at start-up.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub struct Capabilities {
    /// The agent can enter other network namespaces (CAP_SYS_ADMIN).
    pub setns: bool,
    /// The agent can open raw sockets (CAP_NET_RAW): ICMP evidence.
    pub net_raw: bool,
    /// The agent can read other processes' namespace links (CAP_SYS_PTRACE or same user).
    #[serde(default)]
    pub ptrace: bool,
    /// The agent can read the node's netfilter rules (CAP_NET_ADMIN): the Service-rule witness.
    #[serde(default)]
    pub net_admin: bool,
}

/// `GET /v1/info` response.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub struct AgentInfo {
    pub agent: AgentIdentity,
    pub api_version: String,
    pub capabilities: Capabilities,
    /// The file the agent enters for `{"kind":"node"}`.
    pub node_netns: String,
}

/// The `code` of an [`ApiError`], with the HTTP status each comes with. A client
/// should treat an unknown code by its HTTP status class.
pub mod error_code {
    /// 400: malformed JSON, unknown `kind`, anything [`super::ProbeRequest::validate`] rejects.
    pub const BAD_REQUEST: &str = "badRequest";
    /// 400: a `netns` source path that cannot name a file: empty, not absolute, holding a NUL
    /// byte, a `.` or `..` component, longer than PATH_MAX or with a component longer than
    /// NAME_MAX. Judged from the string alone, before the agent touches the filesystem.
    pub const INVALID_PATH: &str = "invalidPath";
    /// 400: a `pid` source that cannot be a process id (0, or above the kernel's PID_MAX_LIMIT).
    pub const INVALID_PID: &str = "invalidPid";
    /// 403: the source kind (`netns`, `pid`, `podIP`, `node`) is not enabled on this agent
    /// (`--allow-sources`).
    pub const SOURCE_NOT_ALLOWED: &str = "sourceNotAllowed";
    /// 404: a `netns` source path that is not a network namespace the agent may enter: outside
    /// the allowed roots, missing, unreadable, a symlink loop, or not a network namespace file on
    /// nsfs. Every such rejection has the same status, code and message (the path as given and
    /// the allowed roots), so the answer tells nothing about the node's files.
    pub const NETNS_REJECTED: &str = "netnsRejected";
    /// 404: no namespace on the node holds the pod IP, or the process does not exist.
    pub const NAMESPACE_NOT_FOUND: &str = "namespaceNotFound";
    /// 409: several namespaces on the node hold a pod IP and attachment to the node does not decide.
    pub const AMBIGUOUS_NAMESPACE: &str = "ambiguousNamespace";
    /// 408: the request body did not arrive within the agent's body read timeout.
    pub const REQUEST_TIMEOUT: &str = "requestTimeout";
    /// 413: body larger than the agent accepts.
    pub const TOO_LARGE: &str = "tooLarge";
    /// 500: the namespace file cannot be opened or entered although it is one (a capability is missing).
    pub const CANNOT_ENTER_NAMESPACE: &str = "cannotEnterNamespace";
    /// 500: a bug in the agent (a worker thread died).
    pub const INTERNAL: &str = "internal";
    /// 503: too many probe requests in flight, or the request would take the agent past its
    /// budget of sockets in flight; retry shortly.
    pub const OVERLOADED: &str = "overloaded";
    /// 503 (`/readyz` only): the node network namespace cannot be opened.
    pub const NOT_READY: &str = "notReady";
    /// 404: no such API path.
    pub const NOT_FOUND: &str = "notFound";
}

/// Body of every non-2xx agent response.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ApiError {
    /// Machine-readable reason, one of [`error_code`]: `badRequest` (400), `invalidPath` (400),
    /// `invalidPid` (400), `sourceNotAllowed` (403), `netnsRejected` (404),
    /// `namespaceNotFound` (404), `requestTimeout` (408), `ambiguousNamespace` (409: several
    /// namespaces on the node hold a pod IP and attachment to the node does not decide),
    /// `tooLarge` (413), `cannotEnterNamespace` (500), `internal` (500), `overloaded` (503).
    pub code: String,
    /// Human-readable message naming the problem.
    pub message: String,
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn round_trip<T>(value: &T, expected: serde_json::Value)
    where
        T: Serialize + for<'de> Deserialize<'de> + PartialEq + std::fmt::Debug,
    {
        let json = serde_json::to_value(value).unwrap();
        assert_eq!(json, expected);
        let back: T = serde_json::from_value(json).unwrap();
        assert_eq!(&back, value);
    }

    #[test]
    fn probes_fall_into_lookups_connects_inventories_and_witnesses() {
        let ip: IpAddr = "10.0.0.1".parse().unwrap();
        let probe = |json: serde_json::Value| serde_json::from_value::<Probe>(json).unwrap();
        let classes = [
            (
                json!({"kind": "dns", "name": "a", "recordType": "A"}),
                ProbeClass::Dns,
            ),
            (json!({"kind": "tcp", "ip": ip, "port": 80}), ProbeClass::Connect),
            (json!({"kind": "udp", "ip": ip, "port": 53}), ProbeClass::Connect),
            (json!({"kind": "listeners"}), ProbeClass::Inventory),
            (json!({"kind": "interfaces"}), ProbeClass::Inventory),
            (
                json!({"kind": "podListeners", "podIp": ip}),
                ProbeClass::Inventory,
            ),
            (
                json!({"kind": "pathMtu", "ip": ip, "port": 80}),
                ProbeClass::Witness,
            ),
        ];
        for (json, class) in classes {
            let probe = probe(json);
            assert_eq!(probe.class(), class, "{}", probe.kind());
        }
        assert!(!ProbeClass::Inventory.holds_sockets());
        assert!(ProbeClass::Connect.holds_sockets() && ProbeClass::Witness.holds_sockets());
    }

    #[test]
    fn source_kind_is_the_json_tag() {
        for source in [
            ProbeSource::Netns {
                path: "/run/netns/x".into(),
            },
            ProbeSource::Pid { pid: 7 },
            ProbeSource::PodIp {
                ip: "10.0.0.1".parse().unwrap(),
            },
            ProbeSource::Node,
        ] {
            assert_eq!(serde_json::to_value(&source).unwrap()["kind"], source.kind());
        }
    }

    #[test]
    fn every_source_kind_round_trips() {
        round_trip(
            &ProbeSource::Netns {
                path: "/run/netns/x".into(),
            },
            json!({"kind": "netns", "path": "/run/netns/x"}),
        );
        round_trip(&ProbeSource::Pid { pid: 123 }, json!({"kind": "pid", "pid": 123}));
        round_trip(
            &ProbeSource::PodIp {
                ip: "10.244.1.5".parse().unwrap(),
            },
            json!({"kind": "podIP", "ip": "10.244.1.5"}),
        );
        round_trip(&ProbeSource::Node, json!({"kind": "node"}));
    }

    #[test]
    fn every_udp_outcome_round_trips() {
        round_trip(
            &UdpOutcome::Answered { rtt_us: 5, bytes: 12 },
            json!({"kind": "answered", "rttUs": 5, "bytes": 12}),
        );
        round_trip(
            &UdpOutcome::Unreachable {
                reason: UnreachableReason::AdminProhibited,
                detail: "icmp type 3 code 13 from 10.0.0.2".into(),
                rtt_us: 9,
            },
            json!({"kind": "unreachable", "reason": "admin-prohibited",
                   "detail": "icmp type 3 code 13 from 10.0.0.2", "rttUs": 9}),
        );
        round_trip(
            &UdpOutcome::Silent { after_ms: 1000 },
            json!({"kind": "silent", "afterMs": 1000}),
        );
        round_trip(
            &UdpOutcome::Error { detail: "x".into() },
            json!({"kind": "error", "detail": "x"}),
        );
    }

    #[test]
    fn udp_probe_payload_defaults_to_auto_and_port_zero_is_rejected() {
        let probe: Probe =
            serde_json::from_value(json!({"kind": "udp", "ip": "10.0.0.1", "port": 53})).unwrap();
        let Probe::Udp(udp) = &probe else {
            panic!("{probe:?}")
        };
        assert_eq!(
            (udp.payload, udp.timeout_ms),
            (UdpPayload::Auto, DEFAULT_TIMEOUT_MS)
        );
        let request = |probe| ProbeRequest {
            source: ProbeSource::Node,
            probes: vec![probe],
        };
        let zero = Probe::Udp(UdpProbe {
            port: 0,
            ..udp.clone()
        });
        assert_eq!(
            request(zero).validate().unwrap_err().to_string(),
            "probes[0]: udp port 0 is not a valid port"
        );
        let any = Probe::Udp(UdpProbe {
            ip: "0.0.0.0".parse().unwrap(),
            ..udp.clone()
        });
        assert!(
            request(any)
                .validate()
                .unwrap_err()
                .to_string()
                .contains("not a unicast address")
        );
        assert!(request(probe).validate().is_ok());
    }

    #[test]
    fn every_probe_kind_round_trips() {
        round_trip(
            &Probe::Dns(DnsProbe {
                name: "payments.shop".into(),
                record_type: RecordType::Aaaa,
                nameserver: Some(NameserverAddr::Ip("10.96.0.10".parse().unwrap())),
                timeout_ms: 500,
            }),
            json!({"kind": "dns", "name": "payments.shop", "recordType": "AAAA",
                   "nameserver": "10.96.0.10", "timeoutMs": 500}),
        );
        round_trip(
            &Probe::Tcp(TcpProbe {
                ip: "10.0.0.1".parse().unwrap(),
                port: 80,
                timeout_ms: 1000,
            }),
            json!({"kind": "tcp", "ip": "10.0.0.1", "port": 80, "timeoutMs": 1000}),
        );
        round_trip(
            &Probe::Udp(UdpProbe {
                ip: "10.96.0.10".parse().unwrap(),
                port: 53,
                payload: UdpPayload::DnsQuery,
                timeout_ms: 1000,
            }),
            json!({"kind": "udp", "ip": "10.96.0.10", "port": 53, "payload": "dnsQuery", "timeoutMs": 1000}),
        );
        round_trip(&Probe::Listeners, json!({"kind": "listeners"}));
        round_trip(
            &Probe::PodListeners(PodListenersProbe {
                pod_ip: "10.244.2.3".parse().unwrap(),
            }),
            json!({"kind": "podListeners", "podIp": "10.244.2.3"}),
        );
        round_trip(&Probe::Interfaces, json!({"kind": "interfaces"}));
    }

    #[test]
    fn omitted_fields_take_documented_defaults() {
        let probe: Probe = serde_json::from_value(json!({"kind": "dns", "name": "x"})).unwrap();
        let Probe::Dns(dns) = probe else { panic!("not dns") };
        assert_eq!(dns.record_type, RecordType::A);
        assert_eq!(dns.timeout_ms, DEFAULT_TIMEOUT_MS);
        assert_eq!(dns.nameserver, None);
    }

    #[test]
    fn nameserver_accepts_socket_address() {
        let probe: DnsProbe =
            serde_json::from_value(json!({"name": "x", "nameserver": "10.96.0.10:5353"})).unwrap();
        assert_eq!(
            probe.nameserver.unwrap().socket_addr(),
            "10.96.0.10:5353".parse().unwrap()
        );
    }

    #[test]
    fn unknown_fields_are_ignored_but_unknown_kinds_are_rejected() {
        let req: ProbeRequest = serde_json::from_value(json!({
            "source": {"kind": "node", "future": 1},
            "probes": [{"kind": "listeners"}],
            "newField": true
        }))
        .unwrap();
        assert_eq!(req.source, ProbeSource::Node);
        let err = serde_json::from_value::<Probe>(json!({"kind": "sctp"})).unwrap_err();
        assert!(err.to_string().contains("unknown variant `sctp`"), "{err}");
    }

    #[test]
    fn every_tcp_outcome_round_trips() {
        round_trip(
            &TcpOutcome::Connected { rtt_us: 12 },
            json!({"kind": "connected", "rttUs": 12}),
        );
        round_trip(
            &TcpOutcome::Refused { rtt_us: 3 },
            json!({"kind": "refused", "rttUs": 3}),
        );
        round_trip(
            &TcpOutcome::Timeout { after_ms: 1000 },
            json!({"kind": "timeout", "afterMs": 1000}),
        );
        round_trip(
            &TcpOutcome::Unreachable {
                reason: UnreachableReason::AdminProhibited,
                detail: "icmp type 3 code 13 from 10.0.0.1".into(),
                rtt_us: 40,
            },
            json!({"kind": "unreachable", "reason": "admin-prohibited",
                   "detail": "icmp type 3 code 13 from 10.0.0.1", "rttUs": 40}),
        );
        round_trip(
            &TcpOutcome::Error { detail: "x".into() },
            json!({"kind": "error", "detail": "x"}),
        );
    }

    #[test]
    fn unknown_unreachable_reason_reads_as_other() {
        let reason: UnreachableReason = serde_json::from_value(json!("fragmentation-needed")).unwrap();
        assert_eq!(reason, UnreachableReason::Other);
    }

    #[test]
    fn every_dns_outcome_round_trips() {
        round_trip(
            &DnsOutcome::Resolved {
                addresses: vec!["10.96.12.7".parse().unwrap()],
                ttl: 5,
            },
            json!({"kind": "resolved", "addresses": ["10.96.12.7"], "ttl": 5}),
        );
        round_trip(&DnsOutcome::Nxdomain, json!({"kind": "nxdomain"}));
        round_trip(&DnsOutcome::Nodata, json!({"kind": "nodata"}));
        round_trip(&DnsOutcome::Servfail, json!({"kind": "servfail"}));
        round_trip(&DnsOutcome::Refused, json!({"kind": "refused"}));
        round_trip(&DnsOutcome::Timeout, json!({"kind": "timeout"}));
        round_trip(
            &DnsOutcome::Error { detail: "e".into() },
            json!({"kind": "error", "detail": "e"}),
        );
    }

    #[test]
    fn every_result_kind_round_trips() {
        let server: SocketAddr = "10.96.0.10:53".parse().unwrap();
        round_trip(
            &ProbeResult::Dns(DnsResult {
                name: "payments".into(),
                record_type: RecordType::A,
                resolv_conf: ResolvConfSummary {
                    path: "/proc/7/root/etc/resolv.conf".into(),
                    nameservers: vec![server],
                    search: vec!["shop.svc.cluster.local".into()],
                    ndots: 5,
                },
                candidates: vec![DnsCandidate {
                    name: "payments.shop.svc.cluster.local.".into(),
                    server,
                    outcome: DnsOutcome::Nxdomain,
                    rtt_us: 800,
                    truncated: false,
                    cnames: vec![],
                }],
                answer: DnsAnswer {
                    name: None,
                    outcome: DnsOutcome::Nxdomain,
                },
            }),
            json!({"kind": "dns", "name": "payments", "recordType": "A",
                   "resolvConf": {"path": "/proc/7/root/etc/resolv.conf", "nameservers": ["10.96.0.10:53"],
                                  "search": ["shop.svc.cluster.local"], "ndots": 5},
                   "candidates": [{"name": "payments.shop.svc.cluster.local.", "server": "10.96.0.10:53",
                                   "outcome": {"kind": "nxdomain"}, "rttUs": 800, "truncated": false}],
                   "answer": {"outcome": {"kind": "nxdomain"}}}),
        );
        round_trip(
            &ProbeResult::Tcp(TcpResult {
                ip: "10.0.0.1".parse().unwrap(),
                port: 8080,
                timeout_ms: 1000,
                outcome: TcpOutcome::Timeout { after_ms: 1000 },
                local_port: None,
                started_unix_us: None,
                last_syn_unix_us: None,
            }),
            json!({"kind": "tcp", "ip": "10.0.0.1", "port": 8080, "timeoutMs": 1000,
                   "outcome": {"kind": "timeout", "afterMs": 1000}}),
        );
        round_trip(
            &ProbeResult::Udp(UdpResult {
                ip: "10.0.0.1".parse().unwrap(),
                port: 5353,
                timeout_ms: 1000,
                payload: UdpPayload::Empty,
                outcome: UdpOutcome::Refused { rtt_us: 120 },
                local_port: Some(40000),
            }),
            json!({"kind": "udp", "ip": "10.0.0.1", "port": 5353, "timeoutMs": 1000, "payload": "empty",
                   "outcome": {"kind": "refused", "rttUs": 120}, "localPort": 40000}),
        );
        round_trip(
            &ProbeResult::Listeners(ListenersResult {
                sockets: vec![ListeningSocket {
                    protocol: Transport::Tcp,
                    local_ip: "127.0.0.1".parse().unwrap(),
                    local_port: 8080,
                    inode: 99,
                    v6_only: None,
                }],
                error: None,
            }),
            json!({"kind": "listeners", "sockets": [{"protocol": "tcp", "localIp": "127.0.0.1",
                                                     "localPort": 8080, "inode": 99}]}),
        );
        round_trip(
            &ProbeResult::Interfaces(InterfacesResult {
                interfaces: vec![Interface {
                    name: "eth0".into(),
                    index: 2,
                    mtu: 1500,
                    up: true,
                    addresses: vec!["10.244.1.5/32".into()],
                }],
                routes: vec![Route {
                    destination: "0.0.0.0/0".into(),
                    gateway: Some("169.254.1.1".parse().unwrap()),
                    device: Some("eth0".into()),
                    mtu: None,
                }],
                error: None,
            }),
            json!({"kind": "interfaces",
                   "interfaces": [{"name": "eth0", "index": 2, "mtu": 1500, "up": true, "addresses": ["10.244.1.5/32"]}],
                   "routes": [{"destination": "0.0.0.0/0", "gateway": "169.254.1.1", "device": "eth0"}]}),
        );
    }

    #[test]
    fn report_and_info_round_trip() {
        round_trip(
            &ProbeReport {
                agent: AgentIdentity {
                    node: "node-a".into(),
                    version: "0.1.0".into(),
                    pod: None,
                },
                netns: ResolvedNetns {
                    inode: 4026532000,
                    path: "/proc/7/ns/net".into(),
                    pid: Some(7),
                },
                results: vec![],
            },
            json!({"agent": {"node": "node-a", "version": "0.1.0"},
                   "netns": {"inode": 4026532000u64, "path": "/proc/7/ns/net", "pid": 7},
                   "results": []}),
        );
        round_trip(
            &AgentInfo {
                agent: AgentIdentity {
                    node: "n".into(),
                    version: "v".into(),
                    pod: Some("netdiag/agent-x".into()),
                },
                api_version: API_VERSION.into(),
                capabilities: Capabilities {
                    setns: true,
                    net_raw: false,
                    ptrace: true,
                    net_admin: true,
                },
                node_netns: "/proc/1/ns/net".into(),
            },
            json!({"agent": {"node": "n", "version": "v", "pod": "netdiag/agent-x"}, "apiVersion": "v1",
                   "capabilities": {"setns": true, "netRaw": false, "ptrace": true, "netAdmin": true},
                   "nodeNetns": "/proc/1/ns/net"}),
        );
        round_trip(
            &ApiError {
                code: "badRequest".into(),
                message: "m".into(),
            },
            json!({"code": "badRequest", "message": "m"}),
        );
    }

    #[test]
    fn every_witness_probe_kind_round_trips() {
        round_trip(
            &Probe::PathMtu(PathMtuProbe {
                ip: "10.244.2.5".parse().unwrap(),
                port: 8080,
                timeout_ms: 1000,
            }),
            json!({"kind": "pathMtu", "ip": "10.244.2.5", "port": 8080, "timeoutMs": 1000}),
        );
        round_trip(
            &Probe::Capture(CaptureProbe {
                pod_ip: Some("10.244.2.5".parse().unwrap()),
                peer: "10.244.1.5".parse().unwrap(),
                port: 8080,
                duration_ms: 1200,
                max_packets: 64,
            }),
            json!({"kind": "capture", "podIp": "10.244.2.5", "peer": "10.244.1.5", "port": 8080,
                   "durationMs": 1200, "maxPackets": 64}),
        );
        round_trip(
            &Probe::Egress(EgressProbe {
                pod_ip: "10.244.1.5".parse().unwrap(),
                ip: "198.51.100.10".parse().unwrap(),
                port: 443,
                duration_ms: 1200,
                max_packets: 64,
            }),
            json!({"kind": "egress", "podIp": "10.244.1.5", "ip": "198.51.100.10", "port": 443,
                   "durationMs": 1200, "maxPackets": 64}),
        );
        round_trip(
            &Probe::NodeDataplane(NodeDataplaneProbe {
                service: Some(ServiceVip {
                    ip: "10.96.1.1".parse().unwrap(),
                    port: 80,
                    protocol: Transport::Tcp,
                }),
            }),
            json!({"kind": "nodeDataplane", "service": {"ip": "10.96.1.1", "port": 80, "protocol": "tcp"}}),
        );
        round_trip(
            &Probe::NodeDataplane(NodeDataplaneProbe::default()),
            json!({"kind": "nodeDataplane"}),
        );
    }

    #[test]
    fn every_witness_result_kind_round_trips() {
        round_trip(
            &ProbeResult::PathMtu(PathMtuResult {
                ip: "10.244.2.5".parse().unwrap(),
                port: 8080,
                outcome: PathMtuOutcome::Measured {
                    interface_mtu: 1500,
                    largest_passed_bytes: 1200,
                    smallest_dropped_bytes: Some(1210),
                    learned_pmtu_bytes: None,
                },
                last_syn_unix_us: None,
            }),
            json!({"kind": "pathMtu", "ip": "10.244.2.5", "port": 8080,
                   "outcome": {"kind": "measured", "interfaceMtu": 1500, "largestPassedBytes": 1200,
                               "smallestDroppedBytes": 1210}}),
        );
        round_trip(
            &PathMtuOutcome::NotMeasured { reason: "r".into() },
            json!({"kind": "notMeasured", "reason": "r"}),
        );
        round_trip(
            &ProbeResult::Capture(CaptureResult {
                peer: Some("10.244.1.5".parse().unwrap()),
                port: 8080,
                interfaces: vec!["eth0".into()],
                started_unix_us: 7,
                duration_ms: 1200,
                stopped: "window".into(),
                flows: vec![CapturedFlow {
                    peer_port: 40000,
                    syn_seen: true,
                    syn_ack_sent: true,
                    rst_sent: false,
                    icmp_sent: None,
                    peer_ack_seen: false,
                }],
                error: None,
            }),
            json!({"kind": "capture", "peer": "10.244.1.5", "port": 8080, "interfaces": ["eth0"],
                   "startedUnixUs": 7, "durationMs": 1200, "stopped": "window",
                   "flows": [{"peerPort": 40000, "synSeen": true, "synAckSent": true, "rstSent": false,
                              "peerAckSeen": false}]}),
        );
        round_trip(
            &ProbeResult::Egress(EgressResult {
                ip: Some("198.51.100.10".parse().unwrap()),
                port: 443,
                interface: Some("eth0".into()),
                gateway: Some("172.18.0.1".parse().unwrap()),
                node_address: Some("172.18.0.2".parse().unwrap()),
                started_unix_us: 7,
                duration_ms: 1200,
                stopped: "window".into(),
                from_pod: 3,
                left: vec![EgressSource {
                    address: "172.18.0.2".parse().unwrap(),
                    syns: 3,
                }],
                icmp_seen: Some("type 3 code 1 from 172.18.0.1".into()),
                answered_unix_us: Some(9),
                ..Default::default()
            }),
            json!({"kind": "egress", "ip": "198.51.100.10", "port": 443, "interface": "eth0",
                   "gateway": "172.18.0.1", "nodeAddress": "172.18.0.2", "startedUnixUs": 7,
                   "durationMs": 1200, "stopped": "window", "fromPod": 3,
                   "left": [{"address": "172.18.0.2", "syns": 3}], "others": 0, "synAckSeen": false,
                   "rstSeen": false, "icmpSeen": "type 3 code 1 from 172.18.0.1", "answeredUnixUs": 9}),
        );
        round_trip(
            &ProbeResult::NodeDataplane(NodeDataplaneResult {
                service_rules: Some(ServiceRules {
                    source: "iptables".into(),
                    found: true,
                    rejects: false,
                    drops: false,
                    endpoints: vec!["10.244.2.4:8080".parse().unwrap()],
                    error: None,
                }),
                conntrack: ConntrackFill {
                    count: Some(10),
                    max: Some(262144),
                    error: None,
                },
            }),
            json!({"kind": "nodeDataplane",
                   "serviceRules": {"source": "iptables", "found": true, "rejects": false,
                                    "endpoints": ["10.244.2.4:8080"]},
                   "conntrack": {"count": 10, "max": 262144}}),
        );
    }

    #[test]
    fn closed_sets_keep_their_wire_names() {
        for (stop, name) in [
            (CaptureStop::NotStarted, ""),
            (CaptureStop::Window, "window"),
            (CaptureStop::Answered, "answered"),
            (CaptureStop::PacketLimit, "packetLimit"),
        ] {
            round_trip(&stop, json!(name));
            assert_eq!(stop.as_str(), name);
            assert_eq!(CaptureStop::from(name), stop);
        }
        for (source, name) in [
            (RuleSource::None, "none"),
            (RuleSource::Ipvs, "ipvs"),
            (RuleSource::Nftables, "nftables"),
            (RuleSource::Iptables, "iptables"),
        ] {
            round_trip(&source, json!(name));
            assert_eq!(source.as_str(), name);
            assert_eq!(RuleSource::from(name), source);
        }
    }

    #[test]
    fn a_name_a_newer_agent_sends_reads_as_other_and_is_sent_on_unchanged() {
        round_trip(&CaptureStop::Other("bpfLimit".into()), json!("bpfLimit"));
        round_trip(&RuleSource::Other("ebpf".into()), json!("ebpf"));
        assert_eq!(RuleSource::from("ebpf"), RuleSource::Other("ebpf".into()));
        assert!(CaptureStop::Window == "window" && CaptureStop::Window != "answered");
    }

    #[test]
    fn a_capture_that_did_not_run_or_an_old_result_without_stopped_reads_as_not_started() {
        let failed = CaptureResult {
            error: Some("no CAP_NET_RAW".into()),
            ..Default::default()
        };
        let json = serde_json::to_value(&failed).unwrap();
        assert_eq!(json["stopped"], json!(""));
        let old: CaptureResult = serde_json::from_value(json!({"peer": null, "port": 80,
            "startedUnixUs": 0, "durationMs": 0, "flows": []}))
        .unwrap();
        assert_eq!(old.stopped, CaptureStop::NotStarted);
    }

    #[test]
    fn tcp_result_without_the_new_fields_still_reads() {
        let old: ProbeResult = serde_json::from_value(json!({"kind": "tcp", "ip": "10.0.0.1", "port": 80,
            "timeoutMs": 1000, "outcome": {"kind": "connected", "rttUs": 5}}))
        .unwrap();
        let ProbeResult::Tcp(t) = old else {
            panic!("not tcp")
        };
        assert_eq!((t.local_port, t.started_unix_us), (None, None));
    }

    #[test]
    fn capture_packet_budget_is_bounded() {
        let capture = |max_packets| {
            request(vec![Probe::Capture(CaptureProbe {
                pod_ip: None,
                peer: "10.0.0.1".parse().unwrap(),
                port: 80,
                duration_ms: 100,
                max_packets,
            })])
            .validate()
        };
        assert!(capture(64).is_ok());
        assert!(capture(0).unwrap_err().to_string().contains("maxPackets"));
        assert!(capture(MAX_CAPTURE_PACKETS + 1).is_err());
    }

    fn request(probes: Vec<Probe>) -> ProbeRequest {
        ProbeRequest {
            source: ProbeSource::Node,
            probes,
        }
    }

    #[test]
    fn port_zero_is_rejected_with_its_index() {
        let err = request(vec![
            Probe::Listeners,
            Probe::Tcp(TcpProbe {
                ip: "10.0.0.1".parse().unwrap(),
                port: 0,
                timeout_ms: 10,
            }),
        ])
        .validate()
        .unwrap_err();
        assert_eq!(err.to_string(), "probes[1]: tcp port 0 is not a valid port");
    }

    #[test]
    fn empty_and_oversized_requests_are_rejected() {
        assert_eq!(
            request(vec![]).validate().unwrap_err().to_string(),
            "request has no probes"
        );
        let many = vec![Probe::Listeners; MAX_PROBES_PER_REQUEST + 1];
        assert!(
            request(many)
                .validate()
                .unwrap_err()
                .to_string()
                .contains("at most 1024")
        );
    }

    #[test]
    fn timeouts_outside_range_are_rejected() {
        for timeout_ms in [0, MAX_TIMEOUT_MS + 1] {
            let err = request(vec![Probe::Tcp(TcpProbe {
                ip: "10.0.0.1".parse().unwrap(),
                port: 1,
                timeout_ms,
            })])
            .validate()
            .unwrap_err();
            assert!(err.to_string().contains("timeoutMs"), "{err}");
        }
    }

    #[test]
    fn malformed_dns_names_are_rejected_and_fqdns_accepted() {
        let dns = |name: &str| {
            request(vec![Probe::Dns(DnsProbe {
                name: name.into(),
                record_type: RecordType::A,
                nameserver: None,
                timeout_ms: 100,
            })])
            .validate()
        };
        assert!(dns("payments.shop.svc.cluster.local.").is_ok());
        assert!(dns("payments").is_ok());
        assert!(dns("").is_err());
        assert!(dns("a..b").is_err());
        assert!(dns(&"x".repeat(64)).is_err());
    }

    #[test]
    fn valid_request_passes() {
        let req = ProbeRequest {
            source: ProbeSource::PodIp {
                ip: "10.244.1.5".parse().unwrap(),
            },
            probes: vec![Probe::Tcp(TcpProbe {
                ip: "10.96.0.1".parse().unwrap(),
                port: 443,
                timeout_ms: 1000,
            })],
        };
        assert!(req.validate().is_ok());
    }
}
