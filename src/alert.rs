//! The alert document (docs/spec.md section 5) and the digest rule that builds it.
//!
//! [`digest`] turns one cycle's events into one document per channel, kind and tier: 300
//! chats breaching at once are one notification, not 300. The document is what the outbox
//! stores and what every channel renders; the webhook channel posts it as it is. This
//! module decides nothing about *whether* to alert (that is `sla`) and sends nothing (that
//! is `notify`).

use crate::policy::Policy;
use crate::sla::{EndReason, Episode, Event, EventKind};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Firing,
    Resolved,
    Blind,
    Recovered,
    Acknowledged,
    Test,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Firing => "firing",
            Status::Resolved => "resolved",
            Status::Blind => "blind",
            Status::Recovered => "recovered",
            Status::Acknowledged => "acknowledged",
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

impl AlertDoc {
    /// A test document: clearly marked, with one sample chat so the layout can be judged.
    pub fn test(channel: &str, now: i64) -> AlertDoc {
        let host = crate::host::hostname();
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
                tiers_fired: Vec::new(),
                reason: None,
                acknowledged_by: None,
                acknowledged_at: None,
            }],
            message: Some(format!(
                "TEST: this is a test message from inbox-sla on {host} through channel \"{channel}\". No customer is waiting."
            )),
        }
    }
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
    /// The `after` (seconds) of every tier that has fired for this episode: on-call tools
    /// label an alert with the highest.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tiers_fired: Vec<u64>,
    /// In a resolved document, `"unwatched"` when the chat was not answered but is no
    /// longer watched (its instance was removed, or a rule now ignores it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// Who acknowledged the episode, once someone has (section 2, acknowledged).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub acknowledged_by: Option<String>,
    /// When it was acknowledged (Unix seconds).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub acknowledged_at: Option<i64>,
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
    /// An episode's chat as every document shows it, whoever builds it (a cycle's events,
    /// the Alertmanager re-send): `waited` is wall time, `age` the SLA's time (business time
    /// where business hours apply), `tier` the index of the highest tier that fired in the
    /// chat's policy.
    pub fn of(ep: &Episode, waited: i64, age: i64, tier: usize) -> AlertChat {
        AlertChat {
            id: ep.jid.clone(),
            name: ep.name.clone(),
            kind: chat_kind(&ep.jid).to_string(),
            unread_count: ep.unread,
            waiting_since: ep.started_at,
            waiting_seconds: waited,
            sla_seconds: age,
            tier,
            repeat: false,
            last_message: ep.last_message.as_ref().map(|m| AlertMessage {
                id: m.id.clone(),
                body: m.body.clone(),
                timestamp: m.timestamp,
                has_media: m.has_media,
            }),
            tiers_fired: ep.fired.clone(),
            reason: None,
            acknowledged_by: ep.ack.as_ref().map(|a| a.by.clone()),
            acknowledged_at: ep.ack.as_ref().map(|a| a.at),
        }
    }

    /// An open episode's chat at `now` under `policy`: its wait so far, and the highest
    /// tier that fired by its place in the chat's tiers (not by how many fired: a tier
    /// removed or reordered by a reload must not shift it).
    pub fn waiting(ep: &Episode, policy: &Policy, now: i64) -> AlertChat {
        let waited = (now - ep.started_at).max(0);
        let cp = policy.for_chat(&ep.jid, ep.name.as_deref());
        let age = cp.as_ref().map_or(waited, |cp| cp.age(ep.started_at, now));
        let highest = ep.fired.iter().copied().max().unwrap_or(0);
        let tier = cp
            .as_ref()
            .and_then(|cp| cp.tier_index(highest))
            .unwrap_or_else(|| ep.fired.len().saturating_sub(1));
        AlertChat::of(ep, waited, age, tier)
    }

    /// An ended episode's chat, from what history keeps of it (no unread count or
    /// preview). Its tier is the index among the tiers that fired.
    pub fn ended(
        jid: &str,
        name: Option<&str>,
        started_at: i64,
        waited: i64,
        age: i64,
        fired: &[u64],
    ) -> AlertChat {
        AlertChat {
            id: jid.to_string(),
            name: name.map(str::to_string),
            kind: chat_kind(jid).to_string(),
            unread_count: None,
            waiting_since: started_at,
            waiting_seconds: waited,
            sla_seconds: age,
            tier: fired.len().saturating_sub(1),
            repeat: false,
            last_message: None,
            tiers_fired: fired.to_vec(),
            reason: None,
            acknowledged_by: None,
            acknowledged_at: None,
        }
    }

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
    /// What the notice is about, for keeping notices in order (section 6): notices of one
    /// subject on one channel never overtake one another across kinds. A per-chat
    /// channel's subject is the chat, so one chat's firing in backoff holds back only that
    /// chat's resolved notice; a digest's is all the instance's chats; blind and recovered
    /// are the monitor's own.
    pub subject: String,
}

impl Outgoing {
    pub fn new(channel: impl Into<String>, doc: AlertDoc, shape: Shape) -> Outgoing {
        let subject = match (doc.status, shape, doc.chats.as_slice()) {
            (Status::Firing | Status::Resolved | Status::Acknowledged, Shape::PerChat, [one]) => {
                one.id.clone()
            }
            (Status::Firing | Status::Resolved | Status::Acknowledged, _, _) => "chats".to_string(),
            (Status::Blind | Status::Recovered | Status::Test, _, _) => "monitor".to_string(),
        };
        Outgoing {
            channel: channel.into(),
            doc,
            subject,
        }
    }
}

/// How a channel takes a cycle's events.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shape {
    /// One document per status and tier listing every chat (Slack, email, webhook, Teams):
    /// 300 chats breaching at once are one message.
    Digest,
    /// One document per chat (PagerDuty, Alertmanager: they group alerts themselves),
    /// carrying the highest tier that fired for it this cycle.
    PerChat,
}

/// The document's view of one event's chat.
fn alert_chat(event: &Event) -> AlertChat {
    let (tier, repeat) = match event.kind {
        EventKind::Firing { tier, repeat, .. } => (tier, repeat),
        EventKind::Resolved { tier, .. } | EventKind::Acknowledged { tier } => (tier, false),
    };
    let reason = match event.kind {
        EventKind::Resolved {
            reason: EndReason::Unwatched,
            ..
        } => Some(EndReason::Unwatched.as_str().to_string()),
        _ => None,
    };
    AlertChat {
        repeat,
        reason,
        ..AlertChat::of(&event.episode, event.waited, event.age, tier)
    }
}

/// Groups one cycle's events into documents: per (channel, status, tier) for digest
/// channels, per (channel, status, chat) for per-chat ones.
pub fn digest(
    instance: &str,
    events: &[Event],
    now: i64,
    shape: impl Fn(&str) -> Shape,
) -> Vec<Outgoing> {
    /// (channel, status, tier `after` or MAX, chat id for per-chat channels). By `after`,
    /// not position: chats under different rules can share a position with different
    /// tiers, and one document says one "waiting over …".
    type Key = (String, Status, u64, String);
    let mut groups: BTreeMap<Key, (Option<TierRef>, Vec<AlertChat>)> = BTreeMap::new();
    for event in events {
        let (status, tier) = match event.kind {
            EventKind::Firing {
                tier, after_secs, ..
            } => (
                Status::Firing,
                Some(TierRef {
                    index: tier,
                    after_seconds: after_secs,
                }),
            ),
            // Resolved notices of all tiers go out together, and so do acknowledgements.
            EventKind::Resolved { .. } => (Status::Resolved, None),
            EventKind::Acknowledged { .. } => (Status::Acknowledged, None),
        };
        let chat = alert_chat(event);
        for channel in &event.channels {
            match shape(channel) {
                Shape::Digest => {
                    let key = (
                        channel.clone(),
                        status,
                        tier.map_or(u64::MAX, |t| t.after_seconds),
                        String::new(),
                    );
                    groups
                        .entry(key)
                        .or_insert((tier, Vec::new()))
                        .1
                        .push(chat.clone());
                }
                Shape::PerChat => {
                    let key = (channel.clone(), status, 0, chat.id.clone());
                    let entry = groups.entry(key).or_insert((tier, vec![chat.clone()]));
                    // Several tiers crossed in one cycle: the incident shows the highest.
                    if tier.map(|t| t.after_seconds) > entry.0.map(|t| t.after_seconds) {
                        *entry = (tier, vec![chat.clone()]);
                    }
                }
            }
        }
    }
    groups
        .into_iter()
        .map(|((channel, status, _, _), (tier, mut chats))| {
            // Longest wait first: the chat most at risk leads the message.
            chats.sort_by(|a, b| a.waiting_since.cmp(&b.waiting_since).then(a.id.cmp(&b.id)));
            let doc = AlertDoc {
                version: 1,
                status,
                instance: instance.to_string(),
                tier,
                sent_at: now,
                chats,
                message: None,
            };
            let channel_shape = shape(&channel);
            Outgoing::new(channel, doc, channel_shape)
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

/// "2026-11-26T09:14:00Z": what APIs want (RFC 3339).
pub fn rfc3339(unix: i64) -> String {
    chrono::DateTime::from_timestamp(unix, 0)
        .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
        .unwrap_or_else(|| "1970-01-01T00:00:00Z".into())
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

    /// The Alertmanager re-send builds its chats from the store, not from a cycle's
    /// events: under business hours it must count the SLA's time (not the wall's), and it
    /// must name the tier by its place in the chat's tiers, not by how many fired.
    #[test]
    fn a_waiting_chat_counts_business_time_and_names_its_tier_by_place() {
        use crate::calendar::{BusinessHours, parse_day};
        use crate::policy::Tier;
        use std::time::Duration;
        let mut days: [Vec<_>; 7] = Default::default();
        for d in days.iter_mut().take(5) {
            *d = parse_day("09:00-18:00").unwrap();
        }
        let tier = |after: u64| Tier {
            after: Duration::from_secs(after),
            notify: vec!["oncall".into()],
        };
        let mut policy = Policy {
            tiers: vec![tier(1800), tier(7200), tier(14400)],
            ..Policy::default()
        };
        policy.sla.business_hours = Some(BusinessHours::new(
            "UTC".parse().unwrap(),
            days,
            Default::default(),
        ));
        // Monday 2025-12-01 17:00 UTC; seen at 20:00: three hours of wall, one of office.
        let mon_1700 = 1_764_608_400;
        let ep = Episode {
            jid: "1@c.us".into(),
            name: None,
            started_at: mon_1700,
            unread: Some(1),
            last_message: None,
            // The 2h tier fired once, then a reload added 30m in front of it: by count it
            // would be tier 0; by place it is tier 1.
            fired: vec![7200],
            notified: vec!["oncall".into()],
            last_fired_at: None,
            nudged: false,
            missing: 0,
            fingerprint: 0,
            quiet_until: 0,
            legacy_fired: None,
            history_pending: false,
            ack: None,
        };
        let chat = AlertChat::waiting(&ep, &policy, mon_1700 + 3 * 3600);
        assert_eq!(chat.waiting_seconds, 3 * 3600);
        assert_eq!(chat.sla_seconds, 3600);
        assert_eq!(chat.tier, 1);
    }

    /// A rule that gives VIPs a 15m tier puts it at position 0, where everybody else has
    /// the 2h tier: one cycle firing both must not say "waiting over 15m" of the 2h chats.
    #[test]
    fn a_digest_groups_chats_by_the_tier_they_crossed_not_by_its_position() {
        use crate::sla::{Episode, Event, EventKind};
        let event = |jid: &str, after: u64| Event {
            kind: EventKind::Firing {
                tier: 0,
                after_secs: after,
                repeat: false,
            },
            episode: Episode {
                jid: jid.into(),
                name: None,
                started_at: 0,
                unread: Some(1),
                last_message: None,
                fired: vec![after],
                notified: vec!["oncall".into()],
                last_fired_at: None,
                nudged: false,
                missing: 0,
                fingerprint: 0,
                quiet_until: 0,
                legacy_fired: None,
                history_pending: false,
                ack: None,
            },
            channels: vec!["oncall".into()],
            age: 0,
            waited: 0,
        };
        let docs = digest(
            "support",
            &[event("vip@c.us", 900), event("other@c.us", 7200)],
            0,
            |_| Shape::Digest,
        );
        let mut seen: Vec<(u64, Vec<String>)> = docs
            .iter()
            .map(|o| {
                (
                    o.doc.tier.map_or(0, |t| t.after_seconds),
                    o.doc.chats.iter().map(|c| c.id.clone()).collect(),
                )
            })
            .collect();
        seen.sort();
        assert_eq!(
            seen,
            vec![
                (900, vec!["vip@c.us".to_string()]),
                (7200, vec!["other@c.us".to_string()])
            ]
        );
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
            tiers_fired: vec![],
            reason: None,
            acknowledged_by: None,
            acknowledged_at: None,
        };
        assert_eq!(c.link().as_deref(), Some("https://wa.me/201234567890"));
        c.id = "1203630@g.us".into();
        assert_eq!(c.link(), None);
    }
}
