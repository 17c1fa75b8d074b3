//! The `run` daemon (docs/spec.md section 7): the poll loops, the delivery loops, signals,
//! reload, the systemd notify protocol, HA leases and the HTTP endpoints.
//!
//! Each instance has its own loop (never two cycles of one instance at once; a missed tick
//! is delayed, not burst), offset so that many instances spread over the interval, with at
//! most `wawp.max_concurrent` polls in flight. Under HA (a PostgreSQL store) a loop polls
//! only while this node holds the instance's lease, and commits with its fencing number.
//! Delivery runs on one task per channel, woken when a cycle enqueues, so polling never
//! waits on a receiver and a slow receiver never holds up another channel. The watchdog
//! is fed while cycles make progress, not merely while they run. Shutdown and reload are
//! a [`Control`] channel that `main` feeds from signals, so a test runs the daemon
//! in-process; time comes from one [`Clock`] and tokio's timers, so a paused tokio
//! clock drives all of it.

use crate::clock::Clock;
use crate::config::{Config, HaConfig};
use crate::cycle::{self, CycleError, Summary};
use crate::deliver;
use crate::gauges::Gauges;
use crate::http::{self, Health};
use crate::notify::{self, Channels};
use crate::outbox::Outbox;
use crate::store::{Store, StoreError};
use crate::systemd::Notifier;
use crate::wawp::{Transport, WawpClient};
use metrics_exporter_prometheus::PrometheusHandle;
use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{Semaphore, mpsc, watch};
use tokio::task::JoinSet;
use tokio::time::Instant;

/// How long a poll cycle under way gets to finish on shutdown or reload.
const POLL_STOP_GRACE: Duration = Duration::from_secs(2);
/// How long in-flight deliveries get on shutdown.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);
/// Sent notifications are kept this long for `alerts --all`, then pruned.
const KEEP_SENT: i64 = 7 * 86400;
/// How often housekeeping runs (gauges, orphans, owed outcomes) and prunes.
const HOUSEKEEPING_EVERY: Duration = Duration::from_secs(15);
const PRUNE_EVERY: i64 = 3600;

/// Why the daemon could not start.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Channels(#[from] notify::BuildError),
    #[error("{0}")]
    Start(String),
}

/// What the poll and delivery loops need; replaced whole on reload.
struct Runtime {
    config: Arc<Config>,
    channels: Channels,
    client: WawpClient,
}

impl Runtime {
    fn build(
        config: Config,
        transport: Option<Arc<dyn Transport>>,
        clock: &Clock,
    ) -> Result<Runtime, Error> {
        let mut wawp = config.wawp.clone();
        wawp.request_timeout = request_timeout(wawp.request_timeout, sd_notify::watchdog_enabled());
        let client = match transport {
            Some(t) => WawpClient::with_transport(&wawp, t),
            None => WawpClient::new(&wawp)
                .map_err(|e| Error::Start(format!("cannot build the HTTP client: {e}")))?,
        };
        Ok(Runtime {
            channels: notify::build(notify::Plan {
                clock: clock.clone(),
                ..(&config).into()
            })?,
            client,
            config: Arc::new(config),
        })
    }
}

/// A Wawp request's time limit: `wawp.request_timeout`, and under a systemd watchdog never
/// more than half its interval (section 4). A hung source then fails the poll (and, if it
/// goes on, raises the blind alert) instead of starving the watchdog into restarting a
/// daemon that would only hang again.
fn request_timeout(configured: Duration, watchdog: Option<Duration>) -> Duration {
    match watchdog.map(|w| w / 2) {
        Some(cap) if cap < configured => {
            tracing::warn!(
                "wawp.request_timeout ({}) is longer than half the systemd watchdog interval; each request is cut at {}",
                crate::duration::format(configured),
                crate::duration::format(cap)
            );
            cap
        }
        _ => configured,
    }
}

/// Progress of the poll loops, for the watchdog and `STATUS=`.
#[derive(Default)]
struct Progress {
    /// Per instance with a cycle under way: when it last made progress.
    busy: HashMap<String, Instant>,
    last: HashMap<String, (Instant, Result<Summary, String>)>,
    /// What `last` sums to (waiting, breached, failing), kept as it changes: the status
    /// line is written after every poll, and summing 10,000 instances each time cost a
    /// tenth of the daemon's CPU.
    totals: (usize, usize, usize),
    newest: Option<Instant>,
}

impl Progress {
    fn counts(r: &Result<Summary, String>) -> (usize, usize, usize) {
        match r {
            Ok(s) => (s.waiting, s.breached, 0),
            Err(_) => (0, 0, 1),
        }
    }

    /// An instance's latest cycle.
    fn record(&mut self, name: String, at: Instant, result: Result<Summary, String>) {
        let (w, b, f) = Self::counts(&result);
        if let Some((_, old)) = self.last.insert(name, (at, result)) {
            let (ow, ob, of) = Self::counts(&old);
            self.totals = (self.totals.0 - ow, self.totals.1 - ob, self.totals.2 - of);
        }
        self.totals = (self.totals.0 + w, self.totals.1 + b, self.totals.2 + f);
        self.newest = Some(self.newest.map_or(at, |n| n.max(at)));
    }

    /// Forgets instances no longer configured (a reload), and sums again.
    fn retain(&mut self, keep: impl Fn(&str) -> bool) {
        self.last.retain(|k, _| keep(k));
        self.totals = self.last.values().fold((0, 0, 0), |t, (_, r)| {
            let (w, b, f) = Self::counts(r);
            (t.0 + w, t.1 + b, t.2 + f)
        });
        self.newest = self.last.values().map(|(at, _)| *at).max();
    }
}

type Shared<T> = Arc<Mutex<T>>;

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// Changes the log level of the running process (what `main` set up); `Err` says why not.
pub type SetLogLevel = Box<dyn Fn(&str) -> Result<(), String> + Send + Sync>;

/// What `main` (from signals) or a test tells a running daemon.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Control {
    /// Read the configuration file again and apply it (SIGHUP).
    Reload,
    /// Finish what is in hand and stop (SIGTERM, SIGINT).
    Shutdown,
}

/// Everything the daemon runs with. `main` builds it from the command line and the
/// process (signals, the metrics recorder, systemd); a test builds it from its own parts
/// and drives time with `tokio::time::pause()`.
pub struct Setup {
    /// Where the configuration is read again on [`Control::Reload`].
    pub path: PathBuf,
    pub config: Config,
    /// Every reading of the time: wall time from it, intervals from tokio's clock.
    pub clock: Clock,
    pub set_log_level: SetLogLevel,
    /// What `/metrics` renders: the recorder `main` installed ([`install_metrics`]).
    /// `None` serves no HTTP endpoint.
    pub metrics: Option<PrometheusHandle>,
    pub notifier: Notifier,
    /// How Wawp is reached; `None` is HTTP (a test passes an in-process source).
    pub wawp: Option<Arc<dyn Transport>>,
}

impl Setup {
    /// A daemon for `config` with no metrics, no systemd and a fixed log level; `main`
    /// and tests fill in what they have.
    pub fn new(path: PathBuf, config: Config, clock: Clock) -> Setup {
        Setup {
            path,
            config,
            clock,
            set_log_level: Box::new(|_| Ok(())),
            metrics: None,
            notifier: Notifier::default(),
            wawp: None,
        }
    }
}

/// Turns SIGHUP into [`Control::Reload`] and SIGTERM/SIGINT into [`Control::Shutdown`].
/// Installed before anything else starts, so a SIGTERM during start-up is a clean stop.
pub fn signals() -> Result<mpsc::UnboundedReceiver<Control>, Error> {
    use tokio::signal::unix::SignalKind;
    let mut hup = signal(SignalKind::hangup())?;
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    let (tx, rx) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        loop {
            let control = tokio::select! {
                _ = hup.recv() => Control::Reload,
                _ = term.recv() => { tracing::info!("SIGTERM: shutting down"); Control::Shutdown }
                _ = int.recv() => { tracing::info!("SIGINT: shutting down"); Control::Shutdown }
            };
            if tx.send(control).is_err() {
                return;
            }
        }
    });
    Ok(rx)
}

/// Installs the process's metrics recorder when the config serves HTTP (`/metrics`);
/// once per process, so `main` does it, not [`run`].
pub fn install_metrics(config: &Config) -> Result<Option<PrometheusHandle>, Error> {
    if config.http.is_none() {
        return Ok(None);
    }
    let (matcher, buckets) = http::wait_buckets();
    let recorder = metrics_exporter_prometheus::PrometheusBuilder::new()
        .set_buckets_for_metric(matcher, buckets)
        .map_err(|e| Error::Start(format!("cannot set the wait histogram's buckets: {e}")))?
        .build_recorder();
    let handle = recorder.handle();
    metrics::set_global_recorder(recorder)
        .map_err(|e| Error::Start(format!("cannot install the metrics recorder: {e}")))?;
    http::describe();
    Ok(Some(handle))
}

/// Runs until `control` says [`Control::Shutdown`] or closes. [`Control::Reload`] re-reads
/// `setup.path` and applies everything that can change without a restart (section 7), the
/// log level through `setup.set_log_level`.
pub async fn run(setup: Setup, mut control: mpsc::UnboundedReceiver<Control>) -> Result<(), Error> {
    let Setup {
        path,
        config,
        clock,
        set_log_level,
        metrics,
        notifier,
        wawp,
    } = setup;
    let store = Store::open(&config.store.location()).await?;
    let runtime = Arc::new(Runtime::build(config, wawp.clone(), &clock)?);
    let outbox = Arc::new(Outbox::new(
        store.clone(),
        clock.clone(),
        runtime.config.delivery.retry_for,
        runtime.config.delivery.timeout,
    ));
    let health = Health::default();
    health.configure(
        instance_names(&runtime.config),
        runtime.config.healthy_within(),
    );

    // Webhooks ring an instance's doorbell; its poll loop answers (section 7, events).
    let events = crate::events::Receiver::default();
    let current_config: http::CurrentConfig =
        Arc::new(std::sync::RwLock::new(runtime.config.clone()));
    let gauges = Arc::new(Gauges::default());
    let (stop_http_tx, mut stop_http_rx) = watch::channel(false);
    let http_task = match (&runtime.config.http, metrics) {
        (Some(h), Some(handle)) => {
            let listener = tokio::net::TcpListener::bind(h.listen).await.map_err(|e| {
                Error::Start(format!("http.listen {}: cannot listen: {e}", h.listen))
            })?;
            let bound = listener.local_addr().map_or(h.listen, |a| a);
            tracing::info!(
                "serving the status page, /metrics and /healthz on {}://{bound}{}",
                h.scheme(),
                match (&h.users_file, &h.auth_token) {
                    (Some(_), Some(_)) => " (the page and /api need a user or the bearer token)",
                    (Some(_), None) => " (the page and /api need a user)",
                    (None, Some(_)) => " (the page and /api need the bearer token)",
                    (None, None) => "",
                }
            );
            let health = health.clone();
            let events = events.clone();
            let gauges = gauges.clone();
            let source = http::StatusSource {
                store: store.clone(),
                config: current_config.clone(),
                clock: clock.clone(),
            };
            Some(tokio::spawn(async move {
                let stop = async move {
                    let _ = stop_http_rx.changed().await;
                };
                if let Err(e) = http::serve(
                    listener,
                    http::Metrics {
                        recorder: handle,
                        gauges,
                    },
                    health,
                    source,
                    events,
                    stop,
                )
                .await
                {
                    tracing::error!("the HTTP endpoint failed: {e}");
                }
            }))
        }
        _ => None,
    };

    let progress: Shared<Progress> = Arc::default();
    let (wake, _) = watch::channel(0u64);
    let loops = Loops {
        store: store.clone(),
        outbox: outbox.clone(),
        clock: clock.clone(),
        progress: progress.clone(),
        health: health.clone(),
        wake: wake.clone(),
        took_over: watch::channel(0u64).0,
        notifier: notifier.clone(),
        share: Share::default(),
        doorbells: events.doorbells.clone(),
        gauges: gauges.clone(),
    };
    let mut deliverers = loops.deliverers(&runtime);
    let mut pollers = loops.pollers(&runtime);
    let watchdog = sd_notify::watchdog_enabled()
        .map(|every| tokio::spawn(watchdog_loop(every, progress.clone(), notifier.clone())));

    tracing::info!(
        instances = runtime.config.instances.len(),
        channels = runtime.config.channels.len(),
        poll_interval = %crate::duration::format(runtime.config.sla().poll_interval),
        store = %store.describe(),
        node = runtime.config.ha.as_ref().map_or("", |h| h.node.as_str()),
        "inbox-sla is running"
    );
    notifier.ready("started; first poll under way");

    let mut current = runtime;
    loop {
        match control.recv().await {
            None | Some(Control::Shutdown) => break,
            Some(Control::Reload) => {
                if let Some(next) = reload(&path, &current, &store, wawp.clone(), &clock) {
                    notifier.reloading();
                    // What requests are judged by (the token, users) changes first: a
                    // rotated token must not keep working while the loops turn over.
                    *current_config.write().unwrap_or_else(|p| p.into_inner()) =
                        next.config.clone();
                    outbox.set_limits(next.config.delivery.retry_for, next.config.delivery.timeout);
                    if next.config.log.level != current.config.log.level
                        && let Err(e) = set_log_level(&next.config.log.level)
                    {
                        tracing::warn!("SIGHUP: log.level stays as it was: {e}");
                    }
                    pollers.stop(Stop::Reload, POLL_STOP_GRACE).await;
                    health.configure(instance_names(&next.config), next.config.healthy_within());
                    pollers = loops.pollers(&next);
                    // Old delivery loops finish the send in hand, without a last pass:
                    // the new ones take over the outbox (claims keep them apart).
                    deliverers
                        .stop(
                            Stop::Reload,
                            next.config.delivery.timeout + Duration::from_secs(2),
                        )
                        .await;
                    deliverers = loops.deliverers(&next);
                    current = next;
                    tracing::info!("configuration reloaded from {}", path.display());
                    notifier.ready("configuration reloaded");
                }
            }
        }
    }

    notifier.stopping();
    pollers.stop(Stop::Shutdown, POLL_STOP_GRACE).await;
    if !deliverers.stop(Stop::Shutdown, SHUTDOWN_GRACE).await {
        tracing::warn!(
            "deliveries still in flight after {}s; they stay queued and go out after the next start",
            SHUTDOWN_GRACE.as_secs()
        );
    }
    if let Err(e) = outbox.flush().await {
        tracing::error!(
            owed = outbox.owed(),
            "some delivery outcomes could not be recorded before exit ({e}); those notifications may be sent once more"
        );
    }
    if let Some(ha) = &current.config.ha {
        // Another node takes over now instead of after ha.lease.
        if let Err(e) = store.leave(&ha.node).await {
            tracing::warn!("could not leave the HA group: {e}");
        }
        if let Err(e) = store.release_leases(&ha.node, clock.now_ms()).await {
            tracing::warn!("could not release this node's leases: {e}");
        }
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

fn instance_names(config: &Config) -> Vec<String> {
    config.instances.iter().map(|i| i.name.clone()).collect()
}

fn signal(kind: tokio::signal::unix::SignalKind) -> Result<tokio::signal::unix::Signal, Error> {
    tokio::signal::unix::signal(kind)
        .map_err(|e| Error::Start(format!("cannot install a signal handler: {e}")))
}

/// Loads the config again; `None` (with the reason logged) keeps the running one.
fn reload(
    path: &Path,
    current: &Runtime,
    store: &Store,
    wawp: Option<Arc<dyn Transport>>,
    clock: &Clock,
) -> Option<Arc<Runtime>> {
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
    if config.store.location() != current.config.store.location() {
        tracing::warn!(
            "SIGHUP: the store changed; it stays {} until a restart",
            store.describe()
        );
    }
    if config.http.as_ref().map(|h| h.listen) != current.config.http.as_ref().map(|h| h.listen) {
        tracing::warn!("SIGHUP: http.listen changed; it takes effect at the next restart");
    }
    if config.http.as_ref().map(|h| h.scheme()) != current.config.http.as_ref().map(|h| h.scheme())
    {
        tracing::warn!(
            "SIGHUP: TLS was turned on or off (http.tls_cert_file); that takes effect at the next restart"
        );
    }
    if config.log.format != current.config.log.format {
        tracing::warn!("SIGHUP: log.format changed; it takes effect at the next restart");
    }
    match Runtime::build(config, wawp, clock) {
        Ok(r) => Some(Arc::new(r)),
        Err(e) => {
            tracing::error!("SIGHUP: keeping the running configuration: {e}");
            None
        }
    }
}

/// Why running loops are told to stop.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stop {
    Run,
    /// New loops take over at once: finish what is in hand, nothing more.
    Reload,
    /// The process exits: delivery loops make one last pass for what the final cycles
    /// enqueued.
    Shutdown,
}

/// A set of running loops that stop together.
struct Workers {
    stop: watch::Sender<Stop>,
    tasks: JoinSet<()>,
}

impl Workers {
    /// Tells every loop to stop and waits up to `grace`; loops still running then are
    /// dropped. Returns whether all finished in time.
    async fn stop(&mut self, why: Stop, grace: Duration) -> bool {
        let _ = self.stop.send(why);
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

/// What every loop shares, whatever the configuration.
struct Loops {
    store: Store,
    outbox: Arc<Outbox>,
    clock: Clock,
    progress: Shared<Progress>,
    health: Health,
    /// Bumped when a cycle enqueued something: the delivery loops look at once.
    wake: watch::Sender<u64>,
    /// Bumped when this node takes an instance over: Alertmanager hears its alerts at
    /// once, before the dying node's last ones run out.
    took_over: watch::Sender<u64>,
    notifier: Notifier,
    /// This node's share of the instances, in an HA group.
    share: Share,
    /// Rung by webhooks: the instance polls now (at most once a second).
    doorbells: crate::events::Doorbells,
    /// What `/metrics` says per instance.
    gauges: Arc<Gauges>,
}

impl Loops {
    /// One poll loop per instance. Stopping them drops a cycle still under way after the
    /// grace: an unfinished fetch loses nothing, and a commit is one transaction either way.
    fn pollers(&self, runtime: &Arc<Runtime>) -> Workers {
        let (stop, stop_rx) = watch::channel(Stop::Run);
        let limit = Arc::new(Semaphore::new(runtime.config.wawp.max_concurrent));
        let mut tasks = JoinSet::new();
        {
            let mut p = lock(&self.progress);
            p.busy.clear();
            p.retain(|k| runtime.config.instance(k).is_some());
        }
        self.gauges.retain(|k| runtime.config.instance(k).is_some());
        let count = runtime.config.instances.len();
        for index in 0..count {
            let ctx = PollContext {
                runtime: runtime.clone(),
                store: self.store.clone(),
                clock: self.clock.clone(),
                progress: self.progress.clone(),
                health: self.health.clone(),
                wake: self.wake.clone(),
                took_over: self.took_over.clone(),
                notifier: self.notifier.clone(),
                share: self.share.clone(),
                gauges: self.gauges.clone(),
                limit: limit.clone(),
                bell: self.doorbells.bell(&runtime.config.instances[index].name),
                index,
                // Instance i of n starts i/n of an interval late: polls spread evenly.
                offset: runtime
                    .config
                    .sla()
                    .poll_interval
                    .mul_f64(index as f64 / count as f64),
            };
            tasks.spawn(poll_loop(ctx, stop_rx.clone()));
        }
        if let Some(ha) = &runtime.config.ha {
            tasks.spawn(membership_loop(
                self.store.clone(),
                self.clock.clone(),
                runtime.config.clone(),
                ha.clone(),
                self.share.clone(),
                self.doorbells.clone(),
                stop_rx,
            ));
        }
        Workers { stop, tasks }
    }

    /// One delivery loop per channel, so a hung receiver holds up only its own channel,
    /// plus one for housekeeping. Stopping them lets each make a last pass; what is still
    /// in flight after the grace stays pending in the store.
    fn deliverers(&self, runtime: &Arc<Runtime>) -> Workers {
        let (stop, stop_rx) = watch::channel(Stop::Run);
        let mut tasks = JoinSet::new();
        for (name, channel) in runtime.channels.iter() {
            let resend = channel.alertmanager().is_some().then(|| Resend {
                config: runtime.config.clone(),
                clock: self.clock.clone(),
                health: self.health.clone(),
                took_over: self.took_over.subscribe(),
            });
            tasks.spawn(channel_loop(
                self.outbox.clone(),
                name.clone(),
                channel.clone(),
                resend,
                self.wake.subscribe(),
                stop_rx.clone(),
            ));
        }
        tasks.spawn(housekeeping_loop(
            self.outbox.clone(),
            runtime.config.clone(),
            self.health.clone(),
            self.wake.clone(),
            stop_rx,
        ));
        Workers { stop, tasks }
    }
}

struct PollContext {
    runtime: Arc<Runtime>,
    store: Store,
    clock: Clock,
    progress: Shared<Progress>,
    health: Health,
    wake: watch::Sender<u64>,
    took_over: watch::Sender<u64>,
    notifier: Notifier,
    share: Share,
    gauges: Arc<Gauges>,
    limit: Arc<Semaphore>,
    /// This instance's doorbell (`[events]`).
    bell: Arc<tokio::sync::Notify>,
    index: usize,
    offset: Duration,
}

async fn poll_loop(ctx: PollContext, mut stop: watch::Receiver<Stop>) {
    let config = &ctx.runtime.config;
    let instance = &config.instances[ctx.index];
    let name = instance.name.clone();
    let mut ticks =
        tokio::time::interval_at(Instant::now() + ctx.offset, config.sla().poll_interval);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    // Whether this node held the instance's lease after its last look (HA).
    let mut held = false;
    let mut last_start: Option<Instant> = None;
    loop {
        tokio::select! {
            _ = ticks.tick() => {}
            _ = ctx.bell.notified() => {
                // A webhook: poll now, but at most once a second (rings meanwhile
                // coalesce into the one kept permit). Other instances' loops and the
                // shared `max_concurrent` permits are untouched by this one's events.
                if let Some(at) = last_start {
                    let ready = at + crate::events::MIN_POLL_GAP;
                    tokio::select! {
                        _ = tokio::time::sleep_until(ready) => {}
                        _ = stop.changed() => return,
                    }
                }
            }
            _ = stop.changed() => return,
        }
        last_start = Some(Instant::now());
        let _permit = tokio::select! {
            permit = ctx.limit.acquire() => match permit {
                Ok(p) => p,
                Err(_) => return,
            },
            _ = stop.changed() => return,
        };
        let fence = match &config.ha {
            None => None,
            Some(ha) => {
                let fence = lease(&ctx, ha, &name, held).await;
                held = fence.is_some();
                match fence {
                    Some(fence) => Some(fence),
                    None => continue,
                }
            }
        };
        lock(&ctx.progress)
            .busy
            .insert(name.clone(), Instant::now());
        let beat = {
            let (progress, name) = (ctx.progress.clone(), name.clone());
            move || {
                if let Some(at) = lock(&progress).busy.get_mut(&name) {
                    *at = Instant::now();
                }
            }
        };
        let now = ctx.clock.now();
        let result = cycle::run(
            &ctx.runtime.client,
            &ctx.store,
            config,
            instance,
            now,
            fence.as_ref(),
            &beat,
        )
        .await;
        // Whatever became of the cycle, the session's state as the engine last gave it.
        ctx.gauges
            .session(&name, ctx.runtime.client.session_seen(&name));
        let labels = [("wawp_instance", name.clone())];
        // Distributions and successful polls by instance only for a fleet small enough
        // for them (http::DETAILED_UP_TO); per instance always what alerts use.
        let detail: &[(&str, String)] = if config.instances.len() <= http::DETAILED_UP_TO {
            &labels
        } else {
            &[]
        };
        match &result {
            Ok(summary) => {
                summary.log(false);
                ctx.health.polled_ok(&name);
                ctx.health.store_ok();
                let ok = [detail, &[("result", "ok".to_string())]].concat();
                metrics::counter!("inbox_sla_polls_total", &ok).increment(1);
                if summary.rested {
                    metrics::counter!("inbox_sla_overviews_unchanged_total").increment(1);
                }
                metrics::histogram!("inbox_sla_poll_duration_seconds", detail)
                    .record(summary.poll_seconds);
                ctx.gauges
                    .polled(&name, summary.waiting, summary.breached, ctx.clock.now());
                let waits = metrics::histogram!("inbox_sla_wait_seconds", detail);
                for wait in &summary.ended_waits {
                    waits.record(*wait as f64);
                }
                if summary.enqueued > 0 {
                    ctx.wake.send_modify(|n| *n += 1);
                }
            }
            Err(CycleError::Poll(e)) => {
                tracing::error!("{e}");
                ctx.health.store_ok();
                metrics::counter!("inbox_sla_polls_total", "wawp_instance" => name.clone(), "result" => e.label()).increment(1);
                ctx.wake.send_modify(|n| *n += 1); // a blind alert may have been enqueued
            }
            Err(CycleError::Store(e)) if e.is_conflict() => {
                tracing::warn!("{e}");
                metrics::counter!("inbox_sla_polls_total", "wawp_instance" => name.clone(), "result" => "conflict").increment(1);
            }
            Err(e) => {
                tracing::error!(instance = %name, "cycle failed: {e}");
                ctx.health.store_failed(&e.to_string());
                metrics::counter!("inbox_sla_polls_total", "wawp_instance" => name.clone(), "result" => "store").increment(1);
            }
        }
        let status = {
            let mut p = lock(&ctx.progress);
            p.busy.remove(&name);
            p.record(
                name.clone(),
                Instant::now(),
                result.map_err(|e| e.to_string()),
            );
            status_line(&p)
        };
        ctx.notifier.status(&status);
    }
}

/// Takes or renews the instance's lease; `None` when another node holds it (this node
/// stands by) or the store cannot be reached (polling pauses; `/healthz` says why).
async fn lease(
    ctx: &PollContext,
    ha: &HaConfig,
    name: &str,
    held: bool,
) -> Option<crate::store::Fence> {
    let now_ms = ctx.clock.now_ms();
    if !ctx.share.takes(name) {
        // Another live node's share: hand it over (its holder's next look takes it), and
        // stand by.
        if held {
            match ctx.store.release_lease(name, &ha.node, now_ms).await {
                Ok(()) => {
                    tracing::info!(instance = name, node = %ha.node, "handing the instance over to the node whose share it is")
                }
                Err(e) => tracing::warn!(instance = name, "could not hand the instance over: {e}"),
            }
        }
        ctx.health.standby(name);
        ctx.gauges.held(name, &ha.node, false);
        return None;
    }
    let held = ctx
        .store
        .acquire_lease(name, &ha.node, now_ms, ha.lease.as_millis() as i64)
        .await;
    match held {
        Ok(Some(fence)) => {
            if ctx.health.holding(name) {
                tracing::info!(instance = name, node = %ha.node, fence = fence.value, "this node now polls the instance");
                ctx.took_over.send_modify(|n| *n += 1);
            }
            ctx.gauges.held(name, &ha.node, true);
            Some(fence)
        }
        Ok(None) => {
            ctx.health.store_ok();
            if !ctx.health.is_standby(name) {
                tracing::info!(instance = name, node = %ha.node, "another node holds the instance; standing by");
            }
            ctx.health.standby(name);
            ctx.gauges.held(name, &ha.node, false);
            None
        }
        Err(e) => {
            tracing::error!(
                instance = name,
                "cannot take the instance's lease; polling paused: {e}"
            );
            ctx.health.store_failed(&e.to_string());
            ctx.gauges.held(name, &ha.node, false);
            None
        }
    }
}

/// This node's share of the instances in an HA group (section 10): what
/// [`share::assign`] gives it over the live members, plus the instances nobody has held
/// for a whole lease term (a member whose config lacks them, say), which any node takes.
/// Before the first look at the members it takes everything it can, as a lone node would.
#[derive(Clone, Default)]
struct Share(Arc<Mutex<Option<ShareState>>>);

struct ShareState {
    mine: HashSet<String>,
    orphans: HashSet<String>,
}

impl Share {
    fn takes(&self, instance: &str) -> bool {
        lock(&self.0)
            .as_ref()
            .is_none_or(|s| s.mine.contains(instance) || s.orphans.contains(instance))
    }
}

/// Renews this node's membership of the HA group and recomputes its share, every poll
/// interval (at most a third of `ha.lease`). The poll loops hand over what is no longer
/// theirs at their next look, and take what became theirs once its lease is free: so a
/// joining node gets its share within about two poll intervals, and a dead node's share
/// is taken within `ha.lease` and a poll, never by two nodes at once (the leases see to
/// that).
async fn membership_loop(
    store: Store,
    clock: Clock,
    config: Arc<Config>,
    ha: HaConfig,
    share: Share,
    doorbells: crate::events::Doorbells,
    mut stop: watch::Receiver<Stop>,
) {
    let lease_ms = ha.lease.as_millis() as i64;
    let every = config.sla().poll_interval.min(ha.lease / 3);
    let instances: Vec<String> = instance_names(&config);
    let mut unheld_since: HashMap<String, i64> = HashMap::new();
    let mut last_members: Vec<String> = Vec::new();
    let mut started = false;
    loop {
        let now_ms = clock.now_ms();
        let looked = async {
            let members = store.heartbeat(&ha.node, now_ms, lease_ms).await?;
            let leases = store.leases(now_ms).await?;
            Ok::<_, StoreError>((members, leases))
        }
        .await;
        match looked {
            Ok((members, leases)) => {
                let assigned = crate::share::assign(&instances, &members);
                let mine: HashSet<String> = assigned
                    .iter()
                    .filter(|(_, node)| **node == ha.node)
                    .map(|(i, _)| i.to_string())
                    .collect();
                let held: HashSet<&str> = leases
                    .iter()
                    .filter(|l| l.live())
                    .map(|l| l.instance.as_str())
                    .collect();
                unheld_since.retain(|i, _| !held.contains(i.as_str()));
                for i in instances.iter().filter(|i| !held.contains(i.as_str())) {
                    unheld_since.entry(i.clone()).or_insert(now_ms);
                }
                let orphans: HashSet<String> = unheld_since
                    .iter()
                    .filter(|(_, since)| now_ms - **since >= lease_ms)
                    .map(|(i, _)| i.clone())
                    .collect();
                if members != last_members {
                    tracing::info!(
                        node = %ha.node,
                        members = %members.join(", "),
                        share = mine.len(),
                        of = instances.len(),
                        "the HA group changed; this node's share is recomputed"
                    );
                    last_members = members.clone();
                }
                metrics::gauge!("inbox_sla_ha_members").set(members.len() as f64);
                metrics::gauge!("inbox_sla_ha_share", "node" => ha.node.clone())
                    .set(mine.len() as f64);
                // This node's instances that nobody holds (a dead node's, whose leases ran
                // out; one another node handed over): polled now, not at their next tick,
                // so a share moves within ha.lease and one membership look, not a poll more.
                // (Not at start: the first polls keep their spread over the interval.)
                if started {
                    for i in mine.iter().filter(|i| !held.contains(i.as_str())) {
                        doorbells.ring(i);
                    }
                }
                started = true;
                *lock(&share.0) = Some(ShareState { mine, orphans });
            }
            Err(e) => tracing::warn!("could not renew this node's membership of the HA group: {e}"),
        }
        tokio::select! {
            _ = tokio::time::sleep(every) => {}
            _ = stop.changed() => return,
        }
    }
}

/// "3 waiting, 1 breached, last poll 12s ago" over every instance.
fn status_line(p: &Progress) -> String {
    let (waiting, breached, failing) = p.totals;
    let ago = p.newest.map_or("never".to_string(), |t| {
        format!("{}s ago", t.elapsed().as_secs())
    });
    let mut line = format!("{waiting} waiting, {breached} breached, last poll {ago}");
    if failing > 0 {
        line.push_str(&format!(", {failing} instance(s) failing"));
    }
    line
}

/// Pings the systemd watchdog while every cycle under way is making progress. A cycle
/// that has made none for the watchdog interval is stuck: the pings stop, and systemd
/// restarts the daemon.
async fn watchdog_loop(every: Duration, progress: Shared<Progress>, notifier: Notifier) {
    let mut ticks = tokio::time::interval(every / 3);
    loop {
        ticks.tick().await;
        let (stuck, status) = {
            let p = lock(&progress);
            let stuck = p
                .busy
                .iter()
                .find(|(_, at)| at.elapsed() > every)
                .map(|(name, _)| name.clone());
            (stuck, status_line(&p))
        };
        match stuck {
            None => notifier.watchdog(&status),
            Some(name) => tracing::error!(
                instance = %name,
                "a poll cycle has made no progress for longer than the watchdog interval; not pinging the watchdog"
            ),
        }
    }
}

/// An Alertmanager channel's re-send: Alertmanager forgets what is not re-sent.
struct Resend {
    config: Arc<Config>,
    clock: Clock,
    health: Health,
    took_over: watch::Receiver<u64>,
}

/// Delivers one channel's notifications as they fall due, until told to stop (at a
/// shutdown after one last pass). An Alertmanager channel also re-sends its firing (and
/// lately resolved) alerts every `resend`, starting at once and again whenever this node
/// takes an instance over; in this same task, so a re-send read from the store never
/// overtakes a resolved or recovered notice delivered meanwhile.
async fn channel_loop(
    outbox: Arc<Outbox>,
    name: String,
    channel: Arc<notify::Channel>,
    mut resend: Option<Resend>,
    mut wake: watch::Receiver<u64>,
    mut stop: watch::Receiver<Stop>,
) {
    let mut next_resend = Instant::now();
    loop {
        match deliver::drain_channel(&outbox, &name, channel.as_ref()).await {
            Ok(r) if r.sent + r.retrying + r.dead > 0 => outbox_gauges(outbox.store()).await,
            Ok(_) => {}
            Err(e) => tracing::error!(channel = %name, "delivery pass failed: {e}"),
        }
        if *stop.borrow() != Stop::Run {
            return;
        }
        if let (Some(r), Some(am)) = (&resend, channel.alertmanager())
            && Instant::now() >= next_resend
        {
            // This node's instances: configured (a removed one's alerts end, they are not
            // re-sent), and not held by another node.
            let here = |i: &str| r.config.instance(i).is_some() && !r.health.is_standby(i);
            let now = r.clock.now();
            match deliver::refresh_alertmanager(
                outbox.store(),
                &name,
                am,
                &r.config.policy,
                now,
                here,
            )
            .await
            {
                Ok((n, said)) => {
                    tracing::debug!(channel = %name, alerts = n, receiver = %said, "alerts re-sent to Alertmanager")
                }
                Err(e) => {
                    tracing::warn!(channel = %name, "re-sending alerts to Alertmanager failed (next try in {}): {e}", crate::duration::format(am.resend_every()))
                }
            }
            next_resend = Instant::now() + am.resend_every();
        }
        let wait = match outbox
            .store()
            .next_due_in_ms(&name, outbox.clock().now_ms())
            .await
        {
            Ok(next) => next.map_or(Duration::from_secs(30), |ms| {
                Duration::from_millis(ms.clamp(20, 30_000) as u64)
            }),
            Err(e) => {
                tracing::error!(channel = %name, "outbox: {e}");
                Duration::from_secs(5)
            }
        };
        let wait = match resend {
            Some(_) => wait.min(next_resend.saturating_duration_since(Instant::now())),
            None => wait,
        };
        let took_over = async {
            match resend.as_mut() {
                Some(r) => {
                    let _ = r.took_over.changed().await;
                }
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = wake.changed() => {}
            _ = took_over => next_resend = Instant::now(),
            _ = stop.changed() => {
                if *stop.borrow() == Stop::Reload {
                    return; // the new loop takes over
                }
                // A shutdown: one last pass for what the final cycles enqueued.
            }
        }
    }
}

async fn outbox_gauges(store: &Store) {
    match store.outbox_counts().await {
        Ok(counts) => {
            metrics::gauge!("inbox_sla_outbox_pending").set(counts.open() as f64);
            metrics::gauge!("inbox_sla_outbox_dead").set(counts.dead as f64);
        }
        Err(e) => tracing::error!("outbox: {e}"),
    }
}

/// Outbox gauges, outcomes still owed to the store, notifications of removed channels,
/// episodes of removed instances, and pruning of what is past its keep. Runs at start,
/// after every reload (the loops are rebuilt with the new config) and every
/// [`HOUSEKEEPING_EVERY`].
async fn housekeeping_loop(
    outbox: Arc<Outbox>,
    config: Arc<Config>,
    health: Health,
    wake_delivery: watch::Sender<u64>,
    mut stop: watch::Receiver<Stop>,
) {
    let mut last_prune: Option<i64> = None;
    let channels = config.channel_names();
    let mut wake = wake_delivery.subscribe();
    loop {
        let now = outbox.clock().now();
        match cycle::retire_unwatched(outbox.store(), &config, outbox.clock().now_ms()).await {
            Ok(retired) if retired.iter().any(|(_, sent)| *sent > 0) => {
                wake_delivery.send_modify(|n| *n += 1)
            }
            Ok(_) => {}
            Err(e) => tracing::error!("ending the episodes of removed instances failed: {e}"),
        }
        if let Err(e) = outbox.flush().await {
            tracing::error!(
                owed = outbox.owed(),
                "delivery outcomes still cannot be recorded: {e}"
            );
            health.store_failed(&e.to_string());
        }
        match outbox.kill_orphans(&channels).await {
            Ok(orphans) => {
                for (id, channel) in orphans {
                    tracing::error!(id, channel = %channel, "notification is dead: its channel is no longer configured");
                }
            }
            Err(e) => tracing::error!("outbox housekeeping failed: {e}"),
        }
        if last_prune.is_none_or(|at| now - at >= PRUNE_EVERY) {
            let keep = config.store.keep.as_secs() as i64;
            match outbox.store().prune(now, KEEP_SENT.min(keep), keep).await {
                Ok(p) => {
                    last_prune = Some(now);
                    if p != Default::default() {
                        tracing::info!(
                            sent = p.sent,
                            dead = p.dead,
                            mutes = p.mutes,
                            history = p.history,
                            "pruned what is past its keep"
                        );
                    }
                }
                Err(e) => tracing::error!("pruning the store failed: {e}"),
            }
        }
        outbox_gauges(outbox.store()).await;
        tokio::select! {
            _ = tokio::time::sleep(HOUSEKEEPING_EVERY) => {}
            _ = wake.changed() => {}
            _ = stop.changed() => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The status line sums every instance's latest cycle: a poll replaces its instance's
    /// figures, a failing instance is counted once, and a reload forgets removed ones.
    #[test]
    fn the_status_line_sums_each_instances_latest_cycle() {
        let ok = |waiting, breached| {
            Ok(Summary {
                waiting,
                breached,
                ..Summary::default()
            })
        };
        let mut p = Progress::default();
        let t = Instant::now();
        p.record("a".into(), t, ok(5, 1));
        p.record("b".into(), t, ok(3, 2));
        p.record("a".into(), t, ok(4, 0));
        p.record("c".into(), t, Err("503".into()));
        assert!(
            status_line(&p).starts_with("7 waiting, 2 breached, last poll"),
            "{}",
            status_line(&p)
        );
        assert!(status_line(&p).ends_with(", 1 instance(s) failing"));
        p.record("c".into(), t, ok(1, 1));
        p.retain(|name| name != "b");
        assert!(
            status_line(&p).starts_with("5 waiting, 1 breached"),
            "{}",
            status_line(&p)
        );
        assert!(!status_line(&p).contains("failing"));
    }
}
