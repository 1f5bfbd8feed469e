//! The per-company processing throttle (spec section 5): rows per second,
//! shared by every group of the company, slowing processing down and never
//! dropping anything; and the worker slots it must not hold while waiting.
//!
//! Each company has one reservation clock (`tat`, the time at which the
//! rows reserved so far have been "paid for"). Taking `n` rows reserves
//! `n / rate` seconds starting at `max(tat, now)` and waits until that
//! start: over any interval the company's workers together pass at most
//! `rate x interval` rows plus one batch. The map holds one small entry per
//! company that has processed a file with a limit (companies are few and
//! made by an operator).
//!
//! Fairness: `processing.workers` bounds the files *working* at once, not
//! the files in flight. A file holds a worker slot ([`WorkerSlot`]) while
//! it is read, enriched and encoded, and gives it back once that is done:
//! its publication and metadata commit, mostly waits on storage, overlap
//! the next file's work. A file that waits for its company's throttle gives
//! its worker slot back for the wait ([`Throttles::take`]) and wakes the
//! scheduler, which may then start another file (of another company: it
//! prefers companies not behind their throttle, [`Throttles::behind`]);
//! when the wait ends the file takes a slot again, waiting for one if
//! needed. Files in flight are bounded by
//! `workers x` [`IN_FLIGHT_PER_WORKER`], so a throttled company cannot
//! pile up threads either.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::Notify;

/// Files in flight (working or waiting for their throttle) per worker.
pub const IN_FLIGHT_PER_WORKER: usize = 4;

/// A wait shorter than this keeps its worker slot.
const YIELD_AFTER: Duration = Duration::from_millis(200);

/// Files started, files waiting for their throttle and files finishing
/// (publication and commit, their slot given back).
#[derive(Debug, Default)]
struct Counts {
    started: usize,
    waiting: usize,
    finishing: usize,
}

impl Counts {
    /// Files holding a worker slot.
    fn working(&self) -> usize {
        self.started - self.waiting - self.finishing
    }
}

/// A started file's hold on a worker slot ([`Throttles::start`]). The
/// slot is given back by [`WorkerSlot::release`] once the file no longer
/// needs a core, or when it is dropped; the file counts as in flight until
/// it is dropped.
#[derive(Debug)]
pub struct WorkerSlot {
    throttles: Arc<Throttles>,
    released: bool,
}

impl WorkerSlot {
    /// Gives the slot back early: the file's CPU work is done, what is left
    /// (publication, metadata commit) waits on storage. The scheduler is
    /// woken to start another file in it.
    pub fn release(&mut self) {
        if std::mem::replace(&mut self.released, true) {
            return;
        }
        self.throttles.counts().finishing += 1;
        self.throttles.freed.notify_all();
        self.throttles.wake.notify_one();
    }
}

impl Drop for WorkerSlot {
    fn drop(&mut self) {
        let mut c = self.throttles.counts();
        c.started = c.started.saturating_sub(1);
        if self.released {
            c.finishing = c.finishing.saturating_sub(1);
        }
        drop(c);
        self.throttles.freed.notify_all();
    }
}

/// The throttles of every company, and the worker slots.
#[derive(Debug)]
pub struct Throttles {
    clocks: Mutex<HashMap<String, Instant>>,
    workers: usize,
    counts: Mutex<Counts>,
    freed: Condvar,
    /// Wakes the scheduler when a slot is given back.
    wake: Arc<Notify>,
    /// The live nodes a company's rows-per-second are split among.
    share: crate::limiter::NodeShare,
}

/// What one [`Throttles::take`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Taken {
    /// How long the caller waited.
    pub waited: Duration,
}

impl Throttles {
    /// Throttles for `workers` working files; `wake` is notified when a
    /// waiting file gives its slot back; each company's rate is split
    /// among the live nodes `share` counts.
    pub fn new(
        workers: usize,
        wake: Arc<Notify>,
        share: crate::limiter::NodeShare,
    ) -> Arc<Throttles> {
        Arc::new(Throttles {
            clocks: Mutex::new(HashMap::new()),
            workers: workers.max(1),
            counts: Mutex::new(Counts::default()),
            freed: Condvar::new(),
            wake,
            share,
        })
    }

    fn counts(&self) -> std::sync::MutexGuard<'_, Counts> {
        self.counts.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The scheduler may start a file: a worker slot is free and fewer
    /// than `workers x IN_FLIGHT_PER_WORKER` files are in flight.
    pub fn can_start(&self) -> bool {
        let c = self.counts();
        c.working() < self.workers && c.started < self.workers * IN_FLIGHT_PER_WORKER
    }

    /// A file starts (the scheduler claimed it): it holds a worker slot
    /// until the returned guard gives it back, and is in flight until the
    /// guard is dropped (whatever the file's outcome).
    pub fn start(self: &Arc<Self>) -> WorkerSlot {
        self.counts().started += 1;
        WorkerSlot {
            throttles: self.clone(),
            released: false,
        }
    }

    /// Files working now (not waiting for their throttle, not finishing).
    pub fn working(&self) -> usize {
        self.counts().working()
    }

    /// True when `company`'s reservation clock is more than a second
    /// ahead: its next rows would wait.
    pub fn behind(&self, company: &str) -> bool {
        let Ok(clocks) = self.clocks.lock() else {
            return false;
        };
        clocks
            .get(company)
            .is_some_and(|tat| *tat > Instant::now() + Duration::from_secs(1))
    }

    /// Takes `rows` rows of `company`'s budget at `rows_per_second`
    /// (`None`: off, returns at once), blocking the calling (blocking)
    /// thread until they may pass. A long wait gives the caller's worker
    /// slot back and takes one again after it. Stops waiting early when
    /// `cancel` is set.
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
        // Each of the live nodes holds the company to its share.
        let rate = self.share.split(rate);
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
        let yields = waited >= YIELD_AFTER;
        if yields {
            self.counts().waiting += 1;
            self.freed.notify_all();
            self.wake.notify_one();
        }
        while Instant::now() < start && !cancel.load(Ordering::Relaxed) {
            let left = start.saturating_duration_since(Instant::now());
            std::thread::sleep(left.min(Duration::from_millis(100)));
        }
        if yields {
            self.resume(cancel);
        }
        Taken { waited }
    }

    /// Takes a worker slot again after a throttle wait, waiting for one.
    fn resume(&self, cancel: &AtomicBool) {
        let mut c = self.counts();
        while c.working() >= self.workers && !cancel.load(Ordering::Relaxed) {
            c = self
                .freed
                .wait_timeout(c, Duration::from_millis(100))
                .map(|(g, _)| g)
                .unwrap_or_else(|p| p.into_inner().0);
        }
        c.waiting -= 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn throttles(workers: usize) -> Arc<Throttles> {
        Throttles::new(workers, Arc::new(Notify::new()), Default::default())
    }

    #[test]
    fn off_never_waits_and_a_limit_reserves_time_in_order() {
        let t = throttles(2);
        let cancel = AtomicBool::new(false);
        assert_eq!(t.take("a", None, 1_000_000, &cancel), Taken::default());
        // The first batch passes at once; the reservation clock moves by
        // rows / rate, so a second company is unaffected.
        assert_eq!(t.take("a", Some(1_000), 10, &cancel).waited, Duration::ZERO);
        let before = *t.clocks.lock().unwrap().get("a").unwrap();
        cancel.store(true, Ordering::Relaxed);
        let _a = t.start();
        let second = t.take("a", Some(1_000), 500, &cancel);
        assert!(
            second.waited > Duration::ZERO,
            "the second batch waits its turn"
        );
        let after = *t.clocks.lock().unwrap().get("a").unwrap();
        assert_eq!(after.duration_since(before), Duration::from_millis(500));
        assert_eq!(t.take("b", Some(1_000), 10, &cancel).waited, Duration::ZERO);
        assert_eq!(t.working(), 1, "the slot was taken back after the wait");
    }

    #[test]
    fn a_waiting_file_gives_its_slot_back_for_the_wait() {
        let t = throttles(1);
        let cancel = Arc::new(AtomicBool::new(false));
        // Company c is 2 s behind after taking 2 rows at 1 row/s.
        t.take("c", Some(1), 2, &cancel);
        assert!(t.behind("c"));
        assert!(!t.behind("d"));
        // File X of company a works, and is put 300 ms behind.
        let _x = t.start();
        assert!(!t.can_start(), "one worker, one file working");
        t.take("a", Some(10), 3, &cancel);
        let (t2, c2) = (t.clone(), cancel.clone());
        let x = std::thread::spawn(move || t2.take("a", Some(10), 1, &c2));
        let deadline = Instant::now() + Duration::from_secs(5);
        while !t.can_start() {
            assert!(Instant::now() < deadline, "the slot was not given back");
            std::thread::sleep(Duration::from_millis(5));
        }
        assert_eq!(t.working(), 0);
        // File Y starts in the freed slot; X's wait ends, but X resumes
        // only once Y finishes.
        let y = t.start();
        assert!(!t.can_start());
        std::thread::sleep(Duration::from_millis(600));
        assert!(!x.is_finished(), "X resumed while Y held the only slot");
        drop(y);
        assert!(x.join().unwrap().waited >= YIELD_AFTER);
        assert_eq!(t.working(), 1);
    }

    #[test]
    fn files_in_flight_are_bounded() {
        let t = throttles(1);
        let mut slots = Vec::new();
        for _ in 0..IN_FLIGHT_PER_WORKER {
            assert!(t.can_start());
            slots.push(t.start());
            // As if it were waiting for its throttle.
            t.counts().waiting += 1;
        }
        assert!(!t.can_start(), "in flight bounded even with free slots");
    }
    #[test]
    fn a_finishing_file_gives_its_slot_back_and_stays_in_flight() {
        let wake = Arc::new(Notify::new());
        let t = Throttles::new(1, wake.clone(), Default::default());
        let mut x = t.start();
        assert!(!t.can_start(), "one worker, one file working");
        x.release();
        assert_eq!(
            t.working(),
            0,
            "a file publishing and committing is not working"
        );
        assert!(t.can_start(), "its slot is free for the next file");
        // The scheduler was woken to use it (the permit waits for it).
        let woken = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .unwrap()
            .block_on(async {
                tokio::time::timeout(Duration::from_secs(5), wake.notified()).await
            });
        assert!(woken.is_ok(), "the scheduler was not woken");
        x.release();
        let y = t.start();
        assert_eq!(t.working(), 1, "a second release counts once");
        assert_eq!(
            t.counts().started,
            2,
            "the finishing file is still in flight"
        );
        drop(x);
        assert_eq!(t.counts().started, 1);
        assert_eq!(t.working(), 1);
        drop(y);
        assert_eq!(t.working(), 0);
        assert!(t.can_start());
        // Dropped without a release (a failed file): the slot comes back too.
        let z = t.start();
        drop(z);
        let c = t.counts();
        assert_eq!((c.started, c.waiting, c.finishing), (0, 0, 0));
    }
}
