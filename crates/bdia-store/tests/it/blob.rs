use std::io::{Read, Write};
use std::path::Path;

use bdia_store::blob::{file_key, rejects_key, BlobStore};
use bdia_store::storage::{s3_store, StorageUrl};
use futures::TryStreamExt;
use object_store::path::Path as ObjectPath;

/// Pseudo-random bytes (incompressible enough to be a real payload).
fn payload(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

/// Stages `bytes` and publishes them under `key` on a blocking thread, as
/// the upload pass does.
async fn publish(blobs: &BlobStore, name: &str, key: &str, bytes: Vec<u8>) {
    let (blobs, name, key) = (blobs.clone(), name.to_string(), key.to_string());
    tokio::task::spawn_blocking(move || {
        let mut staged = blobs.stage(&name).unwrap();
        staged.write_all(&bytes).unwrap();
        staged.publish(&key).unwrap();
    })
    .await
    .unwrap();
}

async fn read_all(blobs: &BlobStore, key: &str) -> Vec<u8> {
    let mut out = Vec::new();
    blobs
        .open_read(key)
        .await
        .unwrap()
        .read_to_end(&mut out)
        .unwrap();
    out
}

fn staging_entries(local: &Path) -> usize {
    std::fs::read_dir(local.join("staging")).unwrap().count()
}

/// The same life of blobs on either backend: publish (small, and large
/// enough for a multipart upload), read back (whole, streamed, as a local
/// file), list, delete, and nothing left in staging.
async fn exercise(blobs: &BlobStore, local: &Path) {
    blobs.check().await.unwrap();
    publish(blobs, "up1", &file_key("f1"), b"hello".to_vec()).await;
    assert_eq!(&blobs.get(&file_key("f1")).await.unwrap()[..], b"hello");
    assert!(blobs.exists(&file_key("f1")).await.unwrap());
    assert_eq!(read_all(blobs, &file_key("f1")).await, b"hello");
    assert!(matches!(
        blobs.open_read("files/none").await,
        Err(bdia_store::StoreError::NotFound(_))
    ));

    // 20 MiB: three parts of a multipart upload on an object store.
    let big = payload(20 * 1024 * 1024 + 17, 7);
    publish(blobs, "up-big", &file_key("big"), big.clone()).await;
    assert!(read_all(blobs, &file_key("big")).await == big);
    let streamed: Vec<u8> = blobs
        .get_stream(&file_key("big"))
        .await
        .unwrap()
        .map_ok(|b| b.to_vec())
        .try_concat()
        .await
        .unwrap();
    assert!(streamed == big);
    publish(blobs, "r1", &rejects_key("f1"), b"row,kind\n".to_vec()).await;

    // Dropped without publish: nothing left in staging (nor downloads).
    let mut staged = blobs.stage("up2").unwrap();
    staged.write_all(b"partial").unwrap();
    drop(staged);
    assert_eq!(staging_entries(local), 0);

    let mut keys = blobs.list_keys().await.unwrap();
    keys.sort();
    assert_eq!(keys, [file_key("big"), file_key("f1"), rejects_key("f1")]);
    blobs.delete(&file_key("f1")).await.unwrap();
    blobs.delete(&file_key("f1")).await.unwrap();
    assert!(!blobs.exists(&file_key("f1")).await.unwrap());
    let b = blobs.clone();
    tokio::task::spawn_blocking(move || {
        b.delete_blocking(&file_key("big")).unwrap();
        b.delete_blocking(&file_key("big")).unwrap();
    })
    .await
    .unwrap();
    assert_eq!(blobs.list_keys().await.unwrap(), [rejects_key("f1")]);
    blobs.delete(&rejects_key("f1")).await.unwrap();
    assert!(blobs.list_keys().await.unwrap().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn staged_files_are_published_or_left_nowhere() {
    let dir = tempfile::tempdir().unwrap();
    let blobs = BlobStore::open_local(dir.path()).unwrap();
    exercise(&blobs, dir.path()).await;
    // The objects are the files under the root.
    assert!(blobs
        .local_path(&file_key("x"))
        .unwrap()
        .starts_with(dir.path().canonicalize().unwrap()));
}

/// The S3 bucket the test services made (`BDIA_TEST_S3_BUCKET`, with the
/// `AWS_*` variables pointing at the server).
fn test_bucket() -> String {
    std::env::var("BDIA_TEST_S3_BUCKET").unwrap_or_else(|_| {
        panic!("BDIA_TEST_S3_BUCKET is not set: run ./test.sh (it starts the S3 test server)")
    })
}

/// A prefix no other test run uses.
fn unique_prefix(name: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    format!("{name}-{}-{nanos}", std::process::id())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn staged_files_on_s3_are_uploaded_listed_read_and_deleted() {
    let bucket = test_bucket();
    let prefix = unique_prefix("blobs");
    let url = StorageUrl::parse(&format!("s3://{bucket}/{prefix}")).unwrap();
    let StorageUrl::S3 { bucket, prefix } = url else {
        panic!("an S3 URL")
    };
    let store = s3_store(&bucket).unwrap();
    let local = tempfile::tempdir().unwrap();
    let blobs = BlobStore::open_object_store(
        store.clone(),
        StorageUrl::object_prefix(&prefix, "blobs"),
        local.path(),
    )
    .unwrap();
    assert!(blobs.local_path(&file_key("f1")).is_none());

    // Objects are under <prefix>/blobs/ of the bucket, nothing is kept on
    // the local disk once published.
    publish(&blobs, "up", &file_key("seen"), b"abc".to_vec()).await;
    let raw: Vec<String> = store
        .list(Some(&ObjectPath::from(prefix.as_str())))
        .map_ok(|m| m.location.to_string())
        .try_collect()
        .await
        .unwrap();
    assert_eq!(raw, [format!("{prefix}/blobs/files/seen.csv.gz")]);
    assert_eq!(staging_entries(local.path()), 0);
    blobs.delete(&file_key("seen")).await.unwrap();

    exercise(&blobs, local.path()).await;

    // An unreachable store is not ready, and says so within bounds.
    let down = object_store::aws::AmazonS3Builder::from_env()
        .with_endpoint("http://127.0.0.1:9")
        .with_bucket_name(&bucket)
        .build()
        .unwrap();
    let down = BlobStore::open_object_store(
        std::sync::Arc::new(down),
        ObjectPath::from("x"),
        local.path(),
    )
    .unwrap();
    let t = std::time::Instant::now();
    assert!(down.check().await.is_err());
    assert!(
        t.elapsed() < std::time::Duration::from_secs(30),
        "{:?}",
        t.elapsed()
    );
}
