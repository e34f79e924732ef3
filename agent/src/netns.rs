//! The namespace executor: the only module that calls `setns`.
//!
//! `setns(CLONE_NEWNET)` changes the network namespace of the calling thread only. Every piece of work
//! that must happen inside a namespace therefore runs on a fresh OS thread that enters the namespace
//! first, builds its own current-thread tokio runtime, runs the work to completion and exits. Nothing
//! that runs there can migrate to another thread, every socket it opens (TCP probes, the DNS client,
//! netlink, raw ICMP) is created in that namespace, and no thread is ever left behind in a foreign
//! namespace: the thread ends with the work.

use std::fs::File;
use std::future::Future;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd};
use std::os::unix::fs::MetadataExt;

use nix::fcntl::OFlag;
use nix::sched::{CloneFlags, setns};
use nix::sys::stat::Mode;
use nix::sys::statfs::{NSFS_MAGIC, fstatfs};
use thiserror::Error;

/// Stack size of a namespace worker thread. Probe futures live on the runtime's heap; the stack only
/// carries the runtime's poll loop and the parsers.
const WORKER_STACK_BYTES: usize = 256 * 1024;

#[derive(Debug, Error)]
pub enum NetnsError {
    #[error("cannot open network namespace {path}: {source}")]
    Open {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "cannot enter network namespace {path}: {source} (the agent needs CAP_SYS_ADMIN; add it to the \
         container's securityContext.capabilities.add)"
    )]
    Enter {
        path: String,
        #[source]
        source: nix::Error,
    },
    #[error("{path} is not a network namespace file on nsfs")]
    NotNetns { path: String },
    #[error("cannot start a worker thread for network namespace {path}: {source}")]
    Spawn {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot start an async runtime in network namespace {path}: {source}")]
    Runtime {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("the worker thread for network namespace {path} died before it finished")]
    WorkerDied { path: String },
}

/// An open handle on a network namespace file, with the namespace's inode.
#[derive(Debug)]
pub struct NetnsFile {
    file: File,
    path: String,
    inode: u64,
}

impl NetnsFile {
    /// Opens a namespace file such as `/run/netns/x` or `/proc/123/ns/net`, after verifying that it
    /// is a network namespace: the path is first opened `O_PATH` (which runs no driver's or FIFO's
    /// open) and must be on nsfs (`fstatfs`); only then is that same inode opened (opening an nsfs
    /// file has no side effect) and its type must be a network namespace (`NS_GET_NSTYPE`).
    pub fn open(path: &str) -> Result<Self, NetnsError> {
        let open_err = |source: nix::Error| NetnsError::Open {
            path: path.to_string(),
            source: source.into(),
        };
        let not_netns = || NetnsError::NotNetns {
            path: path.to_string(),
        };
        let located =
            nix::fcntl::open(path, OFlag::O_PATH | OFlag::O_CLOEXEC, Mode::empty()).map_err(open_err)?;
        if fstatfs(&located).map_err(open_err)?.filesystem_type() != NSFS_MAGIC {
            return Err(not_netns());
        }
        // Reopening the O_PATH descriptor opens exactly the inode checked above.
        let fd_link = format!("/proc/self/fd/{}", located.as_raw_fd());
        let file = std::fs::File::open(&fd_link).map_err(|source| NetnsError::Open {
            path: path.to_string(),
            source,
        })?;
        if namespace_type(&file) != Some(CloneFlags::CLONE_NEWNET.bits()) {
            return Err(not_netns());
        }
        let inode = file
            .metadata()
            .map_err(|source| NetnsError::Open {
                path: path.to_string(),
                source,
            })?
            .ino();
        Ok(NetnsFile {
            file,
            path: path.to_string(),
            inode,
        })
    }

    pub fn path(&self) -> &str {
        &self.path
    }

    pub fn inode(&self) -> u64 {
        self.inode
    }

    /// A second handle on the same namespace.
    pub fn try_clone(&self) -> Result<Self, NetnsError> {
        let file = self.file.try_clone().map_err(|source| NetnsError::Open {
            path: self.path.clone(),
            source,
        })?;
        Ok(NetnsFile {
            file,
            path: self.path.clone(),
            inode: self.inode,
        })
    }

    /// Enters this namespace on the calling thread. Private: only the worker threads below call it.
    fn enter(&self) -> Result<(), NetnsError> {
        setns(&self.file, CloneFlags::CLONE_NEWNET).map_err(|source| match source {
            // EINVAL: the file is not a network namespace (a plain file, another namespace type).
            nix::Error::EINVAL => NetnsError::NotNetns {
                path: self.path.clone(),
            },
            source => NetnsError::Enter {
                path: self.path.clone(),
                source,
            },
        })
    }
}

nix::ioctl_none!(
    /// `NS_GET_NSTYPE` (`_IO(0xb7, 0x3)`, linux/nsfs.h): the `CLONE_NEW*` type of a namespace file.
    ns_get_nstype,
    0xb7,
    0x3
);

/// The `CLONE_NEW*` type of the namespace `file` refers to; `None` when it is not a namespace file.
fn namespace_type(file: &std::fs::File) -> Option<i32> {
    // SAFETY: NS_GET_NSTYPE takes no argument and only reads the namespace the descriptor refers
    // to; `file` is an open descriptor owned for the duration of the call. Neither std nor nix
    // offers a safe wrapper for this nsfs ioctl.
    unsafe { ns_get_nstype(file.as_raw_fd()) }.ok()
}

/// The open namespace file, e.g. for `NETNSA_FD` in an `RTM_GETNSID` request. Holding it never
/// enters the namespace.
impl AsFd for NetnsFile {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.file.as_fd()
    }
}

/// Runs `work` to completion inside the namespace `ns`, on a dedicated thread with its own
/// current-thread runtime, and returns its output.
pub async fn run_in<W, Fut, T>(ns: &NetnsFile, work: W) -> Result<T, NetnsError>
where
    W: FnOnce() -> Fut + Send + 'static,
    Fut: Future<Output = T>,
    T: Send + 'static,
{
    let ns = ns.try_clone()?;
    let path = ns.path.clone();
    let (tx, rx) = tokio::sync::oneshot::channel();
    std::thread::Builder::new()
        .name(format!("netns-{}", ns.inode))
        .stack_size(WORKER_STACK_BYTES)
        .spawn(move || {
            let result = ns.enter().and_then(|()| {
                let runtime = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .map_err(|source| NetnsError::Runtime {
                        path: ns.path.clone(),
                        source,
                    })?;
                drop(ns);
                Ok(runtime.block_on(work()))
            });
            // The receiver may have gone away (request cancelled); the thread ends either way.
            let _ = tx.send(result);
        })
        .map_err(|source| NetnsError::Spawn {
            path: path.clone(),
            source,
        })?;
    rx.await.unwrap_or(Err(NetnsError::WorkerDied { path }))
}

/// Visits every namespace in `namespaces` in turn on one dedicated thread, calling `visit` inside
/// each, and returns one result per namespace in the same order. The thread ends afterwards.
pub async fn visit_each<V, T>(
    namespaces: Vec<NetnsFile>,
    visit: V,
) -> Result<Vec<Result<T, NetnsError>>, NetnsError>
where
    V: Fn(&NetnsFile) -> T + Send + 'static,
    T: Send + 'static,
{
    let (tx, rx) = tokio::sync::oneshot::channel();
    std::thread::Builder::new()
        .name("netns-scan".into())
        .stack_size(WORKER_STACK_BYTES)
        .spawn(move || {
            let results: Vec<Result<T, NetnsError>> = namespaces
                .iter()
                .map(|ns| ns.enter().map(|()| visit(ns)))
                .collect();
            let _ = tx.send(results);
        })
        .map_err(|source| NetnsError::Spawn {
            path: "(scan)".into(),
            source,
        })?;
    rx.await.map_err(|_| NetnsError::WorkerDied {
        path: "(scan)".into(),
    })
}
