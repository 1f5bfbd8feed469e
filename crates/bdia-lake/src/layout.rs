//! Where things live: every object path and file name of the lake.
//!
//! This module owns the naming of the lake; no other module formats a path.
//! Under the lake's root prefix:
//!
//! ```text
//! hits/report_suite=<rsid>/date=<YYYY-MM-DD>/part-<file_id>-<nnnn>.parquet
//!     the data ([`part_path`]); <nnnn> counts the parts of one file in one
//!     partition ([`partition_dir`]), from 0000
//! _commits/<file_id>.json
//!     the file's commit record ([`commit_record`])
//! _staging/<file_id>/                 parts being published ([`staging_dir`])
//! _staging/<file_id>/hits/...         a part, staged under its final path ([`staged`])
//! _staging/<file_id>/_manifest.json   written once every part is staged
//! ```
//!
//! and, outside the lake, in the writer's spool directory, one file named
//! `bdia-part-*` per part being written ([`SPOOL_PREFIX`]).
//!
//! # Invariants
//!
//! - Every name is a pure function of the file id, the report suite, the
//!   partition day and the part number: writing the same file again names
//!   the same objects.
//! - File ids are checked by [`check_name`] and report suites by
//!   [`check_suite`] (the one report-suite ID rule,
//!   [`bdia_format::ReportSuiteId`]) before they become path segments, so a name never escapes its directory, never
//!   starts with `_` (the lake's own directories) and never holds `=` or `/`.
//! - Relative paths are slash-separated; [`object_path`] turns one into an
//!   object path under the root, segment by segment.

use jiff::civil::Date;
use object_store::path::Path;

use crate::error::LakeError;

/// Top directory of the data.
pub const HITS: &str = "hits";
/// Directory of commit records.
pub const COMMITS: &str = "_commits";
/// Directory of files being published.
pub const STAGING: &str = "_staging";
/// Name of a staging manifest.
pub const MANIFEST: &str = "_manifest.json";
/// Name prefix of spooled part files.
pub const SPOOL_PREFIX: &str = "bdia-part-";

/// Suffix of a commit record's name.
const COMMIT_SUFFIX: &str = ".json";

/// File ids and report suites become path segments: ASCII letters, digits,
/// `.`, `_` and `-`, not starting with `.` or `_`, at most 200 bytes.
pub(crate) fn check_name(what: &'static str, value: &str) -> Result<(), LakeError> {
    let ok = !value.is_empty()
        && value.len() <= 200
        && !value.starts_with(['.', '_'])
        && value
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
    if ok {
        Ok(())
    } else {
        Err(LakeError::InvalidName {
            what,
            value: value.to_string(),
        })
    }
}

/// Report suites become path segments too: they must be valid report-suite
/// IDs ([`bdia_format::ReportSuiteId`]), a rule that only allows safe
/// segments (ASCII letters, digits, `.`, `_` and `-`, starting with a letter
/// or digit, at most 100 bytes).
pub(crate) fn check_suite(value: &str) -> Result<(), LakeError> {
    bdia_format::ReportSuiteId::check(value).map_err(|_| LakeError::InvalidName {
        what: "report_suite",
        value: value.to_string(),
    })
}

/// The directory of one partition (report suite, day), relative to the root:
/// `hits/report_suite=<rsid>/date=<YYYY-MM-DD>`.
pub fn partition_dir(report_suite: &str, date: Date) -> String {
    format!("{HITS}/report_suite={report_suite}/date={date}")
}

/// The relative path of part `seq` of a file in a partition.
pub fn part_path(report_suite: &str, date: Date, file_id: &str, seq: u32) -> String {
    format!(
        "{}/part-{file_id}-{seq:04}.parquet",
        partition_dir(report_suite, date)
    )
}

/// The relative path of a file's commit record: `_commits/<file_id>.json`.
pub fn commit_record(file_id: &str) -> String {
    format!("{COMMITS}/{file_id}{COMMIT_SUFFIX}")
}

/// The file id a commit record is named after (its object's file name), if
/// the name is one the lake writes.
pub(crate) fn commit_record_file_id(name: &str) -> Option<&str> {
    let id = name.strip_suffix(COMMIT_SUFFIX)?;
    check_name("file_id", id).ok()?;
    Some(id)
}

/// The relative path of a file's staging directory: `_staging/<file_id>`.
pub fn staging_dir(file_id: &str) -> String {
    format!("{STAGING}/{file_id}")
}

/// The relative path of `rel` (a part's path, or [`MANIFEST`]) in a file's
/// staging directory.
pub fn staged(file_id: &str, rel: &str) -> String {
    format!("{STAGING}/{file_id}/{rel}")
}

/// The object path of `rel` (slash-separated, already validated) under `root`.
pub(crate) fn object_path(root: &Path, rel: &str) -> Path {
    let mut p = root.clone();
    for seg in rel.split('/') {
        p = p.clone().join(seg);
    }
    p
}

#[cfg(test)]
mod tests {
    use super::*;

    fn day(s: &str) -> Date {
        s.parse().unwrap()
    }

    #[test]
    fn part_names_follow_the_layout() {
        let p = part_path("acme.prod", day("2024-01-02"), "5c04f400-fca5-420c", 3);
        assert_eq!(
            p,
            "hits/report_suite=acme.prod/date=2024-01-02/part-5c04f400-fca5-420c-0003.parquet"
        );
    }

    #[test]
    fn commit_and_staging_names_follow_the_layout() {
        assert_eq!(commit_record("f-1"), "_commits/f-1.json");
        assert_eq!(commit_record_file_id("f-1.json"), Some("f-1"));
        assert_eq!(commit_record_file_id("f-1.txt"), None);
        assert_eq!(commit_record_file_id("_x.json"), None);
        assert_eq!(staging_dir("f-1"), "_staging/f-1");
        assert_eq!(staged("f-1", MANIFEST), "_staging/f-1/_manifest.json");
        assert_eq!(
            object_path(&Path::from("data/lake"), &commit_record("f-1")).to_string(),
            "data/lake/_commits/f-1.json"
        );
        assert_eq!(
            object_path(&Path::default(), &staging_dir("f")).to_string(),
            "_staging/f"
        );
    }

    #[test]
    fn names_that_cannot_be_path_segments_are_refused() {
        for bad in ["", "a/b", "..", ".hidden", "_staging", "a b", "é", "a=b"] {
            assert!(check_name("file_id", bad).is_err(), "{bad:?}");
        }
        for good in ["acme.prod", "5c04f400-fca5-420c-9c36-b94aaec55e69", "rs_1"] {
            assert!(check_name("file_id", good).is_ok(), "{good:?}");
        }
    }

    #[test]
    fn report_suites_follow_the_report_suite_id_rule() {
        for bad in [
            "",
            "a/b",
            "..",
            ".hidden",
            "_staging",
            "a b",
            "é",
            "a=b",
            "acme@prod",
            "acme:prod",
        ] {
            assert!(check_suite(bad).is_err(), "{bad:?}");
        }
        for good in ["acme.prod", "rs_1", "9-lives"] {
            assert!(check_suite(good).is_ok(), "{good:?}");
        }
    }
}
