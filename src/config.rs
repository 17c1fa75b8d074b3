//! Configuration: the TOML file of PRODUCT.md section 4, parsed and validated whole.
//!
//! Parsing happens once at the edge: unknown keys are errors that name the key, durations
//! are humantime strings, `*_file` secrets are read here, and cross-references (tiers to
//! channels) are checked. Everything after this module trusts a [`Config`]. This module
//! reads files but never opens sockets.

use crate::calendar::{BusinessHours, OpenRange, WEEKDAYS};
use crate::policy::{Glob, Matcher, Policy, Rule, StopOn, Tier};
use crate::secret::Secret;
use reqwest::Url;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

pub const DEFAULT_PATH: &str = "/etc/inbox-sla/config.toml";

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

/// The validated configuration.
#[derive(Debug, Clone, Serialize)]
pub struct Config {
    pub wawp: WawpConfig,
    #[serde(rename = "instance")]
    pub instances: Vec<Instance>,
    /// Everything the SLA engine consults, rules and tiers included.
    #[serde(skip)]
    pub policy: Policy,
    pub sla: SlaConfig,
    #[serde(rename = "escalation")]
    pub tiers_view: Vec<Tier>,
    #[serde(rename = "rule", skip_serializing_if = "Vec::is_empty")]
    pub rules_view: Vec<Rule>,
    pub store: StoreConfig,
    pub delivery: DeliveryConfig,
    #[serde(rename = "channel")]
    pub channels: Vec<ChannelConfig>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub http: Option<HttpConfig>,
    pub log: LogConfig,
    /// Problems worth a warning but not a refusal (a group-readable file with secrets).
    #[serde(skip)]
    pub warnings: Vec<String>,
    /// Whether any secret is written in the file itself (then its mode matters).
    #[serde(skip)]
    inline_secrets: bool,
}

#[derive(Debug, Clone, Serialize)]
pub struct WawpConfig {
    #[serde(serialize_with = "ser_display")]
    pub base_url: Url,
    #[serde(serialize_with = "ser_duration")]
    pub request_timeout: Duration,
    /// A larger response body is an error, never an out-of-memory kill.
    pub max_response_bytes: u64,
    /// 0: one request without paging.
    pub page_size: u32,
    /// Paging stops here with a warning, and the overview counts as incomplete.
    pub max_chats: usize,
}

/// One WhatsApp number.
#[derive(Debug, Clone, Serialize)]
pub struct Instance {
    /// Label in alerts and metrics; unique.
    pub name: String,
    pub instance_id: String,
    pub access_token: Secret,
}

/// The `[sla]` keys that are not part of the engine's [`Policy`].
#[derive(Debug, Clone, Serialize)]
pub struct SlaConfig {
    #[serde(serialize_with = "ser_duration")]
    pub threshold: Duration,
    #[serde(serialize_with = "ser_duration")]
    pub poll_interval: Duration,
    #[serde(serialize_with = "ser_opt_duration")]
    pub repeat_after: Option<Duration>,
    pub send_resolved: bool,
    pub include_groups: bool,
    pub ignore: Vec<Glob>,
    pub include_preview: bool,
    pub stop_on: StopOn,
    #[serde(serialize_with = "ser_duration")]
    pub blind_after: Duration,
    pub nudge_unread: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub business_hours: Option<BusinessHoursView>,
}

/// The business hours as written, for `check`.
#[derive(Debug, Clone, Serialize)]
pub struct BusinessHoursView {
    pub timezone: String,
    #[serde(flatten)]
    pub days: BTreeMap<String, String>,
    pub holidays: Vec<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct StoreConfig {
    pub path: PathBuf,
}

#[derive(Debug, Clone, Serialize)]
pub struct DeliveryConfig {
    /// After this a notification is dead.
    #[serde(serialize_with = "ser_duration")]
    pub retry_for: Duration,
    /// One send attempt, connection to answer, must finish within this.
    #[serde(serialize_with = "ser_duration")]
    pub timeout: Duration,
}

#[derive(Debug, Clone, Serialize)]
pub struct HttpConfig {
    pub listen: SocketAddr,
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

#[derive(Debug, Clone, Serialize)]
pub struct ChannelConfig {
    pub name: String,
    #[serde(flatten)]
    pub kind: ChannelKind,
}

#[derive(Debug, Clone, Serialize)]
#[serde(tag = "type", rename_all = "lowercase")]
pub enum ChannelKind {
    Slack {
        webhook_url: Secret,
    },
    Email(EmailConfig),
    Webhook {
        url: Secret,
        /// Header values are secrets: they usually carry a bearer token.
        headers: BTreeMap<String, Secret>,
    },
    Console,
}

#[derive(Debug, Clone, Serialize)]
pub struct EmailConfig {
    pub smtp_host: String,
    pub smtp_port: u16,
    pub tls: TlsMode,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub username: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub password: Option<Secret>,
    pub from: String,
    pub to: Vec<String>,
    /// Extra roots to trust (PEM), for a relay with a private CA.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ca_file: Option<PathBuf>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TlsMode {
    Starttls,
    Tls,
    None,
}

// ---------------------------------------------------------------------------------------
// The file as written. Every table denies unknown keys.

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    #[serde(default)]
    wawp: RawWawp,
    #[serde(default)]
    instance: Vec<RawInstance>,
    #[serde(default)]
    sla: RawSla,
    #[serde(default)]
    escalation: Vec<RawTier>,
    #[serde(default)]
    rule: Vec<RawRule>,
    #[serde(default)]
    store: RawStore,
    #[serde(default)]
    delivery: RawDelivery,
    #[serde(default)]
    channel: Vec<RawChannel>,
    http: Option<RawHttp>,
    #[serde(default)]
    log: RawLog,
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
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawInstance {
    name: Option<String>,
    instance_id: String,
    access_token: Option<String>,
    access_token_file: Option<PathBuf>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawSla {
    #[serde(default, deserialize_with = "de_opt_duration")]
    threshold: Option<Duration>,
    #[serde(default, deserialize_with = "de_opt_duration")]
    poll_interval: Option<Duration>,
    #[serde(default, deserialize_with = "de_opt_duration")]
    repeat_after: Option<Duration>,
    send_resolved: Option<bool>,
    include_groups: Option<bool>,
    ignore: Option<Vec<String>>,
    include_preview: Option<bool>,
    stop_on: Option<StopOn>,
    #[serde(default, deserialize_with = "de_opt_duration")]
    blind_after: Option<Duration>,
    nudge_unread: Option<u32>,
    business_hours: Option<RawBusinessHours>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawBusinessHours {
    timezone: String,
    mon: Option<String>,
    tue: Option<String>,
    wed: Option<String>,
    thu: Option<String>,
    fri: Option<String>,
    sat: Option<String>,
    sun: Option<String>,
    #[serde(default)]
    holidays: Vec<String>,
}

#[derive(Deserialize, Clone)]
#[serde(deny_unknown_fields)]
struct RawTier {
    #[serde(deserialize_with = "de_duration")]
    after: Duration,
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
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawLog {
    level: Option<String>,
    format: Option<LogFormat>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawChannel {
    name: String,
    #[serde(rename = "type")]
    kind: String,
    webhook_url: Option<String>,
    webhook_url_file: Option<PathBuf>,
    url: Option<String>,
    url_file: Option<PathBuf>,
    headers: Option<BTreeMap<String, String>>,
    smtp_host: Option<String>,
    smtp_port: Option<u16>,
    tls: Option<TlsMode>,
    username: Option<String>,
    password: Option<String>,
    password_file: Option<PathBuf>,
    from: Option<String>,
    to: Option<Vec<String>>,
    ca_file: Option<PathBuf>,
}

// ---------------------------------------------------------------------------------------

/// Where the config lives: `--config`, else `$INBOX_SLA_CONFIG`, else the default path.
/// (clap reads the environment variable into `--config`.)
pub fn resolve_path(flag: Option<PathBuf>) -> PathBuf {
    flag.unwrap_or_else(|| PathBuf::from(DEFAULT_PATH))
}

impl Config {
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        let mut config = Config::from_toml(&text, path)?;
        if config.has_inline_secrets() && readable_by_others(path) {
            config.warnings.push(format!(
                "config file {} holds inline secrets and is readable by group or others: \
                 chmod 600 it, or move the secrets to *_file keys",
                path.display()
            ));
        }
        Ok(config)
    }

    /// Parses and validates TOML text; `path` names the source in errors and anchors
    /// relative `*_file` paths.
    pub fn from_toml(text: &str, path: &Path) -> Result<Config, ConfigError> {
        let raw: RawConfig = toml::from_str(text).map_err(|e| ConfigError::Parse {
            path: path.to_owned(),
            message: describe_toml_error(&e, text),
        })?;
        build(raw, path).map_err(|message| ConfigError::Invalid {
            path: path.to_owned(),
            message,
        })
    }

    fn has_inline_secrets(&self) -> bool {
        self.inline_secrets
    }

    /// Every secret in the configuration, for redacting text that came from elsewhere.
    pub fn secrets(&self) -> Vec<Secret> {
        let mut out: Vec<Secret> = self
            .instances
            .iter()
            .map(|i| i.access_token.clone())
            .collect();
        for c in &self.channels {
            match &c.kind {
                ChannelKind::Slack { webhook_url } => out.push(webhook_url.clone()),
                ChannelKind::Webhook { url, headers } => {
                    out.push(url.clone());
                    out.extend(headers.values().cloned());
                }
                ChannelKind::Email(e) => out.extend(e.password.clone()),
                ChannelKind::Console => {}
            }
        }
        out
    }

    /// The effective configuration as TOML, every secret shown as `***`.
    pub fn render(&self) -> String {
        toml::to_string_pretty(self).unwrap_or_else(|e| format!("# cannot render: {e}\n"))
    }

    pub fn channel(&self, name: &str) -> Option<&ChannelConfig> {
        self.channels.iter().find(|c| c.name == name)
    }
}

/// Keys whose values are secrets: an error about them never quotes the value.
const SECRET_KEYS: [&str; 6] = [
    "token",
    "password",
    "webhook",
    "url",
    "headers",
    "authorization",
];

/// "line 24, column 1: unknown field `treshold`, expected one of …", without the source
/// snippet toml prints (it would show a secret written on the offending line). When the
/// offending key looks like a secret, the message is replaced, since serde quotes values
/// ("invalid type: integer `123456`").
fn describe_toml_error(e: &toml::de::Error, text: &str) -> String {
    let Some(span) = e.span() else {
        return e.message().to_string();
    };
    let start = span.start.min(text.len());
    let line_no = text[..start].matches('\n').count() + 1;
    let line_start = text[..start].rfind('\n').map_or(0, |i| i + 1);
    let column = text[line_start..start].chars().count() + 1;
    let line = text[line_start..].lines().next().unwrap_or("");
    let key = line
        .split('=')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    let secret_line = line.contains('=') && SECRET_KEYS.iter().any(|k| key.contains(k));
    // The table the line belongs to: the last header above it.
    let table = text[..line_start]
        .lines()
        .rev()
        .map(str::trim)
        .find(|l| l.starts_with('['))
        .map(|h| format!(" in {}", h.split('#').next().unwrap_or(h).trim()))
        .unwrap_or_default();
    let line_no = format!("{line_no}{table}");
    let message = e.message().trim_end();
    if secret_line && !message.starts_with("unknown field") {
        format!(
            "line {line_no}, column {column}: the value of `{}` is not valid here (value not shown: it may be a secret)",
            line.split('=').next().unwrap_or("").trim()
        )
    } else if line.contains('=') && !message.starts_with("unknown field") {
        let key = line.split('=').next().unwrap_or("").trim();
        format!("line {line_no}, column {column}, key `{key}`: {message}")
    } else {
        format!("line {line_no}, column {column}: {message}")
    }
}

fn readable_by_others(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path).is_ok_and(|m| m.permissions().mode() & 0o044 != 0)
}

fn build(raw: RawConfig, path: &Path) -> Result<Config, String> {
    let base_dir = path.parent().unwrap_or(Path::new("."));
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
    };
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
        let access_token = secret_pair(
            &key,
            "access_token",
            inst.access_token,
            inst.access_token_file,
            base_dir,
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
    for (i, ch) in raw.channel.into_iter().enumerate() {
        let key = format!("channel[{i}] (\"{}\")", ch.name);
        if channels.iter().any(|c: &ChannelConfig| c.name == ch.name) {
            return Err(format!(
                "{key}: the name \"{}\" is used twice; names must be unique",
                ch.name
            ));
        }
        let (kind, inline) = build_channel(&key, ch, base_dir)?;
        inline_secrets |= inline;
        channels.push(kind);
    }
    if channels.is_empty() {
        return Err(
            "no [[channel]] configured: escalations would reach nobody; add one \
             (type = \"console\" prints to stdout)"
                .into(),
        );
    }
    let channel_names: Vec<String> = channels.iter().map(|c| c.name.clone()).collect();

    // [sla]
    let sla = raw.sla;
    let threshold = sla.threshold.unwrap_or(Duration::from_secs(2 * 3600));
    if threshold.is_zero() {
        return Err("sla.threshold must be more than 0s".into());
    }
    let poll_interval = sla.poll_interval.unwrap_or(Duration::from_secs(60));
    if poll_interval < Duration::from_secs(1) {
        return Err("sla.poll_interval must be at least 1s".into());
    }
    let repeat_after = sla.repeat_after.filter(|d| !d.is_zero());
    let ignore: Vec<Glob> = sla
        .ignore
        .unwrap_or_else(|| {
            ["*@broadcast", "*@newsletter", "*@meta.ai", "0@c.us"]
                .map(String::from)
                .to_vec()
        })
        .into_iter()
        .map(Glob::new)
        .collect();
    let (business_hours, business_view) = match sla.business_hours {
        Some(bh) => {
            let (b, v) = build_business_hours(bh)?;
            (Some(b), Some(v))
        }
        None => (None, None),
    };

    // [[escalation]]
    let tiers = if raw.escalation.is_empty() {
        vec![Tier {
            after: threshold,
            notify: channel_names.clone(),
        }]
    } else {
        build_tiers("escalation", raw.escalation, &channel_names)?
    };

    // [[rule]]
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
        if r.business_hours == Some(true) && business_hours.is_none() {
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

    let stop_on = sla.stop_on.unwrap_or(StopOn::Read);
    let policy = Policy {
        tiers: tiers.clone(),
        rules: rules.clone(),
        stop_on,
        include_groups: sla.include_groups.unwrap_or(true),
        ignore: ignore.clone(),
        include_preview: sla.include_preview.unwrap_or(true),
        send_resolved: sla.send_resolved.unwrap_or(true),
        repeat_after,
        nudge_unread: sla.nudge_unread.unwrap_or(0),
        business_hours,
    };
    let sla_config = SlaConfig {
        threshold,
        poll_interval,
        repeat_after,
        send_resolved: policy.send_resolved,
        include_groups: policy.include_groups,
        ignore,
        include_preview: policy.include_preview,
        stop_on,
        blind_after: sla.blind_after.unwrap_or(Duration::from_secs(600)),
        nudge_unread: policy.nudge_unread,
        business_hours: business_view,
    };

    // [store], [delivery], [http], [log]
    let store = StoreConfig {
        path: raw.store.path.unwrap_or_else(default_store_path),
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
    let http = match raw.http {
        Some(h) => Some(HttpConfig {
            listen: h.listen.parse().map_err(|_| {
                format!(
                    "http.listen: \"{}\" is not an address like 127.0.0.1:9187",
                    h.listen
                )
            })?,
        }),
        None => None,
    };
    let level = raw.log.level.unwrap_or_else(|| "info".into());
    if tracing_subscriber::EnvFilter::try_new(&level).is_err() {
        return Err(format!(
            "log.level: \"{level}\" is not a level (error, warn, info, debug, trace)"
        ));
    }
    let log = LogConfig {
        level,
        format: raw.log.format.unwrap_or(LogFormat::Text),
    };

    Ok(Config {
        wawp,
        instances,
        tiers_view: tiers,
        rules_view: rules,
        policy,
        sla: sla_config,
        store,
        delivery,
        channels,
        http,
        log,
        warnings: Vec::new(),
        inline_secrets,
    })
}

fn build_channel(
    key: &str,
    ch: RawChannel,
    base_dir: &Path,
) -> Result<(ChannelConfig, bool), String> {
    let mut inline = false;
    let kind = ch.kind.clone();
    // Keys that belong to another channel type are errors, so a misplaced key is noticed.
    let present: Vec<(&str, bool)> = vec![
        ("webhook_url", ch.webhook_url.is_some()),
        ("webhook_url_file", ch.webhook_url_file.is_some()),
        ("url", ch.url.is_some()),
        ("url_file", ch.url_file.is_some()),
        ("headers", ch.headers.is_some()),
        ("smtp_host", ch.smtp_host.is_some()),
        ("smtp_port", ch.smtp_port.is_some()),
        ("tls", ch.tls.is_some()),
        ("username", ch.username.is_some()),
        ("password", ch.password.is_some()),
        ("password_file", ch.password_file.is_some()),
        ("from", ch.from.is_some()),
        ("to", ch.to.is_some()),
        ("ca_file", ch.ca_file.is_some()),
    ];
    let allowed: &[&str] = match kind.as_str() {
        "slack" => &["webhook_url", "webhook_url_file"],
        "webhook" => &["url", "url_file", "headers"],
        "email" => &[
            "smtp_host",
            "smtp_port",
            "tls",
            "username",
            "password",
            "password_file",
            "from",
            "to",
            "ca_file",
        ],
        "console" => &[],
        other => {
            return Err(format!(
                "{key}: type \"{other}\" is not one of slack, email, webhook, console"
            ));
        }
    };
    if let Some((k, _)) = present.iter().find(|(k, set)| *set && !allowed.contains(k)) {
        return Err(format!(
            "{key}: key \"{k}\" does not apply to a {kind} channel"
        ));
    }
    let kind = match kind.as_str() {
        "slack" => {
            inline |= ch.webhook_url.is_some();
            let url = secret_pair(
                key,
                "webhook_url",
                ch.webhook_url,
                ch.webhook_url_file,
                base_dir,
            )?
            .ok_or_else(|| format!("{key}: set webhook_url or webhook_url_file"))?;
            checked_url(&format!("{key}.webhook_url"), url.expose())?;
            ChannelKind::Slack { webhook_url: url }
        }
        "webhook" => {
            inline |= ch.url.is_some() || ch.headers.is_some();
            let url = secret_pair(key, "url", ch.url, ch.url_file, base_dir)?
                .ok_or_else(|| format!("{key}: set url or url_file"))?;
            checked_url(&format!("{key}.url"), url.expose())?;
            let headers = ch
                .headers
                .unwrap_or_default()
                .into_iter()
                .map(|(k, v)| {
                    if reqwest::header::HeaderName::from_bytes(k.as_bytes()).is_err()
                        || reqwest::header::HeaderValue::from_str(&v).is_err()
                    {
                        Err(format!("{key}.headers: \"{k}\" is not a valid HTTP header"))
                    } else {
                        Ok((k, Secret::new(v)))
                    }
                })
                .collect::<Result<_, _>>()?;
            ChannelKind::Webhook { url, headers }
        }
        "email" => {
            inline |= ch.password.is_some();
            let tls = ch.tls.unwrap_or(TlsMode::Starttls);
            let smtp_host = ch
                .smtp_host
                .filter(|h| !h.trim().is_empty())
                .ok_or_else(|| format!("{key}: smtp_host is required"))?;
            let from = ch.from.ok_or_else(|| format!("{key}: from is required"))?;
            from.parse::<lettre::message::Mailbox>()
                .map_err(|e| format!("{key}.from: \"{from}\" is not an address: {e}"))?;
            let to = ch.to.unwrap_or_default();
            if to.is_empty() {
                return Err(format!("{key}: to needs at least one address"));
            }
            for addr in &to {
                addr.parse::<lettre::message::Mailbox>()
                    .map_err(|e| format!("{key}.to: \"{addr}\" is not an address: {e}"))?;
            }
            let password = secret_pair(key, "password", ch.password, ch.password_file, base_dir)?;
            if password.is_some() && ch.username.is_none() {
                return Err(format!("{key}: a password needs a username"));
            }
            if ch.username.is_some() && password.is_none() {
                return Err(format!(
                    "{key}: username is set; set password or password_file too"
                ));
            }
            let ca_file = ch.ca_file.map(|p| base_dir.join(p));
            ChannelKind::Email(EmailConfig {
                smtp_host,
                smtp_port: ch.smtp_port.unwrap_or(match tls {
                    TlsMode::Starttls => 587,
                    TlsMode::Tls => 465,
                    TlsMode::None => 25,
                }),
                tls,
                username: ch.username,
                password,
                from,
                to,
                ca_file,
            })
        }
        _ => ChannelKind::Console,
    };
    Ok((
        ChannelConfig {
            name: ch.name,
            kind,
        },
        inline,
    ))
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
        if let Some(prev) = tiers.last()
            && t.after <= prev.after
        {
            return Err(format!(
                "{key}[{i}].after ({}) must be longer than the tier before it ({})",
                humantime::format_duration(t.after),
                humantime::format_duration(prev.after)
            ));
        }
        if t.after.is_zero() {
            return Err(format!("{key}[{i}].after must be more than 0s"));
        }
        tiers.push(Tier {
            after: t.after,
            notify,
        });
    }
    Ok(tiers)
}

fn build_business_hours(
    raw: RawBusinessHours,
) -> Result<(BusinessHours, BusinessHoursView), String> {
    let timezone: chrono_tz::Tz = raw.timezone.parse().map_err(|_| {
        format!(
            "sla.business_hours.timezone: \"{}\" is not an IANA timezone like Africa/Cairo",
            raw.timezone
        )
    })?;
    let values = [
        raw.mon, raw.tue, raw.wed, raw.thu, raw.fri, raw.sat, raw.sun,
    ];
    let mut days: [Vec<OpenRange>; 7] = Default::default();
    let mut view = BTreeMap::new();
    for (i, v) in values.into_iter().enumerate() {
        if let Some(v) = v {
            days[i] = BusinessHours::parse_day(&v)
                .map_err(|e| format!("sla.business_hours.{}: {e}", WEEKDAYS[i]))?;
            view.insert(WEEKDAYS[i].to_string(), v);
        }
    }
    if days.iter().all(Vec::is_empty) {
        return Err("sla.business_hours: no day has opening hours; set mon … sun".into());
    }
    let mut holidays = BTreeSet::new();
    for h in &raw.holidays {
        holidays.insert(
            chrono::NaiveDate::parse_from_str(h, "%Y-%m-%d").map_err(|_| {
                format!("sla.business_hours.holidays: \"{h}\" is not a date like 2026-12-25")
            })?,
        );
    }
    Ok((
        BusinessHours {
            timezone,
            days,
            holidays,
        },
        BusinessHoursView {
            timezone: raw.timezone,
            days: view,
            holidays: raw.holidays,
        },
    ))
}

/// Reads exactly one of `key` / `key_file`; the file's trailing newline is trimmed.
fn secret_pair(
    table: &str,
    key: &str,
    inline: Option<String>,
    file: Option<PathBuf>,
    base_dir: &Path,
) -> Result<Option<Secret>, String> {
    match (inline, file) {
        (Some(_), Some(_)) => Err(format!("{table}: set either {key} or {key}_file, not both")),
        (Some(v), None) if v.is_empty() => Err(format!("{table}.{key} is empty")),
        (Some(v), None) => Ok(Some(Secret::new(v))),
        (None, Some(f)) => {
            let path = base_dir.join(&f);
            let text = std::fs::read_to_string(&path)
                .map_err(|e| format!("{table}.{key}_file: cannot read {}: {e}", path.display()))?;
            let value = text.trim_end_matches(['\n', '\r']).to_string();
            if value.is_empty() {
                return Err(format!("{table}.{key}_file: {} is empty", path.display()));
            }
            Ok(Some(Secret::new(value)))
        }
        (None, None) => Ok(None),
    }
}

/// https, or http to a loopback host only. The URL itself never reaches the message.
fn checked_url(key: &str, text: &str) -> Result<Url, String> {
    let url = Url::parse(text).map_err(|e| format!("{key} is not a valid URL ({e})"))?;
    match url.scheme() {
        "https" => Ok(url),
        "http" if is_loopback(&url) => Ok(url),
        "http" => Err(format!(
            "{key} must use https (plain http is allowed only to a loopback host)"
        )),
        other => Err(format!("{key}: scheme \"{other}\" is not http or https")),
    }
}

fn is_loopback(url: &Url) -> bool {
    match url.host() {
        Some(url::Host::Domain(d)) => d == "localhost",
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        None => false,
    }
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

fn de_duration<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
    let text = String::deserialize(d)?;
    humantime::parse_duration(&text).map_err(|e| {
        serde::de::Error::custom(format!(
            "\"{text}\" is not a duration like \"90s\", \"2h\" or \"1h 30m\" ({e})"
        ))
    })
}

fn de_opt_duration<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
    de_duration(d).map(Some)
}

pub(crate) fn ser_duration<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&humantime::format_duration(*d).to_string())
}

pub(crate) fn ser_opt_duration<S: serde::Serializer>(
    d: &Option<Duration>,
    s: S,
) -> Result<S::Ok, S::Error> {
    ser_duration(&d.unwrap_or_default(), s)
}

fn ser_display<S: serde::Serializer, T: std::fmt::Display>(v: &T, s: S) -> Result<S::Ok, S::Error> {
    s.collect_str(v)
}

#[cfg(test)]
mod tests {
    use super::*;

    const MINIMAL: &str = r#"
[[instance]]
name = "support"
instance_id = "123"
access_token = "tok-SECRET-123"

[[channel]]
name = "console"
type = "console"
"#;

    fn parse(text: &str) -> Result<Config, String> {
        Config::from_toml(text, Path::new("/etc/inbox-sla/config.toml")).map_err(|e| e.to_string())
    }

    fn with(extra: &str) -> Result<Config, String> {
        parse(&format!("{MINIMAL}\n{extra}"))
    }

    #[test]
    fn defaults_fill_in() {
        let c = parse(MINIMAL).unwrap();
        assert_eq!(c.wawp.base_url.as_str(), "https://api.wawp.net/");
        assert_eq!(c.sla.threshold, Duration::from_secs(7200));
        assert_eq!(c.policy.tiers.len(), 1);
        assert_eq!(c.policy.tiers[0].notify, vec!["console"]);
        assert_eq!(c.policy.stop_on, StopOn::Read);
        assert_eq!(c.sla.blind_after, Duration::from_secs(600));
        assert_eq!(c.wawp.page_size, 100);
    }

    #[test]
    fn an_unknown_key_is_an_error_that_names_it() {
        let err = parse(&MINIMAL.replace("[[channel]]", "[sla]\ntreshold = \"1h\"\n\n[[channel]]"))
            .unwrap_err();
        assert!(err.contains("treshold"), "{err}");
        let err = with("[[channel]]\nname = \"x\"\ntype = \"slack\"\nwebhook_url = \"https://h/1\"\nchanel = 1").unwrap_err();
        assert!(err.contains("chanel"), "{err}");
    }

    #[test]
    fn durations_are_humantime_and_bad_ones_are_named() {
        let c = with("[sla]\nthreshold = \"1h 30m\"\npoll_interval = \"90s\"").unwrap();
        assert_eq!(c.sla.threshold, Duration::from_secs(5400));
        let err = with("[sla]\nthreshold = \"two hours\"").unwrap_err();
        assert!(
            err.contains("two hours") && err.contains("threshold"),
            "{err}"
        );
        let err = with("[sla]\npoll_interval = \"500ms\"").unwrap_err();
        assert!(err.contains("poll_interval"), "{err}");
    }

    #[test]
    fn secret_files_are_read_and_trimmed_and_exactly_one_is_allowed() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("token"), "file-token-xyz\n").unwrap();
        let text = MINIMAL.replace(
            "access_token = \"tok-SECRET-123\"",
            "access_token_file = \"token\"",
        );
        let c = Config::from_toml(&text, &dir.path().join("config.toml")).unwrap();
        assert_eq!(c.instances[0].access_token.expose(), "file-token-xyz");

        let both = MINIMAL.replace(
            "access_token = \"tok-SECRET-123\"",
            "access_token = \"a\"\naccess_token_file = \"token\"",
        );
        let err = Config::from_toml(&both, &dir.path().join("config.toml"))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("either access_token or access_token_file"),
            "{err}"
        );

        let missing = MINIMAL.replace(
            "access_token = \"tok-SECRET-123\"",
            "access_token_file = \"nope\"",
        );
        let err = Config::from_toml(&missing, &dir.path().join("config.toml"))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("access_token_file") && err.contains("nope"),
            "{err}"
        );
    }

    #[test]
    fn cross_references_are_checked() {
        let err = with("[[escalation]]\nafter = \"2h\"\nnotify = [\"pager\"]").unwrap_err();
        assert!(err.contains("no channel is named \"pager\""), "{err}");
        let err =
            with("[[escalation]]\nafter = \"6h\"\n[[escalation]]\nafter = \"2h\"").unwrap_err();
        assert!(err.contains("escalation[1].after"), "{err}");
        let err = with("[[channel]]\nname = \"console\"\ntype = \"console\"").unwrap_err();
        assert!(err.contains("used twice"), "{err}");
        let err = with("[[channel]]\nname = \"e\"\ntype = \"email\"\nsmtp_host = \"h\"\nfrom = \"a@b.c\"\nto = [\"x@y.z\"]\nwebhook_url = \"https://x\"").unwrap_err();
        assert!(
            err.contains("\"webhook_url\" does not apply to a email channel"),
            "{err}"
        );
    }

    #[test]
    fn urls_must_be_https_unless_loopback_and_never_echo_the_url() {
        assert!(with("[wawp]\nbase_url = \"http://127.0.0.1:8080\"").is_ok());
        assert!(with("[wawp]\nbase_url = \"http://localhost:8080\"").is_ok());
        let err = with("[wawp]\nbase_url = \"http://api.wawp.net\"").unwrap_err();
        assert!(err.contains("wawp.base_url must use https"), "{err}");
        let err = with("[[channel]]\nname = \"s\"\ntype = \"slack\"\nwebhook_url = \"http://hooks.slack.com/services/T/B/SECRETPART\"")
            .unwrap_err();
        assert!(err.contains("must use https"), "{err}");
        assert!(!err.contains("SECRETPART"), "{err}");
    }

    #[test]
    fn the_rendered_config_shows_every_secret_as_stars() {
        let c = with(
            "[[channel]]\nname = \"s\"\ntype = \"slack\"\nwebhook_url = \"https://hooks.slack.com/services/T/B/HOOKSECRET\"\n\
             [[channel]]\nname = \"w\"\ntype = \"webhook\"\nurl = \"https://example.com/x\"\nheaders = { Authorization = \"Bearer HDRSECRET\" }\n\
             [[channel]]\nname = \"m\"\ntype = \"email\"\nsmtp_host = \"smtp.example.com\"\nusername = \"bot\"\npassword = \"PWSECRET\"\nfrom = \"a@example.com\"\nto = [\"b@example.com\"]",
        )
        .unwrap();
        let text = c.render();
        for secret in ["tok-SECRET-123", "HOOKSECRET", "HDRSECRET", "PWSECRET"] {
            assert!(!text.contains(secret), "{secret} leaked:\n{text}");
        }
        assert!(text.contains("access_token = \"***\""), "{text}");
        assert!(text.contains("threshold = \"2h\""), "{text}");
        assert_eq!(
            toml::from_str::<toml::Table>(&text).map(|_| ()),
            Ok(()),
            "renders valid TOML"
        );
    }

    #[test]
    fn business_hours_and_rules_are_validated_with_names() {
        let err = with("[sla.business_hours]\ntimezone = \"Mars/Base\"\nmon = \"09:00-18:00\"")
            .unwrap_err();
        assert!(err.contains("Mars/Base"), "{err}");
        let err = with("[sla.business_hours]\ntimezone = \"Africa/Cairo\"\nmon = \"18:00-09:00\"")
            .unwrap_err();
        assert!(err.contains("sla.business_hours.mon"), "{err}");
        let err = with("[sla.business_hours]\ntimezone = \"Africa/Cairo\"\nmon = \"09:00-18:00\"\nholidays = [\"2026-13-01\"]")
            .unwrap_err();
        assert!(err.contains("2026-13-01"), "{err}");
        let err = with("[[rule]]\nmatch = [\"name:/(/\"]\nignore = true").unwrap_err();
        assert!(err.contains("rule[0].match"), "{err}");
        let c = with(
            "[[rule]]\nmatch = [\"2010*@c.us\"]\nescalation = [{ after = \"15m\", notify = [\"console\"] }]",
        )
        .unwrap();
        assert_eq!(
            c.policy.rules[0].escalation.as_ref().unwrap()[0].after,
            Duration::from_secs(900)
        );
    }

    #[test]
    fn a_readable_file_with_inline_secrets_gets_a_warning() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("config.toml");
        std::fs::write(&path, MINIMAL).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        let c = Config::load(&path).unwrap();
        assert!(
            c.warnings
                .iter()
                .any(|w| w.contains("readable by group or others")),
            "{:?}",
            c.warnings
        );
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        assert!(Config::load(&path).unwrap().warnings.is_empty());
    }
}
