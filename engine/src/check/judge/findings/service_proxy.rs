//! The `service-proxy` layer's findings and their wording: the ClusterIP against its endpoints,
//! and what the source node programmed for it.

use std::fmt;
use std::net::{IpAddr, SocketAddr};

use ipnet::IpNet;
use netdiag_proto::{TcpOutcome, Transport, UdpOutcome};

use crate::check::evidence::{VipKind, fmt_ip};
use crate::check::judge::describe::{describe_tcp, describe_udp};
use crate::check::prose::NonEmpty;
use crate::check::report::Code;
use crate::cluster::ToolFailure;

/// A Service's virtual IP and port, over the check's transport.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Vip {
    pub ip: IpAddr,
    pub port: u16,
    pub transport: Transport,
    pub kind: VipKind,
}

impl Vip {
    /// `10.96.12.7:80/TCP`: the protocol said even for TCP, as a rule matches it.
    pub fn with_protocol(self) -> String {
        format!("{}:{}/{}", fmt_ip(self.ip), self.port, protocol(self.transport))
    }

    /// `TCP` or `UDP`.
    pub fn transport_name(self) -> &'static str {
        protocol(self.transport)
    }
}

/// `10.96.12.7:80`, or `10.96.12.7:53/UDP` (TCP goes without saying); in the alternate form
/// named by its kind (`ClusterIP 10.96.12.7:80`, `node port 172.18.0.3:30080`).
impl fmt::Display for Vip {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if f.alternate() {
            write!(f, "{} ", self.kind.as_str())?;
        }
        match self.transport {
            Transport::Tcp => write!(f, "{}:{}", fmt_ip(self.ip), self.port),
            Transport::Udp => f.write_str(&self.with_protocol()),
        }
    }
}

fn protocol(transport: Transport) -> &'static str {
    match transport {
        Transport::Tcp => "TCP",
        Transport::Udp => "UDP",
    }
}

/// What the probe to the ClusterIP met.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum VipOutcome {
    Tcp(TcpOutcome),
    Udp(UdpOutcome),
}

impl fmt::Display for VipOutcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            VipOutcome::Tcp(o) => f.write_str(&describe_tcp(o)),
            VipOutcome::Udp(o) => f.write_str(&describe_udp(o)),
        }
    }
}

/// Why there is no virtual IP to judge.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum NoVip {
    Headless,
    /// A Service without a ClusterIP.
    NoClusterIp,
    /// A pod or address target.
    NotAService,
}

/// How the ClusterIP's answer matches its endpoints' (the layer passes on each).
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Alike {
    /// Every endpoint answers as the VIP did.
    All,
    /// The VIP is refused, as every endpoint is (over TCP).
    AllRefused,
    /// `like` of `total` endpoints behave as the VIP did (over TCP), behind `node`'s rules.
    Some { like: usize, total: usize, node: String },
    /// `answered` of `total` endpoints answer the datagram, as the VIP did.
    Answered { answered: usize, total: usize },
    /// The VIP refuses or stays silent, as the `unbound` of `total` endpoints with nothing bound do.
    Unbound { unbound: usize, total: usize },
}

/// What the source node's Service rules do with the VIP.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Programmed {
    NoRule,
    /// A REJECT, as kube-proxy programs for a Service without endpoints.
    Rejects,
    /// A DROP, as kube-proxy programs for a Service with `internalTrafficPolicy: Local` and no
    /// endpoint on the node.
    Drops,
    TranslatesTo(Vec<SocketAddr>),
}

/// The source node's Service rules for the VIP, beside the slice's ready endpoints.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct RulesReading {
    pub node: String,
    pub vip: Vip,
    pub programmed: Programmed,
    /// Ready endpoints in the EndpointSlices.
    pub ready: usize,
}

impl fmt::Display for RulesReading {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (node, vip) = (&self.node, self.vip.with_protocol());
        let ready = format!("{} ready endpoints in the slice", self.ready);
        match &self.programmed {
            Programmed::NoRule => write!(f, "{node} has no rule for {vip} ({ready})"),
            Programmed::Drops => write!(
                f,
                "{node} drops {vip} as a Service with no endpoint on {node} under internalTrafficPolicy: Local ({ready})"
            ),
            Programmed::Rejects => {
                write!(f, "{node} rejects {vip} as a Service without endpoints ({ready})")
            }
            Programmed::TranslatesTo(to) => {
                let to = NonEmpty::from_vec(to.iter().map(|a| addr(*a)).collect())
                    .map_or("no endpoint".into(), |to| to.joined());
                write!(f, "{node} translates {vip} to {to} ({ready})")
            }
        }
    }
}

fn addr(a: SocketAddr) -> String {
    format!("{}:{}", fmt_ip(a.ip()), a.port())
}

#[derive(Debug, Clone, PartialEq)]
pub(crate) enum ServiceProxyFinding {
    NotApplicable(NoVip),
    /// Another node's node port under `externalTrafficPolicy: Local`: `entered` sends a pod's
    /// connection on to any endpoint without masquerading it, and those on other nodes
    /// (`elsewhere`) answer the pod directly, past `entered`'s translation, so the answer is
    /// lost. `outcome`: what this check's connection met.
    LocalNotMasqueraded {
        vip: Vip,
        entered: String,
        elsewhere: NonEmpty<String>,
        outcome: VipOutcome,
    },
    /// A LoadBalancer address whose `loadBalancerSourceRanges` leave out `source`: kube-proxy on
    /// `node` drops its connections. `outcome`: what this check's connection met.
    SourceRangeExcluded {
        vip: Vip,
        node: String,
        source: IpAddr,
        ranges: NonEmpty<IpNet>,
        outcome: VipOutcome,
    },
    /// A node port that pods reach fails from `from`'s own address: clients outside the pod
    /// network are not let in on `entered`. `no_local_endpoint`: the Service's
    /// `externalTrafficPolicy` is `Local` and `entered` runs none of its ready endpoints.
    ClosedOutside {
        vip: Vip,
        entered: String,
        from: String,
        outcome: TcpOutcome,
        no_local_endpoint: bool,
    },
    /// The VIP probe did not run (`reason`, when one is known).
    NotProbed {
        vip: Vip,
        reason: Option<ToolFailure>,
    },
    ProbeError {
        vip: Vip,
        detail: String,
    },
    /// The VIP behaves as its endpoints do: the rules translate to them.
    AsEndpoints {
        vip: Vip,
        outcome: VipOutcome,
        alike: Alike,
    },
    /// The VIP is refused while `answered` endpoints answer: the rules on `node` act as if the
    /// Service had none. `rules`: the node's rules, when they explain it.
    RefusedAsEmpty {
        vip: Vip,
        node: String,
        answered: usize,
        rules: Option<RulesReading>,
    },
    /// The VIP drops what `answered` endpoints answer: the rules on `node` are missing.
    RulesMissing {
        vip: Vip,
        outcome: VipOutcome,
        node: String,
        answered: usize,
        rules: Option<RulesReading>,
    },
    /// No endpoint answered as the VIP did, nor otherwise: nothing tells the rules at fault.
    NothingToCompare {
        vip: Vip,
        outcome: VipOutcome,
    },
    /// `node` translates the VIP to addresses that are no longer endpoints.
    StaleRules {
        node: String,
        vip: Vip,
        stale: NonEmpty<SocketAddr>,
    },
}

impl ServiceProxyFinding {
    pub fn code(&self) -> Code {
        match self {
            ServiceProxyFinding::NotApplicable(_) => Code::ServiceProxyNotApplicable,
            ServiceProxyFinding::NotProbed { .. } | ServiceProxyFinding::ProbeError { .. } => {
                Code::ServiceProxyNotProbed
            }
            ServiceProxyFinding::AsEndpoints { .. } => Code::ServiceProxyAsEndpoints,
            ServiceProxyFinding::RefusedAsEmpty { .. } => Code::ServiceProxyRefusedAsEmpty,
            ServiceProxyFinding::RulesMissing { .. } => Code::ServiceProxyRulesMissing,
            ServiceProxyFinding::NothingToCompare { .. } => Code::ServiceProxyNothingToCompare,
            ServiceProxyFinding::StaleRules { .. } => Code::ServiceProxyStaleRules,
            ServiceProxyFinding::ClosedOutside {
                no_local_endpoint: true,
                ..
            } => Code::ServiceProxyNoLocalEndpoint,
            ServiceProxyFinding::ClosedOutside { .. } => Code::ServiceProxyClosedOutside,
            ServiceProxyFinding::LocalNotMasqueraded { .. } => Code::ServiceProxyLocalNotMasqueraded,
            ServiceProxyFinding::SourceRangeExcluded { .. } => Code::ServiceProxySourceRangeExcluded,
        }
    }
}

impl fmt::Display for ServiceProxyFinding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ServiceProxyFinding::NotApplicable(why) => f.write_str(match why {
                NoVip::Headless => "not applicable: headless Service (no virtual IP)",
                NoVip::NoClusterIp => "not applicable: the Service has no ClusterIP",
                NoVip::NotAService => "not applicable: no Service virtual IP on the path",
            }),
            ServiceProxyFinding::LocalNotMasqueraded {
                vip,
                entered,
                elsewhere,
                outcome,
            } => write!(
                f,
                "{vip:#} {outcome}: under externalTrafficPolicy: Local kube-proxy on {entered} sends a pod's connection on to every endpoint without masquerading it, and {} answer{} the pod directly, past {entered}'s translation, so those connections are lost (pods reach the Service by its ClusterIP; where the pod's own node masquerades its traffic to node addresses, {entered} takes it for an outside client's and sends it to its own endpoints only)",
                elsewhere.joined(),
                if elsewhere.is_single() { "s" } else { "" }
            ),
            ServiceProxyFinding::SourceRangeExcluded {
                vip,
                node,
                source,
                ranges,
                outcome,
            } => write!(
                f,
                "{vip:#} {outcome}: the Service's loadBalancerSourceRanges ({}) leave out the source's address {}, so kube-proxy on {node} drops the connection at its load balancer firewall instead of sending it to an endpoint",
                ranges.joined(),
                fmt_ip(*source)
            ),
            ServiceProxyFinding::ClosedOutside {
                vip,
                entered,
                from,
                outcome,
                no_local_endpoint,
            } => {
                let outcome = describe_tcp(outcome);
                write!(
                    f,
                    "{vip:#} {outcome} from {from}'s own address while pods reach it: "
                )?;
                if *no_local_endpoint {
                    write!(
                        f,
                        "externalTrafficPolicy: Local and {entered} runs no ready endpoint, so kube-proxy on {entered} drops clients outside the pod network (pods get through because kube-proxy sends their traffic to every endpoint)"
                    )
                } else {
                    write!(
                        f,
                        "{entered} does not let clients outside the pod network in, though its endpoints answer pods (a firewall on {entered}, or NetworkPolicy at the endpoints that admits no address outside the pod network)"
                    )
                }
            }
            ServiceProxyFinding::NotProbed { vip, reason } => {
                write!(f, "{vip:#} was not probed")?;
                match reason {
                    Some(reason) => write!(f, ": {reason}"),
                    None => Ok(()),
                }
            }
            ServiceProxyFinding::ProbeError { vip, detail } => {
                write!(f, "{vip:#}: probe error: {detail}")
            }
            ServiceProxyFinding::AsEndpoints { vip, outcome, alike } => as_endpoints(f, vip, outcome, alike),
            ServiceProxyFinding::RefusedAsEmpty {
                vip,
                node,
                answered,
                rules,
            } => {
                match vip.transport {
                    Transport::Tcp => write!(f, "{vip:#} is refused while no endpoint refuses")?,
                    Transport::Udp => write!(
                        f,
                        "{vip:#} is refused while {answered} endpoint(s) answer the same datagram"
                    )?,
                }
                match vip.kind {
                    // Nothing answers a node port kube-proxy never opened but the node's kernel.
                    VipKind::NodePort => write!(
                        f,
                        ": kube-proxy on {node} does not translate it (no rule for the node port, or the rules of a Service without endpoints: stale)"
                    )?,
                    _ => write!(
                        f,
                        ": the Service rules on {node} act as if it had no endpoints (stale)"
                    )?,
                }
                explained(f, rules)
            }
            ServiceProxyFinding::RulesMissing {
                vip,
                outcome,
                node,
                answered,
                rules,
            } => {
                match vip.transport {
                    Transport::Tcp => write!(f, "{vip:#} {outcome} while the pod IPs answer")?,
                    Transport::Udp => write!(
                        f,
                        "{vip:#} {outcome} while {answered} pod IP(s) answer the same datagram"
                    )?,
                }
                write!(
                    f,
                    ": the Service's rules are missing on {node} (kube-proxy/dataplane)"
                )?;
                explained(f, rules)
            }
            ServiceProxyFinding::NothingToCompare { vip, outcome } => write!(
                f,
                "{vip:#} {outcome} and no endpoint answered alike to compare with"
            ),
            ServiceProxyFinding::StaleRules { node, vip, stale } => write!(
                f,
                "{node} translates {} to {} which {} no longer an endpoint: stale Service rules (kube-proxy on {node} is not syncing)",
                vip.with_protocol(),
                stale.iter().map(|a| addr(*a)).collect::<Vec<_>>().join(", "),
                if stale.is_single() { "is" } else { "are" }
            ),
        }
    }
}

/// A passing VIP, and how its endpoints answer alike.
fn as_endpoints(f: &mut fmt::Formatter<'_>, vip: &Vip, outcome: &VipOutcome, alike: &Alike) -> fmt::Result {
    match alike {
        Alike::All => write!(f, "{vip:#} {outcome}"),
        Alike::AllRefused => write!(f, "{vip:#} refused, as its endpoints do (judged at application)"),
        Alike::Some { like, total, node } => write!(
            f,
            "{vip:#} {outcome}, as {like} of its {total} endpoints do: the Service rules on {node} translate to the endpoints (each endpoint is judged at its own layer)"
        ),
        Alike::Answered { answered, total } => {
            write!(f, "{vip:#} {outcome}, as {answered} of its {total} endpoints do")
        }
        Alike::Unbound { unbound, total } => write!(
            f,
            "{vip:#} {outcome}, as the {unbound} of its {total} endpoints with nothing bound do (judged at application)"
        ),
    }
}

/// The node's rules, after a failing summary they explain.
fn explained(f: &mut fmt::Formatter<'_>, rules: &Option<RulesReading>) -> fmt::Result {
    match rules {
        Some(rules) => write!(f, ": {rules}"),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vip(transport: Transport) -> Vip {
        Vip {
            ip: "10.96.12.7".parse().unwrap(),
            port: 80,
            transport,
            kind: VipKind::ClusterIp,
        }
    }

    #[test]
    fn missing_rules_on_the_node_explain_a_dropped_vip() {
        let finding = ServiceProxyFinding::RulesMissing {
            vip: vip(Transport::Tcp),
            outcome: VipOutcome::Tcp(TcpOutcome::Timeout { after_ms: 1000 }),
            node: "node-a".into(),
            answered: 2,
            rules: Some(RulesReading {
                node: "node-a".into(),
                vip: vip(Transport::Tcp),
                programmed: Programmed::NoRule,
                ready: 2,
            }),
        };
        assert_eq!(
            finding.to_string(),
            "ClusterIP 10.96.12.7:80 timed out after 1000 ms while the pod IPs answer: the Service's \
             rules are missing on node-a (kube-proxy/dataplane): node-a has no rule for \
             10.96.12.7:80/TCP (2 ready endpoints in the slice)"
        );
    }

    #[test]
    fn stale_rules_name_each_address_that_is_no_longer_an_endpoint() {
        let finding = ServiceProxyFinding::StaleRules {
            node: "node-a".into(),
            vip: vip(Transport::Udp),
            stale: NonEmpty::new("10.244.9.9:8080".parse().unwrap()),
        };
        assert_eq!(
            finding.to_string(),
            "node-a translates 10.96.12.7:80/UDP to 10.244.9.9:8080 which is no longer an endpoint: \
             stale Service rules (kube-proxy on node-a is not syncing)"
        );
    }
}
