use std::process::ExitCode;

use clap::Parser;
use netdiag::cli::{Cli, Command};

fn main() -> ExitCode {
    let cli = Cli::parse();
    netdiag::cli::init_tracing(cli.verbose);
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(runtime) => runtime,
        Err(err) => {
            eprintln!("error: failed to start the async runtime: {err}");
            return ExitCode::from(1);
        }
    };
    runtime.block_on(async move {
        match cli.command {
            Command::Check(args) => netdiag::check::cmd::run(args).await,
            Command::Policy(command) => netdiag::policy::cmd::run(command).await,
            Command::Version => {
                println!("kubectl-netdiag {}", env!("CARGO_PKG_VERSION"));
                ExitCode::SUCCESS
            }
        }
    })
}
