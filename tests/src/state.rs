//! The state directory of a lab: what `up` made (written before it is made, so `down` can undo a
//! partial or crashed `up`), `lab.json` describing the running lab, and the kubeconfig.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};

/// Written first by `up`: everything `down` must remove.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Journal {
    pub prefix: String,
    pub netns: Vec<String>,
}

/// `lab.json`: the running lab, for tests and tools.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LabInfo {
    pub scenario: String,
    pub prefix: String,
    pub underlay_netns: String,
    pub nodes: Vec<NodeInfo>,
    pub pods: Vec<PodInfo>,
    pub services: Vec<ServiceInfo>,
    pub dns: DnsInfo,
    pub agents: Vec<AgentInfo>,
    pub api: ApiInfo,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct NodeInfo {
    pub name: String,
    pub netns: String,
    pub ip: String,
    pub pod_cidr: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PodInfo {
    pub namespace: String,
    pub name: String,
    pub node: String,
    pub netns: String,
    pub ip: String,
    pub ready: bool,
    /// `app`, `dns` or `agent`.
    pub role: String,
    pub pid: u32,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ServiceInfo {
    pub namespace: String,
    pub name: String,
    /// `None` for a headless Service.
    #[serde(rename = "clusterIP")]
    pub cluster_ip: Option<String>,
    pub ports: Vec<ServicePortInfo>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ServicePortInfo {
    pub name: Option<String>,
    pub port: u16,
    pub protocol: String,
    /// A number or a container port name.
    pub target_port: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DnsInfo {
    #[serde(rename = "clusterIP")]
    pub cluster_ip: String,
    /// `kube-system/coredns-0`.
    pub pod: String,
    pub pod_ip: String,
    pub netns: String,
    /// Whether the DNS server runs (false under the `dns-down` fault).
    pub running: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AgentInfo {
    pub node: String,
    /// `netdiag/netdiag-agent-<node>`.
    pub pod: String,
    pub netns: String,
    pub pid: u32,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ApiInfo {
    pub url: String,
    pub pid: u32,
}

pub struct StateDir {
    pub dir: PathBuf,
}

impl StateDir {
    /// Creates (if needed) and canonicalizes the state directory.
    pub fn create(dir: &Path) -> Result<Self> {
        std::fs::create_dir_all(dir)
            .with_context(|| format!("failed to create state dir {}", dir.display()))?;
        Self::open(dir)
    }

    pub fn open(dir: &Path) -> Result<Self> {
        let dir = dir
            .canonicalize()
            .with_context(|| format!("state dir {} does not exist", dir.display()))?;
        Ok(StateDir { dir })
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    pub fn journal_path(&self) -> PathBuf {
        self.path("journal.json")
    }

    pub fn read_journal(&self) -> Result<Option<Journal>> {
        let path = self.journal_path();
        match std::fs::read(&path) {
            Ok(bytes) => {
                Ok(Some(serde_json::from_slice(&bytes).with_context(|| {
                    format!("journal {} is corrupt", path.display())
                })?))
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e).with_context(|| format!("failed to read journal {}", path.display())),
        }
    }

    pub fn write_json<T: Serialize>(&self, name: &str, value: &T) -> Result<()> {
        let path = self.path(name);
        let tmp = self.path(&format!(".{name}.tmp"));
        std::fs::write(&tmp, serde_json::to_vec_pretty(value)?)
            .with_context(|| format!("failed to write {}", tmp.display()))?;
        std::fs::rename(&tmp, &path).with_context(|| format!("failed to write {}", path.display()))
    }

    pub fn write_kubeconfig(&self, url: &str) -> Result<PathBuf> {
        let path = self.path("kubeconfig");
        let text = format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: netdiag-lab\n  cluster:\n    server: {url}\n\
             users:\n- name: netdiag-lab\n  user: {{}}\ncontexts:\n- name: netdiag-lab\n  context:\n    \
             cluster: netdiag-lab\n    user: netdiag-lab\n    namespace: default\n\
             current-context: netdiag-lab\npreferences: {{}}\n"
        );
        std::fs::write(&path, text).with_context(|| format!("failed to write {}", path.display()))?;
        Ok(path)
    }
}

/// Processes whose network namespace is one of `netns` (by inode), found by walking `/proc`.
pub fn pids_in_netns(netns: &[String]) -> Vec<u32> {
    use std::os::unix::fs::MetadataExt;
    let inodes: std::collections::BTreeSet<(u64, u64)> = netns
        .iter()
        .filter_map(|n| std::fs::metadata(crate::netns::named(n)).ok())
        .map(|m| (m.dev(), m.ino()))
        .collect();
    if inodes.is_empty() {
        return Vec::new();
    }
    proc_pids()
        .filter(|pid| {
            std::fs::metadata(format!("/proc/{pid}/ns/net"))
                .map(|m| inodes.contains(&(m.dev(), m.ino())))
                .unwrap_or(false)
        })
        .collect()
}

/// Processes run by one of `programs` (matched on argv\[0\]'s file name) with a command-line
/// argument containing `needle` (such as the state dir path). Leaves out this process and its
/// ancestors (a shell or `time` that ran `down` with the same path).
pub fn pids_mentioning(needle: &str, programs: &[&str]) -> Vec<u32> {
    let ancestors = ancestors();
    proc_pids()
        .filter(|pid| !ancestors.contains(pid))
        .filter(|pid| {
            let Ok(raw) = std::fs::read(format!("/proc/{pid}/cmdline")) else {
                return false;
            };
            let mut args = raw.split(|b| *b == 0);
            let program = args.next().unwrap_or_default();
            let program = program.rsplit(|b| *b == b'/').next().unwrap_or_default();
            programs.iter().any(|p| p.as_bytes() == program)
                && args.any(|arg| arg.windows(needle.len()).any(|w| w == needle.as_bytes()))
        })
        .collect()
}

/// This process and its parents up to init.
fn ancestors() -> Vec<u32> {
    let mut out = vec![std::process::id()];
    while let Some(&pid) = out.last() {
        let ppid = std::fs::read_to_string(format!("/proc/{pid}/status"))
            .ok()
            .and_then(|s| {
                s.lines()
                    .find_map(|l| l.strip_prefix("PPid:").and_then(|v| v.trim().parse::<u32>().ok()))
            });
        match ppid {
            Some(p) if p > 1 && !out.contains(&p) => out.push(p),
            _ => break,
        }
    }
    out
}

fn proc_pids() -> impl Iterator<Item = u32> {
    std::fs::read_dir("/proc")
        .into_iter()
        .flatten()
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
}
