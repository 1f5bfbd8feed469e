//! Per-company rate limits, with `governor`: uploads (spec 5), validate
//! passes and reports each have their own [`CompanyLimiter`].
//!
//! One token-bucket limiter per company, made on first use with the
//! company's setting (or the limiter's default). Validate uses the
//! company's upload setting with a bucket of its own (a validation does
//! not spend an upload); reports use the server's report rate. State is bounded: entries
//! idle for [`IDLE_EVICT`] are dropped (a limiter idle that long is full
//! again, so dropping it changes nothing), and keys are authenticated
//! company ids only, never caller-chosen strings.
//!
//! Several nodes sharing one metadata store split every limit evenly
//! ([`NodeShare`]): each node enforces `ceil(limit / live nodes)` (rate and
//! burst alike), so a company's total across the nodes stays within its
//! limit (plus rounding) without a database round trip per request. The
//! live node count comes from the nodes' heartbeats
//! ([`bdia_store::MetadataStore::node_heartbeat`]); when it changes, the
//! buckets are made again with the new share.

use std::collections::HashMap;
use std::num::NonZeroU32;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use bdia_store::RateLimitSetting;
use governor::clock::{Clock, DefaultClock};
use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};

use crate::config::RateLimitConfig;
use crate::error::ApiError;

/// The live node count this node splits its limits by (1 on its own).
#[derive(Debug, Clone)]
pub struct NodeShare(std::sync::Arc<std::sync::atomic::AtomicU32>);

impl Default for NodeShare {
    fn default() -> Self {
        NodeShare(std::sync::Arc::new(std::sync::atomic::AtomicU32::new(1)))
    }
}

impl NodeShare {
    /// Live nodes (at least 1).
    pub fn nodes(&self) -> u32 {
        self.0.load(std::sync::atomic::Ordering::Relaxed).max(1)
    }

    /// Records the live node count.
    pub fn set_nodes(&self, n: u32) {
        self.0.store(n.max(1), std::sync::atomic::Ordering::Relaxed);
    }

    /// This node's share of `total`: `ceil(total / nodes)`, at least 1.
    pub fn split(&self, total: u64) -> u64 {
        total.div_ceil(u64::from(self.nodes())).max(1)
    }
}

/// How long an unused limiter is kept.
pub const IDLE_EVICT: Duration = Duration::from_secs(600);

struct Entry {
    setting: RateLimitSetting,
    nodes: u32,
    limiter: Option<DefaultDirectRateLimiter>,
    last_used: Instant,
}

/// One kind of rate limit, for all companies.
pub struct CompanyLimiter {
    default: RateLimitConfig,
    share: NodeShare,
    entries: Mutex<HashMap<String, Entry>>,
    checks: std::sync::atomic::AtomicU64,
}

impl std::fmt::Debug for CompanyLimiter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CompanyLimiter")
            .field("default", &self.default)
            .finish_non_exhaustive()
    }
}

fn quota(per_second: u32, burst: u32) -> Option<Quota> {
    Some(Quota::per_second(NonZeroU32::new(per_second)?).allow_burst(NonZeroU32::new(burst)?))
}

impl CompanyLimiter {
    /// With the server default.
    pub fn new(default: RateLimitConfig) -> CompanyLimiter {
        CompanyLimiter {
            default,
            share: NodeShare::default(),
            entries: Mutex::new(HashMap::new()),
            checks: Default::default(),
        }
    }

    /// Splits the limits with the nodes counted by `share`.
    pub fn with_share(mut self, share: NodeShare) -> CompanyLimiter {
        self.share = share;
        self
    }

    fn make(&self, setting: RateLimitSetting) -> Option<DefaultDirectRateLimiter> {
        let split = |v: u32| self.share.split(u64::from(v)).min(u64::from(u32::MAX)) as u32;
        let q = match setting {
            RateLimitSetting::Off => None,
            RateLimitSetting::Default if !self.default.enabled => None,
            RateLimitSetting::Default => {
                quota(split(self.default.per_second), split(self.default.burst))
            }
            RateLimitSetting::Custom { per_second, burst } => {
                quota(split(per_second), split(burst))
            }
        }?;
        Some(RateLimiter::direct(q))
    }

    /// Takes one upload from `company`'s bucket, or says how long to wait.
    pub fn check(&self, company: &str, setting: RateLimitSetting) -> Result<(), Duration> {
        let now = Instant::now();
        let mut entries = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        if self
            .checks
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed)
            .is_multiple_of(256)
        {
            entries.retain(|_, e| now.duration_since(e.last_used) < IDLE_EVICT);
        }
        let nodes = self.share.nodes();
        let entry = entries.entry(company.to_string()).or_insert_with(|| Entry {
            setting,
            nodes,
            limiter: self.make(setting),
            last_used: now,
        });
        if entry.setting != setting || entry.nodes != nodes {
            entry.setting = setting;
            entry.nodes = nodes;
            entry.limiter = self.make(setting);
        }
        entry.last_used = now;
        match &entry.limiter {
            None => Ok(()),
            Some(l) => l
                .check()
                .map_err(|not_until| not_until.wait_time_from(DefaultClock::default().now())),
        }
    }

    /// [`CompanyLimiter::check`] as the answer to send: 429 with
    /// `Retry-After` when over the limit.
    pub fn admit(&self, company: &str, setting: RateLimitSetting) -> Result<(), ApiError> {
        self.check(company, setting)
            .map_err(|wait| ApiError::RateLimited {
                retry_after_secs: wait.as_secs_f64().ceil() as u64,
            })
    }

    /// Number of companies with limiter state (bounded by eviction).
    pub fn len(&self) -> usize {
        self.entries.lock().map(|e| e.len()).unwrap_or(0)
    }

    /// True when no state is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_are_split_among_live_nodes() {
        let share = NodeShare::default();
        let l = CompanyLimiter::new(RateLimitConfig {
            enabled: true,
            per_second: 1,
            burst: 6,
        })
        .with_share(share.clone());
        share.set_nodes(3);
        for _ in 0..2 {
            l.check("a", RateLimitSetting::Default).unwrap();
        }
        assert!(
            l.check("a", RateLimitSetting::Default).is_err(),
            "6 / 3 nodes = 2"
        );
        assert_eq!(share.split(7), 3, "rounded up");
        assert_eq!(share.split(1), 1, "never 0");
        // Back to one node: the bucket is made again with the whole burst.
        share.set_nodes(1);
        for _ in 0..6 {
            l.check("a", RateLimitSetting::Default).unwrap();
        }
    }

    #[test]
    fn burst_then_refuse_and_off() {
        let l = CompanyLimiter::new(RateLimitConfig {
            enabled: true,
            per_second: 1,
            burst: 3,
        });
        for _ in 0..3 {
            l.check("a", RateLimitSetting::Default).unwrap();
        }
        let wait = l.check("a", RateLimitSetting::Default).unwrap_err();
        assert!(wait <= Duration::from_secs(1));
        // Another company has its own bucket.
        l.check("b", RateLimitSetting::Default).unwrap();
        // Switched off for a company.
        for _ in 0..10 {
            l.check("a", RateLimitSetting::Off).unwrap();
        }
        assert_eq!(l.len(), 2);
    }
}
