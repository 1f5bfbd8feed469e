//! The processing log of spec section 3.5: one line per problem row, at most
//! [`EXPLICIT_PER_KIND`] per kind followed by a summary of the rest of that
//! kind, and a closing `Processing complete` line. Warnings (unknown
//! columns) are capped the same way: at most [`EXPLICIT_WARNINGS`] listed,
//! then a count. Memory and the log's length are bounded whatever the file:
//! only the explicit lines are kept, the rest are counted.

use std::collections::BTreeMap;

use crate::error::{FileError, RowErrorKind, RowProblem};

/// How many rows of one kind are listed before the rest is summarised.
pub const EXPLICIT_PER_KIND: u64 = 10;

/// How many warnings are listed before the rest is counted.
pub const EXPLICIT_WARNINGS: u64 = 10;

/// Accumulates the log of one file.
#[derive(Debug, Clone, Default)]
pub struct ProcessingLog {
    warnings: Vec<String>,
    /// Warnings past [`EXPLICIT_WARNINGS`], counted only.
    more_warnings: u64,
    lines: Vec<String>,
    counts: BTreeMap<RowErrorKind, u64>,
    notes: Vec<String>,
}

impl ProcessingLog {
    /// A new, empty log.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a warning, shown before the row lines; past
    /// [`EXPLICIT_WARNINGS`] it is only counted.
    pub fn warn(&mut self, warning: String) {
        if (self.warnings.len() as u64) < EXPLICIT_WARNINGS {
            self.warnings.push(warning);
        } else {
            self.more_warnings += 1;
        }
    }

    /// The warnings as rendered: the listed ones and the count of the rest.
    fn warning_lines(&self) -> Vec<String> {
        let mut out = self.warnings.clone();
        if self.more_warnings > 0 {
            let total = self.warnings.len() as u64 + self.more_warnings;
            let word = if self.more_warnings == 1 {
                "warning"
            } else {
                "warnings"
            };
            out.push(format!(
                "... and {} more {word} ({total} in all).",
                self.more_warnings
            ));
        }
        out
    }

    /// Adds a note, shown after the row lines and before the closing line
    /// (used by processing, e.g. for out-of-order rows).
    pub fn note(&mut self, note: String) {
        self.notes.push(note);
    }

    /// Records a problem row.
    pub fn row(&mut self, row: u64, problem: &RowProblem) {
        let n = self.counts.entry(problem.kind()).or_insert(0);
        *n += 1;
        if *n <= EXPLICIT_PER_KIND {
            self.lines.push(problem.log_line(row));
        }
    }

    /// How many problem rows of each kind were recorded.
    pub fn counts(&self) -> &BTreeMap<RowErrorKind, u64> {
        &self.counts
    }

    /// The log of a file whose rows were checked: `rows` data rows of which
    /// `invalid` will be skipped.
    pub fn render(&self, rows: u64, invalid: u64) -> String {
        let mut out: Vec<String> = self.warning_lines();
        out.extend(self.lines.iter().cloned());
        for (kind, n) in &self.counts {
            if *n > EXPLICIT_PER_KIND {
                let more = n - EXPLICIT_PER_KIND;
                let rows_word = if more == 1 { "row" } else { "rows" };
                out.push(format!(
                    "... and {more} more {rows_word} with {} ({n} in all). These rows will not be submitted.",
                    kind.summary()
                ));
            }
        }
        out.extend(self.notes.iter().cloned());
        out.push(format!(
            "Processing complete: {} rows will be submitted. {invalid} rows were invalid.",
            rows - invalid
        ));
        out.join("\n")
    }

    /// The log of a file rejected as a whole.
    pub fn render_rejected(&self, error: &FileError, rows: u64) -> String {
        let mut out: Vec<String> = self.warning_lines();
        out.push(format!("File rejected: {error}."));
        out.push(format!(
            "Processing complete: 0 rows will be submitted. {rows} rows were invalid."
        ));
        out.join("\n")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lists_ten_warnings_then_counts() {
        let mut log = ProcessingLog::new();
        for i in 1..=12 {
            log.warn(format!("Warning: w{i}."));
        }
        let text = log.render(1, 0);
        assert_eq!(
            text.lines().filter(|l| l.starts_with("Warning:")).count(),
            10
        );
        assert!(text.contains("Warning: w10."), "{text}");
        assert!(!text.contains("Warning: w11."), "{text}");
        assert!(
            text.contains("... and 2 more warnings (12 in all)."),
            "{text}"
        );
    }

    #[test]
    fn lists_ten_per_kind_then_summarises() {
        let mut log = ProcessingLog::new();
        for row in 1..=13 {
            log.row(row, &RowProblem::MissingUserAgent);
        }
        log.row(
            14,
            &RowProblem::ColumnCount {
                expected: 5,
                found: 6,
            },
        );
        insta::assert_snapshot!(log.render(20, 14), @r"
        On row: 1, missing 'UserAgent'. This row will not be submitted.
        On row: 2, missing 'UserAgent'. This row will not be submitted.
        On row: 3, missing 'UserAgent'. This row will not be submitted.
        On row: 4, missing 'UserAgent'. This row will not be submitted.
        On row: 5, missing 'UserAgent'. This row will not be submitted.
        On row: 6, missing 'UserAgent'. This row will not be submitted.
        On row: 7, missing 'UserAgent'. This row will not be submitted.
        On row: 8, missing 'UserAgent'. This row will not be submitted.
        On row: 9, missing 'UserAgent'. This row will not be submitted.
        On row: 10, missing 'UserAgent'. This row will not be submitted.
        On row: 14, inconsistent column count. Expected 5 columns, but found 6.
        ... and 3 more rows with missing 'UserAgent' (13 in all). These rows will not be submitted.
        Processing complete: 6 rows will be submitted. 14 rows were invalid.
        ");
    }
}
