//! The `run` daemon as systemd runs it: signals, reload, the blind monitor, metrics and
//! health, the notify protocol (and a supervisor that does not read it), the watchdog fed
//! by progress, several instances polled concurrently, and a `kill -9` mid-delivery.
//! Every wait is a deadline loop, never a fixed sleep.

mod common;

use common::*;
use std::time::{Duration, Instant};

fn slack(wawp: &FakeWawp, rx: &Receiver) -> Setup {
    Setup::new(wawp)
        .poll("1s")
        .channel(Channel::slack("oncall", &rx.url))
}

#[test]
fn sigterm_and_sigint_exit_0_within_the_grace_while_a_receiver_hangs() {
    for signal in ["TERM", "INT"] {
        let (wawp, rx) = (FakeWawp::start(), Receiver::start());
        rx.script(&[Answer::Hang]);
        wawp.chats(vec![breached_chat()]);
        let env = Env::new(slack(&wawp, &rx).set("delivery", "timeout", "\"60s\""));
        let mut d = env.start();
        assert!(wait_for(PATIENCE, || !rx.posts().is_empty()), "{}", d.log());
        let t = Instant::now();
        d.signal(signal);
        // 2s for the pollers, 10s for deliveries, and slack for a loaded machine.
        let code = d.wait(Duration::from_secs(25));
        assert_eq!(code, Some(0), "{signal}: {}", d.log());
        let took = t.elapsed();
        assert!(
            took >= Duration::from_secs(9),
            "{signal}: the hung delivery got its grace: {took:?}"
        );
        let log = d.log();
        assert!(
            log.contains(&format!("SIG{signal}: shutting down")),
            "{log}"
        );
        assert!(log.contains("stay queued"), "{log}");
        let alerts = env.alerts();
        assert_eq!(
            outbox_count(&alerts, "pending"),
            1,
            "nothing lost: {alerts}"
        );
        assert_eq!(outbox_count(&alerts, "sent"), 0, "{alerts}");
    }
}

#[test]
fn sighup_keeps_the_old_config_when_the_new_one_is_broken_and_applies_a_good_one() {
    let (wawp, rx) = (FakeWawp::start(), Receiver::start());
    wawp.chats(vec![breached_chat()]);
    let mut env = Env::new(slack(&wawp, &rx).set("sla", "threshold", "\"4h\""));
    let d = env.start();
    assert!(wait_for(PATIENCE, || wawp.polls() >= 2), "{}", d.log());
    assert!(rx.posts().is_empty(), "3h is under a 4h SLA");

    env.update(|s| s.set("sla", "treshold", "\"2h\""));
    d.signal("HUP");
    assert!(d.wait_log("keeping the running one"), "{}", d.log());
    assert!(
        d.log().contains("treshold"),
        "the reason is named:\n{}",
        d.log()
    );
    let polls = wawp.polls();
    assert!(
        wait_for(PATIENCE, || wawp.polls() >= polls + 2),
        "still polling"
    );
    assert!(rx.posts().is_empty());

    env.update(|s| s.unset("sla", "treshold").set("sla", "threshold", "\"2h\""));
    d.signal("HUP");
    assert!(
        wait_for(PATIENCE, || rx.accepted().len() == 1),
        "{}",
        d.log()
    );
    assert!(
        slack_texts(&rx)[0].contains("1 chat waiting over 2h"),
        "{:?}",
        slack_texts(&rx)
    );
    assert!(d.log().contains("configuration reloaded"), "{}", d.log());
}

#[test]
fn a_blind_monitor_says_so_once_and_says_recovered_once() {
    let (wawp, rx) = (FakeWawp::start(), Receiver::start());
    wawp.set(Reply::Status(401, r#"{"message": "Unauthorized"}"#.into()));
    let env = Env::new(slack(&wawp, &rx).set("sla", "blind_after", "\"2s\""));
    let d = env.start();
    assert!(
        wait_for(PATIENCE, || rx.accepted().len() == 1),
        "{}",
        d.log()
    );
    let blind = slack_texts(&rx)[0].clone();
    assert!(blind.contains("monitor blind"), "{blind}");
    let post = rx.accepted()[0].to_string();
    assert!(
        post.contains("401") && post.contains("access token is wrong"),
        "{post}"
    );
    let polls = wawp.polls();
    assert!(wait_for(PATIENCE, || wawp.polls() >= polls + 3));
    assert_eq!(
        rx.accepted().len(),
        1,
        "one blind alert, not one per failed poll"
    );

    wawp.chats(vec![]);
    assert!(
        wait_for(PATIENCE, || rx.accepted().len() == 2),
        "{}",
        d.log()
    );
    assert!(
        slack_texts(&rx)[1].contains("monitor recovered"),
        "{:?}",
        slack_texts(&rx)
    );
    let polls = wawp.polls();
    assert!(wait_for(PATIENCE, || wawp.polls() >= polls + 3));
    assert_eq!(rx.accepted().len(), 2, "one recovered notice");
}

#[test]
fn metrics_carry_section_7_figures_and_healthz_flips_while_the_source_fails() {
    let (wawp, rx) = (FakeWawp::start(), Receiver::start());
    wawp.chats(vec![
        breached_chat(),
        chat("201001234568@c.us", "Omar", 1, "hi", now() - 60),
    ]);
    let env = Env::new(slack(&wawp, &rx).http());
    let d = env.start();
    let base = d.http_base();
    assert!(
        wait_for(PATIENCE, || get(&format!("{base}/healthz")).0 == 200),
        "{}",
        d.log()
    );
    assert!(wait_for(PATIENCE, || rx.accepted().len() == 1));
    assert!(wait_for(PATIENCE, || get(&format!("{base}/metrics"))
        .1
        .contains("result=\"sent\"")));
    let (code, metrics) = get(&format!("{base}/metrics"));
    assert_eq!(code, 200);
    for want in [
        "# TYPE inbox_sla_polls_total counter",
        "# HELP inbox_sla_polls_total",
        "inbox_sla_polls_total{wawp_instance=\"support\",result=\"ok\"}",
        "inbox_sla_poll_duration_seconds",
        "inbox_sla_chats_waiting{wawp_instance=\"support\"} 2",
        "inbox_sla_chats_breached{wawp_instance=\"support\"} 1",
        "inbox_sla_notifications_total{channel=\"oncall\",result=\"sent\"} 1",
        "inbox_sla_outbox_pending 0",
        "inbox_sla_outbox_dead 0",
        "inbox_sla_last_successful_poll_timestamp_seconds{wawp_instance=\"support\"}",
    ] {
        assert!(metrics.contains(want), "missing {want}:\n{metrics}");
    }
    assert!(
        !metrics.contains("{instance="),
        "the scrape target's label is left alone:\n{metrics}"
    );
    assert_no_secrets(&metrics);

    wawp.set(Reply::Status(500, "boom".into()));
    assert!(
        wait_for(PATIENCE, || get(&format!("{base}/healthz")).0 == 503),
        "unhealthy after 3 × poll_interval without a good poll"
    );
    let (_, why) = get(&format!("{base}/healthz"));
    assert!(why.contains("support"), "{why}");
    assert!(
        get(&format!("{base}/metrics"))
            .1
            .contains("result=\"http_500\"")
    );
}

#[test]
fn systemd_hears_ready_watchdog_status_reloading_and_stopping() {
    let (wawp, rx) = (FakeWawp::start(), Receiver::start());
    wawp.chats(vec![breached_chat()]);
    let env = Env::new(slack(&wawp, &rx));
    let mut socket = NotifySocket::bind(env.dir.path());
    let mut d = Daemon::start(
        &env,
        &[
            ("NOTIFY_SOCKET", socket.path.display().to_string()),
            ("WATCHDOG_USEC", "900000".into()),
        ],
    );
    assert!(socket.read_until("READY=1", PATIENCE), "{}", socket.seen());
    assert!(
        socket.read_until("WATCHDOG=1", PATIENCE),
        "{}",
        socket.seen()
    );
    assert!(
        socket.read_until("STATUS=1 waiting, 1 breached, last poll", PATIENCE),
        "{}",
        socket.seen()
    );
    d.signal("HUP");
    assert!(
        socket.read_until("RELOADING=1", PATIENCE),
        "{}",
        socket.seen()
    );
    assert!(
        socket.read_until("configuration reloaded", PATIENCE),
        "READY=1 again after the reload: {}",
        socket.seen()
    );
    d.signal("TERM");
    assert!(
        socket.read_until("STOPPING=1", PATIENCE),
        "{}",
        socket.seen()
    );
    assert_eq!(d.wait(PATIENCE), Some(0));
}

#[test]
fn a_supervisor_that_never_reads_its_socket_freezes_nothing() {
    let (wawp, rx) = (FakeWawp::start(), Receiver::start());
    wawp.chats(vec![breached_chat()]);
    let env = Env::new(slack(&wawp, &rx).http());
    // Bound and never read: once its queue is full, every write to it blocks.
    let socket_path = env.dir.path().join("deaf.sock");
    let _deaf = std::os::unix::net::UnixDatagram::bind(&socket_path).unwrap();
    let mut d = Daemon::start(
        &env,
        &[
            ("NOTIFY_SOCKET", socket_path.display().to_string()),
            // A ping every 10ms fills any queue within a second.
            ("WATCHDOG_USEC", "30000".into()),
        ],
    );
    let base = d.http_base();
    assert!(
        wait_for(PATIENCE, || rx.accepted().len() == 1),
        "{}",
        d.log()
    );
    // Long after the queue filled: polling goes on and /healthz answers.
    let polls = wawp.polls();
    assert!(
        wait_for(PATIENCE, || wawp.polls() >= polls + 3),
        "polling froze:\n{}",
        d.log()
    );
    for _ in 0..5 {
        let t = Instant::now();
        assert_eq!(get(&format!("{base}/healthz")).0, 200);
        assert!(
            t.elapsed() < Duration::from_secs(5),
            "/healthz took {:?}",
            t.elapsed()
        );
    }
    d.signal("TERM");
    assert_eq!(d.wait(PATIENCE), Some(0), "{}", d.log());
}

/// The daemon under a systemd watchdog of one second, once it said READY=1.
fn under_a_one_second_watchdog(env: &Env) -> (Daemon, NotifySocket) {
    let mut socket = NotifySocket::bind(env.dir.path());
    let d = Daemon::start(
        env,
        &[
            ("NOTIFY_SOCKET", socket.path.display().to_string()),
            ("WATCHDOG_USEC", "1000000".into()),
        ],
    );
    assert!(socket.read_until("READY=1", PATIENCE), "{}", d.log());
    (d, socket)
}

/// A slow but progressing cycle never starves the watchdog (section 7): six pages, each
/// dripping its body for 250ms (under the 500ms a request may take under a 1s watchdog),
/// make a cycle longer than the watchdog interval, and the pings go on.
#[test]
fn a_slow_but_progressing_cycle_keeps_the_watchdog_fed() {
    fn drip(mut s: std::net::TcpStream) {
        use std::io::Write;
        use std::sync::atomic::{AtomicUsize, Ordering};
        static SERVED: AtomicUsize = AtomicUsize::new(0);
        read_request_head(&mut s);
        let n = SERVED.fetch_add(1, Ordering::SeqCst) % 7;
        let body = if n == 6 {
            "[]".to_string()
        } else {
            format!(
                r#"[{{"id": "20100123456{n}@c.us", "unreadCount": 1, "lastMessage": {{"timestamp": 1}}}}]"#
            )
        };
        let _ = write!(
            s,
            "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
            body.len()
        );
        for chunk in body.as_bytes().chunks(body.len() / 5 + 1) {
            if s.write_all(chunk).and_then(|_| s.flush()).is_err() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
    let port = raw_server(drip);
    let wawp = FakeWawp::start();
    let env = Env::new(
        Setup::new(&wawp)
            .wawp("base_url", &toml_str(&format!("http://127.0.0.1:{port}")))
            .wawp("request_timeout", "\"60s\"")
            .wawp("page_size", "1")
            .poll("5s")
            .channel(Channel::console()),
    );
    let (d, mut socket) = under_a_one_second_watchdog(&env);
    let during = socket.listen(Duration::from_millis(2500));
    assert!(
        during.contains("WATCHDOG=1"),
        "a progressing cycle keeps the watchdog fed: {during}"
    );
    let log = d.log();
    assert!(!log.contains("not pinging the watchdog"), "{log}");
    assert!(
        !log.contains("timed out"),
        "no page ran into the cap: {log}"
    );
}

/// Section 4: under a watchdog a request never runs past half its interval. A source that
/// never answers (with `request_timeout = "60s"`) fails the poll after 500ms under a 1s
/// watchdog: the pings go on, and the monitor goes blind instead of the daemon being
/// restarted into the same hang for ever.
#[test]
fn a_hung_source_fails_the_poll_within_half_the_watchdog_and_the_monitor_goes_blind() {
    let wawp = FakeWawp::start();
    wawp.set(Reply::Hang);
    let env = Env::new(
        Setup::new(&wawp)
            .wawp("request_timeout", "\"60s\"")
            .poll("1s")
            .set("sla", "blind_after", "\"2s\"")
            .channel(Channel::console()),
    );
    let (d, mut socket) = under_a_one_second_watchdog(&env);
    assert!(d.wait_log("timed out"), "{}", d.log());
    let later = socket.listen(Duration::from_secs(2));
    assert!(
        later.contains("WATCHDOG=1"),
        "the pings go on while the source hangs: {later}"
    );
    assert!(d.wait_log("monitor blind"), "{}", d.log());
    let log = d.log();
    assert!(!log.contains("not pinging the watchdog"), "{log}");
    assert!(
        log.contains("longer than half the systemd watchdog interval"),
        "{log}"
    );
}

/// A cycle that is stuck (here: its commit waits on a store another process holds locked)
/// makes no progress, and the pings stop: systemd restarts what cannot move.
#[test]
fn a_stuck_cycle_stops_the_watchdog_pings() {
    let wawp = FakeWawp::start();
    let env = Env::new(Setup::new(&wawp).poll("1s").channel(Channel::console()));
    let (d, mut socket) = under_a_one_second_watchdog(&env);
    let lock = rusqlite::Connection::open(env.store()).unwrap();
    lock.execute_batch("BEGIN EXCLUSIVE").unwrap();
    // A breached chat: the next cycle must write, and waits on the lock.
    wawp.chats(vec![breached_chat()]);
    assert!(d.wait_log("not pinging the watchdog"), "{}", d.log());
    socket.drain();
    let later = socket.listen(Duration::from_millis(1500));
    assert!(
        !later.contains("WATCHDOG=1"),
        "pings went on while the cycle was stuck: {later}"
    );
    lock.execute_batch("ROLLBACK").unwrap();
}

#[test]
fn instances_poll_concurrently_within_the_bound_and_never_two_cycles_of_one() {
    let wawp = FakeWawp::start();
    // Each answer takes 1.5s, longer than the 1s interval: ticks pile up, cycles must not.
    wawp.delay(Duration::from_millis(1500));
    wawp.chats(vec![]);
    let names: Vec<(String, String)> = (0..6)
        .map(|i| (format!("inst{i}"), format!("id{i}")))
        .collect();
    let refs: Vec<(&str, &str)> = names
        .iter()
        .map(|(n, i)| (n.as_str(), i.as_str()))
        .collect();
    let env = Env::new(
        Setup::new(&wawp)
            .instances(&refs)
            .wawp("max_concurrent", "3")
            .poll("1s")
            .channel(Channel::console()),
    );
    let d = env.start();
    assert!(
        wait_for(PATIENCE, || (0..6)
            .all(|i| wawp.polls_of(&format!("id{i}")) >= 2)),
        "every instance polled twice:\n{}",
        d.log()
    );
    assert_eq!(
        wawp.max_in_flight_per_instance(),
        1,
        "two cycles of one instance overlapped"
    );
    assert_eq!(
        wawp.max_in_flight_total(),
        3,
        "at most wawp.max_concurrent polls at once"
    );
}

#[test]
fn kill_9_after_a_delivery_resends_at_most_that_one_message_and_loses_nothing() {
    let (wawp, slack_rx, hook_rx) = (FakeWawp::start(), Receiver::start(), Receiver::start());
    // The webhook hangs on its first try: its notification is in flight when the daemon dies.
    hook_rx.script(&[Answer::Hang]);
    let t = now();
    wawp.chats(vec![
        chat("201001234567@c.us", "Amina", 1, "hi", t - 3 * H),
        chat("201001234568@c.us", "Omar", 3, "hello?", t - 4 * H),
    ]);
    let env = Env::new(
        slack(&wawp, &slack_rx)
            .channel(Channel::webhook("pager", &hook_rx.url))
            // The dead daemon's claim expires soon after its send timeout.
            .set("delivery", "timeout", "\"2s\""),
    );
    let mut d = env.start();
    assert!(wait_for(PATIENCE, || slack_rx.accepted().len() == 1
        && !hook_rx.posts().is_empty()));
    d.kill();

    let d2 = env.start();
    assert!(
        wait_for(PATIENCE, || hook_rx.accepted().len() == 1),
        "{}",
        d2.log()
    );
    let polls = wawp.polls();
    assert!(
        wait_for(PATIENCE, || wawp.polls() >= polls + 3),
        "keeps polling"
    );
    let slack_msgs = slack_rx.accepted();
    assert!(
        (1..=2).contains(&slack_msgs.len()) && slack_msgs.iter().all(|m| m == &slack_msgs[0]),
        "at most the one accepted message again: {slack_msgs:?}"
    );
    assert_eq!(
        hook_rx.accepted().len(),
        1,
        "the in-flight notification was not lost"
    );
    assert_eq!(hook_rx.accepted()[0]["chats"].as_array().unwrap().len(), 2);
    let alerts = env.alerts();
    assert_eq!(outbox_count(&alerts, "pending"), 0, "{alerts}");
    let escalated = alerts["episodes"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["escalated"] == true)
        .count();
    assert_eq!(escalated, 2, "{alerts}");
}
