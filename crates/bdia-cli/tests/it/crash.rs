//! Exactly-once processing under crashes: a `bdia serve` process killed
//! with SIGKILL at random points while it processes several visitor groups,
//! restarted each time, and aborted right after Delta commits (before their
//! metadata commits); afterwards the lake and the visitor state must equal
//! those of an uninterrupted run on the same uploads, row for row.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use crate::common::{prepared_exports, store_records, BdiaServe, Lcg};
use bdia_store::sqlite::SqliteStore;
use bdia_store::{FileRecord, FileStatus, StoredState};

/// A `bdia serve` child over `data`, processing on or off; does not wait.
fn spawn(data: &Path, processing: bool) -> BdiaServe {
    BdiaServe::spawn(
        data,
        &[
            ("BDIA_PROCESSING_ENABLED", &processing.to_string()),
            ("BDIA_PROCESSING_POLL_MS", "50"),
            // Compaction would rewrite the files the runs compare.
            ("BDIA_LAKE_COMPACTION_ENABLED", "false"),
        ],
    )
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        let target = to.join(e.file_name());
        if e.file_type().unwrap().is_dir() {
            copy_dir(&e.path(), &target);
        } else {
            std::fs::copy(e.path(), &target).unwrap();
        }
    }
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

struct Snapshot {
    files: Vec<FileRecord>,
    states: Vec<StoredState>,
}

fn snapshot(data: &Path) -> Snapshot {
    runtime().block_on(async {
        let store = SqliteStore::open(&data.join("metadata.sqlite")).unwrap();
        let (files, states) = store_records(&store).await;
        Snapshot { files, states }
    })
}

fn all_settled(data: &Path) -> bool {
    snapshot(data)
        .files
        .iter()
        .all(|f| matches!(f.status, FileStatus::Complete | FileStatus::Error))
}

/// Runs a server with processing until every file is processed.
fn process_to_the_end(data: &Path) {
    let mut child = spawn(data, true);
    child.wait_healthy();
    let t = Instant::now();
    while !all_settled(data) {
        assert!(
            t.elapsed() < Duration::from_secs(300),
            "processing did not finish"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    child.kill();
}

/// Parquet files under `lake/hits/` and the files of the tables' snapshots.
fn lake_objects(data: &Path) -> (BTreeSet<String>, BTreeSet<String>) {
    fn walk(dir: &Path, base: &Path, out: &mut BTreeSet<String>) {
        let Ok(rd) = std::fs::read_dir(dir) else {
            return;
        };
        for e in rd.flatten() {
            let p = e.path();
            if p.is_dir() {
                walk(&p, base, out);
            } else if p.extension().is_some_and(|x| x == "parquet") {
                out.insert(p.strip_prefix(base).unwrap().to_string_lossy().into_owned());
            }
        }
    }
    let lake = data.join("lake");
    let mut on_disk = BTreeSet::new();
    walk(&lake.join("hits"), &lake, &mut on_disk);
    let committed = bdia_server::testing::lake_files(data).unwrap();
    (on_disk, committed)
}

fn prepare_uploads(work: &Path) -> PathBuf {
    prepared_exports(work, 1500, 200, 0.02, "4", "400").0
}

#[test]
fn killed_at_random_points_the_lake_and_state_equal_a_clean_run() {
    let work = tempfile::tempdir().unwrap();
    let prepared = prepare_uploads(work.path());

    // 1. Uploads only (processing off), on one data dir.
    let base = work.path().join("base");
    let mut child = spawn(&base, false);
    child.wait_healthy();
    let creds = child.credentials();
    child.upload_dir(&prepared);
    child.kill();
    // A throttle keeps files in flight long enough for kills to land
    // mid-file; it changes timing only, never the output.
    let company = creds["company"].as_str().unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_bdia"))
        .args([
            "admin",
            "company",
            "settings",
            company,
            "--rows-per-second",
            "500",
        ])
        .arg("--data-dir")
        .arg(&base)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let uploaded = snapshot(&base).files;
    assert!(uploaded.len() >= 8, "several files per group");
    let groups: BTreeSet<_> = uploaded
        .iter()
        .map(|f| f.visitor_group_id.clone())
        .collect();
    assert!(groups.len() >= 3, "several groups");

    // 2. A clean run on a copy.
    let clean = work.path().join("clean");
    copy_dir(&base, &clean);
    process_to_the_end(&clean);

    // 3. The same uploads, killed at random points, at least 20 times.
    let crash = work.path().join("crash");
    copy_dir(&base, &crash);
    let seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64;
    eprintln!("kill delays seeded with {seed}");
    let mut rng = Lcg(seed);
    let mut kills_mid_run = 0;
    for _ in 0..24 {
        let mut child = spawn(&crash, true);
        if rng.next(4) > 0 {
            child.wait_healthy();
        }
        std::thread::sleep(Duration::from_millis(rng.next(400)));
        child.kill();
        if !all_settled(&crash) {
            kills_mid_run += 1;
        }
    }
    eprintln!("{kills_mid_run} kills landed before the end");
    assert!(
        kills_mid_run >= 20,
        "kills must land while files are processed"
    );
    process_to_the_end(&crash);

    // 4. Equal: file outcomes, lake rows (every column), objects, state.
    let (a, b) = (snapshot(&clean), snapshot(&crash));
    assert!(a.files.iter().all(|f| f.status == FileStatus::Complete));
    let outcome = |s: &Snapshot| -> Vec<(String, FileStatus, String, Option<String>)> {
        s.files
            .iter()
            .map(|f| {
                (
                    f.file_id.clone(),
                    f.status,
                    f.processing_log.clone(),
                    f.blob_key.clone(),
                )
            })
            .collect()
    };
    assert_eq!(outcome(&a), outcome(&b));
    let hits_a = bdia_server::testing::lake_hits(&clean).unwrap();
    let hits_b = bdia_server::testing::lake_hits(&crash).unwrap();
    assert!(!hits_a.is_empty());
    assert_eq!(hits_a.len(), hits_b.len(), "no hit lost or duplicated");
    assert!(hits_a == hits_b, "the lakes' rows differ");
    let (disk_a, committed_a) = lake_objects(&clean);
    let (disk_b, committed_b) = lake_objects(&crash);
    assert_eq!(disk_a, committed_a);
    assert_eq!(disk_b, committed_b, "no part outside a commit is left");
    assert_eq!(committed_a, committed_b);
    assert!(!a.states.is_empty());
    assert_eq!(a.states, b.states, "visitor state");

    // 5. Aborted right after each Delta commit, before its metadata
    // commit: every start finds the last file's txn committed, finishes
    // its metadata commit, commits the next file and aborts again.
    let aborted = work.path().join("aborted");
    copy_dir(&base, &aborted);
    let mut aborts = 0;
    while !all_settled(&aborted) {
        let mut child = BdiaServe::spawn(
            &aborted,
            &[
                ("BDIA_PROCESSING_ENABLED", "true"),
                ("BDIA_PROCESSING_POLL_MS", "50"),
                ("BDIA_TEST_ABORT_AFTER_LAKE_COMMITS", "1"),
                ("BDIA_LAKE_COMPACTION_ENABLED", "false"),
            ],
        );
        let status = child.wait_exit(Duration::from_secs(120));
        if status.is_some_and(|s| !s.success()) {
            aborts += 1;
        }
        assert!(aborts <= 200, "no progress");
    }
    eprintln!("{aborts} aborts after a lake commit");
    assert!(aborts >= uploaded.len() / 2, "aborts after most commits");
    let c = snapshot(&aborted);
    assert_eq!(outcome(&a), outcome(&c));
    let hits_c = bdia_server::testing::lake_hits(&aborted).unwrap();
    assert!(hits_a == hits_c, "the lakes' rows differ after aborts");
    assert_eq!(lake_objects(&aborted).1, committed_a);
    assert_eq!(a.states, c.states, "visitor state after aborts");
}
