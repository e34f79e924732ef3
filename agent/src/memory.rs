//! Giving freed memory back to the kernel after bursts of work.
//!
//! Every probe request runs on a thread of its own, and glibc's malloc serves threads from several
//! arenas whose freed chunks mostly stay mapped: after a flood the agent's RSS stayed tens of MiB
//! above its baseline. `malloc_trim(0)` releases the free pages of every arena (top and middle, with
//! `MADV_DONTNEED`); [`trim_after_work`] calls it periodically after work.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// Counts finished units of work (requests) so that [`trim_after_work`] knows there was some.
#[derive(Debug, Default)]
pub struct Activity(AtomicU64);

impl Activity {
    pub fn record(&self) {
        self.0.fetch_add(1, Ordering::Relaxed);
    }

    fn count(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

/// Returns freed heap memory to the kernel; true when some was released.
pub fn give_back() -> bool {
    // SAFETY: malloc_trim has no preconditions; it takes glibc's arena locks itself and only
    // releases pages no allocation uses. std and nix do not wrap it.
    unsafe { nix::libc::malloc_trim(0) == 1 }
}

/// Forever: every `period`, when work finished since the last trim, gives freed memory back on a
/// blocking thread. Not only after quiet periods: a steady trickle (health checks every 50 ms)
/// would otherwise keep a flood's memory forever. A trim walks the free chunks of the arenas, about
/// a millisecond on the agent's heap, so once per period costs nothing measurable.
pub async fn trim_after_work(activity: Arc<Activity>, period: Duration) {
    let mut interval = tokio::time::interval(period);
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut trimmed = activity.count();
    loop {
        interval.tick().await;
        let now = activity.count();
        if worked_since(now, trimmed) {
            trimmed = now;
            let _ = tokio::task::spawn_blocking(give_back).await;
        }
    }
}

/// Whether work finished since the last trim: the work count moved.
fn worked_since(now: u64, trimmed: u64) -> bool {
    now != trimmed
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trims_only_when_work_finished_since_the_last_trim() {
        assert!(worked_since(7, 3));
        assert!(!worked_since(7, 7));
    }

    #[test]
    fn giving_back_after_freeing_a_large_allocation_releases_memory() {
        // Many small blocks, freed, leave free chunks only malloc_trim returns.
        let blocks: Vec<Vec<u8>> = (0..20_000).map(|i| vec![i as u8; 1024]).collect();
        let keep = blocks.last().cloned();
        drop(blocks);
        assert!(give_back());
        assert_eq!(keep.map(|b| b.len()), Some(1024));
    }
}
