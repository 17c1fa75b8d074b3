//! What real clients check (issue "conform"): the metrics text read by a Prometheus
//! text-format parser with the `wawp_instance` label, operator commands while only the
//! service can read its credentials, a quiet `check` for the unit's ExecStartPre, and a
//! config error that names the right table. (Email headers are parsed strictly in
//! `delivery.rs`; hidden characters and graphemes are a property in `properties.rs`.)

mod common;

use common::*;

#[test]
fn metrics_parse_as_prometheus_text_with_the_wawp_instance_label() {
    let (wawp, rx) = (FakeWawp::start(), Receiver::start());
    wawp.chats(vec![breached_chat()]);
    let env = Env::new(
        Setup::new(&wawp)
            .poll("1s")
            .channel(Channel::slack("oncall", &rx.url))
            .http(),
    );
    let d = env.start();
    let base = d.http_base();
    assert!(
        wait_for(PATIENCE, || get(&format!("{base}/metrics"))
            .1
            .contains("result=\"sent\"")),
        "{}",
        d.log()
    );
    let (_, text) = get(&format!("{base}/metrics"));
    let lines: Vec<String> = text.lines().map(str::to_string).collect();
    let scrape = prometheus_parse::Scrape::parse(lines.iter().cloned().map(Ok)).expect("parses");
    // Every family declared has samples the parser understood (summaries and histograms
    // fold their lines into one sample).
    for family in lines.iter().filter_map(|l| l.strip_prefix("# TYPE ")) {
        let name = family.split_whitespace().next().unwrap();
        assert!(
            scrape.samples.iter().any(|s| s.metric == name),
            "no sample parsed for {name}:\n{text}"
        );
    }
    // The exposition format, line by line: name{labels} value.
    let name = regex::Regex::new(r#"^[a-zA-Z_:][a-zA-Z0-9_:]*(\{([a-zA-Z_][a-zA-Z0-9_]*="([^"\\]|\\.)*",?)*\})? [-+0-9.eEInfa]+$"#).unwrap();
    for l in lines
        .iter()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
    {
        assert!(name.is_match(l), "not exposition format: {l}");
    }
    let mut per_instance = 0;
    for s in &scrape.samples {
        assert!(
            s.labels.get("instance").is_none(),
            "{} carries `instance`, which Prometheus gives the target",
            s.metric
        );
        if s.labels.get("wawp_instance") == Some("support") {
            per_instance += 1;
        }
    }
    assert!(
        per_instance >= 5,
        "polls, duration, waiting, breached, last poll by wawp_instance:\n{text}"
    );
    for help in [
        "inbox_sla_polls_total",
        "inbox_sla_chats_waiting",
        "inbox_sla_outbox_pending",
    ] {
        assert!(scrape.docs.contains_key(help), "no HELP for {help}");
    }
}

#[test]
fn operator_commands_work_while_only_the_service_can_read_its_credentials() {
    let wawp = FakeWawp::start();
    wawp.chats(vec![breached_chat()]);
    let env = Env::new(Setup::new(&wawp).channel(Channel::console()));
    // Once the service ran (here: with an inline token), there is a store to inspect.
    assert_eq!(env.run(&["once"]).code, 0);
    let credential = "/run/credentials/inbox-sla-test-stopped.service/support-token";
    let text = std::fs::read_to_string(&env.config).unwrap().replace(
        &format!("access_token = \"{TOKEN}\""),
        &format!("access_token_file = \"{credential}\""),
    );
    std::fs::write(&env.config, text).unwrap();

    let check = env.run(&["check"]);
    assert_eq!(check.code, 0, "{check}");
    assert!(
        check
            .stdout
            .contains("not checked here: only the service can read it"),
        "{check}"
    );
    assert!(check.stdout.contains(credential), "{check}");
    let quiet = env.run(&["check", "--quiet"]);
    assert_eq!(quiet.code, 0, "{quiet}");
    assert!(quiet.stdout.is_empty(), "{quiet}");
    assert!(
        quiet.stderr.contains("not checked here"),
        "the problem is still said: {quiet}"
    );

    let alerts = env.run(&["alerts"]);
    assert_eq!(alerts.code, 0, "{alerts}");
    assert!(
        alerts
            .stdout
            .contains("Open episodes: 1 waiting, 1 escalated"),
        "{alerts}"
    );
    assert_eq!(env.run(&["alerts", "--format", "json"]).code, 0);
    let mute = env.run(&["mute", "201001234567@c.us", "--for", "1h"]);
    assert_eq!(mute.code, 0, "{mute}");
    let unmute = env.run(&["unmute", "201001234567@c.us"]);
    assert_eq!(unmute.code, 0, "{unmute}");

    // What needs the token says which file it could not read.
    let once = env.run(&["once"]);
    assert_eq!(once.code, 2, "{once}");
    assert!(once.stderr.contains(credential), "{once}");
    // Any other unreadable secret file is an error for check too.
    let text = std::fs::read_to_string(&env.config)
        .unwrap()
        .replace(credential, "/nonexistent/support-token");
    std::fs::write(&env.config, text).unwrap();
    let check = env.run(&["check"]);
    assert_eq!(check.code, 2, "{check}");
    assert!(
        check.stderr.contains("/nonexistent/support-token"),
        "{check}"
    );
    // Under the service itself (its own CREDENTIALS_DIRECTORY), a missing credential is
    // an error: the unit is broken.
    let text = std::fs::read_to_string(&env.config)
        .unwrap()
        .replace("/nonexistent/support-token", credential);
    std::fs::write(&env.config, text).unwrap();
    let inside = Run::from(
        env.command(&["check", "--quiet"])
            .env(
                "CREDENTIALS_DIRECTORY",
                "/run/credentials/inbox-sla-test-stopped.service",
            )
            .output()
            .unwrap(),
    );
    assert_eq!(inside.code, 2, "{inside}");
}

#[test]
fn a_quiet_check_says_nothing_about_a_good_config_and_the_unit_uses_it() {
    let wawp = FakeWawp::start();
    let env = Env::new(Setup::new(&wawp).channel(Channel::console()));
    let quiet = env.run(&["check", "--quiet"]);
    assert_eq!(quiet.code, 0, "{quiet}");
    assert!(
        quiet.stdout.is_empty() && quiet.stderr.is_empty(),
        "{quiet}"
    );
    let loud = env.run(&["check"]);
    assert!(loud.stdout.lines().count() > 20, "{loud}");
    let unit = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/systemd/inbox-sla.service"
    ))
    .unwrap();
    let pre = unit
        .lines()
        .find(|l| l.starts_with("ExecStartPre="))
        .unwrap();
    assert!(pre.ends_with("check --quiet"), "{pre}");
}

#[test]
fn an_unknown_table_is_named_at_the_top_level_not_in_the_table_before_it() {
    let wawp = FakeWawp::start();
    let env = Env::new(
        Setup::new(&wawp)
            .channel(Channel::console())
            .http()
            .raw("[hq]\nnode = \"a\""),
    );
    let run = env.run(&["check"]);
    assert_eq!(run.code, 2, "{run}");
    assert!(
        run.stderr.contains("unknown field `hq`") && run.stderr.contains("(top level)"),
        "{run}"
    );
    assert!(!run.stderr.contains("in [http]"), "{run}");
}

/// A fleet over `http::DETAILED_UP_TO` (1,000) numbers: per number only what alerts use
/// (last successful poll, waiting, breached), the distributions and the successful polls
/// over all numbers, so a scrape stays near 200 bytes a number instead of 1.7 KB.
#[test]
fn a_fleet_of_over_a_thousand_numbers_keeps_per_number_only_what_alerts_use() {
    let (wawp, rx) = (FakeWawp::start(), Receiver::start());
    wawp.chats(vec![breached_chat()]);
    let names: Vec<(String, String)> = (0..1001)
        .map(|i| (format!("shop-{i:04}"), format!("id-{i}")))
        .collect();
    let list: Vec<(&str, &str)> = names
        .iter()
        .map(|(n, i)| (n.as_str(), i.as_str()))
        .collect();
    let env = Env::new(
        Setup::new(&wawp)
            .instances(&list)
            .poll("2s")
            .wawp("max_concurrent", "64")
            .channel(Channel::slack("oncall", &rx.url))
            .http(),
    );
    let d = env.start();
    let base = d.http_base();
    let polled_all = |text: &str| {
        text.lines()
            .filter(|l| l.starts_with("inbox_sla_last_successful_poll_timestamp_seconds{"))
            .count()
            == 1001
    };
    assert!(
        wait_for(PATIENCE * 4, || polled_all(
            &get(&format!("{base}/metrics")).1
        )),
        "every number polled once:\n{}",
        d.log()
    );
    let (_, text) = get(&format!("{base}/metrics"));
    let lines: Vec<String> = text.lines().map(str::to_string).collect();
    let scrape = prometheus_parse::Scrape::parse(lines.iter().cloned().map(Ok)).expect("parses");
    let per = |metric: &str| {
        scrape
            .samples
            .iter()
            .filter(|s| s.metric == metric && s.labels.get("wawp_instance").is_some())
            .count()
    };
    assert_eq!(per("inbox_sla_chats_waiting"), 1001);
    assert_eq!(per("inbox_sla_chats_breached"), 1001);
    for overall in ["inbox_sla_poll_duration_seconds", "inbox_sla_wait_seconds"] {
        assert_eq!(per(overall), 0, "{overall} is kept over all numbers");
    }
    let ok = scrape
        .samples
        .iter()
        .find(|s| s.metric == "inbox_sla_polls_total" && s.labels.get("result") == Some("ok"))
        .expect("successful polls counted");
    assert!(ok.labels.get("wawp_instance").is_none(), "{ok:?}");
    assert!(
        text.len() < 1001 * 250,
        "{} bytes for 1,001 numbers: {} a number",
        text.len(),
        text.len() / 1001
    );
}
