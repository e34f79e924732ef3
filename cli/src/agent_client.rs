//! Talking to netdiag agents: find the agent pod on a node and speak HTTP/1.1 to its control
//! listener through the API server's `pods/portforward` (as `kubectl port-forward` does), or
//! straight to a URL given for debugging.

use std::collections::BTreeMap;
use std::time::Duration;

use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper_util::rt::TokioIo;
use k8s_openapi::api::core::v1::Pod;
use kube::Api;
use kube::api::ListParams;
use netdiag_proto::{ApiError, DEFAULT_AGENT_PORT, PROBE_PATH, ProbeReport, ProbeRequest};
use serde::de::DeserializeOwned;
use tokio::io::{AsyncRead, AsyncWrite};

use netdiag_engine::AgentPods;
use netdiag_engine::{AgentReply, AgentTransport};
use netdiag_engine::{ToolFailure, error_chain};
use netdiag_engine::{genuine_agents, read_agent_daemonset};

/// Default namespace of the agent DaemonSet.
pub const DEFAULT_AGENT_NAMESPACE: &str = "netdiag";
/// Default label selector of the agent pods.
pub const DEFAULT_AGENT_SELECTOR: &str = "app.kubernetes.io/name=netdiag-agent";

#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    /// No agent to ask (none on the node, or the agent pods could not be listed).
    #[error("{0}")]
    Unavailable(Box<ToolFailure>),
    #[error("failed to list agent pods in namespace {namespace} with selector {selector}")]
    List {
        namespace: String,
        selector: String,
        #[source]
        source: kube::Error,
    },
    #[error("failed to port-forward to agent pod {pod}")]
    PortForward {
        pod: String,
        #[source]
        source: kube::Error,
    },
    #[error("failed to connect to the agent at {addr}")]
    Connect {
        addr: String,
        #[source]
        source: std::io::Error,
    },
    #[error("the API server could not forward port {port} of agent pod {pod}: {message}")]
    PortForwardStream { pod: String, port: u16, message: String },
    #[error("the port-forward to agent pod {pod} gave no stream for port {port}")]
    NoStream { pod: String, port: u16 },
    #[error("http exchange with agent {agent} failed")]
    Http {
        agent: String,
        #[source]
        source: hyper::Error,
    },
    #[error("agent {agent} did not answer within {} ms", .after.as_millis())]
    Timeout { agent: String, after: Duration },
    #[error("agent {agent} answered HTTP {status}: {message}")]
    Api {
        agent: String,
        status: u16,
        /// The agent's machine-readable code (`namespaceNotFound`, `overloaded`, ...), when it sent one.
        code: Option<String>,
        message: String,
    },
    #[error("agent {agent} sent a response that is not a valid {what}")]
    Decode {
        agent: String,
        what: &'static str,
        #[source]
        source: serde_json::Error,
    },
}

/// How to reach agents.
#[derive(Clone)]
enum Route {
    /// Through the API server: agent pods by node.
    PortForward {
        client: kube::Client,
        namespace: String,
        selector: String,
        /// node → (agent pod name, control port), or why the agents could not be listed.
        by_node: Result<BTreeMap<String, (String, u16)>, ToolFailure>,
    },
    /// Every node's agent is this `host:port` (debugging override).
    Direct { addr: String },
}

/// The agents of the cluster, found once per check.
#[derive(Clone)]
pub struct Agents {
    route: Route,
}

impl Agents {
    /// Lists the running agent pods and indexes them by node. A failed list is remembered:
    /// every probe then reports it.
    pub async fn discover(client: kube::Client, namespace: &str, selector: &str) -> Self {
        let by_node = Self::list(&client, namespace, selector).await.map_err(|err| {
            let action = format!("list agent pods in namespace {namespace} with selector {selector}");
            match err {
                AgentError::List { source, .. } => ToolFailure::from_kube(&action, &source),
                other => agent_failure(&other),
            }
        });
        Agents {
            route: Route::PortForward {
                client,
                namespace: namespace.to_string(),
                selector: selector.to_string(),
                by_node,
            },
        }
    }

    async fn list(
        client: &kube::Client,
        namespace: &str,
        selector: &str,
    ) -> Result<BTreeMap<String, (String, u16)>, AgentError> {
        let api: Api<Pod> = Api::namespaced(client.clone(), namespace);
        let params = ListParams::default().labels(selector);
        let (pods, daemonset) = tokio::join!(api.list(&params), read_agent_daemonset(client, namespace));
        let pods = pods.map_err(|source| AgentError::List {
            namespace: namespace.to_string(),
            selector: selector.to_string(),
            source,
        })?;
        let daemonset = daemonset.map_err(|failure| AgentError::Unavailable(Box::new(failure)))?;
        let mut by_node = BTreeMap::new();
        for (node, pod) in genuine_agents(&pods.items, &daemonset) {
            let port = pod
                .spec
                .iter()
                .flat_map(|s| s.containers.iter())
                .flat_map(|c| c.ports.iter().flatten())
                .find(|p| p.name.as_deref() == Some("control"))
                .and_then(|p| u16::try_from(p.container_port).ok())
                .unwrap_or(DEFAULT_AGENT_PORT);
            by_node.insert(node, (pod.metadata.name.clone().unwrap_or_default(), port));
        }
        Ok(by_node)
    }

    /// Sends every request to one agent URL (`http://HOST:PORT` or `HOST:PORT`).
    pub fn direct(url: &str) -> Self {
        let addr = url
            .trim_start_matches("http://")
            .trim_end_matches('/')
            .to_string();
        Agents {
            route: Route::Direct { addr },
        }
    }

    /// The agent pod serving `node` (`namespace/name`), or the direct address.
    pub fn agent_for(&self, node: &str) -> Result<String, ToolFailure> {
        match &self.route {
            Route::Direct { addr } => Ok(addr.clone()),
            Route::PortForward {
                namespace,
                selector,
                by_node,
                ..
            } => match by_node.as_ref().map_err(Clone::clone)?.get(node) {
                Some((pod, _)) => Ok(format!("{namespace}/{pod}")),
                None => Err(ToolFailure::AgentMissing {
                    node: node.to_string(),
                    namespace: namespace.clone(),
                    selector: selector.clone(),
                }),
            },
        }
    }

    /// `POST /v1/probe` to the agent on `node`, giving up after `deadline`.
    pub async fn send_probe(
        &self,
        node: &str,
        request: &ProbeRequest,
        deadline: Duration,
    ) -> Result<ProbeReport, AgentError> {
        let agent = self
            .agent_for(node)
            .map_err(|failure| AgentError::Unavailable(Box::new(failure)))?;
        let body = serde_json::to_vec(request).expect("a probe request always serializes");
        let bytes = self
            .exchange(&agent, node, hyper::Method::POST, PROBE_PATH, body, deadline)
            .await?;
        decode(&agent, &bytes, "probe report")
    }
}

impl Agents {
    /// One HTTP exchange (`method path`, with `body`) with the agent on `node`, through the route,
    /// within `deadline`; a status other than 2xx is an [`AgentError::Api`] with the agent's words.
    async fn exchange(
        &self,
        agent: &str,
        node: &str,
        method: hyper::Method,
        path: &'static str,
        body: Vec<u8>,
        deadline: Duration,
    ) -> Result<Bytes, AgentError> {
        let request = format!("{method} {path}");
        let exchange = async {
            match &self.route {
                Route::Direct { addr } => {
                    let stream = tokio::net::TcpStream::connect(addr.as_str())
                        .await
                        .map_err(|source| AgentError::Connect {
                            addr: addr.clone(),
                            source,
                        })?;
                    // Each write leaves at once (see `kube_args::client`).
                    let _ = stream.set_nodelay(true);
                    send_json(stream, agent, method, path, body).await
                }
                Route::PortForward {
                    client,
                    namespace,
                    by_node,
                    ..
                } => {
                    let Some((pod, port)) = by_node.as_ref().ok().and_then(|m| m.get(node)) else {
                        unreachable!("agent_for found the agent of {node}");
                    };
                    let api: Api<Pod> = Api::namespaced(client.clone(), namespace);
                    let mut forwarder =
                        api.portforward(pod, &[*port])
                            .await
                            .map_err(|source| AgentError::PortForward {
                                pod: agent.to_string(),
                                source,
                            })?;
                    let stream = forwarder.take_stream(*port).ok_or_else(|| AgentError::NoStream {
                        pod: agent.to_string(),
                        port: *port,
                    })?;
                    // The API server explains a forward it could not make (nothing listening on the
                    // port in the agent pod, pod gone) on the port's error stream, then closes the
                    // data stream: report its words rather than the bare closed connection.
                    let errors = forwarder.take_error(*port);
                    let exchange = send_json(stream, agent, method, path, body);
                    let result = match errors {
                        Some(errors) => {
                            tokio::pin!(exchange);
                            tokio::select! {
                                biased;
                                Some(message) = errors => Err(AgentError::PortForwardStream {
                                    pod: agent.to_string(),
                                    port: *port,
                                    message,
                                }),
                                result = &mut exchange => result,
                            }
                        }
                        None => exchange.await,
                    };
                    forwarder.abort();
                    result
                }
            }
        };
        let started = std::time::Instant::now();
        let answer = tokio::time::timeout(deadline, exchange)
            .await
            .map_err(|_| AgentError::Timeout {
                agent: agent.to_string(),
                after: deadline,
            })
            .and_then(|answer| answer);
        let ms = started.elapsed().as_millis();
        let (status, bytes) = match answer {
            Ok(answer) => {
                tracing::info!(target: "http", "agent {agent} ({node}): {request} {} in {ms} ms", answer.0);
                answer
            }
            Err(err) => {
                tracing::debug!(
                    "agent {agent} ({node}): {request} failed in {ms} ms: {}",
                    err.describe()
                );
                return Err(err);
            }
        };
        if !(200..300).contains(&status) {
            let (code, message) = match serde_json::from_slice::<ApiError>(&bytes) {
                Ok(err) => (Some(err.code), err.message),
                Err(_) => (None, String::from_utf8_lossy(&bytes).trim().to_string()),
            };
            return Err(AgentError::Api {
                agent: agent.to_string(),
                status,
                code,
                message,
            });
        }
        Ok(bytes)
    }
}

/// What a failed agent exchange means to the check.
fn agent_failure(err: &AgentError) -> ToolFailure {
    match err {
        AgentError::Unavailable(failure) => (**failure).clone(),
        AgentError::PortForward {
            pod,
            source: kube::Error::Api(status),
        } if status.code == 403 => ToolFailure::AgentForbidden {
            agent: pod.clone(),
            detail: status.message.clone(),
        },
        other => ToolFailure::Agent {
            detail: other.describe(),
        },
    }
}

impl AgentError {
    /// The error and its causes on one line, an API server's refusal in its own words (never the
    /// client library's debug form of it).
    pub fn describe(&self) -> String {
        match self {
            AgentError::PortForward {
                pod,
                source: kube::Error::Api(status),
            } => format!(
                "failed to port-forward to agent pod {pod}: {} ({})",
                status.message, status.code
            ),
            AgentError::List {
                namespace,
                selector,
                source: kube::Error::Api(status),
            } => format!(
                "failed to list agent pods in namespace {namespace} with selector {selector}: {} ({})",
                status.message, status.code
            ),
            other => error_chain(other)
                .replace("ServiceError: ", "")
                .replace("HyperError: ", "")
                .replace("client error (Connect): ", ""),
        }
    }
}

impl AgentTransport for Agents {
    async fn probe(
        &self,
        node: &str,
        request: &ProbeRequest,
        deadline: Duration,
    ) -> Result<AgentReply, ToolFailure> {
        let agent = self.agent_for(node)?;
        let report = self
            .send_probe(node, request, deadline)
            .await
            .map_err(|err| agent_failure(&err))?;
        Ok(AgentReply { agent, report })
    }

    fn location(&self) -> Option<AgentPods> {
        match &self.route {
            Route::PortForward {
                namespace, selector, ..
            } => Some(AgentPods {
                namespace: namespace.clone(),
                selector: selector.clone(),
            }),
            Route::Direct { .. } => None,
        }
    }
}

fn decode<T: DeserializeOwned>(agent: &str, bytes: &[u8], what: &'static str) -> Result<T, AgentError> {
    serde_json::from_slice(bytes).map_err(|source| AgentError::Decode {
        agent: agent.to_string(),
        what,
        source,
    })
}

/// One HTTP/1.1 request (`method path`, a JSON body unless empty) over `io`; returns the status
/// and the whole body.
async fn send_json<S>(
    io: S,
    agent: &str,
    method: hyper::Method,
    path: &'static str,
    body: Vec<u8>,
) -> Result<(u16, Bytes), AgentError>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let http = |source| AgentError::Http {
        agent: agent.to_string(),
        source,
    };
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(io))
        .await
        .map_err(http)?;
    let driver = tokio::spawn(connection);
    let mut request = hyper::Request::builder()
        .method(method)
        .uri(path)
        .header(hyper::header::HOST, "localhost");
    if !body.is_empty() {
        request = request.header(hyper::header::CONTENT_TYPE, "application/json");
    }
    let request = request
        .body(Full::new(Bytes::from(body)))
        .expect("a request with a static path and headers is valid");
    let result = async {
        let response = sender.send_request(request).await.map_err(http)?;
        let status = response.status().as_u16();
        let bytes = response.into_body().collect().await.map_err(http)?.to_bytes();
        Ok((status, bytes))
    }
    .await;
    driver.abort();
    result
}

// ---------------------------------------------------------------- agent info (version, status)

impl Agents {
    /// The nodes with a running agent (empty when the agent pods could not be listed, or for
    /// `--agent-url`).
    pub fn nodes(&self) -> Vec<String> {
        match &self.route {
            Route::PortForward { by_node: Ok(map), .. } => map.keys().cloned().collect(),
            _ => vec![],
        }
    }

    /// `GET /v1/info` of the agent on `node` (its version and capabilities), giving up after
    /// `deadline`.
    pub async fn info(&self, node: &str, deadline: Duration) -> Result<netdiag_proto::AgentInfo, AgentError> {
        let agent = self
            .agent_for(node)
            .map_err(|failure| AgentError::Unavailable(Box::new(failure)))?;
        let bytes = self
            .exchange(
                &agent,
                node,
                hyper::Method::GET,
                netdiag_proto::INFO_PATH,
                vec![],
                deadline,
            )
            .await?;
        decode(&agent, &bytes, "agent info")
    }
}
