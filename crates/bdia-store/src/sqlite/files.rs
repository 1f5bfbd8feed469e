//! File records: the upload commit (idempotency key and group sequence),
//! lookups, listings and status updates.
//!
//! [`commit_upload`] checks the key and assigns `group_seq` (1 + the
//! highest of the (company, visitor group)) inside one `IMMEDIATE`
//! transaction; the `files_key` and `files_group_seq` unique indexes back
//! both rules up across processes: a writer that loses a race on the key
//! answers with the winner's record. Listings page newest first on `seq`
//! (the autoincrement commit order), which is also the cursor.
//! [`mark_hits_retracted`] records a retraction once: a second call finds
//! `hits_retracted_at` set and changes nothing.

use rusqlite::{params, Connection, Row};

use super::{commit, db, exec, is_unique_violation, query_all, query_one, query_opt, write_tx};
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
pub(super) fn file_from_row(row: &Row<'_>) -> rusqlite::Result<FileRecord> {
    let status: String = row.get("status")?;
    let status = status.parse::<FileStatus>().map_err(|e| {
        let index = row.as_ref().column_index("status").unwrap_or_default();
        rusqlite::Error::FromSqlConversionFailure(index, rusqlite::types::Type::Text, Box::new(e))
    })?;
    Ok(FileRecord {
        file_id: row.get("file_id")?,
        company_id: row.get("company_id")?,
        visitor_group_id: row.get("visitor_group_id")?,
        idempotency_key: row.get("idempotency_key")?,
        upload_name: row.get("upload_name")?,
        size: row.get::<_, i64>("size")? as u64,
        uncompressed_size: row.get::<_, i64>("uncompressed_size")? as u64,
        received_date: row.get("received_date")?,
        rows: row.get::<_, i64>("rows")? as u64,
        invalid_rows: row.get::<_, i64>("invalid_rows")? as u64,
        status,
        error: row.get("error")?,
        error_code: row.get("error_code")?,
        processing_log: row.get("processing_log")?,
        processing_start_date: row.get("processing_start_date")?,
        file_reader_complete_date: row.get("file_reader_complete_date")?,
        processing_end_date: row.get("processing_end_date")?,
        group_seq: row.get::<_, Option<i64>>("group_seq")?.map(|v| v as u64),
        blob_key: row.get("blob_key")?,
        rejects_kept: match row.get::<_, Option<i64>>("rejects_kept")? {
            Some(n) => n as u64,
            // Written before reports were capped: every invalid row is in
            // the report, when there is one.
            None if row.get::<_, Option<String>>("rejects_key")?.is_some() => {
                row.get::<_, i64>("invalid_rows")? as u64
            }
            None => 0,
        },
        rejects_key: row.get("rejects_key")?,
        processed_by: row.get("processed_by")?,
        content_sha256: row.get("content_sha256")?,
        duplicate_of: row.get("duplicate_of")?,
        lease_epoch: row.get::<_, Option<i64>>("lease_epoch")?.map(|v| v as u64),
        hits_retracted_at: row.get("hits_retracted_at")?,
        hits_retracted: row
            .get::<_, Option<i64>>("hits_retracted")?
            .map(|n| n as u64),
    })
}

/// One record by id, whichever company owns it.
pub(super) fn by_id(conn: &Connection, file_id: &str) -> StoreResult<Option<FileRecord>> {
    query_opt(
        conn,
        "read a file record",
        &format!("SELECT {FILE_COLUMNS} FROM files WHERE file_id = ?1"),
        [file_id],
        file_from_row,
    )
}

/// The accepted (non-`REJECTED`) record holding a company's key.
fn accepted_by_key(
    conn: &Connection,
    company_id: &str,
    key: &str,
) -> StoreResult<Option<FileRecord>> {
    // The status is spelled in the text, not bound: the query repeats the
    // condition of the partial index `files_key`, which SQLite uses only
    // when the query's condition matches it literally.
    query_opt(
        conn,
        "look up an idempotency key",
        &format!(
            "SELECT {FILE_COLUMNS} FROM files WHERE company_id = ?1 AND idempotency_key = ?2 \
             AND status <> '{}' ORDER BY seq LIMIT 1",
            FileStatus::Rejected.as_str()
        ),
        params![company_id, key],
        file_from_row,
    )
}

fn insert(conn: &Connection, r: &FileRecord) -> rusqlite::Result<usize> {
    conn.execute(
        &format!(
            "INSERT INTO files ({FILE_COLUMNS}) VALUES \
             (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, ?18, ?19, ?20, ?21, \
             ?22, ?23, ?24, ?25, ?26, ?27)"
        ),
        params![
            r.file_id,
            r.company_id,
            r.visitor_group_id,
            r.idempotency_key,
            r.upload_name,
            r.size as i64,
            r.uncompressed_size as i64,
            r.received_date,
            r.rows as i64,
            r.invalid_rows as i64,
            r.status.as_str(),
            r.error,
            r.error_code,
            r.processing_log,
            r.processing_start_date,
            r.file_reader_complete_date,
            r.processing_end_date,
            r.group_seq.map(|v| v as i64),
            r.blob_key,
            r.rejects_key,
            r.rejects_kept as i64,
            r.hits_retracted_at,
            r.hits_retracted.map(|n| n as i64),
            r.processed_by,
            r.lease_epoch.map(|n| n as i64),
            r.content_sha256,
            r.duplicate_of,
        ],
    )
}

pub(super) fn commit_upload(conn: &mut Connection, file: NewFile) -> StoreResult<CommitOutcome> {
    let tx = write_tx(conn, "begin an upload commit")?;
    let mut record = file.record;
    if let Some(existing) = accepted_by_key(&tx, &record.company_id, &record.idempotency_key)? {
        return Ok(CommitOutcome::Existing(existing));
    }
    record.group_seq = None;
    if record.status == FileStatus::Uploaded {
        let next: i64 = query_one(
            &tx,
            "assign a group sequence",
            "SELECT COALESCE(MAX(group_seq), 0) + 1 AS next FROM files \
             WHERE company_id = ?1 AND visitor_group_id = ?2 AND group_seq IS NOT NULL",
            params![record.company_id, record.visitor_group_id],
            |r| r.get("next"),
        )?;
        record.group_seq = Some(next as u64);
    }
    match insert(&tx, &record) {
        Ok(_) => {}
        Err(e) if is_unique_violation(&e) => {
            // Another writer won the key (another process on the same
            // database): answer with its record.
            drop(tx);
            return match accepted_by_key(conn, &record.company_id, &record.idempotency_key)? {
                Some(existing) => Ok(CommitOutcome::Existing(existing)),
                None => Err(StoreError::Conflict(format!("file '{}'", record.file_id))),
            };
        }
        Err(e) => return Err(db("insert a file record")(e)),
    }
    commit(tx, "commit an upload")?;
    Ok(CommitOutcome::Inserted(record))
}

pub(super) fn find_by_key(
    conn: &Connection,
    company_id: &str,
    key: &str,
) -> StoreResult<Option<FileRecord>> {
    if let Some(f) = accepted_by_key(conn, company_id, key)? {
        return Ok(Some(f));
    }
    query_opt(
        conn,
        "look up a rejected idempotency key",
        &format!(
            "SELECT {FILE_COLUMNS} FROM files WHERE company_id = ?1 AND idempotency_key = ?2 \
             ORDER BY seq DESC LIMIT 1"
        ),
        params![company_id, key],
        file_from_row,
    )
}

pub(super) fn list(
    conn: &Connection,
    company_id: &str,
    query: &FileQuery,
) -> StoreResult<FilePage> {
    let (limit, cursor) = page_bounds(query.limit, query.cursor.as_deref())?;
    let rows = query_all(
        conn,
        "list files",
        &format!(
            "SELECT {FILE_COLUMNS}, seq FROM files WHERE company_id = ?1 \
             AND (?2 IS NULL OR visitor_group_id = ?2) AND (?3 IS NULL OR status = ?3) \
             AND (?4 IS NULL OR seq < ?4) ORDER BY seq DESC LIMIT ?5"
        ),
        params![
            company_id,
            query.visitor_group_id,
            query.status.map(|s| s.as_str()),
            cursor,
            limit + 1
        ],
        |r| Ok((file_from_row(r)?, r.get::<_, i64>("seq")?)),
    )?;
    let (rows, next_cursor) = split_page(rows, limit, |(_, seq)| *seq);
    Ok(FilePage {
        files: rows.into_iter().map(|(f, _)| f).collect(),
        next_cursor,
    })
}

pub(super) fn update_status(
    conn: &mut Connection,
    file_id: &str,
    update: StatusUpdate,
) -> StoreResult<FileRecord> {
    let tx = write_tx(conn, "begin a status update")?;
    let Some(mut rec) = by_id(&tx, file_id)? else {
        return Err(StoreError::NotFound(format!("file '{file_id}'")));
    };
    apply_status_update(&mut rec, update);
    exec(
        &tx,
        "update a file's status",
        "UPDATE files SET status = ?2, processing_start_date = ?3, \
         file_reader_complete_date = ?4, processing_end_date = ?5, error = ?6, \
         error_code = ?7 WHERE file_id = ?1",
        params![
            file_id,
            rec.status.as_str(),
            rec.processing_start_date,
            rec.file_reader_complete_date,
            rec.processing_end_date,
            rec.error,
            rec.error_code
        ],
    )?;
    commit(tx, "commit a status update")?;
    Ok(rec)
}

pub(super) fn pending(conn: &Connection, limit: u32) -> StoreResult<Vec<FileRecord>> {
    query_all(
        conn,
        "list pending files",
        &format!("SELECT {FILE_COLUMNS} FROM files WHERE status IN (?1, ?2) ORDER BY seq LIMIT ?3"),
        params![
            FileStatus::Uploaded.as_str(),
            FileStatus::Processing.as_str(),
            limit as i64
        ],
        file_from_row,
    )
}

pub(super) fn referenced_blob_keys(conn: &Connection) -> StoreResult<Vec<String>> {
    query_all(
        conn,
        "list referenced blob keys",
        "SELECT blob_key AS referenced FROM files WHERE blob_key IS NOT NULL \
         UNION ALL SELECT rejects_key FROM files WHERE rejects_key IS NOT NULL",
        [],
        |r| r.get("referenced"),
    )
}

pub(super) fn mark_hits_retracted(
    conn: &mut Connection,
    company_id: &str,
    file_id: &str,
    hits: u64,
    now: i64,
) -> StoreResult<FileRecord> {
    let tx = write_tx(conn, "begin a retraction")?;
    let Some(mut rec) = by_id(&tx, file_id)?.filter(|f| f.company_id == company_id) else {
        return Err(StoreError::NotFound(format!("file '{file_id}'")));
    };
    if !apply_retraction(&mut rec, hits, now)? {
        return Ok(rec);
    }
    exec(
        &tx,
        "mark a file's hits retracted",
        "UPDATE files SET hits_retracted_at = ?2, hits_retracted = ?3, processing_log = ?4 \
         WHERE file_id = ?1",
        params![file_id, now, hits as i64, rec.processing_log],
    )?;
    commit(tx, "commit a retraction")?;
    Ok(rec)
}

pub(super) fn find_by_content(
    conn: &Connection,
    company_id: &str,
    content_sha256: &str,
) -> StoreResult<Option<FileRecord>> {
    query_opt(
        conn,
        "look up a content hash",
        &format!(
            "SELECT {FILE_COLUMNS} FROM files WHERE company_id = ?1 AND content_sha256 = ?2 \
             AND status <> '{}' ORDER BY seq LIMIT 1",
            FileStatus::Rejected.as_str()
        ),
        params![company_id, content_sha256],
        file_from_row,
    )
}
