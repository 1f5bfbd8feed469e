//! The upload and validate paths: one streaming pass per file.
//!
//! ```text
//! handler (async)                        job (tracked task)
//!   auth, headers, key, rate limit
//!   multipart `file` part ──Bytes──▶ bounded channel ──▶ first bytes: pass slot
//!                                     (429/503 if none) ──▶ blocking thread:
//!                                       tee to staging/<id>.part + format engine
//!                                       invalid rows -> staging reject report
//!                                       fsync + rename (UPLOADED only)
//!                                     commit record (idempotent) ──▶ answer
//! ```
//!
//! Guarantees:
//! - Nothing of the body is read before the caller is authenticated, so
//!   `Expect: 100-continue` is answered only after the checks.
//! - A request holds no thread until its file's first bytes arrive; then
//!   it needs one of its company's pass slots ([`crate::admission`]).
//! - Memory is flat: at most [`CHANNEL_CHUNKS`] body chunks wait in the
//!   channel, and the engine's own buffers are bounded.
//! - 200 is sent only after the staged file is fsynced and renamed and its
//!   record committed. A client that disconnects, a duplicate `file` part,
//!   a size limit (413) or a failed commit leave no blob and no record: the
//!   staged file is removed on drop, published blobs are removed when the
//!   commit does not happen. A `REJECTED` file keeps its record only.
//! - Once the body is fully received, the job runs to completion even if
//!   the connection goes away (it is a tracked task the shutdown waits for),
//!   so a retry with the same idempotency key finds the record.
//!
//! Code map: `body` streams the multipart body over the bounded channel
//! (idle timeouts, drain after a rejection); `pass` runs the format engine
//! on the blocking thread, writes the reject report and publishes the
//! staged blobs; `suites` decides which report suites rows may name (and
//! creates them). The JSON answers are `bdia_wire` types. This module
//! holds the two handlers and the commit of an accepted file.

mod body;
mod pass;
mod preview;
mod suites;

use std::time::Duration;

use axum::extract::Request;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use bdia_store::blob::BlobStore;
use bdia_store::{CommitOutcome, FileRecord, FileStatus, NewFile};
use tokio::sync::{mpsc, oneshot};

use crate::error::ApiError;
use crate::state::{AppState, Caller};

use body::{open_multipart, pump, Msg};
use pass::{engine_options, record_metrics, run_pass, Pass, PassError, PassOptions};
use suites::row_rules;

pub use body::CHANNEL_CHUNKS;
pub use suites::MAX_SUITE_LOOKUPS;

/// Longest accepted visitor group id or idempotency key.
pub const MAX_HEADER_VALUE: usize = 255;

fn header_value(headers: &HeaderMap, name: &str) -> Result<Option<String>, ApiError> {
    match headers.get(name) {
        None => Ok(None),
        Some(v) => {
            let s = v
                .to_str()
                .map_err(|_| ApiError::BadRequest(format!("Header {name} is not valid text")))?
                .trim();
            if s.is_empty() {
                return Ok(None);
            }
            if s.len() > MAX_HEADER_VALUE {
                return Err(ApiError::BadRequest(format!(
                    "Header {name} is longer than {MAX_HEADER_VALUE} characters"
                )));
            }
            Ok(Some(s.to_string()))
        }
    }
}

/// `POST /aa/collect/v1/events`.
#[tracing::instrument(skip_all, fields(company, visitor_group, file_id))]
pub async fn upload(
    axum::extract::State(state): axum::extract::State<AppState>,
    caller: Caller,
    req: Request,
) -> Result<Response, ApiError> {
    let (parts, body) = req.into_parts();
    let span = tracing::Span::current();
    span.record("company", caller.company.id.as_str());
    let vgid = header_value(&parts.headers, "x-adobe-vgid")?
        .ok_or_else(|| ApiError::BadRequest("Missing x-adobe-vgid header".into()))?;
    span.record("visitor_group", tracing::field::debug(&vgid));
    let key = header_value(&parts.headers, "x-adobe-idempotency-key")?;
    if let Some(k) = &key {
        if let Some(existing) = state.store.find_by_key(&caller.company.id, k).await? {
            if existing.status != FileStatus::Rejected {
                metrics::counter!(crate::metrics::UPLOADS.name, "outcome" => "idempotent_replay")
                    .increment(1);
                let answer = crate::groups::answer_for(&state, &caller, &existing).await?;
                return Ok(Json(answer).into_response());
            }
        }
    }
    state.limiter.admit(
        &caller.company.id,
        caller.company.settings.upload_rate_limit,
    )?;
    let mut mp = open_multipart(&state, Request::from_parts(parts, body)).await?;
    let (tx, rx) = mpsc::channel::<Msg>(CHANNEL_CHUNKS);
    let (name_tx, name_rx) = oneshot::channel::<String>();
    let file_id = uuid::Uuid::new_v4().to_string();
    span.record("file_id", file_id.as_str());
    let received_date = crate::auth::now();
    let opts = engine_options(&state, row_rules(&state, &caller.company, true).await?);
    let job = {
        let state = state.clone();
        let file_id = file_id.clone();
        let company = caller.company.id.clone();
        let throttle = caller.company.settings.rows_per_second;
        let key = key.clone();
        state.tasks.clone().spawn(async move {
            let staging = Some((state.blobs.clone(), file_id.clone()));
            let pass = match start_pass(&state, &company, rx, opts, staging).await? {
                Ok(p) => p,
                Err(e) => {
                    if matches!(e, PassError::Interrupted(_)) {
                        metrics::counter!(crate::metrics::UPLOADS.name, "outcome" => "interrupted")
                            .increment(1);
                    }
                    return Err(pass_error(e));
                }
            };
            record_metrics(&pass);
            let upload_name = name_rx.await.unwrap_or_default();
            let accepted = Accepted {
                pass,
                company,
                throttle,
                vgid,
                key,
                upload_name,
                file_id,
                received_date,
            };
            finish_upload(&state, accepted).await
        })
    };
    let pumped = pump(
        &mut mp,
        tx,
        state.config.limits.max_compressed_bytes,
        Duration::from_secs(state.config.upload_idle_timeout_secs),
        Some(name_tx),
    )
    .await;
    let outcome = match job.await.map_err(ApiError::internal)? {
        // Refused a pass: the body was never going to be read, so how its
        // reading ended (the client may already have closed it) is not
        // the answer.
        Err(e @ ApiError::Busy { .. }) => return Err(e),
        other => other,
    };
    pumped?;
    outcome
}

/// Waits (without a thread) for the body's first bytes, takes a pass slot
/// of the company ([`crate::admission`]: 429/503 when none is free), then
/// runs the engine pass on a blocking thread. A body that failed before
/// its first byte takes no slot.
async fn start_pass(
    state: &AppState,
    company: &str,
    mut rx: mpsc::Receiver<Msg>,
    opts: PassOptions,
    staging: Option<(BlobStore, String)>,
) -> Result<Result<Pass, PassError>, ApiError> {
    let first = match rx.recv().await {
        Some(Msg::Fail(e)) => return Ok(Err(PassError::Interrupted(e))),
        Some(m) => m,
        // The body failed before the file part: the pump says why.
        None => {
            return Ok(Err(PassError::Interrupted(std::io::Error::new(
                std::io::ErrorKind::ConnectionAborted,
                "no file data received",
            ))))
        }
    };
    let slot = state
        .passes
        .try_take(company)
        .map_err(|full| state.passes.refusal(full, 1))?;
    tokio::task::spawn_blocking(move || {
        let _slot = slot;
        run_pass(first, rx, opts, staging)
    })
    .await
    .map_err(ApiError::internal)
}

/// The answer for a pass that did not read its body to the end.
fn pass_error(e: PassError) -> ApiError {
    match e {
        PassError::Interrupted(e) => ApiError::BadRequest(format!("Upload interrupted: {e}")),
        PassError::StorageFull(e) => {
            tracing::warn!(error = %e, "storage full: upload refused");
            ApiError::InsufficientStorage
        }
        PassError::Internal(e) => ApiError::Internal(e),
    }
}

/// A body the engine pass read to its end: what its record is made of.
struct Accepted {
    /// The engine pass over the body.
    pass: Pass,
    /// The caller's company.
    company: String,
    /// The company's processing throttle (rows per second), for the
    /// answer's queue estimate.
    throttle: Option<u64>,
    /// `x-adobe-vgid`.
    vgid: String,
    /// `x-adobe-idempotency-key`, when the client sent one.
    key: Option<String>,
    /// The multipart filename, empty when none.
    upload_name: String,
    /// The server-made file id.
    file_id: String,
    /// When the request arrived (unix seconds).
    received_date: i64,
}

/// Records an accepted body and answers it (see [`commit_accepted`]).
async fn finish_upload(state: &AppState, accepted: Accepted) -> Result<Response, ApiError> {
    let throttle = accepted.throttle;
    let rec = commit_accepted(state, accepted).await?;
    let answer =
        crate::groups::answer_record(&*state.store, &rec.company_id, throttle, &rec).await?;
    Ok(Json(answer).into_response())
}

/// Runs a whole gzipped CSV file made by the server itself (a batch of
/// single hits) through the same pass and commit as an uploaded file:
/// same validation, reject report, blob and record. Idempotent by `key`: a
/// key already committed answers the existing record and keeps nothing new.
pub(crate) async fn ingest_file(
    state: &AppState,
    company: &bdia_store::Company,
    vgid: String,
    key: String,
    upload_name: String,
    gz: bytes::Bytes,
) -> Result<FileRecord, ApiError> {
    if let Some(existing) = state.store.find_by_key(&company.id, &key).await? {
        if existing.status != FileStatus::Rejected {
            return Ok(existing);
        }
    }
    let (tx, rx) = mpsc::channel::<Msg>(2);
    // The channel holds both messages: sending never waits.
    let _ = tx.send(Msg::Data(gz)).await;
    let _ = tx.send(Msg::End).await;
    drop(tx);
    let file_id = uuid::Uuid::new_v4().to_string();
    let opts = engine_options(state, row_rules(state, company, false).await?);
    let staging = Some((state.blobs.clone(), file_id.clone()));
    let pass = start_pass(state, &company.id, rx, opts, staging)
        .await?
        .map_err(pass_error)?;
    record_metrics(&pass);
    commit_accepted(
        state,
        Accepted {
            pass,
            company: company.id.clone(),
            throttle: company.settings.rows_per_second,
            vgid,
            key: Some(key),
            upload_name,
            file_id,
            received_date: crate::auth::now(),
        },
    )
    .await
}

/// Records an accepted body: 413 for a file over the size limits, else the
/// record is committed (idempotently) and returned (the earlier record for
/// a replayed key); blobs of a commit that does not happen are removed.
async fn commit_accepted(state: &AppState, accepted: Accepted) -> Result<FileRecord, ApiError> {
    let Accepted {
        pass,
        company,
        throttle: _,
        vgid,
        key,
        upload_name,
        file_id,
        received_date,
    } = accepted;
    let report = &pass.report;
    if let Some(r) = &report.rejection {
        if r.is_too_large() {
            metrics::counter!(crate::metrics::UPLOADS.name, "outcome" => "too_large").increment(1);
            return Err(ApiError::PayloadTooLarge(r.to_string()));
        }
    }
    let status = if report.rejection.is_some() {
        FileStatus::Rejected
    } else {
        FileStatus::Uploaded
    };
    let idempotency_key = key.clone().unwrap_or_else(|| file_id.clone());
    // The same bytes accepted earlier under another key: accepted as the
    // contract says, with a warning naming the earlier file.
    let duplicate = match (&pass.content_sha256, status) {
        (Some(hash), FileStatus::Uploaded) => state
            .store
            .find_by_content(&company, hash)
            .await?
            .filter(|earlier| earlier.idempotency_key != idempotency_key),
        _ => None,
    };
    let mut processing_log = report.processing_log();
    if let Some(d) = &duplicate {
        processing_log.push('\n');
        processing_log.push_str(&duplicate_warning(d));
    }
    let record = FileRecord {
        file_id: file_id.clone(),
        company_id: company,
        visitor_group_id: vgid,
        idempotency_key,
        upload_name,
        size: report.size,
        uncompressed_size: report.uncompressed_size,
        received_date,
        rows: report.rows,
        invalid_rows: report.invalid_rows,
        status,
        error: report.rejection.as_ref().map(|e| e.to_string()),
        error_code: report.rejection.as_ref().map(|e| e.code().to_string()),
        processing_log,
        processing_start_date: None,
        file_reader_complete_date: None,
        processing_end_date: None,
        group_seq: None,
        blob_key: pass.blob_key.clone(),
        rejects_key: pass.rejects_key.clone(),
        rejects_kept: pass.rejects_kept,
        hits_retracted_at: None,
        hits_retracted: None,
        processed_by: None,
        lease_epoch: None,
        content_sha256: pass
            .content_sha256
            .clone()
            .filter(|_| status == FileStatus::Uploaded),
        duplicate_of: duplicate.map(|d| d.file_id),
    };
    let keys: Vec<String> = [&pass.blob_key, &pass.rejects_key]
        .into_iter()
        .flatten()
        .cloned()
        .collect();
    let outcome = match state
        .store
        .commit_upload(NewFile {
            record,
            client_key: key.is_some(),
        })
        .await
    {
        Ok(o) => o,
        Err(e) => {
            undo(state, &keys).await;
            return Err(e.into());
        }
    };
    match outcome {
        CommitOutcome::Inserted(rec) => {
            metrics::counter!(crate::metrics::UPLOADS.name, "outcome" => rec.status.as_str().to_ascii_lowercase())
                .increment(1);
            tracing::info!(
                status = %rec.status,
                rows = rec.rows,
                invalid_rows = rec.invalid_rows,
                group_seq = rec.group_seq,
                "file committed"
            );
            if rec.status == FileStatus::Uploaded {
                state.processing.wake();
            }
            Ok(rec)
        }
        CommitOutcome::Existing(rec) => {
            undo(state, &keys).await;
            metrics::counter!(crate::metrics::UPLOADS.name, "outcome" => "idempotent_replay")
                .increment(1);
            Ok(rec)
        }
    }
}

/// Removes the blobs of an upload whose record was not committed.
async fn undo(state: &AppState, keys: &[String]) {
    for k in keys {
        if let Err(e) = state.blobs.delete(k).await {
            tracing::error!(error = %e, key = %k, "removing an uncommitted blob failed");
        }
    }
}

/// `POST /aa/collect/v1/events/validate`.
#[tracing::instrument(skip_all, fields(company))]
pub async fn validate(
    axum::extract::State(state): axum::extract::State<AppState>,
    caller: Caller,
    q: Result<
        axum::extract::Query<std::collections::HashMap<String, String>>,
        axum::extract::rejection::QueryRejection,
    >,
    req: Request,
) -> Result<Response, ApiError> {
    tracing::Span::current().record("company", caller.company.id.as_str());
    let axum::extract::Query(q) =
        q.map_err(|_| ApiError::BadRequest("Malformed query string".into()))?;
    let preview = match q.get("preview").map(String::as_str) {
        None | Some("false") => false,
        Some("true") => true,
        Some(_) => return Err(ApiError::BadRequest("preview must be true or false".into())),
    };
    state.validate_limiter.admit(
        &caller.company.id,
        caller.company.settings.upload_rate_limit,
    )?;
    let mut mp = open_multipart(&state, req).await?;
    let (tx, rx) = mpsc::channel::<Msg>(CHANNEL_CHUNKS);
    let mut opts = engine_options(&state, row_rules(&state, &caller.company, false).await?);
    if preview {
        opts.preview = Some(preview::suite_zones(&state, &caller.company.id).await?);
    }
    let job = {
        let state = state.clone();
        let company = caller.company.id.clone();
        tokio::spawn(async move { start_pass(&state, &company, rx, opts, None).await })
    };
    let pumped = pump(
        &mut mp,
        tx,
        state.config.limits.max_compressed_bytes,
        Duration::from_secs(state.config.upload_idle_timeout_secs),
        None,
    )
    .await;
    let pass = match job.await.map_err(ApiError::internal)? {
        // Refused a pass: that is the answer, however the body ended.
        Err(e @ ApiError::Busy { .. }) => return Err(e),
        other => other,
    };
    pumped?;
    let pass = pass?.map_err(pass_error)?;
    let report = &pass.report;
    if report.rejection.as_ref().is_some_and(|r| r.is_too_large()) {
        let reason = report.rejection.as_ref().map(ToString::to_string);
        return Err(ApiError::PayloadTooLarge(reason.unwrap_or_default()));
    }
    // The answer of the contract (`success` or `error`), plus the counts and
    // the processing log of the same check (ours; clients ignore extra fields).
    let (status, error, success) = if let Some(r) = &report.rejection {
        (StatusCode::BAD_REQUEST, Some(r.to_string()), None)
    } else if report.invalid_rows > 0 {
        (
            StatusCode::BAD_REQUEST,
            Some(format!(
                "File has {} rows that do not conform to the required CSV format! (Ex: row #{})",
                report.invalid_rows,
                pass.first_invalid_row.unwrap_or(1)
            )),
            None,
        )
    } else {
        (StatusCode::OK, None, Some("File is valid".to_string()))
    };
    let preview = match pass.preview {
        Some(c) if report.rejection.is_none() => Some(
            preview::answer(
                &state,
                &caller.company,
                c,
                report.rows - report.invalid_rows,
                pass.content_sha256.as_deref(),
            )
            .await?,
        ),
        _ => None,
    };
    let body = bdia_wire::Validation {
        error,
        invalid_rows: report.invalid_rows,
        processing_log: report.processing_log(),
        rows: report.rows,
        size: report.size,
        status_code: report.status_code(),
        success,
        preview,
    };
    Ok((status, Json(body)).into_response())
}

/// The processing log line of an upload whose bytes repeat `earlier`'s.
pub(crate) fn duplicate_warning(earlier: &FileRecord) -> String {
    format!(
        "Warning: the same content as file {} (idempotency key '{}', received {}): its rows will be counted again.",
        earlier.file_id,
        earlier.idempotency_key,
        bdia_wire::time::rfc3339_utc(earlier.received_date)
    )
}
