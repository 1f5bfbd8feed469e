//! Webhook endpoints and their deliveries. Deliveries are written by the
//! trigger of the schema (`files_webhooks`); this module registers
//! endpoints, lists the delivery log, and claims (`FOR UPDATE SKIP
//! LOCKED`, then a claim lease in `claimed_until_ms`) and records attempts.

use deadpool_postgres::GenericClient;
use tokio_postgres::Row;

use super::tenants::backend_foreign_key_violation;
use super::{big, exec, map_opt, map_rows, query_all, query_opt};
use crate::common::{page_bounds, split_page};
use crate::{
    DeliveryAttempt, DueDelivery, PageQuery, StoreError, StoreResult, Webhook, WebhookDelivery,
    WebhookDeliveryPage,
};

const HOOK_COLUMNS: &str = "id, company_id, url, events::TEXT AS events, secret, created";

const DELIVERY_COLUMNS: &str = "d.id, d.webhook_id, d.event_type, d.file_id, d.payload, \
    d.created, d.attempts, d.next_attempt_ms, d.delivered_at, d.last_status, d.last_error, \
    d.last_latency_ms, d.given_up";

fn hook_from_row(r: &Row) -> Result<Webhook, tokio_postgres::Error> {
    let events: String = r.try_get("events")?;
    Ok(Webhook {
        id: r.try_get("id")?,
        company_id: r.try_get("company_id")?,
        url: r.try_get("url")?,
        events: serde_json::from_str(&events).unwrap_or_default(),
        secret: r.try_get("secret")?,
        created: r.try_get("created")?,
    })
}

fn delivery_from_row(r: &Row) -> Result<WebhookDelivery, tokio_postgres::Error> {
    Ok(WebhookDelivery {
        id: r.try_get::<_, i64>("id")? as u64,
        webhook_id: r.try_get("webhook_id")?,
        event_type: r.try_get("event_type")?,
        file_id: r.try_get("file_id")?,
        payload: r.try_get("payload")?,
        created: r.try_get("created")?,
        attempts: r.try_get::<_, i64>("attempts")? as u32,
        next_attempt_ms: r.try_get("next_attempt_ms")?,
        delivered_at: r.try_get("delivered_at")?,
        last_status: r
            .try_get::<_, Option<i64>>("last_status")?
            .map(|s| s as u16),
        last_error: r.try_get("last_error")?,
        last_latency_ms: r
            .try_get::<_, Option<i64>>("last_latency_ms")?
            .map(|v| v as u64),
        given_up: r.try_get("given_up")?,
    })
}

pub(super) async fn create(c: &impl GenericClient, hook: Webhook) -> StoreResult<Webhook> {
    let events = serde_json::to_string(&hook.events).expect("strings serialize");
    exec(
        c,
        "register a webhook",
        "INSERT INTO webhooks (id, company_id, url, events, secret, created) \
         VALUES ($1, $2, $3, $4::TEXT::JSONB, $5, $6)",
        &[
            &hook.id,
            &hook.company_id,
            &hook.url,
            &events,
            &hook.secret,
            &hook.created,
        ],
    )
    .await
    .map_err(|e| {
        if backend_foreign_key_violation(&e) {
            StoreError::NotFound(format!("company '{}'", hook.company_id))
        } else {
            e
        }
    })?;
    Ok(hook)
}

pub(super) async fn get(
    c: &impl GenericClient,
    company_id: &str,
    id: &str,
) -> StoreResult<Option<Webhook>> {
    let row = query_opt(
        c,
        "read a webhook",
        &format!("SELECT {HOOK_COLUMNS} FROM webhooks WHERE company_id = $1 AND id = $2"),
        &[&company_id, &id],
    )
    .await?;
    map_opt(row, "read a webhook", hook_from_row)
}

pub(super) async fn list(c: &impl GenericClient, company_id: &str) -> StoreResult<Vec<Webhook>> {
    let rows = query_all(
        c,
        "list webhooks",
        &format!("SELECT {HOOK_COLUMNS} FROM webhooks WHERE company_id = $1 ORDER BY created, id"),
        &[&company_id],
    )
    .await?;
    map_rows(rows, "list webhooks", hook_from_row)
}

pub(super) async fn delete(
    c: &impl GenericClient,
    company_id: &str,
    id: &str,
) -> StoreResult<bool> {
    // The deliveries go with it (ON DELETE CASCADE).
    let n = exec(
        c,
        "delete a webhook",
        "DELETE FROM webhooks WHERE company_id = $1 AND id = $2",
        &[&company_id, &id],
    )
    .await?;
    Ok(n > 0)
}

pub(super) async fn deliveries(
    c: &impl GenericClient,
    company_id: &str,
    webhook_id: &str,
    query: &PageQuery,
) -> StoreResult<WebhookDeliveryPage> {
    let (limit, cursor) = page_bounds(query.limit, query.cursor.as_deref())?;
    let rows = query_all(
        c,
        "list webhook deliveries",
        &format!(
            "SELECT {DELIVERY_COLUMNS} FROM webhook_deliveries d \
             JOIN webhooks w ON w.id = d.webhook_id \
             WHERE w.company_id = $1 AND d.webhook_id = $2 \
               AND ($3::bigint IS NULL OR d.id < $3) \
             ORDER BY d.id DESC LIMIT $4"
        ),
        &[&company_id, &webhook_id, &cursor, &(limit + 1)],
    )
    .await?;
    let rows = map_rows(rows, "list webhook deliveries", delivery_from_row)?;
    let (deliveries, next_cursor) = split_page(rows, limit, |d| d.id as i64);
    Ok(WebhookDeliveryPage {
        deliveries,
        next_cursor,
    })
}

pub(super) async fn claim(
    c: &impl GenericClient,
    now_ms: i64,
    claim_ms: i64,
    limit: u32,
) -> StoreResult<Vec<DueDelivery>> {
    let rows = query_all(
        c,
        "claim webhook deliveries",
        &format!(
            "WITH due AS ( \
                 SELECT d.id FROM webhook_deliveries d \
                 WHERE d.delivered_at IS NULL AND NOT d.given_up \
                   AND d.next_attempt_ms <= $1 AND d.claimed_until_ms <= $1 \
                   AND NOT EXISTS (SELECT 1 FROM webhook_deliveries e \
                       WHERE e.webhook_id = d.webhook_id AND e.file_id = d.file_id \
                         AND e.id < d.id AND e.delivered_at IS NULL AND NOT e.given_up) \
                 ORDER BY d.next_attempt_ms, d.id LIMIT $3 \
                 FOR UPDATE SKIP LOCKED), \
             claimed AS ( \
                 UPDATE webhook_deliveries u SET claimed_until_ms = $2 \
                 FROM due WHERE u.id = due.id RETURNING u.*) \
             SELECT {DELIVERY_COLUMNS}, w.url, w.secret FROM claimed d \
             JOIN webhooks w ON w.id = d.webhook_id \
             ORDER BY d.next_attempt_ms, d.id"
        ),
        &[&now_ms, &now_ms.saturating_add(claim_ms), &i64::from(limit)],
    )
    .await?;
    map_rows(rows, "claim webhook deliveries", |r| {
        Ok(DueDelivery {
            delivery: delivery_from_row(r)?,
            url: r.try_get("url")?,
            secret: r.try_get("secret")?,
        })
    })
}

pub(super) async fn record(
    c: &impl GenericClient,
    id: u64,
    a: &DeliveryAttempt,
) -> StoreResult<bool> {
    let n = exec(
        c,
        "record a webhook attempt",
        "UPDATE webhook_deliveries SET attempts = attempts + 1, last_status = $2, \
         last_error = $3, last_latency_ms = $4, \
         delivered_at = CASE WHEN $5 THEN $6::BIGINT ELSE NULL END, given_up = $7, \
         next_attempt_ms = $8, claimed_until_ms = 0 WHERE id = $1",
        &[
            &big(id),
            &a.status.map(i64::from),
            &a.error,
            &big(a.latency_ms),
            &a.delivered,
            &a.at,
            &a.given_up,
            &a.next_attempt_ms,
        ],
    )
    .await?;
    Ok(n > 0)
}

pub(super) async fn prune(c: &impl GenericClient, before: i64, limit: u32) -> StoreResult<u64> {
    exec(
        c,
        "prune webhook deliveries",
        "DELETE FROM webhook_deliveries WHERE id IN (SELECT id FROM webhook_deliveries \
         WHERE (delivered_at IS NOT NULL OR given_up) AND created < $1 \
         ORDER BY id LIMIT $2)",
        &[&before, &i64::from(limit)],
    )
    .await
}
