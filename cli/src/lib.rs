//! The kubectl plugin: its commands, their rendering and completion, `status`, the MCP server,
//! and the agent client that reaches the node agents through the API server. The checklist and the
//! NetworkPolicy evaluator are the engine's (`netdiag_engine`).

pub mod agent_client;
pub mod cli;
pub mod commands;
pub mod complete;
pub mod errors;
pub mod kube_args;
pub mod mcp;
pub mod output;
pub mod render;
pub mod status;
