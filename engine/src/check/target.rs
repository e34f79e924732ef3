//! Parsing of `--from NS/POD` and `--to TARGET` (pure).

use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;
use std::time::Duration;

pub use crate::cluster::PortRef;
use crate::policy::Protocol;

/// What `--to` names, before anything is looked up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// `svc/NAME[.NS]:PORT[/PROTOCOL]`; `namespace` is `None` when the flag did not give one.
    /// `protocol` picks the Service port of that protocol when the port is served over several
    /// (as kube-dns serves 53 over UDP and TCP); without it the TCP one is checked.
    Service {
        name: String,
        namespace: Option<String>,
        port: PortRef,
        protocol: Option<Protocol>,
    },
    /// `pod/NAME[.NS]:PORT`.
    Pod {
        name: String,
        namespace: Option<String>,
        port: PortRef,
    },
    /// `HOST:PORT`: a DNS name resolved as the source pod would.
    Host { host: String, port: u16 },
    /// `IP:PORT` (IPv6 as `[::1]:80`).
    Ip { ip: IpAddr, port: u16 },
}

impl fmt::Display for Target {
    /// The target as it would be typed, with the namespace where one was given.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let ns = |n: &Option<String>| n.as_ref().map(|n| format!(".{n}")).unwrap_or_default();
        match self {
            Target::Service {
                name,
                namespace,
                port,
                protocol,
            } => {
                let protocol = protocol.map(|p| format!("/{p}")).unwrap_or_default();
                write!(f, "svc/{name}{}:{port}{protocol}", ns(namespace))
            }
            Target::Pod {
                name,
                namespace,
                port,
            } => write!(f, "pod/{name}{}:{port}", ns(namespace)),
            Target::Host { host, port } => write!(f, "{host}:{port}"),
            Target::Ip { ip, port } => write!(f, "{}:{port}", super::evidence::fmt_ip(*ip)),
        }
    }
}

/// `--from NS/POD` (or `POD`, in the namespace of `-n`/the context).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PodRef {
    pub namespace: Option<String>,
    pub name: String,
}

/// Why `--from`, `--to` or `--timeout` could not be understood; the message names the problem.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    #[error("{0}")]
    Invalid(String),
}

fn invalid<T>(msg: impl Into<String>) -> Result<T, ParseError> {
    Err(ParseError::Invalid(msg.into()))
}

/// A DNS-1123 label: lowercase alphanumerics and '-', starting and ending alphanumeric, ≤ 63.
fn is_dns_label(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 63
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !s.starts_with('-')
        && !s.ends_with('-')
}

/// A DNS-1123 subdomain (pod names may contain dots).
fn is_dns_subdomain(s: &str) -> bool {
    !s.is_empty() && s.len() <= 253 && s.split('.').all(is_dns_label)
}

fn parse_port_number(s: &str, what: &str) -> Result<u16, ParseError> {
    match s.parse::<u16>() {
        Ok(0) => invalid(format!("{what}: port 0 is not a valid port")),
        Ok(port) => Ok(port),
        Err(_) => invalid(format!("{what}: port {s:?} is not a number between 1 and 65535")),
    }
}

/// `TCP`, `UDP` or `SCTP`, in any case.
fn parse_protocol(s: &str, what: &str) -> Result<Protocol, ParseError> {
    s.parse()
        .or_else(|_| invalid(format!("{what}: protocol {s:?} is not TCP, UDP or SCTP")))
}

fn parse_port_ref(s: &str, what: &str) -> Result<PortRef, ParseError> {
    if s.is_empty() {
        return invalid(format!("{what}: the port is missing (e.g. :80 or :http)"));
    }
    if s.bytes().all(|b| b.is_ascii_digit()) {
        return parse_port_number(s, what).map(PortRef::Number);
    }
    // IANA_SVC_NAME: at most 15 characters, lowercase alphanumerics and '-', at least one letter.
    if s.len() <= 15 && is_dns_label(s) && s.bytes().any(|b| b.is_ascii_lowercase()) && !s.contains("--") {
        return Ok(PortRef::Name(s.to_string()));
    }
    invalid(format!("{what}: {s:?} is neither a port number nor a port name"))
}

/// Splits `NAME[.NS]`: the part after the last dot is the namespace.
fn split_name_namespace(s: &str, kind: &str, what: &str) -> Result<(String, Option<String>), ParseError> {
    let (name, namespace) = match s.rsplit_once('.') {
        Some((name, ns)) => (name, Some(ns)),
        None => (s, None),
    };
    if name.is_empty() {
        return invalid(format!("{what}: the {kind} name is missing"));
    }
    let name_ok = if kind == "service" {
        is_dns_label(name)
    } else {
        is_dns_subdomain(name)
    };
    if !name_ok {
        return invalid(format!("{what}: {name:?} is not a valid {kind} name"));
    }
    if let Some(ns) = namespace
        && !is_dns_label(ns)
    {
        return invalid(format!("{what}: {ns:?} is not a valid namespace name"));
    }
    Ok((name.to_string(), namespace.map(str::to_string)))
}

impl FromStr for Target {
    type Err = ParseError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let what = format!("--to {s:?}");
        if s.is_empty() {
            return invalid(
                "--to is empty; expected svc/NAME[.NS]:PORT, pod/NAME[.NS]:PORT, HOST:PORT or IP:PORT",
            );
        }
        for (prefix, kind) in [("svc/", "service"), ("service/", "service"), ("pod/", "pod")] {
            if let Some(rest) = s.strip_prefix(prefix) {
                let Some((object, port)) = rest.rsplit_once(':') else {
                    return invalid(format!("{what}: the port is missing (e.g. {prefix}NAME.NS:80)"));
                };
                let (name, namespace) = split_name_namespace(object, kind, &what)?;
                let (port, protocol) = match port.split_once('/') {
                    Some(_) if kind == "pod" => {
                        return invalid(format!(
                            "{what}: a /PROTOCOL after the port is accepted on svc/ targets only"
                        ));
                    }
                    Some((port, protocol)) => (port, Some(parse_protocol(protocol, &what)?)),
                    None => (port, None),
                };
                let port = parse_port_ref(port, &what)?;
                return Ok(if kind == "pod" {
                    Target::Pod {
                        name,
                        namespace,
                        port,
                    }
                } else {
                    Target::Service {
                        name,
                        namespace,
                        port,
                        protocol,
                    }
                });
            }
        }
        if let Some((kind, _)) = s.split_once('/') {
            return invalid(format!(
                "{what}: unknown target kind {kind:?}; expected svc/, pod/, HOST:PORT or IP:PORT"
            ));
        }
        // [v6]:port
        if let Some(rest) = s.strip_prefix('[') {
            let Some((ip, port)) = rest.split_once("]:") else {
                return invalid(format!("{what}: expected [IPV6]:PORT"));
            };
            let ip = ip
                .parse::<IpAddr>()
                .or_else(|_| invalid(format!("{what}: {ip:?} is not an IP address")))?;
            return Ok(Target::Ip {
                ip,
                port: parse_port_number(port, &what)?,
            });
        }
        if s.parse::<IpAddr>().is_ok() {
            return invalid(format!("{what}: the port is missing (e.g. {s}:80)"));
        }
        let Some((host, port)) = s.rsplit_once(':') else {
            return invalid(format!("{what}: the port is missing (e.g. {s}:80)"));
        };
        let port = parse_port_number(port, &what)?;
        if let Ok(ip) = host.parse::<IpAddr>() {
            return Ok(Target::Ip { ip, port });
        }
        let bare = host.strip_suffix('.').unwrap_or(host);
        let host_ok = !bare.is_empty()
            && bare.len() <= 253
            && bare.split('.').all(|l| {
                !l.is_empty()
                    && l.len() <= 63
                    && l.bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
            });
        if !host_ok {
            return invalid(format!("{what}: {host:?} is not a valid host name"));
        }
        Ok(Target::Host {
            host: host.to_ascii_lowercase(),
            port,
        })
    }
}

impl FromStr for PodRef {
    type Err = ParseError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let what = format!("--from {s:?}");
        let (namespace, name) = match s.split_once('/') {
            Some((ns, name)) => (Some(ns), name),
            None => (None, s),
        };
        if name.is_empty() {
            return invalid(format!("{what}: the pod name is missing; expected NAMESPACE/POD"));
        }
        if let Some(ns) = namespace
            && !is_dns_label(ns)
        {
            return invalid(format!("{what}: {ns:?} is not a valid namespace name"));
        }
        if !is_dns_subdomain(name) {
            return invalid(format!("{what}: {name:?} is not a valid pod name"));
        }
        Ok(PodRef {
            namespace: namespace.map(str::to_string),
            name: name.to_string(),
        })
    }
}

/// What kind of object `--from` names: the pod itself, or a workload one of whose pods is used.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SourceKind {
    Pod,
    Deployment,
    StatefulSet,
    DaemonSet,
    ReplicaSet,
}

impl SourceKind {
    /// The kind as kubectl's `TYPE/NAME` forms accept it (`deploy`, `deployment`, `deployments`, ...).
    pub fn from_alias(alias: &str) -> Option<Self> {
        Some(match alias.to_ascii_lowercase().as_str() {
            "po" | "pod" | "pods" => SourceKind::Pod,
            "deploy" | "deployment" | "deployments" => SourceKind::Deployment,
            "sts" | "statefulset" | "statefulsets" => SourceKind::StatefulSet,
            "ds" | "daemonset" | "daemonsets" => SourceKind::DaemonSet,
            "rs" | "replicaset" | "replicasets" => SourceKind::ReplicaSet,
            _ => return None,
        })
    }

    /// The short form kubectl prints: `deployment/checkout`.
    pub fn as_str(self) -> &'static str {
        match self {
            SourceKind::Pod => "pod",
            SourceKind::Deployment => "deployment",
            SourceKind::StatefulSet => "statefulset",
            SourceKind::DaemonSet => "daemonset",
            SourceKind::ReplicaSet => "replicaset",
        }
    }
}

/// `--from` in kubectl's forms: `POD`, `NS/POD`, `TYPE/NAME` (`pod/`, `deploy/`, `sts/`, `ds/`,
/// `rs/`) or `NS/TYPE/NAME`. A first part that is a type word is the type, never a namespace.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourceRef {
    pub kind: SourceKind,
    pub namespace: Option<String>,
    pub name: String,
}

impl fmt::Display for SourceRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(ns) = &self.namespace {
            write!(f, "{ns}/")?;
        }
        match self.kind {
            SourceKind::Pod => f.write_str(&self.name),
            kind => write!(f, "{}/{}", kind.as_str(), self.name),
        }
    }
}

impl FromStr for SourceRef {
    type Err = ParseError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let what = format!("--from {s:?}");
        let parts: Vec<&str> = s.split('/').collect();
        let (namespace, kind, name) = match parts.as_slice() {
            [name] => (None, SourceKind::Pod, *name),
            [first, name] => match SourceKind::from_alias(first) {
                Some(kind) => (None, kind, *name),
                None => (Some(*first), SourceKind::Pod, *name),
            },
            [ns, kind, name] => match SourceKind::from_alias(kind) {
                Some(kind) => (Some(*ns), kind, *name),
                None => return invalid(format!("{what}: {kind:?} is not a pod, deploy, sts, ds or rs")),
            },
            _ => return invalid(format!("{what}: expected POD, NS/POD, TYPE/NAME or NS/TYPE/NAME")),
        };
        if name.is_empty() {
            return invalid(format!(
                "{what}: the {} name is missing; expected NS/POD or TYPE/NAME",
                kind.as_str()
            ));
        }
        if let Some(ns) = namespace
            && !is_dns_label(ns)
        {
            return invalid(format!("{what}: {ns:?} is not a valid namespace name"));
        }
        if !is_dns_subdomain(name) {
            return invalid(format!("{what}: {name:?} is not a valid {} name", kind.as_str()));
        }
        Ok(SourceRef {
            kind,
            namespace: namespace.map(str::to_string),
            name: name.to_string(),
        })
    }
}

/// Parses `--timeout`: `1s`, `500ms`, `1.5s`, `2m`, or a bare number of seconds.
pub fn parse_timeout(s: &str) -> Result<Duration, ParseError> {
    parse_duration(
        s,
        "--timeout",
        Duration::from_millis(netdiag_proto::MAX_TIMEOUT_MS),
    )
}

/// Parses `--for` (how long a repeated check goes on): `30s`, `5m`; an hour at most.
pub fn parse_repeat_for(s: &str) -> Result<Duration, ParseError> {
    parse_duration(s, "--for", crate::check::repeat::MAX_DURATION)
}

/// A duration given as a number and a unit (`ms`, `s`, `m` or `h`; none is seconds), between 1ms and
/// `max`; `flag` names it in the error.
fn parse_duration(s: &str, flag: &str, max: Duration) -> Result<Duration, ParseError> {
    let what = format!("{flag} {s:?}");
    let split = s
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(s.len());
    let (number, unit) = s.split_at(split);
    let Ok(value) = number.parse::<f64>() else {
        return invalid(format!("{what}: expected a duration such as 1s or 500ms"));
    };
    let seconds = match unit {
        "" | "s" => value,
        "ms" => value / 1000.0,
        "m" => value * 60.0,
        "h" => value * 3600.0,
        _ => return invalid(format!("{what}: unknown unit {unit:?}; use ms, s, m or h")),
    };
    // Range-check before converting: a huge number must be an error, not an overflow.
    if !(0.001..=max.as_secs_f64()).contains(&seconds) {
        return invalid(format!("{what}: must be between 1ms and {}s", max.as_secs()));
    }
    Ok(Duration::from_secs_f64(seconds))
}

/// Parses `--agent-url`: `http://HOST:PORT` or `HOST:PORT` (the agent speaks plain HTTP/1.1).
pub fn parse_agent_url(s: &str) -> Result<String, ParseError> {
    let what = format!("--agent-url {s:?}");
    let rest = match s.split_once("://") {
        Some(("http", rest)) => rest,
        Some((scheme, _)) => {
            return invalid(format!(
                "{what}: scheme {scheme:?} is not supported; use http://HOST:PORT"
            ));
        }
        None => s,
    };
    let rest = rest.trim_end_matches('/');
    let Some((host, port)) = rest.rsplit_once(':') else {
        return invalid(format!("{what}: the port is missing; use http://HOST:PORT"));
    };
    if host.is_empty() || rest.contains('/') {
        return invalid(format!("{what}: expected http://HOST:PORT"));
    }
    parse_port_number(port, &what)?;
    Ok(rest.to_string())
}

#[cfg(test)]
mod tests {
    #[test]
    fn from_takes_kubectl_type_name_forms_before_a_namespace() {
        let parse = |s: &str| s.parse::<SourceRef>().unwrap();
        assert_eq!(
            parse("pod/checkout"),
            SourceRef {
                kind: SourceKind::Pod,
                namespace: None,
                name: "checkout".into()
            }
        );
        assert_eq!(parse("deploy/checkout").kind, SourceKind::Deployment);
        assert_eq!(parse("sts/db").kind, SourceKind::StatefulSet);
        assert_eq!(parse("daemonset/agent").kind, SourceKind::DaemonSet);
        let namespaced = parse("shop/checkout");
        assert_eq!(
            (namespaced.kind, namespaced.namespace.as_deref()),
            (SourceKind::Pod, Some("shop"))
        );
        let full = parse("shop/deploy/checkout");
        assert_eq!(
            (full.kind, full.namespace.as_deref(), full.name.as_str()),
            (SourceKind::Deployment, Some("shop"), "checkout")
        );
        assert_eq!(full.to_string(), "shop/deployment/checkout");
        assert!("shop/widget/x".parse::<SourceRef>().is_err());
        assert!("deploy/".parse::<SourceRef>().is_err());
    }

    use super::*;

    fn target(s: &str) -> Target {
        s.parse().unwrap_or_else(|e| panic!("{s}: {e}"))
    }

    fn error(s: &str) -> String {
        s.parse::<Target>().unwrap_err().to_string()
    }

    #[test]
    fn service_targets_take_an_optional_protocol_after_the_port() {
        assert_eq!(
            target("svc/kube-dns.kube-system:53/udp"),
            Target::Service {
                name: "kube-dns".into(),
                namespace: Some("kube-system".into()),
                port: PortRef::Number(53),
                protocol: Some(Protocol::Udp),
            }
        );
        assert_eq!(
            target("svc/kube-dns.kube-system:dns/UDP").to_string(),
            "svc/kube-dns.kube-system:dns/UDP"
        );
        assert_eq!(
            error("svc/dns:53/icmp"),
            "--to \"svc/dns:53/icmp\": protocol \"icmp\" is not TCP, UDP or SCTP"
        );
        assert_eq!(
            error("pod/dns-0:53/udp"),
            "--to \"pod/dns-0:53/udp\": a /PROTOCOL after the port is accepted on svc/ targets only"
        );
    }

    #[test]
    fn service_targets_take_an_optional_namespace_and_a_port_number_or_name() {
        assert_eq!(
            target("svc/payments.shop:80"),
            Target::Service {
                name: "payments".into(),
                namespace: Some("shop".into()),
                port: PortRef::Number(80),
                protocol: None,
            }
        );
        assert_eq!(
            target("svc/payments:http"),
            Target::Service {
                name: "payments".into(),
                namespace: None,
                port: PortRef::Name("http".into()),
                protocol: None,
            }
        );
        assert_eq!(
            target("service/payments.shop:80"),
            target("svc/payments.shop:80"),
            "service/ is an alias of svc/"
        );
    }

    #[test]
    fn pod_targets_split_the_namespace_at_the_last_dot() {
        assert_eq!(
            target("pod/payments-0.shop:8080"),
            Target::Pod {
                name: "payments-0".into(),
                namespace: Some("shop".into()),
                port: PortRef::Number(8080)
            }
        );
        assert_eq!(
            target("pod/etcd-node1.example.com.kube-system:2379"),
            Target::Pod {
                name: "etcd-node1.example.com".into(),
                namespace: Some("kube-system".into()),
                port: PortRef::Number(2379)
            },
            "a pod name with dots keeps them when the namespace is given"
        );
    }

    #[test]
    fn host_and_ip_targets_are_told_apart() {
        assert_eq!(
            target("payments.shop.svc.cluster.local:80"),
            Target::Host {
                host: "payments.shop.svc.cluster.local".into(),
                port: 80
            }
        );
        assert_eq!(
            target("10.96.0.10:53"),
            Target::Ip {
                ip: "10.96.0.10".parse().unwrap(),
                port: 53
            }
        );
        assert_eq!(
            target("[fd00::1]:443"),
            Target::Ip {
                ip: "fd00::1".parse().unwrap(),
                port: 443
            }
        );
    }

    #[test]
    fn malformed_targets_name_the_problem() {
        assert!(
            error("svc/payments.shop").contains("port is missing"),
            "{}",
            error("svc/payments.shop")
        );
        assert!(error("svc/payments.shop:0").contains("port 0"));
        assert!(error("svc/payments.shop:99999").contains("not a number between 1 and 65535"));
        assert!(error("svc/Payments:80").contains("not a valid service name"));
        assert!(error("svc/.shop:80").contains("name is missing"));
        assert!(error("deploy/payments:80").contains("unknown target kind \"deploy\""));
        assert!(error("payments").contains("port is missing"));
        assert!(error("10.0.0.1").contains("port is missing"));
        assert!(error("bad host!:80").contains("not a valid host name"));
        assert!(error("svc/payments:http_x").contains("neither a port number nor a port name"));
        assert!(error("").contains("--to is empty"));
    }

    #[test]
    fn from_accepts_namespace_slash_pod_or_a_bare_pod() {
        assert_eq!(
            "shop/checkout".parse::<PodRef>().unwrap(),
            PodRef {
                namespace: Some("shop".into()),
                name: "checkout".into()
            }
        );
        assert_eq!("checkout".parse::<PodRef>().unwrap().namespace, None);
        assert!(
            "shop/"
                .parse::<PodRef>()
                .unwrap_err()
                .to_string()
                .contains("pod name is missing")
        );
        assert!(
            "Shop/x"
                .parse::<PodRef>()
                .unwrap_err()
                .to_string()
                .contains("not a valid namespace")
        );
    }

    #[test]
    fn timeouts_accept_common_units_and_reject_nonsense() {
        assert_eq!(parse_timeout("1s").unwrap(), Duration::from_secs(1));
        assert_eq!(parse_timeout("500ms").unwrap(), Duration::from_millis(500));
        assert_eq!(parse_timeout("1.5s").unwrap(), Duration::from_millis(1500));
        assert_eq!(parse_timeout("2").unwrap(), Duration::from_secs(2));
        assert!(parse_timeout("0s").is_err());
        assert!(
            parse_timeout("1d")
                .unwrap_err()
                .to_string()
                .contains("unknown unit")
        );
        assert!(
            parse_timeout("1h")
                .unwrap_err()
                .to_string()
                .contains("between 1ms and 30s")
        );
        assert_eq!(parse_repeat_for("1h").unwrap(), Duration::from_secs(3600));
        assert!(
            parse_repeat_for("61m")
                .unwrap_err()
                .to_string()
                .contains("--for \"61m\"")
        );
        assert!(parse_timeout("fast").is_err());
        assert!(parse_timeout("31s").is_err());
        assert!(parse_timeout("99999999999999999999999999s").is_err());
        assert!(parse_timeout("0.0001s").is_err());
    }

    #[test]
    fn agent_urls_are_plain_http_host_and_port() {
        assert_eq!(
            parse_agent_url("http://127.0.0.1:9808/").unwrap(),
            "127.0.0.1:9808"
        );
        assert_eq!(parse_agent_url("localhost:9808").unwrap(), "localhost:9808");
        assert!(
            parse_agent_url("https://x:1")
                .unwrap_err()
                .to_string()
                .contains("scheme \"https\"")
        );
        assert!(
            parse_agent_url("http://x")
                .unwrap_err()
                .to_string()
                .contains("port is missing")
        );
        assert!(parse_agent_url("http://x:1/v1").is_err());
    }
}
