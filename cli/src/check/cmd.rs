//! `check` command wiring.

use std::process::ExitCode;

use crate::kube_args::KubeArgs;

#[derive(Debug, clap::Args)]
pub struct CheckArgs {
    #[command(flatten)]
    pub kube: KubeArgs,
}

pub async fn run(_args: CheckArgs) -> ExitCode {
    eprintln!("error: check is not available in this build");
    ExitCode::from(1)
}
