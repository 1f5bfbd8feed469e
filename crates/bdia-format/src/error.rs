//! What can be wrong with a file as a whole ([`FileError`]) and with one row
//! ([`RowProblem`]), each with a stable snake_case code for metrics and JSON.

use std::fmt;

use serde::Serialize;

use crate::suite::SuiteIdError;
use crate::timestamp::TimestampError;

/// A problem that rejects the whole file: nothing of it is processed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FileError {
    /// The bytes do not start with the gzip magic number.
    #[error("Not in GZIP format")]
    NotGzip,
    /// The gzip stream is corrupt or truncated.
    #[error("Invalid GZIP data: {0}")]
    BadGzip(String),
    /// The file has no header line at all.
    #[error("The file is empty: no header row")]
    Empty,
    /// The header line is not UTF-8.
    #[error("The header row is not valid UTF-8")]
    HeaderNotUtf8,
    /// A header column name is empty (often a trailing comma).
    #[error("Empty header column name at column {column} (a trailing comma in the header?)")]
    EmptyColumnName {
        /// 1-based column position.
        column: usize,
    },
    /// The same column appears twice (case-insensitively).
    #[error("Duplicate header column '{name}' (columns {first} and {second})")]
    DuplicateColumn {
        /// The second spelling seen.
        name: String,
        /// 1-based position of the first occurrence.
        first: usize,
        /// 1-based position of the second occurrence.
        second: usize,
    },
    /// More header columns than [`crate::row::MAX_COLUMNS`].
    #[error("Too many header columns: {found} (at most {max})")]
    TooManyColumns {
        /// Columns in the header.
        found: usize,
        /// The limit.
        max: usize,
    },
    /// A header row longer than [`crate::row::MAX_HEADER_BYTES`].
    #[error("Header row too long: {bytes} bytes (at most {max})")]
    HeaderTooLong {
        /// Bytes of the header's column names.
        bytes: usize,
        /// The limit.
        max: usize,
    },
    /// No `timestamp` column.
    #[error("Missing required header column 'timestamp'")]
    MissingTimestampColumn,
    /// No column that can identify a visitor.
    #[error("Missing a visitor ID header column (one of visitorID, marketingCloudVisitorID, IPAddress, customerID.[customerIDType].id)")]
    MissingVisitorIdColumn,
    /// Compressed size over the limit.
    #[error("File too large: the compressed upload exceeds {limit} bytes")]
    TooLargeCompressed {
        /// The limit in bytes.
        limit: u64,
    },
    /// Decompressed size over the limit.
    #[error("File too large: the decompressed content exceeds {limit} bytes")]
    TooLargeUncompressed {
        /// The limit in bytes.
        limit: u64,
    },
}

impl FileError {
    /// Stable snake_case code.
    pub fn code(&self) -> &'static str {
        match self {
            FileError::NotGzip => "not_gzip",
            FileError::BadGzip(_) => "bad_gzip",
            FileError::Empty => "empty_file",
            FileError::HeaderNotUtf8 => "header_not_utf8",
            FileError::EmptyColumnName { .. } => "empty_column_name",
            FileError::DuplicateColumn { .. } => "duplicate_column",
            FileError::TooManyColumns { .. } => "too_many_columns",
            FileError::HeaderTooLong { .. } => "header_too_long",
            FileError::MissingTimestampColumn => "missing_timestamp_column",
            FileError::MissingVisitorIdColumn => "missing_visitor_id_column",
            FileError::TooLargeCompressed { .. } => "too_large_compressed",
            FileError::TooLargeUncompressed { .. } => "too_large_uncompressed",
        }
    }

    /// True for the size limits (answered 413 by the server).
    pub fn is_too_large(&self) -> bool {
        matches!(
            self,
            FileError::TooLargeCompressed { .. } | FileError::TooLargeUncompressed { .. }
        )
    }
}

/// The kind of a row problem, without its details.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RowErrorKind {
    /// The row is longer than the row size limit
    /// ([`crate::engine::Limits::max_row_bytes`]).
    RowTooLong,
    /// Field count differs from the header's.
    ColumnCount,
    /// A field is not valid UTF-8.
    InvalidUtf8,
    /// No visitor identifier.
    MissingVisitorId,
    /// No page URL, page name or link to report.
    NothingToReport,
    /// No report suite.
    MissingReportSuite,
    /// A report suite that is not a valid report-suite ID
    /// ([`crate::suite::ReportSuiteId`]).
    InvalidReportSuite,
    /// A report suite the caller may not write to.
    ReportSuiteNotAllowed,
    /// Empty timestamp.
    MissingTimestamp,
    /// Timestamp in neither allowed form.
    InvalidTimestamp,
    /// Empty user agent.
    MissingUserAgent,
    /// authState outside the allowed set.
    InvalidAuthState,
    /// isMCSeed outside the allowed set.
    InvalidIsMcSeed,
    /// isMCSeed true with an empty id.
    SeedWithoutId,
}

impl RowErrorKind {
    /// Every kind, in the order used for summaries.
    pub const ALL: &'static [RowErrorKind] = &[
        RowErrorKind::RowTooLong,
        RowErrorKind::ColumnCount,
        RowErrorKind::InvalidUtf8,
        RowErrorKind::MissingVisitorId,
        RowErrorKind::NothingToReport,
        RowErrorKind::MissingReportSuite,
        RowErrorKind::InvalidReportSuite,
        RowErrorKind::ReportSuiteNotAllowed,
        RowErrorKind::MissingTimestamp,
        RowErrorKind::InvalidTimestamp,
        RowErrorKind::MissingUserAgent,
        RowErrorKind::InvalidAuthState,
        RowErrorKind::InvalidIsMcSeed,
        RowErrorKind::SeedWithoutId,
    ];

    /// Stable snake_case code.
    pub fn code(self) -> &'static str {
        match self {
            RowErrorKind::RowTooLong => "row_too_long",
            RowErrorKind::ColumnCount => "column_count",
            RowErrorKind::InvalidUtf8 => "invalid_utf8",
            RowErrorKind::MissingVisitorId => "missing_visitor_id",
            RowErrorKind::NothingToReport => "nothing_to_report",
            RowErrorKind::MissingReportSuite => "missing_report_suite",
            RowErrorKind::InvalidReportSuite => "invalid_report_suite",
            RowErrorKind::ReportSuiteNotAllowed => "report_suite_not_allowed",
            RowErrorKind::MissingTimestamp => "missing_timestamp",
            RowErrorKind::InvalidTimestamp => "invalid_timestamp",
            RowErrorKind::MissingUserAgent => "missing_user_agent",
            RowErrorKind::InvalidAuthState => "invalid_auth_state",
            RowErrorKind::InvalidIsMcSeed => "invalid_is_mc_seed",
            RowErrorKind::SeedWithoutId => "seed_without_id",
        }
    }

    /// Phrase used when summarising the rows past the first ten.
    pub fn summary(self) -> &'static str {
        match self {
            RowErrorKind::RowTooLong => "row too long",
            RowErrorKind::ColumnCount => "inconsistent column count",
            RowErrorKind::InvalidUtf8 => "invalid UTF-8",
            RowErrorKind::MissingVisitorId => "missing visitor ID",
            RowErrorKind::NothingToReport => "nothing to report",
            RowErrorKind::MissingReportSuite => "missing 'ReportSuiteID'",
            RowErrorKind::InvalidReportSuite => "invalid 'ReportSuiteID'",
            RowErrorKind::ReportSuiteNotAllowed => "report suite not allowed",
            RowErrorKind::MissingTimestamp => "missing 'Timestamp'",
            RowErrorKind::InvalidTimestamp => "invalid 'Timestamp'",
            RowErrorKind::MissingUserAgent => "missing 'UserAgent'",
            RowErrorKind::InvalidAuthState => "invalid authState",
            RowErrorKind::InvalidIsMcSeed => "invalid isMCSeed",
            RowErrorKind::SeedWithoutId => "isMCSeed set without an id",
        }
    }
}

/// What is wrong with one row, with the details needed to explain it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RowProblem {
    /// The row is longer than the row size limit; it was read to its end
    /// and dropped, never held whole.
    RowTooLong {
        /// Its size: field bytes after unquoting plus one per separator.
        bytes: u64,
        /// The limit.
        max: u64,
    },
    /// Field count differs from the header's.
    ColumnCount {
        /// Header field count.
        expected: usize,
        /// This row's field count.
        found: usize,
    },
    /// A field (or a decoded queryString value) is not UTF-8.
    InvalidUtf8 {
        /// Where: a column name, or `queryString 'key'`.
        place: String,
    },
    /// No visitor identifier.
    MissingVisitorId,
    /// Nothing to report.
    NothingToReport,
    /// No report suite.
    MissingReportSuite,
    /// A report suite that is not a valid report-suite ID.
    InvalidReportSuite {
        /// The suite named (one entry of the comma-separated list).
        rsid: String,
        /// What breaks the rule.
        reason: SuiteIdError,
    },
    /// A report suite the caller may not write to.
    ReportSuiteNotAllowed {
        /// The suite named.
        rsid: String,
    },
    /// Empty timestamp.
    MissingTimestamp,
    /// Timestamp in neither allowed form.
    InvalidTimestamp {
        /// The raw value.
        value: String,
        /// Why.
        reason: TimestampError,
    },
    /// Empty user agent.
    MissingUserAgent,
    /// authState outside the allowed set.
    InvalidAuthState {
        /// Column or queryString key.
        place: String,
        /// The raw value.
        value: String,
    },
    /// isMCSeed outside the allowed set.
    InvalidIsMcSeed {
        /// Column or queryString key.
        place: String,
        /// The raw value.
        value: String,
    },
    /// isMCSeed true with an empty id.
    SeedWithoutId {
        /// The customer ID type.
        id_type: String,
    },
}

impl RowProblem {
    /// The kind, for counting and codes.
    pub fn kind(&self) -> RowErrorKind {
        match self {
            RowProblem::RowTooLong { .. } => RowErrorKind::RowTooLong,
            RowProblem::ColumnCount { .. } => RowErrorKind::ColumnCount,
            RowProblem::InvalidUtf8 { .. } => RowErrorKind::InvalidUtf8,
            RowProblem::MissingVisitorId => RowErrorKind::MissingVisitorId,
            RowProblem::NothingToReport => RowErrorKind::NothingToReport,
            RowProblem::MissingReportSuite => RowErrorKind::MissingReportSuite,
            RowProblem::InvalidReportSuite { .. } => RowErrorKind::InvalidReportSuite,
            RowProblem::ReportSuiteNotAllowed { .. } => RowErrorKind::ReportSuiteNotAllowed,
            RowProblem::MissingTimestamp => RowErrorKind::MissingTimestamp,
            RowProblem::InvalidTimestamp { .. } => RowErrorKind::InvalidTimestamp,
            RowProblem::MissingUserAgent => RowErrorKind::MissingUserAgent,
            RowProblem::InvalidAuthState { .. } => RowErrorKind::InvalidAuthState,
            RowProblem::InvalidIsMcSeed { .. } => RowErrorKind::InvalidIsMcSeed,
            RowProblem::SeedWithoutId { .. } => RowErrorKind::SeedWithoutId,
        }
    }

    /// The processing-log line for this problem on data row `row`.
    pub fn log_line(&self, row: u64) -> String {
        match self {
            RowProblem::ColumnCount { expected, found } => format!(
                "On row: {row}, inconsistent column count. Expected {expected} columns, but found {found}."
            ),
            other => format!("On row: {row}, {other}. This row will not be submitted."),
        }
    }
}

impl fmt::Display for RowProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RowProblem::RowTooLong { bytes, max } => {
                write!(f, "row too long: {bytes} bytes (at most {max})")
            }
            RowProblem::ColumnCount { expected, found } => write!(
                f,
                "inconsistent column count. Expected {expected} columns, but found {found}"
            ),
            RowProblem::InvalidUtf8 { place } => write!(f, "invalid UTF-8 in {place}"),
            RowProblem::MissingVisitorId => f.write_str(
                "missing visitor ID (a seeded 'customerID.[type].id', 'visitorID', 'marketingCloudVisitorID' or 'IPAddress')",
            ),
            RowProblem::NothingToReport => f.write_str(
                "nothing to report (needs 'pageURL', 'pageName', or 'linkType' with 'linkName' or 'linkURL')",
            ),
            RowProblem::MissingReportSuite => f.write_str("missing 'ReportSuiteID'"),
            RowProblem::InvalidReportSuite { rsid, reason } => write!(
                f,
                "invalid 'ReportSuiteID' '{}': {reason}",
                clip(rsid)
            ),
            RowProblem::ReportSuiteNotAllowed { rsid } => {
                write!(f, "report suite '{rsid}' does not belong to this company")
            }
            RowProblem::MissingTimestamp => f.write_str("missing 'Timestamp'"),
            RowProblem::InvalidTimestamp { value, reason } => write!(
                f,
                "invalid 'Timestamp' '{}' ({})",
                clip(value),
                reason.explain()
            ),
            RowProblem::MissingUserAgent => f.write_str("missing 'UserAgent'"),
            RowProblem::InvalidAuthState { place, value } => write!(
                f,
                "invalid {place} '{}' (allowed: 0, 1, 2, UNKNOWN, AUTHENTICATED, LOGGED_OUT or empty)",
                clip(value)
            ),
            RowProblem::InvalidIsMcSeed { place, value } => write!(
                f,
                "invalid {place} '{}' (allowed: 0, 1, true, false or empty)",
                clip(value)
            ),
            RowProblem::SeedWithoutId { id_type } => write!(
                f,
                "'customerID.{id_type}.isMCSeed' is true but 'customerID.{id_type}.id' is empty"
            ),
        }
    }
}

/// Shortens a value quoted in a message to at most 40 characters.
fn clip(value: &str) -> String {
    if value.chars().count() <= 40 {
        value.to_string()
    } else {
        let head: String = value.chars().take(37).collect();
        format!("{head}...")
    }
}

/// One invalid row, as listed by `bdia validate --json` and the reject report.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RowError {
    /// Data row number, from 1.
    pub row: u64,
    /// Stable code of the problem kind.
    pub kind: RowErrorKind,
    /// Human explanation.
    pub message: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_row_kind_is_documented() {
        let doc = include_str!("../../../docs/FORMAT.md");
        for kind in RowErrorKind::ALL {
            assert!(
                doc.contains(&format!("| `{}` |", kind.code())),
                "row kind {} is not in docs/FORMAT.md",
                kind.code()
            );
        }
    }

    #[test]
    fn an_invalid_report_suite_says_which_and_why() {
        let problem = RowProblem::InvalidReportSuite {
            rsid: "acme@prod".into(),
            reason: SuiteIdError::BadChar { ch: '@', pos: 5 },
        };
        assert_eq!(problem.kind().code(), "invalid_report_suite");
        assert_eq!(
            problem.log_line(3),
            "On row: 3, invalid 'ReportSuiteID' 'acme@prod': '@' at position 5 is not allowed \
             (only letters, digits, '.', '-' and '_'). This row will not be submitted."
        );
    }
}
