//! The hit lake: enriched hits as hive-partitioned Parquet files on an
//! object store, each uploaded file's output published exactly once.
//!
//! # Layout
//!
//! Under the lake's root prefix (`DATA_DIR/lake` by default):
//!
//! ```text
//! hits/report_suite=<rsid>/date=<YYYY-MM-DD>/part-<file_id>-<nnnn>.parquet
//!     the data; <nnnn> counts the parts of one file in one partition, from 0000
//! _commits/<file_id>.json
//!     commit record: the file's parts (path, suite, day, rows, bytes)
//! _staging/<file_id>/hits/...        parts being published
//! _staging/<file_id>/_manifest.json  written once every part is staged
//! ```
//!
//! The day is the hit's calendar day in its report suite's time zone
//! ([`SuiteZones`]). Columns are described in `docs/LAKE.md` and built by
//! [`schema::hits_schema`].
//!
//! # Writing one file
//!
//! ```text
//! Lake::begin(file_id, zones) -> LakeWriter::push(hit)... -> finish() -> StagedFile
//!     (CPU, on a blocking thread; parts spooled to unlinked temp files)
//! Lake::publish(staged).await -> FileManifest
//!     (I/O: staging upload, staged manifest, copy to hits/, commit record)
//! then, in the metadata store, one transaction: file COMPLETE + visitor state
//! ```
//!
//! # Invariants (exactly once)
//!
//! - Object names depend only on the file id, the hits and the
//!   configuration; the hits depend only on the file and the visitor state
//!   before it. Processing a file again writes the same objects.
//! - Nothing under `hits/` comes from a file whose parts were not all
//!   staged first: parts are copied to `hits/` only after
//!   `_staging/<file_id>/_manifest.json` exists.
//! - [`LakeReader`] returns only parts listed in their file's commit record
//!   (the commit records are the lake's index),
//!   so a query never sees a file that is not completely published.
//!   Tools that glob `hits/**/*.parquet` directly see a file's parts appear
//!   one by one during the copy step (step 4 of [`Lake::publish`]), and
//!   after a crash in that step, until [`Lake::recover`] finishes it.
//! - A crash anywhere is repaired by [`Lake::recover`] (at startup): a
//!   complete staging is published (roll forward), an incomplete one is
//!   deleted (roll back). Parts of an earlier publication of the same file
//!   that the new one no longer has (a changed time zone, a changed
//!   configuration) are deleted after the new commit record is written.
//! - The lake's commit comes before the metadata commit. A file that is
//!   published but whose metadata commit did not happen is processed again
//!   from the same visitor state, and publishes the same objects.

mod batch;
pub mod error;
pub mod lake;
pub mod partition;
pub mod reader;
pub mod schema;
pub mod writer;

pub use error::LakeError;
pub use jiff::civil::Date;
pub use lake::{FileManifest, Lake, PartEntry, Recovery};
pub use partition::SuiteZones;
pub use reader::{LakeReader, PartRef};
pub use schema::hits_schema;
pub use writer::{clear_spool, LakeConfig, LakeWriter, SpooledPart, StagedFile, SPOOL_PREFIX};

/// Top directory of the data.
pub const HITS: &str = "hits";
/// Directory of commit records.
pub const COMMITS: &str = "_commits";
/// Directory of files being published.
pub const STAGING: &str = "_staging";
/// Name of a staging manifest.
pub const MANIFEST: &str = "_manifest.json";

/// File ids become path segments: ASCII letters, digits, `.`, `_` and `-`,
/// not starting with `.` or `_`, at most 200 bytes.
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

/// The relative path of part `seq` of a file in a partition.
pub(crate) fn part_path(report_suite: &str, date: &str, file_id: &str, seq: u32) -> String {
    format!("{HITS}/report_suite={report_suite}/date={date}/part-{file_id}-{seq:04}.parquet")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The worker moves writers to blocking threads and spawns publication
    /// on a multi-threaded runtime.
    #[allow(dead_code)]
    fn types_and_futures_are_send(lake: &Lake, staged: StagedFile) {
        fn is_send<T: Send>(_: &T) {}
        is_send(lake);
        is_send(&staged);
        is_send(&lake.begin("f", SuiteZones::utc()));
        is_send(&lake.publish(staged));
        is_send(&lake.recover());
        is_send(&lake.remove_file("f"));
        let reader = lake.reader();
        let d: Date = "2024-01-01".parse().unwrap();
        is_send(&reader.parts("rs", d, d));
        is_send(&reader.committed_files());
    }

    #[test]
    fn the_schema_is_documented() {
        let doc = include_str!("../../../docs/LAKE.md");
        for f in schema::hits_schema().fields() {
            let name = f.name();
            let documented = doc.contains(&format!("`{name}`"))
                || [("eVar", 250), ("prop", 75), ("hier", 5), ("list", 3)]
                    .iter()
                    .any(|(p, max)| {
                        name.strip_prefix(p)
                            .and_then(|n| n.parse::<u16>().ok())
                            .is_some_and(|n| (1..=*max).contains(&n))
                            && doc.contains(&format!("`{p}1` .. `{p}{max}`"))
                    });
            assert!(documented, "column {name} is not in docs/LAKE.md");
        }
    }

    #[test]
    fn part_names_follow_the_layout() {
        let p = part_path("acme.prod", "2024-01-02", "5c04f400-fca5-420c", 3);
        assert_eq!(
            p,
            "hits/report_suite=acme.prod/date=2024-01-02/part-5c04f400-fca5-420c-0003.parquet"
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
