//! The `network-policy` layer's findings and their wording, with why one side of a flow is
//! denied (the evaluator hands the judge a [`DeniedSide`] value; it is worded here).

use std::fmt;

use netdiag_proto::Transport;

use super::{DnsDenials, NoDestination};
use crate::check::evidence::{DenialCause, DeniedSide, FlowEnd, IpFamily};
use crate::check::judge::describe::connection_share;
use crate::check::judge::outcomes::Certainty;
use crate::check::prose::NonEmpty;
use crate::check::report::Code;
use crate::cluster::enforcers::Enforcer;
use crate::cluster::{NamespacedName, ToolFailure};

impl fmt::Display for FlowEnd {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FlowEnd::To(peer) => write!(f, "to {peer}"),
            FlowEnd::From(peer) => write!(f, "from {peer}"),
        }
    }
}

/// A denied side reads as why it is denied: `shop/payments-0 is isolated by shop/default-deny;
/// no rule allows from shop/checkout on 8080/TCP`.
impl fmt::Display for DeniedSide {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let subject = &self.subject;
        let flow = format!("{} on {}/{}", self.other, self.port, self.protocol);
        match &self.cause {
            DenialCause::AdminTier(rule) => write!(
                f,
                "{subject} is denied {flow} by {rule} in the Admin tier, before any NetworkPolicy"
            ),
            DenialCause::BaselineTier(rule) => write!(
                f,
                "{subject} is denied {flow} by {rule} in the Baseline tier; no NetworkPolicy selecting it allows it"
            ),
            DenialCause::Isolated(by) => {
                write!(
                    f,
                    "{subject} is isolated by {}; no rule allows {flow}",
                    by.joined()
                )?;
                match &self.excepted_by {
                    Some(excepted) => write!(f, " ({excepted})"),
                    None => Ok(()),
                }
            }
            DenialCause::Unnamed => write!(f, "{subject} is denied {flow}"),
        }
    }
}

/// What the cluster runs to enforce NetworkPolicy ([`crate::cluster::enforcers`]).
#[derive(Debug, Clone, PartialEq)]
pub enum Enforcement {
    /// These DaemonSets are known enforcers.
    Runs(NonEmpty<Enforcer>),
    /// None of the known enforcers runs as a DaemonSet.
    NoneFound,
    /// The DaemonSets could not be read: why.
    Unknown(ToolFailure),
}

/// A flow policy denies that got through anyway: the side that denies it, and the node where
/// that side is enforced (the destination pod's for ingress, the source pod's for egress).
#[derive(Debug, Clone, PartialEq)]
pub struct Unenforced {
    pub side: Box<DeniedSide>,
    pub node: Option<String>,
}

impl Unenforced {
    /// What denies the flow, shortest first: `shop/default-deny selects shop/payments-0`.
    fn denial(&self) -> String {
        let subject = &self.side.subject;
        let direction = match self.side.other {
            FlowEnd::To(_) => "egress",
            FlowEnd::From(_) => "ingress",
        };
        match &self.side.cause {
            DenialCause::Isolated(by) if by.is_single() => {
                format!("{} selects {subject} ({direction})", by.first())
            }
            DenialCause::Isolated(by) => format!("{} select {subject} ({direction})", by.joined()),
            DenialCause::AdminTier(rule) | DenialCause::BaselineTier(rule) => {
                format!("{rule} denies {subject}'s {direction}")
            }
            DenialCause::Unnamed => format!("policy denies {subject}'s {direction}"),
        }
    }
}

/// The side that heads a denial's summary: the first denied destination's ingress, else the
/// source's egress.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum DeniedHead {
    Ingress {
        endpoint: String,
        side: Box<DeniedSide>,
    },
    Egress {
        from: NamespacedName,
        side: Box<DeniedSide>,
    },
    /// Denied with neither side named.
    Unnamed,
}

impl fmt::Display for DeniedHead {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DeniedHead::Ingress { endpoint, side } => write!(f, "ingress to {endpoint} denied: {side}"),
            DeniedHead::Egress { from, side } => write!(f, "egress from {from} denied: {side}"),
            DeniedHead::Unnamed => f.write_str("the flow is denied by NetworkPolicy"),
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub(crate) enum NetworkPolicyFinding {
    NotApplicable(NoDestination),
    /// The source's DNS queries are denied (`family`: the one address family they go over,
    /// when policy denies only that one).
    DnsDenied {
        from: NamespacedName,
        family: Option<IpFamily>,
        denials: DnsDenials,
    },
    /// The flow to `denied` of `total` destinations is denied and does not get through; over UDP
    /// with how sure the datagrams make that.
    Denied {
        head: DeniedHead,
        denied: usize,
        total: usize,
        certainty: Option<Certainty>,
    },
    /// Connections (or datagrams) fail where policy could not be evaluated.
    NotEvaluated {
        transport: Transport,
    },
    /// Policy denies `flows` flows that get through anyway; `first` names the first of them,
    /// `enforcement` what the cluster runs to enforce policy.
    NotEnforced {
        transport: Transport,
        flows: usize,
        first: Unenforced,
        enforcement: Enforcement,
    },
    Allowed {
        transport: Transport,
        from: NamespacedName,
    },
}

impl NetworkPolicyFinding {
    pub fn code(&self) -> Code {
        match self {
            NetworkPolicyFinding::NotApplicable(_) => Code::NetworkPolicyNotApplicable,
            NetworkPolicyFinding::DnsDenied { .. } => Code::NetworkPolicyDnsDenied,
            NetworkPolicyFinding::Denied { head, .. } => match head {
                DeniedHead::Ingress { .. } => Code::NetworkPolicyIngressDenied,
                DeniedHead::Egress { .. } => Code::NetworkPolicyEgressDenied,
                DeniedHead::Unnamed => Code::NetworkPolicyDenied,
            },
            NetworkPolicyFinding::NotEvaluated { .. } => Code::NetworkPolicyNotEvaluated,
            NetworkPolicyFinding::NotEnforced { .. } => Code::NetworkPolicyNotEnforced,
            NetworkPolicyFinding::Allowed { .. } => Code::NetworkPolicyAllowed,
        }
    }
}

impl fmt::Display for NetworkPolicyFinding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let tcp = |t: &Transport| *t == Transport::Tcp;
        match self {
            NetworkPolicyFinding::NotApplicable(why) => why.fmt(f),
            NetworkPolicyFinding::DnsDenied {
                from,
                family,
                denials,
            } => {
                write!(f, "egress from {from} to cluster DNS (port 53/UDP) is denied")?;
                if let Some(family) = family {
                    write!(f, " for {}", family.label())?;
                }
                write!(f, ": {denials}")
            }
            NetworkPolicyFinding::Denied {
                head,
                denied,
                total,
                certainty,
            } => {
                write!(f, "{head}")?;
                if *total > 1 {
                    write!(f, " ({denied}/{total} endpoints)")?;
                }
                f.write_str(&connection_share(*denied, *total))?;
                match certainty {
                    Some(certainty) => write!(f, " ({})", certainty.text()),
                    None => Ok(()),
                }
            }
            NetworkPolicyFinding::NotEvaluated { transport } if tcp(transport) => f.write_str(
                "connections fail and NetworkPolicy could not be evaluated, so policy cannot be ruled out",
            ),
            NetworkPolicyFinding::NotEvaluated { .. } => f.write_str(
                "datagrams get no answer and NetworkPolicy could not be evaluated, so policy cannot be ruled out",
            ),
            NetworkPolicyFinding::NotEnforced {
                transport,
                flows,
                first,
                enforcement,
            } => {
                let got_through = if tcp(transport) {
                    "the connection succeeded"
                } else {
                    "the datagram was answered"
                };
                write!(f, "{} but {got_through}: NetworkPolicy is not enforced", first.denial())?;
                match &first.node {
                    Some(node) => write!(f, " on {node}")?,
                    None => write!(f, " where {} runs", first.side.subject)?,
                }
                match enforcement {
                    Enforcement::Runs(enforcers) => write!(f, ", where {} should enforce it", enforcers.first())?,
                    Enforcement::NoneFound => f.write_str(", and no known NetworkPolicy enforcer runs in this cluster")?,
                    Enforcement::Unknown(_) => {}
                }
                if *flows > 1 {
                    write!(f, " ({flows} denied flows got through)")?;
                }
                Ok(())
            }
            NetworkPolicyFinding::Allowed { transport, from } => {
                write!(f, "egress of {from} and ingress of the destination allow the flow")?;
                if !tcp(transport) {
                    f.write_str(" (UDP)")?;
                }
                Ok(())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::check::prose::NonEmpty;
    use crate::policy::{Peer, PolicyRef, Protocol};

    fn isolated_ingress() -> DeniedSide {
        DeniedSide {
            subject: Peer::pod("shop", "payments-0"),
            other: FlowEnd::From(Peer::pod("shop", "checkout")),
            cause: DenialCause::Isolated(NonEmpty::new(PolicyRef {
                namespace: "shop".into(),
                name: "default-deny".into(),
            })),
            policies: None,
            port: 8080,
            protocol: Protocol::Tcp,
            excepted_by: None,
        }
    }

    #[test]
    fn a_denied_side_names_its_subject_the_isolating_policies_and_the_flow() {
        assert_eq!(
            isolated_ingress().to_string(),
            "shop/payments-0 is isolated by shop/default-deny; no rule allows from shop/checkout on 8080/TCP"
        );
    }

    #[test]
    fn a_udp_denial_of_some_endpoints_says_the_share_and_how_sure_it_is() {
        let finding = NetworkPolicyFinding::Denied {
            head: DeniedHead::Ingress {
                endpoint: "shop/payments-0 (10.244.1.14:5353)".into(),
                side: Box::new(DeniedSide {
                    protocol: Protocol::Udp,
                    port: 5353,
                    ..isolated_ingress()
                }),
            },
            denied: 1,
            total: 2,
            certainty: Some(Certainty::Likely),
        };
        assert_eq!(
            finding.to_string(),
            "ingress to shop/payments-0 (10.244.1.14:5353) denied: shop/payments-0 is isolated by \
             shop/default-deny; no rule allows from shop/checkout on 5353/UDP (1/2 endpoints) — about \
             1 in 2 new connections fail (likely, not proven)"
        );
        assert_eq!(finding.code(), Code::NetworkPolicyIngressDenied);
    }
}
