//! The daemon as a library: `daemon::run` in this process under `tokio::time::pause()`,
//! with an in-process Wawp, the console channel and, where a receiver must fail, a
//! webhook receiver in the same runtime, so the time-driven behaviour (the blind alert
//! after `sla.blind_after` and its recovered notice held behind it in backoff, a tier at
//! its time, a reload, a removed instance's return) runs with the real defaults (ten
//! minutes, two hours) in milliseconds and without a single real sleep.
//! What crosses a process boundary (signals, systemd, two nodes) stays in tests/daemon.rs
//! and tests/ha.rs.

#[path = "common/inboxes.rs"]
mod inboxes;

use inbox_sla::alert::Status;
use inbox_sla::clock::Clock;
use inbox_sla::config::{Config, Location};
use inbox_sla::daemon::{self, Control, Setup};
use inbox_sla::store::{Queued, Stage, Store};
use inboxes::{Answer, Inboxes};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

/// 2026-12-05 09:00:00 UTC.
const START_MS: i64 = 1_796_461_200_000;

/// A customer's chat whose last message (theirs) is `at_ms`.
fn waiting(id: &str, at_ms: i64) -> serde_json::Value {
    serde_json::json!({
        "id": id, "name": "Amina", "unreadCount": 1,
        "lastMessage": {"id": format!("m-{at_ms}"), "body": "hello?", "timestamp": at_ms / 1000, "fromMe": false}
    })
}

/// The same chat, answered by an agent at `at_ms`.
fn answered(id: &str, at_ms: i64) -> serde_json::Value {
    serde_json::json!({
        "id": id, "name": "Amina", "unreadCount": 0,
        "lastMessage": {"id": format!("r-{at_ms}"), "body": "on it", "timestamp": at_ms / 1000, "fromMe": true}
    })
}

struct Running {
    control: mpsc::UnboundedSender<Control>,
    task: JoinHandle<Result<(), daemon::Error>>,
    store: PathBuf,
    config: PathBuf,
    _dir: tempfile::TempDir,
}

fn config_text(store: &Path, instances: &[(&str, &str)], extra: &str) -> String {
    let mut t = format!(
        "[wawp]\nbase_url = \"https://wawp.invalid\"\n\n[store]\npath = \"{}\"\n\n\
         [[channel]]\nname = \"ops\"\ntype = \"console\"\n{extra}\n",
        store.display()
    );
    for (name, id) in instances {
        t.push_str(&format!(
            "\n[[instance]]\nname = \"{name}\"\ninstance_id = \"{id}\"\naccess_token = \"secret-token\"\n"
        ));
    }
    t
}

/// Starts the daemon in this task's runtime (paused by the test) with the defaults of
/// section 4 but for what `extra` sets.
async fn start(inboxes: &Inboxes, instances: &[(&str, &str)], extra: &str) -> Running {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("state.db");
    let config = dir.path().join("config.toml");
    std::fs::write(&config, config_text(&store, instances, extra)).unwrap();
    let loaded = Config::load(&config).unwrap();
    let setup = Setup {
        wawp: Some(Arc::new(inboxes.clone())),
        ..Setup::new(config.clone(), loaded, Clock::tokio(START_MS))
    };
    let (control, rx) = mpsc::unbounded_channel();
    let task = tokio::spawn(daemon::run(setup, rx));
    Running {
        control,
        task,
        store,
        config,
        _dir: dir,
    }
}

impl Running {
    /// What the console channel delivered so far, oldest first.
    async fn sent(&self) -> Vec<Queued> {
        let store = Store::open(&Location::Sqlite(self.store.clone()))
            .await
            .unwrap();
        let mut sent = store.outbox(Stage::Sent, 1000).await.unwrap();
        sent.reverse();
        sent
    }

    async fn stop(self) {
        self.control.send(Control::Shutdown).unwrap();
        self.task.await.unwrap().unwrap();
    }
}

/// Lets `d` of simulated time pass; the daemon's timers fire on the way.
async fn pass(d: Duration) {
    tokio::time::sleep(d).await;
}

fn minutes(m: u64) -> Duration {
    Duration::from_secs(m * 60)
}

fn kinds(sent: &[Queued]) -> Vec<String> {
    sent.iter()
        .map(|q| format!("{:?} {}", q.doc.status, q.doc.instance).to_lowercase())
        .collect()
}

/// Section 7: polling that fails for `sla.blind_after` (ten minutes by default) raises one
/// `blind` notice, not earlier and not twice; the first good poll one `recovered`.
#[tokio::test(start_paused = true)]
async fn a_failing_source_goes_blind_after_ten_minutes_and_recovers_once() {
    let inboxes = Inboxes::answering(Answer::Status(404));
    inboxes.set("id-1", Answer::Status(503));
    let d = start(&inboxes, &[("support", "id-1")], "").await;

    pass(minutes(9)).await;
    assert!(
        d.sent().await.is_empty(),
        "nothing before blind_after: {:?}",
        kinds(&d.sent().await)
    );
    pass(minutes(3)).await;
    let sent = d.sent().await;
    assert_eq!(
        kinds(&sent),
        ["blind support"],
        "one blind notice at ten minutes"
    );
    let text = sent[0].doc.message.clone().unwrap_or_default();
    assert!(text.contains("503"), "the notice says what failed: {text}");
    assert!(
        !text.contains("secret-token"),
        "no token in the notice: {text}"
    );

    pass(minutes(30)).await;
    assert_eq!(
        d.sent().await.len(),
        1,
        "still one blind notice half an hour on"
    );

    inboxes.chats("id-1", serde_json::json!([]));
    pass(minutes(2)).await;
    assert_eq!(
        kinds(&d.sent().await),
        ["blind support", "recovered support"]
    );
    d.stop().await;
}

/// Section 2 with the default tier (two hours): a customer waiting since the start is
/// escalated once at two hours (within a poll), and resolved once after the reply.
#[tokio::test(start_paused = true)]
async fn a_waiting_chat_is_escalated_at_two_hours_and_resolved_after_the_reply() {
    let inboxes = Inboxes::answering(Answer::Status(404));
    let chat = "4915112345678@c.us";
    inboxes.set(
        "id-1",
        Answer::Chats(serde_json::json!([waiting(chat, START_MS)])),
    );
    let d = start(&inboxes, &[("support", "id-1")], "").await;

    pass(minutes(118)).await;
    assert!(d.sent().await.is_empty(), "no page before two hours");
    pass(minutes(3)).await;
    let sent = d.sent().await;
    assert_eq!(kinds(&sent), ["firing support"]);
    assert_eq!(sent[0].doc.chats[0].id, chat);
    assert_eq!(sent[0].doc.chats[0].waiting_since, START_MS / 1000);

    pass(minutes(120)).await;
    assert_eq!(d.sent().await.len(), 1, "no second page for the same tier");

    let reply_at = START_MS + 4 * 3600 * 1000;
    inboxes.set(
        "id-1",
        Answer::Chats(serde_json::json!([answered(chat, reply_at)])),
    );
    pass(minutes(2)).await;
    let sent = d.sent().await;
    assert_eq!(kinds(&sent), ["firing support", "resolved support"]);
    assert_eq!(sent[1].doc.status, Status::Resolved);
    d.stop().await;
}

/// Section 7: a reload through the control channel applies the new instance list: a
/// removed instance's open alert ends at the reload, the remaining one goes on.
#[tokio::test(start_paused = true)]
async fn a_reload_ends_the_alerts_of_a_removed_instance() {
    let inboxes = Inboxes::answering(Answer::Status(404));
    inboxes.set(
        "id-1",
        Answer::Chats(serde_json::json!([waiting("1@c.us", START_MS)])),
    );
    inboxes.set(
        "id-2",
        Answer::Chats(serde_json::json!([waiting("2@c.us", START_MS)])),
    );
    let d = start(&inboxes, &[("one", "id-1"), ("two", "id-2")], "").await;
    pass(minutes(125)).await;
    let mut fired = kinds(&d.sent().await);
    fired.sort();
    assert_eq!(fired, ["firing one", "firing two"]);

    let store = d.store.clone();
    std::fs::write(&d.config, config_text(&store, &[("one", "id-1")], "")).unwrap();
    d.control.send(Control::Reload).unwrap();
    pass(minutes(1)).await;
    let sent = d.sent().await;
    let after: Vec<String> = kinds(&sent[2..]);
    assert_eq!(after, ["resolved two"], "the removed instance's alert ends");

    pass(minutes(240)).await;
    assert_eq!(d.sent().await.len(), 3, "nothing more for either");
    d.stop().await;
}

/// A webhook receiver in the test's runtime: answers 503 while `failing`, else 200, and
/// records each body with the status it was answered.
struct Hook {
    url: String,
    failing: Arc<std::sync::atomic::AtomicBool>,
    posts: Arc<std::sync::Mutex<Vec<(u16, serde_json::Value)>>>,
}

impl Hook {
    async fn start() -> Hook {
        use std::sync::atomic::Ordering;
        let failing = Arc::new(std::sync::atomic::AtomicBool::new(true));
        let posts: Arc<std::sync::Mutex<Vec<(u16, serde_json::Value)>>> = Arc::default();
        let (fail, record) = (failing.clone(), posts.clone());
        let app = axum::Router::new().fallback(move |body: axum::body::Bytes| {
            let (fail, record) = (fail.clone(), record.clone());
            async move {
                let status = if fail.load(Ordering::SeqCst) {
                    503
                } else {
                    200
                };
                let value = serde_json::from_slice(&body).unwrap_or_default();
                record.lock().unwrap().push((status, value));
                (axum::http::StatusCode::from_u16(status).unwrap(), "busy")
            }
        });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/hook", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await });
        Hook {
            url,
            failing,
            posts,
        }
    }

    fn heal(&self) {
        self.failing
            .store(false, std::sync::atomic::Ordering::SeqCst);
    }

    /// The statuses of the documents it was sent, with what it answered.
    fn statuses(&self) -> Vec<(u16, String)> {
        self.posts
            .lock()
            .unwrap()
            .iter()
            .map(|(code, v)| (*code, v["status"].as_str().unwrap_or("").to_string()))
            .collect()
    }
}

/// Section 6: a `recovered` never reaches a channel before its `blind`. The blind alert
/// meets a 503 and waits in backoff; polling recovers; the recovered notice waits behind
/// it (on PagerDuty the resolve would come first and the late trigger stay open for
/// ever); once the receiver answers, both go, in order. The real `sla.blind_after`.
#[tokio::test(start_paused = true)]
async fn a_recovered_notice_waits_for_its_blind_alert_in_backoff() {
    let hook = Hook::start().await;
    let inboxes = Inboxes::answering(Answer::Status(500));
    let channel = format!(
        "\n[[channel]]\nname = \"hook\"\ntype = \"webhook\"\nurl = \"{}\"\n",
        hook.url
    );
    let d = start(&inboxes, &[("north", "id-1")], &channel).await;
    pass(minutes(11)).await;
    let tried = hook.statuses();
    assert!(
        !tried.is_empty() && tried.iter().all(|t| *t == (503, "blind".to_string())),
        "the blind alert was tried and refused: {tried:?}"
    );

    inboxes.chats("id-1", serde_json::json!([]));
    pass(minutes(2)).await;
    let told = hook.statuses();
    assert!(
        told.iter().all(|(_, s)| s == "blind"),
        "recovered went out while its blind alert waited in backoff: {told:?}"
    );
    assert_eq!(
        kinds(&d.sent().await),
        ["blind north", "recovered north"],
        "the console, which works, has both"
    );

    hook.heal();
    pass(minutes(30)).await;
    let delivered: Vec<String> = hook
        .statuses()
        .into_iter()
        .filter(|(code, _)| *code == 200)
        .map(|(_, s)| s)
        .collect();
    assert_eq!(delivered, ["blind", "recovered"]);
    d.stop().await;
}

/// A removed instance is forgotten whole (section 6): its blind alert ends at the reload
/// (a decommissioned number answers 404, the monitor goes blind after the default ten
/// minutes, the operator removes it: PagerDuty's blind incident must not stay open for
/// ever), and its memory goes, so that adding it back later in reply mode pages none of
/// the chats that were read while it was away (a mark from before the gap is no mark).
#[tokio::test(start_paused = true)]
async fn a_removed_instance_ends_its_blind_alert_and_comes_back_afresh() {
    let inboxes = Inboxes::answering(Answer::Status(404));
    inboxes.chats("id-north", serde_json::json!([]));
    inboxes.chats("id-south", serde_json::json!([]));
    let reply_mode = "\n[sla]\nstop_on = \"reply\"\n";
    let both = [("north", "id-north"), ("south", "id-south")];
    let d = start(&inboxes, &both, reply_mode).await;
    pass(minutes(2)).await; // north polls fine: reply mode takes its mark
    inboxes.set("id-north", Answer::Status(404)); // then its number is decommissioned
    pass(minutes(12)).await;
    assert_eq!(kinds(&d.sent().await), ["blind north"]);

    let south = [("south", "id-south")];
    std::fs::write(&d.config, config_text(&d.store, &south, reply_mode)).unwrap();
    d.control.send(Control::Reload).unwrap();
    pass(minutes(1)).await;
    let sent = d.sent().await;
    assert_eq!(kinds(&sent), ["blind north", "recovered north"]);
    assert!(
        sent[1]
            .doc
            .message
            .as_deref()
            .is_some_and(|m| m.contains("removed from the configuration")),
        "{:?}",
        sent[1].doc.message
    );

    // Back an hour later: meanwhile customers wrote, and their chats were read.
    pass(minutes(60)).await;
    let at = START_MS + 70 * 60 * 1000;
    let read: Vec<serde_json::Value> = (0..20)
        .map(|i| {
            let mut chat = waiting(&format!("2010000{i:05}@c.us"), at);
            chat["unreadCount"] = 0.into();
            chat
        })
        .collect();
    inboxes.chats("id-north", serde_json::Value::Array(read));
    std::fs::write(&d.config, config_text(&d.store, &both, reply_mode)).unwrap();
    d.control.send(Control::Reload).unwrap();
    pass(minutes(180)).await; // past the two-hour tier
    assert_eq!(
        kinds(&d.sent().await),
        ["blind north", "recovered north"],
        "no page for chats read before north's first look after it came back"
    );
    d.stop().await;
}

/// Section 2, acknowledged: an acknowledgement at 2h01 holds the 2h30m tier until
/// `sla.ack_for` (1h) has passed; the channel that was paged hears once who acknowledged;
/// after the hold the next tier fires; history keeps who acknowledged. A chat with no
/// open episode cannot be acknowledged.
#[tokio::test(start_paused = true)]
async fn an_acknowledgement_holds_the_next_tier_for_ack_for_and_is_told_once() {
    let inboxes = Inboxes::answering(Answer::Status(404));
    let chat = "4915112345678@c.us";
    inboxes.set(
        "id-1",
        Answer::Chats(serde_json::json!([waiting(chat, START_MS)])),
    );
    let tiers = "\n[[escalation]]\nafter = \"2h\"\nnotify = [\"ops\"]\n\n\
                 [[escalation]]\nafter = \"2h30m\"\nnotify = [\"ops\"]\n";
    let d = start(&inboxes, &[("support", "id-1")], tiers).await;
    pass(minutes(121)).await;
    assert_eq!(kinds(&d.sent().await), ["firing support"]);

    let store = Store::open(&Location::Sqlite(d.store.clone()))
        .await
        .unwrap();
    let policy = Config::load(&d.config).unwrap().policy;
    let now = START_MS / 1000 + 121 * 60;
    let nobody = inbox_sla::act::acknowledge(&store, &policy, None, "1@c.us", "Amina", None, now)
        .await
        .unwrap_err();
    assert!(
        matches!(nobody, inbox_sla::act::ActError::NotOpen(_)),
        "{nobody}"
    );
    let acked = inbox_sla::act::acknowledge(&store, &policy, None, chat, "Amina", None, now)
        .await
        .unwrap();
    assert_eq!(acked.instance, "support");
    let ack = acked.episode.ack.clone().unwrap();
    assert_eq!(
        (ack.by.as_str(), ack.at, ack.until),
        ("Amina", now, now + 3600)
    );

    pass(minutes(35)).await; // 2h36m: the 2h30m tier is due, but held
    let sent = d.sent().await;
    assert_eq!(
        kinds(&sent),
        ["firing support", "acknowledged support"],
        "told once, and the next tier held"
    );
    let told = &sent[1].doc.chats[0];
    assert_eq!(told.acknowledged_by.as_deref(), Some("Amina"));
    assert_eq!(told.acknowledged_at, Some(now));

    pass(minutes(20)).await; // 2h56m: still held, still told once
    assert_eq!(d.sent().await.len(), 2);
    pass(minutes(7)).await; // 3h03m: the hold ran out at 3h01m
    let sent = d.sent().await;
    assert_eq!(
        kinds(&sent),
        ["firing support", "acknowledged support", "firing support"]
    );
    assert_eq!(sent[2].doc.tier.unwrap().after_seconds, 9000);

    let reply_at = START_MS + 4 * 3600 * 1000;
    inboxes.set(
        "id-1",
        Answer::Chats(serde_json::json!([answered(chat, reply_at)])),
    );
    pass(minutes(60)).await;
    let past = store.history(0, None).await.unwrap();
    assert_eq!(past.len(), 1);
    assert_eq!(past[0].acked_by.as_deref(), Some("Amina"));
    assert_eq!(past[0].acked_at, Some(now));
    assert_eq!(past[0].ack_paged_at, Some(START_MS / 1000 + 120 * 60));
    let again = inbox_sla::act::acknowledge(&store, &policy, None, chat, "Amina", None, now)
        .await
        .unwrap_err();
    assert!(
        matches!(again, inbox_sla::act::ActError::NotOpen(_)),
        "an ended episode cannot be acknowledged: {again}"
    );
    d.stop().await;
}
