//! `bdia generate`: realistic batch files for tests, demos and benchmarks.

use std::fs::File;
use std::io::{self, BufWriter, Write};
use std::process::ExitCode;

use anyhow::{bail, Context};
use bdia_format::generate::{generate, GenOptions, INJECTABLE};
use bdia_format::RowErrorKind;

/// Arguments of `bdia generate`.
#[derive(clap::Args)]
pub struct Args {
    /// Data rows to write.
    #[arg(long, default_value_t = 10_000)]
    rows: u64,
    /// Number of distinct visitors.
    #[arg(long, default_value_t = 1_000)]
    visitors: u64,
    /// RNG seed: the same seed gives the same file.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Unix seconds of the first hit.
    #[arg(long, default_value_t = 1_700_000_000)]
    start: i64,
    /// Mean seconds between consecutive rows.
    #[arg(long, default_value_t = 2)]
    mean_gap: u32,
    /// Report suites, comma separated.
    #[arg(long, default_value = "acme.prod", value_delimiter = ',')]
    suites: Vec<String>,
    /// Fraction of rows to make invalid (0.0 to 1.0).
    #[arg(long, default_value_t = 0.0)]
    invalid_rate: f64,
    /// Which problems to inject, comma separated codes (default: all).
    #[arg(long, value_delimiter = ',')]
    invalid_kinds: Vec<String>,
    /// Keep only the visitors of one group, as `G/N` (group G of N, from 0).
    #[arg(long, value_name = "G/N")]
    group: Option<String>,
    /// Write plain CSV instead of gzip.
    #[arg(long)]
    plain: bool,
    /// Output file (`-` for standard output).
    #[arg(short, long, default_value = "-")]
    out: String,
}

/// Runs the command.
pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    if !(0.0..=1.0).contains(&args.invalid_rate) {
        bail!(
            "--invalid-rate must be between 0 and 1, got {}",
            args.invalid_rate
        );
    }
    let mut kinds = Vec::new();
    for code in &args.invalid_kinds {
        let kind = INJECTABLE
            .iter()
            .find(|k| k.code() == code)
            .with_context(|| {
                let known: Vec<&str> = INJECTABLE.iter().map(|k| k.code()).collect();
                format!("unknown kind '{code}' (known: {})", known.join(", "))
            })?;
        kinds.push(*kind);
    }
    let group = match &args.group {
        None => None,
        Some(g) => {
            let (a, b) = g.split_once('/').context("--group must be G/N")?;
            let (a, b): (u64, u64) = (a.parse()?, b.parse()?);
            if b == 0 || a >= b {
                bail!("--group {g}: need 0 <= G < N");
            }
            Some((a, b))
        }
    };
    let opts = GenOptions {
        rows: args.rows,
        visitors: args.visitors,
        seed: args.seed,
        start: args.start,
        mean_gap: args.mean_gap,
        report_suites: args.suites,
        invalid_rate: args.invalid_rate,
        invalid_kinds: kinds,
        group,
    };
    let sink: Box<dyn Write> = if args.out == "-" {
        Box::new(io::stdout().lock())
    } else {
        Box::new(File::create(&args.out).with_context(|| format!("cannot create {}", args.out))?)
    };
    let sink = BufWriter::with_capacity(1 << 20, sink);
    let summary = if args.plain {
        let mut w = sink;
        let s = generate(&opts, &mut w)?;
        w.flush()?;
        s
    } else {
        let mut gz = flate2::write::GzEncoder::new(sink, flate2::Compression::default());
        let s = generate(&opts, &mut gz)?;
        gz.finish()?.flush()?;
        s
    };
    let detail: Vec<String> = summary
        .invalid
        .iter()
        .map(|(k, n): (&RowErrorKind, &u64)| format!("{}={n}", k.code()))
        .collect();
    eprintln!(
        "generated {} rows, {} invalid{}",
        summary.rows,
        summary.invalid_total(),
        if detail.is_empty() {
            String::new()
        } else {
            format!(" ({})", detail.join(", "))
        }
    );
    Ok(ExitCode::SUCCESS)
}
