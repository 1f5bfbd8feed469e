//! Errors of the hit lake: one [`LakeError`] for every operation, each
//! kind with a stable snake_case [`LakeError::code`].

/// Why a lake operation failed.
#[derive(Debug, thiserror::Error)]
pub enum LakeError {
    /// The object store failed (network, permissions, disk).
    #[error("object store: {0}")]
    Store(#[from] object_store::Error),
    /// The local spool (temporary part files) failed.
    #[error("spool: {0}")]
    Spool(#[from] std::io::Error),
    /// Encoding Parquet failed.
    #[error("parquet: {0}")]
    Parquet(#[from] parquet::errors::ParquetError),
    /// Building Arrow arrays failed.
    #[error("arrow: {0}")]
    Arrow(#[from] arrow_schema::ArrowError),
    /// A manifest or commit record could not be read or written.
    #[error("manifest: {0}")]
    Manifest(#[from] serde_json::Error),
    /// A time zone name is not in the tz database.
    #[error("unknown time zone {name:?}: {reason}")]
    TimeZone {
        /// The name as given.
        name: String,
        /// The tz database's answer.
        reason: String,
    },
    /// A hit time outside the supported range.
    #[error("hit time {seconds} out of range: {reason}")]
    Time {
        /// Unix seconds.
        seconds: i64,
        /// Why.
        reason: String,
    },
    /// A file id or report suite that cannot name an object.
    #[error("invalid {what}: {value:?}")]
    InvalidName {
        /// `file_id` or `report_suite`.
        what: &'static str,
        /// The offending value.
        value: String,
    },
    /// A Delta table operation failed (log read, commit, conflict).
    #[error("delta: {0}")]
    Delta(#[from] deltalake_core::DeltaTableError),
    /// The lake holds something it did not write (a foreign or damaged object).
    #[error("unexpected lake content at {path}: {reason}")]
    Corrupt {
        /// The object.
        path: String,
        /// What is wrong.
        reason: String,
    },
}

impl LakeError {
    /// A stable snake_case code, for metrics and logs.
    pub fn code(&self) -> &'static str {
        match self {
            LakeError::Store(_) => "lake_store",
            LakeError::Spool(_) => "lake_spool",
            LakeError::Parquet(_) => "lake_parquet",
            LakeError::Arrow(_) => "lake_arrow",
            LakeError::Manifest(_) => "lake_manifest",
            LakeError::TimeZone { .. } => "lake_time_zone",
            LakeError::Time { .. } => "lake_time",
            LakeError::InvalidName { .. } => "lake_invalid_name",
            LakeError::Corrupt { .. } => "lake_corrupt",
            LakeError::Delta(_) => "lake_delta",
        }
    }
}

/// Whether an object store error says the object (or prefix) is absent.
pub(crate) fn is_not_found(e: &object_store::Error) -> bool {
    matches!(e, object_store::Error::NotFound { .. })
}
