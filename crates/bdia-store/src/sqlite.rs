//! The embedded metadata backend: one SQLite database file.
//!
//! Layout: tables `companies`, `report_suites`, `clients`, `files` and
//! `visitor_states` (schema in [`SCHEMA`]). The database runs in WAL mode with
//! `synchronous=FULL`, so a committed transaction survives a power loss.
//!
//! Invariants enforced by the schema itself (so that they hold across
//! processes, e.g. `bdia admin` next to a running server):
//! - `files_key`: one non-`REJECTED` record per (company, idempotency key);
//! - `files_group_seq`: one record per (company, visitor group, group_seq);
//! - report suite ids and client ids are unique across companies.
//!
//! `visitor_states` holds one row per (company, report suite, visitor key),
//! a `WITHOUT ROWID` table clustered on that key: tens of millions of
//! visitors stay on disk, and a file's processing looks up only the keys
//! it touches, in batches ([`MetadataStore::visitor_states`]). Rows change
//! only in [`MetadataStore::complete_file`]'s transaction.
//!
//! Every call runs on tokio's blocking pool, holding the one connection.

use std::path::Path;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use rusqlite::{params, Connection, OptionalExtension, Row, TransactionBehavior};

use bdia_model::VisitState;

use crate::{
    ApiClient, CommitOutcome, Company, CompanySettings, Completion, FilePage, FileQuery,
    FileRecord, FileStatus, GroupRef, MetadataStore, NewFile, ReportSuite, StatusUpdate,
    StoreError, StoreResult, StoredState, SuiteClaim, FAILURE_PREFIX,
};

/// The schema, applied idempotently at open.
pub const SCHEMA: &str = r#"
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

const FILE_COLUMNS: &str = "file_id, company_id, visitor_group_id, idempotency_key, upload_name, \
    size, uncompressed_size, received_date, rows, invalid_rows, status, error, error_code, \
    processing_log, processing_start_date, file_reader_complete_date, processing_end_date, \
    group_seq, blob_key, rejects_key";

/// Metadata in one SQLite file.
#[derive(Clone)]
pub struct SqliteStore {
    conn: Arc<Mutex<Connection>>,
}

impl std::fmt::Debug for SqliteStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqliteStore").finish_non_exhaustive()
    }
}

fn backend(e: rusqlite::Error) -> StoreError {
    StoreError::Backend(e.to_string())
}

fn is_unique_violation(e: &rusqlite::Error) -> bool {
    matches!(
        e,
        rusqlite::Error::SqliteFailure(f, _)
            if f.code == rusqlite::ErrorCode::ConstraintViolation
                && (f.extended_code == rusqlite::ffi::SQLITE_CONSTRAINT_UNIQUE
                    || f.extended_code == rusqlite::ffi::SQLITE_CONSTRAINT_PRIMARYKEY)
    )
}

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

impl SqliteStore {
    /// Opens (creating if needed) the database at `path`.
    pub fn open(path: &Path) -> StoreResult<SqliteStore> {
        let conn = Connection::open(path).map_err(backend)?;
        Self::init(conn)
    }

    /// An in-memory database (tests).
    pub fn in_memory() -> StoreResult<SqliteStore> {
        let conn = Connection::open_in_memory().map_err(backend)?;
        Self::init(conn)
    }

    fn init(conn: Connection) -> StoreResult<SqliteStore> {
        conn.busy_timeout(std::time::Duration::from_secs(10))
            .map_err(backend)?;
        conn.pragma_update(None, "journal_mode", "WAL")
            .map_err(backend)?;
        conn.pragma_update(None, "synchronous", "FULL")
            .map_err(backend)?;
        conn.pragma_update(None, "foreign_keys", "ON")
            .map_err(backend)?;
        conn.execute_batch(SCHEMA).map_err(backend)?;
        Ok(SqliteStore {
            conn: Arc::new(Mutex::new(conn)),
        })
    }

    async fn with<T, F>(&self, f: F) -> StoreResult<T>
    where
        T: Send + 'static,
        F: FnOnce(&mut Connection) -> StoreResult<T> + Send + 'static,
    {
        let conn = self.conn.clone();
        tokio::task::spawn_blocking(move || {
            let mut guard = conn
                .lock()
                .map_err(|_| StoreError::Backend("connection lock poisoned".into()))?;
            f(&mut guard)
        })
        .await
        .map_err(|e| StoreError::Backend(format!("blocking task failed: {e}")))?
    }
}

fn company_from_row(row: &Row<'_>) -> rusqlite::Result<(String, String, String, i64)> {
    Ok((row.get(0)?, row.get(1)?, row.get(2)?, row.get(3)?))
}

fn company_of(raw: (String, String, String, i64)) -> StoreResult<Company> {
    let settings: CompanySettings = serde_json::from_str(&raw.2)
        .map_err(|e| StoreError::Backend(format!("company settings of '{}': {e}", raw.0)))?;
    Ok(Company {
        id: raw.0,
        salt: raw.1,
        settings,
        created: raw.3,
    })
}

fn get_company_tx(conn: &Connection, id: &str) -> StoreResult<Option<Company>> {
    let raw = conn
        .query_row(
            "SELECT id, salt, settings, created FROM companies WHERE id = ?1",
            [id],
            company_from_row,
        )
        .optional()
        .map_err(backend)?;
    raw.map(company_of).transpose()
}

fn suite_from_row(row: &Row<'_>) -> rusqlite::Result<ReportSuite> {
    Ok(ReportSuite {
        rsid: row.get(0)?,
        company_id: row.get(1)?,
        time_zone: row.get(2)?,
        created: row.get(3)?,
    })
}

fn client_from_row(row: &Row<'_>) -> rusqlite::Result<ApiClient> {
    Ok(ApiClient {
        client_id: row.get(0)?,
        company_id: row.get(1)?,
        secret_hash: row.get(2)?,
        technical_account: row.get(3)?,
        public_key_pem: row.get(4)?,
        disabled: row.get::<_, i64>(5)? != 0,
        created: row.get(6)?,
    })
}

const CLIENT_COLUMNS: &str =
    "client_id, company_id, secret_hash, technical_account, public_key_pem, disabled, created";

fn file_from_row(row: &Row<'_>) -> rusqlite::Result<FileRecord> {
    let status: String = row.get(10)?;
    let status = status.parse::<FileStatus>().map_err(|e| {
        rusqlite::Error::FromSqlConversionFailure(10, rusqlite::types::Type::Text, Box::new(e))
    })?;
    Ok(FileRecord {
        file_id: row.get(0)?,
        company_id: row.get(1)?,
        visitor_group_id: row.get(2)?,
        idempotency_key: row.get(3)?,
        upload_name: row.get(4)?,
        size: row.get::<_, i64>(5)? as u64,
        uncompressed_size: row.get::<_, i64>(6)? as u64,
        received_date: row.get(7)?,
        rows: row.get::<_, i64>(8)? as u64,
        invalid_rows: row.get::<_, i64>(9)? as u64,
        status,
        error: row.get(11)?,
        error_code: row.get(12)?,
        processing_log: row.get(13)?,
        processing_start_date: row.get(14)?,
        file_reader_complete_date: row.get(15)?,
        processing_end_date: row.get(16)?,
        group_seq: row.get::<_, Option<i64>>(17)?.map(|v| v as u64),
        blob_key: row.get(18)?,
        rejects_key: row.get(19)?,
    })
}

fn accepted_by_key(
    conn: &Connection,
    company_id: &str,
    key: &str,
) -> StoreResult<Option<FileRecord>> {
    conn.query_row(
        &format!(
            "SELECT {FILE_COLUMNS} FROM files WHERE company_id = ?1 AND idempotency_key = ?2 \
             AND status <> 'REJECTED' ORDER BY seq LIMIT 1"
        ),
        params![company_id, key],
        file_from_row,
    )
    .optional()
    .map_err(backend)
}

fn file_by_id(conn: &Connection, file_id: &str) -> StoreResult<Option<FileRecord>> {
    conn.query_row(
        &format!("SELECT {FILE_COLUMNS} FROM files WHERE file_id = ?1"),
        [file_id],
        file_from_row,
    )
    .optional()
    .map_err(backend)
}

fn insert_file(conn: &Connection, r: &FileRecord) -> rusqlite::Result<usize> {
    conn.execute(
        &format!(
            "INSERT INTO files ({FILE_COLUMNS}) VALUES \
             (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, ?18, ?19, ?20)"
        ),
        params![
            r.file_id,
            r.company_id,
            r.visitor_group_id,
            r.idempotency_key,
            r.upload_name,
            r.size as i64,
            r.uncompressed_size as i64,
            r.received_date,
            r.rows as i64,
            r.invalid_rows as i64,
            r.status.as_str(),
            r.error,
            r.error_code,
            r.processing_log,
            r.processing_start_date,
            r.file_reader_complete_date,
            r.processing_end_date,
            r.group_seq.map(|v| v as i64),
            r.blob_key,
            r.rejects_key,
        ],
    )
}

#[async_trait]
impl MetadataStore for SqliteStore {
    async fn create_company(
        &self,
        id: &str,
        salt: &str,
        settings: CompanySettings,
    ) -> StoreResult<Company> {
        let (id, salt) = (id.to_string(), salt.to_string());
        self.with(move |conn| {
            let json =
                serde_json::to_string(&settings).map_err(|e| StoreError::Backend(e.to_string()))?;
            let created = now();
            match conn.execute(
                "INSERT INTO companies (id, salt, settings, created) VALUES (?1, ?2, ?3, ?4)",
                params![id, salt, json, created],
            ) {
                Ok(_) => Ok(Company {
                    id,
                    salt,
                    settings,
                    created,
                }),
                Err(e) if is_unique_violation(&e) => {
                    Err(StoreError::Conflict(format!("company '{id}'")))
                }
                Err(e) => Err(backend(e)),
            }
        })
        .await
    }

    async fn get_company(&self, id: &str) -> StoreResult<Option<Company>> {
        let id = id.to_string();
        self.with(move |conn| get_company_tx(conn, &id)).await
    }

    async fn list_companies(&self) -> StoreResult<Vec<Company>> {
        self.with(|conn| {
            let mut stmt = conn
                .prepare("SELECT id, salt, settings, created FROM companies ORDER BY id")
                .map_err(backend)?;
            let raws = stmt
                .query_map([], company_from_row)
                .map_err(backend)?
                .collect::<rusqlite::Result<Vec<_>>>()
                .map_err(backend)?;
            raws.into_iter().map(company_of).collect()
        })
        .await
    }

    async fn update_company_settings(
        &self,
        id: &str,
        settings: CompanySettings,
    ) -> StoreResult<Company> {
        let id = id.to_string();
        self.with(move |conn| {
            let json =
                serde_json::to_string(&settings).map_err(|e| StoreError::Backend(e.to_string()))?;
            let n = conn
                .execute(
                    "UPDATE companies SET settings = ?2 WHERE id = ?1",
                    params![id, json],
                )
                .map_err(backend)?;
            if n == 0 {
                return Err(StoreError::NotFound(format!("company '{id}'")));
            }
            get_company_tx(conn, &id)?
                .ok_or_else(|| StoreError::NotFound(format!("company '{id}'")))
        })
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
        self.with(move |conn| {
            if get_company_tx(conn, &company_id)?.is_none() {
                return Err(StoreError::NotFound(format!("company '{company_id}'")));
            }
            let created = now();
            match conn.execute(
                "INSERT INTO report_suites (rsid, company_id, time_zone, created) VALUES (?1, ?2, ?3, ?4)",
                params![rsid, company_id, time_zone, created],
            ) {
                Ok(_) => Ok(ReportSuite {
                    rsid,
                    company_id,
                    time_zone,
                    created,
                }),
                Err(e) if is_unique_violation(&e) => {
                    Err(StoreError::Conflict(format!("report suite '{rsid}'")))
                }
                Err(e) => Err(backend(e)),
            }
        })
        .await
    }

    async fn get_report_suite(&self, rsid: &str) -> StoreResult<Option<ReportSuite>> {
        let rsid = rsid.to_string();
        self.with(move |conn| {
            conn.query_row(
                "SELECT rsid, company_id, time_zone, created FROM report_suites WHERE rsid = ?1",
                [rsid],
                suite_from_row,
            )
            .optional()
            .map_err(backend)
        })
        .await
    }

    async fn list_report_suites(&self, company_id: Option<&str>) -> StoreResult<Vec<ReportSuite>> {
        let company_id = company_id.map(str::to_string);
        self.with(move |conn| {
            let mut stmt = conn
                .prepare(
                    "SELECT rsid, company_id, time_zone, created FROM report_suites \
                     WHERE ?1 IS NULL OR company_id = ?1 ORDER BY rsid",
                )
                .map_err(backend)?;
            let rows = stmt
                .query_map([company_id], suite_from_row)
                .map_err(backend)?
                .collect::<rusqlite::Result<Vec<_>>>()
                .map_err(backend);
            rows
        })
        .await
    }

    async fn claim_report_suite(
        &self,
        company_id: &str,
        rsid: &str,
        create: bool,
    ) -> StoreResult<SuiteClaim> {
        let (company_id, rsid) = (company_id.to_string(), rsid.to_string());
        self.with(move |conn| {
            let tx = conn
                .transaction_with_behavior(TransactionBehavior::Immediate)
                .map_err(backend)?;
            let owner: Option<String> = tx
                .query_row(
                    "SELECT company_id FROM report_suites WHERE rsid = ?1",
                    [&rsid],
                    |r| r.get(0),
                )
                .optional()
                .map_err(backend)?;
            let claim = match owner {
                Some(o) if o == company_id => SuiteClaim::Owned,
                Some(_) => SuiteClaim::OtherCompany,
                None if !create => SuiteClaim::Unknown,
                None => {
                    tx.execute(
                        "INSERT INTO report_suites (rsid, company_id, time_zone, created) VALUES (?1, ?2, 'UTC', ?3)",
                        params![rsid, company_id, now()],
                    )
                    .map_err(backend)?;
                    SuiteClaim::Created
                }
            };
            tx.commit().map_err(backend)?;
            Ok(claim)
        })
        .await
    }

    async fn create_client(&self, client: ApiClient) -> StoreResult<ApiClient> {
        self.with(move |conn| {
            if get_company_tx(conn, &client.company_id)?.is_none() {
                return Err(StoreError::NotFound(format!(
                    "company '{}'",
                    client.company_id
                )));
            }
            match conn.execute(
                &format!(
                    "INSERT INTO clients ({CLIENT_COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)"
                ),
                params![
                    client.client_id,
                    client.company_id,
                    client.secret_hash,
                    client.technical_account,
                    client.public_key_pem,
                    client.disabled as i64,
                    client.created
                ],
            ) {
                Ok(_) => Ok(client),
                Err(e) if is_unique_violation(&e) => Err(StoreError::Conflict(format!(
                    "client '{}'",
                    client.client_id
                ))),
                Err(e) => Err(backend(e)),
            }
        })
        .await
    }

    async fn get_client(&self, client_id: &str) -> StoreResult<Option<ApiClient>> {
        let client_id = client_id.to_string();
        self.with(move |conn| {
            conn.query_row(
                &format!("SELECT {CLIENT_COLUMNS} FROM clients WHERE client_id = ?1"),
                [client_id],
                client_from_row,
            )
            .optional()
            .map_err(backend)
        })
        .await
    }

    async fn list_clients(&self, company_id: Option<&str>) -> StoreResult<Vec<ApiClient>> {
        let company_id = company_id.map(str::to_string);
        self.with(move |conn| {
            let mut stmt = conn
                .prepare(&format!(
                    "SELECT {CLIENT_COLUMNS} FROM clients WHERE ?1 IS NULL OR company_id = ?1 ORDER BY client_id"
                ))
                .map_err(backend)?;
            let rows = stmt
                .query_map([company_id], client_from_row)
                .map_err(backend)?
                .collect::<rusqlite::Result<Vec<_>>>()
                .map_err(backend);
            rows
        })
        .await
    }

    async fn set_client_disabled(&self, client_id: &str, disabled: bool) -> StoreResult<()> {
        let client_id = client_id.to_string();
        self.with(move |conn| {
            let n = conn
                .execute(
                    "UPDATE clients SET disabled = ?2 WHERE client_id = ?1",
                    params![client_id, disabled as i64],
                )
                .map_err(backend)?;
            if n == 0 {
                return Err(StoreError::NotFound(format!("client '{client_id}'")));
            }
            Ok(())
        })
        .await
    }

    async fn set_client_public_key(&self, client_id: &str, pem: Option<&str>) -> StoreResult<()> {
        let client_id = client_id.to_string();
        let pem = pem.map(str::to_string);
        self.with(move |conn| {
            let n = conn
                .execute(
                    "UPDATE clients SET public_key_pem = ?2 WHERE client_id = ?1",
                    params![client_id, pem],
                )
                .map_err(backend)?;
            if n == 0 {
                return Err(StoreError::NotFound(format!("client '{client_id}'")));
            }
            Ok(())
        })
        .await
    }

    async fn commit_upload(&self, file: NewFile) -> StoreResult<CommitOutcome> {
        self.with(move |conn| {
            let tx = conn
                .transaction_with_behavior(TransactionBehavior::Immediate)
                .map_err(backend)?;
            let mut record = file.record;
            if let Some(existing) =
                accepted_by_key(&tx, &record.company_id, &record.idempotency_key)?
            {
                return Ok(CommitOutcome::Existing(existing));
            }
            record.group_seq = None;
            if record.status == FileStatus::Uploaded {
                let next: i64 = tx
                    .query_row(
                        "SELECT COALESCE(MAX(group_seq), 0) + 1 FROM files \
                         WHERE company_id = ?1 AND visitor_group_id = ?2 AND group_seq IS NOT NULL",
                        params![record.company_id, record.visitor_group_id],
                        |r| r.get(0),
                    )
                    .map_err(backend)?;
                record.group_seq = Some(next as u64);
            }
            match insert_file(&tx, &record) {
                Ok(_) => {}
                Err(e) if is_unique_violation(&e) => {
                    // Another writer won the key (another process on the same
                    // database): answer with its record.
                    drop(tx);
                    return match accepted_by_key(conn, &record.company_id, &record.idempotency_key)?
                    {
                        Some(existing) => Ok(CommitOutcome::Existing(existing)),
                        None => Err(StoreError::Conflict(format!("file '{}'", record.file_id))),
                    };
                }
                Err(e) => return Err(backend(e)),
            }
            tx.commit().map_err(backend)?;
            Ok(CommitOutcome::Inserted(record))
        })
        .await
    }

    async fn get_file(&self, company_id: &str, file_id: &str) -> StoreResult<Option<FileRecord>> {
        let (company_id, file_id) = (company_id.to_string(), file_id.to_string());
        self.with(
            move |conn| Ok(file_by_id(conn, &file_id)?.filter(|f| f.company_id == company_id)),
        )
        .await
    }

    async fn find_by_key(&self, company_id: &str, key: &str) -> StoreResult<Option<FileRecord>> {
        let (company_id, key) = (company_id.to_string(), key.to_string());
        self.with(move |conn| {
            if let Some(f) = accepted_by_key(conn, &company_id, &key)? {
                return Ok(Some(f));
            }
            conn.query_row(
                &format!(
                    "SELECT {FILE_COLUMNS} FROM files WHERE company_id = ?1 AND idempotency_key = ?2 \
                     ORDER BY seq DESC LIMIT 1"
                ),
                params![company_id, key],
                file_from_row,
            )
            .optional()
            .map_err(backend)
        })
        .await
    }

    async fn list_files(&self, company_id: &str, query: &FileQuery) -> StoreResult<FilePage> {
        let company_id = company_id.to_string();
        let query = query.clone();
        self.with(move |conn| {
            let limit = match query.limit {
                0 => 100,
                n => n.min(1000),
            } as i64;
            let cursor: Option<i64> = match &query.cursor {
                None => None,
                Some(c) => Some(
                    c.parse::<i64>()
                        .map_err(|_| StoreError::Invalid(format!("cursor '{c}'")))?,
                ),
            };
            let mut stmt = conn
                .prepare(&format!(
                    "SELECT {FILE_COLUMNS}, seq FROM files WHERE company_id = ?1 \
                     AND (?2 IS NULL OR visitor_group_id = ?2) AND (?3 IS NULL OR status = ?3) \
                     AND (?4 IS NULL OR seq < ?4) ORDER BY seq DESC LIMIT ?5"
                ))
                .map_err(backend)?;
            let mut rows = stmt
                .query_map(
                    params![
                        company_id,
                        query.visitor_group_id,
                        query.status.map(|s| s.as_str()),
                        cursor,
                        limit + 1
                    ],
                    |r| Ok((file_from_row(r)?, r.get::<_, i64>(20)?)),
                )
                .map_err(backend)?
                .collect::<rusqlite::Result<Vec<_>>>()
                .map_err(backend)?;
            let next_cursor = if rows.len() as i64 > limit {
                rows.truncate(limit as usize);
                rows.last().map(|(_, seq)| seq.to_string())
            } else {
                None
            };
            Ok(FilePage {
                files: rows.into_iter().map(|(f, _)| f).collect(),
                next_cursor,
            })
        })
        .await
    }

    async fn update_file_status(
        &self,
        file_id: &str,
        update: StatusUpdate,
    ) -> StoreResult<FileRecord> {
        let file_id = file_id.to_string();
        self.with(move |conn| {
            let tx = conn
                .transaction_with_behavior(TransactionBehavior::Immediate)
                .map_err(backend)?;
            let Some(mut rec) = file_by_id(&tx, &file_id)? else {
                return Err(StoreError::NotFound(format!("file '{file_id}'")));
            };
            if let Some(s) = update.status {
                rec.status = s;
            }
            if let Some(d) = update.processing_start_date {
                rec.processing_start_date = Some(d);
            }
            if let Some(d) = update.file_reader_complete_date {
                rec.file_reader_complete_date = Some(d);
            }
            if let Some(d) = update.processing_end_date {
                rec.processing_end_date = Some(d);
            }
            if let Some((msg, code)) = update.error {
                rec.error = Some(msg);
                rec.error_code = Some(code);
            }
            tx.execute(
                "UPDATE files SET status = ?2, processing_start_date = ?3, \
                 file_reader_complete_date = ?4, processing_end_date = ?5, error = ?6, \
                 error_code = ?7 WHERE file_id = ?1",
                params![
                    file_id,
                    rec.status.as_str(),
                    rec.processing_start_date,
                    rec.file_reader_complete_date,
                    rec.processing_end_date,
                    rec.error,
                    rec.error_code
                ],
            )
            .map_err(backend)?;
            tx.commit().map_err(backend)?;
            Ok(rec)
        })
        .await
    }

    async fn pending_files(&self, limit: u32) -> StoreResult<Vec<FileRecord>> {
        self.with(move |conn| {
            let mut stmt = conn
                .prepare(&format!(
                    "SELECT {FILE_COLUMNS} FROM files WHERE status IN ('UPLOADED', 'PROCESSING') \
                     ORDER BY seq LIMIT ?1"
                ))
                .map_err(backend)?;
            let rows = stmt
                .query_map([limit as i64], file_from_row)
                .map_err(backend)?
                .collect::<rusqlite::Result<Vec<_>>>()
                .map_err(backend);
            rows
        })
        .await
    }

    async fn referenced_blob_keys(&self) -> StoreResult<Vec<String>> {
        self.with(|conn| {
            let mut stmt = conn
                .prepare(
                    "SELECT blob_key FROM files WHERE blob_key IS NOT NULL \
                     UNION ALL SELECT rejects_key FROM files WHERE rejects_key IS NOT NULL",
                )
                .map_err(backend)?;
            let rows = stmt
                .query_map([], |r| r.get::<_, String>(0))
                .map_err(backend)?
                .collect::<rusqlite::Result<Vec<_>>>()
                .map_err(backend);
            rows
        })
        .await
    }

    async fn ping(&self) -> StoreResult<()> {
        self.with(|conn| {
            conn.query_row("SELECT 1", [], |r| r.get::<_, i64>(0))
                .map_err(backend)
                .map(|_| ())
        })
        .await
    }

    async fn runnable_groups(&self, limit: u32) -> StoreResult<Vec<GroupRef>> {
        self.with(move |conn| {
            let mut stmt = conn
                .prepare_cached(
                    "SELECT f.company_id, f.visitor_group_id, MIN(f.seq) AS first FROM files f \
                     WHERE f.status = 'UPLOADED' AND NOT EXISTS (SELECT 1 FROM files g \
                       WHERE g.company_id = f.company_id AND g.visitor_group_id = f.visitor_group_id \
                       AND g.status IN ('PROCESSING', 'ERROR')) \
                     GROUP BY f.company_id, f.visitor_group_id ORDER BY first LIMIT ?1",
                )
                .map_err(backend)?;
            let rows = stmt
                .query_map([limit as i64], |r| {
                    Ok(GroupRef {
                        company_id: r.get(0)?,
                        visitor_group_id: r.get(1)?,
                    })
                })
                .map_err(backend)?
                .collect::<rusqlite::Result<Vec<_>>>()
                .map_err(backend);
            rows
        })
        .await
    }

    async fn claim_next_file(&self, group: &GroupRef, now: i64) -> StoreResult<Option<FileRecord>> {
        let group = group.clone();
        self.with(move |conn| {
            let tx = conn
                .transaction_with_behavior(TransactionBehavior::Immediate)
                .map_err(backend)?;
            let busy: i64 = tx
                .query_row(
                    "SELECT COUNT(*) FROM files WHERE company_id = ?1 AND visitor_group_id = ?2 \
                     AND status IN ('PROCESSING', 'ERROR')",
                    params![group.company_id, group.visitor_group_id],
                    |r| r.get(0),
                )
                .map_err(backend)?;
            if busy > 0 {
                return Ok(None);
            }
            let next = tx
                .query_row(
                    &format!(
                        "SELECT {FILE_COLUMNS} FROM files WHERE company_id = ?1 \
                         AND visitor_group_id = ?2 AND status = 'UPLOADED' \
                         ORDER BY group_seq LIMIT 1"
                    ),
                    params![group.company_id, group.visitor_group_id],
                    file_from_row,
                )
                .optional()
                .map_err(backend)?;
            let Some(mut rec) = next else {
                return Ok(None);
            };
            tx.execute(
                "UPDATE files SET status = 'PROCESSING', processing_start_date = ?2 \
                 WHERE file_id = ?1",
                params![rec.file_id, now],
            )
            .map_err(backend)?;
            tx.commit().map_err(backend)?;
            rec.status = FileStatus::Processing;
            rec.processing_start_date = Some(now);
            Ok(Some(rec))
        })
        .await
    }

    async fn visitor_states(
        &self,
        company_id: &str,
        keys: Vec<(String, String)>,
    ) -> StoreResult<Vec<Option<VisitState>>> {
        let company_id = company_id.to_string();
        self.with(move |conn| {
            let tx = conn.transaction().map_err(backend)?;
            let mut out = Vec::with_capacity(keys.len());
            {
                let mut stmt = tx
                    .prepare_cached(
                        "SELECT last_hit_time, visit_num, visit_start_time, visit_page_num \
                         FROM visitor_states WHERE company_id = ?1 AND report_suite = ?2 \
                         AND visitor_key = ?3",
                    )
                    .map_err(backend)?;
                for (suite, key) in &keys {
                    let st = stmt
                        .query_row(params![company_id, suite, key], |r| {
                            Ok(VisitState {
                                last_hit_time: r.get(0)?,
                                visit_num: r.get::<_, i64>(1)? as u32,
                                visit_start_time: r.get(2)?,
                                visit_page_num: r.get::<_, i64>(3)? as u32,
                            })
                        })
                        .optional()
                        .map_err(backend)?;
                    out.push(st);
                }
            }
            tx.commit().map_err(backend)?;
            Ok(out)
        })
        .await
    }

    async fn complete_file(
        &self,
        file_id: &str,
        completion: Completion,
    ) -> StoreResult<FileRecord> {
        let file_id = file_id.to_string();
        self.with(move |conn| {
            let tx = conn
                .transaction_with_behavior(TransactionBehavior::Immediate)
                .map_err(backend)?;
            let Some(mut rec) = file_by_id(&tx, &file_id)? else {
                return Err(StoreError::NotFound(format!("file '{file_id}'")));
            };
            if rec.status != FileStatus::Processing {
                return Err(StoreError::Conflict(format!(
                    "file '{file_id}' is {}, not PROCESSING",
                    rec.status
                )));
            }
            rec.status = FileStatus::Complete;
            rec.file_reader_complete_date = Some(completion.file_reader_complete_date);
            rec.processing_end_date = Some(completion.processing_end_date);
            rec.processing_log = completion.processing_log;
            if completion.release_blob {
                rec.blob_key = None;
            }
            tx.execute(
                "UPDATE files SET status = 'COMPLETE', file_reader_complete_date = ?2, \
                 processing_end_date = ?3, processing_log = ?4, blob_key = ?5 WHERE file_id = ?1",
                params![
                    file_id,
                    rec.file_reader_complete_date,
                    rec.processing_end_date,
                    rec.processing_log,
                    rec.blob_key
                ],
            )
            .map_err(backend)?;
            {
                let mut stmt = tx
                    .prepare_cached(
                        "INSERT INTO visitor_states (company_id, report_suite, visitor_key, \
                         last_hit_time, visit_num, visit_start_time, visit_page_num) \
                         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7) \
                         ON CONFLICT (company_id, report_suite, visitor_key) DO UPDATE SET \
                         last_hit_time = excluded.last_hit_time, visit_num = excluded.visit_num, \
                         visit_start_time = excluded.visit_start_time, \
                         visit_page_num = excluded.visit_page_num",
                    )
                    .map_err(backend)?;
                for e in &completion.delta.entries {
                    stmt.execute(params![
                        rec.company_id,
                        e.report_suite,
                        e.visitor_key,
                        e.state.last_hit_time,
                        e.state.visit_num as i64,
                        e.state.visit_start_time,
                        e.state.visit_page_num as i64
                    ])
                    .map_err(backend)?;
                }
            }
            tx.commit().map_err(backend)?;
            Ok(rec)
        })
        .await
    }

    async fn fail_file(
        &self,
        file_id: &str,
        reason: &str,
        code: &str,
        now: i64,
    ) -> StoreResult<FileRecord> {
        let (file_id, reason, code) = (file_id.to_string(), reason.to_string(), code.to_string());
        self.with(move |conn| {
            let tx = conn
                .transaction_with_behavior(TransactionBehavior::Immediate)
                .map_err(backend)?;
            let Some(mut rec) = file_by_id(&tx, &file_id)? else {
                return Err(StoreError::NotFound(format!("file '{file_id}'")));
            };
            if rec.status != FileStatus::Processing {
                return Err(StoreError::Conflict(format!(
                    "file '{file_id}' is {}, not PROCESSING",
                    rec.status
                )));
            }
            rec.status = FileStatus::Error;
            rec.error = Some(reason.clone());
            rec.error_code = Some(code);
            rec.processing_end_date = Some(now);
            let base = crate::upload_log(&rec.processing_log).to_string();
            rec.processing_log = if base.is_empty() {
                format!("{FAILURE_PREFIX}{reason}")
            } else {
                format!("{base}\n{FAILURE_PREFIX}{reason}")
            };
            tx.execute(
                "UPDATE files SET status = 'ERROR', error = ?2, error_code = ?3, \
                 processing_end_date = ?4, processing_log = ?5 WHERE file_id = ?1",
                params![file_id, rec.error, rec.error_code, now, rec.processing_log],
            )
            .map_err(backend)?;
            tx.commit().map_err(backend)?;
            Ok(rec)
        })
        .await
    }

    async fn retry_group(&self, group: &GroupRef) -> StoreResult<u64> {
        let group = group.clone();
        self.with(move |conn| {
            let n = conn
                .execute(
                    "UPDATE files SET status = 'UPLOADED', error = NULL, error_code = NULL, \
                     processing_start_date = NULL, file_reader_complete_date = NULL, \
                     processing_end_date = NULL WHERE company_id = ?1 AND visitor_group_id = ?2 \
                     AND status = 'ERROR'",
                    params![group.company_id, group.visitor_group_id],
                )
                .map_err(backend)?;
            Ok(n as u64)
        })
        .await
    }

    async fn requeue_processing(&self) -> StoreResult<u64> {
        self.with(|conn| {
            let n = conn
                .execute(
                    "UPDATE files SET status = 'UPLOADED', processing_start_date = NULL, \
                     file_reader_complete_date = NULL WHERE status = 'PROCESSING'",
                    [],
                )
                .map_err(backend)?;
            Ok(n as u64)
        })
        .await
    }

    async fn list_visitor_states(
        &self,
        company_id: &str,
        after: Option<(String, String)>,
        limit: u32,
    ) -> StoreResult<Vec<StoredState>> {
        let company_id = company_id.to_string();
        self.with(move |conn| {
            let (suite, key) = after.unzip();
            let mut stmt = conn
                .prepare_cached(
                    "SELECT report_suite, visitor_key, last_hit_time, visit_num, \
                     visit_start_time, visit_page_num FROM visitor_states \
                     WHERE company_id = ?1 AND (?2 IS NULL OR (report_suite, visitor_key) > (?2, ?3)) \
                     ORDER BY report_suite, visitor_key LIMIT ?4",
                )
                .map_err(backend)?;
            let rows = stmt
                .query_map(params![company_id, suite, key, limit as i64], |r| {
                    Ok(StoredState {
                        report_suite: r.get(0)?,
                        visitor_key: r.get(1)?,
                        last_hit_time: r.get(2)?,
                        visit_num: r.get::<_, i64>(3)? as u32,
                        visit_start_time: r.get(4)?,
                        visit_page_num: r.get::<_, i64>(5)? as u32,
                    })
                })
                .map_err(backend)?
                .collect::<rusqlite::Result<Vec<_>>>()
                .map_err(backend);
            rows
        })
        .await
    }
}
