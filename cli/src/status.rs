//! `kubectl netdiag version` and `kubectl netdiag status`: the client's version, and the agent on
//! each node (ready, version, capabilities, what it can and cannot probe there).
//!
//! I/O: lists Nodes and the agent pods, then asks each running agent `GET /v1/info` through a
//! port-forward. [`probe_abilities`] and the renderers are pure.

use std::process::ExitCode;
use std::time::Duration;

use k8s_openapi::api::core::v1::{Node, Pod};
use kube::Api;
use kube::api::ListParams;
use netdiag_proto::Capabilities;
use serde::Serialize;

use crate::agent_client::{Agents, DEFAULT_AGENT_NAMESPACE, DEFAULT_AGENT_SELECTOR};
use crate::errors::{CliError, Emit};
use crate::kube_args::KubeArgs;
use netdiag_engine::report::EXIT_UNDETERMINED;

/// How long one agent has to answer `GET /v1/info`.
const INFO_DEADLINE: Duration = Duration::from_secs(5);

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    Table,
    Wide,
    Json,
    Yaml,
}

impl Format {
    fn emit(self) -> Emit {
        match self {
            Format::Json => Emit::Json,
            Format::Yaml => Emit::Yaml,
            Format::Table | Format::Wide => Emit::Text,
        }
    }
}

/// Where the agents are.
#[derive(Debug, Clone, clap::Args)]
pub struct AgentArgs {
    /// The connection flags, given before or after the subcommand.
    #[arg(skip)]
    pub kube: KubeArgs,
    /// Namespace of the netdiag agent DaemonSet.
    #[arg(long, default_value = DEFAULT_AGENT_NAMESPACE, value_name = "NAMESPACE")]
    pub agent_namespace: String,
    /// Label selector of the agent pods.
    #[arg(long, default_value = DEFAULT_AGENT_SELECTOR, value_name = "SELECTOR")]
    pub agent_selector: String,
}

/// Print the client's version and each node's agent version.
#[derive(Debug, clap::Args)]
#[command(after_help = "Examples:\n  kubectl netdiag version\n  kubectl netdiag version --client -o json")]
pub struct VersionArgs {
    #[command(flatten)]
    pub agents: AgentArgs,
    /// Only the client's version (no cluster access).
    #[arg(long)]
    pub client: bool,
    /// Output format.
    #[arg(short = 'o', long, value_enum, default_value_t = Format::Table)]
    pub output: Format,
}

/// Show the agent on each node.
#[derive(Debug, clap::Args)]
#[command(
    after_help = "Examples:\n  kubectl netdiag status\n  kubectl netdiag status -o wide\n  kubectl netdiag status -o json"
)]
pub struct StatusArgs {
    #[command(flatten)]
    pub agents: AgentArgs,
    /// Output format (wide adds the agent pod and the reason a node cannot be probed).
    #[arg(short = 'o', long, value_enum, default_value_t = Format::Table)]
    pub output: Format,
}

/// One node and its agent.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct NodeStatus {
    pub node: String,
    /// `namespace/name` of the agent pod on the node.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub agent: Option<String>,
    /// The agent pod is Running and Ready and answered `/v1/info`.
    pub ready: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub capabilities: Option<Capabilities>,
    pub can_probe: Vec<String>,
    pub cannot_probe: Vec<String>,
    /// Why the agent could not be asked.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// What an agent with `caps` can and cannot probe on its node.
pub fn probe_abilities(caps: &Capabilities) -> (Vec<String>, Vec<String>) {
    let (mut can, mut cannot) = (vec![], vec![]);
    if caps.setns && caps.ptrace {
        can.push("pods (dns, tcp, listening sockets)".to_string());
    } else if caps.setns {
        cannot.push("pods found by their processes (no SYS_PTRACE)".to_string());
    } else {
        cannot.push("pods: cannot enter network namespaces (no SYS_ADMIN)".to_string());
    }
    if caps.setns {
        can.push("node".to_string());
    }
    if caps.net_raw {
        can.push("icmp".to_string());
    } else {
        cannot.push("icmp evidence (no NET_RAW)".to_string());
    }
    if caps.net_admin {
        can.push("service rules".to_string());
    } else {
        cannot.push("the node's Service rules (no NET_ADMIN)".to_string());
    }
    (can, cannot)
}

fn pod_ready(pod: &Pod) -> bool {
    let status = pod.status.as_ref();
    status.and_then(|s| s.phase.as_deref()) == Some("Running")
        && status
            .and_then(|s| s.conditions.as_ref())
            .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

/// Every node (or, when Nodes cannot be listed, every node with an agent pod) and its agent.
pub(crate) async fn gather(client: &kube::Client, args: &AgentArgs) -> Result<Vec<NodeStatus>, CliError> {
    let pods_api: Api<Pod> = Api::namespaced(client.clone(), &args.agent_namespace);
    let params = ListParams::default().labels(&args.agent_selector);
    let nodes_api: Api<Node> = Api::all(client.clone());
    let all = ListParams::default();
    let (nodes, pods) = tokio::join!(nodes_api.list(&all), pods_api.list(&params));
    let pods = pods.map_err(|e| CliError::from_kube(&e))?;
    let mut names: Vec<String> = match nodes {
        Ok(nodes) => nodes
            .items
            .iter()
            .filter_map(|n| n.metadata.name.clone())
            .collect(),
        Err(err) => {
            tracing::warn!(
                "cannot list nodes ({}); showing the nodes that run an agent pod",
                CliError::from_kube(&err).message
            );
            pods.items
                .iter()
                .filter_map(|p| p.spec.as_ref()?.node_name.clone())
                .collect()
        }
    };
    names.sort();
    names.dedup();
    let agents = Agents::discover(client.clone(), &args.agent_namespace, &args.agent_selector).await;
    let rows = names.into_iter().map(|node| {
        let pod = pods
            .items
            .iter()
            .find(|p| p.spec.as_ref().and_then(|s| s.node_name.as_deref()) == Some(node.as_str()));
        let agents = &agents;
        async move {
            let mut row = NodeStatus {
                agent: pod
                    .and_then(|p| p.metadata.name.clone())
                    .map(|n| format!("{}/{n}", args.agent_namespace)),
                node: node.clone(),
                ready: false,
                version: None,
                capabilities: None,
                can_probe: vec![],
                cannot_probe: vec!["anything: no agent runs on this node".to_string()],
                error: None,
            };
            let Some(pod) = pod else { return row };
            match agents.info(&node, INFO_DEADLINE).await {
                Ok(info) => {
                    let (can, cannot) = probe_abilities(&info.capabilities);
                    row.ready = pod_ready(pod);
                    row.version = Some(info.agent.version);
                    row.capabilities = Some(info.capabilities);
                    row.can_probe = can;
                    row.cannot_probe = cannot;
                }
                Err(err) => {
                    row.cannot_probe = vec!["anything: the agent does not answer".to_string()];
                    row.error = Some(err.describe());
                }
            }
            row
        }
    });
    Ok(futures::future::join_all(rows).await)
}

/// The capabilities an agent found, under the names a securityContext adds them by.
fn granted(caps: &Capabilities) -> [(&'static str, bool); 4] {
    [
        ("SYS_ADMIN", caps.setns),
        ("SYS_PTRACE", caps.ptrace),
        ("NET_RAW", caps.net_raw),
        ("NET_ADMIN", caps.net_admin),
    ]
}

/// The short names of what an agent can probe, for the narrow table; the same rules as
/// [`probe_abilities`], whose sentences `-o wide` and the data formats give.
fn can_probe_short(caps: &Capabilities) -> Vec<&'static str> {
    [
        ("pods", caps.setns && caps.ptrace),
        ("node", caps.setns),
        ("icmp", caps.net_raw),
        ("svc-rules", caps.net_admin),
    ]
    .into_iter()
    .filter_map(|(name, on)| on.then_some(name))
    .collect()
}

/// What stands between the row and probing everything: an agent pod, its reply, or the
/// capabilities it lacks (what to add to the DaemonSet's securityContext).
fn missing_text(row: &NodeStatus) -> String {
    let Some(caps) = &row.capabilities else {
        return if row.agent.is_none() {
            "agent pod"
        } else {
            "agent reply"
        }
        .into();
    };
    let missing: Vec<&str> = granted(caps)
        .into_iter()
        .filter_map(|(name, on)| (!on).then_some(name))
        .collect();
    match missing.len() {
        // Named one by one in `-o wide`; four names would widen the column by half.
        4 => "all capabilities".into(),
        _ => join_or_dash(&missing, ","),
    }
}

fn join_or_dash<S: AsRef<str>>(items: &[S], sep: &str) -> String {
    if items.is_empty() {
        return "-".into();
    }
    let items: Vec<&str> = items.iter().map(AsRef::as_ref).collect();
    items.join(sep)
}

/// The default table: one short word list per cell, so that a row fits 100 columns for node
/// names of the usual length (kubectl keeps its default columns narrow the same way).
fn narrow_row(r: &NodeStatus) -> Vec<String> {
    let can = r.capabilities.as_ref().map(can_probe_short).unwrap_or_default();
    // The healthy row, the common one, takes the fewest columns.
    let can = if can.len() == 4 {
        "all".into()
    } else {
        join_or_dash(&can, ",")
    };
    vec![
        r.node.clone(),
        ready_text(r),
        r.version.clone().unwrap_or_else(|| "-".into()),
        can,
        missing_text(r),
    ]
}

/// `-o wide`: the capabilities, what can and cannot be probed in sentences, the pod and error.
fn wide_row(r: &NodeStatus) -> Vec<String> {
    let caps = r.capabilities.as_ref().map(|caps| {
        let on: Vec<&str> = granted(caps)
            .into_iter()
            .filter_map(|(name, on)| on.then_some(name))
            .collect();
        if on.is_empty() {
            "none".into()
        } else {
            on.join(",")
        }
    });
    vec![
        r.node.clone(),
        ready_text(r),
        r.version.clone().unwrap_or_else(|| "-".into()),
        caps.unwrap_or_else(|| "-".into()),
        join_or_dash(&r.can_probe, "; "),
        join_or_dash(&r.cannot_probe, "; "),
        r.agent.clone().unwrap_or_else(|| "-".into()),
        r.error.clone().unwrap_or_else(|| "-".into()),
    ]
}

fn ready_text(r: &NodeStatus) -> String {
    if r.ready { "True" } else { "False" }.to_string()
}

/// The status table; `wide` adds the capabilities, the sentences, the agent pod and the error.
pub fn render_status(rows: &[NodeStatus], wide: bool) -> String {
    let header: &[&str] = if wide {
        &[
            "NODE",
            "READY",
            "VERSION",
            "CAPABILITIES",
            "CAN PROBE",
            "CANNOT PROBE",
            "AGENT",
            "ERROR",
        ]
    } else {
        &["NODE", "READY", "VERSION", "CAN PROBE", "MISSING"]
    };
    let mut table: Vec<Vec<String>> = vec![header.iter().map(|h| h.to_string()).collect()];
    table.extend(
        rows.iter()
            .map(|r| if wide { wide_row(r) } else { narrow_row(r) }),
    );
    crate::output::table(&table, "")
}

fn print_data<T: Serialize>(value: &T, format: Format) {
    match format {
        Format::Yaml => print!("{}", serde_yaml_ng::to_string(value).expect("serializes")),
        _ => println!("{}", serde_json::to_string_pretty(value).expect("serializes")),
    }
}

pub(crate) async fn client(args: &AgentArgs) -> Result<kube::Client, crate::kube_args::KubeConfigError> {
    let mut config = args.kube.config().await?;
    let timeout = args.kube.request_timeout;
    config.connect_timeout = Some(timeout.unwrap_or(Duration::from_secs(5)));
    config.read_timeout = Some(timeout.unwrap_or(Duration::from_secs(15)));
    crate::kube_args::client(config).map_err(|e| crate::kube_args::KubeConfigError::Client(e.to_string()))
}

pub async fn status(args: StatusArgs) -> ExitCode {
    let emit = args.output.emit();
    let client = match client(&args.agents).await {
        Ok(client) => client,
        Err(err) => return CliError::from(&err).exit(emit),
    };
    let rows = match gather(&client, &args.agents).await {
        Ok(rows) => rows,
        Err(err) => return err.exit(emit),
    };
    match args.output {
        Format::Table | Format::Wide => print!("{}", render_status(&rows, args.output == Format::Wide)),
        format => print_data(&rows, format),
    }
    if rows.iter().all(|r| r.ready) {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(EXIT_UNDETERMINED)
    }
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct Versions {
    client_version: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    agent_versions: Option<Vec<AgentVersion>>,
}

#[derive(Debug, Serialize)]
struct AgentVersion {
    node: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    version: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<String>,
}

pub async fn version(args: VersionArgs) -> ExitCode {
    let client_version = env!("CARGO_PKG_VERSION");
    let mut versions = Versions {
        client_version,
        agent_versions: None,
    };
    let code = ExitCode::SUCCESS;
    if !args.client {
        match client(&args.agents).await {
            Ok(client) => match gather(&client, &args.agents).await {
                Ok(rows) => {
                    versions.agent_versions = Some(
                        rows.into_iter()
                            .map(|r| AgentVersion {
                                error: r
                                    .version
                                    .is_none()
                                    .then(|| r.error.unwrap_or_else(|| "no agent".into())),
                                node: r.node,
                                version: r.version,
                            })
                            .collect(),
                    );
                }
                Err(err) => {
                    if args.output.emit() != Emit::Text {
                        return err.exit(args.output.emit());
                    }
                    println!("Client Version: v{client_version}");
                    return err.exit(Emit::Text);
                }
            },
            Err(err) => {
                if args.output.emit() == Emit::Text {
                    println!("Client Version: v{client_version}");
                }
                return CliError::from(&err).exit(args.output.emit());
            }
        }
    }
    match args.output {
        Format::Table | Format::Wide => {
            println!("Client Version: v{client_version}");
            if let Some(agents) = &versions.agent_versions {
                println!("Agent Versions:");
                for a in agents {
                    match (&a.version, &a.error) {
                        (Some(v), _) => println!("  {}: v{v}", a.node),
                        (None, e) => println!("  {}: unknown ({})", a.node, e.as_deref().unwrap_or("-")),
                    }
                }
            }
        }
        format => print_data(&versions, format),
    }
    code
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn capabilities_say_what_can_and_cannot_be_probed() {
        let full = Capabilities {
            setns: true,
            net_raw: true,
            ptrace: true,
            net_admin: true,
        };
        let (can, cannot) = probe_abilities(&full);
        assert!(can.iter().any(|c| c.starts_with("pods")), "{can:?}");
        assert!(cannot.is_empty(), "{cannot:?}");
        let (can, cannot) = probe_abilities(&Capabilities {
            setns: true,
            net_raw: false,
            ptrace: true,
            net_admin: false,
        });
        assert!(cannot.iter().any(|c| c.contains("NET_ADMIN")), "{cannot:?}");
        assert!(!can.contains(&"icmp".to_string()));
        assert!(cannot.iter().any(|c| c.contains("NET_RAW")), "{cannot:?}");
        let (can, cannot) = probe_abilities(&Capabilities::default());
        assert!(can.is_empty());
        assert!(cannot.iter().any(|c| c.contains("SYS_ADMIN")), "{cannot:?}");
    }

    fn mk_row(node: &str, caps: Option<Capabilities>, error: Option<&str>) -> NodeStatus {
        let (can, cannot) = match &caps {
            Some(caps) => probe_abilities(caps),
            None => (vec![], vec!["anything: the agent does not answer".into()]),
        };
        NodeStatus {
            node: node.into(),
            agent: Some(format!("netdiag/netdiag-agent-{}", &node[node.len() - 5..])),
            ready: caps.is_some(),
            version: caps.as_ref().map(|_| "0.1.0".into()),
            capabilities: caps,
            can_probe: can,
            cannot_probe: cannot,
            error: error.map(String::from),
        }
    }

    const FULL: Capabilities = Capabilities {
        setns: true,
        net_raw: true,
        ptrace: true,
        net_admin: true,
    };

    /// One cluster's nodes, named as `name(i)` says: agents with every capability, without
    /// NET_ADMIN, without SYS_PTRACE (AppArmor), with none, one that does not answer, none.
    fn cluster_rows(name: impl Fn(usize) -> String) -> Vec<NodeStatus> {
        let error = "port-forward to netdiag/netdiag-agent-x9z8q failed: timed out after 5s";
        let mut absent = mk_row(&name(5), None, None);
        absent.agent = None;
        absent.cannot_probe = vec!["anything: no agent runs on this node".into()];
        vec![
            mk_row(&name(0), Some(FULL), None),
            mk_row(
                &name(1),
                Some(Capabilities {
                    net_admin: false,
                    ..FULL
                }),
                None,
            ),
            mk_row(
                &name(2),
                Some(Capabilities {
                    ptrace: false,
                    ..FULL
                }),
                None,
            ),
            mk_row(&name(3), Some(Capabilities::default()), None),
            mk_row(&name(4), None, Some(error)),
            absent,
        ]
    }

    fn eks_rows() -> Vec<NodeStatus> {
        cluster_rows(|i| format!("ip-10-0-{}-34.eu-west-1.compute.internal", 100 + i))
    }

    #[test]
    fn default_status_rows_fit_100_columns() {
        let gke = |i| format!("gke-prod-default-pool-1a2b3c4d-x9z{i}");
        let kind = |i| format!("kind-worker{}", i + 1);
        for rows in [eks_rows(), cluster_rows(gke), cluster_rows(kind)] {
            let text = render_status(&rows, false);
            for line in text.lines() {
                assert!(
                    line.chars().count() <= 100,
                    "{} columns:\n{text}",
                    line.chars().count()
                );
            }
        }
        let text = render_status(&cluster_rows(kind), false);
        let row = |node: &str| text.lines().find(|l| l.starts_with(&format!("{node} "))).unwrap();
        assert!(row("kind-worker1").contains(" all "), "{text}");
        assert!(
            row("kind-worker2").contains("pods,node,icmp ") && row("kind-worker2").ends_with("NET_ADMIN"),
            "{text}"
        );
        assert!(row("kind-worker3").ends_with(" SYS_PTRACE"), "{text}");
        assert!(row("kind-worker4").ends_with(" all capabilities"), "{text}");
        assert!(row("kind-worker5").ends_with("agent reply"), "{text}");
        assert!(row("kind-worker6").ends_with("agent pod"), "{text}");
    }

    #[test]
    fn wide_status_keeps_the_sentences_the_pod_and_the_error() {
        let text = render_status(&eks_rows(), true);
        assert!(text.lines().next().unwrap().contains("CANNOT PROBE"), "{text}");
        assert!(text.contains("the node's Service rules (no NET_ADMIN)"), "{text}");
        assert!(text.contains("SYS_ADMIN,SYS_PTRACE,NET_RAW,NET_ADMIN"), "{text}");
        assert!(text.contains("timed out after 5s"), "{text}");
    }

    #[test]
    fn a_node_without_an_agent_is_not_ready_and_says_so() {
        let rows = [NodeStatus {
            node: "node-c".into(),
            agent: None,
            ready: false,
            version: None,
            capabilities: None,
            can_probe: vec![],
            cannot_probe: vec!["anything: no agent runs on this node".into()],
            error: None,
        }];
        let text = render_status(&rows, false);
        let line = text.lines().nth(1).unwrap();
        assert!(
            line.starts_with("node-c") && line.contains("False") && line.ends_with("agent pod"),
            "{text}"
        );
    }
}
