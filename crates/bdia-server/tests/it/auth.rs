use std::io::{Read, Write};
use std::time::Duration;

use bdia_server::auth::{now, TokenIssuer};
use bdia_server::tenancy;
use jsonwebtoken::{encode, Algorithm, EncodingKey, Header};
use serde_json::{json, Value};

use crate::common::*;

const PRIVATE: &str = include_str!("../data/client_private.pem");
const PUBLIC: &str = include_str!("../data/client_public.pem");
const CERT: &str = include_str!("../data/client_cert.pem");
const OTHER_PRIVATE: &str = include_str!("../data/other_private.pem");

async fn status_with(api: &Api, token: &str, key: &str) -> (u16, Value) {
    let r = api
        .http
        .get(format!("{}/aa/collect/v1/events", api.base))
        .bearer_auth(token)
        .header("x-api-key", key)
        .send()
        .await
        .unwrap();
    let st = r.status().as_u16();
    (st, r.json().await.unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_tokens_and_keys_answer_401() {
    let s = start().await;
    let api = Api::default_client(&s).await;
    let key = api.api_key.clone();
    assert_eq!(status_with(&api, &api.token, &key).await.0, 200);

    // No Authorization at all.
    let r = api
        .http
        .get(format!("{}/aa/collect/v1/events", api.base))
        .header("x-api-key", &key)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    let v: Value = r.json().await.unwrap();
    assert!(v["error"].is_string());

    // Garbage.
    assert_eq!(status_with(&api, "not.a.jwt", &key).await.0, 401);

    let client = s.state.store.get_client(&key).await.unwrap().unwrap();
    // Expired (signed with the right key).
    let expired = s.state.tokens.issue_at(&client, now() - 7200, 60).unwrap();
    let (st, v) = status_with(&api, &expired.access_token, &key).await;
    assert_eq!(st, 401);
    assert_eq!(v["error"], "Access token expired");

    // Forged: same claims, another key.
    let forger = TokenIssuer::new(b"0123456789abcdef0123456789abcdef", 3600).unwrap();
    let forged = forger.issue(&client).unwrap();
    assert_eq!(status_with(&api, &forged.access_token, &key).await.0, 401);

    // alg: none.
    let b64 = |v: &Value| base64_url_nopad(&serde_json::to_vec(v).unwrap());
    let none = format!(
        "{}.{}.",
        b64(&json!({"alg": "none", "typ": "JWT"})),
        b64(
            &json!({"iss": "bdia", "sub": key, "company": client.company_id, "iat": now(), "exp": now() + 3600})
        )
    );
    assert_eq!(status_with(&api, &none, &key).await.0, 401);

    // Wrong and missing x-api-key.
    let (other, secret) =
        tenancy::create_client(&*s.state.store, &client.company_id, None, None, None)
            .await
            .unwrap();
    assert_eq!(status_with(&api, &api.token, &other.client_id).await.0, 401);
    let r = api
        .http
        .get(format!("{}/aa/collect/v1/events", api.base))
        .bearer_auth(&api.token)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);

    // Token endpoint errors.
    let form = |id: &str, sec: &str, grant: &str| {
        vec![
            ("grant_type".to_string(), grant.to_string()),
            ("client_id".to_string(), id.to_string()),
            ("client_secret".to_string(), sec.to_string()),
        ]
    };
    let post = |f: Vec<(String, String)>| {
        api.http
            .post(format!("{}/ims/token/v3", api.base))
            .form(&f)
            .send()
    };
    assert_eq!(
        post(form(&other.client_id, "wrong", "client_credentials"))
            .await
            .unwrap()
            .status(),
        401
    );
    assert_eq!(
        post(form("nobody", &secret, "client_credentials"))
            .await
            .unwrap()
            .status(),
        401
    );
    assert_eq!(
        post(form(&other.client_id, &secret, "password"))
            .await
            .unwrap()
            .status(),
        400
    );
    assert_eq!(
        post(vec![("grant_type".into(), "client_credentials".into())])
            .await
            .unwrap()
            .status(),
        400
    );
    assert_eq!(
        post(form(&other.client_id, &secret, "client_credentials"))
            .await
            .unwrap()
            .status(),
        200
    );
}

/// base64url without padding (tiny, to avoid a dependency).
fn base64_url_nopad(bytes: &[u8]) -> String {
    const A: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (b[0] as u32) << 16 | (b[1] as u32) << 8 | b[2] as u32;
        for i in 0..=chunk.len() {
            out.push(A[(n >> (18 - 6 * i) & 63) as usize] as char);
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn disabled_client_gets_403() {
    let s = start().await;
    let api = Api::default_client(&s).await;
    s.state
        .store
        .set_client_disabled(&api.api_key, true)
        .await
        .unwrap();
    let (st, v) = api.get_json("/aa/collect/v1/events").await;
    assert_eq!(st, 403, "{v}");
    let (st, _) = api.upload(small_file(1, "a"), "g").await;
    assert_eq!(st, 403);
    let r = api
        .http
        .post(format!("{}/ims/token/v3", api.base))
        .form(&[
            ("grant_type", "client_credentials"),
            ("client_id", s.credentials.client_id.as_str()),
            ("client_secret", s.credentials.client_secret.as_str()),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
}

fn client_jwt(signer: &str, iss: &str, sub: &str, aud: &str, exp: i64) -> String {
    encode(
        &Header::new(Algorithm::RS256),
        &json!({ "exp": exp, "iat": now(), "iss": iss, "sub": sub, "aud": aud,
                 "https://ims-na1.adobelogin.com/s/ent_analytics_bulk_ingest_sdk": true }),
        &EncodingKey::from_rsa_pem(signer.as_bytes()).unwrap(),
    )
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jwt_exchange_with_a_registered_rsa_key() {
    let s = start().await;
    let company = s.credentials.company.clone();
    for pem in [PUBLIC, CERT] {
        let (client, secret) = tenancy::create_client(
            &*s.state.store,
            &company,
            None,
            Some("TECH123@techacct.adobe.com"),
            Some(pem.to_string()),
        )
        .await
        .unwrap();
        let id = client.client_id.clone();
        let aud = format!("https://ims-na1.adobelogin.com/c/{id}");
        let exchange = |jwt: String| {
            let (id, secret) = (id.clone(), secret.clone());
            let base = s.base_url();
            async move {
                let r = http()
                    .post(format!("{base}/ims/exchange/jwt"))
                    .form(&[
                        ("client_id", id.as_str()),
                        ("client_secret", secret.as_str()),
                        ("jwt_token", jwt.as_str()),
                    ])
                    .send()
                    .await
                    .unwrap();
                let st = r.status().as_u16();
                (st, r.json::<Value>().await.unwrap())
            }
        };
        let good = client_jwt(
            PRIVATE,
            &company,
            "TECH123@techacct.adobe.com",
            &aud,
            now() + 300,
        );
        let (st, v) = exchange(good).await;
        assert_eq!(st, 200, "{v}");
        assert_eq!(v["token_type"], "bearer");
        let api = Api {
            base: s.base_url(),
            token: v["access_token"].as_str().unwrap().to_string(),
            api_key: id.clone(),
            http: http(),
        };
        let (st, _) = api.upload(small_file(2, "acme.prod"), "g").await;
        assert_eq!(st, 200, "the exchanged token works");

        let tech = "TECH123@techacct.adobe.com";
        for (jwt, why) in [
            (
                client_jwt(OTHER_PRIVATE, &company, tech, &aud, now() + 300),
                "other signer",
            ),
            (
                client_jwt(PRIVATE, "someone-else", tech, &aud, now() + 300),
                "wrong iss",
            ),
            (
                client_jwt(PRIVATE, &company, "other@techacct", &aud, now() + 300),
                "wrong sub",
            ),
            (
                client_jwt(PRIVATE, &company, tech, "https://x/c/other", now() + 300),
                "wrong aud",
            ),
            (
                client_jwt(PRIVATE, &company, tech, &aud, now() - 3600),
                "expired",
            ),
        ] {
            let (st, v) = exchange(jwt).await;
            assert_eq!(st, 401, "{why}: {v}");
            assert!(v["error"].is_string());
        }
    }
    // A client without a registered key cannot use the exchange.
    let (client, secret) = tenancy::create_client(&*s.state.store, &company, None, None, None)
        .await
        .unwrap();
    let jwt = client_jwt(
        PRIVATE,
        &company,
        &client.technical_account,
        &client.client_id,
        now() + 300,
    );
    let r = http()
        .post(format!("{}/ims/exchange/jwt", s.base_url()))
        .form(&[
            ("client_id", client.client_id.as_str()),
            ("client_secret", secret.as_str()),
            ("jwt_token", jwt.as_str()),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
}

fn expect_continue_head(api: &Api, token: &str, len: usize) -> String {
    format!(
        "POST /aa/collect/v1/events HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {token}\r\n\
         x-api-key: {}\r\nx-adobe-vgid: g\r\nExpect: 100-continue\r\n\
         Content-Type: multipart/form-data; boundary=BOUNDARY\r\nContent-Length: {len}\r\n\r\n",
        api.api_key
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expect_continue_is_answered_only_after_auth() {
    let s = start().await;
    let api = Api::default_client(&s).await;
    let body = bare_multipart("BOUNDARY", &small_file(4, "acme.prod"));

    // Bad token: the answer is 401 without any body having been sent.
    let mut sock = std::net::TcpStream::connect(s.addr).unwrap();
    sock.set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    sock.write_all(expect_continue_head(&api, "forged", body.len()).as_bytes())
        .unwrap();
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    while !response_complete(&got) {
        let n = sock.read(&mut buf).unwrap();
        if n == 0 {
            break;
        }
        got.extend_from_slice(&buf[..n]);
    }
    let text = String::from_utf8_lossy(&got);
    assert!(text.starts_with("HTTP/1.1 401"), "{text}");
    assert!(!text.contains("100 Continue"), "{text}");
    let v: Value = serde_json::from_str(raw_body(&text)).unwrap();
    assert!(v["error"].is_string());

    // Good token: 100 Continue first, then the body, then 200.
    let mut sock = std::net::TcpStream::connect(s.addr).unwrap();
    sock.set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    sock.write_all(expect_continue_head(&api, &api.token, body.len()).as_bytes())
        .unwrap();
    let mut got = Vec::new();
    while !String::from_utf8_lossy(&got).contains("\r\n\r\n") {
        let n = sock.read(&mut buf).unwrap();
        assert!(n > 0);
        got.extend_from_slice(&buf[..n]);
    }
    assert!(String::from_utf8_lossy(&got).starts_with("HTTP/1.1 100 Continue"));
    sock.write_all(&body).unwrap();
    let mut got = Vec::new();
    while !response_complete(&got) {
        let n = sock.read(&mut buf).unwrap();
        if n == 0 {
            break;
        }
        got.extend_from_slice(&buf[..n]);
    }
    let text = String::from_utf8_lossy(&got);
    assert!(text.starts_with("HTTP/1.1 200"), "{text}");
}
