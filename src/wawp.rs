//! The Wawp client: fetches one instance's whole overview, page by page.
//!
//! It owns the HTTP details (query, paging, size limit, timeouts) and turns every failure
//! into a [`PollError`] that says what the user can do and never carries the access token.
//! It does not judge chats; that is `sla`'s job. The bytes come through a [`Transport`]:
//! HTTP in production, the simulator's own inboxes in its tests, through the same paging,
//! limits and parser.

use crate::config::{Instance, WawpConfig};
use crate::overview::{self, Chat, Interest, Page, PageMark, StreamParser};
use crate::secret::Redactor;
use crate::store::SourceState;
use bytes::Bytes;
use reqwest::{StatusCode, Url};
use std::collections::{HashMap, HashSet, VecDeque};
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

/// What each request asks for, as its errors name it.
const OVERVIEW: &str = "an overview";
const SESSION: &str = "a session's state";
const MESSAGES: &str = "a chat's messages";
/// The most a session's state takes (WAHA's is under 1 KB).
const SESSION_BYTES: u64 = 256 * 1024;
/// The most one message of a chat's history takes: WhatsApp's longest text (65,536
/// characters, up to 192 KB of UTF-8) twice over (WAHA repeats it in `_data`), with room
/// for a quoted message and a thumbnail.
const MESSAGE_BYTES: u64 = 512 * 1024;
/// A history answer may always take this much (an engine that ignores `limit` answers
/// its default page of messages).
const MESSAGES_FLOOR: u64 = 8 * 1024 * 1024;

/// A boxed future, for the object-safe [`Transport`].
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Where an overview page comes from: one GET, answered or not. `Err` is a failure with no
/// answer (connection refused, timed out), said in words; it may carry the URL, which the
/// client redacts.
pub trait Transport: Send + Sync {
    fn get<'a>(&'a self, url: &'a Url) -> BoxFuture<'a, Result<Response, String>>;

    /// Any other request: the session's state (`POST /v2/session/info`) and a chat's
    /// messages (`GET /v2/chats/messages`). A transport that serves only overviews (the
    /// simulator's) answers 404, which the client reads as "not served here": the session
    /// is then not checked and starts stay at the overview's timestamps.
    fn call<'a>(
        &'a self,
        method: reqwest::Method,
        url: &'a Url,
    ) -> BoxFuture<'a, Result<Response, String>> {
        let _ = (method, url);
        Box::pin(async {
            Ok(Response {
                status: StatusCode::NOT_FOUND,
                content_length: Some(0),
                body: Body::Chunks(VecDeque::new()),
            })
        })
    }
}

/// An answer: its status, the length it announced, and its body as it arrives.
pub struct Response {
    pub status: StatusCode,
    pub content_length: Option<u64>,
    pub body: Body,
}

/// A body read chunk by chunk, never whole.
pub enum Body {
    Http(reqwest::Response),
    /// Chunks as a simulated engine sends them; an `Err` is the connection breaking there.
    Chunks(VecDeque<Result<Bytes, String>>),
}

impl Body {
    async fn chunk(&mut self) -> Result<Option<Bytes>, String> {
        match self {
            Body::Http(r) => r.chunk().await.map_err(|e| describe(&e.without_url())),
            Body::Chunks(c) => c.pop_front().transpose(),
        }
    }
}

/// The production transport: HTTP through one reqwest client (one connection pool).
struct Http(reqwest::Client);

impl Transport for Http {
    fn get<'a>(&'a self, url: &'a Url) -> BoxFuture<'a, Result<Response, String>> {
        self.call(reqwest::Method::GET, url)
    }

    fn call<'a>(
        &'a self,
        method: reqwest::Method,
        url: &'a Url,
    ) -> BoxFuture<'a, Result<Response, String>> {
        Box::pin(async move {
            let response = self
                .0
                .request(method, url.clone())
                .header("accept", "application/json")
                .send()
                .await
                .map_err(|e| describe(&e.without_url()))?;
            Ok(Response {
                status: response.status(),
                content_length: response.content_length(),
                body: Body::Http(response),
            })
        })
    }
}

/// The whole overview of one instance, as far as it could be read.
#[derive(Debug, Default)]
pub struct Fetched {
    /// Each chat the interest kept, once (the first occurrence wins when pages overlap).
    pub chats: Vec<Chat>,
    /// How many chats the overview held, kept or not.
    pub total: usize,
    /// `false` when paging stopped at `max_chats` or elements were unreadable: then a chat
    /// missing from `chats` may still exist, and must not be resolved for being absent.
    pub complete: bool,
    pub bytes: u64,
    /// Why the overview is incomplete, for the log.
    pub notes: Vec<String>,
    /// Each page read, in order: what the next poll compares its pages with.
    pub marks: Vec<PageMark>,
    /// Every page was byte for byte the one the interest expected: `chats` is empty (the
    /// pages were not scanned) unless the client checks its rests ([`WawpClient::checking_rests`]).
    pub unchanged: bool,
}

/// What a poll that changed nothing leaves for the next poll of the same instance: its
/// pages' marks, and what must still hold for a repeat of those bytes to change nothing
/// either. Kept by the client (a reload, which builds a new client, forgets it); the cycle
/// decides when one applies.
#[derive(Debug, Clone)]
pub struct Rest {
    pub marks: Arc<[PageMark]>,
    /// The store's generation for the instance: any write since (a cycle's, an
    /// acknowledgement, a mute) moves it.
    pub generation: i64,
    /// The instance's state and memory as the poll read them (and left them).
    pub source: SourceState,
    /// The policy the chats were judged by.
    pub seed: u64,
    /// Before this instant nothing can fall due for any open episode.
    pub until: i64,
    /// The figures the poll saw, which a repeat shows again.
    pub chats: usize,
    pub waiting: usize,
    pub breached: usize,
}

#[derive(Debug, thiserror::Error)]
pub enum PollError {
    #[error("instance \"{instance}\": Wawp answered {status} for {url}{detail}: {hint}")]
    Status {
        instance: String,
        status: StatusCode,
        url: String,
        /// The server's own `message`, redacted, prefixed with ": ".
        detail: String,
        hint: &'static str,
    },
    #[error("instance \"{instance}\": request to {url} failed: {reason}")]
    Transport {
        instance: String,
        url: String,
        reason: String,
    },
    #[error(
        "instance \"{instance}\": the response from {url} is larger than wawp.max_response_bytes ({limit} bytes); raise the limit or lower wawp.page_size"
    )]
    TooLarge {
        instance: String,
        url: String,
        limit: u64,
    },
    #[error("instance \"{instance}\": the response from {url} is not {what}: {reason}")]
    Parse {
        instance: String,
        url: String,
        /// What was asked for: "an overview", "a session's state", "a chat's messages".
        what: &'static str,
        reason: String,
    },
    /// The overview may still answer (with what the engine last knew), but the WhatsApp
    /// session receives nothing: the number is as blind as if polling failed.
    #[error("instance \"{instance}\": the WhatsApp session is {state}, not WORKING: {hint}")]
    Session {
        instance: String,
        state: String,
        hint: String,
    },
}

impl PollError {
    /// A short label for metrics: `http_401`, `transport`, `too_large`, `parse`.
    pub fn label(&self) -> String {
        match self {
            PollError::Status { status, .. } => format!("http_{}", status.as_u16()),
            PollError::Transport { .. } => "transport".into(),
            PollError::TooLarge { .. } => "too_large".into(),
            PollError::Parse { .. } => "parse".into(),
            PollError::Session { state, .. } => format!("session {state}"),
        }
    }

    /// The session's state, when that is what failed.
    pub fn session_state(&self) -> Option<&str> {
        match self {
            PollError::Session { state, .. } => Some(state),
            _ => None,
        }
    }
}

/// What an instance's state label (`SourceState::last_error`) says of its WhatsApp
/// session: `Some(state)` when the session, not the polling, is what failed.
pub fn session_state_of(label: &str) -> Option<&str> {
    label.strip_prefix("session ")
}

/// What to do about a session in `state` (docs/spec.md section 7): said in the blind alert
/// and the error, where the person who can fix it reads.
pub fn session_hint(state: &str) -> String {
    match state {
        "SCAN_QR_CODE" => {
            "the number was unlinked: scan the QR code in Wawp (WhatsApp on the phone: Linked devices)".into()
        }
        "STARTING" => "the session is still starting; if it stays so, restart it in Wawp".into(),
        "STOPPED" => "the session was stopped: start it again in Wawp".into(),
        "FAILED" => {
            "the session failed: restart it in Wawp, and scan the QR code again if it asks".into()
        }
        _ => "check the session in Wawp and start it again (scan the QR code if it asks)".into(),
    }
}

/// A WhatsApp session's state, as `/v2/session/info` says it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Session {
    Working,
    /// `SCAN_QR_CODE`, `STARTING`, `STOPPED`, `FAILED` or any other state.
    Not(String),
}

/// One HTTP client for every instance; cheap to clone.
#[derive(Clone)]
pub struct WawpClient {
    transport: Arc<dyn Transport>,
    config: WawpConfig,
    /// Instances whose engine answered 404 for `/v2/session/info`: said once, then not
    /// asked again (until a reload builds a new client).
    no_session: Arc<std::sync::Mutex<HashSet<String>>>,
    /// The engine refused POST for the session (405): it is asked with GET.
    session_by_get: Arc<std::sync::atomic::AtomicBool>,
    /// Instances this client has read an overview of: the first one after a start is
    /// read after a gap in polling (section 2, the first unanswered message).
    polled: Arc<std::sync::Mutex<HashSet<String>>>,
    /// Each instance's session as last answered (`true`: WORKING), for `/metrics`.
    sessions: Arc<std::sync::Mutex<HashMap<String, bool>>>,
    /// Each instance's [`Rest`], while its last poll changed nothing.
    rests: Arc<std::sync::Mutex<HashMap<String, Rest>>>,
    /// Pages found unchanged are scanned anyway, so that the cycle can prove that its
    /// rest changed nothing (the simulator's check).
    check_rests: bool,
    /// `false` for a client that polls each instance once (`once`): no rest can be used,
    /// so pages are not hashed for one.
    keep_rests: bool,
}

impl WawpClient {
    pub fn new(config: &WawpConfig) -> Result<Self, reqwest::Error> {
        let http = reqwest::Client::builder()
            .timeout(config.request_timeout)
            .connect_timeout(config.request_timeout.min(Duration::from_secs(10)))
            .user_agent(concat!("inbox-sla/", env!("CARGO_PKG_VERSION")))
            .build()?;
        Ok(WawpClient::with_transport(config, Arc::new(Http(http))))
    }

    /// A client over another transport (the simulator's).
    pub fn with_transport(config: &WawpConfig, transport: Arc<dyn Transport>) -> Self {
        WawpClient {
            transport,
            config: config.clone(),
            no_session: Arc::default(),
            session_by_get: Arc::default(),
            polled: Arc::default(),
            sessions: Arc::default(),
            rests: Arc::default(),
            check_rests: false,
            keep_rests: true,
        }
    }

    /// A client that polls each instance once: it neither hashes pages nor keeps rests.
    pub fn polling_once(mut self) -> Self {
        self.keep_rests = false;
        self
    }

    /// Scans pages even when they are found unchanged (see [`Fetched::unchanged`]).
    pub fn checking_rests(mut self) -> Self {
        self.check_rests = true;
        self
    }

    pub fn checks_rests(&self) -> bool {
        self.check_rests
    }

    /// The instance's rest, if its last poll left one.
    pub fn rest(&self, instance: &str) -> Option<Rest> {
        self.lock_rests().get(instance).cloned()
    }

    /// Keeps (`Some`) or forgets the instance's rest.
    pub fn set_rest(&self, instance: &str, rest: Option<Rest>) {
        let mut rests = self.lock_rests();
        match rest.filter(|_| self.keep_rests) {
            Some(r) => rests.insert(instance.to_string(), r),
            None => rests.remove(instance),
        };
    }

    fn lock_rests(&self) -> std::sync::MutexGuard<'_, HashMap<String, Rest>> {
        self.rests.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Records that the instance's overview was read; `true` the first time (this
    /// process, or this configuration after a reload, had not seen the inbox before).
    pub fn note_polled(&self, instance: &str) -> bool {
        self.polled
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(instance.to_string())
    }

    /// The instance's WhatsApp session (`POST /v2/session/info`, section 7); `None` when
    /// `wawp.session_check` is off or the engine has no such endpoint (then said once).
    /// A failure to ask is an `Err`: the caller logs it and judges by the overview alone.
    /// What it answers is kept for [`WawpClient::session_seen`], whatever the overview does.
    pub async fn session(&self, instance: &Instance) -> Result<Option<Session>, PollError> {
        let answer = self.ask_session(instance).await;
        let mut seen = self.sessions.lock().unwrap_or_else(|p| p.into_inner());
        match &answer {
            Ok(Some(Session::Working)) => {
                seen.insert(instance.name.clone(), true);
            }
            Ok(Some(Session::Not(_))) => {
                seen.insert(instance.name.clone(), false);
            }
            Ok(None) => {
                seen.remove(&instance.name);
            }
            // Not known this cycle: the last state seen stands.
            Err(_) => {}
        }
        answer
    }

    /// The instance's session as last answered: `Some(true)` while WORKING, `None` when it
    /// is not checked (or not yet).
    pub fn session_seen(&self, instance: &str) -> Option<bool> {
        self.sessions
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(instance)
            .copied()
    }

    #[tracing::instrument(skip_all, fields(instance = %instance.name))]
    async fn ask_session(&self, instance: &Instance) -> Result<Option<Session>, PollError> {
        use std::sync::atomic::Ordering;
        if !self.config.session_check || self.lock_no_session().contains(&instance.name) {
            return Ok(None);
        }
        let redactor = Redactor::new([&instance.access_token]);
        let url = self.url(instance, "/v2/session/info", &[]);
        // Wawp documents POST; WAHA-like engines and some gateways serve GET only (405, or
        // 404 from a router that knows the path for GET alone): GET is tried once, and
        // kept when it answers.
        let methods: &[reqwest::Method] = if self.session_by_get.load(Ordering::Relaxed) {
            &[reqwest::Method::GET]
        } else {
            &[reqwest::Method::POST, reqwest::Method::GET]
        };
        let mut answer = None;
        for method in methods {
            let response = self.call(instance, method.clone(), &url, &redactor).await?;
            let absent = matches!(
                response.status,
                StatusCode::NOT_FOUND | StatusCode::METHOD_NOT_ALLOWED
            );
            if absent && *method == reqwest::Method::POST {
                continue;
            }
            if !absent && *method == reqwest::Method::GET {
                self.session_by_get.store(true, Ordering::Relaxed);
            }
            answer = Some(response);
            break;
        }
        let Some(response) = answer else {
            return Ok(None);
        };
        if matches!(
            response.status,
            StatusCode::NOT_FOUND | StatusCode::METHOD_NOT_ALLOWED
        ) {
            self.lock_no_session().insert(instance.name.clone());
            tracing::info!(
                instance = %instance.name,
                "the engine does not serve /v2/session/info (HTTP {}): the WhatsApp session is not checked (set wawp.session_check = false to say so)",
                response.status.as_u16()
            );
            return Ok(None);
        }
        let body = self
            .read_small(instance, &url, response, &redactor, SESSION, SESSION_BYTES)
            .await?;
        let state = session_state(&body).ok_or_else(|| PollError::Parse {
            instance: instance.name.clone(),
            url: redactor.redact(url.as_str()),
            what: SESSION,
            reason: "no session status (WORKING, SCAN_QR_CODE, …) in the answer".into(),
        })?;
        Ok(Some(if state == "WORKING" {
            Session::Working
        } else {
            Session::Not(state)
        }))
    }

    /// A chat's last `limit` messages, newest first (`GET /v2/chats/messages`, section 2,
    /// "the first unanswered message"); media are not downloaded.
    #[tracing::instrument(skip_all, fields(instance = %instance.name))]
    pub async fn messages(
        &self,
        instance: &Instance,
        chat_id: &str,
        limit: usize,
    ) -> Result<Vec<overview::LastMessage>, PollError> {
        let redactor = Redactor::new([&instance.access_token]);
        let most = (limit as u64)
            .saturating_add(1)
            .saturating_mul(MESSAGE_BYTES)
            .max(MESSAGES_FLOOR);
        let limit = limit.to_string();
        let url = self.url(
            instance,
            "/v2/chats/messages",
            &[
                ("chatId", chat_id),
                ("limit", &limit),
                ("offset", "0"),
                ("downloadMedia", "false"),
            ],
        );
        let response = self
            .call(instance, reqwest::Method::GET, &url, &redactor)
            .await?;
        let body = self
            .read_small(instance, &url, response, &redactor, MESSAGES, most)
            .await?;
        overview::parse_messages(&body).map_err(|e| PollError::Parse {
            instance: instance.name.clone(),
            url: redactor.redact(url.as_str()),
            what: MESSAGES,
            reason: redactor.redact(&e.to_string()),
        })
    }

    fn lock_no_session(&self) -> std::sync::MutexGuard<'_, HashSet<String>> {
        self.no_session.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn url(&self, instance: &Instance, path: &str, extra: &[(&str, &str)]) -> Url {
        let mut url = self.config.base_url.clone();
        let base_path = url.path().trim_end_matches('/').to_string();
        url.set_path(&format!("{base_path}{path}"));
        {
            let mut q = url.query_pairs_mut();
            q.append_pair("instance_id", &instance.instance_id);
            q.append_pair("access_token", instance.access_token.expose());
            for (k, v) in extra {
                q.append_pair(k, v);
            }
        }
        url
    }

    async fn call(
        &self,
        instance: &Instance,
        method: reqwest::Method,
        url: &Url,
        redactor: &Redactor,
    ) -> Result<Response, PollError> {
        self.transport
            .call(method, url)
            .await
            .map_err(|reason| PollError::Transport {
                instance: instance.name.clone(),
                url: redactor.redact(url.as_str()),
                reason: redactor.redact(&reason),
            })
    }

    /// A small JSON answer read whole; an error status is an error saying what the user
    /// can do. An answer larger than `most` bytes (what `what` can take at most) is not
    /// one: it is not read further. (A gateway that answers every path with the overview
    /// would otherwise have each of these parse megabytes.)
    async fn read_small(
        &self,
        instance: &Instance,
        url: &Url,
        mut response: Response,
        redactor: &Redactor,
        what: &'static str,
        most: u64,
    ) -> Result<Vec<u8>, PollError> {
        let shown = redactor.redact(url.as_str());
        let limit = self.config.max_response_bytes;
        let too_large = || PollError::TooLarge {
            instance: instance.name.clone(),
            url: shown.clone(),
            limit,
        };
        let not_it = |size: Option<u64>| PollError::Parse {
            instance: instance.name.clone(),
            url: shown.clone(),
            what,
            reason: match size {
                Some(n) => format!("{n} bytes, more than {what} takes ({most} bytes at most)"),
                None => format!("over {most} bytes, more than {what} takes"),
            },
        };
        if response.content_length.is_some_and(|n| n > limit) {
            return Err(too_large());
        }
        if response.status.is_success()
            && let Some(n) = response.content_length.filter(|n| *n > most)
        {
            return Err(not_it(Some(n)));
        }
        let mut body = Vec::new();
        while let Some(chunk) =
            response
                .body
                .chunk()
                .await
                .map_err(|reason| PollError::Transport {
                    instance: instance.name.clone(),
                    url: shown.clone(),
                    reason: redactor.redact(&reason),
                })?
        {
            body.extend_from_slice(&chunk);
            if body.len() as u64 > limit {
                return Err(too_large());
            }
            if !response.status.is_success() && body.len() > 64 * 1024 {
                break;
            }
            if response.status.is_success() && body.len() as u64 > most {
                return Err(not_it(None));
            }
        }
        if !response.status.is_success() {
            return Err(PollError::Status {
                instance: instance.name.clone(),
                status: response.status,
                url: shown,
                detail: server_message(&body)
                    .map(|m| format!(": \"{}\"", redactor.redact(&m)))
                    .unwrap_or_default(),
                hint: hint(response.status),
            });
        }
        Ok(body)
    }

    /// Fetches every page of the instance's overview, building the chats `interest`
    /// keeps. The first request is sent before `interest` is known (the caller reads the
    /// store meanwhile). `progress` is called as data arrives (the watchdog feeds on it).
    #[tracing::instrument(skip_all, fields(instance = %instance.name))]
    pub async fn overview<E>(
        &self,
        instance: &Instance,
        interest: impl std::future::Future<Output = Result<Interest, E>>,
        progress: &(dyn Fn() + Send + Sync),
    ) -> Result<Result<Fetched, PollError>, E> {
        let redactor = Redactor::new([&instance.access_token]);
        let page_size = self.config.page_size as usize;
        let first = self.page_url(instance, (page_size > 0).then_some((page_size, 0)));
        let (response, interest) = tokio::join!(self.send(instance, &first, &redactor), interest);
        let mut interest = interest?;
        if page_size > 0 {
            use std::hash::BuildHasher;
            let seed =
                std::collections::hash_map::RandomState::new().hash_one(instance.name.as_str());
            interest = interest.with_ids(seed);
        }
        Ok(self
            .pages(instance, response, interest, &redactor, progress)
            .await)
    }

    async fn pages(
        &self,
        instance: &Instance,
        first: Result<Response, PollError>,
        interest: Interest,
        redactor: &Redactor,
        progress: &(dyn Fn() + Send + Sync),
    ) -> Result<Fetched, PollError> {
        let page_size = self.config.page_size as usize;
        let mut fetched = Fetched {
            complete: true,
            ..Fetched::default()
        };
        let mut seen: HashSet<u64> = HashSet::new();
        // The offset of the next page to ask for, and of the next page to take in.
        let (mut offset, mut taken) = (0usize, 0usize);
        let mut response = Some(first);
        // While every page is byte for byte the one expected, its body is held, not
        // scanned: all of them the same, the overview is unchanged.
        let expected = interest.expected().cloned();
        let mut held: Vec<Vec<Bytes>> = Vec::new();
        let mut holding = expected.is_some();
        loop {
            let url = self.page_url(instance, (page_size > 0).then_some((page_size, offset)));
            let sent = match response.take() {
                Some(r) => r,
                None => self.send(instance, &url, redactor).await,
            };
            let hold = expected.as_ref().filter(|_| holding);
            let read = self
                .read_page(
                    instance,
                    &url,
                    sent?,
                    redactor,
                    &interest,
                    hold.is_some(),
                    progress,
                )
                .await?;
            fetched.bytes += read.bytes;
            let mut pages = Vec::new();
            match (read.page, hold) {
                (Ok(page), _) => pages.push((page, read.hash)),
                (Err(body), Some(marks)) => {
                    let at = held.len();
                    if marks.get(at).is_some_and(|m| m.hash == read.hash) {
                        held.push(body);
                        offset += marks[at].elements;
                        if held.len() < marks.len() {
                            continue;
                        }
                        fetched.unchanged = true;
                        if !self.check_rests {
                            fetched.marks = marks.to_vec();
                            return Ok(fetched);
                        }
                    } else {
                        held.push(body);
                        holding = false;
                    }
                    // A page changed (or the rest is checked): what was held is scanned
                    // now, in order, and polling goes on as if it had been all along.
                    // Held pages matched their marks; this one is its own.
                    let hashes = marks.iter().take(at).map(|m| m.hash).chain([read.hash]);
                    for (body, hash) in held.drain(..).zip(hashes) {
                        let mut parser = StreamParser::new(interest.clone());
                        body.iter()
                            .try_for_each(|chunk| parser.feed(chunk))
                            .and_then(|()| parser.finish())
                            .map(|page| pages.push((page, hash)))
                            .map_err(|e| parse_error(instance, &url, redactor, e))?;
                    }
                }
                (Err(_), None) => {
                    return Err(PollError::Parse {
                        instance: instance.name.clone(),
                        url: redactor.redact(url.as_str()),
                        what: OVERVIEW,
                        reason: "a page was held that nothing expected".into(),
                    });
                }
            }
            let mut more = true;
            for (page, hash) in pages {
                if !more {
                    break;
                }
                fetched.marks.push(PageMark {
                    hash,
                    elements: page.elements,
                });
                more = self.take_page(&mut fetched, &mut seen, &interest, page);
                taken += fetched.marks.last().map_or(0, |m| m.elements);
            }
            if !more || fetched.unchanged {
                break;
            }
            offset = taken;
        }
        Ok(fetched)
    }

    /// Takes one parsed page into the overview; `false` when paging stops here.
    fn take_page(
        &self,
        fetched: &mut Fetched,
        seen: &mut HashSet<u64>,
        interest: &Interest,
        page: Page,
    ) -> bool {
        let page_size = self.config.page_size as usize;
        if page.skipped > 0 {
            fetched.complete = false;
            fetched
                .notes
                .push(format!("{} elements were not readable chats", page.skipped));
        }
        let max = self.config.max_chats;
        let mut new_chats = 0;
        let mut cut_short = false;
        if page_size == 0 {
            // One request: nothing can overlap, and the engine ignores repeats itself,
            // so the ids are not copied into a set. Past max_chats the picture is
            // incomplete (the body is read already: what was kept stays).
            cut_short = page.total > max;
            fetched.total = page.total;
            fetched.chats = page.chats;
        } else {
            let mut fresh: HashSet<u64> = HashSet::new();
            for id in page.ids {
                if seen.len() >= max {
                    cut_short = true;
                    break;
                }
                if seen.insert(id) {
                    new_chats += 1;
                    fresh.insert(id);
                }
            }
            fetched.chats.extend(
                page.chats
                    .into_iter()
                    .filter(|c| fresh.remove(&interest.id_hash(&c.id))),
            );
            fetched.total = seen.len();
            // Exactly at the limit with a full page: more may follow.
            cut_short |= seen.len() >= max && page.elements >= page_size;
        }
        if cut_short {
            fetched.complete = false;
            fetched.notes.push(format!(
                "stopped at wawp.max_chats = {max}; chats beyond it are not watched"
            ));
            return false;
        }
        // Stop on: no paging, a short page, or a page of only already-seen chats (an
        // API that ignores limit/offset must not make us loop).
        !(page_size == 0 || page.elements < page_size || new_chats == 0)
    }

    fn page_url(&self, instance: &Instance, paging: Option<(usize, usize)>) -> Url {
        let mut url = self.config.base_url.clone();
        let base_path = url.path().trim_end_matches('/').to_string();
        url.set_path(&format!("{base_path}/v2/chats/overview"));
        {
            let mut q = url.query_pairs_mut();
            q.append_pair("instance_id", &instance.instance_id);
            q.append_pair("access_token", instance.access_token.expose());
            if let Some((limit, offset)) = paging {
                q.append_pair("limit", &limit.to_string());
                q.append_pair("offset", &offset.to_string());
            }
        }
        url
    }

    async fn send(
        &self,
        instance: &Instance,
        url: &Url,
        redactor: &Redactor,
    ) -> Result<Response, PollError> {
        self.transport
            .get(url)
            .await
            .map_err(|reason| PollError::Transport {
                instance: instance.name.clone(),
                url: redactor.redact(url.as_str()),
                reason: redactor.redact(&reason),
            })
    }

    /// Reads one page: parsed as it arrives (the body is not held whole), or, with
    /// `hold`, held unparsed (as it arrived) to be compared first. Either way hashed for its
    /// mark (when the client keeps rests).
    #[allow(clippy::too_many_arguments)]
    async fn read_page(
        &self,
        instance: &Instance,
        url: &Url,
        mut response: Response,
        redactor: &Redactor,
        interest: &Interest,
        hold: bool,
        progress: &(dyn Fn() + Send + Sync),
    ) -> Result<ReadPage, PollError> {
        let shown = redactor.redact(url.as_str());
        let transport = |reason: String| PollError::Transport {
            instance: instance.name.clone(),
            url: shown.clone(),
            reason: redactor.redact(&reason),
        };
        let status = response.status;
        let limit = self.config.max_response_bytes;
        let too_large = || PollError::TooLarge {
            instance: instance.name.clone(),
            url: shown.clone(),
            limit,
        };
        if response.content_length.is_some_and(|n| n > limit) {
            return Err(too_large());
        }
        if !status.is_success() {
            // Error bodies are read only as far as a message needs.
            let mut body = Vec::new();
            while let Some(chunk) = response.body.chunk().await.map_err(transport)? {
                body.extend_from_slice(&chunk);
                if body.len() > 64 * 1024 {
                    break;
                }
            }
            return Err(PollError::Status {
                instance: instance.name.clone(),
                status,
                url: shown.clone(),
                detail: server_message(&body)
                    .map(|m| format!(": \"{}\"", redactor.redact(&m)))
                    .unwrap_or_default(),
                hint: hint(status),
            });
        }
        let mut hasher = self.keep_rests.then(xxhash_rust::xxh3::Xxh3Default::new);
        let mut parser = (!hold).then(|| StreamParser::new(interest.clone()));
        let mut held = Vec::new();
        let mut total = 0u64;
        while let Some(chunk) = response.body.chunk().await.map_err(transport)? {
            total += chunk.len() as u64;
            if total > limit {
                return Err(too_large());
            }
            if let Some(h) = hasher.as_mut() {
                h.update(&chunk);
            }
            match parser.as_mut() {
                Some(p) => p
                    .feed(&chunk)
                    .map_err(|e| parse_error(instance, url, redactor, e))?,
                None => held.push(chunk),
            }
            progress();
        }
        let page = match parser {
            Some(p) => Ok(p
                .finish()
                .map_err(|e| parse_error(instance, url, redactor, e))?),
            None => Err(held),
        };
        Ok(ReadPage {
            page,
            hash: hasher.map_or(0, |h| h.digest128()),
            bytes: total,
        })
    }
}

/// An overview page that could not be parsed, its URL and reason redacted.
fn parse_error(
    instance: &Instance,
    url: &Url,
    redactor: &Redactor,
    e: overview::ParseError,
) -> PollError {
    PollError::Parse {
        instance: instance.name.clone(),
        url: redactor.redact(url.as_str()),
        what: OVERVIEW,
        reason: redactor.redact(&e.to_string()),
    }
}

/// One page as read: parsed, or its body held unparsed (as it arrived); its hash and size.
struct ReadPage {
    page: Result<Page, Vec<Bytes>>,
    hash: u128,
    bytes: u64,
}

/// The session's state in a `/v2/session/info` answer: Wawp wraps it (`data.status`),
/// WAHA does not (`status`). Only a state-like word counts (`WORKING`, `SCAN_QR_CODE`,
/// …): an envelope's `"status": "success"` is not a session state.
fn session_state(body: &[u8]) -> Option<String> {
    let v: serde_json::Value = serde_json::from_slice(body).ok()?;
    let state_like = |s: &str| {
        !s.is_empty()
            && s.chars()
                .all(|c| c.is_ascii_uppercase() || c == '_' || c.is_ascii_digit())
    };
    let candidates = [
        v.pointer("/data/status"),
        v.pointer("/session/status"),
        v.pointer("/data/session/status"),
        v.pointer("/status"),
        v.pointer("/state"),
        v.pointer("/data/state"),
    ];
    candidates
        .into_iter()
        .flatten()
        .filter_map(|s| s.as_str())
        .find(|s| state_like(s))
        .map(str::to_owned)
}

fn hint(status: StatusCode) -> &'static str {
    match status.as_u16() {
        401 | 403 => {
            "the access token is wrong or expired (check access_token / access_token_file)"
        }
        404 => {
            "the instance does not exist (check instance_id, and that the session is started in Wawp)"
        }
        400 => "Wawp rejected the request (check instance_id and wawp.base_url)",
        429 => "Wawp is rate limiting this client; consider a longer sla.poll_interval",
        500..=599 => "Wawp or its WhatsApp session is failing; retrying at the next poll",
        _ => "unexpected answer; retrying at the next poll",
    }
}

/// The `message` (or `error`) of a JSON error body, else the start of a text body.
fn server_message(body: &[u8]) -> Option<String> {
    let text = String::from_utf8_lossy(body);
    let text = text.trim();
    if text.is_empty() {
        return None;
    }
    let message = match serde_json::from_str::<serde_json::Value>(text) {
        Ok(v) => ["message", "error", "detail"]
            .iter()
            .find_map(|k| {
                v.get(k).map(|m| {
                    m.as_str()
                        .map(str::to_owned)
                        .unwrap_or_else(|| m.to_string())
                })
            })
            .unwrap_or_else(|| text.to_string()),
        Err(_) => text.to_string(),
    };
    let one_line: String = message.split_whitespace().collect::<Vec<_>>().join(" ");
    Some(one_line.chars().take(300).collect())
}

/// A reqwest error with its causes, which its `Display` leaves out.
fn describe(e: &reqwest::Error) -> String {
    let head = if e.is_timeout() {
        "timed out (wawp.request_timeout)".to_string()
    } else if e.is_connect() {
        "could not connect".to_string()
    } else {
        e.to_string()
    };
    crate::with_causes(head, e)
}
