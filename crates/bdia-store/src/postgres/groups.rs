//! Group control: pause, resume and cancel, the group view, queue places
//! and the measured processing rate.
//!
//! A group's state is `visitor_groups.paused`; claims
//! ([`super::leases`], [`super::processing`]) skip a paused group. An
//! action locks the group's row (creating it, `last_seq` 0, for a group
//! that never had a file to process), so it is ordered with the claims and
//! uploads of the group, and records itself in `group_actions` in the same
//! transaction.

use deadpool_postgres::GenericClient;

use super::files::{files_from_rows, FILE_COLUMNS};
use super::{big, db, exec, map_rows, query_all, query_one, query_opt};
use crate::common::{group_actions, group_state};
use crate::{
    cancel_reason, FileStatus, GroupAction, GroupActionRecord, GroupInfo, GroupQueue, GroupRef,
    GroupState, ProcessingRate, QueueEntry, StoreError, StoreResult, GROUP_ACTIONS_SHOWN,
    GROUP_CANCELLED,
};

/// True when the group is paused (no row: never paused).
pub(super) async fn is_paused(c: &impl GenericClient, group: &GroupRef) -> StoreResult<bool> {
    let row = query_opt(
        c,
        "read a group's state",
        "SELECT paused FROM visitor_groups WHERE company_id = $1 AND visitor_group_id = $2",
        &[&group.company_id, &group.visitor_group_id],
    )
    .await?;
    Ok(match row {
        Some(r) => r.try_get("paused").map_err(db("read a group's state"))?,
        None => false,
    })
}

/// True when the company used the group: a file record or a group row.
async fn is_known(c: &impl GenericClient, group: &GroupRef) -> StoreResult<bool> {
    query_one(
        c,
        "look a group up",
        "SELECT EXISTS (SELECT 1 FROM files WHERE company_id = $1 AND visitor_group_id = $2) \
         OR EXISTS (SELECT 1 FROM visitor_groups WHERE company_id = $1 \
           AND visitor_group_id = $2) AS known",
        &[&group.company_id, &group.visitor_group_id],
    )
    .await?
    .try_get("known")
    .map_err(db("look a group up"))
}

pub(super) async fn control_group(
    conn: &mut deadpool_postgres::Object,
    group: &GroupRef,
    action: GroupAction,
    actor: &str,
    now: i64,
) -> StoreResult<GroupActionRecord> {
    let tx = conn
        .transaction()
        .await
        .map_err(db("begin a group action"))?;
    let (c, g) = (&group.company_id, &group.visitor_group_id);
    if !is_known(&tx, group).await? {
        return Err(StoreError::NotFound(format!("visitor group '{g}'")));
    }
    let paused = action.state_after() == GroupState::Paused;
    // The upsert locks the row: claims and uploads of the group wait.
    exec(
        &tx,
        "set a group's state",
        "INSERT INTO visitor_groups (company_id, visitor_group_id, last_seq, paused) \
         VALUES ($1, $2, 0, $3) ON CONFLICT (company_id, visitor_group_id) \
         DO UPDATE SET paused = EXCLUDED.paused",
        &[c, g, &paused],
    )
    .await?;
    let files = if action == GroupAction::Cancel {
        let reason = cancel_reason(actor, now);
        exec(
            &tx,
            "cancel a group's waiting files",
            "UPDATE files SET status = $3, error = $5, error_code = $6, \
             processing_end_date = $7, processing_log = CASE WHEN processing_log = '' \
               THEN $5 ELSE processing_log || chr(10) || $5 END \
             WHERE company_id = $1 AND visitor_group_id = $2 AND status IN ($4, $8)",
            &[
                c,
                g,
                &FileStatus::Cancelled.as_str(),
                &FileStatus::Uploaded.as_str(),
                &reason,
                &GROUP_CANCELLED,
                &now,
                &FileStatus::Error.as_str(),
            ],
        )
        .await?
    } else {
        0
    };
    exec(
        &tx,
        "record a group action",
        "INSERT INTO group_actions (company_id, visitor_group_id, action, actor, at, files) \
         VALUES ($1, $2, $3, $4, $5, $6)",
        &[c, g, &action.as_str(), &actor, &now, &big(files)],
    )
    .await?;
    tx.commit().await.map_err(db("commit a group action"))?;
    Ok(GroupActionRecord {
        action,
        actor: actor.to_string(),
        at: now,
        files,
    })
}

pub(super) async fn group_info(
    c: &impl GenericClient,
    group: &GroupRef,
) -> StoreResult<Option<GroupInfo>> {
    if !is_known(c, group).await? {
        return Ok(None);
    }
    let (co, g) = (&group.company_id, &group.visitor_group_id);
    let waiting = query_one(
        c,
        "count a group's waiting files",
        "SELECT COUNT(*) AS n, COALESCE(SUM(rows), 0)::BIGINT AS r FROM files \
         WHERE company_id = $1 AND visitor_group_id = $2 AND status = $3",
        &[co, g, &FileStatus::Uploaded.as_str()],
    )
    .await?;
    let files_waiting: i64 = waiting
        .try_get("n")
        .map_err(db("count a group's waiting files"))?;
    let rows_waiting: i64 = waiting
        .try_get("r")
        .map_err(db("count a group's waiting files"))?;
    let sql = format!(
        "SELECT {FILE_COLUMNS} FROM files WHERE company_id = $1 AND visitor_group_id = $2 \
         AND status = $3 ORDER BY processing_end_date DESC NULLS LAST, seq DESC LIMIT 1"
    );
    let in_progress = query_all(
        c,
        "read a group's running file",
        &sql,
        &[co, g, &FileStatus::Processing.as_str()],
    )
    .await?;
    let last_error = query_all(
        c,
        "read a group's last failure",
        &sql,
        &[co, g, &FileStatus::Error.as_str()],
    )
    .await?;
    let rows = query_all(
        c,
        "list a group's actions",
        "SELECT action, actor, at, files FROM group_actions \
         WHERE company_id = $1 AND visitor_group_id = $2 ORDER BY id DESC LIMIT $3",
        &[co, g, &i64::from(GROUP_ACTIONS_SHOWN)],
    )
    .await?;
    let raw = map_rows(rows, "list a group's actions", |r| {
        Ok((
            r.try_get::<_, String>("action")?,
            r.try_get::<_, String>("actor")?,
            r.try_get::<_, i64>("at")?,
            r.try_get::<_, i64>("files")?,
        ))
    })?;
    Ok(Some(GroupInfo {
        group: group.clone(),
        state: group_state(is_paused(c, group).await?),
        files_waiting: files_waiting as u64,
        rows_waiting: rows_waiting as u64,
        in_progress: files_from_rows(&in_progress)?.into_iter().next(),
        last_error: files_from_rows(&last_error)?.into_iter().next(),
        actions: group_actions(raw)?,
    }))
}

pub(super) async fn group_queue(
    c: &impl GenericClient,
    group: &GroupRef,
    file_ids: &[String],
) -> StoreResult<GroupQueue> {
    let (co, g) = (&group.company_id, &group.visitor_group_id);
    let stopped: bool = query_one(
        c,
        "check a group for a failure",
        "SELECT EXISTS (SELECT 1 FROM files WHERE company_id = $1 AND visitor_group_id = $2 \
         AND status = $3) AS stopped",
        &[co, g, &FileStatus::Error.as_str()],
    )
    .await?
    .try_get("stopped")
    .map_err(db("check a group for a failure"))?;
    let ids: Vec<&str> = file_ids.iter().map(String::as_str).collect();
    // The running file first, then the waiting ones by sequence; each
    // waiting file's place is what comes before it in that order.
    let rows = query_all(
        c,
        "read a group's queue",
        "SELECT file_id, files_ahead, rows_ahead FROM ( \
           SELECT file_id, status, COUNT(*) OVER w - 1 AS files_ahead, \
             (SUM(rows) OVER w - rows)::BIGINT AS rows_ahead \
           FROM files WHERE company_id = $1 AND visitor_group_id = $2 AND status IN ($3, $4) \
           WINDOW w AS (ORDER BY CASE WHEN status = $4 THEN 0 ELSE 1 END, group_seq \
             ROWS UNBOUNDED PRECEDING)) q \
         WHERE status = $3 AND file_id = ANY($5::text[]) ORDER BY files_ahead",
        &[
            co,
            g,
            &FileStatus::Uploaded.as_str(),
            &FileStatus::Processing.as_str(),
            &ids,
        ],
    )
    .await?;
    let entries = map_rows(rows, "read a group's queue", |r| {
        Ok(QueueEntry {
            file_id: r.try_get("file_id")?,
            files_ahead: r.try_get::<_, i64>("files_ahead")? as u64,
            rows_ahead: r.try_get::<_, i64>("rows_ahead")? as u64,
        })
    })?;
    Ok(GroupQueue {
        state: group_state(is_paused(c, group).await?),
        stopped,
        entries,
    })
}

pub(super) async fn processing_rate(
    c: &impl GenericClient,
    company_id: &str,
    recent: u32,
) -> StoreResult<Option<ProcessingRate>> {
    let row = query_one(
        c,
        "measure a company's processing rate",
        "SELECT COUNT(*) AS files, COALESCE(SUM(rows), 0)::BIGINT AS rows, \
           COALESCE(SUM(GREATEST(processing_end_date - processing_start_date, 1)), 0)::BIGINT \
             AS seconds \
         FROM (SELECT rows, processing_start_date, processing_end_date FROM files \
           WHERE company_id = $1 AND status = $2 AND processing_end_date IS NOT NULL \
             AND processing_start_date IS NOT NULL \
           ORDER BY processing_end_date DESC LIMIT $3) r",
        &[
            &company_id,
            &FileStatus::Complete.as_str(),
            &i64::from(recent),
        ],
    )
    .await?;
    let get = |name: &str| -> StoreResult<i64> {
        row.try_get(name)
            .map_err(db("measure a company's processing rate"))
    };
    let files = get("files")?;
    Ok((files > 0).then_some(ProcessingRate {
        rows: get("rows")? as u64,
        seconds: get("seconds")? as u64,
        files: files as u64,
    }))
}
