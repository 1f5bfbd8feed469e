//! The body of every error answer: `{"error": "..."}`.

use serde::{Deserialize, Serialize};

/// An error answer's body (any 4xx or 5xx).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorBody {
    /// What went wrong, for a person. 5xx bodies say nothing internal.
    pub error: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shape() {
        let e = ErrorBody {
            error: "File not found".into(),
        };
        let json = serde_json::to_string(&e).unwrap();
        assert_eq!(json, r#"{"error":"File not found"}"#);
        assert_eq!(serde_json::from_str::<ErrorBody>(&json).unwrap(), e);
        assert!(serde_json::from_str::<ErrorBody>("{}").is_err());
    }
}
