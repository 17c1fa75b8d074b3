//! The SLA engine: a pure function of (episodes, overview, mutes, policy, now).
//!
//! [`evaluate`] decides which chats are waiting, when their episodes started, which tiers
//! are due, and which episodes ended. It returns the episodes that changed (and only
//! those, so an unchanged cycle writes nothing) and the events the channels must hear.
//! It must not do I/O or read a clock: everything it knows comes in as arguments, which
//! is what makes every rule of PRODUCT.md section 2 testable in microseconds.

use crate::overview::Chat;
use crate::policy::{ChatPolicy, Policy, StopOn};
use std::collections::{HashMap, HashSet};

/// Preview text is cut to this many characters.
pub const PREVIEW_CHARS: usize = 200;

/// One continuous stretch in which a chat is waiting.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Episode {
    pub jid: String,
    pub name: Option<String>,
    /// When the clock started (Unix seconds). Never moved by later customer messages.
    pub started_at: i64,
    pub unread: Option<i64>,
    pub last_message: Option<Preview>,
    /// How many tiers have fired (tiers `0..tiers_fired`).
    pub tiers_fired: u32,
    /// When a tier last fired or repeated, for `repeat_after`.
    pub last_fired_at: Option<i64>,
    /// Whether `nudge_unread` has already moved this episode up a tier.
    pub nudged: bool,
}

/// The last message as alerts show it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Preview {
    pub id: Option<String>,
    /// Truncated to [`PREVIEW_CHARS`]; `None` when previews are off.
    pub body: Option<String>,
    pub timestamp: Option<i64>,
    pub has_media: bool,
}

/// Something the channels must hear about.
#[derive(Debug, Clone, PartialEq)]
pub struct Event {
    pub kind: EventKind,
    /// The episode as it stands after this cycle.
    pub episode: Episode,
    /// Who is told.
    pub channels: Vec<String>,
    /// Business-time age (equal to the wall-clock wait without business hours).
    pub age: i64,
    /// Wall-clock seconds since the episode started.
    pub waited: i64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventKind {
    /// Tier `tier` (0-based) is due. `repeat`: a re-notification of an already fired tier.
    Firing {
        tier: usize,
        after_secs: u64,
        repeat: bool,
    },
    /// The episode ended after at least one tier fired.
    Resolved { tier: usize },
}

/// What a cycle changes.
#[derive(Debug, Default, PartialEq)]
pub struct Evaluation {
    /// New or changed episodes, to be written.
    pub upserts: Vec<Episode>,
    /// JIDs whose episodes ended, to be deleted.
    pub closed: Vec<String>,
    pub events: Vec<Event>,
    /// Chats waiting now, and how many of them have fired at least one tier.
    pub waiting: usize,
    pub breached: usize,
}

/// Whether a chat is waiting (section 2). `open` says an episode is already running, which
/// matters for `stop_on = "reply"`: there, reading does not end a running episode.
pub fn is_waiting(chat: &Chat, stop_on: StopOn, open: bool) -> bool {
    let last = chat.last_message.as_ref();
    if last.and_then(|m| m.from_me) == Some(true) {
        return false;
    }
    let customer_spoke_last = last.and_then(|m| m.from_me) == Some(false);
    let by_count = match chat.unread {
        Some(n) => n > 0 || n == -1,
        None => customer_spoke_last,
    };
    by_count || (open && stop_on == StopOn::Reply && last.is_some())
}

/// Evaluates one instance's overview against its open episodes.
///
/// `complete` says the overview holds every chat: only then does absence end an episode.
/// `mutes` maps JIDs to the instant their mute ends.
pub fn evaluate(
    episodes: &HashMap<String, Episode>,
    chats: &[Chat],
    complete: bool,
    mutes: &HashMap<String, i64>,
    policy: &Policy,
    now: i64,
) -> Evaluation {
    let mut out = Evaluation::default();
    let mut seen: HashSet<&str> = HashSet::with_capacity(chats.len());
    for chat in chats {
        if !seen.insert(chat.id.as_str()) {
            continue; // paging overlap: the first occurrence counts
        }
        let prev = episodes.get(&chat.id);
        if prev.is_none() && !is_waiting(chat, StopOn::Read, false) {
            continue; // most chats: not waiting, no episode; whatever the policy says
        }
        let Some(cp) = policy.for_chat(&chat.id, chat.name.as_deref()) else {
            if prev.is_some() {
                out.closed.push(chat.id.clone()); // ignored now: dropped without a notice
            }
            continue;
        };
        let waiting = is_waiting(chat, cp.stop_on, prev.is_some());
        match (prev, waiting) {
            (None, false) => {}
            (Some(ep), false) => close(&mut out, ep, &cp, policy, now),
            (prev, true) => {
                let muted = mutes.get(&chat.id).is_some_and(|until| *until > now);
                if let Some(prev) = prev {
                    // The common case on a quiet inbox: nothing new, nothing due. No copy.
                    let quiet = muted || due(prev, &cp, policy, now).is_nothing();
                    if quiet && unchanged(prev, chat, policy, now) {
                        out.waiting += 1;
                        out.breached += usize::from(prev.tiers_fired > 0);
                        continue;
                    }
                }
                let mut ep = match prev {
                    Some(ep) => ep.clone(),
                    None => Episode {
                        jid: chat.id.clone(),
                        name: None,
                        started_at: chat
                            .last_message
                            .as_ref()
                            .and_then(|m| m.timestamp)
                            .map_or(now, |t| t.min(now)),
                        unread: None,
                        last_message: None,
                        tiers_fired: 0,
                        last_fired_at: None,
                        nudged: false,
                    },
                };
                ep.name = chat.name.clone();
                ep.unread = chat.unread;
                ep.last_message = chat.last_message.as_ref().map(|m| Preview {
                    id: m.id.clone(),
                    body: preview_body(m.body.as_deref(), policy).map(|b| b.into_owned()),
                    timestamp: m.timestamp.map(|t| t.min(now)),
                    has_media: m.has_media,
                });
                if !muted {
                    let due = due(&ep, &cp, policy, now);
                    escalate(&mut out, &mut ep, &cp, due, now);
                }
                out.waiting += 1;
                if ep.tiers_fired > 0 {
                    out.breached += 1;
                }
                if prev != Some(&ep) {
                    out.upserts.push(ep);
                }
            }
        }
    }
    if complete {
        for (jid, ep) in episodes {
            if !seen.contains(jid.as_str()) {
                match policy.for_chat(jid, ep.name.as_deref()) {
                    Some(cp) => close(&mut out, ep, &cp, policy, now),
                    None => out.closed.push(jid.clone()),
                }
            }
        }
    } else {
        // Not in this (partial) overview: still open, still counted.
        for (jid, ep) in episodes {
            if !seen.contains(jid.as_str()) {
                out.waiting += 1;
                out.breached += usize::from(ep.tiers_fired > 0);
            }
        }
    }
    out
}

fn close(out: &mut Evaluation, ep: &Episode, cp: &ChatPolicy, policy: &Policy, now: i64) {
    out.closed.push(ep.jid.clone());
    if ep.tiers_fired == 0 || !policy.send_resolved {
        return;
    }
    let fired = (ep.tiers_fired as usize).min(cp.tiers.len());
    let mut channels: Vec<String> = Vec::new();
    for tier in &cp.tiers[..fired] {
        for c in &tier.notify {
            if !channels.contains(c) {
                channels.push(c.clone());
            }
        }
    }
    out.events.push(Event {
        kind: EventKind::Resolved {
            tier: fired.saturating_sub(1),
        },
        episode: ep.clone(),
        channels,
        age: cp.age(ep.started_at, now),
        waited: (now - ep.started_at).max(0),
    });
}

/// What is due for an episode now: tiers to fire, a nudge, or a repeat.
struct Due {
    age: i64,
    /// Tiers `fire.start..fire.end` fire now (empty: none).
    fire: std::ops::Range<usize>,
    nudge: bool,
    /// The tier to re-notify, when nothing fires and `repeat_after` has passed.
    repeat: Option<usize>,
}

impl Due {
    fn is_nothing(&self) -> bool {
        self.fire.is_empty() && self.repeat.is_none()
    }
}

fn due(ep: &Episode, cp: &ChatPolicy, policy: &Policy, now: i64) -> Due {
    let age = cp.age(ep.started_at, now);
    let fired = ep.tiers_fired as usize;
    let crossed = cp
        .tiers
        .iter()
        .take_while(|t| age >= t.after.as_secs() as i64)
        .count();
    let mut target = crossed.max(fired);
    let nudge = policy.nudge_unread > 0
        && !ep.nudged
        && ep
            .unread
            .is_some_and(|n| n >= i64::from(policy.nudge_unread))
        && target < cp.tiers.len();
    if nudge {
        target += 1;
    }
    let repeat = match (policy.repeat_after, ep.last_fired_at) {
        (Some(every), Some(last))
            if target == fired && fired > 0 && now - last >= every.as_secs() as i64 =>
        {
            Some((fired - 1).min(cp.tiers.len().saturating_sub(1)))
        }
        _ => None,
    };
    Due {
        age,
        fire: fired..target,
        nudge,
        repeat,
    }
}

fn escalate(out: &mut Evaluation, ep: &mut Episode, cp: &ChatPolicy, due: Due, now: i64) {
    let waited = (now - ep.started_at).max(0);
    let age = due.age;
    if !due.fire.is_empty() {
        ep.tiers_fired = due.fire.end as u32;
        ep.last_fired_at = Some(now);
        ep.nudged |= due.nudge;
        for tier in due.fire {
            out.events.push(Event {
                kind: EventKind::Firing {
                    tier,
                    after_secs: cp.tiers[tier].after.as_secs(),
                    repeat: false,
                },
                episode: ep.clone(),
                channels: cp.tiers[tier].notify.clone(),
                age,
                waited,
            });
        }
    } else if let Some(tier) = due.repeat {
        ep.last_fired_at = Some(now);
        out.events.push(Event {
            kind: EventKind::Firing {
                tier,
                after_secs: cp.tiers.get(tier).map_or(0, |t| t.after.as_secs()),
                repeat: true,
            },
            episode: ep.clone(),
            channels: cp
                .tiers
                .get(tier)
                .map(|t| t.notify.clone())
                .unwrap_or_default(),
            age,
            waited,
        });
    }
}

/// Whether refreshing `ep` from `chat` would change nothing (so it need not be copied).
fn unchanged(ep: &Episode, chat: &Chat, policy: &Policy, now: i64) -> bool {
    ep.name == chat.name
        && ep.unread == chat.unread
        && match (&ep.last_message, &chat.last_message) {
            (None, None) => true,
            (Some(p), Some(m)) => {
                p.id == m.id
                    && p.timestamp == m.timestamp.map(|t| t.min(now))
                    && p.has_media == m.has_media
                    && p.body.as_deref() == preview_body(m.body.as_deref(), policy).as_deref()
            }
            _ => false,
        }
}

fn preview_body<'a>(body: Option<&'a str>, policy: &Policy) -> Option<std::borrow::Cow<'a, str>> {
    if !policy.include_preview {
        return None;
    }
    body.map(|b| match b.char_indices().nth(PREVIEW_CHARS) {
        None => std::borrow::Cow::Borrowed(b),
        Some((cut, _)) => std::borrow::Cow::Owned(format!("{}…", &b[..cut])),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::overview::LastMessage;
    use crate::policy::{Glob, Matcher, Rule, Tier};
    use std::time::Duration;

    const H: i64 = 3600;
    const T0: i64 = 1_780_000_000;

    fn tier(after: i64, notify: &[&str]) -> Tier {
        Tier {
            after: Duration::from_secs(after as u64),
            notify: notify.iter().map(|s| s.to_string()).collect(),
        }
    }

    fn policy() -> Policy {
        Policy {
            tiers: vec![tier(2 * H, &["oncall"])],
            rules: vec![],
            stop_on: StopOn::Read,
            include_groups: true,
            ignore: ["*@broadcast", "*@newsletter", "*@meta.ai", "0@c.us"]
                .map(Glob::new)
                .to_vec(),
            include_preview: true,
            send_resolved: true,
            repeat_after: None,
            nudge_unread: 0,
            business_hours: None,
        }
    }

    fn chat(id: &str, unread: Option<i64>, ts: Option<i64>, from_me: Option<bool>) -> Chat {
        Chat {
            id: id.into(),
            name: Some(format!("name of {id}")),
            unread,
            last_message: Some(LastMessage {
                id: Some("M1".into()),
                body: Some("hello".into()),
                timestamp: ts,
                from_me,
                has_media: false,
            }),
        }
    }

    fn customer(id: &str, unread: i64, ts: i64) -> Chat {
        chat(id, Some(unread), Some(ts), Some(false))
    }

    /// Runs cycles, carrying episodes forward as the store would.
    struct Sim {
        episodes: HashMap<String, Episode>,
        mutes: HashMap<String, i64>,
        policy: Policy,
    }

    impl Sim {
        fn new(policy: Policy) -> Sim {
            Sim {
                episodes: HashMap::new(),
                mutes: HashMap::new(),
                policy,
            }
        }

        fn cycle(&mut self, chats: &[Chat], now: i64) -> Evaluation {
            self.cycle_with(chats, true, now)
        }

        fn cycle_with(&mut self, chats: &[Chat], complete: bool, now: i64) -> Evaluation {
            let eval = evaluate(
                &self.episodes,
                chats,
                complete,
                &self.mutes,
                &self.policy,
                now,
            );
            for ep in &eval.upserts {
                self.episodes.insert(ep.jid.clone(), ep.clone());
            }
            for jid in &eval.closed {
                self.episodes.remove(jid);
            }
            eval
        }
    }

    fn kinds(eval: &Evaluation) -> Vec<(String, EventKind)> {
        eval.events
            .iter()
            .map(|e| (e.episode.jid.clone(), e.kind))
            .collect()
    }

    fn fired(tier: usize, after: i64) -> EventKind {
        EventKind::Firing {
            tier,
            after_secs: after as u64,
            repeat: false,
        }
    }

    #[test]
    fn waiting_follows_section_two() {
        let cases = [
            // (unread, fromMe, stop_on, open, waiting)
            (Some(3), Some(false), StopOn::Read, false, true),
            (Some(3), None, StopOn::Read, false, true),
            (Some(3), Some(true), StopOn::Read, false, false),
            (Some(-1), Some(false), StopOn::Read, false, true),
            (Some(0), Some(false), StopOn::Read, false, false),
            (None, Some(false), StopOn::Read, false, true),
            (None, None, StopOn::Read, false, false),
            (None, Some(true), StopOn::Read, false, false),
            // Reply mode: reading does not end a running episode, but does not start one.
            (Some(0), Some(false), StopOn::Reply, true, true),
            (Some(0), Some(false), StopOn::Reply, false, false),
            (Some(0), Some(true), StopOn::Reply, true, false),
        ];
        for (unread, from_me, stop_on, open, want) in cases {
            let c = chat("1@c.us", unread, Some(T0), from_me);
            assert_eq!(
                is_waiting(&c, stop_on, open),
                want,
                "{unread:?} {from_me:?} {stop_on:?} open={open}"
            );
        }
        let no_messages = Chat {
            id: "1@c.us".into(),
            unread: Some(1),
            ..Chat::default()
        };
        assert!(is_waiting(&no_messages, StopOn::Read, false));
    }

    #[test]
    fn escalates_once_when_the_sla_is_crossed_and_then_stays_quiet() {
        let mut sim = Sim::new(policy());
        let c = [customer("1@c.us", 1, T0)];
        let e = sim.cycle(&c, T0 + 60);
        assert!(e.events.is_empty());
        assert_eq!((e.waiting, e.breached, e.upserts.len()), (1, 0, 1));
        let e = sim.cycle(&c, T0 + 2 * H - 1);
        assert!(e.events.is_empty(), "not yet due");
        assert!(e.upserts.is_empty(), "nothing changed, nothing to write");
        let e = sim.cycle(&c, T0 + 2 * H);
        assert_eq!(kinds(&e), vec![("1@c.us".into(), fired(0, 2 * H))]);
        assert_eq!(e.events[0].channels, vec!["oncall"]);
        assert_eq!(e.events[0].waited, 2 * H);
        assert_eq!(e.events[0].episode.tiers_fired, 1);
        let e = sim.cycle(&c, T0 + 3 * H);
        assert!(e.events.is_empty(), "deduplicated");
        assert!(e.upserts.is_empty());
        assert_eq!(e.breached, 1);
    }

    #[test]
    fn nudge_does_not_restart_the_clock() {
        let mut sim = Sim::new(policy());
        sim.cycle(&[customer("1@c.us", 1, T0)], T0);
        for k in 1..4 {
            let e = sim.cycle(&[customer("1@c.us", 1 + k, T0 + k * 1800)], T0 + k * 1800);
            assert!(e.events.is_empty());
            assert_eq!(
                sim.episodes["1@c.us"].started_at, T0,
                "the clock started at the first message"
            );
        }
        let e = sim.cycle(&[customer("1@c.us", 5, T0 + 2 * H)], T0 + 2 * H);
        assert_eq!(kinds(&e), vec![("1@c.us".into(), fired(0, 2 * H))]);
        assert_eq!(e.events[0].episode.unread, Some(5));
    }

    #[test]
    fn reading_resolves_with_stop_on_read_and_tells_who_was_told() {
        let mut p = policy();
        p.tiers = vec![tier(2 * H, &["oncall"]), tier(6 * H, &["leads", "oncall"])];
        let mut sim = Sim::new(p);
        sim.cycle(&[customer("1@c.us", 1, T0)], T0 + 7 * H);
        let e = sim.cycle(&[customer("1@c.us", 0, T0)], T0 + 8 * H);
        assert_eq!(
            kinds(&e),
            vec![("1@c.us".into(), EventKind::Resolved { tier: 1 })]
        );
        assert_eq!(e.events[0].channels, vec!["oncall", "leads"]);
        assert_eq!(e.events[0].waited, 8 * H);
        assert_eq!(e.closed, vec!["1@c.us"]);
        assert!(sim.episodes.is_empty());
    }

    #[test]
    fn reading_is_not_answering_with_stop_on_reply() {
        let mut p = policy();
        p.stop_on = StopOn::Reply;
        let mut sim = Sim::new(p);
        sim.cycle(&[customer("1@c.us", 1, T0)], T0);
        let e = sim.cycle(&[customer("1@c.us", 0, T0)], T0 + 3 * H);
        assert_eq!(
            kinds(&e),
            vec![("1@c.us".into(), fired(0, 2 * H))],
            "read, unanswered, escalated"
        );
        let e = sim.cycle(
            &[chat("1@c.us", Some(0), Some(T0 + 3 * H), Some(true))],
            T0 + 3 * H + 60,
        );
        assert_eq!(
            kinds(&e),
            vec![("1@c.us".into(), EventKind::Resolved { tier: 0 })]
        );
    }

    #[test]
    fn marked_unread_and_unknown_counts_wait() {
        let mut sim = Sim::new(policy());
        let e = sim.cycle(
            &[
                customer("1@c.us", -1, T0),
                chat("2@c.us", None, Some(T0), Some(false)),
            ],
            T0 + 2 * H,
        );
        assert_eq!(e.events.len(), 2);
    }

    #[test]
    fn absent_from_a_complete_overview_resolves_but_not_from_an_incomplete_one() {
        let mut sim = Sim::new(policy());
        sim.cycle(&[customer("1@c.us", 1, T0)], T0 + 3 * H);
        let e = sim.cycle_with(&[], false, T0 + 4 * H);
        assert!(e.events.is_empty() && e.closed.is_empty());
        assert_eq!((e.waiting, e.breached), (1, 1));
        let e = sim.cycle_with(&[], true, T0 + 4 * H);
        assert_eq!(
            kinds(&e),
            vec![("1@c.us".into(), EventKind::Resolved { tier: 0 })]
        );
    }

    #[test]
    fn several_tiers_crossed_in_one_cycle_all_fire() {
        let mut p = policy();
        p.tiers = vec![
            tier(2 * H, &["oncall"]),
            tier(6 * H, &["leads"]),
            tier(24 * H, &["boss"]),
        ];
        let mut sim = Sim::new(p);
        let e = sim.cycle(&[customer("1@c.us", 1, T0)], T0 + 7 * H);
        assert_eq!(
            kinds(&e),
            vec![
                ("1@c.us".into(), fired(0, 2 * H)),
                ("1@c.us".into(), fired(1, 6 * H))
            ]
        );
        assert_eq!(e.events[1].channels, vec!["leads"]);
        assert!(e.events.iter().all(|ev| ev.episode.tiers_fired == 2));
        let e = sim.cycle(&[customer("1@c.us", 1, T0)], T0 + 24 * H);
        assert_eq!(kinds(&e), vec![("1@c.us".into(), fired(2, 24 * H))]);
    }

    #[test]
    fn ignored_globs_and_excluded_groups_are_never_escalated() {
        let mut p = policy();
        p.include_groups = false;
        let mut sim = Sim::new(p);
        let chats = [
            customer("status@broadcast", 5, T0),
            customer("1@newsletter", 5, T0),
            customer("0@c.us", 5, T0),
            customer("12036300@g.us", 5, T0),
            customer("1@c.us", 5, T0),
        ];
        let e = sim.cycle(&chats, T0 + 3 * H);
        assert_eq!(kinds(&e), vec![("1@c.us".into(), fired(0, 2 * H))]);
        assert_eq!(e.waiting, 1);
    }

    #[test]
    fn timestamps_in_the_future_count_as_now_and_missing_ones_as_observation_time() {
        let mut sim = Sim::new(policy());
        sim.cycle(
            &[
                customer("future@c.us", 1, T0 + 10 * H),
                chat("nots@c.us", Some(1), None, Some(false)),
            ],
            T0,
        );
        assert_eq!(sim.episodes["future@c.us"].started_at, T0);
        assert_eq!(sim.episodes["nots@c.us"].started_at, T0);
        assert_eq!(
            sim.episodes["future@c.us"]
                .last_message
                .as_ref()
                .unwrap()
                .timestamp,
            Some(T0)
        );
    }

    #[test]
    fn a_chat_twice_in_one_overview_counts_once() {
        let mut sim = Sim::new(policy());
        let e = sim.cycle(
            &[customer("1@c.us", 1, T0), customer("1@c.us", 1, T0)],
            T0 + 3 * H,
        );
        assert_eq!(e.events.len(), 1);
        assert_eq!(e.upserts.len(), 1);
        assert_eq!(e.waiting, 1);
    }

    #[test]
    fn repeat_after_renotifies_the_highest_tier() {
        let mut p = policy();
        p.repeat_after = Some(Duration::from_secs(H as u64));
        let mut sim = Sim::new(p);
        let c = [customer("1@c.us", 1, T0)];
        sim.cycle(&c, T0 + 2 * H);
        assert!(sim.cycle(&c, T0 + 3 * H - 1).events.is_empty());
        let e = sim.cycle(&c, T0 + 3 * H);
        assert_eq!(
            kinds(&e),
            vec![(
                "1@c.us".into(),
                EventKind::Firing {
                    tier: 0,
                    after_secs: 2 * H as u64,
                    repeat: true
                }
            )]
        );
        assert!(
            sim.cycle(&c, T0 + 3 * H + 60).events.is_empty(),
            "one repeat per interval"
        );
    }

    #[test]
    fn a_muted_chat_is_tracked_and_escalates_when_the_mute_ends() {
        let mut sim = Sim::new(policy());
        sim.mutes.insert("1@c.us".into(), T0 + 4 * H);
        let c = [customer("1@c.us", 1, T0)];
        let e = sim.cycle(&c, T0 + 3 * H);
        assert!(e.events.is_empty());
        assert_eq!(sim.episodes["1@c.us"].started_at, T0, "still tracked");
        let e = sim.cycle(&c, T0 + 4 * H);
        assert_eq!(kinds(&e), vec![("1@c.us".into(), fired(0, 2 * H))]);
    }

    #[test]
    fn nudge_unread_moves_an_episode_to_its_next_tier_at_once_and_only_once() {
        let mut p = policy();
        p.nudge_unread = 5;
        p.tiers = vec![tier(2 * H, &["oncall"]), tier(6 * H, &["leads"])];
        let mut sim = Sim::new(p);
        assert!(
            sim.cycle(&[customer("1@c.us", 4, T0)], T0 + 60)
                .events
                .is_empty()
        );
        let e = sim.cycle(&[customer("1@c.us", 5, T0)], T0 + 120);
        assert_eq!(kinds(&e), vec![("1@c.us".into(), fired(0, 2 * H))]);
        assert!(
            sim.cycle(&[customer("1@c.us", 9, T0)], T0 + 180)
                .events
                .is_empty()
        );
        let e = sim.cycle(&[customer("1@c.us", 9, T0)], T0 + 6 * H);
        assert_eq!(kinds(&e), vec![("1@c.us".into(), fired(1, 6 * H))]);
    }

    #[test]
    fn no_resolved_notice_without_a_firing_or_with_send_resolved_off() {
        let mut sim = Sim::new(policy());
        sim.cycle(&[customer("1@c.us", 1, T0)], T0);
        let e = sim.cycle(&[customer("1@c.us", 0, T0)], T0 + H);
        assert!(e.events.is_empty());
        assert_eq!(e.closed, vec!["1@c.us"]);

        let mut p = policy();
        p.send_resolved = false;
        let mut sim = Sim::new(p);
        sim.cycle(&[customer("1@c.us", 1, T0)], T0 + 3 * H);
        assert!(
            sim.cycle(&[customer("1@c.us", 0, T0)], T0 + 4 * H)
                .events
                .is_empty()
        );
    }

    #[test]
    fn rules_replace_tiers_or_ignore_chats_first_match_wins() {
        let mut p = policy();
        p.rules = vec![
            Rule {
                matchers: vec![
                    Matcher::parse("name:/^VIP /").unwrap(),
                    Matcher::parse("2010*@c.us").unwrap(),
                ],
                ignore: false,
                business_hours: None,
                escalation: Some(vec![tier(15 * 60, &["pager"])]),
                stop_on: None,
            },
            Rule {
                matchers: vec![Matcher::parse("*@g.us").unwrap()],
                ignore: true,
                business_hours: None,
                escalation: None,
                stop_on: None,
            },
        ];
        let mut sim = Sim::new(p);
        let mut vip = customer("1@c.us", 1, T0);
        vip.name = Some("VIP Nadia".into());
        let chats = [
            vip,
            customer("201055@c.us", 1, T0),
            customer("9@g.us", 1, T0),
            customer("2@c.us", 1, T0),
        ];
        let e = sim.cycle(&chats, T0 + 20 * 60);
        assert_eq!(
            kinds(&e),
            vec![
                ("1@c.us".into(), fired(0, 15 * 60)),
                ("201055@c.us".into(), fired(0, 15 * 60))
            ]
        );
        assert!(e.events.iter().all(|ev| ev.channels == vec!["pager"]));
        assert_eq!(e.waiting, 3, "the group is ignored");
    }

    #[test]
    fn previews_are_truncated_or_omitted() {
        let mut c = customer("1@c.us", 1, T0);
        c.last_message.as_mut().unwrap().body = Some("x".repeat(500));
        let mut sim = Sim::new(policy());
        sim.cycle(std::slice::from_ref(&c), T0);
        let body = sim.episodes["1@c.us"]
            .last_message
            .as_ref()
            .unwrap()
            .body
            .clone()
            .unwrap();
        assert_eq!(body.chars().count(), PREVIEW_CHARS + 1);
        let mut p = policy();
        p.include_preview = false;
        let mut sim = Sim::new(p);
        sim.cycle(&[c], T0);
        assert_eq!(
            sim.episodes["1@c.us"].last_message.as_ref().unwrap().body,
            None
        );
    }

    #[test]
    fn business_hours_delay_escalation_to_the_next_open_day() {
        use crate::calendar::BusinessHours;
        let mut days: [Vec<_>; 7] = Default::default();
        for d in days.iter_mut().take(5) {
            *d = BusinessHours::parse_day("09:00-18:00").unwrap();
        }
        let mut p = policy();
        p.business_hours = Some(BusinessHours {
            timezone: "UTC".parse().unwrap(),
            days,
            holidays: Default::default(),
        });
        // 2025-12-01 is a Monday; 17:30 UTC, due Tuesday 10:30.
        let tue_1730 = 1_764_610_200;
        let mut sim = Sim::new(p);
        let c = [customer("1@c.us", 1, tue_1730)];
        assert!(
            sim.cycle(&c, tue_1730 + 3 * H).events.is_empty(),
            "20:30: only 30m of open time"
        );
        let tue_1029 = tue_1730 + 17 * H - 60;
        assert!(sim.cycle(&c, tue_1029).events.is_empty());
        let e = sim.cycle(&c, tue_1029 + 60);
        assert_eq!(kinds(&e), vec![("1@c.us".into(), fired(0, 2 * H))]);
        assert_eq!(e.events[0].age, 2 * H);
        assert_eq!(e.events[0].waited, 17 * H);
    }
}
