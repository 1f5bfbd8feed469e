//! Removing hits from the lake on request: retraction of a file's hits and
//! privacy deletion of a visitor's, over HTTP and from `bdia admin`.
//!
//! - `DELETE /aa/collect/v1/events/{file_id}/hits` ([`retract_hits`]): every
//!   hit of one `COMPLETE` file of the caller's company leaves the lake in
//!   one Delta commit ([`bdia_lake::Lake::retract_file`]), then the file's
//!   record says when and how many ([`MetadataStore::mark_hits_retracted`]).
//!   A file already retracted is answered as it is, without a lake call.
//! - `POST /api/v1/privacy/deletions` ([`create_privacy_deletion`]): every
//!   hit of every visitor the identifier names or appears with leaves the
//!   caller's company's table in one commit
//!   ([`bdia_lake::Lake::delete_visitors`]), then those visitors' states
//!   ([`MetadataStore::delete_visitor_states`]), then the request is
//!   recorded in the audit trail, which keeps the identifier only as its
//!   SHA-256. `GET /api/v1/privacy/deletions` lists the trail.
//!
//! Order and recovery: the lake first, the metadata second, as for
//! processing. A failure between the two leaves the hits gone and the
//! record (or the states and the audit row) not yet written; the same
//! request sent again finds nothing more to remove in the lake and writes
//! the rest.
//!
//! Concurrency: within one server, these operations and the background
//! maintenance ([`crate::lake_maintenance`]) of one company run one at a
//! time ([`CompanyLocks`]), so that they do not race each other's Delta
//! commits. Processing appends are not held back: a Delta append does not
//! conflict with them. `bdia admin` run next to a server relies on the
//! Delta log's optimistic concurrency instead (a conflicting commit fails
//! and can be run again).
//!
//! What is not rewound: visitor state. A file processed after a retracted
//! one computed its visits from state that included the retracted hits;
//! those visits stay as computed (docs/OPERATIONS.md).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use axum::extract::rejection::{JsonRejection, QueryRejection};
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
/// The lake and the identifiers these operations take.
pub use bdia_lake::{Identifier, Lake};
use bdia_lake::{LakeError, VisitorDeletion};
use bdia_store::{
    Company, FileRecord, FileStatus, MetadataStore, NewPrivacyDeletion, PrivacyDeletion, StoreError,
};
use bdia_wire::{IdentifierType, PrivacyDeletionList, PrivacyDeletionRequest};
use sha2::{Digest, Sha256};

use crate::error::ApiError;
use crate::extract::{ApiPath, FileIdParam};
use crate::state::{AppState, Caller};

/// Largest body of `POST /api/v1/privacy/deletions`: an identifier and its
/// type. Larger bodies are refused with 413.
pub const PRIVACY_BODY_LIMIT: usize = 64 * 1024;

/// `requested_by` of deletions made with `bdia admin`.
pub const ADMIN: &str = "admin";

/// One async lock per company: retraction, privacy deletion and
/// maintenance of a company's table run one at a time. Entries are made
/// for companies that exist (authenticated callers, tables in the lake),
/// so the map is bounded by the number of companies.
#[derive(Debug, Default)]
pub struct CompanyLocks {
    locks: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
}

impl CompanyLocks {
    /// Waits for the company's turn; the turn lasts as long as the guard.
    pub async fn lock(&self, company: &str) -> tokio::sync::OwnedMutexGuard<()> {
        let lock = {
            let mut locks = self.locks.lock().unwrap_or_else(|p| p.into_inner());
            locks.entry(company.to_string()).or_default().clone()
        };
        lock.lock_owned().await
    }
}

/// Why a retraction or a privacy deletion did not happen.
#[derive(Debug, thiserror::Error)]
pub enum OpError {
    /// No such file in the company.
    #[error("file not found")]
    FileNotFound,
    /// The file is not `COMPLETE`: its hits are not (all) in the lake.
    #[error("file is {0}: only a COMPLETE file's hits can be retracted")]
    NotComplete(FileStatus),
    /// The request names no valid identifier.
    #[error("{message}")]
    InvalidIdentifier {
        /// Stable code.
        code: &'static str,
        /// For a person.
        message: String,
    },
    /// The lake failed.
    #[error("lake: {0}")]
    Lake(#[from] LakeError),
    /// The metadata store failed.
    #[error("store: {0}")]
    Store(#[from] StoreError),
}

impl From<OpError> for ApiError {
    fn from(e: OpError) -> Self {
        match e {
            OpError::FileNotFound => ApiError::NotFound("File not found".into()),
            OpError::NotComplete(status) => ApiError::Conflict {
                code: "file_not_complete",
                message: format!("File is {status}: only a COMPLETE file's hits can be retracted"),
            },
            OpError::InvalidIdentifier { code, message } => ApiError::Invalid { code, message },
            OpError::Store(e) => e.into(),
            OpError::Lake(e) if bdia_store::is_storage_full(&e) => {
                tracing::warn!(error = %e, "storage full");
                ApiError::InsufficientStorage
            }
            OpError::Lake(e) => ApiError::Internal(format!("lake ({}): {e}", e.code())),
        }
    }
}

/// The lake on `storage`, for maintenance from outside the server
/// (`bdia admin`): no spool is touched, so it is safe next to a running
/// server.
pub fn open_lake(storage: &crate::storage::Storage) -> Result<Lake, LakeError> {
    storage.lake(bdia_lake::LakeConfig::default())
}

/// Unix seconds now.
fn now() -> i64 {
    crate::auth::now()
}

/// Removes every hit of `file_id` (a `COMPLETE` file of `company`) from
/// the lake and records it on the file; a file already retracted is
/// returned unchanged.
pub async fn retract(
    store: &dyn MetadataStore,
    lake: &Lake,
    company: &str,
    file_id: &str,
) -> Result<FileRecord, OpError> {
    let rec = store
        .get_file(company, file_id)
        .await?
        .ok_or(OpError::FileNotFound)?;
    if rec.hits_retracted_at.is_some() {
        return Ok(rec);
    }
    if rec.status != FileStatus::Complete {
        return Err(OpError::NotComplete(rec.status));
    }
    let r = lake.retract_file(company, file_id).await?;
    let rec = match store
        .mark_hits_retracted(company, file_id, r.hits_removed, now())
        .await
    {
        Ok(rec) => rec,
        Err(StoreError::NotFound(_)) => return Err(OpError::FileNotFound),
        Err(e) => return Err(e.into()),
    };
    metrics::counter!(crate::metrics::LAKE_HITS_REMOVED.name, "cause" => "retraction")
        .increment(r.hits_removed);
    tracing::info!(
        company,
        file_id,
        hits_removed = r.hits_removed,
        table_version = r.table_version,
        "file's hits retracted"
    );
    Ok(rec)
}

/// A privacy deletion request, checked: the lake's identifier and how the
/// audit names it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PrivacyRequest {
    /// What the lake deletes.
    pub identifier: Identifier,
    /// Its type, as recorded.
    pub identifier_type: IdentifierType,
    /// The customerIDType of a customer ID.
    pub customer_id_type: Option<String>,
    /// SHA-256 of the identifier as sent, lower-case hex.
    pub identifier_sha256: String,
}

impl PrivacyRequest {
    /// Checks a request: a known type, a non-empty identifier, a
    /// customerIDType with (and only with) a customer ID.
    pub fn parse(req: &PrivacyDeletionRequest) -> Result<PrivacyRequest, OpError> {
        let invalid = |code, message: String| OpError::InvalidIdentifier { code, message };
        let Some(identifier_type) = IdentifierType::parse(&req.identifier_type) else {
            let known: Vec<&str> = IdentifierType::ALL.iter().map(|t| t.as_str()).collect();
            return Err(invalid(
                "unknown_identifier_type",
                format!(
                    "Unknown identifier_type '{}': expected one of {}",
                    req.identifier_type,
                    known.join(", ")
                ),
            ));
        };
        if req.identifier.is_empty() {
            return Err(invalid(
                "missing_identifier",
                "identifier is empty: give the identifier as it was sent in the hits".into(),
            ));
        }
        let id = req.identifier.clone();
        let customer_id_type = match (identifier_type, &req.customer_id_type) {
            (IdentifierType::CustomerId, Some(t)) if !t.is_empty() => Some(t.clone()),
            (IdentifierType::CustomerId, _) => {
                return Err(invalid(
                    "missing_customer_id_type",
                    "customer_id_type is required with identifier_type customer_id \
                     (the customerIDType of the hits, case-sensitive)"
                        .into(),
                ))
            }
            (_, Some(_)) => {
                return Err(invalid(
                    "unexpected_customer_id_type",
                    format!(
                        "customer_id_type goes only with identifier_type customer_id, \
                         not {identifier_type}"
                    ),
                ))
            }
            (_, None) => None,
        };
        let identifier = match identifier_type {
            IdentifierType::CustomerId => Identifier::CustomerId {
                id_type: customer_id_type.clone().unwrap_or_default(),
                id,
            },
            IdentifierType::VisitorId => Identifier::VisitorId(id),
            IdentifierType::MarketingCloudVisitorId => Identifier::MarketingCloudVisitorId(id),
            IdentifierType::IpAddress => Identifier::IpAddress(id),
        };
        Ok(PrivacyRequest {
            identifier,
            identifier_type,
            customer_id_type,
            identifier_sha256: hex::encode(Sha256::digest(req.identifier.as_bytes())),
        })
    }
}

/// Removes every hit and the state of every visitor `req` names in
/// `company`, and records the request as made by `requested_by`.
pub async fn privacy_delete(
    store: &dyn MetadataStore,
    lake: &Lake,
    company: &Company,
    req: &PrivacyRequest,
    requested_by: &str,
) -> Result<PrivacyDeletion, OpError> {
    let VisitorDeletion {
        hits_removed,
        visitors,
        table_version,
    } = lake
        .delete_visitors(&company.id, &req.identifier, &company.salt_bytes())
        .await?;
    let keys: Vec<(String, String)> = visitors
        .iter()
        .map(|v| (v.report_suite.clone(), v.state_key.clone()))
        .collect();
    let states = store.delete_visitor_states(&company.id, keys).await?;
    let recorded = store
        .record_privacy_deletion(NewPrivacyDeletion {
            company_id: company.id.clone(),
            requested_by: requested_by.to_string(),
            requested_at: now(),
            identifier_type: req.identifier_type.as_str().to_string(),
            customer_id_type: req.customer_id_type.clone(),
            identifier_sha256: req.identifier_sha256.clone(),
            hits_removed,
            visitors: visitors.len() as u64,
            table_version,
        })
        .await?;
    metrics::counter!(crate::metrics::LAKE_HITS_REMOVED.name, "cause" => "privacy_deletion")
        .increment(hits_removed);
    tracing::info!(
        company = %company.id,
        deletion_id = recorded.id,
        identifier_type = %req.identifier_type,
        requested_by,
        hits_removed,
        visitors = visitors.len(),
        states_removed = states,
        table_version,
        "privacy deletion done"
    );
    Ok(recorded)
}

/// An audit record as the API sends it.
pub fn wire_deletion(d: &PrivacyDeletion) -> bdia_wire::PrivacyDeletion {
    let n = &d.deletion;
    bdia_wire::PrivacyDeletion {
        id: d.id,
        requested_by: n.requested_by.clone(),
        requested_at: n.requested_at,
        // Only this module records deletions, always with a known type.
        identifier_type: IdentifierType::parse(&n.identifier_type)
            .unwrap_or(IdentifierType::CustomerId),
        customer_id_type: n.customer_id_type.clone(),
        identifier_sha256: n.identifier_sha256.clone(),
        hits_removed: n.hits_removed,
        visitors: n.visitors,
        table_version: n.table_version,
    }
}

/// `DELETE /aa/collect/v1/events/{file_id}/hits`.
#[tracing::instrument(skip_all, fields(file_id))]
pub async fn retract_hits(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(FileIdParam(file_id)): ApiPath<FileIdParam>,
) -> Result<Response, ApiError> {
    tracing::Span::current().record("file_id", file_id.as_str());
    let _turn = state.lake_locks.lock(&caller.company.id).await;
    let rec = retract(
        &*state.store,
        state.processing.lake(),
        &caller.company.id,
        &file_id,
    )
    .await?;
    Ok(Json(bdia_wire::FileRecord::from(&rec)).into_response())
}

/// The answer to a privacy deletion body that cannot be read: 413 past
/// [`PRIVACY_BODY_LIMIT`], 400 `malformed_body` otherwise.
fn body_error(e: JsonRejection) -> ApiError {
    if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
        return ApiError::PayloadTooLarge(format!(
            "Request body too large: at most {PRIVACY_BODY_LIMIT} bytes"
        ));
    }
    ApiError::Invalid {
        code: "malformed_body",
        message: format!(
            "Expected a JSON body (Content-Type: application/json) with identifier_type, \
             identifier and, for a customer ID, customer_id_type: {}",
            e.body_text()
        ),
    }
}

/// `POST /api/v1/privacy/deletions`.
#[tracing::instrument(skip_all)]
pub async fn create_privacy_deletion(
    State(state): State<AppState>,
    caller: Caller,
    body: Result<Json<PrivacyDeletionRequest>, JsonRejection>,
) -> Result<Response, ApiError> {
    let Json(body) = body.map_err(body_error)?;
    let req = PrivacyRequest::parse(&body)?;
    let _turn = state.lake_locks.lock(&caller.company.id).await;
    let d = privacy_delete(
        &*state.store,
        state.processing.lake(),
        &caller.company,
        &req,
        &caller.client.client_id,
    )
    .await?;
    Ok(Json(wire_deletion(&d)).into_response())
}

/// `GET /api/v1/privacy/deletions?limit=&cursor=`.
#[tracing::instrument(skip_all)]
pub async fn list_privacy_deletions(
    State(state): State<AppState>,
    caller: Caller,
    q: Result<Query<HashMap<String, String>>, QueryRejection>,
) -> Result<Response, ApiError> {
    let Query(q) = q.map_err(|_| ApiError::BadRequest("Malformed query string".into()))?;
    let query = crate::handlers::page_query(&q)?;
    let page = state
        .store
        .list_privacy_deletions(&caller.company.id, &query)
        .await
        .map_err(crate::handlers::cursor_error)?;
    Ok(Json(PrivacyDeletionList {
        deletions: page.deletions.iter().map(wire_deletion).collect(),
        next_cursor: page.next_cursor,
    })
    .into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(t: &str, cid_type: Option<&str>, id: &str) -> PrivacyDeletionRequest {
        PrivacyDeletionRequest {
            identifier_type: t.into(),
            customer_id_type: cid_type.map(str::to_string),
            identifier: id.into(),
        }
    }

    fn code(r: Result<PrivacyRequest, OpError>) -> &'static str {
        match r {
            Err(OpError::InvalidIdentifier { code, .. }) => code,
            other => panic!("expected a refusal, got {other:?}"),
        }
    }

    #[test]
    fn requests_are_checked_with_precise_codes() {
        let ok = PrivacyRequest::parse(&req("customer_id", Some("crm"), "u-1")).unwrap();
        assert_eq!(
            ok.identifier,
            Identifier::CustomerId {
                id_type: "crm".into(),
                id: "u-1".into()
            }
        );
        assert_eq!(ok.customer_id_type.as_deref(), Some("crm"));
        // The audit's digest is SHA-256 of the identifier as sent.
        assert_eq!(
            PrivacyRequest::parse(&req("visitor_id", None, "abc"))
                .unwrap()
                .identifier_sha256,
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        for (t, expected) in [
            ("visitor_id", Identifier::VisitorId("x".into())),
            (
                "marketing_cloud_visitor_id",
                Identifier::MarketingCloudVisitorId("x".into()),
            ),
            ("ip_address", Identifier::IpAddress("x".into())),
        ] {
            let r = PrivacyRequest::parse(&req(t, None, "x")).unwrap();
            assert_eq!(r.identifier, expected);
            assert_eq!(r.identifier_type.as_str(), t);
            assert_eq!(r.customer_id_type, None);
        }
        assert_eq!(
            code(PrivacyRequest::parse(&req("visitorID", None, "x"))),
            "unknown_identifier_type"
        );
        assert_eq!(
            code(PrivacyRequest::parse(&req("visitor_id", None, ""))),
            "missing_identifier"
        );
        assert_eq!(
            code(PrivacyRequest::parse(&req("customer_id", None, "x"))),
            "missing_customer_id_type"
        );
        assert_eq!(
            code(PrivacyRequest::parse(&req("customer_id", Some(""), "x"))),
            "missing_customer_id_type"
        );
        assert_eq!(
            code(PrivacyRequest::parse(&req("ip_address", Some("crm"), "x"))),
            "unexpected_customer_id_type"
        );
    }

    #[test]
    fn refusals_map_to_their_status_and_code() {
        let e: ApiError = OpError::NotComplete(FileStatus::Processing).into();
        assert_eq!(e.status(), StatusCode::CONFLICT);
        assert_eq!(e.code(), "file_not_complete");
        assert!(e.to_string().contains("PROCESSING"), "{e}");
        let e: ApiError = OpError::FileNotFound.into();
        assert_eq!(e.status(), StatusCode::NOT_FOUND);
    }

    #[tokio::test]
    async fn one_company_runs_one_operation_at_a_time() {
        let locks = Arc::new(CompanyLocks::default());
        let held = locks.lock("acme").await;
        let other = locks.lock("beta").await;
        let waiting = {
            let locks = locks.clone();
            tokio::spawn(async move {
                let _g = locks.lock("acme").await;
            })
        };
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        assert!(!waiting.is_finished(), "the second acme operation waits");
        drop(other);
        drop(held);
        waiting.await.unwrap();
    }
}
