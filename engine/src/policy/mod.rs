//! NetworkPolicy evaluation (`networking.k8s.io/v1`) and `kubectl netdiag policy`.
//!
//! The evaluator is pure: [`PolicyIndex::new`] validates Namespaces, Pods and NetworkPolicies once
//! (invalid objects become [`Finding`]s and are skipped), and [`PolicyIndex::evaluate`] decides one
//! [`Flow`] with provenance: which policies isolate each side and which rules allow it.
//! [`PolicyIndex::matrix`] decides every pod pair at once, reusing per-pod work.
//! [`PolicyIndex::with_admin`] adds the cluster-wide admin tiers (`admin`), and
//! [`PolicyIndex::evaluate_tiers`] decides a flow over Admin → NetworkPolicy → Baseline.
//! `cmd` is the I/O around it (cluster reads, files, rendering).

pub mod admin;
mod index;
pub mod input;
mod matrix;
mod spec;
mod tiers;
mod types;

pub use admin::{
    AdminAction, AdminKind, AdminObjects, AdminPolicyRef, AdminRuleRef, AdminTier, DecidingTier, TierVerdict,
    TieredVerdict,
};
pub use index::PolicyIndex;
pub use input::{InputError, Objects, parse_objects};
pub use matrix::{Matrix, MatrixEntry};
pub use types::{
    Direction, DirectionVerdict, EvalError, ExceptedBy, Finding, Flow, FlowVerdict, IpFamily, Peer,
    PeerParseError, PolicyRef, Protocol, RuleRef,
};

#[cfg(test)]
mod tests;
