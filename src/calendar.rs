//! Business hours: how much *open* time lies between two instants.
//!
//! The SLA engine asks one question of a calendar, [`BusinessHours::open_seconds`]. Opening
//! ranges are local wall-clock times in an IANA timezone, so a day on which the clocks jump
//! is as long as its open ranges really are. Pure arithmetic: no clock, no I/O.

use chrono::{Datelike, Duration, NaiveDate, NaiveDateTime, NaiveTime, TimeZone};
use chrono_tz::Tz;
use std::collections::BTreeSet;

/// Opening hours for each weekday, in one timezone, minus holidays.
#[derive(Debug, Clone, PartialEq)]
pub struct BusinessHours {
    /// Where the ranges' wall-clock times are read.
    pub timezone: Tz,
    /// Monday first; each day's ranges sorted and non-overlapping. Empty: closed.
    pub days: [Vec<OpenRange>; 7],
    /// Local dates on which the business is closed all day.
    pub holidays: BTreeSet<NaiveDate>,
}

/// One opening range in local time; `end` may be 24:00 (`None` then means midnight).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct OpenRange {
    pub start: NaiveTime,
    /// `None` stands for 24:00, the end of the day.
    pub end: Option<NaiveTime>,
}

pub const WEEKDAYS: [&str; 7] = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"];

impl BusinessHours {
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

    /// Open seconds in `[from, to)` (Unix seconds). Zero when `to <= from`.
    pub fn open_seconds(&self, from: i64, to: i64) -> i64 {
        if to <= from {
            return 0;
        }
        let (Some(first), Some(last)) = (self.local_date(from), self.local_date(to)) else {
            return 0;
        };
        let mut total = 0;
        let mut day = first;
        while day <= last {
            if !self.holidays.contains(&day) {
                for range in &self.days[day.weekday().num_days_from_monday() as usize] {
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
            }
            day += Duration::days(1);
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
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hours(tz: &str, spec: &[(&str, &str)], holidays: &[&str]) -> BusinessHours {
        let mut days: [Vec<OpenRange>; 7] = Default::default();
        for (day, value) in spec {
            let i = WEEKDAYS.iter().position(|d| d == day).unwrap();
            days[i] = BusinessHours::parse_day(value).unwrap();
        }
        BusinessHours {
            timezone: tz.parse().unwrap(),
            days,
            holidays: holidays.iter().map(|d| d.parse().unwrap()).collect(),
        }
    }

    fn at(tz: &str, local: &str) -> i64 {
        let tz: Tz = tz.parse().unwrap();
        let ndt = NaiveDateTime::parse_from_str(local, "%Y-%m-%d %H:%M").unwrap();
        tz.from_local_datetime(&ndt).earliest().unwrap().timestamp()
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
        // Tuesday 2026-12-01 17:30 Cairo
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
    }

    #[test]
    fn fall_back_night_shift_is_one_hour_longer() {
        // Berlin falls back 03:00 -> 02:00 on Sunday 2026-10-25.
        let bh = hours("Europe/Berlin", &[("sun", "00:00-06:00")], &[]);
        let from = at("Europe/Berlin", "2026-10-25 00:00");
        let to = at("Europe/Berlin", "2026-10-25 12:00");
        assert_eq!(bh.open_seconds(from, to), 7 * 3600);
    }

    #[test]
    fn new_york_fall_back_and_berlin_spring_forward() {
        // New York falls back 02:00 -> 01:00 on Sunday 2026-11-01: 00:00-06:00 is 7 hours.
        let ny = hours("America/New_York", &[("sun", "00:00-06:00")], &[]);
        let from = at("America/New_York", "2026-11-01 00:00");
        assert_eq!(ny.open_seconds(from, from + 86400), 7 * 3600);
        // Berlin springs forward 02:00 -> 03:00 on Sunday 2026-03-29: 6 hours become 5.
        let berlin = hours("Europe/Berlin", &[("sun", "00:00-06:00")], &[]);
        let from = at("Europe/Berlin", "2026-03-29 00:00");
        assert_eq!(berlin.open_seconds(from, from + 86400), 5 * 3600);
        // A 9-to-6 day across the change is still 9 hours of work.
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
    fn day_parsing_rejects_nonsense() {
        assert!(BusinessHours::parse_day("18:00-09:00").is_err());
        assert!(BusinessHours::parse_day("9-5").is_err());
        assert!(BusinessHours::parse_day("09:00-13:00,12:00-18:00").is_err());
        assert_eq!(BusinessHours::parse_day("").unwrap(), vec![]);
        assert_eq!(
            BusinessHours::parse_day("00:00-24:00").unwrap()[0].end,
            None
        );
    }
}
