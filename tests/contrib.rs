//! The Prometheus rules and the Grafana dashboard in `contrib/` (issue "package"): the
//! rules' own `promtool test rules` unit tests pass, and every metric name the rules and
//! the dashboard use is one a running daemon serves on `/metrics` (a renamed metric
//! would otherwise leave an alert that can never fire).

mod common;

use common::*;
use serde_json::Value;
use std::collections::BTreeSet;
use std::path::Path;
use std::process::Command;

fn contrib(path: &str) -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("contrib")
        .join(path)
}

/// Names served only by a daemon in an HA group (a PostgreSQL store).
const HA_ONLY: [&str; 1] = ["inbox_sla_instance_held"];

#[test]
fn promtool_checks_the_rules_and_their_unit_tests_pass() {
    let check = Command::new("promtool")
        .args(["check", "rules"])
        .arg(contrib("prometheus/inbox-sla.rules.yml"))
        .output();
    let Ok(check) = check else {
        skip(
            "Prometheus rules: promtool is not installed (Debian's prometheus package)",
            true,
        );
        return;
    };
    assert!(
        check.status.success(),
        "promtool check rules: {}{}",
        String::from_utf8_lossy(&check.stdout),
        String::from_utf8_lossy(&check.stderr)
    );
    let test = Command::new("promtool")
        .args(["test", "rules", "inbox-sla.rules.test.yml"])
        .current_dir(contrib("prometheus"))
        .output()
        .unwrap();
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&test.stdout),
        String::from_utf8_lossy(&test.stderr)
    );
    assert!(test.status.success(), "promtool test rules:\n{said}");
    assert!(said.contains("SUCCESS"), "{said}");
}

/// Every `inbox_sla_*` name in `text`.
fn names_in(text: &str, into: &mut BTreeSet<String>) {
    let re = regex::Regex::new(r"\binbox_sla_[a-z0-9_]+").unwrap();
    into.extend(re.find_iter(text).map(|m| m.as_str().to_string()));
}

/// The names the rules use, outside comments (a comment may name a metric to come).
fn rule_names() -> BTreeSet<String> {
    let text = std::fs::read_to_string(contrib("prometheus/inbox-sla.rules.yml")).unwrap();
    let mut names = BTreeSet::new();
    for line in text.lines().filter(|l| !l.trim_start().starts_with('#')) {
        names_in(line, &mut names);
    }
    names
}

/// The names in the dashboard's queries: panel targets and template variables.
fn dashboard_names() -> BTreeSet<String> {
    let text = std::fs::read_to_string(contrib("grafana/inbox-sla.json")).unwrap();
    let dashboard: Value = serde_json::from_str(&text).expect("the dashboard is JSON");
    fn walk(v: &Value, names: &mut BTreeSet<String>, queries: &mut usize) {
        match v {
            Value::Object(map) => {
                for (k, v) in map {
                    match (k.as_str(), v) {
                        ("expr" | "definition", Value::String(q)) => {
                            *queries += 1;
                            names_in(q, names);
                        }
                        _ => walk(v, names, queries),
                    }
                }
            }
            Value::Array(items) => items.iter().for_each(|i| walk(i, names, queries)),
            _ => {}
        }
    }
    let (mut names, mut queries) = (BTreeSet::new(), 0);
    walk(&dashboard, &mut names, &mut queries);
    assert!(
        queries >= 10,
        "only {queries} queries found in the dashboard"
    );
    names
}

/// The sample names in a Prometheus text exposition.
fn served(metrics: &str) -> BTreeSet<String> {
    metrics
        .lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .filter_map(|l| l.split(['{', ' ']).next())
        .map(str::to_string)
        .collect()
}

#[test]
fn every_metric_the_rules_and_the_dashboard_use_is_served() {
    let rules = rule_names();
    let dashboard = dashboard_names();
    assert!(rules.len() >= 5, "{rules:?}");
    // The daemon of a one-machine install serves everything but the HA gauge; on
    // PostgreSQL (an HA group of one) it serves that too.
    let (wawp, rx) = (FakeWawp::start(), Receiver::start());
    wawp.session("WORKING"); // inbox_sla_session_working is served once a session is known
    let t = now();
    wawp.chats(vec![chat(
        "201001234567@c.us",
        "Nadia",
        1,
        "hello?",
        t - 3 * H,
    )]);
    let postgres = postgres_db("contrib: the HA gauge the dashboard uses");
    let mut setup = Setup::new(&wawp)
        .poll("1s")
        .channel(Channel::webhook("oncall", &rx.url))
        .http();
    if let Some(url) = &postgres {
        setup = setup.set("store", "url", &toml_str(url));
    }
    let env = Env::new(setup);
    let daemon = env.start();
    let base = daemon.http_base();
    assert!(
        wait_for(PATIENCE, || rx.accepted().len() == 1),
        "{}",
        daemon.log()
    );
    // The customer is answered: the wait ends and enters the histogram.
    wawp.chats(vec![answered("201001234567@c.us", "Nadia", "sorry!", t)]);
    let mut metrics = String::new();
    let needed: Vec<&String> = rules
        .iter()
        .chain(&dashboard)
        .filter(|n| postgres.is_some() || !HA_ONLY.contains(&n.as_str()))
        .collect();
    let all_served = wait_for(PATIENCE, || {
        metrics = get(&format!("{base}/metrics")).1;
        let served = served(&metrics);
        needed.iter().all(|n| served.contains(*n))
    });
    let served = served(&metrics);
    for (source, names) in [("the rules", &rules), ("the dashboard", &dashboard)] {
        for name in names {
            if postgres.is_none() && HA_ONLY.contains(&name.as_str()) {
                continue;
            }
            assert!(
                served.contains(name),
                "{source} use {name}, which the daemon does not serve:\n{metrics}"
            );
        }
    }
    assert!(all_served);
}
