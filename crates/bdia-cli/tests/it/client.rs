//! The client tools against a real `bdia serve` process: prepare, upload
//! (parallel groups, resume, idempotent re-runs, rejected files, 429 storms),
//! status and files.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use crate::common::{prepared_exports, BdiaServe};

/// A server in a temp dir and its first-start client.
struct Served {
    server: BdiaServe,
    url: String,
    client_id: String,
    client_secret: String,
    _dir: tempfile::TempDir,
}

fn serve(env: &[(&str, &str)]) -> Served {
    let dir = tempfile::tempdir().unwrap();
    let server = BdiaServe::start(&dir.path().join("data"), env);
    let creds = server.credentials();
    Served {
        url: server.url(),
        server,
        client_id: creds["client_id"].as_str().unwrap().to_string(),
        client_secret: creds["client_secret"].as_str().unwrap().to_string(),
        _dir: dir,
    }
}

impl Served {
    fn bdia(&self, args: &[&str]) -> Output {
        Command::new(env!("CARGO_BIN_EXE_bdia"))
            .args(args)
            .env("BDIA_URL", &self.url)
            .env("BDIA_CLIENT_ID", &self.client_id)
            .env("BDIA_CLIENT_SECRET", &self.client_secret)
            .env("BDIA_CLIENT_CONFIG", "/nonexistent")
            .output()
            .unwrap()
    }

    /// Every file record on the server.
    fn files(&self) -> Vec<serde_json::Value> {
        let out = self.bdia(&["files", "--json"]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout)
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    }
}

fn json_lines(out: &Output) -> Vec<serde_json::Value> {
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// Three unsorted exports (1,200 rows, 5% invalid) prepared into `groups`.
fn prepared(dir: &Path, groups: &str, max_rows: &str) -> PathBuf {
    let (out_dir, summary) = prepared_exports(dir, 400, 60, 0.05, groups, max_rows);
    assert_eq!(summary["input_rows"], 1200);
    assert_eq!(
        summary["written_rows"].as_u64().unwrap() + summary["rejected_rows"].as_u64().unwrap(),
        1200
    );
    out_dir
}

/// Waits until every file of the prepared directory is COMPLETE, then checks
/// that the lake holds each written row exactly once (one suite per row).
fn assert_lake_holds_exactly(server: &Served, dir: &Path, suite: &str) {
    let out = server.bdia(&["upload", dir.to_str().unwrap(), "--wait", "--json"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    // Every row, robots' too.
    let out = server.bdia(&[
        "report",
        "--include-bots",
        "--rsid",
        suite,
        "--metrics",
        "hits",
        "--dimension",
        "day",
        "--from",
        "2023-11-01",
        "--to",
        "2023-11-30",
        "--format",
        "json",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let written: u64 = manifest_files(dir)
        .iter()
        .map(|f| f["rows"].as_u64().unwrap())
        .sum();
    let on_server: u64 = server
        .files()
        .iter()
        .map(|f| f["rows"].as_u64().unwrap() - f["invalid_rows"].as_u64().unwrap())
        .sum();
    assert_eq!(on_server, written, "file records");
    assert_eq!(
        report["totals"]["hits"].as_u64().unwrap(),
        written,
        "lake row count"
    );
}

fn manifest_files(dir: &Path) -> Vec<serde_json::Value> {
    let m: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.join("manifest.json")).unwrap()).unwrap();
    m["groups"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|g| g["files"].as_array().unwrap().clone())
        .collect()
}

#[test]
fn prepare_then_upload_in_parallel_exactly_once_and_resume() {
    let server = serve(&[]);
    let tmp = tempfile::tempdir().unwrap();
    let dir = prepared(tmp.path(), "3", "150");
    let planned = manifest_files(&dir);
    assert!(planned.len() >= 6, "several files per group");

    let out = server.bdia(&["upload", dir.to_str().unwrap(), "--parallel", "4", "--json"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let events = json_lines(&out);
    let uploaded: Vec<&serde_json::Value> =
        events.iter().filter(|e| e["event"] == "uploaded").collect();
    assert_eq!(uploaded.len(), planned.len());
    // Within a group, files were sent in manifest order.
    for g in ["group-0", "group-1", "group-2"] {
        let order: Vec<&str> = uploaded
            .iter()
            .filter(|e| e["group"] == g)
            .map(|e| e["path"].as_str().unwrap())
            .collect();
        let mut sorted = order.clone();
        sorted.sort();
        assert_eq!(order, sorted, "{g} in order");
    }
    let on_server = server.files();
    assert_eq!(on_server.len(), planned.len());
    assert!(on_server.iter().all(|f| f["status_code"] != "REJECTED"));
    let rows: u64 = on_server.iter().map(|f| f["rows"].as_u64().unwrap()).sum();
    assert_eq!(
        rows,
        planned
            .iter()
            .map(|f| f["rows"].as_u64().unwrap())
            .sum::<u64>()
    );
    // Progress was saved: every manifest entry has its file id.
    let after = manifest_files(&dir);
    assert!(after.iter().all(|f| f["upload"]["file_id"].is_string()));

    // A re-run sends nothing.
    let out = server.bdia(&["upload", dir.to_str().unwrap(), "--json"]);
    assert!(out.status.success());
    let again = json_lines(&out);
    assert_eq!(
        again
            .iter()
            .filter(|e| e["event"] == "already_done")
            .count(),
        planned.len()
    );
    assert_eq!(server.files().len(), planned.len());

    // Progress lost (a fresh copy of the manifest): the idempotency keys
    // make the server answer with the original records; nothing is ingested twice.
    let mut m: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.join("manifest.json")).unwrap()).unwrap();
    for g in m["groups"].as_array_mut().unwrap() {
        for f in g["files"].as_array_mut().unwrap() {
            f.as_object_mut().unwrap().remove("upload");
        }
    }
    std::fs::write(dir.join("manifest.json"), serde_json::to_vec(&m).unwrap()).unwrap();
    let out = server.bdia(&["upload", dir.to_str().unwrap(), "--json"]);
    assert!(out.status.success());
    let ids_again: Vec<String> = manifest_files(&dir)
        .iter()
        .map(|f| f["upload"]["file_id"].as_str().unwrap().to_string())
        .collect();
    let ids_first: Vec<String> = after
        .iter()
        .map(|f| f["upload"]["file_id"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(ids_again, ids_first);
    assert_eq!(server.files().len(), planned.len());

    // status by id, by key, by group.
    let id = &ids_first[0];
    let out = server.bdia(&["status", id, "--json"]);
    assert!(out.status.success());
    let rec: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(rec["file_id"], id.as_str());
    let key = rec["idempotency_key"].as_str().unwrap().to_string();
    assert!(key.starts_with("bdia-"));
    // Tables print times as RFC 3339 UTC; --json keeps unix seconds.
    let received = bdia_wire::time::rfc3339_utc(rec["received_date"].as_i64().unwrap());
    assert!(
        received.ends_with('Z') && received.contains('T'),
        "{received}"
    );
    let out = server.bdia(&["status", id]);
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        text.lines()
            .any(|l| l == format!("  received:      {received}")),
        "{text}"
    );
    let out = server.bdia(&["files"]);
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        text.lines()
            .any(|l| l.starts_with(id.as_str()) && l.ends_with(&format!("  {received}"))),
        "{text}"
    );
    let out = server.bdia(&["status", "--key", &key, "--json"]);
    let by_key: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(by_key["file_id"], id.as_str());
    let out = server.bdia(&["status", "--vgid", "group-1", "--json"]);
    assert!(json_lines(&out)
        .iter()
        .all(|f| f["visitor_group_id"] == "group-1"));
    let out = server.bdia(&["status", "no-such-file"]);
    assert_eq!(out.status.code(), Some(1));
}

#[test]
fn a_rejected_file_stops_its_group_only() {
    let server = serve(&[]);
    let tmp = tempfile::tempdir().unwrap();
    let good = tmp.path().join("good.csv.gz");
    let out = Command::new(env!("CARGO_BIN_EXE_bdia"))
        .args(["generate", "--rows", "50", "-o"])
        .arg(&good)
        .output()
        .unwrap();
    assert!(out.status.success());
    let bad = tmp.path().join("bad.csv.gz");
    std::fs::write(&bad, "timestamp,visitorID\n1,v\n").unwrap(); // not gzip
    let out = server.bdia(&[
        "upload",
        "--vgid",
        "loose",
        "--json",
        bad.to_str().unwrap(),
        good.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(1));
    let events = json_lines(&out);
    let done = events.iter().find(|e| e["event"] == "group_done").unwrap();
    assert!(
        done["stopped"].as_str().unwrap().contains("REJECTED"),
        "{done}"
    );
    let files = server.files();
    assert_eq!(
        files.len(),
        1,
        "the good file after the rejected one was not sent"
    );
    assert_eq!(files[0]["status_code"], "REJECTED");
}

#[test]
fn a_429_storm_is_ridden_out_without_duplicates() {
    let server = serve(&[
        ("BDIA_RATE_LIMIT_ENABLED", "true"),
        ("BDIA_RATE_LIMIT_PER_SECOND", "2"),
        ("BDIA_RATE_LIMIT_BURST", "1"),
    ]);
    let tmp = tempfile::tempdir().unwrap();
    let dir = prepared(tmp.path(), "4", "200");
    let planned = manifest_files(&dir);
    let out = server.bdia(&[
        "upload",
        dir.to_str().unwrap(),
        "--parallel",
        "4",
        "--json",
        "--max-attempts",
        "50",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    let events = json_lines(&out);
    let retries = events
        .iter()
        .filter(|e| e["event"] == "retrying" && e["error"].as_str().unwrap().contains("429"))
        .count();
    assert!(retries > 0, "the limit was hit");
    assert_eq!(server.files().len(), planned.len());
    assert_lake_holds_exactly(&server, &dir, "acme.prod");
}

/// A TCP proxy in front of the server that swallows the answers to some
/// uploads: the server accepts the file, the client never hears back.
struct DroppingProxy {
    port: u16,
    dropped: std::sync::Arc<std::sync::atomic::AtomicUsize>,
}

impl DroppingProxy {
    /// Drops the answer of every `every`-th upload (1st, every+1-th, ...).
    fn start(upstream: u16, every: usize) -> DroppingProxy {
        use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
        use std::sync::Arc;
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let uploads = Arc::new(AtomicUsize::new(0));
        let dropped = Arc::new(AtomicUsize::new(0));
        let dropped2 = dropped.clone();
        std::thread::spawn(move || {
            for client in listener.incoming() {
                let Ok(client) = client else { break };
                let Ok(server) = TcpStream::connect(("127.0.0.1", upstream)) else {
                    continue;
                };
                let armed = Arc::new(AtomicBool::new(false));
                let (mut c_read, mut s_write) =
                    (client.try_clone().unwrap(), server.try_clone().unwrap());
                let (uploads, armed_up) = (uploads.clone(), armed.clone());
                std::thread::spawn(move || {
                    let mut buf = vec![0u8; 64 * 1024];
                    loop {
                        let n = match c_read.read(&mut buf) {
                            Ok(0) | Err(_) => break,
                            Ok(n) => n,
                        };
                        let chunk = &buf[..n];
                        if chunk.starts_with(b"POST /aa/collect/v1/events HTTP/1.1")
                            && uploads.fetch_add(1, Ordering::SeqCst) % every == 0
                        {
                            armed_up.store(true, Ordering::SeqCst);
                        }
                        if s_write.write_all(chunk).is_err() {
                            break;
                        }
                    }
                    let _ = s_write.shutdown(std::net::Shutdown::Write);
                });
                let (mut s_read, mut c_write) = (server, client);
                let dropped = dropped2.clone();
                std::thread::spawn(move || {
                    let mut buf = vec![0u8; 64 * 1024];
                    loop {
                        let n = match s_read.read(&mut buf) {
                            Ok(0) | Err(_) => break,
                            Ok(n) => n,
                        };
                        if armed.load(Ordering::SeqCst) {
                            // The server answered the upload: cut the line.
                            dropped.fetch_add(1, Ordering::SeqCst);
                            let _ = c_write.shutdown(std::net::Shutdown::Both);
                            let _ = s_read.shutdown(std::net::Shutdown::Both);
                            break;
                        }
                        if c_write.write_all(&buf[..n]).is_err() {
                            break;
                        }
                    }
                    let _ = c_write.shutdown(std::net::Shutdown::Both);
                });
            }
        });
        DroppingProxy { port, dropped }
    }
}

#[test]
fn answers_lost_after_the_server_accepted_are_not_ingested_twice() {
    let server = serve(&[]);
    let upstream = server.server.port();
    let proxy = DroppingProxy::start(upstream, 2);
    let tmp = tempfile::tempdir().unwrap();
    let dir = prepared(tmp.path(), "2", "150");
    let planned = manifest_files(&dir);
    let out = Command::new(env!("CARGO_BIN_EXE_bdia"))
        .args(["upload", dir.to_str().unwrap(), "--json", "--parallel", "2"])
        .args(["--url", &format!("http://127.0.0.1:{}", proxy.port)])
        .args([
            "--client-id",
            &server.client_id,
            "--client-secret",
            &server.client_secret,
        ])
        .env("BDIA_CLIENT_CONFIG", "/nonexistent")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    let lost = proxy.dropped.load(std::sync::atomic::Ordering::SeqCst);
    assert!(lost >= planned.len() / 2, "answers were dropped: {lost}");
    // Every file on the server once; the manifest points at those records.
    let on_server = server.files();
    assert_eq!(on_server.len(), planned.len());
    let mut keys: Vec<&str> = on_server
        .iter()
        .map(|f| f["idempotency_key"].as_str().unwrap())
        .collect();
    keys.sort();
    keys.dedup();
    assert_eq!(keys.len(), planned.len());
    let mut server_ids: Vec<String> = on_server
        .iter()
        .map(|f| f["file_id"].as_str().unwrap().to_string())
        .collect();
    let mut manifest_ids: Vec<String> = manifest_files(&dir)
        .iter()
        .map(|f| f["upload"]["file_id"].as_str().unwrap().to_string())
        .collect();
    server_ids.sort();
    manifest_ids.sort();
    assert_eq!(server_ids, manifest_ids);
    assert_lake_holds_exactly(&server, &dir, "acme.prod");
}

#[test]
fn a_server_killed_and_restarted_mid_run_loses_and_duplicates_nothing() {
    let mut server = serve(&[]);
    let tmp = tempfile::tempdir().unwrap();
    let dir = prepared(tmp.path(), "2", "40");
    let planned = manifest_files(&dir);
    assert!(planned.len() >= 20);
    let upload = Command::new(env!("CARGO_BIN_EXE_bdia"))
        .args([
            "upload",
            dir.to_str().unwrap(),
            "--json",
            "--parallel",
            "2",
            "--max-attempts",
            "40",
        ])
        .env("BDIA_URL", &server.url)
        .env("BDIA_CLIENT_ID", &server.client_id)
        .env("BDIA_CLIENT_SECRET", &server.client_secret)
        .env("BDIA_CLIENT_CONFIG", "/nonexistent")
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    // Kill the server (SIGKILL) once a few files are in, mid-run.
    let start = Instant::now();
    loop {
        let done = std::fs::read(dir.join("manifest.json"))
            .ok()
            .and_then(|b| serde_json::from_slice::<serde_json::Value>(&b).ok())
            .map(|m| m.to_string().matches("\"file_id\"").count())
            .unwrap_or(0);
        if done >= 3 {
            break;
        }
        assert!(start.elapsed() < Duration::from_secs(60));
        std::thread::sleep(Duration::from_millis(5));
    }
    server.server.kill();
    std::thread::sleep(Duration::from_millis(1500));
    // Restart on the same data dir and port.
    server.server.restart();
    let out = upload.wait_with_output().unwrap();
    let events = json_lines(&out);
    assert!(out.status.success(), "{events:?}");
    assert!(
        events.iter().any(|e| e["event"] == "retrying"),
        "the run saw the server go away"
    );
    let on_server = server.files();
    assert_eq!(on_server.len(), planned.len(), "each file exactly once");
    assert!(on_server.iter().all(|f| f["status_code"] != "REJECTED"));
    assert_lake_holds_exactly(&server, &dir, "acme.prod");
}

/// Generates the same three exports twice, once per suite: identical rows
/// but for `reportSuiteID`.
fn exports(dir: &Path, suite: &str) -> Vec<PathBuf> {
    (1..=3)
        .map(|seed| {
            let p = dir.join(format!("{suite}-{seed}.csv"));
            let out = Command::new(env!("CARGO_BIN_EXE_bdia"))
                .args(["generate", "--plain", "--rows", "700", "--visitors", "90"])
                .args([
                    "--mean-gap",
                    "150",
                    "--invalid-rate",
                    "0.02",
                    "--suites",
                    suite,
                ])
                .args(["--seed", &seed.to_string(), "-o"])
                .arg(&p)
                .output()
                .unwrap();
            assert!(out.status.success());
            p
        })
        .collect()
}

fn prepare_into(inputs: &[PathBuf], out: &Path, groups: &str, max_rows: &str) {
    let res = Command::new(env!("CARGO_BIN_EXE_bdia"))
        .arg("prepare")
        .args(inputs)
        .args(["--groups", groups, "--max-rows", max_rows, "--out"])
        .arg(out)
        .output()
        .unwrap();
    assert!(
        res.status.success(),
        "{}",
        String::from_utf8_lossy(&res.stderr)
    );
}

#[test]
fn shuffled_prepared_upload_reports_like_one_sorted_file() {
    let server = serve(&[]);
    let tmp = tempfile::tempdir().unwrap();
    // Suite A: three exports, unsorted together, spread over 4 groups of
    // small files, uploaded 4 groups at a time.
    let a = tmp.path().join("a");
    prepare_into(&exports(tmp.path(), "suite-a"), &a, "4", "150");
    let out = server.bdia(&[
        "upload",
        a.to_str().unwrap(),
        "--parallel",
        "4",
        "--wait",
        "--json",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    let finished = json_lines(&out)
        .into_iter()
        .filter(|e| e["event"] == "finished")
        .collect::<Vec<_>>();
    assert_eq!(finished.len(), manifest_files(&a).len());
    assert!(finished
        .iter()
        .all(|e| e["record"]["status_code"] == "COMPLETE"));
    // Suite B: the same rows in one group, one sorted file.
    let b = tmp.path().join("b");
    prepare_into(&exports(tmp.path(), "suite-b"), &b, "1", "1000000");
    assert_eq!(manifest_files(&b).len(), 1);
    let out = server.bdia(&["upload", b.to_str().unwrap(), "--wait", "--json"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );

    let report = |suite: &str, dimension: &str, metrics: &str| -> serde_json::Value {
        let out = server.bdia(&[
            "report",
            "--include-bots",
            "--rsid",
            suite,
            "--metrics",
            metrics,
            "--dimension",
            dimension,
            "--from",
            "2023-11-01",
            "--to",
            "2023-11-30",
            "--limit",
            "1000",
            "--format",
            "json",
        ]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice(&out.stdout).unwrap()
    };
    for (dimension, metrics) in [
        ("day", "pageviews,visits,visitors,link_hits,bounces,hits"),
        ("page", "pageviews,visitors"),
        ("visitor_id_type", "hits,visits,visitors"),
        ("link_type", "link_hits"),
    ] {
        let ra = report("suite-a", dimension, metrics);
        let rb = report("suite-b", dimension, metrics);
        assert!(
            !ra["rows"].as_array().unwrap().is_empty(),
            "{dimension}: {ra}"
        );
        assert_eq!(ra["rows"], rb["rows"], "{dimension}");
        assert_eq!(ra["totals"], rb["totals"], "{dimension}");
    }
    let totals = report("suite-a", "day", "hits")["totals"]["hits"]
        .as_u64()
        .unwrap();
    let written: u64 = manifest_files(&a)
        .iter()
        .map(|f| f["rows"].as_u64().unwrap())
        .sum();
    assert_eq!(
        totals, written,
        "every written row is one hit in the lake, once"
    );
}

#[test]
fn validate_with_url_answers_like_the_local_check() {
    let server = serve(&[]);
    let tmp = tempfile::tempdir().unwrap();
    let bad = tmp.path().join("bad.csv.gz");
    let out = Command::new(env!("CARGO_BIN_EXE_bdia"))
        .args(["generate", "--rows", "300", "--invalid-rate", "0.1", "-o"])
        .arg(&bad)
        .output()
        .unwrap();
    assert!(out.status.success());
    let not_gzip = tmp.path().join("plain.csv");
    std::fs::write(&not_gzip, "timestamp,visitorID\n1,v\n").unwrap();
    for file in [&bad, &not_gzip] {
        let f = file.to_str().unwrap();
        let local = server.bdia(&["validate", "--json", f]);
        let remote = server.bdia(&["validate", "--json", "--url", &server.url, f]);
        assert_eq!(local.status.code(), Some(1));
        assert_eq!(
            remote.status.code(),
            Some(1),
            "{}",
            String::from_utf8_lossy(&remote.stderr)
        );
        let l: serde_json::Value = serde_json::from_slice(&local.stdout).unwrap();
        let r: serde_json::Value = serde_json::from_slice(&remote.stdout).unwrap();
        for field in [
            "upload_name",
            "size",
            "rows",
            "invalid_rows",
            "status_code",
            "processing_log",
        ] {
            assert_eq!(l[field], r[field], "{field}");
        }
    }
    // Nothing was stored by either.
    assert!(server.files().is_empty());
}
