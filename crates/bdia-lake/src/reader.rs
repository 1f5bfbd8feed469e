//! [`LakeReader`]: which Parquet objects a query may read.
//!
//! Only parts listed in their file's commit record (`_commits/<file_id>.json`)
//! are returned: an object of a file that is not committed, or not any more
//! part of its file's latest commit, is never handed to a query.

use std::collections::HashMap;

use futures::TryStreamExt;
use jiff::civil::Date;
use object_store::path::Path;
use object_store::ObjectStore;

use crate::error::LakeError;
use crate::lake::{FileManifest, Lake};
use crate::{check_name, parse_part_name, COMMITS, HITS};

/// One committed Parquet object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartRef {
    /// The object's full path in the store.
    pub path: Path,
    /// Report suite of every row.
    pub report_suite: String,
    /// Partition day in the suite's time zone.
    pub date: Date,
    /// The file the rows came from.
    pub file_id: String,
    /// Rows.
    pub rows: u64,
    /// Size in bytes.
    pub bytes: u64,
}

/// Lists committed parts of the lake.
#[derive(Debug, Clone)]
pub struct LakeReader {
    lake: Lake,
}

fn not_found(e: &object_store::Error) -> bool {
    matches!(e, object_store::Error::NotFound { .. })
}

impl LakeReader {
    pub(crate) fn new(lake: Lake) -> LakeReader {
        LakeReader { lake }
    }

    /// The ids of all committed files, sorted.
    pub async fn committed_files(&self) -> Result<Vec<String>, LakeError> {
        let prefix = self.lake.path(COMMITS);
        let mut ids: Vec<String> = match self
            .lake
            .store()
            .list(Some(&prefix))
            .try_collect::<Vec<_>>()
            .await
        {
            Ok(v) => v
                .into_iter()
                .filter_map(|m| {
                    m.location
                        .filename()
                        .and_then(|n| n.strip_suffix(".json"))
                        .map(str::to_string)
                })
                .collect(),
            Err(e) if not_found(&e) => Vec::new(),
            Err(e) => return Err(e.into()),
        };
        ids.sort();
        Ok(ids)
    }

    /// The report suites that have a partition directory, sorted.
    pub async fn report_suites(&self) -> Result<Vec<String>, LakeError> {
        let mut out: Vec<String> = self
            .dirs(&self.lake.path(HITS))
            .await?
            .iter()
            .filter_map(|d| d.strip_prefix("report_suite=").map(str::to_string))
            .collect();
        out.sort();
        Ok(out)
    }

    async fn dirs(&self, prefix: &Path) -> Result<Vec<String>, LakeError> {
        match self.lake.store().list_with_delimiter(Some(prefix)).await {
            Ok(l) => Ok(l
                .common_prefixes
                .iter()
                .filter_map(|p| p.filename().map(str::to_string))
                .collect()),
            Err(e) if not_found(&e) => Ok(Vec::new()),
            Err(e) => Err(e.into()),
        }
    }

    /// Committed parts of one report suite whose day is in `from..=to`,
    /// sorted by (day, path).
    pub async fn parts(
        &self,
        report_suite: &str,
        from: Date,
        to: Date,
    ) -> Result<Vec<PartRef>, LakeError> {
        check_name("report_suite", report_suite)?;
        let suite_dir = self
            .lake
            .path(&format!("{HITS}/report_suite={report_suite}"));
        let mut days: Vec<Date> = self
            .dirs(&suite_dir)
            .await?
            .iter()
            .filter_map(|d| d.strip_prefix("date=")?.parse::<Date>().ok())
            .filter(|d| (from..=to).contains(d))
            .collect();
        days.sort();
        let mut commits: HashMap<String, Option<FileManifest>> = HashMap::new();
        let mut out = Vec::new();
        for day in days {
            let dir = suite_dir.clone().join(format!("date={day}"));
            let mut objects = match self.lake.store().list_with_delimiter(Some(&dir)).await {
                Ok(l) => l.objects,
                Err(e) if not_found(&e) => continue,
                Err(e) => return Err(e.into()),
            };
            objects.sort_by(|a, b| a.location.cmp(&b.location));
            for o in objects {
                let Some((file_id, _)) = o.location.filename().and_then(parse_part_name) else {
                    continue;
                };
                if !commits.contains_key(&file_id) {
                    let m = self.lake.committed(&file_id).await?;
                    commits.insert(file_id.clone(), m);
                }
                let Some(Some(m)) = commits.get(&file_id) else {
                    continue;
                };
                let rel = self.relative(&o.location);
                if let Some(entry) = m.parts.iter().find(|p| p.path == rel) {
                    out.push(PartRef {
                        path: o.location.clone(),
                        report_suite: report_suite.to_string(),
                        date: day,
                        file_id,
                        rows: entry.rows,
                        bytes: entry.bytes,
                    });
                }
            }
        }
        Ok(out)
    }

    fn relative(&self, p: &Path) -> String {
        let root: Vec<_> = self.lake.root().parts().collect();
        let parts: Vec<String> = p
            .parts()
            .skip(root.len())
            .map(|s| s.as_ref().to_string())
            .collect();
        parts.join("/")
    }
}
