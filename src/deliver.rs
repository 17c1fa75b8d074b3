//! Delivery: a thin loop over the outbox. Claim the next due notification of a channel,
//! send it through `notify`, let `outbox` settle what became of it; stop at the first
//! retryable failure, so a struggling receiver is not hammered and later notifications
//! wait their turn. Each channel drains on its own task, so a slow receiver never holds up
//! another channel. What to do after a failure (backoff, dead letters) is `outbox`'s call.

use crate::alert::AlertDoc;
use crate::notify::{Channel, Channels, SendError};
use crate::outbox::{Outbox, Tally};
use crate::store::StoreError;
use std::future::Future;
use std::sync::Arc;

/// What delivery sends through: a configured [`Channel`], or, in the simulator, a
/// receiver of its own with the failures it wants.
pub trait Deliver {
    fn send(&self, doc: &AlertDoc) -> impl Future<Output = Result<String, SendError>> + Send;
}

impl Deliver for Channel {
    fn send(&self, doc: &AlertDoc) -> impl Future<Output = Result<String, SendError>> + Send {
        Channel::send(self, doc)
    }
}

/// Sends `channel`'s due notifications, oldest first, until none is due or one fails
/// in a way worth retrying later.
pub async fn drain_channel(
    outbox: &Outbox,
    name: &str,
    channel: &impl Deliver,
) -> Result<Tally, StoreError> {
    let mut report = Tally::default();
    while let Some(q) = outbox.claim(name).await? {
        if !outbox.confirm(&q).await? {
            continue;
        }
        let result = channel.send(&q.doc).await;
        let blocked = matches!(result, Err(SendError::Retry { .. }));
        outbox.settle(&q, &result, &mut report).await;
        if blocked {
            break;
        }
    }
    Ok(report)
}

/// One pass over every channel at once (what `once` does after its cycle). A channel whose
/// store calls fail reports the error; the others carry on.
pub async fn deliver_due(outbox: &Arc<Outbox>, channels: &Channels) -> Result<Tally, StoreError> {
    let mut tasks = tokio::task::JoinSet::new();
    for (name, channel) in channels.iter() {
        let (outbox, name, channel) = (outbox.clone(), name.clone(), channel.clone());
        tasks.spawn(async move { drain_channel(&outbox, &name, channel.as_ref()).await });
    }
    let mut total = Tally::default();
    let mut first_error = None;
    while let Some(joined) = tasks.join_next().await {
        match joined {
            Ok(Ok(report)) => total.add(report),
            Ok(Err(e)) => {
                first_error.get_or_insert(e);
            }
            Err(e) => tracing::error!(error = %e, "a delivery task failed"),
        }
    }
    match first_error {
        Some(e) => Err(e),
        None => Ok(total),
    }
}

/// Re-sends to an Alertmanager channel what it must not forget (see [`alertmanager_batch`]).
pub async fn refresh_alertmanager(
    store: &crate::store::Store,
    channel: &str,
    am: &crate::notify::alertmanager::Alertmanager,
    policy: &crate::policy::Policy,
    now: i64,
    polled_here: impl Fn(&str) -> bool,
) -> Result<(usize, String), String> {
    let alerts = alertmanager_batch(store, channel, am, policy, now, polled_here).await?;
    let n = alerts.len();
    let said = am
        .post(&serde_json::Value::Array(alerts))
        .await
        .map_err(|e| e.to_string())?;
    Ok((n, said))
}

/// What an Alertmanager channel must be told again now: an alert for every open episode
/// this channel was told about, and, resolved, those that ended in the last five minutes;
/// and the monitor's own alert for every instance that is blind now (a blind alert that
/// is not re-sent would end in Alertmanager while polling still fails). Read from the
/// store, so a restart loses nothing. `polled_here` keeps a node to the instances it
/// watches and holds (the peers deduplicate anyway; this halves the load).
pub async fn alertmanager_batch(
    store: &crate::store::Store,
    channel: &str,
    am: &crate::notify::alertmanager::Alertmanager,
    policy: &crate::policy::Policy,
    now: i64,
    polled_here: impl Fn(&str) -> bool,
) -> Result<Vec<serde_json::Value>, String> {
    use crate::alert::{AlertChat, AlertDoc, Status, utc_time};
    use crate::notify::alertmanager::Waiting;
    let open = store.all_episodes().await.map_err(|e| e.to_string())?;
    let sources = store.sources().await.map_err(|e| e.to_string())?;
    let ended = store
        .history(now - am.resolved_for(), None)
        .await
        .map_err(|e| e.to_string())?;
    let mut alerts = Vec::new();
    for (instance, ep) in open
        .iter()
        .filter(|(i, e)| polled_here(i) && e.notified.iter().any(|n| n == channel))
    {
        let chat = AlertChat::waiting(ep, policy, now);
        alerts.push(am.alert(
            &Waiting {
                instance,
                chat: &chat,
                ended_at: None,
            },
            now,
        ));
    }
    // A chat read between two polls may have ended one episode and fired the next with the
    // same labels: Alertmanager knows them as one alert, and the firing one wins.
    let firing: std::collections::HashSet<String> =
        alerts.iter().map(|a| a["labels"].to_string()).collect();
    for p in ended
        .iter()
        .filter(|p| polled_here(&p.instance) && p.notified.iter().any(|n| n == channel))
    {
        // The acknowledgement history kept stays on the resolved alert too.
        let chat = AlertChat {
            acknowledged_by: p.acked_by.clone(),
            acknowledged_at: p.acked_at,
            ..AlertChat::ended(
                &p.jid,
                p.name.as_deref(),
                p.started_at,
                p.wall_seconds,
                p.business_seconds,
                &p.fired,
            )
        };
        let alert = am.alert(
            &Waiting {
                instance: &p.instance,
                chat: &chat,
                ended_at: Some(p.ended_at),
            },
            now,
        );
        if !firing.contains(&alert["labels"].to_string()) {
            alerts.push(alert);
        }
    }
    for (instance, source) in sources.iter().filter(|(i, s)| s.blind && polled_here(i)) {
        let message = format!(
            "Polling has failed since {}; last error: {}",
            utc_time(source.failing_since.unwrap_or(now)),
            source.last_error.as_deref().unwrap_or("unknown")
        );
        alerts.extend(am.alerts_for(
            &AlertDoc {
                version: 1,
                status: Status::Blind,
                instance: instance.clone(),
                tier: None,
                sent_at: now,
                chats: Vec::new(),
                message: Some(message),
            },
            now,
        ));
    }
    Ok(alerts)
}
