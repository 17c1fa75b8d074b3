//! # inbox-sla
//!
//! Watches WhatsApp inboxes served by the Wawp API and escalates every conversation in
//! which a customer has waited, unanswered, longer than the SLA: once per tier, on Slack,
//! by email, to a JSON webhook, PagerDuty, Alertmanager or Microsoft Teams, with a
//! "resolved" notice once somebody reads or answers. See `README.md` for users and
//! `../shared/design/PRODUCT.md` for the contract.
//!
//! ## How a cycle flows
//!
//! `wawp` fetches the overview → `overview` parses it leniently → `sla` (pure) decides
//! episodes and events under the `policy` → `alert` digests events into documents →
//! `store` commits episode changes and documents in one transaction (the outbox) →
//! `deliver` claims due documents through `outbox` and sends them through `notify`.
//!
//! ## Layout
//!
//! - [`cli`]: the command line as data; the man page and completions are built from it.
//! - [`config`]: the TOML file, parsed and validated whole; secrets read from `*_file`s.
//! - [`duration`]: durations as people write them, and the 10-year limit.
//! - [`secret`]: the `Secret` newtype (prints `***`) and the redactor for foreign text.
//! - [`untrusted`]: WhatsApp-sourced text made safe to show (bidi, graphemes).
//! - [`clock`]: the one clock everything reads; tests and the demo move it.
//! - [`policy`]: `[sla]`, tiers, rules, globs: which policy applies to a chat. Pure.
//! - [`calendar`]: business hours, open time between two instants. Pure.
//! - [`overview`]: the chat model and its lenient, streaming parser. Pure.
//! - [`wawp`]: the HTTP client for `/v2/chats/overview`: paging, limits, errors.
//! - [`sla`]: the engine: (episodes, overview, mutes, policy, now) → (changes, events). Pure.
//! - [`alert`]: the alert document of PRODUCT.md section 5 and the digest rule.
//! - [`store`]: episodes, history, outbox rows, mutes, leases; SQLite or PostgreSQL.
//! - [`outbox`]: a notification's life: claim, ack, nack, kill; backoff and dead letters.
//! - [`cycle`]: one poll → evaluate → commit for one instance; blind-monitor state.
//! - [`notify`]: channel types, one file each (keys, checks, secrets, sender), the registry
//!   that names them, and the `text` rendering they share.
//! - [`deliver`]: the thin loop that claims and sends due notifications.
//! - [`systemd`]: the notify protocol, on its own thread so it never blocks.
//! - [`daemon`]: `run`: poll and delivery loops, signals, reload, watchdog, HA leases.
//! - [`http`]: `/metrics` and `/healthz`.
//! - [`commands`]: the other commands (`check`, `once`, `alerts`, `mute`, …).
//! - [`demo`]: the self-contained demo on a simulated inbox.

pub mod alert;
pub mod calendar;
pub mod cli;
pub mod clock;
pub mod commands;
pub mod config;
pub mod cycle;
pub mod daemon;
pub mod deliver;
pub mod demo;
pub mod duration;
pub mod host;
pub mod http;
pub mod notify;
pub mod outbox;
pub mod overview;
pub mod policy;
pub mod report;
pub mod secret;
pub mod share;
pub mod sla;
pub mod status;
pub mod store;
pub mod systemd;
pub mod untrusted;
pub mod wawp;

/// An error's message followed by its causes ("could not connect: tcp connect error:
/// Connection refused"), each once: the causes are what tell a user what to fix, and most
/// error types leave them out of `Display`.
pub(crate) fn with_causes(head: String, e: &dyn std::error::Error) -> String {
    let mut text = head;
    let mut source = e.source();
    while let Some(s) = source {
        let s_text = s.to_string();
        if !text.contains(&s_text) {
            text.push_str(": ");
            text.push_str(&s_text);
        }
        source = s.source();
    }
    text
}
