//! netdiag's engine: the end-to-end checklist (`snapshot → plan → probe → assemble → judge`),
//! the cluster reads it rests on, and the NetworkPolicy evaluator. No front end lives here: the
//! kubectl plugin and the agent's in-cluster endpoint both call in.
//!
//! A check is three calls: [`Snapshot::read`] (the only cluster I/O), [`collect`] (the probes,
//! through an [`AgentTransport`]) and [`verdict`] (pure). The [`report`] is what leaves the
//! engine; the [`policy`] evaluator also stands alone (`kubectl netdiag policy`).

mod agent_identity;
mod check;
mod cluster;
pub mod policy;

pub use agent_identity::{AgentDaemonSet, genuine_agents, read_agent_daemonset};
pub use check::disclose::{foreign_namespaces, withheld};
pub use check::evidence::{AgentPods, Evidence, Fact, SourceFacts};
pub use check::probe::{AgentReply, AgentTransport, agent_deadline};
pub use check::reads::Read;
pub use check::repeat::{self, Repetition};
pub use check::snapshot::Snapshot;
pub use check::target::parse_repeat_for;
pub use check::target::{
    ParseError, PodRef, PortRef, SourceKind, SourceRef, Target, parse_agent_url, parse_timeout,
};
pub use check::workload::{self, WorkloadError};
pub use check::{CheckRequest, collect, collect_repeated, verdict};
pub use cluster::{
    ListFailure, NamespacedName, PAGE_SIZE, ToolFailure, closest, error_chain, get_optional, list_all,
    list_paged,
};

/// The verdict as it leaves the engine: layers, steps, evidence, fixes and exit codes.
pub mod report {
    pub use crate::check::report::*;
}
