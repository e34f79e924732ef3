//! The tiers applied in order to one flow: the Admin tier, then NetworkPolicy, then the
//! Baseline tier, then Kubernetes' default (see [`super::admin`] for the order within a tier).

use super::admin::{
    AdminAction, AdminPolicyRef, AdminRuleRef, AdminRuleSpec, DecidingTier, TierVerdict, TieredVerdict,
    admin_rules,
};
use super::index::{Endpoint, HasFamily, PolicyIndex, pick_family};
use super::types::{Direction, DirectionVerdict, EvalError, Flow, IpFamily};

impl HasFamily for TieredVerdict {
    fn family(&self) -> Option<IpFamily> {
        self.network_policy.family
    }

    fn flow_text(&self) -> String {
        self.network_policy.flow_text()
    }
}

/// The flow and the address family whose packets a tier decides.
#[derive(Debug, Clone, Copy)]
struct Sides<'a> {
    flow: &'a Flow,
    family: Option<IpFamily>,
}

/// The first rule of a tier's policies that matches, for one side: what it did.
enum TierOutcome<'a> {
    Decided(&'a AdminRuleSpec),
    Passed(&'a AdminRuleSpec),
    NoMatch,
}

impl PolicyIndex {
    /// The admin policies in the index, Admin tier first, each tier in evaluation order.
    pub fn admin_policies(&self) -> impl Iterator<Item = &AdminPolicyRef> {
        let admin = &self.admin;
        admin
            .admin_order
            .iter()
            .chain(&admin.baseline_order)
            .map(|&i| &admin.policies[i].policy)
    }

    /// Decide one flow over every tier: Admin, NetworkPolicy, Baseline, default allow. With no
    /// admin policies this is [`PolicyIndex::evaluate`] with every side decided by NetworkPolicy
    /// or the default. `Err` only when the flow cannot be evaluated (unknown pod, port 0).
    /// Between dual-stack pods each family is decided on its own, as [`PolicyIndex::evaluate`] does.
    pub fn evaluate_tiers(&self, flow: &Flow) -> Result<TieredVerdict, EvalError> {
        let (from, to) = (self.endpoint(&flow.from)?, self.endpoint(&flow.to)?);
        match self.flow_families(from, to).as_slice() {
            [] => self.evaluate_tiers_in(flow, None),
            [one] => self.evaluate_tiers_in(flow, Some(*one)),
            [first, second, ..] => {
                let a = self.evaluate_tiers_in(flow, Some(*first))?;
                let b = self.evaluate_tiers_in(flow, Some(*second))?;
                Ok(pick_family(
                    a,
                    b,
                    |v| v.allowed,
                    |v| &mut v.network_policy.notes,
                    TieredVerdict::explain,
                ))
            }
        }
    }

    /// [`PolicyIndex::evaluate_tiers`] for the packets of one address family (`None`: no end of
    /// the flow has an address).
    pub fn evaluate_tiers_in(
        &self,
        flow: &Flow,
        family: Option<IpFamily>,
    ) -> Result<TieredVerdict, EvalError> {
        let network_policy = self.evaluate_in(flow, family)?;
        let from = self.endpoint(&flow.from)?;
        let to = self.endpoint(&flow.to)?;
        let sides = Sides { flow, family };
        let egress = match from {
            Endpoint::Pod(source) => {
                self.tier_verdict(source, Direction::Egress, to, to, sides, &network_policy.egress)
            }
            Endpoint::Ip(_) => TierVerdict::not_applicable(),
        };
        let ingress = match to {
            Endpoint::Pod(dest) => {
                self.tier_verdict(dest, Direction::Ingress, from, to, sides, &network_policy.ingress)
            }
            Endpoint::Ip(_) => TierVerdict::not_applicable(),
        };
        let mut network_policy = network_policy;
        if !self.admin.is_empty() {
            for end in [from, to] {
                if let Endpoint::Pod(i) = end
                    && self.pods[i].host_network
                {
                    let pod = &self.pods[i];
                    let note = format!(
                        "{}/{} uses the host network: admin policies never select it as a subject or a \
                         namespaces/pods peer (networks peers still match its IP)",
                        pod.namespace, pod.name
                    );
                    if !network_policy.notes.contains(&note) {
                        network_policy.notes.push(note);
                    }
                }
            }
        }
        Ok(TieredVerdict {
            allowed: egress.allowed && ingress.allowed,
            network_policy,
            egress,
            ingress,
        })
    }

    /// One side over the tiers: `subject` is the pod whose side is judged, `remote` the other end,
    /// `dest` the destination whose containerPorts resolve named ports.
    fn tier_verdict(
        &self,
        subject: usize,
        direction: Direction,
        remote: Endpoint,
        dest: Endpoint,
        flow: Sides,
        network_policy: &DirectionVerdict,
    ) -> TierVerdict {
        let mut passed_by = None;
        match self.first_match(&self.admin.admin_order, subject, direction, remote, dest, flow) {
            TierOutcome::Decided(rule) => return decided(rule, DecidingTier::Admin, None),
            TierOutcome::Passed(rule) => passed_by = Some(rule.rule.clone()),
            TierOutcome::NoMatch => {}
        }
        if network_policy.isolated {
            return TierVerdict {
                allowed: network_policy.allowed,
                decided_by: DecidingTier::NetworkPolicy,
                rule: None,
                passed_by,
            };
        }
        match self.first_match(&self.admin.baseline_order, subject, direction, remote, dest, flow) {
            TierOutcome::Decided(rule) => decided(rule, DecidingTier::Baseline, passed_by),
            // A Baseline-tier Pass leaves the flow to the default.
            TierOutcome::Passed(_) | TierOutcome::NoMatch => TierVerdict {
                allowed: true,
                decided_by: DecidingTier::Default,
                rule: None,
                passed_by,
            },
        }
    }

    fn first_match(
        &self,
        order: &[usize],
        subject: usize,
        direction: Direction,
        remote: Endpoint,
        dest: Endpoint,
        flow: Sides,
    ) -> TierOutcome<'_> {
        let pod = &self.pods[subject];
        if pod.host_network {
            return TierOutcome::NoMatch;
        }
        let namespace_labels = &self.namespaces[&pod.namespace];
        for &p in order {
            let spec = &self.admin.policies[p];
            if !spec.subject.selects(namespace_labels, &pod.labels) {
                continue;
            }
            for rule in admin_rules(spec, direction) {
                if self.admin_rule_matches(rule, remote, dest, flow) {
                    return match rule.rule.action {
                        AdminAction::Pass => TierOutcome::Passed(rule),
                        AdminAction::Accept | AdminAction::Deny => TierOutcome::Decided(rule),
                    };
                }
            }
        }
        TierOutcome::NoMatch
    }

    fn admin_rule_matches(
        &self,
        rule: &AdminRuleSpec,
        remote: Endpoint,
        dest: Endpoint,
        Sides { flow, family }: Sides,
    ) -> bool {
        let dest_ports = match dest {
            Endpoint::Pod(i) => Some(self.pods[i].ports.as_slice()),
            Endpoint::Ip(_) => None,
        };
        if !rule.port_matches(flow.port, flow.protocol, dest_ports) {
            return false;
        }
        rule.peers.iter().any(|peer| match remote {
            Endpoint::Ip(ip) => peer.matches_ip(ip),
            Endpoint::Pod(i) => {
                let pod = &self.pods[i];
                peer.matches_pod(
                    &self.namespaces[&pod.namespace],
                    &pod.labels,
                    pod.addrs(family),
                    pod.host_network,
                )
            }
        })
    }
}

fn decided(rule: &AdminRuleSpec, tier: DecidingTier, passed_by: Option<AdminRuleRef>) -> TierVerdict {
    TierVerdict {
        allowed: rule.rule.action == AdminAction::Accept,
        decided_by: tier,
        rule: Some(rule.rule.clone()),
        passed_by,
    }
}
