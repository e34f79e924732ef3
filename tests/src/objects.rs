//! The Kubernetes objects a lab serves, built with k8s-openapi types from the plan, and the
//! EndpointSlices derived as the EndpointSlice controller derives them. Pure.

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::{DaemonSet, DaemonSetSpec, DaemonSetStatus};
use k8s_openapi::api::core::v1::PodTemplateSpec;
use k8s_openapi::api::core::v1::{
    Container, ContainerPort, ContainerState, ContainerStateRunning, ContainerStatus, HostIP,
    LoadBalancerIngress, LoadBalancerStatus, Namespace, NamespaceStatus, Node, NodeAddress, NodeCondition,
    NodeSpec, NodeStatus, NodeSystemInfo, ObjectReference, Pod, PodCondition, PodIP, PodSpec as K8sPodSpec,
    PodStatus, Service, ServicePort, ServiceSpec as K8sServiceSpec, ServiceStatus,
};
use k8s_openapi::api::discovery::v1::{Endpoint, EndpointConditions, EndpointPort, EndpointSlice};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta, Time};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use k8s_openapi::jiff::Timestamp;
use serde_json::Value;

use crate::plan::{Plan, PodPlan, PodRole, ServicePlan};
use crate::scenario::{IpFamily, Scenario, ServiceType, TargetPort};

/// A resource type the API stand-in serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ResourceType {
    pub plural: &'static str,
    pub singular: &'static str,
    pub kind: &'static str,
    /// `""` for the core group.
    pub group: &'static str,
    pub version: &'static str,
    pub namespaced: bool,
    pub short_names: &'static [&'static str],
}

impl ResourceType {
    pub fn api_version(&self) -> String {
        if self.group.is_empty() {
            self.version.to_string()
        } else {
            format!("{}/{}", self.group, self.version)
        }
    }
}

pub const RESOURCES: [ResourceType; 10] = [
    ResourceType {
        plural: "namespaces",
        singular: "namespace",
        kind: "Namespace",
        group: "",
        version: "v1",
        namespaced: false,
        short_names: &["ns"],
    },
    ResourceType {
        plural: "nodes",
        singular: "node",
        kind: "Node",
        group: "",
        version: "v1",
        namespaced: false,
        short_names: &["no"],
    },
    ResourceType {
        plural: "pods",
        singular: "pod",
        kind: "Pod",
        group: "",
        version: "v1",
        namespaced: true,
        short_names: &["po"],
    },
    ResourceType {
        plural: "services",
        singular: "service",
        kind: "Service",
        group: "",
        version: "v1",
        namespaced: true,
        short_names: &["svc"],
    },
    ResourceType {
        plural: "endpointslices",
        singular: "endpointslice",
        kind: "EndpointSlice",
        group: "discovery.k8s.io",
        version: "v1",
        namespaced: true,
        short_names: &[],
    },
    ResourceType {
        plural: "networkpolicies",
        singular: "networkpolicy",
        kind: "NetworkPolicy",
        group: "networking.k8s.io",
        version: "v1",
        namespaced: true,
        short_names: &["netpol"],
    },
    // The agent DaemonSet: genuine agent pods are the ones it controls, by uid.
    ResourceType {
        plural: "daemonsets",
        singular: "daemonset",
        kind: "DaemonSet",
        group: "apps",
        version: "v1",
        namespaced: true,
        short_names: &["ds"],
    },
    // Cluster-wide admin policy (network-policy-api CRDs), served from scenario objects.
    ResourceType {
        plural: "clusternetworkpolicies",
        singular: "clusternetworkpolicy",
        kind: "ClusterNetworkPolicy",
        group: "policy.networking.k8s.io",
        version: "v1alpha2",
        namespaced: false,
        short_names: &["cnp"],
    },
    ResourceType {
        plural: "adminnetworkpolicies",
        singular: "adminnetworkpolicy",
        kind: "AdminNetworkPolicy",
        group: "policy.networking.k8s.io",
        version: "v1alpha1",
        namespaced: false,
        short_names: &["anp"],
    },
    ResourceType {
        plural: "baselineadminnetworkpolicies",
        singular: "baselineadminnetworkpolicy",
        kind: "BaselineAdminNetworkPolicy",
        group: "policy.networking.k8s.io",
        version: "v1alpha1",
        namespaced: false,
        short_names: &["banp"],
    },
];

#[derive(Debug, thiserror::Error)]
pub enum ObjectError {
    #[error("object has no apiVersion and kind")]
    NoKind,
    #[error("object kind {kind} in {api_version} is not one the lab serves")]
    Unsupported { api_version: String, kind: String },
    #[error("{kind} object has no metadata.name")]
    NoName { kind: String },
    #[error("{kind} {name} has no metadata.namespace")]
    NoNamespace { kind: String, name: String },
    #[error("endpointslice {name} is not a valid EndpointSlice")]
    BadSlice {
        name: String,
        #[source]
        source: serde_json::Error,
    },
}

/// The resource type of a raw object, from its apiVersion and kind, checking it names itself.
pub fn resource_of(obj: &Value) -> Result<ResourceType, ObjectError> {
    let api_version = obj
        .get("apiVersion")
        .and_then(Value::as_str)
        .ok_or(ObjectError::NoKind)?;
    let kind = obj
        .get("kind")
        .and_then(Value::as_str)
        .ok_or(ObjectError::NoKind)?;
    let rt = RESOURCES
        .iter()
        .find(|r| r.kind == kind && r.api_version() == api_version)
        .copied()
        .ok_or_else(|| ObjectError::Unsupported {
            api_version: api_version.into(),
            kind: kind.into(),
        })?;
    let name = obj.pointer("/metadata/name").and_then(Value::as_str);
    let Some(name) = name else {
        return Err(ObjectError::NoName { kind: kind.into() });
    };
    if rt.namespaced
        && obj
            .pointer("/metadata/namespace")
            .and_then(Value::as_str)
            .is_none()
    {
        return Err(ObjectError::NoNamespace {
            kind: kind.into(),
            name: name.into(),
        });
    }
    Ok(rt)
}

/// A stable UID-shaped string for an object.
pub fn uid(kind: &str, namespace: &str, name: &str) -> String {
    let mut h: u128 = 0x6c62_272e_07bb_0142_62b8_2175_6295_c58d;
    for b in kind
        .bytes()
        .chain([0])
        .chain(namespace.bytes())
        .chain([0])
        .chain(name.bytes())
    {
        h ^= u128::from(b);
        h = h.wrapping_mul(0x0000_0000_0100_0000_0000_0000_0000_013b);
    }
    let s = format!("{h:032x}");
    format!(
        "{}-{}-{}-{}-{}",
        &s[0..8],
        &s[8..12],
        &s[12..16],
        &s[16..20],
        &s[20..32]
    )
}

fn meta(kind: &str, namespace: Option<&str>, name: &str, now: Timestamp) -> ObjectMeta {
    ObjectMeta {
        name: Some(name.to_string()),
        namespace: namespace.map(str::to_string),
        uid: Some(uid(kind, namespace.unwrap_or(""), name)),
        resource_version: Some("1".into()),
        creation_timestamp: Some(Time(now)),
        ..Default::default()
    }
}

/// Everything the API stand-in serves for this lab, as JSON objects with apiVersion and kind.
pub fn all_objects(scenario: &Scenario, plan: &Plan, now: Timestamp) -> Result<Vec<Value>, ObjectError> {
    let mut out = Vec::new();
    let json = |v: Result<Value, serde_json::Error>| v.expect("k8s-openapi objects serialize");
    for ns in scenario.namespaces() {
        out.push(json(serde_json::to_value(namespace(&ns, now))));
    }
    for n in 0..plan.nodes.len() {
        out.push(json(serde_json::to_value(node(plan, n, now))));
    }
    for p in &plan.pods {
        out.push(json(serde_json::to_value(pod(plan, p, now))));
    }
    if let Some(daemonset) = agent_daemonset(plan, now) {
        out.push(json(serde_json::to_value(daemonset)));
    }
    for s in &plan.services {
        out.push(json(serde_json::to_value(service(s, now))));
    }
    for slice in endpoint_slices(scenario, plan, now)? {
        out.push(json(serde_json::to_value(slice)));
    }
    for obj in &scenario.objects {
        let mut obj = obj.clone();
        resource_of(&obj)?;
        let kind = obj["kind"].as_str().unwrap_or_default().to_string();
        let ns = obj
            .pointer("/metadata/namespace")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string();
        let name = obj
            .pointer("/metadata/name")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string();
        let m = &mut obj["metadata"];
        for (k, v) in [
            ("uid", Value::from(uid(&kind, &ns, &name))),
            ("resourceVersion", Value::from("1")),
            (
                "creationTimestamp",
                serde_json::to_value(Time(now)).expect("time serializes"),
            ),
        ] {
            if m.get(k).is_none() {
                m[k] = v;
            }
        }
        out.push(obj);
    }
    Ok(out)
}

/// The agent DaemonSet, when the lab runs agents: its uid is the one the agent pods' controller
/// references carry, as the DaemonSet controller writes them.
fn agent_daemonset(plan: &Plan, now: Timestamp) -> Option<DaemonSet> {
    let agents: Vec<&PodPlan> = plan.pods.iter().filter(|p| p.role == PodRole::Agent).collect();
    let namespace = agents.first()?.spec.namespace.as_str();
    let labels = BTreeMap::from([("app.kubernetes.io/name".to_string(), "netdiag-agent".to_string())]);
    let count = i32::try_from(agents.len()).unwrap_or(i32::MAX);
    let mut metadata = meta("DaemonSet", Some(namespace), "netdiag-agent", now);
    metadata.labels = Some(labels.clone());
    Some(DaemonSet {
        metadata,
        spec: Some(DaemonSetSpec {
            selector: LabelSelector {
                match_labels: Some(labels.clone()),
                match_expressions: None,
            },
            template: PodTemplateSpec {
                metadata: Some(ObjectMeta {
                    labels: Some(labels),
                    ..Default::default()
                }),
                spec: Some(K8sPodSpec {
                    service_account_name: Some("netdiag-agent".into()),
                    containers: vec![Container {
                        name: "agent".into(),
                        image: Some("registry.local/netdiag/netdiag-agent:v1".into()),
                        ..Default::default()
                    }],
                    ..Default::default()
                }),
            },
            ..Default::default()
        }),
        status: Some(DaemonSetStatus {
            current_number_scheduled: count,
            desired_number_scheduled: count,
            number_available: Some(count),
            number_misscheduled: 0,
            number_ready: count,
            updated_number_scheduled: Some(count),
            observed_generation: Some(1),
            ..Default::default()
        }),
    })
}

fn namespace(name: &str, now: Timestamp) -> Namespace {
    let mut metadata = meta("Namespace", None, name, now);
    metadata.labels = Some(BTreeMap::from([(
        "kubernetes.io/metadata.name".into(),
        name.into(),
    )]));
    Namespace {
        metadata,
        spec: None,
        status: Some(NamespaceStatus {
            phase: Some("Active".into()),
            conditions: None,
        }),
    }
}

/// This machine's architecture in Kubernetes' spelling (`amd64`, `arm64`).
fn node_arch() -> String {
    match std::env::consts::ARCH {
        "x86_64" => "amd64".into(),
        "aarch64" => "arm64".into(),
        other => other.into(),
    }
}

/// The node label that places a node in a zone (kube-proxy's and the slice controller's).
const ZONE_LABEL: &str = "topology.kubernetes.io/zone";

fn node(plan: &Plan, n: usize, now: Timestamp) -> Node {
    let np = &plan.nodes[n];
    let mut metadata = meta("Node", None, &np.name, now);
    let mut labels = BTreeMap::from([
        ("kubernetes.io/hostname".to_string(), np.name.clone()),
        ("kubernetes.io/os".into(), "linux".into()),
        ("kubernetes.io/arch".into(), node_arch()),
    ]);
    if let Some(zone) = &np.zone {
        labels.insert(ZONE_LABEL.into(), zone.clone());
    }
    metadata.labels = Some(labels);
    Node {
        metadata,
        spec: Some(NodeSpec {
            pod_cidr: Some(node_cidrs(plan, np)[0].clone()),
            pod_cidrs: Some(node_cidrs(plan, np)),
            ..Default::default()
        }),
        status: Some(NodeStatus {
            addresses: Some(
                node_ips(plan, np)
                    .into_iter()
                    .map(|ip| NodeAddress {
                        type_: "InternalIP".into(),
                        address: ip.to_string(),
                    })
                    .chain([NodeAddress {
                        type_: "Hostname".into(),
                        address: np.name.clone(),
                    }])
                    .collect(),
            ),
            conditions: Some(vec![NodeCondition {
                type_: "Ready".into(),
                status: "True".into(),
                reason: Some("KubeletReady".into()),
                message: Some("kubelet is posting ready status".into()),
                last_transition_time: Some(Time(now)),
                last_heartbeat_time: Some(Time(now)),
            }]),
            node_info: Some(NodeSystemInfo {
                architecture: node_arch(),
                container_runtime_version: "netdiag-lab://1".into(),
                kernel_version: "lab".into(),
                kubelet_version: "v1.34.0".into(),
                kube_proxy_version: "v1.34.0".into(),
                operating_system: "linux".into(),
                os_image: "netdiag-lab".into(),
                machine_id: uid("Node", "", &np.name).replace('-', ""),
                system_uuid: uid("Node", "", &np.name),
                boot_id: uid("Boot", "", &np.name),
                ..Default::default()
            }),
            ..Default::default()
        }),
    }
}

/// A node's pod CIDRs, one per cluster family, primary first.
fn node_cidrs(plan: &Plan, np: &crate::plan::NodePlan) -> Vec<String> {
    plan.families
        .iter()
        .map(|f| match f {
            IpFamily::V4 => np.pod_cidr(),
            IpFamily::V6 => np.pod_cidr6(),
        })
        .collect()
}

/// A node's InternalIPs, one per cluster family, primary first.
fn node_ips(plan: &Plan, np: &crate::plan::NodePlan) -> Vec<std::net::IpAddr> {
    plan.families
        .iter()
        .map(|f| match f {
            IpFamily::V4 => np.ip.into(),
            IpFamily::V6 => np.ip6.into(),
        })
        .collect()
}

fn pod(plan: &Plan, p: &PodPlan, now: Timestamp) -> Pod {
    let spec = &p.spec;
    let mut metadata = meta("Pod", Some(&spec.namespace), &spec.name, now);
    if p.role == PodRole::Agent {
        // Controlled by the agent DaemonSet, as the DaemonSet controller writes it.
        metadata.owner_references = Some(vec![
            k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference {
                api_version: "apps/v1".into(),
                kind: "DaemonSet".into(),
                name: "netdiag-agent".into(),
                uid: uid("DaemonSet", &spec.namespace, "netdiag-agent"),
                controller: Some(true),
                block_owner_deletion: Some(true),
            },
        ]);
    }
    metadata.labels = (!spec.labels.is_empty()).then(|| spec.labels.clone());
    let (container, image) = match p.role {
        PodRole::App => ("app", "registry.local/netdiag-lab/pod-app:v1"),
        PodRole::Dns => ("coredns", "registry.local/netdiag-lab/dnsmasq:v1"),
        PodRole::Agent => ("agent", "registry.local/netdiag/netdiag-agent:v1"),
    };
    let container_ports = |ports: &[crate::scenario::ContainerPortSpec]| -> Vec<ContainerPort> {
        ports
            .iter()
            .map(|cp| ContainerPort {
                name: cp.name.clone(),
                container_port: i32::from(cp.container_port),
                protocol: Some(cp.protocol.as_k8s().into()),
                ..Default::default()
            })
            .collect()
    };
    let ports = container_ports(&spec.ports);
    let sidecars = (!spec.sidecar_ports.is_empty()).then(|| {
        vec![Container {
            name: "sidecar".into(),
            image: Some("registry.local/netdiag-lab/sidecar:v1".into()),
            restart_policy: Some("Always".into()),
            ports: Some(container_ports(&spec.sidecar_ports)),
            ..Default::default()
        }]
    });
    if spec.terminating {
        metadata.deletion_timestamp = Some(Time(now));
        metadata.deletion_grace_period_seconds = Some(30);
    }
    let ready = if spec.ready { "True" } else { "False" };
    let condition = |type_: &str, status: &str| PodCondition {
        type_: type_.into(),
        status: status.into(),
        last_transition_time: Some(Time(now)),
        ..Default::default()
    };
    let node = &plan.nodes[p.node];
    Pod {
        metadata,
        spec: Some(K8sPodSpec {
            node_name: Some(node.name.clone()),
            host_pid: (p.role == PodRole::Agent).then_some(true),
            // As the DaemonSet's pods: its own account (the CLI checks it).
            service_account_name: (p.role == PodRole::Agent).then(|| "netdiag-agent".to_string()),
            containers: vec![Container {
                name: container.into(),
                image: Some(image.into()),
                ports: (!ports.is_empty()).then_some(ports),
                ..Default::default()
            }],
            init_containers: sidecars,
            ..Default::default()
        }),
        status: Some(PodStatus {
            phase: Some("Running".into()),
            pod_ip: p.addrs().first().map(|ip| ip.to_string()),
            pod_ips: Some(p.addrs().iter().map(|ip| PodIP { ip: ip.to_string() }).collect()),
            host_ip: Some(node_ips(plan, node)[0].to_string()),
            host_ips: Some(
                node_ips(plan, node)
                    .iter()
                    .map(|ip| HostIP { ip: ip.to_string() })
                    .collect(),
            ),
            start_time: Some(Time(now)),
            qos_class: Some("BestEffort".into()),
            conditions: Some(vec![
                condition("PodReadyToStartContainers", "True"),
                condition("Initialized", "True"),
                condition("Ready", ready),
                condition("ContainersReady", ready),
                condition("PodScheduled", "True"),
            ]),
            container_statuses: Some(vec![ContainerStatus {
                name: container.into(),
                image: image.into(),
                image_id: format!("{image}@sha256:{}", "0".repeat(64)),
                ready: spec.ready,
                started: Some(true),
                restart_count: 0,
                state: Some(ContainerState {
                    running: Some(ContainerStateRunning {
                        started_at: Some(Time(now)),
                    }),
                    ..Default::default()
                }),
                ..Default::default()
            }]),
            ..Default::default()
        }),
    }
}

fn service(s: &ServicePlan, now: Timestamp) -> Service {
    let cluster_ips: Vec<String> = match s.cluster_ip {
        Some(_) => s.vips().iter().map(|ip| ip.to_string()).collect(),
        None => vec!["None".to_string()],
    };
    // As the API server defaults it: one family is SingleStack; two were asked for by
    // PreferDualStack (the lab's default in a dual-stack cluster).
    let policy = if s.families.len() > 1 {
        "PreferDualStack"
    } else {
        "SingleStack"
    };
    let external = s.is_external();
    Service {
        metadata: meta("Service", Some(&s.namespace), &s.name, now),
        spec: Some(K8sServiceSpec {
            type_: Some(s.service_type.as_k8s().into()),
            cluster_ip: Some(cluster_ips[0].clone()),
            cluster_ips: Some(cluster_ips),
            selector: s.selector.clone(),
            ip_families: Some(s.families.iter().map(|f| f.as_k8s().to_string()).collect()),
            ip_family_policy: Some(policy.into()),
            session_affinity: Some("None".into()),
            internal_traffic_policy: Some(s.internal_traffic_policy.as_k8s().into()),
            // As the API server defaults them for the external types only.
            external_traffic_policy: external.then(|| s.external_traffic_policy.as_k8s().into()),
            health_check_node_port: s.health_check_node_port.map(i32::from),
            allocate_load_balancer_node_ports: (s.service_type == ServiceType::LoadBalancer).then_some(true),
            load_balancer_source_ranges: (!s.load_balancer_source_ranges.is_empty()).then(|| {
                s.load_balancer_source_ranges
                    .iter()
                    .map(ToString::to_string)
                    .collect()
            }),
            traffic_distribution: s.traffic_distribution.clone(),
            ports: Some(
                s.ports
                    .iter()
                    .map(|p| ServicePort {
                        name: p.name.clone(),
                        port: i32::from(p.port),
                        protocol: Some(p.protocol.as_k8s().into()),
                        target_port: Some(match p.effective_target() {
                            TargetPort::Number(n) => IntOrString::Int(i32::from(n)),
                            TargetPort::Name(name) => IntOrString::String(name),
                        }),
                        node_port: p.node_port.map(i32::from),
                        ..Default::default()
                    })
                    .collect(),
            ),
            ..Default::default()
        }),
        status: load_balancer_status(s),
    }
}

/// A LoadBalancer Service's status as a load-balancer controller writes it (the API server
/// defaults `ipMode` to `VIP`); other Services have none here.
fn load_balancer_status(s: &ServicePlan) -> Option<ServiceStatus> {
    let ip = s.load_balancer_ip?;
    Some(ServiceStatus {
        load_balancer: Some(LoadBalancerStatus {
            ingress: Some(vec![LoadBalancerIngress {
                ip: Some(ip.to_string()),
                ip_mode: Some("VIP".into()),
                ..Default::default()
            }]),
        }),
        ..Default::default()
    })
}

fn labels_match(selector: &BTreeMap<String, String>, labels: &BTreeMap<String, String>) -> bool {
    selector.iter().all(|(k, v)| labels.get(k) == Some(v))
}

/// The EndpointSlices of every Service: derived as the controller does, replaced by the scenario's
/// overrides for the Services those name.
pub fn endpoint_slices(
    scenario: &Scenario,
    plan: &Plan,
    now: Timestamp,
) -> Result<Vec<EndpointSlice>, ObjectError> {
    let mut overrides: BTreeMap<String, Vec<EndpointSlice>> = BTreeMap::new();
    for raw in &scenario.endpoint_slices {
        let mut raw = raw.clone();
        let name = raw
            .pointer("/metadata/name")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string();
        if let Some(map) = raw.as_object_mut() {
            map.entry("apiVersion")
                .or_insert_with(|| Value::from("discovery.k8s.io/v1"));
            map.entry("kind").or_insert_with(|| Value::from("EndpointSlice"));
            map.entry("addressType").or_insert_with(|| Value::from("IPv4"));
            map.entry("endpoints").or_insert_with(|| Value::Array(Vec::new()));
        }
        let mut slice: EndpointSlice =
            serde_json::from_value(raw).map_err(|source| ObjectError::BadSlice {
                name: name.clone(),
                source,
            })?;
        let m = &mut slice.metadata;
        let ns = m.namespace.clone().unwrap_or_default();
        m.uid.get_or_insert_with(|| uid("EndpointSlice", &ns, &name));
        m.resource_version.get_or_insert_with(|| "1".into());
        m.creation_timestamp.get_or_insert(Time(now));
        let svc = m
            .labels
            .as_ref()
            .and_then(|l| l.get("kubernetes.io/service-name"))
            .cloned()
            .unwrap_or_default();
        overrides.entry(format!("{ns}/{svc}")).or_default().push(slice);
    }
    let mut out = Vec::new();
    for svc in &plan.services {
        match overrides.remove(&svc.key()) {
            Some(slices) => out.extend(slices),
            None => out.extend(derive_slices(svc, &plan.pods, plan, now)),
        }
    }
    Ok(out)
}

/// The topology hints the slice controller gives a ready endpoint on `node` of a Service with a
/// `trafficDistribution`: its own zone, and its own node under `PreferSameNode`.
fn hints(
    svc: &ServicePlan,
    node: &crate::plan::NodePlan,
    ready: bool,
) -> Option<k8s_openapi::api::discovery::v1::EndpointHints> {
    use k8s_openapi::api::discovery::v1::{EndpointHints, ForNode, ForZone};
    let distribution = svc.traffic_distribution.as_deref().filter(|_| ready)?;
    let for_zones = node.zone.as_ref().map(|z| vec![ForZone { name: z.clone() }]);
    let for_nodes = (distribution == "PreferSameNode").then(|| {
        vec![ForNode {
            name: node.name.clone(),
        }]
    });
    (for_zones.is_some() || for_nodes.is_some()).then_some(EndpointHints { for_zones, for_nodes })
}

/// A Service port resolved for one pod: (port name, target port, protocol).
type ResolvedPort = (Option<String>, u16, &'static str);

/// The EndpointSlices the EndpointSlice controller writes for `svc`: a set per family of the
/// Service (slices hold one address type each).
pub fn derive_slices(svc: &ServicePlan, pods: &[PodPlan], plan: &Plan, now: Timestamp) -> Vec<EndpointSlice> {
    svc.families
        .iter()
        .flat_map(|&f| derive_family_slices(svc, pods, plan, now, f))
        .collect()
}

/// One family's slices: selected pods grouped by their resolved ports (a named targetPort
/// resolves per pod; a pod lacking it is left out of that port, so a pod resolving none sits in a
/// slice with no ports, which routes nothing), not-ready pods kept with `ready: false`, and one
/// empty placeholder slice when nothing is selected.
fn derive_family_slices(
    svc: &ServicePlan,
    pods: &[PodPlan],
    plan: &Plan,
    now: Timestamp,
    family: IpFamily,
) -> Vec<EndpointSlice> {
    let Some(selector) = &svc.selector else {
        return Vec::new();
    };
    let mut groups: BTreeMap<Vec<ResolvedPort>, Vec<&PodPlan>> = BTreeMap::new();
    for p in pods {
        if p.spec.namespace != svc.namespace || !labels_match(selector, &p.spec.labels) {
            continue;
        }
        let ports: Vec<_> = svc
            .ports
            .iter()
            .filter_map(|sp| {
                let target = match sp.effective_target() {
                    TargetPort::Number(n) => Some(n),
                    // As upstream's FindPort: regular containers first, then native sidecars.
                    TargetPort::Name(name) => p
                        .spec
                        .ports
                        .iter()
                        .chain(&p.spec.sidecar_ports)
                        .find(|cp| cp.name.as_deref() == Some(name.as_str()) && cp.protocol == sp.protocol)
                        .map(|cp| cp.container_port),
                }?;
                Some((sp.name.clone(), target, sp.protocol.as_k8s()))
            })
            .collect();
        groups.entry(ports).or_default().push(p);
    }
    let mut labels = BTreeMap::from([
        ("kubernetes.io/service-name".to_string(), svc.name.clone()),
        (
            "endpointslice.kubernetes.io/managed-by".to_string(),
            "endpointslice-controller.k8s.io".to_string(),
        ),
    ]);
    if svc.cluster_ip.is_none() {
        labels.insert("service.kubernetes.io/headless".into(), String::new());
    }
    let slice = |ports: Vec<EndpointPort>, endpoints: Vec<Endpoint>, index: usize| {
        let seed = match family {
            IpFamily::V4 => index.to_string(),
            IpFamily::V6 => format!("{index}-v6"),
        };
        let name = format!("{}-{}", svc.name, &uid("slice", &svc.key(), &seed)[..5]);
        let mut metadata = meta("EndpointSlice", Some(&svc.namespace), &name, now);
        metadata.labels = Some(labels.clone());
        metadata.generate_name = Some(format!("{}-", svc.name));
        metadata.owner_references = Some(vec![
            k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference {
                api_version: "v1".into(),
                kind: "Service".into(),
                name: svc.name.clone(),
                uid: uid("Service", &svc.namespace, &svc.name),
                controller: Some(true),
                block_owner_deletion: Some(true),
            },
        ]);
        EndpointSlice {
            address_type: family.as_k8s().into(),
            endpoints,
            metadata,
            ports: Some(ports),
        }
    };
    if groups.is_empty() {
        return vec![slice(Vec::new(), Vec::new(), 0)];
    }
    groups
        .into_iter()
        .enumerate()
        .map(|(i, (ports, members))| {
            let ports = ports
                .into_iter()
                .map(|(name, port, protocol)| EndpointPort {
                    name: Some(name.unwrap_or_default()),
                    port: Some(i32::from(port)),
                    protocol: Some(protocol.into()),
                    app_protocol: None,
                })
                .collect();
            let endpoints = members
                .into_iter()
                .filter_map(|p| Some((p, p.addr(family)?)))
                .map(|(p, ip)| Endpoint {
                    addresses: vec![ip.to_string()],
                    conditions: Some(EndpointConditions {
                        ready: Some(p.spec.ready && !p.spec.terminating),
                        serving: Some(p.spec.ready),
                        terminating: Some(p.spec.terminating),
                    }),
                    node_name: Some(plan.nodes[p.node].name.clone()),
                    zone: plan.nodes[p.node].zone.clone(),
                    hints: hints(svc, &plan.nodes[p.node], p.spec.ready && !p.spec.terminating),
                    target_ref: Some(ObjectReference {
                        kind: Some("Pod".into()),
                        namespace: Some(p.spec.namespace.clone()),
                        name: Some(p.spec.name.clone()),
                        uid: Some(uid("Pod", &p.spec.namespace, &p.spec.name)),
                        ..Default::default()
                    }),
                    ..Default::default()
                })
                .collect();
            slice(ports, endpoints, i)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn setup(text: &str) -> (Scenario, Plan) {
        let s = Scenario::parse(text).unwrap();
        let plan = Plan::new(&s, "nl000001", false).unwrap();
        (s, plan)
    }

    fn slices_of(text: &str, svc: &str) -> Vec<EndpointSlice> {
        let (s, plan) = setup(text);
        endpoint_slices(&s, &plan, Timestamp::UNIX_EPOCH)
            .unwrap()
            .into_iter()
            .filter(|e| e.metadata.labels.as_ref().unwrap()["kubernetes.io/service-name"] == svc)
            .collect()
    }

    const SHOP: &str = "name: t\nnodes: [a, b]\npods:\n\
        - {namespace: shop, name: p0, node: a, labels: {app: pay}, ports: [{name: http, containerPort: 8080}]}\n\
        - {namespace: shop, name: p1, node: b, labels: {app: pay}, ready: false, ports: [{name: http, containerPort: 9090}]}\n\
        - {namespace: shop, name: p2, node: b, labels: {app: pay}}\n\
        - {namespace: other, name: p3, node: b, labels: {app: pay}, ports: [{name: http, containerPort: 8080}]}\n\
        services:\n- {namespace: shop, name: pay, selector: {app: pay}, ports: [{name: web, port: 80, targetPort: http}]}\n\
        - {namespace: shop, name: num, selector: {app: pay}, ports: [{name: web, port: 80, targetPort: 7000}]}\n\
        - {namespace: shop, name: none, selector: {app: nothing}, ports: [{name: web, port: 80}]}\n\
        - {namespace: shop, name: manual, ports: [{name: web, port: 80}]}\n";

    fn endpoints(slice: &EndpointSlice) -> Vec<(String, Option<bool>)> {
        slice
            .endpoints
            .iter()
            .map(|e| {
                (
                    e.target_ref.as_ref().unwrap().name.clone().unwrap(),
                    e.conditions.as_ref().unwrap().ready,
                )
            })
            .collect()
    }

    #[test]
    fn named_target_port_resolves_per_pod_and_pods_without_it_get_no_port() {
        let slices = slices_of(SHOP, "pay");
        assert_eq!(slices.len(), 3, "{slices:#?}");
        let mut by_port: Vec<_> = slices
            .iter()
            .map(|s| {
                let ports = s.ports.as_ref().unwrap();
                (ports.first().and_then(|p| p.port), endpoints(s))
            })
            .collect();
        by_port.sort();
        assert_eq!(
            by_port,
            [
                // As the controller does: p2 lacks the named port, so its slice has no ports.
                (None, vec![("p2".into(), Some(true))]),
                (Some(8080), vec![("p0".into(), Some(true))]),
                (Some(9090), vec![("p1".into(), Some(false))])
            ]
        );
        let named: Vec<_> = slices
            .iter()
            .flat_map(|s| s.ports.iter().flatten())
            .map(|p| p.name.as_deref())
            .collect();
        assert_eq!(named, [Some("web"), Some("web")]);
    }

    #[test]
    fn sidecar_ports_resolve_named_targets_and_terminating_pods_keep_serving() {
        let text = "name: t\nnodes: [a]\npods:\n\
            - {namespace: shop, name: p0, node: a, labels: {app: pay}, terminating: true,\n\
               sidecarPorts: [{name: metrics, containerPort: 9090}]}\n\
            services:\n- {namespace: shop, name: pay, selector: {app: pay}, ports: [{name: m, port: 90, targetPort: metrics}]}\n";
        let (_, plan) = setup(text);
        let p0 = plan.pods.iter().find(|p| p.spec.name == "p0").unwrap();
        let pod = pod(&plan, p0, Timestamp::UNIX_EPOCH);
        let sidecar = &pod.spec.as_ref().unwrap().init_containers.as_ref().unwrap()[0];
        assert_eq!(sidecar.restart_policy.as_deref(), Some("Always"));
        assert!(pod.metadata.deletion_timestamp.is_some());
        let slices = slices_of(text, "pay");
        assert_eq!(slices[0].ports.as_ref().unwrap()[0].port, Some(9090));
        let c = slices[0].endpoints[0].conditions.clone().unwrap();
        assert_eq!(
            (c.ready, c.serving, c.terminating),
            (Some(false), Some(true), Some(true))
        );
    }

    #[test]
    fn numeric_target_port_selects_every_matching_pod_in_the_namespace() {
        let slices = slices_of(SHOP, "num");
        assert_eq!(slices.len(), 1);
        let names: Vec<String> = endpoints(&slices[0]).into_iter().map(|(n, _)| n).collect();
        assert_eq!(names, ["p0", "p1", "p2"]);
        assert_eq!(slices[0].ports.as_ref().unwrap()[0].port, Some(7000));
    }

    #[test]
    fn selector_matching_nothing_gives_one_empty_placeholder_slice() {
        let slices = slices_of(SHOP, "none");
        assert_eq!(slices.len(), 1);
        assert!(slices[0].endpoints.is_empty());
    }

    #[test]
    fn dual_stack_objects_list_both_families_primary_first() {
        let text = "name: t\nnodes: [a]\nipFamilies: [IPv6, IPv4]\npods:\n\
             - {namespace: shop, name: p0, node: a, labels: {app: pay}}\n\
             services:\n- {namespace: shop, name: pay, selector: {app: pay}, ports: [{port: 80}]}\n\
             - {namespace: shop, name: v4, ipFamilies: [IPv4], selector: {app: pay}, ports: [{port: 80}]}\n";
        let (s, plan) = setup(text);
        let objs = all_objects(&s, &plan, Timestamp::UNIX_EPOCH).unwrap();
        let find = |kind: &str, name: &str| {
            objs.iter()
                .find(|o| o["kind"] == kind && o["metadata"]["name"] == name)
                .cloned()
                .unwrap()
        };
        let pod = find("Pod", "p0");
        assert_eq!(pod["status"]["podIP"], "fd00:10:244:1::2");
        assert_eq!(
            pod["status"]["podIPs"],
            serde_json::json!([{"ip": "fd00:10:244:1::2"}, {"ip": "10.244.1.2"}])
        );
        let svc = find("Service", "pay");
        assert_eq!(
            svc["spec"]["clusterIPs"],
            serde_json::json!(["fd00:10:96::101", "10.96.1.1"])
        );
        assert_eq!(svc["spec"]["ipFamilies"], serde_json::json!(["IPv6", "IPv4"]));
        assert_eq!(svc["spec"]["ipFamilyPolicy"], "PreferDualStack");
        let single = find("Service", "v4");
        assert_eq!(single["spec"]["ipFamilies"], serde_json::json!(["IPv4"]));
        assert_eq!(single["spec"]["ipFamilyPolicy"], "SingleStack");
        let node = find("Node", "a");
        assert_eq!(
            node["spec"]["podCIDRs"],
            serde_json::json!(["fd00:10:244:1::/64", "10.244.1.0/24"])
        );

        let slices = slices_of(text, "pay");
        let by_type: Vec<(String, Vec<String>)> = slices
            .iter()
            .map(|s| {
                (
                    s.address_type.clone(),
                    s.endpoints.iter().flat_map(|e| e.addresses.clone()).collect(),
                )
            })
            .collect();
        assert_eq!(
            by_type,
            [
                ("IPv6".to_string(), vec!["fd00:10:244:1::2".to_string()]),
                ("IPv4".to_string(), vec!["10.244.1.2".to_string()])
            ]
        );
        assert_ne!(slices[0].metadata.name, slices[1].metadata.name);
        assert_eq!(slices_of(text, "v4").len(), 1);
    }

    #[test]
    fn service_without_selector_gets_no_slices() {
        assert!(slices_of(SHOP, "manual").is_empty());
    }

    #[test]
    fn override_replaces_the_derived_slices_of_its_service() {
        let text = format!(
            "{SHOP}endpointSlices:\n- metadata: {{name: pay-stale, namespace: shop, labels: \
             {{kubernetes.io/service-name: pay}}}}\n  ports: [{{name: web, port: 8080, protocol: TCP}}]\n  \
             endpoints: [{{addresses: [10.244.1.99], conditions: {{ready: true}}}}]\n"
        );
        let slices = slices_of(&text, "pay");
        assert_eq!(slices.len(), 1);
        assert_eq!(slices[0].metadata.name.as_deref(), Some("pay-stale"));
        assert_eq!(slices[0].endpoints[0].addresses, ["10.244.1.99"]);
    }

    #[test]
    fn objects_carry_api_version_kind_and_namespace_name_label() {
        let text = format!(
            "{SHOP}objects:\n- apiVersion: networking.k8s.io/v1\n  kind: NetworkPolicy\n  \
             metadata: {{name: deny, namespace: shop}}\n  spec: {{podSelector: {{}}}}\n"
        );
        let (s, plan) = setup(&text);
        let objs = all_objects(&s, &plan, Timestamp::UNIX_EPOCH).unwrap();
        let find = |kind: &str, name: &str| {
            objs.iter()
                .find(|o| o["kind"] == kind && o["metadata"]["name"] == name)
                .cloned()
                .unwrap()
        };
        let ns = find("Namespace", "shop");
        assert_eq!(ns["apiVersion"], "v1");
        assert_eq!(ns["metadata"]["labels"]["kubernetes.io/metadata.name"], "shop");
        let pod = find("Pod", "p1");
        assert_eq!(
            pod["status"]["podIP"],
            plan.pod("shop/p1").unwrap().ip.to_string()
        );
        assert_eq!(pod["spec"]["nodeName"], "b");
        let ready = pod["status"]["conditions"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["type"] == "Ready")
            .cloned();
        assert_eq!(ready.unwrap()["status"], "False");
        let np = find("NetworkPolicy", "deny");
        assert!(np["metadata"]["uid"].is_string());
        let dns = find("Service", "kube-dns");
        assert_eq!(dns["spec"]["clusterIP"], "10.96.0.10");
    }

    #[test]
    fn external_services_carry_their_type_node_ports_policy_source_ranges_and_load_balancer_status() {
        let text = "name: t\nnodes: [a]\nservices:\n\
            - {namespace: shop, name: lb, type: LoadBalancer, loadBalancerIP: 203.0.113.10, \
               externalTrafficPolicy: Local, loadBalancerSourceRanges: [192.0.2.0/24, '2001:db8::/64'], \
               ports: [{port: 80, nodePort: 30080}]}\n\
            - {namespace: shop, name: np, type: NodePort, ports: [{port: 81, nodePort: 30081}]}\n\
            - {namespace: shop, name: plain, ports: [{port: 82}]}\n";
        let (s, plan) = setup(text);
        let objs = all_objects(&s, &plan, Timestamp::UNIX_EPOCH).unwrap();
        let find = |name: &str| {
            objs.iter()
                .find(|o| o["kind"] == "Service" && o["metadata"]["name"] == name)
                .cloned()
                .unwrap()
        };
        let lb = find("lb");
        assert_eq!(lb["spec"]["type"], "LoadBalancer");
        assert_eq!(lb["spec"]["ports"][0]["nodePort"], 30080);
        assert_eq!(lb["spec"]["externalTrafficPolicy"], "Local");
        assert_eq!(lb["spec"]["healthCheckNodePort"], 32767);
        assert_eq!(lb["spec"]["allocateLoadBalancerNodePorts"], true);
        assert_eq!(
            lb["spec"]["loadBalancerSourceRanges"],
            serde_json::json!(["192.0.2.0/24", "2001:db8::/64"])
        );
        assert_eq!(
            lb["status"],
            serde_json::json!({"loadBalancer": {"ingress": [{"ip": "203.0.113.10", "ipMode": "VIP"}]}})
        );
        let np = find("np");
        assert_eq!(np["spec"]["type"], "NodePort");
        assert_eq!(np["spec"]["externalTrafficPolicy"], "Cluster");
        assert!(np["spec"].get("healthCheckNodePort").is_none());
        assert!(np["spec"].get("loadBalancerSourceRanges").is_none());
        assert!(np.get("status").is_none());
        let plain = find("plain");
        assert_eq!(plain["spec"]["type"], "ClusterIP");
        assert!(plain["spec"].get("externalTrafficPolicy").is_none());
        assert!(plain["spec"]["ports"][0].get("nodePort").is_none());
    }

    #[test]
    fn unsupported_object_kinds_are_named() {
        let obj =
            serde_json::json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "x"}});
        assert_eq!(
            resource_of(&obj).unwrap_err().to_string(),
            "object kind Deployment in apps/v1 is not one the lab serves"
        );
    }
}
