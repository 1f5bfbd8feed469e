//! Regression: report suite IDs were global names. A company could learn
//! another company's suite names from validate answers ("belongs to another
//! company" was answered differently from "unused") and could take a name
//! first, so that the owner's rows became invalid and the owner could not
//! create it. Suites are per company now: every answer depends only on the
//! caller's own suites, two companies may each have a suite of the same ID,
//! and a report reads only the caller's company's lake partitions. A lake
//! written before companies were part of its layout is moved at start.
//!
//! Against `bdia serve` over real HTTP (curl), companies and clients made
//! with `bdia admin`.

use std::io::Write;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use flate2::write::GzEncoder;
use flate2::Compression;

use crate::common::{admin, admin_output, BdiaServe};

/// Day of the hits below (1_700_000_000 is 2023-11-14T22:13:20Z).
const DAY: &str = "2023-11-14";

/// An API client of a company, with a token printed by `bdia admin token`.
struct Client {
    id: String,
    token: String,
    base: String,
}

/// Creates company `company` (suites created on first use unless
/// `auto_create` is false) with one client.
fn company(dir: &Path, company: &str, auto_create: bool) -> (String, String) {
    admin(dir, &["company", "create", company]);
    if !auto_create {
        admin(
            dir,
            &[
                "company",
                "settings",
                company,
                "--auto-create-report-suites",
                "false",
            ],
        );
    }
    let id = format!("{company}-etl");
    admin(
        dir,
        &["client", "create", "--company", company, "--client-id", &id],
    );
    let out = admin_output(dir, &["token", &id]);
    assert!(out.status.success());
    (
        id,
        String::from_utf8(out.stdout).unwrap().trim().to_string(),
    )
}

impl Client {
    fn new(server: &BdiaServe, (id, token): (String, String)) -> Client {
        Client {
            id,
            token,
            base: server.url(),
        }
    }

    /// `(status, body)` of a request; `args` are extra curl arguments.
    fn call(&self, method: &str, path: &str, args: &[&str]) -> (u16, String) {
        let out = Command::new("curl")
            .args(["-s", "-w", "\n%{http_code}", "-X", method])
            .args(["-H", &format!("Authorization: Bearer {}", self.token)])
            .args(["-H", &format!("x-api-key: {}", self.id)])
            .args(args)
            .arg(format!("{}{path}", self.base))
            .output()
            .unwrap();
        let text = String::from_utf8(out.stdout).unwrap();
        let (body, status) = text.rsplit_once('\n').unwrap();
        (status.parse().unwrap(), body.to_string())
    }

    fn json(&self, method: &str, path: &str, args: &[&str]) -> (u16, serde_json::Value) {
        let (status, body) = self.call(method, path, args);
        let v = serde_json::from_str(&body).unwrap_or_else(|e| panic!("{e}: {body}"));
        (status, v)
    }

    /// Sends a gzip file to the upload or the validate endpoint.
    fn send(&self, endpoint: &str, file: &Path) -> (u16, String) {
        self.call(
            "POST",
            endpoint,
            &[
                "-H",
                "x-adobe-vgid: g1",
                "-F",
                &format!("file=@{};type=application/gzip", file.display()),
            ],
        )
    }

    fn validate(&self, file: &Path) -> (u16, String) {
        self.send("/aa/collect/v1/events/validate", file)
    }

    /// Uploads a file; returns its record.
    fn upload(&self, file: &Path) -> serde_json::Value {
        let (status, body) = self.send("/aa/collect/v1/events", file);
        assert_eq!(status, 200, "{body}");
        serde_json::from_str(&body).unwrap()
    }

    /// Waits until a file is `COMPLETE` (processing runs in the background).
    fn wait_complete(&self, file_id: &str) {
        let start = Instant::now();
        loop {
            let (_, v) = self.json("GET", &format!("/aa/collect/v1/events/{file_id}"), &[]);
            match v["status_code"].as_str() {
                Some("COMPLETE") => return,
                Some("UPLOADED" | "PROCESSING") => {}
                other => panic!("file {file_id} is {other:?}: {v}"),
            }
            assert!(
                start.elapsed() < Duration::from_secs(120),
                "file {file_id} not processed: {v}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Hits of the caller's suite `rsid` on [`DAY`], from the report API.
    fn hits(&self, rsid: &str) -> u64 {
        let (status, v) = self.json(
            "GET",
            &format!("/api/v1/report-suites/{rsid}/report?metrics=hits&from={DAY}&to={DAY}"),
            &[],
        );
        assert_eq!(status, 200, "{v}");
        v["totals"]["hits"].as_u64().unwrap()
    }

    /// The caller's suites, from `GET /api/v1/report-suites`.
    fn suites(&self) -> Vec<String> {
        let (status, v) = self.json("GET", "/api/v1/report-suites", &[]);
        assert_eq!(status, 200, "{v}");
        v["report_suites"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| s["rsid"].as_str().unwrap().to_string())
            .collect()
    }
}

/// Writes a gzip batch file of `rows` valid rows to suite `rsid`.
fn batch(dir: &Path, name: &str, rows: usize, rsid: &str) -> std::path::PathBuf {
    let mut csv = String::from("timestamp,visitorID,reportSuiteID,userAgent,pageName\n");
    for i in 0..rows {
        csv.push_str(&format!(
            "{},v{},{rsid},Mozilla/5.0,Home\n",
            1_700_000_000 + i,
            i % 3
        ));
    }
    let mut e = GzEncoder::new(Vec::new(), Compression::fast());
    e.write_all(csv.as_bytes()).unwrap();
    let path = dir.join(name);
    std::fs::write(&path, e.finish().unwrap()).unwrap();
    path
}

fn suite_ids(list: &serde_json::Value) -> Vec<(String, String)> {
    list.as_array()
        .unwrap()
        .iter()
        .map(|s| {
            (
                s["company_id"].as_str().unwrap().to_string(),
                s["rsid"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

#[test]
fn a_suite_id_another_company_uses_is_neither_revealed_nor_squatted() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    std::fs::create_dir_all(&data).unwrap();
    let (a, b, strict) = (
        company(&data, "acme", true),
        company(&data, "beta", true),
        company(&data, "strict", false),
    );
    let server = BdiaServe::start(&data, &[]);
    let (a, b, strict) = (
        Client::new(&server, a),
        Client::new(&server, b),
        Client::new(&server, strict),
    );
    let f = dir.path();
    // "brand" and "other" have the same length: answers may differ only in
    // the name itself.
    let (brand, other) = (
        batch(f, "brand.gz", 2, "brand"),
        batch(f, "other.gz", 2, "other"),
    );
    let validate_all = || {
        [&a, &strict]
            .map(|c| (c.validate(&brand), c.validate(&other)))
            .to_vec()
    };
    let before = validate_all();

    // Company B takes the name first.
    let b_rec = b.upload(&batch(f, "b.gz", 3, "brand"));
    assert_eq!(b_rec["invalid_rows"], 0, "{b_rec}");

    // Validate answers do not depend on it: the same bytes as before, and
    // the same as for a name nobody uses.
    let after = validate_all();
    assert_eq!(
        after, before,
        "answers changed once another company used the name"
    );
    for ((used, unused), auto) in after.iter().zip([true, false]) {
        assert_eq!(used.0, unused.0);
        assert_eq!(used.1, unused.1.replace("other", "brand"), "used vs unused");
        assert_eq!(used.0, if auto { 200 } else { 400 }, "{}", used.1);
    }
    assert!(after[0].0 .1.contains("File is valid"), "{}", after[0].0 .1);

    // Company A's rows for the name are valid, and its own suite is made.
    let a_rec = a.upload(&batch(f, "a.gz", 5, "brand"));
    assert_eq!(a_rec["invalid_rows"], 0, "{a_rec}");
    assert_eq!(a.suites(), ["brand"]);
    assert_eq!(b.suites(), ["brand"]);
    assert!(strict.suites().is_empty());
    let listed = admin(&data, &["report-suite", "list"]);
    assert_eq!(
        suite_ids(&listed),
        [
            ("acme".to_string(), "brand".to_string()),
            ("beta".to_string(), "brand".to_string())
        ]
    );
    // An operator can create it for a third company too.
    admin(
        &data,
        &["report-suite", "create", "brand", "--company", "strict"],
    );
    let dup = admin_output(
        &data,
        &["report-suite", "create", "brand", "--company", "strict"],
    );
    assert!(
        !dup.status.success(),
        "a company's rsid is unique within it"
    );

    // Each company's report counts only its own hits.
    a.wait_complete(a_rec["file_id"].as_str().unwrap());
    b.wait_complete(b_rec["file_id"].as_str().unwrap());
    assert_eq!(a.hits("brand"), 5);
    assert_eq!(b.hits("brand"), 3);
    assert_eq!(strict.hits("brand"), 0, "its own, empty suite");

    // A suite the caller does not have is answered like one nobody has.
    let (s1, unknown) = a.call(
        "GET",
        &format!("/api/v1/report-suites/zzzzz/report?metrics=hits&from={DAY}&to={DAY}"),
        &[],
    );
    let gamma = company(&data, "gamma", true);
    let gamma = Client::new(&server, gamma);
    let (s2, theirs) = gamma.call(
        "GET",
        &format!("/api/v1/report-suites/brand/report?metrics=hits&from={DAY}&to={DAY}"),
        &[],
    );
    assert_eq!(
        (s1, unknown.as_str()),
        (404, r#"{"error":"Report suite not found"}"#)
    );
    assert_eq!((s2, theirs), (s1, unknown));
    // A path that is not a report-suite ID is refused as such.
    let (s3, bad) = a.call(
        "GET",
        &format!("/api/v1/report-suites/a%40b/report?metrics=hits&from={DAY}&to={DAY}"),
        &[],
    );
    assert_eq!(s3, 400, "{bad}");
    assert!(bad.contains("Malformed report suite id"), "{bad}");
    // So is `bdia report --rsid`, before anything is sent.
    let out = Command::new(env!("CARGO_BIN_EXE_bdia"))
        .args(["report", "--rsid", "a@b", "--from", DAY, "--to", DAY])
        .args(["--url", &server.url()])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("'@' at position 2 is not allowed"), "{err}");
}

/// Turns a lake into the format of the release before Delta tables: each
/// company's `_delta_log` removed, and one commit record per file
/// (`_commits/<file_id>.json`, version 2) listing its parts where they are.
fn to_commit_records(lake: &Path) {
    let mut records: std::collections::BTreeMap<String, (String, Vec<serde_json::Value>)> =
        Default::default();
    for company in std::fs::read_dir(lake.join("hits")).unwrap() {
        let company = company.unwrap().path();
        let name = company.file_name().unwrap().to_string_lossy().into_owned();
        let id = name.strip_prefix("company=").unwrap().to_string();
        std::fs::remove_dir_all(company.join("_delta_log")).unwrap();
        for suite in dirs(&company) {
            for day in dirs(&company.join(&suite)) {
                for part in dirs(&company.join(&suite).join(&day)) {
                    let stem = part.strip_prefix("part-").unwrap();
                    let file_id = &stem[..stem.len() - "-0000.parquet".len()];
                    let bytes = std::fs::metadata(company.join(&suite).join(&day).join(&part))
                        .unwrap()
                        .len();
                    records
                        .entry(file_id.to_string())
                        .or_insert_with(|| (id.clone(), Vec::new()))
                        .1
                        .push(serde_json::json!({
                            "path": format!("hits/{name}/{suite}/{day}/{part}"),
                            "report_suite": suite.strip_prefix("report_suite=").unwrap(),
                            "date": day.strip_prefix("date=").unwrap(),
                            "rows": 0,
                            "bytes": bytes,
                        }));
                }
            }
        }
    }
    std::fs::create_dir_all(lake.join("_commits")).unwrap();
    for (file_id, (company, parts)) in records {
        let record = serde_json::json!({
            "version": 2, "file_id": file_id, "company": company, "rows": 0, "parts": parts,
        });
        std::fs::write(
            lake.join(format!("_commits/{file_id}.json")),
            serde_json::to_vec_pretty(&record).unwrap(),
        )
        .unwrap();
    }
}

fn dirs(dir: &Path) -> Vec<String> {
    let mut out: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    out.sort();
    out
}

#[test]
fn a_lake_of_commit_records_is_moved_into_delta_tables_at_start_and_still_counted() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    std::fs::create_dir_all(&data).unwrap();
    let (a, b) = (company(&data, "acme", true), company(&data, "beta", true));
    let mut server = BdiaServe::start(&data, &[]);
    let (a, b) = (Client::new(&server, a), Client::new(&server, b));
    let f = dir.path();
    let a_rec = a.upload(&batch(f, "a.gz", 4, "a.web"));
    let b_rec = b.upload(&batch(f, "b.gz", 6, "b.web"));
    a.wait_complete(a_rec["file_id"].as_str().unwrap());
    b.wait_complete(b_rec["file_id"].as_str().unwrap());
    assert_eq!((a.hits("a.web"), b.hits("b.web")), (4, 6));
    server.kill();

    let lake = data.join("lake");
    to_commit_records(&lake);
    assert_eq!(dirs(&lake.join("_commits")).len(), 2);
    assert!(!lake.join("hits/company=acme/_delta_log").exists());

    // At start each file is committed to its company's table.
    server.restart();
    server.wait_healthy();
    assert!(lake.join("hits/company=acme/_delta_log").exists());
    assert!(lake.join("hits/company=beta/_delta_log").exists());
    assert!(dirs(&lake.join("_commits")).is_empty());
    assert_eq!((a.hits("a.web"), b.hits("b.web")), (4, 6));

    // The moved lake is an ordinary one: B may have an "a.web" of its own,
    // counted apart from A's; and another start changes nothing.
    let b2 = b.upload(&batch(f, "b2.gz", 2, "a.web"));
    assert_eq!(b2["invalid_rows"], 0, "{b2}");
    b.wait_complete(b2["file_id"].as_str().unwrap());
    server.kill();
    server.restart();
    server.wait_healthy();
    assert_eq!(
        (a.hits("a.web"), b.hits("a.web"), b.hits("b.web")),
        (4, 2, 6)
    );
    assert_eq!(dirs(&lake.join("hits")), ["company=acme", "company=beta"]);
}
