//! `bdia validate FILE...`: the engine run offline, one verdict per file.
//!
//! Exit codes: 0 when every file is fully valid, 1 when any file has invalid
//! rows or is rejected, 2 on usage or I/O errors.

use std::convert::Infallible;
use std::fs::File;
use std::io::{self, IsTerminal, Read, Write};
use std::process::ExitCode;

use anyhow::Context;
use bdia_format::engine::{process, Encoding, Limits, Options, RowEvent};
use bdia_format::{FileReport, RowError, RowRules};
use bdia_wire::FileStatus;
use indicatif::{ProgressBar, ProgressStyle};
use serde::Serialize;

/// Arguments of `bdia validate`.
#[derive(clap::Args)]
pub struct Args {
    /// Batch files to check (gzip CSV); `-` reads standard input.
    #[arg(required = true)]
    files: Vec<String>,
    /// Print one JSON object per file (JSON Lines) instead of text.
    #[arg(long)]
    json: bool,
    /// The files are plain, uncompressed CSV (the server only takes gzip).
    #[arg(long)]
    plain: bool,
    /// The customerIDType provisioned as the only seed type, if any.
    #[arg(long, value_name = "TYPE")]
    seed_type: Option<String>,
    /// Compressed size limit in bytes.
    #[arg(long, default_value_t = Limits::default().max_compressed, value_name = "BYTES")]
    max_compressed: u64,
    /// Decompressed size limit in bytes.
    #[arg(long, default_value_t = Limits::default().max_uncompressed, value_name = "BYTES")]
    max_uncompressed: u64,
    /// Largest data row in bytes (fields after unquoting plus separators);
    /// a longer row is invalid (row_too_long) and skipped unread.
    #[arg(long, default_value_t = Limits::default().max_row_bytes, value_name = "BYTES", value_parser = clap::value_parser!(u64).range(1..))]
    max_row_bytes: u64,
    /// Never show a progress bar.
    #[arg(long)]
    quiet: bool,
    /// Ask the server at this URL (its validate endpoint) instead of
    /// checking locally; credentials as for `bdia upload`.
    #[arg(long)]
    url: Option<String>,
    /// With --url: also show what the file would do (time range, rows per
    /// report suite and day, visitors and new visitors, out-of-order rows,
    /// estimated processing time); nothing is stored.
    #[arg(long, requires = "url")]
    preview: bool,
    #[command(flatten)]
    server: crate::remote::ServerArgs,
}

/// The `--json` object of one file.
#[derive(Serialize)]
struct JsonReport<'a> {
    upload_name: &'a str,
    size: u64,
    rows: u64,
    invalid_rows: u64,
    status_code: FileStatus,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<String>,
    processing_log: String,
    errors: Vec<RowError>,
}

/// Runs the command.
pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    if let Some(url) = &args.url {
        return crate::remote::validate_remote(
            url,
            &args.server,
            &args.files,
            args.json,
            args.preview,
        );
    }
    let opts = Options {
        limits: Limits {
            max_compressed: args.max_compressed,
            max_uncompressed: args.max_uncompressed,
            max_row_bytes: args.max_row_bytes,
        },
        encoding: if args.plain {
            Encoding::Plain
        } else {
            Encoding::Gzip
        },
        rules: RowRules {
            seed_customer_id_type: args.seed_type.clone(),
            allow_report_suite: None,
        },
        threaded: true,
    };
    let mut all_valid = true;
    let stdout = io::stdout();
    for name in &args.files {
        let (input, len): (Box<dyn Read + Send>, Option<u64>) = if name == "-" {
            (Box::new(io::stdin()), None)
        } else {
            let f = File::open(name).with_context(|| format!("cannot open {name}"))?;
            let len = f.metadata().ok().map(|m| m.len());
            (Box::new(f), len)
        };
        let bar = progress_bar(&args, len);
        let input: Box<dyn Read + Send> = match &bar {
            Some(b) => Box::new(b.wrap_read(input)),
            None => input,
        };
        let mut errors = Vec::new();
        let report = process(input, &opts, |event| {
            if let RowEvent::Invalid { row, problem, .. } = event {
                if args.json {
                    errors.push(RowError {
                        row,
                        kind: problem.kind(),
                        message: problem.to_string(),
                    });
                }
            }
            Ok::<_, Infallible>(())
        })
        .with_context(|| format!("cannot read {name}"))?;
        if let Some(b) = bar {
            b.finish_and_clear();
        }
        all_valid &= report.is_fully_valid();
        let mut out = stdout.lock();
        if args.json {
            let json = JsonReport {
                upload_name: name,
                size: report.size,
                rows: report.rows,
                invalid_rows: report.invalid_rows,
                status_code: report.status_code(),
                error: report.rejection.as_ref().map(ToString::to_string),
                processing_log: report.processing_log(),
                errors,
            };
            serde_json::to_writer(&mut out, &json)?;
            writeln!(out)?;
        } else {
            write_text(&mut out, name, &report)?;
        }
    }
    Ok(if all_valid {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

fn progress_bar(args: &Args, len: Option<u64>) -> Option<ProgressBar> {
    let len = len?;
    if args.quiet || args.json || !io::stderr().is_terminal() || len < 8 << 20 {
        return None;
    }
    let bar = ProgressBar::new(len);
    bar.set_style(
        ProgressStyle::with_template(
            "{spinner} validating [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec} ETA {eta}",
        )
        .expect("valid template")
        .progress_chars("=> "),
    );
    Some(bar)
}

fn write_text(out: &mut impl Write, name: &str, report: &FileReport) -> io::Result<()> {
    writeln!(out, "{name}")?;
    writeln!(
        out,
        "  size: {} bytes compressed, {} bytes of CSV",
        report.size, report.uncompressed_size
    )?;
    writeln!(
        out,
        "  rows: {}, invalid rows: {}, rows to submit: {}",
        report.rows,
        report.invalid_rows,
        report.valid_rows()
    )?;
    writeln!(out, "  processing log:")?;
    for line in report.processing_log().lines() {
        writeln!(out, "    {line}")?;
    }
    let verdict = match (&report.rejection, report.invalid_rows) {
        (Some(reason), _) => format!("REJECTED: {reason}"),
        (None, 0) => "VALID: every row will be submitted".to_string(),
        (None, n) => format!("UPLOADABLE WITH INVALID ROWS: {n} rows will be skipped"),
    };
    writeln!(out, "  verdict: {verdict}")
}
