//! Configuration: the TOML file of docs/spec.md section 4, parsed and validated whole.
//!
//! Parsing happens once at the edge: unknown keys are errors that name the key, durations
//! are humantime strings of at most 10 years, and cross-references (tiers to channels) are
//! checked. The `[sla]` table is parsed straight into [`policy::Sla`], the type the engine
//! reads. A `[[channel]]` table is handed, after its `name` and `type`, to that type's own
//! keys in `notify` (`notify::types`), which check it and declare its secrets. Secrets are
//! read from their `*_file`s here, as far as the command needs them
//! ([`Secrets`]): an operator command never touches a systemd credential it cannot read.
//! Everything after this module trusts a [`Config`]. This module reads files but never
//! opens sockets.

use crate::notify::types::{self as channel_types, checked_url};
use crate::policy::{self, Matcher, Policy, Rule, StopOn, Tier};
use crate::secret::Secret;
use reqwest::Url;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashSet};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

pub const DEFAULT_PATH: &str = "/etc/inbox-sla/config.toml";

/// Where systemd hands a service its credentials (`LoadCredential=`): only the running
/// service can read them.
const CREDENTIALS_ROOT: &str = "/run/credentials/";

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("config file {path}: {message}")]
    Parse { path: PathBuf, message: String },
    #[error("config file {path}: {message}")]
    Invalid { path: PathBuf, message: String },
}

/// How much of the secrets a command reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Secrets {
    /// Every secret; an unreadable file is an error (`run`, `once`, `test-notify`).
    All,
    /// Every secret, but a systemd credential this process cannot read is a warning, not
    /// an error (`check` run by a person while only the service can read it).
    Check,
    /// None: commands that need no secret (`alerts`, `mute`, `unmute`, `report`).
    None,
}

/// The validated configuration.
#[derive(Debug, Clone)]
pub struct Config {
    pub wawp: WawpConfig,
    pub instances: Vec<Instance>,
    /// `[sla]`, the tiers and the rules: everything the engine consults.
    pub policy: Policy,
    pub store: StoreConfig,
    /// Present exactly when the store is PostgreSQL: leases are then always used.
    pub ha: Option<HaConfig>,
    pub delivery: DeliveryConfig,
    pub channels: Vec<ChannelConfig>,
    pub http: Option<HttpConfig>,
    pub events: Option<EventsConfig>,
    pub log: LogConfig,
    /// Problems worth a warning but not a refusal (a group-readable file with secrets, a
    /// credential only the service can read).
    pub warnings: Vec<String>,
    /// Whether every secret was read: channels and the Wawp client refuse to start
    /// without them.
    pub secrets_read: bool,
    /// Whether any secret is written in the file itself (then its mode matters).
    inline_secrets: bool,
    /// Each instance's place in `instances`, by name: [`Config::instance`] is asked per
    /// instance of every housekeeping pass and Alertmanager re-send, and a linear search
    /// made those quadratic (10,000 instances: 10^8 string compares, a third of a core).
    by_name: std::collections::HashMap<String, usize>,
}

#[derive(Debug, Clone, Serialize)]
pub struct WawpConfig {
    #[serde(serialize_with = "ser_display")]
    pub base_url: Url,
    #[serde(with = "crate::duration")]
    pub request_timeout: Duration,
    /// A larger response body is an error, never an out-of-memory kill.
    pub max_response_bytes: u64,
    /// 0: one request without paging.
    pub page_size: u32,
    /// Paging stops here with a warning, and the overview counts as incomplete.
    pub max_chats: usize,
    /// Polls in flight at once, over every instance.
    pub max_concurrent: usize,
    /// Ask `/v2/session/info` every cycle: an unlinked number makes the overview look
    /// quiet, not fail (section 7). Off for engines without the endpoint.
    pub session_check: bool,
    /// `/v2/chats/messages` reads per instance per cycle, to start episodes at the first
    /// unanswered message (section 2); 0 turns the reads off.
    pub history_lookups: usize,
}

/// `[events]`: Wawp/WAHA webhooks as a doorbell (section 7): an event makes its instance
/// poll at once; the poll stays the only truth.
#[derive(Debug, Clone, Serialize)]
pub struct EventsConfig {
    /// Where the webhooks are POSTed, on `http.listen`.
    pub path: String,
    /// The key WAHA signs bodies with (`X-Webhook-Hmac`, HMAC-SHA512); without it any
    /// POST is taken (a forged event can cause at most an extra poll).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hmac_key: Option<Secret>,
}

/// One WhatsApp number.
#[derive(Debug, Clone, Serialize)]
pub struct Instance {
    /// Label in alerts and metrics; unique.
    pub name: String,
    pub instance_id: String,
    pub access_token: Secret,
}

/// Where the store lives.
#[derive(Debug, Clone, PartialEq)]
pub enum Location {
    Sqlite(PathBuf),
    Postgres(crate::secret::Secret),
}

#[derive(Debug, Clone, Serialize)]
pub struct StoreConfig {
    /// The SQLite file, unless `url` points at PostgreSQL.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub path: Option<PathBuf>,
    /// A PostgreSQL URL; its password makes it a secret.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub url: Option<Secret>,
    /// Closed episodes are kept this long for reports; dead notifications and expired
    /// mutes are pruned after it too.
    #[serde(with = "crate::duration")]
    pub keep: Duration,
}

impl StoreConfig {
    pub fn location(&self) -> Location {
        match (&self.url, &self.path) {
            (Some(url), _) => Location::Postgres(url.clone()),
            (None, Some(path)) => Location::Sqlite(path.clone()),
            (None, None) => Location::Sqlite(default_store_path()),
        }
    }
}

/// `[ha]`: several daemons on one PostgreSQL store (docs/spec.md section 10).
#[derive(Debug, Clone, Serialize)]
pub struct HaConfig {
    /// This daemon's name in leases, `/metrics` and `alerts`.
    pub node: String,
    /// A lease not renewed for this long is free for another node.
    #[serde(with = "crate::duration")]
    pub lease: Duration,
}

#[derive(Debug, Clone, Serialize)]
pub struct DeliveryConfig {
    /// After this a notification is dead.
    #[serde(with = "crate::duration")]
    pub retry_for: Duration,
    /// One send attempt, connection to answer, must finish within this.
    #[serde(with = "crate::duration")]
    pub timeout: Duration,
}

#[derive(Debug, Clone, Serialize)]
pub struct HttpConfig {
    pub listen: SocketAddr,
    /// How people reach the status page (`http.external_url`): links in alerts and
    /// Alertmanager's `generatorURL`. Never derived from `listen` (`0.0.0.0:9187` is
    /// nowhere a person can go).
    #[serde(
        skip_serializing_if = "Option::is_none",
        serialize_with = "ser_opt_url"
    )]
    pub external_url: Option<Url>,
    /// The bearer token the status page and `/api` require (from `auth_token_file`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub auth_token: Option<Secret>,
    /// People: HTTP Basic against these bcrypt hashes, what a browser can send.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub users_file: Option<PathBuf>,
    /// The users of `users_file`; `None` when it is not set, or not read (commands that
    /// read no secret).
    #[serde(skip)]
    pub users: Option<crate::access::Users>,
    /// HTTPS (`tls_cert_file`, `tls_key_file`).
    #[serde(flatten, skip_serializing_if = "Option::is_none")]
    pub tls: Option<HttpTls>,
}

#[derive(Debug, Clone, Serialize)]
pub struct HttpTls {
    #[serde(rename = "tls_cert_file")]
    pub cert_file: PathBuf,
    #[serde(rename = "tls_key_file")]
    pub key_file: PathBuf,
    /// The pair, parsed and matched; `None` only where secrets were not read.
    #[serde(skip)]
    pub identity: Option<crate::tls::Identity>,
}

impl HttpConfig {
    /// Whether `/` and `/api` need a person or a machine to sign in: they show customer
    /// data, so anything but loopback does.
    pub fn needs_auth(&self) -> bool {
        !self.listen.ip().is_loopback()
    }

    /// The scheme the endpoints are served with.
    pub fn scheme(&self) -> &'static str {
        if self.tls.is_some() { "https" } else { "http" }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct LogConfig {
    pub level: String,
    pub format: LogFormat,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    Text,
    Json,
}

/// One `[[channel]]`: its name and its type's settings (each type is a file in `notify`).
pub use crate::notify::ChannelConfig;

// ---------------------------------------------------------------------------------------
// The file as written: its top-level shape. `[sla]` is the domain type itself; the other
// tables are read here and validated into the types above. Every table denies unknown keys.

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    #[serde(default)]
    wawp: RawWawp,
    #[serde(default)]
    instance: Vec<RawInstance>,
    #[serde(default)]
    sla: policy::Sla,
    #[serde(default)]
    escalation: Vec<RawTier>,
    #[serde(default)]
    rule: Vec<RawRule>,
    #[serde(default)]
    store: RawStore,
    ha: Option<RawHa>,
    #[serde(default)]
    delivery: RawDelivery,
    /// Read as tables, with the place of every key and value: each type reads its own
    /// keys ([`decode_channels`]).
    #[serde(default)]
    channel: Vec<RawChannelTable>,
    http: Option<RawHttp>,
    events: Option<RawEvents>,
    #[serde(default)]
    log: RawLog,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawEvents {
    path: Option<String>,
    hmac_key_file: Option<PathBuf>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawWawp {
    base_url: Option<String>,
    #[serde(default, deserialize_with = "de_opt_duration")]
    request_timeout: Option<Duration>,
    max_response_bytes: Option<u64>,
    page_size: Option<u32>,
    max_chats: Option<usize>,
    max_concurrent: Option<usize>,
    session_check: Option<bool>,
    history_lookups: Option<usize>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawInstance {
    name: Option<String>,
    instance_id: String,
    access_token: Option<String>,
    access_token_file: Option<PathBuf>,
}

/// An `[[escalation]]` table (or an entry of a rule's `escalation`).
#[derive(Deserialize, Clone)]
#[serde(deny_unknown_fields)]
struct RawTier {
    #[serde(with = "crate::duration")]
    after: Duration,
    /// Absent: every channel.
    notify: Option<Vec<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRule {
    #[serde(rename = "match")]
    matchers: Vec<String>,
    #[serde(default)]
    ignore: bool,
    business_hours: Option<bool>,
    escalation: Option<Vec<RawTier>>,
    stop_on: Option<StopOn>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawStore {
    path: Option<PathBuf>,
    url: Option<String>,
    url_file: Option<PathBuf>,
    #[serde(default, deserialize_with = "de_opt_duration")]
    keep: Option<Duration>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawHa {
    node: Option<String>,
    #[serde(default, deserialize_with = "de_opt_duration")]
    lease: Option<Duration>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawDelivery {
    #[serde(default, deserialize_with = "de_opt_duration")]
    retry_for: Option<Duration>,
    #[serde(default, deserialize_with = "de_opt_duration")]
    timeout: Option<Duration>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawHttp {
    listen: String,
    external_url: Option<String>,
    auth_token_file: Option<PathBuf>,
    users_file: Option<PathBuf>,
    tls_cert_file: Option<PathBuf>,
    tls_key_file: Option<PathBuf>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawLog {
    level: Option<String>,
    format: Option<LogFormat>,
}

/// A `[[channel]]` table as written, with where each key and value is in the text.
type RawChannelTable = toml::Spanned<BTreeMap<toml::Spanned<String>, toml::Spanned<toml::Value>>>;

// ---------------------------------------------------------------------------------------

/// Where the config lives: `--config`, else `$INBOX_SLA_CONFIG`, else the default path.
/// (clap reads the environment variable into `--config`.)
pub fn resolve_path(flag: Option<PathBuf>) -> PathBuf {
    flag.unwrap_or_else(|| PathBuf::from(DEFAULT_PATH))
}

impl Config {
    /// Loads the file, reading every secret.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        Config::load_with(path, Secrets::All)
    }

    pub fn load_with(path: &Path, secrets: Secrets) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        let mut config = Config::parse(&text, path, secrets)?;
        if config.inline_secrets && readable_by_others(path) {
            config.warnings.push(format!(
                "config file {} holds inline secrets and is readable by group or others: \
                 chmod 600 it, or move the secrets to *_file keys",
                path.display()
            ));
        }
        Ok(config)
    }

    /// Parses and validates TOML text, reading every secret; `path` names the source in
    /// errors and anchors relative `*_file` paths.
    pub fn from_toml(text: &str, path: &Path) -> Result<Config, ConfigError> {
        Config::parse(text, path, Secrets::All)
    }

    pub fn parse(text: &str, path: &Path, secrets: Secrets) -> Result<Config, ConfigError> {
        let parse_error = |message| ConfigError::Parse {
            path: path.to_owned(),
            message,
        };
        let mut raw: RawConfig =
            toml::from_str(text).map_err(|e| parse_error(describe_toml_error(&e, text)))?;
        let channels =
            decode_channels(std::mem::take(&mut raw.channel), text).map_err(parse_error)?;
        let mut reader = SecretReader {
            base_dir: path.parent().unwrap_or(Path::new(".")).to_owned(),
            mode: secrets,
            warnings: Vec::new(),
            all_read: true,
        };
        build(raw, channels, &mut reader).map_err(|message| ConfigError::Invalid {
            path: path.to_owned(),
            message,
        })
    }

    pub fn sla(&self) -> &policy::Sla {
        &self.policy.sla
    }

    /// How recent an instance's last successful poll must be to count as healthy
    /// (`/healthz`, the status page): three poll intervals, so one slow or failed poll is
    /// no alarm and a stuck loop is.
    pub fn healthy_within(&self) -> Duration {
        self.sla().poll_interval * 3
    }

    /// Every secret in the configuration, for redacting text that came from elsewhere.
    pub fn secrets(&self) -> Vec<Secret> {
        let mut out: Vec<Secret> = self
            .instances
            .iter()
            .map(|i| i.access_token.clone())
            .collect();
        out.extend(self.store.url.clone());
        out.extend(self.http.as_ref().and_then(|h| h.auth_token.clone()));
        for c in &self.channels {
            out.extend(c.secrets().into_iter().cloned());
        }
        out
    }

    /// The effective configuration as TOML, every secret shown as `***`.
    pub fn render(&self) -> String {
        #[derive(Serialize)]
        struct View<'a> {
            wawp: &'a WawpConfig,
            instance: &'a [Instance],
            sla: &'a policy::Sla,
            escalation: &'a [Tier],
            #[serde(skip_serializing_if = "<[Rule]>::is_empty")]
            rule: &'a [Rule],
            store: &'a StoreConfig,
            #[serde(skip_serializing_if = "Option::is_none")]
            ha: &'a Option<HaConfig>,
            delivery: &'a DeliveryConfig,
            channel: &'a [ChannelConfig],
            #[serde(skip_serializing_if = "Option::is_none")]
            http: &'a Option<HttpConfig>,
            #[serde(skip_serializing_if = "Option::is_none")]
            events: &'a Option<EventsConfig>,
            log: &'a LogConfig,
        }
        let view = View {
            wawp: &self.wawp,
            instance: &self.instances,
            sla: &self.policy.sla,
            escalation: &self.policy.tiers,
            rule: &self.policy.rules,
            store: &self.store,
            ha: &self.ha,
            delivery: &self.delivery,
            channel: &self.channels,
            http: &self.http,
            events: &self.events,
            log: &self.log,
        };
        toml::to_string_pretty(&view).unwrap_or_else(|e| format!("# cannot render: {e}\n"))
    }

    pub fn instance(&self, name: &str) -> Option<&Instance> {
        self.by_name
            .get(name)
            .and_then(|&i| self.instances.get(i))
            .filter(|i| i.name == name)
    }

    pub fn channel(&self, name: &str) -> Option<&ChannelConfig> {
        self.channels.iter().find(|c| c.name == name)
    }

    pub fn channel_names(&self) -> Vec<String> {
        self.channels.iter().map(|c| c.name.clone()).collect()
    }
}

/// What the channels are built with.
impl<'a> From<&'a Config> for crate::notify::Plan<'a> {
    fn from(config: &'a Config) -> Self {
        crate::notify::Plan {
            channels: &config.channels,
            secrets_read: config.secrets_read,
            secrets: config.secrets(),
            timeout: config.delivery.timeout,
            external_url: config.http.as_ref().and_then(|h| h.external_url.clone()),
            takeover: takeover(config),
            clock: crate::clock::Clock::System,
        }
    }
}

/// How long a firing Alertmanager alert must outlast the daemon that last sent it: a dying
/// node's alerts must not end in Alertmanager before another node (after `ha.lease` and a
/// poll) or the restarted daemon (a couple of polls) sends them again (section 9).
fn takeover(config: &Config) -> Duration {
    let poll = config.sla().poll_interval;
    config.ha.as_ref().map_or(Duration::ZERO, |h| h.lease) + poll * 2
}

/// Keys whose values are secrets: an error about them never quotes the value.
const SECRET_KEYS: [&str; 7] = [
    "token",
    "password",
    "webhook",
    "url",
    "headers",
    "authorization",
    "key",
];

/// "line 24 in [sla], column 1: unknown field `treshold`, expected one of …", without the
/// source snippet toml prints (it would show a secret written on the offending line). When
/// the offending key looks like a secret, the message is replaced, since serde quotes
/// values ("invalid type: integer `123456`").
fn describe_toml_error(e: &toml::de::Error, text: &str) -> String {
    match e.span() {
        Some(span) => describe_at(text, span.start, false, e.message(), None),
        None => e.message().to_string(),
    }
}

/// Where `start` is in the text: its line and the table that line belongs to ("24 in
/// [sla]"), its column, and the line itself. A header line belongs to the top level (an
/// unknown table), unless `in_header`: then it is the table at fault (a channel's).
fn position(text: &str, start: usize, in_header: bool) -> (String, usize, &str) {
    let start = start.min(text.len());
    let line_no = text[..start].matches('\n').count() + 1;
    let line_start = text[..start].rfind('\n').map_or(0, |i| i + 1);
    let column = text[line_start..start].chars().count() + 1;
    let line = text[line_start..].lines().next().unwrap_or("");
    // The table the line belongs to: the last header above it. A header line itself (an
    // unknown table) belongs to the top level, not to the table before it.
    let header = |l: &str| l.trim_start().starts_with('[');
    let table = if header(line) && in_header {
        format!(" in {}", line.split('#').next().unwrap_or(line).trim())
    } else if header(line) {
        " (top level)".to_string()
    } else {
        text[..line_start]
            .lines()
            .rev()
            .map(str::trim)
            .find(|l| header(l))
            .map(|h| format!(" in {}", h.split('#').next().unwrap_or(h).trim()))
            .unwrap_or_default()
    };
    (format!("{line_no}{table}"), column, line)
}

/// A message about a channel's table that quotes no value, placed at `start`.
fn located(text: &str, start: usize, message: &str) -> String {
    let (line_no, column, _) = position(text, start, true);
    format!("line {line_no}, column {column}: {message}")
}

/// A parser's message about the text at `start`, which may quote the value there: replaced
/// when the key (`key`, else the one on that line) looks like a secret.
fn describe_at(
    text: &str,
    start: usize,
    in_header: bool,
    message: &str,
    key: Option<&str>,
) -> String {
    let (line_no, column, line) = position(text, start, in_header);
    let line_key = line.split('=').next().unwrap_or("").trim();
    let secret = |k: &str| {
        let k = k.to_ascii_lowercase();
        SECRET_KEYS.iter().any(|s| k.contains(s))
    };
    let secret_line = line.contains('=') && secret(line_key);
    let message = message.trim_end();
    let unknown_field = message.starts_with("unknown field");
    let key = key.or(line.contains('=').then_some(line_key));
    match key {
        Some(k) if (secret_line || secret(k)) && !unknown_field => format!(
            "line {line_no}, column {column}: the value of `{k}` is not valid here (value not shown: it may be a secret)"
        ),
        Some(k) if !unknown_field => {
            format!("line {line_no}, column {column}, key `{k}`: {message}")
        }
        _ => format!("line {line_no}, column {column}: {message}"),
    }
}

/// Reads each `[[channel]]` table into its type's keys. Errors point at the line, and name
/// the channel and the key.
fn decode_channels(
    tables: Vec<RawChannelTable>,
    text: &str,
) -> Result<Vec<channel_types::Decoded>, String> {
    let mut decoded = Vec::new();
    for (i, table) in tables.into_iter().enumerate() {
        let table_start = table.span().start;
        let mut entries: Vec<_> = table.into_inner().into_iter().collect();
        entries.sort_by_key(|(k, _)| k.span().start);
        let spans: Vec<(String, usize, usize)> = entries
            .iter()
            .map(|(k, v)| (k.get_ref().clone(), k.span().start, v.span().start))
            .collect();
        let entries = entries
            .into_iter()
            .map(|(k, v)| (k.into_inner(), v.into_inner()))
            .collect();
        let channel = channel_types::decode(i, entries).map_err(|e| {
            let at = |key: &str| spans.iter().find(|(k, ..)| k == key);
            match (e.part, e.key.as_deref().and_then(at)) {
                (channel_types::Part::Value, Some((key, _, value))) => {
                    describe_at(text, *value, true, &e.message, Some(key))
                }
                (channel_types::Part::Key, Some((_, key, _))) => located(text, *key, &e.message),
                _ => located(text, table_start, &e.message),
            }
        })?;
        decoded.push(channel);
    }
    Ok(decoded)
}

fn readable_by_others(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path).is_ok_and(|m| m.permissions().mode() & 0o044 != 0)
}

/// Reads `*_file` secrets as far as the command needs them.
struct SecretReader {
    base_dir: PathBuf,
    mode: Secrets,
    warnings: Vec<String>,
    all_read: bool,
}

impl SecretReader {
    /// Exactly one of `key` / `key_file`; the file's trailing newline is trimmed.
    fn pair(
        &mut self,
        table: &str,
        key: &str,
        inline: Option<String>,
        file: Option<PathBuf>,
    ) -> Result<Option<Secret>, String> {
        match (inline, file) {
            (Some(_), Some(_)) => Err(format!("{table}: set either {key} or {key}_file, not both")),
            (Some(v), None) if v.is_empty() => Err(format!("{table}.{key} is empty")),
            (Some(v), None) => Ok(Some(Secret::new(v))),
            (None, Some(f)) => self.file(table, key, &f).map(Some),
            (None, None) => Ok(None),
        }
    }

    /// The store's URL: every command that opens the store needs it, so it is read even
    /// when other secrets are not.
    fn store_pair(
        &mut self,
        inline: Option<String>,
        file: Option<PathBuf>,
    ) -> Result<Option<Secret>, String> {
        let mode = self.mode;
        if mode == Secrets::None {
            self.mode = Secrets::All;
        }
        let read = self.pair("store", "url", inline, file);
        self.mode = mode;
        read
    }

    fn file(&mut self, table: &str, key: &str, file: &Path) -> Result<Secret, String> {
        if self.mode == Secrets::None {
            self.all_read = false;
            return Ok(Secret::default());
        }
        let path = self.base_dir.join(file);
        match std::fs::read_to_string(&path) {
            Ok(text) => {
                let value = text.trim_end_matches(['\n', '\r']).to_string();
                if value.is_empty() {
                    return Err(format!("{table}.{key}_file: {} is empty", path.display()));
                }
                Ok(Secret::new(value))
            }
            Err(e) if self.mode == Secrets::Check && service_only(&path) => {
                self.all_read = false;
                self.warnings.push(format!(
                    "{table}.{key}_file {}: not checked here: only the service can read it \
                     (systemd hands credentials to the running service only; {e})",
                    path.display()
                ));
                Ok(Secret::default())
            }
            Err(e) => Err(format!(
                "{table}.{key}_file: cannot read {}: {e}",
                path.display()
            )),
        }
    }
}

impl channel_types::SecretSource for SecretReader {
    fn pair(
        &mut self,
        table: &str,
        key: &str,
        inline: Option<String>,
        file: Option<PathBuf>,
    ) -> Result<Option<Secret>, String> {
        SecretReader::pair(self, table, key, inline, file)
    }

    fn base_dir(&self) -> &Path {
        &self.base_dir
    }
}

/// A systemd credential of some unit, read from outside that unit (`$CREDENTIALS_DIRECTORY`
/// is where this process's own credentials are, when it has any).
fn service_only(path: &Path) -> bool {
    if !path.starts_with(CREDENTIALS_ROOT) {
        return false;
    }
    match std::env::var_os("CREDENTIALS_DIRECTORY") {
        Some(own) => !path.starts_with(own),
        None => true,
    }
}

fn build(
    raw: RawConfig,
    decoded: Vec<channel_types::Decoded>,
    secrets: &mut SecretReader,
) -> Result<Config, String> {
    let mut inline_secrets = false;

    // [wawp]
    let base_url_text = raw
        .wawp
        .base_url
        .unwrap_or_else(|| "https://api.wawp.net".into());
    let base_url = checked_url("wawp.base_url", &base_url_text)?;
    let wawp = WawpConfig {
        base_url,
        request_timeout: raw.wawp.request_timeout.unwrap_or(Duration::from_secs(15)),
        max_response_bytes: raw.wawp.max_response_bytes.unwrap_or(64 << 20),
        page_size: raw.wawp.page_size.unwrap_or(100),
        max_chats: raw.wawp.max_chats.unwrap_or(50_000),
        max_concurrent: raw.wawp.max_concurrent.unwrap_or(16),
        session_check: raw.wawp.session_check.unwrap_or(true),
        history_lookups: raw.wawp.history_lookups.unwrap_or(50),
    };
    if wawp.max_concurrent == 0 {
        return Err("wawp.max_concurrent must be at least 1".into());
    }
    if wawp.request_timeout.is_zero() {
        return Err("wawp.request_timeout must be more than 0s".into());
    }
    if wawp.max_chats == 0 {
        return Err("wawp.max_chats must be at least 1".into());
    }

    // [[instance]]
    if raw.instance.is_empty() {
        return Err("no [[instance]] configured: add one with instance_id and access_token".into());
    }
    let mut instances = Vec::new();
    let mut names = HashSet::new();
    for (i, inst) in raw.instance.into_iter().enumerate() {
        let name = inst.name.unwrap_or_else(|| inst.instance_id.clone());
        let key = format!("instance[{i}] (\"{name}\")");
        if inst.instance_id.trim().is_empty() {
            return Err(format!("{key}: instance_id is empty"));
        }
        if !names.insert(name.clone()) {
            return Err(format!(
                "{key}: the name \"{name}\" is used twice; names must be unique"
            ));
        }
        inline_secrets |= inst.access_token.is_some();
        let access_token = secrets
            .pair(
                &key,
                "access_token",
                inst.access_token,
                inst.access_token_file,
            )?
            .ok_or_else(|| format!("{key}: set access_token or access_token_file"))?;
        instances.push(Instance {
            name,
            instance_id: inst.instance_id,
            access_token,
        });
    }

    // [[channel]]
    let mut channels = Vec::new();
    for (i, ch) in decoded.into_iter().enumerate() {
        let key = format!("channel[{i}] (\"{}\")", ch.name);
        if channels.iter().any(|c: &ChannelConfig| c.name == ch.name) {
            return Err(format!(
                "{key}: the name \"{}\" is used twice; names must be unique",
                ch.name
            ));
        }
        let mut setup = channel_types::Setup::new(&key, secrets);
        let channel = ch.build(&mut setup)?;
        inline_secrets |= setup.holds_inline_secrets();
        channels.push(channel);
    }
    if channels.is_empty() {
        return Err(
            "no [[channel]] configured: escalations would reach nobody; add one \
             (type = \"console\" prints to stdout)"
                .into(),
        );
    }
    let channel_names: Vec<String> = channels.iter().map(|c| c.name.clone()).collect();

    // [sla], [[escalation]], [[rule]]
    let sla = raw.sla;
    sla.validate()?;
    let tiers = if raw.escalation.is_empty() {
        vec![Tier {
            after: sla.threshold,
            notify: channel_names.clone(),
        }]
    } else {
        build_tiers("escalation", raw.escalation, &channel_names)?
    };
    let mut rules = Vec::new();
    for (i, r) in raw.rule.into_iter().enumerate() {
        let key = format!("rule[{i}]");
        if r.matchers.is_empty() {
            return Err(format!(
                "{key}: match is empty; give JID globs or name:/regex/"
            ));
        }
        let matchers = r
            .matchers
            .iter()
            .map(|m| Matcher::parse(m).map_err(|e| format!("{key}.match: {e}")))
            .collect::<Result<Vec<_>, _>>()?;
        let escalation = match r.escalation {
            Some(t) if t.is_empty() => return Err(format!("{key}.escalation is empty")),
            Some(t) => Some(build_tiers(
                &format!("{key}.escalation"),
                t,
                &channel_names,
            )?),
            None => None,
        };
        if r.business_hours == Some(true) && sla.business_hours.is_none() {
            return Err(format!(
                "{key}: business_hours = true, but [sla.business_hours] is not configured"
            ));
        }
        rules.push(Rule {
            matchers,
            ignore: r.ignore,
            business_hours: r.business_hours,
            escalation,
            stop_on: r.stop_on,
        });
    }
    let policy = Policy { sla, tiers, rules };

    // [store], [delivery], [http], [log]
    inline_secrets |= raw.store.url.is_some();
    let url = secrets.store_pair(raw.store.url, raw.store.url_file)?;
    if url.is_some() && raw.store.path.is_some() {
        return Err(
            "store: set either path (SQLite) or url / url_file (PostgreSQL), not both".into(),
        );
    }
    if let Some(u) = url.as_ref().filter(|u| !u.expose().is_empty()) {
        let scheme = u.expose().split(':').next().unwrap_or("");
        if scheme != "postgres" && scheme != "postgresql" {
            return Err("store.url must be a PostgreSQL URL like postgres://inbox-sla@db.example.com/inbox_sla".into());
        }
    }
    let store = StoreConfig {
        path: match &url {
            Some(_) => None,
            None => Some(raw.store.path.unwrap_or_else(default_store_path)),
        },
        url,
        keep: raw.store.keep.unwrap_or(Duration::from_secs(90 * 86_400)),
    };
    if store.keep < Duration::from_secs(86_400) {
        return Err("store.keep must be at least 1d".into());
    }
    let poll = policy.sla.poll_interval;
    let ha = match (&store.url, raw.ha) {
        (None, Some(_)) => {
            return Err("[ha] needs a PostgreSQL store: set store.url or store.url_file".into());
        }
        (None, None) => None,
        (Some(_), ha) => {
            let ha = ha.unwrap_or_default();
            let node = ha.node.unwrap_or_else(crate::host::hostname);
            if node.trim().is_empty() {
                return Err("ha.node is empty".into());
            }
            let lease = match ha.lease {
                Some(l) if l < poll * 2 => {
                    return Err(format!(
                        "ha.lease ({}) must be at least 2 × sla.poll_interval ({})",
                        crate::duration::format(l),
                        crate::duration::format(poll * 2)
                    ));
                }
                Some(l) => l,
                None => (poll * 3).max(Duration::from_secs(30)),
            };
            Some(HaConfig { node, lease })
        }
    };
    let delivery = DeliveryConfig {
        retry_for: raw
            .delivery
            .retry_for
            .unwrap_or(Duration::from_secs(24 * 3600)),
        timeout: raw.delivery.timeout.unwrap_or(Duration::from_secs(15)),
    };
    if delivery.timeout.is_zero() {
        return Err("delivery.timeout must be more than 0s".into());
    }
    if delivery.retry_for.is_zero() {
        return Err("delivery.retry_for must be more than 0s".into());
    }
    let http = match raw.http {
        Some(h) => {
            let listen: SocketAddr = h.listen.parse().map_err(|_| {
                format!(
                    "http.listen: \"{}\" is not an address like 127.0.0.1:9187",
                    h.listen
                )
            })?;
            if h.auth_token_file.is_none() && h.users_file.is_none() && !listen.ip().is_loopback() {
                return Err(format!(
                    "http.users_file (people) or http.auth_token_file (scripts) is required \
                     when http.listen ({listen}) is not a loopback address: the status page \
                     shows customer names and messages"
                ));
            }
            let auth_token = match &h.auth_token_file {
                Some(f) => Some(secrets.file("http", "auth_token", f)?),
                None => None,
            };
            // The hashes are secrets too: read like one (systemd credentials, `check`).
            let users = match &h.users_file {
                Some(f) => {
                    let text = secrets.file("http", "users", f)?;
                    if text.expose().is_empty() {
                        None
                    } else {
                        Some(crate::access::Users::parse(text.expose()).map_err(|e| {
                            format!(
                                "http.users_file {}: {e}",
                                secrets.base_dir.join(f).display()
                            )
                        })?)
                    }
                }
                None => None,
            };
            let tls = match (h.tls_cert_file, h.tls_key_file) {
                (None, None) => None,
                (Some(_), None) | (None, Some(_)) => {
                    return Err(
                        "http: set both tls_cert_file and tls_key_file for HTTPS, or neither"
                            .into(),
                    );
                }
                (Some(cert_file), Some(key_file)) => {
                    let key = secrets.file("http", "tls_key", &key_file)?;
                    let identity = if key.expose().is_empty() {
                        None
                    } else {
                        let path = secrets.base_dir.join(&cert_file);
                        let cert = std::fs::read(&path).map_err(|e| {
                            format!("http.tls_cert_file: cannot read {}: {e}", path.display())
                        })?;
                        Some(
                            crate::tls::Identity::from_pem(&cert, key.expose().as_bytes())
                                .map_err(|e| format!("http.{e}"))?,
                        )
                    };
                    Some(HttpTls {
                        cert_file,
                        key_file,
                        identity,
                    })
                }
            };
            if h.users_file.is_some() && tls.is_none() && !listen.ip().is_loopback() {
                secrets.warnings.push(format!(
                    "http.users_file without tls_cert_file: passwords cross the network in clear \
                     to {listen}; set tls_cert_file and tls_key_file, or serve it through a TLS \
                     reverse proxy on loopback"
                ));
            }
            let external_url = match &h.external_url {
                Some(u) => Some(
                    Url::parse(u)
                        .ok()
                        .filter(|u| matches!(u.scheme(), "http" | "https") && u.has_host())
                        .ok_or_else(|| {
                            format!(
                                "http.external_url: \"{u}\" is not an http(s) URL like https://sla.example.com/"
                            )
                        })?,
                ),
                None => None,
            };
            Some(HttpConfig {
                listen,
                external_url,
                auth_token,
                users_file: h.users_file,
                users,
                tls,
            })
        }
        None => None,
    };
    // A channel whose service calls back (Slack's buttons, PagerDuty's webhooks) needs
    // somewhere to call: without [http] a button would fail for whoever clicks it.
    if http.is_none()
        && let Some((channel, key)) = channels
            .iter()
            .find_map(|c: &ChannelConfig| c.calls_back().map(|k| (c, k)))
    {
        return Err(format!(
            "channel \"{}\": {key} needs [http] listen: its service calls back at /hooks/{} on that address",
            channel.name,
            channel.type_name()
        ));
    }
    let events = match raw.events {
        Some(e) => {
            if http.is_none() {
                return Err(
                    "[events] needs [http] listen: the webhooks are received on its address".into(),
                );
            }
            let path = e.path.unwrap_or_else(|| "/hooks/wawp".into());
            if !path.starts_with('/') || path.len() < 2 || path.contains(['?', '#', ' ']) {
                return Err(format!(
                    "events.path: \"{path}\" is not a path like /hooks/wawp"
                ));
            }
            if [
                "/",
                "/metrics",
                "/healthz",
                "/hooks/slack",
                "/hooks/pagerduty",
            ]
            .contains(&path.as_str())
                || path.starts_with("/api/")
            {
                return Err(format!(
                    "events.path: \"{path}\" is taken by the status page, /metrics, /healthz, /api or the Slack and PagerDuty hooks"
                ));
            }
            let hmac_key = match &e.hmac_key_file {
                Some(f) => Some(secrets.file("events", "hmac_key", f)?),
                None => None,
            };
            Some(EventsConfig { path, hmac_key })
        }
        None => None,
    };
    let level = raw.log.level.unwrap_or_else(|| "info".into());
    check_log_level(&level).map_err(|e| format!("log.level: {e}"))?;
    let log = LogConfig {
        level,
        format: raw.log.format.unwrap_or(LogFormat::Text),
    };

    let by_name = instances
        .iter()
        .enumerate()
        .map(|(i, inst)| (inst.name.clone(), i))
        .collect();
    Ok(Config {
        by_name,
        wawp,
        instances,
        policy,
        store,
        ha,
        delivery,
        channels,
        http,
        events,
        log,
        warnings: std::mem::take(&mut secrets.warnings),
        secrets_read: secrets.all_read,
        inline_secrets,
    })
}

/// A level ("info"), or a list of directives each ending in a level
/// ("warn,inbox_sla=debug"). A bare word that is not a level ("inf") would parse as a
/// target and silence every log line, errors included: it is refused. Shared with
/// `RUST_LOG`.
pub fn check_log_level(level: &str) -> Result<(), String> {
    const LEVELS: [&str; 6] = ["off", "error", "warn", "info", "debug", "trace"];
    let refuse = || {
        format!(
            "\"{level}\" is not a level (error, warn, info, debug, trace, off) or a list of \
             directives each ending in one, like \"warn,inbox_sla=debug\""
        )
    };
    let directives: Vec<&str> = level
        .split(',')
        .map(str::trim)
        .filter(|d| !d.is_empty())
        .collect();
    if directives.is_empty() {
        return Err(refuse());
    }
    for d in directives {
        let lvl = d.rsplit_once('=').map_or(d, |(_, l)| l);
        if !LEVELS.contains(&lvl.trim().to_ascii_lowercase().as_str()) {
            return Err(refuse());
        }
    }
    tracing_subscriber::EnvFilter::try_new(level)
        .map(|_| ())
        .map_err(|e| format!("\"{level}\": {e}"))
}

fn build_tiers(key: &str, raw: Vec<RawTier>, channels: &[String]) -> Result<Vec<Tier>, String> {
    let mut tiers: Vec<Tier> = Vec::new();
    for (i, t) in raw.into_iter().enumerate() {
        let notify = t.notify.unwrap_or_else(|| channels.to_vec());
        if notify.is_empty() {
            return Err(format!(
                "{key}[{i}].notify is empty: name at least one channel"
            ));
        }
        for n in &notify {
            if !channels.contains(n) {
                return Err(format!(
                    "{key}[{i}].notify: no channel is named \"{n}\" (channels: {})",
                    channels.join(", ")
                ));
            }
        }
        if t.after.as_secs() == 0 {
            return Err(format!("{key}[{i}].after must be at least 1s"));
        }
        if let Some(prev) = tiers.last()
            && t.after.as_secs() <= prev.after.as_secs()
        {
            return Err(format!(
                "{key}[{i}].after ({}) must be longer than the tier before it ({})",
                crate::duration::format(t.after),
                crate::duration::format(prev.after)
            ));
        }
        tiers.push(Tier {
            after: Duration::from_secs(t.after.as_secs()),
            notify,
        });
    }
    Ok(tiers)
}

fn default_store_path() -> PathBuf {
    match std::env::var_os("STATE_DIRECTORY") {
        Some(dirs) => {
            let first = dirs
                .to_string_lossy()
                .split(':')
                .next()
                .unwrap_or("")
                .to_string();
            PathBuf::from(first).join("state.db")
        }
        None => PathBuf::from("/var/lib/inbox-sla/state.db"),
    }
}

fn de_opt_duration<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
    crate::duration::deserialize(d).map(Some)
}

fn ser_display<S: serde::Serializer, T: std::fmt::Display>(v: &T, s: S) -> Result<S::Ok, S::Error> {
    s.collect_str(v)
}

fn ser_opt_url<S: serde::Serializer>(v: &Option<Url>, s: S) -> Result<S::Ok, S::Error> {
    match v {
        Some(u) => s.serialize_str(u.as_str()),
        None => s.serialize_none(),
    }
}

#[cfg(test)]
mod tests;
