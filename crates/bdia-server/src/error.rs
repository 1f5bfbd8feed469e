//! The one error type of the HTTP layer and its one mapping to responses.
//!
//! Every body is JSON (`{"error": "..."}`, [`ErrorBody`]; answers with
//! several causes a client may act on add a stable `"code"`). 5xx bodies
//! say nothing about the cause; the detail is logged once, here.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use bdia_store::StoreError;
use bdia_wire::ErrorBody;

/// `Retry-After` of a 507: when space may be back.
pub const STORAGE_FULL_RETRY_SECS: u64 = 30;

/// What a request can fail with.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// 400: a missing header, a missing or duplicate `file` part, a malformed request.
    #[error("{0}")]
    BadRequest(String),
    /// 400 for one of several causes a client may act on differently:
    /// `code` (stable snake_case) is in the body next to the message.
    #[error("{message}")]
    Invalid {
        /// The cause, in the body and as the metric label.
        code: &'static str,
        /// What is wrong, for a person.
        message: String,
    },
    /// 409: the request does not fit the state of what it names (a file
    /// not `COMPLETE`); `code` is in the body.
    #[error("{message}")]
    Conflict {
        /// The cause, in the body and as the metric label.
        code: &'static str,
        /// What is wrong, for a person.
        message: String,
    },
    /// 401: missing, expired, forged or unknown token; api key not matching.
    #[error("{0}")]
    Unauthorized(String),
    /// 403: authenticated but not allowed.
    #[error("{0}")]
    Forbidden(String),
    /// 404: unknown path, key or file.
    #[error("{0}")]
    NotFound(String),
    /// 405: known path, other method.
    #[error("Method not allowed")]
    MethodNotAllowed,
    /// 408: a body not received within the upload deadline or minimum rate.
    #[error("{0}")]
    RequestTimeout(String),
    /// 413: over the size limits.
    #[error("{0}")]
    PayloadTooLarge(String),
    /// 429: over the rate limit.
    #[error("Too many requests: retry after {retry_after_secs} s")]
    RateLimited {
        /// Seconds to wait (the `Retry-After` header).
        retry_after_secs: u64,
    },
    /// 429 (one company at its limit) or 503 (the server at its limit):
    /// too much of one kind of work in flight ([`crate::admission`]).
    #[error("{message}")]
    Busy {
        /// What is at its limit and when to retry.
        message: String,
        /// Seconds to wait (the `Retry-After` header).
        retry_after_secs: u64,
        /// The server's limit (503) rather than the company's (429).
        server_wide: bool,
    },
    /// 507: the server's disk (or quota) is full; nothing of the request
    /// was kept. Answered with `Retry-After`
    /// ([`STORAGE_FULL_RETRY_SECS`]).
    #[error("Not enough storage space on the server to keep this upload; nothing was stored. Retry later.")]
    InsufficientStorage,
    /// 503: not ready (readiness probe).
    #[error("{0}")]
    Unavailable(String),
    /// 500: anything internal. The text is logged, never sent.
    #[error("internal error: {0}")]
    Internal(String),
}

impl ApiError {
    /// The status code.
    pub fn status(&self) -> StatusCode {
        match self {
            ApiError::BadRequest(_) | ApiError::Invalid { .. } => StatusCode::BAD_REQUEST,
            ApiError::Conflict { .. } => StatusCode::CONFLICT,
            ApiError::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            ApiError::Forbidden(_) => StatusCode::FORBIDDEN,
            ApiError::NotFound(_) => StatusCode::NOT_FOUND,
            ApiError::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            ApiError::RequestTimeout(_) => StatusCode::REQUEST_TIMEOUT,
            ApiError::PayloadTooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::RateLimited { .. } => StatusCode::TOO_MANY_REQUESTS,
            ApiError::Busy {
                server_wide: false, ..
            } => StatusCode::TOO_MANY_REQUESTS,
            ApiError::Busy {
                server_wide: true, ..
            } => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::InsufficientStorage => StatusCode::INSUFFICIENT_STORAGE,
            ApiError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// Stable snake_case code (a metric label).
    pub fn code(&self) -> &'static str {
        match self {
            ApiError::BadRequest(_) => "bad_request",
            ApiError::Invalid { code, .. } | ApiError::Conflict { code, .. } => code,
            ApiError::Unauthorized(_) => "unauthorized",
            ApiError::Forbidden(_) => "forbidden",
            ApiError::NotFound(_) => "not_found",
            ApiError::MethodNotAllowed => "method_not_allowed",
            ApiError::RequestTimeout(_) => "request_timeout",
            ApiError::PayloadTooLarge(_) => "payload_too_large",
            ApiError::RateLimited { .. } => "rate_limited",
            ApiError::Busy { .. } => "busy",
            ApiError::InsufficientStorage => "storage_full",
            ApiError::Unavailable(_) => "unavailable",
            ApiError::Internal(_) => "internal",
        }
    }

    /// An internal error from anything displayable.
    pub fn internal(e: impl std::fmt::Display) -> ApiError {
        ApiError::Internal(e.to_string())
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::NotFound(_) => ApiError::NotFound("Not found".into()),
            StoreError::Invalid(m) => ApiError::BadRequest(m),
            other if other.is_storage_full() => {
                tracing::warn!(error = %other, "storage full");
                ApiError::InsufficientStorage
            }
            other => ApiError::Internal(other.to_string()),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self.status();
        let message = match &self {
            ApiError::Internal(detail) => {
                tracing::error!(error = %detail, "internal error");
                "Internal server error".to_string()
            }
            ApiError::Unavailable(detail) => {
                tracing::warn!(error = %detail, "not ready");
                "Service unavailable".to_string()
            }
            other => other.to_string(),
        };
        metrics::counter!(crate::metrics::HTTP_ERRORS.name, "code" => self.code()).increment(1);
        let code = match &self {
            ApiError::Invalid { code, .. } | ApiError::Conflict { code, .. } => {
                Some(code.to_string())
            }
            _ => None,
        };
        let body = ErrorBody {
            error: message,
            code,
        };
        let mut resp = (status, Json(body)).into_response();
        let retry_after = match self {
            ApiError::RateLimited { retry_after_secs }
            | ApiError::Busy {
                retry_after_secs, ..
            } => Some(retry_after_secs),
            ApiError::InsufficientStorage => Some(STORAGE_FULL_RETRY_SECS),
            _ => None,
        };
        if let Some(secs) = retry_after {
            resp.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(secs.max(1)));
        }
        resp
    }
}
