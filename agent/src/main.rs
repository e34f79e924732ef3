//! The `netdiag-agent` binary: parse the command line, set up logging, run.

//! `netdiag-agent`: parse the flags, set up logging, run the subcommand.

use std::io::IsTerminal;

use clap::Parser;
use netdiag_agent::cli::{Cli, LogFormat};

fn main() {
    let cli = Cli::parse();
    let logs = tracing_subscriber::fmt()
        .with_env_filter(log_filter(std::env::var("RUST_LOG").ok()))
        .with_writer(std::io::stderr);
    match cli.log_format {
        LogFormat::Json => logs.json().init(),
        // Colour only on a terminal: a container log or a file gets plain text.
        LogFormat::Text => logs.with_ansi(std::io::stderr().is_terminal()).init(),
    }
    if let Err(err) = netdiag_agent::cli::run(cli) {
        eprintln!("netdiag-agent: {}", netdiag_engine::error_chain(err.as_ref()));
        std::process::exit(1);
    }
}

/// `RUST_LOG` (default `info`), with netlink-packet-route's warnings about kernel attributes newer
/// than it knows (one per link read) kept quiet unless `RUST_LOG` names that crate.
fn log_filter(rust_log: Option<String>) -> tracing_subscriber::EnvFilter {
    let spec = rust_log.unwrap_or_else(|| "info".into());
    let quiet = (!spec.contains("netlink_packet_route")).then_some(",netlink_packet_route=error");
    tracing_subscriber::EnvFilter::try_new(format!("{spec}{}", quiet.unwrap_or_default()))
        .unwrap_or_else(|_| "info,netlink_packet_route=error".into())
}
