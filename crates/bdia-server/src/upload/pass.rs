//! The engine pass over one uploaded body: the format engine reads the
//! channel on a blocking thread, invalid rows go to the staged reject
//! report, and, for uploads, the staged file and the reject report are
//! published only when the body ended cleanly and the file was not
//! rejected.

use std::collections::HashMap;
use std::io;

use bdia_format::engine::{process, Encoding, EngineError, FileReport, Limits, Options, RowEvent};
use bdia_format::row::RowRules;
use bdia_store::blob::{self, BlobStore, StagedFile};
use bytes::Bytes;
use tokio::sync::mpsc;

use super::body::{ChannelRead, Msg};
use crate::state::AppState;

pub(super) fn engine_options(state: &AppState, rules: RowRules) -> Options {
    Options {
        limits: Limits {
            max_compressed: state.config.limits.max_compressed_bytes,
            max_uncompressed: state.config.limits.max_uncompressed_bytes,
        },
        encoding: Encoding::Gzip,
        rules,
        threaded: true,
    }
}

/// What the blocking pass produced.
pub(super) struct Pass {
    pub(super) report: FileReport,
    pub(super) first_invalid_row: Option<u64>,
    /// Published blob keys (UPLOADED files only).
    pub(super) blob_key: Option<String>,
    pub(super) rejects_key: Option<String>,
    pub(super) by_kind: HashMap<&'static str, u64>,
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
    opts: Options,
    staging: Option<(BlobStore, String)>,
) -> Result<Pass, PassError> {
    let internal = failed;
    let (tee, mut rejects) = match &staging {
        Some((blobs, file_id)) => (
            Some(blobs.stage(file_id).map_err(|e| internal(&e))?),
            Some(RejectWriter::new(blobs, file_id).map_err(|e| internal(&e))?),
        ),
        None => (None, None),
    };
    let mut input = ChannelRead {
        first: Some(first),
        rx,
        cur: Bytes::new(),
        tee,
        ended: false,
    };
    let mut first_invalid_row = None;
    let mut by_kind: HashMap<&'static str, u64> = HashMap::new();
    let result = process(&mut input, &opts, |event| {
        if let RowEvent::Invalid {
            row,
            problem,
            record,
        } = event
        {
            first_invalid_row.get_or_insert(row);
            *by_kind.entry(problem.kind().code()).or_default() += 1;
            if let Some(w) = rejects.as_mut() {
                w.write(row, problem.kind().code(), &problem.to_string(), record)
                    .map_err(|e| internal(&e))?;
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
        by_kind,
    };
    if let Some((blobs, file_id)) = staging {
        let staged = input.tee.take().expect("staged file present");
        if pass.report.rejection.is_none() && input.ended {
            let key = blob::file_key(&file_id);
            staged.publish(&key).map_err(|e| internal(&e))?;
            pass.blob_key = Some(key);
            if let Some(w) = rejects.take() {
                match w.publish(&file_id) {
                    Ok(k) => pass.rejects_key = k,
                    Err(e) => {
                        let _ = blob::remove_local(&blobs, &blob::file_key(&file_id));
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

/// The per-file reject report, staged next to the upload.
struct RejectWriter {
    out: Option<csv::Writer<StagedFile>>,
    blobs: BlobStore,
    name: String,
}

impl RejectWriter {
    fn new(blobs: &BlobStore, file_id: &str) -> bdia_store::StoreResult<RejectWriter> {
        Ok(RejectWriter {
            out: None,
            blobs: blobs.clone(),
            name: format!("{file_id}.rejects"),
        })
    }

    fn write(
        &mut self,
        row: u64,
        kind: &str,
        message: &str,
        record: &csv::ByteRecord,
    ) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
        if self.out.is_none() {
            let staged = self.blobs.stage(&self.name)?;
            let mut w = csv::Writer::from_writer(staged);
            w.write_record(["row", "kind", "message", "raw"])?;
            self.out = Some(w);
        }
        let mut raw = csv::Writer::from_writer(Vec::new());
        raw.write_byte_record(record)?;
        let raw = raw.into_inner().map_err(|e| e.to_string())?;
        let raw = String::from_utf8_lossy(&raw);
        let raw = raw.trim_end_matches(['\r', '\n']);
        let w = self.out.as_mut().expect("set above");
        w.write_record([row.to_string().as_str(), kind, message, raw])?;
        Ok(())
    }

    fn publish(self, file_id: &str) -> Result<Option<String>, String> {
        let Some(w) = self.out else { return Ok(None) };
        let staged = w.into_inner().map_err(|e| e.to_string())?;
        let key = blob::rejects_key(file_id);
        staged.publish(&key).map_err(|e| e.to_string())?;
        Ok(Some(key))
    }
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
