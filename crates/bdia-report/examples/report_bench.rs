//! Report latency over a large lake (used by `bench/reports.sh`).
//!
//! ```sh
//! # write a lake of 10,000,000 hits in one suite with bdia's own writer
//! cargo run --release -p bdia-report --example report_bench -- gen DIR 10000000
//! # ... or in FILES files (default 50): 1,000 makes a lake of small files
//! cargo run --release -p bdia-report --example report_bench -- gen DIR 10000000 1000
//! # time the daily and top-100-pages reports (median of N runs)
//! cargo run --release -p bdia-report --example report_bench -- run DIR 5
//! # compact the table (Delta optimize, as the server's background task does)
//! cargo run --release -p bdia-report --example report_bench -- compact DIR
//! ```
//!
//! `run` also writes `DIR/parts.txt`: the committed parts it read, so
//! another engine can read exactly the same files.

use std::time::Instant;

use bdia_format::fields::Field;
use bdia_format::hit::{Event, Hit, HitType, LinkType, Visitor, VisitorKind};
use bdia_lake::{Lake, LakeConfig, SuiteZones};
use bdia_model::{enrich_file, Identity, MemoryStates};
use bdia_report::{ReportEngine, ReportRequest};

/// The suite, its zone and the days the hits cover.
const COMPANY: &str = "bench";
const SUITE: &str = "bench.web";
const ZONE: &str = "America/New_York";
const FROM: &str = "2026-01-01";
const TO: &str = "2026-01-31";
/// 2026-01-01T12:00:00Z.
const T0: i64 = 1_767_268_800;
const SPAN: i64 = 29 * 86_400;
/// Files written by `gen` unless told.
const FILES: u64 = 50;

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

fn hit(rng: &mut Rng, row: u64, ts: i64, visitor: u64) -> Hit {
    // Pages skewed towards the first ones: a long tail of 2,000.
    let r = rng.below(1_000_000) as f64 / 1_000_000.0;
    let page = (r * r * r * 2000.0) as u64;
    let link = rng.below(100) < 20;
    let mut vars = vec![None; Field::COUNT];
    vars[Field::PageName as usize] = Some(format!("page {page}"));
    vars[Field::PageUrl as usize] = Some(format!("https://bench.example/p/{page}"));
    vars[Field::UserAgent as usize] = Some("Mozilla/5.0 (X11; Linux x86_64)".into());
    if rng.below(4) == 0 {
        vars[Field::Referrer as usize] = Some("https://www.search.example/?q=bench".into());
    }
    if link {
        vars[Field::LinkName as usize] = Some(format!("link {}", rng.below(50)));
    }
    let events = if rng.below(10) == 0 {
        vec![Event {
            name: "purchase".into(),
            value: None,
            serial: None,
        }]
    } else {
        Vec::new()
    };
    Hit {
        row,
        timestamp: ts,
        report_suites: vec![SUITE.into()],
        visitor: Visitor {
            kind: VisitorKind::Vid,
            customer_id_type: None,
            id: format!("visitor-{visitor}"),
        },
        hit_type: if link {
            HitType::Link(LinkType::Custom)
        } else {
            HitType::PageView
        },
        vars: vars.into_iter().map(|v| v.map(Into::into)).collect(),
        evars: [(1, format!("segment {}", visitor % 7).into())].into(),
        props: Default::default(),
        hiers: Default::default(),
        lists: Default::default(),
        context_data: Default::default(),
        hints: Default::default(),
        customer_ids: Default::default(),
        events,
    }
}

fn gen(dir: &str, hits: u64, files: u64) -> Result<(), Box<dyn std::error::Error>> {
    let lake = Lake::local(
        std::path::Path::new(dir).join("lake"),
        LakeConfig::default(),
    )?;
    let mut zones = SuiteZones::utc();
    zones.insert(SUITE, ZONE)?;
    let identity = Identity::new(*b"bench-salt");
    let mut states = MemoryStates::default();
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let io = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let visitors = (hits / 30).max(1);
    let per_file = hits.div_ceil(files);
    let window = SPAN / files as i64;
    let started = Instant::now();
    for f in 0..files {
        let n = per_file.min(hits.saturating_sub(f * per_file));
        if n == 0 {
            break;
        }
        // A file: hits of many visitors within its time window, in time order.
        let start = T0 + f as i64 * window;
        let mut stamps: Vec<(i64, u64)> = (0..n)
            .map(|_| {
                let r = rng.below(1_000_000) as f64 / 1_000_000.0;
                let v = (r * r * visitors as f64) as u64;
                (start + rng.below(window as u64) as i64, v)
            })
            .collect();
        stamps.sort_unstable();
        let file_hits: Vec<Hit> = stamps
            .iter()
            .enumerate()
            .map(|(i, &(ts, v))| hit(&mut rng, i as u64 + 1, ts, v))
            .collect();
        let enriched = enrich_file(file_hits, &identity, &mut states)?;
        states.apply(&enriched.delta);
        let mut w = lake.begin(COMPANY, &format!("bench-{f:03}"), zones.clone())?;
        for h in &enriched.hits {
            w.push(h)?;
        }
        let staged = w.finish()?;
        let txn = bdia_lake::FileTxn {
            app_id: "bench".into(),
            version: f as i64 + 1,
        };
        io.block_on(lake.publish(staged, &txn))?;
        eprintln!(
            "file {}/{files}: {} hits ({:.0} s)",
            f + 1,
            n,
            started.elapsed().as_secs_f64()
        );
    }
    Ok(())
}

fn median(mut xs: Vec<f64>) -> f64 {
    xs.sort_by(|a, b| a.partial_cmp(b).unwrap());
    xs[xs.len() / 2]
}

async fn run(dir: &str, iterations: usize) -> Result<(), Box<dyn std::error::Error>> {
    let lake = Lake::local(
        std::path::Path::new(dir).join("lake"),
        LakeConfig::default(),
    )?;
    let parts = lake
        .reader()
        .parts(COMPANY, SUITE, FROM.parse()?, TO.parse()?)
        .await?;
    let root = std::fs::canonicalize(std::path::Path::new(dir).join("lake"))?;
    let list: Vec<String> = parts
        .iter()
        .map(|p| root.join(p.path.to_string()).display().to_string())
        .collect();
    std::fs::write(
        std::path::Path::new(dir).join("parts.txt"),
        list.join("\n") + "\n",
    )?;
    let rows: u64 = parts.iter().map(|p| p.rows).sum();
    let engine = ReportEngine::new(lake)?;
    let daily = ReportRequest::parse(
        SUITE,
        Some("pageviews,visits,visitors"),
        Some("day"),
        Some(FROM),
        Some(TO),
        None,
    )?;
    let pages = ReportRequest::parse(
        SUITE,
        Some("pageviews,visits,visitors"),
        Some("page"),
        Some(FROM),
        Some(TO),
        Some("100"),
    )?;
    let mut out = serde_json::Map::new();
    out.insert("hits".into(), rows.into());
    out.insert("parts".into(), parts.len().into());
    for (name, req) in [("daily", &daily), ("top_pages", &pages)] {
        // One untimed run (file metadata cache, page cache).
        let first = engine.run(COMPANY, req, ZONE).await?;
        let mut times = Vec::new();
        for _ in 0..iterations {
            let t = Instant::now();
            let r = engine.run(COMPANY, req, ZONE).await?;
            times.push(t.elapsed().as_secs_f64());
            assert_eq!(r, first);
        }
        out.insert(format!("{name}_seconds"), median(times).into());
        out.insert(
            format!("{name}_totals"),
            serde_json::to_value(&first)?["totals"].clone(),
        );
        out.insert(format!("{name}_rows"), first.rows.len().into());
    }
    println!("{}", serde_json::Value::Object(out));
    Ok(())
}

/// Compacts the bench company's table like the server's background task
/// (partitions with at least 2 files under 128 MiB).
async fn compact(dir: &str) -> Result<(), Box<dyn std::error::Error>> {
    let lake = Lake::local(
        std::path::Path::new(dir).join("lake"),
        LakeConfig::default(),
    )?;
    let before = lake.files(COMPANY).await?.len();
    let t = Instant::now();
    let c = lake.compact(COMPANY, 2, 128 * 1024 * 1024).await?;
    let seconds = t.elapsed().as_secs_f64();
    let after = lake.files(COMPANY).await?.len();
    println!(
        "{}",
        serde_json::json!({
            "files_before": before, "files_after": after, "partitions": c.partitions,
            "files_removed": c.files_removed, "files_added": c.files_added, "seconds": seconds,
        })
    );
    Ok(())
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    let runtime = || {
        tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()
    };
    match args.get(1).map(String::as_str) {
        Some("gen") => gen(
            &args[2],
            args.get(3).map_or(Ok(10_000_000), |s| s.parse())?,
            args.get(4).map_or(Ok(FILES), |s| s.parse())?,
        ),
        Some("compact") => runtime()?.block_on(compact(&args[2])),
        Some("run") => {
            runtime()?.block_on(run(&args[2], args.get(3).map_or(Ok(5), |s| s.parse())?))
        }
        _ => {
            eprintln!(
                "usage: report_bench gen DIR [HITS [FILES]] | run DIR [ITERATIONS] | compact DIR"
            );
            std::process::exit(2);
        }
    }
}
