//! `/metrics` (Prometheus text) and `/healthz` on `http.listen`, when it is set.
//!
//! Read-only views of what the daemon records; nothing here changes state. Metric names
//! and help texts are declared in [`describe`] so every scrape carries HELP and TYPE lines.

use axum::{Router, extract::State, http::StatusCode, routing::get};
use metrics_exporter_prometheus::PrometheusHandle;
use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

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

    /// Sets the instances to watch and the allowed age (3 × `poll_interval`).
    pub fn configure(&self, instances: Vec<String>, poll_interval: Duration) {
        let mut h = self.lock();
        h.standby.retain(|i| instances.contains(i));
        h.instances = instances;
        h.max_age = poll_interval * 3;
    }

    pub fn polled_ok(&self, instance: &str) {
        let mut h = self.lock();
        h.last_ok.insert(instance.to_string(), Instant::now());
        h.standby.remove(instance);
    }

    /// Another node holds `instance`: this node is its standby.
    pub fn standby(&self, instance: &str) {
        let mut h = self.lock();
        h.standby.insert(instance.to_string());
        h.last_ok.remove(instance);
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
    describe_gauge!(
        "inbox_sla_chats_waiting",
        "Chats waiting for an answer, by instance."
    );
    describe_gauge!(
        "inbox_sla_chats_breached",
        "Waiting chats past at least one escalation tier, by instance."
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
    describe_gauge!(
        "inbox_sla_last_successful_poll_timestamp_seconds",
        Unit::Seconds,
        "Unix time of the last successful poll, by instance."
    );
    describe_gauge!(
        "inbox_sla_instance_held",
        "1 where this node (node) polls the instance (wawp_instance), 0 where it stands by."
    );
}

#[derive(Clone)]
struct AppState {
    metrics: PrometheusHandle,
    health: Health,
}

/// Serves until `shutdown` resolves.
pub async fn serve(
    listener: tokio::net::TcpListener,
    metrics: PrometheusHandle,
    health: Health,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let app = Router::new()
        .route("/metrics", get(render_metrics))
        .route("/healthz", get(healthz))
        .with_state(AppState { metrics, health });
    axum::serve(listener, app)
        .with_graceful_shutdown(shutdown)
        .await
}

async fn render_metrics(State(s): State<AppState>) -> ([(&'static str, &'static str); 1], String) {
    (
        [("content-type", "text/plain; version=0.0.4; charset=utf-8")],
        s.metrics.render(),
    )
}

async fn healthz(State(s): State<AppState>) -> (StatusCode, String) {
    match s.health.check() {
        Ok(()) => (StatusCode::OK, "ok\n".into()),
        Err(why) => (StatusCode::SERVICE_UNAVAILABLE, format!("{why}\n")),
    }
}
