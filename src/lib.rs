//! # inbox-sla
//!
//! Watches WhatsApp inboxes served by the Wawp API and escalates every conversation in
//! which a customer has waited, unanswered, longer than the SLA: once per tier, on Slack,
//! by email, to a JSON webhook, PagerDuty, Alertmanager or Microsoft Teams, with a
//! "resolved" notice once somebody reads or answers. See `README.md` for users and
//! `docs/spec.md` for the contract.
//!
//! ## How a cycle flows
//!
//! `wawp` fetches the overview → `overview` parses it leniently → `sla` (pure) decides
//! episodes and events under the `policy` → `alert` digests events into documents →
//! `store` commits episode changes and documents in one transaction (the outbox) →
//! `deliver` claims due documents through `outbox` and sends them through `notify`.
//!
//! ## Layers
//!
//! Each module uses only modules on a lower layer, or earlier ones of its own
//! (`tests/layers.rs` checks every `crate::` path against this map):
//!
//! 1. **Foundations**, plain data and parsing:
//!    [`duration`] (durations as people write them), [`secret`] (`Secret` prints `***`;
//!    the redactor for foreign text), [`untrusted`] (WhatsApp-sourced text made safe to
//!    show), [`clock`] (the one clock everything reads), [`host`] (this machine's names),
//!    [`cli`] (the command line as data; the man page and completions are built from it),
//!    [`calendar`] (business hours, open time between two instants), [`overview`] (the
//!    chat model and its lenient streaming parser), [`share`] (which node of an HA group
//!    holds which instance), [`systemd`] (the notify protocol, on its own thread),
//!    [`access`] (who may use the page and API: the users file and bcrypt, the bearer
//!    token, failed logins limited per address, the cross-site check for state changes),
//!    [`tls`] (HTTPS for the page: the certificate swapped on reload, a listener that
//!    handshakes off the accept loop), [`gauges`] (the per-instance gauges of
//!    `/metrics`, kept in one table and written straight into a scrape).
//! 2. **The pure core**: [`policy`] (`[sla]`, tiers, rules, globs), [`sla`] (the engine:
//!    episodes, overview, mutes, policy, now → changes and events), [`alert`] (the alert
//!    document of docs/spec.md section 5 and the digest rule).
//! 3. **Channels**: [`notify`], one file per channel type holding its keys, checks,
//!    secrets, shape and sender, and a registry of the types.
//! 4. **Configuration**: [`config`], the TOML file parsed and validated whole; secrets
//!    read from `*_file`s; channel tables handed to their type.
//! 5. **Storage**: [`store`], one module per concern over SQLite or PostgreSQL.
//! 6. **Work over the store**: [`wawp`] (the HTTP client for the overview: paging,
//!    limits, errors; the session's state and a chat's recent messages), [`outbox`] (a
//!    notification's life: claim, ack, nack, kill), [`cycle`] (one poll → evaluate →
//!    commit; blind-monitor state; the first unanswered message), [`deliver`] (sends
//!    due notifications; the Alertmanager re-send), [`report`] (waits, attainment,
//!    breaches), [`status`] (the status page and its JSON), [`act`] (what on call does
//!    to a waiting chat, whoever asks: acknowledge, mute).
//! 7. **Serving and running**: [`events`] (`[events]`: webhooks checked for signature,
//!    size and replay, and turned into a "poll this instance now" doorbell; never
//!    believed as the truth), [`hooks`] (`/hooks/slack` and `/hooks/pagerduty`: a Slack
//!    button or a PagerDuty acknowledgement, checked by signature, acknowledges the episode
//!    it was made for), [`http`] (`/metrics`, `/healthz`, the page, the API, the webhook
//!    route and the hooks), [`daemon`] (`run`: poll and delivery loops, reload, watchdog,
//!    HA leases and shares).
//! 8. **The command line**: [`commands`] (`check`, `once`, `alerts`, `mute`, …) and
//!    [`demo`]; `main.rs` wires signals, logging and metrics over them.

pub mod access;
pub mod act;
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
pub mod events;
pub mod gauges;
pub mod hooks;
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
pub mod tls;
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
