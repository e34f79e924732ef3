//! The probe engine: validate a request, locate its namespace, run every probe there.
//!
//! The HTTP server and the one-shot mode both call [`Engine::run`], so they share one code path.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt;

use netdiag_proto::{
    API_VERSION, AgentIdentity, AgentInfo, ApiError, Capabilities, DnsAnswer, DnsOutcome, DnsProbe,
    DnsResult, InterfacesResult, InvalidRequest, ListenersResult, Probe, ProbeClass, ProbeReport,
    ProbeRequest, ProbeResult, ProbeSource, ResolvConfSummary, error_code,
};
use thiserror::Error;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::access::{Access, AccessError};
use crate::locate::{self, LocateError, Locator};
use crate::memory::Activity;
use crate::metrics::Metrics;
use crate::netns::{self, NetnsError};
use crate::{capture, dns, egress, interfaces, listeners, noderules, pmtu, tcp, udp};

#[derive(Debug, Error)]
pub enum EngineError {
    #[error("{0}")]
    BadRequest(#[from] InvalidRequest),
    #[error(transparent)]
    Access(#[from] AccessError),
    #[error(transparent)]
    Locate(#[from] LocateError),
    #[error(transparent)]
    Netns(#[from] NetnsError),
    #[error("the agent is already running {0} probe requests; retry shortly")]
    Overloaded(usize),
    #[error(
        "the request needs {need} sockets at once and the agent's budget of {budget} sockets in flight \
         is in use by other requests; retry shortly"
    )]
    SocketBudget { need: u32, budget: u32 },
}

/// Runs `probes` in the `located` namespace, results in request order, with the process whose
/// files stand for the pod's. The DNS probes run on a worker of their own: on the worker of the
/// connects, a query's answer waited for hundreds of connects to be made before it was read (at
/// 300 endpoints, 50 to 80 ms for a 1 ms answer). So do the inventories and witnesses: behind
/// a hundred and fifty connects, the node's rules and the path MTU started 35 ms late and the
/// connects waited for the inventories. `held` (the request's permits) lives as long as the
/// workers' work.
async fn run_located(
    located: &locate::Located,
    probes: Vec<Probe>,
    pod_sockets: BTreeMap<IpAddr, ListenersResult>,
    in_flight: usize,
    wave: Wave,
    held: impl Send + Sync + 'static,
) -> Result<(Option<u32>, Vec<(ProbeResult, Duration)>), NetnsError> {
    let pids = located.pids.clone();
    // Looks into pod filesystems: blocking.
    let pid = tokio::task::spawn_blocking(move || locate::pick_pid(&pids))
        .await
        .ok()
        .flatten();
    let (dns, lanes) = lanes(probes, connect_lanes(in_flight, cpus()));
    let network = dns.len() + lanes.iter().map(|lane| network_probes(lane)).sum::<usize>();
    let netns_name = format!("{} (inode {})", located.netns.path(), located.netns.inode());
    let held = Arc::new(held);
    let held_by_dns = held.clone();
    let dns_worker = async {
        if dns.is_empty() {
            return Ok(vec![]);
        }
        netns::run_in(&located.netns, move || async move {
            let _held = held_by_dns;
            let conf = pod_resolv_conf(pid, &netns_name);
            let runs = dns.iter().map(|(i, probe)| {
                let conf = Some(conf.clone());
                async move {
                    let start = Instant::now();
                    let result = dns_probe(probe, conf).await;
                    (*i, (result, start.elapsed()))
                }
            });
            futures::future::join_all(runs).await
        })
        .await
    };
    let lane_workers = lanes.into_iter().enumerate().map(|(k, lane)| {
        let (held, wave) = (held.clone(), wave.clone());
        let bound = lane_bound(network_probes(&lane), network, in_flight);
        // The listening sockets go with the first lane, which has the inventory probes.
        let pod_sockets = if k == 0 {
            pod_sockets.clone()
        } else {
            BTreeMap::new()
        };
        netns::run_in(&located.netns, move || async move {
            let _held = held;
            let only: Vec<Probe> = lane.iter().map(|(_, p)| p.clone()).collect();
            let results = run_probes(&only, &pod_sockets, bound, &wave).await;
            lane.into_iter().map(|(i, _)| i).zip(results).collect::<Vec<_>>()
        })
    });
    let (dns, lanes) = futures::future::join(dns_worker, futures::future::join_all(lane_workers)).await;
    let mut all: Vec<(usize, (ProbeResult, Duration))> = dns?;
    for lane in lanes {
        all.extend(lane?);
    }
    all.sort_by_key(|(i, _)| *i);
    Ok((pid, all.into_iter().map(|(_, timed)| timed).collect()))
}

/// The request's probes by the worker that runs them: the DNS probes on one of their own, every
/// probe that is neither DNS nor a connect (inventories, witnesses) on the first of the rest, and
/// the connects (`tcp`, `udp`) dealt out evenly over `connects` workers after it. Each with its
/// index in the request; no worker is empty.
type Lanes = (Vec<(usize, DnsProbe)>, Vec<Vec<(usize, Probe)>>);

fn lanes(probes: Vec<Probe>, connects: usize) -> Lanes {
    let mut dns = vec![];
    let mut others = vec![];
    let mut connect_lanes: Vec<Vec<(usize, Probe)>> = vec![vec![]; connects.max(1)];
    let mut next = 0;
    for (i, probe) in probes.into_iter().enumerate() {
        match probe {
            Probe::Dns(p) => dns.push((i, p)),
            p if p.class() == ProbeClass::Connect => {
                let n = connect_lanes.len();
                connect_lanes[next % n].push((i, p));
                next += 1;
            }
            other => others.push((i, other)),
        }
    }
    let mut lanes = vec![others];
    lanes.extend(connect_lanes);
    lanes.retain(|lane| !lane.is_empty());
    (dns, lanes)
}

/// The probes of `lane` that hold sockets (the inventories are reads).
fn network_probes(lane: &[(usize, Probe)]) -> usize {
    lane.iter().filter(|(_, p)| p.class().holds_sockets()).count()
}

/// How many of a worker's `lane` network probes run at once when the request's `network`
/// probes may have `in_flight` at once: all of them when the whole request fits (one wave, so a
/// failing check costs one timeout), else the lane's share, at least one.
fn lane_bound(lane: usize, network: usize, in_flight: usize) -> usize {
    if in_flight >= network {
        return lane.max(1);
    }
    (lane * in_flight / network.max(1)).max(1)
}

/// How many workers share a request's connects: one per [`CONNECTS_PER_LANE`] probes in flight,
/// at most one per CPU and [`MAX_CONNECT_LANES`]. Each connect makes the kernel do the handshake's
/// work on the connecting thread; hundreds of them on one thread take tens of milliseconds.
fn connect_lanes(in_flight: usize, cpus: usize) -> usize {
    in_flight
        .div_ceil(CONNECTS_PER_LANE)
        .clamp(1, cpus.clamp(1, MAX_CONNECT_LANES))
}

fn cpus() -> usize {
    std::thread::available_parallelism().map_or(1, usize::from)
}

const CONNECTS_PER_LANE: usize = 100;
const MAX_CONNECT_LANES: usize = 4;

/// Network probes of one request in flight at once on its workers; the rest wait their turn. Bounds
/// the sockets one request holds. High enough
/// that a check's every endpoint is probed in one wave (a failing check then costs one timeout,
/// not one per wave); the global socket budget still bounds what all requests hold together.
pub const MAX_PROBES_IN_FLIGHT: usize = 1024;
/// Sockets a network probe holds at most at once: a TCP probe its own (a beacon SYN's socket is
/// closed as soon as it is opened), a DNS probe one query socket (UDP, or the TCP retry after it).
const SOCKETS_PER_PROBE: u32 = 1;
/// Sockets a request's workers hold besides their probes': each connecting worker's raw ICMP and
/// ICMPv6 sockets ([`tcp::IcmpInbox`]; the worker of the inventories and witnesses opens none).
const WORKER_SOCKETS: u32 = 2 * MAX_CONNECT_LANES as u32;

impl EngineError {
    /// The HTTP status and wire error for this failure.
    pub fn to_api_error(&self) -> (u16, ApiError) {
        let (status, code) = match self {
            EngineError::BadRequest(_) => (400, error_code::BAD_REQUEST),
            EngineError::Access(AccessError::InvalidPath { .. }) => (400, error_code::INVALID_PATH),
            EngineError::Access(AccessError::InvalidPid { .. }) => (400, error_code::INVALID_PID),
            EngineError::Access(AccessError::NotAllowed { .. }) => (403, error_code::SOURCE_NOT_ALLOWED),
            EngineError::Access(AccessError::NetnsRejected { .. }) => (404, error_code::NETNS_REJECTED),
            EngineError::Locate(LocateError::NoNamespaceHasIp(_) | LocateError::NoSuchProcess { .. }) => {
                (404, error_code::NAMESPACE_NOT_FOUND)
            }
            EngineError::Locate(LocateError::Ambiguous { .. }) => (409, error_code::AMBIGUOUS_NAMESPACE),
            EngineError::Locate(LocateError::Netns(e)) | EngineError::Netns(e) => netns_status(e),
            EngineError::Overloaded(_) | EngineError::SocketBudget { .. } => (503, error_code::OVERLOADED),
        };
        (
            status,
            ApiError {
                code: code.into(),
                message: self.to_string(),
            },
        )
    }
}

/// A namespace the agent itself chose (the node's, a pid's, a pod IP's) that cannot be used: the
/// agent is missing a capability, or is misconfigured. Caller-named paths never get here.
fn netns_status(err: &NetnsError) -> (u16, &'static str) {
    match err {
        NetnsError::Open { .. } | NetnsError::NotNetns { .. } | NetnsError::Enter { .. } => {
            (500, error_code::CANNOT_ENTER_NAMESPACE)
        }
        NetnsError::Spawn { .. } | NetnsError::Runtime { .. } => (503, error_code::OVERLOADED),
        NetnsError::WorkerDied { .. } => (500, error_code::INTERNAL),
    }
}

/// How an [`Engine`] is bounded and what it accepts.
#[derive(Debug, Clone)]
pub struct EngineConfig {
    /// The node's network namespace file, entered for `node` sources.
    pub node_netns: String,
    /// Probe requests served at once.
    pub max_concurrent: usize,
    /// Sockets all requests' probes may hold at once.
    pub socket_budget: u32,
    /// Source kinds and namespace files callers may name.
    pub access: Access,
}

pub struct Engine {
    identity: AgentIdentity,
    capabilities: Capabilities,
    locator: Locator,
    metrics: Arc<Metrics>,
    permits: Arc<Semaphore>,
    sockets: Arc<Semaphore>,
    config: EngineConfig,
    activity: Arc<Activity>,
}

impl Engine {
    pub fn new(
        identity: AgentIdentity,
        capabilities: Capabilities,
        metrics: Arc<Metrics>,
        config: EngineConfig,
    ) -> Self {
        Engine {
            identity,
            capabilities,
            locator: Locator::new(config.node_netns.clone()),
            metrics,
            permits: Arc::new(Semaphore::new(config.max_concurrent)),
            sockets: Arc::new(Semaphore::new(config.socket_budget as usize)),
            config,
            activity: Arc::default(),
        }
    }

    /// The metrics, shared (for the metrics listener).
    pub fn metrics_handle(&self) -> Arc<Metrics> {
        self.metrics.clone()
    }

    pub fn metrics(&self) -> &Metrics {
        &self.metrics
    }

    /// Counts the requests whose probes ran, for [`crate::memory::trim_after_work`].
    pub fn activity(&self) -> Arc<Activity> {
        self.activity.clone()
    }

    pub fn info(&self) -> AgentInfo {
        AgentInfo {
            agent: self.identity.clone(),
            api_version: API_VERSION.into(),
            capabilities: self.capabilities.clone(),
            node_netns: self.locator.node_netns().into(),
        }
    }

    /// Runs every probe of `request` in the namespace it names; results come in request order.
    /// More than `max_concurrent` requests at once, or a request whose sockets would exceed the
    /// socket budget, are refused ([`EngineError::Overloaded`], [`EngineError::SocketBudget`]).
    pub async fn run(&self, request: &ProbeRequest) -> Result<ProbeReport, EngineError> {
        let received = Instant::now();
        request.validate()?;
        self.config.access.check(&request.source)?;
        // The permits live as long as the worker thread's work, not the caller's future: a caller
        // that goes away (client disconnect) does not free the slot while its probes still run.
        let permit = self
            .permits
            .clone()
            .try_acquire_owned()
            .map_err(|_| EngineError::Overloaded(self.config.max_concurrent))?;
        let (in_flight, sockets) = self.reserve_sockets(&request.probes)?;
        let located = match (&request.source, self.locator.locate(&request.source).await) {
            (_, Ok(located)) => located,
            // Whatever went wrong with a caller-named file, the answer is the same.
            (ProbeSource::Netns { path }, Err(_)) => {
                return Err(self.config.access.netns_rejected(path).into());
            }
            (_, Err(err)) => return Err(err.into()),
        };
        // The pods the destination-side probes name, found with one look at the node.
        let named: BTreeSet<IpAddr> = listener_pods(&request.probes)
            .chain(capture::PodNamespaces::named(&request.probes))
            .collect();
        let pods = self.locator.locate_pods(named).await;
        let pod_sockets = pod_listeners(&pods, &request.probes).await;
        let wave = Wave {
            net_raw: self.capabilities.net_raw,
            witness: Witness {
                node_netns: self.locator.node_netns().to_string(),
                capture_pods: capture::PodNamespaces::of(&pods, &request.probes),
            },
            received,
        };
        let (pid, timed) = run_located(
            &located,
            request.probes.clone(),
            pod_sockets,
            in_flight,
            wave,
            (permit, sockets),
        )
        .await?;
        self.activity.record();
        let results = timed
            .into_iter()
            .map(|(result, took): (ProbeResult, Duration)| {
                self.metrics.observe(&result, took);
                result
            })
            .collect();
        Ok(ProbeReport {
            agent: self.identity.clone(),
            netns: located.resolved(pid),
            results,
        })
    }

    /// Takes the sockets the request's network probes may hold at once from the global budget:
    /// returns how many probes may be in flight and the permit. Refused rather than queued, so a
    /// flood is answered at once and the agent never runs out of file descriptors.
    fn reserve_sockets(
        &self,
        probes: &[Probe],
    ) -> Result<(usize, Option<OwnedSemaphorePermit>), EngineError> {
        let network = probes.iter().filter(|p| p.class().holds_sockets()).count();
        if network == 0 {
            return Ok((1, None));
        }
        let budget = self.config.socket_budget;
        let most = usize::try_from((budget / SOCKETS_PER_PROBE).max(1)).unwrap_or(MAX_PROBES_IN_FLIGHT);
        let in_flight = network.min(MAX_PROBES_IN_FLIGHT).min(most);
        let need = u32::try_from(in_flight)
            .unwrap_or(u32::MAX)
            .saturating_mul(SOCKETS_PER_PROBE)
            .saturating_add(WORKER_SOCKETS)
            .saturating_add(pmtu::extra_sockets(probes))
            .min(budget.max(1));
        let permit = self
            .sockets
            .clone()
            .try_acquire_many_owned(need)
            .map_err(|_| EngineError::SocketBudget { need, budget })?;
        Ok((in_flight, Some(permit)))
    }
}

/// The pod addresses the request's `podListeners` probes name.
fn listener_pods(probes: &[Probe]) -> impl Iterator<Item = IpAddr> + '_ {
    probes.iter().filter_map(|p| match p {
        Probe::PodListeners(p) => Some(p.pod_ip),
        _ => None,
    })
}

/// The listening sockets of each pod a `podListeners` probe names, read in that pod's own
/// namespace, once per pod and a few pods at a time: one request covers a node's pods.
async fn pod_listeners(
    pods: &BTreeMap<IpAddr, Result<locate::Located, String>>,
    probes: &[Probe],
) -> BTreeMap<IpAddr, ListenersResult> {
    let ips: BTreeSet<IpAddr> = listener_pods(probes).collect();
    futures::stream::iter(ips)
        .map(|ip| async move {
            let failed = |why: String| ListenersResult {
                sockets: vec![],
                error: Some(why),
            };
            let result = match pods.get(&ip) {
                Some(Ok(located)) => netns::run_in(&located.netns, || async { listeners::probe() })
                    .await
                    .unwrap_or_else(|e| failed(format!("cannot read the sockets of {ip}: {e}"))),
                Some(Err(why)) => failed(why.clone()),
                None => failed(format!("the namespace of {ip} was not looked up")),
            };
            (ip, result)
        })
        .buffer_unordered(POD_LISTENERS_IN_FLIGHT)
        .collect()
        .await
}

/// Pods whose sockets are read at once by one request.
const POD_LISTENERS_IN_FLIGHT: usize = 16;

/// Runs the probes on the namespace worker thread: takes the inventories once however often they
/// are asked for, then runs the network probes, `in_flight` at a time (DNS probes run on a worker
/// of their own, see [`run_located`]). Results in request order, each with its duration.
async fn run_probes(
    probes: &[Probe],
    pod_sockets: &BTreeMap<IpAddr, ListenersResult>,
    in_flight: usize,
    wave: &Wave,
) -> Vec<(ProbeResult, Duration)> {
    // The inventory probes are synchronous reads: run them before the connects and queries start,
    // so that they do not delay reading connect and query results (and inflate rtts). A request
    // asking for the same inventory many times gets one read, copied: they all run in one namespace.
    let mut listeners: Option<(ListenersResult, Duration)> = None;
    let mut interfaces: Option<(InterfacesResult, Duration)> = None;
    let mut slots: Vec<Option<(ProbeResult, Duration)>> = probes
        .iter()
        .map(|probe| match probe {
            Probe::Listeners => {
                let (r, took) = listeners.get_or_insert_with(|| timed(listeners::probe));
                Some((ProbeResult::Listeners(r.clone()), *took))
            }
            Probe::Interfaces => {
                let (r, took) = interfaces.get_or_insert_with(|| timed(interfaces::probe));
                Some((ProbeResult::Interfaces(r.clone()), *took))
            }
            Probe::PodListeners(p) => Some((
                ProbeResult::Listeners(pod_sockets.get(&p.pod_ip).cloned().unwrap_or_default()),
                Duration::ZERO,
            )),
            _ => None,
        })
        .collect();
    // Opened before any probe connects, so that it holds every ICMP error about their SYNs.
    let connects = probes.iter().any(|p| matches!(p, Probe::Tcp(_)));
    let icmp = tcp::IcmpInbox::open(wave.net_raw && connects);
    let icmp = &icmp;
    // In one wave, every connect's timeout counts from the wave's start: the last of hundreds
    // of SYNs leaves tens of milliseconds after the first, and the request still ends one
    // timeout after it started. Probes that wait their turn count from their own start.
    let waiting = slots.iter().filter(|s| s.is_none()).count();
    let since = (waiting <= in_flight).then(|| wave_start(wave.received, Instant::now()));
    let runs = probes
        .iter()
        .zip(&slots)
        .filter(|(_, slot)| slot.is_none())
        .map(|(probe, _)| async move {
            let start = Instant::now();
            let result = run_async(probe, wave, icmp, since).await;
            (result, start.elapsed())
        });
    let mut done = futures::stream::iter(runs)
        .buffered(in_flight.max(1))
        .collect::<Vec<_>>()
        .await
        .into_iter();
    for slot in slots.iter_mut().filter(|s| s.is_none()) {
        *slot = done.next();
    }
    slots.into_iter().flatten().collect()
}

/// When a wave's timeouts start counting: when the request arrived, so that it is answered one
/// timeout after it was asked, unless the agent's own preparation (finding the namespace,
/// reading pod sockets) took longer than [`MAX_PREPARATION`]: then only that much of it counts.
fn wave_start(received: Instant, started: Instant) -> Instant {
    started
        .checked_sub(MAX_PREPARATION)
        .map_or(received, |earliest| received.max(earliest))
}

/// See [`wave_start`]: a few milliseconds on a quiet node.
const MAX_PREPARATION: Duration = Duration::from_millis(50);

fn timed<T>(f: impl FnOnce() -> T) -> (T, Duration) {
    let start = Instant::now();
    let value = f();
    (value, start.elapsed())
}

/// The resolv.conf of the namespace's process, or why there is none (the reason becomes the DNS
/// probe's `error` outcome). Blocking: runs on the namespace worker.
fn pod_resolv_conf(pid: Option<u32>, netns: &str) -> Result<ResolvConfSummary, String> {
    let Some(pid) = pid else {
        return Err(format!(
            "no process lives in network namespace {netns}, so there is no resolv.conf to read; \
             give a pid or pod IP source, or a nameserver"
        ));
    };
    dns::read_resolv_conf(pid).map_err(|e| e.to_string())
}

/// What every probe of a request shares, on whichever worker it runs.
#[derive(Clone)]
struct Wave {
    /// The agent may open raw sockets: ICMP evidence for connects, packet captures.
    net_raw: bool,
    /// The namespaces the datapath witnesses enter.
    witness: Witness,
    /// When the request arrived: the wave's timeouts count from it ([`wave_start`]).
    received: Instant,
}

/// What the datapath witnesses need besides the request's namespace: the node's namespace (for
/// `nodeDataplane`) and the namespaces of the pods the captures name.
#[derive(Clone)]
struct Witness {
    node_netns: String,
    capture_pods: std::sync::Arc<capture::PodNamespaces>,
}

/// Runs a network probe (`tcp`, `udp`, or a datapath witness: path MTU in the request's
/// namespace, a capture in its pod's, the node's dataplane state in the node's); the inventory
/// probes never get here, nor do the DNS ones ([`dns_probe`]). `icmp` is the worker's inbox of
/// ICMP errors; timeouts count from `since`, the wave's start, else from each probe's own start.
async fn run_async(probe: &Probe, wave: &Wave, icmp: &tcp::IcmpInbox, since: Option<Instant>) -> ProbeResult {
    let Wave { net_raw, witness, .. } = wave;
    match probe {
        Probe::PathMtu(p) => ProbeResult::PathMtu(pmtu::probe(p, since).await),
        Probe::Capture(p) => {
            ProbeResult::Capture(capture::probe_in(p, *net_raw, &witness.capture_pods).await)
        }
        Probe::Egress(p) => {
            ProbeResult::Egress(egress::probe_in_node(p, *net_raw, &witness.node_netns).await)
        }
        Probe::NodeDataplane(p) => ProbeResult::NodeDataplane(noderules::probe(p, &witness.node_netns).await),
        Probe::Tcp(p) => ProbeResult::Tcp(tcp::probe(p, icmp, since).await),
        Probe::Udp(p) => ProbeResult::Udp(udp::probe(p, since).await),
        Probe::Listeners => ProbeResult::Listeners(listeners::probe()),
        Probe::Interfaces => ProbeResult::Interfaces(interfaces::probe()),
        // Read before the network probes start, in each pod's own namespace (`pod_listeners`).
        Probe::PodListeners(_) => ProbeResult::Listeners(ListenersResult::default()),
        Probe::Dns(p) => dns_probe(p, None).await,
    }
}

/// Runs a `dns` probe with the namespace's resolv.conf (`resolv_conf`), or the reason it has none.
async fn dns_probe(p: &DnsProbe, resolv_conf: Option<Result<ResolvConfSummary, String>>) -> ProbeResult {
    let conf = match resolv_conf.unwrap_or_else(|| Err("resolv.conf was not read".into())) {
        Ok(conf) => conf,
        // An explicit nameserver still answers; the search list is then empty.
        Err(why) if p.nameserver.is_some() => ResolvConfSummary {
            path: format!("(none: {why})"),
            ndots: 1,
            ..Default::default()
        },
        Err(why) => {
            return ProbeResult::Dns(DnsResult {
                name: p.name.clone(),
                record_type: p.record_type,
                resolv_conf: ResolvConfSummary::default(),
                candidates: vec![],
                answer: DnsAnswer {
                    name: None,
                    outcome: DnsOutcome::Error { detail: why },
                },
            });
        }
    };
    ProbeResult::Dns(dns::probe(p, conf).await)
}

#[cfg(test)]
mod tests {
    use std::net::Ipv4Addr;

    use netdiag_proto::{RecordType, TcpProbe, UdpPayload, UdpProbe};

    use super::*;

    fn tcp(last: u8) -> Probe {
        Probe::Tcp(TcpProbe {
            ip: IpAddr::from(Ipv4Addr::new(10, 0, 0, last)),
            port: 80,
            timeout_ms: 1000,
        })
    }

    fn indexes(lane: &[(usize, Probe)]) -> Vec<usize> {
        lane.iter().map(|(i, _)| *i).collect()
    }

    #[test]
    fn dns_and_the_other_probes_get_a_worker_each_and_connects_are_dealt_out() {
        let probes = vec![
            Probe::Dns(DnsProbe {
                name: "payments".into(),
                record_type: RecordType::A,
                nameserver: None,
                timeout_ms: 500,
            }),
            tcp(1),
            Probe::Listeners,
            tcp(2),
            Probe::Udp(UdpProbe {
                ip: IpAddr::from(Ipv4Addr::new(10, 0, 0, 3)),
                port: 53,
                payload: UdpPayload::Empty,
                timeout_ms: 1000,
            }),
            tcp(4),
        ];
        let (dns, lanes) = lanes(probes, 2);
        assert_eq!(dns.iter().map(|(i, _)| *i).collect::<Vec<_>>(), [0]);
        assert_eq!(lanes.len(), 3);
        assert_eq!(indexes(&lanes[0]), [2]);
        assert_eq!(indexes(&lanes[1]), [1, 4]);
        assert_eq!(indexes(&lanes[2]), [3, 5]);
    }

    #[test]
    fn a_request_without_connects_runs_on_one_worker_and_no_empty_worker_starts() {
        let (dns, lanes) = lanes(vec![Probe::Listeners, Probe::Interfaces], 4);
        assert!(dns.is_empty());
        assert_eq!(lanes.len(), 1);
        assert_eq!(indexes(&lanes[0]), [0, 1]);
        let (_, one) = super::lanes(vec![tcp(1)], 3);
        assert_eq!(one.len(), 1);
    }

    #[test]
    fn a_worker_runs_all_its_probes_at_once_when_the_request_fits_else_its_share() {
        assert_eq!(lane_bound(150, 309, 309), 150);
        assert_eq!(lane_bound(3, 309, 1024), 3);
        assert_eq!(lane_bound(0, 0, 1), 1);
        assert_eq!(lane_bound(600, 1200, 1024), 512);
        assert_eq!(lane_bound(1, 1200, 1024), 1);
    }

    #[test]
    fn a_wave_counts_from_the_request_unless_preparing_it_took_long() {
        let received = Instant::now();
        let quick = received + Duration::from_millis(6);
        assert_eq!(wave_start(received, quick), received);
        let slow = received + Duration::from_millis(500);
        assert_eq!(wave_start(received, slow), slow - MAX_PREPARATION);
    }

    #[test]
    fn connects_share_one_worker_per_hundred_at_most_one_per_cpu_and_four() {
        assert_eq!(connect_lanes(0, 8), 1);
        assert_eq!(connect_lanes(100, 8), 1);
        assert_eq!(connect_lanes(101, 8), 2);
        assert_eq!(connect_lanes(300, 2), 2);
        assert_eq!(connect_lanes(1024, 8), 4);
        assert_eq!(connect_lanes(1024, 1), 1);
    }
}
