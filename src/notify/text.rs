//! The plain-text rendering shared by the console and email channels.
//!
//! WhatsApp-sourced strings arrive cleaned by the engine (no hidden characters, names and
//! previews clipped at grapheme boundaries); here they are made one line where a line is
//! expected and clipped again to what a person reads.

use crate::alert::{AlertChat, AlertDoc, Status, short_duration, utc_time};
use crate::untrusted;
use std::fmt::Write;

/// Longest name shown; WhatsApp names are untrusted and can be huge.
pub const NAME_CHARS: usize = 100;

/// `(summary, body)`: the summary is a one-line subject, the body the full text.
pub fn render(doc: &AlertDoc) -> (String, String) {
    let mut body = String::new();
    if let Some(m) = &doc.message {
        let _ = writeln!(body, "{}", untrusted::strip(m));
    }
    for chat in &doc.chats {
        chat_block(&mut body, doc.status, chat);
    }
    (summary(doc), body)
}

/// "3 chats waiting over 2h (support)": the one line every channel leads with.
pub fn summary(doc: &AlertDoc) -> String {
    let n = doc.chats.len();
    let chats = if n == 1 {
        "1 chat".to_string()
    } else {
        format!("{n} chats")
    };
    let after = doc
        .tier
        .map(|t| short_duration(t.after_seconds as i64))
        .unwrap_or_default();
    let repeat = doc.chats.iter().any(|c| c.repeat);
    let line = match doc.status {
        Status::Firing if repeat => {
            format!("{chats} still waiting over {after} ({})", doc.instance)
        }
        Status::Firing => format!("{chats} waiting over {after} ({})", doc.instance),
        Status::Resolved if doc.chats.iter().all(is_unwatched) => {
            format!("{chats} no longer watched ({})", doc.instance)
        }
        Status::Resolved => format!("{chats} no longer waiting ({})", doc.instance),
        Status::Blind => format!("monitor blind: cannot poll instance {}", doc.instance),
        Status::Recovered => format!(
            "monitor recovered: polling instance {} works again",
            doc.instance
        ),
        Status::Acknowledged => {
            match doc.chats.first().and_then(|c| c.acknowledged_by.as_deref()) {
                Some(by)
                    if doc
                        .chats
                        .iter()
                        .all(|c| c.acknowledged_by.as_deref() == Some(by)) =>
                {
                    format!("{chats} acknowledged by {by} ({})", doc.instance)
                }
                _ => format!("{chats} acknowledged ({})", doc.instance),
            }
        }
        Status::Test => format!("test message from inbox-sla ({})", doc.instance),
    };
    untrusted::display(&line, 400).into_owned()
}

/// The name as people see it: cleaned, one line, at most [`NAME_CHARS`] graphemes.
pub fn name(c: &AlertChat) -> String {
    c.name
        .as_deref()
        .map(|n| untrusted::display(n, NAME_CHARS).into_owned())
        .filter(|n| !n.is_empty())
        .unwrap_or_else(|| "(no name)".into())
}

/// "5 unread", "marked unread", "unread unknown".
pub fn unread(c: &AlertChat) -> String {
    match c.unread_count {
        Some(-1) => "marked unread".to_string(),
        Some(n) => format!("{n} unread"),
        None => "unread unknown".to_string(),
    }
}

/// ", 2h in business hours" when the SLA's clock differs from the wall clock.
pub fn business_note(c: &AlertChat) -> String {
    if c.sla_seconds != c.waiting_seconds {
        format!(", {} in business hours", short_duration(c.sla_seconds))
    } else {
        String::new()
    }
}

/// The last message's text as one line, if there is any to show.
pub fn preview(c: &AlertChat) -> Option<String> {
    let m = c.last_message.as_ref()?;
    match (&m.body, m.has_media) {
        (Some(b), _) if !b.trim().is_empty() => {
            Some(untrusted::display(b, crate::sla::PREVIEW_CHARS + 1).into_owned())
        }
        (_, true) => Some("(media)".into()),
        _ => None,
    }
}

/// Whether a resolved chat ended because it is no longer watched, not answered.
pub fn is_unwatched(c: &AlertChat) -> bool {
    c.reason.as_deref() == Some("unwatched")
}

/// How a resolved chat's wait ended: "waited 3h 5m (since …)", or, for a chat that is no
/// longer watched, that nobody answered it here.
pub fn ended(c: &AlertChat) -> String {
    let head = if is_unwatched(c) {
        "no longer watched (its instance was removed or a rule now ignores it) after"
    } else {
        "waited"
    };
    format!(
        "{head} {}{} (since {})",
        short_duration(c.waiting_seconds),
        business_note(c),
        utc_time(c.waiting_since)
    )
}

/// "acknowledged by Amina at 2026-12-05 14:02 UTC", for a chat someone acknowledged.
pub fn acknowledged(c: &AlertChat) -> Option<String> {
    let by = untrusted::display(c.acknowledged_by.as_deref()?, NAME_CHARS);
    Some(match c.acknowledged_at {
        Some(at) => format!("acknowledged by {by} at {}", utc_time(at)),
        None => format!("acknowledged by {by}"),
    })
}

fn chat_block(out: &mut String, status: Status, c: &AlertChat) {
    let _ = writeln!(
        out,
        "• {} — {} ({}) [tier {}]",
        name(c),
        untrusted::display(&c.id, 100),
        c.kind,
        c.tier + 1
    );
    match status {
        Status::Resolved => {
            let _ = writeln!(out, "  {}", ended(c));
        }
        _ => {
            let _ = writeln!(
                out,
                "  {} · waiting since {} ({}{})",
                unread(c),
                utc_time(c.waiting_since),
                short_duration(c.waiting_seconds),
                business_note(c)
            );
        }
    }
    if let Some(ack) = acknowledged(c) {
        let _ = writeln!(out, "  {ack}");
    }
    match preview(c) {
        Some(p) if p == "(media)" => {
            let _ = writeln!(out, "  (media)");
        }
        Some(p) => {
            let _ = writeln!(out, "  \"{p}\"");
        }
        None => {}
    }
    if let Some(link) = c.link() {
        let _ = writeln!(out, "  {link}");
    }
}
