//! Processing of one claimed file: staged gzip -> format engine -> visitor
//! state lookups (batched) -> enrichment -> lake writer (all on a blocking
//! thread), then publication to the lake and the metadata commit.
//!
//! [`run`] is four named steps, in this order:
//!
//! 1. `load`: the company, its report suites (time zones) and the staged
//!    file;
//! 2. `read_and_enrich`: on a blocking thread, every row through the
//!    engine, the visitor states and the lake writer, to a spooled file
//!    ([`bdia_lake::SpooledFile`]); the row count is checked against the
//!    upload's;
//! 3. `publish`: the spooled parts into the company's Delta table, in one
//!    commit fenced by the file's transaction ([`bdia_lake::Lake::publish`]);
//! 4. `commit`: one metadata transaction (`COMPLETE`, log, visitor state
//!    delta), then the staged file is deleted (`release_staged`).
//!
//! The file's worker slot is given back after step 2 ([`WorkerSlot`]):
//! steps 3 and 4 wait mostly on storage, so they overlap the next file's
//! reading.
//!
//! Each step fails with a [`Failure`] whose [`FailureCode`] keeps the
//! precise cause.
//!
//! The file's output is a pure function of (the staged file, the company's
//! salt, seed setting and report suites, the visitor state before the
//! file): the state is read from the store, which changes it only when a
//! file completes, and a group's files run one at a time. Running the same
//! file again therefore writes the same lake objects and the same delta.
//!
//! Rows are checked again by the same engine as at upload, with the
//! company's seed setting and its report suites as of the file's start
//! (suites are never removed, so a row valid at upload stays valid); the
//! row count must equal the upload's, else the file fails
//! (`staged_file_changed`).
//!
//! Memory: one batch of hits ([`MetadataStore::lookup_batch`]: 256 on
//! SQLite, 1,024 on PostgreSQL), the states of the (report
//! suite, visitor) pairs the file touches (needed for its delta anyway),
//! and the lake writer's bounded buffers.

use std::collections::HashSet;
use std::io::BufReader;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use bdia_format::engine::{process, Encoding, EngineError, FileReport, Limits, Options, RowEvent};
use bdia_format::hit::Hit;
use bdia_format::row::RowRules;
use bdia_lake::{LakeWriter, SpooledFile, SuiteZones};
use bdia_model::commerce::{IdKind, SeenId, SeenSet};
use bdia_model::conversion::EvarSetting;
use bdia_model::{FileEnricher, Identity, StateDelta, VisitState, VisitorStates};
use bdia_store::{Company, Completion, FileRecord, GroupLease, MetadataStore, StoreError};

pub use super::failure::{Failure, FailureCode};
use super::throttle::{Throttles, WorkerSlot};
use super::Shared;

/// Rows taken from the throttle at once.
const THROTTLE_CHUNK: u64 = 256;

/// Wall time of each stage of a file, for the log and the metrics.
#[derive(Debug, Clone, Copy, Default)]
pub struct Timings {
    /// Reading, checking, enriching and encoding (the CPU-bound stage).
    pub encode: std::time::Duration,
    /// Publishing the parts to the lake.
    pub publish: std::time::Duration,
    /// The metadata commit (`COMPLETE` and the visitor state).
    pub commit: std::time::Duration,
}

/// What a run of a file ended with.
#[derive(Debug)]
pub enum Outcome {
    /// Committed `COMPLETE`.
    Complete {
        /// Rows read from the staged file.
        rows: u64,
        /// Time spent on each stage.
        timings: Timings,
    },
    /// Stopped by shutdown: left `PROCESSING`, requeued at the next start.
    Cancelled,
}

/// The store as it was before the file: the states of the (report suite,
/// visitor) pairs a batch needs are fetched in one lookup before the batch
/// is enriched and handed to the enricher ([`FileEnricher::preload`]), which
/// keeps them for the file's duration; a pair missed by the prefetch is
/// looked up on its own ([`VisitorStates::get`]). Serials and purchase IDs
/// likewise.
struct Prefetched {
    /// Serials and purchase IDs: whether each was counted before the file.
    seen: SeenSet<bool>,
    store: Arc<dyn MetadataStore>,
    handle: tokio::runtime::Handle,
    company_id: String,
}

impl Prefetched {
    /// The states of `states` (report suite, visitor key) before the file,
    /// answered in order, and whether each of `seen` was counted before
    /// it (kept in `self.seen`), in one store call.
    fn lookups(
        &mut self,
        states: Vec<(String, String)>,
        seen: Vec<SeenId>,
    ) -> Result<Vec<Option<VisitState>>, StoreError> {
        if states.is_empty() && seen.is_empty() {
            return Ok(Vec::new());
        }
        let (found, counted) =
            self.handle
                .block_on(self.store.lookups(&self.company_id, states, seen.clone()))?;
        for (k, v) in seen.into_iter().zip(counted) {
            self.seen.insert_id(k, v);
        }
        Ok(found)
    }
}

impl VisitorStates for Prefetched {
    type Error = StoreError;

    fn get(
        &mut self,
        report_suite: &str,
        visitor_key: &str,
    ) -> Result<Option<VisitState>, StoreError> {
        let found = self.lookups(
            vec![(report_suite.to_string(), visitor_key.to_string())],
            Vec::new(),
        )?;
        Ok(found.into_iter().next().flatten())
    }

    fn seen(&mut self, report_suite: &str, kind: IdKind<'_>, id: &str) -> Result<bool, StoreError> {
        if let Some(v) = self.seen.get(report_suite, kind, id) {
            return Ok(*v);
        }
        self.lookups(
            Vec::new(),
            vec![SeenId {
                report_suite: report_suite.to_string(),
                kind: kind.to_string(),
                id: id.to_string(),
            }],
        )?;
        Ok(self
            .seen
            .get(report_suite, kind, id)
            .copied()
            .unwrap_or(false))
    }
}

/// What `load` gathers before the file is read.
struct Loaded {
    /// The file's company (salt, seed setting, throttle).
    company: Company,
    /// The time zone of each of the company's report suites.
    zones: SuiteZones,
    /// The company's report suites.
    owned: HashSet<String>,
    /// The internal URL filters of the suites that have some.
    filters: Vec<(String, Vec<String>)>,
    /// The eVar settings of the suites that have some.
    evars: Vec<(String, Vec<EvarSetting>)>,
    /// The staged file's blob key.
    blob_key: String,
    /// The staged file, open.
    input: std::fs::File,
}

/// What `read_and_enrich` produced: the file's output, not yet published.
struct Enriched {
    /// The parts, in the spool.
    spooled: SpooledFile,
    /// Rows read from the staged file.
    rows: u64,
    /// The visitor states the file changed.
    delta: StateDelta,
    /// Processing log lines: rows that went back in time, events and
    /// purchases not counted again.
    notes: Vec<String>,
    /// When the reader finished (unix seconds).
    reader_complete: i64,
}

/// Processes one claimed (`PROCESSING`) file to `COMPLETE`. An `Err` is
/// for the caller to record as `ERROR`.
pub async fn run(
    shared: &Shared,
    rec: &FileRecord,
    lease: &GroupLease,
    cancel: Arc<AtomicBool>,
    slot: &mut WorkerSlot,
) -> Result<Outcome, Failure> {
    let loaded = load(shared, rec).await?;
    let blob_key = loaded.blob_key.clone();
    let mut timings = Timings::default();
    let t = std::time::Instant::now();
    let out = read_and_enrich(shared, rec, loaded, cancel.clone()).await?;
    timings.encode = t.elapsed();
    // The file's CPU work is done: the next file starts in its worker
    // slot while this one is published and committed (the group stays
    // held until then, so its own next file waits).
    slot.release();
    let Some(out) = out else {
        return Ok(Outcome::Cancelled);
    };
    if cancel.load(Ordering::Relaxed) {
        return Ok(Outcome::Cancelled);
    }
    let t = std::time::Instant::now();
    if publish(shared, rec, out.spooled).await? {
        crash_point_after_lake_commit();
    }
    timings.publish = t.elapsed();
    let t = std::time::Instant::now();
    let release = !shared.keep_staged_files;
    commit(
        shared,
        rec,
        lease,
        out.delta,
        &out.notes,
        out.reader_complete,
        release,
    )
    .await?;
    timings.commit = t.elapsed();
    if release {
        release_staged(shared, rec, &blob_key).await;
    }
    Ok(Outcome::Complete {
        rows: out.rows,
        timings,
    })
}

/// Step 1, load file + company: the company, the time zones of its report
/// suites (as of the file's start) and the staged file, opened.
async fn load(shared: &Shared, rec: &FileRecord) -> Result<Loaded, Failure> {
    let store = &shared.store;
    let company = store
        .get_company(&rec.company_id)
        .await
        .map_err(Failure::store)?
        .ok_or_else(|| {
            Failure::new(
                FailureCode::CompanyMissing,
                format!("company '{}' not found", rec.company_id),
            )
        })?;
    let suites = store
        .list_report_suites(Some(&rec.company_id))
        .await
        .map_err(Failure::store)?;
    let mut zones = SuiteZones::utc();
    for s in &suites {
        zones
            .insert(&s.rsid, &s.time_zone)
            .map_err(|e| Failure::new(FailureCode::TimeZone, e))?;
    }
    let filters = suites
        .iter()
        .filter(|s| !s.internal_url_filters.is_empty())
        .map(|s| (s.rsid.clone(), s.internal_url_filters.clone()))
        .collect();
    let evars = suites
        .iter()
        .filter(|s| !s.evar_settings.is_empty())
        .map(|s| (s.rsid.clone(), s.evar_settings.clone()))
        .collect();
    let owned: HashSet<String> = suites.into_iter().map(|s| s.rsid).collect();
    let blob_key = rec.blob_key.clone().ok_or_else(|| {
        Failure::new(
            FailureCode::StagedFileMissing,
            "the staged file is not kept",
        )
    })?;
    let input = shared
        .blobs
        .open_read(&blob_key)
        .await
        .map_err(|e| Failure::new(FailureCode::StagedFileMissing, e))?;
    Ok(Loaded {
        company,
        zones,
        owned,
        filters,
        evars,
        blob_key,
        input,
    })
}

/// Step 2, read & enrich: every row of the staged file through the engine,
/// the visitor states and the lake writer, on a blocking thread; then the
/// row count is checked against the upload's. `Ok(None)` when cancelled.
async fn read_and_enrich(
    shared: &Shared,
    rec: &FileRecord,
    loaded: Loaded,
    cancel: Arc<AtomicBool>,
) -> Result<Option<Enriched>, Failure> {
    let Loaded {
        company,
        zones,
        owned,
        filters,
        evars,
        input,
        ..
    } = loaded;
    let writer = shared
        .lake
        .begin(&rec.company_id, &rec.file_id, zones)
        .map_err(Failure::lake)?;
    let limits = shared.limits.engine_limits();
    let states = Prefetched {
        store: shared.store.clone(),
        handle: tokio::runtime::Handle::current(),
        company_id: company.id.clone(),
        seen: SeenSet::default(),
    };
    let throttles = shared.throttles.clone();
    let out = tokio::task::spawn_blocking(move || {
        enrich_file(
            input,
            writer,
            company,
            owned,
            SuiteSettings { filters, evars },
            limits,
            states,
            throttles,
            cancel,
        )
    })
    .await
    .map_err(|e| {
        Failure::new(
            FailureCode::WorkerThread,
            format!("processing thread failed: {e}"),
        )
    })??;
    if let Some(out) = &out {
        check_rows(out.rows, rec.rows)?;
    }
    Ok(out)
}

/// The staged file must hold the rows the upload counted.
fn check_rows(read: u64, expected: u64) -> Result<(), Failure> {
    if read == expected {
        Ok(())
    } else {
        Err(Failure::new(
            FailureCode::StagedFileChanged,
            format!("the staged file has {read} rows, the upload had {expected}"),
        ))
    }
}

/// Step 3, publish to lake: the spooled parts under their final names,
/// then one Delta commit of the company's table carrying the file's
/// transaction, `txn(visitor group, group sequence)`
/// ([`bdia_lake::Lake::publish`]). A file whose transaction the table
/// already holds (committed by a run that stopped before its metadata
/// commit) is not committed again. True when this call committed.
async fn publish(shared: &Shared, rec: &FileRecord, spooled: SpooledFile) -> Result<bool, Failure> {
    let txn = file_txn(rec)?;
    match shared.lake.publish(spooled, &txn).await {
        Ok(bdia_lake::CommitOutcome::Committed { table_version }) => {
            tracing::debug!(file_id = %rec.file_id, table_version, "lake commit");
            Ok(true)
        }
        Ok(bdia_lake::CommitOutcome::AlreadyCommitted { txn_version }) => {
            tracing::info!(
                file_id = %rec.file_id,
                visitor_group = %rec.visitor_group_id,
                group_seq = txn.version,
                txn_version,
                "the file's hits were already committed to the lake; finishing its metadata commit"
            );
            Ok(false)
        }
        Err(e) => Err(Failure::lake(e)),
    }
}

/// The Delta transaction of a file: its visitor group and its sequence in
/// the group.
pub(crate) fn file_txn(rec: &FileRecord) -> Result<bdia_lake::FileTxn, Failure> {
    let seq = rec.group_seq.ok_or_else(|| {
        Failure::new(
            FailureCode::StoreInvalid,
            format!("file {} has no sequence in its visitor group", rec.file_id),
        )
    })?;
    Ok(bdia_lake::FileTxn {
        app_id: rec.visitor_group_id.clone(),
        version: i64::try_from(seq).unwrap_or(i64::MAX),
    })
}

/// Crash tests only: with `BDIA_TEST_ABORT_AFTER_LAKE_COMMITS=N` set, the
/// process aborts right after its N-th lake commit, before the metadata
/// commit (the window the transaction fence protects).
fn crash_point_after_lake_commit() {
    static COMMITS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    static LIMIT: std::sync::OnceLock<Option<u64>> = std::sync::OnceLock::new();
    let limit = LIMIT.get_or_init(|| {
        std::env::var("BDIA_TEST_ABORT_AFTER_LAKE_COMMITS")
            .ok()
            .and_then(|v| v.parse().ok())
    });
    if let Some(n) = limit {
        if COMMITS.fetch_add(1, Ordering::SeqCst) + 1 >= *n {
            tracing::warn!("aborting after a lake commit (BDIA_TEST_ABORT_AFTER_LAKE_COMMITS)");
            std::process::abort();
        }
    }
}

/// Step 4, commit metadata: one transaction marks the file `COMPLETE` (its
/// upload log followed by the processing notes), stores the visitor state
/// delta and, with `release`, drops the staged file's key from the record;
/// only while `lease` is current (a node that lost the group to another
/// one gets [`FailureCode::StoreFenced`] and commits nothing).
async fn commit(
    shared: &Shared,
    rec: &FileRecord,
    lease: &GroupLease,
    delta: StateDelta,
    notes: &[String],
    reader_complete: i64,
    release: bool,
) -> Result<(), Failure> {
    let mut log = bdia_store::upload_log(&rec.processing_log).to_string();
    for line in notes {
        if !log.is_empty() {
            log.push('\n');
        }
        log.push_str(line);
    }
    shared
        .store
        .complete_file(
            &rec.file_id,
            Completion {
                file_reader_complete_date: reader_complete,
                processing_end_date: super::now(),
                processing_log: log,
                delta,
                release_blob: release,
                lease: Some(lease.clone()),
            },
        )
        .await
        .map_err(Failure::store)?;
    Ok(())
}

/// After the commit, the staged file is deleted (unless
/// `processing.keep_staged_files`). Best effort: a crash or an error
/// before the delete leaves a blob no record references, removed by the
/// startup sweep.
async fn release_staged(shared: &Shared, rec: &FileRecord, blob_key: &str) {
    if let Err(e) = shared.blobs.delete(blob_key).await {
        tracing::warn!(file_id = %rec.file_id, error = %e, "deleting a processed staged file failed");
    }
}

/// The engine settings of a company's file: gzip, the upload's size
/// limits, the company's seed setting and report suites.
fn engine_options(company: &Company, owned: HashSet<String>, limits: Limits) -> Options {
    let owned = Arc::new(owned);
    Options {
        limits,
        encoding: Encoding::Gzip,
        rules: RowRules {
            seed_customer_id_type: company.settings.seed_customer_id_type.clone(),
            allow_report_suite: Some(Arc::new(move |rs: &str| owned.contains(rs))),
        },
        threaded: true,
    }
}

/// Counts rows and takes them from the company's throttle, a chunk at a
/// time.
struct RowMeter {
    throttles: Arc<Throttles>,
    company_id: String,
    rate: Option<u64>,
    /// Rows counted and not yet taken.
    unpaid: u64,
}

impl RowMeter {
    /// Counts one row; every [`THROTTLE_CHUNK`] rows, takes them from the
    /// throttle (waiting if the company is over its rate).
    fn count(&mut self, cancel: &AtomicBool) {
        self.unpaid += 1;
        if self.unpaid >= THROTTLE_CHUNK {
            let taken = self
                .throttles
                .take(&self.company_id, self.rate, self.unpaid, cancel);
            if !taken.waited.is_zero() {
                metrics::counter!(crate::metrics::ROWS_THROTTLED.name).increment(self.unpaid);
            }
            metrics::counter!(crate::metrics::ROWS_PROCESSED.name).increment(self.unpaid);
            self.unpaid = 0;
        }
    }

    /// Takes the rows left at the end of the file.
    fn settle(&mut self, cancel: &AtomicBool) {
        self.throttles
            .take(&self.company_id, self.rate, self.unpaid, cancel);
        metrics::counter!(crate::metrics::ROWS_PROCESSED.name).increment(self.unpaid);
        self.unpaid = 0;
    }
}

/// A file's hits on their way to the lake: batched, their visitor states
/// looked up together, enriched and written.
struct Enrichment<'a> {
    enricher: FileEnricher<'a>,
    states: Prefetched,
    writer: LakeWriter,
    batch: Vec<Hit>,
}

impl Enrichment<'_> {
    /// Looks up the states the batch needs that are not known yet (one
    /// store call), then enriches each hit and writes it to the lake.
    fn flush(&mut self) -> Result<(), Failure> {
        let mut keys: Vec<(String, String)> = Vec::new();
        let mut asked: foldhash::HashSet<(&str, String)> = foldhash::HashSet::default();
        // The serials and purchase IDs of the batch not known yet.
        let mut ids: SeenSet<()> = SeenSet::default();
        let mut key = String::new();
        for h in self.batch.iter() {
            h.visitor.write_key(&mut key);
            let purchase_id = h
                .get(bdia_format::fields::Field::PurchaseId)
                .filter(|_| h.events.iter().any(|e| e.name == "purchase"));
            for s in &h.report_suites {
                // Most hits are of a visitor the file has already seen:
                // the enricher knows its state, the store is not asked.
                if self.enricher.needs_state(s, &key) && asked.insert((s.as_str(), key.clone())) {
                    keys.push((s.to_string(), key.clone()));
                }
                let mut add = |kind: IdKind<'_>, id: &str| {
                    if self.states.seen.get(s, kind, id).is_none() {
                        ids.insert(s, kind, id, ());
                    }
                };
                for e in &h.events {
                    if let Some(serial) = &e.serial {
                        add(IdKind::Event(&e.name), serial);
                    }
                }
                if let Some(id) = purchase_id {
                    add(IdKind::PurchaseId, id);
                }
            }
        }
        drop(asked);
        let ids: Vec<SeenId> = ids.into_ids().map(|(id, ())| id).collect();
        let found = self
            .states
            .lookups(keys.clone(), ids)
            .map_err(Failure::store)?;
        for ((suite, key), state) in keys.into_iter().zip(found) {
            self.enricher.preload(&suite, key, state);
        }
        let mut hits = Vec::new();
        for h in self.batch.drain(..) {
            self.enricher
                .enrich_into(h, &mut self.states, &mut hits)
                .map_err(Failure::store)?;
            // Read in place: an enriched hit is large, moving it out of
            // the vector would copy it once more.
            for eh in &hits {
                self.writer.push(eh).map_err(Failure::lake)?;
            }
            hits.clear();
        }
        Ok(())
    }
}

/// The report suites' processing settings.
struct SuiteSettings {
    /// Internal URL filters, of the suites that have some.
    filters: Vec<(String, Vec<String>)>,
    /// eVar settings, of the suites that have some.
    evars: Vec<(String, Vec<EvarSetting>)>,
}

impl SuiteSettings {
    /// An enricher of one file with these settings.
    fn enricher(self, identity: &Identity) -> FileEnricher<'_> {
        let e = self
            .filters
            .into_iter()
            .fold(FileEnricher::new(identity), |e, (suite, f)| {
                e.with_internal_url_filters(&suite, f)
            });
        self.evars
            .iter()
            .fold(e, |e, (suite, s)| e.with_evar_settings(suite, s))
    }
}

/// Why the row handler stopped the engine.
enum Stop {
    /// Shutdown.
    Cancelled,
    /// A failure of the file.
    Failed(Failure),
}

/// The blocking part of step 2: the engine over the staged file, each
/// valid row enriched and written; `Ok(None)` when cancelled.
#[allow(clippy::too_many_arguments)]
fn enrich_file(
    input: std::fs::File,
    writer: LakeWriter,
    company: Company,
    owned: HashSet<String>,
    settings: SuiteSettings,
    limits: Limits,
    states: Prefetched,
    throttles: Arc<Throttles>,
    cancel: Arc<AtomicBool>,
) -> Result<Option<Enriched>, Failure> {
    let identity = Identity::new(company.salt_bytes());
    let opts = engine_options(&company, owned, limits);
    let mut meter = RowMeter {
        throttles,
        company_id: company.id.clone(),
        rate: company.settings.rows_per_second,
        unpaid: 0,
    };
    let enricher = settings.enricher(&identity);
    // Hits whose visitor states and IDs are looked up together.
    let lookup_batch = states.store.lookup_batch().max(1);
    let mut work = Enrichment {
        enricher,
        states,
        writer,
        batch: Vec::with_capacity(lookup_batch),
    };
    let report = process(BufReader::new(input), &opts, |event| {
        meter.count(&cancel);
        if let RowEvent::Valid { row, valid } = event {
            work.batch.push(valid.to_hit(row));
            if work.batch.len() >= lookup_batch {
                if cancel.load(Ordering::Relaxed) {
                    return Err(Stop::Cancelled);
                }
                work.flush().map_err(Stop::Failed)?;
            }
        }
        Ok(())
    });
    let report = match report {
        Ok(report) => checked_report(report)?,
        Err(EngineError::Sink(Stop::Cancelled)) => return Ok(None),
        Err(EngineError::Sink(Stop::Failed(f))) => return Err(f),
        Err(EngineError::Input(e)) => {
            return Err(Failure::new(FailureCode::StagedFileUnreadable, e))
        }
    };
    work.flush()?;
    meter.settle(&cancel);
    let reader_complete = super::now();
    let spooled = work.writer.finish().map_err(Failure::lake)?;
    let commerce = work.enricher.commerce_log_lines();
    let (delta, ooo) = work.enricher.finish();
    let mut notes = ooo.log_lines();
    notes.extend(commerce);
    Ok(Some(Enriched {
        spooled,
        rows: report.rows,
        delta,
        notes,
        reader_complete,
    }))
}

/// The engine's verdict on the staged file: it must still pass the file
/// checks it passed at upload.
fn checked_report(report: FileReport) -> Result<FileReport, Failure> {
    if let Some(code) = report.rejection.as_ref().map(|r| r.code()) {
        return Err(Failure::new(
            FailureCode::StagedFileRejected,
            format!("the staged file no longer passes the file checks ({code})"),
        ));
    }
    Ok(report)
}
