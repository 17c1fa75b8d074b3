//! The outbox worker: takes due notifications from the store and sends them.
//!
//! Delivery is at least once (PRODUCT.md section 6): a notification is marked sent only
//! after its receiver accepted it. Retryable failures back off exponentially from 1s to
//! 5m with jitter, honouring `Retry-After`; permanent failures and notifications older
//! than `delivery.retry_for` are dead, logged at error level and kept for `alerts`.
//! Each channel drains its own queue, so a slow receiver never holds up another channel.

use crate::notify::{Channel, Channels, SendError};
use crate::store::{Queued, StoreError, StoreHandle};
use std::time::Duration;

const FIRST_BACKOFF: Duration = Duration::from_secs(1);
const MAX_BACKOFF: Duration = Duration::from_secs(300);
/// Notifications taken from the store per pass.
const BATCH: usize = 500;

/// What one pass over the outbox did.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Report {
    pub sent: usize,
    pub retrying: usize,
    pub dead: usize,
    /// `(channel, error)` of every failed attempt, for the command line.
    pub failures: Vec<(String, String)>,
}

/// A clock in Unix milliseconds; the demo and tests pass their own.
pub type Clock = std::sync::Arc<dyn Fn() -> i64 + Send + Sync>;

/// The real clock.
pub fn system_clock() -> Clock {
    std::sync::Arc::new(|| chrono::Utc::now().timestamp_millis())
}

/// The delay before attempt `attempts + 1`, given `attempts` failures so far.
pub fn backoff(attempts: u32, retry_after: Option<Duration>) -> Duration {
    let exp = FIRST_BACKOFF.saturating_mul(1u32 << attempts.saturating_sub(1).min(16));
    let capped = exp.min(MAX_BACKOFF);
    // Jitter in [capped/2, capped]: receivers recovering from an outage are not stampeded.
    let jittered = capped
        .mul_f64(0.5 + fastrand::f64() * 0.5)
        .max(FIRST_BACKOFF);
    match retry_after {
        Some(ra) => jittered.max(ra.min(Duration::from_secs(3600))),
        None => jittered,
    }
}

/// Sends every due notification once: channels concurrently, each in order. Notifications
/// for channels that are no longer configured are marked dead.
pub async fn deliver_due(
    store: &StoreHandle,
    channels: &Channels,
    retry_for: Duration,
    clock: &Clock,
) -> Result<Report, StoreError> {
    let mut total = Report::default();
    let names: Vec<String> = channels.keys().cloned().collect();
    let now = clock() / 1000;
    for (id, channel) in store.call(move |s| s.kill_orphans(&names, now)).await? {
        tracing::error!(id, channel = %channel, "notification is dead: its channel is no longer configured");
        total.dead += 1;
        total
            .failures
            .push((channel, "no longer configured".into()));
    }
    let mut tasks = tokio::task::JoinSet::new();
    for (name, channel) in channels.iter() {
        let (store, clock, name, channel) =
            (store.clone(), clock.clone(), name.clone(), channel.clone());
        tasks.spawn(
            async move { deliver_channel(&store, &name, &channel, retry_for, &clock).await },
        );
    }
    while let Some(joined) = tasks.join_next().await {
        let report = match joined {
            Ok(r) => r?,
            Err(e) => {
                tracing::error!(error = %e, "a delivery task failed");
                continue;
            }
        };
        total.sent += report.sent;
        total.retrying += report.retrying;
        total.dead += report.dead;
        total.failures.extend(report.failures);
    }
    Ok(total)
}

/// Sends one channel's due notifications in order. Stops at the first retryable failure:
/// a struggling receiver is not hammered, and order is kept.
pub async fn deliver_channel(
    store: &StoreHandle,
    name: &str,
    channel: &Channel,
    retry_for: Duration,
    clock: &Clock,
) -> Result<Report, StoreError> {
    let mut report = Report::default();
    loop {
        let now_ms = clock();
        let owned = name.to_string();
        let due = store.call(move |s| s.due(&owned, now_ms, BATCH)).await?;
        let full_batch = due.len() == BATCH;
        for q in due {
            let result = channel.send(&q.doc).await;
            let blocked = matches!(result, Err(SendError::Retry { .. }));
            record(store, &q, result, retry_for, clock, &mut report).await?;
            if blocked {
                return Ok(report);
            }
        }
        if !full_batch {
            return Ok(report);
        }
    }
}

async fn record(
    store: &StoreHandle,
    q: &Queued,
    result: Result<String, SendError>,
    retry_for: Duration,
    clock: &Clock,
    report: &mut Report,
) -> Result<(), StoreError> {
    let now_ms = clock();
    let now = now_ms / 1000;
    let id = q.id;
    let status = q.doc.status.as_str();
    match result {
        Ok(said) => {
            store.call(move |s| s.mark_sent(id, now)).await?;
            tracing::info!(channel = %q.channel, id, status, chats = q.doc.chats.len(), receiver = %said, "notification delivered");
            metrics::counter!("inbox_sla_notifications_total", "channel" => q.channel.clone(), "result" => "sent").increment(1);
            report.sent += 1;
        }
        Err(e) => {
            let expired = now - q.created_at >= retry_for.as_secs() as i64;
            let reason = e.to_string();
            report.failures.push((q.channel.clone(), reason.clone()));
            match e {
                SendError::Retry { retry_after, .. } if !expired => {
                    let delay = backoff(q.attempts + 1, retry_after);
                    let next = now_ms + delay.as_millis() as i64;
                    let r = reason.clone();
                    store.call(move |s| s.reschedule(id, next, &r)).await?;
                    tracing::warn!(channel = %q.channel, id, status, attempt = q.attempts + 1, retry_in = %humantime::format_duration(Duration::from_secs(delay.as_secs())), error = %reason, "delivery failed; will retry");
                    metrics::counter!("inbox_sla_notifications_total", "channel" => q.channel.clone(), "result" => "retry").increment(1);
                    report.retrying += 1;
                }
                other => {
                    let why = match other {
                        SendError::Retry { .. } => format!(
                            "{reason} (giving up: undelivered for delivery.retry_for = {})",
                            humantime::format_duration(retry_for)
                        ),
                        SendError::Permanent(_) => reason.clone(),
                    };
                    let w = why.clone();
                    store.call(move |s| s.mark_dead(id, now, &w)).await?;
                    tracing::error!(channel = %q.channel, id, status, chats = q.doc.chats.len(), error = %why, "notification is dead: it will not be delivered");
                    metrics::counter!("inbox_sla_notifications_total", "channel" => q.channel.clone(), "result" => "dead").increment(1);
                    report.dead += 1;
                }
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_from_one_second_to_five_minutes() {
        for _ in 0..50 {
            let first = backoff(1, None);
            assert!(
                first >= Duration::from_millis(1000) && first <= Duration::from_secs(1),
                "{first:?}"
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
    }

    #[test]
    fn retry_after_is_honoured() {
        assert!(backoff(1, Some(Duration::from_secs(30))) >= Duration::from_secs(30));
    }
}
