//! netdiag's engine: the end-to-end checklist (`snapshot → plan → probe → assemble → judge`),
//! the cluster reads it rests on, and the NetworkPolicy evaluator. No front end lives here: the
//! kubectl plugin and the agent's in-cluster endpoint both call in.

pub mod agent_identity;
pub mod check;
pub mod cluster;
pub mod policy;
