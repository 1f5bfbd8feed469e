//! Several nodes on shared infrastructure: three `bdia serve` processes on
//! one PostgreSQL database and one S3 bucket (the servers test.sh starts),
//! uploads spread round-robin across them, nodes SIGKILLed at random points
//! and restarted, one paused (SIGSTOP) past its leases and resumed. At the
//! end every file is COMPLETE, the lake holds every row exactly once and
//! equals a single-node run of the same uploads, and the lease records show
//! that no group was ever held by two nodes at once.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use bdia_server::testing::{fresh_database, service_env, unique_name};
use bdia_store::postgres::PgStore;
use bdia_store::sqlite::SqliteStore;
use bdia_store::{FileRecord, FileStatus, GroupRef, MetadataStore};

use crate::common::{prepared_exports, store_records, upload, BdiaServe, Lcg};

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

/// The prepared files, interleaved across groups in each group's upload
/// order: (visitor group, path).
fn upload_order(prepared: &Path) -> Vec<(String, PathBuf)> {
    let manifest: serde_json::Value =
        serde_json::from_slice(&std::fs::read(prepared.join("manifest.json")).unwrap()).unwrap();
    let groups: Vec<(String, Vec<PathBuf>)> = manifest["groups"]
        .as_array()
        .unwrap()
        .iter()
        .map(|g| {
            let files = g["files"]
                .as_array()
                .unwrap()
                .iter()
                .map(|f| prepared.join(f["path"].as_str().unwrap()))
                .collect();
            (g["id"].as_str().unwrap().to_string(), files)
        })
        .collect();
    let most = groups.iter().map(|(_, f)| f.len()).max().unwrap_or(0);
    let mut order = Vec::new();
    for i in 0..most {
        for (g, files) in &groups {
            if let Some(p) = files.get(i) {
                order.push((g.clone(), p.clone()));
            }
        }
    }
    order
}

/// `bdia upload FILE --vgid GROUP` to the server at `url`.
fn upload_file(url: &str, creds: &serde_json::Value, group: &str, file: &Path) {
    upload(
        url,
        creds,
        &[
            file.as_os_str(),
            "--vgid".as_ref(),
            group.as_ref(),
            "--json".as_ref(),
        ],
    );
}

/// `GET path` on 127.0.0.1:port with a bearer token: the whole answer.
fn get(port: u16, path: &str, token: &str, api_key: &str) -> String {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {token}\r\n\
         x-api-key: {api_key}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut answer = String::new();
    s.read_to_string(&mut answer).unwrap();
    answer
}

/// Waits until every file of `store` is COMPLETE or ERROR.
fn wait_settled(rt: &tokio::runtime::Runtime, store: &dyn MetadataStore, expected: usize) {
    let t = Instant::now();
    loop {
        let (files, _) = rt.block_on(store_records(store));
        if files.len() >= expected
            && files
                .iter()
                .all(|f| matches!(f.status, FileStatus::Complete | FileStatus::Error))
        {
            return;
        }
        assert!(
            t.elapsed() < Duration::from_secs(600),
            "processing did not finish: {:?}",
            files
                .iter()
                .map(|f| (&f.visitor_group_id, f.group_seq, f.status))
                .collect::<Vec<_>>()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Rows as readers see them, file ids left out (they differ between runs):
/// (report suite, every other column).
fn rows(hits: Vec<bdia_server::testing::LakeHit>) -> Vec<(String, String)> {
    let mut v: Vec<_> = hits.into_iter().map(|h| (h.report_suite, h.all)).collect();
    v.sort();
    v
}

const LEASE_MS: u64 = 1_500;

#[test]
fn three_nodes_killed_and_paused_process_every_row_once_like_one_node() {
    let work = tempfile::tempdir().unwrap();
    let (prepared, _) = prepared_exports(work.path(), 1500, 200, 0.02, "4", "300");
    let order = upload_order(&prepared);
    let groups: BTreeSet<_> = order.iter().map(|(g, _)| g.clone()).collect();
    assert!(
        order.len() >= 12 && groups.len() >= 3,
        "several files per group"
    );

    // 1. One node, embedded database and local storage: the reference.
    let single = work.path().join("single");
    let mut one = BdiaServe::start(
        &single,
        &[
            ("BDIA_PROCESSING_POLL_MS", "50"),
            ("BDIA_LAKE_COMPACTION_ENABLED", "false"),
        ],
    );
    let creds1 = one.credentials();
    for (g, p) in &order {
        upload_file(&one.url(), &creds1, g, p);
    }
    let rt = runtime();
    let sqlite = SqliteStore::open(&single.join("metadata.sqlite")).unwrap();
    wait_settled(&rt, &sqlite, order.len());
    one.kill();
    let (ref_files, ref_states) = rt.block_on(store_records(&sqlite));
    assert!(ref_files.iter().all(|f| f.status == FileStatus::Complete));
    let ref_rows = rows(bdia_server::testing::lake_hits(&single).unwrap());
    assert!(!ref_rows.is_empty());

    // 2. Three nodes on one database and one bucket.
    let db = fresh_database("bdia_multinode");
    let bucket = service_env("BDIA_TEST_S3_BUCKET");
    let storage = format!("s3://{bucket}/{}", unique_name("multinode"));
    let lease = LEASE_MS.to_string();
    let node_env = |id: &'static str| -> Vec<(&'static str, String)> {
        vec![
            ("BDIA_METADATA_URL", db.clone()),
            ("BDIA_STORAGE_URL", storage.clone()),
            ("BDIA_NODE_ID", id.to_string()),
            ("BDIA_PROCESSING_LEASE_MS", lease.clone()),
            ("BDIA_PROCESSING_POLL_MS", "50".to_string()),
            ("BDIA_LAKE_COMPACTION_ENABLED", "false".to_string()),
            ("BDIA_PROCESSING_ENABLED", "false".to_string()),
        ]
    };
    let spawn = |id: &'static str, processing: bool| {
        let mut env = node_env(id);
        env.last_mut().unwrap().1 = processing.to_string();
        let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let dir = work.path().join(id);
        std::fs::create_dir_all(dir.join("logs")).unwrap();
        BdiaServe::spawn_logged(&dir, &env, &dir.join("logs"))
    };
    // The first node bootstraps the tenant; the others create nothing.
    let mut first = spawn("node-1", false);
    first.wait_healthy();
    let creds = first.credentials();
    let mut nodes = vec![first, spawn("node-2", false), spawn("node-3", false)];
    for (n, id) in nodes[1..].iter_mut().zip(["node-2", "node-3"]) {
        n.wait_healthy();
        assert!(
            !work.path().join(id).join("credentials.json").exists(),
            "only the first node makes credentials"
        );
    }
    // A token of one node is good on every node.
    let token = nodes[0].access_token();
    for n in &nodes {
        let answer = get(
            n.port(),
            "/aa/collect/v1/events?vgid=none",
            &token,
            creds["client_id"].as_str().unwrap(),
        );
        assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    }
    for (i, (g, p)) in order.iter().enumerate() {
        upload_file(&nodes[i % 3].url(), &creds, g, p);
    }
    for n in &mut nodes {
        n.kill();
    }
    // The same salt as the single node's company, so that the visitor ids
    // derived from customer IDs are the same in both lakes.
    let salt = rt
        .block_on(sqlite.get_company(creds1["company"].as_str().unwrap()))
        .unwrap()
        .unwrap()
        .salt;
    let out = Command::new("psql")
        .arg(&db)
        .args([
            "-q",
            "-c",
            &format!(
                "UPDATE companies SET salt = '{salt}' WHERE id = '{}'",
                creds["company"].as_str().unwrap()
            ),
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // A throttle keeps files in flight long enough for kills to land
    // mid-file (split among the live nodes); it changes timing only.
    let company = creds["company"].as_str().unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_bdia"))
        .args([
            "admin",
            "company",
            "settings",
            company,
            "--rows-per-second",
            "600",
        ])
        .arg("--data-dir")
        .arg(work.path().join("admin"))
        .args(["--metadata-url", &db])
        .env("BDIA_STORAGE_URL", &storage)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // 3. Processing on every node; kills at random points.
    let ids = ["node-1", "node-2", "node-3"];
    let mut nodes: Vec<BdiaServe> = ids.iter().map(|id| spawn(id, true)).collect();
    let pg = rt.block_on(PgStore::connect(&db, 2)).unwrap();
    let seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64;
    eprintln!("kill points seeded with {seed}");
    let mut rng = Lcg(seed);
    let settled = |rt: &tokio::runtime::Runtime| {
        let (files, _) = rt.block_on(store_records(&pg));
        files.iter().all(|f| f.status == FileStatus::Complete)
    };
    let mut kills_mid_run = 0;
    let mut paused_node = None;
    for round in 0..14 {
        std::thread::sleep(Duration::from_millis(200 + rng.next(700)));
        let victim = rng.next(3) as usize;
        nodes[victim].kill();
        if !settled(&rt) {
            kills_mid_run += 1;
        }
        // Some come back at once (they take their own groups back), some
        // after their leases ran out (others take the groups over).
        if round % 3 == 0 {
            std::thread::sleep(Duration::from_millis(LEASE_MS + 300));
        }
        nodes[victim].restart();
        if round == 6 {
            // One node paused past its leases, then resumed: whatever its
            // runs still try to commit is fenced.
            // The node holding the most leases now.
            let out = Command::new("psql")
                .arg(&db)
                .args([
                    "-qtA",
                    "-c",
                    "SELECT node_id FROM visitor_groups WHERE node_id IS NOT NULL \
                     GROUP BY node_id ORDER BY count(*) DESC LIMIT 1",
                ])
                .output()
                .unwrap();
            let holder = String::from_utf8_lossy(&out.stdout).trim().to_string();
            let paused = ids.iter().position(|id| *id == holder).unwrap_or(0);
            paused_node = Some(paused);
            nodes[paused].wait_healthy();
            let pid = nodes[paused].pid().to_string();
            assert!(Command::new("kill")
                .args(["-STOP", &pid])
                .status()
                .unwrap()
                .success());
            std::thread::sleep(Duration::from_millis(LEASE_MS * 3));
            assert!(Command::new("kill")
                .args(["-CONT", &pid])
                .status()
                .unwrap()
                .success());
        }
    }
    eprintln!("{kills_mid_run} kills landed before the end");
    assert!(
        kills_mid_run >= 10,
        "kills must land while files are processed"
    );
    wait_settled(&rt, &pg, order.len());
    for n in &mut nodes {
        n.kill();
    }

    // 4. Every file COMPLETE; the lake equals the single node's, row for
    // row; so does the visitor state.
    let (files, states) = rt.block_on(store_records(&pg));
    assert_eq!(files.len(), ref_files.len());
    assert!(
        files.iter().all(|f| f.status == FileStatus::Complete),
        "{:?}",
        files
            .iter()
            .map(|f| (&f.file_id, f.status, &f.error))
            .collect::<Vec<_>>()
    );
    let cluster_rows = rows(bdia_server::testing::lake_hits_at(&storage).unwrap());
    assert_eq!(cluster_rows.len(), ref_rows.len(), "no hit lost or doubled");
    if cluster_rows != ref_rows {
        let only = |a: &[(String, String)], b: &[(String, String)]| {
            let b: BTreeSet<_> = b.iter().collect();
            a.iter()
                .filter(|r| !b.contains(r))
                .cloned()
                .collect::<Vec<_>>()
        };
        let (extra, missing) = (
            only(&cluster_rows, &ref_rows),
            only(&ref_rows, &cluster_rows),
        );
        panic!(
            "the lakes' rows differ: {} rows only in the cluster's lake, {} only in the single node's; first ones:\n{:?}\n{:?}",
            extra.len(),
            missing.len(),
            extra.first().map(|r| &r.1[..r.1.len().min(600)]),
            missing.first().map(|r| &r.1[..r.1.len().min(600)])
        );
    }
    assert_eq!(states, ref_states, "visitor state");

    // 5. The lease records: claims of a group follow each other (each
    // after the lease before it had run out or been released), and every
    // file was completed under the lease in force, by its holder, in
    // order. Takeovers by another node happened.
    let mut by_group: BTreeMap<String, Vec<&FileRecord>> = BTreeMap::new();
    for f in &files {
        by_group
            .entry(f.visitor_group_id.clone())
            .or_default()
            .push(f);
    }
    let mut takeovers = 0;
    for (g, mut fs) in by_group {
        let claims = rt
            .block_on(pg.lease_claims(&GroupRef {
                company_id: company.to_string(),
                visitor_group_id: g.clone(),
            }))
            .unwrap();
        for (i, c) in claims.iter().enumerate() {
            assert_eq!(c.epoch, i as u64 + 1, "epochs of {g} in order");
            if let Some(prev) = c.previous_expires_ms {
                assert!(prev <= c.claimed_ms, "{g}: claimed while held: {c:?}");
            }
            if i > 0 && claims[i - 1].node_id != c.node_id {
                takeovers += 1;
            }
        }
        fs.sort_by_key(|f| f.group_seq);
        let mut last_epoch = 0;
        for f in fs {
            let epoch = f.lease_epoch.expect("completed under a lease");
            let holder = &claims[(epoch - 1) as usize].node_id;
            assert_eq!(f.processed_by.as_ref(), Some(holder), "{g}: {}", f.file_id);
            assert!(
                epoch >= last_epoch,
                "{g}: files completed out of lease order"
            );
            last_epoch = epoch;
        }
    }
    eprintln!("{takeovers} group takeovers by another node");
    assert!(takeovers > 0, "groups moved between nodes");
    // The paused node found, once resumed, that its leases were gone.
    let paused = ids[paused_node.expect("a node was paused")];
    let log = std::fs::read_to_string(work.path().join(paused).join("logs/stderr.txt")).unwrap();
    assert!(
        log.contains("lease lost"),
        "{paused} was paused past its leases and must have lost them"
    );
}
