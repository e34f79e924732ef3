//! netdiag CLI library: the pure engines (checklist judge, NetworkPolicy evaluator)
//! and the I/O around them (cluster reads, agent calls, rendering).

pub mod agent_client;
pub mod agent_identity;
pub mod check;
pub mod cli;
pub mod cluster;
pub mod complete;
pub mod kube_args;
pub mod output;
pub mod policy;
pub mod render;
pub mod status;
