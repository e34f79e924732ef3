//! The one reading of a Pod: phase, readiness, addresses and the ports its running containers
//! serve (regular containers and native sidecars — init containers with `restartPolicy: Always`,
//! which the EndpointSlice controller also resolves named ports on).

use std::collections::BTreeMap;
use std::net::IpAddr;

use k8s_openapi::api::core::v1::{Container, Pod};

use super::Protocol;
use super::{NamespacedName, PortRef};

/// A port a running container of the pod declares.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServingPort {
    pub name: Option<String>,
    pub port: u16,
    pub protocol: Protocol,
    /// The container declaring it.
    pub container: String,
    /// Declared by a native sidecar (an init container that keeps running).
    pub sidecar: bool,
}

/// What the check knows of a pod.
#[derive(Debug, Clone, PartialEq)]
pub struct PodFacts {
    pub namespace: String,
    pub name: String,
    pub phase: String,
    pub node: Option<String>,
    pub ip: Option<IpAddr>,
    /// The addresses of the pod's node, one per family, the primary first (`status.hostIPs`,
    /// or `status.hostIP` where that list is missing).
    pub host_ips: Vec<IpAddr>,
    pub ready: bool,
    pub terminating: bool,
    pub host_network: bool,
    pub container_ports: Vec<ServingPort>,
    /// The pod's labels (what a NetworkPolicy or Service selector can match it by).
    pub labels: BTreeMap<String, String>,
}

impl PodFacts {
    /// The address of the pod's node in the primary family (`status.hostIP`).
    pub fn host_ip(&self) -> Option<IpAddr> {
        self.host_ips.first().copied()
    }

    pub fn key(&self) -> NamespacedName {
        NamespacedName::new(self.namespace.clone(), self.name.clone())
    }

    /// The container port a Service's `targetPort` designates on this pod, as the EndpointSlice
    /// controller resolves it: a number is itself; a name is the first serving port of that name
    /// and protocol.
    pub fn resolve_port(&self, port: &PortRef, protocol: Protocol) -> Option<u16> {
        match port {
            PortRef::Number(n) => Some(*n),
            PortRef::Name(name) => self
                .container_ports
                .iter()
                .find(|c| c.name.as_deref() == Some(name.as_str()) && c.protocol == protocol)
                .map(|c| c.port),
        }
    }

    /// Whether a serving port carries `name` (any protocol).
    pub fn declares_port_name(&self, name: &str) -> bool {
        self.container_ports
            .iter()
            .any(|c| c.name.as_deref() == Some(name))
    }
}

/// Reads a Pod once into the facts every layer uses.
pub fn read_pod(pod: &Pod) -> PodFacts {
    let status = pod.status.as_ref();
    let spec = pod.spec.as_ref();
    let ready = status
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"));
    PodFacts {
        namespace: pod.metadata.namespace.clone().unwrap_or_default(),
        name: pod.metadata.name.clone().unwrap_or_default(),
        phase: status
            .and_then(|s| s.phase.clone())
            .unwrap_or_else(|| "Unknown".into()),
        node: spec.and_then(|s| s.node_name.clone()),
        ip: primary_ip(pod),
        host_ips: host_ips(pod),
        ready,
        terminating: pod.metadata.deletion_timestamp.is_some(),
        host_network: spec.and_then(|s| s.host_network).unwrap_or(false),
        container_ports: serving_ports(pod),
        labels: pod.metadata.labels.clone().unwrap_or_default(),
    }
}

fn host_ips(pod: &Pod) -> Vec<IpAddr> {
    let Some(status) = &pod.status else {
        return Vec::new();
    };
    let mut ips: Vec<IpAddr> = status.host_ip.iter().filter_map(|ip| ip.parse().ok()).collect();
    for ip in status.host_ips.iter().flatten().filter_map(|h| h.ip.parse().ok()) {
        if !ips.contains(&ip) {
            ips.push(ip);
        }
    }
    ips
}

/// `status.podIPs` (with `status.podIP`): one address per family, the primary first.
pub fn pod_ips(pod: &Pod) -> Vec<IpAddr> {
    let Some(status) = &pod.status else {
        return Vec::new();
    };
    let mut ips: Vec<IpAddr> = status.pod_ip.iter().filter_map(|ip| ip.parse().ok()).collect();
    for ip in status.pod_ips.iter().flatten().filter_map(|p| p.ip.parse().ok()) {
        if !ips.contains(&ip) {
            ips.push(ip);
        }
    }
    ips
}

/// `status.podIP`, the address Services and the agent know the pod by.
pub fn primary_ip(pod: &Pod) -> Option<IpAddr> {
    pod.status.as_ref()?.pod_ip.as_deref()?.parse().ok()
}

/// The ports of the pod's running containers: regular containers, then native sidecars.
/// Regular init containers have exited by the time the pod serves; their ports serve nothing.
pub fn serving_ports(pod: &Pod) -> Vec<ServingPort> {
    let Some(spec) = &pod.spec else {
        return Vec::new();
    };
    let sidecars = spec
        .init_containers
        .iter()
        .flatten()
        .filter(|c| c.restart_policy.as_deref() == Some("Always"));
    let regular = spec.containers.iter().map(|c| (c, false));
    regular
        .chain(sidecars.map(|c| (c, true)))
        .flat_map(|(c, sidecar)| container_ports(c, sidecar))
        .collect()
}

fn container_ports(container: &Container, sidecar: bool) -> impl Iterator<Item = ServingPort> + '_ {
    container.ports.iter().flatten().filter_map(move |p| {
        Some(ServingPort {
            name: p.name.clone().filter(|n| !n.is_empty()),
            port: u16::try_from(p.container_port).ok().filter(|n| *n != 0)?,
            protocol: p.protocol.as_deref().unwrap_or("TCP").parse().ok()?,
            container: container.name.clone(),
            sidecar,
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod(spec: serde_json::Value) -> Pod {
        serde_json::from_value(serde_json::json!({
            "metadata": {"namespace": "shop", "name": "payments-0", "labels": {"app": "payments"}},
            "spec": spec,
            "status": {"phase": "Running", "podIP": "10.244.1.3",
                       "conditions": [{"type": "Ready", "status": "True"}]}
        }))
        .unwrap()
    }

    #[test]
    fn native_sidecars_serve_their_ports_and_finished_init_containers_do_not() {
        let p = read_pod(&pod(serde_json::json!({
            "containers": [{"name": "app", "ports": [{"name": "http", "containerPort": 8080}]}],
            "initContainers": [
                {"name": "proxy", "restartPolicy": "Always",
                 "ports": [{"name": "metrics", "containerPort": 9090, "protocol": "TCP"}]},
                {"name": "migrate", "ports": [{"name": "admin", "containerPort": 7000}]}
            ]
        })));
        let ports: Vec<(Option<&str>, u16, bool)> = p
            .container_ports
            .iter()
            .map(|c| (c.name.as_deref(), c.port, c.sidecar))
            .collect();
        assert_eq!(
            ports,
            [(Some("http"), 8080, false), (Some("metrics"), 9090, true)]
        );
        assert_eq!(
            p.resolve_port(&PortRef::Name("metrics".into()), Protocol::Tcp),
            Some(9090)
        );
        assert_eq!(
            p.resolve_port(&PortRef::Name("admin".into()), Protocol::Tcp),
            None
        );
    }

    #[test]
    fn a_named_port_resolves_only_for_its_protocol() {
        let p = read_pod(&pod(serde_json::json!({
            "containers": [{"name": "dns", "ports": [{"name": "dns", "containerPort": 53, "protocol": "UDP"}]}]
        })));
        assert_eq!(
            p.resolve_port(&PortRef::Name("dns".into()), Protocol::Udp),
            Some(53)
        );
        assert_eq!(p.resolve_port(&PortRef::Name("dns".into()), Protocol::Tcp), None);
        assert!(p.declares_port_name("dns"));
    }

    #[test]
    fn phase_readiness_node_and_ip_come_from_the_status() {
        let p = read_pod(&pod(
            serde_json::json!({"nodeName": "node-b", "containers": [{"name": "app"}]}),
        ));
        assert_eq!(p.key().to_string(), "shop/payments-0");
        assert_eq!(
            (p.phase.as_str(), p.ready, p.terminating),
            ("Running", true, false)
        );
        assert_eq!(p.node.as_deref(), Some("node-b"));
        assert_eq!(p.ip, Some("10.244.1.3".parse().unwrap()));
    }
}
