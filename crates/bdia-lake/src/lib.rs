//! The hit lake: enriched hits as hive-partitioned Parquet files on an
//! object store, each uploaded file's output published exactly once.
//!
//! # Layout
//!
//! Under the lake's root prefix (`DATA_DIR/lake` by default):
//!
//! ```text
//! hits/company=<company_id>/report_suite=<rsid>/date=<YYYY-MM-DD>/part-<file_id>-<nnnn>.parquet
//!     the data; <nnnn> counts the parts of one file in one partition, from 0000
//! _commits/<file_id>.json
//!     commit record: the file's company and parts (path, suite, day, rows, bytes)
//! _staging/<file_id>/hits/...        parts being published
//! _staging/<file_id>/_manifest.json  written once every part is staged
//! ```
//!
//! Report suite IDs are per company: the company is the first level under
//! `hits/`, every commit record names its file's company, and
//! [`LakeReader`] answers for one company at a time. A lake of the layout
//! without companies (`hits/report_suite=<rsid>/...`) is moved under its
//! companies at startup by [`Lake::migrate_layout`].
//!
//! The day is the hit's calendar day in its report suite's time zone
//! ([`SuiteZones`]). Columns are described in `docs/LAKE.md` and built by
//! [`schema::hits_schema`]. Every name is made by [`layout`]; manifests and
//! commit records are [`manifest`]'s.
//!
//! # Modules
//!
//! ```text
//! layout     object paths and names (no I/O)
//! manifest   part entries, manifests and commit records (JSON)
//! partition  a hit's partition day
//! writer     hits -> Parquet parts in the spool          (uses layout)
//! lake       publication and recovery                    (uses layout, manifest, writer)
//! reader     committed parts, from the commit records    (uses layout, manifest)
//! ```
//!
//! # Writing one file
//!
//! ```text
//! Lake::begin(company, file_id, zones) -> LakeWriter::push(hit)... -> finish() -> SpooledFile
//!     (CPU, on a blocking thread; parts spooled to temp files, by name)
//! Lake::publish(spooled).await -> FileManifest
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
pub mod layout;
pub mod manifest;
pub mod partition;
pub mod reader;
pub mod schema;
pub mod writer;

pub use error::LakeError;
pub use jiff::civil::Date;
pub use lake::{Lake, LayoutMigration, Recovery};
pub use layout::{COMMITS, HITS, LEGACY_HITS_PREFIX, MANIFEST, SPOOL_PREFIX, STAGING};
pub use manifest::{FileManifest, PartEntry, MANIFEST_VERSION};
pub use partition::SuiteZones;
pub use reader::{LakeReader, PartRef};
pub use schema::hits_schema;
pub use writer::{clear_spool, LakeConfig, LakeWriter, SpooledFile, SpooledPart};

#[cfg(test)]
mod tests {
    use super::*;

    /// The worker moves writers to blocking threads and spawns publication
    /// on a multi-threaded runtime.
    #[allow(dead_code)]
    fn types_and_futures_are_send(lake: &Lake, spooled: SpooledFile) {
        fn is_send<T: Send>(_: &T) {}
        is_send(lake);
        is_send(&spooled);
        is_send(&lake.begin("c", "f", SuiteZones::utc()));
        is_send(&lake.publish(spooled));
        is_send(&lake.recover());
        is_send(&lake.remove_file("f"));
        is_send(&lake.migrate_layout(&Default::default()));
        let reader = lake.reader();
        let d: Date = "2024-01-01".parse().unwrap();
        is_send(&reader.parts("c", "rs", d, d));
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
}
