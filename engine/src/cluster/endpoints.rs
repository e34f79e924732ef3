//! The one reading of EndpointSlices: which addresses back a Service port, with their conditions
//! defaulted as the API documents, and the rule kube-proxy applies to pick the ones it sends new
//! connections to.

use std::collections::BTreeSet;
use std::net::IpAddr;

use k8s_openapi::api::discovery::v1::{EndpointConditions, EndpointPort, EndpointSlice};

use super::NamespacedName;
use super::Protocol;

/// The label that ties an EndpointSlice to its Service.
pub const SERVICE_NAME_LABEL: &str = "kubernetes.io/service-name";

/// An endpoint's conditions with the API's defaults applied.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Conditions {
    /// Ready for new connections (never true while terminating).
    pub ready: bool,
    /// Passing readiness, whether or not it is terminating.
    pub serving: bool,
    pub terminating: bool,
}

impl Conditions {
    pub const READY: Conditions = Conditions {
        ready: true,
        serving: true,
        terminating: false,
    };

    /// `ready` absent means ready; `serving` absent defers to `ready`; `terminating` absent is false.
    pub fn from_api(conditions: Option<&EndpointConditions>) -> Self {
        let ready = conditions.and_then(|c| c.ready).unwrap_or(true);
        let terminating = conditions.and_then(|c| c.terminating).unwrap_or(false);
        Conditions {
            ready: ready && !terminating,
            serving: conditions.and_then(|c| c.serving).unwrap_or(ready),
            terminating,
        }
    }

    /// Still serving while it terminates: what kube-proxy falls back to when nothing is ready.
    pub fn serving_terminating(self) -> bool {
        self.serving && self.terminating
    }
}

/// Which of a Service's endpoints kube-proxy sends new connections to: the ready ones, or when
/// none is ready, those still serving while they terminate. Empty when neither exists.
pub fn in_service<'a, T>(
    endpoints: impl IntoIterator<Item = &'a T> + Clone,
    conditions: impl Fn(&T) -> Conditions,
) -> Vec<&'a T> {
    let ready: Vec<&T> = endpoints
        .clone()
        .into_iter()
        .filter(|e| conditions(e).ready)
        .collect();
    if !ready.is_empty() {
        return ready;
    }
    endpoints
        .into_iter()
        .filter(|e| conditions(e).serving_terminating())
        .collect()
}

/// One address listed for a Service port.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SliceEndpoint {
    pub ip: IpAddr,
    pub port: u16,
    pub conditions: Conditions,
    /// The pod behind the address, when the slice names one (`targetRef` of kind Pod).
    pub pod: Option<NamespacedName>,
    /// The slice that lists it.
    pub slice: NamespacedName,
}

/// The slices of `service` (by the service-name label, in its namespace).
pub fn slices_of<'a>(
    slices: &'a [EndpointSlice],
    service: &'a NamespacedName,
) -> impl Iterator<Item = &'a EndpointSlice> + 'a {
    slices.iter().filter(move |s| {
        s.metadata.namespace.as_deref() == Some(service.namespace.as_str())
            && s.metadata
                .labels
                .as_ref()
                .and_then(|l| l.get(SERVICE_NAME_LABEL))
                .is_some_and(|n| *n == service.name)
    })
}

/// The endpoints of the Service port named `port_name` (`None`: the unnamed port) and `protocol`.
/// A slice without that port contributes none: the controller puts pods that lack a named
/// targetPort into such a slice.
pub fn port_endpoints(
    slices: &[EndpointSlice],
    service: &NamespacedName,
    port_name: Option<&str>,
    protocol: Protocol,
) -> Vec<SliceEndpoint> {
    endpoints_where(slices, service, |ports| {
        ports
            .iter()
            .find(|p| {
                p.name.as_deref().filter(|n| !n.is_empty()) == port_name
                    && p.protocol.as_deref().unwrap_or("TCP") == protocol.as_str()
            })
            .and_then(|p| p.port)
    })
}

/// The endpoints of `service` whose slice port `pick` chooses (by the slice's port list).
pub fn endpoints_where(
    slices: &[EndpointSlice],
    service: &NamespacedName,
    pick: impl Fn(&[EndpointPort]) -> Option<i32>,
) -> Vec<SliceEndpoint> {
    let mut out = Vec::new();
    let mut seen = BTreeSet::new();
    for slice in slices_of(slices, service) {
        let ports = slice.ports.as_deref().unwrap_or_default();
        let Some(port) = pick(ports).and_then(|n| u16::try_from(n).ok()) else {
            continue;
        };
        for ep in &slice.endpoints {
            let Some(ip) = ep.addresses.first().and_then(|a| a.parse::<IpAddr>().ok()) else {
                continue;
            };
            if !seen.insert((ip, port)) {
                continue;
            }
            let pod = ep
                .target_ref
                .as_ref()
                .filter(|r| r.kind.as_deref() == Some("Pod"))
                .and_then(|r| {
                    let ns = r.namespace.as_deref().or(slice.metadata.namespace.as_deref())?;
                    Some(NamespacedName::new(ns, r.name.as_deref()?))
                });
            out.push(SliceEndpoint {
                ip,
                port,
                conditions: Conditions::from_api(ep.conditions.as_ref()),
                pod,
                slice: NamespacedName::of(slice),
            });
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn conditions(ready: Option<bool>, serving: Option<bool>, terminating: Option<bool>) -> Conditions {
        Conditions::from_api(Some(&EndpointConditions {
            ready,
            serving,
            terminating,
        }))
    }

    #[test]
    fn absent_conditions_mean_ready_and_a_terminating_endpoint_is_never_ready() {
        assert_eq!(Conditions::from_api(None), Conditions::READY);
        let c = conditions(Some(true), Some(true), Some(true));
        assert!(!c.ready && c.serving_terminating());
        let c = conditions(Some(false), None, None);
        assert!(!c.ready && !c.serving);
    }

    #[test]
    fn kube_proxy_uses_ready_endpoints_and_falls_back_to_serving_terminating_ones() {
        let ready = Conditions::READY;
        let draining = conditions(Some(false), Some(true), Some(true));
        let dead = conditions(Some(false), Some(false), Some(true));
        let pick = |list: &[Conditions]| -> Vec<Conditions> {
            in_service(list, |c| *c).into_iter().copied().collect()
        };
        assert_eq!(pick(&[ready, draining]), [ready]);
        assert_eq!(pick(&[draining, dead]), [draining]);
        assert!(pick(&[dead]).is_empty());
    }

    fn slice(json: serde_json::Value) -> EndpointSlice {
        serde_json::from_value(json).unwrap()
    }

    #[test]
    fn endpoints_come_from_the_slice_port_of_the_same_name_and_protocol() {
        let slices = [
            slice(serde_json::json!({
                "metadata": {"name": "payments-abc", "namespace": "shop",
                             "labels": {"kubernetes.io/service-name": "payments"}},
                "addressType": "IPv4",
                "ports": [{"name": "metrics", "port": 9100, "protocol": "TCP"},
                          {"name": "http", "port": 8080, "protocol": "TCP"}],
                "endpoints": [
                    {"addresses": ["10.244.1.3"], "targetRef": {"kind": "Pod", "name": "payments-0"}},
                    {"addresses": ["10.244.2.3"], "conditions": {"ready": false}},
                ]
            })),
            slice(serde_json::json!({
                "metadata": {"name": "payments-portless", "namespace": "shop",
                             "labels": {"kubernetes.io/service-name": "payments"}},
                "addressType": "IPv4", "ports": [],
                "endpoints": [{"addresses": ["10.244.2.9"]}]
            })),
            slice(serde_json::json!({
                "metadata": {"name": "other", "namespace": "web",
                             "labels": {"kubernetes.io/service-name": "payments"}},
                "addressType": "IPv4", "ports": [{"name": "http", "port": 80}],
                "endpoints": [{"addresses": ["10.244.3.3"]}]
            })),
        ];
        let service = NamespacedName::new("shop", "payments");
        let eps = port_endpoints(&slices, &service, Some("http"), Protocol::Tcp);
        let got: Vec<(String, u16, bool)> = eps
            .iter()
            .map(|e| (e.ip.to_string(), e.port, e.conditions.ready))
            .collect();
        assert_eq!(
            got,
            [
                ("10.244.1.3".into(), 8080, true),
                ("10.244.2.3".into(), 8080, false)
            ]
        );
        assert_eq!(eps[0].pod, Some(NamespacedName::new("shop", "payments-0")));
        assert_eq!(eps[0].slice, NamespacedName::new("shop", "payments-abc"));
        assert!(port_endpoints(&slices, &service, Some("http"), Protocol::Udp).is_empty());
    }
}
