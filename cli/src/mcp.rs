//! `kubectl netdiag mcp`: `check`, `policy explain` and `status` as Model Context Protocol tools
//! over stdio, for tools that act on their own. Each tool returns the document its command prints
//! with `-o json`, built by the same functions ([`check::report`], [`policy::explain_verdict`],
//! [`status::gather`]) with the caller's kubeconfig, context and RBAC. Every tool only reads.
//!
//! I/O: rmcp's stdio transport owns stdin and stdout, which carry nothing but MCP messages; logs
//! go to stderr. Each call builds its own client, as one run of the command would.

use std::process::ExitCode;
use std::time::Duration;

use rmcp::handler::server::wrapper::Parameters;
use rmcp::model::{CallToolResult, ContentBlock};
use rmcp::{ServiceExt, tool, tool_handler, tool_router};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::commands::check::{self, CheckArgs, CheckStop};
use crate::commands::policy::{self, ExplainArgs, InputArgs};
use crate::errors::{CliError, Emit, Reason};
use crate::kube_args::KubeArgs;
use crate::status::{self, AgentArgs};
use netdiag_engine::policy::Protocol;
use netdiag_engine::{SourceRef, Target, parse_timeout};

const EXAMPLES: &str = "\
Examples:
  # Serve the tools to an MCP client that starts this command (stdio)
  kubectl netdiag mcp

  # As a given context and namespace, with the agents installed elsewhere
  kubectl netdiag --context prod -n shop mcp --agent-namespace netdiag-system

Tools: check (as `check -o json`), policy_explain (as `policy explain -o json`) and status (as
`status -o json`). They only read, with this kubeconfig's user and its RBAC. stdout carries
only MCP messages; logs go to stderr (-v as in every command). The server ends when stdin
closes.";

/// Serve check, policy explain and status as MCP tools on stdin/stdout.
#[derive(Debug, Clone, clap::Args)]
#[command(after_help = EXAMPLES)]
pub struct McpArgs {
    /// Where the agents are, for check and status; the connection flags (-n is the default
    /// namespace of every tool).
    #[command(flatten)]
    pub agents: AgentArgs,
}

/// Arguments of the `check` tool.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CheckInput {
    /// The client: POD, NS/POD, or TYPE/NAME for a workload (deploy/, sts/, ds/, rs/), whose
    /// first ready pod by name is used.
    pub from: String,
    /// What the client wants to reach: svc/NAME[.NS]:PORT (number or port name),
    /// pod/NAME[.NS]:PORT, HOST:PORT (resolved as the pod would) or IP:PORT.
    pub to: String,
    /// Namespace of names that give none (default: the server's -n, then the context's).
    #[serde(default)]
    pub namespace: Option<String>,
    /// Per-probe timeout, e.g. 1s or 500ms (default 1s).
    #[serde(default)]
    pub timeout: Option<String>,
    /// Send the live probes this many times (1–1000) and report each one's failures and
    /// latency, for failures that come and go (as `check --repeat`).
    #[serde(default)]
    pub repeat: Option<u32>,
}

/// Arguments of the `policy_explain` tool.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PolicyExplainInput {
    /// Source: NAMESPACE/POD, POD or pod/POD (in the namespace), or an IP address.
    pub from: String,
    /// Destination: NAMESPACE/POD, POD or pod/POD (in the namespace), or an IP address.
    pub to: String,
    /// Destination port: a number (1-65535) or the name of a port of the destination pod's
    /// containers (e.g. "http").
    pub port: PortInput,
    /// TCP, UDP or SCTP (default TCP).
    #[serde(default)]
    pub protocol: Option<String>,
    /// Namespace of names that give none (default: the server's -n, then the context's).
    #[serde(default)]
    pub namespace: Option<String>,
}

/// A port as a number or as a name.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(untagged)]
pub enum PortInput {
    Number(u32),
    Name(String),
}

/// Arguments of the `status` tool.
#[derive(Debug, Default, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct StatusInput {
    /// Namespace of the netdiag agent DaemonSet (default: the server's --agent-namespace).
    #[serde(default)]
    pub agent_namespace: Option<String>,
}

/// The MCP server: the connection flags and agent location the command was started with.
#[derive(Debug, Clone)]
pub struct Netdiag {
    agents: AgentArgs,
}

impl Netdiag {
    pub fn new(agents: AgentArgs) -> Self {
        Netdiag { agents }
    }

    /// The server's connection flags, with the call's namespace when it gives one.
    fn kube(&self, namespace: Option<String>) -> KubeArgs {
        let mut kube = self.agents.kube.clone();
        if let Some(namespace) = namespace {
            kube.namespaces = vec![namespace];
        }
        kube
    }

    /// The check the CLI would run for `check --from … --to … [-n …] [--timeout …] -o json`.
    fn check_args(&self, input: CheckInput) -> Result<CheckArgs, CliError> {
        let from = input.from.parse::<SourceRef>().map_err(usage)?;
        let to = input.to.parse::<Target>().map_err(usage)?;
        let timeout = match &input.timeout {
            Some(text) => parse_timeout(text).map_err(usage)?,
            None => Duration::from_secs(1),
        };
        if let Some(rounds) = input.repeat
            && !(1..=netdiag_engine::repeat::MAX_ROUNDS).contains(&rounds)
        {
            return Err(usage(format!(
                "repeat {rounds}: must be between 1 and {}",
                netdiag_engine::repeat::MAX_ROUNDS
            )));
        }
        Ok(CheckArgs {
            kube: self.kube(input.namespace),
            from: Some(from),
            selector: None,
            to,
            timeout,
            repeat: input.repeat,
            for_duration: None,
            interval: None,
            output: check::OutputFormat::Json,
            agent_namespace: self.agents.agent_namespace.clone(),
            agent_selector: self.agents.agent_selector.clone(),
            agent_url: None,
        })
    }

    /// The flow the CLI would explain for `policy explain --from … --to … --port … -o json`.
    fn explain_args(&self, input: PolicyExplainInput) -> Result<ExplainArgs, CliError> {
        let port_text = match input.port {
            PortInput::Number(number) => number.to_string(),
            PortInput::Name(name) => name,
        };
        let port = policy::parse_port(&port_text).map_err(usage)?;
        let protocol = match &input.protocol {
            Some(text) => text.parse().map_err(|err: String| usage(err))?,
            None => Protocol::Tcp,
        };
        Ok(ExplainArgs {
            input: InputArgs {
                kube: self.kube(input.namespace),
                from_file: None,
            },
            from: input.from,
            to: input.to,
            port,
            protocol,
            output: policy::OutputFormat::Json,
        })
    }
}

/// A value the CLI would refuse as a usage error, in its parser's words (which name the flag).
fn usage(err: impl std::fmt::Display) -> CliError {
    CliError::new(Reason::Usage, err.to_string())
}

/// A tool's answer: the `-o json` document as text, byte for byte, and as structured content.
fn document<T: Serialize>(value: &T) -> CallToolResult {
    match (serde_json::to_string_pretty(value), serde_json::to_value(value)) {
        (Ok(text), Ok(data)) => {
            let mut result = CallToolResult::success(vec![ContentBlock::text(text)]);
            result.structured_content = Some(data);
            result
        }
        (Err(err), _) | (_, Err(err)) => failed(&CliError::new(
            Reason::Failed,
            format!("failed to serialize the report: {err}"),
        )),
    }
}

/// A tool error: the command's `error: …` line as text, its `-o json` error object as data.
fn failed(err: &CliError) -> CallToolResult {
    let mut result = CallToolResult::error(vec![ContentBlock::text(err.line())]);
    result.structured_content = err
        .data(Emit::Json)
        .and_then(|json| serde_json::from_str(&json).ok());
    result
}

#[tool_router]
impl Netdiag {
    /// Walks the connectivity checklist from a pod to a target, as `kubectl netdiag check -o json`.
    #[tool(
        name = "check",
        description = "Walk the connectivity checklist (source, dns, service, endpoints, network-policy, pod-network, service-proxy, application) from a pod to a target, probing as the pod through the netdiag agent on its node, and name the first failing layer with its evidence. Returns the report of `kubectl netdiag check -o json`.",
        annotations(title = "Check connectivity", read_only_hint = true)
    )]
    async fn check(&self, Parameters(input): Parameters<CheckInput>) -> CallToolResult {
        let args = match self.check_args(input) {
            Ok(args) => args,
            Err(err) => return failed(&err),
        };
        match check::report(&args).await {
            Ok(checked) => document(&checked.report),
            Err(CheckStop::Error(err)) => failed(&err),
            Err(CheckStop::NoSourcePod(message)) => {
                CallToolResult::error(vec![ContentBlock::text(format!("error: {message}"))])
            }
        }
    }

    /// Explains whether NetworkPolicy and the admin tiers allow one flow.
    #[tool(
        name = "policy_explain",
        description = "Explain whether one flow (from a pod or IP to a pod or IP, port, protocol) is allowed by the admin network policy tiers and NetworkPolicy, and which policies and rules decided it. Static analysis only, no agent needed. Returns the verdict of `kubectl netdiag policy explain -o json`.",
        annotations(title = "Explain network policy", read_only_hint = true)
    )]
    async fn policy_explain(&self, Parameters(input): Parameters<PolicyExplainInput>) -> CallToolResult {
        let args = match self.explain_args(input) {
            Ok(args) => args,
            Err(err) => return failed(&err),
        };
        match policy::explain_verdict(&args).await {
            Ok(verdict) => document(&verdict),
            Err(err) => failed(&err),
        }
    }

    /// Shows the agent on each node, as `kubectl netdiag status -o json`.
    #[tool(
        name = "status",
        description = "Show the netdiag agent on each node: ready, version, capabilities, what it can and cannot probe there. Returns the rows of `kubectl netdiag status -o json`.",
        annotations(title = "Agent status", read_only_hint = true)
    )]
    async fn status(&self, Parameters(input): Parameters<StatusInput>) -> CallToolResult {
        let mut agents = self.agents.clone();
        if let Some(namespace) = input.agent_namespace {
            agents.agent_namespace = namespace;
        }
        let client = match status::client(&agents).await {
            Ok(client) => client,
            Err(err) => return failed(&CliError::from(&err)),
        };
        match status::gather(&client, &agents).await {
            Ok(rows) => document(&rows),
            Err(err) => failed(&err),
        }
    }
}

#[tool_handler(
    name = "kubectl-netdiag",
    instructions = "netdiag narrows a Kubernetes connectivity failure to one layer. Use check to test a pod's connection to a Service, pod, name or address; policy_explain to ask whether NetworkPolicy allows a flow; status to see which nodes have a working agent. Every tool only reads, as the user of the kubeconfig."
)]
impl rmcp::ServerHandler for Netdiag {}

/// Serves the tools on stdin/stdout until the client closes stdin.
pub async fn run(args: McpArgs) -> ExitCode {
    let server = Netdiag::new(args.agents);
    let service = match server.serve(rmcp::transport::stdio()).await {
        Ok(service) => service,
        // A client that leaves before the handshake ends the session, not the server in error.
        Err(rmcp::service::ServerInitializeError::ConnectionClosed(_)) => return ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("error: the MCP handshake failed: {err}");
            return ExitCode::from(crate::errors::EXIT_FAILURE);
        }
    };
    match service.waiting().await {
        Ok(reason) => {
            tracing::info!(?reason, "the MCP session ended");
            ExitCode::SUCCESS
        }
        Err(err) => {
            eprintln!("error: the MCP server stopped: {err}");
            ExitCode::from(crate::errors::EXIT_FAILURE)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::{Cli, Command};
    use clap::Parser;

    fn server(args: &[&str]) -> Netdiag {
        let cli = Cli::try_parse_from(args).unwrap_or_else(|e| panic!("{args:?}: {e}"));
        let Command::Mcp(mcp) = cli.into_command() else {
            panic!("{args:?} is mcp")
        };
        Netdiag::new(mcp.agents)
    }

    #[test]
    fn the_servers_connection_flags_reach_every_tool_and_a_calls_namespace_wins() {
        let netdiag = server(&[
            "kubectl-netdiag",
            "--context",
            "lab",
            "-n",
            "shop",
            "mcp",
            "--agent-namespace",
            "probes",
        ]);
        let input = CheckInput {
            from: "checkout".into(),
            to: "svc/payments:80".into(),
            namespace: None,
            timeout: Some("500ms".into()),
            repeat: Some(20),
        };
        let args = netdiag.check_args(input).unwrap();
        assert_eq!(args.repeat, Some(20));
        assert_eq!(args.kube.context.as_deref(), Some("lab"));
        assert_eq!(args.kube.namespace(), Some("shop"));
        assert_eq!(args.agent_namespace, "probes");
        assert_eq!(args.timeout, Duration::from_millis(500));
        assert_eq!(args.output, check::OutputFormat::Json);

        let input = PolicyExplainInput {
            from: "checkout".into(),
            to: "payments-0".into(),
            port: PortInput::Name("http".into()),
            protocol: Some("udp".into()),
            namespace: Some("other".into()),
        };
        let args = netdiag.explain_args(input).unwrap();
        assert_eq!(args.input.kube.namespace(), Some("other"));
        assert_eq!(args.input.kube.context.as_deref(), Some("lab"));
        assert_eq!(args.port, netdiag_engine::PortRef::Name("http".into()));
        assert_eq!(args.protocol, Protocol::Udp);
    }

    #[test]
    fn values_the_command_refuses_are_usage_errors_in_its_words() {
        let netdiag = server(&["kubectl-netdiag", "mcp"]);
        let input = CheckInput {
            from: "shop/checkout".into(),
            to: "svc/payments:80".into(),
            namespace: None,
            timeout: Some("1d".into()),
            repeat: None,
        };
        let err = netdiag.check_args(input).unwrap_err();
        assert_eq!(err.reason, Reason::Usage);
        assert!(err.message.contains("unknown unit"), "{err}");
        let input = CheckInput {
            from: "shop/checkout".into(),
            to: "svc/payments:80".into(),
            namespace: None,
            timeout: None,
            repeat: Some(0),
        };
        let err = netdiag.check_args(input).unwrap_err();
        assert_eq!(
            (err.reason, err.message.as_str()),
            (Reason::Usage, "repeat 0: must be between 1 and 1000")
        );
        let input = PolicyExplainInput {
            from: "a".into(),
            to: "b".into(),
            port: PortInput::Number(70000),
            protocol: None,
            namespace: None,
        };
        let err = netdiag.explain_args(input).unwrap_err();
        assert!(err.message.starts_with("invalid port \"70000\""), "{err}");
        let result = failed(&err);
        assert_eq!(result.is_error, Some(true));
        let data = result.structured_content.unwrap_or_default();
        assert_eq!(data["error"]["exitCode"], 2, "{data}");
    }
}
