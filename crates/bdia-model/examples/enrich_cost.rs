//! What the device and traffic-source rules cost per row, next to the rest
//! of reading and enriching a file.
//!
//! ```sh
//! bdia generate --rows 250000 --visitors 50000 --suites acme.prod,acme.dev -o f.csv.gz
//! cargo run --release -p bdia-model --example enrich_cost -- f.csv.gz [more.csv.gz...]
//! ```
//!
//! Per file, three passes over the same rows: the format engine alone
//! (rows to hits), the engine and the whole enrichment (identity, visits,
//! devices, traffic sources), and the engine with only the device and
//! traffic-source rules (a fresh per-file user-agent cache, the referrer
//! rules once per suite of each row). Prints each pass's seconds and the
//! share of the rules.

use std::fs::File;
use std::io::BufReader;
use std::time::{Duration, Instant};

use bdia_format::engine::{process, EngineError, Options, RowEvent};
use bdia_format::fields::Field;
use bdia_format::hit::Hit;
use bdia_model::device::DeviceCache;
use bdia_model::traffic::classify;
use bdia_model::{FileEnricher, Identity, MemoryStates};

/// Runs the engine over `path`, handing each hit to `each`.
fn pass(path: &str, mut each: impl FnMut(Hit)) -> Result<Duration, Box<dyn std::error::Error>> {
    let t = Instant::now();
    let r = process(
        BufReader::new(File::open(path)?),
        &Options::default(),
        |event| -> Result<(), std::convert::Infallible> {
            if let RowEvent::Valid { row, valid } = event {
                each(valid.to_hit(row));
            }
            Ok(())
        },
    );
    match r {
        Ok(_) => Ok(t.elapsed()),
        Err(EngineError::Input(e)) => Err(e.into()),
        Err(EngineError::Sink(never)) => match never {},
    }
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let files: Vec<String> = std::env::args().skip(1).collect();
    if files.is_empty() {
        return Err("give one or more generated .csv.gz files".into());
    }
    let (mut engine, mut enrich, mut rules, mut rows) = (0.0, 0.0, 0.0, 0u64);
    for f in &files {
        // Warm the file cache and the rules (compiled once per process).
        bdia_model::device::warm_up();
        engine += pass(f, |_| rows += 1)?.as_secs_f64();
        let identity = Identity::new(*b"bench-salt");
        let mut enricher = FileEnricher::new(&identity);
        let mut states = MemoryStates::default();
        enrich += pass(f, |hit| {
            let out = enricher.enrich(hit, &mut states).expect("memory states");
            std::hint::black_box(out);
        })?
        .as_secs_f64();
        let mut devices = DeviceCache::default();
        rules += pass(f, |hit| {
            let d = hit.get(Field::UserAgent).map(|ua| devices.get(ua));
            for _ in &hit.report_suites {
                let t = classify(hit.get(Field::Referrer), hit.get(Field::PageUrl), &[]);
                std::hint::black_box(t);
            }
            std::hint::black_box(d);
        })?
        .as_secs_f64();
    }
    let rules_only = (rules - engine).max(0.0);
    println!("rows: {rows} in {} files", files.len());
    println!("engine (rows to hits):                     {engine:.2} s");
    println!("engine + enrichment (all rules):           {enrich:.2} s");
    println!("engine + device and traffic-source rules:  {rules:.2} s");
    println!(
        "device and traffic-source rules alone: {rules_only:.2} s ({:.2} us per row)",
        rules_only / rows.max(1) as f64 * 1e6
    );
    Ok(())
}
