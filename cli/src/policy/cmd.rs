//! `policy` command wiring.

use std::process::ExitCode;

use crate::kube_args::KubeArgs;

#[derive(Debug, clap::Subcommand)]
pub enum PolicyCommand {
    /// Explain whether one flow is allowed.
    Explain {
        #[command(flatten)]
        kube: KubeArgs,
    },
}

pub async fn run(_command: PolicyCommand) -> ExitCode {
    eprintln!("error: policy is not available in this build");
    ExitCode::from(1)
}
