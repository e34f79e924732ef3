//! The command line: `up`, `down`, `run`, `demo`, and the hidden subcommands the lab starts as its
//! own background processes (`pod-app`, `api-serve`).

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use crate::lab::{ControlPlane, UpOptions, down, up};
use crate::podapp::Listen;
use crate::runner::{RunOptions, demo, run};

#[derive(Debug, Parser)]
#[command(
    name = "netdiag-lab",
    version,
    about = "A Kubernetes-shaped network on one machine, for testing netdiag"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Cmd,
}

#[derive(Debug, Subcommand)]
pub enum Cmd {
    /// Build a scenario and return when it is ready; writes DIR/kubeconfig and DIR/lab.json.
    Up {
        scenario: PathBuf,
        #[arg(long, value_name = "DIR")]
        state: PathBuf,
        /// The netdiag-agent binary (default: beside this executable).
        #[arg(long, value_name = "PATH")]
        agent_bin: Option<PathBuf>,
        /// Start no agents (for testing the lab itself).
        #[arg(long, conflicts_with = "agent_bin")]
        no_agents: bool,
        /// What serves the API and programs Services: the real components or the stand-in.
        #[arg(long, value_enum, default_value_t, env = "NETDIAG_LAB_CONTROL_PLANE")]
        control_plane: ControlPlane,
    },
    /// Remove everything a lab made, also after a partial or crashed `up`.
    Down {
        #[arg(long, value_name = "DIR")]
        state: PathBuf,
    },
    /// Up, run the scenario's check with kubectl-netdiag, compare with its expect, down.
    Run {
        scenario: PathBuf,
        /// The kubectl-netdiag binary (default: beside this executable).
        #[arg(long, value_name = "PATH")]
        netdiag_bin: Option<PathBuf>,
        #[arg(long, value_name = "PATH")]
        agent_bin: Option<PathBuf>,
        /// State dir to use (default: a fresh one under the temp dir).
        #[arg(long, value_name = "DIR")]
        state: Option<PathBuf>,
        /// Leave the lab up afterwards.
        #[arg(long)]
        keep: bool,
        #[arg(long, value_enum, default_value_t, env = "NETDIAG_LAB_CONTROL_PLANE")]
        control_plane: ControlPlane,
    },
    /// The quick start: bring up the demo scenario (shop/checkout denied by a NetworkPolicy) and diagnose it.
    Demo {
        #[arg(long, value_name = "PATH")]
        netdiag_bin: Option<PathBuf>,
        #[arg(long, value_name = "PATH")]
        agent_bin: Option<PathBuf>,
        #[arg(long)]
        keep: bool,
    },
    /// The process in every lab pod.
    #[command(hide = true)]
    PodApp {
        #[arg(long)]
        pod: String,
        #[arg(long, value_name = "PROTO:ADDR:PORT")]
        listen: Vec<Listen>,
        #[arg(long)]
        ready_file: Option<PathBuf>,
    },
    /// The API stand-in of the lab in DIR.
    #[command(hide = true)]
    ApiServe {
        #[arg(long, value_name = "DIR")]
        state: PathBuf,
    },
    /// The lab kubelet's long-running part for the lab in DIR: runs and stops the pods that
    /// come and go after `up` (real control plane).
    #[command(hide = true)]
    Kubelet {
        #[arg(long, value_name = "DIR")]
        state: PathBuf,
    },
    /// Relays a host loopback port to the real API server in the lab in DIR.
    #[command(hide = true)]
    Relay {
        /// Unused by the relay: on its command line so that `down` finds and stops it.
        #[arg(long, value_name = "DIR")]
        state: PathBuf,
        #[arg(long)]
        netns: PathBuf,
        #[arg(long)]
        to: std::net::SocketAddr,
    },
}

fn report(result: anyhow::Result<bool>) -> ExitCode {
    match result {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::from(1),
        Err(e) => {
            eprintln!("netdiag-lab: {e:#}");
            ExitCode::from(2)
        }
    }
}

pub fn main() -> ExitCode {
    crate::signals::no_inherited_fds_for_children();
    let cli = Cli::parse();
    match cli.command {
        Cmd::Up {
            scenario,
            state,
            agent_bin,
            no_agents,
            control_plane,
        } => report(
            crate::signals::defer_stop_signals()
                .and_then(|()| {
                    up(&UpOptions {
                        scenario,
                        state: state.clone(),
                        agent_bin,
                        no_agents,
                        control_plane,
                    })
                })
                .map(|info| {
                    println!(
                        "lab {} is up: {} nodes, {} pods, {} services; kubeconfig {}",
                        info.scenario,
                        info.nodes.len(),
                        info.pods.len(),
                        info.services.len(),
                        state.join("kubeconfig").display()
                    );
                    true
                }),
        ),
        Cmd::Down { state } => report(down(&state).map(|()| true)),
        Cmd::Run {
            scenario,
            netdiag_bin,
            agent_bin,
            state,
            keep,
            control_plane,
        } => report(run(&RunOptions {
            scenario,
            netdiag_bin,
            agent_bin,
            state,
            keep,
            control_plane,
        })),
        Cmd::Demo {
            netdiag_bin,
            agent_bin,
            keep,
        } => report(demo(netdiag_bin, agent_bin, keep)),
        Cmd::PodApp {
            pod,
            listen,
            ready_file,
        } => report(crate::podapp::run(&pod, &listen, ready_file).map(|()| true)),
        Cmd::ApiServe { state } => report(crate::apiserver::serve(state).map(|()| true)),
        Cmd::Kubelet { state } => report(crate::cluster::pod_sync::serve(&state).map(|()| true)),
        Cmd::Relay { netns, to, .. } => report(crate::cluster::relay::serve(netns, to).map(|()| true)),
    }
}
