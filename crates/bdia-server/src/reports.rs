//! Reports and console data: `/api/v1/...`, same authentication as the
//! ingestion API, always scoped to the caller's company. Report suite IDs
//! are per company: `{rsid}` names the caller's suite of that ID, and a
//! report reads only the caller's company's lake partitions, so whether
//! another company has a suite of that ID changes no answer.
//!
//! - `GET /api/v1/report-suites`: the caller's suites with their time zones
//!   and settings; `GET|PATCH /api/v1/report-suites/{rsid}`: one suite, and
//!   a change of its settings (`{"accept_single_hits": true}`).
//! - `GET /api/v1/report-suites/{rsid}/report?metrics=&dimension=&from=&to=&limit=&include_bots=`:
//!   a report over the suite's committed lake data ([`bdia_report`]).
//! - `GET /api/v1/groups`: per visitor group, the queue depth, the file in
//!   progress, the last completed file and its rows per second.
//!
//! The server's one [`ReportEngine`] lives in [`AppState::reports`] for the
//! life of the server, so the Parquet metadata cache is shared by every
//! report.

use std::collections::{BTreeMap, HashMap};

use axum::extract::rejection::{JsonRejection, QueryRejection};
use axum::extract::{Query, State};
use axum::response::{IntoResponse, Response};
use axum::Json;
use bdia_report::{ReportError, ReportRequest};
use bdia_store::{FileQuery, FileRecord, FileStatus};
use bdia_wire::{Group, Groups, ReportSuite, ReportSuites, SuiteSettings};

use crate::error::ApiError;
use crate::extract::{ApiPath, SuiteParam};
use crate::state::{AppState, Caller};

impl From<ReportError> for ApiError {
    fn from(e: ReportError) -> Self {
        match e {
            ReportError::Invalid { message, .. } => ApiError::BadRequest(message),
            e if e.is_memory_limit() => ApiError::Busy {
                message: "The report needs more memory than reports may use now \
                          (reports.memory_limit_bytes); retry later or narrow the \
                          date range"
                    .into(),
                retry_after_secs: 5,
                server_wide: true,
            },
            other => ApiError::Internal(other.to_string()),
        }
    }
}

/// `GET /api/v1/report-suites`.
#[tracing::instrument(skip_all)]
pub async fn report_suites(
    State(state): State<AppState>,
    caller: Caller,
) -> Result<Response, ApiError> {
    let suites = state
        .store
        .list_report_suites(Some(&caller.company.id))
        .await?;
    let report_suites = suites.into_iter().map(suite_answer).collect();
    Ok(Json(ReportSuites { report_suites }).into_response())
}

fn suite_answer(s: bdia_store::ReportSuite) -> ReportSuite {
    ReportSuite {
        rsid: s.rsid,
        time_zone: s.time_zone,
        accept_single_hits: s.accept_single_hits,
        internal_url_filters: s.internal_url_filters,
        evar_settings: s
            .evar_settings
            .into_iter()
            .map(|e| bdia_wire::EvarSetting {
                evar: e.evar,
                expiration: e.expiration.to_string(),
                allocation: e.allocation.as_str().to_string(),
            })
            .collect(),
    }
}

/// Checks and reads a suite's eVar settings: each eVar 1 to 250 at most
/// once, a known expiration and allocation. Settings equal to the
/// defaults are dropped.
pub fn parse_evar_settings(
    list: &[bdia_wire::EvarSetting],
) -> Result<Vec<bdia_model::conversion::EvarSetting>, String> {
    use bdia_model::conversion::EvarSetting;
    let mut out: Vec<EvarSetting> = Vec::with_capacity(list.len());
    let mut named = std::collections::HashSet::new();
    for e in list {
        if !(1..=bdia_format::fields::MAX_EVAR).contains(&e.evar) {
            return Err(format!("eVar {}: the eVar number is 1 to 250", e.evar));
        }
        if !named.insert(e.evar) {
            return Err(format!("eVar {} is set twice", e.evar));
        }
        let setting = EvarSetting {
            evar: e.evar,
            expiration: e
                .expiration
                .parse()
                .map_err(|m| format!("eVar {}: {m}", e.evar))?,
            allocation: e
                .allocation
                .parse()
                .map_err(|m| format!("eVar {}: {m}", e.evar))?,
        };
        if setting != EvarSetting::default_for(e.evar) {
            out.push(setting);
        }
    }
    out.sort_by_key(|s| s.evar);
    Ok(out)
}

/// Most internal URL filters a suite may have.
pub const MAX_INTERNAL_URL_FILTERS: usize = 100;

/// Checks internal URL filters: at most [`MAX_INTERNAL_URL_FILTERS`], each
/// 1 to 255 characters without whitespace or commas.
pub fn check_internal_url_filters(filters: &[String]) -> Result<(), String> {
    if filters.len() > MAX_INTERNAL_URL_FILTERS {
        return Err(format!(
            "at most {MAX_INTERNAL_URL_FILTERS} internal URL filters, not {}",
            filters.len()
        ));
    }
    for f in filters {
        if f.is_empty() || f.len() > 255 || f.chars().any(|c| c.is_whitespace() || c == ',') {
            return Err(format!(
                "internal URL filter '{f}': 1 to 255 characters without spaces or commas"
            ));
        }
    }
    Ok(())
}

/// `GET /api/v1/report-suites/{rsid}`: one of the caller's suites.
#[tracing::instrument(skip_all)]
pub async fn report_suite(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(SuiteParam(rsid)): ApiPath<SuiteParam>,
) -> Result<Response, ApiError> {
    let suite = state
        .store
        .get_report_suite(&caller.company.id, rsid.as_str())
        .await?
        .ok_or_else(|| no_suite(rsid.as_str()))?;
    Ok(Json(suite_answer(suite)).into_response())
}

fn no_suite(rsid: &str) -> ApiError {
    ApiError::NotFound(format!("No report suite '{rsid}'"))
}

/// `PATCH /api/v1/report-suites/{rsid}` with [`SuiteSettings`]: changes a
/// suite's settings and answers the suite. Turning single hits on for an
/// rsid whose single hits another company's suite takes is 409
/// `single_hits_taken`.
#[tracing::instrument(skip_all)]
pub async fn update_report_suite(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(SuiteParam(rsid)): ApiPath<SuiteParam>,
    body: Result<Json<SuiteSettings>, JsonRejection>,
) -> Result<Response, ApiError> {
    let Json(body) = body.map_err(|e| ApiError::Invalid {
        code: "malformed_body",
        message: format!(
            "Expected a JSON body (Content-Type: application/json) such as {{\"accept_single_hits\": true}}: {}",
            e.body_text()
        ),
    })?;
    let company = &caller.company.id;
    let mut suite = state
        .store
        .get_report_suite(company, rsid.as_str())
        .await?
        .ok_or_else(|| no_suite(rsid.as_str()))?;
    if let Some(on) = body.accept_single_hits {
        if on != suite.accept_single_hits {
            suite = match state
                .store
                .set_accept_single_hits(company, rsid.as_str(), on)
                .await
            {
                Ok(s) => s,
                Err(bdia_store::StoreError::Conflict(message)) => {
                    return Err(ApiError::Conflict {
                        code: "single_hits_taken",
                        message,
                    })
                }
                Err(e) => return Err(e.into()),
            };
            tracing::info!(report_suite = %rsid.as_str(), accept_single_hits = on, "report suite settings changed");
        }
    }
    if let Some(filters) = body.internal_url_filters {
        check_internal_url_filters(&filters).map_err(|message| ApiError::Invalid {
            code: "invalid_internal_url_filters",
            message,
        })?;
        if filters != suite.internal_url_filters {
            suite = state
                .store
                .set_internal_url_filters(company, rsid.as_str(), &filters)
                .await?;
            tracing::info!(report_suite = %rsid.as_str(), filters = filters.len(), "internal URL filters changed");
        }
    }
    if let Some(list) = body.evar_settings {
        let settings = parse_evar_settings(&list).map_err(|message| ApiError::Invalid {
            code: "invalid_evar_settings",
            message,
        })?;
        if settings != suite.evar_settings {
            suite = state
                .store
                .set_evar_settings(company, rsid.as_str(), &settings)
                .await?;
            tracing::info!(report_suite = %rsid.as_str(), evars = settings.len(), "eVar settings changed");
        }
    }
    Ok(Json(suite_answer(suite)).into_response())
}

/// `GET /api/v1/report-suites/{rsid}/report`.
#[tracing::instrument(skip_all, fields(report_suite))]
pub async fn report(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(SuiteParam(rsid)): ApiPath<SuiteParam>,
    q: Result<Query<HashMap<String, String>>, QueryRejection>,
) -> Result<Response, ApiError> {
    tracing::Span::current().record("report_suite", tracing::field::debug(rsid.as_str()));
    let Query(q) = q.map_err(|_| ApiError::BadRequest("Malformed query string".into()))?;
    let company = caller.company.id.as_str();
    let suite = state
        .store
        .get_report_suite(company, rsid.as_str())
        .await?
        .ok_or_else(|| ApiError::NotFound("Report suite not found".into()))?;
    let get = |k: &str| q.get(k).map(String::as_str);
    let req = ReportRequest::parse(
        &suite.rsid,
        get("metrics"),
        get("dimension"),
        get("from"),
        get("to"),
        get("limit"),
    )?
    .with_include_bots(get("include_bots"))?;
    let started = std::time::Instant::now();
    let report = run_bounded(&state, company, &req, &suite.time_zone).await?;
    metrics::histogram!(crate::metrics::REPORT_SECONDS.name)
        .record(started.elapsed().as_secs_f64());
    Ok(Json(bdia_wire::Report::from(&report)).into_response())
}

/// Runs a report within the report limits: the company's report rate,
/// then a report slot (waited for), and the whole within
/// `reports.timeout_secs`. A report stopped by the time limit is dropped,
/// which cancels its scan.
async fn run_bounded(
    state: &AppState,
    company: &str,
    req: &ReportRequest,
    time_zone: &str,
) -> Result<bdia_report::Report, ApiError> {
    state
        .report_limiter
        .admit(company, bdia_store::RateLimitSetting::Default)?;
    let limit = std::time::Duration::from_secs(state.config.reports.timeout_secs);
    let deadline = tokio::time::Instant::now() + limit;
    let slots = &state.report_slots;
    let _slot = slots
        .take_within(company, limit)
        .await
        .map_err(|full| slots.refusal(full, 1))?;
    match tokio::time::timeout_at(deadline, state.reports.run(company, req, time_zone)).await {
        Ok(r) => Ok(r?),
        Err(_) => Err(ApiError::Busy {
                message: format!(
                    "The report did not finish within {} s (reports.timeout_secs); narrow the date range or retry later",
                    limit.as_secs()
                ),
            retry_after_secs: 5,
            server_wide: true,
        }),
    }
}

fn view<'a>(groups: &'a mut BTreeMap<String, Group>, g: &str) -> &'a mut Group {
    groups.entry(g.to_string()).or_insert_with(|| Group {
        visitor_group_id: g.to_string(),
        ..Group::default()
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
pub async fn groups(State(state): State<AppState>, caller: Caller) -> Result<Response, ApiError> {
    let company = caller.company.id.as_str();
    let mut by_group: BTreeMap<String, Group> = BTreeMap::new();
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
    let groups = by_group.into_values().collect();
    Ok(Json(Groups { groups }).into_response())
}
