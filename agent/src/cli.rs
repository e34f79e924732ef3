//! Command line: `serve`, `probe FILE|-`, `healthcheck`.

use std::io::Read;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, bail};
use clap::{Args, Parser, Subcommand};
use netdiag_proto::{AgentIdentity, DEFAULT_AGENT_PORT, ProbeRequest};

use crate::accept;
use crate::access::{Access, DEFAULT_NETNS_ROOTS, SourceKind};
use crate::engine::{Engine, EngineConfig};
use crate::metrics::Metrics;
use crate::server::{self, ServerConfig};
use crate::{caps, healthcheck};

#[derive(Debug, Parser)]
#[command(
    name = "netdiag-agent",
    version,
    about = "netdiag node agent: runs probes inside pod network namespaces"
)]
pub struct Cli {
    /// Log format (stderr, and the listening announcement on stdout): text (coloured only on a
    /// terminal) or json (one object per line).
    #[arg(long, global = true, env = "NETDIAG_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
    #[command(subcommand)]
    pub command: Command,
}

/// The log target of the lines announcing where the agent listens, which go to stdout at any
/// log level (`netdiag-agent listening on ADDR`, the address last).
pub const ANNOUNCE_TARGET: &str = "netdiag_agent::announce";

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Serve the probe API.
    Serve(Box<ServeArgs>),
    /// Run one probe request (JSON from FILE, or `-` for stdin) and print the report as JSON.
    Probe(ProbeArgs),
    /// Exit 0 when the agent at URL answers ready (for exec probes).
    Healthcheck(HealthArgs),
}

#[derive(Debug, Clone, Args)]
pub struct NodeArgs {
    /// Name of this node (default: the hostname).
    #[arg(long, env = "NODE_NAME")]
    pub node: Option<String>,
    /// The node's network namespace file, entered for `node` sources.
    #[arg(long, env = "NETDIAG_NODE_NETNS", default_value = "/proc/1/ns/net")]
    pub node_netns: String,
}

#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Address of the control listener.
    #[arg(long, default_value_t = SocketAddr::from(([127, 0, 0, 1], DEFAULT_AGENT_PORT)))]
    pub listen: SocketAddr,
    /// Also serve `/metrics` (and `/healthz`, nothing else) on this address, e.g. 0.0.0.0:9809,
    /// for Prometheus to scrape on the pod IP.
    #[arg(long, env = "NETDIAG_METRICS_LISTEN")]
    pub metrics_listen: Option<SocketAddr>,
    #[command(flatten)]
    pub node: NodeArgs,
    /// The agent's own pod as NAMESPACE/NAME (default: from POD_NAMESPACE and POD_NAME).
    #[arg(long)]
    pub pod: Option<String>,
    /// Probe requests served at once; more are answered 503 at once.
    #[arg(long, default_value_t = 256)]
    pub max_concurrent: usize,
    /// Largest accepted request body.
    #[arg(long, default_value_t = 256 * 1024)]
    pub max_body_bytes: usize,
    /// Source kinds callers may name (podIP, node, netns, pid). The plugin needs podIP and node;
    /// netns and pid name arbitrary namespaces and processes of the node.
    #[arg(
        long,
        env = "NETDIAG_ALLOW_SOURCES",
        value_delimiter = ',',
        default_value = "podIP,node"
    )]
    pub allow_sources: Vec<SourceKind>,
    #[command(flatten)]
    pub roots: RootsArgs,
    /// Connections open at once; one more closes the oldest connection not inside a request.
    #[arg(long, default_value_t = 512)]
    pub max_connections: usize,
    /// Sockets the probes of all requests may hold at once (default: what the open-files limit
    /// leaves after connections, at most 4096). A request that would exceed it is answered 503.
    #[arg(long)]
    pub socket_budget: Option<u32>,
    /// Time a client has to send a request's headers (also how long an idle connection stays open).
    #[arg(long, default_value_t = 5000)]
    pub header_timeout_ms: u64,
    /// Time a client has to send a request's body once its headers arrived.
    #[arg(long, default_value_t = 5000)]
    pub body_timeout_ms: u64,
    #[command(flatten)]
    pub endpoint: crate::endpoint::EndpointArgs,
}

#[derive(Debug, Args)]
pub struct RootsArgs {
    /// Namespace files a `netns` source may name: patterns where `*` is one path component.
    #[arg(long, env = "NETDIAG_NETNS_ROOTS", value_delimiter = ',', default_value = DEFAULT_NETNS_ROOTS)]
    pub netns_roots: Vec<String>,
}

#[derive(Debug, Args)]
pub struct ProbeArgs {
    /// File holding a ProbeRequest as JSON, or `-` for stdin.
    pub file: PathBuf,
    #[command(flatten)]
    pub node: NodeArgs,
    #[command(flatten)]
    pub roots: RootsArgs,
}

#[derive(Debug, Args)]
pub struct HealthArgs {
    #[arg(long, default_value = "http://127.0.0.1:9808/readyz")]
    pub url: String,
}

pub fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Serve(args) => runtime()?.block_on(serve(*args)),
        Command::Probe(args) => runtime()?.block_on(probe_once(args, cli.log_format)),
        Command::Healthcheck(args) => Ok(healthcheck::check(&args.url, Duration::from_secs(3))?),
    }
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")
}

/// File descriptors kept out of the socket budget for everything else: the runtime, namespace
/// files and netlink sockets of lookups, /proc reads, logs.
const FD_RESERVE: u64 = 256;
/// The socket budget when the open-files limit is generous.
const DEFAULT_SOCKET_BUDGET: u64 = 4096;

/// Raises the soft open-files limit to the hard one and returns the socket budget that fits in it
/// beside `max_connections` connections; an explicit `wanted` budget that does not fit is refused.
fn socket_budget(wanted: Option<u32>, max_connections: usize) -> anyhow::Result<u32> {
    use nix::sys::resource::{Resource, getrlimit, setrlimit};
    let (soft, hard) = getrlimit(Resource::RLIMIT_NOFILE).context("cannot read the open-files limit")?;
    let limit = if soft < hard && setrlimit(Resource::RLIMIT_NOFILE, hard, hard).is_ok() {
        hard
    } else {
        soft
    };
    let room = limit.saturating_sub(max_connections as u64 + FD_RESERVE);
    match wanted {
        Some(w) if u64::from(w) > room => bail!(
            "--socket-budget {w} does not fit in the open-files limit {limit} beside --max-connections \
             {max_connections} and {FD_RESERVE} descriptors for the agent itself (at most {room})"
        ),
        Some(0) => bail!("--socket-budget must be at least 1"),
        Some(w) => Ok(w),
        None if room < 2 => bail!(
            "the open-files limit {limit} leaves no room for probe sockets beside --max-connections \
             {max_connections}; raise it or lower --max-connections"
        ),
        None => Ok(u32::try_from(room.min(DEFAULT_SOCKET_BUDGET)).unwrap_or(u32::MAX)),
    }
}

fn engine(node: NodeArgs, pod: Option<String>, limits: EngineLimits) -> anyhow::Result<Engine> {
    let node_name = match node.node {
        Some(n) if !n.is_empty() => n,
        _ => std::fs::read_to_string("/proc/sys/kernel/hostname")
            .context("cannot read the hostname; pass --node")?
            .trim()
            .to_string(),
    };
    let pod = match pod {
        Some(p) if !p.contains('/') => bail!("--pod {p:?} is not of the form NAMESPACE/NAME"),
        Some(p) => Some(p),
        None => match (std::env::var("POD_NAMESPACE"), std::env::var("POD_NAME")) {
            (Ok(ns), Ok(name)) if !ns.is_empty() && !name.is_empty() => Some(format!("{ns}/{name}")),
            _ => None,
        },
    };
    let identity = AgentIdentity {
        node: node_name,
        version: env!("CARGO_PKG_VERSION").into(),
        pod,
    };
    let config = EngineConfig {
        node_netns: node.node_netns,
        max_concurrent: limits.max_concurrent,
        socket_budget: limits.socket_budget,
        access: limits.access,
    };
    Ok(Engine::new(
        identity,
        caps::discover(),
        Arc::new(Metrics::default()),
        config,
    ))
}

/// What [`engine`] needs besides the node.
#[derive(Clone)]
struct EngineLimits {
    max_concurrent: usize,
    socket_budget: u32,
    access: Access,
}

async fn serve(args: ServeArgs) -> anyhow::Result<()> {
    if args.max_concurrent == 0 {
        bail!("--max-concurrent must be at least 1");
    }
    let config = ServerConfig {
        max_body_bytes: args.max_body_bytes,
        max_connections: args.max_connections.max(1),
        header_timeout: Duration::from_millis(args.header_timeout_ms.max(1)),
        body_timeout: Duration::from_millis(args.body_timeout_ms.max(1)),
    };
    let limits = EngineLimits {
        max_concurrent: args.max_concurrent,
        socket_budget: socket_budget(args.socket_budget, config.max_connections)?,
        access: Access::new(&args.allow_sources, &args.roots.netns_roots)?,
    };
    let sources = limits
        .access
        .allowed()
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>();
    let budget = limits.socket_budget;
    let endpoint_limits = limits.clone();
    let engine = engine(args.node.clone(), args.pod.clone(), limits)?;
    if let Some(listen) = args.endpoint.endpoint_listen {
        // Its own engine: checks from the endpoint never take the control listener's slots.
        let own = self::engine(args.node, args.pod.clone(), endpoint_limits)?;
        let pod = own.info().agent.pod;
        let local = crate::endpoint::start(args.endpoint, listen, own, pod, &config).await?;
        tracing::info!(target: ANNOUNCE_TARGET, "netdiag-agent endpoint on {local}");
    }
    let info = engine.info();
    if !info.capabilities.setns {
        tracing::warn!(
            "CAP_SYS_ADMIN is missing: entering pod network namespaces will fail; add SYS_ADMIN to securityContext.capabilities.add"
        );
    }
    if !info.capabilities.net_admin {
        tracing::warn!(
            "CAP_NET_ADMIN is missing: the node's Service rules (iptables, nftables) cannot be read; add NET_ADMIN to securityContext.capabilities.add"
        );
    }
    if !info.capabilities.net_raw {
        tracing::warn!(
            "CAP_NET_RAW is missing: host-unreachable and admin-prohibited cannot be told apart; add NET_RAW to securityContext.capabilities.add"
        );
    }
    if let Some(addr) = args.metrics_listen {
        let listener = accept::bind(addr).with_context(|| format!("cannot listen on {addr}"))?;
        tracing::info!(local = %listener.local_addr()?, "serving /metrics");
        let router = server::metrics_router(engine.metrics_handle());
        let options = server::metrics_options(&config);
        tokio::spawn(accept::serve(
            listener,
            None,
            router,
            options,
            std::future::pending(),
            || {},
        ));
    }
    let listener = accept::bind(args.listen).with_context(|| format!("cannot listen on {}", args.listen))?;
    let local = listener.local_addr()?;
    // One line on stdout so that whoever started the agent with port 0 learns the port.
    tracing::info!(target: ANNOUNCE_TARGET, "netdiag-agent listening on {local}");
    tracing::info!(%local, node = %info.agent.node, sources = %sources.join(","), socket_budget = budget, "serving the probe api");
    server::serve(listener, engine, config, shutdown()).await;
    Ok(())
}

async fn shutdown() {
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut term), Ok(mut int)) = (signal(SignalKind::terminate()), signal(SignalKind::interrupt()))
    else {
        return std::future::pending().await;
    };
    tokio::select! {
        _ = term.recv() => {}
        _ = int.recv() => {}
    }
}

async fn probe_once(args: ProbeArgs, format: LogFormat) -> anyhow::Result<()> {
    let bytes = if args.file.as_os_str() == "-" {
        let mut buf = Vec::new();
        std::io::stdin()
            .read_to_end(&mut buf)
            .context("cannot read the probe request from stdin")?;
        buf
    } else {
        std::fs::read(&args.file).with_context(|| format!("cannot read {}", args.file.display()))?
    };
    let request: ProbeRequest =
        serde_json::from_slice(&bytes).map_err(|err| anyhow::anyhow!("invalid probe request: {err}"))?;
    // The one-shot mode is run by whoever already has a root shell on the node: every source kind.
    let limits = EngineLimits {
        max_concurrent: 1,
        socket_budget: socket_budget(None, 0)?,
        access: Access::new(&SourceKind::ALL, &args.roots.netns_roots)?,
    };
    let engine = engine(args.node, None, limits)?;
    let report = engine.run(&request).await?;
    // Under json logs the report is one line too, so that every line of output parses.
    let report = match format {
        LogFormat::Json => serde_json::to_string(&report)?,
        LogFormat::Text => serde_json::to_string_pretty(&report)?,
    };
    println!("{report}");
    Ok(())
}
