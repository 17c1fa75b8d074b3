//! The PagerDuty channel: Events API v2, one incident per waiting chat.
//!
//! A chat's first tier for this channel sends `trigger` with the dedup key
//! `inbox-sla/<instance>/<chat id>/<episode start>` (stable for the episode, new for the
//! next), a later tier triggers the same key again (the incident is updated, not doubled),
//! and the episode's end sends `resolve`. A blind monitor is an incident of its own,
//! resolved when polling recovers. 202 is success, 400 is permanent (the event or the key
//! is wrong), 429 and 5xx are retried; at most two events a second per routing key, as
//! PagerDuty asks.
//!
//! With a v3 webhook subscription's secret (`webhook_secret_file`), PagerDuty tells us back
//! when someone acknowledges one of our incidents: the webhook is checked ([`verify`]) and
//! read ([`webhook`]) here; `hooks` finds the episode whose [`episode_key`] it names and
//! acknowledges it.

use super::types::{checked_url, ser_url};
use super::{
    ChannelType, Context, Pacer, SendError, Sender, Setup, hmac_sha256_matches, post_json, text,
};
use crate::alert::{AlertChat, AlertDoc, Shape, Status, rfc3339, short_duration};
use crate::secret::{Redactor, Secret};
use crate::untrusted;
use reqwest::Url;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use std::path::PathBuf;
use std::time::Duration;

/// PagerDuty's limit on `payload.summary`.
pub const SUMMARY_CHARS: usize = 1024;

/// `type = "pagerduty"`: the table's keys.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Keys {
    routing_key: Option<String>,
    routing_key_file: Option<PathBuf>,
    severity: Option<Severity>,
    url: Option<String>,
    webhook_secret_file: Option<PathBuf>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Settings {
    /// The Events API v2 integration key.
    pub routing_key: Secret,
    pub severity: Severity,
    /// https unless loopback.
    #[serde(serialize_with = "ser_url")]
    pub url: Url,
    /// The secret of the v3 webhook subscription that tells `/hooks/pagerduty` when one of
    /// our incidents is acknowledged in PagerDuty.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub webhook_secret: Option<Secret>,
}

/// PagerDuty's event severities.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Critical,
    Error,
    Warning,
    Info,
}

impl Severity {
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Critical => "critical",
            Severity::Error => "error",
            Severity::Warning => "warning",
            Severity::Info => "info",
        }
    }
}

impl ChannelType for Settings {
    const NAME: &'static str = "pagerduty";
    /// PagerDuty groups alerts itself: one incident per waiting chat.
    const SHAPE: Shape = Shape::PerChat;
    type Keys = Keys;
    type Sender = PagerDuty;

    fn new(keys: Keys, setup: &mut Setup) -> Result<Self, String> {
        let routing_key = setup.required_secret(
            "routing_key",
            keys.routing_key,
            keys.routing_key_file,
            " (from the PagerDuty service's Events API v2 integration)",
        )?;
        let url = checked_url(
            &setup.key("url"),
            keys.url
                .as_deref()
                .unwrap_or("https://events.pagerduty.com/v2/enqueue"),
        )?;
        let webhook_secret = setup.secret("webhook_secret", None, keys.webhook_secret_file)?;
        Ok(Settings {
            routing_key,
            severity: keys.severity.unwrap_or(Severity::Error),
            url,
            webhook_secret,
        })
    }

    fn secrets(&self) -> Vec<&Secret> {
        let mut all = vec![&self.routing_key];
        all.extend(&self.webhook_secret);
        all
    }

    fn calls_back(&self) -> Option<&'static str> {
        self.webhook_secret
            .is_some()
            .then_some("webhook_secret_file")
    }

    fn sender(&self, context: &Context) -> Result<PagerDuty, String> {
        Ok(PagerDuty::new(
            context.http.clone(),
            self.url.clone(),
            self.routing_key.clone(),
            self.severity,
            context.redactor.clone(),
        ))
    }
}

pub struct PagerDuty {
    http: reqwest::Client,
    url: Url,
    routing_key: Secret,
    severity: Severity,
    redactor: Redactor,
    /// Two events a second per routing key.
    pacer: Pacer,
}

impl PagerDuty {
    pub fn new(
        http: reqwest::Client,
        url: Url,
        routing_key: Secret,
        severity: Severity,
        redactor: Redactor,
    ) -> Self {
        PagerDuty {
            http,
            url,
            routing_key,
            severity,
            redactor,
            pacer: Pacer::new(Duration::from_millis(500)),
        }
    }

    async fn post(&self, event: &Value) -> Result<String, SendError> {
        let request = self.http.post(self.url.clone());
        let answer = self
            .pacer
            .paced(post_json(request, event, &self.redactor))
            .await?;
        let message = serde_json::from_str::<Value>(&answer.body)
            .ok()
            .and_then(|v| v["message"].as_str().map(str::to_string))
            .unwrap_or_default();
        Ok(format!("{} {message}", answer.status).trim().to_string())
    }
}

impl Sender for PagerDuty {
    /// Sends the document's events (one per chat; a per-chat document has one).
    async fn send(&self, doc: &AlertDoc) -> Result<String, SendError> {
        let mut said = Vec::new();
        for event in events(doc, self.routing_key.expose(), self.severity) {
            said.push(self.post(&event).await?);
        }
        Ok(said.join("; "))
    }

    /// A test: a `trigger` of a clearly marked test incident, then its `resolve`.
    async fn test(&self, doc: &AlertDoc) -> Result<String, SendError> {
        let key = bounded_key(format!("inbox-sla/test/{}/{}", doc.instance, doc.sent_at));
        let trigger = json!({
            "routing_key": self.routing_key.expose(),
            "event_action": "trigger",
            "dedup_key": key,
            "payload": {
                "summary": untrusted::clip_chars(&format!("TEST from inbox-sla through channel \"{}\": no customer is waiting", doc.instance), SUMMARY_CHARS),
                "source": "inbox-sla",
                "severity": "info",
                "timestamp": rfc3339(doc.sent_at),
                "class": "test",
                "custom_details": {"message": doc.message},
            },
            "client": "inbox-sla",
        });
        let triggered = self.post(&trigger).await?;
        let resolved = self.post(&resolve(self.routing_key.expose(), &key)).await?;
        Ok(format!("trigger: {triggered}; resolve: {resolved}"))
    }
}

/// PagerDuty's limit on `dedup_key` (Events API v2: "Maximum length 255"). Counted in
/// bytes here, which also keeps it within 255 characters.
pub const DEDUP_KEY_MAX: usize = 255;

/// The incident key of one episode.
pub fn dedup_key(instance: &str, chat: &AlertChat) -> String {
    episode_key(instance, &chat.id, chat.waiting_since)
}

/// The incident key of the episode of `chat` in `instance` that started at `since`:
/// `inbox-sla/<instance>/<chat>/<since>`, bounded to [`DEDUP_KEY_MAX`].
pub fn episode_key(instance: &str, chat: &str, since: i64) -> String {
    bounded_key(format!("inbox-sla/{instance}/{chat}/{since}"))
}

/// The episode an incident key names, read back from a key that was not bounded:
/// (instance, chat, start). A JID has no `/`, so the instance is everything before the
/// chat, slashes and all. `None` for a key that is not one of ours, or was bounded (then
/// only comparing it with each open episode's [`episode_key`] finds its episode).
pub fn read_key(key: &str) -> Option<(&str, &str, i64)> {
    let rest = key.strip_prefix("inbox-sla/")?;
    let (rest, since) = rest.rsplit_once('/')?;
    let (instance, chat) = rest.rsplit_once('/')?;
    let since: i64 = since.parse().ok()?;
    (!instance.is_empty() && chat.contains('@') && episode_key(instance, chat, since) == key)
        .then_some((instance, chat, since))
}

/// A key within [`DEDUP_KEY_MAX`]: as it is when it fits; otherwise its head, cut at a
/// character boundary, and a hash of the whole, so that it stays the same for the episode
/// and differs from every other episode's. A 400 for a long instance name or chat id
/// would page nobody.
fn bounded_key(key: String) -> String {
    if key.len() <= DEDUP_KEY_MAX {
        return key;
    }
    let tail = format!("~{:016x}", xxhash_rust::xxh3::xxh3_64(key.as_bytes()));
    let mut cut = DEDUP_KEY_MAX - tail.len();
    while !key.is_char_boundary(cut) {
        cut -= 1;
    }
    format!("{}{tail}", &key[..cut])
}

fn resolve(routing_key: &str, key: &str) -> Value {
    json!({"routing_key": routing_key, "event_action": "resolve", "dedup_key": key})
}

/// The Events API v2 events for a document.
pub fn events(doc: &AlertDoc, routing_key: &str, severity: Severity) -> Vec<Value> {
    let blind_key = bounded_key(format!("inbox-sla/{}/blind", doc.instance));
    match doc.status {
        // A tier that fires after an acknowledgement ran out: PagerDuty keeps an
        // acknowledged incident quiet whatever triggers it gets, so the incident is
        // resolved and opened again under the same key, and pages as a new incident.
        Status::Firing => doc
            .chats
            .iter()
            .flat_map(|c| {
                let again = c
                    .acknowledged_by
                    .is_some()
                    .then(|| resolve(routing_key, &dedup_key(&doc.instance, c)));
                again
                    .into_iter()
                    .chain(std::iter::once(trigger(doc, c, routing_key, severity)))
            })
            .collect(),
        Status::Resolved => doc
            .chats
            .iter()
            .map(|c| resolve(routing_key, &dedup_key(&doc.instance, c)))
            .collect(),
        // PagerDuty's own acknowledgement: the incident stops escalating there too.
        Status::Acknowledged => doc
            .chats
            .iter()
            .map(|c| {
                json!({"routing_key": routing_key, "event_action": "acknowledge",
                       "dedup_key": dedup_key(&doc.instance, c)})
            })
            .collect(),
        Status::Blind => vec![json!({
            "routing_key": routing_key,
            "event_action": "trigger",
            "dedup_key": blind_key,
            "payload": {
                "summary": untrusted::clip_chars(&text::summary(doc), SUMMARY_CHARS),
                "source": doc.instance,
                "severity": "critical",
                "timestamp": rfc3339(doc.sent_at),
                "class": "monitor blind",
                "custom_details": {"message": doc.message},
            },
            "client": "inbox-sla",
        })],
        Status::Recovered => vec![resolve(routing_key, &blind_key)],
        Status::Test => vec![json!({
            "routing_key": routing_key,
            "event_action": "trigger",
            "dedup_key": bounded_key(format!("inbox-sla/test/{}/{}", doc.instance, doc.sent_at)),
            "payload": {
                "summary": "TEST from inbox-sla: no customer is waiting",
                "source": "inbox-sla",
                "severity": "info",
                "timestamp": rfc3339(doc.sent_at),
                "class": "test",
            },
        })],
    }
}

/// "Amina Hassan waiting 2h 5m on support", within PagerDuty's 1024 characters.
pub fn summary(instance: &str, c: &AlertChat) -> String {
    let tail = format!(
        " waiting {} on {}",
        short_duration(c.waiting_seconds),
        untrusted::display(instance, 100)
    );
    let room = SUMMARY_CHARS - tail.chars().count().min(SUMMARY_CHARS);
    let name = untrusted::clip_chars(&text::name(c), room).into_owned();
    untrusted::clip_chars(&format!("{name}{tail}"), SUMMARY_CHARS).into_owned()
}

fn trigger(doc: &AlertDoc, c: &AlertChat, routing_key: &str, severity: Severity) -> Value {
    let mut details = serde_json::to_value(c).unwrap_or(Value::Null);
    if let (Value::Object(d), Some(t)) = (&mut details, doc.tier) {
        d.insert(
            "tier_after".into(),
            json!(short_duration(t.after_seconds as i64)),
        );
        d.insert("instance".into(), json!(doc.instance));
    }
    let mut event = json!({
        "routing_key": routing_key,
        "event_action": "trigger",
        "dedup_key": dedup_key(&doc.instance, c),
        "payload": {
            "summary": summary(&doc.instance, c),
            "source": doc.instance,
            "severity": severity.as_str(),
            "timestamp": rfc3339(c.waiting_since),
            "component": c.kind,
            "group": doc.instance,
            "class": "whatsapp sla breach",
            "custom_details": details,
        },
        "client": "inbox-sla",
    });
    if let Some(link) = c.link() {
        event["links"] = json!([{"href": link, "text": "Open in WhatsApp"}]);
    }
    event
}

/// Whether a v3 webhook is signed by one of `secrets`: `X-PagerDuty-Signature` is a
/// comma-separated list of `v1=<hex HMAC-SHA256 of the raw body>`, one per secret in force
/// (two while a secret is rotated); one match is enough. Compared in constant time.
pub fn verify(secrets: &[&Secret], signature: Option<&str>, body: &[u8]) -> bool {
    let Some(signature) = signature else {
        return false;
    };
    let offered: Vec<&str> = signature
        .split(',')
        .filter_map(|s| s.trim().strip_prefix("v1="))
        .collect();
    secrets.iter().any(|secret| {
        offered
            .iter()
            .any(|hex| hmac_sha256_matches(secret, &[body], hex))
    })
}

/// Who acknowledged, as a v3 webhook's `event.agent` says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Agent {
    /// A person (`user_reference`): their name (`summary`).
    Person(String),
    /// An integration or service (`service_reference`, …): our own `acknowledge` event
    /// coming back, most likely. Believing it would re-tell every channel that "the
    /// PagerDuty service" acknowledged what a person already had.
    Machine(String),
    /// The webhook names nobody.
    Nobody,
}

/// One v3 webhook, as far as we read it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Webhook {
    /// `event.id`: the same event delivered twice is one.
    pub id: Option<String>,
    /// `event.event_type`: `incident.acknowledged`, `incident.resolved`, …
    pub event_type: String,
    /// `event.data.incident_key` when `event.data` is an incident: the Events API's
    /// `dedup_key` of the incident's first alert, ours when we triggered it.
    pub incident_key: Option<String>,
    pub agent: Agent,
}

/// Reads a v3 webhook body: `{"event": {"id", "event_type", "agent", "data": {...}}}`.
pub fn webhook(body: &[u8]) -> Result<Webhook, String> {
    let v: Value =
        serde_json::from_slice(body).map_err(|e| format!("the body is not JSON: {e}"))?;
    let event = v
        .get("event")
        .filter(|e| e.is_object())
        .ok_or("the body has no event object (is this a v3 webhook?)")?;
    let text = |v: &Value| v.as_str().map(str::to_string);
    let agent = &event["agent"];
    let name = text(&agent["summary"]).filter(|n| !n.trim().is_empty());
    let agent = match (agent["type"].as_str(), name) {
        (_, None) => Agent::Nobody,
        (Some("user_reference" | "user"), Some(n)) => Agent::Person(n),
        (_, Some(n)) => Agent::Machine(n),
    };
    let data = &event["data"];
    Ok(Webhook {
        id: text(&event["id"]),
        event_type: text(&event["event_type"]).unwrap_or_default(),
        incident_key: (data["type"] == "incident")
            .then(|| text(&data["incident_key"]))
            .flatten(),
        agent,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chat(id: &str, since: i64) -> AlertChat {
        AlertChat {
            id: id.into(),
            name: None,
            kind: "individual".into(),
            unread_count: None,
            waiting_since: since,
            waiting_seconds: 0,
            sla_seconds: 0,
            tier: 0,
            repeat: false,
            last_message: None,
            tiers_fired: Vec::new(),
            reason: None,
            acknowledged_by: None,
            acknowledged_at: None,
        }
    }

    /// Section 2: once an acknowledgement has run out the escalation goes on, and in
    /// PagerDuty too: an acknowledged incident stays quiet whatever triggers it gets, so a
    /// later tier resolves it and opens it again under the same key. (Found by review.)
    #[test]
    fn a_tier_after_an_acknowledgement_ran_out_opens_the_incident_again() {
        let mut c = chat("201234567890@c.us", 1_790_000_000);
        let doc = |c: &AlertChat| AlertDoc {
            version: 1,
            status: Status::Firing,
            instance: "support".into(),
            tier: None,
            sent_at: 1_790_000_000,
            chats: vec![c.clone()],
            message: None,
        };
        let actions = |d: &AlertDoc| -> Vec<String> {
            events(d, "rk", Severity::Error)
                .iter()
                .map(|e| {
                    format!(
                        "{} {}",
                        e["event_action"].as_str().unwrap_or(""),
                        e["dedup_key"].as_str().unwrap_or("")
                    )
                })
                .collect()
        };
        let key = dedup_key("support", &c);
        assert_eq!(actions(&doc(&c)), [format!("trigger {key}")]);
        c.acknowledged_by = Some("Amina".into());
        c.acknowledged_at = Some(1_790_000_100);
        assert_eq!(
            actions(&doc(&c)),
            [format!("resolve {key}"), format!("trigger {key}")],
            "an acknowledged incident would swallow the trigger"
        );
    }

    /// PagerDuty answers 400 to a `dedup_key` over 255 characters, and 400 is permanent:
    /// an instance named with 240 characters, or a long chat id, must still page.
    #[test]
    fn every_dedup_key_fits_pagerdutys_limit_and_stays_the_episodes_own() {
        let short = dedup_key("support", &chat("201234567890@c.us", 1_790_000_000));
        assert_eq!(short, "inbox-sla/support/201234567890@c.us/1790000000");
        for instance in ["s".repeat(240), "ß".repeat(200), "客服".repeat(90)] {
            for id in [
                "201234567890@c.us".to_string(),
                format!("{}@g.us", "9".repeat(200)),
            ] {
                let a = dedup_key(&instance, &chat(&id, 1_790_000_000));
                assert!(a.len() <= DEDUP_KEY_MAX, "{} bytes: {a}", a.len());
                assert!(a.chars().count() <= DEDUP_KEY_MAX);
                assert_eq!(a, dedup_key(&instance, &chat(&id, 1_790_000_000)), "stable");
                assert_ne!(
                    a,
                    dedup_key(&instance, &chat(&id, 1_790_000_001)),
                    "the next episode is another incident"
                );
                let doc = AlertDoc {
                    version: 1,
                    status: Status::Blind,
                    instance: instance.clone(),
                    tier: None,
                    sent_at: 1,
                    chats: Vec::new(),
                    message: None,
                };
                for event in events(&doc, "key", Severity::Error) {
                    let key = event["dedup_key"].as_str().unwrap();
                    assert!(key.len() <= DEDUP_KEY_MAX, "blind key: {key}");
                }
            }
        }
    }

    /// A key names its episode back, slashes in the instance and all; a bounded key does
    /// not (it is compared with each open episode's instead), nor does anything not ours.
    #[test]
    fn an_incident_key_is_read_back_to_its_episode_unless_it_was_bounded() {
        for instance in ["support", "eu/support", "客服"] {
            let key = episode_key(instance, "201234567890@c.us", 1_790_000_000);
            assert_eq!(
                read_key(&key),
                Some((instance, "201234567890@c.us", 1_790_000_000))
            );
        }
        let long = "s".repeat(240);
        let bounded = episode_key(&long, "201234567890@c.us", 1_790_000_000);
        assert!(bounded.len() <= DEDUP_KEY_MAX);
        assert_eq!(read_key(&bounded), None);
        for other in [
            "d3640fbd41094207a1c11e58e46b1662",
            "inbox-sla/support/blind",
            "inbox-sla/support/201234567890@c.us/soon",
            "inbox-sla//201234567890@c.us/1",
        ] {
            assert_eq!(read_key(other), None, "{other}");
        }
    }

    fn sign(secret: &str, body: &[u8]) -> String {
        let key = aws_lc_rs::hmac::Key::new(aws_lc_rs::hmac::HMAC_SHA256, secret.as_bytes());
        let tag = aws_lc_rs::hmac::sign(&key, body);
        let hex: String = tag.as_ref().iter().map(|b| format!("{b:02x}")).collect();
        format!("v1={hex}")
    }

    /// As PagerDuty's "Verifying Signatures" says: one `v1=` per secret in force, comma
    /// separated; one match of any is enough.
    #[test]
    fn a_webhook_is_verified_by_any_v1_signature_under_any_secret() {
        let body = br#"{"event":{"event_type":"incident.acknowledged"}}"#;
        let ours = Secret::new("pd-webhook-secret-1");
        let rotated = Secret::new("pd-webhook-secret-0");
        let mine = sign("pd-webhook-secret-1", body);
        let old = sign("pd-webhook-secret-0", body);
        let stranger = sign("someone-else", body);
        assert!(verify(&[&ours], Some(&mine), body));
        assert!(verify(&[&ours], Some(&format!("{stranger},{mine}")), body));
        assert!(verify(&[&ours], Some(&format!("{stranger}, {mine}")), body));
        assert!(
            verify(&[&rotated, &ours], Some(&old), body),
            "any channel's"
        );
        assert!(!verify(&[&ours], Some(&stranger), body));
        assert!(!verify(&[&ours], Some(&mine.replace("v1=", "v2=")), body));
        assert!(!verify(&[&ours], Some(&mine), b"{}"), "the body is signed");
        assert!(!verify(&[&ours], None, body));
        assert!(!verify(&[&ours], Some(""), body));
    }

    /// The v3 payload as PagerDuty's webhook overview documents it.
    #[test]
    fn a_v3_webhook_is_read_for_its_type_incident_key_and_agent() {
        let body = json!({"event": {
            "id": "5ac64822-4adc-4fda-ade0-410becf0de4f",
            "event_type": "incident.acknowledged",
            "resource_type": "incident",
            "occurred_at": "2020-10-02T18:45:22.169Z",
            "agent": {"html_url": "https://acme.pagerduty.com/users/PLH1HKV", "id": "PLH1HKV",
                      "self": "https://api.pagerduty.com/users/PLH1HKV", "summary": "Amina Hassan",
                      "type": "user_reference"},
            "client": {"name": "PagerDuty"},
            "data": {"id": "PGR0VU2", "type": "incident", "number": 2, "status": "acknowledged",
                     "incident_key": "inbox-sla/support/201234567890@c.us/1790000000",
                     "title": "Amina waiting 2h on support"}
        }});
        let hook = webhook(body.to_string().as_bytes()).unwrap();
        assert_eq!(
            hook,
            Webhook {
                id: Some("5ac64822-4adc-4fda-ade0-410becf0de4f".into()),
                event_type: "incident.acknowledged".into(),
                incident_key: Some("inbox-sla/support/201234567890@c.us/1790000000".into()),
                agent: Agent::Person("Amina Hassan".into()),
            }
        );
        let mut by_service = body.clone();
        by_service["event"]["agent"] =
            json!({"id": "PSVC", "summary": "Inbox SLA", "type": "service_reference"});
        let hook = webhook(by_service.to_string().as_bytes()).unwrap();
        assert_eq!(hook.agent, Agent::Machine("Inbox SLA".into()));
        let mut nobody = body.clone();
        nobody["event"]["agent"] = Value::Null;
        assert_eq!(
            webhook(nobody.to_string().as_bytes()).unwrap().agent,
            Agent::Nobody
        );
        let mut note = body.clone();
        note["event"]["data"] = json!({"type": "incident_note", "id": "P2LA89X", "content": "hi"});
        assert_eq!(
            webhook(note.to_string().as_bytes()).unwrap().incident_key,
            None
        );
        assert!(webhook(b"[]").is_err());
        assert!(webhook(b"not json").is_err());
    }
}
