//! Rules shared by the metadata backends: paging of listings, the changes
//! a status update, a failure or a retraction makes to a record (each
//! backend reads the record, applies one of these, and writes it back in
//! the same transaction), the checks of a group lease, and the stored form
//! of a visitor's eVars.

use bdia_model::commerce::SeenId;
use bdia_model::conversion::PersistedEvar;

use crate::{
    FileRecord, FileStatus, GroupLease, GroupRef, StatusUpdate, StoreError, StoreResult,
    FAILURE_PREFIX,
};

/// Unix seconds on this machine's clock.
pub(crate) fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

/// The page size and cursor of a listing newest first: `limit` 0 means
/// 100, at most 1000; the cursor is the last row's key of the page before.
pub(crate) fn page_bounds(limit: u32, cursor: Option<&str>) -> StoreResult<(i64, Option<i64>)> {
    let limit = match limit {
        0 => 100,
        n => n.min(1000),
    };
    let cursor = cursor
        .map(|c| {
            c.parse::<i64>()
                .map_err(|_| StoreError::Invalid(format!("cursor '{c}'")))
        })
        .transpose()?;
    Ok((i64::from(limit), cursor))
}

/// Splits the `limit + 1` rows read for a page into the page and the
/// cursor of the next one (the key of the page's last row), `None` when
/// there is no next page.
pub(crate) fn split_page<T>(
    mut rows: Vec<T>,
    limit: i64,
    key: impl Fn(&T) -> i64,
) -> (Vec<T>, Option<String>) {
    if rows.len() as i64 > limit {
        rows.truncate(limit as usize);
        let next = rows.last().map(|r| key(r).to_string());
        (rows, next)
    } else {
        (rows, None)
    }
}

/// Applies a [`StatusUpdate`]: each field that is set replaces the record's.
pub(crate) fn apply_status_update(rec: &mut FileRecord, update: StatusUpdate) {
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
}

/// A `PROCESSING` record as [`crate::MetadataStore::fail_file`] leaves it:
/// `ERROR` with the reason, its code, the end date, and the reason after
/// the upload part of the log (a note of an earlier failure is replaced).
pub(crate) fn apply_failure(rec: &mut FileRecord, reason: &str, code: String, now: i64) {
    rec.status = FileStatus::Error;
    rec.error = Some(reason.to_string());
    rec.error_code = Some(code);
    rec.processing_end_date = Some(now);
    let base = crate::upload_log(&rec.processing_log);
    rec.processing_log = if base.is_empty() {
        format!("{FAILURE_PREFIX}{reason}")
    } else {
        format!("{base}\n{FAILURE_PREFIX}{reason}")
    };
}

/// What [`crate::MetadataStore::mark_hits_retracted`] does to a record:
/// `Ok(false)` when it is already retracted (nothing changes),
/// [`StoreError::Conflict`] when it is not `COMPLETE`, else `Ok(true)` with
/// the retraction and its log line applied.
pub(crate) fn apply_retraction(rec: &mut FileRecord, hits: u64, now: i64) -> StoreResult<bool> {
    if rec.hits_retracted_at.is_some() {
        return Ok(false);
    }
    if rec.status != FileStatus::Complete {
        return Err(StoreError::Conflict(format!(
            "file '{}' is {}, not {}",
            rec.file_id,
            rec.status,
            FileStatus::Complete
        )));
    }
    let note = crate::retraction_note(now, hits);
    if !rec.processing_log.is_empty() && !rec.processing_log.ends_with('\n') {
        rec.processing_log.push('\n');
    }
    rec.processing_log.push_str(&note);
    rec.hits_retracted_at = Some(now);
    rec.hits_retracted = Some(hits);
    Ok(true)
}

/// The `PROCESSING` check of completion and failure: [`StoreError::NotFound`]
/// for no record, [`StoreError::Conflict`] for another status.
pub(crate) fn require_processing(
    rec: Option<FileRecord>,
    file_id: &str,
) -> StoreResult<FileRecord> {
    let Some(rec) = rec else {
        return Err(StoreError::NotFound(format!("file '{file_id}'")));
    };
    if rec.status != FileStatus::Processing {
        return Err(StoreError::Conflict(format!(
            "file '{file_id}' is {}, not {}",
            rec.status,
            FileStatus::Processing
        )));
    }
    Ok(rec)
}

/// The group a file belongs to.
pub(crate) fn group_of(rec: &FileRecord) -> GroupRef {
    GroupRef {
        company_id: rec.company_id.clone(),
        visitor_group_id: rec.visitor_group_id.clone(),
    }
}

/// The error of a lease that is not current.
pub(crate) fn fenced(lease: &GroupLease) -> StoreError {
    StoreError::Fenced(format!(
        "visitor group '{}' of company '{}' is no longer held by node '{}' under epoch {}",
        lease.group.visitor_group_id, lease.group.company_id, lease.node_id, lease.epoch
    ))
}

/// [`StoreError::Fenced`] unless `lease` is its group's current lease:
/// `holder` is the group's (holder, epoch) as stored, `None` for a group
/// never claimed. Expiry alone does not fence: a lease nobody took over is
/// still the only one, and any takeover moves the epoch.
pub(crate) fn check_holder(
    lease: &GroupLease,
    holder: Option<(Option<String>, i64)>,
) -> StoreResult<()> {
    match holder {
        Some((Some(node), epoch)) if node == lease.node_id && epoch as u64 == lease.epoch => Ok(()),
        _ => Err(fenced(lease)),
    }
}

/// [`StoreError::Fenced`] unless `group` (of `file_id`) is the lease's group.
pub(crate) fn check_file_group(
    lease: &GroupLease,
    file_id: &str,
    group: &GroupRef,
) -> StoreResult<()> {
    if &lease.group != group {
        return Err(StoreError::Fenced(format!(
            "file '{file_id}' is not in visitor group '{}' of company '{}'",
            lease.group.visitor_group_id, lease.group.company_id
        )));
    }
    Ok(())
}

/// A group's actions as read newest first (action, actor, at, files), as
/// [`crate::GroupInfo::actions`] keeps them: parsed, oldest first.
pub(crate) fn group_actions(
    newest_first: Vec<(String, String, i64, i64)>,
) -> StoreResult<Vec<crate::GroupActionRecord>> {
    let mut out = newest_first
        .into_iter()
        .map(|(action, actor, at, files)| {
            Ok(crate::GroupActionRecord {
                action: action
                    .parse()
                    .map_err(|e| StoreError::backend("read a group action", e))?,
                actor,
                at,
                files: files as u64,
            })
        })
        .collect::<StoreResult<Vec<_>>>()?;
    out.reverse();
    Ok(out)
}

/// The state of a group whose `paused` flag is `paused`.
pub(crate) fn group_state(paused: bool) -> crate::GroupState {
    if paused {
        crate::GroupState::Paused
    } else {
        crate::GroupState::Active
    }
}

/// The conflict of turning single hits on for an rsid whose single hits
/// another company's suite already takes.
pub(crate) fn single_hit_conflict(rsid: &str) -> String {
    format!("single hits for report suite '{rsid}' already go to another company's suite")
}

/// A visitor's eVars as `visitor_states.evars` holds them: JSON text,
/// `NULL` (`None`) for none.
pub(crate) fn evars_text(evars: &[PersistedEvar]) -> StoreResult<Option<String>> {
    if evars.is_empty() {
        return Ok(None);
    }
    serde_json::to_string(evars)
        .map(Some)
        .map_err(|e| StoreError::backend("encode a visitor's eVars", e))
}

/// `visitor_states.evars` as read, in either backend: `NULL` is no eVars;
/// text that is not the JSON of a list of eVars is a conversion error of
/// the driver (so a [`StoreError::Backend`] of the read, never a panic).
pub(crate) struct StoredEvars(pub Vec<PersistedEvar>);

impl StoredEvars {
    fn decode(text: &[u8]) -> Result<StoredEvars, serde_json::Error> {
        serde_json::from_slice(text).map(StoredEvars)
    }
}

impl rusqlite::types::FromSql for StoredEvars {
    fn column_result(value: rusqlite::types::ValueRef<'_>) -> rusqlite::types::FromSqlResult<Self> {
        match value {
            rusqlite::types::ValueRef::Null => Ok(StoredEvars(Vec::new())),
            rusqlite::types::ValueRef::Text(text) => StoredEvars::decode(text)
                .map_err(|e| rusqlite::types::FromSqlError::Other(e.into())),
            _ => Err(rusqlite::types::FromSqlError::InvalidType),
        }
    }
}

impl<'a> tokio_postgres::types::FromSql<'a> for StoredEvars {
    fn from_sql(
        ty: &tokio_postgres::types::Type,
        raw: &'a [u8],
    ) -> Result<Self, Box<dyn std::error::Error + Sync + Send>> {
        let text = <&str as tokio_postgres::types::FromSql>::from_sql(ty, raw)?;
        Ok(StoredEvars::decode(text.as_bytes())?)
    }

    fn from_sql_null(
        _: &tokio_postgres::types::Type,
    ) -> Result<Self, Box<dyn std::error::Error + Sync + Send>> {
        Ok(StoredEvars(Vec::new()))
    }

    fn accepts(ty: &tokio_postgres::types::Type) -> bool {
        <&str as tokio_postgres::types::FromSql>::accepts(ty)
    }
}

/// The IDs of a completion's `delta.seen`, sorted and without repeats:
/// each is inserted once, and two completions insert the IDs they share in
/// the same order (no lock cycle).
pub(crate) fn distinct_seen(seen: &[SeenId]) -> Vec<&SeenId> {
    let mut out: Vec<&SeenId> = seen.iter().collect();
    out.sort();
    out.dedup();
    out
}
