//! Shared state of the service and request authentication.

use std::sync::Arc;

use axum::http::HeaderMap;
use bdia_store::blob::BlobStore;
use bdia_store::{ApiClient, Company, MetadataStore};
use metrics_exporter_prometheus::PrometheusHandle;
use tokio_util::task::TaskTracker;

use crate::admission::Slots;
use crate::auth::TokenIssuer;
use crate::auth_throttle::FailureThrottle;
use crate::config::Config;
use crate::error::ApiError;
use crate::limiter::CompanyLimiter;

/// Everything a handler needs; cheap to clone.
#[derive(Clone)]
pub struct AppState {
    /// The configuration in force.
    pub config: Arc<Config>,
    /// Metadata.
    pub store: Arc<dyn MetadataStore>,
    /// Staged files.
    pub blobs: BlobStore,
    /// Access tokens.
    pub tokens: TokenIssuer,
    /// Failed-authentication throttle of the token endpoints.
    pub auth_failures: Arc<FailureThrottle>,
    /// Upload rate limits.
    pub limiter: Arc<CompanyLimiter>,
    /// The live node count the limits are split by (node heartbeats).
    pub nodes: crate::limiter::NodeShare,
    /// Validate rate limits (the company's upload setting, own buckets).
    pub validate_limiter: Arc<CompanyLimiter>,
    /// Report rate limits.
    pub report_limiter: Arc<CompanyLimiter>,
    /// Upload and validate passes in flight.
    pub passes: Arc<Slots>,
    /// Reports in flight.
    pub report_slots: Arc<Slots>,
    /// Prometheus rendering.
    pub metrics: PrometheusHandle,
    /// In-flight upload jobs (waited for at shutdown).
    pub tasks: TaskTracker,
    /// The processing stage: the lake and the scheduler's wake-up.
    pub processing: crate::processing::Processing,
    /// Reports over the processing stage's lake (one engine per server, so
    /// every report shares its Parquet metadata cache).
    pub reports: bdia_report::ReportEngine,
    /// Retraction, privacy deletion and maintenance of one company's lake
    /// table run one at a time.
    pub lake_locks: Arc<crate::lake_ops::CompanyLocks>,
    /// The single-hit endpoint's journal, suite cache and rate limit.
    pub single_hits: Option<crate::single_hit::SingleHits>,
}

impl std::fmt::Debug for AppState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AppState")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

/// An authenticated caller; as a handler argument, the request is
/// authenticated first ([`crate::extract`]).
#[derive(Debug, Clone)]
pub struct Caller {
    /// The API client.
    pub client: ApiClient,
    /// Its company.
    pub company: Company,
}

fn header<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

/// The token of `Authorization: Bearer <token>`; 401 naming what is wrong.
pub fn bearer_token(headers: &HeaderMap) -> Result<&str, ApiError> {
    let auth = header(headers, "authorization")
        .ok_or_else(|| ApiError::Unauthorized("Missing Authorization header".into()))?;
    auth.strip_prefix("Bearer ")
        .or_else(|| auth.strip_prefix("bearer "))
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .ok_or_else(|| ApiError::Unauthorized("Authorization must be 'Bearer <token>'".into()))
}

impl AppState {
    /// Checks `Authorization: Bearer` and `x-api-key` (spec 2): 401 for a
    /// missing, expired, forged or unknown token, a key that is not the
    /// token's client, or a token revoked by a secret rotation or a disable
    /// (issued under an earlier token generation); 403 for a disabled
    /// client.
    pub async fn authenticate(&self, headers: &HeaderMap) -> Result<Caller, ApiError> {
        let claims = self.tokens.verify(bearer_token(headers)?)?;
        let api_key = header(headers, "x-api-key")
            .ok_or_else(|| ApiError::Unauthorized("Missing x-api-key header".into()))?;
        if api_key != claims.sub {
            return Err(ApiError::Unauthorized(
                "x-api-key does not match the access token's client".into(),
            ));
        }
        let client = self
            .store
            .get_client(&claims.sub)
            .await?
            .ok_or_else(|| ApiError::Unauthorized("Unknown client".into()))?;
        if client.company_id != claims.company {
            return Err(ApiError::Unauthorized("Invalid access token".into()));
        }
        if client.disabled {
            return Err(ApiError::Forbidden("This API client is disabled".into()));
        }
        if claims.generation != client.token_generation {
            return Err(ApiError::Unauthorized(
                "Access token revoked: the client's secret was rotated or the client was \
                 disabled since it was issued"
                    .into(),
            ));
        }
        let company = self
            .store
            .get_company(&client.company_id)
            .await?
            .ok_or_else(|| ApiError::internal(format!("company of client {}", client.client_id)))?;
        Ok(Caller { client, company })
    }
}
