//! Bounded concurrency of expensive work, per company and in all.
//!
//! An engine pass (upload or validate) holds a blocking thread from its
//! first body byte to its end, and a report scans the lake. [`Slots`]
//! bounds how many of each run at once: at most `per_company` for one
//! company and `total` for the whole server, so one tenant cannot take
//! every thread, and the server as a whole cannot be driven past what it
//! can serve. A slot is an RAII [`Slot`]: dropping it (the work ended,
//! failed or was cancelled) frees it.
//!
//! Passes take a slot only when the body's first bytes arrive (a request
//! that sends headers and stalls holds no thread and no slot) and never
//! wait: a full company gets 429, a full server 503, both with
//! `Retry-After`. Reports wait for a slot within their time limit.
//!
//! State is one semaphore per company that has work in flight; entries
//! with nothing in flight are dropped as the map grows.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::error::ApiError;

/// Per-company entries kept before idle ones are dropped.
const PRUNE_AT: usize = 1_024;

/// Slots of one kind of work.
#[derive(Debug)]
pub struct Slots {
    /// What the slots are for, in answers ("upload or validate passes").
    what: &'static str,
    total_limit: usize,
    per_company: usize,
    total: Arc<Semaphore>,
    companies: Mutex<HashMap<String, Arc<Semaphore>>>,
}

/// One unit of work in flight; frees its slot when dropped.
#[derive(Debug)]
pub struct Slot {
    _company: OwnedSemaphorePermit,
    _total: OwnedSemaphorePermit,
}

/// Why no slot was given.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Full {
    /// The company has `per_company` in flight.
    Company,
    /// The server has `total` in flight.
    Server,
}

impl Slots {
    /// `total` slots in all, at most `per_company` of them for one company.
    pub fn new(what: &'static str, total: usize, per_company: usize) -> Slots {
        let total = total.max(1);
        Slots {
            what,
            total_limit: total,
            per_company: per_company.clamp(1, total),
            total: Arc::new(Semaphore::new(total)),
            companies: Mutex::new(HashMap::new()),
        }
    }

    fn company(&self, company: &str) -> Arc<Semaphore> {
        let mut map = self.companies.lock().unwrap_or_else(|p| p.into_inner());
        if map.len() >= PRUNE_AT && !map.contains_key(company) {
            // An entry nobody holds a permit of (or waits on) is idle.
            let full = self.per_company;
            map.retain(|_, s| Arc::strong_count(s) > 1 || s.available_permits() < full);
        }
        map.entry(company.to_string())
            .or_insert_with(|| Arc::new(Semaphore::new(self.per_company)))
            .clone()
    }

    /// A slot now, or why not.
    pub fn try_take(&self, company: &str) -> Result<Slot, Full> {
        let mine = self
            .company(company)
            .try_acquire_owned()
            .map_err(|_| Full::Company)?;
        let all = self
            .total
            .clone()
            .try_acquire_owned()
            .map_err(|_| Full::Server)?;
        Ok(Slot {
            _company: mine,
            _total: all,
        })
    }

    /// A slot, waiting for one at most `wait`.
    pub async fn take_within(&self, company: &str, wait: Duration) -> Result<Slot, Full> {
        let deadline = tokio::time::Instant::now() + wait;
        let mine = tokio::time::timeout_at(deadline, self.company(company).acquire_owned())
            .await
            .map_err(|_| Full::Company)?
            .map_err(|_| Full::Company)?;
        let all = tokio::time::timeout_at(deadline, self.total.clone().acquire_owned())
            .await
            .map_err(|_| Full::Server)?
            .map_err(|_| Full::Server)?;
        Ok(Slot {
            _company: mine,
            _total: all,
        })
    }

    /// Slots in use in the whole server.
    pub fn in_use(&self) -> usize {
        self.total_limit - self.total.available_permits()
    }

    /// The server-wide limit.
    pub fn limit(&self) -> usize {
        self.total_limit
    }

    /// The per-company limit.
    pub fn per_company_limit(&self) -> usize {
        self.per_company
    }

    /// The answer for `full`: 429 for a company at its limit, 503 for a
    /// server at its limit; both say which limit and when to come back.
    pub fn refusal(&self, full: Full, retry_after_secs: u64) -> ApiError {
        match full {
            Full::Company => ApiError::Busy {
                message: format!(
                    "Too many {} in progress for this company (at most {} at once); retry after {retry_after_secs} s",
                    self.what, self.per_company
                ),
                retry_after_secs,
                server_wide: false,
            },
            Full::Server => ApiError::Busy {
                message: format!(
                    "The server is busy: {} {} in progress (its limit); retry after {retry_after_secs} s",
                    self.total_limit, self.what
                ),
                retry_after_secs,
                server_wide: true,
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn per_company_then_server_limits_and_release_on_drop() {
        let s = Slots::new("passes", 3, 2);
        let a1 = s.try_take("a").unwrap();
        let _a2 = s.try_take("a").unwrap();
        assert_eq!(s.try_take("a").unwrap_err(), Full::Company);
        let _b1 = s.try_take("b").unwrap();
        assert_eq!(s.in_use(), 3);
        assert_eq!(s.try_take("c").unwrap_err(), Full::Server);
        drop(a1);
        assert_eq!(s.in_use(), 2);
        let _c1 = s.try_take("c").unwrap();
        assert_eq!(s.refusal(Full::Company, 1).status(), 429);
        assert_eq!(s.refusal(Full::Server, 1).status(), 503);
    }

    #[test]
    fn idle_companies_are_pruned() {
        let s = Slots::new("passes", 4, 1);
        for i in 0..(PRUNE_AT + 10) {
            drop(s.try_take(&format!("c{i}")).unwrap());
        }
        let held = s.try_take("held").unwrap();
        for i in 0..(PRUNE_AT + 10) {
            drop(s.try_take(&format!("d{i}")).unwrap());
        }
        assert!(s.companies.lock().unwrap().len() <= PRUNE_AT + 1);
        drop(held);
    }

    #[tokio::test]
    async fn waiting_for_a_slot_is_bounded() {
        let s = Slots::new("reports", 1, 1);
        let held = s.try_take("a").unwrap();
        let t = tokio::time::Instant::now();
        let err = s
            .take_within("b", Duration::from_millis(100))
            .await
            .unwrap_err();
        assert_eq!(err, Full::Server);
        assert!(t.elapsed() >= Duration::from_millis(100));
        drop(held);
        s.take_within("b", Duration::from_millis(100))
            .await
            .unwrap();
    }
}
