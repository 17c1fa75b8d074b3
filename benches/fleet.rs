//! `cargo bench --bench fleet`: one daemon watching 1,000 instances (docs/spec.md section 9);
//! `-- --numbers 10000` for ten thousand, `-- --page-size 0` for whole overviews,
//! `-- --waiting-percent 3` for an inbox where 3 chats in 100 wait (the rest answered).
//!
//! A loopback Wawp serves 1,000 instances of 1,000 chats each, paged as the real API is
//! (the default `page_size = 100`: eleven requests a poll), every response 50 ms late like
//! a distant API. The release binary runs `run` with the default `poll_interval = "60s"`
//! and `wawp.max_concurrent = 16`. After a warm-up in which every instance is polled once
//! (and its episodes created), it is measured for two minutes: CPU time as a share of one
//! core (from /proc), resident memory (sampled each second, and the kernel's high-water
//! mark), the most requests the source ever had in flight at once, polls per second (the
//! mean against the busiest second), lateness (the longest gap between two polls of one
//! instance, and how many instances were not polled within an interval and a half), and
//! `/metrics`: its size and how long a scrape takes, scraped every 15 s as Prometheus
//! would. Nothing here asserts: it prints.
//!
//! `-- --changing-percent N`: at each poll, N instances in 100 answer an overview that
//! differs from their last one (the last chat, answered, has a new last message id: nothing
//! to page, nothing to write), so that it must be scanned again; by default every overview repeats byte for byte, and the
//! daemon compares it instead of scanning it (docs/spec.md section 9).
//!
//! `-- --settle N`: N more poll intervals of warm-up before measuring (the first cycles
//! of an inbox with many waiting chats read their history, 50 a cycle).
//!
//! `-- --quick`: a 20-second measurement, for trying the harness.

#[path = "common/overview.rs"]
mod synthetic;

use std::collections::{BTreeMap, HashSet};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const INSTANCES: usize = 1_000;
const CHATS: usize = 1_000;
/// Each response is this late, plus up to as much again (a distant API thinking).
const LATENCY: Duration = Duration::from_millis(50);
const POLL_SECONDS: u64 = 60;

#[derive(Default)]
struct Seen {
    in_flight: AtomicUsize,
    max_in_flight: AtomicUsize,
    /// Polls (first pages) started, by second since the source started.
    polls: Mutex<BTreeMap<u64, usize>>,
    instances: Mutex<HashSet<String>>,
    /// When each instance's polls started (seconds since the source started).
    times: Mutex<std::collections::HashMap<String, Vec<f64>>>,
    requests: AtomicUsize,
    /// Notifications the webhook channel delivered.
    hooks: AtomicUsize,
    /// Overviews answered changed (`--changing-percent`).
    changed: AtomicUsize,
}

struct InFlight<'a>(&'a Seen);

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::SeqCst);
    }
}

/// The overview's chats, one JSON text each, so a page is a slice joined. With
/// `waiting_percent`, only that share of every hundred chats waits (the rest were
/// answered); otherwise the synthetic inbox's own mix (30 % unread, 1 % breached).
fn chats(now: i64, waiting_percent: Option<usize>) -> Vec<String> {
    let body = synthetic::overview_body(CHATS, now);
    let mut all: Vec<serde_json::Value> = serde_json::from_slice(&body).unwrap();
    if let Some(p) = waiting_percent {
        for (i, c) in all.iter_mut().enumerate() {
            if i % 100 >= p {
                c["unreadCount"] = 0.into();
                c["lastMessage"]["fromMe"] = true.into();
                if c.get("_chat").is_some() {
                    c["_chat"]["unreadCount"] = 0.into();
                }
            }
        }
    }
    all.iter().map(|c| c.to_string()).collect()
}

fn serve(
    rt: &tokio::runtime::Runtime,
    seen: Arc<Seen>,
    chats: Arc<Vec<String>>,
    changing_percent: usize,
) -> String {
    use axum::extract::Query;
    use std::collections::HashMap;
    let started = Instant::now();
    let hooks = seen.clone();
    rt.block_on(async move {
        let overview = move |Query(q): Query<HashMap<String, String>>| {
            let (seen, chats) = (seen.clone(), chats.clone());
            async move {
                seen.requests.fetch_add(1, Ordering::Relaxed);
                let now = seen.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
                seen.max_in_flight.fetch_max(now, Ordering::SeqCst);
                let _guard = InFlight(&seen);
                let offset: usize = q.get("offset").and_then(|o| o.parse().ok()).unwrap_or(0);
                let limit: usize = q
                    .get("limit")
                    .and_then(|l| l.parse().ok())
                    .filter(|l| *l > 0)
                    .unwrap_or(CHATS);
                if offset == 0 {
                    let at = started.elapsed();
                    *seen.polls.lock().unwrap().entry(at.as_secs()).or_default() += 1;
                    if let Some(id) = q.get("instance_id") {
                        seen.instances.lock().unwrap().insert(id.clone());
                        seen.times
                            .lock()
                            .unwrap()
                            .entry(id.clone())
                            .or_default()
                            .push(at.as_secs_f64());
                    }
                }
                tokio::time::sleep(LATENCY + LATENCY.mul_f64(fastrand::f64())).await;
                let end = (offset + limit).min(chats.len());
                let page = chats.get(offset.min(chats.len())..end).unwrap_or_default();
                let mut body = format!("[{}]", page.join(","));
                // The last page, changed for this poll: its last chat (answered) has a new
                // last message id, so the bytes differ and nothing else does.
                if end == chats.len()
                    && !page.is_empty()
                    && fastrand::usize(0..100) < changing_percent
                {
                    let n = seen.changed.fetch_add(1, Ordering::Relaxed);
                    let last = &page[page.len() - 1];
                    let changed = last.replacen("3EB0", &format!("C{n:03X}"), 1);
                    body = format!(
                        "[{}]",
                        [&page[..page.len() - 1], &[changed]].concat().join(",")
                    );
                }
                ([("content-type", "application/json")], body)
            }
        };
        let app = axum::Router::new()
            .route("/v2/chats/overview", axum::routing::get(overview))
            .route(
                "/hook",
                axum::routing::post(move || async move {
                    hooks.hooks.fetch_add(1, Ordering::Relaxed);
                    "ok"
                }),
            );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await });
        format!("http://{addr}")
    })
}

fn config(
    base_url: &str,
    store: &std::path::Path,
    numbers: usize,
    page_size: u32,
    listen: &str,
) -> String {
    let mut text = format!(
        r#"[wawp]
base_url = "{base_url}"
page_size = {page_size}

[http]
listen = "{listen}"

[store]
path = "{}"

[[channel]]
name = "hook"
type = "webhook"
url = "{base_url}/hook"

[log]
level = "error"
"#,
        store.display()
    );
    for i in 0..numbers {
        text.push_str(&format!(
            "\n[[instance]]\nname = \"shop-{i:04}\"\ninstance_id = \"{i}\"\naccess_token = \"token-{i}\"\n"
        ));
    }
    text
}

/// utime + stime of a process, in clock ticks.
fn cpu_ticks(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command name (which may hold spaces) start after the last ')'.
    let rest = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    Some(fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?)
}

/// A `kB` field of /proc/<pid>/status.
fn status_kb(pid: u32, field: &str) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find(|l| l.starts_with(field))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

fn clock_ticks_per_second() -> u64 {
    std::process::Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(100)
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.iter().any(|a| a == "--list") {
        return;
    }
    let measure = if args.iter().any(|a| a == "--quick") {
        Duration::from_secs(20)
    } else {
        Duration::from_secs(120)
    };
    let option = |name: &str| {
        args.iter()
            .position(|a| a == name)
            .and_then(|i| args.get(i + 1))
            .and_then(|v| v.parse::<usize>().ok())
    };
    let numbers = option("--numbers").unwrap_or(INSTANCES);
    let page_size = option("--page-size").unwrap_or(100) as u32;
    let waiting = option("--waiting-percent");
    let changing = option("--changing-percent").unwrap_or(0).min(100);
    let rt = tokio::runtime::Runtime::new().unwrap();
    let seen = Arc::new(Seen::default());
    let chats = Arc::new(chats(chrono::Utc::now().timestamp(), waiting));
    let url = serve(&rt, seen.clone(), chats, changing);
    let dir = tempfile::tempdir().unwrap();
    let config_path = dir.path().join("fleet.toml");
    let listen = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().to_string()
    };
    std::fs::write(
        &config_path,
        config(
            &url,
            &dir.path().join("state.db"),
            numbers,
            page_size,
            &listen,
        ),
    )
    .unwrap();
    // INBOX_SLA_BIN: another build of the binary (`cargo build --profile profiling`, for perf).
    let bin =
        std::env::var_os("INBOX_SLA_BIN").unwrap_or_else(|| env!("CARGO_BIN_EXE_inbox-sla").into());
    let mut daemon = std::process::Command::new(bin)
        .args(["--config", config_path.to_str().unwrap(), "run"])
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let pid = daemon.id();
    println!(
        "inbox-sla fleet benchmark: {numbers} instances x {CHATS} chats, page_size {page_size}, \
         {}-{} ms a response, poll_interval {POLL_SECONDS}s, max_concurrent 16, \
         {changing} in 100 overviews changed at each poll",
        LATENCY.as_millis(),
        2 * LATENCY.as_millis()
    );
    // Warm-up: every instance polled once (the first interval), then a little more.
    let start = Instant::now();
    while seen.instances.lock().unwrap().len() < numbers {
        if start.elapsed() > Duration::from_secs(600) {
            break;
        }
        std::thread::sleep(Duration::from_millis(500));
    }
    let warmup = start.elapsed();
    // The first polls page for every breached chat: wait until that backlog is delivered
    // (no notification for 5 s), and one more interval so the polls keep their schedule
    // (the first interval's are late), then measure the steady state.
    let mut last = (seen.hooks.load(Ordering::Relaxed), Instant::now());
    while last.1.elapsed() < Duration::from_secs(5) && start.elapsed() < Duration::from_secs(900) {
        std::thread::sleep(Duration::from_millis(500));
        let now = seen.hooks.load(Ordering::Relaxed);
        if now != last.0 {
            last = (now, Instant::now());
        }
    }
    println!(
        "delivered the first polls' {} notifications after {:.0} s",
        last.0,
        start.elapsed().as_secs_f64()
    );
    // `--settle N`: N more intervals before measuring. The first cycles of an inbox read
    // the history of its waiting chats (at most `wawp.history_lookups` = 50 a cycle; this
    // engine answers 404), so a mix with many waiting chats reaches its steady state
    // only after a few intervals.
    let settle = option("--settle").unwrap_or(0) as u64;
    std::thread::sleep(Duration::from_secs(POLL_SECONDS * (1 + settle)));
    let polled_in_warmup = seen.instances.lock().unwrap().len();
    println!(
        "warm-up: {polled_in_warmup} instances polled in {:.0} s",
        warmup.as_secs_f64()
    );

    let hz = clock_ticks_per_second();
    let (t0, cpu0) = (Instant::now(), cpu_ticks(pid).unwrap_or(0));
    let first_second = seen
        .polls
        .lock()
        .unwrap()
        .keys()
        .last()
        .copied()
        .unwrap_or(0)
        + 1;
    let requests0 = seen.requests.load(Ordering::Relaxed);
    let changed0 = seen.changed.load(Ordering::Relaxed);
    seen.max_in_flight.store(0, Ordering::SeqCst);
    let mut rss_max = 0;
    let mut scrapes: Vec<(usize, Duration)> = Vec::new();
    let mut last_scrape = String::new();
    let metrics_url = format!("http://{listen}/metrics");
    let scraper = reqwest::Client::new();
    let mut next_scrape = Instant::now();
    while t0.elapsed() < measure {
        std::thread::sleep(Duration::from_secs(1));
        rss_max = rss_max.max(status_kb(pid, "VmRSS:").unwrap_or(0));
        if Instant::now() >= next_scrape {
            next_scrape += Duration::from_secs(15);
            let asked = Instant::now();
            let got = rt.block_on(async {
                scraper
                    .get(&metrics_url)
                    .send()
                    .await?
                    .error_for_status()?
                    .bytes()
                    .await
            });
            if let Ok(body) = got {
                scrapes.push((body.len(), asked.elapsed()));
                last_scrape = String::from_utf8_lossy(&body).into_owned();
            }
        }
    }
    let wall = t0.elapsed().as_secs_f64();
    let cpu = cpu_ticks(pid).unwrap_or(0).saturating_sub(cpu0) as f64 / hz as f64;
    // Lateness over the measured window: the longest gap between two polls of one
    // instance, and the instances left unpolled for over 1.5 intervals.
    let (from, to) = (
        first_second as f64,
        first_second as f64 + measure.as_secs_f64(),
    );
    let mut longest_gap: f64 = 0.0;
    let mut late = 0;
    for times in seen.times.lock().unwrap().values() {
        let mut last = from;
        let mut worst: f64 = 0.0;
        for t in times.iter().copied().filter(|t| *t >= from && *t <= to) {
            worst = worst.max(t - last);
            last = t;
        }
        worst = worst.max(to - last);
        // A gap at an edge of the window is not yet a gap between polls: only count what
        // exceeds an interval and a half.
        longest_gap = longest_gap.max(worst);
        if worst > 1.5 * POLL_SECONDS as f64 {
            late += 1;
        }
    }
    let hwm = status_kb(pid, "VmHWM:").unwrap_or(0);
    let polls = seen.polls.lock().unwrap().clone();
    let window: Vec<usize> = (first_second..first_second + measure.as_secs() - 1)
        .map(|s| polls.get(&s).copied().unwrap_or(0))
        .collect();
    let total: usize = window.iter().sum();
    let requests = seen.requests.load(Ordering::Relaxed) - requests0;
    let changed = seen.changed.load(Ordering::Relaxed) - changed0;
    let _ = daemon.kill();
    let _ = daemon.wait();

    println!("\nmeasured for {wall:.0} s after warm-up:");
    println!(
        "  CPU                    {:>6.1} % of one core   (target: at most 10 %)",
        100.0 * cpu / wall
    );
    println!(
        "  resident memory        {:>6.1} MB (max sampled), {:.1} MB high-water mark since start   (target: 200 MB for 1,000, 250 MB for 10,000)",
        rss_max as f64 / 1000.0,
        hwm as f64 / 1000.0
    );
    println!(
        "  requests in flight     {:>6} at most (max_concurrent = 16 polls)",
        seen.max_in_flight.load(Ordering::SeqCst)
    );
    let mean = total as f64 / window.len().max(1) as f64;
    let busiest = window.iter().max().copied().unwrap_or(0);
    println!(
        "  polls per second       {mean:>6.1} mean, {busiest} in the busiest second, spread {:.2}   ({} polls, {} requests)",
        busiest as f64 / mean.max(f64::MIN_POSITIVE),
        total,
        requests
    );
    println!(
        "  lateness               {late} of {numbers} instances went over {} s without a poll; longest gap {longest_gap:.1} s",
        POLL_SECONDS * 3 / 2
    );
    let cpu_per_poll = cpu * 1000.0 / total.max(1) as f64;
    println!("  CPU per poll           {cpu_per_poll:>6.2} ms");
    println!(
        "  overviews changed      {changed:>6} of {total} polls ({:.0} %)",
        100.0 * changed as f64 / total.max(1) as f64
    );
    if let Some(unchanged) = last_scrape
        .lines()
        .find(|l| l.starts_with("inbox_sla_overviews_unchanged_total"))
        .and_then(|l| l.split_whitespace().last())
        .and_then(|v| v.parse::<f64>().ok())
    {
        println!(
            "  compared, not scanned  {unchanged:>6.0} polls since start (overviews that repeated one that changed nothing)"
        );
    }
    if let Some((size, _)) = scrapes.last() {
        let slowest = scrapes.iter().map(|(_, d)| *d).max().unwrap_or_default();
        println!(
            "  /metrics               {:>6.2} MB a scrape, slowest of {} scrapes {:.0} ms   (target <= 2 MB, <= 100 ms)",
            *size as f64 / 1e6,
            scrapes.len(),
            slowest.as_secs_f64() * 1000.0
        );
    }
}
