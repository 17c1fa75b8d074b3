//! Who may use the status page and its API (docs/spec.md section 11): people through HTTP
//! Basic against `http.users_file` (bcrypt hashes, as `htpasswd -B` writes them), machines
//! through the bearer token of `http.auth_token_file`; failed logins limited per client
//! address; and the cross-site check every state-changing request must pass.
//!
//! [`Users::parse`] is pure and runs when the configuration loads, so `check` judges the
//! file and a reload with a broken one keeps the running configuration. A [`Gate`] holds
//! what lives between requests: failures per address and a short cache of verified
//! passwords. It never reads the configuration itself: the caller hands it the users and
//! the token in force for each request, so a reload (SIGHUP) applies at the next request.
//! Nothing here may log or return a password, a hash or a token.

use crate::secret::Secret;
use axum::http::{HeaderMap, Method, header};
use base64::Engine;
use sha2::{Digest, Sha256};
use std::collections::{HashMap, VecDeque};
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

/// Failed logins from one address within [`FAILURE_WINDOW`] that lock it out.
pub const MAX_FAILURES: usize = 5;
/// How far back failures count.
pub const FAILURE_WINDOW: Duration = Duration::from_secs(60);
/// How long a locked-out address is answered 429 without its credentials being checked.
pub const LOCKOUT: Duration = Duration::from_secs(60);
/// How long a verified password is trusted without another bcrypt: a page load's several
/// requests and the page's 30 s refresh cost one bcrypt, not one each.
pub const VERIFIED_FOR: Duration = Duration::from_secs(300);
/// Addresses tracked at most; a flood from many addresses cannot grow memory without end.
const MAX_TRACKED: usize = 10_000;
/// Verified credentials cached at most.
const MAX_VERIFIED: usize = 1_024;

/// Every load of a users file gets its own number: the cache of verified passwords is
/// cleared when the users in force are another load's (a reload).
static LOADS: AtomicU64 = AtomicU64::new(1);

/// The people of `http.users_file`: `name:hash` lines, bcrypt hashes only.
#[derive(Clone)]
pub struct Users {
    load: u64,
    users: Arc<Vec<User>>,
    /// A hash of the users' cost, verified against for an unknown name so that a wrong
    /// name costs what a wrong password costs (no user enumeration by timing). Made at
    /// its first use: a bcrypt at every config load would slow every command.
    decoy: Arc<OnceLock<String>>,
}

struct User {
    name: String,
    hash: Secret,
}

impl std::fmt::Debug for Users {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list().entries(self.names()).finish()
    }
}

impl Users {
    /// Parses the file's text. Blank lines and `#` comments are skipped. An error names
    /// the line and the user, never the hash.
    pub fn parse(text: &str) -> Result<Users, String> {
        let mut users: Vec<User> = Vec::new();
        for (n, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let Some((name, hash)) = line.split_once(':') else {
                return Err(format!(
                    "line {}: not a \"name:hash\" line (write the file with htpasswd -B)",
                    n + 1
                ));
            };
            let name = name.trim();
            if name.is_empty() {
                return Err(format!("line {}: the user name is empty", n + 1));
            }
            if hash.trim().parse::<bcrypt::HashParts>().is_err() {
                return Err(format!(
                    "line {} (user \"{name}\"): not a bcrypt hash; only bcrypt is accepted \
                     (htpasswd -B writes it)",
                    n + 1
                ));
            }
            if users.iter().any(|u| u.name == name) {
                return Err(format!(
                    "line {} (user \"{name}\"): the user is listed twice",
                    n + 1
                ));
            }
            users.push(User {
                name: name.to_string(),
                hash: Secret::new(hash.trim()),
            });
        }
        if users.is_empty() {
            return Err("no users in it (\"name:hash\" lines, as htpasswd -B writes)".into());
        }
        Ok(Users {
            load: LOADS.fetch_add(1, Ordering::Relaxed),
            users: Arc::new(users),
            decoy: Arc::default(),
        })
    }

    pub fn names(&self) -> Vec<&str> {
        self.users.iter().map(|u| u.name.as_str()).collect()
    }

    fn get(&self, name: &str) -> Option<&User> {
        self.users.iter().find(|u| u.name == name)
    }

    fn decoy(&self) -> String {
        self.decoy
            .get_or_init(|| {
                let cost = self
                    .users
                    .first()
                    .and_then(|u| u.hash.expose().parse::<bcrypt::HashParts>().ok())
                    .map_or(bcrypt::DEFAULT_COST, |p| p.get_cost());
                bcrypt::hash_with_salt("not a password", cost, [7u8; 16])
                    .map(|h| h.format_for_version(bcrypt::Version::TwoY))
                    .unwrap_or_default()
            })
            .clone()
    }
}

/// Who a request was admitted as.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Who {
    /// Loopback with neither users nor a token configured: nobody needs to sign in.
    Open,
    /// The bearer token.
    Machine,
    /// A user of `http.users_file`, by name (the name an acknowledgement records).
    Person(String),
}

/// What [`Gate::admit`] decided.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Admitted(Who),
    /// No usable credentials: ask for them (401 with a challenge). Not a failed login.
    Missing,
    /// Credentials that could have worked and did not: a failed login (401), counted.
    Failed,
    /// Too many failed logins from this address: 429 for this long.
    Blocked(Duration),
}

/// Credentials as a request carries them.
enum Credentials {
    None,
    Bearer(String),
    Basic { user: String, password: String },
}

fn credentials(headers: &HeaderMap) -> Credentials {
    let Some((scheme, rest)) = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim_start().split_once(' '))
    else {
        return Credentials::None;
    };
    // RFC 9110 section 11.1: schemes are case-insensitive.
    if scheme.eq_ignore_ascii_case("bearer") {
        return Credentials::Bearer(rest.trim().to_string());
    }
    if scheme.eq_ignore_ascii_case("basic") {
        let decoded = base64::engine::general_purpose::STANDARD
            .decode(rest.trim())
            .ok()
            .and_then(|b| String::from_utf8(b).ok());
        if let Some((user, password)) = decoded.as_deref().and_then(|d| d.split_once(':')) {
            return Credentials::Basic {
                user: user.to_string(),
                password: password.to_string(),
            };
        }
    }
    Credentials::None
}

/// Compares in time independent of where the first difference is.
fn same(a: &[u8], b: &[u8]) -> bool {
    !b.is_empty() && a.len() == b.len() && a.iter().zip(b).fold(0u8, |d, (x, y)| d | (x ^ y)) == 0
}

#[derive(Default)]
struct Failures {
    recent: VecDeque<Instant>,
    blocked_until: Option<Instant>,
}

#[derive(Default)]
struct State {
    failures: HashMap<IpAddr, Failures>,
    /// Keyed hashes of verified credentials, and when each stops being trusted.
    verified: HashMap<[u8; 32], Instant>,
    /// The users load the cache was filled under.
    verified_load: u64,
}

/// Admission for the page and the API: bcrypt off the executor, a short cache of verified
/// passwords, and failures limited per client address.
pub struct Gate {
    state: Mutex<State>,
    /// The key of the cache's hashes, random per process: what the cache holds cannot be
    /// looked up in a precomputed table.
    key: [u8; 32],
    /// bcrypt is deliberately slow (50–250 ms): at most this many run at once, so a flood
    /// of guesses from many addresses cannot take every blocking thread and core.
    bcrypts: tokio::sync::Semaphore,
}

impl Default for Gate {
    fn default() -> Self {
        Gate::new()
    }
}

impl Gate {
    pub fn new() -> Gate {
        let mut key = [0u8; 32];
        if rustls::crypto::aws_lc_rs::default_provider()
            .secure_random
            .fill(&mut key)
            .is_err()
        {
            // No system randomness: still distinct per process, and the cache stays a
            // keyed hash of a password, never the password.
            let seed = format!("{:?}{}", Instant::now(), std::process::id());
            key.copy_from_slice(&Sha256::digest(seed.as_bytes()));
        }
        let parallel = std::thread::available_parallelism().map_or(2, |n| n.get().min(4));
        Gate {
            state: Mutex::default(),
            key,
            bcrypts: tokio::sync::Semaphore::new(parallel),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Judges one request's credentials against the users and the token in force.
    /// `peer` is the client's address (failures are counted per address).
    pub async fn admit(
        &self,
        users: Option<&Users>,
        token: Option<&Secret>,
        headers: &HeaderMap,
        peer: IpAddr,
    ) -> Outcome {
        if users.is_none() && token.is_none() {
            return Outcome::Admitted(Who::Open);
        }
        match credentials(headers) {
            // A wrong token is logged but not counted against the address: a token is no
            // password a person could guess at any rate a limit allows, and a script still
            // polling with a token rotated a moment ago must not lock out the people who
            // share its address (a proxy, a NAT).
            Credentials::Bearer(given) => match token {
                Some(t) if same(given.as_bytes(), t.expose().as_bytes()) => {
                    Outcome::Admitted(Who::Machine)
                }
                Some(_) => {
                    tracing::warn!(client = %peer, "status page: refused a wrong bearer token");
                    Outcome::Failed
                }
                None => Outcome::Missing,
            },
            Credentials::Basic { user, password } => match users {
                Some(users) => {
                    // Locked out: the password is not even looked at (no bcrypt for a flood).
                    if let Some(left) = self.blocked(peer, Instant::now()) {
                        return Outcome::Blocked(left);
                    }
                    if self.verify(users, &user, password).await {
                        Outcome::Admitted(Who::Person(user))
                    } else {
                        let why = if users.get(&user).is_some() {
                            "a wrong password"
                        } else {
                            "no such user"
                        };
                        self.failed(peer, &user, why)
                    }
                }
                None => Outcome::Missing,
            },
            Credentials::None => Outcome::Missing,
        }
    }

    /// Whether `password` is `name`'s: from the cache, else by bcrypt on a blocking thread.
    async fn verify(&self, users: &Users, name: &str, password: String) -> bool {
        let user = users.get(name);
        let hash = match user {
            Some(u) => u.hash.expose().to_string(),
            None => users.decoy(),
        };
        let key = self.cache_key(name, &hash, &password);
        let now = Instant::now();
        if user.is_some() {
            let mut s = self.lock();
            if s.verified_load != users.load {
                s.verified.clear();
                s.verified_load = users.load;
            }
            if s.verified.get(&key).is_some_and(|until| *until > now) {
                return true;
            }
        }
        let Ok(_permit) = self.bcrypts.acquire().await else {
            return false;
        };
        let ok = tokio::task::spawn_blocking(move || bcrypt::verify(password, &hash))
            .await
            .is_ok_and(|r| r.unwrap_or(false));
        if ok && user.is_some() {
            let mut s = self.lock();
            if s.verified_load == users.load {
                if s.verified.len() >= MAX_VERIFIED {
                    s.verified.retain(|_, until| *until > now);
                    if s.verified.len() >= MAX_VERIFIED {
                        s.verified.clear();
                    }
                }
                s.verified.insert(key, now + VERIFIED_FOR);
            }
        }
        ok && user.is_some()
    }

    /// A keyed hash of the credentials and the stored hash: a changed password in the
    /// file is another key.
    fn cache_key(&self, name: &str, hash: &str, password: &str) -> [u8; 32] {
        let mut h = Sha256::new();
        h.update(self.key);
        for part in [name, hash, password] {
            h.update((part.len() as u64).to_be_bytes());
            h.update(part.as_bytes());
        }
        h.finalize().into()
    }

    /// How long `peer` stays locked out, if it is.
    fn blocked(&self, peer: IpAddr, now: Instant) -> Option<Duration> {
        let s = self.lock();
        s.failures
            .get(&peer)
            .and_then(|f| f.blocked_until)
            .filter(|until| *until > now)
            .map(|until| until - now)
    }

    /// Counts a failed login, logs it (the user name, never the password) and answers it.
    fn failed(&self, peer: IpAddr, user: &str, why: &str) -> Outcome {
        let mut shown: String = user.chars().take(64).collect();
        if user.chars().count() > 64 {
            shown.push('…');
        }
        tracing::warn!(client = %peer, user = ?shown, "status page: failed login: {why}");
        if self.record_failure(peer, Instant::now()) {
            tracing::warn!(
                client = %peer,
                "status page: {MAX_FAILURES} failed logins within {}s: refusing this address for {}s",
                FAILURE_WINDOW.as_secs(),
                LOCKOUT.as_secs()
            );
        }
        Outcome::Failed
    }

    /// Records a failure; `true` when it locks the address out.
    fn record_failure(&self, peer: IpAddr, now: Instant) -> bool {
        let mut s = self.lock();
        if s.failures.len() >= MAX_TRACKED && !s.failures.contains_key(&peer) {
            s.failures.retain(|_, f| {
                f.blocked_until.is_some_and(|u| u > now)
                    || f.recent.back().is_some_and(|t| now - *t < FAILURE_WINDOW)
            });
            if s.failures.len() >= MAX_TRACKED {
                s.failures
                    .retain(|_, f| f.blocked_until.is_some_and(|u| u > now));
            }
        }
        let f = s.failures.entry(peer).or_default();
        while f.recent.front().is_some_and(|t| now - *t >= FAILURE_WINDOW) {
            f.recent.pop_front();
        }
        f.recent.push_back(now);
        if f.recent.len() >= MAX_FAILURES {
            f.recent.clear();
            f.blocked_until = Some(now + LOCKOUT);
            true
        } else {
            false
        }
    }
}

/// Why a state-changing request must be refused as cross-site (request forgery), if it
/// must. The model is Go's `http.CrossOriginProtection`: safe methods pass; a browser's
/// `Sec-Fetch-Site` must be `same-origin` (or `none`: typed by the user); without it, an
/// `Origin` must name this host (the request's `Host`, or `http.external_url` behind a
/// proxy that rewrites it). A request with neither header comes from no browser (a script
/// with the token or a password) and passes. `same-site` is refused too: a sibling
/// subdomain is another party's page.
/// With nobody to sign in (loopback, no users, no token), whether the request names this
/// host as a loopback address, `localhost` or `http.external_url`'s host: a page elsewhere
/// that rebinds its own name to 127.0.0.1 (DNS rebinding) sends its own name as `Host`,
/// and would otherwise read the page and press its buttons from a browser on this machine.
/// `None` when it may pass, else why not.
pub fn foreign_host(headers: &HeaderMap, external_url: Option<&url::Url>) -> Option<String> {
    let host = headers
        .get("host")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    // The name without the port: "[::1]:9187", "127.0.0.1:9187", "localhost".
    let name = match host.rsplit_once(':') {
        Some((n, port)) if port.bytes().all(|b| b.is_ascii_digit()) => n,
        _ => host,
    };
    let name = name.trim_start_matches('[').trim_end_matches(']');
    let local = name.eq_ignore_ascii_case("localhost")
        || name
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback());
    let external = external_url.and_then(|u| u.host_str()).is_some_and(|h| {
        h.trim_start_matches('[')
            .trim_end_matches(']')
            .eq_ignore_ascii_case(name)
    });
    if local || external || host.is_empty() {
        return None;
    }
    Some(format!(
        "Host {:?} is not this machine's loopback name; without users_file or auth_token_file only a loopback Host (or http.external_url's) is served",
        host.chars().take(100).collect::<String>()
    ))
}

pub fn cross_site(
    method: &Method,
    headers: &HeaderMap,
    external_url: Option<&url::Url>,
) -> Option<String> {
    if matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS) {
        return None;
    }
    let text = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    if let Some(site) = headers.get("sec-fetch-site") {
        return match site.to_str().unwrap_or("") {
            "same-origin" | "none" => None,
            other => Some(format!(
                "Sec-Fetch-Site is {:?}: the request came from another site's page",
                other.chars().take(32).collect::<String>()
            )),
        };
    }
    let origin = text("origin")?;
    let Some(authority) = url::Url::parse(origin).ok().and_then(|u| {
        u.host_str()
            .map(|h| match u.port() {
                Some(p) => format!("{h}:{p}"),
                None => h.to_string(),
            })
            .map(|a| (u.scheme().to_string(), a))
    }) else {
        return Some("Origin names no site (\"null\" or unparsable)".into());
    };
    let host = text("host").unwrap_or("");
    if authority.1.eq_ignore_ascii_case(host) {
        return None;
    }
    if let Some(ext) = external_url
        && ext.scheme() == authority.0
        && ext.host_str().is_some_and(|h| {
            let a = match ext.port() {
                Some(p) => format!("{h}:{p}"),
                None => h.to_string(),
            };
            a.eq_ignore_ascii_case(&authority.1)
        })
    {
        return None;
    }
    Some(format!(
        "Origin {:?} is another site than this one",
        origin.chars().take(100).collect::<String>()
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    /// DNS rebinding (found by review): with nobody to sign in, a page whose name now
    /// points at 127.0.0.1 must not be served, so it can neither read the page nor press
    /// its buttons.
    #[test]
    fn an_open_page_serves_only_its_loopback_names() {
        let ext = url::Url::parse("https://sla.example.com/").ok();
        let judge = |host: &str| {
            let mut h = HeaderMap::new();
            h.insert("host", HeaderValue::from_str(host).unwrap());
            foreign_host(&h, ext.as_ref())
        };
        for ok in [
            "127.0.0.1:9187",
            "localhost:9187",
            "LOCALHOST",
            "[::1]:9187",
            "127.8.9.1",
            "sla.example.com",
        ] {
            assert_eq!(judge(ok), None, "{ok}");
        }
        for bad in [
            "evil.example:9187",
            "evil.example",
            "10.0.0.5:9187",
            "localhost.evil.example",
        ] {
            let why = judge(bad).unwrap_or_default();
            assert!(
                why.contains("not this machine's loopback name"),
                "{bad}: {why}"
            );
        }
    }

    /// `htpasswd -nbB -C 4 amina 'correct horse'` (cost 4 keeps the tests fast).
    const AMINA: &str = "amina:$2y$04$StjEdBNioEOIyOAQ/yMtGOeJbvVYAKuF/jYN1y6CL7EPVYnVKdfvW";

    fn basic(user: &str, password: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        let v = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
        h.insert(
            header::AUTHORIZATION,
            HeaderValue::from_str(&format!("Basic {v}")).unwrap(),
        );
        h
    }

    fn peer(n: u8) -> IpAddr {
        IpAddr::from([192, 0, 2, n])
    }

    #[test]
    fn the_users_file_takes_htpasswd_bcrypt_lines_and_names_bad_ones_without_the_hash() {
        let users = Users::parse(&format!("# people\n\n{AMINA}\n")).unwrap();
        assert_eq!(users.names(), ["amina"]);
        let err = Users::parse("omar:{SHA}W6ph5Mm5Pz8GgiULbPgzG37mj9g=\n").unwrap_err();
        assert!(err.contains("line 1") && err.contains("omar"), "{err}");
        assert!(!err.contains("W6ph5"), "{err}");
        assert!(Users::parse(&format!("{AMINA}\n{AMINA}\n")).is_err());
        assert!(Users::parse("# nobody\n").is_err());
        assert!(Users::parse("no colon here\n").is_err());
        assert!(!format!("{users:?}").contains("$2y$"));
    }

    #[tokio::test]
    async fn basic_credentials_are_checked_by_bcrypt_and_cached() {
        let users = Users::parse(AMINA).unwrap();
        let gate = Gate::new();
        let ok = basic("amina", "correct horse");
        assert_eq!(
            gate.admit(Some(&users), None, &ok, peer(1)).await,
            Outcome::Admitted(Who::Person("amina".into()))
        );
        assert_eq!(gate.lock().verified.len(), 1);
        assert_eq!(
            gate.admit(Some(&users), None, &ok, peer(1)).await,
            Outcome::Admitted(Who::Person("amina".into()))
        );
        assert_eq!(
            gate.admit(Some(&users), None, &basic("amina", "wrong"), peer(1))
                .await,
            Outcome::Failed
        );
        assert_eq!(
            gate.admit(Some(&users), None, &basic("omar", "correct horse"), peer(1))
                .await,
            Outcome::Failed
        );
        // A reload (a new load of the file) empties the cache.
        let reloaded = Users::parse(AMINA).unwrap();
        assert_eq!(
            gate.admit(Some(&reloaded), None, &ok, peer(2)).await,
            Outcome::Admitted(Who::Person("amina".into()))
        );
        assert_eq!(gate.lock().verified.len(), 1);
        assert_eq!(gate.lock().verified_load, reloaded.load);
        // No credentials is no failed login; neither is a scheme that cannot work.
        assert_eq!(
            gate.admit(Some(&users), None, &HeaderMap::new(), peer(3))
                .await,
            Outcome::Missing
        );
        let mut bearer = HeaderMap::new();
        bearer.insert(header::AUTHORIZATION, HeaderValue::from_static("Bearer x"));
        assert_eq!(
            gate.admit(Some(&users), None, &bearer, peer(3)).await,
            Outcome::Missing
        );
        assert!(!gate.lock().failures.contains_key(&peer(3)));
        // A wrong token fails but is not counted: a rotation must not lock out an address.
        let token = Secret::new("right-token");
        for _ in 0..2 * MAX_FAILURES {
            assert_eq!(
                gate.admit(Some(&users), Some(&token), &bearer, peer(4))
                    .await,
                Outcome::Failed
            );
        }
        assert!(!gate.lock().failures.contains_key(&peer(4)));
    }

    #[tokio::test]
    async fn five_failures_in_a_minute_lock_the_address_out_and_only_it() {
        let users = Users::parse(AMINA).unwrap();
        let gate = Gate::new();
        for _ in 0..MAX_FAILURES {
            assert_eq!(
                gate.admit(Some(&users), None, &basic("amina", "guess"), peer(9))
                    .await,
                Outcome::Failed
            );
        }
        let right = basic("amina", "correct horse");
        assert!(matches!(
            gate.admit(Some(&users), None, &right, peer(9)).await,
            Outcome::Blocked(d) if d <= LOCKOUT && d > LOCKOUT - Duration::from_secs(5)
        ));
        assert_eq!(
            gate.admit(Some(&users), None, &right, peer(10)).await,
            Outcome::Admitted(Who::Person("amina".into()))
        );
    }

    #[test]
    fn failures_spread_wider_than_the_window_never_lock_out_and_a_lockout_ends() {
        let gate = Gate::new();
        let t0 = Instant::now();
        for k in 0..10u64 {
            assert!(!gate.record_failure(peer(1), t0 + Duration::from_secs(k * 20)));
        }
        for k in 0..4u64 {
            assert!(!gate.record_failure(peer(2), t0 + Duration::from_secs(k)));
        }
        assert!(gate.record_failure(peer(2), t0 + Duration::from_secs(4)));
        assert!(gate.blocked(peer(2), t0 + Duration::from_secs(5)).is_some());
        assert!(
            gate.blocked(peer(2), t0 + Duration::from_secs(4) + LOCKOUT)
                .is_none()
        );
    }

    #[test]
    fn cross_site_posts_are_refused_and_the_page_s_own_pass() {
        let post = Method::POST;
        let with = |pairs: &[(&'static str, &'static str)]| {
            let mut h = HeaderMap::new();
            for (k, v) in pairs {
                h.insert(*k, HeaderValue::from_static(v));
            }
            h
        };
        let ext = url::Url::parse("https://sla.example.com/").ok();
        // Reads always pass.
        assert!(
            cross_site(
                &Method::GET,
                &with(&[("sec-fetch-site", "cross-site")]),
                None
            )
            .is_none()
        );
        assert!(cross_site(&post, &with(&[("sec-fetch-site", "cross-site")]), None).is_some());
        assert!(cross_site(&post, &with(&[("sec-fetch-site", "same-site")]), None).is_some());
        assert!(cross_site(&post, &with(&[("sec-fetch-site", "same-origin")]), None).is_none());
        assert!(cross_site(&post, &with(&[("sec-fetch-site", "none")]), None).is_none());
        let evil = with(&[
            ("origin", "https://evil.example"),
            ("host", "sla.example.com"),
        ]);
        assert!(cross_site(&post, &evil, ext.as_ref()).is_some());
        let own = with(&[
            ("origin", "http://127.0.0.1:9187"),
            ("host", "127.0.0.1:9187"),
        ]);
        assert!(cross_site(&post, &own, None).is_none());
        let proxied = with(&[
            ("origin", "https://sla.example.com"),
            ("host", "127.0.0.1:9187"),
        ]);
        assert!(cross_site(&post, &proxied, ext.as_ref()).is_none());
        assert!(cross_site(&post, &proxied, None).is_some());
        assert!(cross_site(&post, &with(&[("origin", "null")]), None).is_some());
        // A script: no browser headers at all.
        assert!(cross_site(&post, &HeaderMap::new(), None).is_none());
    }
}
