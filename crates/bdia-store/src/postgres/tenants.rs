//! Tenants: companies (settings as JSONB), report suites and API clients.
//!
//! Same rules as the SQLite backend. Each write is one statement whose
//! outcome the database decides atomically: a new id is an `INSERT` that
//! breaks the primary key when it exists ([`StoreError::Conflict`]);
//! [`claim_report_suite`] is an `INSERT ... ON CONFLICT DO NOTHING`, so of
//! two claims of one new rsid (on any nodes) one inserts (`Created`) and the
//! other finds the row (`Owned`); token generations move up inside the
//! `UPDATE` that disables or rotates.

use bdia_model::conversion::EvarSetting;
use deadpool_postgres::GenericClient;
use tokio_postgres::types::Json;
use tokio_postgres::Row;

use super::{
    db, exec, is_foreign_key_violation, is_unique_violation, map_opt, map_rows, query_all,
    query_opt,
};
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

fn company_from_row(row: &Row) -> StoreResult<Company> {
    let read = || -> Result<_, tokio_postgres::Error> {
        Ok((
            row.try_get::<_, String>("id")?,
            row.try_get::<_, String>("salt")?,
            row.try_get::<_, serde_json::Value>("settings")?,
            row.try_get::<_, i64>("created")?,
        ))
    };
    let (id, salt, settings, created) = read().map_err(db("read a company"))?;
    let settings: CompanySettings = serde_json::from_value(settings)
        .map_err(|e| StoreError::backend(format!("decode the settings of company '{id}'"), e))?;
    Ok(Company {
        id,
        salt,
        settings,
        created,
    })
}

fn suite_from_row(row: &Row) -> Result<ReportSuite, tokio_postgres::Error> {
    Ok(ReportSuite {
        rsid: row.try_get("rsid")?,
        company_id: row.try_get("company_id")?,
        time_zone: row.try_get("time_zone")?,
        created: row.try_get("created")?,
        accept_single_hits: row.try_get("accept_single_hits")?,
        internal_url_filters: row
            .try_get::<_, Json<Vec<String>>>("internal_url_filters")?
            .0,
        evar_settings: row.try_get::<_, Json<Vec<EvarSetting>>>("evar_settings")?.0,
    })
}

fn client_from_row(row: &Row) -> Result<ApiClient, tokio_postgres::Error> {
    Ok(ApiClient {
        client_id: row.try_get("client_id")?,
        company_id: row.try_get("company_id")?,
        secret_hash: row.try_get("secret_hash")?,
        technical_account: row.try_get("technical_account")?,
        public_key_pem: row.try_get("public_key_pem")?,
        disabled: row.try_get("disabled")?,
        created: row.try_get("created")?,
        token_generation: row.try_get::<_, i64>("token_generation")?.max(0) as u64,
    })
}

pub(super) async fn create_company(
    c: &impl GenericClient,
    id: &str,
    salt: &str,
    settings: CompanySettings,
) -> StoreResult<Company> {
    let created = now();
    let stmt = "INSERT INTO companies (id, salt, settings, created) VALUES ($1, $2, $3, $4)";
    match exec(
        c,
        "insert a company",
        stmt,
        &[&id, &salt, &Json(&settings), &created],
    )
    .await
    {
        Ok(_) => Ok(Company {
            id: id.to_string(),
            salt: salt.to_string(),
            settings,
            created,
        }),
        Err(e) if backend_unique_violation(&e) => {
            Err(StoreError::Conflict(format!("company '{id}'")))
        }
        Err(e) => Err(e),
    }
}

/// True when a store error is a broken unique constraint reported by the
/// database.
pub(super) fn backend_unique_violation(e: &StoreError) -> bool {
    driver_error(e).is_some_and(is_unique_violation)
}

/// True when a store error is a broken foreign key reported by the
/// database.
pub(super) fn backend_foreign_key_violation(e: &StoreError) -> bool {
    driver_error(e).is_some_and(is_foreign_key_violation)
}

/// The driver's error under a [`StoreError::Backend`].
fn driver_error(e: &StoreError) -> Option<&tokio_postgres::Error> {
    match e {
        StoreError::Backend { source, .. } => source.downcast_ref::<tokio_postgres::Error>(),
        _ => None,
    }
}

pub(super) async fn get_company(c: &impl GenericClient, id: &str) -> StoreResult<Option<Company>> {
    query_opt(
        c,
        "read a company",
        &format!("SELECT {COMPANY_COLUMNS} FROM companies WHERE id = $1"),
        &[&id],
    )
    .await?
    .as_ref()
    .map(company_from_row)
    .transpose()
}

pub(super) async fn list_companies(c: &impl GenericClient) -> StoreResult<Vec<Company>> {
    query_all(
        c,
        "list companies",
        &format!("SELECT {COMPANY_COLUMNS} FROM companies ORDER BY id"),
        &[],
    )
    .await?
    .iter()
    .map(company_from_row)
    .collect()
}

pub(super) async fn update_company_settings(
    c: &impl GenericClient,
    id: &str,
    settings: CompanySettings,
) -> StoreResult<Company> {
    query_opt(
        c,
        "update company settings",
        &format!("UPDATE companies SET settings = $2 WHERE id = $1 RETURNING {COMPANY_COLUMNS}"),
        &[&id, &Json(&settings)],
    )
    .await?
    .as_ref()
    .map(company_from_row)
    .transpose()?
    .ok_or_else(|| StoreError::NotFound(format!("company '{id}'")))
}

pub(super) async fn create_report_suite(
    c: &impl GenericClient,
    company_id: &str,
    rsid: &str,
    time_zone: &str,
) -> StoreResult<ReportSuite> {
    let created = now();
    let stmt = format!("INSERT INTO report_suites ({SUITE_COLUMNS}) VALUES ($1, $2, $3, $4)");
    let inserted = exec(
        c,
        "insert a report suite",
        &stmt,
        &[&company_id, &rsid, &time_zone, &created],
    )
    .await;
    match inserted {
        Ok(_) => Ok(ReportSuite {
            rsid: rsid.to_string(),
            company_id: company_id.to_string(),
            time_zone: time_zone.to_string(),
            created,
            accept_single_hits: false,
            internal_url_filters: Vec::new(),
            evar_settings: Vec::new(),
        }),
        Err(e) if backend_unique_violation(&e) => Err(StoreError::Conflict(format!(
            "report suite '{rsid}' of company '{company_id}'"
        ))),
        Err(e) if backend_foreign_key_violation(&e) => {
            Err(StoreError::NotFound(format!("company '{company_id}'")))
        }
        Err(e) => Err(e),
    }
}

pub(super) async fn get_report_suite(
    c: &impl GenericClient,
    company_id: &str,
    rsid: &str,
) -> StoreResult<Option<ReportSuite>> {
    let row = query_opt(
        c,
        "read a report suite",
        &format!("SELECT {SUITE_READ} FROM report_suites WHERE company_id = $1 AND rsid = $2"),
        &[&company_id, &rsid],
    )
    .await?;
    map_opt(row, "read a report suite", suite_from_row)
}

pub(super) async fn list_report_suites(
    c: &impl GenericClient,
    company_id: Option<&str>,
) -> StoreResult<Vec<ReportSuite>> {
    let rows = query_all(
        c,
        "list report suites",
        &format!(
            "SELECT {SUITE_READ} FROM report_suites \
             WHERE $1::text IS NULL OR company_id = $1 ORDER BY company_id, rsid"
        ),
        &[&company_id],
    )
    .await?;
    map_rows(rows, "list report suites", suite_from_row)
}

pub(super) async fn claim_report_suite(
    c: &impl GenericClient,
    company_id: &str,
    rsid: &str,
    create: bool,
) -> StoreResult<SuiteClaim> {
    if !create {
        return Ok(match get_report_suite(c, company_id, rsid).await? {
            Some(_) => SuiteClaim::Owned,
            None => SuiteClaim::Unknown,
        });
    }
    // One statement: of two claims of a new rsid, the second waits for the
    // first's row and does nothing.
    let created = exec(
        c,
        "create a claimed report suite",
        &format!(
            "INSERT INTO report_suites ({SUITE_COLUMNS}) VALUES ($1, $2, 'UTC', $3) \
             ON CONFLICT (company_id, rsid) DO NOTHING"
        ),
        &[&company_id, &rsid, &now()],
    )
    .await?;
    Ok(if created == 1 {
        SuiteClaim::Created
    } else {
        SuiteClaim::Owned
    })
}

pub(super) async fn set_accept_single_hits(
    c: &impl GenericClient,
    company_id: &str,
    rsid: &str,
    accept: bool,
) -> StoreResult<ReportSuite> {
    let row = query_opt(
        c,
        "set a suite's single-hit setting",
        &format!(
            "UPDATE report_suites SET accept_single_hits = $3 \
             WHERE company_id = $1 AND rsid = $2 RETURNING {SUITE_READ}"
        ),
        &[&company_id, &rsid, &accept],
    )
    .await;
    match row {
        Ok(row) => {
            map_opt(row, "set a suite's single-hit setting", suite_from_row)?.ok_or_else(|| {
                StoreError::NotFound(format!("report suite '{rsid}' of company '{company_id}'"))
            })
        }
        Err(e) if backend_unique_violation(&e) => {
            Err(StoreError::Conflict(single_hit_conflict(rsid)))
        }
        Err(e) => Err(e),
    }
}

pub(super) async fn set_internal_url_filters(
    c: &impl GenericClient,
    company_id: &str,
    rsid: &str,
    filters: &[String],
) -> StoreResult<ReportSuite> {
    set_suite_json(c, company_id, rsid, "internal_url_filters", &Json(filters)).await
}

pub(super) async fn set_evar_settings(
    c: &impl GenericClient,
    company_id: &str,
    rsid: &str,
    settings: &[EvarSetting],
) -> StoreResult<ReportSuite> {
    set_suite_json(c, company_id, rsid, "evar_settings", &Json(settings)).await
}

/// Replaces one JSONB column of a company's suite (`column` is one of
/// this module's names) and returns the suite; [`StoreError::NotFound`]
/// for a suite the company does not have.
async fn set_suite_json(
    c: &impl GenericClient,
    company_id: &str,
    rsid: &str,
    column: &'static str,
    json: &(dyn tokio_postgres::types::ToSql + Sync),
) -> StoreResult<ReportSuite> {
    let row = query_opt(
        c,
        "set a suite's settings",
        &format!(
            "UPDATE report_suites SET {column} = $3 \
             WHERE company_id = $1 AND rsid = $2 RETURNING {SUITE_READ}"
        ),
        &[&company_id, &rsid, json],
    )
    .await?;
    map_opt(row, "set a suite's settings", suite_from_row)?.ok_or_else(|| {
        StoreError::NotFound(format!("report suite '{rsid}' of company '{company_id}'"))
    })
}

pub(super) async fn single_hit_suite(
    c: &impl GenericClient,
    rsid: &str,
) -> StoreResult<Option<ReportSuite>> {
    let row = query_opt(
        c,
        "read a single-hit suite",
        &format!("SELECT {SUITE_READ} FROM report_suites WHERE rsid = $1 AND accept_single_hits"),
        &[&rsid],
    )
    .await?;
    map_opt(row, "read a single-hit suite", suite_from_row)
}

pub(super) async fn create_client(
    c: &impl GenericClient,
    client: ApiClient,
) -> StoreResult<ApiClient> {
    let generation = generation(client.token_generation)?;
    let inserted = exec(
        c,
        "insert a client",
        &format!("INSERT INTO clients ({CLIENT_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)"),
        &[
            &client.client_id,
            &client.company_id,
            &client.secret_hash,
            &client.technical_account,
            &client.public_key_pem,
            &client.disabled,
            &client.created,
            &generation,
        ],
    )
    .await;
    match inserted {
        Ok(_) => Ok(client),
        Err(e) if backend_unique_violation(&e) => Err(StoreError::Conflict(format!(
            "client '{}'",
            client.client_id
        ))),
        Err(e) if backend_foreign_key_violation(&e) => Err(StoreError::NotFound(format!(
            "company '{}'",
            client.company_id
        ))),
        Err(e) => Err(e),
    }
}

pub(super) async fn get_client(
    c: &impl GenericClient,
    client_id: &str,
) -> StoreResult<Option<ApiClient>> {
    let row = query_opt(
        c,
        "read a client",
        &format!("SELECT {CLIENT_COLUMNS} FROM clients WHERE client_id = $1"),
        &[&client_id],
    )
    .await?;
    map_opt(row, "read a client", client_from_row)
}

pub(super) async fn list_clients(
    c: &impl GenericClient,
    company_id: Option<&str>,
) -> StoreResult<Vec<ApiClient>> {
    let rows = query_all(
        c,
        "list clients",
        &format!(
            "SELECT {CLIENT_COLUMNS} FROM clients WHERE $1::text IS NULL OR company_id = $1 \
             ORDER BY client_id"
        ),
        &[&company_id],
    )
    .await?;
    map_rows(rows, "list clients", client_from_row)
}

pub(super) async fn set_client_disabled(
    c: &impl GenericClient,
    client_id: &str,
    disabled: bool,
) -> StoreResult<()> {
    // Disabling revokes the tokens issued so far (next generation);
    // enabling leaves the generation, so they stay revoked.
    let n = exec(
        c,
        "enable or disable a client",
        "UPDATE clients SET disabled = $2, \
         token_generation = token_generation + CASE WHEN $2 THEN 1 ELSE 0 END \
         WHERE client_id = $1",
        &[&client_id, &disabled],
    )
    .await?;
    if n == 0 {
        return Err(StoreError::NotFound(format!("client '{client_id}'")));
    }
    Ok(())
}

pub(super) async fn rotate_client_secret(
    c: &impl GenericClient,
    client_id: &str,
    secret_hash: &str,
) -> StoreResult<ApiClient> {
    let row = query_opt(
        c,
        "rotate a client's secret",
        &format!(
            "UPDATE clients SET secret_hash = $2, token_generation = token_generation + 1 \
             WHERE client_id = $1 RETURNING {CLIENT_COLUMNS}"
        ),
        &[&client_id, &secret_hash],
    )
    .await?;
    map_opt(row, "rotate a client's secret", client_from_row)?
        .ok_or_else(|| StoreError::NotFound(format!("client '{client_id}'")))
}

/// A generation as stored (`BIGINT` is signed).
fn generation(g: u64) -> StoreResult<i64> {
    i64::try_from(g).map_err(|_| StoreError::Invalid(format!("token generation {g} is too large")))
}

pub(super) async fn remember_assertion(
    c: &impl GenericClient,
    digest: &str,
    keep_until: i64,
    now: i64,
) -> StoreResult<bool> {
    // One statement decides: a new digest is inserted, one remembered but
    // expired is taken over (as if forgotten first), one still remembered
    // changes nothing (a replay). Of two concurrent calls with one digest,
    // the second waits for the first's row and finds it remembered.
    let fresh = exec(
        c,
        "remember an assertion",
        "INSERT INTO jwt_assertions (digest, keep_until) VALUES ($1, $2) \
         ON CONFLICT (digest) DO UPDATE SET keep_until = EXCLUDED.keep_until \
         WHERE jwt_assertions.keep_until < $3",
        &[&digest, &keep_until, &now],
    )
    .await?
        == 1;
    // Forget the expired ones; rows another call is forgetting right now
    // are skipped, not waited for.
    exec(
        c,
        "forget expired assertions",
        "DELETE FROM jwt_assertions WHERE digest IN (SELECT digest FROM jwt_assertions \
         WHERE keep_until < $1 FOR UPDATE SKIP LOCKED)",
        &[&now],
    )
    .await?;
    Ok(fresh)
}

pub(super) async fn set_client_public_key(
    c: &impl GenericClient,
    client_id: &str,
    pem: Option<&str>,
) -> StoreResult<()> {
    let n = exec(
        c,
        "set a client's public key",
        "UPDATE clients SET public_key_pem = $2 WHERE client_id = $1",
        &[&client_id, &pem],
    )
    .await?;
    if n == 0 {
        return Err(StoreError::NotFound(format!("client '{client_id}'")));
    }
    Ok(())
}
