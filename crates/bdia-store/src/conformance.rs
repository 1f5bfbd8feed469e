//! The contract of [`MetadataStore`], as a suite every backend must pass.
//!
//! Test support only: compiled with the cargo feature `testsuite`, which a
//! crate's tests turn on through its `[dev-dependencies]`
//! (`bdia-store = { ..., features = ["testsuite"] }`); release builds never
//! contain it.
//!
//! A backend's test calls [`run_all`] with a factory of fresh, empty stores:
//!
//! ```no_run
//! # async fn t() {
//! use std::sync::Arc;
//! use bdia_store::{conformance, sqlite::SqliteStore, MetadataStore};
//! conformance::run_all(|| async {
//!     Arc::new(SqliteStore::in_memory().unwrap()) as Arc<dyn MetadataStore>
//! })
//! .await;
//! # }
//! ```
//!
//! Each check panics with a message naming the broken rule.

use std::future::Future;
use std::sync::Arc;

use bdia_model::commerce::{SeenId, PURCHASE_ID};
use bdia_model::conversion::{EvarSetting, PersistedEvar};
use bdia_model::enrich::StateEntry;
use bdia_model::{StateDelta, VisitState};

use crate::{
    ApiClient, CommitOutcome, CompanySettings, Completion, FileQuery, FileRecord, FileStatus,
    GroupAction, GroupLease, GroupRef, GroupState, MetadataStore, NewFile, NewPrivacyDeletion,
    PageQuery, RateLimitSetting, StatusUpdate, StoreError, SuiteClaim,
};
use crate::{DeliveryAttempt, Webhook};

/// Runs every check, each on a fresh store from `make`.
pub async fn run_all<F, Fut>(make: F)
where
    F: Fn() -> Fut,
    Fut: Future<Output = Arc<dyn MetadataStore>>,
{
    companies(make().await).await;
    report_suites(make().await).await;
    same_rsid_in_two_companies(make().await).await;
    single_hit_suites(make().await).await;
    concurrent_suite_claims(make().await).await;
    clients(make().await).await;
    token_revocation(make().await).await;
    assertion_replays(make().await).await;
    concurrent_assertions(make().await).await;
    commit_and_group_sequence(make().await).await;
    idempotency(make().await).await;
    rejected_key_reuse(make().await).await;
    racing_commits(make().await).await;
    tenant_scoping(make().await).await;
    file_company(make().await).await;
    listing(make().await).await;
    status_updates_and_pending(make().await).await;
    ping(make().await).await;
    group_claims_in_order(make().await).await;
    concurrent_claims(make().await).await;
    completion_and_visitor_state(make().await).await;
    visitor_evars(make().await).await;
    seen_ids(make().await).await;
    evar_settings(make().await).await;
    leases_and_fencing(make().await).await;
    content_hashes(make().await).await;
    concurrent_lease_claims(make().await).await;
    shared_secrets(make().await).await;
    node_heartbeats(make().await).await;
    errors_stop_a_group_until_retry(make().await).await;
    requeue_after_crash(make().await).await;
    retraction(make().await).await;
    visitor_state_deletion(make().await).await;
    privacy_audit(make().await).await;
    group_pause_and_resume(make().await).await;
    group_cancel(make().await).await;
    group_queue_and_rate(make().await).await;
    webhooks(make().await).await;
    group_webhook_events(make().await).await;
    concurrent_webhook_claims(make().await).await;
}

/// A file record for tests.
pub fn sample_file(company: &str, file_id: &str, group: &str, key: Option<&str>) -> NewFile {
    NewFile {
        record: FileRecord {
            file_id: file_id.into(),
            company_id: company.into(),
            visitor_group_id: group.into(),
            idempotency_key: key.unwrap_or(file_id).into(),
            upload_name: "f.csv.gz".into(),
            size: 100,
            uncompressed_size: 300,
            received_date: 1_700_000_000,
            rows: 10,
            invalid_rows: 1,
            status: FileStatus::Uploaded,
            error: None,
            error_code: None,
            processing_log: "Processing complete: 9 rows will be submitted. 1 rows were invalid."
                .into(),
            processing_start_date: None,
            file_reader_complete_date: None,
            processing_end_date: None,
            group_seq: None,
            blob_key: Some(crate::blob::file_key(file_id)),
            rejects_key: None,
            rejects_kept: 0,
            hits_retracted_at: None,
            hits_retracted: None,
            processed_by: None,
            lease_epoch: None,
            content_sha256: None,
            duplicate_of: None,
        },
        client_key: key.is_some(),
    }
}

fn rejected(mut f: NewFile) -> NewFile {
    f.record.status = FileStatus::Rejected;
    f.record.error = Some("Not in GZIP format".into());
    f.record.error_code = Some("not_gzip".into());
    f.record.blob_key = None;
    f
}

async fn inserted(s: &dyn MetadataStore, f: NewFile) -> FileRecord {
    match s.commit_upload(f).await.expect("commit_upload") {
        CommitOutcome::Inserted(r) => r,
        CommitOutcome::Existing(r) => panic!("expected a new record, got existing {}", r.file_id),
    }
}

async fn with_company(s: &dyn MetadataStore, id: &str) {
    s.create_company(id, "00ff", CompanySettings::default())
        .await
        .expect("create company");
}

/// Companies: create, conflict, get, list, settings round trip.
pub async fn companies(s: Arc<dyn MetadataStore>) {
    let c = s
        .create_company("acme", "abcd", CompanySettings::default())
        .await
        .unwrap();
    assert_eq!(c.id, "acme");
    assert_eq!(c.salt, "abcd");
    assert!(
        c.settings.auto_create_report_suites,
        "auto-create defaults on"
    );
    assert_eq!(c.settings.rows_per_second, None, "throttle defaults off");
    assert!(matches!(
        s.create_company("acme", "x", CompanySettings::default())
            .await,
        Err(StoreError::Conflict(_))
    ));
    with_company(&*s, "beta").await;
    let got = s
        .get_company("acme")
        .await
        .unwrap()
        .expect("company exists");
    assert_eq!(got, c);
    assert!(s.get_company("nope").await.unwrap().is_none());
    let ids: Vec<_> = s
        .list_companies()
        .await
        .unwrap()
        .into_iter()
        .map(|c| c.id)
        .collect();
    assert_eq!(ids, ["acme", "beta"]);
    let settings = CompanySettings {
        seed_customer_id_type: Some("crm".into()),
        rows_per_second: Some(500),
        upload_rate_limit: RateLimitSetting::Custom {
            per_second: 3,
            burst: 7,
        },
        auto_create_report_suites: false,
    };
    let updated = s
        .update_company_settings("acme", settings.clone())
        .await
        .unwrap();
    assert_eq!(updated.settings, settings);
    assert_eq!(
        s.get_company("acme").await.unwrap().unwrap().settings,
        settings
    );
    assert!(matches!(
        s.update_company_settings("nope", settings).await,
        Err(StoreError::NotFound(_))
    ));
}

/// Report suites: per company; a company's rsid is unique within it.
pub async fn report_suites(s: Arc<dyn MetadataStore>) {
    with_company(&*s, "acme").await;
    with_company(&*s, "beta").await;
    let rs = s
        .create_report_suite("acme", "acme.prod", "Europe/Paris")
        .await
        .unwrap();
    assert_eq!(rs.time_zone, "Europe/Paris");
    assert!(matches!(
        s.create_report_suite("acme", "acme.prod", "UTC").await,
        Err(StoreError::Conflict(_))
    ));
    assert!(matches!(
        s.create_report_suite("ghost", "g.prod", "UTC").await,
        Err(StoreError::NotFound(_))
    ));
    assert_eq!(
        s.claim_report_suite("acme", "acme.prod", false)
            .await
            .unwrap(),
        SuiteClaim::Owned
    );
    assert_eq!(
        s.claim_report_suite("beta", "beta.new", false)
            .await
            .unwrap(),
        SuiteClaim::Unknown
    );
    assert!(s
        .get_report_suite("beta", "beta.new")
        .await
        .unwrap()
        .is_none());
    assert_eq!(
        s.claim_report_suite("beta", "beta.new", true)
            .await
            .unwrap(),
        SuiteClaim::Created
    );
    assert_eq!(
        s.claim_report_suite("beta", "beta.new", true)
            .await
            .unwrap(),
        SuiteClaim::Owned
    );
    let created = s
        .get_report_suite("beta", "beta.new")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(created.company_id, "beta");
    assert_eq!(created.time_zone, "UTC", "auto-created suites are UTC");
    assert!(
        s.get_report_suite("acme", "beta.new")
            .await
            .unwrap()
            .is_none(),
        "a company does not see another company's suite"
    );
    let acme: Vec<_> = s
        .list_report_suites(Some("acme"))
        .await
        .unwrap()
        .into_iter()
        .map(|r| r.rsid)
        .collect();
    assert_eq!(acme, ["acme.prod"]);
    assert_eq!(s.list_report_suites(None).await.unwrap().len(), 2);
}

/// Single hits: off by default; on for one company's suite of an rsid at
/// a time; the lookup by rsid finds only that suite.
pub async fn single_hit_suites(s: Arc<dyn MetadataStore>) {
    with_company(&*s, "acme").await;
    with_company(&*s, "beta").await;
    let created = s.create_report_suite("acme", "web", "UTC").await.unwrap();
    assert!(!created.accept_single_hits, "off by default");
    s.create_report_suite("beta", "web", "UTC").await.unwrap();
    assert!(s.single_hit_suite("web").await.unwrap().is_none());
    let on = s.set_accept_single_hits("acme", "web", true).await.unwrap();
    assert!(on.accept_single_hits);
    assert_eq!(on.company_id, "acme");
    let found = s
        .single_hit_suite("web")
        .await
        .unwrap()
        .expect("acme's suite");
    assert_eq!(
        (found.company_id.as_str(), found.accept_single_hits),
        ("acme", true)
    );
    assert!(
        s.get_report_suite("acme", "web")
            .await
            .unwrap()
            .unwrap()
            .accept_single_hits
    );
    assert!(
        !s.get_report_suite("beta", "web")
            .await
            .unwrap()
            .unwrap()
            .accept_single_hits
    );
    // Setting it again is no change.
    assert!(
        s.set_accept_single_hits("acme", "web", true)
            .await
            .unwrap()
            .accept_single_hits
    );
    match s.set_accept_single_hits("beta", "web", true).await {
        Err(StoreError::Conflict(m)) => assert!(m.contains("'web'"), "{m}"),
        other => panic!("a second company's suite of the same rsid: {other:?}"),
    }
    match s.set_accept_single_hits("acme", "nope", true).await {
        Err(StoreError::NotFound(_)) => {}
        other => panic!("unknown suite: {other:?}"),
    }
    let off = s
        .set_accept_single_hits("acme", "web", false)
        .await
        .unwrap();
    assert!(!off.accept_single_hits);
    assert!(s.single_hit_suite("web").await.unwrap().is_none());
    // Once acme let go, beta may take them.
    s.set_accept_single_hits("beta", "web", true).await.unwrap();
    assert_eq!(
        s.single_hit_suite("web").await.unwrap().unwrap().company_id,
        "beta"
    );
    assert!(s.single_hit_suite("other").await.unwrap().is_none());
    // Internal URL filters: empty by default, replaced whole, per company.
    assert!(created.internal_url_filters.is_empty());
    let filters = vec!["shop.example".to_string(), "checkout.example".to_string()];
    let set = s
        .set_internal_url_filters("acme", "web", &filters)
        .await
        .unwrap();
    assert_eq!(set.internal_url_filters, filters);
    assert_eq!(
        s.get_report_suite("acme", "web")
            .await
            .unwrap()
            .unwrap()
            .internal_url_filters,
        filters
    );
    assert!(s
        .get_report_suite("beta", "web")
        .await
        .unwrap()
        .unwrap()
        .internal_url_filters
        .is_empty());
    let cleared = s
        .set_internal_url_filters("acme", "web", &[])
        .await
        .unwrap();
    assert!(cleared.internal_url_filters.is_empty());
    match s.set_internal_url_filters("acme", "nope", &filters).await {
        Err(StoreError::NotFound(_)) => {}
        other => panic!("unknown suite: {other:?}"),
    }
}

/// Two companies create the same rsid: each has its own suite, sees only
/// its own, and neither's existence changes what the other is answered.
pub async fn same_rsid_in_two_companies(s: Arc<dyn MetadataStore>) {
    with_company(&*s, "acme").await;
    with_company(&*s, "beta").await;
    // Before anyone has it, and after beta made it: acme is answered alike.
    let before = s.claim_report_suite("acme", "brand", false).await.unwrap();
    assert_eq!(
        s.claim_report_suite("beta", "brand", true).await.unwrap(),
        SuiteClaim::Created
    );
    let after = s.claim_report_suite("acme", "brand", false).await.unwrap();
    assert_eq!((before, after), (SuiteClaim::Unknown, SuiteClaim::Unknown));
    assert!(s.get_report_suite("acme", "brand").await.unwrap().is_none());
    let a = s
        .create_report_suite("acme", "brand", "Asia/Tokyo")
        .await
        .expect("another company's rsid does not block a company");
    assert_eq!(a.company_id, "acme");
    let a = s.get_report_suite("acme", "brand").await.unwrap().unwrap();
    let b = s.get_report_suite("beta", "brand").await.unwrap().unwrap();
    assert_eq!(
        (a.company_id.as_str(), a.time_zone.as_str()),
        ("acme", "Asia/Tokyo")
    );
    assert_eq!(
        (b.company_id.as_str(), b.time_zone.as_str()),
        ("beta", "UTC")
    );
    for company in ["acme", "beta"] {
        let own = s.list_report_suites(Some(company)).await.unwrap();
        assert_eq!(own.len(), 1, "{company}: {own:?}");
        assert_eq!(own[0].company_id, company);
        assert_eq!(own[0].rsid, "brand");
        assert_eq!(
            s.claim_report_suite(company, "brand", true).await.unwrap(),
            SuiteClaim::Owned
        );
    }
    let all: Vec<(String, String)> = s
        .list_report_suites(None)
        .await
        .unwrap()
        .into_iter()
        .map(|r| (r.company_id, r.rsid))
        .collect();
    assert_eq!(
        all,
        [
            ("acme".to_string(), "brand".to_string()),
            ("beta".to_string(), "brand".to_string())
        ]
    );
}

/// Two uploads of one company claiming one new suite at once: it is created
/// once; and another company's claim of the same rsid creates its own.
pub async fn concurrent_suite_claims(s: Arc<dyn MetadataStore>) {
    with_company(&*s, "acme").await;
    with_company(&*s, "beta").await;
    let claim = |company: &'static str| {
        let s = s.clone();
        tokio::spawn(async move { s.claim_report_suite(company, "shared", true).await })
    };
    let (a1, a2, b) = (claim("acme"), claim("acme"), claim("beta"));
    let mut claims = vec![a1.await.unwrap().unwrap(), a2.await.unwrap().unwrap()];
    claims.sort_by_key(|c| *c == SuiteClaim::Created);
    assert_eq!(claims, [SuiteClaim::Owned, SuiteClaim::Created]);
    assert_eq!(b.await.unwrap().unwrap(), SuiteClaim::Created);
    assert_eq!(s.list_report_suites(None).await.unwrap().len(), 2);
}

/// The company of a file id, whoever asks.
pub async fn file_company(s: Arc<dyn MetadataStore>) {
    with_company(&*s, "acme").await;
    with_company(&*s, "beta").await;
    inserted(&*s, sample_file("acme", "fa", "g", None)).await;
    inserted(&*s, rejected(sample_file("beta", "fb", "g", None))).await;
    assert_eq!(s.file_company("fa").await.unwrap().as_deref(), Some("acme"));
    assert_eq!(s.file_company("fb").await.unwrap().as_deref(), Some("beta"));
    assert_eq!(s.file_company("nope").await.unwrap(), None);
}

/// A client for tests.
pub fn sample_client(client_id: &str, company: &str) -> ApiClient {
    ApiClient {
        client_id: client_id.into(),
        company_id: company.into(),
        secret_hash: "sha256$aa$bb".into(),
        technical_account: format!("{client_id}@techacct"),
        public_key_pem: None,
        disabled: false,
        created: 1,
        token_generation: 0,
    }
}

/// Clients: create, conflict, disable, public key.
pub async fn clients(s: Arc<dyn MetadataStore>) {
    with_company(&*s, "acme").await;
    let c = sample_client("cid1", "acme");
    assert_eq!(s.create_client(c.clone()).await.unwrap(), c);
    assert!(matches!(
        s.create_client(c.clone()).await,
        Err(StoreError::Conflict(_))
    ));
    let mut orphan = c.clone();
    orphan.client_id = "cid2".into();
    orphan.company_id = "ghost".into();
    assert!(matches!(
        s.create_client(orphan).await,
        Err(StoreError::NotFound(_))
    ));
    assert_eq!(s.get_client("cid1").await.unwrap().unwrap(), c);
    assert!(s.get_client("none").await.unwrap().is_none());
    s.set_client_disabled("cid1", true).await.unwrap();
    assert!(s.get_client("cid1").await.unwrap().unwrap().disabled);
    s.set_client_public_key("cid1", Some("PEM")).await.unwrap();
    assert_eq!(
        s.get_client("cid1")
            .await
            .unwrap()
            .unwrap()
            .public_key_pem
            .as_deref(),
        Some("PEM")
    );
    assert!(matches!(
        s.set_client_disabled("none", true).await,
        Err(StoreError::NotFound(_))
    ));
    assert_eq!(s.list_clients(Some("acme")).await.unwrap().len(), 1);
    assert_eq!(s.list_clients(Some("other")).await.unwrap().len(), 0);
}

/// Token generations: a rotation replaces the secret and moves the
/// generation up; a disable moves it up, an enable does not (tokens issued
/// before a disable stay revoked).
pub async fn token_revocation(s: Arc<dyn MetadataStore>) {
    with_company(&*s, "acme").await;
    let c = sample_client("cid1", "acme");
    s.create_client(c.clone()).await.unwrap();
    let generation = |s: Arc<dyn MetadataStore>| async move {
        s.get_client("cid1")
            .await
            .unwrap()
            .unwrap()
            .token_generation
    };
    assert_eq!(generation(s.clone()).await, 0);

    let rotated = s
        .rotate_client_secret("cid1", "sha256$cc$dd")
        .await
        .unwrap();
    assert_eq!(rotated.secret_hash, "sha256$cc$dd");
    assert_eq!(rotated.token_generation, 1, "a rotation revokes");
    assert_eq!(s.get_client("cid1").await.unwrap().unwrap(), rotated);
    assert!(matches!(
        s.rotate_client_secret("none", "x").await,
        Err(StoreError::NotFound(_))
    ));

    s.set_client_disabled("cid1", true).await.unwrap();
    assert_eq!(generation(s.clone()).await, 2, "a disable revokes");
    s.set_client_disabled("cid1", false).await.unwrap();
    let back = s.get_client("cid1").await.unwrap().unwrap();
    assert!(!back.disabled);
    assert_eq!(back.token_generation, 2, "an enable revives nothing");
    assert_eq!(back.secret_hash, "sha256$cc$dd");
    // A client created with a generation keeps it.
    let mut other = c.clone();
    other.client_id = "cid2".into();
    other.token_generation = 7;
    s.create_client(other).await.unwrap();
    assert_eq!(
        s.get_client("cid2")
            .await
            .unwrap()
            .unwrap()
            .token_generation,
        7
    );
}

/// Assertions: remembered once until `keep_until`, a replay before then is
/// refused, expired ones are forgotten.
pub async fn assertion_replays(s: Arc<dyn MetadataStore>) {
    assert!(s.remember_assertion("d1", 1_000, 500).await.unwrap());
    assert!(
        !s.remember_assertion("d1", 1_000, 600).await.unwrap(),
        "a replay"
    );
    assert!(
        !s.remember_assertion("d1", 2_000, 1_000).await.unwrap(),
        "still kept at keep_until"
    );
    assert!(s.remember_assertion("d2", 1_500, 600).await.unwrap());
    // Past its keep_until, d1 is forgotten (a token that old is refused as
    // expired before it gets here).
    assert!(s.remember_assertion("d1", 3_000, 1_001).await.unwrap());
    assert!(!s.remember_assertion("d1", 3_000, 1_002).await.unwrap());
    assert!(!s.remember_assertion("d2", 1_500, 1_002).await.unwrap());
}

/// Of concurrent exchanges of one assertion, exactly one is first.
pub async fn concurrent_assertions(s: Arc<dyn MetadataStore>) {
    let mut tasks = Vec::new();
    for _ in 0..8 {
        let s = s.clone();
        tasks.push(tokio::spawn(async move {
            s.remember_assertion("same", 10_000, 1).await.unwrap()
        }));
    }
    let mut firsts = 0;
    for t in tasks {
        firsts += t.await.unwrap() as usize;
    }
    assert_eq!(firsts, 1, "one exchange of an assertion wins");
}

/// UPLOADED records get 1, 2, 3... per (company, group); REJECTED get none.
pub async fn commit_and_group_sequence(s: Arc<dyn MetadataStore>) {
    with_company(&*s, "acme").await;
    with_company(&*s, "beta").await;
    let a1 = inserted(&*s, sample_file("acme", "f1", "g1", None)).await;
    let a2 = inserted(&*s, sample_file("acme", "f2", "g2", None)).await;
    let r = inserted(&*s, rejected(sample_file("acme", "f3", "g1", None))).await;
    let a3 = inserted(&*s, sample_file("acme", "f4", "g1", None)).await;
    let b1 = inserted(&*s, sample_file("beta", "f5", "g1", None)).await;
    assert_eq!(a1.group_seq, Some(1));
    assert_eq!(a2.group_seq, Some(1), "groups are numbered independently");
    assert_eq!(
        r.group_seq, None,
        "REJECTED files are not in the group order"
    );
    assert_eq!(a3.group_seq, Some(2));
    assert_eq!(
        b1.group_seq,
        Some(1),
        "companies are numbered independently"
    );
    let got = s.get_file("acme", "f4").await.unwrap().unwrap();
    assert_eq!(got, a3, "a committed record reads back identical");
}

/// A key already accepted returns the original record, storing nothing.
pub async fn idempotency(s: Arc<dyn MetadataStore>) {
    with_company(&*s, "acme").await;
    let first = inserted(&*s, sample_file("acme", "f1", "g", Some("k"))).await;
    match s
        .commit_upload(sample_file("acme", "f2", "g", Some("k")))
        .await
        .unwrap()
    {
        CommitOutcome::Existing(r) => assert_eq!(r, first),
        CommitOutcome::Inserted(_) => panic!("a reused key must not store a second file"),
    }
    // Even a REJECTED retry of an accepted key stores nothing.
    assert!(matches!(
        s.commit_upload(rejected(sample_file("acme", "f3", "g", Some("k"))))
            .await
            .unwrap(),
        CommitOutcome::Existing(_)
    ));
    assert!(s.get_file("acme", "f2").await.unwrap().is_none());
    assert!(s.get_file("acme", "f3").await.unwrap().is_none());
    assert_eq!(s.find_by_key("acme", "k").await.unwrap().unwrap(), first);
    assert!(s.find_by_key("acme", "other").await.unwrap().is_none());
}

/// A key whose upload was REJECTED may be used again.
pub async fn rejected_key_reuse(s: Arc<dyn MetadataStore>) {
    with_company(&*s, "acme").await;
    let r = inserted(&*s, rejected(sample_file("acme", "f1", "g", Some("k")))).await;
    assert_eq!(s.find_by_key("acme", "k").await.unwrap().unwrap(), r);
    let r2 = inserted(&*s, rejected(sample_file("acme", "f2", "g", Some("k")))).await;
    assert_eq!(
        s.find_by_key("acme", "k").await.unwrap().unwrap(),
        r2,
        "the latest REJECTED record when none was accepted"
    );
    let ok = inserted(&*s, sample_file("acme", "f3", "g", Some("k"))).await;
    assert_eq!(ok.group_seq, Some(1));
    assert_eq!(s.find_by_key("acme", "k").await.unwrap().unwrap(), ok);
    assert!(
        s.get_file("acme", "f1").await.unwrap().is_some(),
        "REJECTED records stay"
    );
}

/// Concurrent commits with one key: exactly one is stored.
pub async fn racing_commits(s: Arc<dyn MetadataStore>) {
    with_company(&*s, "acme").await;
    let mut tasks = Vec::new();
    for i in 0..8 {
        let s = s.clone();
        tasks.push(tokio::spawn(async move {
            s.commit_upload(sample_file("acme", &format!("f{i}"), "g", Some("same")))
                .await
                .unwrap()
        }));
    }
    let mut inserted_ids = Vec::new();
    let mut existing_ids = Vec::new();
    for t in tasks {
        match t.await.unwrap() {
            CommitOutcome::Inserted(r) => inserted_ids.push(r.file_id),
            CommitOutcome::Existing(r) => existing_ids.push(r.file_id),
        }
    }
    assert_eq!(inserted_ids.len(), 1, "exactly one racing upload is stored");
    assert!(existing_ids.iter().all(|id| *id == inserted_ids[0]));
    let page = s.list_files("acme", &FileQuery::default()).await.unwrap();
    assert_eq!(page.files.len(), 1);
}

/// One company never sees another's files or keys.
pub async fn tenant_scoping(s: Arc<dyn MetadataStore>) {
    with_company(&*s, "acme").await;
    with_company(&*s, "beta").await;
    inserted(&*s, sample_file("acme", "f1", "g", Some("k"))).await;
    assert!(s.get_file("beta", "f1").await.unwrap().is_none());
    assert!(s.find_by_key("beta", "k").await.unwrap().is_none());
    assert!(s
        .list_files("beta", &FileQuery::default())
        .await
        .unwrap()
        .files
        .is_empty());
    // The same key in another company is a different upload.
    let b = inserted(&*s, sample_file("beta", "f2", "g", Some("k"))).await;
    assert_eq!(s.find_by_key("beta", "k").await.unwrap().unwrap(), b);
}

/// Listing: newest first, filters, pagination with a cursor.
pub async fn listing(s: Arc<dyn MetadataStore>) {
    with_company(&*s, "acme").await;
    for i in 0..5 {
        inserted(&*s, sample_file("acme", &format!("u{i}"), "g1", None)).await;
    }
    inserted(&*s, sample_file("acme", "other", "g2", None)).await;
    inserted(&*s, rejected(sample_file("acme", "rej", "g1", None))).await;
    let mut q = FileQuery {
        visitor_group_id: Some("g1".into()),
        status: Some(FileStatus::Uploaded),
        limit: 2,
        cursor: None,
    };
    let mut seen = Vec::new();
    loop {
        let page = s.list_files("acme", &q).await.unwrap();
        assert!(page.files.len() <= 2);
        seen.extend(page.files.into_iter().map(|f| f.file_id));
        match page.next_cursor {
            Some(c) => q.cursor = Some(c),
            None => break,
        }
    }
    assert_eq!(
        seen,
        ["u4", "u3", "u2", "u1", "u0"],
        "newest first, no gaps"
    );
    let all = s.list_files("acme", &FileQuery::default()).await.unwrap();
    assert_eq!(all.files.len(), 7);
    assert_eq!(all.files[0].file_id, "rej");
    assert_eq!(all.next_cursor, None);
    assert!(matches!(
        s.list_files(
            "acme",
            &FileQuery {
                cursor: Some("not-a-cursor".into()),
                ..FileQuery::default()
            }
        )
        .await,
        Err(StoreError::Invalid(_))
    ));
}

/// Status updates and the pending queue in acceptance order.
pub async fn status_updates_and_pending(s: Arc<dyn MetadataStore>) {
    with_company(&*s, "acme").await;
    with_company(&*s, "beta").await;
    inserted(&*s, sample_file("acme", "a1", "g", None)).await;
    inserted(&*s, sample_file("beta", "b1", "g", None)).await;
    inserted(&*s, rejected(sample_file("acme", "r1", "g", None))).await;
    inserted(&*s, sample_file("acme", "a2", "g", None)).await;
    let pending: Vec<_> = s
        .pending_files(100)
        .await
        .unwrap()
        .into_iter()
        .map(|f| f.file_id)
        .collect();
    assert_eq!(pending, ["a1", "b1", "a2"]);
    let rec = s
        .update_file_status(
            "a1",
            StatusUpdate {
                status: Some(FileStatus::Processing),
                processing_start_date: Some(10),
                ..StatusUpdate::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(rec.status, FileStatus::Processing);
    assert_eq!(rec.processing_start_date, Some(10));
    assert_eq!(rec.processing_end_date, None);
    let rec = s
        .update_file_status(
            "a1",
            StatusUpdate {
                status: Some(FileStatus::Complete),
                file_reader_complete_date: Some(11),
                processing_end_date: Some(12),
                ..StatusUpdate::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(
        (
            rec.processing_start_date,
            rec.file_reader_complete_date,
            rec.processing_end_date
        ),
        (Some(10), Some(11), Some(12))
    );
    assert_eq!(s.get_file("acme", "a1").await.unwrap().unwrap(), rec);
    let pending: Vec<_> = s
        .pending_files(100)
        .await
        .unwrap()
        .into_iter()
        .map(|f| f.file_id)
        .collect();
    assert_eq!(pending, ["b1", "a2"]);
    assert!(matches!(
        s.update_file_status("ghost", StatusUpdate::default()).await,
        Err(StoreError::NotFound(_))
    ));
    let mut keys = s.referenced_blob_keys().await.unwrap();
    keys.sort();
    assert_eq!(
        keys,
        ["files/a1.csv.gz", "files/a2.csv.gz", "files/b1.csv.gz"]
    );
}

/// Readiness.
pub async fn ping(s: Arc<dyn MetadataStore>) {
    s.ping().await.unwrap();
}

fn group(company: &str, g: &str) -> GroupRef {
    GroupRef {
        company_id: company.into(),
        visitor_group_id: g.into(),
    }
}

fn entry(suite: &str, key: &str, t: i64, n: u32) -> StateEntry {
    StateEntry {
        report_suite: suite.into(),
        visitor_key: key.into(),
        state: VisitState {
            last_hit_time: t,
            visit_num: n,
            visit_start_time: t - 10,
            visit_page_num: 2,
            evars: Default::default(),
        },
    }
}

fn done(entries: Vec<StateEntry>) -> Completion {
    Completion {
        file_reader_complete_date: 20,
        processing_end_date: 21,
        processing_log: "final log".into(),
        delta: StateDelta {
            entries,
            seen: Vec::new(),
        },
        release_blob: true,
        lease: None,
    }
}

/// Claims: strict acceptance order within a group, one `PROCESSING` file
/// per group, groups independent, runnable groups by oldest waiting file.
pub async fn group_claims_in_order(s: Arc<dyn MetadataStore>) {
    with_company(&*s, "acme").await;
    for (id, g) in [("a1", "g1"), ("b1", "g2"), ("a2", "g1"), ("a3", "g1")] {
        inserted(&*s, sample_file("acme", id, g, None)).await;
    }
    inserted(&*s, rejected(sample_file("acme", "r", "g3", None))).await;
    assert_eq!(
        s.runnable_groups(10).await.unwrap(),
        [group("acme", "g1"), group("acme", "g2")],
        "groups with waiting files, oldest first; REJECTED files never wait"
    );
    let g1 = group("acme", "g1");
    let first = s.claim_next_file(&g1, None, 5).await.unwrap().expect("a1");
    assert_eq!(first.file_id, "a1");
    assert_eq!(first.status, FileStatus::Processing);
    assert_eq!(first.processing_start_date, Some(5));
    assert_eq!(
        s.get_file("acme", "a1").await.unwrap().unwrap().status,
        FileStatus::Processing
    );
    assert!(
        s.claim_next_file(&g1, None, 6).await.unwrap().is_none(),
        "one PROCESSING file per group"
    );
    assert_eq!(s.runnable_groups(10).await.unwrap(), [group("acme", "g2")]);
    let b1 = s
        .claim_next_file(&group("acme", "g2"), None, 6)
        .await
        .unwrap()
        .expect("groups are independent");
    assert_eq!(b1.file_id, "b1");
    s.complete_file("a1", done(vec![])).await.unwrap();
    assert_eq!(
        s.claim_next_file(&g1, None, 7)
            .await
            .unwrap()
            .unwrap()
            .file_id,
        "a2"
    );
    s.complete_file("a2", done(vec![])).await.unwrap();
    assert_eq!(
        s.claim_next_file(&g1, None, 8)
            .await
            .unwrap()
            .unwrap()
            .file_id,
        "a3"
    );
    s.complete_file("a3", done(vec![])).await.unwrap();
    assert!(s.claim_next_file(&g1, None, 9).await.unwrap().is_none());
    assert!(s
        .claim_next_file(&group("acme", "ghost"), None, 9)
        .await
        .unwrap()
        .is_none());
    assert!(s.runnable_groups(10).await.unwrap().is_empty());
}

/// Concurrent claims of one group hand out one file, never two.
pub async fn concurrent_claims(s: Arc<dyn MetadataStore>) {
    with_company(&*s, "acme").await;
    for i in 0..5 {
        inserted(&*s, sample_file("acme", &format!("f{i}"), "g", None)).await;
    }
    let mut tasks = Vec::new();
    for _ in 0..8 {
        let s = s.clone();
        tasks.push(tokio::spawn(async move {
            s.claim_next_file(&group("acme", "g"), None, 1)
                .await
                .unwrap()
        }));
    }
    let mut claimed = Vec::new();
    for t in tasks {
        if let Some(f) = t.await.unwrap() {
            claimed.push(f.file_id);
        }
    }
    assert_eq!(claimed, ["f0"], "exactly one claim wins, the first file");
}

/// Completion: dates, log, blob release and the state delta, in one
/// commit; lookups answer in request order; only a PROCESSING file completes.
pub async fn completion_and_visitor_state(s: Arc<dyn MetadataStore>) {
    with_company(&*s, "acme").await;
    with_company(&*s, "beta").await;
    inserted(&*s, sample_file("acme", "a1", "g", None)).await;
    inserted(&*s, sample_file("acme", "a2", "g", None)).await;
    inserted(&*s, sample_file("beta", "b1", "g", None)).await;
    assert!(matches!(
        s.complete_file("a1", done(vec![])).await,
        Err(StoreError::Conflict(_))
    ));
    s.claim_next_file(&group("acme", "g"), None, 1)
        .await
        .unwrap();
    let rec = s
        .complete_file(
            "a1",
            done(vec![
                entry("rs1", "vid:a", 100, 1),
                entry("rs2", "vid:a", 200, 3),
            ]),
        )
        .await
        .unwrap();
    assert_eq!(rec.status, FileStatus::Complete);
    assert_eq!(rec.processing_log, "final log");
    assert_eq!(rec.blob_key, None, "released blob keys are forgotten");
    assert_eq!(
        (
            rec.processing_start_date,
            rec.file_reader_complete_date,
            rec.processing_end_date
        ),
        (Some(1), Some(20), Some(21))
    );
    assert_eq!(s.get_file("acme", "a1").await.unwrap().unwrap(), rec);
    assert!(matches!(
        s.complete_file("a1", done(vec![])).await,
        Err(StoreError::Conflict(_))
    ));
    let keys = vec![
        ("rs2".to_string(), "vid:a".to_string()),
        ("rs1".to_string(), "vid:b".to_string()),
        ("rs1".to_string(), "vid:a".to_string()),
    ];
    let got = s.visitor_states("acme", keys.clone()).await.unwrap();
    assert_eq!(got[0].as_ref().unwrap().last_hit_time, 200);
    assert_eq!(got[0].as_ref().unwrap().visit_num, 3);
    assert_eq!(got[1], None);
    assert_eq!(got[2], Some(entry("rs1", "vid:a", 100, 1).state));
    assert_eq!(
        s.visitor_states("beta", keys).await.unwrap(),
        [None, None, None],
        "visitor state is per company"
    );
    // A later file overwrites what it touched and keeps the rest.
    s.claim_next_file(&group("acme", "g"), None, 2)
        .await
        .unwrap();
    s.complete_file(
        "a2",
        done(vec![
            entry("rs1", "vid:a", 300, 2),
            entry("rs1", "vid:c", 5, 1),
        ]),
    )
    .await
    .unwrap();
    let all = s.list_visitor_states("acme", None, 10).await.unwrap();
    let summary: Vec<_> = all
        .iter()
        .map(|e| {
            (
                e.report_suite.as_str(),
                e.visitor_key.as_str(),
                e.last_hit_time,
            )
        })
        .collect();
    assert_eq!(
        summary,
        [
            ("rs1", "vid:a", 300),
            ("rs1", "vid:c", 5),
            ("rs2", "vid:a", 200)
        ]
    );
    let page = s
        .list_visitor_states("acme", Some(("rs1".into(), "vid:a".into())), 1)
        .await
        .unwrap();
    assert_eq!(page.len(), 1);
    assert_eq!(page[0].visitor_key, "vid:c", "pages continue after the key");
    assert!(s
        .list_visitor_states("beta", None, 10)
        .await
        .unwrap()
        .is_empty());
}

fn evar(n: u16, value: &str, set_at: i64, visit_num: u32) -> PersistedEvar {
    PersistedEvar {
        evar: n,
        value: value.into(),
        set_at,
        visit_num,
    }
}

fn with_evars(mut e: StateEntry, evars: Vec<PersistedEvar>) -> StateEntry {
    e.state.evars = evars.into();
    e
}

/// A visitor's eVars: stored by the completion with its state, read back
/// by `visitor_states` and `list_visitor_states`, replaced whole by a later
/// file (also by none).
pub async fn visitor_evars(s: Arc<dyn MetadataStore>) {
    with_company(&*s, "acme").await;
    for id in ["a1", "a2"] {
        inserted(&*s, sample_file("acme", id, "g", None)).await;
    }
    let g = group("acme", "g");
    let live = vec![
        evar(1, "spring sale", 100, 1),
        evar(3, "tier \"gold\" / é", 90, 1),
    ];
    let a = with_evars(entry("rs1", "vid:a", 100, 1), live.clone());
    let b = entry("rs1", "vid:b", 50, 1);
    s.claim_next_file(&g, None, 1).await.unwrap();
    s.complete_file("a1", done(vec![a.clone(), b.clone()]))
        .await
        .unwrap();
    let keys = vec![
        ("rs1".to_string(), "vid:a".to_string()),
        ("rs1".to_string(), "vid:b".to_string()),
    ];
    assert_eq!(
        s.visitor_states("acme", keys.clone()).await.unwrap(),
        [Some(a.state.clone()), Some(b.state.clone())],
        "eVars round trip with the visit state"
    );
    let listed = s.list_visitor_states("acme", None, 10).await.unwrap();
    assert_eq!(listed.len(), 2);
    assert_eq!(listed[0].evars, live);
    assert_eq!(listed[0].state(), a.state);
    assert!(listed[1].evars.is_empty());
    assert_eq!(listed[1].state(), b.state);
    // A later file replaces them: vid:a has none left, vid:b gets one.
    let a2 = entry("rs1", "vid:a", 4_000, 2);
    let b2 = with_evars(entry("rs1", "vid:b", 60, 1), vec![evar(250, "x", 60, 1)]);
    s.claim_next_file(&g, None, 2).await.unwrap();
    s.complete_file("a2", done(vec![a2.clone(), b2.clone()]))
        .await
        .unwrap();
    assert_eq!(
        s.visitor_states("acme", keys).await.unwrap(),
        [Some(a2.state.clone()), Some(b2.state.clone())],
        "an update to no eVars leaves none"
    );
    let listed = s.list_visitor_states("acme", None, 10).await.unwrap();
    assert!(listed[0].evars.is_empty());
    assert_eq!(listed[1].evars[..], b2.state.evars[..]);
}

fn seen_id(suite: &str, kind: &str, id: &str) -> SeenId {
    SeenId {
        report_suite: suite.into(),
        kind: kind.into(),
        id: id.into(),
    }
}

fn done_seen(seen: Vec<SeenId>) -> Completion {
    let mut c = done(vec![]);
    c.delta.seen = seen;
    c
}

/// IDs counted once: stored by a completion (only), looked up in batches
/// in request order, per company, per (report suite, kind, id).
pub async fn seen_ids(s: Arc<dyn MetadataStore>) {
    with_company(&*s, "acme").await;
    with_company(&*s, "beta").await;
    for id in ["a1", "a2", "a3"] {
        inserted(&*s, sample_file("acme", id, "g", None)).await;
    }
    let g = group("acme", "g");
    let order = seen_id("rs1", PURCHASE_ID, "ORD-1");
    let serial = seen_id("rs1", &SeenId::event_kind("event1"), "S-9");
    let other_suite = seen_id("rs2", PURCHASE_ID, "ORD-1");
    assert!(
        s.seen_ids("acme", vec![]).await.unwrap().is_empty(),
        "no keys, no answers"
    );
    // Nothing is stored by a completion that does not happen.
    assert!(matches!(
        s.complete_file("a1", done_seen(vec![order.clone()])).await,
        Err(StoreError::Conflict(_))
    ));
    assert_eq!(
        s.seen_ids("acme", vec![order.clone()]).await.unwrap(),
        [false],
        "only a completion stores IDs"
    );
    s.claim_next_file(&g, None, 1).await.unwrap();
    // Repeats within one delta are harmless.
    s.complete_file(
        "a1",
        done_seen(vec![
            order.clone(),
            serial.clone(),
            order.clone(),
            other_suite.clone(),
        ]),
    )
    .await
    .unwrap();
    let asked = vec![
        serial.clone(),
        seen_id("rs1", PURCHASE_ID, "ORD-2"),
        order.clone(),
        seen_id("rs1", &SeenId::event_kind("event2"), "S-9"),
        seen_id("rs3", PURCHASE_ID, "ORD-1"),
        other_suite.clone(),
        order.clone(),
    ];
    assert_eq!(
        s.seen_ids("acme", asked.clone()).await.unwrap(),
        [true, false, true, false, false, true, true],
        "answers in request order; kind and suite are part of the key"
    );
    assert_eq!(
        s.seen_ids("beta", asked).await.unwrap(),
        [false; 7],
        "another company's IDs are not seen"
    );
    // A later completion may name stored IDs again, with new ones.
    s.claim_next_file(&g, None, 2).await.unwrap();
    let many: Vec<SeenId> = (0..1_500)
        .map(|i| seen_id("rs1", PURCHASE_ID, &format!("B-{i}")))
        .collect();
    let mut again = many.clone();
    again.push(order.clone());
    s.complete_file("a2", done_seen(again)).await.unwrap();
    let mut asked: Vec<SeenId> = Vec::new();
    let mut expected = Vec::new();
    for i in (0..3_000).rev() {
        asked.push(seen_id("rs1", PURCHASE_ID, &format!("B-{i}")));
        expected.push(i < 1_500);
    }
    asked.push(order);
    expected.push(true);
    assert_eq!(
        s.seen_ids("acme", asked).await.unwrap(),
        expected,
        "a large batch answers each key in order"
    );
    // Both lookups in one call answer as each alone.
    let states = vec![("rs1".to_string(), "v:nobody".to_string())];
    let ids = vec![serial.clone(), seen_id("rs1", PURCHASE_ID, "ORD-2")];
    assert_eq!(
        s.lookups("acme", states.clone(), ids.clone())
            .await
            .unwrap(),
        (
            s.visitor_states("acme", states.clone()).await.unwrap(),
            s.seen_ids("acme", ids.clone()).await.unwrap()
        )
    );
    assert_eq!(
        s.lookups("acme", vec![], ids).await.unwrap(),
        (vec![], vec![true, false])
    );
    assert_eq!(
        s.lookups("acme", states, vec![]).await.unwrap(),
        (vec![None], vec![])
    );
    // A completion with no IDs stores none and keeps the rest.
    s.claim_next_file(&g, None, 3).await.unwrap();
    s.complete_file("a3", done_seen(vec![])).await.unwrap();
    assert_eq!(s.seen_ids("acme", vec![serial]).await.unwrap(), [true]);
}

/// eVar settings: none by default, replaced whole, on every read of the
/// suite, per company; other settings left alone.
pub async fn evar_settings(s: Arc<dyn MetadataStore>) {
    with_company(&*s, "acme").await;
    with_company(&*s, "beta").await;
    let created = s.create_report_suite("acme", "web", "UTC").await.unwrap();
    assert!(created.evar_settings.is_empty());
    s.create_report_suite("beta", "web", "UTC").await.unwrap();
    let settings: Vec<EvarSetting> = ["2=7d", "3=month,original", "7=event:purchase", "9=never"]
        .iter()
        .map(|t| EvarSetting::parse(t).unwrap())
        .collect();
    let filters = vec!["shop.example".to_string()];
    s.set_internal_url_filters("acme", "web", &filters)
        .await
        .unwrap();
    let set = s.set_evar_settings("acme", "web", &settings).await.unwrap();
    assert_eq!(set.evar_settings, settings);
    assert_eq!(set.internal_url_filters, filters, "other settings kept");
    assert_eq!(
        s.get_report_suite("acme", "web")
            .await
            .unwrap()
            .unwrap()
            .evar_settings,
        settings
    );
    let listed = s.list_report_suites(Some("acme")).await.unwrap();
    assert_eq!(listed[0].evar_settings, settings);
    s.set_accept_single_hits("acme", "web", true).await.unwrap();
    assert_eq!(
        s.single_hit_suite("web")
            .await
            .unwrap()
            .unwrap()
            .evar_settings,
        settings
    );
    assert!(
        s.get_report_suite("beta", "web")
            .await
            .unwrap()
            .unwrap()
            .evar_settings
            .is_empty(),
        "another company's suite of the same rsid is its own"
    );
    let filters2 = vec!["pay.example".to_string()];
    let refiltered = s
        .set_internal_url_filters("acme", "web", &filters2)
        .await
        .unwrap();
    assert_eq!(refiltered.evar_settings, settings, "kept by other settings");
    let fewer = vec![EvarSetting::parse("5=hit").unwrap()];
    assert_eq!(
        s.set_evar_settings("acme", "web", &fewer)
            .await
            .unwrap()
            .evar_settings,
        fewer,
        "the list is replaced whole"
    );
    assert!(s
        .set_evar_settings("acme", "web", &[])
        .await
        .unwrap()
        .evar_settings
        .is_empty());
    for (company, rsid) in [("acme", "nope"), ("ghost", "web")] {
        match s.set_evar_settings(company, rsid, &settings).await {
            Err(StoreError::NotFound(_)) => {}
            other => panic!("suite {rsid} of {company}: {other:?}"),
        }
    }
    assert!(s
        .get_report_suite("beta", "web")
        .await
        .unwrap()
        .unwrap()
        .evar_settings
        .is_empty());
}

/// Stored JSON that does not decode (written by hand or by another tool)
/// is a [`StoreError::Backend`] of the read that meets it, never a panic,
/// and the store goes on answering. Not part of [`run_all`]: `corrupt`
/// runs one SQL statement on the store's database directly.
pub async fn undecodable_values<F, Fut>(s: Arc<dyn MetadataStore>, corrupt: F)
where
    F: Fn(&'static str) -> Fut,
    Fut: Future<Output = ()>,
{
    with_company(&*s, "acme").await;
    s.create_report_suite("acme", "web", "UTC").await.unwrap();
    inserted(&*s, sample_file("acme", "a1", "g", None)).await;
    s.claim_next_file(&group("acme", "g"), None, 1)
        .await
        .unwrap();
    let a = with_evars(entry("web", "vid:a", 100, 1), vec![evar(1, "x", 100, 1)]);
    s.complete_file("a1", done(vec![a, entry("web", "vid:b", 100, 1)]))
        .await
        .unwrap();
    let vid = |k: &str| vec![("web".to_string(), k.to_string())];
    for bad in [
        "UPDATE visitor_states SET evars = 'not json' WHERE visitor_key = 'vid:a'",
        "UPDATE visitor_states SET evars = '[{\"n\":1}]' WHERE visitor_key = 'vid:a'",
    ] {
        corrupt(bad).await;
        match s.visitor_states("acme", vid("vid:a")).await {
            Err(StoreError::Backend { .. }) => {}
            other => panic!("{bad}: visitor_states answered {other:?}"),
        }
        match s.list_visitor_states("acme", None, 10).await {
            Err(StoreError::Backend { .. }) => {}
            other => panic!("{bad}: list_visitor_states answered {other:?}"),
        }
        let b = s.visitor_states("acme", vid("vid:b")).await.unwrap();
        assert_eq!(b[0].as_ref().map(|st| st.evars.len()), Some(0), "{bad}");
    }
    corrupt(
        "UPDATE report_suites SET evar_settings = '[{\"evar\":2,\"expiration\":\"soon\"}]' \
         WHERE rsid = 'web'",
    )
    .await;
    match s.get_report_suite("acme", "web").await {
        Err(StoreError::Backend { .. }) => {}
        other => panic!("undecodable eVar settings: {other:?}"),
    }
    s.ping().await.expect("the store goes on answering");
    assert_eq!(
        s.seen_ids("acme", vec![]).await.unwrap(),
        Vec::<bool>::new()
    );
}

/// An ERROR stops its group (later files wait) until retried; other
/// groups go on; retry clears the error, keeps the upload log.
pub async fn errors_stop_a_group_until_retry(s: Arc<dyn MetadataStore>) {
    with_company(&*s, "acme").await;
    inserted(&*s, sample_file("acme", "a1", "g", None)).await;
    inserted(&*s, sample_file("acme", "a2", "g", None)).await;
    inserted(&*s, sample_file("acme", "o1", "other", None)).await;
    let g = group("acme", "g");
    assert!(matches!(
        s.fail_file("a1", "disk", "io", 3, None).await,
        Err(StoreError::Conflict(_))
    ));
    s.claim_next_file(&g, None, 1).await.unwrap();
    let failed = s
        .fail_file("a1", "lake write failed", "lake", 3, None)
        .await
        .unwrap();
    assert_eq!(failed.status, FileStatus::Error);
    assert_eq!(failed.error.as_deref(), Some("lake write failed"));
    assert_eq!(failed.error_code.as_deref(), Some("lake"));
    assert_eq!(failed.processing_end_date, Some(3));
    assert!(failed
        .processing_log
        .ends_with("\nProcessing failed: lake write failed"));
    assert_eq!(
        crate::upload_log(&failed.processing_log),
        "Processing complete: 9 rows will be submitted. 1 rows were invalid."
    );
    assert!(
        s.claim_next_file(&g, None, 4).await.unwrap().is_none(),
        "stopped"
    );
    assert_eq!(
        s.runnable_groups(10).await.unwrap(),
        [group("acme", "other")]
    );
    assert_eq!(s.retry_group(&group("acme", "other")).await.unwrap(), 0);
    assert_eq!(s.retry_group(&g).await.unwrap(), 1);
    let again = s.get_file("acme", "a1").await.unwrap().unwrap();
    assert_eq!(again.status, FileStatus::Uploaded);
    assert_eq!((again.error, again.processing_end_date), (None, None));
    assert_eq!(
        s.claim_next_file(&g, None, 5)
            .await
            .unwrap()
            .unwrap()
            .file_id,
        "a1",
        "the failed file runs again first"
    );
}

/// Startup: PROCESSING files go back to UPLOADED and are claimed again.
pub async fn requeue_after_crash(s: Arc<dyn MetadataStore>) {
    with_company(&*s, "acme").await;
    inserted(&*s, sample_file("acme", "a1", "g", None)).await;
    inserted(&*s, sample_file("acme", "a2", "g", None)).await;
    s.claim_next_file(&group("acme", "g"), None, 1)
        .await
        .unwrap();
    assert_eq!(s.requeue_processing().await.unwrap(), 1);
    assert_eq!(s.requeue_processing().await.unwrap(), 0);
    let rec = s.get_file("acme", "a1").await.unwrap().unwrap();
    assert_eq!(rec.status, FileStatus::Uploaded);
    assert_eq!(rec.processing_start_date, None);
    assert_eq!(
        s.claim_next_file(&group("acme", "g"), None, 2)
            .await
            .unwrap()
            .unwrap()
            .file_id,
        "a1"
    );
    // One file requeued (a full disk stopped its run): first again, and
    // only a PROCESSING file is moved.
    assert!(s.requeue_file("a1", None).await.unwrap());
    assert!(!s.requeue_file("a1", None).await.unwrap());
    assert!(!s.requeue_file("a2", None).await.unwrap());
    let rec = s.get_file("acme", "a1").await.unwrap().unwrap();
    assert_eq!(rec.status, FileStatus::Uploaded);
    assert_eq!(rec.processing_start_date, None);
    assert_eq!(
        s.claim_next_file(&group("acme", "g"), None, 3)
            .await
            .unwrap()
            .unwrap()
            .file_id,
        "a1"
    );
}

/// Retraction: only a `COMPLETE` file of the caller's company; recorded
/// once (dates, count, one log line); a second call changes nothing.
pub async fn retraction(s: Arc<dyn MetadataStore>) {
    with_company(&*s, "acme").await;
    with_company(&*s, "beta").await;
    inserted(&*s, sample_file("acme", "a1", "g", None)).await;
    inserted(&*s, sample_file("acme", "a2", "g", None)).await;
    let fresh = s.get_file("acme", "a1").await.unwrap().unwrap();
    assert_eq!(
        (fresh.hits_retracted_at, fresh.hits_retracted),
        (None, None)
    );
    assert!(
        matches!(
            s.mark_hits_retracted("acme", "a1", 9, 50).await,
            Err(StoreError::Conflict(_))
        ),
        "an UPLOADED file is not retracted"
    );
    s.claim_next_file(&group("acme", "g"), None, 1)
        .await
        .unwrap();
    assert!(
        matches!(
            s.mark_hits_retracted("acme", "a1", 9, 50).await,
            Err(StoreError::Conflict(_))
        ),
        "a PROCESSING file is not retracted"
    );
    s.complete_file("a1", done(vec![])).await.unwrap();
    assert!(
        matches!(
            s.mark_hits_retracted("beta", "a1", 9, 50).await,
            Err(StoreError::NotFound(_))
        ),
        "another company's file is unknown"
    );
    assert!(matches!(
        s.mark_hits_retracted("acme", "ghost", 9, 50).await,
        Err(StoreError::NotFound(_))
    ));
    let rec = s.mark_hits_retracted("acme", "a1", 9, 50).await.unwrap();
    assert_eq!(rec.status, FileStatus::Complete);
    assert_eq!(
        (rec.hits_retracted_at, rec.hits_retracted),
        (Some(50), Some(9))
    );
    assert_eq!(
        rec.processing_log,
        format!("final log\n{}", crate::retraction_note(50, 9))
    );
    assert_eq!(s.get_file("acme", "a1").await.unwrap().unwrap(), rec);
    let again = s.mark_hits_retracted("acme", "a1", 0, 60).await.unwrap();
    assert_eq!(again, rec, "retracting twice changes nothing");
    // The group goes on: the retracted file stays COMPLETE.
    assert_eq!(
        s.claim_next_file(&group("acme", "g"), None, 2)
            .await
            .unwrap()
            .unwrap()
            .file_id,
        "a2"
    );
}

/// Visitor state deletion: only the named keys of the named company; the
/// count is of states that existed; a deleted visitor reads as never seen.
pub async fn visitor_state_deletion(s: Arc<dyn MetadataStore>) {
    with_company(&*s, "acme").await;
    with_company(&*s, "beta").await;
    for (company, id) in [("acme", "a1"), ("beta", "b1")] {
        inserted(&*s, sample_file(company, id, "g", None)).await;
        s.claim_next_file(&group(company, "g"), None, 1)
            .await
            .unwrap();
        s.complete_file(
            id,
            done(vec![
                entry("rs1", "vid:a", 100, 1),
                entry("rs2", "vid:a", 200, 3),
                entry("rs1", "vid:b", 300, 2),
            ]),
        )
        .await
        .unwrap();
    }
    let keys = vec![
        ("rs1".to_string(), "vid:a".to_string()),
        ("rs2".to_string(), "vid:a".to_string()),
        ("rs3".to_string(), "vid:a".to_string()),
    ];
    assert_eq!(
        s.delete_visitor_states("acme", keys.clone()).await.unwrap(),
        2
    );
    assert_eq!(
        s.delete_visitor_states("acme", keys.clone()).await.unwrap(),
        0
    );
    assert_eq!(s.delete_visitor_states("acme", vec![]).await.unwrap(), 0);
    let after = s
        .visitor_states(
            "acme",
            vec![
                ("rs1".into(), "vid:a".into()),
                ("rs2".into(), "vid:a".into()),
                ("rs1".into(), "vid:b".into()),
            ],
        )
        .await
        .unwrap();
    assert_eq!(after[0], None);
    assert_eq!(after[1], None);
    assert_eq!(
        after[2].as_ref().map(|st| st.visit_num),
        Some(2),
        "others stay"
    );
    let beta = s.list_visitor_states("beta", None, 10).await.unwrap();
    assert_eq!(beta.len(), 3, "another company's states stay");
}

fn deletion(company: &str, at: i64) -> NewPrivacyDeletion {
    NewPrivacyDeletion {
        company_id: company.into(),
        requested_by: "client-1".into(),
        requested_at: at,
        identifier_type: "customer_id".into(),
        customer_id_type: Some("crm".into()),
        identifier_sha256: "ab".repeat(32),
        hits_removed: 12,
        visitors: 2,
        table_version: Some(7),
    }
}

/// The privacy audit: records kept as given with increasing ids, listed
/// per company newest first, paginated with a cursor.
pub async fn privacy_audit(s: Arc<dyn MetadataStore>) {
    with_company(&*s, "acme").await;
    with_company(&*s, "beta").await;
    let mut ids = Vec::new();
    for at in 1..=5 {
        let d = s
            .record_privacy_deletion(deletion("acme", at))
            .await
            .unwrap();
        assert_eq!(d.deletion, deletion("acme", at));
        ids.push(d.id);
    }
    let mut none = deletion("beta", 9);
    none.customer_id_type = None;
    none.identifier_type = "ip_address".into();
    none.table_version = None;
    none.hits_removed = 0;
    none.visitors = 0;
    let b = s.record_privacy_deletion(none.clone()).await.unwrap();
    assert_eq!(b.deletion, none);
    assert!(ids.windows(2).all(|w| w[0] < w[1]), "{ids:?}");
    let mut q = PageQuery {
        limit: 2,
        cursor: None,
    };
    let mut seen = Vec::new();
    loop {
        let page = s.list_privacy_deletions("acme", &q).await.unwrap();
        assert!(page.deletions.len() <= 2);
        seen.extend(page.deletions.iter().map(|d| d.deletion.requested_at));
        match page.next_cursor {
            Some(c) => q.cursor = Some(c),
            None => break,
        }
    }
    assert_eq!(seen, [5, 4, 3, 2, 1], "newest first, no gaps");
    let beta = s
        .list_privacy_deletions("beta", &PageQuery::default())
        .await
        .unwrap();
    assert_eq!(beta.deletions, [b]);
    assert!(s
        .list_privacy_deletions("ghost", &PageQuery::default())
        .await
        .unwrap()
        .deletions
        .is_empty());
    assert!(matches!(
        s.list_privacy_deletions(
            "acme",
            &PageQuery {
                cursor: Some("x".into()),
                limit: 0
            }
        )
        .await,
        Err(StoreError::Invalid(_))
    ));
}

/// Leases: a held group is not claimed by another node; a takeover after
/// expiry moves the epoch up and voids the old run; every write under a
/// lease that is no longer current fails with `Fenced`; claims are kept.
pub async fn leases_and_fencing(s: Arc<dyn MetadataStore>) {
    with_company(&*s, "acme").await;
    for (id, g) in [("a1", "g1"), ("b1", "g2"), ("a2", "g1"), ("c1", "g3")] {
        inserted(&*s, sample_file("acme", id, g, None)).await;
    }
    // g3 stops on an error: not claimable.
    let g3 = group("acme", "g3");
    s.claim_next_file(&g3, None, 1).await.unwrap().expect("c1");
    s.fail_file("c1", "broken", "io", 2, None).await.unwrap();

    let first = s.claim_groups("n1", 10, 60_000).await.unwrap();
    let groups: Vec<_> = first
        .iter()
        .map(|l| l.group.visitor_group_id.as_str())
        .collect();
    assert_eq!(
        groups,
        ["g1", "g2"],
        "claimable groups, oldest waiting file first"
    );
    assert!(
        first.iter().all(|l| l.epoch == 1 && l.node_id == "n1"),
        "{first:?}"
    );
    assert!(
        s.claim_groups("n2", 10, 60_000).await.unwrap().is_empty(),
        "held groups are not claimed by another node"
    );
    let l1 = first[0].clone();
    let g1 = l1.group.clone();
    let a1 = s
        .claim_next_file(&g1, Some(&l1), 5)
        .await
        .unwrap()
        .expect("a1");
    assert_eq!(a1.file_id, "a1");
    let forged = GroupLease {
        epoch: 2,
        ..l1.clone()
    };
    assert!(
        matches!(
            s.claim_next_file(&g1, Some(&forged), 5).await,
            Err(StoreError::Fenced(_))
        ),
        "a lease of another epoch is fenced"
    );
    assert!(
        matches!(
            s.claim_next_file(&group("acme", "g2"), Some(&l1), 5).await,
            Err(StoreError::Fenced(_))
        ),
        "a lease of another group is fenced"
    );
    assert_eq!(s.renew_leases(&first, 60_000).await.unwrap(), [true, true]);

    // n1 stops renewing: its lease on g1 runs out and n2 takes the group.
    assert_eq!(
        s.renew_leases(std::slice::from_ref(&l1), 0).await.unwrap(),
        [true]
    );
    tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    let taken = s.claim_groups("n2", 10, 60_000).await.unwrap();
    assert_eq!(taken.len(), 1, "{taken:?}");
    let l2 = taken[0].clone();
    assert_eq!(
        (l2.group.clone(), l2.epoch, l2.node_id.as_str()),
        (g1.clone(), 2, "n2")
    );
    let voided = s.get_file("acme", "a1").await.unwrap().unwrap();
    assert_eq!(voided.status, FileStatus::Uploaded, "the old run is void");
    assert_eq!(voided.processing_start_date, None);

    // The old holder can do nothing more to the group.
    for r in [
        s.claim_next_file(&g1, Some(&l1), 6).await.map(|_| ()),
        s.fail_file("a1", "late", "io", 6, Some(&l1))
            .await
            .map(|_| ()),
        s.requeue_file("a1", Some(&l1)).await.map(|_| ()),
    ] {
        assert!(matches!(r, Err(StoreError::Fenced(_))), "{r:?}");
    }
    assert_eq!(
        s.renew_leases(std::slice::from_ref(&l1), 60_000)
            .await
            .unwrap(),
        [false]
    );
    assert!(!s.release_lease(&l1).await.unwrap());

    let a1 = s
        .claim_next_file(&g1, Some(&l2), 7)
        .await
        .unwrap()
        .expect("a1 again");
    assert_eq!(a1.file_id, "a1");
    let late = Completion {
        lease: Some(l1.clone()),
        ..done(vec![entry("rs1", "v", 10, 1)])
    };
    assert!(
        matches!(
            s.complete_file("a1", late).await,
            Err(StoreError::Fenced(_))
        ),
        "a completion under a lost lease is fenced"
    );
    assert_eq!(
        s.visitor_states("acme", vec![("rs1".into(), "v".into())])
            .await
            .unwrap(),
        [None],
        "a fenced completion stores no state"
    );
    let ok = Completion {
        lease: Some(l2.clone()),
        ..done(vec![entry("rs1", "v", 10, 1)])
    };
    let rec = s.complete_file("a1", ok).await.unwrap();
    assert_eq!(rec.status, FileStatus::Complete);
    assert_eq!(
        (rec.processed_by.as_deref(), rec.lease_epoch),
        (Some("n2"), Some(2))
    );
    let stored = s.get_file("acme", "a1").await.unwrap().unwrap();
    assert_eq!(
        (stored.processed_by.as_deref(), stored.lease_epoch),
        (Some("n2"), Some(2))
    );

    // Released: free for any node at once.
    assert!(s.release_lease(&l2).await.unwrap());
    let again = s.claim_groups("n1", 10, 60_000).await.unwrap();
    assert_eq!(again.len(), 1);
    assert_eq!((again[0].group.clone(), again[0].epoch), (g1.clone(), 3));

    let claims = s.lease_claims(&g1).await.unwrap();
    let who: Vec<_> = claims
        .iter()
        .map(|c| (c.epoch, c.node_id.as_str()))
        .collect();
    assert_eq!(who, [(1, "n1"), (2, "n2"), (3, "n1")]);
    assert_eq!(claims[0].previous_expires_ms, None);
    for c in &claims[1..] {
        let prev = c.previous_expires_ms.expect("a claim after another");
        assert!(
            prev <= c.claimed_ms,
            "claimed before the lease before ran out: {c:?}"
        );
    }

    // A node starting again under its id gives its leases up.
    assert_eq!(s.release_node_leases("n1").await.unwrap(), 2, "g1 and g2");
    assert_eq!(s.claim_groups("n3", 10, 60_000).await.unwrap().len(), 2);
    // A single node's start releases every lease.
    s.requeue_processing().await.unwrap();
    assert_eq!(s.claim_groups("n4", 10, 60_000).await.unwrap().len(), 2);
}

/// Nodes claiming at once never get the same group.
pub async fn concurrent_lease_claims(s: Arc<dyn MetadataStore>) {
    with_company(&*s, "acme").await;
    for i in 0..20 {
        inserted(
            &*s,
            sample_file("acme", &format!("f{i}"), &format!("g{i}"), None),
        )
        .await;
    }
    let mut tasks = Vec::new();
    for n in 0..8 {
        let s = s.clone();
        tasks.push(tokio::spawn(async move {
            s.claim_groups(&format!("n{n}"), 3, 60_000).await.unwrap()
        }));
    }
    let mut seen = std::collections::HashSet::new();
    for t in tasks {
        for l in t.await.unwrap() {
            assert_eq!(l.epoch, 1);
            assert!(seen.insert(l.group.clone()), "claimed twice: {:?}", l.group);
        }
    }
    assert_eq!(seen.len(), 20, "every group claimed once");
}

/// A shared secret is the first value stored, whoever asks.
pub async fn shared_secrets(s: Arc<dyn MetadataStore>) {
    let mut tasks = Vec::new();
    for n in 0..8 {
        let s = s.clone();
        tasks.push(tokio::spawn(async move {
            s.shared_secret("token_key", &format!("candidate-{n}"))
                .await
                .unwrap()
        }));
    }
    let mut values = std::collections::HashSet::new();
    for t in tasks {
        values.insert(t.await.unwrap());
    }
    assert_eq!(values.len(), 1, "one value for all: {values:?}");
    let v = values.into_iter().next().unwrap();
    assert!(v.starts_with("candidate-"));
    assert_eq!(s.shared_secret("token_key", "other").await.unwrap(), v);
    assert_eq!(s.shared_secret("another", "x").await.unwrap(), "x");
}

/// Node heartbeats count the nodes alive now.
pub async fn node_heartbeats(s: Arc<dyn MetadataStore>) {
    assert_eq!(s.node_heartbeat("n1", 60_000).await.unwrap(), 1);
    assert_eq!(s.node_heartbeat("n2", 60_000).await.unwrap(), 2);
    assert_eq!(
        s.node_heartbeat("n1", 60_000).await.unwrap(),
        2,
        "a node counts once"
    );
    // n1 leaves (its heartbeat runs out at once).
    s.node_heartbeat("n1", 0).await.unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    assert_eq!(s.node_heartbeat("n2", 60_000).await.unwrap(), 1);
}

/// Content hashes: the earliest accepted file of the company with the
/// bytes; rejected files and other companies play no part.
pub async fn content_hashes(s: Arc<dyn MetadataStore>) {
    with_company(&*s, "acme").await;
    with_company(&*s, "other").await;
    let with_hash = |company: &str, id: &str, key: &str, hash: &str| {
        let mut f = sample_file(company, id, "g", Some(key));
        f.record.content_sha256 = Some(hash.to_string());
        f
    };
    let mut rejected = with_hash("acme", "r0", "k0", "aa");
    rejected.record.status = FileStatus::Rejected;
    inserted(&*s, rejected).await;
    assert_eq!(
        s.find_by_content("acme", "aa").await.unwrap(),
        None,
        "rejected"
    );
    inserted(&*s, with_hash("acme", "a1", "k1", "aa")).await;
    let mut dup = with_hash("acme", "a2", "k2", "aa");
    dup.record.duplicate_of = Some("a1".into());
    inserted(&*s, dup).await;
    inserted(&*s, with_hash("other", "o1", "k1", "bb")).await;
    let found = s.find_by_content("acme", "aa").await.unwrap().expect("a1");
    assert_eq!(found.file_id, "a1", "the earliest");
    assert_eq!(found.content_sha256.as_deref(), Some("aa"));
    let a2 = s.get_file("acme", "a2").await.unwrap().unwrap();
    assert_eq!(a2.duplicate_of.as_deref(), Some("a1"));
    assert_eq!(
        s.find_by_content("acme", "bb").await.unwrap(),
        None,
        "another company's"
    );
    assert_eq!(s.find_by_content("acme", "cc").await.unwrap(), None);
}

/// Group control: a paused group is never claimed (by lease or directly)
/// and a running file finishes; resume lets it run; every action is
/// recorded with its actor and time; unknown groups are not found and one
/// company's action does not touch another's group of the same id.
pub async fn group_pause_and_resume(s: Arc<dyn MetadataStore>) {
    with_company(&*s, "acme").await;
    with_company(&*s, "other").await;
    inserted(&*s, sample_file("acme", "a1", "g", None)).await;
    inserted(&*s, sample_file("acme", "a2", "g", None)).await;
    inserted(&*s, sample_file("other", "b1", "g", None)).await;
    let g = group("acme", "g");
    assert!(matches!(
        s.control_group(&group("acme", "never"), GroupAction::Pause, "c1", 1)
            .await,
        Err(StoreError::NotFound(_))
    ));
    assert_eq!(s.group_info(&group("acme", "never")).await.unwrap(), None);
    let info = s.group_info(&g).await.unwrap().unwrap();
    assert_eq!(info.state, GroupState::Active);
    assert_eq!((info.files_waiting, info.rows_waiting), (2, 20));
    assert!(info.actions.is_empty());

    s.claim_next_file(&g, None, 2).await.unwrap().unwrap();
    let rec = s
        .control_group(&g, GroupAction::Pause, "c1", 3)
        .await
        .unwrap();
    assert_eq!(
        (rec.action, rec.actor.as_str(), rec.at, rec.files),
        (GroupAction::Pause, "c1", 3, 0)
    );
    // Pausing again is recorded too and changes nothing.
    s.control_group(&g, GroupAction::Pause, "admin", 4)
        .await
        .unwrap();
    let info = s.group_info(&g).await.unwrap().unwrap();
    assert_eq!(info.state, GroupState::Paused);
    assert_eq!(
        info.in_progress.as_ref().map(|f| f.file_id.as_str()),
        Some("a1")
    );
    assert_eq!((info.files_waiting, info.rows_waiting), (1, 10));
    assert_eq!(
        info.actions
            .iter()
            .map(|a| (a.action, a.actor.as_str(), a.at))
            .collect::<Vec<_>>(),
        [
            (GroupAction::Pause, "c1", 3),
            (GroupAction::Pause, "admin", 4)
        ]
    );
    // The running file finishes; nothing else starts.
    s.complete_file("a1", done(vec![])).await.unwrap();
    assert!(
        s.claim_next_file(&g, None, 5).await.unwrap().is_none(),
        "paused"
    );
    assert_eq!(s.runnable_groups(10).await.unwrap(), [group("other", "g")]);
    let leases = s.claim_groups("n1", 10, 60_000).await.unwrap();
    assert_eq!(
        leases.iter().map(|l| l.group.clone()).collect::<Vec<_>>(),
        [group("other", "g")],
        "a paused group is not leased"
    );
    // The other company's group of the same id is its own.
    assert_eq!(
        s.group_info(&group("other", "g"))
            .await
            .unwrap()
            .unwrap()
            .state,
        GroupState::Active
    );
    s.control_group(&g, GroupAction::Resume, "c1", 6)
        .await
        .unwrap();
    assert_eq!(
        s.group_info(&g).await.unwrap().unwrap().state,
        GroupState::Active
    );
    assert_eq!(
        s.claim_next_file(&g, None, 7)
            .await
            .unwrap()
            .unwrap()
            .file_id,
        "a2"
    );
}

/// Cancel: waiting (and failed) files become CANCELLED with the reason in
/// their record and log, the running file is untouched, the group runs
/// again, and later uploads continue the sequence and are claimed.
pub async fn group_cancel(s: Arc<dyn MetadataStore>) {
    with_company(&*s, "acme").await;
    for id in ["a1", "a2", "a3"] {
        inserted(&*s, sample_file("acme", id, "g", None)).await;
    }
    let g = group("acme", "g");
    s.claim_next_file(&g, None, 1).await.unwrap().unwrap();
    s.control_group(&g, GroupAction::Pause, "c1", 2)
        .await
        .unwrap();
    let rec = s
        .control_group(&g, GroupAction::Cancel, "c1", 1_700_000_100)
        .await
        .unwrap();
    assert_eq!(rec.files, 2);
    for id in ["a2", "a3"] {
        let f = s.get_file("acme", id).await.unwrap().unwrap();
        assert_eq!(f.status, FileStatus::Cancelled);
        assert_eq!(f.error_code.as_deref(), Some(crate::GROUP_CANCELLED));
        let reason = crate::cancel_reason("c1", 1_700_000_100);
        assert_eq!(f.error.as_deref(), Some(reason.as_str()));
        assert!(
            f.processing_log.ends_with(&format!("\n{reason}")),
            "{}",
            f.processing_log
        );
        assert!(
            reason.contains("c1") && reason.contains("2023-11-14T22:15:00Z"),
            "{reason}"
        );
    }
    let running = s.get_file("acme", "a1").await.unwrap().unwrap();
    assert_eq!(running.status, FileStatus::Processing);
    let info = s.group_info(&g).await.unwrap().unwrap();
    assert_eq!(info.state, GroupState::Active, "a cancel resumes");
    assert_eq!(info.files_waiting, 0);
    s.complete_file("a1", done(vec![])).await.unwrap();
    assert!(s.claim_next_file(&g, None, 3).await.unwrap().is_none());
    let later = inserted(&*s, sample_file("acme", "a4", "g", None)).await;
    assert_eq!(later.group_seq, Some(4));
    assert_eq!(
        s.claim_next_file(&g, None, 4)
            .await
            .unwrap()
            .unwrap()
            .file_id,
        "a4"
    );
    // A failure stops the group; a cancel clears it.
    s.fail_file("a4", "lake write failed", "lake", 5, None)
        .await
        .unwrap();
    inserted(&*s, sample_file("acme", "a5", "g", None)).await;
    let info = s.group_info(&g).await.unwrap().unwrap();
    assert_eq!(
        info.last_error.as_ref().map(|f| f.file_id.as_str()),
        Some("a4")
    );
    assert_eq!(
        s.control_group(&g, GroupAction::Cancel, "admin", 6)
            .await
            .unwrap()
            .files,
        2
    );
    inserted(&*s, sample_file("acme", "a6", "g", None)).await;
    assert_eq!(
        s.claim_next_file(&g, None, 7)
            .await
            .unwrap()
            .unwrap()
            .file_id,
        "a6"
    );
    let cancelled = s
        .list_files(
            "acme",
            &FileQuery {
                status: Some(FileStatus::Cancelled),
                ..FileQuery::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(cancelled.files.len(), 4);
    let actions = s.group_info(&g).await.unwrap().unwrap().actions;
    assert_eq!(
        actions
            .iter()
            .map(|a| (a.action, a.files))
            .collect::<Vec<_>>(),
        [
            (GroupAction::Pause, 0),
            (GroupAction::Cancel, 2),
            (GroupAction::Cancel, 2)
        ]
    );
}

/// Queue places (the running file first, then by sequence; only the asked
/// UPLOADED files) and the measured processing rate.
pub async fn group_queue_and_rate(s: Arc<dyn MetadataStore>) {
    with_company(&*s, "acme").await;
    assert_eq!(s.processing_rate("acme", 20).await.unwrap(), None);
    for id in ["a1", "a2", "a3", "a4"] {
        inserted(&*s, sample_file("acme", id, "g", None)).await;
    }
    let g = group("acme", "g");
    s.claim_next_file(&g, None, 10).await.unwrap().unwrap();
    s.complete_file("a1", done(vec![])).await.unwrap();
    s.claim_next_file(&g, None, 20).await.unwrap().unwrap();
    let ids: Vec<String> = ["a2", "a3", "a4", "a1", "nope"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    let q = s.group_queue(&g, &ids).await.unwrap();
    assert_eq!((q.state, q.stopped), (GroupState::Active, false));
    assert_eq!(
        q.entries
            .iter()
            .map(|e| (e.file_id.as_str(), e.files_ahead, e.rows_ahead))
            .collect::<Vec<_>>(),
        [("a3", 1, 10), ("a4", 2, 20)]
    );
    let only = s.group_queue(&g, &["a4".to_string()]).await.unwrap();
    assert_eq!(only.entries.len(), 1);
    assert_eq!(
        (only.entries[0].files_ahead, only.entries[0].rows_ahead),
        (2, 20)
    );
    // a1 ran from 10 to 21: 10 rows in 11 s.
    let rate = s.processing_rate("acme", 20).await.unwrap().unwrap();
    assert_eq!((rate.rows, rate.seconds, rate.files), (10, 11, 1));
    assert_eq!(s.processing_rate("other", 20).await.unwrap(), None);
    s.control_group(&g, GroupAction::Pause, "c1", 30)
        .await
        .unwrap();
    assert_eq!(
        s.group_queue(&g, &ids).await.unwrap().state,
        GroupState::Paused
    );
}

fn hook(company: &str, id: &str, events: &[&str]) -> Webhook {
    Webhook {
        id: id.into(),
        company_id: company.into(),
        url: format!("http://127.0.0.1:9/{id}"),
        events: events.iter().map(|e| e.to_string()).collect(),
        secret: format!("secret-{id}"),
        created: 1_700_000_000,
    }
}

fn attempt(delivered: bool, next_attempt_ms: i64) -> DeliveryAttempt {
    DeliveryAttempt {
        at: 1_700_000_100,
        status: Some(if delivered { 200 } else { 500 }),
        error: (!delivered).then(|| "HTTP 500".to_string()),
        latency_ms: 12,
        delivered,
        given_up: false,
        next_attempt_ms,
    }
}

/// Webhooks: endpoints per company; the store itself writes one delivery
/// per matching endpoint for every file event (upload, rejection,
/// completion, failure, retraction), claims them in order per (endpoint,
/// file), records attempts, and drops them with their endpoint.
pub async fn webhooks(s: Arc<dyn MetadataStore>) {
    with_company(&*s, "acme").await;
    with_company(&*s, "beta").await;
    assert!(matches!(
        s.create_webhook(hook("ghost", "h0", &[])).await,
        Err(StoreError::NotFound(_))
    ));
    let all = s.create_webhook(hook("acme", "h1", &[])).await.unwrap();
    s.create_webhook(hook("acme", "h2", &["file.complete"]))
        .await
        .unwrap();
    s.create_webhook(hook("beta", "h3", &[])).await.unwrap();
    assert_eq!(
        s.get_webhook("acme", "h1").await.unwrap(),
        Some(all.clone())
    );
    assert_eq!(s.get_webhook("beta", "h1").await.unwrap(), None);
    let ids: Vec<String> = s
        .list_webhooks("acme")
        .await
        .unwrap()
        .into_iter()
        .map(|h| h.id)
        .collect();
    assert_eq!(ids, ["h1", "h2"]);
    assert_eq!(
        s.get_webhook("acme", "h2").await.unwrap().unwrap().events,
        ["file.complete"]
    );

    // Events: written with the changes themselves.
    inserted(&*s, sample_file("acme", "a1", "g", None)).await;
    inserted(&*s, sample_file("acme", "a2", "g", None)).await;
    inserted(&*s, rejected(sample_file("acme", "r1", "g", Some("k")))).await;
    s.claim_next_file(&group("acme", "g"), None, 1)
        .await
        .unwrap();
    s.complete_file("a1", done(vec![])).await.unwrap();
    s.mark_hits_retracted("acme", "a1", 3, 1_700_000_050)
        .await
        .unwrap();
    s.claim_next_file(&group("acme", "g"), None, 2)
        .await
        .unwrap();
    s.fail_file("a2", "boom", "internal", 1_700_000_060, None)
        .await
        .unwrap();
    let log = |id: &'static str| {
        let s = s.clone();
        async move {
            let page = s
                .list_webhook_deliveries("acme", id, &PageQuery::default())
                .await
                .unwrap();
            assert_eq!(page.next_cursor, None);
            page.deliveries
        }
    };
    let h1 = log("h1").await;
    let kinds: Vec<(&str, &str)> = h1
        .iter()
        .rev()
        .map(|d| (d.event_type.as_str(), d.file_id.as_str()))
        .collect();
    assert_eq!(
        kinds,
        [
            ("file.uploaded", "a1"),
            ("file.uploaded", "a2"),
            ("file.rejected", "r1"),
            ("file.complete", "a1"),
            ("file.retracted", "a1"),
            ("file.error", "a2"),
        ],
        "every event of the company, newest first"
    );
    let retracted: serde_json::Value = serde_json::from_str(&h1[1].payload).unwrap();
    assert_eq!(
        retracted,
        serde_json::json!({"type": "file.retracted", "file_id": "a1",
            "visitor_group_id": "g", "status_code": "COMPLETE", "occurred_at": 1_700_000_050})
    );
    let complete: serde_json::Value = serde_json::from_str(&h1[2].payload).unwrap();
    assert_eq!(complete["status_code"], "COMPLETE");
    assert!(complete["occurred_at"].as_i64().unwrap() > 1_700_000_000);
    assert!(h1
        .iter()
        .all(|d| d.attempts == 0 && d.delivered_at.is_none()));
    let h2 = log("h2").await;
    assert_eq!(h2.len(), 1, "the filter keeps file.complete only");
    assert_eq!(h2[0].event_type, "file.complete");
    assert!(
        s.list_webhook_deliveries("beta", "h1", &PageQuery::default())
            .await
            .unwrap()
            .deliveries
            .is_empty(),
        "another company's log is empty"
    );
    assert!(s
        .list_webhook_deliveries("beta", "h3", &PageQuery::default())
        .await
        .unwrap()
        .deliveries
        .is_empty());
    // Paging.
    let first = s
        .list_webhook_deliveries(
            "acme",
            "h1",
            &PageQuery {
                limit: 4,
                cursor: None,
            },
        )
        .await
        .unwrap();
    assert_eq!(first.deliveries.len(), 4);
    let rest = s
        .list_webhook_deliveries(
            "acme",
            "h1",
            &PageQuery {
                limit: 4,
                cursor: first.next_cursor.clone(),
            },
        )
        .await
        .unwrap();
    assert_eq!(rest.deliveries.len(), 2);
    assert_eq!(rest.next_cursor, None);

    // Claims: the first pending delivery of each (endpoint, file) only.
    let now = 1_000_000;
    let due = s.claim_webhook_deliveries(now, 60_000, 100).await.unwrap();
    let mut firsts: Vec<(String, String, String)> = due
        .iter()
        .map(|d| {
            (
                d.delivery.webhook_id.clone(),
                d.delivery.file_id.clone(),
                d.delivery.event_type.clone(),
            )
        })
        .collect();
    firsts.sort();
    let t = |a: &str, b: &str, c: &str| (a.to_string(), b.to_string(), c.to_string());
    assert_eq!(
        firsts,
        [
            t("h1", "a1", "file.uploaded"),
            t("h1", "a2", "file.uploaded"),
            t("h1", "r1", "file.rejected"),
            t("h2", "a1", "file.complete"),
        ]
    );
    assert_eq!(
        due.iter()
            .find(|d| d.delivery.webhook_id == "h1")
            .unwrap()
            .secret,
        "secret-h1"
    );
    assert!(
        s.claim_webhook_deliveries(now + 1, 60_000, 100)
            .await
            .unwrap()
            .is_empty(),
        "claimed deliveries and the ones behind them wait"
    );
    let a1_up = due
        .iter()
        .find(|d| d.delivery.webhook_id == "h1" && d.delivery.file_id == "a1")
        .unwrap()
        .delivery
        .id;
    // A failure: retried at its next attempt time, still first for a1.
    assert!(s
        .record_webhook_attempt(a1_up, attempt(false, now + 5_000))
        .await
        .unwrap());
    assert!(s
        .claim_webhook_deliveries(now + 4_999, 60_000, 100)
        .await
        .unwrap()
        .is_empty());
    let again = s
        .claim_webhook_deliveries(now + 5_000, 60_000, 100)
        .await
        .unwrap();
    assert_eq!(again.len(), 1);
    assert_eq!(again[0].delivery.id, a1_up);
    assert_eq!(again[0].delivery.attempts, 1);
    assert_eq!(again[0].delivery.last_status, Some(500));
    assert_eq!(again[0].delivery.last_latency_ms, Some(12));
    // Success: the next event of a1 becomes due.
    assert!(s
        .record_webhook_attempt(a1_up, attempt(true, 0))
        .await
        .unwrap());
    let next = s
        .claim_webhook_deliveries(now + 5_001, 60_000, 100)
        .await
        .unwrap();
    assert_eq!(next.len(), 1);
    assert_eq!(
        (
            next[0].delivery.file_id.as_str(),
            next[0].delivery.event_type.as_str()
        ),
        ("a1", "file.complete")
    );
    let rec = log("h1").await.into_iter().find(|d| d.id == a1_up).unwrap();
    assert_eq!(rec.attempts, 2);
    assert_eq!(rec.delivered_at, Some(1_700_000_100));
    assert_eq!(rec.last_error, None);
    // Giving up also lets the next one go.
    let given_up = DeliveryAttempt {
        given_up: true,
        ..attempt(false, 0)
    };
    assert!(s
        .record_webhook_attempt(next[0].delivery.id, given_up)
        .await
        .unwrap());
    let after = s
        .claim_webhook_deliveries(now + 5_002, 60_000, 100)
        .await
        .unwrap();
    assert_eq!(after.len(), 1);
    assert_eq!(after[0].delivery.event_type, "file.retracted");
    // An expired claim is claimed again.
    let expired = s
        .claim_webhook_deliveries(now + 61_000, 60_000, 100)
        .await
        .unwrap();
    assert!(expired.len() >= 3, "{expired:?}");

    // Pruning removes settled deliveries only (h1's upload of a1 was
    // delivered, its completion given up; the rest are pending).
    let before_prune = log("h1").await.len();
    assert_eq!(
        s.prune_webhook_deliveries(i64::MAX, 1).await.unwrap(),
        1,
        "bounded by the limit"
    );
    assert_eq!(
        s.prune_webhook_deliveries(0, 100).await.unwrap(),
        0,
        "only events before the bound"
    );
    assert_eq!(s.prune_webhook_deliveries(i64::MAX, 100).await.unwrap(), 1);
    assert_eq!(s.prune_webhook_deliveries(i64::MAX, 100).await.unwrap(), 0);
    let left = log("h1").await;
    assert_eq!(left.len(), before_prune - 2);
    assert!(left.iter().all(|d| d.delivered_at.is_none() && !d.given_up));
    assert!(!left.iter().any(|d| d.id == a1_up));
    // Deleting an endpoint drops its deliveries; another company cannot.
    assert!(!s.delete_webhook("beta", "h1").await.unwrap());
    assert!(s.delete_webhook("acme", "h1").await.unwrap());
    assert!(!s.delete_webhook("acme", "h1").await.unwrap());
    assert_eq!(s.get_webhook("acme", "h1").await.unwrap(), None);
    assert!(log("h1").await.is_empty());
    assert!(!s
        .record_webhook_attempt(a1_up, attempt(true, 0))
        .await
        .unwrap());
    inserted(&*s, sample_file("acme", "a3", "g2", None)).await;
    assert!(
        log("h2").await.len() == 1,
        "an upload is not a file.complete event"
    );
    assert_eq!(
        s.list_webhooks("acme").await.unwrap().len(),
        1,
        "h2 is left"
    );
}

/// Concurrent claims never hand out one delivery twice.
pub async fn concurrent_webhook_claims(s: Arc<dyn MetadataStore>) {
    with_company(&*s, "acme").await;
    s.create_webhook(hook("acme", "h1", &[])).await.unwrap();
    for i in 0..40 {
        inserted(&*s, sample_file("acme", &format!("f{i}"), "g", None)).await;
    }
    let claims = (0..8).map(|_| {
        let s = s.clone();
        tokio::spawn(async move { s.claim_webhook_deliveries(1_000, 60_000, 10).await.unwrap() })
    });
    let mut ids = Vec::new();
    for c in claims {
        ids.extend(c.await.unwrap().into_iter().map(|d| d.delivery.id));
    }
    let n = ids.len();
    ids.sort_unstable();
    ids.dedup();
    assert_eq!(ids.len(), n, "a delivery was claimed twice");
    assert_eq!(n, 40, "every due delivery was claimed once");
}

/// Group actions and cancelled files are webhook events too, written with
/// the action itself; a group's events are keyed `group:<vgid>`.
pub async fn group_webhook_events(s: Arc<dyn MetadataStore>) {
    with_company(&*s, "acme").await;
    s.create_webhook(hook("acme", "h1", &[])).await.unwrap();
    s.create_webhook(hook("acme", "h2", &["group.paused"]))
        .await
        .unwrap();
    inserted(&*s, sample_file("acme", "a1", "g", None)).await;
    let g = group("acme", "g");
    s.control_group(&g, GroupAction::Pause, "client-1", 1_700_000_100)
        .await
        .unwrap();
    s.control_group(&g, GroupAction::Cancel, "admin", 1_700_000_200)
        .await
        .unwrap();
    let log = |id: &'static str| {
        let s = s.clone();
        async move {
            s.list_webhook_deliveries("acme", id, &PageQuery::default())
                .await
                .unwrap()
                .deliveries
        }
    };
    let h1 = log("h1").await;
    let kinds: Vec<(&str, &str)> = h1
        .iter()
        .rev()
        .map(|d| (d.event_type.as_str(), d.file_id.as_str()))
        .collect();
    assert!(kinds.contains(&("group.paused", "group:g")), "{kinds:?}");
    assert!(kinds.contains(&("group.cancelled", "group:g")), "{kinds:?}");
    assert!(kinds.contains(&("file.cancelled", "a1")), "{kinds:?}");
    let paused = h1.iter().find(|d| d.event_type == "group.paused").unwrap();
    let body: serde_json::Value = serde_json::from_str(&paused.payload).unwrap();
    assert_eq!(body["type"], "group.paused");
    assert_eq!(body["file_id"], serde_json::Value::Null);
    assert_eq!(body["visitor_group_id"], "g");
    assert_eq!(body["status_code"], "PAUSED");
    assert_eq!(body["actor"], "client-1");
    assert_eq!(body["occurred_at"], 1_700_000_100);
    let cancelled = h1
        .iter()
        .find(|d| d.event_type == "group.cancelled")
        .unwrap();
    let body: serde_json::Value = serde_json::from_str(&cancelled.payload).unwrap();
    assert_eq!(
        (body["status_code"].as_str(), body["files"].as_i64()),
        (Some("ACTIVE"), Some(1))
    );
    let h2: Vec<String> = log("h2").await.into_iter().map(|d| d.event_type).collect();
    assert_eq!(h2, ["group.paused"], "the endpoint's filter holds");
}
