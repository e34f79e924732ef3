//! `kubectl-netdiag`: parse the flags, set up logging, run the subcommand.

use std::process::ExitCode;

use clap::Parser;
use netdiag::cli::{Cli, Command};

fn main() -> ExitCode {
    let cli = Cli::parse();
    netdiag::cli::init_tracing(cli.verbose);
    let command = cli.into_command();
    if let Command::Completion { shell } = command {
        use std::io::Write as _;
        let _ = std::io::stdout().write_all(&netdiag::cli::completion_script(shell));
        return ExitCode::SUCCESS;
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(runtime) => runtime,
        Err(err) => {
            eprintln!("error: failed to start the async runtime: {err}");
            return ExitCode::from(1);
        }
    };
    runtime.block_on(async move {
        match command {
            Command::Check(args) => netdiag::commands::check::run(args).await,
            Command::Policy(command) => netdiag::commands::policy::run(command).await,
            Command::Version(args) => netdiag::status::version(args).await,
            Command::Status(args) => netdiag::status::status(args).await,
            Command::Mcp(args) => netdiag::mcp::run(args).await,
            Command::Completion { .. } => unreachable!("handled before the runtime starts"),
        }
    })
}
