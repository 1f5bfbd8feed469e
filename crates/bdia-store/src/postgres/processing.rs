//! Processing state: which groups can run, claims, completion and failure
//! of files, and the visitor state.
//!
//! A group runs one file at a time, in `group_seq` order.
//! [`claim_next_file`] locks the group's `visitor_groups` row
//! (`FOR UPDATE`) and only then checks for a `PROCESSING` or `ERROR` file
//! and moves the next `UPLOADED` one to `PROCESSING`: claims of one group
//! from any number of nodes run one after the other, and each sees what the
//! one before committed. [`complete_file`] and [`fail_file`] lock the
//! file's row before checking that it is `PROCESSING`, so a file is
//! completed or failed once. Visitor states are read, written and deleted
//! in batches (one statement over arrays of keys), the write in the
//! completion's transaction; so are the IDs a file counted (`seen_ids`).

use std::collections::BTreeMap;

use deadpool_postgres::GenericClient;
use tokio_postgres::Row;

use bdia_model::commerce::SeenId;
use bdia_model::enrich::StateEntry;
use bdia_model::VisitState;

use super::files::{by_id_for_update, files_from_rows, FILE_COLUMNS};
use super::groups::is_paused;
use super::leases::{lock_holder, release_all_leases, GroupLock};
use super::{big, db, exec, map_rows, query_all, query_one};
use crate::common::{
    apply_failure, check_file_group, check_holder, distinct_seen, evars_text, group_of,
    require_processing, StoredEvars,
};
use crate::{Completion, FileRecord, FileStatus, GroupLease, GroupRef, StoreResult, StoredState};

/// Rows (visitor states, seen IDs) written per statement of a completion.
const STATE_BATCH: usize = 5_000;

pub(super) async fn runnable_groups(
    c: &impl GenericClient,
    limit: u32,
) -> StoreResult<Vec<GroupRef>> {
    let rows = query_all(
        c,
        "list runnable groups",
        "SELECT f.company_id, f.visitor_group_id, MIN(f.seq) AS first FROM files f \
         WHERE f.status = $1 AND NOT EXISTS (SELECT 1 FROM files g \
           WHERE g.company_id = f.company_id AND g.visitor_group_id = f.visitor_group_id \
           AND g.status IN ($2, $3)) \
           AND NOT EXISTS (SELECT 1 FROM visitor_groups vg WHERE vg.company_id = f.company_id \
             AND vg.visitor_group_id = f.visitor_group_id AND vg.paused) \
         GROUP BY f.company_id, f.visitor_group_id ORDER BY first LIMIT $4",
        &[
            &FileStatus::Uploaded.as_str(),
            &FileStatus::Processing.as_str(),
            &FileStatus::Error.as_str(),
            &i64::from(limit),
        ],
    )
    .await?;
    map_rows(rows, "list runnable groups", |r| {
        Ok(GroupRef {
            company_id: r.try_get("company_id")?,
            visitor_group_id: r.try_get("visitor_group_id")?,
        })
    })
}

pub(super) async fn claim_next_file(
    conn: &mut deadpool_postgres::Object,
    group: &GroupRef,
    lease: Option<&GroupLease>,
    now: i64,
) -> StoreResult<Option<FileRecord>> {
    let tx = conn.transaction().await.map_err(db("begin a claim"))?;
    if let Some(lease) = lease {
        check_file_group(lease, "(next)", group)?;
    }
    // The group's row exists from its first upload on; no row, no file.
    let holder = lock_holder(&tx, group, GroupLock::Update).await?;
    if let Some(lease) = lease {
        check_holder(lease, holder.clone())?;
    }
    if holder.is_none() {
        return Ok(None);
    }
    let busy: i64 = query_one(
        &tx,
        "check a group for running or failed files",
        "SELECT COUNT(*) AS busy FROM files WHERE company_id = $1 AND visitor_group_id = $2 \
         AND status IN ($3, $4)",
        &[
            &group.company_id,
            &group.visitor_group_id,
            &FileStatus::Processing.as_str(),
            &FileStatus::Error.as_str(),
        ],
    )
    .await?
    .try_get("busy")
    .map_err(db("check a group for running or failed files"))?;
    if busy > 0 || is_paused(&tx, group).await? {
        return Ok(None);
    }
    let next = query_all(
        &tx,
        "find a group's next file",
        &format!(
            "SELECT {FILE_COLUMNS} FROM files WHERE company_id = $1 \
             AND visitor_group_id = $2 AND status = $3 ORDER BY group_seq LIMIT 1"
        ),
        &[
            &group.company_id,
            &group.visitor_group_id,
            &FileStatus::Uploaded.as_str(),
        ],
    )
    .await?;
    let Some(mut rec) = files_from_rows(&next)?.into_iter().next() else {
        return Ok(None);
    };
    exec(
        &tx,
        "claim a file",
        "UPDATE files SET status = $2, processing_start_date = $3 WHERE file_id = $1",
        &[&rec.file_id, &FileStatus::Processing.as_str(), &now],
    )
    .await?;
    tx.commit().await.map_err(db("commit a claim"))?;
    rec.status = FileStatus::Processing;
    rec.processing_start_date = Some(now);
    Ok(Some(rec))
}

fn visit_state_from_row(r: &Row) -> Result<Option<VisitState>, tokio_postgres::Error> {
    let Some(last_hit_time) = r.try_get::<_, Option<i64>>("last_hit_time")? else {
        return Ok(None);
    };
    Ok(Some(VisitState {
        last_hit_time,
        visit_num: r.try_get::<_, i64>("visit_num")? as u32,
        visit_start_time: r.try_get("visit_start_time")?,
        visit_page_num: r.try_get::<_, i64>("visit_page_num")? as u32,
        evars: r.try_get::<_, StoredEvars>("evars")?.0.into(),
    }))
}

/// The report suites and visitor keys of `keys`, as two arrays.
fn key_arrays(keys: &[(String, String)]) -> (Vec<&str>, Vec<&str>) {
    keys.iter().map(|(s, k)| (s.as_str(), k.as_str())).unzip()
}

pub(super) async fn visitor_states(
    c: &impl GenericClient,
    company_id: &str,
    keys: &[(String, String)],
) -> StoreResult<Vec<Option<VisitState>>> {
    // One statement: every answer comes from the same snapshot, in the
    // order asked.
    let (suites, visitors) = key_arrays(keys);
    let rows = query_all(
        c,
        "look up visitor states",
        "SELECT v.last_hit_time, v.visit_num, v.visit_start_time, v.visit_page_num, v.evars \
         FROM unnest($2::text[], $3::text[]) WITH ORDINALITY AS k(report_suite, visitor_key, i) \
         LEFT JOIN visitor_states v ON v.company_id = $1 \
           AND v.report_suite = k.report_suite AND v.visitor_key = k.visitor_key \
         ORDER BY k.i",
        &[&company_id, &suites, &visitors],
    )
    .await?;
    map_rows(rows, "look up visitor states", visit_state_from_row)
}

pub(super) async fn seen_ids(
    c: &impl GenericClient,
    company_id: &str,
    keys: &[SeenId],
) -> StoreResult<Vec<bool>> {
    // One statement, as `visitor_states`.
    let suites: Vec<&str> = keys.iter().map(|k| k.report_suite.as_str()).collect();
    let kinds: Vec<&str> = keys.iter().map(|k| k.kind.as_str()).collect();
    let ids: Vec<&str> = keys.iter().map(|k| k.id.as_str()).collect();
    let rows = query_all(
        c,
        "look up seen IDs",
        "SELECT s.id IS NOT NULL AS seen \
         FROM unnest($2::text[], $3::text[], $4::text[]) WITH ORDINALITY \
           AS k(report_suite, kind, id, i) \
         LEFT JOIN seen_ids s ON s.company_id = $1 AND s.report_suite = k.report_suite \
           AND s.kind = k.kind AND s.id = k.id \
         ORDER BY k.i",
        &[&company_id, &suites, &kinds, &ids],
    )
    .await?;
    map_rows(rows, "look up seen IDs", |r| r.try_get("seen"))
}

/// The file, locked, which must be `PROCESSING` (and in `lease`'s group,
/// under that lease, when there is one: the group's row is locked first,
/// `FOR KEY SHARE`, so no takeover commits before this transaction ends).
async fn processing_file(
    c: &impl GenericClient,
    file_id: &str,
    lease: Option<&GroupLease>,
) -> StoreResult<FileRecord> {
    let holder = match lease {
        Some(lease) => Some(lock_holder(c, &lease.group, GroupLock::KeyShare).await?),
        None => None,
    };
    let rec = by_id_for_update(c, file_id).await?;
    if let (Some(lease), Some(holder), Some(rec)) = (lease, holder, &rec) {
        check_holder(lease, holder)?;
        check_file_group(lease, file_id, &group_of(rec))?;
    }
    require_processing(rec, file_id)
}

pub(super) async fn complete_file(
    conn: &mut deadpool_postgres::Object,
    file_id: &str,
    completion: Completion,
) -> StoreResult<FileRecord> {
    let tx = conn.transaction().await.map_err(db("begin a completion"))?;
    let mut rec = processing_file(&tx, file_id, completion.lease.as_ref()).await?;
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
        "UPDATE files SET status = $2, file_reader_complete_date = $3, \
         processing_end_date = $4, processing_log = $5, blob_key = $6, processed_by = $7, \
         lease_epoch = $8 WHERE file_id = $1",
        &[
            &file_id,
            &rec.status.as_str(),
            &rec.file_reader_complete_date,
            &rec.processing_end_date,
            &rec.processing_log,
            &rec.blob_key,
            &rec.processed_by,
            &rec.lease_epoch.map(big),
        ],
    )
    .await?;
    for batch in last_per_visitor(&completion.delta.entries).chunks(STATE_BATCH) {
        store_states(&tx, &rec.company_id, batch).await?;
    }
    for batch in distinct_seen(&completion.delta.seen).chunks(STATE_BATCH) {
        store_seen(&tx, &rec.company_id, batch).await?;
    }
    tx.commit().await.map_err(db("commit a completion"))?;
    Ok(rec)
}

/// The entries of a delta, the last one of each (report suite, visitor)
/// only (one statement may not upsert a row twice), sorted by that key: two
/// completions that share visitors lock their rows in the same order, so
/// they never wait for each other in a cycle.
fn last_per_visitor(entries: &[StateEntry]) -> Vec<&StateEntry> {
    let mut last: BTreeMap<(&str, &str), &StateEntry> = BTreeMap::new();
    for e in entries {
        last.insert((e.report_suite.as_str(), e.visitor_key.as_str()), e);
    }
    last.into_values().collect()
}

/// Upserts one batch of visitor states in one statement.
async fn store_states(
    c: &impl GenericClient,
    company_id: &str,
    batch: &[&StateEntry],
) -> StoreResult<()> {
    let suites: Vec<&str> = batch.iter().map(|e| e.report_suite.as_str()).collect();
    let visitors: Vec<&str> = batch.iter().map(|e| e.visitor_key.as_str()).collect();
    let last: Vec<i64> = batch.iter().map(|e| e.state.last_hit_time).collect();
    let num: Vec<i64> = batch.iter().map(|e| i64::from(e.state.visit_num)).collect();
    let start: Vec<i64> = batch.iter().map(|e| e.state.visit_start_time).collect();
    let page: Vec<i64> = batch
        .iter()
        .map(|e| i64::from(e.state.visit_page_num))
        .collect();
    let evars: Vec<Option<String>> = batch
        .iter()
        .map(|e| evars_text(&e.state.evars))
        .collect::<StoreResult<_>>()?;
    exec(
        c,
        "store visitor states",
        "INSERT INTO visitor_states (company_id, report_suite, visitor_key, \
         last_hit_time, visit_num, visit_start_time, visit_page_num, evars) \
         SELECT $1, s.* FROM unnest($2::text[], $3::text[], $4::bigint[], $5::bigint[], \
           $6::bigint[], $7::bigint[], $8::text[]) AS s \
         ON CONFLICT (company_id, report_suite, visitor_key) DO UPDATE SET \
         last_hit_time = EXCLUDED.last_hit_time, visit_num = EXCLUDED.visit_num, \
         visit_start_time = EXCLUDED.visit_start_time, \
         visit_page_num = EXCLUDED.visit_page_num, evars = EXCLUDED.evars",
        &[
            &company_id,
            &suites,
            &visitors,
            &last,
            &num,
            &start,
            &page,
            &evars,
        ],
    )
    .await?;
    Ok(())
}

/// Stores one batch of counted IDs in one statement (kept when stored).
async fn store_seen(
    c: &impl GenericClient,
    company_id: &str,
    batch: &[&SeenId],
) -> StoreResult<()> {
    let suites: Vec<&str> = batch.iter().map(|k| k.report_suite.as_str()).collect();
    let kinds: Vec<&str> = batch.iter().map(|k| k.kind.as_str()).collect();
    let ids: Vec<&str> = batch.iter().map(|k| k.id.as_str()).collect();
    exec(
        c,
        "store seen IDs",
        "INSERT INTO seen_ids (company_id, report_suite, kind, id) \
         SELECT $1, s.* FROM unnest($2::text[], $3::text[], $4::text[]) AS s \
         ON CONFLICT DO NOTHING",
        &[&company_id, &suites, &kinds, &ids],
    )
    .await?;
    Ok(())
}

pub(super) async fn fail_file(
    conn: &mut deadpool_postgres::Object,
    file_id: &str,
    reason: &str,
    code: &str,
    now: i64,
    lease: Option<&GroupLease>,
) -> StoreResult<FileRecord> {
    let tx = conn.transaction().await.map_err(db("begin a failure"))?;
    let mut rec = processing_file(&tx, file_id, lease).await?;
    apply_failure(&mut rec, reason, code.to_string(), now);
    exec(
        &tx,
        "mark a file failed",
        "UPDATE files SET status = $2, error = $3, error_code = $4, \
         processing_end_date = $5, processing_log = $6 WHERE file_id = $1",
        &[
            &file_id,
            &rec.status.as_str(),
            &rec.error,
            &rec.error_code,
            &now,
            &rec.processing_log,
        ],
    )
    .await?;
    tx.commit().await.map_err(db("commit a failure"))?;
    Ok(rec)
}

pub(super) async fn retry_group(c: &impl GenericClient, group: &GroupRef) -> StoreResult<u64> {
    exec(
        c,
        "retry a group",
        "UPDATE files SET status = $3, error = NULL, error_code = NULL, \
         processing_start_date = NULL, file_reader_complete_date = NULL, \
         processing_end_date = NULL WHERE company_id = $1 AND visitor_group_id = $2 \
         AND status = $4",
        &[
            &group.company_id,
            &group.visitor_group_id,
            &FileStatus::Uploaded.as_str(),
            &FileStatus::Error.as_str(),
        ],
    )
    .await
}

pub(super) async fn requeue_processing(conn: &mut deadpool_postgres::Object) -> StoreResult<u64> {
    let tx = conn
        .transaction()
        .await
        .map_err(db("begin the start's requeue"))?;
    release_all_leases(&tx).await?;
    let n = exec(
        &tx,
        "requeue processing files",
        "UPDATE files SET status = $1, processing_start_date = NULL, \
         file_reader_complete_date = NULL WHERE status = $2",
        &[
            &FileStatus::Uploaded.as_str(),
            &FileStatus::Processing.as_str(),
        ],
    )
    .await?;
    tx.commit()
        .await
        .map_err(db("commit the start's requeue"))?;
    Ok(n)
}

pub(super) async fn requeue_file(
    conn: &mut deadpool_postgres::Object,
    file_id: &str,
    lease: Option<&GroupLease>,
) -> StoreResult<bool> {
    let tx = conn.transaction().await.map_err(db("begin a requeue"))?;
    if let Some(lease) = lease {
        let holder = lock_holder(&tx, &lease.group, GroupLock::KeyShare).await?;
        let Some(rec) = by_id_for_update(&tx, file_id).await? else {
            return Ok(false);
        };
        check_holder(lease, holder)?;
        check_file_group(lease, file_id, &group_of(&rec))?;
    }
    let n = exec(
        &tx,
        "requeue a processing file",
        "UPDATE files SET status = $1, processing_start_date = NULL, \
         file_reader_complete_date = NULL WHERE file_id = $2 AND status = $3",
        &[
            &FileStatus::Uploaded.as_str(),
            &file_id,
            &FileStatus::Processing.as_str(),
        ],
    )
    .await?;
    tx.commit().await.map_err(db("commit a requeue"))?;
    Ok(n == 1)
}

pub(super) async fn list_visitor_states(
    c: &impl GenericClient,
    company_id: &str,
    after: Option<(String, String)>,
    limit: u32,
) -> StoreResult<Vec<StoredState>> {
    let (suite, key) = after.unzip();
    let rows = query_all(
        c,
        "list visitor states",
        "SELECT report_suite, visitor_key, last_hit_time, visit_num, \
         visit_start_time, visit_page_num, evars FROM visitor_states \
         WHERE company_id = $1 \
         AND ($2::text IS NULL OR (report_suite, visitor_key) > ($2::text, $3::text)) \
         ORDER BY report_suite, visitor_key LIMIT $4",
        &[&company_id, &suite, &key, &i64::from(limit)],
    )
    .await?;
    map_rows(rows, "list visitor states", |r| {
        Ok(StoredState {
            report_suite: r.try_get("report_suite")?,
            visitor_key: r.try_get("visitor_key")?,
            last_hit_time: r.try_get("last_hit_time")?,
            visit_num: r.try_get::<_, i64>("visit_num")? as u32,
            visit_start_time: r.try_get("visit_start_time")?,
            visit_page_num: r.try_get::<_, i64>("visit_page_num")? as u32,
            evars: r.try_get::<_, StoredEvars>("evars")?.0,
        })
    })
}

pub(super) async fn delete_visitor_states(
    c: &impl GenericClient,
    company_id: &str,
    keys: &[(String, String)],
) -> StoreResult<u64> {
    // One statement, so one transaction.
    let (suites, visitors) = key_arrays(keys);
    exec(
        c,
        "delete visitor states",
        "DELETE FROM visitor_states v \
         USING unnest($2::text[], $3::text[]) AS k(report_suite, visitor_key) \
         WHERE v.company_id = $1 AND v.report_suite = k.report_suite \
         AND v.visitor_key = k.visitor_key",
        &[&company_id, &suites, &visitors],
    )
    .await
}
