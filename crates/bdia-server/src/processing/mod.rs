//! The processing stage: uploaded files -> enriched hits in the lake.
//!
//! ```text
//! scheduler (one task)                         workers (<= processing.workers)
//!   runnable groups (store) -> round-robin ring
//!   claim_next_file(group) ──────────────────▶ worker::run (blocking thread:
//!   wake-ups: upload accepted, retry,             engine, lookups, enrichment,
//!             worker done, poll interval          lake writer; then publish,
//!                                                 commit, delete staged file)
//! ```
//!
//! # Ordering and fairness
//!
//! A group is (company, visitor group). The store hands out only the next
//! file of a group in acceptance order and never a second one while one is
//! `PROCESSING` ([`bdia_store::MetadataStore::claim_next_file`]), so a group's
//! files run one at a time, in order, even across restarts. The scheduler
//! keeps a ring of runnable groups and takes one file from the group at its
//! front; a group that still has files goes back to the end of the ring
//! when its file is done. A group with 1,000 queued files therefore gets
//! one turn per round, like a group with one. Different groups run in
//! parallel on at most `processing.workers` workers.
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

use std::collections::{HashMap, HashSet, VecDeque};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bdia_lake::{Lake, LakeConfig};
use bdia_store::blob::BlobStore;
use bdia_store::{GroupRef, MetadataStore};
use tokio::sync::{mpsc, Notify};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::config::{LimitsConfig, ProcessingConfig};
use crate::storage::Storage;
use throttle::Throttles;

/// Most groups the scheduler fetches per refresh.
const REFRESH_GROUPS: u32 = 10_000;

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
/// (visitor group, group sequence) from its record, then returns
/// `PROCESSING` files to `UPLOADED`. Run before serving.
pub async fn recover(store: &dyn MetadataStore, lake: &Lake) -> anyhow::Result<()> {
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
    let requeued = store.requeue_processing().await?;
    if requeued > 0 {
        tracing::info!(requeued, "recovered processing");
    }
    Ok(())
}

/// Runs the scheduler until `cancel`, then waits for in-flight files (they
/// stop at their next batch and are requeued at the next start).
pub async fn run_scheduler(
    processing: Processing,
    shared: Arc<Shared>,
    config: ProcessingConfig,
    cancel: CancellationToken,
) {
    let poll = Duration::from_millis(config.poll_interval_ms.max(10));
    let (done_tx, mut done_rx) = mpsc::unbounded_channel::<GroupRef>();
    let mut ring: VecDeque<GroupRef> = VecDeque::new();
    let mut queued: HashSet<GroupRef> = HashSet::new();
    let mut running: HashSet<GroupRef> = HashSet::new();
    let tracker = TaskTracker::new();
    let stop = Arc::new(AtomicBool::new(false));
    loop {
        while let Ok(g) = done_rx.try_recv() {
            running.remove(&g);
        }
        match shared.store.runnable_groups(REFRESH_GROUPS).await {
            Ok(groups) => {
                for g in groups {
                    if !running.contains(&g) && queued.insert(g.clone()) {
                        ring.push_back(g);
                    }
                }
            }
            Err(e) => tracing::error!(error = %e, "listing runnable groups failed"),
        }
        while shared.throttles.can_start() && !shared.paused() {
            let Some(g) = pick(&mut ring, &running, &shared.throttles) else {
                break;
            };
            queued.remove(&g);
            match shared.store.claim_next_file(&g, now()).await {
                Ok(Some(rec)) => {
                    running.insert(g.clone());
                    shared.throttles.started();
                    let shared = shared.clone();
                    let done = done_tx.clone();
                    let stop = stop.clone();
                    tracker.spawn(async move {
                        process_one(&shared, rec, stop).await;
                        shared.throttles.finished();
                        let _ = done.send(g);
                    });
                }
                Ok(None) => {}
                Err(e) => {
                    tracing::error!(error = %e, "claiming a file failed");
                    break;
                }
            }
        }
        metrics::gauge!(crate::metrics::PROCESSING_GROUPS_WAITING.name).set(ring.len() as f64);
        metrics::gauge!(crate::metrics::PROCESSING_FILES_IN_PROGRESS.name)
            .set(running.len() as f64);
        tokio::select! {
            _ = cancel.cancelled() => break,
            Some(g) = done_rx.recv() => { running.remove(&g); }
            _ = processing.wake.notified() => {}
            _ = tokio::time::sleep(poll) => {}
        }
    }
    stop.store(true, Ordering::Relaxed);
    tracker.close();
    tracker.wait().await;
}

/// Takes the next group to run from `ring`: groups of companies that are
/// not behind their throttle first, then groups of the companies with the
/// fewest files running, then ring order (oldest waiting first). So one
/// company with many groups, or one held back by its throttle, does not
/// keep the others waiting.
fn pick(
    ring: &mut VecDeque<GroupRef>,
    running: &HashSet<GroupRef>,
    throttles: &Throttles,
) -> Option<GroupRef> {
    let mut per_company: HashMap<&str, usize> = HashMap::new();
    for g in running {
        *per_company.entry(g.company_id.as_str()).or_default() += 1;
    }
    let mut behind: HashMap<&str, bool> = HashMap::new();
    let best = ring
        .iter()
        .enumerate()
        .min_by_key(|(i, g)| {
            let c = g.company_id.as_str();
            let late = *behind.entry(c).or_insert_with(|| throttles.behind(c));
            (late, per_company.get(c).copied().unwrap_or(0), *i)
        })?
        .0;
    ring.remove(best)
}

async fn process_one(shared: &Shared, rec: bdia_store::FileRecord, stop: Arc<AtomicBool>) {
    use tracing::Instrument;
    let span = tracing::info_span!("process_file", file_id = %rec.file_id, visitor_group = ?rec.visitor_group_id);
    match worker::run(shared, &rec, stop.clone())
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
            tracing::info!(file_id = %rec.file_id, "processing stopped by shutdown; requeued at next start");
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
            while let Err(e) = shared.store.requeue_file(&rec.file_id).await {
                tracing::warn!(file_id = %rec.file_id, error = %e, "requeueing the file failed; retrying");
                if stop.load(Ordering::Relaxed) {
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
                .fail_file(&rec.file_id, &f.note(), f.code.as_str(), now())
                .await
            {
                tracing::error!(file_id = %rec.file_id, error = %e, "recording the failure failed");
            }
        }
    }
}
