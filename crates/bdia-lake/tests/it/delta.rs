//! The lake as Delta tables, read by another implementation (Python
//! `deltalake`), before and after a retraction, a privacy deletion, a
//! compaction and a vacuum.

use std::process::Command;

use bdia_format::hit::CustomerId;
use bdia_lake::{Identifier, Lake, VisitorRef};
use bdia_model::{enrich_file, Identity, MemoryStates};

use crate::common::*;

/// The Python interpreter the checks run with (`BDIA_TEST_PYTHON`, else
/// `python3`).
fn python() -> String {
    std::env::var("BDIA_TEST_PYTHON").unwrap_or_else(|_| "python3".into())
}

/// True when Python `deltalake` can be imported. Under CI it must be
/// (./test.sh installs it): a missing reader fails the test there.
fn deltalake_available() -> bool {
    let ok = Command::new(python())
        .args(["-c", "import deltalake, pyarrow"])
        .output()
        .is_ok_and(|o| o.status.success());
    if !ok {
        assert!(
            std::env::var_os("CI").is_none(),
            "Python deltalake is not installed (./test.sh installs it)"
        );
        eprintln!("skipped: Python deltalake is not installed (pip install deltalake)");
    }
    ok
}

/// What Python `deltalake` reads of `company`'s table: (hits, table
/// version, files), and checks the script makes on the way.
fn python_reads(lake_dir: &std::path::Path, company: &str, app_id: &str) -> (u64, u64, u64) {
    let out = run_python_check(
        &python(),
        "delta_check.py",
        &[lake_dir.as_os_str(), company.as_ref(), app_id.as_ref()],
    );
    let field = |name: &str| -> u64 {
        out.split_whitespace()
            .find_map(|w| w.strip_prefix(&format!("{name}=")))
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("no {name} in {out}"))
    };
    (field("hits"), field("version"), field("files"))
}

fn bdia_rows(lake: &Lake) -> u64 {
    table_files(lake, COMPANY).iter().map(|(_, r)| r).sum()
}

#[test]
fn another_engine_reads_the_same_snapshot_through_deletes_and_compaction() {
    if !deltalake_available() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let lake = Lake::local(dir.path(), small_config()).unwrap();
    let salt = b"salt";
    let identity = Identity::new(*salt);
    let mut states = MemoryStates::default();
    let mut expected = 0u64;
    let mut of_v3 = 0u64;
    let mut of_v1 = 0u64;
    // Eight small files: many small parts per partition.
    for f in 0..8u64 {
        let mut hits = sample_file(40, 1_700_000_000 + f as i64 * 3_000, 60);
        // File 2's visitor v1 also sends a second customer ID.
        if f == 2 {
            for h in hits.iter_mut().filter(|h| h.visitor.id == "v1") {
                h.customer_ids.insert(
                    "LOYALTY".into(),
                    CustomerId {
                        id: "L-77".into(),
                        auth_state: None,
                        is_mc_seed: false,
                    },
                );
            }
        }
        let out = enrich_file(hits, &identity, &mut states).unwrap();
        states.apply(&out.delta);
        expected += out.hits.len() as u64;
        of_v3 += out.hits.iter().filter(|h| h.visitor_id() == "v3").count() as u64;
        of_v1 += out.hits.iter().filter(|h| h.visitor_id() == "v1").count() as u64;
        write_file(&lake, &format!("f{f}"), &out.hits, zones());
    }
    assert_eq!(bdia_rows(&lake), expected);
    let (hits, version, files_before) = python_reads(dir.path(), COMPANY, "g-f3");
    assert_eq!((hits, version), (expected, 8));

    // Retraction: one commit, the file's hits gone for both readers.
    let f5 = table_files(&lake, COMPANY)
        .iter()
        .filter(|(p, _)| p.contains("part-f5-"))
        .map(|(_, r)| r)
        .sum::<u64>();
    let v3_in_f5 = visitor_hits_in_file(&lake, "f5", "v3");
    let r = block_on(lake.retract_file(COMPANY, "f5")).unwrap();
    assert_eq!((r.hits_removed, r.table_version), (f5, Some(9)));
    expected -= f5;
    assert_eq!(bdia_rows(&lake), expected);
    assert_eq!(python_reads(dir.path(), COMPANY, "g-f5").0, expected);
    let again = block_on(lake.retract_file(COMPANY, "f5")).unwrap();
    assert_eq!((again.hits_removed, again.table_version), (0, None));

    // Compaction: fewer files, the same rows for both readers.
    // (Deletes below rewrite whole partitions too.)
    let c = block_on(lake.compact(COMPANY, 2, 64 * 1024 * 1024)).unwrap();
    assert!(c.partitions > 0 && c.files_removed > c.files_added, "{c:?}");
    let (hits, _, compacted) = python_reads(dir.path(), COMPANY, "g-f0");
    assert_eq!(hits, expected);
    assert_eq!(bdia_rows(&lake), expected);
    assert!(compacted < files_before, "{compacted} < {files_before}");
    // Nothing left to compact.
    let c2 = block_on(lake.compact(COMPANY, 2, 64 * 1024 * 1024)).unwrap();
    assert_eq!(c2.partitions, 0);

    // Privacy deletion by visitorID: every hit of v3, in every suite.
    let v3_left = of_v3 - v3_in_f5;
    let d =
        block_on(lake.delete_visitors(COMPANY, &Identifier::VisitorId("v3".into()), salt)).unwrap();
    assert_eq!(d.hits_removed, v3_left);
    assert_eq!(
        d.visitors,
        [
            VisitorRef {
                report_suite: "rs1".into(),
                state_key: "vid:v3".into()
            },
            VisitorRef {
                report_suite: "rs2".into(),
                state_key: "vid:v3".into()
            },
        ]
    );
    expected -= v3_left;
    assert_eq!(bdia_rows(&lake), expected);
    assert_eq!(python_reads(dir.path(), COMPANY, "g-f0").0, expected);

    // By a customer ID that only some of v1's hits carry: all of v1 goes.
    let before = bdia_rows(&lake);
    let d = block_on(lake.delete_visitors(
        COMPANY,
        &Identifier::CustomerId {
            id_type: "LOYALTY".into(),
            id: "L-77".into(),
        },
        salt,
    ))
    .unwrap();
    assert!(d.hits_removed > 0 && d.hits_removed <= of_v1);
    assert!(d.visitors.iter().all(|v| v.state_key == "vid:v1"));
    expected -= d.hits_removed;
    assert_eq!(bdia_rows(&lake), before - d.hits_removed);
    assert_eq!(python_reads(dir.path(), COMPANY, "g-f0").0, expected);
    // An identifier nobody sent: nothing.
    let none =
        block_on(lake.delete_visitors(COMPANY, &Identifier::IpAddress("10.9.9.9".into()), salt))
            .unwrap();
    assert_eq!((none.hits_removed, none.table_version), (0, None));

    // Vacuum: the replaced files are deleted from the disk; the snapshot reads.
    let files_after = python_reads(dir.path(), COMPANY, "g-f0").2;
    let parquet_on_disk = || {
        walk(dir.path())
            .into_iter()
            .filter(|p| p.ends_with(".parquet"))
            .count() as u64
    };
    assert!(parquet_on_disk() > files_after);
    let kept = block_on(lake.vacuum(COMPANY, std::time::Duration::from_secs(3_600))).unwrap();
    assert_eq!(kept.files_deleted, 0, "within the retention period");
    let v = block_on(lake.vacuum(COMPANY, std::time::Duration::ZERO)).unwrap();
    assert!(v.files_deleted > 0);
    assert_eq!(parquet_on_disk(), files_after);
    assert_eq!(python_reads(dir.path(), COMPANY, "g-f0").0, expected);
    assert_eq!(block_on(lake.companies()).unwrap(), [COMPANY.to_string()]);
}

/// How many hits of visitor `v` file `file_id`'s parts hold.
fn visitor_hits_in_file(lake: &Lake, file_id: &str, v: &str) -> u64 {
    let dir = lake.url().to_file_path().unwrap();
    let mut n = 0;
    for f in walk(&dir)
        .into_iter()
        .filter(|p| p.contains(&format!("part-{file_id}-")) && p.ends_with(".parquet"))
    {
        let file = std::fs::File::open(&f).unwrap();
        let reader = parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(file)
            .unwrap()
            .build()
            .unwrap();
        for b in reader {
            let b = b.unwrap();
            let ids = b.column_by_name("visitor_id").unwrap();
            let ids = arrow_array::cast::AsArray::as_string::<i32>(ids.as_ref());
            n += (0..b.num_rows()).filter(|&i| ids.value(i) == v).count() as u64;
        }
    }
    n
}

/// Every file under `dir`, as paths.
fn walk(dir: &std::path::Path) -> Vec<String> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap().flatten() {
        let p = e.path();
        if p.is_dir() {
            out.extend(walk(&p));
        } else {
            out.push(p.display().to_string());
        }
    }
    out
}
