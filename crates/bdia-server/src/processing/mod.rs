//! The processing stage: uploaded files -> enriched hits in the lake.
//!
//! ```text
//! scheduler (one task per node)                workers (<= processing.workers)
//!   claim_groups (leases, store) -> ring
//!   claim_next_file(group, lease) ───────────▶ worker::run (blocking thread:
//!   renew leases every lease_ms / 3               engine, lookups, enrichment,
//!   wake-ups: upload accepted, retry,             lake writer; then publish,
//!             worker done, poll interval          commit, delete staged file;
//!                                                 then the lease is released)
//! ```
//!
//! # Ordering and fairness
//!
//! A group is (company, visitor group). A node runs a group's file only
//! under a lease on the group ([`bdia_store::MetadataStore::claim_groups`];
//! design and failure cases in docs/SCALE-OUT.md), and the store hands out
//! only the next file of a group in acceptance order and never a second
//! one while one is `PROCESSING`
//! ([`bdia_store::MetadataStore::claim_next_file`]), so a group's files run
//! one at a time, in order, even across restarts and nodes. After each
//! file the lease is released, and leases are handed out least recently
//! held first: a group with 1,000 queued files gets one turn per round,
//! like a group with one, whichever node runs it. Different groups run in
//! parallel on at most `processing.workers` workers per node.
//!
//! Across companies: the next group is taken from a company that is not
//! behind its rows-per-second throttle, then from the company with the
//! fewest files running, then in ring order; and a file waiting for its
//! company's throttle gives its worker back for the wait
//! ([`throttle::Throttles`]), so one throttled company never holds the
//! workers that another company's files need. A file that fails is
//! `ERROR` and stops its group until an operator retries it (`POST
//! /aa/collect/v1/groups/{vgid}/retry`, `bdia admin retry`): skipping it
//! would break the group's order. A run stopped by a full disk is not a
//! failure of the file: the file is requeued (first in its group) and
//! processing pauses for [`STORAGE_FULL_PAUSE`], then goes on by itself.
//!
//! # Exactly once
//!
//! 1. The worker reads the staged file and the visitor state before it
//!    (unchanged until the file commits), and writes the file's parts to a
//!    local spool ([`bdia_lake::LakeWriter`]).
//! 2. [`bdia_lake::Lake::publish`] puts them under deterministic names
//!    (from the file id) and adds them to the company's Delta table in one
//!    commit carrying `txn(visitor group, group sequence)`; readers see
//!    only committed files. A table whose txn for the group is already at
//!    the file's sequence holds the file: nothing is committed again.
//! 3. One metadata transaction marks the file `COMPLETE` (dates, final log
//!    with out-of-order notes) and stores the visitor state delta
//!    ([`bdia_store::MetadataStore::complete_file`]).
//! 4. The staged file is deleted (unless `processing.keep_staged_files`);
//!    its key was dropped from the record in step 3, so a crash before the
//!    delete leaves an unreferenced blob that the startup sweep removes.
//!
//! At startup, [`recover`] moves a lake of commit records (the format
//! before Delta tables) into its tables and returns `PROCESSING` files to
//! `UPLOADED`. A crash anywhere thus means the file is processed again
//! from the same state: before the lake commit it writes identical objects
//! and commits them; after it, the commit finds the file's txn and only
//! the metadata commit is done. Nothing lost, nothing doubled.
//!
//! # Failures
//!
//! A step that fails returns a [`failure::Failure`]: a
//! [`failure::FailureCode`] (one per cause, each lake and store error kind
//! its own) and the reason. The file becomes `ERROR` with the code as its
//! `error_code` and `Processing failed: <reason> [<code>]` in its log; the
//! code labels `bdia_processing_errors_total`. Codes are listed in
//! `docs/API.md`.
//!
//! # Layout
//!
//! ```text
//! DATA_DIR/lake/hits/company=<company_id>/_delta_log/   the company's Delta table (see docs/LAKE.md)
//! DATA_DIR/lake/hits/company=<company_id>/report_suite=<rsid>/date=<YYYY-MM-DD>/part-<file_id>-<nnnn>.parquet
//! DATA_DIR/lake-spool/                      part files being written (unlinked temp files)
//! ```

pub mod api;
pub mod failure;
pub mod throttle;
pub mod worker;

use std::collections::{HashMap, VecDeque};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bdia_lake::{Lake, LakeConfig};
use bdia_store::blob::BlobStore;
use bdia_store::{GroupLease, GroupRef, MetadataStore};
use failure::FailureCode;
use tokio::sync::{mpsc, Notify};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::config::{LimitsConfig, ProcessingConfig};
use crate::storage::Storage;
use throttle::{Throttles, WorkerSlot};

pub(crate) fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

/// What workers share.
pub struct Shared {
    /// Metadata.
    pub store: Arc<dyn MetadataStore>,
    /// Staged files.
    pub blobs: BlobStore,
    /// The hit lake.
    pub lake: Lake,
    /// Engine size and row limits (as at upload).
    pub limits: LimitsConfig,
    /// Keep staged files after `COMPLETE`.
    pub keep_staged_files: bool,
    /// Per-company throttles.
    pub throttles: Arc<Throttles>,
    /// This node's id (leases, logs).
    pub node_id: String,
    /// No file starts before this instant (set when a run stopped on a
    /// full disk).
    pub paused_until: std::sync::Mutex<Option<std::time::Instant>>,
}

/// How long processing pauses after a run stopped on a full disk.
pub const STORAGE_FULL_PAUSE: Duration = Duration::from_secs(10);

impl Shared {
    /// True while processing is paused ([`Shared::paused_until`]).
    fn paused(&self) -> bool {
        let until = *self.paused_until.lock().unwrap_or_else(|p| p.into_inner());
        until.is_some_and(|t| std::time::Instant::now() < t)
    }

    fn pause(&self, d: Duration) {
        *self.paused_until.lock().unwrap_or_else(|p| p.into_inner()) =
            Some(std::time::Instant::now() + d);
    }
}

/// The handle the HTTP side holds: the lake and a way to wake the scheduler.
#[derive(Clone)]
pub struct Processing {
    lake: Lake,
    wake: Arc<Notify>,
}

impl std::fmt::Debug for Processing {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Processing").finish_non_exhaustive()
    }
}

impl Processing {
    /// Opens the lake on `storage` (spool in `data_dir/lake-spool`).
    pub fn open(data_dir: &Path, storage: &Storage) -> anyhow::Result<Processing> {
        let spool = data_dir.join("lake-spool");
        std::fs::create_dir_all(&spool)?;
        // Parts of a file whose processing stopped (crash, kill): that file
        // is requeued and written again from the start.
        let left = bdia_lake::clear_spool(&spool)?;
        if left > 0 {
            tracing::info!(files = left, "removed spooled parts of an interrupted run");
        }
        let config = LakeConfig {
            spool_dir: Some(spool),
            ..LakeConfig::default()
        };
        let lake = storage.lake(config)?;
        Ok(Processing {
            lake,
            wake: Arc::new(Notify::new()),
        })
    }

    /// The hit lake.
    pub fn lake(&self) -> &Lake {
        &self.lake
    }

    /// What [`Processing::wake`] notifies, for the throttles' worker slots.
    pub fn waker(&self) -> Arc<Notify> {
        self.wake.clone()
    }

    /// Tells the scheduler that something may be runnable (an upload was
    /// accepted, a group was retried).
    pub fn wake(&self) {
        self.wake.notify_one();
    }
}

/// Startup recovery: moves a lake of commit records (the format before
/// Delta tables) into its company tables, each file with its transaction
/// (visitor group, group sequence) from its record; then, on the embedded
/// database (one node), returns `PROCESSING` files to `UPLOADED` and frees
/// every lease, and on shared metadata frees only the leases `node_id`
/// held before this start (other nodes' runs are live; a dead node's
/// groups are taken over when its leases run out). Run before serving.
pub async fn recover(
    store: &dyn MetadataStore,
    lake: &Lake,
    shared_metadata: bool,
    node_id: &str,
) -> anyhow::Result<()> {
    let mut txns = HashMap::new();
    for (file_id, company) in lake.legacy_files().await? {
        if let Some(rec) = store.get_file(&company, &file_id).await? {
            if let Ok(txn) = worker::file_txn(&rec) {
                txns.insert(file_id, txn);
            }
        }
    }
    let r = lake.recover(&txns).await?;
    if !r.migrated.is_empty() || r.discarded > 0 {
        tracing::info!(
            files = r.migrated.len(),
            discarded = r.discarded,
            "moved the lake's commit records into Delta tables (hits/company=<id>/_delta_log)"
        );
    }
    if !r.unowned.is_empty() {
        tracing::warn!(
            files = r.unowned.len(),
            first = %r.unowned[0],
            "lake commit records of no known file left in _commits/; reports do not read them"
        );
    }
    if shared_metadata {
        let released = store.release_node_leases(node_id).await?;
        if released > 0 {
            tracing::info!(
                released,
                "released this node's leases of its previous start"
            );
        }
    } else {
        let requeued = store.requeue_processing().await?;
        if requeued > 0 {
            tracing::info!(requeued, "recovered processing");
        }
    }
    Ok(())
}

/// The leases this node holds: groups waiting in the ring, and groups
/// with a file running (each with the stop flag of its run).
#[derive(Default)]
struct Held {
    ring: VecDeque<GroupLease>,
    running: HashMap<GroupRef, (GroupLease, Arc<AtomicBool>)>,
}

impl Held {
    fn len(&self) -> usize {
        self.ring.len() + self.running.len()
    }

    fn all(&self) -> Vec<GroupLease> {
        let mut v: Vec<GroupLease> = self.ring.iter().cloned().collect();
        v.extend(self.running.values().map(|(l, _)| l.clone()));
        v
    }

    /// Forgets a lease this node no longer holds; a run under it stops at
    /// its next batch (whatever it still tries to commit is fenced).
    fn lose(&mut self, lease: &GroupLease) {
        self.ring.retain(|l| l != lease);
        if let Some((l, stop)) = self.running.get(&lease.group) {
            if l == lease {
                stop.store(true, Ordering::Relaxed);
            }
        }
    }
}

/// Runs the scheduler until `cancel`, then waits for in-flight files (they
/// stop at their next batch; their leases are released, so the group's
/// next holder runs them again).
///
/// The scheduler claims visitor-group leases for this node
/// ([`MetadataStore::claim_groups`]), at most twice as many as it has
/// workers, renews them every third of `processing.lease_ms`, runs one
/// file of each held group and then releases the group: the store hands
/// groups out least recently held first, so every waiting group of every
/// node gets one file per round. A lease that a renewal finds lost (the node
/// was paused or cut off past its expiry and another node took the
/// group) stops its run: nothing it still writes can land, since the
/// metadata commit is fenced by the lease epoch and the lake commit by the
/// group's Delta transaction.
pub async fn run_scheduler(
    processing: Processing,
    shared: Arc<Shared>,
    config: ProcessingConfig,
    cancel: CancellationToken,
) {
    // The user-agent rules are compiled once per process: now, next to the
    // first lookups, rather than inside the first file's first batch.
    tokio::task::spawn_blocking(bdia_model::device::warm_up);
    let poll = Duration::from_millis(config.poll_interval_ms.max(10));
    let lease_ms = config.lease_ms;
    let renew_every = Duration::from_millis((lease_ms / 3).max(10));
    let max_held = (config.workers * 2).max(1);
    let node = shared.node_id.clone();
    let (done_tx, mut done_rx) = mpsc::unbounded_channel::<GroupLease>();
    let mut held = Held::default();
    let mut last_renewal = tokio::time::Instant::now();
    let tracker = TaskTracker::new();
    loop {
        while let Ok(lease) = done_rx.try_recv() {
            finished(&mut held, lease);
        }
        if last_renewal.elapsed() >= renew_every {
            renew(&shared, &mut held, lease_ms).await;
            last_renewal = tokio::time::Instant::now();
        }
        if held.len() < max_held && !shared.paused() {
            let want = (max_held - held.len()) as u32;
            match shared.store.claim_groups(&node, want, lease_ms).await {
                Ok(claimed) => {
                    for l in claimed {
                        tracing::debug!(group = ?l.group, epoch = l.epoch, "group lease claimed");
                        metrics::counter!(crate::metrics::LEASES_CLAIMED.name).increment(1);
                        held.ring.push_back(l);
                    }
                }
                Err(e) => tracing::error!(error = %e, "claiming visitor groups failed"),
            }
        }
        while shared.throttles.can_start() && !shared.paused() {
            let Some(lease) = pick(&mut held, &shared.throttles) else {
                break;
            };
            match shared
                .store
                .claim_next_file(&lease.group, Some(&lease), now())
                .await
            {
                Ok(Some(rec)) => {
                    let stop = Arc::new(AtomicBool::new(false));
                    held.running
                        .insert(lease.group.clone(), (lease.clone(), stop.clone()));
                    let mut slot = shared.throttles.start();
                    let shared = shared.clone();
                    let done = done_tx.clone();
                    tracker.spawn(async move {
                        process_one(&shared, rec, &lease, stop, &mut slot).await;
                        drop(slot);
                        // Given back after every file: the group's next
                        // file waits for its turn behind the groups held
                        // less recently, on whichever node claims it.
                        release(&shared, &lease).await;
                        let _ = done.send(lease);
                    });
                }
                Ok(None) => release(&shared, &lease).await,
                Err(bdia_store::StoreError::Fenced(e)) => {
                    tracing::warn!(group = ?lease.group, error = %e, "visitor group lease lost");
                }
                Err(e) => {
                    tracing::error!(error = %e, "claiming a file failed");
                    held.ring.push_back(lease);
                    break;
                }
            }
        }
        metrics::gauge!(crate::metrics::PROCESSING_GROUPS_WAITING.name).set(held.ring.len() as f64);
        metrics::gauge!(crate::metrics::PROCESSING_FILES_IN_PROGRESS.name)
            .set(held.running.len() as f64);
        metrics::gauge!(crate::metrics::LEASES_HELD.name).set(held.len() as f64);
        let next_renewal = renew_every.saturating_sub(last_renewal.elapsed());
        tokio::select! {
            _ = cancel.cancelled() => break,
            Some(lease) = done_rx.recv() => finished(&mut held, lease),
            _ = processing.wake.notified() => {}
            _ = tokio::time::sleep(poll.min(next_renewal)) => {}
        }
    }
    for (_, stop) in held.running.values() {
        stop.store(true, Ordering::Relaxed);
    }
    tracker.close();
    tracker.wait().await;
    while let Ok(lease) = done_rx.try_recv() {
        finished(&mut held, lease);
    }
    // Given back, so another node (or this one's next start) takes the
    // groups at once instead of after the expiry.
    for lease in held.all() {
        release(&shared, &lease).await;
    }
}

/// A run under `lease` ended (its lease was released).
fn finished(held: &mut Held, lease: GroupLease) {
    if held
        .running
        .get(&lease.group)
        .is_some_and(|(l, _)| *l == lease)
    {
        held.running.remove(&lease.group);
    }
}

/// Renews every lease held; forgets (and stops the runs of) the lost ones.
async fn renew(shared: &Shared, held: &mut Held, lease_ms: u64) {
    let all = held.all();
    if all.is_empty() {
        return;
    }
    match shared.store.renew_leases(&all, lease_ms).await {
        Ok(kept) => {
            for (lease, ok) in all.iter().zip(kept) {
                if !ok {
                    tracing::warn!(group = ?lease.group, epoch = lease.epoch, "visitor group lease lost to another node; its run stops");
                    metrics::counter!(crate::metrics::LEASES_LOST.name).increment(1);
                    held.lose(lease);
                }
            }
        }
        // Kept for now: fencing makes a lease that ran out meanwhile
        // harmless, and the next renewal tells.
        Err(e) => tracing::error!(error = %e, "renewing visitor group leases failed"),
    }
}

/// Gives a lease up; failures are logged (the lease then runs out).
async fn release(shared: &Shared, lease: &GroupLease) {
    if let Err(e) = shared.store.release_lease(lease).await {
        tracing::warn!(group = ?lease.group, error = %e, "releasing a visitor group lease failed");
    }
}

/// Takes the next held group to run from the ring: groups of companies
/// that are not behind their throttle first, then groups of the companies
/// with the fewest files running, then ring order (oldest waiting first).
/// So one company with many groups, or one held back by its throttle, does
/// not keep the others waiting.
fn pick(held: &mut Held, throttles: &Throttles) -> Option<GroupLease> {
    let mut per_company: HashMap<&str, usize> = HashMap::new();
    for g in held.running.keys() {
        *per_company.entry(g.company_id.as_str()).or_default() += 1;
    }
    let mut behind: HashMap<&str, bool> = HashMap::new();
    let best = held
        .ring
        .iter()
        .enumerate()
        .min_by_key(|(i, l)| {
            let c = l.group.company_id.as_str();
            let late = *behind.entry(c).or_insert_with(|| throttles.behind(c));
            (late, per_company.get(c).copied().unwrap_or(0), *i)
        })?
        .0;
    held.ring.remove(best)
}

async fn process_one(
    shared: &Shared,
    rec: bdia_store::FileRecord,
    lease: &GroupLease,
    stop: Arc<AtomicBool>,
    slot: &mut WorkerSlot,
) {
    use tracing::Instrument;
    let span = tracing::info_span!("process_file", file_id = %rec.file_id, visitor_group = ?rec.visitor_group_id, epoch = lease.epoch);
    match worker::run(shared, &rec, lease, stop.clone(), slot)
        .instrument(span)
        .await
    {
        Ok(worker::Outcome::Complete { rows, timings }) => {
            metrics::counter!(crate::metrics::FILES_PROCESSED.name, "outcome" => "complete")
                .increment(1);
            for (stage, d) in [
                ("encode", timings.encode),
                ("publish", timings.publish),
                ("commit", timings.commit),
            ] {
                metrics::histogram!(crate::metrics::PROCESSING_STAGE_SECONDS.name, "stage" => stage)
                    .record(d.as_secs_f64());
            }
            tracing::info!(
                file_id = %rec.file_id,
                visitor_group = ?rec.visitor_group_id,
                rows,
                encode_ms = timings.encode.as_millis() as u64,
                publish_ms = timings.publish.as_millis() as u64,
                commit_ms = timings.commit.as_millis() as u64,
                "file complete"
            );
        }
        Ok(worker::Outcome::Cancelled) => {
            tracing::info!(file_id = %rec.file_id, "processing stopped (shutdown or lease lost); the group's next holder runs the file again");
        }
        Err(f) if f.code == FailureCode::StoreFenced => {
            metrics::counter!(crate::metrics::PROCESSING_ERRORS.name, "code" => f.code.as_str())
                .increment(1);
            tracing::warn!(file_id = %rec.file_id, reason = %f.reason, "run dropped: the visitor group's lease was lost to another node, which processes the file");
        }
        Err(f) if f.storage_full => {
            // Not the file's fault: it runs again, first in its group, once
            // the pause is over (its output is the same, so a partial
            // publication is simply overwritten).
            metrics::counter!(crate::metrics::PROCESSING_ERRORS.name, "code" => "storage_full")
                .increment(1);
            shared.pause(STORAGE_FULL_PAUSE);
            tracing::warn!(file_id = %rec.file_id, reason = %f.reason, pause_secs = STORAGE_FULL_PAUSE.as_secs(), "disk full: file requeued, processing paused");
            // The disk being full, the requeue itself may fail: it is tried
            // again until it is written (or the server stops, and the start
            // requeues every PROCESSING file anyway).
            while let Err(e) = shared.store.requeue_file(&rec.file_id, Some(lease)).await {
                tracing::warn!(file_id = %rec.file_id, error = %e, "requeueing the file failed; retrying");
                if stop.load(Ordering::Relaxed) || matches!(e, bdia_store::StoreError::Fenced(_)) {
                    break;
                }
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        }
        Err(f) => {
            metrics::counter!(crate::metrics::FILES_PROCESSED.name, "outcome" => "error")
                .increment(1);
            metrics::counter!(crate::metrics::PROCESSING_ERRORS.name, "code" => f.code.as_str())
                .increment(1);
            tracing::error!(file_id = %rec.file_id, visitor_group = ?rec.visitor_group_id, code = f.code.as_str(), reason = %f.reason, "file failed; its group stops until retried");
            if let Err(e) = shared
                .store
                .fail_file(&rec.file_id, &f.note(), f.code.as_str(), now(), Some(lease))
                .await
            {
                tracing::error!(file_id = %rec.file_id, error = %e, "recording the failure failed");
            }
        }
    }
}
