//! The real components' binaries: built from their Go modules by `tests/scripts/build-cluster`
//! once and cached; this finds them, building them first when the cache has none.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::{Context, Result, bail};

pub struct Binaries {
    /// The multicall binary: `kube etcd|kube-apiserver|kube-controller-manager|kube-scheduler|
    /// kube-proxy|lab-kubelet ARGS`.
    pub kube: PathBuf,
    pub coredns: PathBuf,
    /// CRDs the lab's cluster installs (ClusterNetworkPolicy).
    pub crds: PathBuf,
}

/// The build script, in this crate's source tree.
fn build_script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/build-cluster")
}

/// Whether the binaries of these sources are already built (nothing is built to find out).
pub fn cached() -> bool {
    Command::new(build_script())
        .arg("--check")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// The cached binaries, built now if missing (the build's progress and errors go to stderr).
pub fn binaries() -> Result<Binaries> {
    let script = build_script();
    let out = Command::new(&script)
        .stdin(Stdio::null())
        .stderr(Stdio::inherit())
        .output()
        .with_context(|| format!("failed to run {}", script.display()))?;
    if !out.status.success() {
        bail!(
            "the lab's real control plane could not be built ({} failed, see above)",
            script.display()
        );
    }
    let dir = String::from_utf8_lossy(&out.stdout);
    let dir = PathBuf::from(dir.lines().last().unwrap_or_default().trim());
    let bins = Binaries {
        kube: dir.join("kube"),
        coredns: dir.join("coredns"),
        crds: dir.join("crds"),
    };
    if !bins.kube.is_file() || !bins.coredns.is_file() {
        bail!(
            "{} printed {}, which holds no kube and coredns binaries",
            script.display(),
            dir.display()
        );
    }
    Ok(bins)
}
