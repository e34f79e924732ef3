//! Stop signals during `up` and `run`: SIGINT, SIGTERM and SIGHUP are caught and recorded instead
//! of killing the process half-way, so the command can take its lab down before it exits.
//! (SIGKILL cannot be caught: `netdiag-lab down` cleans up after that.)

use std::sync::atomic::{AtomicBool, Ordering};

use anyhow::{Context, Result, bail};
use tokio::signal::unix::{SignalKind, signal};

static INTERRUPTED: AtomicBool = AtomicBool::new(false);

/// Catches the stop signals from now on and records them on a thread of their own. They are
/// caught by a handler, not blocked or ignored, so the processes the lab starts (whose handlers
/// reset on exec) still stop on them.
pub fn defer_stop_signals() -> Result<()> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("failed to start the signal watcher")?;
    let (mut int, mut term, mut hup) = rt
        .block_on(async {
            Ok::<_, std::io::Error>((
                signal(SignalKind::interrupt())?,
                signal(SignalKind::terminate())?,
                signal(SignalKind::hangup())?,
            ))
        })
        .context("failed to catch the stop signals")?;
    std::thread::spawn(move || {
        rt.block_on(async move {
            loop {
                let name = tokio::select! {
                    Some(()) = int.recv() => "SIGINT",
                    Some(()) = term.recv() => "SIGTERM",
                    Some(()) = hup.recv() => "SIGHUP",
                    else => return,
                };
                eprintln!("netdiag-lab: {name} received; stopping and taking the lab down");
                INTERRUPTED.store(true, Ordering::SeqCst);
            }
        })
    });
    Ok(())
}

/// Fails once a stop signal was recorded.
pub fn check() -> Result<()> {
    if INTERRUPTED.load(Ordering::SeqCst) {
        bail!("interrupted by a stop signal");
    }
    Ok(())
}

/// Marks every file descriptor this process inherited (beyond stdin, stdout and stderr) close-on-
/// exec, so that the lab's long-lived processes (pods, agents, the API stand-in, dnsmasq) never
/// hold what the caller had open: a shell's `flock` on fd 9 would otherwise stay locked for as
/// long as the lab is up. Called first thing, before any thread or descriptor of our own exists.
pub fn no_inherited_fds_for_children() {
    let Ok(entries) = std::fs::read_dir("/proc/self/fd") else {
        return;
    };
    let fds: Vec<i32> = entries
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
        .filter(|fd| *fd > 2)
        .collect();
    for fd in fds {
        // SAFETY: `fd` was listed open in /proc/self/fd by this single-threaded process just now
        // (the directory's own descriptor is closed again, and then fcntl fails harmlessly with
        // EBADF); the borrow lives for this one call. Neither nix nor std offers close_range or
        // a way to mark descriptors they did not open close-on-exec.
        let borrowed = unsafe { std::os::fd::BorrowedFd::borrow_raw(fd) };
        let _ = nix::fcntl::fcntl(
            borrowed,
            nix::fcntl::FcntlArg::F_SETFD(nix::fcntl::FdFlag::FD_CLOEXEC),
        );
    }
}
