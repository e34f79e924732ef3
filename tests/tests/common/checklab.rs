//! Helpers for the end-to-end check tests (`check_scenarios.rs`, `kubectl_ux.rs`): a scenario of
//! `scenarios/check/` brought up with its agents, and taken down when dropped (also on panic);
//! the lock that lets one such lab be up at a time; the built binaries.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use nix::fcntl::{Flock, FlockArg};

use super::BIN;

/// A scenario file of `scenarios/check/`.
pub fn scenario(file: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("scenarios/check")
        .join(file)
}

/// The arguments of `kubectl-netdiag check --from FROM --to TO -o json`.
pub fn check_json<'a>(from: &'a str, to: &'a str) -> [&'a str; 7] {
    ["check", "--from", from, "--to", to, "-o", "json"]
}

/// A binary built beside the lab's (`cargo build --workspace --bins`).
pub fn bin(name: &str) -> PathBuf {
    let bin = Path::new(BIN).with_file_name(name);
    assert!(
        bin.exists(),
        "{} is missing: run `cargo build --workspace --bins` first",
        bin.display()
    );
    bin
}

/// `kubectl-netdiag`, built beside the lab binary.
pub fn netdiag_bin() -> PathBuf {
    bin("kubectl-netdiag")
}

/// Holds the lock that makes the labs with agents run one at a time: every lab uses the same pod
/// addresses, and an agent finds a pod's namespace by IP across the whole machine.
pub fn one_lab_at_a_time() -> Flock<File> {
    let path = std::env::temp_dir().join("netdiag-check-scenarios.lock");
    let file = File::options()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .expect("open lock file");
    Flock::lock(file, FlockArg::LockExclusive)
        .map_err(|(_, e)| e)
        .expect("lock")
}

/// A process's exit code and output, for assertion messages.
pub fn show(out: &Output) -> String {
    format!(
        "exit {:?}\n--- stdout\n{}\n--- stderr\n{}",
        out.status.code(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// A process's stdout as JSON.
pub fn json(out: &Output) -> serde_json::Value {
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("stdout is not json ({e})\n{}", show(out)))
}

/// A lab with its agents, brought down when dropped (also on panic).
pub struct CheckLab {
    state: PathBuf,
}

impl CheckLab {
    pub fn up(scenario_file: &Path) -> CheckLab {
        Self::up_with(scenario_file, &[])
    }

    /// `up` with more `netdiag-lab up` arguments (e.g. `--control-plane real`).
    pub fn up_with(scenario_file: &Path, args: &[&str]) -> CheckLab {
        let state = std::env::temp_dir().join(format!(
            "netdiag-check-e2e-{}-{}",
            std::process::id(),
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos()
        ));
        let out = Command::new(BIN)
            .arg("up")
            .arg(scenario_file)
            .arg("--state")
            .arg(&state)
            .args(args)
            .output()
            .unwrap();
        let lab = CheckLab { state };
        assert!(
            out.status.success(),
            "netdiag-lab up {} failed\n{}",
            scenario_file.display(),
            show(&out)
        );
        lab
    }

    pub fn kubeconfig(&self) -> PathBuf {
        self.state.join("kubeconfig")
    }

    /// A cluster administrator's kubeconfig: the real control plane's `admin.kubeconfig`; on the
    /// stand-in its one kubeconfig, which carries no token (the stand-in's administrator).
    pub fn admin_kubeconfig(&self) -> PathBuf {
        let admin = self.state.join("admin.kubeconfig");
        if admin.exists() { admin } else { self.kubeconfig() }
    }

    /// The lab's state directory (`lab.json`, `admin.kubeconfig` on the real control plane).
    pub fn state(&self) -> &Path {
        &self.state
    }

    /// `kubectl-netdiag ARGS --kubeconfig LAB`.
    pub fn netdiag(&self, args: &[&str]) -> Output {
        Command::new(netdiag_bin())
            .args(args)
            .arg("--kubeconfig")
            .arg(self.kubeconfig())
            .env("NO_COLOR", "1")
            .output()
            .unwrap()
    }
}

impl Drop for CheckLab {
    fn drop(&mut self) {
        let _ = Command::new(BIN)
            .arg("down")
            .arg("--state")
            .arg(&self.state)
            .output();
        let _ = std::fs::remove_dir_all(&self.state);
    }
}
