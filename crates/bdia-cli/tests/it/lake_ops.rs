//! Removing hits from the lake and maintaining it, against a real
//! `bdia serve`: retraction of a file's hits, privacy deletion by visitorID
//! and by customer ID (with the audit trail and the visitor state), and
//! compaction and vacuum, from the API and from `bdia admin`.
//!
//! After every step the company's Delta table is read by Python
//! `deltalake` (`tests/lake_counts.py`, an engine that is not bdia) and
//! its row count must equal bdia's report totals. The test is skipped when
//! `deltalake` is not installed, except under `CI=true`, where it fails
//! (`./test.sh` installs it).

use std::io::Write;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::common::{admin, admin_output, BdiaServe};

/// 2023-11-14T08:20:00Z: every hit below falls on 2023-11-14 (UTC).
const T0: i64 = 1_699_950_000;
const HEADER: &str = "timestamp,visitorID,reportSuiteID,userAgent,pageName,linkType,linkName,\
                      customerID.CRM.id,customerID.CRM.isMCSeed";

/// A page view (or a custom link hit) of `vid` in suite rs1, with a CRM
/// customer ID when `cust` is not empty.
fn hit(t: i64, vid: &str, page: bool, cust: &str) -> String {
    if page {
        format!("{t},{vid},rs1,Mozilla/5.0,Home,,,{cust},\n")
    } else {
        format!("{t},{vid},rs1,Mozilla/5.0,,o,Click,{cust},\n")
    }
}

fn gz_file(dir: &Path, name: &str, rows: &[String]) -> std::path::PathBuf {
    let mut text = format!("{HEADER}\n");
    text.extend(rows.iter().map(String::as_str));
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    enc.write_all(text.as_bytes()).unwrap();
    let path = dir.join(name);
    std::fs::write(&path, enc.finish().unwrap()).unwrap();
    path
}

/// `python3`, or `BDIA_TEST_PYTHON`.
fn python() -> String {
    std::env::var("BDIA_TEST_PYTHON").unwrap_or_else(|_| "python3".into())
}

/// True when Python `deltalake` can be imported; without it the test is
/// skipped, except under `CI=true`.
fn deltalake_available() -> bool {
    let ok = Command::new(python())
        .args(["-c", "import deltalake"])
        .output()
        .is_ok_and(|o| o.status.success());
    if !ok {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "Python deltalake is needed under CI (./test.sh installs deltalake==1.6.6)"
        );
        eprintln!("skipped: the deltalake Python package is not installed (./test.sh installs it)");
    }
    ok
}

/// A server with its client, and calls over curl.
pub(crate) struct Api {
    pub(crate) server: BdiaServe,
    data: std::path::PathBuf,
    company: String,
    client_id: String,
    token: String,
}

impl Api {
    pub(crate) fn start(data: &Path, env: &[(&str, &str)]) -> Api {
        let mut all = vec![("BDIA_PROCESSING_POLL_MS", "50")];
        all.extend_from_slice(env);
        let server = BdiaServe::start(data, &all);
        let creds = server.credentials();
        Api {
            token: server.access_token(),
            company: creds["company"].as_str().unwrap().to_string(),
            client_id: creds["client_id"].as_str().unwrap().to_string(),
            data: data.to_path_buf(),
            server,
        }
    }

    /// `curl` with the client's credentials: (status, JSON body).
    pub(crate) fn call(&self, method: &str, path: &str, extra: &[&str]) -> (u16, Value) {
        let out = Command::new("curl")
            .args(["-s", "-w", "\n%{http_code}", "-X", method])
            .args(["-H", &format!("Authorization: Bearer {}", self.token)])
            .args(["-H", &format!("x-api-key: {}", self.client_id)])
            .args(extra)
            .arg(format!("{}{path}", self.server.url()))
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        let (body, status) = text.rsplit_once('\n').expect("a status line");
        let status = status.trim().parse().expect("a status code");
        let body = serde_json::from_str(body).unwrap_or(Value::String(body.to_string()));
        (status, body)
    }

    pub(crate) fn upload(&self, file: &Path, vgid: &str) -> Value {
        let (st, v) = self.call(
            "POST",
            "/aa/collect/v1/events",
            &[
                "-H",
                &format!("x-adobe-vgid: {vgid}"),
                "-F",
                &format!("file=@{}", file.display()),
            ],
        );
        assert_eq!(st, 200, "{v}");
        v
    }

    /// Waits for every file to be COMPLETE (a generous bound for a loaded
    /// machine, not a timing assertion).
    pub(crate) fn wait_complete(&self, ids: &[&str]) {
        let start = Instant::now();
        for id in ids {
            loop {
                let (st, v) = self.call("GET", &format!("/aa/collect/v1/events/{id}"), &[]);
                assert_eq!(st, 200, "{v}");
                match v["status_code"].as_str().unwrap() {
                    "COMPLETE" => break,
                    "ERROR" | "REJECTED" => panic!("file {id}: {v}"),
                    _ => {}
                }
                assert!(
                    start.elapsed() < Duration::from_secs(180),
                    "not processed: {v}"
                );
                std::thread::sleep(Duration::from_millis(100));
            }
        }
    }

    /// bdia's report totals over the test's day: (hits, page views).
    pub(crate) fn report_totals(&self) -> (u64, u64) {
        let (st, v) = self.call(
            "GET",
            "/api/v1/report-suites/rs1/report?metrics=hits,pageviews&dimension=day\
             &from=2023-11-14&to=2023-11-15",
            &[],
        );
        assert_eq!(st, 200, "{v}");
        (
            v["totals"]["hits"].as_u64().unwrap(),
            v["totals"]["pageviews"].as_u64().unwrap(),
        )
    }

    /// The table as Python deltalake reads it.
    fn table(&self) -> Value {
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/lake_counts.py");
        let out = Command::new(python())
            .arg(script)
            .arg(self.data.join("lake"))
            .arg(&self.company)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice(&out.stdout).unwrap()
    }

    /// Reads the table, checks that its counts are bdia's report totals,
    /// and returns it.
    fn table_equals_reports(&self, step: &str) -> Value {
        let t = self.table();
        let (hits, page_views) = self.report_totals();
        assert_eq!(t["rows"].as_u64().unwrap(), hits, "{step}: rows vs hits");
        assert_eq!(
            t["page_views"].as_u64().unwrap(),
            page_views,
            "{step}: page views"
        );
        t
    }
}

fn rows(t: &Value) -> u64 {
    t["rows"].as_u64().unwrap()
}

fn sha256_hex(text: &str) -> String {
    let out = Command::new("sha256sum")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .and_then(|mut c| {
            c.stdin.take().unwrap().write_all(text.as_bytes())?;
            c.wait_with_output()
        })
        .unwrap();
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .next()
        .unwrap()
        .to_string()
}

#[test]
fn retraction_privacy_deletion_and_compaction_keep_the_table_equal_to_reports() {
    if !deltalake_available() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let api = Api::start(
        &dir.path().join("data"),
        &[
            ("BDIA_LAKE_COMPACTION_ENABLED", "false"),
            ("BDIA_LAKE_VACUUM_ENABLED", "false"),
        ],
    );
    let d = dir.path();
    // Visitors: v-keep and v-del have two visits each (over 30 minutes
    // apart, f1 then f2); v-cust sent a CRM customer ID in f1 only.
    let f1 = gz_file(
        d,
        "f1.csv.gz",
        &[
            hit(T0, "v-keep", true, ""),
            hit(T0, "v-del", true, ""),
            hit(T0 + 10, "v-cust", true, "cust-1"),
            hit(T0 + 20, "v-cust", true, "cust-1"),
            hit(T0 + 60, "v-keep", true, ""),
            hit(T0 + 120, "v-del", false, ""),
        ],
    );
    let f2 = gz_file(
        d,
        "f2.csv.gz",
        &[
            hit(T0 + 4_000, "v-keep", true, ""),
            hit(T0 + 4_000, "v-del", true, ""),
            hit(T0 + 4_000, "v-cust", true, ""),
            hit(T0 + 4_100, "v-del", true, ""),
        ],
    );
    let f3 = gz_file(d, "f3.csv.gz", &vec![hit(T0 + 30, "v-other", true, ""); 3]);
    let f4 = gz_file(d, "f4.csv.gz", &vec![hit(T0 + 50, "v-extra", true, ""); 2]);
    let f5 = gz_file(
        d,
        "f5.csv.gz",
        &vec![hit(T0 + 5_000, "v-extra", true, ""); 2],
    );
    let f6 = gz_file(d, "f6.csv.gz", &[hit(T0 + 6_000, "v-extra", true, "")]);
    let mut ids = Vec::new();
    for (f, g) in [
        (&f1, "g1"),
        (&f2, "g1"),
        (&f3, "g2"),
        (&f4, "g3"),
        (&f5, "g3"),
        (&f6, "g3"),
    ] {
        ids.push(api.upload(f, g)["file_id"].as_str().unwrap().to_string());
    }
    let id_refs: Vec<&str> = ids.iter().map(String::as_str).collect();
    api.wait_complete(&id_refs);
    let t = api.table_equals_reports("processed");
    assert_eq!(rows(&t), 18);

    // Retraction over HTTP: f3's 3 hits leave the table and the reports.
    let path = format!("/aa/collect/v1/events/{}/hits", ids[2]);
    let (st, rec) = api.call("DELETE", &path, &[]);
    assert_eq!(st, 200, "{rec}");
    assert_eq!(rec["status_code"], "COMPLETE");
    assert_eq!(rec["hits_retracted"], 3, "{rec}");
    let at = rec["hits_retracted_at"]
        .as_i64()
        .expect("a retraction time");
    assert!(
        rec["processing_log"]
            .as_str()
            .unwrap()
            .contains("Hits retracted at "),
        "{rec}"
    );
    let t = api.table_equals_reports("after a retraction");
    assert_eq!(rows(&t), 15);
    assert!(t["hits_by_visitor"].get("v-other").is_none(), "{t}");
    // Twice: no change, the same record.
    let (st, again) = api.call("DELETE", &path, &[]);
    assert_eq!(st, 200, "{again}");
    assert_eq!(again, rec);
    assert_eq!(api.table()["version"], t["version"], "nothing committed");
    let (_, looked_up) = api.call("GET", &format!("/aa/collect/v1/events/{}", ids[2]), &[]);
    assert_eq!(looked_up["hits_retracted_at"], at);
    // A file that is not COMPLETE: 409 naming its status; unknown: 404.
    let not_gzip = d.join("bad.csv.gz");
    std::fs::write(&not_gzip, "plain text").unwrap();
    let bad = api.upload(&not_gzip, "g9");
    assert_eq!(bad["status_code"], "REJECTED");
    let (st, err) = api.call(
        "DELETE",
        &format!(
            "/aa/collect/v1/events/{}/hits",
            bad["file_id"].as_str().unwrap()
        ),
        &[],
    );
    assert_eq!(st, 409, "{err}");
    assert_eq!(err["code"], "file_not_complete");
    assert!(err["error"].as_str().unwrap().contains("REJECTED"), "{err}");
    let (st, err) = api.call("DELETE", "/aa/collect/v1/events/no-such-file/hits", &[]);
    assert_eq!((st, err), (404, json!({ "error": "File not found" })));

    // Retraction from bdia admin, next to the running server.
    let out = admin(&api.data, &["retract", &ids[3]]);
    assert_eq!(out["hits_retracted"], 2, "{out}");
    assert_eq!(out["already_retracted"], false);
    let out = admin(&api.data, &["retract", &ids[3]]);
    assert_eq!(out["already_retracted"], true, "{out}");
    let t = api.table_equals_reports("after a retraction by bdia admin");
    assert_eq!(rows(&t), 13);

    // Privacy deletion by visitorID: v-del's 4 hits, in two files.
    let (st, del) = api.call(
        "POST",
        "/api/v1/privacy/deletions",
        &[
            "-H",
            "Content-Type: application/json",
            "-d",
            r#"{"identifier_type":"visitor_id","identifier":"v-del"}"#,
        ],
    );
    assert_eq!(st, 200, "{del}");
    assert_eq!(del["hits_removed"], 4, "{del}");
    assert_eq!(del["visitors"], 1, "{del}");
    assert_eq!(del["requested_by"], api.client_id.as_str());
    assert_eq!(del["identifier_type"], "visitor_id");
    assert_eq!(del["identifier_sha256"], sha256_hex("v-del"));
    assert!(del["table_version"].is_u64(), "{del}");
    let t = api.table_equals_reports("after a privacy deletion by visitorID");
    assert_eq!(rows(&t), 9);
    assert!(t["hits_by_visitor"].get("v-del").is_none(), "{t}");
    assert_eq!(t["hits_by_visitor"]["v-keep"], 3, "others stay: {t}");

    // By customer ID: the visitor it appeared with loses every hit, also
    // those sent without it (f2).
    let (st, del_c) = api.call(
        "POST",
        "/api/v1/privacy/deletions",
        &[
            "-H",
            "Content-Type: application/json",
            "-d",
            r#"{"identifier_type":"customer_id","customer_id_type":"CRM","identifier":"cust-1"}"#,
        ],
    );
    assert_eq!(st, 200, "{del_c}");
    assert_eq!(del_c["hits_removed"], 3, "{del_c}");
    assert_eq!(del_c["customer_id_type"], "CRM");
    let t = api.table_equals_reports("after a privacy deletion by customer ID");
    assert_eq!(rows(&t), 6);
    assert!(t["hits_by_visitor"].get("v-cust").is_none(), "{t}");

    // Refusals name their cause.
    for (body, code) in [
        (
            r#"{"identifier_type":"visitorID","identifier":"x"}"#,
            "unknown_identifier_type",
        ),
        (
            r#"{"identifier_type":"customer_id","identifier":"x"}"#,
            "missing_customer_id_type",
        ),
        (
            r#"{"identifier_type":"ip_address","customer_id_type":"CRM","identifier":"x"}"#,
            "unexpected_customer_id_type",
        ),
        (
            r#"{"identifier_type":"visitor_id","identifier":""}"#,
            "missing_identifier",
        ),
        (r#"{"identifier":"x"}"#, "malformed_body"),
        ("not json", "malformed_body"),
    ] {
        let (st, err) = api.call(
            "POST",
            "/api/v1/privacy/deletions",
            &["-H", "Content-Type: application/json", "-d", body],
        );
        assert_eq!(
            (st, err["code"].as_str()),
            (400, Some(code)),
            "{body}: {err}"
        );
    }

    let big = d.join("big.json");
    let padding = "x".repeat(70 * 1024);
    std::fs::write(
        &big,
        format!(r#"{{"identifier_type":"visitor_id","identifier":"{padding}"}}"#),
    )
    .unwrap();
    let (st, err) = api.call(
        "POST",
        "/api/v1/privacy/deletions",
        &[
            "-H",
            "Content-Type: application/json",
            "--data-binary",
            &format!("@{}", big.display()),
        ],
    );
    assert_eq!(st, 413, "{err}");

    // From bdia admin: an identifier that matches nothing is recorded too.
    let none = admin(
        &api.data,
        &[
            "privacy-delete",
            "--company",
            &api.company,
            "--type",
            "ip_address",
            "192.0.2.1",
        ],
    );
    assert_eq!(none["hits_removed"], 0, "{none}");
    assert_eq!(none["requested_by"], "admin");
    assert_eq!(none["table_version"], Value::Null);
    let bad = admin_output(
        &api.data,
        &[
            "privacy-delete",
            "--company",
            &api.company,
            "--type",
            "customer_id",
            "x",
        ],
    );
    assert!(!bad.status.success());
    assert!(
        String::from_utf8_lossy(&bad.stderr).contains("customer_id_type"),
        "{}",
        String::from_utf8_lossy(&bad.stderr)
    );

    // The audit trail, newest first, from the API and from bdia admin.
    let (st, list) = api.call("GET", "/api/v1/privacy/deletions", &[]);
    assert_eq!(st, 200, "{list}");
    let listed = list["deletions"].as_array().unwrap();
    assert_eq!(listed.len(), 3, "{list}");
    assert_eq!(listed[0]["id"], none["id"]);
    assert_eq!(listed[1], del_c);
    assert_eq!(listed[2], del);
    assert_eq!(list["next_cursor"], Value::Null);
    let (_, page) = api.call("GET", "/api/v1/privacy/deletions?limit=2", &[]);
    let cursor = page["next_cursor"].as_str().expect("a second page");
    let (_, rest) = api.call(
        "GET",
        &format!("/api/v1/privacy/deletions?cursor={cursor}"),
        &[],
    );
    assert_eq!(rest["deletions"], json!([del]));
    let audit = admin(&api.data, &["privacy-deletions", "--company", &api.company]);
    assert_eq!(audit.as_array().unwrap().len(), 3, "{audit}");
    assert_eq!(audit[2]["hits_removed"], 4);
    assert!(
        !audit.to_string().contains("v-del") && !list.to_string().contains("cust-1"),
        "the trail keeps no identifier"
    );

    // The visitor state went with the hits: v-del's next hit, 100 s after
    // its last deleted one, starts visit 1; v-keep's continues visit 2.
    let f7 = gz_file(
        d,
        "f7.csv.gz",
        &[
            hit(T0 + 4_200, "v-del", true, ""),
            hit(T0 + 4_200, "v-keep", true, ""),
        ],
    );
    let f7 = api.upload(&f7, "g1")["file_id"]
        .as_str()
        .unwrap()
        .to_string();
    api.wait_complete(&[&f7]);
    let t = api.table_equals_reports("after a later file");
    assert_eq!(rows(&t), 8);
    assert_eq!(t["visits"]["v-del"][&f7], json!([[1, true]]), "{t}");
    assert_eq!(t["visits"]["v-keep"][&f7], json!([[2, false]]), "{t}");

    // Compaction: fewer files, the same rows and reports.
    let before = t["files"].as_u64().unwrap();
    assert!(before >= 4, "{t}");
    let out = admin(
        &api.data,
        &["compact", "--company", &api.company, "--min-files", "2"],
    );
    let c = &out[0];
    assert_eq!(c["company"], api.company.as_str(), "{out}");
    let after_t = api.table_equals_reports("after a compaction");
    let after = after_t["files"].as_u64().unwrap();
    assert!(after < before, "{before} -> {after}: {out}");
    assert_eq!(
        before - c["files_removed"].as_u64().unwrap() + c["files_added"].as_u64().unwrap(),
        after,
        "{out}"
    );
    assert_eq!(rows(&after_t), 8);
    assert_eq!(after_t["hits_by_visitor"], t["hits_by_visitor"]);

    // Vacuum with no retention: the replaced and rewritten files are gone
    // from the disk; the table and the reports are unchanged.
    let on_disk = |root: &Path| -> u64 {
        fn walk(p: &Path, n: &mut u64) {
            for e in std::fs::read_dir(p).unwrap().flatten() {
                let p = e.path();
                if p.is_dir() && e.file_name() != "_delta_log" {
                    walk(&p, n);
                } else if p.extension().is_some_and(|x| x == "parquet") {
                    *n += 1;
                }
            }
        }
        let mut n = 0;
        walk(root, &mut n);
        n
    };
    let table_dir = api.data.join(format!("lake/hits/company={}", api.company));
    assert!(on_disk(&table_dir) > after);
    let out = admin(
        &api.data,
        &[
            "vacuum",
            "--company",
            &api.company,
            "--retention-hours",
            "0",
        ],
    );
    assert!(out[0]["files_deleted"].as_u64().unwrap() > 0, "{out}");
    assert_eq!(
        on_disk(&table_dir),
        after,
        "only the snapshot's files are left"
    );
    let t = api.table_equals_reports("after a vacuum");
    assert_eq!(rows(&t), 8);
}

/// The background task compacts a table of small files while the server
/// runs (until one file is left), and says so in its metrics; reports do
/// not change meanwhile.
#[test]
fn the_background_task_compacts_small_files() {
    if !deltalake_available() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let token = "0123456789abcdef-metrics";
    let api = Api::start(
        &dir.path().join("data"),
        &[
            ("BDIA_LAKE_COMPACTION_INTERVAL_SECS", "1"),
            ("BDIA_LAKE_COMPACTION_MIN_FILES", "2"),
            ("BDIA_METRICS_TOKEN", token),
        ],
    );
    let mut ids = Vec::new();
    for i in 0..4 {
        let f = gz_file(
            dir.path(),
            &format!("s{i}.csv.gz"),
            &[hit(T0 + i * 10, &format!("v{i}"), true, "")],
        );
        // One group: files commit one after another.
        ids.push(api.upload(&f, "g")["file_id"].as_str().unwrap().to_string());
    }
    let id_refs: Vec<&str> = ids.iter().map(String::as_str).collect();
    api.wait_complete(&id_refs);
    let start = Instant::now();
    let t = loop {
        let t = api.table_equals_reports("while compacting");
        assert_eq!(rows(&t), 4);
        if t["files"] == 1 {
            break t;
        }
        assert!(
            start.elapsed() < Duration::from_secs(120),
            "never compacted: {t}"
        );
        std::thread::sleep(Duration::from_millis(500));
    };
    assert_eq!(t["hits_by_visitor"].as_object().unwrap().len(), 4);
    let metrics = Command::new("curl")
        .args(["-s", "-H", &format!("Authorization: Bearer {token}")])
        .arg(format!("{}/metrics", api.server.url()))
        .output()
        .unwrap();
    let metrics = String::from_utf8_lossy(&metrics.stdout);
    let value = |name: &str| -> f64 {
        metrics
            .lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.rsplit(' ').next())
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("{name} missing:\n{metrics}"))
    };
    assert!(value("bdia_lake_compactions_total") >= 1.0, "{metrics}");
    assert!(
        value("bdia_lake_compaction_files_total{change=\"removed\"}") >= 4.0,
        "{metrics}"
    );
    assert!(value("bdia_lake_compaction_files_total{change=\"added\"}") >= 1.0);
    assert_eq!(value("bdia_lake_tables"), 1.0);
}
