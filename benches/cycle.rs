//! `cargo bench`: the figures of docs/spec.md section 9, measured on loopback.
//!
//! For synthetic overviews of 1,000, 10,000 and 100,000 chats (about 30% unread, 1%
//! breached, groups, media, `@lid` ids, long names, non-Latin text) served over real HTTP:
//! - the baseline: fetching and parsing the body alone (the physical floor of a cycle);
//! - one full cycle (fetch, parse, evaluate, store, enqueue) on an empty store, then on a
//!   warm store where nothing changed, and rows written by the unchanged cycle;
//! - peak resident memory of the real binary running `once`, cold and warm;
//! - idle resident memory of `run` between polls;
//! - 2,000 chats waiting since 1970, with and without business hours: what a cycle costs
//!   when every age is a 56-year span of the calendar.
//!
//! Times are the best of a few runs. Nothing here asserts: it prints.

use inbox_sla::config::Config;
use inbox_sla::cycle;
use inbox_sla::overview;
use inbox_sla::store::{Location, Store};
use inbox_sla::wawp::WawpClient;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

#[path = "common/overview.rs"]
mod synthetic;
use synthetic::overview_body;

fn serve(rt: &tokio::runtime::Runtime, body: Arc<Vec<u8>>) -> String {
    rt.block_on(async move {
        let app = axum::Router::new().route(
            "/v2/chats/overview",
            axum::routing::get(move || {
                let body = body.clone();
                async move {
                    (
                        [("content-type", "application/json")],
                        axum::body::Bytes::from(body.as_ref().clone()),
                    )
                }
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await });
        format!("http://{addr}")
    })
}

fn config_text(base_url: &str, store: &Path, poll: &str) -> String {
    synthetic::config(
        base_url,
        store,
        &format!("\n[sla]\npoll_interval = \"{poll}\"\n"),
    )
}

fn best<T>(runs: usize, mut f: impl FnMut() -> (Duration, T)) -> (Duration, T) {
    let mut best: Option<(Duration, T)> = None;
    for _ in 0..runs {
        let r = f();
        if best.as_ref().is_none_or(|b| r.0 < b.0) {
            best = Some(r);
        }
    }
    best.unwrap()
}

/// Peak RSS (kB) of `inbox-sla once`, via GNU time; `None` where it is not installed.
fn peak_rss_kb(config: &Path) -> Option<u64> {
    let out = Command::new("/usr/bin/time")
        .args(["-f", "%M"])
        .arg(env!("CARGO_BIN_EXE_inbox-sla"))
        .arg("--config")
        .arg(config)
        .arg("once")
        .env("RUST_LOG", "error")
        .stdout(Stdio::null())
        .output()
        .ok()?;
    String::from_utf8_lossy(&out.stderr)
        .lines()
        .last()?
        .trim()
        .parse()
        .ok()
}

fn vm_rss_kb(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

fn mb(bytes: f64) -> String {
    format!("{:.1} MB", bytes / 1e6)
}

/// 2,000 chats whose customer wrote in 1970 (a marked-unread backlog), judged with and
/// without business hours: the calendar counts whole weeks arithmetically, so the two must
/// cost about the same. Cold: the first cycle, every age computed and every tier fired;
/// warm: the next cycles, 1h `repeat_after` keeping each chat due for a look.
fn ancient_waits(rt: &tokio::runtime::Runtime, now: i64) {
    const N: usize = 2_000;
    let mut body = String::from("[");
    for i in 0..N {
        if i > 0 {
            body.push(',');
        }
        let ts = 86_400 + i as i64 * 600;
        body.push_str(&format!(
            r#"{{"id":"2010{i:08}@c.us","name":"Backlog {i}","unreadCount":-1,"lastMessage":{{"id":"OLD{i}","body":"hello?","timestamp":{ts},"fromMe":false,"hasMedia":false}}}}"#
        ));
    }
    body.push(']');
    let url = serve(rt, Arc::new(body.into_bytes()));
    let hours = "\n[sla.business_hours]\ntimezone = \"Africa/Cairo\"\nmon = \"09:00-18:00\"\n\
                 tue = \"09:00-13:00,14:00-18:00\"\nwed = \"09:00-18:00\"\nthu = \"09:00-18:00\"\n\
                 sun = \"09:00-18:00\"\nholidays = [\"2026-12-25\", \"2027-01-07\"]\n";
    println!("\n{N} chats waiting since 1970 (cycle time, best of 3):");
    println!("{:<28} {:>10} {:>10}", "", "cold", "warm");
    let mut figures = Vec::new();
    for (label, extra) in [
        ("without business hours", ""),
        ("with business hours", hours),
    ] {
        let dir = tempfile::tempdir().unwrap();
        let config_path = dir.path().join("config.toml");
        let store_path = dir.path().join("state.db");
        let text = synthetic::config(
            &url,
            &store_path,
            &format!("\n[sla]\npoll_interval = \"60s\"\nrepeat_after = \"1h\"\n{extra}"),
        );
        std::fs::write(&config_path, text).unwrap();
        let config = Arc::new(Config::load(&config_path).unwrap());
        let client = WawpClient::new(&config.wawp).unwrap();
        let instance = config.instances[0].clone();
        let run = |store: &Store, at: i64| {
            let t = Instant::now();
            rt.block_on(cycle::run(
                &client,
                store,
                &config,
                &instance,
                at,
                None,
                &|| {},
            ))
            .unwrap();
            t.elapsed()
        };
        let (cold, _) = best(3, || {
            for suffix in ["", "-wal", "-shm"] {
                let _ = std::fs::remove_file(format!("{}{suffix}", store_path.display()));
            }
            let store = rt
                .block_on(Store::open(&Location::Sqlite(store_path.clone())))
                .unwrap();
            (run(&store, now), ())
        });
        let store = rt
            .block_on(Store::open(&Location::Sqlite(store_path.clone())))
            .unwrap();
        // Each warm cycle an hour later: every chat is due for its repeat and is judged.
        let mut at = now;
        let (warm, _) = best(3, || {
            at += 3_600;
            (run(&store, at), ())
        });
        println!(
            "{label:<28} {:>8.1}ms {:>8.1}ms",
            cold.as_secs_f64() * 1e3,
            warm.as_secs_f64() * 1e3
        );
        figures.push((cold, warm));
    }
    if let [(c0, w0), (c1, w1)] = figures[..] {
        println!(
            "{:<28} {:>10.2} {:>10.2}   (target: within 1.2)",
            "with / without",
            c1.as_secs_f64() / c0.as_secs_f64(),
            w1.as_secs_f64() / w0.as_secs_f64()
        );
    }
}

fn main() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let now = chrono::Utc::now().timestamp();
    if std::env::args().any(|a| a == "--business-hours") {
        // `cargo bench --bench cycle -- --business-hours`: only the 1970 backlog.
        ancient_waits(&rt, now);
        return;
    }
    println!("inbox-sla cycle benchmark (loopback HTTP, release build, best of 3)\n");
    println!(
        "{:>8} {:>9} {:>11} {:>11} {:>11} {:>7} {:>7} {:>10} {:>10} {:>10} {:>9}",
        "chats",
        "body",
        "fetch+parse",
        "cycle cold",
        "cycle warm",
        "cold/b",
        "warm/b",
        "rows warm",
        "peak cold",
        "peak warm",
        "limit"
    );
    for n in [1_000usize, 10_000, 100_000] {
        let body = Arc::new(overview_body(n, now));
        let size = body.len();
        let url = serve(&rt, body);
        let dir = tempfile::tempdir().unwrap();
        let config_path = dir.path().join("config.toml");
        let store_path = dir.path().join("state.db");
        std::fs::write(&config_path, config_text(&url, &store_path, "60s")).unwrap();
        let config = Arc::new(Config::load(&config_path).unwrap());
        let client = WawpClient::new(&config.wawp).unwrap();
        let http = reqwest::Client::new();
        let full_url = format!("{url}/v2/chats/overview?instance_id=1&access_token=x");

        let (baseline, chats) = best(3, || {
            let t = Instant::now();
            let bytes = rt.block_on(async {
                http.get(&full_url)
                    .send()
                    .await
                    .unwrap()
                    .bytes()
                    .await
                    .unwrap()
            });
            let page = overview::parse(&bytes).unwrap();
            (t.elapsed(), page.chats.len())
        });
        assert_eq!(chats, n);

        let instance = config.instances[0].clone();
        let (cold, _) = best(3, || {
            let _ = std::fs::remove_file(&store_path);
            let _ = std::fs::remove_file(store_path.with_extension("db-wal"));
            let _ = std::fs::remove_file(store_path.with_extension("db-shm"));
            let store = rt
                .block_on(Store::open(&Location::Sqlite(store_path.clone())))
                .unwrap();
            let t = Instant::now();
            let s = rt
                .block_on(cycle::run(
                    &client,
                    &store,
                    &config,
                    &instance,
                    now,
                    None,
                    &|| {},
                ))
                .unwrap();
            (t.elapsed(), s)
        });
        let store = rt
            .block_on(Store::open(&Location::Sqlite(store_path.clone())))
            .unwrap();
        let (warm, summary) = best(3, || {
            let t = Instant::now();
            let s = rt
                .block_on(cycle::run(
                    &client,
                    &store,
                    &config,
                    &instance,
                    now,
                    None,
                    &|| {},
                ))
                .unwrap();
            (t.elapsed(), s)
        });
        drop(store);

        // Peak memory of the real binary: once on an empty store, once on the warm one.
        let fresh = tempfile::tempdir().unwrap();
        let fresh_config = fresh.path().join("config.toml");
        std::fs::write(
            &fresh_config,
            config_text(&url, &fresh.path().join("state.db"), "60s"),
        )
        .unwrap();
        let peak_cold = peak_rss_kb(&fresh_config);
        let peak_warm = peak_rss_kb(&fresh_config);
        let show = |kb: Option<u64>| kb.map_or("n/a".to_string(), |k| mb(k as f64 * 1024.0));
        println!(
            "{:>8} {:>9} {:>9.1}ms {:>9.1}ms {:>9.1}ms {:>7.2} {:>7.2} {:>10} {:>10} {:>10} {:>9}",
            n,
            mb(size as f64),
            baseline.as_secs_f64() * 1e3,
            cold.as_secs_f64() * 1e3,
            warm.as_secs_f64() * 1e3,
            cold.as_secs_f64() / baseline.as_secs_f64(),
            warm.as_secs_f64() / baseline.as_secs_f64(),
            summary.rows_written,
            show(peak_cold),
            show(peak_warm),
            mb(2.0 * size as f64 + 30e6),
        );
    }

    ancient_waits(&rt, now);

    // Idle: `run` with a 1,000-chat inbox, measured between polls.
    let body = Arc::new(overview_body(1_000, now));
    let url = serve(&rt, body);
    let dir = tempfile::tempdir().unwrap();
    let config_path = dir.path().join("config.toml");
    std::fs::write(
        &config_path,
        config_text(&url, &dir.path().join("state.db"), "60s"),
    )
    .unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_inbox-sla"))
        .arg("--config")
        .arg(&config_path)
        .arg("run")
        .env("RUST_LOG", "error")
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_secs(5));
    let rss = vm_rss_kb(child.id());
    let cpu_before = std::fs::read_to_string(format!("/proc/{}/stat", child.id())).ok();
    std::thread::sleep(Duration::from_secs(5));
    let cpu_after = std::fs::read_to_string(format!("/proc/{}/stat", child.id())).ok();
    let ticks = |s: &Option<String>| -> Option<u64> {
        let s = s.as_ref()?;
        let rest = &s[s.rfind(')')? + 2..];
        let f: Vec<&str> = rest.split_whitespace().collect();
        Some(f.get(11)?.parse::<u64>().ok()? + f.get(12)?.parse::<u64>().ok()?)
    };
    let _ = child.kill();
    let _ = child.wait();
    println!(
        "\nidle `run` (1,000 chats, between polls): resident {} (limit 20 MB), CPU over 5 s idle: {} ticks",
        rss.map_or("n/a".into(), |k| mb(k as f64 * 1024.0)),
        match (ticks(&cpu_before), ticks(&cpu_after)) {
            (Some(a), Some(b)) => (b - a).to_string(),
            _ => "n/a".into(),
        }
    );
    println!(
        "\ncold/b, warm/b: cycle time over the fetch+parse baseline (target at 100k: at most 1.5)"
    );
    println!(
        "limit: the peak-memory target, 2 × body + 30 MB; rows warm: rows written when nothing changed (target 0)"
    );
}
