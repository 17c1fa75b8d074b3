//! The reference model: docs/spec.md sections 2 and 6 written plainly, from the text and
//! nothing else, over the history the simulator recorded (what each committed poll saw,
//! with the config in force, the mutes and the acknowledgements). It says which chats were waiting when, when
//! each episode started, which tiers fell due when (and to whom), and which episodes
//! ended and why. It shares no code with the engine but the config's own vocabulary
//! (`Policy::for_chat` resolves rules and globs, `ChatPolicy::age` counts business time):
//! the invariants compare what receivers got against what this says.

use inbox_sla::config::Config;
use inbox_sla::policy::StopOn;
use std::collections::{BTreeMap, BTreeSet, HashMap};

/// One chat as a poll served it.
#[derive(Debug, Clone)]
pub struct Seen {
    pub id: String,
    pub name: String,
    pub unread: i64,
    /// (id, timestamp, from me, body) of the last message.
    pub last: Option<(String, i64, bool, String)>,
}

/// One poll whose cycle committed, in commit order.
#[derive(Debug, Clone)]
pub struct Poll {
    pub instance: String,
    /// The `now` the engine judged with (the polling node's clock).
    pub now: i64,
    /// Every chat element served, duplicates included, in order.
    pub chats: Vec<Seen>,
    /// The overview was read whole (no element that was not a chat).
    pub read_whole: bool,
    /// The size the engine counted (elements, or distinct chats when paging).
    pub total: usize,
    /// Which config judged it.
    pub config: usize,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Ended {
    Read,
    Reply,
    Absent,
    Unwatched,
}

/// A tier the model says fell due (and fired) for an episode.
#[derive(Debug, Clone)]
pub struct Firing {
    pub instance: String,
    pub jid: String,
    pub start: i64,
    pub after: u64,
    pub channels: Vec<String>,
    pub at: i64,
    /// Polls are numbered; a per-chat channel hears only the highest tier of one poll.
    pub poll: usize,
}

/// An episode that ended after it fired, and who must hear so.
#[derive(Debug, Clone)]
pub struct Resolve {
    pub instance: String,
    pub jid: String,
    pub start: i64,
    pub ended: Ended,
    pub channels: Vec<String>,
    /// When it ended.
    pub at: i64,
}

/// An acknowledgement the channels that were paged must hear (section 2, acknowledged).
#[derive(Debug, Clone)]
pub struct AckNotice {
    pub instance: String,
    pub jid: String,
    pub start: i64,
    pub channels: Vec<String>,
    /// The poll that tells it.
    pub at: i64,
}

#[derive(Debug, Clone)]
struct Episode {
    /// Acknowledged: no tier before `until`; `told` once the paged channels heard it.
    ack: Option<Ack>,
    start: i64,
    fired: BTreeSet<u64>,
    /// Channels told, in order first told.
    told: Vec<String>,
    unread: i64,
    last: Option<(String, i64)>,
    missing: u32,
    nudged: bool,
}

#[derive(Debug, Clone, Copy)]
struct Ack {
    until: i64,
    told: bool,
}

#[derive(Debug, Default)]
struct Instance {
    episodes: BTreeMap<String, Episode>,
    /// Size of the last complete overview.
    reference: Option<usize>,
    short_since: Option<i64>,
    /// Reply mode's mark and the reply-mode policy it was taken under.
    mark: Option<(i64, Option<i64>)>,
}

/// What the model concludes from a history.
#[derive(Debug, Default)]
pub struct Model {
    instances: HashMap<String, Instance>,
    pub firings: Vec<Firing>,
    pub resolves: Vec<Resolve>,
    pub acks: Vec<AckNotice>,
    /// Every acknowledgement taken: (instance, jid, episode start).
    pub acked: Vec<(String, String, i64)>,
    /// Every episode: (instance, jid, start) → (opened at, ended at).
    pub episodes: Vec<(String, String, i64, i64, Option<i64>)>,
    polls: usize,
}

/// Whether the chat waits (section 2, "waiting" and "read is not answered").
fn waiting(c: &Seen, stop_on: StopOn, open: bool, auto: bool, mark: Option<i64>) -> bool {
    let Some((_, ts, from_me, _)) = &c.last else {
        return c.unread > 0 || c.unread == -1;
    };
    let unread = c.unread > 0 || c.unread == -1;
    match stop_on {
        StopOn::Read => unread,
        StopOn::Reply => {
            if *from_me && !auto {
                false
            } else if unread || open {
                true
            } else {
                mark.is_some_and(|m| *ts > m)
            }
        }
    }
}

/// Tells an untold acknowledgement to the channels the episode paged (once).
fn announce(instance: &str, jid: &str, e: &mut Episode, now: i64, acks: &mut Vec<AckNotice>) {
    if let Some(a) = e.ack.as_mut().filter(|a| !a.told) {
        a.told = true;
        if !e.told.is_empty() {
            acks.push(AckNotice {
                instance: instance.to_string(),
                jid: jid.to_string(),
                start: e.start,
                channels: e.told.clone(),
                at: now,
            });
        }
    }
}

impl Model {
    /// An acknowledgement the store took at `at` (by the same person each time): it holds
    /// the open episode's tiers until `until`. Again while it holds, it only extends.
    pub fn acknowledge(&mut self, instance: &str, jid: &str, at: i64, until: i64) {
        let Some(e) = self
            .instances
            .get_mut(instance)
            .and_then(|i| i.episodes.get_mut(jid))
        else {
            return;
        };
        e.ack = Some(match e.ack {
            Some(a) if a.until > at => Ack {
                until: a.until.max(until),
                told: a.told,
            },
            _ => Ack { until, told: false },
        });
        self.acked
            .push((instance.to_string(), jid.to_string(), e.start));
    }

    /// Judges one committed poll. `muted(jid, now)` says whether a mute holds.
    pub fn poll(&mut self, p: &Poll, config: &Config, muted: impl Fn(&str, i64) -> bool) {
        self.polls += 1;
        let policy = &config.policy;
        let sla = &policy.sla;
        let now = p.now;
        let inst = self.instances.entry(p.instance.clone()).or_default();
        let open = inst.episodes.len();
        let n = p.total;
        // Empty while episodes are open, or under half the last complete overview: a
        // resync, unless short answers have gone on for a day (then the inbox shrank).
        let empty = n == 0 && open > 0;
        let small = inst.reference.is_some_and(|r| 2 * n < r);
        let shrank = inst.short_since.is_some_and(|s| now - s >= 24 * 3600);
        let resync = empty || (small && !shrank);
        let complete = p.read_whole && !resync;
        let sig = policy.reply_signature();
        let mark = inst
            .mark
            .and_then(|(m, s)| (s == sig && sig.is_some()).then_some(m));
        let mut seen: BTreeSet<&str> = BTreeSet::new();
        let mut firings = Vec::new();
        let mut resolves = Vec::new();
        let mut opened = Vec::new();
        let mut ended = Vec::new();
        let mut acks = Vec::new();
        for c in &p.chats {
            if !seen.insert(c.id.as_str()) {
                continue; // a chat twice in one overview counts once
            }
            let Some(cp) = policy.for_chat(&c.id, Some(&c.name)) else {
                if let Some(ep) = inst.episodes.remove(&c.id) {
                    close(
                        &p.instance,
                        &c.id,
                        ep,
                        Ended::Unwatched,
                        now,
                        config,
                        &mut resolves,
                        &mut ended,
                    );
                }
                continue;
            };
            let auto = c
                .last
                .as_ref()
                .is_some_and(|(_, _, me, body)| *me && policy.is_auto_reply(Some(body)));
            let is_open = inst.episodes.contains_key(&c.id);
            let waits = waiting(c, cp.stop_on, is_open, auto, mark);
            let mut ep = inst.episodes.remove(&c.id);
            if let Some(e) = ep.take() {
                if !waits {
                    let replied = c.last.as_ref().is_some_and(|(_, _, me, _)| *me) && !auto;
                    let why = if replied { Ended::Reply } else { Ended::Read };
                    close(
                        &p.instance,
                        &c.id,
                        e,
                        why,
                        now,
                        config,
                        &mut resolves,
                        &mut ended,
                    );
                    continue;
                }
                // Read between two polls: the unread count went down while a new message
                // came last. The old wait ended at the new message; a new one starts there.
                let new_last = c
                    .last
                    .as_ref()
                    .map(|(id, ts, _, _)| (id.clone(), (*ts).min(now)));
                let read_between = cp.stop_on == StopOn::Read
                    && e.unread > 0
                    && c.unread > 0
                    && c.unread < e.unread
                    && new_last.is_some()
                    && new_last != e.last;
                if read_between {
                    let at = new_last.as_ref().map_or(now, |l| l.1).max(e.start);
                    close(
                        &p.instance,
                        &c.id,
                        e,
                        Ended::Read,
                        at,
                        config,
                        &mut resolves,
                        &mut ended,
                    );
                } else {
                    ep = Some(e);
                }
            }
            let mut e = match ep {
                Some(e) => e,
                None if waits => {
                    let start = c.last.as_ref().map_or(now, |l| l.1.min(now));
                    opened.push((c.id.clone(), start));
                    Episode {
                        ack: None,
                        start,
                        fired: BTreeSet::new(),
                        told: Vec::new(),
                        unread: c.unread,
                        last: None,
                        missing: 0,
                        nudged: false,
                    }
                }
                None => continue,
            };
            e.unread = c.unread;
            e.last = c
                .last
                .as_ref()
                .map(|(id, ts, _, _)| (id.clone(), (*ts).min(now)));
            e.missing = 0;
            announce(&p.instance, &c.id, &mut e, now, &mut acks);
            let acked = e.ack.is_some_and(|a| a.until > now);
            if !muted(&c.id, now) && !acked {
                let age = cp.age(e.start, now);
                let mut due: Vec<usize> = (0..cp.tiers.len())
                    .filter(|&i| !e.fired.contains(&cp.tiers[i].after.as_secs()))
                    .filter(|&i| age >= cp.tiers[i].after.as_secs() as i64)
                    .collect();
                let nudge = sla.nudge_unread as i64;
                if nudge > 0
                    && !e.nudged
                    && e.unread >= nudge
                    && let Some(next) = (0..cp.tiers.len()).find(|i| {
                        !e.fired.contains(&cp.tiers[*i].after.as_secs()) && !due.contains(i)
                    })
                {
                    due.push(next);
                    e.nudged = true;
                }
                for i in due {
                    let t = &cp.tiers[i];
                    e.fired.insert(t.after.as_secs());
                    for ch in &t.notify {
                        if !e.told.contains(ch) {
                            e.told.push(ch.clone());
                        }
                    }
                    firings.push(Firing {
                        instance: p.instance.clone(),
                        jid: c.id.clone(),
                        start: e.start,
                        after: t.after.as_secs(),
                        channels: t.notify.clone(),
                        at: now,
                        poll: self.polls,
                    });
                }
            }
            inst.episodes.insert(c.id.clone(), e);
        }
        if complete {
            let missing: Vec<String> = inst
                .episodes
                .keys()
                .filter(|j| !seen.contains(j.as_str()))
                .cloned()
                .collect();
            for jid in missing {
                let Some(mut e) = inst.episodes.remove(&jid) else {
                    continue;
                };
                if policy.for_chat(&jid, None).is_none() {
                    close(
                        &p.instance,
                        &jid,
                        e,
                        Ended::Unwatched,
                        now,
                        config,
                        &mut resolves,
                        &mut ended,
                    );
                } else if e.missing + 1 >= sla.absent_polls {
                    close(
                        &p.instance,
                        &jid,
                        e,
                        Ended::Absent,
                        now,
                        config,
                        &mut resolves,
                        &mut ended,
                    );
                } else {
                    announce(&p.instance, &jid, &mut e, now, &mut acks);
                    e.missing += 1;
                    inst.episodes.insert(jid, e);
                }
            }
            if n > 0 {
                inst.reference = Some(n);
            }
            inst.short_since = None;
        } else if p.read_whole && resync && n > 0 {
            inst.short_since.get_or_insert(now);
        }
        if !complete {
            // Not in an incomplete overview: still open, and its acknowledgement is told
            // all the same (it does not depend on the chat).
            for (jid, e) in inst.episodes.iter_mut() {
                if !seen.contains(jid.as_str()) && policy.for_chat(jid, None).is_some() {
                    announce(&p.instance, jid, e, now, &mut acks);
                }
            }
        }
        // Reply mode's mark moves with every poll that is not a resync.
        match sig {
            None => inst.mark = None,
            Some(s) if !resync => inst.mark = Some((now, Some(s))),
            Some(_) => {}
        }
        for (jid, start) in opened {
            self.episodes
                .push((p.instance.clone(), jid, start, now, None));
        }
        self.close_episodes(&p.instance, ended);
        // Channels removed from the config hear nothing more.
        let known = |c: &String| config.channel(c).is_some();
        for mut f in firings {
            f.channels.retain(known);
            self.firings.push(f);
        }
        for mut r in resolves {
            r.channels.retain(known);
            self.resolves.push(r);
        }
        for mut a in acks {
            a.channels.retain(known);
            self.acks.push(a);
        }
    }

    /// An instance removed from the config: every open episode ends, unwatched, and what
    /// it remembered goes (added back later, it starts afresh).
    pub fn remove_instance(&mut self, instance: &str, now: i64, config: &Config) {
        let Some(inst) = self.instances.remove(instance) else {
            return;
        };
        let mut resolves = Vec::new();
        let mut ended = Vec::new();
        for (jid, e) in inst.episodes {
            close(
                instance,
                &jid,
                e,
                Ended::Unwatched,
                now,
                config,
                &mut resolves,
                &mut ended,
            );
        }
        self.close_episodes(instance, ended);
        for mut r in resolves {
            r.channels.retain(|c| config.channel(c).is_some());
            self.resolves.push(r);
        }
    }

    fn close_episodes(&mut self, instance: &str, ended: Vec<(String, i64, i64)>) {
        for (jid, start, at) in ended {
            if let Some(e) = self
                .episodes
                .iter_mut()
                .rev()
                .find(|e| e.0 == instance && e.1 == jid && e.2 == start && e.4.is_none())
            {
                e.4 = Some(at);
            }
        }
    }

    /// Open episodes now, with the channels they fired to: (instance, jid, start, told).
    pub fn open(&self) -> Vec<(String, String, i64, Vec<String>)> {
        let mut out = Vec::new();
        for (name, inst) in &self.instances {
            for (jid, e) in &inst.episodes {
                if !e.fired.is_empty() {
                    out.push((name.clone(), jid.clone(), e.start, e.told.clone()));
                }
            }
        }
        out
    }

    /// Whether the episode (instance, jid, start) was open at `at` and still is, or
    /// ended after `at`.
    pub fn waiting_at(&self, instance: &str, jid: &str, start: i64, at: i64) -> bool {
        self.episodes
            .iter()
            .filter(|e| e.0 == instance && e.1 == jid && e.2 == start)
            .any(|e| e.3 <= at && e.4.is_none_or(|end| end > at))
    }
}

#[allow(clippy::too_many_arguments)]
fn close(
    instance: &str,
    jid: &str,
    e: Episode,
    why: Ended,
    at: i64,
    config: &Config,
    resolves: &mut Vec<Resolve>,
    ended: &mut Vec<(String, i64, i64)>,
) {
    ended.push((jid.to_string(), e.start, at));
    if !e.fired.is_empty() && config.policy.sla.send_resolved {
        resolves.push(Resolve {
            instance: instance.to_string(),
            jid: jid.to_string(),
            start: e.start,
            ended: why,
            channels: e.told,
            at,
        });
    }
}
