//! Finds the network namespace a [`ProbeSource`] names, and a process living in it.
//!
//! Namespaces are found by walking `/proc/*/ns/net` and the named namespaces in `/run/netns`. A pod IP
//! is matched by entering each distinct namespace (through [`crate::netns`]) and listing its
//! addresses; the addresses are cached by namespace inode and the cache is dropped for namespaces
//! that no longer exist. Several namespaces may have the IP (a leaked sandbox whose IP was reused,
//! another node's pods when nodes share a machine): each one's interface carrying the IP is checked
//! for a link into the node namespace, and [`choose`] picks the one on this node.

use std::collections::{BTreeMap, HashMap};
use std::net::IpAddr;
use std::os::fd::AsFd;
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::sync::Mutex;

use netdiag_proto::{ProbeSource, ResolvedNetns};
use thiserror::Error;

use crate::interfaces::{self, Holding};
use crate::netns::{self, NetnsError, NetnsFile};
use crate::{dns, podfile};

/// Directory of named network namespaces (`ip netns add`).
pub const NAMED_NETNS_DIR: &str = "/run/netns";

#[derive(Debug, Error)]
pub enum LocateError {
    #[error("no network namespace on this node has {0}")]
    NoNamespaceHasIp(IpAddr),
    #[error(
        "{} network namespaces on this node have {ip} (inodes {}) and {} attached to the node namespace",
        inodes.len(),
        join_inodes(inodes),
        how_many_attached(*attached, inodes.len())
    )]
    Ambiguous {
        ip: IpAddr,
        inodes: Vec<u64>,
        attached: usize,
    },
    #[error("process {pid} does not exist on this node")]
    NoSuchProcess { pid: u32 },
    #[error(transparent)]
    Netns(#[from] NetnsError),
}

/// A located namespace: the open file to enter, and the processes living in it (ascending; the
/// one a `pid` source names, alone), among which [`pick_pid`] chooses on the namespace worker.
#[derive(Debug)]
pub struct Located {
    pub netns: NetnsFile,
    pub pids: Vec<u32>,
}

impl Located {
    /// What the report says the probes ran in, with the process [`pick_pid`] chose.
    pub fn resolved(&self, pid: Option<u32>) -> ResolvedNetns {
        ResolvedNetns {
            inode: self.netns.inode(),
            path: self.netns.path().to_string(),
            pid,
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

/// What the cache knows of one namespace: the file it was found through and its addresses.
#[derive(Debug)]
struct Cached {
    path: String,
    addresses: Vec<IpAddr>,
}

/// Where the node's processes are seen (the agent runs with hostPID).
const PROC: &str = "/proc";

pub struct Locator {
    node_netns: String,
    /// Addresses of each namespace that has one besides loopback, by inode.
    addresses: Mutex<HashMap<u64, Cached>>,
}

impl Locator {
    pub fn new(node_netns: impl Into<String>) -> Self {
        Locator {
            node_netns: node_netns.into(),
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
                let path = format!("{PROC}/{pid}/ns/net");
                if !Path::new(&format!("{PROC}/{pid}")).exists() {
                    return Err(LocateError::NoSuchProcess { pid: *pid });
                }
                let netns = NetnsFile::open(&path).map_err(|err| match err {
                    // The process ended between the two looks.
                    NetnsError::Open { source, .. } if source.kind() == std::io::ErrorKind::NotFound => {
                        LocateError::NoSuchProcess { pid: *pid }
                    }
                    err => err.into(),
                })?;
                Ok(Located {
                    netns,
                    pids: vec![*pid],
                })
            }
            ProbeSource::PodIp { ip } => self.by_ip(*ip).await,
        }
    }

    fn by_path(&self, path: &str) -> Result<Located, LocateError> {
        let netns = NetnsFile::open(path)?;
        let seen = self.scan();
        let pids = seen
            .get(&netns.inode())
            .map(|s| s.pids.clone())
            .unwrap_or_default();
        Ok(Located { netns, pids })
    }

    /// The namespaces of the pods with these addresses, from one look at the machine's
    /// processes: a request naming a node's hundred pods walks `/proc` once, not a hundred times.
    pub async fn locate_pods(
        &self,
        ips: impl IntoIterator<Item = IpAddr>,
    ) -> BTreeMap<IpAddr, Result<Located, String>> {
        let found = |ip: IpAddr, err: &dyn std::fmt::Display| {
            format!("cannot find the pod with IP {ip} on this node: {err}")
        };
        let mut ips = ips.into_iter().peekable();
        // A look at every process costs milliseconds on a busy node: none for no pod.
        if ips.peek().is_none() {
            return BTreeMap::new();
        }
        let (node, seen) = match self.scan_with_node() {
            Ok(scanned) => scanned,
            Err(err) => return ips.map(|ip| (ip, Err(found(ip, &err)))).collect(),
        };
        let mut out = BTreeMap::new();
        for ip in ips {
            let located = self.by_ip_seen(ip, &node, &seen).await;
            out.insert(ip, located.map_err(|err| found(ip, &err)));
        }
        out
    }

    /// The node's namespace, and every namespace on the machine including it.
    fn scan_with_node(&self) -> Result<(NetnsFile, BTreeMap<u64, SeenNetns>), LocateError> {
        let node = NetnsFile::open(&self.node_netns)?;
        let mut seen = self.scan();
        seen.entry(node.inode()).or_insert_with(|| SeenNetns {
            path: self.node_netns.clone(),
            pids: vec![],
        });
        Ok((node, seen))
    }

    async fn by_ip(&self, ip: IpAddr) -> Result<Located, LocateError> {
        let (node, seen) = self.scan_with_node()?;
        self.by_ip_seen(ip, &node, &seen).await
    }

    async fn by_ip_seen(
        &self,
        ip: IpAddr,
        node: &NetnsFile,
        seen: &BTreeMap<u64, SeenNetns>,
    ) -> Result<Located, LocateError> {
        let node_inode = node.inode();
        let (hits, unknown): (Vec<u64>, Vec<u64>) = {
            let mut cache = self.addresses.lock().expect("address cache lock");
            // An entry whose namespace is now found through another file may be a new namespace
            // that got a destroyed one's inode number: it is looked at again.
            cache.retain(|inode, cached| seen.get(inode).is_some_and(|s| s.path == cached.path));
            let hits = cache
                .iter()
                .filter(|(_, cached)| cached.addresses.contains(&ip))
                .map(|(inode, _)| *inode)
                .collect();
            let unknown = seen.keys().filter(|i| !cache.contains_key(i)).copied().collect();
            (hits, unknown)
        };
        // Fast path: the cached holders are looked at again (the pod IP may have moved, and the
        // kernel reuses a destroyed namespace's inode number for a new one), together with every
        // namespace that appeared since the cache was filled. Only a clear answer is taken from it.
        if !hits.is_empty() {
            let look: Vec<u64> = hits.iter().chain(&unknown).copied().collect();
            let found = self.examine(seen, &look, ip, node).await?;
            self.remember(seen, &found, false);
            let confirmed = hits
                .iter()
                .all(|i| found.get(i).is_some_and(|h| h.attached.is_some()));
            if confirmed
                && let Ok(inode) = choose(ip, &candidates(&found, node_inode))
                && let Some(located) = self.located(seen, inode)
            {
                return Ok(located);
            }
        }
        // A miss, a stale hit or an unclear answer: look at every namespace again.
        let all: Vec<u64> = seen.keys().copied().collect();
        let found = self.examine(seen, &all, ip, node).await?;
        self.remember(seen, &found, true);
        let inode = choose(ip, &candidates(&found, node_inode))?;
        self.located(seen, inode).ok_or(LocateError::NoNamespaceHasIp(ip))
    }

    fn located(&self, seen: &BTreeMap<u64, SeenNetns>, inode: u64) -> Option<Located> {
        Some(Located {
            netns: open_seen(seen, inode)?,
            pids: seen[&inode].pids.clone(),
        })
    }

    /// Enters each namespace of `inodes` (on one worker thread), lists its addresses and, where it
    /// has `ip`, whether it is attached to `node`. Namespaces that vanished or cannot be read are left
    /// out.
    async fn examine(
        &self,
        seen: &BTreeMap<u64, SeenNetns>,
        inodes: &[u64],
        ip: IpAddr,
        node: &NetnsFile,
    ) -> Result<HashMap<u64, Holding>, LocateError> {
        let files: Vec<NetnsFile> = inodes
            .iter()
            .filter_map(|inode| open_seen(seen, *inode))
            .collect();
        let opened: Vec<u64> = files.iter().map(NetnsFile::inode).collect();
        let node = node.try_clone()?;
        let listed = netns::visit_each(files, move |_| interfaces::holding(ip, node.as_fd())).await?;
        let mut found = HashMap::new();
        for (inode, result) in opened.into_iter().zip(listed) {
            match result {
                Ok(Ok(holding)) => {
                    found.insert(inode, holding);
                }
                Ok(Err(err)) => tracing::debug!(inode, %err, "cannot read addresses of network namespace"),
                Err(err) => tracing::debug!(inode, %err, "cannot enter network namespace"),
            }
        }
        Ok(found)
    }

    /// Caches the addresses of namespaces that have one besides loopback (`replace`: instead of the
    /// whole cache). A namespace with loopback only is usually a pod sandbox its CNI plugin has not
    /// configured yet; leaving it out makes every lookup look at it again.
    fn remember(&self, seen: &BTreeMap<u64, SeenNetns>, found: &HashMap<u64, Holding>, replace: bool) {
        let mut cache = self.addresses.lock().expect("address cache lock");
        if replace {
            cache.clear();
        }
        for (inode, holding) in found {
            if let Some(s) = seen.get(inode)
                && holding.addresses.iter().any(|a| !a.is_loopback())
            {
                let cached = Cached {
                    path: s.path.clone(),
                    addresses: holding.addresses.clone(),
                };
                cache.insert(*inode, cached);
            } else {
                cache.remove(inode);
            }
        }
    }

    /// Every distinct network namespace on the machine, by inode.
    fn scan(&self) -> BTreeMap<u64, SeenNetns> {
        let mut seen: BTreeMap<u64, SeenNetns> = BTreeMap::new();
        if let Ok(dir) = std::fs::read_dir(PROC) {
            for entry in dir.flatten() {
                let Some(pid) = entry.file_name().to_str().and_then(|n| n.parse::<u32>().ok()) else {
                    continue;
                };
                let path = format!("{PROC}/{pid}/ns/net");
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
}

/// The process whose root filesystem gives the namespace's resolv.conf: the lowest pid that has
/// one as a regular file inside its own root (a pod's sandbox "pause" process usually has none),
/// else the lowest pid. Looks into pod filesystems: call it on a namespace worker thread.
pub fn pick_pid(pids: &[u32]) -> Option<u32> {
    pids.iter()
        .copied()
        .find(|pid| podfile::is_regular_in_root(*pid, dns::RESOLV_CONF))
        .or_else(|| pids.first().copied())
}

/// A namespace holding the pod IP, and whether it is attached to the node namespace.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Candidate {
    pub inode: u64,
    pub attached: bool,
}

/// The namespaces of `found` that have the IP. The node namespace itself (a hostNetwork pod's IP is
/// the node's address) is attached by definition.
fn candidates(found: &HashMap<u64, Holding>, node_inode: u64) -> Vec<Candidate> {
    found
        .iter()
        .filter_map(|(inode, holding)| {
            holding.attached.map(|attached| Candidate {
                inode: *inode,
                attached: attached || *inode == node_inode,
            })
        })
        .collect()
}

/// Which namespace a pod IP names: the only one attached to the node namespace; else, when none is
/// attached, the only one that has the IP; else none (ambiguous, or no namespace has it).
pub fn choose(ip: IpAddr, candidates: &[Candidate]) -> Result<u64, LocateError> {
    let attached: Vec<u64> = candidates
        .iter()
        .filter(|c| c.attached)
        .map(|c| c.inode)
        .collect();
    match (attached.as_slice(), candidates) {
        ([one], _) => Ok(*one),
        ([], [only]) => Ok(only.inode),
        ([], []) => Err(LocateError::NoNamespaceHasIp(ip)),
        _ => {
            let mut inodes: Vec<u64> = candidates.iter().map(|c| c.inode).collect();
            inodes.sort_unstable();
            Err(LocateError::Ambiguous {
                ip,
                inodes,
                attached: attached.len(),
            })
        }
    }
}

/// "none is", "both are", "all are", "2 are".
fn how_many_attached(attached: usize, of: usize) -> String {
    match attached {
        0 => "none is".into(),
        n if n == of && n == 2 => "both are".into(),
        n if n == of => "all are".into(),
        n => format!("{n} are"),
    }
}

fn join_inodes(inodes: &[u64]) -> String {
    inodes.iter().map(u64::to_string).collect::<Vec<_>>().join(", ")
}

/// Opens the namespace `seen` knows as `inode`, unless its file now names another namespace (the
/// process exited and its pid was reused) or none.
fn open_seen(seen: &BTreeMap<u64, SeenNetns>, inode: u64) -> Option<NetnsFile> {
    let netns = NetnsFile::open(&seen.get(&inode)?.path).ok()?;
    (netns.inode() == inode).then_some(netns)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip() -> IpAddr {
        "10.244.1.2".parse().unwrap()
    }

    fn c(inode: u64, attached: bool) -> Candidate {
        Candidate { inode, attached }
    }

    #[test]
    fn the_only_attached_namespace_wins_over_unattached_ones() {
        assert_eq!(choose(ip(), &[c(7, false), c(9, true), c(3, false)]).unwrap(), 9);
    }

    #[test]
    fn a_single_unattached_namespace_is_chosen_when_it_is_the_only_one() {
        assert_eq!(choose(ip(), &[c(5, false)]).unwrap(), 5);
    }

    #[test]
    fn no_namespace_is_not_found() {
        assert!(matches!(choose(ip(), &[]), Err(LocateError::NoNamespaceHasIp(a)) if a == ip()));
    }

    #[test]
    fn two_unattached_namespaces_are_ambiguous_and_named_by_inode() {
        let err = choose(ip(), &[c(20, false), c(10, false)]).unwrap_err();
        assert_eq!(
            err.to_string(),
            "2 network namespaces on this node have 10.244.1.2 (inodes 10, 20) and none is attached to the \
             node namespace"
        );
    }

    #[test]
    fn two_attached_namespaces_are_ambiguous() {
        let err = choose(ip(), &[c(1, true), c(2, true)]).unwrap_err();
        assert!(
            err.to_string()
                .ends_with("(inodes 1, 2) and both are attached to the node namespace")
        );
        let err = choose(ip(), &[c(1, true), c(2, true), c(3, false)]).unwrap_err();
        assert!(err.to_string().starts_with("3 network namespaces"), "{err}");
        assert!(
            err.to_string()
                .ends_with("and 2 are attached to the node namespace"),
            "{err}"
        );
    }

    #[test]
    fn the_node_namespace_holding_the_ip_counts_as_attached() {
        let holding = |attached| Holding {
            addresses: vec![ip()],
            attached,
        };
        let found = HashMap::from([
            (1, holding(Some(false))),
            (2, holding(Some(false))),
            (3, holding(None)),
        ]);
        let mut got = candidates(&found, 2);
        got.sort_by_key(|c| c.inode);
        assert_eq!(got, vec![c(1, false), c(2, true)]);
        assert_eq!(choose(ip(), &got).unwrap(), 2);
    }
}
