//! Throttling of failed authentication per client id, with `governor`.
//!
//! The token endpoints (`POST /ims/token/v3`, `POST /ims/exchange/jwt`)
//! record every attempt that fails for a client id (wrong secret, unknown
//! client, bad or replayed JWT) in that id's token bucket: `failure_burst`
//! failures are answered 401, then the id is blocked (429 with
//! `Retry-After`, whatever the secret) until the bucket has room again, one
//! failure per `failure_refill_secs`. Successful attempts take nothing from
//! the bucket, and an id that never failed has no state at all.
//!
//! State is bounded whatever the callers send: an entry is keyed by a
//! 64-bit keyed hash of the client id (so a long id costs no more than a
//! short one), entries whose bucket is full again are dropped (every 256
//! failures and when the map is full; dropping them changes nothing), and
//! at most `failure_max_clients` entries are
//! kept: past that, the ones that failed least recently are dropped first.

use std::collections::HashMap;
use std::hash::BuildHasher;
use std::num::NonZeroU32;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use governor::clock::{Clock, DefaultClock};
use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};

use crate::config::AuthConfig;

struct Entry {
    limiter: DefaultDirectRateLimiter,
    /// Attempts are refused until then.
    blocked_until: Option<Instant>,
    last_failure: Instant,
}

/// Failed-authentication state of every client id that failed recently.
pub struct FailureThrottle {
    quota: Quota,
    /// How long after its last failure an entry's bucket is full again.
    refill_all: Duration,
    max_clients: usize,
    hasher: std::collections::hash_map::RandomState,
    entries: Mutex<HashMap<u64, Entry>>,
    failures: AtomicU64,
}

impl std::fmt::Debug for FailureThrottle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FailureThrottle")
            .field("quota", &self.quota)
            .field("max_clients", &self.max_clients)
            .finish_non_exhaustive()
    }
}

impl FailureThrottle {
    /// From the `auth.failure_*` settings (validated: burst, refill and
    /// maximum above 0).
    pub fn new(config: &AuthConfig) -> FailureThrottle {
        let burst = NonZeroU32::new(config.failure_burst).unwrap_or(NonZeroU32::MIN);
        let period = Duration::from_secs(config.failure_refill_secs.max(1));
        let quota = Quota::with_period(period)
            .expect("period above 0")
            .allow_burst(burst);
        FailureThrottle {
            quota,
            refill_all: period.saturating_mul(burst.get()),
            max_clients: config.failure_max_clients.max(1),
            hasher: Default::default(),
            entries: Mutex::new(HashMap::new()),
            failures: AtomicU64::new(0),
        }
    }

    fn key(&self, client_id: &str) -> u64 {
        self.hasher.hash_one(client_id)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<u64, Entry>> {
        self.entries.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Before checking credentials: `Err(wait)` while `client_id` is
    /// blocked.
    pub fn check(&self, client_id: &str) -> Result<(), Duration> {
        let now = Instant::now();
        match self.lock().get(&self.key(client_id)) {
            Some(Entry {
                blocked_until: Some(until),
                ..
            }) if *until > now => Err(*until - now),
            _ => Ok(()),
        }
    }

    /// After credentials failed for `client_id`: `Ok` while it is within
    /// its burst (answer 401), `Err(wait)` once it is blocked (answer 429).
    pub fn failed(&self, client_id: &str) -> Result<(), Duration> {
        let now = Instant::now();
        let key = self.key(client_id);
        let mut entries = self.lock();
        if self
            .failures
            .fetch_add(1, Ordering::Relaxed)
            .is_multiple_of(256)
        {
            self.drop_refilled(&mut entries, now);
        }
        if !entries.contains_key(&key) && entries.len() >= self.max_clients {
            self.make_room(&mut entries, now);
        }
        let entry = entries.entry(key).or_insert_with(|| Entry {
            limiter: RateLimiter::direct(self.quota),
            blocked_until: None,
            last_failure: now,
        });
        entry.last_failure = now;
        let result = entry.limiter.check().map_err(|not_until| {
            let wait = not_until.wait_time_from(DefaultClock::default().now());
            entry.blocked_until = Some(now + wait);
            wait
        });
        let tracked = entries.len();
        drop(entries);
        metrics::gauge!(crate::metrics::AUTH_FAILURE_CLIENTS.name).set(tracked as f64);
        result
    }

    /// Drops entries whose bucket is full again (forgetting them changes
    /// nothing).
    fn drop_refilled(&self, entries: &mut HashMap<u64, Entry>, now: Instant) {
        entries.retain(|_, e| now.duration_since(e.last_failure) < self.refill_all);
    }

    /// [`Self::drop_refilled`]; if that frees nothing, drops the eighth of
    /// the entries that failed least recently.
    fn make_room(&self, entries: &mut HashMap<u64, Entry>, now: Instant) {
        self.drop_refilled(entries, now);
        if entries.len() < self.max_clients {
            return;
        }
        let mut ages: Vec<(Instant, u64)> =
            entries.iter().map(|(k, e)| (e.last_failure, *k)).collect();
        let drop_n = (self.max_clients / 8).max(1).min(ages.len());
        ages.select_nth_unstable(drop_n - 1);
        for (_, k) in &ages[..drop_n] {
            entries.remove(k);
        }
    }

    /// Number of client ids with state (at most `failure_max_clients`).
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    /// True when no state is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(burst: u32, max: usize) -> AuthConfig {
        AuthConfig {
            failure_burst: burst,
            failure_refill_secs: 60,
            failure_max_clients: max,
            ..AuthConfig::default()
        }
    }

    #[test]
    fn a_burst_of_failures_then_blocked_and_others_unaffected() {
        let t = FailureThrottle::new(&config(3, 100));
        t.check("a").unwrap();
        for _ in 0..3 {
            t.failed("a").unwrap();
            t.check("a").unwrap();
        }
        let wait = t.failed("a").unwrap_err();
        assert!(wait > Duration::ZERO && wait <= Duration::from_secs(60));
        assert!(t.check("a").is_err(), "blocked, whatever the secret");
        t.check("b").unwrap();
        t.failed("b").unwrap();
        assert_eq!(t.len(), 2);
    }

    #[test]
    fn state_is_bounded_by_the_maximum() {
        let t = FailureThrottle::new(&config(2, 64));
        for i in 0..10_000 {
            t.failed(&format!("random-{i}")).unwrap();
            assert!(t.len() <= 64);
        }
        // The most recent ones are kept.
        t.failed("random-9999").unwrap();
        assert!(t.failed("random-9999").is_err());
    }
}
