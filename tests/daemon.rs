//! The `run` daemon as systemd runs it: signals, reload, the blind monitor, metrics and
//! health, the notify protocol, and a `kill -9` in the middle of delivering.

mod common;

use common::*;
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

const H: i64 = 3600;

/// A running `inbox-sla run`, its stderr captured to a file.
struct Daemon {
    child: Child,
    log: std::path::PathBuf,
}

impl Daemon {
    fn start(env: &Env, extra_env: &[(&str, String)]) -> Daemon {
        let log = env
            .dir
            .path()
            .join(format!("daemon-{}.log", fastrand::u32(..)));
        let file = std::fs::File::create(&log).unwrap();
        let mut cmd = env.command(&["run"]);
        cmd.stdout(Stdio::null()).stderr(file);
        for (k, v) in extra_env {
            cmd.env(k, v);
        }
        Daemon {
            child: cmd.spawn().unwrap(),
            log,
        }
    }

    fn log(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        assert_no_secrets(&text);
        text
    }

    fn signal(&self, name: &str) {
        let status = std::process::Command::new("kill")
            .arg(format!("-{name}"))
            .arg(self.child.id().to_string())
            .status()
            .unwrap();
        assert!(status.success());
    }

    /// Waits for the exit; `None` if it is still running after `timeout`.
    fn wait(&mut self, timeout: Duration) -> Option<i32> {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if let Some(status) = self.child.try_wait().unwrap() {
                return Some(status.code().unwrap_or(-1));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        None
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn statuses(rx: &Receiver) -> Vec<String> {
    rx.accepted()
        .iter()
        .map(|p| p["text"].as_str().unwrap_or("").to_string())
        .collect()
}

#[test]
fn sigterm_exits_0_within_the_grace_while_a_receiver_hangs() {
    let (wawp, rx) = (FakeWawp::start(), Receiver::start());
    rx.script(&[Answer::Hang]);
    wawp.chats(vec![breached_chat()]);
    let env = Env::new(
        &wawp,
        &format!(
            "[sla]\npoll_interval = \"1s\"\n[delivery]\ntimeout = \"60s\"\n{}",
            slack_channel(&rx.url)
        ),
    );
    let mut d = Daemon::start(&env, &[]);
    assert!(
        wait_for(Duration::from_secs(10), || !rx.posts().is_empty()),
        "{}",
        d.log()
    );
    let t = Instant::now();
    d.signal("TERM");
    let code = d.wait(Duration::from_secs(14));
    assert_eq!(code, Some(0), "{}", d.log());
    assert!(
        t.elapsed() < Duration::from_secs(13),
        "took {:?}",
        t.elapsed()
    );
    let log = d.log();
    assert!(log.contains("SIGTERM"), "{log}");
    assert!(log.contains("stay queued"), "{log}");
    let alerts = env.run(&["alerts"]);
    assert!(
        alerts.stdout.contains("Pending notifications: 1"),
        "nothing lost:\n{alerts}"
    );
}

#[test]
fn sighup_keeps_the_old_config_when_the_new_one_is_broken_and_applies_a_good_one() {
    let (wawp, rx) = (FakeWawp::start(), Receiver::start());
    wawp.chats(vec![breached_chat()]);
    let sections = |threshold: &str| {
        format!(
            "[sla]\npoll_interval = \"1s\"\nthreshold = \"{threshold}\"\n{}",
            slack_channel(&rx.url)
        )
    };
    let env = Env::new(&wawp, &sections("4h"));
    let d = Daemon::start(&env, &[]);
    assert!(
        wait_for(Duration::from_secs(10), || wawp.queries().len() >= 2),
        "{}",
        d.log()
    );
    assert!(rx.posts().is_empty(), "3h is under a 4h SLA");

    let good = std::fs::read_to_string(&env.config).unwrap();
    std::fs::write(
        &env.config,
        good.replace("threshold = \"4h\"", "treshold = \"2h\""),
    )
    .unwrap();
    d.signal("HUP");
    assert!(
        wait_for(Duration::from_secs(10), || d
            .log()
            .contains("keeping the running one")),
        "{}",
        d.log()
    );
    assert!(
        d.log().contains("treshold"),
        "the reason is named:\n{}",
        d.log()
    );
    let polls = wawp.queries().len();
    assert!(
        wait_for(Duration::from_secs(10), || wawp.queries().len()
            >= polls + 2),
        "still polling"
    );
    assert!(rx.posts().is_empty());

    std::fs::write(
        &env.config,
        good.replace("threshold = \"4h\"", "threshold = \"2h\""),
    )
    .unwrap();
    d.signal("HUP");
    assert!(
        wait_for(Duration::from_secs(10), || rx.accepted().len() == 1),
        "{}",
        d.log()
    );
    assert!(
        statuses(&rx)[0].contains("1 chat waiting over 2h"),
        "{:?}",
        statuses(&rx)
    );
    assert!(d.log().contains("configuration reloaded"), "{}", d.log());
}

#[test]
fn a_blind_monitor_says_so_once_and_says_recovered_once() {
    let (wawp, rx) = (FakeWawp::start(), Receiver::start());
    wawp.set(Reply::Status(401, r#"{"message": "Unauthorized"}"#.into()));
    let env = Env::new(
        &wawp,
        &format!(
            "[sla]\npoll_interval = \"1s\"\nblind_after = \"2s\"\n{}",
            slack_channel(&rx.url)
        ),
    );
    let d = Daemon::start(&env, &[]);
    assert!(
        wait_for(Duration::from_secs(15), || rx.accepted().len() == 1),
        "{}",
        d.log()
    );
    let blind = statuses(&rx)[0].clone();
    assert!(blind.contains("monitor blind"), "{blind}");
    let post = rx.accepted()[0].to_string();
    assert!(
        post.contains("401") && post.contains("access token is wrong"),
        "{post}"
    );
    let polls = wawp.queries().len();
    assert!(wait_for(Duration::from_secs(10), || wawp.queries().len()
        >= polls + 3));
    assert_eq!(
        rx.accepted().len(),
        1,
        "one blind alert, not one per failed poll"
    );

    wawp.chats(vec![]);
    assert!(
        wait_for(Duration::from_secs(10), || rx.accepted().len() == 2),
        "{}",
        d.log()
    );
    assert!(
        statuses(&rx)[1].contains("monitor recovered"),
        "{:?}",
        statuses(&rx)
    );
    let polls = wawp.queries().len();
    assert!(wait_for(Duration::from_secs(10), || wawp.queries().len()
        >= polls + 3));
    assert_eq!(rx.accepted().len(), 2, "one recovered notice");
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn get(url: &str) -> (u16, String) {
    rt().block_on(async {
        match reqwest::get(url).await {
            Ok(r) => (r.status().as_u16(), r.text().await.unwrap_or_default()),
            Err(_) => (0, String::new()),
        }
    })
}

#[test]
fn metrics_carry_section_7_figures_and_healthz_flips_while_the_source_fails() {
    let (wawp, rx) = (FakeWawp::start(), Receiver::start());
    wawp.chats(vec![
        breached_chat(),
        chat("201001234568@c.us", "Omar", 1, "hi", now() - 60),
    ]);
    let port = free_port();
    let env = Env::new(
        &wawp,
        &format!(
            "[sla]\npoll_interval = \"1s\"\n[http]\nlisten = \"127.0.0.1:{port}\"\n{}",
            slack_channel(&rx.url)
        ),
    );
    let d = Daemon::start(&env, &[]);
    let base = format!("http://127.0.0.1:{port}");
    assert!(
        wait_for(Duration::from_secs(10), || get(&format!("{base}/healthz"))
            .0
            == 200),
        "{}",
        d.log()
    );
    assert!(wait_for(Duration::from_secs(10), || rx.accepted().len() == 1));
    assert!(wait_for(Duration::from_secs(10), || get(&format!(
        "{base}/metrics"
    ))
    .1
    .contains("result=\"sent\"")));
    let (code, metrics) = get(&format!("{base}/metrics"));
    assert_eq!(code, 200);
    for want in [
        "# TYPE inbox_sla_polls_total counter",
        "# HELP inbox_sla_polls_total",
        "inbox_sla_polls_total{instance=\"support\",result=\"ok\"}",
        "inbox_sla_poll_duration_seconds",
        "inbox_sla_chats_waiting{instance=\"support\"} 2",
        "inbox_sla_chats_breached{instance=\"support\"} 1",
        "inbox_sla_notifications_total{channel=\"oncall\",result=\"sent\"} 1",
        "inbox_sla_outbox_pending 0",
        "inbox_sla_outbox_dead 0",
        "inbox_sla_last_successful_poll_timestamp_seconds{instance=\"support\"}",
    ] {
        assert!(metrics.contains(want), "missing {want}:\n{metrics}");
    }
    assert_no_secrets(&metrics);

    wawp.set(Reply::Status(500, "boom".into()));
    assert!(
        wait_for(Duration::from_secs(10), || get(&format!("{base}/healthz"))
            .0
            == 503),
        "unhealthy after 3 × poll_interval without a good poll"
    );
    assert!(
        get(&format!("{base}/metrics"))
            .1
            .contains("result=\"http_500\"")
    );
}

#[test]
fn systemd_hears_ready_watchdog_status_and_stopping() {
    let (wawp, rx) = (FakeWawp::start(), Receiver::start());
    wawp.chats(vec![breached_chat()]);
    let env = Env::new(
        &wawp,
        &format!("[sla]\npoll_interval = \"1s\"\n{}", slack_channel(&rx.url)),
    );
    let socket_path = env.dir.path().join("notify.sock");
    let socket = std::os::unix::net::UnixDatagram::bind(&socket_path).unwrap();
    socket
        .set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    let mut d = Daemon::start(
        &env,
        &[
            ("NOTIFY_SOCKET", socket_path.display().to_string()),
            ("WATCHDOG_USEC", "900000".into()),
        ],
    );
    let mut seen = String::new();
    let read_until = |want: &str, seen: &mut String| {
        let deadline = Instant::now() + Duration::from_secs(10);
        let mut buf = [0u8; 4096];
        while Instant::now() < deadline && !seen.contains(want) {
            if let Ok(n) = socket.recv(&mut buf) {
                seen.push_str(&String::from_utf8_lossy(&buf[..n]));
                seen.push('\n');
            }
        }
        seen.contains(want)
    };
    assert!(read_until("READY=1", &mut seen), "{seen}");
    assert!(read_until("WATCHDOG=1", &mut seen), "{seen}");
    assert!(
        read_until("STATUS=1 waiting, 1 breached, last poll", &mut seen),
        "{seen}"
    );
    d.signal("HUP");
    assert!(read_until("RELOADING=1", &mut seen), "{seen}");
    assert!(
        read_until("configuration reloaded", &mut seen),
        "READY=1 again after the reload: {seen}"
    );
    d.signal("TERM");
    assert!(read_until("STOPPING=1", &mut seen), "{seen}");
    assert_eq!(d.wait(Duration::from_secs(12)), Some(0));
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
        &wawp,
        &format!(
            "[sla]\npoll_interval = \"1s\"\n{}[[channel]]\nname = \"pager\"\ntype = \"webhook\"\nurl = \"{}\"\n",
            slack_channel(&slack_rx.url),
            hook_rx.url
        ),
    );
    let mut d = Daemon::start(&env, &[]);
    assert!(wait_for(Duration::from_secs(10), || slack_rx
        .accepted()
        .len()
        == 1
        && !hook_rx.posts().is_empty()));
    d.signal("KILL");
    assert_eq!(d.wait(Duration::from_secs(5)), Some(-1));

    let d2 = Daemon::start(&env, &[]);
    assert!(
        wait_for(Duration::from_secs(15), || hook_rx.accepted().len() == 1),
        "{}",
        d2.log()
    );
    let polls = wawp.queries().len();
    assert!(
        wait_for(Duration::from_secs(10), || wawp.queries().len()
            >= polls + 3),
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
    let alerts = env.run(&["alerts"]);
    assert!(
        alerts.stdout.contains("Pending notifications: 0"),
        "{alerts}"
    );
    assert!(alerts.stdout.contains("2 escalated"), "{alerts}");
}

#[test]
fn a_hung_poll_loop_stops_the_watchdog_pings() {
    let (wawp, rx) = (FakeWawp::start(), Receiver::start());
    wawp.set(Reply::Hang);
    let env = Env::new(
        &wawp,
        &format!("[sla]\npoll_interval = \"1s\"\n{}", slack_channel(&rx.url)),
    );
    let text = std::fs::read_to_string(&env.config)
        .unwrap()
        .replace("\"5s\"", "\"60s\"");
    std::fs::write(&env.config, text).unwrap();
    let socket_path = env.dir.path().join("notify.sock");
    let socket = std::os::unix::net::UnixDatagram::bind(&socket_path).unwrap();
    socket
        .set_read_timeout(Some(Duration::from_millis(100)))
        .unwrap();
    let d = Daemon::start(
        &env,
        &[
            ("NOTIFY_SOCKET", socket_path.display().to_string()),
            ("WATCHDOG_USEC", "600000".into()),
        ],
    );
    assert!(
        wait_for(Duration::from_secs(10), || d
            .log()
            .contains("not pinging the watchdog")),
        "{}",
        d.log()
    );
    // Drain what was sent before the loop was judged stuck, then listen for a while.
    let mut buf = [0u8; 4096];
    while socket.recv(&mut buf).is_ok() {}
    let deadline = Instant::now() + Duration::from_secs(2);
    let mut later = String::new();
    while Instant::now() < deadline {
        if let Ok(n) = socket.recv(&mut buf) {
            later.push_str(&String::from_utf8_lossy(&buf[..n]));
        }
    }
    assert!(
        !later.contains("WATCHDOG=1"),
        "pings went on while the poll loop hung: {later}"
    );
}
