//! `prepare` on shuffled, multi-file, partly invalid input: every valid row
//! is written exactly once, to its visitor's one group, in time order, in
//! files under the limits that the engine then accepts whole.

use std::collections::{BTreeMap, HashMap};
use std::io::Write;
use std::path::{Path, PathBuf};

use bdia_client::prepare::{group_of, prepare, Manifest, PrepareOptions};
use bdia_format::engine::{process, Options, RowEvent};
use bdia_format::generate::{generate, GenOptions};

/// Writes `n` generated files with different seeds over the same time span
/// (so together they are out of time order), alternating plain and gzip.
fn inputs(dir: &Path, n: u64, rows: u64, invalid_rate: f64) -> (Vec<PathBuf>, u64) {
    let mut paths = Vec::new();
    let mut invalid = 0;
    for i in 0..n {
        let opts = GenOptions {
            rows,
            visitors: 300,
            seed: 100 + i,
            invalid_rate,
            report_suites: vec!["acme.prod".into(), "acme.dev".into()],
            ..GenOptions::default()
        };
        let mut csv = Vec::new();
        invalid += generate(&opts, &mut csv).unwrap().invalid_total();
        let path = if i % 2 == 0 {
            let p = dir.join(format!("in{i}.csv"));
            std::fs::write(&p, &csv).unwrap();
            p
        } else {
            let p = dir.join(format!("in{i}.csv.gz"));
            let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
            gz.write_all(&csv).unwrap();
            std::fs::write(&p, gz.finish().unwrap()).unwrap();
            p
        };
        paths.push(path);
    }
    (paths, invalid)
}

/// (visitor key, timestamp, page name or URL, row fields joined) of every valid row of a file.
fn valid_rows(path: &Path) -> (Vec<(String, i64, String)>, u64) {
    let bytes = std::fs::read(path).unwrap();
    let enc = if bytes.starts_with(&[0x1f, 0x8b]) {
        bdia_format::engine::Encoding::Gzip
    } else {
        bdia_format::engine::Encoding::Plain
    };
    let opts = Options {
        encoding: enc,
        ..Options::default()
    };
    let mut rows = Vec::new();
    let report = process(&bytes[..], &opts, |ev| {
        if let RowEvent::Valid { row, valid } = ev {
            let hit = valid.to_hit(row);
            let mut content: Vec<String> =
                hit.vars.iter().flatten().map(|v| v.to_string()).collect();
            content.extend(hit.evars.values().map(|v| v.to_string()));
            content.extend(hit.props.values().map(|v| v.to_string()));
            content.extend(hit.context_data.values().cloned());
            rows.push((valid.visitor().key(), valid.timestamp(), content.join("|")));
        }
        Ok::<_, std::convert::Infallible>(())
    })
    .unwrap();
    assert_eq!(report.rejection, None);
    (rows, report.invalid_rows)
}

#[test]
fn shuffled_input_becomes_grouped_sorted_chunked_files() {
    let dir = tempfile::tempdir().unwrap();
    let (ins, invalid) = inputs(dir.path(), 4, 1500, 0.05);
    let out = dir.path().join("out");
    let opts = PrepareOptions {
        groups: 3,
        max_rows: 700,
        max_bytes: 200_000,
        memory_budget: 100_000, // forces many spills
        ..PrepareOptions::default()
    };
    let mut read = 0u64;
    let summary = prepare(&ins, &out, &opts, &mut |n| read += n).unwrap();
    let total_in: u64 = ins
        .iter()
        .map(|p| std::fs::metadata(p).unwrap().len())
        .sum();
    assert_eq!(read, total_in, "progress saw every input byte");
    let m = &summary.manifest;
    assert_eq!(m.input_rows, 6000);
    assert_eq!(m.rejected_rows, invalid);
    assert_eq!(m.written_rows, 6000 - invalid);
    assert_eq!(Manifest::load(&out).unwrap(), *m);

    // The multiset of valid rows in equals the multiset of rows out.
    let mut expected: BTreeMap<(String, i64, String), u64> = BTreeMap::new();
    for p in &ins {
        for r in valid_rows(p).0 {
            *expected.entry(r).or_insert(0) += 1;
        }
    }
    let mut got: BTreeMap<(String, i64, String), u64> = BTreeMap::new();
    let mut group_of_visitor: HashMap<String, String> = HashMap::new();
    for g in &m.groups {
        assert!(g.id.starts_with("group-"));
        let mut last_ts = i64::MIN;
        for f in &g.files {
            assert!(f.rows <= 700);
            let path = out.join(&f.path);
            let bytes = std::fs::read(&path).unwrap();
            assert_eq!(bytes.len() as u64, f.bytes);
            use sha2::Digest;
            assert_eq!(hex::encode(sha2::Sha256::digest(&bytes)), f.sha256);
            let mut plain = Vec::new();
            std::io::Read::read_to_end(&mut flate2::read::GzDecoder::new(&bytes[..]), &mut plain)
                .unwrap();
            assert!(plain.len() as u64 <= 200_000);
            let (rows, bad) = valid_rows(&path);
            assert_eq!(bad, 0, "prepared files are fully valid");
            assert_eq!(rows.len() as u64, f.rows);
            assert_eq!(rows.first().unwrap().1, f.first_timestamp);
            assert_eq!(rows.last().unwrap().1, f.last_timestamp);
            for r in rows {
                assert!(r.1 >= last_ts, "time order across a group's files");
                last_ts = r.1;
                let prev = group_of_visitor.insert(r.0.clone(), g.id.clone());
                assert!(
                    prev.is_none_or(|p| p == g.id),
                    "a visitor in one group only"
                );
                assert_eq!(format!("group-{}", group_of(&r.0, 3)), g.id);
                *got.entry(r).or_insert(0) += 1;
            }
        }
        assert!(g.files.len() >= 2, "chunked by the limits");
    }
    assert_eq!(got, expected);

    // Rejects: every refused row, with its reason and raw text.
    let mut rdr = csv::Reader::from_path(out.join("rejects.csv")).unwrap();
    let rejects: Vec<csv::StringRecord> = rdr.records().map(Result::unwrap).collect();
    assert_eq!(rejects.len() as u64, invalid);
    assert!(rejects.iter().all(|r| !r[2].is_empty() && !r[3].is_empty()));
    // No spill files are left behind.
    let leftovers: Vec<_> = std::fs::read_dir(&out)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().to_string())
        .filter(|n| n.starts_with(".spill"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
}

#[test]
fn output_is_deterministic_and_independent_of_memory() {
    let dir = tempfile::tempdir().unwrap();
    let (ins, _) = inputs(dir.path(), 2, 800, 0.02);
    let run = |name: &str, budget: usize| {
        let out = dir.path().join(name);
        let opts = PrepareOptions {
            groups: 2,
            memory_budget: budget,
            ..PrepareOptions::default()
        };
        prepare(&ins, &out, &opts, &mut |_| {}).unwrap().manifest
    };
    let a = run("a", 50_000);
    let b = run("b", 64 << 20);
    assert_eq!(a, b, "same files, same hashes, spilled or not");
}

#[test]
fn different_headers_are_merged_and_rejected_files_contribute_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let a = dir.path().join("a.csv");
    std::fs::write(
        &a,
        "timestamp,visitorID,reportSuiteID,userAgent,pageName\n20,v1,rs,UA,A2\n10,v1,rs,UA,A1\n",
    )
    .unwrap();
    let b = dir.path().join("b.csv");
    std::fs::write(
        &b,
        "PAGENAME,timestamp,VISITORID,reportSuiteID,userAgent,eVar1\nB1,15,v1,rs,UA,x\n",
    )
    .unwrap();
    let c = dir.path().join("c.csv");
    std::fs::write(
        &c,
        "visitorID,reportSuiteID,userAgent,pageName\nv1,rs,UA,C\n",
    )
    .unwrap();
    let out = dir.path().join("out");
    let opts = PrepareOptions {
        groups: 1,
        ..PrepareOptions::default()
    };
    let s = prepare(&[a, b, c], &out, &opts, &mut |_| {}).unwrap();
    assert_eq!(
        s.manifest.header,
        [
            "timestamp",
            "visitorID",
            "reportSuiteID",
            "userAgent",
            "pageName",
            "eVar1"
        ]
    );
    assert_eq!(s.manifest.written_rows, 3);
    assert_eq!(s.manifest.rejected_rows, 1);
    assert_eq!(
        s.rejected_by_kind,
        [("missing_timestamp_column".to_string(), 1)]
    );
    let f = &s.manifest.groups[0].files[0];
    let mut text = String::new();
    std::io::Read::read_to_string(
        &mut flate2::read::GzDecoder::new(std::fs::File::open(out.join(&f.path)).unwrap()),
        &mut text,
    )
    .unwrap();
    assert_eq!(
        text,
        "timestamp,visitorID,reportSuiteID,userAgent,pageName,eVar1\n10,v1,rs,UA,A1,\n15,v1,rs,UA,B1,x\n20,v1,rs,UA,A2,\n"
    );
    // A second run into the same directory is refused.
    assert!(prepare(&[dir.path().join("a.csv")], &out, &opts, &mut |_| {}).is_err());
}
