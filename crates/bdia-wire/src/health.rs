//! `GET /readyz`.

use serde::{Deserialize, Serialize};

/// How much of a bounded kind of work is in flight.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Usage {
    /// In flight now.
    pub in_use: u64,
    /// The server-wide limit.
    pub limit: u64,
}

/// The answer of `GET /readyz` when the database answers: 200 with
/// `status: "ready"`, or 503 with `status: "saturated"` when every upload
/// or validate pass slot is taken or the database queue is long, so that a
/// load balancer sends new work elsewhere.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Readiness {
    /// `ready` or `saturated`.
    pub status: String,
    /// Upload and validate passes.
    pub passes: Usage,
    /// Reports.
    pub reports: Usage,
    /// Database calls waiting or running.
    pub database_calls: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip() {
        let r = Readiness {
            status: "saturated".into(),
            passes: Usage {
                in_use: 32,
                limit: 32,
            },
            reports: Usage {
                in_use: 0,
                limit: 4,
            },
            database_calls: 3,
        };
        let json = serde_json::to_string(&r).unwrap();
        assert_eq!(
            json,
            r#"{"status":"saturated","passes":{"in_use":32,"limit":32},"reports":{"in_use":0,"limit":4},"database_calls":3}"#
        );
        assert_eq!(serde_json::from_str::<Readiness>(&json).unwrap(), r);
    }
}
