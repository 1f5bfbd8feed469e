//! The JSON bodies of the bdia HTTP API, defined once.
//!
//! The server serializes these types and the client deserializes the same
//! types, so a field added, renamed or retyped on one side is a compile
//! error or a failing round-trip test on the other, never silent drift.
//!
//! Invariants:
//!
//! - Field names and values are the API's (docs/API.md, `/openapi.json`):
//!   changes are additive only. The server's OpenAPI document is checked
//!   against these types (a test in `bdia-server`).
//! - A required field missing from a body is a decoding error. Fields that
//!   may be absent are `Option` and skipped when `None`; fields that the
//!   server sends as `null` are `Option` without a skip.
//! - The lifecycle of a file is spelled once, by [`FileStatus`]; every other
//!   place (store, engine, client, tools) uses the enum.
//! - No I/O here: serde types and pure helpers only.

mod error;
mod file;
mod group;
mod health;
mod privacy;
mod report;
mod status;
pub mod time;
mod token;

pub use error::ErrorBody;
pub use file::{FileList, FileRecord, Preview, RetryAnswer, SuiteDayRows, Validation};
pub use group::{
    GroupAction, GroupActionRecord, GroupError, GroupState, GroupView, QueuePosition, QueueState,
};
pub use health::{Readiness, Usage};
pub use privacy::{IdentifierType, PrivacyDeletion, PrivacyDeletionList, PrivacyDeletionRequest};
pub use report::{
    EvarSetting, Group, Groups, JsonObject, Report, ReportQuery, ReportSuite, ReportSuites,
    SuiteSettings,
};
pub use status::{FileStatus, UnknownStatus};
pub use token::AccessToken;
