//! Abuse of shared capacity, against `bdia serve` over raw HTTP: stalled
//! validate requests, engine passes per company and in all, readiness
//! under saturation, validate and report rate limits, and a throttled
//! company next to another one.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use crate::common::{admin, BdiaServe};

/// A tenant made with `bdia admin`: company, client, secret and a token.
pub(crate) struct Tenant {
    pub(crate) client: String,
    pub(crate) secret: String,
    pub(crate) token: String,
}

pub(crate) fn tenant(data: &Path, company: &str, extra: &[&str]) -> Tenant {
    let mut args = vec!["company", "create", company];
    args.extend_from_slice(extra);
    admin(data, &args);
    let client = format!("{company}-etl");
    let c = admin(
        data,
        &[
            "client",
            "create",
            "--company",
            company,
            "--client-id",
            &client,
        ],
    );
    let out = Command::new(env!("CARGO_BIN_EXE_bdia"))
        .args(["admin", "--data-dir"])
        .arg(data)
        .args(["token", &client])
        .output()
        .unwrap();
    assert!(out.status.success());
    Tenant {
        secret: c["client_secret"].as_str().unwrap().to_string(),
        token: String::from_utf8(out.stdout).unwrap().trim().to_string(),
        client,
    }
}

/// One HTTP/1.0 exchange; `(status, body)`, or `None` when no answer came
/// within `within`.
pub(crate) fn exchange(port: u16, request: &str, within: Duration) -> Option<(u16, String)> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(within)).unwrap();
    s.write_all(request.as_bytes()).ok()?;
    let mut buf = Vec::new();
    let _ = s.read_to_end(&mut buf);
    parse(&buf)
}

pub(crate) fn parse(buf: &[u8]) -> Option<(u16, String)> {
    let text = String::from_utf8_lossy(buf);
    let status = text.split(' ').nth(1)?.parse().ok()?;
    let body = text.split_once("\r\n\r\n").map_or("", |(_, b)| b);
    Some((status, body.to_string()))
}

pub(crate) fn get(port: u16, path: &str, t: &Tenant) -> Option<(u16, String)> {
    let req = format!(
        "GET {path} HTTP/1.0\r\nHost: x\r\nAuthorization: Bearer {}\r\nx-api-key: {}\r\n\r\n",
        t.token, t.client
    );
    exchange(port, &req, Duration::from_secs(10))
}

fn token_request(port: u16, t: &Tenant) -> Option<(u16, String)> {
    let body = format!(
        "grant_type=client_credentials&client_id={}&client_secret={}",
        t.client, t.secret
    );
    let req = format!(
        "POST /ims/token/v3 HTTP/1.0\r\nHost: x\r\nContent-Type: application/x-www-form-urlencoded\r\n\
         Content-Length: {}\r\n\r\n{body}",
        body.len()
    );
    exchange(port, &req, Duration::from_secs(10))
}

pub(crate) fn readyz(port: u16) -> (u16, serde_json::Value) {
    let (status, body) = exchange(
        port,
        "GET /readyz HTTP/1.0\r\nHost: x\r\n\r\n",
        Duration::from_secs(10),
    )
    .expect("readyz answers");
    (status, serde_json::from_str(&body).unwrap())
}

const BOUNDARY: &str = "bdiaabuse";

/// The headers of a multipart validate request whose body is announced
/// (1 MB) but not sent.
fn validate_head(t: &Tenant) -> String {
    format!(
        "POST /aa/collect/v1/events/validate HTTP/1.1\r\nHost: x\r\n\
         Authorization: Bearer {}\r\nx-api-key: {}\r\n\
         Content-Type: multipart/form-data; boundary={BOUNDARY}\r\n\
         Content-Length: 1000000\r\nConnection: close\r\n\r\n",
        t.token, t.client
    )
}

/// The head of a `file` part.
fn part_head() -> Vec<u8> {
    format!(
        "--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"a.csv.gz\"\r\n\
         Content-Type: application/gzip\r\n\r\n"
    )
    .into_bytes()
}

/// A validate request that has sent the first `partial` bytes of its file
/// (a valid gzip stream cut short) and waits.
fn started_pass(port: u16, t: &Tenant, partial: &[u8]) -> TcpStream {
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.write_all(validate_head(t).as_bytes()).unwrap();
    s.write_all(&part_head()).unwrap();
    s.write_all(partial).unwrap();
    s
}

/// A validate request that sends the start of its file, ends its side,
/// and reads the answer.
fn refused_pass(port: u16, t: &Tenant, partial: &[u8]) -> (u16, String) {
    let mut s = started_pass(port, t, partial);
    s.shutdown(std::net::Shutdown::Write).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    let mut buf = Vec::new();
    let _ = s.read_to_end(&mut buf);
    parse(&buf).expect("an answer")
}

pub(crate) fn wait_for(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Regression: 600 authenticated validate requests that sent headers and
/// no body each held a blocking thread, and every database call waited
/// behind them: token requests and every authenticated endpoint timed out
/// for all tenants. A pass now starts only when the body does, passes are
/// bounded per company (429) and in all (503), database calls run on
/// their own thread, and `/readyz` reports the saturation.
#[test]
fn stalled_validates_hold_nothing_and_passes_are_bounded() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    std::fs::create_dir_all(&data).unwrap();
    let acme = tenant(&data, "acme", &["--rate-limit", "off"]);
    let beta = tenant(&data, "beta", &["--rate-limit", "off"]);
    let server = BdiaServe::start(
        &data,
        &[
            ("BDIA_MAX_CONCURRENT_PASSES", "6"),
            ("BDIA_MAX_CONCURRENT_PASSES_PER_COMPANY", "4"),
            ("BDIA_UPLOAD_IDLE_TIMEOUT_SECS", "60"),
            ("BDIA_PROCESSING_ENABLED", "false"),
        ],
    );
    let port = server.port();
    let file = std::fs::read(generated(dir.path(), "big.csv.gz", 20_000, "acme.prod", 1)).unwrap();
    let partial = &file[..file.len() / 2];

    // 600 stalled requests: headers, no body.
    let mut stalled = Vec::new();
    for _ in 0..600 {
        let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
        s.write_all(validate_head(&acme).as_bytes()).unwrap();
        stalled.push(s);
    }
    std::thread::sleep(Duration::from_secs(1));
    for t in [&acme, &beta] {
        let started = Instant::now();
        let (status, body) = token_request(port, t).expect("token endpoint answers");
        assert_eq!(status, 200, "{body}");
        let (status, body) = get(port, "/aa/collect/v1/events", t).expect("file list answers");
        assert_eq!(status, 200, "{body}");
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "answers took {:?} with 600 stalled validates",
            started.elapsed()
        );
    }
    let (status, ready) = readyz(port);
    assert_eq!(status, 200, "{ready}");
    assert_eq!(ready["status"], "ready");
    assert_eq!(
        ready["passes"]["in_use"], 0,
        "stalled requests hold no pass: {ready}"
    );
    drop(stalled);

    // Passes per company: acme's fifth is refused with 429.
    let held_acme: Vec<_> = (0..4).map(|_| started_pass(port, &acme, partial)).collect();
    wait_for("4 passes", || readyz(port).1["passes"]["in_use"] == 4);
    let (status, body) = refused_pass(port, &acme, partial);
    assert_eq!(status, 429, "{body}");
    let err: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert!(
        err["error"]
            .as_str()
            .unwrap()
            .contains("for this company (at most 4 at once)"),
        "{err}"
    );
    // In all: beta gets the two slots left, then 503; readiness says so.
    let held_beta: Vec<_> = (0..2).map(|_| started_pass(port, &beta, partial)).collect();
    wait_for("6 passes", || readyz(port).1["passes"]["in_use"] == 6);
    let (status, ready) = readyz(port);
    assert_eq!(status, 503, "{ready}");
    assert_eq!(ready["status"], "saturated");
    assert_eq!(ready["passes"]["limit"], 6);
    let (status, body) = refused_pass(port, &beta, partial);
    assert_eq!(status, 503, "{body}");
    assert!(body.contains("The server is busy"), "{body}");
    // Other requests are still served while saturated.
    assert_eq!(get(port, "/aa/collect/v1/events", &beta).unwrap().0, 200);

    // Slots come back when the clients go away.
    drop(held_acme);
    drop(held_beta);
    wait_for("passes released", || {
        readyz(port).1["passes"]["in_use"] == 0
    });
    assert_eq!(readyz(port).0, 200);
}

/// A small valid gzip file made by `bdia generate`.
pub(crate) fn generated(
    dir: &Path,
    name: &str,
    rows: u32,
    suite: &str,
    seed: u32,
) -> std::path::PathBuf {
    let p = dir.join(name);
    let out = Command::new(env!("CARGO_BIN_EXE_bdia"))
        .args(["generate", "--rows", &rows.to_string(), "--suites", suite])
        .args(["--seed", &seed.to_string(), "-o"])
        .arg(&p)
        .output()
        .unwrap();
    assert!(out.status.success());
    p
}

pub(crate) fn multipart_post(
    port: u16,
    path: &str,
    t: &Tenant,
    vgid: &str,
    file: &[u8],
) -> (u16, String) {
    parse(&multipart_post_raw(port, path, t, vgid, file)).expect("an answer")
}

/// The whole answer (status line, headers, body) of a multipart POST.
pub(crate) fn multipart_post_raw(
    port: u16,
    path: &str,
    t: &Tenant,
    vgid: &str,
    file: &[u8],
) -> Vec<u8> {
    let mut body = part_head();
    body.extend_from_slice(file);
    body.extend_from_slice(format!("\r\n--{BOUNDARY}--\r\n").as_bytes());
    let head = format!(
        "POST {path} HTTP/1.0\r\nHost: x\r\nAuthorization: Bearer {}\r\nx-api-key: {}\r\n\
         x-adobe-vgid: {vgid}\r\nContent-Type: multipart/form-data; boundary={BOUNDARY}\r\n\
         Content-Length: {}\r\n\r\n",
        t.token,
        t.client,
        body.len()
    );
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
    s.write_all(head.as_bytes()).unwrap();
    // The server may answer (and close) before reading everything.
    let _ = s.write_all(&body);
    let mut buf = Vec::new();
    let _ = s.read_to_end(&mut buf);
    buf
}

/// Regression: only uploads were rate limited; validate and reports had
/// no limit. Validate now spends the company's upload setting from its own
/// bucket, and reports have a per-company rate.
#[test]
fn validate_and_reports_are_rate_limited_per_company() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    std::fs::create_dir_all(&data).unwrap();
    let acme = tenant(&data, "acme", &["--rate-limit", "1/3"]);
    let beta = tenant(&data, "beta", &["--rate-limit", "1/3"]);
    admin(
        &data,
        &["report-suite", "create", "acme.prod", "--company", "acme"],
    );
    let server = BdiaServe::start(
        &data,
        &[
            ("BDIA_REPORT_RATE_PER_SECOND", "1"),
            ("BDIA_REPORT_BURST", "3"),
        ],
    );
    let port = server.port();
    let file = std::fs::read(generated(dir.path(), "a.csv.gz", 20, "acme.prod", 1)).unwrap();
    let beta_file = std::fs::read(generated(dir.path(), "b.csv.gz", 20, "beta.prod", 1)).unwrap();
    let statuses: Vec<u16> = (0..6)
        .map(|_| multipart_post(port, "/aa/collect/v1/events/validate", &acme, "g", &file).0)
        .collect();
    assert_eq!(&statuses[..3], [200, 200, 200], "{statuses:?}");
    assert!(statuses[3..].contains(&429), "{statuses:?}");
    // Another company's bucket is its own; validating spent no upload.
    assert_eq!(
        multipart_post(
            port,
            "/aa/collect/v1/events/validate",
            &beta,
            "g",
            &beta_file
        )
        .0,
        200
    );
    assert_eq!(
        multipart_post(port, "/aa/collect/v1/events", &acme, "g", &file).0,
        200
    );

    let report = "/api/v1/report-suites/acme.prod/report?metrics=hits&dimension=day&from=2023-01-01&to=2023-01-02";
    let statuses: Vec<u16> = (0..6)
        .map(|_| get(port, report, &acme).unwrap().0)
        .collect();
    assert_eq!(&statuses[..3], [200, 200, 200], "{statuses:?}");
    assert!(statuses[3..].contains(&429), "{statuses:?}");
}

/// Regression: with one company throttled to 1 row/s, another company's
/// one-row file waited over 30 s: the throttled files held both workers
/// while they waited. A waiting file now gives its worker back, and the
/// scheduler prefers companies that are not behind their throttle.
#[test]
fn a_throttled_company_does_not_hold_the_workers() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    std::fs::create_dir_all(&data).unwrap();
    let slow = tenant(
        &data,
        "slow",
        &["--rate-limit", "off", "--rows-per-second", "1"],
    );
    let fast = tenant(&data, "fast", &["--rate-limit", "off"]);
    let server = BdiaServe::start(&data, &[("BDIA_PROCESSING_WORKERS", "2")]);
    let port = server.port();
    let big = std::fs::read(generated(dir.path(), "big.csv.gz", 2_000, "slow.rs", 1)).unwrap();
    for g in ["g1", "g2", "g3"] {
        let (status, body) = multipart_post(port, "/aa/collect/v1/events", &slow, g, &big);
        assert_eq!(status, 200, "{body}");
    }
    // Let the slow company's files start and fall behind their throttle.
    std::thread::sleep(Duration::from_secs(2));
    let one = std::fs::read(generated(dir.path(), "one.csv.gz", 1, "fast.rs", 2)).unwrap();
    let (status, body) = multipart_post(port, "/aa/collect/v1/events", &fast, "g1", &one);
    assert_eq!(status, 200, "{body}");
    let rec: serde_json::Value = serde_json::from_str(&body).unwrap();
    let path = format!("/aa/collect/v1/events/{}", rec["file_id"].as_str().unwrap());
    let started = Instant::now();
    loop {
        let (_, body) = get(port, &path, &fast).unwrap();
        let rec: serde_json::Value = serde_json::from_str(&body).unwrap();
        if rec["status_code"] == "COMPLETE" {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "the other company's one-row file waited {:?}: {rec}",
            started.elapsed()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    // The throttled company's files are still in flight, not failed.
    let (_, list) = get(port, "/aa/collect/v1/events", &slow).unwrap();
    assert!(!list.contains("\"ERROR\""), "{list}");
}
