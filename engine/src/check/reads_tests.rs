//! The read plan on plain values: which reads a request needs, round after round.

use std::time::Duration;

use serde_json::{Value, json};

use super::*;
use crate::check::target::Target;

fn request(target: Target) -> CheckRequest {
    CheckRequest {
        from: NamespacedName::new("shop", "checkout"),
        target,
        target_namespace: "shop".into(),
        to_text: String::new(),
        timeout: Duration::from_secs(1),
    }
}

fn svc_target(name: &str, namespace: &str) -> Target {
    Target::Service {
        name: name.into(),
        namespace: Some(namespace.into()),
        port: crate::cluster::PortRef::Number(80),
        protocol: None,
    }
}

fn key(ns: &str, name: &str) -> NamespacedName {
    NamespacedName::new(ns, name)
}

fn pod(ns: &str, name: &str, ip: &str) -> Pod {
    serde_json::from_value(json!({"metadata": {"namespace": ns, "name": name},
        "status": {"podIP": ip, "podIPs": [{"ip": ip}]}}))
    .unwrap()
}

fn service(ns: &str, name: &str, selector: Value, cluster_ip: &str) -> Service {
    serde_json::from_value(json!({"metadata": {"namespace": ns, "name": name},
        "spec": {"selector": selector, "clusterIP": cluster_ip}}))
    .unwrap()
}

/// A slice of `service` whose endpoints are (address, pod name or none).
fn slice(ns: &str, service: &str, endpoints: &[(&str, Option<&str>)]) -> EndpointSlice {
    let endpoints: Vec<Value> = endpoints
        .iter()
        .map(|(ip, pod)| match pod {
            Some(pod) => json!({"addresses": [ip], "targetRef": {"kind": "Pod", "name": pod}}),
            None => json!({"addresses": [ip]}),
        })
        .collect();
    serde_json::from_value(
        json!({"metadata": {"namespace": ns, "name": format!("{service}-x"),
        "labels": {SERVICE_NAME_LABEL: service}}, "addressType": "IPv4", "endpoints": endpoints}),
    )
    .unwrap()
}

struct World {
    pods: Vec<Pod>,
    services: Vec<Service>,
    slices: Vec<EndpointSlice>,
    nodes: crate::check::snapshot::NodeAddresses,
    policies: bool,
    done: BTreeSet<Read>,
}

impl World {
    /// A cluster where only the source pod has been seen.
    fn with_source() -> Self {
        World {
            pods: vec![pod("shop", "checkout", "10.0.0.1")],
            ..World::empty()
        }
    }

    fn empty() -> Self {
        World {
            pods: vec![],
            services: vec![],
            slices: vec![],
            nodes: Default::default(),
            policies: false,
            done: BTreeSet::new(),
        }
    }

    /// The reads not yet done; marks them done.
    fn round(&mut self, request: &CheckRequest) -> BTreeSet<Read> {
        let seen = Seen {
            pods: &self.pods,
            services: &self.services,
            slices: &self.slices,
            node_addresses: &self.nodes,
            policies: self.policies,
            done: &self.done,
        };
        let todo: BTreeSet<Read> = needed(request, None, &seen)
            .into_iter()
            .filter(|r| !self.done.contains(r))
            .collect();
        self.done.extend(todo.iter().cloned());
        todo
    }
}

fn evaluated(namespace: &str) -> [Read; 2] {
    [
        Read::Namespace(namespace.into()),
        Read::PoliciesIn(namespace.into()),
    ]
}

#[test]
fn a_service_check_reads_source_target_slices_and_dns_first_then_the_pods_they_name() {
    let request = request(svc_target("payments", "shop"));
    let mut world = World::empty();
    let first = world.round(&request);
    let mut expected: BTreeSet<Read> = [
        Read::Pod(key("shop", "checkout")),
        Read::Service(key("shop", "payments")),
        Read::SlicesOf(key("shop", "payments")),
        Read::Service(NamespacedName::kube_dns()),
        Read::SlicesOf(NamespacedName::kube_dns()),
        Read::Admin,
    ]
    .into_iter()
    .collect();
    expected.extend(evaluated("shop"));
    expected.extend(evaluated("kube-system"));
    assert_eq!(first, expected);

    world.pods.push(pod("shop", "checkout", "10.0.0.1"));
    world.services.push(service(
        "shop",
        "payments",
        json!({"app": "payments"}),
        "10.96.0.7",
    ));
    world.services.push(service(
        "kube-system",
        "kube-dns",
        json!({"k8s-app": "kube-dns"}),
        "10.96.0.10",
    ));
    world.slices.push(slice(
        "shop",
        "payments",
        &[("10.0.1.1", Some("payments-0")), ("10.0.1.2", Some("payments-1"))],
    ));
    world.slices.push(slice(
        "kube-system",
        "kube-dns",
        &[("10.0.2.1", Some("coredns-0"))],
    ));
    let second = world.round(&request);
    assert_eq!(
        second,
        [
            Read::PodsSelected {
                namespace: "shop".into(),
                selector: "app=payments".into()
            },
            Read::PodsSelected {
                namespace: "kube-system".into(),
                selector: "k8s-app=kube-dns".into()
            },
        ]
        .into_iter()
        .collect(),
        "the pods come by selector, not one by one"
    );

    // The selector returned payments-0 only: payments-1, named by the slice, is read by name.
    world.pods.push(pod("shop", "payments-0", "10.0.1.1"));
    world.pods.push(pod("kube-system", "coredns-0", "10.0.2.1"));
    let third = world.round(&request);
    assert_eq!(
        third,
        [Read::Pod(key("shop", "payments-1"))].into_iter().collect()
    );
    world.pods.push(pod("shop", "payments-1", "10.0.1.2"));
    assert!(world.round(&request).is_empty(), "nothing more to read");
    assert!(
        world
            .done
            .iter()
            .all(|r| r.namespace().is_some() || r.verb() == "get" || *r == Read::Admin),
        "no list across all namespaces: {:?}",
        world.done
    );
}

#[test]
fn what_enforces_policy_is_read_only_once_a_policy_was_found() {
    let request = request(svc_target("payments", "shop"));
    let mut world = World::with_source();
    let first = world.round(&request);
    assert!(!first.contains(&Read::DaemonSets), "{first:?}");
    assert!(!world.round(&request).contains(&Read::DaemonSets));
    world.policies = true;
    assert_eq!(
        world.round(&request).into_iter().collect::<Vec<_>>(),
        [Read::DaemonSets],
        "one more read, and nothing else"
    );
    assert!(Read::DaemonSets.is_hint());
    assert_eq!(Read::DaemonSets.access().unwrap().resource, "daemonsets.apps");
}

#[test]
fn the_source_node_is_read_by_name_only_once_an_endpoint_carries_zone_hints() {
    let request = request(svc_target("payments", "shop"));
    let mut world = World::with_source();
    world.pods[0].spec =
        Some(serde_json::from_value(json!({"nodeName": "node-a", "containers": []})).unwrap());
    world.slices = vec![slice("shop", "payments", &[("10.0.0.9", Some("payments-0"))])];
    assert!(!world.round(&request).iter().any(|r| matches!(r, Read::Node(_))));
    world.slices[0].endpoints[0].hints =
        Some(serde_json::from_value(json!({"forZones": [{"name": "zone-a"}]})).unwrap());
    let next = world.round(&request);
    assert!(next.contains(&Read::Node("node-a".into())), "{next:?}");
    let access = Read::Node("node-a".into()).access().unwrap();
    assert_eq!(access.can_i(), "kubectl auth can-i get nodes/node-a");
}

#[test]
fn a_missing_source_or_service_reads_the_names_that_may_have_been_meant() {
    let request = request(svc_target("paymnts", "shop"));
    let mut world = World::empty();
    world.round(&request);
    let second = world.round(&request);
    assert!(second.contains(&Read::PodsNamed("checkout".into())), "{second:?}");
    assert!(second.contains(&Read::ServicesIn("shop".into())), "{second:?}");
    assert!(
        second.contains(&Read::ServicesNamed("paymnts".into())),
        "{second:?}"
    );
    assert!(second.iter().all(Read::is_hint), "{second:?}");
}

#[test]
fn a_found_service_needs_no_hints() {
    let request = request(svc_target("payments", "shop"));
    let mut world = World::empty();
    world.pods.push(pod("shop", "checkout", "10.0.0.1"));
    world.services.push(service(
        "shop",
        "payments",
        json!({"app": "payments"}),
        "10.96.0.7",
    ));
    world.round(&request);
    assert!(!world.done.iter().any(Read::is_hint), "{:?}", world.done);
}

#[test]
fn an_address_is_looked_up_by_field_selector_then_read_as_its_service_or_pod() {
    let ip = "10.96.0.7".parse().unwrap();
    let request = request(Target::Ip { ip, port: 80 });
    let mut world = World::with_source();
    let first = world.round(&request);
    assert!(first.contains(&Read::ServicesWithClusterIp(ip)), "{first:?}");
    assert!(first.contains(&Read::PodsWithIp(ip)), "{first:?}");
    assert!(
        !first.iter().any(|r| matches!(r, Read::Service(_))),
        "no DNS for an address: {first:?}"
    );
    world
        .services
        .push(service("billing", "ledger", Value::Null, "10.96.0.7"));
    let second = world.round(&request);
    let mut expected: BTreeSet<Read> = [
        Read::Service(key("billing", "ledger")),
        Read::SlicesOf(key("billing", "ledger")),
    ]
    .into_iter()
    .collect();
    expected.extend(evaluated("billing"));
    assert_eq!(second, expected);

    // A pod's address: its namespace is evaluated.
    let pod_ip = "10.0.3.3".parse().unwrap();
    let request = super::tests::request(Target::Ip { ip: pod_ip, port: 80 });
    let mut world = World::with_source();
    world.round(&request);
    world.pods.push(pod("ops", "tool-0", "10.0.3.3"));
    assert_eq!(world.round(&request), evaluated("ops").into_iter().collect());
}

#[test]
fn an_endpoint_no_slice_ties_to_a_pod_is_looked_up_by_address() {
    let request = request(svc_target("legacy", "shop"));
    let mut world = World::with_source();
    world.round(&request);
    world
        .services
        .push(service("shop", "legacy", Value::Null, "10.96.0.8"));
    world.slices.push(slice("shop", "legacy", &[("10.0.9.9", None)]));
    let ip = "10.0.9.9".parse().unwrap();
    assert_eq!(
        world.round(&request),
        [Read::PodsWithIp(ip)].into_iter().collect()
    );
    world.pods.push(pod("stale", "old-0", "10.0.9.9"));
    assert_eq!(world.round(&request), evaluated("stale").into_iter().collect());
}

#[test]
fn each_read_names_its_verb_resource_and_namespace() {
    let read = Read::Pod(key("shop", "checkout"));
    assert_eq!(
        (read.verb(), read.resource(), read.namespace()),
        ("get", "pods", Some("shop"))
    );
    assert_eq!(read.action(), "get pods/checkout in namespace shop");
    let read = Read::SlicesOf(key("shop", "payments"));
    assert_eq!(
        read.action(),
        "list endpointslices in namespace shop with selector kubernetes.io/service-name=payments"
    );
    let read = Read::PodsWithIp("10.0.0.1".parse().unwrap());
    assert_eq!((read.verb(), read.namespace()), ("list", None));
}

#[test]
fn the_agent_pods_are_read_by_their_selector_when_asked() {
    let request = request(Target::Pod {
        name: "payments-0".into(),
        namespace: None,
        port: crate::cluster::PortRef::Number(8080),
    });
    let agents = AgentPlace {
        namespace: "netdiag".into(),
        selector: "app=netdiag-agent".into(),
    };
    let done = BTreeSet::new();
    let seen = Seen {
        pods: &[],
        services: &[],
        slices: &[],
        node_addresses: &Default::default(),
        policies: false,
        done: &done,
    };
    let reads = needed(&request, Some(&agents), &seen);
    assert!(reads.contains(&Read::PodsSelected {
        namespace: "netdiag".into(),
        selector: "app=netdiag-agent".into()
    }));
    assert!(reads.contains(&Read::Pod(key("shop", "payments-0"))));
    assert!(!reads.iter().any(|r| matches!(r, Read::Service(_))), "{reads:?}");
}

#[test]
fn only_kube_system_reads_of_a_check_outside_it_are_the_cluster_dns_s_alone() {
    let service = request(svc_target("payments", "shop"));
    let dns = key("kube-system", "kube-dns");
    assert!(is_cluster_dns_only(&service, &Read::Service(dns.clone())));
    assert!(is_cluster_dns_only(&service, &Read::SlicesOf(dns.clone())));
    assert!(is_cluster_dns_only(
        &service,
        &Read::PoliciesIn("kube-system".into())
    ));
    assert!(!is_cluster_dns_only(
        &service,
        &Read::Service(key("shop", "payments"))
    ));
    assert!(is_cluster_dns_only(
        &service,
        &Read::Namespace("kube-system".into())
    ));
    // The flow's own Namespaces, and all-namespace and cluster-wide reads, are everyone's.
    assert!(!is_cluster_dns_only(&service, &Read::Namespace("shop".into())));
    assert!(!is_cluster_dns_only(
        &service,
        &Read::PodsNamed("checkout".into())
    ));
    assert!(!is_cluster_dns_only(&service, &Read::Admin));

    // A check of kube-dns itself, or from kube-system, depends on those reads.
    let of_dns = request(svc_target("kube-dns", "kube-system"));
    assert!(!is_cluster_dns_only(&of_dns, &Read::Service(dns.clone())));
    let mut from_dns = request(svc_target("payments", "shop"));
    from_dns.from = key("kube-system", "debug");
    assert!(!is_cluster_dns_only(&from_dns, &Read::SlicesOf(dns.clone())));
    let host = request(Target::Host {
        host: "kube-dns.kube-system".into(),
        port: 53,
    });
    assert!(!is_cluster_dns_only(&host, &Read::Service(dns.clone())));

    // An address's Service may be anywhere, kube-system included.
    let address = request(Target::Ip {
        ip: "10.96.0.10".parse().expect("an address"),
        port: 53,
    });
    assert!(!is_cluster_dns_only(&address, &Read::Service(dns)));
}

#[test]
fn each_read_names_the_permission_it_needs() {
    let can_i = |read: Read| read.access().map(|a| a.can_i());
    assert_eq!(
        can_i(Read::Pod(key("shop", "checkout"))).as_deref(),
        Some("kubectl auth can-i get pods/checkout -n shop")
    );
    assert_eq!(
        can_i(Read::SlicesOf(key("kube-system", "kube-dns"))).as_deref(),
        Some("kubectl auth can-i list endpointslices.discovery.k8s.io -n kube-system")
    );
    assert_eq!(
        can_i(Read::PoliciesIn("shop".into())).as_deref(),
        Some("kubectl auth can-i list networkpolicies.networking.k8s.io -n shop")
    );
    assert_eq!(
        can_i(Read::Namespace("shop".into())).as_deref(),
        Some("kubectl auth can-i get namespaces/shop -n shop")
    );
    assert_eq!(
        can_i(Read::PodsWithIp("10.244.1.5".parse().expect("an address"))).as_deref(),
        Some("kubectl auth can-i list pods --all-namespaces")
    );
    assert_eq!(can_i(Read::Admin), None);
}

#[test]
fn an_address_neither_a_cluster_ip_nor_a_pods_lists_node_port_services_then_nodes_for_their_port() {
    let ip = "172.18.0.3".parse().unwrap();
    let request = request(Target::Ip { ip, port: 30080 });
    let by_type = |t: &str| Read::ServicesOfType(t.into());
    let mut world = World::with_source();
    let first = world.round(&request);
    assert!(
        first.contains(&by_type("NodePort")),
        "in the first round: {first:?}"
    );
    assert!(first.contains(&by_type("LoadBalancer")), "{first:?}");
    assert!(
        !world.round(&request).contains(&Read::Nodes),
        "no node port is 30080"
    );
    assert!(by_type("NodePort").is_hint() && Read::Nodes.is_hint());
    // A Service's node port is the port: whether the address is a node's, from the Nodes.
    let web = |node_port: i32| -> Service {
        serde_json::from_value(json!({"metadata": {"namespace": "shop", "name": "web"},
            "spec": {"type": "NodePort", "clusterIP": "10.96.0.9", "selector": {"app": "web"},
                     "ports": [{"port": 80, "nodePort": node_port}]}}))
        .unwrap()
    };
    let mut other_port = World::with_source();
    other_port.round(&request);
    other_port.services.push(web(30081));
    assert!(!other_port.round(&request).contains(&Read::Nodes));
    world.services.push(web(30080));
    assert_eq!(world.round(&request), BTreeSet::from([Read::Nodes]));
    world.nodes.insert("node-b".into(), vec![ip]);
    let fourth = world.round(&request);
    assert!(fourth.contains(&Read::SlicesOf(key("shop", "web"))), "{fourth:?}");

    // A pod's address never lists the Nodes.
    let pod_ip = "10.0.3.3".parse().unwrap();
    let request = super::tests::request(Target::Ip {
        ip: pod_ip,
        port: 30080,
    });
    let mut world = World::with_source();
    world.round(&request);
    world.services.push(web(30080));
    world.pods.push(pod("ops", "tool-0", "10.0.3.3"));
    assert!(!world.round(&request).contains(&Read::Nodes));
}
