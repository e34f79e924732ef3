//! The plugin's surface without a cluster: completion scripts, the kubectl completion helper,
//! `version --client`, kubectl's `-v=N` form, help with examples.

use std::process::{Command, Output};

fn netdiag(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_kubectl-netdiag"))
        .args(args)
        .env("KUBECONFIG", "/nonexistent/kubeconfig")
        .output()
        .unwrap()
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn completion_prints_a_script_for_each_shell() {
    for (shell, marker) in [
        ("bash", "complete -F"),
        ("zsh", "#compdef kubectl-netdiag"),
        ("fish", "complete -c kubectl-netdiag"),
    ] {
        let out = netdiag(&["completion", shell]);
        assert!(
            out.status.success(),
            "{shell}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let script = stdout(&out);
        assert!(script.contains(marker), "{shell} script lacks {marker:?}");
        assert!(script.contains("check") && script.contains("--from"), "{shell}");
    }
    assert_eq!(netdiag(&["completion", "tcsh"]).status.code(), Some(2));
}

#[test]
fn the_kubectl_completion_helper_answers_in_cobras_format_without_a_cluster() {
    let helper = env!("CARGO_BIN_EXE_kubectl_complete-netdiag");
    let run = |words: &[&str]| {
        let out = Command::new(helper)
            .args(words)
            .env("KUBECONFIG", "/nonexistent/kubeconfig")
            .output()
            .unwrap();
        assert!(out.status.success());
        stdout(&out).lines().map(String::from).collect::<Vec<_>>()
    };
    let first = run(&[""]);
    assert_eq!(first.last().map(String::as_str), Some(":4"));
    assert!(
        first.contains(&"check".to_string()) && first.contains(&"status".to_string()),
        "{first:?}"
    );
    assert_eq!(run(&["check", "-o", "w"]), ["wide", ":4"]);
    // No cluster: no names, but still a well-formed answer that disables file completion.
    assert_eq!(run(&["check", "-n", ""]), [":4"]);
    assert_eq!(run(&["check", "--kubeconfig", ""]), [":0"]);
}

#[test]
fn version_client_needs_no_cluster_and_v_takes_kubectl_levels() {
    let out = netdiag(&["version", "--client", "-v=6"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(
        stdout(&out).trim_end(),
        format!("Client Version: v{}", env!("CARGO_PKG_VERSION"))
    );
    let out = netdiag(&["version", "--client", "-o", "json"]);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["clientVersion"], env!("CARGO_PKG_VERSION"));
}

#[test]
fn help_shows_examples() {
    let out = netdiag(&["check", "--help"]);
    let help = stdout(&out);
    assert!(
        help.contains("Examples:") && help.contains("--from deploy/checkout"),
        "{help}"
    );
    let out = netdiag(&["--help"]);
    assert!(
        stdout(&out).contains("kubectl netdiag status"),
        "{}",
        stdout(&out)
    );
}
