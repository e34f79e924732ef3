//! Unit tests: one behaviour of `networking.k8s.io/v1` semantics per test, with plain values.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{Container, ContainerPort, Namespace, Pod, PodSpec, PodStatus};
use k8s_openapi::api::networking::v1::NetworkPolicy;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use serde_json::json;

use super::*;

fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn mk_ns(name: &str, pairs: &[(&str, &str)]) -> Namespace {
    Namespace {
        metadata: ObjectMeta {
            name: Some(name.to_string()),
            labels: Some(labels(pairs)),
            ..Default::default()
        },
        ..Default::default()
    }
}

/// A pod with `app=<name>` plus `extra` labels, an IP, and named container ports `(name, port, protocol)`.
fn mk_pod(ns: &str, name: &str, ip: &str, extra: &[(&str, &str)], ports: &[(&str, i32, &str)]) -> Pod {
    let mut pod_labels = labels(&[("app", name)]);
    pod_labels.extend(labels(extra));
    Pod {
        metadata: ObjectMeta {
            name: Some(name.to_string()),
            namespace: Some(ns.to_string()),
            labels: Some(pod_labels),
            ..Default::default()
        },
        spec: Some(PodSpec {
            containers: vec![Container {
                name: "main".to_string(),
                ports: Some(
                    ports
                        .iter()
                        .map(|(port_name, port, protocol)| ContainerPort {
                            name: Some(port_name.to_string()),
                            container_port: *port,
                            protocol: Some(protocol.to_string()),
                            ..Default::default()
                        })
                        .collect(),
                ),
                ..Default::default()
            }],
            ..Default::default()
        }),
        status: Some(PodStatus {
            pod_ip: (!ip.is_empty()).then(|| ip.to_string()),
            ..Default::default()
        }),
    }
}

fn mk_policy(ns: &str, name: &str, spec: serde_json::Value) -> NetworkPolicy {
    serde_json::from_value(json!({
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": {"name": name, "namespace": ns},
        "spec": spec,
    }))
    .expect("test policy deserializes")
}

/// Namespaces shop (team=shop) and ops (team=ops); pods shop/checkout, shop/payments (port http 8080/TCP,
/// dns 53/UDP), ops/monitor.
fn mk_world(policies: &[NetworkPolicy]) -> PolicyIndex {
    let namespaces = [
        mk_ns("shop", &[("team", "shop")]),
        mk_ns("ops", &[("team", "ops")]),
    ];
    let pods = [
        mk_pod("shop", "checkout", "10.0.1.1", &[("tier", "web")], &[]),
        mk_pod(
            "shop",
            "payments",
            "10.0.1.2",
            &[("tier", "api")],
            &[("http", 8080, "TCP"), ("dns", 53, "UDP")],
        ),
        mk_pod("ops", "monitor", "10.0.2.1", &[], &[("metrics", 9090, "TCP")]),
    ];
    PolicyIndex::new(&namespaces, &pods, policies)
}

fn flow(from: &str, to: &str, port: u16, protocol: Protocol) -> Flow {
    Flow {
        from: from.parse().unwrap(),
        to: to.parse().unwrap(),
        port,
        protocol,
    }
}

fn allowed(index: &PolicyIndex, from: &str, to: &str, port: u16) -> bool {
    index
        .evaluate(&flow(from, to, port, Protocol::Tcp))
        .unwrap()
        .allowed
}

fn policy_ref(ns: &str, name: &str) -> PolicyRef {
    PolicyRef {
        namespace: ns.to_string(),
        name: name.to_string(),
    }
}

fn deny_all_ingress(ns: &str) -> NetworkPolicy {
    mk_policy(ns, "default-deny", json!({"podSelector": {}}))
}

#[test]
fn no_policy_leaves_both_sides_unisolated_and_allowed() {
    let index = mk_world(&[]);
    let verdict = index
        .evaluate(&flow("shop/checkout", "shop/payments", 8080, Protocol::Tcp))
        .unwrap();
    assert!(verdict.allowed);
    assert!(!verdict.egress.isolated && !verdict.ingress.isolated);
    assert!(verdict.egress.applies && verdict.ingress.applies);
}

#[test]
fn absent_policy_types_isolate_ingress_but_not_egress_without_egress_rules() {
    let index = mk_world(&[deny_all_ingress("shop")]);
    let verdict = index
        .evaluate(&flow("shop/checkout", "shop/payments", 8080, Protocol::Tcp))
        .unwrap();
    assert!(verdict.ingress.isolated && !verdict.ingress.allowed);
    assert!(!verdict.egress.isolated && verdict.egress.allowed);
    assert!(allowed(&index, "shop/checkout", "ops/monitor", 9090));
}

#[test]
fn absent_policy_types_with_an_egress_section_isolate_both_directions() {
    let policy = mk_policy(
        "shop",
        "egress-to-ops",
        json!({"podSelector": {"matchLabels": {"app": "checkout"}},
               "egress": [{"to": [{"namespaceSelector": {"matchLabels": {"team": "ops"}}}]}]}),
    );
    let index = mk_world(&[policy]);
    assert!(allowed(&index, "shop/checkout", "ops/monitor", 9090));
    assert!(
        !allowed(&index, "shop/checkout", "shop/payments", 8080),
        "egress isolated"
    );
    assert!(
        !allowed(&index, "ops/monitor", "shop/checkout", 80),
        "ingress isolated with no rules"
    );
}

#[test]
fn absent_policy_types_with_an_empty_egress_list_isolate_ingress_only() {
    // The API server defaults policyTypes to [Egress] too only when `len(spec.egress) != 0`.
    let policy = mk_policy(
        "shop",
        "empty-egress",
        json!({"podSelector": {"matchLabels": {"app": "checkout"}}, "egress": []}),
    );
    let index = mk_world(&[policy]);
    let verdict = index
        .evaluate(&flow("shop/checkout", "ops/monitor", 9090, Protocol::Tcp))
        .unwrap();
    assert!(!verdict.egress.isolated && verdict.allowed, "{verdict:?}");
    let verdict = index
        .evaluate(&flow("ops/monitor", "shop/checkout", 80, Protocol::Tcp))
        .unwrap();
    assert!(verdict.ingress.isolated && !verdict.allowed, "{verdict:?}");
}

#[test]
fn explicit_egress_policy_type_ignores_the_ingress_section() {
    let policy = mk_policy(
        "shop",
        "egress-only",
        json!({"podSelector": {}, "policyTypes": ["Egress"],
               "ingress": [{"from": [{"podSelector": {"matchLabels": {"app": "nobody"}}}]}],
               "egress": [{}]}),
    );
    let index = mk_world(&[policy]);
    let verdict = index
        .evaluate(&flow("ops/monitor", "shop/payments", 8080, Protocol::Tcp))
        .unwrap();
    assert!(!verdict.ingress.isolated);
    assert!(verdict.allowed);
}

#[test]
fn empty_rules_list_denies_and_one_empty_rule_allows_everything() {
    let deny = mk_policy("shop", "deny", json!({"podSelector": {}, "ingress": []}));
    assert!(!allowed(
        &mk_world(std::slice::from_ref(&deny)),
        "ops/monitor",
        "shop/payments",
        8080
    ));
    let allow = mk_policy("shop", "allow", json!({"podSelector": {}, "ingress": [{}]}));
    assert!(allowed(
        &mk_world(&[deny, allow]),
        "ops/monitor",
        "shop/payments",
        8080
    ));
}

#[test]
fn policies_add_up_and_every_allowing_rule_is_reported() {
    let deny = deny_all_ingress("shop");
    let from_checkout = mk_policy(
        "shop",
        "from-checkout",
        json!({"podSelector": {}, "ingress": [
            {"from": [{"podSelector": {"matchLabels": {"app": "monitor"}}}]},
            {"from": [{"podSelector": {"matchLabels": {"app": "checkout"}}}]}]}),
    );
    let from_web = mk_policy(
        "shop",
        "from-web",
        json!({"podSelector": {"matchLabels": {"app": "payments"}},
               "ingress": [{"from": [{"podSelector": {"matchLabels": {"tier": "web"}}}]}]}),
    );
    let index = mk_world(&[deny, from_checkout, from_web]);
    let verdict = index
        .evaluate(&flow("shop/checkout", "shop/payments", 8080, Protocol::Tcp))
        .unwrap();
    assert!(verdict.allowed);
    assert_eq!(
        verdict.ingress.isolating_policies,
        vec![
            policy_ref("shop", "default-deny"),
            policy_ref("shop", "from-checkout"),
            policy_ref("shop", "from-web")
        ]
    );
    let rules: Vec<String> = verdict
        .ingress
        .allowing_rules
        .iter()
        .map(ToString::to_string)
        .collect();
    assert_eq!(
        rules,
        ["shop/from-checkout ingress[1]", "shop/from-web ingress[0]"]
    );
}

#[test]
fn pod_and_namespace_selector_in_one_peer_must_both_match() {
    let policy = mk_policy(
        "ops",
        "and",
        json!({"podSelector": {}, "ingress": [{"from": [{
            "namespaceSelector": {"matchLabels": {"team": "shop"}},
            "podSelector": {"matchLabels": {"tier": "web"}}}]}]}),
    );
    let index = mk_world(&[policy]);
    assert!(allowed(&index, "shop/checkout", "ops/monitor", 9090));
    assert!(!allowed(&index, "shop/payments", "ops/monitor", 9090));
}

#[test]
fn separate_peers_match_either() {
    let policy = mk_policy(
        "ops",
        "or",
        json!({"podSelector": {}, "ingress": [{"from": [
            {"namespaceSelector": {"matchLabels": {"team": "nobody"}}},
            {"podSelector": {"matchLabels": {"tier": "web"}}}]}]}),
    );
    let index = mk_world(&[policy]);
    // The podSelector peer has no namespaceSelector: it means ops only, so shop/checkout is not matched.
    assert!(!allowed(&index, "shop/checkout", "ops/monitor", 9090));
    let policy = mk_policy(
        "ops",
        "or",
        json!({"podSelector": {}, "ingress": [{"from": [
            {"namespaceSelector": {"matchLabels": {"team": "shop"}}},
            {"podSelector": {"matchLabels": {"tier": "nobody"}}}]}]}),
    );
    let index = mk_world(&[policy]);
    assert!(allowed(&index, "shop/payments", "ops/monitor", 9090));
}

#[test]
fn absent_namespace_selector_means_policy_namespace() {
    let policy = mk_policy(
        "shop",
        "same-ns",
        json!({"podSelector": {"matchLabels": {"app": "payments"}},
               "ingress": [{"from": [{"podSelector": {}}]}]}),
    );
    let index = mk_world(&[policy]);
    assert!(allowed(&index, "shop/checkout", "shop/payments", 8080));
    assert!(!allowed(&index, "ops/monitor", "shop/payments", 8080));
}

#[test]
fn empty_namespace_selector_means_every_namespace() {
    let policy = mk_policy(
        "shop",
        "any-ns",
        json!({"podSelector": {"matchLabels": {"app": "payments"}},
               "ingress": [{"from": [{"namespaceSelector": {}}]}]}),
    );
    let index = mk_world(&[policy]);
    assert!(allowed(&index, "ops/monitor", "shop/payments", 8080));
    assert!(allowed(&index, "shop/checkout", "shop/payments", 8080));
    assert!(
        !allowed(&index, "10.9.9.9", "shop/payments", 8080),
        "selectors never match non-pod addresses"
    );
}

#[test]
fn every_match_expressions_operator_follows_label_selector_semantics() {
    let cases = [
        (
            json!({"key": "tier", "operator": "In", "values": ["web", "db"]}),
            [true, false, false],
        ),
        (
            json!({"key": "tier", "operator": "NotIn", "values": ["web"]}),
            [false, true, true],
        ),
        (json!({"key": "tier", "operator": "Exists"}), [true, true, false]),
        (
            json!({"key": "tier", "operator": "DoesNotExist"}),
            [false, false, true],
        ),
    ];
    for (expression, expected) in cases {
        let policy = mk_policy(
            "ops",
            "expr",
            json!({"podSelector": {"matchLabels": {"app": "monitor"}},
                   "ingress": [{"from": [{"namespaceSelector": {},
                                          "podSelector": {"matchExpressions": [expression.clone()]}}]}]}),
        );
        let index = mk_world(&[policy]);
        // checkout has tier=web, payments tier=api, monitor no tier label.
        let got = [
            allowed(&index, "shop/checkout", "ops/monitor", 9090),
            allowed(&index, "shop/payments", "ops/monitor", 9090),
            allowed(&index, "ops/monitor", "ops/monitor", 9090),
        ];
        assert_eq!(got, expected, "{expression}");
    }
}

#[test]
fn ip_block_except_carves_addresses_out_of_the_cidr() {
    let policy = mk_policy(
        "shop",
        "from-cidr",
        json!({"podSelector": {}, "ingress": [{"from": [{"ipBlock": {
            "cidr": "192.168.0.0/16", "except": ["192.168.5.0/24"]}}]}]}),
    );
    let index = mk_world(&[policy]);
    assert!(allowed(&index, "192.168.1.1", "shop/payments", 8080));
    assert!(!allowed(&index, "192.168.5.7", "shop/payments", 8080));
    assert!(!allowed(&index, "10.9.9.9", "shop/payments", 8080));
}

#[test]
fn a_denial_by_an_ip_block_except_names_the_rule_the_cidr_and_the_except() {
    let policy = mk_policy(
        "shop",
        "no-partner",
        json!({"podSelector": {}, "policyTypes": ["Egress"],
               "egress": [{"to": [{"ipBlock": {"cidr": "0.0.0.0/0", "except": ["198.51.100.0/24"]}}],
                           "ports": [{"port": 443}]}]}),
    );
    let index = mk_world(&[policy]);
    let verdict = index
        .evaluate(&flow("shop/checkout", "198.51.100.10", 443, Protocol::Tcp))
        .unwrap();
    assert!(!verdict.allowed);
    assert_eq!(verdict.egress.excepted_by.len(), 1);
    assert!(
        verdict
            .explain()
            .ends_with("no rule allows to 198.51.100.10 on 443/TCP (shop/no-partner egress[0]'s ipBlock 0.0.0.0/0 excepts 198.51.100.0/24)"),
        "{}",
        verdict.explain()
    );
    // On a port the rule does not admit, the except is not the reason.
    let other_port = index
        .evaluate(&flow("shop/checkout", "198.51.100.10", 80, Protocol::Tcp))
        .unwrap();
    assert!(!other_port.allowed && other_port.egress.excepted_by.is_empty());
}

#[test]
fn ip_block_matches_pods_by_their_pod_ip() {
    let policy = mk_policy(
        "shop",
        "to-ops-ips",
        json!({"podSelector": {"matchLabels": {"app": "checkout"}}, "policyTypes": ["Egress"],
               "egress": [{"to": [{"ipBlock": {"cidr": "10.0.2.0/24"}}]}]}),
    );
    let index = mk_world(&[policy]);
    assert!(allowed(&index, "shop/checkout", "ops/monitor", 9090));
    assert!(!allowed(&index, "shop/checkout", "shop/payments", 8080));
}

/// A dual-stack pod: `ip4` as status.podIP, both in status.podIPs.
fn mk_dual_pod(ns: &str, name: &str, ip4: &str, ip6: &str) -> Pod {
    let mut pod = mk_pod(ns, name, ip4, &[], &[("http", 8080, "TCP")]);
    let status = pod.status.as_mut().unwrap();
    status.pod_ips = Some(
        [ip4, ip6]
            .iter()
            .map(|ip| k8s_openapi::api::core::v1::PodIP { ip: ip.to_string() })
            .collect(),
    );
    pod
}

#[test]
fn ip_block_admits_a_dual_stack_pod_only_in_the_family_of_its_cidr() {
    let pods = [
        mk_dual_pod("shop", "checkout", "10.0.1.1", "fd00:1::1"),
        mk_dual_pod("shop", "payments", "10.0.1.2", "fd00:1::2"),
    ];
    let policy = mk_policy(
        "shop",
        "from-ipv4-pods",
        json!({"podSelector": {"matchLabels": {"app": "payments"}},
               "ingress": [{"from": [{"ipBlock": {"cidr": "10.0.0.0/16"}}]}]}),
    );
    let index = PolicyIndex::new(&[mk_ns("shop", &[])], &pods, &[policy]);
    let flow = flow("shop/checkout", "shop/payments", 8080, Protocol::Tcp);
    assert!(index.evaluate_in(&flow, Some(IpFamily::V4)).unwrap().allowed);
    assert!(!index.evaluate_in(&flow, Some(IpFamily::V6)).unwrap().allowed);
}

/// Dual-stack checkout and DNS pods; checkout's egress admits 53/UDP only to the IPv4 pod CIDR.
fn dns_admitted_over_ipv4_only() -> PolicyIndex {
    let pods = [
        mk_dual_pod("shop", "checkout", "10.0.1.1", "fd00:1::1"),
        mk_dual_pod("kube-system", "coredns", "10.0.3.5", "fd00:3::5"),
    ];
    let policy = mk_policy(
        "shop",
        "checkout-egress",
        json!({"podSelector": {"matchLabels": {"app": "checkout"}}, "policyTypes": ["Egress"],
               "egress": [{"to": [{"ipBlock": {"cidr": "10.0.0.0/8"}}],
                           "ports": [{"port": 53, "protocol": "UDP"}]}]}),
    );
    let namespaces = [mk_ns("shop", &[]), mk_ns("kube-system", &[])];
    PolicyIndex::new(&namespaces, &pods, &[policy])
}

#[test]
fn a_flow_between_dual_stack_pods_is_denied_when_one_family_is_and_says_which() {
    let index = dns_admitted_over_ipv4_only();
    let flow = flow("shop/checkout", "kube-system/coredns", 53, Protocol::Udp);
    let verdict = index.evaluate(&flow).unwrap();
    assert!(
        !verdict.allowed,
        "one IPv4 address of the DNS pod does not admit its IPv6 traffic"
    );
    assert_eq!(verdict.family, Some(IpFamily::V6));
    assert!(
        verdict
            .notes
            .iter()
            .any(|n| n.contains("is denied for IPv6, allowed for IPv4")),
        "{:?}",
        verdict.notes
    );
    let tiered = index.evaluate_tiers(&flow).unwrap();
    assert!(!tiered.allowed);
    assert_eq!(tiered.network_policy.family, Some(IpFamily::V6));
}

#[test]
fn an_address_end_decides_its_own_family_only() {
    let index = dns_admitted_over_ipv4_only();
    let to_v4 = flow("shop/checkout", "10.0.3.5", 53, Protocol::Udp);
    let to_v6 = flow("shop/checkout", "fd00:3::5", 53, Protocol::Udp);
    assert!(index.evaluate(&to_v4).unwrap().allowed);
    assert!(!index.evaluate(&to_v6).unwrap().allowed);
}

#[test]
fn the_matrix_denies_a_dual_stack_pair_that_one_family_denies() {
    let index = dns_admitted_over_ipv4_only();
    let matrix = index.matrix(53, Protocol::Udp, &[]).unwrap();
    let at = |name: &str| matrix.pods.iter().position(|p| p == name).unwrap();
    assert!(!matrix.allowed(at("shop/checkout"), at("kube-system/coredns")));
    assert_eq!(
        matrix.allowed(at("shop/checkout"), at("kube-system/coredns")),
        index
            .evaluate(&flow("shop/checkout", "kube-system/coredns", 53, Protocol::Udp))
            .unwrap()
            .allowed
    );
}

#[test]
fn ipv6_ip_block_except_carves_ipv6_addresses_out_and_never_matches_ipv4() {
    let pods = [
        mk_dual_pod("shop", "checkout", "10.0.1.1", "fd00:1::1"),
        mk_dual_pod("shop", "batch", "10.0.1.3", "fd00:2::3"),
        mk_dual_pod("shop", "payments", "10.0.1.2", "fd00:1::2"),
    ];
    let policy = mk_policy(
        "shop",
        "from-ipv6-pods",
        json!({"podSelector": {"matchLabels": {"app": "payments"}},
               "ingress": [{"from": [{"ipBlock": {"cidr": "fd00::/16", "except": ["fd00:2::/32"]}}]}]}),
    );
    let index = PolicyIndex::new(&[mk_ns("shop", &[])], &pods, &[policy]);
    let v6 = |from: &str| {
        let flow = flow(from, "shop/payments", 8080, Protocol::Tcp);
        index.evaluate_in(&flow, Some(IpFamily::V6)).unwrap().allowed
    };
    assert!(v6("shop/checkout"));
    assert!(!v6("shop/batch"));
    let flow = flow("shop/checkout", "shop/payments", 8080, Protocol::Tcp);
    assert!(!index.evaluate_in(&flow, Some(IpFamily::V4)).unwrap().allowed);
}

#[test]
fn ip_block_never_matches_a_pod_without_an_ip() {
    let pods = [
        mk_pod("shop", "pending", "", &[], &[]),
        mk_pod("shop", "payments", "10.0.1.2", &[], &[]),
    ];
    let policy = mk_policy(
        "shop",
        "from-all-ips",
        json!({"podSelector": {"matchLabels": {"app": "payments"}},
               "ingress": [{"from": [{"ipBlock": {"cidr": "0.0.0.0/0"}}]}]}),
    );
    let index = PolicyIndex::new(&[mk_ns("shop", &[])], &pods, &[policy]);
    assert!(!allowed(&index, "shop/pending", "shop/payments", 80));
}

#[test]
fn empty_from_and_ports_lists_behave_like_absent_ones() {
    let policy = mk_policy(
        "shop",
        "empty-lists",
        json!({"podSelector": {}, "ingress": [{"from": [], "ports": []}]}),
    );
    let index = mk_world(&[policy]);
    assert!(allowed(&index, "ops/monitor", "shop/payments", 1234));
    assert!(allowed(&index, "10.9.9.9", "shop/payments", 1234));
    let egress = mk_policy(
        "shop",
        "empty-to",
        json!({"podSelector": {}, "egress": [{"to": []}]}),
    );
    assert!(allowed(&mk_world(&[egress]), "shop/checkout", "10.9.9.9", 443));
}

#[test]
fn end_port_allows_the_inclusive_range() {
    let policy = mk_policy(
        "shop",
        "range",
        json!({"podSelector": {}, "ingress": [{"ports": [{"port": 8000, "endPort": 8080}]}]}),
    );
    let index = mk_world(&[policy]);
    assert!(!allowed(&index, "ops/monitor", "shop/payments", 7999));
    assert!(allowed(&index, "ops/monitor", "shop/payments", 8000));
    assert!(allowed(&index, "ops/monitor", "shop/payments", 8080));
    assert!(!allowed(&index, "ops/monitor", "shop/payments", 8081));
}

#[test]
fn port_protocol_defaults_to_tcp_and_udp_or_sctp_rules_do_not_admit_tcp() {
    let policy = mk_policy(
        "shop",
        "ports",
        json!({"podSelector": {}, "ingress": [{"ports": [{"port": 53}, {"port": 5000, "protocol": "UDP"},
                                                          {"port": 6000, "protocol": "SCTP"}]}]}),
    );
    let index = mk_world(&[policy]);
    let check = |port, protocol| {
        index
            .evaluate(&flow("ops/monitor", "shop/payments", port, protocol))
            .unwrap()
            .allowed
    };
    assert!(check(53, Protocol::Tcp));
    assert!(!check(53, Protocol::Udp));
    assert!(check(5000, Protocol::Udp));
    assert!(!check(5000, Protocol::Tcp));
    assert!(check(6000, Protocol::Sctp));
    assert!(!check(6000, Protocol::Tcp));
}

#[test]
fn named_ingress_port_resolves_against_the_destination_pods_container_ports() {
    let policy = mk_policy(
        "shop",
        "named",
        json!({"podSelector": {}, "ingress": [{"ports": [{"port": "http"}, {"port": "dns", "protocol": "UDP"}]}]}),
    );
    let index = mk_world(&[policy]);
    assert!(allowed(&index, "ops/monitor", "shop/payments", 8080));
    assert!(!allowed(&index, "ops/monitor", "shop/payments", 80));
    assert!(
        !allowed(&index, "ops/monitor", "shop/checkout", 8080),
        "checkout declares no http port"
    );
    let udp = index
        .evaluate(&flow("ops/monitor", "shop/payments", 53, Protocol::Udp))
        .unwrap();
    assert!(udp.allowed);
}

#[test]
fn named_port_needs_the_container_port_protocol_to_match() {
    let policy = mk_policy(
        "shop",
        "named-tcp",
        json!({"podSelector": {}, "ingress": [{"ports": [{"port": "dns"}]}]}),
    );
    let index = mk_world(&[policy]);
    // dns is 53/UDP on payments; the rule means TCP.
    assert!(!allowed(&index, "ops/monitor", "shop/payments", 53));
}

#[test]
fn named_egress_port_resolves_against_the_destination_pod() {
    let policy = mk_policy(
        "shop",
        "egress-named",
        json!({"podSelector": {"matchLabels": {"app": "checkout"}}, "policyTypes": ["Egress"],
               "egress": [{"ports": [{"port": "metrics"}]}]}),
    );
    let index = mk_world(&[policy]);
    assert!(allowed(&index, "shop/checkout", "ops/monitor", 9090));
    assert!(!allowed(&index, "shop/checkout", "shop/payments", 9090));
    assert!(
        !allowed(&index, "shop/checkout", "10.9.9.9", 9090),
        "an IP has no named ports"
    );
}

#[test]
fn a_non_pod_end_has_no_policy_side() {
    let index = mk_world(&[
        deny_all_ingress("shop"),
        mk_policy(
            "shop",
            "deny-egress",
            json!({"podSelector": {}, "policyTypes": ["Egress"]}),
        ),
    ]);
    let to_ip = index
        .evaluate(&flow("ops/monitor", "203.0.113.9", 443, Protocol::Tcp))
        .unwrap();
    assert!(!to_ip.ingress.applies && to_ip.ingress.allowed && to_ip.allowed);
    assert_eq!(
        to_ip.explain(),
        "allowed: no NetworkPolicy isolates ops/monitor (egress)"
    );
    let between_ips = index
        .evaluate(&flow("198.51.100.1", "203.0.113.9", 443, Protocol::Tcp))
        .unwrap();
    assert!(between_ips.allowed);
    assert_eq!(
        between_ips.explain(),
        "allowed: neither end is a pod, so NetworkPolicy does not apply"
    );
    let from_ip = index
        .evaluate(&flow("203.0.113.9", "shop/payments", 8080, Protocol::Tcp))
        .unwrap();
    assert!(!from_ip.egress.applies);
    assert!(!from_ip.allowed, "ingress of payments is still isolated");
    let out = index
        .evaluate(&flow("shop/checkout", "203.0.113.9", 443, Protocol::Tcp))
        .unwrap();
    assert!(out.egress.isolated && !out.allowed);
}

#[test]
fn denied_verdict_names_the_isolating_policy_and_the_unmatched_peer() {
    let index = mk_world(&[deny_all_ingress("shop")]);
    let verdict = index
        .evaluate(&flow("shop/checkout", "shop/payments", 8080, Protocol::Tcp))
        .unwrap();
    assert_eq!(
        verdict.explain(),
        "denied: ingress of shop/payments is isolated by shop/default-deny; \
         no rule allows from shop/checkout on 8080/TCP"
    );
    assert_eq!(
        verdict.ingress.isolating_policies,
        vec![policy_ref("shop", "default-deny")]
    );
    assert!(verdict.ingress.allowing_rules.is_empty());
}

#[test]
fn verdict_serializes_as_camel_case_json() {
    let index = mk_world(&[deny_all_ingress("shop")]);
    let verdict = index
        .evaluate(&flow("shop/checkout", "shop/payments", 8080, Protocol::Tcp))
        .unwrap();
    let value = serde_json::to_value(&verdict).unwrap();
    assert_eq!(value["allowed"], false);
    assert_eq!(value["from"], "shop/checkout");
    assert_eq!(value["protocol"], "TCP");
    assert_eq!(value["ingress"]["isolatingPolicies"][0]["name"], "default-deny");
    assert_eq!(value["ingress"]["allowingRules"], json!([]));
    assert_eq!(value["egress"]["isolated"], false);
}

#[test]
fn invalid_policies_become_findings_and_the_rest_still_apply() {
    let bad_specs = [
        json!({"podSelector": {}, "ingress": [{"from": [{"ipBlock": {"cidr": "10.0.0/8"}}]}]}),
        json!({"podSelector": {}, "ingress": [{"from": [{"ipBlock": {"cidr": "10.0.0.0/8", "except": ["11.0.0.0/16"]}}]}]}),
        json!({"podSelector": {}, "ingress": [{"from": [{"ipBlock": {"cidr": "10.0.0.0/8", "except": ["10.0.0.0/8"]}}]}]}),
        json!({"podSelector": {}, "egress": [{"to": [{"ipBlock": {"cidr": "fd00::/64", "except": ["fd00::/64"]}}]}]}),
        json!({"podSelector": {}, "ingress": [{"from": [{"ipBlock": {"cidr": "10.0.0.0/8"}, "podSelector": {}}]}]}),
        json!({"podSelector": {}, "ingress": [{"ports": [{"port": "Http"}]}]}),
        json!({"podSelector": {}, "ingress": [{"ports": [{"port": "a-very-long-port-name"}]}]}),
        json!({"podSelector": {}, "ingress": [{"ports": [{"port": "web--http"}]}]}),
        json!({"podSelector": {}, "ingress": [{"from": [{}]}]}),
        json!({"podSelector": {}, "ingress": [{"ports": [{"endPort": 90}]}]}),
        json!({"podSelector": {}, "ingress": [{"ports": [{"port": 90, "endPort": 80}]}]}),
        json!({"podSelector": {}, "ingress": [{"ports": [{"port": 0}]}]}),
        json!({"podSelector": {}, "ingress": [{"ports": [{"port": 70000}]}]}),
        json!({"podSelector": {}, "ingress": [{"ports": [{"port": 80, "protocol": "ICMP"}]}]}),
        json!({"podSelector": {}, "policyTypes": ["Sideways"]}),
        json!({"podSelector": {"matchExpressions": [{"key": "a", "operator": "In"}]}}),
        json!({"podSelector": {"matchExpressions": [{"key": "a", "operator": "Exists", "values": ["x"]}]}}),
        json!({"podSelector": {"matchExpressions": [{"key": "a", "operator": "Like", "values": ["x"]}]}}),
    ];
    for spec in bad_specs {
        let index = mk_world(&[mk_policy("shop", "broken", spec.clone()), deny_all_ingress("ops")]);
        assert_eq!(index.findings().len(), 1, "{spec}");
        let finding = index.findings()[0].to_string();
        assert!(
            finding.starts_with("networkpolicy shop/broken: invalid, ignored: spec."),
            "{finding}"
        );
        assert!(
            allowed(&index, "ops/monitor", "shop/payments", 8080),
            "broken policy skipped: {spec}"
        );
        assert!(
            !allowed(&index, "shop/payments", "ops/monitor", 9090),
            "other policies apply: {spec}"
        );
    }
}

#[test]
fn unknown_pod_and_port_zero_are_errors_not_verdicts() {
    let index = mk_world(&[]);
    let err = index
        .evaluate(&flow("shop/nope", "shop/payments", 80, Protocol::Tcp))
        .unwrap_err();
    assert_eq!(err.to_string(), "pod shop/nope not found in the input");
    let err = index
        .evaluate(&flow("shop/checkout", "shop/payments", 0, Protocol::Tcp))
        .unwrap_err();
    assert_eq!(err, EvalError::PortZero);
}

#[test]
fn namespace_missing_from_the_input_is_a_finding_with_the_name_label_assumed() {
    let pods = [
        mk_pod("ghost", "a", "10.0.0.1", &[], &[]),
        mk_pod("shop", "b", "10.0.0.2", &[], &[]),
    ];
    let policy = mk_policy(
        "shop",
        "from-ghost",
        json!({"podSelector": {}, "ingress": [{"from": [{"namespaceSelector": {
            "matchLabels": {"kubernetes.io/metadata.name": "ghost"}}}]}]}),
    );
    let index = PolicyIndex::new(&[mk_ns("shop", &[])], &pods, &[policy]);
    assert_eq!(index.findings().len(), 1);
    assert!(
        index.findings()[0]
            .to_string()
            .starts_with("namespace ghost: not in the input")
    );
    assert!(allowed(&index, "ghost/a", "shop/b", 80));
}

#[test]
fn pod_to_itself_is_evaluated_as_written_with_a_note() {
    let index = mk_world(&[deny_all_ingress("shop")]);
    let verdict = index
        .evaluate(&flow("shop/payments", "shop/payments", 8080, Protocol::Tcp))
        .unwrap();
    assert!(!verdict.allowed);
    assert_eq!(verdict.notes.len(), 1);
}

#[test]
fn matrix_filters_namespaces_orders_pods_and_rejects_unknown_namespaces() {
    let index = mk_world(&[deny_all_ingress("shop")]);
    let matrix = index.matrix(8080, Protocol::Tcp, &["shop".to_string()]).unwrap();
    assert_eq!(matrix.pods, ["shop/checkout", "shop/payments"]);
    assert!(matrix.entries().all(|entry| !entry.allowed));
    let all = index.matrix(8080, Protocol::Tcp, &[]).unwrap();
    assert_eq!(all.pods, ["ops/monitor", "shop/checkout", "shop/payments"]);
    assert!(all.allowed(1, 0), "shop/checkout -> ops/monitor is not isolated");
    assert_eq!(
        index
            .matrix(80, Protocol::Tcp, &["nope".to_string()])
            .unwrap_err(),
        EvalError::UnknownNamespace("nope".to_string())
    );
}

#[test]
fn one_pair_of_each_class_of_the_matrix_stands_for_the_rest() {
    let index = mk_world(&[deny_all_ingress("shop")]);
    let matrix = index.matrix(8080, Protocol::Tcp, &[]).unwrap();
    // Every pod sends alike; ops/monitor admits everyone, shop's pods no one: two classes.
    let classes: Vec<(String, String, bool)> = matrix
        .classes()
        .into_iter()
        .map(|e| (e.from, e.to, e.allowed))
        .collect();
    assert_eq!(
        classes,
        [
            ("ops/monitor".to_string(), "shop/checkout".to_string(), false),
            ("shop/checkout".to_string(), "ops/monitor".to_string(), true),
        ]
    );
    // Within one namespace under deny-all, one class of denied pairs, no pod with itself.
    let shop = index.matrix(8080, Protocol::Tcp, &["shop".to_string()]).unwrap();
    let classes = shop.classes();
    assert_eq!(classes.len(), 1);
    assert_ne!(classes[0].from, classes[0].to);
    assert!(!classes[0].allowed);
}

#[test]
fn peer_parses_namespaced_pods_and_ip_addresses() {
    assert_eq!("a/b".parse::<Peer>().unwrap(), Peer::pod("a", "b"));
    assert_eq!(
        "10.1.2.3".parse::<Peer>().unwrap(),
        Peer::Ip("10.1.2.3".parse().unwrap())
    );
    assert_eq!(
        "fd00::1".parse::<Peer>().unwrap(),
        Peer::Ip("fd00::1".parse().unwrap())
    );
    for bad in ["", "a", "a/", "/b", "a/b/c"] {
        assert!(bad.parse::<Peer>().is_err(), "{bad:?}");
    }
    assert_eq!("udp".parse::<Protocol>().unwrap(), Protocol::Udp);
    assert!("icmp".parse::<Protocol>().is_err());
}

#[test]
fn input_reads_lists_typed_lists_streams_and_json_and_skips_other_kinds() {
    let text = r#"
apiVersion: v1
kind: List
items:
- apiVersion: v1
  kind: Namespace
  metadata: {name: shop, managedFields: [{manager: kubectl}]}
- apiVersion: v1
  kind: Service
  metadata: {name: web, namespace: shop}
---
apiVersion: v1
kind: PodList
items:
- metadata: {name: a, namespace: shop}
  spec: {containers: [{name: c}]}
---
{"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy", "metadata": {"name": "p", "namespace": "shop"}, "spec": {}}
"#;
    let objects = parse_objects(text).unwrap();
    assert_eq!(objects.namespaces.len(), 1);
    assert!(objects.namespaces[0].metadata.managed_fields.is_none());
    assert_eq!(objects.pods.len(), 1);
    assert_eq!(objects.policies.len(), 1);
    assert_eq!(objects.skipped_kinds, ["Service"]);
}

#[test]
fn input_errors_name_the_document_and_object() {
    let err = parse_objects("kind: Pod\nmetadata: {name: a\n").unwrap_err();
    assert!(
        err.to_string()
            .starts_with("document 1 is not valid YAML or JSON"),
        "{err}"
    );
    let err = parse_objects("---\nmetadata: {name: a}\n").unwrap_err();
    assert_eq!(err.to_string(), "document 1: object a has no kind");
    let err =
        parse_objects("---\n---\nkind: Pod\nmetadata: {name: a, namespace: s}\nspec: {containers: 3}\n")
            .unwrap_err();
    assert!(
        err.to_string()
            .starts_with("document 2: Pod s/a is not a valid Pod"),
        "{err}"
    );
    let err = parse_objects("kind: List\nitems: {kind: Pod}\n").unwrap_err();
    assert_eq!(err.to_string(), "document 1: List has no items list");
    let err = parse_objects("kind: Namespace\nmetadata: {name: a}\n---\nkind: PodList\n").unwrap_err();
    assert_eq!(err.to_string(), "document 2: PodList has no items list");
    assert!(matches!(parse_objects("# nothing\n"), Err(InputError::Empty)));
}

#[test]
fn matrix_agrees_with_evaluate_for_every_pair_port_and_protocol_on_mixed_policies() {
    let namespaces = [
        mk_ns("shop", &[("team", "shop"), ("env", "prod")]),
        mk_ns("ops", &[("team", "ops")]),
        mk_ns("lab", &[("env", "dev")]),
    ];
    let ports: &[(&str, i32, &str)] = &[
        ("http", 8080, "TCP"),
        ("dns", 53, "UDP"),
        ("metrics", 9090, "TCP"),
    ];
    let pods = [
        mk_pod("shop", "web", "10.1.0.1", &[("tier", "web")], ports),
        mk_pod("shop", "api", "10.1.0.2", &[("tier", "api")], &ports[..1]),
        mk_pod("shop", "db", "10.1.0.3", &[("tier", "db")], &[]),
        mk_pod("ops", "prom", "10.2.0.1", &[("tier", "web")], &ports[2..]),
        mk_pod("ops", "pending", "", &[], &[]),
        mk_pod("lab", "probe", "10.3.0.1", &[("tier", "api")], ports),
    ];
    let policies = [
        mk_policy(
            "shop",
            "deny",
            json!({"podSelector": {}, "policyTypes": ["Ingress", "Egress"]}),
        ),
        mk_policy(
            "shop",
            "web-in",
            json!({"podSelector": {"matchLabels": {"tier": "web"}}, "ingress": [
                {"from": [{"namespaceSelector": {}}], "ports": [{"port": "http"}, {"port": 80, "endPort": 90}]},
                {"from": [{"ipBlock": {"cidr": "10.0.0.0/8", "except": ["10.3.0.0/16"]}}], "ports": [{"port": "metrics"}]}]}),
        ),
        mk_policy(
            "shop",
            "egress",
            json!({"podSelector": {"matchExpressions": [{"key": "tier", "operator": "NotIn", "values": ["db"]}]},
                   "policyTypes": ["Egress"], "egress": [
                {"to": [{"podSelector": {"matchLabels": {"tier": "api"}}}], "ports": [{"port": "http"}, {"port": 5432}]},
                {"to": [{"namespaceSelector": {"matchLabels": {"team": "ops"}}, "podSelector": {}}]},
                {"ports": [{"port": "dns", "protocol": "UDP"}, {"port": 53, "protocol": "UDP"}]},
                {"to": [{"ipBlock": {"cidr": "10.3.0.0/16"}}], "ports": [{"port": "metrics"}, {"port": 82, "endPort": 85}]}]}),
        ),
        mk_policy(
            "shop",
            "db-in",
            json!({"podSelector": {"matchLabels": {"tier": "db"}}, "ingress": [
                {"from": [{"podSelector": {"matchExpressions": [{"key": "tier", "operator": "In", "values": ["api"]}]}}],
                 "ports": [{"port": 5432}, {"port": 9090, "protocol": "SCTP"}]}]}),
        ),
        mk_policy(
            "ops",
            "prom",
            json!({"podSelector": {"matchLabels": {"tier": "web"}},
                   "ingress": [{"from": [{"namespaceSelector": {"matchExpressions": [{"key": "env", "operator": "Exists"}]}}]}],
                   "egress": [{"to": [{"namespaceSelector": {"matchLabels": {"env": "prod"}}}], "ports": [{"port": "metrics"}]}]}),
        ),
    ];
    let index = PolicyIndex::new(&namespaces, &pods, &policies);
    assert!(index.findings().is_empty(), "{:?}", index.findings());
    let probes = [
        (80, Protocol::Tcp),
        (84, Protocol::Tcp),
        (8080, Protocol::Tcp),
        (9090, Protocol::Tcp),
        (9090, Protocol::Sctp),
        (5432, Protocol::Tcp),
        (53, Protocol::Udp),
        (53, Protocol::Tcp),
    ];
    let (mut allowed_count, mut denied_count) = (0, 0);
    for (port, protocol) in probes {
        let matrix = index.matrix(port, protocol, &[]).unwrap();
        for (i, from) in matrix.pods.iter().enumerate() {
            for (j, to) in matrix.pods.iter().enumerate() {
                let verdict = index.evaluate(&flow(from, to, port, protocol)).unwrap();
                assert_eq!(
                    matrix.allowed(i, j),
                    verdict.allowed,
                    "{from} -> {to} {port}/{protocol}: {}",
                    verdict.explain()
                );
                if verdict.allowed {
                    allowed_count += 1;
                } else {
                    denied_count += 1;
                }
            }
        }
    }
    assert!(
        allowed_count > 20 && denied_count > 20,
        "{allowed_count} allowed, {denied_count} denied"
    );
}

#[test]
fn host_network_pods_are_evaluated_with_a_note() {
    let mut node_agent = mk_pod("ops", "agent", "192.168.0.10", &[], &[]);
    node_agent.spec.as_mut().unwrap().host_network = Some(true);
    let pods = [node_agent, mk_pod("shop", "payments", "10.0.1.2", &[], &[])];
    let index = PolicyIndex::new(
        &[mk_ns("ops", &[]), mk_ns("shop", &[])],
        &pods,
        &[deny_all_ingress("shop")],
    );
    let verdict = index
        .evaluate(&flow("ops/agent", "shop/payments", 80, Protocol::Tcp))
        .unwrap();
    assert!(!verdict.allowed);
    assert_eq!(verdict.notes.len(), 1);
    assert!(
        verdict.notes[0].starts_with("ops/agent uses the host network"),
        "{:?}",
        verdict.notes
    );
    let plain = index
        .evaluate(&flow("shop/payments", "shop/payments", 80, Protocol::Tcp))
        .unwrap();
    assert!(plain.notes.iter().all(|note| !note.contains("host network")));
}

#[test]
fn a_finished_pods_stale_ip_neither_names_it_nor_matches_ip_blocks() {
    // A Succeeded pod still shows its old IP, which the running pod now has.
    let mut finished = mk_pod("ops", "job", "10.0.1.2", &[], &[]);
    finished.status.as_mut().unwrap().phase = Some("Succeeded".to_string());
    let pods = [finished, mk_pod("shop", "payments", "10.0.1.2", &[], &[])];
    let allow_block = mk_policy(
        "shop",
        "from-block",
        json!({"podSelector": {}, "ingress": [{"from": [{"ipBlock": {"cidr": "10.0.1.2/32"}}]}]}),
    );
    let index = PolicyIndex::new(&[mk_ns("ops", &[]), mk_ns("shop", &[])], &pods, &[allow_block]);
    assert_eq!(
        index.pod_with_ip("10.0.1.2".parse().unwrap()),
        Some(Peer::pod("shop", "payments"))
    );
    let verdict = index
        .evaluate(&flow("ops/job", "shop/payments", 80, Protocol::Tcp))
        .unwrap();
    assert!(!verdict.allowed, "the ipBlock does not match the finished pod");
    assert!(
        verdict
            .notes
            .iter()
            .any(|note| note.starts_with("ops/job is in phase Succeeded")),
        "{:?}",
        verdict.notes
    );
}

#[test]
fn named_ports_of_sidecars_resolve_but_those_of_finished_init_containers_do_not() {
    let init = |name: &str, port_name: &str, port: i32, restart_policy: Option<&str>| Container {
        name: name.to_string(),
        restart_policy: restart_policy.map(str::to_string),
        ports: Some(vec![ContainerPort {
            name: Some(port_name.to_string()),
            container_port: port,
            ..Default::default()
        }]),
        ..Default::default()
    };
    let mut payments = mk_pod("shop", "payments", "10.0.1.2", &[], &[]);
    payments.spec.as_mut().unwrap().init_containers = Some(vec![
        init("proxy", "proxy", 15001, Some("Always")),
        init("migrate", "migrate", 5000, None),
    ]);
    let policy = mk_policy(
        "shop",
        "named",
        json!({"podSelector": {}, "ingress": [{"ports": [{"port": "proxy"}, {"port": "migrate"}]}]}),
    );
    let index = PolicyIndex::new(
        &[mk_ns("shop", &[])],
        &[mk_pod("shop", "checkout", "10.0.1.1", &[], &[]), payments],
        &[policy],
    );
    assert!(allowed(&index, "shop/checkout", "shop/payments", 15001));
    assert!(!allowed(&index, "shop/checkout", "shop/payments", 5000));
}
