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
    let bash = shell("bash");
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

/// A shell the completion tests run their scripts in. A test that could not run must not pass,
/// so a missing shell fails it, saying how to install it.
fn shell(name: &str) -> std::path::PathBuf {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .map(|dir| dir.join(name))
        .find(|p| p.is_file())
        .unwrap_or_else(|| {
            panic!(
                "{name} is not installed: this test completes in {name} itself; install it with \
                 tests/scripts/install-deps (or apt-get install {name})"
            )
        })
}

/// A fresh directory for one test's scripts.
fn scratch(name: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("netdiag-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// The lines completing each command line must offer, the same in zsh and fish (sorted).
const COMPLETIONS: [(&str, &[&str]); 6] = [
    ("kubectl-netdiag st", &["status"]),
    ("kubectl-netdiag check --fr", &["--from"]),
    ("kubectl-netdiag check -o ", &["json", "table", "wide", "yaml"]),
    (
        "kubectl-netdiag policy ",
        &["explain", "help", "matrix", "verify"],
    ),
    ("kubectl-netdiag policy explain --po", &["--port"]),
    ("kubectl-netdiag --context lab check --t", &["--timeout", "--to"]),
];

/// Drives an interactive zsh in a pseudo-terminal (zsh/zpty): types the words and a TAB bound
/// to `complete-word`, with `compadd` wrapped to write each match it adds to `out`, and a
/// `comppostfuncs` hook that writes `done` once completion ended.
const ZSH_DRIVER: &str = r#"fpath_dir=$1 out=$2 done=$3 words=$4
zmodload zsh/zpty || exit 3
zpty z zsh -f -i
zpty -w z "PROMPT=''; fpath=($fpath_dir \$fpath); autoload -U compinit; compinit -u -D"
zpty -w z "compadd() { local -a m; builtin compadd -O m \"\$@\"; (( \$#m )) && print -rl -- \$m >> $out; builtin compadd \"\$@\" }"
zpty -w z "finished() { : >> $out; print > $done }; comppostfuncs=(finished)"
zpty -w z "bindkey '^I' complete-word"
zpty -w -n z "$words"$'\t'
for i in {1..300}; do [[ -e $done ]] && break; sleep 0.1; done
zpty -d z
[[ -e $done ]] || { print -u2 "zsh did not finish completing $words"; exit 4 }
"#;

/// The zsh script, installed in `fpath` and loaded by compinit, completes every level in zsh.
#[test]
fn the_zsh_script_completes_every_level_in_zsh() {
    let zsh = shell("zsh");
    let dir = scratch("zsh-completion");
    std::fs::write(
        dir.join("_kubectl-netdiag"),
        stdout(&netdiag(&["completion", "zsh"])),
    )
    .unwrap();
    std::fs::write(dir.join("driver.zsh"), ZSH_DRIVER).unwrap();
    for (i, (words, expected)) in COMPLETIONS.into_iter().enumerate() {
        let (out, done) = (dir.join(format!("out{i}")), dir.join(format!("done{i}")));
        let run = Command::new(&zsh)
            .arg("-f")
            .arg(dir.join("driver.zsh"))
            .args([&dir, &out, &done])
            .arg(words)
            .output()
            .unwrap();
        assert!(
            run.status.success(),
            "{words}: {}",
            String::from_utf8_lossy(&run.stderr)
        );
        let mut got: Vec<String> = std::fs::read_to_string(&out)
            .unwrap()
            .lines()
            .map(String::from)
            .collect();
        got.sort();
        got.dedup();
        assert_eq!(got, expected, "zsh completing {words:?}");
    }
    std::fs::remove_dir_all(dir).unwrap();
}

/// The fish script, sourced in fish, completes every level (`complete -C` lists what a TAB would).
#[test]
fn the_fish_script_completes_every_level_in_fish() {
    let fish = shell("fish");
    let dir = scratch("fish-completion");
    let path = dir.join("kubectl-netdiag.fish");
    std::fs::write(&path, stdout(&netdiag(&["completion", "fish"]))).unwrap();
    for (words, expected) in COMPLETIONS {
        let run = Command::new(&fish)
            .arg("--no-config")
            .arg("-c")
            .arg("source $argv[1]; complete -C $argv[2]")
            .args([path.as_os_str(), words.as_ref()])
            .output()
            .unwrap();
        assert!(
            run.status.success(),
            "{words}: {}",
            String::from_utf8_lossy(&run.stderr)
        );
        // Each line is the candidate, then a tab and its description.
        let mut got: Vec<String> = stdout(&run)
            .lines()
            .map(|l| l.split('\t').next().unwrap_or_default().to_string())
            .collect();
        got.sort();
        got.dedup();
        assert_eq!(got, expected, "fish completing {words:?}");
    }
    std::fs::remove_dir_all(dir).unwrap();
}
