//! File records: the upload commit (idempotency key and group sequence),
//! lookups, listings and status updates.
//!
//! [`commit_upload`] runs in one transaction that, for an `UPLOADED`
//! record, first takes the next number of its group from `visitor_groups`
//! (an upsert that keeps the group's row locked until the commit: uploads
//! of one group, from any node, commit one at a time, numbered in commit
//! order), then checks the key, then inserts with `ON CONFLICT DO NOTHING`
//! on `files_key`. An insert that meets an uncommitted record with the same
//! key waits for it; when that one commits, nothing is inserted and the
//! winner's record is answered (the transaction is rolled back, giving the
//! number back). Listings page newest first on `seq`.
//! [`update_status`] and [`mark_hits_retracted`] lock the file's row
//! (`FOR UPDATE`) before reading what they change.

use deadpool_postgres::GenericClient;
use tokio_postgres::Row;

use super::tenants::backend_unique_violation;
use super::{big, db, exec, map_rows, query_all, query_one, query_opt};
use crate::common::{apply_retraction, apply_status_update, page_bounds, split_page};
use crate::{
    CommitOutcome, FilePage, FileQuery, FileRecord, FileStatus, NewFile, StatusUpdate, StoreError,
    StoreResult,
};

/// The columns of a [`FileRecord`], as read by [`file_from_row`] and written
/// by [`insert`].
pub(super) const FILE_COLUMNS: &str = "file_id, company_id, visitor_group_id, idempotency_key, \
    upload_name, size, uncompressed_size, received_date, rows, invalid_rows, status, error, \
    error_code, processing_log, processing_start_date, file_reader_complete_date, \
    processing_end_date, group_seq, blob_key, rejects_key, rejects_kept, hits_retracted_at, \
    hits_retracted, processed_by, lease_epoch, content_sha256, duplicate_of";

/// Reads a [`FileRecord`] from a row holding [`FILE_COLUMNS`].
pub(super) fn file_from_row(row: &Row) -> StoreResult<FileRecord> {
    let status: String = row.try_get("status").map_err(db("read a file record"))?;
    let status = status
        .parse::<FileStatus>()
        .map_err(|e| StoreError::backend("read a file record's status", e))?;
    let unsigned = |name: &str| row.try_get::<_, i64>(name).map(|n| n.max(0) as u64);
    let read = || -> Result<FileRecord, tokio_postgres::Error> {
        Ok(FileRecord {
            file_id: row.try_get("file_id")?,
            company_id: row.try_get("company_id")?,
            visitor_group_id: row.try_get("visitor_group_id")?,
            idempotency_key: row.try_get("idempotency_key")?,
            upload_name: row.try_get("upload_name")?,
            size: unsigned("size")?,
            uncompressed_size: unsigned("uncompressed_size")?,
            received_date: row.try_get("received_date")?,
            rows: unsigned("rows")?,
            invalid_rows: unsigned("invalid_rows")?,
            status,
            error: row.try_get("error")?,
            error_code: row.try_get("error_code")?,
            processing_log: row.try_get("processing_log")?,
            processing_start_date: row.try_get("processing_start_date")?,
            file_reader_complete_date: row.try_get("file_reader_complete_date")?,
            processing_end_date: row.try_get("processing_end_date")?,
            group_seq: row
                .try_get::<_, Option<i64>>("group_seq")?
                .map(|v| v as u64),
            blob_key: row.try_get("blob_key")?,
            rejects_key: row.try_get("rejects_key")?,
            rejects_kept: unsigned("rejects_kept")?,
            hits_retracted_at: row.try_get("hits_retracted_at")?,
            hits_retracted: row
                .try_get::<_, Option<i64>>("hits_retracted")?
                .map(|n| n as u64),
            processed_by: row.try_get("processed_by")?,
            content_sha256: row.try_get("content_sha256")?,
            duplicate_of: row.try_get("duplicate_of")?,
            lease_epoch: row
                .try_get::<_, Option<i64>>("lease_epoch")?
                .map(|n| n as u64),
        })
    };
    read().map_err(db("read a file record"))
}

/// Maps rows holding [`FILE_COLUMNS`].
pub(super) fn files_from_rows(rows: &[Row]) -> StoreResult<Vec<FileRecord>> {
    rows.iter().map(file_from_row).collect()
}

/// One record by id, whichever company owns it.
pub(super) async fn by_id(
    c: &impl GenericClient,
    file_id: &str,
) -> StoreResult<Option<FileRecord>> {
    let row = query_opt(
        c,
        "read a file record",
        &format!("SELECT {FILE_COLUMNS} FROM files WHERE file_id = $1"),
        &[&file_id],
    )
    .await?;
    row.as_ref().map(file_from_row).transpose()
}

/// One record by id with its row locked until the transaction ends.
pub(super) async fn by_id_for_update(
    c: &impl GenericClient,
    file_id: &str,
) -> StoreResult<Option<FileRecord>> {
    let row = query_opt(
        c,
        "lock a file record",
        &format!("SELECT {FILE_COLUMNS} FROM files WHERE file_id = $1 FOR UPDATE"),
        &[&file_id],
    )
    .await?;
    row.as_ref().map(file_from_row).transpose()
}

/// The accepted (non-`REJECTED`) record holding a company's key.
async fn accepted_by_key(
    c: &impl GenericClient,
    company_id: &str,
    key: &str,
) -> StoreResult<Option<FileRecord>> {
    let row = query_opt(
        c,
        "look up an idempotency key",
        &format!(
            "SELECT {FILE_COLUMNS} FROM files WHERE company_id = $1 AND idempotency_key = $2 \
             AND status <> $3 ORDER BY seq LIMIT 1"
        ),
        &[&company_id, &key, &FileStatus::Rejected.as_str()],
    )
    .await?;
    row.as_ref().map(file_from_row).transpose()
}

/// Inserts a record unless an accepted one holds its key; the number of
/// rows inserted (0 or 1). The conflict target repeats `files_key`'s
/// condition literally, as PostgreSQL needs to pick that partial index.
async fn insert(c: &impl GenericClient, r: &FileRecord) -> StoreResult<u64> {
    exec(
        c,
        "insert a file record",
        &format!(
            "INSERT INTO files ({FILE_COLUMNS}) VALUES \
             ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, \
             $19, $20, $21, $22, $23, $24, $25, $26, $27) \
             ON CONFLICT (company_id, idempotency_key) WHERE status <> '{}' DO NOTHING",
            FileStatus::Rejected.as_str()
        ),
        &[
            &r.file_id,
            &r.company_id,
            &r.visitor_group_id,
            &r.idempotency_key,
            &r.upload_name,
            &big(r.size),
            &big(r.uncompressed_size),
            &r.received_date,
            &big(r.rows),
            &big(r.invalid_rows),
            &r.status.as_str(),
            &r.error,
            &r.error_code,
            &r.processing_log,
            &r.processing_start_date,
            &r.file_reader_complete_date,
            &r.processing_end_date,
            &r.group_seq.map(big),
            &r.blob_key,
            &r.rejects_key,
            &big(r.rejects_kept),
            &r.hits_retracted_at,
            &r.hits_retracted.map(big),
            &r.processed_by,
            &r.lease_epoch.map(big),
            &r.content_sha256,
            &r.duplicate_of,
        ],
    )
    .await
}

pub(super) async fn commit_upload(
    conn: &mut deadpool_postgres::Object,
    file: NewFile,
) -> StoreResult<CommitOutcome> {
    let tx = conn
        .transaction()
        .await
        .map_err(db("begin an upload commit"))?;
    let mut record = file.record;
    record.group_seq = None;
    if record.status == FileStatus::Uploaded {
        // Locks the group's row until this transaction ends: another commit
        // of the group waits here, then numbers after this one.
        let row = query_one(
            &tx,
            "assign a group sequence",
            "INSERT INTO visitor_groups (company_id, visitor_group_id, last_seq) \
             VALUES ($1, $2, 1) ON CONFLICT (company_id, visitor_group_id) \
             DO UPDATE SET last_seq = visitor_groups.last_seq + 1 RETURNING last_seq",
            &[&record.company_id, &record.visitor_group_id],
        )
        .await?;
        let seq: i64 = row
            .try_get("last_seq")
            .map_err(db("assign a group sequence"))?;
        record.group_seq = Some(seq as u64);
    }
    // Each statement of this (READ COMMITTED) transaction sees what other
    // transactions committed before it started: after the group lock, this
    // finds a key committed by the upload that held it.
    if let Some(existing) =
        accepted_by_key(&tx, &record.company_id, &record.idempotency_key).await?
    {
        return Ok(CommitOutcome::Existing(existing));
    }
    let inserted = match insert(&tx, &record).await {
        Ok(n) => n,
        Err(e) if backend_unique_violation(&e) => {
            // The file id itself exists (the key is handled by the conflict
            // clause).
            return Err(StoreError::Conflict(format!("file '{}'", record.file_id)));
        }
        Err(e) => return Err(e),
    };
    if inserted == 0 {
        // Another upload with the key committed while this one waited on
        // `files_key`: answer with its record. Dropping the transaction
        // rolls it back (and gives the group number back).
        return match accepted_by_key(&tx, &record.company_id, &record.idempotency_key).await? {
            Some(existing) => Ok(CommitOutcome::Existing(existing)),
            None => Err(StoreError::Conflict(format!(
                "idempotency key of file '{}'",
                record.file_id
            ))),
        };
    }
    tx.commit().await.map_err(db("commit an upload"))?;
    Ok(CommitOutcome::Inserted(record))
}

pub(super) async fn find_by_key(
    c: &impl GenericClient,
    company_id: &str,
    key: &str,
) -> StoreResult<Option<FileRecord>> {
    if let Some(f) = accepted_by_key(c, company_id, key).await? {
        return Ok(Some(f));
    }
    let row = query_opt(
        c,
        "look up a rejected idempotency key",
        &format!(
            "SELECT {FILE_COLUMNS} FROM files WHERE company_id = $1 AND idempotency_key = $2 \
             ORDER BY seq DESC LIMIT 1"
        ),
        &[&company_id, &key],
    )
    .await?;
    row.as_ref().map(file_from_row).transpose()
}

pub(super) async fn list(
    c: &impl GenericClient,
    company_id: &str,
    query: &FileQuery,
) -> StoreResult<FilePage> {
    let (limit, cursor) = page_bounds(query.limit, query.cursor.as_deref())?;
    let rows = query_all(
        c,
        "list files",
        &format!(
            "SELECT {FILE_COLUMNS}, seq FROM files WHERE company_id = $1 \
             AND ($2::text IS NULL OR visitor_group_id = $2) \
             AND ($3::text IS NULL OR status = $3) \
             AND ($4::bigint IS NULL OR seq < $4) ORDER BY seq DESC LIMIT $5"
        ),
        &[
            &company_id,
            &query.visitor_group_id,
            &query.status.map(|s| s.as_str()),
            &cursor,
            &(limit + 1),
        ],
    )
    .await?;
    let rows = rows
        .iter()
        .map(|r| {
            let seq: i64 = r.try_get("seq").map_err(db("list files"))?;
            Ok((file_from_row(r)?, seq))
        })
        .collect::<StoreResult<Vec<_>>>()?;
    let (rows, next_cursor) = split_page(rows, limit, |(_, seq)| *seq);
    Ok(FilePage {
        files: rows.into_iter().map(|(f, _)| f).collect(),
        next_cursor,
    })
}

pub(super) async fn update_status(
    conn: &mut deadpool_postgres::Object,
    file_id: &str,
    update: StatusUpdate,
) -> StoreResult<FileRecord> {
    let tx = conn
        .transaction()
        .await
        .map_err(db("begin a status update"))?;
    let Some(mut rec) = by_id_for_update(&tx, file_id).await? else {
        return Err(StoreError::NotFound(format!("file '{file_id}'")));
    };
    apply_status_update(&mut rec, update);
    exec(
        &tx,
        "update a file's status",
        "UPDATE files SET status = $2, processing_start_date = $3, \
         file_reader_complete_date = $4, processing_end_date = $5, error = $6, \
         error_code = $7 WHERE file_id = $1",
        &[
            &file_id,
            &rec.status.as_str(),
            &rec.processing_start_date,
            &rec.file_reader_complete_date,
            &rec.processing_end_date,
            &rec.error,
            &rec.error_code,
        ],
    )
    .await?;
    tx.commit().await.map_err(db("commit a status update"))?;
    Ok(rec)
}

pub(super) async fn pending(c: &impl GenericClient, limit: u32) -> StoreResult<Vec<FileRecord>> {
    let rows = query_all(
        c,
        "list pending files",
        &format!("SELECT {FILE_COLUMNS} FROM files WHERE status IN ($1, $2) ORDER BY seq LIMIT $3"),
        &[
            &FileStatus::Uploaded.as_str(),
            &FileStatus::Processing.as_str(),
            &i64::from(limit),
        ],
    )
    .await?;
    files_from_rows(&rows)
}

pub(super) async fn referenced_blob_keys(c: &impl GenericClient) -> StoreResult<Vec<String>> {
    let rows = query_all(
        c,
        "list referenced blob keys",
        "SELECT blob_key AS referenced FROM files WHERE blob_key IS NOT NULL \
         UNION ALL SELECT rejects_key FROM files WHERE rejects_key IS NOT NULL",
        &[],
    )
    .await?;
    map_rows(rows, "list referenced blob keys", |r| {
        r.try_get("referenced")
    })
}

pub(super) async fn mark_hits_retracted(
    conn: &mut deadpool_postgres::Object,
    company_id: &str,
    file_id: &str,
    hits: u64,
    now: i64,
) -> StoreResult<FileRecord> {
    let tx = conn.transaction().await.map_err(db("begin a retraction"))?;
    let Some(mut rec) = by_id_for_update(&tx, file_id)
        .await?
        .filter(|f| f.company_id == company_id)
    else {
        return Err(StoreError::NotFound(format!("file '{file_id}'")));
    };
    if !apply_retraction(&mut rec, hits, now)? {
        return Ok(rec);
    }
    exec(
        &tx,
        "mark a file's hits retracted",
        "UPDATE files SET hits_retracted_at = $2, hits_retracted = $3, processing_log = $4 \
         WHERE file_id = $1",
        &[&file_id, &now, &big(hits), &rec.processing_log],
    )
    .await?;
    tx.commit().await.map_err(db("commit a retraction"))?;
    Ok(rec)
}

pub(super) async fn find_by_content(
    c: &impl GenericClient,
    company_id: &str,
    content_sha256: &str,
) -> StoreResult<Option<FileRecord>> {
    let row = query_opt(
        c,
        "look up a content hash",
        &format!(
            "SELECT {FILE_COLUMNS} FROM files WHERE company_id = $1 AND content_sha256 = $2 \
             AND status <> $3 ORDER BY seq LIMIT 1"
        ),
        &[&company_id, &content_sha256, &FileStatus::Rejected.as_str()],
    )
    .await?;
    row.as_ref().map(file_from_row).transpose()
}
