//! The alert document (PRODUCT.md section 5) and the digest rule that builds it.
//!
//! [`digest`] turns one cycle's events into one document per channel, kind and tier: 300
//! chats breaching at once are one notification, not 300. The document is what the outbox
//! stores and what every channel renders; the webhook channel posts it as it is. This
//! module decides nothing about *whether* to alert (that is `sla`) and sends nothing (that
//! is `notify`).

use crate::sla::{Event, EventKind};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Firing,
    Resolved,
    Blind,
    Recovered,
    Test,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Firing => "firing",
            Status::Resolved => "resolved",
            Status::Blind => "blind",
            Status::Recovered => "recovered",
            Status::Test => "test",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AlertDoc {
    pub version: u32,
    pub status: Status,
    pub instance: String,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub tier: Option<TierRef>,
    /// When the document was made; a retried delivery keeps the original instant.
    pub sent_at: i64,
    pub chats: Vec<AlertChat>,
    /// For `blind` and `recovered`: what went wrong (secrets redacted) or how long.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub message: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct TierRef {
    pub index: usize,
    pub after_seconds: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AlertChat {
    pub id: String,
    pub name: Option<String>,
    /// `individual`, `group` or `other` (from the JID suffix).
    pub kind: String,
    pub unread_count: Option<i64>,
    pub waiting_since: i64,
    /// Wall-clock wait: until now when firing, until the end when resolved.
    pub waiting_seconds: i64,
    /// The age the SLA counts (business time where business hours apply).
    pub sla_seconds: i64,
    pub tier: usize,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub repeat: bool,
    pub last_message: Option<AlertMessage>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AlertMessage {
    pub id: Option<String>,
    pub body: Option<String>,
    pub timestamp: Option<i64>,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub has_media: bool,
}

impl AlertChat {
    /// `https://wa.me/<number>` for individual chats.
    pub fn link(&self) -> Option<String> {
        let number = self.id.strip_suffix("@c.us")?;
        number
            .bytes()
            .all(|b| b.is_ascii_digit())
            .then(|| format!("https://wa.me/{number}"))
    }
}

pub fn chat_kind(jid: &str) -> &'static str {
    if jid.ends_with("@g.us") {
        "group"
    } else if jid.ends_with("@c.us") || jid.ends_with("@s.whatsapp.net") || jid.ends_with("@lid") {
        "individual"
    } else {
        "other"
    }
}

/// One notification to enqueue.
#[derive(Debug, Clone, PartialEq)]
pub struct Outgoing {
    pub channel: String,
    pub doc: AlertDoc,
}

/// Groups one cycle's events: one document per (channel, status, tier).
pub fn digest(instance: &str, events: &[Event], now: i64) -> Vec<Outgoing> {
    let mut groups: BTreeMap<(String, Status, usize), (u64, Vec<AlertChat>)> = BTreeMap::new();
    for event in events {
        let (status, tier, after, repeat) = match event.kind {
            EventKind::Firing {
                tier,
                after_secs,
                repeat,
            } => (Status::Firing, tier, after_secs, repeat),
            // Resolved notices of all tiers go out together: one per channel.
            EventKind::Resolved { .. } => (Status::Resolved, usize::MAX, 0, false),
        };
        let tier_of_chat = match event.kind {
            EventKind::Firing { tier, .. } | EventKind::Resolved { tier } => tier,
        };
        let ep = &event.episode;
        let chat = AlertChat {
            id: ep.jid.clone(),
            name: ep.name.clone(),
            kind: chat_kind(&ep.jid).to_string(),
            unread_count: ep.unread,
            waiting_since: ep.started_at,
            waiting_seconds: event.waited,
            sla_seconds: event.age,
            tier: tier_of_chat,
            repeat,
            last_message: ep.last_message.as_ref().map(|m| AlertMessage {
                id: m.id.clone(),
                body: m.body.clone(),
                timestamp: m.timestamp,
                has_media: m.has_media,
            }),
        };
        for channel in &event.channels {
            let entry = groups
                .entry((channel.clone(), status, tier))
                .or_insert((after, Vec::new()));
            entry.1.push(chat.clone());
        }
    }
    groups
        .into_iter()
        .map(|((channel, status, tier), (after, mut chats))| {
            // Longest wait first: the chat most at risk leads the message.
            chats.sort_by(|a, b| a.waiting_since.cmp(&b.waiting_since).then(a.id.cmp(&b.id)));
            let tier = match status {
                Status::Firing => Some(TierRef {
                    index: tier,
                    after_seconds: after,
                }),
                _ => None,
            };
            Outgoing {
                channel,
                doc: AlertDoc {
                    version: 1,
                    status,
                    instance: instance.to_string(),
                    tier,
                    sent_at: now,
                    chats,
                    message: None,
                },
            }
        })
        .collect()
}

/// "3h 12m", "45m", "20s": the short form alerts use.
pub fn short_duration(secs: i64) -> String {
    let secs = secs.max(0);
    let (d, h, m) = (secs / 86400, secs % 86400 / 3600, secs % 3600 / 60);
    match (d, h, m) {
        (0, 0, 0) => format!("{secs}s"),
        (0, 0, m) => format!("{m}m"),
        (0, h, 0) => format!("{h}h"),
        (0, h, m) => format!("{h}h {m}m"),
        (d, 0, _) => format!("{d}d"),
        (d, h, _) => format!("{d}d {h}h"),
    }
}

/// "2026-11-26 09:14 UTC"
pub fn utc_time(unix: i64) -> String {
    chrono::DateTime::from_timestamp(unix, 0)
        .map(|t| t.format("%Y-%m-%d %H:%M UTC").to_string())
        .unwrap_or_else(|| unix.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_read_like_a_person_wrote_them() {
        assert_eq!(short_duration(3 * 3600 + 12 * 60 + 5), "3h 12m");
        assert_eq!(short_duration(7200), "2h");
        assert_eq!(short_duration(45 * 60), "45m");
        assert_eq!(short_duration(20), "20s");
        assert_eq!(short_duration(86400 * 2 + 3600 * 5), "2d 5h");
    }

    #[test]
    fn links_only_for_phone_numbers() {
        let mut c = AlertChat {
            id: "201234567890@c.us".into(),
            name: None,
            kind: "individual".into(),
            unread_count: None,
            waiting_since: 0,
            waiting_seconds: 0,
            sla_seconds: 0,
            tier: 0,
            repeat: false,
            last_message: None,
        };
        assert_eq!(c.link().as_deref(), Some("https://wa.me/201234567890"));
        c.id = "1203630@g.us".into();
        assert_eq!(c.link(), None);
    }
}
