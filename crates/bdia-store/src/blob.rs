//! Staged upload bytes and reject reports.
//!
//! Layout under the blob root (`DATA_DIR/blobs`, or `<prefix>/blobs/` of
//! an object store):
//!
//! ```text
//! staging/<name>.part         bytes being received; never referenced by a record
//!                             (always on the local disk, `DATA_DIR/blobs/staging`)
//! files/<file_id>.csv.gz      the staged upload, exactly as received
//! rejects/<file_id>.csv       the first invalid rows (row,kind,message,raw),
//!                             then a count line per kind left out
//! ```
//!
//! Writes happen on the upload's blocking thread, in one pass with the
//! format engine: bytes go to `staging/` on the local disk, then
//! [`StagedFile::publish`] makes them durable under their key before the
//! file record is committed: on a local directory fsync, rename, fsync of
//! the directory; on an object store an upload (multipart when large) that
//! returns once the store acknowledged it. Recovery: everything under
//! `staging/` is garbage at startup ([`BlobStore::clear_staging`]); an
//! object under `files/` or `rejects/` that no record references (a crash
//! between the publish and the commit) is removed by the startup sweep of
//! the server.
//!
//! Reads, listing and deletion go through the `object_store` crate
//! ([`BlobStore::object_store`]) on both backends; a reader that needs a
//! local file ([`BlobStore::open_read`]: the format engine is synchronous)
//! gets the object downloaded to an unnamed temporary file when the blobs
//! are not on the local disk.

use std::fs::{self, File};
use std::io::{self, BufWriter, Seek, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use bytes::Bytes;
use futures::stream::BoxStream;
use futures::{StreamExt, TryStreamExt};
use object_store::local::LocalFileSystem;
use object_store::path::Path as ObjectPath;
use object_store::prefix::PrefixStore;
use object_store::{ObjectStore, ObjectStoreExt};
use tokio::io::AsyncWriteExt;

use crate::{StoreError, StoreResult};

/// Blob key of a staged upload.
pub fn file_key(file_id: &str) -> String {
    format!("files/{file_id}.csv.gz")
}

/// Blob key of a file's reject report.
pub fn rejects_key(file_id: &str) -> String {
    format!("rejects/{file_id}.csv")
}

fn io_err(e: io::Error) -> StoreError {
    StoreError::backend("blob file I/O", e)
}

fn os_err(e: object_store::Error) -> StoreError {
    match e {
        object_store::Error::NotFound { path, .. } => StoreError::NotFound(path),
        e => StoreError::backend("blob object store", e),
    }
}

/// Part size of the multipart upload of a large staged file.
const UPLOAD_PART_BYTES: usize = 8 * 1024 * 1024;

/// How long [`BlobStore::check`] waits for the object store.
const CHECK_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);

/// Parts of one upload in flight at once.
const UPLOAD_CONCURRENCY: usize = 2;

/// Staged files and reject reports: on a local directory, or on an object
/// store with a local staging directory.
#[derive(Debug, Clone)]
pub struct BlobStore {
    /// The local directory: `staging/` (both backends) and, for a local
    /// store, the objects themselves.
    root: PathBuf,
    /// The objects, rooted at the blob root.
    store: Arc<dyn ObjectStore>,
    /// True when the objects are on the local disk under `root`.
    local: bool,
}

impl BlobStore {
    /// Opens (creating) a blob root directory.
    pub fn open_local(root: &Path) -> StoreResult<BlobStore> {
        for sub in ["staging", "files", "rejects"] {
            fs::create_dir_all(root.join(sub)).map_err(io_err)?;
        }
        let root = root.canonicalize().map_err(io_err)?;
        let store = LocalFileSystem::new_with_prefix(&root).map_err(os_err)?;
        Ok(BlobStore {
            root,
            store: Arc::new(store),
            local: true,
        })
    }

    /// Blobs under `prefix` of an object store (e.g. S3), staged in
    /// `local/staging` (created) before they are uploaded.
    pub fn open_object_store(
        store: Arc<dyn ObjectStore>,
        prefix: ObjectPath,
        local: &Path,
    ) -> StoreResult<BlobStore> {
        fs::create_dir_all(local.join("staging")).map_err(io_err)?;
        let root = local.canonicalize().map_err(io_err)?;
        Ok(BlobStore {
            root,
            store: Arc::new(PrefixStore::new(store, prefix)),
            local: false,
        })
    }

    /// True when the objects are on the local disk (one server owns them:
    /// the data dir's lock), false on an object store that other servers
    /// may share.
    pub fn is_local(&self) -> bool {
        self.local
    }

    /// The object store view of the blobs, rooted at the blob root.
    pub fn object_store(&self) -> Arc<dyn ObjectStore> {
        self.store.clone()
    }

    /// The local directory (staging; the objects too for a local store).
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Where a key's object lives on the local disk; `None` when the blobs
    /// are on an object store.
    pub fn local_path(&self, key: &str) -> Option<PathBuf> {
        self.local.then(|| self.root.join(key))
    }

    /// Checks that the blobs can be reached (for readiness): the local
    /// directory exists, or the object store answers a listing.
    pub async fn check(&self) -> StoreResult<()> {
        if self.local {
            if !self.root.join("files").is_dir() {
                return Err(StoreError::NotFound("blob root".into()));
            }
            return Ok(());
        }
        let p = ObjectPath::from("files");
        let mut list = self.store.list(Some(&p));
        match tokio::time::timeout(CHECK_TIMEOUT, list.next()).await {
            Ok(None | Some(Ok(_))) => Ok(()),
            Ok(Some(Err(e))) => Err(os_err(e)),
            Err(_) => Err(StoreError::backend(
                "blob object store",
                format!("no answer within {} s", CHECK_TIMEOUT.as_secs()),
            )),
        }
    }

    /// Opens an object for synchronous reading: the file itself on a local
    /// store, else a download of it into an unnamed temporary file under
    /// `staging/` (gone when closed, or at a crash).
    pub async fn open_read(&self, key: &str) -> StoreResult<File> {
        if let Some(path) = self.local_path(key) {
            return File::open(path).map_err(|e| match e.kind() {
                io::ErrorKind::NotFound => StoreError::NotFound(key.to_string()),
                _ => io_err(e),
            });
        }
        let tmp = tempfile::tempfile_in(self.root.join("staging")).map_err(io_err)?;
        let mut out = tokio::fs::File::from_std(tmp);
        let mut chunks = self.get_stream(key).await?;
        while let Some(chunk) = chunks.next().await {
            out.write_all(&chunk?).await.map_err(io_err)?;
        }
        out.flush().await.map_err(io_err)?;
        let mut file = out.into_std().await;
        file.rewind().map_err(io_err)?;
        Ok(file)
    }

    /// Starts a staged file named `name` (unique per upload). Blocking I/O:
    /// call it from a blocking thread.
    pub fn stage(&self, name: &str) -> StoreResult<StagedFile> {
        let path = self.root.join("staging").join(format!("{name}.part"));
        let file = File::create(&path).map_err(io_err)?;
        Ok(StagedFile {
            path: Some(path),
            out: BufWriter::with_capacity(256 * 1024, file),
            blobs: self.clone(),
        })
    }

    /// Removes everything under `staging/` (call at startup, before serving).
    pub fn clear_staging(&self) -> StoreResult<usize> {
        let mut n = 0;
        for entry in fs::read_dir(self.root.join("staging")).map_err(io_err)? {
            let entry = entry.map_err(io_err)?;
            fs::remove_file(entry.path()).map_err(io_err)?;
            n += 1;
        }
        Ok(n)
    }

    /// An object as a stream of chunks, for readers of objects that may be
    /// large (reject reports): the object is never held whole.
    pub async fn get_stream(
        &self,
        key: &str,
    ) -> StoreResult<BoxStream<'static, StoreResult<Bytes>>> {
        let r = self
            .store
            .get(&ObjectPath::from(key))
            .await
            .map_err(os_err)?;
        Ok(r.into_stream().map_err(os_err).boxed())
    }

    /// Whole object (small objects, tests).
    pub async fn get(&self, key: &str) -> StoreResult<Bytes> {
        let r = self
            .store
            .get(&ObjectPath::from(key))
            .await
            .map_err(os_err)?;
        r.bytes().await.map_err(os_err)
    }

    /// True when the object exists.
    pub async fn exists(&self, key: &str) -> StoreResult<bool> {
        match self.store.head(&ObjectPath::from(key)).await {
            Ok(_) => Ok(true),
            Err(object_store::Error::NotFound { .. }) => Ok(false),
            Err(e) => Err(os_err(e)),
        }
    }

    /// Deletes an object; a missing one is not an error.
    pub async fn delete(&self, key: &str) -> StoreResult<()> {
        match self.store.delete(&ObjectPath::from(key)).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(os_err(e)),
        }
    }

    /// Deletes an object from a blocking thread (to undo a publish whose
    /// record could not be committed); a missing one is not an error.
    pub fn delete_blocking(&self, key: &str) -> StoreResult<()> {
        match self.local_path(key) {
            Some(path) => match fs::remove_file(path) {
                Ok(()) => Ok(()),
                Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
                Err(e) => Err(io_err(e)),
            },
            None => runtime()?.block_on(self.delete(key)),
        }
    }

    /// Keys of every object under `files/` and `rejects/`.
    pub async fn list_keys(&self) -> StoreResult<Vec<String>> {
        self.list_keys_older_than(std::time::Duration::ZERO).await
    }

    /// Keys of the objects under `files/` and `rejects/` last modified at
    /// least `age` ago (by the store's clock against this host's).
    pub async fn list_keys_older_than(&self, age: std::time::Duration) -> StoreResult<Vec<String>> {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as i64);
        let cutoff = now.saturating_sub(age.as_millis() as i64);
        let mut keys = Vec::new();
        for prefix in ["files", "rejects"] {
            let p = ObjectPath::from(prefix);
            let metas: Vec<_> = self
                .store
                .list(Some(&p))
                .try_collect()
                .await
                .map_err(os_err)?;
            keys.extend(
                metas
                    .into_iter()
                    .filter(|m| age.is_zero() || m.last_modified.timestamp_millis() <= cutoff)
                    .map(|m| m.location.to_string()),
            );
        }
        Ok(keys)
    }
}

/// The runtime a blocking thread of it runs on (for the object store's
/// async calls).
fn runtime() -> StoreResult<tokio::runtime::Handle> {
    tokio::runtime::Handle::try_current()
        .map_err(|e| StoreError::backend("blob store outside a tokio runtime", e))
}

/// Uploads the local file `from` to `key` of `store`: one put when small,
/// else a multipart upload of [`UPLOAD_PART_BYTES`] parts; returns once
/// the store acknowledged the whole object. A failed upload is aborted.
async fn upload(store: Arc<dyn ObjectStore>, from: &Path, key: &str) -> StoreResult<()> {
    let mut file = tokio::fs::File::open(from).await.map_err(io_err)?;
    let mut w = object_store::buffered::BufWriter::with_capacity(
        store,
        ObjectPath::from(key),
        UPLOAD_PART_BYTES,
    )
    .with_max_concurrency(UPLOAD_CONCURRENCY);
    if let Err(e) = tokio::io::copy(&mut file, &mut w).await {
        let _ = w.abort().await;
        return Err(StoreError::backend("uploading a staged file", e));
    }
    w.shutdown()
        .await
        .map_err(|e| StoreError::backend("completing the upload of a staged file", e))
}

/// A file being written under `staging/`; removed on drop unless published.
#[derive(Debug)]
pub struct StagedFile {
    path: Option<PathBuf>,
    out: BufWriter<File>,
    blobs: BlobStore,
}
impl Write for StagedFile {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.out.write(buf)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.out.flush()
    }
}

fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

impl StagedFile {
    /// Makes the bytes durable under `key`, returning once they are: on a
    /// local store flush, fsync, rename, fsync the directory; on an object
    /// store an upload the store acknowledged (the staged file is then
    /// removed). Blocking I/O: call it from a blocking thread of a tokio
    /// runtime.
    pub fn publish(mut self, key: &str) -> StoreResult<()> {
        self.out.flush().map_err(io_err)?;
        let Some(target) = self.blobs.local_path(key) else {
            let from = self.path.clone().expect("path present until published");
            let store = self.blobs.store.clone();
            return runtime()?.block_on(upload(store, &from, key));
        };
        self.out.get_ref().sync_all().map_err(io_err)?;
        let dir = target
            .parent()
            .ok_or_else(|| StoreError::Invalid(format!("blob key '{key}'")))?
            .to_path_buf();
        fs::create_dir_all(&dir).map_err(io_err)?;
        let from = self.path.take().expect("path present until published");
        if let Err(e) = fs::rename(&from, &target) {
            let _ = fs::remove_file(&from);
            return Err(io_err(e));
        }
        sync_dir(&dir).map_err(io_err)?;
        Ok(())
    }

    /// Drops the staged bytes.
    pub fn discard(self) {}
}

impl Drop for StagedFile {
    fn drop(&mut self) {
        if let Some(p) = self.path.take() {
            let _ = fs::remove_file(p);
        }
    }
}
