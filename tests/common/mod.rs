//! The shared integration-test harness: real loopback servers and the real binary.
//!
//! - [`FakeWawp`]: a Wawp-shaped HTTP server serving overviews (array or keyed object,
//!   paging honoured or ignored), error statuses, raw bodies or a hang.
//! - [`Receiver`]: a Slack/webhook receiver that records every POST and answers from a
//!   script (500, 429 with Retry-After, 404, a hang, then 200 "ok").
//! - [`Smtp`]: a real SMTP server (mailin-embedded) collecting messages, optionally with
//!   STARTTLS on a certificate made for the test, and LOGIN/PLAIN auth.
//! - [`Env`]: a temporary directory, a config writer and `run()` for the binary, which
//!   checks every output for the test's secrets.
#![allow(dead_code)]

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde_json::{Value, json};
use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

/// Secrets every test config uses; no output may ever contain them.
pub const TOKEN: &str = "tok-3f9a7c1e55d2";
pub const HOOK_SECRET: &str = "hooksecret-88aa71";
pub const SMTP_PASSWORD: &str = "smtp-pw-44d1e09";
pub const HEADER_SECRET: &str = "hdr-bearer-6b0c2a";

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

/// A chat as Wawp sends it.
pub fn chat(id: &str, name: &str, unread: i64, body: &str, ts: i64) -> Value {
    json!({
        "id": id, "name": name, "unreadCount": unread,
        "lastMessage": {"id": format!("M-{id}-{ts}"), "body": body, "timestamp": ts, "fromMe": false, "hasMedia": false}
    })
}

/// Amina, waiting 3 hours: past a 2h SLA.
pub fn breached_chat() -> Value {
    chat("201001234567@c.us", "Amina", 1, "hi", now() - 3 * 3600)
}

/// A `[[channel]]` table for a Slack webhook named "oncall".
pub fn slack_channel(url: &str) -> String {
    format!("[[channel]]\nname = \"oncall\"\ntype = \"slack\"\nwebhook_url = \"{url}\"\n")
}

#[derive(Clone)]
pub enum Reply {
    Chats(Vec<Value>),
    Status(u16, String),
    Raw(Vec<u8>),
    Hang,
}

struct WawpState {
    reply: Reply,
    /// Serve `{"0": …}` objects instead of arrays.
    keyed: bool,
    /// Apply limit/offset; `false` is an API that ignores paging.
    paging: bool,
    queries: Vec<HashMap<String, String>>,
}

#[derive(Clone)]
pub struct FakeWawp {
    pub url: String,
    state: Arc<Mutex<WawpState>>,
}

impl FakeWawp {
    pub fn start() -> FakeWawp {
        let state = Arc::new(Mutex::new(WawpState {
            reply: Reply::Chats(vec![]),
            keyed: false,
            paging: true,
            queries: vec![],
        }));
        let app = Router::new()
            .route("/v2/chats/overview", get(wawp_overview))
            .with_state(state.clone());
        let addr = serve(app);
        FakeWawp {
            url: format!("http://{addr}"),
            state,
        }
    }

    pub fn set(&self, reply: Reply) {
        self.state.lock().unwrap().reply = reply;
    }

    pub fn chats(&self, chats: Vec<Value>) {
        self.set(Reply::Chats(chats));
    }

    pub fn keyed(&self, keyed: bool) {
        self.state.lock().unwrap().keyed = keyed;
    }

    pub fn honour_paging(&self, paging: bool) {
        self.state.lock().unwrap().paging = paging;
    }

    pub fn queries(&self) -> Vec<HashMap<String, String>> {
        self.state.lock().unwrap().queries.clone()
    }
}

async fn wawp_overview(
    State(state): State<Arc<Mutex<WawpState>>>,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    let (reply, keyed, paging) = {
        let mut s = state.lock().unwrap();
        s.queries.push(q.clone());
        (s.reply.clone(), s.keyed, s.paging)
    };
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

/// What a receiver answers to one POST.
#[derive(Clone, Debug)]
pub enum Answer {
    Ok,
    Status(u16),
    RetryAfter(u64),
    /// This status, with a body that echoes the request path (as some servers do).
    Echo(u16),
    Hang,
}

#[derive(Default)]
struct ReceiverState {
    script: VecDeque<Answer>,
    /// Every POST: headers and body, whatever the answer.
    posts: Vec<(HeaderMap, Value)>,
    /// Only the POSTs answered 200.
    accepted: Vec<Value>,
    /// When each POST arrived.
    times: Vec<std::time::Instant>,
}

/// A Slack incoming-webhook or generic webhook receiver.
#[derive(Clone)]
pub struct Receiver {
    pub url: String,
    state: Arc<Mutex<ReceiverState>>,
}

impl Receiver {
    pub fn start() -> Receiver {
        let state: Arc<Mutex<ReceiverState>> = Arc::default();
        let app = Router::new()
            .route("/hook/{secret}", post(receive))
            .with_state(state.clone());
        let addr = serve(app);
        Receiver {
            url: format!("http://{addr}/hook/{HOOK_SECRET}"),
            state,
        }
    }

    /// Answers for the next POSTs, in order; afterwards every POST gets 200 "ok".
    pub fn script(&self, answers: &[Answer]) {
        self.state.lock().unwrap().script = answers.iter().cloned().collect();
    }

    pub fn posts(&self) -> Vec<(HeaderMap, Value)> {
        self.state.lock().unwrap().posts.clone()
    }

    pub fn accepted(&self) -> Vec<Value> {
        self.state.lock().unwrap().accepted.clone()
    }

    pub fn arrival_times(&self) -> Vec<std::time::Instant> {
        self.state.lock().unwrap().times.clone()
    }
}

async fn receive(
    State(state): State<Arc<Mutex<ReceiverState>>>,
    uri: axum::http::Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let value: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let answer = {
        let mut s = state.lock().unwrap();
        s.posts.push((headers, value.clone()));
        s.times.push(std::time::Instant::now());
        let answer = s.script.pop_front().unwrap_or(Answer::Ok);
        if matches!(answer, Answer::Ok) {
            s.accepted.push(value);
        }
        answer
    };
    match answer {
        Answer::Ok => (StatusCode::OK, "ok").into_response(),
        Answer::Status(code) => (StatusCode::from_u16(code).unwrap(), "no_service").into_response(),
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
        Answer::Hang => {
            tokio::time::sleep(Duration::from_secs(3600)).await;
            StatusCode::OK.into_response()
        }
    }
}

/// A message the SMTP server received.
#[derive(Clone, Debug, Default)]
pub struct Mail {
    pub from: String,
    pub to: Vec<String>,
    pub data: String,
    /// The user that authenticated, if any.
    pub user: Option<String>,
}

#[derive(Clone, Default)]
struct SmtpHandler {
    mails: Arc<Mutex<Vec<Mail>>>,
    current: Mail,
    /// Answer data_end with 451 this many more times (a refusing server).
    refuse: Arc<Mutex<u32>>,
}

impl mailin_embedded::Handler for SmtpHandler {
    fn data_start(
        &mut self,
        _domain: &str,
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

/// A test's directory, config and binary.
pub struct Env {
    pub dir: tempfile::TempDir,
    pub config: PathBuf,
}

impl Env {
    /// A config polling `wawp` with `sections` appended (channels, sla, …).
    pub fn new(wawp: &FakeWawp, sections: &str) -> Env {
        Env::with_wawp(wawp, "", sections)
    }

    /// Like [`Env::new`], with extra keys for the `[wawp]` table.
    pub fn with_wawp(wawp: &FakeWawp, wawp_keys: &str, sections: &str) -> Env {
        let dir = tempfile::tempdir().unwrap();
        let config = dir.path().join("config.toml");
        let env = Env { dir, config };
        env.write(wawp, wawp_keys, sections);
        env
    }

    pub fn write(&self, wawp: &FakeWawp, wawp_keys: &str, sections: &str) {
        let text = format!(
            r#"[wawp]
base_url = "{}"
request_timeout = "5s"
{wawp_keys}

[[instance]]
name = "support"
instance_id = "12345"
access_token = "{TOKEN}"

[store]
path = "{}"

{sections}
"#,
            wawp.url,
            self.store().display()
        );
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
            .env_remove("INBOX_SLA_CONFIG");
        cmd
    }

    /// Runs the binary to completion and checks that no secret reached its output.
    pub fn run(&self, args: &[&str]) -> Run {
        let output = self.command(args).output().expect("run inbox-sla");
        Run::from(output)
    }
}

pub const CONSOLE: &str = "[[channel]]\nname = \"console\"\ntype = \"console\"\n";

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
    for secret in [TOKEN, HOOK_SECRET, SMTP_PASSWORD, HEADER_SECRET] {
        assert!(
            !text.contains(secret),
            "secret {secret} leaked into output:\n{text}"
        );
    }
}

/// Polls `cond` every 20ms until it holds or `timeout` passes.
pub fn wait_for(timeout: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let deadline = std::time::Instant::now() + timeout;
    while std::time::Instant::now() < deadline {
        if cond() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    cond()
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
