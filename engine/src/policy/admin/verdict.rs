//! References to admin policies and their rules, and the verdict over every tier
//! (Admin → NetworkPolicy → Baseline → default allow) that carries them.

use std::fmt;

use serde::Serialize;

use crate::policy::types::{Direction, DirectionVerdict, FlowVerdict, Peer, Protocol};

/// Which admin policy kind an object is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
pub enum AdminKind {
    ClusterNetworkPolicy,
    AdminNetworkPolicy,
    BaselineAdminNetworkPolicy,
}

impl AdminKind {
    pub fn as_str(self) -> &'static str {
        match self {
            AdminKind::ClusterNetworkPolicy => "ClusterNetworkPolicy",
            AdminKind::AdminNetworkPolicy => "AdminNetworkPolicy",
            AdminKind::BaselineAdminNetworkPolicy => "BaselineAdminNetworkPolicy",
        }
    }

    /// The lowercase kind used in findings (`clusternetworkpolicy`).
    pub fn finding_kind(self) -> &'static str {
        match self {
            AdminKind::ClusterNetworkPolicy => "clusternetworkpolicy",
            AdminKind::AdminNetworkPolicy => "adminnetworkpolicy",
            AdminKind::BaselineAdminNetworkPolicy => "baselineadminnetworkpolicy",
        }
    }
}

impl fmt::Display for AdminKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The cluster-wide tiers; NetworkPolicy sits between them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
pub enum AdminTier {
    Admin,
    Baseline,
}

/// What a matching admin rule does. v1alpha1's `Allow` is `Accept`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
pub enum AdminAction {
    Accept,
    Deny,
    Pass,
}

/// Points at a cluster-scoped admin policy object.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct AdminPolicyRef {
    pub kind: AdminKind,
    pub name: String,
    pub tier: AdminTier,
    /// `spec.priority` (lower goes first); `None` for BaselineAdminNetworkPolicy, which has none.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub priority: Option<u16>,
}

impl fmt::Display for AdminPolicyRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.kind, self.name)
    }
}

/// Points at one rule of an admin policy: `spec.ingress[index]` or `spec.egress[index]`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct AdminRuleRef {
    pub policy: AdminPolicyRef,
    pub direction: Direction,
    pub index: usize,
    /// The rule's `name`, when it has one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    pub action: AdminAction,
}

impl AdminRuleRef {
    /// The action as the object's own API version spells it (`Allow` in v1alpha1).
    pub fn action_word(&self) -> &'static str {
        match (self.action, self.policy.kind) {
            (AdminAction::Accept, AdminKind::ClusterNetworkPolicy) => "Accept",
            (AdminAction::Accept, _) => "Allow",
            (AdminAction::Deny, _) => "Deny",
            (AdminAction::Pass, _) => "Pass",
        }
    }
}

impl fmt::Display for AdminRuleRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}[{}]", self.policy, self.direction, self.index)?;
        if let Some(name) = &self.name {
            write!(f, " {name:?}")?;
        }
        write!(f, " ({})", self.action_word())
    }
}

/// The tier that decided one side of a flow.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
pub enum DecidingTier {
    /// An Admin-tier rule accepted or denied it.
    Admin,
    /// A NetworkPolicy isolates the pod for this direction, so NetworkPolicy decided.
    NetworkPolicy,
    /// A Baseline-tier rule accepted or denied it.
    Baseline,
    /// Nothing matched: Kubernetes' default (allow).
    Default,
}

/// One side of a flow over every tier.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct TierVerdict {
    pub allowed: bool,
    pub decided_by: DecidingTier,
    /// The Admin- or Baseline-tier rule whose action decided (`decided_by` Admin or Baseline).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rule: Option<AdminRuleRef>,
    /// The Admin-tier `Pass` rule that handed the flow to the next tiers, if one did.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub passed_by: Option<AdminRuleRef>,
}

impl TierVerdict {
    /// For a side that is not a pod: no policy of any tier applies.
    pub(crate) fn not_applicable() -> Self {
        TierVerdict {
            allowed: true,
            decided_by: DecidingTier::Default,
            rule: None,
            passed_by: None,
        }
    }

    /// An Admin-tier rule decided: only a cluster admin (who owns the cluster-scoped policy) can
    /// change the outcome; no NetworkPolicy overrides it. A Baseline-tier decision is not one: a
    /// NetworkPolicy selecting the pod overrides the Baseline tier.
    pub fn needs_cluster_admin(&self) -> bool {
        self.decided_by == DecidingTier::Admin
    }
}

/// The judgment for a flow over every tier. `network_policy` is the NetworkPolicy tier alone
/// (what [`crate::policy::PolicyIndex::evaluate`] answers); `allowed`, `egress` and `ingress` are
/// the final answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TieredVerdict {
    pub network_policy: FlowVerdict,
    pub allowed: bool,
    pub egress: TierVerdict,
    pub ingress: TierVerdict,
}

impl TieredVerdict {
    /// The admin rules that decided the sides that deny (denied flow) or, for an allowed flow,
    /// the sides an admin rule accepted.
    pub fn deciding_admin_rules(&self) -> Vec<&AdminRuleRef> {
        self.sides()
            .into_iter()
            .filter(|(side, _, _)| side.allowed == self.allowed)
            .filter_map(|(side, _, _)| side.rule.as_ref())
            .collect()
    }

    /// True when an Admin-tier rule decided the answer: only a cluster admin can change it.
    pub fn needs_cluster_admin(&self) -> bool {
        self.sides()
            .into_iter()
            .any(|(side, _, _)| side.allowed == self.allowed && side.needs_cluster_admin())
    }

    /// True when a Baseline-tier rule decided the answer: a NetworkPolicy selecting the pod would
    /// override it (or a cluster admin can change the rule).
    pub fn decided_by_baseline(&self) -> bool {
        self.sides()
            .into_iter()
            .any(|(side, _, _)| side.allowed == self.allowed && side.decided_by == DecidingTier::Baseline)
    }

    fn sides(&self) -> [(&TierVerdict, &DirectionVerdict, Direction); 2] {
        [
            (&self.egress, &self.network_policy.egress, Direction::Egress),
            (&self.ingress, &self.network_policy.ingress, Direction::Ingress),
        ]
    }

    /// One sentence naming what decided, e.g. `denied: egress of x/a is denied by
    /// ClusterNetworkPolicy deny-all egress[0] (Deny) in the Admin tier; a cluster admin must change it`.
    pub fn explain(&self) -> String {
        let np = &self.network_policy;
        // Without an admin rule in play the NetworkPolicy sentence is the whole story.
        let admin_involved = [&self.egress, &self.ingress]
            .iter()
            .any(|side| side.rule.is_some() || side.passed_by.is_some());
        if !admin_involved {
            return np.explain();
        }
        let mut parts = Vec::new();
        let ends = [
            (&self.egress, &np.egress, Direction::Egress, &np.from, &np.to),
            (&self.ingress, &np.ingress, Direction::Ingress, &np.to, &np.from),
        ];
        for (side, np_side, direction, subject, remote) in ends {
            let relevant = if self.allowed {
                side.decided_by != DecidingTier::Default || side.passed_by.is_some()
            } else {
                !side.allowed
            };
            if !np_side.applies || !relevant {
                continue;
            }
            parts.push(describe(
                side,
                np_side,
                direction,
                subject,
                remote,
                np.port,
                np.protocol,
            ));
        }
        let head = if self.allowed { "allowed" } else { "denied" };
        if parts.is_empty() {
            return np.explain();
        }
        let mut sentence = format!("{head}: {}", parts.join("; "));
        if self.needs_cluster_admin() {
            sentence.push_str("; changing this needs a cluster admin (cluster-scoped admin policy)");
        } else if self.decided_by_baseline() {
            sentence.push_str(
                "; a NetworkPolicy selecting the pod would override the Baseline tier, or a cluster admin can change the rule",
            );
        }
        sentence
    }
}

fn describe(
    side: &TierVerdict,
    np_side: &DirectionVerdict,
    direction: Direction,
    subject: &Peer,
    remote: &Peer,
    port: u16,
    protocol: Protocol,
) -> String {
    let what = match direction {
        Direction::Ingress => format!("from {remote}"),
        Direction::Egress => format!("to {remote}"),
    };
    let verb = if side.allowed { "allowed" } else { "denied" };
    let passed = side
        .passed_by
        .as_ref()
        .map(|rule| format!(" after {rule} passed it on"))
        .unwrap_or_default();
    match (&side.rule, side.decided_by) {
        (Some(rule), tier) => format!(
            "{direction} of {subject} {what} on {port}/{protocol} is {verb} by {rule} in the {} tier{passed}",
            match tier {
                DecidingTier::Baseline => "Baseline",
                _ => "Admin",
            }
        ),
        (None, DecidingTier::NetworkPolicy) => {
            let isolating = join(&np_side.isolating_policies);
            if side.allowed {
                format!(
                    "{direction} of {subject} is isolated by {isolating}; allowed by {}{passed}",
                    join(&np_side.allowing_rules)
                )
            } else {
                format!(
                    "{direction} of {subject} is isolated by {isolating}; no rule allows {what} on {port}/{protocol}{passed}"
                )
            }
        }
        (None, _) => format!(
            "{direction} of {subject} {what} matches no admin or NetworkPolicy rule that decides{passed}; \
             allowed by default"
        ),
    }
}

fn join<T: fmt::Display>(items: &[T]) -> String {
    items
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}

impl fmt::Display for TieredVerdict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.explain())
    }
}

/// The `-o json` form: the NetworkPolicy verdict's fields, with `allowed` the final answer, plus
/// per side `networkPolicyAllowed`, `decidedBy`, `rule` and `passedBy`.
impl Serialize for TieredVerdict {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        #[derive(Serialize)]
        #[serde(rename_all = "camelCase")]
        struct Side<'a> {
            applies: bool,
            isolated: bool,
            isolating_policies: &'a [crate::policy::PolicyRef],
            allowing_rules: &'a [crate::policy::RuleRef],
            network_policy_allowed: bool,
            allowed: bool,
            decided_by: DecidingTier,
            #[serde(skip_serializing_if = "Option::is_none")]
            rule: Option<&'a AdminRuleRef>,
            #[serde(skip_serializing_if = "Option::is_none")]
            passed_by: Option<&'a AdminRuleRef>,
        }
        #[derive(Serialize)]
        #[serde(rename_all = "camelCase")]
        struct Json<'a> {
            from: &'a Peer,
            to: &'a Peer,
            port: u16,
            protocol: Protocol,
            allowed: bool,
            needs_cluster_admin: bool,
            egress: Side<'a>,
            ingress: Side<'a>,
            #[serde(skip_serializing_if = "<[String]>::is_empty")]
            notes: &'a [String],
        }
        fn side<'a>(tier: &'a TierVerdict, np: &'a DirectionVerdict) -> Side<'a> {
            Side {
                applies: np.applies,
                isolated: np.isolated,
                isolating_policies: &np.isolating_policies,
                allowing_rules: &np.allowing_rules,
                network_policy_allowed: np.allowed,
                allowed: tier.allowed,
                decided_by: tier.decided_by,
                rule: tier.rule.as_ref(),
                passed_by: tier.passed_by.as_ref(),
            }
        }
        let np = &self.network_policy;
        Json {
            from: &np.from,
            to: &np.to,
            port: np.port,
            protocol: np.protocol,
            allowed: self.allowed,
            needs_cluster_admin: self.needs_cluster_admin(),
            egress: side(&self.egress, &np.egress),
            ingress: side(&self.ingress, &np.ingress),
            notes: &np.notes,
        }
        .serialize(serializer)
    }
}
