//! The lake's removal and maintenance operations, where the lake crate
//! does not provide them: retraction and privacy deletion answer an
//! error (nothing is removed), and no table is listed for maintenance.
//!
//! The types and calls are those of [`bdia_lake::Lake`]'s own operations
//! (`retract_file`, `delete_visitors`, `compact`, `vacuum`, `companies`):
//! an inherent method of the same name takes precedence over this trait.

use std::future::Future;

use bdia_lake::{Lake, LakeError};

/// An identifier a user sent with hits, naming a visitor for a privacy
/// deletion.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Identifier {
    /// A customer ID with its customerIDType.
    CustomerId {
        /// The customerIDType.
        id_type: String,
        /// The customer ID.
        id: String,
    },
    /// A `visitorID`.
    VisitorId(String),
    /// A `marketingCloudVisitorID`.
    MarketingCloudVisitorId(String),
    /// An `IPAddress`.
    IpAddress(String),
}

/// A visitor whose hits were deleted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VisitorRef {
    /// Report suite.
    pub report_suite: String,
    /// Visitor state key (`bdia_format::hit::Visitor::key`).
    pub state_key: String,
}

/// What a retraction removed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Retraction {
    /// Hits removed.
    pub hits_removed: u64,
    /// Table version of the commit; `None` when nothing was committed.
    pub table_version: Option<u64>,
}

/// What a privacy deletion removed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VisitorDeletion {
    /// Hits removed.
    pub hits_removed: u64,
    /// Visitors whose hits were removed.
    pub visitors: Vec<VisitorRef>,
    /// Table version of the commit; `None` when nothing was committed.
    pub table_version: Option<u64>,
}

/// What a compaction did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Compaction {
    /// Partitions compacted.
    pub partitions: u64,
    /// Files taken out of the table.
    pub files_removed: u64,
    /// Files put in.
    pub files_added: u64,
    /// Table version of the commit; `None` when nothing was committed.
    pub table_version: Option<u64>,
}

/// What a vacuum did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Vacuum {
    /// Files deleted.
    pub files_deleted: u64,
}

fn unsupported<T>(what: &str) -> Result<T, LakeError> {
    Err(LakeError::Spool(std::io::Error::new(
        std::io::ErrorKind::Unsupported,
        format!("{what} is not supported by this lake"),
    )))
}

/// The operations, for a lake that lacks them.
pub trait LakeOps {
    /// Removes every hit of a file.
    fn retract_file(
        &self,
        company: &str,
        file_id: &str,
    ) -> impl Future<Output = Result<Retraction, LakeError>> + Send;
    /// Removes every hit of every visitor an identifier names or appears with.
    fn delete_visitors(
        &self,
        company: &str,
        who: &Identifier,
        salt: &[u8],
    ) -> impl Future<Output = Result<VisitorDeletion, LakeError>> + Send;
    /// Compacts partitions of many small files.
    fn compact(
        &self,
        company: &str,
        min_files: usize,
        target_bytes: u64,
    ) -> impl Future<Output = Result<Compaction, LakeError>> + Send;
    /// Deletes unreferenced files older than the retention.
    fn vacuum(
        &self,
        company: &str,
        retention: std::time::Duration,
    ) -> impl Future<Output = Result<Vacuum, LakeError>> + Send;
    /// Companies that have a table.
    fn companies(&self) -> impl Future<Output = Result<Vec<String>, LakeError>> + Send;
}

impl LakeOps for Lake {
    async fn retract_file(&self, _: &str, _: &str) -> Result<Retraction, LakeError> {
        unsupported("retraction")
    }

    async fn delete_visitors(
        &self,
        _: &str,
        _: &Identifier,
        _: &[u8],
    ) -> Result<VisitorDeletion, LakeError> {
        unsupported("privacy deletion")
    }

    async fn compact(&self, _: &str, _: usize, _: u64) -> Result<Compaction, LakeError> {
        unsupported("compaction")
    }

    async fn vacuum(&self, _: &str, _: std::time::Duration) -> Result<Vacuum, LakeError> {
        unsupported("vacuum")
    }

    async fn companies(&self) -> Result<Vec<String>, LakeError> {
        Ok(Vec::new())
    }
}
