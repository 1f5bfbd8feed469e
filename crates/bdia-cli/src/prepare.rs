//! `bdia prepare INPUT... --groups N --out DIR`: correct batch files from
//! arbitrary CSV exports.

use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use bdia_client::prepare::{prepare, PrepareOptions};
use bdia_format::{Limits, RowRules};
use indicatif::{ProgressBar, ProgressStyle};

/// Arguments of `bdia prepare`.
#[derive(clap::Args)]
pub struct Args {
    /// Input CSV files, plain or gzip, in any order.
    #[arg(required = true)]
    inputs: Vec<PathBuf>,
    /// Number of visitor groups to spread visitors over.
    #[arg(long, default_value_t = 4)]
    groups: u32,
    /// Output directory (created; must not hold a manifest yet).
    #[arg(long)]
    out: PathBuf,
    /// Prefix of the visitor group ids (`<prefix><n>`).
    #[arg(long, default_value = "group-")]
    group_prefix: String,
    /// Most data rows per output file.
    #[arg(long, default_value_t = 1_000_000)]
    max_rows: u64,
    /// Most bytes of CSV (before gzip) per output file.
    #[arg(long, default_value_t = 512 * 1024 * 1024)]
    max_bytes: u64,
    /// Memory for sorting, in MiB; past it rows are spilled to disk.
    #[arg(long, default_value_t = 64)]
    memory_mib: usize,
    /// The customerIDType provisioned as the only seed type, if any.
    #[arg(long, value_name = "TYPE")]
    seed_type: Option<String>,
    /// Largest input row in bytes (fields after unquoting plus separators);
    /// a longer row is rejected (row_too_long) and skipped unread.
    #[arg(long, default_value_t = Limits::default().max_row_bytes, value_name = "BYTES", value_parser = clap::value_parser!(u64).range(1..))]
    max_row_bytes: u64,
    /// Print the summary as JSON.
    #[arg(long)]
    json: bool,
}

/// Runs the command.
pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let total: u64 = args
        .inputs
        .iter()
        .map(|p| std::fs::metadata(p).map(|m| m.len()))
        .collect::<Result<Vec<_>, _>>()
        .context("cannot read an input")?
        .iter()
        .sum();
    let bar = if std::io::stderr().is_terminal() && !args.json {
        let b = ProgressBar::new(total);
        b.set_style(
            ProgressStyle::with_template(
                "{spinner} reading [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec} ETA {eta}",
            )
            .expect("valid template")
            .progress_chars("=> "),
        );
        Some(b)
    } else {
        None
    };
    let opts = PrepareOptions {
        groups: args.groups,
        group_prefix: args.group_prefix,
        max_rows: args.max_rows,
        max_bytes: args.max_bytes,
        memory_budget: args.memory_mib.max(1) * 1024 * 1024,
        rules: RowRules {
            seed_customer_id_type: args.seed_type,
            allow_report_suite: None,
        },
        max_row_bytes: args.max_row_bytes,
    };
    let progress_bar = bar.clone();
    let mut progress = move |n: u64| {
        if let Some(b) = &progress_bar {
            b.inc(n);
        }
    };
    let summary = prepare(&args.inputs, &args.out, &opts, &mut progress)?;
    if let Some(b) = bar {
        b.finish_and_clear();
    }
    let m = &summary.manifest;
    if args.json {
        let v = serde_json::json!({
            "out": args.out,
            "input_rows": m.input_rows,
            "written_rows": m.written_rows,
            "rejected_rows": m.rejected_rows,
            "rejected_by_kind": summary.rejected_by_kind.iter().cloned().collect::<std::collections::BTreeMap<_, _>>(),
            "groups": m.groups.iter().map(|g| serde_json::json!({
                "id": g.id,
                "files": g.files.len(),
                "rows": g.files.iter().map(|f| f.rows).sum::<u64>(),
            })).collect::<Vec<_>>(),
        });
        println!("{v}");
    } else {
        println!(
            "read {} rows: wrote {} rows in {} files, rejected {} rows",
            m.input_rows,
            m.written_rows,
            m.groups.iter().map(|g| g.files.len()).sum::<usize>(),
            m.rejected_rows
        );
        for (kind, n) in &summary.rejected_by_kind {
            println!("  rejected: {n} {kind}");
        }
        for g in &m.groups {
            println!(
                "  {}: {} files, {} rows",
                g.id,
                g.files.len(),
                g.files.iter().map(|f| f.rows).sum::<u64>()
            );
        }
        println!(
            "manifest: {}  rejects: {}",
            args.out.join("manifest.json").display(),
            args.out.join("rejects.csv").display()
        );
    }
    Ok(ExitCode::SUCCESS)
}
