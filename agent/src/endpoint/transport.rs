//! How the endpoint's check engine reaches agents: this node's probes run in-process on the
//! agent's own probe engine; another node's go to that node's agent over its HTTPS endpoint
//! (`POST /v1/probe`), with this agent's own token, which the peer authorizes like any caller.
//!
//! The peer's pod IP comes from the check's snapshot (agent pods by node); the HTTP exchange is
//! the only I/O here.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::Request;
use hyper::header::{AUTHORIZATION, CONTENT_TYPE, HOST};
use hyper_util::rt::TokioIo;
use k8s_openapi::api::core::v1::Pod;
use netdiag_engine::AgentPods;
use netdiag_engine::Snapshot;
use netdiag_engine::ToolFailure;
use netdiag_engine::{AgentDaemonSet, genuine_agents};
use netdiag_engine::{AgentReply, AgentTransport};
use netdiag_proto::{ApiError, PROBE_PATH, ProbeReport, ProbeRequest};
use rustls::pki_types::ServerName;
use tokio_rustls::TlsConnector;

use crate::engine::Engine;

/// Largest answer accepted from a peer.
const MAX_PEER_ANSWER_BYTES: usize = 4 * 1024 * 1024;

/// What every check's transport shares: the local engine and how to call peers.
pub struct Peers {
    pub engine: Arc<Engine>,
    /// This agent's node and pod (`namespace/name`).
    pub node: String,
    pub pod: String,
    /// Where agent pods are: their namespace and label selector (`key=value,...`).
    pub namespace: String,
    pub selector: String,
    /// The peers' endpoint port when their pod names no `endpoint` port.
    pub port: u16,
    pub tls: Arc<rustls::ClientConfig>,
    /// This agent's token for its peers, read at each call (projected tokens rotate).
    pub token_file: PathBuf,
}

/// The transport of one check: [`Peers`] and the agent pods of the check's snapshot.
pub struct Transport {
    peers: Arc<Peers>,
    by_node: Result<BTreeMap<String, (String, SocketAddr)>, ToolFailure>,
}

impl Transport {
    /// `daemonset` is the agent DaemonSet read for this check (or why it could not be): only
    /// the pods it controls are peers.
    pub fn new(peers: Arc<Peers>, snap: &Snapshot, daemonset: Result<AgentDaemonSet, ToolFailure>) -> Self {
        let by_node = match (snap.pods.known(), daemonset) {
            (Some(pods), Ok(daemonset)) => Ok(agent_pods(&peers, pods, &daemonset)),
            (None, _) => Err(ToolFailure::Agent {
                detail: "the agent pods could not be listed".into(),
            }),
            (_, Err(failure)) => Err(failure),
        };
        Transport { peers, by_node }
    }

    async fn local(&self, request: &ProbeRequest) -> Result<AgentReply, ToolFailure> {
        match self.peers.engine.run(request).await {
            Ok(report) => Ok(AgentReply {
                agent: self.peers.pod.clone(),
                report,
            }),
            Err(err) => Err(ToolFailure::Agent {
                detail: format!("agent {} could not run the probes: {err}", self.peers.pod),
            }),
        }
    }
}

/// The genuine agent pods with an IP, by node: (`namespace/name`, endpoint address). The
/// plugin's rule ([`genuine_agents`]): only pods `daemonset` controls, running as its account.
fn agent_pods(
    peers: &Peers,
    pods: &[Pod],
    daemonset: &AgentDaemonSet,
) -> BTreeMap<String, (String, SocketAddr)> {
    let mut out = BTreeMap::new();
    for (node, pod) in genuine_agents(pods, daemonset) {
        let name = pod.metadata.name.as_deref().unwrap_or_default();
        let Some(ip) = pod
            .status
            .as_ref()
            .and_then(|s| s.pod_ip.as_deref())
            .and_then(|ip| ip.parse().ok())
        else {
            continue;
        };
        let port = pod
            .spec
            .iter()
            .flat_map(|s| &s.containers)
            .flat_map(|c| c.ports.iter().flatten())
            .find(|p| p.name.as_deref() == Some("endpoint"))
            .and_then(|p| u16::try_from(p.container_port).ok())
            .unwrap_or(peers.port);
        out.insert(
            node,
            (format!("{}/{name}", peers.namespace), SocketAddr::new(ip, port)),
        );
    }
    out
}

impl AgentTransport for Transport {
    async fn probe(
        &self,
        node: &str,
        request: &ProbeRequest,
        deadline: Duration,
    ) -> Result<AgentReply, ToolFailure> {
        if node == self.peers.node {
            return self.local(request).await;
        }
        let (agent, addr) = match &self.by_node {
            Ok(by_node) => by_node
                .get(node)
                .cloned()
                .ok_or_else(|| ToolFailure::AgentMissing {
                    node: node.to_string(),
                    namespace: self.peers.namespace.clone(),
                    selector: self.peers.selector.clone(),
                })?,
            Err(failure) => return Err(failure.clone()),
        };
        let call = call_peer(&self.peers, &agent, addr, request);
        match tokio::time::timeout(deadline, call).await {
            Ok(Ok(report)) => Ok(AgentReply { agent, report }),
            Ok(Err(detail)) => Err(ToolFailure::Agent { detail }),
            Err(_) => Err(ToolFailure::Agent {
                detail: format!("agent {agent} did not answer within {} ms", deadline.as_millis()),
            }),
        }
    }

    fn location(&self) -> Option<AgentPods> {
        Some(AgentPods {
            namespace: self.peers.namespace.clone(),
            selector: self.peers.selector.clone(),
        })
    }
}

/// `POST /v1/probe` to the peer `agent` at `addr`, over TLS, with this agent's token.
async fn call_peer(
    peers: &Peers,
    agent: &str,
    addr: SocketAddr,
    request: &ProbeRequest,
) -> Result<ProbeReport, String> {
    let token = std::fs::read_to_string(&peers.token_file).map_err(|e| {
        format!(
            "cannot read the agent's token {} to call agent {agent}: {e}",
            peers.token_file.display()
        )
    })?;
    let tcp = tokio::net::TcpStream::connect(addr)
        .await
        .map_err(|e| format!("failed to connect to agent {agent} at {addr}: {e}"))?;
    crate::accept::no_delay(&tcp);
    let tls = TlsConnector::from(peers.tls.clone())
        .connect(ServerName::IpAddress(addr.ip().into()), tcp)
        .await
        .map_err(|e| format!("tls handshake with agent {agent} at {addr} failed: {e}"))?;
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tls))
        .await
        .map_err(|e| format!("http exchange with agent {agent} failed: {e}"))?;
    tokio::spawn(conn);
    let body = serde_json::to_vec(request).expect("a probe request always serializes");
    let http = Request::post(PROBE_PATH)
        .header(HOST, addr.to_string())
        .header(AUTHORIZATION, format!("Bearer {}", token.trim()))
        .header(CONTENT_TYPE, "application/json")
        .body(Full::new(Bytes::from(body)))
        .map_err(|e| format!("cannot build the request to agent {agent}: {e}"))?;
    let answer = sender
        .send_request(http)
        .await
        .map_err(|e| format!("http exchange with agent {agent} failed: {e}"))?;
    let status = answer.status();
    let bytes = Limited::new(answer.into_body(), MAX_PEER_ANSWER_BYTES)
        .collect()
        .await
        .map_err(|e| format!("failed to read the answer of agent {agent}: {e}"))?
        .to_bytes();
    if !status.is_success() {
        let message = serde_json::from_slice::<ApiError>(&bytes)
            .map(|e| e.message)
            .unwrap_or_else(|_| String::from_utf8_lossy(&bytes).into_owned());
        return Err(format!(
            "agent {agent} answered HTTP {}: {message}",
            status.as_u16()
        ));
    }
    serde_json::from_slice(&bytes)
        .map_err(|e| format!("agent {agent} sent an answer that is not a probe report: {e}"))
}
