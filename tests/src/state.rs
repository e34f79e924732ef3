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
    /// The pod's IPv6 address, when the cluster has IPv6.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ip6: Option<String>,
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
    /// `spec.clusterIPs`: one per family of the Service, primary first.
    #[serde(default, rename = "clusterIPs")]
    pub cluster_ips: Vec<String>,
    pub ports: Vec<ServicePortInfo>,
    /// `NodePort` or `LoadBalancer`; absent for a ClusterIP Service.
    #[serde(default, rename = "type", skip_serializing_if = "Option::is_none")]
    pub service_type: Option<String>,
    /// A LoadBalancer Service's address.
    #[serde(default, rename = "loadBalancerIP", skip_serializing_if = "Option::is_none")]
    pub load_balancer_ip: Option<String>,
    /// A LoadBalancer Service's `spec.loadBalancerSourceRanges`; absent when it has none.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub load_balancer_source_ranges: Vec<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ServicePortInfo {
    pub name: Option<String>,
    pub port: u16,
    pub protocol: String,
    /// A number or a container port name.
    pub target_port: String,
    /// The port on every node, for a NodePort or LoadBalancer Service.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node_port: Option<u16>,
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
/// argument that is the directory `dir` or a path inside it (so `/tmp/lab` does not match another
/// lab's `/tmp/lab2`). Leaves out this process and its ancestors (a shell or `time` that ran `down`
/// with the same path).
pub fn pids_mentioning(dir: &str, programs: &[&str]) -> Vec<u32> {
    let dir = dir.trim_end_matches('/').as_bytes();
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
                && args.any(|arg| {
                    arg.strip_prefix(dir)
                        .is_some_and(|rest| rest.is_empty() || rest[0] == b'/')
                })
        })
        .collect()
}

/// `ip netns exec NAME ...` processes for one of the namespaces `netns`: started by `up` but maybe
/// not inside the namespace yet, so [`pids_in_netns`] cannot see them.
pub fn pids_entering(netns: &[String]) -> Vec<u32> {
    proc_pids()
        .filter(|pid| {
            let Ok(raw) = std::fs::read(format!("/proc/{pid}/cmdline")) else {
                return false;
            };
            let args: Vec<&[u8]> = raw.split(|b| *b == 0).collect();
            matches!(args.as_slice(), [ip, b"netns", b"exec", name, ..]
                if ip.rsplit(|b| *b == b'/').next() == Some(b"ip")
                    && netns.iter().any(|n| n.as_bytes() == *name))
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_processes_of_the_named_programs_that_name_the_dir_or_a_path_inside_it() {
        let needle = format!("/netdiag-lab-state-test-{}", std::process::id());
        // `read` is a shell builtin, so sh itself waits and no grandchild outlives the test.
        let mut child = std::process::Command::new("sh")
            .args(["-c", "read line", "sh", &format!("{needle}/setup/x.batch")])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("spawn sh");
        // Wait for the exec: until then the child still carries this test's command line.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        let mut found = pids_mentioning(&needle, &["sh"]);
        while found.is_empty() && std::time::Instant::now() < deadline {
            std::thread::sleep(std::time::Duration::from_millis(5));
            found = pids_mentioning(&needle, &["sh"]);
        }
        let other_program = pids_mentioning(&needle, &["dnsmasq"]);
        let longer_dir = pids_mentioning(&needle[..needle.len() - 1], &["sh"]);
        child.kill().unwrap();
        child.wait().unwrap();
        assert_eq!(found, [child.id()]);
        assert!(other_program.is_empty());
        assert!(
            longer_dir.is_empty(),
            "a dir is not a prefix of another dir's name"
        );
        assert!(
            pids_mentioning(&needle, &["sh"]).is_empty(),
            "a reaped process is gone"
        );
    }

    #[test]
    fn never_matches_this_process_or_its_ancestors() {
        let me = std::fs::read(format!("/proc/{}/cmdline", std::process::id())).unwrap();
        let argv0 = String::from_utf8_lossy(me.split(|b| *b == 0).next().unwrap()).to_string();
        let program = argv0.rsplit('/').next().unwrap().to_string();
        assert!(
            pids_mentioning(&argv0, &[program.as_str()])
                .iter()
                .all(|p| !ancestors().contains(p))
        );
        assert_eq!(ancestors()[0], std::process::id());
    }

    #[test]
    fn journal_round_trips_through_the_state_dir() {
        let dir = std::env::temp_dir().join(format!("netdiag-lab-state-unit-{}", std::process::id()));
        let state = StateDir::create(&dir).unwrap();
        assert!(state.read_journal().unwrap().is_none());
        let journal = Journal {
            prefix: "nl000001".into(),
            netns: vec!["nl000001-u".into()],
        };
        state.write_json("journal.json", &journal).unwrap();
        let back = state.read_journal().unwrap().unwrap();
        std::fs::remove_dir_all(&dir).unwrap();
        assert_eq!((back.prefix, back.netns), (journal.prefix, journal.netns));
    }
}
