//! Property tests: the overview parser never panics, the engine keeps its invariants and
//! escalates what is due (each safety property has a liveness twin, so an engine that
//! never fires or a calendar that never counts cannot pass), business-time arithmetic
//! behaves like a measure of time, and no channel ever shows a hidden character or half a
//! grapheme.

use chrono::TimeZone;
use inbox_sla::alert;
use inbox_sla::calendar::{BusinessHours, parse_day};
use inbox_sla::notify::{slack, text};
use inbox_sla::overview::{self, Chat, LastMessage};
use inbox_sla::policy::{Policy, StopOn, Tier};
use inbox_sla::sla::{self, Episode, EventKind};
use inbox_sla::untrusted;
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
        *d = parse_day(if i == 1 {
            "09:00-13:00,14:00-18:00"
        } else {
            "08:30-17:00"
        })
        .unwrap();
    }
    days[6] = parse_day("00:00-03:30").unwrap();
    BusinessHours::new(
        "America/New_York".parse().unwrap(),
        days,
        ["2026-11-26", "2027-03-15"]
            .iter()
            .map(|d| d.parse().unwrap())
            .collect(),
    )
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

    /// The liveness twin: during open hours, open time grows one for one with the wall
    /// clock (a calendar that always answers 0 fails here).
    #[test]
    fn during_open_hours_business_time_grows_with_the_wall_clock(
        week in 0i64..150,
        minute in 0i64..(8 * 60),
        span in 1i64..1800,
    ) {
        let bh = office_week();
        let tz: chrono_tz::Tz = "America/New_York".parse().unwrap();
        // A Wednesday (08:30-17:00), never a holiday in the list.
        let day = chrono::NaiveDate::from_ymd_opt(2026, 1, 7).unwrap() + chrono::Duration::weeks(week);
        let at = day.and_hms_opt(8, 30, 0).unwrap() + chrono::Duration::minutes(minute);
        let t = tz.from_local_datetime(&at).earliest().unwrap().timestamp();
        let span = span.min(17 * 3600 - (8 * 3600 + 1800 + minute * 60));
        prop_assume!(span > 0);
        prop_assert_eq!(bh.open_seconds(t, t + span), span);
        prop_assert!(bh.open_seconds(t - 30 * 86400, t + span) > bh.open_seconds(t - 30 * 86400, t));
    }
}

/// One step of a random inbox history: which chat changes and how.
#[derive(Debug, Clone)]
enum Step {
    CustomerWrites { chat: usize, unread: i64 },
    Read { chat: usize },
    Reply { chat: usize },
    AutoReply { chat: usize },
    Vanish { chat: usize },
    Wait { secs: i64 },
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        4 => (0usize..4, 1i64..12).prop_map(|(chat, unread)| Step::CustomerWrites { chat, unread }),
        1 => (0usize..4).prop_map(|chat| Step::Read { chat }),
        1 => (0usize..4).prop_map(|chat| Step::Reply { chat }),
        1 => (0usize..4).prop_map(|chat| Step::AutoReply { chat }),
        1 => (0usize..4).prop_map(|chat| Step::Vanish { chat }),
        4 => (1i64..4 * 3600).prop_map(|secs| Step::Wait { secs }),
    ]
}

const TIERS: [u64; 3] = [3600, 3 * 3600, 8 * 3600];

fn policy(stop_on: StopOn, repeat: bool, nudge: u32, absent_polls: u32) -> Policy {
    let mut p = Policy {
        tiers: TIERS
            .iter()
            .zip(["a", "b", "c"])
            .map(|(s, c)| Tier {
                after: Duration::from_secs(*s),
                notify: vec![c.to_string()],
            })
            .collect(),
        ..Policy::default()
    };
    p.sla.stop_on = stop_on;
    p.sla.repeat_after = if repeat {
        Duration::from_secs(2 * 3600)
    } else {
        Duration::ZERO
    };
    p.sla.nudge_unread = nudge;
    p.sla.absent_polls = absent_polls;
    p.sla.auto_replies = vec![inbox_sla::policy::Pattern::parse("Away*").unwrap()];
    p
}

/// The inbox and the engine's state, carried from cycle to cycle as the store would.
struct World {
    policy: Policy,
    inbox: Vec<Option<Chat>>,
    episodes: HashMap<String, Episode>,
    memory: sla::Memory,
    /// Tiers (by `after`) fired per episode, keyed by (jid, start).
    fired: HashMap<(String, i64), HashSet<u64>>,
    now: i64,
    n: usize,
}

/// An evaluation in a stable order (episodes missing from the overview come from a map).
fn normalized(e: &sla::Evaluation) -> String {
    let mut upserts: Vec<String> = e.upserts.iter().map(|u| format!("{u:?}")).collect();
    let mut closed: Vec<String> = e.closed.iter().map(|c| format!("{c:?}")).collect();
    let mut events: Vec<String> = e.events.iter().map(|v| format!("{v:?}")).collect();
    upserts.sort();
    closed.sort();
    events.sort();
    format!(
        "waiting {} breached {} complete {}\n{upserts:#?}\n{closed:#?}\n{events:#?}",
        e.waiting, e.breached, e.complete
    )
}

impl World {
    /// What the parser and the store hand the engine: a chat whose fingerprint is its
    /// episode's comes as its id alone, and when nothing can be due yet, without its
    /// episode.
    fn as_parsed(&self, chats: &[Chat]) -> (Vec<Chat>, HashMap<String, Episode>) {
        let mut episodes = self.episodes.clone();
        let chats = chats
            .iter()
            .map(|c| match self.episodes.get(&c.id) {
                Some(ep) if ep.fingerprint == c.fingerprint => {
                    let quiet = self.now < ep.quiet_until;
                    if quiet {
                        episodes.remove(&c.id);
                    }
                    Chat {
                        id: c.id.clone(),
                        unread: c.unread,
                        fingerprint: c.fingerprint,
                        same: true,
                        quiet,
                        breached: quiet && !ep.fired.is_empty(),
                        ..Chat::default()
                    }
                }
                _ => c.clone(),
            })
            .collect();
        (chats, episodes)
    }

    fn new(policy: Policy) -> World {
        World {
            policy,
            inbox: vec![None; 4],
            episodes: HashMap::new(),
            memory: sla::Memory::default(),
            fired: HashMap::new(),
            now: 1_790_000_000,
            n: 0,
        }
    }

    fn apply(&mut self, s: &Step) {
        self.n += 1;
        let (now, n) = (self.now, self.n);
        let message = |from_me: bool, body: &str| LastMessage {
            id: Some(format!("m{n}")),
            body: Some(body.into()),
            timestamp: Some(now - 30),
            from_me: Some(from_me),
            has_media: false,
        };
        match *s {
            Step::CustomerWrites { chat, unread } => {
                self.inbox[chat] = Some(Chat {
                    id: format!("20100{chat}@c.us"),
                    name: Some(format!("c{chat}")),
                    unread: Some(unread),
                    last_message: Some(message(false, "hi")),
                    ..Chat::default()
                });
            }
            Step::Read { chat } => {
                if let Some(c) = self.inbox[chat].as_mut() {
                    c.unread = Some(0);
                }
            }
            Step::Reply { chat } => {
                if let Some(c) = self.inbox[chat].as_mut() {
                    c.unread = Some(0);
                    c.last_message = Some(message(true, "On it"));
                }
            }
            Step::AutoReply { chat } => {
                if let Some(c) = self.inbox[chat].as_mut() {
                    c.last_message = Some(message(true, "Away until Monday"));
                }
            }
            Step::Vanish { chat } => self.inbox[chat] = None,
            Step::Wait { secs } => self.now += secs,
        }
    }

    fn cycle(&mut self, read_whole: bool) -> Result<sla::Evaluation, TestCaseError> {
        // Fingerprinted as the parser does: the chat's content, stable while it is unchanged.
        let chats: Vec<Chat> = self
            .inbox
            .iter()
            .flatten()
            .map(|c| Chat {
                fingerprint: xxhash_rust::xxh3::xxh3_64(format!("{c:?}").as_bytes()),
                ..c.clone()
            })
            .collect();
        let mutes = HashMap::new();
        let input = sla::Cycle {
            episodes: &self.episodes,
            chats: &chats,
            total: chats.len(),
            read_whole,
            memory: &self.memory,
            mutes: &mutes,
            policy: &self.policy,
            now: self.now,
        };
        let eval = sla::evaluate(&input);
        // The cycle as the daemon runs it: chats unchanged since their episode are not
        // read (only their id), and the episodes of quiet ones are not even loaded. It
        // must decide exactly what reading everything decides.
        let (fast_chats, fast_episodes) = self.as_parsed(&chats);
        let fast = sla::evaluate(&sla::Cycle {
            episodes: &fast_episodes,
            chats: &fast_chats,
            ..input
        });
        prop_assert_eq!(
            normalized(&fast),
            normalized(&eval),
            "skipping unchanged chats changed a decision"
        );
        let mut upserted = HashSet::new();
        for ep in &eval.upserts {
            prop_assert!(upserted.insert(ep.jid.clone()), "one episode per chat");
            prop_assert!(ep.started_at <= self.now);
            if let Some(prev) = self.episodes.get(&ep.jid)
                && !eval.closed.iter().any(|c| c.episode.jid == ep.jid)
            {
                prop_assert_eq!(
                    prev.started_at,
                    ep.started_at,
                    "a nudge never moves the start"
                );
                prop_assert!(ep.fired.iter().all(|f| TIERS.contains(f)));
                prop_assert!(
                    prev.fired.iter().all(|f| ep.fired.contains(f)),
                    "fired tiers stay fired"
                );
            }
        }
        for e in &eval.events {
            prop_assert!(e.age >= 0 && e.waited >= 0, "ages are never negative");
            prop_assert!(e.age <= e.waited, "business age never exceeds the wait");
            if let EventKind::Firing {
                after_secs,
                repeat: false,
                ..
            } = e.kind
            {
                let key = (e.episode.jid.clone(), e.episode.started_at);
                prop_assert!(
                    self.fired.entry(key).or_default().insert(after_secs),
                    "tier {} fired twice",
                    after_secs
                );
                prop_assert!(
                    e.age >= after_secs as i64 || e.episode.nudged,
                    "fired before it was due"
                );
            }
            if let EventKind::Resolved { .. } = e.kind {
                prop_assert!(eval.closed.iter().any(|c| c.episode.jid == e.episode.jid));
                prop_assert!(
                    !e.episode.fired.is_empty(),
                    "a resolved notice only after a firing"
                );
                // The episode is over: a new one (read between polls) may start anew.
                self.fired
                    .remove(&(e.episode.jid.clone(), e.episode.started_at));
            }
        }
        for c in &eval.closed {
            self.episodes.remove(&c.episode.jid);
            if !eval
                .upserts
                .iter()
                .any(|u| u.jid == c.episode.jid && u.started_at == c.episode.started_at)
            {
                self.fired
                    .remove(&(c.episode.jid.clone(), c.episode.started_at));
            }
        }
        for ep in &eval.upserts {
            self.episodes.insert(ep.jid.clone(), ep.clone());
        }
        self.memory = self
            .memory
            .after(&self.policy, eval.judged, chats.len(), self.now);
        // Re-evaluating the same input at the same instant changes and says nothing.
        let again = sla::evaluate(&sla::Cycle {
            episodes: &self.episodes,
            chats: &chats,
            total: chats.len(),
            read_whole,
            memory: &self.memory,
            mutes: &mutes,
            policy: &self.policy,
            now: self.now,
        });
        // (Only absence moves on: each evaluation is another poll the chat is missing from.)
        prop_assert!(
            again.upserts.iter().all(|u| u.missing > 0)
                && again
                    .closed
                    .iter()
                    .all(|c| c.reason == sla::EndReason::Absent)
                && again
                    .events
                    .iter()
                    .all(|e| matches!(e.kind, EventKind::Resolved { .. })),
            "evaluation is idempotent: {:?}",
            again
        );
        Ok(eval)
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
        absent_polls in 1u32..4,
        partial in any::<bool>(),
    ) {
        let mut w = World::new(policy(if reply_mode { StopOn::Reply } else { StopOn::Read }, repeat, nudge, absent_polls));
        for (i, s) in steps.iter().enumerate() {
            w.apply(s);
            w.cycle(!(partial && i % 3 == 0))?;
        }
    }

    /// The liveness twin: whatever happened before, a customer who writes and is left
    /// waiting hears every tier, once each (an engine that never fires fails here).
    #[test]
    fn a_customer_left_waiting_is_escalated_through_every_tier(
        steps in prop::collection::vec(step(), 0..40),
        reply_mode in any::<bool>(),
        repeat in any::<bool>(),
        nudge in prop_oneof![Just(0u32), Just(5u32)],
        chat in 0usize..4,
    ) {
        let mut w = World::new(policy(if reply_mode { StopOn::Reply } else { StopOn::Read }, repeat, nudge, 3));
        for s in &steps {
            w.apply(s);
            w.cycle(true)?;
        }
        // A fresh wait: the chat is replied to, then the customer writes again.
        w.apply(&Step::Reply { chat });
        w.apply(&Step::Wait { secs: 60 });
        w.cycle(true)?;
        w.apply(&Step::CustomerWrites { chat, unread: 1 });
        w.apply(&Step::Wait { secs: 60 });
        w.cycle(true)?;
        let jid = format!("20100{chat}@c.us");
        let start = w.episodes.get(&jid).map(|e| e.started_at);
        prop_assert!(start.is_some(), "a waiting customer has an episode");
        for _ in 0..10 {
            w.apply(&Step::Wait { secs: 3600 });
            w.cycle(true)?;
        }
        let fired = w.fired.get(&(jid.clone(), start.unwrap())).cloned().unwrap_or_default();
        prop_assert_eq!(fired, TIERS.iter().copied().collect::<HashSet<u64>>(), "every tier fired once");
    }
}

// ----------------------------------------------------------------------------- untrusted text

/// Pieces untrusted names and bodies are made of: words, emoji sequences, flags,
/// combining marks, right-to-left text, and every hidden character.
fn atom() -> impl Strategy<Value = String> {
    prop_oneof![
        "[a-zA-Z0-9 ]{1,8}",
        Just("👨\u{200D}👩\u{200D}👧\u{200D}👦".to_string()),
        Just("🇪🇬".to_string()),
        Just("🇸🇦🇺🇸".to_string()),
        Just("👍🏽".to_string()),
        Just("e\u{301}".to_string()),
        Just("ناديه".to_string()),
        Just("<!channel> & <@U1>".to_string()),
        Just("\r\n".to_string()),
        prop::sample::select(vec![
            '\u{200B}', '\u{200C}', '\u{200D}', '\u{200E}', '\u{200F}', '\u{202A}', '\u{202B}',
            '\u{202C}', '\u{202D}', '\u{202E}', '\u{2066}', '\u{2067}', '\u{2068}', '\u{2069}',
            '\u{FEFF}',
        ])
        .prop_map(String::from),
    ]
}

fn untrusted_text() -> impl Strategy<Value = String> {
    prop::collection::vec(atom(), 0..80).prop_map(|parts| parts.concat())
}

/// A hidden character the output may not carry: any of the list, except a joiner
/// between two emoji parts (inside an emoji sequence).
fn hidden_in(text: &str) -> Option<char> {
    let chars: Vec<char> = text.chars().collect();
    chars.iter().enumerate().find_map(|(i, &c)| {
        if !untrusted::is_hidden(c) {
            return None;
        }
        let emoji = |c: char| c as u32 >= 0x1F000 || ('\u{2600}'..='\u{27BF}').contains(&c);
        let joins = c == '\u{200D}'
            && i > 0
            && emoji(chars[i - 1])
            && chars.get(i + 1).is_some_and(|&n| emoji(n));
        (!joins).then_some(c)
    })
}

/// Every string inside a JSON value.
fn strings(v: &Value, out: &mut Vec<String>) {
    match v {
        Value::String(s) => out.push(s.clone()),
        Value::Array(a) => a.iter().for_each(|x| strings(x, out)),
        Value::Object(o) => o.values().for_each(|x| strings(x, out)),
        _ => {}
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    #[test]
    fn no_channel_shows_a_hidden_character_or_half_a_grapheme(
        names in prop::collection::vec(untrusted_text(), 1..4),
        body in untrusted_text(),
    ) {
        use unicode_segmentation::UnicodeSegmentation;
        let mut policy = Policy {
            tiers: vec![Tier { after: Duration::from_secs(60), notify: vec!["x".into()] }],
            ..Policy::default()
        };
        policy.sla.include_preview = true;
        let now = 1_790_000_000;
        let chats: Vec<Chat> = names.iter().enumerate().map(|(i, name)| Chat {
            id: format!("2010{i}@c.us"),
            name: Some(name.clone()),
            unread: Some(1),
            last_message: Some(LastMessage {
                id: Some("m".into()),
                body: Some(body.clone()),
                timestamp: Some(now - 3600),
                from_me: Some(false),
                has_media: false,
            }),
            ..Chat::default()
        }).collect();
        let eval = sla::evaluate(&sla::Cycle {
            episodes: &HashMap::new(),
            chats: &chats,
            total: chats.len(),
            read_whole: true,
            memory: &sla::Memory::default(),
            mutes: &HashMap::new(),
            policy: &policy,
            now,
        });
        let docs = alert::digest("support", &eval.events, now, |_| alert::Shape::Digest);
        prop_assert_eq!(docs.len(), 1);
        let doc = &docs[0].doc;
        // Graphemes people may see: those of the cleaned input, and the templates' own.
        let mut allowed: HashSet<String> = HashSet::new();
        for t in names.iter().chain(std::iter::once(&body)) {
            allowed.extend(untrusted::strip(t).graphemes(true).map(str::to_string));
        }
        allowed.extend(["…", "•", "—", "·", "→"].iter().map(|s| s.to_string()));
        let (summary, plain) = text::render(doc);
        let mut outputs = vec![summary, plain];
        strings(&slack::render(doc), &mut outputs);
        strings(&serde_json::to_value(doc).unwrap(), &mut outputs);
        for out in &outputs {
            if let Some(c) = hidden_in(out) {
                prop_assert!(false, "U+{:04X} reached an output: {:?}", c as u32, out);
            }
            for g in out.graphemes(true) {
                prop_assert!(g.is_ascii() || allowed.contains(g), "a grapheme was split: {:?} in {:?}", g, out);
            }
        }
    }
}
