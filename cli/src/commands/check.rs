//! The plugin's front end of the check: flags → [`CheckRequest`] → the engine → output.
//!
//! I/O here: the kubeconfig, the workload behind `--from deploy/NAME` or `-l`, and the output.
//! A configuration error (no kubeconfig, unknown context) is kubectl's one-line `error: …`.

use std::io::Write as _;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use crate::agent_client::{Agents, DEFAULT_AGENT_NAMESPACE, DEFAULT_AGENT_SELECTOR};
use crate::kube_args::{KubeArgs, KubeConfigError, scoped_command};
use crate::output::terminal_width;
use crate::render::{Layout, Progress, render_report};
use netdiag_engine::CheckRequest;
use netdiag_engine::Evidence;
use netdiag_engine::NamespacedName;
use netdiag_engine::Snapshot;
use netdiag_engine::agent_deadline;
use netdiag_engine::report::{EXIT_CONFIG, EXIT_UNDETERMINED, Layer};
use netdiag_engine::{SourceRef, Target, parse_agent_url, parse_timeout};
use netdiag_engine::{WorkloadError, workload};
use netdiag_engine::{collect, verdict};

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum OutputFormat {
    /// The checklist.
    Table,
    /// The checklist with every step's evidence and a table of the destination addresses.
    Wide,
    Json,
    Yaml,
}

const EXAMPLES: &str = "\
Examples:
  # From a pod to a Service port (number or name)
  kubectl netdiag check --from shop/checkout --to svc/payments.shop:80

  # From a ready pod of a Deployment, in namespace shop, to a pod's named port
  kubectl netdiag check -n shop --from deploy/checkout --to pod/payments-0:http

  # From the first ready pod matching a selector to a name resolved as the pod would
  kubectl netdiag check -n shop -l app=checkout --to api.example.com:443 -o wide

  # As data
  kubectl netdiag check --from shop/checkout --to 10.96.12.7:80 -o json

Exit codes: 0 reachable; 10 source, 11 dns, 12 service, 13 endpoints, 14 network-policy,
15 pod-network, 16 service-proxy, 17 application (the failing layer); 3 undetermined (the
tool could not look); 4 configuration error (kubeconfig, context); 2 usage error.";

/// Walk the connectivity checklist from a pod to a target and name the failing layer.
#[derive(Debug, clap::Args)]
#[command(after_help = EXAMPLES)]
pub struct CheckArgs {
    #[command(flatten)]
    pub kube: KubeArgs,
    /// Namespace of --from/--to names that give none (default: the context's namespace; for
    /// svc/ and pod/ targets, the source pod's namespace).
    #[arg(short = 'n', long, value_name = "NAMESPACE")]
    pub namespace: Option<String>,
    /// The client: POD, NS/POD, or TYPE/NAME for a workload (deploy/, sts/, ds/, rs/; pod/ too),
    /// whose first ready pod by name is used.
    #[arg(long, value_name = "SOURCE", required_unless_present = "selector")]
    pub from: Option<SourceRef>,
    /// The client as a label selector (in -n): the first ready matching pod by name.
    #[arg(short = 'l', long, value_name = "SELECTOR", conflicts_with = "from")]
    pub selector: Option<String>,
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
    /// The request for the source pod `from`.
    fn request(&self, from: NamespacedName) -> CheckRequest {
        CheckRequest {
            target_namespace: self.namespace.clone().unwrap_or_else(|| from.namespace.clone()),
            from,
            target: self.to.clone(),
            to_text: self.to.to_string(),
            timeout: self.timeout,
        }
    }
}

/// kubectl's `error: …` on stderr for a configuration the check cannot start with.
pub fn config_error(err: &KubeConfigError) -> ExitCode {
    eprintln!("error: {err}");
    ExitCode::from(EXIT_CONFIG)
}

/// A client whose every response, including an agent's answer over a port-forward, arrives
/// within the agents' deadline; the namespace a bare name means; the context's name.
async fn client(args: &CheckArgs) -> Result<(kube::Client, String, Option<String>), KubeConfigError> {
    let resolved = args.kube.resolve().await?;
    let mut config = resolved.config;
    config.connect_timeout = Some(Duration::from_secs(5));
    // kube leaves reads unbounded (for long-lived streams): an API server that accepts the
    // connection and never answers would hang the check.
    config.read_timeout = Some(agent_deadline(args.timeout));
    config.reset_reader_on_write = true;
    let default_ns = args
        .namespace
        .clone()
        .unwrap_or_else(|| config.default_namespace.clone());
    tracing::info!(context = ?resolved.context, server = %config.cluster_url, namespace = %default_ns, "using the cluster");
    let client = crate::kube_args::client(config).map_err(|e| KubeConfigError::Client(e.to_string()))?;
    Ok((client, default_ns, resolved.context))
}

/// Reads the cluster and collects the evidence through the engine.
async fn evidence(args: &CheckArgs, client: &kube::Client, request: &CheckRequest) -> (Snapshot, Evidence) {
    let agents = async {
        match &args.agent_url {
            Some(url) => Agents::direct(url),
            None => Agents::discover(client.clone(), &args.agent_namespace, &args.agent_selector).await,
        }
    };
    let (agents, snap) = tokio::join!(agents, Snapshot::read(client, request));
    tracing::info!("read the cluster; probing as {}", request.from);
    let evidence = collect(&snap, &agents, request).await;
    (snap, evidence)
}

/// The exit code of a `--from`/`-l` that designates no pod: the source is missing (10) when
/// the API said so, undetermined (3) when it could not be asked.
fn workload_exit(err: &WorkloadError) -> u8 {
    match err {
        WorkloadError::NoPods { .. } | WorkloadError::NoSelector { .. } => Layer::Source.exit_code(),
        WorkloadError::Get {
            source: kube::Error::Api(status),
            ..
        } if status.code == 404 => Layer::Source.exit_code(),
        _ => EXIT_UNDETERMINED,
    }
}

pub async fn run(args: CheckArgs) -> ExitCode {
    let started = Instant::now();
    let (client, default_ns, context) = match client(&args).await {
        Ok(found) => found,
        Err(err) => return config_error(&err),
    };
    let picked =
        match workload::resolve(&client, args.from.as_ref(), args.selector.as_deref(), &default_ns).await {
            Ok(picked) => picked,
            Err(err) => {
                eprintln!("error: {err}");
                return ExitCode::from(workload_exit(&err));
            }
        };
    if let Some(note) = &picked.note {
        eprintln!("{note}");
    }
    let request = args.request(picked.pod);
    let progress = Progress::start(format!("checking {} → {} …", request.from, args.to));
    let (snap, evidence) = evidence(&args, &client, &request).await;
    progress.stop();
    let mut report = verdict(&snap, &evidence, started.elapsed().as_millis() as u64);
    let flags = args.kube.command_flags(context.as_deref());
    report.scope_commands(|command| scoped_command(command, &flags));
    tracing::info!(verdict = ?report.verdict, ms = report.duration_ms, "judged");
    match args.output {
        OutputFormat::Json => {
            let json = serde_json::to_string_pretty(&report).expect("a report always serializes");
            let _ = writeln!(std::io::stdout().lock(), "{json}");
        }
        OutputFormat::Yaml => {
            let yaml = serde_yaml_ng::to_string(&report).expect("a report always serializes");
            let _ = write!(std::io::stdout().lock(), "{yaml}");
        }
        OutputFormat::Table | OutputFormat::Wide => {
            let layout = Layout {
                width: terminal_width(),
                wide: args.output == OutputFormat::Wide,
            };
            let text = render_report(&evidence.from.to_string(), &evidence.to, &report, layout);
            let _ = write!(anstream::stdout().lock(), "{text}");
        }
    }
    ExitCode::from(report.exit_code())
}
