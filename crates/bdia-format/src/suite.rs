//! Report-suite IDs: the one rule, and the one parser every part of the
//! system uses (row rules, admin, processing, the lake).
//!
//! # The rule
//!
//! A report-suite ID is 1 to [`ReportSuiteId::MAX_LEN`] characters, each an
//! ASCII letter, an ASCII digit, `.`, `-` or `_` (the characters Adobe
//! documents for report-suite IDs), and its first character is a letter or
//! a digit. Case is kept and significant: `Acme` and `acme` are two suites.
//!
//! # Why this rule
//!
//! - The ID names a directory of the hit lake
//!   (`hits/company=<id>/report_suite=<rsid>/...`), so it must be a safe path segment on
//!   every object store: no `/`, `=`, spaces or non-ASCII, never `.` or `..`,
//!   and never one of the lake's own `_`-prefixed directories. Starting with
//!   a letter or digit rules those out.
//! - 100 characters is far above real report-suite IDs (Adobe's are short
//!   names such as `acmeprod` or `acme.prod.eu`) and keeps a lake object
//!   path well inside object-store key limits.
//!
//! Invariant: a [`ReportSuiteId`] value always satisfies the rule; the only
//! ways to build one go through [`ReportSuiteId::parse`].

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// Why a string is not a report-suite ID.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SuiteIdError {
    /// Nothing at all.
    #[error("empty (a report suite ID needs 1 to {max} characters)", max = ReportSuiteId::MAX_LEN)]
    Empty,
    /// More than [`ReportSuiteId::MAX_LEN`] characters.
    #[error("{len} characters long (at most {max})", max = ReportSuiteId::MAX_LEN)]
    TooLong {
        /// The length in characters.
        len: usize,
    },
    /// The first character is `.`, `-` or `_`.
    #[error("starts with '{ch}' (the first character must be a letter or a digit)")]
    BadStart {
        /// The first character.
        ch: char,
    },
    /// A character outside letters, digits, `.`, `-` and `_`.
    #[error("'{ch}' at position {pos} is not allowed (only letters, digits, '.', '-' and '_')")]
    BadChar {
        /// The offending character.
        ch: char,
        /// Its 1-based position, in characters.
        pos: usize,
    },
}

/// A report-suite ID that satisfies the rule of this module.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct ReportSuiteId(String);

impl ReportSuiteId {
    /// Longest accepted ID, in characters (all ASCII, so also in bytes).
    pub const MAX_LEN: usize = 100;

    /// Parses an ID: the value must follow the rule exactly (no trimming).
    pub fn parse(value: &str) -> Result<ReportSuiteId, SuiteIdError> {
        Self::check(value)?;
        Ok(ReportSuiteId(value.to_string()))
    }

    /// Checks `value` against the rule without keeping it (used per row,
    /// where no copy is wanted).
    pub fn check(value: &str) -> Result<(), SuiteIdError> {
        let mut len = 0;
        for (i, ch) in value.chars().enumerate() {
            len = i + 1;
            if i == 0 && !ch.is_ascii_alphanumeric() && is_punct(ch) {
                return Err(SuiteIdError::BadStart { ch });
            }
            if !ch.is_ascii_alphanumeric() && !is_punct(ch) {
                return Err(SuiteIdError::BadChar { ch, pos: i + 1 });
            }
            if len > Self::MAX_LEN {
                return Err(SuiteIdError::TooLong {
                    len: value.chars().count(),
                });
            }
        }
        if len == 0 {
            return Err(SuiteIdError::Empty);
        }
        Ok(())
    }

    /// The ID as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The ID as an owned string.
    pub fn into_string(self) -> String {
        self.0
    }
}

fn is_punct(ch: char) -> bool {
    matches!(ch, '.' | '-' | '_')
}

impl fmt::Display for ReportSuiteId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl FromStr for ReportSuiteId {
    type Err = SuiteIdError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        ReportSuiteId::parse(s)
    }
}

impl TryFrom<String> for ReportSuiteId {
    type Error = SuiteIdError;

    fn try_from(value: String) -> Result<Self, Self::Error> {
        ReportSuiteId::check(&value)?;
        Ok(ReportSuiteId(value))
    }
}

impl From<ReportSuiteId> for String {
    fn from(id: ReportSuiteId) -> String {
        id.0
    }
}

impl AsRef<str> for ReportSuiteId {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

impl std::borrow::Borrow<str> for ReportSuiteId {
    fn borrow(&self) -> &str {
        &self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_letters_digits_dot_dash_underscore() {
        for good in [
            "acme",
            "acme.prod",
            "acme-prod_eu.2",
            "ACMEprod",
            "9lives",
            "a",
            "a.",
            "a..b",
            &"x".repeat(ReportSuiteId::MAX_LEN),
        ] {
            let id = ReportSuiteId::parse(good).unwrap_or_else(|e| panic!("{good:?}: {e}"));
            assert_eq!(id.as_str(), good);
            assert_eq!(id.to_string(), good);
        }
    }

    #[test]
    fn refuses_everything_else_with_the_reason() {
        assert_eq!(ReportSuiteId::parse(""), Err(SuiteIdError::Empty));
        assert_eq!(
            ReportSuiteId::parse("acme@prod"),
            Err(SuiteIdError::BadChar { ch: '@', pos: 5 })
        );
        assert_eq!(
            ReportSuiteId::parse("acme:prod"),
            Err(SuiteIdError::BadChar { ch: ':', pos: 5 })
        );
        assert_eq!(
            ReportSuiteId::parse(" acme"),
            Err(SuiteIdError::BadChar { ch: ' ', pos: 1 })
        );
        assert_eq!(
            ReportSuiteId::parse("acmé"),
            Err(SuiteIdError::BadChar { ch: 'é', pos: 4 })
        );
        for (bad, ch) in [(".", '.'), ("..", '.'), ("_staging", '_'), ("-x", '-')] {
            assert_eq!(
                ReportSuiteId::parse(bad),
                Err(SuiteIdError::BadStart { ch }),
                "{bad:?}"
            );
        }
        for bad in ["a/b", "a=b", "a b", "a,b", "a\u{0}"] {
            assert!(
                matches!(
                    ReportSuiteId::parse(bad),
                    Err(SuiteIdError::BadChar { pos: 2, .. })
                ),
                "{bad:?}"
            );
        }
        let long = "x".repeat(ReportSuiteId::MAX_LEN + 5);
        assert_eq!(
            ReportSuiteId::parse(&long),
            Err(SuiteIdError::TooLong {
                len: ReportSuiteId::MAX_LEN + 5
            })
        );
    }

    #[test]
    fn messages_say_what_is_wrong() {
        let e = ReportSuiteId::parse("acme@prod").unwrap_err();
        assert_eq!(
            e.to_string(),
            "'@' at position 5 is not allowed (only letters, digits, '.', '-' and '_')"
        );
        let e = ReportSuiteId::parse("_x").unwrap_err();
        assert_eq!(
            e.to_string(),
            "starts with '_' (the first character must be a letter or a digit)"
        );
        assert_eq!(
            ReportSuiteId::parse(&"x".repeat(101))
                .unwrap_err()
                .to_string(),
            "101 characters long (at most 100)"
        );
    }

    #[test]
    fn every_constructor_applies_the_rule() {
        assert!("acme@prod".parse::<ReportSuiteId>().is_err());
        assert!(ReportSuiteId::try_from("acme@prod".to_string()).is_err());
        assert_eq!(
            "acme.prod".parse::<ReportSuiteId>().unwrap(),
            ReportSuiteId::parse("acme.prod").unwrap()
        );
        let id: ReportSuiteId = serde_json::from_str("\"acme.prod\"").unwrap();
        assert_eq!(serde_json::to_string(&id).unwrap(), "\"acme.prod\"");
        assert!(serde_json::from_str::<ReportSuiteId>("\"acme@prod\"").is_err());
    }
}
