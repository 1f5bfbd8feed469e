//! The JSON view of a file record, as the lookups and the upload answer it.

use bdia_store::{FileRecord, FileStatus};
use serde::Serialize;

/// The JSON shape of a file record (spec 2.1, plus our dates).
#[derive(Debug, Clone, Serialize)]
pub struct FileView {
    /// Server-made id.
    pub file_id: String,
    /// Visitor group.
    pub visitor_group_id: String,
    /// Compressed bytes.
    pub size: u64,
    /// Decompressed bytes.
    pub uncompressed_size: u64,
    /// Unix seconds.
    pub received_date: i64,
    /// Data rows.
    pub rows: u64,
    /// Rows that will be skipped.
    pub invalid_rows: u64,
    /// Multipart filename, empty when none.
    pub upload_name: String,
    /// Human text of the status.
    pub status: &'static str,
    /// `UPLOADED`, `REJECTED`, `PROCESSING`, `COMPLETE`, `ERROR`.
    pub status_code: FileStatus,
    /// Processing log.
    pub processing_log: String,
    /// The client's key or the file id.
    pub idempotency_key: String,
    /// Why the file was rejected (or failed).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// Unix seconds or null.
    pub processing_start_date: Option<i64>,
    /// Unix seconds or null.
    pub file_reader_complete_date: Option<i64>,
    /// Unix seconds or null.
    pub processing_end_date: Option<i64>,
}

/// Human text of a status.
pub fn status_text(s: FileStatus) -> &'static str {
    match s {
        FileStatus::Uploaded => "File uploaded successfully",
        FileStatus::Rejected => "File rejected",
        FileStatus::Processing => "File is being processed",
        FileStatus::Complete => "File processed",
        FileStatus::Error => "File processing failed",
    }
}

impl From<&FileRecord> for FileView {
    fn from(r: &FileRecord) -> Self {
        FileView {
            file_id: r.file_id.clone(),
            visitor_group_id: r.visitor_group_id.clone(),
            size: r.size,
            uncompressed_size: r.uncompressed_size,
            received_date: r.received_date,
            rows: r.rows,
            invalid_rows: r.invalid_rows,
            upload_name: r.upload_name.clone(),
            status: status_text(r.status),
            status_code: r.status,
            processing_log: r.processing_log.clone(),
            idempotency_key: r.idempotency_key.clone(),
            error: r.error.clone(),
            processing_start_date: r.processing_start_date,
            file_reader_complete_date: r.file_reader_complete_date,
            processing_end_date: r.processing_end_date,
        }
    }
}
