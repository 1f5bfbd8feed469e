//! `bdia generate` and `bdia validate` end to end: real files, real process,
//! exit codes and output.

use std::path::Path;
use std::process::{Command, Output, Stdio};

use std::io::Write;

fn bdia(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_bdia"))
        .args(args)
        .output()
        .expect("run bdia")
}

fn generate(dir: &Path, name: &str, extra: &[&str]) -> String {
    let path = dir.join(name).to_string_lossy().to_string();
    let mut args = vec!["generate", "--rows", "500", "--visitors", "50", "-o", &path];
    args.extend_from_slice(extra);
    let out = bdia(&args);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    path
}

#[test]
fn valid_file_exits_zero_with_text_verdict() {
    let dir = tempfile::tempdir().unwrap();
    let f = generate(dir.path(), "ok.csv.gz", &[]);
    let out = bdia(&["validate", &f]);
    assert_eq!(out.status.code(), Some(0));
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(text.contains("rows: 500, invalid rows: 0"), "{text}");
    assert!(text.contains("Processing complete: 500 rows will be submitted. 0 rows were invalid."));
    assert!(text.contains("verdict: VALID"));
}

#[test]
fn invalid_rows_exit_one_and_json_lists_every_error() {
    let dir = tempfile::tempdir().unwrap();
    let f = generate(
        dir.path(),
        "bad.csv.gz",
        &[
            "--invalid-rate",
            "0.2",
            "--invalid-kinds",
            "missing_user_agent",
        ],
    );
    let out = bdia(&["validate", "--json", &f]);
    assert_eq!(out.status.code(), Some(1));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let invalid = v["invalid_rows"].as_u64().unwrap();
    assert!(invalid > 10, "{v}");
    assert_eq!(v["rows"], 500);
    assert_eq!(v["status_code"], "UPLOADED");
    assert_eq!(v["upload_name"], f.as_str());
    assert_eq!(v["size"], std::fs::metadata(&f).unwrap().len());
    let errors = v["errors"].as_array().unwrap();
    assert_eq!(
        errors.len() as u64,
        invalid,
        "every invalid row, not just 10"
    );
    assert_eq!(errors[0]["kind"], "missing_user_agent");
    assert_eq!(errors[0]["message"], "missing 'UserAgent'");
    let log = v["processing_log"].as_str().unwrap();
    assert_eq!(log.matches("On row: ").count(), 10);
}

#[test]
fn an_invalid_report_suite_id_is_an_invalid_row_with_its_kind() {
    let dir = tempfile::tempdir().unwrap();
    let plain = dir.path().join("suites.csv");
    std::fs::write(
        &plain,
        "timestamp,visitorID,reportSuiteID,userAgent,pageName\n\
         1500000000,v,acme.prod,UA,P\n\
         1500000001,v,acme@prod,UA,P\n\
         1500000002,v,\"acme.prod,acme.dev\",UA,P\n",
    )
    .unwrap();
    let plain = plain.to_string_lossy().to_string();
    let out = bdia(&["validate", "--plain", "--json", &plain]);
    assert_eq!(out.status.code(), Some(1));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["status_code"], "UPLOADED");
    assert_eq!(
        (v["rows"].as_u64(), v["invalid_rows"].as_u64()),
        (Some(3), Some(1))
    );
    let errors = v["errors"].as_array().unwrap();
    assert_eq!(errors.len(), 1);
    assert_eq!(errors[0]["row"], 2);
    assert_eq!(errors[0]["kind"], "invalid_report_suite");
    assert_eq!(
        errors[0]["message"],
        "invalid 'ReportSuiteID' 'acme@prod': '@' at position 5 is not allowed \
         (only letters, digits, '.', '-' and '_')"
    );
    // The text verdict carries the processing-log line.
    let out = bdia(&["validate", "--plain", &plain]);
    assert_eq!(out.status.code(), Some(1));
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(
        text.contains("On row: 2, invalid 'ReportSuiteID' 'acme@prod'"),
        "{text}"
    );
    assert!(text.contains("Processing complete: 2 rows will be submitted. 1 rows were invalid."));
    // The generator can make such rows too.
    let f = generate(
        dir.path(),
        "gen.csv.gz",
        &[
            "--invalid-rate",
            "0.1",
            "--invalid-kinds",
            "invalid_report_suite",
        ],
    );
    let out = bdia(&["validate", "--json", &f]);
    assert_eq!(out.status.code(), Some(1));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let errors = v["errors"].as_array().unwrap();
    assert!(!errors.is_empty());
    assert!(errors.iter().all(|e| e["kind"] == "invalid_report_suite"));
}

#[test]
fn rejected_file_and_several_files() {
    let dir = tempfile::tempdir().unwrap();
    let good = generate(dir.path(), "good.csv.gz", &[]);
    let plain = dir.path().join("plain.csv");
    std::fs::write(
        &plain,
        "timestamp,visitorID,reportSuiteID,userAgent,pageName\n1,v,rs,UA,P\n",
    )
    .unwrap();
    let plain = plain.to_string_lossy().to_string();
    let out = bdia(&["validate", "--json", &good, &plain]);
    assert_eq!(out.status.code(), Some(1));
    let lines: Vec<serde_json::Value> = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 2);
    assert_eq!(lines[0]["status_code"], "UPLOADED");
    assert_eq!(lines[1]["status_code"], "REJECTED");
    assert_eq!(lines[1]["error"], "Not in GZIP format");
    assert_eq!(lines[1]["rows"], 0);
    // The same plain file is fine when declared plain.
    let out = bdia(&["validate", "--plain", &plain]);
    assert_eq!(out.status.code(), Some(0));
}

#[test]
fn stdin_and_usage_errors() {
    let dir = tempfile::tempdir().unwrap();
    let f = generate(dir.path(), "in.csv.gz", &[]);
    let mut child = Command::new(env!("CARGO_BIN_EXE_bdia"))
        .args(["validate", "--json", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(&std::fs::read(&f).unwrap())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(0));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["rows"], 500);
    // Missing file: I/O error, exit 2.
    let out = bdia(&["validate", "/nonexistent/file.gz"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("cannot open"));
    // No file at all: usage error, exit 2.
    assert_eq!(bdia(&["validate"]).status.code(), Some(2));
    assert_eq!(
        bdia(&["generate", "--invalid-kinds", "nope"]).status.code(),
        Some(2)
    );
}
