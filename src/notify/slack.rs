//! The Slack channel: an incoming-webhook POST with Block Kit blocks and a `text` fallback.
//!
//! Within Slack's limits: the first [`FULL_CHATS`] chats in full, then "+N more"; at most
//! 50 blocks and 3,000 characters a section. Every WhatsApp-sourced string is escaped for
//! mrkdwn (`&`, `<`, `>`), so `<!channel>` in a contact name pings nobody, and
//! `link_names` is never set. At most one message per second per webhook.

use super::{SendError, classify_http, transport_error};
use crate::alert::{AlertChat, AlertDoc, Status, short_duration, utc_time};
use crate::notify::text::{clip, one_line};
use crate::secret::{Redactor, Secret};
use serde_json::{Value, json};
use std::time::Duration;
use tokio::sync::Mutex;
use tokio::time::Instant;

/// Chats shown in full; the rest are counted.
pub const FULL_CHATS: usize = 20;
const SECTION_CHARS: usize = 2900;
const MIN_INTERVAL: Duration = Duration::from_secs(1);

pub struct Slack {
    http: reqwest::Client,
    webhook_url: Secret,
    redactor: Redactor,
    /// When the last message went out; holding the lock across a send also keeps one
    /// webhook's messages in order.
    last_sent: Mutex<Option<Instant>>,
}

impl Slack {
    pub fn new(http: reqwest::Client, webhook_url: Secret, redactor: Redactor) -> Self {
        Slack {
            http,
            webhook_url,
            redactor,
            last_sent: Mutex::new(None),
        }
    }

    pub async fn send(&self, doc: &AlertDoc) -> Result<String, SendError> {
        let payload = render(doc);
        let mut last = self.last_sent.lock().await;
        if let Some(at) = *last {
            tokio::time::sleep_until(at + MIN_INTERVAL).await;
        }
        let result = self
            .http
            .post(self.webhook_url.expose())
            .json(&payload)
            .send()
            .await;
        *last = Some(Instant::now());
        let response = result.map_err(|e| transport_error(e, &self.redactor))?;
        let status = response.status();
        let headers = response.headers().clone();
        let body = self
            .redactor
            .redact(&response.text().await.unwrap_or_default());
        classify_http(status, &headers, &body)?;
        Ok(if body.trim().is_empty() {
            status.to_string()
        } else {
            clip(body.trim(), 100)
        })
    }
}

/// Escapes text for Slack mrkdwn: control characters `&`, `<`, `>`.
pub fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// The webhook payload for a document.
pub fn render(doc: &AlertDoc) -> Value {
    let (summary, _) = super::text::render(doc);
    let icon = match doc.status {
        Status::Firing => ":rotating_light:",
        Status::Resolved => ":white_check_mark:",
        Status::Blind => ":see_no_evil:",
        Status::Recovered => ":eyes:",
        Status::Test => ":wave:",
    };
    let mut blocks = vec![json!({
        "type": "section",
        "text": {"type": "mrkdwn", "text": format!("{icon} *{}*", escape(&summary))}
    })];
    if let Some(m) = &doc.message {
        blocks.push(section(&escape(&one_line(m))));
    }
    for chat in doc.chats.iter().take(FULL_CHATS) {
        blocks.push(section(&chat_text(doc.status, chat)));
    }
    if doc.chats.len() > FULL_CHATS {
        blocks.push(json!({
            "type": "context",
            "elements": [{"type": "mrkdwn", "text": format!("+{} more", doc.chats.len() - FULL_CHATS)}]
        }));
    }
    json!({
        "text": format!("{icon} {}", escape(&summary)),
        "blocks": blocks,
        "unfurl_links": false,
        "unfurl_media": false,
    })
}

fn section(text: &str) -> Value {
    json!({"type": "section", "text": {"type": "mrkdwn", "text": clip(text, SECTION_CHARS)}})
}

fn chat_text(status: Status, c: &AlertChat) -> String {
    let name = c
        .name
        .as_deref()
        .map(|n| escape(&clip(&one_line(n), 100)))
        .unwrap_or_else(|| "(no name)".into());
    let mut out = format!(
        "*{name}* `{}` ({}) · tier {}",
        escape(&c.id),
        c.kind,
        c.tier + 1
    );
    let sla_note = if c.sla_seconds != c.waiting_seconds {
        format!(", {} in business hours", short_duration(c.sla_seconds))
    } else {
        String::new()
    };
    match status {
        Status::Resolved => out.push_str(&format!(
            "\nwaited {}{sla_note} (since {})",
            short_duration(c.waiting_seconds),
            utc_time(c.waiting_since)
        )),
        _ => {
            let unread = match c.unread_count {
                Some(-1) => "marked unread".to_string(),
                Some(n) => format!("{n} unread"),
                None => "unread unknown".into(),
            };
            out.push_str(&format!(
                "\n{unread} · waiting since {} ({}{sla_note})",
                utc_time(c.waiting_since),
                short_duration(c.waiting_seconds)
            ));
        }
    }
    if let Some(body) = c
        .last_message
        .as_ref()
        .and_then(|m| m.body.as_deref())
        .filter(|b| !b.is_empty())
    {
        out.push_str(&format!("\n> {}", escape(&one_line(body))));
    }
    if let Some(link) = c.link() {
        out.push_str(&format!("\n<{link}|Open in WhatsApp>"));
    }
    out
}
