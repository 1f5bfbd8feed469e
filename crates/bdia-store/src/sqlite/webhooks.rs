//! Webhook endpoints and their deliveries. Deliveries are written by the
//! triggers of the schema (`files_webhook_*`); this module registers
//! endpoints, lists the delivery log, and claims and records attempts
//! under the single writer.

use rusqlite::{params, Connection, Row};

use super::{commit, exec, query_all, query_opt, write_tx};
use crate::common::{page_bounds, split_page};
use crate::{
    DeliveryAttempt, DueDelivery, PageQuery, StoreError, StoreResult, Webhook, WebhookDelivery,
    WebhookDeliveryPage,
};

const HOOK_COLUMNS: &str = "id, company_id, url, events, secret, created";

const DELIVERY_COLUMNS: &str = "d.id, d.webhook_id, d.event_type, d.file_id, d.payload, \
    d.created, d.attempts, d.next_attempt_ms, d.delivered_at, d.last_status, d.last_error, \
    d.last_latency_ms, d.given_up";

fn hook_from_row(r: &Row<'_>) -> rusqlite::Result<Webhook> {
    let events: String = r.get("events")?;
    Ok(Webhook {
        id: r.get("id")?,
        company_id: r.get("company_id")?,
        url: r.get("url")?,
        events: serde_json::from_str(&events).unwrap_or_default(),
        secret: r.get("secret")?,
        created: r.get("created")?,
    })
}

fn delivery_from_row(r: &Row<'_>) -> rusqlite::Result<WebhookDelivery> {
    Ok(WebhookDelivery {
        id: r.get::<_, i64>("id")? as u64,
        webhook_id: r.get("webhook_id")?,
        event_type: r.get("event_type")?,
        file_id: r.get("file_id")?,
        payload: r.get("payload")?,
        created: r.get("created")?,
        attempts: r.get::<_, i64>("attempts")? as u32,
        next_attempt_ms: r.get("next_attempt_ms")?,
        delivered_at: r.get("delivered_at")?,
        last_status: r.get::<_, Option<i64>>("last_status")?.map(|s| s as u16),
        last_error: r.get("last_error")?,
        last_latency_ms: r
            .get::<_, Option<i64>>("last_latency_ms")?
            .map(|v| v as u64),
        given_up: r.get::<_, i64>("given_up")? != 0,
    })
}

pub(super) fn create(conn: &Connection, hook: Webhook) -> StoreResult<Webhook> {
    let events = serde_json::to_string(&hook.events).expect("strings serialize");
    conn.execute(
        "INSERT INTO webhooks (id, company_id, url, events, secret, created) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
        params![
            hook.id,
            hook.company_id,
            hook.url,
            events,
            hook.secret,
            hook.created
        ],
    )
    .map_err(|e| match e {
        rusqlite::Error::SqliteFailure(f, _)
            if f.extended_code == rusqlite::ffi::SQLITE_CONSTRAINT_FOREIGNKEY =>
        {
            StoreError::NotFound(format!("company '{}'", hook.company_id))
        }
        e => StoreError::backend("register a webhook", e),
    })?;
    Ok(hook)
}

pub(super) fn get(conn: &Connection, company_id: &str, id: &str) -> StoreResult<Option<Webhook>> {
    query_opt(
        conn,
        "read a webhook",
        &format!("SELECT {HOOK_COLUMNS} FROM webhooks WHERE company_id = ?1 AND id = ?2"),
        params![company_id, id],
        hook_from_row,
    )
}

pub(super) fn list(conn: &Connection, company_id: &str) -> StoreResult<Vec<Webhook>> {
    query_all(
        conn,
        "list webhooks",
        &format!("SELECT {HOOK_COLUMNS} FROM webhooks WHERE company_id = ?1 ORDER BY created, id"),
        params![company_id],
        hook_from_row,
    )
}

pub(super) fn delete(conn: &mut Connection, company_id: &str, id: &str) -> StoreResult<bool> {
    let tx = write_tx(conn, "delete a webhook")?;
    exec(
        &tx,
        "delete a webhook",
        "DELETE FROM webhook_deliveries WHERE webhook_id IN \
         (SELECT id FROM webhooks WHERE company_id = ?1 AND id = ?2)",
        params![company_id, id],
    )?;
    let n = exec(
        &tx,
        "delete a webhook",
        "DELETE FROM webhooks WHERE company_id = ?1 AND id = ?2",
        params![company_id, id],
    )?;
    commit(tx, "delete a webhook")?;
    Ok(n > 0)
}

pub(super) fn deliveries(
    conn: &Connection,
    company_id: &str,
    webhook_id: &str,
    query: &PageQuery,
) -> StoreResult<WebhookDeliveryPage> {
    let (limit, cursor) = page_bounds(query.limit, query.cursor.as_deref())?;
    let rows = query_all(
        conn,
        "list webhook deliveries",
        &format!(
            "SELECT {DELIVERY_COLUMNS} FROM webhook_deliveries d \
             JOIN webhooks w ON w.id = d.webhook_id \
             WHERE w.company_id = ?1 AND d.webhook_id = ?2 AND (?3 IS NULL OR d.id < ?3) \
             ORDER BY d.id DESC LIMIT ?4"
        ),
        params![company_id, webhook_id, cursor, limit + 1],
        delivery_from_row,
    )?;
    let (deliveries, next_cursor) = split_page(rows, limit, |d| d.id as i64);
    Ok(WebhookDeliveryPage {
        deliveries,
        next_cursor,
    })
}

pub(super) fn claim(
    conn: &mut Connection,
    now_ms: i64,
    claim_ms: i64,
    limit: u32,
) -> StoreResult<Vec<DueDelivery>> {
    let tx = write_tx(conn, "claim webhook deliveries")?;
    let due = query_all(
        &tx,
        "claim webhook deliveries",
        &format!(
            "SELECT {DELIVERY_COLUMNS}, w.url, w.secret FROM webhook_deliveries d \
             JOIN webhooks w ON w.id = d.webhook_id \
             WHERE d.delivered_at IS NULL AND d.given_up = 0 \
               AND d.next_attempt_ms <= ?1 AND d.claimed_until_ms <= ?1 \
               AND NOT EXISTS (SELECT 1 FROM webhook_deliveries e \
                   WHERE e.webhook_id = d.webhook_id AND e.file_id = d.file_id \
                     AND e.id < d.id AND e.delivered_at IS NULL AND e.given_up = 0) \
             ORDER BY d.next_attempt_ms, d.id LIMIT ?2"
        ),
        params![now_ms, i64::from(limit)],
        |r| {
            Ok(DueDelivery {
                delivery: delivery_from_row(r)?,
                url: r.get("url")?,
                secret: r.get("secret")?,
            })
        },
    )?;
    for d in &due {
        exec(
            &tx,
            "claim webhook deliveries",
            "UPDATE webhook_deliveries SET claimed_until_ms = ?2 WHERE id = ?1",
            params![d.delivery.id as i64, now_ms.saturating_add(claim_ms)],
        )?;
    }
    commit(tx, "claim webhook deliveries")?;
    Ok(due)
}

pub(super) fn record(conn: &Connection, id: u64, a: &DeliveryAttempt) -> StoreResult<bool> {
    let n = exec(
        conn,
        "record a webhook attempt",
        "UPDATE webhook_deliveries SET attempts = attempts + 1, last_status = ?2, \
         last_error = ?3, last_latency_ms = ?4, \
         delivered_at = CASE WHEN ?5 THEN ?6 ELSE NULL END, given_up = ?7, \
         next_attempt_ms = ?8, claimed_until_ms = 0 WHERE id = ?1",
        params![
            id as i64,
            a.status.map(i64::from),
            a.error,
            a.latency_ms as i64,
            a.delivered,
            a.at,
            a.given_up,
            a.next_attempt_ms
        ],
    )?;
    Ok(n > 0)
}

pub(super) fn prune(conn: &Connection, before: i64, limit: u32) -> StoreResult<u64> {
    let n = exec(
        conn,
        "prune webhook deliveries",
        "DELETE FROM webhook_deliveries WHERE id IN (SELECT id FROM webhook_deliveries \
         WHERE (delivered_at IS NOT NULL OR given_up = 1) AND created < ?1 \
         ORDER BY id LIMIT ?2)",
        params![before, i64::from(limit)],
    )?;
    Ok(n as u64)
}
