//! Visitor-group control: the state of a group (`active` or `paused`), the
//! actions taken on it, the group view of `GET /aa/collect/v1/groups/{vgid}`
//! and the queue position of a waiting file.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::FileRecord;

/// Whether a group's waiting files may start processing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum GroupState {
    /// Files are processed in order (the state of every group at first).
    Active,
    /// Uploads are accepted and stored; none starts processing.
    Paused,
}

impl GroupState {
    /// The wire spelling (`active`, `paused`).
    pub fn as_str(self) -> &'static str {
        match self {
            GroupState::Active => "active",
            GroupState::Paused => "paused",
        }
    }
}

impl fmt::Display for GroupState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(self.as_str())
    }
}

/// An operator's action on a group.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum GroupAction {
    /// Hold the group: no file of it starts processing.
    Pause,
    /// Let the group run again.
    Resume,
    /// The group's waiting files become `CANCELLED`; the group runs again.
    Cancel,
}

impl GroupAction {
    /// Every action.
    pub const ALL: [GroupAction; 3] =
        [GroupAction::Pause, GroupAction::Resume, GroupAction::Cancel];

    /// The wire spelling (`pause`, `resume`, `cancel`), also the last
    /// segment of the action's URL.
    pub fn as_str(self) -> &'static str {
        match self {
            GroupAction::Pause => "pause",
            GroupAction::Resume => "resume",
            GroupAction::Cancel => "cancel",
        }
    }

    /// The state a group is in after the action.
    pub fn state_after(self) -> GroupState {
        match self {
            GroupAction::Pause => GroupState::Paused,
            GroupAction::Resume | GroupAction::Cancel => GroupState::Active,
        }
    }
}

impl fmt::Display for GroupAction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(self.as_str())
    }
}

/// An action name that is none of [`GroupAction::ALL`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown group action '{0}' (pause, resume or cancel)")]
pub struct UnknownAction(pub String);

impl FromStr for GroupAction {
    type Err = UnknownAction;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        GroupAction::ALL
            .into_iter()
            .find(|a| a.as_str().eq_ignore_ascii_case(s))
            .ok_or_else(|| UnknownAction(s.to_string()))
    }
}

/// One recorded action on a group.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GroupActionRecord {
    /// What was done.
    pub action: GroupAction,
    /// Who: the API client id, or `admin` for `bdia admin`.
    pub actor: String,
    /// Unix seconds.
    pub at: i64,
    /// Files the action changed (files cancelled; 0 for pause and resume).
    pub files: u64,
}

/// The last failure of a group: its latest `ERROR` file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GroupError {
    /// The failed file.
    pub file_id: String,
    /// Why it failed.
    pub error: Option<String>,
    /// Stable code of `error`.
    pub error_code: Option<String>,
    /// Unix seconds when it failed.
    pub at: Option<i64>,
}

/// The answer of `GET /aa/collect/v1/groups/{vgid}` and of the group
/// actions.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GroupView {
    /// The visitor group.
    pub visitor_group_id: String,
    /// `active` or `paused`.
    pub state: GroupState,
    /// Files waiting (`UPLOADED`).
    pub files_waiting: u64,
    /// Rows of the waiting files.
    pub rows_waiting: u64,
    /// The file being processed, null when none.
    pub in_progress: Option<FileRecord>,
    /// The group's latest `ERROR` file, null when none.
    pub last_error: Option<GroupError>,
    /// The actions taken on the group, oldest first (the latest ones).
    pub actions: Vec<GroupActionRecord>,
}

/// Whether a waiting file's queue moves.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum QueueState {
    /// The group runs; the estimate holds while it does.
    Waiting,
    /// The group is paused: no estimate.
    Paused,
    /// The group is stopped by an `ERROR` file until it is retried or
    /// cancelled: no estimate.
    Stopped,
}

impl QueueState {
    /// The wire spelling (`waiting`, `paused`, `stopped`).
    pub fn as_str(self) -> &'static str {
        match self {
            QueueState::Waiting => "waiting",
            QueueState::Paused => "paused",
            QueueState::Stopped => "stopped",
        }
    }
}

/// Where a waiting file stands in its group's queue (flattened into its
/// [`FileRecord`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct QueuePosition {
    /// Files of the group that run before it (waiting with a lower
    /// sequence, or being processed).
    pub files_ahead: u64,
    /// Rows of those files.
    pub rows_ahead: u64,
    /// When it should start (RFC 3339); null without an estimate.
    pub estimated_start: Option<String>,
    /// When it should be processed (RFC 3339); null without an estimate.
    pub estimated_finish: Option<String>,
    /// Whether the queue moves.
    pub queue_state: QueueState,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn actions_parse_and_print() {
        for a in GroupAction::ALL {
            assert_eq!(a.as_str().parse::<GroupAction>().unwrap(), a);
            assert_eq!(serde_json::to_string(&a).unwrap(), format!("\"{a}\""));
        }
        assert!("stop".parse::<GroupAction>().is_err());
        assert_eq!(GroupAction::Cancel.state_after(), GroupState::Active);
    }

    #[test]
    fn group_view_round_trips() {
        let v = GroupView {
            visitor_group_id: "g".into(),
            state: GroupState::Paused,
            files_waiting: 2,
            rows_waiting: 10,
            in_progress: None,
            last_error: None,
            actions: vec![GroupActionRecord {
                action: GroupAction::Pause,
                actor: "admin".into(),
                at: 5,
                files: 0,
            }],
        };
        let json = serde_json::to_string(&v).unwrap();
        assert!(json.contains(r#""state":"paused""#), "{json}");
        assert_eq!(serde_json::from_str::<GroupView>(&json).unwrap(), v);
    }
}
