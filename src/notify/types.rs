//! What a channel type is, and how every type is treated alike.
//!
//! Each type lives in one file of `notify`: its `[[channel]]` keys as written (`Keys`, with
//! `#[serde(deny_unknown_fields)]`), its validated settings (a [`ChannelType`]: defaults,
//! checks, secrets, digest or per chat) and its [`Sender`]. [`super::TYPES`] names them.
//!
//! A table is read in two steps. [`decode`] takes `name` and `type`, refuses a key the type
//! does not take (naming the channel, the key and, when it belongs to another type, that),
//! and hands the rest to the type's `Keys`: errors say which key, so the configuration can
//! point at its line. [`Decoded::build`] then validates the keys and reads the secrets, as
//! far as the command needs them ([`Setup`]).

use super::{SendError, TYPES};
use crate::alert::{AlertDoc, Shape};
use crate::secret::{Redactor, Secret};
use reqwest::Url;
use serde::de::{DeserializeOwned, DeserializeSeed, IntoDeserializer, MapAccess, Visitor};
use serde::ser::SerializeMap;
use serde::{Deserialize, Serialize};
use std::any::Any;
use std::fmt::{self, Debug};
use std::future::Future;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

/// A channel type's settings, checked: implemented once per file in `notify`.
pub trait ChannelType: Serialize + Debug + Send + Sync + Sized + 'static {
    /// Its `type` in the file.
    const NAME: &'static str;
    /// [`Shape::Digest`]: one document per status and tier listing every chat;
    /// [`Shape::PerChat`]: one per chat, for tools that group alerts themselves.
    const SHAPE: Shape;
    /// The table's keys besides `name` and `type`, as written: a struct with
    /// `#[serde(deny_unknown_fields)]`, each secret an optional `KEY` and `KEY_file`.
    type Keys: DeserializeOwned;
    type Sender: Sender;

    /// Checks the keys, fills in defaults and reads the secrets. Messages name the key
    /// ([`Setup::key`]) and never quote a secret.
    fn new(keys: Self::Keys, setup: &mut Setup) -> Result<Self, String>;

    /// Every secret the settings hold: scrubbed from whatever is logged or printed. The
    /// settings serialize them as `***` (their type is [`Secret`]).
    fn secrets(&self) -> Vec<&Secret>;

    /// The sender, ready to send.
    fn sender(&self, context: &Context) -> Result<Self::Sender, String>;

    /// The key that, when set, makes this channel's service call back (Slack's button
    /// clicks, PagerDuty's webhooks, answered at `/hooks/<type>`): such a channel needs
    /// `[http] listen`. `None` for a channel that only sends.
    fn calls_back(&self) -> Option<&'static str> {
        None
    }
}

/// Sends documents to one configured receiver.
pub trait Sender: Send + Sync + 'static {
    /// Sends one document; on success returns what the receiver said.
    fn send(&self, doc: &AlertDoc) -> impl Future<Output = Result<String, SendError>> + Send;

    /// Sends a `test` document (what `test-notify` does): the document, unless the
    /// receiver needs more to leave nobody alerted.
    fn test(&self, doc: &AlertDoc) -> impl Future<Output = Result<String, SendError>> + Send {
        self.send(doc)
    }
}

/// What every sender is built with besides its own settings.
pub struct Context {
    /// Shared by the HTTP channels; its timeout is `delivery.timeout`.
    pub http: reqwest::Client,
    /// `delivery.timeout`: one send attempt, connection to answer.
    pub timeout: Duration,
    /// Scrubs every configured secret out of receivers' answers and errors.
    pub redactor: Redactor,
    /// `http.external_url`: where people see an alert's context.
    pub external_url: Option<Url>,
    /// How long an alert must outlast the daemon that last sent it (an HA takeover).
    pub takeover: Duration,
    /// What a channel reads the time from.
    pub clock: crate::clock::Clock,
}

/// Reads `KEY` / `KEY_file` secrets as far as the command needs them: the configuration.
pub trait SecretSource {
    /// Exactly one of `key` / `key_file`, or neither; `table` names the table in messages.
    fn pair(
        &mut self,
        table: &str,
        key: &str,
        inline: Option<String>,
        file: Option<PathBuf>,
    ) -> Result<Option<Secret>, String>;

    /// The config file's directory: relative paths in it are relative to that.
    fn base_dir(&self) -> &Path;
}

/// What a type's [`ChannelType::new`] checks its keys with.
pub struct Setup<'a> {
    table: &'a str,
    source: &'a mut dyn SecretSource,
    inline: bool,
}

impl<'a> Setup<'a> {
    /// `table`: how messages name the channel, like `channel[2] ("pager")`.
    pub fn new(table: &'a str, source: &'a mut dyn SecretSource) -> Self {
        Setup {
            table,
            source,
            inline: false,
        }
    }

    /// How messages name the channel's table.
    pub fn table(&self) -> &str {
        self.table
    }

    /// How messages name one of its keys: `channel[2] ("pager").url`.
    pub fn key(&self, key: &str) -> String {
        format!("{}.{key}", self.table)
    }

    /// The secret `key` / `key_file`, if either is set.
    pub fn secret(
        &mut self,
        key: &str,
        inline: Option<String>,
        file: Option<PathBuf>,
    ) -> Result<Option<Secret>, String> {
        self.inline |= inline.is_some();
        self.source.pair(self.table, key, inline, file)
    }

    /// The secret `key` / `key_file`, which must be set; `hint` follows the message
    /// saying so (where to find the value).
    pub fn required_secret(
        &mut self,
        key: &str,
        inline: Option<String>,
        file: Option<PathBuf>,
        hint: &str,
    ) -> Result<Secret, String> {
        self.secret(key, inline, file)?
            .ok_or_else(|| format!("{}: set {key} or {key}_file{hint}", self.table))
    }

    /// A required secret URL: https unless loopback, checked without quoting it.
    pub fn secret_url(
        &mut self,
        key: &str,
        inline: Option<String>,
        file: Option<PathBuf>,
        hint: &str,
    ) -> Result<Secret, String> {
        let url = self.required_secret(key, inline, file, hint)?;
        check_secret_url(&self.key(key), &url)?;
        Ok(url)
    }

    /// Notes a secret written in the file itself (not through a `KEY_file`): then the
    /// file's mode matters.
    pub fn inline_secrets(&mut self) {
        self.inline = true;
    }

    /// Whether the channel's table holds a secret itself.
    pub fn holds_inline_secrets(&self) -> bool {
        self.inline
    }

    /// A path from the file: relative to the config file's directory.
    pub fn path(&self, path: PathBuf) -> PathBuf {
        self.source.base_dir().join(path)
    }
}

/// Checks a secret URL (https unless loopback) without ever quoting it; a secret that was
/// not read (the command needs none) is not checked.
pub fn check_secret_url(key: &str, url: &Secret) -> Result<(), String> {
    if url.expose().is_empty() {
        return Ok(());
    }
    checked_url(key, url.expose()).map(|_| ())
}

/// https, or http to a loopback host only. The URL itself never reaches the message.
pub fn checked_url(key: &str, text: &str) -> Result<Url, String> {
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

// ---------------------------------------------------------------------------------------
// The registry's entries, and reading a table.

/// One channel type, as [`super::TYPES`] lists it.
pub struct Type {
    name: &'static str,
    keys: fn() -> &'static [&'static str],
    decode: fn(Entries) -> Result<Build, DecodeError>,
}

type Build = Box<dyn FnOnce(&mut Setup) -> Result<Arc<dyn AnySettings>, String>>;

impl Type {
    pub const fn of<T: ChannelType>() -> Type {
        Type {
            name: T::NAME,
            keys: struct_fields::<T::Keys>,
            decode: decode_keys::<T>,
        }
    }

    /// Its `type` in the file.
    pub fn name(&self) -> &'static str {
        self.name
    }

    /// The keys its table takes besides `name` and `type`.
    pub fn keys(&self) -> &'static [&'static str] {
        (self.keys)()
    }
}

fn decode_keys<T: ChannelType>(entries: Entries) -> Result<Build, DecodeError> {
    let keys = T::Keys::deserialize(serde::de::value::MapAccessDeserializer::new(entries))?;
    Ok(Box::new(move |setup: &mut Setup| {
        T::new(keys, setup).map(|s| Arc::new(s) as Arc<dyn AnySettings>)
    }))
}

/// A `[[channel]]` table whose keys are known to its type; [`Decoded::build`] checks them.
pub struct Decoded {
    pub name: String,
    build: Build,
}

impl Decoded {
    /// Checks the keys and reads the secrets.
    pub fn build(self, setup: &mut Setup) -> Result<ChannelConfig, String> {
        let settings = (self.build)(setup)?;
        Ok(ChannelConfig {
            name: self.name,
            settings,
        })
    }
}

/// Where a [`DecodeError`] is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Part {
    /// The table as a whole.
    Table,
    /// A key's line: the message is about the key (one the type does not take, an unknown
    /// `type`) and quotes no value.
    Key,
    /// A key's value.
    Value,
}

/// Why a `[[channel]]` table was refused, and where.
#[derive(Debug)]
pub struct DecodeError {
    /// The key at fault, if one is.
    pub key: Option<String>,
    pub part: Part,
    /// Never quotes a value, except in `Part::Value` errors (serde's "invalid type: …"):
    /// those are shown only when the key is no secret.
    pub message: String,
}

impl fmt::Display for DecodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for DecodeError {}

impl serde::de::Error for DecodeError {
    fn custom<T: fmt::Display>(msg: T) -> Self {
        DecodeError {
            key: None,
            part: Part::Table,
            message: msg.to_string(),
        }
    }
}

/// Reads the `index`th `[[channel]]` table, given as its keys and values: `name` and
/// `type`, then the type's own keys. Unknown keys name the channel and list what it takes.
pub fn decode(index: usize, mut table: Vec<(String, toml::Value)>) -> Result<Decoded, DecodeError> {
    let mut take = |key: &str, table_name: &str| {
        let at = table.iter().position(|(k, _)| k == key);
        let value = at.map(|at| table.remove(at).1).ok_or_else(|| DecodeError {
            key: None,
            part: Part::Table,
            message: format!("{table_name}: missing field `{key}`"),
        })?;
        String::deserialize(value).map_err(|e| DecodeError {
            key: Some(key.to_string()),
            part: Part::Value,
            message: e.message().to_string(),
        })
    };
    let name = take("name", &format!("channel[{index}]"))?;
    let table_name = format!("channel[{index}] (\"{name}\")");
    let type_name = take("type", &table_name)?;
    let Some(ty) = TYPES.iter().find(|t| t.name == type_name) else {
        let known: Vec<&str> = TYPES.iter().map(|t| t.name).collect();
        return Err(DecodeError {
            key: Some("type".into()),
            part: Part::Key,
            message: format!(
                "{table_name}: type \"{type_name}\" is not one of {}",
                known.join(", ")
            ),
        });
    };
    let keys = ty.keys();
    if let Some((key, _)) = table.iter().find(|(k, _)| !keys.contains(&k.as_str())) {
        let expected = ["name", "type"]
            .iter()
            .chain(keys)
            .map(|k| format!("`{k}`"))
            .collect::<Vec<_>>()
            .join(", ");
        let owners: Vec<&str> = TYPES
            .iter()
            .filter(|t| t.keys().contains(&key.as_str()))
            .map(|t| t.name)
            .collect();
        let message = if owners.is_empty() {
            format!(
                "{table_name}: unknown field `{key}` for a {type_name} channel, expected one of {expected}"
            )
        } else {
            format!(
                "{table_name}: key \"{key}\" does not apply to a {type_name} channel (it is a key of {}); expected one of {expected}",
                owners.join(", ")
            )
        };
        return Err(DecodeError {
            key: Some(key.clone()),
            part: Part::Key,
            message,
        });
    }
    let build = (ty.decode)(Entries {
        entries: table.into_iter(),
        value: None,
    })
    .map_err(|e| match e.part {
        Part::Table => DecodeError {
            message: format!("{table_name}: {}", e.message),
            ..e
        },
        _ => e,
    })?;
    Ok(Decoded { name, build })
}

/// A table's entries as serde reads a map, telling which key an error is about.
struct Entries {
    entries: std::vec::IntoIter<(String, toml::Value)>,
    value: Option<(String, toml::Value)>,
}

impl<'de> MapAccess<'de> for Entries {
    type Error = DecodeError;

    fn next_key_seed<K: DeserializeSeed<'de>>(
        &mut self,
        seed: K,
    ) -> Result<Option<K::Value>, DecodeError> {
        let Some((key, value)) = self.entries.next() else {
            return Ok(None);
        };
        let read =
            seed.deserialize(key.as_str().into_deserializer())
                .map_err(|e: DecodeError| DecodeError {
                    key: Some(key.clone()),
                    part: Part::Key,
                    ..e
                })?;
        self.value = Some((key, value));
        Ok(Some(read))
    }

    fn next_value_seed<V: DeserializeSeed<'de>>(
        &mut self,
        seed: V,
    ) -> Result<V::Value, DecodeError> {
        let (key, value) = self
            .value
            .take()
            .ok_or_else(|| serde::de::Error::custom("a value without a key"))?;
        seed.deserialize(value).map_err(|e| DecodeError {
            key: Some(key),
            part: Part::Value,
            message: e.message().to_string(),
        })
    }
}

/// The field names a derived `Deserialize` struct takes, read from serde itself (so a
/// type's keys are declared once, in its `Keys`).
fn struct_fields<T: DeserializeOwned>() -> &'static [&'static str] {
    struct Fields<'a>(&'a mut &'static [&'static str]);

    impl<'de> serde::Deserializer<'de> for Fields<'_> {
        type Error = serde::de::value::Error;

        fn deserialize_any<V: Visitor<'de>>(self, _: V) -> Result<V::Value, Self::Error> {
            Err(serde::de::Error::custom("not a struct"))
        }

        fn deserialize_struct<V: Visitor<'de>>(
            self,
            _name: &'static str,
            fields: &'static [&'static str],
            _: V,
        ) -> Result<V::Value, Self::Error> {
            *self.0 = fields;
            Err(serde::de::Error::custom("fields read"))
        }

        serde::forward_to_deserialize_any! {
            bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string bytes
            byte_buf option unit unit_struct newtype_struct seq tuple tuple_struct map enum
            identifier ignored_any
        }
    }

    let mut fields: &'static [&'static str] = &[];
    let _ = T::deserialize(Fields(&mut fields));
    fields
}

// ---------------------------------------------------------------------------------------
// A configured channel, whatever its type.

/// A channel's checked settings, whatever its type: every [`ChannelType`] is one.
pub(super) trait AnySettings: Debug + Send + Sync {
    fn type_name(&self) -> &'static str;
    fn shape(&self) -> Shape;
    fn secret_values(&self) -> Vec<&Secret>;
    fn keys(&self) -> &'static [&'static str];
    fn to_toml(&self) -> Result<toml::Value, toml::ser::Error>;
    fn build_sender(&self, context: &Context) -> Result<Box<dyn AnySender>, String>;
    fn calls_back(&self) -> Option<&'static str>;
    fn as_any(&self) -> &dyn Any;
}

impl<T: ChannelType> AnySettings for T {
    fn type_name(&self) -> &'static str {
        T::NAME
    }

    fn shape(&self) -> Shape {
        T::SHAPE
    }

    fn secret_values(&self) -> Vec<&Secret> {
        self.secrets()
    }

    fn keys(&self) -> &'static [&'static str] {
        struct_fields::<T::Keys>()
    }

    fn to_toml(&self) -> Result<toml::Value, toml::ser::Error> {
        toml::Value::try_from(self)
    }

    fn build_sender(&self, context: &Context) -> Result<Box<dyn AnySender>, String> {
        Ok(Box::new(self.sender(context)?))
    }

    fn calls_back(&self) -> Option<&'static str> {
        ChannelType::calls_back(self)
    }

    fn as_any(&self) -> &dyn Any {
        self
    }
}

/// One `[[channel]]`, checked: its name and its type's settings.
#[derive(Debug, Clone)]
pub struct ChannelConfig {
    pub name: String,
    settings: Arc<dyn AnySettings>,
}

impl ChannelConfig {
    /// Its `type`.
    pub fn type_name(&self) -> &'static str {
        self.settings.type_name()
    }

    /// Digest, or one document per chat.
    pub fn shape(&self) -> Shape {
        self.settings.shape()
    }

    /// Every secret in its settings.
    pub fn secrets(&self) -> Vec<&Secret> {
        self.settings.secret_values()
    }

    /// Its settings, if it is a `T` channel: for what a type's service sends back
    /// (`hooks` finds the Slack channels' signing secrets this way).
    pub fn settings<T: ChannelType>(&self) -> Option<&T> {
        self.settings.as_any().downcast_ref()
    }

    /// The key that makes its service call back, when set ([`ChannelType::calls_back`]).
    pub fn calls_back(&self) -> Option<&'static str> {
        self.settings.calls_back()
    }

    pub(super) fn sender(&self, context: &Context) -> Result<Box<dyn AnySender>, String> {
        self.settings.build_sender(context)
    }
}

/// The table as the file would say it: `name`, `type`, then the settings in the order the
/// type declares its keys, every secret as `***`.
impl Serialize for ChannelConfig {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let settings = match self.settings.to_toml() {
            Ok(toml::Value::Table(t)) => t,
            Ok(_) => toml::Table::new(),
            Err(e) => return Err(serde::ser::Error::custom(e)),
        };
        let order = self.settings.keys();
        let mut entries: Vec<(&String, &toml::Value)> = settings.iter().collect();
        entries.sort_by_key(|(k, _)| {
            order
                .iter()
                .position(|o| *o == k.as_str())
                .unwrap_or(order.len())
        });
        let mut map = s.serialize_map(Some(entries.len() + 2))?;
        map.serialize_entry("name", &self.name)?;
        map.serialize_entry("type", self.type_name())?;
        for (k, v) in entries {
            map.serialize_entry(k, v)?;
        }
        map.end()
    }
}

/// A boxed send, so that channels of every type sit in one map.
pub(super) type Sending<'a> = Pin<Box<dyn Future<Output = Result<String, SendError>> + Send + 'a>>;

/// A [`Sender`] of any type.
pub(super) trait AnySender: Send + Sync {
    fn send_boxed<'a>(&'a self, doc: &'a AlertDoc) -> Sending<'a>;
    fn test_boxed<'a>(&'a self, doc: &'a AlertDoc) -> Sending<'a>;
    fn as_any(&self) -> &dyn Any;
}

impl<S: Sender> AnySender for S {
    fn send_boxed<'a>(&'a self, doc: &'a AlertDoc) -> Sending<'a> {
        Box::pin(self.send(doc))
    }

    fn test_boxed<'a>(&'a self, doc: &'a AlertDoc) -> Sending<'a> {
        Box::pin(self.test(doc))
    }

    fn as_any(&self) -> &dyn Any {
        self
    }
}

/// Serializes a URL as its text (for settings: `url` has no serde support here).
pub(super) fn ser_url<S: serde::Serializer>(v: &Url, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(v.as_str())
}

/// Serializes URLs as their text.
pub(super) fn ser_urls<S: serde::Serializer>(v: &[Url], s: S) -> Result<S::Ok, S::Error> {
    s.collect_seq(v.iter().map(Url::as_str))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_registry_names_each_type_once_and_reads_its_keys_from_serde() {
        let mut names: Vec<&str> = TYPES.iter().map(Type::name).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), TYPES.len(), "{names:?}");
        let keys = |name: &str| {
            TYPES
                .iter()
                .find(|t| t.name() == name)
                .map(Type::keys)
                .unwrap_or_default()
        };
        assert_eq!(
            keys("slack"),
            ["webhook_url", "webhook_url_file", "signing_secret_file"]
        );
        assert_eq!(keys("console"), [] as [&str; 0]);
        assert!(keys("email").contains(&"helo_name"), "{:?}", keys("email"));
        for t in TYPES {
            // `name` and `type` are every channel's, read before the type's own keys.
            assert!(
                !t.keys().contains(&"name") && !t.keys().contains(&"type"),
                "{}",
                t.name()
            );
        }
    }
}
