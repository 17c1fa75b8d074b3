//! Secrets in the type system.
//!
//! A [`Secret`] prints as `***` through `Debug`, `Display` and `Serialize`; its value is
//! reachable only through [`Secret::expose`], so every use of a token, webhook URL or
//! password is a visible act at its point of use. [`Redactor`] scrubs known secrets out of
//! text that came from elsewhere (HTTP client errors, bodies that echo the request).

use std::fmt;

/// A value that must never reach a log line, an error message or command output.
#[derive(Clone, PartialEq, Eq, Default)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Secret(value.into())
    }

    /// The raw value, for the one place that must send it (a query string, a header).
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

impl serde::Serialize for Secret {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str("***")
    }
}

/// Replaces every occurrence of the secrets it knows with `***`.
#[derive(Clone, Default, Debug)]
pub struct Redactor {
    /// Raw values to scrub. Very short values are skipped: replacing "1" everywhere would
    /// mangle every number in a message while protecting nothing.
    secrets: Vec<Secret>,
}

impl Redactor {
    pub fn new<'a>(secrets: impl IntoIterator<Item = &'a Secret>) -> Self {
        let mut all: Vec<Secret> = Vec::new();
        for secret in secrets {
            all.push(secret.clone());
            all.extend(url_parts(secret.expose()).into_iter().map(Secret::new));
        }
        let mut secrets: Vec<Secret> = all.into_iter().filter(|s| s.expose().len() >= 4).collect();
        // Longest first, so a secret that contains another is scrubbed whole.
        secrets.sort_by_key(|s| std::cmp::Reverse(s.expose().len()));
        Redactor { secrets }
    }

    pub fn redact(&self, text: &str) -> String {
        let mut out = redact_query_tokens(text);
        for s in &self.secrets {
            if out.contains(s.expose()) {
                out = out.replace(s.expose(), "***");
            }
        }
        out
    }
}

/// The parts of a secret URL that a server may echo on their own: the path, path
/// segments that look like keys (8+ characters with a digit), query values, a password.
fn url_parts(text: &str) -> Vec<String> {
    let Ok(url) = url::Url::parse(text) else {
        return Vec::new();
    };
    if url.cannot_be_a_base() {
        return Vec::new();
    }
    let mut parts = Vec::new();
    if url.path().len() > 1 {
        parts.push(url.path().to_string());
    }
    for seg in url.path().split('/') {
        if seg.len() >= 8 && seg.bytes().any(|b| b.is_ascii_digit()) {
            parts.push(seg.to_string());
        }
    }
    for (_, v) in url.query_pairs() {
        parts.push(v.into_owned());
    }
    if let Some(pw) = url.password() {
        parts.push(pw.to_string());
    }
    parts
}

/// Blanks `access_token=…` in any URL-looking text, whatever the token is.
pub fn redact_query_tokens(text: &str) -> String {
    const KEY: &str = "access_token=";
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(pos) = rest.find(KEY) {
        let (head, tail) = rest.split_at(pos + KEY.len());
        out.push_str(head);
        let end = tail
            .find(|c: char| {
                c == '&' || c == '"' || c == '\'' || c == ' ' || c == ')' || c.is_whitespace()
            })
            .unwrap_or(tail.len());
        if end > 0 {
            out.push_str("***");
        }
        rest = &tail[end..];
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_display_and_serialize_hide_the_value() {
        let s = Secret::new("tok-123456");
        assert_eq!(format!("{s:?} {s}"), "*** ***");
        assert_eq!(serde_json::to_string(&s).unwrap(), "\"***\"");
        assert_eq!(s.expose(), "tok-123456");
    }

    #[test]
    fn a_secret_urls_echoed_path_is_scrubbed_too() {
        let r = Redactor::new([&Secret::new(
            "https://hooks.slack.com/services/T0001/B0002/abcdEFGH1234",
        )]);
        assert_eq!(
            r.redact("no_service for /services/T0001/B0002/abcdEFGH1234 (key abcdEFGH1234)"),
            "no_service for *** (key ***)"
        );
        assert_eq!(
            r.redact("see https://hooks.slack.com/services/x"),
            "see https://hooks.slack.com/services/x"
        );
    }

    #[test]
    fn redactor_scrubs_known_secrets_and_query_tokens() {
        let r = Redactor::new([&Secret::new("hunter2-secret")]);
        let text =
            "GET /v2/chats/overview?instance_id=1&access_token=abc&limit=5 said hunter2-secret";
        assert_eq!(
            r.redact(text),
            "GET /v2/chats/overview?instance_id=1&access_token=***&limit=5 said ***"
        );
    }
}
