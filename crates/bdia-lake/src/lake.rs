//! [`Lake`]: publication of spooled files, exactly once, and recovery.
//!
//! Names come from [`crate::layout`], manifests and commit records from
//! [`crate::manifest`]; this module owns the order of the writes
//! ([`Lake::publish`]), the repair of an interrupted order
//! ([`Lake::recover`]) and the move of a lake written before companies
//! were part of the layout ([`Lake::migrate_layout`]).

use std::collections::{BTreeSet, HashMap, HashSet};
use std::io::Read;
use std::sync::Arc;

use futures::TryStreamExt;
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload};

use crate::error::{is_not_found, LakeError};
use crate::layout::{self, check_company, check_name, LEGACY_HITS_PREFIX, MANIFEST, STAGING};
use crate::manifest::{self, FileManifest, PartEntry, MANIFEST_VERSION};
use crate::partition::SuiteZones;
use crate::reader::LakeReader;
use crate::writer::{LakeConfig, LakeWriter, SpooledFile, SpooledPart};

/// What [`Lake::recover`] did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Recovery {
    /// Files whose staging was complete: their publication was finished.
    pub rolled_forward: Vec<String>,
    /// Files whose staging was incomplete: their leftovers were deleted.
    pub discarded: Vec<String>,
}

/// What [`Lake::migrate_layout`] did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LayoutMigration {
    /// Files whose parts and commit record were moved under their company.
    pub moved: Vec<String>,
    /// Files left in the layout without companies because no company was
    /// given for them; readers do not return their parts.
    pub unowned: Vec<String>,
    /// Objects of the layout without companies deleted because no record
    /// lists them any more (left by an interrupted migration).
    pub swept: usize,
}

/// A hit lake on an object store, under a root prefix. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Lake {
    store: Arc<dyn ObjectStore>,
    root: Path,
    config: LakeConfig,
    /// Set for [`Lake::local`]: where empty directories are pruned.
    local_dir: Option<std::path::PathBuf>,
}

impl Lake {
    /// A lake under `root` (e.g. `lake`) in `store`.
    pub fn new(store: Arc<dyn ObjectStore>, root: Path, config: LakeConfig) -> Lake {
        Lake {
            store,
            root,
            config,
            local_dir: None,
        }
    }

    /// A lake in a local directory (created if missing), at its top. Empty
    /// directories left by publication are removed.
    pub fn local(dir: impl AsRef<std::path::Path>, config: LakeConfig) -> Result<Lake, LakeError> {
        std::fs::create_dir_all(dir.as_ref())?;
        let store = object_store::local::LocalFileSystem::new_with_prefix(dir.as_ref())?;
        let mut lake = Lake::new(Arc::new(store), Path::default(), config);
        lake.local_dir = Some(dir.as_ref().to_path_buf());
        Ok(lake)
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

    /// A reader of committed parts.
    pub fn reader(&self) -> LakeReader {
        LakeReader::new(self.store.clone(), self.root.clone())
    }

    /// The object path of `rel` (slash-separated, already validated) under the root.
    fn path(&self, rel: &str) -> Path {
        layout::object_path(&self.root, rel)
    }

    fn staging_dir(&self, file_id: &str) -> Path {
        self.path(&layout::staging_dir(file_id))
    }

    fn staged(&self, file_id: &str, rel: &str) -> Path {
        self.path(&layout::staged(file_id, rel))
    }

    fn commit_path(&self, file_id: &str) -> Path {
        self.path(&layout::commit_record(file_id))
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

    /// Puts a spooled file into the lake, exactly once:
    ///
    /// 1. leftovers of an earlier attempt under `_staging/<file_id>/` are deleted;
    /// 2. every part is uploaded under `_staging/<file_id>/`;
    /// 3. `_staging/<file_id>/_manifest.json` is written: the file is staged;
    /// 4. each part is copied to its final path under `hits/` (overwriting
    ///    an identical object from an earlier run);
    /// 5. `_commits/<file_id>.json` is written: the file is committed;
    /// 6. parts of an earlier commit of this file that this one no longer
    ///    has (listed as `stale` in the staged manifest) are deleted, then
    ///    the staging prefix (manifest first).
    ///
    /// A crash before 3 leaves only staging leftovers, which
    /// [`Lake::recover`] deletes; a crash after 3 is finished by
    /// [`Lake::recover`] from the staged copy. Publishing the same file
    /// twice gives the same lake.
    pub async fn publish(&self, spooled: SpooledFile) -> Result<FileManifest, LakeError> {
        let SpooledFile {
            company,
            file_id,
            parts,
            rows,
        } = spooled;
        check_company(&company)?;
        check_name("file_id", &file_id)?;
        self.delete_prefix(&self.staging_dir(&file_id)).await?;
        let mut entries = Vec::with_capacity(parts.len());
        for part in parts {
            entries.push(self.upload(&file_id, part).await?);
        }
        entries.sort();
        let stale = match self.committed(&file_id).await? {
            Some(previous) => {
                let now: BTreeSet<&str> = entries.iter().map(|p| p.path.as_str()).collect();
                previous
                    .parts
                    .into_iter()
                    .map(|p| p.path)
                    .filter(|p| !now.contains(p.as_str()))
                    .collect()
            }
            None => Vec::new(),
        };
        let manifest = FileManifest {
            version: MANIFEST_VERSION,
            file_id: file_id.clone(),
            company,
            rows,
            parts: entries,
            stale,
        };
        self.store
            .put(
                &self.staged(&file_id, MANIFEST),
                PutPayload::from(manifest.to_json()?),
            )
            .await?;
        self.roll_forward(&manifest).await?;
        Ok(manifest)
    }

    async fn upload(&self, file_id: &str, part: SpooledPart) -> Result<PartEntry, LakeError> {
        let SpooledPart {
            path,
            report_suite,
            date,
            rows,
            bytes,
            file: spooled,
        } = part;
        let mut file = std::fs::File::open(&spooled)?;
        let target = self.staged(file_id, &path);
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
        Ok(PartEntry {
            path,
            report_suite,
            date,
            rows,
            bytes,
        })
    }

    /// Steps 4 to 6 of [`Lake::publish`], from a complete staging.
    async fn roll_forward(&self, manifest: &FileManifest) -> Result<(), LakeError> {
        let file_id = &manifest.file_id;
        for part in &manifest.parts {
            self.store
                .copy(&self.staged(file_id, &part.path), &self.path(&part.path))
                .await?;
        }
        let record = FileManifest {
            stale: Vec::new(),
            ..manifest.clone()
        };
        self.store
            .put(
                &self.commit_path(file_id),
                PutPayload::from(record.to_json()?),
            )
            .await?;
        for old in &manifest.stale {
            self.delete_if_exists(&self.path(old)).await?;
        }
        self.delete_if_exists(&self.staged(file_id, MANIFEST))
            .await?;
        self.delete_prefix(&self.staging_dir(file_id)).await?;
        self.prune_local(&layout::staging_dir(file_id));
        Ok(())
    }

    /// The commit record of a file, if it is committed.
    pub async fn committed(&self, file_id: &str) -> Result<Option<FileManifest>, LakeError> {
        check_name("file_id", file_id)?;
        self.read_manifest(&self.commit_path(file_id)).await
    }

    async fn read_manifest(&self, path: &Path) -> Result<Option<FileManifest>, LakeError> {
        manifest::read(self.store.as_ref(), path).await
    }

    /// Finishes or undoes whatever a crash interrupted: for each file under
    /// `_staging/`, a complete staging (its manifest present) is published,
    /// an incomplete one deleted. Run it at startup, before processing.
    pub async fn recover(&self) -> Result<Recovery, LakeError> {
        let mut out = Recovery::default();
        let staging = self.path(STAGING);
        let listing = match self.store.list_with_delimiter(Some(&staging)).await {
            Ok(l) => l,
            Err(e) if is_not_found(&e) => return Ok(out),
            Err(e) => return Err(e.into()),
        };
        let mut ids: Vec<String> = listing
            .common_prefixes
            .iter()
            .filter_map(|p| p.filename().map(str::to_string))
            .collect();
        ids.sort();
        for file_id in ids {
            if check_name("file_id", &file_id).is_err() {
                continue;
            }
            match self.read_manifest(&self.staged(&file_id, MANIFEST)).await? {
                Some(m) if m.file_id == file_id => {
                    self.roll_forward(&m).await?;
                    out.rolled_forward.push(file_id);
                }
                _ => {
                    if self.delete_prefix(&self.staging_dir(&file_id)).await? > 0 {
                        out.discarded.push(file_id.clone());
                    }
                    self.prune_local(&layout::staging_dir(&file_id));
                }
            }
        }
        Ok(out)
    }

    /// The ids of the committed files whose records are of the layout
    /// without companies ([`FileManifest::is_legacy`]), sorted: what
    /// [`Lake::migrate_layout`] needs an owner for.
    /// Cheap when there is nothing to move: without a
    /// `hits/report_suite=...` directory no record is read.
    pub async fn legacy_files(&self) -> Result<Vec<String>, LakeError> {
        if self.legacy_dirs().await?.is_empty() {
            return Ok(Vec::new());
        }
        Ok(self
            .reader()
            .commits()
            .await?
            .iter()
            .filter(|m| m.is_legacy())
            .map(|m| m.file_id.clone())
            .collect())
    }

    /// Moves a lake written before companies were part of the layout
    /// (`hits/report_suite=<rsid>/...`, version-1 commit records) under
    /// `hits/company=<company_id>/`, each file under the company `owners`
    /// gives for its id. Run it at startup, after [`Lake::recover`] (which
    /// finishes publications staged by an older release in their old
    /// layout) and before processing or reports.
    ///
    /// Per file, in this order:
    ///
    /// 1. each part is copied to its new path (a hard link on a local
    ///    disk: no data is copied; a server-side copy on S3);
    /// 2. the commit record is rewritten in place (one atomic put) as a
    ///    version-2 record naming the company and the new paths;
    /// 3. the old parts are deleted.
    ///
    /// Then every object left under `hits/report_suite=...` that no
    /// remaining version-1 record lists (old parts of a file whose move was
    /// interrupted after step 2) is deleted, and, on a local disk, the
    /// empty old directories.
    ///
    /// Idempotent and crash-safe: a record is either old, and its old
    /// parts all exist (step 1 is redone, overwriting identical objects),
    /// or new, and its new parts all exist; a crash between steps leaves at
    /// most unreferenced copies, which the next run completes or sweeps. A
    /// file with no owner stays as it is (listed in
    /// [`LayoutMigration::unowned`]) and is never read as any company's.
    /// Tools that glob `hits/**/*.parquet` may see a file's parts twice
    /// while it is being moved.
    pub async fn migrate_layout(
        &self,
        owners: &HashMap<String, String>,
    ) -> Result<LayoutMigration, LakeError> {
        let mut out = LayoutMigration::default();
        if self.legacy_dirs().await?.is_empty() {
            return Ok(out);
        }
        let mut kept: HashSet<String> = HashSet::new();
        for m in self.reader().commits().await? {
            if !m.is_legacy() {
                continue;
            }
            match owners.get(&m.file_id) {
                Some(company) => {
                    self.move_under(&m, company).await?;
                    out.moved.push(m.file_id.clone());
                }
                None => {
                    kept.extend(m.parts.iter().map(|p| p.path.clone()));
                    out.unowned.push(m.file_id.clone());
                }
            }
        }
        out.swept = self.sweep_legacy(&kept).await?;
        Ok(out)
    }

    /// Steps 1 to 3 of [`Lake::migrate_layout`] for one file.
    async fn move_under(&self, old: &FileManifest, company: &str) -> Result<(), LakeError> {
        check_company(company)?;
        check_name("file_id", &old.file_id)?;
        let mut parts = Vec::with_capacity(old.parts.len());
        for p in &old.parts {
            let path =
                layout::legacy_part_under(company, &p.path).ok_or_else(|| LakeError::Corrupt {
                    path: layout::commit_record(&old.file_id),
                    reason: format!("part {} is not of the layout without companies", p.path),
                })?;
            self.store
                .copy(&self.path(&p.path), &self.path(&path))
                .await?;
            parts.push(PartEntry { path, ..p.clone() });
        }
        parts.sort();
        let record = FileManifest {
            version: MANIFEST_VERSION,
            file_id: old.file_id.clone(),
            company: company.to_string(),
            rows: old.rows,
            parts,
            stale: Vec::new(),
        };
        self.store
            .put(
                &self.commit_path(&old.file_id),
                PutPayload::from(record.to_json()?),
            )
            .await?;
        for p in &old.parts {
            self.delete_if_exists(&self.path(&p.path)).await?;
        }
        Ok(())
    }

    /// The directories of the layout without companies
    /// (`hits/report_suite=<rsid>`), as paths relative to the root.
    async fn legacy_dirs(&self) -> Result<Vec<String>, LakeError> {
        let hits = self.path(layout::HITS);
        let listing = match self.store.list_with_delimiter(Some(&hits)).await {
            Ok(l) => l,
            Err(e) if is_not_found(&e) => return Ok(Vec::new()),
            Err(e) => return Err(e.into()),
        };
        Ok(listing
            .common_prefixes
            .iter()
            .filter_map(|dir| dir.filename())
            .map(|name| format!("{}/{name}", layout::HITS))
            .filter(|rel| rel.starts_with(LEGACY_HITS_PREFIX))
            .collect())
    }

    /// Deletes the objects under `hits/report_suite=...` not in `kept`;
    /// returns how many.
    async fn sweep_legacy(&self, kept: &HashSet<String>) -> Result<usize, LakeError> {
        let mut swept = 0;
        for rel in self.legacy_dirs().await? {
            let objects: Vec<Path> = self
                .store
                .list(Some(&self.path(&rel)))
                .map_ok(|m| m.location)
                .try_collect()
                .await?;
            for o in objects {
                if !kept.contains(&self.relative(&o)) {
                    self.delete_if_exists(&o).await?;
                    swept += 1;
                }
            }
            self.prune_local(&rel);
        }
        Ok(swept)
    }

    /// The path of an object relative to the root, slash-separated.
    fn relative(&self, path: &Path) -> String {
        path.prefix_match(&self.root)
            .map(|parts| {
                parts
                    .map(|p| p.as_ref().to_string())
                    .collect::<Vec<_>>()
                    .join("/")
            })
            .unwrap_or_else(|| path.to_string())
    }

    /// Removes a committed file from the lake (its parts, then its commit
    /// record), e.g. before reprocessing it from a different visitor state.
    pub async fn remove_file(&self, file_id: &str) -> Result<(), LakeError> {
        if let Some(m) = self.committed(file_id).await? {
            self.delete_if_exists(&self.commit_path(file_id)).await?;
            for p in &m.parts {
                self.delete_if_exists(&self.path(&p.path)).await?;
            }
        }
        self.delete_prefix(&self.staging_dir(file_id)).await?;
        self.prune_local(&layout::staging_dir(file_id));
        Ok(())
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

    /// On a local lake, removes the empty directories left under `rel`
    /// (object stores have no directories; a local file system keeps them).
    /// Best effort: a directory that is not empty stays.
    fn prune_local(&self, rel: &str) {
        fn prune(dir: &std::path::Path) {
            if let Ok(entries) = std::fs::read_dir(dir) {
                for e in entries.flatten() {
                    if e.file_type().is_ok_and(|t| t.is_dir()) {
                        prune(&e.path());
                    }
                }
            }
            let _ = std::fs::remove_dir(dir);
        }
        if let Some(base) = &self.local_dir {
            let mut dir = base.clone();
            for seg in self.root.parts() {
                dir.push(seg.as_ref());
            }
            dir.extend(rel.split('/'));
            prune(&dir);
        }
    }
}
