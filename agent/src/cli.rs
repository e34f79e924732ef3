//! Command line: `serve`, `probe FILE|-`, `healthcheck`.

use std::io::Read;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, bail};
use clap::{Args, Parser, Subcommand};
use netdiag_proto::{AgentIdentity, DEFAULT_AGENT_PORT, ProbeRequest};

use crate::engine::Engine;
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
    #[command(subcommand)]
    pub command: Command,
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
    #[command(flatten)]
    pub endpoint: crate::endpoint::EndpointArgs,
}

#[derive(Debug, Args)]
pub struct ProbeArgs {
    /// File holding a ProbeRequest as JSON, or `-` for stdin.
    pub file: PathBuf,
    #[command(flatten)]
    pub node: NodeArgs,
}

#[derive(Debug, Args)]
pub struct HealthArgs {
    #[arg(long, default_value = "http://127.0.0.1:9808/readyz")]
    pub url: String,
}

pub fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Serve(args) => runtime()?.block_on(serve(*args)),
        Command::Probe(args) => runtime()?.block_on(probe_once(args)),
        Command::Healthcheck(args) => Ok(healthcheck::check(&args.url, Duration::from_secs(3))?),
    }
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")
}

fn engine(node: NodeArgs, pod: Option<String>, max_concurrent: usize) -> anyhow::Result<Engine> {
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
    Ok(Engine::new(
        identity,
        caps::discover(),
        node.node_netns,
        Arc::new(Metrics::default()),
        max_concurrent,
    ))
}

async fn serve(args: ServeArgs) -> anyhow::Result<()> {
    if args.max_concurrent == 0 {
        bail!("--max-concurrent must be at least 1");
    }
    let config = ServerConfig {
        max_body_bytes: args.max_body_bytes,
    };
    let engine = engine(args.node.clone(), args.pod.clone(), args.max_concurrent)?;
    if let Some(listen) = args.endpoint.endpoint_listen {
        let own = self::engine(args.node, args.pod.clone(), args.max_concurrent)?;
        let pod = own.info().agent.pod;
        let local = crate::endpoint::start(args.endpoint, listen, own, pod).await?;
        println!("netdiag-agent endpoint on {local}");
    }
    let info = engine.info();
    if !info.capabilities.setns {
        tracing::warn!(
            "CAP_SYS_ADMIN is missing: entering pod network namespaces will fail; add SYS_ADMIN to securityContext.capabilities.add"
        );
    }
    if !info.capabilities.net_raw {
        tracing::warn!(
            "CAP_NET_RAW is missing: host-unreachable and admin-prohibited cannot be told apart; add NET_RAW to securityContext.capabilities.add"
        );
    }
    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("cannot listen on {}", args.listen))?;
    let local = listener.local_addr()?;
    // One line on stdout so that whoever started the agent with port 0 learns the port.
    println!("netdiag-agent listening on {local}");
    tracing::info!(%local, node = %info.agent.node, "serving the probe api");
    axum::serve(listener, server::router(engine, &config))
        .with_graceful_shutdown(shutdown())
        .await
        .context("the http server failed")
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

async fn probe_once(args: ProbeArgs) -> anyhow::Result<()> {
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
    let engine = engine(args.node, None, 1)?;
    let report = engine.run(&request).await?;
    println!("{}", serde_json::to_string_pretty(&report)?);
    Ok(())
}

/// An error and its causes on one line, skipping causes whose text the message already carries.
pub fn error_chain(err: &(dyn std::error::Error + 'static)) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.contains(&cause_text) {
            text = format!("{text}: {cause_text}");
        }
        source = cause.source();
    }
    text
}
