//! The per-company processing throttle (spec section 5): rows per second,
//! shared by every group of the company, slowing processing down and never
//! dropping anything.
//!
//! Each company has one reservation clock (`tat`, the time at which the
//! rows reserved so far have been "paid for"). Taking `n` rows reserves
//! `n / rate` seconds starting at `max(tat, now)` and waits until that
//! start: over any interval the company's workers together pass at most
//! `rate x interval` rows plus one batch. The map holds one small entry per
//! company that has processed a file with a limit (companies are few and
//! made by an operator).

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// The throttles of every company.
#[derive(Debug, Default)]
pub struct Throttles {
    clocks: Mutex<HashMap<String, Instant>>,
}

/// What one [`Throttles::take`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Taken {
    /// How long the caller waited.
    pub waited: Duration,
}

impl Throttles {
    /// A fresh set.
    pub fn new() -> Arc<Throttles> {
        Arc::new(Throttles::default())
    }

    /// Takes `rows` rows of `company`'s budget at `rows_per_second`
    /// (`None`: off, returns at once), blocking the calling (blocking)
    /// thread until they may pass. Stops waiting early when `cancel` is set.
    pub fn take(
        &self,
        company: &str,
        rows_per_second: Option<u64>,
        rows: u64,
        cancel: &AtomicBool,
    ) -> Taken {
        let Some(rate) = rows_per_second.filter(|r| *r > 0) else {
            return Taken::default();
        };
        if rows == 0 {
            return Taken::default();
        }
        let now = Instant::now();
        let start = {
            let Ok(mut clocks) = self.clocks.lock() else {
                return Taken::default();
            };
            let tat = clocks.entry(company.to_string()).or_insert(now);
            let start = (*tat).max(now);
            *tat = start + Duration::from_secs_f64(rows as f64 / rate as f64);
            start
        };
        let waited = start.saturating_duration_since(now);
        while Instant::now() < start && !cancel.load(Ordering::Relaxed) {
            let left = start.saturating_duration_since(Instant::now());
            std::thread::sleep(left.min(Duration::from_millis(100)));
        }
        Taken { waited }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn off_never_waits_and_a_limit_reserves_time_in_order() {
        let t = Throttles::default();
        let cancel = AtomicBool::new(false);
        assert_eq!(t.take("a", None, 1_000_000, &cancel), Taken::default());
        // The first batch passes at once; the reservation clock moves by
        // rows / rate, so a second company is unaffected.
        assert_eq!(t.take("a", Some(1_000), 10, &cancel).waited, Duration::ZERO);
        let before = *t.clocks.lock().unwrap().get("a").unwrap();
        cancel.store(true, Ordering::Relaxed);
        let second = t.take("a", Some(1_000), 500, &cancel);
        assert!(
            second.waited > Duration::ZERO,
            "the second batch waits its turn"
        );
        let after = *t.clocks.lock().unwrap().get("a").unwrap();
        assert_eq!(after.duration_since(before), Duration::from_millis(500));
        assert_eq!(t.take("b", Some(1_000), 10, &cancel).waited, Duration::ZERO);
    }
}
