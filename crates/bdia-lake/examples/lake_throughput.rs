//! Throughput and peak memory of the processing path without the server:
//! gzipped batch file -> format engine -> enrichment -> lake writer ->
//! publication to a local lake.
//!
//! ```sh
//! cargo run --release -p bdia-lake --example lake_throughput -- 1000000
//! ```
//!
//! Prints rows per second of each phase and the process's peak RSS.
//! `BDIA_BENCH_INPUT=path` keeps the generated input at `path` and reuses
//! it in later runs.

use std::fs::File;
use std::io::{BufReader, BufWriter};
use std::time::Instant;

use bdia_format::engine::{process, EngineError, Options, RowEvent};
use bdia_format::generate::{generate, GenOptions};
use bdia_lake::{Lake, LakeConfig, SuiteZones};
use bdia_model::{FileEnricher, Identity, MemoryStates};

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn peak_rss_kib() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let rows: u64 = std::env::args()
        .nth(1)
        .map(|a| a.parse())
        .transpose()?
        .unwrap_or(200_000);
    let work = tempfile::tempdir()?;
    // BDIA_BENCH_INPUT=path: the input file, generated there if missing
    // and reused by later runs (so that a profile sees no generation).
    let input = match std::env::var_os("BDIA_BENCH_INPUT") {
        Some(path) => std::path::PathBuf::from(path),
        None => work.path().join("input.csv.gz"),
    };
    if !input.exists() {
        let out = BufWriter::new(File::create(&input)?);
        let mut gz = flate2::write::GzEncoder::new(out, flate2::Compression::fast());
        generate(
            &GenOptions {
                rows,
                visitors: rows / 20 + 1,
                report_suites: vec!["acme.prod".into(), "acme.dev".into()],
                mean_gap: 2,
                ..GenOptions::default()
            },
            &mut gz,
        )?;
        gz.finish()?;
    }
    let size = std::fs::metadata(&input)?.len();
    println!("input: {rows} rows, {size} bytes gzip");

    let mut config = LakeConfig::default();
    if let Ok(mb) = std::env::var("BDIA_LAKE_BUDGET_MB") {
        config.memory_budget_bytes = mb.parse::<usize>()? << 20;
    }
    if std::env::var("BDIA_LAKE_INLINE").is_ok() {
        config.encode_thread = false;
    }
    if let Ok(n) = std::env::var("BDIA_LAKE_MAX_OPEN") {
        config.max_open_partitions = n.parse()?;
    }
    if let Ok(n) = std::env::var("BDIA_LAKE_BATCH_ROWS") {
        config.batch_rows = n.parse()?;
    }
    let lake = Lake::local(work.path().join("lake"), config)?;
    let identity = Identity::new(*b"bench-salt");
    let mut states = MemoryStates::default();
    let mut enricher = FileEnricher::new(&identity);
    let mut writer = lake.begin("bench", "bench-file", SuiteZones::utc())?;

    // Profiling aid: BDIA_BENCH_STOP=to_hit|enrich stops the pipeline early.
    let stop = std::env::var("BDIA_BENCH_STOP").unwrap_or_default();
    let t0 = Instant::now();
    let report = process(
        BufReader::new(File::open(&input)?),
        &Options::default(),
        |event| -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
            if let RowEvent::Valid { row, valid } = event {
                let hit = valid.to_hit(row);
                if stop == "to_hit" {
                    return Ok(());
                }
                for hit in enricher.enrich(hit, &mut states)? {
                    if stop != "enrich" {
                        writer.push(&hit)?;
                    }
                }
            }
            Ok(())
        },
    );
    let report = match report {
        Ok(report) => report,
        Err(EngineError::Input(e)) => return Err(e.into()),
        Err(EngineError::Sink(e)) => return Err(e as Box<dyn std::error::Error>),
    };
    let staged = writer.finish()?;
    let encode = t0.elapsed();
    let t1 = Instant::now();
    let parts = staged.parts.len();
    let hits = staged.rows;
    let lake_bytes: u64 = staged.parts.iter().map(|p| p.bytes).sum();
    let txn = bdia_lake::FileTxn {
        app_id: "throughput".into(),
        version: 1,
    };
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?
        .block_on(lake.publish(staged, &txn))?;
    let publish = t1.elapsed();
    let (delta, _) = enricher.finish();

    let total = encode + publish;
    println!(
        "rows: {} valid of {}; hits: {}; parts: {}; parquet bytes: {lake_bytes}; visitors touched: {}",
        report.rows - report.invalid_rows,
        report.rows,
        hits,
        parts,
        delta.entries.len()
    );
    println!(
        "read+validate+enrich+encode: {:.3} s; publish: {:.3} s; total: {:.3} s; {:.0} rows/s",
        encode.as_secs_f64(),
        publish.as_secs_f64(),
        total.as_secs_f64(),
        report.rows as f64 / total.as_secs_f64()
    );
    if let Some(kib) = peak_rss_kib() {
        println!("peak RSS: {:.1} MiB", kib as f64 / 1024.0);
    }
    Ok(())
}
