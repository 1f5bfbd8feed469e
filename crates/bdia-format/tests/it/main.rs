//! Integration tests of the batch file engine: real gzip bytes in, verdicts out.

mod examples;
mod gzip;
mod properties;
mod rules;

use std::io::Write;

use bdia_format::engine::{process, Encoding, Options, RowEvent};
use bdia_format::{FileReport, Hit, RowError};

/// Gzips bytes in one member.
pub fn gz(data: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    e.write_all(data).unwrap();
    e.finish().unwrap()
}

/// What one run of the engine produced.
#[allow(missing_docs)]
pub struct Run {
    pub report: FileReport,
    pub hits: Vec<Hit>,
    pub errors: Vec<RowError>,
    pub raw_invalid: Vec<Vec<Vec<u8>>>,
}

/// Runs the engine over already-encoded bytes.
pub fn run_with(bytes: &[u8], opts: &Options) -> Run {
    let mut hits = Vec::new();
    let mut errors = Vec::new();
    let mut raw_invalid = Vec::new();
    let report = process(bytes, opts, |ev| {
        match ev {
            RowEvent::Valid { row, valid } => hits.push(valid.to_hit(row)),
            RowEvent::Invalid {
                row,
                problem,
                record,
            } => {
                errors.push(RowError {
                    row,
                    kind: problem.kind(),
                    message: problem.to_string(),
                });
                raw_invalid.push(record.iter().map(|f| f.to_vec()).collect());
            }
        }
        Ok::<_, std::convert::Infallible>(())
    })
    .expect("engine run");
    Run {
        report,
        hits,
        errors,
        raw_invalid,
    }
}

/// Gzips CSV text and runs the engine with default options.
pub fn run(csv: &str) -> Run {
    run_with(&gz(csv.as_bytes()), &Options::default())
}

/// Runs plain CSV bytes (no gzip) with default rules.
pub fn run_plain(csv: &[u8]) -> Run {
    run_with(
        csv,
        &Options {
            encoding: Encoding::Plain,
            ..Options::default()
        },
    )
}
