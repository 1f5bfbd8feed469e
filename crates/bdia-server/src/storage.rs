//! Where the server keeps its data: staged uploads, reject reports and the
//! hit lake, on a local directory (the data dir by default) or on an
//! S3-compatible object store (`storage_url = "s3://bucket/prefix"`).
//!
//! ```text
//! <dir or s3://bucket/prefix>/blobs/   staged uploads and reject reports (bdia_store::blob)
//! <dir or s3://bucket/prefix>/lake/    the hit lake: one Delta table per company
//! ```
//!
//! The data dir keeps what is local to a node in both cases: the staging
//! directory of uploads being received (`blobs/staging/`), the lake's
//! spool, the lock, keys and credentials, and the SQLite database.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::Context;
use bdia_lake::{Lake, LakeConfig, LakeError};
use bdia_store::blob::BlobStore;
use bdia_store::storage::{s3_store, StorageUrl};
use object_store::ObjectStore;

use crate::Config;

/// An opened storage location.
#[derive(Debug, Clone)]
pub enum Storage {
    /// A local directory holding `blobs/` and `lake/`.
    Local(PathBuf),
    /// An object store (S3) and the prefix holding `blobs/` and `lake/`.
    ObjectStore {
        /// The URL, for messages.
        url: StorageUrl,
        /// The bucket's store.
        store: Arc<dyn ObjectStore>,
        /// The key prefix (may be empty).
        prefix: String,
    },
}

impl Storage {
    /// The storage of `config`: its `storage_url`, or the data dir.
    pub fn from_config(config: &Config) -> anyhow::Result<Storage> {
        Storage::open(config.storage_url.as_deref(), &config.data_dir)
    }

    /// The storage at `url` (unset: the local directory `data_dir`). An S3
    /// store is configured from the `AWS_*` environment variables.
    pub fn open(url: Option<&str>, data_dir: &Path) -> anyhow::Result<Storage> {
        let Some(url) = url else {
            return Ok(Storage::Local(data_dir.to_path_buf()));
        };
        let parsed = StorageUrl::parse(url)?;
        Ok(match parsed {
            StorageUrl::Local(dir) => Storage::Local(dir),
            StorageUrl::S3 {
                ref bucket,
                ref prefix,
            } => Storage::ObjectStore {
                store: s3_store(bucket)?,
                prefix: prefix.clone(),
                url: parsed,
            },
        })
    }

    /// Where the data is, for messages.
    pub fn describe(&self) -> String {
        match self {
            Storage::Local(dir) => dir.display().to_string(),
            Storage::ObjectStore { url, .. } => url.to_string(),
        }
    }

    /// The blob store; uploads are staged under `data_dir/blobs/staging`.
    pub fn blobs(&self, data_dir: &Path) -> anyhow::Result<BlobStore> {
        Ok(match self {
            Storage::Local(dir) => BlobStore::open_local(&dir.join("blobs"))
                .with_context(|| format!("opening {}", dir.join("blobs").display()))?,
            Storage::ObjectStore { store, prefix, .. } => BlobStore::open_object_store(
                store.clone(),
                StorageUrl::object_prefix(prefix, "blobs"),
                &data_dir.join("blobs"),
            )?,
        })
    }

    /// The hit lake.
    pub fn lake(&self, config: LakeConfig) -> Result<Lake, LakeError> {
        match self {
            Storage::Local(dir) => Lake::local(dir.join("lake"), config),
            Storage::ObjectStore { store, prefix, .. } => Ok(Lake::new(
                store.clone(),
                StorageUrl::object_prefix(prefix, "lake"),
                config,
            )),
        }
    }
}
