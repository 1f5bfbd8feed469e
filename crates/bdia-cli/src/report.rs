//! `bdia report`: a report from a running server, as a table, CSV or JSON.

use std::process::ExitCode;

use anyhow::Context;
use bdia_client::api::{Report, ReportQuery};

use crate::remote::RemoteArgs;

/// Output formats.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    /// Aligned columns with a total line.
    Table,
    /// CSV with a header row (no total line).
    Csv,
    /// The server's JSON answer.
    Json,
}

/// Arguments of `bdia report`.
#[derive(clap::Args)]
pub struct Args {
    /// Report suite (one of the company's; IDs are per company).
    #[arg(long)]
    rsid: bdia_format::ReportSuiteId,
    /// Comma-separated metrics: pageviews, visits, visitors, link_hits,
    /// hits, bounces, entries, bounce_rate, total_seconds_spent,
    /// time_spent_per_visit, events:<name>.
    #[arg(long, default_value = "pageviews,visits,visitors")]
    metrics: String,
    /// Dimension: day, hour, page, page_url, link_name, link_type, channel,
    /// campaign, referrer_host, evarN, propN, visitor_id_type, file_id,
    /// browser, browser_version, os, device_type, referrer_type,
    /// search_engine, entry_page, exit_page.
    #[arg(long, default_value = "day")]
    dimension: String,
    /// First day, YYYY-MM-DD (in the suite's time zone).
    #[arg(long)]
    from: String,
    /// Last day, YYYY-MM-DD (included).
    #[arg(long)]
    to: String,
    /// At most this many rows.
    #[arg(long)]
    limit: Option<u32>,
    /// Count robots' hits (device type bot), which reports leave out by
    /// default.
    #[arg(long)]
    include_bots: bool,
    /// Output format.
    #[arg(long, value_enum, default_value_t = Format::Table)]
    format: Format,
    #[command(flatten)]
    remote: RemoteArgs,
}

fn cell(v: Option<&serde_json::Value>) -> String {
    match v {
        None | Some(serde_json::Value::Null) => String::new(),
        Some(serde_json::Value::String(s)) => s.clone(),
        Some(other) => other.to_string(),
    }
}

/// The report as lines of a table (header, rows, a total line).
pub fn table(report: &Report, metrics: &[String]) -> Vec<String> {
    let mut grid: Vec<Vec<String>> = Vec::new();
    let mut header = vec![report.dimension.clone()];
    header.extend(metrics.iter().cloned());
    grid.push(header);
    for row in &report.rows {
        let mut line = vec![match row.get(&report.dimension) {
            None | Some(serde_json::Value::Null) => "(none)".to_string(),
            v => cell(v),
        }];
        line.extend(metrics.iter().map(|m| cell(row.get(m))));
        grid.push(line);
    }
    let mut total = vec!["Total".to_string()];
    total.extend(metrics.iter().map(|m| cell(report.totals.get(m))));
    grid.push(total);
    let widths: Vec<usize> = (0..grid[0].len())
        .map(|c| grid.iter().map(|r| r[c].chars().count()).max().unwrap_or(0))
        .collect();
    grid.iter()
        .map(|r| {
            r.iter()
                .enumerate()
                .map(|(c, s)| {
                    if c == 0 {
                        format!("{s:<w$}", w = widths[c])
                    } else {
                        format!("{s:>w$}", w = widths[c])
                    }
                })
                .collect::<Vec<_>>()
                .join("  ")
                .trim_end()
                .to_string()
        })
        .collect()
}

/// Runs `bdia report`.
pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let client = args.remote.client()?;
    let query = ReportQuery {
        metrics: args.metrics.clone(),
        dimension: Some(args.dimension.clone()),
        from: args.from.clone(),
        to: args.to.clone(),
        limit: args.limit,
        include_bots: args.include_bots,
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let report = runtime
        .block_on(client.report(args.rsid.as_str(), &query))
        .with_context(|| format!("report on {}", args.rsid))?;
    let metrics: Vec<String> = args
        .metrics
        .split(',')
        .map(|m| m.trim().to_string())
        .filter(|m| !m.is_empty())
        .collect();
    match args.format {
        Format::Json => println!("{}", serde_json::to_string_pretty(&report)?),
        Format::Table => {
            for line in table(&report, &metrics) {
                println!("{line}");
            }
        }
        Format::Csv => {
            let mut w = csv::Writer::from_writer(std::io::stdout());
            let mut header = vec![report.dimension.clone()];
            header.extend(metrics.iter().cloned());
            w.write_record(&header)?;
            for row in &report.rows {
                let mut line = vec![cell(row.get(&report.dimension))];
                line.extend(metrics.iter().map(|m| cell(row.get(m))));
                w.write_record(&line)?;
            }
            w.flush()?;
        }
    }
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_aligns_columns_and_ends_with_totals() {
        let report: Report = serde_json::from_value(serde_json::json!({
            "report_suite": "rs", "dimension": "page", "from": "2026-01-01", "to": "2026-01-02",
            "rows": [{"page": "Home", "pageviews": 1200, "visits": 3}, {"page": null, "pageviews": 0, "visits": 1}],
            "totals": {"pageviews": 1200, "visits": 4}
        }))
        .unwrap();
        let lines = table(&report, &["pageviews".into(), "visits".into()]);
        assert_eq!(
            lines,
            vec![
                "page    pageviews  visits",
                "Home         1200       3",
                "(none)          0       1",
                "Total        1200       4",
            ]
        );
    }
}
