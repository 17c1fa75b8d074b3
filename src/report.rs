//! How the team did: statistics over closed episodes (the store's history), for the
//! `report` command, the status page and `/api/v1/report` (docs/spec.md section 11).
//!
//! Pure functions of the history and the policy: nothing here reads a clock or the store.
//! "Within the SLA" means no tier fired; the SLA clock is business time where business
//! hours apply to the chat (its rule may say otherwise), wall time elsewhere.

use crate::alert::short_duration;
use crate::policy::Policy;
use crate::store::Past;
use crate::untrusted;
use chrono::{Datelike, TimeZone, Timelike};
use chrono_tz::Tz;
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::fmt::Write;

/// Upper bounds (seconds) of the wait distribution; the histogram in `/metrics` uses the
/// same (docs/spec.md section 7). Waits above the last fall in a final "more" bucket.
pub const WAIT_BUCKETS: [f64; 8] = [
    300.0, 900.0, 1800.0, 3600.0, 7200.0, 14400.0, 28800.0, 86400.0,
];

/// How many of the longest waits a report lists.
pub const LONGEST: usize = 10;

const WEEKDAYS: [&str; 7] = ["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"];

/// Median, p90, p99 and the longest of a set of waits (seconds); `None` without waits.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Spread {
    pub median: Option<i64>,
    pub p90: Option<i64>,
    pub p99: Option<i64>,
    pub longest: Option<i64>,
}

impl Spread {
    /// Nearest-rank percentiles: each figure is a wait that happened.
    pub fn of(mut waits: Vec<i64>) -> Self {
        waits.sort_unstable();
        let rank = |p: f64| -> Option<i64> {
            if waits.is_empty() {
                return None;
            }
            let n = waits.len() as f64;
            let k = ((p / 100.0) * n).ceil().max(1.0) as usize;
            waits.get(k.min(waits.len()) - 1).copied()
        };
        Spread {
            median: rank(50.0),
            p90: rank(90.0),
            p99: rank(99.0),
            longest: waits.last().copied(),
        }
    }

    fn json(&self) -> Value {
        json!({
            "median_seconds": self.median, "p90_seconds": self.p90,
            "p99_seconds": self.p99, "longest_seconds": self.longest,
        })
    }
}

/// One scope's figures: an instance, or all of them.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Stats {
    pub episodes: usize,
    /// Episodes that ended before any tier fired.
    pub within_sla: usize,
    /// On the SLA clock (business time where it applies).
    pub sla: Spread,
    pub wall: Spread,
    /// Episodes that reached each tier, by the tier's `after` (seconds), ascending.
    pub breaches: BTreeMap<u64, usize>,
    /// How the episodes ended: read, reply, absent.
    pub ended: BTreeMap<String, usize>,
    /// Episodes a tier fired for (those no longer watched included).
    pub breached: usize,
    /// Breached episodes (a tier fired) that someone acknowledged.
    pub acknowledged: usize,
    /// Of those, how many no further tier fired for after the acknowledgement: on call
    /// was on it before the escalation climbed.
    pub acknowledged_before_next_tier: usize,
    /// From the page an acknowledgement answered to the acknowledgement (wall seconds).
    pub time_to_ack: Spread,
}

impl Stats {
    /// Waits that a chat no longer watched cut short (its instance removed, a rule that
    /// now ignores it) count as breaches they caused and as ended, but not as waits: nobody
    /// answered them, so they say nothing of how fast the team answers.
    fn of(episodes: &[&Past]) -> Self {
        let mut breaches = BTreeMap::new();
        let mut ended = BTreeMap::new();
        for p in episodes {
            for after in &p.fired {
                *breaches.entry(*after).or_insert(0) += 1;
            }
            *ended.entry(p.reason.clone()).or_insert(0) += 1;
        }
        let waits: Vec<&&Past> = episodes.iter().filter(|p| is_a_wait(p)).collect();
        let acked: Vec<&&Past> = episodes
            .iter()
            .filter(|p| !p.fired.is_empty() && p.acked_at.is_some())
            .collect();
        Stats {
            breached: episodes.iter().filter(|p| !p.fired.is_empty()).count(),
            acknowledged: acked.len(),
            acknowledged_before_next_tier: acked
                .iter()
                .filter(|p| {
                    p.last_fired_at
                        .is_none_or(|fired| Some(fired) <= p.acked_at)
                })
                .count(),
            time_to_ack: Spread::of(
                acked
                    .iter()
                    .filter_map(|p| Some((p.acked_at? - p.ack_paged_at?).max(0)))
                    .collect(),
            ),
            episodes: waits.len(),
            within_sla: waits.iter().filter(|p| p.fired.is_empty()).count(),
            sla: Spread::of(waits.iter().map(|p| p.business_seconds).collect()),
            wall: Spread::of(waits.iter().map(|p| p.wall_seconds).collect()),
            breaches,
            ended,
        }
    }

    /// The share answered within the SLA, in percent; `None` without episodes.
    pub fn within_sla_percent(&self) -> Option<f64> {
        (self.episodes > 0).then(|| 100.0 * self.within_sla as f64 / self.episodes as f64)
    }

    fn json(&self) -> Value {
        json!({
            "episodes": self.episodes,
            "within_sla": self.within_sla,
            "within_sla_percent": self.within_sla_percent().map(round1),
            "sla_wait": self.sla.json(),
            "wall_wait": self.wall.json(),
            "breaches": self.breaches.iter().map(|(after, n)| json!({
                "tier": short_duration(*after as i64), "after_seconds": after, "episodes": n,
            })).collect::<Vec<_>>(),
            "ended": self.ended,
            "breached": self.breached,
            "acknowledged": {
                "breaches": self.acknowledged,
                "before_next_tier": self.acknowledged_before_next_tier,
                "time_to_ack": {
                    "median_seconds": self.time_to_ack.median,
                    "p90_seconds": self.time_to_ack.p90,
                },
            },
        })
    }
}

/// One day's attainment, for the status page's chart.
#[derive(Debug, Clone, PartialEq)]
pub struct Day {
    /// `YYYY-MM-DD` in the report's time zone.
    pub date: String,
    pub episodes: usize,
    pub within_sla: usize,
}

/// Everything a report shows.
#[derive(Debug, Clone, PartialEq)]
pub struct Report {
    pub since: i64,
    pub until: i64,
    /// Where weekdays, hours and days are counted: the business hours' zone, else UTC.
    pub timezone: Tz,
    pub overall: Stats,
    /// By instance name, sorted.
    pub instances: Vec<(String, Stats)>,
    /// Longest first (on the SLA clock, then wall time).
    pub longest: Vec<Past>,
    /// When breaches started (the first tier fired): `[weekday Monday first][hour]`.
    pub breach_starts: [[u32; 24]; 7],
    /// One entry per day from `since` to `until`, by the day each episode ended.
    pub days: Vec<Day>,
    /// Episodes per bucket of [`WAIT_BUCKETS`] on the SLA clock, plus the "more" bucket.
    pub distribution: [usize; 9],
}

/// Where a report's weekdays, hours and days are counted: the business hours' zone, else
/// UTC.
pub fn timezone(policy: &Policy) -> Tz {
    policy
        .sla
        .business_hours
        .as_ref()
        .map_or(Tz::UTC, |c| c.timezone())
}

/// The start of the window a report over the last `since` seconds before `until` covers.
/// A whole number of days means that many calendar days in `tz`, today included, from
/// midnight: `7d` is seven dates, the page's seven bars, and every wait it counts ended on
/// one of them (7 × 24 h back would start part-way through an eighth date). Any other
/// length is exactly that long.
pub fn window_start(until: i64, since: i64, tz: Tz) -> i64 {
    const DAY: i64 = 86_400;
    if since <= 0 || since % DAY != 0 {
        return until - since;
    }
    let Some(today) = tz.timestamp_opt(until, 0).single().map(|d| d.date_naive()) else {
        return until - since;
    };
    let first = today - chrono::Days::new((since / DAY - 1) as u64);
    first
        .and_hms_opt(0, 0, 0)
        .and_then(|midnight| tz.from_local_datetime(&midnight).earliest())
        .map_or(until - since, |t| t.timestamp())
}

/// Builds the report over `history` (episodes closed in `[since, until]`).
pub fn build(history: &[Past], policy: &Policy, since: i64, until: i64) -> Report {
    let timezone = timezone(policy);
    let shown: Vec<&Past> = history
        .iter()
        .filter(|p| p.ended_at >= since && p.ended_at <= until)
        .collect();
    let mut by_instance: BTreeMap<&str, Vec<&Past>> = BTreeMap::new();
    for p in &shown {
        by_instance.entry(&p.instance).or_default().push(p);
    }
    let mut breach_starts = [[0u32; 24]; 7];
    for p in &shown {
        if let Some(at) = breach_start(p, policy) {
            let local = timezone.timestamp_opt(at, 0).single();
            if let Some(local) = local {
                let day = local.weekday().num_days_from_monday() as usize;
                breach_starts[day][local.hour() as usize] += 1;
            }
        }
    }
    let mut longest: Vec<&Past> = shown.iter().copied().filter(|p| is_a_wait(p)).collect();
    longest.sort_by_key(|p| {
        (
            std::cmp::Reverse(p.business_seconds),
            std::cmp::Reverse(p.wall_seconds),
        )
    });
    let mut distribution = [0usize; 9];
    for p in shown.iter().filter(|p| is_a_wait(p)) {
        let bucket = WAIT_BUCKETS
            .iter()
            .position(|le| p.business_seconds as f64 <= *le)
            .unwrap_or(WAIT_BUCKETS.len());
        distribution[bucket] += 1;
    }
    Report {
        since,
        until,
        timezone,
        overall: Stats::of(&shown),
        instances: by_instance
            .into_iter()
            .map(|(name, eps)| (name.to_string(), Stats::of(&eps)))
            .collect(),
        longest: longest.into_iter().take(LONGEST).cloned().collect(),
        breach_starts,
        days: days(&shown, timezone, since, until),
        distribution,
    }
}

/// Whether a closed episode is a wait that ended (answered, read, or gone), not one cut
/// short because the chat is no longer watched.
fn is_a_wait(p: &Past) -> bool {
    p.reason != crate::sla::EndReason::Unwatched.as_str()
}

/// When the episode's first tier fired: its start plus the tier's `after` on the chat's
/// SLA clock (found on the calendar where business hours apply), and never after the
/// episode ended (a nudge fires a tier before its `after`). `None` when none fired.
fn breach_start(p: &Past, policy: &Policy) -> Option<i64> {
    let after = *p.fired.first()? as i64;
    let calendar = policy
        .for_chat(&p.jid, p.name.as_deref())
        .and_then(|c| c.calendar);
    let Some(calendar) = calendar else {
        return Some((p.started_at + after).min(p.ended_at.max(p.started_at)));
    };
    // The first instant at which `after` open seconds have passed: open time only grows,
    // so a binary search over the episode's span finds it.
    let (mut lo, mut hi) = (p.started_at, p.ended_at.max(p.started_at));
    if calendar.open_seconds(p.started_at, hi) < after {
        return Some(hi);
    }
    while lo < hi {
        let mid = lo + (hi - lo) / 2;
        if calendar.open_seconds(p.started_at, mid) >= after {
            hi = mid;
        } else {
            lo = mid + 1;
        }
    }
    Some(lo)
}

fn days(shown: &[&Past], tz: Tz, since: i64, until: i64) -> Vec<Day> {
    let date = |t: i64| tz.timestamp_opt(t, 0).single().map(|d| d.date_naive());
    let (Some(first), Some(last)) = (date(since), date(until)) else {
        return Vec::new();
    };
    let mut out: BTreeMap<chrono::NaiveDate, (usize, usize)> = first
        .iter_days()
        .take_while(|d| *d <= last)
        .take(400)
        .map(|d| (d, (0, 0)))
        .collect();
    for p in shown.iter().filter(|p| is_a_wait(p)) {
        if let Some(entry) = date(p.ended_at).and_then(|d| out.get_mut(&d)) {
            entry.0 += 1;
            entry.1 += usize::from(p.fired.is_empty());
        }
    }
    out.into_iter()
        .map(|(d, (episodes, within_sla))| Day {
            date: d.format("%Y-%m-%d").to_string(),
            episodes,
            within_sla,
        })
        .collect()
}

fn round1(x: f64) -> f64 {
    (x * 10.0).round() / 10.0
}

fn opt_duration(secs: Option<i64>) -> String {
    secs.map_or_else(|| "-".to_string(), short_duration)
}

fn time(t: i64, tz: Tz) -> String {
    tz.timestamp_opt(t, 0)
        .single()
        .map_or_else(|| t.to_string(), |d| d.format("%Y-%m-%d %H:%M").to_string())
}

/// Labels of the distribution's buckets: "≤ 5m" … "> 24h".
pub fn bucket_labels() -> Vec<String> {
    let mut out: Vec<String> = WAIT_BUCKETS
        .iter()
        .map(|le| format!("≤ {}", short_duration(*le as i64)))
        .collect();
    out.push(format!(
        "> {}",
        short_duration(WAIT_BUCKETS[WAIT_BUCKETS.len() - 1] as i64)
    ));
    out
}

impl Report {
    pub fn json(&self) -> Value {
        let mut instances: Vec<Value> = Vec::new();
        for (name, stats) in &self.instances {
            let mut v = stats.json();
            if let Some(o) = v.as_object_mut() {
                o.insert("instance".into(), json!(name));
            }
            instances.push(v);
        }
        let labels = bucket_labels();
        json!({
            "since": self.since,
            "until": self.until,
            "timezone": self.timezone.name(),
            "overall": self.overall.json(),
            "instances": instances,
            "longest": self.longest.iter().map(|w| json!({
                "instance": w.instance, "id": w.jid, "name": w.name,
                "started_at": w.started_at, "ended_at": w.ended_at,
                "wall_seconds": w.wall_seconds, "sla_seconds": w.business_seconds,
                "tiers_fired": w.fired, "ended_by": w.reason,
            })).collect::<Vec<_>>(),
            "breach_starts": {
                "weekdays": WEEKDAYS,
                "hours": self.breach_starts.iter().map(|d| d.to_vec()).collect::<Vec<_>>(),
            },
            "days": self.days.iter().map(|d| json!({
                "date": d.date, "episodes": d.episodes, "within_sla": d.within_sla,
                "within_sla_percent": (d.episodes > 0)
                    .then(|| round1(100.0 * d.within_sla as f64 / d.episodes as f64)),
            })).collect::<Vec<_>>(),
            "distribution": self.distribution.iter().enumerate().map(|(i, n)| json!({
                "le_seconds": WAIT_BUCKETS.get(i).map(|s| *s as i64),
                "label": labels[i], "episodes": n,
            })).collect::<Vec<_>>(),
        })
    }

    /// One row per scope (every instance, then "all"): what a spreadsheet sums and charts.
    /// Per-tier breach columns follow the tiers that fired.
    pub fn csv(&self) -> String {
        let tiers: Vec<u64> = {
            let mut t: Vec<u64> = self.overall.breaches.keys().copied().collect();
            t.sort_unstable();
            t
        };
        let mut out = String::from(
            "scope,episodes,within_sla,within_sla_percent,\
             sla_median_seconds,sla_p90_seconds,sla_p99_seconds,sla_longest_seconds,\
             wall_median_seconds,wall_p90_seconds,wall_p99_seconds,wall_longest_seconds,\
             acknowledged,acknowledged_before_next_tier,ack_median_seconds,ack_p90_seconds",
        );
        for t in &tiers {
            let _ = write!(
                out,
                ",breached_{}",
                short_duration(*t as i64).replace(' ', "")
            );
        }
        out.push('\n');
        let opt = |v: Option<i64>| v.map(|s| s.to_string()).unwrap_or_default();
        let rows = self
            .instances
            .iter()
            .map(|(n, s)| (n.as_str(), s))
            .chain(std::iter::once(("all", &self.overall)));
        for (scope, s) in rows {
            let _ = write!(
                out,
                "{},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{}",
                csv_field(scope),
                s.episodes,
                s.within_sla,
                s.within_sla_percent()
                    .map(|p| format!("{:.1}", p))
                    .unwrap_or_default(),
                opt(s.sla.median),
                opt(s.sla.p90),
                opt(s.sla.p99),
                opt(s.sla.longest),
                opt(s.wall.median),
                opt(s.wall.p90),
                opt(s.wall.p99),
                opt(s.wall.longest),
                s.acknowledged,
                s.acknowledged_before_next_tier,
                opt(s.time_to_ack.median),
                opt(s.time_to_ack.p90),
            );
            for t in &tiers {
                let _ = write!(out, ",{}", s.breaches.get(t).copied().unwrap_or(0));
            }
            out.push('\n');
        }
        out
    }

    /// For a terminal: aligned, readable at 80 columns.
    pub fn text(&self) -> String {
        let tz = self.timezone;
        let mut out = String::new();
        let _ = writeln!(
            out,
            "SLA report {} to {} ({})",
            time(self.since, tz),
            time(self.until, tz),
            tz.name()
        );
        let _ = writeln!(out);
        if self.overall.episodes == 0 {
            let _ = writeln!(out, "No waits ended in this period.");
            return out;
        }
        let _ = writeln!(
            out,
            "{:<20} {:>8} {:>7}  {:>8} {:>8} {:>8} {:>8}",
            "Wait (SLA clock)", "episodes", "in SLA", "median", "p90", "p99", "longest"
        );
        let row = |out: &mut String, scope: &str, s: &Stats, spread: &Spread, first: bool| {
            let _ = writeln!(
                out,
                "{:<20} {:>8} {:>7}  {:>8} {:>8} {:>8} {:>8}",
                untrusted::display(scope, 20),
                if first {
                    s.episodes.to_string()
                } else {
                    String::new()
                },
                if first {
                    s.within_sla_percent()
                        .map_or("-".into(), |p| format!("{p:.1}%"))
                } else {
                    String::new()
                },
                opt_duration(spread.median),
                opt_duration(spread.p90),
                opt_duration(spread.p99),
                opt_duration(spread.longest),
            );
        };
        let scopes: Vec<(&str, &Stats)> = self
            .instances
            .iter()
            .map(|(n, s)| (n.as_str(), s))
            .chain(std::iter::once(("all", &self.overall)))
            .collect();
        for (scope, s) in &scopes {
            row(&mut out, scope, s, &s.sla, true);
        }
        let _ = writeln!(out);
        let _ = writeln!(
            out,
            "{:<20} {:>8} {:>7}  {:>8} {:>8} {:>8} {:>8}",
            "Wait (wall clock)", "", "", "median", "p90", "p99", "longest"
        );
        for (scope, s) in &scopes {
            row(&mut out, scope, s, &s.wall, false);
        }
        let _ = writeln!(out);
        let _ = writeln!(out, "Breaches per tier (episodes that reached it)");
        if self.overall.breaches.is_empty() {
            let _ = writeln!(out, "  none");
        }
        for (after, n) in &self.overall.breaches {
            let per: Vec<String> = self
                .instances
                .iter()
                .filter_map(|(name, s)| s.breaches.get(after).map(|k| format!("{name} {k}")))
                .collect();
            let _ = writeln!(
                out,
                "  {:>8}  {:>6}   {}",
                short_duration(*after as i64),
                n,
                untrusted::display(&per.join(", "), 50)
            );
        }
        let ended: Vec<String> = self
            .overall
            .ended
            .iter()
            .map(|(how, n)| format!("{how} {n}"))
            .collect();
        let _ = writeln!(out, "Ended by: {}", ended.join(", "));
        let _ = writeln!(
            out,
            "Acknowledged: {} of {} breaches, {} before the next tier\nTime to acknowledge: median {}, p90 {}",
            self.overall.acknowledged,
            self.overall.breached,
            self.overall.acknowledged_before_next_tier,
            opt_duration(self.overall.time_to_ack.median),
            opt_duration(self.overall.time_to_ack.p90),
        );
        let _ = writeln!(out);
        let _ = writeln!(out, "Longest waits (SLA clock / wall clock)");
        for w in &self.longest {
            let _ = writeln!(
                out,
                "  {:>8} {:>8}  {}  {:<12} {}",
                short_duration(w.business_seconds),
                short_duration(w.wall_seconds),
                time(w.started_at, tz),
                untrusted::display(&w.instance, 12),
                untrusted::display(
                    &format!("{} {}", w.jid, w.name.as_deref().unwrap_or("")),
                    26
                ),
            );
        }
        let _ = writeln!(out);
        let _ = writeln!(
            out,
            "When breaches started (first tier fired, by hour, {})",
            tz.name()
        );
        let mut header = String::from("     ");
        for h in 0..24 {
            let _ = write!(header, "{h:>3}");
        }
        let _ = writeln!(out, "{header}");
        for (d, hours) in self.breach_starts.iter().enumerate() {
            let mut line = format!("  {} ", WEEKDAYS[d]);
            for n in hours {
                if *n == 0 {
                    line.push_str("  .");
                } else {
                    let _ = write!(line, "{n:>3}");
                }
            }
            let _ = writeln!(out, "{line}");
        }
        out
    }
}

/// A CSV field, quoted when it must be (RFC 4180).
fn csv_field(s: &str) -> String {
    if s.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::calendar::{BusinessHours, parse_day};
    use std::collections::BTreeSet;

    fn past(instance: &str, jid: &str, start: i64, wall: i64, fired: &[u64]) -> Past {
        Past {
            instance: instance.into(),
            jid: jid.into(),
            name: Some(format!("Customer {jid}")),
            started_at: start,
            ended_at: start + wall,
            wall_seconds: wall,
            business_seconds: wall,
            fired: fired.to_vec(),
            notified: Vec::new(),
            reason: "read".into(),
            last_fired_at: None,
            acked_by: None,
            acked_at: None,
            ack_paged_at: None,
        }
    }

    // Monday 2026-11-23 00:00 UTC.
    const MONDAY: i64 = 1_795_392_000;

    #[test]
    fn percentiles_are_waits_that_happened() {
        let s = Spread::of((1..=100).collect());
        assert_eq!(
            (s.median, s.p90, s.p99, s.longest),
            (Some(50), Some(90), Some(99), Some(100))
        );
        let one = Spread::of(vec![42]);
        assert_eq!(
            (one.median, one.p99, one.longest),
            (Some(42), Some(42), Some(42))
        );
        assert_eq!(Spread::of(Vec::new()), Spread::default());
    }

    #[test]
    fn counts_attainment_breaches_and_when_they_started() {
        let h = [
            past("support", "1@c.us", MONDAY + 9 * 3600, 600, &[]),
            past("support", "2@c.us", MONDAY + 9 * 3600, 3 * 3600, &[7200]),
            past(
                "sales",
                "3@c.us",
                MONDAY + 86400 + 10 * 3600,
                7 * 3600,
                &[7200, 21600],
            ),
            past("sales", "4@c.us", MONDAY - 30 * 86400, 60, &[]), // before `since`
        ];
        let r = build(&h, &Policy::default(), MONDAY, MONDAY + 7 * 86400);
        assert_eq!(r.overall.episodes, 3);
        assert_eq!(r.overall.within_sla, 1);
        assert_eq!(r.overall.breaches, BTreeMap::from([(7200, 2), (21600, 1)]));
        assert_eq!(r.instances.len(), 2);
        assert_eq!(r.instances[0].0, "sales");
        assert_eq!(r.longest[0].jid, "3@c.us");
        // The 2h tier fired at 11:00 on Monday and at 12:00 on Tuesday.
        assert_eq!(r.breach_starts[0][11], 1);
        assert_eq!(r.breach_starts[1][12], 1);
        assert_eq!(r.breach_starts.iter().flatten().sum::<u32>(), 2);
        // ≤ 15m, ≤ 4h, ≤ 8h.
        assert_eq!(r.distribution, [0, 1, 0, 0, 0, 1, 1, 0, 0]);
        assert_eq!(r.days.len(), 8);
        // 7d from MONDAY + 7 days 00:00 UTC: the 7 dates Tuesday … Monday, from midnight.
        let until = MONDAY + 7 * 86400 + 13 * 3600;
        let from = window_start(until, 7 * 86400, Tz::UTC);
        assert_eq!(from, MONDAY + 86400);
        assert_eq!(build(&h, &Policy::default(), from, until).days.len(), 7);
        assert_eq!(window_start(until, 36 * 3600, Tz::UTC), until - 36 * 3600);
        let cairo: Tz = "Africa/Cairo".parse().unwrap();
        let from = window_start(until, 86400, cairo);
        assert_eq!(cairo.timestamp_opt(from, 0).unwrap().hour(), 0);
        assert!(until - from < 86400 && from <= until);
        assert_eq!((r.days[0].episodes, r.days[0].within_sla), (2, 1));
        let text = r.text();
        assert!(text.lines().all(|l| l.chars().count() <= 80), "{text}");
        assert!(text.contains("33.3%"), "{text}");
        let csv = r.csv();
        assert_eq!(csv.lines().count(), 4, "{csv}");
        assert!(
            csv.lines()
                .last()
                .unwrap_or("")
                .starts_with("all,3,1,33.3,"),
            "{csv}"
        );
        assert!(
            csv.lines()
                .next()
                .unwrap_or("")
                .ends_with("breached_2h,breached_6h")
        );
    }

    /// Section 11: the report says how fast on call acknowledged (from the page each
    /// acknowledgement answered) and how many breaches were acknowledged before the next
    /// tier fired. An acknowledgement of a chat that never paged is no breach's.
    #[test]
    fn time_to_acknowledge_and_breaches_acknowledged_before_the_next_tier() {
        let t = 1_795_000_000;
        let acked = |jid: &str, paged: i64, after: i64, last_fired: i64| Past {
            last_fired_at: Some(t + last_fired),
            acked_by: Some("Amina".into()),
            acked_at: Some(t + paged + after),
            ack_paged_at: Some(t + paged),
            ..past("support", jid, t - 7200, 4 * 3600, &[7200])
        };
        let h = vec![
            acked("1@c.us", 0, 60, 0),
            acked("2@c.us", 0, 300, 0),
            // The next tier fired after the acknowledgement ran out.
            acked("3@c.us", 0, 600, 7200),
            past("support", "4@c.us", t, 4 * 3600, &[7200]),
            Past {
                acked_by: Some("Omar".into()),
                acked_at: Some(t + 10),
                ..past("support", "5@c.us", t, 600, &[])
            },
        ];
        let r = build(&h, &Policy::default(), t - 86400, t + 86400);
        let o = &r.overall;
        assert_eq!((o.breached, o.acknowledged), (4, 3));
        assert_eq!(o.acknowledged_before_next_tier, 2);
        assert_eq!(
            (o.time_to_ack.median, o.time_to_ack.p90),
            (Some(300), Some(600))
        );
        let text = r.text();
        assert!(
            text.contains("Acknowledged: 3 of 4 breaches, 2 before the next tier\nTime to acknowledge: median 5m, p90 10m"),
            "{text}"
        );
        assert_eq!(
            r.json()["overall"]["acknowledged"]["time_to_ack"]["p90_seconds"],
            600
        );
        assert!(
            r.csv()
                .lines()
                .last()
                .unwrap_or("")
                .contains(",3,2,300,600"),
            "{}",
            r.csv()
        );
    }

    /// A worked example: ten waits whose business time is less than their wall time (they
    /// spanned a night). Nearest rank over 10: the median is the 5th, p90 the 9th, p99 and
    /// the longest the 10th.
    #[test]
    fn business_and_wall_waits_are_reported_apart() {
        let minutes = [5, 10, 20, 30, 45, 60, 90, 150, 200, 400];
        let h: Vec<Past> = minutes
            .iter()
            .enumerate()
            .map(|(k, m)| {
                let mut p = past(
                    "support",
                    &format!("{k}@c.us"),
                    MONDAY,
                    m * 60 + 12 * 3600,
                    &[],
                );
                p.business_seconds = m * 60;
                if *m >= 150 {
                    p.fired = vec![7200];
                }
                p
            })
            .collect();
        let r = build(&h, &Policy::default(), MONDAY, MONDAY + 7 * 86400);
        let s = &r.overall;
        assert_eq!((s.episodes, s.within_sla), (10, 7));
        assert_eq!(s.within_sla_percent(), Some(70.0));
        assert_eq!(
            (s.sla.median, s.sla.p90, s.sla.p99, s.sla.longest),
            (
                Some(45 * 60),
                Some(200 * 60),
                Some(400 * 60),
                Some(400 * 60)
            )
        );
        let wall = |m: i64| Some(m * 60 + 12 * 3600);
        assert_eq!(
            (s.wall.median, s.wall.p90, s.wall.p99, s.wall.longest),
            (wall(45), wall(200), wall(400), wall(400))
        );
        // Longest first by the SLA clock; the distribution buckets the SLA clock too.
        assert_eq!(r.longest[0].business_seconds, 400 * 60);
        assert_eq!(r.longest.len(), 10);
        assert_eq!(r.distribution, [1, 1, 2, 2, 1, 2, 1, 0, 0]);
        let json = r.json();
        assert_eq!(json["overall"]["sla_wait"]["median_seconds"], 45 * 60);
        assert_eq!(
            json["overall"]["wall_wait"]["median_seconds"],
            45 * 60 + 12 * 3600
        );
        assert_eq!(json["overall"]["within_sla_percent"], 70.0);
    }

    #[test]
    fn a_breach_under_business_hours_starts_when_open_time_reaches_the_tier() {
        let nine_to_five = parse_day("09:00-17:00").unwrap_or_default();
        let mut days: [Vec<crate::calendar::OpenRange>; 7] = Default::default();
        for d in days.iter_mut().take(5) {
            *d = nine_to_five.clone();
        }
        let policy = Policy {
            sla: crate::policy::Sla {
                business_hours: Some(BusinessHours::new(Tz::UTC, days, BTreeSet::new())),
                ..Default::default()
            },
            ..Default::default()
        };
        // Written Friday 16:00; 1h of Friday, then Monday from 09:00: 2h at Monday 10:00.
        let friday_4pm = MONDAY - 3 * 86400 + 16 * 3600;
        let h = [past("support", "1@c.us", friday_4pm, 3 * 86400, &[7200])];
        let r = build(&h, &policy, MONDAY - 7 * 86400, MONDAY + 86400);
        assert_eq!(r.breach_starts[0][10], 1);
        assert_eq!(r.timezone, Tz::UTC);
    }

    /// A tier fired early by a nudge: the wait ended at 10:45, before the 2h tier's
    /// `after` was reached. The breach started within the wait, not at 12:00.
    #[test]
    fn a_breach_never_starts_after_its_wait_ended() {
        let ten = MONDAY + 10 * 3600;
        let h = [past("support", "1@c.us", ten, 45 * 60, &[7200])];
        let r = build(&h, &Policy::default(), MONDAY, MONDAY + 86400);
        assert_eq!(r.breach_starts[0][10], 1, "{:?}", r.breach_starts[0]);
        assert_eq!(r.breach_starts[0][12], 0);
    }

    /// A chat no longer watched was never answered: its breach counts, its "wait" does
    /// not (it would make the team look faster or slower than it is).
    #[test]
    fn an_unwatched_episode_counts_its_breaches_not_its_wait() {
        let mut cut = past("support", "1@c.us", MONDAY, 30 * 3600, &[7200]);
        cut.reason = "unwatched".into();
        let h = [cut, past("support", "2@c.us", MONDAY, 600, &[])];
        let r = build(&h, &Policy::default(), MONDAY, MONDAY + 7 * 86400);
        assert_eq!((r.overall.episodes, r.overall.within_sla), (1, 1));
        assert_eq!(r.overall.wall.longest, Some(600));
        assert_eq!(r.overall.breaches, BTreeMap::from([(7200, 1)]));
        assert_eq!(r.overall.ended.get("unwatched"), Some(&1));
        assert!(r.longest.iter().all(|p| p.jid == "2@c.us"));
    }

    #[test]
    fn an_empty_period_says_so() {
        let r = build(&[], &Policy::default(), MONDAY, MONDAY + 86400);
        assert!(r.text().contains("No waits ended"));
        assert_eq!(r.json()["overall"]["within_sla_percent"], Value::Null);
    }
}
