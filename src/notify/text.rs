//! The plain-text rendering shared by the console and email channels.

use crate::alert::{AlertChat, AlertDoc, Status, short_duration, utc_time};
use std::fmt::Write;

/// Longest name shown; WhatsApp names are untrusted and can be huge.
const NAME_CHARS: usize = 100;

/// `(summary, body)`: the summary is a one-line subject, the body the full text.
pub fn render(doc: &AlertDoc) -> (String, String) {
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
    let summary = match doc.status {
        Status::Firing if repeat => {
            format!("{chats} still waiting over {after} ({})", doc.instance)
        }
        Status::Firing => format!("{chats} waiting over {after} ({})", doc.instance),
        Status::Resolved => format!("{chats} no longer waiting ({})", doc.instance),
        Status::Blind => format!("monitor blind: cannot poll instance {}", doc.instance),
        Status::Recovered => format!(
            "monitor recovered: polling instance {} works again",
            doc.instance
        ),
        Status::Test => format!("test message from inbox-sla ({})", doc.instance),
    };
    let mut body = String::new();
    if let Some(m) = &doc.message {
        let _ = writeln!(body, "{m}");
    }
    for chat in &doc.chats {
        chat_block(&mut body, doc.status, chat);
    }
    (one_line(&summary), body)
}

fn chat_block(out: &mut String, status: Status, c: &AlertChat) {
    let name = c
        .name
        .as_deref()
        .map(|n| clip(&one_line(n), NAME_CHARS))
        .unwrap_or_else(|| "(no name)".into());
    let _ = writeln!(
        out,
        "• {name} — {} ({}) [tier {}]",
        c.id,
        c.kind,
        c.tier + 1
    );
    let unread = match c.unread_count {
        Some(-1) => "marked unread".to_string(),
        Some(n) => format!("{n} unread"),
        None => "unread unknown".to_string(),
    };
    let sla_note = if c.sla_seconds != c.waiting_seconds {
        format!(", {} in business hours", short_duration(c.sla_seconds))
    } else {
        String::new()
    };
    match status {
        Status::Resolved => {
            let _ = writeln!(
                out,
                "  waited {}{sla_note} (since {})",
                short_duration(c.waiting_seconds),
                utc_time(c.waiting_since)
            );
        }
        _ => {
            let _ = writeln!(
                out,
                "  {unread} · waiting since {} ({}{sla_note})",
                utc_time(c.waiting_since),
                short_duration(c.waiting_seconds)
            );
        }
    }
    if let Some(m) = &c.last_message {
        match (&m.body, m.has_media) {
            (Some(b), _) if !b.is_empty() => {
                let _ = writeln!(out, "  \"{}\"", one_line(b));
            }
            (_, true) => {
                let _ = writeln!(out, "  (media)");
            }
            _ => {}
        }
    }
    if let Some(link) = c.link() {
        let _ = writeln!(out, "  {link}");
    }
}

/// Collapses line breaks and control characters into spaces.
pub fn one_line(text: &str) -> String {
    text.chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect::<String>()
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
}

pub fn clip(text: &str, max: usize) -> String {
    let mut chars = text.chars();
    let cut: String = chars.by_ref().take(max).collect();
    if chars.next().is_some() {
        format!("{cut}…")
    } else {
        cut
    }
}
