//! The SLA engine: a pure function of (episodes, overview, mutes, policy, now).
//!
//! [`evaluate`] decides which chats are waiting, when their episodes started, which tiers
//! are due, and which episodes ended and why. It returns the episodes that changed (and
//! only those, so an unchanged cycle writes nothing) and the events the channels must hear.
//! It must not do I/O or read a clock: everything it knows comes in as arguments, which
//! is what makes every rule of docs/spec.md section 2 testable in microseconds.
//!
//! The world it judges is imperfect, and the rules say so: one missing poll proves nothing
//! (absence is confirmed over `sla.absent_polls` complete overviews, and an empty or
//! half-sized answer is not complete); your automatic messages answer nobody; a chat read
//! between two polls ends one wait and starts another; tiers are known by their `after`,
//! so a reload that inserts, removes or reorders tiers neither re-fires nor skips one.

use crate::overview::{self, Chat};
use crate::policy::{ChatPolicy, Policy, StopOn};
use crate::untrusted;
use std::borrow::Cow;
use std::collections::{HashMap, HashSet};

/// Preview text is cut to this many graphemes.
pub const PREVIEW_CHARS: usize = 200;
/// Names are kept to this many graphemes (channels show fewer).
pub const NAME_CHARS: usize = 200;

/// One continuous stretch in which a chat is waiting.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Episode {
    pub jid: String,
    /// Cleaned of hidden characters and line breaks (see `untrusted`).
    pub name: Option<String>,
    /// When the clock started (Unix seconds). Never moved by later customer messages.
    pub started_at: i64,
    pub unread: Option<i64>,
    pub last_message: Option<Preview>,
    /// The `after` (seconds) of every tier that has fired, ascending.
    pub fired: Vec<u64>,
    /// Every channel told about this episode, in the order first told: who hears the
    /// resolved notice, whatever the tiers look like by then.
    pub notified: Vec<String>,
    /// When a tier last fired or repeated, for `repeat_after`.
    pub last_fired_at: Option<i64>,
    /// Whether `nudge_unread` has already moved this episode up a tier.
    pub nudged: bool,
    /// Consecutive complete overviews the chat was missing from.
    pub missing: u32,
    /// The fingerprint of the chat this episode was last built from (`overview::Chat`):
    /// while the overview shows the same bytes, the chat need not even be read.
    pub fingerprint: u64,
    /// While the chat stays as it was, nothing can fall due before this instant (Unix
    /// seconds; see [`quiet_until`]). Until then a cycle need not read the episode at all.
    pub quiet_until: i64,
    /// Tiers fired as a count, from a store written before tiers were known by `after`:
    /// read as the chat's first tiers at its next evaluation, then gone.
    pub legacy_fired: Option<u32>,
    /// The chat's history must still be read to find the first unanswered message
    /// (section 2): the read failed or did not fit in `wawp.history_lookups` this cycle.
    /// Such an episode is never quiet, so a later cycle sees it and reads it.
    pub history_pending: bool,
    /// Someone on call said "I'm on it" (section 2, acknowledged): kept in the store beside
    /// the episode, read with it, never written by a cycle except to note it was told.
    pub ack: Option<Ack>,
}

/// An acknowledgement of an open episode.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ack {
    /// Who: the Basic user, the Slack or PagerDuty user, `--by` or the login name.
    pub by: String,
    /// When (Unix seconds).
    pub at: i64,
    /// No tier fires before this instant (the acknowledgement's `sla.ack_for`).
    pub until: i64,
    /// The channels that were paged have been told (or there were none to tell).
    pub told: bool,
}

impl Ack {
    /// Whether the acknowledgement still holds the escalation back at `now`.
    pub fn holds(&self, now: i64) -> bool {
        self.until > now
    }
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
    /// The episode as it stands after this cycle (as it ended, for a resolved notice).
    pub episode: Episode,
    /// Who is told.
    pub channels: Vec<String>,
    /// Business-time age (equal to the wall-clock wait without business hours).
    pub age: i64,
    /// Wall-clock seconds since the episode started (until it ended, when resolved).
    pub waited: i64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventKind {
    /// The tier at position `tier` of the chat's tiers is due. `repeat`: a
    /// re-notification of a tier that already fired.
    Firing {
        tier: usize,
        after_secs: u64,
        repeat: bool,
    },
    /// The episode ended after at least one tier fired; `tier` is its highest. `reason`
    /// tells an answer from a chat that is no longer watched.
    Resolved { tier: usize, reason: EndReason },
    /// Someone acknowledged the episode (its `ack`); `tier` is the highest that fired.
    /// Told once, to the channels that were paged.
    Acknowledged { tier: usize },
}

/// Why an episode ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EndReason {
    /// The chat was read (in reply mode this never ends an episode).
    Read,
    /// Somebody answered: the last message is yours and not automatic.
    Reply,
    /// Missing from `sla.absent_polls` complete overviews.
    Absent,
    /// No longer watched: a rule or `sla.ignore` now excludes the chat, or its instance
    /// was removed from the config. Channels that were told hear that it is no longer
    /// watched (so on-call tools close it), not that it was answered.
    Unwatched,
}

impl EndReason {
    pub fn as_str(self) -> &'static str {
        match self {
            EndReason::Read => "read",
            EndReason::Reply => "reply",
            EndReason::Absent => "absent",
            EndReason::Unwatched => "unwatched",
        }
    }
}

/// An episode that ended this cycle.
#[derive(Debug, Clone, PartialEq)]
pub struct Closed {
    pub episode: Episode,
    pub ended_at: i64,
    /// Business-time age at the end (wall time without business hours).
    pub age: i64,
    pub reason: EndReason,
}

/// Everything one cycle of one instance is judged on.
#[derive(Debug, Clone, Copy)]
pub struct Cycle<'a> {
    pub episodes: &'a HashMap<String, Episode>,
    /// The chats that matter: those with an episode and those that may be waiting (the
    /// parser drops the rest, see `overview::Interest`; more do no harm).
    pub chats: &'a [Chat],
    /// How many chats the overview held in all.
    pub total: usize,
    /// The client read every page and element (no `max_chats` cut, nothing unreadable).
    pub read_whole: bool,
    /// What the instance remembers from earlier polls: the reference size for judging
    /// this overview complete, and reply mode's high-water mark.
    pub memory: &'a Memory,
    /// JIDs and the instant their mute ends.
    pub mutes: &'a HashMap<String, i64>,
    pub policy: &'a Policy,
    pub now: i64,
}

/// What a cycle changes.
#[derive(Debug, Default, PartialEq)]
pub struct Evaluation {
    /// New or changed episodes, to be written (after `closed` is applied: a chat read
    /// between polls is in both).
    pub upserts: Vec<Episode>,
    pub closed: Vec<Closed>,
    pub events: Vec<Event>,
    /// Chats waiting now, and how many of them have fired at least one tier.
    pub waiting: usize,
    pub breached: usize,
    /// Whether this overview counted as complete: only then can absence end an episode.
    pub complete: bool,
    /// How the overview was judged (what the instance's memory learns from it).
    pub judged: Judged,
    /// Acknowledgements told this cycle (or with nobody to tell): the chat, the
    /// acknowledgement's instant and who, so the store marks exactly that one told.
    pub told: Vec<(String, i64, String)>,
}

/// How long overviews that were read whole but judged incomplete must go on before they
/// are believed: the inbox really shrank (most of its chats were deleted or archived).
/// No resync lasts a day; without this, the episodes of chats that are gone would stay
/// open for ever.
pub const ADOPT_SHORT_AFTER: i64 = 24 * 3600;

/// What an instance remembers from one poll to the next (kept in the store): what the
/// engine needs to judge an overview and reply mode's read chats. Nothing here is taken
/// from an overview that was not complete: a bad sample never becomes the reference.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Memory {
    /// How many chats the last complete overview held.
    pub complete_chats: Option<usize>,
    /// Since when every overview read whole was judged incomplete.
    pub short_since: Option<i64>,
    /// Reply mode's high-water mark: the last poll whose overview was complete.
    pub mark: Option<i64>,
    /// The reply-mode policy the mark was taken under ([`Policy::reply_signature`]).
    pub mark_policy: Option<i64>,
}

impl Memory {
    /// Reply mode's mark, if it may be trusted under `policy`: taken under the same
    /// reply-mode policy. After reply mode was off, or a rule put other chats in it, the
    /// mark is as good as none (section 2: a switch starts from the switch, like a first
    /// start), so old read chats do not page.
    pub fn read_since(&self, policy: &Policy) -> Option<i64> {
        let sig = policy.reply_signature()?;
        self.mark.filter(|_| self.mark_policy == Some(sig))
    }

    /// The memory after a successful poll judged `judged`: a complete overview becomes
    /// the reference; a short one read whole starts (or continues) the short stretch; an
    /// empty one or a partial read leaves both. Reply mode's mark moves with every poll
    /// that is not a resync (a partial read still shows the newest chats: an inbox too big
    /// to read whole must keep its mark moving), and stays put through a resync, whose
    /// missing chats are judged against it later. A policy without reply mode drops the
    /// mark, so that switching reply mode on again starts afresh.
    pub fn after(&self, policy: &Policy, judged: Judged, chats: usize, now: i64) -> Memory {
        let mut next = self.clone();
        if judged.complete {
            if chats > 0 {
                next.complete_chats = Some(chats);
            }
            next.short_since = None;
        } else if judged.read_whole && judged.resync && chats > 0 {
            next.short_since = Some(self.short_since.unwrap_or(now));
        }
        match policy.reply_signature() {
            None => (next.mark, next.mark_policy) = (None, None),
            Some(sig) if !judged.resync => (next.mark, next.mark_policy) = (Some(now), Some(sig)),
            Some(_) => {}
        }
        next
    }
}

/// What an overview can prove (section 2, "absence is confirmed").
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Judged {
    /// Every page and element was read (no `max_chats` cut, nothing unreadable).
    pub read_whole: bool,
    /// Empty while episodes are open, or under half the last complete one: an engine
    /// resyncing, not an inbox that changed.
    pub resync: bool,
    /// Read whole and no resync: only then can absence end an episode.
    pub complete: bool,
}

/// Judges an overview of `chats` chats while `open` episodes are open. A short answer
/// (not an empty one) that has gone on for [`ADOPT_SHORT_AFTER`] is believed: the inbox
/// shrank. An empty one never is: an engine that answers `[]` proves nothing.
pub fn judge(read_whole: bool, chats: usize, open: usize, memory: &Memory, now: i64) -> Judged {
    let empty = chats == 0 && open > 0;
    let small = memory.complete_chats.is_some_and(|p| chats * 2 < p);
    let shrank = memory
        .short_since
        .is_some_and(|since| now - since >= ADOPT_SHORT_AFTER);
    let resync = empty || (small && !shrank);
    Judged {
        read_whole,
        resync,
        complete: read_whole && !resync,
    }
}

/// Whether an overview can prove absence: see [`judge`].
pub fn is_complete(read_whole: bool, chats: usize, open: usize, memory: &Memory, now: i64) -> bool {
    judge(read_whole, chats, open, memory, now).complete
}

/// Whether a chat is waiting (section 2). `open`: an episode is running, which matters for
/// reply mode, where reading does not end it. `auto`: the last message is one of your
/// automatic replies. `last_poll`: reply mode's high-water mark.
pub fn is_waiting(
    chat: &Chat,
    stop_on: StopOn,
    open: bool,
    auto: bool,
    last_poll: Option<i64>,
) -> bool {
    let last = chat.last_message.as_ref();
    let from_me = last.and_then(|m| m.from_me);
    let replied = from_me == Some(true) && !auto;
    let customer_or_auto = from_me == Some(false) || (from_me == Some(true) && auto);
    let unread = chat.unread.map(|n| n > 0 || n == -1);
    match stop_on {
        // Waiting is the unread count, whoever sent the last message.
        StopOn::Read => unread.unwrap_or(customer_or_auto),
        StopOn::Reply => {
            if replied {
                false
            } else if unread == Some(true) {
                true
            } else if open {
                last.is_some()
            } else if unread.is_none() {
                customer_or_auto
            } else {
                // Read already: waiting only if the customer wrote since the last poll
                // (an agent opened it within one interval and walked away).
                let ts = last.and_then(|m| m.timestamp);
                customer_or_auto && ts.zip(last_poll).is_some_and(|(t, poll)| t > poll)
            }
        }
    }
}

/// Evaluates one instance's overview against its open episodes.
pub fn evaluate(c: &Cycle) -> Evaluation {
    let policy = c.policy;
    let now = c.now;
    // Quiet chats' episodes were not read (see `Chat::quiet`); they are open all the same.
    let open = c.episodes.len() + c.chats.iter().filter(|chat| chat.quiet).count();
    let judged = judge(c.read_whole, c.total, open, c.memory, now);
    let mut out = Evaluation {
        complete: judged.complete,
        judged,
        ..Evaluation::default()
    };
    let read_since = c.memory.read_since(policy);
    // Chats with an episode, or that started one: the rest need no bookkeeping.
    let mut seen: HashSet<&str> = HashSet::with_capacity(c.episodes.len() + 16);
    for chat in c.chats {
        if chat.quiet {
            // Unchanged, nothing can be due yet: still waiting, as breached as it was.
            if seen.insert(chat.id.as_str()) {
                out.waiting += 1;
                out.breached += usize::from(chat.breached);
            }
            continue;
        }
        let prev = c.episodes.get(&chat.id);
        if chat.same {
            // Byte for byte the chat its episode was built from, judged by the same policy:
            // still waiting, and only time can have made something due.
            if let Some(ep) = prev
                && seen.insert(chat.id.as_str())
            {
                unchanged_chat(&mut out, ep, c, now);
            }
            continue;
        }
        let last = chat.last_message.as_ref();
        let may_wait = overview::may_wait(
            chat.unread,
            last.is_some(),
            last.and_then(|m| m.timestamp),
            read_since,
        );
        if prev.is_none() && !may_wait {
            continue; // most chats: not waiting, no episode, whatever the policy says
        }
        if !seen.insert(chat.id.as_str()) {
            continue; // paging overlap: the first occurrence counts
        }
        let Some(cp) = policy.for_chat(&chat.id, chat.name.as_deref()) else {
            if let Some(ep) = prev {
                close(&mut out, ep, None, policy, EndReason::Unwatched, now);
            }
            continue;
        };
        let prev = prev.map(|ep| adopt_legacy(ep, &cp));
        let last = chat.last_message.as_ref();
        let auto = last.is_some_and(|m| m.from_me == Some(true))
            && policy.is_auto_reply(last.and_then(|m| m.body.as_deref()));
        let waiting = is_waiting(chat, cp.stop_on, prev.is_some(), auto, read_since);
        let prev = match prev {
            None if !waiting => continue,
            Some(ep) if !waiting => {
                let replied = last.is_some_and(|m| m.from_me == Some(true)) && !auto;
                let reason = if replied {
                    EndReason::Reply
                } else {
                    EndReason::Read
                };
                close(&mut out, &ep, Some(&cp), policy, reason, now);
                continue;
            }
            Some(ep) if cp.stop_on == StopOn::Read => match read_between(&ep, chat, now) {
                Some(at) => {
                    let at = at.max(ep.started_at);
                    close(&mut out, &ep, Some(&cp), policy, EndReason::Read, at);
                    None
                }
                None => Some(ep),
            },
            prev => prev,
        };
        // An episode converted from an old store must be written even if nothing else changed.
        let converted = matches!(prev, Some(Cow::Owned(_)));
        let held = c.holds(&chat.id, prev.as_deref(), now);
        if let Some(prev @ Cow::Borrowed(_)) = &prev {
            // The common case on a quiet inbox: nothing new, nothing due. No copy.
            let quiet = held || due(prev, &cp, policy, now).is_nothing();
            if quiet
                && !untold(prev)
                && prev.fingerprint == chat.fingerprint
                && prev.quiet_until == quiet_until(prev, &cp, policy)
                && unchanged(prev, chat, policy, now)
            {
                out.waiting += 1;
                out.breached += usize::from(!prev.fired.is_empty());
                continue;
            }
        }
        let mut ep = match &prev {
            Some(ep) => ep.clone().into_owned(),
            None => Episode {
                jid: chat.id.clone(),
                name: None,
                started_at: last.and_then(|m| m.timestamp).map_or(now, |t| t.min(now)),
                unread: None,
                last_message: None,
                fired: Vec::new(),
                notified: Vec::new(),
                last_fired_at: None,
                nudged: false,
                missing: 0,
                fingerprint: chat.fingerprint,
                quiet_until: 0,
                legacy_fired: None,
                history_pending: false,
                ack: None,
            },
        };
        ep.fingerprint = chat.fingerprint;
        ep.name = chat
            .name
            .as_deref()
            .map(|n| untrusted::display(n, NAME_CHARS).into_owned());
        ep.unread = chat.unread;
        ep.missing = 0;
        ep.last_message = last.map(|m| Preview {
            id: m.id.clone(),
            body: preview_body(m.body.as_deref(), policy).map(Cow::into_owned),
            timestamp: m.timestamp.map(|t| t.min(now)),
            has_media: m.has_media,
        });
        announce(&mut out, &mut ep, &cp, now);
        if !held {
            let due = due(&ep, &cp, policy, now);
            escalate(&mut out, &mut ep, &cp, due, now);
        }
        out.waiting += 1;
        out.breached += usize::from(!ep.fired.is_empty());
        ep.quiet_until = quiet_until(&ep, &cp, policy);
        if converted || prev.as_deref() != Some(&ep) {
            out.upserts.push(ep);
        }
    }
    for (jid, ep) in c.episodes {
        if seen.contains(jid.as_str()) {
            continue;
        }
        if !out.complete {
            // Not in this (incomplete) overview: still open, still counted, unchanged
            // (an acknowledgement is told all the same: it does not depend on the chat).
            out.waiting += 1;
            out.breached +=
                usize::from(!ep.fired.is_empty() || ep.legacy_fired.is_some_and(|n| n > 0));
            if untold(ep)
                && let Some(cp) = policy.for_chat(jid, ep.name.as_deref())
            {
                announce(&mut out, &mut ep.clone(), &cp, now);
            }
            continue;
        }
        let Some(cp) = policy.for_chat(jid, ep.name.as_deref()) else {
            close(&mut out, ep, None, policy, EndReason::Unwatched, now);
            continue;
        };
        let ep = adopt_legacy(ep, &cp);
        if ep.missing + 1 >= policy.sla.absent_polls {
            close(&mut out, &ep, Some(&cp), policy, EndReason::Absent, now);
        } else {
            let mut ep = ep.into_owned();
            announce(&mut out, &mut ep, &cp, now);
            ep.missing += 1;
            ep.quiet_until = 0; // its absence must be counted again next cycle
            out.waiting += 1;
            out.breached += usize::from(!ep.fired.is_empty());
            out.upserts.push(ep);
        }
    }
    out
}

/// The first unanswered message in a chat's recent `messages` (section 2): the earliest
/// customer message after your last real reply (an automatic reply is not one). In a
/// group, any participant's message counts. `None` when the window holds no customer
/// message with a timestamp. Messages come newest first from Wawp; they are ordered here
/// all the same, and those without a timestamp cannot be placed and are left out.
pub fn first_unanswered(
    messages: &[overview::LastMessage],
    policy: &Policy,
    now: i64,
) -> Option<i64> {
    let mut dated: Vec<&overview::LastMessage> =
        messages.iter().filter(|m| m.timestamp.is_some()).collect();
    dated.sort_by_key(|m| std::cmp::Reverse(m.timestamp));
    let mut earliest: Option<i64> = None;
    for m in dated {
        let ts = m.timestamp.unwrap_or(now).min(now);
        if m.from_me == Some(true) {
            if policy.is_auto_reply(m.body.as_deref()) {
                continue;
            }
            break; // your last real reply: what came before it was answered
        }
        earliest = Some(earliest.map_or(ts, |e| e.min(ts)));
    }
    earliest
}

/// Moves an open episode's start back to `start`, the first unanswered message its
/// chat's history showed (section 2), and fires what that makes due: never later, and
/// never a tier that already fired (tiers are known by `after`). Events this cycle already
/// made for the episode are told the corrected start. Returns whether the start moved.
pub fn start_earlier(
    out: &mut Evaluation,
    ep: &mut Episode,
    start: i64,
    policy: &Policy,
    muted: bool,
    now: i64,
) -> bool {
    let start = start.min(now);
    if start >= ep.started_at {
        return false;
    }
    let Some(cp) = policy.for_chat(&ep.jid, ep.name.as_deref()) else {
        return false;
    };
    let was_breached = !ep.fired.is_empty();
    ep.started_at = start;
    // An earlier start makes tiers due at once, but a mute or an acknowledgement holds them.
    if !muted && !ep.ack.as_ref().is_some_and(|a| a.holds(now)) {
        let due = due(ep, &cp, policy, now);
        escalate(out, ep, &cp, due, now);
    }
    let age = cp.age(ep.started_at, now);
    for event in out.events.iter_mut() {
        if event.episode.jid == ep.jid && matches!(event.kind, EventKind::Firing { .. }) {
            event.episode = ep.clone();
            event.age = age;
            event.waited = (now - ep.started_at).max(0);
        }
    }
    ep.quiet_until = quiet_until(ep, &cp, policy);
    if !was_breached && !ep.fired.is_empty() {
        out.breached += 1;
    }
    true
}

/// Ends every open episode of an instance that is no longer watched (it was removed from
/// the config): each closes with reason `unwatched`, and the channels that were told of it
/// hear so (section 2, "an unwatched chat").
pub fn unwatch(episodes: &HashMap<String, Episode>, policy: &Policy, now: i64) -> Evaluation {
    let mut out = Evaluation::default();
    let mut open: Vec<&Episode> = episodes.values().collect();
    open.sort_by(|a, b| a.jid.cmp(&b.jid));
    for ep in open {
        close(&mut out, ep, None, policy, EndReason::Unwatched, now);
    }
    out
}

impl Cycle<'_> {
    /// Whether no tier may fire for the chat now: it is muted, or its episode is
    /// acknowledged and the acknowledgement has not run out.
    fn holds(&self, jid: &str, ep: Option<&Episode>, now: i64) -> bool {
        self.mutes.get(jid).is_some_and(|until| *until > now)
            || ep
                .and_then(|ep| ep.ack.as_ref())
                .is_some_and(|a| a.holds(now))
    }
}

/// An acknowledgement the channels have not heard of yet.
fn untold(ep: &Episode) -> bool {
    ep.ack.as_ref().is_some_and(|a| !a.told)
}

/// Tells the channels that were paged, once, that someone acknowledged the episode (an
/// episode that paged nobody has nobody to tell; its acknowledgement is marked told all
/// the same).
fn announce(out: &mut Evaluation, ep: &mut Episode, cp: &ChatPolicy, now: i64) {
    let Some(ack) = ep.ack.as_mut().filter(|a| !a.told) else {
        return;
    };
    ack.told = true;
    out.told.push((ep.jid.clone(), ack.at, ack.by.clone()));
    if ep.notified.is_empty() {
        return;
    }
    let highest = ep.fired.iter().copied().max().unwrap_or(0);
    let tier = cp
        .tier_index(highest)
        .unwrap_or_else(|| ep.fired.len().saturating_sub(1));
    out.events.push(Event {
        kind: EventKind::Acknowledged { tier },
        episode: ep.clone(),
        channels: ep.notified.clone(),
        age: cp.age(ep.started_at, now),
        waited: (now - ep.started_at).max(0),
    });
}

/// The quiet path for a chat the overview shows exactly as its episode last saw it.
fn unchanged_chat(out: &mut Evaluation, ep: &Episode, c: &Cycle, now: i64) {
    let policy = c.policy;
    let Some(cp) = policy.for_chat(&ep.jid, ep.name.as_deref()) else {
        close(out, ep, None, policy, EndReason::Unwatched, now);
        return;
    };
    let ep = adopt_legacy(ep, &cp);
    let due = if c.holds(&ep.jid, Some(&ep), now) {
        Due::default()
    } else {
        due(&ep, &cp, policy, now)
    };
    if due.is_nothing()
        && !untold(&ep)
        && ep.missing == 0
        && matches!(ep, Cow::Borrowed(_))
        && ep.quiet_until == quiet_until(&ep, &cp, policy)
    {
        out.waiting += 1;
        out.breached += usize::from(!ep.fired.is_empty());
        return;
    }
    let mut ep = ep.into_owned();
    ep.missing = 0;
    announce(out, &mut ep, &cp, now);
    escalate(out, &mut ep, &cp, due, now);
    ep.quiet_until = quiet_until(&ep, &cp, policy);
    out.waiting += 1;
    out.breached += usize::from(!ep.fired.is_empty());
    out.upserts.push(ep);
}

/// The earliest instant anything could fall due for this episode while its chat stays as
/// it is: a tier not yet fired, a repeat, a nudge. A lower bound (business time never runs
/// faster than the wall clock), so a chat is never thought quiet when it is not; an
/// episode that must be looked at anyway (missing from the last overview) says 0.
pub fn quiet_until(ep: &Episode, cp: &ChatPolicy, policy: &Policy) -> i64 {
    if ep.missing > 0 || ep.legacy_fired.is_some() || ep.history_pending || untold(ep) {
        return 0;
    }
    let held_until = ep.ack.as_ref().map_or(0, |a| a.until);
    let unfired = cp
        .tiers
        .iter()
        .filter(|t| !ep.fired.contains(&t.after.as_secs()));
    let nudge_at = i64::from(policy.sla.nudge_unread);
    if nudge_at > 0
        && !ep.nudged
        && ep.unread.is_some_and(|n| n >= nudge_at)
        && unfired.clone().next().is_some()
    {
        return 0; // a nudge is due now (it is taken at once)
    }
    let tier = unfired
        .map(|t| ep.started_at.saturating_add(t.after.as_secs() as i64))
        .min();
    let repeat = policy
        .repeat_after()
        .filter(|_| !ep.fired.is_empty())
        .and_then(|every| {
            ep.last_fired_at
                .map(|t| t.saturating_add(every.as_secs() as i64))
        });
    // Nothing fires while an acknowledgement holds (section 2): not before it ends.
    tier.into_iter()
        .chain(repeat)
        .min()
        .map_or(i64::MAX, |at| at.max(held_until))
}

/// An episode from an old store counted its fired tiers; read the count as the chat's
/// first tiers by `after` (and their channels as told).
fn adopt_legacy<'a>(ep: &'a Episode, cp: &ChatPolicy) -> Cow<'a, Episode> {
    let Some(n) = ep.legacy_fired else {
        return Cow::Borrowed(ep);
    };
    let mut ep = ep.clone();
    for tier in cp.tiers.iter().take(n as usize) {
        record_fired(&mut ep, tier.after.as_secs(), &tier.notify);
    }
    ep.legacy_fired = None;
    Cow::Owned(ep)
}

/// The chat was read between two polls: its unread count went down while its last
/// message changed. Returns when the new wait started (the new message).
fn read_between(ep: &Episode, chat: &Chat, now: i64) -> Option<i64> {
    let (before, after) = (ep.unread?, chat.unread?);
    if !(before > 0 && after > 0 && after < before) {
        return None;
    }
    let m = chat.last_message.as_ref()?;
    let ts = m.timestamp.map(|t| t.min(now));
    let changed = ep
        .last_message
        .as_ref()
        .is_none_or(|p| p.id != m.id || p.timestamp != ts);
    changed.then_some(ts.unwrap_or(now))
}

fn close(
    out: &mut Evaluation,
    ep: &Episode,
    cp: Option<&ChatPolicy>,
    policy: &Policy,
    reason: EndReason,
    ended_at: i64,
) {
    let age = cp.map_or((ended_at - ep.started_at).max(0), |cp| {
        cp.age(ep.started_at, ended_at)
    });
    if !ep.fired.is_empty() && policy.sla.send_resolved {
        let highest = ep.fired.iter().copied().max().unwrap_or(0);
        let tier = cp
            .and_then(|cp| cp.tier_index(highest))
            .unwrap_or_else(|| ep.fired.len().saturating_sub(1));
        out.events.push(Event {
            kind: EventKind::Resolved { tier, reason },
            episode: ep.clone(),
            channels: ep.notified.clone(),
            age,
            waited: (ended_at - ep.started_at).max(0),
        });
    }
    out.closed.push(Closed {
        episode: ep.clone(),
        ended_at,
        age,
        reason,
    });
}

/// What is due for an episode now: tiers to fire, or a repeat.
#[derive(Debug, Default, PartialEq)]
struct Due {
    /// The age, when anything could be due (it is not even computed otherwise).
    age: Option<i64>,
    /// Positions of the tiers that fire now, ascending.
    fire: Vec<usize>,
    /// The last of `fire` is there because of `nudge_unread`.
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
    let unfired = |i: &usize| !ep.fired.contains(&cp.tiers[*i].after.as_secs());
    let repeat_every = policy.repeat_after().filter(|_| !ep.fired.is_empty());
    if !(0..cp.tiers.len()).any(|i| unfired(&i)) && repeat_every.is_none() {
        return Due::default(); // every tier fired, no repeat: the age does not matter
    }
    let age = cp.age(ep.started_at, now);
    let mut fire: Vec<usize> = (0..cp.tiers.len())
        .filter(unfired)
        .filter(|&i| age >= cp.tiers[i].after.as_secs() as i64)
        .collect();
    let nudge_at = i64::from(policy.sla.nudge_unread);
    let mut nudge = false;
    if nudge_at > 0
        && !ep.nudged
        && ep.unread.is_some_and(|n| n >= nudge_at)
        && let Some(next) = (0..cp.tiers.len())
            .filter(unfired)
            .find(|i| !fire.contains(i))
    {
        fire.push(next);
        nudge = true;
    }
    let repeat = match (repeat_every, ep.last_fired_at) {
        (Some(every), Some(last)) if fire.is_empty() && now - last >= every.as_secs() as i64 => {
            let highest = ep.fired.iter().copied().max().unwrap_or(0);
            cp.tiers.iter().rposition(|t| t.after.as_secs() <= highest)
        }
        _ => None,
    };
    Due {
        age: Some(age),
        fire,
        nudge,
        repeat,
    }
}

fn record_fired(ep: &mut Episode, after: u64, channels: &[String]) {
    if let Err(at) = ep.fired.binary_search(&after) {
        ep.fired.insert(at, after);
    }
    for c in channels {
        if !ep.notified.contains(c) {
            ep.notified.push(c.clone());
        }
    }
}

fn escalate(out: &mut Evaluation, ep: &mut Episode, cp: &ChatPolicy, due: Due, now: i64) {
    let waited = (now - ep.started_at).max(0);
    let age = due.age.unwrap_or(0);
    if !due.fire.is_empty() {
        for &i in &due.fire {
            record_fired(ep, cp.tiers[i].after.as_secs(), &cp.tiers[i].notify);
        }
        ep.last_fired_at = Some(now);
        ep.nudged |= due.nudge;
        for &i in &due.fire {
            out.events.push(Event {
                kind: EventKind::Firing {
                    tier: i,
                    after_secs: cp.tiers[i].after.as_secs(),
                    repeat: false,
                },
                episode: ep.clone(),
                channels: cp.tiers[i].notify.clone(),
                age,
                waited,
            });
        }
    } else if let Some(i) = due.repeat {
        ep.last_fired_at = Some(now);
        out.events.push(Event {
            kind: EventKind::Firing {
                tier: i,
                after_secs: cp.tiers[i].after.as_secs(),
                repeat: true,
            },
            episode: ep.clone(),
            channels: cp.tiers[i].notify.clone(),
            age,
            waited,
        });
    }
}

/// Whether refreshing `ep` from `chat` would change nothing (so it need not be copied).
fn unchanged(ep: &Episode, chat: &Chat, policy: &Policy, now: i64) -> bool {
    // Stored text is the cleaned text; most text needs no cleaning, so equal raw text is
    // the cheap common answer, and the cleaning runs only where they differ.
    let same_name = ep.name == chat.name
        || ep.name.as_deref()
            == chat
                .name
                .as_deref()
                .map(|n| untrusted::display(n, NAME_CHARS))
                .as_deref();
    ep.missing == 0
        && ep.legacy_fired.is_none()
        && ep.unread == chat.unread
        && same_name
        && match (&ep.last_message, &chat.last_message) {
            (None, None) => true,
            (Some(p), Some(m)) => {
                p.id == m.id
                    && p.timestamp == m.timestamp.map(|t| t.min(now))
                    && p.has_media == m.has_media
                    && (p.body == m.body && policy.sla.include_preview
                        || p.body.as_deref() == preview_body(m.body.as_deref(), policy).as_deref())
            }
            _ => false,
        }
}

fn preview_body<'a>(body: Option<&'a str>, policy: &Policy) -> Option<Cow<'a, str>> {
    if !policy.sla.include_preview {
        return None;
    }
    body.map(|b| untrusted::preview(b, PREVIEW_CHARS))
}

#[cfg(test)]
mod tests;
