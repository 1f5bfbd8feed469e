//! A lake of the layout without companies (`hits/report_suite=...`,
//! version-1 commit records) moved under its companies: the same lake as
//! one written in the new layout, byte for byte, whatever crashes happen on
//! the way.

use std::collections::HashMap;

use bdia_lake::{Date, Lake, LayoutMigration};
use bdia_model::EnrichedHit;
use object_store::path::Path;
use object_store::{ObjectStoreExt, PutPayload};

use crate::common::*;

fn files() -> (Vec<EnrichedHit>, Vec<EnrichedHit>) {
    (
        enrich(sample_file(60, 1_700_000_000, 900)),
        enrich(sample_file(45, 1_700_100_000, 1_300)),
    )
}

/// File `a` of acme and file `b` of beta, both in suites rs1 and rs2.
fn write_both(lake: &Lake) {
    let (a, b) = files();
    write_company_file(lake, "acme", "a", &a, zones());
    write_company_file(lake, "beta", "b", &b, zones());
}

fn owners(pairs: &[(&str, &str)]) -> HashMap<String, String> {
    pairs
        .iter()
        .map(|(f, c)| (f.to_string(), c.to_string()))
        .collect()
}

/// Turns a lake into the layout an older release wrote: every part moved
/// from `hits/company=<c>/report_suite=...` to `hits/report_suite=...`, and
/// every commit record rewritten as version 1 (no company, old paths).
fn to_legacy(dir: &std::path::Path, lake: &Lake) {
    let store = lake.store();
    for id in block_on(lake.reader().committed_files()).unwrap() {
        let record = Path::from(format!("_commits/{id}.json"));
        let bytes = block_on(async { store.get(&record).await?.bytes().await }).unwrap();
        let mut json: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
        let obj = json.as_object_mut().unwrap();
        obj.remove("company");
        obj.insert("version".into(), 1.into());
        for part in obj["parts"].as_array_mut().unwrap() {
            let new = part["path"].as_str().unwrap().to_string();
            let (_, rest) = new
                .strip_prefix("hits/company=")
                .unwrap()
                .split_once('/')
                .unwrap();
            let old = format!("hits/{rest}");
            block_on(store.rename(&Path::from(new), &Path::from(old.as_str()))).unwrap();
            part["path"] = old.into();
        }
        let text = serde_json::to_vec_pretty(&json).unwrap();
        block_on(store.put(&record, PutPayload::from(text))).unwrap();
    }
    for entry in std::fs::read_dir(dir.join("hits")).unwrap() {
        let entry = entry.unwrap();
        if entry.file_name().to_string_lossy().starts_with("company=") {
            std::fs::remove_dir_all(entry.path()).unwrap();
        }
    }
}

fn legacy_dirs(dir: &std::path::Path) -> Vec<String> {
    let mut out: Vec<String> = std::fs::read_dir(dir.join("hits"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("report_suite="))
        .collect();
    out.sort();
    out
}

fn all_days(lake: &Lake, company: &str, suite: &str) -> Vec<bdia_lake::PartRef> {
    let (from, to): (Date, Date) = ("2000-01-01".parse().unwrap(), "2100-01-01".parse().unwrap());
    block_on(lake.reader().parts(company, suite, from, to)).unwrap()
}

#[test]
fn an_old_lake_is_moved_under_its_companies_and_equals_a_new_one() {
    let clean_dir = tempfile::tempdir().unwrap();
    let clean = Lake::local(clean_dir.path(), small_config()).unwrap();
    write_both(&clean);
    let expected = snapshot(clean.store().as_ref());
    assert!(expected
        .keys()
        .any(|k| k.starts_with("hits/company=beta/report_suite=rs1/")));

    let dir = tempfile::tempdir().unwrap();
    let lake = Lake::local(dir.path(), small_config()).unwrap();
    write_both(&lake);
    to_legacy(dir.path(), &lake);
    assert_eq!(
        legacy_dirs(dir.path()),
        ["report_suite=rs1", "report_suite=rs2"]
    );
    // Old records belong to no company: nothing is read before the move.
    assert!(all_days(&lake, "acme", "rs1").is_empty());
    assert_eq!(block_on(lake.legacy_files()).unwrap(), ["a", "b"]);

    let done = block_on(lake.migrate_layout(&owners(&[("a", "acme"), ("b", "beta")]))).unwrap();
    assert_eq!(
        done,
        LayoutMigration {
            moved: vec!["a".into(), "b".into()],
            unowned: vec![],
            swept: 0,
        }
    );
    assert_eq!(snapshot(lake.store().as_ref()), expected);
    assert!(
        legacy_dirs(dir.path()).is_empty(),
        "old directories are removed"
    );
    for (company, file) in [("acme", "a"), ("beta", "b")] {
        let parts = all_days(&lake, company, "rs1");
        assert!(!parts.is_empty());
        assert!(
            parts.iter().all(|p| p.file_id == file),
            "{company}: {parts:?}"
        );
    }

    // Again: nothing left to do.
    let again = block_on(lake.migrate_layout(&owners(&[("a", "acme")]))).unwrap();
    assert_eq!(again, LayoutMigration::default());
    assert_eq!(snapshot(lake.store().as_ref()), expected);
}

#[test]
fn a_crash_at_any_step_of_the_move_then_a_restart_gives_the_same_lake() {
    let clean_dir = tempfile::tempdir().unwrap();
    let clean = Lake::local(clean_dir.path(), small_config()).unwrap();
    write_both(&clean);
    let expected = snapshot(clean.store().as_ref());
    let who = owners(&[("a", "acme"), ("b", "beta")]);

    let mut crashes = 0;
    for budget in 0.. {
        let dir = tempfile::tempdir().unwrap();
        let real = Lake::local(dir.path(), small_config()).unwrap();
        write_both(&real);
        to_legacy(dir.path(), &real);
        let (lake, store) = crashing_lake(&real, budget);
        if block_on(lake.migrate_layout(&who)).is_ok() {
            assert!(!store.spent_all());
            assert_eq!(snapshot(real.store().as_ref()), expected);
            break;
        }
        crashes += 1;
        // Each record is either still old or complete in the new layout.
        let snap = snapshot(real.store().as_ref());
        for m in block_on(real.reader().commits()).unwrap() {
            for p in &m.parts {
                assert!(
                    snap.contains_key(&p.path),
                    "{} of {} is missing",
                    p.path,
                    m.file_id
                );
            }
        }
        // Restart (itself interrupted once, at every other budget).
        if budget % 2 == 1 {
            let (lake, _) = crashing_lake(&real, budget / 2);
            let _ = block_on(lake.migrate_layout(&who));
        }
        block_on(real.migrate_layout(&who)).unwrap();
        assert_eq!(
            snapshot(real.store().as_ref()),
            expected,
            "after a crash at mutation {budget}"
        );
        assert!(legacy_dirs(dir.path()).is_empty());
    }
    assert!(crashes >= 8, "only {crashes} crash points");
}

#[test]
fn files_of_no_known_company_stay_unread_and_stray_old_objects_are_swept() {
    let dir = tempfile::tempdir().unwrap();
    let lake = Lake::local(dir.path(), small_config()).unwrap();
    write_both(&lake);
    to_legacy(dir.path(), &lake);
    let stray = Path::from("hits/report_suite=rs1/date=2023-11-15/part-ghost-0000.parquet");
    block_on(lake.store().put(&stray, PutPayload::from_static(b"x"))).unwrap();
    let b_old: Vec<String> = block_on(lake.committed("b"))
        .unwrap()
        .unwrap()
        .parts
        .into_iter()
        .map(|p| p.path)
        .collect();

    let done = block_on(lake.migrate_layout(&owners(&[("a", "acme")]))).unwrap();
    assert_eq!(done.moved, ["a"]);
    assert_eq!(done.unowned, ["b"]);
    assert_eq!(done.swept, 1, "the stray object, not b's parts");
    let snap = snapshot(lake.store().as_ref());
    assert!(!snap.contains_key(stray.as_ref()));
    for p in &b_old {
        assert!(snap.contains_key(p), "{p} of the unowned file is kept");
    }
    assert_eq!(block_on(lake.legacy_files()).unwrap(), ["b"]);
    // b is nobody's: no company reads it, whatever the suite.
    for company in ["acme", "beta"] {
        assert!(all_days(&lake, company, "rs1")
            .iter()
            .all(|p| p.file_id == "a"));
    }
    assert!(all_days(&lake, "beta", "rs1").is_empty());
    // Once its company is known, it moves too.
    let later = block_on(lake.migrate_layout(&owners(&[("b", "beta")]))).unwrap();
    assert_eq!(later.moved, ["b"]);
    assert!(!all_days(&lake, "beta", "rs1").is_empty());
    assert!(legacy_dirs(dir.path()).is_empty());
}
