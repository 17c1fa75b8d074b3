//! The Slack channel: an incoming-webhook POST with Block Kit blocks and a `text` fallback.
//!
//! Within Slack's limits: the first [`FULL_CHATS`] chats in full, then "+N more"; at most
//! 50 blocks and 3,000 characters a section. Every WhatsApp-sourced string is escaped for
//! mrkdwn (`&`, `<`, `>`), so `<!channel>` in a contact name pings nobody, and
//! `link_names` is never set. Text is cut before it is escaped, and a section that must
//! still be cut is cut outside any `&amp;` entity or `<link|label>`. At most one message a
//! second per webhook.
//!
//! With the Slack app's signing secret (`signing_secret_file`), each chat of a firing
//! message carries an *Acknowledge* button. What Slack sends back when one is clicked is
//! read here too ([`verify`], [`click`]), and the update of the message is shaped here
//! ([`acknowledged`], [`ephemeral`]); `hooks` serves the request and acts on it.

use super::hmac_sha256_matches;
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
/// The `action_id` of the *Acknowledge* button: how a click is told from other actions.
pub const ACK_ACTION: &str = "inbox_sla_ack";
/// Slack's limit on a button's `value`.
const VALUE_CHARS: usize = 2000;
/// Slack refuses requests older than this, and so do we: a captured click cannot be
/// replayed later (Slack's "Verifying requests" guide: five minutes).
pub const CLICK_WINDOW_SECS: i64 = 300;

/// `type = "slack"`: the table's keys.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Keys {
    webhook_url: Option<String>,
    webhook_url_file: Option<PathBuf>,
    signing_secret_file: Option<PathBuf>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Settings {
    /// An incoming-webhook URL: https unless loopback.
    pub webhook_url: Secret,
    /// The Slack app's signing secret: with it, firing messages carry *Acknowledge*
    /// buttons, and the clicks Slack posts to `/hooks/slack` are checked against it.
    /// Without it no button is shown: a click nobody can verify must not be offered.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub signing_secret: Option<Secret>,
}

impl ChannelType for Settings {
    const NAME: &'static str = "slack";
    const SHAPE: Shape = Shape::Digest;
    type Keys = Keys;
    type Sender = Slack;

    fn new(keys: Keys, setup: &mut Setup) -> Result<Self, String> {
        let webhook_url =
            setup.secret_url("webhook_url", keys.webhook_url, keys.webhook_url_file, "")?;
        // Only from a file, as the other new secrets: never written into the config.
        let signing_secret = setup.secret("signing_secret", None, keys.signing_secret_file)?;
        Ok(Settings {
            webhook_url,
            signing_secret,
        })
    }

    fn secrets(&self) -> Vec<&Secret> {
        let mut all = vec![&self.webhook_url];
        all.extend(&self.signing_secret);
        all
    }

    fn sender(&self, context: &Context) -> Result<Slack, String> {
        Ok(Slack::new(
            context.http.clone(),
            self.webhook_url.clone(),
            context.redactor.clone(),
        )
        .with_buttons(self.signing_secret.is_some()))
    }

    fn calls_back(&self) -> Option<&'static str> {
        self.signing_secret
            .is_some()
            .then_some("signing_secret_file")
    }
}

pub struct Slack {
    http: reqwest::Client,
    webhook_url: Secret,
    redactor: Redactor,
    /// One message a second per webhook, in order.
    pacer: Pacer,
    /// Firing messages carry *Acknowledge* buttons (the channel has a signing secret).
    buttons: bool,
}

impl Slack {
    pub fn new(http: reqwest::Client, webhook_url: Secret, redactor: Redactor) -> Self {
        Slack {
            http,
            webhook_url,
            redactor,
            pacer: Pacer::new(MIN_INTERVAL),
            buttons: false,
        }
    }

    /// Firing messages carry *Acknowledge* buttons, or not.
    pub fn with_buttons(mut self, buttons: bool) -> Self {
        self.buttons = buttons;
        self
    }
}

impl Sender for Slack {
    async fn send(&self, doc: &AlertDoc) -> Result<String, SendError> {
        let payload = render_with(doc, self.buttons);
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

/// The webhook payload for a document, without buttons.
pub fn render(doc: &AlertDoc) -> Value {
    render_with(doc, false)
}

/// The webhook payload for a document; with `buttons`, each chat shown in full in a firing
/// message gets an *Acknowledge* button (resolved and acknowledged messages never do:
/// there is nothing left to acknowledge).
pub fn render_with(doc: &AlertDoc, buttons: bool) -> Value {
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
        if buttons && doc.status == Status::Firing {
            blocks.extend(ack_button(&doc.instance, chat));
        }
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

/// What an *Acknowledge* button carries back to us: the episode it is for. Compact JSON
/// (`{"i":"support","c":"201234567890@c.us","s":1790000000}`) within Slack's 2,000
/// characters.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AckButton {
    /// The instance's name; left out when it would not fit (the chat's one open episode is
    /// meant then, as `inbox-sla ack` without `--instance`).
    #[serde(rename = "i", default, skip_serializing_if = "Option::is_none")]
    pub instance: Option<String>,
    #[serde(rename = "c")]
    pub chat: String,
    /// When the episode started: a click on an old message must not acknowledge a later
    /// episode of the same chat.
    #[serde(rename = "s")]
    pub since: i64,
}

impl AckButton {
    /// The button's `value`, if some form of it fits Slack's limit.
    pub fn value(&self) -> Option<String> {
        let fits = |b: &AckButton| {
            serde_json::to_string(b)
                .ok()
                .filter(|v| v.chars().count() <= VALUE_CHARS)
        };
        fits(self).or_else(|| {
            fits(&AckButton {
                instance: None,
                ..self.clone()
            })
        })
    }

    pub fn parse(value: &str) -> Result<AckButton, String> {
        serde_json::from_str(value)
            .map_err(|e| format!("the button's value is not one of ours ({e})"))
    }
}

/// The `actions` block with the *Acknowledge* button of one chat (none if it cannot fit).
fn ack_button(instance: &str, chat: &AlertChat) -> Option<Value> {
    let value = AckButton {
        instance: Some(instance.to_string()),
        chat: chat.id.clone(),
        since: chat.waiting_since,
    }
    .value()?;
    Some(json!({
        "type": "actions",
        "elements": [{
            "type": "button",
            "action_id": ACK_ACTION,
            "text": {"type": "plain_text", "text": "Acknowledge", "emoji": true},
            "style": "primary",
            "value": value,
        }],
    }))
}

/// Why a request said to come from Slack was refused (401): said in the log, never with
/// the secret or the signature.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refused {
    #[error("X-Slack-Request-Timestamp is missing or not a number")]
    NoTimestamp,
    /// Seconds between the request's timestamp and now: positive when it is old.
    #[error(
        "X-Slack-Request-Timestamp is {}, more than the 5 minutes allowed (a replay, or this host's clock is wrong)",
        if *.0 >= 0 { format!("{}s old", .0) } else { format!("{}s ahead of this host's clock", -.0) }
    )]
    Stale(i64),
    #[error("X-Slack-Signature is missing")]
    NoSignature,
    #[error(
        "X-Slack-Signature matches no Slack channel's signing secret (check signing_secret_file: the app's Signing Secret, not its token)"
    )]
    Mismatch,
}

/// Checks a request as Slack's "Verifying requests" guide says: `X-Slack-Signature` is
/// `v0=` and the hex HMAC-SHA256, under the app's signing secret, of
/// `v0:{X-Slack-Request-Timestamp}:{the raw body}`, compared in constant time; and the
/// timestamp is within five minutes of `now` (either way). Any of `secrets` may match:
/// channels may belong to different Slack apps.
pub fn verify(
    secrets: &[&Secret],
    timestamp: Option<&str>,
    signature: Option<&str>,
    body: &[u8],
    now: i64,
) -> Result<(), Refused> {
    let timestamp = timestamp.map(str::trim).unwrap_or("");
    let at: i64 = timestamp.parse().map_err(|_| Refused::NoTimestamp)?;
    let off = now.saturating_sub(at);
    if off.saturating_abs() > CLICK_WINDOW_SECS {
        return Err(Refused::Stale(off));
    }
    let signature = signature.ok_or(Refused::NoSignature)?.trim();
    let Some(hex) = signature.strip_prefix("v0=") else {
        return Err(Refused::Mismatch);
    };
    let signed: [&[u8]; 4] = [b"v0:", timestamp.as_bytes(), b":", body];
    if secrets
        .iter()
        .any(|secret| hmac_sha256_matches(secret, &signed, hex))
    {
        Ok(())
    } else {
        Err(Refused::Mismatch)
    }
}

/// A click on an *Acknowledge* button, as Slack's `block_actions` payload tells it.
#[derive(Debug, Clone, PartialEq)]
pub struct Click {
    pub button: AckButton,
    /// Who clicked: the Slack user's `username`, else `name`, else `id`.
    pub by: String,
    /// Where the message can be updated, for 30 minutes, five times, without a token.
    pub response_url: Option<String>,
    /// The `actions` block clicked, so the update replaces that button only.
    pub block_id: Option<String>,
    /// The message as Slack shows it, to update in place.
    pub message: Option<Value>,
}

/// What a verified request from Slack asks.
#[derive(Debug, Clone, PartialEq)]
pub enum Interaction {
    Acknowledge(Click),
    /// Anything else (another payload type or action): answered 200, nothing done.
    Other(String),
}

/// Reads Slack's interaction request: `application/x-www-form-urlencoded` with one
/// `payload` field holding JSON. `Err` says what is wrong with it (400).
pub fn click(body: &[u8]) -> Result<Interaction, String> {
    let payload = url::form_urlencoded::parse(body)
        .find(|(k, _)| k == "payload")
        .map(|(_, v)| v.into_owned())
        .ok_or("the body has no payload field (Slack posts payload=<json>)")?;
    let payload: Value =
        serde_json::from_str(&payload).map_err(|e| format!("the payload is not JSON: {e}"))?;
    let kind = payload["type"].as_str().unwrap_or("");
    if kind != "block_actions" {
        return Ok(Interaction::Other(format!(
            "payload type \"{}\" is not a button click",
            untrusted::display(kind, 40)
        )));
    }
    let Some(action) = payload["actions"]
        .as_array()
        .and_then(|all| all.iter().find(|a| a["action_id"] == ACK_ACTION))
    else {
        return Ok(Interaction::Other(
            "no Acknowledge button was clicked".into(),
        ));
    };
    let button = AckButton::parse(action["value"].as_str().unwrap_or(""))?;
    let user = &payload["user"];
    let by = ["username", "name", "id"]
        .iter()
        .filter_map(|k| user[*k].as_str())
        .find(|n| !n.trim().is_empty())
        .ok_or("the payload names no user")?
        .to_string();
    Ok(Interaction::Acknowledge(Click {
        button,
        by,
        response_url: payload["response_url"].as_str().map(str::to_string),
        block_id: action["block_id"].as_str().map(str::to_string),
        message: payload.get("message").filter(|m| m.is_object()).cloned(),
    }))
}

/// The update for the message whose button was clicked: the same message, with that
/// button replaced by who acknowledged and until when no tier fires. Without the message
/// (Slack always sends it for a message's button), a note in the channel instead.
pub fn acknowledged(click: &Click, by: &str, until: i64) -> Value {
    let note = format!(
        ":raising_hand: Acknowledged by *{}* · no further tier before {}",
        escape(by),
        utc_time(until)
    );
    let Some(blocks) = click.message.as_ref().and_then(|m| m["blocks"].as_array()) else {
        return json!({"replace_original": false, "response_type": "in_channel", "text": note});
    };
    let done = json!({"type": "context", "elements": [{"type": "mrkdwn", "text": note}]});
    let clicked = |b: &Value| {
        b["type"] == "actions"
            && click
                .block_id
                .as_deref()
                .is_some_and(|id| b["block_id"] == id)
    };
    let mut blocks: Vec<Value> = blocks
        .iter()
        .map(|b| if clicked(b) { done.clone() } else { b.clone() })
        .collect();
    if !blocks.contains(&done) {
        blocks.push(done);
    }
    let text = click
        .message
        .as_ref()
        .and_then(|m| m["text"].as_str())
        .unwrap_or("acknowledged");
    json!({"replace_original": true, "text": text, "blocks": blocks})
}

/// A reply only the clicking user sees; the message stays as it is.
pub fn ephemeral(text: &str) -> Value {
    json!({"response_type": "ephemeral", "replace_original": false, "text": escape(text)})
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

    fn chat(id: &str, since: i64) -> AlertChat {
        AlertChat {
            id: id.into(),
            name: Some("Amina".into()),
            kind: "individual".into(),
            unread_count: Some(1),
            waiting_since: since,
            waiting_seconds: 7200,
            sla_seconds: 7200,
            tier: 0,
            repeat: false,
            last_message: None,
            tiers_fired: Vec::new(),
            reason: None,
            acknowledged_by: None,
            acknowledged_at: None,
        }
    }

    fn doc(status: Status, instance: &str, chats: Vec<AlertChat>) -> AlertDoc {
        AlertDoc {
            version: 1,
            status,
            instance: instance.into(),
            tier: None,
            sent_at: 1_790_000_000,
            chats,
            message: None,
        }
    }

    fn buttons(payload: &Value) -> Vec<AckButton> {
        payload["blocks"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|b| b["type"] == "actions")
            .map(|b| {
                let button = &b["elements"][0];
                assert_eq!(button["type"], "button");
                assert_eq!(button["action_id"], ACK_ACTION);
                let value = button["value"].as_str().unwrap();
                assert!(value.chars().count() <= 2000, "{value}");
                AckButton::parse(value).unwrap()
            })
            .collect()
    }

    /// Slack's own worked example ("Verifying requests from Slack").
    const GUIDE_SECRET: &str = "8f742231b10e8888abcd99yyyzzz85a5";
    const GUIDE_TS: &str = "1531420618";
    const GUIDE_BODY: &str = "token=xyzz0WbapA4vBCDEFasx0q6G&team_id=T1DC2JH3J&team_domain=testteamnow&channel_id=G8PSS9T3V&channel_name=foobar&user_id=U2CERLKJA&user_name=roadrunner&command=%2Fwebhook-collect&text=&response_url=https%3A%2F%2Fhooks.slack.com%2Fcommands%2FT1DC2JH3J%2F397700885554%2F96rGlfmibIGlgcZRskXaIFfN&trigger_id=398738663015.47445629121.803a0bc887a14d10d2c447fce8b6703c";
    const GUIDE_SIG: &str = "v0=a2114d57b48eac39b9ad189dd8316235a7b4a8d21a10bd27519666489c69b503";

    #[test]
    fn a_request_verifies_as_slacks_guide_shows_within_five_minutes() {
        let right = Secret::new(GUIDE_SECRET);
        let other = Secret::new("another-apps-secret");
        let at = 1_531_420_618;
        let check = |secrets: &[&Secret], ts: Option<&str>, sig: Option<&str>, now: i64| {
            verify(secrets, ts, sig, GUIDE_BODY.as_bytes(), now)
        };
        let (ts, sig) = (Some(GUIDE_TS), Some(GUIDE_SIG));
        assert_eq!(check(&[&right], ts, sig, at), Ok(()));
        assert_eq!(
            check(&[&other, &right], ts, sig, at + 300),
            Ok(()),
            "any channel's"
        );
        assert_eq!(check(&[&right], ts, sig, at - 300), Ok(()));
        assert_eq!(
            check(&[&right], ts, sig, at + 301),
            Err(Refused::Stale(301))
        );
        assert_eq!(
            check(&[&right], ts, sig, at - 301),
            Err(Refused::Stale(-301))
        );
        assert_eq!(check(&[&other], ts, sig, at), Err(Refused::Mismatch));
        assert_eq!(check(&[&right], None, sig, at), Err(Refused::NoTimestamp));
        assert_eq!(
            check(&[&right], Some("soon"), sig, at),
            Err(Refused::NoTimestamp)
        );
        assert_eq!(check(&[&right], ts, None, at), Err(Refused::NoSignature));
        let bare = GUIDE_SIG.trim_start_matches("v0=");
        assert_eq!(check(&[&right], ts, Some(bare), at), Err(Refused::Mismatch));
        let other_ts = Some("1531420619");
        assert_eq!(
            check(&[&right], other_ts, sig, at),
            Err(Refused::Mismatch),
            "the time is signed"
        );
        assert_eq!(
            verify(&[&right], ts, sig, b"token=changed", at),
            Err(Refused::Mismatch),
            "the body is signed"
        );
        for refused in [Refused::Stale(400), Refused::Mismatch] {
            assert!(!refused.to_string().contains(GUIDE_SECRET));
        }
    }

    #[test]
    fn a_firing_message_has_one_acknowledge_button_per_chat_shown_and_no_other_message_has() {
        let chats: Vec<AlertChat> = (0..25)
            .map(|i| chat(&format!("20100{i}@c.us"), 1_790_000_000 + i))
            .collect();
        let firing = doc(Status::Firing, "support", chats.clone());
        let shown = render_with(&firing, true);
        let found = buttons(&shown);
        assert_eq!(found.len(), FULL_CHATS, "one per chat shown in full");
        assert_eq!(
            found[3],
            AckButton {
                instance: Some("support".into()),
                chat: "201003@c.us".into(),
                since: 1_790_000_003
            }
        );
        assert!(
            shown["blocks"].as_array().unwrap().len() <= 50,
            "Slack's limit"
        );
        assert!(
            buttons(&render(&firing)).is_empty(),
            "no signing secret, no button"
        );
        for status in [Status::Resolved, Status::Acknowledged, Status::Test] {
            let other = doc(status, "support", chats.clone());
            assert!(buttons(&render_with(&other, true)).is_empty(), "{status:?}");
        }
    }

    #[test]
    fn a_button_fits_slacks_2000_characters_whatever_the_names() {
        let long = "客".repeat(1990);
        let b = AckButton {
            instance: Some(long),
            chat: "201234567890@c.us".into(),
            since: 1,
        };
        let value = b.value().unwrap();
        assert!(value.chars().count() <= 2000);
        let back = AckButton::parse(&value).unwrap();
        assert_eq!(
            (back.instance, back.chat.as_str()),
            (None, "201234567890@c.us")
        );
        let absurd = AckButton {
            instance: None,
            chat: "9".repeat(2100),
            since: 1,
        };
        assert_eq!(
            absurd.value(),
            None,
            "no button rather than a refused message"
        );
        assert!(AckButton::parse("{\"x\":1}").is_err());
    }

    fn form(payload: &Value) -> Vec<u8> {
        url::form_urlencoded::Serializer::new(String::new())
            .append_pair("payload", &payload.to_string())
            .finish()
            .into_bytes()
    }

    fn click_payload(value: &str) -> Value {
        json!({
            "type": "block_actions",
            "user": {"id": "U0AMINA", "username": "amina.hassan", "name": "amina.hassan", "team_id": "T1"},
            "response_url": "https://hooks.slack.com/actions/T1/1/abc",
            "message": {"text": "1 chat waiting", "blocks": [
                {"type": "section", "block_id": "s1", "text": {"type": "mrkdwn", "text": "*Amina*"}},
                {"type": "actions", "block_id": "a1", "elements": []},
                {"type": "section", "block_id": "s2", "text": {"type": "mrkdwn", "text": "*Omar*"}},
                {"type": "actions", "block_id": "a2", "elements": []}
            ]},
            "actions": [{"type": "button", "action_id": ACK_ACTION, "block_id": "a1", "value": value, "action_ts": "1.2"}]
        })
    }

    #[test]
    fn a_click_is_read_as_slack_posts_it_and_updates_only_its_own_button() {
        let value = AckButton {
            instance: Some("support".into()),
            chat: "201234567890@c.us".into(),
            since: 1_790_000_000,
        }
        .value()
        .unwrap();
        let mut payload = click_payload(&value);
        let Interaction::Acknowledge(c) = click(&form(&payload)).unwrap() else {
            panic!("not a click");
        };
        assert_eq!(c.by, "amina.hassan");
        assert_eq!(c.button.chat, "201234567890@c.us");
        assert_eq!(
            c.response_url.as_deref(),
            Some("https://hooks.slack.com/actions/T1/1/abc")
        );
        let update = acknowledged(&c, "amina.hassan", 1_790_003_600);
        assert_eq!(update["replace_original"], true);
        let blocks = update["blocks"].as_array().unwrap();
        assert_eq!(blocks.len(), 4);
        assert_eq!(blocks[1]["type"], "context");
        let note = blocks[1]["elements"][0]["text"].as_str().unwrap();
        assert!(note.contains("Acknowledged by *amina.hassan*"), "{note}");
        assert_eq!(blocks[3]["type"], "actions", "Omar's button stays");

        payload["user"] = json!({"id": "U0AMINA"});
        let Interaction::Acknowledge(c) = click(&form(&payload)).unwrap() else {
            panic!("not a click");
        };
        assert_eq!(c.by, "U0AMINA", "the id when Slack names nobody");
        payload["type"] = json!("view_submission");
        assert!(matches!(click(&form(&payload)), Ok(Interaction::Other(_))));
        payload["type"] = json!("block_actions");
        payload["actions"][0]["action_id"] = json!("something_else");
        assert!(matches!(click(&form(&payload)), Ok(Interaction::Other(_))));
        assert!(click(b"token=x").is_err());
        assert!(click(b"payload=%7Bnot%20json").is_err());
        let reply = ephemeral("<!channel> nothing waits");
        assert_eq!(reply["response_type"], "ephemeral");
        assert_eq!(reply["text"], "&lt;!channel&gt; nothing waits");
    }
}
