//! Where things live: every object path and file name of the lake.
//!
//! This module owns the naming of the lake; no other module formats a path.
//! Under the lake's root prefix:
//!
//! ```text
//! hits/company=<company_id>/report_suite=<rsid>/date=<YYYY-MM-DD>/part-<file_id>-<nnnn>.parquet
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
//! Report suite IDs are per company, so the company is the first level
//! under `hits/`: two companies' suites of the same ID are two directories,
//! and a reader of one company's suite never lists the other's. Lakes
//! written before that level existed
//! (`hits/report_suite=<rsid>/...`, [`LEGACY_HITS_PREFIX`]) are moved under
//! their company at startup ([`crate::Lake::migrate_layout`]).
//!
//! # Invariants
//!
//! - Every name is a pure function of the company, the file id, the report
//!   suite, the partition day and the part number: writing the same file
//!   again names the same objects.
//! - File ids are checked by [`check_name`], company ids by
//!   [`check_company`] and report suites by [`check_suite`] (the one
//!   report-suite ID rule, [`bdia_format::ReportSuiteId`]) before they
//!   become path segments, so a name never escapes its directory, never
//!   names one of the lake's own `_` directories and never holds `=` or `/`.
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

/// Prefix (relative to the root) of a partition directory of the layout
/// without companies: `hits/report_suite=<rsid>/...`.
pub const LEGACY_HITS_PREFIX: &str = "hits/report_suite=";

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

/// Company ids become path segments (`company=<id>`): 1 to 255 ASCII
/// letters, digits, `.`, `_`, `-`, `@` and `:` (the rule companies are
/// created under). Behind the `company=` prefix no such segment can be `.`,
/// `..` or one of the lake's `_` directories.
pub fn check_company(value: &str) -> Result<(), LakeError> {
    let ok = !value.is_empty()
        && value.len() <= 255
        && value
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._-@:".contains(&b));
    if ok {
        Ok(())
    } else {
        Err(LakeError::InvalidName {
            what: "company",
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

/// The directory of one company's data, relative to the root:
/// `hits/company=<company_id>`.
pub fn company_dir(company: &str) -> String {
    format!("{HITS}/company={company}")
}

/// The directory of one partition (company, report suite, day), relative
/// to the root: `hits/company=<company_id>/report_suite=<rsid>/date=<YYYY-MM-DD>`.
pub fn partition_dir(company: &str, report_suite: &str, date: Date) -> String {
    format!(
        "{}/report_suite={report_suite}/date={date}",
        company_dir(company)
    )
}

/// The relative path of part `seq` of a file in a partition.
pub fn part_path(company: &str, report_suite: &str, date: Date, file_id: &str, seq: u32) -> String {
    format!(
        "{}/part-{file_id}-{seq:04}.parquet",
        partition_dir(company, report_suite, date)
    )
}

/// Where a part of the layout without companies
/// (`hits/report_suite=...`) lives under `company`: the same path with
/// `company=<company_id>` inserted after `hits/`. `None` for a path that is
/// not of that layout.
pub(crate) fn legacy_part_under(company: &str, path: &str) -> Option<String> {
    let rest = path.strip_prefix(LEGACY_HITS_PREFIX)?;
    Some(format!("{}/report_suite={rest}", company_dir(company)))
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
        let p = part_path(
            "acme",
            "acme.prod",
            day("2024-01-02"),
            "5c04f400-fca5-420c",
            3,
        );
        assert_eq!(
            p,
            "hits/company=acme/report_suite=acme.prod/date=2024-01-02/\
             part-5c04f400-fca5-420c-0003.parquet"
        );
    }

    #[test]
    fn legacy_parts_move_under_their_company() {
        let old = "hits/report_suite=rs1/date=2024-01-02/part-f-0000.parquet";
        assert_eq!(
            legacy_part_under("acme", old).as_deref(),
            Some(part_path("acme", "rs1", day("2024-01-02"), "f", 0).as_str())
        );
        assert_eq!(
            legacy_part_under("acme", &part_path("b", "rs1", day("2024-01-02"), "f", 0)),
            None
        );
    }

    #[test]
    fn company_ids_follow_the_company_rule() {
        for bad in ["", "a/b", "a b", "é", "a=b", "a\nb", &"x".repeat(256)] {
            assert!(check_company(bad).is_err(), "{bad:?}");
        }
        for good in ["acme", "default", "1234ABCD@AdobeOrg", "a:b", "..", "_x"] {
            assert!(check_company(good).is_ok(), "{good:?}");
            // Behind its key, even `..` or `_x` is a plain directory name.
            let dir = company_dir(good);
            let seg = dir.strip_prefix("hits/").unwrap();
            assert!(!seg.contains('/') && seg.starts_with("company="), "{dir}");
        }
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
