//! Processing of one claimed file: staged gzip -> format engine -> visitor
//! state lookups (batched) -> enrichment -> lake writer (all on a blocking
//! thread), then publication to the lake and the metadata commit.
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
//! Memory: one batch of [`LOOKUP_BATCH`] hits, the states of the (report
//! suite, visitor) pairs the file touches (needed for its delta anyway),
//! and the lake writer's bounded buffers.

use std::collections::{HashMap, HashSet};
use std::io::BufReader;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use bdia_format::engine::{process, Encoding, EngineError, Limits, Options, RowEvent};
use bdia_format::hit::Hit;
use bdia_format::row::RowRules;
use bdia_lake::{SpooledFile, SuiteZones};
use bdia_model::{FileEnricher, Identity, StateDelta, VisitState, VisitorStates};
use bdia_store::{Company, Completion, FileRecord, MetadataStore, StoreError};

use super::throttle::Throttles;
use super::Shared;

/// Hits whose visitor states are looked up together.
pub const LOOKUP_BATCH: usize = 1_024;

/// Rows taken from the throttle at once.
const THROTTLE_CHUNK: u64 = 256;

/// Why a file failed; `code` is a stable snake_case label.
#[derive(Debug)]
pub struct Failure {
    /// Stable code (metric label, `error_code`).
    pub code: &'static str,
    /// The reason, for the processing log.
    pub reason: String,
}

impl Failure {
    fn new(code: &'static str, reason: impl std::fmt::Display) -> Failure {
        Failure {
            code,
            reason: reason.to_string(),
        }
    }
}

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

/// States as they were before the file: every pair a batch needs is
/// fetched from the store in one lookup before the batch is enriched, and
/// kept for the file's duration; a pair missed by the prefetch is looked up
/// on its own. Keyed by report suite, then visitor key, so a lookup borrows
/// instead of building a key.
struct Prefetched {
    states: HashMap<String, HashMap<String, Option<VisitState>>>,
    store: Arc<dyn MetadataStore>,
    handle: tokio::runtime::Handle,
    company_id: String,
}

impl Prefetched {
    fn known(&self, report_suite: &str, visitor_key: &str) -> Option<Option<VisitState>> {
        self.states
            .get(report_suite)
            .and_then(|m| m.get(visitor_key))
            .copied()
    }

    fn prefetch(&mut self, keys: Vec<(String, String)>) -> Result<(), StoreError> {
        if keys.is_empty() {
            return Ok(());
        }
        let found = self
            .handle
            .block_on(self.store.visitor_states(&self.company_id, keys.clone()))?;
        for ((suite, key), v) in keys.into_iter().zip(found) {
            match self.states.get_mut(&suite) {
                Some(m) => {
                    m.insert(key, v);
                }
                None => {
                    self.states.insert(suite, HashMap::from([(key, v)]));
                }
            }
        }
        Ok(())
    }
}

impl VisitorStates for Prefetched {
    type Error = StoreError;

    fn get(
        &mut self,
        report_suite: &str,
        visitor_key: &str,
    ) -> Result<Option<VisitState>, StoreError> {
        if let Some(v) = self.known(report_suite, visitor_key) {
            return Ok(v);
        }
        self.prefetch(vec![(report_suite.to_string(), visitor_key.to_string())])?;
        Ok(self.known(report_suite, visitor_key).flatten())
    }
}

struct Blocking {
    staged: SpooledFile,
    rows: u64,
    delta: StateDelta,
    out_of_order: Vec<String>,
    reader_complete: i64,
}

/// The company's salt as bytes: hex-decoded, or the text itself when it is
/// not hex.
fn salt_bytes(salt: &str) -> Vec<u8> {
    hex::decode(salt).unwrap_or_else(|_| salt.as_bytes().to_vec())
}

/// Processes one claimed (`PROCESSING`) file to `COMPLETE`. An `Err` is
/// for the caller to record as `ERROR`.
pub async fn run(
    shared: &Shared,
    rec: &FileRecord,
    cancel: Arc<AtomicBool>,
) -> Result<Outcome, Failure> {
    let store = shared.store.clone();
    let company = store
        .get_company(&rec.company_id)
        .await
        .map_err(|e| Failure::new("store", e))?
        .ok_or_else(|| Failure::new("store", format!("company '{}' not found", rec.company_id)))?;
    let suites = store
        .list_report_suites(Some(&rec.company_id))
        .await
        .map_err(|e| Failure::new("store", e))?;
    let mut zones = SuiteZones::utc();
    for s in &suites {
        zones
            .insert(&s.rsid, &s.time_zone)
            .map_err(|e| Failure::new("time_zone", e))?;
    }
    let owned: HashSet<String> = suites.into_iter().map(|s| s.rsid).collect();
    let blob_key = rec
        .blob_key
        .clone()
        .ok_or_else(|| Failure::new("staged_file_missing", "the staged file is not kept"))?;
    let input = shared
        .blobs
        .open_read(&blob_key)
        .map_err(|e| Failure::new("staged_file_missing", e))?;
    let writer = shared
        .lake
        .begin(&rec.file_id, zones)
        .map_err(|e| Failure::new("lake", e))?;
    let limits = Limits {
        max_compressed: shared.limits.max_compressed_bytes,
        max_uncompressed: shared.limits.max_uncompressed_bytes,
    };
    let handle = tokio::runtime::Handle::current();
    let throttles = shared.throttles.clone();
    let file_id = rec.file_id.clone();
    let expected_rows = rec.rows;
    let cancel2 = cancel.clone();
    let mut timings = Timings::default();
    let t = std::time::Instant::now();
    let blocking = tokio::task::spawn_blocking(move || {
        read_and_enrich(
            input, writer, company, owned, limits, store, handle, throttles, cancel2,
        )
    })
    .await
    .map_err(|e| Failure::new("internal", format!("processing thread failed: {e}")))?;
    timings.encode = t.elapsed();
    let out = match blocking {
        Ok(Some(out)) => out,
        Ok(None) => return Ok(Outcome::Cancelled),
        Err(f) => return Err(f),
    };
    if out.rows != expected_rows {
        return Err(Failure::new(
            "staged_file_changed",
            format!(
                "the staged file has {} rows, the upload had {expected_rows}",
                out.rows
            ),
        ));
    }
    if cancel.load(Ordering::Relaxed) {
        return Ok(Outcome::Cancelled);
    }
    let t = std::time::Instant::now();
    shared
        .lake
        .publish(out.staged)
        .await
        .map_err(|e| Failure::new("lake", e))?;
    timings.publish = t.elapsed();
    let t = std::time::Instant::now();
    let mut log = bdia_store::upload_log(&rec.processing_log).to_string();
    for line in &out.out_of_order {
        if !log.is_empty() {
            log.push('\n');
        }
        log.push_str(line);
    }
    let release = !shared.keep_staged_files;
    shared
        .store
        .complete_file(
            &file_id,
            Completion {
                file_reader_complete_date: out.reader_complete,
                processing_end_date: super::now(),
                processing_log: log,
                delta: out.delta,
                release_blob: release,
            },
        )
        .await
        .map_err(|e| Failure::new("store", e))?;
    timings.commit = t.elapsed();
    if release {
        // After the commit: a crash before this delete leaves a blob no
        // record references, removed by the startup sweep.
        if let Err(e) = shared.blobs.delete(&blob_key).await {
            tracing::warn!(file_id = %file_id, error = %e, "deleting a processed staged file failed");
        }
    }
    Ok(Outcome::Complete {
        rows: out.rows,
        timings,
    })
}

/// The blocking part; `Ok(None)` when cancelled.
#[allow(clippy::too_many_arguments)]
fn read_and_enrich(
    input: std::fs::File,
    mut writer: bdia_lake::LakeWriter,
    company: Company,
    owned: HashSet<String>,
    limits: Limits,
    store: Arc<dyn MetadataStore>,
    handle: tokio::runtime::Handle,
    throttles: Arc<Throttles>,
    cancel: Arc<AtomicBool>,
) -> Result<Option<Blocking>, Failure> {
    let identity = Identity::new(salt_bytes(&company.salt));
    let owned = Arc::new(owned);
    let opts = Options {
        limits,
        encoding: Encoding::Gzip,
        rules: RowRules {
            seed_customer_id_type: company.settings.seed_customer_id_type.clone(),
            allow_report_suite: Some(Arc::new(move |rs: &str| owned.contains(rs))),
        },
        threaded: true,
    };
    let rate = company.settings.rows_per_second;
    let mut enricher = FileEnricher::new(&identity);
    let mut states = Prefetched {
        states: HashMap::new(),
        store,
        handle,
        company_id: company.id.clone(),
    };
    let mut batch: Vec<Hit> = Vec::with_capacity(LOOKUP_BATCH);
    let mut unpaid = 0u64;
    let mut cancelled = false;

    let flush = |batch: &mut Vec<Hit>,
                 enricher: &mut FileEnricher<'_>,
                 states: &mut Prefetched,
                 writer: &mut bdia_lake::LakeWriter|
     -> Result<(), Failure> {
        let mut keys: Vec<(String, String)> = Vec::new();
        let mut seen: HashSet<(&str, String)> = HashSet::new();
        for h in batch.iter() {
            let key = h.visitor.key();
            for s in &h.report_suites {
                if states.known(s, &key).is_none() && !seen.contains(&(s.as_str(), key.clone())) {
                    seen.insert((s.as_str(), key.clone()));
                    keys.push((s.clone(), key.clone()));
                }
            }
        }
        drop(seen);
        states
            .prefetch(keys)
            .map_err(|e| Failure::new("store", e))?;
        for h in batch.drain(..) {
            let hits = enricher
                .enrich(h, states)
                .map_err(|e| Failure::new("store", e))?;
            for eh in &hits {
                writer.push(eh).map_err(|e| Failure::new("lake", e))?;
            }
        }
        Ok(())
    };

    let mut failure: Option<Failure> = None;
    let report = process(BufReader::new(input), &opts, |event| {
        unpaid += 1;
        if unpaid >= THROTTLE_CHUNK {
            let taken = throttles.take(&company.id, rate, unpaid, &cancel);
            if !taken.waited.is_zero() {
                metrics::counter!("bdia_rows_throttled_total").increment(unpaid);
            }
            metrics::counter!("bdia_rows_processed_total").increment(unpaid);
            unpaid = 0;
        }
        if let RowEvent::Valid { row, valid } = event {
            batch.push(valid.to_hit(row));
            if batch.len() >= LOOKUP_BATCH {
                if cancel.load(Ordering::Relaxed) {
                    cancelled = true;
                    return Err("cancelled".into());
                }
                if let Err(f) = flush(&mut batch, &mut enricher, &mut states, &mut writer) {
                    failure = Some(f);
                    return Err("failed".into());
                }
            }
        }
        Ok(())
    });
    if cancelled {
        return Ok(None);
    }
    if let Some(f) = failure {
        return Err(f);
    }
    let report = report.map_err(|e| match e {
        EngineError::Input(e) => Failure::new("staged_file_unreadable", e),
        EngineError::Sink(e) => Failure::new("internal", e),
    })?;
    if let Some(code) = report.rejection.as_ref().map(|r| r.code()) {
        return Err(Failure::new(
            "staged_file_rejected",
            format!("the staged file no longer passes the file checks ({code})"),
        ));
    }
    flush(&mut batch, &mut enricher, &mut states, &mut writer)?;
    throttles.take(&company.id, rate, unpaid, &cancel);
    metrics::counter!("bdia_rows_processed_total").increment(unpaid);
    let reader_complete = super::now();
    let staged = writer.finish().map_err(|e| Failure::new("lake", e))?;
    let (delta, ooo) = enricher.finish();
    Ok(Some(Blocking {
        staged,
        rows: report.rows,
        delta,
        out_of_order: ooo.log_lines(),
        reader_complete,
    }))
}
