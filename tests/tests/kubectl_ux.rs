//! End-to-end tests of how `kubectl netdiag` fits beside kubectl, in the lab: fix commands carry
//! the connection flags the check ran with; the NetworkPolicy a denied flow gets admits it once
//! applied; completion through real kubectl's plugin completion; `-l`, `status`, `version`.
//!
//! Needs root (network namespaces) and real kubectl; fails otherwise. Shares the lock of
//! `check_scenarios.rs`: every lab uses the same pod addresses.

mod common;

use std::process::Command;

use serde_json::Value;

use common::checklab::{CheckLab, bin, check_json, json, one_lab_at_a_time, scenario, show};
use common::{kubectl, require_root};

fn strings(v: &Value) -> Vec<String> {
    v.as_array()
        .unwrap_or_else(|| panic!("not an array: {v}"))
        .iter()
        .map(|s| s.as_str().unwrap().to_string())
        .collect()
}

#[test]
fn fix_commands_carry_the_context_and_kubeconfig_and_the_policy_admits_the_flow_once_applied() {
    require_root();
    let _lock = one_lab_at_a_time();
    let file = scenario("ingress-denied.yaml");
    let suggested = {
        let lab = CheckLab::up(&file);
        let kubeconfig = lab.kubeconfig().display().to_string();
        let out = lab.netdiag(&[
            "check",
            "--context",
            "netdiag-lab",
            "--from",
            "shop/checkout",
            "--to",
            "svc/payments.shop:80",
            "-o",
            "json",
        ]);
        assert_eq!(out.status.code(), Some(14), "{}", show(&out));
        let report = json(&out);
        let commands = strings(&report["commands"]);
        assert!(!commands.is_empty(), "{report}");
        let pinned = format!("kubectl --kubeconfig={kubeconfig} --context=netdiag-lab ");
        for command in &commands {
            assert!(
                command.starts_with(&pinned),
                "{command:?} is not pinned to the lab"
            );
        }
        assert!(
            commands
                .iter()
                .any(|c| c.contains("-n shop get networkpolicy payments-ingress")),
            "{commands:?}"
        );
        // Hints are prose, never commands; the old `fix` field still holds both.
        let hints = strings(&report["hints"]);
        assert!(hints.iter().all(|h| !h.starts_with("kubectl")), "{hints:?}");
        let fix = strings(&report["fix"]);
        assert_eq!(fix.len(), commands.len() + hints.len(), "{report}");
        let suggestion = &report["networkPolicy"];
        assert_eq!(suggestion["verified"], true, "{report}");
        let yaml = suggestion["yaml"].as_str().unwrap().to_string();
        // Those commands, pasted, reach the lab's API server through real kubectl.
        let get = commands
            .iter()
            .find(|c| c.contains("get networkpolicy payments-ingress"))
            .unwrap();
        let words: Vec<&str> = get.split(' ').skip(1).collect();
        let out = Command::new(kubectl())
            .args(&words)
            .env_remove("KUBECONFIG")
            .output()
            .unwrap();
        assert!(out.status.success(), "{get}\n{}", show(&out));
        assert!(
            String::from_utf8_lossy(&out.stdout).contains("payments-ingress"),
            "{}",
            show(&out)
        );
        // The table shows the same policy under the verdict.
        let out = lab.netdiag(&["check", "--from", "shop/checkout", "--to", "svc/payments.shop:80"]);
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(text.contains("NetworkPolicy that admits this flow"), "{text}");
        assert!(text.contains("kind: NetworkPolicy"), "{text}");
        yaml
    };
    // The scenario with the suggested policy added, and without the drops that enforced the old
    // policies: the evaluator now admits the flow and the check passes network-policy.
    let mut doc: serde_yaml_ng::Value =
        serde_yaml_ng::from_str(&std::fs::read_to_string(&file).unwrap()).unwrap();
    let objects = doc["objects"].as_sequence_mut().unwrap();
    for policy in suggested.split("---\n") {
        objects.push(serde_yaml_ng::from_str(policy).unwrap());
    }
    doc.as_mapping_mut().unwrap().remove("faults");
    doc["expect"] = serde_yaml_ng::from_str("{verdict: reachable}").unwrap();
    let copy = std::env::temp_dir().join(format!("netdiag-ux-admitted-{}.yaml", std::process::id()));
    std::fs::write(&copy, serde_yaml_ng::to_string(&doc).unwrap()).unwrap();
    let lab = CheckLab::up(&copy);
    let out = lab.netdiag(&check_json("shop/checkout", "svc/payments.shop:80"));
    let _ = std::fs::remove_file(&copy);
    let report = json(&out);
    let policy_step = &report["steps"][4];
    assert_eq!(policy_step["layer"], "network-policy");
    assert_eq!(policy_step["status"], "pass", "{report}");
    assert_eq!(report["verdict"], "reachable", "{report}");
}

#[test]
fn plugin_completion_through_real_kubectl_reads_the_cluster() {
    require_root();
    let _lock = one_lab_at_a_time();
    let lab = CheckLab::up(&scenario("ingress-denied.yaml"));
    let path = format!(
        "{}:{}",
        bin("kubectl_complete-netdiag").parent().unwrap().display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let complete = |words: &[&str]| -> Vec<String> {
        let out = Command::new(kubectl())
            .arg("__complete")
            .arg("netdiag")
            .args(words)
            .env("PATH", &path)
            .env("KUBECONFIG", lab.kubeconfig())
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", show(&out));
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .map(String::from)
            .collect()
    };
    let lines = complete(&["check", "--from", ""]);
    assert!(lines.contains(&"shop/".to_string()), "{lines:?}");
    assert!(lines.contains(&"deploy/".to_string()), "{lines:?}");
    assert_eq!(lines.last().map(String::as_str), Some(":6"), "{lines:?}");
    let lines = complete(&["check", "-n", "shop", "--from", "check"]);
    assert_eq!(lines, ["checkout", ":4"]);
    let lines = complete(&["check", "--from", "shop/pay"]);
    assert_eq!(lines, ["shop/payments-0", "shop/payments-1", ":4"]);
    let lines = complete(&["check", "-n", "shop", "--from", "checkout", "--to", "svc/"]);
    assert_eq!(lines, ["svc/payments:80", ":4"]);
    let lines = complete(&["check", "-n", ""]);
    assert!(
        lines.contains(&"shop".to_string()) && lines.contains(&"kube-system".to_string()),
        "{lines:?}"
    );
}

#[test]
fn a_selector_source_picks_a_pod_and_status_and_version_show_every_agent() {
    require_root();
    let _lock = one_lab_at_a_time();
    let lab = CheckLab::up(&scenario("healthy.yaml"));
    let out = lab.netdiag(&[
        "check",
        "-n",
        "shop",
        "-l",
        "app=checkout",
        "--to",
        "svc/payments:80",
        "-o",
        "json",
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", show(&out));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("using pod/checkout"), "{stderr}");
    assert!(
        json(&out)["steps"][0]["summary"]
            .as_str()
            .unwrap()
            .contains("shop/checkout")
    );

    let out = lab.netdiag(&["status", "-o", "json"]);
    assert_eq!(out.status.code(), Some(0), "{}", show(&out));
    let rows = json(&out);
    let rows = rows.as_array().unwrap();
    assert!(rows.len() >= 2, "{rows:?}");
    for row in rows {
        assert_eq!(row["ready"], true, "{row}");
        assert_eq!(row["version"], env!("CARGO_PKG_VERSION"), "{row}");
        assert!(
            row["canProbe"]
                .as_array()
                .unwrap()
                .iter()
                .any(|c| c.as_str().unwrap().starts_with("pods")),
            "{row}"
        );
    }
    let out = lab.netdiag(&["version"]);
    assert_eq!(out.status.code(), Some(0), "{}", show(&out));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.starts_with(&format!("Client Version: v{}", env!("CARGO_PKG_VERSION"))),
        "{text}"
    );
    assert!(text.contains("node-a: v"), "{text}");
}
