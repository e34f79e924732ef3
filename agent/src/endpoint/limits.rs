//! The endpoint's bounds: how many requests one caller may have in flight, at most one running
//! piece of work per key (a check per (from, to), a review per token) — a second identical request
//! waits for the running one and shares its result (single-flight) — and how often one client
//! address may cost the API server a review ([`SourceRate`]). Beyond a bound the answer is 429.
//! Pure in-memory state.

use std::collections::HashMap;
use std::future::Future;
use std::hash::Hash;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::watch;

/// Requests in flight per caller, at most `max` each.
pub struct PerCaller {
    max: usize,
    counts: Arc<Mutex<HashMap<String, usize>>>,
}

/// One caller's slot; dropping it frees the slot.
pub struct Slot {
    caller: String,
    counts: Arc<Mutex<HashMap<String, usize>>>,
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut counts = self.counts.lock().expect("per-caller lock");
        if let Some(n) = counts.get_mut(&self.caller) {
            *n -= 1;
            if *n == 0 {
                counts.remove(&self.caller);
            }
        }
    }
}

impl PerCaller {
    pub fn new(max: usize) -> Self {
        PerCaller {
            max,
            counts: Arc::default(),
        }
    }

    /// A slot for `caller`, or `None` when it already has `max` requests in flight.
    pub fn try_acquire(&self, caller: &str) -> Option<Slot> {
        let mut counts = self.counts.lock().expect("per-caller lock");
        let n = counts.entry(caller.to_string()).or_default();
        if *n >= self.max {
            return None;
        }
        *n += 1;
        Some(Slot {
            caller: caller.to_string(),
            counts: self.counts.clone(),
        })
    }
}

/// Running work by key: at most `max` distinct keys at once, each run once however many wait.
pub struct SingleFlight<K, V> {
    max: usize,
    running: Arc<Mutex<HashMap<K, watch::Receiver<Option<V>>>>>,
}

/// Why [`SingleFlight::run`] gave no value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FlightError {
    /// `max` distinct keys are already running.
    Full,
    /// The work ended without a value (it panicked).
    Lost,
}

impl<K, V> SingleFlight<K, V>
where
    K: Eq + Hash + Clone + Send + 'static,
    V: Clone + Send + Sync + 'static,
{
    pub fn new(max: usize) -> Self {
        SingleFlight {
            max,
            running: Arc::default(),
        }
    }

    /// The value of `work` for `key`: joins the running work of the same key, or starts `work` on
    /// its own task (so it finishes and frees its key even when every waiter goes away). The
    /// second value is true when this call joined work another call had started.
    pub async fn run<F>(&self, key: K, work: F) -> Result<(V, bool), FlightError>
    where
        F: Future<Output = V> + Send + 'static,
    {
        let (mut rx, joined) = {
            let mut running = self.running.lock().expect("single-flight lock");
            match running.get(&key) {
                Some(rx) => (rx.clone(), true),
                None if running.len() >= self.max => return Err(FlightError::Full),
                None => {
                    let (tx, rx) = watch::channel(None);
                    running.insert(key.clone(), rx.clone());
                    let map = self.running.clone();
                    tokio::spawn(async move {
                        let value = work.await;
                        map.lock().expect("single-flight lock").remove(&key);
                        let _ = tx.send(Some(value));
                    });
                    (rx, false)
                }
            }
        };
        let value = rx
            .wait_for(Option::is_some)
            .await
            .map_err(|_| FlightError::Lost)?
            .clone()
            .ok_or(FlightError::Lost)?;
        Ok((value, joined))
    }

    /// Distinct keys running now.
    pub fn running(&self) -> usize {
        self.running.lock().expect("single-flight lock").len()
    }

    /// Whether work for `key` is running now (a call would join it).
    pub fn is_running(&self, key: &K) -> bool {
        self.running.lock().expect("single-flight lock").contains_key(key)
    }
}

/// A token bucket per client address: `burst` at once, then one per `every`. At most
/// `max_sources` addresses are remembered; beyond, full buckets are forgotten first (they are what
/// a forgotten address gets anyway).
pub struct SourceRate {
    burst: f64,
    every: Duration,
    max_sources: usize,
    buckets: Mutex<HashMap<IpAddr, Bucket>>,
}

#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    at: Instant,
}

impl SourceRate {
    /// `per_minute` takes from one address, a quarter of them at once.
    pub fn per_minute(per_minute: u32, max_sources: usize) -> Self {
        let per_minute = per_minute.max(1);
        SourceRate {
            burst: f64::from((per_minute / 4).max(1)),
            every: Duration::from_secs(60) / per_minute,
            max_sources: max_sources.max(1),
            buckets: Mutex::default(),
        }
    }

    fn level(&self, bucket: Bucket, now: Instant) -> f64 {
        let earned = now.saturating_duration_since(bucket.at).as_secs_f64() / self.every.as_secs_f64();
        (bucket.tokens + earned).min(self.burst)
    }

    /// Takes one from `source`'s bucket; false when it is empty.
    pub fn try_take(&self, source: IpAddr, now: Instant) -> bool {
        let Ok(mut buckets) = self.buckets.lock() else {
            return false;
        };
        if buckets.len() >= self.max_sources && !buckets.contains_key(&source) {
            buckets.retain(|_, b| self.level(*b, now) < self.burst);
            if buckets.len() >= self.max_sources {
                buckets.clear();
            }
        }
        let full = Bucket {
            tokens: self.burst,
            at: now,
        };
        let bucket = buckets.entry(source).or_insert(full);
        let tokens = self.level(*bucket, now);
        if tokens < 1.0 {
            return false;
        }
        *bucket = Bucket {
            tokens: tokens - 1.0,
            at: now,
        };
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    #[test]
    fn a_caller_gets_at_most_max_slots_and_dropping_one_frees_it() {
        let limits = PerCaller::new(2);
        let a1 = limits.try_acquire("alice").unwrap();
        let _a2 = limits.try_acquire("alice").unwrap();
        assert!(limits.try_acquire("alice").is_none());
        assert!(limits.try_acquire("bob").is_some(), "callers are counted apart");
        drop(a1);
        assert!(limits.try_acquire("alice").is_some());
    }

    #[test]
    fn an_address_gets_a_quarter_of_its_minute_at_once_then_one_per_share_of_the_minute() {
        let rate = SourceRate::per_minute(60, 16);
        let (a, b) = (IpAddr::from([10, 0, 0, 1]), IpAddr::from([10, 0, 0, 2]));
        let now = Instant::now();
        let taken = (0..100).filter(|_| rate.try_take(a, now)).count();
        assert_eq!(taken, 15, "a quarter of 60 at once");
        assert!(rate.try_take(b, now), "addresses are counted apart");
        assert!(!rate.try_take(a, now + Duration::from_millis(900)));
        assert!(
            rate.try_take(a, now + Duration::from_secs(1)),
            "one a second after"
        );
        assert!(!rate.try_take(a, now + Duration::from_secs(1)));
    }

    #[test]
    fn remembered_addresses_are_bounded_and_full_buckets_are_forgotten_first() {
        let rate = SourceRate::per_minute(8, 2);
        let ip = |n: u8| IpAddr::from([10, 0, 0, n]);
        let now = Instant::now();
        let later = now + Duration::from_millis(7500);
        assert!(rate.try_take(ip(1), now) && rate.try_take(ip(1), now));
        assert!(!rate.try_take(ip(1), now), "two at once");
        assert!(rate.try_take(ip(2), now));
        assert!(
            rate.try_take(ip(3), later),
            "ip 2's bucket is full again: forgotten"
        );
        assert_eq!(rate.buckets.lock().unwrap().len(), 2);
        assert!(rate.try_take(ip(1), later));
        assert!(
            !rate.try_take(ip(1), later),
            "ip 1 was remembered: one earned since"
        );
    }

    #[tokio::test]
    async fn identical_requests_share_one_run_and_distinct_keys_are_bounded() {
        let flights: Arc<SingleFlight<&'static str, usize>> = Arc::new(SingleFlight::new(1));
        let runs = Arc::new(AtomicUsize::new(0));
        let (release, gate) = watch::channel(false);
        let work = |runs: Arc<AtomicUsize>, mut gate: watch::Receiver<bool>| async move {
            let _ = gate.wait_for(|open| *open).await;
            runs.fetch_add(1, Ordering::SeqCst) + 41
        };
        let first = tokio::spawn({
            let (f, r, g) = (flights.clone(), runs.clone(), gate.clone());
            async move { f.run("a", work(r, g)).await }
        });
        tokio::task::yield_now().await;
        let second = tokio::spawn({
            let (f, r, g) = (flights.clone(), runs.clone(), gate.clone());
            async move { f.run("a", work(r, g)).await }
        });
        tokio::task::yield_now().await;
        assert_eq!(flights.running(), 1);
        assert_eq!(
            flights.run("b", work(runs.clone(), gate.clone())).await,
            Err(FlightError::Full)
        );
        release.send(true).unwrap();
        assert_eq!(first.await.unwrap(), Ok((41, false)));
        assert_eq!(second.await.unwrap(), Ok((41, true)));
        assert_eq!(runs.load(Ordering::SeqCst), 1, "the work ran once");
        assert_eq!(flights.running(), 0, "the key is freed when the work ends");
    }
}
