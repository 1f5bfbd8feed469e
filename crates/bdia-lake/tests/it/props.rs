//! Property: whatever the hits, partitions and writer limits, every hit is
//! read back exactly once, from the partition of its suite and local day.

use arrow_array::cast::AsArray;
use arrow_array::types::{Int64Type, TimestampMicrosecondType};
use bdia_lake::partition::local_date;
use bdia_lake::{Lake, LakeConfig};
use proptest::prelude::*;

use crate::common::*;
use crate::roundtrip::read_suite;

proptest! {
    #![proptest_config(ProptestConfig::with_cases(12))]

    #[test]
    fn every_hit_is_read_back_once_from_its_partition(
        gaps in prop::collection::vec((0i64..40_000, 0usize..3), 1..120),
        batch_rows in 1usize..40,
        max_open in 1usize..4,
        tiny_budget in any::<bool>(),
    ) {
        let suites = [&["rs1"][..], &["rs2"][..], &["rs1", "rs2"][..]];
        let mut t = 1_709_900_000i64; // around the 2024 US DST change
        let raw: Vec<_> = gaps
            .iter()
            .enumerate()
            .map(|(i, &(g, s))| {
                t += g;
                rich_hit(i as u64 + 1, t, suites[s], &format!("v{}", i % 4))
            })
            .collect();
        let hits = enrich(raw);
        let dir = tempfile::tempdir().unwrap();
        let config = LakeConfig {
            batch_rows,
            row_group_rows: 16,
            max_open_partitions: max_open,
            // A tiny budget ends every row group at every batch.
            memory_budget_bytes: if tiny_budget { 1 } else { 64 << 20 },
            ..LakeConfig::default()
        };
        let lake = Lake::local(dir.path(), config).unwrap();
        let z = zones();
        write_file(&lake, "p", &hits, z.clone());

        let mut expected: Vec<(String, i64, String)> = hits
            .iter()
            .map(|h| {
                let day = local_date(z.zone(&h.report_suite), h.hit.timestamp).unwrap();
                (h.report_suite.to_string(), h.hit.row as i64, day.to_string())
            })
            .collect();
        expected.sort();

        let mut seen = Vec::new();
        for suite in ["rs1", "rs2"] {
            for b in read_suite(&lake, suite) {
                let rows = b.column_by_name("row_number").unwrap().as_primitive::<Int64Type>();
                let times = b
                    .column_by_name("hit_time")
                    .unwrap()
                    .as_primitive::<TimestampMicrosecondType>();
                for i in 0..b.num_rows() {
                    let day = local_date(z.zone(suite), times.value(i) / 1_000_000).unwrap();
                    seen.push((suite.to_string(), rows.value(i), day.to_string()));
                }
            }
        }
        seen.sort();
        prop_assert_eq!(&seen, &expected);

        // And each part holds only rows of its own day.
        for suite in ["rs1", "rs2"] {
            let parts = block_on(lake.reader().parts(
                COMPANY,
                suite,
                "2000-01-01".parse().unwrap(),
                "2100-01-01".parse().unwrap(),
            ))
            .unwrap();
            let listed: u64 = parts.iter().map(|p| p.rows).sum();
            let want = expected.iter().filter(|e| e.0 == suite).count() as u64;
            prop_assert_eq!(listed, want);
            for p in parts {
                let dir = format!("date={}", p.date);
                prop_assert!(p.path.as_ref().contains(&dir), "{} not in {}", dir, p.path);
            }
        }
    }
}
