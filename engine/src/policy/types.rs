//! Values the evaluator takes and gives: flows, verdicts, references, findings.

use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;

use serde::{Serialize, Serializer};

pub use crate::cluster::Protocol;

/// One end of a flow: a pod by namespace and name, or an address that is not a pod.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Peer {
    Pod { namespace: String, name: String },
    Ip(IpAddr),
}

impl Peer {
    pub fn pod(namespace: impl Into<String>, name: impl Into<String>) -> Self {
        Peer::Pod {
            namespace: namespace.into(),
            name: name.into(),
        }
    }
}

impl fmt::Display for Peer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Peer::Pod { namespace, name } => write!(f, "{namespace}/{name}"),
            Peer::Ip(ip) => write!(f, "{ip}"),
        }
    }
}

impl Serialize for Peer {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid peer {input:?}: expected NAMESPACE/POD or an IP address")]
pub struct PeerParseError {
    pub input: String,
}

impl FromStr for Peer {
    type Err = PeerParseError;

    /// `NAMESPACE/POD` or an IPv4/IPv6 address.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if let Ok(ip) = s.parse::<IpAddr>() {
            return Ok(Peer::Ip(ip));
        }
        let err = || PeerParseError { input: s.to_string() };
        let (namespace, name) = s.split_once('/').ok_or_else(err)?;
        if namespace.is_empty() || name.is_empty() || name.contains('/') {
            return Err(err());
        }
        Ok(Peer::pod(namespace, name))
    }
}

/// An address family, as Kubernetes spells it in `ipFamilies`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub enum IpFamily {
    #[serde(rename = "IPv4")]
    V4,
    #[serde(rename = "IPv6")]
    V6,
}

impl IpFamily {
    pub fn of(ip: IpAddr) -> IpFamily {
        match ip {
            IpAddr::V4(_) => IpFamily::V4,
            IpAddr::V6(_) => IpFamily::V6,
        }
    }

    pub fn label(self) -> &'static str {
        match self {
            IpFamily::V4 => "IPv4",
            IpFamily::V6 => "IPv6",
        }
    }

    pub fn other(self) -> IpFamily {
        match self {
            IpFamily::V4 => IpFamily::V6,
            IpFamily::V6 => IpFamily::V4,
        }
    }
}

/// A concrete flow: `from` connects to `to` on `port`/`protocol`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
pub struct Flow {
    pub from: Peer,
    pub to: Peer,
    pub port: u16,
    pub protocol: Protocol,
}

/// Which way a policy rule looks: `Ingress` rules admit sources, `Egress` rules admit destinations.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
pub enum Direction {
    Ingress,
    Egress,
}

impl Direction {
    pub fn as_str(self) -> &'static str {
        match self {
            Direction::Ingress => "ingress",
            Direction::Egress => "egress",
        }
    }
}

impl fmt::Display for Direction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Points at a NetworkPolicy object.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PolicyRef {
    pub namespace: String,
    pub name: String,
}

impl fmt::Display for PolicyRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.namespace, self.name)
    }
}

/// Points at one rule of a NetworkPolicy: `spec.ingress[index]` or `spec.egress[index]`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RuleRef {
    pub namespace: String,
    pub name: String,
    pub direction: Direction,
    pub index: usize,
}

impl RuleRef {
    pub fn policy(&self) -> PolicyRef {
        PolicyRef {
            namespace: self.namespace.clone(),
            name: self.name.clone(),
        }
    }
}

impl fmt::Display for RuleRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}/{} {}[{}]",
            self.namespace, self.name, self.direction, self.index
        )
    }
}

/// The judgment for one side of a flow: egress of the source or ingress of the destination.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct DirectionVerdict {
    /// False when that side is not a pod (an IP address outside the pod network): no policy applies.
    pub applies: bool,
    /// At least one policy selects the pod for this direction.
    pub isolated: bool,
    pub isolating_policies: Vec<PolicyRef>,
    /// Every rule of the isolating policies that admits the flow.
    pub allowing_rules: Vec<RuleRef>,
    /// Rules that would admit the flow but for an ipBlock `except` holding the remote address.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub excepted_by: Vec<ExceptedBy>,
    pub allowed: bool,
}

impl DirectionVerdict {
    pub(crate) fn not_applicable() -> Self {
        DirectionVerdict {
            applies: false,
            isolated: false,
            isolating_policies: Vec::new(),
            allowing_rules: Vec::new(),
            excepted_by: Vec::new(),
            allowed: true,
        }
    }
}

/// A rule whose ipBlock holds the remote address in its `cidr` and carves it out again in an
/// `except`, on a port the rule admits: the reason a policy that seems to allow everything
/// denies this address.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ExceptedBy {
    pub rule: RuleRef,
    pub cidr: String,
    pub except: String,
}

impl fmt::Display for ExceptedBy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}'s ipBlock {} excepts {}", self.rule, self.cidr, self.except)
    }
}

/// The judgment for a flow: allowed when the source's egress and the destination's ingress both allow it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct FlowVerdict {
    pub from: Peer,
    pub to: Peer,
    pub port: u16,
    pub protocol: Protocol,
    /// The address family of the packets decided (an ipBlock admits only its own family's
    /// addresses); `None` when no end of the flow has an address.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub family: Option<IpFamily>,
    pub allowed: bool,
    pub egress: DirectionVerdict,
    pub ingress: DirectionVerdict,
    /// Remarks that qualify the verdict (for example loopback traffic), empty in the usual case.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub notes: Vec<String>,
}

impl FlowVerdict {
    /// One sentence: what was decided and by which policies, e.g.
    /// `denied: ingress of shop/payments is isolated by shop/default-deny; no rule allows shop/checkout on 8080/TCP`.
    pub fn explain(&self) -> String {
        let mut parts = Vec::new();
        let sides = [
            (&self.egress, Direction::Egress, &self.from, &self.to),
            (&self.ingress, Direction::Ingress, &self.to, &self.from),
        ];
        for (verdict, direction, subject, remote) in sides {
            // A denied flow names the side(s) that deny; an allowed one names the isolating policies.
            let relevant = if self.allowed {
                verdict.isolated
            } else {
                !verdict.allowed
            };
            if !verdict.applies || !relevant {
                continue;
            }
            parts.push(describe_side(
                verdict,
                direction,
                subject,
                remote,
                self.port,
                self.protocol,
            ));
        }
        let head = if self.allowed { "allowed" } else { "denied" };
        if parts.is_empty() {
            // Only pod ends can be isolated; an address outside the pod network is not mentioned.
            let pods: Vec<String> = [
                (&self.egress, &self.from, Direction::Egress),
                (&self.ingress, &self.to, Direction::Ingress),
            ]
            .into_iter()
            .filter(|(verdict, _, _)| verdict.applies)
            .map(|(_, end, direction)| format!("{end} ({direction})"))
            .collect();
            if pods.is_empty() {
                return format!("{head}: neither end is a pod, so NetworkPolicy does not apply");
            }
            return format!("{head}: no NetworkPolicy isolates {}", pods.join(" or "));
        }
        format!("{head}: {}", parts.join("; "))
    }
}

fn describe_side(
    verdict: &DirectionVerdict,
    direction: Direction,
    subject: &Peer,
    remote: &Peer,
    port: u16,
    protocol: Protocol,
) -> String {
    // Only isolated sides are described (see `explain`).
    let isolating = join(&verdict.isolating_policies);
    if verdict.allowed {
        format!(
            "{direction} of {subject} is isolated by {isolating}; allowed by {}",
            join(&verdict.allowing_rules)
        )
    } else {
        let what = match direction {
            Direction::Ingress => format!("from {remote}"),
            Direction::Egress => format!("to {remote}"),
        };
        let excepted = verdict
            .excepted_by
            .first()
            .map(|e| format!(" ({e})"))
            .unwrap_or_default();
        format!(
            "{direction} of {subject} is isolated by {isolating}; no rule allows {what} on {port}/{protocol}{excepted}"
        )
    }
}

fn join<T: fmt::Display>(items: &[T]) -> String {
    items
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}

impl fmt::Display for FlowVerdict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.explain())
    }
}

/// An input object the evaluator could not use (skipped), or had to complete with an assumption.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Finding {
    /// Lowercase Kubernetes kind: `networkpolicy`, `pod`, `namespace`.
    pub kind: String,
    pub namespace: Option<String>,
    pub name: String,
    pub message: String,
}

impl fmt::Display for Finding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.namespace {
            Some(namespace) => write!(f, "{} {namespace}/{}: {}", self.kind, self.name, self.message),
            None => write!(f, "{} {}: {}", self.kind, self.name, self.message),
        }
    }
}

/// Why a flow could not be evaluated at all (as opposed to being denied).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EvalError {
    #[error("pod {namespace}/{name} not found in the input")]
    UnknownPod { namespace: String, name: String },
    #[error("port 0 is not a valid port (expected 1-65535)")]
    PortZero,
    #[error("namespace {0} not found in the input")]
    UnknownNamespace(String),
}

/// A finding about one object.
pub(crate) fn finding(kind: &str, namespace: Option<&str>, name: &str, message: &str) -> Finding {
    Finding {
        kind: kind.to_string(),
        namespace: namespace.map(str::to_string),
        name: name.to_string(),
        message: message.to_string(),
    }
}
