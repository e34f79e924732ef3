//! The in-cluster probe endpoint: HTTPS on the agent's pod IP for callers inside the cluster
//! (CI jobs, bots, Prometheus), authenticated with TokenReview and authorized per request with a
//! SubjectAccessReview, running the same check engine as the kubectl plugin.
//!
//! [`tls`] makes the certificates, [`auth`] asks the API server who calls and what they may do
//! (within bounds on what that costs it), [`gate`] authenticates each request from its head,
//! [`disclosure`] decides what a report shows a caller and from which sources they may check,
//! [`limits`] bounds the work, [`api`] holds the handlers, [`audit`] writes one line per request,
//! [`failure`] is every answer other than a report, [`transport`] reaches this node's probe engine
//! in-process and other nodes' agents over this same endpoint, [`probe_metrics`] renders `/probe`
//! for Prometheus. [`start`] binds the listener and serves it with the agent's shared accept loop
//! ([`crate::accept`]).

pub mod api;
pub mod audit;
pub mod auth;
pub mod disclosure;
pub mod failure;
pub mod gate;
pub mod limits;
pub mod probe_metrics;
pub mod tls;
pub mod transport;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use thiserror::Error;
use tokio_rustls::TlsAcceptor;

use crate::accept::{self, Authentication};
use crate::engine::Engine;
use crate::server::ServerConfig;

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
    /// Connections the endpoint serves at once; one more closes an unauthenticated or idle one
    /// (see the README), or is closed when all are inside authenticated requests.
    #[arg(long, default_value_t = 256)]
    pub endpoint_max_connections: usize,
    /// An address's share of a full connection table: once full, an address holding this many
    /// connections that never authenticated makes room only by closing its own most stuck one.
    #[arg(long, default_value_t = 64)]
    pub endpoint_max_connections_per_source: usize,
    /// Longest bearer token sent to a TokenReview; longer ones are refused (401) unread.
    #[arg(long, default_value_t = 4096, value_name = "BYTES")]
    pub max_token_bytes: usize,
    /// TokenReviews in flight at once, and as many SubjectAccessReviews; beyond, 429 at once.
    #[arg(long, default_value_t = 16)]
    pub max_reviews_in_flight: usize,
    /// TokenReviews of unknown tokens one client address may cause per minute (a quarter of
    /// them at once); beyond, 429.
    #[arg(long, default_value_t = 60, value_name = "PER_MINUTE")]
    pub token_reviews_per_source: u32,
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
        .map_err(|e| format!("no kubernetes configuration: {}", netdiag_engine::error_chain(&e)))?;
    config.connect_timeout = Some(timeout);
    config.read_timeout = Some(timeout);
    config.write_timeout = Some(timeout);
    // kube retries a 429/503/504 up to 15 times with backoff: one caller's review would become
    // many, and wait far past `timeout`. The endpoint answers at once instead (503, or an
    // undetermined layer).
    config.default_retry = false;
    kube::Client::try_from(config).map_err(|e| {
        format!(
            "cannot build a kubernetes client: {}",
            netdiag_engine::error_chain(&e)
        )
    })
}

/// Binds the endpoint and serves it on a task; `engine` runs this node's probes, `pod` is this
/// agent's `namespace/name`, `config` gives the head and body times of every listener. Returns the
/// bound address.
pub async fn start(
    args: EndpointArgs,
    listen: SocketAddr,
    engine: Engine,
    pod: Option<String>,
    config: &ServerConfig,
) -> Result<SocketAddr, EndpointError> {
    for (name, value) in [
        ("max-checks-per-caller", args.max_checks_per_caller),
        ("max-checks", args.max_checks),
        ("endpoint-max-connections", args.endpoint_max_connections),
        (
            "endpoint-max-connections-per-source",
            args.endpoint_max_connections_per_source,
        ),
        ("max-token-bytes", args.max_token_bytes),
        ("max-reviews-in-flight", args.max_reviews_in_flight),
        ("token-reviews-per-source", args.token_reviews_per_source as usize),
    ] {
        if value == 0 {
            return Err(EndpointError::Zero(name));
        }
    }
    let mut names = vec!["netdiag-agent".to_string(), listen.ip().to_string()];
    names.extend(std::env::var("POD_IP").ok().filter(|ip| !ip.is_empty()));
    let (server, source) = tls::server_config(&args.tls_cert_file, &args.tls_key_file, names)?;
    let peer_tls = tls::peer_client_config(args.peer_ca_file.as_deref())?;
    let listener = accept::bind(listen).map_err(|source| EndpointError::Bind { addr: listen, source })?;
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
    let router = api::router(state, args.endpoint_max_body_bytes, args.max_checks_per_caller);
    tracing::info!(%local, certificate = ?source, "serving the in-cluster endpoint");
    let options = accept::Options {
        name: "endpoint",
        max_connections: args.endpoint_max_connections,
        max_unauthenticated_per_source: args.endpoint_max_connections_per_source,
        header_timeout: config.header_timeout,
        body_timeout: config.body_timeout,
        authentication: Authentication::Middleware,
    };
    let acceptor = TlsAcceptor::from(Arc::new(server));
    tokio::spawn(accept::serve(
        listener,
        Some(acceptor),
        router,
        options,
        std::future::pending(),
        || {},
    ));
    Ok(local)
}
