//! What support leads look at (docs/spec.md section 11): `report`, the status page in a real
//! headless browser, its JSON, its access rule, and the wait histogram in `/metrics`.

mod common;
use common::*;
use serde_json::Value;
use std::process::Command;

const ALICE: &str = "201000000001@c.us";
const BOB: &str = "201000000002@c.us";
const CAROL: &str = "201000000003@c.us";
const AUTH_TOKEN: &str = "status-tok-5c1d7e";

/// Alice waits 3h (past the 2h tier), Bob waits 30m and is muted, Carol waited 5h and was
/// answered: one breached episode in the history.
fn inbox_with_history(setup: impl FnOnce(Setup) -> Setup) -> (FakeWawp, Env) {
    let wawp = FakeWawp::start();
    let env = Env::new(setup(
        Setup::new(&wawp)
            .poll("1s")
            .tier("2h", &["console"])
            .tier("6h", &["console"])
            .channel(Channel::console()),
    ));
    let t = now();
    let alice = chat(ALICE, "Alice Waiting", 2, "where is my order?", t - 3 * H);
    let bob = chat(BOB, "Bob Muted", 1, "thanks", t - 1800);
    wawp.chats(vec![
        alice.clone(),
        bob.clone(),
        chat(CAROL, "Carol Resolved", 1, "hello??", t - 5 * H),
    ]);
    let run = env.run(&["once"]);
    assert_eq!(run.code, 0, "{run}");
    wawp.chats(vec![
        alice,
        bob,
        answered(
            CAROL,
            "Carol Resolved",
            "sorted, sorry for the wait",
            t - 60,
        ),
    ]);
    let run = env.run(&["once"]);
    assert_eq!(run.code, 0, "{run}");
    let run = env.run(&["mute", BOB, "--for", "4h", "--reason", "on holiday"]);
    assert_eq!(run.code, 0, "{run}");
    (wawp, env)
}

#[test]
fn report_counts_what_ended_in_every_format() {
    let (_wawp, env) = inbox_with_history(|s| s);
    let run = env.run(&["report", "--format", "json"]);
    assert_eq!(run.code, 0, "{run}");
    let r: Value = serde_json::from_str(&run.stdout).unwrap_or_else(|e| panic!("{e}: {run}"));
    let overall = &r["overall"];
    assert_eq!(overall["episodes"], 1, "{r:#}");
    assert_eq!(overall["within_sla"], 0);
    assert_eq!(overall["within_sla_percent"], 0.0);
    assert_eq!(overall["breaches"][0]["tier"], "2h");
    assert_eq!(overall["breaches"][0]["episodes"], 1);
    let wait = overall["wall_wait"]["longest_seconds"]
        .as_i64()
        .unwrap_or(0);
    assert!((5 * H - 120..=5 * H + 120).contains(&wait), "{r:#}");
    assert_eq!(r["longest"][0]["id"], CAROL);
    assert_eq!(r["longest"][0]["ended_by"], "reply");
    assert_eq!(r["instances"][0]["instance"], "support");
    let hours: u64 = r["breach_starts"]["hours"]
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|d| d.as_array().into_iter().flatten())
        .filter_map(Value::as_u64)
        .sum();
    assert_eq!(hours, 1, "one breach started: {r:#}");

    let text = env.run(&["report", "--since", "30d"]);
    assert_eq!(text.code, 0, "{text}");
    assert!(text.stdout.contains("0.0%"), "{text}");
    assert!(text.stdout.contains(CAROL), "{text}");
    assert!(
        text.stdout.lines().all(|l| l.chars().count() <= 80),
        "wider than 80 columns:\n{}",
        text.stdout
    );

    let csv = env.run(&["report", "--format", "csv"]);
    assert_eq!(csv.code, 0, "{csv}");
    let rows: Vec<&str> = csv.stdout.lines().collect();
    assert_eq!(rows.len(), 3, "header, support, all: {csv}");
    assert!(rows[0].starts_with("scope,episodes,within_sla,"), "{csv}");
    assert!(rows[2].starts_with("all,1,0,0.0,"), "{csv}");

    let other = env.run(&["report", "--instance", "nope"]);
    assert_eq!(other.code, 2, "{other}");
    assert!(other.stderr.contains("--instance nope"), "{other}");
    let bad = env.run(&["report", "--since", "300000000000y"]);
    assert_eq!(bad.code, 2, "{bad}");
    assert!(bad.stderr.contains("--since"), "{bad}");
}

/// Headless chromium, as Debian ships it; `None` (after a loud skip) without it.
fn chromium() -> Option<&'static str> {
    ["chromium", "chromium-browser"].into_iter().find(|bin| {
        Command::new(bin)
            .arg("--version")
            .output()
            .is_ok_and(|o| o.status.success())
    })
}

fn headless(bin: &str, profile: &std::path::Path) -> Command {
    let mut cmd = Command::new(bin);
    cmd.args([
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--no-first-run",
        "--hide-scrollbars",
    ])
    .arg(format!("--user-data-dir={}", profile.display()));
    cmd
}

#[test]
fn the_status_page_renders_in_a_real_browser() {
    let (_wawp, env) = inbox_with_history(|s| s.http());
    let acked = env.run(&["ack", ALICE, "--by", "Amina Hassan", "--for", "2h"]);
    assert_eq!(acked.code, 0, "{acked}");
    let nobody = env.run(&["ack", "201000000000@c.us"]);
    assert_eq!(nobody.code, 2, "no open episode: {nobody}");
    assert!(nobody.stderr.contains("no open episode"), "{nobody}");
    let daemon = env.start();
    let base = daemon.http_base();
    let Some(bin) = chromium() else {
        skip("status page in chromium: chromium is not installed", true);
        return;
    };
    let profile = env.dir.path().join("chromium");
    let out = headless(bin, &profile)
        .arg("--dump-dom")
        .arg(format!("{base}/"))
        .output()
        .expect("run chromium");
    let dom = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        dom.contains("id=\"waiting\""),
        "no waiting table in the DOM (chromium said: {}):\n{dom}",
        String::from_utf8_lossy(&out.stderr)
    );
    // The waiting table, oldest first, with ages and the time to the next tier.
    let table = dom
        .split("id=\"waiting\"")
        .nth(1)
        .and_then(|t| t.split("</table>").next())
        .unwrap_or("");
    let (a, b) = (
        table.find("Alice Waiting").unwrap_or(usize::MAX),
        table.find("Bob Muted").unwrap_or(usize::MAX),
    );
    assert!(
        a < b && b < usize::MAX,
        "Alice (3h) before Bob (30m):\n{table}"
    );
    assert!(!table.contains("Carol"), "Carol was answered:\n{table}");
    assert!(table.contains(">3h"), "Alice's age:\n{table}");
    // Alice has waited 3h when the inbox is written; the page may be drawn within that
    // same second (3h to go) or a little later (2h 59m, 2h 58m…).
    assert!(
        table.contains("6h in 2h 5") || table.contains("6h in 3h<"),
        "Alice's next tier:\n{table}"
    );
    assert!(
        table.contains("2h in 1h 2") || table.contains("2h in 1h 30m"),
        "Bob's next tier:\n{table}"
    );
    assert!(table.contains("(muted)"), "Bob is muted:\n{table}");
    assert!(
        table.contains("acknowledged by Amina Hassan"),
        "Alice is acknowledged:\n{table}"
    );
    // Bob can be acknowledged and unmuted; Alice, acknowledged, muted for 1h or 4h.
    assert_eq!(table.matches(">Acknowledge</button>").count(), 1, "{table}");
    assert_eq!(table.matches(">Unmute</button>").count(), 1, "{table}");
    assert_eq!(table.matches(">Mute 4h</button>").count(), 1, "{table}");
    assert!(
        !dom.contains("<script"),
        "the page stays script-free:\n{dom}"
    );
    assert!(dom.contains("on holiday"), "the mute's reason:\n{dom}");
    // The chart: today's bar says 0% within the SLA; the distribution counts Carol.
    assert!(dom.contains("<svg id=\"attainment\""), "{dom}");
    assert!(dom.contains("class=\"bar\""), "a bar for today:\n{dom}");
    assert!(dom.contains("0 of 1 within SLA"), "{dom}");
    assert!(dom.contains("<svg id=\"distribution\""), "{dom}");
    assert!(
        dom.contains("http-equiv=\"refresh\" content=\"30\""),
        "{dom}"
    );
    assert!(!dom.contains("src=\"http"), "no external assets:\n{dom}");

    // The docs' screenshot comes from this very set-up.
    if let Some(path) = std::env::var_os("INBOX_SLA_SCREENSHOT") {
        let shot = headless(bin, &profile)
            .arg(format!(
                "--screenshot={}",
                std::path::Path::new(&path).display()
            ))
            .arg("--window-size=1100,1250")
            .arg(format!("{base}/"))
            .output()
            .expect("run chromium");
        assert!(
            shot.status.success(),
            "{}",
            String::from_utf8_lossy(&shot.stderr)
        );
    }

    // The same data as JSON.
    let (code, body) = get(&format!("{base}/api/v1/waiting"));
    assert_eq!(code, 200, "{body}");
    let w: Value = serde_json::from_str(&body).unwrap_or_default();
    let waiting = w["waiting"].as_array().cloned().unwrap_or_default();
    assert_eq!(waiting.len(), 2, "{w:#}");
    assert_eq!(waiting[0]["id"], ALICE);
    assert_eq!(waiting[0]["tiers_fired"][0], 7200);
    assert_eq!(waiting[1]["muted"], true);
    assert_eq!(waiting[0]["acknowledged_by"], "Amina Hassan");
    assert_eq!(waiting[0]["acknowledged"], true);
    assert_eq!(w["instances"][0]["instance"], "support");
    let (code, body) = get(&format!("{base}/api/v1/report?since=7d"));
    assert_eq!(code, 200, "{body}");
    let r: Value = serde_json::from_str(&body).unwrap_or_default();
    assert_eq!(r["overall"]["episodes"], 1, "{r:#}");
    let (code, body) = get(&format!("{base}/api/v1/report?since=soon"));
    assert_eq!(code, 400);
    assert!(body.contains("since"), "{body}");
}

#[test]
fn off_loopback_the_page_needs_the_token_and_probes_do_not() {
    let wawp = FakeWawp::start();
    wawp.chats(vec![breached_chat()]);
    let dir = tempfile::tempdir().unwrap();
    let token_file = dir.path().join("status-token");
    std::fs::write(&token_file, format!("{AUTH_TOKEN}\n")).unwrap();

    // Without a token, a non-loopback listen is refused, naming the key.
    let open = Env::new(
        Setup::new(&wawp)
            .poll("1s")
            .channel(Channel::console())
            .set("http", "listen", "\"0.0.0.0:0\""),
    );
    let check = open.run(&["check"]);
    assert_eq!(check.code, 2, "{check}");
    assert!(check.stderr.contains("http.auth_token_file"), "{check}");

    let env = Env::new(
        Setup::new(&wawp)
            .poll("1s")
            .channel(Channel::console())
            .set("http", "listen", "\"0.0.0.0:0\"")
            .set(
                "http",
                "auth_token_file",
                &toml_str(&token_file.to_string_lossy()),
            ),
    );
    let check = env.run(&["check"]);
    assert_eq!(check.code, 0, "{check}");
    assert!(!check.stdout.contains(AUTH_TOKEN), "{check}");
    let daemon = env.start();
    let base = daemon.http_base().replace("0.0.0.0", "127.0.0.1");
    assert!(wait_for(PATIENCE, || get(&format!("{base}/healthz")).0 == 200));

    let with = |path: &str, auth: Option<&str>| -> (u16, String) {
        rt().block_on(async {
            let mut req = reqwest::Client::new().get(format!("{base}{path}"));
            if let Some(a) = auth {
                req = req.header("Authorization", a);
            }
            match req.send().await {
                Ok(r) => (r.status().as_u16(), r.text().await.unwrap_or_default()),
                Err(_) => (0, String::new()),
            }
        })
    };
    for path in ["/", "/api/v1/waiting", "/api/v1/report"] {
        let (code, body) = with(path, None);
        assert_eq!(code, 401, "{path}: {body}");
        assert!(!body.contains("Amina"), "{path} leaked: {body}");
        assert_eq!(
            with(path, Some("Bearer wrong-token-xxxxxxx")).0,
            401,
            "{path}"
        );
        assert_eq!(with(path, Some(AUTH_TOKEN)).0, 401, "{path}: not a bearer");
        let (code, body) = with(path, Some(&format!("Bearer {AUTH_TOKEN}")));
        assert_eq!(code, 200, "{path}: {body}");
    }
    let (code, page) = with("/", Some(&format!("Bearer {AUTH_TOKEN}")));
    assert_eq!(code, 200);
    assert!(page.contains("Amina"), "{page}");
    assert_eq!(with("/healthz", None).0, 200);
    let (code, metrics) = with("/metrics", None);
    assert_eq!(code, 200);
    assert!(!metrics.contains(AUTH_TOKEN));
    assert!(!daemon.log().contains(AUTH_TOKEN), "{}", daemon.log());
}

#[test]
fn metrics_carry_the_wait_histogram_of_closed_episodes() {
    let wawp = FakeWawp::start();
    let t = now();
    wawp.chats(vec![chat(CAROL, "Carol", 1, "hello", t - 3 * H)]);
    let env = Env::new(
        Setup::new(&wawp)
            .poll("1s")
            .channel(Channel::console())
            .http(),
    );
    let daemon = env.start();
    let base = daemon.http_base();
    assert!(wait_for(PATIENCE, || get(&format!("{base}/healthz")).0 == 200));
    wawp.chats(vec![answered(CAROL, "Carol", "done", t)]);
    let mut metrics = String::new();
    assert!(
        wait_for(PATIENCE, || {
            metrics = get(&format!("{base}/metrics")).1;
            metrics.contains("inbox_sla_wait_seconds_count{wawp_instance=\"support\"} 1")
        }),
        "{metrics}"
    );
    // A 3h wait: above the 2h bucket, within 4h, and every explicit bucket is there.
    for (le, n) in [
        ("300", 0),
        ("900", 0),
        ("1800", 0),
        ("3600", 0),
        ("7200", 0),
        ("14400", 1),
        ("28800", 1),
        ("86400", 1),
        ("+Inf", 1),
    ] {
        let line =
            format!("inbox_sla_wait_seconds_bucket{{wawp_instance=\"support\",le=\"{le}\"}} {n}");
        assert!(metrics.contains(&line), "missing {line}:\n{metrics}");
    }
}
