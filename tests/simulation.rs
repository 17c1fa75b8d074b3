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
/// Seeds a soak once failed on, kept as regressions: 320074 (a mute while a cycle was
/// paused between its plan and its commit paged for a muted chat); 479885 (the harness
/// put a poll that wrote nothing after an acknowledgement its plan never saw).
const REGRESSIONS: [u64; 2] = [320_074, 479_885];

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
    let (n, hours) = run_seeds((from..from + SQLITE_SEEDS).chain(REGRESSIONS), false);
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
/// `SIM_BACKEND=postgres`) on `SIM_JOBS` threads (1 unless told), for at most
/// `SIM_SECONDS` if given (no seed starts after that), and reports speed and
/// the coverage of event kinds and invariants. Stops at the first failing seed (the lowest,
/// whatever the threads: every seed below it has run), shrinks it and fails with its
/// number, its story and the line that replays it.
#[test]
#[ignore]
fn soak() {
    use std::collections::BTreeMap;
    use std::sync::Mutex;
    use std::sync::atomic::{AtomicU64, Ordering};

    #[derive(Default)]
    struct Tally {
        seeds: u64,
        hours: f64,
        received: usize,
        coverage: BTreeMap<&'static str, usize>,
        checks: BTreeMap<&'static str, usize>,
        /// Failing seeds with their first violation.
        failed: BTreeMap<u64, String>,
    }

    let from = env_u64("SIM_FROM").unwrap_or(1);
    let count = env_u64("SIM_SEEDS").unwrap_or(1000);
    let jobs = env_u64("SIM_JOBS").unwrap_or(1).max(1);
    let postgres = std::env::var("SIM_BACKEND").is_ok_and(|b| b == "postgres");
    let backend = if postgres { "postgres" } else { "sqlite" };
    let started = Instant::now();
    let next = AtomicU64::new(from);
    let stop_at = AtomicU64::new(u64::MAX);
    let tally = Mutex::new(Tally::default());
    let report_every = env_u64("SIM_REPORT").unwrap_or(500).max(1);
    // A time budget: no seed starts after it (the ones under way finish), then the soak
    // reports as if it had been asked for that many seeds.
    let budget = env_u64("SIM_SECONDS").map(std::time::Duration::from_secs);
    std::thread::scope(|scope| {
        for _ in 0..jobs {
            scope.spawn(|| {
                loop {
                    let seed = next.fetch_add(1, Ordering::SeqCst);
                    if seed >= from + count
                        || seed > stop_at.load(Ordering::SeqCst)
                        || budget.is_some_and(|b| started.elapsed() >= b)
                    {
                        break;
                    }
                    let plan = sim::Plan::generate(seed, postgres);
                    let outcome = sim::run(&plan, postgres.then(pg_database).flatten().as_deref());
                    let mut t = tally.lock().unwrap_or_else(|p| p.into_inner());
                    t.seeds += 1;
                    t.hours += outcome.sim_hours;
                    t.received += outcome.received;
                    for (k, v) in &outcome.coverage {
                        *t.coverage.entry(*k).or_insert(0) += v;
                    }
                    for (k, v) in &outcome.checks {
                        *t.checks.entry(*k).or_insert(0) += v;
                    }
                    if let Some(v) = outcome.violations.first() {
                        t.failed.insert(seed, v.clone());
                        stop_at.fetch_min(seed, Ordering::SeqCst);
                    }
                    if t.seeds.is_multiple_of(report_every) {
                        let secs = started.elapsed().as_secs_f64();
                        eprintln!(
                            "soak: {} seeds (up to {seed}), {:.0} simulated hours in {secs:.0}s, {:.1} seeds/s, {:.0} simulated hours/s",
                            t.seeds,
                            t.hours,
                            t.seeds as f64 / secs,
                            t.hours / secs
                        );
                    }
                }
            });
        }
    });
    let secs = started.elapsed().as_secs_f64();
    let t = tally.into_inner().unwrap_or_else(|p| p.into_inner());
    let summary = format!(
        "soak: {} seeds ({from}..{}) on {backend} ({jobs} thread(s)): {:.0} simulated hours, {} notifications received, in {secs:.0}s ({:.1} seeds/s, {:.0} simulated hours/s)",
        t.seeds,
        from + t.seeds,
        t.hours,
        t.received,
        t.seeds as f64 / secs,
        t.hours / secs
    );
    println!("{summary}");
    println!("coverage (event kind: times):");
    for (k, v) in &t.coverage {
        println!("  {k}: {v}");
    }
    println!("invariants (checked: times):");
    for (k, v) in &t.checks {
        println!("  {k}: {v}");
    }
    if let Some((&seed, first)) = t.failed.iter().next() {
        let found = seed - from + 1;
        let plan = sim::Plan::generate(seed, postgres);
        let pg = || postgres.then(pg_database).flatten();
        let shrinking = Instant::now();
        let (shrunk_plan, shrunk) = sim::shrink(&plan, &pg);
        panic!(
            "soak: seed {seed} fails, the first failing seed ({found} seeds from {from}, found in {secs:.0}s; shrunk in {:.0}s from {} events to {})\nfirst violation, before shrinking: {first}\n{}replay: SIM_SEED={seed} SIM_BACKEND={backend} cargo test --release --test simulation -- --ignored replay --nocapture",
            shrinking.elapsed().as_secs_f64(),
            plan.events.len(),
            shrunk_plan.events.len(),
            sim::story(&shrunk),
        );
    }
}
