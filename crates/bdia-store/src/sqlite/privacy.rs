//! The audit trail of privacy deletions: rows appended once, never
//! changed, listed per company newest first (by `id`, which is also the
//! cursor).

use rusqlite::{params, Connection, Row};

use super::query_all;
use crate::common::{page_bounds, split_page};
use crate::{
    NewPrivacyDeletion, PageQuery, PrivacyDeletion, PrivacyDeletionPage, StoreError, StoreResult,
};

const COLUMNS: &str = "id, company_id, requested_by, requested_at, identifier_type, \
    customer_id_type, identifier_sha256, hits_removed, visitors, table_version";

fn from_row(r: &Row<'_>) -> rusqlite::Result<PrivacyDeletion> {
    Ok(PrivacyDeletion {
        id: r.get::<_, i64>("id")? as u64,
        deletion: NewPrivacyDeletion {
            company_id: r.get("company_id")?,
            requested_by: r.get("requested_by")?,
            requested_at: r.get("requested_at")?,
            identifier_type: r.get("identifier_type")?,
            customer_id_type: r.get("customer_id_type")?,
            identifier_sha256: r.get("identifier_sha256")?,
            hits_removed: r.get::<_, i64>("hits_removed")? as u64,
            visitors: r.get::<_, i64>("visitors")? as u64,
            table_version: r.get::<_, Option<i64>>("table_version")?.map(|v| v as u64),
        },
    })
}

pub(super) fn record(
    conn: &Connection,
    deletion: NewPrivacyDeletion,
) -> StoreResult<PrivacyDeletion> {
    let d = &deletion;
    conn.execute(
        "INSERT INTO privacy_deletions (company_id, requested_by, requested_at, \
         identifier_type, customer_id_type, identifier_sha256, hits_removed, visitors, \
         table_version) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
        params![
            d.company_id,
            d.requested_by,
            d.requested_at,
            d.identifier_type,
            d.customer_id_type,
            d.identifier_sha256,
            d.hits_removed as i64,
            d.visitors as i64,
            d.table_version.map(|v| v as i64),
        ],
    )
    .map_err(|e| match e {
        rusqlite::Error::SqliteFailure(f, _)
            if f.code == rusqlite::ErrorCode::ConstraintViolation =>
        {
            StoreError::NotFound(format!("company '{}'", d.company_id))
        }
        e => StoreError::backend("record a privacy deletion", e),
    })?;
    Ok(PrivacyDeletion {
        id: conn.last_insert_rowid() as u64,
        deletion,
    })
}

pub(super) fn list(
    conn: &Connection,
    company_id: &str,
    query: &PageQuery,
) -> StoreResult<PrivacyDeletionPage> {
    let (limit, cursor) = page_bounds(query.limit, query.cursor.as_deref())?;
    let rows = query_all(
        conn,
        "list privacy deletions",
        &format!(
            "SELECT {COLUMNS} FROM privacy_deletions WHERE company_id = ?1 \
             AND (?2 IS NULL OR id < ?2) ORDER BY id DESC LIMIT ?3"
        ),
        params![company_id, cursor, limit + 1],
        from_row,
    )?;
    let (rows, next_cursor) = split_page(rows, limit, |d| d.id as i64);
    Ok(PrivacyDeletionPage {
        deletions: rows,
        next_cursor,
    })
}
