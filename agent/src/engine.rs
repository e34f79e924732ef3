//! The probe engine: validate a request, locate its namespace, run every probe there.
//!
//! The HTTP server and the one-shot mode both call [`Engine::run`], so they share one code path.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt;

use netdiag_proto::{
    API_VERSION, AgentIdentity, AgentInfo, ApiError, Capabilities, DnsAnswer, DnsOutcome, DnsResult,
    InvalidRequest, ListenersResult, Probe, ProbeReport, ProbeRequest, ProbeResult, ProbeSource,
    ResolvConfSummary,
};
use thiserror::Error;
use tokio::sync::Semaphore;

use crate::locate::{LocateError, Located, Locator, resolv_conf_path};
use crate::metrics::Metrics;
use crate::netns::{self, NetnsError};
use crate::{dns, interfaces, listeners, tcp};

#[derive(Debug, Error)]
pub enum EngineError {
    #[error("{0}")]
    BadRequest(#[from] InvalidRequest),
    #[error(transparent)]
    Locate(#[from] LocateError),
    #[error(transparent)]
    Netns(#[from] NetnsError),
    #[error("the agent is already running {0} probe requests; retry shortly")]
    Overloaded(usize),
}

/// Network probes of one request in flight at once on its worker; the rest wait their turn. Bounds
/// the sockets one request holds (a TCP probe holds two: its own and a raw ICMP one).
pub const MAX_PROBES_IN_FLIGHT: usize = 256;

impl EngineError {
    /// The HTTP status and wire error for this failure.
    pub fn to_api_error(&self) -> (u16, ApiError) {
        let (status, code) = match self {
            EngineError::BadRequest(_) => (400, "badRequest"),
            EngineError::Locate(LocateError::NoNamespaceHasIp(_) | LocateError::NoSuchProcess { .. }) => {
                (404, "namespaceNotFound")
            }
            EngineError::Locate(LocateError::Ambiguous { .. }) => (409, "ambiguousNamespace"),
            EngineError::Locate(LocateError::Netns(e)) | EngineError::Netns(e) => netns_status(e),
            EngineError::Overloaded(_) => (503, "overloaded"),
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

fn netns_status(err: &NetnsError) -> (u16, &'static str) {
    match err {
        NetnsError::Open { source, .. } if source.kind() == std::io::ErrorKind::NotFound => {
            (404, "namespaceNotFound")
        }
        NetnsError::NotNetns { .. } => (400, "badRequest"),
        NetnsError::Open { .. } | NetnsError::Enter { .. } => (500, "cannotEnterNamespace"),
        NetnsError::Spawn { .. } | NetnsError::Runtime { .. } => (503, "overloaded"),
        NetnsError::WorkerDied { .. } => (500, "internal"),
    }
}

pub struct Engine {
    identity: AgentIdentity,
    capabilities: Capabilities,
    locator: Locator,
    metrics: Arc<Metrics>,
    permits: Arc<Semaphore>,
    max_concurrent: usize,
}

impl Engine {
    pub fn new(
        identity: AgentIdentity,
        capabilities: Capabilities,
        node_netns: String,
        metrics: Arc<Metrics>,
        max_concurrent: usize,
    ) -> Self {
        Engine {
            identity,
            capabilities,
            locator: Locator::new(node_netns),
            metrics,
            permits: Arc::new(Semaphore::new(max_concurrent)),
            max_concurrent,
        }
    }

    pub fn metrics(&self) -> &Metrics {
        &self.metrics
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
    /// More than `max_concurrent` requests at once are refused with [`EngineError::Overloaded`].
    pub async fn run(&self, request: &ProbeRequest) -> Result<ProbeReport, EngineError> {
        request.validate()?;
        // The permit lives as long as the worker thread's work, not the caller's future: a caller
        // that goes away (client disconnect) does not free the slot while its probes still run.
        let permit = self
            .permits
            .clone()
            .try_acquire_owned()
            .map_err(|_| EngineError::Overloaded(self.max_concurrent))?;
        let located = self.locator.locate(&request.source).await?;
        let resolv_conf = request
            .probes
            .iter()
            .any(|p| matches!(p, Probe::Dns(_)))
            .then(|| pod_resolv_conf(&located));
        let probes = request.probes.clone();
        let pod_sockets = self.pod_listeners(&request.probes).await;
        let net_raw = self.capabilities.net_raw;
        let timed = netns::run_in(&located.netns, move || async move {
            let _permit = permit;
            // The inventory probes are synchronous reads: run them before the connects and queries
            // start, so that they do not delay reading connect and query results (and inflate rtts).
            let mut slots: Vec<Option<(ProbeResult, Duration)>> = probes
                .iter()
                .map(|probe| {
                    let start = Instant::now();
                    let result = match probe {
                        Probe::Listeners => ProbeResult::Listeners(listeners::probe()),
                        Probe::Interfaces => ProbeResult::Interfaces(interfaces::probe()),
                        Probe::PodListeners(p) => {
                            ProbeResult::Listeners(pod_sockets.get(&p.pod_ip).cloned().unwrap_or_default())
                        }
                        Probe::Tcp(_) | Probe::Dns(_) => return None,
                    };
                    Some((result, start.elapsed()))
                })
                .collect();
            let runs = probes
                .iter()
                .zip(&slots)
                .filter(|(_, slot)| slot.is_none())
                .map(|(probe, _)| {
                    let resolv_conf = resolv_conf.clone();
                    async move {
                        let start = Instant::now();
                        let result = run_async(probe, resolv_conf, net_raw).await;
                        (result, start.elapsed())
                    }
                });
            let mut done = futures::stream::iter(runs)
                .buffered(MAX_PROBES_IN_FLIGHT)
                .collect::<Vec<_>>()
                .await
                .into_iter();
            for slot in slots.iter_mut().filter(|s| s.is_none()) {
                *slot = done.next();
            }
            slots.into_iter().flatten().collect::<Vec<_>>()
        })
        .await?;
        let results = timed
            .into_iter()
            .map(|(result, took): (ProbeResult, Duration)| {
                self.metrics.observe(&result, took);
                result
            })
            .collect();
        Ok(ProbeReport {
            agent: self.identity.clone(),
            netns: located.resolved(),
            results,
        })
    }
}

impl Engine {
    /// The listening sockets of each pod a `podListeners` probe names, read in that pod's own
    /// namespace, once per pod and a few pods at a time: one request covers a node's pods.
    async fn pod_listeners(&self, probes: &[Probe]) -> BTreeMap<IpAddr, ListenersResult> {
        let ips: BTreeSet<IpAddr> = probes
            .iter()
            .filter_map(|p| match p {
                Probe::PodListeners(p) => Some(p.pod_ip),
                _ => None,
            })
            .collect();
        futures::stream::iter(ips)
            .map(|ip| async move {
                let failed = |why: String| ListenersResult {
                    sockets: vec![],
                    error: Some(why),
                };
                let result = match self.locator.locate(&ProbeSource::PodIp { ip }).await {
                    Ok(located) => netns::run_in(&located.netns, || async { listeners::probe() })
                        .await
                        .unwrap_or_else(|e| failed(format!("cannot read the sockets of {ip}: {e}"))),
                    Err(e) => failed(format!("cannot find the pod with IP {ip} on this node: {e}")),
                };
                (ip, result)
            })
            .buffer_unordered(POD_LISTENERS_IN_FLIGHT)
            .collect()
            .await
    }
}

/// Pods whose sockets are read at once by one request.
const POD_LISTENERS_IN_FLIGHT: usize = 16;

/// The namespace's resolv.conf, or why there is none.
fn pod_resolv_conf(located: &Located) -> Result<ResolvConfSummary, String> {
    let Some(pid) = located.pid else {
        return Err(format!(
            "no process lives in network namespace {} (inode {}), so there is no resolv.conf to read; \
             give a pid or pod IP source, or a nameserver",
            located.netns.path(),
            located.netns.inode()
        ));
    };
    dns::read_resolv_conf(&resolv_conf_path(pid)).map_err(|e| e.to_string())
}

/// Runs a network probe (`tcp` or `dns`); the inventory probes never get here.
async fn run_async(
    probe: &Probe,
    resolv_conf: Option<Result<ResolvConfSummary, String>>,
    net_raw: bool,
) -> ProbeResult {
    match probe {
        Probe::Tcp(p) => ProbeResult::Tcp(tcp::probe(p, net_raw).await),
        Probe::Listeners => ProbeResult::Listeners(listeners::probe()),
        Probe::Interfaces => ProbeResult::Interfaces(interfaces::probe()),
        // Read before the network probes start, in each pod's own namespace (`pod_listeners`).
        Probe::PodListeners(_) => ProbeResult::Listeners(ListenersResult::default()),
        Probe::Dns(p) => {
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
    }
}
