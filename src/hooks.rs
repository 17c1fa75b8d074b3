//! `POST /hooks/slack` and `POST /hooks/pagerduty`: on call acknowledges where the alert
//! landed (docs/spec.md section 11).
//!
//! A click on a Slack message's *Acknowledge* button, or an incident acknowledged in
//! PagerDuty, acknowledges the episode it was made for, through [`act::acknowledge`], and
//! rings the instance's doorbell so that the channels that were paged hear it within
//! seconds. These routes stand outside the page's guard: Slack and PagerDuty carry no
//! user or token of ours, so each request is judged by its signature alone, under the
//! secrets of the running configuration's channels (any Slack channel's
//! `signing_secret_file`, any PagerDuty channel's `webhook_secret_file`); a request that is
//! not signed changes nothing. What the services send is read (and Slack's message
//! update shaped) by their channel files, `notify::slack` and `notify::pagerduty`; this
//! module serves the requests and acts. It decides nothing about escalation, and it never
//! makes Slack wait on anything but the store: Slack wants its answer within 3 seconds,
//! so the message is updated afterwards, from a task of its own.

use crate::act::{self, Acked, ActError};
use crate::alert::utc_time;
use crate::clock::Clock;
use crate::config::Config;
use crate::events::Doorbells;
use crate::notify::{pagerduty, slack};
use crate::secret::Secret;
use crate::sla::Episode;
use crate::store::{Store, StoreError};
use crate::untrusted;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};
use serde_json::Value;
use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

pub const SLACK_PATH: &str = "/hooks/slack";
pub const PAGERDUTY_PATH: &str = "/hooks/pagerduty";

/// The largest Slack request read; a larger one is refused unread (413). Slack echoes the
/// whole message in a click (up to 50 blocks of 3,000 characters, URL-encoded), so this is
/// the webhooks' bound, not a smaller one.
pub const SLACK_MAX_BODY: usize = 1 << 20;
/// The largest PagerDuty webhook read (an incident is a few KiB; its title at most 1,024
/// characters).
pub const PAGERDUTY_MAX_BODY: usize = 256 << 10;
/// A PagerDuty event id seen this recently is a repeated delivery: answered, not acted on.
/// (Slack's signatures are remembered for their 5-minute window; after it they are refused
/// anyway.)
const PAGERDUTY_REPLAY_SECS: i64 = 3600;
/// Signatures and event ids remembered at most: only signed requests are remembered, so
/// only Slack and PagerDuty could fill this, but memory stays bounded even so.
const REMEMBERED: usize = 10_000;
/// How long the update of a Slack message may take, connection to answer.
const RESPONSE_TIMEOUT: Duration = Duration::from_secs(10);

/// The hooks' state: what they read (the store, the running configuration, the clock),
/// the doorbells they ring, the client that updates Slack messages, and the requests
/// already taken.
#[derive(Clone)]
pub struct Hooks {
    store: Store,
    /// The configuration in force, swapped on SIGHUP: the secrets are read per request.
    config: Arc<RwLock<Arc<Config>>>,
    clock: Clock,
    doorbells: Doorbells,
    /// For Slack's `response_url` (rustls, as the channels'); it needs no token.
    http: reqwest::Client,
    seen: Arc<Mutex<Seen>>,
}

impl Hooks {
    pub fn new(
        store: Store,
        config: Arc<RwLock<Arc<Config>>>,
        clock: Clock,
        doorbells: Doorbells,
    ) -> Result<Hooks, String> {
        let http = reqwest::Client::builder()
            .timeout(RESPONSE_TIMEOUT)
            .connect_timeout(Duration::from_secs(5))
            .user_agent(concat!("inbox-sla/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| format!("cannot build the HTTP client for Slack's response_url: {e}"))?;
        Ok(Hooks {
            store,
            config,
            clock,
            doorbells,
            http,
            seen: Arc::default(),
        })
    }

    /// The two routes, for `http` to serve beside the page (not behind its guard).
    pub fn routes<S: Clone + Send + Sync + 'static>(self) -> Router<S> {
        Router::new()
            .route(SLACK_PATH, post(slack_hook))
            .route(PAGERDUTY_PATH, post(pagerduty_hook))
            .with_state(self)
    }

    fn config(&self) -> Arc<Config> {
        self.config
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Whether `key` was taken within `window` seconds of `now`; records it either way.
    fn replayed(&self, key: String, now: i64, window: i64) -> bool {
        self.seen
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .replayed(key, now, window)
    }

    /// Acknowledges the episode of `jid` that started at `since`, and no later one: a click
    /// on an old message, or a late webhook, must not acknowledge the next customer
    /// question. An episode that started earlier is the same one, its start corrected since
    /// by the chat's history (section 2). Rings the instance's doorbell, so that the
    /// channels hear it at once. (The look-up and the write are two statements: a cycle
    /// that ended the episode and opened the next in the instant between them would see
    /// that one acknowledged, for `sla.ack_for` at most.)
    async fn acknowledge(
        &self,
        config: &Config,
        instance: Option<&str>,
        jid: &str,
        since: i64,
        by: &str,
        now: i64,
    ) -> Result<Acked, ActError> {
        act::check_jid(jid)?;
        let open = self.store.episodes_of(jid, instance).await?;
        let Some((instance, _)) = open.iter().find(|(_, ep)| ep.started_at <= since) else {
            return Err(ActError::NotOpen(format!(
                "{} has no open episode that started {}: it was answered (or read), or a \
                 later question waits; nothing was acknowledged",
                untrusted::display(jid, 80),
                utc_time(since)
            )));
        };
        let acked = act::acknowledge(
            &self.store,
            &config.policy,
            Some(instance),
            jid,
            by,
            None,
            now,
        )
        .await?;
        self.doorbells.ring(&acked.instance);
        Ok(acked)
    }

    /// The open episode an incident key names: read from the key when it was not bounded
    /// (an episode that started earlier is the same one, its start corrected since), else
    /// found by comparing it with each open episode's key (a bounded key ends in a hash, and
    /// cannot be read back).
    async fn episode_of_key(&self, key: &str) -> Result<Option<(String, Episode)>, StoreError> {
        if !key.starts_with("inbox-sla/") {
            return Ok(None);
        }
        if let Some((instance, jid, since)) = pagerduty::read_key(key)
            && let Some(ep) = self.store.episode(instance, jid).await?
            && ep.started_at <= since
        {
            return Ok(Some((instance.to_string(), ep)));
        }
        Ok(self
            .store
            .all_episodes()
            .await?
            .into_iter()
            .find(|(i, ep)| pagerduty::episode_key(i, &ep.jid, ep.started_at) == key))
    }

    /// POSTs `message` to a click's `response_url`, after the answer: Slack wants the
    /// answer within 3 seconds, and the message may be updated for 30 minutes.
    fn update_message(&self, response_url: Option<&str>, message: Value) {
        let Some(url) = response_url else {
            return;
        };
        // Signed by Slack, but still only https (or loopback, for tests): never a request
        // to anywhere a payload names in clear.
        let url = match crate::notify::types::checked_url("response_url", url) {
            Ok(u) => u,
            Err(why) => {
                tracing::info!("Slack's message not updated: {why}");
                return;
            }
        };
        let http = self.http.clone();
        tokio::spawn(async move {
            // The URL is a capability (anyone holding it may post for 30 minutes): it is
            // never logged.
            match http.post(url).json(&message).send().await {
                Ok(r) if r.status().is_success() => {
                    tracing::debug!("Slack's message updated");
                }
                Ok(r) => {
                    tracing::info!("Slack's message not updated: Slack answered {}", r.status())
                }
                Err(e) => tracing::info!(
                    "{}",
                    crate::with_causes("Slack's message not updated".into(), &e.without_url())
                ),
            }
        });
    }
}

/// Keys taken recently, forgotten after their window.
#[derive(Default)]
struct Seen {
    until: HashMap<String, i64>,
    order: VecDeque<(i64, String)>,
}

impl Seen {
    fn replayed(&mut self, key: String, now: i64, window: i64) -> bool {
        while let Some((until, _)) = self.order.front() {
            if *until > now && self.order.len() < REMEMBERED {
                break;
            }
            if let Some((until, old)) = self.order.pop_front()
                && self.until.get(&old) == Some(&until)
            {
                self.until.remove(&old);
            }
        }
        if self.until.get(&key).is_some_and(|until| *until > now) {
            return true;
        }
        let until = now.saturating_add(window);
        self.until.insert(key.clone(), until);
        self.order.push_back((until, key));
        false
    }
}

fn header<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

/// The body, at most `max` bytes; 413 past that, before or while reading.
async fn body(request: Request, max: usize) -> Result<(HeaderMap, bytes::Bytes), Response> {
    let too_large = || {
        (
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("the body is larger than {} KiB\n", max >> 10),
        )
            .into_response()
    };
    let (parts, body) = request.into_parts();
    let announced =
        header(&parts.headers, header::CONTENT_LENGTH.as_str()).and_then(|v| v.parse::<u64>().ok());
    if announced.is_some_and(|n| n > max as u64) {
        return Err(too_large());
    }
    match axum::body::to_bytes(body, max).await {
        Ok(bytes) => Ok((parts.headers, bytes)),
        Err(_) => Err(too_large()),
    }
}

fn not_configured(what: &str) -> Response {
    (
        StatusCode::NOT_FOUND,
        format!("{what}: no channel here takes it\n"),
    )
        .into_response()
}

/// `POST /hooks/slack`: Slack's interactivity request (a button clicked).
async fn slack_hook(State(h): State<Hooks>, request: Request) -> Response {
    let config = h.config();
    let secrets: Vec<&Secret> = config
        .channels
        .iter()
        .filter_map(|c| c.settings::<slack::Settings>())
        .filter_map(|s| s.signing_secret.as_ref())
        .collect();
    if secrets.is_empty() {
        return not_configured("Slack button clicks (signing_secret_file)");
    }
    let (headers, body) = match body(request, SLACK_MAX_BODY).await {
        Ok(b) => b,
        Err(response) => return response,
    };
    let now = h.clock.now();
    let signature = header(&headers, "x-slack-signature");
    if let Err(why) = slack::verify(
        &secrets,
        header(&headers, "x-slack-request-timestamp"),
        signature,
        &body,
        now,
    ) {
        tracing::info!("Slack request refused: {why}");
        return (StatusCode::UNAUTHORIZED, format!("{why}\n")).into_response();
    }
    // Verified, so a signature is there; the same one again is the same click again.
    let signature = signature.unwrap_or_default().trim().to_string();
    if h.replayed(format!("slack {signature}"), now, slack::CLICK_WINDOW_SECS) {
        tracing::debug!("Slack request ignored: the same signed request was taken already");
        return StatusCode::OK.into_response();
    }
    let click = match slack::click(&body) {
        Ok(slack::Interaction::Acknowledge(click)) => click,
        Ok(slack::Interaction::Other(why)) => {
            tracing::debug!("Slack request ignored: {why}");
            return StatusCode::OK.into_response();
        }
        Err(why) => {
            tracing::info!("Slack request refused: {why}");
            return (StatusCode::BAD_REQUEST, format!("{why}\n")).into_response();
        }
    };
    let b = &click.button;
    let acked = h
        .acknowledge(
            &config,
            b.instance.as_deref(),
            &b.chat,
            b.since,
            &click.by,
            now,
        )
        .await;
    match acked {
        Ok(acked) => {
            // act::acknowledge answers the episode as the store has it now: acknowledged.
            let (by, until) = acked
                .episode
                .ack
                .as_ref()
                .map_or((click.by.as_str(), now), |a| (a.by.as_str(), a.until));
            tracing::info!(
                instance = acked.instance,
                chat = acked.episode.jid,
                "acknowledged from Slack by {by}"
            );
            h.update_message(
                click.response_url.as_deref(),
                slack::acknowledged(&click, by, until),
            );
            StatusCode::OK.into_response()
        }
        Err(ActError::NotOpen(why) | ActError::Bad(why)) => {
            tracing::info!("Slack acknowledgement not taken: {why}");
            only_for_the_clicker(&h, &click, &why)
        }
        Err(ActError::Store(e)) => {
            tracing::warn!("Slack acknowledgement not recorded: the store failed: {e}");
            only_for_the_clicker(
                &h,
                &click,
                "inbox-sla could not record the acknowledgement (its store failed); try again in a minute",
            )
        }
    }
}

/// Slack shows any status but 200 as an error without saying why: a 200 whose reply only
/// the clicking person sees says it. Slack takes a click's reply through `response_url`;
/// the same reply is the answer's body, for whoever reads it there.
fn only_for_the_clicker(h: &Hooks, click: &slack::Click, text: &str) -> Response {
    let reply = slack::ephemeral(text);
    h.update_message(click.response_url.as_deref(), reply.clone());
    (StatusCode::OK, Json(reply)).into_response()
}

/// `POST /hooks/pagerduty`: a PagerDuty v3 webhook. `incident.acknowledged` for one of our
/// incidents acknowledges its episode; everything else is answered and left alone.
async fn pagerduty_hook(State(h): State<Hooks>, request: Request) -> Response {
    let config = h.config();
    let secrets: Vec<&Secret> = config
        .channels
        .iter()
        .filter_map(|c| c.settings::<pagerduty::Settings>())
        .filter_map(|s| s.webhook_secret.as_ref())
        .collect();
    if secrets.is_empty() {
        return not_configured("PagerDuty webhooks (webhook_secret_file)");
    }
    let (headers, body) = match body(request, PAGERDUTY_MAX_BODY).await {
        Ok(b) => b,
        Err(response) => return response,
    };
    if !pagerduty::verify(&secrets, header(&headers, "x-pagerduty-signature"), &body) {
        tracing::info!(
            "PagerDuty webhook refused: X-PagerDuty-Signature is missing or matches no PagerDuty channel's webhook_secret_file"
        );
        return (
            StatusCode::UNAUTHORIZED,
            "bad or missing X-PagerDuty-Signature\n",
        )
            .into_response();
    }
    let hook = match pagerduty::webhook(&body) {
        Ok(hook) => hook,
        Err(why) => {
            tracing::info!("PagerDuty webhook refused: {why}");
            return (StatusCode::BAD_REQUEST, format!("{why}\n")).into_response();
        }
    };
    let now = h.clock.now();
    let ignored = |why: String| {
        tracing::debug!("PagerDuty webhook ignored: {why}");
        (StatusCode::OK, "ignored\n").into_response()
    };
    if !matches!(
        hook.event_type.as_str(),
        "incident.acknowledged" | "incident.resolved"
    ) {
        return ignored(format!(
            "event type \"{}\" does not acknowledge",
            untrusted::display(&hook.event_type, 60)
        ));
    }
    let Some(key) = hook.incident_key.as_deref() else {
        return ignored("the event's data is not an incident with an incident_key".into());
    };
    let key_shown = untrusted::display(key, 300);
    let (instance, episode) = match h.episode_of_key(key).await {
        Ok(Some(found)) => found,
        Ok(None) => {
            return ignored(format!(
                "incident {key_shown} is not an open episode of ours"
            ));
        }
        Err(e) => return store_failed(e),
    };
    if hook.event_type == "incident.resolved" {
        tracing::info!(
            instance,
            chat = episode.jid,
            "PagerDuty incident {key_shown} was resolved in PagerDuty: the episode goes on \
             until the chat is answered (or read); the inbox decides, not the pager"
        );
        return (StatusCode::OK, "ignored\n").into_response();
    }
    if let Some(id) = hook.id.as_deref().filter(|i| !i.is_empty())
        && h.replayed(format!("pagerduty {id}"), now, PAGERDUTY_REPLAY_SECS)
    {
        return ignored(format!(
            "event {} was taken already",
            untrusted::display(id, 80)
        ));
    }
    let by = match &hook.agent {
        pagerduty::Agent::Person(name) => name.clone(),
        // Not a person: most likely our own `acknowledge` event coming back after someone
        // acknowledged on Slack or the page. Believed only while nobody has.
        pagerduty::Agent::Machine(_) | pagerduty::Agent::Nobody => {
            if let Some(ack) = episode.ack.as_ref().filter(|a| a.holds(now)) {
                return ignored(format!(
                    "incident {key_shown} was acknowledged by an integration, and {} had \
                     acknowledged it already",
                    ack.by
                ));
            }
            "PagerDuty".to_string()
        }
    };
    match h
        .acknowledge(
            &config,
            Some(&instance),
            &episode.jid,
            episode.started_at,
            &by,
            now,
        )
        .await
    {
        Ok(acked) => {
            tracing::info!(
                instance = acked.instance,
                chat = acked.episode.jid,
                "acknowledged from PagerDuty by {by}"
            );
            (StatusCode::OK, "ok\n").into_response()
        }
        Err(ActError::NotOpen(why) | ActError::Bad(why)) => ignored(why),
        Err(ActError::Store(e)) => store_failed(e),
    }
}

/// 503: PagerDuty delivers the webhook again later.
fn store_failed(e: StoreError) -> Response {
    tracing::warn!("PagerDuty webhook not taken: the store failed: {e}");
    (
        StatusCode::SERVICE_UNAVAILABLE,
        format!("the store failed: {e}\n"),
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_request_is_a_replay_within_its_window_only() {
        let mut seen = Seen::default();
        assert!(!seen.replayed("a".into(), 1000, 300));
        assert!(seen.replayed("a".into(), 1299, 300));
        assert!(!seen.replayed("b".into(), 1001, 300));
        assert!(
            !seen.replayed("a".into(), 1300, 300),
            "forgotten after 300s"
        );
    }

    #[test]
    fn remembering_is_bounded() {
        let mut seen = Seen::default();
        for i in 0..REMEMBERED * 2 {
            seen.replayed(format!("k{i}"), 1000, 3600);
        }
        assert!(seen.until.len() <= REMEMBERED + 1, "{}", seen.until.len());
        assert!(seen.order.len() <= REMEMBERED + 1);
    }
}
