//! The adversarial review's sequences, through the real binary: a resync that repeats a
//! short list, reply mode switched off and on again, an instance removed by a reload, a
//! rotated status-page token, and what real clients expect of the API (the bearer scheme
//! in any case, an unknown instance, the `generatorURL`). Each failed on the code before
//! its fix. The HA ones (clock skew, an Alertmanager alert across a takeover) are in
//! `ha.rs`; the time-driven ones (`recovered` behind a `blind` in backoff, a removed
//! instance's blind alert and its return) run in-process under paused time in
//! `inprocess.rs`.
mod common;

use common::*;
use serde_json::Value;

fn webhook(wawp: &FakeWawp, rx: &Receiver) -> Setup {
    Setup::new(wawp).channel(Channel::webhook("pager", &rx.url))
}

fn statuses(rx: &Receiver) -> Vec<String> {
    rx.accepted()
        .iter()
        .map(|p| p["status"].as_str().unwrap_or("?").to_string())
        .collect()
}

/// Section 2: an overview judged incomplete never becomes the reference. 20 chats, then
/// the engine answers the same 8 for four polls (still resyncing), then 20 again: the
/// breached chat that never stopped waiting is neither resolved nor paged a second time.
#[test]
fn a_resync_that_repeats_a_short_list_resolves_nothing_and_pages_once() {
    let (wawp, rx) = (FakeWawp::start(), Receiver::start());
    let t = now();
    let mut all: Vec<Value> = (0..19)
        .map(|i| answered(&format!("2010000000{i:02}@c.us"), "Other", "ok", t - 5 * H))
        .collect();
    all.push(chat("201009999999@c.us", "Amina", 1, "hello?", t - 3 * H));
    let env = Env::new(webhook(&wawp, &rx));
    wawp.chats(all.clone());
    assert_eq!(env.run(&["once"]).code, 0);
    assert_eq!(statuses(&rx), vec!["firing"]);
    wawp.chats(all[..8].to_vec());
    for poll in 0..4 {
        let run = env.run(&["once"]);
        assert_eq!(run.code, 0, "{run}");
        assert!(
            run.stderr.contains("overview incomplete"),
            "poll {poll}: {run}"
        );
    }
    wawp.chats(all);
    assert_eq!(env.run(&["once"]).code, 0);
    assert_eq!(
        statuses(&rx),
        vec!["firing"],
        "no false resolved, no second firing"
    );
    assert_eq!(env.alerts()["episodes"][0]["waiting_since"], t - 3 * H);
}

/// Section 2: reply mode's mark is kept only while reply mode applies. Reply mode, then
/// read mode, then reply mode again: the chats customers wrote to meanwhile (read, the
/// last message theirs) are old news, not fifty pages at once. A fresh store pages none,
/// and neither may this one.
#[test]
fn switching_back_to_reply_mode_pages_none_of_the_old_read_chats() {
    let (wawp, rx) = (FakeWawp::start(), Receiver::start());
    let reply = |s: Setup| s.set("sla", "stop_on", "\"reply\"");
    let mut env = Env::new(reply(webhook(&wawp, &rx)).tier("1s", &["pager"]));
    assert_eq!(env.run(&["once"]).code, 0, "reply mode: the mark is taken");
    let marked = now();
    // Read mode from now on; customers write (after the mark) and agents read.
    env.update(|s| s.set("sla", "stop_on", "\"read\""));
    assert!(wait_for(PATIENCE, || now() > marked));
    let t = now();
    let read: Vec<Value> = (0..50)
        .map(|i| chat(&format!("2010000{i:05}@c.us"), "Read", 0, "thanks!", t))
        .collect();
    wawp.chats(read);
    assert_eq!(env.run(&["once"]).code, 0);
    env.update(reply);
    let run = env.run(&["once"]);
    assert_eq!(run.code, 0, "{run}");
    let alerts = env.alerts();
    assert_eq!(
        alerts["episodes"].as_array().map(Vec::len),
        Some(0),
        "old read chats opened episodes: {alerts}"
    );
    assert!(rx.posts().is_empty(), "paged: {:?}", rx.posts());
}

/// Section 2, "an unwatched chat": an instance removed from the config by a reload ends
/// its open episodes. Who was told hears it is no longer watched (a resolved document
/// whose chat carries `"reason": "unwatched"`), Alertmanager gets the alert ended and no
/// longer re-sent as firing, and `alerts` lists nothing of it.
#[test]
fn a_removed_instance_ends_its_alerts_at_the_reload() {
    let (wawp, rx, am) = (FakeWawp::start(), Receiver::start(), Receiver::start());
    wawp.set_for("id-north", Reply::Chats(vec![breached_chat()]));
    wawp.set_for(
        "id-south",
        Reply::Chats(vec![chat(
            "201007777777@c.us",
            "Omar",
            1,
            "?",
            now() - 3 * H,
        )]),
    );
    let mut env = Env::new(
        webhook(&wawp, &rx)
            .instances(&[("north", "id-north"), ("south", "id-south")])
            .poll("1s")
            .channel(Channel::alertmanager("am", &[&am.base]).key("resend", "\"5s\"")),
    );
    let d = env.start();
    assert!(
        wait_for(PATIENCE, || statuses(&rx) == vec!["firing", "firing"]),
        "{}",
        d.log()
    );
    env.update(|s| s.instances(&[("south", "id-south")]));
    d.signal("HUP");
    assert!(
        wait_for(PATIENCE, || statuses(&rx).len() == 3),
        "{}",
        d.log()
    );
    let resolved = &rx.accepted()[2];
    assert_eq!(resolved["status"], "resolved", "{resolved}");
    assert_eq!(resolved["instance"], "north");
    assert_eq!(resolved["chats"][0]["reason"], "unwatched", "{resolved}");
    let alerts = env.alerts();
    let open: Vec<&Value> = alerts["episodes"].as_array().unwrap().iter().collect();
    assert_eq!(open.len(), 1, "{alerts}");
    assert_eq!(open[0]["instance"], "south", "{alerts}");
    // Alertmanager: north's alert ends, and no later batch sends it as firing again.
    let ends = |a: &Value| {
        a["endsAt"]
            .as_str()
            .and_then(|e| chrono::DateTime::parse_from_rfc3339(e).ok())
            .map(|e| e.timestamp())
    };
    let is_north = |a: &&Value| a["labels"]["wawp_instance"] == "north";
    let mut ended_at = None;
    assert!(
        wait_for(PATIENCE, || {
            let posts = am.posts();
            ended_at = posts.iter().position(|p| {
                p.as_array()
                    .into_iter()
                    .flatten()
                    .filter(is_north)
                    .any(|a| ends(a).is_some_and(|e| e <= now()))
            });
            ended_at.is_some_and(|i| {
                posts[i + 1..].iter().any(|p| {
                    p.as_array()
                        .into_iter()
                        .flatten()
                        .any(|a| a["labels"]["wawp_instance"] == "south")
                })
            })
        }),
        "{:?}\n{}",
        am.posts(),
        d.log()
    );
    let later: Vec<Value> = am.posts()[ended_at.unwrap_or(0) + 1..]
        .iter()
        .flat_map(|p| p.as_array().cloned().unwrap_or_default())
        .filter(|a| is_north(&a) && ends(a).is_some_and(|e| e > now()))
        .collect();
    assert!(later.is_empty(), "still re-sent as firing: {later:?}");
    assert!(
        d.log().contains("no longer in the configuration"),
        "{}",
        d.log()
    );
}

/// Section 7: reload covers the bearer token. Rotate `http.auth_token_file` and SIGHUP:
/// the new token works at once and the old (leaked) one no longer does. The scheme is
/// matched in any case (RFC 9110), and a wrong one still fails.
#[test]
fn a_rotated_status_page_token_works_at_once_and_the_old_one_stops() {
    let wawp = FakeWawp::start();
    let dir = tempfile::tempdir().unwrap();
    let token_file = dir.path().join("status-token");
    let (old, new) = ("old-token-7d1c55aa90", "new-token-3b88e01f42");
    std::fs::write(&token_file, old).unwrap();
    let env = Env::new(
        Setup::new(&wawp)
            .poll("1s")
            .channel(Channel::console())
            .http()
            .set(
                "http",
                "auth_token_file",
                &toml_str(&token_file.to_string_lossy()),
            ),
    );
    let d = env.start();
    let base = d.http_base();
    let with = |auth: &str| -> u16 {
        rt().block_on(async {
            reqwest::Client::new()
                .get(format!("{base}/api/v1/waiting"))
                .header("Authorization", auth)
                .send()
                .await
                .map(|r| r.status().as_u16())
                .unwrap_or(0)
        })
    };
    assert!(wait_for(PATIENCE, || with(&format!("Bearer {old}")) == 200));
    for scheme in ["bearer", "BEARER", "BeArEr"] {
        assert_eq!(with(&format!("{scheme} {old}")), 200, "{scheme}");
    }
    assert_eq!(with(&format!("Basic {old}")), 401);
    std::fs::write(&token_file, new).unwrap();
    d.signal("HUP");
    assert!(
        wait_for(PATIENCE, || with(&format!("Bearer {new}")) == 200),
        "{}",
        d.log()
    );
    assert_eq!(
        with(&format!("Bearer {old}")),
        401,
        "the old token still works"
    );
    let log = d.log();
    assert!(!log.contains(old) && !log.contains(new), "{log}");
}

/// Section 11: the report and the API agree. A typo in an instance name is an error in
/// both (exit 2; 400 naming it), never an empty report that reads as "all fine".
#[test]
fn an_unknown_instance_is_an_error_in_the_report_and_the_api_alike() {
    let wawp = FakeWawp::start();
    let env = Env::new(
        Setup::new(&wawp)
            .poll("1s")
            .channel(Channel::console())
            .http(),
    );
    // Before any store exists, too.
    let run = env.run(&["report", "--instance", "nope"]);
    assert_eq!(run.code, 2, "{run}");
    assert!(run.stderr.contains("--instance nope"), "{run}");
    let d = env.start();
    let base = d.http_base();
    assert!(wait_for(PATIENCE, || get(&format!("{base}/healthz")).0 == 200));
    let run = env.run(&["report", "--instance", "nope"]);
    assert_eq!(run.code, 2, "{run}");
    let (code, body) = get(&format!("{base}/api/v1/report?instance=nope"));
    assert_eq!(code, 400, "{body}");
    assert!(body.contains("\"nope\""), "{body}");
    let (code, body) = get(&format!("{base}/api/v1/report?instance=support"));
    assert_eq!(code, 200, "{body}");
    assert_eq!(env.run(&["report", "--instance", "support"]).code, 0);
}

/// Section 5: Alertmanager's `generatorURL` is `http.external_url`, or absent; never the
/// listen address (`http://127.0.0.1:0/`, `http://0.0.0.0:9187/` lead nowhere).
#[test]
fn alertmanager_gets_the_external_url_or_no_generator_url() {
    for external in [None, Some("https://sla.example.com/status/")] {
        let (wawp, am) = (FakeWawp::start(), Receiver::start());
        wawp.chats(vec![breached_chat()]);
        let mut setup = Setup::new(&wawp)
            .http()
            .channel(Channel::alertmanager("am", &[&am.base]));
        if let Some(u) = external {
            setup = setup.set("http", "external_url", &toml_str(u));
        }
        let env = Env::new(setup);
        let run = env.run(&["once"]);
        assert_eq!(run.code, 0, "{run}");
        let alerts: Vec<Value> = am
            .posts()
            .iter()
            .flat_map(|p| p.as_array().cloned().unwrap_or_default())
            .collect();
        assert!(!alerts.is_empty());
        for a in alerts {
            assert_eq!(a["generatorURL"].as_str(), external, "{a}");
        }
    }
    let wawp = FakeWawp::start();
    let env = Env::new(Setup::new(&wawp).http().channel(Channel::console()).set(
        "http",
        "external_url",
        "\"sla.example.com\"",
    ));
    let check = env.run(&["check"]);
    assert_eq!(check.code, 2, "{check}");
    assert!(check.stderr.contains("http.external_url"), "{check}");
}

/// Section 5: success means at least one Alertmanager peer took the alerts. Two of three
/// peers accept the connection and never answer; the healthy one takes them. Posted one
/// after another, the hung peers used the whole send budget and the notification never
/// succeeded; posted at once, it is delivered as soon as the healthy peer answers.
#[test]
fn hung_alertmanager_peers_do_not_hold_up_a_healthy_one() {
    let (wawp, am) = (FakeWawp::start(), Receiver::start());
    wawp.chats(vec![breached_chat()]);
    let hung = |port: u16| format!("http://127.0.0.1:{port}");
    let (a, b) = (hung(silent_port()), hung(silent_port()));
    let env = Env::new(
        Setup::new(&wawp)
            .set("delivery", "timeout", "\"3s\"")
            .channel(Channel::alertmanager("am", &[&a, &b, &am.base])),
    );
    let started = std::time::Instant::now();
    let run = env.run(&["once"]);
    assert_eq!(run.code, 0, "{run}");
    assert_eq!(am.posts().len(), 1);
    assert_eq!(outbox_count(&env.alerts(), "sent"), 1);
    assert!(
        run.stderr.contains("1 of 3 Alertmanager peers accepted"),
        "{run}"
    );
    eprintln!(
        "two hung peers of three: delivered in {} ms (delivery.timeout 3s)",
        started.elapsed().as_millis()
    );
}

/// Section 7: SIGHUP applies everything that can change without a restart. Besides
/// instances, channels and the token (above): `delivery.retry_for` (the outbox kept the
/// start's value) and `log.level` (fixed at start).
#[test]
fn a_reload_applies_delivery_limits_and_the_log_level() {
    let (wawp, rx) = (FakeWawp::start(), Receiver::start());
    rx.script(&vec![Answer::Status(503); 100]);
    wawp.chats(vec![breached_chat()]);
    let mut env = Env::new(
        webhook(&wawp, &rx)
            .poll("1s")
            .set("delivery", "retry_for", "\"24h\"")
            .set("log", "level", "\"info\""),
    );
    let d = env.start();
    assert!(wait_for(PATIENCE, || !rx.posts().is_empty()), "{}", d.log());
    assert!(!d.log().contains("DEBUG"), "{}", d.log());
    env.update(|s| {
        s.set("delivery", "retry_for", "\"1s\"")
            .set("log", "level", "\"debug\"")
    });
    d.signal("HUP");
    assert!(
        wait_for(PATIENCE, || outbox_count(&env.alerts(), "dead") == 1),
        "retry_for was not applied:\n{}",
        d.log()
    );
    assert!(d.log().contains("giving up"), "{}", d.log());
    assert!(
        wait_for(PATIENCE, || d.log().contains("DEBUG")),
        "{}",
        d.log()
    );
}
