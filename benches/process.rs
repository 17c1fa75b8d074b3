//! `cargo bench --bench process`: the whole `inbox-sla once` process against a floor.
//!
//! docs/spec.md section 9 measures what a user runs: the release binary as a process, start
//! to exit, over a 100,000-chat overview served whole on loopback (`page_size = 0`), warm
//! (nothing changed since the last cycle) and cold (an empty store: every waiting chat
//! becomes an episode), against a floor: a minimal program that fetches the same body over
//! HTTP/1.0 and parses the fields a decision needs with borrowed strings. The floor lives
//! here: this binary runs itself with `--floor URL`, so both are whole processes built
//! with the same profile. Medians of runs taken in turn; peak memory by the kernel's
//! high-water mark (GNU time's %M). Nothing here asserts: it prints.

#[path = "common/overview.rs"]
mod synthetic;

use serde::Deserialize;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

const CHATS: usize = 100_000;
const RUNS: usize = 7;

/// The floor's whole job: fetch, parse the decision fields borrowed, count the waiting.
fn floor(url: &str) {
    #[derive(Deserialize)]
    struct Message {
        timestamp: Option<i64>,
        #[serde(rename = "fromMe")]
        from_me: Option<bool>,
    }
    #[derive(Deserialize)]
    struct Chat<'a> {
        #[serde(borrow)]
        id: &'a str,
        #[serde(rename = "unreadCount")]
        unread: Option<i64>,
        #[serde(rename = "lastMessage")]
        last: Option<Message>,
    }
    let addr = url.trim_start_matches("http://").split('/').next().unwrap();
    let mut s = TcpStream::connect(addr).unwrap();
    write!(
        s,
        "GET /v2/chats/overview?instance_id=1&access_token=x HTTP/1.0\r\nHost: {addr}\r\n\r\n"
    )
    .unwrap();
    let mut response = Vec::new();
    s.read_to_end(&mut response).unwrap();
    let at = response.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4;
    let chats: Vec<Chat> = serde_json::from_slice(&response[at..]).unwrap();
    let waiting = chats
        .iter()
        .filter(|c| {
            c.unread.unwrap_or(0) > 0
                || c.last
                    .as_ref()
                    .is_some_and(|m| m.from_me == Some(false) && m.timestamp.is_some())
        })
        .filter(|c| !c.id.is_empty())
        .count();
    println!("{waiting}");
}

/// The engine on loopback, HTTP/1.1, one response per connection: the overview, a working
/// session, and each chat's recent messages (what a cold cycle asks of the chats whose
/// start the overview cannot tell); anything else is a 404.
fn serve(body: Arc<Vec<u8>>, now: i64) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            let body = body.clone();
            std::thread::spawn(move || {
                let mut s = stream;
                let mut buf = [0u8; 4096];
                let mut seen = Vec::new();
                while !seen.windows(4).any(|w| w == b"\r\n\r\n") {
                    match s.read(&mut buf) {
                        Ok(0) | Err(_) => return,
                        Ok(n) => seen.extend_from_slice(&buf[..n]),
                    }
                }
                let line = String::from_utf8_lossy(&seen);
                let target = line.split_whitespace().nth(1).unwrap_or("/");
                let url = url::Url::parse(&format!("http://engine{target}")).unwrap();
                let query = |k: &str| {
                    url.query_pairs()
                        .find(|(key, _)| key == k)
                        .map(|(_, v)| v.into_owned())
                };
                let small;
                let (status, answer): (&str, &[u8]) = match url.path() {
                    "/v2/chats/overview" => ("200 OK", &body),
                    "/v2/session/info" => ("200 OK", synthetic::SESSION_WORKING.as_bytes()),
                    "/v2/chats/messages" => {
                        let limit = query("limit").and_then(|l| l.parse().ok()).unwrap_or(10);
                        let chat = query("chatId").unwrap_or_default();
                        small = synthetic::messages_body(&chat, limit, now);
                        ("200 OK", small.as_bytes())
                    }
                    _ => ("404 Not Found", b"{\"error\":\"not found\"}"),
                };
                let head = format!(
                    "HTTP/1.1 {status}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                    answer.len()
                );
                let _ = s.write_all(head.as_bytes());
                let _ = s.write_all(answer);
            });
        }
    });
    format!("http://{addr}")
}

fn config(base_url: &str, store: &Path) -> String {
    synthetic::config(base_url, store, "\n[log]\nlevel = \"error\"\n")
}

/// Runs a command to completion: (wall time, peak RSS in kB when GNU time is here).
fn timed(program: &Path, args: &[&str]) -> (Duration, Option<u64>) {
    let gnu_time = Path::new("/usr/bin/time").exists();
    let mut cmd = if gnu_time {
        let mut c = Command::new("/usr/bin/time");
        c.args(["-f", "%M"]).arg(program);
        c
    } else {
        Command::new(program)
    };
    cmd.args(args).stdout(Stdio::null()).stderr(Stdio::piped());
    let t = Instant::now();
    let out = cmd.output().unwrap();
    let took = t.elapsed();
    let rss = gnu_time
        .then(|| {
            String::from_utf8_lossy(&out.stderr)
                .lines()
                .last()?
                .trim()
                .parse()
                .ok()
        })
        .flatten();
    (took, rss)
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn ms(d: Duration) -> String {
    format!("{:.1} ms", d.as_secs_f64() * 1e3)
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if let Some(i) = args.iter().position(|a| a == "--floor") {
        floor(&args[i + 1]);
        return;
    }
    if args.iter().any(|a| a == "--list") {
        return; // `cargo bench -- --list`: nothing to list
    }
    let now = chrono::Utc::now().timestamp();
    let body = Arc::new(synthetic::overview_body(CHATS, now));
    let size = body.len();
    let url = serve(body, now);
    if args.iter().any(|a| a == "--serve") {
        // For profiling by hand: serve the overview until killed.
        println!("serving the {CHATS}-chat overview on {url}; a config for it:\n");
        println!("{}", config(&url, Path::new("/tmp/inbox-sla-profile.db")));
        loop {
            std::thread::park();
        }
    }
    let me = std::env::current_exe().unwrap();
    let bin = Path::new(env!("CARGO_BIN_EXE_inbox-sla"));
    let dir = tempfile::tempdir().unwrap();
    let warm_config = dir.path().join("warm.toml");
    std::fs::write(&warm_config, config(&url, &dir.path().join("warm.db"))).unwrap();
    let cold_store = dir.path().join("cold.db");
    let cold_config = dir.path().join("cold.toml");
    std::fs::write(&cold_config, config(&url, &cold_store)).unwrap();
    let once = |c: &Path| timed(bin, &["--config", c.to_str().unwrap(), "once"]);
    // Warm-up: the warm store gets its episodes and reads all their histories at once (a
    // daemon reads `wawp.history_lookups` = 50 a cycle, so a new 100,000-chat inbox takes
    // hours to settle), the page cache its files.
    let settle_config = dir.path().join("settle.toml");
    std::fs::write(
        &settle_config,
        config(&url, &dir.path().join("warm.db")).replacen(
            "[wawp]\n",
            "[wawp]\nhistory_lookups = 1000000\n",
            1,
        ),
    )
    .unwrap();
    once(&settle_config);
    once(&warm_config);
    once(&warm_config);
    timed(&me, &["--floor", &url]);

    let (mut floors, mut warms, mut colds) = (Vec::new(), Vec::new(), Vec::new());
    let (mut rss_warm, mut rss_cold, mut rss_floor) = (0, 0, 0);
    for _ in 0..RUNS {
        let (t, rss) = timed(&me, &["--floor", &url]);
        floors.push(t);
        rss_floor = rss_floor.max(rss.unwrap_or(0));
        let (t, rss) = once(&warm_config);
        warms.push(t);
        rss_warm = rss_warm.max(rss.unwrap_or(0));
        for suffix in ["", "-wal", "-shm"] {
            let _ = std::fs::remove_file(format!("{}{suffix}", cold_store.display()));
        }
        let (t, rss) = once(&cold_config);
        colds.push(t);
        rss_cold = rss_cold.max(rss.unwrap_or(0));
    }
    let (floor_t, warm_t, cold_t) = (median(floors), median(warms), median(colds));
    let limit_kb = (2 * size as u64 + 30_000_000) / 1000;
    println!(
        "inbox-sla process benchmark: {CHATS} chats, {:.1} MB body, loopback, medians of {RUNS}\n",
        size as f64 / 1e6
    );
    println!(
        "{:<44} {:>10} {:>8} {:>12}",
        "", "time", "ratio", "peak RSS"
    );
    println!(
        "{:<44} {:>10} {:>8} {:>9} MB",
        "floor (fetch + borrowed parse, a process)",
        ms(floor_t),
        "1.00",
        rss_floor / 1000
    );
    println!(
        "{:<44} {:>10} {:>8.2} {:>9} MB   (target ≤ 1.5)",
        "inbox-sla once, warm (nothing changed)",
        ms(warm_t),
        warm_t.as_secs_f64() / floor_t.as_secs_f64(),
        rss_warm / 1000
    );
    println!(
        "{:<44} {:>10} {:>8.2} {:>9} MB   (target ≤ 2.0)",
        "inbox-sla once, cold (empty store)",
        ms(cold_t),
        cold_t.as_secs_f64() / floor_t.as_secs_f64(),
        rss_cold / 1000
    );
    println!(
        "\npeak memory limit: 2 × body + 30 MB = {} MB",
        limit_kb / 1000
    );
}
