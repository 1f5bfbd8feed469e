//! Durable state of bdia.
//!
//! Two abstractions, each with an embedded backend first:
//!
//! - [`MetadataStore`]: companies, report suites, API clients, file records
//!   and idempotency keys. The embedded backend is [`sqlite::SqliteStore`]
//!   (WAL, `synchronous=FULL`, a versioned schema); the shared one, for
//!   several nodes on one database, is [`postgres::PgStore`]. The contract
//!   is written down as the `conformance` suite, which every backend must
//!   pass unchanged.
//! - [`blob::BlobStore`]: staged upload bytes and per-file reject reports,
//!   on a local directory now (the `object_store` crate's `LocalFileSystem`),
//!   on an S3-compatible store later.
//!
//! Invariants the server relies on:
//!
//! - A file record is created once, by [`MetadataStore::commit_upload`],
//!   after its staged bytes are durable. Records are never deleted.
//! - For one company, at most one non-`REJECTED` record holds a given
//!   idempotency key; `commit_upload` returns that record instead of
//!   inserting a second one (also under concurrent calls).
//! - Every `UPLOADED` record carries `group_seq`: 1, 2, 3... per
//!   (company, visitor group), in commit order, which is the order in which
//!   the server answered 200. [`MetadataStore::pending_files`] lists the
//!   files still to process in that order.
//!
//! Errors: [`StoreError`] tells "not found", "conflict" and "invalid" apart
//! from backend failures; a backend failure ([`StoreError::Backend`]) names
//! what the store was doing and keeps the backend's own error (SQLite,
//! PostgreSQL, I/O, object store) as its `source()`.
//!
//! Test support: the `conformance` module (the suite and its sample
//! records) is compiled only with the cargo feature `testsuite`; tests that
//! use it enable the feature through their `[dev-dependencies]`.

pub mod blob;
mod common;
#[cfg(feature = "testsuite")]
pub mod conformance;
pub mod postgres;
pub mod sqlite;
pub mod storage;

use std::fmt;
use std::str::FromStr;

use async_trait::async_trait;
use bdia_model::commerce::SeenId;
use bdia_model::conversion::{EvarSetting, PersistedEvar};
use bdia_model::{StateDelta, VisitState};
use serde::{Deserialize, Serialize};

/// A backend failure's cause, kept as the error's source.
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// What can go wrong in a store.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The thing asked for does not exist.
    #[error("not found: {0}")]
    NotFound(String),
    /// A uniqueness rule was broken (an id that already exists).
    #[error("already exists: {0}")]
    Conflict(String),
    /// The request itself is not acceptable (a malformed id).
    #[error("invalid: {0}")]
    Invalid(String),
    /// The backend failed (disk, database, I/O); `source` is the backend's
    /// own error, `context` what the store was doing. The message repeats
    /// the source's, since some callers keep only the message (a file's
    /// `error`, the server's log line of an internal error).
    #[error("storage backend failed: {context}: {source}")]
    Backend {
        /// What the store was doing (`"list files"`, `"open database"`).
        context: String,
        /// The backend's error.
        #[source]
        source: BoxError,
    },
    /// The caller's visitor-group lease is no longer current: another
    /// node took the group over (or the lease was released), so the
    /// caller may not change the group's files any more.
    #[error("lease lost: {0}")]
    Fenced(String),
    /// The database was written by a newer release: its schema version is
    /// above the highest one this build knows, so it is not opened.
    #[error(
        "database schema version {found} is newer than this build supports (up to {supported}); \
         run a newer bdia release"
    )]
    SchemaTooNew {
        /// The version stored in the database.
        found: i64,
        /// The highest version this build knows.
        supported: i64,
    },
}

impl StoreError {
    /// Stable snake_case code.
    pub fn code(&self) -> &'static str {
        match self {
            StoreError::NotFound(_) => "not_found",
            StoreError::Conflict(_) => "conflict",
            StoreError::Invalid(_) => "invalid",
            StoreError::Backend { .. } => "backend",
            StoreError::SchemaTooNew { .. } => "schema_too_new",
            StoreError::Fenced(_) => "fenced",
        }
    }

    /// A backend failure with what the store was doing and the cause.
    pub fn backend(context: impl Into<String>, source: impl Into<BoxError>) -> StoreError {
        StoreError::Backend {
            context: context.into(),
            source: source.into(),
        }
    }

    /// True when the cause is a full disk (or quota): a condition that
    /// ends by itself when space returns, not a fault of the data.
    pub fn is_storage_full(&self) -> bool {
        is_storage_full(self)
    }
}

/// True when `e` or any error in its source chain says the disk (or the
/// user's quota) is full: an [`std::io::Error`] of kind `StorageFull` or
/// `QuotaExceeded`, ENOSPC/EDQUOT, SQLite's `SQLITE_FULL`, PostgreSQL's
/// `disk_full` (SQLSTATE 53100), or, for causes
/// that only kept their text, the system's wording of those.
pub fn is_storage_full(e: &(dyn std::error::Error + 'static)) -> bool {
    let mut cur: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(err) = cur {
        if let Some(io) = err.downcast_ref::<std::io::Error>() {
            if matches!(
                io.kind(),
                std::io::ErrorKind::StorageFull | std::io::ErrorKind::QuotaExceeded
            ) {
                return true;
            }
        }
        if let Some(rusqlite::Error::SqliteFailure(f, _)) = err.downcast_ref::<rusqlite::Error>() {
            if f.code == rusqlite::ErrorCode::DiskFull {
                return true;
            }
        }
        if let Some(pg) = err.downcast_ref::<tokio_postgres::Error>() {
            if pg.code() == Some(&tokio_postgres::error::SqlState::DISK_FULL) {
                return true;
            }
        }
        if is_storage_full_text(&err.to_string()) {
            return true;
        }
        cur = err.source();
    }
    false
}

/// True when an error's text is the system's (or SQLite's) wording of a
/// full disk or quota.
pub fn is_storage_full_text(text: &str) -> bool {
    [
        "No space left on device",
        "Disk quota exceeded",
        "database or disk is full",
    ]
    .iter()
    .any(|w| text.contains(w))
}

/// Result of store operations.
pub type StoreResult<T> = Result<T, StoreError>;

/// The upload rate limit a company is held to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case", tag = "mode")]
pub enum RateLimitSetting {
    /// The server-wide default from the configuration.
    #[default]
    Default,
    /// No limit for this company.
    Off,
    /// A company-specific limit.
    Custom {
        /// Sustained uploads per second.
        per_second: u32,
        /// Uploads allowed at once after a quiet period.
        burst: u32,
    },
}

impl fmt::Display for RateLimitSetting {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RateLimitSetting::Default => f.write_str("default"),
            RateLimitSetting::Off => f.write_str("off"),
            RateLimitSetting::Custom { per_second, burst } => write!(f, "{per_second}/{burst}"),
        }
    }
}

impl FromStr for RateLimitSetting {
    type Err = StoreError;

    /// `default`, `off`, or `PER_SECOND/BURST` (e.g. `5/20`).
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "default" => Ok(RateLimitSetting::Default),
            "off" => Ok(RateLimitSetting::Off),
            _ => {
                let bad = || {
                    StoreError::Invalid(format!(
                        "rate limit '{s}': expected 'default', 'off' or PER_SECOND/BURST (e.g. 5/20)"
                    ))
                };
                let (a, b) = s.split_once('/').ok_or_else(bad)?;
                let per_second: u32 = a.trim().parse().map_err(|_| bad())?;
                let burst: u32 = b.trim().parse().map_err(|_| bad())?;
                if per_second == 0 || burst == 0 {
                    return Err(bad());
                }
                Ok(RateLimitSetting::Custom { per_second, burst })
            }
        }
    }
}

/// Per-company settings.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CompanySettings {
    /// The one customerIDType whose isMCSeed counts; `None`: any type.
    pub seed_customer_id_type: Option<String>,
    /// Processing throttle in rows per second; `None`: off.
    pub rows_per_second: Option<u64>,
    /// Upload request rate limit.
    pub upload_rate_limit: RateLimitSetting,
    /// Create unknown report suites for this company on first use.
    pub auto_create_report_suites: bool,
}

impl Default for CompanySettings {
    fn default() -> Self {
        CompanySettings {
            seed_customer_id_type: None,
            rows_per_second: None,
            upload_rate_limit: RateLimitSetting::Default,
            auto_create_report_suites: true,
        }
    }
}

/// A tenant.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Company {
    /// The company id (also the `iss` of its service-account JWTs).
    pub id: String,
    /// Salt for seeded visitor IDs, made at creation, hex.
    pub salt: String,
    /// Settings.
    pub settings: CompanySettings,
    /// Unix seconds.
    pub created: i64,
}

impl Company {
    /// The salt as the bytes that seed visitor IDs: the hex decoded, or the
    /// text itself when it is not hex.
    pub fn salt_bytes(&self) -> Vec<u8> {
        salt_bytes(&self.salt)
    }
}

/// A company salt (hex, as stored) as the bytes that seed visitor IDs: the
/// hex decoded, or the text itself when it is not hex.
pub fn salt_bytes(salt: &str) -> Vec<u8> {
    hex::decode(salt).unwrap_or_else(|_| salt.as_bytes().to_vec())
}

/// A report suite of one company. Report suite IDs are per company: two
/// companies may each have a suite of the same ID, and they are two suites.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReportSuite {
    /// The report suite id as used in files.
    pub rsid: String,
    /// Owner.
    pub company_id: String,
    /// IANA time zone name, `UTC` by default.
    pub time_zone: String,
    /// Unix seconds.
    pub created: i64,
    /// Whether the suite takes hits from the single-hit Data Insertion API
    /// (`/b/ss/...`). Off unless set; at most one company's suite of an
    /// rsid has it on, since that endpoint is not authenticated and names
    /// only the rsid.
    #[serde(default)]
    pub accept_single_hits: bool,
    /// Internal URL filters: a referrer whose host contains one of these
    /// is internal (traffic sources). Empty: only the hit's own page host.
    #[serde(default)]
    pub internal_url_filters: Vec<String>,
    /// The expiration and allocation of the suite's eVars; an eVar not
    /// listed has the defaults (visit, most recent).
    #[serde(default)]
    pub evar_settings: Vec<EvarSetting>,
}

/// What [`MetadataStore::claim_report_suite`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SuiteClaim {
    /// The company already has it.
    Owned,
    /// The company did not have it; it was created.
    Created,
    /// The company does not have it and creation was not asked for.
    Unknown,
}

/// An API client: what a token is issued to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApiClient {
    /// The client id (also the `x-api-key`).
    pub client_id: String,
    /// Owner.
    pub company_id: String,
    /// Hash of the secret (never the secret itself).
    pub secret_hash: String,
    /// The technical account (`sub` of its service-account JWTs).
    pub technical_account: String,
    /// Registered RSA public key (PEM) for the JWT exchange.
    pub public_key_pem: Option<String>,
    /// A disabled client gets 403.
    pub disabled: bool,
    /// Unix seconds.
    pub created: i64,
    /// Access tokens carry the generation they were issued under and are
    /// accepted only while it is the client's current one: rotating the
    /// secret or disabling the client moves it up, revoking every token
    /// issued before. 0 for a new client.
    #[serde(default)]
    pub token_generation: u64,
}

/// Lifecycle of a file (spec 2.1); defined with the API's bodies.
pub use bdia_wire::FileStatus;

/// Everything known about one uploaded file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileRecord {
    /// Server-made UUID.
    pub file_id: String,
    /// Owner.
    pub company_id: String,
    /// The `x-adobe-vgid` of the upload.
    pub visitor_group_id: String,
    /// The client's key, or the file id when none was given.
    pub idempotency_key: String,
    /// The multipart filename, empty when none was sent.
    pub upload_name: String,
    /// Compressed bytes.
    pub size: u64,
    /// Decompressed bytes.
    pub uncompressed_size: u64,
    /// Unix seconds when the upload was accepted.
    pub received_date: i64,
    /// Data rows.
    pub rows: u64,
    /// Rows that will be skipped.
    pub invalid_rows: u64,
    /// Lifecycle status.
    pub status: FileStatus,
    /// Why the file was rejected or failed.
    pub error: Option<String>,
    /// Stable code of `error`.
    pub error_code: Option<String>,
    /// The processing log (spec 3.5).
    pub processing_log: String,
    /// Unix seconds, set by the processing stage.
    pub processing_start_date: Option<i64>,
    /// Unix seconds, set by the processing stage.
    pub file_reader_complete_date: Option<i64>,
    /// Unix seconds, set by the processing stage.
    pub processing_end_date: Option<i64>,
    /// Acceptance order within (company, visitor group), from 1; `None` for
    /// `REJECTED` records.
    pub group_seq: Option<u64>,
    /// Blob key of the staged bytes; `None` when not kept (REJECTED).
    pub blob_key: Option<String>,
    /// Blob key of the reject report (CSV: row,kind,message,raw); `None`
    /// when the file had no invalid rows or was REJECTED.
    pub rejects_key: Option<String>,
    /// Invalid rows listed in the reject report (the first ones); fewer
    /// than `invalid_rows` when the report was capped. 0 without a report.
    pub rejects_kept: u64,
    /// Unix seconds when the file's hits were retracted from the lake
    /// ([`MetadataStore::mark_hits_retracted`]); `None` while they count.
    pub hits_retracted_at: Option<i64>,
    /// Hits the retraction removed from the lake; `None` while not retracted.
    pub hits_retracted: Option<u64>,
    /// The node whose run committed the file `COMPLETE` (`None` before, and
    /// for files completed without a lease).
    pub processed_by: Option<String>,
    /// The epoch of the group lease under which the file was committed
    /// `COMPLETE` (`None` as for `processed_by`).
    pub lease_epoch: Option<u64>,
    /// SHA-256 of the uploaded bytes, lower-case hex (accepted uploads;
    /// `None` for `REJECTED` records and records written before).
    pub content_sha256: Option<String>,
    /// An earlier accepted file of the company with the same bytes under
    /// another idempotency key, when there was one at upload.
    pub duplicate_of: Option<String>,
}

/// The record as the API sends it (upload answers, lookups, listings).
impl From<&FileRecord> for bdia_wire::FileRecord {
    fn from(r: &FileRecord) -> Self {
        bdia_wire::FileRecord {
            file_id: r.file_id.clone(),
            visitor_group_id: r.visitor_group_id.clone(),
            size: r.size,
            uncompressed_size: r.uncompressed_size,
            received_date: r.received_date,
            rows: r.rows,
            invalid_rows: r.invalid_rows,
            upload_name: r.upload_name.clone(),
            status: r.status.text().to_string(),
            status_code: r.status,
            processing_log: r.processing_log.clone(),
            idempotency_key: r.idempotency_key.clone(),
            error: r.error.clone(),
            processing_start_date: r.processing_start_date,
            file_reader_complete_date: r.file_reader_complete_date,
            processing_end_date: r.processing_end_date,
            rejects_kept: r.rejects_kept,
            hits_retracted_at: r.hits_retracted_at,
            hits_retracted: r.hits_retracted,
            duplicate_of: r.duplicate_of.clone(),
            queue: None,
        }
    }
}

/// A file record to commit, as built by the upload path.
#[derive(Debug, Clone)]
pub struct NewFile {
    /// The record; `group_seq` is assigned by the store.
    pub record: FileRecord,
    /// True when the client sent its own idempotency key.
    pub client_key: bool,
}

/// Result of [`MetadataStore::commit_upload`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CommitOutcome {
    /// The record was stored (with its `group_seq` when `UPLOADED`).
    Inserted(FileRecord),
    /// The key already belongs to an accepted file: that record, nothing
    /// was stored.
    Existing(FileRecord),
}

/// Filters of a file listing.
#[derive(Debug, Clone, Default)]
pub struct FileQuery {
    /// Only this visitor group.
    pub visitor_group_id: Option<String>,
    /// Only this status.
    pub status: Option<FileStatus>,
    /// Page size (the store caps it at 1000; 0 means 100).
    pub limit: u32,
    /// Continue after this cursor (from [`FilePage::next_cursor`]).
    pub cursor: Option<String>,
}

/// One page of a file listing, newest first.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FilePage {
    /// The records.
    pub files: Vec<FileRecord>,
    /// Cursor of the next page; `None` on the last page.
    pub next_cursor: Option<String>,
}

/// A status change made by the processing stage.
#[derive(Debug, Clone, Default)]
pub struct StatusUpdate {
    /// New status.
    pub status: Option<FileStatus>,
    /// Set `processing_start_date`.
    pub processing_start_date: Option<i64>,
    /// Set `file_reader_complete_date`.
    pub file_reader_complete_date: Option<i64>,
    /// Set `processing_end_date`.
    pub processing_end_date: Option<i64>,
    /// Set `error` (and its code).
    pub error: Option<(String, String)>,
}

/// A (company, visitor group) pair.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct GroupRef {
    /// Owner.
    pub company_id: String,
    /// The visitor group id.
    pub visitor_group_id: String,
}

/// The outcome of processing one file, committed by
/// [`MetadataStore::complete_file`] in one transaction.
#[derive(Debug, Clone, Default)]
pub struct Completion {
    /// Unix seconds when the staged file had been read to its end.
    pub file_reader_complete_date: i64,
    /// Unix seconds when processing ended.
    pub processing_end_date: i64,
    /// The final processing log (upload log plus processing notes).
    pub processing_log: String,
    /// The new state of every (report suite, visitor) the file touched.
    pub delta: StateDelta,
    /// Forget the staged blob's key (the caller deletes the blob after the
    /// commit; a blob no record references is swept at startup).
    pub release_blob: bool,
    /// The group lease the file was processed under: the commit happens
    /// only while it is current ([`StoreError::Fenced`] otherwise). `None`
    /// commits without a lease check (tools and tests).
    pub lease: Option<GroupLease>,
}

/// A node's lease on a visitor group ([`MetadataStore::claim_groups`]).
///
/// While a lease is current (its epoch is the group's and the group's
/// owner is its node), only that node claims, completes, fails or requeues
/// the group's files: every such write checks it in the same transaction
/// and fails with [`StoreError::Fenced`] otherwise. A claim by another node
/// (after expiry) moves the epoch up, so a node that was paused or cut off
/// past its lease can never write for the group again.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct GroupLease {
    /// The group.
    pub group: GroupRef,
    /// The node holding it.
    pub node_id: String,
    /// Moves up by one on every claim of the group.
    pub epoch: u64,
}

/// One claim of a group's lease, kept forever (the evidence that no two
/// nodes ever held a group at once).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LeaseClaim {
    /// The epoch this claim started.
    pub epoch: u64,
    /// The node that claimed.
    pub node_id: String,
    /// When, in unix milliseconds on the database clock.
    pub claimed_ms: i64,
    /// When the lease before it had expired or been released (database
    /// clock; `None` for the group's first claim). Never after
    /// `claimed_ms`.
    pub previous_expires_ms: Option<i64>,
}

/// One stored visitor state.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredState {
    /// Report suite ID.
    pub report_suite: String,
    /// Visitor key (`bdia_format::hit::Visitor::key`).
    pub visitor_key: String,
    /// Last hit time (unix seconds).
    pub last_hit_time: i64,
    /// Current visit number.
    pub visit_num: u32,
    /// Start of the current visit (unix seconds).
    pub visit_start_time: i64,
    /// Page views so far in the current visit.
    pub visit_page_num: u32,
    /// The visitor's live eVar values, sorted by eVar.
    #[serde(default)]
    pub evars: Vec<PersistedEvar>,
}

impl StoredState {
    /// The visit state part.
    pub fn state(&self) -> VisitState {
        VisitState {
            last_hit_time: self.last_hit_time,
            visit_num: self.visit_num,
            visit_start_time: self.visit_start_time,
            visit_page_num: self.visit_page_num,
            evars: self.evars.as_slice().into(),
        }
    }
}

/// A privacy deletion to record in the audit trail
/// ([`MetadataStore::record_privacy_deletion`]).
///
/// The audit proves that a request was made and carried out without
/// keeping the personal data it named: the identifier is kept only as its
/// SHA-256.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NewPrivacyDeletion {
    /// The company whose data was deleted.
    pub company_id: String,
    /// Who asked: the API client id, or `admin` for `bdia admin`.
    pub requested_by: String,
    /// Unix seconds.
    pub requested_at: i64,
    /// `customer_id`, `visitor_id`, `marketing_cloud_visitor_id` or
    /// `ip_address`.
    pub identifier_type: String,
    /// The customerIDType of a `customer_id`; `None` for other types.
    pub customer_id_type: Option<String>,
    /// SHA-256 of the identifier as sent, lower-case hex.
    pub identifier_sha256: String,
    /// Hits removed from the lake.
    pub hits_removed: u64,
    /// Visitors whose hits and state were removed.
    pub visitors: u64,
    /// The lake table version of the deletion's commit; `None` when nothing
    /// was committed (no hit matched).
    pub table_version: Option<u64>,
}

/// A recorded privacy deletion.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PrivacyDeletion {
    /// Assigned by the store: increasing in the order records were made.
    pub id: u64,
    /// What was recorded.
    #[serde(flatten)]
    pub deletion: NewPrivacyDeletion,
}

/// A page of a listing newest first: at most `limit` entries after
/// `cursor`.
#[derive(Debug, Clone, Default)]
pub struct PageQuery {
    /// Page size (the store caps it at 1000; 0 means 100).
    pub limit: u32,
    /// Continue after this cursor (from the previous page's `next_cursor`).
    pub cursor: Option<String>,
}

/// One page of privacy deletions, newest first.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PrivacyDeletionPage {
    /// The records.
    pub deletions: Vec<PrivacyDeletion>,
    /// Cursor of the next page; `None` on the last page.
    pub next_cursor: Option<String>,
}

/// Group control: state and actions (defined with the API's bodies).
pub use bdia_wire::{GroupAction, GroupActionRecord, GroupError, GroupState};

/// The error code of a file cancelled by a group cancel.
pub const GROUP_CANCELLED: &str = "group_cancelled";

/// Actions kept in a [`GroupInfo`]: the latest ones.
pub const GROUP_ACTIONS_SHOWN: u32 = 100;

/// What [`MetadataStore::group_info`] knows of a group.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupInfo {
    /// The group.
    pub group: GroupRef,
    /// `active` or `paused`.
    pub state: GroupState,
    /// `UPLOADED` files.
    pub files_waiting: u64,
    /// Rows of the `UPLOADED` files.
    pub rows_waiting: u64,
    /// The `PROCESSING` file.
    pub in_progress: Option<FileRecord>,
    /// The latest `ERROR` file (by processing end).
    pub last_error: Option<FileRecord>,
    /// The latest [`GROUP_ACTIONS_SHOWN`] actions, oldest first.
    pub actions: Vec<GroupActionRecord>,
}

/// The group as the API sends it.
impl From<&GroupInfo> for bdia_wire::GroupView {
    fn from(g: &GroupInfo) -> Self {
        bdia_wire::GroupView {
            visitor_group_id: g.group.visitor_group_id.clone(),
            state: g.state,
            files_waiting: g.files_waiting,
            rows_waiting: g.rows_waiting,
            in_progress: g.in_progress.as_ref().map(bdia_wire::FileRecord::from),
            last_error: g.last_error.as_ref().map(|f| GroupError {
                file_id: f.file_id.clone(),
                error: f.error.clone(),
                error_code: f.error_code.clone(),
                at: f.processing_end_date,
            }),
            actions: g.actions.clone(),
        }
    }
}

/// One waiting file's place in its group ([`MetadataStore::group_queue`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueueEntry {
    /// The waiting file.
    pub file_id: String,
    /// Files before it: `UPLOADED` with a lower `group_seq`, and the
    /// `PROCESSING` one.
    pub files_ahead: u64,
    /// Rows of those files.
    pub rows_ahead: u64,
}

/// The queue of one group, for some of its waiting files.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupQueue {
    /// `active` or `paused`.
    pub state: GroupState,
    /// True when an `ERROR` file stops the group.
    pub stopped: bool,
    /// The asked files that are `UPLOADED`, in queue order.
    pub entries: Vec<QueueEntry>,
}

/// A company's measured processing rate ([`MetadataStore::processing_rate`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProcessingRate {
    /// Rows of the files measured.
    pub rows: u64,
    /// Their processing seconds (end minus start, at least 1 per file).
    pub seconds: u64,
    /// Files measured.
    pub files: u64,
}

/// A webhook endpoint of a company ([`MetadataStore::create_webhook`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Webhook {
    /// Server-made UUID.
    pub id: String,
    /// Owner.
    pub company_id: String,
    /// Where deliveries are POSTed (`http://` or `https://`).
    pub url: String,
    /// Event types delivered (`file.complete`...); empty for every type.
    pub events: Vec<String>,
    /// The HMAC key deliveries are signed with.
    pub secret: String,
    /// Unix seconds when registered.
    pub created: i64,
}

/// One event for one endpoint, written by the database in the same
/// transaction as the file change it reports, and its delivery state.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WebhookDelivery {
    /// Increasing in the order events were written.
    pub id: u64,
    /// The endpoint.
    pub webhook_id: String,
    /// `file.uploaded`, `file.complete`, `file.error`, `file.rejected`,
    /// `file.retracted`, `file.cancelled`, `group.paused`, `group.resumed`
    /// or `group.cancelled`.
    pub event_type: String,
    /// The file the event is about; `group:<visitor group>` for a group's
    /// event (deliveries are ordered per endpoint and this key).
    pub file_id: String,
    /// The event as JSON (`type`, `file_id`, `visitor_group_id`,
    /// `status_code`, `occurred_at`).
    pub payload: String,
    /// Unix seconds when the event happened.
    pub created: i64,
    /// Attempts made so far.
    pub attempts: u32,
    /// Unix milliseconds before which no further attempt is made.
    pub next_attempt_ms: i64,
    /// Unix seconds of the attempt the endpoint answered 2xx.
    pub delivered_at: Option<i64>,
    /// HTTP status of the last attempt (`None`: no answer, or none yet).
    pub last_status: Option<u16>,
    /// Why the last attempt failed (`None` after a success).
    pub last_error: Option<String>,
    /// Duration of the last attempt.
    pub last_latency_ms: Option<u64>,
    /// True once retrying stopped without a success.
    pub given_up: bool,
}

/// A delivery claimed for sending, with its endpoint's URL and secret.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DueDelivery {
    /// The delivery.
    pub delivery: WebhookDelivery,
    /// The endpoint's URL.
    pub url: String,
    /// The endpoint's secret.
    pub secret: String,
}

/// The outcome of one delivery attempt
/// ([`MetadataStore::record_webhook_attempt`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeliveryAttempt {
    /// Unix seconds when the attempt ended.
    pub at: i64,
    /// The HTTP status answered, if any.
    pub status: Option<u16>,
    /// Why it failed; `None` for a success.
    pub error: Option<String>,
    /// How long it took.
    pub latency_ms: u64,
    /// True when the endpoint answered 2xx.
    pub delivered: bool,
    /// True when no further attempt will be made.
    pub given_up: bool,
    /// Unix milliseconds of the next attempt (ignored when delivered or
    /// given up).
    pub next_attempt_ms: i64,
}

/// One page of an endpoint's deliveries, newest first.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WebhookDeliveryPage {
    /// The deliveries.
    pub deliveries: Vec<WebhookDelivery>,
    /// Cursor of the next page; `None` on the last page.
    pub next_cursor: Option<String>,
}

/// Metadata of companies, clients, report suites and files.
///
/// The contract is the `conformance` suite (cargo feature `testsuite`).
#[async_trait]
pub trait MetadataStore: Send + Sync + 'static {
    /// Creates a company; [`StoreError::Conflict`] when the id exists.
    async fn create_company(
        &self,
        id: &str,
        salt: &str,
        settings: CompanySettings,
    ) -> StoreResult<Company>;
    /// One company.
    async fn get_company(&self, id: &str) -> StoreResult<Option<Company>>;
    /// All companies, by id.
    async fn list_companies(&self) -> StoreResult<Vec<Company>>;
    /// Replaces a company's settings.
    async fn update_company_settings(
        &self,
        id: &str,
        settings: CompanySettings,
    ) -> StoreResult<Company>;

    /// Creates a report suite of a company; [`StoreError::Conflict`] when
    /// the company already has that rsid, [`StoreError::NotFound`] for an
    /// unknown company. Other companies' suites play no part: the same rsid
    /// may exist in every company.
    async fn create_report_suite(
        &self,
        company_id: &str,
        rsid: &str,
        time_zone: &str,
    ) -> StoreResult<ReportSuite>;
    /// One report suite of a company (`None` when that company has no suite
    /// of that rsid, whatever other companies have).
    async fn get_report_suite(
        &self,
        company_id: &str,
        rsid: &str,
    ) -> StoreResult<Option<ReportSuite>>;
    /// Report suites of one company (or all), by (company, rsid).
    async fn list_report_suites(&self, company_id: Option<&str>) -> StoreResult<Vec<ReportSuite>>;
    /// Looks a report suite of `company_id` up for a writer and, when
    /// `create` is set and the company does not have it, creates it (time
    /// zone UTC). Only the company's own suites are looked at. Atomic: two
    /// claims of the same new rsid by one company get one `Created` and one
    /// `Owned`.
    async fn claim_report_suite(
        &self,
        company_id: &str,
        rsid: &str,
        create: bool,
    ) -> StoreResult<SuiteClaim>;
    /// Turns single hits on or off for a report suite of a company and
    /// returns the suite. [`StoreError::NotFound`] for a suite the company
    /// does not have; [`StoreError::Conflict`] when turning on an rsid
    /// whose single hits another company's suite already takes (the
    /// endpoint names only the rsid, so it must name one suite).
    async fn set_accept_single_hits(
        &self,
        company_id: &str,
        rsid: &str,
        accept: bool,
    ) -> StoreResult<ReportSuite>;
    /// Replaces a report suite's internal URL filters and returns the
    /// suite; [`StoreError::NotFound`] for a suite the company does not
    /// have. The filters are checked by the caller.
    async fn set_internal_url_filters(
        &self,
        company_id: &str,
        rsid: &str,
        filters: &[String],
    ) -> StoreResult<ReportSuite>;
    /// Replaces a report suite's eVar settings (the whole list) and
    /// returns the suite; [`StoreError::NotFound`] for a suite the company
    /// does not have. The settings are checked by the caller.
    async fn set_evar_settings(
        &self,
        company_id: &str,
        rsid: &str,
        settings: &[EvarSetting],
    ) -> StoreResult<ReportSuite>;
    /// The report suite that takes single hits for `rsid`, whichever
    /// company owns it; `None` when no suite of that rsid takes them.
    async fn single_hit_suite(&self, rsid: &str) -> StoreResult<Option<ReportSuite>>;

    /// Registers a client; [`StoreError::Conflict`] when the id exists.
    async fn create_client(&self, client: ApiClient) -> StoreResult<ApiClient>;
    /// One client.
    async fn get_client(&self, client_id: &str) -> StoreResult<Option<ApiClient>>;
    /// Clients of one company (or all), by id.
    async fn list_clients(&self, company_id: Option<&str>) -> StoreResult<Vec<ApiClient>>;
    /// Enables or disables a client. Disabling also moves its
    /// `token_generation` up by one, in the same write: tokens issued before
    /// the disable stay revoked when the client is enabled again.
    /// [`StoreError::NotFound`] for an unknown client.
    async fn set_client_disabled(&self, client_id: &str, disabled: bool) -> StoreResult<()>;
    /// Replaces a client's secret hash and moves its `token_generation` up
    /// by one, in one write (every token issued before is revoked); returns
    /// the client as stored. [`StoreError::NotFound`] for an unknown client.
    async fn rotate_client_secret(
        &self,
        client_id: &str,
        secret_hash: &str,
    ) -> StoreResult<ApiClient>;
    /// Remembers a service-account assertion (by its digest) until
    /// `keep_until` (unix seconds): true when it was not remembered yet (it
    /// is now), false when it was and its `keep_until` has not passed (a
    /// replay). Atomic: of two concurrent calls with one digest, one gets
    /// true. Entries whose `keep_until` is before `now` are forgotten, so
    /// what is kept is bounded by the assertions accepted within their
    /// lifetime.
    async fn remember_assertion(
        &self,
        digest: &str,
        keep_until: i64,
        now: i64,
    ) -> StoreResult<bool>;
    /// Registers (or clears) a client's public key.
    async fn set_client_public_key(&self, client_id: &str, pem: Option<&str>) -> StoreResult<()>;

    /// Stores a new file record, atomically with the idempotency check: when
    /// a non-`REJECTED` record of the same company already holds the key,
    /// nothing is stored and that record is returned. An `UPLOADED` record
    /// gets the next `group_seq` of its (company, visitor group).
    async fn commit_upload(&self, file: NewFile) -> StoreResult<CommitOutcome>;
    /// One file of one company.
    async fn get_file(&self, company_id: &str, file_id: &str) -> StoreResult<Option<FileRecord>>;
    /// The company a file belongs to, `None` for an unknown file id. Not
    /// for answering a caller (use [`MetadataStore::get_file`]): for
    /// maintenance that starts from a file id alone, such as moving a lake
    /// written before companies were part of its layout.
    async fn file_company(&self, file_id: &str) -> StoreResult<Option<String>>;
    /// The file a key points to for a company: the accepted one when there
    /// is one, else the latest `REJECTED` one.
    async fn find_by_key(&self, company_id: &str, key: &str) -> StoreResult<Option<FileRecord>>;
    /// The earliest accepted (not `REJECTED`) file of a company whose
    /// uploaded bytes have this SHA-256 (lower-case hex), if any.
    async fn find_by_content(
        &self,
        company_id: &str,
        content_sha256: &str,
    ) -> StoreResult<Option<FileRecord>>;
    /// Files of one company, newest first.
    async fn list_files(&self, company_id: &str, query: &FileQuery) -> StoreResult<FilePage>;
    /// Changes a file's status and processing dates (processing stage).
    async fn update_file_status(
        &self,
        file_id: &str,
        update: StatusUpdate,
    ) -> StoreResult<FileRecord>;
    /// Files still to process (`UPLOADED` or `PROCESSING`), of every
    /// company, in acceptance order (by commit; `group_seq` ascending within
    /// each (company, visitor group)).
    async fn pending_files(&self, limit: u32) -> StoreResult<Vec<FileRecord>>;
    /// Every blob key referenced by a record (staged files and reject
    /// reports): what a startup sweep must keep.
    async fn referenced_blob_keys(&self) -> StoreResult<Vec<String>>;
    /// True when the backend answers (readiness).
    async fn ping(&self) -> StoreResult<()>;
    /// Database calls waiting or running now (a load figure for
    /// readiness and metrics); 0 when the backend does not count them.
    fn queued_calls(&self) -> usize {
        0
    }

    /// Groups that have an `UPLOADED` file and neither a `PROCESSING` nor an
    /// `ERROR` one, ordered by their oldest waiting file; at most `limit`.
    async fn runnable_groups(&self, limit: u32) -> StoreResult<Vec<GroupRef>>;
    /// Atomically claims the next file of a group: the `UPLOADED` file with
    /// the lowest `group_seq` becomes `PROCESSING` with
    /// `processing_start_date = now`. `None` when the group has nothing
    /// waiting, already has a `PROCESSING` file, or is stopped by an `ERROR`.
    ///
    /// With a `lease`, only while it is current ([`StoreError::Fenced`]
    /// otherwise); `None` claims without a lease check (tools and tests).
    async fn claim_next_file(
        &self,
        group: &GroupRef,
        lease: Option<&GroupLease>,
        now: i64,
    ) -> StoreResult<Option<FileRecord>>;
    /// Stored visitor states of one company for `keys` ((report suite,
    /// visitor key) pairs), answered in the same order; `None` for a
    /// visitor never committed.
    async fn visitor_states(
        &self,
        company_id: &str,
        keys: Vec<(String, String)>,
    ) -> StoreResult<Vec<Option<VisitState>>>;
    /// [`MetadataStore::visitor_states`] of `states` and
    /// [`MetadataStore::seen_ids`] of `seen` (the two lookups of each batch
    /// of hits a processing worker reads), in one call where the backend
    /// can; either list may be empty (its answer is then empty, with no
    /// query).
    async fn lookups(
        &self,
        company_id: &str,
        states: Vec<(String, String)>,
        seen: Vec<SeenId>,
    ) -> StoreResult<(Vec<Option<VisitState>>, Vec<bool>)> {
        let found = if states.is_empty() {
            Vec::new()
        } else {
            self.visitor_states(company_id, states).await?
        };
        let counted = if seen.is_empty() {
            Vec::new()
        } else {
            self.seen_ids(company_id, seen).await?
        };
        Ok((found, counted))
    }
    /// Hits a processing worker reads between two lookups
    /// ([`MetadataStore::visitor_states`], [`MetadataStore::seen_ids`]).
    /// A lookup costs a call; a larger batch of hits has left the CPU cache
    /// by the time it is enriched (each hit is read again then), which on
    /// one machine costs more than the calls saved. The default suits a
    /// database across a network, where a call is a round trip.
    fn lookup_batch(&self) -> usize {
        1_024
    }
    /// Whether each of `keys` (report suite, kind, id) was counted in one
    /// of the company's completed files (stored by
    /// [`MetadataStore::complete_file`] from `delta.seen`), answered in the
    /// same order. Other companies' IDs are never seen.
    async fn seen_ids(&self, company_id: &str, keys: Vec<SeenId>) -> StoreResult<Vec<bool>>;
    /// One transaction: a `PROCESSING` file becomes `COMPLETE` with its
    /// dates and final log, every entry of `completion.delta` is stored
    /// as the new state of its visitor (its eVars included), and every ID
    /// of `completion.delta.seen` is remembered (in the file's company).
    /// [`StoreError::Conflict`] when the file is not `PROCESSING`.
    async fn complete_file(&self, file_id: &str, completion: Completion)
        -> StoreResult<FileRecord>;
    /// A `PROCESSING` file becomes `ERROR` with `reason` (and its `code`),
    /// `processing_end_date = now`, and the reason appended to its log; its
    /// group stops. [`StoreError::Conflict`] when the file is not `PROCESSING`;
    /// with a `lease`, [`StoreError::Fenced`] when it is not current.
    async fn fail_file(
        &self,
        file_id: &str,
        reason: &str,
        code: &str,
        now: i64,
        lease: Option<&GroupLease>,
    ) -> StoreResult<FileRecord>;
    /// Restarts a stopped group: its `ERROR` files become `UPLOADED` again
    /// (error and processing dates cleared). Returns how many.
    async fn retry_group(&self, group: &GroupRef) -> StoreResult<u64>;
    /// Start of a single node (the embedded database, which one server
    /// holds): every `PROCESSING` file becomes `UPLOADED` again (its
    /// processing start cleared) and every group lease is released.
    /// Returns how many files. Never called with shared metadata, where
    /// other nodes' runs are live: expired leases are taken over instead
    /// ([`MetadataStore::claim_groups`]).
    async fn requeue_processing(&self) -> StoreResult<u64>;
    /// One `PROCESSING` file becomes `UPLOADED` again, first in its group
    /// as before (a run stopped by a condition that passes, such as a full
    /// disk). False when the file was not `PROCESSING`; with a `lease`,
    /// [`StoreError::Fenced`] when it is not current.
    async fn requeue_file(&self, file_id: &str, lease: Option<&GroupLease>) -> StoreResult<bool>;

    /// Claims leases on at most `limit` groups for `node_id`, for
    /// `lease_ms` on the database clock, in one transaction: groups that
    /// have an `UPLOADED` or `PROCESSING` file and no `ERROR` file, whose
    /// lease is free (never claimed, released, or expired), least recently
    /// held first (never claimed, then by the time the lease ended), then
    /// oldest waiting file: with leases released after each file, a round
    /// robin over every waiting group of every node. Each claim moves the group's epoch up by one, records a
    /// [`LeaseClaim`], and returns the group's `PROCESSING` files (a run
    /// of the lease before, now void) to `UPLOADED`. Concurrent callers
    /// (other nodes) never get the same group: a group is claimed by one
    /// of them, the others skip it.
    async fn claim_groups(
        &self,
        node_id: &str,
        limit: u32,
        lease_ms: u64,
    ) -> StoreResult<Vec<GroupLease>>;
    /// Heartbeat: extends each lease still current (same node and epoch)
    /// to `lease_ms` from now (database clock). Answers, in order, whether
    /// each was extended; a lease that was taken over is lost for good.
    async fn renew_leases(&self, leases: &[GroupLease], lease_ms: u64) -> StoreResult<Vec<bool>>;
    /// Gives a lease up (its group is free for any node at once). False
    /// when it was not current.
    async fn release_lease(&self, lease: &GroupLease) -> StoreResult<bool>;
    /// Releases every lease `node_id` holds (a node starting again under
    /// the same id: its former runs are dead). Returns how many.
    async fn release_node_leases(&self, node_id: &str) -> StoreResult<u64>;
    /// Every claim of a group's lease, by epoch.
    async fn lease_claims(&self, group: &GroupRef) -> StoreResult<Vec<LeaseClaim>>;
    /// A secret shared by every node (the token signing key): the stored
    /// value of `name`, storing `candidate` first when there is none.
    /// Atomic: of two nodes starting at once with different candidates,
    /// both get the same value.
    async fn shared_secret(&self, name: &str, candidate: &str) -> StoreResult<String>;
    /// Node heartbeat: records that `node_id` is alive for `ttl_ms`
    /// (database clock) and answers how many nodes are alive now,
    /// including it (rate limits are shared among them).
    async fn node_heartbeat(&self, node_id: &str, ttl_ms: u64) -> StoreResult<u32>;
    /// Deletes the stored visitor states of one company for `keys`
    /// ((report suite, visitor key) pairs, as in
    /// [`MetadataStore::visitor_states`]), in one transaction; returns how
    /// many existed. The next hit of such a visitor starts visit 1, as for
    /// a visitor never seen.
    async fn delete_visitor_states(
        &self,
        company_id: &str,
        keys: Vec<(String, String)>,
    ) -> StoreResult<u64>;
    /// Records that a `COMPLETE` file's hits were removed from the lake:
    /// `hits_retracted_at = now`, `hits_retracted = hits`, and a line
    /// appended to its processing log saying when and how many. Idempotent:
    /// a file already retracted is returned unchanged.
    /// [`StoreError::NotFound`] for an unknown file or another company's,
    /// [`StoreError::Conflict`] when the file is not `COMPLETE`.
    async fn mark_hits_retracted(
        &self,
        company_id: &str,
        file_id: &str,
        hits: u64,
        now: i64,
    ) -> StoreResult<FileRecord>;
    /// Appends a privacy deletion to the audit trail; returns it with its id.
    async fn record_privacy_deletion(
        &self,
        deletion: NewPrivacyDeletion,
    ) -> StoreResult<PrivacyDeletion>;
    /// Privacy deletions of one company, newest first.
    /// [`StoreError::Invalid`] for a cursor the store did not make.
    async fn list_privacy_deletions(
        &self,
        company_id: &str,
        query: &PageQuery,
    ) -> StoreResult<PrivacyDeletionPage>;
    /// Stored visitor states of one company, ordered by (report suite,
    /// visitor key), after `after` (exclusive), at most `limit` (an export
    /// and test aid).
    async fn list_visitor_states(
        &self,
        company_id: &str,
        after: Option<(String, String)>,
        limit: u32,
    ) -> StoreResult<Vec<StoredState>>;

    /// Applies an operator's action to a group, in one transaction, and
    /// records it (every call is recorded, also one that changes nothing,
    /// such as pausing a paused group). `Pause`: the group becomes
    /// `paused` (no claim takes its files; a `PROCESSING` file finishes).
    /// `Resume`: `active`. `Cancel`: every `UPLOADED` file of the group,
    /// and every `ERROR` file (which holds the group stopped), becomes
    /// `CANCELLED` with the error code [`GROUP_CANCELLED`], the reason and
    /// a log line naming `actor` and the time; the group becomes `active`,
    /// so later uploads run. Returns the recorded action (`files`: how
    /// many were cancelled). [`StoreError::NotFound`] for a group the
    /// company never used (no file record and no earlier action).
    async fn control_group(
        &self,
        group: &GroupRef,
        action: GroupAction,
        actor: &str,
        now: i64,
    ) -> StoreResult<GroupActionRecord>;
    /// A group's state, waiting files and rows, file in progress, latest
    /// `ERROR` file and latest actions; `None` for a group the company
    /// never used.
    async fn group_info(&self, group: &GroupRef) -> StoreResult<Option<GroupInfo>>;
    /// The queue places of the `UPLOADED` files among `file_ids` in their
    /// group, with the group's state: one query for the group whatever the
    /// number of files.
    async fn group_queue(&self, group: &GroupRef, file_ids: &[String]) -> StoreResult<GroupQueue>;
    /// The processing rate of a company over its latest `recent`
    /// `COMPLETE` files (by processing end) that have both processing
    /// dates; `None` when there is none.
    async fn processing_rate(
        &self,
        company_id: &str,
        recent: u32,
    ) -> StoreResult<Option<ProcessingRate>>;

    /// Registers a webhook endpoint. [`StoreError::NotFound`] for an
    /// unknown company.
    async fn create_webhook(&self, webhook: Webhook) -> StoreResult<Webhook>;
    /// One endpoint of a company; `None` for an unknown id or another
    /// company's.
    async fn get_webhook(&self, company_id: &str, id: &str) -> StoreResult<Option<Webhook>>;
    /// The endpoints of a company, oldest first.
    async fn list_webhooks(&self, company_id: &str) -> StoreResult<Vec<Webhook>>;
    /// Removes an endpoint and its deliveries (pending ones are not sent);
    /// false for an unknown id or another company's.
    async fn delete_webhook(&self, company_id: &str, id: &str) -> StoreResult<bool>;
    /// Deliveries of one endpoint of a company, newest first (empty for an
    /// unknown endpoint or another company's). [`StoreError::Invalid`] for
    /// a cursor the store did not make.
    async fn list_webhook_deliveries(
        &self,
        company_id: &str,
        webhook_id: &str,
        query: &PageQuery,
    ) -> StoreResult<WebhookDeliveryPage>;
    /// Claims up to `limit` deliveries due at `now_ms` (not delivered, not
    /// given up, `next_attempt_ms <= now_ms`, not claimed by anyone until
    /// after `now_ms`) for `claim_ms`, oldest first, and never one whose
    /// endpoint still has an earlier pending delivery of the same file (in
    /// order per endpoint and file). Two callers never get the same
    /// delivery while its claim lasts.
    async fn claim_webhook_deliveries(
        &self,
        now_ms: i64,
        claim_ms: i64,
        limit: u32,
    ) -> StoreResult<Vec<DueDelivery>>;
    /// Records an attempt of a claimed delivery and releases the claim;
    /// false when the delivery is gone (its endpoint was deleted).
    async fn record_webhook_attempt(&self, id: u64, attempt: DeliveryAttempt) -> StoreResult<bool>;
    /// Deletes up to `limit` settled deliveries (delivered or given up)
    /// of events before `before` (unix seconds), oldest first; returns how
    /// many. Pending deliveries are never deleted.
    async fn prune_webhook_deliveries(&self, before: i64, limit: u32) -> StoreResult<u64>;
}

/// The reason a group cancel gives its files.
pub fn cancel_reason(actor: &str, at: i64) -> String {
    format!(
        "Group cancelled by {actor} at {}: the file was not processed.",
        bdia_wire::time::rfc3339_utc(at)
    )
}

/// The line appended to a file's processing log when processing fails;
/// [`upload_log`] cuts the log there.
pub const FAILURE_PREFIX: &str = "Processing failed: ";

/// The line appended to a file's processing log when its hits are
/// retracted ([`MetadataStore::mark_hits_retracted`]); `at` is unix seconds.
pub fn retraction_note(at: i64, hits: u64) -> String {
    format!(
        "Hits retracted at {}: {hits} hits removed from the lake.",
        bdia_wire::time::rfc3339_utc(at)
    )
}

/// The upload part of a processing log: everything before the first
/// failure note left by an earlier attempt.
pub fn upload_log(log: &str) -> &str {
    match log.find(&format!("\n{FAILURE_PREFIX}")) {
        Some(i) => &log[..i],
        None if log.starts_with(FAILURE_PREFIX) => "",
        None => log,
    }
}
