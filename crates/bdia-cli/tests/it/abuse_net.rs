//! Connection-level abuse against a real `bdia serve`: slow headers, idle
//! and keep-alive connections past the connection limit, trickled uploads;
//! and HTTPS (rustls) with a certificate made here, for the server and the
//! client commands. The abuse clients are raw `TcpStream`s.

use std::io::{ErrorKind, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use crate::common::{healthy, BdiaServe};

/// Generous on a loaded 2-core machine: these tests assert "bounded".
const MARGIN: Duration = Duration::from_secs(10);

/// A connection the server has not closed yet; `Some(bytes)` once it did
/// (whatever it answered before closing). Never blocks.
fn closed(s: &mut TcpStream, got: &mut Vec<u8>) -> bool {
    s.set_nonblocking(true).unwrap();
    let mut buf = [0u8; 4096];
    let done = loop {
        match s.read(&mut buf) {
            Ok(0) => break true,
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == ErrorKind::WouldBlock => break false,
            Err(_) => break true,
        }
    };
    s.set_nonblocking(false).unwrap();
    done
}

/// Open descriptors of `pid`.
fn fd_count(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap()
        .count()
}

fn connect(port: u16) -> TcpStream {
    TcpStream::connect(("127.0.0.1", port)).unwrap()
}

/// Regression: connections that trickled their request headers were never
/// timed out (200 of them stayed open past 60 s and, under a 256-descriptor
/// limit, took `/healthz` down). Now every one is closed within the
/// header-read timeout, and the server answers meanwhile.
#[test]
fn slow_headers_are_cut_at_the_header_read_timeout() {
    let dir = tempfile::tempdir().unwrap();
    let server = BdiaServe::start(
        &dir.path().join("data"),
        &[("BDIA_HEADER_READ_TIMEOUT_SECS", "3")],
    );
    let port = server.port();
    let header = b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Slow: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
    let start = Instant::now();
    let mut conns: Vec<Option<TcpStream>> = (0..300).map(|_| Some(connect(port))).collect();
    let mut sent = 0;
    let mut healthy_while_open = false;
    let mut open_after_first_round = 0;
    while conns.iter().any(Option::is_some) && start.elapsed() < Duration::from_secs(3) + MARGIN {
        // One more header byte on every open connection.
        for slot in conns.iter_mut() {
            let Some(s) = slot.as_mut() else { continue };
            let mut got = Vec::new();
            if s.write_all(&header[sent % header.len()..][..1]).is_err() || closed(s, &mut got) {
                *slot = None;
            }
        }
        sent += 1;
        if sent == 1 {
            open_after_first_round = conns.iter().flatten().count();
            healthy_while_open = healthy(port);
        }
        std::thread::sleep(Duration::from_secs(1));
    }
    let open = conns.iter().flatten().count();
    let elapsed = start.elapsed();
    eprintln!("slow headers: {open} open after {elapsed:?} and {sent} bytes each");
    assert_eq!(open_after_first_round, 300, "closed before the timeout");
    assert!(
        healthy_while_open,
        "/healthz did not answer next to 300 slow clients"
    );
    assert_eq!(
        open, 0,
        "{open} slow-header connections still open after {elapsed:?}"
    );
    assert!(
        sent >= 2,
        "cut after {sent} bytes: before any timeout could run"
    );
    assert!(healthy(port));
}

/// With `max_connections` at 50, 100 idle connections: at most 50 are
/// served at once (descriptors stay bounded), the others wait and get
/// their turn, every one is cut by the header-read timeout, a keep-alive
/// connection idle after its request is cut too, and the server is
/// healthy afterwards.
#[test]
fn idle_connections_past_the_limit_keep_descriptors_bounded() {
    let dir = tempfile::tempdir().unwrap();
    let server = BdiaServe::start(
        &dir.path().join("data"),
        &[
            ("BDIA_HEADER_READ_TIMEOUT_SECS", "3"),
            ("BDIA_MAX_CONNECTIONS", "50"),
        ],
    );
    let port = server.port();
    let pid = server.pid();
    let base_fds = fd_count(pid);

    // A keep-alive connection, idle after one request.
    let mut keep_alive = connect(port);
    keep_alive
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    std::thread::sleep(Duration::from_millis(200));

    let start = Instant::now();
    let mut conns: Vec<Option<TcpStream>> = (0..100).map(|_| Some(connect(port))).collect();
    let mut peak_fds = 0;
    let mut ka_answer = Vec::new();
    let mut ka_closed = None;
    while (conns.iter().any(Option::is_some) || ka_closed.is_none())
        && start.elapsed() < Duration::from_secs(6) + MARGIN
    {
        peak_fds = peak_fds.max(fd_count(pid));
        for slot in conns.iter_mut() {
            let mut got = Vec::new();
            if slot.as_mut().is_some_and(|s| closed(s, &mut got)) {
                *slot = None;
            }
        }
        if ka_closed.is_none() && closed(&mut keep_alive, &mut ka_answer) {
            ka_closed = Some(start.elapsed());
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let open = conns.iter().flatten().count();
    eprintln!(
        "descriptors: {base_fds} at rest, peak {peak_fds}; all closed after {:?}; \
         keep-alive closed after {ka_closed:?}",
        start.elapsed()
    );
    assert_eq!(
        open,
        0,
        "{open} idle connections still open after {:?}",
        start.elapsed()
    );
    assert!(
        String::from_utf8_lossy(&ka_answer).starts_with("HTTP/1.1 200"),
        "{}",
        String::from_utf8_lossy(&ka_answer)
    );
    let ka_closed = ka_closed.expect("the idle keep-alive connection was not closed");
    assert!(ka_closed < Duration::from_secs(3) + MARGIN, "{ka_closed:?}");
    assert!(
        peak_fds <= base_fds + 50 + 8,
        "descriptors: {base_fds} at rest, {peak_fds} with 100 idle connections (limit 50)"
    );
    assert!(healthy(port), "not healthy after the idle connections");
    std::thread::sleep(Duration::from_millis(500));
    let after = fd_count(pid);
    assert!(
        after <= base_fds + 8,
        "descriptors: {base_fds} before, {after} after"
    );
}

/// An access token for the server's first-start client, over raw HTTP.
fn token(server: &BdiaServe) -> (String, String) {
    let creds = server.credentials();
    let id = creds["client_id"].as_str().unwrap().to_string();
    let secret = creds["client_secret"].as_str().unwrap();
    let body = format!("grant_type=client_credentials&client_id={id}&client_secret={secret}");
    let mut s = connect(server.port());
    write!(
        s,
        "POST /ims/token/v3 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\
         Content-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut answer = String::new();
    s.read_to_string(&mut answer).unwrap();
    let json = &answer[answer.find("\r\n\r\n").unwrap() + 4..];
    let v: serde_json::Value = serde_json::from_str(json).unwrap();
    (v["access_token"].as_str().unwrap().to_string(), id)
}

/// A gzip batch file of a few rows.
fn batch_file(dir: &Path) -> PathBuf {
    let p = dir.join("batch.csv.gz");
    let out = Command::new(env!("CARGO_BIN_EXE_bdia"))
        .args(["generate", "--rows", "20", "-o"])
        .arg(&p)
        .output()
        .unwrap();
    assert!(out.status.success());
    p
}

/// Uploads `file` one byte every `every` after a quick multipart preamble;
/// returns the answer (status line and body) and when it came.
fn trickle_upload(server: &BdiaServe, file: &Path, every: Duration) -> (String, Duration) {
    let (token, id) = token(server);
    let data = std::fs::read(file).unwrap();
    let preamble = "--XyZ\r\nContent-Disposition: form-data; name=\"file\"; \
                    filename=\"batch.csv.gz\"\r\nContent-Type: application/gzip\r\n\r\n";
    let epilogue = "\r\n--XyZ--\r\n";
    let mut s = connect(server.port());
    write!(
        s,
        "POST /aa/collect/v1/events HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {token}\r\n\
         x-api-key: {id}\r\nx-adobe-vgid: slow\r\n\
         Content-Type: multipart/form-data; boundary=XyZ\r\nContent-Length: {}\r\n\r\n{preamble}",
        preamble.len() + data.len() + epilogue.len()
    )
    .unwrap();
    let start = Instant::now();
    let mut got = Vec::new();
    for b in &data {
        if s.write_all(std::slice::from_ref(b)).is_err() || closed(&mut s, &mut got) {
            break;
        }
        if !got.is_empty() {
            break;
        }
        std::thread::sleep(every);
        assert!(start.elapsed() < Duration::from_secs(120), "never cut off");
    }
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let _ = s.read_to_end(&mut got);
    let text = String::from_utf8_lossy(&got).to_string();
    let status = text.lines().next().unwrap_or("").to_string();
    let body = text.split("\r\n\r\n").nth(1).unwrap_or("").to_string();
    (format!("{status} {body}"), start.elapsed())
}

/// Nothing stored: no record, no staged or accepted file.
fn assert_nothing_stored(server: &BdiaServe, data: &Path) {
    for sub in ["blobs/staging", "blobs/files"] {
        let n = std::fs::read_dir(data.join(sub)).map_or(0, |d| d.count());
        assert_eq!(n, 0, "{sub} holds {n} entries");
    }
    let (token, id) = token(server);
    let mut s = connect(server.port());
    write!(
        s,
        "GET /aa/collect/v1/events HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\
         Authorization: Bearer {token}\r\nx-api-key: {id}\r\n\r\n"
    )
    .unwrap();
    let mut answer = String::new();
    s.read_to_string(&mut answer).unwrap();
    let json = &answer[answer.find("\r\n\r\n").unwrap() + 4..];
    let list: serde_json::Value = serde_json::from_str(json).unwrap();
    assert_eq!(list["files"].as_array().map(Vec::len), Some(0), "{answer}");
}

/// Regression: an upload trickling one byte every two seconds was never
/// cut off (each byte reset the idle timeout). The deadline now cuts it,
/// with a JSON 408 and nothing stored; so does the minimum average rate,
/// which holds for every request body.
#[test]
fn trickled_uploads_are_cut_off_with_408_and_nothing_stored() {
    let dir = tempfile::tempdir().unwrap();
    let file = batch_file(dir.path());
    let every = Duration::from_secs(2);

    // The deadline (the rate check's grace is longer).
    let data = dir.path().join("deadline");
    let server = BdiaServe::start(&data, &[("BDIA_UPLOAD_DEADLINE_SECS", "6")]);
    let (answer, after) = trickle_upload(&server, &file, every);
    eprintln!("deadline: {answer} after {after:?}");
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(answer.contains("not received within 6 s"), "{answer}");
    assert!(
        after >= Duration::from_secs(5) && after < Duration::from_secs(6) + MARGIN,
        "{after:?}"
    );
    assert!(healthy(server.port()));
    assert_nothing_stored(&server, &data);
    drop(server);

    // The minimum rate: 100 bytes/s after a 2 s grace.
    let data = dir.path().join("rate");
    let server = BdiaServe::start(
        &data,
        &[
            ("BDIA_UPLOAD_MIN_BYTES_PER_SEC", "100"),
            ("BDIA_UPLOAD_RATE_GRACE_SECS", "2"),
        ],
    );
    let (answer, after) = trickle_upload(&server, &file, every);
    eprintln!("rate: {answer} after {after:?}");
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(answer.contains("under 100 bytes/s"), "{answer}");
    assert!(after < Duration::from_secs(2) + MARGIN, "{after:?}");
    assert_nothing_stored(&server, &data);

    // Any body, not only uploads: a token form trickled without a login.
    let mut s = connect(server.port());
    s.write_all(
        b"POST /ims/token/v3 HTTP/1.1\r\nHost: x\r\n\
          Content-Type: application/x-www-form-urlencoded\r\nContent-Length: 1000\r\n\r\n",
    )
    .unwrap();
    let start = Instant::now();
    let mut got = Vec::new();
    while !closed(&mut s, &mut got) && got.is_empty() {
        assert!(
            start.elapsed() < Duration::from_secs(2) + MARGIN,
            "never cut off"
        );
        if s.write_all(b"a").is_err() {
            break;
        }
        std::thread::sleep(Duration::from_secs(1));
    }
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let _ = s.read_to_end(&mut got);
    let answer = String::from_utf8_lossy(&got);
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(answer.contains("under 100 bytes/s"), "{answer}");
}

/// A CA and a server certificate for 127.0.0.1 signed by it, as PEM files:
/// (ca.pem, cert.pem, key.pem).
fn certificates(dir: &Path) -> (PathBuf, PathBuf, PathBuf) {
    use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair};
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(DnType::CommonName, "bdia test CA");
    let ca = CertifiedIssuer::self_signed(ca_params, KeyPair::generate().unwrap()).unwrap();
    let key = KeyPair::generate().unwrap();
    let cert = CertificateParams::new(vec!["127.0.0.1".to_string(), "localhost".to_string()])
        .unwrap()
        .signed_by(&key, &ca)
        .unwrap();
    let paths = (
        dir.join("ca.pem"),
        dir.join("cert.pem"),
        dir.join("key.pem"),
    );
    std::fs::write(&paths.0, ca.pem()).unwrap();
    std::fs::write(&paths.1, cert.pem()).unwrap();
    std::fs::write(&paths.2, key.serialize_pem()).unwrap();
    paths
}

/// Waits until the port accepts connections (the server is bound).
fn wait_listening(port: u16) {
    let start = Instant::now();
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "server did not start"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// `bdia ARGS` as the first-start client of `server`.
fn bdia(server: &BdiaServe, args: &[&str]) -> Output {
    bdia_as(&server.credentials(), args)
}

/// `bdia ARGS` as the client of `creds` (a `credentials.json`).
fn bdia_as(creds: &serde_json::Value, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_bdia"))
        .args(args)
        .env("BDIA_CLIENT_ID", creds["client_id"].as_str().unwrap())
        .env(
            "BDIA_CLIENT_SECRET",
            creds["client_secret"].as_str().unwrap(),
        )
        .env("BDIA_CLIENT_CONFIG", "/nonexistent")
        .env_remove("BDIA_CA_CERT")
        .output()
        .unwrap()
}

/// HTTPS end to end: `bdia serve` with a certificate made here; `bdia
/// upload` and `bdia files` over https trusting its CA with `--ca-cert`;
/// without it a clear certificate error; plain HTTP to the port a clean
/// JSON 400; a client that never finishes its handshake is dropped at the
/// header-read timeout.
#[test]
fn https_serves_and_the_client_commands_trust_only_the_given_ca() {
    let dir = tempfile::tempdir().unwrap();
    let (ca, cert, key) = certificates(dir.path());
    let file = batch_file(dir.path());
    let server = BdiaServe::spawn(
        &dir.path().join("data"),
        &[
            ("BDIA_TLS_CERT", cert.to_str().unwrap()),
            ("BDIA_TLS_KEY", key.to_str().unwrap()),
            ("BDIA_HEADER_READ_TIMEOUT_SECS", "3"),
        ],
    );
    let port = server.port();
    wait_listening(port);
    let url = format!("https://127.0.0.1:{port}");
    let ca = ca.to_str().unwrap();
    let file = file.to_str().unwrap();

    let out = bdia(
        &server,
        &[
            "upload",
            file,
            "--vgid",
            "g1",
            "--json",
            "--url",
            &url,
            "--ca-cert",
            ca,
        ],
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    let out = bdia(
        &server,
        &["files", "--json", "--url", &url, "--ca-cert", ca],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let listed = String::from_utf8_lossy(&out.stdout);
    assert_eq!(listed.lines().count(), 1, "{listed}");

    // Without the CA: refused, saying why, and not retried for minutes.
    let start = Instant::now();
    let out = bdia(&server, &["files", "--json", "--url", &url]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        stderr.contains("certificate") && stderr.contains("--ca-cert"),
        "{stderr}"
    );
    let out = bdia(
        &server,
        &["upload", file, "--vgid", "g2", "--json", "--url", &url],
    );
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("certificate")
            || String::from_utf8_lossy(&out.stderr).contains("certificate"),
        "{} {}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        start.elapsed() < Duration::from_secs(30),
        "{:?}",
        start.elapsed()
    );

    // Plain HTTP to the HTTPS port: a JSON 400 saying so.
    let mut s = connect(port);
    s.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut answer = String::new();
    let _ = s.read_to_string(&mut answer);
    assert!(answer.starts_with("HTTP/1.1 400"), "{answer}");
    assert!(answer.contains("https://"), "{answer}");
    let http_url = format!("http://127.0.0.1:{port}");
    let out = bdia(&server, &["files", "--json", "--url", &http_url]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && stderr.contains("HTTPS"),
        "{stderr}"
    );

    // Silent clients and a stalled handshake are dropped at the timeout.
    let start = Instant::now();
    let mut silent = connect(port);
    let mut stalled = connect(port);
    stalled.write_all(&[0x16, 0x03, 0x01]).unwrap();
    let (mut a, mut b) = (Vec::new(), Vec::new());
    let mut done = (false, false);
    while !(done.0 && done.1) && start.elapsed() < Duration::from_secs(3) + MARGIN {
        done.0 = done.0 || closed(&mut silent, &mut a);
        done.1 = done.1 || closed(&mut stalled, &mut b);
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(done.0 && done.1, "handshakes not timed out: {done:?}");
    assert!(
        start.elapsed() >= Duration::from_secs(2),
        "{:?}",
        start.elapsed()
    );
}

/// `bdia serve --tls-cert --tls-key` (flags, not the environment) prints
/// and serves an https:// URL.
#[test]
fn serve_flags_turn_on_https() {
    let dir = tempfile::tempdir().unwrap();
    let (ca, cert, key) = certificates(dir.path());
    let port = crate::common::free_port();
    let mut child = Command::new(env!("CARGO_BIN_EXE_bdia"))
        .args([
            "serve",
            "--listen",
            &format!("127.0.0.1:{port}"),
            "--data-dir",
        ])
        .arg(dir.path().join("data"))
        .arg("--tls-cert")
        .arg(&cert)
        .arg("--tls-key")
        .arg(&key)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    wait_listening(port);
    let creds: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.path().join("data/credentials.json")).unwrap())
            .unwrap();
    let url = format!("https://localhost:{port}");
    let out = bdia_as(
        &creds,
        &[
            "files",
            "--json",
            "--url",
            &url,
            "--ca-cert",
            ca.to_str().unwrap(),
        ],
    );
    child.kill().unwrap();
    let output = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let printed = String::from_utf8_lossy(&output.stdout);
    assert!(
        printed.contains(&format!("listening on https://127.0.0.1:{port}")),
        "{printed}"
    );
}

/// Under a low descriptor limit the connection limit follows it, and a
/// `max_connections` that does not fit is refused at start, naming the rule.
#[test]
fn max_connections_must_fit_the_descriptor_limit() {
    let dir = tempfile::tempdir().unwrap();
    let run = |env: &[(&str, &str)]| {
        let mut cmd = Command::new("sh");
        cmd.arg("-c")
            .arg("ulimit -n 256 && exec \"$0\" serve --listen 127.0.0.1:0 --data-dir \"$1\"")
            .arg(env!("CARGO_BIN_EXE_bdia"))
            .arg(dir.path().join("data"))
            .env("RUST_LOG", "info")
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        for (k, v) in env {
            cmd.env(k, v);
        }
        cmd
    };
    let out = run(&[("BDIA_MAX_CONNECTIONS", "500")]).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(
        stderr.contains("max_connections = 500")
            && stderr.contains("RLIMIT_NOFILE = 256")
            && stderr.contains("at most 64"),
        "{stderr}"
    );
    // Unset: derived (64 under 256 descriptors), and the server starts.
    let mut child = run(&[]).spawn().unwrap();
    let mut err = child.stderr.take().unwrap();
    let start = Instant::now();
    let mut log = Vec::new();
    let mut buf = [0u8; 4096];
    while !String::from_utf8_lossy(&log).contains("serving") {
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "{}",
            String::from_utf8_lossy(&log)
        );
        match err.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => log.extend_from_slice(&buf[..n]),
        }
    }
    child.kill().unwrap();
    let _ = child.wait();
    let log = String::from_utf8_lossy(&log);
    assert!(
        log.contains("max_connections=64") && log.contains("serving"),
        "{log}"
    );
}

/// Out of descriptors (the limit lowered under the running server with
/// `prlimit`), `accept` fails: the loop logs it, pauses, and goes on
/// serving once the idle connections are cut.
#[test]
fn accept_errors_do_not_stop_the_server() {
    let dir = tempfile::tempdir().unwrap();
    let server = BdiaServe::start_logged(
        &dir.path().join("data"),
        &[("BDIA_HEADER_READ_TIMEOUT_SECS", "3")],
        dir.path(),
    );
    let port = server.port();
    let pid = server.pid();
    let limit = fd_count(pid) + 8;
    let status = Command::new("prlimit")
        .arg(format!("--pid={pid}"))
        .arg(format!("--nofile={limit}:{limit}"))
        .status()
        .unwrap();
    assert!(status.success());
    let start = Instant::now();
    let mut conns: Vec<Option<TcpStream>> = (0..30).map(|_| Some(connect(port))).collect();
    while conns.iter().any(Option::is_some) && start.elapsed() < Duration::from_secs(12) + MARGIN {
        for slot in conns.iter_mut() {
            let mut got = Vec::new();
            if slot.as_mut().is_some_and(|s| closed(s, &mut got)) {
                *slot = None;
            }
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let open = conns.iter().flatten().count();
    assert_eq!(open, 0, "{open} connections never served and cut");
    assert!(
        healthy(port),
        "not serving after running out of descriptors"
    );
    let log = std::fs::read_to_string(dir.path().join("stderr.txt")).unwrap();
    assert!(log.contains("accept failed"), "{log}");
}
