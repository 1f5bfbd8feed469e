//! The body of every error answer: `{"error": "..."}`, plus a stable
//! `code` where an answer has several causes a client may act on
//! differently (`{"error": "...", "code": "file_not_complete"}`).

use serde::{Deserialize, Serialize};

/// An error answer's body (any 4xx or 5xx).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorBody {
    /// What went wrong, for a person. 5xx bodies say nothing internal.
    pub error: String,
    /// Stable snake_case code of the cause, for answers that carry one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub code: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shape() {
        let e = ErrorBody {
            error: "File not found".into(),
            code: None,
        };
        let json = serde_json::to_string(&e).unwrap();
        assert_eq!(json, r#"{"error":"File not found"}"#);
        assert_eq!(serde_json::from_str::<ErrorBody>(&json).unwrap(), e);
        assert!(serde_json::from_str::<ErrorBody>("{}").is_err());
        let coded = ErrorBody {
            error: "File is PROCESSING".into(),
            code: Some("file_not_complete".into()),
        };
        let json = serde_json::to_string(&coded).unwrap();
        assert_eq!(
            json,
            r#"{"error":"File is PROCESSING","code":"file_not_complete"}"#
        );
        assert_eq!(serde_json::from_str::<ErrorBody>(&json).unwrap(), coded);
    }
}
