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

/// Where a notification is in its life, without the details: what the outbox is listed
/// and counted by.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Stage {
    Pending,
    Claimed,
    Sent,
    Dead,
}

impl Stage {
    /// The name the store keeps it under.
    pub fn as_str(self) -> &'static str {
        match self {
            Stage::Pending => "pending",
            Stage::Claimed => "claimed",
            Stage::Sent => "sent",
            Stage::Dead => "dead",
        }
    }

    fn parse(name: &str) -> Option<Stage> {
        [Stage::Pending, Stage::Claimed, Stage::Sent, Stage::Dead]
            .into_iter()
            .find(|s| s.as_str() == name)
    }
}

/// How many notifications are at each stage. Serialized as before it was typed: a map
/// of the stages that have any.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct Counts {
    #[serde(skip_serializing_if = "is_zero")]
    pub pending: u64,
    #[serde(skip_serializing_if = "is_zero")]
    pub claimed: u64,
    #[serde(skip_serializing_if = "is_zero")]
    pub sent: u64,
    #[serde(skip_serializing_if = "is_zero")]
    pub dead: u64,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

impl Counts {
    /// Still to be delivered: pending, or claimed and in flight.
    pub fn open(&self) -> u64 {
        self.pending + self.claimed
    }

    /// Adds `n` notifications in the state the store names `state` (an unknown name
    /// counts nowhere).
    pub(super) fn add(&mut self, state: &str, n: u64) {
        match Stage::parse(state) {
            Some(Stage::Pending) => self.pending += n,
            Some(Stage::Claimed) => self.claimed += n,
            Some(Stage::Sent) => self.sent += n,
            Some(Stage::Dead) => self.dead += n,
            None => {}
        }
    }
}

impl State {
    pub fn stage(&self) -> Stage {
        match self {
            State::Pending { .. } => Stage::Pending,
            State::Claimed { .. } => Stage::Claimed,
            State::Sent { .. } => Stage::Sent,
            State::Dead { .. } => Stage::Dead,
        }
    }

    pub fn as_str(&self) -> &'static str {
        self.stage().as_str()
    }

    /// Rebuilds a state from the store's columns.
    pub fn from_row(
        state: &str,
        next_attempt_ms: i64,
        owner: Option<String>,
        claim_until_ms: Option<i64>,
        done_at: Option<i64>,
    ) -> Result<State, StoreError> {
        Ok(match Stage::parse(state) {
            Some(Stage::Pending) => State::Pending { next_attempt_ms },
            Some(Stage::Claimed) => State::Claimed {
                owner: owner.unwrap_or_default(),
                until_ms: claim_until_ms.unwrap_or(0),
            },
            Some(Stage::Sent) => State::Sent {
                at: done_at.unwrap_or(0),
            },
            Some(Stage::Dead) => State::Dead {
                at: done_at.unwrap_or(0),
            },
            None => {
                return Err(StoreError::Corrupt(format!(
                    "an outbox row is in an unknown state \"{state}\""
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_show_as_the_map_of_the_stages_that_have_any() {
        let mut counts = Counts::default();
        counts.add("pending", 2);
        counts.add("claimed", 1);
        counts.add("dead", 4);
        counts.add("lost", 7);
        assert_eq!(counts.open(), 3);
        assert_eq!(
            serde_json::to_value(counts).unwrap(),
            serde_json::json!({"pending": 2, "claimed": 1, "dead": 4})
        );
        assert_eq!(
            serde_json::to_value(Counts::default()).unwrap(),
            serde_json::json!({})
        );
        for stage in [Stage::Pending, Stage::Claimed, Stage::Sent, Stage::Dead] {
            assert_eq!(Stage::parse(stage.as_str()), Some(stage));
        }
    }
}
