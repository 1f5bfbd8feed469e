//! Group control over HTTP: pause, resume and cancel a visitor group, its
//! view, and the queue place and estimate of waiting files.
//!
//! Everything is scoped to the caller's company: a group is (company,
//! visitor group id), so another company's group of the same id is another
//! group, and a group the company never used is not found (404). The state
//! lives in the metadata store, so every node sees it; claims skip a paused
//! group on every node.
//!
//! Queue estimate of a waiting (`UPLOADED`) file, added to its record by
//! [`annotate_queue`]: `files_ahead`/`rows_ahead` are the group's
//! `PROCESSING` file and its `UPLOADED` files of lower `group_seq`. The
//! rate is the company's measured rate, rows / seconds over its latest
//! [`RATE_FILES`] `COMPLETE` files (seconds: processing end minus start, at
//! least 1 per file), capped by its `rows_per_second` throttle; either
//! alone when the other is missing; no rate, no estimate. Then
//! `estimated_start = now + rows_ahead / rate` and `estimated_finish =
//! now + (rows_ahead + rows) / rate`. A paused group or one stopped by an
//! `ERROR` file gives no estimate (`queue_state` says which). The cost of
//! one request: one rate query, one queue query per group among the
//! answered files.

use std::collections::BTreeMap;

use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::Json;
use bdia_store::{GroupAction, GroupRef, MetadataStore};
use bdia_wire::{FileStatus, GroupState, GroupView, QueuePosition, QueueState};

use crate::error::ApiError;
use crate::extract::{ApiPath, GroupParam};
use crate::state::{AppState, Caller};

/// Recent `COMPLETE` files the measured processing rate is taken over.
pub const RATE_FILES: u32 = 20;

fn group_of(caller: &Caller, vgid: &str) -> GroupRef {
    GroupRef {
        company_id: caller.company.id.clone(),
        visitor_group_id: vgid.to_string(),
    }
}

/// The view of a group; 404 for one the company never used.
pub async fn group_view(
    store: &dyn MetadataStore,
    group: &GroupRef,
) -> Result<GroupView, ApiError> {
    let info = store.group_info(group).await?.ok_or_else(|| {
        ApiError::NotFound(format!(
            "Visitor group '{}' not found",
            group.visitor_group_id
        ))
    })?;
    Ok(GroupView::from(&info))
}

/// `GET /aa/collect/v1/groups/{vgid}`: the group's state, waiting files
/// and rows, the file in progress, the last error and the actions taken.
#[tracing::instrument(skip_all)]
pub async fn show(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(GroupParam(vgid)): ApiPath<GroupParam>,
) -> Result<Response, ApiError> {
    let view = group_view(&*state.store, &group_of(&caller, &vgid)).await?;
    Ok(Json(view).into_response())
}

/// Applies `action` for the caller and answers the group's view.
async fn act(
    state: AppState,
    caller: Caller,
    vgid: String,
    action: GroupAction,
) -> Result<Response, ApiError> {
    let group = group_of(&caller, &vgid);
    let done = state
        .store
        .control_group(&group, action, &caller.client.client_id, crate::auth::now())
        .await
        .map_err(|e| match e {
            bdia_store::StoreError::NotFound(_) => {
                ApiError::NotFound(format!("Visitor group '{vgid}' not found"))
            }
            e => e.into(),
        })?;
    // `?`: the group comes from the path; logged escaped, it cannot forge lines.
    tracing::info!(visitor_group = ?vgid, action = %action, files = done.files, actor = %caller.client.client_id, "group action");
    if action != GroupAction::Pause {
        state.processing.wake();
    }
    let view = group_view(&*state.store, &group).await?;
    Ok(Json(view).into_response())
}

/// `POST /aa/collect/v1/groups/{vgid}/pause`: no file of the group starts
/// processing until it is resumed (a running one finishes); uploads are
/// still accepted.
#[tracing::instrument(skip_all)]
pub async fn pause(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(GroupParam(vgid)): ApiPath<GroupParam>,
) -> Result<Response, ApiError> {
    act(state, caller, vgid, GroupAction::Pause).await
}

/// `POST /aa/collect/v1/groups/{vgid}/resume`: the group runs again.
#[tracing::instrument(skip_all)]
pub async fn resume(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(GroupParam(vgid)): ApiPath<GroupParam>,
) -> Result<Response, ApiError> {
    act(state, caller, vgid, GroupAction::Resume).await
}

/// `POST /aa/collect/v1/groups/{vgid}/cancel`: the group's waiting (and
/// failed) files become `CANCELLED` and are never processed; the group
/// runs again, so later uploads are processed.
#[tracing::instrument(skip_all)]
pub async fn cancel(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(GroupParam(vgid)): ApiPath<GroupParam>,
) -> Result<Response, ApiError> {
    act(state, caller, vgid, GroupAction::Cancel).await
}

/// Rows per second the company's queue moves at: the measured rate capped
/// by the throttle; `None` when neither is known.
fn queue_rate(measured: Option<bdia_store::ProcessingRate>, throttle: Option<u64>) -> Option<f64> {
    let measured = measured
        .filter(|r| r.seconds > 0 && r.rows > 0)
        .map(|r| r.rows as f64 / r.seconds as f64);
    let throttle = throttle.filter(|t| *t > 0).map(|t| t as f64);
    match (measured, throttle) {
        (Some(m), Some(t)) => Some(m.min(t)),
        (m, t) => m.or(t),
    }
}

/// Adds the queue place and estimate to every `UPLOADED` record of
/// `records` (all of `company_id`, whose throttle is `throttle`): one rate query, one queue query per
/// group.
pub async fn annotate_queue(
    store: &dyn MetadataStore,
    company_id: &str,
    throttle: Option<u64>,
    records: &mut [bdia_wire::FileRecord],
    now: i64,
) -> Result<(), ApiError> {
    let mut groups: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for r in records
        .iter()
        .filter(|r| r.status_code == FileStatus::Uploaded)
    {
        groups
            .entry(r.visitor_group_id.clone())
            .or_default()
            .push(r.file_id.clone());
    }
    if groups.is_empty() {
        return Ok(());
    }
    let rate = queue_rate(
        store.processing_rate(company_id, RATE_FILES).await?,
        throttle,
    );
    let mut places = BTreeMap::new();
    for (vgid, ids) in groups {
        let group = GroupRef {
            company_id: company_id.to_string(),
            visitor_group_id: vgid,
        };
        let queue = store.group_queue(&group, &ids).await?;
        let queue_state = match (queue.state, queue.stopped) {
            (GroupState::Paused, _) => QueueState::Paused,
            (_, true) => QueueState::Stopped,
            _ => QueueState::Waiting,
        };
        for e in queue.entries {
            places.insert(e.file_id, (e.files_ahead, e.rows_ahead, queue_state));
        }
    }
    let at = |rows: u64, rate: f64| {
        bdia_wire::time::rfc3339_utc(now.saturating_add((rows as f64 / rate).ceil() as i64))
    };
    for r in records.iter_mut() {
        let Some(&(files_ahead, rows_ahead, queue_state)) = places.get(&r.file_id) else {
            continue;
        };
        let rate = rate.filter(|_| queue_state == QueueState::Waiting);
        r.queue = Some(QueuePosition {
            files_ahead,
            rows_ahead,
            estimated_start: rate.map(|rate| at(rows_ahead, rate)),
            estimated_finish: rate.map(|rate| at(rows_ahead.saturating_add(r.rows), rate)),
            queue_state,
        });
    }
    Ok(())
}

/// One of the caller's records as the API sends it, with its queue place
/// when it waits.
pub async fn answer_for(
    state: &AppState,
    caller: &Caller,
    rec: &bdia_store::FileRecord,
) -> Result<bdia_wire::FileRecord, ApiError> {
    let settings = &caller.company.settings;
    answer_record(
        &*state.store,
        &caller.company.id,
        settings.rows_per_second,
        rec,
    )
    .await
}

/// One record as the API sends it, with its queue place when it waits.
pub async fn answer_record(
    store: &dyn MetadataStore,
    company_id: &str,
    throttle: Option<u64>,
    rec: &bdia_store::FileRecord,
) -> Result<bdia_wire::FileRecord, ApiError> {
    let mut out = [bdia_wire::FileRecord::from(rec)];
    annotate_queue(store, company_id, throttle, &mut out, crate::auth::now()).await?;
    let [out] = out;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use bdia_store::ProcessingRate;

    #[test]
    fn the_rate_is_the_measured_one_capped_by_the_throttle() {
        let m = |rows, seconds| {
            Some(ProcessingRate {
                rows,
                seconds,
                files: 1,
            })
        };
        assert_eq!(queue_rate(m(1000, 10), None), Some(100.0));
        assert_eq!(queue_rate(m(1000, 10), Some(50)), Some(50.0));
        assert_eq!(queue_rate(m(1000, 10), Some(500)), Some(100.0));
        assert_eq!(queue_rate(None, Some(7)), Some(7.0));
        assert_eq!(queue_rate(None, None), None);
        assert_eq!(queue_rate(m(0, 10), Some(0)), None);
    }
}
