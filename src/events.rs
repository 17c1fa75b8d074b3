//! `[events]`: Wawp/WAHA webhooks as a doorbell (docs/spec.md section 7).
//!
//! An event (`message`, `message.any`, `message.ack`, `session.status`) for a configured
//! instance rings that instance's [`Doorbells`]: its poll loop polls at once, at most once
//! a second. The event itself is never believed: engines lose `fromMe` events and
//! mislabel their source, so the poll stays the only truth, and a forged or replayed event
//! can cause at most an extra poll. This module checks what a request may ring (the
//! signature, the body's size, replays) and rings; it does not poll, and it does not
//! judge chats.

use crate::config::Config;
use crate::secret::Secret;
use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::Notify;

/// The largest webhook body read; a larger one is refused unread (413).
pub const MAX_BODY: usize = 1 << 20;
/// An event `id` seen this recently is a replay: ignored.
pub const REPLAY_WINDOW: Duration = Duration::from_secs(600);
/// A rung instance polls at most this often, however many events arrive.
pub const MIN_POLL_GAP: Duration = Duration::from_secs(1);
/// Event ids remembered at most (a flood of distinct ids must not grow memory for ever).
const REMEMBERED_IDS: usize = 100_000;

/// The event kinds that say an inbox changed.
const KINDS: [&str; 4] = ["message", "message.any", "message.ack", "session.status"];

/// One doorbell per instance (by name), shared by the webhook route, which rings, and the
/// poll loops, which wait on them. A ring while nobody waits is kept (once): rings
/// coalesce.
#[derive(Clone, Default)]
pub struct Doorbells {
    bells: Arc<Mutex<HashMap<String, Arc<Notify>>>>,
}

impl Doorbells {
    /// The instance's doorbell (made on first use, kept across reloads).
    pub fn bell(&self, instance: &str) -> Arc<Notify> {
        self.bells
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry(instance.to_string())
            .or_default()
            .clone()
    }

    /// Asks the instance to poll now (an acknowledgement is told at that poll).
    pub fn ring(&self, instance: &str) {
        self.bell(instance).notify_one();
    }
}

/// What became of one webhook request.
#[derive(Debug, PartialEq, Eq)]
pub enum Outcome {
    /// The instance polls now (or within the debounce second).
    Rang(String),
    /// Taken but ignored: an unknown instance or kind, or a replay. Said at debug level.
    Ignored(String),
    /// No or a wrong `X-Webhook-Hmac` while `hmac_key_file` is set: 401.
    BadSignature,
    /// Not a JSON event: 400.
    Unreadable(String),
}

/// The webhook receiver: the signature check, the replay window and the doorbells.
#[derive(Clone, Default)]
pub struct Receiver {
    pub doorbells: Doorbells,
    seen: Arc<Mutex<Seen>>,
}

#[derive(Default)]
struct Seen {
    ids: HashMap<String, Instant>,
    order: VecDeque<(Instant, String)>,
}

impl Seen {
    /// Whether `id` was seen within the window; records it either way.
    fn replayed(&mut self, id: &str, now: Instant) -> bool {
        while let Some((at, _)) = self.order.front() {
            if now.duration_since(*at) < REPLAY_WINDOW && self.order.len() < REMEMBERED_IDS {
                break;
            }
            if let Some((at, old)) = self.order.pop_front()
                && self.ids.get(&old) == Some(&at)
            {
                self.ids.remove(&old);
            }
        }
        if let Some(at) = self.ids.get(id)
            && now.duration_since(*at) < REPLAY_WINDOW
        {
            return true;
        }
        self.ids.insert(id.to_string(), now);
        self.order.push_back((now, id.to_string()));
        false
    }
}

impl Receiver {
    /// Judges one POSTed body under the running `config`: `signature` is the
    /// `X-Webhook-Hmac` header as sent.
    pub fn receive(&self, config: &Config, signature: Option<&str>, body: &[u8]) -> Outcome {
        let Some(events) = &config.events else {
            return Outcome::Ignored("[events] is not configured".into());
        };
        if let Some(key) = &events.hmac_key
            && !signature.is_some_and(|s| verify(key, body, s))
        {
            return Outcome::BadSignature;
        }
        let event: serde_json::Value = match serde_json::from_slice(body) {
            Ok(v @ serde_json::Value::Object(_)) => v,
            Ok(_) => return Outcome::Unreadable("the body is not a JSON object".into()),
            Err(e) => return Outcome::Unreadable(format!("the body is not JSON: {e}")),
        };
        let kind = event.get("event").and_then(|v| v.as_str()).unwrap_or("");
        if !KINDS.contains(&kind) {
            return Outcome::Ignored(format!("event kind \"{kind}\" does not change an inbox"));
        }
        // Wawp names the instance by its id; WAHA by its session name. Either may be the
        // instance's `instance_id`, or its name in this config.
        let names: Vec<&str> = ["instance_id", "instanceId", "session"]
            .iter()
            .filter_map(|k| event.get(*k))
            .filter_map(|v| match v {
                serde_json::Value::String(s) => Some(s.as_str()),
                _ => None,
            })
            .collect();
        let numbers: Vec<String> = ["instance_id", "instanceId"]
            .iter()
            .filter_map(|k| event.get(*k).and_then(|v| v.as_u64()))
            .map(|n| n.to_string())
            .collect();
        let instance = config.instances.iter().find(|i| {
            names
                .iter()
                .copied()
                .chain(numbers.iter().map(String::as_str))
                .any(|n| n == i.instance_id || n == i.name)
        });
        let Some(instance) = instance else {
            return Outcome::Ignored(format!(
                "event for an instance that is not configured ({})",
                names.join(", ")
            ));
        };
        if let Some(id) = event.get("id").and_then(|v| v.as_str())
            && !id.is_empty()
            && self
                .seen
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .replayed(id, Instant::now())
        {
            return Outcome::Ignored(format!("event {id} was seen in the last 10 minutes"));
        }
        self.doorbells.ring(&instance.name);
        Outcome::Rang(instance.name.clone())
    }
}

/// Whether `signature` (hex) is the HMAC-SHA512 of `body` under `key`, as WAHA signs
/// (`X-Webhook-Hmac`), compared in constant time.
pub fn verify(key: &Secret, body: &[u8], signature: &str) -> bool {
    let Some(tag) = crate::notify::from_hex(signature.trim()) else {
        return false;
    };
    let key = aws_lc_rs::hmac::Key::new(aws_lc_rs::hmac::HMAC_SHA512, key.expose().as_bytes());
    aws_lc_rs::hmac::verify(&key, body, &tag).is_ok()
}

/// The hex HMAC-SHA512 of `body` under `key`: what WAHA sends as `X-Webhook-Hmac`.
pub fn sign(key: &[u8], body: &[u8]) -> String {
    let key = aws_lc_rs::hmac::Key::new(aws_lc_rs::hmac::HMAC_SHA512, key);
    aws_lc_rs::hmac::sign(&key, body)
        .as_ref()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// WAHA's documented example (its webhooks page): this body and key give a digest
    /// starting 208f8a55dde9 and ending 6153fa89.
    #[test]
    fn signs_as_waha_documents() {
        let body = br#"{"event":"message","session":"default","engine":"WEBJS"}"#;
        let tag = sign(b"my-secret-key", body);
        assert_eq!(tag.len(), 128);
        assert!(tag.starts_with("208f8a55dde9"), "{tag}");
        assert!(tag.ends_with("6153fa89"), "{tag}");
        let key = Secret::new("my-secret-key".to_string());
        assert!(verify(&key, body, &tag));
        assert!(verify(&key, body, &tag.to_uppercase()));
        assert!(!verify(&key, b"{}", &tag));
        assert!(!verify(&key, body, "00"));
        assert!(!verify(&key, body, "not hex"));
    }

    #[test]
    fn an_event_id_is_a_replay_for_ten_minutes() {
        let mut seen = Seen::default();
        let t0 = Instant::now();
        assert!(!seen.replayed("a", t0));
        assert!(seen.replayed("a", t0 + Duration::from_secs(599)));
        assert!(!seen.replayed("b", t0 + Duration::from_secs(1)));
        assert!(!seen.replayed("a", t0 + Duration::from_secs(601)));
    }
}
