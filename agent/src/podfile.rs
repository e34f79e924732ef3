//! Reading files a pod controls (its resolv.conf) as hostile input.
//!
//! A pod decides what its `/etc/resolv.conf` is: a symlink out of its root (`/etc/shadow`,
//! `../../..`), a FIFO that blocks `open(2)` and `read(2)` forever, `/dev/zero`, a sparse file of
//! a terabyte. So a pod file is resolved with `openat2(RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS)`
//! under the process's root directory (`/proc/PID/root`): absolute symlinks and `..` stay inside
//! the pod's root, and procfs magic links (which jump anywhere) are refused. The first open is an
//! `O_PATH` one, which never runs a driver's or a FIFO's open; only a regular file is then opened
//! for reading (non-blocking, through the `O_PATH` descriptor, so it is the same inode), and at
//! most [`RESOLV_CONF_MAX_BYTES`] are read. Callers run this on a blocking-capable thread (a
//! namespace worker), never on an async worker: even a confined open walks the pod's mounts.

use std::fs::File;
use std::io::Read;
use std::os::fd::{AsRawFd, OwnedFd};

use nix::fcntl::{OFlag, OpenHow, ResolveFlag, openat2};
use nix::sys::stat::{SFlag, fstat};
use thiserror::Error;

/// Largest resolv.conf the agent reads. glibc parses resolv.conf line by line but keeps only
/// what it uses: 3 nameservers (MAXNS), a search list (kubelet rejects more than 32 domains or
/// 2,048 characters in it) and a handful of options; a kubelet-written file is under 1 KiB.
/// 64 KiB is far beyond any configuration a resolver would use, and small enough that reading
/// it costs nothing however many probes ask at once.
pub const RESOLV_CONF_MAX_BYTES: u64 = 64 * 1024;

#[derive(Debug, Error)]
pub enum PodFileError {
    #[error("cannot open {path} inside the root of process {pid}: {source}")]
    Open {
        pid: u32,
        path: String,
        #[source]
        source: nix::Error,
    },
    #[error("{path} inside the root of process {pid} is a {kind}, not a regular file")]
    NotRegular {
        pid: u32,
        path: String,
        kind: &'static str,
    },
    #[error("{path} inside the root of process {pid} has {size} bytes, more than the {cap} the agent reads")]
    TooLarge {
        pid: u32,
        path: String,
        size: u64,
        cap: u64,
    },
    #[error("cannot read {path} inside the root of process {pid}: {source}")]
    Read {
        pid: u32,
        path: String,
        #[source]
        source: std::io::Error,
    },
}

/// The bytes of `path` (absolute, as the pod sees it) inside the root of process `pid`, at most
/// `cap` of them.
pub fn read_in_root(pid: u32, path: &str, cap: u64) -> Result<Vec<u8>, PodFileError> {
    let located = open_path_in_root(pid, path)?;
    let open_err = |source| PodFileError::Open {
        pid,
        path: path.into(),
        source,
    };
    let stat = fstat(&located).map_err(open_err)?;
    let kind = file_kind(stat.st_mode);
    if kind != "regular file" {
        return Err(PodFileError::NotRegular {
            pid,
            path: path.into(),
            kind,
        });
    }
    let size = u64::try_from(stat.st_size).unwrap_or(0);
    if size > cap {
        return Err(PodFileError::TooLarge {
            pid,
            path: path.into(),
            size,
            cap,
        });
    }
    // Reopening the O_PATH descriptor through /proc/self/fd opens exactly the inode checked above.
    let reopen = format!("/proc/self/fd/{}", located.as_raw_fd());
    let fd = nix::fcntl::open(
        reopen.as_str(),
        OFlag::O_RDONLY | OFlag::O_NONBLOCK | OFlag::O_NOCTTY | OFlag::O_CLOEXEC,
        nix::sys::stat::Mode::empty(),
    )
    .map_err(open_err)?;
    let mut bytes = Vec::with_capacity(usize::try_from(size).unwrap_or(0));
    // One byte more than the cap tells a file that grew since fstat from one that fits.
    File::from(fd)
        .take(cap + 1)
        .read_to_end(&mut bytes)
        .map_err(|source| PodFileError::Read {
            pid,
            path: path.into(),
            source,
        })?;
    if bytes.len() as u64 > cap {
        return Err(PodFileError::TooLarge {
            pid,
            path: path.into(),
            size: bytes.len() as u64,
            cap,
        });
    }
    Ok(bytes)
}

/// Whether `path` inside the root of process `pid` is a regular file (confined like
/// [`read_in_root`], without opening it).
pub fn is_regular_in_root(pid: u32, path: &str) -> bool {
    open_path_in_root(pid, path)
        .and_then(|fd| {
            fstat(&fd).map_err(|source| PodFileError::Open {
                pid,
                path: path.into(),
                source,
            })
        })
        .is_ok_and(|stat| file_kind(stat.st_mode) == "regular file")
}

/// An `O_PATH` descriptor of `path` resolved with the root of process `pid` as `/`.
fn open_path_in_root(pid: u32, path: &str) -> Result<OwnedFd, PodFileError> {
    let open_err = |source| PodFileError::Open {
        pid,
        path: path.into(),
        source,
    };
    let root = nix::fcntl::open(
        format!("/proc/{pid}/root").as_str(),
        OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
        nix::sys::stat::Mode::empty(),
    )
    .map_err(open_err)?;
    let how = OpenHow::new()
        .flags(OFlag::O_PATH | OFlag::O_CLOEXEC)
        .resolve(ResolveFlag::RESOLVE_IN_ROOT | ResolveFlag::RESOLVE_NO_MAGICLINKS);
    openat2(&root, path.trim_start_matches('/'), how).map_err(open_err)
}

/// What kind of file a `st_mode` describes, in words.
fn file_kind(mode: nix::libc::mode_t) -> &'static str {
    match SFlag::from_bits_truncate(mode & SFlag::S_IFMT.bits()) {
        SFlag::S_IFREG => "regular file",
        SFlag::S_IFIFO => "FIFO",
        SFlag::S_IFCHR => "character device",
        SFlag::S_IFBLK => "block device",
        SFlag::S_IFSOCK => "socket",
        SFlag::S_IFDIR => "directory",
        SFlag::S_IFLNK => "symbolic link",
        _ => "file of unknown type",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_kinds_are_named() {
        assert_eq!(file_kind(SFlag::S_IFREG.bits() | 0o644), "regular file");
        assert_eq!(file_kind(SFlag::S_IFIFO.bits() | 0o600), "FIFO");
        assert_eq!(file_kind(SFlag::S_IFCHR.bits() | 0o666), "character device");
    }

    #[test]
    fn own_root_file_is_read_and_capped() {
        let me = std::process::id();
        let dir = std::env::temp_dir().join(format!("netdiag-podfile-{me}"));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("resolv.conf");
        std::fs::write(&file, "nameserver 10.96.0.10\n").unwrap();
        let path = file.to_str().unwrap();
        assert_eq!(read_in_root(me, path, 1024).unwrap(), b"nameserver 10.96.0.10\n");
        assert!(is_regular_in_root(me, path));
        let err = read_in_root(me, path, 4).unwrap_err();
        assert!(
            matches!(err, PodFileError::TooLarge { size: 22, cap: 4, .. }),
            "{err}"
        );
        let err = read_in_root(me, dir.to_str().unwrap(), 1024).unwrap_err();
        assert!(
            err.to_string().ends_with("is a directory, not a regular file"),
            "{err}"
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
