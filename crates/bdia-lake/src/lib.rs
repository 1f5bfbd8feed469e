//! The hit lake: enriched hits as hive-partitioned Parquet files in one
//! Delta Lake table per company, each uploaded file's hits committed
//! exactly once.
//!
//! # Layout
//!
//! Under the lake's root prefix (`DATA_DIR/lake` by default):
//!
//! ```text
//! hits/company=<company_id>/                    company <company_id>'s Delta table
//! hits/company=<company_id>/_delta_log/         its transaction log
//! hits/company=<company_id>/report_suite=<rsid>/date=<YYYY-MM-DD>/part-<file_id>-<nnnn>.parquet
//!     the data written by processing; <nnnn> counts the parts of one file
//!     in one partition, from 0000 (files written by a compaction or a
//!     delete are named by Delta Lake: part-<n>-<uuid>-c000.<codec>.parquet)
//! ```
//!
//! The table is partitioned by `report_suite` and `date`: the day is the
//! hit's calendar day in its report suite's time zone ([`SuiteZones`]).
//! Columns are described in `docs/LAKE.md` and built by
//! [`schema::hits_schema`]. Every name is made by [`layout`].
//!
//! # Modules
//!
//! ```text
//! layout     object paths and names (no I/O)
//! partition  a hit's partition day
//! writer     hits -> Parquet parts in the spool          (uses layout)
//! delta      one company's Delta table: commits, snapshots, delete, optimize, vacuum
//! lake       the tables; publication, retraction, privacy deletes   (uses delta, writer)
//! reader     data files of the current snapshots         (uses lake)
//! manifest   commit records of the format before Delta tables (read once, at migration)
//! ```
//!
//! # Writing one file
//!
//! ```text
//! Lake::begin(company, file_id, zones) -> LakeWriter::push(hit)... -> finish() -> SpooledFile
//!     (CPU, on a blocking thread; parts spooled to temp files, by name)
//! Lake::publish(spooled, txn).await -> CommitOutcome
//!     (I/O: parts under their final names, then one Delta commit with txn)
//! then, in the metadata store, one transaction: file COMPLETE + visitor state
//! ```
//!
//! # Invariants (exactly once)
//!
//! - Object names depend only on the file id, the hits and the
//!   configuration; the hits depend only on the file and the visitor state
//!   before it. Processing a file again writes the same objects.
//! - A file's parts become visible together, in the one Delta commit that
//!   adds them; that commit records `txn(appId = visitor group, version =
//!   the file's sequence in its group)`. A group's files commit in order,
//!   so "the group's txn version is at least the file's" means "the file
//!   is in the table": [`Lake::publish`] checks it first and commits
//!   nothing then, and a concurrent second commit of the same file is
//!   refused by Delta's conflict checker and finds it the same way.
//! - Readers ([`LakeReader`], reports, any Delta engine) see only the
//!   files of a snapshot; an object written by an attempt that stopped
//!   before its commit is in no snapshot, and is overwritten by the next
//!   attempt or deleted by vacuum.
//! - The lake's commit comes before the metadata commit. A file that is
//!   committed but whose metadata commit did not happen is processed again
//!   from the same visitor state; its commit finds the txn and the
//!   metadata commit follows.

mod batch;
pub mod delta;
pub mod error;
pub mod lake;
pub mod layout;
pub mod manifest;
pub mod partition;
pub mod reader;
pub mod schema;
pub mod writer;

pub use delta::{CommitOutcome, HitTable, TableFile};
pub use error::LakeError;
pub use jiff::civil::Date;
pub use lake::{
    Compaction, FileTxn, Identifier, Lake, Recovery, Retraction, Vacuum, VisitorDeletion,
    VisitorRef,
};
pub use layout::{COMMITS, HITS, SPOOL_PREFIX, STAGING};
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
        let txn = FileTxn {
            app_id: "g".into(),
            version: 1,
        };
        is_send(&lake.publish(spooled, &txn));
        is_send(&lake.recover(&Default::default()));
        is_send(&lake.retract_file("c", "f"));
        is_send(&lake.delete_visitors("c", &Identifier::VisitorId("v".into()), b"s"));
        is_send(&lake.compact("c", 2, 1));
        is_send(&lake.vacuum("c", std::time::Duration::ZERO));
        let reader = lake.reader();
        let d: Date = "2024-01-01".parse().unwrap();
        is_send(&reader.parts("c", "rs", d, d));
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
