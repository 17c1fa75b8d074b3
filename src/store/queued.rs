//! A notification as the outbox table keeps it: its document and where it is in its life.
//! The store reads and writes these; `outbox` decides every transition.

use super::StoreError;
use crate::alert::AlertDoc;

/// Where a notification is in its life.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum State {
    /// Waiting to be sent, not before `next_attempt_ms`.
    Pending {
        next_attempt_ms: i64,
    },
    /// Being sent by `owner`; pending again once `until_ms` passes.
    Claimed {
        owner: String,
        until_ms: i64,
    },
    Sent {
        at: i64,
    },
    Dead {
        at: i64,
    },
}

/// The names the store keeps states under.
pub const PENDING: &str = "pending";
pub const CLAIMED: &str = "claimed";
pub const SENT: &str = "sent";
pub const DEAD: &str = "dead";

impl State {
    pub fn as_str(&self) -> &'static str {
        match self {
            State::Pending { .. } => PENDING,
            State::Claimed { .. } => CLAIMED,
            State::Sent { .. } => SENT,
            State::Dead { .. } => DEAD,
        }
    }

    /// Rebuilds a state from the store's columns.
    pub fn from_row(
        state: &str,
        next_attempt_ms: i64,
        owner: Option<String>,
        claim_until_ms: Option<i64>,
        done_at: Option<i64>,
    ) -> Result<State, StoreError> {
        Ok(match state {
            PENDING => State::Pending { next_attempt_ms },
            CLAIMED => State::Claimed {
                owner: owner.unwrap_or_default(),
                until_ms: claim_until_ms.unwrap_or(0),
            },
            SENT => State::Sent {
                at: done_at.unwrap_or(0),
            },
            DEAD => State::Dead {
                at: done_at.unwrap_or(0),
            },
            other => {
                return Err(StoreError::Corrupt(format!(
                    "an outbox row is in an unknown state \"{other}\""
                )));
            }
        })
    }

    /// Whether it is still to be delivered (pending, or claimed and in flight).
    pub fn is_open(&self) -> bool {
        matches!(self, State::Pending { .. } | State::Claimed { .. })
    }
}

/// A notification in (or done with) the outbox.
#[derive(Debug, Clone)]
pub struct Queued {
    pub id: i64,
    pub created_at: i64,
    pub instance: String,
    pub channel: String,
    pub doc: AlertDoc,
    /// Failed attempts so far.
    pub attempts: u32,
    pub state: State,
    pub last_error: Option<String>,
}
