//! Arbitrary bytes through the whole engine, three ways: as the upload
//! itself (mostly "not gzip"), gzipped (so the CSV and row rules see them),
//! and as plain CSV. Nothing may panic, and the counts must stay coherent.
//!
//! The engine runs single-threaded here: the decompression thread only moves
//! the same bytes across a channel (its own tests cover it), and a thread
//! torn down at each input makes LeakSanitizer report the runtime's
//! per-thread bookkeeping as leaks.
#![no_main]

use std::io::Write;

use bdia_format::engine::{process, Encoding, Limits, Options, RowEvent};
use libfuzzer_sys::fuzz_target;

fn check(bytes: &[u8], encoding: Encoding) {
    let opts = Options {
        encoding,
        threaded: false,
        limits: Limits {
            max_compressed: 1 << 20,
            max_uncompressed: 4 << 20,
            // Small, so that inputs of a few KiB also reach rows over it.
            max_row_bytes: 512,
        },
        ..Options::default()
    };
    let mut valid = 0u64;
    let mut invalid = 0u64;
    let report = process(bytes, &opts, |ev| {
        match ev {
            RowEvent::Valid { row, valid: v } => {
                let hit = v.to_hit(row);
                assert!(!hit.report_suites.is_empty());
                valid += 1;
            }
            RowEvent::Invalid { .. } => invalid += 1,
        }
        Ok::<_, std::convert::Infallible>(())
    })
    .expect("in-memory input never fails");
    assert!(report.invalid_rows <= report.rows);
    if report.rejection.is_none() {
        assert_eq!(valid + invalid, report.rows);
        assert_eq!(invalid, report.invalid_rows);
    } else {
        assert_eq!(report.invalid_rows, report.rows);
    }
    let _ = report.processing_log();
}

fuzz_target!(|data: &[u8]| {
    check(data, Encoding::Gzip);
    check(data, Encoding::Plain);
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gz.write_all(data).unwrap();
    check(&gz.finish().unwrap(), Encoding::Gzip);
});
