//! Delivery through real protocols on loopback: Slack and webhook receivers over HTTP, email
//! to a real SMTP server. The outbox worker runs with an injected clock, so backoff,
//! Retry-After and retry_for are checked without sleeping.

mod common;

use common::*;
use inbox_sla::alert::{AlertChat, AlertDoc, AlertMessage, Outgoing, Status, TierRef};
use inbox_sla::config::Config;
use inbox_sla::deliver::{self, Clock};
use inbox_sla::notify;
use inbox_sla::store::{Store, StoreHandle};
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};

const T0: i64 = 1_790_000_000;

fn sample_chat(i: usize, name: &str, body: &str) -> AlertChat {
    AlertChat {
        id: format!("2010000{i:05}@c.us"),
        name: Some(name.to_string()),
        kind: "individual".into(),
        unread_count: Some(2),
        waiting_since: T0 - 7600,
        waiting_seconds: 7600,
        sla_seconds: 7600,
        tier: 0,
        repeat: false,
        last_message: Some(AlertMessage {
            id: Some(format!("MSG{i}")),
            body: Some(body.to_string()),
            timestamp: Some(T0 - 7600),
            has_media: false,
        }),
    }
}

fn firing(chats: Vec<AlertChat>) -> AlertDoc {
    AlertDoc {
        version: 1,
        status: Status::Firing,
        instance: "support".into(),
        tier: Some(TierRef {
            index: 0,
            after_seconds: 7200,
        }),
        sent_at: T0,
        chats,
        message: None,
    }
}

/// A store, the channels of `channels_toml`, and a clock the test moves.
struct Bench {
    _dir: tempfile::TempDir,
    store: StoreHandle,
    config: Config,
    channels: notify::Channels,
    now_ms: Arc<AtomicI64>,
    clock: Clock,
}

impl Bench {
    fn new(channels_toml: &str) -> Bench {
        let dir = tempfile::tempdir().unwrap();
        let text = format!(
            "[[instance]]\nname = \"support\"\ninstance_id = \"1\"\naccess_token = \"{TOKEN}\"\n\
             [delivery]\nretry_for = \"1h\"\ntimeout = \"1s\"\n{channels_toml}"
        );
        let config = Config::from_toml(&text, &dir.path().join("config.toml")).unwrap();
        let store = StoreHandle::new(Store::open(&dir.path().join("state.db")).unwrap());
        let channels = notify::build(&config).unwrap();
        let now_ms = Arc::new(AtomicI64::new(T0 * 1000));
        let c = now_ms.clone();
        let clock: Clock = Arc::new(move || c.load(Ordering::SeqCst));
        Bench {
            _dir: dir,
            store,
            config,
            channels,
            now_ms,
            clock,
        }
    }

    fn enqueue(&self, channel: &str, doc: AlertDoc) {
        let channel = channel.to_string();
        let now = self.now_ms.load(Ordering::SeqCst) / 1000;
        rt().block_on(
            self.store
                .call(move |s| s.enqueue(&[Outgoing { channel, doc }], now)),
        )
        .unwrap();
    }

    fn advance(&self, secs: i64) {
        self.now_ms.fetch_add(secs * 1000, Ordering::SeqCst);
    }

    fn deliver(&self) -> deliver::Report {
        rt().block_on(deliver::deliver_due(
            &self.store,
            &self.channels,
            self.config.delivery.retry_for,
            &self.clock,
        ))
        .unwrap()
    }

    fn outbox(&self, state: &'static str) -> Vec<inbox_sla::store::Queued> {
        rt().block_on(self.store.call(move |s| s.outbox(state, 100)))
            .unwrap()
    }
}

fn slack(url: &str) -> String {
    format!("[[channel]]\nname = \"oncall\"\ntype = \"slack\"\nwebhook_url = \"{url}\"\n")
}

fn webhook(url: &str) -> String {
    format!(
        "[[channel]]\nname = \"pager\"\ntype = \"webhook\"\nurl = \"{url}\"\nheaders = {{ Authorization = \"Bearer {HEADER_SECRET}\" }}\n"
    )
}

fn email(port: u16, extra: &str) -> String {
    format!(
        "[[channel]]\nname = \"leads\"\ntype = \"email\"\nsmtp_host = \"127.0.0.1\"\nsmtp_port = {port}\n\
         from = \"WhatsApp SLA <sla@example.com>\"\nto = [\"leads@example.com\", \"oncall@example.com\"]\n{extra}"
    )
}

#[test]
fn a_500_is_retried_with_backoff_and_then_delivered_once() {
    let rx = Receiver::start();
    rx.script(&[Answer::Status(500), Answer::Status(503)]);
    let b = Bench::new(&webhook(&rx.url));
    b.enqueue("pager", firing(vec![sample_chat(1, "Amina", "hi")]));

    let r = b.deliver();
    assert_eq!((r.sent, r.retrying), (0, 1));
    assert!(r.failures[0].1.contains("500"), "{:?}", r.failures);
    let pending = b.outbox("pending");
    assert_eq!(pending[0].attempts, 1);
    let delay = pending[0].next_attempt_ms - T0 * 1000;
    assert!(
        (500..=1000).contains(&delay),
        "first retry after about 1s, got {delay}ms"
    );

    assert_eq!(b.deliver().sent, 0, "not due yet: nothing is sent early");
    assert_eq!(rx.posts().len(), 1);

    b.advance(1);
    let r = b.deliver();
    assert_eq!(r.retrying, 1, "503 is retried too");
    let delay = b.outbox("pending")[0].next_attempt_ms - (T0 + 1) * 1000;
    assert!(
        (1000..=2000).contains(&delay),
        "second retry after about 2s, got {delay}ms"
    );

    b.advance(2);
    assert_eq!(b.deliver().sent, 1);
    assert_eq!(rx.accepted().len(), 1);
    b.advance(600);
    assert_eq!(b.deliver().sent, 0, "sent once, never again");
    assert_eq!(rx.posts().len(), 3);
    assert_eq!(b.outbox("sent").len(), 1);
}

#[test]
fn a_429_waits_as_long_as_retry_after_says() {
    let rx = Receiver::start();
    rx.script(&[Answer::RetryAfter(120)]);
    let b = Bench::new(&slack(&rx.url));
    b.enqueue("oncall", firing(vec![sample_chat(1, "Amina", "hi")]));
    assert_eq!(b.deliver().retrying, 1);
    b.advance(60);
    b.deliver();
    assert_eq!(rx.posts().len(), 1, "Retry-After: 120 is honoured");
    b.advance(61);
    assert_eq!(b.deliver().sent, 1);
    assert_eq!(rx.accepted().len(), 1);
}

#[test]
fn a_404_is_permanent_and_the_notification_is_dead_at_once() {
    let rx = Receiver::start();
    rx.script(&[Answer::Status(404)]);
    let b = Bench::new(&slack(&rx.url));
    b.enqueue("oncall", firing(vec![sample_chat(1, "Amina", "hi")]));
    let r = b.deliver();
    assert_eq!((r.sent, r.retrying, r.dead), (0, 0, 1));
    let dead = b.outbox("dead");
    assert_eq!(dead.len(), 1);
    let error = dead[0].last_error.clone().unwrap();
    assert!(
        error.contains("404") && error.contains("permanent"),
        "{error}"
    );
    assert!(!error.contains(HOOK_SECRET), "{error}");
    b.advance(3600);
    b.deliver();
    assert_eq!(rx.posts().len(), 1, "a dead notification is never retried");
}

#[test]
fn retries_stop_after_retry_for_and_the_notification_is_dead() {
    let rx = Receiver::start();
    rx.script(&vec![Answer::Status(500); 50]);
    let b = Bench::new(&webhook(&rx.url));
    b.enqueue("pager", firing(vec![sample_chat(1, "Amina", "hi")]));
    for _ in 0..30 {
        b.deliver();
        b.advance(300);
        if !b.outbox("dead").is_empty() {
            break;
        }
    }
    let dead = b.outbox("dead");
    assert_eq!(dead.len(), 1, "dead after delivery.retry_for = 1h");
    assert!(
        dead[0].last_error.as_deref().unwrap().contains("giving up"),
        "{dead:?}"
    );
    assert!(dead[0].done_at.unwrap() >= T0 + 3600);
    assert!(b.outbox("pending").is_empty());
}

#[test]
fn a_hung_receiver_times_out_and_never_holds_up_another_channel() {
    let (slow, fast) = (Receiver::start(), Receiver::start());
    slow.script(&[Answer::Hang]);
    let b = Bench::new(&format!("{}{}", slack(&slow.url), webhook(&fast.url)));
    b.enqueue("oncall", firing(vec![sample_chat(1, "Amina", "hi")]));
    b.enqueue("pager", firing(vec![sample_chat(1, "Amina", "hi")]));
    let r = b.deliver();
    assert_eq!((r.sent, r.retrying), (1, 1), "{r:?}");
    assert_eq!(fast.accepted().len(), 1);
    assert!(
        r.failures[0].1.contains("timed out") || r.failures[0].1.contains("did not answer"),
        "{r:?}"
    );
    b.advance(2);
    assert_eq!(b.deliver().sent, 1, "the hung one is retried");
    assert_eq!(slow.accepted().len(), 1);
}

#[test]
fn the_webhook_posts_the_section_5_document_with_its_headers() {
    let rx = Receiver::start();
    let b = Bench::new(&webhook(&rx.url));
    b.enqueue("pager", firing(vec![sample_chat(7, "John Doe", "Hello!")]));
    assert_eq!(b.deliver().sent, 1);
    let (headers, body) = rx.posts().remove(0);
    assert_eq!(headers["authorization"], format!("Bearer {HEADER_SECRET}"));
    assert_eq!(headers["content-type"], "application/json");
    assert_eq!(body["version"], 1);
    assert_eq!(body["status"], "firing");
    assert_eq!(body["instance"], "support");
    assert_eq!(body["tier"]["index"], 0);
    assert_eq!(body["tier"]["after_seconds"], 7200);
    let chat = &body["chats"][0];
    assert_eq!(chat["id"], "201000000007@c.us");
    assert_eq!(chat["name"], "John Doe");
    assert_eq!(chat["kind"], "individual");
    assert_eq!(chat["unread_count"], 2);
    assert_eq!(chat["waiting_since"], T0 - 7600);
    assert_eq!(chat["waiting_seconds"], 7600);
    assert_eq!(chat["last_message"]["body"], "Hello!");
    assert_eq!(chat["last_message"]["timestamp"], T0 - 7600);
}

#[test]
fn three_hundred_chats_are_one_slack_message_within_slacks_limits_and_ping_nobody() {
    let rx = Receiver::start();
    let b = Bench::new(&slack(&rx.url));
    let mut chats: Vec<_> = (0..300)
        .map(|i| sample_chat(i, &format!("Customer {i}"), &"x".repeat(300)))
        .collect();
    chats[0].name = Some("<!channel> & friends".into());
    chats[1].last_message.as_mut().unwrap().body = Some("<!here> <@U123> call me".into());
    b.enqueue("oncall", firing(chats));
    assert_eq!(b.deliver().sent, 1);
    let posts = rx.accepted();
    assert_eq!(posts.len(), 1, "one message for 300 chats");
    let payload = &posts[0];
    let text = payload.to_string();
    assert!(
        !text.contains("<!channel>") && !text.contains("<!here>") && !text.contains("<@U123>"),
        "{text}"
    );
    assert!(text.contains("&lt;!channel&gt; &amp; friends"), "{text}");
    assert!(payload.get("link_names").is_none());
    assert!(
        payload["text"]
            .as_str()
            .unwrap()
            .contains("300 chats waiting over 2h (support)")
    );
    let blocks = payload["blocks"].as_array().unwrap();
    assert!(blocks.len() <= 50, "{} blocks", blocks.len());
    assert!(text.contains("+280 more"), "{text}");
    for block in blocks {
        if let Some(t) = block["text"]["text"].as_str() {
            assert!(t.chars().count() <= 3000);
        }
    }
}

fn header_block(data: &str) -> &str {
    data.split("\r\n\r\n").next().unwrap()
}

fn header<'a>(data: &'a str, name: &str) -> Option<&'a str> {
    header_block(data)
        .lines()
        .find(|l| {
            l.to_ascii_lowercase()
                .starts_with(&format!("{}:", name.to_ascii_lowercase()))
        })
        .map(|l| l[name.len() + 1..].trim())
}

#[test]
fn email_reaches_a_real_smtp_server_with_valid_headers_and_no_injected_ones() {
    let smtp = Smtp::start();
    let b = Bench::new(&email(smtp.port, "tls = \"none\""));
    let mut chats = vec![sample_chat(
        1,
        "Evil\r\nBcc: victim@example.com",
        "hi\r\nX-Injected: yes",
    )];
    chats.push(sample_chat(2, "Nadia", "where is my parcel?"));
    b.enqueue("leads", firing(chats));
    let r = b.deliver();
    assert_eq!(r.sent, 1, "{r:?}");
    let mails = smtp.mails();
    assert_eq!(mails.len(), 1);
    let mail = &mails[0];
    assert_eq!(mail.to, vec!["leads@example.com", "oncall@example.com"]);
    let data = &mail.data;
    assert_eq!(
        header(data, "Subject"),
        Some("[inbox-sla] 2 chats waiting over 2h (support)")
    );
    assert!(header(data, "From").unwrap().contains("sla@example.com"));
    assert!(header(data, "To").unwrap().contains("leads@example.com"));
    assert!(header(data, "Message-ID").unwrap().starts_with('<'));
    let date = header(data, "Date").unwrap();
    assert!(
        chrono::DateTime::parse_from_rfc2822(date).is_ok(),
        "Date: {date}"
    );
    let headers = header_block(data).to_ascii_lowercase();
    assert!(
        !headers.contains("bcc:") && !headers.contains("x-injected"),
        "{data}"
    );
    assert!(
        data.contains("Nadia") && data.contains("where is my parcel?"),
        "{data}"
    );
    assert!(data.contains("https://wa.me/201000000002"), "{data}");
    assert!(data.contains("tier 1"), "{data}");
}

#[test]
fn email_over_starttls_with_login_and_a_certificate_made_for_the_test() {
    let dir = tempfile::tempdir().unwrap();
    let smtp = Smtp::start_tls(dir.path());
    let ca = dir.path().join("ca.pem");
    std::fs::write(&ca, smtp.ca_pem.as_ref().unwrap()).unwrap();
    let pw = dir.path().join("smtp-password");
    std::fs::write(&pw, format!("{SMTP_PASSWORD}\n")).unwrap();
    let extra = format!(
        "tls = \"starttls\"\nusername = \"sla-bot\"\npassword_file = \"{}\"\nca_file = \"{}\"",
        pw.display(),
        ca.display()
    );
    let b = Bench::new(&email(smtp.port, &extra));
    b.enqueue("leads", firing(vec![sample_chat(1, "Amina", "hi")]));
    let r = b.deliver();
    assert_eq!(r.sent, 1, "{r:?}");
    let mails = smtp.mails();
    assert_eq!(mails.len(), 1);
    assert_eq!(mails[0].user.as_deref(), Some("sla-bot"), "logged in");

    // A wrong password is refused for good, and the password never shows.
    let bad = dir.path().join("bad-password");
    std::fs::write(&bad, "wrong-password-123").unwrap();
    let b = Bench::new(&email(
        smtp.port,
        &extra.replace(&pw.display().to_string(), &bad.display().to_string()),
    ));
    b.enqueue("leads", firing(vec![sample_chat(1, "Amina", "hi")]));
    let r = b.deliver();
    assert_eq!(r.dead, 1, "{r:?}");
    assert!(!r.failures[0].1.contains("wrong-password-123"), "{r:?}");
}

#[test]
fn a_refusing_or_hanging_smtp_server_is_retried_then_dead_after_retry_for() {
    let smtp = Smtp::start();
    smtp.refuse(1);
    let b = Bench::new(&email(smtp.port, "tls = \"none\""));
    b.enqueue("leads", firing(vec![sample_chat(1, "Amina", "hi")]));
    let r = b.deliver();
    assert_eq!(r.retrying, 1, "451 is temporary: {r:?}");
    b.advance(2);
    assert_eq!(b.deliver().sent, 1);
    assert_eq!(smtp.mails().len(), 1);

    let b = Bench::new(&email(silent_port(), "tls = \"none\""));
    b.enqueue("leads", firing(vec![sample_chat(1, "Amina", "hi")]));
    let r = b.deliver();
    assert_eq!(
        r.retrying, 1,
        "a server that never answers times out: {r:?}"
    );
    b.advance(3601);
    let r = b.deliver();
    assert_eq!(r.dead, 1, "{r:?}");
}

#[test]
fn notifications_for_a_channel_that_was_removed_are_dead_not_stuck() {
    let rx = Receiver::start();
    let b = Bench::new(&slack(&rx.url));
    b.enqueue("gone", firing(vec![sample_chat(1, "Amina", "hi")]));
    let r = b.deliver();
    assert_eq!(r.dead, 1);
    assert!(
        b.outbox("dead")[0]
            .last_error
            .as_deref()
            .unwrap()
            .contains("no longer configured")
    );
}

#[test]
fn a_429_storm_delays_only_its_own_channel_and_ends_in_exactly_one_message() {
    let (slack_rx, hook_rx) = (Receiver::start(), Receiver::start());
    slack_rx.script(&vec![Answer::RetryAfter(30); 5]);
    let b = Bench::new(&format!(
        "{}{}",
        slack(&slack_rx.url),
        webhook(&hook_rx.url)
    ));
    b.enqueue("oncall", firing(vec![sample_chat(1, "Amina", "hi")]));
    let mut elapsed = 0;
    while slack_rx.accepted().is_empty() && elapsed < 3600 {
        b.enqueue("pager", firing(vec![sample_chat(2, "Omar", "hi")]));
        b.deliver();
        b.advance(10);
        elapsed += 10;
    }
    assert_eq!(
        slack_rx.accepted().len(),
        1,
        "one message once the storm passed"
    );
    assert_eq!(slack_rx.posts().len(), 6);
    assert!(
        elapsed >= 5 * 30,
        "every retry waited at least Retry-After: {elapsed}s"
    );
    assert_eq!(
        hook_rx.accepted().len() as i64,
        elapsed / 10,
        "the other channel kept flowing"
    );
}

#[test]
fn a_500_storm_ends_dead_after_retry_for_without_blocking_another_channel() {
    let (slack_rx, hook_rx) = (Receiver::start(), Receiver::start());
    slack_rx.script(&vec![Answer::Status(500); 100]);
    let b = Bench::new(&format!(
        "{}{}",
        slack(&slack_rx.url),
        webhook(&hook_rx.url)
    ));
    b.enqueue("oncall", firing(vec![sample_chat(1, "Amina", "hi")]));
    let mut elapsed = 0;
    while b.outbox("dead").is_empty() && elapsed < 2 * 3600 {
        b.enqueue("pager", firing(vec![sample_chat(2, "Omar", "hi")]));
        b.deliver();
        b.advance(300);
        elapsed += 300;
    }
    assert_eq!(b.outbox("dead").len(), 1, "dead after retry_for = 1h");
    assert!(slack_rx.accepted().is_empty());
    assert!(
        slack_rx.posts().len() <= 20,
        "backoff spaced the attempts: {}",
        slack_rx.posts().len()
    );
    assert_eq!(hook_rx.accepted().len() as i64, elapsed / 300);
}

#[test]
fn an_smtp_server_that_drops_the_connection_mid_data_is_retried() {
    let port = raw_server(|mut s| {
        use std::io::{BufRead, BufReader, Write};
        let _ = s.write_all(b"220 flaky.test ESMTP\r\n");
        let mut reader = BufReader::new(s.try_clone().unwrap());
        let mut line = String::new();
        while reader.read_line(&mut line).is_ok_and(|n| n > 0) {
            let reply: &[u8] = match line.get(..4).unwrap_or("").to_ascii_uppercase().as_str() {
                "EHLO" | "HELO" => b"250 flaky.test\r\n",
                "DATA" => b"354 go ahead\r\n",
                "QUIT" => b"221 bye\r\n",
                _ if line.starts_with("MAIL") || line.starts_with("RCPT") => b"250 ok\r\n",
                _ => return, // the first line of the message: hang up mid-DATA
            };
            let _ = s.write_all(reply);
            line.clear();
        }
    });
    let b = Bench::new(&email(port, "tls = \"none\""));
    b.enqueue("leads", firing(vec![sample_chat(1, "Amina", "hi")]));
    let r = b.deliver();
    assert_eq!((r.sent, r.retrying, r.dead), (0, 1, 0), "{r:?}");
    assert_eq!(b.outbox("pending").len(), 1, "still queued");
}

#[test]
fn slack_gets_at_most_one_message_a_second_per_webhook() {
    let rx = Receiver::start();
    let b = Bench::new(&slack(&rx.url));
    for i in 0..3 {
        b.enqueue("oncall", firing(vec![sample_chat(i, "Amina", "hi")]));
    }
    assert_eq!(b.deliver().sent, 3);
    let times = rx.arrival_times();
    assert_eq!(times.len(), 3);
    for pair in times.windows(2) {
        let gap = pair[1] - pair[0];
        assert!(
            gap >= std::time::Duration::from_millis(990),
            "only {gap:?} between two Slack messages"
        );
    }
}
