//! End-to-end tests of `kubectl netdiag check` in the lab: every scenario in
//! `scenarios/check/` through `netdiag-lab run` (up, check, compare with `expect`, down), one
//! check through real `kubectl` and its plugin lookup, and a missing agent giving UNDETERMINED.
//!
//! Needs root (network namespaces), and real kubectl for the plugin lookup; fails otherwise. The
//! labs of this file run one at a time (a file lock), because every lab uses the same pod addresses.

mod common;

use std::process::Command;

use common::BIN as LAB;
use common::checklab::{CheckLab, check_json, json, netdiag_bin, one_lab_at_a_time, scenario, show};
use common::{kubectl, require_root};

fn run_scenario(file: &str) {
    require_root();
    let _lock = one_lab_at_a_time();
    let out = Command::new(LAB)
        .arg("run")
        .arg(scenario(file))
        .arg("--netdiag-bin")
        .arg(netdiag_bin())
        .env("NO_COLOR", "1")
        .output()
        .expect("run netdiag-lab");
    assert!(
        out.status.success(),
        "scenario {file} did not give its expected verdict\n{}",
        show(&out)
    );
}

macro_rules! scenarios {
    ($($test:ident => $file:literal,)*) => {
        const SCENARIOS: &[&str] = &[$($file),*];
        $(
            #[test]
            fn $test() {
                run_scenario($file);
            }
        )*
    };
}

scenarios! {
    healthy_service_is_reachable => "healthy.yaml",
    typo_in_the_service_name_fails_dns => "nxdomain-typo.yaml",
    short_name_from_another_namespace_fails_dns => "short-name-cross-namespace.yaml",
    dns_server_down_fails_dns => "dns-down.yaml",
    dns_egress_blocked_by_policy_fails_network_policy => "dns-egress-blocked.yaml",
    selector_matching_no_pods_fails_endpoints => "selector-no-pods.yaml",
    pods_not_ready_fail_endpoints => "pods-not-ready.yaml",
    named_target_port_missing_on_the_pods_fails_service => "named-targetport-missing.yaml",
    wrong_numeric_target_port_fails_service => "wrong-numeric-targetport.yaml",
    app_bound_to_loopback_fails_application => "app-loopback.yaml",
    nothing_listening_on_the_declared_port_fails_application => "nothing-listening.yaml",
    ingress_denied_by_policy_fails_network_policy => "ingress-denied.yaml",
    egress_denied_by_policy_fails_network_policy => "egress-denied.yaml",
    service_rules_missing_on_the_source_node_fails_service_proxy => "service-rules-missing.yaml",
    cross_node_link_cut_fails_pod_network => "link-cut.yaml",
    pod_target_with_a_named_port_is_reachable => "pod-target-named-port.yaml",
    unenforced_policy_is_reachable_and_reported => "policy-not-enforced.yaml",
    unenforced_policy_names_the_enforcer_that_should_apply_it => "policy-not-enforced-calico.yaml",
    enforced_policy_fails_network_policy_for_a_pod_target => "policy-enforced.yaml",
    cluster_ip_target_is_checked_as_its_service => "ip-target-cluster-ip.yaml",
    headless_service_is_reachable_without_a_virtual_ip => "headless-service.yaml",
    named_target_port_declared_by_a_native_sidecar_is_reachable => "sidecar-named-targetport.yaml",
    only_serving_terminating_endpoints_are_reachable_as_kube_proxy_falls_back => "serving-terminating-only.yaml",
    one_refusing_endpoint_of_three_fails_application => "partial-refusing-endpoint.yaml",
    one_loopback_bound_endpoint_of_three_fails_application => "partial-loopback-endpoint.yaml",
    one_not_ready_failing_pod_of_three_leaves_the_service_reachable => "partial-not-ready-failing.yaml",
    udp_service_whose_pods_answer_datagrams_is_reachable => "udp-healthy.yaml",
    udp_service_over_pods_serving_tcp_fails_service_with_a_protocol_mismatch => "udp-protocol-mismatch.yaml",
    udp_port_with_nothing_bound_is_refused_by_icmp_and_fails_application => "udp-nothing-bound.yaml",
    udp_dropped_by_a_denying_policy_fails_network_policy_as_likely => "udp-ingress-denied.yaml",
    udp_rejected_on_the_path_without_policy_fails_pod_network_for_certain => "udp-path-reject.yaml",
    udp_silence_from_a_bound_socket_without_policy_is_undetermined => "udp-path-drop.yaml",
    one_udp_endpoint_of_three_with_nothing_bound_fails_application => "udp-partial-nothing-bound.yaml",
    the_udp_port_of_kube_dns_is_checked_with_a_dns_query => "udp-dns-service.yaml",
    local_traffic_policy_without_an_endpoint_on_the_source_node_fails_endpoints => "local-traffic-policy-no-local-endpoint.yaml",
    local_traffic_policy_judges_only_the_source_nodes_endpoints => "local-traffic-policy-local-endpoint.yaml",
    local_traffic_policy_falls_back_to_the_nodes_terminating_endpoint => "local-traffic-policy-terminating-fallback.yaml",
    zone_hints_send_the_source_only_to_its_zones_refusing_endpoint => "topology-same-zone-endpoint-refuses.yaml",
    one_connection_in_ten_lost_to_one_endpoint_fails_pod_network_when_repeated => "intermittent-endpoint-loss.yaml",
    one_dns_query_in_ten_lost_fails_dns_when_repeated => "intermittent-dns-loss.yaml",
    one_dns_pod_of_two_failing_fails_dns_by_name => "dns-one-pod-of-two-fails.yaml",
    a_large_answer_whose_tcp_retry_is_blocked_fails_dns => "dns-tcp-fallback-blocked.yaml",
    lookups_through_a_node_local_dns_cache_are_reachable => "node-local-dns-healthy.yaml",
    a_node_local_dns_cache_that_is_down_fails_dns_by_name => "node-local-dns-down.yaml",
    an_external_name_alias_is_followed_to_the_service_it_names => "external-name-alias.yaml",
    a_name_outside_the_cluster_without_an_upstream_fails_dns_as_refused => "dns-name-outside-cluster.yaml",
    one_dropped_endpoint_of_five_fails_pod_network => "partial-dropped-endpoint.yaml",
    a_single_port_drop_fails_pod_network_without_blaming_the_path => "single-port-drop.yaml",
    a_stale_selectorless_endpoint_fails_endpoints => "stale-selectorless-endpoint.yaml",
    an_admin_tier_deny_fails_network_policy_despite_an_allowing_networkpolicy => "admin-deny.yaml",
    an_admin_tier_pass_hands_the_flow_to_an_allowing_networkpolicy => "admin-pass.yaml",
    an_impostor_agent_pod_is_skipped_and_the_genuine_agent_probes => "impostor-agent.yaml",
    an_impostor_with_a_forged_daemonset_owner_is_skipped_and_the_genuine_agent_probes =>
        "impostor-agent-forged-owner.yaml",
    an_mtu_black_hole_between_the_nodes_fails_pod_network_with_the_path_mtu => "link-mtu.yaml",
    a_dropped_reply_is_seen_leaving_the_destination_pod_and_fails_pod_network => "reply-drop.yaml",
    a_stale_vip_rule_to_a_pod_that_left_the_service_fails_service_proxy => "stale-vip-rule.yaml",
    a_stale_nftables_rule_to_a_pod_that_left_the_service_fails_service_proxy => "stale-vip-rule-nftables.yaml",
    nftables_rules_missing_on_the_source_node_fail_service_proxy => "service-rules-missing-nftables.yaml",
    an_ipv6_only_service_is_reachable_resolved_by_aaaa => "ipv6-only-healthy.yaml",
    a_dual_stack_service_is_reachable_in_both_families => "dual-stack-healthy.yaml",
    a_cut_ipv6_path_fails_pod_network_for_ipv6_while_ipv4_works => "dual-stack-ipv6-cut.yaml",
    an_ipv4_only_ip_block_fails_network_policy_for_ipv6_only => "dual-stack-ipblock-v4-only.yaml",
    an_ipv4_only_listener_fails_application_for_ipv6_only => "dual-stack-ipv4-only-listener.yaml",
    an_ipv4_only_udp_socket_refusing_ipv6_is_named_as_tcp_names_it => "udp-ipv6-ipv4-wildcard.yaml",
    a_baseline_deny_without_an_isolating_policy_advises_a_new_policy => "baseline-egress-deny.yaml",
    dns_admitted_by_an_ipv4_ip_block_only_fails_network_policy_for_ipv6_queries => "dual-stack-dns-egress-ipv4-ipblock.yaml",
    an_mtu_black_hole_on_the_source_link_names_the_share_and_every_node_pair => "link-mtu-source-node-of-three.yaml",
    a_host_outside_the_cluster_is_reachable_by_name_through_the_upstream => "egress-external-healthy.yaml",
    an_outside_host_that_drops_the_connection_is_handed_off_with_the_uplink_evidence => "egress-outside-drops.yaml",
    traffic_leaving_the_cluster_untranslated_fails_pod_network => "egress-no-snat.yaml",
    traffic_dropped_on_the_node_before_its_uplink_fails_pod_network => "egress-dropped-on-node.yaml",
    an_outside_answer_lost_on_the_node_fails_pod_network => "egress-reply-lost.yaml",
    an_upstream_dns_server_that_does_not_run_fails_dns_as_the_upstream => "dns-upstream-unreachable.yaml",
    an_egress_ip_block_except_denies_the_outside_host_at_network_policy => "egress-ipblock-excludes-outside.yaml",
    an_external_name_for_an_outside_host_is_followed_to_that_host => "external-name-outside-host.yaml",
    an_external_name_whose_outside_host_drops_is_handed_off_at_the_uplink => "external-name-outside-host-drops.yaml",
    a_node_port_is_reachable_from_a_pod_and_from_another_node => "node-port-healthy.yaml",
    a_local_node_port_without_an_endpoint_on_its_node_drops_outside_clients => "node-port-local-no-endpoint.yaml",
    a_local_node_port_on_the_node_of_its_endpoint_serves_outside_clients => "node-port-local-endpoint-on-node.yaml",
    another_nodes_local_node_port_is_answered_past_it_and_fails_service_proxy => "node-port-local-other-node.yaml",
    a_node_port_its_node_does_not_translate_fails_service_proxy_there => "node-port-rules-missing.yaml",
    policy_is_evaluated_from_the_node_that_masquerades_a_node_port => "node-port-policy-sees-the-node.yaml",
    a_load_balancer_address_is_reachable_as_the_source_node_captures_it => "load-balancer-healthy.yaml",
    a_load_balancer_address_the_source_node_does_not_capture_fails_service_proxy => "load-balancer-rules-missing.yaml",
    load_balancer_source_ranges_that_leave_out_the_pod_fail_service_proxy_on_them => "load-balancer-source-range-excludes-pod.yaml",
    load_balancer_source_ranges_that_admit_the_pod_let_it_through => "load-balancer-source-range-admits-pod.yaml",
}

#[test]
fn every_scenario_file_has_a_test() {
    let mut files: Vec<String> = std::fs::read_dir(scenario(""))
        .expect("scenarios/check")
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".yaml"))
        .collect();
    files.sort();
    let mut listed: Vec<String> = SCENARIOS.iter().map(|s| s.to_string()).collect();
    listed.sort();
    assert_eq!(files, listed);
    assert!(files.len() >= 14);
}

#[test]
fn a_policy_that_is_not_enforced_has_an_exit_code_of_its_own() {
    require_root();
    let _lock = one_lab_at_a_time();
    let lab = CheckLab::up(&scenario("policy-not-enforced.yaml"));
    let out = lab.netdiag(&check_json("shop/checkout", "svc/payments.shop:80"));
    let report = json(&out);
    assert_eq!(report["verdict"], "reachable", "{}", show(&out));
    assert_eq!(
        out.status.code(),
        Some(9),
        "reachable, but the policy is not enforced\n{}",
        show(&out)
    );
    let policy = report["steps"]
        .as_array()
        .and_then(|steps| steps.iter().find(|s| s["layer"] == "network-policy"))
        .expect("a network-policy step");
    assert_eq!(policy["code"], "network-policy-not-enforced", "{report:#}");
    assert_eq!(policy["status"], "pass", "{report:#}");
}

/// `policy verify -n shop --port 8080 -o json` against `lab`.
fn verify(lab: &CheckLab) -> (std::process::Output, serde_json::Value) {
    let out = lab.netdiag(&["policy", "verify", "-n", "shop", "--port", "8080", "-o", "json"]);
    let report = json(&out);
    (out, report)
}

#[test]
fn policy_verify_reports_a_denied_pair_that_connects() {
    require_root();
    let _lock = one_lab_at_a_time();
    let lab = CheckLab::up(&scenario("policy-not-enforced.yaml"));
    let (out, report) = verify(&lab);
    assert_eq!(
        out.status.code(),
        Some(9),
        "policy is not enforced\n{}",
        show(&out)
    );
    // The same pairs, the same answers, on a second run of the same state.
    let (_, again) = verify(&lab);
    assert_eq!(again["probed"], report["probed"], "{again:#}");
    let probed = report["probed"].as_array().expect("probed pairs");
    let denied = probed
        .iter()
        .find(|p| p["from"] == "shop/checkout" && p["to"] == "shop/payments-0")
        .unwrap_or_else(|| panic!("checkout → payments-0 probed: {report:#}"));
    assert_eq!(denied["policy"], "denied", "{report:#}");
    assert_eq!(denied["result"], "not-enforced", "{report:#}");
    assert!(
        denied["why"]
            .as_str()
            .is_some_and(|why| why.contains("NetworkPolicy is not enforced on node-b")),
        "{report:#}"
    );
    assert!(report["disagreements"].as_u64() >= Some(1), "{report:#}");
}

#[test]
fn policy_verify_agrees_where_the_cluster_enforces_policy() {
    require_root();
    let _lock = one_lab_at_a_time();
    let (out, report) = verify(&CheckLab::up(&scenario("policy-enforced.yaml")));
    assert_eq!(out.status.code(), Some(0), "{}", show(&out));
    let results: Vec<(String, String)> = report["probed"]
        .as_array()
        .expect("probed pairs")
        .iter()
        .map(|p| {
            (
                p["policy"].as_str().unwrap().to_string(),
                p["result"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    // One class of denied pairs, one of allowed: both probed, both as the evaluation says.
    assert_eq!(
        results,
        [
            ("denied".to_string(), "agrees".to_string()),
            ("allowed".to_string(), "agrees".to_string())
        ],
        "{report:#}"
    );
    assert_eq!(report["disagreements"], 0, "{report:#}");
}

#[test]
fn check_runs_as_a_kubectl_plugin_through_real_kubectl() {
    require_root();
    let kubectl = kubectl();
    let bin_dir = netdiag_bin().parent().unwrap().to_path_buf();
    let path = format!(
        "{}:{}",
        bin_dir.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let _lock = one_lab_at_a_time();
    let lab = CheckLab::up(&scenario("ingress-denied.yaml"));
    // kubectl finds `kubectl-netdiag` on PATH and passes the environment (KUBECONFIG) through.
    let out = Command::new(&kubectl)
        .args([
            "netdiag",
            "check",
            "--from",
            "shop/checkout",
            "--to",
            "svc/payments.shop:80",
            "-o",
            "json",
        ])
        .env("PATH", &path)
        .env("KUBECONFIG", lab.kubeconfig())
        .output()
        .expect("run kubectl");
    assert_eq!(
        out.status.code(),
        Some(14),
        "network-policy has exit code 14\n{}",
        show(&out)
    );
    let report = json(&out);
    assert_eq!(report["verdict"], "unreachable");
    assert_eq!(report["reachable"], false);
    assert_eq!(report["failingLayer"], "network-policy");
    let steps = report["steps"].as_array().unwrap();
    let layers: Vec<&str> = steps.iter().map(|s| s["layer"].as_str().unwrap()).collect();
    assert_eq!(
        layers,
        [
            "source",
            "dns",
            "service",
            "endpoints",
            "network-policy",
            "pod-network",
            "service-proxy",
            "application"
        ]
    );
    let policy = &steps[4];
    assert!(
        policy["summary"]
            .as_str()
            .unwrap()
            .contains("shop/payments-ingress"),
        "{policy}"
    );
    assert!(report["durationMs"].is_u64());

    // The same lab read by kubectl itself: the plugin and kubectl see the same objects.
    let out = Command::new(&kubectl)
        .args(["get", "networkpolicies", "-n", "shop", "-o", "name"])
        .env("KUBECONFIG", lab.kubeconfig())
        .output()
        .unwrap();
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("payments-ingress"),
        "{}",
        show(&out)
    );
}

#[test]
fn missing_agent_on_the_source_node_is_undetermined_not_a_network_failure() {
    require_root();
    let _lock = one_lab_at_a_time();
    let lab = CheckLab::up(&scenario("healthy.yaml"));
    let out = Command::new(netdiag_bin())
        .args(["check", "--kubeconfig"])
        .arg(lab.kubeconfig())
        .args([
            "--from",
            "shop/checkout",
            "--to",
            "svc/payments.shop:80",
            "-o",
            "json",
        ])
        // No agent pod carries this label, so node-a has no agent.
        .args(["--agent-selector", "app.kubernetes.io/name=netdiag-agent-absent"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(3), "{}", show(&out));
    let report = json(&out);
    assert_eq!(report["verdict"], "undetermined");
    assert_eq!(report["failingLayer"], serde_json::Value::Null);
    let source = &report["steps"][0];
    assert_eq!(source["status"], "undetermined");
    assert!(
        source["summary"]
            .as_str()
            .unwrap()
            .contains("no running netdiag agent on node node-a"),
        "{source}"
    );
    assert!(
        report["steps"]
            .as_array()
            .unwrap()
            .iter()
            .all(|s| s["status"] != "fail")
    );
}

#[test]
fn pods_that_are_not_the_agent_daemonset_are_never_asked_and_the_check_is_undetermined() {
    require_root();
    let _lock = one_lab_at_a_time();
    let lab = CheckLab::up(&scenario("healthy.yaml"));
    // "Agents" that are ordinary pods: no DaemonSet controls them, so none is taken as an agent.
    // As an administrator: the shipped user role reads the agent DaemonSet in its own namespace
    // only, so real RBAC would stop the plugin's user before it looked at these pods.
    let out = Command::new(netdiag_bin())
        .args(["check", "--kubeconfig"])
        .arg(lab.admin_kubeconfig())
        .args([
            "--from",
            "shop/checkout",
            "--to",
            "svc/payments.shop:80",
            "-o",
            "json",
        ])
        .args(["--agent-namespace", "shop", "--agent-selector", "app=checkout"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(3), "{}", show(&out));
    let report = json(&out);
    assert_eq!(report["verdict"], "undetermined");
    let source = &report["steps"][0];
    assert_eq!(source["status"], "undetermined");
    let summary = source["summary"].as_str().unwrap();
    assert!(
        summary.contains("no running netdiag agent on node node-a"),
        "{source}"
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("skipping pod shop/checkout") && stderr.contains("not controlled by DaemonSet"),
        "{stderr}"
    );
}

/// The failing step names the fault the scenario injects, not only its layer: each expected
/// word comes from the scenario file (the object, port, node or address that is broken).
#[test]
fn failing_steps_name_the_injected_fault() {
    require_root();
    let cases: &[(&str, &str, &str, &[&str])] = &[
        (
            "dns-down.yaml",
            "svc/payments.shop:80",
            "dns",
            &["kube-dns", "DNS pods down"],
        ),
        (
            "nxdomain-typo.yaml",
            "paymnts.shop:80",
            "dns",
            &["paymnts", "did you mean payments"],
        ),
        (
            "selector-no-pods.yaml",
            "svc/payments.shop:80",
            "endpoints",
            &["app=paymnts", "matches no pods"],
        ),
        (
            "wrong-numeric-targetport.yaml",
            "svc/payments.shop:80",
            "service",
            &["9090", "8080"],
        ),
        (
            "app-loopback.yaml",
            "svc/payments.shop:80",
            "application",
            &["127.0.0.1:8080"],
        ),
        (
            "link-cut.yaml",
            "svc/payments.shop:80",
            "pod-network",
            &["node-b", "cross-node"],
        ),
        (
            "service-rules-missing.yaml",
            "svc/payments.shop:80",
            "service-proxy",
            &["node-a"],
        ),
        (
            "egress-denied.yaml",
            "svc/payments.shop:80",
            "network-policy",
            &["egress", "shop/checkout-egress"],
        ),
        (
            "admin-deny.yaml",
            "svc/payments.shop:80",
            "network-policy",
            &["ClusterNetworkPolicy quarantine-payments", "Admin tier"],
        ),
    ];
    let _lock = one_lab_at_a_time();
    for (file, to, layer, words) in cases {
        let lab = CheckLab::up(&scenario(file));
        let out = Command::new(netdiag_bin())
            .args(["check", "--kubeconfig"])
            .arg(lab.kubeconfig())
            .args(["--from", "shop/checkout", "--to", to, "-o", "json"])
            .output()
            .unwrap();
        let report = json(&out);
        assert_eq!(report["failingLayer"], *layer, "{file}\n{}", show(&out));
        let step = report["steps"]
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["layer"] == *layer)
            .unwrap();
        let summary = step["summary"].as_str().unwrap();
        for word in *words {
            assert!(
                summary.contains(word),
                "{file}: {word:?} missing from {summary:?}"
            );
        }
    }
}

/// Passing steps say why they pass where Kubernetes' own rules decide it: a named targetPort
/// that only a native sidecar declares, and a Service carried by a terminating-but-serving pod.
#[test]
fn passing_steps_name_the_kubernetes_rule_that_makes_them_pass() {
    require_root();
    let cases: &[(&str, &str, &str, &[&str])] = &[
        (
            "sidecar-named-targetport.yaml",
            "svc/payments-metrics.shop:9090",
            "service",
            &["targetPort metrics (9090)", "native sidecar container sidecar"],
        ),
        (
            "serving-terminating-only.yaml",
            "svc/payments.shop:80",
            "endpoints",
            &["0/1 ready", "serving-but-terminating (payments-0)"],
        ),
    ];
    let _lock = one_lab_at_a_time();
    for (file, to, layer, words) in cases {
        let lab = CheckLab::up(&scenario(file));
        let out = Command::new(netdiag_bin())
            .args(["check", "--kubeconfig"])
            .arg(lab.kubeconfig())
            .args(["--from", "shop/checkout", "--to", to, "-o", "json"])
            .output()
            .unwrap();
        let report = json(&out);
        assert_eq!(report["verdict"], "reachable", "{file}\n{}", show(&out));
        let step = report["steps"]
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["layer"] == *layer)
            .unwrap();
        let text = format!("{} {}", step["summary"], step["evidence"]);
        for word in *words {
            assert!(text.contains(word), "{file}: {word:?} missing from {text}");
        }
    }
}

/// Checks the lab of `file` ten times and requires the same verdict, failing layer and failing
/// summary every time: a verdict must not depend on which endpoint one connection reached.
/// Returns the one report's failing step summary (or the verdict when reachable).
fn same_verdict_on_every_run(file: &str) -> String {
    let lab = CheckLab::up(&scenario(file));
    let mut seen: Vec<(String, String, String)> = Vec::new();
    for _ in 0..10 {
        let out = Command::new(netdiag_bin())
            .args(["check", "--kubeconfig"])
            .arg(lab.kubeconfig())
            .args(["--from", "shop/checkout", "--to", "svc/payments.shop:80"])
            .args(["--timeout", "500ms", "-o", "json"])
            .output()
            .unwrap();
        let report = json(&out);
        let layer = report["failingLayer"].as_str().unwrap_or("").to_string();
        let summary = report["steps"]
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["layer"] == layer.as_str())
            .map(|s| s["summary"].as_str().unwrap().to_string())
            .unwrap_or_default();
        seen.push((report["verdict"].as_str().unwrap().to_string(), layer, summary));
    }
    let first = seen[0].clone();
    for (i, run) in seen.iter().enumerate() {
        assert_eq!(run, &first, "{file}: run {i} differs from run 0");
    }
    format!("{} {} {}", first.0, first.1, first.2)
}

/// "1 in N connections fails": ten checks of each partial-failure lab give one verdict, and it
/// names the failing endpoint, its layer and its share.
#[test]
fn partial_failures_give_the_same_true_verdict_on_every_run() {
    require_root();
    let cases: &[(&str, &[&str])] = &[
        (
            "partial-refusing-endpoint.yaml",
            &[
                "unreachable application",
                "1 of 3 endpoints refuses: shop/payments-2",
                "about 1 in 3",
            ],
        ),
        (
            "partial-loopback-endpoint.yaml",
            &[
                "unreachable application",
                "shop/payments-2",
                "127.0.0.1:8080 only",
                "about 1 in 3",
            ],
        ),
        ("partial-not-ready-failing.yaml", &["reachable"]),
        (
            "partial-dropped-endpoint.yaml",
            &[
                "unreachable pod-network",
                "1 of 5 endpoints fail: shop/payments-3",
                "4 other endpoint(s) on node-b connect",
            ],
        ),
        (
            "single-port-drop.yaml",
            &[
                "unreachable pod-network",
                "node-b itself answers",
                "not the path between node-a and node-b",
            ],
        ),
        (
            "stale-selectorless-endpoint.yaml",
            &[
                "unreachable endpoints",
                "EndpointSlice shop/payments-manual lists 10.244.2.99:8080",
                "no pod holds",
            ],
        ),
    ];
    let _lock = one_lab_at_a_time();
    for (file, words) in cases {
        let verdict = same_verdict_on_every_run(file);
        for word in *words {
            assert!(
                verdict.contains(word),
                "{file}: {word:?} missing from {verdict:?}"
            );
        }
        assert!(
            !verdict.contains("broken") && !verdict.contains("stale)"),
            "{file}: overclaims: {verdict}"
        );
    }
}

/// One check's answer, as the ten-run tests compare it: its exit code, and one layer's status,
/// finding code and summary.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct Answer {
    exit: Option<i32>,
    status: String,
    code: String,
    summary: String,
}

/// Ten checks from shop/checkout to `to` (with `extra` flags) in the lab of `file`, each read at
/// `layer`; `same` keeps of each answer what must not change from run to run. Returns that one
/// value, failing when the runs differ in it.
fn same_on_ten_runs<K: Ord + std::fmt::Debug>(
    file: &str,
    to: &str,
    extra: &[&str],
    layer: &str,
    same: impl Fn(&Answer) -> K,
) -> K {
    let lab = CheckLab::up(&scenario(file));
    let mut seen = std::collections::BTreeSet::new();
    for _ in 0..10 {
        let mut args = check_json("shop/checkout", to).to_vec();
        args.extend(extra);
        let out = lab.netdiag(&args);
        let report = json(&out);
        let step = report["steps"]
            .as_array()
            .and_then(|steps| steps.iter().find(|s| s["layer"] == layer))
            .cloned()
            .unwrap_or_default();
        let text = |v: &serde_json::Value| v.as_str().unwrap_or_default().to_string();
        seen.insert(same(&Answer {
            exit: out.status.code(),
            status: text(&step["status"]),
            code: text(&step["code"]),
            summary: text(&step["summary"]),
        }));
    }
    assert_eq!(seen.len(), 1, "{file}: {seen:#?}");
    seen.into_iter().next().unwrap()
}

/// A policy that is not enforced reads the same on every run: ten checks of each lab give one
/// exit code (9) and one network-policy summary, naming the enforcer or that none runs.
#[test]
fn unenforced_policy_verdicts_are_the_same_on_every_run() {
    require_root();
    let _lock = one_lab_at_a_time();
    for (file, words) in [
        (
            "policy-not-enforced.yaml",
            "and no known NetworkPolicy enforcer runs",
        ),
        (
            "policy-not-enforced-calico.yaml",
            "where Calico (DaemonSet kube-system/calico-node",
        ),
    ] {
        let (exit, policy) = same_on_ten_runs(file, "svc/payments.shop:80", &[], "network-policy", |a| {
            (a.exit, a.summary.clone())
        });
        assert_eq!(exit, Some(9), "{file}");
        assert!(
            policy.contains(words),
            "{file}: {words:?} missing from {policy:?}"
        );
    }
}

/// The endpoints a node uses read the same on every run: ten checks of each lab give one exit
/// code, one verdict and one endpoints summary (the node's routing said in it).
#[test]
fn node_routing_verdicts_are_the_same_on_every_run() {
    require_root();
    let _lock = one_lab_at_a_time();
    for (file, code, words) in [
        (
            "local-traffic-policy-no-local-endpoint.yaml",
            13,
            "internalTrafficPolicy: Local and no endpoint on node-a",
        ),
        (
            "local-traffic-policy-local-endpoint.yaml",
            0,
            "uses payments-0 only (internalTrafficPolicy: Local)",
        ),
        (
            "local-traffic-policy-terminating-fallback.yaml",
            0,
            "uses payments-0 (terminating, still serving) only",
        ),
        (
            "topology-same-zone-endpoint-refuses.yaml",
            17,
            "uses payments-0 only (topology hints for zone zone-a)",
        ),
    ] {
        let (exit, endpoints) = same_on_ten_runs(file, "svc/payments.shop:80", &[], "endpoints", |a| {
            (a.exit, a.summary.clone())
        });
        assert_eq!(exit, Some(code), "{file}");
        assert!(
            endpoints.contains(words),
            "{file}: {words:?} missing from {endpoints:?}"
        );
    }
}

/// The DNS path server by server reads the same on every run: one failing DNS pod of two,
/// whichever pod each lookup reached, and a large answer whose TCP retry is blocked; ten checks
/// of each give one exit code and one dns summary.
#[test]
fn dns_server_verdicts_are_the_same_on_every_run() {
    require_root();
    let _lock = one_lab_at_a_time();
    for (file, to, code, words) in [
        (
            "dns-one-pod-of-two-fails.yaml",
            "svc/payments.shop:80",
            "dns-some-servers-fail",
            "kube-system/coredns-1 (",
        ),
        (
            "dns-tcp-fallback-blocked.yaml",
            "svc/shards.shop:80",
            "dns-tcp-fallback-failed",
            "the retry over TCP to 10.96.0.10:53",
        ),
        (
            "dns-name-outside-cluster.yaml",
            "example.com:443",
            "dns-upstream-failed",
            "example.com, a name outside the cluster, is REFUSED",
        ),
        (
            "node-local-dns-down.yaml",
            "svc/payments.shop:80",
            "dns-node-local-cache-down",
            "NodeLocal DNSCache at 169.254.20.10 on node-a",
        ),
    ] {
        ten_dns_runs(file, to, code, words);
    }
}

fn ten_dns_runs(file: &str, to: &str, want: &str, words: &str) {
    // The lookup's own outcome ("this time: …") follows the pod it reached; the rest may not.
    let (exit, code, judged) = same_on_ten_runs(file, to, &[], "dns", |a| {
        let judged = a.summary.split(", so ").next().unwrap_or_default().to_string();
        (a.exit, a.code.clone(), judged)
    });
    assert_eq!((exit, code.as_str()), (Some(11), want), "{file}");
    assert!(judged.contains(words), "{file}: {judged}");
}

/// An intermittent fault reads the same on every run of a repeated check: ten `--repeat 20`
/// checks of each lab give one exit code, one failing layer and one finding code, naming the
/// flaky target (the share may differ by a connection; the verdict may not).
#[test]
fn intermittent_verdicts_are_the_same_on_every_run() {
    require_root();
    let _lock = one_lab_at_a_time();
    for (file, layer, code, words) in [
        (
            "intermittent-endpoint-loss.yaml",
            "pod-network",
            "pod-network-intermittent",
            "connections to shop/payments-2 (",
        ),
        (
            "intermittent-dns-loss.yaml",
            "dns",
            "dns-intermittent",
            // Which query is lost (a lookup's or the one sent to the DNS pod) follows the order
            // the datagrams leave in; that DNS loses them does not.
            "timed out — a pod's resolver waits its timeout (5 s by default)",
        ),
    ] {
        let repeated = ["--repeat", "20"];
        let (_, status, got) = same_on_ten_runs(file, "svc/payments.shop:80", &repeated, layer, |a| {
            let summary = &a.summary;
            assert!(
                summary.contains(words),
                "{file}: {words:?} missing from {summary:?}"
            );
            (a.exit, a.status.clone(), a.code.clone())
        });
        assert_eq!((status.as_str(), got.as_str()), ("fail", code), "{file}");
    }
}

/// Names followed through another server or record read the same on every run: a NodeLocal
/// DNSCache, an ExternalName alias of a Service, an ExternalName for the outside host and a name
/// resolved by the cluster DNS's upstream; ten checks of each give one exit code and dns summary
/// (its timings aside).
#[test]
fn followed_names_read_the_same_on_every_run() {
    require_root();
    let _lock = one_lab_at_a_time();
    for (file, to, exit_code, words) in [
        (
            "node-local-dns-healthy.yaml",
            "svc/payments.shop:80",
            0,
            "payments.shop → 10.96.1.1 (2nd search candidate payments.shop.svc.cluster.local., via 169.254.20.10)",
        ),
        (
            "external-name-alias.yaml",
            "svc/payments.web:80",
            // Its pod refuses: the application fails, the name is followed all the same.
            17,
            "payments.web → CNAME payments.shop.svc.cluster.local → 10.96.1.1",
        ),
        (
            "external-name-outside-host.yaml",
            "svc/partner.shop:443",
            0,
            "partner.shop → CNAME partner.example → 198.51.100.10",
        ),
        (
            "egress-external-healthy.yaml",
            "partner.example:443",
            0,
            "partner.example → 198.51.100.10",
        ),
    ] {
        let (exit, summary) =
            same_on_ten_runs(file, to, &[], "dns", |a| (a.exit, without_timing(&a.summary)));
        assert_eq!(exit, Some(exit_code), "{file}");
        assert!(
            summary.contains(words),
            "{file}: {words:?} missing from {summary:?}"
        );
    }
}

/// A summary without the parts that are times ("0.4 ms"), which differ from run to run.
fn without_timing(summary: &str) -> String {
    let is_time = |part: &str| {
        part.split_once(' ').is_some_and(|(n, unit)| {
            n.parse::<f64>().is_ok() && matches!(unit.trim_end_matches(')'), "ms" | "µs" | "s")
        })
    };
    summary
        .split(", ")
        .filter(|part| !is_time(part))
        .collect::<Vec<_>>()
        .join(", ")
}

/// What the source node's uplink shows of a connection leaving the cluster reads the same on
/// every run: ten checks of each egress lab give one exit code, status, code and summary, and the
/// DNS upstream that does not run gives one dns verdict.
#[test]
fn egress_verdicts_are_the_same_on_every_run() {
    require_root();
    let _lock = one_lab_at_a_time();
    for (file, status, code, words) in [
        (
            "egress-outside-drops.yaml",
            "undetermined",
            "pod-network-egress-no-answer",
            "outside the cluster's reach",
        ),
        (
            "egress-no-snat.yaml",
            "fail",
            "pod-network-egress-not-translated",
            "with the pod's own address",
        ),
        (
            "egress-dropped-on-node.yaml",
            "fail",
            "pod-network-egress-never-left",
            "none left by eth0",
        ),
        (
            "egress-reply-lost.yaml",
            "fail",
            "pod-network-egress-answer-lost",
            "a SYN-ACK came back there",
        ),
    ] {
        let (_, got_status, got_code, summary) =
            same_on_ten_runs(file, "198.51.100.10:443", &[], "pod-network", |a| {
                (a.exit, a.status.clone(), a.code.clone(), a.summary.clone())
            });
        assert_eq!((got_status.as_str(), got_code.as_str()), (status, code), "{file}");
        assert!(
            summary.contains(words),
            "{file}: {words:?} missing from {summary:?}"
        );
    }
    let (_, status, code, _) = same_on_ten_runs(
        "dns-upstream-unreachable.yaml",
        "partner.example:443",
        &[],
        "dns",
        |a| (a.exit, a.status.clone(), a.code.clone(), a.summary.clone()),
    );
    assert_eq!((status.as_str(), code.as_str()), ("fail", "dns-upstream-failed"));
}

/// A Service entered by a node port or a LoadBalancer address reads the same on every run: ten
/// checks of each lab give one exit code, service-proxy status, code and summary.
#[test]
fn node_port_and_load_balancer_verdicts_are_the_same_on_every_run() {
    require_root();
    let _lock = one_lab_at_a_time();
    for (file, to, status, code, words) in [
        (
            "node-port-local-no-endpoint.yaml",
            "172.18.0.2:30080",
            "fail",
            "service-proxy-no-local-endpoint",
            "node-a runs no ready endpoint",
        ),
        (
            "node-port-local-other-node.yaml",
            "172.18.0.4:30080",
            "fail",
            "service-proxy-local-not-masqueraded",
            "payments-0 on node-b answers the pod directly",
        ),
        (
            "node-port-rules-missing.yaml",
            "172.18.0.3:30080",
            "fail",
            "service-proxy-refused-as-empty",
            "kube-proxy on node-b does not translate it",
        ),
        (
            "load-balancer-rules-missing.yaml",
            "203.0.113.7:80",
            "fail",
            "service-proxy-rules-missing",
            "203.0.113.7:80 timed out after 1000 ms while the pod IPs answer: the Service's rules are missing on node-a",
        ),
        (
            "node-port-healthy.yaml",
            "172.18.0.3:30080",
            "pass",
            "service-proxy-as-endpoints",
            "node port 172.18.0.3:30080",
        ),
        (
            "load-balancer-source-range-excludes-pod.yaml",
            "203.0.113.7:80",
            "fail",
            "service-proxy-source-range-excluded",
            "loadBalancerSourceRanges (192.0.2.0/24) leave out the source's address",
        ),
    ] {
        // A connection's round trip varies from run to run: everything before it may not.
        let (_, got_status, got_code, summary) = same_on_ten_runs(file, to, &[], "service-proxy", |a| {
            let summary = a.summary.split(" connected in ").next().unwrap_or_default();
            (a.exit, a.status.clone(), a.code.clone(), summary.to_string())
        });
        assert_eq!((got_status.as_str(), got_code.as_str()), (status, code), "{file}");
        assert!(
            summary.contains(words),
            "{file}: {words:?} missing from {summary:?}"
        );
    }
}

/// Per-family judgment and the datapath witnesses read the same state the same way every time:
/// ten checks of each of these labs give one verdict and summary.
#[test]
fn family_and_witness_verdicts_are_the_same_on_every_run() {
    require_root();
    let cases: &[(&str, &[&str])] = &[
        ("ipv6-only-healthy.yaml", &["reachable"]),
        ("dual-stack-healthy.yaml", &["reachable"]),
        (
            "dual-stack-ipv6-cut.yaml",
            &[
                "unreachable pod-network",
                "IPv6 path to shop/payments fails, IPv4 works",
            ],
        ),
        (
            "dual-stack-ipblock-v4-only.yaml",
            &[
                "unreachable network-policy",
                "IPv6 path to shop/payments fails, IPv4 works",
            ],
        ),
        ("dual-stack-ipv4-only-listener.yaml", &["unreachable application"]),
        ("reply-drop.yaml", &["unreachable pod-network", "never came back"]),
        ("link-mtu.yaml", &["unreachable pod-network", "MTU black hole"]),
        (
            "stale-vip-rule.yaml",
            &["unreachable service-proxy", "no longer an endpoint"],
        ),
    ];
    let _lock = one_lab_at_a_time();
    for (file, words) in cases {
        let verdict = same_verdict_on_every_run(file);
        for word in *words {
            assert!(
                verdict.contains(word),
                "{file}: {word:?} missing from {verdict:?}"
            );
        }
    }
}

/// UDP verdicts rest on answers, ICMP errors and silence, and the kernel rate-limits ICMP: ten
/// checks in a row of each UDP lab (more ICMP than the limit's burst) give one verdict and summary.
#[test]
fn udp_verdicts_are_the_same_on_every_run_despite_icmp_rate_limits() {
    require_root();
    let cases: &[(&str, &[&str])] = &[
        (
            "udp-partial-nothing-bound.yaml",
            &[
                "unreachable application",
                "1 of 3 endpoints has nothing bound",
                "shop/stats-2",
            ],
        ),
        (
            "udp-ingress-denied.yaml",
            &[
                "unreachable network-policy",
                "shop/stats-ingress",
                "likely, not proven",
            ],
        ),
        ("udp-path-drop.yaml", &["undetermined", "cannot tell"]),
        // The lab does not rate-limit ICMP: the REJECT answers every run.
        ("udp-path-reject.yaml", &["unreachable pod-network", "certain"]),
    ];
    let _lock = one_lab_at_a_time();
    for (file, words) in cases {
        let lab = CheckLab::up(&scenario(file));
        let mut seen: Vec<String> = Vec::new();
        for _ in 0..10 {
            let out = Command::new(netdiag_bin())
                .args(["check", "--kubeconfig"])
                .arg(lab.kubeconfig())
                .args(["--from", "shop/checkout", "--to", "svc/stats.shop:8125"])
                .args(["--timeout", "500ms", "-o", "json"])
                .output()
                .unwrap();
            let report = json(&out);
            // The failing (or, when undetermined, the undetermined) step.
            let step = report["steps"]
                .as_array()
                .unwrap()
                .iter()
                .find(|s| s["status"] == "fail" || s["status"] == "undetermined")
                .map(|s| format!("{} {}", s["layer"], s["summary"]))
                .unwrap_or_default();
            let layer = report["failingLayer"].as_str().unwrap_or("");
            seen.push(format!("{} {layer} {step}", report["verdict"].as_str().unwrap()));
        }
        for (i, run) in seen.iter().enumerate() {
            assert_eq!(run, &seen[0], "{file}: run {i} differs from run 0");
        }
        for word in *words {
            assert!(
                seen[0].contains(word),
                "{file}: {word:?} missing from {:?}",
                seen[0]
            );
        }
    }
}

/// A pod with the agent's label that no DaemonSet controls gets no request: the check warns,
/// naming it, and probes through the genuine agent of the node.
#[test]
fn an_impostor_agent_is_named_in_a_warning_and_never_asked() {
    impostor_is_named_and_never_asked("impostor-agent.yaml", "not controlled by DaemonSet netdiag-agent");
}

/// An impostor that claims the agent DaemonSet as its controller (an invented uid) and runs as
/// the agent's account gets no request either: the owner's uid is compared with the real one.
#[test]
fn an_impostor_with_a_forged_owner_reference_is_named_in_a_warning_and_never_asked() {
    impostor_is_named_and_never_asked(
        "impostor-agent-forged-owner.yaml",
        "with uid 0badc0de-0000-4000-8000-000000000000, which is not the uid of that DaemonSet",
    );
}

fn impostor_is_named_and_never_asked(file: &str, why: &str) {
    require_root();
    let _lock = one_lab_at_a_time();
    // On the stand-in, where the impostor stands: on a real control plane the DaemonSet controller
    // adopts an ownerless pod with its label and deletes it as an extra pod of its node, and the
    // garbage collector deletes a pod whose owner uid does not exist, so neither impostor lasts
    // (the scenarios' verdicts are checked on both).
    let lab = CheckLab::up_with(&scenario(file), &["--control-plane", "stand-in"]);
    let out = Command::new(netdiag_bin())
        .args(["check", "--kubeconfig"])
        .arg(lab.kubeconfig())
        .args([
            "--from",
            "shop/checkout",
            "--to",
            "svc/payments.shop:80",
            "-o",
            "json",
        ])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("netdiag/zzz-impostor") && stderr.contains(why),
        "{}",
        show(&out)
    );
    let report = json(&out);
    assert_eq!(report["verdict"], "reachable", "{}", show(&out));
    let source = report["steps"][0]["evidence"].to_string();
    assert!(source.contains("netdiag/netdiag-agent-node-a"), "{source}");
}
