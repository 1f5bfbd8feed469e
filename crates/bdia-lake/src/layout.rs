//! Where things live: every object path and file name of the lake.
//!
//! This module owns the naming of the lake; no other module formats a path.
//! Under the lake's root prefix:
//!
//! ```text
//! hits/company=<company_id>/                 the company's Delta table ([`company_dir`])
//! hits/company=<company_id>/report_suite=<rsid>/date=<YYYY-MM-DD>/part-<file_id>-<nnnn>.parquet
//!     the data ([`part_path`]); <nnnn> counts the parts of one file in one
//!     partition ([`partition_dir`]), from 0000
//! ```
//!
//! and, left by the format before Delta tables until they are migrated,
//! `_commits/<file_id>.json` (a file's commit record) and `_staging/`.
//!
//! and, outside the lake, in the writer's spool directory, one file named
//! `bdia-part-*` per part being written ([`SPOOL_PREFIX`]).
//!
//! Report suite IDs are per company, so the company is the first level
//! under `hits/`: two companies' suites of the same ID are two directories,
//! and a reader of one company's suite never lists the other's. Each company
//! directory is its own Delta table.
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
/// Directory of commit records (the format before Delta tables).
pub const COMMITS: &str = "_commits";
/// Directory of files being published (the format before Delta tables).
pub const STAGING: &str = "_staging";
/// Name prefix of spooled part files.
pub const SPOOL_PREFIX: &str = "bdia-part-";

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

/// The file id of a part written by processing, from its name
/// (`.../part-<file_id>-<nnnn>.parquet`); `None` for other names.
pub fn part_file_id(path: &str) -> Option<&str> {
    let name = path.rsplit('/').next()?;
    let stem = name.strip_prefix("part-")?.strip_suffix(".parquet")?;
    let (id, seq) = stem.rsplit_once('-')?;
    (seq.len() == 4 && seq.bytes().all(|b| b.is_ascii_digit()) && check_name("file_id", id).is_ok())
        .then_some(id)
}

/// The object path of `rel` (slash-separated, already validated) under `root`.
pub fn object_path(root: &Path, rel: &str) -> Path {
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
    fn part_names_give_their_file() {
        let p = part_path("acme", "rs1", day("2024-01-02"), "f-1", 12);
        assert_eq!(part_file_id(&p), Some("f-1"));
        assert_eq!(
            part_file_id("report_suite=rs1/date=2024-01-02/part-00001-5d1c-c000.snappy.parquet"),
            None
        );
        assert_eq!(
            object_path(&Path::from("data/lake"), "hits/x").to_string(),
            "data/lake/hits/x"
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
