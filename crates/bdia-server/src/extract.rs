//! Request extractors shared by the handlers: the authenticated caller and
//! path parameters.
//!
//! Both fail with an [`ApiError`], so every refusal is the same JSON answer
//! whichever handler it comes from:
//! - [`Caller`]: `Authorization: Bearer` + `x-api-key` checked by
//!   [`AppState::authenticate`] (401 / 403). It reads only the request
//!   head, so a handler that takes it before the body reads nothing of the
//!   body for a caller that is refused.
//! - [`ApiPath`]: a path parameter; a value that cannot be read is a 400
//!   whose text names the parameter ([`PathParam::MALFORMED`]).
//!
//! Extractors run in argument order: handlers take the caller first, so an
//! unauthenticated request is a 401 whatever its path parameters.

use axum::extract::{FromRequestParts, Path};
use axum::http::request::Parts;
use serde::de::DeserializeOwned;
use serde::Deserialize;

use crate::error::ApiError;
use crate::state::{AppState, Caller};

impl FromRequestParts<AppState> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        state.authenticate(&parts.headers).await
    }
}

/// A path parameter type: what it is read as and how a malformed one is
/// answered.
pub trait PathParam: DeserializeOwned + Send {
    /// The text of the 400 answer when the parameter cannot be read.
    const MALFORMED: &'static str;
}

/// A path parameter; a malformed one is a 400 with [`PathParam::MALFORMED`].
#[derive(Debug, Clone)]
pub struct ApiPath<T>(pub T);

impl<T: PathParam, S: Send + Sync> FromRequestParts<S> for ApiPath<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        let Path(value) = Path::<T>::from_request_parts(parts, state)
            .await
            .map_err(|_| ApiError::BadRequest(T::MALFORMED.into()))?;
        Ok(ApiPath(value))
    }
}

/// `{file_id}`: a file id.
#[derive(Debug, Clone, Deserialize)]
#[serde(transparent)]
pub struct FileIdParam(pub String);

impl PathParam for FileIdParam {
    const MALFORMED: &'static str = "Malformed file id";
}

/// `{idempotency_key}`: a client's idempotency key.
#[derive(Debug, Clone, Deserialize)]
#[serde(transparent)]
pub struct KeyParam(pub String);

impl PathParam for KeyParam {
    const MALFORMED: &'static str = "Malformed key";
}

/// `{rsid}`: a report suite id, held to the report-suite ID rule
/// ([`bdia_format::ReportSuiteId`]): anything else is malformed.
#[derive(Debug, Clone, Deserialize)]
#[serde(transparent)]
pub struct SuiteParam(pub bdia_format::ReportSuiteId);

impl PathParam for SuiteParam {
    const MALFORMED: &'static str = "Malformed report suite id";
}

/// `{vgid}`: a visitor group id.
#[derive(Debug, Clone, Deserialize)]
#[serde(transparent)]
pub struct GroupParam(pub String);

impl PathParam for GroupParam {
    const MALFORMED: &'static str = "Malformed visitor group id";
}
