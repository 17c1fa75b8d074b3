//! The SLA policy: which chats are watched, which tiers apply to them, how their age counts,
//! and which of your own messages are automatic.
//!
//! [`Sla`] is the `[sla]` table itself: each key is defined once, here, parsed by serde
//! straight into the type the engine reads (no raw struct, no view). [`Policy`] adds the
//! tiers and rules that `config` validates. Resolving a chat's policy is pure: globs and
//! regexes over the JID and the name, first matching rule wins.

use crate::calendar::BusinessHours;
use regex::Regex;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::time::Duration;

/// What ends an episode (docs/spec.md section 2, "read is not answered").
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum StopOn {
    /// Reading the chat (unread count 0) ends the episode.
    #[default]
    Read,
    /// Only an answer (`lastMessage.fromMe: true`, not automatic) ends it.
    Reply,
}

/// The `[sla]` table.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Sla {
    /// The single tier used when no `[[escalation]]` is given.
    #[serde(with = "crate::duration")]
    pub threshold: Duration,
    #[serde(with = "crate::duration")]
    pub poll_interval: Duration,
    /// Zero: never re-notify an open episode.
    #[serde(with = "crate::duration")]
    pub repeat_after: Duration,
    pub send_resolved: bool,
    pub include_groups: bool,
    /// JID globs never watched.
    pub ignore: Vec<Glob>,
    pub include_preview: bool,
    pub stop_on: StopOn,
    /// Polling failing this long raises one "monitor blind" alert.
    #[serde(with = "crate::duration")]
    pub blind_after: Duration,
    /// 0: off. Otherwise an episode whose unread count reaches it moves to its next tier.
    pub nudge_unread: u32,
    /// Bodies of your automatic messages (away, greeting, bots): never an answer.
    pub auto_replies: Vec<Pattern>,
    /// Complete overviews a chat must be missing from before its episode ends.
    pub absent_polls: u32,
    /// An acknowledged episode fires no further tier this long (section 2).
    #[serde(with = "crate::duration")]
    pub ack_for: Duration,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub business_hours: Option<BusinessHours>,
}

impl Default for Sla {
    fn default() -> Self {
        Sla {
            threshold: Duration::from_secs(2 * 3600),
            poll_interval: Duration::from_secs(60),
            repeat_after: Duration::ZERO,
            send_resolved: true,
            include_groups: true,
            ignore: ["*@broadcast", "*@newsletter", "*@meta.ai", "0@c.us"]
                .map(Glob::new)
                .to_vec(),
            include_preview: true,
            stop_on: StopOn::Read,
            blind_after: Duration::from_secs(600),
            nudge_unread: 0,
            auto_replies: Vec::new(),
            absent_polls: 3,
            ack_for: Duration::from_secs(3600),
            business_hours: None,
        }
    }
}

impl Sla {
    /// The problems of values that parse but mean nothing, each naming its key.
    pub fn validate(&self) -> Result<(), String> {
        if self.threshold.is_zero() {
            return Err("sla.threshold must be more than 0s".into());
        }
        if self.poll_interval < Duration::from_secs(1) {
            return Err("sla.poll_interval must be at least 1s".into());
        }
        if self.blind_after.is_zero() {
            return Err("sla.blind_after must be more than 0s".into());
        }
        if self.absent_polls == 0 {
            return Err(
                "sla.absent_polls must be at least 1 (one missing poll proves nothing)".into(),
            );
        }
        if self.ack_for.is_zero() {
            return Err("sla.ack_for must be more than 0s (an acknowledgement must hold the next tier for a while)".into());
        }
        Ok(())
    }
}

/// One escalation tier: after `after` of waiting, tell `notify`. A tier is known by its
/// `after`: that is what the store records as fired, so reordering tiers changes nothing.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Tier {
    #[serde(with = "crate::duration")]
    pub after: Duration,
    /// Channel names; validated against the configured channels.
    pub notify: Vec<String>,
}

/// A glob: `*` any run of characters, `?` one character.
#[derive(Debug, Clone, PartialEq)]
pub struct Glob {
    pattern: String,
    /// The pattern as characters, for the general matcher.
    chars: Vec<char>,
    /// Every chat of every cycle meets every glob: the usual shapes ("*@broadcast",
    /// "2010*@c.us", "0@c.us") are decided once, here, not on each match.
    shape: Shape,
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Shape {
    Exact,
    /// One `*`: the text must start with the part before it and end with the part after.
    HeadTail {
        head: usize,
    },
    General,
}

impl Glob {
    pub fn new(pattern: impl Into<String>) -> Self {
        let pattern = pattern.into();
        let shape = match (pattern.contains('?'), pattern.find('*')) {
            (false, None) => Shape::Exact,
            (false, Some(head)) if pattern.matches('*').count() == 1 => Shape::HeadTail { head },
            _ => Shape::General,
        };
        let chars = pattern.chars().collect();
        Glob {
            pattern,
            chars,
            shape,
        }
    }

    pub fn matches(&self, text: &str) -> bool {
        match self.shape {
            Shape::Exact => self.pattern == text,
            Shape::HeadTail { head } => {
                let (h, t) = (&self.pattern[..head], &self.pattern[head + 1..]);
                text.len() >= h.len() + t.len() && text.starts_with(h) && text.ends_with(t)
            }
            Shape::General => glob_match(&self.chars, text),
        }
    }
}

impl Serialize for Glob {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.pattern)
    }
}

impl<'de> Deserialize<'de> for Glob {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        String::deserialize(d).map(Glob::new)
    }
}

/// `?` is one character, not one byte: `caf?` matches `café` (section 4, JID globs and
/// `sla.auto_replies`, where names and messages are any language).
fn glob_match(pattern: &[char], text: &str) -> bool {
    let text: Vec<char> = text.chars().collect();
    // Iterative wildcard match with single-star backtracking: linear in practice.
    let (mut p, mut t) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while t < text.len() {
        if p < pattern.len() && (pattern[p] == '?' || pattern[p] == text[t]) {
            p += 1;
            t += 1;
        } else if p < pattern.len() && pattern[p] == '*' {
            star = Some((p, t));
            p += 1;
        } else if let Some((sp, st)) = star {
            p = sp + 1;
            t = st + 1;
            star = Some((sp, st + 1));
        } else {
            return false;
        }
    }
    pattern[p..].iter().all(|&c| c == '*')
}

/// A hash of what a policy value *means*: its serialized form, which is the config as
/// written (no cached tables, no addresses), hashed with a fixed function.
fn meaning_hash(value: &impl Serialize) -> u64 {
    // The policy types serialize to strings, numbers, lists and maps with string keys:
    // serde_json cannot fail on them.
    let bytes = serde_json::to_vec(value).unwrap_or_default();
    xxhash_rust::xxh3::xxh3_64(&bytes)
}

/// A text pattern: a glob over the whole text, or a regex written `/…/`.
#[derive(Debug, Clone)]
pub enum Pattern {
    Glob(Glob),
    Regex(Regex),
}

impl Pattern {
    pub fn parse(text: &str) -> Result<Self, String> {
        match text.strip_prefix('/').and_then(|r| r.strip_suffix('/')) {
            Some(inner) => Regex::new(inner)
                .map(Pattern::Regex)
                .map_err(|e| format!("\"{text}\": invalid regex: {e}")),
            _ => Ok(Pattern::Glob(Glob::new(text))),
        }
    }

    pub fn matches(&self, text: &str) -> bool {
        match self {
            Pattern::Glob(g) => g.matches(text),
            Pattern::Regex(r) => r.is_match(text),
        }
    }
}

impl Serialize for Pattern {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Pattern::Glob(g) => g.serialize(s),
            Pattern::Regex(r) => s.serialize_str(&format!("/{}/", r.as_str())),
        }
    }
}

impl<'de> Deserialize<'de> for Pattern {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        Pattern::parse(&text).map_err(serde::de::Error::custom)
    }
}

/// One `match` entry of a rule.
#[derive(Debug, Clone)]
pub enum Matcher {
    Jid(Glob),
    /// `name:/regex/`
    Name(Regex),
}

impl Matcher {
    /// Parses `"2010*@c.us"` or `"name:/^VIP /"`.
    pub fn parse(text: &str) -> Result<Self, String> {
        match text.strip_prefix("name:") {
            Some(rest) => {
                let inner = rest
                    .strip_prefix('/')
                    .and_then(|r| r.strip_suffix('/'))
                    .filter(|_| rest.len() >= 2)
                    .ok_or_else(|| format!("\"{text}\": a name matcher is written name:/regex/"))?;
                Regex::new(inner)
                    .map(Matcher::Name)
                    .map_err(|e| format!("\"{text}\": invalid regex: {e}"))
            }
            None => Ok(Matcher::Jid(Glob::new(text))),
        }
    }

    fn matches(&self, jid: &str, name: Option<&str>) -> bool {
        match self {
            Matcher::Jid(g) => g.matches(jid),
            Matcher::Name(re) => name.is_some_and(|n| re.is_match(n)),
        }
    }
}

impl Serialize for Matcher {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Matcher::Jid(g) => g.serialize(s),
            Matcher::Name(re) => s.serialize_str(&format!("name:/{}/", re.as_str())),
        }
    }
}

/// A `[[rule]]`: chats it matches get its overrides.
#[derive(Debug, Clone, Serialize)]
pub struct Rule {
    #[serde(rename = "match")]
    pub matchers: Vec<Matcher>,
    pub ignore: bool,
    /// `Some(false)`: timed 24/7 even when business hours are set.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub business_hours: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub escalation: Option<Vec<Tier>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stop_on: Option<StopOn>,
}

/// Everything the engine needs to judge chats; nothing it would need I/O for.
#[derive(Debug, Clone, Default)]
pub struct Policy {
    pub sla: Sla,
    /// Ascending by `after`.
    pub tiers: Vec<Tier>,
    pub rules: Vec<Rule>,
}

/// The policy that applies to one chat after rules are resolved.
#[derive(Debug, Clone, Copy)]
pub struct ChatPolicy<'a> {
    /// Ascending by `after`.
    pub tiers: &'a [Tier],
    pub stop_on: StopOn,
    pub calendar: Option<&'a BusinessHours>,
}

impl Policy {
    /// `None` when the chat is not watched (ignored by glob, by rule, or a group when groups
    /// are excluded).
    pub fn for_chat(&self, jid: &str, name: Option<&str>) -> Option<ChatPolicy<'_>> {
        if self.sla.ignore.iter().any(|g| g.matches(jid)) {
            return None;
        }
        if !self.sla.include_groups && jid.ends_with("@g.us") {
            return None;
        }
        let mut chat = ChatPolicy {
            tiers: &self.tiers,
            stop_on: self.sla.stop_on,
            calendar: self.sla.business_hours.as_ref(),
        };
        if let Some(rule) = self
            .rules
            .iter()
            .find(|r| r.matchers.iter().any(|m| m.matches(jid, name)))
        {
            if rule.ignore {
                return None;
            }
            if let Some(tiers) = &rule.escalation {
                chat.tiers = tiers;
            }
            if let Some(stop_on) = rule.stop_on {
                chat.stop_on = stop_on;
            }
            if rule.business_hours == Some(false) {
                chat.calendar = None;
            }
        }
        Some(chat)
    }

    /// Whether a message body is one of your automatic messages.
    pub fn is_auto_reply(&self, body: Option<&str>) -> bool {
        let body = body.unwrap_or("");
        self.sla.auto_replies.iter().any(|p| p.matches(body))
    }

    /// Whether any chat can be judged with `stop_on = "reply"` (then the instance's
    /// last successful poll must be remembered: section 2, "read is not answered").
    pub fn uses_reply_mode(&self) -> bool {
        self.sla.stop_on == StopOn::Reply
            || self.rules.iter().any(|r| r.stop_on == Some(StopOn::Reply))
    }

    /// Which chats are judged in reply mode, as a number (`None` when none is): reply
    /// mode's high-water mark is kept with it, and a mark taken under another signature
    /// is not trusted (section 2: a switch to reply mode starts from the switch).
    pub fn reply_signature(&self) -> Option<i64> {
        if !self.uses_reply_mode() {
            return None;
        }
        let rules: Vec<_> = self
            .rules
            .iter()
            .map(|r| (&r.matchers, r.ignore, r.stop_on))
            .collect();
        Some(meaning_hash(&(self.sla.stop_on, &self.sla.ignore, rules)) as i64)
    }

    /// A stable number for everything that decides how a chat is judged: the same policy
    /// gives the same seed in every process and at every moment (it feeds the chats'
    /// fingerprints, so a seed that changed would make every chat look new once).
    pub fn seed(&self) -> u64 {
        meaning_hash(&(&self.sla, &self.tiers, &self.rules))
    }

    /// `repeat_after`, when set.
    pub fn repeat_after(&self) -> Option<Duration> {
        (!self.sla.repeat_after.is_zero()).then_some(self.sla.repeat_after)
    }
}

impl ChatPolicy<'_> {
    /// Age that counts against the SLA: open time only, where business hours apply.
    pub fn age(&self, started_at: i64, now: i64) -> i64 {
        match self.calendar {
            Some(c) => c.open_seconds(started_at, now),
            None => (now - started_at).max(0),
        }
    }

    /// The position of the tier whose `after` is `secs`, if it is still configured.
    pub fn tier_index(&self, secs: u64) -> Option<usize> {
        self.tiers.iter().position(|t| t.after.as_secs() == secs)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn globs_match_like_a_shell() {
        let cases = [
            ("*@broadcast", "status@broadcast", true),
            ("*@broadcast", "status@broadcast.x", false),
            ("*@broadcast", "@broadcast", true),
            ("*@broadcast", "broadcast", false),
            ("2010*@c.us", "201012345678@c.us", true),
            ("2010*@c.us", "201112345678@c.us", false),
            ("2010*@c.us", "2010@c.us", true),
            ("ab*ba", "aba", false),
            ("0@c.us", "0@c.us", true),
            ("0@c.us", "10@c.us", false),
            ("?@c.us", "7@c.us", true),
            ("?@c.us", "77@c.us", false),
            ("*", "", true),
            ("**", "x", true),
            ("a*b*c", "axxbyyc", true),
            ("a*b*c", "axxbyy", false),
            ("a*b*c", "abcbc", true),
            ("a?c*", "abcd", true),
            ("a?c*", "ac", false),
            ("*x", "yyy", false),
            // `?` is a character, whatever its length in bytes.
            ("caf?", "café", true),
            ("caf??", "café", false),
            ("?@c.us", "é@c.us", true),
            ("Thanks*?", "Thanks 🙏", true),
            ("*?ق", "مرحبا بك في الدعم ق", true),
            ("👋?", "👋x", true),
        ];
        for (pattern, text, want) in cases {
            assert_eq!(
                Glob::new(pattern).matches(text),
                want,
                "{pattern} vs {text}"
            );
        }
    }

    #[test]
    fn name_matchers_need_slashes_and_a_valid_regex() {
        assert!(matches!(
            Matcher::parse("name:/^VIP /"),
            Ok(Matcher::Name(_))
        ));
        assert!(Matcher::parse("name:VIP").is_err());
        assert!(Matcher::parse("name:/").is_err());
        assert!(Matcher::parse("name:/(/").is_err());
        let m = Matcher::parse("name:/^VIP /").unwrap();
        assert!(m.matches("1@c.us", Some("VIP Nadia")));
        assert!(!m.matches("1@c.us", Some("Nadia")));
        assert!(!m.matches("1@c.us", None));
        assert!(
            Matcher::parse("2010*")
                .unwrap()
                .matches("2010555@c.us", None)
        );
    }

    #[test]
    fn auto_reply_patterns_are_globs_or_slashed_regexes() {
        let p = Pattern::parse("Thanks for contacting*").unwrap();
        assert!(p.matches("Thanks for contacting Acme! We reply within 2h."));
        assert!(!p.matches("Hi! Thanks for contacting us"));
        let r = Pattern::parse("/^Our hours are/").unwrap();
        assert!(r.matches("Our hours are 9 to 6"));
        assert!(!r.matches("Hello. Our hours are 9 to 6"));
        assert!(Pattern::parse("/(/").is_err());
        assert!(matches!(Pattern::parse("/"), Ok(Pattern::Glob(_))));
        let mut policy = Policy::default();
        assert!(!policy.is_auto_reply(Some("anything")));
        policy.sla.auto_replies = vec![p, r];
        assert!(policy.is_auto_reply(Some("Our hours are 9-6")));
        assert!(!policy.is_auto_reply(Some("Sorry for the wait")));
        assert!(!policy.is_auto_reply(None));
        assert_eq!(
            serde_json::to_string(&policy.sla.auto_replies).unwrap(),
            r#"["Thanks for contacting*","/^Our hours are/"]"#
        );
    }

    #[test]
    fn the_first_matching_rule_wins_and_overrides_only_what_it_sets() {
        let tiers15 = vec![Tier {
            after: Duration::from_secs(900),
            notify: vec!["pager".into()],
        }];
        let mut policy = Policy {
            tiers: vec![Tier {
                after: Duration::from_secs(7200),
                notify: vec!["oncall".into()],
            }],
            ..Policy::default()
        };
        policy.rules = vec![
            Rule {
                matchers: vec![Matcher::parse("name:/^VIP /").unwrap()],
                ignore: false,
                business_hours: Some(false),
                escalation: Some(tiers15.clone()),
                stop_on: None,
            },
            Rule {
                matchers: vec![Matcher::parse("*@g.us").unwrap()],
                ignore: false,
                business_hours: None,
                escalation: None,
                stop_on: Some(StopOn::Reply),
            },
            Rule {
                matchers: vec![Matcher::parse("9*").unwrap()],
                ignore: true,
                business_hours: None,
                escalation: None,
                stop_on: None,
            },
        ];
        policy.sla.business_hours = Some(crate::calendar::BusinessHours::new(
            chrono_tz::Tz::UTC,
            Default::default(),
            Default::default(),
        ));
        let vip = policy.for_chat("9@g.us", Some("VIP Nadia")).unwrap();
        assert_eq!(vip.tiers, &tiers15[..]);
        assert_eq!(vip.stop_on, StopOn::Read);
        assert!(vip.calendar.is_none(), "business_hours = false: timed 24/7");
        let group = policy.for_chat("9@g.us", Some("Team")).unwrap();
        assert_eq!(group.tiers[0].after, Duration::from_secs(7200));
        assert_eq!(group.stop_on, StopOn::Reply);
        assert!(
            group.calendar.is_some(),
            "a rule that does not say keeps the hours"
        );
        assert!(policy.for_chat("91@c.us", None).is_none());
        assert!(policy.for_chat("status@broadcast", None).is_none());
        assert!(policy.uses_reply_mode());
        assert_eq!(group.tier_index(7200), Some(0));
        assert_eq!(group.tier_index(900), None);
        policy.sla.include_groups = false;
        assert!(policy.for_chat("8@g.us", Some("VIP x")).is_none());
        policy.rules.clear();
        assert!(!policy.uses_reply_mode());
    }

    #[test]
    fn age_is_wall_time_without_a_calendar_and_never_negative() {
        let cp = ChatPolicy {
            tiers: &[],
            stop_on: StopOn::Read,
            calendar: None,
        };
        assert_eq!(cp.age(100, 160), 60);
        assert_eq!(cp.age(160, 100), 0);
    }

    #[test]
    fn sla_defaults_and_validation_name_the_key() {
        let sla: Sla = toml::from_str("").unwrap();
        assert_eq!(sla.threshold, Duration::from_secs(7200));
        assert_eq!(sla.absent_polls, 3);
        assert!(sla.validate().is_ok());
        let bad = |text: &str| toml::from_str::<Sla>(text).unwrap().validate().unwrap_err();
        assert!(bad("threshold = \"0s\"").contains("sla.threshold"));
        assert!(bad("poll_interval = \"500ms\"").contains("sla.poll_interval"));
        assert!(bad("absent_polls = 0").contains("sla.absent_polls"));
        assert!(bad("blind_after = \"0s\"").contains("sla.blind_after"));
        let err = toml::from_str::<Sla>("treshold = \"1h\"")
            .unwrap_err()
            .to_string();
        assert!(err.contains("treshold"), "{err}");
        let err = toml::from_str::<Sla>("threshold = \"300000000000y\"")
            .unwrap_err()
            .to_string();
        assert!(err.contains("300000000000y"), "{err}");
    }
    /// The fingerprint seed is a function of what the policy means (section 2's rules as
    /// configured), not of how it happens to be held in memory: the business-hours
    /// calendar fills a table of clock changes the first time an age needs it, and a
    /// seed taken from the `Debug` text changed then, so every chat looked new once per
    /// start and a cycle rewrote every open episode.
    #[test]
    fn the_fingerprint_seed_is_a_stable_function_of_the_policys_meaning() {
        let text = r#"
            threshold = "2h"
            [business_hours]
            timezone = "Africa/Cairo"
            mon = "09:00-18:00"
            thu = "09:00-18:00"
        "#;
        let policy = |text: &str| Policy {
            sla: toml::from_str(text).unwrap(),
            tiers: vec![Tier {
                after: Duration::from_secs(7200),
                notify: vec!["oncall".into()],
            }],
            rules: Vec::new(),
        };
        let a = policy(text);
        let before = (a.seed(), format!("{a:?}"));
        // Two years back: the calendar tabulates Cairo's clock changes.
        let cp = a.for_chat("1@c.us", None).unwrap();
        assert!(cp.age(1_700_000_000, 1_780_000_000) > 0);
        let after = (a.seed(), format!("{a:?}"));
        assert_ne!(
            before.1, after.1,
            "the lazy table was filled (the old seed changed)"
        );
        assert_eq!(before.0, after.0, "the seed did not");
        assert_eq!(a.seed(), policy(text).seed(), "same config, same seed");
        let mut other = policy(text);
        other.tiers[0].after = Duration::from_secs(3600);
        assert_ne!(
            a.seed(),
            other.seed(),
            "another tier judges chats otherwise"
        );
        let mut other = policy(text);
        other.sla.stop_on = StopOn::Reply;
        assert_ne!(a.seed(), other.seed());
    }
}
