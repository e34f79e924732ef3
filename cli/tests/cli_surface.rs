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
    for (shell, marker, from_flag) in [
        ("bash", "complete -F", "--from"),
        ("zsh", "#compdef kubectl-netdiag", "--from="),
        ("fish", "complete -c kubectl-netdiag", "-l from"),
    ] {
        let out = netdiag(&["completion", shell]);
        assert!(
            out.status.success(),
            "{shell}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let script = stdout(&out);
        assert!(script.contains(marker), "{shell} script lacks {marker:?}");
        assert!(script.contains("check") && script.contains(from_flag), "{shell}");
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

/// The bash script, sourced in bash, completes every level: subcommands, a subcommand's flags,
/// a nested subcommand's flags and enumerated values.
#[test]
fn the_bash_script_completes_every_level_in_bash() {
    let Ok(bash) = which_bash() else {
        eprintln!("bash is not installed; skipped");
        return;
    };
    let script = stdout(&netdiag(&["completion", "bash"]));
    let dir = std::env::temp_dir().join(format!("netdiag-bash-completion-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("kubectl-netdiag.bash");
    std::fs::write(&path, script).unwrap();
    let complete = |words: &str| {
        let driver = format!(
            r#"source {path}
spec=$(complete -p kubectl-netdiag)
fn=$(sed -E 's/.*-F ([^ ]+).*/\1/' <<<"$spec")
COMP_WORDS=({words})
[[ "{words}" == *" " ]] && COMP_WORDS+=("")
COMP_CWORD=$((${{#COMP_WORDS[@]}}-1))
"$fn" kubectl-netdiag "${{COMP_WORDS[COMP_CWORD]}}" "${{COMP_WORDS[COMP_CWORD-1]}}"
printf '%s\n' "${{COMPREPLY[@]}}""#,
            path = path.display()
        );
        let out = Command::new(&bash).arg("-c").arg(driver).output().unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        stdout(&out).lines().map(String::from).collect::<Vec<_>>()
    };
    assert!(complete("kubectl-netdiag st").contains(&"status".to_string()));
    assert_eq!(complete("kubectl-netdiag check --fr"), ["--from"]);
    assert_eq!(
        complete("kubectl-netdiag check -o "),
        ["table", "wide", "json", "yaml"]
    );
    assert!(complete("kubectl-netdiag policy ").contains(&"explain".to_string()));
    assert_eq!(complete("kubectl-netdiag policy explain --po"), ["--port"]);
    assert_eq!(
        complete("kubectl-netdiag --context lab check --t"),
        ["--to", "--timeout"]
    );
    std::fs::remove_dir_all(dir).unwrap();
}

fn which_bash() -> Result<std::path::PathBuf, ()> {
    ["/bin/bash", "/usr/bin/bash"]
        .into_iter()
        .map(std::path::PathBuf::from)
        .find(|p| p.exists())
        .ok_or(())
}
