//! The PostgreSQL backend against a real server: the conformance suite, and
//! what only a shared database adds (several stores, as several nodes, on
//! one database at once).
//!
//! The server is the one `BDIA_TEST_POSTGRES_URL` names (./test.sh starts
//! a throwaway cluster and sets it); every test works in databases of its
//! own, created empty on that server.

use std::collections::{BTreeSet, HashMap};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use bdia_store::postgres::{PgStore, SCHEMA_VERSION};
use bdia_store::{conformance, CommitOutcome, GroupRef, MetadataStore, StoreError};
use tokio_postgres::NoTls;

/// Connections per store in these tests.
const POOL: usize = 4;

fn server_url() -> String {
    std::env::var("BDIA_TEST_POSTGRES_URL").unwrap_or_else(|_| {
        panic!(
            "BDIA_TEST_POSTGRES_URL is not set: run ./test.sh, which starts a throwaway \
             PostgreSQL (or eval \"$(scripts/test-services.sh start)\" first)"
        )
    })
}

/// A client on the test server's own database (for CREATE DATABASE and
/// looking at what a store wrote).
async fn admin(url: &str) -> tokio_postgres::Client {
    let (client, conn) = tokio_postgres::connect(url, NoTls)
        .await
        .unwrap_or_else(|e| panic!("connect to the test PostgreSQL: {e}"));
    tokio::spawn(conn);
    client
}

/// The URL of a new, empty database on the test server.
async fn fresh_database() -> String {
    static N: AtomicUsize = AtomicUsize::new(0);
    let base = server_url();
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos();
    let name = format!(
        "bdia_t_{}_{}_{}",
        std::process::id(),
        nanos,
        N.fetch_add(1, Ordering::SeqCst)
    );
    admin(&base)
        .await
        .batch_execute(&format!("CREATE DATABASE {name}"))
        .await
        .unwrap();
    let mut url = url::Url::parse(&base).unwrap();
    url.set_path(&name);
    url.to_string()
}

async fn store(url: &str) -> PgStore {
    PgStore::connect(url, POOL)
        .await
        .unwrap_or_else(|e| panic!("connect a store: {e}"))
}

/// Two stores (two pools, as two nodes) on one new database, which has
/// the company `acme`.
async fn two_nodes_with_acme() -> [Arc<PgStore>; 2] {
    let url = fresh_database().await;
    let nodes = [Arc::new(store(&url).await), Arc::new(store(&url).await)];
    nodes[0]
        .create_company("acme", "00ff", Default::default())
        .await
        .unwrap();
    nodes
}

/// Uploads file `f{i}` of group `g{i}` of `acme` for `i` in `0..groups`,
/// through the nodes in turn.
async fn one_file_per_group(nodes: &[Arc<PgStore>], groups: usize) {
    for g in 0..groups {
        let file = conformance::sample_file("acme", &format!("f{g}"), &format!("g{g}"), None);
        nodes[g % nodes.len()].commit_upload(file).await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn postgres_passes_the_conformance_suite() {
    conformance::run_all(|| async {
        let url = fresh_database().await;
        Arc::new(store(&url).await) as Arc<dyn MetadataStore>
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn undecodable_stored_values_are_backend_errors() {
    let url = fresh_database().await;
    let s = Arc::new(store(&url).await);
    let db = admin(&url).await;
    conformance::undecodable_values(s, |sql| {
        let db = &db;
        async move { db.batch_execute(sql).await.unwrap() }
    })
    .await;
}

/// Two nodes (two stores, two pools) commit uploads of one group at once,
/// each key sent to both: every key is stored once, both nodes answer with
/// the same record for it, and the group is numbered 1..=n without a gap
/// or a duplicate, in commit order.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_nodes_racing_uploads_of_one_group_number_it_once() {
    let nodes = two_nodes_with_acme().await;
    const KEYS: usize = 24;
    let mut tasks = Vec::new();
    for k in 0..KEYS {
        for (n, node) in nodes.iter().enumerate() {
            let node = node.clone();
            tasks.push(tokio::spawn(async move {
                let file = conformance::sample_file(
                    "acme",
                    &format!("f{k}-node{n}"),
                    "g",
                    Some(&format!("k{k}")),
                );
                (k, node.commit_upload(file).await.unwrap())
            }));
        }
    }
    let mut answers: HashMap<usize, Vec<(bool, String, Option<u64>)>> = HashMap::new();
    for t in tasks {
        let (k, outcome) = t.await.unwrap();
        let (inserted, rec) = match outcome {
            CommitOutcome::Inserted(r) => (true, r),
            CommitOutcome::Existing(r) => (false, r),
        };
        answers
            .entry(k)
            .or_default()
            .push((inserted, rec.file_id, rec.group_seq));
    }
    for (k, a) in &answers {
        assert_eq!(
            a.iter().filter(|(inserted, _, _)| *inserted).count(),
            1,
            "key k{k}: exactly one upload is stored: {a:?}"
        );
        assert_eq!(a[0].1, a[1].1, "key k{k}: both nodes answer the winner");
    }
    let page = nodes[1]
        .list_files(
            "acme",
            &bdia_store::FileQuery {
                limit: 1000,
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(page.files.len(), KEYS);
    let seqs: BTreeSet<u64> = page.files.iter().filter_map(|f| f.group_seq).collect();
    assert_eq!(
        seqs,
        (1..=KEYS as u64).collect::<BTreeSet<_>>(),
        "group_seq 1..={KEYS}, each once"
    );
    // Listing is newest first: commit order is group order.
    let in_commit_order: Vec<u64> = page
        .files
        .iter()
        .rev()
        .filter_map(|f| f.group_seq)
        .collect();
    assert!(
        in_commit_order.windows(2).all(|w| w[0] < w[1]),
        "{in_commit_order:?}"
    );
    let pending = nodes[0].pending_files(1000).await.unwrap();
    let order: Vec<u64> = pending.iter().filter_map(|f| f.group_seq).collect();
    assert_eq!(order, (1..=KEYS as u64).collect::<Vec<_>>());
}

/// Two nodes claim the files of several groups at once: each group hands
/// out exactly one file (its first), never two, and after that file
/// completes the next race hands out the next one.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_nodes_racing_claims_get_one_file_per_group() {
    let nodes = two_nodes_with_acme().await;
    let groups: Vec<GroupRef> = (0..4)
        .map(|g| GroupRef {
            company_id: "acme".into(),
            visitor_group_id: format!("g{g}"),
        })
        .collect();
    for g in &groups {
        for i in 0..3 {
            let id = format!("{}-f{i}", g.visitor_group_id);
            nodes[i % 2]
                .commit_upload(conformance::sample_file(
                    "acme",
                    &id,
                    &g.visitor_group_id,
                    None,
                ))
                .await
                .unwrap();
        }
    }
    for round in 0..3 {
        let mut tasks = Vec::new();
        for g in &groups {
            for _ in 0..4 {
                for node in &nodes {
                    let (node, g) = (node.clone(), g.clone());
                    tasks.push(tokio::spawn(async move {
                        node.claim_next_file(&g, None, 1).await.unwrap()
                    }));
                }
            }
        }
        let mut claimed: HashMap<String, Vec<String>> = HashMap::new();
        for t in tasks {
            if let Some(f) = t.await.unwrap() {
                claimed
                    .entry(f.visitor_group_id.clone())
                    .or_default()
                    .push(f.file_id);
            }
        }
        for g in &groups {
            let got = claimed
                .get(&g.visitor_group_id)
                .cloned()
                .unwrap_or_default();
            assert_eq!(
                got,
                [format!("{}-f{round}", g.visitor_group_id)],
                "round {round}: one claim of group {} wins, its next file",
                g.visitor_group_id
            );
            nodes[round % 2]
                .complete_file(&got[0], Default::default())
                .await
                .unwrap();
        }
    }
    assert!(nodes[1].runnable_groups(10).await.unwrap().is_empty());
}

/// Nodes starting together against an empty database: every one connects,
/// and each migration is applied (and recorded) once.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn nodes_starting_at_once_migrate_an_empty_database_once() {
    let url = fresh_database().await;
    let mut tasks = Vec::new();
    for _ in 0..8 {
        let url = url.clone();
        tasks.push(tokio::spawn(async move { PgStore::connect(&url, 2).await }));
    }
    let mut stores = Vec::new();
    for t in tasks {
        stores.push(t.await.unwrap().expect("every node connects"));
    }
    let versions: Vec<i64> = admin(&url)
        .await
        .query(
            "SELECT version FROM schema_migrations ORDER BY version",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| r.get("version"))
        .collect();
    assert_eq!(versions, (1..=SCHEMA_VERSION).collect::<Vec<_>>());
    // Every node works on the one schema.
    stores[0]
        .create_company("acme", "00ff", Default::default())
        .await
        .unwrap();
    for s in &stores {
        assert_eq!(s.list_companies().await.unwrap().len(), 1);
        assert_eq!(s.queued_calls(), 0, "no call in flight");
    }
}

#[tokio::test]
async fn a_database_of_a_newer_release_is_refused_untouched() {
    let url = fresh_database().await;
    drop(store(&url).await);
    let db = admin(&url).await;
    db.execute(
        "INSERT INTO schema_migrations (version) VALUES ($1)",
        &[&(SCHEMA_VERSION + 1)],
    )
    .await
    .unwrap();
    let err = PgStore::connect(&url, POOL).await.unwrap_err();
    assert!(
        matches!(err, StoreError::SchemaTooNew { found, supported }
            if found == SCHEMA_VERSION + 1 && supported == SCHEMA_VERSION),
        "{err}"
    );
    let n: i64 = db
        .query_one("SELECT COUNT(*) FROM schema_migrations", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(n, SCHEMA_VERSION + 1);
}

#[tokio::test]
async fn a_bad_url_or_an_unreachable_server_is_a_clear_error() {
    // Not a PostgreSQL URL; a password is never repeated.
    for url in [
        "mysql://u:s3cret@db.example:3306/x",
        "postgres://u:s3cret@db.example:notaport/x",
        "postgres:///nohost",
    ] {
        let err = PgStore::connect(url, 1).await.unwrap_err();
        assert!(matches!(err, StoreError::Invalid(_)), "{url}: {err}");
        let msg = err.to_string();
        assert!(!msg.contains("s3cret"), "{msg}");
        assert!(msg.contains("postgres://USER"), "{msg}");
    }
    let err = PgStore::connect("postgres://u:s3cret@db.example:notaport/x", 1)
        .await
        .unwrap_err();
    assert!(err.to_string().contains("db.example"), "{err}");

    // TLS asked for: refused, never downgraded to plain TCP.
    let mut tls = url::Url::parse(&server_url()).unwrap();
    tls.set_query(Some("sslmode=require"));
    let err = PgStore::connect(tls.as_str(), 1).await.unwrap_err();
    assert!(matches!(err, StoreError::Backend { .. }), "{err}");

    // Nothing listens on port 1.
    let err = PgStore::connect("postgres://bdia:s3cret@127.0.0.1:1/bdia", 1)
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::Backend { .. }), "{err}");
    let msg = err.to_string();
    assert!(msg.contains("127.0.0.1:1"), "names the server: {msg}");
    assert!(!msg.contains("s3cret"), "{msg}");
    let source = std::error::Error::source(&err).expect("the driver's error is the source");
    assert!(
        source.downcast_ref::<tokio_postgres::Error>().is_some(),
        "{source:?}"
    );
}

/// Two nodes claim group leases at once, several calls each: every group
/// is claimed once (epoch 1); once every lease has run out, a second race
/// takes each group over once (epoch 2), and no claim comes before the
/// end of the lease it replaced.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_nodes_racing_lease_claims_take_each_group_once() {
    let nodes = two_nodes_with_acme().await;
    const GROUPS: usize = 30;
    one_file_per_group(&nodes, GROUPS).await;
    for (round, epoch) in [(0, 1u64), (1, 2)] {
        let mut tasks = Vec::new();
        for (n, node) in nodes.iter().enumerate() {
            for call in 0..6 {
                let node = node.clone();
                tasks.push(tokio::spawn(async move {
                    let id = format!("n{n}");
                    // Each call asks for a few; ask again until none is left.
                    let mut got = Vec::new();
                    loop {
                        let batch = node.claim_groups(&id, 4, 60_000).await.unwrap();
                        if batch.is_empty() {
                            break;
                        }
                        got.extend(batch);
                    }
                    let _ = call;
                    got
                }));
            }
        }
        let mut held = Vec::new();
        for t in tasks {
            held.extend(t.await.unwrap());
        }
        let groups: BTreeSet<_> = held.iter().map(|l| l.group.clone()).collect();
        assert_eq!(
            held.len(),
            GROUPS,
            "round {round}: each group once: {held:?}"
        );
        assert_eq!(groups.len(), GROUPS, "round {round}");
        assert!(held.iter().all(|l| l.epoch == epoch), "round {round}");
        // Every lease runs out now.
        let renewed = nodes[0].renew_leases(&held, 0).await.unwrap();
        assert!(renewed.iter().all(|r| *r));
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
    for g in 0..GROUPS {
        let claims = nodes[1]
            .lease_claims(&GroupRef {
                company_id: "acme".into(),
                visitor_group_id: format!("g{g}"),
            })
            .await
            .unwrap();
        assert_eq!(claims.len(), 2, "g{g}: {claims:?}");
        let prev = claims[1].previous_expires_ms.expect("a takeover");
        assert!(prev <= claims[1].claimed_ms, "g{g}: {claims:?}");
    }
}

/// A node completes a file while another node takes its expired lease
/// over, at once, on many groups: either the completion commits first
/// (the file stays COMPLETE under the old epoch and the takeover does not
/// void it, nor take the group, which has nothing left to process) or the
/// takeover does (the completion is fenced, stores no state, and the file
/// is waiting again). Never both.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_takeover_and_a_completion_racing_never_both_win() {
    use bdia_model::enrich::StateEntry;
    use bdia_model::{StateDelta, VisitState};
    use bdia_store::{Completion, FileStatus};

    let [a, b] = two_nodes_with_acme().await;
    const GROUPS: usize = 12;
    one_file_per_group(&[a.clone(), b.clone()], GROUPS).await;
    let leases = a.claim_groups("a", GROUPS as u32, 60_000).await.unwrap();
    assert_eq!(leases.len(), GROUPS);
    for l in &leases {
        a.claim_next_file(&l.group, Some(l), 1)
            .await
            .unwrap()
            .expect("a file");
    }
    // A stops renewing: every lease runs out.
    a.renew_leases(&leases, 0).await.unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(5)).await;

    let mut completions = Vec::new();
    for l in leases.clone() {
        let a = a.clone();
        completions.push(tokio::spawn(async move {
            let g = l.group.visitor_group_id.clone();
            let completion = Completion {
                file_reader_complete_date: 2,
                processing_end_date: 3,
                processing_log: "done".into(),
                delta: StateDelta {
                    entries: vec![StateEntry {
                        report_suite: "rs".into(),
                        visitor_key: g.clone(),
                        state: VisitState {
                            last_hit_time: 10,
                            visit_num: 1,
                            visit_start_time: 10,
                            visit_page_num: 1,
                            evars: Default::default(),
                        },
                    }],
                    seen: Vec::new(),
                },
                release_blob: true,
                lease: Some(l),
            };
            (
                g.clone(),
                a.complete_file(&format!("f{}", &g[1..]), completion).await,
            )
        }));
    }
    let takeover = {
        let b = b.clone();
        tokio::spawn(async move { b.claim_groups("b", GROUPS as u32, 60_000).await.unwrap() })
    };
    let mut outcomes = HashMap::new();
    for t in completions {
        let (g, r) = t.await.unwrap();
        outcomes.insert(g, r);
    }
    let taken = takeover.await.unwrap();
    let taken: HashMap<String, u64> = taken
        .into_iter()
        .map(|l| (l.group.visitor_group_id, l.epoch))
        .collect();
    for g in 0..GROUPS {
        let gid = format!("g{g}");
        let file = a.get_file("acme", &format!("f{g}")).await.unwrap().unwrap();
        let state = a
            .visitor_states("acme", vec![("rs".into(), gid.clone())])
            .await
            .unwrap();
        match &outcomes[&gid] {
            Ok(rec) => {
                assert_eq!(rec.lease_epoch, Some(1), "{gid}");
                assert_eq!(file.status, FileStatus::Complete, "{gid}: not voided");
                assert_eq!(file.lease_epoch, Some(1), "{gid}");
                assert!(
                    state[0].is_some(),
                    "{gid}: the completion's state is stored"
                );
            }
            Err(StoreError::Fenced(_)) => {
                assert_eq!(
                    taken.get(&gid),
                    Some(&2),
                    "{gid}: fenced only by a takeover"
                );
                assert_eq!(file.status, FileStatus::Uploaded, "{gid}: voided run");
                assert_eq!(state[0], None, "{gid}: a fenced completion stores nothing");
            }
            Err(e) => panic!("{gid}: {e}"),
        }
    }
}

/// `queued_calls` counts the calls holding a pooled connection and those
/// waiting for one: with one connection, a claim stuck behind another
/// transaction's lock on its group holds it, and a lookup waits for it.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn queued_calls_counts_calls_in_and_waiting_for_the_pool() {
    let url = fresh_database().await;
    let s = Arc::new(PgStore::connect(&url, 1).await.unwrap());
    s.create_company("acme", "00ff", Default::default())
        .await
        .unwrap();
    one_file_per_group(std::slice::from_ref(&s), 1).await;
    assert_eq!(s.queued_calls(), 0);

    // Another session holds the group's row.
    let mut other = admin(&url).await;
    let tx = other.transaction().await.unwrap();
    tx.execute(
        "SELECT 1 FROM visitor_groups WHERE visitor_group_id = 'g0' FOR UPDATE",
        &[],
    )
    .await
    .unwrap();
    let g0 = GroupRef {
        company_id: "acme".into(),
        visitor_group_id: "g0".into(),
    };
    let claim = {
        let s = s.clone();
        tokio::spawn(async move { s.claim_next_file(&g0, None, 1).await })
    };
    let lookup = {
        let s = s.clone();
        tokio::spawn(async move { s.get_company("acme").await })
    };
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while s.queued_calls() < 2 {
        assert!(
            std::time::Instant::now() < deadline,
            "queued_calls stayed at {}",
            s.queued_calls()
        );
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    assert!(!claim.is_finished() && !lookup.is_finished());
    tx.commit().await.unwrap();
    let claimed = claim
        .await
        .unwrap()
        .unwrap()
        .expect("the file, once the lock is gone");
    assert_eq!(claimed.file_id, "f0");
    assert!(lookup.await.unwrap().unwrap().is_some());
    assert_eq!(s.queued_calls(), 0);
}
