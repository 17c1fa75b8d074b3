//! One cycle for one instance: poll, evaluate, record (PRODUCT.md sections 2 and 6).
//!
//! The shell around the pure engine: fetch the overview (`wawp`), load the open episodes
//! and mutes (`store`), evaluate (`sla`), digest the events (`alert`), and commit episode
//! changes and notifications in one transaction. It also keeps each instance's polling
//! health for the "monitor blind" alert. It does not send anything: `deliver` does.

use crate::alert::{self, AlertDoc, Outgoing, Status};
use crate::config::{Config, Instance};
use crate::sla::{self, Evaluation, EventKind};
use crate::store::{Snapshot, SourceState, StoreError, StoreHandle};
use crate::wawp::{PollError, WawpClient};
use std::sync::Arc;
use std::time::Instant;

#[derive(Debug, thiserror::Error)]
pub enum CycleError {
    #[error(transparent)]
    Poll(#[from] PollError),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// What one cycle saw and did, for logs, `STATUS=` and metrics.
#[derive(Debug, Clone, Default)]
pub struct Summary {
    pub instance: String,
    pub chats: usize,
    pub complete: bool,
    pub waiting: usize,
    pub breached: usize,
    /// Chat-tier escalations (and repeats) this cycle.
    pub escalated: usize,
    pub resolved: usize,
    /// Notifications enqueued.
    pub enqueued: usize,
    pub rows_written: u64,
    pub bytes: u64,
    pub poll_seconds: f64,
}

/// A cycle's decisions before anything is written (what `once --dry-run` prints).
pub struct Plan {
    pub summary: Summary,
    pub eval: Evaluation,
    pub outgoing: Vec<Outgoing>,
    /// The store generation the plan was made from; the commit checks it.
    pub generation: i64,
}

/// Polls and evaluates without writing.
pub async fn plan(
    client: &WawpClient,
    store: Option<&StoreHandle>,
    config: &Arc<Config>,
    instance: &Instance,
    now: i64,
) -> Result<Plan, CycleError> {
    // The store read does not depend on the overview: it runs while the fetch waits on the
    // network, so a warm cycle costs little more than the fetch itself.
    let load = async {
        match store {
            Some(store) => {
                let name = instance.name.clone();
                store.call(move |s| s.snapshot(&name, now)).await
            }
            None => Ok(Snapshot::default()),
        }
    };
    let fetch = async {
        let started = Instant::now();
        let fetched = client.overview(instance).await;
        (fetched, started.elapsed().as_secs_f64())
    };
    let (loaded, (fetched, poll_seconds)) = tokio::join!(load, fetch);
    let fetched = fetched?;
    let Snapshot {
        episodes,
        mutes,
        generation,
    } = loaded?;
    for note in &fetched.notes {
        tracing::warn!(instance = %instance.name, "overview incomplete: {note}");
    }
    let config2 = config.clone();
    let chats = fetched.chats;
    let complete = fetched.complete;
    // The engine is CPU work over possibly 100k chats: keep it off the async workers.
    let (eval, chat_count) = tokio::task::spawn_blocking(move || {
        let eval = sla::evaluate(&episodes, &chats, complete, &mutes, &config2.policy, now);
        let count = chats.len();
        // Freeing 100k parsed chats takes longer than evaluating them; nothing waits on it.
        // (If no thread can be had, the closure and its data are simply freed here.)
        let _ = std::thread::Builder::new()
            .name("free-overview".into())
            .spawn(move || drop((chats, episodes)));
        (eval, count)
    })
    .await
    .map_err(|e| StoreError::Open {
        path: "(engine)".into(),
        message: format!("evaluation task failed: {e}"),
    })?;
    let outgoing = alert::digest(&instance.name, &eval.events, now);
    let summary = Summary {
        instance: instance.name.clone(),
        chats: chat_count,
        complete,
        waiting: eval.waiting,
        breached: eval.breached,
        escalated: eval
            .events
            .iter()
            .filter(|e| matches!(e.kind, EventKind::Firing { .. }))
            .count(),
        resolved: eval
            .events
            .iter()
            .filter(|e| matches!(e.kind, EventKind::Resolved { .. }))
            .count(),
        enqueued: outgoing.len(),
        rows_written: 0,
        bytes: fetched.bytes,
        poll_seconds,
    };
    Ok(Plan {
        summary,
        eval,
        outgoing,
        generation,
    })
}

/// Polls, evaluates and commits one instance's cycle. Polling failures are recorded for
/// the blind monitor before they are returned.
pub async fn run(
    client: &WawpClient,
    store: &StoreHandle,
    config: &Arc<Config>,
    instance: &Instance,
    now: i64,
) -> Result<Summary, CycleError> {
    match plan(client, Some(store), config, instance, now).await {
        Ok(plan) => commit(store, config, &instance.name, plan, now).await,
        Err(CycleError::Poll(e)) => {
            source_failed(store, config, &instance.name, &e, now).await?;
            Err(CycleError::Poll(e))
        }
        Err(e) => Err(e),
    }
}

/// Commits a plan made from `store`: fails with a conflict, writing nothing, if another
/// writer committed for the instance since the plan read it.
pub async fn commit(
    store: &StoreHandle,
    config: &Arc<Config>,
    instance: &str,
    plan: Plan,
    now: i64,
) -> Result<Summary, CycleError> {
    let Plan {
        mut summary,
        eval,
        outgoing,
        generation,
    } = plan;
    let recovered = source_ok(store, config, instance, now).await?;
    let name = instance.to_string();
    summary.rows_written = store
        .call(move |s| s.commit_cycle(&name, generation, &eval, &outgoing, now))
        .await?;
    if recovered {
        summary.enqueued += config.channels.len();
    }
    Ok(summary)
}

/// Records a failed poll; after `blind_after` of continuous failure, enqueues one `blind`
/// alert to every channel.
async fn source_failed(
    store: &StoreHandle,
    config: &Arc<Config>,
    instance: &str,
    error: &PollError,
    now: i64,
) -> Result<(), StoreError> {
    let name = instance.to_string();
    let prev = store.call(move |s| s.source(&name)).await?;
    let since = prev.failing_since.unwrap_or(now);
    let label = error.label();
    let mut next = SourceState {
        failing_since: Some(since),
        last_error: Some(label),
        blind: prev.blind,
    };
    let mut outgoing = Vec::new();
    if !prev.blind && now - since >= config.sla.blind_after.as_secs() as i64 {
        next.blind = true;
        let message = format!(
            "Polling has failed for {} (sla.blind_after = {}); waiting customers are not being watched. Last error: {error}",
            alert::short_duration(now - since),
            humantime::format_duration(config.sla.blind_after),
        );
        outgoing = to_every_channel(config, instance, Status::Blind, message, now);
        tracing::error!(instance, "monitor blind: {error}");
    }
    if next != prev {
        let name = instance.to_string();
        store
            .call(move |s| s.set_source(&name, &next, &outgoing, now))
            .await?;
    }
    Ok(())
}

/// Records a successful poll; returns whether a `recovered` notice was enqueued.
async fn source_ok(
    store: &StoreHandle,
    config: &Arc<Config>,
    instance: &str,
    now: i64,
) -> Result<bool, StoreError> {
    let name = instance.to_string();
    let prev = store.call(move |s| s.source(&name)).await?;
    if prev == SourceState::default() {
        return Ok(false); // nothing to write: the common, quiet case
    }
    let mut outgoing = Vec::new();
    if prev.blind {
        let message = format!(
            "Polling works again after {} of failure.",
            alert::short_duration(now - prev.failing_since.unwrap_or(now))
        );
        outgoing = to_every_channel(config, instance, Status::Recovered, message, now);
        tracing::info!(instance, "monitor recovered");
    }
    let recovered = !outgoing.is_empty();
    let name = instance.to_string();
    store
        .call(move |s| s.set_source(&name, &SourceState::default(), &outgoing, now))
        .await?;
    Ok(recovered)
}

fn to_every_channel(
    config: &Config,
    instance: &str,
    status: Status,
    message: String,
    now: i64,
) -> Vec<Outgoing> {
    config
        .channels
        .iter()
        .map(|c| Outgoing {
            channel: c.name.clone(),
            doc: AlertDoc {
                version: 1,
                status,
                instance: instance.to_string(),
                tier: None,
                sent_at: now,
                chats: Vec::new(),
                message: Some(message.clone()),
            },
        })
        .collect()
}
