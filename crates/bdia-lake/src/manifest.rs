//! The commit records of the lake's format before Delta tables:
//! [`PartEntry`] and [`FileManifest`], and their JSON form.
//!
//! That format kept one commit record per file (`_commits/<file_id>.json`)
//! as the lake's index. [`crate::Lake::recover`] reads them once, commits
//! each file's parts to its company's Delta table and deletes the record;
//! [`crate::HitTable::commit_file`] takes the same [`PartEntry`] list.
//!
//! # Format
//!
//! Pretty-printed JSON of [`FileManifest`], version [`MANIFEST_VERSION`]:
//!
//! ```json
//! {
//!   "version": 2,
//!   "file_id": "f1",
//!   "company": "acme",
//!   "rows": 10,
//!   "parts": [
//!     {"path": "hits/company=acme/report_suite=rs1/date=2024-01-02/part-f1-0000.parquet",
//!      "report_suite": "rs1", "date": "2024-01-02", "rows": 10, "bytes": 4242}
//!   ]
//! }
//! ```
//!
//! (`stale`, a list of paths, appears only in a staging manifest, and only
//! when it is not empty.)
//!
//! Version 1 records, of a layout without companies, have no `company` and
//! paths `hits/report_suite=...` ([`FileManifest::is_legacy`]): they belong
//! to no company's table and are left where they are.
//!
//! # Invariants
//!
//! - Parts are sorted by path; the same file written again serialises to
//!   the same bytes.
//! - Dates are calendar days written `YYYY-MM-DD`; a record whose date does
//!   not parse is refused as a whole ([`LakeError::Corrupt`]), like any
//!   other record that is not valid JSON of this shape.

use jiff::civil::Date;
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt};
use serde::{Deserialize, Serialize};

use crate::error::{is_not_found, LakeError};

/// Version of the manifest format (2: records name their company).
pub const MANIFEST_VERSION: u32 = 2;

/// One part of a file, as recorded in its manifest.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct PartEntry {
    /// Object path relative to the lake root.
    pub path: String,
    /// Report suite of every row.
    pub report_suite: String,
    /// Partition day in the suite's time zone (written `YYYY-MM-DD`).
    #[serde(with = "day")]
    pub date: Date,
    /// Rows.
    pub rows: u64,
    /// Size in bytes.
    pub bytes: u64,
}

/// What a file put in the lake: written to `_staging/<file_id>/_manifest.json`
/// once every part is staged, and to `_commits/<file_id>.json` once every
/// part is published.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileManifest {
    /// [`MANIFEST_VERSION`].
    pub version: u32,
    /// The file id.
    pub file_id: String,
    /// The company the file belongs to; every part is under its directory.
    /// Empty in a version-1 record ([`FileManifest::is_legacy`]).
    #[serde(default)]
    pub company: String,
    /// Hits in all parts.
    pub rows: u64,
    /// The parts, sorted by path.
    pub parts: Vec<PartEntry>,
    /// Staging only: parts of an earlier commit of this file that this one
    /// replaces without overwriting them; deleted once this one is committed.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub stale: Vec<String>,
}

impl FileManifest {
    /// True for a record of the layout without companies (version 1): its
    /// parts are under `hits/report_suite=...` and it names no company.
    pub fn is_legacy(&self) -> bool {
        self.company.is_empty()
    }

    /// The JSON bytes stored for this manifest.
    pub fn to_json(&self) -> Result<Vec<u8>, LakeError> {
        Ok(serde_json::to_vec_pretty(self)?)
    }

    /// Parses a stored manifest; `path` names it in the error.
    pub(crate) fn from_json(bytes: &[u8], path: &Path) -> Result<FileManifest, LakeError> {
        serde_json::from_slice(bytes).map_err(|e| LakeError::Corrupt {
            path: path.to_string(),
            reason: e.to_string(),
        })
    }
}

/// Reads the manifest stored at `path`, `None` when there is none.
pub(crate) async fn read(
    store: &dyn ObjectStore,
    path: &Path,
) -> Result<Option<FileManifest>, LakeError> {
    match store.get(path).await {
        Ok(r) => {
            let bytes = r.bytes().await?;
            Ok(Some(FileManifest::from_json(&bytes, path)?))
        }
        Err(e) if is_not_found(&e) => Ok(None),
        Err(e) => Err(e.into()),
    }
}

/// A day as `YYYY-MM-DD` text.
mod day {
    use jiff::civil::Date;
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(date: &Date, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(date)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Date, D::Error> {
        let text = String::deserialize(d)?;
        text.parse()
            .map_err(|e: jiff::Error| serde::de::Error::custom(format!("date {text:?}: {e}")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> FileManifest {
        FileManifest {
            version: MANIFEST_VERSION,
            file_id: "f1".into(),
            company: "acme".into(),
            rows: 10,
            parts: vec![PartEntry {
                path: "hits/company=acme/report_suite=rs1/date=2024-01-02/part-f1-0000.parquet"
                    .into(),
                report_suite: "rs1".into(),
                date: "2024-01-02".parse().unwrap(),
                rows: 10,
                bytes: 4242,
            }],
            stale: Vec::new(),
        }
    }

    #[test]
    fn the_stored_form_is_stable() {
        let json = String::from_utf8(sample().to_json().unwrap()).unwrap();
        assert_eq!(
            json,
            r#"{
  "version": 2,
  "file_id": "f1",
  "company": "acme",
  "rows": 10,
  "parts": [
    {
      "path": "hits/company=acme/report_suite=rs1/date=2024-01-02/part-f1-0000.parquet",
      "report_suite": "rs1",
      "date": "2024-01-02",
      "rows": 10,
      "bytes": 4242
    }
  ]
}"#
        );
        let back = FileManifest::from_json(json.as_bytes(), &Path::from("x")).unwrap();
        assert_eq!(back, sample());
    }

    #[test]
    fn a_version_1_record_reads_as_legacy() {
        let v1 = r#"{"version": 1, "file_id": "f1", "rows": 10, "parts": [
            {"path": "hits/report_suite=rs1/date=2024-01-02/part-f1-0000.parquet",
             "report_suite": "rs1", "date": "2024-01-02", "rows": 10, "bytes": 4242}]}"#;
        let m = FileManifest::from_json(v1.as_bytes(), &Path::from("x")).unwrap();
        assert!(m.is_legacy());
        assert_eq!(m.version, 1);
        assert!(!sample().is_legacy());
    }

    #[test]
    fn a_record_with_a_bad_date_is_corrupt() {
        let json = String::from_utf8(sample().to_json().unwrap())
            .unwrap()
            .replace("2024-01-02\"", "2024-13-02\"");
        let err =
            FileManifest::from_json(json.as_bytes(), &Path::from("_commits/f1.json")).unwrap_err();
        match err {
            LakeError::Corrupt { path, reason } => {
                assert_eq!(path, "_commits/f1.json");
                assert!(reason.contains("2024-13-02"), "{reason}");
            }
            other => panic!("{other:?}"),
        }
    }
}
