//! The reader lists the files of the tables' current snapshots only.

use bdia_lake::{Date, Lake, SuiteZones};
use object_store::path::Path;
use object_store::{ObjectStoreExt, PutPayload};

use crate::common::*;

fn date(s: &str) -> Date {
    s.parse().unwrap()
}

#[test]
fn parts_are_filtered_by_suite_day_and_commit() {
    let dir = tempfile::tempdir().unwrap();
    let lake = Lake::local(dir.path(), small_config()).unwrap();
    // 2023-11-14T22:13:20Z onwards, one hit an hour for three days.
    let hits = enrich(sample_file(72, 1_700_000_000, 3_600));
    write_file(&lake, "f1", &hits, SuiteZones::utc());
    // Debris that must never be listed: a part of an uncommitted file, and
    // an object of a committed file that its commit did not add.
    for p in [
        "hits/company=acme/report_suite=rs1/date=2023-11-15/part-ghost-0000.parquet",
        "hits/company=acme/report_suite=rs1/date=2023-11-15/part-f1-0042.parquet",
        "hits/company=acme/report_suite=rs1/date=2023-11-15/notes.txt",
    ] {
        block_on(
            lake.store()
                .put(&Path::from(p), PutPayload::from_static(b"x")),
        )
        .unwrap();
    }
    let reader = lake.reader();
    assert_eq!(
        block_on(reader.report_suites(COMPANY)).unwrap(),
        ["rs1", "rs2"]
    );
    let all =
        block_on(reader.parts(COMPANY, "rs1", date("2000-01-01"), date("2100-01-01"))).unwrap();
    let days: Vec<String> = all.iter().map(|p| p.date.to_string()).collect();
    assert_eq!(
        days,
        ["2023-11-14", "2023-11-15", "2023-11-16", "2023-11-17"]
    );
    assert!(all
        .iter()
        .all(|p| p.file_id.as_deref() == Some("f1") && p.report_suite == "rs1"));
    let rows: u64 = all.iter().map(|p| p.rows).sum();
    assert_eq!(
        rows,
        hits.iter().filter(|h| h.report_suite == "rs1").count() as u64
    );
    let some =
        block_on(reader.parts(COMPANY, "rs1", date("2023-11-15"), date("2023-11-16"))).unwrap();
    assert_eq!(some.len(), 2);
    assert_eq!(
        some[0].path.to_string(),
        "hits/company=acme/report_suite=rs1/date=2023-11-15/part-f1-0000.parquet"
    );
    assert!(
        block_on(reader.parts(COMPANY, "nope", date("2000-01-01"), date("2100-01-01")))
            .unwrap()
            .is_empty()
    );
}

#[test]
fn a_company_lists_only_its_own_parts_whatever_the_suite_ids() {
    let dir = tempfile::tempdir().unwrap();
    let lake = Lake::local(dir.path(), small_config()).unwrap();
    let hits = enrich(sample_file(30, 1_700_000_000, 600));
    write_company_file(&lake, "acme", "fa", &hits, SuiteZones::utc());
    write_company_file(&lake, "beta", "fb", &hits[..10], SuiteZones::utc());
    let reader = lake.reader();
    for (company, file) in [("acme", "fa"), ("beta", "fb")] {
        let parts =
            block_on(reader.parts(company, "rs1", date("2000-01-01"), date("2100-01-01"))).unwrap();
        assert!(!parts.is_empty());
        for p in &parts {
            assert_eq!(
                (p.company.as_str(), p.file_id.as_deref()),
                (company, Some(file))
            );
            assert!(p
                .path
                .as_ref()
                .starts_with(&format!("hits/company={company}/report_suite=rs1/")));
        }
        assert_eq!(
            block_on(reader.report_suites(company)).unwrap(),
            ["rs1", "rs2"]
        );
    }
    assert!(
        block_on(reader.parts("gamma", "rs1", date("2000-01-01"), date("2100-01-01")))
            .unwrap()
            .is_empty()
    );
    assert!(block_on(reader.report_suites("gamma")).unwrap().is_empty());
    assert_eq!(
        block_on(reader.parts("a/b", "rs1", date("2000-01-01"), date("2100-01-01")))
            .unwrap_err()
            .code(),
        "lake_invalid_name"
    );
}

#[test]
fn an_empty_lake_lists_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let lake = Lake::local(dir.path(), small_config()).unwrap();
    let reader = lake.reader();
    assert!(block_on(reader.report_suites(COMPANY)).unwrap().is_empty());
    assert!(
        block_on(reader.parts(COMPANY, "rs1", date("2000-01-01"), date("2100-01-01")))
            .unwrap()
            .is_empty()
    );
    assert_eq!(
        block_on(lake.recover(&Default::default())).unwrap(),
        Default::default()
    );
}

#[test]
fn a_lake_under_a_root_prefix_works_the_same() {
    let dir = tempfile::tempdir().unwrap();
    // A store that lists in path order, like object stores do.
    let store = std::sync::Arc::new(CrashingStore::new(
        std::sync::Arc::new(
            object_store::local::LocalFileSystem::new_with_prefix(dir.path()).unwrap(),
        ),
        i64::MAX,
    ));
    let lake = Lake::new(store, Path::from("data/lake"), small_config());
    let hits = enrich(sample_file(10, 1_700_000_000, 60));
    write_file(&lake, "f1", &hits, SuiteZones::utc());
    let parts =
        block_on(
            lake.reader()
                .parts(COMPANY, "rs1", date("2000-01-01"), date("2100-01-01")),
        )
        .unwrap();
    assert!(!parts.is_empty());
    assert!(parts[0]
        .path
        .to_string()
        .starts_with("data/lake/hits/company=acme/report_suite=rs1/"));
    assert!(dir
        .path()
        .join("data/lake/hits/company=acme/_delta_log/00000000000000000001.json")
        .exists());
}

#[test]
fn a_reader_sees_later_commits_and_retractions() {
    let dir = tempfile::tempdir().unwrap();
    let lake = Lake::local(dir.path(), small_config()).unwrap();
    let reader = lake.reader();
    let all = |r: &bdia_lake::LakeReader| {
        block_on(r.parts(COMPANY, "rs1", date("2000-01-01"), date("2100-01-01"))).unwrap()
    };
    assert!(all(&reader).is_empty());
    // 2023-11-14T22:13:20Z + a few minutes: the 14th in UTC, the 15th in Tokyo.
    let hits = enrich(sample_file(5, 1_700_000_000, 60));
    write_file(&lake, "f1", &hits, SuiteZones::utc());
    let first = all(&reader);
    assert_eq!(first.len(), 1);
    assert_eq!(first[0].date, date("2023-11-14"));
    // The same file again, under another zone: it is committed already.
    let mut tokyo = SuiteZones::utc();
    tokyo.insert("rs1", "Asia/Tokyo").unwrap();
    write_file(&lake, "f1", &hits, tokyo.clone());
    assert_eq!(all(&reader.clone()), first);
    write_file(&lake, "f2", &hits, tokyo);
    let both = all(&reader);
    assert_eq!(both.len(), 2);
    assert_eq!(both[1].date, date("2023-11-15"));
    let r = block_on(lake.retract_file(COMPANY, "f1")).unwrap();
    assert_eq!(r.hits_removed, hits.len() as u64);
    let left = all(&reader);
    assert_eq!(left.len(), 1);
    assert_eq!(left[0].file_id.as_deref(), Some("f2"));
}
