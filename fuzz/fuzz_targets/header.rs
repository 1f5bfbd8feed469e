//! Arbitrary header lines through the header analysis: split on commas
//! (the engine's CSV reader has already split them), analysed, and, when
//! accepted, a row of the same width checked against it. Nothing may
//! panic; a rejection names a reason; analysis stays linear in the
//! header's size (libFuzzer's `-timeout` flags a slow input).
#![no_main]

use bdia_format::row::{Header, RowRules, MAX_COLUMNS, MAX_HEADER_BYTES};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let names: Vec<&str> = text.split(',').collect();
    match Header::parse(&names) {
        Ok(header) => {
            assert!(names.len() <= MAX_COLUMNS);
            assert!(text.len() <= MAX_HEADER_BYTES + names.len() + 3);
            let fields = csv::StringRecord::from(names.iter().map(|_| "x").collect::<Vec<_>>());
            let _ = header.check(&fields, &RowRules::default());
        }
        Err(e) => assert!(!e.to_string().is_empty()),
    }
});
