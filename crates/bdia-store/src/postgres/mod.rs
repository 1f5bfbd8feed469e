//! The shared metadata backend: one PostgreSQL database that any number of
//! bdia nodes use at once.
//!
//! Layout: the tables of the SQLite backend (`companies`, `report_suites`,
//! `clients`, `files`, `visitor_states`, `seen_ids`, `jwt_assertions`,
//! `privacy_deletions`, `lease_claims`, `shared_secrets`, `nodes`) with
//! PostgreSQL types, plus `visitor_groups`, one row per (company, visitor
//! group) holding the last `group_seq` handed out and the group's lease
//! (holder, epoch, expiry; SQLite's `group_leases`); created and versioned
//! by [`schema`] (`schema_migrations`, applied under an advisory lock at
//! [`PgStore::connect`]).
//!
//! Every rule that the SQLite backend gets from its single writer is held
//! here by the database across processes: unique indexes (`files_key`,
//! `files_group_seq`, the primary keys) and row locks taken by the
//! transaction that decides:
//! - `commit_upload` locks its group's `visitor_groups` row (the upsert
//!   that takes the next `group_seq`), so uploads of one group commit one at
//!   a time and number 1, 2, 3... in commit order; a second upload with a
//!   key already taken waits on `files_key` and answers with the winner;
//! - `claim_next_file` locks the group's row `FOR UPDATE` (and checks a
//!   lease on it), then checks and claims: two nodes never both move a file
//!   of one group to `PROCESSING`;
//! - `claim_groups` locks free groups' rows `FOR UPDATE SKIP LOCKED`;
//!   writes under a lease lock the row `FOR KEY SHARE` before the file's,
//!   so a takeover and a fenced write never interleave (`leases`);
//! - completion, failure, retraction and status updates lock the file's
//!   row (`SELECT ... FOR UPDATE`) before they check its status.
//!
//! docs/POSTGRES.md lists the locks of each operation and why they suffice.
//!
//! Code map: [`schema`] (DDL and migrations), `tenants`, `files`,
//! `processing`, `privacy`, `leases` (as in the SQLite backend), each a set
//! of async functions over a [`GenericClient`] (a pooled connection or a
//! transaction); this module owns the pool and the [`MetadataStore`]
//! implementation.
//!
//! Connections: a `deadpool-postgres` pool of at most `pool_size`
//! connections, opened on demand, over plain TCP (no TLS: run the database
//! on a trusted network or a local socket tunnel). A call waits for a free
//! connection; [`MetadataStore::queued_calls`] reports the calls holding or
//! waiting for one. Statements are prepared once per connection and cached.
//!
//! Query rules: as in the SQLite backend (columns named, read by name;
//! statuses bound as parameters); a PostgreSQL error becomes
//! [`StoreError::Backend`] naming what was being done, with the driver's
//! error as its source.

pub mod schema;

mod files;
mod groups;
mod leases;
mod privacy;
mod processing;
mod tenants;
mod webhooks;

use std::time::Duration;

use async_trait::async_trait;
use deadpool_postgres::{GenericClient, Manager, ManagerConfig, Pool, RecyclingMethod, Runtime};
use tokio_postgres::error::SqlState;
use tokio_postgres::types::ToSql;
use tokio_postgres::{NoTls, Row};

use bdia_model::commerce::SeenId;
use bdia_model::conversion::EvarSetting;
use bdia_model::VisitState;

use crate::{
    ApiClient, CommitOutcome, Company, CompanySettings, Completion, FilePage, FileQuery,
    FileRecord, GroupAction, GroupActionRecord, GroupInfo, GroupLease, GroupQueue, GroupRef,
    LeaseClaim, MetadataStore, NewFile, NewPrivacyDeletion, PageQuery, PrivacyDeletion,
    PrivacyDeletionPage, ProcessingRate, ReportSuite, StatusUpdate, StoreError, StoreResult,
    StoredState, SuiteClaim,
};
use crate::{DeliveryAttempt, DueDelivery, Webhook, WebhookDeliveryPage};

pub use schema::SCHEMA_VERSION;

/// How long opening one connection may take when the URL does not say
/// (`connect_timeout`).
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// Metadata in a PostgreSQL database, shared by every node that connects.
#[derive(Clone)]
pub struct PgStore {
    pool: Pool,
    /// The server and database, without the password (for messages).
    target: String,
}

impl std::fmt::Debug for PgStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgStore")
            .field("target", &self.target)
            .finish_non_exhaustive()
    }
}

impl PgStore {
    /// Connects to the database of `url` (`postgres://USER[:PASSWORD]@HOST
    /// [:PORT]/DATABASE[?PARAMS]`, the parameters of libpq's URLs that
    /// `tokio-postgres` reads, such as `connect_timeout` or `options`),
    /// brings its schema to [`SCHEMA_VERSION`] (under an advisory lock, so
    /// nodes starting together migrate once), and returns a store with a
    /// pool of at most `pool_size` connections (at least 1).
    ///
    /// Errors: [`StoreError::Invalid`] for a URL that is not a PostgreSQL
    /// one; [`StoreError::Backend`] naming the server when it cannot be
    /// reached or refuses the login; [`StoreError::SchemaTooNew`] for a
    /// database of a newer release (left untouched).
    pub async fn connect(url: &str, pool_size: usize) -> StoreResult<PgStore> {
        let (config, target) = parse_url(url)?;
        let (mut client, connection) = config
            .connect(NoTls)
            .await
            .map_err(|e| StoreError::backend(format!("connect to PostgreSQL at {target}"), e))?;
        let conn_task = tokio::spawn(connection);
        let migrated = schema::migrate(&mut client).await;
        // Closing the session also releases the migration lock if the
        // migration failed half way.
        drop(client);
        let _ = conn_task.await;
        migrated?;
        let manager = Manager::from_config(
            config,
            NoTls,
            ManagerConfig {
                recycling_method: RecyclingMethod::Fast,
            },
        );
        let pool = Pool::builder(manager)
            .max_size(pool_size.max(1))
            .runtime(Runtime::Tokio1)
            .build()
            .map_err(|e| StoreError::backend(format!("build the pool for {target}"), e))?;
        Ok(PgStore { pool, target })
    }

    /// The server and database this store uses, without the password.
    pub fn target(&self) -> &str {
        &self.target
    }

    /// A connection from the pool.
    async fn conn(&self) -> StoreResult<deadpool_postgres::Object> {
        self.pool.get().await.map_err(|e| {
            StoreError::backend(
                format!("get a connection to PostgreSQL at {}", self.target),
                e,
            )
        })
    }
}

/// Parses a metadata URL; also returns how to name the server in messages
/// (`USER@HOST:PORT/DATABASE`, never the password).
fn parse_url(url: &str) -> StoreResult<(tokio_postgres::Config, String)> {
    let bad = |why: String| {
        // The URL may hold a password: only its host is repeated.
        let host = host_of(url);
        StoreError::Invalid(format!(
            "metadata URL (host '{host}'): {why}; expected \
             postgres://USER[:PASSWORD]@HOST[:PORT]/DATABASE"
        ))
    };
    if !(url.starts_with("postgres://") || url.starts_with("postgresql://")) {
        return Err(bad("not a postgres:// URL".into()));
    }
    let mut config: tokio_postgres::Config = url.parse().map_err(|e| bad(format!("{e}")))?;
    if config.get_hosts().is_empty() {
        return Err(bad("no host".into()));
    }
    if config.get_connect_timeout().is_none() {
        config.connect_timeout(CONNECT_TIMEOUT);
    }
    if config.get_application_name().is_none() {
        config.application_name("bdia");
    }
    let hosts: Vec<String> = config
        .get_hosts()
        .iter()
        .enumerate()
        .map(|(i, h)| {
            let host = match h {
                tokio_postgres::config::Host::Tcp(name) => name.clone(),
                #[cfg(unix)]
                tokio_postgres::config::Host::Unix(path) => path.display().to_string(),
            };
            let port = config
                .get_ports()
                .get(i)
                .or(config.get_ports().first())
                .copied()
                .unwrap_or(5432);
            format!("{host}:{port}")
        })
        .collect();
    let target = format!(
        "{}@{}/{}",
        config.get_user().unwrap_or(""),
        hosts.join(","),
        config.get_dbname().unwrap_or("")
    );
    Ok((config, target))
}

/// The host part of a URL as written (between the user info and the port
/// or path), for messages about a URL that does not parse.
fn host_of(url: &str) -> &str {
    let rest = url.split_once("://").map_or(url, |(_, r)| r);
    let authority = rest.split(['/', '?']).next().unwrap_or("");
    let host_port = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    match host_port.rsplit_once(':') {
        Some((h, _)) if !h.is_empty() => h,
        _ => host_port,
    }
}

/// Maps a PostgreSQL error to [`StoreError::Backend`], naming what was being
/// done and keeping the error as the source.
fn db(context: &'static str) -> impl FnOnce(tokio_postgres::Error) -> StoreError {
    move |e| StoreError::backend(context, e)
}

/// True for a broken `UNIQUE` or `PRIMARY KEY` constraint.
fn is_unique_violation(e: &tokio_postgres::Error) -> bool {
    e.code() == Some(&SqlState::UNIQUE_VIOLATION)
}

/// True for a broken foreign key (a row of an unknown company).
fn is_foreign_key_violation(e: &tokio_postgres::Error) -> bool {
    e.code() == Some(&SqlState::FOREIGN_KEY_VIOLATION)
}

/// Query parameters.
type Params<'a> = &'a [&'a (dyn ToSql + Sync)];

/// Every row of a query (statement prepared once per connection).
async fn query_all(
    c: &impl GenericClient,
    context: &'static str,
    sql: &str,
    params: Params<'_>,
) -> StoreResult<Vec<Row>> {
    let stmt = c.prepare_cached(sql).await.map_err(db(context))?;
    c.query(&stmt, params).await.map_err(db(context))
}

/// The first row of a query; `None` when there is none.
async fn query_opt(
    c: &impl GenericClient,
    context: &'static str,
    sql: &str,
    params: Params<'_>,
) -> StoreResult<Option<Row>> {
    Ok(query_all(c, context, sql, params).await?.into_iter().next())
}

/// The one row of a query that always answers one (an aggregate,
/// `RETURNING` of an upsert).
async fn query_one(
    c: &impl GenericClient,
    context: &'static str,
    sql: &str,
    params: Params<'_>,
) -> StoreResult<Row> {
    query_opt(c, context, sql, params)
        .await?
        .ok_or_else(|| StoreError::backend(context, "the query answered no row"))
}

/// Runs a statement; the number of rows changed.
async fn exec(
    c: &impl GenericClient,
    context: &'static str,
    sql: &str,
    params: Params<'_>,
) -> StoreResult<u64> {
    let stmt = c.prepare_cached(sql).await.map_err(db(context))?;
    c.execute(&stmt, params).await.map_err(db(context))
}

/// Maps every row, the mapping's driver errors named by `context`.
fn map_rows<T>(
    rows: Vec<Row>,
    context: &'static str,
    map: impl Fn(&Row) -> Result<T, tokio_postgres::Error>,
) -> StoreResult<Vec<T>> {
    rows.iter().map(|r| map(r).map_err(db(context))).collect()
}

/// Maps an optional row.
fn map_opt<T>(
    row: Option<Row>,
    context: &'static str,
    map: impl FnOnce(&Row) -> Result<T, tokio_postgres::Error>,
) -> StoreResult<Option<T>> {
    row.as_ref().map(map).transpose().map_err(db(context))
}

/// A count or size as stored (`BIGINT` is signed).
fn big(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

#[async_trait]
impl MetadataStore for PgStore {
    async fn create_company(
        &self,
        id: &str,
        salt: &str,
        settings: CompanySettings,
    ) -> StoreResult<Company> {
        tenants::create_company(&self.conn().await?, id, salt, settings).await
    }

    async fn get_company(&self, id: &str) -> StoreResult<Option<Company>> {
        tenants::get_company(&self.conn().await?, id).await
    }

    async fn list_companies(&self) -> StoreResult<Vec<Company>> {
        tenants::list_companies(&self.conn().await?).await
    }

    async fn update_company_settings(
        &self,
        id: &str,
        settings: CompanySettings,
    ) -> StoreResult<Company> {
        tenants::update_company_settings(&self.conn().await?, id, settings).await
    }

    async fn create_report_suite(
        &self,
        company_id: &str,
        rsid: &str,
        time_zone: &str,
    ) -> StoreResult<ReportSuite> {
        tenants::create_report_suite(&self.conn().await?, company_id, rsid, time_zone).await
    }

    async fn get_report_suite(
        &self,
        company_id: &str,
        rsid: &str,
    ) -> StoreResult<Option<ReportSuite>> {
        tenants::get_report_suite(&self.conn().await?, company_id, rsid).await
    }

    async fn list_report_suites(&self, company_id: Option<&str>) -> StoreResult<Vec<ReportSuite>> {
        tenants::list_report_suites(&self.conn().await?, company_id).await
    }

    async fn claim_report_suite(
        &self,
        company_id: &str,
        rsid: &str,
        create: bool,
    ) -> StoreResult<SuiteClaim> {
        tenants::claim_report_suite(&self.conn().await?, company_id, rsid, create).await
    }

    async fn set_accept_single_hits(
        &self,
        company_id: &str,
        rsid: &str,
        accept: bool,
    ) -> StoreResult<ReportSuite> {
        tenants::set_accept_single_hits(&self.conn().await?, company_id, rsid, accept).await
    }

    async fn set_internal_url_filters(
        &self,
        company_id: &str,
        rsid: &str,
        filters: &[String],
    ) -> StoreResult<ReportSuite> {
        tenants::set_internal_url_filters(&self.conn().await?, company_id, rsid, filters).await
    }

    async fn set_evar_settings(
        &self,
        company_id: &str,
        rsid: &str,
        settings: &[EvarSetting],
    ) -> StoreResult<ReportSuite> {
        tenants::set_evar_settings(&self.conn().await?, company_id, rsid, settings).await
    }

    async fn single_hit_suite(&self, rsid: &str) -> StoreResult<Option<ReportSuite>> {
        tenants::single_hit_suite(&self.conn().await?, rsid).await
    }

    async fn create_client(&self, client: ApiClient) -> StoreResult<ApiClient> {
        tenants::create_client(&self.conn().await?, client).await
    }

    async fn get_client(&self, client_id: &str) -> StoreResult<Option<ApiClient>> {
        tenants::get_client(&self.conn().await?, client_id).await
    }

    async fn list_clients(&self, company_id: Option<&str>) -> StoreResult<Vec<ApiClient>> {
        tenants::list_clients(&self.conn().await?, company_id).await
    }

    async fn set_client_disabled(&self, client_id: &str, disabled: bool) -> StoreResult<()> {
        tenants::set_client_disabled(&self.conn().await?, client_id, disabled).await
    }

    async fn rotate_client_secret(
        &self,
        client_id: &str,
        secret_hash: &str,
    ) -> StoreResult<ApiClient> {
        tenants::rotate_client_secret(&self.conn().await?, client_id, secret_hash).await
    }

    async fn remember_assertion(
        &self,
        digest: &str,
        keep_until: i64,
        now: i64,
    ) -> StoreResult<bool> {
        tenants::remember_assertion(&self.conn().await?, digest, keep_until, now).await
    }

    async fn set_client_public_key(&self, client_id: &str, pem: Option<&str>) -> StoreResult<()> {
        tenants::set_client_public_key(&self.conn().await?, client_id, pem).await
    }

    async fn commit_upload(&self, file: NewFile) -> StoreResult<CommitOutcome> {
        files::commit_upload(&mut self.conn().await?, file).await
    }

    async fn get_file(&self, company_id: &str, file_id: &str) -> StoreResult<Option<FileRecord>> {
        Ok(files::by_id(&self.conn().await?, file_id)
            .await?
            .filter(|f| f.company_id == company_id))
    }

    async fn file_company(&self, file_id: &str) -> StoreResult<Option<String>> {
        Ok(files::by_id(&self.conn().await?, file_id)
            .await?
            .map(|f| f.company_id))
    }

    async fn find_by_key(&self, company_id: &str, key: &str) -> StoreResult<Option<FileRecord>> {
        files::find_by_key(&self.conn().await?, company_id, key).await
    }

    async fn find_by_content(
        &self,
        company_id: &str,
        content_sha256: &str,
    ) -> StoreResult<Option<FileRecord>> {
        files::find_by_content(&self.conn().await?, company_id, content_sha256).await
    }

    async fn list_files(&self, company_id: &str, query: &FileQuery) -> StoreResult<FilePage> {
        files::list(&self.conn().await?, company_id, query).await
    }

    async fn update_file_status(
        &self,
        file_id: &str,
        update: StatusUpdate,
    ) -> StoreResult<FileRecord> {
        files::update_status(&mut self.conn().await?, file_id, update).await
    }

    async fn pending_files(&self, limit: u32) -> StoreResult<Vec<FileRecord>> {
        files::pending(&self.conn().await?, limit).await
    }

    async fn referenced_blob_keys(&self) -> StoreResult<Vec<String>> {
        files::referenced_blob_keys(&self.conn().await?).await
    }

    async fn ping(&self) -> StoreResult<()> {
        query_one(&self.conn().await?, "ping", "SELECT 1", &[])
            .await
            .map(|_| ())
    }

    /// Calls holding a pooled connection plus calls waiting for one.
    fn queued_calls(&self) -> usize {
        let s = self.pool.status();
        s.size.saturating_sub(s.available) + s.waiting
    }

    async fn runnable_groups(&self, limit: u32) -> StoreResult<Vec<GroupRef>> {
        processing::runnable_groups(&self.conn().await?, limit).await
    }

    async fn claim_next_file(
        &self,
        group: &GroupRef,
        lease: Option<&GroupLease>,
        now: i64,
    ) -> StoreResult<Option<FileRecord>> {
        processing::claim_next_file(&mut self.conn().await?, group, lease, now).await
    }

    async fn visitor_states(
        &self,
        company_id: &str,
        keys: Vec<(String, String)>,
    ) -> StoreResult<Vec<Option<VisitState>>> {
        processing::visitor_states(&self.conn().await?, company_id, &keys).await
    }

    async fn seen_ids(&self, company_id: &str, keys: Vec<SeenId>) -> StoreResult<Vec<bool>> {
        processing::seen_ids(&self.conn().await?, company_id, &keys).await
    }

    async fn complete_file(
        &self,
        file_id: &str,
        completion: Completion,
    ) -> StoreResult<FileRecord> {
        processing::complete_file(&mut self.conn().await?, file_id, completion).await
    }

    async fn fail_file(
        &self,
        file_id: &str,
        reason: &str,
        code: &str,
        now: i64,
        lease: Option<&GroupLease>,
    ) -> StoreResult<FileRecord> {
        processing::fail_file(&mut self.conn().await?, file_id, reason, code, now, lease).await
    }

    async fn retry_group(&self, group: &GroupRef) -> StoreResult<u64> {
        processing::retry_group(&self.conn().await?, group).await
    }

    async fn requeue_processing(&self) -> StoreResult<u64> {
        processing::requeue_processing(&mut self.conn().await?).await
    }

    async fn requeue_file(&self, file_id: &str, lease: Option<&GroupLease>) -> StoreResult<bool> {
        processing::requeue_file(&mut self.conn().await?, file_id, lease).await
    }

    async fn claim_groups(
        &self,
        node_id: &str,
        limit: u32,
        lease_ms: u64,
    ) -> StoreResult<Vec<GroupLease>> {
        leases::claim_groups(&mut self.conn().await?, node_id, limit, lease_ms).await
    }

    async fn renew_leases(&self, leases: &[GroupLease], lease_ms: u64) -> StoreResult<Vec<bool>> {
        leases::renew_leases(&self.conn().await?, leases, lease_ms).await
    }

    async fn release_lease(&self, lease: &GroupLease) -> StoreResult<bool> {
        leases::release_lease(&self.conn().await?, lease).await
    }

    async fn release_node_leases(&self, node_id: &str) -> StoreResult<u64> {
        leases::release_node_leases(&self.conn().await?, node_id).await
    }

    async fn lease_claims(&self, group: &GroupRef) -> StoreResult<Vec<LeaseClaim>> {
        leases::lease_claims(&self.conn().await?, group).await
    }

    async fn shared_secret(&self, name: &str, candidate: &str) -> StoreResult<String> {
        leases::shared_secret(&self.conn().await?, name, candidate).await
    }

    async fn node_heartbeat(&self, node_id: &str, ttl_ms: u64) -> StoreResult<u32> {
        leases::node_heartbeat(&mut self.conn().await?, node_id, ttl_ms).await
    }

    async fn delete_visitor_states(
        &self,
        company_id: &str,
        keys: Vec<(String, String)>,
    ) -> StoreResult<u64> {
        processing::delete_visitor_states(&self.conn().await?, company_id, &keys).await
    }

    async fn mark_hits_retracted(
        &self,
        company_id: &str,
        file_id: &str,
        hits: u64,
        now: i64,
    ) -> StoreResult<FileRecord> {
        files::mark_hits_retracted(&mut self.conn().await?, company_id, file_id, hits, now).await
    }

    async fn record_privacy_deletion(
        &self,
        deletion: NewPrivacyDeletion,
    ) -> StoreResult<PrivacyDeletion> {
        privacy::record(&self.conn().await?, deletion).await
    }

    async fn list_privacy_deletions(
        &self,
        company_id: &str,
        query: &PageQuery,
    ) -> StoreResult<PrivacyDeletionPage> {
        privacy::list(&self.conn().await?, company_id, query).await
    }

    async fn list_visitor_states(
        &self,
        company_id: &str,
        after: Option<(String, String)>,
        limit: u32,
    ) -> StoreResult<Vec<StoredState>> {
        processing::list_visitor_states(&self.conn().await?, company_id, after, limit).await
    }

    async fn control_group(
        &self,
        group: &GroupRef,
        action: GroupAction,
        actor: &str,
        now: i64,
    ) -> StoreResult<GroupActionRecord> {
        groups::control_group(&mut self.conn().await?, group, action, actor, now).await
    }

    async fn group_info(&self, group: &GroupRef) -> StoreResult<Option<GroupInfo>> {
        groups::group_info(&self.conn().await?, group).await
    }

    async fn group_queue(&self, group: &GroupRef, file_ids: &[String]) -> StoreResult<GroupQueue> {
        groups::group_queue(&self.conn().await?, group, file_ids).await
    }

    async fn processing_rate(
        &self,
        company_id: &str,
        recent: u32,
    ) -> StoreResult<Option<ProcessingRate>> {
        groups::processing_rate(&self.conn().await?, company_id, recent).await
    }

    async fn create_webhook(&self, webhook: Webhook) -> StoreResult<Webhook> {
        webhooks::create(&self.conn().await?, webhook).await
    }

    async fn get_webhook(&self, company_id: &str, id: &str) -> StoreResult<Option<Webhook>> {
        webhooks::get(&self.conn().await?, company_id, id).await
    }

    async fn list_webhooks(&self, company_id: &str) -> StoreResult<Vec<Webhook>> {
        webhooks::list(&self.conn().await?, company_id).await
    }

    async fn delete_webhook(&self, company_id: &str, id: &str) -> StoreResult<bool> {
        webhooks::delete(&self.conn().await?, company_id, id).await
    }

    async fn list_webhook_deliveries(
        &self,
        company_id: &str,
        webhook_id: &str,
        query: &PageQuery,
    ) -> StoreResult<WebhookDeliveryPage> {
        webhooks::deliveries(&self.conn().await?, company_id, webhook_id, query).await
    }

    async fn claim_webhook_deliveries(
        &self,
        now_ms: i64,
        claim_ms: i64,
        limit: u32,
    ) -> StoreResult<Vec<DueDelivery>> {
        webhooks::claim(&self.conn().await?, now_ms, claim_ms, limit).await
    }

    async fn record_webhook_attempt(&self, id: u64, attempt: DeliveryAttempt) -> StoreResult<bool> {
        webhooks::record(&self.conn().await?, id, &attempt).await
    }

    async fn prune_webhook_deliveries(&self, before: i64, limit: u32) -> StoreResult<u64> {
        webhooks::prune(&self.conn().await?, before, limit).await
    }
}
