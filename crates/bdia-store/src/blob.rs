//! Staged upload bytes and reject reports.
//!
//! On-disk layout under the blob root (`DATA_DIR/blobs`):
//!
//! ```text
//! staging/<name>.part         bytes being received; never referenced by a record
//! files/<file_id>.csv.gz      the staged upload, exactly as received
//! rejects/<file_id>.csv       the first invalid rows (row,kind,message,raw),
//!                             then a count line per kind left out
//! ```
//!
//! Writes happen on the upload's blocking thread, in one pass with the
//! format engine: bytes go to `staging/`, are fsynced, then renamed to their
//! key and the directory fsynced ([`StagedFile::publish`]), all before the
//! file record is committed. Recovery: everything under `staging/` is
//! garbage at startup ([`BlobStore::clear_staging`]); an object under
//! `files/` or `rejects/` that no record references (a crash between the
//! rename and the commit) is removed by the startup sweep of the server.
//!
//! Reads, listing and deletion go through the `object_store` crate
//! ([`BlobStore::object_store`]), so an S3-compatible store can replace the
//! local directory; the local write path exists because `LocalFileSystem`
//! does not fsync.

use std::fs::{self, File};
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use bytes::Bytes;
use futures::stream::BoxStream;
use futures::{StreamExt, TryStreamExt};
use object_store::local::LocalFileSystem;
use object_store::path::Path as ObjectPath;
use object_store::{ObjectStore, ObjectStoreExt};

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

/// Staged files on a local directory, read through `object_store`.
#[derive(Debug, Clone)]
pub struct BlobStore {
    root: PathBuf,
    store: Arc<dyn ObjectStore>,
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
        })
    }

    /// The object store view of the same blobs (for readers).
    pub fn object_store(&self) -> Arc<dyn ObjectStore> {
        self.store.clone()
    }

    /// The local root directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Where a key's object lives on the local disk (readers that want a
    /// plain `std::fs::File`, e.g. the format engine, which is synchronous).
    pub fn local_path(&self, key: &str) -> PathBuf {
        self.root.join(key)
    }

    /// Opens an object for synchronous reading.
    pub fn open_read(&self, key: &str) -> StoreResult<File> {
        File::open(self.local_path(key)).map_err(|e| match e.kind() {
            io::ErrorKind::NotFound => StoreError::NotFound(key.to_string()),
            _ => io_err(e),
        })
    }

    /// Starts a staged file named `name` (unique per upload). Blocking I/O:
    /// call it from a blocking thread.
    pub fn stage(&self, name: &str) -> StoreResult<StagedFile> {
        let path = self.root.join("staging").join(format!("{name}.part"));
        let file = File::create(&path).map_err(io_err)?;
        Ok(StagedFile {
            path: Some(path),
            out: BufWriter::with_capacity(256 * 1024, file),
            root: self.root.clone(),
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

    /// Keys of every object under `files/` and `rejects/`.
    pub async fn list_keys(&self) -> StoreResult<Vec<String>> {
        let mut keys = Vec::new();
        for prefix in ["files", "rejects"] {
            let p = ObjectPath::from(prefix);
            let metas: Vec<_> = self
                .store
                .list(Some(&p))
                .try_collect()
                .await
                .map_err(os_err)?;
            keys.extend(metas.into_iter().map(|m| m.location.to_string()));
        }
        Ok(keys)
    }
}

/// A file being written under `staging/`; removed on drop unless published.
#[derive(Debug)]
pub struct StagedFile {
    path: Option<PathBuf>,
    out: BufWriter<File>,
    root: PathBuf,
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
    /// Makes the bytes durable under `key`: flush, fsync, rename, fsync the
    /// directory. Blocking I/O.
    pub fn publish(mut self, key: &str) -> StoreResult<()> {
        self.out.flush().map_err(io_err)?;
        self.out.get_ref().sync_all().map_err(io_err)?;
        let target = self.root.join(key);
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

/// Removes a published blob directly (blocking; used to undo a publish
/// whose record could not be committed).
pub fn remove_local(store: &BlobStore, key: &str) -> StoreResult<()> {
    match fs::remove_file(store.root.join(key)) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(io_err(e)),
    }
}
