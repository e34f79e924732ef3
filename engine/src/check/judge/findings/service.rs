//! The `service` layer's findings and their wording.

use std::collections::BTreeSet;
use std::fmt;

use crate::check::evidence::{Destination, ServicePortFacts};
use crate::check::prose::NonEmpty;
use crate::check::report::Code;
use crate::cluster::{NamespacedName, PortRef, ToolFailure};
use crate::policy::Protocol;

/// A Service port as the sentences name it: `port 80/TCP`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ServicePort {
    pub port: u16,
    pub protocol: Protocol,
}

impl From<&ServicePortFacts> for ServicePort {
    fn from(p: &ServicePortFacts) -> Self {
        ServicePort {
            port: p.port,
            protocol: p.protocol,
        }
    }
}

impl fmt::Display for ServicePort {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "port {}/{}", self.port, self.protocol)
    }
}

#[derive(Debug, Clone, PartialEq)]
pub(crate) enum ServiceFinding {
    /// The target is a pod, or an address that belongs to no Service.
    NotApplicable {
        destination: Destination,
    },
    Unreadable {
        reason: ToolFailure,
    },
    NotFound {
        service: NamespacedName,
        did_you_mean: Option<String>,
    },
    ExternalName {
        service: NamespacedName,
        external: String,
    },
    PortNotExposed {
        service: NamespacedName,
        requested: PortRef,
        requested_protocol: Option<Protocol>,
        exposed: Vec<ServicePortFacts>,
    },
    /// The pods declare (or serve) the target port over other protocols than the Service port's.
    ProtocolMismatch {
        service: NamespacedName,
        port: ServicePort,
        target: PortRef,
        declared: BTreeSet<Protocol>,
        served: BTreeSet<Protocol>,
    },
    /// A named targetPort resolves to `numbers` on `pods` selected pods.
    NamedPortResolved {
        port: ServicePort,
        name: String,
        numbers: NonEmpty<u16>,
        pods: usize,
    },
    /// A named targetPort with no selected pod to resolve it on (the endpoints layer judges that).
    NamedPortUnresolved {
        port: ServicePort,
        name: String,
    },
    NamedPortUndeclared {
        service: NamespacedName,
        port: ServicePort,
        name: String,
        selected: usize,
    },
    NumericPortResolved {
        port: ServicePort,
        target: u16,
        pods: usize,
    },
    /// Every endpoint refuses the numeric targetPort and the pods listen on `listening` instead.
    TargetPortNotListening {
        service: NamespacedName,
        port: ServicePort,
        target: u16,
        listening: NonEmpty<u16>,
    },
}

impl ServiceFinding {
    pub fn code(&self) -> Code {
        match self {
            ServiceFinding::NotApplicable { .. } => Code::ServiceNotApplicable,
            ServiceFinding::Unreadable { .. } => Code::ServiceUnreadable,
            ServiceFinding::NotFound { .. } => Code::ServiceNotFound,
            ServiceFinding::ExternalName { .. } => Code::ServiceExternalName,
            ServiceFinding::PortNotExposed { .. } => Code::ServicePortNotExposed,
            ServiceFinding::ProtocolMismatch { .. } => Code::ServiceProtocolMismatch,
            ServiceFinding::NamedPortResolved { .. } | ServiceFinding::NumericPortResolved { .. } => {
                Code::ServicePortResolved
            }
            ServiceFinding::NamedPortUnresolved { .. } => Code::ServiceNamedPortUnresolved,
            ServiceFinding::NamedPortUndeclared { .. } => Code::ServiceNamedPortUndeclared,
            ServiceFinding::TargetPortNotListening { .. } => Code::ServiceTargetPortNotListening,
        }
    }
}

/// `1 selected pod`, `2 selected pods`.
fn selected_pods(n: usize) -> String {
    if n == 1 {
        "1 selected pod".into()
    } else {
        format!("{n} selected pods")
    }
}

fn exposed(ports: &[ServicePortFacts]) -> String {
    let ports: Vec<String> = ports
        .iter()
        .map(|p| match &p.name {
            Some(n) => format!("{}/{} ({n})", p.port, p.protocol),
            None => format!("{}/{}", p.port, p.protocol),
        })
        .collect();
    NonEmpty::from_vec(ports).map_or("no port".into(), |ports| ports.joined())
}

/// How the pods stand on the port: `declare and serve it over TCP`, `serve it over TCP only`,
/// `declare it as TCP only`.
fn mismatch_how(declared: &BTreeSet<Protocol>, served: &BTreeSet<Protocol>) -> String {
    let names = |set: &BTreeSet<Protocol>| {
        set.iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join(" and ")
    };
    match (declared.is_empty(), served.is_empty()) {
        (false, false) if declared == served => format!("declare and serve it over {}", names(served)),
        (_, false) => format!("serve it over {} only", names(served)),
        _ => format!("declare it as {} only", names(declared)),
    }
}

impl fmt::Display for ServiceFinding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ServiceFinding::NotApplicable { destination } => match destination {
                Destination::Pod => f.write_str("not applicable: the target is a pod"),
                _ => f.write_str("not applicable: the target belongs to no Service"),
            },
            ServiceFinding::Unreadable { reason } => write!(f, "could not read the Service: {reason}"),
            ServiceFinding::NotFound {
                service,
                did_you_mean,
            } => {
                write!(f, "Service {service} not found")?;
                match did_you_mean {
                    Some(name) => write!(f, " (did you mean {name}?)"),
                    None => Ok(()),
                }
            }
            ServiceFinding::ExternalName { service, external } => {
                write!(f, "{service} is an ExternalName Service for {external}")
            }
            ServiceFinding::PortNotExposed {
                service,
                requested,
                requested_protocol,
                exposed: ports,
            } => {
                write!(f, "{service} does not expose port {requested}")?;
                if let Some(p) = requested_protocol {
                    write!(f, "/{p}")?;
                }
                write!(f, "; it exposes {}", exposed(ports))
            }
            ServiceFinding::ProtocolMismatch {
                service,
                port,
                target,
                declared,
                served,
            } => write!(
                f,
                "protocol mismatch: {service} {port} → targetPort {target}, but the selected pods {}",
                mismatch_how(declared, served)
            ),
            ServiceFinding::NamedPortResolved {
                port,
                name,
                numbers,
                pods,
            } => write!(
                f,
                "{port} → targetPort {name} ({}) on {}",
                numbers.joined(),
                selected_pods(*pods)
            ),
            ServiceFinding::NamedPortUnresolved { port, name } => {
                write!(f, "{port} → targetPort {name} (no selected pod to resolve it on)")
            }
            ServiceFinding::NamedPortUndeclared {
                service,
                port,
                name,
                selected,
            } => write!(
                f,
                "{service} {port} targets the port named {name}, which none of the {selected} selected pods declares"
            ),
            ServiceFinding::NumericPortResolved { port, target, pods } => {
                write!(f, "{port} → targetPort {target} on {}", selected_pods(*pods))
            }
            ServiceFinding::TargetPortNotListening {
                service,
                port,
                target,
                listening,
            } => write!(
                f,
                "{service} {port} → targetPort {target}, but nothing listens on {target} in the selected pods; they listen on {}",
                listening.joined()
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const PORT_80: ServicePort = ServicePort {
        port: 80,
        protocol: Protocol::Tcp,
    };

    fn payments() -> NamespacedName {
        NamespacedName::new("shop", "payments")
    }

    #[test]
    fn a_port_not_exposed_lists_the_ports_that_are_or_says_there_are_none() {
        let mut finding = ServiceFinding::PortNotExposed {
            service: payments(),
            requested: PortRef::Number(81),
            requested_protocol: Some(Protocol::Udp),
            exposed: vec![ServicePortFacts {
                name: Some("http".into()),
                port: 80,
                protocol: Protocol::Tcp,
                target_port: PortRef::Name("http".into()),
                node_port: None,
            }],
        };
        assert_eq!(
            finding.to_string(),
            "shop/payments does not expose port 81/UDP; it exposes 80/TCP (http)"
        );
        if let ServiceFinding::PortNotExposed { exposed, .. } = &mut finding {
            exposed.clear();
        }
        assert_eq!(
            finding.to_string(),
            "shop/payments does not expose port 81/UDP; it exposes no port"
        );
    }

    #[test]
    fn a_protocol_mismatch_says_whether_the_pods_declare_serve_or_both() {
        let tcp = BTreeSet::from([Protocol::Tcp]);
        let mismatch = |declared: &BTreeSet<Protocol>, served: &BTreeSet<Protocol>| {
            ServiceFinding::ProtocolMismatch {
                service: payments(),
                port: ServicePort {
                    port: 53,
                    protocol: Protocol::Udp,
                },
                target: PortRef::Name("dns".into()),
                declared: declared.clone(),
                served: served.clone(),
            }
            .to_string()
        };
        let head = "protocol mismatch: shop/payments port 53/UDP → targetPort dns, but the selected pods";
        assert_eq!(
            mismatch(&tcp, &tcp),
            format!("{head} declare and serve it over TCP")
        );
        assert_eq!(
            mismatch(&BTreeSet::new(), &tcp),
            format!("{head} serve it over TCP only")
        );
        assert_eq!(
            mismatch(&tcp, &BTreeSet::new()),
            format!("{head} declare it as TCP only")
        );
    }

    #[test]
    fn target_ports_name_the_service_port_and_the_selected_pods() {
        let named = ServiceFinding::NamedPortResolved {
            port: PORT_80,
            name: "http".into(),
            numbers: NonEmpty::new(8080),
            pods: 1,
        };
        assert_eq!(
            named.to_string(),
            "port 80/TCP → targetPort http (8080) on 1 selected pod"
        );
        let unresolved = ServiceFinding::NamedPortUnresolved {
            port: PORT_80,
            name: "http".into(),
        };
        assert_eq!(
            unresolved.to_string(),
            "port 80/TCP → targetPort http (no selected pod to resolve it on)"
        );
        let numeric = ServiceFinding::NumericPortResolved {
            port: PORT_80,
            target: 8080,
            pods: 2,
        };
        assert_eq!(
            numeric.to_string(),
            "port 80/TCP → targetPort 8080 on 2 selected pods"
        );
        assert_eq!(named.code(), numeric.code());
    }
}
