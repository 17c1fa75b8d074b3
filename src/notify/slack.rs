//! The Slack channel: an incoming-webhook POST with Block Kit blocks and a `text` fallback.
//!
//! Within Slack's limits: the first [`FULL_CHATS`] chats in full, then "+N more"; at most
//! 50 blocks and 3,000 characters a section. Every WhatsApp-sourced string is escaped for
//! mrkdwn (`&`, `<`, `>`), so `<!channel>` in a contact name pings nobody, and
//! `link_names` is never set. Text is cut before it is escaped, and a section that must
//! still be cut is cut outside any `&amp;` entity or `<link|label>`. At most one message a
//! second per webhook.

use super::{ChannelType, Context, Pacer, SendError, Sender, Setup, post_json, text};
use crate::alert::{AlertChat, AlertDoc, Shape, Status, short_duration, utc_time};
use crate::secret::{Redactor, Secret};
use crate::untrusted;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use std::path::PathBuf;
use std::time::Duration;

/// Chats shown in full; the rest are counted.
pub const FULL_CHATS: usize = 20;
/// Slack's limit on a section's text is 3,000 characters.
const SECTION_CHARS: usize = 2900;
const MIN_INTERVAL: Duration = Duration::from_secs(1);

/// `type = "slack"`: the table's keys.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Keys {
    webhook_url: Option<String>,
    webhook_url_file: Option<PathBuf>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Settings {
    /// An incoming-webhook URL: https unless loopback.
    pub webhook_url: Secret,
}

impl ChannelType for Settings {
    const NAME: &'static str = "slack";
    const SHAPE: Shape = Shape::Digest;
    type Keys = Keys;
    type Sender = Slack;

    fn new(keys: Keys, setup: &mut Setup) -> Result<Self, String> {
        let webhook_url =
            setup.secret_url("webhook_url", keys.webhook_url, keys.webhook_url_file, "")?;
        Ok(Settings { webhook_url })
    }

    fn secrets(&self) -> Vec<&Secret> {
        vec![&self.webhook_url]
    }

    fn sender(&self, context: &Context) -> Result<Slack, String> {
        Ok(Slack::new(
            context.http.clone(),
            self.webhook_url.clone(),
            context.redactor.clone(),
        ))
    }
}

pub struct Slack {
    http: reqwest::Client,
    webhook_url: Secret,
    redactor: Redactor,
    /// One message a second per webhook, in order.
    pacer: Pacer,
}

impl Slack {
    pub fn new(http: reqwest::Client, webhook_url: Secret, redactor: Redactor) -> Self {
        Slack {
            http,
            webhook_url,
            redactor,
            pacer: Pacer::new(MIN_INTERVAL),
        }
    }
}

impl Sender for Slack {
    async fn send(&self, doc: &AlertDoc) -> Result<String, SendError> {
        let payload = render(doc);
        let request = self.http.post(self.webhook_url.expose());
        let answer = self
            .pacer
            .paced(post_json(request, &payload, &self.redactor))
            .await?;
        Ok(if answer.body.trim().is_empty() {
            answer.status.to_string()
        } else {
            untrusted::display(&answer.body, 100).into_owned()
        })
    }
}

/// Escapes text for Slack mrkdwn: control characters `&`, `<`, `>`.
pub fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// Cuts escaped mrkdwn to at most `max` characters without splitting an entity (`&amp;`),
/// a link (`<https://…|label>`) or a grapheme.
pub fn clip_mrkdwn(text: &str, max: usize) -> String {
    if text.chars().count() <= max {
        return text.to_string();
    }
    let clipped = untrusted::clip_chars(text, max);
    let mut kept = clipped.trim_end_matches(untrusted::ELLIPSIS).to_string();
    // Back out of an entity or a link the cut fell into.
    for (open, close) in [('&', ';'), ('<', '>')] {
        if let Some(at) = kept.rfind(open)
            && !kept[at..].contains(close)
        {
            kept.truncate(at);
        }
    }
    kept.push(untrusted::ELLIPSIS);
    kept
}

/// The webhook payload for a document.
pub fn render(doc: &AlertDoc) -> Value {
    let summary = text::summary(doc);
    let icon = match doc.status {
        Status::Firing => ":rotating_light:",
        Status::Resolved => ":white_check_mark:",
        Status::Blind => ":see_no_evil:",
        Status::Recovered => ":eyes:",
        Status::Acknowledged => ":raising_hand:",
        Status::Test => ":wave:",
    };
    let mut blocks = vec![section(&format!("{icon} *{}*", escape(&summary)))];
    if let Some(m) = &doc.message {
        blocks.push(section(&escape(&untrusted::display(m, 2000))));
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
        "text": clip_mrkdwn(&format!("{icon} {}", escape(&summary)), SECTION_CHARS),
        "blocks": blocks,
        "unfurl_links": false,
        "unfurl_media": false,
    })
}

fn section(text: &str) -> Value {
    json!({"type": "section", "text": {"type": "mrkdwn", "text": clip_mrkdwn(text, SECTION_CHARS)}})
}

fn chat_text(status: Status, c: &AlertChat) -> String {
    let mut out = format!(
        "*{}* `{}` ({}) · tier {}",
        escape(&text::name(c)),
        escape(&untrusted::display(&c.id, 100)),
        c.kind,
        c.tier + 1
    );
    match status {
        Status::Resolved => out.push_str(&format!("\n{}", text::ended(c))),
        _ => out.push_str(&format!(
            "\n{} · waiting since {} ({}{})",
            text::unread(c),
            utc_time(c.waiting_since),
            short_duration(c.waiting_seconds),
            text::business_note(c)
        )),
    }
    if let Some(ack) = text::acknowledged(c) {
        out.push_str(&format!("\n:raising_hand: {}", escape(&ack)));
    }
    if let Some(p) = text::preview(c) {
        out.push_str(&format!("\n> {}", escape(&p)));
    }
    if let Some(link) = c.link() {
        out.push_str(&format!("\n<{link}|Open in WhatsApp>"));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clipping_never_cuts_an_entity_a_link_or_a_grapheme() {
        let text = format!("{}&amp;b", "a".repeat(8));
        assert_eq!(clip_mrkdwn(&text, 11), "aaaaaaaa…");
        let link = format!("{} <https://wa.me/1|Open>", "a".repeat(5));
        assert_eq!(clip_mrkdwn(&link, 15), "aaaaa …");
        assert_eq!(clip_mrkdwn(&link, 100), link);
        let flags = "🇪🇬🇪🇬🇪🇬";
        let cut = clip_mrkdwn(flags, 4);
        assert_eq!(cut, "🇪🇬…");
        assert_eq!(clip_mrkdwn("a&lt;b&gt;c", 8), "a&lt;b…");
    }
}
