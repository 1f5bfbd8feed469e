//! Attacks on authentication, against a real `bdia serve` over HTTP:
//! service-account JWTs that should not be exchanged (not yet valid,
//! without `iat`, living too long, replayed), tokens that outlive a secret
//! rotation or a disable, guessing secrets, and `/metrics` readable by
//! anyone.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::time::Duration;

use jsonwebtoken::{encode, Algorithm, EncodingKey, Header};
use serde_json::{json, Value};

use crate::common::{admin, admin_output, free_port, BdiaServe};

const PRIVATE: &str = include_str!("../../../bdia-server/tests/data/client_private.pem");
const PUBLIC: &str = include_str!("../../../bdia-server/tests/data/client_public.pem");

/// One keep-alive HTTP/1.1 connection to the server.
struct Conn {
    reader: BufReader<TcpStream>,
}

/// An answer: status, headers (lower-case names), body.
struct Answer {
    status: u16,
    headers: Vec<(String, String)>,
    body: String,
}

impl Answer {
    fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("{e}: {}", self.body))
    }

    fn error(&self) -> String {
        self.json()["error"]
            .as_str()
            .unwrap_or_default()
            .to_string()
    }

    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

impl Conn {
    fn open(port: u16) -> Conn {
        let s = TcpStream::connect(("127.0.0.1", port)).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
        Conn {
            reader: BufReader::new(s),
        }
    }

    fn send(&mut self, method: &str, path: &str, headers: &[(&str, &str)], body: &str) -> Answer {
        let mut req = format!(
            "{method} {path} HTTP/1.1\r\nHost: x\r\nContent-Length: {}\r\n",
            body.len()
        );
        for (k, v) in headers {
            req.push_str(&format!("{k}: {v}\r\n"));
        }
        req.push_str("\r\n");
        req.push_str(body);
        self.reader.get_mut().write_all(req.as_bytes()).unwrap();
        let mut line = String::new();
        self.reader.read_line(&mut line).unwrap();
        let status = line
            .split(' ')
            .nth(1)
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| panic!("no status line: {line:?}"));
        let mut headers = Vec::new();
        loop {
            line.clear();
            self.reader.read_line(&mut line).unwrap();
            let l = line.trim_end();
            if l.is_empty() {
                break;
            }
            if let Some((k, v)) = l.split_once(':') {
                headers.push((k.trim().to_ascii_lowercase(), v.trim().to_string()));
            }
        }
        let len: usize = headers
            .iter()
            .find(|(k, _)| k == "content-length")
            .map(|(_, v)| v.parse().unwrap())
            .expect("a content-length");
        let mut body = vec![0u8; len];
        self.reader.read_exact(&mut body).unwrap();
        Answer {
            status,
            headers,
            body: String::from_utf8(body).unwrap(),
        }
    }

    /// POST of a form; values must need no percent-encoding.
    fn form(&mut self, path: &str, fields: &[(&str, &str)]) -> Answer {
        let body = fields
            .iter()
            .map(|(k, v)| {
                assert!(
                    v.bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b"-_.@".contains(&b)),
                    "{v}"
                );
                format!("{k}={v}")
            })
            .collect::<Vec<_>>()
            .join("&");
        self.send(
            "POST",
            path,
            &[("Content-Type", "application/x-www-form-urlencoded")],
            &body,
        )
    }

    fn token(&mut self, client_id: &str, secret: &str) -> Answer {
        self.form(
            "/ims/token/v3",
            &[
                ("grant_type", "client_credentials"),
                ("client_id", client_id),
                ("client_secret", secret),
            ],
        )
    }

    /// `GET /aa/collect/v1/events` with a token: the status.
    fn list_status(&mut self, token: &str, client_id: &str) -> Answer {
        self.send(
            "GET",
            "/aa/collect/v1/events",
            &[
                ("Authorization", &format!("Bearer {token}")),
                ("x-api-key", client_id),
            ],
            "",
        )
    }
}

fn access_token(a: &Answer) -> String {
    assert_eq!(a.status, 200, "{}", a.body);
    a.json()["access_token"].as_str().unwrap().to_string()
}

fn now() -> i64 {
    bdia_server::auth::now()
}

fn creds(server: &BdiaServe) -> (String, String) {
    let c = server.credentials();
    (
        c["client_id"].as_str().unwrap().to_string(),
        c["client_secret"].as_str().unwrap().to_string(),
    )
}

/// Regression: the JWT exchange accepted an `nbf` in the future, no `iat`,
/// an `exp` a century away, and the same JWT any number of times. Each is
/// now refused with its own reason; a replay is refused also after a
/// restart (the exchanged JWTs are remembered in the database).
#[test]
fn jwt_exchange_refuses_unripe_undated_long_lived_and_replayed_assertions() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let mut server = BdiaServe::start(&data, &[]);
    let company = server.credentials()["company"]
        .as_str()
        .unwrap()
        .to_string();
    let pem = dir.path().join("public.pem");
    std::fs::write(&pem, PUBLIC).unwrap();
    let tech = "TECH1@techacct.adobe.com";
    let client = admin(
        &data,
        &[
            "client",
            "create",
            "--company",
            &company,
            "--client-id",
            "svc",
            "--technical-account",
            tech,
            "--public-key",
            pem.to_str().unwrap(),
        ],
    );
    let secret = client["client_secret"].as_str().unwrap().to_string();
    let sign = |claims: Value| {
        let mut c = json!({ "iss": company, "sub": tech,
            "aud": "https://ims-na1.adobelogin.com/c/svc" });
        c.as_object_mut()
            .unwrap()
            .extend(claims.as_object().unwrap().clone());
        encode(
            &Header::new(Algorithm::RS256),
            &c,
            &EncodingKey::from_rsa_pem(PRIVATE.as_bytes()).unwrap(),
        )
        .unwrap()
    };
    let exchange = |conn: &mut Conn, jwt: &str| {
        conn.form(
            "/ims/exchange/jwt",
            &[
                ("client_id", "svc"),
                ("client_secret", &secret),
                ("jwt_token", jwt),
            ],
        )
    };
    let mut conn = Conn::open(server.port());
    let t = now();
    for (claims, reason) in [
        (
            json!({ "iat": t, "nbf": t + 600, "exp": t + 900 }),
            "nbf (not before) is in the future",
        ),
        (json!({ "exp": t + 300 }), "iat (issued at) is required"),
        (
            json!({ "iat": t + 600, "exp": t + 900 }),
            "is in the future",
        ),
        (
            json!({ "iat": t, "exp": t + 100 * 365 * 86_400 }),
            "is over the maximum of 86400 s",
        ),
        (
            json!({ "iat": t - 2 * 86_400, "exp": t + 300 }),
            "is over the maximum of 86400 s",
        ),
    ] {
        let a = exchange(&mut conn, &sign(claims.clone()));
        assert_eq!(a.status, 401, "{claims}: {}", a.body);
        let e = a.error();
        assert!(
            e.starts_with("Invalid jwt_token: ") && e.contains(reason),
            "{claims}: {e}"
        );
    }

    // A fresh one works, and its token too; the same JWT again does not.
    let with_jti = sign(json!({ "iat": t, "nbf": t, "exp": t + 300, "jti": "once-1" }));
    let token = access_token(&exchange(&mut conn, &with_jti));
    assert_eq!(conn.list_status(&token, "svc").status, 200);
    let replay = exchange(&mut conn, &with_jti);
    assert_eq!(replay.status, 401, "{}", replay.body);
    assert!(
        replay.error().contains("already exchanged"),
        "{}",
        replay.body
    );
    // Another JWT with the same jti is a replay too.
    let same_jti = sign(json!({ "iat": t, "exp": t + 200, "jti": "once-1" }));
    assert!(exchange(&mut conn, &same_jti)
        .error()
        .contains("already exchanged"));
    // Without a jti, the JWT itself is remembered.
    let no_jti = sign(json!({ "iat": t, "exp": t + 250 }));
    access_token(&exchange(&mut conn, &no_jti));
    assert!(exchange(&mut conn, &no_jti)
        .error()
        .contains("already exchanged"));

    // A restart does not reopen replays.
    drop(conn);
    server.kill();
    server.restart();
    server.wait_healthy();
    let mut conn = Conn::open(server.port());
    for jwt in [&with_jti, &no_jti] {
        let a = exchange(&mut conn, jwt);
        assert_eq!(a.status, 401, "{}", a.body);
        assert!(a.error().contains("already exchanged"), "{}", a.body);
    }
    let fresh = sign(json!({ "iat": now(), "exp": now() + 300, "jti": "once-2" }));
    access_token(&exchange(&mut conn, &fresh));
}

/// A server on a fresh data dir, a connection to it, its first-start
/// client and an access token of that client that works.
struct Fixture {
    _dir: tempfile::TempDir,
    data: PathBuf,
    server: BdiaServe,
    conn: Conn,
    id: String,
    secret: String,
    token: String,
}

fn fixture() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let server = BdiaServe::start(&data, &[]);
    let (id, secret) = creds(&server);
    let mut conn = Conn::open(server.port());
    let token = access_token(&conn.token(&id, &secret));
    assert_eq!(conn.list_status(&token, &id).status, 200);
    Fixture {
        _dir: dir,
        data,
        server,
        conn,
        id,
        secret,
        token,
    }
}

fn assert_revoked(a: &Answer) {
    assert_eq!(a.status, 401, "{}", a.body);
    assert!(a.error().starts_with("Access token revoked"), "{}", a.body);
}

/// Regression: there was no way to replace a client's secret, and tokens
/// issued before stayed valid. `bdia admin client rotate-secret` replaces
/// it and revokes them (401), while the new secret works at once; the
/// first-start credentials.json follows the rotation.
#[test]
fn rotate_secret_refuses_the_old_secret_and_the_old_tokens() {
    let mut f = fixture();
    let rotated = admin(&f.data, &["client", "rotate-secret", &f.id]);
    let new_secret = rotated["client_secret"].as_str().unwrap().to_string();
    assert_ne!(new_secret, f.secret);
    assert_eq!(rotated["tokens_revoked"], true);
    assert_eq!(creds(&f.server).1, new_secret, "credentials.json follows");

    let a = f.conn.token(&f.id, &f.secret);
    assert_eq!(a.status, 401, "{}", a.body);
    assert_eq!(a.error(), "Invalid client credentials");
    assert_revoked(&f.conn.list_status(&f.token, &f.id));
    let new_token = access_token(&f.conn.token(&f.id, &new_secret));
    assert_eq!(f.conn.list_status(&new_token, &f.id).status, 200);

    // An unknown client is named.
    let out = admin_output(&f.data, &["client", "rotate-secret", "nobody"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("no client 'nobody'"));
}

/// Regression: disabling a client and enabling it again revived the tokens
/// issued before the disable. They now stay refused (401); new ones work.
#[test]
fn disable_then_enable_does_not_revive_earlier_tokens() {
    let mut f = fixture();
    admin(&f.data, &["client", "disable", &f.id]);
    assert_eq!(f.conn.list_status(&f.token, &f.id).status, 403);
    assert_eq!(f.conn.token(&f.id, &f.secret).status, 403);
    admin(&f.data, &["client", "enable", &f.id]);
    assert_revoked(&f.conn.list_status(&f.token, &f.id));
    let after = access_token(&f.conn.token(&f.id, &f.secret));
    assert_eq!(f.conn.list_status(&after, &f.id).status, 200);
}

/// The value of an unlabelled gauge in a Prometheus text.
fn gauge(text: &str, name: &str) -> f64 {
    text.lines()
        .find_map(|l| l.strip_prefix(&format!("{name} ")))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("{name} not in:\n{text}"))
}

/// Regression: wrong secrets could be tried without limit. A client id is
/// now answered 429 with Retry-After after a burst of failures (even with
/// the right secret), other clients are not affected, the right secret
/// works once the throttle lifts; and 10,000 random client ids (long ones
/// included) leave the tracked state and the server's memory bounded.
#[test]
fn wrong_secrets_are_throttled_per_client_id_with_bounded_state() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let metrics_token = "abuse-auth-metrics-token";
    let server = BdiaServe::start(
        &data,
        &[
            ("BDIA_AUTH_FAILURE_BURST", "10"),
            ("BDIA_AUTH_FAILURE_REFILL_SECS", "2"),
            ("BDIA_AUTH_FAILURE_MAX_CLIENTS", "1000"),
            ("BDIA_METRICS_TOKEN", metrics_token),
        ],
    );
    let (id, secret) = creds(&server);
    let company = server.credentials()["company"]
        .as_str()
        .unwrap()
        .to_string();
    let other = admin(&data, &["client", "create", "--company", &company]);
    let (other_id, other_secret) = (
        other["client_id"].as_str().unwrap().to_string(),
        other["client_secret"].as_str().unwrap().to_string(),
    );
    let mut conn = Conn::open(server.port());

    let answers: Vec<Answer> = (0..20).map(|_| conn.token(&id, "p8e-wrong")).collect();
    for (i, a) in answers.iter().enumerate() {
        let want = if i < 10 { 401 } else { 429 };
        assert_eq!(a.status, want, "attempt {}: {}", i + 1, a.body);
    }
    let last = answers.last().unwrap();
    let retry: u64 = last
        .header("retry-after")
        .expect("Retry-After")
        .parse()
        .unwrap();
    assert!((1..=2).contains(&retry), "Retry-After {retry}");
    assert!(
        last.error().starts_with("Too many requests"),
        "{}",
        last.body
    );
    // Blocked whatever the secret; another client is not.
    assert_eq!(conn.token(&id, &secret).status, 429);
    access_token(&conn.token(&other_id, &other_secret));
    // Once the throttle lifts, the right secret works.
    std::thread::sleep(Duration::from_secs(retry + 1));
    access_token(&conn.token(&id, &secret));

    // 10,000 distinct client ids, a tenth of them 60 KB long (60 MB of
    // ids: kept as they came, they alone would break the memory bound).
    let before = server.peak_rss_kib();
    let port = server.port();
    std::thread::scope(|s| {
        for t in 0..4 {
            s.spawn(move || {
                let mut conn = Conn::open(port);
                for i in 0..2_500 {
                    let len = if i % 10 == 0 { 60_000 } else { 200 };
                    let mut client_id = format!("random-{t}-{i}-");
                    client_id.push_str(&"x".repeat(len));
                    let a = conn.token(&client_id, "p8e-wrong");
                    assert_eq!(a.status, 401, "{}", a.body);
                }
            });
        }
    });
    let after = server.peak_rss_kib();
    let metrics = conn.send(
        "GET",
        "/metrics",
        &[("Authorization", &format!("Bearer {metrics_token}"))],
        "",
    );
    assert_eq!(metrics.status, 200);
    let tracked = gauge(&metrics.body, "bdia_auth_failure_clients");
    eprintln!("VmHWM {before} -> {after} KiB, {tracked} client ids tracked");
    assert!(tracked <= 1000.0, "{tracked} client ids tracked");
    assert!(
        after < before + 48 * 1024,
        "peak RSS grew from {before} KiB to {after} KiB"
    );
    // The throttle still works after the flood.
    let answers: Vec<u16> = (0..12)
        .map(|_| conn.token(&other_id, "p8e-wrong").status)
        .collect();
    assert_eq!(answers[..10], [401; 10]);
    assert_eq!(answers[10..], [429; 2]);
}

/// Regression: `/metrics` (which spans every company) was open to anyone.
/// On the main listener it is now served only with the metrics token, and
/// not at all without one; `metrics_listen` serves it alone, without a
/// token.
#[test]
fn metrics_need_the_token_or_the_metrics_listener() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    {
        let server = BdiaServe::start(&data, &[]);
        let a = Conn::open(server.port()).send("GET", "/metrics", &[], "");
        assert_eq!(a.status, 404, "{}", a.body);
    }
    let metrics_port = free_port();
    let listen = format!("127.0.0.1:{metrics_port}");
    let token = "0123456789abcdef-metrics";
    let server = BdiaServe::start(
        &data,
        &[
            ("BDIA_METRICS_TOKEN", token),
            ("BDIA_METRICS_LISTEN", &listen),
        ],
    );
    let mut conn = Conn::open(server.port());
    let a = conn.send("GET", "/metrics", &[], "");
    assert_eq!(a.status, 401, "{}", a.body);
    assert!(a.error().contains("metrics_token"), "{}", a.body);
    let a = conn.send(
        "GET",
        "/metrics",
        &[("Authorization", "Bearer 0123456789abcdef-metricX")],
        "",
    );
    assert_eq!(a.status, 401, "{}", a.body);
    let a = conn.send(
        "GET",
        "/metrics",
        &[("Authorization", &format!("Bearer {token}"))],
        "",
    );
    assert_eq!(a.status, 200);
    assert!(a.body.contains("bdia_http_errors_total"), "{}", a.body);

    let mut scrape = Conn::open(metrics_port);
    let a = scrape.send("GET", "/metrics", &[], "");
    assert_eq!(a.status, 200);
    assert!(a.body.contains("bdia_http_errors_total"), "{}", a.body);
    // Only /metrics there.
    let a = scrape.send("GET", "/aa/collect/v1/events", &[], "");
    assert_eq!(a.status, 404, "{}", a.body);
    let a = scrape.send("GET", "/healthz", &[], "");
    assert_eq!(a.status, 404, "{}", a.body);
}
