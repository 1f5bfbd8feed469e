//! Property tests: arbitrary input never panics; generated files are judged
//! exactly as the generator made them; CSV quoting round-trips.

use bdia_format::engine::{Encoding, Options};
use bdia_format::generate::{generate, GenOptions, INJECTABLE};
use proptest::prelude::*;

use crate::{gz, run_with};

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    #[test]
    fn arbitrary_bytes_never_panic(data in proptest::collection::vec(any::<u8>(), 0..2048)) {
        let plain = Options { encoding: Encoding::Plain, ..Options::default() };
        let r = run_with(&data, &plain);
        prop_assert!(r.report.invalid_rows <= r.report.rows);
        let r = run_with(&gz(&data), &Options::default());
        prop_assert!(r.report.invalid_rows <= r.report.rows);
        let r = run_with(&data, &Options::default());
        prop_assert!(r.report.invalid_rows <= r.report.rows);
    }

    #[test]
    fn csv_like_text_never_panics(text in "(timestamp|visitorID|pageName|userAgent|reportSuiteID|queryString|,|\"|\r|\n|1500000000|[a-z%=&]{1,5}){0,60}") {
        let plain = Options { encoding: Encoding::Plain, ..Options::default() };
        let r = run_with(text.as_bytes(), &plain);
        if r.report.rejection.is_none() {
            prop_assert_eq!(r.report.rows, (r.hits.len() + r.errors.len()) as u64);
            prop_assert_eq!(r.report.invalid_rows, r.errors.len() as u64);
        } else {
            prop_assert!(r.hits.is_empty());
            prop_assert_eq!(r.report.invalid_rows, r.report.rows);
        }
    }

    #[test]
    fn quoted_values_round_trip(values in proptest::collection::vec("[^\u{0}]{0,20}", 1..20)) {
        let mut w = csv::Writer::from_writer(Vec::new());
        w.write_record(["timestamp", "visitorID", "reportSuiteID", "userAgent", "pageName"]).unwrap();
        for v in &values {
            w.write_record(["1500000000", "v", "rs", "UA", &format!("p{v}")]).unwrap();
        }
        let bytes = w.into_inner().unwrap();
        let r = run_with(&gz(&bytes), &Options::default());
        prop_assert_eq!(r.report.invalid_rows, 0);
        let names: Vec<String> = r.hits.iter().map(|h| h.get(bdia_format::fields::Field::PageName).unwrap().to_string()).collect();
        let expected: Vec<String> = values.iter().map(|v| format!("p{v}")).collect();
        prop_assert_eq!(names, expected);
    }

    #[test]
    fn generated_files_are_judged_as_generated(seed in 0u64..1000, rate in 0.0f64..0.5) {
        let opts = GenOptions { rows: 300, visitors: 40, seed, invalid_rate: rate, report_suites: vec!["a".into(), "b".into()], ..GenOptions::default() };
        let mut csv = Vec::new();
        let summary = generate(&opts, &mut csv).unwrap();
        let r = run_with(&gz(&csv), &Options::default());
        prop_assert_eq!(r.report.rows, 300);
        let got: Vec<(u64, bdia_format::RowErrorKind)> = r.errors.iter().map(|e| (e.row, e.kind)).collect();
        prop_assert_eq!(got, summary.invalid_rows);
        // Every visitor's rows are in time order.
        let mut last = std::collections::HashMap::new();
        for h in &r.hits {
            let prev = last.insert(h.visitor.key(), h.timestamp);
            prop_assert!(prev.is_none_or(|p| p <= h.timestamp));
        }
    }
}

#[test]
fn generator_injects_every_kind() {
    let opts = GenOptions {
        rows: 5000,
        invalid_rate: 0.3,
        ..GenOptions::default()
    };
    let mut csv = Vec::new();
    let summary = generate(&opts, &mut csv).unwrap();
    for kind in INJECTABLE {
        assert!(
            summary.invalid.get(kind).copied().unwrap_or(0) > 0,
            "{kind:?}"
        );
    }
    let r = run_with(&gz(&csv), &Options::default());
    assert_eq!(r.report.invalid_rows, summary.invalid_total());
    let log = r.report.processing_log();
    // More than ten rows of each kind: ten listed, the rest summarised.
    assert_eq!(log.matches("On row: ").count(), 10 * INJECTABLE.len());
    assert_eq!(log.matches("more rows with").count(), INJECTABLE.len());
    // The file mixes styles and features.
    let text = String::from_utf8_lossy(&csv);
    assert!(text.contains("AQB=1"));
    assert!(text.contains("\"\""));
    assert!(text.contains("café"));
}
