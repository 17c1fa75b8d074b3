//! The command line's commands (PRODUCT.md section 3), each a function returning an exit
//! code. `main` parses arguments and sets up logging; everything else is here, so tests
//! and the demo call the same code the binary runs.

use crate::alert::{AlertChat, AlertDoc, Status, short_duration, utc_time};
use crate::config::{Config, ConfigError};
use crate::cycle::{self, CycleError, Summary};
use crate::deliver;
use crate::notify::{self, Channels};
use crate::sla::EventKind;
use crate::store::{Store, StoreError, StoreHandle};
use crate::wawp::WawpClient;
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

pub fn now() -> i64 {
    chrono::Utc::now().timestamp()
}

/// Loads the config and logs its warnings.
pub fn load_config(path: &Path) -> Result<Config, CliError> {
    let config = Config::load(path)?;
    for w in &config.warnings {
        tracing::warn!("{w}");
    }
    Ok(config)
}

/// `check`: prints the effective configuration with secrets as `***`.
pub fn check(config: &Config, path: &Path) -> ExitCode {
    say!("# {}: valid", path.display());
    for w in &config.warnings {
        say!("# warning: {w}");
    }
    say!("{}", config.render().trim_end());
    ExitCode::SUCCESS
}

pub fn client(config: &Config) -> Result<WawpClient, CliError> {
    WawpClient::new(&config.wawp)
        .map_err(|e| CliError::Runtime(format!("cannot build the HTTP client: {e}")))
}

pub fn channels(config: &Config) -> Result<Channels, CliError> {
    notify::build(config).map_err(|e| CliError::Usage(e.to_string()))
}

pub fn open_store(config: &Config) -> Result<StoreHandle, CliError> {
    Ok(StoreHandle::new(Store::open(&config.store.path)?))
}

/// Polls every instance concurrently (at most 4 at once) and commits each one's cycle.
pub async fn poll_all(
    client: &WawpClient,
    store: &StoreHandle,
    config: &Arc<Config>,
    now: i64,
) -> Vec<Result<Summary, CycleError>> {
    let limit = Arc::new(tokio::sync::Semaphore::new(4));
    let mut tasks = tokio::task::JoinSet::new();
    for (i, instance) in config.instances.iter().cloned().enumerate() {
        let (client, store, config, limit) =
            (client.clone(), store.clone(), config.clone(), limit.clone());
        tasks.spawn(async move {
            let _permit = limit.acquire_owned().await;
            (
                i,
                cycle::run(&client, &store, &config, &instance, now).await,
            )
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

/// One line per cycle. The daemon logs quiet cycles (nothing enqueued) at debug, so an
/// idle inbox keeps a quiet journal (`STATUS=` and `/metrics` still show it); `once`
/// always says what it saw.
pub fn log_summary(s: &Summary, always: bool) {
    macro_rules! summary {
        ($level:expr) => {
            tracing::event!(
                $level,
                instance = %s.instance,
                chats = s.chats,
                waiting = s.waiting,
                breached = s.breached,
                escalated = s.escalated,
                resolved = s.resolved,
                enqueued = s.enqueued,
                rows_written = s.rows_written,
                bytes = s.bytes,
                "cycle done"
            )
        };
    }
    if always || s.enqueued > 0 {
        summary!(tracing::Level::INFO);
    } else {
        summary!(tracing::Level::DEBUG);
    }
}

/// `once`: one cycle over every instance, then one delivery pass.
pub async fn once(config: Config, dry_run: bool) -> Result<ExitCode, CliError> {
    let config = Arc::new(config);
    let client = client(&config)?;
    if dry_run {
        return dry_run_once(&client, &config).await;
    }
    let channels = channels(&config)?;
    let store = open_store(&config)?;
    let mut failed = false;
    for result in poll_all(&client, &store, &config, now()).await {
        match result {
            Ok(summary) => log_summary(&summary, true),
            Err(CycleError::Store(e)) => return Err(e.into()),
            Err(e) => {
                tracing::error!("{e}");
                failed = true;
            }
        }
    }
    let report = deliver::deliver_due(
        &store,
        &channels,
        config.delivery.retry_for,
        &deliver::system_clock(),
    )
    .await?;
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

async fn dry_run_once(client: &WawpClient, config: &Arc<Config>) -> Result<ExitCode, CliError> {
    let store = Store::open_read_only(&config.store.path)?.map(StoreHandle::new);
    let now = now();
    let mut failed = false;
    for instance in &config.instances {
        match cycle::plan(client, store.as_ref(), config, instance, now).await {
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

/// `alerts`: open episodes, mutes, and pending or dead notifications.
pub fn alerts(config: &Config, all: bool) -> Result<ExitCode, CliError> {
    let Some(store) = Store::open_read_only(&config.store.path)? else {
        say!(
            "No store yet at {}: nothing has been polled.",
            config.store.path.display()
        );
        return Ok(ExitCode::SUCCESS);
    };
    let now = now();
    let episodes = store.all_episodes()?;
    let shown: Vec<_> = episodes
        .iter()
        .filter(|(_, e)| all || e.tiers_fired > 0)
        .collect();
    say!(
        "Open episodes: {} waiting, {} escalated{}",
        episodes.len(),
        episodes.iter().filter(|(_, e)| e.tiers_fired > 0).count(),
        if all {
            ""
        } else {
            " (shown; --all shows every waiting chat)"
        }
    );
    let mutes = store.mutes(now)?;
    for (instance, ep) in shown {
        say!(
            "  {instance}  {}  {}  waiting since {} ({})  tiers fired {}  {}{}",
            ep.jid,
            notify::text::one_line(ep.name.as_deref().unwrap_or("(no name)")),
            utc_time(ep.started_at),
            short_duration(now - ep.started_at),
            ep.tiers_fired,
            match ep.unread {
                Some(-1) => "marked unread".to_string(),
                Some(n) => format!("{n} unread"),
                None => "unread unknown".to_string(),
            },
            if mutes.iter().any(|m| m.jid == ep.jid) {
                "  (muted)"
            } else {
                ""
            },
        );
    }
    say!("Mutes: {}", mutes.len());
    for m in mutes {
        say!(
            "  {}  until {} ({} left){}",
            m.jid,
            utc_time(m.until),
            short_duration(m.until - now),
            m.reason
                .map(|r| format!("  reason: {r}"))
                .unwrap_or_default()
        );
    }
    let pending = store.outbox("pending", 200)?;
    say!("Pending notifications: {}", store.outbox_count("pending")?);
    for q in pending.iter().rev() {
        say!(
            "  #{} {} → {}  {} chats  attempts {}  next {}{}",
            q.id,
            q.doc.status.as_str(),
            q.channel,
            q.doc.chats.len(),
            q.attempts,
            utc_time(q.next_attempt_ms / 1000),
            q.last_error
                .as_deref()
                .map(|e| format!("  last error: {e}"))
                .unwrap_or_default()
        );
    }
    let dead = store.outbox("dead", 50)?;
    say!("Dead notifications: {}", store.outbox_count("dead")?);
    for q in &dead {
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
    if all {
        let sent = store.outbox("sent", 20)?;
        say!("Recently sent: {}", sent.len());
        for q in &sent {
            say!(
                "  #{} {} → {}  {} chats  at {}",
                q.id,
                q.doc.status.as_str(),
                q.channel,
                q.doc.chats.len(),
                utc_time(q.done_at.unwrap_or(q.created_at))
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn check_jid(jid: &str) -> Result<(), CliError> {
    if jid.contains('@') && !jid.chars().any(char::is_whitespace) {
        Ok(())
    } else {
        Err(CliError::Usage(format!(
            "\"{jid}\" is not a chat JID like 201234567890@c.us or 120363000000000001@g.us"
        )))
    }
}

/// `mute JID --for DURATION [--reason TEXT]`
pub fn mute(
    config: &Config,
    jid: &str,
    duration: &str,
    reason: Option<&str>,
) -> Result<ExitCode, CliError> {
    check_jid(jid)?;
    let d = humantime::parse_duration(duration).map_err(|e| {
        CliError::Usage(format!(
            "--for: \"{duration}\" is not a duration like 4h ({e})"
        ))
    })?;
    if d.is_zero() {
        return Err(CliError::Usage("--for must be more than 0s".into()));
    }
    let store = Store::open(&config.store.path)?;
    let now = now();
    let until = now + d.as_secs() as i64;
    store.mute(jid, until, reason, now)?;
    say!(
        "Muted {jid} until {} ({}).",
        utc_time(until),
        short_duration(d.as_secs() as i64)
    );
    Ok(ExitCode::SUCCESS)
}

/// `unmute JID`
pub fn unmute(config: &Config, jid: &str) -> Result<ExitCode, CliError> {
    check_jid(jid)?;
    let store = Store::open(&config.store.path)?;
    if store.unmute(jid)? {
        say!("Unmuted {jid}; it escalates at the next cycle if it is still waiting.");
    } else {
        say!("{jid} was not muted.");
    }
    Ok(ExitCode::SUCCESS)
}

/// A test document: clearly marked, with one sample chat so the layout can be judged.
pub fn test_document(channel: &str, now: i64) -> AlertDoc {
    let host = std::env::var("HOSTNAME").unwrap_or_else(|_| "this host".into());
    AlertDoc {
        version: 1,
        status: Status::Test,
        instance: channel.to_string(),
        tier: None,
        sent_at: now,
        chats: vec![AlertChat {
            id: "000000000000@c.us".into(),
            name: Some("TEST — not a customer".into()),
            kind: "individual".into(),
            unread_count: Some(1),
            waiting_since: now - 2 * 3600 - 12 * 60,
            waiting_seconds: 2 * 3600 + 12 * 60,
            sla_seconds: 2 * 3600 + 12 * 60,
            tier: 0,
            repeat: false,
            last_message: None,
        }],
        message: Some(format!(
            "TEST: this is a test message from inbox-sla on {host} through channel \"{channel}\". No customer is waiting."
        )),
    }
}

/// `test-notify [--channel NAME]`
pub async fn test_notify(config: &Config, only: Option<&str>) -> Result<ExitCode, CliError> {
    let channels = channels(config)?;
    let names: Vec<String> = match only {
        Some(n) if channels.contains_key(n) => vec![n.to_string()],
        Some(n) => {
            return Err(CliError::Usage(format!(
                "--channel: no channel is named \"{n}\" (channels: {})",
                config
                    .channels
                    .iter()
                    .map(|c| c.name.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            )));
        }
        None => config.channels.iter().map(|c| c.name.clone()).collect(),
    };
    let mut failed = false;
    for name in names {
        let Some(channel) = channels.get(&name) else {
            continue;
        };
        let doc = test_document(&name, now());
        match channel.send(&doc).await {
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
