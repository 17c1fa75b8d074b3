//! The Microsoft Teams channel: a Teams Workflows webhook, posting the digest as an
//! Adaptive Card (1.4) in the `attachments` envelope Workflows expect.
//!
//! Like Slack: the first [`FULL_CHATS`] chats in full, then "+N more", and the whole
//! message under [`MAX_BYTES`] (Teams refuses larger ones) whatever the names hold: chats
//! are dropped from the card, into "+N more", until it fits. Names and previews are
//! escaped for the card's markdown (a name `**URGENT**` shows as written) and cannot invoke
//! its `{{DATE()}}` functions. 429 and 5xx are retried.

use super::{ChannelType, Context, SendError, Sender, Setup, post_json, text};
use crate::alert::{AlertChat, AlertDoc, Shape, Status, short_duration, utc_time};
use crate::secret::{Redactor, Secret};
use crate::untrusted;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use std::path::PathBuf;

/// Chats shown in full; the rest are counted.
pub const FULL_CHATS: usize = 20;
/// Teams refuses messages over 28 KB.
pub const MAX_BYTES: usize = 28 * 1024 - 512;

/// `type = "teams"`: the table's keys.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Keys {
    webhook_url: Option<String>,
    webhook_url_file: Option<PathBuf>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Settings {
    /// A Teams Workflows webhook URL: https unless loopback.
    pub webhook_url: Secret,
}

impl ChannelType for Settings {
    const NAME: &'static str = "teams";
    const SHAPE: Shape = Shape::Digest;
    type Keys = Keys;
    type Sender = Teams;

    fn new(keys: Keys, setup: &mut Setup) -> Result<Self, String> {
        let webhook_url = setup.secret_url(
            "webhook_url",
            keys.webhook_url,
            keys.webhook_url_file,
            " (from the Teams channel's Workflows webhook)",
        )?;
        Ok(Settings { webhook_url })
    }

    fn secrets(&self) -> Vec<&Secret> {
        vec![&self.webhook_url]
    }

    fn sender(&self, context: &Context) -> Result<Teams, String> {
        Ok(Teams::new(
            context.http.clone(),
            self.webhook_url.clone(),
            context.redactor.clone(),
        ))
    }
}

pub struct Teams {
    http: reqwest::Client,
    webhook_url: Secret,
    redactor: Redactor,
}

impl Teams {
    pub fn new(http: reqwest::Client, webhook_url: Secret, redactor: Redactor) -> Self {
        Teams {
            http,
            webhook_url,
            redactor,
        }
    }
}

impl Sender for Teams {
    async fn send(&self, doc: &AlertDoc) -> Result<String, SendError> {
        let message = render(doc);
        let request = self.http.post(self.webhook_url.expose());
        let answer = post_json(request, &message, &self.redactor).await?;
        Ok(answer.status.to_string())
    }
}

/// Escapes text for Adaptive Card markdown (emphasis, links, code, and the list or
/// heading a line may start with), and defuses `{{DATE(…)}}` functions.
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 8);
    for (i, c) in text.chars().enumerate() {
        let leading = i == 0 && "#-+".contains(c);
        if leading || "\\*_[]`~<>|".contains(c) {
            out.push('\\');
        }
        out.push(c);
    }
    // "1. item" would become a list.
    if let Some(dot) = out.find(". ")
        && dot > 0
        && out[..dot].bytes().all(|b| b.is_ascii_digit())
    {
        out.insert(dot, '\\');
    }
    out.replace("{{", "{ {").replace("}}", "} }")
}

fn block(text: String) -> Value {
    json!({"type": "TextBlock", "text": text, "wrap": true})
}

fn chat_container(status: Status, c: &AlertChat) -> Value {
    let mut items = vec![json!({
        "type": "TextBlock",
        "text": format!(
            "**{}** · {} ({}) · tier {}",
            escape(&text::name(c)),
            escape(&untrusted::display(&c.id, 100)),
            c.kind,
            c.tier + 1
        ),
        "wrap": true,
    })];
    let detail = match status {
        Status::Resolved => text::ended(c),
        _ => format!(
            "{} · waiting since {} ({}{})",
            text::unread(c),
            utc_time(c.waiting_since),
            short_duration(c.waiting_seconds),
            text::business_note(c)
        ),
    };
    items.push(json!({"type": "TextBlock", "text": escape(&detail), "wrap": true, "isSubtle": true, "spacing": "None"}));
    if let Some(ack) = text::acknowledged(c) {
        items.push(
            json!({"type": "TextBlock", "text": escape(&ack), "wrap": true, "spacing": "None"}),
        );
    }
    if let Some(p) = text::preview(c) {
        items.push(json!({"type": "TextBlock", "text": format!("“{}”", escape(&p)), "wrap": true, "spacing": "Small"}));
    }
    if let Some(link) = c.link() {
        items.push(json!({
            "type": "ActionSet",
            "actions": [{"type": "Action.OpenUrl", "title": "Open in WhatsApp", "url": link}],
        }));
    }
    json!({"type": "Container", "separator": true, "items": items})
}

/// The card with the first `shown` chats.
fn card(doc: &AlertDoc, shown: usize) -> Value {
    let icon = match doc.status {
        Status::Firing => "🚨",
        Status::Resolved => "✅",
        Status::Blind => "🙈",
        Status::Recovered => "👀",
        Status::Acknowledged => "🙋",
        Status::Test => "👋",
    };
    let mut body = vec![json!({
        "type": "TextBlock",
        "text": format!("{icon} {}", escape(&text::summary(doc))),
        "weight": "Bolder",
        "size": "Medium",
        "wrap": true,
    })];
    if let Some(m) = &doc.message {
        body.push(block(escape(&untrusted::display(m, 2000))));
    }
    for c in doc.chats.iter().take(shown) {
        body.push(chat_container(doc.status, c));
    }
    if doc.chats.len() > shown {
        body.push(json!({
            "type": "TextBlock",
            "text": format!("+{} more", doc.chats.len() - shown),
            "isSubtle": true,
            "wrap": true,
        }));
    }
    json!({
        "type": "message",
        "attachments": [{
            "contentType": "application/vnd.microsoft.card.adaptive",
            "contentUrl": null,
            "content": {
                "$schema": "http://adaptivecards.io/schemas/adaptive-card.json",
                "type": "AdaptiveCard",
                "version": "1.4",
                "msteams": {"width": "Full"},
                "body": body,
            },
        }],
    })
}

/// The Workflows message for a document, under [`MAX_BYTES`].
pub fn render(doc: &AlertDoc) -> Value {
    let mut shown = doc.chats.len().min(FULL_CHATS);
    loop {
        let message = card(doc, shown);
        if shown == 0 || message.to_string().len() <= MAX_BYTES {
            return message;
        }
        shown -= 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn markdown_and_card_functions_are_defused() {
        assert_eq!(
            escape("**URGENT** [x](http://e)"),
            "\\*\\*URGENT\\*\\* \\[x\\](http://e)"
        );
        assert_eq!(
            escape("{{DATE(2017-02-14T06:08:39Z)}}"),
            "{ {DATE(2017-02-14T06:08:39Z)} }"
        );
        assert_eq!(escape("plain (support)"), "plain (support)");
        assert_eq!(escape("- item"), "\\- item");
        assert_eq!(escape("12. item"), "12\\. item");
        assert_eq!(escape("a-b 1. c"), "a-b 1. c");
    }
}
