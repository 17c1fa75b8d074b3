//! Business hours: how much *open* time lies between two instants.
//!
//! The SLA engine asks one question of a calendar, [`BusinessHours::open_seconds`]. Opening
//! ranges are local wall-clock times in an IANA timezone, so a day on which the clocks jump
//! is as long as its open ranges really are. Pure arithmetic: no clock, no I/O.
//!
//! The cost does not grow with the span (docs/spec.md section 9: a chat waiting since 1970
//! costs what one waiting since this morning does). The first and last days are measured
//! exactly; the whole days between are counted at once: whole weeks times the week's open
//! time, the remaining weekdays, minus holidays, plus the difference daylight-saving days
//! make. Those differences are found once per calendar (for 1970–2100) and prefix-summed.

use chrono::{Datelike, Duration, NaiveDate, NaiveDateTime, NaiveTime, TimeZone, Timelike};
use chrono_tz::Tz;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, OnceLock};

pub const WEEKDAYS: [&str; 7] = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"];

/// One opening range in local time.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct OpenRange {
    pub start: NaiveTime,
    /// `None` stands for 24:00, the end of the day.
    pub end: Option<NaiveTime>,
}

impl OpenRange {
    /// Wall-clock length, ignoring daylight saving.
    fn nominal(&self) -> i64 {
        let end = self
            .end
            .map_or(86_400, |e| i64::from(e.num_seconds_from_midnight()));
        end - i64::from(self.start.num_seconds_from_midnight())
    }
}

/// Opening hours for each weekday, in one timezone, minus holidays.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(try_from = "BusinessHoursToml", into = "BusinessHoursToml")]
pub struct BusinessHours {
    timezone: Tz,
    /// Monday first; each day's ranges sorted and non-overlapping. Empty: closed.
    days: [Vec<OpenRange>; 7],
    /// Local dates on which the business is closed all day.
    holidays: BTreeSet<NaiveDate>,
    /// Open seconds of each weekday on a day without a clock change.
    nominal: [i64; 7],
    /// `(holiday, open seconds it takes away, running total up to and including it)`.
    holiday_sums: Vec<(NaiveDate, i64)>,
    /// Days on which a clock change makes the open time differ from nominal, with the
    /// running total of the differences; computed on first need, shared by clones.
    shifts: Arc<OnceLock<Vec<(NaiveDate, i64)>>>,
    /// The table as written, for `check`.
    toml: BusinessHoursToml,
}

impl PartialEq for BusinessHours {
    fn eq(&self, other: &Self) -> bool {
        self.timezone == other.timezone
            && self.days == other.days
            && self.holidays == other.holidays
    }
}

/// `[sla.business_hours]` as written.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct BusinessHoursToml {
    pub timezone: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mon: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tue: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub wed: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub thu: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fri: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sat: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sun: Option<String>,
    #[serde(default)]
    pub holidays: Vec<String>,
}

impl TryFrom<BusinessHoursToml> for BusinessHours {
    type Error = String;

    fn try_from(raw: BusinessHoursToml) -> Result<Self, String> {
        let timezone: Tz = raw.timezone.parse().map_err(|_| {
            format!(
                "sla.business_hours.timezone: \"{}\" is not an IANA timezone like Africa/Cairo",
                raw.timezone
            )
        })?;
        let values = [
            &raw.mon, &raw.tue, &raw.wed, &raw.thu, &raw.fri, &raw.sat, &raw.sun,
        ];
        let mut days: [Vec<OpenRange>; 7] = Default::default();
        for (i, v) in values.into_iter().enumerate() {
            if let Some(v) = v {
                days[i] =
                    parse_day(v).map_err(|e| format!("sla.business_hours.{}: {e}", WEEKDAYS[i]))?;
            }
        }
        if days.iter().all(Vec::is_empty) {
            return Err("sla.business_hours: no day has opening hours; set mon … sun".into());
        }
        let mut holidays = BTreeSet::new();
        for h in &raw.holidays {
            holidays.insert(NaiveDate::parse_from_str(h, "%Y-%m-%d").map_err(|_| {
                format!("sla.business_hours.holidays: \"{h}\" is not a date like 2026-12-25")
            })?);
        }
        let mut hours = BusinessHours::new(timezone, days, holidays);
        hours.toml = raw;
        Ok(hours)
    }
}

impl From<BusinessHours> for BusinessHoursToml {
    fn from(b: BusinessHours) -> Self {
        b.toml
    }
}

/// Parses one weekday's value: `"09:00-13:00,14:00-18:00"`; an empty string is closed.
pub fn parse_day(value: &str) -> Result<Vec<OpenRange>, String> {
    let mut ranges = Vec::new();
    for part in value.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let (a, b) = part
            .split_once('-')
            .ok_or_else(|| format!("\"{part}\" is not a range like 09:00-18:00"))?;
        let start = NaiveTime::parse_from_str(a.trim(), "%H:%M")
            .map_err(|_| format!("\"{}\" is not a time like 09:00", a.trim()))?;
        let end = match b.trim() {
            "24:00" => None,
            t => Some(
                NaiveTime::parse_from_str(t, "%H:%M")
                    .map_err(|_| format!("\"{t}\" is not a time like 18:00"))?,
            ),
        };
        if end.is_some_and(|e| e <= start) {
            return Err(format!("\"{part}\" ends before it starts"));
        }
        ranges.push(OpenRange { start, end });
    }
    ranges.sort_by_key(|r| r.start);
    for pair in ranges.windows(2) {
        if pair[0].end.is_none_or(|e| e > pair[1].start) {
            return Err(format!("ranges in \"{value}\" overlap"));
        }
    }
    Ok(ranges)
}

/// The span over which clock changes are tabulated; outside it days are walked.
const TABLE_FIRST: NaiveDate = NaiveDate::from_ymd_opt(1970, 1, 1).unwrap();
const TABLE_LAST: NaiveDate = NaiveDate::from_ymd_opt(2100, 12, 31).unwrap();

impl BusinessHours {
    pub fn new(timezone: Tz, days: [Vec<OpenRange>; 7], holidays: BTreeSet<NaiveDate>) -> Self {
        let nominal: [i64; 7] =
            std::array::from_fn(|i| days[i].iter().map(OpenRange::nominal).sum());
        let mut running = 0;
        let holiday_sums = holidays
            .iter()
            .map(|&h| {
                running += nominal[weekday(h)];
                (h, running)
            })
            .collect();
        let mut toml = BusinessHoursToml {
            timezone: timezone.name().to_string(),
            mon: None,
            tue: None,
            wed: None,
            thu: None,
            fri: None,
            sat: None,
            sun: None,
            holidays: holidays.iter().map(|d| d.to_string()).collect(),
        };
        let text: Vec<Option<String>> = days
            .iter()
            .map(|ranges| {
                (!ranges.is_empty()).then(|| {
                    ranges
                        .iter()
                        .map(|r| {
                            let end = r
                                .end
                                .map_or("24:00".into(), |e| e.format("%H:%M").to_string());
                            format!("{}-{end}", r.start.format("%H:%M"))
                        })
                        .collect::<Vec<_>>()
                        .join(",")
                })
            })
            .collect();
        let slots = [
            &mut toml.mon,
            &mut toml.tue,
            &mut toml.wed,
            &mut toml.thu,
            &mut toml.fri,
            &mut toml.sat,
            &mut toml.sun,
        ];
        for (slot, value) in slots.into_iter().zip(text) {
            *slot = value;
        }
        BusinessHours {
            timezone,
            days,
            holidays,
            nominal,
            holiday_sums,
            shifts: Arc::default(),
            toml,
        }
    }

    pub fn timezone(&self) -> Tz {
        self.timezone
    }

    /// Open seconds in `[from, to)` (Unix seconds). Zero when `to <= from`.
    pub fn open_seconds(&self, from: i64, to: i64) -> i64 {
        if to <= from {
            return 0;
        }
        let (Some(first), Some(last)) = (self.local_date(from), self.local_date(to)) else {
            return 0;
        };
        if last <= first + Duration::days(2) {
            return (0..=(last - first).num_days())
                .map(|k| self.day_open(first + Duration::days(k), from, to))
                .sum();
        }
        let (inner_first, inner_last) = (first + Duration::days(1), last - Duration::days(1));
        self.day_open(first, from, to)
            + self.day_open(last, from, to)
            + self.whole_days(inner_first, inner_last)
    }

    /// Open seconds of every day in `[first, last]`, none of them cut by the span's ends.
    fn whole_days(&self, first: NaiveDate, last: NaiveDate) -> i64 {
        let days = (last - first).num_days() + 1;
        let start = weekday(first);
        let week: i64 = self.nominal.iter().sum();
        let rest: i64 = (0..days % 7)
            .map(|k| self.nominal[(start + k as usize) % 7])
            .sum();
        let nominal = days / 7 * week + rest;
        let holidays = running_sum(&self.holiday_sums, first, last);
        nominal - holidays + self.shift(first, last)
    }

    /// How much clock changes add to (or take from) the nominal open time of `[first,
    /// last]`'s days that are not holidays.
    fn shift(&self, first: NaiveDate, last: NaiveDate) -> i64 {
        let inside = |d: NaiveDate| d.clamp(TABLE_FIRST, TABLE_LAST);
        let mut total = 0;
        let (lo, hi) = (inside(first), inside(last));
        if lo <= hi && hi >= first && lo <= last {
            let table = self.shifts.get_or_init(|| self.tabulate_shifts());
            total += running_sum(table, lo, hi);
        }
        // Days outside the table are measured one by one (a chat from before 1970 or after
        // 2100 is not a case worth a table).
        let mut walk = |from: NaiveDate, to: NaiveDate| {
            let mut d = from;
            while d <= to {
                total += self.day_shift(d);
                d += Duration::days(1);
            }
        };
        if first < TABLE_FIRST {
            walk(first, last.min(TABLE_FIRST - Duration::days(1)));
        }
        if last > TABLE_LAST {
            walk(first.max(TABLE_LAST + Duration::days(1)), last);
        }
        total
    }

    /// Every day of the table range whose open time a clock change alters. A change shows
    /// as a different UTC offset at noon from one day to the next; both days are checked.
    fn tabulate_shifts(&self) -> Vec<(NaiveDate, i64)> {
        // UTC noon and local dates differ by up to 14 hours: check a day either side too.
        let mut candidates = BTreeSet::new();
        let mut day = TABLE_FIRST;
        let mut prev_offset = self.noon_offset(day);
        while day < TABLE_LAST {
            let next = day + Duration::days(1);
            let offset = self.noon_offset(next);
            if offset != prev_offset {
                for k in -1..=2 {
                    candidates.insert(day + Duration::days(k));
                }
            }
            prev_offset = offset;
            day = next;
        }
        let mut running = 0;
        candidates
            .into_iter()
            .filter(|d| (TABLE_FIRST..=TABLE_LAST).contains(d))
            .filter_map(|d| {
                let shift = self.day_shift(d);
                (shift != 0).then(|| {
                    running += shift;
                    (d, running)
                })
            })
            .collect()
    }

    fn noon_offset(&self, day: NaiveDate) -> i32 {
        use chrono::Offset;
        let noon = day.and_time(NaiveTime::from_hms_opt(12, 0, 0).unwrap_or(NaiveTime::MIN));
        self.timezone
            .offset_from_utc_datetime(&noon)
            .fix()
            .local_minus_utc()
    }

    /// Real minus nominal open seconds of one whole day (0 on a holiday).
    fn day_shift(&self, day: NaiveDate) -> i64 {
        if self.holidays.contains(&day) {
            return 0;
        }
        self.day_open(day, i64::MIN, i64::MAX) - self.nominal[weekday(day)]
    }

    /// Open seconds of `day`'s ranges that fall within `[from, to)`.
    fn day_open(&self, day: NaiveDate, from: i64, to: i64) -> i64 {
        if self.holidays.contains(&day) {
            return 0;
        }
        let mut total = 0;
        for range in &self.days[weekday(day)] {
            let start = self.instant(day.and_time(range.start));
            let end = match range.end {
                Some(end) => self.instant(day.and_time(end)),
                None => self.instant((day + Duration::days(1)).and_time(NaiveTime::MIN)),
            };
            let (lo, hi) = (start.max(from), end.min(to));
            if hi > lo {
                total += hi - lo;
            }
        }
        total
    }

    fn local_date(&self, unix: i64) -> Option<NaiveDate> {
        chrono::DateTime::from_timestamp(unix, 0)
            .map(|t| t.with_timezone(&self.timezone).date_naive())
    }

    /// The Unix instant of a local wall-clock time. In a fall-back overlap the earlier
    /// instant; in a spring-forward gap the instant the gap ends (02:30 that never happens
    /// opens when the clocks show 03:00).
    fn instant(&self, local: NaiveDateTime) -> i64 {
        let mut probe = local;
        for _ in 0..=24 * 60 {
            if let Some(t) = self.timezone.from_local_datetime(&probe).earliest() {
                return t.timestamp();
            }
            probe += Duration::minutes(1);
        }
        // No timezone has a gap longer than a day; treat the range as if in UTC.
        local.and_utc().timestamp()
    }

    /// The ranges of each weekday, Monday first (for the status page).
    pub fn days(&self) -> &[Vec<OpenRange>; 7] {
        &self.days
    }
}

fn weekday(d: NaiveDate) -> usize {
    d.weekday().num_days_from_monday() as usize
}

/// The sum of the values of `table` (a running total by date) for dates in `[first, last]`.
fn running_sum(table: &[(NaiveDate, i64)], first: NaiveDate, last: NaiveDate) -> i64 {
    let upto = |d: NaiveDate| {
        // Entries dated on or before d.
        let n = table.partition_point(|(date, _)| *date <= d);
        if n == 0 { 0 } else { table[n - 1].1 }
    };
    upto(last) - upto(first - Duration::days(1))
}

/// Days as `check` shows them, keyed by weekday name.
pub fn days_as_written(b: &BusinessHours) -> BTreeMap<&'static str, String> {
    let t = &b.toml;
    let values = [&t.mon, &t.tue, &t.wed, &t.thu, &t.fri, &t.sat, &t.sun];
    WEEKDAYS
        .iter()
        .zip(values)
        .filter_map(|(d, v)| v.clone().map(|v| (*d, v)))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hours(tz: &str, spec: &[(&str, &str)], holidays: &[&str]) -> BusinessHours {
        let mut days: [Vec<OpenRange>; 7] = Default::default();
        for (day, value) in spec {
            let i = WEEKDAYS.iter().position(|d| d == day).unwrap();
            days[i] = parse_day(value).unwrap();
        }
        BusinessHours::new(
            tz.parse().unwrap(),
            days,
            holidays.iter().map(|d| d.parse().unwrap()).collect(),
        )
    }

    /// Two calendars are the same when they open the same hours: the zone, every day and
    /// the holidays count; how the table was written does not.
    #[test]
    fn calendars_are_equal_only_when_they_open_the_same_hours() {
        let week = [("mon", "09:00-18:00"), ("tue", "09:00-13:00,14:00-18:00")];
        let base = hours("Africa/Cairo", &week, &["2026-12-25"]);
        assert_eq!(base, hours("Africa/Cairo", &week, &["2026-12-25"]));
        assert_ne!(base, hours("Europe/Paris", &week, &["2026-12-25"]));
        assert_ne!(
            base,
            hours("Africa/Cairo", &[("mon", "09:00-18:00")], &["2026-12-25"])
        );
        assert_ne!(base, hours("Africa/Cairo", &week, &[]));
        assert_ne!(base, hours("Africa/Cairo", &week, &["2026-12-24"]));
    }

    fn at(tz: &str, local: &str) -> i64 {
        let tz: Tz = tz.parse().unwrap();
        let ndt = NaiveDateTime::parse_from_str(local, "%Y-%m-%d %H:%M").unwrap();
        tz.from_local_datetime(&ndt).earliest().unwrap().timestamp()
    }

    /// The reference: every day walked and measured exactly.
    fn walked(bh: &BusinessHours, from: i64, to: i64) -> i64 {
        if to <= from {
            return 0;
        }
        let (first, last) = (bh.local_date(from).unwrap(), bh.local_date(to).unwrap());
        let mut day = first;
        let mut total = 0;
        while day <= last {
            total += bh.day_open(day, from, to);
            day += Duration::days(1);
        }
        total
    }

    const WEEK: [(&str, &str); 5] = [
        ("mon", "09:00-18:00"),
        ("tue", "09:00-18:00"),
        ("wed", "09:00-18:00"),
        ("thu", "09:00-18:00"),
        ("fri", "09:00-18:00"),
    ];

    #[test]
    fn a_chat_at_1730_with_two_hours_is_due_at_1030_next_open_day() {
        let bh = hours("Africa/Cairo", &WEEK, &[]);
        let from = at("Africa/Cairo", "2026-12-01 17:30");
        assert_eq!(
            bh.open_seconds(from, at("Africa/Cairo", "2026-12-02 10:29")),
            7140
        );
        assert_eq!(
            bh.open_seconds(from, at("Africa/Cairo", "2026-12-02 10:30")),
            7200
        );
    }

    #[test]
    fn weekends_and_holidays_count_nothing() {
        let bh = hours("Africa/Cairo", &WEEK, &["2026-12-07"]);
        // Friday 17:00 to Tuesday 10:00, Monday a holiday: 1h Friday + 1h Tuesday.
        let from = at("Africa/Cairo", "2026-12-04 17:00");
        let to = at("Africa/Cairo", "2026-12-08 10:00");
        assert_eq!(bh.open_seconds(from, to), 2 * 3600);
    }

    #[test]
    fn whole_weeks_count_the_week_minus_holidays() {
        let bh = hours("UTC", &WEEK, &["2026-12-25", "2026-12-26", "2027-01-01"]);
        // Monday 2026-11-30 00:00 to Monday 2027-01-04 00:00: 5 weeks of 45h, minus two
        // weekday holidays (the 26th is a Saturday).
        let from = at("UTC", "2026-11-30 00:00");
        let to = at("UTC", "2027-01-04 00:00");
        assert_eq!(bh.open_seconds(from, to), 5 * 45 * 3600 - 2 * 9 * 3600);
        // A span starting mid-week: Wednesday 12:00 to the Wednesday 11 days later 12:00.
        let from = at("UTC", "2026-12-02 12:00");
        let to = at("UTC", "2026-12-16 12:00");
        assert_eq!(bh.open_seconds(from, to), 10 * 9 * 3600);
    }

    #[test]
    fn several_ranges_a_day_skip_the_lunch_break() {
        let bh = hours("Europe/Berlin", &[("mon", "09:00-13:00,14:00-18:00")], &[]);
        let from = at("Europe/Berlin", "2026-11-30 12:00");
        let to = at("Europe/Berlin", "2026-11-30 15:00");
        assert_eq!(bh.open_seconds(from, to), 2 * 3600);
    }

    #[test]
    fn spring_forward_night_shift_is_one_hour_shorter() {
        // New York jumps 02:00 -> 03:00 on Sunday 2026-03-08.
        let bh = hours("America/New_York", &[("sun", "00:00-06:00")], &[]);
        let from = at("America/New_York", "2026-03-08 00:00");
        let to = at("America/New_York", "2026-03-08 12:00");
        assert_eq!(bh.open_seconds(from, to), 5 * 3600);
        // The same Sunday inside a long span counts 5 hours too.
        let from = at("America/New_York", "2026-02-01 12:00");
        let to = at("America/New_York", "2026-04-01 12:00");
        let sundays = 8; // Feb 8, 15, 22, Mar 1, 8, 15, 22, 29
        assert_eq!(bh.open_seconds(from, to), sundays * 6 * 3600 - 3600);
    }

    #[test]
    fn fall_back_night_shift_is_one_hour_longer() {
        // Berlin falls back 03:00 -> 02:00 on Sunday 2026-10-25.
        let bh = hours("Europe/Berlin", &[("sun", "00:00-06:00")], &[]);
        let from = at("Europe/Berlin", "2026-10-25 00:00");
        let to = at("Europe/Berlin", "2026-10-25 12:00");
        assert_eq!(bh.open_seconds(from, to), 7 * 3600);
        // A clock change on a holiday changes nothing.
        let off = hours("Europe/Berlin", &[("sun", "00:00-06:00")], &["2026-10-25"]);
        let from = at("Europe/Berlin", "2026-10-01 00:00");
        let to = at("Europe/Berlin", "2026-11-10 00:00");
        assert_eq!(off.open_seconds(from, to), 5 * 6 * 3600);
        assert_eq!(bh.open_seconds(from, to), 6 * 6 * 3600 + 3600);
    }

    #[test]
    fn new_york_fall_back_and_berlin_spring_forward() {
        let ny = hours("America/New_York", &[("sun", "00:00-06:00")], &[]);
        let from = at("America/New_York", "2026-11-01 00:00");
        assert_eq!(ny.open_seconds(from, from + 86400), 7 * 3600);
        let berlin = hours("Europe/Berlin", &[("sun", "00:00-06:00")], &[]);
        let from = at("Europe/Berlin", "2026-03-29 00:00");
        assert_eq!(berlin.open_seconds(from, from + 86400), 5 * 3600);
        let office = hours("Europe/Berlin", &[("sun", "09:00-18:00")], &[]);
        assert_eq!(office.open_seconds(from, from + 86400), 9 * 3600);
    }

    #[test]
    fn a_range_starting_in_the_gap_opens_when_the_gap_ends() {
        let bh = hours("America/New_York", &[("sun", "02:30-04:00")], &[]);
        let from = at("America/New_York", "2026-03-08 00:00");
        let to = at("America/New_York", "2026-03-08 12:00");
        assert_eq!(bh.open_seconds(from, to), 3600);
    }

    #[test]
    fn since_1970_costs_a_whole_number_of_weeks_not_a_walk() {
        let bh = hours("Africa/Cairo", &WEEK, &["2026-12-25"]);
        let from = 86_400; // 1970-01-02
        let to = at("Africa/Cairo", "2026-12-02 10:30");
        assert_eq!(bh.open_seconds(from, to), walked(&bh, from, to));
        assert!(bh.open_seconds(from, to) > 50 * 52 * 45 * 3600);
    }

    #[test]
    fn spans_past_the_table_are_measured_too() {
        let bh = hours("Europe/Berlin", &[("sun", "00:00-06:00")], &[]);
        let from = at("Europe/Berlin", "2100-10-01 00:00");
        let to = at("Europe/Berlin", "2101-11-30 00:00");
        assert_eq!(bh.open_seconds(from, to), walked(&bh, from, to));
        let early = at("Europe/Berlin", "1969-12-01 00:00").max(1);
        assert_eq!(
            bh.open_seconds(early, early + 90 * 86400),
            walked(&bh, early, early + 90 * 86400)
        );
    }

    /// Before 1970 the table does not reach: days are walked. New York changed its clocks
    /// on Sundays in the 1960s, so a Sunday-night calendar's open time is not a whole
    /// number of 6-hour Sundays there, and the walk must count every change.
    #[test]
    fn spans_before_the_table_count_their_clock_changes() {
        let bh = hours("America/New_York", &[("sun", "00:00-06:00")], &[]);
        for (from, to) in [
            ("1960-01-04 00:00", "1969-06-02 00:00"),
            ("1966-01-03 00:00", "1972-06-05 00:00"),
        ] {
            let (from, to) = (at("America/New_York", from), at("America/New_York", to));
            let open = bh.open_seconds(from, to);
            assert_eq!(open, walked(&bh, from, to), "{from}..{to}");
            // Both spans start on a Monday: a whole number of weeks, one Sunday each.
            let sundays = (to - from + 3 * 3600) / (7 * 86400);
            assert_ne!(open, sundays * 6 * 3600, "no clock change counted");
        }
    }

    /// Samoa skipped Friday 30 December 2011 (it moved across the date line): a Friday
    /// range that day never happened, so it opens nothing.
    #[test]
    fn a_day_a_zone_skipped_entirely_opens_nothing() {
        let bh = hours("Pacific/Apia", &[("fri", "09:00-17:00")], &[]);
        let from = at("Pacific/Apia", "2011-12-29 00:00");
        let to = at("Pacific/Apia", "2011-12-31 12:00");
        assert_eq!(to - from, 36 * 3600, "the 30th is missing");
        assert_eq!(bh.open_seconds(from, to), 0);
        let next = at("Pacific/Apia", "2012-01-06 12:00");
        assert_eq!(
            bh.open_seconds(from, next),
            3 * 3600,
            "the next Friday opens"
        );
    }

    #[test]
    fn a_calendar_keeps_its_time_zone() {
        let bh = hours("Africa/Cairo", &WEEK, &[]);
        assert_eq!(bh.timezone().name(), "Africa/Cairo");
    }

    #[test]
    fn arithmetic_agrees_with_a_walk_in_every_zone_and_span() {
        let mut rng = fastrand::Rng::with_seed(7);
        let zones = [
            "UTC",
            "Africa/Cairo",
            "Europe/Berlin",
            "America/New_York",
            "Australia/Lord_Howe",
            "Asia/Kolkata",
            "America/Santiago",
            "Pacific/Apia",
        ];
        let specs: [&[(&str, &str)]; 3] = [
            &WEEK,
            &[("sun", "00:00-06:00"), ("sat", "01:30-03:30,22:00-24:00")],
            &[
                ("mon", "00:00-24:00"),
                ("wed", "02:00-02:45"),
                ("fri", "23:00-24:00"),
            ],
        ];
        let holidays = ["2024-03-31", "2025-10-26", "2026-03-08", "2023-12-25"];
        let calendars: Vec<BusinessHours> = zones
            .iter()
            .flat_map(|tz| specs.iter().map(move |spec| hours(tz, spec, &holidays)))
            .collect();
        for _ in 0..600 {
            let bh = &calendars[rng.usize(..calendars.len())];
            let from = rng.i64(1_300_000_000..1_800_000_000);
            let to = from + rng.i64(0..3 * 365 * 86400);
            assert_eq!(
                bh.open_seconds(from, to),
                walked(bh, from, to),
                "{} {:?} {from}..{to}",
                bh.timezone.name(),
                bh.days
            );
        }
    }

    #[test]
    fn day_parsing_rejects_nonsense() {
        assert!(parse_day("18:00-09:00").is_err());
        assert!(parse_day("09:00-09:00").is_err());
        assert!(parse_day("9-5").is_err());
        assert!(parse_day("0900-1800").is_err());
        assert!(parse_day("09:00-13:00,12:00-18:00").is_err());
        assert!(parse_day("09:00-24:00,10:00-11:00").is_err());
        assert!(parse_day("09:00-13:00,13:00-18:00").is_ok());
        assert_eq!(parse_day("").unwrap(), vec![]);
        assert_eq!(parse_day("00:00-24:00").unwrap()[0].end, None);
        let r = parse_day("14:00-18:00, 09:00-12:00").unwrap();
        assert_eq!(r[0].start, NaiveTime::from_hms_opt(9, 0, 0).unwrap());
    }

    #[test]
    fn the_table_parses_from_toml_and_renders_back() {
        let raw: BusinessHoursToml = toml::from_str(
            "timezone = \"Africa/Cairo\"\nmon = \"09:00-18:00\"\ntue = \"09:00-13:00,14:00-18:00\"\nholidays = [\"2026-12-25\"]",
        )
        .unwrap();
        let bh = BusinessHours::try_from(raw.clone()).unwrap();
        assert_eq!(BusinessHoursToml::from(bh.clone()), raw);
        assert_eq!(days_as_written(&bh)["tue"], "09:00-13:00,14:00-18:00");
        let bad = |f: &dyn Fn(&mut BusinessHoursToml)| {
            let mut r = raw.clone();
            f(&mut r);
            BusinessHours::try_from(r).unwrap_err()
        };
        assert!(bad(&|r| r.timezone = "Mars/Base".into()).contains("Mars/Base"));
        assert!(bad(&|r| r.mon = Some("18:00-09:00".into())).contains("sla.business_hours.mon"));
        assert!(bad(&|r| r.holidays = vec!["2026-13-01".into()]).contains("2026-13-01"));
        assert!(
            bad(&|r| {
                r.mon = None;
                r.tue = None
            })
            .contains("no day has opening hours")
        );
        let built = hours("UTC", &[("sun", "22:00-24:00")], &[]);
        assert_eq!(days_as_written(&built)["sun"], "22:00-24:00");
    }
}
