//! The lake on an S3-compatible store (the test services' S3 server):
//! conditional puts of Delta log versions, exactly-once publication under
//! races and crashes, and deletes, compaction and vacuum.

use std::sync::{Arc, Barrier};

use bdia_lake::{Identifier, Lake};
use bdia_model::{enrich_file, Identity, MemoryStates};
use futures::TryStreamExt;
use object_store::aws::{AmazonS3Builder, S3ConditionalPut};
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt, PutMode, PutPayload};

use crate::common::*;
use crate::exactly_once::{crash_at_every_write, race_for_one_file, Opener};

/// The bucket of the test services (`BDIA_TEST_S3_BUCKET`, the `AWS_*`
/// variables pointing at the server).
fn s3() -> Arc<dyn ObjectStore> {
    let bucket = std::env::var("BDIA_TEST_S3_BUCKET").unwrap_or_else(|_| {
        panic!("BDIA_TEST_S3_BUCKET is not set: run ./test.sh (it starts the S3 test server)")
    });
    Arc::new(
        AmazonS3Builder::from_env()
            .with_bucket_name(bucket)
            .with_conditional_put(S3ConditionalPut::ETagMatch)
            .build()
            .unwrap(),
    )
}

/// A prefix of the bucket no other test (or run) uses.
fn unique(name: &str) -> Path {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    Path::from(format!("lake-{name}-{}-{nanos}/lake", std::process::id()))
}

fn s3_lake(root: &Path) -> Lake {
    Lake::new(s3(), root.clone(), small_config())
}

#[test]
fn of_writers_racing_for_one_log_version_exactly_one_wins() {
    let store = s3();
    let root = unique("race");
    for round in 0..8 {
        let path = root
            .clone()
            .join("_delta_log")
            .join(format!("{round:020}.json"));
        let barrier = Arc::new(Barrier::new(4));
        let results: Vec<_> = (0..4)
            .map(|w| {
                let (store, path, barrier) = (store.clone(), path.clone(), barrier.clone());
                std::thread::spawn(move || {
                    barrier.wait();
                    block_on(store.put_opts(
                        &path,
                        PutPayload::from(format!("writer {w}")),
                        PutMode::Create.into(),
                    ))
                })
            })
            .collect::<Vec<_>>()
            .into_iter()
            .map(|t| t.join().unwrap())
            .collect();
        let won: Vec<usize> = (0..4).filter(|i| results[*i].is_ok()).collect();
        assert_eq!(won.len(), 1, "round {round}: {results:?}");
        for r in results.iter().filter(|r| r.is_err()) {
            assert!(
                matches!(r, Err(object_store::Error::AlreadyExists { .. })),
                "round {round}: {r:?}"
            );
        }
        let kept = block_on(async { store.get(&path).await.unwrap().bytes().await.unwrap() });
        assert_eq!(&kept[..], format!("writer {}", won[0]).as_bytes());
    }
}

/// A lake under a fresh prefix of the bucket.
fn s3_place(name: &str) -> Opener {
    let root = unique(name);
    Arc::new(move || s3_lake(&root))
}

#[test]
fn two_processes_committing_the_same_file_on_s3_commit_it_once() {
    race_for_one_file(s3_place, 3);
}

#[test]
fn a_crash_at_any_write_on_s3_then_processing_again_commits_the_file_once() {
    crash_at_every_write(s3_place);
}

#[test]
fn retraction_privacy_deletion_compaction_and_vacuum_work_on_s3() {
    let root = unique("ops");
    let lake = s3_lake(&root);
    let salt = b"salt";
    let identity = Identity::new(*salt);
    let mut states = MemoryStates::default();
    let mut expected = 0u64;
    let mut of_v3 = 0u64;
    let mut f2 = 0u64;
    for f in 0..4u64 {
        let hits = sample_file(40, 1_700_000_000 + f as i64 * 3_000, 60);
        let out = enrich_file(hits, &identity, &mut states).unwrap();
        states.apply(&out.delta);
        expected += out.hits.len() as u64;
        if f == 2 {
            f2 = out.hits.len() as u64;
        }
        of_v3 += out
            .hits
            .iter()
            .filter(|h| h.visitor_id() == "v3" && f != 2)
            .count() as u64;
        write_file(&lake, &format!("f{f}"), &out.hits, zones());
    }
    let rows = |lake: &Lake| -> u64 { table_files(lake, COMPANY).iter().map(|(_, r)| r).sum() };
    assert_eq!(rows(&lake), expected);
    let r = block_on(lake.retract_file(COMPANY, "f2")).unwrap();
    assert_eq!((r.hits_removed, r.table_version), (f2, Some(5)));
    expected -= f2;
    assert_eq!(rows(&lake), expected);
    // Compaction before the deletion (which rewrites whole partitions).
    let before = table_files(&lake, COMPANY).len();
    let c = block_on(lake.compact(COMPANY, 2, 64 * 1024 * 1024)).unwrap();
    assert!(c.partitions > 0 && c.files_removed > c.files_added, "{c:?}");
    assert!(table_files(&lake, COMPANY).len() < before);
    assert_eq!(rows(&s3_lake(&root)), expected);
    let d =
        block_on(lake.delete_visitors(COMPANY, &Identifier::VisitorId("v3".into()), salt)).unwrap();
    assert_eq!(d.hits_removed, of_v3);
    expected -= of_v3;
    assert_eq!(rows(&s3_lake(&root)), expected);
    let data_files = |l: &Lake| {
        let all: Vec<object_store::ObjectMeta> =
            block_on(l.store().list(Some(&root)).try_collect()).unwrap();
        all.iter()
            .filter(|m| m.location.as_ref().ends_with(".parquet"))
            .count()
    };
    let stored = data_files(&lake);
    let v = block_on(lake.vacuum(COMPANY, std::time::Duration::ZERO)).unwrap();
    assert!(v.files_deleted > 0, "{v:?}");
    assert_eq!(data_files(&lake), stored - v.files_deleted as usize);
    assert_eq!(data_files(&lake), table_files(&lake, COMPANY).len());
    assert_eq!(rows(&s3_lake(&root)), expected);
}
