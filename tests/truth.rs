//! The clock tells the truth in an imperfect world, through the real binary: an engine
//! that answers `[]` while it resyncs, a chat that moves between pages while the client
//! pages, automatic replies, a chat read between two polls, reply mode's high-water mark
//! across two `once` runs, tiers across config changes, and input that cannot mean
//! anything. (The same rules are tested table-style in `src/sla/tests.rs`.)

mod common;

use common::*;
use serde_json::json;

fn webhook(wawp: &FakeWawp, rx: &Receiver) -> Setup {
    Setup::new(wawp).channel(Channel::webhook("pager", &rx.url))
}

fn statuses(rx: &Receiver) -> Vec<String> {
    rx.accepted()
        .iter()
        .map(|p| p["status"].as_str().unwrap().to_string())
        .collect()
}

#[test]
fn an_empty_answer_during_a_resync_resolves_nothing_and_pages_nobody_twice() {
    let (wawp, rx) = (FakeWawp::start(), Receiver::start());
    let t = now();
    let inbox = vec![
        chat("201001234567@c.us", "Amina", 1, "hi", t - 3 * H),
        answered("201001234568@c.us", "Omar", "thanks", t - 5 * H),
    ];
    wawp.chats(inbox.clone());
    let env = Env::new(webhook(&wawp, &rx));
    assert_eq!(env.run(&["once"]).code, 0);
    assert_eq!(statuses(&rx), vec!["firing"]);
    wawp.chats(vec![]);
    let resync = env.run(&["once"]);
    assert_eq!(resync.code, 0, "{resync}");
    assert!(resync.stderr.contains("overview incomplete"), "{resync}");
    wawp.chats(inbox);
    assert_eq!(env.run(&["once"]).code, 0);
    assert_eq!(
        statuses(&rx),
        vec!["firing"],
        "no false resolved, no second page"
    );
    assert_eq!(env.alerts()["episodes"][0]["waiting_since"], t - 3 * H);
}

#[test]
fn a_chat_that_moves_between_pages_keeps_its_clock() {
    let (wawp, rx) = (FakeWawp::start(), Receiver::start());
    let t = now();
    let others: Vec<_> = (0..3)
        .map(|i| {
            answered(
                &format!("20100000000{i}@c.us"),
                "Other",
                "ok",
                t - 5 * H - i,
            )
        })
        .collect();
    let hello =
        |ts: i64, unread: i64| chat("201009999999@c.us", "Keeps Writing", unread, "hello??", ts);
    let mut inbox = others.clone();
    inbox.push(hello(t - 3 * H, 1));
    wawp.chats(inbox.clone());
    let env = Env::new(webhook(&wawp, &rx).wawp("page_size", "2"));
    assert_eq!(env.run(&["once"]).code, 0);
    assert_eq!(statuses(&rx), vec!["firing"]);
    // While the client reads page 1, the customer writes again and the chat moves to the
    // top: page 2 no longer has it. The overview looks complete and lacks the chat.
    let mut moved = vec![hello(t - 60, 2)];
    moved.extend(others.clone());
    wawp.script(vec![inbox.clone(), moved.clone(), moved.clone()]);
    assert_eq!(env.run(&["once"]).code, 0);
    // Next poll sees it again.
    wawp.chats(moved);
    assert_eq!(env.run(&["once"]).code, 0);
    assert_eq!(
        statuses(&rx),
        vec!["firing"],
        "no false resolved and no second page"
    );
    let alerts = env.alerts();
    assert_eq!(
        alerts["episodes"][0]["waiting_since"],
        t - 3 * H,
        "the clock did not restart: {alerts}"
    );
}

#[test]
fn an_away_message_in_front_of_unread_messages_answers_nobody() {
    let (wawp, rx) = (FakeWawp::start(), Receiver::start());
    let t = now();
    wawp.chats(vec![json!({
        "id": "201001234567@c.us", "name": "Amina", "unreadCount": 2,
        "lastMessage": {"id": "AWAY1", "body": "Thanks for contacting Acme! We are closed now.",
                        "timestamp": t - 3 * H, "fromMe": true}
    })]);
    let env =
        Env::new(webhook(&wawp, &rx).set("sla", "auto_replies", "[\"Thanks for contacting*\"]"));
    let run = env.run(&["once"]);
    assert_eq!(run.code, 0, "{run}");
    assert_eq!(
        statuses(&rx),
        vec!["firing"],
        "two unread messages behind a greeting wait"
    );
}

#[test]
fn a_chat_read_between_two_polls_is_resolved_and_its_new_message_gets_a_fresh_clock() {
    let (wawp, rx) = (FakeWawp::start(), Receiver::start());
    let t = now();
    wawp.chats(vec![chat(
        "201001234567@c.us",
        "Amina",
        3,
        "third",
        t - 3 * H,
    )]);
    let env = Env::new(webhook(&wawp, &rx));
    assert_eq!(env.run(&["once"]).code, 0);
    // Someone read all three; she wrote once more since.
    wawp.chats(vec![chat(
        "201001234567@c.us",
        "Amina",
        1,
        "one more thing",
        t - 60,
    )]);
    assert_eq!(env.run(&["once"]).code, 0);
    assert_eq!(
        statuses(&rx),
        vec!["firing", "resolved"],
        "the old wait ended; nothing pages for the new one yet"
    );
    let ep = &env.alerts()["episodes"][0];
    assert_eq!(ep["waiting_since"], t - 60, "a new wait, on its own clock");
    assert_eq!(ep["escalated"], false);
}

#[test]
fn reply_mode_remembers_the_last_poll_across_two_once_runs() {
    let (wawp, rx) = (FakeWawp::start(), Receiver::start());
    let t = now();
    let old = chat(
        "201001111111@c.us",
        "Old Thanks",
        0,
        "thanks!",
        t - 30 * 86400,
    );
    wawp.chats(vec![old.clone()]);
    let env = Env::new(webhook(&wawp, &rx).set("sla", "stop_on", "\"reply\"").set(
        "sla",
        "threshold",
        "\"1s\"",
    ));
    assert_eq!(env.run(&["once"]).code, 0);
    assert!(
        env.alerts()["episodes"].as_array().unwrap().is_empty(),
        "old read chats never page"
    );
    // A customer writes after that run (timestamps are whole seconds: the next one), and
    // an agent opens the chat and walks away before the next run.
    let first_run = now();
    assert!(wait_for(PATIENCE, || now() >= first_run + 2));
    let fresh = chat(
        "201002222222@c.us",
        "Opened Not Answered",
        0,
        "hello?",
        first_run + 1,
    );
    wawp.chats(vec![old, fresh]);
    assert_eq!(env.run(&["once"]).code, 0);
    let ids: Vec<String> = env.alerts()["episodes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["id"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(ids, vec!["201002222222@c.us"]);
    assert_eq!(
        statuses(&rx),
        vec!["firing"],
        "read is not answered: it pages"
    );
}

#[test]
fn tiers_are_known_by_after_when_the_config_changes_between_runs() {
    let (wawp, rx) = (FakeWawp::start(), Receiver::start());
    let t = now();
    wawp.chats(vec![chat("201001234567@c.us", "Amina", 1, "hi", t - 3 * H)]);
    let mut env = Env::new(
        webhook(&wawp, &rx)
            .tier("2h", &["pager"])
            .tier("6h", &["pager"]),
    );
    assert_eq!(env.run(&["once"]).code, 0);
    assert_eq!(rx.accepted().len(), 1);
    // The 2h tier is removed and a 1h one inserted: neither the 6h counts as fired nor the
    // 2h is sent again; the new 1h tier, never sent, is.
    env.update(|s| {
        s.tiers_clear()
            .tier("1h", &["pager"])
            .tier("6h", &["pager"])
    });
    assert_eq!(env.run(&["once"]).code, 0);
    let afters: Vec<u64> = rx
        .accepted()
        .iter()
        .map(|p| p["tier"]["after_seconds"].as_u64().unwrap())
        .collect();
    assert_eq!(afters, vec![7200, 3600]);
    assert_eq!(
        env.alerts()["episodes"][0]["tiers_fired"],
        json!([3600, 7200])
    );
    // Reordered back: still nothing new until 6h.
    env.update(|s| {
        s.tiers_clear()
            .tier("2h", &["pager"])
            .tier("6h", &["pager"])
    });
    assert_eq!(env.run(&["once"]).code, 0);
    assert_eq!(rx.accepted().len(), 2);
}

#[test]
fn input_that_cannot_mean_anything_is_refused_with_its_key() {
    let wawp = FakeWawp::start();
    let mut env = Env::new(Setup::new(&wawp).channel(Channel::console()));
    let cases: Vec<(&str, &str, &str, &str)> = vec![
        ("log", "level", "\"inf\"", "log.level"),
        ("sla", "threshold", "\"300000000000y\"", "threshold"),
        ("sla", "poll_interval", "\"300000000000y\"", "poll_interval"),
        ("sla", "repeat_after", "\"11y\"", "repeat_after"),
        ("sla", "absent_polls", "0", "absent_polls"),
    ];
    for (table, key, value, named) in cases {
        env.update(|s| s.set(table, key, value));
        for command in [&["check"][..], &["once"], &["run"]] {
            let run = env.run(command);
            assert_eq!(run.code, 2, "{table}.{key} = {value} / {command:?}: {run}");
            assert!(run.stderr.contains(named), "{run}");
        }
        env.update(|s| s.unset(table, key));
    }
    assert_eq!(env.run(&["check"]).code, 0);
    let run = Run::from(
        env.command(&["check"])
            .env("RUST_LOG", "inf")
            .output()
            .unwrap(),
    );
    assert_eq!(run.code, 2, "{run}");
    assert!(run.stderr.contains("RUST_LOG"), "{run}");
    for bad in ["300000000000y", "10y 1d"] {
        let run = env.run(&["mute", "201001234567@c.us", "--for", bad]);
        assert_eq!(run.code, 2, "{run}");
        assert!(
            run.stderr.contains("--for") && run.stderr.contains("10 years"),
            "{run}"
        );
    }
    let ok = env.run(&["mute", "201001234567@c.us", "--for", "10y"]);
    assert_eq!(ok.code, 0, "{ok}");
    let until = env.alerts()["mutes"][0]["until"].as_i64().unwrap();
    assert!(
        until > now() + 9 * 365 * 86400,
        "a date in the future: {until}"
    );
}
