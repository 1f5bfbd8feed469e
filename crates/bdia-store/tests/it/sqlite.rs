use std::sync::Arc;

use bdia_store::sqlite::{SqliteStore, SCHEMA_VERSION};
use bdia_store::{
    conformance, CommitOutcome, FileStatus, MetadataStore, RateLimitSetting, StoreError,
};

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sqlite_in_memory_passes_the_conformance_suite() {
    conformance::run_all(|| async {
        Arc::new(SqliteStore::in_memory().unwrap()) as Arc<dyn MetadataStore>
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sqlite_on_disk_passes_the_conformance_suite() {
    let dir = tempfile::tempdir().unwrap();
    let n = std::sync::atomic::AtomicUsize::new(0);
    let base = dir.path().to_path_buf();
    conformance::run_all(|| {
        let i = n.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        let path = base.join(format!("db{i}.sqlite"));
        async move { Arc::new(SqliteStore::open(&path).unwrap()) as Arc<dyn MetadataStore> }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn undecodable_stored_values_are_backend_errors() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("meta.sqlite");
    let s = Arc::new(SqliteStore::open(&path).unwrap());
    conformance::undecodable_values(s, |sql| {
        let path = path.clone();
        async move {
            rusqlite::Connection::open(&path)
                .unwrap()
                .execute_batch(sql)
                .unwrap();
        }
    })
    .await;
}

#[tokio::test]
async fn records_survive_reopening() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("meta.sqlite");
    {
        let s = SqliteStore::open(&path).unwrap();
        s.create_company("acme", "ab", Default::default())
            .await
            .unwrap();
        s.commit_upload(conformance::sample_file("acme", "f1", "g", None))
            .await
            .unwrap();
    }
    let s = SqliteStore::open(&path).unwrap();
    let f = s.get_file("acme", "f1").await.unwrap().unwrap();
    assert_eq!(f.group_seq, Some(1));
}

/// The schema as created by the releases before schema versioning, which
/// left `user_version` at 0.
const UNVERSIONED_SCHEMA: &str = r#"
CREATE TABLE IF NOT EXISTS companies (
    id TEXT PRIMARY KEY,
    salt TEXT NOT NULL,
    settings TEXT NOT NULL,
    created INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS report_suites (
    rsid TEXT PRIMARY KEY,
    company_id TEXT NOT NULL REFERENCES companies(id),
    time_zone TEXT NOT NULL,
    created INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS report_suites_company ON report_suites(company_id);
CREATE TABLE IF NOT EXISTS clients (
    client_id TEXT PRIMARY KEY,
    company_id TEXT NOT NULL REFERENCES companies(id),
    secret_hash TEXT NOT NULL,
    technical_account TEXT NOT NULL,
    public_key_pem TEXT,
    disabled INTEGER NOT NULL DEFAULT 0,
    created INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS files (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    file_id TEXT NOT NULL UNIQUE,
    company_id TEXT NOT NULL REFERENCES companies(id),
    visitor_group_id TEXT NOT NULL,
    idempotency_key TEXT NOT NULL,
    upload_name TEXT NOT NULL,
    size INTEGER NOT NULL,
    uncompressed_size INTEGER NOT NULL,
    received_date INTEGER NOT NULL,
    rows INTEGER NOT NULL,
    invalid_rows INTEGER NOT NULL,
    status TEXT NOT NULL,
    error TEXT,
    error_code TEXT,
    processing_log TEXT NOT NULL,
    processing_start_date INTEGER,
    file_reader_complete_date INTEGER,
    processing_end_date INTEGER,
    group_seq INTEGER,
    blob_key TEXT,
    rejects_key TEXT
);
CREATE UNIQUE INDEX IF NOT EXISTS files_key
    ON files(company_id, idempotency_key) WHERE status <> 'REJECTED';
CREATE UNIQUE INDEX IF NOT EXISTS files_group_seq
    ON files(company_id, visitor_group_id, group_seq) WHERE group_seq IS NOT NULL;
CREATE INDEX IF NOT EXISTS files_company ON files(company_id, seq);
CREATE INDEX IF NOT EXISTS files_status ON files(status, seq);
CREATE INDEX IF NOT EXISTS files_group_status
    ON files(company_id, visitor_group_id, status);
CREATE TABLE IF NOT EXISTS visitor_states (
    company_id TEXT NOT NULL,
    report_suite TEXT NOT NULL,
    visitor_key TEXT NOT NULL,
    last_hit_time INTEGER NOT NULL,
    visit_num INTEGER NOT NULL,
    visit_start_time INTEGER NOT NULL,
    visit_page_num INTEGER NOT NULL,
    PRIMARY KEY (company_id, report_suite, visitor_key)
) WITHOUT ROWID;
"#;

/// `dir/meta.sqlite` with the pre-versioning schema and `rows` run on it.
fn old_database(dir: &std::path::Path, rows: &str) -> std::path::PathBuf {
    let path = dir.join("meta.sqlite");
    let conn = rusqlite::Connection::open(&path).unwrap();
    conn.execute_batch(UNVERSIONED_SCHEMA).unwrap();
    conn.execute_batch(rows).unwrap();
    path
}

fn user_version(path: &std::path::Path) -> i64 {
    rusqlite::Connection::open(path)
        .unwrap()
        .query_row("PRAGMA user_version", [], |r| r.get(0))
        .unwrap()
}

#[tokio::test]
async fn an_unversioned_database_opens_with_its_data_and_is_brought_to_the_current_version() {
    let dir = tempfile::tempdir().unwrap();
    let path = old_database(
        dir.path(),
        r#"
            INSERT INTO companies VALUES ('acme', 'ab',
                '{"seed_customer_id_type":null,"rows_per_second":500,"upload_rate_limit":{"mode":"off"},"auto_create_report_suites":false}',
                1700000000);
            INSERT INTO report_suites VALUES ('acme.prod', 'acme', 'Europe/Paris', 1700000001);
            INSERT INTO clients VALUES ('cli', 'acme', 'hash', 'ta@acme', NULL, 1, 1700000002);
            INSERT INTO files (file_id, company_id, visitor_group_id, idempotency_key,
                upload_name, size, uncompressed_size, received_date, rows, invalid_rows, status,
                error, error_code, processing_log, processing_start_date,
                file_reader_complete_date, processing_end_date, group_seq, blob_key, rejects_key)
            VALUES
                ('f1', 'acme', 'g', 'k1', 'a.csv.gz', 100, 300, 1700000010, 10, 1, 'COMPLETE',
                 NULL, NULL, 'done', 1700000011, 1700000012, 1700000013, 1, NULL,
                 'rejects/f1.csv'),
                ('f2', 'acme', 'g', 'k2', 'b.csv.gz', 100, 300, 1700000020, 10, 0, 'UPLOADED',
                 NULL, NULL, 'log', NULL, NULL, NULL, 2, 'files/f2.csv.gz', NULL);
            INSERT INTO visitor_states VALUES ('acme', 'acme.prod', 'v1', 1700000005, 2,
                1700000004, 3);
            "#,
    );
    assert_eq!(user_version(&path), 0);

    let s = SqliteStore::open(&path).unwrap();
    assert_eq!(user_version(&path), SCHEMA_VERSION);

    let company = s.get_company("acme").await.unwrap().unwrap();
    assert_eq!(company.salt, "ab");
    assert_eq!(company.settings.rows_per_second, Some(500));
    assert_eq!(company.settings.upload_rate_limit, RateLimitSetting::Off);
    assert!(!company.settings.auto_create_report_suites);
    let suite = s
        .get_report_suite("acme", "acme.prod")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(suite.time_zone, "Europe/Paris");
    let client = s.get_client("cli").await.unwrap().unwrap();
    assert!(client.disabled);
    assert_eq!(
        client.token_generation, 0,
        "tokens of older releases stay valid"
    );

    let f1 = s.get_file("acme", "f1").await.unwrap().unwrap();
    assert_eq!(f1.status, FileStatus::Complete);
    assert_eq!(f1.processing_end_date, Some(1_700_000_013));
    assert_eq!(f1.rejects_key.as_deref(), Some("rejects/f1.csv"));
    // Reports of that release list every invalid row.
    assert_eq!(f1.rejects_kept, 1);
    assert_eq!((f1.hits_retracted_at, f1.hits_retracted), (None, None));
    let pending = s.pending_files(10).await.unwrap();
    assert_eq!(pending.len(), 1);
    assert_eq!(pending[0].file_id, "f2");
    assert_eq!(pending[0].group_seq, Some(2));

    let states = s
        .visitor_states("acme", vec![("acme.prod".into(), "v1".into())])
        .await
        .unwrap();
    assert_eq!(states[0].as_ref().map(|st| st.visit_num), Some(2));
    assert_eq!(
        states[0].as_ref().map(|st| st.evars.len()),
        Some(0),
        "a state stored before eVars has none"
    );
    assert!(suite.evar_settings.is_empty());
    assert_eq!(
        s.seen_ids(
            "acme",
            vec![bdia_model::commerce::SeenId {
                report_suite: "acme.prod".into(),
                kind: bdia_model::commerce::PURCHASE_ID.into(),
                id: "ORD-1".into(),
            }]
        )
        .await
        .unwrap(),
        [false]
    );

    // The migrated database keeps working: keys and group sequence continue.
    let again = s
        .commit_upload(conformance::sample_file("acme", "f3", "g", Some("k2")))
        .await
        .unwrap();
    assert!(matches!(again, CommitOutcome::Existing(r) if r.file_id == "f2"));
    let next = s
        .commit_upload(conformance::sample_file("acme", "f3", "g", None))
        .await
        .unwrap();
    assert!(matches!(next, CommitOutcome::Inserted(r) if r.group_seq == Some(3)));

    // Opening a current database again changes nothing.
    drop(s);
    let s = SqliteStore::open(&path).unwrap();
    assert_eq!(user_version(&path), SCHEMA_VERSION);
    assert_eq!(s.list_companies().await.unwrap().len(), 1);
}

/// Version 2 makes report suites per company: the suites of a version-1
/// database stay with the company that owned them, and an rsid one company
/// has no longer stops another from having its own.
#[tokio::test]
async fn report_suites_of_a_version_1_database_stay_with_their_company() {
    let dir = tempfile::tempdir().unwrap();
    let path = old_database(
        dir.path(),
        r#"
            INSERT INTO companies VALUES ('acme', 'ab', '{"seed_customer_id_type":null,"rows_per_second":null,"upload_rate_limit":{"mode":"default"},"auto_create_report_suites":true}', 1);
            INSERT INTO companies VALUES ('beta', 'cd', '{"seed_customer_id_type":null,"rows_per_second":null,"upload_rate_limit":{"mode":"default"},"auto_create_report_suites":true}', 2);
            INSERT INTO report_suites VALUES ('acme.prod', 'acme', 'Europe/Paris', 10);
            INSERT INTO report_suites VALUES ('brand', 'beta', 'Asia/Tokyo', 11);
            PRAGMA user_version = 1;
            "#,
    );
    let s = SqliteStore::open(&path).unwrap();
    assert_eq!(user_version(&path), SCHEMA_VERSION);
    let all: Vec<(String, String, String, i64)> = s
        .list_report_suites(None)
        .await
        .unwrap()
        .into_iter()
        .map(|r| (r.company_id, r.rsid, r.time_zone, r.created))
        .collect();
    assert_eq!(
        all,
        [
            ("acme".into(), "acme.prod".into(), "Europe/Paris".into(), 10),
            ("beta".into(), "brand".into(), "Asia/Tokyo".into(), 11),
        ]
    );
    assert!(s.get_report_suite("acme", "brand").await.unwrap().is_none());
    let mine = s.create_report_suite("acme", "brand", "UTC").await.unwrap();
    assert_eq!(mine.company_id, "acme");
    let theirs = s.get_report_suite("beta", "brand").await.unwrap().unwrap();
    assert_eq!(theirs.time_zone, "Asia/Tokyo");
    assert!(matches!(
        s.create_report_suite("beta", "brand", "UTC").await,
        Err(StoreError::Conflict(_))
    ));
}

#[tokio::test]
async fn a_database_of_a_newer_release_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("meta.sqlite");
    {
        let s = SqliteStore::open(&path).unwrap();
        s.create_company("acme", "ab", Default::default())
            .await
            .unwrap();
    }
    rusqlite::Connection::open(&path)
        .unwrap()
        .execute_batch(&format!("PRAGMA user_version = {}", SCHEMA_VERSION + 1))
        .unwrap();

    let err = SqliteStore::open(&path).unwrap_err();
    assert!(
        matches!(err, StoreError::SchemaTooNew { found, supported }
            if found == SCHEMA_VERSION + 1 && supported == SCHEMA_VERSION),
        "{err}"
    );
    assert_eq!(err.code(), "schema_too_new");
    let message = err.to_string();
    assert!(
        message.contains(&format!("version {}", SCHEMA_VERSION + 1)),
        "{message}"
    );
    // Refused untouched.
    assert_eq!(user_version(&path), SCHEMA_VERSION + 1);
}

#[test]
fn a_sqlite_error_keeps_its_source() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("meta.sqlite");
    std::fs::write(&path, vec![b'x'; 8192]).unwrap();

    let err = SqliteStore::open(&path).unwrap_err();
    assert!(matches!(err, StoreError::Backend { .. }), "{err}");
    assert_eq!(err.code(), "backend");
    let source = std::error::Error::source(&err).expect("the SQLite error is the source");
    assert!(
        source.downcast_ref::<rusqlite::Error>().is_some(),
        "source is {source:?}"
    );
}
