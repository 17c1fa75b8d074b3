//! The command line's commands (docs/spec.md section 3), each returning an exit code. `main`
//! parses arguments and sets up logging; everything else is here, so tests and the demo
//! call the same code the binary runs. The daemon (`run`) is `daemon`; this module does
//! not serve it.

use crate::alert::{AlertDoc, short_duration, utc_time};
use crate::clock::Clock;
use crate::config::{Config, ConfigError};
use crate::cycle::{self, CycleError, Summary};
use crate::deliver;
use crate::notify::{self, Channels};
use crate::outbox::{Outbox, Queued, Stage};
use crate::sla::EventKind;
use crate::store::{Store, StoreError};
use crate::untrusted;
use crate::wawp::WawpClient;
use serde_json::{Value, json};
use std::path::Path;
use std::process::ExitCode;
use std::sync::Arc;

/// Prints a line to stdout. Unlike `println!`, a closed pipe (`inbox-sla alerts | head`)
/// does not panic: the rest of the output is dropped quietly.
macro_rules! say {
    ($($arg:tt)*) => {
        $crate::commands::emit(&format!($($arg)*))
    };
}
pub(crate) use say;

pub(crate) fn emit(line: &str) {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{line}");
}

/// Exit codes of section 3.
pub const EXIT_OK: u8 = 0;
pub const EXIT_RUNTIME: u8 = 1;
pub const EXIT_USAGE: u8 = 2;

/// A command's failure, carrying its exit code.
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error("{0}")]
    Usage(String),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("{0}")]
    Runtime(String),
}

impl CliError {
    pub fn exit_code(&self) -> ExitCode {
        ExitCode::from(match self {
            CliError::Config(_) | CliError::Usage(_) => EXIT_USAGE,
            CliError::Store(_) | CliError::Runtime(_) => EXIT_RUNTIME,
        })
    }
}

impl From<crate::act::ActError> for CliError {
    fn from(e: crate::act::ActError) -> Self {
        match e {
            crate::act::ActError::Store(s) => CliError::Store(s),
            other => CliError::Usage(other.to_string()),
        }
    }
}

impl From<crate::daemon::Error> for CliError {
    fn from(e: crate::daemon::Error) -> Self {
        match e {
            crate::daemon::Error::Channels(c) => CliError::Usage(c.to_string()),
            crate::daemon::Error::Store(s) => CliError::Store(s),
            other => CliError::Runtime(other.to_string()),
        }
    }
}

/// `check [--quiet]`: the effective configuration with secrets as `***` (quiet: only the
/// warnings, which is what the unit's `ExecStartPre` runs).
pub fn check(config: &Config, path: &Path, quiet: bool) -> ExitCode {
    for w in &config.warnings {
        if quiet {
            eprintln!("inbox-sla: warning: {w}");
        } else {
            say!("# warning: {w}");
        }
    }
    if !quiet {
        say!("# {}: valid", path.display());
        for line in what_wawp_gives(config) {
            say!("# {line}");
        }
        say!("{}", config.render().trim_end());
    }
    ExitCode::SUCCESS
}

/// What the config takes from WhatsApp beyond the overview (sections 2 and 7), in words:
/// each of these changes what a quiet inbox, a restart or a reply mean.
fn what_wawp_gives(config: &Config) -> Vec<String> {
    let w = &config.wawp;
    vec![
        if w.session_check {
            "session health: on: each cycle asks /v2/session/info; a number whose session is not WORKING for sla.blind_after raises a blind alert (wawp.session_check)".to_string()
        } else {
            "session health: off (wawp.session_check = false): an unlinked number looks like a quiet inbox".to_string()
        },
        if w.history_lookups > 0 {
            format!(
                "first unanswered message: on: up to {} /v2/chats/messages reads per instance per cycle start episodes at the earliest unanswered customer message (wawp.history_lookups)",
                w.history_lookups
            )
        } else {
            "first unanswered message: off (wawp.history_lookups = 0): episodes start at the overview's last message".to_string()
        },
        match &config.events {
            Some(e) => format!(
                "events: on: Wawp/WAHA webhooks POSTed to {}{} make their instance poll at once (at most once a second); {}",
                config
                    .http
                    .as_ref()
                    .map_or(String::new(), |h| format!("http://{}", h.listen)),
                e.path,
                if e.hmac_key.is_some() {
                    "signatures checked (X-Webhook-Hmac, sha512)"
                } else {
                    "signatures not checked (no hmac_key_file)"
                }
            ),
            None => "events: off (no [events]): changes are seen at the next poll".to_string(),
        },
    ]
}

fn channels(config: &Config) -> Result<Channels, CliError> {
    notify::build(config).map_err(|e| CliError::Usage(e.to_string()))
}

fn client(config: &Config) -> Result<WawpClient, CliError> {
    WawpClient::new(&config.wawp)
        .map_err(|e| CliError::Runtime(format!("cannot build the HTTP client: {e}")))
}

/// The store for a command that reads: `None` when nothing has been polled yet.
async fn existing_store(config: &Config) -> Result<Option<Store>, CliError> {
    Ok(Store::open_existing(&config.store.location()).await?)
}

/// Polls every instance concurrently (at most `wawp.max_concurrent` at once) and commits
/// each one's cycle.
pub async fn poll_all(
    client: &WawpClient,
    store: &Store,
    config: &Arc<Config>,
    now: i64,
) -> Vec<Result<Summary, CycleError>> {
    let limit = Arc::new(tokio::sync::Semaphore::new(config.wawp.max_concurrent));
    let mut tasks = tokio::task::JoinSet::new();
    for (i, instance) in config.instances.iter().cloned().enumerate() {
        let (client, store, config, limit) =
            (client.clone(), store.clone(), config.clone(), limit.clone());
        tasks.spawn(async move {
            let _permit = limit.acquire_owned().await;
            let result = cycle::run(&client, &store, &config, &instance, now, None, &|| {}).await;
            (i, result)
        });
    }
    let mut results: Vec<(usize, Result<Summary, CycleError>)> = Vec::new();
    while let Some(joined) = tasks.join_next().await {
        match joined {
            Ok(r) => results.push(r),
            Err(e) => tracing::error!("a polling task failed: {e}"),
        }
    }
    results.sort_by_key(|(i, _)| *i);
    results.into_iter().map(|(_, r)| r).collect()
}

/// `once`: one cycle over every instance, then one delivery pass.
pub async fn once(config: Config, dry_run: bool, clock: Clock) -> Result<ExitCode, CliError> {
    let config = Arc::new(config);
    let client = client(&config)?.polling_once();
    if dry_run {
        return dry_run_once(&client, &config, &clock).await;
    }
    let channels = channels(&config)?;
    let store = Store::open(&config.store.location()).await?;
    let mut failed = false;
    for result in poll_all(&client, &store, &config, clock.now()).await {
        match result {
            Ok(summary) => summary.log(true),
            Err(CycleError::Store(e)) if e.is_conflict() => {
                tracing::warn!("{e}");
                failed = true;
            }
            Err(CycleError::Store(e)) => return Err(e.into()),
            Err(e) => {
                tracing::error!("{e}");
                failed = true;
            }
        }
    }
    let outbox = Arc::new(Outbox::new(
        store,
        clock,
        config.delivery.retry_for,
        config.delivery.timeout,
    ));
    let report = deliver::deliver_due(&outbox, &channels).await?;
    if outbox.owed() > 0 {
        // Delivered, but the store would not say so: do not exit before trying again.
        if let Err(e) = outbox.flush().await {
            tracing::error!(
                "delivery outcomes could not be recorded: {e}; those notifications may be sent once more by the next run"
            );
            failed = true;
        }
    }
    for (channel, error) in &report.failures {
        tracing::error!(channel = %channel, "delivery failed: {error}");
    }
    if !report.failures.is_empty() {
        failed = true;
        tracing::error!(
            retrying = report.retrying,
            dead = report.dead,
            "some notifications were not delivered; those still retrying stay queued for the next run"
        );
    }
    Ok(ExitCode::from(if failed { EXIT_RUNTIME } else { EXIT_OK }))
}

async fn dry_run_once(
    client: &WawpClient,
    config: &Arc<Config>,
    clock: &Clock,
) -> Result<ExitCode, CliError> {
    let store = existing_store(config).await?;
    let now = clock.now();
    let mut failed = false;
    for instance in &config.instances {
        match cycle::plan(client, store.as_ref(), config, instance, now, &|| {}).await {
            Ok(plan) => {
                for event in &plan.eval.events {
                    let ep = &event.episode;
                    let who = format!(
                        "{} {} ({})",
                        instance.name,
                        ep.jid,
                        ep.name.as_deref().unwrap_or("no name")
                    );
                    match event.kind {
                        EventKind::Firing {
                            tier,
                            after_secs,
                            repeat,
                        } => say!(
                            "would {} {who}: tier {} (after {}), waiting {} since {} → {}",
                            if repeat { "repeat" } else { "escalate" },
                            tier + 1,
                            short_duration(after_secs as i64),
                            short_duration(event.waited),
                            utc_time(ep.started_at),
                            event.channels.join(", ")
                        ),
                        EventKind::Resolved { .. } => say!(
                            "would resolve {who}: waited {} → {}",
                            short_duration(event.waited),
                            event.channels.join(", ")
                        ),
                        EventKind::Acknowledged { .. } => say!(
                            "would tell {who} acknowledged by {} → {}",
                            ep.ack.as_ref().map_or("?", |a| a.by.as_str()),
                            event.channels.join(", ")
                        ),
                    }
                }
                say!(
                    "{}: {} chats, {} waiting, {} breached; would enqueue {} notifications",
                    instance.name,
                    plan.summary.chats,
                    plan.summary.waiting,
                    plan.summary.breached,
                    plan.outgoing.len()
                );
            }
            Err(CycleError::Store(e)) => return Err(e.into()),
            Err(e) => {
                tracing::error!("{e}");
                failed = true;
            }
        }
    }
    say!("dry run: nothing was written and nothing was sent");
    Ok(ExitCode::from(if failed { EXIT_RUNTIME } else { EXIT_OK }))
}

// How `alerts` and `report` print is part of the command line.
pub use crate::cli::{Format, ReportFormat};

/// Everything `alerts` knows, read once.
struct AlertsView {
    store: String,
    episodes: Vec<(String, crate::sla::Episode)>,
    mutes: Vec<crate::store::Mute>,
    counts: crate::outbox::Counts,
    pending: Vec<Queued>,
    dead: Vec<Queued>,
    sent: Vec<Queued>,
    leases: Vec<crate::store::Lease>,
    sources: Vec<(String, crate::store::SourceState)>,
}

/// `alerts [--all] [--format text|json]`: open episodes, mutes, leases, and pending or
/// dead notifications. Needs no secret but the store's.
pub async fn alerts(
    config: &Config,
    all: bool,
    format: Format,
    clock: &Clock,
) -> Result<ExitCode, CliError> {
    let now = clock.now();
    let Some(store) = existing_store(config).await? else {
        match format {
            Format::Text => say!(
                "No store yet at {}: nothing has been polled.",
                config
                    .store
                    .path
                    .as_deref()
                    .unwrap_or(Path::new("?"))
                    .display()
            ),
            Format::Json => say!(
                "{}",
                json!({"generated_at": now, "store": null, "episodes": [], "mutes": [],
                       "outbox": {}, "pending": [], "dead": [], "leases": [], "sources": []})
            ),
        }
        return Ok(ExitCode::SUCCESS);
    };
    let o = AlertsView {
        store: store.describe(),
        episodes: store.all_episodes().await?,
        mutes: store.mutes(now).await?,
        counts: store.outbox_counts().await?,
        pending: [
            store.outbox(Stage::Claimed, 200).await?,
            store.outbox(Stage::Pending, 200).await?,
        ]
        .concat(),
        dead: store.outbox(Stage::Dead, 50).await?,
        sent: if all {
            store.outbox(Stage::Sent, 20).await?
        } else {
            Vec::new()
        },
        leases: store.leases(now * 1000).await?,
        sources: store.sources().await?,
    };
    match format {
        Format::Json => say!("{}", alerts_json(&o, now)),
        Format::Text => alerts_text(&o, all, now),
    }
    Ok(ExitCode::SUCCESS)
}

fn queued_json(q: &Queued) -> Value {
    let (next, claimed_by, done) = match &q.state {
        crate::outbox::State::Pending { next_attempt_ms } => {
            (Some(next_attempt_ms / 1000), None, None)
        }
        crate::outbox::State::Claimed { owner, until_ms } => {
            (Some(until_ms / 1000), Some(owner.clone()), None)
        }
        crate::outbox::State::Sent { at } | crate::outbox::State::Dead { at } => {
            (None, None, Some(*at))
        }
    };
    json!({
        "id": q.id, "status": q.doc.status.as_str(), "state": q.state.as_str(),
        "channel": q.channel, "instance": q.instance, "chats": q.doc.chats.len(),
        "chat_ids": q.doc.chats.iter().map(|c| c.id.clone()).collect::<Vec<_>>(),
        "attempts": q.attempts, "created_at": q.created_at, "next_attempt_at": next,
        "claimed_by": claimed_by, "done_at": done, "last_error": q.last_error,
    })
}

fn alerts_json(o: &AlertsView, now: i64) -> Value {
    let muted = |jid: &str| o.mutes.iter().any(|m| m.jid == jid);
    json!({
        "generated_at": now,
        "store": o.store,
        "episodes": o.episodes.iter()
            .map(|(instance, ep)| crate::act::episode_json(instance, ep, muted(&ep.jid), now))
            .collect::<Vec<_>>(),
        "mutes": o.mutes.iter().map(|m| json!({"id": m.jid, "until": m.until, "reason": m.reason})).collect::<Vec<_>>(),
        "outbox": o.counts,
        "pending": o.pending.iter().map(queued_json).collect::<Vec<_>>(),
        "dead": o.dead.iter().map(queued_json).collect::<Vec<_>>(),
        "sent": o.sent.iter().map(queued_json).collect::<Vec<_>>(),
        "leases": o.leases.iter().map(|l| json!({
            "instance": l.instance, "holder": l.holder, "fence": l.fence,
            "expires_at": l.expires_ms / 1000, "live": l.live(),
        })).collect::<Vec<_>>(),
        "sources": o.sources.iter().map(|(instance, s)| json!({
            "instance": instance, "failing_since": s.failing_since, "last_error": s.last_error,
            "blind": s.blind, "last_ok_at": s.memory.mark,
            "session": s.last_error.as_deref().and_then(crate::wawp::session_state_of),
            "session_since": s.last_error.as_deref().and_then(crate::wawp::session_state_of).and(s.failing_since),
        })).collect::<Vec<_>>(),
    })
}

fn alerts_text(o: &AlertsView, all: bool, now: i64) {
    let escalated = |ep: &crate::sla::Episode| !ep.fired.is_empty() || ep.legacy_fired.is_some();
    let shown: Vec<_> = o
        .episodes
        .iter()
        .filter(|(_, e)| all || escalated(e))
        .collect();
    say!(
        "Open episodes: {} waiting, {} escalated{}",
        o.episodes.len(),
        o.episodes.iter().filter(|(_, e)| escalated(e)).count(),
        if all {
            ""
        } else {
            " (shown; --all shows every waiting chat)"
        }
    );
    for (instance, ep) in shown {
        let tiers: Vec<String> = ep.fired.iter().map(|s| short_duration(*s as i64)).collect();
        say!(
            "  {instance}  {}  {}  waiting since {} ({})  tiers fired: {}  {}{}{}",
            ep.jid,
            untrusted::display(ep.name.as_deref().unwrap_or("(no name)"), 60),
            utc_time(ep.started_at),
            short_duration(now - ep.started_at),
            if tiers.is_empty() {
                "none".to_string()
            } else {
                tiers.join(", ")
            },
            match ep.unread {
                Some(-1) => "marked unread".to_string(),
                Some(n) => format!("{n} unread"),
                None => "unread unknown".to_string(),
            },
            if o.mutes.iter().any(|m| m.jid == ep.jid) {
                "  (muted)"
            } else {
                ""
            },
            match &ep.ack {
                Some(a) if a.holds(now) => format!(
                    "  (acknowledged by {} at {}, holds until {})",
                    untrusted::display(&a.by, 60),
                    utc_time(a.at),
                    utc_time(a.until)
                ),
                Some(a) => format!(
                    "  (acknowledged by {} at {}, ran out {})",
                    untrusted::display(&a.by, 60),
                    utc_time(a.at),
                    utc_time(a.until)
                ),
                None => String::new(),
            },
        );
    }
    let failing: Vec<_> = o
        .sources
        .iter()
        .filter_map(|(i, s)| s.failing_since.map(|since| (i, s, since)))
        .collect();
    if !failing.is_empty() {
        say!("Instances failing: {}", failing.len());
        for (instance, s, since) in failing {
            let what = match s.last_error.as_deref() {
                Some(e) => match crate::wawp::session_state_of(e) {
                    Some(state) => format!("WhatsApp session {state} (not WORKING)"),
                    None => format!("polling failing ({e})"),
                },
                None => "polling failing".to_string(),
            };
            say!(
                "  {instance}: {what} since {} ({}){}",
                utc_time(since),
                short_duration(now - since),
                if s.blind { ", blind alert sent" } else { "" }
            );
        }
    }
    say!("Mutes: {}", o.mutes.len());
    for m in &o.mutes {
        say!(
            "  {}  until {} ({} left){}",
            m.jid,
            utc_time(m.until),
            short_duration(m.until - now),
            m.reason
                .as_ref()
                .map(|r| format!("  reason: {}", untrusted::display(r, 200)))
                .unwrap_or_default()
        );
    }
    say!("Pending notifications: {}", o.counts.open());
    for q in o.pending.iter().rev() {
        let when = match &q.state {
            crate::outbox::State::Claimed { owner, .. } => format!("being sent by {owner}"),
            crate::outbox::State::Pending { next_attempt_ms } => {
                format!("next {}", utc_time(next_attempt_ms / 1000))
            }
            _ => String::new(),
        };
        say!(
            "  #{} {} → {}  {} chats  attempts {}  {when}{}",
            q.id,
            q.doc.status.as_str(),
            q.channel,
            q.doc.chats.len(),
            q.attempts,
            q.last_error
                .as_deref()
                .map(|e| format!("  last error: {e}"))
                .unwrap_or_default()
        );
    }
    say!("Dead notifications: {}", o.counts.dead);
    for q in &o.dead {
        say!(
            "  #{} {} → {}  {} chats  created {}  {}",
            q.id,
            q.doc.status.as_str(),
            q.channel,
            q.doc.chats.len(),
            utc_time(q.created_at),
            q.last_error.as_deref().unwrap_or("")
        );
    }
    if !o.leases.is_empty() {
        say!("Leases (who polls which instance):");
        for l in &o.leases {
            let live = l.live();
            say!(
                "  {}  held by {}  {}",
                l.instance,
                l.holder,
                if live {
                    format!("until {}", utc_time(l.expires_ms / 1000))
                } else {
                    "expired: the next node to poll takes it".to_string()
                }
            );
        }
    }
    if all {
        say!("Recently sent: {}", o.sent.len());
        for q in &o.sent {
            let at = match q.state {
                crate::outbox::State::Sent { at } => at,
                _ => q.created_at,
            };
            say!(
                "  #{} {} → {}  {} chats  at {}",
                q.id,
                q.doc.status.as_str(),
                q.channel,
                q.doc.chats.len(),
                utc_time(at)
            );
        }
    }
}

/// `mute JID --for DURATION [--reason TEXT]`
pub async fn mute(
    config: &Config,
    jid: &str,
    duration: &str,
    reason: Option<&str>,
    clock: &Clock,
) -> Result<ExitCode, CliError> {
    crate::act::check_jid(jid)?;
    let d = crate::act::parse_for("--for", duration)?;
    let store = Store::open(&config.store.location()).await?;
    let until = crate::act::mute_chat(&store, jid, d, reason, clock.now()).await?;
    say!(
        "Muted {jid} until {} ({}).",
        utc_time(until),
        short_duration(d.as_secs() as i64)
    );
    Ok(ExitCode::SUCCESS)
}

/// `report [--since D] [--instance NAME] [--format F]`: closed episodes, from the store.
pub async fn report(
    config: &Config,
    since: &str,
    instance: Option<&str>,
    format: ReportFormat,
    clock: &Clock,
) -> Result<ExitCode, CliError> {
    let d = crate::duration::parse(since).map_err(|e| CliError::Usage(format!("--since: {e}")))?;
    if d.is_zero() {
        return Err(CliError::Usage("--since must be more than 0s".into()));
    }
    let now = clock.now();
    let report = match existing_store(config).await? {
        Some(store) => {
            crate::status::report(&store, config, now, d.as_secs() as i64, instance).await?
        }
        None => {
            let tz = crate::report::timezone(&config.policy);
            let from = crate::report::window_start(now, d.as_secs() as i64, tz);
            crate::report::build(&[], &config.policy, from, now)
        }
    };
    if let Some(name) = instance
        && let Some(why) = crate::status::unknown_instance(config, &report, name)
    {
        return Err(CliError::Usage(format!("--instance {name}: {why}")));
    }
    match format {
        ReportFormat::Text => say!("{}", report.text().trim_end_matches('\n')),
        ReportFormat::Json => say!("{}", report.json()),
        ReportFormat::Csv => say!("{}", report.csv().trim_end_matches('\n')),
    }
    Ok(ExitCode::SUCCESS)
}

/// `ack JID [--by NAME] [--for DURATION] [--instance NAME]`: "I'm on it". A chat with
/// no open episode is an error (exit 2), never a silent success.
pub async fn ack(
    config: &Config,
    jid: &str,
    by: Option<&str>,
    duration: Option<&str>,
    instance: Option<&str>,
    clock: &Clock,
) -> Result<ExitCode, CliError> {
    let hold = duration
        .map(|d| crate::act::parse_for("--for", d))
        .transpose()?;
    let by = match by {
        Some(b) => b.to_string(),
        None => login_name(),
    };
    if let Some(name) = instance
        && !config.instances.iter().any(|i| i.name == name)
    {
        return Err(CliError::Usage(format!(
            "--instance: no instance is named \"{name}\""
        )));
    }
    let store = Store::open(&config.store.location()).await?;
    let now = clock.now();
    let acked =
        crate::act::acknowledge(&store, &config.policy, instance, jid, &by, hold, now).await?;
    let ack = acked.episode.ack.as_ref();
    say!(
        "Acknowledged {jid} ({}) for {}: no further tier fires before {}; the channels that were paged hear it at the next cycle.",
        acked.instance,
        ack.map_or(by.clone(), |a| a.by.clone()),
        utc_time(ack.map_or(now, |a| a.until))
    );
    Ok(ExitCode::SUCCESS)
}

/// Who is at the shell: the user behind `sudo`, else the login name.
fn login_name() -> String {
    ["SUDO_USER", "LOGNAME", "USER"]
        .iter()
        .filter_map(|k| std::env::var(k).ok())
        .find(|v| !v.trim().is_empty())
        .unwrap_or_else(|| "someone at the shell".to_string())
}

/// `unmute JID`
pub async fn unmute(config: &Config, jid: &str) -> Result<ExitCode, CliError> {
    crate::act::check_jid(jid)?;
    let store = Store::open(&config.store.location()).await?;
    if crate::act::unmute(&store, jid).await? {
        say!("Unmuted {jid}; it escalates at the next cycle if it is still waiting.");
    } else {
        say!("{jid} was not muted.");
    }
    Ok(ExitCode::SUCCESS)
}

/// `test-notify [--channel NAME]`
pub async fn test_notify(
    config: &Config,
    only: Option<&str>,
    clock: &Clock,
) -> Result<ExitCode, CliError> {
    let channels = channels(config)?;
    let names: Vec<String> = match only {
        Some(n) if channels.contains_key(n) => vec![n.to_string()],
        Some(n) => {
            return Err(CliError::Usage(format!(
                "--channel: no channel is named \"{n}\" (channels: {})",
                config.channel_names().join(", ")
            )));
        }
        None => config.channel_names(),
    };
    let mut failed = false;
    for name in names {
        let Some(channel) = channels.get(&name) else {
            continue;
        };
        let doc = AlertDoc::test(&name, clock.now());
        match channel.test(&doc).await {
            Ok(said) => say!(
                "{name} ({}): delivered; the receiver said: {said}",
                channel.type_name()
            ),
            Err(e) => {
                failed = true;
                say!("{name} ({}): FAILED: {e}", channel.type_name());
            }
        }
    }
    Ok(ExitCode::from(if failed { EXIT_RUNTIME } else { EXIT_OK }))
}
