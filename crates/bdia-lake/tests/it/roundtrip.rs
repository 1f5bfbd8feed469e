//! Hits written to the lake read back with the parquet crate's Arrow reader.

use arrow_array::cast::AsArray;
use arrow_array::types::{Float64Type, Int32Type, Int64Type, TimestampMicrosecondType};
use arrow_array::{Array, RecordBatch};
use bdia_lake::{hits_schema, Date, Lake, LakeConfig, SuiteZones};
use object_store::ObjectStoreExt;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;

use crate::common::*;

/// Every committed part of a suite.
fn suite_parts(lake: &Lake, suite: &str) -> Vec<bdia_lake::PartRef> {
    block_on(lake.reader().parts(
        COMPANY,
        suite,
        "1970-01-01".parse::<Date>().unwrap(),
        "2100-01-01".parse::<Date>().unwrap(),
    ))
    .unwrap()
}

/// Rows of suites `rs1` and `rs2`.
fn rows_of_both_suites(lake: &Lake) -> usize {
    ["rs1", "rs2"]
        .iter()
        .flat_map(|s| read_suite(lake, s))
        .map(|b| b.num_rows())
        .sum()
}

/// Reads every committed part of a suite.
pub fn read_suite(lake: &Lake, suite: &str) -> Vec<RecordBatch> {
    let mut out = Vec::new();
    for p in suite_parts(lake, suite) {
        let bytes = block_on(async { lake.store().get(&p.path).await?.bytes().await }).unwrap();
        let reader = ParquetRecordBatchReaderBuilder::try_new(bytes)
            .unwrap()
            .build()
            .unwrap();
        for b in reader {
            // A part holds only its valued columns: the others read null.
            out.push(bdia_lake::schema::conform(&b.unwrap()).unwrap());
        }
    }
    out
}

fn col<'a>(b: &'a RecordBatch, name: &str) -> &'a dyn Array {
    b.column_by_name(name)
        .unwrap_or_else(|| panic!("no column {name}"))
        .as_ref()
}

#[test]
fn every_column_reads_back_with_its_value() {
    let dir = tempfile::tempdir().unwrap();
    let lake = Lake::local(dir.path(), small_config()).unwrap();
    let hits = enrich(vec![
        rich_hit(1, 1_700_000_000, &["rs1"], "v1"),
        rich_hit(2, 1_700_000_100, &["rs1"], "v1"),
        rich_hit(3, 1_700_000_200, &["rs1"], "v1"),
    ]);
    write_file(&lake, "file-1", &hits, SuiteZones::utc());
    let batches = read_suite(&lake, "rs1");
    assert_eq!(batches.iter().map(|b| b.num_rows()).sum::<usize>(), 3);
    let b = &batches[0];
    assert_eq!(b.schema().fields(), hits_schema().fields());

    assert_eq!(col(b, "report_suite").as_string::<i32>().value(0), "rs1");
    let t = col(b, "hit_time").as_primitive::<TimestampMicrosecondType>();
    assert_eq!(t.value(1), 1_700_000_100_000_000);
    assert_eq!(col(b, "visitor_id").as_string::<i32>().value(0), "v1");
    assert_eq!(col(b, "visitor_id_type").as_string::<i32>().value(0), "vid");
    let vn = col(b, "visit_num").as_primitive::<Int32Type>();
    let vp = col(b, "visit_page_num").as_primitive::<Int32Type>();
    assert_eq!((vn.value(0), vp.value(0)), (1, 1));
    assert_eq!((vn.value(2), vp.value(2)), (1, 2), "row 3 is a link hit");
    let vs = col(b, "visit_start_time").as_primitive::<TimestampMicrosecondType>();
    assert_eq!(vs.value(2), 1_700_000_000_000_000);
    let nv = col(b, "new_visit").as_boolean();
    assert!(nv.value(0) && !nv.value(1));
    let ht = col(b, "hit_type").as_string::<i32>();
    assert_eq!((ht.value(0), ht.value(2)), ("page_view", "link_download"));
    assert_eq!(col(b, "page_name").as_string::<i32>().value(0), "page 1");
    assert_eq!(
        col(b, "page_url").as_string::<i32>().value(1),
        "https://example.com/2"
    );
    assert!(col(b, "link_name").is_null(0));
    assert_eq!(col(b, "link_name").as_string::<i32>().value(2), "pdf");
    assert_eq!(
        col(b, "link_url").as_string::<i32>().value(2),
        "https://example.com/a.pdf"
    );
    assert_eq!(col(b, "file_id").as_string::<i32>().value(0), "file-1");
    assert_eq!(col(b, "row_number").as_primitive::<Int64Type>().value(2), 3);

    let events = col(b, "events").as_list::<i32>();
    let first = events.value(0);
    let first = first.as_struct();
    assert_eq!(first.len(), 2);
    assert_eq!(first.column(0).as_string::<i32>().value(0), "purchase");
    assert!(first.column(1).is_null(0));
    assert_eq!(first.column(1).as_primitive::<Float64Type>().value(1), 5.0);

    assert_eq!(col(b, "eVar1").as_string::<i32>().value(1), "e1-2");
    assert!(col(b, "eVar2").is_null(0));
    assert_eq!(col(b, "eVar250").as_string::<i32>().value(0), "last");
    assert_eq!(col(b, "prop75").as_string::<i32>().value(0), "p75");
    assert!(col(b, "prop1").is_null(0));
    assert_eq!(col(b, "hier2").as_string::<i32>().value(0), "a|b");
    assert_eq!(col(b, "list3").as_string::<i32>().value(0), "x,y");
    assert_eq!(
        col(b, "userAgent").as_string::<i32>().value(0),
        "Mozilla/5.0"
    );
    assert_eq!(col(b, "browserHeight").as_string::<i32>().value(0), "768");
    assert!(col(b, "zip").is_null(0));

    let cd = col(b, "context_data").as_map();
    let entries = cd.value(0);
    assert_eq!(entries.column(0).as_string::<i32>().value(0), "app.version");
    assert_eq!(entries.column(1).as_string::<i32>().value(0), "1.2");
    let hints = col(b, "hints").as_map().value(0);
    assert_eq!(hints.column(1).as_string::<i32>().value(0), "Linux");
    let cids = col(b, "customer_ids").as_map().value(0);
    assert_eq!(cids.column(0).as_string::<i32>().value(0), "CRM");
    let v = cids.column(1).as_struct();
    assert_eq!(
        v.column_by_name("id").unwrap().as_string::<i32>().value(0),
        "c-1"
    );
    assert_eq!(
        v.column_by_name("auth_state")
            .unwrap()
            .as_string::<i32>()
            .value(0),
        "AUTHENTICATED"
    );
    assert!(!v
        .column_by_name("is_mc_seed")
        .unwrap()
        .as_boolean()
        .value(0));
}

#[test]
fn rows_land_in_their_suite_and_local_day() {
    let dir = tempfile::tempdir().unwrap();
    let lake = Lake::local(dir.path(), small_config()).unwrap();
    // 2024-03-10T03:30:00Z: the 10th in UTC (rs1), the 9th in New York (rs2).
    let t = 1_710_041_400;
    let hits = enrich(vec![rich_hit(1, t, &["rs1", "rs2"], "v1")]);
    assert_eq!(hits.len(), 2, "one output hit per suite");
    write_file(&lake, "f", &hits, zones());
    let names: Vec<String> = data_objects(lake.store().as_ref())
        .into_keys()
        .filter(|k| k.starts_with("hits/"))
        .collect();
    assert_eq!(
        names,
        [
            "hits/company=acme/report_suite=rs1/date=2024-03-10/part-f-0000.parquet",
            "hits/company=acme/report_suite=rs2/date=2024-03-09/part-f-0000.parquet",
        ]
    );
}

#[test]
fn many_rows_over_many_partitions_keep_every_row_once() {
    let dir = tempfile::tempdir().unwrap();
    // One open partition at a time: alternating suites reopen partitions.
    let config = LakeConfig {
        max_open_partitions: 1,
        batch_rows: 16,
        row_group_rows: 50,
        ..LakeConfig::default()
    };
    let lake = Lake::local(dir.path(), config).unwrap();
    let hits = enrich(sample_file(1_000, 1_700_000_000, 600));
    write_file(&lake, "big", &hits, zones());
    let mut seen = Vec::new();
    for suite in ["rs1", "rs2"] {
        for b in read_suite(&lake, suite) {
            let rows = col(&b, "row_number").as_primitive::<Int64Type>();
            for i in 0..b.num_rows() {
                seen.push((suite.to_string(), rows.value(i)));
            }
        }
    }
    let mut expected: Vec<(String, i64)> = hits
        .iter()
        .map(|h| (h.report_suite.to_string(), h.hit.row as i64))
        .collect();
    seen.sort();
    expected.sort();
    assert_eq!(seen, expected);
    let files = table_files(&lake, COMPANY);
    assert!(
        files.iter().any(|(p, _)| p.ends_with("-0001.parquet")),
        "a reopened partition gets its next part number"
    );
    assert_eq!(files.iter().map(|(_, r)| r).sum::<u64>(), hits.len() as u64);
}

#[test]
fn large_parts_are_uploaded_in_multipart_chunks() {
    let dir = tempfile::tempdir().unwrap();
    let config = LakeConfig {
        upload_part_bytes: 4 * 1024,
        ..small_config()
    };
    // An object store (a local lake moves spooled parts into place instead).
    let config = LakeConfig {
        spool_dir: Some(dir.path().join("spool")),
        ..config
    };
    let store = std::sync::Arc::new(object_store::memory::InMemory::new());
    let lake = Lake::new(store, object_store::path::Path::default(), config);
    let hits = enrich(sample_file(300, 1_700_000_000, 10));
    write_file(&lake, "mp", &hits, SuiteZones::utc());
    let files = block_on(lake.files(COMPANY)).unwrap();
    assert!(files.iter().any(|f| f.bytes > 4 * 1024));
    assert_eq!(rows_of_both_suites(&lake), hits.len());
}

#[test]
fn a_file_from_the_format_engine_goes_all_the_way() {
    use bdia_format::engine::{process, Encoding, Options, RowEvent};
    use bdia_format::generate::{generate, GenOptions};
    use bdia_model::{FileEnricher, Identity, MemoryStates};

    let mut csv = Vec::new();
    let opts = GenOptions {
        rows: 2_000,
        report_suites: vec!["acme.prod".into(), "acme.dev".into()],
        ..GenOptions::default()
    };
    let summary = generate(&opts, &mut csv).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let lake = Lake::local(dir.path(), LakeConfig::default()).unwrap();
    let identity = Identity::new(*b"salt");
    let mut states = MemoryStates::default();
    let mut enricher = FileEnricher::new(&identity);
    let mut writer = lake.begin(COMPANY, "gen-1", SuiteZones::utc()).unwrap();
    let options = Options {
        encoding: Encoding::Plain,
        ..Options::default()
    };
    let report = process(&csv[..], &options, |event| {
        if let RowEvent::Valid { row, valid } = event {
            for h in enricher.enrich(valid.to_hit(row), &mut states).unwrap() {
                writer.push(&h)?;
            }
        }
        Ok::<_, bdia_lake::LakeError>(())
    })
    .unwrap();
    let hits = enricher.hits();
    let (delta, _) = enricher.finish();
    let spooled = writer.finish().unwrap();
    assert_eq!(spooled.rows, hits);
    block_on(lake.publish(spooled, &txn_of("gen-1"))).unwrap();
    assert_eq!(report.rows, summary.rows);
    let rows: u64 = table_files(&lake, COMPANY).iter().map(|(_, r)| r).sum();
    assert_eq!(rows, hits);
    assert!(hits >= report.rows - report.invalid_rows);
    assert!(!delta.entries.is_empty());
}

#[test]
fn invalid_names_are_refused_before_anything_is_written() {
    let dir = tempfile::tempdir().unwrap();
    let lake = Lake::local(dir.path(), small_config()).unwrap();
    assert!(lake.begin(COMPANY, "../escape", SuiteZones::utc()).is_err());
    for company in ["", "a/b", "a=b", "a b"] {
        let err = lake.begin(company, "f", SuiteZones::utc()).unwrap_err();
        assert_eq!(err.code(), "lake_invalid_name", "{company:?}");
    }
    let mut w = lake.begin(COMPANY, "f", SuiteZones::utc()).unwrap();
    let mut hits = enrich(vec![rich_hit(1, 1_700_000_000, &["rs1"], "v")]);
    hits[0].report_suite = "a/b".into();
    let err = w.push(&hits[0]).unwrap_err();
    assert_eq!(err.code(), "lake_invalid_name");
}

/// The schema of every committed part of a suite, as written (not conformed),
/// by part path.
fn part_schemas(lake: &Lake, suite: &str) -> Vec<(String, arrow_schema::SchemaRef, usize)> {
    suite_parts(lake, suite)
        .iter()
        .map(|p| {
            let bytes = block_on(async { lake.store().get(&p.path).await?.bytes().await }).unwrap();
            let b = ParquetRecordBatchReaderBuilder::try_new(bytes).unwrap();
            let rows = b.metadata().file_metadata().num_rows() as usize;
            (p.path.to_string(), b.schema().clone(), rows)
        })
        .collect()
}

#[test]
fn parts_omit_the_columns_null_in_every_row_and_split_when_one_gets_a_value() {
    let dir = tempfile::tempdir().unwrap();
    let lake = Lake::local(dir.path(), small_config()).unwrap();
    // One suite, one day: 30 rows, eVar7 only from row 20 on (after the
    // part's first batches of 7 rows were written).
    let raw: Vec<_> = (1..=30u64)
        .map(|row| {
            let mut h = rich_hit(row, 1_700_000_000 + row as i64, &["rs1"], "v1");
            if row >= 20 {
                h.evars.insert(7, format!("late-{row}").into());
            }
            h
        })
        .collect();
    write_file(&lake, "file-1", &enrich(raw), SuiteZones::utc());
    let parts = part_schemas(&lake, "rs1");
    assert_eq!(
        parts.len(),
        2,
        "{:?}",
        parts.iter().map(|p| &p.0).collect::<Vec<_>>()
    );
    let (first, second) = (&parts[0], &parts[1]);
    assert!(first.0.ends_with("-0000.parquet") && second.0.ends_with("-0001.parquet"));
    // Rows 1..=14 (two batches) in the first part, the rest in the second.
    assert_eq!((first.2, second.2), (14, 16));
    for (_, schema, _) in &parts {
        // Null in every row: not in the part.
        for absent in ["eVar2", "prop1", "hier5", "campaign", "search_engine"] {
            assert!(
                schema.field_with_name(absent).is_err(),
                "{absent} is in the part"
            );
        }
        for present in ["report_suite", "eVar1", "eVar250", "prop75", "page_name"] {
            assert!(
                schema.field_with_name(present).is_ok(),
                "{present} is not in the part"
            );
        }
    }
    assert!(first.1.field_with_name("eVar7").is_err());
    assert!(second.1.field_with_name("eVar7").is_ok());
    assert!(
        second.1.fields().len() < hits_schema().fields().len() / 4,
        "{} columns",
        second.1.fields().len()
    );

    // Read back with every column: each row once, eVar7 where it was sent.
    let batches = read_suite(&lake, "rs1");
    let mut seen = Vec::new();
    for b in &batches {
        assert_eq!(b.schema(), hits_schema());
        let rows = col(b, "row_number").as_primitive::<Int64Type>();
        let e7 = col(b, "eVar7").as_string::<i32>();
        for i in 0..b.num_rows() {
            let row = rows.value(i);
            let want = (row >= 20).then(|| format!("late-{row}"));
            assert_eq!(e7.is_valid(i).then(|| e7.value(i).to_string()), want);
            seen.push(row);
        }
    }
    seen.sort();
    assert_eq!(seen, (1..=30).collect::<Vec<i64>>());
}

#[test]
fn a_local_lake_gets_the_spooled_parts_moved_with_the_usual_permissions() {
    let dir = tempfile::tempdir().unwrap();
    let spool = dir.path().join("spool");
    let config = LakeConfig {
        spool_dir: Some(spool.clone()),
        ..small_config()
    };
    let lake = Lake::local(dir.path().join("lake"), config).unwrap();
    let hits = enrich(sample_file(50, 1_700_000_000, 10));
    write_file(&lake, "mv", &hits, SuiteZones::utc());
    // Published: nothing is left in the spool.
    let left: Vec<_> = std::fs::read_dir(&spool).unwrap().flatten().collect();
    assert!(left.is_empty(), "{left:?}");
    let files = block_on(lake.files(COMPANY)).unwrap();
    assert!(!files.is_empty());
    let table = dir.path().join("lake/hits/company=acme");
    for f in &files {
        let meta = std::fs::metadata(table.join(&f.path)).unwrap();
        assert_eq!(meta.len(), f.bytes, "{}", f.path);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            // As any new file (0666 less the umask), not a temporary
            // file's 0600.
            let mode = meta.permissions().mode() & 0o777;
            assert_ne!(mode, 0o600, "{}", f.path);
            assert_eq!(mode & 0o600, 0o600, "{mode:o}");
        }
    }
    assert_eq!(rows_of_both_suites(&lake), hits.len());
}
