//! Which probe sources this agent accepts (least authority), judged before anything touches the
//! filesystem.
//!
//! The agent is root-equivalent on its node, so what a caller may name is configured: the source
//! kinds enabled (`--allow-sources`; the plugin needs only `podIP` and `node`) and, for `netns`
//! sources, the namespace files that may be named (`--netns-roots`, patterns where `*` stands for
//! one path component: `/proc/*/ns/net`, `/run/netns/*`). Pure: [`crate::locate`] opens and
//! verifies the file afterwards, and reports every failure there as the same
//! [`AccessError::NetnsRejected`] as a path outside the roots, so that answers are no oracle of
//! which files exist on the node.

use std::fmt;

use netdiag_proto::ProbeSource;
use thiserror::Error;

/// The kernel's PID_MAX_LIMIT on 64-bit: no process id is larger.
pub const PID_MAX_LIMIT: u32 = 4 * 1024 * 1024;
/// PATH_MAX, counting the terminating NUL.
const PATH_MAX: usize = 4096;
/// NAME_MAX: the longest path component.
const NAME_MAX: usize = 255;

/// Namespace files a `netns` source may name unless configured otherwise.
pub const DEFAULT_NETNS_ROOTS: &str = "/proc/*/ns/net,/run/netns/*";

/// A source kind, spelled as its JSON `kind` tag.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum SourceKind {
    Netns,
    Pid,
    PodIp,
    Node,
}

impl SourceKind {
    pub const ALL: [SourceKind; 4] = [
        SourceKind::PodIp,
        SourceKind::Node,
        SourceKind::Netns,
        SourceKind::Pid,
    ];

    pub fn of(source: &ProbeSource) -> Self {
        match source {
            ProbeSource::Netns { .. } => SourceKind::Netns,
            ProbeSource::Pid { .. } => SourceKind::Pid,
            ProbeSource::PodIp { .. } => SourceKind::PodIp,
            ProbeSource::Node => SourceKind::Node,
        }
    }

    fn as_str(self) -> &'static str {
        match self {
            SourceKind::Netns => "netns",
            SourceKind::Pid => "pid",
            SourceKind::PodIp => "podIP",
            SourceKind::Node => "node",
        }
    }
}

impl fmt::Display for SourceKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for SourceKind {
    type Err = ConfigError;

    fn from_str(s: &str) -> Result<Self, ConfigError> {
        SourceKind::ALL
            .into_iter()
            .find(|k| k.as_str() == s)
            .ok_or_else(|| ConfigError::UnknownKind(s.to_string()))
    }
}

/// An authority the agent cannot be started with.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum ConfigError {
    #[error("unknown source kind {0:?} (known: podIP, node, netns, pid)")]
    UnknownKind(String),
    #[error("netns root {root:?} {why}")]
    InvalidRoot { root: String, why: &'static str },
}

#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum AccessError {
    #[error("source kind {kind} is not enabled on this agent (enabled: {enabled})")]
    NotAllowed { kind: SourceKind, enabled: String },
    #[error("source netns path {path:?} {why}")]
    InvalidPath { path: String, why: &'static str },
    #[error("source pid {pid} is not a process id (at most {PID_MAX_LIMIT})")]
    InvalidPid { pid: u32 },
    #[error("{path:?} is not a network namespace this agent may enter (allowed: {roots})")]
    NetnsRejected { path: String, roots: String },
}

/// The configured authority: enabled source kinds and allowed namespace file patterns.
#[derive(Debug, Clone)]
pub struct Access {
    allowed: Vec<SourceKind>,
    netns_roots: Vec<String>,
}

impl Access {
    /// `allowed` source kinds; `netns_roots` patterns, each absolute, `*` matching one component.
    pub fn new(allowed: &[SourceKind], netns_roots: &[String]) -> Result<Self, ConfigError> {
        for root in netns_roots {
            if let Err(why) = lexical_problem(root) {
                return Err(ConfigError::InvalidRoot {
                    root: root.clone(),
                    why,
                });
            }
        }
        let mut allowed = allowed.to_vec();
        allowed.sort_unstable();
        allowed.dedup();
        Ok(Access {
            allowed,
            netns_roots: netns_roots.to_vec(),
        })
    }

    /// Every source kind, the default roots: the one-shot mode's authority.
    pub fn permissive() -> Self {
        let roots: Vec<String> = DEFAULT_NETNS_ROOTS.split(',').map(String::from).collect();
        Access::new(&SourceKind::ALL, &roots).expect("default roots are valid")
    }

    pub fn allowed(&self) -> &[SourceKind] {
        &self.allowed
    }

    /// Judges `source` from its text alone.
    pub fn check(&self, source: &ProbeSource) -> Result<(), AccessError> {
        let kind = SourceKind::of(source);
        if !self.allowed.contains(&kind) {
            let enabled = self
                .allowed
                .iter()
                .map(|k| k.as_str())
                .collect::<Vec<_>>()
                .join(", ");
            return Err(AccessError::NotAllowed { kind, enabled });
        }
        match source {
            ProbeSource::Netns { path } => {
                lexical_problem(path).map_err(|why| AccessError::InvalidPath {
                    path: path.clone(),
                    why,
                })?;
                if !self.netns_roots.iter().any(|root| matches_root(root, path)) {
                    return Err(self.netns_rejected(path));
                }
                Ok(())
            }
            ProbeSource::Pid { pid } if *pid == 0 || *pid > PID_MAX_LIMIT => {
                Err(AccessError::InvalidPid { pid: *pid })
            }
            _ => Ok(()),
        }
    }

    /// The one answer for every `netns` path that is not an enterable network namespace.
    pub fn netns_rejected(&self, path: &str) -> AccessError {
        AccessError::NetnsRejected {
            path: path.into(),
            roots: self.netns_roots.join(", "),
        }
    }
}

/// Why `path` cannot name a file, judged from the string (what `open` would fail with EINVAL,
/// ENAMETOOLONG, or what would leave the allowed roots by `..`).
fn lexical_problem(path: &str) -> Result<(), &'static str> {
    if path.contains('\0') {
        return Err("holds a NUL byte");
    }
    if !path.starts_with('/') {
        return Err("is not absolute");
    }
    if path.len() >= PATH_MAX {
        return Err("is longer than PATH_MAX (4095 bytes)");
    }
    let mut components = path.split('/').filter(|c| !c.is_empty());
    if components.clone().any(|c| c.len() > NAME_MAX) {
        return Err("has a component longer than NAME_MAX (255 bytes)");
    }
    if components.any(|c| c == "." || c == "..") {
        return Err("has a . or .. component");
    }
    Ok(())
}

/// Whether `path` matches `root`, where a `*` component matches exactly one component.
fn matches_root(root: &str, path: &str) -> bool {
    let parts = |s: &'_ str| {
        s.split('/')
            .filter(|c| !c.is_empty())
            .map(String::from)
            .collect::<Vec<_>>()
    };
    let (root, path) = (parts(root), parts(path));
    root.len() == path.len() && root.iter().zip(&path).all(|(r, p)| r == "*" || r == p)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn netns(path: &str) -> ProbeSource {
        ProbeSource::Netns { path: path.into() }
    }

    fn restrictive() -> Access {
        let roots: Vec<String> = DEFAULT_NETNS_ROOTS.split(',').map(String::from).collect();
        Access::new(&[SourceKind::PodIp, SourceKind::Node], &roots).unwrap()
    }

    #[test]
    fn disabled_source_kinds_are_refused_by_name() {
        let err = restrictive().check(&ProbeSource::Pid { pid: 1 }).unwrap_err();
        assert_eq!(
            err.to_string(),
            "source kind pid is not enabled on this agent (enabled: podIP, node)"
        );
        assert!(restrictive().check(&ProbeSource::Node).is_ok());
    }

    #[test]
    fn netns_paths_inside_the_roots_pass_and_others_are_rejected_alike() {
        let access = Access::permissive();
        assert!(access.check(&netns("/proc/42/ns/net")).is_ok());
        assert!(access.check(&netns("/run/netns/cni-1234")).is_ok());
        for outside in [
            "/etc/shadow",
            "/proc/42/root/etc/shadow",
            "/run/netns/a/b",
            "/proc/42/ns/mnt",
        ] {
            assert_eq!(
                access.check(&netns(outside)).unwrap_err(),
                access.netns_rejected(outside)
            );
        }
    }

    #[test]
    fn unusable_paths_say_what_is_wrong() {
        let access = Access::permissive();
        let why = |p: &str| match access.check(&netns(p)) {
            Err(AccessError::InvalidPath { why, .. }) => why,
            other => panic!("{p:?}: {other:?}"),
        };
        assert_eq!(why("/run/netns/a\0b"), "holds a NUL byte");
        assert_eq!(why("run/netns/a"), "is not absolute");
        assert_eq!(
            why(&format!("/run/netns/{}", "a".repeat(256))),
            "has a component longer than NAME_MAX (255 bytes)"
        );
        assert_eq!(why(&"/a".repeat(2100)), "is longer than PATH_MAX (4095 bytes)");
        assert_eq!(why("/run/netns/../../etc/shadow"), "has a . or .. component");
    }

    #[test]
    fn pids_beyond_the_kernel_limit_are_invalid() {
        let access = Access::permissive();
        assert!(access.check(&ProbeSource::Pid { pid: PID_MAX_LIMIT }).is_ok());
        assert_eq!(
            access.check(&ProbeSource::Pid {
                pid: PID_MAX_LIMIT + 1
            }),
            Err(AccessError::InvalidPid {
                pid: PID_MAX_LIMIT + 1
            })
        );
    }

    #[test]
    fn source_kinds_parse_from_their_json_tags() {
        for kind in SourceKind::ALL {
            assert_eq!(kind.to_string().parse::<SourceKind>().unwrap(), kind);
        }
        assert!("podIp".parse::<SourceKind>().is_err());
    }
}
