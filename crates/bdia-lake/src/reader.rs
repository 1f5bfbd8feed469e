//! [`LakeReader`]: which Parquet objects a query may read.
//!
//! The commit records under `_commits/` are the lake's index: a part is
//! returned only when its file's commit record lists it, so an object of a
//! file that is not committed (or no longer part of its file's latest
//! commit) is never handed to a query. Each call lists `_commits/` once and
//! reads only the records that are new or changed since the reader's last
//! call (the listing's size, time and ETag tell); clones of a reader share
//! that cache.
//!
//! Every question is asked for one company: a part is returned only when
//! its record names that company (report suite IDs are per company, so two
//! companies' suites of one ID never mix). A record of the layout without
//! companies ([`FileManifest::is_legacy`]) belongs to none and is never
//! returned.
//!
//! A reader needs only the object store and the lake's root: names come
//! from [`crate::layout`], records are parsed by [`crate::manifest`].

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use futures::TryStreamExt;
use jiff::civil::Date;
use object_store::path::Path;
use object_store::{ObjectMeta, ObjectStore};

use crate::error::{is_not_found, LakeError};
use crate::layout::{self, check_company, check_suite, COMMITS};
use crate::manifest::{self, FileManifest, PartEntry};

/// One committed Parquet object.
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
    /// The file the rows came from.
    pub file_id: String,
    /// Rows.
    pub rows: u64,
    /// Size in bytes.
    pub bytes: u64,
}

type Index = HashMap<String, (ObjectMeta, Arc<FileManifest>)>;

/// Lists committed parts of the lake. Cheap to clone; clones share a cache
/// of commit records.
#[derive(Debug, Clone)]
pub struct LakeReader {
    store: Arc<dyn ObjectStore>,
    root: Path,
    cache: Arc<Mutex<Index>>,
}

impl LakeReader {
    /// A reader of the lake under `root` in `store` (see [`crate::Lake::reader`]).
    pub(crate) fn new(store: Arc<dyn ObjectStore>, root: Path) -> LakeReader {
        LakeReader {
            store,
            root,
            cache: Arc::new(Mutex::new(HashMap::new())),
        }
    }

    /// The object path of `rel` under the lake's root.
    fn path(&self, rel: &str) -> Path {
        layout::object_path(&self.root, rel)
    }

    /// The commit record of every committed file, by file id.
    pub async fn commits(&self) -> Result<Vec<Arc<FileManifest>>, LakeError> {
        let prefix = self.path(COMMITS);
        let listing: Vec<ObjectMeta> =
            match self.store.list(Some(&prefix)).try_collect::<Vec<_>>().await {
                Ok(v) => v,
                Err(e) if is_not_found(&e) => Vec::new(),
                Err(e) => return Err(e.into()),
            };
        let mut listed: Vec<(String, ObjectMeta)> = listing
            .into_iter()
            .filter_map(|m| {
                let id = layout::commit_record_file_id(m.location.filename()?)?.to_string();
                Some((id, m))
            })
            .collect();
        listed.sort_by(|a, b| a.0.cmp(&b.0));
        let stale: Vec<(String, ObjectMeta)> = {
            let cache = self.cache.lock().expect("reader cache");
            listed
                .iter()
                .filter(|(id, meta)| cache.get(id).is_none_or(|(m, _)| m != meta))
                .cloned()
                .collect()
        };
        let mut fresh = Vec::with_capacity(stale.len());
        for (id, meta) in stale {
            // A record deleted between the listing and the read is skipped.
            let record = self.path(&layout::commit_record(&id));
            if let Some(m) = manifest::read(self.store.as_ref(), &record).await? {
                fresh.push((id, meta, Arc::new(m)));
            }
        }
        let mut cache = self.cache.lock().expect("reader cache");
        for (id, meta, m) in fresh {
            cache.insert(id, (meta, m));
        }
        let present: std::collections::HashSet<&str> =
            listed.iter().map(|(id, _)| id.as_str()).collect();
        cache.retain(|id, _| present.contains(id.as_str()));
        Ok(listed
            .iter()
            .filter_map(|(id, _)| cache.get(id).map(|(_, m)| m.clone()))
            .collect())
    }

    /// The ids of all committed files, sorted.
    pub async fn committed_files(&self) -> Result<Vec<String>, LakeError> {
        Ok(self
            .commits()
            .await?
            .iter()
            .map(|m| m.file_id.clone())
            .collect())
    }

    /// The report suites of `company` that have committed parts, sorted.
    pub async fn report_suites(&self, company: &str) -> Result<Vec<String>, LakeError> {
        check_company(company)?;
        let mut out: Vec<String> = self
            .commits()
            .await?
            .iter()
            .filter(|m| m.company == company)
            .flat_map(|m| m.parts.iter().map(|p| p.report_suite.clone()))
            .collect();
        out.sort();
        out.dedup();
        Ok(out)
    }

    /// Committed parts of one report suite of `company` whose day is in
    /// `from..=to`, sorted by (day, path). Another company's parts are
    /// never returned, whatever its suites are called.
    pub async fn parts(
        &self,
        company: &str,
        report_suite: &str,
        from: Date,
        to: Date,
    ) -> Result<Vec<PartRef>, LakeError> {
        check_company(company)?;
        check_suite(report_suite)?;
        // Belt and braces: a part must also lie under the company's
        // directory, whatever its record says.
        let dir = format!("{}/", layout::company_dir(company));
        let mut out = Vec::new();
        for m in self.commits().await? {
            if m.company != company {
                continue;
            }
            let mine = |p: &&PartEntry| p.report_suite == report_suite && p.path.starts_with(&dir);
            for p in m.parts.iter().filter(mine) {
                if (from..=to).contains(&p.date) {
                    out.push(PartRef {
                        path: self.path(&p.path),
                        company: m.company.clone(),
                        report_suite: p.report_suite.clone(),
                        date: p.date,
                        file_id: m.file_id.clone(),
                        rows: p.rows,
                        bytes: p.bytes,
                    });
                }
            }
        }
        out.sort_by(|a, b| (a.date, &a.path).cmp(&(b.date, &b.path)));
        Ok(out)
    }
}
