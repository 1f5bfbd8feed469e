//! Group control: pause, resume and cancel, the group view, queue places
//! and the measured processing rate.
//!
//! A group's state is its `group_controls` row (`paused`); a group without
//! one is active. Claims ([`super::leases`], [`super::processing`]) skip a
//! paused group with [`PAUSED_FILTER`]. Every action is a row of
//! `group_actions`, written in the transaction of its change.

use rusqlite::{params, Connection};

use super::files::{file_from_row, FILE_COLUMNS};
use super::{commit, exec, query_all, query_one, query_opt, write_tx};
use crate::common::{group_actions, group_state};
use crate::{
    cancel_reason, FileStatus, GroupAction, GroupActionRecord, GroupInfo, GroupQueue, GroupRef,
    GroupState, ProcessingRate, QueueEntry, StoreError, StoreResult, GROUP_ACTIONS_SHOWN,
    GROUP_CANCELLED,
};

/// A condition true when the group of the row aliased `f` is not paused.
pub(super) const PAUSED_FILTER: &str = "NOT EXISTS (SELECT 1 FROM group_controls gc \
     WHERE gc.company_id = f.company_id AND gc.visitor_group_id = f.visitor_group_id \
     AND gc.paused = 1)";

/// True when the group is paused.
pub(super) fn is_paused(conn: &Connection, group: &GroupRef) -> StoreResult<bool> {
    let paused: Option<i64> = query_opt(
        conn,
        "read a group's state",
        "SELECT paused FROM group_controls WHERE company_id = ?1 AND visitor_group_id = ?2",
        params![group.company_id, group.visitor_group_id],
        |r| r.get("paused"),
    )?;
    Ok(paused == Some(1))
}

/// True when the company used the group: a file record or an action.
fn is_known(conn: &Connection, group: &GroupRef) -> StoreResult<bool> {
    query_one(
        conn,
        "look a group up",
        "SELECT EXISTS (SELECT 1 FROM files WHERE company_id = ?1 AND visitor_group_id = ?2) \
         OR EXISTS (SELECT 1 FROM group_controls WHERE company_id = ?1 \
           AND visitor_group_id = ?2) AS known",
        params![group.company_id, group.visitor_group_id],
        |r| r.get("known"),
    )
}

fn unknown(group: &GroupRef) -> StoreError {
    StoreError::NotFound(format!("visitor group '{}'", group.visitor_group_id))
}

pub(super) fn control_group(
    conn: &mut Connection,
    group: &GroupRef,
    action: GroupAction,
    actor: &str,
    now: i64,
) -> StoreResult<GroupActionRecord> {
    let tx = write_tx(conn, "begin a group action")?;
    if !is_known(&tx, group)? {
        return Err(unknown(group));
    }
    let files = if action == GroupAction::Cancel {
        let reason = cancel_reason(actor, now);
        exec(
            &tx,
            "cancel a group's waiting files",
            "UPDATE files SET status = ?3, error = ?5, error_code = ?6, \
             processing_end_date = ?7, processing_log = CASE WHEN processing_log = '' \
               THEN ?5 ELSE processing_log || char(10) || ?5 END \
             WHERE company_id = ?1 AND visitor_group_id = ?2 AND status IN (?4, ?8)",
            params![
                group.company_id,
                group.visitor_group_id,
                FileStatus::Cancelled.as_str(),
                FileStatus::Uploaded.as_str(),
                reason,
                GROUP_CANCELLED,
                now,
                FileStatus::Error.as_str()
            ],
        )? as u64
    } else {
        0
    };
    exec(
        &tx,
        "set a group's state",
        "INSERT INTO group_controls (company_id, visitor_group_id, paused) VALUES (?1, ?2, ?3) \
         ON CONFLICT (company_id, visitor_group_id) DO UPDATE SET paused = excluded.paused",
        params![
            group.company_id,
            group.visitor_group_id,
            i64::from(action.state_after() == GroupState::Paused)
        ],
    )?;
    exec(
        &tx,
        "record a group action",
        "INSERT INTO group_actions (company_id, visitor_group_id, action, actor, at, files) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
        params![
            group.company_id,
            group.visitor_group_id,
            action.as_str(),
            actor,
            now,
            files as i64
        ],
    )?;
    commit(tx, "commit a group action")?;
    Ok(GroupActionRecord {
        action,
        actor: actor.to_string(),
        at: now,
        files,
    })
}

pub(super) fn group_info(conn: &Connection, group: &GroupRef) -> StoreResult<Option<GroupInfo>> {
    if !is_known(conn, group)? {
        return Ok(None);
    }
    let (c, g) = (&group.company_id, &group.visitor_group_id);
    let (files_waiting, rows_waiting): (i64, i64) = query_one(
        conn,
        "count a group's waiting files",
        "SELECT COUNT(*) AS n, COALESCE(SUM(rows), 0) AS r FROM files \
         WHERE company_id = ?1 AND visitor_group_id = ?2 AND status = ?3",
        params![c, g, FileStatus::Uploaded.as_str()],
        |r| Ok((r.get("n")?, r.get("r")?)),
    )?;
    let latest = |status: FileStatus, what: &'static str| {
        query_opt(
            conn,
            what,
            &format!(
                "SELECT {FILE_COLUMNS} FROM files WHERE company_id = ?1 AND visitor_group_id = ?2 \
                 AND status = ?3 ORDER BY processing_end_date DESC, seq DESC LIMIT 1"
            ),
            params![c, g, status.as_str()],
            file_from_row,
        )
    };
    let in_progress = latest(FileStatus::Processing, "read a group's running file")?;
    let last_error = latest(FileStatus::Error, "read a group's last failure")?;
    let actions = query_all(
        conn,
        "list a group's actions",
        "SELECT action, actor, at, files FROM group_actions \
         WHERE company_id = ?1 AND visitor_group_id = ?2 ORDER BY id DESC LIMIT ?3",
        params![c, g, GROUP_ACTIONS_SHOWN],
        |r| {
            Ok((
                r.get::<_, String>("action")?,
                r.get::<_, String>("actor")?,
                r.get::<_, i64>("at")?,
                r.get::<_, i64>("files")?,
            ))
        },
    )?;
    Ok(Some(GroupInfo {
        group: group.clone(),
        state: group_state(is_paused(conn, group)?),
        files_waiting: files_waiting as u64,
        rows_waiting: rows_waiting as u64,
        in_progress,
        last_error,
        actions: group_actions(actions)?,
    }))
}

pub(super) fn group_queue(
    conn: &Connection,
    group: &GroupRef,
    file_ids: &[String],
) -> StoreResult<GroupQueue> {
    let (c, g) = (&group.company_id, &group.visitor_group_id);
    let stopped: bool = query_one(
        conn,
        "check a group for a failure",
        "SELECT EXISTS (SELECT 1 FROM files WHERE company_id = ?1 AND visitor_group_id = ?2 \
         AND status = ?3) AS stopped",
        params![c, g, FileStatus::Error.as_str()],
        |r| r.get("stopped"),
    )?;
    let ids =
        serde_json::to_string(file_ids).map_err(|e| StoreError::backend("encode file ids", e))?;
    // The running file first, then the waiting ones by sequence; each
    // waiting file's place is what comes before it in that order.
    let entries = query_all(
        conn,
        "read a group's queue",
        "SELECT file_id, files_ahead, rows_ahead FROM ( \
           SELECT file_id, status, COUNT(*) OVER w - 1 AS files_ahead, \
             SUM(rows) OVER w - rows AS rows_ahead \
           FROM files WHERE company_id = ?1 AND visitor_group_id = ?2 AND status IN (?3, ?4) \
           WINDOW w AS (ORDER BY CASE WHEN status = ?4 THEN 0 ELSE 1 END, group_seq \
             ROWS UNBOUNDED PRECEDING)) \
         WHERE status = ?3 AND file_id IN (SELECT value FROM json_each(?5)) \
         ORDER BY files_ahead",
        params![
            c,
            g,
            FileStatus::Uploaded.as_str(),
            FileStatus::Processing.as_str(),
            ids
        ],
        |r| {
            Ok(QueueEntry {
                file_id: r.get("file_id")?,
                files_ahead: r.get::<_, i64>("files_ahead")? as u64,
                rows_ahead: r.get::<_, i64>("rows_ahead")? as u64,
            })
        },
    )?;
    Ok(GroupQueue {
        state: group_state(is_paused(conn, group)?),
        stopped,
        entries,
    })
}

pub(super) fn processing_rate(
    conn: &Connection,
    company_id: &str,
    recent: u32,
) -> StoreResult<Option<ProcessingRate>> {
    let (files, rows, seconds): (i64, i64, i64) = query_one(
        conn,
        "measure a company's processing rate",
        "SELECT COUNT(*) AS files, COALESCE(SUM(rows), 0) AS rows, \
           COALESCE(SUM(MAX(processing_end_date - processing_start_date, 1)), 0) AS seconds \
         FROM (SELECT rows, processing_start_date, processing_end_date FROM files \
           WHERE company_id = ?1 AND status = ?2 AND processing_end_date IS NOT NULL \
             AND processing_start_date IS NOT NULL \
           ORDER BY processing_end_date DESC LIMIT ?3)",
        params![company_id, FileStatus::Complete.as_str(), recent],
        |r| Ok((r.get("files")?, r.get("rows")?, r.get("seconds")?)),
    )?;
    Ok((files > 0).then_some(ProcessingRate {
        rows: rows as u64,
        seconds: seconds as u64,
        files: files as u64,
    }))
}
