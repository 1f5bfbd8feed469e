//! Background maintenance of the lake's Delta tables: compaction and
//! vacuum, one company table at a time.
//!
//! ```text
//! every lake.compaction_interval_secs:  for each company table (Lake::companies):
//!     Lake::compact(company, compaction_min_files, compaction_target_bytes)
//! every lake.vacuum_interval_secs:      for each company table:
//!     Lake::vacuum(company, vacuum_retention_hours)
//! ```
//!
//! - Compaction rewrites the small files of a partition (at least
//!   `compaction_min_files` files under `compaction_target_bytes`) into
//!   larger ones in one Delta commit: the rows are the same, so every report
//!   answers as before. Processing goes on meanwhile: its commits only add
//!   files, which do not conflict with a compaction's.
//! - Vacuum deletes files that no table version within the retention
//!   period references: the small files a compaction replaced, and the
//!   files that a retraction or a privacy deletion rewrote. Only then are
//!   the bytes of removed hits gone from the disk.
//!
//! The task runs on its own (a tokio task, the lake's work on its own
//! threads), never inside processing; a company's turn is taken from
//! [`CompanyLocks`] so that maintenance does not race a retraction or a
//! privacy deletion of the same company. Each run is logged with its
//! numbers and counted in the `bdia_lake_*` metrics; a failed run is
//! logged, counted and tried again at the next interval.
//!
//! `bdia admin compact` and `bdia admin vacuum` run the same
//! [`compact`] and [`vacuum`] once.

use std::sync::Arc;
use std::time::Duration;

use bdia_lake::{Compaction, Lake, LakeError, Vacuum};
use tokio_util::sync::CancellationToken;

use crate::config::LakeMaintenanceConfig;
use crate::lake_ops::CompanyLocks;
use crate::metrics::{
    LAKE_COMPACTIONS, LAKE_COMPACTION_FILES, LAKE_MAINTENANCE_ERRORS, LAKE_TABLES, LAKE_VACUUMS,
    LAKE_VACUUM_FILES_DELETED,
};

/// Compacts one company's table and counts it.
pub async fn compact(
    lake: &Lake,
    company: &str,
    min_files: usize,
    target_bytes: u64,
) -> Result<Compaction, LakeError> {
    let started = std::time::Instant::now();
    let c = lake
        .compact(company, min_files, target_bytes)
        .await
        .inspect_err(|e| failed("compaction", company, e))?;
    metrics::counter!(LAKE_COMPACTIONS.name).increment(1);
    metrics::counter!(LAKE_COMPACTION_FILES.name, "change" => "removed").increment(c.files_removed);
    metrics::counter!(LAKE_COMPACTION_FILES.name, "change" => "added").increment(c.files_added);
    let elapsed_ms = started.elapsed().as_millis() as u64;
    if c.files_removed > 0 {
        tracing::info!(
            company,
            partitions = c.partitions,
            files_removed = c.files_removed,
            files_added = c.files_added,
            table_version = c.table_version,
            elapsed_ms,
            "lake table compacted"
        );
    } else {
        tracing::debug!(company, elapsed_ms, "lake table: nothing to compact");
    }
    Ok(c)
}

/// Vacuums one company's table and counts it.
pub async fn vacuum(lake: &Lake, company: &str, retention: Duration) -> Result<Vacuum, LakeError> {
    let started = std::time::Instant::now();
    let v = lake
        .vacuum(company, retention)
        .await
        .inspect_err(|e| failed("vacuum", company, e))?;
    metrics::counter!(LAKE_VACUUMS.name).increment(1);
    metrics::counter!(LAKE_VACUUM_FILES_DELETED.name).increment(v.files_deleted);
    tracing::info!(
        company,
        files_deleted = v.files_deleted,
        retention_hours = retention.as_secs() / 3600,
        elapsed_ms = started.elapsed().as_millis() as u64,
        "lake table vacuumed"
    );
    Ok(v)
}

fn failed(task: &'static str, company: &str, e: &LakeError) {
    metrics::counter!(LAKE_MAINTENANCE_ERRORS.name, "task" => task).increment(1);
    tracing::warn!(task, company, code = e.code(), error = %e, "lake maintenance failed");
}

/// The company tables of the lake, counted in the gauge; `None` (logged
/// and counted) when the lake cannot list them.
async fn tables(lake: &Lake) -> Option<Vec<String>> {
    match lake.companies().await {
        Ok(c) => {
            metrics::gauge!(LAKE_TABLES.name).set(c.len() as f64);
            Some(c)
        }
        Err(e) => {
            failed("list", "", &e);
            None
        }
    }
}

/// One task's schedule: when it runs next.
fn ticker(enabled: bool, every_secs: u64) -> Option<tokio::time::Interval> {
    enabled.then(|| {
        let every = Duration::from_secs(every_secs);
        // The first round waits a whole interval: a start is busy enough.
        let mut t = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
        t.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        t
    })
}

/// Waits for the next tick of `t`; never, for a task that is off.
async fn tick(t: &mut Option<tokio::time::Interval>) {
    match t {
        Some(t) => {
            t.tick().await;
        }
        None => std::future::pending().await,
    }
}

/// Runs compaction and vacuum rounds on their intervals until `stop`.
pub async fn run(
    lake: Lake,
    locks: Arc<CompanyLocks>,
    config: LakeMaintenanceConfig,
    stop: CancellationToken,
) {
    let mut compaction = ticker(config.compaction_enabled, config.compaction_interval_secs);
    let mut vacuuming = ticker(config.vacuum_enabled, config.vacuum_interval_secs);
    if compaction.is_none() && vacuuming.is_none() {
        return;
    }
    let retention = Duration::from_secs(config.vacuum_retention_hours.saturating_mul(3600));
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tick(&mut compaction) => {
                let Some(companies) = tables(&lake).await else { continue };
                for company in companies {
                    if stop.is_cancelled() {
                        return;
                    }
                    let _turn = locks.lock(&company).await;
                    let _ = compact(
                        &lake,
                        &company,
                        config.compaction_min_files,
                        config.compaction_target_bytes,
                    )
                    .await;
                }
            }
            _ = tick(&mut vacuuming) => {
                let Some(companies) = tables(&lake).await else { continue };
                for company in companies {
                    if stop.is_cancelled() {
                        return;
                    }
                    let _turn = locks.lock(&company).await;
                    let _ = vacuum(&lake, &company, retention).await;
                }
            }
        }
    }
}
