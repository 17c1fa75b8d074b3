//! `once`, `once --dry-run`, `check` and `alerts`, run as the real binary against a fake
//! Wawp on loopback. Every run's output is checked for the test secrets by the harness.

mod common;

use common::*;
use serde_json::json;

fn console(wawp: &FakeWawp) -> Setup {
    Setup::new(wawp).channel(Channel::console())
}

fn digest(path: &std::path::Path) -> Vec<u8> {
    let mut all = Vec::new();
    for suffix in ["", "-wal"] {
        let p = format!("{}{suffix}", path.display());
        all.extend(std::fs::read(&p).unwrap_or_default());
    }
    all
}

#[test]
fn once_escalates_a_breached_chat_once_even_across_two_processes() {
    let wawp = FakeWawp::start();
    let t = now();
    wawp.chats(vec![
        chat(
            "201001234567@c.us",
            "Amina Hassan",
            2,
            "Where is my order?",
            t - 3 * H,
        ),
        chat("201009999999@c.us", "Fresh Fatma", 1, "hi", t - 600),
        json!({"id": "201007777777@c.us", "name": "Answered Ali", "unreadCount": 0,
               "lastMessage": {"body": "thanks", "timestamp": t - 5 * H, "fromMe": true}}),
    ]);
    let env = Env::new(console(&wawp));

    let first = env.run(&["once"]);
    assert_eq!(first.code, 0, "{first}");
    assert!(
        first.stdout.contains("1 chat waiting over 2h (support)"),
        "{first}"
    );
    assert!(first.stdout.contains("Amina Hassan"), "{first}");
    assert!(
        first.stdout.contains("https://wa.me/201001234567"),
        "{first}"
    );
    assert!(first.stdout.contains("2 unread"), "{first}");
    assert!(
        !first.stdout.contains("Fresh Fatma") && !first.stdout.contains("Answered Ali"),
        "{first}"
    );

    let second = env.run(&["once"]);
    assert_eq!(second.code, 0, "{second}");
    assert!(
        !second.stdout.contains("waiting over"),
        "a second process must not page again:\n{second}"
    );

    let alerts = env.run(&["alerts"]);
    assert_eq!(alerts.code, 0, "{alerts}");
    assert!(
        alerts
            .stdout
            .contains("Open episodes: 2 waiting, 1 escalated"),
        "{alerts}"
    );
    let json = env.alerts();
    let escalated: Vec<&str> = json["episodes"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["escalated"] == true)
        .map(|e| e["id"].as_str().unwrap())
        .collect();
    assert_eq!(escalated, vec!["201001234567@c.us"]);
    assert_eq!(json["episodes"][0]["tiers_fired"], json!([7200]));
    assert_eq!(outbox_count(&json, "sent"), 1);
    assert!(alerts.stdout.contains("201001234567@c.us"), "{alerts}");
    assert!(
        !alerts.stdout.contains("201009999999@c.us"),
        "below the SLA is shown only with --all:\n{alerts}"
    );
    let all = env.run(&["alerts", "--all"]);
    assert!(all.stdout.contains("201009999999@c.us"), "{all}");
    assert!(all.stdout.contains("Recently sent: 1"), "{all}");
}

#[test]
fn dry_run_prints_decisions_and_changes_nothing() {
    let wawp = FakeWawp::start();
    let t = now();
    wawp.chats(vec![chat(
        "201001234567@c.us",
        "Amina",
        1,
        "hello",
        t - 3 * H,
    )]);
    let env = Env::new(console(&wawp));

    let dry = env.run(&["once", "--dry-run"]);
    assert_eq!(dry.code, 0, "{dry}");
    assert!(
        dry.stdout
            .contains("would escalate support 201001234567@c.us (Amina): tier 1 (after 2h)"),
        "{dry}"
    );
    assert!(
        dry.stdout
            .contains("nothing was written and nothing was sent"),
        "{dry}"
    );
    assert!(
        !dry.stdout.contains("waiting over"),
        "nothing delivered:\n{dry}"
    );
    assert!(!env.store().exists(), "a dry run must not create the store");

    assert_eq!(env.run(&["once"]).code, 0);
    wawp.chats(vec![chat(
        "201001234567@c.us",
        "Amina",
        0,
        "hello",
        t - 3 * H,
    )]);
    let before = digest(&env.store());
    let dry = env.run(&["once", "--dry-run"]);
    assert!(
        dry.stdout
            .contains("would resolve support 201001234567@c.us (Amina): waited 3h"),
        "{dry}"
    );
    assert_eq!(
        digest(&env.store()),
        before,
        "a dry run must not write the store"
    );
    let alerts = env.alerts();
    assert_eq!(
        alerts["episodes"][0]["escalated"], true,
        "the episode is still open: {alerts}"
    );
}

#[test]
fn a_nudge_keeps_one_episode_and_reading_resolves_it() {
    let wawp = FakeWawp::start();
    let t = now();
    let jid = "201001234567@c.us";
    wawp.chats(vec![chat(jid, "Amina", 1, "my order?", t - 3 * H)]);
    let env = Env::new(console(&wawp));
    assert!(env.run(&["once"]).stdout.contains("1 chat waiting over 2h"));

    wawp.chats(vec![chat(jid, "Amina", 4, "hello??", t - 60)]);
    let nudged = env.run(&["once"]);
    assert_eq!(nudged.code, 0, "{nudged}");
    assert!(
        nudged.stdout.trim().is_empty(),
        "a nudge is the same episode:\n{nudged}"
    );
    let alerts = env.alerts();
    let ep = &alerts["episodes"][0];
    assert_eq!(
        ep["waiting_since"],
        t - 3 * H,
        "the clock was not reset: {alerts}"
    );
    assert_eq!(ep["unread_count"], 4, "{alerts}");

    wawp.chats(vec![chat(jid, "Amina", 0, "hello??", t - 60)]);
    let read = env.run(&["once"]);
    assert!(
        read.stdout.contains("1 chat no longer waiting (support)"),
        "{read}"
    );
    assert!(read.stdout.contains("waited 3h"), "{read}");
    assert_eq!(env.alerts()["episodes"], json!([]));
}

#[test]
fn keyed_objects_underscore_chat_counts_and_millisecond_timestamps_are_understood() {
    let wawp = FakeWawp::start();
    wawp.keyed(true);
    let t = now();
    wawp.chats(vec![
        json!({"id": {"server": "c.us", "user": "201001", "_serialized": "201001@c.us"}, "name": "Waha Wael",
               "_chat": {"unreadCount": 3}, "lastMessage": {"body": "ms", "timestamp": (t - 3 * H) * 1000, "fromMe": false}}),
        json!({"id": "201002@c.us", "name": "No Count", "lastMessage": {"body": "x", "timestamp": t - 3 * H, "fromMe": false}}),
        json!({"id": "201003@c.us", "name": "Marked Unread", "unreadCount": -1,
               "lastMessage": {"body": "x", "timestamp": t - 3 * H, "fromMe": false}}),
        json!({"id": "status@broadcast", "unreadCount": 9, "lastMessage": {"timestamp": t - 3 * H}}),
    ]);
    let env = Env::new(console(&wawp));
    let run = env.run(&["once"]);
    assert_eq!(run.code, 0, "{run}");
    assert!(run.stdout.contains("3 chats waiting over 2h"), "{run}");
    assert!(
        run.stdout.contains("Waha Wael") && run.stdout.contains("3 unread"),
        "{run}"
    );
    assert!(
        run.stdout.contains("(3h)"),
        "milliseconds read as seconds:\n{run}"
    );
    assert!(!run.stdout.contains("broadcast"), "{run}");
}

#[test]
fn source_failures_name_the_problem_exit_1_and_lose_no_state() {
    let wawp = FakeWawp::start();
    let t = now();
    let jid = "201001234567@c.us";
    wawp.chats(vec![chat(jid, "Amina", 1, "hi", t - 3 * H)]);
    let env = Env::new(console(&wawp).wawp("max_response_bytes", "4096"));
    assert!(env.run(&["once"]).stdout.contains("1 chat waiting over 2h"));

    let big = format!(
        "[{}]",
        vec![chat("1@c.us", &"x".repeat(100), 1, "y", t).to_string(); 100].join(",")
    );
    let cases: Vec<(Reply, Vec<&str>)> = vec![
        (
            Reply::Status(
                401,
                r#"{"message": "Invalid or missing access token"}"#.into(),
            ),
            vec![
                "401",
                "the access token is wrong or expired",
                "Invalid or missing access token",
            ],
        ),
        (
            Reply::Status(404, r#"{"message": "Session does not exist"}"#.into()),
            vec!["404", "the instance does not exist"],
        ),
        (
            Reply::Status(
                500,
                format!(
                    "Internal error while handling /v2/chats/overview?instance_id=12345&access_token={TOKEN}"
                ),
            ),
            vec!["500", "Internal error while handling", "access_token=***"],
        ),
        (
            Reply::Raw(b"<html>502 Bad Gateway</html>".to_vec()),
            vec!["is not an overview"],
        ),
        (
            Reply::Raw(br#"[{"id": "1@c.us""#.to_vec()),
            vec!["is not an overview"],
        ),
        (
            Reply::Raw(br#"{"message": "session starting"}"#.to_vec()),
            vec!["is not an overview", "\"message\""],
        ),
        (
            Reply::Raw(big.into_bytes()),
            vec!["larger than wawp.max_response_bytes (4096 bytes)"],
        ),
    ];
    for (reply, wants) in cases {
        wawp.set(reply);
        let run = env.run(&["once"]);
        assert_eq!(run.code, 1, "{run}");
        assert!(run.stderr.contains("instance \"support\""), "{run}");
        for want in wants {
            assert!(run.stderr.contains(want), "missing {want:?}:\n{run}");
        }
        assert!(
            !run.stdout.contains("no longer waiting"),
            "a failed poll resolves nothing:\n{run}"
        );
    }
    wawp.chats(vec![chat(jid, "Amina", 1, "hi", t - 3 * H)]);
    let back = env.run(&["once"]);
    assert_eq!(back.code, 0, "{back}");
    assert!(
        !back.stdout.contains("waiting over"),
        "the episode survived the failures:\n{back}"
    );
}

#[test]
fn a_hung_source_times_out_with_a_clear_error() {
    let wawp = FakeWawp::start();
    wawp.set(Reply::Hang);
    let env = Env::new(console(&wawp));
    let text = std::fs::read_to_string(&env.config)
        .unwrap()
        .replace("\"5s\"", "\"1s\"");
    std::fs::write(&env.config, text).unwrap();
    let run = env.run(&["once"]);
    assert_eq!(run.code, 1, "{run}");
    assert!(run.stderr.contains("timed out"), "{run}");
}

#[test]
fn paging_walks_every_page_and_an_api_that_ignores_paging_does_not_loop() {
    let wawp = FakeWawp::start();
    let t = now();
    let chats: Vec<_> = (0..5)
        .map(|i| {
            chat(
                &format!("20100000000{i}@c.us"),
                &format!("Customer {i}"),
                1,
                "hi",
                t - 3 * H,
            )
        })
        .collect();
    wawp.chats(chats);
    let env = Env::new(console(&wawp).wawp("page_size", "2"));

    let run = env.run(&["once"]);
    assert_eq!(run.code, 0, "{run}");
    assert!(run.stdout.contains("5 chats waiting over 2h"), "{run}");
    let queries = wawp.queries();
    assert_eq!(queries.len(), 3, "pages of 2, 2 and 1: {queries:?}");
    assert_eq!(queries[2].get("offset").map(String::as_str), Some("4"));
    assert_eq!(queries[0].get("limit").map(String::as_str), Some("2"));
    assert_eq!(
        queries[0].get("instance_id").map(String::as_str),
        Some("12345")
    );

    wawp.ignore_paging();
    let before = wawp.queries().len();
    let run = env.run(&["once"]);
    assert_eq!(run.code, 0, "{run}");
    assert_eq!(
        wawp.queries().len() - before,
        2,
        "the second page held only seen chats: stop"
    );
    assert!(!run.stdout.contains("no longer waiting"), "{run}");
}

#[test]
fn check_accepts_the_example_once_a_token_is_filled_in_and_names_a_typo() {
    let dir = tempfile::tempdir().unwrap();
    let example =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/config.example.toml"))
            .unwrap();
    let path = dir.path().join("config.toml");
    std::fs::write(&path, &example).unwrap();
    let run = |p: &std::path::Path| {
        Run::from(
            std::process::Command::new(env!("CARGO_BIN_EXE_inbox-sla"))
                .arg("--config")
                .arg(p)
                .arg("check")
                .output()
                .unwrap(),
        )
    };
    let empty = run(&path);
    assert_eq!(empty.code, 2, "{empty}");
    assert!(empty.stderr.contains("access_token is empty"), "{empty}");

    std::fs::write(
        &path,
        example.replace(
            "access_token = \"\"",
            &format!("access_token = \"{TOKEN}\""),
        ),
    )
    .unwrap();
    let ok = run(&path);
    assert_eq!(ok.code, 0, "{ok}");
    assert!(ok.stdout.contains("access_token = \"***\""), "{ok}");
    assert!(ok.stdout.contains("webhook_url = \"***\""), "{ok}");

    let typo = example
        .replace(
            "access_token = \"\"",
            &format!("access_token = \"{TOKEN}\""),
        )
        .replace("threshold = \"2h\"", "treshold = \"2h\"");
    std::fs::write(&path, typo).unwrap();
    let bad = run(&path);
    assert_eq!(bad.code, 2, "{bad}");
    assert!(bad.stderr.contains("unknown field `treshold`"), "{bad}");

    let missing = run(&dir.path().join("nope.toml"));
    assert_eq!(missing.code, 2, "{missing}");
    assert!(missing.stderr.contains("nope.toml"), "{missing}");
}

#[test]
fn a_store_from_a_newer_release_or_not_ours_is_refused_not_replaced() {
    let wawp = FakeWawp::start();
    let env = Env::new(console(&wawp));
    let conn = rusqlite::Connection::open(env.store()).unwrap();
    conn.pragma_update(None, "user_version", 99).unwrap();
    drop(conn);
    let run = env.run(&["once"]);
    assert_eq!(run.code, 1, "{run}");
    assert!(run.stderr.contains("schema version 99 is newer"), "{run}");

    std::fs::write(
        env.store(),
        b"this is not a database at all, just text padding padding",
    )
    .unwrap();
    let run = env.run(&["once"]);
    assert_eq!(run.code, 1, "{run}");
    assert!(run.stderr.contains("state.db"), "{run}");
    assert_eq!(
        std::fs::read(env.store()).unwrap(),
        b"this is not a database at all, just text padding padding",
        "the file is left as it was"
    );
}

#[test]
fn the_demo_tells_the_whole_story_with_no_config_and_exits_0() {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_inbox-sla"))
        .arg("demo")
        .env("INBOX_SLA_CONFIG", "/nonexistent/config.toml")
        .output()
        .unwrap();
    let run = Run::from(out);
    assert_eq!(run.code, 0, "{run}");
    let story = &run.stdout;
    let escalation = story
        .find("1 chat waiting over 2h (support)")
        .expect("escalated");
    let nudge = story.find("Amina nudges").expect("nudged");
    let quiet = story.find("nothing is sent again").expect("deduplicated");
    let resolved = story
        .find("1 chat no longer waiting (support)")
        .expect("resolved");
    assert!(
        nudge < escalation && escalation < quiet && quiet < resolved,
        "{story}"
    );
    assert_eq!(
        story.matches("waiting over 2h").count(),
        1,
        "escalated exactly once:\n{story}"
    );
    assert!(story.contains("waited 2h 20m"), "{story}");
    assert!(story.contains("2 notifications delivered"), "{story}");
}

#[test]
fn under_journald_log_lines_carry_no_timestamp_of_their_own() {
    let wawp = FakeWawp::start();
    wawp.chats(vec![breached_chat()]);
    let env = Env::new(console(&wawp));
    let plain = env.run(&["once"]);
    // Read next time: resolved, again a cycle worth an info line.
    wawp.chats(vec![chat(
        "201001234567@c.us",
        "Amina",
        0,
        "hi",
        now() - 3 * H,
    )]);
    assert!(
        plain.stderr.starts_with("20"),
        "a timestamp leads outside the journal:\n{plain}"
    );
    let journal = Run::from(
        env.command(&["once"])
            .env("JOURNAL_STREAM", "8:12345")
            .output()
            .unwrap(),
    );
    assert!(
        journal.stderr.contains("no longer waiting") || journal.stderr.contains("resolved=1"),
        "{journal}"
    );
    for line in journal.stderr.lines() {
        let level = line.split_whitespace().next().unwrap_or("");
        assert!(
            ["INFO", "WARN", "ERROR"].contains(&level),
            "a level leads, not a time: {line}"
        );
    }
    assert!(
        !journal.stderr.contains('\u{1b}'),
        "no colours in the journal:\n{journal}"
    );
}

#[test]
fn json_logs_are_one_json_object_per_line() {
    let wawp = FakeWawp::start();
    wawp.chats(vec![breached_chat()]);
    let env = Env::new(console(&wawp).set("log", "format", "\"json\""));
    let run = env.run(&["once"]);
    assert_eq!(run.code, 0, "{run}");
    let lines: Vec<&str> = run.stderr.lines().collect();
    assert!(!lines.is_empty(), "{run}");
    for line in lines {
        let v: serde_json::Value =
            serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}"));
        assert!(
            v["level"].is_string() && v["fields"]["message"].is_string(),
            "{line}"
        );
    }
}

#[test]
fn a_closed_stdout_pipe_is_not_a_panic() {
    // `inbox-sla alerts | head -1`: the reader goes away; println! would panic (exit 101).
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_inbox-sla"))
        .arg("demo")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    drop(child.stdout.take());
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(0));
}
