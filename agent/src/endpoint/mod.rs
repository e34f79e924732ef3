//! The in-cluster probe endpoint: HTTPS on the agent's pod IP for callers inside the cluster
//! (CI jobs, bots, Prometheus), authenticated with TokenReview and authorized per request with a
//! SubjectAccessReview, running the same check engine as the kubectl plugin.
//!
//! [`tls`] makes the certificates, [`auth`] asks the API server who calls and what they may do,
//! [`disclosure`] what a report shows them and from which sources they may check,
//! [`limits`] bounds the work, [`api`] holds the handlers, [`transport`] reaches this node's probe
//! engine in-process and other nodes' agents over this same endpoint, [`probe_metrics`] renders
//! `/probe` for Prometheus. [`start`] binds the listener and runs the accept loop.

pub mod api;
pub mod auth;
pub mod disclosure;
pub mod limits;
pub mod probe_metrics;
pub mod tls;
pub mod transport;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use thiserror::Error;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_rustls::TlsAcceptor;

use crate::engine::Engine;

/// The endpoint's default port.
pub const DEFAULT_ENDPOINT_PORT: u16 = 9443;

#[derive(Debug, Clone, clap::Args)]
pub struct EndpointArgs {
    /// Serve the in-cluster endpoint (HTTPS) on this address, e.g. 0.0.0.0:9443; off when unset.
    #[arg(long, env = "NETDIAG_ENDPOINT_LISTEN", value_name = "ADDR")]
    pub endpoint_listen: Option<SocketAddr>,
    /// The endpoint's certificate (PEM chain); when it and the key are absent, a self-signed
    /// certificate is made at start.
    #[arg(long, default_value = "/etc/netdiag/tls/tls.crt", value_name = "FILE")]
    pub tls_cert_file: PathBuf,
    /// The endpoint's private key (PEM).
    #[arg(long, default_value = "/etc/netdiag/tls/tls.key", value_name = "FILE")]
    pub tls_key_file: PathBuf,
    /// Audiences a caller's token must be valid for (TokenReview `spec.audiences`); repeatable.
    #[arg(long = "token-audience", default_value = "netdiag", value_delimiter = ',')]
    pub token_audiences: Vec<String>,
    /// How long a TokenReview result is reused (a rejection a fifth of it).
    #[arg(long, default_value_t = 10, value_name = "SECONDS")]
    pub auth_cache_seconds: u64,
    /// This agent's token for calling other agents (a projected token with the audience above).
    #[arg(long, default_value = "/var/run/secrets/netdiag/token", value_name = "FILE")]
    pub peer_token_file: PathBuf,
    /// CA bundle that peer agents' certificates are verified against; unverified when unset.
    #[arg(long, value_name = "FILE")]
    pub peer_ca_file: Option<PathBuf>,
    /// Namespace of the agent pods (default: this agent's own namespace, else `netdiag`).
    #[arg(long, value_name = "NAMESPACE")]
    pub agent_namespace: Option<String>,
    /// Label selector of the agent pods (`key=value,...`).
    #[arg(long, default_value = "app.kubernetes.io/name=netdiag-agent")]
    pub agent_selector: String,
    /// Requests one caller may have in flight; more are answered 429.
    #[arg(long, default_value_t = 4)]
    pub max_checks_per_caller: usize,
    /// Distinct checks running at once; more are answered 429.
    #[arg(long, default_value_t = 32)]
    pub max_checks: usize,
    /// Connections the endpoint serves at once; more are closed at once.
    #[arg(long, default_value_t = 256)]
    pub endpoint_max_connections: usize,
    /// Largest accepted request body of the endpoint.
    #[arg(long, default_value_t = 16 * 1024)]
    pub endpoint_max_body_bytes: usize,
    /// Bound on every API server call (connect and each response).
    #[arg(long, default_value_t = 10, value_name = "SECONDS")]
    pub api_timeout_seconds: u64,
}

#[derive(Debug, Error)]
pub enum EndpointError {
    #[error(transparent)]
    Tls(#[from] tls::TlsError),
    #[error("cannot listen on {addr} for the in-cluster endpoint")]
    Bind {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("--{0} must be at least 1")]
    Zero(&'static str),
}

/// The agent's client for the API server, bounded by `timeout`, or why there is none.
async fn kube_client(timeout: Duration) -> Result<kube::Client, String> {
    let mut config = kube::Config::infer()
        .await
        .map_err(|e| format!("no kubernetes configuration: {}", crate::cli::error_chain(&e)))?;
    config.connect_timeout = Some(timeout);
    config.read_timeout = Some(timeout);
    config.write_timeout = Some(timeout);
    kube::Client::try_from(config).map_err(|e| {
        format!(
            "cannot build a kubernetes client: {}",
            crate::cli::error_chain(&e)
        )
    })
}

/// Binds the endpoint and serves it on a task; `engine` runs this node's probes, `pod` is this
/// agent's `namespace/name`. Returns the bound address.
pub async fn start(
    args: EndpointArgs,
    listen: SocketAddr,
    engine: Engine,
    pod: Option<String>,
) -> Result<SocketAddr, EndpointError> {
    for (name, value) in [
        ("max-checks-per-caller", args.max_checks_per_caller),
        ("max-checks", args.max_checks),
        ("endpoint-max-connections", args.endpoint_max_connections),
    ] {
        if value == 0 {
            return Err(EndpointError::Zero(name));
        }
    }
    let mut names = vec!["netdiag-agent".to_string(), listen.ip().to_string()];
    names.extend(std::env::var("POD_IP").ok().filter(|ip| !ip.is_empty()));
    let (server, source) = tls::server_config(&args.tls_cert_file, &args.tls_key_file, names)?;
    let peer_tls = tls::peer_client_config(args.peer_ca_file.as_deref())?;
    let listener = TcpListener::bind(listen)
        .await
        .map_err(|source| EndpointError::Bind { addr: listen, source })?;
    let local = listener
        .local_addr()
        .map_err(|source| EndpointError::Bind { addr: listen, source })?;
    let client = kube_client(Duration::from_secs(args.api_timeout_seconds)).await;
    if let Err(why) = &client {
        tracing::warn!("the in-cluster endpoint will answer 503 to every request: {why}");
    }
    let node = engine.info().agent.node;
    let pod = pod.unwrap_or_else(|| format!("node/{node}"));
    let namespace = args
        .agent_namespace
        .clone()
        .or_else(|| {
            pod.split_once('/')
                .map(|(ns, _)| ns.to_string())
                .filter(|ns| ns != "node")
        })
        .unwrap_or_else(|| "netdiag".into());
    let peers = transport::Peers {
        engine: Arc::new(engine),
        node,
        pod,
        namespace,
        selector: args.agent_selector.clone(),
        port: local.port(),
        tls: Arc::new(peer_tls),
        token_file: args.peer_token_file.clone(),
    };
    let state = api::State::new(&args, client, peers);
    let router = api::router(state, args.endpoint_max_body_bytes);
    tracing::info!(%local, certificate = ?source, "serving the in-cluster endpoint");
    let acceptor = TlsAcceptor::from(Arc::new(server));
    tokio::spawn(accept_loop(
        listener,
        acceptor,
        router,
        args.endpoint_max_connections,
    ));
    Ok(local)
}

/// Accepts connections while fewer than `max` are open (closing the rest at once), each with a
/// bounded TLS handshake and request-head read.
async fn accept_loop(listener: TcpListener, acceptor: TlsAcceptor, router: axum::Router, max: usize) {
    let open = Arc::new(Semaphore::new(max));
    loop {
        let (stream, peer) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(err) => {
                tracing::warn!("the in-cluster endpoint failed to accept a connection: {err}");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        crate::server::no_delay(&stream);
        let Ok(permit) = open.clone().try_acquire_owned() else {
            tracing::warn!(%peer, "closing a connection: {max} connections are open");
            drop(stream);
            continue;
        };
        let (acceptor, router) = (acceptor.clone(), router.clone());
        tokio::spawn(async move {
            let _permit = permit;
            let tls = match tokio::time::timeout(Duration::from_secs(10), acceptor.accept(stream)).await {
                Ok(Ok(tls)) => tls,
                Ok(Err(err)) => {
                    tracing::debug!(%peer, "tls handshake failed: {err}");
                    return;
                }
                Err(_) => return,
            };
            let service = TowerToHyperService::new(router);
            let served = hyper::server::conn::http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(Duration::from_secs(10))
                .serve_connection(TokioIo::new(tls), service)
                .await;
            if let Err(err) = served {
                tracing::debug!(%peer, "connection ended with an error: {err}");
            }
        });
    }
}
