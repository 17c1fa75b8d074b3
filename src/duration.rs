//! Durations as people write them ("90s", "2h", "1h 30m"), in the config and on the
//! command line, and the one limit on them: nothing past 10 years means anything here
//! (docs/spec.md section 4). A larger value is an error naming what was written, never an
//! overflow that turns a mute into a date in the past.

use serde::{Deserialize, Deserializer, Serializer};
use std::time::Duration;

/// The longest duration accepted anywhere: 10 years of 365.25 days.
pub const MAX: Duration = Duration::from_secs(10 * 31_557_600);

/// Parses a humantime duration of at most [`MAX`].
pub fn parse(text: &str) -> Result<Duration, String> {
    let d = humantime::parse_duration(text.trim()).map_err(|e| {
        format!("\"{text}\" is not a duration like \"90s\", \"2h\" or \"1h 30m\" ({e})")
    })?;
    if d > MAX {
        return Err(format!(
            "\"{text}\" is longer than 10 years; nothing here lasts that long"
        ));
    }
    Ok(d)
}

/// "2h", "1h 30m", "0s": what `check` prints.
pub fn format(d: Duration) -> String {
    humantime::format_duration(Duration::from_secs(d.as_secs())).to_string()
}

/// `#[serde(with = "crate::duration")]` for `Duration` fields.
pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
    let text = String::deserialize(d)?;
    parse(&text).map_err(serde::de::Error::custom)
}

/// `#[serde(default, deserialize_with = "crate::duration::deserialize_some")]` for
/// `Option<Duration>` fields.
pub fn deserialize_some<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
    deserialize(d).map(Some)
}

pub fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&format(*d))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_parse_up_to_ten_years_and_no_further() {
        assert_eq!(parse("1h 30m"), Ok(Duration::from_secs(5400)));
        assert_eq!(parse(" 90s "), Ok(Duration::from_secs(90)));
        assert_eq!(parse("10y"), Ok(MAX));
        assert!(
            parse("10y 1s")
                .unwrap_err()
                .contains("longer than 10 years")
        );
        assert!(parse("300000000000y").is_err());
        assert!(parse("two hours").unwrap_err().contains("two hours"));
        assert_eq!(format(Duration::from_millis(5_400_700)), "1h 30m");
    }
}
