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
