//! The API against its own `/openapi.json`, by a schema-driven fuzzer:
//! schemathesis (PyPI, pinned by ./test.sh) generates requests for every
//! operation from the document (valid, invalid and edge-case values,
//! and sequences that follow links between operations) against a real
//! `bdia serve`. No answer may be a 5xx, and every answer's status, content
//! type, headers and body must be the ones the document declares.
//!
//! The seed is fixed so a failure reproduces; `BDIA_API_FUZZ_SEED` and
//! `BDIA_API_FUZZ_EXAMPLES` explore further.

use std::process::Command;

use crate::common::BdiaServe;

/// The schemathesis release ./test.sh installs.
const SCHEMATHESIS: &str = "4.32.5";

#[test]
fn every_answer_matches_the_openapi_document_and_none_is_a_5xx() {
    let version = Command::new("python3")
        .args(["-m", "schemathesis.cli", "--version"])
        .output()
        .expect("python3");
    assert!(
        String::from_utf8_lossy(&version.stdout).contains(SCHEMATHESIS),
        "schemathesis {SCHEMATHESIS} is needed (./test.sh installs it): {}{}",
        String::from_utf8_lossy(&version.stdout),
        String::from_utf8_lossy(&version.stderr)
    );
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let logs = dir.path().join("logs");
    std::fs::create_dir_all(&logs).unwrap();
    // Rate limits off, so that the fuzzer reaches the handlers.
    let server = BdiaServe::start_logged(
        &data,
        &[
            ("BDIA_RATE_LIMIT_ENABLED", "false"),
            ("BDIA_REPORT_RATE_PER_SECOND", "100000"),
            ("BDIA_REPORT_BURST", "100000"),
        ],
        &logs,
    );
    let creds = server.credentials();
    let client = creds["client_id"].as_str().unwrap();
    let token = Command::new(env!("CARGO_BIN_EXE_bdia"))
        .args(["admin", "--data-dir"])
        .arg(&data)
        .args(["token", client])
        .output()
        .unwrap();
    assert!(token.status.success());
    let token = String::from_utf8(token.stdout).unwrap();
    let seed = std::env::var("BDIA_API_FUZZ_SEED").unwrap_or_else(|_| "1".into());
    let examples = std::env::var("BDIA_API_FUZZ_EXAMPLES").unwrap_or_else(|_| "60".into());
    let out = Command::new("python3")
        .args(["-m", "schemathesis.cli", "run"])
        .arg(format!("{}/openapi.json", server.url()))
        .args(["-H", &format!("Authorization: Bearer {}", token.trim())])
        .args(["-H", &format!("x-api-key: {client}")])
        .args([
            "--checks",
            "not_a_server_error,status_code_conformance,content_type_conformance,\
             response_headers_conformance,response_schema_conformance",
            "--phases",
            "examples,coverage,fuzzing,stateful",
            "--max-examples",
            &examples,
            "--seed",
            &seed,
            // One worker: Python's `ast` module (used by hypothesis to
            // describe its strategies) is not thread-safe in CPython 3.11,
            // and two workers now and then fail with "AST constructor
            // recursion depth mismatch", an error of the tool, not an
            // answer of the API.
            "--workers",
            "1",
            "--no-color",
        ])
        .current_dir(dir.path())
        .output()
        .unwrap();
    let report = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "schemathesis found failures (seed {seed}):\n{report}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(report.contains("passed"), "{report}");
    // The server survived it, and never panicked.
    assert!(crate::common::healthy(server.port()));
    let log = std::fs::read_to_string(logs.join("stderr.txt")).unwrap_or_default();
    assert!(!log.contains("panicked"), "{log}");
}
