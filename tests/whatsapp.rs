//! What WhatsApp knows beyond the overview (docs/spec.md sections 2, 4 and 7), through the
//! real binary against the loopback Wawp: an unlinked number is a blind monitor, the clock
//! starts at the first unanswered message, and webhooks ring a doorbell that makes the
//! instance poll at once. Every wait is a deadline loop, never a fixed sleep, except
//! where a test must show that something does *not* happen.

mod common;

use common::*;
use serde_json::Value;
use std::time::{Duration, Instant};

const AMINA: &str = "201001234567@c.us";

fn slack(wawp: &FakeWawp, rx: &Receiver) -> Setup {
    Setup::new(wawp)
        .poll("1s")
        .channel(Channel::slack("oncall", &rx.url))
}

fn episode<'a>(alerts: &'a Value, jid: &str) -> Option<&'a Value> {
    alerts["episodes"]
        .as_array()
        .and_then(|e| e.iter().find(|e| e["id"] == jid))
}

fn metric(base: &str, name: &str) -> Option<String> {
    let (_, text) = get(&format!("{base}/metrics"));
    text.lines()
        .find(|l| l.starts_with(name) && !l.starts_with('#'))
        .map(str::to_owned)
}

// --------------------------------------------------------------------- session health

/// Section 7: the overview keeps answering the old list while the phone is unlinked. The
/// number goes blind after `blind_after`, naming the state and what to do; nothing
/// resolves meanwhile (the chat looks answered in the stale list); once the session is
/// WORKING again, one `recovered`, and only then does the chat resolve.
#[test]
fn an_unlinked_number_whose_overview_still_answers_goes_blind_then_recovers() {
    let (wawp, rx) = (FakeWawp::start(), Receiver::start());
    wawp.session("WORKING");
    // First the overview fails (as engines do for a while after a relink): the session is
    // WORKING, and the gauge says so although no poll has succeeded yet.
    wawp.set(Reply::Status(503, "warming up".into()));
    let env = Env::new(slack(&wawp, &rx).set("sla", "blind_after", "\"4s\"").http());
    let d = env.start();
    let base = d.http_base();
    assert!(
        wait_for(PATIENCE, || metric(&base, "inbox_sla_session_working")
            .is_some_and(
                |l| l.contains("wawp_instance=\"support\"") && l.ends_with(" 1")
            )),
        "{:?}",
        metric(&base, "inbox_sla_session_working")
    );
    wawp.chats(vec![breached_chat()]);
    assert!(
        wait_for(PATIENCE, || rx.accepted().len() == 1),
        "{}",
        d.log()
    );
    assert!(
        slack_texts(&rx)[0].contains("waiting over 2h"),
        "{:?}",
        slack_texts(&rx)
    );

    // Unlinked: the engine still serves its last list, in which the chat now even looks
    // read; no resolved notice may come of it.
    wawp.session("SCAN_QR_CODE");
    wawp.chats(vec![answered(AMINA, "Amina", "on it", now() - 60)]);
    assert!(
        wait_for(PATIENCE, || rx.accepted().len() == 2),
        "{}",
        d.log()
    );
    let blind = rx.accepted()[1].to_string();
    assert_eq!(
        rx.accepted()[1]["text"]
            .as_str()
            .map(|t| t.contains("blind")),
        Some(true),
        "{blind}"
    );
    assert!(
        blind.contains("SCAN_QR_CODE"),
        "the state is named: {blind}"
    );
    assert!(
        blind.contains("scan the QR code in Wawp"),
        "what to do: {blind}"
    );
    assert!(
        wait_for(PATIENCE, || metric(&base, "inbox_sla_session_working")
            .is_some_and(|l| l.ends_with(" 0"))),
        "{:?}",
        metric(&base, "inbox_sla_session_working")
    );
    let alerts = env.alerts();
    let source = &alerts["sources"][0];
    assert_eq!(source["session"], "SCAN_QR_CODE", "{alerts}");
    assert!(source["session_since"].as_i64().is_some(), "{alerts}");
    assert!(episode(&alerts, AMINA).is_some(), "still open: {alerts}");
    let (_, page) = get(&format!("{base}/"));
    assert!(page.contains("WhatsApp session SCAN_QR_CODE for"), "{page}");
    let text = env.run(&["alerts"]);
    assert!(
        text.stdout
            .contains("WhatsApp session SCAN_QR_CODE (not WORKING) since"),
        "{text}"
    );
    let polls = wawp.polls();
    assert!(wait_for(PATIENCE, || wawp.polls() >= polls + 3));
    assert_eq!(
        rx.accepted().len(),
        2,
        "one blind alert; nothing resolved: {:?}",
        slack_texts(&rx)
    );

    wawp.session("WORKING");
    assert!(
        wait_for(PATIENCE, || rx.accepted().len() == 4),
        "{}",
        d.log()
    );
    // The recovered notice and the (now true) resolved one are of different subjects:
    // neither waits for the other.
    let texts = slack_texts(&rx);
    let posts = rx.accepted();
    let recovered = (2..4).find(|&i| texts[i].contains("monitor recovered"));
    let recovered = recovered.unwrap_or_else(|| panic!("{texts:?}"));
    assert!(
        posts[recovered].to_string().contains("WORKING again"),
        "{}",
        posts[recovered]
    );
    assert!(
        texts[5 - recovered].contains("no longer waiting"),
        "{texts:?}"
    );
    assert!(d.log().contains("SCAN_QR_CODE"), "{}", d.log());
}

/// Section 4: an engine without `/v2/session/info` (404) is said once and not asked
/// again; `session_check = false` never asks.
#[test]
fn an_engine_without_the_session_endpoint_is_said_once_and_session_check_false_never_asks() {
    let (wawp, rx) = (FakeWawp::start(), Receiver::start());
    let env = Env::new(slack(&wawp, &rx));
    let d = env.start();
    assert!(wait_for(PATIENCE, || wawp.polls() >= 4), "{}", d.log());
    assert_eq!(wawp.session_queries(), 1, "asked once: {}", d.log());
    assert_eq!(
        d.log().matches("does not serve /v2/session/info").count(),
        1,
        "{}",
        d.log()
    );
    drop(d);

    let wawp = FakeWawp::start();
    wawp.session("SCAN_QR_CODE");
    let env = Env::new(slack(&wawp, &rx).wawp("session_check", "false"));
    let run = env.run(&["once"]);
    assert_eq!(run.code, 0, "{run}");
    assert_eq!(wawp.session_queries(), 0);
}

/// `once` with a session that is not WORKING fails the poll (exit 1) and says why.
#[test]
fn once_says_the_session_is_not_working() {
    let (wawp, rx) = (FakeWawp::start(), Receiver::start());
    wawp.session("STOPPED");
    wawp.chats(vec![breached_chat()]);
    let env = Env::new(slack(&wawp, &rx));
    let run = env.run(&["once"]);
    assert_eq!(run.code, 1, "{run}");
    assert!(run.stderr.contains("STOPPED, not WORKING"), "{run}");
    assert!(rx.posts().is_empty(), "a stale list is not judged");
}

// ----------------------------------------------------------- the first unanswered message

fn three_messages(wawp: &FakeWawp, t: i64) {
    wawp.chats(vec![chat(AMINA, "Amina", 3, "hello??", t - 600)]);
    wawp.history(
        AMINA,
        &[
            ("hello??", t - 600, false),
            ("anyone?", t - 2 * H - 1200, false),
            ("my order is late", t - 3 * H, false),
            ("Sent today", t - 6 * H, true),
            ("where is my order", t - 7 * H, false),
        ],
    );
}

/// Section 2: three customer messages at −3h, −2h20m and −10m, seen for the first time:
/// escalated at once at the 2h tier, waiting since −3h, from one read of unread + 1
/// messages.
#[test]
fn the_clock_starts_at_the_first_unanswered_message() {
    let (wawp, rx) = (FakeWawp::start(), Receiver::start());
    let t = now();
    three_messages(&wawp, t);
    let env = Env::new(slack(&wawp, &rx));
    let run = env.run(&["once"]);
    assert_eq!(run.code, 0, "{run}");
    let queries = wawp.history_queries();
    assert_eq!(queries.len(), 1, "{queries:?}");
    assert_eq!(queries[0]["limit"], "4", "unread + 1");
    assert_eq!(queries[0]["downloadMedia"], "false");
    assert_eq!(queries[0]["chatId"], AMINA);
    assert_eq!(rx.accepted().len(), 1, "escalated at once: {run}");
    assert!(
        slack_texts(&rx)[0].contains("waiting over 2h"),
        "{:?}",
        slack_texts(&rx)
    );
    let alerts = env.alerts();
    assert_eq!(
        episode(&alerts, AMINA).unwrap()["waiting_since"],
        t - 3 * H,
        "{alerts}"
    );
}

/// Section 2: with the history read failing, the episode starts at the overview's −10m;
/// the next cycle reads it, moves the start back to −3h and pages the 2h tier once; later
/// cycles page nothing more.
#[test]
fn a_failed_history_read_is_corrected_at_the_next_cycle_without_a_second_page() {
    let (wawp, rx) = (FakeWawp::start(), Receiver::start());
    let t = now();
    three_messages(&wawp, t);
    wawp.history_fails(Some(503));
    let env = Env::new(slack(&wawp, &rx));
    let run = env.run(&["once"]);
    assert_eq!(
        run.code, 0,
        "a failed history read does not fail the poll: {run}"
    );
    assert!(
        run.stderr.contains("503"),
        "the failed read is logged: {run}"
    );
    assert!(rx.accepted().is_empty(), "−10m is under the SLA");
    let alerts = env.alerts();
    assert_eq!(
        episode(&alerts, AMINA).unwrap()["waiting_since"],
        t - 600,
        "{alerts}"
    );

    wawp.history_fails(None);
    let run = env.run(&["once"]);
    assert_eq!(run.code, 0, "{run}");
    assert_eq!(rx.accepted().len(), 1, "the 2h tier, now due: {run}");
    let alerts = env.alerts();
    assert_eq!(
        episode(&alerts, AMINA).unwrap()["waiting_since"],
        t - 3 * H,
        "{alerts}"
    );
    assert_eq!(
        rx.accepted()[0]["text"].as_str().map(|t| t.contains("2h")),
        Some(true)
    );

    for _ in 0..2 {
        let run = env.run(&["once"]);
        assert_eq!(run.code, 0, "{run}");
    }
    assert_eq!(rx.accepted().len(), 1, "never a second 2h page");
    assert_eq!(
        wawp.history_queries().len(),
        2,
        "read until it succeeded, then no more"
    );
}

/// `wawp.history_lookups` bounds the reads per cycle; the rest are read at later cycles.
#[test]
fn history_reads_are_bounded_per_cycle_and_the_rest_follow() {
    let (wawp, rx) = (FakeWawp::start(), Receiver::start());
    let t = now();
    let ids: Vec<String> = (0..5).map(|i| format!("20100000000{i}@c.us")).collect();
    wawp.chats(
        ids.iter()
            .map(|id| chat(id, "C", 2, "again", t - 60))
            .collect(),
    );
    for id in &ids {
        wawp.history(id, &[("again", t - 60, false), ("first", t - 3 * H, false)]);
    }
    let env = Env::new(slack(&wawp, &rx).wawp("history_lookups", "2"));
    env.run(&["once"]);
    assert_eq!(wawp.history_queries().len(), 2);
    env.run(&["once"]);
    assert_eq!(wawp.history_queries().len(), 4);
    env.run(&["once"]);
    assert_eq!(wawp.history_queries().len(), 5);
    env.run(&["once"]);
    assert_eq!(
        wawp.history_queries().len(),
        5,
        "every start known: no more reads"
    );
    let alerts = env.alerts();
    for id in &ids {
        assert_eq!(
            episode(&alerts, id).unwrap()["waiting_since"],
            t - 3 * H,
            "{alerts}"
        );
    }
}

/// A gateway that answers every path with the overview (Wawp's own routes replaced by one
/// catch-all): the overview's chats, read as a chat's messages, would move Amina's start
/// back nine hours and page at once. A list of chats is not a chat's messages, and an
/// answer larger than a session's state can be is not that: each is a warning that names
/// what was asked; Amina's clock stays at the overview's −10m.
#[test]
fn a_gateway_answering_the_overview_to_every_path_moves_no_start() {
    let (wawp, rx) = (FakeWawp::start(), Receiver::start());
    let t = now();
    let mut chats = vec![chat(AMINA, "Amina", 3, "hello??", t - 600)];
    // Old chats, answered, each with a chat-level timestamp: about 300 KB of overview.
    for i in 0..1_500 {
        let mut c = answered(&format!("2019{i:08}@c.us"), "Customer", "thanks", t - 9 * H);
        c["timestamp"] = (t - 9 * H).into();
        chats.push(c);
    }
    wawp.misroute(Some(Value::Array(chats.clone()).to_string()));
    wawp.chats(chats);
    let env = Env::new(slack(&wawp, &rx));
    let run = env.run(&["once"]);
    assert_eq!(run.code, 0, "{run}");
    assert_eq!(wawp.history_queries().len(), 1, "{run}");
    assert!(
        run.stderr.contains("is not a chat's messages")
            && run.stderr.contains("its elements are chats"),
        "{run}"
    );
    assert!(
        run.stderr.contains("is not a session's state")
            && run.stderr.contains("more than a session's state takes"),
        "{run}"
    );
    assert!(!run.stderr.contains("is not an overview"), "{run}");
    assert!(rx.accepted().is_empty(), "−10m is under the SLA: {run}");
    let alerts = env.alerts();
    assert_eq!(
        episode(&alerts, AMINA).unwrap()["waiting_since"],
        t - 600,
        "{alerts}"
    );
}

// ------------------------------------------------------------------------------- events

fn with_events(wawp: &FakeWawp, rx: &Receiver, key_file: &std::path::Path) -> Setup {
    Setup::new(wawp)
        .poll("60s")
        .channel(Channel::slack("oncall", &rx.url))
        .http()
        .set("events", "path", "\"/hooks/wawp\"")
        .set(
            "events",
            "hmac_key_file",
            &toml_str(&key_file.display().to_string()),
        )
}

fn event(kind: &str, session: &str, id: &str) -> String {
    serde_json::json!({"id": id, "timestamp": now() * 1000, "event": kind,
        "session": session, "engine": "WEBJS", "payload": {"fromMe": true}})
    .to_string()
}

/// Section 7: with `[events]`, a reply resolves within 2 s of its webhook although the
/// poll interval is 60 s; a wrong signature is 401 and a replay is ignored, neither polls.
#[test]
fn a_signed_webhook_makes_the_instance_poll_at_once_and_forgeries_and_replays_do_not() {
    let (wawp, rx) = (FakeWawp::start(), Receiver::start());
    wawp.chats(vec![breached_chat()]);
    let dir = tempfile::tempdir().unwrap();
    let key_file = dir.path().join("hmac");
    std::fs::write(&key_file, "my-secret-key\n").unwrap();
    let env = Env::new(with_events(&wawp, &rx, &key_file));
    let d = env.start();
    assert!(
        wait_for(PATIENCE, || rx.accepted().len() == 1),
        "{}",
        d.log()
    );
    let hook = format!("{}/hooks/wawp", d.http_base());
    let polls = wawp.polls();

    // A forged event: 401, and no poll.
    assert_eq!(
        post_webhook(&hook, &event("message", "12345", "e1"), Some("wrong")),
        401
    );
    assert_eq!(
        post_webhook(&hook, &event("message", "12345", "e1"), None),
        401
    );
    // An event for another instance, or of another kind: taken, ignored.
    assert_eq!(
        post_webhook(
            &hook,
            &event("message", "99999", "e2"),
            Some("my-secret-key")
        ),
        200
    );
    assert_eq!(
        post_webhook(
            &hook,
            &event("presence.update", "12345", "e3"),
            Some("my-secret-key")
        ),
        200
    );
    std::thread::sleep(Duration::from_millis(1500));
    assert_eq!(wawp.polls(), polls, "no poll from forged or foreign events");

    // The reply, then its webhook: resolved within 2 s.
    wawp.chats(vec![answered(AMINA, "Amina", "on it", now())]);
    let sent = Instant::now();
    assert_eq!(
        post_webhook(
            &hook,
            &event("message.any", "12345", "e4"),
            Some("my-secret-key")
        ),
        200
    );
    assert!(
        wait_for(Duration::from_secs(5), || rx.accepted().len() == 2),
        "{}",
        d.log()
    );
    let took = sent.elapsed();
    eprintln!("measured: the reply's resolved notice arrived {took:?} after its webhook");
    assert!(
        took < Duration::from_secs(2),
        "resolved {took:?} after the webhook"
    );
    assert!(
        slack_texts(&rx)[1].contains("no longer waiting")
            || slack_texts(&rx)[1].contains("resolved")
    );

    // A replay of that event: ignored, no poll.
    std::thread::sleep(Duration::from_millis(1100));
    let polls = wawp.polls();
    assert_eq!(
        post_webhook(
            &hook,
            &event("message.any", "12345", "e4"),
            Some("my-secret-key")
        ),
        200
    );
    std::thread::sleep(Duration::from_millis(1500));
    assert_eq!(wawp.polls(), polls, "a replay polls nothing");

    // A body over 1 MiB is refused unread.
    let big = format!(
        "{{\"event\":\"message\",\"x\":\"{}\"}}",
        "a".repeat(1 << 20)
    );
    assert_eq!(post_webhook(&hook, &big, Some("my-secret-key")), 413);
}

/// Section 7: 1,000 events a second for one instance cause at most one poll a second, and
/// the other instance's scheduled polls go on as before.
#[test]
fn a_flood_of_events_polls_at_most_once_a_second_and_starves_no_other_instance() {
    let (wawp, rx) = (FakeWawp::start(), Receiver::start());
    let dir = tempfile::tempdir().unwrap();
    let key_file = dir.path().join("hmac");
    std::fs::write(&key_file, "k3y").unwrap();
    let env = Env::new(
        with_events(&wawp, &rx, &key_file)
            .poll("1s")
            .wawp("max_concurrent", "1")
            .instances(&[("loud", "111"), ("quiet", "222")]),
    );
    let d = env.start();
    assert!(
        wait_for(PATIENCE, || wawp.polls_of("222") >= 2),
        "{}",
        d.log()
    );
    let hook = format!("{}/hooks/wawp", d.http_base());
    let (loud, quiet) = (wawp.polls_of("111"), wawp.polls_of("222"));
    let started = Instant::now();
    let sent = rt().block_on(async {
        let client = reqwest::Client::new();
        let mut tasks = tokio::task::JoinSet::new();
        for i in 0..3000 {
            let (client, hook) = (client.clone(), hook.clone());
            let body = event("message", "111", &format!("flood-{i}"));
            let sig = waha_hmac("k3y", body.as_bytes());
            tasks.spawn(async move {
                // 1,000 a second for three seconds.
                tokio::time::sleep(Duration::from_millis(i as u64)).await;
                client
                    .post(&hook)
                    .header("X-Webhook-Hmac", sig)
                    .body(body)
                    .send()
                    .await
                    .map(|r| r.status().as_u16())
                    .unwrap_or(0)
            });
        }
        let mut ok = 0;
        while let Some(r) = tasks.join_next().await {
            ok += usize::from(r.unwrap() == 200);
        }
        ok
    });
    let elapsed = started.elapsed().as_secs_f64();
    assert_eq!(sent, 3000);
    let loud_polls = wawp.polls_of("111") - loud;
    let quiet_polls = wawp.polls_of("222") - quiet;
    eprintln!(
        "measured: {sent} events in {elapsed:.1}s: {loud_polls} polls of the flooded number, {quiet_polls} of the other (poll_interval 1s)"
    );
    // Events at most once a second, plus the scheduled 1s polls: at most two a second.
    assert!(
        (loud_polls as f64) <= 2.0 * elapsed + 2.0,
        "{loud_polls} polls in {elapsed:.1}s"
    );
    assert!(
        (quiet_polls as f64) >= elapsed - 2.0,
        "the other instance kept its schedule: {quiet_polls} polls in {elapsed:.1}s"
    );
}

// -------------------------------------------------------------------------------- check

#[test]
fn check_says_what_the_config_takes_from_whatsapp() {
    let (wawp, rx) = (FakeWawp::start(), Receiver::start());
    let dir = tempfile::tempdir().unwrap();
    let key_file = dir.path().join("hmac");
    std::fs::write(&key_file, "k3y").unwrap();
    let env = Env::new(with_events(&wawp, &rx, &key_file));
    let run = env.run(&["check"]);
    assert_eq!(run.code, 0, "{run}");
    assert!(run.stdout.contains("session health: on"), "{run}");
    assert!(
        run.stdout
            .contains("first unanswered message: on: up to 50"),
        "{run}"
    );
    assert!(run.stdout.contains("events: on"), "{run}");
    assert!(run.stdout.contains("/hooks/wawp"), "{run}");
    assert!(!run.stdout.contains("k3y"), "{run}");

    let env = Env::new(
        slack(&wawp, &rx)
            .wawp("session_check", "false")
            .wawp("history_lookups", "0"),
    );
    let run = env.run(&["check"]);
    assert!(run.stdout.contains("session health: off"), "{run}");
    assert!(
        run.stdout.contains("first unanswered message: off"),
        "{run}"
    );
    assert!(run.stdout.contains("events: off"), "{run}");

    let env = Env::new(slack(&wawp, &rx).set("events", "path", "\"/hooks/wawp\""));
    let run = env.run(&["check"]);
    assert_eq!(run.code, 2, "{run}");
    assert!(run.stderr.contains("[events] needs [http] listen"), "{run}");
}
