//! HTTP endpoints of the processing stage: a file's reject report and the
//! retry of a stopped visitor group. Both are scoped to the caller's
//! company: another company's file or group is not found.

use axum::body::Body;
use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use axum::Json;
use bdia_store::GroupRef;

use crate::error::ApiError;
use crate::extract::{ApiPath, FileIdParam, GroupParam};
use crate::state::{AppState, Caller};

/// Header of every reject report.
pub const REJECTS_HEADER: &str = "row,kind,message,raw\n";

/// `GET /aa/collect/v1/events/{file_id}/rejects`: the file's reject report
/// as CSV (`row,kind,message,raw`: the first invalid rows, then a count line
/// per kind left out); only the header when the file had no invalid rows.
/// Streamed from the blob store: a report is never held whole, so slow
/// readers cost a few buffers each.
#[tracing::instrument(skip_all)]
pub async fn rejects(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(FileIdParam(file_id)): ApiPath<FileIdParam>,
) -> Result<Response, ApiError> {
    let rec = crate::handlers::callers_file(&state, &caller, &file_id).await?;
    let body = match &rec.rejects_key {
        Some(key) => Body::from_stream(state.blobs.get_stream(key).await?),
        None => Body::from(REJECTS_HEADER),
    };
    Ok((
        [
            (header::CONTENT_TYPE, "text/csv; charset=utf-8".to_string()),
            (
                header::CONTENT_DISPOSITION,
                format!("attachment; filename=\"{}-rejects.csv\"", rec.file_id),
            ),
        ],
        body,
    )
        .into_response())
}

/// Answer of a group retry.
pub use bdia_wire::RetryAnswer;

/// `POST /aa/collect/v1/groups/{vgid}/retry`: restarts a visitor group
/// stopped by a failed file; the file is processed again, then the rest.
#[tracing::instrument(skip_all)]
pub async fn retry_group(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(GroupParam(vgid)): ApiPath<GroupParam>,
) -> Result<Response, ApiError> {
    let retried = state
        .store
        .retry_group(&GroupRef {
            company_id: caller.company.id.clone(),
            visitor_group_id: vgid.clone(),
        })
        .await?;
    // `?`: the group comes from the path; logged escaped, it cannot forge lines.
    tracing::info!(visitor_group = ?vgid, retried, "group retried");
    state.processing.wake();
    Ok(Json(RetryAnswer {
        visitor_group_id: vgid,
        retried,
    })
    .into_response())
}
