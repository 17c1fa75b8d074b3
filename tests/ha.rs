//! More than one process on one store (docs/spec.md sections 6 and 10): daemons in an HA
//! group on PostgreSQL (takeover, chaos with kill -9, a database that goes away), and
//! the daemon with a manual `once` on one SQLite store. Each prints its figures.

mod common;

use common::*;
use serde_json::Value;
use std::collections::HashSet;
use std::time::{Duration, Instant};

/// Three instances, each with its own inbox, on the PostgreSQL database `url`, node `node`.
fn ha_setup(wawp: &FakeWawp, url: &str, node: &str, rx: &Receiver) -> Setup {
    Setup::new(wawp)
        .instances(&[
            ("north", "id-north"),
            ("south", "id-south"),
            ("east", "id-east"),
        ])
        .poll("1s")
        .set("store", "url", &toml_str(url))
        .set("ha", "node", &toml_str(node))
        .set("ha", "lease", "\"3s\"")
        .set("delivery", "timeout", "\"2s\"")
        .tier("2h", &["pager"])
        .tier("5h", &["pager"])
        .channel(Channel::webhook("pager", &rx.url))
        .http()
}

/// Checks that a daemon started under [`skewed_clock`] really lives `skew` seconds off: its
/// log lines carry its wall clock's time. (Otherwise a skew test would prove nothing.)
fn assert_clock_skewed(d: &Daemon, skew: i64) {
    let log = d.log();
    let stamp = log
        .split_whitespace()
        .next()
        .and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok())
        .unwrap_or_else(|| panic!("no timestamp in the log:\n{log}"));
    let off = stamp.timestamp() - now();
    assert!(
        (off - skew).abs() <= 5,
        "the daemon's clock is {off}s off, not {skew}s:\n{log}"
    );
}

fn holder(env: &Env, instance: &str) -> Option<String> {
    env.alerts()["leases"]
        .as_array()?
        .iter()
        .find(|l| l["instance"] == instance && l["live"] == true)
        .and_then(|l| l["holder"].as_str().map(str::to_string))
}

#[test]
fn a_standby_node_takes_over_a_dead_nodes_instances_within_the_lease_and_a_poll() {
    let Some(url) = postgres_db("ha: takeover") else {
        return;
    };
    let (wawp, rx) = (FakeWawp::start(), Receiver::start());
    let a = Env::new(ha_setup(&wawp, &url, "node-a", &rx));
    let b = Env::new(ha_setup(&wawp, &url, "node-b", &rx));
    let mut da = a.start();
    assert!(
        wait_for(PATIENCE, || ["north", "south", "east"]
            .iter()
            .all(|i| holder(&a, i).as_deref() == Some("node-a"))),
        "{}",
        da.log()
    );
    // The group shares the instances: watch one that stays node-a's share with node-b
    // alive, so node-b polls it only after node-a dies.
    let instances: Vec<String> = ["north", "south", "east"].map(String::from).to_vec();
    let nodes: Vec<String> = ["node-a", "node-b"].map(String::from).to_vec();
    let share = inbox_sla::share::assign(&instances, &nodes);
    let watched = instances
        .iter()
        .find(|i| share[i.as_str()] == "node-a")
        .expect("node-a has a share")
        .clone();
    let id = format!("id-{watched}");
    let db = b.start();
    let base_b = db.http_base();
    // node-b holds nothing but is healthy: ready to take over.
    assert!(
        wait_for(PATIENCE, || get(&format!("{base_b}/healthz")).0 == 200),
        "{}",
        db.log()
    );
    assert!(wait_for(PATIENCE, || get(&format!("{base_b}/metrics"))
        .1
        .contains(&format!(
            "inbox_sla_instance_held{{wawp_instance=\"{watched}\",node=\"node-b\"}} 0"
        ))));
    let polls = wawp.polls_of(&id);
    std::thread::sleep(Duration::from_millis(1500));
    assert!(
        wawp.polls_of(&id) - polls <= 3,
        "only node-a polls {watched}"
    );

    let killed = Instant::now();
    da.kill();
    let before = wawp.polls_of(&id);
    assert!(
        wait_for(PATIENCE, || wawp.polls_of(&id) > before),
        "{}",
        db.log()
    );
    let takeover = killed.elapsed();
    assert!(
        takeover <= Duration::from_secs(3 + 1 + 2),
        "took over in {takeover:?} (lease 3s + poll 1s)"
    );
    assert!(wait_for(PATIENCE, || ["north", "south", "east"]
        .iter()
        .all(|i| holder(&b, i).as_deref() == Some("node-b"))));
    assert!(
        db.log().contains("this node now polls the instance"),
        "{}",
        db.log()
    );
    let alerts = Env::run(&b, &["alerts"]);
    assert!(alerts.stdout.contains("north  held by node-b"), "{alerts}");
    eprintln!(
        "takeover: kill -9 of node-a to node-b's first poll of its instance: {} ms (ha.lease 3s, poll_interval 1s)",
        takeover.as_millis()
    );
}

#[test]
fn two_daemons_through_twenty_kill_9s_send_each_tier_once() {
    let Some(url) = postgres_db("ha: chaos") else {
        return;
    };
    let (wawp, rx) = (FakeWawp::start(), Receiver::start());
    let envs = [
        Env::new(ha_setup(&wawp, &url, "node-a", &rx)),
        Env::new(ha_setup(&wawp, &url, "node-b", &rx)),
    ];
    let mut daemons = [Some(envs[0].start()), Some(envs[1].start())];
    let instances = ["id-north", "id-south", "id-east"];
    let mut inboxes: Vec<Vec<Value>> = vec![Vec::new(); 3];
    let mut read: HashSet<String> = HashSet::new();
    let mut rng = fastrand::Rng::with_seed(0xC4A05);
    let t = now();
    let kills = 21;
    for round in 0..kills {
        // Every round a chat breaches somewhere (some past both tiers), and now and then
        // an older one is read.
        let inst = round % 3;
        let jid = format!("20{inst}00{round:05}@c.us");
        let since = t - if round % 4 == 0 { 6 * H } else { 3 * H };
        inboxes[inst].push(chat(&jid, &format!("Customer {round}"), 1, "hello?", since));
        if round % 5 == 4 && inboxes[inst].len() > 1 {
            inboxes[inst][0]["unreadCount"] = 0.into();
            read.insert(inboxes[inst][0]["id"].as_str().unwrap().to_string());
        }
        wawp.set_for(instances[inst], Reply::Chats(inboxes[inst].clone()));
        if round % 6 == 0 {
            rx.script(&[Answer::Status(503)]);
        }
        std::thread::sleep(Duration::from_millis(rng.u64(200..1200)));
        let victim = rng.usize(..2);
        if let Some(mut d) = daemons[victim].take() {
            d.kill();
        }
        std::thread::sleep(Duration::from_millis(rng.u64(0..500)));
        daemons[victim] = Some(envs[victim].start());
    }
    // Both run cleanly until everything is delivered and every read chat resolved.
    let done = wait_for(Duration::from_secs(90), || {
        let a = envs[0].alerts();
        outbox_count(&a, "pending") == 0
            && a["episodes"]
                .as_array()
                .unwrap()
                .iter()
                .all(|e| !read.contains(e["id"].as_str().unwrap()))
            && a["episodes"].as_array().unwrap().len() + read.len()
                == inboxes.iter().map(Vec::len).sum::<usize>()
    });
    for d in daemons.iter_mut().flatten() {
        d.signal("TERM");
        assert_eq!(d.wait(PATIENCE), Some(0), "{}", d.log());
    }
    assert!(done, "{}", envs[0].alerts());

    let seen = seen(&rx.accepted());
    let mut notifications = 0;
    for (id, since) in inboxes.iter().flatten().map(|c| {
        (
            c["id"].as_str().unwrap().to_string(),
            c["lastMessage"]["timestamp"].as_i64().unwrap(),
        )
    }) {
        let fired = seen.firings.contains_key(&(id.clone(), since, 7200));
        let must = !read.contains(&id) || fired;
        for after in if t - since >= 5 * H {
            vec![7200, 18000]
        } else {
            vec![7200]
        } {
            let n = seen
                .firings
                .get(&(id.clone(), since, after))
                .copied()
                .unwrap_or(0);
            assert_eq!(
                n,
                usize::from(must),
                "{id} tier {after}s in {n} distinct notifications"
            );
            notifications += n;
        }
        let resolved = seen
            .resolved
            .get(&(id.clone(), since))
            .copied()
            .unwrap_or(0);
        assert_eq!(
            resolved,
            usize::from(read.contains(&id) && fired),
            "{id}: {resolved} resolved notices"
        );
        notifications += resolved;
    }
    assert!(
        seen.repeats <= kills,
        "{} resends for {kills} kills",
        seen.repeats
    );
    assert_eq!(outbox_count(&envs[0].alerts(), "dead"), 0);
    eprintln!(
        "HA chaos: {kills} kill -9s over 2 daemons and 3 instances; {notifications} (chat, episode, tier) notifications each delivered once; {} duplicate deliveries (at most one per kill allowed); {} documents received",
        seen.repeats,
        rx.accepted().len()
    );
}

#[test]
fn the_database_going_away_pauses_polling_fails_healthz_and_loses_nothing() {
    let Some(mut pg) = PgCluster::start("ha: database restart") else {
        return;
    };
    if std::env::var(POSTGRES_ENV).is_err() {
        skip(
            "ha: database restart: runs with the CI services only",
            false,
        );
        return;
    }
    let url = create_database(&pg.admin_url());
    let (wawp, rx) = (FakeWawp::start(), Receiver::start());
    let t = now();
    wawp.chats(vec![chat("201001234567@c.us", "Amina", 1, "hi", t - 3 * H)]);
    let env = Env::new(ha_setup(&wawp, &url, "node-a", &rx).instances(&[("north", "id-north")]));
    let d = env.start();
    let base = d.http_base();
    assert!(
        wait_for(PATIENCE, || rx.accepted().len() == 1),
        "{}",
        d.log()
    );
    assert!(wait_for(PATIENCE, || get(&format!("{base}/healthz")).0 == 200));

    pg.stop();
    let stopped = Instant::now();
    assert!(
        wait_for(PATIENCE, || get(&format!("{base}/healthz")).0 == 503),
        "{}",
        d.log()
    );
    let (_, why) = get(&format!("{base}/healthz"));
    assert!(why.contains("store"), "{why}");
    assert!(!why.contains(DB_PASSWORD), "{why}");
    // Polling pauses: no lease, no poll (one in flight may finish).
    std::thread::sleep(Duration::from_millis(500));
    let polls = wawp.polls();
    // Meanwhile a new customer breaches and Amina is read.
    wawp.chats(vec![
        chat("201001234567@c.us", "Amina", 0, "hi", t - 3 * H),
        chat("201009999999@c.us", "Omar", 1, "?", t - 4 * H),
    ]);
    while stopped.elapsed() < Duration::from_secs(10) {
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(
        wawp.polls() <= polls + 1,
        "polled {} times without a store",
        wawp.polls() - polls
    );
    pg.resume();
    assert!(
        wait_for(PATIENCE, || get(&format!("{base}/healthz")).0 == 200),
        "{}",
        d.log()
    );
    assert!(
        wait_for(PATIENCE, || rx.accepted().len() == 3),
        "{}",
        d.log()
    );
    let polls_after = wawp.polls();
    assert!(
        wait_for(PATIENCE, || wawp.polls() >= polls_after + 3),
        "polling resumed"
    );
    let seen = seen(&rx.accepted());
    assert_eq!(seen.repeats, 0, "nothing doubled");
    assert_eq!(seen.firings.len(), 2, "{:?}", seen.firings);
    assert_eq!(seen.resolved.len(), 1, "{:?}", seen.resolved);
    assert!(!d.log().contains(DB_PASSWORD));
}

#[test]
fn the_daemon_and_a_manual_once_on_one_store_send_a_notification_once() {
    let (wawp, rx) = (FakeWawp::start(), Receiver::start());
    // The daemon's send takes 3s: `once` runs while it is in flight.
    rx.script(&[Answer::Delay(Duration::from_secs(3))]);
    wawp.chats(vec![breached_chat()]);
    let env = Env::new(
        Setup::new(&wawp)
            .poll("1s")
            .set("delivery", "timeout", "\"10s\"")
            .channel(Channel::webhook("pager", &rx.url)),
    );
    let d = env.start();
    assert!(wait_for(PATIENCE, || !rx.posts().is_empty()), "{}", d.log());
    let once = env.run(&["once"]);
    assert_eq!(once.code, 0, "{once}");
    assert!(wait_for(PATIENCE, || outbox_count(&env.alerts(), "sent") == 1));
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(
        rx.posts().len(),
        1,
        "one send: the daemon's claim kept `once` off it"
    );
}

#[test]
fn once_with_another_config_leaves_the_daemons_notifications_alone() {
    let (wawp, rx) = (FakeWawp::start(), Receiver::start());
    rx.script(&vec![Answer::Status(503); 3]);
    wawp.chats(vec![breached_chat()]);
    let env = Env::new(
        Setup::new(&wawp)
            .poll("1s")
            .channel(Channel::webhook("pager", &rx.url)),
    );
    let d = env.start();
    assert!(wait_for(PATIENCE, || rx.posts().len() == 2), "{}", d.log());
    drop(d);
    // An operator tries a config of their own on the same store: only a console channel.
    let other = Env::new(
        Setup::new(&wawp)
            .set(
                "store",
                "path",
                &toml_str(&env.store().display().to_string()),
            )
            .channel(Channel::console()),
    );
    let run = other.run(&["once"]);
    assert_eq!(run.code, 0, "{run}");
    let alerts = env.alerts();
    assert_eq!(outbox_count(&alerts, "dead"), 0, "not killed: {alerts}");
    assert_eq!(outbox_count(&alerts, "pending"), 1, "{alerts}");
    // The daemon that owns the config delivers it.
    let _d = env.start();
    assert!(wait_for(PATIENCE, || rx.accepted().len() == 1));
}

/// Section 6: with PostgreSQL every claim is judged by the database's clock. Node A (true
/// time) claims a firing and waits 8 s for a slow receiver; node B, whose clock is 120 s
/// ahead, starts meanwhile. Judged by B's clock, A's claim (20 s) ran out long ago: B
/// would take the row and send the same firing again.
#[test]
fn a_node_whose_clock_runs_minutes_ahead_never_sends_a_claimed_notification_again() {
    let Some(url) = postgres_db("ha: skewed claims") else {
        return;
    };
    let Some(library) = clock_skew_library("ha: skewed claims") else {
        return;
    };
    let (wawp, rx) = (FakeWawp::start(), Receiver::start());
    rx.script(&[Answer::Delay(Duration::from_secs(8))]);
    wawp.set_for("id-north", Reply::Chats(vec![breached_chat()]));
    let setup = |node: &str| ha_setup(&wawp, &url, node, &rx).set("delivery", "timeout", "\"10s\"");
    let (a, b) = (Env::new(setup("node-a")), Env::new(setup("node-b")));
    let da = a.start();
    assert!(wait_for(PATIENCE, || rx.all().len() == 1), "{}", da.log());
    let db = Daemon::start(&b, &skewed_clock(&library, 120));
    assert!(db.wait_log("inbox-sla is running"), "{}", db.log());
    assert!(
        rx.answered_at(0).is_none(),
        "inconclusive: node-b started only after node-a's send was answered"
    );
    assert_clock_skewed(&db, 120);
    assert!(
        wait_for(PATIENCE, || rx.answered_at(0).is_some()),
        "{}",
        da.log()
    );
    // Both delivery loops have looked at the outbox since (each does at start and when
    // woken); nothing else is due.
    std::thread::sleep(Duration::from_millis(1500));
    let seen = seen(&rx.posts());
    assert_eq!(
        (seen.firings.len(), seen.repeats),
        (1, 0),
        "one POST for one breach: {:?}\nnode-b: {}",
        rx.posts(),
        db.log()
    );
}

/// Section 10 under skewed clocks: whichever way node B's clock is off by 120 s, it
/// neither takes an instance from a live node A (which a clock ahead would do, leaving two
/// nodes polling one number) nor waits minutes past A's death to take it over (which a
/// clock behind would do). Takeover stays within `ha.lease` plus one poll.
#[test]
fn skewed_clocks_neither_steal_a_live_lease_nor_stretch_a_takeover() {
    let Some(library) = clock_skew_library("ha: skewed leases") else {
        return;
    };
    for skew in [120, -120] {
        let Some(url) = postgres_db("ha: skewed leases") else {
            return;
        };
        let (wawp, rx) = (FakeWawp::start(), Receiver::start());
        let a = Env::new(ha_setup(&wawp, &url, "node-a", &rx));
        let b = Env::new(ha_setup(&wawp, &url, "node-b", &rx));
        let mut da = a.start();
        assert!(
            wait_for(PATIENCE, || ["north", "south", "east"]
                .iter()
                .all(|i| holder(&a, i).as_deref() == Some("node-a"))),
            "{}",
            da.log()
        );
        let db = Daemon::start(&b, &skewed_clock(&library, skew));
        assert!(db.wait_log("standing by"), "skew {skew}: {}", db.log());
        assert_clock_skewed(&db, skew);
        // The group shares the instances: node-b's share is handed over by node-a; node-a's
        // share must stay node-a's through several of node-b's lease attempts (poll 1s),
        // which a clock 120 s ahead would turn into thefts.
        let instances: Vec<String> = ["north", "south", "east"].map(String::from).to_vec();
        let nodes: Vec<String> = ["node-a", "node-b"].map(String::from).to_vec();
        let share = inbox_sla::share::assign(&instances, &nodes);
        assert!(
            wait_for(PATIENCE, || instances
                .iter()
                .all(|i| holder(&a, i).as_deref() == Some(share[i.as_str()]))),
            "skew {skew}: the instances are not shared as assigned ({share:?})\n{}",
            db.log()
        );
        for _ in 0..25 {
            std::thread::sleep(Duration::from_millis(100));
            for i in instances.iter().filter(|i| share[i.as_str()] == "node-a") {
                assert_eq!(
                    holder(&a, i).as_deref(),
                    Some("node-a"),
                    "skew {skew}: node-b took {i} from a live node-a\n{}",
                    db.log()
                );
            }
        }
        let killed = Instant::now();
        da.kill();
        assert!(
            wait_for(PATIENCE, || ["north", "south", "east"]
                .iter()
                .all(|i| holder(&b, i).as_deref() == Some("node-b"))),
            "skew {skew}: no takeover\n{}",
            db.log()
        );
        let takeover = killed.elapsed();
        assert!(
            takeover <= Duration::from_secs(3 + 1 + 3),
            "skew {skew}: took over in {takeover:?} (lease 3s + poll 1s)"
        );
        eprintln!(
            "skewed takeover: node-b {skew:+}s: {} ms after kill -9 (ha.lease 3s, poll 1s)",
            takeover.as_millis()
        );
    }
}

/// Section 9: a firing Alertmanager alert's `endsAt` outlasts a takeover, at least
/// `ha.lease` plus two poll intervals ahead. With `resend = 5s`, `lease = 30s`,
/// `poll_interval = 10s` an `endsAt` four resends ahead (20 s) let Alertmanager resolve a
/// waiting chat for the 13 s between a killed holder's last alert and the new holder's
/// first. Every alert of the group must reach past the slowest takeover.
#[test]
fn an_alertmanager_alert_outlasts_a_takeover() {
    let Some(url) = postgres_db("ha: alertmanager endsAt") else {
        return;
    };
    let (wawp, rx, am) = (FakeWawp::start(), Receiver::start(), Receiver::start());
    wawp.chats(vec![breached_chat()]);
    let env = Env::new(
        ha_setup(&wawp, &url, "node-a", &rx)
            .instances(&[("north", "id-north")])
            .poll("10s")
            .set("ha", "lease", "\"30s\"")
            .tiers_clear()
            .tier("2h", &["pager", "am"])
            .channel(Channel::alertmanager("am", &[&am.base]).key("resend", "\"5s\"")),
    );
    let d = env.start();
    assert!(
        wait_for(PATIENCE, || am
            .posts()
            .iter()
            .any(|p| p.as_array().is_some_and(|a| !a.is_empty()))),
        "{}",
        d.log()
    );
    let sent = now();
    for alert in am
        .posts()
        .iter()
        .flat_map(|p| p.as_array().cloned().unwrap_or_default())
    {
        let ends = chrono::DateTime::parse_from_rfc3339(alert["endsAt"].as_str().unwrap())
            .unwrap()
            .timestamp();
        assert!(
            ends - sent >= 30 + 2 * 10,
            "endsAt only {}s ahead: {alert}",
            ends - sent
        );
    }
}

/// A node that takes over an instance re-sends its alerts to Alertmanager at once, and
/// even while the instance's polls fail: the dying node's alerts must not run out first.
/// (The standby flag used to clear only on a successful poll, so a node that took over a
/// failing instance never re-sent its alerts, and Alertmanager resolved every waiting
/// chat; and it re-sent only at its next `resend` tick.) Its `/healthz` says the
/// instance is failing.
#[test]
fn a_node_taking_over_resends_the_instances_alerts_at_once_even_while_polls_fail() {
    let Some(url) = postgres_db("ha: takeover resends") else {
        return;
    };
    let (wawp, rx, am) = (FakeWawp::start(), Receiver::start(), Receiver::start());
    wawp.chats(vec![breached_chat()]);
    let setup = |node: &str| {
        ha_setup(&wawp, &url, node, &rx)
            .instances(&[("north", "id-north")])
            .tiers_clear()
            .tier("2h", &["pager", "am"])
            .channel(Channel::alertmanager("am", &[&am.base]).key("resend", "\"30s\""))
    };
    let (a, b) = (Env::new(setup("node-a")), Env::new(setup("node-b")));
    let mut da = a.start();
    assert!(
        wait_for(PATIENCE, || holder(&a, "north").as_deref()
            == Some("node-a")),
        "{}",
        da.log()
    );
    let db = b.start();
    assert!(db.wait_log("standing by"), "{}", db.log());
    assert!(
        wait_for(PATIENCE, || !am.posts().is_empty()),
        "{}",
        da.log()
    );
    // The engine fails from now on; node-a dies.
    wawp.set(Reply::Status(500, "engine down".into()));
    std::thread::sleep(Duration::from_millis(1500));
    let seen = am.posts().len();
    let killed = Instant::now();
    da.kill();
    let north_alert = |p: &Value| {
        p.as_array()
            .is_some_and(|a| a.iter().any(|x| x["labels"]["wawp_instance"] == "north"))
    };
    assert!(
        wait_for(PATIENCE, || am.posts()[seen..].iter().any(north_alert)),
        "node-b never re-sent north's alerts:\n{}",
        db.log()
    );
    let resent = killed.elapsed();
    assert!(
        resent <= Duration::from_secs(3 + 1 + 3),
        "re-sent {resent:?} after the kill (lease 3s, poll 1s; resend 30s must not be waited for)"
    );
    let base = db.http_base();
    assert!(
        wait_for(PATIENCE, || get(&format!("{base}/healthz")).0 == 503),
        "node-b holds a failing instance: /healthz must say so"
    );
    eprintln!(
        "takeover of a failing instance: Alertmanager heard its alerts {} ms after the kill",
        resent.as_millis()
    );
}

/// Under HA the config is often changed one node at a time. Node A drops `north` from its
/// config while node B still watches it: the chat must stay watched (B takes it over
/// after A's lease runs out), with no "unwatched" resolved notice and no second firing.
/// Only once no node has held north for a whole lease term (B dropped it too) does it
/// end, once, as no longer watched.
#[test]
fn an_instance_removed_on_one_node_stays_watched_while_another_keeps_it() {
    let Some(url) = postgres_db("ha: rolling removal") else {
        return;
    };
    let (wawp, rx) = (FakeWawp::start(), Receiver::start());
    wawp.set_for("id-north", Reply::Chats(vec![breached_chat()]));
    let two = [("north", "id-north"), ("south", "id-south")];
    let setup = |node: &str| ha_setup(&wawp, &url, node, &rx).instances(&two);
    let (mut a, mut b) = (Env::new(setup("node-a")), Env::new(setup("node-b")));
    let da = a.start();
    assert!(
        wait_for(PATIENCE, || holder(&a, "north").as_deref()
            == Some("node-a")),
        "{}",
        da.log()
    );
    assert!(wait_for(PATIENCE, || rx.accepted().len() == 1));
    let db = b.start();
    assert!(db.wait_log("standing by"), "{}", db.log());
    a.update(|s| s.instances(&[("south", "id-south")]));
    da.signal("HUP");
    assert!(
        wait_for(PATIENCE, || holder(&b, "north").as_deref()
            == Some("node-b")),
        "{}",
        db.log()
    );
    // Both nodes' housekeeping has looked (it runs at every reload and every 15s).
    std::thread::sleep(Duration::from_millis(2000));
    let kinds: Vec<String> = rx
        .accepted()
        .iter()
        .map(|p| p["status"].as_str().unwrap_or("").to_string())
        .collect();
    assert_eq!(kinds, vec!["firing"], "north is still watched by node-b");
    b.update(|s| s.instances(&[("south", "id-south")]));
    db.signal("HUP");
    assert!(
        wait_for(Duration::from_secs(45), || rx.accepted().len() == 2),
        "nobody ended north once every node dropped it:\n{}\n{}",
        da.log(),
        db.log()
    );
    let last = &rx.accepted()[1];
    assert_eq!(last["status"], "resolved", "{last}");
    assert_eq!(last["chats"][0]["reason"], "unwatched", "{last}");
}

/// Section 10: the group shares the instances. Three nodes hold a third each (as
/// `share::assign` says, so every node agrees without talking); after a kill -9 the two
/// left hold half each within `ha.lease` plus a poll or two; a node that joins takes its
/// share back from the others, which hand it over.
#[test]
fn an_ha_group_shares_the_instances_and_a_dead_nodes_share_moves() {
    let Some(url) = postgres_db("ha: sharing") else {
        return;
    };
    let (wawp, rx) = (FakeWawp::start(), Receiver::start());
    let names: Vec<(String, String)> = (0..12)
        .map(|i| (format!("shop-{i:02}"), format!("id-{i}")))
        .collect();
    let list: Vec<(&str, &str)> = names
        .iter()
        .map(|(n, i)| (n.as_str(), i.as_str()))
        .collect();
    let instances: Vec<String> = names.iter().map(|(n, _)| n.clone()).collect();
    let env = |node: &str| Env::new(ha_setup(&wawp, &url, node, &rx).instances(&list));
    let (a, b, c) = (env("node-a"), env("node-b"), env("node-c"));
    let held_by = |env: &Env| -> std::collections::BTreeMap<String, usize> {
        let mut by = std::collections::BTreeMap::new();
        for l in env.alerts()["leases"]
            .as_array()
            .cloned()
            .unwrap_or_default()
        {
            if l["live"] == true {
                *by.entry(l["holder"].as_str().unwrap_or("").to_string())
                    .or_default() += 1;
            }
        }
        by
    };
    let expect = |nodes: &[&str]| -> std::collections::BTreeMap<String, usize> {
        let nodes: Vec<String> = nodes.iter().map(|n| n.to_string()).collect();
        let mut by = std::collections::BTreeMap::new();
        for node in inbox_sla::share::assign(&instances, &nodes).values() {
            *by.entry(node.to_string()).or_default() += 1;
        }
        by
    };
    let da = a.start();
    assert!(
        wait_for(PATIENCE, || held_by(&a) == expect(&["node-a"])),
        "{}",
        da.log()
    );
    let (mut db, dc) = (b.start(), c.start());
    let three = expect(&["node-a", "node-b", "node-c"]);
    assert!(three.values().all(|&n| n == 4), "{three:?}");
    assert!(
        wait_for(PATIENCE, || held_by(&a) == three),
        "shared by three: {:?}\n{}",
        held_by(&a),
        da.log()
    );
    let killed = Instant::now();
    db.kill();
    let two = expect(&["node-a", "node-c"]);
    assert!(two.values().all(|&n| n == 6), "{two:?}");
    assert!(
        wait_for(PATIENCE, || held_by(&a) == two),
        "shared by two after a kill -9: {:?}\n{}",
        held_by(&a),
        dc.log()
    );
    let moved = killed.elapsed();
    eprintln!(
        "a dead node's share moved in {} ms (ha.lease 3s, poll 1s)",
        moved.as_millis()
    );
    assert!(
        moved <= Duration::from_secs(3 + 1 + 3),
        "a dead node's share took {moved:?} to move (lease 3s + a poll)"
    );
}

/// The HA share's figures (issue: "three nodes hold 334/333/333 of 1,000 (± 1), two after
/// a kill -9 hold 500/500 within lease + one poll"): not a test that times anything, a
/// measurement that prints. `SHARE_NUMBERS` (default 1000) instances on one PostgreSQL,
/// `ha.lease = 10s`, `poll_interval = 5s`:
///
/// `bash .ci/services.sh`-style server in INBOX_SLA_TEST_POSTGRES, then
/// `cargo test --release --test ha -- --ignored share_figures --nocapture`.
#[test]
#[ignore = "a measurement: run it by name with --ignored"]
fn share_figures() {
    let Some(url) = postgres_db("ha: share figures") else {
        return;
    };
    let n: usize = std::env::var("SHARE_NUMBERS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1000);
    let (wawp, rx) = (FakeWawp::start(), Receiver::start());
    wawp.chats(vec![]);
    let names: Vec<(String, String)> = (0..n)
        .map(|i| (format!("shop-{i:04}"), format!("id-{i}")))
        .collect();
    let list: Vec<(&str, &str)> = names
        .iter()
        .map(|(n, i)| (n.as_str(), i.as_str()))
        .collect();
    let env = |node: &str| {
        Env::new(
            ha_setup(&wawp, &url, node, &rx)
                .instances(&list)
                .poll("5s")
                .set("ha", "lease", "\"10s\"")
                .set("log", "level", "\"warn\""),
        )
    };
    let held_by = |env: &Env| -> std::collections::BTreeMap<String, usize> {
        let mut by = std::collections::BTreeMap::new();
        for l in env.alerts()["leases"]
            .as_array()
            .cloned()
            .unwrap_or_default()
        {
            if l["live"] == true {
                *by.entry(l["holder"].as_str().unwrap_or("").to_string())
                    .or_default() += 1;
            }
        }
        by
    };
    let settle = |env: &Env, want: usize, what: &str, since: Instant| {
        let mut last = Default::default();
        let done = wait_for(Duration::from_secs(120), || {
            last = held_by(env);
            last.len() == want && last.values().sum::<usize>() == n && {
                let (lo, hi) = (
                    last.values().min().copied().unwrap_or(0),
                    last.values().max().copied().unwrap_or(0),
                );
                hi - lo <= 2
            }
        });
        println!(
            "{what}: {last:?} after {:.1} s{}",
            since.elapsed().as_secs_f64(),
            if done { "" } else { " (not settled in 120 s)" }
        );
    };
    let (a, b, c) = (env("node-a"), env("node-b"), env("node-c"));
    println!("share figures: {n} instances, ha.lease 10s, poll_interval 5s, PostgreSQL");
    let t = Instant::now();
    let _da = a.start();
    let _db = b.start();
    settle(&a, 2, "two nodes started together", t);
    let t = Instant::now();
    let mut dc = c.start();
    settle(&a, 3, "a third node joins", t);
    let t = Instant::now();
    dc.kill();
    settle(&a, 2, "the third killed with SIGKILL", t);
    println!(
        "requests in flight for one instance at once, at most: {} (two holders would poll one instance together)",
        wawp.max_in_flight_per_instance()
    );
}
