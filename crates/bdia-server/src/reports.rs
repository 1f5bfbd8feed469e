//! Reports and console data: `/api/v1/...`, same authentication as the
//! ingestion API, always scoped to the caller's company (another company's
//! report suite is not found).
//!
//! - `GET /api/v1/report-suites`: the caller's suites with their time zones.
//! - `GET /api/v1/report-suites/{rsid}/report?metrics=&dimension=&from=&to=&limit=`:
//!   a report over the suite's committed lake data ([`bdia_report`]).
//! - `GET /api/v1/groups`: per visitor group, the queue depth, the file in
//!   progress, the last completed file and its rows per second.
//!
//! One [`ReportEngine`] per data dir is kept for the life of the process,
//! so the Parquet metadata cache is shared by every report.

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::{Mutex, OnceLock};

use axum::extract::rejection::{PathRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::response::{IntoResponse, Response};
use axum::Json;
use bdia_report::{ReportEngine, ReportError, ReportRequest};
use bdia_store::{FileQuery, FileRecord, FileStatus};
use serde::Serialize;

use crate::error::ApiError;
use crate::state::AppState;

/// The report engine of this server's lake.
fn engine(state: &AppState) -> Result<ReportEngine, ApiError> {
    static ENGINES: OnceLock<Mutex<HashMap<PathBuf, ReportEngine>>> = OnceLock::new();
    let mut engines = ENGINES
        .get_or_init(Default::default)
        .lock()
        .map_err(|_| ApiError::internal("report engines lock poisoned"))?;
    if let Some(e) = engines.get(&state.config.data_dir) {
        return Ok(e.clone());
    }
    let e = ReportEngine::new(state.processing.lake().clone()).map_err(ApiError::internal)?;
    engines.insert(state.config.data_dir.clone(), e.clone());
    Ok(e)
}

impl From<ReportError> for ApiError {
    fn from(e: ReportError) -> Self {
        match e {
            ReportError::Invalid { message, .. } => ApiError::BadRequest(message),
            other => ApiError::Internal(other.to_string()),
        }
    }
}

/// A report suite as the console lists it.
#[derive(Debug, Serialize)]
pub struct SuiteView {
    /// Report suite id.
    pub rsid: String,
    /// IANA time zone of its days and hours.
    pub time_zone: String,
}

/// `GET /api/v1/report-suites`.
#[tracing::instrument(skip_all)]
pub async fn report_suites(
    State(state): State<AppState>,
    headers: axum::http::HeaderMap,
) -> Result<Response, ApiError> {
    let caller = state.authenticate(&headers).await?;
    let suites = state
        .store
        .list_report_suites(Some(&caller.company.id))
        .await?;
    let out: Vec<SuiteView> = suites
        .into_iter()
        .map(|s| SuiteView {
            rsid: s.rsid,
            time_zone: s.time_zone,
        })
        .collect();
    Ok(Json(serde_json::json!({ "report_suites": out })).into_response())
}

/// `GET /api/v1/report-suites/{rsid}/report`.
#[tracing::instrument(skip_all, fields(report_suite))]
pub async fn report(
    State(state): State<AppState>,
    headers: axum::http::HeaderMap,
    rsid: Result<Path<String>, PathRejection>,
    q: Result<Query<HashMap<String, String>>, QueryRejection>,
) -> Result<Response, ApiError> {
    let caller = state.authenticate(&headers).await?;
    let Path(rsid) = rsid.map_err(|_| ApiError::BadRequest("Malformed report suite id".into()))?;
    tracing::Span::current().record("report_suite", rsid.as_str());
    let Query(q) = q.map_err(|_| ApiError::BadRequest("Malformed query string".into()))?;
    let suite = state
        .store
        .get_report_suite(&rsid)
        .await?
        .filter(|s| s.company_id == caller.company.id)
        .ok_or_else(|| ApiError::NotFound("Report suite not found".into()))?;
    let get = |k: &str| q.get(k).map(String::as_str);
    let req = ReportRequest::parse(
        &suite.rsid,
        get("metrics"),
        get("dimension"),
        get("from"),
        get("to"),
        get("limit"),
    )?;
    let started = std::time::Instant::now();
    let report = engine(&state)?.run(&req, &suite.time_zone).await?;
    metrics::histogram!(crate::metrics::REPORT_SECONDS.name)
        .record(started.elapsed().as_secs_f64());
    Ok(Json(report).into_response())
}

/// One visitor group of the caller's company.
#[derive(Debug, Default, Serialize)]
pub struct GroupView {
    /// Visitor group id.
    pub visitor_group_id: String,
    /// Files waiting (`UPLOADED`).
    pub queued: u64,
    /// The file being processed, if any.
    pub in_progress: Option<String>,
    /// Files stopped on `ERROR`.
    pub errors: u64,
    /// The most recently completed file.
    pub last_completed: Option<String>,
    /// When it completed (unix seconds).
    pub last_completed_date: Option<i64>,
    /// Rows per second of that file (valid rows / processing time, at
    /// least one second).
    pub rows_per_second: Option<f64>,
    /// Files known in the group (of the listing's window).
    pub files: u64,
}

fn view<'a>(groups: &'a mut BTreeMap<String, GroupView>, g: &str) -> &'a mut GroupView {
    groups.entry(g.to_string()).or_insert_with(|| GroupView {
        visitor_group_id: g.to_string(),
        ..GroupView::default()
    })
}

/// Most files looked at per status for `/api/v1/groups`.
const GROUP_WINDOW: u32 = 1000;

async fn files_with(
    state: &AppState,
    company: &str,
    status: FileStatus,
) -> Result<Vec<FileRecord>, ApiError> {
    let page = state
        .store
        .list_files(
            company,
            &FileQuery {
                visitor_group_id: None,
                status: Some(status),
                limit: GROUP_WINDOW,
                cursor: None,
            },
        )
        .await?;
    Ok(page.files)
}

/// `GET /api/v1/groups`: the visitor groups with queued, in-progress,
/// failed or recently completed files (the newest 1,000 files of each
/// status are looked at).
#[tracing::instrument(skip_all)]
pub async fn groups(
    State(state): State<AppState>,
    headers: axum::http::HeaderMap,
) -> Result<Response, ApiError> {
    let caller = state.authenticate(&headers).await?;
    let company = caller.company.id.as_str();
    let mut by_group: BTreeMap<String, GroupView> = BTreeMap::new();
    for f in files_with(&state, company, FileStatus::Uploaded).await? {
        let v = view(&mut by_group, &f.visitor_group_id);
        v.queued += 1;
        v.files += 1;
    }
    for f in files_with(&state, company, FileStatus::Processing).await? {
        let v = view(&mut by_group, &f.visitor_group_id);
        v.in_progress = Some(f.file_id.clone());
        v.files += 1;
    }
    for f in files_with(&state, company, FileStatus::Error).await? {
        let v = view(&mut by_group, &f.visitor_group_id);
        v.errors += 1;
        v.files += 1;
    }
    for f in files_with(&state, company, FileStatus::Complete).await? {
        let v = view(&mut by_group, &f.visitor_group_id);
        v.files += 1;
        let end = f.processing_end_date;
        if end > v.last_completed_date || v.last_completed.is_none() {
            v.last_completed = Some(f.file_id.clone());
            v.last_completed_date = end;
            v.rows_per_second = match (f.processing_start_date, end) {
                (Some(s), Some(e)) => {
                    let rows = f.rows.saturating_sub(f.invalid_rows) as f64;
                    Some(rows / (e - s).max(1) as f64)
                }
                _ => None,
            };
        }
    }
    let out: Vec<GroupView> = by_group.into_values().collect();
    Ok(Json(serde_json::json!({ "groups": out })).into_response())
}
