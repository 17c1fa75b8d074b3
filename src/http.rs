//! `/metrics` (Prometheus text), `/healthz`, the status page (`/`) and its JSON (`/api/v1`)
//! on `http.listen`, when it is set; over HTTPS with `http.tls_cert_file`.
//!
//! Views of what the daemon records, and the few actions on call takes from the page's
//! buttons or a script (`POST /api/v1/ack`, `/mute`, `/unmute`, through [`crate::act`]).
//! Metric names and help texts are declared in [`describe`] so every scrape carries HELP
//! and TYPE lines.
//! The page and the API show customer data: [`guard`] admits them through [`access`]
//! (a user of `http.users_file` or the bearer token of `http.auth_token_file`, judged by
//! the running configuration at each request) and refuses state-changing requests from
//! other sites; `/healthz` and `/metrics` stay open for probes and scrapers.

use crate::access::{self, Gate, Outcome};
use crate::clock::Clock;
use crate::config::Config;
use crate::gauges::Gauges;
use crate::status;
use crate::store::Store;
use axum::extract::connect_info::{ConnectInfo, Connected};
use axum::extract::{Query, Request};
use axum::http::header;
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::serve::IncomingStream;
use axum::{
    Router,
    extract::State,
    http::StatusCode,
    routing::{get, post},
};
use metrics_exporter_prometheus::PrometheusHandle;
use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::time::Instant;

/// What `/healthz` judges: when each instance this node polls last polled successfully,
/// which instances another node holds (HA standby), and whether the store answers.
#[derive(Clone, Default)]
pub struct Health {
    inner: Arc<Mutex<HealthInner>>,
}

#[derive(Default)]
struct HealthInner {
    /// Instances that must be healthy (the configured ones).
    instances: Vec<String>,
    last_ok: HashMap<String, Instant>,
    /// Instances another node holds the lease of: not this node's to poll.
    standby: HashSet<String>,
    /// The store's last error, while it fails.
    store_error: Option<String>,
    max_age: Duration,
}

impl Health {
    fn lock(&self) -> std::sync::MutexGuard<'_, HealthInner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Sets the instances to watch and how recent their last success must be
    /// ([`Config::healthy_within`]).
    pub fn configure(&self, instances: Vec<String>, max_age: Duration) {
        let mut h = self.lock();
        h.standby.retain(|i| instances.contains(i));
        h.instances = instances;
        h.max_age = max_age;
    }

    pub fn polled_ok(&self, instance: &str) {
        let mut h = self.lock();
        h.last_ok.insert(instance.to_string(), Instant::now());
        h.standby.remove(instance);
    }

    /// This node holds `instance`'s lease: it is no longer a standby (even while its polls
    /// fail: then `/healthz` must say so). Returns whether it was one until now.
    pub fn holding(&self, instance: &str) -> bool {
        self.lock().standby.remove(instance)
    }

    /// Another node holds `instance`: this node is its standby.
    pub fn standby(&self, instance: &str) {
        let mut h = self.lock();
        h.standby.insert(instance.to_string());
        h.last_ok.remove(instance);
    }

    /// Seconds since each instance this node polls last polled successfully.
    pub fn polled_ago(&self) -> status::PolledAgo {
        self.lock()
            .last_ok
            .iter()
            .map(|(i, t)| (i.clone(), t.elapsed().as_secs() as i64))
            .collect()
    }

    pub fn is_standby(&self, instance: &str) -> bool {
        self.lock().standby.contains(instance)
    }

    pub fn store_ok(&self) {
        self.lock().store_error = None;
    }

    pub fn store_failed(&self, error: &str) {
        self.lock().store_error = Some(error.to_string());
    }

    /// `Err` says what is wrong: the store, or the instances that have not polled
    /// successfully within 3 × `poll_interval` (standby instances are not this node's).
    pub fn check(&self) -> Result<(), String> {
        let h = self.lock();
        if let Some(e) = &h.store_error {
            return Err(format!("the store is failing: {e}"));
        }
        let stale: Vec<&str> = h
            .instances
            .iter()
            .filter(|i| !h.standby.contains(*i))
            .filter(|i| h.last_ok.get(*i).is_none_or(|t| t.elapsed() > h.max_age))
            .map(String::as_str)
            .collect();
        if stale.is_empty() {
            Ok(())
        } else {
            Err(format!(
                "no successful poll within 3 × poll_interval: {}",
                stale.join(", ")
            ))
        }
    }
}

/// Declares every metric with its help text.
pub fn describe() {
    use metrics::{Unit, describe_counter, describe_gauge, describe_histogram};
    describe_counter!(
        "inbox_sla_polls_total",
        "Overview polls by WhatsApp instance (wawp_instance) and result."
    );
    describe_histogram!(
        "inbox_sla_poll_duration_seconds",
        Unit::Seconds,
        "Time to fetch and parse one instance's overview."
    );
    describe_counter!(
        "inbox_sla_overviews_unchanged_total",
        "Successful polls whose overview repeated, byte for byte, one that changed nothing, and was compared instead of scanned."
    );
    describe_counter!(
        "inbox_sla_notifications_total",
        "Delivery attempts by channel and result (sent, retry, dead)."
    );
    describe_gauge!(
        "inbox_sla_outbox_pending",
        "Notifications waiting to be delivered."
    );
    describe_gauge!(
        "inbox_sla_outbox_dead",
        "Notifications that will not be delivered."
    );
    describe_histogram!(
        "inbox_sla_wait_seconds",
        Unit::Seconds,
        "Wall-clock wait of each episode that ended, by instance (wawp_instance)."
    );
}

/// What `/metrics` renders: the recorder's counters, histograms and overall gauges, then
/// the per-instance gauges ([`Gauges`]).
#[derive(Clone)]
pub struct Metrics {
    pub recorder: PrometheusHandle,
    pub gauges: Arc<Gauges>,
}

/// Up to this many instances, `/metrics` labels everything by instance. Above it, the
/// poll-time and wait distributions and the count of successful polls are kept over all
/// instances (their per-instance series are most of a scrape: 20 lines an instance, 17 MB
/// at 10,000), while what alerts use stays per instance: the last successful poll, failed
/// polls by result, chats waiting and breached, the session's state, the lease held.
pub const DETAILED_UP_TO: usize = 1000;

/// The buckets (seconds) of `inbox_sla_wait_seconds`, for the recorder.
pub fn wait_buckets() -> (metrics_exporter_prometheus::Matcher, &'static [f64]) {
    (
        metrics_exporter_prometheus::Matcher::Full("inbox_sla_wait_seconds".into()),
        &crate::report::WAIT_BUCKETS,
    )
}

/// The configuration the daemon runs with now (swapped on SIGHUP).
pub type CurrentConfig = Arc<std::sync::RwLock<Arc<Config>>>;

/// What the status page reads.
#[derive(Clone)]
pub struct StatusSource {
    pub store: Store,
    pub config: CurrentConfig,
    pub clock: Clock,
}

impl StatusSource {
    fn config(&self) -> Arc<Config> {
        self.config
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }
}

#[derive(Clone)]
struct AppState {
    metrics: Metrics,
    health: Health,
    status: StatusSource,
    events: crate::events::Receiver,
    gate: Arc<Gate>,
}

/// The client's address, for counting failed logins per address.
#[derive(Clone, Copy, Debug)]
pub struct Peer(pub SocketAddr);

impl Connected<IncomingStream<'_, tokio::net::TcpListener>> for Peer {
    fn connect_info(stream: IncomingStream<'_, tokio::net::TcpListener>) -> Self {
        Peer(*stream.remote_addr())
    }
}

impl Connected<IncomingStream<'_, crate::tls::TlsListener>> for Peer {
    fn connect_info(stream: IncomingStream<'_, crate::tls::TlsListener>) -> Self {
        Peer(*stream.remote_addr())
    }
}

/// Serves until `shutdown` resolves: HTTPS when the configuration has `tls_cert_file`,
/// each handshake served the certificate of the configuration in force (a reload swaps
/// it), else plain HTTP.
pub async fn serve(
    listener: tokio::net::TcpListener,
    metrics: Metrics,
    health: Health,
    status: StatusSource,
    events: crate::events::Receiver,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let first = status
        .config()
        .http
        .as_ref()
        .and_then(|h| h.tls.as_ref())
        .map(|t| t.identity.clone());
    // Slack's and PagerDuty's callbacks (`hooks`): open to them, checked by signature.
    let hooks = crate::hooks::Hooks::new(
        status.store.clone(),
        status.config.clone(),
        status.clock.clone(),
        events.doorbells.clone(),
    )
    .map_err(std::io::Error::other)?;
    let state = AppState {
        metrics,
        health,
        status: status.clone(),
        events,
        gate: Arc::new(Gate::new()),
    };
    let private = Router::new()
        .route("/", get(status_page))
        .route("/api/v1/waiting", get(api_waiting))
        .route("/api/v1/report", get(api_report))
        .route("/api/v1/ack", post(api_ack))
        .route("/api/v1/mute", post(api_mute))
        .route("/api/v1/unmute", post(api_unmute))
        .route_layer(middleware::from_fn_with_state(state.clone(), guard));
    let app = Router::new()
        .route("/metrics", get(render_metrics))
        .route("/healthz", get(healthz))
        .merge(private)
        .merge(hooks.routes())
        // `[events] path` is looked up per request in the running config, so a reload
        // that adds, moves or removes it applies at once. Its own route: open to the
        // webhook sender, checked by its signature, never by the page's token.
        .fallback(webhook)
        .with_state(state);
    let Some(first) = first else {
        return axum::serve(listener, app.into_make_service_with_connect_info::<Peer>())
            .with_graceful_shutdown(shutdown)
            .await;
    };
    let Some(first) = first else {
        return Err(std::io::Error::other(
            "http.tls_key_file was not read: the certificate cannot be served",
        ));
    };
    let config = status.config.clone();
    // A reload that drops TLS takes effect at the next restart: until then the last
    // certificate is served.
    let tls = crate::tls::server_config(move || {
        let running = config.read().unwrap_or_else(|p| p.into_inner()).clone();
        let current = running
            .http
            .as_ref()
            .and_then(|h| h.tls.as_ref())
            .and_then(|t| t.identity.clone());
        Some(current.unwrap_or_else(|| first.clone()))
    })
    .map_err(std::io::Error::other)?;
    axum::serve(
        crate::tls::TlsListener::new(listener, tls)?,
        app.into_make_service_with_connect_info::<Peer>(),
    )
    .with_graceful_shutdown(shutdown)
    .await
}

/// `POST <events.path>`: a Wawp/WAHA webhook (section 7). Answered at once; the poll it
/// asks for happens after the answer, in the instance's own loop.
async fn webhook(State(s): State<AppState>, request: Request) -> Response {
    use crate::events::{MAX_BODY, Outcome};
    let config = s.status.config();
    let ours = config
        .events
        .as_ref()
        .is_some_and(|e| e.path == request.uri().path());
    if !ours {
        return StatusCode::NOT_FOUND.into_response();
    }
    if request.method() != axum::http::Method::POST {
        return (
            StatusCode::METHOD_NOT_ALLOWED,
            [(header::ALLOW, "POST")],
            "webhooks are POSTed\n",
        )
            .into_response();
    }
    let too_large = || {
        (
            StatusCode::PAYLOAD_TOO_LARGE,
            "the body is larger than 1 MiB\n",
        )
            .into_response()
    };
    let announced = request
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if announced.is_some_and(|n| n > MAX_BODY as u64) {
        return too_large();
    }
    let signature = request
        .headers()
        .get("x-webhook-hmac")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let Ok(body) = axum::body::to_bytes(request.into_body(), MAX_BODY).await else {
        return too_large();
    };
    match s.events.receive(&config, signature.as_deref(), &body) {
        Outcome::Rang(instance) => {
            tracing::debug!(instance, "webhook event: polling the instance now");
            (StatusCode::OK, "ok\n").into_response()
        }
        Outcome::Ignored(why) => {
            tracing::debug!("webhook event ignored: {why}");
            (StatusCode::OK, "ignored\n").into_response()
        }
        Outcome::BadSignature => {
            tracing::info!(
                "webhook refused: X-Webhook-Hmac is missing or wrong (events.hmac_key_file)"
            );
            (StatusCode::UNAUTHORIZED, "bad or missing X-Webhook-Hmac\n").into_response()
        }
        Outcome::Unreadable(why) => {
            tracing::debug!("webhook refused: {why}");
            (StatusCode::BAD_REQUEST, format!("{why}\n")).into_response()
        }
    }
}

/// Admits requests to the page and the API. The users and the token are the running
/// configuration's, read per request: after a reload (SIGHUP) a removed user or a rotated
/// token stops working at once (section 7). Loopback with neither needs nothing, but what
/// is configured is required. State-changing requests from another site are refused
/// before any credential is looked at.
async fn guard(State(s): State<AppState>, mut request: Request, next: Next) -> Response {
    let config = s.status.config();
    let http = config.http.as_ref();
    if let Some(why) = access::cross_site(
        request.method(),
        request.headers(),
        http.and_then(|h| h.external_url.as_ref()),
    ) {
        tracing::warn!(
            "status page: refused a cross-site {} request: {why}",
            request.method()
        );
        return (
            StatusCode::FORBIDDEN,
            format!("403: cross-site request refused: {why}\n"),
        )
            .into_response();
    }
    let peer = request
        .extensions()
        .get::<ConnectInfo<Peer>>()
        .map_or(std::net::IpAddr::from([0, 0, 0, 0]), |c| c.0.0.ip());
    let users = http.and_then(|h| h.users.as_ref());
    let token = http.and_then(|h| h.auth_token.as_ref());
    if users.is_none()
        && token.is_none()
        && let Some(why) = access::foreign_host(
            request.headers(),
            http.and_then(|h| h.external_url.as_ref()),
        )
    {
        tracing::warn!("status page: refused a request for another host: {why}");
        return (
            StatusCode::FORBIDDEN,
            format!(
                "403: {why}
"
            ),
        )
            .into_response();
    }
    match s.gate.admit(users, token, request.headers(), peer).await {
        Outcome::Admitted(who) => {
            request.extensions_mut().insert(who);
            next.run(request).await
        }
        Outcome::Missing | Outcome::Failed if users.is_some() => (
            StatusCode::UNAUTHORIZED,
            [(header::WWW_AUTHENTICATE, "Basic realm=\"inbox-sla\"")],
            "401: this page shows customer data; sign in as a user of http.users_file \
             (scripts: Authorization: Bearer <the token in http.auth_token_file>)\n",
        )
            .into_response(),
        Outcome::Missing | Outcome::Failed => (
            StatusCode::UNAUTHORIZED,
            [(header::WWW_AUTHENTICATE, "Bearer realm=\"inbox-sla\"")],
            "401: this page shows customer data; send Authorization: Bearer <the token in http.auth_token_file>\n",
        )
            .into_response(),
        Outcome::Blocked(left) => {
            let secs = left.as_secs().max(1);
            (
                StatusCode::TOO_MANY_REQUESTS,
                [(header::RETRY_AFTER, secs.to_string())],
                format!("429: too many failed logins from this address; try again in {secs}s\n"),
            )
                .into_response()
        }
    }
}

/// A store error as the page shows it: the store's message, never a secret (the store's
/// errors are already redacted of its URL).
fn unavailable(e: impl std::fmt::Display) -> Response {
    tracing::warn!("status page: the store failed: {e}");
    (
        StatusCode::SERVICE_UNAVAILABLE,
        format!("503: the store could not be read: {e}\n"),
    )
        .into_response()
}

async fn status_page(State(s): State<AppState>) -> Response {
    let config = s.status.config();
    let now = s.status.clock.now();
    let ago = s.health.polled_ago();
    let current = match status::now(&s.status.store, &config, &ago, now).await {
        Ok(n) => n,
        Err(e) => return unavailable(e),
    };
    let report = match status::report(&s.status.store, &config, now, 7 * 86400, None).await {
        Ok(r) => r,
        Err(e) => return unavailable(e),
    };
    (
        [
            (header::CONTENT_TYPE, "text/html; charset=utf-8"),
            (header::CACHE_CONTROL, "no-store"),
        ],
        status::page(&current, &report),
    )
        .into_response()
}

async fn api_waiting(State(s): State<AppState>) -> Response {
    let config = s.status.config();
    let ago = s.health.polled_ago();
    match status::now(&s.status.store, &config, &ago, s.status.clock.now()).await {
        Ok(n) => axum::Json(n.json()).into_response(),
        Err(e) => unavailable(e),
    }
}

#[derive(serde::Deserialize)]
struct ReportQuery {
    since: Option<String>,
    instance: Option<String>,
}

async fn api_report(State(s): State<AppState>, Query(q): Query<ReportQuery>) -> Response {
    let since = match q.since.as_deref().map(crate::duration::parse) {
        None => Duration::from_secs(7 * 86400),
        Some(Ok(d)) if !d.is_zero() => d,
        Some(Ok(_)) => {
            return (StatusCode::BAD_REQUEST, "since: must be more than 0s\n").into_response();
        }
        Some(Err(e)) => return (StatusCode::BAD_REQUEST, format!("since: {e}\n")).into_response(),
    };
    let config = s.status.config();
    let now = s.status.clock.now();
    match status::report(
        &s.status.store,
        &config,
        now,
        since.as_secs() as i64,
        q.instance.as_deref(),
    )
    .await
    {
        Ok(r) => match q
            .instance
            .as_deref()
            .and_then(|i| status::unknown_instance(&config, &r, i).map(|why| (i, why)))
        {
            Some((i, why)) => (
                StatusCode::BAD_REQUEST,
                format!("instance \"{i}\": {why}\n"),
            )
                .into_response(),
            None => axum::Json(r.json()).into_response(),
        },
        Err(e) => unavailable(e),
    }
}

async fn render_metrics(State(s): State<AppState>) -> ([(&'static str, &'static str); 1], String) {
    (
        [("content-type", "text/plain; version=0.0.4; charset=utf-8")],
        {
            let mut out = s.metrics.recorder.render();
            s.metrics.gauges.render(&mut out);
            out
        },
    )
}

async fn healthz(State(s): State<AppState>) -> (StatusCode, String) {
    match s.health.check() {
        Ok(()) => (StatusCode::OK, "ok\n".into()),
        Err(why) => (StatusCode::SERVICE_UNAVAILABLE, format!("{why}\n")),
    }
}

/// The largest body a state-changing request may have (a few short fields).
const ACT_BODY: usize = 16 * 1024;

/// What a state-changing request asks for: a JSON body from a script, or a form from the
/// page's buttons (the same fields; every value a string).
#[derive(Debug, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct ActRequest {
    chat: Option<String>,
    instance: Option<String>,
    by: Option<String>,
    #[serde(rename = "for")]
    hold: Option<String>,
    reason: Option<String>,
}

/// How the request came, and so how it is answered: a form from the page is sent back to
/// the page (303), JSON gets JSON.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Asked {
    Page,
    Script,
}

/// Reads an [`ActRequest`] and its chat (every action needs one): bounded, JSON or a
/// form, unknown or repeated fields refused with their names.
async fn act_request(request: Request) -> Result<(ActRequest, String, Asked), Response> {
    let (r, asked) = act_fields(request).await?;
    let chat = required("chat", r.chat.as_deref()).map_err(act_failed)?;
    Ok((r, chat, asked))
}

async fn act_fields(request: Request) -> Result<(ActRequest, Asked), Response> {
    let form = request
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|t| {
            t.to_ascii_lowercase()
                .starts_with("application/x-www-form-urlencoded")
        });
    let Ok(body) = axum::body::to_bytes(request.into_body(), ACT_BODY).await else {
        return Err((
            StatusCode::PAYLOAD_TOO_LARGE,
            "413: the body is larger than 16 KiB\n",
        )
            .into_response());
    };
    if form {
        let mut fields = serde_json::Map::new();
        for (k, v) in url::form_urlencoded::parse(&body) {
            if fields
                .insert(k.to_string(), serde_json::Value::String(v.into_owned()))
                .is_some()
            {
                return Err(bad(format!("{k}: given twice")));
            }
        }
        return serde_json::from_value(serde_json::Value::Object(fields))
            .map(|r| (r, Asked::Page))
            .map_err(|e| bad(e.to_string()));
    }
    serde_json::from_slice(&body)
        .map(|r| (r, Asked::Script))
        .map_err(|e| bad(format!("the body is not the JSON object expected: {e}")))
}

fn bad(why: String) -> Response {
    (StatusCode::BAD_REQUEST, format!("400: {why}\n")).into_response()
}

/// An action's failure as the asker reads it: 400 naming the field, 404 when no episode
/// is open, 503 when the store fails.
fn act_failed(e: crate::act::ActError) -> Response {
    use crate::act::ActError;
    match e {
        ActError::Bad(why) => bad(why),
        ActError::NotOpen(why) => (StatusCode::NOT_FOUND, format!("404: {why}\n")).into_response(),
        ActError::Store(e) => unavailable(e),
    }
}

/// Done: back to the page for a form, the episode as JSON for a script.
fn act_done(asked: Asked, body: serde_json::Value) -> Response {
    match asked {
        // Relative to /api/v1/…: the page, wherever a proxy mounts it.
        Asked::Page => (
            StatusCode::SEE_OTHER,
            [
                (header::LOCATION, "../../"),
                (header::CACHE_CONTROL, "no-store"),
            ],
        )
            .into_response(),
        Asked::Script => axum::Json(body).into_response(),
    }
}

fn required(field: &str, value: Option<&str>) -> Result<String, crate::act::ActError> {
    match value.map(str::trim) {
        Some(v) if !v.is_empty() => Ok(v.to_string()),
        _ => Err(crate::act::ActError::Bad(format!("{field}: required"))),
    }
}

/// `POST /api/v1/ack`: acknowledge an open episode (section 11). The channels that were
/// paged hear it at the instance's next poll, which this asks for at once.
async fn api_ack(State(s): State<AppState>, request: Request) -> Response {
    let who = request.extensions().get::<access::Who>().cloned();
    let (r, chat, asked) = match act_request(request).await {
        Ok(r) => r,
        Err(e) => return e,
    };
    let hold = match r.hold.as_deref().map(|h| crate::act::parse_for("for", h)) {
        None => None,
        Some(Ok(d)) => Some(d),
        Some(Err(e)) => return act_failed(e),
    };
    // An empty name is no name: the default applies.
    let given = r.by.filter(|b| !b.trim().is_empty());
    let by = match who {
        Some(access::Who::Person(name)) => name,
        Some(access::Who::Machine) => given.unwrap_or_else(|| "a script (API token)".into()),
        Some(access::Who::Open) | None => given.unwrap_or_else(|| "the status page".into()),
    };
    let config = s.status.config();
    if let Err(e) = known_instance(&config, r.instance.as_deref()) {
        return act_failed(e);
    }
    let now = s.status.clock.now();
    match crate::act::acknowledge(
        &s.status.store,
        &config.policy,
        r.instance.as_deref(),
        &chat,
        &by,
        hold,
        now,
    )
    .await
    {
        Ok(acked) => {
            tracing::info!(
                instance = acked.instance,
                by = crate::untrusted::display(&by, 100).as_ref(),
                "acknowledged through the API"
            );
            s.events.doorbells.ring(&acked.instance);
            let muted = s
                .status
                .store
                .mutes(now)
                .await
                .is_ok_and(|m| m.iter().any(|m| m.jid == chat));
            act_done(
                asked,
                crate::act::episode_json(&acked.instance, &acked.episode, muted, now),
            )
        }
        Err(e) => act_failed(e),
    }
}

/// An `instance` the request names must be configured: a typo is a 400 naming it, as
/// `report --instance` is an exit 2, not a 404 for a chat "not waiting" there.
fn known_instance(config: &Config, instance: Option<&str>) -> Result<(), crate::act::ActError> {
    match instance {
        Some(name) if config.instance(name).is_none() => Err(crate::act::ActError::Bad(format!(
            "instance: no instance is named \"{}\" in the configuration",
            crate::untrusted::display(name, 80)
        ))),
        _ => Ok(()),
    }
}

/// `POST /api/v1/mute`: mute the chat of an open episode for `for` (section 11).
async fn api_mute(State(s): State<AppState>, request: Request) -> Response {
    let (r, chat, asked) = match act_request(request).await {
        Ok(r) => r,
        Err(e) => return e,
    };
    let hold =
        match required("for", r.hold.as_deref()).and_then(|h| crate::act::parse_for("for", &h)) {
            Ok(d) => d,
            Err(e) => return act_failed(e),
        };
    let now = s.status.clock.now();
    if let Err(e) = known_instance(&s.status.config(), r.instance.as_deref()) {
        return act_failed(e);
    }
    match crate::act::mute(
        &s.status.store,
        r.instance.as_deref(),
        &chat,
        hold,
        r.reason.as_deref(),
        now,
    )
    .await
    {
        Ok(muted) => act_done(
            asked,
            crate::act::episode_json(&muted.instance, &muted.episode, true, now),
        ),
        Err(e) => act_failed(e),
    }
}

/// `POST /api/v1/unmute`: lift a chat's mute; 404 when it was not muted.
async fn api_unmute(State(s): State<AppState>, request: Request) -> Response {
    let (_, chat, asked) = match act_request(request).await {
        Ok(r) => r,
        Err(e) => return e,
    };
    match crate::act::unmute(&s.status.store, &chat).await {
        Ok(true) => {
            // Its tiers may be due: the instances that have it poll now.
            let open = s.status.store.episodes_of(&chat, None).await;
            for (instance, _) in open.unwrap_or_default() {
                s.events.doorbells.ring(&instance);
            }
            act_done(asked, serde_json::json!({"id": chat, "muted": false}))
        }
        Ok(false) => (
            StatusCode::NOT_FOUND,
            format!(
                "404: {} is not muted\n",
                crate::untrusted::display(&chat, 80)
            ),
        )
            .into_response(),
        Err(e) => act_failed(e),
    }
}
