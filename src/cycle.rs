//! One cycle for one instance: poll, evaluate, record (docs/spec.md sections 2 and 6).
//!
//! The shell around the pure engine: fetch the overview (`wawp`), read the open episodes,
//! mutes and the instance's memory (`store`), evaluate (`sla`), digest the events (`alert`),
//! and commit episode changes, closed episodes, notifications and the instance's new state
//! in one transaction. It also keeps each instance's polling health for the "monitor
//! blind" alert. It does not send anything: `deliver` does.

use crate::alert::{self, AlertDoc, Outgoing, Status};
use crate::config::{Config, Instance};
use crate::overview::Interest;
use crate::sla::{self, Evaluation, EventKind};
use crate::store::{CycleCommit, Fence, JidSet, Opening, Snapshot, SourceState, Store, StoreError};
use crate::wawp::{self, PollError, Session, WawpClient};
use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Instant;

#[derive(Debug, thiserror::Error)]
pub enum CycleError {
    #[error(transparent)]
    Poll(#[from] PollError),
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A rest that the scan beside it contradicts (only when the client checks rests).
    #[error("{0}")]
    Rest(String),
}

/// Chats (kept, plus episodes read) from which a cycle's evaluation is worth a blocking
/// thread of its own, and their freeing a thread of its own.
const LARGE: usize = 5_000;

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
    /// Wall-clock waits (seconds) of the episodes that ended, for the wait histogram.
    pub ended_waits: Vec<i64>,
    /// The overview repeated, byte for byte, one that changed nothing, and was not
    /// scanned (see [`wawp::Rest`]).
    pub rested: bool,
}

impl Summary {
    /// One line per cycle. The daemon logs quiet cycles (nothing enqueued) at debug, so
    /// an idle inbox keeps a quiet journal (`STATUS=` and `/metrics` still show it);
    /// `once` always says what it saw.
    pub fn log(&self, always: bool) {
        macro_rules! summary {
            ($level:expr) => {
                tracing::event!(
                    $level,
                    instance = %self.instance,
                    chats = self.chats,
                    waiting = self.waiting,
                    breached = self.breached,
                    escalated = self.escalated,
                    resolved = self.resolved,
                    enqueued = self.enqueued,
                    rows_written = self.rows_written,
                    bytes = self.bytes,
                    unchanged = self.rested,
                    "cycle done"
                )
            };
        }
        if always || self.enqueued > 0 {
            summary!(tracing::Level::INFO);
        } else {
            summary!(tracing::Level::DEBUG);
        }
    }
}

/// A cycle's decisions before anything is written (what `once --dry-run` prints).
pub struct Plan {
    pub summary: Summary,
    pub eval: Evaluation,
    pub outgoing: Vec<Outgoing>,
    /// The store generation the plan was made from; the commit checks it.
    pub generation: i64,
    /// The instance's state as read, and as it is after this poll succeeded.
    pub source: SourceState,
    pub next_source: SourceState,
}

/// Called as the cycle makes progress (bytes arrive, the engine finishes): the daemon's
/// watchdog feeds on it, so a slow but working cycle is never taken for a stuck one.
pub type Progress<'a> = &'a (dyn Fn() + Send + Sync);

/// Polls and evaluates without writing.
pub async fn plan(
    client: &WawpClient,
    store: Option<&Store>,
    config: &Arc<Config>,
    instance: &Instance,
    now: i64,
    progress: Progress<'_>,
) -> Result<Plan, CycleError> {
    // The store is read while the first request is on its way. What opens a cycle (each
    // open episode's fingerprint and when it can next fall due, the high-water mark)
    // tells the parser which chats to build; then only the episodes of chats that are not
    // quiet are read.
    let engine_policy = &config.policy;
    let seed = engine_policy.seed();
    let rest = client.rest(&instance.name);
    let mut opened = None;
    let interest = async {
        let opening = match store {
            Some(store) => store.opening(&instance.name).await?,
            None => Opening::default(),
        };
        let read_since = opening.source.memory.read_since(engine_policy);
        let open = opening.jids;
        let until = open.quiet_until();
        // The last poll changed nothing, and nothing but the bytes can change this one:
        // no write to the store since, the same policy, nothing due yet.
        let rest = rest.filter(|r| {
            r.generation == opening.generation
                && r.source == opening.source
                && r.seed == seed
                && now < r.until.min(until)
        });
        let marks = rest.as_ref().map(|r| r.marks.clone());
        opened = Some((opening.generation, opening.source, until, rest));
        Ok::<_, StoreError>(
            Interest::new(move |id| open.get(id), seed, read_since, now).expecting(marks),
        )
    };
    let started = Instant::now();
    // The session is asked beside the overview: an unlinked number's overview may still
    // answer 200 with what the engine last knew (section 7).
    let (fetched, session) = tokio::join!(
        client.overview(instance, interest, progress),
        client.session(instance)
    );
    let fetched = fetched?;
    let poll_seconds = started.elapsed().as_secs_f64();
    let Some((generation, source, until, rest)) = opened else {
        return Err(StoreError::Corrupt("the store was not read".into()).into());
    };
    match session {
        Ok(Some(Session::Not(state))) => {
            // Not WORKING: the overview proves nothing (no absence counted, nothing
            // resolved); the instance is failing, and blind after sla.blind_after.
            client.set_rest(&instance.name, None);
            return Err(PollError::Session {
                instance: instance.name.clone(),
                hint: wawp::session_hint(&state),
                state,
            }
            .into());
        }
        Ok(Some(Session::Working) | None) => {}
        Err(e) => tracing::warn!(
            "{e}; the session's state is unknown this cycle: judging by the overview alone"
        ),
    }
    let fetched = match fetched {
        Ok(f) => f,
        Err(e) => {
            client.set_rest(&instance.name, None);
            return Err(e.into());
        }
    };
    if let Some(rest) = rest
        .as_ref()
        .filter(|_| fetched.unchanged && !client.checks_rests())
    {
        client.note_polled(&instance.name);
        return Ok(rested(
            instance,
            rest,
            &fetched,
            generation,
            source,
            poll_seconds,
        ));
    }
    // After a gap in polling (this process's first look, or polls that failed) waiting
    // chats may have waited since before the overview's last message.
    let first_look = client.note_polled(&instance.name);
    let gap = first_look || source.failing_since.is_some();
    let Snapshot {
        episodes, mutes, ..
    } = match store {
        Some(store) => {
            let mut quiet = JidSet::default();
            for chat in fetched.chats.iter().filter(|c| c.quiet) {
                quiet.insert(&chat.id);
            }
            store.snapshot_except(&instance.name, now, quiet).await?
        }
        None => Snapshot::default(),
    };
    for note in &fetched.notes {
        tracing::warn!(instance = %instance.name, "overview incomplete: {note}");
    }
    let engine_config = config.clone();
    let chats = fetched.chats;
    let fetched_chats = chats.len() + episodes.len();
    let total = fetched.total;
    let read_whole = fetched.complete;
    let memory = source.memory.clone();
    let muted: HashMap<String, i64> = mutes.clone();
    let judge = move || {
        // Which episodes the history may move back: the ones opened now, and those whose
        // history is still to be read (taken before the episodes go).
        let pending: Vec<sla::Episode> = episodes
            .values()
            .filter(|e| e.history_pending)
            .cloned()
            .collect();
        let eval = sla::evaluate(&sla::Cycle {
            episodes: &episodes,
            chats: &chats,
            total,
            read_whole,
            memory: &memory,
            mutes: &mutes,
            policy: &engine_config.policy,
            now,
        });
        let opened: Vec<bool> = eval
            .upserts
            .iter()
            .map(|e| !episodes.contains_key(&e.jid))
            .collect();
        if chats.len() + episodes.len() >= LARGE {
            // Freeing 100k parsed chats takes longer than evaluating them; nothing waits
            // on it. (If no thread can be had, they are simply freed here.)
            let _ = std::thread::Builder::new()
                .name("free-overview".into())
                .spawn(move || drop((chats, episodes)));
        }
        (eval, opened, pending)
    };
    // The engine is CPU work over possibly 100k chats: a large cycle runs off the async
    // workers. A small one (most of a fleet's) costs less than the hand-over would.
    let (mut eval, opened, pending) = if fetched_chats >= LARGE {
        tokio::task::spawn_blocking(judge)
            .await
            .map_err(|e| StoreError::Corrupt(format!("the evaluation task failed: {e}")))?
    } else {
        judge()
    };
    let chat_count = total;
    progress();
    first_unanswered(
        client, config, instance, &mut eval, &opened, pending, gap, &muted, now, progress,
    )
    .await;
    if !eval.complete && read_whole && eval.waiting > 0 {
        tracing::warn!(instance = %instance.name, chats = chat_count, previous = ?source.memory.complete_chats,
            "overview incomplete: empty or under half the size of the last complete one; absence proves nothing this cycle");
    }
    let outgoing = outgoing(config, &instance.name, &eval.events, now);
    let next_source = SourceState {
        failing_since: None,
        last_error: None,
        blind: false,
        memory: source
            .memory
            .after(&config.policy, eval.judged, chat_count, now),
    };
    let count = |f: fn(&EventKind) -> bool| eval.events.iter().filter(|e| f(&e.kind)).count();
    let mut summary = Summary {
        instance: instance.name.clone(),
        chats: chat_count,
        complete: eval.complete,
        waiting: eval.waiting,
        breached: eval.breached,
        escalated: count(|k| matches!(k, EventKind::Firing { .. })),
        resolved: count(|k| matches!(k, EventKind::Resolved { .. })),
        enqueued: outgoing.len(),
        rows_written: 0,
        bytes: fetched.bytes,
        poll_seconds,
        ended_waits: eval
            .closed
            .iter()
            .filter(|c| c.reason != sla::EndReason::Unwatched)
            .map(|c| (c.ended_at - c.episode.started_at).max(0))
            .collect(),
        rested: false,
    };
    // A poll that changes nothing leaves a rest: a repeat of its bytes is not scanned.
    // Time alone cannot change such a poll's outcome before `until`: a chat with an
    // episode is then quiet (unchanged and not due) or changed (and upserted); a chat
    // without one opens an episode or is judged by its bytes and the policy alone (a
    // group, an ignored chat, one answered). Reply mode never rests: each poll moves its
    // mark to the poll's instant.
    let changes_nothing = config.policy.reply_signature().is_none()
        && fetched.complete
        && eval.complete
        && eval.upserts.is_empty()
        && eval.closed.is_empty()
        && eval.events.is_empty()
        && eval.told.is_empty()
        && outgoing.is_empty()
        && next_source == source
        && now < until;
    if fetched.unchanged && client.checks_rests() {
        // The rest was taken: the scan beside it must agree that it changed nothing.
        let same = rest.as_ref().is_some_and(|r| {
            (r.chats, r.waiting, r.breached) == (summary.chats, summary.waiting, summary.breached)
        });
        if !changes_nothing || !same {
            return Err(CycleError::Rest(format!(
                "instance \"{}\": a repeated overview was taken as changing nothing, but scanned it {}",
                instance.name,
                if same {
                    "changes the store or sends"
                } else {
                    "shows other figures"
                }
            )));
        }
        summary.rested = true;
    }
    client.set_rest(
        &instance.name,
        changes_nothing.then(|| wawp::Rest {
            marks: fetched.marks.into(),
            generation,
            source: source.clone(),
            seed,
            until,
            chats: summary.chats,
            waiting: summary.waiting,
            breached: summary.breached,
        }),
    );
    Ok(Plan {
        summary,
        eval,
        outgoing,
        generation,
        source,
        next_source,
    })
}

/// The plan of a poll whose overview repeated, byte for byte, one that changed nothing,
/// while nothing else could change: nothing to write or send, and the same figures.
fn rested(
    instance: &Instance,
    rest: &wawp::Rest,
    fetched: &wawp::Fetched,
    generation: i64,
    source: SourceState,
    poll_seconds: f64,
) -> Plan {
    let eval = Evaluation {
        waiting: rest.waiting,
        breached: rest.breached,
        complete: true,
        judged: sla::Judged {
            read_whole: true,
            resync: false,
            complete: true,
        },
        ..Evaluation::default()
    };
    Plan {
        summary: Summary {
            instance: instance.name.clone(),
            chats: rest.chats,
            complete: true,
            waiting: rest.waiting,
            breached: rest.breached,
            bytes: fetched.bytes,
            poll_seconds,
            rested: true,
            ..Summary::default()
        },
        eval,
        outgoing: Vec::new(),
        generation,
        next_source: source.clone(),
        source,
    }
}

/// Reads the recent messages of chats whose episode may have started before the
/// overview's last message, and moves their start back to the first unanswered message
/// (section 2): episodes opened now with more than one unread message (or any, after a
/// gap in polling), and those whose history could not be read before. At most
/// `wawp.history_lookups` reads, one after the other inside this cycle's slot of
/// `wawp.max_concurrent`; the rest are marked and read at a later cycle (`opened[i]`:
/// whether `eval.upserts[i]` opened now). A read that fails leaves the overview's
/// timestamp: a failing engine (no answer, 5xx, 429) ends the round and its chats are
/// read later; a chat the engine refuses (another 4xx, an unreadable answer) keeps the
/// overview's timestamp for good.
#[allow(clippy::too_many_arguments)]
async fn first_unanswered(
    client: &WawpClient,
    config: &Config,
    instance: &Instance,
    eval: &mut Evaluation,
    opened: &[bool],
    pending: Vec<sla::Episode>,
    gap: bool,
    mutes: &HashMap<String, i64>,
    now: i64,
    progress: Progress<'_>,
) {
    let budget = config.wawp.history_lookups;
    if budget == 0 {
        return;
    }
    enum At {
        /// Written this cycle anyway: `eval.upserts[i]`.
        Upsert(usize),
        /// Unchanged this cycle: written only if its history changes it.
        Stored(Box<sla::Episode>),
    }
    let index: HashMap<&str, usize> = eval
        .upserts
        .iter()
        .enumerate()
        .map(|(i, e)| (e.jid.as_str(), i))
        .collect();
    let closed: HashSet<&str> = eval.closed.iter().map(|c| c.episode.jid.as_str()).collect();
    let mut wanted: Vec<(bool, i64, At)> = Vec::new();
    for ep in pending {
        match index.get(ep.jid.as_str()) {
            Some(&i) => wanted.push((false, ep.started_at, At::Upsert(i))),
            None if closed.contains(ep.jid.as_str()) => {}
            None => wanted.push((false, ep.started_at, At::Stored(Box::new(ep)))),
        }
    }
    for (i, ep) in eval.upserts.iter().enumerate() {
        let several = ep.unread.is_some_and(|n| n > 1 || n == -1);
        if opened.get(i) == Some(&true) && !ep.history_pending && (gap || several) {
            wanted.push((true, ep.started_at, At::Upsert(i)));
        }
    }
    if wanted.is_empty() {
        return;
    }
    drop(index);
    drop(closed);
    // What waited longest first: the earlier reads were owed, then the oldest starts.
    fn jid_of<'a>(upserts: &'a [sla::Episode], at: &'a At) -> &'a str {
        match at {
            At::Upsert(i) => upserts[*i].jid.as_str(),
            At::Stored(e) => e.jid.as_str(),
        }
    }
    let upserts = &eval.upserts;
    wanted
        .sort_by(|a, b| (a.0, a.1, jid_of(upserts, &a.2)).cmp(&(b.0, b.1, jid_of(upserts, &b.2))));
    let mut reads = 0usize;
    let mut engine_failing = false;
    for (_, _, at) in wanted {
        if reads >= budget || engine_failing {
            // Read at a later cycle. (A stored episode here is already marked: only
            // those owing a read are taken.)
            match at {
                At::Upsert(i) => eval.upserts[i].history_pending = true,
                At::Stored(e) => debug_assert!(e.history_pending),
            }
            continue;
        }
        let mut ep = match &at {
            At::Upsert(i) => eval.upserts[*i].clone(),
            At::Stored(e) => (**e).clone(),
        };
        let jid = ep.jid.clone();
        let was_pending = ep.history_pending;
        reads += 1;
        let limit = match ep.unread {
            Some(n) if n > 0 => (n as usize).saturating_add(1).min(100),
            _ => 10,
        };
        match client.messages(instance, &jid, limit).await {
            Ok(messages) => {
                ep.history_pending = false;
                if let Some(start) = sla::first_unanswered(&messages, &config.policy, now) {
                    let muted = mutes.get(&jid).is_some_and(|until| *until > now);
                    let before = ep.started_at;
                    if sla::start_earlier(eval, &mut ep, start, &config.policy, muted, now) {
                        tracing::info!(
                            instance = %instance.name,
                            chat = %jid,
                            "the chat's history shows its first unanswered message {} before the overview's start",
                            alert::short_duration(before - ep.started_at)
                        );
                    }
                }
            }
            Err(e) => {
                let transient = match &e {
                    PollError::Transport { .. } => true,
                    PollError::Status { status, .. } => {
                        status.is_server_error() || status.as_u16() == 429
                    }
                    _ => false,
                };
                ep.history_pending = transient;
                engine_failing |= transient;
                tracing::warn!(
                    chat = %jid,
                    "{e}: the episode starts at the overview's last message{}",
                    if transient {
                        " until its history can be read (next cycle)"
                    } else {
                        ""
                    }
                );
            }
        }
        progress();
        match at {
            At::Upsert(i) => eval.upserts[i] = ep,
            At::Stored(_) if ep.history_pending != was_pending || !ep.history_pending => {
                eval.upserts.push(ep)
            }
            At::Stored(_) => {}
        }
    }
}

/// Polls, evaluates and commits one instance's cycle. Polling failures are recorded for
/// the blind monitor before they are returned. `fence`: the lease this node holds, under HA.
pub async fn run(
    client: &WawpClient,
    store: &Store,
    config: &Arc<Config>,
    instance: &Instance,
    now: i64,
    fence: Option<&Fence>,
    progress: Progress<'_>,
) -> Result<Summary, CycleError> {
    match plan(client, Some(store), config, instance, now, progress).await {
        Ok(plan) => commit(store, config, &instance.name, plan, now, fence).await,
        Err(CycleError::Poll(e)) => {
            source_failed(store, config, &instance.name, &e, now).await?;
            Err(CycleError::Poll(e))
        }
        Err(e) => Err(e),
    }
}

/// Commits a plan made from `store`: fails with a conflict, writing nothing, if another
/// writer committed for the instance since the plan read it (or took its lease).
pub async fn commit(
    store: &Store,
    config: &Arc<Config>,
    instance: &str,
    plan: Plan,
    now: i64,
    fence: Option<&Fence>,
) -> Result<Summary, CycleError> {
    let Plan {
        mut summary,
        eval,
        mut outgoing,
        generation,
        source,
        next_source,
    } = plan;
    if source.blind {
        let after = alert::short_duration(now - source.failing_since.unwrap_or(now));
        let message = match source
            .last_error
            .as_deref()
            .and_then(wawp::session_state_of)
        {
            Some(state) => format!(
                "The WhatsApp session is WORKING again after {after} (it was {state}); the number is watched again."
            ),
            None => format!("Polling works again after {after} of failure."),
        };
        outgoing.extend(to_every_channel(
            config,
            instance,
            Status::Recovered,
            message,
            now,
        ));
        tracing::info!(instance, "monitor recovered");
    }
    summary.enqueued = outgoing.len();
    let changed = (next_source != source).then_some(&next_source);
    summary.rows_written = store
        .commit_cycle(CycleCommit {
            instance,
            generation,
            fence,
            upserts: eval.upserts,
            closed: eval.closed,
            outgoing,
            source: changed,
            forget: false,
            told: eval.told,
            now,
        })
        .await?;
    Ok(summary)
}

/// Records a failed poll; after `blind_after` of continuous failure, enqueues one `blind`
/// alert to every channel. (What [`run`] does when the poll fails; public for callers that
/// plan and commit in steps, as the simulator does.)
pub async fn source_failed(
    store: &Store,
    config: &Arc<Config>,
    instance: &str,
    error: &PollError,
    now: i64,
) -> Result<(), StoreError> {
    let prev = store.source(instance).await?;
    let since = prev.failing_since.unwrap_or(now);
    let mut next = SourceState {
        failing_since: Some(since),
        last_error: Some(error.label()),
        ..prev.clone()
    };
    let mut outgoing = Vec::new();
    let blind_after = config.sla().blind_after;
    if !prev.blind && now - since >= blind_after.as_secs() as i64 {
        next.blind = true;
        let message = match error {
            PollError::Session { state, hint, .. } => format!(
                "The WhatsApp session of this number has been {state}, not WORKING, for {} (sla.blind_after = {}): it receives no messages, so customers writing to it are not being watched. What to do: {hint}.",
                alert::short_duration(now - since),
                crate::duration::format(blind_after),
            ),
            _ => format!(
                "Polling has failed for {} (sla.blind_after = {}); waiting customers are not being watched. Last error: {error}",
                alert::short_duration(now - since),
                crate::duration::format(blind_after),
            ),
        };
        outgoing = to_every_channel(config, instance, Status::Blind, message, now);
        tracing::error!(instance, "monitor blind: {error}");
    }
    if next != prev {
        store.set_source(instance, &next, &outgoing, now).await?;
    }
    Ok(())
}

/// The notifications a cycle's events make, digested per channel. Channels removed from
/// the config since an episode was told hear nothing more.
fn outgoing(config: &Config, instance: &str, events: &[sla::Event], now: i64) -> Vec<Outgoing> {
    let shape = |name: &str| config.channel(name).map(|c| c.shape());
    let mut outgoing = alert::digest(instance, events, now, |c| {
        shape(c).unwrap_or(alert::Shape::Digest)
    });
    outgoing.retain(|o| shape(&o.channel).is_some());
    outgoing
}

/// Retires the instances no longer in the config (section 2, "an unwatched chat"): each
/// open episode ends with reason `unwatched`, and the channels that were told hear that it
/// is no longer watched, so PagerDuty and Alertmanager close it; a blind monitor's alert
/// ends too; and the instance's memory (polling health, reply mode's mark) goes, so that
/// adding it back later starts afresh instead of trusting a month-old mark.
///
/// Only the daemon, which owns the config, calls this (a `once` run with a config of its
/// own must leave other instances alone). Under HA the config may be changed one node at
/// a time: an instance is retired only once no node has held its lease for a whole
/// lease term, so a node still watching it keeps it, and a node restarting to add it does
/// not lose it. Returns the instances retired, each with how many notifications it
/// enqueued.
pub async fn retire_unwatched(
    store: &Store,
    config: &Config,
    now_ms: i64,
) -> Result<Vec<(String, usize)>, StoreError> {
    let now = now_ms.div_euclid(1000);
    let sources = store.sources().await?;
    let mut gone: Vec<String> = store.episode_instances().await?;
    gone.extend(sources.iter().map(|(i, _)| i.clone()));
    gone.retain(|i| config.instance(i).is_none());
    gone.sort();
    gone.dedup();
    if gone.is_empty() {
        return Ok(Vec::new());
    }
    let leases = match &config.ha {
        Some(_) => store.leases(now_ms).await?,
        None => Vec::new(),
    };
    let lease_term = config.ha.as_ref().map_or(0, |h| h.lease.as_millis() as i64);
    let mut retired = Vec::new();
    for instance in gone {
        if leases
            .iter()
            .any(|l| l.instance == instance && l.remaining_ms > -lease_term)
        {
            continue; // some node watched it within the last lease term
        }
        let snapshot = store.snapshot(&instance, now).await?;
        let eval = sla::unwatch(&snapshot.episodes, &config.policy, now);
        let mut outgoing = outgoing(config, &instance, &eval.events, now);
        if snapshot.source.blind {
            outgoing.extend(to_every_channel(
                config,
                &instance,
                Status::Recovered,
                "The instance was removed from the configuration: it is no longer watched.".into(),
                now,
            ));
        }
        let (n, sent) = (eval.closed.len(), outgoing.len());
        let committed = store
            .commit_cycle(CycleCommit {
                instance: &instance,
                generation: snapshot.generation,
                fence: None,
                upserts: Vec::new(),
                outgoing,
                closed: eval.closed,
                source: None,
                forget: true,
                told: Vec::new(),
                now,
            })
            .await;
        match committed {
            Ok(_) => {
                tracing::info!(
                    instance,
                    episodes = n,
                    notices = sent,
                    "the instance is no longer in the configuration: its open episodes ended (unwatched) and its state is forgotten"
                );
                retired.push((instance, sent));
            }
            Err(e) if e.is_conflict() => {} // another writer; the next pass looks again
            Err(e) => return Err(e),
        }
    }
    Ok(retired)
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
        .map(|c| {
            let doc = AlertDoc {
                version: 1,
                status,
                instance: instance.to_string(),
                tier: None,
                sent_at: now,
                chats: Vec::new(),
                message: Some(message.clone()),
            };
            Outgoing::new(c.name.clone(), doc, c.shape())
        })
        .collect()
}
