//! The Alertmanager channel: API v2, `POST /api/v2/alerts`, one alert per open episode.
//!
//! Each alert carries `alertname="WhatsAppChatWaiting"`, `wawp_instance` (not `instance`,
//! which Prometheus setups give the scrape target), `chat`, `kind`, `tier` (the highest
//! fired `after`, like "2h") and the channel's own `labels`; annotations `summary`, `name`,
//! `preview` and `link`; `startsAt` the episode start. It goes to every URL in `urls`: an
//! Alertmanager cluster deduplicates itself, so one peer taking it is delivery.
//!
//! Alertmanager forgets an alert that is not re-sent: firing alerts carry `endsAt` far
//! enough ahead to outlast a missed resend *and* an HA takeover (four resend intervals, and
//! at least `ha.lease` plus two polls plus one resend: the node that takes over re-sends
//! only after it holds the instance), and are re-sent every `resend` from the store by
//! `deliver::refresh_alertmanager`; an ended episode is sent with `endsAt` its end for the
//! next five minutes. Peers are posted to at once, so a hung peer costs nothing while
//! another answers. Nothing here decides which episodes those are.

use super::types::ser_urls;
use super::{ChannelType, Context, SendError, Sender, Setup, post_json, text};
use crate::alert::{AlertChat, AlertDoc, Shape, Status, rfc3339, short_duration};
use crate::secret::{Redactor, Secret};
use crate::untrusted;
use reqwest::Url;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

/// `type = "alertmanager"`: the table's keys.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Keys {
    urls: Option<Vec<String>>,
    #[serde(default, deserialize_with = "crate::duration::deserialize_some")]
    resend: Option<Duration>,
    labels: Option<BTreeMap<String, String>>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Settings {
    /// Every peer's base URL.
    #[serde(serialize_with = "ser_urls")]
    pub urls: Vec<Url>,
    /// Firing alerts are re-sent this often (Alertmanager forgets what is not).
    #[serde(with = "crate::duration")]
    pub resend: Duration,
    /// Added to every alert.
    pub labels: BTreeMap<String, String>,
}

/// Labels inbox-sla sets on every alert; a channel's `labels` cannot replace them.
pub const OWN_LABELS: [&str; 5] = ["alertname", "wawp_instance", "chat", "kind", "tier"];

impl ChannelType for Settings {
    const NAME: &'static str = "alertmanager";
    /// Alertmanager groups alerts itself: one alert per waiting chat.
    const SHAPE: Shape = Shape::PerChat;
    type Keys = Keys;
    type Sender = Alertmanager;

    fn new(keys: Keys, setup: &mut Setup) -> Result<Self, String> {
        let table = setup.table();
        let urls = keys.urls.unwrap_or_default();
        if urls.is_empty() {
            return Err(format!(
                "{table}: urls needs at least one Alertmanager, like [\"http://alertmanager:9093\"]"
            ));
        }
        let urls = urls
            .iter()
            .map(|u| {
                // Alertmanager listens on plain http inside a cluster, and its URL is no
                // secret: http is allowed here.
                let url = Url::parse(u)
                    .map_err(|e| format!("{table}.urls: \"{u}\" is not a URL ({e})"))?;
                match url.scheme() {
                    "http" | "https" => Ok(url),
                    other => Err(format!(
                        "{table}.urls: scheme \"{other}\" is not http or https"
                    )),
                }
            })
            .collect::<Result<Vec<_>, _>>()?;
        let resend = keys.resend.unwrap_or(Duration::from_secs(60));
        if resend < Duration::from_secs(5) {
            return Err(format!("{table}.resend must be at least 5s"));
        }
        let labels = keys.labels.unwrap_or_default();
        for name in labels.keys() {
            let valid = name
                .chars()
                .next()
                .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
                && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
            if !valid || name.starts_with("__") {
                return Err(format!(
                    "{table}.labels: \"{name}\" is not a Prometheus label name"
                ));
            }
            if OWN_LABELS.contains(&name.as_str()) {
                return Err(format!(
                    "{table}.labels: \"{name}\" is set by inbox-sla itself"
                ));
            }
        }
        Ok(Settings {
            urls,
            resend,
            labels,
        })
    }

    /// An Alertmanager URL is no secret (it is reached over plain http in a cluster).
    fn secrets(&self) -> Vec<&Secret> {
        Vec::new()
    }

    fn sender(&self, context: &Context) -> Result<Alertmanager, String> {
        Ok(Alertmanager::new(
            context.http.clone(),
            self.urls.clone(),
            self.resend,
            self.labels.clone(),
            context.external_url.as_ref(),
            context.takeover,
            context.redactor.clone(),
        )
        .with_clock(context.clock.clone()))
    }
}

/// Once one peer has taken the alerts, how long the others still get to answer.
const PEER_GRACE: Duration = Duration::from_secs(2);

/// How long an ended episode is still sent (resolved) after it ended, at least.
const RESOLVED_FOR: i64 = 300;

pub struct Alertmanager {
    http: reqwest::Client,
    urls: Vec<Url>,
    resend: Duration,
    /// How far ahead a firing alert's `endsAt` is (see the module's doc).
    ends_in: Duration,
    labels: BTreeMap<String, String>,
    /// `http.external_url`, when set: where a person sees the alert's context.
    generator_url: Option<String>,
    redactor: Redactor,
    clock: crate::clock::Clock,
}

/// What an alert is made of, from a document or from the store.
pub struct Waiting<'a> {
    pub instance: &'a str,
    pub chat: &'a AlertChat,
    /// `None` while firing; the episode's end once resolved.
    pub ended_at: Option<i64>,
}

impl Alertmanager {
    /// `takeover`: how long the alert must outlast the daemon that sent it, at least
    /// (`ha.lease` plus two poll intervals under HA; two poll intervals alone).
    pub fn new(
        http: reqwest::Client,
        urls: Vec<Url>,
        resend: Duration,
        labels: BTreeMap<String, String>,
        external_url: Option<&Url>,
        takeover: Duration,
        redactor: Redactor,
    ) -> Self {
        Alertmanager {
            http,
            urls,
            resend,
            ends_in: (resend * 4).max(takeover + resend),
            labels,
            generator_url: external_url.map(Url::to_string),
            redactor,
            clock: crate::clock::Clock::System,
        }
    }

    /// Dates the alerts by `clock` (the daemon's) instead of the system's.
    pub fn with_clock(mut self, clock: crate::clock::Clock) -> Self {
        self.clock = clock;
        self
    }

    pub fn resend_every(&self) -> Duration {
        self.resend
    }

    /// Alerts for a document: its chats, or the monitor's own alert (blind, recovered),
    /// or a test alert that ends by itself a minute later.
    pub fn alerts_for(&self, doc: &AlertDoc, now: i64) -> Vec<Value> {
        match doc.status {
            // An acknowledgement re-sends the firing alert with its `acknowledged_by`.
            Status::Firing | Status::Resolved | Status::Acknowledged => doc
                .chats
                .iter()
                .map(|chat| {
                    let ended_at = (doc.status == Status::Resolved)
                        .then_some(chat.waiting_since + chat.waiting_seconds);
                    self.alert(
                        &Waiting {
                            instance: &doc.instance,
                            chat,
                            ended_at,
                        },
                        now,
                    )
                })
                .collect(),
            Status::Blind | Status::Recovered => {
                let mut labels = self.labels.clone();
                labels.insert("alertname".into(), "WhatsAppMonitorBlind".into());
                labels.insert("wawp_instance".into(), doc.instance.clone());
                vec![json!({
                    "labels": labels,
                    "annotations": {
                        "summary": text::summary(doc),
                        "description": doc.message.as_deref().map(untrusted::strip).unwrap_or_default(),
                    },
                    "endsAt": if doc.status == Status::Blind {
                        rfc3339(now + self.ends_in())
                    } else {
                        rfc3339(now)
                    },
                })]
                .into_iter()
                .map(|a| self.with_generator(a))
                .collect()
            }
            Status::Test => {
                let mut labels = self.labels.clone();
                labels.insert("alertname".into(), "InboxSlaTest".into());
                labels.insert("wawp_instance".into(), doc.instance.clone());
                vec![json!({
                    "labels": labels,
                    "annotations": {"summary": "TEST from inbox-sla: no customer is waiting",
                                    "description": doc.message.clone().unwrap_or_default()},
                    "startsAt": rfc3339(now),
                    "endsAt": rfc3339(now + 60),
                })]
            }
        }
    }

    /// How long an ended episode is still re-sent as resolved: five minutes, and at least
    /// two re-sends, so that a stale firing re-send (read from the store just before the
    /// episode ended) is always followed by one that ends it.
    pub fn resolved_for(&self) -> i64 {
        RESOLVED_FOR.max(2 * self.resend.as_secs() as i64)
    }

    /// How far ahead a firing alert's `endsAt` is, in seconds.
    pub fn ends_in(&self) -> i64 {
        self.ends_in.as_secs() as i64
    }

    /// Adds `generatorURL` when `http.external_url` is set; without it there is none (a
    /// listen address such as `0.0.0.0:9187` is nowhere a person can go).
    fn with_generator(&self, mut alert: Value) -> Value {
        if let Some(g) = &self.generator_url {
            alert["generatorURL"] = json!(g);
        }
        alert
    }

    /// One alert for one episode.
    pub fn alert(&self, w: &Waiting, now: i64) -> Value {
        let c = w.chat;
        let highest = c.tiers_fired.iter().copied().max().unwrap_or(0);
        let mut labels = self.labels.clone();
        labels.insert("alertname".into(), "WhatsAppChatWaiting".into());
        labels.insert("wawp_instance".into(), w.instance.to_string());
        labels.insert("chat".into(), c.id.clone());
        labels.insert("kind".into(), c.kind.clone());
        labels.insert("tier".into(), short_duration(highest as i64));
        let mut annotations = BTreeMap::new();
        let waited = match w.ended_at {
            Some(end) => format!("waited {}", short_duration(end - c.waiting_since)),
            None => format!("waiting {}", short_duration(now - c.waiting_since)),
        };
        annotations.insert(
            "summary".to_string(),
            format!(
                "{} {waited} on {}",
                text::name(c),
                untrusted::display(w.instance, 100)
            ),
        );
        annotations.insert("name".to_string(), text::name(c));
        if let Some(p) = text::preview(c) {
            annotations.insert("preview".to_string(), p);
        }
        if let Some(link) = c.link() {
            annotations.insert("link".to_string(), link);
        }
        if let Some(by) = &c.acknowledged_by {
            annotations.insert(
                "acknowledged_by".to_string(),
                untrusted::display(by, text::NAME_CHARS).into_owned(),
            );
            if let Some(at) = c.acknowledged_at {
                annotations.insert("acknowledged_at".to_string(), rfc3339(at));
            }
        }
        self.with_generator(json!({
            "labels": labels,
            "annotations": annotations,
            "startsAt": rfc3339(c.waiting_since),
            "endsAt": rfc3339(w.ended_at.unwrap_or(now + self.ends_in())),
        }))
    }

    /// POSTs alerts to every peer at once: delivered when at least one took them (the
    /// cluster gossips the rest). Once one has, the others get [`PEER_GRACE`] more, so a
    /// peer that accepts the connection and never answers cannot hold the delivery for
    /// the whole timeout, nor make it fail while a healthy peer took it. When none did,
    /// the failure is worth a retry if any peer's was.
    pub async fn post(&self, alerts: &Value) -> Result<String, SendError> {
        if alerts.as_array().is_some_and(Vec::is_empty) {
            return Ok("nothing to send".into());
        }
        let body = Arc::new(alerts.clone());
        let mut peers = tokio::task::JoinSet::new();
        for url in &self.urls {
            let mut endpoint = url.clone();
            let base = endpoint.path().trim_end_matches('/').to_string();
            endpoint.set_path(&format!("{base}/api/v2/alerts"));
            let (request, body, redactor) = (
                self.http.post(endpoint),
                body.clone(),
                self.redactor.clone(),
            );
            let peer = url.as_str().to_string();
            peers.spawn(async move { (peer, post_json(request, &body, &redactor).await) });
        }
        let mut failures = Vec::new();
        let mut accepted = 0;
        let mut grace_until = None;
        loop {
            let next = match grace_until {
                None => peers.join_next().await,
                Some(until) => match tokio::time::timeout_at(until, peers.join_next()).await {
                    Ok(next) => next,
                    Err(_) => break, // the slow peers hear it at the next resend
                },
            };
            match next {
                None => break,
                Some(Ok((_, Ok(_)))) => {
                    accepted += 1;
                    grace_until.get_or_insert(tokio::time::Instant::now() + PEER_GRACE);
                }
                Some(Ok((peer, Err(e)))) => failures.push((peer, e)),
                Some(Err(e)) => failures.push((
                    "(a peer)".into(),
                    SendError::Retry {
                        reason: format!("the send task failed: {e}"),
                        retry_after: None,
                    },
                )),
            }
        }
        if accepted > 0 {
            return Ok(format!(
                "{accepted} of {} Alertmanager peers accepted",
                self.urls.len()
            ));
        }
        let said = failures
            .iter()
            .map(|(u, e)| format!("{u}: {e}"))
            .collect::<Vec<_>>()
            .join("; ");
        if failures
            .iter()
            .any(|(_, e)| matches!(e, SendError::Retry { .. }))
        {
            Err(SendError::Retry {
                reason: format!("no Alertmanager peer took the alerts: {said}"),
                retry_after: None,
            })
        } else {
            Err(SendError::Permanent(format!(
                "every Alertmanager peer refused the alerts: {said}"
            )))
        }
    }
}

impl Sender for Alertmanager {
    async fn send(&self, doc: &AlertDoc) -> Result<String, SendError> {
        let now = self.clock.now();
        self.post(&Value::Array(self.alerts_for(doc, now))).await
    }
}
