//! The hit lake as Delta Lake tables: one table per company, so that bdia
//! and any Delta reader (Spark, Trino, DuckDB, ClickHouse, Python
//! `deltalake`) see the same transactional snapshot.
//!
//! # Tables
//!
//! The table of company `c` is the directory `hits/company=<c>/`
//! ([`layout::company_dir`]): its `_delta_log/` sits next to the
//! `report_suite=<rsid>/date=<day>/` partition directories the
//! [`crate::LakeWriter`] already writes, so a part's object path relative to
//! the table root is the Delta `add.path` as is (no copy, no rename).
//!
//! - Schema: [`hits_schema`] plus a `date` column (`date`), the partition
//!   day in the suite's time zone, which exists only as a partition value.
//! - Partition columns: `report_suite`, `date` ([`PARTITION_COLUMNS`]).
//!   `report_suite` is also stored inside every part (readers that read the
//!   log take it from the partition values; the in-file copy is ignored).
//! - `delta.dataSkippingStatsColumns` names the columns with Parquet
//!   statistics ([`STATISTICS_COLUMNS`], partition columns aside), so every
//!   writer of the table (optimize included) keeps file statistics on the
//!   same columns.
//!
//! # Exactly once
//!
//! [`HitTable::commit_file`] adds the parts of one processed file in one
//! Delta commit that also carries the application transaction
//! `txn(appId = visitor group, version = group sequence)`. Before
//! committing it reads the group's version from the latest snapshot: a
//! version at or above the file's means the file is already in the table
//! (a replay after a crash) and nothing is committed. Two writers that race
//! past that check both try to write the next `_delta_log/N.json` with a
//! conditional put; the loser re-reads the log, and the conflict checker
//! refuses its commit because the winning commit updated the same `appId`
//! (`CommitConflictError::ConcurrentTransaction`). The loser then finds the
//! group's version in the new snapshot and reports
//! [`CommitOutcome::AlreadyCommitted`].

use std::collections::HashMap;
use std::sync::Arc;

use deltalake_core::arrow::array::RecordBatch;
use deltalake_core::datafusion::prelude::{ident, Expr, SessionContext};
use deltalake_core::kernel::engine::arrow_conversion::TryIntoKernel;
use deltalake_core::kernel::transaction::{CommitBuilder, CommitProperties};
use deltalake_core::kernel::{Action, Add, DataType, StructField, Transaction};
use deltalake_core::operations::create::CreateBuilder;
use deltalake_core::operations::vacuum::VacuumMode;
use deltalake_core::parquet::file::metadata::{FooterTail, ParquetMetaData, ParquetMetaDataReader};
use deltalake_core::parquet::file::properties::WriterProperties;
use deltalake_core::parquet::file::statistics::Statistics;
use deltalake_core::protocol::{ColumnCountStat, ColumnValueStat, DeltaOperation, SaveMode, Stats};
use deltalake_core::{
    DeltaTable, DeltaTableBuilder, DeltaTableError, FilterOp, FilterValue, TableProperty,
};
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt};
use serde_json::Value;
use url::Url;

use crate::error::LakeError;
use crate::layout;
use crate::manifest::PartEntry;
use crate::schema::{hits_schema, STATISTICS_COLUMNS};

/// The partition columns of every hit table, outermost first.
pub const PARTITION_COLUMNS: [&str; 2] = ["report_suite", "date"];

/// The Delta name of the partition day column.
const DATE_COLUMN: &str = "date";

/// What [`HitTable::commit_file`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CommitOutcome {
    /// The file's parts are in the table from this table version on.
    Committed {
        /// The table version of the commit.
        table_version: u64,
    },
    /// The group's transaction version was already at or above the file's:
    /// the file is in the table (committed by an earlier attempt or by a
    /// concurrent writer); nothing was written.
    AlreadyCommitted {
        /// The group's committed transaction version.
        txn_version: i64,
    },
}

/// What [`HitTable::compact`] did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CompactStats {
    /// Partitions compacted.
    pub partitions: u64,
    /// Files replaced.
    pub files_removed: u64,
    /// Files written.
    pub files_added: u64,
    /// The table version of the last compaction commit.
    pub table_version: Option<u64>,
}

/// The Delta table of one company's hits.
#[derive(Debug, Clone)]
pub struct HitTable {
    company: String,
    table: DeltaTable,
}

/// One data file of a table's current snapshot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TableFile {
    /// Path relative to the table root (decoded), e.g.
    /// `report_suite=rs1/date=2024-01-02/part-f1-0000.parquet`.
    pub path: String,
    /// The partition's report suite.
    pub report_suite: String,
    /// The partition's day.
    pub date: jiff::civil::Date,
    /// Size in bytes.
    pub bytes: u64,
    /// Rows, from the file's statistics (0 when the log has none).
    pub rows: u64,
}

/// Where a company's table lives and how to reach its storage.
#[derive(Debug, Clone)]
pub struct TableLocation {
    /// The lake root as a directory URL (ending in `/`).
    pub lake_url: Url,
    /// The object store rooted at `lake_url`'s scheme root, when not the
    /// default one of the URL (a custom or in-memory store).
    pub backend: Option<Arc<dyn ObjectStore>>,
}

impl TableLocation {
    fn builder(&self, url: &Url) -> Result<DeltaTableBuilder, LakeError> {
        let mut b = DeltaTableBuilder::from_url(url.clone())?;
        if let Some(store) = &self.backend {
            b = b.with_storage_backend(store.clone(), url.clone());
        }
        Ok(b)
    }
}

/// The table columns: the hit schema and the partition day.
fn table_columns() -> Result<Vec<StructField>, LakeError> {
    let mut fields = hits_schema()
        .fields()
        .iter()
        .map(|f| f.as_ref().try_into_kernel())
        .collect::<Result<Vec<StructField>, _>>()
        .map_err(|e| LakeError::Delta(DeltaTableError::from(e)))?;
    fields.push(StructField::new(DATE_COLUMN, DataType::DATE, false));
    Ok(fields)
}

/// Whether a commit was refused because a concurrent commit changed the
/// table's metadata or protocol (a schema change).
fn schema_changed(e: &DeltaTableError) -> bool {
    use deltalake_core::kernel::transaction::{CommitConflictError, TransactionError};
    matches!(
        e,
        DeltaTableError::Transaction {
            source: TransactionError::CommitConflict(
                CommitConflictError::MetadataChanged | CommitConflictError::ProtocolChanged(_)
            )
        }
    )
}

/// The URL of company `company`'s table under the lake root `lake`
/// (a directory URL, ending in `/`).
pub fn table_url(lake: &Url, company: &str) -> Result<Url, LakeError> {
    layout::check_company(company)?;
    let mut dir = lake.clone();
    if !dir.path().ends_with('/') {
        dir.set_path(&format!("{}/", dir.path()));
    }
    dir.join(&format!("{}/", layout::company_dir(company)))
        .map_err(|e| LakeError::Corrupt {
            path: lake.to_string(),
            reason: e.to_string(),
        })
}

impl HitTable {
    /// Opens company `company`'s table, creating it (table version 0:
    /// schema, partitioning, properties) when it does not exist and
    /// `create` is set; `None` when it does not exist and `create` is not.
    /// Safe to race: creation is a conditional put of version 0, and a
    /// creator that loses loads the winner's table.
    pub async fn open(
        at: &TableLocation,
        company: &str,
        create: bool,
    ) -> Result<Option<HitTable>, LakeError> {
        let url = table_url(&at.lake_url, company)?;
        let found = |table| {
            Some(HitTable {
                company: company.to_string(),
                table,
            })
        };
        // delta-rs refuses a local table location that does not exist yet
        // (a company with no hits written).
        if url.scheme() == "file" {
            if let Ok(dir) = url.to_file_path() {
                if !dir.is_dir() {
                    if !create {
                        return Ok(None);
                    }
                    std::fs::create_dir_all(dir)?;
                }
            }
        }
        if let Some(table) = Self::load(at, &url).await? {
            return Ok(found(table));
        }
        if !create {
            return Ok(None);
        }
        let stats_columns = STATISTICS_COLUMNS
            .iter()
            .filter(|c| !PARTITION_COLUMNS.contains(c))
            .copied()
            .collect::<Vec<_>>()
            .join(",");
        let created = CreateBuilder::new()
            .with_log_store(at.builder(&url)?.build_storage()?)
            .with_table_name(format!(
                "hits_{}",
                company.replace(|c: char| !c.is_ascii_alphanumeric(), "_")
            ))
            .with_columns(table_columns()?)
            .with_partition_columns(PARTITION_COLUMNS)
            .with_configuration_property(
                TableProperty::DataSkippingStatsColumns,
                Some(stats_columns),
            )
            .with_save_mode(SaveMode::Ignore)
            // Only version 0 creates the table: with retries, a creator that
            // loses the race for version 0 commits its metadata again as
            // version 1 (a second create over the winner's table).
            .with_commit_properties(CommitProperties::default().with_max_retries(0))
            .await;
        let table = match created {
            Ok(table) => table,
            // Lost the race for version 0: the table exists now.
            Err(e) => Self::load(at, &url).await?.ok_or(LakeError::Delta(e))?,
        };
        Ok(found(table))
    }

    /// Columns of the hit schema the table lacks (a table created before
    /// they were added: `schema::ADDED_COLUMNS`).
    fn missing_columns(&self) -> Result<Vec<StructField>, LakeError> {
        let schema = self.table.snapshot()?.schema();
        Ok(table_columns()?
            .into_iter()
            .filter(|f| schema.field(f.name()).is_none())
            .collect())
    }

    /// Adds the columns of the hit schema the table lacks, in one commit
    /// (Delta schema evolution: new nullable columns, which the table's
    /// older files read as null). Another writer adding them at the same
    /// time is fine: whichever commit wins, the table then has them.
    async fn add_missing_columns(&mut self) -> Result<(), LakeError> {
        let missing = self.missing_columns()?;
        if missing.is_empty() {
            return Ok(());
        }
        match self.table.clone().add_columns().with_fields(missing).await {
            Ok(table) => {
                self.table = table;
                Ok(())
            }
            Err(e) => {
                self.refresh().await?;
                if self.missing_columns()?.is_empty() {
                    Ok(())
                } else {
                    Err(e.into())
                }
            }
        }
    }

    /// Loads the table at `url`; `None` when there is no table there yet.
    async fn load(at: &TableLocation, url: &Url) -> Result<Option<DeltaTable>, LakeError> {
        match at.builder(url)?.load().await {
            Ok(table) => Ok(Some(table)),
            Err(DeltaTableError::NotATable(_)) => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    /// The company.
    pub fn company(&self) -> &str {
        &self.company
    }

    /// The table (for reading it, e.g. `table().table_provider()`).
    pub fn table(&self) -> &DeltaTable {
        &self.table
    }

    /// The table version of the loaded snapshot.
    pub fn version(&self) -> Option<u64> {
        self.table.version()
    }

    /// Reloads the snapshot to the latest table version.
    pub async fn refresh(&mut self) -> Result<(), LakeError> {
        self.table.update_state().await?;
        Ok(())
    }

    /// The data files of the loaded snapshot.
    pub fn files(&self) -> Result<Vec<TableFile>, LakeError> {
        let snapshot = self.table.snapshot()?;
        let mut out = Vec::new();
        for f in snapshot.log_data().iter() {
            let values = f.partition_values_map();
            let value = |k: &str| values.get(k).cloned().flatten();
            let path = f.path().into_owned();
            let corrupt = |reason: &str| LakeError::Corrupt {
                path: path.clone(),
                reason: reason.to_string(),
            };
            let report_suite = value("report_suite").ok_or_else(|| corrupt("no report_suite"))?;
            let date = value(DATE_COLUMN)
                .ok_or_else(|| corrupt("no date"))?
                .parse()
                .map_err(|e: jiff::Error| corrupt(&e.to_string()))?;
            out.push(TableFile {
                report_suite,
                date,
                bytes: f.size().max(0) as u64,
                rows: f.num_records().unwrap_or(0) as u64,
                path,
            });
        }
        out.sort_by(|a, b| (a.date, &a.path).cmp(&(b.date, &b.path)));
        Ok(out)
    }

    /// The last transaction version committed for `app_id`, read from the
    /// latest snapshot (reloaded first); `None` when it never committed.
    pub async fn committed_version(&mut self, app_id: &str) -> Result<Option<i64>, LakeError> {
        self.refresh().await?;
        self.snapshot_txn_version(app_id).await
    }

    /// `app_id`'s transaction version in the loaded snapshot.
    async fn snapshot_txn_version(&self, app_id: &str) -> Result<Option<i64>, LakeError> {
        let log_store = self.table.log_store();
        Ok(self
            .table
            .snapshot()?
            .transaction_version(log_store.as_ref(), app_id)
            .await?)
    }

    /// Commits the already written parts of one file (paths relative to the
    /// lake root, under this company's directory) in one Delta commit with
    /// `txn(app_id, txn_version)`, unless `app_id` already committed
    /// `txn_version` or a later one. Each part gets an `add` action with its
    /// partition values and the statistics of its Parquet footer. A file
    /// without hits commits the transaction alone.
    pub async fn commit_file(
        &mut self,
        parts: &[PartEntry],
        app_id: &str,
        txn_version: i64,
    ) -> Result<CommitOutcome, LakeError> {
        if let Some(done) = self.already(app_id, txn_version).await? {
            return Ok(done);
        }
        let mut actions = Vec::with_capacity(parts.len());
        for part in parts {
            actions.push(Action::Add(self.add_action(part).await?));
        }
        let now = jiff::Timestamp::now().as_millisecond();
        let properties = CommitProperties::default()
            .with_application_transaction(Transaction::new_with_last_update(
                app_id,
                txn_version,
                Some(now),
            ))
            // Expired log entries are cleaned up by vacuum: cleaning after
            // each commit lists the whole log every time.
            .with_cleanup_expired_logs(Some(false));
        let operation = DeltaOperation::Write {
            mode: SaveMode::Append,
            partition_by: Some(PARTITION_COLUMNS.iter().map(|c| c.to_string()).collect()),
            predicate: None,
        };
        let mut attempt = 0;
        loop {
            // Parts of the current schema go only into a table that has all
            // its columns (readers never change a table).
            self.add_missing_columns().await?;
            let committed = CommitBuilder::from(properties.clone())
                .with_actions(actions.clone())
                .build(
                    Some(self.table.snapshot()?),
                    self.table.log_store(),
                    operation.clone(),
                )
                .await;
            match committed {
                Ok(done) => {
                    let table_version = done.version();
                    self.refresh().await?;
                    return Ok(CommitOutcome::Committed { table_version });
                }
                // A concurrent commit of the same group (refused by the
                // conflict checker), or a commit whose outcome is unknown:
                // the snapshot tells.
                Err(e) => match self.already(app_id, txn_version).await? {
                    Some(done) => return Ok(done),
                    // Another writer changed the table's schema meanwhile
                    // (added the columns this version adds): commit again
                    // on the new snapshot.
                    None if attempt < 2 && schema_changed(&e) => attempt += 1,
                    None => return Err(e.into()),
                },
            }
        }
    }

    /// [`CommitOutcome::AlreadyCommitted`] when `app_id`'s version in the
    /// latest snapshot (reloaded) is at least `txn_version`.
    pub async fn already(
        &mut self,
        app_id: &str,
        txn_version: i64,
    ) -> Result<Option<CommitOutcome>, LakeError> {
        Ok(self
            .committed_version(app_id)
            .await?
            .filter(|v| *v >= txn_version)
            .map(|v| CommitOutcome::AlreadyCommitted { txn_version: v }))
    }

    /// A DataFusion context with this table's latest snapshot registered
    /// as `hits` (partition columns included).
    async fn context(&mut self) -> Result<SessionContext, LakeError> {
        self.refresh().await?;
        let ctx = SessionContext::new();
        self.table.update_datafusion_session(&ctx.state())?;
        let provider = self
            .table
            .table_provider()
            .await
            .map_err(DeltaTableError::from)?;
        ctx.register_table("hits", provider)
            .map_err(DeltaTableError::from)?;
        Ok(ctx)
    }

    /// The `columns` of the rows of the latest snapshot matching `predicate`.
    pub async fn select_where(
        &mut self,
        predicate: Expr,
        columns: &[&str],
    ) -> Result<Vec<RecordBatch>, LakeError> {
        let ctx = self.context().await?;
        let df = ctx
            .table("hits")
            .await
            .and_then(|t| t.filter(predicate))
            .and_then(|t| t.select(columns.iter().map(|c| ident(*c)).collect::<Vec<_>>()))
            .map_err(DeltaTableError::from)?;
        Ok(df.collect().await.map_err(DeltaTableError::from)?)
    }

    /// Rows of the latest snapshot matching `predicate`.
    pub async fn count_where(&mut self, predicate: Expr) -> Result<u64, LakeError> {
        let ctx = self.context().await?;
        let n = ctx
            .table("hits")
            .await
            .map_err(DeltaTableError::from)?
            .filter(predicate)
            .map_err(DeltaTableError::from)?
            .count()
            .await
            .map_err(DeltaTableError::from)?;
        Ok(n as u64)
    }

    /// Deletes the rows matching `predicate` in one Delta commit (files
    /// whose rows all match are removed, the others rewritten without the
    /// matching rows); returns the rows deleted and the table version of
    /// the commit (`None` when no row matched and nothing was committed).
    pub async fn delete_where(
        &mut self,
        predicate: Expr,
        writer: WriterProperties,
    ) -> Result<(u64, Option<u64>), LakeError> {
        let rows = self.count_where(predicate.clone()).await?;
        if rows == 0 {
            return Ok((0, None));
        }
        let (table, _metrics) = self
            .table
            .clone()
            .delete()
            .with_predicate(predicate)
            .with_writer_properties(writer)
            .await?;
        self.table = table;
        Ok((rows, self.table.version()))
    }

    /// Compacts the partitions that hold at least `min_files` files smaller
    /// than `target_bytes` into files of about `target_bytes` (Delta
    /// optimize: one commit, no data change). Readers of older snapshots
    /// keep their files until vacuum.
    pub async fn compact(
        &mut self,
        min_files: usize,
        target_bytes: u64,
        writer: WriterProperties,
    ) -> Result<CompactStats, LakeError> {
        self.refresh().await?;
        let mut small: HashMap<(String, jiff::civil::Date), usize> = HashMap::new();
        for f in self.files()? {
            if f.bytes < target_bytes {
                *small.entry((f.report_suite, f.date)).or_default() += 1;
            }
        }
        let due: Vec<(String, jiff::civil::Date)> = small
            .into_iter()
            .filter(|(_, n)| *n >= min_files.max(2))
            .map(|(k, _)| k)
            .collect();
        let mut out = CompactStats::default();
        for (suite, date) in due {
            let date = date.to_string();
            let filters = [
                (
                    "report_suite",
                    FilterOp::Eq,
                    FilterValue::Scalar(suite.as_str()),
                ),
                (
                    DATE_COLUMN,
                    FilterOp::Eq,
                    FilterValue::Scalar(date.as_str()),
                ),
            ];
            let (table, metrics) = self
                .table
                .clone()
                .optimize()
                .with_filters(&filters)
                .with_target_size(
                    std::num::NonZeroU64::new(target_bytes.max(1)).expect("at least 1"),
                )
                .with_writer_properties(writer.clone())
                .await?;
            self.table = table;
            if metrics.num_files_removed > 0 {
                out.partitions += 1;
                out.files_removed += metrics.num_files_removed;
                out.files_added += metrics.num_files_added;
                out.table_version = self.table.version();
            }
        }
        Ok(out)
    }

    /// Deletes the files no snapshot of the last `retention` needs: files
    /// removed from the table (by a delete or a compaction) more than
    /// `retention` ago, and files never committed (left by a run that
    /// stopped before its commit) older than `retention`.
    pub async fn vacuum(&mut self, retention: std::time::Duration) -> Result<u64, LakeError> {
        self.refresh().await?;
        let retention = chrono::Duration::from_std(retention).map_err(|e| LakeError::Corrupt {
            path: self.company.clone(),
            reason: format!("retention out of range: {e}"),
        })?;
        let (table, metrics) = self
            .table
            .clone()
            .vacuum()
            .with_retention_period(retention)
            .with_enforce_retention_duration(false)
            .with_mode(VacuumMode::Full)
            .await?;
        self.table = table;
        // Log entries past the table's log retention (30 days by default)
        // and before its last checkpoint: here rather than after every
        // commit, where listing the whole log slows publication.
        deltalake_core::protocol::checkpoints::cleanup_metadata(&self.table, None).await?;
        Ok(metrics.files_deleted.len() as u64)
    }

    /// The `add` action of one part: its path relative to the table, its
    /// partition values, size and footer statistics.
    async fn add_action(&self, part: &PartEntry) -> Result<Add, LakeError> {
        let dir = format!("{}/", layout::company_dir(&self.company));
        let rel = part
            .path
            .strip_prefix(&dir)
            .ok_or_else(|| LakeError::Corrupt {
                path: part.path.clone(),
                reason: format!("not under {dir}"),
            })?;
        let meta = read_footer(self.table.object_store().as_ref(), rel, part.bytes).await?;
        let stats = footer_stats(&meta);
        let partition_values = HashMap::from([
            ("report_suite".to_string(), Some(part.report_suite.clone())),
            (DATE_COLUMN.to_string(), Some(part.date.to_string())),
        ]);
        Ok(Add {
            path: rel.to_string(),
            partition_values,
            size: part.bytes as i64,
            modification_time: jiff::Timestamp::now().as_millisecond(),
            data_change: true,
            stats: Some(serde_json::to_string(&stats)?),
            tags: None,
            deletion_vector: None,
            base_row_id: None,
            default_row_commit_version: None,
            clustering_provider: None,
        })
    }
}

/// Reads the Parquet footer of the object `rel` (relative to the table
/// root) of `size` bytes: two ranged reads.
async fn read_footer(
    store: &dyn ObjectStore,
    rel: &str,
    size: u64,
) -> Result<ParquetMetaData, LakeError> {
    let path = Path::parse(rel).map_err(DeltaTableError::from)?;
    if size < 8 {
        return Err(LakeError::Corrupt {
            path: rel.to_string(),
            reason: "too short for Parquet".into(),
        });
    }
    let tail = store.get_range(&path, size - 8..size).await?;
    let tail: [u8; 8] = tail[..].try_into().expect("8 bytes");
    let footer = FooterTail::try_new(&tail)?;
    let len = footer.metadata_length() as u64;
    if len + 8 > size {
        return Err(LakeError::Corrupt {
            path: rel.to_string(),
            reason: "Parquet footer longer than the file".into(),
        });
    }
    let bytes = store.get_range(&path, size - 8 - len..size - 8).await?;
    Ok(ParquetMetaDataReader::decode_metadata(&bytes)?)
}

/// A column's minimum or maximum, typed for comparison across row groups.
#[derive(Debug, Clone, PartialEq, PartialOrd)]
enum Bound {
    Bool(bool),
    Int(i64),
    /// Microseconds since the epoch.
    Micros(i64),
    Text(String),
}

impl Bound {
    /// The Delta statistics JSON value (timestamps as ISO-8601 UTC with
    /// milliseconds, rounded outwards: down for a minimum, up for a maximum).
    fn to_json(&self, is_max: bool) -> Value {
        match self {
            Bound::Bool(b) => Value::Bool(*b),
            Bound::Int(i) => Value::from(*i),
            Bound::Text(s) => Value::String(s.clone()),
            Bound::Micros(us) => {
                let ms = if is_max {
                    us.div_euclid(1000) + i64::from(us.rem_euclid(1000) != 0)
                } else {
                    us.div_euclid(1000)
                };
                match jiff::Timestamp::from_millisecond(ms) {
                    Ok(t) => Value::String(t.strftime("%Y-%m-%dT%H:%M:%S%.3fZ").to_string()),
                    Err(_) => Value::Null,
                }
            }
        }
    }
}

/// One row group's exact min and max of a column, when it has them.
fn bounds(stats: &Statistics, micros: bool) -> Option<(Bound, Bound)> {
    if !stats.min_is_exact() || !stats.max_is_exact() {
        return None;
    }
    match stats {
        Statistics::Boolean(s) => Some((Bound::Bool(*s.min_opt()?), Bound::Bool(*s.max_opt()?))),
        Statistics::Int32(s) => Some((
            Bound::Int(i64::from(*s.min_opt()?)),
            Bound::Int(i64::from(*s.max_opt()?)),
        )),
        Statistics::Int64(s) if micros => {
            Some((Bound::Micros(*s.min_opt()?), Bound::Micros(*s.max_opt()?)))
        }
        Statistics::Int64(s) => Some((Bound::Int(*s.min_opt()?), Bound::Int(*s.max_opt()?))),
        Statistics::ByteArray(s) => Some((
            Bound::Text(s.min_opt()?.as_utf8().ok()?.to_string()),
            Bound::Text(s.max_opt()?.as_utf8().ok()?.to_string()),
        )),
        _ => None,
    }
}

/// Delta file statistics from a Parquet footer: the row count, and for each
/// top-level column with statistics in every row group (partition columns
/// aside) its null count, minimum and maximum.
fn footer_stats(meta: &ParquetMetaData) -> Stats {
    let mut stats = Stats {
        num_records: meta.file_metadata().num_rows(),
        ..Default::default()
    };
    let schema = meta.file_metadata().schema_descr();
    for (i, column) in schema.columns().iter().enumerate() {
        let name = column.name();
        if column.path().parts().len() != 1 || PARTITION_COLUMNS.contains(&name) {
            continue;
        }
        let micros = matches!(
            column.logical_type_ref(),
            Some(deltalake_core::parquet::basic::LogicalType::Timestamp { .. })
        );
        let mut nulls = 0u64;
        let mut range: Option<(Bound, Bound)> = None;
        let mut complete = !meta.row_groups().is_empty();
        for rg in meta.row_groups() {
            let Some(s) = rg.column(i).statistics() else {
                complete = false;
                break;
            };
            nulls += s.null_count_opt().unwrap_or(0);
            if s.null_count_opt() == Some(rg.num_rows() as u64) {
                continue; // all null: no bounds
            }
            let Some((lo, hi)) = bounds(s, micros) else {
                complete = false;
                break;
            };
            range = Some(match range {
                None => (lo, hi),
                Some((a, b)) => (if lo < a { lo } else { a }, if hi > b { hi } else { b }),
            });
        }
        if !complete {
            continue;
        }
        stats
            .null_count
            .insert(name.to_string(), ColumnCountStat::Value(nulls as i64));
        if let Some((lo, hi)) = range {
            stats
                .min_values
                .insert(name.to_string(), ColumnValueStat::Value(lo.to_json(false)));
            stats
                .max_values
                .insert(name.to_string(), ColumnValueStat::Value(hi.to_json(true)));
        }
    }
    stats
}
