//! Handlers other than upload and validate: tokens, lookups, probes.

use std::collections::HashMap;

use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::{Form, Json};
use bdia_store::{FileQuery, FileStatus, PageQuery, StoreError};

use crate::auth::{now, verify_client_jwt, verify_secret, ExchangeRules};
use crate::error::ApiError;
use crate::extract::{ApiPath, FileIdParam, KeyParam};
use crate::state::{bearer_token, AppState, Caller};

/// The `flow` label of the client-credentials token endpoint.
const CLIENT_CREDENTIALS: &str = "client_credentials";
/// The `flow` label of the JWT exchange.
const JWT_EXCHANGE: &str = "jwt_exchange";

fn field<'a>(form: &'a HashMap<String, String>, name: &str) -> Result<&'a str, ApiError> {
    form.get(name)
        .map(|s| s.trim())
        .filter(|s| !s.is_empty())
        .ok_or_else(|| ApiError::BadRequest(format!("Missing form field '{name}'")))
}

/// 429 for a client id blocked by its failures.
fn throttled(flow: &'static str, wait: std::time::Duration) -> ApiError {
    metrics::counter!(crate::metrics::AUTH_THROTTLED.name, "flow" => flow).increment(1);
    ApiError::RateLimited {
        retry_after_secs: wait.as_secs_f64().ceil() as u64,
    }
}

/// How a token endpoint answers `err` for `client_id`: a 401 counts as a
/// failure of that id ([`crate::auth_throttle`]) and becomes 429 once the
/// id is blocked; other errors pass unchanged.
fn counted(state: &AppState, client_id: &str, flow: &'static str, err: ApiError) -> ApiError {
    if !matches!(err, ApiError::Unauthorized(_)) {
        return err;
    }
    match state.auth_failures.failed(client_id) {
        Ok(()) => err,
        Err(wait) => throttled(flow, wait),
    }
}

async fn check_client(
    state: &AppState,
    form: &HashMap<String, String>,
    flow: &'static str,
) -> Result<bdia_store::ApiClient, ApiError> {
    let client_id = field(form, "client_id")?;
    let secret = field(form, "client_secret")?;
    state
        .auth_failures
        .check(client_id)
        .map_err(|wait| throttled(flow, wait))?;
    let client = state.store.get_client(client_id).await?;
    let Some(client) = client.filter(|c| verify_secret(secret, &c.secret_hash)) else {
        let err = ApiError::Unauthorized("Invalid client credentials".into());
        return Err(counted(state, client_id, flow, err));
    };
    if client.disabled {
        return Err(ApiError::Forbidden("This API client is disabled".into()));
    }
    Ok(client)
}

/// Largest body of the token endpoints: a form with an id, a secret and at
/// most a service-account JWT. Anything larger is refused with 413 after at
/// most this many bytes were read (the upload limit applies to uploads only).
pub const TOKEN_BODY_LIMIT: usize = 64 * 1024;

/// The answer to a token form that cannot be read: 413 past
/// [`TOKEN_BODY_LIMIT`], 400 otherwise.
fn form_error(e: axum::extract::rejection::FormRejection) -> ApiError {
    if e.status() == axum::http::StatusCode::PAYLOAD_TOO_LARGE {
        ApiError::PayloadTooLarge(format!(
            "Request body too large: at most {TOKEN_BODY_LIMIT} bytes"
        ))
    } else {
        ApiError::BadRequest("Expected an application/x-www-form-urlencoded body".into())
    }
}

/// `POST /ims/token/v3` (client credentials).
#[tracing::instrument(skip_all)]
pub async fn token(
    State(state): State<AppState>,
    form: Result<Form<HashMap<String, String>>, axum::extract::rejection::FormRejection>,
) -> Result<Response, ApiError> {
    let Form(form) = form.map_err(form_error)?;
    let grant = field(&form, "grant_type")?;
    if grant != "client_credentials" {
        return Err(ApiError::BadRequest(format!(
            "Unsupported grant_type '{grant}': use client_credentials"
        )));
    }
    let client = check_client(&state, &form, CLIENT_CREDENTIALS).await?;
    let token = state.tokens.issue(&client)?;
    metrics::counter!(crate::metrics::TOKENS_ISSUED.name, "flow" => CLIENT_CREDENTIALS)
        .increment(1);
    Ok(Json(token).into_response())
}

/// `POST /ims/exchange/jwt` (service-account JWT exchange): the JWT is
/// checked ([`verify_client_jwt`]), then remembered so that it cannot be
/// exchanged a second time.
#[tracing::instrument(skip_all)]
pub async fn exchange_jwt(
    State(state): State<AppState>,
    form: Result<Form<HashMap<String, String>>, axum::extract::rejection::FormRejection>,
) -> Result<Response, ApiError> {
    let Form(form) = form.map_err(form_error)?;
    let jwt = field(&form, "jwt_token")?.to_string();
    let client = check_client(&state, &form, JWT_EXCHANGE).await?;
    let rules = ExchangeRules {
        leeway_secs: state.config.auth.jwt_leeway_secs,
        max_lifetime_secs: state.config.auth.jwt_max_lifetime_secs,
    };
    let now = now();
    let assertion = verify_client_jwt(&client, &jwt, rules, now)
        .map_err(|e| counted(&state, &client.client_id, JWT_EXCHANGE, e))?;
    if !state
        .store
        .remember_assertion(&assertion.replay_key, assertion.keep_until, now)
        .await?
    {
        let err = ApiError::Unauthorized(
            "Invalid jwt_token: already exchanged (a replay); sign a new one for each exchange, \
             with a unique jti to make more than one per second"
                .into(),
        );
        return Err(counted(&state, &client.client_id, JWT_EXCHANGE, err));
    }
    let token = state.tokens.issue(&client)?;
    metrics::counter!(crate::metrics::TOKENS_ISSUED.name, "flow" => JWT_EXCHANGE).increment(1);
    Ok(Json(token).into_response())
}

fn not_found() -> ApiError {
    ApiError::NotFound("File not found".into())
}

/// `GET /aa/collect/v1/events/key/{idempotency_key}`.
#[tracing::instrument(skip_all)]
pub async fn by_key(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(KeyParam(key)): ApiPath<KeyParam>,
) -> Result<Response, ApiError> {
    let rec = state
        .store
        .find_by_key(&caller.company.id, &key)
        .await?
        .ok_or_else(not_found)?;
    let answer = crate::groups::answer_for(&state, &caller, &rec).await?;
    Ok(Json(answer).into_response())
}

/// `GET /aa/collect/v1/events/{file_id}`.
#[tracing::instrument(skip_all)]
pub async fn by_id(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(FileIdParam(file_id)): ApiPath<FileIdParam>,
) -> Result<Response, ApiError> {
    let rec = callers_file(&state, &caller, &file_id).await?;
    let answer = crate::groups::answer_for(&state, &caller, &rec).await?;
    Ok(Json(answer).into_response())
}

/// One of the caller's company's files: 404 for an unknown file or another
/// company's.
pub(crate) async fn callers_file(
    state: &AppState,
    caller: &Caller,
    file_id: &str,
) -> Result<bdia_store::FileRecord, ApiError> {
    state
        .store
        .get_file(&caller.company.id, file_id)
        .await?
        .ok_or_else(not_found)
}

/// `GET /aa/collect/v1/events?vgid=&status=&limit=&cursor=`.
#[tracing::instrument(skip_all)]
pub async fn list(
    State(state): State<AppState>,
    caller: Caller,
    q: Result<Query<HashMap<String, String>>, QueryRejection>,
) -> Result<Response, ApiError> {
    let Query(q) = q.map_err(|_| ApiError::BadRequest("Malformed query string".into()))?;
    let status = q
        .get("status")
        .filter(|s| !s.is_empty())
        .map(|s| s.parse::<FileStatus>())
        .transpose()
        .map_err(|_| {
            let all: Vec<&str> = FileStatus::ALL.iter().map(|s| s.as_str()).collect();
            ApiError::BadRequest(format!("status must be one of {}", all.join(", ")))
        })?;
    let page = page_query(&q)?;
    let query = FileQuery {
        visitor_group_id: q.get("vgid").filter(|s| !s.is_empty()).cloned(),
        status,
        limit: page.limit,
        cursor: page.cursor,
    };
    let page = state
        .store
        .list_files(&caller.company.id, &query)
        .await
        .map_err(cursor_error)?;
    let mut files: Vec<_> = page.files.iter().map(bdia_wire::FileRecord::from).collect();
    crate::groups::annotate_queue(
        &*state.store,
        &caller.company.id,
        caller.company.settings.rows_per_second,
        &mut files,
        crate::auth::now(),
    )
    .await?;
    Ok(Json(bdia_wire::FileList {
        files,
        next_cursor: page.next_cursor,
    })
    .into_response())
}

/// The `limit` (1..1000, default 100) and `cursor` of a listing's query;
/// 400 for a bad limit.
pub(crate) fn page_query(q: &HashMap<String, String>) -> Result<PageQuery, ApiError> {
    let limit = match q.get("limit").filter(|s| !s.is_empty()) {
        None => 100,
        Some(l) => l
            .parse::<u32>()
            .ok()
            .filter(|n| (1..=1000).contains(n))
            .ok_or_else(|| ApiError::BadRequest("limit must be 1..1000".into()))?,
    };
    Ok(PageQuery {
        limit,
        cursor: q.get("cursor").filter(|s| !s.is_empty()).cloned(),
    })
}

/// A listing's store error: a cursor the store did not make is a 400.
pub(crate) fn cursor_error(e: StoreError) -> ApiError {
    match e {
        StoreError::Invalid(_) => ApiError::BadRequest("Invalid cursor".into()),
        e => e.into(),
    }
}

/// `GET /healthz`: the process is up.
pub async fn healthz() -> Json<serde_json::Value> {
    Json(serde_json::json!({ "status": "ok" }))
}

/// Database calls waiting or running from which `/readyz` says
/// `saturated`.
pub const DATABASE_SATURATED_CALLS: usize = 256;

/// `GET /readyz`: 503 (error body) when the metadata store does not answer
/// or the blob store cannot be reached; else the load ([`bdia_wire::Readiness`]),
/// 503 `saturated` when every pass slot is taken or the database queue is
/// at [`DATABASE_SATURATED_CALLS`], 200 `ready` otherwise.
pub async fn readyz(State(state): State<AppState>) -> Result<Response, ApiError> {
    state
        .store
        .ping()
        .await
        .map_err(|e| ApiError::Unavailable(e.to_string()))?;
    if let Err(e) = state.blobs.check().await {
        return Err(ApiError::Unavailable(format!("blob store: {e}")));
    }
    let usage = |s: &crate::admission::Slots| bdia_wire::Usage {
        in_use: s.in_use() as u64,
        limit: s.limit() as u64,
    };
    let calls = state.store.queued_calls();
    let saturated =
        state.passes.in_use() >= state.passes.limit() || calls >= DATABASE_SATURATED_CALLS;
    let body = bdia_wire::Readiness {
        status: if saturated { "saturated" } else { "ready" }.into(),
        passes: usage(&state.passes),
        reports: usage(&state.report_slots),
        database_calls: calls as u64,
    };
    let status = if saturated {
        StatusCode::SERVICE_UNAVAILABLE
    } else {
        StatusCode::OK
    };
    Ok((status, Json(body)).into_response())
}

/// `GET /metrics` on the main listener: Prometheus text format, for a
/// caller presenting `Authorization: Bearer <metrics_token>` (401
/// otherwise); not served (404) when no `metrics_token` is configured. The
/// `metrics_listen` listener serves it without a token
/// ([`crate::metrics_listener`]).
pub async fn metrics(
    State(state): State<AppState>,
    headers: axum::http::HeaderMap,
) -> Result<Response, ApiError> {
    let Some(want) = &state.config.metrics_token else {
        return Err(ApiError::NotFound("Not found".into()));
    };
    let presented = bearer_token(&headers).map_err(|_| {
        ApiError::Unauthorized(
            "GET /metrics requires 'Authorization: Bearer <metrics_token>'".into(),
        )
    })?;
    if !want.matches(presented) {
        return Err(ApiError::Unauthorized("Invalid metrics token".into()));
    }
    Ok(render_metrics(&state.metrics))
}

/// The Prometheus text of `handle` as an answer.
pub(crate) fn render_metrics(handle: &metrics_exporter_prometheus::PrometheusHandle) -> Response {
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        handle.render(),
    )
        .into_response()
}

/// `GET /openapi.json`.
pub async fn openapi() -> Json<serde_json::Value> {
    Json(crate::openapi::document())
}

/// Unknown paths.
pub async fn not_found_fallback() -> ApiError {
    ApiError::NotFound("Not found".into())
}

/// Known path, other method.
pub async fn method_not_allowed() -> ApiError {
    ApiError::MethodNotAllowed
}
