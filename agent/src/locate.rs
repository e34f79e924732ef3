//! Finds the network namespace a [`ProbeSource`] names, and a process living in it.
//!
//! Namespaces are found by walking `/proc/*/ns/net` and the named namespaces in `/run/netns`. A pod IP
//! is matched by entering each distinct namespace (through [`crate::netns`]) and listing its
//! addresses; the addresses are cached by namespace inode and the cache is dropped for namespaces
//! that no longer exist.

use std::collections::{BTreeMap, HashMap};
use std::net::IpAddr;
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::sync::Mutex;

use netdiag_proto::{ProbeSource, ResolvedNetns};
use thiserror::Error;

use crate::interfaces;
use crate::netns::{self, NetnsError, NetnsFile};

/// Directory of named network namespaces (`ip netns add`).
pub const NAMED_NETNS_DIR: &str = "/run/netns";

#[derive(Debug, Error)]
pub enum LocateError {
    #[error("no network namespace on this node has {0}")]
    NoNamespaceHasIp(IpAddr),
    #[error("process {pid} does not exist on this node")]
    NoSuchProcess { pid: u32 },
    #[error(transparent)]
    Netns(#[from] NetnsError),
}

/// A located namespace: the open file to enter, and a process in it if one was found.
#[derive(Debug)]
pub struct Located {
    pub netns: NetnsFile,
    pub pid: Option<u32>,
}

impl Located {
    pub fn resolved(&self) -> ResolvedNetns {
        ResolvedNetns {
            inode: self.netns.inode(),
            path: self.netns.path().to_string(),
            pid: self.pid,
        }
    }
}

/// One distinct namespace seen on the machine.
#[derive(Debug, Clone, PartialEq, Eq)]
struct SeenNetns {
    /// A file that refers to it.
    path: String,
    /// Processes in it, ascending.
    pids: Vec<u32>,
}

pub struct Locator {
    node_netns: String,
    proc_root: String,
    /// Addresses of each namespace, by inode.
    addresses: Mutex<HashMap<u64, Vec<IpAddr>>>,
}

impl Locator {
    pub fn new(node_netns: impl Into<String>) -> Self {
        Locator {
            node_netns: node_netns.into(),
            proc_root: "/proc".into(),
            addresses: Mutex::default(),
        }
    }

    pub fn node_netns(&self) -> &str {
        &self.node_netns
    }

    pub async fn locate(&self, source: &ProbeSource) -> Result<Located, LocateError> {
        match source {
            ProbeSource::Netns { path } => self.by_path(path),
            ProbeSource::Node => self.by_path(&self.node_netns),
            ProbeSource::Pid { pid } => {
                let path = format!("{}/{pid}/ns/net", self.proc_root);
                if !Path::new(&format!("{}/{pid}", self.proc_root)).exists() {
                    return Err(LocateError::NoSuchProcess { pid: *pid });
                }
                let netns = NetnsFile::open(&path)?;
                Ok(Located {
                    netns,
                    pid: Some(*pid),
                })
            }
            ProbeSource::PodIp { ip } => self.by_ip(*ip).await,
        }
    }

    fn by_path(&self, path: &str) -> Result<Located, LocateError> {
        let netns = NetnsFile::open(path)?;
        let seen = self.scan();
        let pid = seen.get(&netns.inode()).and_then(|s| self.pick_pid(&s.pids));
        Ok(Located { netns, pid })
    }

    async fn by_ip(&self, ip: IpAddr) -> Result<Located, LocateError> {
        let seen = self.scan();
        let cached: Vec<u64> = {
            let mut cache = self.addresses.lock().expect("address cache lock");
            cache.retain(|inode, _| seen.contains_key(inode));
            cache
                .iter()
                .filter(|(_, addrs)| addrs.contains(&ip))
                .map(|(inode, _)| *inode)
                .collect()
        };
        // A cached match is confirmed before it is trusted: the pod IP may have moved to another
        // namespace, and the kernel reuses a destroyed namespace's inode number for a new one.
        for inode in cached {
            let Some(netns) = open_seen(&seen, inode) else {
                continue;
            };
            let check = open_seen(&seen, inode).into_iter().collect();
            let listed = netns::visit_each(check, |_| interfaces::addresses()).await?;
            if matches!(listed.first(), Some(Ok(Ok(addrs))) if addrs.contains(&ip)) {
                return Ok(Located {
                    netns,
                    pid: self.pick_pid(&seen[&inode].pids),
                });
            }
        }
        // A miss (or a stale hit) may be a namespace that got the address after it was cached: look
        // at all of them again.
        let fresh = self.refresh(&seen).await?;
        let found = fresh
            .iter()
            .filter(|(_, addrs)| addrs.contains(&ip))
            .find_map(|(inode, _)| open_seen(&seen, *inode).map(|netns| (netns, *inode)));
        let Some((netns, inode)) = found else {
            return Err(LocateError::NoNamespaceHasIp(ip));
        };
        Ok(Located {
            netns,
            pid: self.pick_pid(&seen[&inode].pids),
        })
    }

    /// Enters every namespace in `seen`, lists its addresses and replaces the cache.
    async fn refresh(
        &self,
        seen: &BTreeMap<u64, SeenNetns>,
    ) -> Result<HashMap<u64, Vec<IpAddr>>, LocateError> {
        let files: Vec<NetnsFile> = seen.keys().filter_map(|inode| open_seen(seen, *inode)).collect();
        let inodes: Vec<u64> = files.iter().map(NetnsFile::inode).collect();
        let listed = netns::visit_each(files, |_| interfaces::addresses()).await?;
        let mut fresh = HashMap::new();
        for (inode, result) in inodes.into_iter().zip(listed) {
            match result {
                Ok(Ok(addrs)) => {
                    fresh.insert(inode, addrs);
                }
                Ok(Err(err)) => tracing::debug!(inode, %err, "cannot list addresses of network namespace"),
                Err(err) => tracing::debug!(inode, %err, "cannot enter network namespace"),
            }
        }
        *self.addresses.lock().expect("address cache lock") = fresh.clone();
        Ok(fresh)
    }

    /// Every distinct network namespace on the machine, by inode.
    fn scan(&self) -> BTreeMap<u64, SeenNetns> {
        let mut seen: BTreeMap<u64, SeenNetns> = BTreeMap::new();
        if let Ok(dir) = std::fs::read_dir(&self.proc_root) {
            for entry in dir.flatten() {
                let Some(pid) = entry.file_name().to_str().and_then(|n| n.parse::<u32>().ok()) else {
                    continue;
                };
                let path = format!("{}/{pid}/ns/net", self.proc_root);
                let Ok(meta) = std::fs::metadata(&path) else {
                    continue;
                };
                seen.entry(meta.ino())
                    .or_insert_with(|| SeenNetns { path, pids: vec![] })
                    .pids
                    .push(pid);
            }
        }
        if let Ok(dir) = std::fs::read_dir(NAMED_NETNS_DIR) {
            for entry in dir.flatten() {
                let path = entry.path().to_string_lossy().into_owned();
                let Ok(meta) = std::fs::metadata(&path) else {
                    continue;
                };
                seen.entry(meta.ino())
                    .or_insert_with(|| SeenNetns { path, pids: vec![] });
            }
        }
        for s in seen.values_mut() {
            s.pids.sort_unstable();
        }
        seen
    }

    /// The process whose root filesystem gives the namespace's resolv.conf: the lowest pid that has
    /// one (a pod's sandbox "pause" process usually has none), else the lowest pid.
    fn pick_pid(&self, pids: &[u32]) -> Option<u32> {
        pids.iter()
            .copied()
            .find(|pid| Path::new(&resolv_conf_path(*pid)).is_file())
            .or_else(|| pids.first().copied())
    }
}

/// Opens the namespace `seen` knows as `inode`, unless its file now names another namespace (the
/// process exited and its pid was reused) or none.
fn open_seen(seen: &BTreeMap<u64, SeenNetns>, inode: u64) -> Option<NetnsFile> {
    let netns = NetnsFile::open(&seen.get(&inode)?.path).ok()?;
    (netns.inode() == inode).then_some(netns)
}

/// The resolv.conf a process sees.
pub fn resolv_conf_path(pid: u32) -> String {
    format!("/proc/{pid}/root/etc/resolv.conf")
}
