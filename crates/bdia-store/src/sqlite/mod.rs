//! The embedded metadata backend: one SQLite database file.
//!
//! Layout: tables `companies`, `report_suites`, `clients`, `files`,
//! `visitor_states`, `seen_ids`, `jwt_assertions` and `privacy_deletions`
//! (and more, see [`schema`]), created and versioned by [`schema`] (`PRAGMA
//! user_version`; a database of a newer release is refused at open). The
//! database runs in WAL mode with `synchronous=FULL`, so a committed
//! transaction survives a power loss.
//!
//! Invariants enforced by the schema itself (so that they hold across
//! processes, e.g. `bdia admin` next to a running server):
//! - `files_key`: one non-`REJECTED` record per (company, idempotency key);
//! - `files_group_seq`: one record per (company, visitor group, group_seq);
//! - client ids are unique across companies; report suite ids are unique
//!   per company (the key of `report_suites` is (company, rsid)), so two
//!   companies may use the same rsid without seeing each other's.
//!
//! `visitor_states` holds one row per (company, report suite, visitor key),
//! a `WITHOUT ROWID` table clustered on that key: tens of millions of
//! visitors stay on disk, and a file's processing looks up only the keys
//! it touches, in batches ([`MetadataStore::visitor_states`]). Rows change
//! only in [`MetadataStore::complete_file`]'s transaction, and are removed
//! by a privacy deletion ([`MetadataStore::delete_visitor_states`]).
//! `seen_ids` (the serials and purchase IDs each suite has counted) is
//! written by the same transaction and looked up the same way
//! ([`MetadataStore::seen_ids`]).
//!
//! Code map: [`schema`] (DDL and migrations), `tenants` (companies, report
//! suites, clients), `files` (file records, idempotency, group sequence),
//! `processing` (claims, completion, failure, visitor state), `privacy`
//! (the audit trail of privacy deletions). Each of those
//! holds plain functions over a `&Connection`; this module owns the one
//! connection and the [`MetadataStore`] implementation.
//!
//! Threads: the connection lives on one dedicated thread (`bdia-sqlite`)
//! that runs the calls in arrival order from a bounded queue of
//! [`QUEUE_CALLS`] calls. Database work therefore never competes with
//! request bodies, engine passes or report scans for tokio's blocking
//! pool: however many of those are in flight, a token request or a file
//! lookup waits only for the database calls queued before it
//! ([`MetadataStore::queued_calls`] reports that depth). A call that
//! panics fails alone; the thread goes on with the next one. Dropping the
//! last handle of the store waits for the thread to close the database.
//!
//! Query rules: columns are named in every `SELECT` and read by name; file
//! statuses are bound as parameters ([`FileStatus::as_str`]), never spelled
//! in query text, except where a query must repeat the `files_key` index's
//! condition for SQLite to use that partial index; a SQLite error becomes
//! [`StoreError::Backend`] with what was being done and the SQLite error as
//! its source.

pub mod schema;

mod files;
mod groups;
mod leases;
mod privacy;
mod processing;
mod tenants;
mod webhooks;

use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use async_trait::async_trait;
use rusqlite::{Connection, OptionalExtension, Params, Row, Transaction, TransactionBehavior};

use bdia_model::commerce::SeenId;
use bdia_model::conversion::EvarSetting;
use bdia_model::VisitState;

#[cfg(doc)]
use crate::FileStatus;
use crate::{
    ApiClient, CommitOutcome, Company, CompanySettings, Completion, FilePage, FileQuery,
    FileRecord, GroupAction, GroupActionRecord, GroupInfo, GroupLease, GroupQueue, GroupRef,
    LeaseClaim, MetadataStore, NewFile, NewPrivacyDeletion, PageQuery, PrivacyDeletion,
    PrivacyDeletionPage, ProcessingRate, ReportSuite, StatusUpdate, StoreError, StoreResult,
    StoredState, SuiteClaim,
};
use crate::{DeliveryAttempt, DueDelivery, Webhook, WebhookDeliveryPage};

pub use schema::SCHEMA_VERSION;

/// Prepared statements kept per connection: every statement of this module
/// fits, so the hot ones (visitor state lookups, claims) are never evicted.
const STATEMENT_CACHE: usize = 64;

/// Database calls that may wait for the database thread; callers beyond
/// that wait (asynchronously) for room in the queue.
pub const QUEUE_CALLS: usize = 1_024;

/// One call for the database thread.
type Call = Box<dyn FnOnce(&mut Connection) + Send>;

/// Metadata in one SQLite file.
#[derive(Clone)]
pub struct SqliteStore {
    thread: Arc<DbThread>,
    /// Calls sent and not yet finished.
    pending: Arc<AtomicUsize>,
}

/// The database thread and its queue. Dropping the last handle closes the
/// queue and waits for the thread to finish its calls and close the
/// database, so that the files are settled (WAL checkpointed) when the
/// store is gone.
struct DbThread {
    calls: Option<tokio::sync::mpsc::Sender<Call>>,
    handle: Option<std::thread::JoinHandle<()>>,
}

impl Drop for DbThread {
    fn drop(&mut self) {
        self.calls.take();
        if let Some(h) = self.handle.take() {
            if h.thread().id() != std::thread::current().id() {
                let _ = h.join();
            }
        }
    }
}

impl std::fmt::Debug for SqliteStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqliteStore").finish_non_exhaustive()
    }
}

impl SqliteStore {
    /// Opens (creating if needed) the database at `path`, bringing its
    /// schema to [`SCHEMA_VERSION`]; [`StoreError::SchemaTooNew`] when a
    /// newer release wrote it.
    pub fn open(path: &Path) -> StoreResult<SqliteStore> {
        let conn = Connection::open(path)
            .map_err(|e| StoreError::backend(format!("open database {}", path.display()), e))?;
        Self::init(conn)
    }

    /// An in-memory database (tests).
    pub fn in_memory() -> StoreResult<SqliteStore> {
        let conn = Connection::open_in_memory().map_err(db("open an in-memory database"))?;
        Self::init(conn)
    }

    fn init(mut conn: Connection) -> StoreResult<SqliteStore> {
        conn.busy_timeout(std::time::Duration::from_secs(10))
            .map_err(db("set the busy timeout"))?;
        conn.pragma_update(None, "journal_mode", "WAL")
            .map_err(db("enable WAL"))?;
        conn.pragma_update(None, "synchronous", "FULL")
            .map_err(db("set synchronous=FULL"))?;
        conn.pragma_update(None, "foreign_keys", "ON")
            .map_err(db("enable foreign keys"))?;
        conn.set_prepared_statement_cache_capacity(STATEMENT_CACHE);
        schema::migrate(&mut conn)?;
        let (calls, mut rx) = tokio::sync::mpsc::channel::<Call>(QUEUE_CALLS);
        let handle = std::thread::Builder::new()
            .name("bdia-sqlite".into())
            .spawn(move || {
                // Ends when every handle of the store is dropped.
                while let Some(call) = rx.blocking_recv() {
                    // A panicking call drops its answer channel: its caller
                    // gets an error, the next call runs as usual.
                    let _ =
                        std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| call(&mut conn)));
                }
            })
            .map_err(|e| StoreError::backend("start the database thread", e))?;
        Ok(SqliteStore {
            thread: Arc::new(DbThread {
                calls: Some(calls),
                handle: Some(handle),
            }),
            pending: Arc::new(AtomicUsize::new(0)),
        })
    }

    /// Runs `f` with the connection on the database thread.
    async fn with<T, F>(&self, f: F) -> StoreResult<T>
    where
        T: Send + 'static,
        F: FnOnce(&mut Connection) -> StoreResult<T> + Send + 'static,
    {
        let (tx, rx) = tokio::sync::oneshot::channel();
        let call: Call = Box::new(move |conn| {
            let _ = tx.send(f(conn));
        });
        let _pending = Pending::new(&self.pending);
        let calls = self.thread.calls.as_ref().ok_or_else(|| {
            StoreError::backend("queue a database call", "the database thread stopped")
        })?;
        calls.send(call).await.map_err(|_| {
            StoreError::backend("queue a database call", "the database thread stopped")
        })?;
        rx.await.map_err(|_| {
            StoreError::backend(
                "run a database call",
                "the call panicked or the database thread stopped",
            )
        })?
    }
}

/// Counts one call in [`SqliteStore::pending`] while it lives.
struct Pending<'a>(&'a AtomicUsize);

impl<'a> Pending<'a> {
    fn new(n: &'a AtomicUsize) -> Self {
        n.fetch_add(1, Ordering::Relaxed);
        Pending(n)
    }
}

impl Drop for Pending<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Maps a SQLite error to [`StoreError::Backend`], naming what was being done
/// and keeping the error as the source.
fn db(context: &'static str) -> impl FnOnce(rusqlite::Error) -> StoreError {
    move |e| StoreError::backend(context, e)
}

/// True for a broken `UNIQUE` or `PRIMARY KEY` constraint.
fn is_unique_violation(e: &rusqlite::Error) -> bool {
    matches!(
        e,
        rusqlite::Error::SqliteFailure(f, _)
            if f.code == rusqlite::ErrorCode::ConstraintViolation
                && (f.extended_code == rusqlite::ffi::SQLITE_CONSTRAINT_UNIQUE
                    || f.extended_code == rusqlite::ffi::SQLITE_CONSTRAINT_PRIMARYKEY)
    )
}

/// Every row of a query, mapped.
fn query_all<T, P: Params>(
    conn: &Connection,
    context: &'static str,
    sql: &str,
    params: P,
    map: impl FnMut(&Row<'_>) -> rusqlite::Result<T>,
) -> StoreResult<Vec<T>> {
    let mut stmt = conn.prepare_cached(sql).map_err(db(context))?;
    let rows = stmt
        .query_map(params, map)
        .map_err(db(context))?
        .collect::<rusqlite::Result<Vec<T>>>()
        .map_err(db(context));
    rows
}

/// The first row of a query, mapped; `None` when there is none.
fn query_opt<T, P: Params>(
    conn: &Connection,
    context: &'static str,
    sql: &str,
    params: P,
    map: impl FnOnce(&Row<'_>) -> rusqlite::Result<T>,
) -> StoreResult<Option<T>> {
    let mut stmt = conn.prepare_cached(sql).map_err(db(context))?;
    stmt.query_row(params, map).optional().map_err(db(context))
}

/// The one row of a query that always answers one (an aggregate).
fn query_one<T, P: Params>(
    conn: &Connection,
    context: &'static str,
    sql: &str,
    params: P,
    map: impl FnOnce(&Row<'_>) -> rusqlite::Result<T>,
) -> StoreResult<T> {
    let mut stmt = conn.prepare_cached(sql).map_err(db(context))?;
    stmt.query_row(params, map).map_err(db(context))
}

/// Runs a statement; the number of rows changed.
fn exec<P: Params>(
    conn: &Connection,
    context: &'static str,
    sql: &str,
    params: P,
) -> StoreResult<usize> {
    let mut stmt = conn.prepare_cached(sql).map_err(db(context))?;
    stmt.execute(params).map_err(db(context))
}

/// A write transaction, taking the write lock at once (`BEGIN IMMEDIATE`)
/// so that its reads and writes see one state.
fn write_tx<'c>(conn: &'c mut Connection, context: &'static str) -> StoreResult<Transaction<'c>> {
    conn.transaction_with_behavior(TransactionBehavior::Immediate)
        .map_err(db(context))
}

/// Commits a transaction.
fn commit(tx: Transaction<'_>, context: &'static str) -> StoreResult<()> {
    tx.commit().map_err(db(context))
}

/// Hits read between two lookups: a lookup is a call to the database
/// thread, microseconds; 256 hits (about 400 KB) are still in the CPU's
/// L2 cache when they are enriched, 1,024 no longer (docs/PERFORMANCE.md).
const LOOKUP_BATCH: usize = 256;

#[async_trait]
impl MetadataStore for SqliteStore {
    fn lookup_batch(&self) -> usize {
        LOOKUP_BATCH
    }

    async fn create_company(
        &self,
        id: &str,
        salt: &str,
        settings: CompanySettings,
    ) -> StoreResult<Company> {
        let (id, salt) = (id.to_string(), salt.to_string());
        self.with(move |conn| tenants::create_company(conn, id, salt, settings))
            .await
    }

    async fn get_company(&self, id: &str) -> StoreResult<Option<Company>> {
        let id = id.to_string();
        self.with(move |conn| tenants::get_company(conn, &id)).await
    }

    async fn list_companies(&self) -> StoreResult<Vec<Company>> {
        self.with(|conn| tenants::list_companies(conn)).await
    }

    async fn update_company_settings(
        &self,
        id: &str,
        settings: CompanySettings,
    ) -> StoreResult<Company> {
        let id = id.to_string();
        self.with(move |conn| tenants::update_company_settings(conn, &id, settings))
            .await
    }

    async fn create_report_suite(
        &self,
        company_id: &str,
        rsid: &str,
        time_zone: &str,
    ) -> StoreResult<ReportSuite> {
        let (company_id, rsid, time_zone) = (
            company_id.to_string(),
            rsid.to_string(),
            time_zone.to_string(),
        );
        self.with(move |conn| tenants::create_report_suite(conn, company_id, rsid, time_zone))
            .await
    }

    async fn get_report_suite(
        &self,
        company_id: &str,
        rsid: &str,
    ) -> StoreResult<Option<ReportSuite>> {
        let (company_id, rsid) = (company_id.to_string(), rsid.to_string());
        self.with(move |conn| tenants::get_report_suite(conn, &company_id, &rsid))
            .await
    }

    async fn list_report_suites(&self, company_id: Option<&str>) -> StoreResult<Vec<ReportSuite>> {
        let company_id = company_id.map(str::to_string);
        self.with(move |conn| tenants::list_report_suites(conn, company_id.as_deref()))
            .await
    }

    async fn claim_report_suite(
        &self,
        company_id: &str,
        rsid: &str,
        create: bool,
    ) -> StoreResult<SuiteClaim> {
        let (company_id, rsid) = (company_id.to_string(), rsid.to_string());
        self.with(move |conn| tenants::claim_report_suite(conn, &company_id, &rsid, create))
            .await
    }

    async fn set_accept_single_hits(
        &self,
        company_id: &str,
        rsid: &str,
        accept: bool,
    ) -> StoreResult<ReportSuite> {
        let (company_id, rsid) = (company_id.to_string(), rsid.to_string());
        self.with(move |conn| tenants::set_accept_single_hits(conn, &company_id, &rsid, accept))
            .await
    }

    async fn set_internal_url_filters(
        &self,
        company_id: &str,
        rsid: &str,
        filters: &[String],
    ) -> StoreResult<ReportSuite> {
        let (company_id, rsid, filters) =
            (company_id.to_string(), rsid.to_string(), filters.to_vec());
        self.with(move |conn| tenants::set_internal_url_filters(conn, &company_id, &rsid, &filters))
            .await
    }

    async fn set_evar_settings(
        &self,
        company_id: &str,
        rsid: &str,
        settings: &[EvarSetting],
    ) -> StoreResult<ReportSuite> {
        let (company_id, rsid, settings) =
            (company_id.to_string(), rsid.to_string(), settings.to_vec());
        self.with(move |conn| tenants::set_evar_settings(conn, &company_id, &rsid, &settings))
            .await
    }

    async fn single_hit_suite(&self, rsid: &str) -> StoreResult<Option<ReportSuite>> {
        let rsid = rsid.to_string();
        self.with(move |conn| tenants::single_hit_suite(conn, &rsid))
            .await
    }

    async fn create_client(&self, client: ApiClient) -> StoreResult<ApiClient> {
        self.with(move |conn| tenants::create_client(conn, client))
            .await
    }

    async fn get_client(&self, client_id: &str) -> StoreResult<Option<ApiClient>> {
        let client_id = client_id.to_string();
        self.with(move |conn| tenants::get_client(conn, &client_id))
            .await
    }

    async fn list_clients(&self, company_id: Option<&str>) -> StoreResult<Vec<ApiClient>> {
        let company_id = company_id.map(str::to_string);
        self.with(move |conn| tenants::list_clients(conn, company_id.as_deref()))
            .await
    }

    async fn set_client_disabled(&self, client_id: &str, disabled: bool) -> StoreResult<()> {
        let client_id = client_id.to_string();
        self.with(move |conn| tenants::set_client_disabled(conn, &client_id, disabled))
            .await
    }

    async fn rotate_client_secret(
        &self,
        client_id: &str,
        secret_hash: &str,
    ) -> StoreResult<ApiClient> {
        let (client_id, secret_hash) = (client_id.to_string(), secret_hash.to_string());
        self.with(move |conn| tenants::rotate_client_secret(conn, &client_id, &secret_hash))
            .await
    }

    async fn remember_assertion(
        &self,
        digest: &str,
        keep_until: i64,
        now: i64,
    ) -> StoreResult<bool> {
        let digest = digest.to_string();
        self.with(move |conn| tenants::remember_assertion(conn, &digest, keep_until, now))
            .await
    }

    async fn set_client_public_key(&self, client_id: &str, pem: Option<&str>) -> StoreResult<()> {
        let client_id = client_id.to_string();
        let pem = pem.map(str::to_string);
        self.with(move |conn| tenants::set_client_public_key(conn, &client_id, pem.as_deref()))
            .await
    }

    async fn commit_upload(&self, file: NewFile) -> StoreResult<CommitOutcome> {
        self.with(move |conn| files::commit_upload(conn, file))
            .await
    }

    async fn get_file(&self, company_id: &str, file_id: &str) -> StoreResult<Option<FileRecord>> {
        let (company_id, file_id) = (company_id.to_string(), file_id.to_string());
        self.with(move |conn| {
            Ok(files::by_id(conn, &file_id)?.filter(|f| f.company_id == company_id))
        })
        .await
    }

    async fn file_company(&self, file_id: &str) -> StoreResult<Option<String>> {
        let file_id = file_id.to_string();
        self.with(move |conn| Ok(files::by_id(conn, &file_id)?.map(|f| f.company_id)))
            .await
    }

    async fn find_by_key(&self, company_id: &str, key: &str) -> StoreResult<Option<FileRecord>> {
        let (company_id, key) = (company_id.to_string(), key.to_string());
        self.with(move |conn| files::find_by_key(conn, &company_id, &key))
            .await
    }

    async fn find_by_content(
        &self,
        company_id: &str,
        content_sha256: &str,
    ) -> StoreResult<Option<FileRecord>> {
        let (company_id, hash) = (company_id.to_string(), content_sha256.to_string());
        self.with(move |conn| files::find_by_content(conn, &company_id, &hash))
            .await
    }

    async fn list_files(&self, company_id: &str, query: &FileQuery) -> StoreResult<FilePage> {
        let company_id = company_id.to_string();
        let query = query.clone();
        self.with(move |conn| files::list(conn, &company_id, &query))
            .await
    }

    async fn update_file_status(
        &self,
        file_id: &str,
        update: StatusUpdate,
    ) -> StoreResult<FileRecord> {
        let file_id = file_id.to_string();
        self.with(move |conn| files::update_status(conn, &file_id, update))
            .await
    }

    async fn pending_files(&self, limit: u32) -> StoreResult<Vec<FileRecord>> {
        self.with(move |conn| files::pending(conn, limit)).await
    }

    async fn referenced_blob_keys(&self) -> StoreResult<Vec<String>> {
        self.with(|conn| files::referenced_blob_keys(conn)).await
    }

    fn queued_calls(&self) -> usize {
        self.pending.load(Ordering::Relaxed)
    }

    async fn ping(&self) -> StoreResult<()> {
        self.with(|conn| {
            query_one(conn, "ping", "SELECT 1", [], |r| r.get::<_, i64>(0)).map(|_| ())
        })
        .await
    }

    async fn runnable_groups(&self, limit: u32) -> StoreResult<Vec<GroupRef>> {
        self.with(move |conn| processing::runnable_groups(conn, limit))
            .await
    }

    async fn claim_next_file(
        &self,
        group: &GroupRef,
        lease: Option<&GroupLease>,
        now: i64,
    ) -> StoreResult<Option<FileRecord>> {
        let (group, lease) = (group.clone(), lease.cloned());
        self.with(move |conn| processing::claim_next_file(conn, &group, lease.as_ref(), now))
            .await
    }

    async fn visitor_states(
        &self,
        company_id: &str,
        keys: Vec<(String, String)>,
    ) -> StoreResult<Vec<Option<VisitState>>> {
        let company_id = company_id.to_string();
        self.with(move |conn| processing::visitor_states(conn, &company_id, &keys))
            .await
    }

    async fn seen_ids(&self, company_id: &str, keys: Vec<SeenId>) -> StoreResult<Vec<bool>> {
        let company_id = company_id.to_string();
        self.with(move |conn| processing::seen_ids(conn, &company_id, &keys))
            .await
    }

    async fn lookups(
        &self,
        company_id: &str,
        states: Vec<(String, String)>,
        seen: Vec<SeenId>,
    ) -> StoreResult<(Vec<Option<VisitState>>, Vec<bool>)> {
        if states.is_empty() && seen.is_empty() {
            return Ok((Vec::new(), Vec::new()));
        }
        let company_id = company_id.to_string();
        // One call to the database thread for both.
        self.with(move |conn| {
            Ok((
                processing::visitor_states(conn, &company_id, &states)?,
                processing::seen_ids(conn, &company_id, &seen)?,
            ))
        })
        .await
    }

    async fn complete_file(
        &self,
        file_id: &str,
        completion: Completion,
    ) -> StoreResult<FileRecord> {
        let file_id = file_id.to_string();
        self.with(move |conn| processing::complete_file(conn, &file_id, completion))
            .await
    }

    async fn fail_file(
        &self,
        file_id: &str,
        reason: &str,
        code: &str,
        now: i64,
        lease: Option<&GroupLease>,
    ) -> StoreResult<FileRecord> {
        let (file_id, reason, code) = (file_id.to_string(), reason.to_string(), code.to_string());
        let lease = lease.cloned();
        self.with(move |conn| {
            processing::fail_file(conn, &file_id, &reason, code, now, lease.as_ref())
        })
        .await
    }

    async fn retry_group(&self, group: &GroupRef) -> StoreResult<u64> {
        let group = group.clone();
        self.with(move |conn| processing::retry_group(conn, &group))
            .await
    }

    async fn requeue_processing(&self) -> StoreResult<u64> {
        self.with(processing::requeue_processing).await
    }

    async fn requeue_file(&self, file_id: &str, lease: Option<&GroupLease>) -> StoreResult<bool> {
        let (file_id, lease) = (file_id.to_string(), lease.cloned());
        self.with(move |conn| processing::requeue_file(conn, &file_id, lease.as_ref()))
            .await
    }

    async fn claim_groups(
        &self,
        node_id: &str,
        limit: u32,
        lease_ms: u64,
    ) -> StoreResult<Vec<GroupLease>> {
        let node_id = node_id.to_string();
        self.with(move |conn| leases::claim_groups(conn, &node_id, limit, lease_ms))
            .await
    }

    async fn renew_leases(&self, leases: &[GroupLease], lease_ms: u64) -> StoreResult<Vec<bool>> {
        let held = leases.to_vec();
        self.with(move |conn| leases::renew_leases(conn, &held, lease_ms))
            .await
    }

    async fn release_lease(&self, lease: &GroupLease) -> StoreResult<bool> {
        let lease = lease.clone();
        self.with(move |conn| leases::release_lease(conn, &lease))
            .await
    }

    async fn release_node_leases(&self, node_id: &str) -> StoreResult<u64> {
        let node_id = node_id.to_string();
        self.with(move |conn| leases::release_node_leases(conn, &node_id))
            .await
    }

    async fn lease_claims(&self, group: &GroupRef) -> StoreResult<Vec<LeaseClaim>> {
        let group = group.clone();
        self.with(move |conn| leases::lease_claims(conn, &group))
            .await
    }

    async fn shared_secret(&self, name: &str, candidate: &str) -> StoreResult<String> {
        let (name, candidate) = (name.to_string(), candidate.to_string());
        self.with(move |conn| leases::shared_secret(conn, &name, &candidate))
            .await
    }

    async fn node_heartbeat(&self, node_id: &str, ttl_ms: u64) -> StoreResult<u32> {
        let node_id = node_id.to_string();
        self.with(move |conn| leases::node_heartbeat(conn, &node_id, ttl_ms))
            .await
    }

    async fn delete_visitor_states(
        &self,
        company_id: &str,
        keys: Vec<(String, String)>,
    ) -> StoreResult<u64> {
        let company_id = company_id.to_string();
        self.with(move |conn| processing::delete_visitor_states(conn, &company_id, &keys))
            .await
    }

    async fn mark_hits_retracted(
        &self,
        company_id: &str,
        file_id: &str,
        hits: u64,
        now: i64,
    ) -> StoreResult<FileRecord> {
        let (company_id, file_id) = (company_id.to_string(), file_id.to_string());
        self.with(move |conn| files::mark_hits_retracted(conn, &company_id, &file_id, hits, now))
            .await
    }

    async fn record_privacy_deletion(
        &self,
        deletion: NewPrivacyDeletion,
    ) -> StoreResult<PrivacyDeletion> {
        self.with(move |conn| privacy::record(conn, deletion)).await
    }

    async fn list_privacy_deletions(
        &self,
        company_id: &str,
        query: &PageQuery,
    ) -> StoreResult<PrivacyDeletionPage> {
        let (company_id, query) = (company_id.to_string(), query.clone());
        self.with(move |conn| privacy::list(conn, &company_id, &query))
            .await
    }

    async fn list_visitor_states(
        &self,
        company_id: &str,
        after: Option<(String, String)>,
        limit: u32,
    ) -> StoreResult<Vec<StoredState>> {
        let company_id = company_id.to_string();
        self.with(move |conn| processing::list_visitor_states(conn, &company_id, after, limit))
            .await
    }

    async fn control_group(
        &self,
        group: &GroupRef,
        action: GroupAction,
        actor: &str,
        now: i64,
    ) -> StoreResult<GroupActionRecord> {
        let (group, actor) = (group.clone(), actor.to_string());
        self.with(move |conn| groups::control_group(conn, &group, action, &actor, now))
            .await
    }

    async fn group_info(&self, group: &GroupRef) -> StoreResult<Option<GroupInfo>> {
        let group = group.clone();
        self.with(move |conn| groups::group_info(conn, &group))
            .await
    }

    async fn group_queue(&self, group: &GroupRef, file_ids: &[String]) -> StoreResult<GroupQueue> {
        let (group, ids) = (group.clone(), file_ids.to_vec());
        self.with(move |conn| groups::group_queue(conn, &group, &ids))
            .await
    }

    async fn processing_rate(
        &self,
        company_id: &str,
        recent: u32,
    ) -> StoreResult<Option<ProcessingRate>> {
        let company_id = company_id.to_string();
        self.with(move |conn| groups::processing_rate(conn, &company_id, recent))
            .await
    }

    async fn create_webhook(&self, webhook: Webhook) -> StoreResult<Webhook> {
        self.with(move |conn| webhooks::create(conn, webhook)).await
    }

    async fn get_webhook(&self, company_id: &str, id: &str) -> StoreResult<Option<Webhook>> {
        let (company_id, id) = (company_id.to_string(), id.to_string());
        self.with(move |conn| webhooks::get(conn, &company_id, &id))
            .await
    }

    async fn list_webhooks(&self, company_id: &str) -> StoreResult<Vec<Webhook>> {
        let company_id = company_id.to_string();
        self.with(move |conn| webhooks::list(conn, &company_id))
            .await
    }

    async fn delete_webhook(&self, company_id: &str, id: &str) -> StoreResult<bool> {
        let (company_id, id) = (company_id.to_string(), id.to_string());
        self.with(move |conn| webhooks::delete(conn, &company_id, &id))
            .await
    }

    async fn list_webhook_deliveries(
        &self,
        company_id: &str,
        webhook_id: &str,
        query: &PageQuery,
    ) -> StoreResult<WebhookDeliveryPage> {
        let (company_id, webhook_id, query) = (
            company_id.to_string(),
            webhook_id.to_string(),
            query.clone(),
        );
        self.with(move |conn| webhooks::deliveries(conn, &company_id, &webhook_id, &query))
            .await
    }

    async fn claim_webhook_deliveries(
        &self,
        now_ms: i64,
        claim_ms: i64,
        limit: u32,
    ) -> StoreResult<Vec<DueDelivery>> {
        self.with(move |conn| webhooks::claim(conn, now_ms, claim_ms, limit))
            .await
    }

    async fn record_webhook_attempt(&self, id: u64, attempt: DeliveryAttempt) -> StoreResult<bool> {
        self.with(move |conn| webhooks::record(conn, id, &attempt))
            .await
    }

    async fn prune_webhook_deliveries(&self, before: i64, limit: u32) -> StoreResult<u64> {
        self.with(move |conn| webhooks::prune(conn, before, limit))
            .await
    }
}
