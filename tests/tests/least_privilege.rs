//! Least privilege, end to end: a user bound only in their team's namespace (the shipped
//! `deploy/examples/namespace-user-bindings.yaml`) checks that namespace's flows, and what they may
//! not read leaves only the layers that need it undetermined, naming the permission.
//!
//! Needs root and real kubectl; fails otherwise.

mod common;

use std::process::Command;

use common::checklab::{CheckLab, check_json, one_lab_at_a_time, show};
use common::{kubectl, require_root};

/// The lab's kubeconfig with its user's credentials replaced by a bearer token.
fn token_kubeconfig(lab: &CheckLab, token: &str) -> std::path::PathBuf {
    let text = std::fs::read_to_string(lab.kubeconfig()).expect("the lab's kubeconfig");
    let mut config: serde_json::Value = serde_yaml_ng::from_str(&text).expect("a kubeconfig");
    for user in config["users"].as_array_mut().expect("users") {
        user["user"] = serde_json::json!({"token": token});
    }
    let path = lab.state().join(format!("kubeconfig-{token}"));
    std::fs::write(&path, serde_json::to_string(&config).expect("json")).expect("write kubeconfig");
    path
}

/// `kubectl-netdiag ARGS --kubeconfig KUBECONFIG`, as that user.
fn netdiag_as(kubeconfig: &std::path::Path, args: &[&str]) -> std::process::Output {
    Command::new(common::checklab::netdiag_bin())
        .args(args)
        .arg("--kubeconfig")
        .arg(kubeconfig)
        .env("NO_COLOR", "1")
        .output()
        .expect("kubectl-netdiag")
}

fn step<'a>(report: &'a serde_json::Value, layer: &str) -> &'a serde_json::Value {
    report["steps"]
        .as_array()
        .and_then(|steps| steps.iter().find(|s| s["layer"] == layer))
        .unwrap_or_else(|| panic!("no {layer} step in {report:#}"))
}

/// The namespace-user scenario with the shipped example's bindings as its `rbac`, which both
/// control planes serve (kube-apiserver after `deploy/`; the stand-in beside `rbac-user.yaml`).
fn scenario_with_shipped_bindings() -> std::path::PathBuf {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(dir.join("scenarios/lab/namespace-user.yaml")).expect("scenario");
    let mut scenario: serde_json::Value = serde_yaml_ng::from_str(&text).expect("scenario yaml");
    let bindings = std::fs::read_to_string(dir.join("../deploy/examples/namespace-user-bindings.yaml"))
        .expect("the shipped example");
    scenario["rbac"] = netdiag_lab::rbac::yaml_objects(&bindings)
        .expect("bindings yaml")
        .into();
    let path = std::env::temp_dir().join(format!("netdiag-namespace-user-{}.yaml", std::process::id()));
    std::fs::write(&path, serde_json::to_string(&scenario).expect("json")).expect("write scenario");
    path
}

#[test]
fn a_user_bound_in_one_namespace_checks_its_flows_on_kube_apiserver() {
    a_user_bound_in_one_namespace_checks_its_flows_and_is_told_what_it_may_not_read("real");
}

#[test]
fn a_user_bound_in_one_namespace_checks_its_flows_on_the_api_stand_in() {
    a_user_bound_in_one_namespace_checks_its_flows_and_is_told_what_it_may_not_read("stand-in");
}

fn a_user_bound_in_one_namespace_checks_its_flows_and_is_told_what_it_may_not_read(control_plane: &str) {
    require_root();
    let _lock = one_lab_at_a_time();
    let scenario = scenario_with_shipped_bindings();
    let lab = CheckLab::up_with(&scenario, &["--control-plane", control_plane]);
    let _ = std::fs::remove_file(&scenario);
    let developer = token_kubeconfig(&lab, "shop-developer-token");

    // The API server holds the user to the bindings: shop's pods, not kube-system's nor the
    // cluster's admin policies.
    let can_i = |args: &[&str]| {
        let out = Command::new(kubectl())
            .arg("--kubeconfig")
            .arg(&developer)
            .args(["auth", "can-i"])
            .args(args)
            .output()
            .expect("kubectl auth can-i");
        let answer = String::from_utf8_lossy(&out.stdout).trim().to_string();
        assert!(!answer.is_empty(), "kubectl auth can-i {args:?}: {}", show(&out));
        answer
    };
    // kubectl sends no bearer token over the stand-in's plain HTTP (it would ask as the
    // administrator); the stand-in's SelfSubjectAccessReview is tested in `apiserver.rs`.
    if control_plane == "real" {
        assert_eq!(can_i(&["list", "pods", "-n", "shop"]), "yes");
        assert_eq!(can_i(&["list", "pods", "-n", "kube-system"]), "no");
        assert_eq!(
            can_i(&["list", "adminnetworkpolicies.policy.networking.k8s.io"]),
            "no"
        );
    }

    // A healthy flow of their namespace: every layer the user may read is judged.
    let out = netdiag_as(&developer, &check_json("shop/checkout", "svc/payments.shop:80"));
    let report = common::checklab::json(&out);
    assert_eq!(report["verdict"], "reachable", "{}", show(&out));
    assert_eq!(out.status.code(), Some(0), "{}", show(&out));
    for layer in ["source", "dns", "service", "endpoints", "application"] {
        assert_eq!(step(&report, layer)["status"], "pass", "{layer}: {report:#}");
    }

    // A denied flow: NetworkPolicy cannot be evaluated without the cluster's admin policies, so
    // that layer is undetermined, naming the read and the can-i line; no other layer is blamed.
    let ledger = check_json("shop/checkout", "svc/ledger.shop:80");
    let out = netdiag_as(&developer, &ledger);
    let report = common::checklab::json(&out);
    assert_eq!(report["verdict"], "undetermined", "{}", show(&out));
    let policy = step(&report, "network-policy");
    assert_eq!(policy["status"], "undetermined", "{report:#}");
    assert_eq!(policy["code"], "network-policy-not-evaluated", "{report:#}");
    assert!(
        policy["evidence"].to_string().contains("forbidden to list "),
        "{report:#}"
    );
    let fix = report["fix"].to_string();
    assert!(
        fix.contains("auth can-i list clusternetworkpolicies.policy.networking.k8s.io")
            || fix.contains("auth can-i list adminnetworkpolicies.policy.networking.k8s.io"),
        "{report:#}"
    );
    assert!(!fix.contains("can-i list networkpolicies -A"), "{report:#}");
    for layer in ["source", "service", "endpoints"] {
        assert_eq!(step(&report, layer)["status"], "pass", "{layer}: {report:#}");
    }

    // The platform team's binding (cluster-wide) names the policy.
    let out = lab.netdiag(&ledger);
    let report = common::checklab::json(&out);
    assert_eq!(report["verdict"], "unreachable", "{}", show(&out));
    assert_eq!(report["failingLayer"], "network-policy", "{report:#}");
}
