//! The outbox: a notification's life as a state machine (docs/spec.md section 6).
//!
//! ```text
//! pending ──claim──▶ claimed(owner, lease) ──ack──▶ sent
//!    ▲                    │ │
//!    └──nack(retry at)────┘ └──kill──▶ dead
//! ```
//!
//! Only the process holding a row's claim sends it; a claim whose lease expired (its owner
//! died mid-send) is pending again, so the daemon and a manual `once`, or several daemons on
//! one PostgreSQL database, never send a row twice except the one in flight when its owner
//! died. Like Alertmanager's `nflog`, this module alone knows what was sent: [`Outbox`]
//! decides every transition (backoff, `retry_for`, permanent failures) and keeps, in memory,
//! any transition the store could not record: a receiver that accepted a message is never
//! sent it again because the store was locked when we tried to say so. The store backends
//! only execute the transitions; `deliver` is a thin loop over [`Outbox::claim`] and
//! [`Outbox::settle`].

use crate::clock::Clock;
use crate::host::hostname;
use crate::notify::SendError;
pub use crate::store::{Counts, Queued, Stage, State};
use crate::store::{Store, StoreError};
use std::sync::{Mutex, RwLock};
use std::time::Duration;

const FIRST_BACKOFF: Duration = Duration::from_secs(1);
const MAX_BACKOFF: Duration = Duration::from_secs(300);
/// A `Retry-After` longer than this is capped: a receiver cannot silence us for a day.
const MAX_RETRY_AFTER: Duration = Duration::from_secs(3600);

/// A transition the outbox decided after one send.
#[derive(Debug, Clone, PartialEq)]
pub enum Transition {
    /// Delivered: the receiver said so.
    Ack { id: i64, at: i64 },
    /// Failed, worth another try `retry_in_ms` from when it is recorded (by the store's
    /// clock: with PostgreSQL the database's, so a node's skew cannot move it).
    Nack {
        id: i64,
        retry_in_ms: i64,
        error: String,
    },
    /// Will never be delivered.
    Kill { id: i64, at: i64, error: String },
}

impl Transition {
    pub fn id(&self) -> i64 {
        match self {
            Transition::Ack { id, .. }
            | Transition::Nack { id, .. }
            | Transition::Kill { id, .. } => *id,
        }
    }
}

/// What one delivery pass did.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Tally {
    pub sent: usize,
    pub retrying: usize,
    pub dead: usize,
    /// `(channel, error)` of every failed attempt, for the command line.
    pub failures: Vec<(String, String)>,
}

impl Tally {
    pub fn add(&mut self, other: Tally) {
        self.sent += other.sent;
        self.retrying += other.retrying;
        self.dead += other.dead;
        self.failures.extend(other.failures);
    }
}

/// The delay before the next attempt, given `failures` so far (at least 1): exponential
/// from 1s, capped at 5m, with jitter, and never sooner than `Retry-After` asks.
pub fn backoff(failures: u32, retry_after: Option<Duration>) -> Duration {
    let exp = FIRST_BACKOFF.saturating_mul(1u32 << failures.saturating_sub(1).min(16));
    let capped = exp.min(MAX_BACKOFF);
    // Jitter in [capped/2, capped]: receivers recovering from an outage are not stampeded.
    let jittered = capped
        .mul_f64(0.5 + fastrand::f64() * 0.5)
        .max(FIRST_BACKOFF);
    match retry_after {
        Some(ra) => jittered.max(ra.min(MAX_RETRY_AFTER)),
        None => jittered,
    }
}

/// This process's view of the outbox: its claims and the transitions it owes the store.
pub struct Outbox {
    store: Store,
    /// Who claims: unique per process ("host/pid/random"), so a claim is never mistaken
    /// for another process's.
    owner: String,
    clock: Clock,
    /// `delivery.retry_for` and how long a claim holds; a reload changes them.
    limits: RwLock<Limits>,
    /// Transitions decided but not yet recorded (the store failed): retried before any
    /// new claim, and their rows are never sent again by this process.
    unrecorded: Mutex<Vec<Transition>>,
}

/// What the configuration says about a notification's life.
#[derive(Debug, Clone, Copy)]
struct Limits {
    retry_for: Duration,
    /// How long a claim holds: one send with its timeout, and then some.
    claim_for: Duration,
}

impl Limits {
    fn new(retry_for: Duration, send_timeout: Duration) -> Limits {
        Limits {
            retry_for,
            // One attempt is bounded by the send timeout (plus a second of pacing); the
            // rest is room to record the outcome. A crashed owner's row waits this long.
            claim_for: send_timeout + Duration::from_secs(10),
        }
    }
}

impl Outbox {
    pub fn new(store: Store, clock: Clock, retry_for: Duration, send_timeout: Duration) -> Self {
        let host = hostname();
        Outbox {
            store,
            owner: format!("{host}/{}/{:08x}", std::process::id(), fastrand::u32(..)),
            clock,
            limits: RwLock::new(Limits::new(retry_for, send_timeout)),
            unrecorded: Mutex::new(Vec::new()),
        }
    }

    /// Applies a reloaded `delivery.retry_for` and `delivery.timeout`.
    pub fn set_limits(&self, retry_for: Duration, send_timeout: Duration) {
        *self.limits.write().unwrap_or_else(|p| p.into_inner()) =
            Limits::new(retry_for, send_timeout);
    }

    fn limits(&self) -> Limits {
        *self.limits.read().unwrap_or_else(|p| p.into_inner())
    }

    pub fn owner(&self) -> &str {
        &self.owner
    }

    pub fn store(&self) -> &Store {
        &self.store
    }

    pub fn clock(&self) -> &Clock {
        &self.clock
    }

    /// Claims the next due notification of `channel`, if any. Transitions still owed to
    /// the store are recorded first; while that fails, nothing new is claimed.
    pub async fn claim(&self, channel: &str) -> Result<Option<Queued>, StoreError> {
        self.flush().await?;
        let now_ms = self.clock.now_ms();
        self.store
            .claim(
                &self.owner,
                channel,
                now_ms,
                self.limits().claim_for.as_millis() as i64,
            )
            .await
    }

    /// Whether this process still holds its claim on `q`, renewing it for one more send:
    /// asked just before sending, so a process that was paused or cut off past its claim
    /// (another has taken the row since) never sends it too.
    pub async fn confirm(&self, q: &Queued) -> Result<bool, StoreError> {
        let held = self
            .store
            .confirm_claim(
                q.id,
                &self.owner,
                self.clock.now_ms(),
                self.limits().claim_for.as_millis() as i64,
            )
            .await?;
        if !held {
            tracing::warn!(
                id = q.id,
                channel = %q.channel,
                "this process's claim on a notification expired before it could be sent; another process owns it now"
            );
        }
        Ok(held)
    }

    /// Records what became of a claimed notification, deciding the transition from the
    /// send's result: delivered, retried later (backoff, `Retry-After`), or dead
    /// (permanent failure, or older than `retry_for`). A transition the store cannot take
    /// now is kept and retried: the send itself is never repeated for it.
    pub async fn settle(
        &self,
        q: &Queued,
        result: &Result<String, SendError>,
        report: &mut Tally,
    ) -> Transition {
        let now = self.clock.now();
        let retry_for = self.limits().retry_for;
        let status = q.doc.status.as_str();
        let transition = match result {
            Ok(said) => {
                tracing::info!(channel = %q.channel, id = q.id, status, chats = q.doc.chats.len(), receiver = %said, "notification delivered");
                metrics::counter!("inbox_sla_notifications_total", "channel" => q.channel.clone(), "result" => "sent").increment(1);
                report.sent += 1;
                Transition::Ack { id: q.id, at: now }
            }
            Err(e) => {
                let reason = e.to_string();
                report.failures.push((q.channel.clone(), reason.clone()));
                let expired = now - q.created_at >= retry_for.as_secs() as i64;
                match e {
                    SendError::Retry { retry_after, .. } if !expired => {
                        let delay = backoff(q.attempts + 1, *retry_after);
                        tracing::warn!(channel = %q.channel, id = q.id, status, attempt = q.attempts + 1, retry_in = %crate::duration::format(delay), error = %reason, "delivery failed; will retry");
                        metrics::counter!("inbox_sla_notifications_total", "channel" => q.channel.clone(), "result" => "retry").increment(1);
                        report.retrying += 1;
                        Transition::Nack {
                            id: q.id,
                            retry_in_ms: delay.as_millis() as i64,
                            error: reason,
                        }
                    }
                    other => {
                        let why = match other {
                            SendError::Retry { .. } => format!(
                                "{reason} (giving up: undelivered for delivery.retry_for = {})",
                                crate::duration::format(retry_for)
                            ),
                            SendError::Permanent(_) => reason,
                        };
                        tracing::error!(channel = %q.channel, id = q.id, status, chats = q.doc.chats.len(), error = %why, "notification is dead: it will not be delivered");
                        metrics::counter!("inbox_sla_notifications_total", "channel" => q.channel.clone(), "result" => "dead").increment(1);
                        report.dead += 1;
                        Transition::Kill {
                            id: q.id,
                            at: now,
                            error: why,
                        }
                    }
                }
            }
        };
        if let Err(e) = self.record(&transition).await {
            tracing::error!(
                id = q.id,
                "the store could not record a delivery outcome ({e}); keeping it to record later, and not sending it again"
            );
            self.lock().push(transition.clone());
        }
        transition
    }

    /// Records every transition still owed; fails while the store does.
    pub async fn flush(&self) -> Result<(), StoreError> {
        let owed: Vec<Transition> = std::mem::take(&mut *self.lock());
        let mut left = Vec::new();
        let mut first_error = None;
        for t in owed {
            if first_error.is_some() {
                left.push(t);
                continue;
            }
            match self.record(&t).await {
                Ok(()) => tracing::info!(
                    id = t.id(),
                    "a delivery outcome kept in memory is recorded now"
                ),
                Err(e) => {
                    first_error = Some(e);
                    left.push(t);
                }
            }
        }
        self.lock().splice(0..0, left);
        match first_error {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }

    /// Transitions not yet recorded (for tests and shutdown logs).
    pub fn owed(&self) -> usize {
        self.lock().len()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<Transition>> {
        self.unrecorded.lock().unwrap_or_else(|p| p.into_inner())
    }

    async fn record(&self, t: &Transition) -> Result<(), StoreError> {
        let recorded = match t {
            Transition::Ack { id, at } => self.store.ack(*id, &self.owner, *at).await?,
            Transition::Nack {
                id,
                retry_in_ms,
                error,
            } => {
                let now_ms = self.clock.now_ms();
                self.store
                    .nack(*id, &self.owner, now_ms, *retry_in_ms, error)
                    .await?
            }
            Transition::Kill { id, at, error } => {
                self.store.kill(*id, Some(&self.owner), *at, error).await?
            }
        };
        if !recorded {
            // Our claim expired and another process took the row: it decides now.
            tracing::warn!(
                id = t.id(),
                "a claim expired before its outcome was recorded; another process owns the notification now"
            );
        }
        Ok(())
    }

    /// Marks dead the pending notifications of channels this configuration does not have,
    /// once they are older than `retry_for`. Only the daemon that owns the configuration
    /// calls this: a `once` run with another config must leave them alone.
    pub async fn kill_orphans(&self, known: &[String]) -> Result<Vec<(i64, String)>, StoreError> {
        let now = self.clock.now();
        let before = now - self.limits().retry_for.as_secs() as i64;
        self.store.kill_orphans(known, before, now).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_from_one_second_to_five_minutes() {
        for _ in 0..50 {
            let first = backoff(1, None);
            assert_eq!(first, Duration::from_secs(1), "{first:?}");
            let second = backoff(2, None);
            assert!(
                second >= Duration::from_secs(1) && second <= Duration::from_secs(2),
                "{second:?}"
            );
            let fourth = backoff(4, None);
            assert!(
                fourth >= Duration::from_secs(4) && fourth <= Duration::from_secs(8),
                "{fourth:?}"
            );
            let late = backoff(30, None);
            assert!(
                late >= Duration::from_secs(150) && late <= MAX_BACKOFF,
                "{late:?}"
            );
        }
        // The jitter spreads: not every delay is the cap.
        let spread: std::collections::HashSet<u128> =
            (0..50).map(|_| backoff(12, None).as_millis()).collect();
        assert!(spread.len() > 10);
    }

    #[test]
    fn retry_after_is_honoured_up_to_an_hour() {
        assert!(backoff(1, Some(Duration::from_secs(30))) >= Duration::from_secs(30));
        assert_eq!(
            backoff(1, Some(Duration::from_secs(86400))),
            MAX_RETRY_AFTER
        );
    }

    #[test]
    fn states_round_trip_through_their_columns() {
        let cases = [
            State::Pending { next_attempt_ms: 5 },
            State::Claimed {
                owner: "a/1/x".into(),
                until_ms: 9,
            },
            State::Sent { at: 3 },
            State::Dead { at: 4 },
        ];
        for s in cases {
            let (next, owner, until, done) = match &s {
                State::Pending { next_attempt_ms } => (*next_attempt_ms, None, None, None),
                State::Claimed { owner, until_ms } => {
                    (0, Some(owner.clone()), Some(*until_ms), None)
                }
                State::Sent { at } | State::Dead { at } => (0, None, None, Some(*at)),
            };
            assert_eq!(
                State::from_row(s.as_str(), next, owner, until, done).unwrap(),
                s
            );
        }
        assert!(State::from_row("lost", 0, None, None, None).is_err());
        assert!(State::Pending { next_attempt_ms: 0 }.is_open());
        assert!(!State::Sent { at: 0 }.is_open());
    }
}
