//! Where on-call lives: PagerDuty (Events API v2), Alertmanager (API v2) and Microsoft
//! Teams (Workflows webhook, Adaptive Card), through the real binary. PagerDuty and Teams
//! cannot run here: their receivers are loopback servers answering with the shapes and
//! codes the real services document. Alertmanager can: the last test runs Debian's
//! `prometheus-alertmanager` and reads what its own webhook delivers.

mod common;

use common::*;
use serde_json::{Value, json};
use std::time::Duration;

fn pd(wawp: &FakeWawp, rx: &Receiver) -> Setup {
    Setup::new(wawp).channel(Channel::pagerduty("pd", &rx.base).key("severity", "\"critical\""))
}

fn pd_ok() -> Answer {
    Answer::Accepted(r#"{"status":"success","message":"Event processed","dedup_key":"x"}"#.into())
}

fn rfc3339(t: i64) -> String {
    chrono::DateTime::from_timestamp(t, 0)
        .unwrap()
        .to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

#[test]
fn pagerduty_gets_one_incident_per_chat_updated_by_tiers_and_resolved_at_the_end() {
    let (wawp, rx) = (FakeWawp::start(), Receiver::start());
    rx.script(&vec![pd_ok(); 20]);
    let t = now();
    let amina = chat(
        "201001234567@c.us",
        "Amina Hassan",
        2,
        "Where is my order?",
        t - 3 * H,
    );
    let omar = chat("201007654321@c.us", "Omar", 1, "hi", t - 7 * H);
    wawp.chats(vec![amina.clone(), omar]);
    let env = Env::new(pd(&wawp, &rx).tier("2h", &["pd"]).tier("6h", &["pd"]));
    let run = env.run(&["once"]);
    assert_eq!(run.code, 0, "{run}");
    let events = rx.posts();
    assert_eq!(
        events.len(),
        2,
        "one event per chat, not a digest: {events:?}"
    );
    let e = events
        .iter()
        .find(|e| {
            e["payload"]["summary"]
                .as_str()
                .unwrap()
                .starts_with("Amina")
        })
        .unwrap();
    assert_eq!(e["routing_key"], ROUTING_KEY);
    assert_eq!(e["event_action"], "trigger");
    let key = format!("inbox-sla/support/201001234567@c.us/{}", t - 3 * H);
    assert_eq!(e["dedup_key"], key);
    assert_eq!(
        e["payload"]["summary"],
        "Amina Hassan waiting 3h on support"
    );
    assert_eq!(e["payload"]["source"], "support");
    assert_eq!(e["payload"]["severity"], "critical");
    assert_eq!(
        e["payload"]["timestamp"],
        rfc3339(t - 3 * H),
        "the episode start"
    );
    let d = &e["payload"]["custom_details"];
    assert_eq!(d["id"], "201001234567@c.us");
    assert_eq!(d["name"], "Amina Hassan");
    assert_eq!(d["kind"], "individual");
    assert_eq!(d["unread_count"], 2);
    assert_eq!(d["waiting_since"], t - 3 * H);
    assert_eq!(d["last_message"]["body"], "Where is my order?");
    assert_eq!(
        e["links"],
        json!([{"href": "https://wa.me/201001234567", "text": "Open in WhatsApp"}])
    );
    // Omar crossed both tiers in one cycle: one trigger, at the higher tier.
    let o = events
        .iter()
        .find(|e| {
            e["payload"]["summary"]
                .as_str()
                .unwrap()
                .starts_with("Omar")
        })
        .unwrap();
    assert_eq!(o["payload"]["custom_details"]["tier_after"], "6h");

    // Three hours later Amina crosses 6h: the same incident is triggered again.
    wawp.chats(vec![chat(
        "201001234567@c.us",
        "Amina Hassan",
        2,
        "Where is my order?",
        t - 3 * H,
    )]);
    let mut env = env;
    env.update(|s| s.tiers_clear().tier("2h", &["pd"]).tier("3h", &["pd"]));
    assert_eq!(env.run(&["once"]).code, 0);
    let again = rx.posts();
    assert_eq!(again.len(), 3, "{again:?}");
    assert_eq!(
        (
            again[2]["event_action"].as_str(),
            again[2]["dedup_key"].as_str()
        ),
        (Some("trigger"), Some(key.as_str()))
    );

    // Read: resolved, with the same key (Omar is read too).
    wawp.chats(vec![
        chat(
            "201001234567@c.us",
            "Amina Hassan",
            0,
            "Where is my order?",
            t - 3 * H,
        ),
        chat("201007654321@c.us", "Omar", 0, "hi", t - 7 * H),
    ]);
    assert_eq!(env.run(&["once"]).code, 0);
    let resolves: Vec<Value> = rx
        .posts()
        .into_iter()
        .filter(|e| e["event_action"] == "resolve")
        .collect();
    assert_eq!(resolves.len(), 2);
    let r = resolves
        .iter()
        .find(|r| r["dedup_key"] == key.as_str())
        .unwrap();
    assert_eq!(
        r,
        &json!({"routing_key": ROUTING_KEY, "event_action": "resolve", "dedup_key": key})
    );
}

#[test]
fn pagerduty_summaries_stay_within_1024_characters_and_two_events_a_second() {
    let (wawp, rx) = (FakeWawp::start(), Receiver::start());
    let t = now();
    let long = "👨\u{200D}👩\u{200D}👧".repeat(400) + &"x".repeat(3000);
    wawp.chats(
        (0..4)
            .map(|i| chat(&format!("20100000000{i}@c.us"), &long, 1, "hi", t - 3 * H))
            .collect(),
    );
    let env = Env::new(pd(&wawp, &rx));
    assert_eq!(env.run(&["once"]).code, 0);
    let posts = rx.all();
    assert_eq!(posts.len(), 4);
    for p in &posts {
        let summary = p.body["payload"]["summary"].as_str().unwrap();
        assert!(
            summary.chars().count() <= 1024,
            "{} chars",
            summary.chars().count()
        );
        assert!(summary.ends_with(" waiting 3h on support"), "{summary}");
    }
    for pair in posts.windows(2) {
        let gap = pair[1].arrived - pair[0].arrived;
        assert!(
            gap >= Duration::from_millis(490),
            "only {gap:?} between two events to one routing key"
        );
    }
}

#[test]
fn pagerduty_400_is_dead_and_listed_while_429_and_5xx_are_retried() {
    let (wawp, rx) = (FakeWawp::start(), Receiver::start());
    rx.script(&[
        Answer::StatusBody(400, format!(r#"{{"status":"invalid event","message":"Event object is invalid","errors":["routing_key {ROUTING_KEY} is not valid"]}}"#)),
    ]);
    wawp.chats(vec![breached_chat()]);
    let env = Env::new(pd(&wawp, &rx));
    let run = env.run(&["once"]);
    assert_eq!(run.code, 1, "{run}");
    assert!(
        run.stderr.contains("400") && run.stderr.contains("Event object is invalid"),
        "{run}"
    );
    let alerts = env.alerts();
    assert_eq!(outbox_count(&alerts, "dead"), 1, "{alerts}");
    assert_eq!(alerts["dead"][0]["channel"], "pd");
    let text = env.run(&["alerts"]);
    assert!(
        text.stdout.contains("Dead notifications: 1") && text.stdout.contains("→ pd"),
        "{text}"
    );

    let (wawp, rx) = (FakeWawp::start(), Receiver::start());
    rx.script(&[Answer::RetryAfter(1), Answer::Status(502), pd_ok()]);
    wawp.chats(vec![breached_chat()]);
    let env = Env::new(pd(&wawp, &rx));
    assert_eq!(env.run(&["once"]).code, 1);
    assert_eq!(
        outbox_count(&env.alerts(), "pending"),
        1,
        "retried, not dead"
    );
    assert!(wait_for(PATIENCE, || {
        env.run(&["once"]);
        outbox_count(&env.alerts(), "sent") == 1
    }));
    assert_eq!(rx.posts().len(), 3);
}

#[test]
fn test_notify_for_pagerduty_triggers_and_resolves_a_marked_test_incident() {
    let (wawp, rx) = (FakeWawp::start(), Receiver::start());
    let env = Env::new(pd(&wawp, &rx));
    let run = env.run(&["test-notify"]);
    assert_eq!(run.code, 0, "{run}");
    assert!(run.stdout.contains("pd (pagerduty): delivered"), "{run}");
    let posts = rx.posts();
    assert_eq!(posts.len(), 2);
    assert_eq!(posts[0]["event_action"], "trigger");
    assert!(
        posts[0]["payload"]["summary"]
            .as_str()
            .unwrap()
            .starts_with("TEST")
    );
    assert_eq!(posts[0]["payload"]["severity"], "info");
    assert_eq!(posts[1]["event_action"], "resolve");
    assert_eq!(posts[1]["dedup_key"], posts[0]["dedup_key"]);
}

fn teams(wawp: &FakeWawp, rx: &Receiver) -> Setup {
    Setup::new(wawp).channel(Channel::teams("teams", &rx.url))
}

#[test]
fn teams_gets_the_digest_as_an_adaptive_card_under_28_kb_with_names_escaped() {
    let (wawp, rx) = (FakeWawp::start(), Receiver::start());
    rx.script(&[Answer::StatusBody(202, String::new())]);
    let t = now();
    let nasty = format!(
        "**URGENT** {{{{DATE(2017-02-14T06:08:39Z)}}}} [click](http://evil) {}",
        "👨\u{200D}👩\u{200D}👧\u{200D}👦".repeat(150)
    );
    let mut chats: Vec<Value> = (0..300)
        .map(|i| {
            chat(
                &format!("2010{i:08}@c.us"),
                &nasty,
                1,
                &"ما ".repeat(300),
                t - 3 * H,
            )
        })
        .collect();
    chats[0] = chat("201099999999@c.us", "Amina Hassan", 2, "hello??", t - 4 * H);
    wawp.chats(chats);
    let env = Env::new(teams(&wawp, &rx).wawp("page_size", "0"));
    let run = env.run(&["once"]);
    assert_eq!(run.code, 0, "{run}");
    let post = &rx.all()[0];
    assert!(post.raw.len() <= 28 * 1024, "{} bytes", post.raw.len());
    let m = &post.body;
    assert_eq!(m["type"], "message");
    let a = &m["attachments"][0];
    assert_eq!(a["contentType"], "application/vnd.microsoft.card.adaptive");
    let card = &a["content"];
    assert_eq!(
        (card["type"].as_str(), card["version"].as_str()),
        (Some("AdaptiveCard"), Some("1.4"))
    );
    let body = card["body"].as_array().unwrap();
    assert!(
        body[0]["text"]
            .as_str()
            .unwrap()
            .contains("300 chats waiting over 2h (support)"),
        "{}",
        body[0]
    );
    let containers = body.iter().filter(|b| b["type"] == "Container").count();
    assert!((1..=20).contains(&containers), "{containers} chats in full");
    let more = body.last().unwrap()["text"].as_str().unwrap();
    assert_eq!(more, format!("+{} more", 300 - containers));
    let text = m.to_string();
    assert!(text.contains("Amina Hassan"), "the longest waiting leads");
    assert!(
        !text.contains("**URGENT**") && text.contains("\\\\*\\\\*URGENT"),
        "markdown escaped"
    );
    assert!(!text.contains("{{DATE"), "card functions defused");
    assert!(text.contains("https://wa.me/201099999999"));
}

#[test]
fn teams_429_and_5xx_are_retried_and_test_notify_is_marked() {
    let (wawp, rx) = (FakeWawp::start(), Receiver::start());
    rx.script(&[Answer::RetryAfter(1), Answer::Status(503)]);
    wawp.chats(vec![breached_chat()]);
    let env = Env::new(teams(&wawp, &rx));
    assert_eq!(env.run(&["once"]).code, 1);
    assert!(wait_for(PATIENCE, || {
        env.run(&["once"]);
        rx.accepted().len() == 1
    }));
    assert_eq!(outbox_count(&env.alerts(), "dead"), 0);
    let run = env.run(&["test-notify", "--channel", "teams"]);
    assert_eq!(run.code, 0, "{run}");
    assert!(rx.accepted().last().unwrap().to_string().contains("TEST"));
}

fn am(wawp: &FakeWawp, urls: &[&str]) -> Setup {
    Setup::new(wawp).channel(
        Channel::alertmanager("am", urls)
            .key("resend", "\"5s\"")
            .key("labels", "{ team = \"support\", severity = \"page\" }"),
    )
}

#[test]
fn alertmanager_gets_one_alert_per_episode_with_the_documented_labels() {
    let (wawp, rx, down) = (FakeWawp::start(), Receiver::start(), Receiver::start());
    down.script(&vec![Answer::Status(503); 50]);
    let t = now();
    wawp.chats(vec![
        chat(
            "201001234567@c.us",
            "Amina Hassan",
            2,
            "Where is my order?",
            t - 3 * H,
        ),
        chat(
            "120363000000000001@g.us",
            "Warehouse",
            1,
            "truck?",
            t - 3 * H,
        ),
    ]);
    let env = Env::new(am(&wawp, &[&down.base, &rx.base]).http().set(
        "http",
        "external_url",
        "\"https://sla.example.com/\"",
    ));
    let run = env.run(&["once"]);
    assert_eq!(run.code, 0, "one peer of two took it: {run}");
    let posts = rx.posts();
    assert_eq!(posts.len(), 2, "one alert per episode: {posts:?}");
    let alert = posts
        .iter()
        .map(|p| &p[0])
        .find(|a| a["labels"]["chat"] == "201001234567@c.us")
        .unwrap();
    assert_eq!(
        alert["labels"],
        json!({"alertname": "WhatsAppChatWaiting", "wawp_instance": "support", "chat": "201001234567@c.us",
               "kind": "individual", "tier": "2h", "team": "support", "severity": "page"})
    );
    assert_eq!(alert["annotations"]["name"], "Amina Hassan");
    assert_eq!(alert["annotations"]["preview"], "Where is my order?");
    assert_eq!(alert["annotations"]["link"], "https://wa.me/201001234567");
    assert!(
        alert["annotations"]["summary"]
            .as_str()
            .unwrap()
            .contains("Amina Hassan waiting 3h on support")
    );
    assert_eq!(alert["startsAt"], rfc3339(t - 3 * H));
    assert_eq!(alert["generatorURL"], "https://sla.example.com/");
    let ends = chrono::DateTime::parse_from_rfc3339(alert["endsAt"].as_str().unwrap())
        .unwrap()
        .timestamp();
    // Far enough ahead to outlast a restart: two polls (60s) and a resend (5s).
    let ahead = ends - now();
    assert!(
        (120..=130).contains(&ahead),
        "a firing alert ends two polls and a resend ahead: {ahead}s"
    );
    let group = posts
        .iter()
        .map(|p| &p[0])
        .find(|a| a["labels"]["chat"] != "201001234567@c.us")
        .unwrap();
    assert_eq!(group["labels"]["kind"], "group");
    assert!(group["annotations"].get("link").is_none());

    // Every peer down: retried, not dead.
    let env = Env::new(am(&wawp, &[&down.base]));
    assert_eq!(env.run(&["once"]).code, 1);
    assert_eq!(outbox_count(&env.alerts(), "pending"), 2);
}

#[test]
fn alertmanager_hears_firing_alerts_again_every_resend_and_after_a_restart() {
    let (wawp, rx) = (FakeWawp::start(), Receiver::start());
    wawp.chats(vec![breached_chat()]);
    let env = Env::new(am(&wawp, &[&rx.base]).poll("1s"));
    let mut d = env.start();
    assert!(wait_for(PATIENCE, || rx.posts().len() >= 3), "{}", d.log());
    let posts = rx.all();
    let gap = posts[2].arrived - posts[1].arrived;
    assert!(
        gap >= Duration::from_secs(4),
        "re-sent every 5s, not more often: {gap:?}"
    );
    for p in &posts {
        assert_eq!(p.body[0]["labels"]["chat"], "201001234567@c.us");
    }
    d.kill();
    let before = rx.posts().len();
    let d = env.start();
    assert!(
        wait_for(PATIENCE, || rx.posts().len() > before),
        "re-sent from the store after a restart: {}",
        d.log()
    );
    // Read: sent as resolved, with endsAt its end.
    wawp.chats(vec![chat(
        "201001234567@c.us",
        "Amina",
        0,
        "hi",
        now() - 3 * H,
    )]);
    assert!(wait_for(PATIENCE, || rx.posts().iter().any(|p| {
        let ends = chrono::DateTime::parse_from_rfc3339(p[0]["endsAt"].as_str().unwrap())
            .unwrap()
            .timestamp();
        ends <= now()
    })));
}

/// Starts Debian's Alertmanager on loopback, routing every alert to `hook`. `None` (after
/// a loud skip) when it is not installed.
fn real_alertmanager(dir: &std::path::Path, hook: &str) -> Option<(std::process::Child, String)> {
    let bin = ["/usr/bin/prometheus-alertmanager", "/usr/bin/alertmanager"]
        .into_iter()
        .find(|b| std::path::Path::new(b).exists());
    let Some(bin) = bin else {
        skip(
            "alertmanager end to end: Debian's prometheus-alertmanager is not installed",
            true,
        );
        return None;
    };
    let config = dir.join("alertmanager.yml");
    std::fs::write(
        &config,
        format!(
            "route:\n  receiver: test\n  group_by: ['alertname', 'chat']\n  group_wait: 1s\n  group_interval: 1s\n  repeat_interval: 1h\n\
             receivers:\n- name: test\n  webhook_configs:\n  - url: '{hook}'\n    send_resolved: true\n"
        ),
    )
    .unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let child = std::process::Command::new(bin)
        .arg(format!("--config.file={}", config.display()))
        .arg(format!("--storage.path={}", dir.join("data").display()))
        .arg(format!("--web.listen-address=127.0.0.1:{port}"))
        .arg("--cluster.listen-address=")
        .stdout(std::process::Stdio::null())
        .stderr(std::fs::File::create(dir.join("alertmanager.log")).unwrap())
        .spawn()
        .unwrap();
    let url = format!("http://127.0.0.1:{port}");
    assert!(
        wait_for(PATIENCE, || get(&format!("{url}/-/ready")).0 == 200),
        "Alertmanager did not start"
    );
    Some((child, url))
}

#[test]
fn a_real_alertmanager_delivers_the_breach_as_firing_and_the_read_chat_as_resolved() {
    let dir = tempfile::tempdir().unwrap();
    let hook = Receiver::start();
    let Some((mut child, am_url)) = real_alertmanager(dir.path(), &hook.url) else {
        return;
    };
    let wawp = FakeWawp::start();
    let t = now();
    wawp.chats(vec![chat(
        "201001234567@c.us",
        "Amina Hassan",
        2,
        "Where is my order?",
        t - 3 * H,
    )]);
    let env = Env::new(am(&wawp, &[&am_url]).poll("1s"));
    let d = env.start();
    let firing = |p: &Value| p["status"] == "firing";
    assert!(
        wait_for(PATIENCE, || hook.posts().iter().any(firing)),
        "{}",
        d.log()
    );
    let delivered = hook.posts().into_iter().find(firing).unwrap();
    let a = &delivered["alerts"][0];
    assert_eq!(a["status"], "firing");
    assert_eq!(a["labels"]["alertname"], "WhatsAppChatWaiting");
    assert_eq!(a["labels"]["wawp_instance"], "support");
    assert_eq!(a["labels"]["chat"], "201001234567@c.us");
    assert_eq!(a["labels"]["tier"], "2h");
    assert_eq!(a["annotations"]["name"], "Amina Hassan");
    assert_eq!(
        a["startsAt"].as_str().unwrap().get(..19),
        Some(rfc3339(t - 3 * H).get(..19).unwrap())
    );
    eprintln!(
        "Alertmanager's webhook, firing:\n{}",
        serde_json::to_string_pretty(&delivered).unwrap()
    );

    wawp.chats(vec![chat(
        "201001234567@c.us",
        "Amina Hassan",
        0,
        "Where is my order?",
        t - 3 * H,
    )]);
    let resolved = |p: &Value| p["status"] == "resolved";
    assert!(
        wait_for(PATIENCE, || hook.posts().iter().any(resolved)),
        "{}",
        d.log()
    );
    let delivered = hook.posts().into_iter().find(resolved).unwrap();
    assert_eq!(delivered["alerts"][0]["status"], "resolved");
    assert_eq!(
        delivered["alerts"][0]["labels"]["chat"],
        "201001234567@c.us"
    );
    eprintln!(
        "Alertmanager's webhook, resolved:\n{}",
        serde_json::to_string_pretty(&delivered).unwrap()
    );
    drop(d);
    let _ = child.kill();
    let _ = child.wait();
}
