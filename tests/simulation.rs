//! The deterministic simulation (see `tests/sim/mod.rs`): a fixed set of seeds on SQLite
//! always, and on PostgreSQL where `.ci/run` started one. A failing seed is shrunk to the
//! events that matter, printed as a story, and named in one line that replays it:
//!
//! ```text
//! SIM_SEED=1234 SIM_BACKEND=sqlite cargo test --release --test simulation -- --ignored replay --nocapture
//! ```
//!
//! A soak runs any number of seeds and reports seeds per second, simulated hours and the
//! coverage of event kinds:
//!
//! ```text
//! SIM_SEEDS=100000 SIM_FROM=1 cargo test --release --test simulation -- --ignored soak --nocapture
//! ```

mod common;
mod sim;

use std::time::Instant;

/// Seeds `cargo test` runs on each backend (about a minute in all on 2 cores, in a debug
/// build); the soak runs as many as you like.
const SQLITE_SEEDS: u64 = 40;
const POSTGRES_SEEDS: u64 = 4;

fn env_u64(name: &str) -> Option<u64> {
    std::env::var(name).ok().and_then(|v| v.parse().ok())
}

/// A fresh PostgreSQL database per run, when a server was handed over.
fn pg_database() -> Option<String> {
    std::env::var(common::POSTGRES_ENV)
        .ok()
        .map(|admin| common::create_database(&admin))
}

/// Runs seeds; on the first failure, shrinks it and fails the test with its story.
fn run_seeds(seeds: impl Iterator<Item = u64>, postgres: bool) -> (u64, f64) {
    let (mut n, mut hours) = (0, 0.0);
    for seed in seeds {
        let plan = sim::Plan::generate(seed, postgres);
        let db = postgres.then(pg_database).flatten();
        let outcome = sim::run(&plan, db.as_deref());
        n += 1;
        hours += outcome.sim_hours;
        if !outcome.violations.is_empty() {
            let pg = || postgres.then(pg_database).flatten();
            let (_, shrunk) = sim::shrink(&plan, &pg);
            panic!(
                "{}\nreplay: SIM_SEED={seed} SIM_BACKEND={} cargo test --release --test simulation -- --ignored replay --nocapture\n(the first failure, before shrinking: {})",
                sim::story(&shrunk),
                if postgres { "postgres" } else { "sqlite" },
                outcome.violations[0]
            );
        }
    }
    (n, hours)
}

#[test]
fn simulated_histories_keep_every_promise_on_sqlite() {
    let from = env_u64("SIM_FROM").unwrap_or(1);
    let started = Instant::now();
    let (n, hours) = run_seeds(from..from + SQLITE_SEEDS, false);
    eprintln!(
        "simulation, SQLite: {n} seeds, {hours:.0} simulated hours in {:.1}s",
        started.elapsed().as_secs_f64()
    );
}

#[test]
fn simulated_histories_keep_every_promise_on_postgres_with_several_nodes() {
    if std::env::var(common::POSTGRES_ENV).is_err() {
        common::skip(
            "simulation on PostgreSQL: no server (INBOX_SLA_TEST_POSTGRES is not set; `bash .ci/run` starts one)",
            true,
        );
        return;
    }
    let from = env_u64("SIM_FROM").unwrap_or(1);
    let started = Instant::now();
    let (n, hours) = run_seeds(from..from + POSTGRES_SEEDS, true);
    eprintln!(
        "simulation, PostgreSQL: {n} seeds, {hours:.0} simulated hours in {:.1}s",
        started.elapsed().as_secs_f64()
    );
}

/// Replays one seed and prints its story: `SIM_SEED=N [SIM_BACKEND=postgres]`.
#[test]
#[ignore]
fn replay() {
    let seed = env_u64("SIM_SEED").expect("set SIM_SEED");
    let postgres = std::env::var("SIM_BACKEND").is_ok_and(|b| b == "postgres");
    let plan = sim::Plan::generate(seed, postgres);
    let outcome = sim::run(&plan, postgres.then(pg_database).flatten().as_deref());
    if outcome.violations.is_empty() {
        println!("{}\n(no violation)", sim::story(&outcome));
        return;
    }
    if std::env::var("SIM_SHRINK").is_ok_and(|v| v == "0") {
        println!("{}", sim::story(&outcome));
        panic!("seed {seed} fails (not shrunk)");
    }
    let pg = || postgres.then(pg_database).flatten();
    let (_, shrunk) = sim::shrink(&plan, &pg);
    println!("{}", sim::story(&shrunk));
    panic!("seed {seed} fails");
}

/// Runs `SIM_SEEDS` seeds from `SIM_FROM` (SQLite, or PostgreSQL with
/// `SIM_BACKEND=postgres`) and reports speed and coverage; stops at the first failure.
#[test]
#[ignore]
fn soak() {
    let from = env_u64("SIM_FROM").unwrap_or(1);
    let count = env_u64("SIM_SEEDS").unwrap_or(1000);
    let postgres = std::env::var("SIM_BACKEND").is_ok_and(|b| b == "postgres");
    let started = Instant::now();
    let mut coverage = std::collections::BTreeMap::new();
    let (mut hours, mut received) = (0.0, 0usize);
    for seed in from..from + count {
        let plan = sim::Plan::generate(seed, postgres);
        let outcome = sim::run(&plan, postgres.then(pg_database).flatten().as_deref());
        hours += outcome.sim_hours;
        received += outcome.received;
        for (k, v) in &outcome.coverage {
            *coverage.entry(*k).or_insert(0usize) += v;
        }
        if !outcome.violations.is_empty() {
            let pg = || postgres.then(pg_database).flatten();
            let (_, shrunk) = sim::shrink(&plan, &pg);
            println!("{}", sim::story(&shrunk));
            panic!("seed {seed} fails");
        }
        let done = seed - from + 1;
        if done.is_multiple_of(500) {
            let secs = started.elapsed().as_secs_f64();
            eprintln!(
                "soak: {done} seeds, {hours:.0} simulated hours, {:.1} seeds/s, {:.0} simulated hours/s",
                done as f64 / secs,
                hours / secs
            );
        }
    }
    let secs = started.elapsed().as_secs_f64();
    println!(
        "soak: {count} seeds ({from}..{}) on {}: {hours:.0} simulated hours, {received} notifications received, in {secs:.0}s ({:.1} seeds/s, {:.0} simulated hours/s)",
        from + count,
        if postgres { "PostgreSQL" } else { "SQLite" },
        count as f64 / secs,
        hours / secs
    );
    println!("coverage (event kind: times):");
    for (k, v) in coverage {
        println!("  {k}: {v}");
    }
}
