//! The lifecycle of a file (spec 2.1): its wire spelling, its human text.
//!
//! `UPLOADED` -> `PROCESSING` -> `COMPLETE` or `ERROR`; `REJECTED` at
//! upload; `CANCELLED` when the group's waiting files are cancelled. The strings of [`FileStatus::as_str`] are the only spelling of
//! the lifecycle: JSON bodies, query strings and stored records use them.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// Lifecycle of a file (spec 2.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum FileStatus {
    /// Accepted, waiting to be processed.
    Uploaded,
    /// Refused as a whole at upload; nothing will be processed.
    Rejected,
    /// Being processed.
    Processing,
    /// Processed.
    Complete,
    /// Failed internally; needs an operator.
    Error,
    /// Cancelled while waiting (a group cancel); never processed.
    Cancelled,
}

/// A status name that is none of [`FileStatus::ALL`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown file status '{0}'")]
pub struct UnknownStatus(pub String);

impl FileStatus {
    /// Every status.
    pub const ALL: [FileStatus; 6] = [
        FileStatus::Uploaded,
        FileStatus::Rejected,
        FileStatus::Processing,
        FileStatus::Complete,
        FileStatus::Error,
        FileStatus::Cancelled,
    ];

    /// The wire spelling (`UPLOADED`...).
    pub fn as_str(self) -> &'static str {
        match self {
            FileStatus::Uploaded => "UPLOADED",
            FileStatus::Rejected => "REJECTED",
            FileStatus::Processing => "PROCESSING",
            FileStatus::Complete => "COMPLETE",
            FileStatus::Error => "ERROR",
            FileStatus::Cancelled => "CANCELLED",
        }
    }

    /// The human text of the status (a file record's `status`).
    pub fn text(self) -> &'static str {
        match self {
            FileStatus::Uploaded => "File uploaded successfully",
            FileStatus::Rejected => "File rejected",
            FileStatus::Processing => "File is being processed",
            FileStatus::Complete => "File processed",
            FileStatus::Error => "File processing failed",
            FileStatus::Cancelled => "File cancelled",
        }
    }

    /// True once nothing more will happen to the file without an operator
    /// (`COMPLETE`, `REJECTED`, `ERROR`, `CANCELLED`).
    pub fn is_final(self) -> bool {
        matches!(
            self,
            FileStatus::Complete | FileStatus::Rejected | FileStatus::Error | FileStatus::Cancelled
        )
    }
}

/// The wire spelling; honours width and alignment (`{:<10}`).
impl fmt::Display for FileStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(self.as_str())
    }
}

/// Parses a wire spelling, ignoring ASCII case.
impl FromStr for FileStatus {
    type Err = UnknownStatus;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        FileStatus::ALL
            .into_iter()
            .find(|st| st.as_str().eq_ignore_ascii_case(s))
            .ok_or_else(|| UnknownStatus(s.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn serde_display_and_from_str_agree() {
        for s in FileStatus::ALL {
            let json = serde_json::to_string(&s).unwrap();
            assert_eq!(json, format!("\"{}\"", s.as_str()));
            assert_eq!(s.to_string(), s.as_str());
            assert_eq!(format!("{s:<11}|"), format!("{:<11}|", s.as_str()));
            assert_eq!(serde_json::from_str::<FileStatus>(&json).unwrap(), s);
            assert_eq!(s.as_str().parse::<FileStatus>().unwrap(), s);
            assert_eq!(s.as_str().to_lowercase().parse::<FileStatus>().unwrap(), s);
        }
        assert_eq!(
            "DONE".parse::<FileStatus>(),
            Err(UnknownStatus("DONE".into()))
        );
        assert!(serde_json::from_str::<FileStatus>("\"uploaded\"").is_err());
    }

    #[test]
    fn final_statuses() {
        let finals: Vec<_> = FileStatus::ALL
            .into_iter()
            .filter(|s| s.is_final())
            .collect();
        assert_eq!(
            finals,
            [
                FileStatus::Rejected,
                FileStatus::Complete,
                FileStatus::Error,
                FileStatus::Cancelled
            ]
        );
    }
}
