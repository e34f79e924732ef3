//! `check` command wiring: flags → plan → gather (I/O) → judge (pure) → output.

use std::io::Write as _;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use super::error_chain;
use super::evidence::{Destination, EndpointsFacts, Evidence, ServiceFacts, SourceFacts};
use super::gather::{AgentRoute, Plan, agent_deadline, gather};
use super::judge::judge;
use super::target::{PodRef, Target, parse_agent_url, parse_timeout};
use crate::agent_client::{DEFAULT_AGENT_NAMESPACE, DEFAULT_AGENT_SELECTOR};
use crate::kube_args::KubeArgs;
use crate::render::{Progress, render_report};

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum OutputFormat {
    Table,
    Json,
}

/// Exit codes: 0 reachable; 10 source, 11 dns, 12 service, 13 endpoints, 14 network-policy,
/// 15 pod-network, 16 service-proxy, 17 application (the failing layer); 3 undetermined; 2 usage error.
#[derive(Debug, clap::Args)]
#[command(
    after_help = "Exit codes: 0 reachable; 10 source, 11 dns, 12 service, 13 endpoints, \
14 network-policy, 15 pod-network, 16 service-proxy, 17 application (the failing layer); \
3 undetermined (the tool could not look); 2 usage error."
)]
pub struct CheckArgs {
    #[command(flatten)]
    pub kube: KubeArgs,
    /// Namespace of --from/--to names that give none (default: the context's namespace; for
    /// svc/ and pod/ targets, the source pod's namespace).
    #[arg(short = 'n', long, value_name = "NAMESPACE")]
    pub namespace: Option<String>,
    /// The client pod: NAMESPACE/POD, or POD.
    #[arg(long, value_name = "NS/POD")]
    pub from: PodRef,
    /// What the client wants to reach: svc/NAME[.NS]:PORT (number or port name),
    /// pod/NAME[.NS]:PORT, HOST:PORT (resolved as the pod would) or IP:PORT.
    #[arg(long, value_name = "TARGET")]
    pub to: Target,
    /// Per-probe timeout, e.g. 1s or 500ms.
    #[arg(long, default_value = "1s", value_parser = parse_timeout)]
    pub timeout: Duration,
    /// Output format.
    #[arg(short = 'o', long, value_enum, default_value_t = OutputFormat::Table)]
    pub output: OutputFormat,
    /// Namespace of the netdiag agent DaemonSet.
    #[arg(long, default_value = DEFAULT_AGENT_NAMESPACE, value_name = "NAMESPACE")]
    pub agent_namespace: String,
    /// Label selector of the agent pods.
    #[arg(long, default_value = DEFAULT_AGENT_SELECTOR, value_name = "SELECTOR")]
    pub agent_selector: String,
    /// Debugging: send every agent request to this address (http://HOST:PORT) instead of
    /// port-forwarding to the agent pod on each node.
    #[arg(long, value_name = "URL", value_parser = parse_agent_url)]
    pub agent_url: Option<String>,
}

/// Evidence for a check that could not start: nothing could be looked at.
fn unreachable_api(args: &CheckArgs, reason: String) -> Evidence {
    let from_ns = args
        .from
        .namespace
        .clone()
        .or_else(|| args.namespace.clone())
        .unwrap_or_else(|| "default".into());
    Evidence {
        from: format!("{from_ns}/{}", args.from.name),
        to: target_text(&args.to),
        destination: Destination::External,
        timeout_ms: args.timeout.as_millis() as u64,
        source: SourceFacts::Unknown(reason.clone()),
        dns: None,
        service: ServiceFacts::Unknown(reason.clone()),
        endpoints: EndpointsFacts::Unknown(reason),
        cluster_ip: None,
        agents: None,
    }
}

fn target_text(target: &Target) -> String {
    let ns = |n: &Option<String>| n.as_ref().map(|n| format!(".{n}")).unwrap_or_default();
    match target {
        Target::Service {
            name,
            namespace,
            port,
        } => format!("svc/{name}{}:{port}", ns(namespace)),
        Target::Pod {
            name,
            namespace,
            port,
        } => format!("pod/{name}{}:{port}", ns(namespace)),
        Target::Host { host, port } => format!("{host}:{port}"),
        Target::Ip { ip, port } => format!("{}:{port}", super::evidence::fmt_ip(*ip)),
    }
}

/// Collects the evidence (I/O), or explains why nothing could be collected.
async fn collect(args: &CheckArgs) -> Evidence {
    let mut config = match args.kube.config().await {
        Ok(config) => config,
        Err(err) => return unreachable_api(args, error_chain(&err)),
    };
    config.connect_timeout = Some(Duration::from_secs(5));
    // kube leaves reads unbounded (for long-lived streams): an API server that accepts the
    // connection and never answers would hang the check. Every response, including the agent's
    // answer over a port-forward, must arrive within the agents' deadline.
    config.read_timeout = Some(agent_deadline(args.timeout));
    config.reset_reader_on_write = true;
    let default_ns = args
        .namespace
        .clone()
        .unwrap_or_else(|| config.default_namespace.clone());
    let client = match kube::Client::try_from(config) {
        Ok(client) => client,
        Err(err) => {
            return unreachable_api(
                args,
                format!("failed to create a Kubernetes client: {}", error_chain(&err)),
            );
        }
    };
    let from_namespace = args.from.namespace.clone().unwrap_or_else(|| default_ns.clone());
    let target_namespace = args.namespace.clone().unwrap_or_else(|| from_namespace.clone());
    let plan = Plan {
        from: args.from.clone(),
        from_namespace,
        target: args.to.clone(),
        target_namespace,
        to_text: target_text(&args.to),
        timeout: args.timeout,
    };
    let route = match &args.agent_url {
        Some(url) => AgentRoute::Url(url.clone()),
        None => AgentRoute::PortForward {
            namespace: args.agent_namespace.clone(),
            selector: args.agent_selector.clone(),
        },
    };
    gather(&client, &route, &plan).await
}

pub async fn run(args: CheckArgs) -> ExitCode {
    let started = Instant::now();
    let progress = Progress::start(format!(
        "checking {} → {} …",
        args.from.name,
        target_text(&args.to)
    ));
    let evidence = collect(&args).await;
    progress.stop();
    let report = judge(&evidence, started.elapsed().as_millis() as u64);
    match args.output {
        OutputFormat::Json => {
            let json = serde_json::to_string_pretty(&report).expect("a report always serializes");
            let mut out = std::io::stdout().lock();
            let _ = writeln!(out, "{json}");
        }
        OutputFormat::Table => {
            let text = render_report(&evidence.from, &evidence.to, &report);
            let mut out = anstream::stdout().lock();
            let _ = write!(out, "{text}");
        }
    }
    ExitCode::from(report.exit_code())
}
