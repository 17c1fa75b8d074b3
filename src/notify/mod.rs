//! Channels: how a finished alert document reaches people.
//!
//! Each channel type has one file: `console`, `slack`, `email`, `webhook`, `pagerduty`,
//! `alertmanager`, `teams`. It holds the type's `[[channel]]` keys, their defaults and
//! checks, which of them are secrets, whether it gets a digest or a document per chat, and
//! its sender ([`ChannelType`], [`Sender`]); [`TYPES`] names them, and `types` is what
//! treats them alike. `text` renders the plain-text form the others build on. A channel
//! sends what it is given and says how it went ([`SendError::Retry`] or
//! [`SendError::Permanent`]); it must not decide who gets told (that is `sla` and `alert`)
//! nor when to retry (that is `outbox`). This file also holds what the senders share: the
//! HTTP POST with its bounded answer and classification, the pacing some receivers ask
//! for, and the HMAC-SHA256 check of what their services send back (Slack's button clicks,
//! PagerDuty's webhooks: the types parse and check those; `hooks` serves them).

pub mod alertmanager;
pub mod console;
pub mod email;
pub mod pagerduty;
pub mod slack;
pub mod teams;
pub mod text;
pub mod types;
pub mod webhook;

pub use types::{ChannelConfig, ChannelType, Context, Sender, Setup, Type};

use crate::alert::AlertDoc;
use crate::secret::{Redactor, Secret};
use reqwest::Url;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

/// Every channel type, by its `type` key, in the order messages list them. A new type is
/// a file beside this one (with its `pub mod` above) and its line here.
pub static TYPES: &[Type] = &[
    Type::of::<slack::Settings>(),
    Type::of::<email::Settings>(),
    Type::of::<webhook::Settings>(),
    Type::of::<console::Settings>(),
    Type::of::<pagerduty::Settings>(),
    Type::of::<alertmanager::Settings>(),
    Type::of::<teams::Settings>(),
];

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum SendError {
    /// Worth another try: a timeout, a connection error, 5xx, 429.
    #[error("{reason}")]
    Retry {
        reason: String,
        retry_after: Option<Duration>,
    },
    /// Will never work as configured: a 4xx other than 429, a refused sender.
    #[error("{0}")]
    Permanent(String),
}

/// One configured channel, ready to send.
pub struct Channel {
    type_name: &'static str,
    sender: Box<dyn types::AnySender>,
    /// The whole send, connection to answer, must finish within this (`delivery.timeout`).
    timeout: Duration,
}

impl Channel {
    /// Sends one document; on success returns what the receiver said.
    pub async fn send(&self, doc: &AlertDoc) -> Result<String, SendError> {
        self.within_timeout(self.sender.send_boxed(doc)).await
    }

    /// Sends a `test` document: what `test-notify` does. PagerDuty's test is a trigger
    /// immediately followed by its resolve, so nobody stays paged.
    pub async fn test(&self, doc: &AlertDoc) -> Result<String, SendError> {
        self.within_timeout(self.sender.test_boxed(doc)).await
    }

    async fn within_timeout(&self, attempt: types::Sending<'_>) -> Result<String, SendError> {
        // Pacing (Slack, PagerDuty) happens inside the attempt; allow a second for it.
        match tokio::time::timeout(self.timeout + Duration::from_secs(1), attempt).await {
            Ok(result) => result,
            Err(_) => Err(SendError::Retry {
                reason: format!(
                    "the receiver did not answer within {} (delivery.timeout)",
                    crate::duration::format(self.timeout)
                ),
                retry_after: None,
            }),
        }
    }

    pub fn type_name(&self) -> &'static str {
        self.type_name
    }

    /// The Alertmanager integration, for re-sending what is still firing.
    pub fn alertmanager(&self) -> Option<&alertmanager::Alertmanager> {
        self.sender.as_any().downcast_ref()
    }
}

/// The configured channels by name.
pub type Channels = Arc<HashMap<String, Arc<Channel>>>;

#[derive(Debug, thiserror::Error)]
#[error("channel \"{channel}\": {message}")]
pub struct BuildError {
    pub channel: String,
    pub message: String,
}

/// What building the channels takes from the configuration (`&Config` converts into it).
pub struct Plan<'a> {
    pub channels: &'a [ChannelConfig],
    /// Whether every secret was read: without them nothing can be sent.
    pub secrets_read: bool,
    /// Every secret in the configuration, scrubbed from receivers' answers and errors.
    pub secrets: Vec<Secret>,
    /// `delivery.timeout`.
    pub timeout: Duration,
    /// `http.external_url`.
    pub external_url: Option<Url>,
    /// How long an alert must outlast the daemon that last sent it.
    pub takeover: Duration,
    /// The clock documents are dated by (the daemon's: a test's paused clock).
    pub clock: crate::clock::Clock,
}

/// Builds every configured channel. Needs a configuration whose secrets were read.
pub fn build<'a>(plan: impl Into<Plan<'a>>) -> Result<Channels, BuildError> {
    let plan = plan.into();
    if !plan.secrets_read {
        return Err(BuildError {
            channel: "(all)".into(),
            message: "the channels' secrets were not read (this command cannot send)".into(),
        });
    }
    let timeout = plan.timeout;
    let http = reqwest::Client::builder()
        .timeout(timeout)
        .connect_timeout(Duration::from_secs(10))
        .user_agent(concat!("inbox-sla/", env!("CARGO_PKG_VERSION")))
        .build()
        .map_err(|e| BuildError {
            channel: "(all)".into(),
            message: format!("cannot build the HTTP client: {e}"),
        })?;
    let context = Context {
        http,
        timeout,
        redactor: Redactor::new(plan.secrets.iter()),
        external_url: plan.external_url,
        takeover: plan.takeover,
        clock: plan.clock,
    };
    let mut out = HashMap::new();
    for c in plan.channels {
        let sender = c.sender(&context).map_err(|message| BuildError {
            channel: c.name.clone(),
            message,
        })?;
        let channel = Channel {
            type_name: c.type_name(),
            sender,
            timeout,
        };
        out.insert(c.name.clone(), Arc::new(channel));
    }
    Ok(Arc::new(out))
}

/// Receivers' answers are read up to this many bytes; the rest is cut, never buffered
/// (docs/spec.md section 6: a receiver that streams megabytes cannot fill our memory).
pub const MAX_ANSWER_BYTES: usize = 64 * 1024;

/// An HTTP receiver's answer: status, headers, and at most [`MAX_ANSWER_BYTES`] of body.
pub(crate) struct Answer {
    pub status: reqwest::StatusCode,
    pub headers: reqwest::header::HeaderMap,
    pub body: String,
}

/// Reads a response's body chunk by chunk, stopping at [`MAX_ANSWER_BYTES`]. A body cut
/// short by a broken connection is what arrived (the status already says how it went).
pub(crate) async fn read_answer(mut response: reqwest::Response, redactor: &Redactor) -> Answer {
    let status = response.status();
    let headers = response.headers().clone();
    let mut body = Vec::new();
    while let Ok(Some(chunk)) = response.chunk().await {
        let room = MAX_ANSWER_BYTES - body.len();
        body.extend_from_slice(&chunk[..chunk.len().min(room)]);
        if body.len() >= MAX_ANSWER_BYTES {
            break;
        }
    }
    Answer {
        status,
        headers,
        body: redactor.redact(&String::from_utf8_lossy(&body)),
    }
}

/// POSTs `body` as JSON and classifies the answer: `Ok` with the answer on 2xx, a
/// [`SendError`] otherwise (transport failures, 5xx and 429 worth a retry, other 4xx
/// permanent). The answer is read only up to [`MAX_ANSWER_BYTES`] and redacted.
pub(crate) async fn post_json(
    request: reqwest::RequestBuilder,
    body: &serde_json::Value,
    redactor: &Redactor,
) -> Result<Answer, SendError> {
    let response = request
        .json(body)
        .send()
        .await
        .map_err(|e| transport_error(e, redactor))?;
    let answer = read_answer(response, redactor).await;
    classify_http(answer.status, &answer.headers, &answer.body)?;
    Ok(answer)
}

/// At most one send per `every`, in order: receivers that ask for it (Slack one a
/// second per webhook, PagerDuty two a second per routing key) get it.
pub(crate) struct Pacer {
    every: Duration,
    /// When the last send went out; holding the lock across a send keeps order too.
    last: tokio::sync::Mutex<Option<tokio::time::Instant>>,
}

impl Pacer {
    pub fn new(every: Duration) -> Pacer {
        Pacer {
            every,
            last: tokio::sync::Mutex::new(None),
        }
    }

    /// Runs `send` no sooner than `every` after the previous one.
    pub async fn paced<T>(&self, send: impl std::future::Future<Output = T>) -> T {
        let mut last = self.last.lock().await;
        if let Some(at) = *last {
            tokio::time::sleep_until(at + self.every).await;
        }
        let result = send.await;
        *last = Some(tokio::time::Instant::now());
        result
    }
}

/// Classifies an HTTP answer per docs/spec.md section 6.
pub(crate) fn classify_http(
    status: reqwest::StatusCode,
    headers: &reqwest::header::HeaderMap,
    body: &str,
) -> Result<(), SendError> {
    if status.is_success() {
        return Ok(());
    }
    let said: String = body
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
        .chars()
        .take(200)
        .collect();
    let reason = if said.is_empty() {
        format!("the receiver answered {status}")
    } else {
        format!("the receiver answered {status}: {said}")
    };
    if status.as_u16() == 429 || status.is_server_error() || status.as_u16() == 408 {
        Err(SendError::Retry {
            reason,
            retry_after: retry_after(headers),
        })
    } else {
        Err(SendError::Permanent(format!(
            "{reason} (permanent: check the URL and credentials)"
        )))
    }
}

/// `Retry-After` as seconds or an HTTP date.
fn retry_after(headers: &reqwest::header::HeaderMap) -> Option<Duration> {
    let value = headers
        .get(reqwest::header::RETRY_AFTER)?
        .to_str()
        .ok()?
        .trim();
    if let Ok(secs) = value.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    // A date is measured against the receiver's own `Date` (RFC 9110: a server with a
    // clock sends one), so neither our clock nor the skew between the two matters; without
    // one, the usual backoff applies.
    let date = |h: &str| chrono::DateTime::parse_from_rfc2822(h).ok();
    let when = date(value)?;
    let said = date(headers.get(reqwest::header::DATE)?.to_str().ok()?.trim())?;
    let secs = when.timestamp() - said.timestamp();
    Some(Duration::from_secs(secs.max(0) as u64))
}

/// A transport-level failure (no HTTP answer): always worth a retry.
pub(crate) fn transport_error(e: reqwest::Error, redactor: &Redactor) -> SendError {
    let kind = if e.is_timeout() {
        "timed out"
    } else if e.is_connect() {
        "could not connect"
    } else {
        "request failed"
    };
    let e = e.without_url();
    let reason = crate::with_causes(kind.to_string(), &e);
    SendError::Retry {
        reason: redactor.redact(&reason),
        retry_after: None,
    }
}

/// Whether `hex_tag` is the hex HMAC-SHA256 of the concatenated `parts` under `key`,
/// compared in constant time (`aws_lc_rs::hmac::verify`): how Slack signs a button click
/// and PagerDuty a webhook. A tag that is not hex is no match.
pub(crate) fn hmac_sha256_matches(key: &Secret, parts: &[&[u8]], hex_tag: &str) -> bool {
    let Some(tag) = from_hex(hex_tag.trim()) else {
        return false;
    };
    let key = aws_lc_rs::hmac::Key::new(aws_lc_rs::hmac::HMAC_SHA256, key.expose().as_bytes());
    aws_lc_rs::hmac::verify(&key, &parts.concat(), &tag).is_ok()
}

/// Hex digits as bytes; `None` for an odd length or a character that is not hex.
pub(crate) fn from_hex(text: &str) -> Option<Vec<u8>> {
    if !text.len().is_multiple_of(2) || !text.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&text[i..i + 2], 16).ok())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use reqwest::header::{DATE, HeaderMap, HeaderValue, RETRY_AFTER};

    fn headers(pairs: &[(reqwest::header::HeaderName, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(k.clone(), HeaderValue::from_str(v).unwrap());
        }
        h
    }

    /// `Retry-After` as a date is measured against the receiver's `Date`, whatever this
    /// machine's clock says (a receiver's clock minutes off must not stretch or cancel the
    /// wait); seconds are seconds; a date without `Date` leaves the usual backoff.
    #[test]
    fn retry_after_is_seconds_or_a_date_against_the_receivers_own_clock() {
        let at = |s: &str| (RETRY_AFTER, s.to_string());
        let h = |r: (reqwest::header::HeaderName, String), date: Option<&str>| {
            let mut v = vec![(r.0, r.1)];
            if let Some(d) = date {
                v.push((DATE, d.to_string()));
            }
            headers(
                &v.iter()
                    .map(|(k, v)| (k.clone(), v.as_str()))
                    .collect::<Vec<_>>(),
            )
        };
        assert_eq!(
            retry_after(&h(at("120"), None)),
            Some(Duration::from_secs(120))
        );
        let said = "Tue, 01 Jan 2030 10:00:00 GMT";
        assert_eq!(
            retry_after(&h(at("Tue, 01 Jan 2030 10:00:30 GMT"), Some(said))),
            Some(Duration::from_secs(30))
        );
        assert_eq!(
            retry_after(&h(at("Tue, 01 Jan 2030 09:59:00 GMT"), Some(said))),
            Some(Duration::ZERO)
        );
        assert_eq!(
            retry_after(&h(at("Tue, 01 Jan 2030 10:00:30 GMT"), None)),
            None
        );
        assert_eq!(retry_after(&h(at("soon"), Some(said))), None);
    }
}
