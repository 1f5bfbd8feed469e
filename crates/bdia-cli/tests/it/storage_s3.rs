//! `bdia serve` with its data on an S3 server (the test services' moto):
//! uploads staged on the bucket, processed into the Delta lake on the
//! bucket, reports and retraction over it, restarts (staging and orphans
//! swept), and SIGKILL mid-processing then restart: every row exactly
//! once.

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use bdia_server::testing::{lake_hits_at, LakeHit};
use bdia_store::blob::{file_key, BlobStore};
use bdia_store::sqlite::SqliteStore;
use bdia_store::storage::{s3_store, StorageUrl};
use bdia_store::{FileQuery, FileRecord, FileStatus, MetadataStore};

use crate::common::{prepared_exports, BdiaServe};
use crate::lake_ops::Api;

/// A fresh `s3://<test bucket>/<prefix>` no other test (or run) uses.
fn storage_url(name: &str) -> String {
    let bucket = std::env::var("BDIA_TEST_S3_BUCKET").unwrap_or_else(|_| {
        panic!("BDIA_TEST_S3_BUCKET is not set: run ./test.sh (it starts the S3 test server)")
    });
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    format!("s3://{bucket}/cli-{name}-{}-{nanos}", std::process::id())
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

/// The blob store of `url` (its staging in `local`).
fn s3_blobs(url: &str, local: &Path) -> BlobStore {
    let StorageUrl::S3 { bucket, prefix } = StorageUrl::parse(url).unwrap() else {
        panic!("an S3 URL")
    };
    BlobStore::open_object_store(
        s3_store(&bucket).unwrap(),
        StorageUrl::object_prefix(&prefix, "blobs"),
        local,
    )
    .unwrap()
}

/// Every file record of the data dir's database.
fn records(data: &Path) -> Vec<FileRecord> {
    runtime().block_on(async {
        let store = SqliteStore::open(&data.join("metadata.sqlite")).unwrap();
        let mut files = Vec::new();
        for c in store.list_companies().await.unwrap() {
            let q = FileQuery {
                limit: 1000,
                ..FileQuery::default()
            };
            files.extend(store.list_files(&c.id, &q).await.unwrap().files);
        }
        files.sort_by(|a, b| a.file_id.cmp(&b.file_id));
        files
    })
}

/// 2023-11-14T08:20:00Z.
const T0: i64 = 1_699_950_000;

/// A gzipped file of `n` page views of visitors `v0..v4` in suite rs1, one
/// row broken when `broken`.
fn gz_file(dir: &Path, name: &str, n: usize, first: i64, broken: bool) -> std::path::PathBuf {
    let mut text = String::from("timestamp,visitorID,reportSuiteID,userAgent,pageName\n");
    for i in 0..n {
        let t = first + i as i64 * 7;
        text.push_str(&format!("{t},v{},rs1,Mozilla/5.0,Page {i}\n", i % 5));
    }
    if broken {
        text.push_str("not-a-time,v1,rs1,Mozilla/5.0,Bad\n");
    }
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    enc.write_all(text.as_bytes()).unwrap();
    let path = dir.join(name);
    std::fs::write(&path, enc.finish().unwrap()).unwrap();
    path
}

/// (file id, row number) of every hit, each once.
fn rows_once(hits: &[LakeHit]) -> BTreeSet<(String, i64)> {
    let keys: BTreeSet<_> = hits
        .iter()
        .map(|h| (h.file_id.clone(), h.row_number))
        .collect();
    assert_eq!(keys.len(), hits.len(), "a row twice in the lake");
    keys
}

#[test]
fn serve_on_s3_stores_processes_reports_retracts_and_restarts() {
    let work = tempfile::tempdir().unwrap();
    let data = work.path().join("data");
    let url = storage_url("serve");
    let env = [("BDIA_STORAGE_URL", url.as_str())];
    let mut api = Api::start(&data, &env);
    let (st, ready) = api.call("GET", "/readyz", &[]);
    assert_eq!(st, 200, "{ready}");

    // Four files in two groups; f2 has one invalid row.
    let mut ids = Vec::new();
    let mut rows_of = BTreeMap::new();
    for (i, (n, group)) in [(30, "g1"), (45, "g2"), (20, "g1"), (25, "g2")]
        .into_iter()
        .enumerate()
    {
        let f = gz_file(
            work.path(),
            &format!("f{i}.csv.gz"),
            n,
            T0 + i as i64 * 600,
            i == 2,
        );
        let id = api.upload(&f, group)["file_id"]
            .as_str()
            .unwrap()
            .to_string();
        rows_of.insert(id.clone(), n);
        ids.push(id);
    }
    let id_refs: Vec<&str> = ids.iter().map(String::as_str).collect();
    api.wait_complete(&id_refs);
    let total: usize = rows_of.values().sum();
    let report_hits = |api: &Api| api.report_totals().0;

    // The lake on the bucket holds exactly the uploaded rows; the reports
    // read it; nothing of it is in the data dir.
    let hits = lake_hits_at(&url).unwrap();
    let keys = rows_once(&hits);
    assert_eq!(hits.len(), total);
    for (id, n) in &rows_of {
        let rows: BTreeSet<i64> = keys
            .iter()
            .filter(|(f, _)| f == id)
            .map(|(_, r)| *r)
            .collect();
        assert_eq!(rows.len(), *n, "rows of {id}");
    }
    assert_eq!(report_hits(&api), total as u64);
    assert!(!data.join("lake").exists(), "the lake is not local");
    assert_eq!(
        std::fs::read_dir(data.join("blobs/staging"))
            .unwrap()
            .count(),
        0
    );

    // The reject report was published to the bucket and is read from it;
    // processed files' staged bytes are released from the bucket.
    let (st, rejects) = api.call(
        "GET",
        &format!("/aa/collect/v1/events/{}/rejects", ids[2]),
        &[],
    );
    assert_eq!(st, 200, "{rejects}");
    assert!(rejects.to_string().contains("not-a-time"), "{rejects}");
    let blobs = s3_blobs(&url, &work.path().join("probe"));
    let listed = runtime().block_on(blobs.list_keys()).unwrap();
    assert_eq!(listed, [format!("rejects/{}.csv", ids[2])]);

    // Retraction over HTTP removes exactly the file's rows from the S3 lake.
    let (st, rec) = api.call(
        "DELETE",
        &format!("/aa/collect/v1/events/{}/hits", ids[1]),
        &[],
    );
    assert_eq!(st, 200, "{rec}");
    assert_eq!(rec["hits_retracted"], 45, "{rec}");
    let after = lake_hits_at(&url).unwrap();
    assert_eq!(after.len(), total - 45);
    assert!(after.iter().all(|h| h.file_id != ids[1]));
    assert_eq!(report_hits(&api), (total - 45) as u64);
    // And with `bdia admin --storage-url`, next to the running server.
    let out = bdia(&[
        "admin",
        "--data-dir",
        data.to_str().unwrap(),
        "--storage-url",
        &url,
        "retract",
        &ids[3],
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(out["hits_retracted"], 25, "{out}");
    let retracted = 45 + 25;
    let after = lake_hits_at(&url).unwrap();
    assert_eq!(after.len(), total - retracted);
    assert_eq!(report_hits(&api), (total - retracted) as u64);

    // Restart over leftovers: a staging file on the local disk (swept),
    // an unreferenced object on the bucket that another server could have
    // just published (kept: too young to be an orphan).
    api.server.kill();
    std::fs::write(data.join("blobs/staging/left.part"), b"x").unwrap();
    let young = file_key("published-a-moment-ago");
    runtime().block_on(async {
        let b = blobs.clone();
        let key = young.clone();
        tokio::task::spawn_blocking(move || {
            let mut s = b.stage("young").unwrap();
            s.write_all(b"bytes").unwrap();
            s.publish(&key).unwrap();
        })
        .await
        .unwrap();
    });
    api.server.restart();
    api.server.wait_healthy();
    assert_eq!(
        std::fs::read_dir(data.join("blobs/staging"))
            .unwrap()
            .count(),
        0,
        "staging cleared at startup"
    );
    assert!(runtime().block_on(blobs.exists(&young)).unwrap());
    assert_eq!(report_hits(&api), (total - retracted) as u64);
    assert!(lake_hits_at(&url).unwrap() == after);
    let (st, ready) = api.call("GET", "/readyz", &[]);
    assert_eq!(st, 200, "{ready}");

    // The sweep itself on the bucket: unreferenced objects go, referenced
    // ones stay.
    api.server.kill();
    let swept = runtime().block_on(async {
        let store = SqliteStore::open(&data.join("metadata.sqlite")).unwrap();
        bdia_server::tenancy::sweep_orphans(&store, &blobs, Duration::ZERO).await
    });
    assert_eq!(swept.unwrap(), 1);
    assert!(!runtime().block_on(blobs.exists(&young)).unwrap());
    assert!(runtime()
        .block_on(blobs.exists(&format!("rejects/{}.csv", ids[2])))
        .unwrap());
}

/// `bdia` with the storage flag and the test services' environment.
fn bdia(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_bdia"))
        .args(args)
        .output()
        .unwrap()
}

#[test]
fn a_bad_storage_url_is_a_clear_startup_error() {
    let work = tempfile::tempdir().unwrap();
    let data = work.path().to_str().unwrap();
    for (url, why) in [
        ("gs://bucket/p", "unsupported scheme 'gs'"),
        ("s3://Bad_Bucket/p", "the bucket must be"),
    ] {
        for cmd in [
            vec![
                "serve",
                "--data-dir",
                data,
                "--storage-url",
                url,
                "--listen",
                "127.0.0.1:0",
            ],
            vec![
                "admin",
                "--data-dir",
                data,
                "--storage-url",
                url,
                "company",
                "list",
            ],
        ] {
            let out = bdia(&cmd);
            let err = String::from_utf8_lossy(&out.stderr);
            assert!(!out.status.success(), "{cmd:?}");
            assert!(
                err.contains("storage_url") && err.contains(why),
                "{cmd:?}: {err}"
            );
        }
    }
}

#[test]
fn killed_mid_processing_on_s3_then_restarted_every_row_is_in_the_lake_once() {
    let work = tempfile::tempdir().unwrap();
    let (prepared, _) = prepared_exports(work.path(), 1500, 200, 0.02, "4", "400");
    let data = work.path().join("data");
    let url = storage_url("crash");
    let spawn = |processing: bool| {
        BdiaServe::spawn(
            &data,
            &[
                ("BDIA_STORAGE_URL", url.as_str()),
                ("BDIA_PROCESSING_ENABLED", &processing.to_string()),
                ("BDIA_PROCESSING_POLL_MS", "50"),
                ("BDIA_LAKE_COMPACTION_ENABLED", "false"),
            ],
        )
    };
    // Uploads with processing off.
    let mut server = spawn(false);
    server.wait_healthy();
    let creds = server.credentials();
    server.upload_dir(&prepared);
    server.kill();
    let uploaded = records(&data);
    assert!(uploaded.len() >= 8, "several files");
    // Throttled (set with `bdia admin --storage-url`), so that kills land
    // mid-file.
    let company = creds["company"].as_str().unwrap();
    let out = bdia(&[
        "admin",
        "--data-dir",
        data.to_str().unwrap(),
        "--storage-url",
        &url,
        "company",
        "settings",
        company,
        "--rows-per-second",
        "500",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    let settled = || {
        records(&data)
            .iter()
            .all(|f| matches!(f.status, FileStatus::Complete | FileStatus::Error))
    };
    let mut mid_run = 0;
    for i in 0..8u64 {
        let mut server = spawn(true);
        server.wait_healthy();
        std::thread::sleep(Duration::from_millis(300 + (i * 137) % 500));
        server.kill();
        if !settled() {
            mid_run += 1;
        }
    }
    assert!(mid_run >= 4, "only {mid_run} kills landed mid-processing");
    let mut server = spawn(true);
    server.wait_healthy();
    let t = Instant::now();
    while !settled() {
        assert!(
            t.elapsed() < Duration::from_secs(300),
            "processing did not finish"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    server.kill();

    let files = records(&data);
    assert!(files.iter().all(|f| f.status == FileStatus::Complete));
    let hits = lake_hits_at(&url).unwrap();
    let keys = rows_once(&hits);
    let expected: u64 = files.iter().map(|f| f.rows - f.invalid_rows).sum();
    assert_eq!(keys.len() as u64, expected, "every valid row exactly once");
    let by_file: BTreeSet<&String> = keys.iter().map(|(f, _)| f).collect();
    assert_eq!(by_file.len(), files.len());
    // Processed files' staged bytes are gone from the bucket.
    let blobs = s3_blobs(&url, &work.path().join("probe"));
    let left = runtime().block_on(blobs.list_keys()).unwrap();
    assert!(left.iter().all(|k| k.starts_with("rejects/")), "{left:?}");
}
