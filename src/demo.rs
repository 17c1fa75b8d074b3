//! `inbox-sla demo`: the product's story in a dozen seconds, with no account and no config.
//!
//! A simulated Wawp inbox runs on loopback (a real HTTP server in this process); the daemon's
//! own code polls it through a temporary store and prints alerts with the console channel.
//! Time is simulated: each step moves a virtual clock, so "two hours later" takes no time,
//! and the story is the same on every run.

use crate::clock::Clock;
use crate::commands::{CliError, say};
use crate::config::{Config, Instance};
use crate::cycle;
use crate::deliver;
use crate::notify::{self, Channels};
use crate::outbox::Outbox;
use crate::store::Store;
use crate::wawp::WawpClient;
use axum::{Json, Router, extract::State, routing::get};
use serde_json::{Value, json};
use std::path::Path;
use std::process::ExitCode;
use std::sync::{Arc, Mutex};

/// The simulated inbox: the overview it serves.
#[derive(Clone, Default)]
struct Inbox(Arc<Mutex<Vec<Value>>>);

impl Inbox {
    fn set(&self, chats: Vec<Value>) {
        *self.0.lock().unwrap_or_else(|p| p.into_inner()) = chats;
    }
}

async fn overview(State(inbox): State<Inbox>) -> Json<Value> {
    let chats = inbox.0.lock().unwrap_or_else(|p| p.into_inner()).clone();
    // Served the way the seed documents it: an object keyed "0", "1", …
    let keyed: serde_json::Map<String, Value> = chats
        .into_iter()
        .enumerate()
        .map(|(i, c)| (i.to_string(), c))
        .collect();
    Json(Value::Object(keyed))
}

/// The session is always linked in the demo.
async fn session() -> Json<Value> {
    Json(json!({"status": "WORKING"}))
}

/// A chat's messages: the demo keeps only each chat's last one, which is all its history.
async fn messages(
    State(inbox): State<Inbox>,
    axum::extract::Query(q): axum::extract::Query<std::collections::HashMap<String, String>>,
) -> Json<Value> {
    let chats = inbox.0.lock().unwrap_or_else(|p| p.into_inner()).clone();
    let chat_id = q.get("chatId").map(String::as_str).unwrap_or("");
    let history: Vec<Value> = chats
        .iter()
        .filter(|c| c["id"] == chat_id)
        .map(|c| c["lastMessage"].clone())
        .collect();
    Json(Value::Array(history))
}

fn chat(id: &str, name: &str, unread: i64, body: &str, ts: i64, from_me: bool) -> Value {
    json!({
        "id": id, "name": name, "unreadCount": unread,
        "lastMessage": {"id": format!("MSG{ts}"), "body": body, "timestamp": ts, "fromMe": from_me, "hasMedia": false}
    })
}

pub async fn run() -> Result<ExitCode, CliError> {
    let dir = tempfile::tempdir()
        .map_err(|e| CliError::Runtime(format!("cannot create a temporary directory: {e}")))?;
    let inbox = Inbox::default();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .map_err(|e| CliError::Runtime(format!("cannot listen on loopback: {e}")))?;
    let addr = listener
        .local_addr()
        .map_err(|e| CliError::Runtime(format!("cannot read the loopback address: {e}")))?;
    let app = Router::new()
        .route("/v2/chats/overview", get(overview))
        .route("/v2/session/info", axum::routing::post(session))
        .route("/v2/chats/messages", get(messages))
        .with_state(inbox.clone());
    let server = tokio::spawn(async move { axum::serve(listener, app).await });

    let state = dir.path().join("state.db");
    let config = Arc::new(demo_config(&format!("http://{addr}"), &state)?);
    // Virtual time, starting at a round hour today.
    let start = Clock::System.now() / 3600 * 3600;
    let clock = Clock::manual(start * 1000);
    let store = Store::open(&config.store.location()).await?;
    let demo = Demo {
        client: WawpClient::new(&config.wawp)
            .map_err(|e| CliError::Runtime(format!("cannot build the HTTP client: {e}")))?,
        channels: notify::build(config.as_ref()).map_err(|e| CliError::Runtime(e.to_string()))?,
        instance: config.instances[0].clone(),
        outbox: Arc::new(Outbox::new(
            store.clone(),
            clock.clone(),
            config.delivery.retry_for,
            config.delivery.timeout,
        )),
        store,
        config,
        clock,
    };
    let hm = |t: i64| crate::alert::utc_time(t)[11..16].to_string();

    say!("inbox-sla demo: a simulated WhatsApp inbox on http://{addr}, SLA 2h, console channel.");
    say!("State lives in a temporary store: {}\n", state.display());

    let amina = "201001234567@c.us";
    let step = |title: String| say!("▸ {title}");

    // 1. A customer writes; an agent has answered somebody else.
    let t = start;
    let others = || {
        vec![
            chat(
                "201007654321@c.us",
                "Omar Farouk",
                0,
                "You're welcome, have a nice day!",
                start - 600,
                true,
            ),
            chat(
                "120363000000000001@g.us",
                "Warehouse team",
                0,
                "Truck leaves at 4",
                start - 900,
                false,
            ),
        ]
    };
    let with_others = |c: Value| {
        let mut all = vec![c];
        all.extend(others());
        all
    };
    inbox.set(with_others(chat(
        amina,
        "Amina Hassan",
        1,
        "Hi, my order #1042 hasn't arrived",
        t,
        false,
    )));
    step(format!(
        "{} Amina writes \"Hi, my order #1042 hasn't arrived\". Nobody reads it.",
        hm(t)
    ));
    demo.cycle_at(t).await?;

    // 2. She nudges: same episode, the clock is not reset.
    let t = start + 30 * 60;
    inbox.set(with_others(chat(
        amina,
        "Amina Hassan",
        2,
        "hello??",
        t,
        false,
    )));
    step(format!(
        "{} Amina nudges: \"hello??\" (2 unread). Same episode: her clock still runs from {}.",
        hm(t),
        hm(start)
    ));
    demo.cycle_at(t).await?;

    // 3. Two hours after her first message: escalated, once.
    let t = start + 2 * 3600 + 5 * 60;
    step(format!(
        "{} Two hours after her first message, the SLA is breached. On-call hears about it:",
        hm(t)
    ));
    demo.cycle_at(t).await?;

    let t = start + 2 * 3600 + 6 * 60;
    step(format!(
        "{} Next poll: still waiting, already escalated, so nothing is sent again.",
        hm(t)
    ));
    demo.cycle_at(t).await?;

    // 4. Somebody opens the chat: resolved.
    let t = start + 2 * 3600 + 20 * 60;
    inbox.set(with_others(chat(
        amina,
        "Amina Hassan",
        0,
        "hello??",
        start + 30 * 60,
        false,
    )));
    step(format!(
        "{} An agent opens Amina's chat (unread 0). On-call hears it is handled:",
        hm(t)
    ));
    demo.cycle_at(t).await?;

    let open = demo.store.all_episodes().await?.len();
    let sent = demo.store.outbox_counts().await?.sent;
    say!("Done: {open} open episodes, {sent} notifications delivered, none twice.");
    say!(
        "Next: write a config (see config.example.toml), then `inbox-sla check` and `inbox-sla once --dry-run`."
    );
    server.abort();
    Ok(ExitCode::SUCCESS)
}

/// The product's parts, wired as the daemon wires them, on a simulated inbox.
struct Demo {
    client: WawpClient,
    store: Store,
    config: Arc<Config>,
    instance: Instance,
    channels: Channels,
    outbox: Arc<Outbox>,
    clock: Clock,
}

impl Demo {
    /// One cycle and one delivery pass at virtual time `t`.
    async fn cycle_at(&self, t: i64) -> Result<(), CliError> {
        self.clock.set_ms(t * 1000);
        let summary = cycle::run(
            &self.client,
            &self.store,
            &self.config,
            &self.instance,
            t,
            None,
            &|| {},
        )
        .await
        .map_err(|e| CliError::Runtime(e.to_string()))?;
        let report = deliver::deliver_due(&self.outbox, &self.channels).await?;
        say!(
            "  poll: {} chats, {} waiting, {} breached; {} notification(s) sent\n",
            summary.chats,
            summary.waiting,
            summary.breached,
            report.sent
        );
        Ok(())
    }
}

fn demo_config(base_url: &str, store: &Path) -> Result<Config, CliError> {
    let text = format!(
        r#"
[wawp]
base_url = "{base_url}"
page_size = 0

[[instance]]
name = "support"
instance_id = "demo"
access_token = "demo-token"

[sla]
threshold = "2h"

[store]
path = "{}"

[[channel]]
name = "console"
type = "console"
"#,
        store.display()
    );
    Ok(Config::from_toml(&text, Path::new("(demo)"))?)
}
