//! The plugin's front end of the check: flags → [`CheckRequest`] → the engine → output.

use std::io::Write as _;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use super::evidence::Evidence;
use super::plan::CheckRequest;
use super::probe::{NoAgents, agent_deadline};
use super::snapshot::Snapshot;
use super::target::{PodRef, Target, parse_agent_url, parse_timeout};
use super::{collect, judge};
use crate::agent_client::{Agents, DEFAULT_AGENT_NAMESPACE, DEFAULT_AGENT_SELECTOR};
use crate::cluster::{NamespacedName, ToolFailure, error_chain};
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

impl CheckArgs {
    /// The request, once the namespace a bare name means is known.
    fn request(&self, default_ns: &str) -> CheckRequest {
        let from_namespace = self
            .from
            .namespace
            .clone()
            .unwrap_or_else(|| default_ns.to_string());
        CheckRequest {
            target_namespace: self.namespace.clone().unwrap_or_else(|| from_namespace.clone()),
            from: NamespacedName::new(from_namespace, self.from.name.clone()),
            target: self.to.clone(),
            to_text: self.to.to_string(),
            timeout: self.timeout,
        }
    }
}

/// A client whose every response, including an agent's answer over a port-forward, arrives
/// within the agents' deadline, and the namespace a bare name means.
async fn client(args: &CheckArgs) -> Result<(kube::Client, String), ToolFailure> {
    let config_failure = |detail| ToolFailure::Config { detail };
    let mut config = args
        .kube
        .config()
        .await
        .map_err(|e| config_failure(error_chain(&e)))?;
    config.connect_timeout = Some(Duration::from_secs(5));
    // kube leaves reads unbounded (for long-lived streams): an API server that accepts the
    // connection and never answers would hang the check.
    config.read_timeout = Some(agent_deadline(args.timeout));
    config.reset_reader_on_write = true;
    let default_ns = args
        .namespace
        .clone()
        .unwrap_or_else(|| config.default_namespace.clone());
    let client = kube::Client::try_from(config).map_err(|e| {
        config_failure(format!(
            "failed to create a Kubernetes client: {}",
            error_chain(&e)
        ))
    })?;
    Ok((client, default_ns))
}

/// Collects the evidence through the engine, or explains why nothing could be collected.
async fn evidence(args: &CheckArgs) -> Evidence {
    let (client, default_ns) = match client(args).await {
        Ok(found) => found,
        Err(failure) => {
            let request = args.request(args.namespace.as_deref().unwrap_or("default"));
            let agents = NoAgents(failure.clone());
            return collect(&Snapshot::unread(failure), &agents, &request).await;
        }
    };
    let request = args.request(&default_ns);
    let agents = async {
        match &args.agent_url {
            Some(url) => Agents::direct(url),
            None => Agents::discover(client.clone(), &args.agent_namespace, &args.agent_selector).await,
        }
    };
    let (agents, snap) = tokio::join!(agents, Snapshot::read(&client));
    collect(&snap, &agents, &request).await
}

pub async fn run(args: CheckArgs) -> ExitCode {
    let started = Instant::now();
    let progress = Progress::start(format!("checking {} → {} …", args.from.name, args.to));
    let evidence = evidence(&args).await;
    progress.stop();
    let report = judge::judge(&evidence, started.elapsed().as_millis() as u64);
    match args.output {
        OutputFormat::Json => {
            let json = serde_json::to_string_pretty(&report).expect("a report always serializes");
            let mut out = std::io::stdout().lock();
            let _ = writeln!(out, "{json}");
        }
        OutputFormat::Table => {
            let text = render_report(&evidence.from.to_string(), &evidence.to, &report);
            let mut out = anstream::stdout().lock();
            let _ = write!(out, "{text}");
        }
    }
    ExitCode::from(report.exit_code())
}
