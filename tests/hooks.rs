//! Acknowledging where the alert lands (docs/spec.md section 11): a Slack *Acknowledge*
//! button and a PagerDuty acknowledgement, through the real daemon.
//!
//! `daemon::run` runs in this process under `tokio::time::pause()` (as in
//! tests/inprocess.rs), with an in-process Wawp, its HTTP endpoint on a loopback port, and
//! Slack and PagerDuty played by one loopback receiver in the same runtime (the incoming
//! webhook, the Events API and Slack's `response_url`). Requests are built and signed as
//! Slack and PagerDuty build them, with the daemon's own clock for Slack's timestamps; the
//! daemon's log is captured, so a test can check that no secret ever reaches it.

#[path = "common/inboxes.rs"]
mod inboxes;

use axum::body::Bytes;
use axum::http::{StatusCode, Uri};
use axum::response::IntoResponse;
use inbox_sla::clock::Clock;
use inbox_sla::config::{Config, Location};
use inbox_sla::daemon::{self, Control, Setup};
use inbox_sla::sla::Episode;
use inbox_sla::store::Store;
use inboxes::{Answer, Inboxes};
use serde_json::{Value, json};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

/// 2026-12-05 09:00:00 UTC.
const START_MS: i64 = 1_796_461_200_000;
const START: i64 = START_MS / 1000;

const SLACK_SECRET: &str = "slk-sign-5e1f0c9a7d3b";
const PD_WEBHOOK_SECRET: &str = "pdwh-sec-91b2c3d4e5f6";
const ROUTING_KEY: &str = "pdkey-R0uting-hooks7";
const SECRETS: [&str; 3] = [SLACK_SECRET, PD_WEBHOOK_SECRET, ROUTING_KEY];

const AMINA: &str = "201001234567@c.us";
const OMAR: &str = "201007654321@c.us";

// ----------------------------------------------------------------------------- harness

/// A customer's chat whose last message (theirs) is at `at` (Unix seconds).
fn waiting(id: &str, name: &str, at: i64) -> Value {
    json!({
        "id": id, "name": name, "unreadCount": 1,
        "lastMessage": {"id": format!("m-{id}-{at}"), "body": "hello?", "timestamp": at, "fromMe": false}
    })
}

/// Slack (incoming webhook and `response_url`) and PagerDuty (Events API), on loopback in
/// the test's runtime: every POST by path, answered as the real services answer.
#[derive(Clone)]
struct Services {
    base: String,
    posts: Arc<Mutex<Vec<(String, Value)>>>,
}

impl Services {
    async fn start() -> Services {
        let posts: Arc<Mutex<Vec<(String, Value)>>> = Arc::default();
        let record = posts.clone();
        let app = axum::Router::new().fallback(move |uri: Uri, body: Bytes| {
            let record = record.clone();
            async move {
                let value = serde_json::from_slice(&body).unwrap_or(Value::Null);
                record.lock().unwrap().push((uri.path().to_string(), value));
                if uri.path() == "/v2/enqueue" {
                    (
                        StatusCode::ACCEPTED,
                        r#"{"status":"success","message":"Event processed"}"#,
                    )
                        .into_response()
                } else {
                    (StatusCode::OK, "ok").into_response()
                }
            }
        });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await });
        Services { base, posts }
    }

    /// The bodies POSTed to `path`, oldest first.
    fn at(&self, path: &str) -> Vec<Value> {
        self.posts
            .lock()
            .unwrap()
            .iter()
            .filter(|(p, _)| p == path)
            .map(|(_, v)| v.clone())
            .collect()
    }

    fn slack_url(&self) -> String {
        format!("{}/services/T1/B1/incoming", self.base)
    }

    fn response_url(&self) -> String {
        format!("{}/actions/T1/4242/respond", self.base)
    }
}

/// The daemon's log, captured from this test's thread (the runtime is single-threaded, so
/// every task of the daemon logs here).
#[derive(Clone, Default)]
struct Log(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for Log {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for Log {
    type Writer = Log;

    fn make_writer(&'a self) -> Log {
        self.clone()
    }
}

impl Log {
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
    }

    fn assert_no_secrets(&self) {
        let text = self.text();
        for secret in SECRETS {
            assert!(
                !text.contains(secret),
                "{secret} leaked into the log:\n{text}"
            );
        }
    }
}

struct Running {
    control: mpsc::UnboundedSender<Control>,
    task: JoinHandle<Result<(), daemon::Error>>,
    /// The daemon's clock: Slack's timestamps are taken from it.
    clock: Clock,
    /// The daemon's HTTP endpoint.
    base: String,
    store: Store,
    http: reqwest::Client,
    log: Log,
    _guard: tracing::subscriber::DefaultGuard,
    _dir: tempfile::TempDir,
}

/// Tiers at 2h and 2h30m to `notify`, the channels Slack and PagerDuty with their secrets
/// in files, as docs/spec.md section 4 shows them.
fn config_text(
    dir: &std::path::Path,
    services: &Services,
    instances: &[(&str, &str)],
    notify: &str,
) -> String {
    for (file, secret) in [
        ("slack-signing-secret", SLACK_SECRET),
        ("pd-webhook-secret", PD_WEBHOOK_SECRET),
        ("pd-routing-key", ROUTING_KEY),
    ] {
        std::fs::write(dir.join(file), format!("{secret}\n")).unwrap();
    }
    let mut t = format!(
        "[wawp]\nbase_url = \"https://wawp.invalid\"\nhistory_lookups = 0\n\n\
         [store]\npath = \"{store}\"\n\n\
         [http]\nlisten = \"127.0.0.1:0\"\n\n\
         [[escalation]]\nafter = \"2h\"\nnotify = [{notify}]\n\n\
         [[escalation]]\nafter = \"2h30m\"\nnotify = [{notify}]\n\n\
         [[channel]]\nname = \"oncall\"\ntype = \"slack\"\nwebhook_url = \"{slack}\"\n\
         signing_secret_file = \"slack-signing-secret\"\n\n\
         [[channel]]\nname = \"pd\"\ntype = \"pagerduty\"\nrouting_key_file = \"pd-routing-key\"\n\
         url = \"{base}/v2/enqueue\"\nwebhook_secret_file = \"pd-webhook-secret\"\n",
        store = dir.join("state.db").display(),
        slack = services.slack_url(),
        base = services.base,
    );
    for (name, id) in instances {
        t.push_str(&format!(
            "\n[[instance]]\nname = \"{name}\"\ninstance_id = \"{id}\"\naccess_token = \"wawp-token\"\n"
        ));
    }
    t
}

async fn start(
    inboxes: &Inboxes,
    services: &Services,
    instances: &[(&str, &str)],
    notify: &str,
) -> Running {
    let log = Log::default();
    let subscriber = tracing_subscriber::fmt()
        .with_writer(log.clone())
        .with_ansi(false)
        .with_env_filter("inbox_sla=trace,warn")
        .finish();
    let guard = tracing::subscriber::set_default(subscriber);
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("config.toml");
    std::fs::write(
        &config,
        config_text(dir.path(), services, instances, notify),
    )
    .unwrap();
    let loaded = Config::load(&config).unwrap();
    let clock = Clock::tokio(START_MS);
    let metrics = metrics_exporter_prometheus::PrometheusBuilder::new()
        .build_recorder()
        .handle();
    let setup = Setup {
        wawp: Some(Arc::new(inboxes.clone())),
        metrics: Some(metrics),
        ..Setup::new(config.clone(), loaded, clock.clone())
    };
    let (control, rx) = mpsc::unbounded_channel();
    let task = tokio::spawn(daemon::run(setup, rx));
    let mut base = None;
    for _ in 0..1000 {
        tokio::time::sleep(Duration::from_millis(10)).await;
        base = log.text().lines().find_map(|l| {
            l.split("on http://")
                .nth(1)
                .and_then(|rest| rest.split_whitespace().next())
                .map(|addr| format!("http://{addr}"))
        });
        if base.is_some() {
            break;
        }
    }
    let base = base.unwrap_or_else(|| panic!("the daemon said no address:\n{}", log.text()));
    let store = Store::open(&Location::Sqlite(dir.path().join("state.db")))
        .await
        .unwrap();
    Running {
        control,
        task,
        clock,
        base,
        store,
        http: reqwest::Client::new(),
        log,
        _guard: guard,
        _dir: dir,
    }
}

impl Running {
    async fn episode(&self, instance: &str, jid: &str) -> Episode {
        self.store
            .episode(instance, jid)
            .await
            .unwrap()
            .unwrap_or_else(|| panic!("{jid} has no open episode in {instance}"))
    }

    async fn post(&self, path: &str, headers: &[(&str, String)], body: Vec<u8>) -> (u16, String) {
        let mut request = self.http.post(format!("{}{path}", self.base)).body(body);
        for (k, v) in headers {
            request = request.header(*k, v);
        }
        let response = request.send().await.unwrap();
        let status = response.status().as_u16();
        (status, response.text().await.unwrap_or_default())
    }

    async fn stop(self) {
        self.log.assert_no_secrets();
        self.control.send(Control::Shutdown).unwrap();
        self.task.await.unwrap().unwrap();
    }
}

/// Who acknowledged an episode, when, and until when (whether the channels were told yet
/// is the cycle's business).
fn who(ep: &Episode) -> Option<(String, i64, i64)> {
    ep.ack.as_ref().map(|a| (a.by.clone(), a.at, a.until))
}

/// Lets `d` of simulated time pass; the daemon's timers fire on the way.
async fn pass(d: Duration) {
    tokio::time::sleep(d).await;
}

fn minutes(m: u64) -> Duration {
    Duration::from_secs(m * 60)
}

fn hex_hmac_sha256(key: &str, message: &[u8]) -> String {
    let key = aws_lc_rs::hmac::Key::new(aws_lc_rs::hmac::HMAC_SHA256, key.as_bytes());
    aws_lc_rs::hmac::sign(&key, message)
        .as_ref()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

// ----------------------------------------------------------------------------- Slack

/// What Slack POSTs to the Request URL when `user` clicks the button `action` of the
/// message it was shown: a form with one `payload` field of JSON, the message echoed with
/// the block ids Slack gave its blocks.
fn slack_click(message: &Value, clicked: usize, user: &str, response_url: &str) -> Vec<u8> {
    let mut blocks = message["blocks"].as_array().unwrap().clone();
    for (i, b) in blocks.iter_mut().enumerate() {
        b["block_id"] = json!(format!("blk{i}"));
    }
    let (at, actions) = blocks
        .iter()
        .enumerate()
        .filter(|(_, b)| b["type"] == "actions")
        .nth(clicked)
        .expect("the message has that many buttons");
    let button = &actions["elements"][0];
    let payload = json!({
        "type": "block_actions",
        "user": {"id": "U04AMINA", "username": user, "name": user, "team_id": "T1"},
        "api_app_id": "A0SLA",
        "token": "verification-token-unused",
        "container": {"type": "message", "message_ts": "1796468400.000100", "channel_id": "C0ONCALL", "is_ephemeral": false},
        "trigger_id": "1796468400.1.abc",
        "team": {"id": "T1", "domain": "example"},
        "channel": {"id": "C0ONCALL", "name": "oncall"},
        "message": {"type": "message", "subtype": "bot_message", "text": message["text"], "ts": "1796468400.000100", "blocks": blocks},
        "response_url": response_url,
        "actions": [{
            "action_id": button["action_id"], "block_id": format!("blk{at}"),
            "text": button["text"], "value": button["value"], "style": "primary",
            "type": "button", "action_ts": "1796468460.123456"
        }]
    });
    url::form_urlencoded::Serializer::new(String::new())
        .append_pair("payload", &payload.to_string())
        .finish()
        .into_bytes()
}

/// Slack's headers for `body` sent at `timestamp`, signed with `secret`.
fn slack_headers(secret: &str, timestamp: i64, body: &[u8]) -> Vec<(&'static str, String)> {
    let mut signed = format!("v0:{timestamp}:").into_bytes();
    signed.extend_from_slice(body);
    vec![
        (
            "content-type",
            "application/x-www-form-urlencoded".to_string(),
        ),
        ("x-slack-request-timestamp", timestamp.to_string()),
        (
            "x-slack-signature",
            format!("v0={}", hex_hmac_sha256(secret, &signed)),
        ),
    ]
}

fn statuses(posts: &[Value]) -> Vec<String> {
    posts
        .iter()
        .map(|p| {
            let text = p["text"].as_str().unwrap_or("");
            if text.contains("acknowledged") {
                "acknowledged".into()
            } else if text.contains("waiting over") {
                "firing".into()
            } else {
                text.to_string()
            }
        })
        .collect()
}

/// Section 11: the firing message carries a button per chat; a click signed as Slack signs
/// acknowledges that chat's episode for whoever clicked, the message is updated through
/// `response_url`, the paged channels hear it within seconds (Slack's notice, PagerDuty's
/// `acknowledge` for the episode's incident), and the next tier is held. A wrong
/// signature, a timestamp older than five minutes and a replay change nothing; a chat with
/// nothing open gets a reply only the clicker sees.
#[tokio::test(start_paused = true)]
async fn a_slack_click_acknowledges_its_episode_and_holds_the_next_tier() {
    let services = Services::start().await;
    let inboxes = Inboxes::answering(Answer::Chats(json!([])));
    inboxes.chats(
        "id-1",
        json!([
            waiting(AMINA, "Amina Hassan", START),
            waiting(OMAR, "Omar", START)
        ]),
    );
    let d = start(
        &inboxes,
        &services,
        &[("support", "id-1")],
        "\"oncall\", \"pd\"",
    )
    .await;
    pass(minutes(122) + Duration::from_secs(30)).await;
    let slack = services.at("/services/T1/B1/incoming");
    assert_eq!(statuses(&slack), ["firing"], "{slack:?}");
    let message = &slack[0];
    let buttons: Vec<&Value> = message["blocks"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|b| b["type"] == "actions")
        .collect();
    assert_eq!(buttons.len(), 2, "one button per chat: {message}");
    assert_eq!(buttons[0]["elements"][0]["text"]["text"], "Acknowledge");

    let click = slack_click(message, 0, "amina.hassan", &services.response_url());
    let now = d.clock.now();
    let wrong = slack_headers("another-apps-secret", now, &click);
    assert_eq!(d.post("/hooks/slack", &wrong, click.clone()).await.0, 401);
    let stale = slack_headers(SLACK_SECRET, now - 301, &click);
    assert_eq!(d.post("/hooks/slack", &stale, click.clone()).await.0, 401);
    let ahead = slack_headers(SLACK_SECRET, now + 301, &click);
    assert_eq!(d.post("/hooks/slack", &ahead, click.clone()).await.0, 401);
    let mut unsigned = slack_headers(SLACK_SECRET, now, &click);
    unsigned.pop();
    assert_eq!(
        d.post("/hooks/slack", &unsigned, click.clone()).await.0,
        401
    );
    pass(Duration::from_secs(5)).await;
    assert_eq!(
        d.episode("support", AMINA).await.ack,
        None,
        "nothing changed"
    );
    assert!(services.at("/actions/T1/4242/respond").is_empty());

    let now = d.clock.now();
    let signed = slack_headers(SLACK_SECRET, now, &click);
    let (status, _) = d.post("/hooks/slack", &signed, click.clone()).await;
    assert_eq!(status, 200);
    let ack = d.episode("support", AMINA).await.ack.expect("acknowledged");
    assert_eq!((ack.by.as_str(), ack.at), ("amina.hassan", now));
    assert_eq!(ack.until, now + 3600, "sla.ack_for");
    assert_eq!(
        d.episode("support", OMAR).await.ack,
        None,
        "only the clicked chat"
    );

    // Within seconds, not at the next poll a minute away: the doorbell rang.
    pass(Duration::from_secs(5)).await;
    let updates = services.at("/actions/T1/4242/respond");
    assert_eq!(updates.len(), 1, "{updates:?}");
    assert_eq!(updates[0]["replace_original"], true);
    let blocks = updates[0]["blocks"].as_array().unwrap();
    let shown = updates[0]["blocks"].to_string();
    assert!(shown.contains("Acknowledged by *amina.hassan*"), "{shown}");
    assert_eq!(
        blocks.iter().filter(|b| b["type"] == "actions").count(),
        1,
        "Omar's button stays, Amina's is replaced: {shown}"
    );
    let slack = services.at("/services/T1/B1/incoming");
    assert_eq!(statuses(&slack), ["firing", "acknowledged"], "{slack:?}");
    assert!(
        slack[1]["text"].as_str().unwrap().contains("amina.hassan"),
        "{}",
        slack[1]
    );
    let key = format!("inbox-sla/support/{AMINA}/{START}");
    let pd = services.at("/v2/enqueue");
    let acks: Vec<&Value> = pd
        .iter()
        .filter(|e| e["event_action"] == "acknowledge")
        .collect();
    assert_eq!(acks.len(), 1, "{pd:?}");
    assert_eq!(acks[0]["dedup_key"], key.as_str());
    assert_eq!(acks[0]["routing_key"], ROUTING_KEY);
    assert!(
        slack[1]["blocks"].to_string().find("\"actions\"").is_none(),
        "no button on an acknowledged notice"
    );

    // The same signed request again (within its five minutes): answered, nothing more.
    let (status, _) = d.post("/hooks/slack", &signed, click.clone()).await;
    assert_eq!(status, 200);
    pass(Duration::from_secs(5)).await;
    assert_eq!(services.at("/actions/T1/4242/respond").len(), 1);
    assert_eq!(
        who(&d.episode("support", AMINA).await),
        Some((ack.by.clone(), ack.at, ack.until))
    );

    // A button for a chat with nothing open, and one from an earlier episode of a chat that
    // waits again: 200, a reply for the clicker only, nothing acknowledged.
    for (chat, since) in [("201009999999@c.us", START), (OMAR, START - 3600)] {
        let mut old = message.clone();
        let value = json!({"i": "support", "c": chat, "s": since}).to_string();
        for b in old["blocks"].as_array_mut().unwrap() {
            if b["type"] == "actions" {
                b["elements"][0]["value"] = json!(value);
            }
        }
        let click = slack_click(&old, 0, "amina.hassan", &services.response_url());
        let headers = slack_headers(SLACK_SECRET, d.clock.now(), &click);
        let (status, body) = d.post("/hooks/slack", &headers, click).await;
        assert_eq!(status, 200);
        let reply: Value = serde_json::from_str(&body).unwrap();
        assert_eq!(reply["response_type"], "ephemeral");
        let said = reply["text"].as_str().unwrap();
        assert!(
            said.contains(&format!("{chat} has no open episode")),
            "{said}"
        );
    }
    assert_eq!(d.episode("support", OMAR).await.ack, None);
    pass(Duration::from_secs(5)).await;
    let updates = services.at("/actions/T1/4242/respond");
    assert_eq!(updates.len(), 3);
    assert_eq!(updates[1]["response_type"], "ephemeral");
    assert_eq!(updates[2]["replace_original"], false, "the message stays");

    // Bounded bodies.
    let big = vec![b'x'; (1 << 20) + 1];
    let headers = slack_headers(SLACK_SECRET, d.clock.now(), &big);
    assert_eq!(d.post("/hooks/slack", &headers, big).await.0, 413);

    // 2h36m: the 2h30m tier is due for both chats; it fires for Omar only.
    pass(minutes(35)).await;
    let slack = services.at("/services/T1/B1/incoming");
    assert_eq!(
        statuses(&slack),
        ["firing", "acknowledged", "firing"],
        "{slack:?}"
    );
    let chats = slack[2]["blocks"].to_string();
    assert!(chats.contains(OMAR) && !chats.contains(AMINA), "{chats}");
    assert_eq!(d.episode("support", AMINA).await.fired, [7200]);
    d.stop().await;
}

// ----------------------------------------------------------------------------- PagerDuty

/// A v3 webhook as PagerDuty sends it (docs: "Webhooks overview"), for `key`.
fn pd_webhook(id: &str, event_type: &str, key: &str, agent: Value) -> Vec<u8> {
    json!({"event": {
        "id": id,
        "event_type": event_type,
        "resource_type": "incident",
        "occurred_at": "2026-12-05T11:02:31.169Z",
        "agent": agent,
        "client": {"name": "PagerDuty"},
        "data": {
            "id": "PGR0VU2", "type": "incident",
            "self": "https://api.pagerduty.com/incidents/PGR0VU2",
            "html_url": "https://acme.pagerduty.com/incidents/PGR0VU2",
            "number": 2, "status": "acknowledged", "incident_key": key,
            "created_at": "2026-12-05T11:00:00Z", "title": "Amina Hassan waiting 2h on support",
            "service": {"id": "PF9KMXH", "summary": "WhatsApp SLA", "type": "service_reference"},
            "assignees": [], "urgency": "high", "resolve_reason": null
        }
    }})
    .to_string()
    .into_bytes()
}

fn person(name: &str) -> Value {
    json!({"html_url": "https://acme.pagerduty.com/users/PLH1HKV", "id": "PLH1HKV",
           "self": "https://api.pagerduty.com/users/PLH1HKV", "summary": name, "type": "user_reference"})
}

/// `X-PagerDuty-Signature` with a rotated-out secret's signature first, as during a
/// rotation.
fn pd_headers(secret: &str, body: &[u8]) -> Vec<(&'static str, String)> {
    vec![
        ("content-type", "application/json".to_string()),
        (
            "x-pagerduty-signature",
            format!(
                "v1={},v1={}",
                hex_hmac_sha256("an-older-secret", body),
                hex_hmac_sha256(secret, body)
            ),
        ),
    ]
}

/// Section 11: `incident.acknowledged` for one of our incidents acknowledges its episode
/// for the person who did, also when the incident key was bounded with a hash (a long
/// instance name); PagerDuty hears nothing back but its own `acknowledge`, and our own
/// acknowledgement echoed by an integration renames nobody. A bad signature, an incident
/// that is not ours, other event types and `incident.resolved` change nothing.
#[tokio::test(start_paused = true)]
async fn a_pagerduty_acknowledgement_acknowledges_the_incidents_episode() {
    let services = Services::start().await;
    let inboxes = Inboxes::answering(Answer::Chats(json!([])));
    let long = "s".repeat(240);
    inboxes.chats("id-1", json!([waiting(AMINA, "Amina Hassan", START)]));
    inboxes.chats("id-2", json!([waiting(OMAR, "Omar", START)]));
    let d = start(
        &inboxes,
        &services,
        &[("support", "id-1"), (&long, "id-2")],
        "\"pd\"",
    )
    .await;
    pass(minutes(122) + Duration::from_secs(30)).await;
    let triggers = services.at("/v2/enqueue");
    assert_eq!(triggers.len(), 2, "{triggers:?}");
    let key_of = |jid: &str| {
        triggers
            .iter()
            .find(|e| e["payload"]["custom_details"]["id"] == jid)
            .and_then(|e| e["dedup_key"].as_str())
            .unwrap()
            .to_string()
    };
    let amina_key = key_of(AMINA);
    assert_eq!(amina_key, format!("inbox-sla/support/{AMINA}/{START}"));
    let omar_key = key_of(OMAR);
    assert!(
        omar_key.len() <= 255 && omar_key.contains('~'),
        "{omar_key}"
    );

    let acked = pd_webhook(
        "ev-1",
        "incident.acknowledged",
        &amina_key,
        person("Amina Hassan"),
    );
    let forged = pd_headers("not-the-secret", &acked);
    assert_eq!(
        d.post("/hooks/pagerduty", &forged, acked.clone()).await.0,
        401
    );
    assert_eq!(d.post("/hooks/pagerduty", &[], acked.clone()).await.0, 401);
    for (body, what) in [
        (
            pd_webhook(
                "ev-2",
                "incident.acknowledged",
                "d3640fbd41094207a1c11e58e46b1662",
                person("Amina Hassan"),
            ),
            "not our incident",
        ),
        (
            pd_webhook(
                "ev-3",
                "incident.resolved",
                &amina_key,
                person("Amina Hassan"),
            ),
            "resolved in PagerDuty",
        ),
        (
            pd_webhook(
                "ev-4",
                "incident.priority_updated",
                &amina_key,
                person("Amina Hassan"),
            ),
            "another event type",
        ),
    ] {
        let headers = pd_headers(PD_WEBHOOK_SECRET, &body);
        assert_eq!(
            d.post("/hooks/pagerduty", &headers, body).await.0,
            200,
            "{what}"
        );
    }
    pass(Duration::from_secs(5)).await;
    assert_eq!(
        d.episode("support", AMINA).await.ack,
        None,
        "nothing changed"
    );
    assert!(
        d.log.text().contains("resolved in PagerDuty"),
        "a resolve is said, and left to the inbox"
    );

    let now = d.clock.now();
    let headers = pd_headers(PD_WEBHOOK_SECRET, &acked);
    assert_eq!(d.post("/hooks/pagerduty", &headers, acked).await.0, 200);
    let ack = d.episode("support", AMINA).await.ack.expect("acknowledged");
    assert_eq!((ack.by.as_str(), ack.at), ("Amina Hassan", now));

    let omar = pd_webhook(
        "ev-5",
        "incident.acknowledged",
        &omar_key,
        person("Omar Farouk"),
    );
    let headers = pd_headers(PD_WEBHOOK_SECRET, &omar);
    assert_eq!(d.post("/hooks/pagerduty", &headers, omar).await.0, 200);
    assert_eq!(
        d.episode(&long, OMAR).await.ack.map(|a| a.by),
        Some("Omar Farouk".to_string()),
        "a bounded key finds its episode"
    );

    // Our `acknowledge` event, echoed by PagerDuty as the integration's doing.
    let echo = pd_webhook(
        "ev-6",
        "incident.acknowledged",
        &amina_key,
        json!({"id": "PSVC01", "summary": "WhatsApp SLA", "type": "service_reference"}),
    );
    let headers = pd_headers(PD_WEBHOOK_SECRET, &echo);
    assert_eq!(d.post("/hooks/pagerduty", &headers, echo).await.0, 200);
    pass(Duration::from_secs(5)).await;
    assert_eq!(
        who(&d.episode("support", AMINA).await),
        Some((ack.by.clone(), ack.at, ack.until)),
        "the person who acknowledged is kept"
    );

    let acks: Vec<String> = services
        .at("/v2/enqueue")
        .iter()
        .filter(|e| e["event_action"] == "acknowledge")
        .map(|e| e["dedup_key"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(acks.len(), 2, "{acks:?}");
    assert!(
        acks.contains(&amina_key) && acks.contains(&omar_key),
        "{acks:?}"
    );

    // 2h36m: the 2h30m tier is held for both.
    pass(minutes(35)).await;
    let triggers = services
        .at("/v2/enqueue")
        .iter()
        .filter(|e| e["event_action"] == "trigger")
        .count();
    assert_eq!(triggers, 2, "no second tier while acknowledged");
    d.stop().await;
}

// ----------------------------------------------------------------------------- config

/// Section 4: the secrets come from files only, `check` shows them as `***`, and a
/// channel whose service would call back needs somewhere to call.
#[test]
fn the_secrets_are_read_from_files_shown_as_stars_and_need_http() {
    let dir = tempfile::tempdir().unwrap();
    let services = Services {
        base: "http://127.0.0.1:9".into(),
        posts: Arc::default(),
    };
    let text = config_text(dir.path(), &services, &[("support", "id-1")], "\"pd\"");
    let path = dir.path().join("config.toml");
    std::fs::write(&path, &text).unwrap();
    let rendered = Config::load(&path).unwrap().render();
    assert!(rendered.contains("signing_secret = \"***\""), "{rendered}");
    assert!(rendered.contains("webhook_secret = \"***\""), "{rendered}");
    for secret in SECRETS {
        assert!(!rendered.contains(secret), "{rendered}");
    }

    let no_http = text.replace("[http]\nlisten = \"127.0.0.1:0\"\n", "");
    std::fs::write(&path, &no_http).unwrap();
    let e = Config::load(&path).unwrap_err().to_string();
    assert!(e.contains("signing_secret_file needs [http] listen"), "{e}");
    assert!(!e.contains(SLACK_SECRET));

    let inline = text.replace(
        "signing_secret_file = \"slack-signing-secret\"",
        &format!("signing_secret = \"{SLACK_SECRET}\""),
    );
    std::fs::write(&path, &inline).unwrap();
    let e = Config::load(&path).unwrap_err().to_string();
    assert!(e.contains("signing_secret"), "an unknown key: {e}");
    assert!(!e.contains(SLACK_SECRET), "{e}");

    let taken = format!("{text}\n[events]\npath = \"/hooks/slack\"\n");
    std::fs::write(&path, &taken).unwrap();
    let e = Config::load(&path).unwrap_err().to_string();
    assert!(e.contains("events.path"), "{e}");
}
