//! Webhooks: a company's endpoints, told of its files' state changes.
//!
//! - Events are written by the metadata store itself, in the transaction of
//!   the change they report (triggers on `files`, one delivery row per
//!   matching endpoint): a crash never loses one, and every node sees them.
//! - [`run`] sends them: it claims due deliveries
//!   ([`MetadataStore::claim_webhook_deliveries`], a claim lease so that
//!   two nodes never send the same attempt at once), POSTs each with a
//!   signature, records the attempt, and retries failures with exponential
//!   backoff and full jitter until `webhooks.max_age_secs`, then gives up.
//!   A file's deliveries to one endpoint go in order: a later one waits
//!   until the earlier ones are delivered or given up. Sending runs in its
//!   own tasks with bounded concurrency; processing never waits for it.
//! - At least once: a delivery may arrive more than once (a crash after
//!   sending, before recording); receivers dedupe by `bdia-delivery-id`.
//! - The HTTP interface: `POST|GET /api/v1/webhooks`,
//!   `GET|DELETE /api/v1/webhooks/{id}`, `GET /api/v1/webhooks/{id}/deliveries`.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::extract::rejection::{JsonRejection, QueryRejection};
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use bdia_store::{DeliveryAttempt, DueDelivery, MetadataStore, Webhook, WebhookDelivery};
use hmac::{KeyInit, Mac};
use rand::Rng;
use serde::{Deserialize, Serialize};
use tokio_util::sync::CancellationToken;

use crate::config::WebhooksConfig;
use crate::error::ApiError;
use crate::extract::{ApiPath, PathParam};
use crate::state::{AppState, Caller};

/// Every event type, as sent in `type` and accepted in `events`.
pub const EVENT_TYPES: &[&str] = &[
    "file.uploaded",
    "file.complete",
    "file.error",
    "file.rejected",
    "file.retracted",
    "file.cancelled",
    "group.paused",
    "group.resumed",
    "group.cancelled",
];

/// The signature header: `t=<unix seconds>,v1=<hex HMAC-SHA256>`.
pub const SIGNATURE_HEADER: &str = "bdia-signature";

/// The delivery id header: the same for every attempt of one delivery.
pub const DELIVERY_ID_HEADER: &str = "bdia-delivery-id";

/// The event type header.
pub const EVENT_HEADER: &str = "bdia-event";

/// Largest endpoint URL accepted, bytes.
pub const MAX_URL_BYTES: usize = 2_048;

/// Largest body of `POST /api/v1/webhooks`.
pub const BODY_LIMIT: usize = 16 * 1024;

/// `HMAC-SHA256(secret, "<t>.<body>")`, hex: the `v1` of the signature.
pub fn sign(secret: &str, t: i64, body: &str) -> String {
    let mut mac = hmac::Hmac::<sha2_v011::Sha256>::new_from_slice(secret.as_bytes())
        .expect("HMAC takes keys of any length");
    mac.update(t.to_string().as_bytes());
    mac.update(b".");
    mac.update(body.as_bytes());
    hex::encode(mac.finalize().into_bytes())
}

/// The `bdia-signature` header value for `body` sent at `t`.
pub fn signature_header(secret: &str, t: i64, body: &str) -> String {
    format!("t={t},v1={}", sign(secret, t, body))
}

/// The body of a delivery: the stored event plus its `delivery_id`.
pub(crate) fn delivery_body(d: &WebhookDelivery) -> String {
    let mut v: serde_json::Value =
        serde_json::from_str(&d.payload).unwrap_or_else(|_| serde_json::json!({}));
    if let Some(o) = v.as_object_mut() {
        o.insert("delivery_id".into(), d.id.into());
    }
    v.to_string()
}

/// The delay cap before attempt `attempt + 1` (after `attempt` failures):
/// `base * 2^(attempt - 1)`, at most `max`.
pub fn backoff_cap(config: &WebhooksConfig, attempt: u32) -> u64 {
    let doublings = attempt.saturating_sub(1).min(40);
    config
        .backoff_base_ms
        .saturating_mul(1u64 << doublings)
        .min(config.backoff_max_ms)
}

fn now_secs() -> i64 {
    crate::auth::now()
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis().min(i64::MAX as u128) as i64)
}

/// Sends due deliveries until `cancel`.
pub async fn run(store: Arc<dyn MetadataStore>, config: WebhooksConfig, cancel: CancellationToken) {
    let client = match reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(Duration::from_millis(config.timeout_ms))
        .user_agent(concat!("bdia-webhooks/", env!("CARGO_PKG_VERSION")))
        .build()
    {
        Ok(c) => c,
        Err(e) => {
            tracing::error!(error = %e, "webhook client; no webhooks are sent");
            return;
        }
    };
    let config = Arc::new(config);
    let slots = Arc::new(tokio::sync::Semaphore::new(config.concurrency as usize));
    // A claim outlives the attempt it covers.
    let claim_ms = i64::try_from(config.timeout_ms.saturating_mul(2) + 30_000).unwrap_or(i64::MAX);
    let poll = Duration::from_millis(config.poll_interval_ms);
    let mut sending = tokio::task::JoinSet::new();
    let mut next_prune = Instant::now();
    loop {
        while sending.try_join_next().is_some() {}
        if Instant::now() >= next_prune {
            prune(&*store, &config).await;
            next_prune = Instant::now() + PRUNE_EVERY;
        }
        if slots.available_permits() == 0 {
            tokio::select! {
                _ = cancel.cancelled() => break,
                slot = slots.acquire() => drop(slot),
            }
            continue;
        }
        let free = slots.available_permits() as u32;
        match store
            .claim_webhook_deliveries(now_ms(), claim_ms, free)
            .await
        {
            Ok(due) if !due.is_empty() => {
                for d in due {
                    let Ok(slot) = slots.clone().acquire_owned().await else {
                        return;
                    };
                    let (store, client, config) = (store.clone(), client.clone(), config.clone());
                    sending.spawn(async move {
                        attempt(&*store, &client, &config, d).await;
                        drop(slot);
                    });
                }
                if cancel.is_cancelled() {
                    break;
                }
                // More may be due already.
                continue;
            }
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e, "claiming webhook deliveries failed"),
        }
        tokio::select! {
            _ = cancel.cancelled() => break,
            _ = tokio::time::sleep(poll) => {}
        }
    }
    // Attempts cut short are sent again once their claim expires.
    sending.shutdown().await;
}

/// How often settled deliveries past `webhooks.log_retention_days` are
/// deleted.
const PRUNE_EVERY: Duration = Duration::from_secs(3_600);

/// Rows deleted per pruning statement (each its own short transaction).
const PRUNE_BATCH: u32 = 1_000;

/// Deletes the settled deliveries older than the log's retention.
async fn prune(store: &dyn MetadataStore, config: &WebhooksConfig) {
    let keep = i64::try_from(config.log_retention_days.saturating_mul(86_400)).unwrap_or(i64::MAX);
    let before = now_secs().saturating_sub(keep);
    let mut pruned = 0;
    loop {
        match store.prune_webhook_deliveries(before, PRUNE_BATCH).await {
            Ok(n) => {
                pruned += n;
                if n < u64::from(PRUNE_BATCH) {
                    break;
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, "pruning the webhook delivery log failed");
                break;
            }
        }
    }
    if pruned > 0 {
        tracing::info!(pruned, "webhook delivery log pruned");
    }
}

/// One attempt of one delivery, recorded.
async fn attempt(
    store: &dyn MetadataStore,
    client: &reqwest::Client,
    config: &WebhooksConfig,
    due: DueDelivery,
) {
    let d = &due.delivery;
    let body = delivery_body(d);
    let t = now_secs();
    let started = Instant::now();
    let sent = client
        .post(&due.url)
        .header(reqwest::header::CONTENT_TYPE, "application/json")
        .header(SIGNATURE_HEADER, signature_header(&due.secret, t, &body))
        .header(DELIVERY_ID_HEADER, d.id.to_string())
        .header(EVENT_HEADER, &d.event_type)
        .body(body)
        .send()
        .await;
    let latency = started.elapsed();
    let (status, error) = match sent {
        Ok(r) if r.status().is_success() => (Some(r.status().as_u16()), None),
        Ok(r) => (
            Some(r.status().as_u16()),
            Some(format!("HTTP {}", r.status())),
        ),
        Err(e) if e.is_timeout() => (
            None,
            Some(format!("timed out after {} ms", config.timeout_ms)),
        ),
        Err(e) => (None, Some(describe(&e))),
    };
    let delivered = error.is_none();
    let at = now_secs();
    let deadline_ms = d
        .created
        .saturating_add(i64::try_from(config.max_age_secs).unwrap_or(i64::MAX))
        .saturating_mul(1_000);
    let now = now_ms();
    let given_up = !delivered && now >= deadline_ms;
    let cap = backoff_cap(config, d.attempts + 1);
    let delay = rand::thread_rng().gen_range(0..=cap);
    let next_attempt_ms = now
        .saturating_add(i64::try_from(delay).unwrap_or(i64::MAX))
        .min(deadline_ms);
    let outcome = if delivered {
        "delivered"
    } else if given_up {
        "given_up"
    } else {
        "failed"
    };
    metrics::counter!(crate::metrics::WEBHOOK_DELIVERIES.name, "outcome" => outcome).increment(1);
    metrics::histogram!(crate::metrics::WEBHOOK_DELIVERY_SECONDS.name)
        .record(latency.as_secs_f64());
    if !delivered {
        tracing::info!(
            delivery_id = d.id,
            webhook_id = %d.webhook_id,
            attempts = d.attempts + 1,
            error = error.as_deref().unwrap_or(""),
            given_up,
            "webhook delivery failed"
        );
    }
    let recorded = store
        .record_webhook_attempt(
            d.id,
            DeliveryAttempt {
                at,
                status,
                error,
                latency_ms: latency.as_millis().min(u128::from(u64::MAX)) as u64,
                delivered,
                given_up,
                next_attempt_ms,
            },
        )
        .await;
    if let Err(e) = recorded {
        // The claim expires and the delivery is sent again.
        tracing::warn!(delivery_id = d.id, error = %e, "recording a webhook attempt failed");
    }
}

/// A send error with its causes (reqwest's own text names only the
/// outermost).
fn describe(e: &reqwest::Error) -> String {
    let mut text = e.to_string();
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}

// ---- HTTP interface ----

/// `POST /api/v1/webhooks` body.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateWebhook {
    /// Where deliveries go.
    pub url: String,
    /// Event types to deliver; absent or empty for every type.
    #[serde(default)]
    pub events: Option<Vec<String>>,
}

/// An endpoint as listed (never with its secret).
#[derive(Debug, Serialize)]
pub struct WireWebhook {
    /// The endpoint id.
    pub id: String,
    /// Where deliveries go.
    pub url: String,
    /// Event types delivered; empty for every type.
    pub events: Vec<String>,
    /// Unix seconds when registered.
    pub created: i64,
}

impl From<&Webhook> for WireWebhook {
    fn from(h: &Webhook) -> Self {
        WireWebhook {
            id: h.id.clone(),
            url: h.url.clone(),
            events: h.events.clone(),
            created: h.created,
        }
    }
}

/// The answer to `POST /api/v1/webhooks`: the endpoint and its secret,
/// shown this once.
#[derive(Debug, Serialize)]
pub struct CreatedWebhook {
    /// The endpoint.
    #[serde(flatten)]
    pub webhook: WireWebhook,
    /// The HMAC key of the signatures.
    pub secret: String,
}

/// One delivery in the log.
#[derive(Debug, Clone, Serialize)]
pub struct WireDelivery {
    /// The delivery id (`bdia-delivery-id`).
    pub id: u64,
    /// The event type.
    #[serde(rename = "type")]
    pub event_type: String,
    /// The file.
    pub file_id: String,
    /// Unix seconds of the event.
    pub occurred_at: i64,
    /// Attempts made.
    pub attempts: u32,
    /// `delivered`, `pending` or `given_up`.
    pub state: &'static str,
    /// Unix seconds of the successful attempt.
    pub delivered_at: Option<i64>,
    /// Unix milliseconds of the next attempt (pending only).
    pub next_attempt_ms: Option<i64>,
    /// HTTP status of the last attempt.
    pub last_status: Option<u16>,
    /// Why the last attempt failed.
    pub last_error: Option<String>,
    /// Duration of the last attempt, milliseconds.
    pub last_latency_ms: Option<u64>,
}

impl From<&WebhookDelivery> for WireDelivery {
    fn from(d: &WebhookDelivery) -> Self {
        let state = if d.delivered_at.is_some() {
            "delivered"
        } else if d.given_up {
            "given_up"
        } else {
            "pending"
        };
        WireDelivery {
            id: d.id,
            event_type: d.event_type.clone(),
            file_id: d.file_id.clone(),
            occurred_at: d.created,
            attempts: d.attempts,
            state,
            delivered_at: d.delivered_at,
            next_attempt_ms: (state == "pending").then_some(d.next_attempt_ms),
            last_status: d.last_status,
            last_error: d.last_error.clone(),
            last_latency_ms: d.last_latency_ms,
        }
    }
}

/// `{id}` of a webhook.
#[derive(Debug, Clone, Deserialize)]
#[serde(transparent)]
pub struct WebhookIdParam(pub String);

impl PathParam for WebhookIdParam {
    const MALFORMED: &'static str = "Malformed webhook id";
}

fn invalid(code: &'static str, message: String) -> ApiError {
    ApiError::Invalid { code, message }
}

/// Checks an endpoint URL: `http://` or `https://` with a host, no user
/// info, within [`MAX_URL_BYTES`] and the configured prefixes.
pub fn check_url(url: &str, config: &WebhooksConfig) -> Result<(), ApiError> {
    if url.len() > MAX_URL_BYTES {
        return Err(invalid(
            "invalid_webhook_url",
            format!("url: at most {MAX_URL_BYTES} bytes"),
        ));
    }
    let parsed = reqwest::Url::parse(url)
        .map_err(|e| invalid("invalid_webhook_url", format!("url '{url}': {e}")))?;
    if !matches!(parsed.scheme(), "http" | "https") {
        return Err(invalid(
            "invalid_webhook_url",
            format!("url '{url}': must be http:// or https://"),
        ));
    }
    if parsed.host_str().is_none_or(str::is_empty) {
        return Err(invalid(
            "invalid_webhook_url",
            format!("url '{url}': no host"),
        ));
    }
    if !parsed.username().is_empty() || parsed.password().is_some() {
        return Err(invalid(
            "invalid_webhook_url",
            "url: must not hold credentials (deliveries are signed instead)".into(),
        ));
    }
    if !config.allowed_url_prefixes.is_empty()
        && !config
            .allowed_url_prefixes
            .iter()
            .any(|p| url.starts_with(p.as_str()))
    {
        return Err(ApiError::Forbidden(format!(
            "url '{url}': this server delivers only to URLs starting with {}",
            config.allowed_url_prefixes.join(", ")
        )));
    }
    Ok(())
}

/// Checks an event filter: known types, each once.
pub fn check_events(events: Option<Vec<String>>) -> Result<Vec<String>, ApiError> {
    let mut out: Vec<String> = Vec::new();
    for e in events.unwrap_or_default() {
        if !EVENT_TYPES.contains(&e.as_str()) {
            return Err(invalid(
                "unknown_event_type",
                format!(
                    "events: unknown type '{e}'; known: {}",
                    EVENT_TYPES.join(", ")
                ),
            ));
        }
        if !out.contains(&e) {
            out.push(e);
        }
    }
    Ok(out)
}

fn body_error(e: JsonRejection) -> ApiError {
    if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
        return ApiError::PayloadTooLarge(format!(
            "Request body too large: at most {BODY_LIMIT} bytes"
        ));
    }
    invalid(
        "malformed_body",
        format!(
            "Expected a JSON body (Content-Type: application/json) with url and optional events: {}",
            e.body_text()
        ),
    )
}

/// `POST /api/v1/webhooks`.
#[tracing::instrument(skip_all)]
pub async fn create(
    State(state): State<AppState>,
    caller: Caller,
    body: Result<Json<CreateWebhook>, JsonRejection>,
) -> Result<Response, ApiError> {
    let Json(body) = body.map_err(body_error)?;
    let config = &state.config.webhooks;
    check_url(&body.url, config)?;
    let events = check_events(body.events)?;
    let existing = state.store.list_webhooks(&caller.company.id).await?;
    if existing.len() >= config.max_per_company as usize {
        return Err(ApiError::Conflict {
            code: "too_many_webhooks",
            message: format!(
                "a company may register at most {} webhooks; delete one first",
                config.max_per_company
            ),
        });
    }
    let mut secret = [0u8; 32];
    rand::thread_rng().fill(&mut secret);
    let hook = state
        .store
        .create_webhook(Webhook {
            id: uuid::Uuid::new_v4().to_string(),
            company_id: caller.company.id.clone(),
            url: body.url,
            events,
            secret: format!("whsec_{}", hex::encode(secret)),
            created: now_secs(),
        })
        .await?;
    tracing::info!(company = %caller.company.id, webhook_id = %hook.id, url = %hook.url, "webhook registered");
    Ok((
        StatusCode::CREATED,
        Json(CreatedWebhook {
            webhook: WireWebhook::from(&hook),
            secret: hook.secret.clone(),
        }),
    )
        .into_response())
}

/// `GET /api/v1/webhooks`.
pub async fn list(State(state): State<AppState>, caller: Caller) -> Result<Response, ApiError> {
    let hooks = state.store.list_webhooks(&caller.company.id).await?;
    let webhooks: Vec<WireWebhook> = hooks.iter().map(WireWebhook::from).collect();
    Ok(Json(serde_json::json!({ "webhooks": webhooks })).into_response())
}

async fn find(state: &AppState, caller: &Caller, id: &str) -> Result<Webhook, ApiError> {
    state
        .store
        .get_webhook(&caller.company.id, id)
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("No webhook '{id}'")))
}

/// `GET /api/v1/webhooks/{id}`.
pub async fn get(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(WebhookIdParam(id)): ApiPath<WebhookIdParam>,
) -> Result<Response, ApiError> {
    let hook = find(&state, &caller, &id).await?;
    Ok(Json(WireWebhook::from(&hook)).into_response())
}

/// `DELETE /api/v1/webhooks/{id}`: no further deliveries.
pub async fn delete(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(WebhookIdParam(id)): ApiPath<WebhookIdParam>,
) -> Result<Response, ApiError> {
    if !state.store.delete_webhook(&caller.company.id, &id).await? {
        return Err(ApiError::NotFound(format!("No webhook '{id}'")));
    }
    tracing::info!(company = %caller.company.id, webhook_id = %id, "webhook deleted");
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// `GET /api/v1/webhooks/{id}/deliveries?limit=&cursor=`: newest first.
pub async fn deliveries(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(WebhookIdParam(id)): ApiPath<WebhookIdParam>,
    q: Result<Query<HashMap<String, String>>, QueryRejection>,
) -> Result<Response, ApiError> {
    let Query(q) = q.map_err(|_| ApiError::BadRequest("Malformed query string".into()))?;
    let query = crate::handlers::page_query(&q)?;
    find(&state, &caller, &id).await?;
    let page = state
        .store
        .list_webhook_deliveries(&caller.company.id, &id, &query)
        .await
        .map_err(crate::handlers::cursor_error)?;
    let deliveries: Vec<WireDelivery> = page.deliveries.iter().map(WireDelivery::from).collect();
    Ok(Json(serde_json::json!({
        "deliveries": deliveries,
        "next_cursor": page.next_cursor,
    }))
    .into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_signature_is_hmac_sha256_of_t_dot_body() {
        // printf '1700000000.{}' | openssl dgst -sha256 -hmac Jefe
        let got = sign("Jefe", 1_700_000_000, "{}");
        assert_eq!(
            got,
            "d3793e2b4103edfbd98cc19591832f5fad701d413db9fcae0ae7dab8184ed207"
        );
        assert_eq!(
            signature_header("Jefe", 1_700_000_000, "{}"),
            format!("t=1700000000,v1={got}")
        );
        assert_ne!(got, sign("Jefe", 1_700_000_001, "{}"));
        assert_ne!(got, sign("Jeff", 1_700_000_000, "{}"));
    }

    #[test]
    fn backoff_doubles_up_to_the_cap() {
        let c = WebhooksConfig {
            backoff_base_ms: 1_000,
            backoff_max_ms: 10_000,
            ..WebhooksConfig::default()
        };
        let caps: Vec<u64> = (1..=6).map(|a| backoff_cap(&c, a)).collect();
        assert_eq!(caps, [1_000, 2_000, 4_000, 8_000, 10_000, 10_000]);
        assert_eq!(backoff_cap(&c, 1_000), 10_000);
    }

    #[test]
    fn urls_and_events_are_checked() {
        let c = WebhooksConfig::default();
        assert!(check_url("https://example.com/hook", &c).is_ok());
        assert!(check_url("http://127.0.0.1:9/x", &c).is_ok());
        for bad in [
            "ftp://example.com/",
            "file:///etc/passwd",
            "not a url",
            "https://user:pw@example.com/",
        ] {
            assert!(check_url(bad, &c).is_err(), "{bad}");
        }
        let long = format!("https://example.com/{}", "a".repeat(MAX_URL_BYTES));
        assert!(check_url(&long, &c).is_err());
        let only = WebhooksConfig {
            allowed_url_prefixes: vec!["https://hooks.example.com/".into()],
            ..WebhooksConfig::default()
        };
        assert!(check_url("https://hooks.example.com/a", &only).is_ok());
        assert!(matches!(
            check_url("http://169.254.169.254/latest", &only),
            Err(ApiError::Forbidden(_))
        ));
        assert_eq!(
            check_events(Some(vec!["file.complete".into(), "file.complete".into()])).unwrap(),
            ["file.complete"]
        );
        assert!(check_events(None).unwrap().is_empty());
        assert!(check_events(Some(vec!["file.done".into()])).is_err());
    }
}
