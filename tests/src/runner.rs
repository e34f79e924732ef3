//! `run` and `demo`: bring a scenario up, run its check with `kubectl-netdiag`, compare the verdict
//! with the scenario's expectation, and tear the lab down.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::{Context, Result, bail};

use crate::lab::{UpOptions, down, find_sibling, up};
use crate::scenario::{Check, Expect, Scenario};

/// The demo scenario, shipped inside the binary.
pub const DEMO_SCENARIO: &str = include_str!("../scenarios/lab/demo.yaml");

pub struct RunOptions {
    pub scenario: PathBuf,
    pub netdiag_bin: Option<PathBuf>,
    pub agent_bin: Option<PathBuf>,
    pub state: Option<PathBuf>,
    pub keep: bool,
    pub control_plane: crate::lab::ControlPlane,
}

/// Calls `down` when dropped unless kept, so a failed check still cleans up.
struct DownGuard {
    state: PathBuf,
    keep: bool,
    /// The directory was made for this run, so it is removed after `down`.
    owned: bool,
}

impl Drop for DownGuard {
    fn drop(&mut self) {
        if self.keep {
            eprintln!(
                "netdiag-lab: lab kept; use it with --kubeconfig {}, remove it with `netdiag-lab down --state {}`",
                self.state.join("kubeconfig").display(),
                self.state.display()
            );
        } else if let Err(e) = down(&self.state) {
            eprintln!("netdiag-lab: down failed: {e:#}");
        } else if self.owned {
            let _ = std::fs::remove_dir_all(&self.state);
        }
    }
}

fn fresh_state_dir() -> Result<PathBuf> {
    let dir = std::env::temp_dir().join(format!("netdiag-lab-{}", crate::plan::random_prefix()?));
    std::fs::create_dir_all(&dir).with_context(|| format!("failed to create {}", dir.display()))?;
    Ok(dir)
}

/// What `kubectl-netdiag check -o json` concluded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    pub verdict: String,
    pub failing_layer: Option<String>,
    /// The whole JSON report, where the expected evidence words are looked for.
    pub text: String,
}

/// Reads `verdict` and `failingLayer` from the check's JSON output.
pub fn parse_outcome(json: &[u8]) -> Result<Outcome> {
    let v: serde_json::Value =
        serde_json::from_slice(json).context("kubectl-netdiag check -o json printed no valid json")?;
    let verdict = v
        .get("verdict")
        .and_then(|x| x.as_str())
        .context("kubectl-netdiag check -o json has no string field verdict")?
        .to_ascii_lowercase();
    let failing_layer = v.get("failingLayer").and_then(|x| x.as_str()).map(str::to_string);
    Ok(Outcome {
        verdict,
        failing_layer,
        text: String::from_utf8_lossy(json).into_owned(),
    })
}

/// Whether `got` is what `expect` asks for (the failing layer only when the expectation names one;
/// every expected evidence word present, every absent one missing).
pub fn matches(expect: &Expect, got: &Outcome) -> bool {
    got.verdict == expect.verdict.as_str()
        && expect
            .failing_layer
            .as_ref()
            .is_none_or(|layer| got.failing_layer.as_ref() == Some(layer))
        && expect.evidence.iter().all(|w| got.text.contains(w.as_str()))
        && !expect.absent.iter().any(|w| got.text.contains(w.as_str()))
}

/// The expected evidence words missing from `got`, and the absent ones present, for the message.
fn evidence_mismatch(expect: &Expect, got: &Outcome) -> String {
    let missing: Vec<&str> = expect
        .evidence
        .iter()
        .filter(|w| !got.text.contains(w.as_str()))
        .map(String::as_str)
        .collect();
    let present: Vec<&str> = expect
        .absent
        .iter()
        .filter(|w| got.text.contains(w.as_str()))
        .map(String::as_str)
        .collect();
    match (missing.is_empty(), present.is_empty()) {
        (true, true) => String::new(),
        _ => format!("evidence missing: {missing:?}; present but should not be: {present:?}\n"),
    }
}

fn check_command(netdiag: &Path, kubeconfig: &Path, check: &Check) -> Command {
    let mut cmd = Command::new(netdiag);
    cmd.args(["check", "--kubeconfig"])
        .arg(kubeconfig)
        .args(["--from", &check.from, "--to", &check.to]);
    if let Some(rounds) = check.repeat {
        cmd.args(["--repeat", &rounds.to_string()]);
    }
    cmd
}

/// Runs the scenario end to end; `Ok(true)` when the verdict matched the expectation. A state dir
/// the caller named is kept (only the lab in it is removed); a fresh one is removed afterwards.
pub fn run(opts: &RunOptions) -> Result<bool> {
    run_owned(opts, false)
}

fn run_owned(opts: &RunOptions, owned_state: bool) -> Result<bool> {
    let scenario = Scenario::load(&opts.scenario)?;
    let (Some(check), Some(expect)) = (&scenario.check, &scenario.expect) else {
        bail!(
            "scenario {} has no check and expect to run",
            opts.scenario.display()
        );
    };
    let netdiag = find_sibling(
        opts.netdiag_bin.as_deref(),
        "kubectl-netdiag",
        "build it with `cargo build -p kubectl-netdiag` or pass --netdiag-bin PATH",
    )?;
    crate::signals::defer_stop_signals()?;
    let state = match &opts.state {
        Some(s) => s.clone(),
        None => fresh_state_dir()?,
    };
    let _guard = DownGuard {
        state: state.clone(),
        keep: opts.keep,
        owned: owned_state || opts.state.is_none(),
    };
    let info = up(&UpOptions {
        scenario: opts.scenario.clone(),
        state: state.clone(),
        agent_bin: opts.agent_bin.clone(),
        no_agents: false,
        control_plane: opts.control_plane,
    })?;
    println!(
        "lab {} is up: {} nodes, {} pods, {} services (state {})",
        info.scenario,
        info.nodes.len(),
        info.pods.len(),
        info.services.len(),
        state.display()
    );
    let kubeconfig = state.join("kubeconfig");
    let human = check_command(&netdiag, &kubeconfig, check)
        .stdin(Stdio::null())
        .status()
        .with_context(|| format!("failed to run {}", netdiag.display()))?;
    crate::signals::check()?;
    let out = check_command(&netdiag, &kubeconfig, check)
        .args(["-o", "json"])
        .stdin(Stdio::null())
        .stderr(Stdio::inherit())
        .output()
        .with_context(|| format!("failed to run {}", netdiag.display()))?;
    crate::signals::check()?;
    let got = parse_outcome(&out.stdout).with_context(|| {
        format!(
            "check exited {} (human output exited {human}); stdout was {:?}",
            out.status,
            String::from_utf8_lossy(&out.stdout)
        )
    })?;
    let want = format!(
        "{}{}",
        expect.verdict.as_str(),
        expect
            .failing_layer
            .as_ref()
            .map(|l| format!(" — {l}"))
            .unwrap_or_default()
    );
    let have = format!(
        "{}{}",
        got.verdict,
        got.failing_layer
            .as_ref()
            .map(|l| format!(" — {l}"))
            .unwrap_or_default()
    );
    let ok = matches(expect, &got);
    println!(
        "expected: {want}\ngot:      {have}\n{}{}",
        evidence_mismatch(expect, &got),
        if ok { "MATCH" } else { "MISMATCH" }
    );
    Ok(ok)
}

/// The quick start: writes the demo scenario to a fresh state dir and runs it.
pub fn demo(netdiag_bin: Option<PathBuf>, agent_bin: Option<PathBuf>, keep: bool) -> Result<bool> {
    let state = fresh_state_dir()?;
    let scenario = state.join("demo.yaml");
    std::fs::write(&scenario, DEMO_SCENARIO)?;
    let parsed = Scenario::parse(DEMO_SCENARIO)?;
    println!("demo scenario {}: {}", parsed.name, parsed.description);
    // The real components take minutes to build the first time: until they are, the demo runs on
    // the stand-in at once and says so.
    let control_plane = if crate::cluster::bins::cached() {
        println!(
            "control plane: kube-apiserver, etcd, kube-controller-manager, kube-proxy and CoreDNS (real)"
        );
        crate::lab::ControlPlane::Real
    } else {
        println!(
            "control plane: the lab's API stand-in, because the real components are not built yet \
             (tests/scripts/build-cluster builds them once; tests/scripts/test does too)"
        );
        crate::lab::ControlPlane::StandIn
    };
    run_owned(
        &RunOptions {
            scenario,
            netdiag_bin,
            agent_bin,
            state: Some(state),
            keep,
            control_plane,
        },
        true,
    )
}

/// Real kubectl: `$NETDIAG_KUBECTL`, else where `tests/scripts/install-deps` puts it.
pub fn kubectl_path() -> PathBuf {
    std::env::var_os("NETDIAG_KUBECTL")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/opt/netdiag-tools/bin/kubectl"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scenario::Verdict;

    #[test]
    fn outcome_reads_verdict_and_failing_layer() {
        let json = r#"{"verdict":"UNREACHABLE","failingLayer":"network-policy","layers":[]}"#;
        let got = parse_outcome(json.as_bytes()).unwrap();
        assert_eq!(
            got,
            Outcome {
                verdict: "unreachable".into(),
                failing_layer: Some("network-policy".into()),
                text: json.into(),
            }
        );
        assert!(
            parse_outcome(b"{}")
                .unwrap_err()
                .to_string()
                .contains("no string field verdict")
        );
    }

    #[test]
    fn expectation_without_layer_matches_any_layer_of_the_same_verdict() {
        let got = Outcome {
            verdict: "unreachable".into(),
            failing_layer: Some("dns".into()),
            text: String::new(),
        };
        let any = Expect {
            verdict: Verdict::Unreachable,
            failing_layer: None,
            evidence: vec![],
            absent: vec![],
        };
        let dns = Expect {
            verdict: Verdict::Unreachable,
            failing_layer: Some("dns".into()),
            evidence: vec![],
            absent: vec![],
        };
        let policy = Expect {
            verdict: Verdict::Unreachable,
            failing_layer: Some("network-policy".into()),
            evidence: vec![],
            absent: vec![],
        };
        let reachable = Expect {
            verdict: Verdict::Reachable,
            failing_layer: None,
            evidence: vec![],
            absent: vec![],
        };
        assert!(matches(&any, &got));
        assert!(matches(&dns, &got));
        assert!(!matches(&policy, &got));
        assert!(!matches(&reachable, &got));
    }

    #[test]
    fn expected_evidence_words_must_be_present_and_absent_ones_missing() {
        let got = Outcome {
            verdict: "unreachable".into(),
            failing_layer: Some("pod-network".into()),
            text: "packets > 1200 bytes: an MTU black hole".into(),
        };
        let expect = |evidence: &[&str], absent: &[&str]| Expect {
            verdict: Verdict::Unreachable,
            failing_layer: Some("pod-network".into()),
            evidence: evidence.iter().map(|s| s.to_string()).collect(),
            absent: absent.iter().map(|s| s.to_string()).collect(),
        };
        assert!(matches(&expect(&["MTU black hole"], &[]), &got));
        assert!(!matches(&expect(&["SYN never reached"], &[]), &got));
        assert!(!matches(&expect(&[], &["MTU black hole"]), &got));
        assert!(evidence_mismatch(&expect(&["x"], &[]), &got).contains("\"x\""));
    }

    #[test]
    fn demo_scenario_is_valid_and_broken_by_policy() {
        let s = Scenario::parse(DEMO_SCENARIO).unwrap();
        assert_eq!(s.expect.unwrap().verdict, Verdict::Unreachable);
        assert!(s.objects.iter().any(|o| o["kind"] == "NetworkPolicy"));
        assert!(
            s.faults
                .iter()
                .any(|f| matches!(f, crate::scenario::Fault::Deny { .. }))
        );
    }
}
