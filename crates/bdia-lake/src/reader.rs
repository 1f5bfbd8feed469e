//! [`LakeReader`]: which Parquet objects a query may read.
//!
//! A company's table snapshot is the lake's index: a data file is returned
//! only when the latest snapshot of its company's Delta table lists it, so
//! an object of a file that is not committed (or was removed by a delete or
//! a compaction) is never handed to a query. Each call reloads the
//! snapshot (reading only the log entries written since the last call);
//! clones of a reader share the open tables.
//!
//! Every question is asked for one company: each company has a table of
//! its own, so two companies' suites of one ID never mix.

use jiff::civil::Date;
use object_store::path::Path;

use crate::delta::TableFile;
use crate::error::LakeError;
use crate::lake::Lake;
use crate::layout::{self, check_suite};

/// One data file of a table's current snapshot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartRef {
    /// The object's full path in the store.
    pub path: Path,
    /// The company the rows belong to.
    pub company: String,
    /// Report suite of every row.
    pub report_suite: String,
    /// Partition day in the suite's time zone.
    pub date: Date,
    /// The uploaded file the rows came from, for a part written by
    /// processing (`part-<file_id>-<nnnn>.parquet`); `None` for a file
    /// written by a compaction or a delete, which may hold several.
    pub file_id: Option<String>,
    /// Rows.
    pub rows: u64,
    /// Size in bytes.
    pub bytes: u64,
}

/// Reads the tables' current snapshots. Cheap to clone.
#[derive(Debug, Clone)]
pub struct LakeReader {
    lake: Lake,
}

impl LakeReader {
    /// A reader of `lake` (see [`Lake::reader`]).
    pub(crate) fn new(lake: Lake) -> LakeReader {
        LakeReader { lake }
    }

    /// The report suites of `company` that have data files, sorted.
    pub async fn report_suites(&self, company: &str) -> Result<Vec<String>, LakeError> {
        let mut out: Vec<String> = self
            .lake
            .files(company)
            .await?
            .into_iter()
            .map(|f| f.report_suite)
            .collect();
        out.sort();
        out.dedup();
        Ok(out)
    }

    /// The data files of one report suite of `company` whose day is in
    /// `from..=to`, from the table's latest snapshot, sorted by (day, path).
    /// Another company's files are never returned, whatever its suites are
    /// called.
    pub async fn parts(
        &self,
        company: &str,
        report_suite: &str,
        from: Date,
        to: Date,
    ) -> Result<Vec<PartRef>, LakeError> {
        check_suite(report_suite)?;
        let dir = layout::company_dir(company);
        Ok(self
            .lake
            .files(company)
            .await?
            .into_iter()
            .filter(|f| f.report_suite == report_suite && (from..=to).contains(&f.date))
            .map(|f: TableFile| PartRef {
                path: self.lake.path(&format!("{dir}/{}", f.path)),
                company: company.to_string(),
                file_id: layout::part_file_id(&f.path).map(str::to_string),
                report_suite: f.report_suite,
                date: f.date,
                rows: f.rows,
                bytes: f.bytes,
            })
            .collect())
    }
}
