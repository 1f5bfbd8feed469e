//! Exactly-once commits: the txn fence, crashes at every write, two
//! writers racing, the move of a lake of commit records.

use std::sync::Arc;

use bdia_lake::{CommitOutcome, FileManifest, FileTxn, Lake, LakeConfig, PartEntry};
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

/// Every data file of the table is in its snapshot exactly once, and the
/// snapshot's rows are the files' hits.
fn assert_rows(lake: &Lake, expected: usize) {
    let files = table_files(lake, COMPANY);
    let mut paths: Vec<&String> = files.iter().map(|(p, _)| p).collect();
    paths.dedup();
    assert_eq!(paths.len(), files.len(), "a file listed twice: {files:?}");
    let rows: u64 = files.iter().map(|(_, r)| r).sum();
    assert_eq!(rows as usize, expected);
}

#[test]
fn the_same_file_twice_is_committed_once_with_identical_objects() {
    let (a, _) = files();
    let d1 = tempfile::tempdir().unwrap();
    let d2 = tempfile::tempdir().unwrap();
    let l1 = Lake::local(d1.path(), small_config()).unwrap();
    let l2 = Lake::local(d2.path(), small_config()).unwrap();
    assert!(matches!(
        write_file(&l1, "a", &a, zones()),
        CommitOutcome::Committed { table_version: 1 }
    ));
    let once = data_objects(l1.store().as_ref());
    let files_once = table_files(&l1, COMPANY);
    assert_eq!(
        write_file(&l1, "a", &a, zones()),
        CommitOutcome::AlreadyCommitted { txn_version: 1 }
    );
    assert_eq!(
        data_objects(l1.store().as_ref()),
        once,
        "nothing written again"
    );
    assert_eq!(table_files(&l1, COMPANY), files_once);
    write_file(&l2, "a", &a, zones());
    assert_eq!(
        data_objects(l2.store().as_ref()),
        once,
        "another run, same bytes"
    );
    assert_rows(&l1, a.len());
    // A later file of the same group commits; an earlier one is found.
    let group = |version| FileTxn {
        app_id: "g-a".into(),
        version,
    };
    let publish = |id: &str, version| {
        let mut w = l1.begin(COMPANY, id, zones()).unwrap();
        for h in &a[..10] {
            w.push(h).unwrap();
        }
        block_on(l1.publish(w.finish().unwrap(), &group(version))).unwrap()
    };
    assert!(matches!(publish("a2", 2), CommitOutcome::Committed { .. }));
    assert_eq!(
        publish("a1", 1),
        CommitOutcome::AlreadyCommitted { txn_version: 2 }
    );
    assert_eq!(
        block_on(l1.committed_version(COMPANY, "g-a")).unwrap(),
        Some(2)
    );
}

/// A place for a lake, opened anew by each "process" that uses it.
pub type Opener = Arc<dyn Fn() -> Lake + Send + Sync>;

/// A lake in a fresh temporary directory.
fn local_place(_name: &str) -> Opener {
    let dir = Arc::new(tempfile::tempdir().unwrap());
    Arc::new(move || Lake::local(dir.path(), small_config()).unwrap())
}

/// The store failed at every write of a publication in turn; each time,
/// the file processed again by a new process commits it once, with the
/// objects of an uninterrupted run. `place(name)` gives a fresh lake.
pub fn crash_at_every_write(place: impl Fn(&str) -> Opener) {
    let (a, b) = files();
    let clean = place("clean")();
    write_file(&clean, "a", &a, zones());
    write_file(&clean, "b", &b, zones());
    let expected_files = table_files(&clean, COMPANY);
    let expected_objects = lake_data_objects(&clean);

    let mut crashes = 0;
    for budget in 0.. {
        let open = place(&format!("crash{budget}"));
        let real = open();
        write_file(&real, "a", &a, zones());
        let (lake, store) = crashing_lake(&real, budget);
        let mut w = lake.begin(COMPANY, "b", zones()).unwrap();
        for h in &b {
            w.push(h).unwrap();
        }
        let result = block_on(lake.publish(w.finish().unwrap(), &txn_of("b")));
        assert!(
            budget < 200,
            "still failing with a budget of 200 writes: {result:?}"
        );
        if result.is_ok() {
            assert!(!store.spent_all());
            assert_eq!(table_files(&real, COMPANY), expected_files);
            break;
        }
        crashes += 1;
        // Before the commit, readers see only file a.
        assert_rows(&real, a.len());
        // Restart: the file is processed again, by a new process.
        let restarted = open();
        write_file(&restarted, "b", &b, zones());
        assert_eq!(
            table_files(&restarted, COMPANY),
            expected_files,
            "after a crash at write {budget}"
        );
        assert_rows(&restarted, a.len() + b.len());
        // Objects of the failed attempt were overwritten by identical ones.
        let objects = lake_data_objects(&restarted);
        for (path, bytes) in &expected_objects {
            assert_eq!(objects.get(path), Some(bytes), "{path}");
        }
    }
    assert!(crashes >= 3, "only {crashes} crash points");
}

#[test]
fn a_crash_at_any_write_then_processing_again_commits_the_file_once() {
    crash_at_every_write(local_place);
}

/// Two processes (separate lakes over one place) publish the same file at
/// once, `rounds` times: one commits, the other finds it committed; a file
/// of another group commits after them.
pub fn race_for_one_file(place: impl Fn(&str) -> Opener, rounds: usize) {
    let (a, b) = files();
    for round in 0..rounds {
        let open = place(&format!("race{round}"));
        // The table exists: both race for the file's commit, not the create.
        write_file(&open(), "first", &a[..5], zones());
        let barrier = Arc::new(std::sync::Barrier::new(2));
        let outcomes: Vec<CommitOutcome> = (0..2)
            .map(|_| {
                let (open, a, barrier) = (open.clone(), a.clone(), barrier.clone());
                std::thread::spawn(move || {
                    let lake = open();
                    let mut w = lake.begin(COMPANY, "raced", zones()).unwrap();
                    for h in &a {
                        w.push(h).unwrap();
                    }
                    let spooled = w.finish().unwrap();
                    barrier.wait();
                    block_on(lake.publish(spooled, &txn_of("raced"))).unwrap()
                })
            })
            .collect::<Vec<_>>()
            .into_iter()
            .map(|t| t.join().unwrap())
            .collect();
        let won = outcomes
            .iter()
            .filter(|o| matches!(o, CommitOutcome::Committed { .. }))
            .count();
        assert_eq!(won, 1, "round {round}: {outcomes:?}");
        assert!(
            outcomes.contains(&CommitOutcome::AlreadyCommitted { txn_version: 1 }),
            "round {round}: {outcomes:?}"
        );
        let lake = open();
        assert_rows(&lake, 5 + a.len());
        assert_eq!(
            write_file(&lake, "other", &b, zones()),
            CommitOutcome::Committed { table_version: 3 }
        );
        assert_rows(&lake, 5 + a.len() + b.len());
    }
}

#[test]
fn two_processes_committing_the_same_file_commit_it_once() {
    race_for_one_file(local_place, 4);
}

/// Turns file `id` of `lake` into the format before Delta tables: its parts
/// stay, its commit record is written to `_commits/`, and its table is
/// removed (as if never created).
fn write_record(dir: &std::path::Path, lake: &Lake, id: &str) -> FileManifest {
    let parts: Vec<PartEntry> = block_on(lake.files(COMPANY))
        .unwrap()
        .into_iter()
        .filter(|f| bdia_lake::layout::part_file_id(&f.path) == Some(id))
        .map(|f| PartEntry {
            path: format!("{}/{}", bdia_lake::layout::company_dir(COMPANY), f.path),
            report_suite: f.report_suite,
            date: f.date,
            rows: f.rows,
            bytes: f.bytes,
        })
        .collect();
    let m = FileManifest {
        version: bdia_lake::MANIFEST_VERSION,
        file_id: id.into(),
        company: COMPANY.into(),
        rows: parts.iter().map(|p| p.rows).sum(),
        parts,
        stale: Vec::new(),
    };
    std::fs::create_dir_all(dir.join("_commits")).unwrap();
    std::fs::write(
        dir.join(format!("_commits/{id}.json")),
        m.to_json().unwrap(),
    )
    .unwrap();
    m
}

#[test]
fn a_lake_of_commit_records_moves_into_its_table_once() {
    let (a, b) = files();
    let dir = tempfile::tempdir().unwrap();
    let old = Lake::local(dir.path(), small_config()).unwrap();
    write_file(&old, "a", &a, zones());
    write_file(&old, "b", &b, zones());
    let expected = table_files(&old, COMPANY);
    write_record(dir.path(), &old, "a");
    write_record(dir.path(), &old, "b");
    std::fs::remove_dir_all(dir.path().join("hits/company=acme/_delta_log")).unwrap();
    // Leftovers of an interrupted publication of that format.
    let lake = Lake::local(dir.path(), small_config()).unwrap();
    block_on(lake.store().put(
        &Path::from("_staging/c/_manifest.json"),
        PutPayload::from_static(b"{}"),
    ))
    .unwrap();
    let mut files = lake_legacy(&lake);
    files.sort();
    assert_eq!(
        files,
        [
            ("a".to_string(), COMPANY.to_string()),
            ("b".into(), COMPANY.into())
        ]
    );
    let txns = [("a", 1), ("b", 2)]
        .into_iter()
        .map(|(id, v)| {
            (
                id.to_string(),
                FileTxn {
                    app_id: "g".into(),
                    version: v,
                },
            )
        })
        .collect();
    let r = block_on(lake.recover(&txns)).unwrap();
    assert_eq!(r.migrated, ["a", "b"]);
    assert_eq!(r.discarded, 1);
    assert!(r.unowned.is_empty());
    assert_eq!(table_files(&lake, COMPANY), expected);
    assert_eq!(
        block_on(lake.committed_version(COMPANY, "g")).unwrap(),
        Some(2)
    );
    assert!(!dir.path().join("_commits/a.json").exists());
    // Again: nothing to do.
    let again = block_on(lake.recover(&txns)).unwrap();
    assert_eq!(again, Default::default());
    // A crash after a commit, before its record was deleted: the record is
    // found committed and only deleted.
    write_record(dir.path(), &lake, "b");
    let r = block_on(
        Lake::local(dir.path(), small_config())
            .unwrap()
            .recover(&txns),
    )
    .unwrap();
    assert_eq!(r.migrated, ["b"]);
    assert_eq!(table_files(&lake, COMPANY), expected);
    // A record of no known file stays, unread.
    write_record(dir.path(), &lake, "a");
    let r = block_on(lake.recover(&Default::default())).unwrap();
    assert_eq!(r.unowned, ["a"]);
    assert!(dir.path().join("_commits/a.json").exists());
}

fn lake_legacy(lake: &Lake) -> Vec<(String, String)> {
    block_on(lake.legacy_files()).unwrap()
}

#[test]
fn a_file_without_hits_commits_its_transaction() {
    let dir = tempfile::tempdir().unwrap();
    let lake = Lake::local(dir.path(), LakeConfig::default()).unwrap();
    assert!(matches!(
        write_file(&lake, "empty", &[], zones()),
        CommitOutcome::Committed { .. }
    ));
    assert!(table_files(&lake, COMPANY).is_empty());
    assert_eq!(
        block_on(lake.committed_version(COMPANY, "g-empty")).unwrap(),
        Some(1)
    );
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
            snaps.push((budget, data_objects(lake.store().as_ref())));
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
