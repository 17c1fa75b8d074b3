//! The Alertmanager channel: API v2, `POST /api/v2/alerts`, one alert per open episode.
//!
//! Each alert carries `alertname="WhatsAppChatWaiting"`, `wawp_instance` (not `instance`,
//! which Prometheus setups give the scrape target), `chat`, `kind`, `tier` (the highest
//! fired `after`, like "2h") and the channel's own `labels`; annotations `summary`, `name`,
//! `preview` and `link`; `startsAt` the episode start. It goes to every URL in `urls`: an
//! Alertmanager cluster deduplicates itself, so one peer taking it is delivery.
//!
//! Alertmanager forgets an alert that is not re-sent: firing alerts carry `endsAt` a few
//! resend intervals ahead (as Prometheus does) and are re-sent every `resend` from the
//! store by `deliver::refresh_alertmanager`; an ended episode is sent with `endsAt` its end
//! for the next five minutes. Nothing here decides which episodes those are.

use super::{SendError, post_json, text};
use crate::alert::{AlertChat, AlertDoc, Status, rfc3339, short_duration};
use crate::secret::Redactor;
use crate::untrusted;
use reqwest::Url;
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Duration;

/// How long an ended episode is still sent (resolved) after it ended.
pub const RESOLVED_FOR: i64 = 300;

pub struct Alertmanager {
    http: reqwest::Client,
    urls: Vec<Url>,
    resend: Duration,
    labels: BTreeMap<String, String>,
    /// The status page, when `http.listen` is set.
    generator_url: Option<String>,
    redactor: Redactor,
}

/// What an alert is made of, from a document or from the store.
pub struct Waiting<'a> {
    pub instance: &'a str,
    pub chat: &'a AlertChat,
    /// `None` while firing; the episode's end once resolved.
    pub ended_at: Option<i64>,
}

impl Alertmanager {
    pub fn new(
        http: reqwest::Client,
        urls: Vec<Url>,
        resend: Duration,
        labels: BTreeMap<String, String>,
        listen: Option<SocketAddr>,
        redactor: Redactor,
    ) -> Self {
        Alertmanager {
            http,
            urls,
            resend,
            labels,
            generator_url: listen.map(|a| format!("http://{a}/")),
            redactor,
        }
    }

    pub fn resend_every(&self) -> Duration {
        self.resend
    }

    pub async fn send(&self, doc: &AlertDoc) -> Result<String, SendError> {
        let now = chrono::Utc::now().timestamp();
        self.post(&Value::Array(self.alerts_for(doc, now))).await
    }

    /// Alerts for a document: its chats, or the monitor's own alert (blind, recovered),
    /// or a test alert that ends by itself a minute later.
    pub fn alerts_for(&self, doc: &AlertDoc, now: i64) -> Vec<Value> {
        match doc.status {
            Status::Firing | Status::Resolved => doc
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
                    "generatorURL": self.generator_url.clone().unwrap_or_default(),
                })]
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

    /// How far ahead a firing alert's `endsAt` is: four resend intervals, as Prometheus
    /// does, so a missed resend or two is not a false resolution.
    fn ends_in(&self) -> i64 {
        4 * self.resend.as_secs() as i64
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
        let mut alert = json!({
            "labels": labels,
            "annotations": annotations,
            "startsAt": rfc3339(c.waiting_since),
            "endsAt": rfc3339(w.ended_at.unwrap_or(now + self.ends_in())),
        });
        if let Some(g) = &self.generator_url {
            alert["generatorURL"] = json!(g);
        }
        alert
    }

    /// POSTs alerts to every peer: delivered when at least one took them. When none did,
    /// the failure is worth a retry if any peer's was.
    pub async fn post(&self, alerts: &Value) -> Result<String, SendError> {
        if alerts.as_array().is_some_and(Vec::is_empty) {
            return Ok("nothing to send".into());
        }
        let mut failures = Vec::new();
        let mut accepted = 0;
        for url in &self.urls {
            let mut endpoint = url.clone();
            let base = endpoint.path().trim_end_matches('/').to_string();
            endpoint.set_path(&format!("{base}/api/v2/alerts"));
            match post_json(self.http.post(endpoint), alerts, &self.redactor).await {
                Ok(_) => accepted += 1,
                Err(e) => failures.push((url.as_str().to_string(), e)),
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
