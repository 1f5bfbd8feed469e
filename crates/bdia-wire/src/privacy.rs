//! Privacy deletions: `POST /api/v1/privacy/deletions` (the request and
//! its answer, the audit record) and `GET /api/v1/privacy/deletions` (a
//! page of audit records).
//!
//! The audit record never holds the identifier itself: only its SHA-256
//! (`identifier_sha256`, lower-case hex of the identifier's UTF-8 bytes as
//! sent), which proves which request was carried out to anyone who holds
//! the identifier, without the trail keeping the personal data.

use serde::{Deserialize, Serialize};

/// Which identifier a privacy deletion names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum IdentifierType {
    /// A customer ID (`customerID.<type>.id`), with its customerIDType.
    CustomerId,
    /// A `visitorID`.
    VisitorId,
    /// A `marketingCloudVisitorID`.
    MarketingCloudVisitorId,
    /// An `IPAddress`.
    IpAddress,
}

impl IdentifierType {
    /// Every type, in documentation order.
    pub const ALL: [IdentifierType; 4] = [
        IdentifierType::CustomerId,
        IdentifierType::VisitorId,
        IdentifierType::MarketingCloudVisitorId,
        IdentifierType::IpAddress,
    ];

    /// The name on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            IdentifierType::CustomerId => "customer_id",
            IdentifierType::VisitorId => "visitor_id",
            IdentifierType::MarketingCloudVisitorId => "marketing_cloud_visitor_id",
            IdentifierType::IpAddress => "ip_address",
        }
    }

    /// The type of a wire name; `None` for an unknown one.
    pub fn parse(s: &str) -> Option<IdentifierType> {
        Self::ALL.into_iter().find(|t| t.as_str() == s)
    }
}

impl std::fmt::Display for IdentifierType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The body of `POST /api/v1/privacy/deletions`.
///
/// `identifier_type` is text so that the server can answer an unknown one
/// with its own error code ([`IdentifierType::parse`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PrivacyDeletionRequest {
    /// `customer_id`, `visitor_id`, `marketing_cloud_visitor_id` or
    /// `ip_address`.
    pub identifier_type: String,
    /// The customerIDType (case-sensitive, as in the hits): required for
    /// `customer_id`, refused for the other types.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub customer_id_type: Option<String>,
    /// The identifier as it was sent in the hits.
    pub identifier: String,
}

/// One privacy deletion carried out: the answer of
/// `POST /api/v1/privacy/deletions` and an entry of the audit trail.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PrivacyDeletion {
    /// Increasing in the order deletions were recorded.
    pub id: u64,
    /// Who asked: the API client id, or `admin` for `bdia admin`.
    pub requested_by: String,
    /// Unix seconds.
    pub requested_at: i64,
    /// The kind of identifier.
    pub identifier_type: IdentifierType,
    /// The customerIDType of a `customer_id`; null otherwise.
    pub customer_id_type: Option<String>,
    /// SHA-256 of the identifier as sent, lower-case hex.
    pub identifier_sha256: String,
    /// Hits removed from the lake.
    pub hits_removed: u64,
    /// Visitors whose hits and visitor state were removed (every visitor
    /// the identifier named or appeared with).
    pub visitors: u64,
    /// The lake table version of the deletion's commit; null when no hit
    /// matched (nothing was committed).
    pub table_version: Option<u64>,
}

/// A page of `GET /api/v1/privacy/deletions`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PrivacyDeletionList {
    /// Newest first.
    pub deletions: Vec<PrivacyDeletion>,
    /// Pass as `cursor` for the next page; null on the last.
    pub next_cursor: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identifier_types_round_trip_by_name() {
        for t in IdentifierType::ALL {
            assert_eq!(IdentifierType::parse(t.as_str()), Some(t));
            let json = serde_json::to_string(&t).unwrap();
            assert_eq!(json, format!("\"{}\"", t.as_str()));
            assert_eq!(serde_json::from_str::<IdentifierType>(&json).unwrap(), t);
        }
        assert_eq!(IdentifierType::parse("visitorID"), None);
    }

    #[test]
    fn request_and_answer_round_trip() {
        let req: PrivacyDeletionRequest = serde_json::from_str(
            r#"{"identifier_type":"customer_id","customer_id_type":"crm","identifier":"u-1"}"#,
        )
        .unwrap();
        assert_eq!(req.customer_id_type.as_deref(), Some("crm"));
        let vid: PrivacyDeletionRequest =
            serde_json::from_str(r#"{"identifier_type":"visitor_id","identifier":"42"}"#).unwrap();
        assert_eq!(vid.customer_id_type, None);
        assert_eq!(
            serde_json::to_string(&vid).unwrap(),
            r#"{"identifier_type":"visitor_id","identifier":"42"}"#
        );
        let d = PrivacyDeletion {
            id: 3,
            requested_by: "client".into(),
            requested_at: 1_795_990_000,
            identifier_type: IdentifierType::IpAddress,
            customer_id_type: None,
            identifier_sha256: "0".repeat(64),
            hits_removed: 0,
            visitors: 0,
            table_version: None,
        };
        let page = PrivacyDeletionList {
            deletions: vec![d],
            next_cursor: None,
        };
        let json = serde_json::to_string(&page).unwrap();
        assert!(json.contains(r#""customer_id_type":null"#), "{json}");
        assert!(json.contains(r#""table_version":null"#), "{json}");
        assert_eq!(
            serde_json::from_str::<PrivacyDeletionList>(&json).unwrap(),
            page
        );
    }
}
