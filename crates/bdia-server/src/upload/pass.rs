//! The engine pass over one uploaded body: the format engine reads the
//! channel on a blocking thread, invalid rows go to the staged reject
//! report, and, for uploads, the staged file and the reject report are
//! published only when the body ended cleanly and the file was not
//! rejected.
//!
//! The reject report (`rejects/<file_id>.csv`, `row,kind,message,raw`) is
//! bounded whatever the upload: it lists the first
//! [`LimitsConfig::max_reject_rows`] invalid rows, each `raw` cut to
//! [`LimitsConfig::max_reject_raw_bytes`], then one line per kind that had
//! rows left out: an empty `row`, the kind, `N more rows of this kind not
//! listed (M in all)` and an empty `raw`.

use std::collections::{BTreeMap, HashMap};
use std::io;

use bdia_format::engine::{process, Encoding, EngineError, FileReport, Options, RowEvent};
use bdia_format::row::RowRules;
use bdia_format::RowProblem;
use bdia_store::blob::{self, BlobStore, StagedFile};
use bytes::Bytes;
use tokio::sync::mpsc;

use super::body::{ChannelRead, Msg};
#[cfg(doc)]
use crate::config::LimitsConfig;
use crate::state::AppState;

/// The settings of one pass: the engine's, and the reject report's caps.
pub(super) struct PassOptions {
    engine: Options,
    /// Collect what the file would do ([`Collected`]), with the company's
    /// report suite time zones (validate `?preview=true`).
    pub(super) preview: Option<bdia_lake::SuiteZones>,
    /// Invalid rows listed in the reject report.
    max_reject_rows: u64,
    /// Longest `raw` of a reject report line.
    max_reject_raw: usize,
}

/// The settings of an upload or validate pass under the server's limits.
pub(super) fn engine_options(state: &AppState, rules: RowRules) -> PassOptions {
    let limits = &state.config.limits;
    PassOptions {
        engine: Options {
            limits: limits.engine_limits(),
            encoding: Encoding::Gzip,
            rules,
            threaded: true,
        },
        max_reject_rows: limits.max_reject_rows,
        max_reject_raw: usize::try_from(limits.max_reject_raw_bytes).unwrap_or(usize::MAX),
        preview: None,
    }
}

/// What a preview pass gathers from the valid rows.
#[derive(Debug, Default)]
pub(super) struct Collected {
    /// Earliest and latest hit time (unix seconds).
    pub(super) first: Option<i64>,
    pub(super) last: Option<i64>,
    /// Rows per (report suite, day in its zone).
    pub(super) by_suite_day: BTreeMap<(String, String), u64>,
    /// The hit times of each (report suite, visitor key), for the new
    /// visitor and out-of-order counts against the stored visitor state.
    pub(super) visitors: HashMap<(String, String), Vec<i64>>,
}

impl Collected {
    fn add(&mut self, zones: &bdia_lake::SuiteZones, hit: &bdia_format::hit::Hit) {
        let t = hit.timestamp;
        self.first = Some(self.first.map_or(t, |f| f.min(t)));
        self.last = Some(self.last.map_or(t, |l| l.max(t)));
        let key = hit.visitor.key();
        for suite in &hit.report_suites {
            let date = bdia_lake::partition::local_date(zones.zone(suite), t)
                .map(|d| d.to_string())
                .unwrap_or_else(|_| "out of range".to_string());
            *self
                .by_suite_day
                .entry((suite.to_string(), date))
                .or_default() += 1;
            self.visitors
                .entry((suite.to_string(), key.clone()))
                .or_default()
                .push(t);
        }
    }
}

/// What the blocking pass produced.
pub(super) struct Pass {
    pub(super) report: FileReport,
    pub(super) first_invalid_row: Option<u64>,
    /// Published blob keys (UPLOADED files only).
    pub(super) blob_key: Option<String>,
    pub(super) rejects_key: Option<String>,
    /// Invalid rows listed in full in the reject report.
    pub(super) rejects_kept: u64,
    pub(super) by_kind: HashMap<&'static str, u64>,
    /// What the valid rows would do (preview passes only).
    pub(super) preview: Option<Collected>,
    /// SHA-256 of the body, lower-case hex, when it was read to its end
    /// and not rejected.
    pub(super) content_sha256: Option<String>,
}

#[derive(Debug)]
pub(super) enum PassError {
    Interrupted(io::Error),
    /// The disk (or quota) filled up while staging: nothing is kept.
    StorageFull(String),
    Internal(String),
}

/// A failure to stage or publish: [`PassError::StorageFull`] when the disk
/// is full, else internal.
fn failed(e: &dyn std::fmt::Display) -> PassError {
    let text = e.to_string();
    if bdia_store::is_storage_full_text(&text) {
        PassError::StorageFull(text)
    } else {
        PassError::Internal(text)
    }
}

/// Runs the engine over `first` and then the channel; stages and publishes
/// when asked.
pub(super) fn run_pass(
    first: Msg,
    rx: mpsc::Receiver<Msg>,
    opts: PassOptions,
    staging: Option<(BlobStore, String)>,
) -> Result<Pass, PassError> {
    let internal = failed;
    let (tee, mut rejects) = match &staging {
        Some((blobs, file_id)) => (
            Some(blobs.stage(file_id).map_err(|e| internal(&e))?),
            Some(RejectWriter::new(blobs, file_id, &opts)),
        ),
        None => (None, None),
    };
    let mut input = ChannelRead {
        first: Some(first),
        rx,
        cur: Bytes::new(),
        tee,
        ended: false,
        hasher: sha2::Sha256::default(),
    };
    let mut first_invalid_row = None;
    let mut by_kind: HashMap<&'static str, u64> = HashMap::new();
    let mut collected = opts.preview.as_ref().map(|_| Collected::default());
    let result = process(&mut input, &opts.engine, |event| {
        if let (RowEvent::Valid { row, valid }, Some(c), Some(zones)) =
            (&event, collected.as_mut(), opts.preview.as_ref())
        {
            c.add(zones, &valid.to_hit(*row));
        }
        if let RowEvent::Invalid {
            row,
            problem,
            record,
        } = event
        {
            first_invalid_row.get_or_insert(row);
            *by_kind.entry(problem.kind().code()).or_default() += 1;
            if let Some(w) = rejects.as_mut() {
                w.write(row, problem, record).map_err(|e| internal(&e))?;
            }
        }
        Ok(())
    });
    let report = match result {
        Ok(r) => r,
        // The tee to the staged file shares the input's error path.
        Err(EngineError::Input(e)) if bdia_store::is_storage_full(&e) => {
            return Err(PassError::StorageFull(e.to_string()))
        }
        Err(EngineError::Input(e)) => return Err(PassError::Interrupted(e)),
        Err(EngineError::Sink(e)) => return Err(e),
    };
    // The engine may stop reading early (a rejection): the body is not
    // needed past that point.
    let mut pass = Pass {
        report,
        first_invalid_row,
        blob_key: None,
        rejects_key: None,
        rejects_kept: 0,
        by_kind,
        preview: collected,
        content_sha256: None,
    };
    if pass.report.rejection.is_none() && input.ended {
        let digest = sha2::Digest::finalize(std::mem::take(&mut input.hasher));
        pass.content_sha256 = Some(hex::encode(digest));
    }
    if let Some((blobs, file_id)) = staging {
        let staged = input.tee.take().expect("staged file present");
        if pass.report.rejection.is_none() && input.ended {
            let key = blob::file_key(&file_id);
            staged.publish(&key).map_err(|e| internal(&e))?;
            pass.blob_key = Some(key);
            if let Some(w) = rejects.take() {
                pass.rejects_kept = w.listed;
                match w.publish(&file_id) {
                    Ok(k) => pass.rejects_key = k,
                    Err(e) => {
                        let _ = blobs.delete_blocking(&blob::file_key(&file_id));
                        return Err(internal(&e));
                    }
                }
            }
        } else if pass.report.rejection.is_none() {
            // The engine saw the end of the data but the body did not end
            // cleanly: treat as interrupted.
            return Err(PassError::Interrupted(io::Error::other("body did not end")));
        }
    }
    Ok(pass)
}

/// The per-file reject report, staged next to the upload: the first rows
/// listed, the rest counted by kind.
struct RejectWriter {
    out: Option<csv::Writer<StagedFile>>,
    blobs: BlobStore,
    name: String,
    max_rows: u64,
    max_raw: usize,
    /// Rows listed so far.
    listed: u64,
    /// Rows left out, by kind, with the kind's rows in all.
    left_out: BTreeMap<&'static str, (u64, u64)>,
    /// Rows of each kind seen (listed or not).
    seen: HashMap<&'static str, u64>,
}

impl RejectWriter {
    fn new(blobs: &BlobStore, file_id: &str, opts: &PassOptions) -> RejectWriter {
        RejectWriter {
            out: None,
            blobs: blobs.clone(),
            name: format!("{file_id}.rejects"),
            max_rows: opts.max_reject_rows,
            max_raw: opts.max_reject_raw,
            listed: 0,
            left_out: BTreeMap::new(),
            seen: HashMap::new(),
        }
    }

    /// The staged report, started with its header on first use.
    fn out(&mut self) -> Result<&mut csv::Writer<StagedFile>, BoxError> {
        if self.out.is_none() {
            let staged = self.blobs.stage(&self.name)?;
            let mut w = csv::Writer::from_writer(staged);
            w.write_record(["row", "kind", "message", "raw"])?;
            self.out = Some(w);
        }
        Ok(self.out.as_mut().expect("set above"))
    }

    fn write(
        &mut self,
        row: u64,
        problem: &RowProblem,
        record: &csv::ByteRecord,
    ) -> Result<(), BoxError> {
        let kind = problem.kind().code();
        let seen = self.seen.entry(kind).or_default();
        *seen += 1;
        if self.listed >= self.max_rows {
            let left = self.left_out.entry(kind).or_default();
            left.0 += 1;
            left.1 = *seen;
            // Started even when no row is listed: the counts are in it.
            self.out()?;
            return Ok(());
        }
        self.listed += 1;
        let mut raw = csv::Writer::from_writer(Vec::new());
        raw.write_byte_record(record)?;
        let raw = raw.into_inner().map_err(|e| e.to_string())?;
        let raw = String::from_utf8_lossy(&raw);
        let raw = cut(raw.trim_end_matches(['\r', '\n']), self.max_raw);
        let message = problem.to_string();
        self.out()?
            .write_record([row.to_string().as_str(), kind, &message, &raw])?;
        Ok(())
    }

    /// Publishes the report, if any; returns its key.
    fn publish(mut self, file_id: &str) -> Result<Option<String>, String> {
        let left_out = std::mem::take(&mut self.left_out);
        let Some(mut w) = self.out else {
            return Ok(None);
        };
        for (kind, (left, all)) in left_out {
            let message = format!("{left} more rows of this kind not listed ({all} in all)");
            w.write_record(["", kind, &message, ""])
                .map_err(|e| e.to_string())?;
        }
        let staged = w.into_inner().map_err(|e| e.to_string())?;
        let key = blob::rejects_key(file_id);
        staged.publish(&key).map_err(|e| e.to_string())?;
        Ok(Some(key))
    }
}

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// `text` cut to at most `max` bytes (at a character boundary), ending in
/// `...` when cut.
fn cut(text: &str, max: usize) -> std::borrow::Cow<'_, str> {
    if text.len() <= max {
        return text.into();
    }
    let mut end = max.saturating_sub(3);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}...", &text[..end]).into()
}

pub(super) fn record_metrics(pass: &Pass) {
    for (kind, n) in &pass.by_kind {
        metrics::counter!(crate::metrics::ROWS_REJECTED.name, "cause" => *kind).increment(*n);
    }
    if let Some(r) = &pass.report.rejection {
        // Rows of a file refused as a whole, by the file-level cause.
        let rows_not_in_kinds = pass
            .report
            .invalid_rows
            .saturating_sub(pass.by_kind.values().sum::<u64>());
        metrics::counter!(crate::metrics::ROWS_REJECTED.name, "cause" => r.code())
            .increment(rows_not_in_kinds);
        metrics::counter!(crate::metrics::FILES_REJECTED.name, "cause" => r.code()).increment(1);
    }
}

#[cfg(test)]
mod tests {
    use super::cut;

    #[test]
    fn cut_keeps_short_text_and_cuts_long_text_at_a_character() {
        assert_eq!(cut("abcdef", 6), "abcdef");
        assert_eq!(cut("abcdefg", 6), "abc...");
        // 'é' is two bytes: the cut never splits it.
        assert_eq!(cut("aéééé", 7), "aé...");
        assert!(cut(&"€".repeat(2000), 4096).len() <= 4096);
    }
}
