//! The engine against docs/spec.md section 2, one rule per test, table-driven where the rule
//! is a table. `Sim` carries episodes from cycle to cycle as the store would.

use super::*;
use crate::calendar::{BusinessHours, parse_day};
use crate::overview::LastMessage;
use crate::policy::{Matcher, Pattern, Rule, Tier};
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
        ..Policy::default()
    }
}

fn msg(id: &str, ts: Option<i64>, from_me: Option<bool>, body: &str) -> LastMessage {
    LastMessage {
        id: Some(id.into()),
        body: Some(body.into()),
        timestamp: ts,
        from_me,
        has_media: false,
    }
}

fn chat(id: &str, unread: Option<i64>, ts: Option<i64>, from_me: Option<bool>) -> Chat {
    Chat {
        id: id.into(),
        name: Some(format!("name of {id}")),
        unread,
        last_message: Some(msg("M1", ts, from_me, "hello")),
        ..Chat::default()
    }
}

fn customer(id: &str, unread: i64, ts: i64) -> Chat {
    chat(id, Some(unread), Some(ts), Some(false))
}

/// Runs cycles, carrying episodes, the last whole overview's size and the high-water mark
/// forward as the store and the cycle do.
struct Sim {
    episodes: HashMap<String, Episode>,
    mutes: HashMap<String, i64>,
    policy: Policy,
    /// What the store keeps between polls, moved on as the cycle moves it.
    memory: Memory,
    /// Every episode that ended, in order.
    history: Vec<Closed>,
}

impl Sim {
    fn new(policy: Policy) -> Sim {
        Sim {
            episodes: HashMap::new(),
            mutes: HashMap::new(),
            policy,
            memory: Memory::default(),
            history: Vec::new(),
        }
    }

    fn cycle(&mut self, chats: &[Chat], now: i64) -> Evaluation {
        self.cycle_with(chats, true, now)
    }

    fn cycle_with(&mut self, chats: &[Chat], read_whole: bool, now: i64) -> Evaluation {
        let eval = evaluate(&Cycle {
            episodes: &self.episodes,
            chats,
            total: chats.len(),
            read_whole,
            memory: &self.memory,
            mutes: &self.mutes,
            policy: &self.policy,
            now,
        });
        for closed in &eval.closed {
            self.episodes.remove(&closed.episode.jid);
            self.history.push(closed.clone());
        }
        for ep in &eval.upserts {
            self.episodes.insert(ep.jid.clone(), ep.clone());
        }
        self.memory = self
            .memory
            .after(&self.policy, eval.judged, chats.len(), now);
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

fn resolved(tier: usize) -> EventKind {
    resolved_by(tier, EndReason::Read)
}

fn resolved_by(tier: usize, reason: EndReason) -> EventKind {
    EventKind::Resolved { tier, reason }
}

#[test]
fn waiting_follows_section_two() {
    struct Case {
        unread: Option<i64>,
        from_me: Option<bool>,
        auto: bool,
        stop_on: StopOn,
        open: bool,
        ts: i64,
        last_poll: Option<i64>,
        want: bool,
    }
    let c = |unread, from_me, auto, stop_on, open, want| Case {
        unread,
        from_me,
        auto,
        stop_on,
        open,
        ts: T0,
        last_poll: Some(T0 - 60),
        want,
    };
    use StopOn::{Read, Reply};
    let cases = [
        // Read mode: the unread count, whoever sent the last message.
        c(Some(3), Some(false), false, Read, false, true),
        c(Some(3), None, false, Read, false, true),
        c(Some(3), Some(true), false, Read, false, true),
        c(Some(3), Some(true), true, Read, false, true),
        c(Some(-1), Some(false), false, Read, false, true),
        c(Some(-1), Some(true), false, Read, true, true),
        c(Some(0), Some(false), false, Read, false, false),
        c(Some(0), Some(false), false, Read, true, false),
        c(Some(-2), Some(false), false, Read, false, false),
        // No count: the customer or an automatic reply spoke last.
        c(None, Some(false), false, Read, false, true),
        c(None, Some(true), true, Read, false, true),
        c(None, Some(true), false, Read, false, false),
        c(None, None, false, Read, false, false),
        // Reply mode: only a real reply ends it; reading does not.
        c(Some(0), Some(false), false, Reply, true, true),
        c(Some(0), Some(true), false, Reply, true, false),
        c(Some(0), Some(true), true, Reply, true, true),
        c(Some(2), Some(true), false, Reply, false, false),
        c(Some(2), Some(false), false, Reply, false, true),
        c(Some(-1), None, false, Reply, false, true),
        c(None, Some(false), false, Reply, false, true),
        c(None, Some(true), true, Reply, false, true),
        c(None, None, false, Reply, false, false),
        // Already read, not open: only a message newer than the last poll starts one.
        c(Some(0), Some(false), false, Reply, false, true),
        c(Some(0), Some(true), true, Reply, false, true),
        c(Some(0), None, false, Reply, false, false),
        Case {
            ts: T0 - 120,
            ..c(Some(0), Some(false), false, Reply, false, false)
        },
        Case {
            ts: T0 - 60,
            ..c(Some(0), Some(false), false, Reply, false, false)
        },
        Case {
            last_poll: None,
            ..c(Some(0), Some(false), false, Reply, false, false)
        },
    ];
    for (i, case) in cases.iter().enumerate() {
        let ch = chat("1@c.us", case.unread, Some(case.ts), case.from_me);
        assert_eq!(
            is_waiting(&ch, case.stop_on, case.open, case.auto, case.last_poll),
            case.want,
            "case {i}: {:?} {:?} auto={} {:?} open={}",
            case.unread,
            case.from_me,
            case.auto,
            case.stop_on,
            case.open
        );
    }
    let no_messages = Chat {
        id: "1@c.us".into(),
        unread: Some(1),
        ..Chat::default()
    };
    assert!(is_waiting(&no_messages, Read, false, false, None));
    assert!(is_waiting(&no_messages, Reply, false, false, None));
    let empty_open = Chat {
        unread: Some(0),
        ..no_messages
    };
    assert!(!is_waiting(&empty_open, Reply, true, false, None));
}

#[test]
fn completeness_needs_a_whole_non_empty_overview_of_at_least_half_the_last_size() {
    let cases = [
        // (read_whole, chats, open, previous, complete)
        (true, 10, 3, Some(10), true),
        (false, 10, 3, Some(10), false),
        (true, 0, 3, None, false),
        (true, 0, 0, None, true),
        (true, 5, 3, Some(10), true),
        (true, 4, 3, Some(10), false),
        (true, 4, 0, Some(9), false),
        (true, 5, 0, Some(9), true),
        (true, 1, 1, None, true),
    ];
    for (read_whole, chats, open, previous, want) in cases {
        let memory = Memory {
            complete_chats: previous,
            ..Memory::default()
        };
        assert_eq!(
            is_complete(read_whole, chats, open, &memory, T0),
            want,
            "{read_whole} {chats} {open} {previous:?}"
        );
    }
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
    assert_eq!((e.events[0].waited, e.events[0].age), (2 * H, 2 * H));
    assert_eq!(e.events[0].episode.fired, vec![2 * H as u64]);
    assert_eq!(e.events[0].episode.notified, vec!["oncall"]);
    assert_eq!(e.events[0].episode.last_fired_at, Some(T0 + 2 * H));
    let e = sim.cycle(&c, T0 + 3 * H);
    assert!(e.events.is_empty(), "deduplicated");
    assert!(e.upserts.is_empty());
    assert_eq!((e.waiting, e.breached), (1, 1));
}

#[test]
fn nudge_does_not_restart_the_clock() {
    let mut sim = Sim::new(policy());
    sim.cycle(&[customer("1@c.us", 1, T0)], T0);
    for k in 1..4 {
        let e = sim.cycle(&[customer("1@c.us", 1 + k, T0 + k * 1800)], T0 + k * 1800);
        assert!(e.events.is_empty());
        assert_eq!(e.upserts.len(), 1, "the new message is recorded");
        assert_eq!(
            sim.episodes["1@c.us"].started_at, T0,
            "the clock started at the first message"
        );
    }
    let e = sim.cycle(&[customer("1@c.us", 5, T0 + 2 * H)], T0 + 2 * H);
    assert_eq!(kinds(&e), vec![("1@c.us".into(), fired(0, 2 * H))]);
    assert_eq!(e.events[0].episode.unread, Some(5));
    assert_eq!(
        e.events[0].episode.last_message.as_ref().unwrap().timestamp,
        Some(T0 + 2 * H)
    );
}

#[test]
fn reading_resolves_with_stop_on_read_and_tells_who_was_told() {
    let mut p = policy();
    p.tiers = vec![tier(2 * H, &["oncall"]), tier(6 * H, &["leads", "oncall"])];
    let mut sim = Sim::new(p);
    sim.cycle(&[customer("1@c.us", 1, T0)], T0 + 7 * H);
    let e = sim.cycle(&[customer("1@c.us", 0, T0)], T0 + 8 * H);
    assert_eq!(kinds(&e), vec![("1@c.us".into(), resolved(1))]);
    assert_eq!(e.events[0].channels, vec!["oncall", "leads"]);
    assert_eq!(e.events[0].waited, 8 * H);
    assert_eq!(e.closed.len(), 1);
    assert_eq!(e.closed[0].reason, EndReason::Read);
    assert_eq!((e.closed[0].ended_at, e.closed[0].age), (T0 + 8 * H, 8 * H));
    assert!(sim.episodes.is_empty());
}

#[test]
fn a_reply_ends_an_episode_as_answered() {
    let mut sim = Sim::new(policy());
    sim.cycle(&[customer("1@c.us", 1, T0)], T0);
    let e = sim.cycle(
        &[chat("1@c.us", Some(0), Some(T0 + 60), Some(true))],
        T0 + 120,
    );
    assert_eq!(e.closed[0].reason, EndReason::Reply);
    assert!(e.events.is_empty(), "no tier fired: nobody to tell");
}

#[test]
fn reading_is_not_answering_with_stop_on_reply() {
    let mut p = policy();
    p.sla.stop_on = StopOn::Reply;
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
        vec![("1@c.us".into(), resolved_by(0, EndReason::Reply))]
    );
    assert_eq!(e.closed[0].reason, EndReason::Reply);
    // The notice says how long the customer waited, from the first message to now.
    assert_eq!(e.events[0].waited, 3 * H + 60);
    assert_eq!(e.events[0].age, 3 * H + 60);
}

#[test]
fn reply_mode_pages_a_chat_opened_within_one_poll_and_never_answered() {
    let mut p = policy();
    p.sla.stop_on = StopOn::Reply;
    let mut sim = Sim::new(p);
    // First start: old read chats do not page (every old "thanks!" would).
    let e = sim.cycle(&[customer("old@c.us", 0, T0 - 30 * 86400)], T0);
    assert!(e.upserts.is_empty());
    // The customer writes at T0+30 and an agent opens the chat before the next poll.
    let chats = [
        customer("old@c.us", 0, T0 - 30 * 86400),
        customer("new@c.us", 0, T0 + 30),
    ];
    let e = sim.cycle(&chats, T0 + 60);
    assert_eq!(e.upserts.len(), 1);
    assert_eq!(e.upserts[0].jid, "new@c.us");
    assert_eq!(e.upserts[0].started_at, T0 + 30);
    let e = sim.cycle(&chats, T0 + 30 + 2 * H);
    assert_eq!(kinds(&e), vec![("new@c.us".into(), fired(0, 2 * H))]);
    // A read chat whose last message is older than the last poll never pages.
    let mut late = chats.to_vec();
    late.push(customer("late@c.us", 0, T0 + 59));
    let e = sim.cycle(&late, T0 + 3 * H);
    assert!(e.upserts.is_empty() && e.events.is_empty());
}

/// Section 2: reply mode a month ago, read mode since, reply mode again. The old mark is
/// not trusted: the switch starts like a first start, and the read chats whose last
/// message is the customer's (old "thanks!") page nobody. The same for a rule that puts
/// other chats in reply mode.
#[test]
fn switching_back_to_reply_mode_starts_from_the_switch() {
    let mut p = policy();
    p.sla.stop_on = StopOn::Reply;
    let mut sim = Sim::new(p);
    sim.cycle(&[], T0);
    assert_eq!(sim.memory.mark, Some(T0));
    sim.policy.sla.stop_on = StopOn::Read;
    // A month of read mode: customers wrote, agents read and did not need to answer.
    let read: Vec<Chat> = (0..50)
        .map(|i| customer(&format!("r{i}@c.us"), 0, T0 + 86400 + i))
        .collect();
    for day in 1..30 {
        sim.cycle(&read, T0 + day * 86400 + 3600);
    }
    assert_eq!(sim.memory.mark, None, "read mode keeps no mark");
    sim.policy.sla.stop_on = StopOn::Reply;
    let now = T0 + 30 * 86400;
    let e = sim.cycle(&read, now);
    assert!(e.upserts.is_empty(), "{} chats opened", e.upserts.len());
    assert_eq!(sim.memory.mark, Some(now), "the mark starts at the switch");
    // From then on reply mode works as ever: a chat opened within one poll pages.
    let mut later = read.clone();
    later.push(customer("new@c.us", 0, now + 30));
    let e = sim.cycle(&later, now + 60);
    assert_eq!(e.upserts.len(), 1);

    // A rule that puts other chats in reply mode changes the signature as well.
    let vip = Rule {
        matchers: vec![Matcher::parse("r1*").unwrap()],
        ignore: false,
        business_hours: None,
        escalation: None,
        stop_on: Some(StopOn::Reply),
    };
    sim.policy.sla.stop_on = StopOn::Read;
    sim.policy.rules = vec![Rule {
        matchers: vec![Matcher::parse("nobody*").unwrap()],
        ..vip.clone()
    }];
    sim.cycle(&later, now + 120);
    let mark = sim.memory.mark;
    sim.policy.rules = vec![vip];
    let mut fresh = later.clone();
    fresh.push(customer("r1x@c.us", 0, now + 130));
    let e = sim.cycle(&fresh, now + 180);
    assert!(
        e.upserts.is_empty(),
        "a mark from another reply-mode policy ({mark:?}) is not trusted"
    );
}

/// Reply mode's mark stays put through a resync: a chat that a short answer missed is
/// still judged against the mark it would have been judged against. A partial read that
/// is no resync (an inbox larger than `max_chats`, an element that is not a chat) moves
/// it: such an inbox is never read whole, and its mark must not freeze.
#[test]
fn reply_modes_mark_holds_through_a_resync_and_moves_on_a_partial_read() {
    let mut p = policy();
    p.sla.stop_on = StopOn::Reply;
    let mut sim = Sim::new(p);
    let others: Vec<Chat> = (0..4)
        .map(|i| chat(&format!("o{i}@c.us"), Some(0), Some(T0 - H), Some(true)))
        .collect();
    sim.cycle(&others, T0);
    // The customer writes at T0+30 and is read at once; the next poll is a resync that
    // does not show the chat; the one after does.
    let resync = sim.cycle(&others[..1], T0 + 60);
    assert!(!resync.complete && resync.judged.resync);
    assert_eq!(sim.memory.mark, Some(T0), "a resync keeps the mark");
    let mut all = others.clone();
    all.push(customer("x@c.us", 0, T0 + 30));
    let e = sim.cycle(&all, T0 + 120);
    assert_eq!(
        e.upserts.len(),
        1,
        "read within a poll and unanswered: waiting"
    );
    assert_eq!(e.upserts[0].jid, "x@c.us");
    let partial = sim.cycle_with(&all, false, T0 + 180);
    assert!(!partial.complete && !partial.judged.resync);
    assert_eq!(sim.memory.mark, Some(T0 + 180), "a partial read moves it");
}

#[test]
fn reply_mode_from_a_rule_uses_the_high_water_mark_too() {
    let mut p = policy();
    p.rules = vec![Rule {
        matchers: vec![Matcher::parse("vip*").unwrap()],
        ignore: false,
        business_hours: None,
        escalation: None,
        stop_on: Some(StopOn::Reply),
    }];
    let mut sim = Sim::new(p);
    sim.cycle(&[], T0);
    let e = sim.cycle(
        &[
            customer("vip1@c.us", 0, T0 + 10),
            customer("x@c.us", 0, T0 + 10),
        ],
        T0 + 60,
    );
    assert_eq!(
        e.upserts.iter().map(|u| u.jid.as_str()).collect::<Vec<_>>(),
        vec!["vip1@c.us"]
    );
}

#[test]
fn an_automatic_reply_answers_nobody_in_either_mode() {
    for stop_on in [StopOn::Read, StopOn::Reply] {
        let mut p = policy();
        p.sla.stop_on = stop_on;
        p.sla.auto_replies = vec![
            Pattern::parse("Thanks for contacting*").unwrap(),
            Pattern::parse("/^Our hours are/").unwrap(),
        ];
        let mut sim = Sim::new(p);
        let away = |unread, ts| Chat {
            last_message: Some(msg(
                "AWAY",
                Some(ts),
                Some(true),
                "Thanks for contacting Acme!",
            )),
            ..customer("1@c.us", unread, ts)
        };
        // Two unread customer messages behind a greeting: waiting.
        sim.cycle(&[away(2, T0)], T0);
        assert_eq!(sim.episodes.len(), 1, "{stop_on:?}");
        let e = sim.cycle(&[away(2, T0)], T0 + 2 * H);
        assert_eq!(
            kinds(&e),
            vec![("1@c.us".into(), fired(0, 2 * H))],
            "{stop_on:?}"
        );
        // Another automatic message later is still nobody's answer.
        let hours = Chat {
            last_message: Some(msg(
                "HRS",
                Some(T0 + 3 * H),
                Some(true),
                "Our hours are 9-6",
            )),
            ..customer("1@c.us", 0, T0)
        };
        let e = sim.cycle(std::slice::from_ref(&hours), T0 + 3 * H);
        match stop_on {
            StopOn::Reply => assert!(e.closed.is_empty(), "an auto reply does not end it"),
            StopOn::Read => assert_eq!(e.closed[0].reason, EndReason::Read, "read, not answered"),
        }
        // A real answer ends it as answered.
        let real = Chat {
            last_message: Some(msg("R", Some(T0 + 4 * H), Some(true), "Sorry! On it.")),
            ..customer("1@c.us", 0, T0)
        };
        sim.cycle(&[real], T0 + 4 * H);
        assert!(sim.episodes.is_empty());
        assert_eq!(
            sim.history.last().unwrap().reason,
            if stop_on == StopOn::Reply {
                EndReason::Reply
            } else {
                EndReason::Read
            }
        );
    }
    // Without a count, an automatic reply as the last message still waits.
    let mut p = policy();
    p.sla.auto_replies = vec![Pattern::parse("Away*").unwrap()];
    let mut sim = Sim::new(p);
    let c = Chat {
        id: "2@c.us".into(),
        name: None,
        unread: None,
        last_message: Some(msg("A", Some(T0), Some(true), "Away until Monday")),
        ..Chat::default()
    };
    sim.cycle(&[c], T0);
    assert_eq!(sim.episodes.len(), 1);
}

#[test]
fn a_chat_read_between_two_polls_ends_one_wait_and_starts_another_at_the_new_message() {
    let mut sim = Sim::new(policy());
    let first = Chat {
        last_message: Some(msg("M3", Some(T0), Some(false), "third")),
        ..customer("1@c.us", 3, T0)
    };
    sim.cycle(std::slice::from_ref(&first), T0 + 2 * H + 10);
    assert_eq!(sim.episodes["1@c.us"].fired, vec![2 * H as u64]);
    // Someone read all three; the customer wrote again: unread 1, a new last message.
    let again = Chat {
        last_message: Some(msg("M4", Some(T0 + 3 * H), Some(false), "one more thing")),
        ..customer("1@c.us", 1, T0 + 3 * H)
    };
    let e = sim.cycle(std::slice::from_ref(&again), T0 + 3 * H + 30);
    assert_eq!(kinds(&e), vec![("1@c.us".into(), resolved(0))]);
    assert_eq!(
        e.events[0].waited,
        3 * H,
        "the old wait ended by the new message"
    );
    assert_eq!(e.closed[0].reason, EndReason::Read);
    assert_eq!(e.closed[0].ended_at, T0 + 3 * H);
    let ep = &sim.episodes["1@c.us"];
    assert_eq!(
        (ep.started_at, ep.fired.len()),
        (T0 + 3 * H, 0),
        "a fresh clock"
    );
    // The new wait is escalated on its own clock.
    let e = sim.cycle(std::slice::from_ref(&again), T0 + 5 * H - 1);
    assert!(e.events.is_empty());
    let e = sim.cycle(&[again], T0 + 5 * H);
    assert_eq!(kinds(&e), vec![("1@c.us".into(), fired(0, 2 * H))]);
}

#[test]
fn only_a_lower_count_with_a_new_message_is_a_read_between_polls() {
    // (unread before, unread after, message changed, splits)
    let cases = [
        (3, 1, true, true),
        (3, 2, true, true),
        (3, 3, true, false),
        (1, 2, true, false),
        (3, 1, false, false),
        (3, 0, true, false),
        (-1, 1, true, false),
        (3, -1, true, false),
    ];
    for (before, after, changed, splits) in cases {
        let mut sim = Sim::new(policy());
        sim.cycle(&[customer("1@c.us", before, T0)], T0);
        let ts = if changed { T0 + 60 } else { T0 };
        let id = if changed { "M2" } else { "M1" };
        let next = Chat {
            last_message: Some(msg(id, Some(ts), Some(false), "hello")),
            ..customer("1@c.us", after, ts)
        };
        sim.cycle(&[next], T0 + 120);
        let split = sim.history.iter().any(|c| c.reason == EndReason::Read)
            && sim
                .episodes
                .get("1@c.us")
                .is_some_and(|e| e.started_at == T0 + 60);
        assert_eq!(split, splits, "{before} -> {after}, changed={changed}");
    }
    // Reply mode: reading never ends an episode, so there is nothing to split.
    let mut p = policy();
    p.sla.stop_on = StopOn::Reply;
    let mut sim = Sim::new(p);
    sim.cycle(&[customer("1@c.us", 3, T0)], T0);
    let next = Chat {
        last_message: Some(msg("M2", Some(T0 + 60), Some(false), "more")),
        ..customer("1@c.us", 1, T0 + 60)
    };
    sim.cycle(&[next], T0 + 120);
    assert_eq!(sim.episodes["1@c.us"].started_at, T0);
    assert!(sim.history.is_empty());
}

#[test]
fn one_empty_answer_resolves_nothing_and_pages_nobody_twice() {
    let mut sim = Sim::new(policy());
    let chats = [customer("1@c.us", 1, T0), customer("2@c.us", 0, T0)];
    let e = sim.cycle(&chats, T0 + 3 * H);
    assert_eq!(e.events.len(), 1);
    let e = sim.cycle(&[], T0 + 3 * H + 60);
    assert!(
        !e.complete,
        "an empty overview while episodes are open proves nothing"
    );
    assert!(e.events.is_empty() && e.closed.is_empty() && e.upserts.is_empty());
    assert_eq!((e.waiting, e.breached), (1, 1));
    let e = sim.cycle(&chats, T0 + 3 * H + 120);
    assert!(e.events.is_empty(), "no second page: the same episode");
    assert_eq!(sim.episodes["1@c.us"].started_at, T0);
}

#[test]
fn a_chat_missing_from_one_page_keeps_its_clock_and_absence_is_confirmed_over_polls() {
    let mut p = policy();
    p.sla.absent_polls = 3;
    let mut sim = Sim::new(p);
    let others: Vec<Chat> = (0..6)
        .map(|i| customer(&format!("o{i}@c.us"), 0, T0))
        .collect();
    let with = |extra: Option<Chat>| {
        let mut all = others.clone();
        all.extend(extra);
        all
    };
    sim.cycle(&with(Some(customer("1@c.us", 1, T0))), T0 + 3 * H);
    // Paging drift: missing from one complete overview, back in the next.
    let e = sim.cycle(&with(None), T0 + 3 * H + 60);
    assert!(e.complete);
    assert!(e.events.is_empty() && e.closed.is_empty());
    assert_eq!(e.upserts[0].missing, 1);
    assert_eq!((e.waiting, e.breached), (1, 1));
    let e = sim.cycle(
        &with(Some(customer("1@c.us", 2, T0 + 3 * H))),
        T0 + 3 * H + 120,
    );
    assert!(e.events.is_empty(), "no false resolved, no second page");
    assert_eq!(sim.episodes["1@c.us"].missing, 0);
    assert_eq!(sim.episodes["1@c.us"].started_at, T0);
    // Gone for good: resolved on the third complete overview without it.
    assert!(sim.cycle(&with(None), T0 + 4 * H).events.is_empty());
    assert!(sim.cycle(&with(None), T0 + 4 * H + 60).events.is_empty());
    let e = sim.cycle(&with(None), T0 + 4 * H + 120);
    assert_eq!(
        kinds(&e),
        vec![("1@c.us".into(), resolved_by(0, EndReason::Absent))]
    );
    assert_eq!(e.closed[0].reason, EndReason::Absent);
    // An incomplete overview neither counts nor resets absence.
    let mut sim = Sim::new(policy());
    sim.cycle(&with(Some(customer("1@c.us", 1, T0))), T0);
    sim.cycle(&with(None), T0 + 60);
    let e = sim.cycle_with(&with(None), false, T0 + 120);
    assert!(e.upserts.is_empty());
    assert_eq!(sim.episodes["1@c.us"].missing, 1);
}

#[test]
fn an_overview_of_under_half_the_last_one_ends_nothing() {
    let mut p = policy();
    p.sla.absent_polls = 1;
    let mut sim = Sim::new(p);
    let all: Vec<Chat> = (0..10)
        .map(|i| customer(&format!("c{i}@c.us"), 1, T0))
        .collect();
    sim.cycle(&all, T0 + 3 * H);
    let e = sim.cycle(&all[..4], T0 + 3 * H + 60);
    assert!(!e.complete);
    assert!(e.closed.is_empty() && e.events.is_empty());
    assert_eq!(e.waiting, 10);
    let e = sim.cycle(&all[..5], T0 + 3 * H + 120);
    assert!(e.complete, "half is enough");
    assert_eq!(e.closed.len(), 5);
}

/// Section 2: an overview judged incomplete never becomes the reference. 20 chats, then
/// the engine answers the same 8 for four polls (it is still resyncing), then 20 again:
/// the breached chat missing from the 8 is neither resolved nor paged twice.
#[test]
fn a_short_overview_repeated_during_a_resync_never_becomes_the_reference() {
    let mut sim = Sim::new(policy());
    let mut all: Vec<Chat> = (0..19)
        .map(|i| customer(&format!("c{i}@c.us"), 0, T0))
        .collect();
    all.push(customer("waiting@c.us", 1, T0));
    let e = sim.cycle(&all, T0 + 3 * H);
    assert_eq!(kinds(&e), vec![("waiting@c.us".into(), fired(0, 2 * H))]);
    for poll in 1..=4 {
        let e = sim.cycle(&all[..8], T0 + 3 * H + poll * 60);
        assert!(
            !e.complete,
            "poll {poll}: 8 of 20 is a resync, however often"
        );
        assert!(e.events.is_empty() && e.closed.is_empty(), "poll {poll}");
        assert_eq!(sim.memory.complete_chats, Some(20), "poll {poll}");
    }
    let e = sim.cycle(&all, T0 + 3 * H + 300);
    assert!(e.events.is_empty(), "no second firing: {:?}", kinds(&e));
    assert_eq!(sim.episodes["waiting@c.us"].started_at, T0);
}

/// The liveness twin: an inbox that really shrank (most chats deleted) is believed after
/// a day of short answers, so the episodes of chats that are gone end at last.
#[test]
fn an_inbox_that_really_shrank_is_believed_after_a_day() {
    let mut sim = Sim::new(policy());
    let mut all: Vec<Chat> = (0..19)
        .map(|i| customer(&format!("c{i}@c.us"), 0, T0))
        .collect();
    all.push(customer("gone@c.us", 1, T0));
    sim.cycle(&all, T0 + 3 * H);
    let start = T0 + 3 * H + 60;
    let e = sim.cycle(&all[..8], start);
    assert!(!e.complete);
    assert_eq!(sim.memory.short_since, Some(start));
    let e = sim.cycle(&all[..8], start + ADOPT_SHORT_AFTER - 1);
    assert!(!e.complete, "a day is not over");
    let mut ended = None;
    for poll in 0..3 {
        let e = sim.cycle(&all[..8], start + ADOPT_SHORT_AFTER + poll * 60);
        assert!(e.complete, "after a day the short inbox is the inbox");
        if !e.closed.is_empty() {
            ended = Some(e);
        }
    }
    let e = ended.expect("the gone chat ended after absent_polls complete overviews");
    assert_eq!(
        kinds(&e),
        vec![("gone@c.us".into(), resolved_by(0, EndReason::Absent))]
    );
    assert_eq!(sim.memory.complete_chats, Some(8));
    assert_eq!(sim.memory.short_since, None);
    // An engine that answers `[]` for days proves nothing, however long.
    let mut sim2 = Sim::new(policy());
    sim2.cycle(&all, T0 + 3 * H);
    for day in 0..3 {
        let e = sim2.cycle(&[], T0 + 3 * H + 60 + day * ADOPT_SHORT_AFTER);
        assert!(!e.complete && e.closed.is_empty(), "day {day}");
    }
    // A partial read (max_chats, an unreadable element) proves nothing either way.
    let before = sim.memory.clone();
    sim.cycle_with(&all[..2], false, start + ADOPT_SHORT_AFTER + 600);
    assert_eq!(sim.memory.complete_chats, before.complete_chats);
    assert_eq!(sim.memory.short_since, None);
}

#[test]
fn tiers_are_known_by_after_across_reloads() {
    let two = || tier(2 * H, &["oncall"]);
    let six = || tier(6 * H, &["leads"]);
    let one = || tier(H, &["early"]);
    let c = [customer("1@c.us", 1, T0)];

    // Removing the first tier does not make the 6h tier count as fired.
    let mut sim = Sim::new(Policy {
        tiers: vec![two(), six()],
        ..policy()
    });
    sim.cycle(&c, T0 + 2 * H);
    sim.policy.tiers = vec![six()];
    assert!(sim.cycle(&c, T0 + 6 * H - 1).events.is_empty());
    let e = sim.cycle(&c, T0 + 6 * H);
    assert_eq!(kinds(&e), vec![("1@c.us".into(), fired(0, 6 * H))]);
    assert_eq!(e.events[0].channels, vec!["leads"]);

    // Inserting an earlier tier fires it (it never fired), but never re-sends 2h.
    let mut sim = Sim::new(Policy {
        tiers: vec![two(), six()],
        ..policy()
    });
    sim.cycle(&c, T0 + 2 * H);
    sim.policy.tiers = vec![one(), two(), six()];
    let e = sim.cycle(&c, T0 + 2 * H + 60);
    assert_eq!(kinds(&e), vec![("1@c.us".into(), fired(0, H))]);
    let e = sim.cycle(&c, T0 + 6 * H);
    assert_eq!(kinds(&e), vec![("1@c.us".into(), fired(2, 6 * H))]);
    let e = sim.cycle(&[customer("1@c.us", 0, T0)], T0 + 7 * H);
    assert_eq!(
        e.events[0].channels,
        vec!["oncall", "early", "leads"],
        "everyone told hears"
    );
    assert_eq!(e.events[0].kind, resolved(2));

    // Changing a tier's channels does not re-fire it.
    let mut sim = Sim::new(policy());
    sim.cycle(&c, T0 + 2 * H);
    sim.policy.tiers = vec![tier(2 * H, &["leads"])];
    assert!(sim.cycle(&c, T0 + 3 * H).events.is_empty());
}

#[test]
fn a_rules_tiers_are_known_by_after_too() {
    let rule = |tiers: Vec<Tier>| Rule {
        matchers: vec![Matcher::parse("vip*").unwrap()],
        ignore: false,
        business_hours: None,
        escalation: Some(tiers),
        stop_on: None,
    };
    let mut p = policy();
    p.rules = vec![rule(vec![tier(900, &["pager"]), tier(H, &["oncall"])])];
    let mut sim = Sim::new(p);
    let c = [customer("vip1@c.us", 1, T0)];
    sim.cycle(&c, T0 + 900);
    sim.policy.rules = vec![rule(vec![tier(H, &["oncall"])])];
    assert!(sim.cycle(&c, T0 + H - 1).events.is_empty());
    assert_eq!(
        kinds(&sim.cycle(&c, T0 + H)),
        vec![("vip1@c.us".into(), fired(0, H))]
    );
}

#[test]
fn an_episode_from_an_old_store_reads_its_count_as_its_first_tiers() {
    let mut p = policy();
    p.tiers = vec![tier(2 * H, &["oncall"]), tier(6 * H, &["leads"])];
    let mut sim = Sim::new(p);
    let old = Episode {
        jid: "1@c.us".into(),
        name: Some("name of 1@c.us".into()),
        started_at: T0,
        unread: Some(1),
        last_message: Some(Preview {
            id: Some("M1".into()),
            body: Some("hello".into()),
            timestamp: Some(T0),
            has_media: false,
        }),
        fired: vec![],
        notified: vec![],
        last_fired_at: Some(T0 + 2 * H),
        nudged: false,
        missing: 0,
        fingerprint: 0,
        quiet_until: 0,
        legacy_fired: Some(1),
        history_pending: false,
        ack: None,
    };
    sim.episodes.insert(old.jid.clone(), old.clone());
    let c = [customer("1@c.us", 1, T0)];
    let e = sim.cycle(&c, T0 + 3 * H);
    assert!(e.events.is_empty(), "the 2h tier fired under the old store");
    assert_eq!(e.upserts.len(), 1, "the conversion is written");
    assert_eq!(e.upserts[0].fired, vec![2 * H as u64]);
    assert_eq!(e.upserts[0].notified, vec!["oncall"]);
    assert_eq!(e.upserts[0].legacy_fired, None);
    assert_eq!(e.breached, 1);
    assert_eq!(
        kinds(&sim.cycle(&c, T0 + 6 * H)),
        vec![("1@c.us".into(), fired(1, 6 * H))]
    );
    // Absent from a complete overview, a legacy episode converts before it closes.
    let mut sim = Sim::new(Policy {
        sla: absent_polls_one(),
        ..policy()
    });
    sim.episodes.insert(old.jid.clone(), old.clone());
    let e = sim.cycle(&[customer("2@c.us", 0, T0)], T0 + 3 * H);
    assert_eq!(
        kinds(&e),
        vec![("1@c.us".into(), resolved_by(0, EndReason::Absent))]
    );
    assert_eq!(e.events[0].channels, vec!["oncall"]);
    // While incomplete, it counts as breached.
    let mut sim = Sim::new(policy());
    sim.episodes.insert(old.jid.clone(), old.clone());
    assert_eq!(sim.cycle_with(&[], false, T0 + 3 * H).breached, 1);
    // Missing from one complete overview (absence not yet confirmed): still waiting, and
    // breached only if the old store counted a tier.
    for (count, breached) in [(1, 1), (0, 0)] {
        let mut sim = Sim::new(policy());
        let ep = Episode {
            legacy_fired: Some(count),
            history_pending: false,
            ack: None,
            ..old.clone()
        };
        sim.episodes.insert(ep.jid.clone(), ep.clone());
        let e = sim.cycle(&[customer("2@c.us", 0, T0)], T0 + 3 * H);
        assert_eq!(
            (e.waiting, e.breached),
            (1, breached),
            "legacy count {count}"
        );
        // The same while the overview is incomplete (the episode is not even converted).
        let mut sim = Sim::new(policy());
        sim.episodes.insert(ep.jid.clone(), ep);
        let e = sim.cycle_with(&[customer("2@c.us", 0, T0)], false, T0 + 3 * H);
        assert_eq!(
            (e.waiting, e.breached),
            (1, breached),
            "incomplete, legacy {count}"
        );
    }
}

fn absent_polls_one() -> crate::policy::Sla {
    crate::policy::Sla {
        absent_polls: 1,
        ..crate::policy::Sla::default()
    }
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
    assert!(
        e.events
            .iter()
            .all(|ev| ev.episode.fired == vec![2 * H as u64, 6 * H as u64])
    );
    let e = sim.cycle(&[customer("1@c.us", 1, T0)], T0 + 24 * H);
    assert_eq!(kinds(&e), vec![("1@c.us".into(), fired(2, 24 * H))]);
}

#[test]
fn ignored_globs_and_excluded_groups_are_never_escalated() {
    let mut p = policy();
    p.sla.include_groups = false;
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

/// Section 2, "an unwatched chat": a rule or `sla.ignore` that now excludes a chat ends its
/// episode as `unwatched`; the channels that were told hear that it is no longer watched
/// (so PagerDuty and Alertmanager close it), and a chat nobody was told of ends quietly.
#[test]
fn a_chat_that_becomes_ignored_ends_as_unwatched_and_who_was_told_hears_so() {
    let mut sim = Sim::new(policy());
    sim.cycle(
        &[
            customer("1@c.us", 1, T0),
            customer("2@c.us", 1, T0),
            customer("3@c.us", 1, T0 + 2 * H),
        ],
        T0 + 3 * H,
    );
    for jid in ["1@c.us", "2@c.us", "3@c.us"] {
        sim.policy.sla.ignore.push(crate::policy::Glob::new(jid));
    }
    let e = sim.cycle(
        &[customer("1@c.us", 1, T0), customer("3@c.us", 1, T0 + 2 * H)],
        T0 + 3 * H + 60,
    );
    let mut told: Vec<_> = e
        .events
        .iter()
        .map(|ev| (ev.episode.jid.clone(), ev.kind, ev.channels.clone()))
        .collect();
    told.sort_by(|a, b| a.0.cmp(&b.0));
    let unwatched = resolved_by(0, EndReason::Unwatched);
    assert_eq!(
        told,
        vec![
            ("1@c.us".into(), unwatched, vec!["oncall".to_string()]),
            ("2@c.us".into(), unwatched, vec!["oncall".to_string()]),
        ],
        "the two that paged hear it; the third never paged"
    );
    let mut reasons: Vec<_> = e
        .closed
        .iter()
        .map(|c| (c.episode.jid.clone(), c.reason))
        .collect();
    reasons.sort_by(|a, b| a.0.cmp(&b.0));
    assert_eq!(
        reasons,
        vec![
            ("1@c.us".into(), EndReason::Unwatched),
            ("2@c.us".into(), EndReason::Unwatched),
            ("3@c.us".into(), EndReason::Unwatched)
        ]
    );
}

/// An instance removed from the config: every open episode ends as `unwatched`, and only
/// those that paged send a notice, to whom they paged.
#[test]
fn a_removed_instance_ends_every_episode_as_unwatched() {
    let mut sim = Sim::new(policy());
    sim.cycle(
        &[customer("1@c.us", 1, T0), customer("2@c.us", 1, T0 + 2 * H)],
        T0 + 3 * H,
    );
    let e = unwatch(&sim.episodes, &sim.policy, T0 + 4 * H);
    assert_eq!(
        kinds(&e),
        vec![("1@c.us".into(), resolved_by(0, EndReason::Unwatched))]
    );
    assert_eq!(e.events[0].channels, vec!["oncall"]);
    assert_eq!(e.events[0].waited, 4 * H);
    assert_eq!(e.closed.len(), 2);
    assert!(e.closed.iter().all(|c| c.reason == EndReason::Unwatched));
    assert!(e.upserts.is_empty());
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
    assert_eq!((e.events.len(), e.upserts.len(), e.waiting), (1, 1, 1));
}

#[test]
fn repeat_after_renotifies_the_highest_tier() {
    let mut p = policy();
    p.sla.repeat_after = Duration::from_secs(H as u64);
    p.tiers = vec![tier(H, &["a"]), tier(2 * H, &["b"])];
    let mut sim = Sim::new(p);
    let c = [customer("1@c.us", 1, T0)];
    sim.cycle(&c, T0 + 2 * H);
    assert!(sim.cycle(&c, T0 + 3 * H - 1).events.is_empty());
    let e = sim.cycle(&c, T0 + 3 * H);
    let repeat = EventKind::Firing {
        tier: 1,
        after_secs: 2 * H as u64,
        repeat: true,
    };
    assert_eq!(kinds(&e), vec![("1@c.us".into(), repeat)]);
    assert_eq!(e.events[0].channels, vec!["b"]);
    assert_eq!(e.events[0].age, 3 * H);
    assert!(
        sim.cycle(&c, T0 + 3 * H + 60).events.is_empty(),
        "one repeat per interval"
    );
    assert_eq!(
        kinds(&sim.cycle(&c, T0 + 4 * H)),
        vec![("1@c.us".into(), repeat)]
    );
    // A repeat of a tier removed since picks the highest tier below it.
    sim.policy.tiers = vec![tier(H, &["a"])];
    let e = sim.cycle(&c, T0 + 5 * H);
    assert_eq!(
        kinds(&e),
        vec![(
            "1@c.us".into(),
            EventKind::Firing {
                tier: 0,
                after_secs: H as u64,
                repeat: true
            }
        )]
    );
    // Without repeat_after nothing repeats.
    sim.policy.sla.repeat_after = Duration::ZERO;
    assert!(sim.cycle(&c, T0 + 9 * H).events.is_empty());
}

#[test]
fn a_muted_chat_is_tracked_and_escalates_when_the_mute_ends() {
    let mut sim = Sim::new(policy());
    sim.mutes.insert("1@c.us".into(), T0 + 4 * H);
    let c = [customer("1@c.us", 1, T0)];
    let e = sim.cycle(&c, T0 + 3 * H);
    assert!(e.events.is_empty());
    assert_eq!((e.waiting, e.breached), (1, 0));
    assert_eq!(sim.episodes["1@c.us"].started_at, T0, "still tracked");
    let e = sim.cycle(&c, T0 + 4 * H);
    assert_eq!(kinds(&e), vec![("1@c.us".into(), fired(0, 2 * H))]);
}

#[test]
fn nudge_unread_moves_an_episode_to_its_next_tier_at_once_and_only_once() {
    let mut p = policy();
    p.sla.nudge_unread = 5;
    p.tiers = vec![tier(2 * H, &["oncall"]), tier(6 * H, &["leads"])];
    let mut sim = Sim::new(p);
    assert!(
        sim.cycle(&[customer("1@c.us", 4, T0)], T0 + 60)
            .events
            .is_empty()
    );
    let e = sim.cycle(&[customer("1@c.us", 5, T0)], T0 + 120);
    assert_eq!(kinds(&e), vec![("1@c.us".into(), fired(0, 2 * H))]);
    assert!(sim.episodes["1@c.us"].nudged);
    assert!(
        sim.cycle(&[customer("1@c.us", 9, T0)], T0 + 180)
            .events
            .is_empty()
    );
    let e = sim.cycle(&[customer("1@c.us", 9, T0)], T0 + 6 * H);
    assert_eq!(kinds(&e), vec![("1@c.us".into(), fired(1, 6 * H))]);
    // Crossing a tier and reaching the count in one cycle moves one tier beyond.
    let mut sim = Sim::new(sim.policy.clone());
    let e = sim.cycle(&[customer("2@c.us", 5, T0)], T0 + 2 * H);
    assert_eq!(
        kinds(&e),
        vec![
            ("2@c.us".into(), fired(0, 2 * H)),
            ("2@c.us".into(), fired(1, 6 * H))
        ]
    );
    // With every tier fired a nudge has nowhere to go, and is not spent.
    let mut p = policy();
    p.sla.nudge_unread = 2;
    let mut sim = Sim::new(p);
    sim.cycle(&[customer("3@c.us", 1, T0)], T0 + 2 * H);
    assert!(
        sim.cycle(&[customer("3@c.us", 3, T0)], T0 + 2 * H + 1)
            .events
            .is_empty()
    );
    assert!(!sim.episodes["3@c.us"].nudged);
}

#[test]
fn no_resolved_notice_without_a_firing_or_with_send_resolved_off() {
    let mut sim = Sim::new(policy());
    sim.cycle(&[customer("1@c.us", 1, T0)], T0);
    let e = sim.cycle(&[customer("1@c.us", 0, T0)], T0 + H);
    assert!(e.events.is_empty());
    assert_eq!(e.closed.len(), 1);

    let mut p = policy();
    p.sla.send_resolved = false;
    let mut sim = Sim::new(p);
    sim.cycle(&[customer("1@c.us", 1, T0)], T0 + 3 * H);
    let e = sim.cycle(&[customer("1@c.us", 0, T0)], T0 + 4 * H);
    assert!(e.events.is_empty());
    assert_eq!(e.closed.len(), 1, "still recorded for reports");
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
fn previews_are_truncated_or_omitted_and_names_and_previews_are_cleaned() {
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
    p.sla.include_preview = false;
    let mut sim = Sim::new(p);
    sim.cycle(std::slice::from_ref(&c), T0);
    assert_eq!(
        sim.episodes["1@c.us"].last_message.as_ref().unwrap().body,
        None
    );

    let mut sim = Sim::new(policy());
    let mut spoof = customer("2@c.us", 1, T0);
    spoof.name = Some("Amina\u{202E}su.c@1\n(VIP)".into());
    spoof.last_message.as_mut().unwrap().body = Some("hi\u{200B} there".into());
    sim.cycle(std::slice::from_ref(&spoof), T0);
    let ep = &sim.episodes["2@c.us"];
    assert_eq!(ep.name.as_deref(), Some("Aminasu.c@1 (VIP)"));
    assert_eq!(
        ep.last_message.as_ref().unwrap().body.as_deref(),
        Some("hi there")
    );
    let e = sim.cycle(&[spoof], T0 + 60);
    assert!(e.upserts.is_empty(), "cleaning is not a change");
}

fn office(tz: &str) -> BusinessHours {
    let mut days: [Vec<_>; 7] = Default::default();
    for d in days.iter_mut().take(5) {
        *d = parse_day("09:00-18:00").unwrap();
    }
    BusinessHours::new(tz.parse().unwrap(), days, Default::default())
}

#[test]
fn business_hours_delay_escalation_to_the_next_open_day() {
    let mut p = policy();
    p.sla.business_hours = Some(office("UTC"));
    // 2025-12-01 is a Monday; 17:30 UTC, due Tuesday 10:30.
    let mon_1730 = 1_764_610_200;
    let mut sim = Sim::new(p);
    let c = [customer("1@c.us", 1, mon_1730)];
    assert!(
        sim.cycle(&c, mon_1730 + 3 * H).events.is_empty(),
        "20:30: only 30m of open time"
    );
    let tue_1029 = mon_1730 + 17 * H - 60;
    assert!(sim.cycle(&c, tue_1029).events.is_empty());
    let e = sim.cycle(&c, tue_1029 + 60);
    assert_eq!(kinds(&e), vec![("1@c.us".into(), fired(0, 2 * H))]);
    assert_eq!((e.events[0].age, e.events[0].waited), (2 * H, 17 * H));
    let e = sim.cycle(&[customer("1@c.us", 0, mon_1730)], tue_1029 + 2 * H);
    assert_eq!(e.closed[0].age, 4 * H - 60, "business age at the end");
}

#[test]
fn two_thousand_episodes_since_1970_cost_no_walk_over_days() {
    // Every tier fired and no repeat: the age is not needed, so not computed. The cycle
    // must also be correct when it is computed (first cycle fires everything).
    let mut p = policy();
    p.sla.business_hours = Some(office("Africa/Cairo"));
    let mut sim = Sim::new(p);
    let chats: Vec<Chat> = (0..2000)
        .map(|i| customer(&format!("c{i}@c.us"), 1, 86_400 + i))
        .collect();
    let e = sim.cycle(&chats, T0);
    assert_eq!(e.events.len(), 2000);
    let e = sim.cycle(&chats, T0 + 60);
    assert!(e.events.is_empty() && e.upserts.is_empty());
    assert_eq!(e.breached, 2000);
}

/// The names reports and the store keep for how a wait ended (docs/spec.md section 11).
#[test]
fn end_reasons_have_their_documented_names() {
    let names: Vec<&str> = [
        EndReason::Read,
        EndReason::Reply,
        EndReason::Absent,
        EndReason::Unwatched,
    ]
    .into_iter()
    .map(EndReason::as_str)
    .collect();
    assert_eq!(names, ["read", "reply", "absent", "unwatched"]);
}

/// A chat the cycle did not even read (unchanged, nothing due before `quiet_until`) is
/// still waiting, and still breached if it was: `/metrics` and `STATUS=` count it, once
/// even when paging showed it twice.
#[test]
fn chats_the_cycle_did_not_read_are_still_counted() {
    let mut sim = Sim::new(policy());
    let mut breached = customer("1@c.us", 1, T0);
    breached.quiet = true;
    breached.breached = true;
    let mut calm = customer("2@c.us", 1, T0 + H);
    calm.quiet = true;
    let e = sim.cycle_with(&[breached.clone(), calm, breached], false, T0 + 3 * H);
    assert_eq!((e.waiting, e.breached), (2, 1));
    assert!(e.events.is_empty() && e.upserts.is_empty() && e.closed.is_empty());
}

/// `quiet_until` by a worked example: the next unfired tier, the next repeat, whichever
/// comes first; 0 when the episode must be looked at now; never when nothing can fall due.
#[test]
fn quiet_until_is_the_next_thing_that_can_fall_due() {
    let mut p = policy();
    p.tiers = vec![tier(2 * H, &["oncall"]), tier(6 * H, &["leads"])];
    let mut ep = Episode {
        jid: "1@c.us".into(),
        name: None,
        started_at: T0,
        unread: Some(1),
        last_message: None,
        fired: Vec::new(),
        notified: Vec::new(),
        last_fired_at: None,
        nudged: false,
        missing: 0,
        fingerprint: 0,
        quiet_until: 0,
        legacy_fired: None,
        history_pending: false,
        ack: None,
    };
    let q = |ep: &Episode, p: &Policy| {
        let chat = p.for_chat("1@c.us", None);
        chat.map_or(-2, |c| quiet_until(ep, &c, p))
    };
    assert_eq!(q(&ep, &p), T0 + 2 * H, "the first tier");
    ep.fired = vec![2 * H as u64];
    ep.last_fired_at = Some(T0 + 2 * H);
    assert_eq!(q(&ep, &p), T0 + 6 * H, "the next unfired tier");
    p.sla.repeat_after = Duration::from_secs(H as u64);
    assert_eq!(q(&ep, &p), T0 + 3 * H, "a repeat comes first");
    ep.fired.push(6 * H as u64);
    ep.last_fired_at = Some(T0 + 6 * H);
    assert_eq!(q(&ep, &p), T0 + 7 * H, "only repeats are left");
    p.sla.repeat_after = Duration::ZERO;
    assert_eq!(q(&ep, &p), i64::MAX, "every tier fired, no repeat: never");
    // Must be looked at now: missing from the last overview, or a nudge is due.
    ep.fired = vec![2 * H as u64];
    ep.missing = 1;
    assert_eq!(q(&ep, &p), 0);
    ep.missing = 0;
    p.sla.nudge_unread = 3;
    ep.unread = Some(3);
    assert_eq!(q(&ep, &p), 0, "a nudge is due");
    ep.nudged = true;
    assert_eq!(q(&ep, &p), T0 + 6 * H, "the nudge was taken");
    ep.nudged = false;
    ep.unread = Some(2);
    assert_eq!(q(&ep, &p), T0 + 6 * H, "below the nudge");
    ep.fired = vec![2 * H as u64, 6 * H as u64];
    ep.unread = Some(9);
    assert_eq!(q(&ep, &p), i64::MAX, "no tier left to nudge to");
}

/// A chat byte for byte as its episode last saw it (`same`) is judged from the episode
/// alone: counted while nothing is due, escalated when a tier falls due, silent while
/// muted, and dropped without a notice once a rule ignores it.
#[test]
fn an_unchanged_chat_is_judged_from_its_episode() {
    let mut sim = Sim::new(policy());
    sim.cycle(&[customer("1@c.us", 1, T0)], T0);
    let mut same = customer("1@c.us", 1, T0);
    same.same = true;
    let e = sim.cycle(std::slice::from_ref(&same), T0 + H);
    assert_eq!((e.waiting, e.breached), (1, 0));
    assert!(e.events.is_empty() && e.upserts.is_empty());
    sim.mutes.insert("1@c.us".into(), T0 + 2 * H + 120);
    let e = sim.cycle(std::slice::from_ref(&same), T0 + 2 * H + 60);
    assert!(e.events.is_empty(), "muted");
    assert_eq!((e.waiting, e.breached), (1, 0));
    // A mute ends at its `until`: at that instant the chat is escalated.
    let e = sim.cycle(std::slice::from_ref(&same), T0 + 2 * H + 120);
    assert_eq!(kinds(&e), vec![("1@c.us".into(), fired(0, 2 * H))]);
    assert_eq!((e.waiting, e.breached, e.upserts.len()), (1, 1, 1));
    assert_eq!(
        e.upserts[0].quiet_until,
        i64::MAX,
        "nothing left to fall due"
    );
    let e = sim.cycle(std::slice::from_ref(&same), T0 + 5 * H);
    assert!(e.events.is_empty() && e.upserts.is_empty());
    assert_eq!((e.waiting, e.breached), (1, 1));
    sim.policy.sla.ignore = vec![crate::policy::Glob::new("1@c.us")];
    let e = sim.cycle(std::slice::from_ref(&same), T0 + 6 * H);
    assert_eq!(
        kinds(&e),
        vec![("1@c.us".into(), resolved_by(0, EndReason::Unwatched))],
        "ignored now: who was told hears it is no longer watched"
    );
    assert_eq!(e.closed.len(), 1);
    assert_eq!(e.closed[0].reason, EndReason::Unwatched);
}

/// A new last message is a new id *or* a new time: either one, with a lower unread count,
/// means someone read the chat and the customer wrote again.
#[test]
fn a_new_message_is_a_new_id_or_a_new_time() {
    for (id, ts, splits) in [
        ("M2", T0, true),
        ("M1", T0 + 60, true),
        ("M2", T0 + 60, true),
        ("M1", T0, false),
    ] {
        let mut sim = Sim::new(policy());
        sim.cycle(&[customer("1@c.us", 3, T0)], T0);
        let next = Chat {
            last_message: Some(msg(id, Some(ts), Some(false), "hello")),
            ..customer("1@c.us", 1, ts)
        };
        sim.cycle(&[next], T0 + 120);
        let read = sim.history.iter().any(|c| c.reason == EndReason::Read);
        assert_eq!(read, splits, "{id} at {ts}");
        assert!(sim.episodes.contains_key("1@c.us"), "still waiting");
    }
}

/// The same bytes (same fingerprint) judged by a changed policy: turning previews off
/// must drop the stored preview even though the chat itself did not change.
#[test]
fn an_unchanged_chat_still_follows_a_change_of_preview_policy() {
    let mut sim = Sim::new(policy());
    let chat = Chat {
        fingerprint: 42,
        ..customer("1@c.us", 1, T0)
    };
    sim.cycle(std::slice::from_ref(&chat), T0);
    let stored = |sim: &Sim| {
        sim.episodes["1@c.us"]
            .last_message
            .as_ref()
            .and_then(|m| m.body.clone())
    };
    assert_eq!(stored(&sim), Some("hello".into()));
    let e = sim.cycle(std::slice::from_ref(&chat), T0 + 60);
    assert!(e.upserts.is_empty(), "nothing changed");
    sim.policy.sla.include_preview = false;
    let e = sim.cycle(std::slice::from_ref(&chat), T0 + 120);
    assert_eq!(e.upserts.len(), 1, "the preview is dropped from the store");
    assert_eq!(stored(&sim), None);
}

/// Section 2, the first unanswered message: the earliest customer message after your last
/// real reply; automatic replies are not replies; in a group any participant counts;
/// messages without a timestamp cannot be placed.
#[test]
fn the_first_unanswered_message_is_the_earliest_after_the_last_real_reply() {
    let mut p = policy();
    p.sla.auto_replies = vec![Pattern::parse("Thanks for contacting*").unwrap()];
    let now = T0;
    let m = |ts: i64, me: bool, body: &str| msg("X", Some(now + ts), Some(me), body);
    let cases: Vec<(&str, Vec<LastMessage>, Option<i64>)> = vec![
        (
            "three customer messages after a reply",
            vec![
                m(-600, false, "hello??"),
                m(-2 * H - 1200, false, "anyone?"),
                m(-3 * H, false, "late order"),
                m(-4 * H, true, "sent today"),
                m(-5 * H, false, "answered already"),
            ],
            Some(now - 3 * H),
        ),
        (
            "an automatic reply does not end the wait",
            vec![
                m(-600, false, "hello??"),
                m(-3 * H, true, "Thanks for contacting Acme!"),
                m(-4 * H, false, "first"),
                m(-5 * H, true, "a real reply"),
            ],
            Some(now - 4 * H),
        ),
        (
            "oldest first, as some engines answer, reads the same",
            vec![
                m(-5 * H, true, "a real reply"),
                m(-4 * H, false, "first"),
                m(-600, false, "hello??"),
            ],
            Some(now - 4 * H),
        ),
        (
            "a window of customer messages only: its earliest",
            vec![m(-60, false, "b"), m(-H, false, "a")],
            Some(now - H),
        ),
        (
            "group participants count alike (fromMe absent is not me)",
            vec![
                msg("P2", Some(now - 60), None, "+1"),
                msg("P1", Some(now - 2 * H), Some(false), "is anyone there"),
            ],
            Some(now - 2 * H),
        ),
        (
            "the last message is a real reply: nothing unanswered",
            vec![m(-60, true, "done"), m(-H, false, "help")],
            None,
        ),
        (
            "no timestamps: nothing to place",
            vec![msg("A", None, Some(false), "x")],
            None,
        ),
        ("empty", vec![], None),
    ];
    for (what, messages, want) in cases {
        assert_eq!(first_unanswered(&messages, &p, now), want, "{what}");
    }
}

/// Moving a start back fires what is now due, never a tier that fired, and never moves a
/// start later.
#[test]
fn an_earlier_start_fires_what_is_due_once_and_never_moves_later() {
    let p = Policy {
        tiers: vec![tier(2 * H, &["oncall"]), tier(6 * H, &["leads"])],
        ..Policy::default()
    };
    let mut sim = Sim::new(p.clone());
    let now = T0;
    let eval = sim.cycle(&[customer("a@c.us", 3, now - 600)], now);
    assert!(eval.events.is_empty());
    let mut out = Evaluation::default();
    let mut ep = sim.episodes["a@c.us"].clone();
    assert!(
        !start_earlier(&mut out, &mut ep, now - 300, &p, false, now),
        "later: no"
    );
    assert_eq!(ep.started_at, now - 600);
    assert!(start_earlier(
        &mut out,
        &mut ep,
        now - 3 * H,
        &p,
        false,
        now
    ));
    assert_eq!(ep.started_at, now - 3 * H);
    assert_eq!(kinds(&out), vec![("a@c.us".to_string(), fired(0, 2 * H))]);
    assert_eq!(out.events[0].episode.started_at, now - 3 * H);
    assert_eq!(out.events[0].waited, 3 * H);
    assert_eq!(out.breached, 1);
    // Earlier again: the 2h tier fired already; only what is newly due fires.
    let mut out = Evaluation::default();
    assert!(start_earlier(
        &mut out,
        &mut ep,
        now - 7 * H,
        &p,
        false,
        now
    ));
    assert_eq!(kinds(&out), vec![("a@c.us".to_string(), fired(1, 6 * H))]);
    assert_eq!(out.breached, 0, "it was breached already");
    // Muted: the start moves, nothing fires.
    let mut ep = sim.episodes["a@c.us"].clone();
    let mut out = Evaluation::default();
    assert!(start_earlier(&mut out, &mut ep, now - 3 * H, &p, true, now));
    assert!(out.events.is_empty());
}

/// An episode whose history is still to be read is never quiet: a later cycle must see it.
#[test]
fn an_episode_owing_its_history_is_never_quiet() {
    let p = policy();
    let mut sim = Sim::new(p.clone());
    sim.cycle(&[customer("a@c.us", 3, T0 - 600)], T0);
    let mut ep = sim.episodes["a@c.us"].clone();
    let cp = p.for_chat("a@c.us", None).unwrap();
    assert!(quiet_until(&ep, &cp, &p) > T0);
    ep.history_pending = true;
    assert_eq!(quiet_until(&ep, &cp, &p), 0);
}

/// Section 2: an acknowledged episode fires no tier while the acknowledgement holds, even
/// when its history moves its start back and makes a later tier due at once. (Found by
/// review: `start_earlier` looked at the mute only; this failed before.)
#[test]
fn an_earlier_start_fires_nothing_while_an_acknowledgement_holds() {
    let p = Policy {
        tiers: vec![tier(2 * H, &["oncall"]), tier(6 * H, &["leads"])],
        ..Policy::default()
    };
    let mut sim = Sim::new(p.clone());
    let now = T0;
    sim.cycle(&[customer("a@c.us", 3, now - 2 * H - 60)], now);
    let mut ep = sim.episodes["a@c.us"].clone();
    assert_eq!(ep.fired, vec![(2 * H) as u64]);
    ep.ack = Some(Ack {
        by: "Amina".into(),
        at: now + 60,
        until: now + 60 + H,
        told: true,
    });
    let mut out = Evaluation::default();
    assert!(start_earlier(
        &mut out,
        &mut ep,
        now - 7 * H,
        &p,
        false,
        now + 120
    ));
    assert!(
        out.events.is_empty(),
        "the 6h tier paged while acknowledged: {:?}",
        kinds(&out)
    );
    // Once the acknowledgement has run out, the earlier start's due tier fires.
    let mut out = Evaluation::default();
    let later = now + 2 * H;
    ep.started_at = now - 2 * H - 60;
    assert!(start_earlier(
        &mut out,
        &mut ep,
        now - 7 * H,
        &p,
        false,
        later
    ));
    assert_eq!(out.events.len(), 1, "{:?}", kinds(&out));
}
