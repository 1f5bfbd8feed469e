//! Exactly-once publication: crashes at every step, recovery, reprocessing.

use std::collections::BTreeSet;

use bdia_lake::{Lake, LakeConfig, Recovery, SuiteZones};
use bdia_model::EnrichedHit;
use object_store::path::Path;
use object_store::{ObjectStoreExt, PutPayload};

use crate::common::*;

fn files() -> (Vec<EnrichedHit>, Vec<EnrichedHit>) {
    (
        enrich(sample_file(120, 1_700_000_000, 900)),
        enrich(sample_file(90, 1_700_200_000, 1_300)),
    )
}

/// Nothing staged; every object under hits/ belongs to a committed file.
fn assert_clean(lake: &Lake) {
    let snap = snapshot(lake.store().as_ref());
    assert!(
        !snap.keys().any(|k| k.starts_with("_staging/")),
        "staging leftovers: {:?}",
        snap.keys().collect::<Vec<_>>()
    );
    let mut committed = BTreeSet::new();
    for id in block_on(lake.reader().committed_files()).unwrap() {
        for p in block_on(lake.committed(&id)).unwrap().unwrap().parts {
            committed.insert(p.path);
        }
    }
    for k in snap.keys().filter(|k| k.starts_with("hits/")) {
        assert!(committed.contains(k), "{k} is visible but not committed");
    }
}

#[test]
fn the_same_file_twice_gives_identical_objects() {
    let (a, _) = files();
    let d1 = tempfile::tempdir().unwrap();
    let d2 = tempfile::tempdir().unwrap();
    let l1 = Lake::local(d1.path(), small_config()).unwrap();
    let l2 = Lake::local(d2.path(), small_config()).unwrap();
    write_file(&l1, "a", &a, zones());
    let once = snapshot(l1.store().as_ref());
    write_file(&l1, "a", &a, zones());
    assert_eq!(snapshot(l1.store().as_ref()), once, "republish is a no-op");
    write_file(&l2, "a", &a, zones());
    assert_eq!(
        snapshot(l2.store().as_ref()),
        once,
        "another run, same bytes"
    );
    assert_clean(&l1);
    let out = std::process::Command::new("find")
        .arg(d1.path().join("_staging"))
        .output()
        .unwrap();
    let found = String::from_utf8_lossy(&out.stdout);
    assert!(
        found.lines().count() <= 1,
        "no empty staging directories are left behind: {found}"
    );
}

#[test]
fn a_crash_at_any_step_then_recovery_and_reprocessing_gives_the_same_lake() {
    let (a, b) = files();
    let clean_dir = tempfile::tempdir().unwrap();
    let clean = Lake::local(clean_dir.path(), small_config()).unwrap();
    write_file(&clean, "a", &a, zones());
    write_file(&clean, "b", &b, zones());
    let expected = snapshot(clean.store().as_ref());

    let mut crashes = 0;
    for budget in 0.. {
        let dir = tempfile::tempdir().unwrap();
        let real = Lake::local(dir.path(), small_config()).unwrap();
        write_file(&real, "a", &a, zones());
        let (lake, store) = crashing_lake(&real, budget);
        let mut w = lake.begin(COMPANY, "b", zones()).unwrap();
        for h in &b {
            w.push(h).unwrap();
        }
        let result = block_on(lake.publish(w.finish().unwrap()));
        if result.is_ok() {
            assert!(!store.spent_all());
            assert_eq!(snapshot(real.store().as_ref()), expected);
            break;
        }
        crashes += 1;
        // Restart: recovery (itself interrupted once, at every other budget),
        // then the file is processed again.
        if budget % 2 == 1 {
            let (lake, _) = crashing_lake(&real, budget / 2);
            let _ = block_on(lake.recover());
        }
        let recovery: Recovery = block_on(real.recover()).unwrap();
        assert_clean(&real);
        let committed = block_on(real.committed("b")).unwrap().is_some();
        assert_eq!(
            committed,
            recovery.rolled_forward.contains(&"b".to_string())
                || block_on(real.reader().committed_files())
                    .unwrap()
                    .contains(&"b".to_string())
        );
        // File a was never touched.
        let a_parts = block_on(real.committed("a")).unwrap().unwrap();
        assert_eq!(a_parts, block_on(clean.committed("a")).unwrap().unwrap());
        write_file(&real, "b", &b, zones());
        assert_eq!(
            snapshot(real.store().as_ref()),
            expected,
            "after a crash at mutation {budget}"
        );
        assert_clean(&real);
    }
    assert!(crashes >= 10, "only {crashes} crash points");
}

#[test]
fn recovery_rolls_back_an_incomplete_staging_and_keeps_the_rest() {
    let (a, _) = files();
    let dir = tempfile::tempdir().unwrap();
    let lake = Lake::local(dir.path(), small_config()).unwrap();
    write_file(&lake, "a", &a, zones());
    let before = snapshot(lake.store().as_ref());
    // A half-uploaded staging: a part, no manifest.
    block_on(lake.store().put(
        &Path::from(
            "_staging/b/hits/company=acme/report_suite=rs1/date=2023-11-14/part-b-0000.parquet",
        ),
        PutPayload::from_static(b"half"),
    ))
    .unwrap();
    let r = block_on(lake.recover()).unwrap();
    assert_eq!(r.discarded, ["b"]);
    assert!(r.rolled_forward.is_empty());
    assert_eq!(snapshot(lake.store().as_ref()), before);
    assert_eq!(block_on(lake.recover()).unwrap(), Recovery::default());
}

#[test]
fn republishing_with_other_partitions_removes_the_old_parts() {
    let (a, _) = files();
    let d1 = tempfile::tempdir().unwrap();
    let d2 = tempfile::tempdir().unwrap();
    let l1 = Lake::local(d1.path(), small_config()).unwrap();
    let l2 = Lake::local(d2.path(), small_config()).unwrap();
    // First in UTC, then again with rs1 in Tokyo: days shift.
    write_file(&l1, "a", &a, SuiteZones::utc());
    let mut tokyo = zones();
    tokyo.insert("rs1", "Asia/Tokyo").unwrap();
    write_file(&l1, "a", &a, tokyo.clone());
    write_file(&l2, "a", &a, tokyo);
    assert_eq!(snapshot(l1.store().as_ref()), snapshot(l2.store().as_ref()));
    assert_clean(&l1);
}

#[test]
fn removing_a_file_leaves_no_trace() {
    let (a, b) = files();
    let d1 = tempfile::tempdir().unwrap();
    let d2 = tempfile::tempdir().unwrap();
    let l1 = Lake::local(d1.path(), LakeConfig::default()).unwrap();
    let l2 = Lake::local(d2.path(), LakeConfig::default()).unwrap();
    write_file(&l1, "a", &a, zones());
    write_file(&l1, "b", &b, zones());
    block_on(l1.remove_file("b")).unwrap();
    write_file(&l2, "a", &a, zones());
    assert_eq!(snapshot(l1.store().as_ref()), snapshot(l2.store().as_ref()));
}

#[test]
fn encoding_on_a_thread_or_inline_gives_the_same_bytes() {
    let (a, b) = files();
    let mut snaps = Vec::new();
    for encode_thread in [true, false] {
        for budget in [1usize, 16 << 20] {
            let dir = tempfile::tempdir().unwrap();
            let config = LakeConfig {
                encode_thread,
                memory_budget_bytes: budget,
                max_open_partitions: 2,
                ..small_config()
            };
            let lake = Lake::local(dir.path(), config).unwrap();
            write_file(&lake, "a", &a, zones());
            write_file(&lake, "b", &b, zones());
            snaps.push((budget, snapshot(lake.store().as_ref())));
        }
    }
    assert_eq!(snaps[0], snaps[2], "tiny budget: thread == inline");
    assert_eq!(snaps[1], snaps[3], "default budget: thread == inline");
}

#[test]
fn an_encoder_failure_is_reported_by_push_or_finish() {
    let (a, _) = files();
    let dir = tempfile::tempdir().unwrap();
    let not_a_dir = dir.path().join("file");
    std::fs::write(&not_a_dir, b"x").unwrap();
    for encode_thread in [true, false] {
        let config = LakeConfig {
            encode_thread,
            spool_dir: Some(not_a_dir.join("spool")),
            ..small_config()
        };
        let lake = Lake::local(dir.path().join("lake"), config).unwrap();
        let mut w = lake.begin(COMPANY, "a", zones()).unwrap();
        let pushed: Result<(), _> = a.iter().try_for_each(|h| w.push(h));
        let err = match pushed {
            Err(e) => e,
            Ok(()) => w.finish().unwrap_err(),
        };
        assert_eq!(err.code(), "lake_spool", "{err}");
    }
}
