//! The upload and validate paths: one streaming pass per file.
//!
//! ```text
//! handler (async)                        job (tracked task)
//!   auth, headers, key, rate limit
//!   multipart `file` part ──Bytes──▶ bounded channel ──▶ blocking thread:
//!                                       tee to staging/<id>.part + format engine
//!                                       invalid rows -> staging reject report
//!                                       fsync + rename (UPLOADED only)
//!                                     commit record (idempotent) ──▶ answer
//! ```
//!
//! Guarantees:
//! - Nothing of the body is read before the caller is authenticated, so
//!   `Expect: 100-continue` is answered only after the checks.
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

use std::collections::HashMap;
use std::io::{self, Read, Write};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::multipart::MultipartError;
use axum::extract::{FromRequest, Multipart, Request};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use bdia_format::engine::{process, Encoding, EngineError, FileReport, Limits, Options, RowEvent};
use bdia_format::row::RowRules;
use bdia_store::blob::{self, BlobStore, StagedFile};
use bdia_store::{CommitOutcome, FileRecord, FileStatus, NewFile, SuiteClaim};
use bytes::Bytes;
use serde::Serialize;
use tokio::sync::{mpsc, oneshot};

use crate::error::ApiError;
use crate::state::{AppState, Caller};

/// Body chunks buffered between the network and the engine.
pub const CHANNEL_CHUNKS: usize = 16;

/// Longest accepted visitor group id or idempotency key.
pub const MAX_HEADER_VALUE: usize = 255;

enum Msg {
    Data(Bytes),
    End,
    Fail(io::Error),
}

/// `Read` over the channel, copying every byte to the staged file.
struct ChannelRead {
    rx: mpsc::Receiver<Msg>,
    cur: Bytes,
    tee: Option<StagedFile>,
    ended: bool,
}

impl Read for ChannelRead {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        while self.cur.is_empty() {
            if self.ended {
                return Ok(0);
            }
            match self.rx.blocking_recv() {
                Some(Msg::Data(b)) => {
                    if let Some(t) = self.tee.as_mut() {
                        t.write_all(&b)?;
                    }
                    self.cur = b;
                }
                Some(Msg::End) => {
                    self.ended = true;
                    return Ok(0);
                }
                Some(Msg::Fail(e)) => return Err(e),
                None => {
                    return Err(io::Error::new(
                        io::ErrorKind::ConnectionAborted,
                        "upload aborted",
                    ))
                }
            }
        }
        let n = buf.len().min(self.cur.len());
        buf[..n].copy_from_slice(&self.cur[..n]);
        let _ = self.cur.split_to(n);
        Ok(n)
    }
}

/// The JSON shape of a file record (spec 2.1, plus our dates).
#[derive(Debug, Clone, Serialize)]
pub struct FileView {
    /// Server-made id.
    pub file_id: String,
    /// Visitor group.
    pub visitor_group_id: String,
    /// Compressed bytes.
    pub size: u64,
    /// Decompressed bytes.
    pub uncompressed_size: u64,
    /// Unix seconds.
    pub received_date: i64,
    /// Data rows.
    pub rows: u64,
    /// Rows that will be skipped.
    pub invalid_rows: u64,
    /// Multipart filename, empty when none.
    pub upload_name: String,
    /// Human text of the status.
    pub status: &'static str,
    /// `UPLOADED`, `REJECTED`, `PROCESSING`, `COMPLETE`, `ERROR`.
    pub status_code: FileStatus,
    /// Processing log.
    pub processing_log: String,
    /// The client's key or the file id.
    pub idempotency_key: String,
    /// Why the file was rejected (or failed).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// Unix seconds or null.
    pub processing_start_date: Option<i64>,
    /// Unix seconds or null.
    pub file_reader_complete_date: Option<i64>,
    /// Unix seconds or null.
    pub processing_end_date: Option<i64>,
}

/// Human text of a status.
pub fn status_text(s: FileStatus) -> &'static str {
    match s {
        FileStatus::Uploaded => "File uploaded successfully",
        FileStatus::Rejected => "File rejected",
        FileStatus::Processing => "File is being processed",
        FileStatus::Complete => "File processed",
        FileStatus::Error => "File processing failed",
    }
}

impl From<&FileRecord> for FileView {
    fn from(r: &FileRecord) -> Self {
        FileView {
            file_id: r.file_id.clone(),
            visitor_group_id: r.visitor_group_id.clone(),
            size: r.size,
            uncompressed_size: r.uncompressed_size,
            received_date: r.received_date,
            rows: r.rows,
            invalid_rows: r.invalid_rows,
            upload_name: r.upload_name.clone(),
            status: status_text(r.status),
            status_code: r.status,
            processing_log: r.processing_log.clone(),
            idempotency_key: r.idempotency_key.clone(),
            error: r.error.clone(),
            processing_start_date: r.processing_start_date,
            file_reader_complete_date: r.file_reader_complete_date,
            processing_end_date: r.processing_end_date,
        }
    }
}

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

fn multipart_error(e: axum::extract::multipart::MultipartError) -> ApiError {
    if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
        ApiError::PayloadTooLarge("Upload exceeds the size limit".into())
    } else {
        ApiError::BadRequest(format!("Malformed multipart body: {}", e.body_text()))
    }
}

/// Distinct report suites looked up in the database per file, at most;
/// further unknown ones are refused without a lookup.
pub const MAX_SUITE_LOOKUPS: usize = 10_000;

struct SuiteCache {
    known: HashMap<String, bool>,
    lookups: usize,
    new_suites: u32,
}

/// Row rules for a caller: its seed type and which suites it may write.
/// The caller's own suites are loaded up front; any other name is looked up
/// once per file. With `create`, unknown suites are created for the caller
/// when its company allows it, at most `max_new_report_suites_per_upload`
/// per file (rows naming more are invalid). Called from the blocking thread.
async fn row_rules(state: &AppState, caller: &Caller, create: bool) -> Result<RowRules, ApiError> {
    let store = state.store.clone();
    let company = caller.company.id.clone();
    let auto = caller.company.settings.auto_create_report_suites;
    let max_new = state.config.limits.max_new_report_suites_per_upload;
    let known: HashMap<String, bool> = store
        .list_report_suites(Some(&company))
        .await?
        .into_iter()
        .map(|r| (r.rsid, true))
        .collect();
    let handle = tokio::runtime::Handle::current();
    let cache = Mutex::new(SuiteCache {
        known,
        lookups: 0,
        new_suites: 0,
    });
    let policy = move |rsid: &str| -> bool {
        let Ok(mut c) = cache.lock() else {
            return false;
        };
        if let Some(v) = c.known.get(rsid) {
            return *v;
        }
        if c.lookups >= MAX_SUITE_LOOKUPS {
            return false;
        }
        c.lookups += 1;
        let may_add = auto && c.new_suites < max_new;
        let claim = handle.block_on(store.claim_report_suite(&company, rsid, create && may_add));
        let allowed = match claim {
            Ok(SuiteClaim::Owned) => true,
            Ok(SuiteClaim::Created) => {
                c.new_suites += 1;
                true
            }
            // Validation: would be created by an upload.
            Ok(SuiteClaim::Unknown) if !create && may_add => {
                c.new_suites += 1;
                true
            }
            Ok(SuiteClaim::Unknown | SuiteClaim::OtherCompany) => false,
            Err(e) => {
                tracing::error!(error = %e, "report suite lookup failed");
                false
            }
        };
        c.known.insert(rsid.to_string(), allowed);
        allowed
    };
    Ok(RowRules {
        seed_customer_id_type: caller.company.settings.seed_customer_id_type.clone(),
        allow_report_suite: Some(Arc::new(policy)),
    })
}

fn engine_options(state: &AppState, rules: RowRules) -> Options {
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
struct Pass {
    report: FileReport,
    first_invalid_row: Option<u64>,
    /// Published blob keys (UPLOADED files only).
    blob_key: Option<String>,
    rejects_key: Option<String>,
    by_kind: HashMap<&'static str, u64>,
}

#[derive(Debug)]
enum PassError {
    Interrupted(io::Error),
    Internal(String),
}

/// Runs the engine over the channel; stages and publishes when asked.
fn run_pass(
    rx: mpsc::Receiver<Msg>,
    opts: Options,
    staging: Option<(BlobStore, String)>,
) -> Result<Pass, PassError> {
    let internal = |e: &dyn std::fmt::Display| PassError::Internal(e.to_string());
    let (tee, mut rejects) = match &staging {
        Some((blobs, file_id)) => (
            Some(blobs.stage(file_id).map_err(|e| internal(&e))?),
            Some(RejectWriter::new(blobs, file_id).map_err(|e| internal(&e))?),
        ),
        None => (None, None),
    };
    let mut input = ChannelRead {
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
                w.write(row, problem.kind().code(), &problem.to_string(), record)?;
            }
        }
        Ok(())
    });
    let report = match result {
        Ok(r) => r,
        Err(EngineError::Input(e)) => return Err(PassError::Interrupted(e)),
        Err(e @ EngineError::Sink(_)) => return Err(internal(&e)),
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

/// Streams the `file` part into the channel. `Ok(false)`: the engine
/// stopped reading (a rejection); the rest of the part is then read and
/// dropped, up to `drain_cap` bytes, so that the client gets to read the
/// answer instead of a reset connection.
async fn stream_field(
    field: &mut axum::extract::multipart::Field<'_>,
    tx: &mpsc::Sender<Msg>,
    drain_cap: u64,
    idle: Duration,
) -> Result<bool, ApiError> {
    loop {
        match within(idle, field.chunk()).await {
            Ok(Some(b)) => {
                if tx.send(Msg::Data(b)).await.is_err() {
                    let mut drained = 0u64;
                    while drained < drain_cap {
                        match within(idle, field.chunk()).await {
                            Ok(Some(b)) => drained += b.len() as u64,
                            _ => break,
                        }
                    }
                    return Ok(false);
                }
            }
            Ok(None) => return Ok(true),
            Err(e) => return Err(fail(tx, e).await),
        }
    }
}

/// Waits for the next piece of the body, at most `idle`: a client that
/// stops sending is treated like one that disconnected.
async fn within<T>(
    idle: Duration,
    fut: impl std::future::Future<Output = Result<T, MultipartError>>,
) -> Result<T, ApiError> {
    match tokio::time::timeout(idle, fut).await {
        Ok(r) => r.map_err(multipart_error),
        Err(_) => Err(ApiError::BadRequest(format!(
            "Upload stalled: nothing received for {} s",
            idle.as_secs()
        ))),
    }
}

async fn fail(tx: &mpsc::Sender<Msg>, err: ApiError) -> ApiError {
    let _ = tx.send(Msg::Fail(io::Error::other(err.to_string()))).await;
    err
}

/// Streams the body: parts other than `file` are read and dropped, the
/// `file` part goes to the channel (its filename to `name`, first). A
/// missing or second `file` part is a 400. `End` is sent only when the
/// whole body was read cleanly; on any failure the consumer sees an error
/// (or a closed channel) and keeps nothing.
async fn pump(
    mp: &mut Multipart,
    tx: mpsc::Sender<Msg>,
    drain_cap: u64,
    idle: Duration,
    mut name: Option<oneshot::Sender<String>>,
) -> Result<(), ApiError> {
    let mut seen_file = false;
    loop {
        match within(idle, mp.next_field()).await {
            Ok(Some(mut f)) => {
                if f.name() == Some("file") {
                    if seen_file {
                        return Err(fail(
                            &tx,
                            ApiError::BadRequest(
                                "Duplicate 'file' part in the multipart body".into(),
                            ),
                        )
                        .await);
                    }
                    seen_file = true;
                    if let Some(n) = name.take() {
                        let _ = n.send(file_name_of(f.file_name()));
                    }
                    if !stream_field(&mut f, &tx, drain_cap, idle).await? {
                        return Ok(());
                    }
                } else {
                    loop {
                        match within(idle, f.chunk()).await {
                            Ok(Some(_)) => {}
                            Ok(None) => break,
                            Err(e) => return Err(fail(&tx, e).await),
                        }
                    }
                }
            }
            Ok(None) => break,
            Err(e) => return Err(fail(&tx, e).await),
        }
    }
    if !seen_file {
        return Err(ApiError::BadRequest(
            "Missing 'file' part in the multipart body".into(),
        ));
    }
    let _ = tx.send(Msg::End).await;
    Ok(())
}

fn file_name_of(mp_name: Option<&str>) -> String {
    mp_name.unwrap_or("").chars().take(1024).collect()
}

/// The multipart reader over the request body (reads nothing yet).
async fn open_multipart(state: &AppState, req: Request) -> Result<Multipart, ApiError> {
    Multipart::from_request(req, state).await.map_err(|_| {
        ApiError::BadRequest("Expected a multipart/form-data body with a 'file' part".into())
    })
}

fn record_metrics(pass: &Pass) {
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

/// `POST /aa/collect/v1/events`.
#[tracing::instrument(skip_all, fields(company, visitor_group, file_id))]
pub async fn upload(
    axum::extract::State(state): axum::extract::State<AppState>,
    req: Request,
) -> Result<Response, ApiError> {
    let (parts, body) = req.into_parts();
    let caller = state.authenticate(&parts.headers).await?;
    let span = tracing::Span::current();
    span.record("company", caller.company.id.as_str());
    let vgid = header_value(&parts.headers, "x-adobe-vgid")?
        .ok_or_else(|| ApiError::BadRequest("Missing x-adobe-vgid header".into()))?;
    span.record("visitor_group", vgid.as_str());
    let key = header_value(&parts.headers, "x-adobe-idempotency-key")?;
    if let Some(k) = &key {
        if let Some(existing) = state.store.find_by_key(&caller.company.id, k).await? {
            if existing.status != FileStatus::Rejected {
                metrics::counter!(crate::metrics::UPLOADS.name, "outcome" => "idempotent_replay")
                    .increment(1);
                return Ok(Json(FileView::from(&existing)).into_response());
            }
        }
    }
    if let Err(wait) = state.limiter.check(
        &caller.company.id,
        caller.company.settings.upload_rate_limit,
    ) {
        return Err(ApiError::RateLimited {
            retry_after_secs: wait.as_secs_f64().ceil() as u64,
        });
    }
    let mut mp = open_multipart(&state, Request::from_parts(parts, body)).await?;
    let (tx, rx) = mpsc::channel::<Msg>(CHANNEL_CHUNKS);
    let (name_tx, name_rx) = oneshot::channel::<String>();
    let file_id = uuid::Uuid::new_v4().to_string();
    span.record("file_id", file_id.as_str());
    let received_date = crate::auth::now();
    let opts = engine_options(&state, row_rules(&state, &caller, true).await?);
    let job = {
        let state = state.clone();
        let file_id = file_id.clone();
        let company = caller.company.id.clone();
        let key = key.clone();
        state.tasks.clone().spawn(async move {
            let blobs = state.blobs.clone();
            let staging = Some((blobs, file_id.clone()));
            let pass = tokio::task::spawn_blocking(move || run_pass(rx, opts, staging))
                .await
                .map_err(ApiError::internal)?;
            let pass = match pass {
                Ok(p) => p,
                Err(PassError::Interrupted(e)) => {
                    metrics::counter!(crate::metrics::UPLOADS.name, "outcome" => "interrupted")
                        .increment(1);
                    return Err(ApiError::BadRequest(format!("Upload interrupted: {e}")));
                }
                Err(PassError::Internal(e)) => return Err(ApiError::Internal(e)),
            };
            record_metrics(&pass);
            let upload_name = name_rx.await.unwrap_or_default();
            finish_upload(
                &state,
                pass,
                company,
                vgid,
                key,
                upload_name,
                file_id,
                received_date,
            )
            .await
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
    let outcome = job.await.map_err(ApiError::internal)?;
    pumped?;
    outcome
}

#[allow(clippy::too_many_arguments)]
async fn finish_upload(
    state: &AppState,
    pass: Pass,
    company: String,
    vgid: String,
    key: Option<String>,
    upload_name: String,
    file_id: String,
    received_date: i64,
) -> Result<Response, ApiError> {
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
    let record = FileRecord {
        file_id: file_id.clone(),
        company_id: company,
        visitor_group_id: vgid,
        idempotency_key: key.clone().unwrap_or_else(|| file_id.clone()),
        upload_name,
        size: report.size,
        uncompressed_size: report.uncompressed_size,
        received_date,
        rows: report.rows,
        invalid_rows: report.invalid_rows,
        status,
        error: report.rejection.as_ref().map(|e| e.to_string()),
        error_code: report.rejection.as_ref().map(|e| e.code().to_string()),
        processing_log: report.processing_log(),
        processing_start_date: None,
        file_reader_complete_date: None,
        processing_end_date: None,
        group_seq: None,
        blob_key: pass.blob_key.clone(),
        rejects_key: pass.rejects_key.clone(),
    };
    let undo = |state: &AppState| {
        for k in [&pass.blob_key, &pass.rejects_key].into_iter().flatten() {
            if let Err(e) = blob::remove_local(&state.blobs, k) {
                tracing::error!(error = %e, key = %k, "removing an uncommitted blob failed");
            }
        }
    };
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
            undo(state);
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
            Ok(Json(FileView::from(&rec)).into_response())
        }
        CommitOutcome::Existing(rec) => {
            undo(state);
            metrics::counter!(crate::metrics::UPLOADS.name, "outcome" => "idempotent_replay")
                .increment(1);
            Ok(Json(FileView::from(&rec)).into_response())
        }
    }
}

/// `POST /aa/collect/v1/events/validate`.
#[tracing::instrument(skip_all, fields(company))]
pub async fn validate(
    axum::extract::State(state): axum::extract::State<AppState>,
    req: Request,
) -> Result<Response, ApiError> {
    let (parts, body) = req.into_parts();
    let caller = state.authenticate(&parts.headers).await?;
    tracing::Span::current().record("company", caller.company.id.as_str());
    let mut mp = open_multipart(&state, Request::from_parts(parts, body)).await?;
    let (tx, rx) = mpsc::channel::<Msg>(CHANNEL_CHUNKS);
    let opts = engine_options(&state, row_rules(&state, &caller, false).await?);
    let job = tokio::task::spawn_blocking(move || run_pass(rx, opts, None));
    let pumped = pump(
        &mut mp,
        tx,
        state.config.limits.max_compressed_bytes,
        Duration::from_secs(state.config.upload_idle_timeout_secs),
        None,
    )
    .await;
    let pass = job.await.map_err(ApiError::internal)?;
    pumped?;
    let pass = match pass {
        Ok(p) => p,
        Err(PassError::Interrupted(e)) => {
            return Err(ApiError::BadRequest(format!("Upload interrupted: {e}")))
        }
        Err(PassError::Internal(e)) => return Err(ApiError::Internal(e)),
    };
    let report = &pass.report;
    if report.rejection.as_ref().is_some_and(|r| r.is_too_large()) {
        let reason = report.rejection.as_ref().map(ToString::to_string);
        return Err(ApiError::PayloadTooLarge(reason.unwrap_or_default()));
    }
    // The answer of the contract (`success` or `error`), plus the counts and
    // the processing log of the same check (ours; clients ignore extra fields).
    let (status, key, message) = if let Some(r) = &report.rejection {
        (StatusCode::BAD_REQUEST, "error", r.to_string())
    } else if report.invalid_rows > 0 {
        (
            StatusCode::BAD_REQUEST,
            "error",
            format!(
                "File has {} rows that do not conform to the required CSV format! (Ex: row #{})",
                report.invalid_rows,
                pass.first_invalid_row.unwrap_or(1)
            ),
        )
    } else {
        (StatusCode::OK, "success", "File is valid".to_string())
    };
    let body = serde_json::json!({
        key: message,
        "size": report.size,
        "rows": report.rows,
        "invalid_rows": report.invalid_rows,
        "status_code": report.status_code(),
        "processing_log": report.processing_log(),
    });
    Ok((status, Json(body)).into_response())
}
