//! The `dns` layer's findings and their wording.

use std::fmt;
use std::net::IpAddr;

use netdiag_proto::DnsOutcome;

use crate::check::evidence::{DeniedSide, Destination};
use crate::check::judge::describe::{describe_dns, fmt_us, ordinal};
use crate::check::prose::NonEmpty;
use crate::check::report::Code;
use crate::cluster::{NamespacedName, ToolFailure};

/// Which search candidate answered, how fast, and through which server.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Via {
    /// 0 for the first candidate.
    pub position: usize,
    pub candidate: String,
    pub rtt_us: u64,
    pub server: IpAddr,
    /// The CNAMEs the answer led through (an ExternalName Service's host), in order.
    pub cnames: Vec<String>,
}

/// The sides of NetworkPolicy that deny the pod's DNS queries, one per distinct explanation.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct DnsDenials(pub Vec<DeniedSide>);

impl fmt::Display for DnsDenials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let reasons: Vec<String> = self.0.iter().map(ToString::to_string).collect();
        f.write_str(&reasons.join("; "))
    }
}

#[derive(Debug, Clone, PartialEq)]
pub(crate) enum DnsFinding {
    /// A pod or address target: nothing to resolve.
    NotApplicable {
        destination: Destination,
    },
    ProbeFailed {
        name: String,
        reason: ToolFailure,
    },
    Resolved {
        name: String,
        addresses: Vec<IpAddr>,
        via: Option<Via>,
    },
    WrongAddress {
        name: String,
        addresses: Vec<IpAddr>,
        expected: Vec<IpAddr>,
    },
    ShortNameAcrossNamespaces {
        name: String,
        outcome: DnsOutcome,
        namespace: String,
        services: NonEmpty<NamespacedName>,
    },
    NoSuchService {
        name: String,
        outcome: DnsOutcome,
        service: NamespacedName,
        did_you_mean: Option<String>,
    },
    NameNotFound {
        name: String,
        outcome: DnsOutcome,
    },
    /// `existing`: the Service the name means, when NXDOMAIN came for one that exists.
    ResolverOffCluster {
        name: String,
        outcome: DnsOutcome,
        existing: Option<NamespacedName>,
        dns_service_ip: IpAddr,
    },
    SearchListIncomplete {
        name: String,
        outcome: DnsOutcome,
        service: NamespacedName,
        fqdn: String,
        search: Option<NonEmpty<String>>,
    },
    ClusterZoneNotServed {
        outcome: DnsOutcome,
        fqdn: String,
        service: NamespacedName,
    },
    BlockedByPolicy {
        name: String,
        outcome: DnsOutcome,
        denials: DnsDenials,
    },
    /// The lookup failed; `from` is the source pod, said when nothing narrower is known.
    Failed {
        name: String,
        outcome: DnsOutcome,
        from: NamespacedName,
    },
    NoReadyPods {
        name: String,
        outcome: DnsOutcome,
    },
    PolicyNotEvaluated {
        name: String,
        outcome: DnsOutcome,
    },
    Servfail {
        name: String,
    },
    Refused {
        name: String,
    },
    ServiceIpNotProxied {
        name: String,
        outcome: DnsOutcome,
    },
    ServerDown {
        name: String,
        outcome: DnsOutcome,
    },
    /// A name outside the cluster that the cluster DNS answered SERVFAIL or REFUSED for while
    /// its pods answer: what it forwards such names to fails, or it forwards them nowhere.
    UpstreamFailed {
        name: String,
        outcome: DnsOutcome,
    },
    /// The pod asks only a NodeLocal DNSCache at `cache`, which failed, while the DNS pods answer.
    NodeLocalCacheDown {
        name: String,
        outcome: DnsOutcome,
        cache: IpAddr,
        /// The source's node, where that cache runs.
        node: Option<String>,
    },
    /// The answer came truncated over UDP and the retry over TCP to `server` failed.
    TcpFallbackFailed {
        name: String,
        server: std::net::SocketAddr,
        outcome: DnsOutcome,
    },
    /// Some of the `servers` ready DNS pods fail the query asked of them directly, while the
    /// others answer: the lookups the kube-dns Service sends to them fail, whichever one this
    /// lookup reached (`outcome`: how it went).
    SomeServersFail {
        name: String,
        outcome: DnsOutcome,
        failing: NonEmpty<ServerFailure>,
        servers: usize,
    },
}

/// One DNS pod that failed the query asked of it directly.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct ServerFailure {
    /// The pod's key, or its address.
    pub server: String,
    pub ip: IpAddr,
    pub outcome: DnsOutcome,
}

impl fmt::Display for ServerFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} ({}): {}",
            self.server,
            self.ip,
            describe_dns(&self.outcome)
        )
    }
}

impl DnsFinding {
    pub fn code(&self) -> Code {
        match self {
            DnsFinding::NotApplicable { .. } => Code::DnsNotApplicable,
            DnsFinding::ProbeFailed { .. } => Code::DnsProbeFailed,
            DnsFinding::Resolved { .. } => Code::DnsResolved,
            DnsFinding::WrongAddress { .. } => Code::DnsWrongAddress,
            DnsFinding::ShortNameAcrossNamespaces { .. } => Code::DnsShortNameAcrossNamespaces,
            DnsFinding::NoSuchService { .. } => Code::DnsNoSuchService,
            DnsFinding::NameNotFound { .. } => Code::DnsNameNotFound,
            DnsFinding::ResolverOffCluster { .. } => Code::DnsResolverOffCluster,
            DnsFinding::SearchListIncomplete { .. } => Code::DnsSearchListIncomplete,
            DnsFinding::ClusterZoneNotServed { .. } => Code::DnsClusterZoneNotServed,
            DnsFinding::BlockedByPolicy { .. } => Code::DnsBlockedByPolicy,
            DnsFinding::Failed { .. } => Code::DnsFailed,
            DnsFinding::NoReadyPods { .. } => Code::DnsNoReadyPods,
            DnsFinding::PolicyNotEvaluated { .. } => Code::DnsPolicyNotEvaluated,
            DnsFinding::Servfail { .. } => Code::DnsServfail,
            DnsFinding::Refused { .. } => Code::DnsRefused,
            DnsFinding::ServiceIpNotProxied { .. } => Code::DnsServiceIpNotProxied,
            DnsFinding::ServerDown { .. } => Code::DnsServerDown,
            DnsFinding::SomeServersFail { .. } => Code::DnsSomeServersFail,
            DnsFinding::TcpFallbackFailed { .. } => Code::DnsTcpFallbackFailed,
            DnsFinding::NodeLocalCacheDown { .. } => Code::DnsNodeLocalCacheDown,
            DnsFinding::UpstreamFailed { .. } => Code::DnsUpstreamFailed,
        }
    }
}

fn addresses(list: &[IpAddr]) -> String {
    list.iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}

impl fmt::Display for DnsFinding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DnsFinding::NotApplicable {
                destination: Destination::Pod,
            } => f.write_str("not applicable: a pod target is reached at its IP, no name to resolve"),
            DnsFinding::NotApplicable { .. } => {
                f.write_str("not applicable: the target is an address, no name to resolve")
            }
            DnsFinding::ProbeFailed { name, reason } => {
                write!(f, "could not resolve {name} as the pod: {reason}")
            }
            DnsFinding::Resolved {
                name,
                addresses: list,
                via,
            } => {
                write!(f, "{name} → ")?;
                for cname in via.iter().flat_map(|v| &v.cnames) {
                    write!(f, "CNAME {cname} → ")?;
                }
                write!(f, "{}", addresses(list))?;
                match via {
                    Some(v) => write!(
                        f,
                        " ({} search candidate {}, {}, via {})",
                        ordinal(v.position + 1),
                        v.candidate,
                        fmt_us(v.rtt_us),
                        v.server
                    ),
                    None => Ok(()),
                }
            }
            DnsFinding::WrongAddress {
                name,
                addresses: list,
                expected,
            } => write!(
                f,
                "{name} resolves to {}, but the Service's address is {}",
                addresses(list),
                addresses(expected)
            ),
            DnsFinding::ShortNameAcrossNamespaces {
                name,
                outcome,
                namespace,
                services,
            } => {
                let which = if services.is_single() {
                    format!("the Service is {}", services.first())
                } else {
                    format!("Services of that name: {}", services.joined())
                };
                write!(
                    f,
                    "{name} is {} from namespace {namespace}: short name used across namespaces ({which})",
                    describe_dns(outcome)
                )
            }
            DnsFinding::NoSuchService {
                name,
                outcome,
                service,
                did_you_mean,
            } => {
                let (what, ns, svc) = (describe_dns(outcome), &service.namespace, &service.name);
                match did_you_mean {
                    Some(close) => write!(
                        f,
                        "{name} is {what}: no Service {svc} in namespace {ns} (did you mean {close}?)"
                    ),
                    None => write!(f, "{name} is {what}: no Service {svc} in namespace {ns}"),
                }
            }
            DnsFinding::NameNotFound { name, outcome } => {
                write!(
                    f,
                    "{name} is {} for every search candidate",
                    describe_dns(outcome)
                )
            }
            DnsFinding::ResolverOffCluster {
                name,
                outcome,
                existing,
                dns_service_ip,
            } => {
                let what = describe_dns(outcome);
                match existing {
                    Some(svc) => write!(f, "{name} is {what} although Service {svc} exists")?,
                    None => write!(f, "{name} {what}")?,
                }
                write!(
                    f,
                    ": the pod's resolv.conf does not use the cluster DNS Service {dns_service_ip}"
                )
            }
            DnsFinding::SearchListIncomplete {
                name,
                outcome,
                service,
                fqdn,
                search,
            } => {
                let search = match search {
                    Some(list) => format!(
                        "the pod's search list ({}) does not complete the name",
                        list.spaced()
                    ),
                    None => "the pod's resolv.conf has no search list to complete the name".into(),
                };
                write!(
                    f,
                    "{name} is {} although Service {service} exists: no query asked for {fqdn}; {search}",
                    describe_dns(outcome)
                )
            }
            DnsFinding::ClusterZoneNotServed {
                outcome,
                fqdn,
                service,
            } => write!(
                f,
                "cluster DNS answers {} for {fqdn} although Service {service} exists: the DNS server does not serve the cluster zone (CoreDNS kubernetes plugin or its RBAC) or is stale",
                describe_dns(outcome)
            ),
            DnsFinding::BlockedByPolicy {
                name,
                outcome,
                denials,
            } => write!(
                f,
                "{name} {}: queries to cluster DNS are blocked by NetworkPolicy ({denials}); judged at network-policy",
                describe_dns(outcome)
            ),
            DnsFinding::Failed { name, outcome, from } => {
                write!(f, "{name} {} from {from}", describe_dns(outcome))
            }
            DnsFinding::NoReadyPods { name, outcome } => write!(
                f,
                "{name} {}: the cluster DNS Service kube-dns has no ready endpoints (DNS pods down)",
                describe_dns(outcome)
            ),
            DnsFinding::PolicyNotEvaluated { name, outcome } => write!(
                f,
                "{name} {} and NetworkPolicy for egress to cluster DNS could not be evaluated, so a policy drop cannot be ruled out",
                describe_dns(outcome)
            ),
            DnsFinding::Servfail { name } => write!(
                f,
                "{name}: the DNS server answers SERVFAIL (server failing: upstream, RBAC or config)"
            ),
            DnsFinding::Refused { name } => write!(
                f,
                "{name}: the DNS server answers REFUSED (it declines to serve the name: server config or ACL)"
            ),
            DnsFinding::ServiceIpNotProxied { name, outcome } => write!(
                f,
                "{name} {} via the kube-dns Service IP, but the DNS pods answer directly: the DNS Service IP is not proxied",
                describe_dns(outcome)
            ),
            DnsFinding::ServerDown { name, outcome } => write!(
                f,
                "{name} {}: the DNS pods do not answer (DNS server down)",
                describe_dns(outcome)
            ),
            DnsFinding::UpstreamFailed {
                name,
                outcome: DnsOutcome::Refused,
            } => write!(
                f,
                "{name}, a name outside the cluster, is REFUSED by the cluster DNS: it serves only the cluster's \
                 zones and forwards such names nowhere (CoreDNS without a forward upstream)"
            ),
            DnsFinding::UpstreamFailed {
                name,
                outcome: DnsOutcome::Timeout,
            } => write!(
                f,
                "{name}, a name outside the cluster, times out at the cluster DNS, which answers the cluster's \
                 names in the same lookup: the upstream resolvers it forwards to do not answer (CoreDNS forward)"
            ),
            DnsFinding::UpstreamFailed { name, outcome } => write!(
                f,
                "{name}, a name outside the cluster: the cluster DNS answers {} — the upstream resolvers it \
                 forwards to fail or cannot be reached (CoreDNS forward)",
                describe_dns(outcome)
            ),
            DnsFinding::NodeLocalCacheDown {
                name,
                outcome,
                cache,
                node,
            } => write!(
                f,
                "{name} fails via the NodeLocal DNSCache at {cache}{} ({}), while the DNS pods answer directly: \
                 the node-local cache is down",
                node.as_deref().map(|n| format!(" on {n}")).unwrap_or_default(),
                describe_dns(outcome)
            ),
            DnsFinding::TcpFallbackFailed {
                name,
                server,
                outcome,
            } => write!(
                f,
                "{name}: the answer is too large for UDP (truncated) and the retry over TCP to {server} {}: \
                 TCP/53 to cluster DNS is blocked (a firewall, or NetworkPolicy that allows only UDP/53)",
                describe_dns(outcome)
            ),
            DnsFinding::SomeServersFail {
                name,
                outcome,
                failing,
                servers,
            } => {
                let n = failing.as_slice().len();
                let fail = if n == 1 { "fails" } else { "fail" };
                write!(
                    f,
                    "{n} of {servers} DNS pods {fail} when asked directly: {}; the lookups the kube-dns Service sends there fail \
                     (about {n} in {servers}), so {name} fails now and then (this time: {})",
                    failing.joined(),
                    describe_dns(outcome)
                )
            }
        }
    }
}
