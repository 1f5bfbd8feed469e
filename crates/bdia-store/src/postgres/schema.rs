//! The PostgreSQL schema and its versioned migrations.
//!
//! Applied versions are rows of `schema_migrations(version, applied_at)`.
//! Version `n` is reached by applying the first `n` entries of
//! `MIGRATIONS` in order; [`SCHEMA_VERSION`] is their count, the version
//! this build writes. (These versions are this backend's own; they do not
//! follow the SQLite backend's numbering.)
//!
//! Rules:
//!
//! - A released migration is never edited: a change is a new entry at the
//!   end.
//! - `migrate` runs under the session advisory lock [`MIGRATION_LOCK`]:
//!   nodes starting at once against one database wait for each other, and
//!   the first one applies what is missing; the others then find every
//!   version applied. Each migration runs in its own transaction together
//!   with its `schema_migrations` row, so a crash leaves each migration
//!   either applied and recorded or neither.
//! - A database whose highest version is above [`SCHEMA_VERSION`] was
//!   written by a newer release: it is refused
//!   ([`StoreError::SchemaTooNew`]) without any change.
//! - Migration SQL is frozen text and spells file statuses as stored
//!   ([`FileStatus::as_str`]); a unit test checks the `files_key` index.
//!
//! Version 1 is the schema of the SQLite backend at its version 5, with
//! PostgreSQL types (`BIGINT` for integers and unix seconds, `BOOLEAN`,
//! `JSONB` for company settings, identity columns for `files.seq` and
//! `privacy_deletions.id`), the same indexes, and `visitor_groups`: the last
//! `group_seq` handed out per (company, visitor group), whose row lock
//! orders the upload commits of one group (SQLite computes
//! `MAX(group_seq) + 1` under its single writer instead). Text keys that
//! listings are ordered by use the `C` collation, so they sort by bytes as
//! in SQLite whatever the database's locale.

use tokio_postgres::Client;

use super::db;
#[cfg(doc)]
use crate::FileStatus;
use crate::{StoreError, StoreResult};

/// The key of the advisory lock held while migrating (`bdia` schema).
pub const MIGRATION_LOCK: i64 = 0x6264_6961_5343_484d;

/// Version 1: the schema equivalent to the SQLite backend's version 5.
///
/// Invariants enforced by the schema itself:
/// - `files_key`: one non-`REJECTED` record per (company, idempotency key);
/// - `files_group_seq`: one record per (company, visitor group, group_seq);
/// - client ids are unique; report suites are keyed by (company, rsid).
const V1: &str = r#"
CREATE TABLE companies (
    id TEXT COLLATE "C" PRIMARY KEY,
    salt TEXT NOT NULL,
    settings JSONB NOT NULL,
    created BIGINT NOT NULL
);
CREATE TABLE report_suites (
    company_id TEXT COLLATE "C" NOT NULL REFERENCES companies(id),
    rsid TEXT COLLATE "C" NOT NULL,
    time_zone TEXT NOT NULL,
    created BIGINT NOT NULL,
    PRIMARY KEY (company_id, rsid)
);
CREATE TABLE clients (
    client_id TEXT COLLATE "C" PRIMARY KEY,
    company_id TEXT COLLATE "C" NOT NULL REFERENCES companies(id),
    secret_hash TEXT NOT NULL,
    technical_account TEXT NOT NULL,
    public_key_pem TEXT,
    disabled BOOLEAN NOT NULL DEFAULT FALSE,
    created BIGINT NOT NULL,
    token_generation BIGINT NOT NULL DEFAULT 0
);
CREATE TABLE jwt_assertions (
    digest TEXT PRIMARY KEY,
    keep_until BIGINT NOT NULL
);
CREATE INDEX jwt_assertions_keep_until ON jwt_assertions(keep_until);
CREATE TABLE visitor_groups (
    company_id TEXT COLLATE "C" NOT NULL REFERENCES companies(id),
    visitor_group_id TEXT COLLATE "C" NOT NULL,
    last_seq BIGINT NOT NULL,
    PRIMARY KEY (company_id, visitor_group_id)
);
CREATE TABLE files (
    seq BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    file_id TEXT NOT NULL UNIQUE,
    company_id TEXT COLLATE "C" NOT NULL REFERENCES companies(id),
    visitor_group_id TEXT COLLATE "C" NOT NULL,
    idempotency_key TEXT NOT NULL,
    upload_name TEXT NOT NULL,
    size BIGINT NOT NULL,
    uncompressed_size BIGINT NOT NULL,
    received_date BIGINT NOT NULL,
    rows BIGINT NOT NULL,
    invalid_rows BIGINT NOT NULL,
    status TEXT NOT NULL,
    error TEXT,
    error_code TEXT,
    processing_log TEXT NOT NULL,
    processing_start_date BIGINT,
    file_reader_complete_date BIGINT,
    processing_end_date BIGINT,
    group_seq BIGINT,
    blob_key TEXT,
    rejects_key TEXT,
    rejects_kept BIGINT NOT NULL DEFAULT 0,
    hits_retracted_at BIGINT,
    hits_retracted BIGINT
);
CREATE UNIQUE INDEX files_key
    ON files(company_id, idempotency_key) WHERE status <> 'REJECTED';
CREATE UNIQUE INDEX files_group_seq
    ON files(company_id, visitor_group_id, group_seq) WHERE group_seq IS NOT NULL;
CREATE INDEX files_company ON files(company_id, seq);
CREATE INDEX files_status ON files(status, seq);
CREATE INDEX files_group_status ON files(company_id, visitor_group_id, status);
CREATE TABLE visitor_states (
    company_id TEXT COLLATE "C" NOT NULL,
    report_suite TEXT COLLATE "C" NOT NULL,
    visitor_key TEXT COLLATE "C" NOT NULL,
    last_hit_time BIGINT NOT NULL,
    visit_num BIGINT NOT NULL,
    visit_start_time BIGINT NOT NULL,
    visit_page_num BIGINT NOT NULL,
    PRIMARY KEY (company_id, report_suite, visitor_key)
);
CREATE TABLE privacy_deletions (
    id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    company_id TEXT COLLATE "C" NOT NULL REFERENCES companies(id),
    requested_by TEXT NOT NULL,
    requested_at BIGINT NOT NULL,
    identifier_type TEXT NOT NULL,
    customer_id_type TEXT,
    identifier_sha256 TEXT NOT NULL,
    hits_removed BIGINT NOT NULL,
    visitors BIGINT NOT NULL,
    table_version BIGINT
);
CREATE INDEX privacy_deletions_company ON privacy_deletions(company_id, id);
"#;

/// Version 2: visitor-group leases, shared secrets and node heartbeats (the
/// SQLite backend's version 6).
///
/// - The lease of a group lives on its `visitor_groups` row: `node_id`
///   (NULL when free or released), `epoch` (0 before the first claim, up by
///   one per claim) and `expires_ms` (unix milliseconds, database clock).
///   SQLite keeps them in a table of their own (`group_leases`); here the
///   row that orders a group's uploads and claims is also the one that
///   claims lock (`FOR UPDATE SKIP LOCKED`) and fenced writes check, and it
///   exists for every group that has had a file to process.
/// - `lease_claims`: every claim, kept (`previous_expires_ms`: when the
///   lease before it had expired or been released).
/// - `files.processed_by`, `files.lease_epoch`: the node and lease epoch
///   whose run committed the file `COMPLETE`.
/// - `shared_secrets`: values every node must share (the token signing
///   key).
/// - `nodes`: node heartbeats (`expires_ms`).
const V2_LEASES: &str = r#"
ALTER TABLE visitor_groups
    ADD COLUMN node_id TEXT,
    ADD COLUMN epoch BIGINT NOT NULL DEFAULT 0,
    ADD COLUMN expires_ms BIGINT NOT NULL DEFAULT 0;
CREATE INDEX visitor_groups_node ON visitor_groups(node_id) WHERE node_id IS NOT NULL;
CREATE TABLE lease_claims (
    company_id TEXT COLLATE "C" NOT NULL,
    visitor_group_id TEXT COLLATE "C" NOT NULL,
    epoch BIGINT NOT NULL,
    node_id TEXT NOT NULL,
    claimed_ms BIGINT NOT NULL,
    previous_expires_ms BIGINT,
    PRIMARY KEY (company_id, visitor_group_id, epoch)
);
ALTER TABLE files
    ADD COLUMN processed_by TEXT,
    ADD COLUMN lease_epoch BIGINT;
CREATE TABLE shared_secrets (
    name TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
CREATE TABLE nodes (
    node_id TEXT PRIMARY KEY,
    expires_ms BIGINT NOT NULL
);
"#;

/// Version 3: the SHA-256 of each accepted upload's bytes and the earlier
/// file a duplicate repeats (the SQLite backend's version 7).
const V3_CONTENT_HASH: &str = r#"
ALTER TABLE files
    ADD COLUMN content_sha256 TEXT,
    ADD COLUMN duplicate_of TEXT;
CREATE INDEX files_content ON files(company_id, content_sha256) WHERE content_sha256 IS NOT NULL;
"#;

/// Version 4: group control (the SQLite backend's version 8).
///
/// - `visitor_groups.paused`: the group is held (no claim takes its
///   files). An operator's action on a group that never had a file to
///   process creates its row (`last_seq` 0).
/// - `group_actions`: every pause, resume and cancel, kept (who, when,
///   files changed).
/// - `files_company_status_end`: a company's latest `COMPLETE` files, for
///   its measured processing rate.
const V4_GROUP_CONTROL: &str = r#"
ALTER TABLE visitor_groups ADD COLUMN paused BOOLEAN NOT NULL DEFAULT FALSE;
CREATE TABLE group_actions (
    id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    company_id TEXT COLLATE "C" NOT NULL,
    visitor_group_id TEXT COLLATE "C" NOT NULL,
    action TEXT NOT NULL,
    actor TEXT NOT NULL,
    at BIGINT NOT NULL,
    files BIGINT NOT NULL
);
CREATE INDEX group_actions_group ON group_actions(company_id, visitor_group_id, id);
CREATE INDEX files_company_status_end ON files(company_id, status, processing_end_date);
"#;

/// Version 5: webhooks (the SQLite backend's version 9).
///
/// - `webhooks`: a company's endpoints; `events` is a JSONB array of event
///   types (empty: every type).
/// - `webhook_deliveries`: one row per (event, endpoint), written by the
///   trigger `files_webhooks` in the same transaction as the change it
///   reports. Claims lock rows with `FOR UPDATE SKIP LOCKED` and set
///   `claimed_until_ms` (unix milliseconds), so two nodes never send the
///   same attempt at once.
/// - The trigger: a new record `UPLOADED` (`file.uploaded`) or `REJECTED`
///   (`file.rejected`); a status change to `COMPLETE` (`file.complete`) or
///   `ERROR` (`file.error`); `hits_retracted_at` set (`file.retracted`).
const V5_WEBHOOKS: &str = r#"
CREATE TABLE webhooks (
    id TEXT COLLATE "C" PRIMARY KEY,
    company_id TEXT COLLATE "C" NOT NULL REFERENCES companies(id),
    url TEXT NOT NULL,
    events JSONB NOT NULL,
    secret TEXT NOT NULL,
    created BIGINT NOT NULL
);
CREATE INDEX webhooks_company ON webhooks(company_id, created);
CREATE TABLE webhook_deliveries (
    id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    webhook_id TEXT COLLATE "C" NOT NULL REFERENCES webhooks(id) ON DELETE CASCADE,
    event_type TEXT NOT NULL,
    file_id TEXT NOT NULL,
    payload TEXT NOT NULL,
    created BIGINT NOT NULL,
    attempts BIGINT NOT NULL DEFAULT 0,
    next_attempt_ms BIGINT NOT NULL DEFAULT 0,
    claimed_until_ms BIGINT NOT NULL DEFAULT 0,
    delivered_at BIGINT,
    last_status BIGINT,
    last_error TEXT,
    last_latency_ms BIGINT,
    given_up BOOLEAN NOT NULL DEFAULT FALSE
);
CREATE INDEX webhook_deliveries_pending ON webhook_deliveries(next_attempt_ms, id)
    WHERE delivered_at IS NULL AND NOT given_up;
CREATE INDEX webhook_deliveries_file ON webhook_deliveries(webhook_id, file_id, id);
CREATE FUNCTION bdia_files_webhook_event() RETURNS trigger LANGUAGE plpgsql AS $fn$
DECLARE
    t TEXT;
    at BIGINT := floor(extract(epoch FROM now()))::BIGINT;
BEGIN
    IF TG_OP = 'INSERT' THEN
        t := CASE NEW.status WHEN 'UPLOADED' THEN 'file.uploaded'
                             WHEN 'REJECTED' THEN 'file.rejected' END;
    ELSIF OLD.hits_retracted_at IS NULL AND NEW.hits_retracted_at IS NOT NULL THEN
        t := 'file.retracted';
        at := NEW.hits_retracted_at;
    ELSIF NEW.status IS DISTINCT FROM OLD.status THEN
        t := CASE NEW.status WHEN 'COMPLETE' THEN 'file.complete'
                             WHEN 'ERROR' THEN 'file.error' END;
    END IF;
    IF t IS NULL THEN
        RETURN NULL;
    END IF;
    INSERT INTO webhook_deliveries (webhook_id, event_type, file_id, payload, created)
    SELECT w.id, t, NEW.file_id,
           jsonb_build_object('type', t, 'file_id', NEW.file_id,
                              'visitor_group_id', NEW.visitor_group_id,
                              'status_code', NEW.status, 'occurred_at', at)::TEXT,
           at
    FROM webhooks w
    WHERE w.company_id = NEW.company_id
      AND (jsonb_array_length(w.events) = 0 OR w.events ? t);
    RETURN NULL;
END
$fn$;
CREATE TRIGGER files_webhooks AFTER INSERT OR UPDATE OF status, hits_retracted_at ON files
    FOR EACH ROW EXECUTE FUNCTION bdia_files_webhook_event();
"#;

/// Version 6: webhook events of group control and of cancelled files (the
/// SQLite backend's version 10): `file.cancelled` from the files trigger,
/// and `group.paused`, `group.resumed`, `group.cancelled` from a trigger on
/// `group_actions`, ordered per group (delivery `file_id` `group:<vgid>`;
/// the body's `file_id` is null, `status_code` the group's state).
const V6_GROUP_WEBHOOKS: &str = r#"
CREATE OR REPLACE FUNCTION bdia_files_webhook_event() RETURNS trigger LANGUAGE plpgsql AS $fn$
DECLARE
    t TEXT;
    at BIGINT := floor(extract(epoch FROM now()))::BIGINT;
BEGIN
    IF TG_OP = 'INSERT' THEN
        t := CASE NEW.status WHEN 'UPLOADED' THEN 'file.uploaded'
                             WHEN 'REJECTED' THEN 'file.rejected' END;
    ELSIF OLD.hits_retracted_at IS NULL AND NEW.hits_retracted_at IS NOT NULL THEN
        t := 'file.retracted';
        at := NEW.hits_retracted_at;
    ELSIF NEW.status IS DISTINCT FROM OLD.status THEN
        t := CASE NEW.status WHEN 'COMPLETE' THEN 'file.complete'
                             WHEN 'ERROR' THEN 'file.error'
                             WHEN 'CANCELLED' THEN 'file.cancelled' END;
    END IF;
    IF t IS NULL THEN
        RETURN NULL;
    END IF;
    INSERT INTO webhook_deliveries (webhook_id, event_type, file_id, payload, created)
    SELECT w.id, t, NEW.file_id,
           jsonb_build_object('type', t, 'file_id', NEW.file_id,
                              'visitor_group_id', NEW.visitor_group_id,
                              'status_code', NEW.status, 'occurred_at', at)::TEXT,
           at
    FROM webhooks w
    WHERE w.company_id = NEW.company_id
      AND (jsonb_array_length(w.events) = 0 OR w.events ? t);
    RETURN NULL;
END
$fn$;
CREATE FUNCTION bdia_group_actions_webhook_event() RETURNS trigger LANGUAGE plpgsql AS $fn$
DECLARE
    t TEXT := CASE NEW.action WHEN 'pause' THEN 'group.paused'
                              WHEN 'resume' THEN 'group.resumed'
                              ELSE 'group.cancelled' END;
BEGIN
    INSERT INTO webhook_deliveries (webhook_id, event_type, file_id, payload, created)
    SELECT w.id, t, 'group:' || NEW.visitor_group_id,
           jsonb_build_object('type', t, 'file_id', NULL,
                              'visitor_group_id', NEW.visitor_group_id,
                              'status_code', CASE NEW.action WHEN 'pause' THEN 'PAUSED'
                                                             ELSE 'ACTIVE' END,
                              'occurred_at', NEW.at, 'actor', NEW.actor,
                              'files', NEW.files)::TEXT,
           NEW.at
    FROM webhooks w
    WHERE w.company_id = NEW.company_id
      AND (jsonb_array_length(w.events) = 0 OR w.events ? t);
    RETURN NULL;
END
$fn$;
CREATE TRIGGER group_actions_webhooks AFTER INSERT ON group_actions
    FOR EACH ROW EXECUTE FUNCTION bdia_group_actions_webhook_event();
"#;

/// Report suites that take single hits (`/b/ss/...`): off by default, and
/// at most one suite per rsid across companies has it on.
const V7_SINGLE_HITS: &str = r#"
ALTER TABLE report_suites ADD COLUMN accept_single_hits BOOLEAN NOT NULL DEFAULT FALSE;
CREATE UNIQUE INDEX report_suites_single_hits ON report_suites(rsid)
    WHERE accept_single_hits;
"#;

/// Report suites' internal URL filters (a JSON array of strings).
const V8_INTERNAL_URL_FILTERS: &str = r#"
ALTER TABLE report_suites ADD COLUMN internal_url_filters JSONB NOT NULL DEFAULT '[]'::jsonb;
"#;

/// Version 9: eVars and IDs counted once.
///
/// - `visitor_states.evars`: the visitor's live eVar values (JSON text,
///   `NULL` for none; rows of older versions have none).
/// - `seen_ids`: the serials of serialized events and the purchase IDs
///   each (company, report suite) has counted, written by the completion
///   of the file that counted them.
/// - `report_suites.evar_settings`: eVar expiration and allocation (a JSON
///   list; empty: every eVar has the defaults).
const V9_EVARS_AND_SEEN_IDS: &str = r#"
ALTER TABLE visitor_states ADD COLUMN evars TEXT;
CREATE TABLE seen_ids (
    company_id TEXT COLLATE "C" NOT NULL,
    report_suite TEXT COLLATE "C" NOT NULL,
    kind TEXT COLLATE "C" NOT NULL,
    id TEXT COLLATE "C" NOT NULL,
    PRIMARY KEY (company_id, report_suite, kind, id)
);
ALTER TABLE report_suites ADD COLUMN evar_settings JSONB NOT NULL DEFAULT '[]'::jsonb;
"#;

/// The migrations, in order: entry `i` takes a database from version `i` to
/// version `i + 1`. Append only.
const MIGRATIONS: &[&str] = &[
    V1,
    V2_LEASES,
    V3_CONTENT_HASH,
    V4_GROUP_CONTROL,
    V5_WEBHOOKS,
    V6_GROUP_WEBHOOKS,
    V7_SINGLE_HITS,
    V8_INTERNAL_URL_FILTERS,
    V9_EVARS_AND_SEEN_IDS,
];

/// The schema version this build writes and the highest one it opens.
pub const SCHEMA_VERSION: i64 = MIGRATIONS.len() as i64;

/// The bookkeeping table; created (once, under the lock) before anything
/// else.
const MIGRATIONS_TABLE: &str = "CREATE TABLE IF NOT EXISTS schema_migrations (
    version BIGINT PRIMARY KEY,
    applied_at TIMESTAMPTZ NOT NULL DEFAULT now()
)";

/// The highest version applied to the database (0 for an empty one).
pub async fn schema_version(client: &Client) -> StoreResult<i64> {
    let row = client
        .query_one(
            "SELECT COALESCE(MAX(version), 0) AS version FROM schema_migrations",
            &[],
        )
        .await
        .map_err(db("read the schema version"))?;
    row.try_get("version")
        .map_err(db("read the schema version"))
}

/// Brings the database to [`SCHEMA_VERSION`] under [`MIGRATION_LOCK`];
/// returns the version it had. The caller closes the session afterwards,
/// which releases the lock also when this failed half way.
pub(super) async fn migrate(client: &mut Client) -> StoreResult<i64> {
    client
        .execute("SELECT pg_advisory_lock($1)", &[&MIGRATION_LOCK])
        .await
        .map_err(db("take the schema migration lock"))?;
    let result = migrate_locked(client).await;
    client
        .execute("SELECT pg_advisory_unlock($1)", &[&MIGRATION_LOCK])
        .await
        .map_err(db("release the schema migration lock"))?;
    result
}

async fn migrate_locked(client: &mut Client) -> StoreResult<i64> {
    client
        .batch_execute(MIGRATIONS_TABLE)
        .await
        .map_err(db("create the schema_migrations table"))?;
    let found = schema_version(client).await?;
    if found > SCHEMA_VERSION {
        return Err(StoreError::SchemaTooNew {
            found,
            supported: SCHEMA_VERSION,
        });
    }
    for (i, sql) in MIGRATIONS.iter().enumerate().skip(found as usize) {
        let version = i as i64 + 1;
        let fail = |e| StoreError::backend(format!("migrate the schema to version {version}"), e);
        let tx = client.transaction().await.map_err(fail)?;
        tx.batch_execute(sql).await.map_err(fail)?;
        tx.execute(
            "INSERT INTO schema_migrations (version) VALUES ($1)",
            &[&version],
        )
        .await
        .map_err(fail)?;
        tx.commit().await.map_err(fail)?;
    }
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
}
