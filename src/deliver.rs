//! Delivery: a thin loop over the outbox. Claim the next due notification of a channel,
//! send it through `notify`, let `outbox` settle what became of it; stop at the first
//! retryable failure, so a struggling receiver is not hammered and later notifications
//! wait their turn. Each channel drains on its own task, so a slow receiver never holds up
//! another channel. What to do after a failure (backoff, dead letters) is `outbox`'s call.

use crate::notify::{Channel, Channels, SendError};
use crate::outbox::{Outbox, Report};
use crate::store::StoreError;
use std::sync::Arc;

/// Sends `channel`'s due notifications, oldest first, until none is due or one fails
/// in a way worth retrying later.
pub async fn drain_channel(
    outbox: &Outbox,
    name: &str,
    channel: &Channel,
) -> Result<Report, StoreError> {
    let mut report = Report::default();
    while let Some(q) = outbox.claim(name).await? {
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
pub async fn deliver_due(outbox: &Arc<Outbox>, channels: &Channels) -> Result<Report, StoreError> {
    let mut tasks = tokio::task::JoinSet::new();
    for (name, channel) in channels.iter() {
        let (outbox, name, channel) = (outbox.clone(), name.clone(), channel.clone());
        tasks.spawn(async move { drain_channel(&outbox, &name, &channel).await });
    }
    let mut total = Report::default();
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
