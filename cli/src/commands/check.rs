//! The plugin's front end of the check: flags → [`CheckRequest`] → the engine → output.
//!
//! I/O here: the kubeconfig, the workload behind `--from deploy/NAME` or `-l`, and the output.
//! A configuration error (no kubeconfig, unknown context), a source that does not exist and an
//! API server that cannot be used are kubectl's one-line `error: …` (see [`crate::errors`]).

use std::io::Write as _;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{Namespace, Pod};
use kube::Api;
use kube::api::ListParams;

use crate::agent_client::{Agents, DEFAULT_AGENT_NAMESPACE, DEFAULT_AGENT_SELECTOR};
use crate::errors::{CliError, Emit};
use crate::kube_args::{KubeArgs, KubeConfigError, scoped_command};
use crate::output::terminal_width;
use crate::render::{Layout, Progress, render_report};
use netdiag_engine::CheckRequest;
use netdiag_engine::Evidence;
use netdiag_engine::NamespacedName;
use netdiag_engine::Snapshot;
use netdiag_engine::agent_deadline;
use netdiag_engine::report::{Layer, Report};
use netdiag_engine::{Repetition, collect_repeated, parse_repeat_for};
use netdiag_engine::{SourceFacts, SourceKind};
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

Marks: ✓ pass, ! passes but a policy denying the flow is not enforced, ✗ the failing layer, ? undetermined (netdiag could not look: no agent on the
node, a read forbidden — not a network failure), · skipped (not reached, or not applicable).

Exit codes: 0 reachable (9: reachable, but NetworkPolicy that denies it is not enforced); 10 source, 11 dns, 12 service, 13 endpoints, 14 network-policy,
15 pod-network, 16 service-proxy, 17 application (the failing layer); 3 undetermined (the
tool could not look); 2 usage error; 4 configuration error (kubeconfig, context, or a --from
pod, namespace or workload that does not exist); 5 API server unreachable; 6 not logged in
(401); 7 forbidden by RBAC (403); 1 any other error.";

/// Walk the connectivity checklist from a pod to a target and name the failing layer.
#[derive(Debug, clap::Args)]
#[command(after_help = EXAMPLES)]
pub struct CheckArgs {
    /// The connection flags, given before or after the subcommand (-n is the namespace of
    /// --from/--to names that give none; without it, the context's for --from and the source
    /// pod's for svc/ and pod/ targets).
    #[arg(skip)]
    pub kube: KubeArgs,
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
    /// Send the live probes (new connections, fresh DNS lookups as the pod) N times in all, back
    /// to back, and report each one's failures and latency: for failures that come and go.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..=1000), conflicts_with = "for_duration")]
    pub repeat: Option<u32>,
    /// Send the live probes every --interval until this much time has passed (e.g. 30s, 5m).
    #[arg(long = "for", value_name = "DURATION", value_parser = parse_repeat_for)]
    pub for_duration: Option<Duration>,
    /// The pause between rounds of --for.
    #[arg(long, value_name = "DURATION", value_parser = parse_timeout, requires = "for_duration")]
    pub interval: Option<Duration>,
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

/// The pause between rounds of `--for` when `--interval` is not given.
const DEFAULT_INTERVAL: Duration = Duration::from_secs(1);

impl CheckArgs {
    /// How often the live probes run: `None` once.
    fn repetition(&self) -> Option<Repetition> {
        match (self.repeat, self.for_duration) {
            (Some(rounds), _) => Some(Repetition::Rounds(rounds)),
            (None, Some(duration)) => Some(Repetition::For {
                duration,
                interval: self.interval.unwrap_or(DEFAULT_INTERVAL),
            }),
            (None, None) => None,
        }
    }

    /// The request for the source pod `from`.
    fn request(&self, from: NamespacedName) -> CheckRequest {
        CheckRequest {
            target_namespace: self
                .kube
                .namespace()
                .map_or_else(|| from.namespace.clone(), str::to_string),
            from,
            target: self.to.clone(),
            to_text: self.to.to_string(),
            timeout: self.timeout,
        }
    }
}

/// A client whose every response, including an agent's answer over a port-forward, arrives
/// within the agents' deadline; the namespace a bare name means; the context's name.
async fn client(args: &CheckArgs) -> Result<(kube::Client, String, Option<String>), KubeConfigError> {
    check_client(&args.kube, args.timeout).await
}

/// [`client`] for checks with probe timeout `timeout` (also `policy verify`'s).
pub(crate) async fn check_client(
    kube: &KubeArgs,
    timeout: Duration,
) -> Result<(kube::Client, String, Option<String>), KubeConfigError> {
    let resolved = kube.resolve().await?;
    let mut config = resolved.config;
    config.connect_timeout = Some(kube.request_timeout.unwrap_or(Duration::from_secs(5)));
    // kube leaves reads unbounded (for long-lived streams): an API server that accepts the
    // connection and never answers would hang the check. An agent's answer comes through the
    // API server, so a read waits at least as long as the agents may take.
    let deadline = agent_deadline(timeout);
    config.read_timeout = Some(kube.request_timeout.map_or(deadline, |t| t.max(deadline)));
    config.reset_reader_on_write = true;
    // `resolve` already put -n there.
    let default_ns = config.default_namespace.clone();
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
    let evidence = match args.repetition() {
        Some(repetition) => collect_repeated(&snap, &agents, request, repetition).await,
        None => collect(&snap, &agents, request).await,
    };
    (snap, evidence)
}

impl OutputFormat {
    /// Where a stopping error goes besides stderr.
    fn emit(self) -> Emit {
        match self {
            OutputFormat::Json => Emit::Json,
            OutputFormat::Yaml => Emit::Yaml,
            OutputFormat::Table | OutputFormat::Wide => Emit::Text,
        }
    }
}

/// A `--from deploy/NAME` (or `sts/`, `ds/`, `rs/`) the API does not know: its namespace is
/// missing, or the workload is (with the closest name of that kind, when one is near).
async fn missing_workload(client: &kube::Client, kind: SourceKind, name: &str, namespace: &str) -> CliError {
    use k8s_openapi::api::apps::v1::{DaemonSet, Deployment, ReplicaSet, StatefulSet};
    use k8s_openapi::api::core::v1::Namespace;
    let namespaces = names_of(kube::Api::<Namespace>::all(client.clone())).await;
    if !namespaces.is_empty() && !namespaces.iter().any(|n| n == namespace) {
        return CliError::not_found("namespaces", namespace, None, &namespaces);
    }
    let (resource, names) = match kind {
        SourceKind::Deployment => (
            "deployments.apps",
            names_of(kube::Api::<Deployment>::namespaced(client.clone(), namespace)).await,
        ),
        SourceKind::StatefulSet => (
            "statefulsets.apps",
            names_of(kube::Api::<StatefulSet>::namespaced(client.clone(), namespace)).await,
        ),
        SourceKind::DaemonSet => (
            "daemonsets.apps",
            names_of(kube::Api::<DaemonSet>::namespaced(client.clone(), namespace)).await,
        ),
        SourceKind::ReplicaSet | SourceKind::Pod => (
            "replicasets.apps",
            names_of(kube::Api::<ReplicaSet>::namespaced(client.clone(), namespace)).await,
        ),
    };
    CliError::not_found(resource, name, Some(namespace), &names)
}

/// Why `--from`/`-l` designate no pod, as the error it is; `None` when the workload exists but
/// has no pod to run as (the source layer's answer, exit 10).
async fn workload_error(client: &kube::Client, args: &CheckArgs, err: &WorkloadError) -> Option<CliError> {
    match err {
        WorkloadError::NoPods { .. } | WorkloadError::NoSelector { .. } => None,
        WorkloadError::Get {
            source: kube::Error::Api(status),
            name,
            namespace,
            ..
        } if status.code == 404 => {
            let kind = args.from.as_ref().map_or(SourceKind::Deployment, |f| f.kind);
            Some(missing_workload(client, kind, name, namespace).await)
        }
        WorkloadError::Get { source, .. } | WorkloadError::List { source, .. } => {
            Some(CliError::from_kube(source))
        }
    }
}

/// The error a check stops on when the engine could not find or read the source pod: a name
/// that exists nowhere (with the closest one), or the API failure that kept it from looking.
/// `None` when the source pod was read. Only on this path does the plugin list names (of
/// namespaces, or of the namespace's pods) to say what may have been meant.
pub async fn source_error(client: &kube::Client, snap: &Snapshot, source: &SourceFacts) -> Option<CliError> {
    match source {
        SourceFacts::Found { .. } => None,
        SourceFacts::Unknown(failure) => Some(CliError::from_failure(failure)),
        SourceFacts::Missing {
            namespace,
            name,
            elsewhere,
        } => {
            let namespace_read = snap.namespaces.known().is_some_and(|read| {
                read.iter()
                    .any(|n| n.metadata.name.as_deref() == Some(namespace.as_str()))
            });
            if !namespace_read {
                let all = names_of(Api::<Namespace>::all(client.clone())).await;
                // Unlistable namespaces (a namespace-scoped user) prove nothing missing.
                if !all.is_empty() && !all.iter().any(|n| n == namespace) {
                    return Some(CliError::not_found("namespaces", namespace, None, &all));
                }
            }
            let pods = names_of(Api::<Pod>::namespaced(client.clone(), namespace)).await;
            let mut err = CliError::not_found("pods", name, Some(namespace), &pods);
            if err.did_you_mean.is_none() && !elsewhere.is_empty() {
                let places: Vec<String> = elsewhere.iter().map(|ns| format!("--from {ns}/{name}")).collect();
                err = err.with_hint(format!(
                    "a pod of that name runs elsewhere: {}",
                    places.join(", ")
                ));
            }
            Some(err)
        }
    }
}

/// The names `api` lists (metadata only, page by page), for a "did you mean"; none when the
/// list fails, since the hint is not worth an error of its own.
async fn names_of<K>(api: Api<K>) -> Vec<String>
where
    K: kube::Resource + Clone + serde::de::DeserializeOwned + std::fmt::Debug,
{
    let mut names = Vec::new();
    let mut params = ListParams::default().limit(netdiag_engine::PAGE_SIZE);
    loop {
        let Ok(page) = api.list_metadata(&params).await else {
            return names;
        };
        names.extend(page.items.into_iter().filter_map(|item| item.metadata.name));
        match page.metadata.continue_.filter(|token| !token.is_empty()) {
            Some(token) => params = params.continue_token(&token),
            None => return names,
        }
    }
}

/// Why a check has no report.
#[derive(Debug)]
pub enum CheckStop {
    /// The command's stopping error: configuration, a source that does not exist, the API.
    Error(CliError),
    /// The workload exists but has no pod to run as: the source layer's answer (exit 10).
    NoSourcePod(String),
}

/// A check's report (the document `-o json` prints), with the evidence the table renders.
#[derive(Debug)]
pub struct Checked {
    pub report: Report,
    pub evidence: Evidence,
}

/// Runs the check `args` asks for, from the kubeconfig to the judged report; every front end
/// (this command, the MCP server) reports through here.
pub async fn report(args: &CheckArgs) -> Result<Checked, CheckStop> {
    let started = Instant::now();
    let (client, default_ns, context) = client(args)
        .await
        .map_err(|err| CheckStop::Error(CliError::from(&err)))?;
    let picked =
        match workload::resolve(&client, args.from.as_ref(), args.selector.as_deref(), &default_ns).await {
            Ok(picked) => picked,
            Err(err) => {
                return Err(match workload_error(&client, args, &err).await {
                    Some(error) => CheckStop::Error(error),
                    None => CheckStop::NoSourcePod(err.to_string()),
                });
            }
        };
    if let Some(note) = &picked.note {
        eprintln!("{note}");
    }
    let request = args.request(picked.pod);
    let progress = Progress::start(format!("checking {} → {} …", request.from, args.to));
    let (snap, evidence) = evidence(args, &client, &request).await;
    progress.stop();
    if let Some(error) = source_error(&client, &snap, &evidence.source).await {
        return Err(CheckStop::Error(error));
    }
    let mut report = verdict(&snap, &evidence, started.elapsed().as_millis() as u64);
    let flags = args.kube.command_flags(context.as_deref());
    report.scope_commands(|command| scoped_command(command, &flags));
    tracing::info!(verdict = ?report.verdict, ms = report.duration_ms, "judged");
    Ok(Checked { report, evidence })
}

pub async fn run(args: CheckArgs) -> ExitCode {
    let emit = args.output.emit();
    let Checked { report, evidence } = match report(&args).await {
        Ok(checked) => checked,
        Err(CheckStop::Error(error)) => return error.exit(emit),
        Err(CheckStop::NoSourcePod(message)) => {
            eprintln!("error: {message}");
            return ExitCode::from(Layer::Source.exit_code());
        }
    };
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::{Cli, Command};
    use clap::Parser;

    fn parse(extra: &[&str]) -> Result<CheckArgs, clap::Error> {
        let mut argv = vec![
            "kubectl-netdiag",
            "check",
            "--from",
            "shop/checkout",
            "--to",
            "svc/payments:80",
        ];
        argv.extend(extra);
        match Cli::try_parse_from(argv)?.into_command() {
            Command::Check(args) => Ok(args),
            _ => panic!("check"),
        }
    }

    #[test]
    fn repeat_and_for_say_how_often_the_live_probes_run() {
        assert_eq!(parse(&[]).unwrap().repetition(), None);
        assert_eq!(
            parse(&["--repeat", "20"]).unwrap().repetition(),
            Some(Repetition::Rounds(20))
        );
        assert_eq!(
            parse(&["--for", "2m"]).unwrap().repetition(),
            Some(Repetition::For {
                duration: Duration::from_secs(120),
                interval: Duration::from_secs(1),
            })
        );
        let every = parse(&["--for", "30s", "--interval", "250ms"])
            .unwrap()
            .repetition();
        assert!(
            matches!(every, Some(Repetition::For { interval, .. }) if interval == Duration::from_millis(250))
        );
    }

    #[test]
    fn bad_repetitions_are_usage_errors_that_name_the_flag() {
        let message = |extra: &[&str]| parse(extra).unwrap_err().to_string();
        assert!(message(&["--repeat", "0"]).contains("--repeat"));
        assert!(message(&["--repeat", "1001"]).contains("--repeat"));
        assert!(message(&["--repeat", "5", "--for", "10s"]).contains("cannot be used with"));
        assert!(message(&["--interval", "1s"]).contains("--for"));
        assert!(message(&["--for", "2h"]).contains("--for \"2h\": must be between 1ms and 3600s"));
        assert_eq!(
            parse(&["--for", "1h"]).unwrap().repetition(),
            Some(Repetition::For {
                duration: Duration::from_secs(3600),
                interval: Duration::from_secs(1),
            })
        );
    }
}
