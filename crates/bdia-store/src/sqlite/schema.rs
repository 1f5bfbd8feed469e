//! The SQLite schema and its versioned migrations.
//!
//! The schema version lives in the database header (`PRAGMA user_version`).
//! Version `n` is reached by applying the first `n` entries of
//! [`MIGRATIONS`] in order; [`SCHEMA_VERSION`] is their count, the version
//! this build writes.
//!
//! Rules:
//!
//! - A released migration is never edited: a schema change is a new entry
//!   at the end (e.g. `ALTER TABLE`, a new index, a data fix), which moves
//!   [`SCHEMA_VERSION`] up by one. Older databases are brought forward at
//!   open, in order.
//! - Version 1 is the schema of the releases that predate versioning, in
//!   `CREATE ... IF NOT EXISTS` form: such a database (`user_version` 0, the
//!   tables present) is stamped 1 without any change to its data; an empty
//!   file gets the tables.
//! - [`migrate`] runs every pending migration and the new `user_version` in
//!   one `IMMEDIATE` transaction, re-reading the version inside it: a crash
//!   leaves the old version and data, and two processes opening the same
//!   database at once (a server and `bdia admin`) migrate it once.
//! - A database whose version is above [`SCHEMA_VERSION`] was written by a
//!   newer release: it is refused ([`StoreError::SchemaTooNew`]) before
//!   anything is read or written, since this build cannot know what the
//!   newer schema means.
//! - Migration SQL is frozen text, so it spells file statuses as the
//!   literals stored in `files.status` ([`FileStatus::as_str`]); a unit test
//!   checks that the spelling in the `files_key` index still matches.

use rusqlite::{Connection, TransactionBehavior};

use super::db;
#[cfg(doc)]
use crate::FileStatus;
use crate::{StoreError, StoreResult};

/// Version 1: companies, report suites, clients, files and visitor states.
///
/// Invariants enforced by the schema itself (so that they hold across
/// processes):
/// - `files_key`: one non-`REJECTED` record per (company, idempotency key);
/// - `files_group_seq`: one record per (company, visitor group, group_seq);
/// - report suite ids and client ids are unique across companies (report
///   suites are per company from version 2 on).
const V1: &str = r#"
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

/// Version 2: token revocation and JWT replay memory.
///
/// - `clients.token_generation`: access tokens carry the generation they
///   were issued under; rotating the secret or disabling the client moves
///   it up, which revokes every token issued before. Existing clients start
///   at 0, the generation that tokens of older releases (which carry none)
///   are read as, so an upgrade revokes nothing.
/// - `jwt_assertions`: the SHA-256 (hex) of every service-account JWT
///   exchanged, kept until the assertion could no longer be accepted
///   (`keep_until`, its `exp` plus the leeway), so that one cannot be
///   exchanged twice, also across restarts. Expired rows are deleted as new
///   ones are stored.
const V2_TOKEN_REVOCATION: &str = r#"
ALTER TABLE clients ADD COLUMN token_generation INTEGER NOT NULL DEFAULT 0;
CREATE TABLE jwt_assertions (
    digest TEXT PRIMARY KEY,
    keep_until INTEGER NOT NULL
) WITHOUT ROWID;
CREATE INDEX jwt_assertions_keep_until ON jwt_assertions(keep_until);
"#;

/// Version 3: report suites belong to their company. The key of
/// `report_suites` becomes (company, rsid), so two companies may each have
/// a suite of the same ID and neither can see, claim or block the other's.
/// Every existing suite stays with the company that owned it (the rows are
/// copied as they are; before this version an rsid had one owner, so the new
/// key holds). `visitor_states` is already keyed by company.
const V3_SUITES_PER_COMPANY: &str = r#"
CREATE TABLE report_suites_v2 (
    company_id TEXT NOT NULL REFERENCES companies(id),
    rsid TEXT NOT NULL,
    time_zone TEXT NOT NULL,
    created INTEGER NOT NULL,
    PRIMARY KEY (company_id, rsid)
) WITHOUT ROWID;
INSERT INTO report_suites_v2 (company_id, rsid, time_zone, created)
    SELECT company_id, rsid, time_zone, created FROM report_suites;
DROP TABLE report_suites;
ALTER TABLE report_suites_v2 RENAME TO report_suites;
"#;

/// Version 4: reject reports are capped; `files.rejects_kept` is how many
/// invalid rows a file's report lists (NULL for records written before:
/// their report lists every invalid row).
const V4_REJECTS_KEPT: &str = "ALTER TABLE files ADD COLUMN rejects_kept INTEGER;";

/// Version 5: retraction and privacy deletion.
///
/// - `files.hits_retracted_at`, `files.hits_retracted`: when a `COMPLETE`
///   file's hits were removed from the lake, and how many (NULL while they
///   count, and for every record written before).
/// - `privacy_deletions`: the audit trail of privacy deletions, one row per
///   request carried out, never changed afterwards. The identifier is kept
///   only as its SHA-256 (`identifier_sha256`, hex): the row proves the
///   request without keeping the personal data it named.
const V5_RETRACTION_AND_PRIVACY: &str = r#"
ALTER TABLE files ADD COLUMN hits_retracted_at INTEGER;
ALTER TABLE files ADD COLUMN hits_retracted INTEGER;
CREATE TABLE privacy_deletions (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    company_id TEXT NOT NULL REFERENCES companies(id),
    requested_by TEXT NOT NULL,
    requested_at INTEGER NOT NULL,
    identifier_type TEXT NOT NULL,
    customer_id_type TEXT,
    identifier_sha256 TEXT NOT NULL,
    hits_removed INTEGER NOT NULL,
    visitors INTEGER NOT NULL,
    table_version INTEGER
);
CREATE INDEX privacy_deletions_company ON privacy_deletions(company_id, id);
"#;

/// Version 6: visitor-group leases (several processing nodes, or one node
/// that restarts), shared secrets and node heartbeats.
///
/// - `group_leases`: one row per group ever claimed: its holder (`node_id`,
///   NULL once released), `epoch` (up by one per claim) and `expires_ms`
///   (unix milliseconds, database clock).
/// - `lease_claims`: every claim, kept (`previous_expires_ms`: when the
///   lease before it had expired or been released).
/// - `files.processed_by`, `files.lease_epoch`: the node and lease epoch
///   whose run committed the file `COMPLETE`.
/// - `shared_secrets`: values every node must share (the token signing
///   key).
/// - `nodes`: node heartbeats (`expires_ms`).
const V6_LEASES: &str = r#"
CREATE TABLE group_leases (
    company_id TEXT NOT NULL,
    visitor_group_id TEXT NOT NULL,
    node_id TEXT,
    epoch INTEGER NOT NULL,
    expires_ms INTEGER NOT NULL,
    PRIMARY KEY (company_id, visitor_group_id)
);
CREATE TABLE lease_claims (
    company_id TEXT NOT NULL,
    visitor_group_id TEXT NOT NULL,
    epoch INTEGER NOT NULL,
    node_id TEXT NOT NULL,
    claimed_ms INTEGER NOT NULL,
    previous_expires_ms INTEGER,
    PRIMARY KEY (company_id, visitor_group_id, epoch)
);
ALTER TABLE files ADD COLUMN processed_by TEXT;
ALTER TABLE files ADD COLUMN lease_epoch INTEGER;
CREATE TABLE shared_secrets (
    name TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
CREATE TABLE nodes (
    node_id TEXT PRIMARY KEY,
    expires_ms INTEGER NOT NULL
);
"#;

/// Version 7: the SHA-256 of each accepted upload's bytes (duplicate
/// content under another idempotency key is flagged), and the earlier file
/// a duplicate repeats.
const V7_CONTENT_HASH: &str = r#"
ALTER TABLE files ADD COLUMN content_sha256 TEXT;
ALTER TABLE files ADD COLUMN duplicate_of TEXT;
CREATE INDEX files_content ON files(company_id, content_sha256) WHERE content_sha256 IS NOT NULL;
"#;

/// Version 8: group control.
///
/// - `group_controls`: one row per (company, visitor group) that an
///   operator acted on; `paused` = 1 holds the group (no claim takes its
///   files). A group without a row is active.
/// - `group_actions`: every pause, resume and cancel, kept (who, when,
///   files changed).
/// - `files_company_status_end`: a company's latest `COMPLETE` files, for
///   its measured processing rate.
const V8_GROUP_CONTROL: &str = r#"
CREATE TABLE group_controls (
    company_id TEXT NOT NULL,
    visitor_group_id TEXT NOT NULL,
    paused INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (company_id, visitor_group_id)
);
CREATE TABLE group_actions (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    company_id TEXT NOT NULL,
    visitor_group_id TEXT NOT NULL,
    action TEXT NOT NULL,
    actor TEXT NOT NULL,
    at INTEGER NOT NULL,
    files INTEGER NOT NULL
);
CREATE INDEX group_actions_group ON group_actions(company_id, visitor_group_id, id);
CREATE INDEX files_company_status_end ON files(company_id, status, processing_end_date);
"#;

/// Version 9: webhooks.
///
/// - `webhooks`: a company's endpoints; `events` is a JSON array of event
///   types (empty: every type).
/// - `webhook_deliveries`: one row per (event, endpoint), written by the
///   triggers on `files` below in the same transaction as the change they
///   report, so that no event is lost by a crash and every node sees it.
///   `next_attempt_ms` and `claimed_until_ms` are unix milliseconds;
///   `payload` is the JSON body without the delivery id.
/// - Triggers: a new record `UPLOADED` (`file.uploaded`) or `REJECTED`
///   (`file.rejected`); a status change to `COMPLETE` (`file.complete`) or
///   `ERROR` (`file.error`); `hits_retracted_at` set (`file.retracted`).
const V9_WEBHOOKS: &str = r#"
CREATE TABLE webhooks (
    id TEXT PRIMARY KEY,
    company_id TEXT NOT NULL REFERENCES companies(id),
    url TEXT NOT NULL,
    events TEXT NOT NULL,
    secret TEXT NOT NULL,
    created INTEGER NOT NULL
);
CREATE INDEX webhooks_company ON webhooks(company_id, created);
CREATE TABLE webhook_deliveries (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    webhook_id TEXT NOT NULL REFERENCES webhooks(id) ON DELETE CASCADE,
    event_type TEXT NOT NULL,
    file_id TEXT NOT NULL,
    payload TEXT NOT NULL,
    created INTEGER NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    next_attempt_ms INTEGER NOT NULL DEFAULT 0,
    claimed_until_ms INTEGER NOT NULL DEFAULT 0,
    delivered_at INTEGER,
    last_status INTEGER,
    last_error TEXT,
    last_latency_ms INTEGER,
    given_up INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX webhook_deliveries_pending ON webhook_deliveries(next_attempt_ms, id)
    WHERE delivered_at IS NULL AND given_up = 0;
CREATE INDEX webhook_deliveries_file ON webhook_deliveries(webhook_id, file_id, id);
CREATE TRIGGER files_webhook_insert AFTER INSERT ON files
WHEN NEW.status IN ('UPLOADED', 'REJECTED')
BEGIN
    INSERT INTO webhook_deliveries (webhook_id, event_type, file_id, payload, created)
    SELECT w.id, e.t, NEW.file_id,
           json_object('type', e.t, 'file_id', NEW.file_id,
                       'visitor_group_id', NEW.visitor_group_id,
                       'status_code', NEW.status,
                       'occurred_at', CAST(strftime('%s', 'now') AS INTEGER)),
           CAST(strftime('%s', 'now') AS INTEGER)
    FROM webhooks w,
         (SELECT CASE NEW.status WHEN 'UPLOADED' THEN 'file.uploaded'
                 ELSE 'file.rejected' END AS t) e
    WHERE w.company_id = NEW.company_id
      AND (json_array_length(w.events) = 0
           OR EXISTS (SELECT 1 FROM json_each(w.events) j WHERE j.value = e.t));
END;
CREATE TRIGGER files_webhook_status AFTER UPDATE OF status ON files
WHEN NEW.status <> OLD.status AND NEW.status IN ('COMPLETE', 'ERROR')
BEGIN
    INSERT INTO webhook_deliveries (webhook_id, event_type, file_id, payload, created)
    SELECT w.id, e.t, NEW.file_id,
           json_object('type', e.t, 'file_id', NEW.file_id,
                       'visitor_group_id', NEW.visitor_group_id,
                       'status_code', NEW.status,
                       'occurred_at', CAST(strftime('%s', 'now') AS INTEGER)),
           CAST(strftime('%s', 'now') AS INTEGER)
    FROM webhooks w,
         (SELECT CASE NEW.status WHEN 'COMPLETE' THEN 'file.complete'
                 ELSE 'file.error' END AS t) e
    WHERE w.company_id = NEW.company_id
      AND (json_array_length(w.events) = 0
           OR EXISTS (SELECT 1 FROM json_each(w.events) j WHERE j.value = e.t));
END;
CREATE TRIGGER files_webhook_retracted AFTER UPDATE OF hits_retracted_at ON files
WHEN OLD.hits_retracted_at IS NULL AND NEW.hits_retracted_at IS NOT NULL
BEGIN
    INSERT INTO webhook_deliveries (webhook_id, event_type, file_id, payload, created)
    SELECT w.id, 'file.retracted', NEW.file_id,
           json_object('type', 'file.retracted', 'file_id', NEW.file_id,
                       'visitor_group_id', NEW.visitor_group_id,
                       'status_code', NEW.status,
                       'occurred_at', NEW.hits_retracted_at),
           NEW.hits_retracted_at
    FROM webhooks w
    WHERE w.company_id = NEW.company_id
      AND (json_array_length(w.events) = 0
           OR EXISTS (SELECT 1 FROM json_each(w.events) j
                      WHERE j.value = 'file.retracted'));
END;
"#;

/// Version 10: webhook events of group control and of cancelled files.
///
/// - `file.cancelled`: a file's status became `CANCELLED` (its group was
///   cancelled).
/// - `group.paused`, `group.resumed`, `group.cancelled`: an action was
///   recorded in `group_actions`. Their deliveries are ordered per group
///   (`file_id` of the delivery row is `group:<visitor group>`; the body's
///   `file_id` is null and `status_code` is the group's state).
const V10_GROUP_WEBHOOKS: &str = r#"
CREATE TRIGGER files_webhook_cancelled AFTER UPDATE OF status ON files
WHEN NEW.status <> OLD.status AND NEW.status = 'CANCELLED'
BEGIN
    INSERT INTO webhook_deliveries (webhook_id, event_type, file_id, payload, created)
    SELECT w.id, 'file.cancelled', NEW.file_id,
           json_object('type', 'file.cancelled', 'file_id', NEW.file_id,
                       'visitor_group_id', NEW.visitor_group_id,
                       'status_code', NEW.status,
                       'occurred_at', CAST(strftime('%s', 'now') AS INTEGER)),
           CAST(strftime('%s', 'now') AS INTEGER)
    FROM webhooks w
    WHERE w.company_id = NEW.company_id
      AND (json_array_length(w.events) = 0
           OR EXISTS (SELECT 1 FROM json_each(w.events) j
                      WHERE j.value = 'file.cancelled'));
END;
CREATE TRIGGER group_actions_webhook AFTER INSERT ON group_actions
BEGIN
    INSERT INTO webhook_deliveries (webhook_id, event_type, file_id, payload, created)
    SELECT w.id, e.t, 'group:' || NEW.visitor_group_id,
           json_object('type', e.t, 'file_id', NULL,
                       'visitor_group_id', NEW.visitor_group_id,
                       'status_code', CASE NEW.action WHEN 'pause' THEN 'PAUSED'
                                      ELSE 'ACTIVE' END,
                       'occurred_at', NEW.at, 'actor', NEW.actor, 'files', NEW.files),
           NEW.at
    FROM webhooks w,
         (SELECT CASE NEW.action WHEN 'pause' THEN 'group.paused'
                 WHEN 'resume' THEN 'group.resumed' ELSE 'group.cancelled' END AS t) e
    WHERE w.company_id = NEW.company_id
      AND (json_array_length(w.events) = 0
           OR EXISTS (SELECT 1 FROM json_each(w.events) j WHERE j.value = e.t));
END;
"#;

/// Report suites that take single hits (`/b/ss/...`): off by default, and
/// at most one suite per rsid across companies has it on.
const V11_SINGLE_HITS: &str = r#"
ALTER TABLE report_suites ADD COLUMN accept_single_hits INTEGER NOT NULL DEFAULT 0;
CREATE UNIQUE INDEX report_suites_single_hits ON report_suites(rsid)
    WHERE accept_single_hits = 1;
"#;

/// Report suites' internal URL filters (a JSON array of strings).
const V12_INTERNAL_URL_FILTERS: &str = r#"
ALTER TABLE report_suites ADD COLUMN internal_url_filters TEXT NOT NULL DEFAULT '[]';
"#;

/// Version 13: eVars and IDs counted once.
///
/// - `visitor_states.evars`: the visitor's live eVar values (JSON list,
///   `NULL` for none; rows of older versions have none).
/// - `seen_ids`: the serials of serialized events and the purchase IDs
///   each (company, report suite) has counted, written by the completion
///   of the file that counted them.
/// - `report_suites.evar_settings`: eVar expiration and allocation (a JSON
///   list; empty: every eVar has the defaults).
const V13_EVARS_AND_SEEN_IDS: &str = r#"
ALTER TABLE visitor_states ADD COLUMN evars TEXT;
CREATE TABLE seen_ids (
    company_id TEXT NOT NULL,
    report_suite TEXT NOT NULL,
    kind TEXT NOT NULL,
    id TEXT NOT NULL,
    PRIMARY KEY (company_id, report_suite, kind, id)
) WITHOUT ROWID;
ALTER TABLE report_suites ADD COLUMN evar_settings TEXT NOT NULL DEFAULT '[]';
"#;

/// The migrations, in order: entry `i` takes a database from version `i` to
/// version `i + 1`. Append only.
const MIGRATIONS: &[&str] = &[
    V1,
    V2_TOKEN_REVOCATION,
    V3_SUITES_PER_COMPANY,
    V4_REJECTS_KEPT,
    V5_RETRACTION_AND_PRIVACY,
    V6_LEASES,
    V7_CONTENT_HASH,
    V8_GROUP_CONTROL,
    V9_WEBHOOKS,
    V10_GROUP_WEBHOOKS,
    V11_SINGLE_HITS,
    V12_INTERNAL_URL_FILTERS,
    V13_EVARS_AND_SEEN_IDS,
];

/// The schema version this build writes and the highest one it opens.
pub const SCHEMA_VERSION: i64 = MIGRATIONS.len() as i64;

/// The schema version stored in a database (`PRAGMA user_version`).
pub fn schema_version(conn: &Connection) -> StoreResult<i64> {
    conn.query_row("PRAGMA user_version", [], |r| r.get(0))
        .map_err(db("read the schema version"))
}

/// Refuses a version this build does not know.
fn check_known(found: i64) -> StoreResult<()> {
    if found > SCHEMA_VERSION {
        return Err(StoreError::SchemaTooNew {
            found,
            supported: SCHEMA_VERSION,
        });
    }
    Ok(())
}

/// Brings the database to [`SCHEMA_VERSION`]; returns the version it had.
///
/// Refuses ([`StoreError::SchemaTooNew`]) a database of a newer release
/// without writing to it.
pub(super) fn migrate(conn: &mut Connection) -> StoreResult<i64> {
    // Read outside a transaction first: a newer database is refused without
    // taking the write lock, and an up-to-date one opens without it.
    let found = schema_version(conn)?;
    check_known(found)?;
    if found == SCHEMA_VERSION {
        return Ok(found);
    }
    let tx = conn
        .transaction_with_behavior(TransactionBehavior::Immediate)
        .map_err(db("begin the schema migration"))?;
    // Another process may have migrated between the read and the lock.
    let found = schema_version(&tx)?;
    check_known(found)?;
    for (i, sql) in MIGRATIONS.iter().enumerate().skip(found as usize) {
        tx.execute_batch(sql).map_err(|e| {
            StoreError::backend(format!("migrate the schema to version {}", i + 1), e)
        })?;
    }
    // `PRAGMA` takes no bound parameters; the value is our own constant.
    tx.execute_batch(&format!("PRAGMA user_version = {SCHEMA_VERSION}"))
        .map_err(db("stamp the schema version"))?;
    tx.commit().map_err(db("commit the schema migration"))?;
    Ok(found)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::FileStatus;

    #[test]
    fn the_key_index_spells_rejected_as_stored() {
        let term = format!("WHERE status <> '{}'", FileStatus::Rejected.as_str());
        assert!(V1.contains(&term), "files_key must exclude {term}");
    }

    #[test]
    fn a_fresh_database_gets_the_current_version() {
        let mut conn = Connection::open_in_memory().unwrap();
        assert_eq!(migrate(&mut conn).unwrap(), 0);
        assert_eq!(schema_version(&conn).unwrap(), SCHEMA_VERSION);
        // Opening again changes nothing.
        assert_eq!(migrate(&mut conn).unwrap(), SCHEMA_VERSION);
    }

    #[test]
    fn a_newer_version_is_refused_untouched() {
        let mut conn = Connection::open_in_memory().unwrap();
        conn.execute_batch(&format!("PRAGMA user_version = {}", SCHEMA_VERSION + 1))
            .unwrap();
        let err = migrate(&mut conn).unwrap_err();
        assert!(
            matches!(err, StoreError::SchemaTooNew { found, supported }
                if found == SCHEMA_VERSION + 1 && supported == SCHEMA_VERSION),
            "{err}"
        );
        let tables: i64 = conn
            .query_row("SELECT COUNT(*) FROM sqlite_master", [], |r| r.get(0))
            .unwrap();
        assert_eq!(tables, 0, "nothing may be created in a newer database");
    }
}
