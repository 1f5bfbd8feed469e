//! The Bulk Data Insertion batch file contract, as one streaming engine.
//!
//! A batch file is gzip-compressed CSV (spec section 3). [`engine::process`]
//! reads one from any [`std::io::Read`], enforces the size limits while
//! decompressing, analyses the header ([`row::Header`]), applies the row
//! rules to every data row and writes the processing log
//! ([`log::ProcessingLog`]). Each valid row can be normalized into a
//! [`hit::Hit`]. Report-suite IDs follow one rule, [`suite::ReportSuiteId`],
//! shared with the rest of the system. Nothing here knows about HTTP or
//! storage.
//!
//! ```
//! use std::io::Write;
//! use bdia_format::engine::{process, Options, RowEvent};
//!
//! let csv = "timestamp,visitorID,reportSuiteID,userAgent,pageName\n\
//!            1506553535,v1,acme.prod,Mozilla/5.0,Home\n\
//!            1506553536,v1,acme.prod,,Home\n";
//! let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
//! gz.write_all(csv.as_bytes()).unwrap();
//! let bytes = gz.finish().unwrap();
//!
//! let mut pages = Vec::new();
//! let report = process(&bytes[..], &Options::default(), |event| {
//!     if let RowEvent::Valid { row, valid } = event {
//!         pages.push(valid.to_hit(row).get(bdia_format::fields::Field::PageName).unwrap().to_string());
//!     }
//!     Ok::<_, std::convert::Infallible>(())
//! })
//! .unwrap();
//! assert_eq!((report.rows, report.invalid_rows), (2, 1));
//! assert_eq!(pages, ["Home"]);
//! assert!(report.processing_log().contains("On row: 2, missing 'UserAgent'."));
//! ```

pub mod commerce;
pub mod engine;
pub mod error;
pub mod fields;
pub mod generate;
pub mod hit;
pub mod log;
pub mod query;
pub mod records;
pub mod row;
pub mod suite;
pub mod timestamp;

pub use engine::{process, EngineError, FileReport, Limits, Options, RowEvent};
pub use error::{FileError, RowError, RowErrorKind, RowProblem};
pub use hit::Hit;
pub use row::{Header, RowRules, ValidRow};
pub use suite::{ReportSuiteId, SuiteIdError};
