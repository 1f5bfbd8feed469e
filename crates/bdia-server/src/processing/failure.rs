//! Why a file failed processing: [`FailureCode`] and [`Failure`].
//!
//! Every failure carries one stable snake_case code, kept precise: each
//! kind of [`LakeError`] and of [`StoreError`] has its own code, next to
//! the worker's own causes. The code is the `code` label of
//! `bdia_processing_errors_total`, the `code` field of the `file failed`
//! log line, the file record's `error_code`, and it ends the file's
//! `Processing failed: <reason> [<code>]` log line. Codes are documented in
//! `docs/API.md` (a test checks each is listed); a code, once published,
//! keeps its meaning.

use bdia_lake::LakeError;
use bdia_store::StoreError;
use serde::{Deserialize, Serialize};

/// The cause of a processing failure, as a stable snake_case code.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum FailureCode {
    /// The file's company no longer exists.
    CompanyMissing,
    /// A report suite's configured time zone is not in the tz database.
    TimeZone,
    /// The staged upload is gone (not kept, or deleted from disk).
    StagedFileMissing,
    /// Reading the staged upload failed (disk error, damaged gzip).
    StagedFileUnreadable,
    /// The staged upload no longer passes the file checks it passed at upload.
    StagedFileRejected,
    /// The staged upload has a different number of rows than at upload.
    StagedFileChanged,
    /// The processing thread panicked or was cancelled.
    WorkerThread,
    /// The lake's object store failed ([`LakeError::Store`]).
    LakeStore,
    /// The local spool of part files failed ([`LakeError::Spool`]).
    LakeSpool,
    /// Encoding Parquet failed ([`LakeError::Parquet`]).
    LakeParquet,
    /// Building Arrow arrays failed ([`LakeError::Arrow`]).
    LakeArrow,
    /// A lake manifest or commit record could not be written or read
    /// ([`LakeError::Manifest`]).
    LakeManifest,
    /// The lake was given an unknown time zone ([`LakeError::TimeZone`]).
    LakeTimeZone,
    /// A hit time outside the lake's range ([`LakeError::Time`]).
    LakeTime,
    /// A file id or report suite that cannot name a lake object
    /// ([`LakeError::InvalidName`]).
    LakeInvalidName,
    /// The lake holds content it did not write ([`LakeError::Corrupt`]).
    LakeCorrupt,
    /// A Delta table operation failed ([`LakeError::Delta`]).
    LakeDelta,
    /// The metadata store did not find a record ([`StoreError::NotFound`]).
    StoreNotFound,
    /// The metadata store refused a conflicting change ([`StoreError::Conflict`]).
    StoreConflict,
    /// The metadata store refused a request ([`StoreError::Invalid`]).
    StoreInvalid,
    /// The metadata store's backend failed ([`StoreError::Backend`]).
    StoreBackend,
    /// The metadata database was written by a newer release
    /// ([`StoreError::SchemaTooNew`]).
    StoreSchemaTooNew,
    /// This node's lease on the file's visitor group was taken over by
    /// another node ([`StoreError::Fenced`]): the run is abandoned, never
    /// recorded on the file (the group's new holder processes it).
    StoreFenced,
}

impl FailureCode {
    /// Every code, in documentation order.
    pub const ALL: &'static [FailureCode] = &[
        FailureCode::CompanyMissing,
        FailureCode::TimeZone,
        FailureCode::StagedFileMissing,
        FailureCode::StagedFileUnreadable,
        FailureCode::StagedFileRejected,
        FailureCode::StagedFileChanged,
        FailureCode::WorkerThread,
        FailureCode::LakeStore,
        FailureCode::LakeSpool,
        FailureCode::LakeParquet,
        FailureCode::LakeArrow,
        FailureCode::LakeManifest,
        FailureCode::LakeTimeZone,
        FailureCode::LakeTime,
        FailureCode::LakeInvalidName,
        FailureCode::LakeCorrupt,
        FailureCode::LakeDelta,
        FailureCode::StoreNotFound,
        FailureCode::StoreConflict,
        FailureCode::StoreInvalid,
        FailureCode::StoreBackend,
        FailureCode::StoreSchemaTooNew,
        FailureCode::StoreFenced,
    ];

    /// The code as text (metric label, `error_code`).
    pub fn as_str(self) -> &'static str {
        match self {
            FailureCode::CompanyMissing => "company_missing",
            FailureCode::TimeZone => "time_zone",
            FailureCode::StagedFileMissing => "staged_file_missing",
            FailureCode::StagedFileUnreadable => "staged_file_unreadable",
            FailureCode::StagedFileRejected => "staged_file_rejected",
            FailureCode::StagedFileChanged => "staged_file_changed",
            FailureCode::WorkerThread => "worker_thread",
            FailureCode::LakeStore => "lake_store",
            FailureCode::LakeSpool => "lake_spool",
            FailureCode::LakeParquet => "lake_parquet",
            FailureCode::LakeArrow => "lake_arrow",
            FailureCode::LakeManifest => "lake_manifest",
            FailureCode::LakeTimeZone => "lake_time_zone",
            FailureCode::LakeTime => "lake_time",
            FailureCode::LakeInvalidName => "lake_invalid_name",
            FailureCode::LakeCorrupt => "lake_corrupt",
            FailureCode::LakeDelta => "lake_delta",
            FailureCode::StoreNotFound => "store_not_found",
            FailureCode::StoreConflict => "store_conflict",
            FailureCode::StoreInvalid => "store_invalid",
            FailureCode::StoreBackend => "store_backend",
            FailureCode::StoreSchemaTooNew => "store_schema_too_new",
            FailureCode::StoreFenced => "store_fenced",
        }
    }

    /// The code of a lake error: one per kind.
    pub fn of_lake(e: &LakeError) -> FailureCode {
        match e {
            LakeError::Store { .. } => FailureCode::LakeStore,
            LakeError::Spool { .. } => FailureCode::LakeSpool,
            LakeError::Parquet { .. } => FailureCode::LakeParquet,
            LakeError::Arrow { .. } => FailureCode::LakeArrow,
            LakeError::Manifest { .. } => FailureCode::LakeManifest,
            LakeError::TimeZone { .. } => FailureCode::LakeTimeZone,
            LakeError::Time { .. } => FailureCode::LakeTime,
            LakeError::InvalidName { .. } => FailureCode::LakeInvalidName,
            LakeError::Corrupt { .. } => FailureCode::LakeCorrupt,
            LakeError::Delta { .. } => FailureCode::LakeDelta,
        }
    }

    /// The code of a metadata store error: one per kind.
    pub fn of_store(e: &StoreError) -> FailureCode {
        match e {
            StoreError::NotFound { .. } => FailureCode::StoreNotFound,
            StoreError::Conflict { .. } => FailureCode::StoreConflict,
            StoreError::Invalid { .. } => FailureCode::StoreInvalid,
            StoreError::Backend { .. } => FailureCode::StoreBackend,
            StoreError::SchemaTooNew { .. } => FailureCode::StoreSchemaTooNew,
            StoreError::Fenced(_) => FailureCode::StoreFenced,
        }
    }
}

impl std::fmt::Display for FailureCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why a file failed: a [`FailureCode`] and the reason in words.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    /// Stable code (metric label, `error_code`).
    pub code: FailureCode,
    /// The reason, for the processing log.
    pub reason: String,
    /// The disk (or quota) was full: the run stopped for a condition that
    /// passes, so the file is requeued rather than failed.
    pub storage_full: bool,
}

impl Failure {
    /// A failure of `code` for `reason`.
    pub fn new(code: FailureCode, reason: impl std::fmt::Display) -> Failure {
        let reason = reason.to_string();
        Failure {
            code,
            storage_full: bdia_store::is_storage_full_text(&reason),
            reason,
        }
    }

    /// A lake error, with its own code.
    pub fn lake(e: LakeError) -> Failure {
        Failure::new(FailureCode::of_lake(&e), e)
    }

    /// A metadata store error, with its own code.
    pub fn store(e: StoreError) -> Failure {
        Failure::new(FailureCode::of_store(&e), e)
    }

    /// What the file record keeps (`error`, and the processing log after
    /// `Processing failed: `): the reason, then the code in brackets.
    pub fn note(&self) -> String {
        format!("{} [{}]", self.reason, self.code)
    }
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.note())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_unique_snake_case_and_serialise_as_themselves() {
        let mut seen = std::collections::HashSet::new();
        for code in FailureCode::ALL {
            let s = code.as_str();
            assert!(seen.insert(s), "{s} twice");
            assert!(
                s.bytes().all(|b| b.is_ascii_lowercase() || b == b'_'),
                "{s}"
            );
            assert_eq!(serde_json::to_value(code).unwrap(), s);
            let back: FailureCode = serde_json::from_value(s.into()).unwrap();
            assert_eq!(back, *code);
        }
    }

    #[test]
    fn lake_and_store_codes_keep_the_error_kind() {
        let lake = [
            LakeError::Spool(std::io::Error::other("disk full")),
            LakeError::TimeZone {
                name: "Mars/Base".into(),
                reason: "unknown".into(),
            },
            LakeError::Time {
                seconds: i64::MAX,
                reason: "too late".into(),
            },
            LakeError::InvalidName {
                what: "file_id",
                value: "a/b".into(),
            },
            LakeError::Corrupt {
                path: "_commits/f.json".into(),
                reason: "not JSON".into(),
            },
        ];
        for e in lake {
            // The lake's own code names the same kind.
            assert_eq!(FailureCode::of_lake(&e).as_str(), e.code());
            let f = Failure::lake(e);
            assert!(f.note().ends_with(&format!(" [{}]", f.code)), "{f}");
        }
        for (e, code) in [
            (StoreError::NotFound("x".into()), "store_not_found"),
            (StoreError::Conflict("x".into()), "store_conflict"),
            (StoreError::Invalid("x".into()), "store_invalid"),
            (
                StoreError::backend("x", std::io::Error::other("disk")),
                "store_backend",
            ),
            (
                StoreError::SchemaTooNew {
                    found: 9,
                    supported: 1,
                },
                "store_schema_too_new",
            ),
            (StoreError::Fenced("x".into()), "store_fenced"),
        ] {
            assert_eq!(format!("store_{}", e.code()), code);
            assert_eq!(Failure::store(e).code.as_str(), code);
        }
    }

    #[test]
    fn every_code_is_documented() {
        let doc = include_str!("../../../../docs/API.md");
        for code in FailureCode::ALL {
            assert!(
                doc.contains(&format!("| `{code}` |")),
                "failure code {code} is not in the table of docs/API.md"
            );
        }
    }
}
