//! Cluster-wide admin policy: `ClusterNetworkPolicy` (v1alpha2, tiers Admin and Baseline) and the
//! v1alpha1 `AdminNetworkPolicy` / `BaselineAdminNetworkPolicy`, applied around NetworkPolicy.
//!
//! Order per side of a flow: Admin-tier rules by priority (lower first; within a policy, rule
//! order) — Accept allows, Deny denies, Pass skips the rest of the tier; then NetworkPolicy, which
//! decides when any policy isolates the pod for that direction; then Baseline-tier rules the same
//! way; then Kubernetes' default, allow. Pure: `objects` are what is read, `spec` validates them
//! once, this module indexes and evaluates; the matrix applies the same order with bitsets.

mod objects;
mod read;
mod spec;
mod verdict;

pub use objects::{
    AdminNetworkPolicy, AdminObjects, AdminPeer, AdminPolicySpecFields, AdminRule, AdminSubject,
    BaselineAdminNetworkPolicy, ClusterNetworkPolicy, DestinationPort, GROUP, NamespacedPod,
    PortMatchV1Alpha1, PortNumberOrRange, PortNumberV1Alpha1, PortRange, ProtocolMatch,
};
pub use read::read_admin_objects;
pub use verdict::{
    AdminAction, AdminKind, AdminPolicyRef, AdminRuleRef, AdminTier, DecidingTier, TierVerdict, TieredVerdict,
};

pub(crate) use spec::{AdminPeerSpec, AdminPolicySpec, AdminRuleSpec};

use super::types::{Direction, Finding, finding};

/// Validated admin policies and their evaluation order per tier.
#[derive(Debug, Clone, Default)]
pub(crate) struct AdminIndex {
    pub policies: Vec<AdminPolicySpec>,
    /// Admin-tier policies in evaluation order: priority, then kind (ClusterNetworkPolicy before
    /// AdminNetworkPolicy), then name — the API leaves equal priorities to the implementation.
    pub admin_order: Vec<usize>,
    /// Baseline-tier policies in evaluation order: ClusterNetworkPolicy by priority, then the
    /// BaselineAdminNetworkPolicy.
    pub baseline_order: Vec<usize>,
}

impl AdminIndex {
    pub fn new(objects: &AdminObjects, findings: &mut Vec<Finding>) -> Self {
        let mut policies = Vec::new();
        let mut take = |kind: AdminKind, name: Option<&String>, spec: Result<AdminPolicySpec, _>| {
            let name = name.map_or("<unnamed>", String::as_str);
            match spec {
                Ok(spec) => {
                    for warning in &spec.warnings {
                        findings.push(finding(kind.finding_kind(), None, name, warning));
                    }
                    policies.push(spec);
                }
                Err(err) => findings.push(finding(
                    kind.finding_kind(),
                    None,
                    name,
                    &format!("invalid, ignored: {err}"),
                )),
            }
        };
        for p in &objects.cluster_network_policies {
            take(
                AdminKind::ClusterNetworkPolicy,
                p.metadata.name.as_ref(),
                p.try_into(),
            );
        }
        for p in &objects.admin_network_policies {
            take(
                AdminKind::AdminNetworkPolicy,
                p.metadata.name.as_ref(),
                p.try_into(),
            );
        }
        for p in &objects.baseline_admin_network_policies {
            take(
                AdminKind::BaselineAdminNetworkPolicy,
                p.metadata.name.as_ref(),
                p.try_into(),
            );
        }
        let order = |tier: AdminTier| {
            let mut order: Vec<usize> = (0..policies.len())
                .filter(|&i| policies[i].policy.tier == tier)
                .collect();
            order.sort_by_key(|&i| {
                let p = &policies[i].policy;
                (p.priority.map_or(u32::MAX, u32::from), p.kind, p.name.clone())
            });
            order
        };
        AdminIndex {
            admin_order: order(AdminTier::Admin),
            baseline_order: order(AdminTier::Baseline),
            policies,
        }
    }

    pub fn is_empty(&self) -> bool {
        self.policies.is_empty()
    }
}

pub(crate) fn admin_rules(spec: &AdminPolicySpec, direction: Direction) -> &[AdminRuleSpec] {
    match direction {
        Direction::Ingress => &spec.ingress,
        Direction::Egress => &spec.egress,
    }
}

#[cfg(test)]
mod tests;
