//! `kubectl netdiag policy explain|matrix`: read objects (cluster or file), evaluate, render.
//!
//! Exit codes: 0 when the question was answered (also when `explain` finds the flow denied; the
//! answer is in the output); otherwise the code of the cause, as in every command
//! ([`crate::errors`]): 2 usage, 4 configuration or an unknown pod, namespace or port name,
//! 5 API server unreachable, 6 unauthorized, 7 forbidden, 1 anything else (an unreadable
//! file). Every API read is bounded by `--request-timeout`.
//!
//! From the cluster, `explain` reads only the namespaces of its two ends (each by name, with its
//! pods and NetworkPolicies; an address's pod is found by `status.podIP`) and `matrix -n NS` only
//! the namespaces named; every list is paged. The admin policies are cluster-scoped.

use std::collections::BTreeSet;
use std::fmt::Write as _;
use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use k8s_openapi::api::core::v1::{Namespace, Pod};
use k8s_openapi::api::networking::v1::NetworkPolicy;
use kube::Api;
use kube::api::ListParams;
use netdiag_engine::{ListFailure, get_optional, list_paged};

use crate::errors::{CliError, Emit, Reason};
use crate::kube_args::{KubeArgs, KubeConfigError};
use netdiag_engine::PortRef;
use netdiag_engine::policy::admin::read_admin_objects;
use netdiag_engine::policy::{
    DecidingTier, EvalError, Flow, InputError, IpFamily, Matrix, Objects, Peer, PolicyIndex, Protocol,
    TierVerdict, TieredVerdict,
};

#[derive(Debug, clap::Subcommand)]
pub enum PolicyCommand {
    /// Explain whether one flow is allowed by the admin tiers and NetworkPolicy, and which policies and rules decided it.
    ///
    /// Exits 0 whether the flow is allowed or denied (the answer is in the output); when the
    /// question cannot be answered, the exit code of the cause (4 unknown pod or port name,
    /// 5 API server unreachable, 6 unauthorized, 7 forbidden, 1 unreadable input).
    Explain(ExplainArgs),
    /// Print the truth table (admin tiers and NetworkPolicy) of every pod pair for one port and protocol.
    Matrix(MatrixArgs),
    /// Probe one pod pair of each class of the matrix from the real pods and report where the
    /// cluster disagrees with the evaluation (is NetworkPolicy enforced here?).
    Verify(super::verify::VerifyArgs),
}

/// Where the objects come from.
#[derive(Debug, Clone, clap::Args)]
pub struct InputArgs {
    /// The connection flags, given before or after the subcommand.
    #[arg(skip)]
    pub kube: KubeArgs,
    /// Read Namespaces, Pods, NetworkPolicies and admin policies (ClusterNetworkPolicy,
    /// AdminNetworkPolicy, BaselineAdminNetworkPolicy) from a YAML/JSON stream or List (`-` for
    /// stdin), e.g. the output of `kubectl get -A -o yaml namespaces,pods,networkpolicies`, instead of the cluster.
    #[arg(long, value_name = "FILE")]
    pub from_file: Option<PathBuf>,
}

/// How long policy waits for each answer of the API server without `--request-timeout`.
const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum OutputFormat {
    Table,
    Json,
    /// The JSON document as YAML.
    Yaml,
}

#[derive(Debug, clap::Args)]
pub struct ExplainArgs {
    #[command(flatten)]
    pub input: InputArgs,
    /// Source: NAMESPACE/POD, POD or pod/POD (in -n or the context's namespace), or an IP address.
    #[arg(long, value_name = "NS/POD|IP")]
    pub from: String,
    /// Destination: NAMESPACE/POD, POD (in the context's namespace), or an IP address.
    #[arg(long, value_name = "NS/POD|IP")]
    pub to: String,
    /// Destination port: a number (1-65535) or the name of a port of the destination pod's
    /// containers (e.g. http).
    #[arg(long, value_parser = parse_port, value_name = "PORT")]
    pub port: PortRef,
    /// TCP, UDP or SCTP.
    #[arg(long, default_value = "TCP", value_parser = parse_protocol)]
    pub protocol: Protocol,
    #[arg(short = 'o', long, value_enum, default_value = "table")]
    pub output: OutputFormat,
}

#[derive(Debug, clap::Args)]
pub struct MatrixArgs {
    #[command(flatten)]
    pub input: InputArgs,
    /// Destination port (1-65535).
    #[arg(long, value_parser = clap::value_parser!(u16).range(1..))]
    pub port: u16,
    /// TCP, UDP or SCTP.
    #[arg(long, default_value = "TCP", value_parser = parse_protocol)]
    pub protocol: Protocol,
    /// Every namespace (the default without -n; as kubectl's -A). `-n NS`, repeatable, keeps
    /// the pods of those namespaces.
    #[arg(short = 'A', long)]
    pub all_namespaces: bool,
    #[arg(short = 'o', long, value_enum, default_value = "table")]
    pub output: OutputFormat,
}

/// A port number (1-65535) or a port name as Kubernetes allows one (IANA_SVC_NAME: at most 15
/// lowercase letters, digits and inner dashes, at least one letter).
pub fn parse_port(text: &str) -> Result<PortRef, String> {
    if text.bytes().all(|b| b.is_ascii_digit()) {
        return match text.parse::<u16>() {
            Ok(port) if port > 0 => Ok(PortRef::Number(port)),
            _ => Err(format!("invalid port {text:?}: expected 1-65535 or a port name")),
        };
    }
    let valid = text.len() <= 15
        && text
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && text.bytes().any(|b| b.is_ascii_lowercase())
        && !text.starts_with('-')
        && !text.ends_with('-')
        && !text.contains("--");
    if valid {
        Ok(PortRef::Name(text.to_string()))
    } else {
        Err(format!(
            "invalid port {text:?}: expected 1-65535 or a port name (lowercase letters, digits and dashes, at most 15)"
        ))
    }
}

/// The number of the port `name` of `pod`'s containers; the error names the pod's ports.
fn named_port(pods: &[Pod], pod: &Peer, name: &str, protocol: Protocol) -> Result<u16, CliError> {
    let Peer::Pod {
        namespace,
        name: pod_name,
    } = pod
    else {
        return Err(CliError::new(
            Reason::Usage,
            format!("--port {name} is a port name: --to must be a pod to look it up in"),
        ));
    };
    let ports: Vec<_> = pods
        .iter()
        .filter(|p| {
            p.metadata.namespace.as_deref() == Some(namespace.as_str())
                && p.metadata.name.as_deref() == Some(pod_name.as_str())
        })
        .filter_map(|p| p.spec.as_ref())
        .flat_map(|spec| spec.containers.iter())
        .flat_map(|c| c.ports.iter().flatten())
        .filter(|p| p.protocol.as_deref().unwrap_or("TCP") == protocol.to_string())
        .collect();
    if let Some(port) = ports.iter().find(|p| p.name.as_deref() == Some(name)) {
        return u16::try_from(port.container_port).map_err(|_| {
            CliError::new(
                Reason::Failed,
                format!("port {name} of pod {pod} is out of range"),
            )
        });
    }
    let names: Vec<String> = ports.iter().filter_map(|p| p.name.clone()).collect();
    let mut err = CliError::new(
        Reason::NotFound,
        format!("pod \"{pod_name}\" in namespace \"{namespace}\" has no {protocol} port named \"{name}\""),
    );
    err.did_you_mean = netdiag_engine::closest(name, &names).map(str::to_string);
    if err.did_you_mean.is_none() && !names.is_empty() {
        err = err.with_hint(format!("its named ports: {}", names.join(", ")));
    }
    Err(err)
}

impl OutputFormat {
    pub(super) fn emit(self) -> Emit {
        match self {
            OutputFormat::Table => Emit::Text,
            OutputFormat::Json => Emit::Json,
            OutputFormat::Yaml => Emit::Yaml,
        }
    }
}

fn parse_protocol(text: &str) -> Result<Protocol, String> {
    text.parse()
}

#[derive(Debug, thiserror::Error)]
pub enum PolicyCmdError {
    #[error("failed to read {path}")]
    ReadFile {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("failed to parse {path}")]
    ParseFile {
        path: String,
        #[source]
        source: InputError,
    },
    #[error(transparent)]
    KubeConfig(#[from] KubeConfigError),
    #[error(transparent)]
    List(#[from] ListFailure),
    #[error(transparent)]
    Eval(#[from] EvalError),
    #[error("invalid --{flag} {input:?}: expected NAMESPACE/POD, POD, pod/POD or an IP address")]
    Peer { flag: &'static str, input: String },
    #[error(transparent)]
    Cli(#[from] CliError),
}

impl PolicyCmdError {
    /// The error as every command reports it: the same cause, the same exit code.
    pub(super) fn to_cli(&self) -> CliError {
        match self {
            PolicyCmdError::KubeConfig(err) => CliError::from(err),
            PolicyCmdError::List(failure) => CliError::from_failure(&failure.source),
            PolicyCmdError::Cli(err) => err.clone(),
            PolicyCmdError::Peer { .. } => CliError::new(Reason::Usage, self.to_string()),
            PolicyCmdError::Eval(EvalError::UnknownPod { .. } | EvalError::UnknownNamespace(_)) => {
                CliError::new(Reason::NotFound, self.to_string())
            }
            PolicyCmdError::Eval(EvalError::PortZero) => CliError::new(Reason::Usage, self.to_string()),
            PolicyCmdError::ReadFile { .. } | PolicyCmdError::ParseFile { .. } => {
                CliError::new(Reason::Failed, netdiag_engine::error_chain(self))
            }
        }
    }
}

pub async fn run(command: PolicyCommand) -> ExitCode {
    let emit = match &command {
        PolicyCommand::Explain(args) => args.output.emit(),
        PolicyCommand::Matrix(args) => args.output.emit(),
        PolicyCommand::Verify(_) => Emit::Text,
    };
    let answer = match command {
        PolicyCommand::Explain(args) => explain(&args)
            .await
            .map(|verdict| Answer::Explain(Box::new(verdict), args.output)),
        PolicyCommand::Matrix(args) => matrix(args).await,
        PolicyCommand::Verify(args) => return super::verify::run(args).await,
    };
    let answer = match answer {
        Ok(answer) => answer,
        Err(err) => return err.to_cli().exit(emit),
    };
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::with_capacity(1 << 16, stdout.lock());
    match write_answer(&answer, &mut out).and_then(|()| out.flush()) {
        Ok(()) => ExitCode::SUCCESS,
        // The reader went away (`| head`): nothing left to tell it.
        Err(err) if err.kind() == std::io::ErrorKind::BrokenPipe => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("error: failed to write the output: {err}");
            ExitCode::from(1)
        }
    }
}

/// A computed answer, written to stdout once the cluster I/O is over.
enum Answer {
    Explain(Box<TieredVerdict>, OutputFormat),
    Matrix(Matrix, OutputFormat),
}

fn write_answer(answer: &Answer, out: &mut impl Write) -> std::io::Result<()> {
    match answer {
        Answer::Explain(verdict, OutputFormat::Json) => {
            serde_json::to_writer_pretty(&mut *out, verdict)?;
            out.write_all(b"\n")
        }
        Answer::Explain(verdict, OutputFormat::Table) => out.write_all(render_explain(verdict).as_bytes()),
        Answer::Matrix(matrix, OutputFormat::Json) => write_matrix_json(matrix, out),
        Answer::Matrix(matrix, OutputFormat::Table) => write_matrix_table(matrix, out),
        Answer::Explain(_, OutputFormat::Yaml) | Answer::Matrix(_, OutputFormat::Yaml) => {
            let mut json = Vec::new();
            match answer {
                Answer::Explain(verdict, _) => serde_json::to_writer(&mut json, verdict)?,
                Answer::Matrix(matrix, _) => write_matrix_json(matrix, &mut json)?,
            }
            let value: serde_json::Value = serde_json::from_slice(&json).map_err(std::io::Error::other)?;
            let yaml = serde_yaml_ng::to_string(&value).map_err(std::io::Error::other)?;
            out.write_all(yaml.as_bytes())
        }
    }
}

/// The verdict `policy explain -o json` prints, or the error it stops on; every front end (this
/// command, the MCP server) explains through here.
pub async fn explain_verdict(args: &ExplainArgs) -> Result<TieredVerdict, CliError> {
    explain(args).await.map_err(|err| err.to_cli())
}

async fn explain(args: &ExplainArgs) -> Result<TieredVerdict, PolicyCmdError> {
    let scope = Scope::Peers {
        from: &args.from,
        to: &args.to,
        namespace: args.input.kube.namespace(),
    };
    let (objects, context_namespace) = load(&args.input, scope).await?;
    let default_namespace = args
        .input
        .kube
        .namespace()
        .map_or(context_namespace, str::to_string);
    let index = index_and_warn(&objects);
    let mut notes = Vec::new();
    let from = resolve_peer(&index, &args.from, "from", &default_namespace, &mut notes)?;
    let to = resolve_peer(&index, &args.to, "to", &default_namespace, &mut notes)?;
    // An address typed for either end fixes the family of the packets, even when it is a pod's.
    let typed_family = [&args.from, &args.to]
        .into_iter()
        .find_map(|text| text.parse::<std::net::IpAddr>().ok())
        .map(IpFamily::of);
    for peer in [&from, &to] {
        check_pod_exists(&index, peer)?;
    }
    let port = match &args.port {
        PortRef::Number(port) => *port,
        PortRef::Name(name) => named_port(&objects.pods, &to, name, args.protocol)?,
    };
    let flow = Flow {
        from,
        to,
        port,
        protocol: args.protocol,
    };
    let mut verdict = match typed_family {
        Some(family) => index.evaluate_tiers_in(&flow, Some(family))?,
        None => index.evaluate_tiers(&flow)?,
    };
    verdict.network_policy.notes.extend(notes);
    Ok(verdict)
}

async fn matrix(args: MatrixArgs) -> Result<Answer, PolicyCmdError> {
    let namespaces = &args.input.kube.namespaces;
    if args.all_namespaces && !namespaces.is_empty() {
        return Err(CliError::new(Reason::Usage, "-A and -n cannot be used together").into());
    }
    let (objects, _) = load(&args.input, Scope::Namespaces(namespaces)).await?;
    let index = index_and_warn(&objects);
    let matrix = index.matrix(args.port, args.protocol, namespaces)?;
    Ok(Answer::Matrix(matrix, args.output))
}

/// Build the index; findings (skipped or completed objects) go to stderr as warnings.
pub(super) fn index_and_warn(objects: &Objects) -> PolicyIndex {
    let index = PolicyIndex::with_admin(
        &objects.namespaces,
        &objects.pods,
        &objects.policies,
        &objects.admin,
    );
    for finding in index.findings() {
        eprintln!("warning: {finding}");
    }
    index
}

/// A pod the input does not hold is kubectl's not found, with the closest name of its namespace
/// (or the namespace's, when that is missing too).
fn check_pod_exists(index: &PolicyIndex, peer: &Peer) -> Result<(), CliError> {
    let Peer::Pod { namespace, name } = peer else {
        return Ok(());
    };
    let mut namespaces: Vec<String> = index.pods().map(|(ns, _)| ns.to_string()).collect();
    namespaces.dedup();
    let pods: Vec<String> = index
        .pods()
        .filter(|(ns, _)| ns == namespace)
        .map(|(_, pod)| pod.to_string())
        .collect();
    if pods.iter().any(|pod| pod == name) {
        return Ok(());
    }
    if pods.is_empty() && !namespaces.is_empty() {
        let mut err = CliError::not_found("pods", name, Some(namespace), &[]);
        err.did_you_mean = netdiag_engine::closest(namespace, &namespaces).map(|ns| format!("{ns}/{name}"));
        return Err(err);
    }
    Err(CliError::not_found("pods", name, Some(namespace), &pods))
}

/// `NS/POD`, a bare `POD` in the default namespace, or an IP (a pod's IP is taken as that pod).
fn resolve_peer(
    index: &PolicyIndex,
    text: &str,
    flag: &'static str,
    default_namespace: &str,
    notes: &mut Vec<String>,
) -> Result<Peer, PolicyCmdError> {
    // kubectl's `pod/NAME` (also `pods/`, `po/`), alone or after `NS/`.
    let typed = |head: &str| ["pod", "pods", "po"].contains(&head);
    let parts: Vec<&str> = text.split('/').collect();
    let text = match parts.as_slice() {
        [kind, name] if typed(kind) && !name.is_empty() => name.to_string(),
        [ns, kind, name] if typed(kind) && !ns.is_empty() && !name.is_empty() => format!("{ns}/{name}"),
        _ => text.to_string(),
    };
    let text = text.as_str();
    let peer = if text.contains('/') || text.parse::<std::net::IpAddr>().is_ok() {
        text.parse::<Peer>().map_err(|_| PolicyCmdError::Peer {
            flag,
            input: text.to_string(),
        })?
    } else if text.is_empty() {
        return Err(PolicyCmdError::Peer {
            flag,
            input: text.to_string(),
        });
    } else {
        Peer::pod(default_namespace, text)
    };
    if let Peer::Ip(ip) = peer
        && let Some(pod) = index.pod_with_ip(ip)
    {
        notes.push(format!("{ip} is the IP of pod {pod}; evaluated as that pod"));
        return Ok(pod);
    }
    Ok(peer)
}

/// What a command reads from the cluster (a file is read whole).
#[derive(Debug, Clone, Copy)]
pub(super) enum Scope<'a> {
    /// These namespaces (every one when empty): `policy matrix [-n NS]...`.
    Namespaces(&'a [String]),
    /// The namespaces of the two ends of a flow: `policy explain --from --to [-n NS]`.
    Peers {
        from: &'a str,
        to: &'a str,
        namespace: Option<&'a str>,
    },
}

pub(super) async fn load(input: &InputArgs, scope: Scope<'_>) -> Result<(Objects, String), PolicyCmdError> {
    match &input.from_file {
        Some(path) => {
            let stdin = path.as_os_str() == "-";
            let display = if stdin {
                "standard input".to_string()
            } else {
                path.display().to_string()
            };
            let text = if stdin {
                std::io::read_to_string(std::io::stdin())
            } else {
                std::fs::read_to_string(path)
            }
            .map_err(|source| PolicyCmdError::ReadFile {
                path: display.clone(),
                source,
            })?;
            let objects =
                netdiag_engine::policy::parse_objects(&text).map_err(|source| PolicyCmdError::ParseFile {
                    path: display,
                    source,
                })?;
            Ok((objects, "default".to_string()))
        }
        None => {
            let mut config = input.kube.config().await?;
            // kube leaves reads unbounded (for watches): an API server that accepts the connection
            // and never answers would hang the command.
            let timeout = input.kube.request_timeout.unwrap_or(DEFAULT_REQUEST_TIMEOUT);
            config.connect_timeout = Some(timeout);
            config.read_timeout = Some(timeout);
            config.write_timeout = Some(timeout);
            let namespace_of_context = config.default_namespace.clone();
            let client =
                crate::kube_args::client(config).map_err(|e| KubeConfigError::Client(e.to_string()))?;
            let wanted = match scope {
                Scope::Namespaces([]) => None,
                Scope::Namespaces(list) => Some(list.iter().cloned().collect()),
                Scope::Peers { from, to, namespace } => {
                    let default_namespace = namespace.unwrap_or(&namespace_of_context);
                    let (from, to) = futures::try_join!(
                        peer_namespaces(&client, from, default_namespace),
                        peer_namespaces(&client, to, default_namespace),
                    )?;
                    Some(from.into_iter().chain(to).collect())
                }
            };
            let (namespaces, pods, policies, admin) = match wanted {
                // The lists are independent: ask for them at once, each page by page.
                None => futures::try_join!(
                    list_kind::<Namespace>(&client, "namespaces"),
                    list_kind::<Pod>(&client, "pods"),
                    list_kind::<NetworkPolicy>(&client, "networkpolicies"),
                    read_admin_objects(&client),
                )?,
                Some(wanted) => {
                    let (namespaces, admin) =
                        futures::try_join!(read_namespaces(&client, &wanted), read_admin_objects(&client))?;
                    (namespaces.0, namespaces.1, namespaces.2, admin)
                }
            };
            let objects = Objects {
                namespaces,
                pods,
                policies,
                admin,
                skipped_kinds: Vec::new(),
            };
            Ok((objects, namespace_of_context))
        }
    }
}

/// The Namespaces `wanted` (by name), their Pods and NetworkPolicies (each list paged), all at once.
async fn read_namespaces(
    client: &kube::Client,
    wanted: &BTreeSet<String>,
) -> Result<(Vec<Namespace>, Vec<Pod>, Vec<NetworkPolicy>), ListFailure> {
    let reads = wanted.iter().map(|name| async move {
        let namespace = async {
            let api = Api::<Namespace>::all(client.clone());
            get_optional(&api, name, &format!("get namespaces/{name}"))
                .await
                .map_err(|source| ListFailure {
                    what: "namespaces",
                    source,
                })
        };
        let pods = list_in::<Pod>(client, name, "pods");
        let policies = list_in::<NetworkPolicy>(client, name, "networkpolicies");
        futures::try_join!(namespace, pods, policies)
    });
    let mut out = (Vec::new(), Vec::new(), Vec::new());
    for (namespace, pods, policies) in futures::future::try_join_all(reads).await? {
        out.0.extend(namespace);
        out.1.extend(pods);
        out.2.extend(policies);
    }
    Ok(out)
}

/// Every object of kind `K` in `namespace`, page by page.
async fn list_in<K>(client: &kube::Client, namespace: &str, what: &'static str) -> Result<Vec<K>, ListFailure>
where
    K: kube::Resource<Scope = kube::core::NamespaceResourceScope, DynamicType = ()>
        + Clone
        + serde::de::DeserializeOwned
        + std::fmt::Debug,
{
    let api = Api::<K>::namespaced(client.clone(), namespace);
    list_paged(
        &api,
        &ListParams::default(),
        &format!("list {what} in namespace {namespace}"),
    )
    .await
    .map_err(|source| ListFailure { what, source })
}

/// The namespace a `--from`/`--to` names: `NS/POD`'s, a bare `POD`'s default, and for an
/// address the namespace of the pod whose address it is (`status.podIP`), if any.
async fn peer_namespaces(
    client: &kube::Client,
    text: &str,
    default_namespace: &str,
) -> Result<Vec<String>, ListFailure> {
    if let Ok(ip) = text.parse::<std::net::IpAddr>() {
        let pods: Vec<Pod> = list_paged(
            &Api::all(client.clone()),
            &ListParams::default().fields(&format!("status.podIP={ip}")),
            &format!("list pods with status.podIP={ip} in all namespaces"),
        )
        .await
        .map_err(|source| ListFailure { what: "pods", source })?;
        return Ok(pods.into_iter().filter_map(|p| p.metadata.namespace).collect());
    }
    Ok(match text.split_once('/') {
        Some((namespace, _)) => vec![namespace.to_string()],
        None if text.is_empty() => vec![],
        None => vec![default_namespace.to_string()],
    })
}

/// Every object of kind `K` in the cluster, page by page, without managedFields (the evaluator does not read them).
async fn list_kind<K>(client: &kube::Client, what: &'static str) -> Result<Vec<K>, ListFailure>
where
    K: kube::Resource + Clone + serde::de::DeserializeOwned + std::fmt::Debug,
    K::DynamicType: Default,
{
    netdiag_engine::list_all(client, &format!("list {what}"))
        .await
        .map_err(|source| ListFailure { what, source })
}

/// The human form of `explain`: one line per side, then the verdict sentence.
pub fn render_explain(tiered: &TieredVerdict) -> String {
    let verdict = &tiered.network_policy;
    let mut out = String::new();
    let _ = writeln!(
        out,
        "flow     {} → {} port {}/{}{}",
        verdict.from,
        verdict.to,
        verdict.port,
        verdict.protocol,
        verdict
            .family
            .map(|f| format!(" over {}", f.label()))
            .unwrap_or_default()
    );
    let sides = [
        (
            "egress ",
            &verdict.egress,
            &tiered.egress,
            &verdict.from,
            &verdict.to,
            "to",
        ),
        (
            "ingress",
            &verdict.ingress,
            &tiered.ingress,
            &verdict.to,
            &verdict.from,
            "from",
        ),
    ];
    for (label, side, tier, subject, remote, preposition) in sides {
        if let Some(line) = admin_line(tier) {
            let _ = writeln!(out, "{label}  {line}");
            continue;
        }
        let passed = tier
            .passed_by
            .as_ref()
            .map(|rule| format!(" (passed on by {rule})"))
            .unwrap_or_default();
        let (mark, detail) = if !side.applies {
            (
                "n/a    ",
                format!("{subject} is not a pod; NetworkPolicy does not apply"),
            )
        } else if !side.isolated {
            (
                "allowed",
                format!(
                    "{subject} is not isolated for {} (no policy selects it)",
                    label.trim()
                ),
            )
        } else {
            let isolating = join(&side.isolating_policies);
            if side.allowed {
                (
                    "allowed",
                    format!(
                        "{subject} isolated by {isolating}; allowed by {}",
                        join(&side.allowing_rules)
                    ),
                )
            } else {
                (
                    "denied ",
                    format!(
                        "{subject} isolated by {isolating}; no rule allows {preposition} {remote} on {}/{}",
                        verdict.port, verdict.protocol
                    ),
                )
            }
        };
        let _ = writeln!(out, "{label}  {mark}  {detail}{passed}");
    }
    for note in &verdict.notes {
        let _ = writeln!(out, "note     {note}");
    }
    let _ = writeln!(out, "verdict  {}", tiered.explain());
    let rules = join(&tiered.deciding_admin_rules());
    if tiered.needs_cluster_admin() {
        let _ = writeln!(
            out,
            "fix      needs a cluster admin: {rules} is cluster-scoped; a namespace's NetworkPolicy cannot override it"
        );
    } else if tiered.decided_by_baseline() {
        let _ = writeln!(
            out,
            "fix      a NetworkPolicy selecting the pod overrides the Baseline tier ({rules}); or a cluster admin changes that rule"
        );
    }
    out
}

/// The line of a side an admin or baseline rule decided, else `None`.
fn admin_line(tier: &TierVerdict) -> Option<String> {
    let rule = tier.rule.as_ref()?;
    let mark = if tier.allowed { "allowed" } else { "denied " };
    let name = match tier.decided_by {
        DecidingTier::Baseline => "Baseline",
        _ => "Admin",
    };
    let passed = tier
        .passed_by
        .as_ref()
        .map(|rule| format!(", after {rule} passed it on"))
        .unwrap_or_default();
    Some(format!("{mark}  {rule}, {name} tier{passed}"))
}

/// `{"port":80,"protocol":"TCP","results":[{"from":"x/a","to":"y/b","allowed":true},...]}` on one
/// line, streamed: a 2,000-pod matrix has 4 million entries.
pub fn write_matrix_json(matrix: &Matrix, out: &mut impl Write) -> std::io::Result<()> {
    let names: Vec<String> = matrix
        .pods
        .iter()
        .map(|pod| serde_json::to_string(pod).map_err(std::io::Error::other))
        .collect::<Result<_, _>>()?;
    write!(
        out,
        r#"{{"port":{},"protocol":"{}","results":["#,
        matrix.port, matrix.protocol
    )?;
    let mut first = true;
    for (from, from_name) in names.iter().enumerate() {
        for (to, to_name) in names.iter().enumerate() {
            if !first {
                out.write_all(b",")?;
            }
            first = false;
            let allowed = if matrix.allowed(from, to) { "true" } else { "false" };
            write!(
                out,
                r#"{{"from":{from_name},"to":{to_name},"allowed":{allowed}}}"#
            )?;
        }
    }
    out.write_all(b"]}\n")
}

/// The human grid: rows are sources, numbered and named; columns are destinations, headed by the
/// same numbers so a column stays as narrow as the largest number however long the pod names are.
/// `.` allowed, `X` denied.
pub fn write_matrix_table(matrix: &Matrix, out: &mut impl Write) -> std::io::Result<()> {
    writeln!(
        out,
        "port {}/{}: rows are sources, columns destinations (numbered as the rows); . allowed, X denied",
        matrix.port, matrix.protocol
    )?;
    let digits = matrix.pods.len().to_string().len();
    let name_width = matrix.pods.iter().map(|p| p.chars().count()).max().unwrap_or(0);
    let mut line = " ".repeat(digits + 1 + name_width);
    for column in 1..=matrix.pods.len() {
        let _ = write!(line, " {column:>digits$}");
    }
    writeln!(out, "{}", line.trim_end())?;
    let allowed_cell = format!(" {:>digits$}", ".");
    let denied_cell = format!(" {:>digits$}", "X");
    for (from, pod) in matrix.pods.iter().enumerate() {
        line.clear();
        let _ = write!(line, "{:>digits$} {pod:name_width$}", from + 1);
        for to in 0..matrix.pods.len() {
            line.push_str(if matrix.allowed(from, to) {
                &allowed_cell
            } else {
                &denied_cell
            });
        }
        writeln!(out, "{line}")?;
    }
    Ok(())
}

fn join<T: std::fmt::Display>(items: &[T]) -> String {
    items
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests {
    use netdiag_engine::policy::{Flow, PolicyIndex, Protocol, parse_objects};

    use super::render_explain;

    /// Dual-stack checkout and DNS pods; checkout's egress admits 53/UDP only to the IPv4 range.
    const DNS_OVER_IPV4_ONLY: &str = r#"
apiVersion: v1
kind: Namespace
metadata: {name: shop}
---
apiVersion: v1
kind: Namespace
metadata: {name: kube-system}
---
apiVersion: v1
kind: Pod
metadata: {namespace: shop, name: checkout, labels: {app: checkout}}
status: {podIP: 10.0.1.1, podIPs: [{ip: 10.0.1.1}, {ip: "fd00:1::1"}]}
---
apiVersion: v1
kind: Pod
metadata: {namespace: kube-system, name: coredns, labels: {app: coredns}}
status: {podIP: 10.0.3.5, podIPs: [{ip: 10.0.3.5}, {ip: "fd00:3::5"}]}
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {namespace: shop, name: checkout-egress}
spec:
  podSelector: {matchLabels: {app: checkout}}
  policyTypes: [Egress]
  egress:
  - to: [{ipBlock: {cidr: 10.0.0.0/8}}]
    ports: [{port: 53, protocol: UDP}]
"#;

    #[test]
    fn explain_names_the_family_a_dual_stack_flow_is_denied_in() {
        let objects = parse_objects(DNS_OVER_IPV4_ONLY).unwrap();
        let index = PolicyIndex::new(&objects.namespaces, &objects.pods, &objects.policies);
        let flow = Flow {
            from: "shop/checkout".parse().unwrap(),
            to: "kube-system/coredns".parse().unwrap(),
            port: 53,
            protocol: Protocol::Udp,
        };
        let text = render_explain(&index.evaluate_tiers(&flow).unwrap());
        assert!(text.contains("over IPv6"), "{text}");
        assert!(text.contains("denied for IPv6, allowed for IPv4"), "{text}");
    }
}
