//! [`Lake`]: the company tables, file commits exactly once, deletes,
//! compaction, vacuum, and the move of a lake of commit records into its
//! tables.
//!
//! Names come from [`crate::layout`]; the Delta side (commits, snapshots,
//! delete, optimize, vacuum) is [`crate::delta`]'s. This module owns the
//! order of the writes of one file ([`Lake::publish`]): parts first, under
//! their final names, then the one commit that makes them part of the
//! table.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::io::Read;
use std::sync::{Arc, Mutex};

use deltalake_core::arrow::array::{Array, AsArray, RecordBatch};
use deltalake_core::arrow::compute::cast;
use deltalake_core::arrow::datatypes::DataType;
use deltalake_core::datafusion::functions_nested::expr_fn::{array_has, map_keys};
use deltalake_core::datafusion::prelude::{ident, lit, Expr};
use futures::lock::Mutex as AsyncMutex;
use futures::TryStreamExt;
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload};
use url::Url;

use crate::delta::{CommitOutcome, HitTable, TableFile, TableLocation};
use crate::error::{is_not_found, LakeError};
use crate::layout::{self, check_company, check_name, COMMITS, STAGING};
use crate::manifest::{self, FileManifest, PartEntry};
use crate::partition::SuiteZones;
use crate::reader::LakeReader;
use crate::writer::{LakeConfig, LakeWriter, SpooledFile, SpooledPart};

/// The application transaction a file's commit carries: its visitor group
/// and its sequence number in the group.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct FileTxn {
    /// The visitor group (the Delta `txn.appId`).
    pub app_id: String,
    /// The file's sequence in its group (the Delta `txn.version`): the
    /// files of a group are committed in this order.
    pub version: i64,
}

/// What [`Lake::recover`] did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Recovery {
    /// Files of commit records (the lake's format before Delta tables)
    /// now committed to their company's table; their records are deleted.
    pub migrated: Vec<String>,
    /// Files of commit records that could not be moved into a table: no
    /// company or no visitor group known for them. Their records stay;
    /// reports do not read them.
    pub unowned: Vec<String>,
    /// Objects of interrupted publications of the record format deleted.
    pub discarded: usize,
}

/// An identifier a user sent with hits, naming a visitor for a privacy
/// deletion.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Identifier {
    /// A customer ID of a type (`customerID.<type>.id`).
    CustomerId {
        /// The customer ID type.
        id_type: String,
        /// The ID.
        id: String,
    },
    /// `visitorID`.
    VisitorId(String),
    /// `marketingCloudVisitorID`.
    MarketingCloudVisitorId(String),
    /// `IPAddress`.
    IpAddress(String),
}

impl Identifier {
    /// The identifier's kind, as stored in `visitor_id_type`, and the raw
    /// column that carries it on every hit that sent it.
    fn kind_and_column(&self) -> (&'static str, &'static str) {
        match self {
            Identifier::CustomerId { .. } => ("customer", "customer_ids"),
            Identifier::VisitorId(_) => ("vid", "visitorID"),
            Identifier::MarketingCloudVisitorId(_) => ("mcid", "marketingCloudVisitorID"),
            Identifier::IpAddress(_) => ("ip", "IPAddress"),
        }
    }
}

/// One visitor's state in one report suite.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct VisitorRef {
    /// The report suite.
    pub report_suite: String,
    /// The state key (`bdia_format::hit::Visitor::key`): `vid:<id>`,
    /// `customer:<type>:<id>`...
    pub state_key: String,
}

/// What [`Lake::retract_file`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Retraction {
    /// Hits removed from the table.
    pub hits_removed: u64,
    /// The table version of the delete (`None`: nothing to remove).
    pub table_version: Option<u64>,
}

/// What [`Lake::delete_visitors`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VisitorDeletion {
    /// Hits removed from the table.
    pub hits_removed: u64,
    /// The visitors whose hits were removed, per report suite.
    pub visitors: Vec<VisitorRef>,
    /// The table version of the delete (`None`: nothing to remove).
    pub table_version: Option<u64>,
}

/// What [`Lake::compact`] did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Compaction {
    /// Partitions compacted.
    pub partitions: u64,
    /// Small files replaced.
    pub files_removed: u64,
    /// Files written in their place.
    pub files_added: u64,
    /// The table version of the last compaction commit.
    pub table_version: Option<u64>,
}

/// What [`Lake::vacuum`] did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Vacuum {
    /// Data files deleted from storage.
    pub files_deleted: u64,
}

type Tables = Arc<Mutex<HashMap<String, Arc<AsyncMutex<HitTable>>>>>;

/// A hit lake on an object store, under a root prefix: one Delta table per
/// company. Cheap to clone; clones share the open tables.
#[derive(Debug, Clone)]
pub struct Lake {
    store: Arc<dyn ObjectStore>,
    /// The same store when it is a local directory ([`Lake::local`]):
    /// spooled parts are moved into it rather than copied.
    local: Option<Arc<object_store::local::LocalFileSystem>>,
    root: Path,
    config: LakeConfig,
    location: TableLocation,
    /// Open tables by company. A table's writes from this process (file
    /// commits, deletes) take its lock one at a time; compaction and vacuum
    /// work on a copy and let the Delta log order their commits.
    tables: Tables,
}

impl Lake {
    /// A lake under `root` of `store`: an S3 bucket, an in-memory or a
    /// custom store, handed to Delta Lake as the tables' storage (their
    /// URLs are `memory:///<root>/...` whatever the store is; commits are
    /// the store's conditional puts, `If-None-Match: *` on S3). The store
    /// must list in path order, as object stores do (Delta Lake reads its
    /// log by listing); for a local directory use [`Lake::local`].
    pub fn new(store: Arc<dyn ObjectStore>, root: Path, config: LakeConfig) -> Lake {
        let url = if root.as_ref().is_empty() {
            "memory:///".to_string()
        } else {
            format!("memory:///{root}/")
        };
        let lake_url = Url::parse(&url).expect("a valid memory URL");
        Lake {
            location: TableLocation {
                lake_url,
                backend: Some(store.clone()),
            },
            store,
            local: None,
            root,
            config,
            tables: Arc::default(),
        }
    }

    /// A lake in a local directory (created if missing), at its top.
    pub fn local(dir: impl AsRef<std::path::Path>, config: LakeConfig) -> Result<Lake, LakeError> {
        std::fs::create_dir_all(dir.as_ref())?;
        let abs = std::fs::canonicalize(dir.as_ref())?;
        let store = Arc::new(object_store::local::LocalFileSystem::new_with_prefix(&abs)?);
        let lake_url = Url::from_directory_path(&abs).map_err(|()| LakeError::Corrupt {
            path: abs.display().to_string(),
            reason: "not an absolute directory path".into(),
        })?;
        Ok(Lake {
            local: Some(store.clone()),
            store,
            root: Path::default(),
            config,
            location: TableLocation {
                lake_url,
                backend: None,
            },
            tables: Arc::default(),
        })
    }

    /// The object store.
    pub fn store(&self) -> &Arc<dyn ObjectStore> {
        &self.store
    }

    /// The root prefix.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The writer settings.
    pub fn config(&self) -> &LakeConfig {
        &self.config
    }

    /// The lake root as a URL (company tables are under it).
    pub fn url(&self) -> &Url {
        &self.location.lake_url
    }

    /// A reader of the tables' current snapshots.
    pub fn reader(&self) -> LakeReader {
        LakeReader::new(self.clone())
    }

    /// The object path of `rel` (slash-separated, already validated) under the root.
    pub(crate) fn path(&self, rel: &str) -> Path {
        layout::object_path(&self.root, rel)
    }

    /// Company `company`'s table, opened once per lake (and its clones);
    /// created with `create`, else `None` when it does not exist.
    pub(crate) async fn table(
        &self,
        company: &str,
        create: bool,
    ) -> Result<Option<Arc<AsyncMutex<HitTable>>>, LakeError> {
        check_company(company)?;
        if let Some(t) = self.tables.lock().expect("tables").get(company) {
            return Ok(Some(t.clone()));
        }
        let Some(table) = HitTable::open(&self.location, company, create).await? else {
            return Ok(None);
        };
        let mut tables = self.tables.lock().expect("tables");
        Ok(Some(
            tables
                .entry(company.to_string())
                .or_insert_with(|| Arc::new(AsyncMutex::new(table)))
                .clone(),
        ))
    }

    /// Starts writing the hits of one file of `company`. Day partitions
    /// follow `zones` (the company's suites).
    pub fn begin(
        &self,
        company: &str,
        file_id: &str,
        zones: SuiteZones,
    ) -> Result<LakeWriter, LakeError> {
        LakeWriter::new(company, file_id, zones, self.config.clone())
    }

    /// Puts a spooled file into its company's table, exactly once:
    ///
    /// 1. if the table's snapshot already holds `txn` (the group's version
    ///    is at or above the file's), nothing is written:
    ///    [`CommitOutcome::AlreadyCommitted`];
    /// 2. every part is uploaded under its final name (overwriting the
    ///    identical object of an earlier attempt);
    /// 3. one Delta commit adds every part and records `txn`.
    ///
    /// A crash before 3 leaves objects no snapshot lists (no reader sees
    /// them; the next attempt overwrites them, vacuum deletes the ones it
    /// no longer writes). Two processes committing the same file: one
    /// commit wins, the other finds `txn` and reports it already committed.
    pub async fn publish(
        &self,
        spooled: SpooledFile,
        txn: &FileTxn,
    ) -> Result<CommitOutcome, LakeError> {
        let SpooledFile {
            company,
            file_id,
            parts,
            ..
        } = spooled;
        check_name("file_id", &file_id)?;
        let table = self.table(&company, true).await?.expect("created");
        // The uploads run without the table's lock (readers and other
        // writers of the company go on); the commit checks the txn again.
        let done = table.lock().await.already(&txn.app_id, txn.version).await?;
        if let Some(done) = done {
            return Ok(done);
        }
        let mut entries = Vec::with_capacity(parts.len());
        for part in parts {
            entries.push(self.upload(part).await?);
        }
        entries.sort();
        let mut table = table.lock().await;
        table.commit_file(&entries, &txn.app_id, txn.version).await
    }

    async fn upload(&self, part: SpooledPart) -> Result<PartEntry, LakeError> {
        let SpooledPart {
            path,
            report_suite,
            date,
            rows,
            bytes,
            file: spooled,
        } = part;
        let target = self.path(&path);
        let entry = PartEntry {
            path,
            report_suite,
            date,
            rows,
            bytes,
        };
        if let Some(local) = &self.local {
            // A local lake: the spooled file is renamed into place (on the
            // same file system; copied otherwise). Atomic, as a put is.
            let dest = local.path_to_filesystem(&target)?;
            if let Some(dir) = dest.parent() {
                std::fs::create_dir_all(dir)?;
            }
            match std::fs::rename(&spooled, &dest) {
                Ok(()) => {
                    // Moved: nothing left to delete.
                    let _ = spooled.keep();
                    return Ok(entry);
                }
                Err(e) if e.kind() == std::io::ErrorKind::CrossesDevices => {}
                Err(e) => return Err(e.into()),
            }
        }
        let mut file = std::fs::File::open(&spooled)?;
        let chunk = self.config.upload_part_bytes.max(1);
        if bytes as usize <= chunk {
            let mut buf = Vec::with_capacity(bytes as usize);
            file.read_to_end(&mut buf)?;
            self.store.put(&target, PutPayload::from(buf)).await?;
        } else {
            let mut upload = self.store.put_multipart(&target).await?;
            let result: Result<(), LakeError> = async {
                loop {
                    let mut buf = Vec::with_capacity(chunk);
                    (&mut file).take(chunk as u64).read_to_end(&mut buf)?;
                    if buf.is_empty() {
                        break;
                    }
                    upload.put_part(PutPayload::from(buf)).await?;
                }
                upload.complete().await?;
                Ok(())
            }
            .await;
            if let Err(e) = result {
                let _ = upload.abort().await;
                return Err(e);
            }
        }
        Ok(entry)
    }

    /// The transaction version `app_id` last committed to `company`'s
    /// table, from its latest snapshot; `None` when it never committed (or
    /// the company has no table).
    pub async fn committed_version(
        &self,
        company: &str,
        app_id: &str,
    ) -> Result<Option<i64>, LakeError> {
        match self.table(company, false).await? {
            Some(t) => t.lock().await.committed_version(app_id).await,
            None => Ok(None),
        }
    }

    /// The data files of `company`'s current snapshot (none without a table).
    pub async fn files(&self, company: &str) -> Result<Vec<TableFile>, LakeError> {
        match self.table(company, false).await? {
            Some(t) => {
                let mut t = t.lock().await;
                t.refresh().await?;
                t.files()
            }
            None => Ok(Vec::new()),
        }
    }

    /// The companies that have a table, sorted.
    pub async fn companies(&self) -> Result<Vec<String>, LakeError> {
        let hits = self.path(layout::HITS);
        let listing = match self.store.list_with_delimiter(Some(&hits)).await {
            Ok(l) => l,
            Err(e) if is_not_found(&e) => return Ok(Vec::new()),
            Err(e) => return Err(e.into()),
        };
        let mut out = Vec::new();
        for dir in &listing.common_prefixes {
            let Some(company) = dir.filename().and_then(|n| n.strip_prefix("company=")) else {
                continue;
            };
            if check_company(company).is_ok() && self.table(company, false).await?.is_some() {
                out.push(company.to_string());
            }
        }
        out.sort();
        Ok(out)
    }

    /// Removes every hit of file `file_id` from `company`'s table in one
    /// Delta commit. Retracting a file whose hits are gone removes nothing.
    pub async fn retract_file(
        &self,
        company: &str,
        file_id: &str,
    ) -> Result<Retraction, LakeError> {
        check_name("file_id", file_id)?;
        let Some(table) = self.table(company, false).await? else {
            return Ok(Retraction {
                hits_removed: 0,
                table_version: None,
            });
        };
        let mut table = table.lock().await;
        let (hits_removed, table_version) = table
            .delete_where(
                ident("file_id").eq(lit(file_id)),
                self.config.writer_properties(),
            )
            .await?;
        Ok(Retraction {
            hits_removed,
            table_version,
        })
    }

    /// Removes, in one Delta commit, every hit of every visitor that `who`
    /// names in `company`'s table: the visitors identified by it, and the
    /// visitors of every hit that carries it (in `customer_ids`,
    /// `visitorID`, `marketingCloudVisitorID` or `IPAddress`), in all
    /// report suites. `salt` is the company's salt (a customer ID that
    /// seeds the visitor ID is stored as its seeded ID). Returns the
    /// visitors, for their states to be removed too.
    pub async fn delete_visitors(
        &self,
        company: &str,
        who: &Identifier,
        salt: &[u8],
    ) -> Result<VisitorDeletion, LakeError> {
        let Some(table) = self.table(company, false).await? else {
            return Ok(VisitorDeletion {
                hits_removed: 0,
                visitors: Vec::new(),
                table_version: None,
            });
        };
        let mut table = table.lock().await;
        let (kind, column) = who.kind_and_column();
        let (identity, carried) = match who {
            Identifier::CustomerId { id_type, id } => (
                bdia_model::seeded_visitor_id(salt, id_type, id),
                array_has(map_keys(ident(column)), lit(id_type.as_str())),
            ),
            Identifier::VisitorId(v)
            | Identifier::MarketingCloudVisitorId(v)
            | Identifier::IpAddress(v) => (v.clone(), ident(column).eq(lit(v.as_str()))),
        };
        let by_identity = ident("visitor_id_type")
            .eq(lit(kind))
            .and(ident("visitor_id").eq(lit(identity.as_str())));
        let rows = table
            .select_where(
                by_identity.or(carried),
                &[
                    "report_suite",
                    "visitor_id_type",
                    "visitor_id",
                    "customer_ids",
                ],
            )
            .await?;
        let found = matched_visitors(&rows, who, kind, &identity)?;
        if found.visitors.is_empty() {
            return Ok(VisitorDeletion {
                hits_removed: 0,
                visitors: Vec::new(),
                table_version: None,
            });
        }
        let mut by_kind: BTreeMap<&str, BTreeSet<&str>> = BTreeMap::new();
        for (k, v) in &found.visitors {
            by_kind.entry(k).or_default().insert(v);
        }
        let predicate = by_kind
            .into_iter()
            .map(|(k, ids)| {
                ident("visitor_id_type")
                    .eq(lit(k))
                    .and(ident("visitor_id").in_list(ids.into_iter().map(lit).collect(), false))
            })
            .reduce(Expr::or)
            .expect("at least one visitor");
        let (hits_removed, table_version) = table
            .delete_where(predicate, self.config.writer_properties())
            .await?;
        Ok(VisitorDeletion {
            hits_removed,
            visitors: found.states.into_iter().collect(),
            table_version,
        })
    }

    /// Compacts the partitions of `company`'s table that hold at least
    /// `min_files` files smaller than `target_bytes` (Delta optimize, one
    /// commit per partition, no data change: reports are unchanged). Runs
    /// on a copy of the table: file commits go on meanwhile.
    pub async fn compact(
        &self,
        company: &str,
        min_files: usize,
        target_bytes: u64,
    ) -> Result<Compaction, LakeError> {
        let Some(table) = self.table(company, false).await? else {
            return Ok(Compaction::default());
        };
        let mut copy = table.lock().await.clone();
        let s = copy
            .compact(min_files, target_bytes, self.config.writer_properties())
            .await?;
        Ok(Compaction {
            partitions: s.partitions,
            files_removed: s.files_removed,
            files_added: s.files_added,
            table_version: s.table_version,
        })
    }

    /// Deletes from storage the data files of `company`'s table that no
    /// snapshot of the last `retention` needs (removed by a delete or a
    /// compaction, or never committed), older than `retention`.
    pub async fn vacuum(
        &self,
        company: &str,
        retention: std::time::Duration,
    ) -> Result<Vacuum, LakeError> {
        let Some(table) = self.table(company, false).await? else {
            return Ok(Vacuum::default());
        };
        let mut copy = table.lock().await.clone();
        Ok(Vacuum {
            files_deleted: copy.vacuum(retention).await?,
        })
    }

    /// Moves a lake of the format before Delta tables into its tables, and
    /// removes what an interrupted publication of that format left. Run it
    /// at startup, before processing or reports. `txns` gives each file's
    /// visitor group and sequence (from the metadata store).
    ///
    /// Each commit record (`_commits/<file_id>.json`) naming a company is
    /// committed to that company's table as one Delta commit with the
    /// file's transaction (its parts stay where they are: the table's
    /// partition directories are the record format's), in group order,
    /// then the record is deleted. A crash in between is safe: the next
    /// run finds the transaction committed and only deletes the record.
    pub async fn recover(&self, txns: &HashMap<String, FileTxn>) -> Result<Recovery, LakeError> {
        let mut out = Recovery {
            discarded: self.delete_prefix(&self.path(STAGING)).await?,
            ..Recovery::default()
        };
        let mut records: Vec<(FileTxn, FileManifest, Path)> = Vec::new();
        for (m, path) in self.records().await? {
            match txns.get(&m.file_id) {
                Some(txn) if !m.is_legacy() => records.push((txn.clone(), m, path)),
                _ => out.unowned.push(m.file_id),
            }
        }
        records.sort_by(|a, b| (&a.0.app_id, a.0.version).cmp(&(&b.0.app_id, b.0.version)));
        for (txn, m, path) in records {
            let table = self.table(&m.company, true).await?.expect("created");
            table
                .lock()
                .await
                .commit_file(&m.parts, &txn.app_id, txn.version)
                .await?;
            self.delete_if_exists(&path).await?;
            out.migrated.push(m.file_id);
        }
        out.unowned.sort();
        Ok(out)
    }

    /// The commit records of the format before Delta tables, with their
    /// paths.
    async fn records(&self) -> Result<Vec<(FileManifest, Path)>, LakeError> {
        let listing: Vec<Path> = match self
            .store
            .list(Some(&self.path(COMMITS)))
            .try_collect::<Vec<_>>()
            .await
        {
            Ok(v) => v.into_iter().map(|m| m.location).collect(),
            Err(e) if is_not_found(&e) => Vec::new(),
            Err(e) => return Err(e.into()),
        };
        let mut out = Vec::with_capacity(listing.len());
        for path in listing {
            if let Some(m) = manifest::read(self.store.as_ref(), &path).await? {
                out.push((m, path));
            }
        }
        Ok(out)
    }

    /// The files (id, company) of the commit records that
    /// [`Lake::recover`] would move into tables: what it needs a
    /// [`FileTxn`] for. Records naming no company (a layout older still)
    /// are left out.
    pub async fn legacy_files(&self) -> Result<Vec<(String, String)>, LakeError> {
        Ok(self
            .records()
            .await?
            .into_iter()
            .filter(|(m, _)| !m.is_legacy())
            .map(|(m, _)| (m.file_id, m.company))
            .collect())
    }

    async fn delete_if_exists(&self, path: &Path) -> Result<(), LakeError> {
        match self.store.delete(path).await {
            Ok(()) => Ok(()),
            Err(e) if is_not_found(&e) => Ok(()),
            Err(e) => Err(e.into()),
        }
    }

    /// Deletes every object under `prefix`; returns how many there were.
    async fn delete_prefix(&self, prefix: &Path) -> Result<usize, LakeError> {
        let objects: Vec<Path> = match self.store.list(Some(prefix)).try_collect::<Vec<_>>().await {
            Ok(v) => v.into_iter().map(|m| m.location).collect(),
            Err(e) if is_not_found(&e) => return Ok(0),
            Err(e) => return Err(e.into()),
        };
        let n = objects.len();
        for o in objects {
            self.delete_if_exists(&o).await?;
        }
        Ok(n)
    }
}

/// A column of `batch` as UTF-8 strings, whatever its string encoding.
fn strings(batch: &RecordBatch, name: &str) -> Result<Arc<dyn Array>, LakeError> {
    let col = batch
        .column_by_name(name)
        .ok_or_else(|| LakeError::Corrupt {
            path: name.to_string(),
            reason: "column missing from the table".into(),
        })?;
    Ok(cast(col, &DataType::Utf8)?)
}

/// Visitors to delete, as (kind, visitor ID), and their states.
#[derive(Debug, Default)]
struct Matched {
    visitors: BTreeSet<(String, String)>,
    states: BTreeSet<VisitorRef>,
}

/// The visitors of the rows `select_where` returned for `who`. A row
/// matched only by a customer ID type is kept when its customer ID of that
/// type is the one asked for. A visitor's state key is its kind and ID, or
/// for a customer its seeding customer ID (type and ID).
fn matched_visitors(
    batches: &[RecordBatch],
    who: &Identifier,
    kind: &str,
    identity: &str,
) -> Result<Matched, LakeError> {
    let mut out = Matched::default();
    for batch in batches {
        let suites = strings(batch, "report_suite")?;
        let kinds = strings(batch, "visitor_id_type")?;
        let ids = strings(batch, "visitor_id")?;
        let (suites, kinds, ids) = (
            suites.as_string::<i32>(),
            kinds.as_string::<i32>(),
            ids.as_string::<i32>(),
        );
        let cids = batch
            .column_by_name("customer_ids")
            .and_then(|c| c.as_map_opt())
            .ok_or_else(|| LakeError::Corrupt {
                path: "customer_ids".into(),
                reason: "not a map column".into(),
            })?;
        for row in 0..batch.num_rows() {
            let entries = cids.value(row);
            let keys = cast(entries.column(0), &DataType::Utf8)?;
            let keys = keys.as_string::<i32>();
            let values = entries.column(1).as_struct();
            let id_col = cast(values.column(0), &DataType::Utf8)?;
            let id_col = id_col.as_string::<i32>();
            let seed_col = values.column(2).as_boolean();
            let (k, v) = (kinds.value(row), ids.value(row));
            let identified = k == kind && v == identity;
            if let Identifier::CustomerId { id_type, id } = who {
                let carries =
                    (0..keys.len()).any(|e| keys.value(e) == id_type && id_col.value(e) == id);
                if !identified && !carries {
                    continue;
                }
            }
            out.visitors.insert((k.to_string(), v.to_string()));
            let state_key = match (k, who) {
                ("customer", _) => (0..keys.len())
                    .find(|&e| seed_col.value(e))
                    .map(|e| format!("customer:{}:{}", keys.value(e), id_col.value(e))),
                _ => Some(format!("{k}:{v}")),
            };
            let state_key = match (state_key, who) {
                (Some(key), _) => key,
                (None, Identifier::CustomerId { id_type, id }) if identified => {
                    format!("customer:{id_type}:{id}")
                }
                (None, _) => continue,
            };
            out.states.insert(VisitorRef {
                report_suite: suites.value(row).to_string(),
                state_key,
            });
        }
    }
    Ok(out)
}
