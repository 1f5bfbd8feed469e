//! Tenants: companies (with their settings as JSON), report suites and API
//! clients.
//!
//! A client id is unique across companies; a report suite id is unique
//! within its company (the key is (company, rsid)): every query on
//! `report_suites` names the company, so nothing a company does or asks
//! about its suites depends on another company's. A report suite or a
//! client is created only for an existing company. [`claim_report_suite`]
//! decides existence and creation in one `IMMEDIATE` transaction, so two
//! uploads of one company racing for a new rsid get one `Created` and one
//! `Owned`.

use bdia_model::conversion::EvarSetting;
use rusqlite::{params, Connection, Row};

use super::{commit, db, exec, is_unique_violation, query_all, query_opt, write_tx};
use crate::common::{now, single_hit_conflict};
use crate::{
    ApiClient, Company, CompanySettings, ReportSuite, StoreError, StoreResult, SuiteClaim,
};

const COMPANY_COLUMNS: &str = "id, salt, settings, created";

const SUITE_COLUMNS: &str = "company_id, rsid, time_zone, created";

const SUITE_READ: &str = "company_id, rsid, time_zone, created, accept_single_hits, \
     internal_url_filters, evar_settings";

const CLIENT_COLUMNS: &str = "client_id, company_id, secret_hash, technical_account, \
     public_key_pem, disabled, created, token_generation";

/// A `companies` row before its settings JSON is decoded.
struct CompanyRow {
    id: String,
    salt: String,
    settings: String,
    created: i64,
}

impl CompanyRow {
    fn read(row: &Row<'_>) -> rusqlite::Result<CompanyRow> {
        Ok(CompanyRow {
            id: row.get("id")?,
            salt: row.get("salt")?,
            settings: row.get("settings")?,
            created: row.get("created")?,
        })
    }

    fn decode(self) -> StoreResult<Company> {
        let settings: CompanySettings = serde_json::from_str(&self.settings).map_err(|e| {
            StoreError::backend(format!("decode the settings of company '{}'", self.id), e)
        })?;
        Ok(Company {
            id: self.id,
            salt: self.salt,
            settings,
            created: self.created,
        })
    }
}

fn suite_from_row(row: &Row<'_>) -> rusqlite::Result<ReportSuite> {
    Ok(ReportSuite {
        rsid: row.get("rsid")?,
        company_id: row.get("company_id")?,
        time_zone: row.get("time_zone")?,
        created: row.get("created")?,
        accept_single_hits: row.get::<_, i64>("accept_single_hits")? != 0,
        internal_url_filters: json_column(row, "internal_url_filters")?,
        evar_settings: json_column(row, "evar_settings")?,
    })
}

/// A JSON text column, decoded (a conversion error when it does not decode).
fn json_column<T: serde::de::DeserializeOwned>(row: &Row<'_>, name: &str) -> rusqlite::Result<T> {
    let text: String = row.get(name)?;
    serde_json::from_str(&text).map_err(|e| {
        rusqlite::Error::FromSqlConversionFailure(0, rusqlite::types::Type::Text, Box::new(e))
    })
}

fn client_from_row(row: &Row<'_>) -> rusqlite::Result<ApiClient> {
    Ok(ApiClient {
        client_id: row.get("client_id")?,
        company_id: row.get("company_id")?,
        secret_hash: row.get("secret_hash")?,
        technical_account: row.get("technical_account")?,
        public_key_pem: row.get("public_key_pem")?,
        disabled: row.get::<_, i64>("disabled")? != 0,
        created: row.get("created")?,
        token_generation: row.get::<_, i64>("token_generation")?.max(0) as u64,
    })
}

fn settings_json(settings: &CompanySettings) -> StoreResult<String> {
    serde_json::to_string(settings).map_err(|e| StoreError::backend("encode company settings", e))
}

pub(super) fn create_company(
    conn: &Connection,
    id: String,
    salt: String,
    settings: CompanySettings,
) -> StoreResult<Company> {
    let json = settings_json(&settings)?;
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
        Err(e) if is_unique_violation(&e) => Err(StoreError::Conflict(format!("company '{id}'"))),
        Err(e) => Err(db("insert a company")(e)),
    }
}

pub(super) fn get_company(conn: &Connection, id: &str) -> StoreResult<Option<Company>> {
    query_opt(
        conn,
        "read a company",
        &format!("SELECT {COMPANY_COLUMNS} FROM companies WHERE id = ?1"),
        [id],
        CompanyRow::read,
    )?
    .map(CompanyRow::decode)
    .transpose()
}

pub(super) fn list_companies(conn: &Connection) -> StoreResult<Vec<Company>> {
    query_all(
        conn,
        "list companies",
        &format!("SELECT {COMPANY_COLUMNS} FROM companies ORDER BY id"),
        [],
        CompanyRow::read,
    )?
    .into_iter()
    .map(CompanyRow::decode)
    .collect()
}

pub(super) fn update_company_settings(
    conn: &Connection,
    id: &str,
    settings: CompanySettings,
) -> StoreResult<Company> {
    let json = settings_json(&settings)?;
    let n = exec(
        conn,
        "update company settings",
        "UPDATE companies SET settings = ?2 WHERE id = ?1",
        params![id, json],
    )?;
    if n == 0 {
        return Err(StoreError::NotFound(format!("company '{id}'")));
    }
    get_company(conn, id)?.ok_or_else(|| StoreError::NotFound(format!("company '{id}'")))
}

pub(super) fn create_report_suite(
    conn: &Connection,
    company_id: String,
    rsid: String,
    time_zone: String,
) -> StoreResult<ReportSuite> {
    if get_company(conn, &company_id)?.is_none() {
        return Err(StoreError::NotFound(format!("company '{company_id}'")));
    }
    let created = now();
    match conn.execute(
        &format!("INSERT INTO report_suites ({SUITE_COLUMNS}) VALUES (?1, ?2, ?3, ?4)"),
        params![company_id, rsid, time_zone, created],
    ) {
        Ok(_) => Ok(ReportSuite {
            rsid,
            company_id,
            time_zone,
            created,
            accept_single_hits: false,
            internal_url_filters: Vec::new(),
            evar_settings: Vec::new(),
        }),
        Err(e) if is_unique_violation(&e) => Err(StoreError::Conflict(format!(
            "report suite '{rsid}' of company '{company_id}'"
        ))),
        Err(e) => Err(db("insert a report suite")(e)),
    }
}

pub(super) fn get_report_suite(
    conn: &Connection,
    company_id: &str,
    rsid: &str,
) -> StoreResult<Option<ReportSuite>> {
    query_opt(
        conn,
        "read a report suite",
        &format!("SELECT {SUITE_READ} FROM report_suites WHERE company_id = ?1 AND rsid = ?2"),
        [company_id, rsid],
        suite_from_row,
    )
}

pub(super) fn list_report_suites(
    conn: &Connection,
    company_id: Option<&str>,
) -> StoreResult<Vec<ReportSuite>> {
    query_all(
        conn,
        "list report suites",
        &format!(
            "SELECT {SUITE_READ} FROM report_suites \
             WHERE ?1 IS NULL OR company_id = ?1 ORDER BY company_id, rsid"
        ),
        [company_id],
        suite_from_row,
    )
}

pub(super) fn claim_report_suite(
    conn: &mut Connection,
    company_id: &str,
    rsid: &str,
    create: bool,
) -> StoreResult<SuiteClaim> {
    let tx = write_tx(conn, "begin a report suite claim")?;
    let claim = if get_report_suite(&tx, company_id, rsid)?.is_some() {
        SuiteClaim::Owned
    } else if !create {
        SuiteClaim::Unknown
    } else {
        exec(
            &tx,
            "create a claimed report suite",
            &format!("INSERT INTO report_suites ({SUITE_COLUMNS}) VALUES (?1, ?2, 'UTC', ?3)"),
            params![company_id, rsid, now()],
        )?;
        SuiteClaim::Created
    };
    commit(tx, "commit a report suite claim")?;
    Ok(claim)
}

pub(super) fn set_accept_single_hits(
    conn: &mut Connection,
    company_id: &str,
    rsid: &str,
    accept: bool,
) -> StoreResult<ReportSuite> {
    let tx = write_tx(conn, "begin a single-hit setting")?;
    let updated = tx.execute(
        "UPDATE report_suites SET accept_single_hits = ?3 WHERE company_id = ?1 AND rsid = ?2",
        params![company_id, rsid, accept as i64],
    );
    match updated {
        Ok(0) => {
            return Err(StoreError::NotFound(format!(
                "report suite '{rsid}' of company '{company_id}'"
            )))
        }
        Ok(_) => {}
        Err(e) if is_unique_violation(&e) => {
            return Err(StoreError::Conflict(single_hit_conflict(rsid)))
        }
        Err(e) => return Err(db("set a suite's single-hit setting")(e)),
    }
    let suite = get_report_suite(&tx, company_id, rsid)?
        .ok_or_else(|| StoreError::NotFound(format!("report suite '{rsid}'")))?;
    commit(tx, "commit a single-hit setting")?;
    Ok(suite)
}

pub(super) fn set_internal_url_filters(
    conn: &Connection,
    company_id: &str,
    rsid: &str,
    filters: &[String],
) -> StoreResult<ReportSuite> {
    set_suite_json(conn, company_id, rsid, "internal_url_filters", filters)
}

pub(super) fn set_evar_settings(
    conn: &Connection,
    company_id: &str,
    rsid: &str,
    settings: &[EvarSetting],
) -> StoreResult<ReportSuite> {
    set_suite_json(conn, company_id, rsid, "evar_settings", settings)
}

/// Replaces one JSON column of a company's suite (`column` is one of this
/// module's names) and returns the suite; [`StoreError::NotFound`] for a
/// suite the company does not have.
fn set_suite_json<T: serde::Serialize + ?Sized>(
    conn: &Connection,
    company_id: &str,
    rsid: &str,
    column: &'static str,
    value: &T,
) -> StoreResult<ReportSuite> {
    let json = serde_json::to_string(value)
        .map_err(|e| StoreError::backend(format!("encode a suite's {column}"), e))?;
    let n = exec(
        conn,
        "set a suite's settings",
        &format!("UPDATE report_suites SET {column} = ?3 WHERE company_id = ?1 AND rsid = ?2"),
        params![company_id, rsid, json],
    )?;
    if n == 0 {
        return Err(StoreError::NotFound(format!(
            "report suite '{rsid}' of company '{company_id}'"
        )));
    }
    get_report_suite(conn, company_id, rsid)?
        .ok_or_else(|| StoreError::NotFound(format!("report suite '{rsid}'")))
}

pub(super) fn single_hit_suite(conn: &Connection, rsid: &str) -> StoreResult<Option<ReportSuite>> {
    query_opt(
        conn,
        "read a single-hit suite",
        &format!(
            "SELECT {SUITE_READ} FROM report_suites WHERE rsid = ?1 AND accept_single_hits = 1"
        ),
        [rsid],
        suite_from_row,
    )
}

pub(super) fn create_client(conn: &Connection, client: ApiClient) -> StoreResult<ApiClient> {
    if get_company(conn, &client.company_id)?.is_none() {
        return Err(StoreError::NotFound(format!(
            "company '{}'",
            client.company_id
        )));
    }
    match conn.execute(
        &format!("INSERT INTO clients ({CLIENT_COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)"),
        params![
            client.client_id,
            client.company_id,
            client.secret_hash,
            client.technical_account,
            client.public_key_pem,
            client.disabled as i64,
            client.created,
            generation(client.token_generation)?
        ],
    ) {
        Ok(_) => Ok(client),
        Err(e) if is_unique_violation(&e) => Err(StoreError::Conflict(format!(
            "client '{}'",
            client.client_id
        ))),
        Err(e) => Err(db("insert a client")(e)),
    }
}

pub(super) fn get_client(conn: &Connection, client_id: &str) -> StoreResult<Option<ApiClient>> {
    query_opt(
        conn,
        "read a client",
        &format!("SELECT {CLIENT_COLUMNS} FROM clients WHERE client_id = ?1"),
        [client_id],
        client_from_row,
    )
}

pub(super) fn list_clients(
    conn: &Connection,
    company_id: Option<&str>,
) -> StoreResult<Vec<ApiClient>> {
    query_all(
        conn,
        "list clients",
        &format!(
            "SELECT {CLIENT_COLUMNS} FROM clients WHERE ?1 IS NULL OR company_id = ?1 \
             ORDER BY client_id"
        ),
        [company_id],
        client_from_row,
    )
}

pub(super) fn set_client_disabled(
    conn: &Connection,
    client_id: &str,
    disabled: bool,
) -> StoreResult<()> {
    // Disabling revokes the tokens issued so far (next generation);
    // enabling leaves the generation, so they stay revoked.
    let n = exec(
        conn,
        "enable or disable a client",
        "UPDATE clients SET disabled = ?2, token_generation = token_generation + ?2 \
         WHERE client_id = ?1",
        params![client_id, disabled as i64],
    )?;
    if n == 0 {
        return Err(StoreError::NotFound(format!("client '{client_id}'")));
    }
    Ok(())
}

pub(super) fn rotate_client_secret(
    conn: &Connection,
    client_id: &str,
    secret_hash: &str,
) -> StoreResult<ApiClient> {
    query_opt(
        conn,
        "rotate a client's secret",
        &format!(
            "UPDATE clients SET secret_hash = ?2, token_generation = token_generation + 1 \
             WHERE client_id = ?1 RETURNING {CLIENT_COLUMNS}"
        ),
        params![client_id, secret_hash],
        client_from_row,
    )?
    .ok_or_else(|| StoreError::NotFound(format!("client '{client_id}'")))
}

/// A generation as stored (SQLite integers are signed).
fn generation(g: u64) -> StoreResult<i64> {
    i64::try_from(g).map_err(|_| StoreError::Invalid(format!("token generation {g} is too large")))
}

pub(super) fn remember_assertion(
    conn: &mut Connection,
    digest: &str,
    keep_until: i64,
    now: i64,
) -> StoreResult<bool> {
    let tx = write_tx(conn, "begin remembering an assertion")?;
    exec(
        &tx,
        "forget expired assertions",
        "DELETE FROM jwt_assertions WHERE keep_until < ?1",
        [now],
    )?;
    let fresh = exec(
        &tx,
        "remember an assertion",
        "INSERT INTO jwt_assertions (digest, keep_until) VALUES (?1, ?2) \
         ON CONFLICT (digest) DO NOTHING",
        params![digest, keep_until],
    )? == 1;
    commit(tx, "commit a remembered assertion")?;
    Ok(fresh)
}

pub(super) fn set_client_public_key(
    conn: &Connection,
    client_id: &str,
    pem: Option<&str>,
) -> StoreResult<()> {
    let n = exec(
        conn,
        "set a client's public key",
        "UPDATE clients SET public_key_pem = ?2 WHERE client_id = ?1",
        params![client_id, pem],
    )?;
    if n == 0 {
        return Err(StoreError::NotFound(format!("client '{client_id}'")));
    }
    Ok(())
}
