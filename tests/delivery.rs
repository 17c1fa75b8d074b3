//! Delivery through real protocols on loopback: Slack and webhook receivers over HTTP, email
//! to a real SMTP server. The outbox runs on a hand-set clock, so backoff, Retry-After and
//! retry_for are checked without sleeping; the only real waits are Slack's pacing and the
//! timeouts a hung receiver must hit.

mod common;

use common::*;
use inbox_sla::alert::{AlertChat, AlertDoc, AlertMessage, Outgoing, Shape, Status, TierRef};
use inbox_sla::clock::Clock;
use inbox_sla::config::Config;
use inbox_sla::deliver;
use inbox_sla::notify;
use inbox_sla::outbox::{Outbox, Queued, Stage, State, Tally};
use inbox_sla::store::{Store, sqlite::Sqlite};
use std::sync::Arc;
use std::time::{Duration, Instant};

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
        tiers_fired: vec![7200],
        reason: None,
        acknowledged_by: None,
        acknowledged_at: None,
    }
}

fn doc(status: Status, chats: Vec<AlertChat>) -> AlertDoc {
    AlertDoc {
        version: 1,
        status,
        instance: "support".into(),
        tier: (status == Status::Firing).then_some(TierRef {
            index: 0,
            after_seconds: 7200,
        }),
        sent_at: T0,
        chats,
        message: None,
    }
}

fn firing(chats: Vec<AlertChat>) -> AlertDoc {
    doc(Status::Firing, chats)
}

/// A store, the channels of `setup`, an outbox, and a clock the test moves.
struct Bench {
    dir: tempfile::TempDir,
    outbox: Arc<Outbox>,
    channels: notify::Channels,
    clock: Clock,
}

impl Bench {
    fn new(channels: &[Channel]) -> Bench {
        Bench::with_store(channels, |path| {
            Store::Sqlite(Sqlite::open_sync(path, Duration::from_secs(10)).unwrap())
        })
    }

    fn with_store(channels: &[Channel], open: impl FnOnce(&std::path::Path) -> Store) -> Bench {
        let dir = tempfile::tempdir().unwrap();
        let mut setup = Setup::new(&FakeWawp::start())
            .set("delivery", "retry_for", "\"1h\"")
            .set("delivery", "timeout", "\"2s\"");
        for c in channels {
            setup = setup.channel(c.clone());
        }
        let config = Config::from_toml(
            &setup.render(&dir.path().join("state.db")),
            &dir.path().join("config.toml"),
        )
        .unwrap();
        let store = open(&dir.path().join("state.db"));
        let clock = Clock::manual(T0 * 1000);
        let outbox = Arc::new(Outbox::new(
            store,
            clock.clone(),
            config.delivery.retry_for,
            config.delivery.timeout,
        ));
        Bench {
            dir,
            outbox,
            channels: notify::build(&config).unwrap(),
            clock,
        }
    }

    fn enqueue(&self, channel: &str, doc: AlertDoc) -> i64 {
        let out = Outgoing::new(channel, doc, Shape::Digest);
        rt().block_on(self.outbox.store().enqueue(&[out], self.clock.now()))
            .unwrap()[0]
    }

    fn advance(&self, secs: i64) {
        self.clock.advance(secs * 1000);
    }

    /// Advances the clock to when the next notification of `channel` falls due.
    fn advance_to_due(&self, channel: &str) -> i64 {
        let due_in = rt()
            .block_on(
                self.outbox
                    .store()
                    .next_due_in_ms(channel, self.clock.now_ms()),
            )
            .unwrap()
            .unwrap();
        let step = due_in.max(0);
        self.clock.advance(step);
        step
    }

    fn deliver(&self) -> Tally {
        rt().block_on(deliver::deliver_due(&self.outbox, &self.channels))
            .unwrap()
    }

    fn outbox(&self, stage: Stage) -> Vec<Queued> {
        rt().block_on(self.outbox.store().outbox(stage, 100))
            .unwrap()
    }

    fn next_attempt_ms(&self) -> i64 {
        match self.outbox(Stage::Pending)[0].state {
            State::Pending { next_attempt_ms } => next_attempt_ms,
            ref other => panic!("not pending: {other:?}"),
        }
    }
}

fn slack(url: &str) -> Channel {
    Channel::slack("oncall", url)
}

fn webhook(url: &str) -> Channel {
    Channel::webhook("pager", url)
}

fn email(port: u16) -> Channel {
    Channel::email("leads", port)
}

#[test]
fn a_500_is_retried_with_backoff_and_then_delivered_once() {
    let rx = Receiver::start();
    rx.script(&[Answer::Status(500), Answer::Status(503)]);
    let b = Bench::new(&[webhook(&rx.url)]);
    b.enqueue("pager", firing(vec![sample_chat(1, "Amina", "hi")]));

    let r = b.deliver();
    assert_eq!((r.sent, r.retrying), (0, 1));
    assert!(r.failures[0].1.contains("500"), "{:?}", r.failures);
    assert_eq!(b.outbox(Stage::Pending)[0].attempts, 1);
    assert_eq!(
        b.next_attempt_ms() - T0 * 1000,
        1000,
        "first retry after 1s"
    );

    assert_eq!(b.deliver().sent, 0, "not due yet: nothing is sent early");
    assert_eq!(rx.posts().len(), 1);

    b.advance(1);
    let r = b.deliver();
    assert_eq!(r.retrying, 1, "503 is retried too");
    let delay = b.next_attempt_ms() - (T0 + 1) * 1000;
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
    assert_eq!(b.outbox(Stage::Sent).len(), 1);
}

#[test]
fn a_429_waits_as_long_as_retry_after_says() {
    let rx = Receiver::start();
    rx.script(&[Answer::RetryAfter(120)]);
    let b = Bench::new(&[slack(&rx.url)]);
    b.enqueue("oncall", firing(vec![sample_chat(1, "Amina", "hi")]));
    assert_eq!(b.deliver().retrying, 1);
    b.advance(119);
    b.deliver();
    assert_eq!(rx.posts().len(), 1, "Retry-After: 120 is honoured");
    b.advance(1);
    assert_eq!(b.deliver().sent, 1);
    assert_eq!(rx.accepted().len(), 1);
}

#[test]
fn a_404_is_permanent_and_the_notification_is_dead_at_once() {
    let rx = Receiver::start();
    rx.script(&[Answer::Status(404)]);
    let b = Bench::new(&[slack(&rx.url)]);
    b.enqueue("oncall", firing(vec![sample_chat(1, "Amina", "hi")]));
    let r = b.deliver();
    assert_eq!((r.sent, r.retrying, r.dead), (0, 0, 1));
    let dead = b.outbox(Stage::Dead);
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
fn backoff_doubles_to_five_minutes_and_retries_stop_after_retry_for() {
    let rx = Receiver::start();
    rx.script(&vec![Answer::Status(500); 200]);
    let b = Bench::new(&[webhook(&rx.url)]);
    b.enqueue("pager", firing(vec![sample_chat(1, "Amina", "hi")]));
    // Deliver exactly when due, as the daemon does: attempts are as dense as backoff allows.
    let mut delays = Vec::new();
    b.deliver();
    while b.outbox(Stage::Dead).is_empty() {
        delays.push(b.advance_to_due("pager"));
        b.deliver();
        assert!(delays.len() < 100, "retries never stopped: {delays:?}");
    }
    for (k, d) in delays.iter().enumerate() {
        let cap = (1000i64 << k.min(16)).min(300_000);
        assert!(
            *d >= (cap / 2).max(1000) && *d <= cap,
            "retry {} waited {d}ms (cap {cap}ms): {delays:?}",
            k + 1
        );
    }
    assert!(
        delays.iter().sum::<i64>() >= 3_600_000 - 300_000,
        "retried for about retry_for = 1h"
    );
    let dead = &b.outbox(Stage::Dead)[0];
    assert!(
        dead.last_error.as_deref().unwrap().contains("giving up"),
        "{dead:?}"
    );
    assert!(matches!(dead.state, State::Dead { at } if at >= T0 + 3600));
    assert!(b.outbox(Stage::Pending).is_empty());
    assert_eq!(rx.posts().len(), delays.len() + 1);
}

#[test]
fn a_slow_receiver_never_holds_up_another_channel() {
    let (slow, fast) = (Receiver::start(), Receiver::start());
    slow.script(&[Answer::Delay(Duration::from_millis(1500))]);
    let b = Bench::new(&[slack(&slow.url), webhook(&fast.url)]);
    b.enqueue("oncall", firing(vec![sample_chat(1, "Amina", "hi")]));
    b.enqueue("pager", firing(vec![sample_chat(1, "Amina", "hi")]));
    let r = b.deliver();
    assert_eq!(r.sent, 2, "{r:?}");
    let fast_done = fast.answered_at(0).unwrap();
    let slow_done = slow.answered_at(0).unwrap();
    assert!(
        fast_done + Duration::from_millis(500) < slow_done,
        "the fast channel was answered while the slow one was still sending"
    );
}

#[test]
fn a_hung_receiver_times_out_and_is_retried() {
    let (slow, fast) = (Receiver::start(), Receiver::start());
    slow.script(&[Answer::Hang]);
    let b = Bench::new(&[slack(&slow.url), webhook(&fast.url)]);
    b.enqueue("oncall", firing(vec![sample_chat(1, "Amina", "hi")]));
    b.enqueue("pager", firing(vec![sample_chat(1, "Amina", "hi")]));
    let started = Instant::now();
    let r = b.deliver();
    assert_eq!((r.sent, r.retrying), (1, 1), "{r:?}");
    assert!(
        started.elapsed() < Duration::from_secs(15),
        "bounded by delivery.timeout"
    );
    let fast_done = fast.answered_at(0).unwrap();
    assert!(
        fast_done < started + Duration::from_secs(2),
        "the fast one did not wait for the hung one"
    );
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
    let b = Bench::new(&[webhook(&rx.url)]);
    b.enqueue("pager", firing(vec![sample_chat(7, "John Doe", "Hello!")]));
    assert_eq!(b.deliver().sent, 1);
    let post = rx.all().remove(0);
    assert_eq!(
        post.headers["authorization"],
        format!("Bearer {HEADER_SECRET}")
    );
    assert_eq!(post.headers["content-type"], "application/json");
    let body = post.body;
    assert_eq!(body["version"], 1);
    assert_eq!(body["status"], "firing");
    assert_eq!(body["instance"], "support");
    assert_eq!(body["tier"]["index"], 0);
    assert_eq!(body["tier"]["after_seconds"], 7200);
    assert_eq!(body["sent_at"], T0, "when the document was made");
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
fn a_retried_document_keeps_its_sent_at() {
    let rx = Receiver::start();
    rx.script(&[Answer::Status(502)]);
    let b = Bench::new(&[webhook(&rx.url)]);
    b.enqueue("pager", firing(vec![sample_chat(1, "Amina", "hi")]));
    b.deliver();
    b.advance(10);
    b.deliver();
    let posts = rx.posts();
    assert_eq!(posts.len(), 2);
    assert_eq!(posts[0]["sent_at"], T0);
    assert_eq!(
        posts[1]["sent_at"], T0,
        "the retry says when the alert was made"
    );
}

#[test]
fn three_hundred_chats_are_one_slack_message_within_slacks_limits_and_ping_nobody() {
    let rx = Receiver::start();
    let b = Bench::new(&[slack(&rx.url)]);
    let mut chats: Vec<_> = (0..300)
        .map(|i| sample_chat(i, &format!("Customer {i} & co"), &"x&<".repeat(100)))
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
            // Every entity whole: an '&' always starts one of the three escapes.
            for (at, _) in t.match_indices('&') {
                let rest = &t[at..];
                assert!(
                    rest.starts_with("&amp;")
                        || rest.starts_with("&lt;")
                        || rest.starts_with("&gt;"),
                    "a cut entity in {t:?}"
                );
            }
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

/// Parses a message with Python's strict email policy (RFC 5322 and MIME): `None` when
/// Python is not here.
fn strict_parse(data: &str) -> Option<Result<String, String>> {
    let script = r#"
import sys, email, email.policy
raw = sys.stdin.buffer.read()
msg = email.message_from_bytes(raw, policy=email.policy.strict)
problems = []
for name in ["MIME-Version", "Content-Type", "Content-Transfer-Encoding", "Date", "Message-ID", "From", "To", "Subject"]:
    if msg[name] is None:
        problems.append("missing " + name)
if msg["MIME-Version"] is not None and str(msg["MIME-Version"]).strip() != "1.0":
    problems.append("MIME-Version is " + str(msg["MIME-Version"]))
if msg.defects:
    problems.append("defects: " + repr(msg.defects))
for part in msg.walk():
    if part.defects:
        problems.append("part defects: " + repr(part.defects))
body = msg.get_body(preferencelist=("plain",))
if body is None:
    problems.append("no text/plain body")
else:
    body.get_content()
print("\n".join(problems) if problems else "ok")
"#;
    let mut child = std::process::Command::new("python3")
        .args(["-c", script])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .ok()?;
    use std::io::Write;
    child
        .stdin
        .take()
        .unwrap()
        .write_all(data.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).trim().to_string();
    Some(if out.status.success() && stdout == "ok" {
        Ok(stdout)
    } else {
        Err(format!(
            "{stdout}\n{}",
            String::from_utf8_lossy(&out.stderr)
        ))
    })
}

fn check_strictly(data: &str) {
    match strict_parse(data) {
        Some(Ok(_)) => {}
        Some(Err(e)) => panic!("a strict parser refuses the email: {e}\n{data}"),
        None => skip(
            "python3 is missing: emails not checked with a strict parser",
            true,
        ),
    }
}

/// A strict relay (Postfix with `reject_non_fqdn_helo_hostname`, as the test server is)
/// refuses a bare host name in EHLO, for good. Without `helo_name` the client says the
/// host's fully qualified name or, on a host without one (like this test machine's `vm`),
/// the address literal of its interface; with `helo_name`, that name.
#[test]
fn a_strict_relay_gets_a_qualified_ehlo_name() {
    let smtp = Smtp::start();
    let b = Bench::new(&[email(smtp.port)]);
    b.enqueue("leads", firing(vec![sample_chat(1, "Amina", "hi")]));
    let r = b.deliver();
    assert_eq!(r.sent, 1, "{r:?}");
    let helo = smtp.mails()[0].helo.clone();
    assert!(fqdn_or_literal(&helo), "EHLO {helo}");

    let smtp = Smtp::start();
    let b = Bench::new(&[email(smtp.port).key("helo_name", "\"sla.example.com\"")]);
    b.enqueue("leads", firing(vec![sample_chat(1, "Amina", "hi")]));
    assert_eq!(b.deliver().sent, 1);
    assert_eq!(smtp.mails()[0].helo, "sla.example.com");

    // A bare name is what the relay refuses: permanent, so dead at once, and said why.
    let smtp = Smtp::start();
    let b = Bench::new(&[email(smtp.port).key("helo_name", "\"vm\"")]);
    b.enqueue("leads", firing(vec![sample_chat(1, "Amina", "hi")]));
    let r = b.deliver();
    assert_eq!(r.dead, 1, "{r:?}");
    assert!(
        r.failures[0].1.contains("need fully-qualified hostname"),
        "{r:?}"
    );
}

#[test]
fn email_reaches_a_real_smtp_server_with_valid_headers_and_no_injected_ones() {
    let smtp = Smtp::start();
    let b = Bench::new(&[email(smtp.port)]);
    let mut chats = vec![sample_chat(
        1,
        "Evil\r\nBcc: victim@example.com",
        "hi\r\nX-Injected: yes",
    )];
    chats.push(sample_chat(2, "Nadia 🇪🇬 ناديه", "where is my parcel? ✓"));
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
    assert_eq!(header(data, "MIME-Version"), Some("1.0"), "RFC 2045");
    assert!(
        header(data, "Content-Type")
            .unwrap()
            .starts_with("text/plain")
    );
    assert!(header(data, "Content-Transfer-Encoding").is_some());
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
    check_strictly(data);
}

#[test]
fn every_kind_of_email_passes_a_strict_parser() {
    let smtp = Smtp::start();
    let b = Bench::new(&[email(smtp.port)]);
    let mut resolved = doc(Status::Resolved, vec![sample_chat(3, "Omar", "thanks")]);
    resolved.chats[0].waiting_seconds = 9000;
    let mut blind = doc(Status::Blind, vec![]);
    blind.message = Some("Polling has failed for 10m; last error: 401".into());
    for d in [
        firing(vec![sample_chat(1, "A", &"é".repeat(300))]),
        resolved,
        blind,
        inbox_sla::alert::AlertDoc::test("leads", T0),
    ] {
        b.enqueue("leads", d);
    }
    assert_eq!(b.deliver().sent, 4);
    for mail in smtp.mails() {
        check_strictly(&mail.data);
    }
}

#[test]
fn email_over_starttls_with_login_and_a_certificate_made_for_the_test() {
    let dir = tempfile::tempdir().unwrap();
    let smtp = Smtp::start_tls(dir.path());
    let ca = dir.path().join("ca.pem");
    std::fs::write(&ca, smtp.ca_pem.as_ref().unwrap()).unwrap();
    let pw = dir.path().join("smtp-password");
    std::fs::write(&pw, format!("{SMTP_PASSWORD}\n")).unwrap();
    let tls = |password_file: &std::path::Path| {
        email(smtp.port)
            .key("tls", "\"starttls\"")
            .key("username", "\"sla-bot\"")
            .key(
                "password_file",
                &toml_str(&password_file.display().to_string()),
            )
            .key("ca_file", &toml_str(&ca.display().to_string()))
    };
    let b = Bench::new(&[tls(&pw)]);
    b.enqueue("leads", firing(vec![sample_chat(1, "Amina", "hi")]));
    let r = b.deliver();
    assert_eq!(r.sent, 1, "{r:?}");
    let mails = smtp.mails();
    assert_eq!(mails.len(), 1);
    assert_eq!(mails[0].user.as_deref(), Some("sla-bot"), "logged in");

    // A wrong password is refused for good, and the password never shows.
    let bad = dir.path().join("bad-password");
    std::fs::write(&bad, "wrong-password-123").unwrap();
    let b = Bench::new(&[tls(&bad)]);
    b.enqueue("leads", firing(vec![sample_chat(1, "Amina", "hi")]));
    let r = b.deliver();
    assert_eq!(r.dead, 1, "{r:?}");
    assert!(!r.failures[0].1.contains("wrong-password-123"), "{r:?}");
}

#[test]
fn a_refusing_or_hanging_smtp_server_is_retried_then_dead_after_retry_for() {
    let smtp = Smtp::start();
    smtp.refuse(1);
    let b = Bench::new(&[email(smtp.port)]);
    b.enqueue("leads", firing(vec![sample_chat(1, "Amina", "hi")]));
    let r = b.deliver();
    assert_eq!(r.retrying, 1, "451 is temporary: {r:?}");
    b.advance(2);
    assert_eq!(b.deliver().sent, 1);
    assert_eq!(smtp.mails().len(), 1);

    let b = Bench::new(&[email(silent_port())]);
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
fn a_non_ascii_recipient_without_smtputf8_is_dead_at_once() {
    // mailin-embedded does not offer SMTPUTF8: the client refuses before sending.
    let smtp = Smtp::start();
    let b = Bench::new(&[email(smtp.port).key("to", "[\"nadia@exämple.com\"]")]);
    b.enqueue("leads", firing(vec![sample_chat(1, "Amina", "hi")]));
    let r = b.deliver();
    assert_eq!((r.sent, r.retrying, r.dead), (0, 0, 1), "{r:?}");
    assert!(r.failures[0].1.contains("SMTPUTF8"), "{r:?}");
    assert!(smtp.mails().is_empty());
}

#[test]
fn notifications_of_a_removed_channel_are_left_alone_then_dead_after_retry_for() {
    let rx = Receiver::start();
    let b = Bench::new(&[slack(&rx.url)]);
    b.enqueue("gone", firing(vec![sample_chat(1, "Amina", "hi")]));
    let known = vec!["oncall".to_string()];
    let killed = rt().block_on(b.outbox.kill_orphans(&known)).unwrap();
    assert!(killed.is_empty(), "another config may still own it");
    assert_eq!(b.outbox(Stage::Pending).len(), 1);
    b.advance(3600);
    let killed = rt().block_on(b.outbox.kill_orphans(&known)).unwrap();
    assert_eq!(killed.len(), 1);
    assert!(
        b.outbox(Stage::Dead)[0]
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
    let b = Bench::new(&[slack(&slack_rx.url), webhook(&hook_rx.url)]);
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
    let b = Bench::new(&[email(port)]);
    b.enqueue("leads", firing(vec![sample_chat(1, "Amina", "hi")]));
    let r = b.deliver();
    assert_eq!((r.sent, r.retrying, r.dead), (0, 1, 0), "{r:?}");
    assert_eq!(b.outbox(Stage::Pending).len(), 1, "still queued");
}

#[test]
fn slack_gets_at_most_one_message_a_second_per_webhook() {
    let rx = Receiver::start();
    let b = Bench::new(&[slack(&rx.url)]);
    for i in 0..3 {
        b.enqueue("oncall", firing(vec![sample_chat(i, "Amina", "hi")]));
    }
    assert_eq!(b.deliver().sent, 3);
    let times = rx.arrival_times();
    assert_eq!(times.len(), 3);
    for pair in times.windows(2) {
        let gap = pair[1] - pair[0];
        assert!(
            gap >= Duration::from_millis(990),
            "only {gap:?} between two Slack messages"
        );
    }
}

#[test]
fn a_resolved_notice_waits_for_its_firing_in_backoff() {
    let rx = Receiver::start();
    rx.script(&[Answer::Status(503)]);
    let b = Bench::new(&[webhook(&rx.url)]);
    b.enqueue("pager", firing(vec![sample_chat(1, "Amina", "hi")]));
    b.enqueue(
        "pager",
        doc(Status::Resolved, vec![sample_chat(1, "Amina", "hi")]),
    );
    let r = b.deliver();
    assert_eq!(r.retrying, 1);
    assert_eq!(
        rx.posts().len(),
        1,
        "the resolved notice did not overtake its firing"
    );
    b.advance(1);
    assert_eq!(b.deliver().sent, 2);
    let statuses: Vec<String> = rx
        .accepted()
        .iter()
        .map(|p| p["status"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(statuses, vec!["firing", "resolved"]);
}

#[test]
fn a_huge_answer_is_read_only_as_far_as_needed() {
    // A receiver that answers 200 with an endless body: reading stops at 64 KiB.
    let port = raw_server(|mut s| {
        use std::io::Write;
        read_request_head(&mut s);
        let _ =
            s.write_all(b"HTTP/1.1 500 Internal Server Error\r\nContent-Type: text/plain\r\n\r\n");
        let chunk = vec![b'x'; 64 * 1024];
        for _ in 0..1024 {
            if s.write_all(&chunk).is_err() {
                return;
            }
        }
    });
    let b = Bench::new(&[webhook(&format!(
        "http://127.0.0.1:{port}/hook/{HOOK_SECRET}"
    ))]);
    b.enqueue("pager", firing(vec![sample_chat(1, "Amina", "hi")]));
    let started = Instant::now();
    let r = b.deliver();
    assert_eq!(r.retrying, 1, "{r:?}");
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "did not read 64 MB: {:?}",
        started.elapsed()
    );
    assert!(
        r.failures[0].1.len() < 1000,
        "the error quotes a little of the answer, not all of it"
    );
}

#[test]
fn a_store_locked_after_the_receiver_accepted_never_causes_a_second_send() {
    let rx = Receiver::start();
    // The answer comes late enough for the test to lock the store first.
    rx.script(&[Answer::Delay(Duration::from_millis(400))]);
    let b = Bench::with_store(&[webhook(&rx.url)], |path| {
        Store::Sqlite(Sqlite::open_sync(path, Duration::from_millis(100)).unwrap())
    });
    b.enqueue("pager", firing(vec![sample_chat(1, "Amina", "hi")]));
    let db = b.dir.path().join("state.db");
    let (locked_tx, locked_rx) = std::sync::mpsc::channel();
    let (release_tx, release_rx) = std::sync::mpsc::channel::<()>();
    let rx2 = rx.clone();
    let locker = std::thread::spawn(move || {
        assert!(wait_for(PATIENCE, || !rx2.posts().is_empty()));
        let conn = rusqlite::Connection::open(&db).unwrap();
        conn.execute_batch("BEGIN EXCLUSIVE").unwrap();
        locked_tx.send(()).unwrap();
        release_rx.recv().unwrap();
        conn.execute_batch("COMMIT").unwrap();
    });
    let first = rt().block_on(deliver::deliver_due(&b.outbox, &b.channels));
    locked_rx.recv().unwrap();
    assert!(first.is_err(), "the store could not record the outcome");
    assert_eq!(b.outbox.owed(), 1, "the outcome is kept in memory");
    // Many passes while the store stays locked: never a second send.
    for _ in 0..10 {
        b.advance(5);
        assert!(
            rt().block_on(deliver::deliver_due(&b.outbox, &b.channels))
                .is_err()
        );
    }
    assert_eq!(rx.posts().len(), 1, "the send was not repeated");
    release_tx.send(()).unwrap();
    locker.join().unwrap();
    let r = b.deliver();
    assert_eq!(r.sent, 0);
    assert_eq!(b.outbox.owed(), 0);
    assert_eq!(
        b.outbox(Stage::Sent).len(),
        1,
        "recorded once the store answered"
    );
    assert_eq!(rx.posts().len(), 1);
}
