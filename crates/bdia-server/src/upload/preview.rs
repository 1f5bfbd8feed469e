//! The impact preview of `POST /aa/collect/v1/events/validate?preview=true`:
//! what a file would do, computed from its valid rows and the company's
//! stored state, with nothing stored.
//!
//! - Rows per report suite and day: the day in the suite's time zone, as
//!   the lake partitions them (suites the company does not have yet count
//!   in UTC, as they would be created).
//! - Visitors: distinct (report suite, visitor) pairs; new ones are those
//!   without a stored visitor state, i.e. never processed in that suite.
//! - Out-of-order rows: rows earlier than their visitor's last processed
//!   hit (the processing marks them `out_of_order`).
//! - Duplicate content: the earliest accepted file of the company with the
//!   same bytes (SHA-256 of the body).
//! - The estimate: the rows of the company's `UPLOADED` and `PROCESSING`
//!   files plus the file's valid rows, divided by a rate: the company's
//!   measured rate over its last [`RATE_SAMPLE`] `COMPLETE` files (rows /
//!   processing seconds), held to its throttle when it has one; the
//!   throttle alone when nothing was processed yet; none when neither
//!   exists.

use bdia_store::{Company, FileQuery, FileStatus};

use super::pass::Collected;
use crate::error::ApiError;
use crate::state::AppState;

/// `COMPLETE` files the measured rate is taken over.
pub const RATE_SAMPLE: u32 = 20;

/// Visitor states looked up per store call.
const LOOKUP_BATCH: usize = 1_024;

/// Files read (pages of 1,000) when summing the queue; past it the queue
/// is counted as far as read.
const QUEUE_PAGES: usize = 10;

/// The time zones of `company`'s report suites.
pub(super) async fn suite_zones(
    state: &AppState,
    company: &str,
) -> Result<bdia_lake::SuiteZones, ApiError> {
    let mut zones = bdia_lake::SuiteZones::utc();
    for s in state
        .store
        .list_report_suites(Some(company))
        .await
        .map_err(ApiError::internal)?
    {
        // A zone the tz database does not know counts as UTC here; the
        // processing reports it on the file.
        let _ = zones.insert(&s.rsid, &s.time_zone);
    }
    Ok(zones)
}

/// The preview of a file whose pass gathered `c`, with `valid_rows` valid
/// rows.
pub(super) async fn answer(
    state: &AppState,
    company: &Company,
    c: Collected,
    valid_rows: u64,
    content_sha256: Option<&str>,
) -> Result<bdia_wire::Preview, ApiError> {
    let store = &state.store;
    let duplicate_of = match content_sha256 {
        Some(hash) => store
            .find_by_content(&company.id, hash)
            .await
            .map_err(ApiError::internal)?
            .map(|f| f.file_id),
        None => None,
    };
    let visitors = c.visitors.len() as u64;
    let mut new_visitors = 0u64;
    let mut out_of_order_rows = 0u64;
    let pairs: Vec<((String, String), Vec<i64>)> = c.visitors.into_iter().collect();
    for chunk in pairs.chunks(LOOKUP_BATCH) {
        let keys: Vec<(String, String)> = chunk.iter().map(|(k, _)| k.clone()).collect();
        let found = store
            .visitor_states(&company.id, keys)
            .await
            .map_err(ApiError::internal)?;
        for ((_, times), st) in chunk.iter().zip(found) {
            match st {
                None => new_visitors += 1,
                Some(st) => {
                    out_of_order_rows +=
                        times.iter().filter(|t| **t < st.last_hit_time).count() as u64;
                }
            }
        }
    }
    let rows_queued = queued_rows(state, &company.id).await?;
    let throttle = company.settings.rows_per_second.filter(|r| *r > 0);
    let measured = measured_rate(state, &company.id).await?;
    let (rate, basis) = match (measured, throttle) {
        (Some(m), Some(t)) if m > t as f64 => (
            Some(t as f64),
            format!(
                "the company's throttle ({t} rows/s), below its measured rate over its last {RATE_SAMPLE} processed files"
            ),
        ),
        (Some(m), _) => (
            Some(m),
            format!("the company's measured rate over its last {RATE_SAMPLE} processed files"),
        ),
        (None, Some(t)) => (
            Some(t as f64),
            format!("the company's throttle ({t} rows/s); no file processed yet"),
        ),
        (None, None) => (
            None,
            "no estimate: no file processed yet and no throttle".to_string(),
        ),
    };
    let estimated_processing_secs = rate.map(|r| (rows_queued + valid_rows) as f64 / r);
    Ok(bdia_wire::Preview {
        first_hit_time: c.first.map(bdia_wire::time::rfc3339_utc),
        last_hit_time: c.last.map(bdia_wire::time::rfc3339_utc),
        rows_by_suite_day: c
            .by_suite_day
            .into_iter()
            .map(|((report_suite, date), rows)| bdia_wire::SuiteDayRows {
                report_suite,
                date,
                rows,
            })
            .collect(),
        visitors,
        new_visitors,
        out_of_order_rows,
        rows_queued,
        rows_per_second: rate,
        estimated_processing_secs,
        estimate_basis: basis,
        duplicate_of,
    })
}

/// Rows of the company's files waiting or being processed.
async fn queued_rows(state: &AppState, company: &str) -> Result<u64, ApiError> {
    let mut rows = 0;
    for status in [FileStatus::Uploaded, FileStatus::Processing] {
        let mut cursor = None;
        for _ in 0..QUEUE_PAGES {
            let page = state
                .store
                .list_files(
                    company,
                    &FileQuery {
                        status: Some(status),
                        limit: 1000,
                        cursor: cursor.take(),
                        ..FileQuery::default()
                    },
                )
                .await
                .map_err(ApiError::internal)?;
            rows += page
                .files
                .iter()
                .map(|f| f.rows - f.invalid_rows)
                .sum::<u64>();
            match page.next_cursor {
                Some(c) => cursor = Some(c),
                None => break,
            }
        }
    }
    Ok(rows)
}

/// Rows per second over the company's last [`RATE_SAMPLE`] `COMPLETE`
/// files (each counted at least one second); `None` when it has none.
async fn measured_rate(state: &AppState, company: &str) -> Result<Option<f64>, ApiError> {
    let page = state
        .store
        .list_files(
            company,
            &FileQuery {
                status: Some(FileStatus::Complete),
                limit: RATE_SAMPLE,
                ..FileQuery::default()
            },
        )
        .await
        .map_err(ApiError::internal)?;
    let (mut rows, mut secs) = (0u64, 0i64);
    for f in &page.files {
        if let (Some(start), Some(end)) = (f.processing_start_date, f.processing_end_date) {
            rows += f.rows - f.invalid_rows;
            secs += (end - start).max(1);
        }
    }
    Ok((secs > 0).then(|| rows as f64 / secs as f64))
}
