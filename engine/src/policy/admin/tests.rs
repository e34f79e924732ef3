//! Unit tests of the admin tiers: one behaviour per test, with plain values.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{Namespace, Pod};
use k8s_openapi::api::networking::v1::NetworkPolicy;
use serde_json::{Value, json};

use super::*;
use crate::policy::{Flow, PolicyIndex, Protocol};

fn mk_ns(name: &str, labels: Value) -> Namespace {
    serde_json::from_value(json!({"metadata": {"name": name, "labels": labels}})).unwrap()
}

/// A pod labelled `app=<name>`, with an IP and a named port `http` 8080/TCP.
fn mk_pod(ns: &str, name: &str, ip: &str) -> Pod {
    serde_json::from_value(json!({
        "metadata": {"name": name, "namespace": ns, "labels": {"app": name}},
        "spec": {"containers": [{"name": "c", "ports": [{"name": "http", "containerPort": 8080}]}]},
        "status": {"podIP": ip},
    }))
    .unwrap()
}

fn mk_netpol(ns: &str, name: &str, spec: Value) -> NetworkPolicy {
    serde_json::from_value(json!({"metadata": {"name": name, "namespace": ns}, "spec": spec})).unwrap()
}

fn mk_cnp(name: &str, tier: &str, priority: i64, rest: Value) -> ClusterNetworkPolicy {
    let mut spec = json!({"tier": tier, "priority": priority});
    spec.as_object_mut()
        .unwrap()
        .extend(rest.as_object().unwrap().clone());
    serde_json::from_value(json!({"metadata": {"name": name}, "spec": spec})).unwrap()
}

fn ns_selector(name: &str) -> Value {
    json!({"matchLabels": {"kubernetes.io/metadata.name": name}})
}

/// Namespaces shop and ops; pods shop/checkout, shop/payments, ops/monitor, and a host-network pod ops/node-agent.
fn mk_world(policies: &[NetworkPolicy], admin: AdminObjects) -> PolicyIndex {
    let namespaces = [
        mk_ns("shop", json!({"team": "shop"})),
        mk_ns("ops", json!({"team": "ops"})),
    ];
    let mut agent = mk_pod("ops", "node-agent", "192.168.0.10");
    agent.spec.as_mut().unwrap().host_network = Some(true);
    let pods = [
        mk_pod("shop", "checkout", "10.0.1.1"),
        mk_pod("shop", "payments", "10.0.1.2"),
        mk_pod("ops", "monitor", "10.0.2.1"),
        agent,
    ];
    PolicyIndex::with_admin(&namespaces, &pods, policies, &admin)
}

fn cnps(policies: Vec<ClusterNetworkPolicy>) -> AdminObjects {
    AdminObjects {
        cluster_network_policies: policies,
        ..Default::default()
    }
}

fn flow(from: &str, to: &str, port: u16) -> Flow {
    Flow {
        from: from.parse().unwrap(),
        to: to.parse().unwrap(),
        port,
        protocol: Protocol::Tcp,
    }
}

fn tiers(index: &PolicyIndex, from: &str, to: &str, port: u16) -> TieredVerdict {
    index.evaluate_tiers(&flow(from, to, port)).unwrap()
}

/// An Admin-tier policy on shop's pods' ingress with one rule per `(action, from namespace)`.
fn ingress_rules(name: &str, priority: i64, rules: &[(&str, &str)]) -> ClusterNetworkPolicy {
    let rules: Vec<Value> = rules
        .iter()
        .map(|(action, from)| json!({"action": action, "from": [{"namespaces": ns_selector(from)}]}))
        .collect();
    mk_cnp(
        name,
        "Admin",
        priority,
        json!({"subject": {"namespaces": ns_selector("shop")}, "ingress": rules}),
    )
}

fn allow_all_ingress_netpol() -> NetworkPolicy {
    mk_netpol("shop", "allow-all", json!({"podSelector": {}, "ingress": [{}]}))
}

fn deny_all_ingress_netpol() -> NetworkPolicy {
    mk_netpol("shop", "deny-all", json!({"podSelector": {}}))
}

#[test]
fn admin_deny_overrides_a_network_policy_that_allows() {
    let index = mk_world(
        &[allow_all_ingress_netpol()],
        cnps(vec![ingress_rules("no-ops", 10, &[("Deny", "ops")])]),
    );
    let verdict = tiers(&index, "ops/monitor", "shop/payments", 80);
    assert!(verdict.network_policy.allowed);
    assert!(!verdict.allowed);
    assert_eq!(verdict.ingress.decided_by, DecidingTier::Admin);
    let rule = verdict.ingress.rule.as_ref().unwrap();
    assert_eq!(
        (rule.policy.name.as_str(), rule.index, rule.action),
        ("no-ops", 0, AdminAction::Deny)
    );
}

#[test]
fn admin_accept_allows_what_an_isolating_network_policy_denies() {
    let index = mk_world(
        &[deny_all_ingress_netpol()],
        cnps(vec![ingress_rules("ops-in", 10, &[("Accept", "ops")])]),
    );
    let verdict = tiers(&index, "ops/monitor", "shop/payments", 80);
    assert!(!verdict.network_policy.allowed);
    assert!(verdict.allowed);
    assert_eq!(verdict.ingress.decided_by, DecidingTier::Admin);
    // A flow the admin rule does not match still meets the NetworkPolicy.
    assert!(!tiers(&index, "shop/checkout", "shop/payments", 80).allowed);
}

#[test]
fn the_lower_priority_number_is_evaluated_first_across_policies() {
    let deny = ingress_rules("deny", 20, &[("Deny", "ops")]);
    let accept = ingress_rules("accept", 5, &[("Accept", "ops")]);
    let index = mk_world(&[], cnps(vec![deny.clone(), accept]));
    let verdict = tiers(&index, "ops/monitor", "shop/payments", 80);
    assert!(verdict.allowed);
    assert_eq!(verdict.ingress.rule.as_ref().unwrap().policy.name, "accept");
    let index = mk_world(
        &[],
        cnps(vec![deny, ingress_rules("accept", 30, &[("Accept", "ops")])]),
    );
    assert!(!tiers(&index, "ops/monitor", "shop/payments", 80).allowed);
}

#[test]
fn rule_order_decides_within_a_policy() {
    let index = mk_world(
        &[],
        cnps(vec![ingress_rules("p", 1, &[("Accept", "ops"), ("Deny", "ops")])]),
    );
    assert!(tiers(&index, "ops/monitor", "shop/payments", 80).allowed);
    let index = mk_world(
        &[],
        cnps(vec![ingress_rules("p", 1, &[("Deny", "ops"), ("Accept", "ops")])]),
    );
    let verdict = tiers(&index, "ops/monitor", "shop/payments", 80);
    assert!(!verdict.allowed);
    assert_eq!(verdict.ingress.rule.as_ref().unwrap().index, 0);
}

#[test]
fn pass_skips_the_rest_of_the_admin_tier_and_lets_network_policy_decide() {
    let admin = cnps(vec![
        ingress_rules("pass", 1, &[("Pass", "ops")]),
        ingress_rules("deny", 2, &[("Deny", "ops")]),
    ]);
    let index = mk_world(&[allow_all_ingress_netpol()], admin.clone());
    let verdict = tiers(&index, "ops/monitor", "shop/payments", 80);
    assert!(verdict.allowed);
    assert_eq!(verdict.ingress.decided_by, DecidingTier::NetworkPolicy);
    assert_eq!(verdict.ingress.passed_by.as_ref().unwrap().policy.name, "pass");
    let index = mk_world(&[deny_all_ingress_netpol()], admin);
    assert!(!tiers(&index, "ops/monitor", "shop/payments", 80).allowed);
}

#[test]
fn baseline_decides_only_pods_no_network_policy_isolates() {
    let baseline = mk_cnp(
        "baseline-deny",
        "Baseline",
        1,
        json!({"subject": {"namespaces": {}}, "ingress": [{"action": "Deny", "from": [{"namespaces": {}}]}]}),
    );
    let pass = ingress_rules("pass", 1, &[("Pass", "ops")]);
    let index = mk_world(&[], cnps(vec![baseline.clone(), pass.clone()]));
    let verdict = tiers(&index, "ops/monitor", "shop/payments", 80);
    assert!(!verdict.allowed);
    assert_eq!(verdict.ingress.decided_by, DecidingTier::Baseline);
    assert_eq!(verdict.ingress.passed_by.as_ref().unwrap().policy.name, "pass");
    // A NetworkPolicy can override the Baseline tier: no cluster admin needed, and the sentence says so.
    assert!(!verdict.needs_cluster_admin());
    assert!(verdict.decided_by_baseline());
    assert!(
        verdict.explain().contains("would override the Baseline tier"),
        "{}",
        verdict.explain()
    );
    let index = mk_world(&[allow_all_ingress_netpol()], cnps(vec![baseline, pass]));
    let verdict = tiers(&index, "ops/monitor", "shop/payments", 80);
    assert!(verdict.allowed);
    assert_eq!(verdict.ingress.decided_by, DecidingTier::NetworkPolicy);
}

#[test]
fn a_baseline_pass_leaves_the_flow_to_the_default_allow() {
    let baseline = mk_cnp(
        "baseline",
        "Baseline",
        1,
        json!({"subject": {"namespaces": {}}, "ingress": [
            {"action": "Pass", "from": [{"namespaces": ns_selector("ops")}]},
            {"action": "Deny", "from": [{"namespaces": {}}]}]}),
    );
    let index = mk_world(&[], cnps(vec![baseline]));
    let verdict = tiers(&index, "ops/monitor", "shop/payments", 80);
    assert!(verdict.allowed);
    assert_eq!(verdict.ingress.decided_by, DecidingTier::Default);
    assert!(!tiers(&index, "shop/checkout", "shop/payments", 80).allowed);
}

#[test]
fn a_pods_subject_needs_both_namespace_and_pod_selectors_to_match() {
    let policy = mk_cnp(
        "payments-only",
        "Admin",
        1,
        json!({"subject": {"pods": {"namespaceSelector": ns_selector("shop"), "podSelector": {"matchLabels": {"app": "payments"}}}},
               "ingress": [{"action": "Deny", "from": [{"namespaces": {}}]}]}),
    );
    let index = mk_world(&[], cnps(vec![policy]));
    assert!(!tiers(&index, "ops/monitor", "shop/payments", 80).allowed);
    assert!(tiers(&index, "ops/monitor", "shop/checkout", 80).allowed);
}

#[test]
fn egress_networks_match_outside_addresses_and_pod_ips() {
    let policy = mk_cnp(
        "no-internet",
        "Admin",
        1,
        json!({"subject": {"namespaces": ns_selector("shop")},
               "egress": [{"action": "Deny", "to": [{"networks": ["0.0.0.0/0"]}]}]}),
    );
    let index = mk_world(&[], cnps(vec![policy]));
    let verdict = tiers(&index, "shop/checkout", "1.1.1.1", 443);
    assert!(!verdict.allowed);
    assert_eq!(verdict.egress.decided_by, DecidingTier::Admin);
    assert!(!verdict.ingress.needs_cluster_admin());
    assert!(!tiers(&index, "shop/checkout", "ops/monitor", 80).allowed);
    assert!(tiers(&index, "ops/monitor", "1.1.1.1", 443).allowed);
}

#[test]
fn port_numbers_ranges_and_named_ports_match_like_the_api_says() {
    let policy = mk_cnp(
        "ports",
        "Admin",
        1,
        json!({"subject": {"namespaces": ns_selector("shop")}, "ingress": [
            {"action": "Accept", "from": [{"namespaces": {}}], "protocols": [{"destinationNamedPort": "http"}]},
            {"action": "Accept", "from": [{"namespaces": {}}], "protocols": [{"tcp": {"destinationPort": {"range": {"start": 9000, "end": 9100}}}}]},
            {"action": "Accept", "from": [{"namespaces": {}}], "protocols": [{"udp": {"destinationPort": {"number": 53}}}]},
            {"action": "Deny", "from": [{"namespaces": {}}]}]}),
    );
    let index = mk_world(&[], cnps(vec![policy]));
    assert!(tiers(&index, "ops/monitor", "shop/payments", 8080).allowed);
    assert!(tiers(&index, "ops/monitor", "shop/payments", 9100).allowed);
    assert!(!tiers(&index, "ops/monitor", "shop/payments", 9101).allowed);
    assert!(
        !tiers(&index, "ops/monitor", "shop/payments", 53).allowed,
        "53/TCP is not 53/UDP"
    );
    let udp = Flow {
        protocol: Protocol::Udp,
        ..flow("ops/monitor", "shop/payments", 53)
    };
    assert!(index.evaluate_tiers(&udp).unwrap().allowed);
}

#[test]
fn host_network_pods_are_neither_subjects_nor_namespace_peers() {
    let policy = mk_cnp(
        "ops-lockdown",
        "Admin",
        1,
        json!({"subject": {"namespaces": ns_selector("ops")},
               "ingress": [{"action": "Deny", "from": [{"namespaces": {}}]}],
               "egress": [{"action": "Deny", "to": [{"namespaces": {}}]}]}),
    );
    let index = mk_world(&[], cnps(vec![policy]));
    assert!(!tiers(&index, "shop/checkout", "ops/monitor", 80).allowed);
    let verdict = tiers(&index, "shop/checkout", "ops/node-agent", 80);
    assert!(verdict.allowed);
    assert!(
        verdict
            .network_policy
            .notes
            .iter()
            .any(|n| n.contains("host network"))
    );
    assert!(
        tiers(&index, "ops/monitor", "ops/node-agent", 80).allowed,
        "not a namespaces peer"
    );
}

#[test]
fn v1alpha1_kinds_use_allow_and_the_baseline_singleton_must_be_named_default() {
    let anp: AdminNetworkPolicy = serde_json::from_value(json!({"metadata": {"name": "anp"}, "spec": {
        "priority": 3, "subject": {"namespaces": ns_selector("shop")},
        "ingress": [{"action": "Allow", "from": [{"namespaces": ns_selector("ops")}],
                     "ports": [{"portNumber": {"protocol": "TCP", "port": 80}}]}]}}))
    .unwrap();
    let banp = |name: &str| -> BaselineAdminNetworkPolicy {
        serde_json::from_value(json!({"metadata": {"name": name}, "spec": {
            "subject": {"namespaces": {}}, "ingress": [{"action": "Deny", "from": [{"namespaces": {}}]}]}}))
        .unwrap()
    };
    let admin = AdminObjects {
        admin_network_policies: vec![anp],
        baseline_admin_network_policies: vec![banp("default"), banp("other")],
        ..Default::default()
    };
    let index = mk_world(&[], admin);
    let verdict = tiers(&index, "ops/monitor", "shop/payments", 80);
    assert!(verdict.allowed);
    assert_eq!(verdict.ingress.rule.as_ref().unwrap().action_word(), "Allow");
    let verdict = tiers(&index, "ops/monitor", "shop/payments", 81);
    assert!(!verdict.allowed);
    assert_eq!(verdict.ingress.decided_by, DecidingTier::Baseline);
    assert_eq!(index.findings().len(), 1);
    assert!(
        index.findings()[0]
            .to_string()
            .contains("baselineadminnetworkpolicy other")
    );
}

#[test]
fn invalid_admin_policies_become_findings_and_the_rest_still_apply() {
    let bad = [
        json!({"tier": "Middle", "priority": 1, "subject": {"namespaces": {}}}),
        json!({"tier": "Admin", "priority": 1001, "subject": {"namespaces": {}}}),
        json!({"tier": "Admin", "priority": 1, "subject": {}}),
        json!({"tier": "Admin", "priority": 1, "subject": {"namespaces": {}},
               "ingress": [{"action": "Allow", "from": [{"namespaces": {}}]}]}),
        json!({"tier": "Admin", "priority": 1, "subject": {"namespaces": {}},
               "ingress": [{"action": "Deny", "from": []}]}),
        json!({"tier": "Admin", "priority": 1, "subject": {"namespaces": {}},
               "ingress": [{"action": "Deny", "from": [{"networks": ["10.0.0.0/8"]}]}]}),
        json!({"tier": "Admin", "priority": 1, "subject": {"namespaces": {}},
               "egress": [{"action": "Deny", "to": [{"networks": ["nope"]}]}]}),
        json!({"tier": "Admin", "priority": 1, "subject": {"namespaces": {}},
               "egress": [{"action": "Deny", "to": [{"namespaces": {}}],
                           "protocols": [{"tcp": {"destinationPort": {"range": {"start": 90, "end": 80}}}}]}]}),
    ];
    let mut policies: Vec<ClusterNetworkPolicy> = bad
        .iter()
        .enumerate()
        .map(|(i, spec)| {
            serde_json::from_value(json!({"metadata": {"name": format!("bad-{i}")}, "spec": spec})).unwrap()
        })
        .collect();
    policies.push(ingress_rules("good", 5, &[("Deny", "ops")]));
    let index = mk_world(&[], cnps(policies));
    assert_eq!(index.findings().len(), bad.len(), "{:?}", index.findings());
    for finding in index.findings() {
        assert_eq!(finding.kind, "clusternetworkpolicy");
        assert!(finding.message.starts_with("invalid, ignored: "), "{finding}");
    }
    assert!(!tiers(&index, "ops/monitor", "shop/payments", 80).allowed);
    assert!(tiers(&index, "shop/checkout", "shop/payments", 80).allowed);
}

#[test]
fn an_unknown_peer_type_fails_closed_in_deny_rules_and_matches_nothing_in_accept_rules() {
    let unknown = |action: &str| {
        mk_cnp(
            &format!("future-{}", action.to_lowercase()),
            "Admin",
            1,
            json!({"subject": {"namespaces": ns_selector("shop")},
                   "ingress": [{"action": action, "from": [{"serviceAccounts": {"name": "x"}}]}]}),
        )
    };
    let index = mk_world(&[deny_all_ingress_netpol()], cnps(vec![unknown("Accept")]));
    assert!(!tiers(&index, "ops/monitor", "shop/payments", 80).allowed);
    assert!(index.findings()[0].message.contains("matches no flow"));
    let index = mk_world(&[allow_all_ingress_netpol()], cnps(vec![unknown("Pass")]));
    let verdict = tiers(&index, "ops/monitor", "shop/payments", 80);
    assert!(!verdict.allowed);
    assert_eq!(verdict.ingress.rule.as_ref().unwrap().action, AdminAction::Deny);
    assert!(index.findings()[0].message.contains("fails closed"));
}

#[test]
fn node_and_domain_name_peers_are_findings_that_match_nothing() {
    let policy = mk_cnp(
        "egress",
        "Admin",
        1,
        json!({"subject": {"namespaces": ns_selector("shop")}, "egress": [
            {"action": "Accept", "to": [{"domainNames": ["example.com"]}]},
            {"action": "Deny", "to": [{"nodes": {}}]}]}),
    );
    let index = mk_world(&[], cnps(vec![policy]));
    assert_eq!(index.findings().len(), 2);
    assert!(tiers(&index, "shop/checkout", "192.168.0.1", 443).allowed);
}

#[test]
fn without_admin_policies_every_side_is_decided_by_network_policy_or_the_default() {
    let index = mk_world(&[deny_all_ingress_netpol()], AdminObjects::default());
    for (from, to) in [
        ("ops/monitor", "shop/payments"),
        ("shop/payments", "ops/monitor"),
        ("shop/checkout", "8.8.8.8"),
    ] {
        let verdict = tiers(&index, from, to, 80);
        let plain = index.evaluate(&flow(from, to, 80)).unwrap();
        assert_eq!(verdict.allowed, plain.allowed);
        assert_eq!(verdict.explain(), plain.explain());
        assert!(!verdict.needs_cluster_admin());
        assert!(verdict.deciding_admin_rules().is_empty());
    }
}

#[test]
fn explain_names_the_deciding_admin_rule_and_says_a_cluster_admin_must_change_it() {
    let mut policy = ingress_rules("no-ops", 10, &[("Deny", "ops")]);
    policy.spec.as_mut().unwrap().ingress.as_mut().unwrap()[0].name = Some("deny-from-ops".into());
    let index = mk_world(&[allow_all_ingress_netpol()], cnps(vec![policy]));
    let verdict = tiers(&index, "ops/monitor", "shop/payments", 80);
    let sentence = verdict.explain();
    assert!(sentence.starts_with("denied: "), "{sentence}");
    assert!(
        sentence.contains(r#"ClusterNetworkPolicy no-ops ingress[0] "deny-from-ops" (Deny)"#),
        "{sentence}"
    );
    assert!(sentence.contains("Admin tier"), "{sentence}");
    assert!(sentence.contains("cluster admin"), "{sentence}");
    assert!(verdict.needs_cluster_admin());
    assert_eq!(verdict.deciding_admin_rules().len(), 1);
    let json = serde_json::to_value(&verdict).unwrap();
    assert_eq!(json["allowed"], false);
    assert_eq!(json["needsClusterAdmin"], true);
    assert_eq!(json["ingress"]["decidedBy"], "Admin");
    assert_eq!(json["ingress"]["networkPolicyAllowed"], true);
    assert_eq!(json["ingress"]["rule"]["policy"]["kind"], "ClusterNetworkPolicy");
    assert_eq!(json["ingress"]["rule"]["name"], "deny-from-ops");
    assert_eq!(json["egress"]["decidedBy"], "Default");
}

#[test]
fn matrix_agrees_with_evaluate_tiers_for_every_pair_on_mixed_tiers() {
    let admin = cnps(vec![
        ingress_rules("pass-ops", 1, &[("Pass", "ops")]),
        mk_cnp(
            "named",
            "Admin",
            2,
            json!({"subject": {"pods": {"namespaceSelector": {}, "podSelector": {"matchLabels": {"app": "payments"}}}},
            "ingress": [{"action": "Accept", "from": [{"pods": {"namespaceSelector": {}, "podSelector": {"matchLabels": {"app": "checkout"}}}}],
                         "protocols": [{"destinationNamedPort": "http"}]},
                        {"action": "Deny", "from": [{"namespaces": ns_selector("shop")}]}]}),
        ),
        mk_cnp(
            "egress",
            "Admin",
            3,
            json!({"subject": {"namespaces": ns_selector("ops")},
            "egress": [{"action": "Deny", "to": [{"networks": ["10.0.1.2/32"]}],
                        "protocols": [{"tcp": {"destinationPort": {"range": {"start": 8000, "end": 8100}}}}]},
                       {"action": "Pass", "to": [{"namespaces": {}}]}]}),
        ),
        mk_cnp(
            "baseline",
            "Baseline",
            1,
            json!({"subject": {"namespaces": {}},
            "ingress": [{"action": "Deny", "from": [{"namespaces": ns_selector("ops")}]}],
            "egress": [{"action": "Accept", "to": [{"namespaces": ns_selector("shop")}]},
                       {"action": "Deny", "to": [{"namespaces": {}}]}]}),
        ),
    ]);
    let netpols = [mk_netpol(
        "shop",
        "checkout-only",
        json!({"podSelector": {"matchLabels": {"app": "checkout"}},
        "ingress": [{"from": [{"namespaceSelector": {}}], "ports": [{"port": 80}]}]}),
    )];
    let index = mk_world(&netpols, admin);
    assert!(index.findings().is_empty(), "{:?}", index.findings());
    for port in [80, 8080, 8081, 9000] {
        let matrix = index.matrix(port, Protocol::Tcp, &[]).unwrap();
        let mut seen = BTreeMap::new();
        for (from_pos, from) in matrix.pods.iter().enumerate() {
            for (to_pos, to) in matrix.pods.iter().enumerate() {
                let expected = tiers(&index, from, to, port).allowed;
                assert_eq!(
                    matrix.allowed(from_pos, to_pos),
                    expected,
                    "{from} -> {to} port {port}"
                );
                *seen.entry(expected).or_insert(0) += 1;
            }
        }
        assert_eq!(seen.len(), 2, "port {port}: the case should have both answers");
    }
}
