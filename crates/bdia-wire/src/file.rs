//! File records as the API sends them: upload answers, lookups, listings,
//! the validate answer and the group retry answer.
//!
//! Times are unix seconds. A file record always carries every field; the
//! three processing dates are `null` until reached and `error` is present
//! only for `REJECTED` and `ERROR` files.

use serde::{Deserialize, Serialize};

use crate::FileStatus;

/// A file record (spec 2.1, plus our dates and counts): the answer of an
/// upload and of the lookups by id and by idempotency key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileRecord {
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
    /// Human text of the status ([`FileStatus::text`]).
    pub status: String,
    /// The status.
    pub status_code: FileStatus,
    /// Processing log.
    pub processing_log: String,
    /// The client's idempotency key, or the file id when none was sent.
    pub idempotency_key: String,
    /// Why the file was rejected (or failed); absent otherwise.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// Unix seconds or null.
    pub processing_start_date: Option<i64>,
    /// Unix seconds or null.
    pub file_reader_complete_date: Option<i64>,
    /// Unix seconds or null.
    pub processing_end_date: Option<i64>,
    /// Invalid rows listed in the reject report
    /// (`GET /aa/collect/v1/events/{file_id}/rejects`), the first ones of
    /// the file. Fewer than `invalid_rows` when the report was capped: the
    /// rest are counted by kind at its end. 0 when there is no report (no
    /// invalid rows, or a `REJECTED` file).
    #[serde(default)]
    pub rejects_kept: u64,
    /// Unix seconds when the file's hits were retracted from the lake
    /// (`DELETE /aa/collect/v1/events/{file_id}/hits`); null while they
    /// count.
    #[serde(default)]
    pub hits_retracted_at: Option<i64>,
    /// Hits the retraction removed from the lake; null while not
    /// retracted.
    #[serde(default)]
    pub hits_retracted: Option<u64>,
    /// An earlier accepted file of the company with the same bytes under
    /// another idempotency key (its rows will be counted again); absent
    /// otherwise.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub duplicate_of: Option<String>,
    /// Where a waiting (`UPLOADED`) file stands in its group's queue, as
    /// flat fields of the record; absent for every other status and where
    /// the server does not compute it.
    #[serde(flatten, default, skip_serializing_if = "Option::is_none")]
    pub queue: Option<crate::QueuePosition>,
}

impl FileRecord {
    /// True once nothing more will happen to the file
    /// ([`FileStatus::is_final`]).
    pub fn is_final(&self) -> bool {
        self.status_code.is_final()
    }
}

/// A page of `GET /aa/collect/v1/events`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileList {
    /// Newest first.
    pub files: Vec<FileRecord>,
    /// Pass as `cursor` for the next page; null on the last.
    pub next_cursor: Option<String>,
}

/// The answer of `POST /aa/collect/v1/events/validate`: 200 with `success`
/// for a fully valid file, 400 with `error` otherwise; both carry the
/// counts and the processing log of the check.
///
/// Fields are declared in alphabetical order, the order the answer has
/// always been written in.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Validation {
    /// Why the file is not fully valid (400 only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// Rows that would be skipped.
    pub invalid_rows: u64,
    /// What the file would do (`?preview=true` only): nothing is stored.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub preview: Option<Preview>,
    /// The processing log of the check.
    pub processing_log: String,
    /// Data rows.
    pub rows: u64,
    /// Compressed bytes.
    pub size: u64,
    /// What an upload of the file would get: `UPLOADED` or `REJECTED`.
    pub status_code: FileStatus,
    /// `File is valid` (200 only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub success: Option<String>,
}

/// The impact of a file before it is uploaded
/// (`POST /aa/collect/v1/events/validate?preview=true`), over its valid rows.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Preview {
    /// The earliest hit time (RFC 3339, UTC); absent without valid rows.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub first_hit_time: Option<String>,
    /// The latest hit time (RFC 3339, UTC).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_hit_time: Option<String>,
    /// Rows per report suite and day (the day in the suite's time zone),
    /// by suite then day.
    pub rows_by_suite_day: Vec<SuiteDayRows>,
    /// Distinct visitors, counted per report suite (a visitor in two
    /// suites counts twice, as visits do).
    pub visitors: u64,
    /// Of those, the visitors the company has never processed a hit of in
    /// that suite.
    pub new_visitors: u64,
    /// Rows earlier than the last hit already processed for their visitor
    /// (they would be marked out of order).
    pub out_of_order_rows: u64,
    /// Rows of the company's files waiting to be processed now.
    pub rows_queued: u64,
    /// The processing rate the estimate uses (rows per second), with its
    /// source in `estimate_basis`; absent when there is none to go by.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rows_per_second: Option<f64>,
    /// Seconds until this file would be processed: (queued rows + its
    /// rows) / `rows_per_second`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub estimated_processing_secs: Option<f64>,
    /// How `rows_per_second` was chosen.
    pub estimate_basis: String,
    /// An accepted file of the company with exactly these bytes (an upload
    /// would count its rows again); absent otherwise.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub duplicate_of: Option<String>,
}

/// Rows of one report suite on one day.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SuiteDayRows {
    /// Report suite ID.
    pub report_suite: String,
    /// `YYYY-MM-DD` in the suite's time zone.
    pub date: String,
    /// Valid rows.
    pub rows: u64,
}

impl Validation {
    /// True for a fully valid file (the 200 answer: every row will be
    /// submitted).
    pub fn is_valid(&self) -> bool {
        self.error.is_none() && self.success.is_some()
    }
}

/// The answer of `POST /aa/collect/v1/groups/{vgid}/retry`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RetryAnswer {
    /// The visitor group.
    pub visitor_group_id: String,
    /// Files moved from `ERROR` back to `UPLOADED` (0 when the group was not stopped).
    pub retried: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(status: FileStatus) -> FileRecord {
        FileRecord {
            file_id: "0b9e7f4c-1d2a-4c8e-9f00-3a1b2c3d4e5f".into(),
            visitor_group_id: "group1".into(),
            size: 1234,
            uncompressed_size: 5678,
            received_date: 1_795_982_466,
            rows: 1000,
            invalid_rows: 2,
            upload_name: "ingest_file.csv.gz".into(),
            status: status.text().into(),
            status_code: status,
            processing_log: "Processed 1000 rows\n".into(),
            idempotency_key: "first-upload".into(),
            error: None,
            processing_start_date: None,
            file_reader_complete_date: None,
            processing_end_date: None,
            rejects_kept: 2,
            hits_retracted_at: None,
            hits_retracted: None,
            duplicate_of: None,
            queue: None,
        }
    }

    #[test]
    fn file_record_round_trips() {
        let mut done = record(FileStatus::Complete);
        done.processing_start_date = Some(1_795_982_467);
        done.file_reader_complete_date = Some(1_795_982_468);
        done.processing_end_date = Some(1_795_982_469);
        let mut retracted = done.clone();
        retracted.hits_retracted_at = Some(1_795_990_000);
        retracted.hits_retracted = Some(998);
        let mut rejected = record(FileStatus::Rejected);
        rejected.error = Some("File is not gzip".into());
        for r in [record(FileStatus::Uploaded), done, retracted, rejected] {
            let json = serde_json::to_string(&r).unwrap();
            assert_eq!(serde_json::from_str::<FileRecord>(&json).unwrap(), r);
        }
    }

    /// An upload answer exactly as the server has always written it.
    const UPLOAD_ANSWER: &str = concat!(
        r#"{"file_id":"0b9e7f4c-1d2a-4c8e-9f00-3a1b2c3d4e5f","visitor_group_id":"group1","#,
        r#""size":1234,"uncompressed_size":5678,"received_date":1795982466,"rows":1000,"#,
        r#""invalid_rows":2,"upload_name":"ingest_file.csv.gz","#,
        r#""status":"File uploaded successfully","status_code":"UPLOADED","#,
        r#""processing_log":"Processed 1000 rows\n","idempotency_key":"first-upload","#,
        r#""processing_start_date":null,"file_reader_complete_date":null,"processing_end_date":null,"#,
        r#""rejects_kept":2,"hits_retracted_at":null,"hits_retracted":null}"#
    );

    #[test]
    fn file_record_is_byte_identical_to_the_servers_answer() {
        let r: FileRecord = serde_json::from_str(UPLOAD_ANSWER).unwrap();
        assert_eq!(r, record(FileStatus::Uploaded));
        assert_eq!(serde_json::to_string(&r).unwrap(), UPLOAD_ANSWER);
    }

    #[test]
    fn an_answer_without_rejects_kept_reads_as_zero() {
        let older = UPLOAD_ANSWER.replace(r#","rejects_kept":2"#, "");
        let r: FileRecord = serde_json::from_str(&older).unwrap();
        assert_eq!(r.rejects_kept, 0);
    }

    #[test]
    fn an_answer_without_retraction_fields_reads_as_not_retracted() {
        let older = UPLOAD_ANSWER.replace(r#","hits_retracted_at":null,"hits_retracted":null"#, "");
        assert_ne!(older, UPLOAD_ANSWER);
        let r: FileRecord = serde_json::from_str(&older).unwrap();
        assert_eq!((r.hits_retracted_at, r.hits_retracted), (None, None));
    }

    #[test]
    fn the_documented_upload_answer_is_a_file_record() {
        let api = include_str!("../../../docs/API.md");
        let start = api.find("```json\n").expect("a JSON example") + 8;
        let end = start + api[start..].find("```").expect("closed");
        let r: FileRecord = serde_json::from_str(&api[start..end]).unwrap();
        assert_eq!(r.status_code, FileStatus::Uploaded);
        assert_eq!(r.status, FileStatus::Uploaded.text());
    }

    #[test]
    fn a_missing_required_field_is_an_error() {
        let mut v: serde_json::Value = serde_json::from_str(UPLOAD_ANSWER).unwrap();
        v.as_object_mut().unwrap().remove("uncompressed_size");
        let e = serde_json::from_value::<FileRecord>(v).unwrap_err();
        assert!(e.to_string().contains("uncompressed_size"), "{e}");
        let mut v: serde_json::Value = serde_json::from_str(UPLOAD_ANSWER).unwrap();
        v["status_code"] = "DONE".into();
        assert!(serde_json::from_value::<FileRecord>(v).is_err());
    }

    #[test]
    fn file_list_round_trips() {
        let page = FileList {
            files: vec![record(FileStatus::Uploaded), record(FileStatus::Error)],
            next_cursor: Some("c2VxOjQy".into()),
        };
        let json = serde_json::to_string(&page).unwrap();
        assert_eq!(serde_json::from_str::<FileList>(&json).unwrap(), page);
        let last = FileList {
            files: vec![],
            next_cursor: None,
        };
        let json = serde_json::to_string(&last).unwrap();
        assert_eq!(json, r#"{"files":[],"next_cursor":null}"#);
        assert_eq!(serde_json::from_str::<FileList>(&json).unwrap(), last);
    }

    #[test]
    fn validation_answers_keep_their_text() {
        let ok = r#"{"invalid_rows":0,"processing_log":"ok\n","rows":3,"size":120,"status_code":"UPLOADED","success":"File is valid"}"#;
        let v: Validation = serde_json::from_str(ok).unwrap();
        assert!(v.is_valid());
        assert_eq!(serde_json::to_string(&v).unwrap(), ok);
        let bad = r#"{"error":"File is not gzip","invalid_rows":0,"processing_log":"","rows":0,"size":3,"status_code":"REJECTED"}"#;
        let v: Validation = serde_json::from_str(bad).unwrap();
        assert!(!v.is_valid());
        assert_eq!(v.status_code, FileStatus::Rejected);
        assert_eq!(serde_json::to_string(&v).unwrap(), bad);
    }

    #[test]
    fn retry_answer_round_trips() {
        let a = RetryAnswer {
            visitor_group_id: "g".into(),
            retried: 1,
        };
        let json = serde_json::to_string(&a).unwrap();
        assert_eq!(json, r#"{"visitor_group_id":"g","retried":1}"#);
        assert_eq!(serde_json::from_str::<RetryAnswer>(&json).unwrap(), a);
    }
}
