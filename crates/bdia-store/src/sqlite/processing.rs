//! Processing state: which groups can run, claims, completion and failure
//! of files, and the visitor state.
//!
//! A group runs one file at a time, in `group_seq` order: a group with a
//! `PROCESSING` or an `ERROR` file is not runnable, and [`claim_next_file`]
//! checks that and moves the next `UPLOADED` file to `PROCESSING` in one
//! `IMMEDIATE` transaction. [`complete_file`] marks the file `COMPLETE`,
//! upserts every visitor state of its delta and stores the IDs it counted
//! (`seen_ids`) in one transaction: that commit is the only writer of
//! `visitor_states` and `seen_ids`, so the stored state is always
//! the state after the group's last completed file. The one other change
//! is [`delete_visitor_states`] (a privacy deletion), after which the
//! visitor is one never seen.

use rusqlite::{params, Connection, OptionalExtension, Row};

use bdia_model::commerce::SeenId;
use bdia_model::VisitState;

use super::files::{by_id, file_from_row, FILE_COLUMNS};
use super::groups::{is_paused, PAUSED_FILTER};
use super::leases::{check_lease, release_all_leases};
use super::{commit, db, exec, query_all, query_one, query_opt, write_tx};
use crate::common::{
    apply_failure, check_file_group, distinct_seen, evars_text, group_of, require_processing,
    StoredEvars,
};
use crate::{Completion, FileRecord, FileStatus, GroupLease, GroupRef, StoreResult, StoredState};

pub(super) fn runnable_groups(conn: &Connection, limit: u32) -> StoreResult<Vec<GroupRef>> {
    query_all(
        conn,
        "list runnable groups",
        &format!(
            "SELECT f.company_id, f.visitor_group_id, MIN(f.seq) AS first FROM files f \
         WHERE f.status = ?1 AND NOT EXISTS (SELECT 1 FROM files g \
           WHERE g.company_id = f.company_id AND g.visitor_group_id = f.visitor_group_id \
           AND g.status IN (?2, ?3)) AND {PAUSED_FILTER} \
         GROUP BY f.company_id, f.visitor_group_id ORDER BY first LIMIT ?4"
        ),
        params![
            FileStatus::Uploaded.as_str(),
            FileStatus::Processing.as_str(),
            FileStatus::Error.as_str(),
            limit as i64
        ],
        |r| {
            Ok(GroupRef {
                company_id: r.get("company_id")?,
                visitor_group_id: r.get("visitor_group_id")?,
            })
        },
    )
}

pub(super) fn claim_next_file(
    conn: &mut Connection,
    group: &GroupRef,
    lease: Option<&GroupLease>,
    now: i64,
) -> StoreResult<Option<FileRecord>> {
    let tx = write_tx(conn, "begin a claim")?;
    if let Some(lease) = lease {
        check_lease(&tx, lease)?;
        check_file_group(lease, "(next)", group)?;
    }
    let busy: i64 = query_one(
        &tx,
        "check a group for running or failed files",
        "SELECT COUNT(*) AS busy FROM files WHERE company_id = ?1 AND visitor_group_id = ?2 \
         AND status IN (?3, ?4)",
        params![
            group.company_id,
            group.visitor_group_id,
            FileStatus::Processing.as_str(),
            FileStatus::Error.as_str()
        ],
        |r| r.get("busy"),
    )?;
    if busy > 0 || is_paused(&tx, group)? {
        return Ok(None);
    }
    let next = query_opt(
        &tx,
        "find a group's next file",
        &format!(
            "SELECT {FILE_COLUMNS} FROM files WHERE company_id = ?1 \
             AND visitor_group_id = ?2 AND status = ?3 ORDER BY group_seq LIMIT 1"
        ),
        params![
            group.company_id,
            group.visitor_group_id,
            FileStatus::Uploaded.as_str()
        ],
        file_from_row,
    )?;
    let Some(mut rec) = next else {
        return Ok(None);
    };
    exec(
        &tx,
        "claim a file",
        "UPDATE files SET status = ?2, processing_start_date = ?3 WHERE file_id = ?1",
        params![rec.file_id, FileStatus::Processing.as_str(), now],
    )?;
    commit(tx, "commit a claim")?;
    rec.status = FileStatus::Processing;
    rec.processing_start_date = Some(now);
    Ok(Some(rec))
}

fn visit_state_from_row(r: &Row<'_>) -> rusqlite::Result<VisitState> {
    Ok(VisitState {
        last_hit_time: r.get("last_hit_time")?,
        visit_num: r.get::<_, i64>("visit_num")? as u32,
        visit_start_time: r.get("visit_start_time")?,
        visit_page_num: r.get::<_, i64>("visit_page_num")? as u32,
        evars: r.get::<_, StoredEvars>("evars")?.0.into(),
    })
}

pub(super) fn visitor_states(
    conn: &mut Connection,
    company_id: &str,
    keys: &[(String, String)],
) -> StoreResult<Vec<Option<VisitState>>> {
    if keys.is_empty() {
        return Ok(Vec::new());
    }
    // One read transaction: every answer comes from the same state.
    let tx = conn
        .transaction()
        .map_err(db("begin a visitor state lookup"))?;
    let mut out = Vec::with_capacity(keys.len());
    {
        let mut stmt = tx
            .prepare_cached(
                "SELECT last_hit_time, visit_num, visit_start_time, visit_page_num, evars \
                 FROM visitor_states WHERE company_id = ?1 AND report_suite = ?2 \
                 AND visitor_key = ?3",
            )
            .map_err(db("prepare a visitor state lookup"))?;
        for (suite, key) in keys {
            let st = stmt
                .query_row(params![company_id, suite, key], visit_state_from_row)
                .optional()
                .map_err(db("look up a visitor state"))?;
            out.push(st);
        }
    }
    commit(tx, "end a visitor state lookup")?;
    Ok(out)
}

/// IDs asked per statement of a seen ID lookup (a power of two).
const SEEN_LOOKUP_CHUNK: usize = 256;

pub(super) fn seen_ids(
    conn: &mut Connection,
    company_id: &str,
    keys: &[SeenId],
) -> StoreResult<Vec<bool>> {
    if keys.is_empty() {
        return Ok(Vec::new());
    }
    // As `visitor_states`: one read transaction. The keys are grouped by
    // (report suite, kind) and asked a chunk at a time (`id IN (...)`):
    // one statement per chunk rather than one per ID.
    let mut groups: Vec<((&str, &str), Vec<usize>)> = Vec::new();
    for (i, k) in keys.iter().enumerate() {
        let g = (k.report_suite.as_str(), k.kind.as_str());
        match groups.iter_mut().find(|(key, _)| *key == g) {
            Some((_, idx)) => idx.push(i),
            None => groups.push((g, vec![i])),
        }
    }
    let tx = conn.transaction().map_err(db("begin a seen ID lookup"))?;
    let mut out = vec![false; keys.len()];
    for ((suite, kind), idx) in &groups {
        for chunk in idx.chunks(SEEN_LOOKUP_CHUNK) {
            // The list is padded to a power of two with its last ID: a
            // few statement texts, all kept in the statement cache.
            let width = chunk.len().next_power_of_two();
            let marks = vec!["?"; width].join(", ");
            let mut stmt = tx
                .prepare_cached(&format!(
                    "SELECT id FROM seen_ids WHERE company_id = ? AND report_suite = ? \
                     AND kind = ? AND id IN ({marks})"
                ))
                .map_err(db("prepare a seen ID lookup"))?;
            let last = chunk[chunk.len() - 1];
            let params = [company_id, suite, kind].into_iter().chain(
                chunk
                    .iter()
                    .chain(std::iter::repeat_n(&last, width - chunk.len()))
                    .map(|&i| keys[i].id.as_str()),
            );
            let found: std::collections::HashSet<String> = stmt
                .query_map(rusqlite::params_from_iter(params), |r| r.get(0))
                .and_then(|rows| rows.collect())
                .map_err(db("look up seen IDs"))?;
            for &i in chunk {
                out[i] = found.contains(&keys[i].id);
            }
        }
    }
    commit(tx, "end a seen ID lookup")?;
    Ok(out)
}

/// The file, which must be `PROCESSING` (and in `lease`'s group, under
/// that lease, when there is one).
fn processing_file(
    conn: &Connection,
    file_id: &str,
    lease: Option<&GroupLease>,
) -> StoreResult<FileRecord> {
    let rec = by_id(conn, file_id)?;
    if let (Some(lease), Some(rec)) = (lease, &rec) {
        check_lease(conn, lease)?;
        check_file_group(lease, file_id, &group_of(rec))?;
    }
    require_processing(rec, file_id)
}

pub(super) fn complete_file(
    conn: &mut Connection,
    file_id: &str,
    completion: Completion,
) -> StoreResult<FileRecord> {
    let tx = write_tx(conn, "begin a completion")?;
    let mut rec = processing_file(&tx, file_id, completion.lease.as_ref())?;
    rec.status = FileStatus::Complete;
    rec.processed_by = completion.lease.as_ref().map(|l| l.node_id.clone());
    rec.lease_epoch = completion.lease.as_ref().map(|l| l.epoch);
    rec.file_reader_complete_date = Some(completion.file_reader_complete_date);
    rec.processing_end_date = Some(completion.processing_end_date);
    rec.processing_log = completion.processing_log;
    if completion.release_blob {
        rec.blob_key = None;
    }
    exec(
        &tx,
        "mark a file complete",
        "UPDATE files SET status = ?2, file_reader_complete_date = ?3, \
         processing_end_date = ?4, processing_log = ?5, blob_key = ?6, processed_by = ?7, \
         lease_epoch = ?8 WHERE file_id = ?1",
        params![
            file_id,
            rec.status.as_str(),
            rec.file_reader_complete_date,
            rec.processing_end_date,
            rec.processing_log,
            rec.blob_key,
            rec.processed_by,
            rec.lease_epoch.map(|e| e as i64)
        ],
    )?;
    {
        let mut stmt = tx
            .prepare_cached(
                "INSERT INTO visitor_states (company_id, report_suite, visitor_key, \
                 last_hit_time, visit_num, visit_start_time, visit_page_num, evars) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8) \
                 ON CONFLICT (company_id, report_suite, visitor_key) DO UPDATE SET \
                 last_hit_time = excluded.last_hit_time, visit_num = excluded.visit_num, \
                 visit_start_time = excluded.visit_start_time, \
                 visit_page_num = excluded.visit_page_num, evars = excluded.evars",
            )
            .map_err(db("prepare the visitor state upsert"))?;
        for e in &completion.delta.entries {
            stmt.execute(params![
                rec.company_id,
                e.report_suite,
                e.visitor_key,
                e.state.last_hit_time,
                e.state.visit_num as i64,
                e.state.visit_start_time,
                e.state.visit_page_num as i64,
                evars_text(&e.state.evars)?
            ])
            .map_err(db("store a visitor state"))?;
        }
        let mut stmt = tx
            .prepare_cached(
                "INSERT INTO seen_ids (company_id, report_suite, kind, id) \
                 VALUES (?1, ?2, ?3, ?4) ON CONFLICT DO NOTHING",
            )
            .map_err(db("prepare the seen ID insert"))?;
        for k in distinct_seen(&completion.delta.seen) {
            stmt.execute(params![rec.company_id, k.report_suite, k.kind, k.id])
                .map_err(db("store a seen ID"))?;
        }
    }
    commit(tx, "commit a completion")?;
    Ok(rec)
}

pub(super) fn fail_file(
    conn: &mut Connection,
    file_id: &str,
    reason: &str,
    code: String,
    now: i64,
    lease: Option<&GroupLease>,
) -> StoreResult<FileRecord> {
    let tx = write_tx(conn, "begin a failure")?;
    let mut rec = processing_file(&tx, file_id, lease)?;
    apply_failure(&mut rec, reason, code, now);
    exec(
        &tx,
        "mark a file failed",
        "UPDATE files SET status = ?2, error = ?3, error_code = ?4, \
         processing_end_date = ?5, processing_log = ?6 WHERE file_id = ?1",
        params![
            file_id,
            rec.status.as_str(),
            rec.error,
            rec.error_code,
            now,
            rec.processing_log
        ],
    )?;
    commit(tx, "commit a failure")?;
    Ok(rec)
}

pub(super) fn retry_group(conn: &Connection, group: &GroupRef) -> StoreResult<u64> {
    let n = exec(
        conn,
        "retry a group",
        "UPDATE files SET status = ?3, error = NULL, error_code = NULL, \
         processing_start_date = NULL, file_reader_complete_date = NULL, \
         processing_end_date = NULL WHERE company_id = ?1 AND visitor_group_id = ?2 \
         AND status = ?4",
        params![
            group.company_id,
            group.visitor_group_id,
            FileStatus::Uploaded.as_str(),
            FileStatus::Error.as_str()
        ],
    )?;
    Ok(n as u64)
}

pub(super) fn requeue_processing(conn: &mut Connection) -> StoreResult<u64> {
    let tx = write_tx(conn, "begin the start's requeue")?;
    release_all_leases(&tx)?;
    let n = exec(
        &tx,
        "requeue processing files",
        "UPDATE files SET status = ?1, processing_start_date = NULL, \
         file_reader_complete_date = NULL WHERE status = ?2",
        params![
            FileStatus::Uploaded.as_str(),
            FileStatus::Processing.as_str()
        ],
    )?;
    commit(tx, "commit the start's requeue")?;
    Ok(n as u64)
}

pub(super) fn requeue_file(
    conn: &mut Connection,
    file_id: &str,
    lease: Option<&GroupLease>,
) -> StoreResult<bool> {
    let tx = write_tx(conn, "begin a requeue")?;
    if let Some(lease) = lease {
        match by_id(&tx, file_id)? {
            Some(rec) => {
                check_lease(&tx, lease)?;
                check_file_group(lease, file_id, &group_of(&rec))?;
            }
            None => return Ok(false),
        }
    }
    let n = exec(
        &tx,
        "requeue a processing file",
        "UPDATE files SET status = ?1, processing_start_date = NULL, \
         file_reader_complete_date = NULL WHERE file_id = ?2 AND status = ?3",
        params![
            FileStatus::Uploaded.as_str(),
            file_id,
            FileStatus::Processing.as_str()
        ],
    )?;
    commit(tx, "commit a requeue")?;
    Ok(n == 1)
}

pub(super) fn list_visitor_states(
    conn: &Connection,
    company_id: &str,
    after: Option<(String, String)>,
    limit: u32,
) -> StoreResult<Vec<StoredState>> {
    let (suite, key) = after.unzip();
    query_all(
        conn,
        "list visitor states",
        "SELECT report_suite, visitor_key, last_hit_time, visit_num, \
         visit_start_time, visit_page_num, evars FROM visitor_states \
         WHERE company_id = ?1 AND (?2 IS NULL OR (report_suite, visitor_key) > (?2, ?3)) \
         ORDER BY report_suite, visitor_key LIMIT ?4",
        params![company_id, suite, key, limit as i64],
        |r| {
            Ok(StoredState {
                report_suite: r.get("report_suite")?,
                visitor_key: r.get("visitor_key")?,
                last_hit_time: r.get("last_hit_time")?,
                visit_num: r.get::<_, i64>("visit_num")? as u32,
                visit_start_time: r.get("visit_start_time")?,
                visit_page_num: r.get::<_, i64>("visit_page_num")? as u32,
                evars: r.get::<_, StoredEvars>("evars")?.0,
            })
        },
    )
}

pub(super) fn delete_visitor_states(
    conn: &mut Connection,
    company_id: &str,
    keys: &[(String, String)],
) -> StoreResult<u64> {
    let tx = write_tx(conn, "begin a visitor state deletion")?;
    let mut deleted = 0u64;
    {
        let mut stmt = tx
            .prepare_cached(
                "DELETE FROM visitor_states WHERE company_id = ?1 AND report_suite = ?2 \
                 AND visitor_key = ?3",
            )
            .map_err(db("prepare a visitor state deletion"))?;
        for (suite, key) in keys {
            deleted += stmt
                .execute(params![company_id, suite, key])
                .map_err(db("delete a visitor state"))? as u64;
        }
    }
    commit(tx, "commit a visitor state deletion")?;
    Ok(deleted)
}
