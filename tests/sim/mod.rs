//! A deterministic simulation of the whole product against a reference model.
//!
//! One seed makes one plan: a world of WhatsApp inboxes that evolve (customers write and
//! nudge, agents read and reply, away messages, chats archived and renamed), an engine
//! that misbehaves (empty, short, duplicated, reordered answers, junk elements, 401/500,
//! truncated bodies), config reloads (tiers reordered, added, removed; `stop_on`
//! switched; instances removed and restored; auto-replies and rules changed), mutes,
//! receivers that fail, time out, answer 429 with `Retry-After` or answer slowly, and the
//! daemon killed before or after a commit or between a receiver's acceptance and its
//! record, or paused between a plan and its commit while a manual `once` runs. With
//! PostgreSQL, two or three nodes share the store, each with its own clock (skewed by
//! minutes, paused), the database's clock being the true one.
//!
//! The real engine, store, outbox and delivery code runs in this process, single-threaded
//! on a current-thread runtime, under simulated time: the Wawp API is a [`Transport`] that
//! serves the simulated inboxes through the real client and parser, the receivers are a
//! [`Deliver`] of the simulator's own, Alertmanager is a small state machine fed by the
//! real channel's alerts. Each node's work is a future driven until it finishes or waits
//! on simulated time, so every interleaving is chosen by the seed, not by the machine.
//!
//! After the plan, a calm stretch (no faults) lets everything settle; then the invariants
//! are checked against [`model`] and against what the receivers got. A failing plan is
//! shrunk to the few events that matter and printed as a story.

pub mod model;

use inbox_sla::alert::{AlertDoc, Status};
use inbox_sla::clock::Clock;
use inbox_sla::config::Config;
use inbox_sla::cycle::{self, CycleError};
use inbox_sla::deliver::{self, Deliver};
use inbox_sla::notify::{self, SendError};
use inbox_sla::outbox::Outbox;
use inbox_sla::store::{DbClock, Location, Store};
use inbox_sla::wawp::{self, Body, BoxFuture, Transport, WawpClient};
use serde_json::{Value, json};
use std::cell::Cell;
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::fmt::Write as _;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

/// Simulated time starts here (2026-01-05, a Monday, 00:00 UTC).
pub const EPOCH: i64 = 1_767_571_200;
/// One scheduler step.
const STEP: i64 = 10;
/// The calm stretch after the plan: no faults, receivers work, so everything due settles
/// (the highest tier is 4h; backoff and `Retry-After` are minutes).
const CALM: i64 = 5 * 3600;
/// How often a node re-sends to Alertmanager (the channel's `resend`) and does its
/// housekeeping (the daemon: every 15 s; a coarser step loses no ordering here).
const RESEND: i64 = 300;
const HOUSEKEEPING: i64 = 120;
/// What fell due this long before the end must have been told by then.
const SETTLE: i64 = 3600;

// ------------------------------------------------------------------------------ time

thread_local! {
    /// Set when a future waits on simulated time: the driver then knows the node is parked
    /// (and not merely waiting on the store's thread or socket).
    static PARKED: Cell<bool> = const { Cell::new(false) };
}

/// Waits until the simulated clock reaches `until_ms`.
struct SimSleep {
    clock: Clock,
    until_ms: i64,
}

impl Future for SimSleep {
    type Output = ();
    fn poll(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<()> {
        if self.clock.now_ms() >= self.until_ms {
            Poll::Ready(())
        } else {
            PARKED.with(|p| p.set(true));
            Poll::Pending
        }
    }
}

type Work = Pin<Box<dyn Future<Output = ()>>>;

/// Drives `work` until it finishes (`true`) or parks on simulated time (`false`). While it
/// waits on real I/O (the SQLite thread, the PostgreSQL socket), this task waits with it,
/// woken by the runtime like any other.
async fn drive(work: &mut Work) -> bool {
    std::future::poll_fn(|cx| {
        PARKED.with(|p| p.set(false));
        match work.as_mut().poll(cx) {
            Poll::Ready(()) => Poll::Ready(true),
            Poll::Pending if PARKED.with(|p| p.get()) => Poll::Ready(false),
            Poll::Pending => Poll::Pending,
        }
    })
    .await
}

// ------------------------------------------------------------------------------ plan

/// How the engine answers a poll.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Fault {
    Empty,
    /// Only the first `n` chats (a resync).
    Partial(usize),
    Duplicated,
    Reordered,
    /// An element that is not a chat: the overview is not read whole.
    Junk,
    Status(u16),
    /// The body stops half way and the connection breaks.
    Truncated,
}

/// How a receiver answers a send.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum RxFault {
    Fail503,
    RetryAfter(u64),
    Timeout,
    /// Answers 200 after this many seconds (under `delivery.timeout`).
    Slow(i64),
}

/// Where a node is killed (or paused) at its next chance.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Kill {
    BeforeCommit,
    AfterCommit,
    /// A receiver accepted; the node dies before recording it.
    AfterAccept,
    /// Paused for this long between a cycle's plan and its commit.
    PauseBeforeCommit(i64),
    /// Paused between a cycle's plan and its commit while a manual `once` runs on the same
    /// store (SQLite: the daemon and an operator's `once`).
    OnceDuringCommit,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Change {
    /// Tiers as given: (after seconds, channels).
    Tiers(Vec<(u64, Vec<&'static str>)>),
    StopOn(&'static str),
    RemoveInstance(usize),
    RestoreInstance(usize),
    AutoReplies(bool),
    /// A rule that ignores this chat (of every instance), or none.
    Ignore(Option<usize>),
    AbsentPolls(u32),
}

#[derive(Debug, Clone, PartialEq)]
pub enum What {
    Write {
        inst: usize,
        chat: usize,
    },
    Read {
        inst: usize,
        chat: usize,
    },
    Reply {
        inst: usize,
        chat: usize,
    },
    AutoReply {
        inst: usize,
        chat: usize,
    },
    Archive {
        inst: usize,
        chat: usize,
    },
    Unarchive {
        inst: usize,
        chat: usize,
    },
    Rename {
        inst: usize,
        chat: usize,
    },
    Engine {
        inst: usize,
        fault: Fault,
        polls: u32,
    },
    Receiver {
        channel: usize,
        fault: RxFault,
        count: u32,
    },
    Reload(Change),
    Mute {
        chat: usize,
        secs: i64,
    },
    /// Someone on call acknowledges the chat's open episode (in every instance where it
    /// has one), holding its next tier for `secs`.
    Ack {
        chat: usize,
        secs: i64,
    },
    Kill {
        node: usize,
        at: Kill,
    },
    /// A manual `once` on the same store, at once.
    Once,
    Skew {
        node: usize,
        secs: i64,
    },
    Pause {
        node: usize,
        secs: i64,
    },
}

#[derive(Debug, Clone, PartialEq)]
pub struct Event {
    /// Seconds after [`EPOCH`].
    pub at: i64,
    pub what: What,
}

/// Everything one seed decides.
#[derive(Debug, Clone)]
pub struct Plan {
    pub seed: u64,
    pub postgres: bool,
    pub nodes: usize,
    pub instances: usize,
    pub chats: usize,
    pub poll: i64,
    pub hours: i64,
    pub tiers: Vec<(u64, Vec<&'static str>)>,
    pub stop_on: &'static str,
    pub absent_polls: u32,
    pub nudge: u32,
    pub business_hours: bool,
    pub events: Vec<Event>,
}

pub const CHANNELS: [&str; 3] = ["slack", "pd", "am"];

impl Plan {
    pub fn generate(seed: u64, postgres: bool) -> Plan {
        let mut r = fastrand::Rng::with_seed(seed);
        let nodes = if postgres { r.usize(2..=3) } else { 1 };
        let instances = r.usize(1..=3);
        let chats = r.usize(3..=8);
        let poll = [60, 120, 300, 300, 600][r.usize(..5)];
        // A PostgreSQL round trip costs a millisecond: shorter plans, as many faults.
        let hours = if postgres {
            r.i64(2..=6)
        } else {
            r.i64(3..=12)
        };
        let afters = [900u64, 1800, 3600, 7200, 4 * 3600];
        let tier_list = |r: &mut fastrand::Rng| {
            let n = r.usize(1..=3);
            let mut picked: Vec<u64> = Vec::new();
            while picked.len() < n {
                let a = afters[r.usize(..afters.len())];
                if !picked.contains(&a) {
                    picked.push(a);
                }
            }
            picked
                .into_iter()
                .map(|a| {
                    let mut chs: Vec<&'static str> =
                        CHANNELS.iter().copied().filter(|_| r.bool()).collect();
                    if chs.is_empty() {
                        chs.push(CHANNELS[r.usize(..3)]);
                    }
                    (a, chs)
                })
                .collect::<Vec<_>>()
        };
        let tiers = tier_list(&mut r);
        let stop_on = if r.u8(..4) == 0 { "reply" } else { "read" };
        let mut events = Vec::new();
        let span = hours * 3600;
        let n_events = r.usize(10..(30 + hours as usize * 12));
        for _ in 0..n_events {
            let at = r.i64(0..span);
            let inst = r.usize(..instances);
            let chat = r.usize(..chats);
            let what = match r.u32(..100) {
                0..=27 => What::Write { inst, chat },
                28..=39 => What::Read { inst, chat },
                40..=51 => What::Reply { inst, chat },
                52..=55 => What::AutoReply { inst, chat },
                56..=57 => What::Archive { inst, chat },
                58..=59 => What::Unarchive { inst, chat },
                60 => What::Rename { inst, chat },
                61..=68 => What::Engine {
                    inst,
                    fault: match r.u8(..8) {
                        0 => Fault::Empty,
                        1 => Fault::Partial(r.usize(0..=chats / 2)),
                        2 => Fault::Duplicated,
                        3 => Fault::Reordered,
                        4 => Fault::Junk,
                        5 => Fault::Status([401, 500, 503][r.usize(..3)]),
                        6 => Fault::Truncated,
                        _ => Fault::Partial(1),
                    },
                    polls: r.u32(1..=6),
                },
                69..=75 => What::Receiver {
                    channel: r.usize(..3),
                    fault: match r.u8(..4) {
                        0 => RxFault::Fail503,
                        1 => RxFault::RetryAfter(r.u64(1..=120)),
                        2 => RxFault::Timeout,
                        _ => RxFault::Slow(r.i64(1..=25)),
                    },
                    count: r.u32(1..=8),
                },
                76..=83 => What::Reload(match r.u8(..7) {
                    0 | 1 => Change::Tiers(tier_list(&mut r)),
                    2 => Change::StopOn(if r.bool() { "reply" } else { "read" }),
                    3 => Change::RemoveInstance(inst),
                    4 => Change::RestoreInstance(inst),
                    5 => Change::AutoReplies(r.bool()),
                    _ => {
                        if r.bool() {
                            Change::Ignore(Some(chat))
                        } else {
                            Change::AbsentPolls(r.u32(1..=3))
                        }
                    }
                }),
                84..=86 => What::Mute {
                    chat,
                    secs: r.i64(60..=4 * 3600),
                },
                87..=92 => What::Kill {
                    node: r.usize(..nodes),
                    at: match r.u8(..4) {
                        0 => Kill::BeforeCommit,
                        1 => Kill::AfterCommit,
                        2 => Kill::AfterAccept,
                        _ if !postgres && r.bool() => Kill::OnceDuringCommit,
                        _ => Kill::PauseBeforeCommit(r.i64(1..=120)),
                    },
                },
                93..=94 if !postgres => What::Once,
                93..=94 => What::Skew {
                    node: r.usize(..nodes),
                    secs: r.i64(-300..=300),
                },
                95..=96 if postgres => What::Pause {
                    node: r.usize(..nodes),
                    secs: r.i64(5..=180),
                },
                97..=99 => What::Ack {
                    chat,
                    secs: r.i64(60..=3 * 3600),
                },
                _ => What::Write { inst, chat },
            };
            events.push(Event { at, what });
        }
        events.sort_by_key(|e| e.at);
        Plan {
            seed,
            postgres,
            nodes,
            instances,
            chats,
            poll,
            hours,
            tiers,
            stop_on,
            absent_polls: r.u32(1..=3),
            nudge: if r.u8(..4) == 0 { r.u32(2..=4) } else { 0 },
            business_hours: r.u8(..5) == 0,
            events,
        }
    }
}

// ------------------------------------------------------------------------------ world

#[derive(Debug, Clone)]
struct Msg {
    id: String,
    ts: i64,
    from_me: bool,
    body: String,
}

#[derive(Debug, Clone)]
struct WChat {
    id: String,
    name: String,
    unread: i64,
    last: Option<Msg>,
    archived: bool,
}

#[derive(Debug, Default)]
struct Inbox {
    chats: Vec<WChat>,
    faults: VecDeque<Fault>,
}

const AWAY: &str = "Thanks for contacting Acme! We answer within the hour.";

fn jid(inst: usize, chat: usize) -> String {
    format!("2010{inst}0000{chat:03}@c.us")
}

fn instance_name(inst: usize) -> String {
    format!("inst{inst}")
}

// ------------------------------------------------------------------------------ recorder

/// What a receiver got.
#[derive(Debug, Clone)]
pub struct Received {
    pub at: i64,
    pub channel: String,
    pub doc: AlertDoc,
}

#[derive(Debug, Clone)]
enum History {
    Poll(model::Poll),
    Removed {
        instance: String,
        now: i64,
        config: usize,
    },
    Muted {
        jid: String,
        until: i64,
    },
    Acked {
        instance: String,
        jid: String,
        at: i64,
        until: i64,
    },
}

/// A poll under way: instance, now, config version, what the engine showed, and where in
/// the history its plan read the store.
type Pending = (
    String,
    i64,
    usize,
    Option<(Vec<model::Seen>, bool, usize)>,
    usize,
);

#[derive(Default)]
struct Recorder {
    configs: Vec<Arc<Config>>,
    /// Per node: the poll under way (instance, now, config) and what was served.
    pending: HashMap<usize, Pending>,
    history: Vec<History>,
    received: Vec<Received>,
    /// Sends accepted by a receiver whose node died before recording them.
    unrecorded_accepts: usize,
    /// Per instance: the newest lease (fence, node); a poll under an older one is a
    /// second holder.
    leases: HashMap<String, (i64, usize)>,
    stale_polls: Vec<String>,
    /// Rests the scan beside them contradicted.
    wrong_rests: Vec<String>,
    /// A node parked between a plan and its commit wants a manual `once` to run now.
    once_now: bool,
    /// Alertmanager: labels → endsAt.
    am: BTreeMap<String, i64>,
    story: Vec<String>,
    coverage: BTreeMap<&'static str, usize>,
    /// How many times each invariant was put to the test (checked during the run).
    checks: BTreeMap<&'static str, usize>,
}

impl Recorder {
    fn covered(&mut self, what: &'static str) {
        *self.coverage.entry(what).or_insert(0) += 1;
    }

    fn am_apply(&mut self, alerts: &[Value]) {
        for a in alerts {
            let ends = a["endsAt"]
                .as_str()
                .and_then(|e| chrono::DateTime::parse_from_rfc3339(e).ok())
                .map_or(0, |e| e.timestamp());
            self.am.insert(a["labels"].to_string(), ends);
        }
    }
}

type Shared<T> = Arc<Mutex<T>>;

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

// ------------------------------------------------------------------------------ transport

/// The Wawp engine of one node's client: serves the simulated inboxes.
struct SimWawp {
    node: usize,
    world: Shared<Vec<Inbox>>,
    rec: Shared<Recorder>,
}

impl Transport for SimWawp {
    fn get<'a>(&'a self, url: &'a reqwest::Url) -> BoxFuture<'a, Result<wawp::Response, String>> {
        Box::pin(async move {
            let id = url
                .query_pairs()
                .find(|(k, _)| k == "instance_id")
                .map(|(_, v)| v.to_string())
                .unwrap_or_default();
            let inst: usize = id.trim_start_matches("id").parse().unwrap_or(0);
            let mut world = lock(&self.world);
            let inbox = &mut world[inst];
            let fault = inbox.faults.pop_front();
            let mut shown: Vec<&WChat> = inbox.chats.iter().filter(|c| !c.archived).collect();
            // Newest first, as WhatsApp lists them.
            shown.sort_by_key(|c| std::cmp::Reverse(c.last.as_ref().map_or(0, |m| m.ts)));
            let mut rec = lock(&self.rec);
            match fault {
                Some(Fault::Status(code)) => {
                    rec.covered("engine answers an error");
                    return Ok(response(
                        code,
                        vec![Ok(format!("{{\"message\":\"engine says {code}\"}}").into())],
                    ));
                }
                Some(Fault::Empty) => shown.clear(),
                Some(Fault::Partial(n)) => shown.truncate(n),
                Some(Fault::Reordered) => shown.reverse(),
                _ => {}
            }
            let mut elements: Vec<Value> = shown.iter().map(|c| chat_json(c)).collect();
            let mut seen: Vec<model::Seen> = shown.iter().map(|c| seen_of(c)).collect();
            let mut read_whole = true;
            match fault {
                Some(Fault::Duplicated) if !elements.is_empty() => {
                    elements.push(elements[0].clone());
                    seen.push(seen[0].clone());
                }
                Some(Fault::Junk) => {
                    elements.push(json!({"not": "a chat"}));
                    read_whole = false;
                }
                _ => {}
            }
            if let Some(f) = fault {
                rec.covered(match f {
                    Fault::Empty => "engine answers []",
                    Fault::Partial(_) => "engine answers a short list",
                    Fault::Duplicated => "engine repeats a chat",
                    Fault::Reordered => "engine reorders",
                    Fault::Junk => "engine sends a non-chat element",
                    Fault::Truncated => "engine cuts the body",
                    Fault::Status(_) => "engine answers an error",
                });
            }
            let total = seen.len();
            let body = Value::Array(elements).to_string().into_bytes();
            if fault == Some(Fault::Truncated) {
                let half = body[..body.len() / 2].to_vec();
                return Ok(response(
                    200,
                    vec![Ok(half.into()), Err("connection reset".into())],
                ));
            }
            if let Some(p) = rec.pending.get_mut(&self.node) {
                p.3 = Some((seen, read_whole, total));
            }
            Ok(response(200, vec![Ok(body.into())]))
        })
    }
}

fn response(status: u16, chunks: Vec<Result<bytes::Bytes, String>>) -> wawp::Response {
    wawp::Response {
        status: reqwest::StatusCode::from_u16(status).unwrap_or(reqwest::StatusCode::OK),
        content_length: None,
        body: Body::Chunks(chunks.into()),
    }
}

fn chat_json(c: &WChat) -> Value {
    json!({
        "id": c.id, "name": c.name, "unreadCount": c.unread,
        "lastMessage": c.last.as_ref().map(|m| json!({
            "id": m.id, "body": m.body, "timestamp": m.ts, "fromMe": m.from_me,
        })),
    })
}

fn seen_of(c: &WChat) -> model::Seen {
    model::Seen {
        id: c.id.clone(),
        name: c.name.clone(),
        unread: c.unread,
        last: c
            .last
            .as_ref()
            .map(|m| (m.id.clone(), m.ts, m.from_me, m.body.clone())),
    }
}

// ------------------------------------------------------------------------------ receivers

/// A node's view of one channel's receiver.
struct SimReceiver {
    channel: String,
    node: usize,
    clock: Clock,
    timeout: i64,
    faults: Shared<HashMap<String, VecDeque<RxFault>>>,
    rec: Shared<Recorder>,
    flags: Arc<Flags>,
    am: Option<Arc<notify::Channel>>,
}

/// A node's kill switch.
#[derive(Default)]
struct Flags {
    armed: Mutex<Option<Kill>>,
    dying: std::sync::atomic::AtomicBool,
    /// When the node's outbox has something due next (simulated seconds), as its last
    /// delivery pass saw it; the node delivers then, or when a cycle enqueues.
    next_due: Mutex<Option<i64>>,
}

impl Flags {
    fn take(&self, want: fn(&Kill) -> bool) -> Option<Kill> {
        let mut a = lock(&self.armed);
        match *a {
            Some(k) if want(&k) => a.take(),
            _ => None,
        }
    }
}

impl Deliver for SimReceiver {
    fn send(&self, doc: &AlertDoc) -> impl Future<Output = Result<String, SendError>> + Send {
        let doc = doc.clone();
        async move {
            let fault = lock(&self.faults)
                .get_mut(&self.channel)
                .and_then(VecDeque::pop_front);
            let now_ms = self.clock.now_ms();
            match fault {
                Some(RxFault::Fail503) => {
                    lock(&self.rec).covered("receiver answers 503");
                    return Err(SendError::Retry {
                        reason: "the receiver answered 503".into(),
                        retry_after: None,
                    });
                }
                Some(RxFault::RetryAfter(s)) => {
                    lock(&self.rec).covered("receiver answers 429 Retry-After");
                    return Err(SendError::Retry {
                        reason: "the receiver answered 429".into(),
                        retry_after: Some(Duration::from_secs(s)),
                    });
                }
                Some(RxFault::Timeout) => {
                    lock(&self.rec).covered("receiver times out");
                    SimSleep {
                        clock: self.clock.clone(),
                        until_ms: now_ms + self.timeout * 1000,
                    }
                    .await;
                    return Err(SendError::Retry {
                        reason: "the receiver did not answer within delivery.timeout".into(),
                        retry_after: None,
                    });
                }
                Some(RxFault::Slow(s)) => {
                    lock(&self.rec).covered("receiver answers slowly");
                    SimSleep {
                        clock: self.clock.clone(),
                        until_ms: now_ms + s.min(self.timeout - 1) * 1000,
                    }
                    .await;
                }
                None => {}
            }
            let now = self.clock.now();
            {
                let mut rec = lock(&self.rec);
                if let Some(am) = self.am.as_ref().and_then(|c| c.alertmanager()) {
                    let alerts = am.alerts_for(&doc, now);
                    rec.am_apply(&alerts);
                }
                let chats: Vec<&str> = doc.chats.iter().map(|c| c.id.as_str()).collect();
                let tier = doc
                    .tier
                    .map(|t| {
                        format!(
                            " tier {}",
                            inbox_sla::alert::short_duration(t.after_seconds as i64)
                        )
                    })
                    .unwrap_or_default();
                let line = format!(
                    "t={} {} receives {}{tier} {}",
                    now - EPOCH,
                    self.channel,
                    doc.status.as_str(),
                    if chats.is_empty() {
                        doc.instance.clone()
                    } else {
                        chats.join(", ")
                    }
                );
                rec.story.push(line);
                rec.received.push(Received {
                    at: now,
                    channel: self.channel.clone(),
                    doc,
                });
            }
            if self.flags.take(|k| *k == Kill::AfterAccept).is_some() {
                {
                    let mut rec = lock(&self.rec);
                    rec.unrecorded_accepts += 1;
                    rec.covered("killed between a receiver's answer and its record");
                    rec.story.push(format!(
                        "t={} node {} dies before recording a delivery",
                        now - EPOCH,
                        self.node
                    ));
                }
                self.flags
                    .dying
                    .store(true, std::sync::atomic::Ordering::SeqCst);
                SimSleep {
                    clock: self.clock.clone(),
                    until_ms: i64::MAX,
                }
                .await;
            }
            Ok("200 OK".into())
        }
    }
}

// ------------------------------------------------------------------------------ nodes

struct Node {
    id: usize,
    clock: Clock,
    skew: i64,
    store: Store,
    outbox: Arc<Outbox>,
    flags: Arc<Flags>,
    work: Option<Work>,
    /// The node's Wawp client and the configuration it was built for: like the daemon's,
    /// it lives until the process dies or a reload builds another (what it remembers of
    /// each inbox, its rests above all, goes with it).
    client: Option<(usize, WawpClient)>,
    dead_until: Option<i64>,
    paused_until: i64,
    last_refresh: i64,
    last_housekeeping: i64,
}

/// What a node's step does; owns what it needs, so it can wait across steps.
struct Step {
    node: usize,
    node_name: String,
    config: Arc<Config>,
    config_version: usize,
    store: Store,
    outbox: Arc<Outbox>,
    client: WawpClient,
    clock: Clock,
    truth: Clock,
    rec: Shared<Recorder>,
    faults: Shared<HashMap<String, VecDeque<RxFault>>>,
    flags: Arc<Flags>,
    am: Option<Arc<notify::Channel>>,
    polls: Vec<usize>,
    /// Deliver even if no cycle enqueues (something falls due now).
    deliver: bool,
    refresh: bool,
    housekeeping: bool,
    ha: bool,
}

async fn step(s: Step) {
    let dies = |s: &Step| {
        s.flags
            .dying
            .store(true, std::sync::atomic::Ordering::SeqCst)
    };
    let mut enqueued = false;
    for inst in s.polls.clone() {
        let name = instance_name(inst);
        let Some(instance) = s.config.instance(&name).cloned() else {
            continue;
        };
        let fence = if s.ha {
            let lease = s
                .config
                .ha
                .as_ref()
                .map_or(30_000, |h| h.lease.as_millis() as i64);
            match s
                .store
                .acquire_lease(&name, &s.node_name, s.clock.now_ms(), lease)
                .await
            {
                Ok(Some(f)) => {
                    let mut rec = lock(&s.rec);
                    *rec.checks.entry("one lease holder per poll").or_insert(0) += 1;
                    let newest = *rec.leases.entry(name.clone()).or_insert((f.value, s.node));
                    if f.value > newest.0 {
                        rec.leases.insert(name.clone(), (f.value, s.node));
                    } else if f.value < newest.0 || newest.1 != s.node {
                        let t = s.truth.now() - EPOCH;
                        rec.stale_polls.push(format!(
                            "t={t} node {} polls {name} under fence {} while node {} holds {}",
                            s.node, f.value, newest.1, newest.0
                        ));
                    }
                    Some(f)
                }
                _ => continue,
            }
        } else {
            None
        };
        let now = s.clock.now();
        {
            let mut rec = lock(&s.rec);
            let at = rec.history.len();
            rec.pending
                .insert(s.node, (name.clone(), now, s.config_version, None, at));
        }
        let progress = || {};
        let outcome = match s.flags.take(|k| {
            matches!(
                k,
                Kill::BeforeCommit | Kill::PauseBeforeCommit(_) | Kill::OnceDuringCommit
            )
        }) {
            Some(kill) => {
                match cycle::plan(
                    &s.client,
                    Some(&s.store),
                    &s.config,
                    &instance,
                    now,
                    &progress,
                )
                .await
                {
                    Ok(plan) => {
                        if kill == Kill::OnceDuringCommit {
                            {
                                let mut rec = lock(&s.rec);
                                rec.covered("a manual once between a daemon's plan and its commit");
                                rec.story.push(format!(
                                    "t={} node {} has planned {name}; a manual `once` runs before it commits",
                                    s.truth.now() - EPOCH,
                                    s.node
                                ));
                                rec.once_now = true;
                            }
                            SimSleep {
                                clock: s.truth.clone(),
                                until_ms: s.truth.now_ms() + 1,
                            }
                            .await;
                            cycle::commit(&s.store, &s.config, &name, plan, now, fence.as_ref())
                                .await
                        } else if let Kill::PauseBeforeCommit(secs) = kill {
                            {
                                let mut rec = lock(&s.rec);
                                rec.covered("paused between a plan and its commit");
                                rec.story.push(format!(
                                    "t={} node {} pauses {secs}s between planning and committing {name}",
                                    s.truth.now() - EPOCH,
                                    s.node
                                ));
                            }
                            SimSleep {
                                clock: s.truth.clone(),
                                until_ms: s.truth.now_ms() + secs * 1000,
                            }
                            .await;
                            cycle::commit(&s.store, &s.config, &name, plan, now, fence.as_ref())
                                .await
                        } else {
                            let mut rec = lock(&s.rec);
                            rec.covered("killed before a commit");
                            rec.story.push(format!(
                                "t={} node {} dies before committing {name}",
                                s.truth.now() - EPOCH,
                                s.node
                            ));
                            drop(rec);
                            dies(&s);
                            return;
                        }
                    }
                    Err(CycleError::Poll(e)) => {
                        let _ = cycle::source_failed(&s.store, &s.config, &name, &e, now).await;
                        Err(CycleError::Poll(e))
                    }
                    Err(e) => Err(e),
                }
            }
            None => {
                cycle::run(
                    &s.client,
                    &s.store,
                    &s.config,
                    &instance,
                    now,
                    fence.as_ref(),
                    &progress,
                )
                .await
            }
        };
        enqueued |= match &outcome {
            Ok(summary) => summary.enqueued > 0,
            Err(CycleError::Poll(_)) => true, // a blind alert may have been enqueued
            Err(_) => false,
        };
        {
            let mut rec = lock(&s.rec);
            match &outcome {
                Ok(summary) if summary.rested => {
                    rec.covered("a repeated overview rested (checked by a scan beside it)")
                }
                Err(CycleError::Rest(e)) => {
                    let line = format!("t={}: {e}", s.truth.now() - EPOCH);
                    rec.wrong_rests.push(line);
                }
                _ => {}
            }
            let pending = rec.pending.remove(&s.node);
            if let (Ok(summary), Some((instance, now, config, Some((chats, read_whole, _)), at))) =
                (&outcome, pending)
            {
                let poll = History::Poll(model::Poll {
                    instance,
                    now,
                    chats,
                    read_whole,
                    total: summary.chats,
                    config,
                });
                if summary.rows_written == 0 {
                    // A plan that had nothing to write commits nothing, so no generation
                    // guards it: an acknowledgement or a mute between its plan and its
                    // "commit" is not refused, and the plan never saw it. The model judges
                    // the poll where its plan read the store (seed 479885: the model had
                    // the poll tell an acknowledgement made after its plan).
                    for p in rec.pending.values_mut() {
                        if p.4 >= at {
                            p.4 += 1;
                        }
                    }
                    let at = at.min(rec.history.len());
                    rec.history.insert(at, poll);
                } else {
                    rec.history.push(poll);
                }
            }
            if let Err(CycleError::Store(e)) = &outcome
                && e.is_conflict()
            {
                rec.covered("a commit lost to another writer");
            }
        }
        if s.flags.take(|k| *k == Kill::AfterCommit).is_some() && outcome.is_ok() {
            let mut rec = lock(&s.rec);
            rec.covered("killed after a commit");
            rec.story.push(format!(
                "t={} node {} dies after committing {name}",
                s.truth.now() - EPOCH,
                s.node
            ));
            drop(rec);
            dies(&s);
            return;
        }
    }
    if s.housekeeping {
        let _ = s.outbox.flush().await;
        if let Ok(retired) = cycle::retire_unwatched(&s.store, &s.config, s.clock.now_ms()).await {
            let mut rec = lock(&s.rec);
            for (instance, sent) in retired {
                enqueued |= sent > 0;
                let now = s.clock.now();
                let config = s.config_version;
                rec.covered("a removed instance retired");
                rec.story.push(format!(
                    "t={} node {} retires {instance} (no longer in the config)",
                    s.truth.now() - EPOCH,
                    s.node
                ));
                rec.history.push(History::Removed {
                    instance,
                    now,
                    config,
                });
            }
        }
        let _ = s.outbox.kill_orphans(&s.config.channel_names()).await;
    }
    if !(enqueued || s.deliver) {
        return;
    }
    let mut next_due: Option<i64> = None;
    for c in &s.config.channels {
        let rx = SimReceiver {
            channel: c.name.clone(),
            node: s.node,
            clock: s.truth.clone(),
            timeout: s.config.delivery.timeout.as_secs() as i64,
            faults: s.faults.clone(),
            rec: s.rec.clone(),
            flags: s.flags.clone(),
            am: (c.name == "am").then(|| s.am.clone()).flatten(),
        };
        let _ = deliver::drain_channel(&s.outbox, &c.name, &rx).await;
        if let Ok(Some(ms)) = s
            .outbox
            .store()
            .next_due_in_ms(&c.name, s.clock.now_ms())
            .await
        {
            let at = s.truth.now() + (ms.max(0) + 999) / 1000;
            next_due = Some(next_due.map_or(at, |n| n.min(at)));
        }
    }
    *lock(&s.flags.next_due) = next_due;
    if s.refresh
        && let Some(am) = s.am.as_ref().and_then(|c| c.alertmanager())
    {
        let now = s.clock.now();
        let config = s.config.clone();
        let here = |i: &str| config.instance(i).is_some();
        if let Ok(alerts) =
            deliver::alertmanager_batch(&s.store, "am", am, &s.config.policy, now, here).await
        {
            lock(&s.rec).am_apply(&alerts);
        }
    }
}

// ------------------------------------------------------------------------------ config

#[derive(Debug, Clone)]
struct Settings {
    tiers: Vec<(u64, Vec<&'static str>)>,
    stop_on: &'static str,
    removed: Vec<usize>,
    auto_replies: bool,
    ignore: Option<usize>,
    absent_polls: u32,
}

fn config_text(plan: &Plan, s: &Settings, store: &str) -> String {
    let mut t = String::new();
    let _ = writeln!(
        t,
        "[wawp]\nbase_url = \"http://127.0.0.1:9\"\npage_size = 0\n"
    );
    for i in (0..plan.instances).filter(|i| !s.removed.contains(i)) {
        let _ = writeln!(
            t,
            "[[instance]]\nname = \"{}\"\ninstance_id = \"id{i}\"\naccess_token = \"tok\"\n",
            instance_name(i)
        );
    }
    let _ = writeln!(
        t,
        "[sla]\npoll_interval = \"{}s\"\nstop_on = \"{}\"\nabsent_polls = {}\nnudge_unread = {}\nblind_after = \"10m\"",
        plan.poll, s.stop_on, s.absent_polls, plan.nudge
    );
    if s.auto_replies {
        let _ = writeln!(t, "auto_replies = [\"Thanks for contacting*\"]");
    }
    if plan.business_hours {
        let _ = writeln!(
            t,
            "[sla.business_hours]\ntimezone = \"Africa/Cairo\"\nmon = \"09:00-18:00\"\ntue = \"09:00-18:00\"\nwed = \"09:00-13:00,14:00-18:00\"\nthu = \"09:00-18:00\"\nsun = \"10:00-14:00\""
        );
    }
    if let Some(chat) = s.ignore {
        let _ = writeln!(
            t,
            "\n[[rule]]\nmatch = [\"2010?0000{chat:03}@c.us\"]\nignore = true"
        );
    }
    let mut tiers = s.tiers.clone();
    tiers.sort_by_key(|t| t.0);
    for (after, chans) in &tiers {
        let list: Vec<String> = chans.iter().map(|c| format!("\"{c}\"")).collect();
        let _ = writeln!(
            t,
            "\n[[escalation]]\nafter = \"{after}s\"\nnotify = [{}]",
            list.join(", ")
        );
    }
    let _ = writeln!(
        t,
        "\n[store]\n{store}\n\n[delivery]\nretry_for = \"24h\"\ntimeout = \"30s\""
    );
    if plan.postgres {
        let _ = writeln!(t, "\n[ha]\nlease = \"{}s\"", (plan.poll * 3).max(30));
    }
    let _ = writeln!(
        t,
        "\n[[channel]]\nname = \"slack\"\ntype = \"webhook\"\nurl = \"http://127.0.0.1:9/hook\"\n\n[[channel]]\nname = \"pd\"\ntype = \"pagerduty\"\nrouting_key = \"key\"\nurl = \"http://127.0.0.1:9/pd\"\n\n[[channel]]\nname = \"am\"\ntype = \"alertmanager\"\nurls = [\"http://127.0.0.1:9\"]\nresend = \"5m\""
    );
    t
}

// ------------------------------------------------------------------------------ the run

/// What a seed's run found.
pub struct Outcome {
    pub plan: Plan,
    pub violations: Vec<String>,
    pub story: Vec<String>,
    pub coverage: BTreeMap<&'static str, usize>,
    /// Invariant → how many times it was checked (a firing, a notice, a due tier...).
    pub checks: BTreeMap<&'static str, usize>,
    pub received: usize,
    pub sim_hours: f64,
}

/// Runs `plan` on a fresh store: `pg` is a PostgreSQL server's admin URL for a fresh
/// database, or `None` for SQLite in a temporary directory.
pub fn run(plan: &Plan, pg: Option<&str>) -> Outcome {
    // The product draws from this thread's `fastrand` (the outbox's backoff jitter, its
    // owner name), and the runtime below runs everything on this thread: seeded by the
    // plan, a seed replays exactly, whatever ran on the thread before.
    fastrand::seed(plan.seed);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a runtime");
    rt.block_on(run_async(plan, pg))
}

/// Where a run keeps its SQLite file and config: memory (`/dev/shm`) where there is one.
/// No invariant depends on the file surviving a power cut: a killed node is a process
/// dying in this one, whose writes the kernel already holds, so the disk's flushes (at
/// each WAL checkpoint, and when the file is made) are pure cost here.
fn scratch_dir() -> tempfile::TempDir {
    let shm = std::path::Path::new("/dev/shm");
    shm.is_dir()
        .then(|| tempfile::tempdir_in(shm).ok())
        .flatten()
        .unwrap_or_else(|| tempfile::tempdir().expect("a temporary directory"))
}

async fn run_async(plan: &Plan, pg: Option<&str>) -> Outcome {
    let dir = scratch_dir();
    let truth = Clock::manual(EPOCH * 1000);
    let (location, store_line) = match pg {
        Some(url) => (
            Location::Postgres(inbox_sla::secret::Secret::new(url.to_string())),
            format!("url = \"{url}\""),
        ),
        None => {
            let path = dir.path().join("state.db");
            (
                Location::Sqlite(path.clone()),
                format!("path = \"{}\"", path.display()),
            )
        }
    };
    let mut settings = Settings {
        tiers: plan.tiers.clone(),
        stop_on: plan.stop_on,
        removed: Vec::new(),
        auto_replies: false,
        ignore: None,
        absent_polls: plan.absent_polls,
    };
    let load = |s: &Settings| {
        Config::from_toml(
            &config_text(plan, s, &store_line),
            &dir.path().join("config.toml"),
        )
        .unwrap_or_else(|e| panic!("seed {}: the simulated config is invalid: {e}", plan.seed))
    };
    let rec: Shared<Recorder> = Arc::default();
    let world: Shared<Vec<Inbox>> = Arc::new(Mutex::new(
        (0..plan.instances)
            .map(|i| Inbox {
                chats: (0..plan.chats)
                    .map(|c| WChat {
                        id: jid(i, c),
                        name: format!("Customer {i}.{c}"),
                        unread: 0,
                        last: Some(Msg {
                            id: format!("old-{i}-{c}"),
                            ts: EPOCH - 86400 - c as i64,
                            from_me: true,
                            body: "welcome".into(),
                        }),
                        archived: false,
                    })
                    .collect(),
                faults: VecDeque::new(),
            })
            .collect(),
    ));
    let faults: Shared<HashMap<String, VecDeque<RxFault>>> = Arc::default();
    let mut config = Arc::new(load(&settings));
    lock(&rec).configs.push(config.clone());
    let db_clock = match pg {
        Some(_) => DbClock::Injected(truth.clone()),
        None => DbClock::Server,
    };
    let open = |clock: DbClock| {
        let location = location.clone();
        async move { Store::open_with(&location, clock).await }
    };
    let mut nodes = Vec::new();
    for id in 0..plan.nodes {
        let clock = Clock::manual(EPOCH * 1000);
        let store = open(db_clock.clone()).await.expect("the store opens");
        nodes.push(Node {
            id,
            outbox: Arc::new(Outbox::new(
                store.clone(),
                clock.clone(),
                config.delivery.retry_for,
                config.delivery.timeout,
            )),
            clock,
            skew: 0,
            store,
            flags: Arc::default(),
            work: None,
            client: None,
            dead_until: None,
            paused_until: 0,
            last_refresh: -3600,
            last_housekeeping: -3600,
        });
    }
    // The Alertmanager channel is made of what no reload here changes (the channels, the
    // poll interval, the HA lease: all the plan's), so one serves the whole run.
    let am_channel = am_channel(plan, &config);
    let end = plan.hours * 3600;
    let mut events: VecDeque<Event> = plan.events.iter().cloned().collect();
    let mut msg_seq = 0u64;
    let mut t = 0i64;
    let mut calm = false;
    while t <= end + CALM {
        truth.set_ms((EPOCH + t) * 1000);
        if !calm && t > end {
            // The calm stretch has no faults: what the plan queued and no send or poll
            // used up goes now. (Faults are used up by sends, not by time, so a long
            // chain queued late would otherwise stretch past the liveness window: a
            // receiver failing for an hour and a half is the plan's doing, not a defect.)
            calm = true;
            lock(&faults).clear();
            for inbox in lock(&world).iter_mut() {
                inbox.faults.clear();
            }
        }
        // The world moves.
        while events.front().is_some_and(|e| e.at <= t) {
            let Some(e) = events.pop_front() else { break };
            msg_seq += 1;
            let now = EPOCH + t;
            let line = apply(
                &e,
                now,
                msg_seq,
                &world,
                &faults,
                &mut nodes,
                &mut settings,
                &rec,
            );
            let changed = matches!(e.what, What::Reload(_));
            if changed {
                let next = Arc::new(load(&settings));
                lock(&rec).configs.push(next.clone());
                // Every node's housekeeping looks at once, as the daemon's does after a
                // reload (the housekeeping loop starts with the new configuration).
                for n in nodes.iter_mut() {
                    n.last_housekeeping = -3600;
                }
                for n in &nodes {
                    n.outbox
                        .set_limits(next.delivery.retry_for, next.delivery.timeout);
                }
                config = next;
            }
            if let What::Mute { chat, secs } = e.what {
                for i in 0..plan.instances {
                    let j = jid(i, chat);
                    let until = now + secs;
                    if nodes[0]
                        .store
                        .mute(&j, until, Some("sim"), now)
                        .await
                        .is_ok()
                    {
                        lock(&rec).history.push(History::Muted { jid: j, until });
                    }
                }
            }
            if let What::Ack { chat, secs } = e.what {
                for i in 0..plan.instances {
                    let j = jid(i, chat);
                    let name = instance_name(i);
                    let done = nodes[0]
                        .store
                        .acknowledge(Some(&name), &j, "sim", now, now + secs)
                        .await;
                    if let Ok(inbox_sla::store::Acknowledged::Done { .. }) = done {
                        let mut rec = lock(&rec);
                        rec.covered("an open episode acknowledged");
                        rec.history.push(History::Acked {
                            instance: name,
                            jid: j,
                            at: now,
                            until: now + secs,
                        });
                    }
                }
            }
            if let What::Once = e.what {
                run_once(
                    plan, &config, &location, &db_clock, &world, &rec, &faults, &truth, now,
                )
                .await;
            }
            if let Some(line) = line {
                lock(&rec).story.push(format!("t={} {line}", e.at));
            }
        }
        // Every node does what is due.
        let version = lock(&rec).configs.len() - 1;
        for n in nodes.iter_mut() {
            n.clock.set_ms((EPOCH + t + n.skew) * 1000);
            if let Some(until) = n.dead_until {
                if t < until {
                    continue;
                }
                // Restarted: a new process, a new claim owner, the same store.
                n.dead_until = None;
                n.flags = Arc::default();
                n.client = None;
                n.outbox = Arc::new(Outbox::new(
                    n.store.clone(),
                    n.clock.clone(),
                    config.delivery.retry_for,
                    config.delivery.timeout,
                ));
            }
            if t < n.paused_until {
                continue;
            }
            if n.work.is_none() {
                let polls: Vec<usize> = (0..plan.instances)
                    .filter(|i| {
                        let offset = (plan.poll * *i as i64 / plan.instances as i64) / STEP * STEP;
                        (t - offset).rem_euclid(plan.poll) == 0
                    })
                    .collect();
                let refresh = t - n.last_refresh >= RESEND;
                let housekeeping = t - n.last_housekeeping >= HOUSEKEEPING;
                let due = lock(&n.flags.next_due).is_some_and(|at| EPOCH + t >= at);
                if polls.is_empty() && !refresh && !housekeeping && !due {
                    continue;
                }
                if refresh {
                    n.last_refresh = t;
                }
                if housekeeping {
                    n.last_housekeeping = t;
                }
                if n.client.as_ref().is_none_or(|(v, _)| *v != version) {
                    // Every rest the client takes is checked by scanning beside it.
                    let client = WawpClient::with_transport(
                        &config.wawp,
                        Arc::new(SimWawp {
                            node: n.id,
                            world: world.clone(),
                            rec: rec.clone(),
                        }),
                    )
                    .checking_rests();
                    n.client = Some((version, client));
                }
                let Some((_, client)) = n.client.clone() else {
                    unreachable!("the client was just built")
                };
                n.work = Some(Box::pin(step(Step {
                    node: n.id,
                    node_name: format!("node-{}", n.id),
                    config: config.clone(),
                    config_version: version,
                    store: n.store.clone(),
                    outbox: n.outbox.clone(),
                    client,
                    clock: n.clock.clone(),
                    truth: truth.clone(),
                    rec: rec.clone(),
                    faults: faults.clone(),
                    flags: n.flags.clone(),
                    am: am_channel.clone(),
                    polls,
                    deliver: due || refresh,
                    refresh,
                    housekeeping,
                    ha: plan.postgres,
                })));
            }
            if let Some(work) = n.work.as_mut()
                && drive(work).await
            {
                n.work = None;
            }
            if n.flags.dying.load(std::sync::atomic::Ordering::SeqCst) {
                n.work = None; // the process is gone: whatever it held in memory is lost
                n.dead_until = Some(t + 30);
            }
        }
        if std::mem::take(&mut lock(&rec).once_now) {
            run_once(
                plan,
                &config,
                &location,
                &db_clock,
                &world,
                &rec,
                &faults,
                &truth,
                EPOCH + t,
            )
            .await;
        }
        t += STEP;
    }
    // Let every node finish what it started (a send still in flight), time running on as
    // ever: claims keep their meaning.
    let mut grace = 0;
    while nodes.iter().any(|n| n.work.is_some()) && grace < 600 {
        t += STEP;
        grace += STEP;
        truth.set_ms((EPOCH + t) * 1000);
        for n in nodes.iter_mut() {
            n.clock.set_ms((EPOCH + t + n.skew) * 1000);
            if let Some(work) = n.work.as_mut()
                && drive(work).await
            {
                n.work = None;
            }
        }
    }
    let now = EPOCH + t;
    let rec = std::mem::take(&mut *lock(&rec));
    let mut checks = rec.checks.clone();
    let violations = check(&rec, &config, now, &mut checks);
    Outcome {
        plan: plan.clone(),
        violations,
        story: rec.story.clone(),
        coverage: rec.coverage.clone(),
        checks,
        received: rec.received.len(),
        sim_hours: (end + CALM) as f64 / 3600.0,
    }
}

type AmChannel = Option<Arc<notify::Channel>>;

thread_local! {
    /// Alertmanager channels by (poll interval, HA): building channels builds an HTTP
    /// client, which reads the system's CA certificates (milliseconds, a tenth of a seed's
    /// time when done at each reload); the simulator never sends through it.
    static AM_CHANNELS: std::cell::RefCell<HashMap<(i64, bool), AmChannel>> = Default::default();
}

fn am_channel(plan: &Plan, config: &Config) -> AmChannel {
    AM_CHANNELS.with(|cache| {
        cache
            .borrow_mut()
            .entry((plan.poll, plan.postgres))
            .or_insert_with(|| {
                notify::build(config)
                    .ok()
                    .and_then(|c| c.get("am").cloned())
                    .filter(|c| c.alertmanager().is_some())
            })
            .clone()
    })
}

/// A manual `once` on the same store: a process of its own (its own claim owner) polls
/// every instance and delivers, then exits.
#[allow(clippy::too_many_arguments)]
async fn run_once(
    plan: &Plan,
    config: &Arc<Config>,
    location: &Location,
    db_clock: &DbClock,
    world: &Shared<Vec<Inbox>>,
    rec: &Shared<Recorder>,
    faults: &Shared<HashMap<String, VecDeque<RxFault>>>,
    truth: &Clock,
    now: i64,
) {
    let Ok(store) = Store::open_with(location, db_clock.clone()).await else {
        return;
    };
    lock(rec).covered("a manual once beside the daemon");
    let clock = Clock::manual(now * 1000);
    let outbox = Arc::new(Outbox::new(
        store.clone(),
        clock.clone(),
        config.delivery.retry_for,
        config.delivery.timeout,
    ));
    let once_node = 99;
    let client = WawpClient::with_transport(
        &config.wawp,
        Arc::new(SimWawp {
            node: once_node,
            world: world.clone(),
            rec: rec.clone(),
        }),
    );
    let version = lock(rec).configs.len() - 1;
    let mut work: Work = Box::pin(step(Step {
        node: once_node,
        node_name: "once".into(),
        config: config.clone(),
        config_version: version,
        store,
        outbox,
        client,
        clock,
        truth: truth.clone(),
        rec: rec.clone(),
        faults: faults.clone(),
        flags: Arc::default(),
        am: None,
        polls: (0..plan.instances).collect(),
        deliver: true,
        refresh: false,
        housekeeping: false,
        ha: false,
    }));
    // A `once` run finishes: a slow receiver is waited for in simulated time.
    let start = truth.now_ms();
    while !drive(&mut work).await {
        truth.set_ms(truth.now_ms() + 1000);
    }
    truth.set_ms(start);
}

/// Applies one world event; returns its line of the story.
#[allow(clippy::too_many_arguments)]
fn apply(
    e: &Event,
    now: i64,
    seq: u64,
    world: &Shared<Vec<Inbox>>,
    faults: &Shared<HashMap<String, VecDeque<RxFault>>>,
    nodes: &mut [Node],
    settings: &mut Settings,
    rec: &Shared<Recorder>,
) -> Option<String> {
    let mut w = lock(world);
    let msg = |from_me: bool, body: &str| Msg {
        id: format!("m{seq}"),
        ts: now,
        from_me,
        body: body.to_string(),
    };
    Some(match &e.what {
        What::Write { inst, chat } => {
            let c = &mut w[*inst].chats[*chat];
            c.unread += 1;
            c.last = Some(msg(false, "hello? anyone there?"));
            c.archived = false;
            format!("customer {} writes ({} unread)", c.id, c.unread)
        }
        What::Read { inst, chat } => {
            let c = &mut w[*inst].chats[*chat];
            c.unread = 0;
            format!("an agent reads {}", c.id)
        }
        What::Reply { inst, chat } => {
            let c = &mut w[*inst].chats[*chat];
            c.unread = 0;
            c.last = Some(msg(true, "On it!"));
            format!("an agent answers {}", c.id)
        }
        What::AutoReply { inst, chat } => {
            let c = &mut w[*inst].chats[*chat];
            c.last = Some(msg(true, AWAY));
            format!("the away message goes to {}", c.id)
        }
        What::Archive { inst, chat } => {
            let c = &mut w[*inst].chats[*chat];
            c.archived = true;
            format!("{} is archived (gone from the overview)", c.id)
        }
        What::Unarchive { inst, chat } => {
            let c = &mut w[*inst].chats[*chat];
            c.archived = false;
            format!("{} is back in the overview", c.id)
        }
        What::Rename { inst, chat } => {
            let c = &mut w[*inst].chats[*chat];
            c.name = format!("{} (renamed {seq})", c.name);
            format!("{} is renamed", c.id)
        }
        What::Engine { inst, fault, polls } => {
            for _ in 0..*polls {
                w[*inst].faults.push_back(*fault);
            }
            format!(
                "the engine of {} answers {fault:?} for {polls} polls",
                instance_name(*inst)
            )
        }
        What::Receiver {
            channel,
            fault,
            count,
        } => {
            let mut f = lock(faults);
            let q = f.entry(CHANNELS[*channel].to_string()).or_default();
            for _ in 0..*count {
                q.push_back(*fault);
            }
            format!(
                "receiver {} answers {fault:?} {count} times",
                CHANNELS[*channel]
            )
        }
        What::Reload(change) => {
            match change {
                Change::Tiers(t) => settings.tiers = t.clone(),
                Change::StopOn(s) => settings.stop_on = s,
                Change::RemoveInstance(i) => {
                    // Keep at least one instance.
                    if settings.removed.len() + 1 < w.len() && !settings.removed.contains(i) {
                        settings.removed.push(*i);
                    }
                }
                Change::RestoreInstance(i) => settings.removed.retain(|r| r != i),
                Change::AutoReplies(on) => settings.auto_replies = *on,
                Change::Ignore(c) => settings.ignore = *c,
                Change::AbsentPolls(n) => settings.absent_polls = *n,
            }
            lock(rec).covered("config reloaded");
            format!("reload: {change:?}")
        }
        What::Mute { chat, secs } => format!("chat #{chat} muted for {secs}s"),
        What::Ack { chat, secs } => format!("chat #{chat} acknowledged for {secs}s"),
        What::Kill { node, at } => {
            if let Some(n) = nodes.get(*node) {
                *lock(&n.flags.armed) = Some(*at);
            }
            format!("node {node} will be killed: {at:?}")
        }
        What::Once => "an operator runs `inbox-sla once`".to_string(),
        What::Skew { node, secs } => {
            if let Some(n) = nodes.get_mut(*node) {
                n.skew = *secs;
                lock(rec).covered("a node's clock skewed");
            }
            format!("node {node}'s clock is {secs:+}s off")
        }
        What::Pause { node, secs } => {
            if let Some(n) = nodes.get_mut(*node) {
                n.paused_until = (now - EPOCH) + secs;
                let mut rec = lock(rec);
                rec.covered("a node paused");
                if n.work.is_some() {
                    // Paused in the middle of its work, perhaps of a send: like a crash
                    // between a receiver's answer and its record, that one send may be
                    // made again by a node that takes the claim over (at least once).
                    rec.unrecorded_accepts += 1;
                    rec.covered("a node paused in the middle of a send");
                }
            }
            format!("node {node} is paused for {secs}s")
        }
    })
}

// ------------------------------------------------------------------------------ invariants

type FiringKey = (String, String, i64, u64, String);
/// (instance, chat, episode start, channel, ended as no longer watched)
type EpisodeKey = (String, String, i64, String, bool);

/// The invariants, checked after the run: against the model, and against what each
/// receiver got in the order it got it.
fn check(
    rec: &Recorder,
    end_config: &Config,
    now: i64,
    checks: &mut BTreeMap<&'static str, usize>,
) -> Vec<String> {
    let mut checked = |what: &'static str| *checks.entry(what).or_insert(0) += 1;
    let mut out = Vec::new();
    let mut m = model::Model::default();
    let mut mutes: HashMap<String, i64> = HashMap::new();
    for h in &rec.history {
        match h {
            History::Poll(p) => {
                let config = &rec.configs[p.config];
                m.poll(p, config, |j, t| {
                    mutes.get(j).is_some_and(|until| *until > t)
                });
            }
            History::Removed {
                instance,
                now,
                config,
            } => m.remove_instance(instance, *now, &rec.configs[*config]),
            History::Muted { jid, until } => {
                mutes.insert(jid.clone(), *until);
            }
            History::Acked {
                instance,
                jid,
                at,
                until,
            } => m.acknowledge(instance, jid, *at, *until),
        }
    }
    let per_chat = |c: &str| c == "pd" || c == "am";
    // What the model says each channel must get. A per-chat channel hears, of the tiers
    // one poll fires for a chat, only the highest.
    let mut expected: HashMap<FiringKey, usize> = HashMap::new();
    let mut highest: HashMap<(usize, String, String, String), (u64, i64)> = HashMap::new();
    for f in &m.firings {
        for c in &f.channels {
            if per_chat(c) {
                let k = (f.poll, f.instance.clone(), f.jid.clone(), c.clone());
                let e = highest.entry(k).or_insert((f.after, f.start));
                if f.after > e.0 {
                    *e = (f.after, f.start);
                }
            } else {
                *expected
                    .entry((
                        f.instance.clone(),
                        f.jid.clone(),
                        f.start,
                        f.after,
                        c.clone(),
                    ))
                    .or_insert(0) += 1;
            }
        }
    }
    for ((_, inst, jid, c), (after, start)) in highest {
        *expected.entry((inst, jid, start, after, c)).or_insert(0) += 1;
    }
    let due_at: HashMap<(String, String, i64, u64), i64> = m
        .firings
        .iter()
        .map(|f| ((f.instance.clone(), f.jid.clone(), f.start, f.after), f.at))
        .collect();
    let ended_at: HashMap<(String, String, i64), i64> = m
        .resolves
        .iter()
        .map(|r| ((r.instance.clone(), r.jid.clone(), r.start), r.at))
        .collect();
    let mut expected_resolves: HashMap<EpisodeKey, usize> = HashMap::new();
    for r in &m.resolves {
        for c in &r.channels {
            let unwatched = r.ended == model::Ended::Unwatched;
            let k = (
                r.instance.clone(),
                r.jid.clone(),
                r.start,
                c.clone(),
                unwatched,
            );
            *expected_resolves.entry(k).or_insert(0) += 1;
        }
    }
    let mut expected_acks: HashMap<(String, String, i64, String), (usize, i64)> = HashMap::new();
    for a in &m.acks {
        for c in &a.channels {
            let e = expected_acks
                .entry((a.instance.clone(), a.jid.clone(), a.start, c.clone()))
                .or_insert((0, a.at));
            e.0 += 1;
        }
    }
    let mut got_acks: HashMap<(String, String, i64, String), usize> = HashMap::new();
    // What they got, in order.
    let mut got: HashMap<FiringKey, usize> = HashMap::new();
    let mut got_resolves: HashMap<EpisodeKey, usize> = HashMap::new();
    let mut paged: std::collections::HashSet<(String, String, i64, String)> = Default::default();
    let mut blind: HashMap<(String, String), bool> = HashMap::new();
    let allowance = rec.unrecorded_accepts;
    let mut repeats = 0;
    for r in &rec.received {
        let d = &r.doc;
        let t = r.at - EPOCH;
        match d.status {
            Status::Firing => {
                let Some(tier) = d.tier else { continue };
                for c in d.chats.iter().filter(|c| !c.repeat) {
                    let after = tier.after_seconds;
                    let (inst, ch) = (d.instance.clone(), r.channel.clone());
                    let k = (
                        inst.clone(),
                        c.id.clone(),
                        c.waiting_since,
                        after,
                        ch.clone(),
                    );
                    checked("a page is due by the model, once (per crash)");
                    let n = got.entry(k.clone()).or_insert(0);
                    *n += 1;
                    let want = expected.get(&k).copied().unwrap_or(0);
                    let since = c.waiting_since - EPOCH;
                    if want == 0 {
                        out.push(format!(
                            "t={t}: {ch} was paged for nothing: tier {after}s of {} (waiting since {since}) is not due by the model",
                            c.id
                        ));
                    } else if *n > want + allowance {
                        out.push(format!(
                            "t={t}: {ch} got tier {after}s of {} (waiting since {since}) {n} times ({want} due, {allowance} crashes between an answer and its record)",
                            c.id
                        ));
                    }
                    paged.insert((inst, c.id.clone(), c.waiting_since, ch));
                }
            }
            Status::Resolved => {
                for c in &d.chats {
                    let unwatched = c.reason.as_deref() == Some("unwatched");
                    let (inst, ch) = (d.instance.clone(), r.channel.clone());
                    let since = c.waiting_since - EPOCH;
                    checked("a resolved notice follows a firing and an end");
                    if !paged.contains(&(inst.clone(), c.id.clone(), c.waiting_since, ch.clone())) {
                        out.push(format!(
                            "t={t}: {ch} got a resolved notice for {} (waiting since {since}) before any firing of it",
                            c.id
                        ));
                    }
                    let k = (
                        inst.clone(),
                        c.id.clone(),
                        c.waiting_since,
                        ch.clone(),
                        unwatched,
                    );
                    let n = got_resolves.entry(k.clone()).or_insert(0);
                    *n += 1;
                    let want = expected_resolves.get(&k).copied().unwrap_or(0);
                    if want == 0 || *n > want + allowance {
                        let still = m.waiting_at(&inst, &c.id, c.waiting_since, r.at);
                        out.push(format!(
                            "t={t}: {ch} got a resolved notice{} for {} (waiting since {since}){}, {n} times, {want} by the model",
                            if unwatched { " (no longer watched)" } else { "" },
                            c.id,
                            if still { " while it was still waiting" } else { "" },
                        ));
                    }
                }
            }
            Status::Acknowledged => {
                for c in &d.chats {
                    let (inst, ch) = (d.instance.clone(), r.channel.clone());
                    let since = c.waiting_since - EPOCH;
                    checked("an acknowledgement follows a firing, once per acknowledgement");
                    let k = (inst.clone(), c.id.clone(), c.waiting_since, ch.clone());
                    if !paged.contains(&k) {
                        out.push(format!(
                            "t={t}: {ch} heard that {} (waiting since {since}) was acknowledged before any firing of it",
                            c.id
                        ));
                    }
                    let n = got_acks.entry(k.clone()).or_insert(0);
                    *n += 1;
                    let want = expected_acks.get(&k).map_or(0, |e| e.0);
                    if want == 0 || *n > want + allowance {
                        out.push(format!(
                            "t={t}: {ch} heard that {} (waiting since {since}) was acknowledged {n} times, {want} by the model",
                            c.id
                        ));
                    }
                    if c.acknowledged_by.as_deref() != Some("sim") {
                        out.push(format!(
                            "t={t}: {ch}'s acknowledgement of {} does not say who: {:?}",
                            c.id, c.acknowledged_by
                        ));
                    }
                }
            }
            Status::Blind | Status::Recovered => {
                // The last monitor notice per (instance, channel); a notice repeated is a
                // crash's resend, within the allowance.
                checked("blind and recovered alternate");
                let k = (d.instance.clone(), r.channel.clone());
                let last = blind.insert(k, d.status == Status::Blind);
                match (d.status, last) {
                    (Status::Recovered, None) => out.push(format!(
                        "t={t}: {} got `recovered` for {} without a `blind` before it",
                        r.channel, d.instance
                    )),
                    (Status::Recovered, Some(false)) | (Status::Blind, Some(true)) => {
                        repeats += 1;
                        if repeats > allowance {
                            out.push(format!(
                                "t={t}: {} got `{}` for {} twice in a row ({allowance} crashes between an answer and its record)",
                                r.channel,
                                d.status.as_str(),
                                d.instance
                            ));
                        }
                    }
                    _ => {}
                }
            }
            _ => {}
        }
    }
    // Liveness: every tier due, and every end, an hour before the run ended (time enough
    // for the receivers' last faults and the backoff after them) was told.
    let settled = |at: i64| at <= now - SETTLE;
    for (k, want) in &expected {
        let due = due_at.get(&(k.0.clone(), k.1.clone(), k.2, k.3)).copied();
        if due.is_some_and(settled) {
            checked("liveness: a due tier is told");
        }
        if *want > 0
            && !got.contains_key(k)
            && end_config.channel(&k.4).is_some()
            && due.is_some_and(settled)
        {
            let due = due.map_or(String::new(), |at| format!(", due at t={}", at - EPOCH));
            out.push(format!(
                "{} never got tier {}s of {} (waiting since {}{due})",
                k.4,
                k.3,
                k.1,
                k.2 - EPOCH
            ));
        }
    }
    for (k, want) in &expected_resolves {
        let ended = ended_at.get(&(k.0.clone(), k.1.clone(), k.2)).copied();
        if ended.is_some_and(settled) {
            checked("liveness: an end is told");
        }
        if *want > 0
            && !got_resolves.contains_key(k)
            && end_config.channel(&k.3).is_some()
            && ended.is_some_and(settled)
        {
            out.push(format!(
                "{} never heard that {} (waiting since {}) ended{}",
                k.3,
                k.1,
                k.2 - EPOCH,
                if k.4 { " (no longer watched)" } else { "" }
            ));
        }
    }
    for (k, (_, at)) in &expected_acks {
        if settled(*at) {
            checked("liveness: an acknowledgement is told");
            if !got_acks.contains_key(k) && end_config.channel(&k.3).is_some() {
                out.push(format!(
                    "{} never heard that {} (waiting since {}) was acknowledged (told at t={})",
                    k.3,
                    k.1,
                    k.2 - EPOCH,
                    at - EPOCH
                ));
            }
        }
    }
    // A removed instance is retired: nothing of it stays open.
    for (inst, jid, start, _) in m.open() {
        checked("a removed instance is retired");
        if end_config.instance(&inst).is_none() {
            out.push(format!(
                "{jid} (waiting since {}) of {inst}, no longer in the config, was never retired",
                start - EPOCH
            ));
        }
    }
    // Alertmanager: what is firing there at the end is what still waits, and no more
    // (what changed within the last hour may still be on its way).
    let mut open_am: HashMap<(String, String), i64> = HashMap::new();
    for (inst, jid, start, told) in m.open() {
        if told.iter().any(|c| c == "am") {
            let first = m
                .firings
                .iter()
                .filter(|f| f.instance == inst && f.jid == jid && f.start == start)
                .filter(|f| f.channels.iter().any(|c| c == "am"))
                .map(|f| f.at)
                .min()
                .unwrap_or(now);
            open_am.insert((inst, jid), first);
        }
    }
    let last_end = |inst: &str, jid: &str| {
        m.episodes
            .iter()
            .filter(|e| e.0 == inst && e.1 == jid)
            .filter_map(|e| e.4)
            .max()
    };
    let mut firing_am: std::collections::HashSet<(String, String)> = Default::default();
    for (labels, ends) in &rec.am {
        let l: Value = serde_json::from_str(labels).unwrap_or(Value::Null);
        if *ends <= now {
            continue;
        }
        let inst = l["wawp_instance"].as_str().unwrap_or("").to_string();
        checked("Alertmanager fires what waits and no more");
        match l["alertname"].as_str() {
            Some("WhatsAppChatWaiting") => {
                let chat = l["chat"].as_str().unwrap_or("").to_string();
                if !open_am.contains_key(&(inst.clone(), chat.clone()))
                    && last_end(&inst, &chat).is_none_or(settled)
                {
                    out.push(format!(
                        "Alertmanager still shows {chat} on {inst} firing (until {}) though nothing waits",
                        ends - EPOCH
                    ));
                }
                firing_am.insert((inst, chat));
            }
            Some("WhatsAppMonitorBlind") => out.push(format!(
                "Alertmanager still shows {inst} blind though polling works"
            )),
            _ => {}
        }
    }
    for ((inst, chat), first) in &open_am {
        checked("Alertmanager fires what waits and no more");
        if !firing_am.contains(&(inst.clone(), chat.clone())) && settled(*first) {
            out.push(format!(
                "Alertmanager shows nothing for {chat} on {inst}, which still waits"
            ));
        }
    }
    out.extend(rec.stale_polls.iter().cloned());
    out.extend(rec.wrong_rests.iter().cloned());
    out.sort();
    out.dedup();
    out
}

// ------------------------------------------------------------------------------ shrinking

/// Removes events while the plan still fails, halves first, then one at a time: what is
/// left is the history that matters.
pub fn shrink(plan: &Plan, pg: &dyn Fn() -> Option<String>) -> (Plan, Outcome) {
    let fails = |p: &Plan| {
        let o = run(p, pg().as_deref());
        (!o.violations.is_empty()).then_some(o)
    };
    let mut best = plan.clone();
    let Some(mut outcome) = fails(&best) else {
        let o = run(plan, pg().as_deref());
        return (best, o);
    };
    let mut chunk = best.events.len().div_ceil(2).max(1);
    loop {
        let mut i = 0;
        let mut removed_any = false;
        while i < best.events.len() {
            let mut candidate = best.clone();
            let end = (i + chunk).min(candidate.events.len());
            candidate.events.drain(i..end);
            match fails(&candidate) {
                Some(o) => {
                    best = candidate;
                    outcome = o;
                    removed_any = true;
                }
                None => i += chunk,
            }
        }
        if chunk == 1 && !removed_any {
            break;
        }
        chunk = (chunk / 2).max(1);
    }
    // A shorter run, if it still fails.
    while best.hours > 1 {
        let mut candidate = best.clone();
        candidate.hours -= 1;
        candidate.events.retain(|e| e.at < candidate.hours * 3600);
        match fails(&candidate) {
            Some(o) => {
                best = candidate;
                outcome = o;
            }
            None => break,
        }
    }
    (best, outcome)
}

/// The story of a run: the plan's settings, then what happened, in order.
pub fn story(o: &Outcome) -> String {
    let p = &o.plan;
    let mut s = format!(
        "seed {} on {}: {} node(s), {} instance(s) of {} chats, poll every {}s, {}h then {}h calm\n  tiers {:?}, stop_on {}, absent_polls {}, nudge {}, business hours {}\n",
        p.seed,
        if p.postgres { "PostgreSQL" } else { "SQLite" },
        p.nodes,
        p.instances,
        p.chats,
        p.poll,
        p.hours,
        CALM / 3600,
        p.tiers,
        p.stop_on,
        p.absent_polls,
        p.nudge,
        p.business_hours
    );
    for line in &o.story {
        let _ = writeln!(s, "  {line}");
    }
    let _ = writeln!(s, "violated:");
    for v in &o.violations {
        let _ = writeln!(s, "  {v}");
    }
    s
}
