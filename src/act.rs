//! What on call does to a waiting chat, whoever asks: the command line, the status page,
//! the API, a Slack button or a PagerDuty acknowledgement (docs/spec.md sections 2 and 11).
//! Each asker checks its own caller; the checks of what is asked for, and the answer, are
//! here, once: a chat with no open episode is an error ([`ActError::NotOpen`]), never a
//! silent success.

use crate::alert::chat_kind;
use crate::policy::Policy;
use crate::sla::Episode;
use crate::store::{Acknowledged, Store, StoreError};
use crate::untrusted;
use serde_json::{Value, json};
use std::time::Duration;

/// Longest name kept for whoever acknowledged (it comes from Slack, PagerDuty, a form).
pub const BY_CHARS: usize = 100;

#[derive(Debug, thiserror::Error)]
pub enum ActError {
    /// A field of the request means nothing: 400 from the API, exit 2 from the shell.
    #[error("{0}")]
    Bad(String),
    /// The chat has no open episode: 404, exit 2.
    #[error("{0}")]
    NotOpen(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// An acknowledged episode, as the store now has it.
#[derive(Debug, Clone)]
pub struct Acked {
    pub instance: String,
    pub episode: Episode,
}

/// A chat JID: `201234567890@c.us`, `120363000000000001@g.us`.
pub fn check_jid(jid: &str) -> Result<(), ActError> {
    if jid.contains('@') && !jid.chars().any(char::is_whitespace) && jid.len() <= 256 {
        Ok(())
    } else {
        Err(ActError::Bad(format!(
            "chat: \"{}\" is not a chat JID like 201234567890@c.us or 120363000000000001@g.us",
            untrusted::display(jid, 80)
        )))
    }
}

/// A duration as people write it ("1h", "4h 30m"), more than zero and at most the one limit
/// of [`crate::duration::MAX`] (10 years); `field` names it in the error.
pub fn parse_for(field: &str, text: &str) -> Result<Duration, ActError> {
    let d = crate::duration::parse(text).map_err(|e| ActError::Bad(format!("{field}: {e}")))?;
    if d.is_zero() {
        return Err(ActError::Bad(format!("{field} must be more than 0s")));
    }
    Ok(d)
}

/// Who acknowledged, cleaned to one short line; an empty name is an error.
pub fn clean_by(by: &str) -> Result<String, ActError> {
    let name = untrusted::display(by, BY_CHARS).trim().to_string();
    if name.is_empty() {
        return Err(ActError::Bad("by: a name is needed".into()));
    }
    Ok(name)
}

/// Acknowledges the open episode of `jid` for `by`: no tier fires for `hold` (the policy's
/// `sla.ack_for` when `None`), and the channels that were paged hear it at the instance's
/// next cycle. `instance` may be left out when the chat is open in one instance only.
pub async fn acknowledge(
    store: &Store,
    policy: &Policy,
    instance: Option<&str>,
    jid: &str,
    by: &str,
    hold: Option<Duration>,
    now: i64,
) -> Result<Acked, ActError> {
    check_jid(jid)?;
    let by = clean_by(by)?;
    let hold = hold.unwrap_or(policy.sla.ack_for);
    let until = now.saturating_add(hold.as_secs() as i64);
    let instance = match store.acknowledge(instance, jid, &by, now, until).await? {
        Acknowledged::Done { instance } => instance,
        Acknowledged::NotOpen => return Err(not_open(jid, instance)),
        Acknowledged::Several(all) => {
            return Err(ActError::Bad(format!(
                "instance: {jid} is waiting in {} instances ({}); name one",
                all.len(),
                all.join(", ")
            )));
        }
    };
    match store.episode(&instance, jid).await? {
        Some(episode) => Ok(Acked { instance, episode }),
        // It ended in the instant since: it was acknowledged, and is answered now.
        None => Err(not_open(jid, Some(&instance))),
    }
}

fn not_open(jid: &str, instance: Option<&str>) -> ActError {
    let jid = untrusted::display(jid, 80);
    ActError::NotOpen(match instance {
        Some(i) => format!(
            "{jid} has no open episode in instance \"{}\": nothing is waiting to acknowledge",
            untrusted::display(i, 80)
        ),
        None => format!("{jid} has no open episode: nothing is waiting to acknowledge"),
    })
}

/// Mutes the chat of an open episode for `hold` (a mute is the chat's, in every
/// instance); the answer is the episode. `instance` may be left out when the chat is open
/// in one instance only.
pub async fn mute(
    store: &Store,
    instance: Option<&str>,
    jid: &str,
    hold: Duration,
    reason: Option<&str>,
    now: i64,
) -> Result<Acked, ActError> {
    check_jid(jid)?;
    let (instance, episode) = the_open_one(store, instance, jid).await?;
    mute_chat(store, jid, hold, reason, now).await?;
    Ok(Acked { instance, episode })
}

/// Mutes `jid` for `hold` from `now`, whether or not it is waiting (the shell may mute a
/// chat ahead of its message); the answer is when the mute ends. Every mute is written
/// here: the chat checked, the reason cleaned to one short line.
pub async fn mute_chat(
    store: &Store,
    jid: &str,
    hold: Duration,
    reason: Option<&str>,
    now: i64,
) -> Result<i64, ActError> {
    check_jid(jid)?;
    let reason = reason
        .map(|r| untrusted::display(r, 200).trim().to_string())
        .filter(|r| !r.is_empty());
    let until = now.saturating_add(hold.as_secs() as i64);
    store.mute(jid, until, reason.as_deref(), now).await?;
    Ok(until)
}

/// Lifts the mute of `jid`; `false` when it was not muted.
pub async fn unmute(store: &Store, jid: &str) -> Result<bool, ActError> {
    check_jid(jid)?;
    Ok(store.unmute(jid).await?)
}

/// The one open episode of `jid` (in `instance`): 404 when there is none, 400 when it is
/// open in several instances and none was named.
async fn the_open_one(
    store: &Store,
    instance: Option<&str>,
    jid: &str,
) -> Result<(String, Episode), ActError> {
    let mut open = store.episodes_of(jid, instance).await?;
    match open.len() {
        0 => Err(not_open(jid, instance)),
        1 => Ok(open.remove(0)),
        n => Err(ActError::Bad(format!(
            "instance: {jid} is waiting in {n} instances ({}); name one",
            open.iter()
                .map(|(i, _)| i.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        ))),
    }
}

/// An open episode as `alerts --format json` and the API show it.
pub fn episode_json(instance: &str, ep: &Episode, muted: bool, now: i64) -> Value {
    let ack = ep.ack.as_ref();
    json!({
        "instance": instance, "id": ep.jid, "name": ep.name, "kind": chat_kind(&ep.jid),
        "unread_count": ep.unread, "waiting_since": ep.started_at,
        "waiting_seconds": (now - ep.started_at).max(0),
        "tiers_fired": ep.fired, "escalated": !ep.fired.is_empty() || ep.legacy_fired.is_some(),
        "notified": ep.notified, "muted": muted, "missing_polls": ep.missing,
        "acknowledged": ack.is_some_and(|a| a.holds(now)),
        "acknowledged_by": ack.map(|a| a.by.clone()),
        "acknowledged_at": ack.map(|a| a.at),
        "acknowledged_until": ack.map(|a| a.until),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_request_names_the_field_it_cannot_take() {
        fn msg<T: std::fmt::Debug>(r: Result<T, ActError>) -> String {
            r.unwrap_err().to_string()
        }
        assert!(msg(check_jid("not a jid")).starts_with("chat:"));
        assert!(msg(parse_for("for", "soon")).starts_with("for:"));
        assert!(msg(parse_for("for", "0s")).contains("more than 0s"));
        assert!(msg(parse_for("for", "20y")).contains("10 years"));
        assert!(msg(clean_by("\u{200b} \n")).starts_with("by:"));
        assert_eq!(clean_by("  Amina\nHassan ").unwrap(), "Amina Hassan");
        assert_eq!(parse_for("for", "1h 30m").unwrap().as_secs(), 5400);
    }
}
