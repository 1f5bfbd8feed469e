//! Credentials and tokens.
//!
//! - Client secrets are stored as `sha256$<salt hex>$<digest hex>` of
//!   salt||secret. Secrets are 32 random bytes, so a salted SHA-256 is
//!   enough (no password stretching needed); comparison is constant-time.
//! - Access tokens are JWTs signed HS256 with the server key
//!   (`DATA_DIR/server.key`), claims `iss="bdia"`, `sub=<client id>`,
//!   `company`, `iat`, `exp` and `gen`, the client's token generation when
//!   it was issued. Only HS256 is accepted: `alg: none` and any other
//!   algorithm fail, as do a bad signature and an expired token. A token is
//!   accepted only while `gen` is the client's current generation, which
//!   rotating the secret or disabling the client moves up
//!   ([`bdia_store::ApiClient::token_generation`]): that revokes every token
//!   issued before. Tokens of releases without `gen` read as generation 0.
//! - The service-account exchange verifies an RS256 JWT signed by the
//!   client's key, against the public key or certificate (PEM) registered
//!   for it: `iss` = the company, `sub` = the client's technical account,
//!   `aud` naming the client (`<client id>` or a URL ending in
//!   `/c/<client id>`, the original's shape); `exp` and `iat` required,
//!   `iat` and `nbf` (when present) not in the future and `exp` not in the
//!   past beyond the leeway, `exp - iat` at most the configured maximum
//!   lifetime. Each assertion is exchanged once ([`Assertion::replay_key`]:
//!   its `jti` when it has one, else its SHA-256), remembered by the store
//!   until it would have expired anyway.

use jsonwebtoken::{decode, encode, Algorithm, DecodingKey, EncodingKey, Header, Validation};
use rand::RngCore;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use bdia_store::ApiClient;

use crate::error::ApiError;

/// The `iss` of access tokens made here.
pub const TOKEN_ISSUER: &str = "bdia";

/// `n` random bytes, hex.
pub fn random_hex(n: usize) -> String {
    let mut buf = vec![0u8; n];
    rand::rngs::OsRng.fill_bytes(&mut buf);
    hex::encode(buf)
}

fn digest(salt: &[u8], secret: &str) -> Vec<u8> {
    let mut h = Sha256::new();
    h.update(salt);
    h.update(secret.as_bytes());
    h.finalize().to_vec()
}

/// Hashes a client secret for storage.
pub fn hash_secret(secret: &str) -> String {
    let mut salt = [0u8; 16];
    rand::rngs::OsRng.fill_bytes(&mut salt);
    format!(
        "sha256${}${}",
        hex::encode(salt),
        hex::encode(digest(&salt, secret))
    )
}

/// Checks a secret against its stored hash, in constant time.
pub fn verify_secret(secret: &str, stored: &str) -> bool {
    let mut parts = stored.split('$');
    let (Some("sha256"), Some(salt), Some(want), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return false;
    };
    let (Ok(salt), Ok(want)) = (hex::decode(salt), hex::decode(want)) else {
        return false;
    };
    let got = digest(&salt, secret);
    got.len() == want.len() && got.iter().zip(&want).fold(0u8, |acc, (a, b)| acc | (a ^ b)) == 0
}

/// Claims of an access token.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claims {
    /// Always [`TOKEN_ISSUER`].
    pub iss: String,
    /// The client id.
    pub sub: String,
    /// The client's company.
    pub company: String,
    /// Issued at, unix seconds.
    pub iat: i64,
    /// Expiry, unix seconds.
    pub exp: i64,
    /// The client's token generation at issue (absent, 0, in tokens of
    /// older releases).
    #[serde(rename = "gen", default)]
    pub generation: u64,
}

/// The token endpoints' answer.
pub use bdia_wire::AccessToken;

/// Unix seconds now.
pub fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

/// Issues and checks access tokens with the server key.
#[derive(Clone)]
pub struct TokenIssuer {
    encoding: EncodingKey,
    decoding: DecodingKey,
    ttl_secs: u64,
}

impl std::fmt::Debug for TokenIssuer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenIssuer")
            .field("ttl_secs", &self.ttl_secs)
            .finish_non_exhaustive()
    }
}

impl TokenIssuer {
    /// From the server key bytes (not empty).
    pub fn new(key: &[u8], ttl_secs: u64) -> Result<TokenIssuer, jsonwebtoken::errors::Error> {
        Ok(TokenIssuer {
            encoding: EncodingKey::from_secret(key)?,
            decoding: DecodingKey::from_secret(key)?,
            ttl_secs,
        })
    }

    /// A token for `client`.
    pub fn issue(&self, client: &ApiClient) -> Result<AccessToken, ApiError> {
        self.issue_at(client, now(), self.ttl_secs)
    }

    /// A token with explicit times (tests make expired ones with it).
    pub fn issue_at(
        &self,
        client: &ApiClient,
        iat: i64,
        ttl_secs: u64,
    ) -> Result<AccessToken, ApiError> {
        // Checked: a lifetime near i64::MAX must not wrap `exp` negative.
        let exp = i64::try_from(ttl_secs)
            .ok()
            .and_then(|ttl| iat.checked_add(ttl))
            .ok_or_else(|| {
                ApiError::BadRequest(format!("token lifetime {ttl_secs} s is out of range"))
            })?;
        let claims = Claims {
            iss: TOKEN_ISSUER.into(),
            sub: client.client_id.clone(),
            company: client.company_id.clone(),
            iat,
            exp,
            generation: client.token_generation,
        };
        let token = encode(&Header::new(Algorithm::HS256), &claims, &self.encoding)
            .map_err(ApiError::internal)?;
        Ok(AccessToken {
            access_token: token,
            token_type: "bearer".into(),
            expires_in: ttl_secs,
        })
    }

    /// Checks signature, algorithm, issuer and expiry.
    pub fn verify(&self, token: &str) -> Result<Claims, ApiError> {
        let mut v = Validation::new(Algorithm::HS256);
        v.set_issuer(&[TOKEN_ISSUER]);
        v.set_required_spec_claims(&["exp", "iss", "sub"]);
        v.leeway = 0;
        decode::<Claims>(token, &self.decoding, &v)
            .map(|d| d.claims)
            .map_err(|e| {
                let why = match e.kind() {
                    jsonwebtoken::errors::ErrorKind::ExpiredSignature => "Access token expired",
                    _ => "Invalid access token",
                };
                ApiError::Unauthorized(why.into())
            })
    }
}

#[derive(Debug, Deserialize)]
struct ExchangeClaims {
    exp: i64,
    iat: Option<i64>,
    jti: Option<String>,
    aud: Option<serde_json::Value>,
}

/// What the JWT exchange checks beyond the signature and the names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ExchangeRules {
    /// Clock skew tolerated on `exp`, `nbf` and `iat`, seconds.
    pub leeway_secs: u64,
    /// Largest `exp - iat`, seconds.
    pub max_lifetime_secs: u64,
}

/// A verified service-account JWT, not yet known to be fresh.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Assertion {
    /// What identifies the assertion for replay detection: SHA-256 (hex)
    /// of the client id and the `jti` when the JWT has one (a second JWT
    /// with the same `jti` is a replay even if otherwise different), else
    /// of the whole JWT.
    pub replay_key: String,
    /// Until when it must be remembered: the last second its `exp` would
    /// still pass (exp + leeway).
    pub keep_until: i64,
}

fn unauthorized_jwt(why: impl std::fmt::Display) -> ApiError {
    ApiError::Unauthorized(format!("Invalid jwt_token: {why}"))
}

fn aud_names_client(aud: &serde_json::Value, client_id: &str) -> bool {
    let ok = |s: &str| s == client_id || s.ends_with(&format!("/c/{client_id}"));
    match aud {
        serde_json::Value::String(s) => ok(s),
        serde_json::Value::Array(a) => a.iter().any(|v| v.as_str().is_some_and(ok)),
        _ => false,
    }
}

/// Verifies a service-account JWT signed by `client`'s registered key, at
/// `now`; the caller still has to check that the assertion was not
/// exchanged before ([`Assertion`]).
pub fn verify_client_jwt(
    client: &ApiClient,
    jwt: &str,
    rules: ExchangeRules,
    now: i64,
) -> Result<Assertion, ApiError> {
    let Some(pem) = &client.public_key_pem else {
        return Err(ApiError::Unauthorized(
            "No public key is registered for this client".into(),
        ));
    };
    let key = DecodingKey::from_rsa_pem(pem.as_bytes())
        .map_err(|e| ApiError::internal(format!("registered key of {}: {e}", client.client_id)))?;
    let mut v = Validation::new(Algorithm::RS256);
    v.set_issuer(&[client.company_id.as_str()]);
    v.sub = Some(client.technical_account.clone());
    v.validate_aud = false;
    v.set_required_spec_claims(&["exp", "iss", "sub", "aud"]);
    v.validate_nbf = true;
    v.leeway = rules.leeway_secs;
    let claims = decode::<ExchangeClaims>(jwt, &key, &v)
        .map_err(|e| unauthorized_jwt(jwt_reason(e.kind())))?
        .claims;
    if !claims
        .aud
        .as_ref()
        .is_some_and(|aud| aud_names_client(aud, &client.client_id))
    {
        return Err(unauthorized_jwt("aud does not name this client"));
    }
    let leeway = i64::try_from(rules.leeway_secs).unwrap_or(i64::MAX);
    let iat = claims
        .iat
        .ok_or_else(|| unauthorized_jwt("iat (issued at) is required"))?;
    if iat > now.saturating_add(leeway) {
        return Err(unauthorized_jwt(format!(
            "iat {iat} is in the future (now {now}, leeway {leeway} s)"
        )));
    }
    let lifetime = i128::from(claims.exp) - i128::from(iat);
    if lifetime > i128::from(rules.max_lifetime_secs) {
        return Err(unauthorized_jwt(format!(
            "lifetime exp - iat = {lifetime} s is over the maximum of {} s",
            rules.max_lifetime_secs
        )));
    }
    let mut h = Sha256::new();
    match &claims.jti {
        Some(jti) => {
            h.update(b"jti\0");
            h.update(client.client_id.as_bytes());
            h.update(b"\0");
            h.update(jti.as_bytes());
        }
        None => {
            h.update(b"jwt\0");
            h.update(jwt.as_bytes());
        }
    }
    Ok(Assertion {
        replay_key: hex::encode(h.finalize()),
        keep_until: claims.exp.saturating_add(leeway),
    })
}

fn jwt_reason(kind: &jsonwebtoken::errors::ErrorKind) -> &'static str {
    use jsonwebtoken::errors::ErrorKind as K;
    match kind {
        K::ExpiredSignature => "expired",
        K::ImmatureSignature => "nbf (not before) is in the future",
        K::InvalidIssuer => "iss is not the client's company",
        K::InvalidSubject => "sub is not the client's technical account",
        K::InvalidSignature => "bad signature",
        K::InvalidAlgorithm => "algorithm must be RS256",
        K::MissingRequiredClaim(_) => "a required claim (exp, iss, sub, aud) is missing",
        _ => "malformed",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_round_trip() {
        let h = hash_secret("s3cret");
        assert!(verify_secret("s3cret", &h));
        assert!(!verify_secret("s3cret!", &h));
        assert!(!verify_secret("s3cret", "garbage"));
        assert_ne!(hash_secret("s3cret"), h, "salted");
    }

    /// Regression: a lifetime near `i64::MAX` wrapped `exp` negative (a
    /// token that never expires, or one refused at once).
    #[test]
    fn lifetimes_out_of_range_are_refused_not_wrapped() {
        let issuer = TokenIssuer::new(b"k", 60).unwrap();
        let client = ApiClient {
            client_id: "c1".into(),
            company_id: "acme".into(),
            secret_hash: String::new(),
            technical_account: String::new(),
            public_key_pem: None,
            disabled: false,
            created: 0,
            token_generation: 3,
        };
        let t = issuer.issue_at(&client, now(), 60).unwrap();
        assert_eq!(issuer.verify(&t.access_token).unwrap().generation, 3);
        assert!(issuer.verify(&t.access_token).unwrap().exp > now());
        for ttl in [i64::MAX as u64, u64::MAX] {
            assert!(issuer.issue_at(&client, now(), ttl).is_err(), "{ttl}");
        }
    }

    #[test]
    fn aud_shapes() {
        assert!(aud_names_client(&serde_json::json!("c1"), "c1"));
        assert!(aud_names_client(
            &serde_json::json!("https://ims-na1.adobelogin.com/c/c1"),
            "c1"
        ));
        assert!(aud_names_client(&serde_json::json!(["x", "c1"]), "c1"));
        assert!(!aud_names_client(&serde_json::json!("c2"), "c1"));
    }
}
