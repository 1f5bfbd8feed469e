//! Errors of a report.

use bdia_lake::LakeError;

/// What a report can fail with.
#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    /// The request is wrong (an HTTP 400): a stable `code` and a message
    /// naming the offending value.
    #[error("{message}")]
    Invalid {
        /// `invalid_metric`, `invalid_dimension`, `invalid_date`,
        /// `invalid_range`, `invalid_limit` or `invalid_time_zone`.
        code: &'static str,
        /// What is wrong, for the caller.
        message: String,
    },
    /// Listing the lake failed.
    #[error("lake: {0}")]
    Lake(#[from] LakeError),
    /// The query engine failed.
    #[error("query: {0}")]
    Query(#[from] datafusion::error::DataFusionError),
}

impl ReportError {
    pub(crate) fn invalid(code: &'static str, message: impl Into<String>) -> ReportError {
        ReportError::Invalid {
            code,
            message: message.into(),
        }
    }

    /// Stable snake_case code (a metric label).
    pub fn code(&self) -> &'static str {
        match self {
            ReportError::Invalid { code, .. } => code,
            ReportError::Lake(_) => "lake",
            ReportError::Query(e) if is_exhausted(e) => "memory_limit",
            ReportError::Query(_) => "query",
        }
    }

    /// True when the query needed more memory than the engine's memory
    /// limit ([`crate::ReportEngine::with_memory_limit`]) allows.
    pub fn is_memory_limit(&self) -> bool {
        matches!(self, ReportError::Query(e) if is_exhausted(e))
    }
}

fn is_exhausted(e: &datafusion::error::DataFusionError) -> bool {
    matches!(
        e.find_root(),
        datafusion::error::DataFusionError::ResourcesExhausted(_)
    )
}
