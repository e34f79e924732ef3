//! netdiag's node agent: enters pod network namespaces and runs probes there.
//!
//! [`netns`] is the only module that changes namespaces; [`engine`] ties locating a namespace to
//! running the probes ([`tcp`], [`dns`], [`listeners`], [`interfaces`]) on a worker that entered it;
//! [`server`] and the one-shot mode in [`cli`] both go through [`engine::Engine::run`]; the
//! in-cluster [`endpoint`] runs the plugin's check engine with this node's probes in-process.
//! [`access`] decides which sources a caller may name; [`podfile`] reads files a pod controls as
//! hostile input.

pub mod accept;
pub mod access;
pub mod caps;
pub mod capture;
pub mod cli;
pub mod dns;
pub mod egress;
pub mod endpoint;
pub mod engine;
pub mod healthcheck;
pub mod interfaces;
pub mod listeners;
pub mod locate;
pub mod memory;
pub mod metrics;
pub mod netns;
pub mod noderules;
pub mod packets;
pub mod pmtu;
pub mod podfile;
pub mod server;
pub mod tcp;
pub mod udp;
