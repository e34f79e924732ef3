//! The `endpoints` layer's findings and their wording.

use std::fmt;
use std::net::IpAddr;

use crate::check::evidence::fmt_ip;
use crate::check::judge::describe::{connection_share, endpoints_of, passing_names};
use crate::check::prose::NonEmpty;
use crate::check::report::Code;
use crate::cluster::endpoints::Routing;
use crate::cluster::{NamespacedName, ToolFailure};

/// Ready endpoints named in a passing summary; the JSON report lists every one.
const SHOWN_READY: usize = 5;

/// Why a target has no endpoints to judge.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum NoEndpoints {
    /// An address that belongs to no Service or pod.
    External,
    ExternalName,
    /// A Service target whose Service is not known.
    NoService,
}

/// An endpoint listed by an EndpointSlice (`None`: the slice is not named) that no pod holds.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Listed {
    pub slice: Option<NamespacedName>,
    /// The endpoint's label (`10.244.9.9:8080`).
    pub endpoint: String,
}

impl Listed {
    /// `EndpointSlice shop/payments-manual`, or `an EndpointSlice`.
    pub fn slice(&self) -> String {
        self.slice
            .as_ref()
            .map(|s| format!("EndpointSlice {s}"))
            .unwrap_or_else(|| "an EndpointSlice".into())
    }
}

#[derive(Debug, Clone, PartialEq)]
pub(crate) enum EndpointsFinding {
    NotApplicable(NoEndpoints),
    Unreadable {
        reason: ToolFailure,
    },
    TargetPodNotFound {
        pod: NamespacedName,
    },
    PodWithoutAddress,
    /// A pod address the API names no pod for.
    PodAddress {
        ip: IpAddr,
    },
    PodNotRunning {
        pod: NamespacedName,
        phase: String,
    },
    PodPortUndeclared {
        pod: NamespacedName,
    },
    PodRunning {
        pod: NamespacedName,
        node: Option<String>,
        ip: IpAddr,
        port: u16,
    },
    /// `ready` names the ready endpoints (pod name, or address), of `total`.
    Ready {
        ready: NonEmpty<String>,
        total: usize,
    },
    /// `ready` of `total` endpoints ready, of which kube-proxy on the source's `node` sends to
    /// `used` only, by `routing` (never [`Routing::Cluster`]).
    ReadyOnNode {
        ready: usize,
        total: usize,
        node: String,
        used: NonEmpty<String>,
        routing: Routing,
    },
    /// None ready, but kube-proxy falls back to the `serving` terminating endpoints.
    ServingTerminating {
        serving: NonEmpty<String>,
        total: usize,
    },
    NoSelector {
        service: NamespacedName,
    },
    SelectorMatchesNoPods {
        service: NamespacedName,
        selector: String,
    },
    AllTerminating {
        service: NamespacedName,
        selected: usize,
    },
    NoneReady {
        service: NamespacedName,
        selected: usize,
        selector: String,
    },
    /// Ready selected pods, but no ready endpoint lists them.
    ReadyPodsUnlisted {
        service: NamespacedName,
        selected: usize,
    },
    /// `internalTrafficPolicy: Local` and no usable endpoint on the source's `node`; the usable
    /// ones run `elsewhere` (`payments-0 on node-a`).
    NoneOnSourceNode {
        service: NamespacedName,
        node: String,
        elsewhere: NonEmpty<String>,
    },
    /// Listed endpoints that no pod holds and that do not answer, of `live`; `selector`: whether
    /// the Service has one (else its slices are written by hand or by another controller).
    Stale {
        stale: NonEmpty<Listed>,
        live: usize,
        selector: bool,
    },
}

impl EndpointsFinding {
    pub fn code(&self) -> Code {
        match self {
            EndpointsFinding::NotApplicable(_) => Code::EndpointsNotApplicable,
            EndpointsFinding::Unreadable { .. } => Code::EndpointsUnreadable,
            EndpointsFinding::TargetPodNotFound { .. } => Code::EndpointsPodNotFound,
            EndpointsFinding::PodWithoutAddress => Code::EndpointsPodWithoutAddress,
            EndpointsFinding::PodAddress { .. } => Code::EndpointsPodAddress,
            EndpointsFinding::PodNotRunning { .. } => Code::EndpointsPodNotRunning,
            EndpointsFinding::PodPortUndeclared { .. } => Code::EndpointsPodPortUndeclared,
            EndpointsFinding::PodRunning { .. } => Code::EndpointsPodRunning,
            EndpointsFinding::Ready { .. } | EndpointsFinding::ReadyOnNode { .. } => Code::EndpointsReady,
            EndpointsFinding::ServingTerminating { .. } => Code::EndpointsServingTerminating,
            EndpointsFinding::NoSelector { .. } => Code::EndpointsNoSelector,
            EndpointsFinding::SelectorMatchesNoPods { .. } => Code::EndpointsSelectorMatchesNoPods,
            EndpointsFinding::AllTerminating { .. } => Code::EndpointsAllTerminating,
            EndpointsFinding::NoneReady { .. } => Code::EndpointsNoneReady,
            EndpointsFinding::ReadyPodsUnlisted { .. } => Code::EndpointsReadyPodsUnlisted,
            EndpointsFinding::Stale { .. } => Code::EndpointsStale,
            EndpointsFinding::NoneOnSourceNode { .. } => Code::EndpointsNoneOnSourceNode,
        }
    }
}

impl fmt::Display for EndpointsFinding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            EndpointsFinding::NotApplicable(why) => f.write_str(match why {
                NoEndpoints::External => "not applicable: the target belongs to no Service or pod",
                NoEndpoints::ExternalName => "not applicable: an ExternalName Service has no endpoints",
                NoEndpoints::NoService => "not applicable: no Service",
            }),
            EndpointsFinding::Unreadable { reason } => {
                write!(f, "could not read the endpoints: {reason}")
            }
            EndpointsFinding::TargetPodNotFound { pod } => write!(f, "pod {pod} not found"),
            EndpointsFinding::PodWithoutAddress => f.write_str("the target pod has no address"),
            EndpointsFinding::PodAddress { ip } => write!(f, "{} is a pod address", fmt_ip(*ip)),
            EndpointsFinding::PodNotRunning { pod, phase } => {
                write!(f, "{pod} is {phase}, not Running")
            }
            EndpointsFinding::PodPortUndeclared { pod } => {
                write!(f, "{pod} declares no port of the requested name")
            }
            EndpointsFinding::PodRunning { pod, node, ip, port } => write!(
                f,
                "{pod} Running on {} ({}:{port})",
                node.as_deref().unwrap_or("?"),
                fmt_ip(*ip)
            ),
            EndpointsFinding::Ready { ready, total } => write!(
                f,
                "{}/{total} ready ({})",
                ready.as_slice().len(),
                passing_names(ready.as_slice(), SHOWN_READY)
            ),
            EndpointsFinding::ReadyOnNode {
                ready,
                total,
                node,
                used,
                routing,
            } => {
                let why = match routing {
                    Routing::Local => "internalTrafficPolicy: Local".to_string(),
                    Routing::SameNode => format!("topology hints for {node}"),
                    Routing::SameZone(zone) => format!("topology hints for zone {zone}"),
                    Routing::Cluster => "every endpoint".to_string(),
                };
                write!(
                    f,
                    "{ready}/{total} ready; kube-proxy on {node} uses {} only ({why})",
                    passing_names(used.as_slice(), SHOWN_READY)
                )
            }
            EndpointsFinding::ServingTerminating { serving, total } => write!(
                f,
                "0/{total} ready; kube-proxy falls back to {} serving-but-terminating ({}) until they stop",
                serving.as_slice().len(),
                serving.joined()
            ),
            EndpointsFinding::NoSelector { service } => {
                write!(f, "{service} has no selector and no ready endpoints")
            }
            EndpointsFinding::SelectorMatchesNoPods { service, selector } => write!(
                f,
                "{service} selector {selector} matches no pods in namespace {}",
                service.namespace
            ),
            EndpointsFinding::AllTerminating { service, selected } => {
                write!(f, "{service}: the {selected} selected pods are all terminating")
            }
            EndpointsFinding::NoneReady {
                service,
                selected,
                selector,
            } => write!(f, "{service}: {selected} pods selected by {selector}, none ready"),
            EndpointsFinding::ReadyPodsUnlisted { service, selected } => write!(
                f,
                "{service}: no ready endpoints although {selected} selected pods are ready (stale EndpointSlices?)"
            ),
            EndpointsFinding::NoneOnSourceNode {
                service,
                node,
                elsewhere,
            } => write!(
                f,
                "{service} has internalTrafficPolicy: Local and no endpoint on {node}, the source's node: \
                 kube-proxy there drops its traffic (its endpoints: {})",
                elsewhere.joined()
            ),
            EndpointsFinding::Stale {
                stale,
                live,
                selector,
            } => {
                let n = stale.as_slice().len();
                let first = stale.first();
                let owner = if *selector {
                    "the slice was left behind by its controller"
                } else {
                    "the Service has no selector, so its slices are written by hand or by another controller"
                };
                write!(
                    f,
                    "{} {} stale: {} lists {}, which no pod holds and which does not answer ({owner}){}",
                    endpoints_of(n, *live),
                    if n == 1 { "is" } else { "are" },
                    first.slice(),
                    first.endpoint,
                    connection_share(n, *live)
                )
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(n: usize) -> NonEmpty<String> {
        NonEmpty::from_vec((0..n).map(|i| format!("payments-{i}")).collect()).unwrap()
    }

    #[test]
    fn ready_endpoints_are_named_up_to_five_then_counted() {
        let ready = |n, total| EndpointsFinding::Ready {
            ready: names(n),
            total,
        };
        assert_eq!(ready(1, 2).to_string(), "1/2 ready (payments-0)");
        assert_eq!(
            ready(7, 7).to_string(),
            "7/7 ready (payments-0, payments-1, payments-2, payments-3, payments-4 and 2 more)"
        );
    }

    #[test]
    fn stale_endpoints_name_the_first_slice_the_owner_and_the_share() {
        let listed = |slice: Option<&str>, endpoint: &str| Listed {
            slice: slice.map(|s| NamespacedName::new("shop", s)),
            endpoint: endpoint.into(),
        };
        let one = EndpointsFinding::Stale {
            stale: NonEmpty::new(listed(Some("payments-manual"), "10.244.9.9:8080")),
            live: 2,
            selector: false,
        };
        assert_eq!(
            one.to_string(),
            "1 of 2 endpoints is stale: EndpointSlice shop/payments-manual lists 10.244.9.9:8080, \
             which no pod holds and which does not answer (the Service has no selector, so its \
             slices are written by hand or by another controller) — about 1 in 2 new connections fail"
        );
        let all = EndpointsFinding::Stale {
            stale: NonEmpty::from_vec(vec![
                listed(None, "10.244.9.9:8080"),
                listed(None, "10.244.9.10:8080"),
            ])
            .unwrap(),
            live: 2,
            selector: true,
        };
        assert_eq!(
            all.to_string(),
            "all 2 endpoints are stale: an EndpointSlice lists 10.244.9.9:8080, which no pod holds \
             and which does not answer (the slice was left behind by its controller)"
        );
    }
}
