//! The audit trail of privacy deletions: rows appended once, never
//! changed, listed per company newest first (by `id`, an identity column,
//! which is also the cursor).

use deadpool_postgres::GenericClient;
use tokio_postgres::Row;

use super::tenants::backend_foreign_key_violation;
use super::{big, db, map_rows, query_all, query_one};
use crate::common::{page_bounds, split_page};
use crate::{
    NewPrivacyDeletion, PageQuery, PrivacyDeletion, PrivacyDeletionPage, StoreError, StoreResult,
};

const COLUMNS: &str = "id, company_id, requested_by, requested_at, identifier_type, \
    customer_id_type, identifier_sha256, hits_removed, visitors, table_version";

fn from_row(r: &Row) -> Result<PrivacyDeletion, tokio_postgres::Error> {
    Ok(PrivacyDeletion {
        id: r.try_get::<_, i64>("id")? as u64,
        deletion: NewPrivacyDeletion {
            company_id: r.try_get("company_id")?,
            requested_by: r.try_get("requested_by")?,
            requested_at: r.try_get("requested_at")?,
            identifier_type: r.try_get("identifier_type")?,
            customer_id_type: r.try_get("customer_id_type")?,
            identifier_sha256: r.try_get("identifier_sha256")?,
            hits_removed: r.try_get::<_, i64>("hits_removed")? as u64,
            visitors: r.try_get::<_, i64>("visitors")? as u64,
            table_version: r
                .try_get::<_, Option<i64>>("table_version")?
                .map(|v| v as u64),
        },
    })
}

pub(super) async fn record(
    c: &impl GenericClient,
    deletion: NewPrivacyDeletion,
) -> StoreResult<PrivacyDeletion> {
    let d = &deletion;
    let row = query_one(
        c,
        "record a privacy deletion",
        "INSERT INTO privacy_deletions (company_id, requested_by, requested_at, \
         identifier_type, customer_id_type, identifier_sha256, hits_removed, visitors, \
         table_version) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) RETURNING id",
        &[
            &d.company_id,
            &d.requested_by,
            &d.requested_at,
            &d.identifier_type,
            &d.customer_id_type,
            &d.identifier_sha256,
            &big(d.hits_removed),
            &big(d.visitors),
            &d.table_version.map(big),
        ],
    )
    .await
    .map_err(|e| {
        if backend_foreign_key_violation(&e) {
            StoreError::NotFound(format!("company '{}'", d.company_id))
        } else {
            e
        }
    })?;
    let id: i64 = row.try_get("id").map_err(db("record a privacy deletion"))?;
    Ok(PrivacyDeletion {
        id: id as u64,
        deletion,
    })
}

pub(super) async fn list(
    c: &impl GenericClient,
    company_id: &str,
    query: &PageQuery,
) -> StoreResult<PrivacyDeletionPage> {
    let (limit, cursor) = page_bounds(query.limit, query.cursor.as_deref())?;
    let rows = query_all(
        c,
        "list privacy deletions",
        &format!(
            "SELECT {COLUMNS} FROM privacy_deletions WHERE company_id = $1 \
             AND ($2::bigint IS NULL OR id < $2) ORDER BY id DESC LIMIT $3"
        ),
        &[&company_id, &cursor, &(limit + 1)],
    )
    .await?;
    let rows = map_rows(rows, "list privacy deletions", from_row)?;
    let (rows, next_cursor) = split_page(rows, limit, |d| d.id as i64);
    Ok(PrivacyDeletionPage {
        deletions: rows,
        next_cursor,
    })
}
