//! The shared integration-test harness: real loopback servers and the real binary.
//!
//! - [`FakeWawp`]: a Wawp-shaped HTTP server per test, serving each instance its own
//!   overview (array or keyed object, paging honoured or ignored, a scripted sequence of
//!   inbox states for drift), error statuses, raw bodies, hangs or slow answers; it counts
//!   requests in flight, per instance and in all. It also serves `POST /v2/session/info`
//!   (404, as an engine without it, until a state is set) and `GET /v2/chats/messages`
//!   (a chat's messages newest first, `limit`/`offset`, or a failing status); and
//!   [`post_webhook`] sends an event signed as WAHA signs ([`waha_hmac`]).
//! - [`Receiver`]: a Slack/webhook receiver that records every POST with when it arrived
//!   and when it was answered, answering from a script (500, 429 with Retry-After, 404, a
//!   delay, a hang, then 200 "ok").
//! - [`Smtp`]: a real SMTP server (mailin-embedded) collecting messages, optionally with
//!   STARTTLS on a certificate made for the test, and LOGIN/PLAIN auth.
//! - [`Setup`]: a typed config builder (instances, channels, tiers, rules, any key) that
//!   renders TOML; [`Env`]: a temporary directory, that config, and `run()` for the binary,
//!   checking every output for the test's secrets; `alerts()` reads `alerts --format json`.
//! - [`Daemon`]: one handle on a running `inbox-sla run`: its log, its metrics port (it
//!   binds port 0 and says where), a notify socket, signals, and waits with deadlines.
//! - [`skip`]: a loud skip, counted, and a failure under `CI=true` when the capability
//!   should be there.
#![allow(dead_code)]

pub mod browser;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use serde_json::{Value, json};
use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

/// Secrets every test config uses; no output may ever contain them.
pub const TOKEN: &str = "tok-3f9a7c1e55d2";
pub const HOOK_SECRET: &str = "hooksecret-88aa71";
pub const SMTP_PASSWORD: &str = "smtp-pw-44d1e09";
pub const HEADER_SECRET: &str = "hdr-bearer-6b0c2a";
pub const ROUTING_KEY: &str = "pdkey-R0uting99a7";
pub const DB_PASSWORD: &str = "dbpw-7Hq2xLs0";
/// The password of the status page's users (`http.users_file`).
pub const USER_PASSWORD: &str = "upw-Lq93xTz0a";
pub const SECRETS: [&str; 7] = [
    TOKEN,
    HOOK_SECRET,
    SMTP_PASSWORD,
    HEADER_SECRET,
    ROUTING_KEY,
    DB_PASSWORD,
    USER_PASSWORD,
];

pub const H: i64 = 3600;

/// One runtime for every loopback server of the test binary.
pub fn rt() -> &'static tokio::runtime::Runtime {
    static RT: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RT.get_or_init(|| {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("test runtime")
    })
}

fn serve(app: Router) -> SocketAddr {
    rt().block_on(async {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        tokio::spawn(async move { axum::serve(listener, app).await });
        addr
    })
}

pub fn now() -> i64 {
    chrono::Utc::now().timestamp()
}

/// Skips a test loudly. Under `CI=true`, where `expected` says the capability should be
/// there, it fails instead: a skip must never hide a missing install.
pub fn skip(what: &str, expected: bool) {
    let ci = std::env::var("CI").is_ok_and(|v| v == "true" || v == "1");
    if ci && expected {
        panic!("{what}: required under CI=true, but not available");
    }
    // Straight to the process's stderr: libtest captures eprintln! of passing tests, and
    // a skip must be seen.
    {
        use std::io::Write;
        let _ = writeln!(std::io::stderr(), "\n*** SKIPPED: {what} ***");
    }
    let log = std::env::temp_dir().join("inbox-sla-skipped-tests.log");
    if let Ok(mut f) = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
    {
        use std::io::Write;
        let _ = writeln!(f, "{what}");
    }
}

pub fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("Uid:"))
                .map(|l| l.split_whitespace().nth(1) == Some("0"))
        })
        .unwrap_or(false)
}

// ----------------------------------------------------------------------------- chats

/// A chat as Wawp sends it: the customer spoke last.
pub fn chat(id: &str, name: &str, unread: i64, body: &str, ts: i64) -> Value {
    json!({
        "id": id, "name": name, "unreadCount": unread,
        "lastMessage": {"id": format!("M-{id}-{ts}"), "body": body, "timestamp": ts, "fromMe": false, "hasMedia": false}
    })
}

/// A chat whose last message is yours.
pub fn answered(id: &str, name: &str, body: &str, ts: i64) -> Value {
    json!({
        "id": id, "name": name, "unreadCount": 0,
        "lastMessage": {"id": format!("R-{id}-{ts}"), "body": body, "timestamp": ts, "fromMe": true, "hasMedia": false}
    })
}

/// Amina, waiting 3 hours: past a 2h SLA.
pub fn breached_chat() -> Value {
    chat("201001234567@c.us", "Amina", 1, "hi", now() - 3 * H)
}

// ----------------------------------------------------------------------------- Wawp

#[derive(Clone)]
pub enum Reply {
    Chats(Vec<Value>),
    Status(u16, String),
    Raw(Vec<u8>),
    Hang,
}

#[derive(Default)]
struct WawpState {
    /// Per instance_id; `""` is the default for any instance.
    replies: HashMap<String, Reply>,
    /// Inbox states served one per request, before `replies` applies again.
    script: VecDeque<Vec<Value>>,
    keyed: bool,
    /// Apply limit/offset; `false` is an API that ignores paging.
    ignore_paging: bool,
    /// Answer every request this late.
    delay: Duration,
    queries: Vec<HashMap<String, String>>,
    in_flight: HashMap<String, usize>,
    max_in_flight_per_instance: usize,
    in_flight_total: usize,
    max_in_flight_total: usize,
    /// `/v2/session/info` per instance_id (`""`: any); absent: 404, no such endpoint.
    sessions: HashMap<String, String>,
    session_queries: usize,
    /// `/v2/chats/messages` per chatId, newest first; a chat not listed is 404.
    history: HashMap<String, Vec<Value>>,
    /// While set, `/v2/chats/messages` answers this status.
    history_fails: Option<u16>,
    history_queries: Vec<HashMap<String, String>>,
    /// While set, `/v2/session/info` and `/v2/chats/messages` answer these bytes with 200
    /// (a gateway that routes every path to one answer).
    misrouted: Option<String>,
}

#[derive(Clone)]
pub struct FakeWawp {
    pub url: String,
    state: Arc<Mutex<WawpState>>,
}

impl FakeWawp {
    pub fn start() -> FakeWawp {
        let state = Arc::new(Mutex::new(WawpState::default()));
        let app = Router::new()
            .route("/v2/chats/overview", axum::routing::get(wawp_overview))
            .route("/v2/session/info", post(wawp_session))
            .route("/v2/chats/messages", axum::routing::get(wawp_messages))
            .with_state(state.clone());
        let addr = serve(app);
        let wawp = FakeWawp {
            url: format!("http://{addr}"),
            state,
        };
        wawp.chats(vec![]);
        wawp
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, WawpState> {
        self.state.lock().unwrap()
    }

    /// What every instance without its own reply gets.
    pub fn set(&self, reply: Reply) {
        self.lock().replies.insert(String::new(), reply);
    }

    pub fn chats(&self, chats: Vec<Value>) {
        self.set(Reply::Chats(chats));
    }

    /// What one instance (by `instance_id`) gets.
    pub fn set_for(&self, instance_id: &str, reply: Reply) {
        self.lock().replies.insert(instance_id.to_string(), reply);
    }

    /// Inbox states to serve one per request (then the set reply again): an inbox that
    /// changes while the client pages through it.
    pub fn script(&self, states: Vec<Vec<Value>>) {
        self.lock().script = states.into();
    }

    pub fn keyed(&self, keyed: bool) {
        self.lock().keyed = keyed;
    }

    pub fn ignore_paging(&self) {
        self.lock().ignore_paging = true;
    }

    pub fn delay(&self, d: Duration) {
        self.lock().delay = d;
    }

    pub fn queries(&self) -> Vec<HashMap<String, String>> {
        self.lock().queries.clone()
    }

    pub fn polls(&self) -> usize {
        self.lock().queries.len()
    }

    pub fn polls_of(&self, instance_id: &str) -> usize {
        self.lock()
            .queries
            .iter()
            .filter(|q| q.get("instance_id").map(String::as_str) == Some(instance_id))
            .count()
    }

    /// The most requests for one instance that were ever in flight at once.
    pub fn max_in_flight_per_instance(&self) -> usize {
        self.lock().max_in_flight_per_instance
    }

    pub fn max_in_flight_total(&self) -> usize {
        self.lock().max_in_flight_total
    }

    /// The WhatsApp session's state (`WORKING`, `SCAN_QR_CODE`, …) of every instance.
    pub fn session(&self, state: &str) {
        self.lock().sessions.insert(String::new(), state.into());
    }

    pub fn session_queries(&self) -> usize {
        self.lock().session_queries
    }

    /// A chat's messages, newest first: `(body, timestamp, from_me)`.
    pub fn history(&self, chat_id: &str, messages: &[(&str, i64, bool)]) {
        let list = messages
            .iter()
            .map(|(body, ts, me)| {
                json!({"id": format!("H-{chat_id}-{ts}"), "body": body, "timestamp": ts,
                       "fromMe": me, "hasMedia": false})
            })
            .collect();
        self.lock().history.insert(chat_id.into(), list);
    }

    /// `/v2/chats/messages` answers this status (`None`: the history again).
    pub fn history_fails(&self, status: Option<u16>) {
        self.lock().history_fails = status;
    }

    /// The queries `/v2/chats/messages` received.
    pub fn history_queries(&self) -> Vec<HashMap<String, String>> {
        self.lock().history_queries.clone()
    }

    /// `/v2/session/info` and `/v2/chats/messages` answer `body` with 200, whatever was
    /// asked (as a gateway that routes every path to the overview does).
    pub fn misroute(&self, body: Option<String>) {
        self.lock().misrouted = body;
    }
}

async fn wawp_session(
    State(state): State<Arc<Mutex<WawpState>>>,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    let instance = q.get("instance_id").cloned().unwrap_or_default();
    let mut s = state.lock().unwrap();
    s.session_queries += 1;
    if let Some(body) = &s.misrouted {
        return (StatusCode::OK, body.clone()).into_response();
    }
    match s.sessions.get(&instance).or_else(|| s.sessions.get("")) {
        // Wawp's envelope around WAHA's session object.
        Some(status) => axum::Json(json!({"status": "success",
            "data": {"name": instance, "status": status, "engine": {"engine": "WEBJS"}}}))
        .into_response(),
        None => StatusCode::NOT_FOUND.into_response(),
    }
}

async fn wawp_messages(
    State(state): State<Arc<Mutex<WawpState>>>,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    let mut s = state.lock().unwrap();
    s.history_queries.push(q.clone());
    if let Some(body) = &s.misrouted {
        return (StatusCode::OK, body.clone()).into_response();
    }
    if let Some(code) = s.history_fails {
        return (
            StatusCode::from_u16(code).unwrap(),
            "{\"message\":\"engine busy\"}",
        )
            .into_response();
    }
    let chat = q.get("chatId").cloned().unwrap_or_default();
    let Some(list) = s.history.get(&chat) else {
        return (StatusCode::NOT_FOUND, "{\"message\":\"chat not found\"}").into_response();
    };
    let offset: usize = q.get("offset").and_then(|v| v.parse().ok()).unwrap_or(0);
    let limit: usize = q.get("limit").and_then(|v| v.parse().ok()).unwrap_or(100);
    let page: Vec<Value> = list.iter().skip(offset).take(limit).cloned().collect();
    axum::Json(Value::Array(page)).into_response()
}

/// `X-Webhook-Hmac` as WAHA computes it: hex HMAC-SHA512 of the body.
pub fn waha_hmac(key: &str, body: &[u8]) -> String {
    let key = aws_lc_rs::hmac::Key::new(aws_lc_rs::hmac::HMAC_SHA512, key.as_bytes());
    aws_lc_rs::hmac::sign(&key, body)
        .as_ref()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// POSTs a webhook event as WAHA sends it (signed when `key` is given); the status.
pub fn post_webhook(url: &str, body: &str, key: Option<&str>) -> u16 {
    rt().block_on(async {
        let mut request = reqwest::Client::new()
            .post(url)
            .header("content-type", "application/json")
            .body(body.to_string());
        if let Some(key) = key {
            request = request
                .header("X-Webhook-Hmac", waha_hmac(key, body.as_bytes()))
                .header("X-Webhook-Hmac-Algorithm", "sha512");
        }
        match request.send().await {
            Ok(r) => r.status().as_u16(),
            Err(_) => 0,
        }
    })
}

async fn wawp_overview(
    State(state): State<Arc<Mutex<WawpState>>>,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    let instance = q.get("instance_id").cloned().unwrap_or_default();
    let (reply, keyed, paging, delay) = {
        let mut s = state.lock().unwrap();
        s.queries.push(q.clone());
        let n = s.in_flight.entry(instance.clone()).or_insert(0);
        *n += 1;
        let n = *n;
        s.max_in_flight_per_instance = s.max_in_flight_per_instance.max(n);
        s.in_flight_total += 1;
        s.max_in_flight_total = s.max_in_flight_total.max(s.in_flight_total);
        let reply = match s.script.pop_front() {
            Some(chats) => Reply::Chats(chats),
            None => s
                .replies
                .get(&instance)
                .or_else(|| s.replies.get(""))
                .cloned()
                .unwrap_or(Reply::Chats(vec![])),
        };
        (reply, s.keyed, !s.ignore_paging, s.delay)
    };
    struct Done(Arc<Mutex<WawpState>>, String);
    impl Drop for Done {
        fn drop(&mut self) {
            let mut s = self.0.lock().unwrap();
            if let Some(n) = s.in_flight.get_mut(&self.1) {
                *n -= 1;
            }
            s.in_flight_total -= 1;
        }
    }
    let _done = Done(state.clone(), instance);
    if !delay.is_zero() {
        tokio::time::sleep(delay).await;
    }
    match reply {
        Reply::Chats(mut chats) => {
            if paging {
                let offset: usize = q.get("offset").and_then(|v| v.parse().ok()).unwrap_or(0);
                let limit: usize = q
                    .get("limit")
                    .and_then(|v| v.parse().ok())
                    .unwrap_or(usize::MAX);
                chats = chats.into_iter().skip(offset).take(limit).collect();
            }
            let body = if keyed {
                Value::Object(
                    chats
                        .into_iter()
                        .enumerate()
                        .map(|(i, c)| (i.to_string(), c))
                        .collect(),
                )
            } else {
                Value::Array(chats)
            };
            ([("content-type", "application/json")], body.to_string()).into_response()
        }
        Reply::Status(code, body) => (StatusCode::from_u16(code).unwrap(), body).into_response(),
        Reply::Raw(bytes) => ([("content-type", "application/json")], bytes).into_response(),
        Reply::Hang => {
            tokio::time::sleep(Duration::from_secs(3600)).await;
            StatusCode::OK.into_response()
        }
    }
}

// ----------------------------------------------------------------------------- receivers

/// What a receiver answers to one POST.
#[derive(Clone, Debug)]
pub enum Answer {
    Ok,
    /// 202 with a body, as PagerDuty answers.
    Accepted(String),
    Status(u16),
    /// This status with this body.
    StatusBody(u16, String),
    RetryAfter(u64),
    /// This status, with a body that echoes the request path (as some servers do).
    Echo(u16),
    /// 200 "ok", after this long.
    Delay(Duration),
    Hang,
}

/// One POST a receiver got.
#[derive(Clone, Debug)]
pub struct Post {
    pub headers: HeaderMap,
    pub body: Value,
    pub raw: Vec<u8>,
    pub arrived: Instant,
    pub answer: Answer,
}

#[derive(Default)]
struct ReceiverState {
    script: VecDeque<Answer>,
    posts: Vec<Post>,
    /// When each answered POST was answered (index into posts).
    answered: Vec<(usize, Instant)>,
}

/// A Slack incoming-webhook, Teams, PagerDuty or generic webhook receiver.
#[derive(Clone)]
pub struct Receiver {
    pub url: String,
    pub base: String,
    state: Arc<Mutex<ReceiverState>>,
}

impl Receiver {
    pub fn start() -> Receiver {
        let state: Arc<Mutex<ReceiverState>> = Arc::default();
        let app = Router::new()
            .route("/hook/{secret}", post(receive))
            .route("/v2/enqueue", post(receive_plain))
            .route("/api/v2/alerts", post(receive_plain))
            .with_state(state.clone());
        let addr = serve(app);
        Receiver {
            url: format!("http://{addr}/hook/{HOOK_SECRET}"),
            base: format!("http://{addr}"),
            state,
        }
    }

    /// Answers for the next POSTs, in order; afterwards every POST gets 200 "ok".
    pub fn script(&self, answers: &[Answer]) {
        self.state.lock().unwrap().script = answers.iter().cloned().collect();
    }

    pub fn all(&self) -> Vec<Post> {
        self.state.lock().unwrap().posts.clone()
    }

    /// Every POST body, whatever the answer.
    pub fn posts(&self) -> Vec<Value> {
        self.all().into_iter().map(|p| p.body).collect()
    }

    /// Only the POST bodies answered with success.
    pub fn accepted(&self) -> Vec<Value> {
        self.all()
            .into_iter()
            .filter(|p| {
                matches!(
                    p.answer,
                    Answer::Ok | Answer::Accepted(_) | Answer::Delay(_)
                )
            })
            .map(|p| p.body)
            .collect()
    }

    pub fn arrival_times(&self) -> Vec<Instant> {
        self.all().iter().map(|p| p.arrived).collect()
    }

    /// When the POST at `index` was answered, if it was.
    pub fn answered_at(&self, index: usize) -> Option<Instant> {
        let s = self.state.lock().unwrap();
        s.answered
            .iter()
            .find(|(i, _)| *i == index)
            .map(|(_, t)| *t)
    }
}

async fn receive_plain(
    state: State<Arc<Mutex<ReceiverState>>>,
    uri: axum::http::Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    receive(state, uri, headers, body).await
}

async fn receive(
    State(state): State<Arc<Mutex<ReceiverState>>>,
    uri: axum::http::Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let value: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let (index, answer) = {
        let mut s = state.lock().unwrap();
        let answer = s.script.pop_front().unwrap_or(Answer::Ok);
        s.posts.push(Post {
            headers,
            body: value,
            raw: body.to_vec(),
            arrived: Instant::now(),
            answer: answer.clone(),
        });
        (s.posts.len() - 1, answer)
    };
    let response = match answer {
        Answer::Ok => (StatusCode::OK, "ok").into_response(),
        Answer::Accepted(b) => (StatusCode::ACCEPTED, b).into_response(),
        Answer::Status(code) => (StatusCode::from_u16(code).unwrap(), "no_service").into_response(),
        Answer::StatusBody(code, b) => (StatusCode::from_u16(code).unwrap(), b).into_response(),
        Answer::Echo(code) => (
            StatusCode::from_u16(code).unwrap(),
            format!("no such hook: {uri}"),
        )
            .into_response(),
        Answer::RetryAfter(secs) => (
            StatusCode::TOO_MANY_REQUESTS,
            [("retry-after", secs.to_string())],
            "rate_limited",
        )
            .into_response(),
        Answer::Delay(d) => {
            tokio::time::sleep(d).await;
            (StatusCode::OK, "ok").into_response()
        }
        Answer::Hang => {
            tokio::time::sleep(Duration::from_secs(3600)).await;
            StatusCode::OK.into_response()
        }
    };
    state.lock().unwrap().answered.push((index, Instant::now()));
    response
}

// ----------------------------------------------------------------------------- SMTP

/// A message the SMTP server received.
#[derive(Clone, Debug, Default)]
pub struct Mail {
    pub from: String,
    pub to: Vec<String>,
    pub data: String,
    /// The user that authenticated, if any.
    pub user: Option<String>,
    /// The name the client gave in EHLO.
    pub helo: String,
}

#[derive(Clone, Default)]
struct SmtpHandler {
    mails: Arc<Mutex<Vec<Mail>>>,
    current: Mail,
    /// Answer data_end with 451 this many more times (a refusing server).
    refuse: Arc<Mutex<u32>>,
}

/// Whether an EHLO name is what Postfix's `reject_non_fqdn_helo_hostname` lets through: a
/// fully qualified domain name or an address literal.
pub fn fqdn_or_literal(name: &str) -> bool {
    (name.starts_with('[') && name.ends_with(']'))
        || (name.contains('.') && !name.starts_with('.') && !name.ends_with('.'))
}

impl mailin_embedded::Handler for SmtpHandler {
    /// As strict as a Postfix with `reject_non_fqdn_helo_hostname`, which many relays
    /// run: a bare host name such as `vm` is refused for good.
    fn helo(&mut self, _ip: std::net::IpAddr, domain: &str) -> mailin_embedded::Response {
        if fqdn_or_literal(domain) {
            mailin_embedded::response::OK
        } else {
            mailin_embedded::Response::custom(
                504,
                format!("5.5.2 <{domain}>: Helo command rejected: need fully-qualified hostname"),
            )
        }
    }

    fn data_start(
        &mut self,
        domain: &str,
        from: &str,
        _is8bit: bool,
        to: &[String],
    ) -> mailin_embedded::Response {
        let user = self.current.user.take();
        self.current = Mail {
            from: from.to_string(),
            to: to.to_vec(),
            data: String::new(),
            user,
            helo: domain.to_string(),
        };
        mailin_embedded::response::OK
    }

    fn data(&mut self, buf: &[u8]) -> std::io::Result<()> {
        self.current.data.push_str(&String::from_utf8_lossy(buf));
        Ok(())
    }

    fn data_end(&mut self) -> mailin_embedded::Response {
        let mut refuse = self.refuse.lock().unwrap();
        if *refuse > 0 {
            *refuse -= 1;
            return mailin_embedded::response::INTERNAL_ERROR;
        }
        self.mails.lock().unwrap().push(self.current.clone());
        mailin_embedded::response::OK
    }

    fn auth_plain(
        &mut self,
        _authz: &str,
        user: &str,
        password: &str,
    ) -> mailin_embedded::Response {
        self.auth_login(user, password)
    }

    fn auth_login(&mut self, user: &str, password: &str) -> mailin_embedded::Response {
        if password == SMTP_PASSWORD {
            self.current.user = Some(user.to_string());
            mailin_embedded::response::AUTH_OK
        } else {
            mailin_embedded::response::INVALID_CREDENTIALS
        }
    }
}

pub struct Smtp {
    pub port: u16,
    mails: Arc<Mutex<Vec<Mail>>>,
    refuse: Arc<Mutex<u32>>,
    /// PEM of the certificate when STARTTLS is on (for `ca_file`).
    pub ca_pem: Option<String>,
}

impl Smtp {
    /// A plain SMTP server on 127.0.0.1.
    pub fn start() -> Smtp {
        Smtp::start_with(None)
    }

    /// STARTTLS with a certificate for 127.0.0.1 made now, and LOGIN/PLAIN auth.
    pub fn start_tls(dir: &Path) -> Smtp {
        Smtp::start_with(Some(dir))
    }

    fn start_with(tls_dir: Option<&Path>) -> Smtp {
        let handler = SmtpHandler::default();
        let (mails, refuse) = (handler.mails.clone(), handler.refuse.clone());
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind smtp");
        let port = listener.local_addr().unwrap().port();
        let mut server = mailin_embedded::Server::new(handler);
        server.with_name("smtp.test").with_tcp_listener(listener);
        let mut ca_pem = None;
        if let Some(dir) = tls_dir {
            let cert = rcgen::generate_simple_self_signed(vec!["127.0.0.1".to_string()]).unwrap();
            let (cert_path, key_path) = (dir.join("smtp-cert.pem"), dir.join("smtp-key.pem"));
            std::fs::write(&cert_path, cert.cert.pem()).unwrap();
            std::fs::write(&key_path, cert.signing_key.serialize_pem()).unwrap();
            server
                .with_ssl(mailin_embedded::SslConfig::SelfSigned {
                    cert_path: cert_path.display().to_string(),
                    key_path: key_path.display().to_string(),
                })
                .unwrap()
                .with_auth(mailin_embedded::AuthMechanism::Plain)
                .with_auth(mailin_embedded::AuthMechanism::Login);
            ca_pem = Some(cert.cert.pem());
        }
        std::thread::spawn(move || {
            let _ = server.serve();
        });
        Smtp {
            port,
            mails,
            refuse,
            ca_pem,
        }
    }

    pub fn mails(&self) -> Vec<Mail> {
        self.mails.lock().unwrap().clone()
    }

    /// The next `n` messages are refused with 451 at the end of DATA.
    pub fn refuse(&self, n: u32) {
        *self.refuse.lock().unwrap() = n;
    }
}

/// A listener that accepts connections and never says a word (a hung SMTP server).
pub fn silent_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for stream in listener.incoming() {
            held.push(stream);
        }
    });
    port
}

/// A raw TCP server on 127.0.0.1 that runs `script` on a thread for every connection:
/// for faults no well-behaved server library will produce (a body that drips, a
/// connection dropped half way, an SMTP session cut during DATA).
pub fn raw_server(script: fn(std::net::TcpStream)) -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            std::thread::spawn(move || script(stream));
        }
    });
    port
}

/// Reads an HTTP request's head (up to the blank line).
pub fn read_request_head(stream: &mut std::net::TcpStream) {
    use std::io::Read;
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        match stream.read(&mut byte) {
            Ok(1) => head.push(byte[0]),
            _ => return,
        }
    }
}

// ----------------------------------------------------------------------------- config

/// A `[[channel]]` table.
#[derive(Clone, Debug)]
pub struct Channel {
    name: String,
    keys: Vec<(String, String)>,
}

impl Channel {
    fn new(name: &str, kind: &str) -> Channel {
        Channel {
            name: name.into(),
            keys: vec![("type".into(), toml_str(kind))],
        }
    }

    pub fn console() -> Channel {
        Channel::new("console", "console")
    }

    pub fn slack(name: &str, url: &str) -> Channel {
        Channel::new(name, "slack").key("webhook_url", &toml_str(url))
    }

    /// A webhook with the test's secret bearer header.
    pub fn webhook(name: &str, url: &str) -> Channel {
        Channel::new(name, "webhook")
            .key("url", &toml_str(url))
            .key(
                "headers",
                &format!("{{ Authorization = \"Bearer {HEADER_SECRET}\" }}"),
            )
    }

    /// Email to a plain SMTP server on loopback.
    pub fn email(name: &str, port: u16) -> Channel {
        Channel::new(name, "email")
            .key("smtp_host", "\"127.0.0.1\"")
            .key("smtp_port", &port.to_string())
            .key("tls", "\"none\"")
            .key("from", "\"WhatsApp SLA <sla@example.com>\"")
            .key("to", "[\"leads@example.com\", \"oncall@example.com\"]")
    }

    pub fn pagerduty(name: &str, base: &str) -> Channel {
        Channel::new(name, "pagerduty")
            .key("routing_key", &toml_str(ROUTING_KEY))
            .key("url", &toml_str(&format!("{base}/v2/enqueue")))
    }

    pub fn teams(name: &str, url: &str) -> Channel {
        Channel::new(name, "teams").key("webhook_url", &toml_str(url))
    }

    pub fn alertmanager(name: &str, urls: &[&str]) -> Channel {
        let list: Vec<String> = urls.iter().map(|u| toml_str(u)).collect();
        Channel::new(name, "alertmanager").key("urls", &format!("[{}]", list.join(", ")))
    }

    /// Any key, its value written as TOML.
    pub fn key(mut self, key: &str, toml_value: &str) -> Channel {
        self.keys.retain(|(k, _)| k != key);
        self.keys.push((key.into(), toml_value.into()));
        self
    }
}

pub fn toml_str(s: &str) -> String {
    toml::Value::String(s.to_string()).to_string()
}

/// A config, built by type, rendered to TOML.
#[derive(Clone, Debug)]
pub struct Setup {
    wawp: Vec<(String, String)>,
    /// `(name, instance_id)`
    instances: Vec<(String, String)>,
    /// `(table, key, value)` for single tables: sla, store, delivery, log, http, ha.
    keys: Vec<(String, String, String)>,
    /// `(after, notify)`
    tiers: Vec<(String, Option<Vec<String>>)>,
    channels: Vec<Channel>,
    /// Raw TOML appended (rules, business hours).
    raw: Vec<String>,
}

impl Setup {
    /// One instance "support" (id 12345) polled from `wawp`, request timeout 5s.
    pub fn new(wawp: &FakeWawp) -> Setup {
        Setup {
            wawp: vec![
                ("base_url".into(), toml_str(&wawp.url)),
                ("request_timeout".into(), "\"5s\"".into()),
            ],
            instances: vec![("support".into(), "12345".into())],
            keys: Vec::new(),
            tiers: Vec::new(),
            channels: Vec::new(),
            raw: Vec::new(),
        }
    }

    pub fn wawp(mut self, key: &str, toml_value: &str) -> Setup {
        self.wawp.retain(|(k, _)| k != key);
        self.wawp.push((key.into(), toml_value.into()));
        self
    }

    /// Replaces the instances: `(name, instance_id)`.
    pub fn instances(mut self, list: &[(&str, &str)]) -> Setup {
        self.instances = list
            .iter()
            .map(|(n, i)| (n.to_string(), i.to_string()))
            .collect();
        self
    }

    /// A key of a single table (`sla`, `store`, `delivery`, `log`, `http`, `ha`), its
    /// value written as TOML.
    pub fn set(mut self, table: &str, key: &str, toml_value: &str) -> Setup {
        self.keys.retain(|(t, k, _)| !(t == table && k == key));
        self.keys
            .push((table.into(), key.into(), toml_value.into()));
        self
    }

    pub fn unset(mut self, table: &str, key: &str) -> Setup {
        self.keys.retain(|(t, k, _)| !(t == table && k == key));
        self
    }

    /// `[sla] poll_interval`.
    pub fn poll(self, every: &str) -> Setup {
        self.set("sla", "poll_interval", &toml_str(every))
    }

    pub fn tier(mut self, after: &str, notify: &[&str]) -> Setup {
        self.tiers.push((
            after.into(),
            Some(notify.iter().map(|s| s.to_string()).collect()),
        ));
        self
    }

    pub fn tiers_clear(mut self) -> Setup {
        self.tiers.clear();
        self
    }

    pub fn channel(mut self, c: Channel) -> Setup {
        self.channels.retain(|x| x.name != c.name);
        self.channels.push(c);
        self
    }

    pub fn raw(mut self, toml: &str) -> Setup {
        self.raw.push(toml.into());
        self
    }

    /// `[http] listen` on a port the daemon picks and logs.
    pub fn http(self) -> Setup {
        self.set("http", "listen", "\"127.0.0.1:0\"")
    }

    pub fn render(&self, store: &Path) -> String {
        use std::fmt::Write;
        let mut t = String::from("[wawp]\n");
        for (k, v) in &self.wawp {
            let _ = writeln!(t, "{k} = {v}");
        }
        for (name, id) in &self.instances {
            let _ = writeln!(
                t,
                "\n[[instance]]\nname = {}\ninstance_id = {}\naccess_token = {}",
                toml_str(name),
                toml_str(id),
                toml_str(TOKEN)
            );
        }
        let has_store_key = self
            .keys
            .iter()
            .any(|(t, k, _)| t == "store" && (k == "url" || k == "path" || k == "url_file"));
        let mut tables: Vec<&str> = Vec::new();
        for (table, _, _) in &self.keys {
            if !tables.contains(&table.as_str()) {
                tables.push(table);
            }
        }
        if !has_store_key && !tables.contains(&"store") {
            tables.push("store");
        }
        for table in tables {
            let _ = writeln!(t, "\n[{table}]");
            if table == "store" && !has_store_key {
                let _ = writeln!(t, "path = {}", toml_str(&store.display().to_string()));
            }
            for (tb, k, v) in &self.keys {
                if tb == table {
                    let _ = writeln!(t, "{k} = {v}");
                }
            }
        }
        for (after, notify) in &self.tiers {
            let _ = writeln!(t, "\n[[escalation]]\nafter = {}", toml_str(after));
            if let Some(n) = notify {
                let list: Vec<String> = n.iter().map(|s| toml_str(s)).collect();
                let _ = writeln!(t, "notify = [{}]", list.join(", "));
            }
        }
        for c in &self.channels {
            let _ = writeln!(t, "\n[[channel]]\nname = {}", toml_str(&c.name));
            for (k, v) in &c.keys {
                let _ = writeln!(t, "{k} = {v}");
            }
        }
        for r in &self.raw {
            let _ = writeln!(t, "\n{r}");
        }
        t
    }
}

// ----------------------------------------------------------------------------- env

/// A test's directory, config and binary.
pub struct Env {
    pub dir: tempfile::TempDir,
    pub config: PathBuf,
    pub setup: Setup,
}

impl Env {
    pub fn new(setup: Setup) -> Env {
        let dir = tempfile::tempdir().unwrap();
        let config = dir.path().join("config.toml");
        let env = Env { dir, config, setup };
        env.write();
        env
    }

    /// Rewrites the config from `setup`.
    pub fn update(&mut self, f: impl FnOnce(Setup) -> Setup) {
        self.setup = f(self.setup.clone());
        self.write();
    }

    fn write(&self) {
        let text = self.setup.render(&self.store());
        std::fs::write(&self.config, text).unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&self.config, std::fs::Permissions::from_mode(0o600)).unwrap();
    }

    pub fn store(&self) -> PathBuf {
        self.dir.path().join("state.db")
    }

    pub fn command(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_inbox-sla"));
        cmd.arg("--config").arg(&self.config).args(args);
        cmd.env_remove("RUST_LOG")
            .env_remove("NOTIFY_SOCKET")
            .env_remove("WATCHDOG_USEC")
            .env_remove("INBOX_SLA_CONFIG")
            .env_remove("JOURNAL_STREAM")
            .env_remove("CREDENTIALS_DIRECTORY");
        cmd
    }

    /// Runs the binary to completion and checks that no secret reached its output.
    pub fn run(&self, args: &[&str]) -> Run {
        let output = self.command(args).output().expect("run inbox-sla");
        Run::from(output)
    }

    /// `alerts --all --format json`, parsed.
    pub fn alerts(&self) -> Value {
        let run = self.run(&["alerts", "--all", "--format", "json"]);
        assert_eq!(run.code, 0, "{run}");
        serde_json::from_str(&run.stdout).unwrap_or_else(|e| panic!("{e}: {run}"))
    }

    pub fn start(&self) -> Daemon {
        Daemon::start(self, &[])
    }
}

/// How many notifications are pending (or claimed), dead, sent.
pub fn outbox_count(alerts: &Value, state: &str) -> u64 {
    let counts = &alerts["outbox"];
    match state {
        "pending" => {
            counts["pending"].as_u64().unwrap_or(0) + counts["claimed"].as_u64().unwrap_or(0)
        }
        other => counts[other].as_u64().unwrap_or(0),
    }
}

/// One finished run of the binary.
pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl From<Output> for Run {
    fn from(output: Output) -> Run {
        let run = Run {
            code: output.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
        };
        assert_no_secrets(&run.stdout);
        assert_no_secrets(&run.stderr);
        run
    }
}

impl std::fmt::Display for Run {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "exit {}\n--- stdout\n{}--- stderr\n{}",
            self.code, self.stdout, self.stderr
        )
    }
}

pub fn assert_no_secrets(text: &str) {
    for secret in SECRETS {
        assert!(
            !text.contains(secret),
            "secret {secret} leaked into output:\n{text}"
        );
    }
}

/// Polls `cond` every 20ms until it holds or `timeout` passes.
pub fn wait_for(timeout: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if cond() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    cond()
}

/// Generous deadlines: a loaded 2-core machine is slow, and a deadline is only reached
/// when something is wrong.
pub const PATIENCE: Duration = Duration::from_secs(30);

// ----------------------------------------------------------------------------- daemon

/// A `NOTIFY_SOCKET` for a daemon, read by the test.
pub struct NotifySocket {
    pub path: PathBuf,
    socket: std::os::unix::net::UnixDatagram,
    seen: String,
}

impl NotifySocket {
    pub fn bind(dir: &Path) -> NotifySocket {
        let path = dir.join(format!("notify-{}.sock", fastrand::u32(..)));
        let socket = std::os::unix::net::UnixDatagram::bind(&path).unwrap();
        socket
            .set_read_timeout(Some(Duration::from_millis(100)))
            .unwrap();
        NotifySocket {
            path,
            socket,
            seen: String::new(),
        }
    }

    /// Reads until `want` was seen (since the socket opened) or `timeout` passes.
    pub fn read_until(&mut self, want: &str, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        let mut buf = [0u8; 4096];
        while !self.seen.contains(want) && Instant::now() < deadline {
            if let Ok(n) = self.socket.recv(&mut buf) {
                self.seen.push_str(&String::from_utf8_lossy(&buf[..n]));
                self.seen.push('\n');
            }
        }
        self.seen.contains(want)
    }

    /// Forgets what was seen, after draining what is queued.
    pub fn drain(&mut self) {
        let mut buf = [0u8; 4096];
        self.socket
            .set_read_timeout(Some(Duration::from_millis(10)))
            .unwrap();
        while self.socket.recv(&mut buf).is_ok() {}
        self.socket
            .set_read_timeout(Some(Duration::from_millis(100)))
            .unwrap();
        self.seen.clear();
    }

    /// Everything received during `for_` (after draining).
    pub fn listen(&mut self, for_: Duration) -> String {
        self.drain();
        let deadline = Instant::now() + for_;
        let mut buf = [0u8; 4096];
        let mut out = String::new();
        while Instant::now() < deadline {
            if let Ok(n) = self.socket.recv(&mut buf) {
                out.push_str(&String::from_utf8_lossy(&buf[..n]));
                out.push('\n');
            }
        }
        out
    }

    pub fn seen(&self) -> &str {
        &self.seen
    }
}

/// A running `inbox-sla run`, its stderr captured to a file.
pub struct Daemon {
    pub child: Child,
    log: PathBuf,
}

impl Daemon {
    pub fn start(env: &Env, extra_env: &[(&str, String)]) -> Daemon {
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

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn log(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        assert_no_secrets(&text);
        text
    }

    /// Waits until the log contains `text`.
    pub fn wait_log(&self, text: &str) -> bool {
        wait_for(PATIENCE, || self.log().contains(text))
    }

    /// The metrics base URL, once the daemon has said where it listens.
    pub fn http_base(&self) -> String {
        let mut found = None;
        wait_for(PATIENCE, || {
            found = self.log().lines().find_map(|l| {
                ["http", "https"].into_iter().find_map(|scheme| {
                    l.split(&format!("on {scheme}://")).nth(1).map(|rest| {
                        let addr = rest.split_whitespace().next().unwrap_or("");
                        format!("{scheme}://{addr}")
                    })
                })
            });
            found.is_some()
        });
        found.unwrap_or_else(|| panic!("no listen address logged:\n{}", self.log()))
    }

    pub fn signal(&self, name: &str) {
        let status = Command::new("kill")
            .arg(format!("-{name}"))
            .arg(self.child.id().to_string())
            .status()
            .unwrap();
        assert!(status.success());
    }

    /// Waits for the exit; `None` if it is still running after `timeout`.
    pub fn wait(&mut self, timeout: Duration) -> Option<i32> {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if let Some(status) = self.child.try_wait().unwrap() {
                return Some(status.code().unwrap_or(-1));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        None
    }

    /// SIGKILL, and reap.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// An HTTP GET on loopback: (status, body); status 0 when nothing answered.
pub fn get(url: &str) -> (u16, String) {
    rt().block_on(async {
        match reqwest::get(url).await {
            Ok(r) => (r.status().as_u16(), r.text().await.unwrap_or_default()),
            Err(_) => (0, String::new()),
        }
    })
}

/// The texts of Slack messages a receiver accepted.
pub fn slack_texts(rx: &Receiver) -> Vec<String> {
    rx.accepted()
        .iter()
        .map(|p| p["text"].as_str().unwrap_or("").to_string())
        .collect()
}

// ----------------------------------------------------------------------------- people

/// A `users_file` line for `user`, as `htpasswd -B` writes it (cost 5: fast tests). The
/// real tool when it is installed (CI installs apache2-utils); else the same format from
/// the bcrypt crate, after a loud skip.
pub fn htpasswd_line(user: &str, password: &str) -> String {
    let out = Command::new("htpasswd")
        .args(["-nbB", "-C", "5", user, password])
        .output();
    match out {
        Ok(o) if o.status.success() => String::from_utf8_lossy(&o.stdout).trim().to_string(),
        _ => {
            skip(
                "htpasswd (apache2-utils) is not installed: hashing with the bcrypt crate",
                true,
            );
            let hash = bcrypt::hash_with_result(password, 5)
                .unwrap()
                .format_for_version(bcrypt::Version::TwoY);
            format!("{user}:{hash}")
        }
    }
}

/// `Authorization: Basic …` for `user` and `password`.
pub fn basic(user: &str, password: &str) -> String {
    use base64::Engine;
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"))
    )
}

// ----------------------------------------------------------------------------- PostgreSQL

/// The throwaway PostgreSQL server `.ci/run` starts, as an admin URL (trust auth).
/// An `LD_PRELOAD` library that shifts this process's wall clock (`CLOCK_REALTIME`, which
/// is what `SystemTime::now` reads) by `INBOX_SLA_TEST_SKEW_SECONDS`, and leaves the
/// monotonic clock alone: one node of an HA group whose clock is wrong by minutes, as
/// `faketime` would make it, with nothing in the product that knows. Built once per test
/// run with the C compiler; `None`, after a loud skip, when there is none.
pub fn clock_skew_library(test: &str) -> Option<PathBuf> {
    static BUILT: std::sync::OnceLock<Option<PathBuf>> = std::sync::OnceLock::new();
    let built = BUILT.get_or_init(|| {
        let dir = std::env::temp_dir().join(format!("inbox-sla-skew-{}", std::process::id()));
        std::fs::create_dir_all(&dir).ok()?;
        let source = dir.join("skew.c");
        std::fs::write(
            &source,
            r#"#define _GNU_SOURCE
#include <dlfcn.h>
#include <stdlib.h>
#include <time.h>
static int (*real_clock_gettime)(clockid_t, struct timespec *);
int clock_gettime(clockid_t id, struct timespec *ts) {
    if (!real_clock_gettime) real_clock_gettime = dlsym(RTLD_NEXT, "clock_gettime");
    int r = real_clock_gettime(id, ts);
    if (r == 0 && (id == CLOCK_REALTIME || id == CLOCK_REALTIME_COARSE)) {
        const char *skew = getenv("INBOX_SLA_TEST_SKEW_SECONDS");
        if (skew) ts->tv_sec += atol(skew);
    }
    return r;
}
"#,
        )
        .ok()?;
        let library = dir.join("libskew.so");
        let built = Command::new("cc")
            .args(["-shared", "-fPIC", "-O2", "-o"])
            .arg(&library)
            .arg(&source)
            .arg("-ldl")
            .status()
            .ok()?;
        built.success().then_some(library)
    });
    if built.is_none() {
        skip(
            &format!("{test}: no C compiler (cc) to build the clock-skew library"),
            true,
        );
    }
    built.clone()
}

/// The environment that runs a daemon with its wall clock `seconds` off.
pub fn skewed_clock(library: &Path, seconds: i64) -> Vec<(&'static str, String)> {
    vec![
        ("LD_PRELOAD", library.display().to_string()),
        ("INBOX_SLA_TEST_SKEW_SECONDS", seconds.to_string()),
    ]
}

pub const POSTGRES_ENV: &str = "INBOX_SLA_TEST_POSTGRES";

/// A fresh, empty database on the test server, as a URL carrying [`DB_PASSWORD`] (trust
/// auth ignores it; the tests check it never shows). `None`, after a loud skip, when no
/// server was handed over; under `CI=true` that is a failure.
pub fn postgres_db(test: &str) -> Option<String> {
    let Ok(admin) = std::env::var(POSTGRES_ENV) else {
        skip(
            &format!(
                "{test}: no PostgreSQL ({POSTGRES_ENV} is not set; `bash .ci/run` starts one)"
            ),
            true,
        );
        return None;
    };
    Some(create_database(&admin))
}

/// Creates a database on the server of `admin_url`; returns its URL with a password.
pub fn create_database(admin_url: &str) -> String {
    // Not from `fastrand`: the simulator seeds it, and a seed run twice on one server would
    // ask for the same name.
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64);
    let name = format!(
        "t_{}_{:x}_{}",
        std::process::id(),
        nanos,
        NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
    );
    rt().block_on(async {
        let (client, conn) = tokio_postgres::connect(admin_url, tokio_postgres::NoTls)
            .await
            .unwrap_or_else(|e| panic!("cannot reach the test PostgreSQL at {admin_url}: {e}"));
        tokio::spawn(conn);
        client
            .batch_execute(&format!("CREATE DATABASE {name}"))
            .await
            .unwrap();
    });
    let mut url = url::Url::parse(admin_url).unwrap();
    url.set_path(&format!("/{name}"));
    let _ = url.set_password(Some(DB_PASSWORD));
    url.to_string()
}

/// A private PostgreSQL cluster a test can stop and start (Debian's binaries, as the
/// `postgres` user when run as root). `None`, after a loud skip, without the binaries.
pub struct PgCluster {
    dir: tempfile::TempDir,
    bin: PathBuf,
    pub port: u16,
    child: Option<Child>,
}

impl PgCluster {
    pub fn start(test: &str) -> Option<PgCluster> {
        let bin = std::fs::read_dir("/usr/lib/postgresql").ok().and_then(|d| {
            d.flatten()
                .map(|e| e.path().join("bin"))
                .filter(|p| p.join("initdb").exists())
                .max()
        });
        let Some(bin) = bin else {
            skip(
                &format!("{test}: PostgreSQL's binaries are not installed"),
                std::env::var(POSTGRES_ENV).is_ok(),
            );
            return None;
        };
        let dir = tempfile::tempdir().unwrap();
        let root = is_root();
        if root {
            Command::new("chown")
                .args(["-R", "postgres:postgres"])
                .arg(dir.path())
                .status()
                .unwrap();
        }
        let status = as_postgres(root, &bin.join("initdb"))
            .args(["-D"])
            .arg(dir.path().join("data"))
            .args(["--auth=trust", "-U", "postgres"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .unwrap();
        assert!(status.success(), "initdb failed");
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let mut cluster = PgCluster {
            dir,
            bin,
            port,
            child: None,
        };
        cluster.resume();
        Some(cluster)
    }

    pub fn admin_url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }

    /// Starts the server (again), waiting until it accepts connections.
    pub fn resume(&mut self) {
        let child = as_postgres(is_root(), &self.bin.join("postgres"))
            .arg("-D")
            .arg(self.dir.path().join("data"))
            .args(["-p", &self.port.to_string(), "-k"])
            .arg(self.dir.path())
            .args([
                "-c",
                "listen_addresses=127.0.0.1",
                "-c",
                "fsync=off",
                "-c",
                "max_connections=100",
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        self.child = Some(child);
        let url = self.admin_url();
        assert!(
            wait_for(PATIENCE, || rt().block_on(async {
                tokio_postgres::connect(&url, tokio_postgres::NoTls)
                    .await
                    .is_ok()
            })),
            "the private PostgreSQL did not start"
        );
    }

    /// Stops the server ("fast" shutdown: every connection is cut at once).
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = Command::new("kill")
                .args(["-INT", &c.id().to_string()])
                .status();
            let deadline = Instant::now() + PATIENCE;
            while Instant::now() < deadline && c.try_wait().ok().flatten().is_none() {
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for PgCluster {
    fn drop(&mut self) {
        self.stop();
    }
}

/// `program` as the `postgres` user when root (PostgreSQL refuses to run as root).
/// setpriv execs in place, so the child is the server itself and signals reach it.
fn as_postgres(root: bool, program: &Path) -> Command {
    if root {
        let mut c = Command::new("setpriv");
        c.args([
            "--reuid=postgres",
            "--regid=postgres",
            "--init-groups",
            "--",
        ])
        .arg(program);
        c
    } else {
        Command::new(program)
    }
}

// ----------------------------------------------------------------------------- what arrived

/// Every (chat, episode start, tier) of the firings the receiver accepted, counted once
/// per distinct document; every resolved (chat, episode start); and how many documents
/// arrived more than once (resends after a crash).
pub struct Seen {
    pub firings: HashMap<(String, i64, u64), usize>,
    pub resolved: HashMap<(String, i64), usize>,
    pub repeats: usize,
}

pub fn seen(accepted: &[Value]) -> Seen {
    let mut docs: Vec<&Value> = Vec::new();
    let mut repeats = 0;
    for doc in accepted {
        if docs.contains(&doc) {
            repeats += 1;
        } else {
            docs.push(doc);
        }
    }
    let mut firings = HashMap::new();
    let mut resolved = HashMap::new();
    for doc in docs {
        for c in doc["chats"].as_array().unwrap() {
            let id = c["id"].as_str().unwrap().to_string();
            let since = c["waiting_since"].as_i64().unwrap();
            match doc["status"].as_str().unwrap() {
                "firing" => {
                    let after = doc["tier"]["after_seconds"].as_u64().unwrap();
                    *firings.entry((id, since, after)).or_insert(0) += 1;
                }
                "resolved" => *resolved.entry((id, since)).or_insert(0) += 1,
                other => panic!("unexpected {other} document: {doc}"),
            }
        }
    }
    Seen {
        firings,
        resolved,
        repeats,
    }
}
