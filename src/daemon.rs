//! The `run` daemon (PRODUCT.md section 7): the poll loops, the delivery loop, signals,
//! reload, the systemd notify protocol and the HTTP endpoints.
//!
//! Each instance has its own loop (never two cycles of one instance at once; a missed tick
//! is delayed, not burst), at most [`MAX_CONCURRENT_POLLS`] polling at once. Delivery runs
//! in its own task, woken when a cycle enqueues, so polling never waits on a receiver.
//! Shutdown and reload are futures and channels, so tests drive them without signals.

use crate::commands::{self, CliError};
use crate::config::Config;
use crate::cycle::{self, CycleError, Summary};
use crate::deliver;
use crate::http::{self, Health};
use crate::notify::Channels;
use crate::store::StoreHandle;
use crate::wawp::WawpClient;
use sd_notify::NotifyState;
use std::collections::HashMap;
use std::future::Future;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::{Semaphore, watch};
use tokio::task::JoinSet;

pub const MAX_CONCURRENT_POLLS: usize = 8;
/// How long a poll cycle under way gets to finish on shutdown or reload.
const POLL_STOP_GRACE: Duration = Duration::from_secs(2);
/// How long in-flight deliveries get on shutdown.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);
/// Sent notifications are kept this long for `alerts --all`, then pruned.
const KEEP_SENT: i64 = 7 * 86400;

/// What the poll and delivery loops need; replaced whole on reload.
struct Runtime {
    config: Arc<Config>,
    channels: Channels,
    client: WawpClient,
}

/// Progress of the poll loops, for the watchdog and `STATUS=`.
#[derive(Default)]
struct Progress {
    /// Per instance: when its running cycle began (`None`: idle).
    busy_since: HashMap<String, Option<Instant>>,
    last: HashMap<String, (Instant, Result<Summary, String>)>,
}

type Shared<T> = Arc<Mutex<T>>;

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

fn notify(states: &[NotifyState]) {
    // Without NOTIFY_SOCKET this does nothing; a failure to reach systemd is not fatal.
    if let Err(e) = sd_notify::notify(states) {
        tracing::debug!("sd_notify failed: {e}");
    }
}

/// Runs until SIGTERM, SIGINT or `shutdown` resolves. `path` is re-read on SIGHUP.
pub async fn run(
    path: PathBuf,
    config: Config,
    shutdown: impl Future<Output = ()>,
) -> Result<(), CliError> {
    let metrics = match &config.http {
        Some(_) => {
            let recorder = metrics_exporter_prometheus::PrometheusBuilder::new().build_recorder();
            let handle = recorder.handle();
            metrics::set_global_recorder(recorder).map_err(|e| {
                CliError::Runtime(format!("cannot install the metrics recorder: {e}"))
            })?;
            http::describe();
            Some(handle)
        }
        None => None,
    };
    let store = commands::open_store(&config)?;
    let runtime = Arc::new(Runtime {
        channels: commands::channels(&config)?,
        client: commands::client(&config)?,
        config: Arc::new(config),
    });
    let health = Health::default();
    health.configure(
        runtime
            .config
            .instances
            .iter()
            .map(|i| i.name.clone())
            .collect(),
        runtime.config.sla.poll_interval,
    );

    let (stop_http_tx, mut stop_http_rx) = watch::channel(false);
    let http_task = match (&runtime.config.http, metrics) {
        (Some(h), Some(handle)) => {
            let listener = tokio::net::TcpListener::bind(h.listen).await.map_err(|e| {
                CliError::Runtime(format!("http.listen {}: cannot listen: {e}", h.listen))
            })?;
            tracing::info!("serving /metrics and /healthz on http://{}", h.listen);
            let health = health.clone();
            Some(tokio::spawn(async move {
                let stop = async move {
                    let _ = stop_http_rx.changed().await;
                };
                if let Err(e) = http::serve(listener, handle, health, stop).await {
                    tracing::error!("the HTTP endpoint failed: {e}");
                }
            }))
        }
        _ => None,
    };

    let progress: Shared<Progress> = Arc::default();
    let (wake, _) = watch::channel(0u64);
    let mut deliverers = Deliverers::start(&runtime, &store, &wake);

    let mut pollers = Pollers::start(&runtime, &store, &progress, &health, &wake);
    let watchdog = sd_notify::watchdog_enabled()
        .map(|every| tokio::spawn(watchdog_loop(every, progress.clone())));

    tracing::info!(
        instances = runtime.config.instances.len(),
        channels = runtime.config.channels.len(),
        poll_interval = %humantime::format_duration(runtime.config.sla.poll_interval),
        store = %runtime.config.store.path.display(),
        "inbox-sla is running"
    );
    notify(&[
        NotifyState::Ready,
        NotifyState::Status("started; first poll under way"),
    ]);

    let mut hup = signal(tokio::signal::unix::SignalKind::hangup())?;
    let mut term = signal(tokio::signal::unix::SignalKind::terminate())?;
    let mut int = signal(tokio::signal::unix::SignalKind::interrupt())?;
    tokio::pin!(shutdown);
    let mut current = runtime;
    loop {
        tokio::select! {
            _ = &mut shutdown => break,
            _ = term.recv() => { tracing::info!("SIGTERM: shutting down"); break }
            _ = int.recv() => { tracing::info!("SIGINT: shutting down"); break }
            _ = hup.recv() => {
                if let Some(next) = reload(&path, &current) {
                    notify(&[NotifyState::Reloading]);
                    pollers.stop(POLL_STOP_GRACE).await;
                    health.configure(next.config.instances.iter().map(|i| i.name.clone()).collect(), next.config.sla.poll_interval);
                    deliverers.stop(next.config.delivery.timeout + Duration::from_secs(2)).await;
                    deliverers = Deliverers::start(&next, &store, &wake);
                    pollers = Pollers::start(&next, &store, &progress, &health, &wake);
                    current = next;
                    tracing::info!("configuration reloaded from {}", path.display());
                    notify(&[NotifyState::Ready, NotifyState::Status("configuration reloaded")]);
                }
            }
        }
    }

    notify(&[NotifyState::Stopping]);
    pollers.stop(POLL_STOP_GRACE).await;
    if !deliverers.stop(SHUTDOWN_GRACE).await {
        tracing::warn!(
            "deliveries still in flight after {}s; they stay queued and go out after the next start",
            SHUTDOWN_GRACE.as_secs()
        );
    }
    if let Some(w) = watchdog {
        w.abort();
    }
    let _ = stop_http_tx.send(true);
    if let Some(h) = http_task {
        let _ = tokio::time::timeout(Duration::from_secs(2), h).await;
    }
    tracing::info!("stopped");
    Ok(())
}

fn signal(kind: tokio::signal::unix::SignalKind) -> Result<tokio::signal::unix::Signal, CliError> {
    tokio::signal::unix::signal(kind)
        .map_err(|e| CliError::Runtime(format!("cannot install a signal handler: {e}")))
}

/// Loads the config again; `None` (with the reason logged) keeps the running one.
fn reload(path: &std::path::Path, current: &Runtime) -> Option<Arc<Runtime>> {
    let config = match Config::load(path) {
        Ok(c) => c,
        Err(e) => {
            tracing::error!(
                "SIGHUP: the new configuration is invalid, keeping the running one: {e}"
            );
            return None;
        }
    };
    for w in &config.warnings {
        tracing::warn!("{w}");
    }
    if config.store.path != current.config.store.path {
        tracing::warn!(
            "SIGHUP: store.path changed; the store stays at {} until a restart",
            current.config.store.path.display()
        );
    }
    if config.http.as_ref().map(|h| h.listen) != current.config.http.as_ref().map(|h| h.listen) {
        tracing::warn!("SIGHUP: http.listen changed; it takes effect at the next restart");
    }
    let channels = match commands::channels(&config) {
        Ok(c) => c,
        Err(e) => {
            tracing::error!("SIGHUP: keeping the running configuration: {e}");
            return None;
        }
    };
    let client = match commands::client(&config) {
        Ok(c) => c,
        Err(e) => {
            tracing::error!("SIGHUP: keeping the running configuration: {e}");
            return None;
        }
    };
    Some(Arc::new(Runtime {
        config: Arc::new(config),
        channels,
        client,
    }))
}

/// A set of running loops that stop together.
struct Workers {
    stop: watch::Sender<bool>,
    tasks: JoinSet<()>,
}

impl Workers {
    /// Tells every loop to stop and waits up to `grace`; loops still running then are
    /// dropped. Returns whether all finished in time.
    async fn stop(&mut self, grace: Duration) -> bool {
        let _ = self.stop.send(true);
        let drained = tokio::time::timeout(grace, async {
            while self.tasks.join_next().await.is_some() {}
        })
        .await;
        if drained.is_err() {
            self.tasks.abort_all();
            while self.tasks.join_next().await.is_some() {}
        }
        drained.is_ok()
    }
}

/// The running poll loops, one per instance. Stopping them drops a cycle still under way
/// after the grace: an unfinished fetch loses nothing, and a commit already handed to the
/// store completes on its own thread (it is one transaction either way).
struct Pollers;

impl Pollers {
    fn start(
        runtime: &Arc<Runtime>,
        store: &StoreHandle,
        progress: &Shared<Progress>,
        health: &Health,
        wake: &watch::Sender<u64>,
    ) -> Workers {
        let (stop, stop_rx) = watch::channel(false);
        let limit = Arc::new(Semaphore::new(MAX_CONCURRENT_POLLS));
        let mut tasks = JoinSet::new();
        {
            let mut p = lock(progress);
            p.busy_since.clear();
            p.last
                .retain(|k, _| runtime.config.instances.iter().any(|i| &i.name == k));
        }
        for (index, instance) in runtime.config.instances.iter().enumerate() {
            let ctx = PollContext {
                runtime: runtime.clone(),
                store: store.clone(),
                progress: progress.clone(),
                health: health.clone(),
                wake: wake.clone(),
                limit: limit.clone(),
                index,
            };
            lock(progress)
                .busy_since
                .insert(instance.name.clone(), None);
            tasks.spawn(poll_loop(ctx, stop_rx.clone()));
        }
        Workers { stop, tasks }
    }
}

struct PollContext {
    runtime: Arc<Runtime>,
    store: StoreHandle,
    progress: Shared<Progress>,
    health: Health,
    /// Bumped when a cycle enqueued something: the delivery workers look at once.
    wake: watch::Sender<u64>,
    limit: Arc<Semaphore>,
    index: usize,
}

async fn poll_loop(ctx: PollContext, mut stop: watch::Receiver<bool>) {
    let config = &ctx.runtime.config;
    let instance = &config.instances[ctx.index];
    let mut ticks = tokio::time::interval(config.sla.poll_interval);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = ticks.tick() => {}
            _ = stop.changed() => return,
        }
        let Ok(_permit) = ctx.limit.acquire().await else {
            return;
        };
        if *stop.borrow() {
            return;
        }
        let started = Instant::now();
        lock(&ctx.progress)
            .busy_since
            .insert(instance.name.clone(), Some(started));
        let result = cycle::run(
            &ctx.runtime.client,
            &ctx.store,
            config,
            instance,
            commands::now(),
        )
        .await;
        let name = instance.name.clone();
        let labels = [("instance", name.clone())];
        match &result {
            Ok(summary) => {
                commands::log_summary(summary, false);
                ctx.health.polled_ok(&name);
                metrics::counter!("inbox_sla_polls_total", "instance" => name.clone(), "result" => "ok").increment(1);
                metrics::histogram!("inbox_sla_poll_duration_seconds", &labels)
                    .record(summary.poll_seconds);
                metrics::gauge!("inbox_sla_chats_waiting", &labels).set(summary.waiting as f64);
                metrics::gauge!("inbox_sla_chats_breached", &labels).set(summary.breached as f64);
                metrics::gauge!("inbox_sla_last_successful_poll_timestamp_seconds", &labels)
                    .set(commands::now() as f64);
                if summary.enqueued > 0 {
                    ctx.wake.send_modify(|n| *n += 1);
                }
            }
            Err(CycleError::Poll(e)) => {
                tracing::error!("{e}");
                metrics::counter!("inbox_sla_polls_total", "instance" => name.clone(), "result" => e.label()).increment(1);
                ctx.wake.send_modify(|n| *n += 1); // a blind alert may have been enqueued
            }
            Err(e) => {
                tracing::error!(instance = %name, "cycle failed: {e}");
                metrics::counter!("inbox_sla_polls_total", "instance" => name.clone(), "result" => "store").increment(1);
            }
        }
        let status = {
            let mut p = lock(&ctx.progress);
            p.busy_since.insert(name.clone(), None);
            p.last
                .insert(name, (Instant::now(), result.map_err(|e| e.to_string())));
            status_line(&p)
        };
        notify(&[NotifyState::Status(&status)]);
    }
}

/// "3 waiting, 1 breached, last poll 12s ago" over every instance.
fn status_line(p: &Progress) -> String {
    let (mut waiting, mut breached, mut failing) = (0, 0, 0);
    let mut newest: Option<Instant> = None;
    for (at, r) in p.last.values() {
        match r {
            Ok(s) => {
                waiting += s.waiting;
                breached += s.breached;
            }
            Err(_) => failing += 1,
        }
        newest = Some(newest.map_or(*at, |n| n.max(*at)));
    }
    let ago = newest.map_or("never".to_string(), |t| {
        format!("{}s ago", t.elapsed().as_secs())
    });
    let mut line = format!("{waiting} waiting, {breached} breached, last poll {ago}");
    if failing > 0 {
        line.push_str(&format!(", {failing} instance(s) failing"));
    }
    line
}

/// Pings the systemd watchdog while no poll cycle is stuck.
async fn watchdog_loop(every: Duration, progress: Shared<Progress>) {
    let mut ticks = tokio::time::interval(every / 3);
    loop {
        ticks.tick().await;
        let stuck = lock(&progress)
            .busy_since
            .iter()
            .find(|(_, since)| since.is_some_and(|s| s.elapsed() > every))
            .map(|(name, _)| name.clone());
        match stuck {
            None => {
                // STATUS= is refreshed too, so "last poll 12s ago" stays true between polls.
                let status = status_line(&lock(&progress));
                notify(&[NotifyState::Watchdog, NotifyState::Status(&status)]);
            }
            Some(name) => tracing::error!(
                instance = %name,
                "a poll cycle has been running for longer than the watchdog interval; not pinging the watchdog"
            ),
        }
    }
}

/// The delivery workers: one per channel, so a hung receiver holds up only its own
/// channel, plus one for outbox housekeeping. Stopping them lets each make a last pass;
/// what is still in flight after the grace stays pending in the store.
struct Deliverers;

impl Deliverers {
    fn start(runtime: &Arc<Runtime>, store: &StoreHandle, wake: &watch::Sender<u64>) -> Workers {
        let (stop, stop_rx) = watch::channel(false);
        let mut tasks = JoinSet::new();
        for (name, channel) in runtime.channels.iter() {
            tasks.spawn(channel_loop(
                store.clone(),
                name.clone(),
                channel.clone(),
                runtime.config.delivery.retry_for,
                wake.subscribe(),
                stop_rx.clone(),
            ));
        }
        let names: Vec<String> = runtime.channels.keys().cloned().collect();
        tasks.spawn(housekeeping_loop(
            store.clone(),
            names,
            wake.subscribe(),
            stop_rx,
        ));
        Workers { stop, tasks }
    }
}

/// Delivers one channel's notifications as they fall due, until told to stop, then makes
/// one last pass.
async fn channel_loop(
    store: StoreHandle,
    name: String,
    channel: Arc<crate::notify::Channel>,
    retry_for: Duration,
    mut wake: watch::Receiver<u64>,
    mut stop: watch::Receiver<bool>,
) {
    let clock = deliver::system_clock();
    loop {
        match deliver::deliver_channel(&store, &name, &channel, retry_for, &clock).await {
            Ok(r) if r.sent + r.retrying + r.dead > 0 => outbox_gauges(&store).await,
            Ok(_) => {}
            Err(e) => tracing::error!(channel = %name, "delivery pass failed: {e}"),
        }
        if *stop.borrow() {
            return;
        }
        let owned = name.clone();
        let wait = match store.call(move |s| s.next_due_ms(&owned)).await {
            Ok(next) => next.map_or(Duration::from_secs(30), |ms| {
                Duration::from_millis((ms - clock()).clamp(20, 30_000) as u64)
            }),
            Err(e) => {
                tracing::error!(channel = %name, "outbox: {e}");
                Duration::from_secs(5)
            }
        };
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = wake.changed() => {}
            _ = stop.changed() => {} // one last pass for what the final cycles enqueued
        }
    }
}

async fn outbox_gauges(store: &StoreHandle) {
    match store
        .call(|s| Ok((s.outbox_count("pending")?, s.outbox_count("dead")?)))
        .await
    {
        Ok((pending, dead)) => {
            metrics::gauge!("inbox_sla_outbox_pending").set(pending as f64);
            metrics::gauge!("inbox_sla_outbox_dead").set(dead as f64);
        }
        Err(e) => tracing::error!("outbox: {e}"),
    }
}

/// Outbox gauges, notifications for removed channels, and pruning of old sent rows.
async fn housekeeping_loop(
    store: StoreHandle,
    channels: Vec<String>,
    mut wake: watch::Receiver<u64>,
    mut stop: watch::Receiver<bool>,
) {
    let mut last_prune = 0i64;
    loop {
        let now = commands::now();
        let prune = now - last_prune > 3600;
        let names = channels.clone();
        let result = store
            .call(move |s| {
                let orphans = s.kill_orphans(&names, now)?;
                if prune {
                    s.prune_sent(now - KEEP_SENT)?;
                }
                Ok(orphans)
            })
            .await;
        outbox_gauges(&store).await;
        match result {
            Ok(orphans) => {
                for (id, channel) in orphans {
                    tracing::error!(id, channel = %channel, "notification is dead: its channel is no longer configured");
                }
                if prune {
                    last_prune = now;
                }
            }
            Err(e) => tracing::error!("outbox housekeeping failed: {e}"),
        }
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_secs(15)) => {}
            _ = wake.changed() => {}
            _ = stop.changed() => return,
        }
    }
}
