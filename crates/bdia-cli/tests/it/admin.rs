//! `bdia admin` on a data dir, then a token it printed used against
//! `bdia serve` on the same dir.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::Command;
use std::time::Duration;

use crate::common::{admin_output as bdia, json, BdiaServe};

fn get(port: u16, path: &str, token: &str, key: &str) -> String {
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(
        s,
        "GET {path} HTTP/1.0\r\nHost: x\r\nAuthorization: Bearer {token}\r\nx-api-key: {key}\r\n\r\n"
    )
    .unwrap();
    let mut out = String::new();
    let _ = s.read_to_string(&mut out);
    out
}

#[test]
fn admin_manages_tenants_and_prints_working_tokens() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let c = json(&bdia(
        d,
        &["company", "create", "acme", "--rate-limit", "off"],
    ));
    assert_eq!(c["company"], "acme");
    assert_eq!(c["settings"]["upload_rate_limit"]["mode"], "off");
    assert!(
        !bdia(d, &["company", "create", "acme"]).status.success(),
        "duplicate"
    );
    assert!(
        !bdia(d, &["company", "create", "x", "--rate-limit", "fast"])
            .status
            .success()
    );

    let rs = json(&bdia(
        d,
        &[
            "report-suite",
            "create",
            "acme.prod",
            "--company",
            "acme",
            "--time-zone",
            "Europe/Paris",
        ],
    ));
    assert_eq!(rs["time_zone"], "Europe/Paris");
    // Report-suite IDs follow the one rule (docs/FORMAT.md).
    for bad in ["acme@prod", "acme:prod", "_staging", "a/b"] {
        let out = bdia(d, &["report-suite", "create", bad, "--company", "acme"]);
        assert_eq!(out.status.code(), Some(2), "{bad}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(bad), "{err}");
    }
    let out = bdia(
        d,
        &["report-suite", "create", "acme@prod", "--company", "acme"],
    );
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("'@' at position 5 is not allowed"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let list = json(&bdia(d, &["report-suite", "list", "--company", "acme"]));
    assert_eq!(list.as_array().unwrap().len(), 1);

    let client = json(&bdia(
        d,
        &[
            "client",
            "create",
            "--company",
            "acme",
            "--client-id",
            "etl",
        ],
    ));
    assert!(client["client_secret"].as_str().unwrap().len() > 32);
    let clients = json(&bdia(d, &["client", "list", "--company", "acme"]));
    assert_eq!(clients[0]["client_id"], "etl");
    assert!(
        clients[0].get("client_secret").is_none(),
        "secrets never listed"
    );

    let s = json(&bdia(
        d,
        &[
            "company",
            "settings",
            "acme",
            "--auto-create-report-suites",
            "false",
        ],
    ));
    assert_eq!(s["settings"]["auto_create_report_suites"], false);

    let tok = bdia(d, &["token", "etl"]);
    assert!(tok.status.success());
    let token = String::from_utf8(tok.stdout).unwrap().trim().to_string();
    assert_eq!(token.split('.').count(), 3);

    // The token works against a server on the same data dir.
    let server = BdiaServe::start(d, &[]);
    let port = server.port();
    let answer = get(port, "/aa/collect/v1/events", &token, "etl");
    let wrong_key = get(port, "/aa/collect/v1/events", &token, "other");
    json(&bdia(d, &["client", "disable", "etl"]));
    let disabled = get(port, "/aa/collect/v1/events", &token, "etl");
    drop(server);
    assert!(
        answer.starts_with("HTTP/1.0 200") || answer.starts_with("HTTP/1.1 200"),
        "{answer}"
    );
    assert!(wrong_key.contains(" 401 "), "{wrong_key}");
    assert!(disabled.contains(" 403 "), "{disabled}");
    assert!(
        !bdia(d, &["token", "etl"]).status.success(),
        "no token for a disabled client"
    );
}

/// Regression: a token lifetime near `i64::MAX` wrapped `exp` negative.
/// Lifetimes are bounded (30 days) in `bdia admin token --ttl` and in the
/// server's configuration, which refuses to start with a larger one.
#[test]
fn token_lifetimes_are_bounded() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    json(&bdia(d, &["company", "create", "acme"]));
    json(&bdia(
        d,
        &[
            "client",
            "create",
            "--company",
            "acme",
            "--client-id",
            "etl",
        ],
    ));
    let ok = bdia(d, &["token", "etl", "--ttl", "2592000"]);
    assert!(
        ok.status.success(),
        "{}",
        String::from_utf8_lossy(&ok.stderr)
    );
    for ttl in [
        "2592001",
        "9223372036854775807",
        "18446744073709551615",
        "0",
    ] {
        let out = bdia(d, &["token", "etl", "--ttl", ttl]);
        assert_eq!(out.status.code(), Some(2), "--ttl {ttl}");
        assert!(out.stdout.is_empty(), "no token for --ttl {ttl}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains("--ttl"), "{err}");
    }

    // The server refuses a configured lifetime over the bound, naming it.
    let out = Command::new(env!("CARGO_BIN_EXE_bdia"))
        .args(["serve", "--data-dir"])
        .arg(d)
        .args(["--listen", "127.0.0.1:0"])
        .env("BDIA_TOKEN_TTL_SECS", "9223372036854775807")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("token_ttl_secs"), "{err}");
}
