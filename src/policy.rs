//! The SLA policy: which chats are watched, which tiers apply to them, how their age counts.
//!
//! Built once from the configuration (see `config`), then consulted by the engine (`sla`)
//! for every chat. Resolving a chat's policy is pure: globs and regexes over the JID and the
//! name, first matching rule wins.

use crate::calendar::BusinessHours;
use regex::Regex;
use serde::Serialize;
use std::time::Duration;

/// What ends an episode (PRODUCT.md section 2, "read is not answered").
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum StopOn {
    /// Reading the chat (unread count 0) ends the episode.
    Read,
    /// Only an answer (`lastMessage.fromMe: true`) ends it.
    Reply,
}

/// One escalation tier: after `after` of waiting, tell `notify`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Tier {
    #[serde(serialize_with = "crate::config::ser_duration")]
    pub after: Duration,
    /// Channel names; validated against the configured channels.
    pub notify: Vec<String>,
}

/// A JID glob: `*` any run of characters, `?` one character.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(into = "String")]
pub struct Glob {
    pattern: String,
    /// Every chat of every cycle meets every glob: the usual shapes ("*@broadcast",
    /// "2010*@c.us", "0@c.us") are decided once, here, not on each match.
    shape: Shape,
}

#[derive(Debug, Clone, PartialEq)]
enum Shape {
    Exact,
    /// One `*`: the text must start with `head` and end with `tail`.
    HeadTail {
        head: usize,
    },
    General,
}

impl From<Glob> for String {
    fn from(g: Glob) -> String {
        g.pattern
    }
}

impl Glob {
    pub fn new(pattern: impl Into<String>) -> Self {
        let pattern = pattern.into();
        let shape = match (pattern.contains('?'), pattern.matches('*').count()) {
            (false, 0) => Shape::Exact,
            (false, 1) => Shape::HeadTail {
                head: pattern.find('*').unwrap_or(0),
            },
            _ => Shape::General,
        };
        Glob { pattern, shape }
    }

    pub fn matches(&self, text: &str) -> bool {
        match self.shape {
            Shape::Exact => self.pattern == text,
            Shape::HeadTail { head } => {
                let (h, t) = (&self.pattern[..head], &self.pattern[head + 1..]);
                text.len() >= h.len() + t.len() && text.starts_with(h) && text.ends_with(t)
            }
            Shape::General => glob_match(self.pattern.as_bytes(), text.as_bytes()),
        }
    }
}

fn glob_match(pattern: &[u8], text: &[u8]) -> bool {
    // Iterative wildcard match with single-star backtracking: linear in practice.
    let (mut p, mut t) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while t < text.len() {
        if p < pattern.len() && (pattern[p] == b'?' || pattern[p] == text[t]) {
            p += 1;
            t += 1;
        } else if p < pattern.len() && pattern[p] == b'*' {
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
    pattern[p..].iter().all(|&c| c == b'*')
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
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
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
#[derive(Debug, Clone, Serialize)]
pub struct Policy {
    pub tiers: Vec<Tier>,
    pub rules: Vec<Rule>,
    pub stop_on: StopOn,
    pub include_groups: bool,
    pub ignore: Vec<Glob>,
    pub include_preview: bool,
    pub send_resolved: bool,
    /// `None`: never re-notify an open episode.
    #[serde(serialize_with = "crate::config::ser_opt_duration")]
    pub repeat_after: Option<Duration>,
    /// 0: off. Otherwise an episode whose unread count reaches it moves to its next tier.
    pub nudge_unread: u32,
    #[serde(skip)]
    pub business_hours: Option<BusinessHours>,
}

/// The policy that applies to one chat after rules are resolved.
#[derive(Debug, Clone, Copy)]
pub struct ChatPolicy<'a> {
    pub tiers: &'a [Tier],
    pub stop_on: StopOn,
    pub calendar: Option<&'a BusinessHours>,
}

impl Policy {
    /// `None` when the chat is not watched (ignored by glob, by rule, or a group when groups
    /// are excluded).
    pub fn for_chat(&self, jid: &str, name: Option<&str>) -> Option<ChatPolicy<'_>> {
        if self.ignore.iter().any(|g| g.matches(jid)) {
            return None;
        }
        if !self.include_groups && jid.ends_with("@g.us") {
            return None;
        }
        let mut chat = ChatPolicy {
            tiers: &self.tiers,
            stop_on: self.stop_on,
            calendar: self.business_hours.as_ref(),
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
}

impl ChatPolicy<'_> {
    /// Age that counts against the SLA: open time only, where business hours apply.
    pub fn age(&self, started_at: i64, now: i64) -> i64 {
        match self.calendar {
            Some(c) => c.open_seconds(started_at, now),
            None => (now - started_at).max(0),
        }
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
            ("2010*@c.us", "201012345678@c.us", true),
            ("2010*@c.us", "201112345678@c.us", false),
            ("0@c.us", "0@c.us", true),
            ("0@c.us", "10@c.us", false),
            ("?@c.us", "7@c.us", true),
            ("*", "", true),
            ("a*b*c", "axxbyyc", true),
            ("a*b*c", "axxbyy", false),
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
        assert!(Matcher::parse("name:/(/").is_err());
    }
}
