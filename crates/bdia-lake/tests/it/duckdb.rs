//! Optional: DuckDB (Python package) reads the lake. Skips, saying why, when
//! `python3 -c "import duckdb"` fails.

use std::process::Command;

use bdia_lake::{Lake, LakeConfig};

use crate::common::*;

#[test]
fn duckdb_reads_the_lake_when_installed() {
    let probe = Command::new("python3")
        .args(["-c", "import duckdb"])
        .output();
    match probe {
        Ok(o) if o.status.success() => {}
        _ => {
            eprintln!("skipped: the duckdb Python package is not installed (pip install duckdb)");
            return;
        }
    }
    let dir = tempfile::tempdir().unwrap();
    let lake = Lake::local(dir.path(), LakeConfig::default()).unwrap();
    let hits = enrich(sample_file(500, 1_700_000_000, 400));
    write_file(&lake, "f1", &hits, zones());
    // Another company's file in suites of the same IDs: its own partition.
    write_company_file(&lake, "beta", "f2", &hits[..100], zones());
    let stdout = run_python_check(
        "python3",
        "duckdb_check.py",
        &[dir.path().as_os_str(), COMPANY.as_ref()],
    );
    eprintln!("duckdb: {stdout}");
    let page_views = hits.iter().filter(|h| h.is_page_view()).count();
    assert!(
        stdout.contains(&format!("hits={} page_views={page_views}", hits.len())),
        "{stdout}"
    );
}
