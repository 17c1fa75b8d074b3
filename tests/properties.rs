//! Property tests: the overview parser never panics, the engine keeps its invariants, and
//! business-time arithmetic behaves like a measure of time.

use inbox_sla::calendar::BusinessHours;
use inbox_sla::overview::{self, Chat, LastMessage};
use inbox_sla::policy::{Glob, Policy, StopOn, Tier};
use inbox_sla::sla::{self, Episode, EventKind};
use proptest::prelude::*;
use serde_json::Value;
use std::collections::{HashMap, HashSet};
use std::time::Duration;

fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<f64>()
            .prop_filter("finite", |f| f.is_finite())
            .prop_map(Value::from),
        "[a-z@._0-9]{0,12}".prop_map(Value::from),
        prop_oneof![
            Just("id"),
            Just("unreadCount"),
            Just("lastMessage"),
            Just("_chat")
        ]
        .prop_map(Value::from),
    ];
    leaf.prop_recursive(4, 64, 8, |inner| {
        let keys = prop_oneof![
            Just("id".to_string()),
            Just("name".to_string()),
            Just("unreadCount".to_string()),
            Just("_chat".to_string()),
            Just("lastMessage".to_string()),
            Just("timestamp".to_string()),
            Just("fromMe".to_string()),
            Just("_serialized".to_string()),
            Just("0".to_string()),
            Just("1".to_string()),
            "[a-z]{1,6}",
        ];
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::hash_map(keys, inner, 0..6)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(400))]

    #[test]
    fn any_json_parses_or_fails_cleanly(v in json_value()) {
        let text = v.to_string();
        match overview::parse(text.as_bytes()) {
            Ok(page) => {
                prop_assert_eq!(page.chats.len() + page.skipped, page.elements);
                for c in &page.chats {
                    prop_assert!(!c.id.is_empty());
                    if let Some(ts) = c.last_message.as_ref().and_then(|m| m.timestamp) {
                        prop_assert!(ts > 0 && ts < 100_000_000_000);
                    }
                }
            }
            Err(e) => prop_assert!(!e.to_string().is_empty()),
        }
    }

    #[test]
    fn streaming_in_any_chunks_agrees_with_parsing_whole(v in json_value(), chunk in 1usize..64) {
        let text = v.to_string();
        let whole = overview::parse(text.as_bytes());
        let mut stream = overview::StreamParser::default();
        let streamed = text
            .as_bytes()
            .chunks(chunk)
            .try_for_each(|c| stream.feed(c))
            .and_then(|()| stream.finish());
        match (whole, streamed) {
            (Ok(a), Ok(b)) => {
                prop_assert_eq!(a.chats, b.chats);
                prop_assert_eq!(a.skipped, b.skipped);
            }
            (Err(_), Err(_)) => {}
            (a, b) => prop_assert!(false, "whole {:?} vs streamed {:?} for {}", a.map(|p| p.chats.len()), b.map(|p| p.chats.len()), text),
        }
    }

    #[test]
    fn any_bytes_parse_or_fail_cleanly(bytes in prop::collection::vec(any::<u8>(), 0..200)) {
        let _ = overview::parse(&bytes);
    }
}

fn office_week() -> BusinessHours {
    let mut days: [Vec<_>; 7] = Default::default();
    for (i, d) in days.iter_mut().enumerate().take(5) {
        *d = BusinessHours::parse_day(if i == 1 {
            "09:00-13:00,14:00-18:00"
        } else {
            "08:30-17:00"
        })
        .unwrap();
    }
    days[6] = BusinessHours::parse_day("00:00-03:30").unwrap();
    BusinessHours {
        timezone: "America/New_York".parse().unwrap(),
        days,
        holidays: ["2026-11-26", "2027-03-15"]
            .iter()
            .map(|d| d.parse().unwrap())
            .collect(),
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]

    #[test]
    fn business_age_never_exceeds_wall_age_and_grows_with_now(
        start in 1_780_000_000i64..1_830_000_000,
        a in 0i64..20 * 86400,
        b in 0i64..20 * 86400,
    ) {
        let bh = office_week();
        let (t1, t2) = (start + a.min(b), start + a.max(b));
        let age1 = bh.open_seconds(start, t1);
        let age2 = bh.open_seconds(start, t2);
        prop_assert!(age1 >= 0 && age1 <= t1 - start);
        prop_assert!(age2 <= t2 - start);
        prop_assert!(age1 <= age2, "monotonic in now");
        prop_assert_eq!(age1 + bh.open_seconds(t1, t2), age2, "additive");
    }
}

/// One step of a random inbox history: which chat changes and how.
#[derive(Debug, Clone)]
enum Step {
    CustomerWrites { chat: usize, unread: i64 },
    Read { chat: usize },
    Reply { chat: usize },
    Vanish { chat: usize },
    Wait { secs: i64 },
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        4 => (0usize..4, 1i64..12).prop_map(|(chat, unread)| Step::CustomerWrites { chat, unread }),
        1 => (0usize..4).prop_map(|chat| Step::Read { chat }),
        1 => (0usize..4).prop_map(|chat| Step::Reply { chat }),
        1 => (0usize..4).prop_map(|chat| Step::Vanish { chat }),
        4 => (1i64..4 * 3600).prop_map(|secs| Step::Wait { secs }),
    ]
}

fn policy(stop_on: StopOn, repeat: bool, nudge: u32) -> Policy {
    let tier = |h: u64, c: &str| Tier {
        after: Duration::from_secs(h * 3600),
        notify: vec![c.to_string()],
    };
    Policy {
        tiers: vec![tier(1, "a"), tier(3, "b"), tier(8, "c")],
        rules: vec![],
        stop_on,
        include_groups: true,
        ignore: vec![Glob::new("*@broadcast")],
        include_preview: true,
        send_resolved: true,
        repeat_after: repeat.then(|| Duration::from_secs(2 * 3600)),
        nudge_unread: nudge,
        business_hours: None,
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]

    #[test]
    fn engine_invariants_hold_over_random_histories(
        steps in prop::collection::vec(step(), 1..60),
        reply_mode in any::<bool>(),
        repeat in any::<bool>(),
        nudge in prop_oneof![Just(0u32), Just(5u32)],
        partial in any::<bool>(),
    ) {
        let policy = policy(if reply_mode { StopOn::Reply } else { StopOn::Read }, repeat, nudge);
        let mut now = 1_790_000_000i64;
        let mut inbox: Vec<Option<Chat>> = vec![None; 4];
        let mut episodes: HashMap<String, Episode> = HashMap::new();
        // Tiers fired per open episode, keyed by (jid, start).
        let mut fired: HashMap<(String, i64), HashSet<usize>> = HashMap::new();
        let mutes = HashMap::new();
        for (i, s) in steps.iter().enumerate() {
            match s.clone() {
                Step::CustomerWrites { chat, unread } => {
                    inbox[chat] = Some(Chat {
                        id: format!("20100{chat}@c.us"),
                        name: Some(format!("c{chat}")),
                        unread: Some(unread),
                        last_message: Some(LastMessage {
                            id: Some(format!("m{i}")),
                            body: Some("hi".into()),
                            timestamp: Some(now - 30),
                            from_me: Some(false),
                            has_media: false,
                        }),
                    });
                }
                Step::Read { chat } => {
                    if let Some(c) = inbox[chat].as_mut() { c.unread = Some(0); }
                }
                Step::Reply { chat } => {
                    if let Some(c) = inbox[chat].as_mut() {
                        c.unread = Some(0);
                        if let Some(m) = c.last_message.as_mut() { m.from_me = Some(true); m.timestamp = Some(now); }
                    }
                }
                Step::Vanish { chat } => inbox[chat] = None,
                Step::Wait { secs } => now += secs,
            }
            let chats: Vec<Chat> = inbox.iter().flatten().cloned().collect();
            let complete = !(partial && i % 3 == 0);
            let eval = sla::evaluate(&episodes, &chats, complete, &mutes, &policy, now);

            let mut upserted = HashSet::new();
            for ep in &eval.upserts {
                prop_assert!(upserted.insert(ep.jid.clone()), "one episode per chat");
                prop_assert!(ep.started_at <= now);
                if let Some(prev) = episodes.get(&ep.jid) {
                    prop_assert_eq!(prev.started_at, ep.started_at, "a nudge never moves the start");
                    prop_assert!(ep.tiers_fired >= prev.tiers_fired);
                }
            }
            for e in &eval.events {
                prop_assert!(e.age >= 0 && e.waited >= 0, "ages are never negative");
                if let EventKind::Firing { tier, repeat: false, .. } = e.kind {
                    let key = (e.episode.jid.clone(), e.episode.started_at);
                    prop_assert!(fired.entry(key).or_default().insert(tier), "tier {} fired twice", tier);
                }
                if let EventKind::Resolved { .. } = e.kind {
                    prop_assert!(eval.closed.contains(&e.episode.jid));
                }
            }
            for ep in &eval.upserts {
                episodes.insert(ep.jid.clone(), ep.clone());
            }
            for jid in &eval.closed {
                if let Some(ep) = episodes.remove(jid) {
                    fired.remove(&(jid.clone(), ep.started_at));
                }
            }
            // Re-evaluating the same input at the same instant changes and says nothing.
            let again = sla::evaluate(&episodes, &chats, complete, &mutes, &policy, now);
            prop_assert!(again.upserts.is_empty() && again.events.is_empty() && again.closed.is_empty(),
                "evaluation is idempotent: {:?}", again);
        }
    }
}
