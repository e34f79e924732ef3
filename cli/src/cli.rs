//! Command-line surface of `kubectl netdiag`, and the logging it sets up (`-v N` as kubectl's
//! levels; colour only on a terminal).

use std::io::IsTerminal;

use clap::{Parser, Subcommand};

const EXAMPLES: &str = "\
Examples:
  # Which layer breaks checkout's connection to the payments Service?
  kubectl netdiag check --from shop/checkout --to svc/payments.shop:80

  # Is NetworkPolicy the reason? (no agent needed)
  kubectl netdiag policy explain -n shop --from checkout --to payments-0 --port 8080

  # Which nodes have a healthy agent, and what can it probe there?
  kubectl netdiag status

  # The same answers as MCP tools, for an assistant that runs them itself
  kubectl netdiag mcp

  # Shell completion
  source <(kubectl netdiag completion bash)

Marks in a check: ✓ pass, ✗ the failing layer, ? undetermined (netdiag could not look — not a
network failure), · skipped.

kubectl's connection flags (--kubeconfig, --context, -n, --request-timeout, --as, --as-group)
go before or after the subcommand.";

/// Narrow a Kubernetes connectivity failure to one layer, with the evidence.
#[derive(Debug, Parser)]
#[command(
    name = "kubectl-netdiag",
    bin_name = "kubectl netdiag",
    version,
    about,
    after_help = EXAMPLES
)]
pub struct Cli {
    /// Log level on stderr, as kubectl's -v: 2 what the check does, 4 debug, 6 every API
    /// request, 8 trace, 9 trace of every library (e.g. -v=6).
    #[arg(
        short = 'v',
        long = "v",
        global = true,
        value_name = "LEVEL",
        default_value_t = 0
    )]
    pub verbose: u8,
    #[command(flatten)]
    pub kube: crate::kube_args::KubeArgs,
    #[command(subcommand)]
    pub command: Command,
}

impl Cli {
    /// The command, with the connection flags (given before or after it) handed to it.
    pub fn into_command(self) -> Command {
        let kube = self.kube;
        let mut command = self.command;
        match &mut command {
            Command::Check(args) => args.kube = kube,
            Command::Policy(crate::commands::policy::PolicyCommand::Explain(args)) => args.input.kube = kube,
            Command::Policy(crate::commands::policy::PolicyCommand::Matrix(args)) => args.input.kube = kube,
            Command::Policy(crate::commands::policy::PolicyCommand::Verify(args)) => args.kube = kube,
            Command::Version(args) => args.agents.kube = kube,
            Command::Status(args) => args.agents.kube = kube,
            Command::Mcp(args) => args.agents.kube = kube,
            Command::Completion { .. } => {}
        }
        command
    }
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Walk the connectivity checklist from a pod to a target and name the failing layer.
    Check(crate::commands::check::CheckArgs),
    /// Evaluate NetworkPolicy for a flow or for every pod pair.
    #[command(subcommand)]
    Policy(crate::commands::policy::PolicyCommand),
    /// Print the client's version and each node's agent version.
    Version(crate::status::VersionArgs),
    /// Show the agent on each node: ready, version, capabilities, what it can probe there.
    Status(crate::status::StatusArgs),
    /// Serve check, policy explain and status as MCP tools on stdin/stdout (read-only).
    Mcp(crate::mcp::McpArgs),
    /// Print a shell completion script (bash, zsh or fish).
    #[command(after_help = "\
Examples:
  source <(kubectl netdiag completion bash)
  kubectl netdiag completion zsh > \"${fpath[1]}/_kubectl-netdiag\"
  kubectl netdiag completion fish > ~/.config/fish/completions/kubectl-netdiag.fish

kubectl 1.26 and later complete plugin arguments through the kubectl_complete-netdiag
executable shipped beside kubectl-netdiag: put both on PATH and `kubectl netdiag <TAB>` works
in kubectl's own completion, with namespaces, pods and services read from the cluster.")]
    Completion {
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
}

/// The standalone completion script for `shell`, completing the `kubectl-netdiag` executable at
/// every level. clap_complete's bash script names its per-subcommand cases apart from the names
/// it looks them up by when the program's name has a space (`kubectl netdiag`) or a dash, and
/// then completes only the first word: the bash script is generated for `kubectl_netdiag` and
/// registered for `kubectl-netdiag`.
pub fn completion_script(shell: clap_complete::Shell) -> Vec<u8> {
    use clap::CommandFactory;
    let name = match shell {
        clap_complete::Shell::Bash => "kubectl_netdiag",
        _ => "kubectl-netdiag",
    };
    let mut command = Cli::command().bin_name(name);
    let mut script = Vec::new();
    clap_complete::generate(shell, &mut command, name, &mut script);
    if shell != clap_complete::Shell::Bash {
        return script;
    }
    let text = String::from_utf8_lossy(&script);
    text.lines()
        .map(|line| {
            if line.trim_start().starts_with("complete -F ") {
                line.replace(" kubectl_netdiag", " kubectl-netdiag") + "\n"
            } else {
                format!("{line}\n")
            }
        })
        .collect::<String>()
        .into_bytes()
}

/// The log filter for a kubectl-style `-v` level.
pub fn log_filter(level: u8) -> &'static str {
    match level {
        // kube's client logs every failed request at ERROR; the check already reports the failure
        // with the object it was reading, so by default those duplicates stay quiet.
        // `http` is each API request and agent round trip (method, path, status, latency).
        0 | 1 => "warn,kube_client::client::builder=off",
        2 | 3 => "warn,netdiag=info,kubectl_netdiag=info,kube_client::client::builder=off",
        4 | 5 => "info,http=warn,netdiag=debug,kubectl_netdiag=debug",
        6 | 7 => "info,http=info,netdiag=debug,kubectl_netdiag=debug,kube_client=debug",
        8 => "debug,http=info,netdiag=trace,kubectl_netdiag=trace,kube_client=trace",
        _ => "trace",
    }
}

/// Logs go to stderr so that `-o json` on stdout stays clean; colour only on a terminal and
/// without `NO_COLOR`. `NETDIAG_LOG` (a tracing filter) wins over `-v`.
pub fn init_tracing(level: u8) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("NETDIAG_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(log_filter(level)));
    let colour = std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty());
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(colour)
        .init();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn verbosity_takes_kubectl_level_forms() {
        for args in [
            &["kubectl-netdiag", "-v=6", "version"][..],
            &["kubectl-netdiag", "version", "-v", "6"],
            &["kubectl-netdiag", "--v=6", "version"],
        ] {
            let cli = Cli::try_parse_from(args).unwrap_or_else(|e| panic!("{args:?}: {e}"));
            assert_eq!(cli.verbose, 6, "{args:?}");
        }
        assert!(log_filter(6).contains("http=info"));
        assert!(log_filter(4).contains("http=warn"));
        assert!(!log_filter(2).contains("debug"));
    }

    #[test]
    fn kube_flags_go_before_or_after_the_subcommand() {
        for args in [
            &[
                "kubectl-netdiag",
                "-n",
                "shop",
                "--context",
                "lab",
                "check",
                "--from",
                "a",
                "--to",
                "1.2.3.4:80",
            ][..],
            &[
                "kubectl-netdiag",
                "check",
                "--from",
                "a",
                "--to",
                "1.2.3.4:80",
                "-n",
                "shop",
                "--context=lab",
            ],
            &[
                "kubectl-netdiag",
                "--context",
                "lab",
                "check",
                "-n",
                "shop",
                "--from",
                "a",
                "--to",
                "1.2.3.4:80",
            ],
        ] {
            let cli = Cli::try_parse_from(args).unwrap_or_else(|e| panic!("{args:?}: {e}"));
            let Command::Check(check) = cli.into_command() else {
                panic!("{args:?} is a check")
            };
            assert_eq!(check.kube.namespace(), Some("shop"), "{args:?}");
            assert_eq!(check.kube.context.as_deref(), Some("lab"), "{args:?}");
        }
        let cli = Cli::try_parse_from([
            "kubectl-netdiag",
            "--as",
            "jane",
            "--as-group",
            "sre",
            "--request-timeout",
            "2s",
            "status",
        ])
        .unwrap();
        let Command::Status(status) = cli.into_command() else {
            panic!("status")
        };
        assert_eq!(status.agents.kube.as_user.as_deref(), Some("jane"));
        assert_eq!(status.agents.kube.as_groups, ["sre"]);
        assert_eq!(
            status.agents.kube.request_timeout,
            Some(std::time::Duration::from_secs(2))
        );
        let cli = Cli::try_parse_from([
            "kubectl-netdiag",
            "policy",
            "matrix",
            "-n",
            "a",
            "-n",
            "b",
            "--port",
            "80",
        ])
        .unwrap();
        let Command::Policy(crate::commands::policy::PolicyCommand::Matrix(matrix)) = cli.into_command()
        else {
            panic!("matrix")
        };
        assert_eq!(matrix.input.kube.namespaces, ["a", "b"]);
    }

    #[test]
    fn help_has_examples() {
        use clap::CommandFactory;
        let mut cmd = Cli::command();
        let help = cmd.render_long_help().to_string();
        assert!(help.contains("Examples:"), "{help}");
        assert!(
            help.contains("? undetermined") && help.contains("· skipped"),
            "{help}"
        );
        let check = cmd
            .find_subcommand_mut("check")
            .unwrap()
            .render_long_help()
            .to_string();
        assert!(check.contains("--from deploy/checkout"), "{check}");
    }
}
