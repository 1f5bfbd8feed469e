//! The token endpoints' answer (`POST /ims/token/v3`, `POST /ims/exchange/jwt`).

use serde::{Deserialize, Serialize};

/// An access token.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccessToken {
    /// The JWT.
    pub access_token: String,
    /// Always `bearer`.
    pub token_type: String,
    /// Lifetime in seconds.
    pub expires_in: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip() {
        let t = AccessToken {
            access_token: "eyJ.x.y".into(),
            token_type: "bearer".into(),
            expires_in: 86_400,
        };
        let json = serde_json::to_string(&t).unwrap();
        assert_eq!(
            json,
            r#"{"access_token":"eyJ.x.y","token_type":"bearer","expires_in":86400}"#
        );
        assert_eq!(serde_json::from_str::<AccessToken>(&json).unwrap(), t);
    }
}
