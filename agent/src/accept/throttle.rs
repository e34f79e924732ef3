//! A rate limit for log lines that a client can cause at will (a refused connection, a failed
//! accept): at most one line per period, saying how many were left out since the last. Pure state.

use std::sync::Mutex;
use std::time::{Duration, Instant};

pub struct Throttle {
    period: Duration,
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    last: Option<Instant>,
    suppressed: u64,
}

impl Throttle {
    pub fn new(period: Duration) -> Self {
        Throttle {
            period,
            state: Mutex::default(),
        }
    }

    /// `Some(n)` when a line may be written now, `n` being how many were left out since the last
    /// one; `None` when this one is left out.
    pub fn allow(&self, now: Instant) -> Option<u64> {
        let mut state = self.state.lock().ok()?;
        match state.last {
            Some(last) if now.duration_since(last) < self.period => {
                state.suppressed += 1;
                None
            }
            _ => {
                state.last = Some(now);
                Some(std::mem::take(&mut state.suppressed))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_line_per_period_and_the_next_counts_the_ones_left_out() {
        let throttle = Throttle::new(Duration::from_secs(10));
        let start = Instant::now();
        assert_eq!(throttle.allow(start), Some(0));
        for i in 1..=500 {
            assert_eq!(throttle.allow(start + Duration::from_millis(i)), None);
        }
        assert_eq!(throttle.allow(start + Duration::from_secs(10)), Some(500));
        assert_eq!(throttle.allow(start + Duration::from_secs(11)), None);
    }
}
