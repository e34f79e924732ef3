//! Command-line surface of `kubectl netdiag`.

use clap::{Parser, Subcommand};

/// Narrow a Kubernetes connectivity failure to one layer, with the evidence.
#[derive(Debug, Parser)]
#[command(name = "kubectl-netdiag", bin_name = "kubectl netdiag", version, about)]
pub struct Cli {
    /// More log output on stderr (-v info, -vv debug, -vvv trace).
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Walk the connectivity checklist from a pod to a target and name the failing layer.
    Check(crate::check::cmd::CheckArgs),
    /// Evaluate NetworkPolicy for a flow or for every pod pair.
    #[command(subcommand)]
    Policy(crate::policy::cmd::PolicyCommand),
    /// Print the version.
    Version,
}

/// Logs go to stderr so that `-o json` on stdout stays clean.
pub fn init_tracing(verbose: u8) {
    let default = match verbose {
        // kube's client logs every failed request at ERROR; the check already reports the failure
        // with the object it was reading, so by default those duplicates stay quiet.
        0 => "warn,kube_client::client::builder=off",
        1 => "info",
        2 => "debug",
        _ => "trace",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_env("NETDIAG_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
}
