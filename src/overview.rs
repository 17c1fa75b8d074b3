//! The chat model and its lenient parsing (PRODUCT.md section 2).
//!
//! Real overviews vary: a JSON array, or an object keyed "0", "1", …; the unread count on
//! the chat, in `_chat`, or missing; ids as strings or WAHA's `{ "_serialized": … }`
//! objects; timestamps in seconds or milliseconds. Every field is optional and unknown
//! fields are skipped without being built. The body is read element by element straight
//! into [`Chat`]s: no JSON DOM of the whole overview is ever built.
//!
//! A page that is not an overview at all (an error object served with 200) is an error,
//! never an empty inbox: an empty inbox would resolve every open episode.

use serde::de::{self, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use std::fmt;

/// One chat of the overview.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Chat {
    /// The JID, e.g. `201234567890@c.us`.
    pub id: String,
    pub name: Option<String>,
    /// `unreadCount` from the chat, else from `_chat`; `-1` is "marked as unread".
    pub unread: Option<i64>,
    /// `None` for a chat without messages.
    pub last_message: Option<LastMessage>,
}

#[derive(Debug, Clone, PartialEq, Default)]
pub struct LastMessage {
    pub id: Option<String>,
    pub body: Option<String>,
    /// Unix seconds (milliseconds are converted); `None` when absent or unusable.
    pub timestamp: Option<i64>,
    /// `None` when absent: counts as "not from me".
    pub from_me: Option<bool>,
    pub has_media: bool,
}

/// One parsed page.
#[derive(Debug, Default)]
pub struct Page {
    pub chats: Vec<Chat>,
    /// Elements that were not chats (not an object, or no id). A page with skipped
    /// elements is not a complete picture of the inbox.
    pub skipped: usize,
    /// Elements the page held, skipped ones included (for "short page" paging decisions).
    pub elements: usize,
}

#[derive(Debug, thiserror::Error)]
pub enum ParseError {
    #[error("the response is not JSON an overview can be read from: {0}")]
    Json(String),
}

/// Parses one overview page from raw bytes.
pub fn parse(body: &[u8]) -> Result<Page, ParseError> {
    let mut de = serde_json::Deserializer::from_slice(body);
    let page = de
        .deserialize_any(PageVisitor)
        .map_err(|e| ParseError::Json(e.to_string()))?;
    de.end().map_err(|e| ParseError::Json(e.to_string()))?;
    Ok(page)
}

/// Unix seconds from a WhatsApp timestamp: above 10^12 it is milliseconds; zero or
/// negative is unusable.
pub fn normalize_timestamp(raw: f64) -> Option<i64> {
    if !raw.is_finite() || raw <= 0.0 {
        return None;
    }
    let secs = if raw > 1e12 { raw / 1000.0 } else { raw };
    Some(secs as i64)
}

struct PageVisitor;

impl<'de> Visitor<'de> for PageVisitor {
    type Value = Page;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("an array of chats or an object keyed \"0\", \"1\", …")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Page, A::Error> {
        let mut page = Page::default();
        while let Some(item) = seq.next_element::<MaybeChat>()? {
            page.push(item);
        }
        Ok(page)
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Page, A::Error> {
        let mut page = Page::default();
        while let Some(key) = map.next_key::<String>()? {
            if key.is_empty() || !key.bytes().all(|b| b.is_ascii_digit()) {
                return Err(de::Error::custom(format!(
                    "an object with key \"{}\" is not an overview (expected keys \"0\", \"1\", …)",
                    key.chars().take(40).collect::<String>()
                )));
            }
            page.push(map.next_value::<MaybeChat>()?);
        }
        Ok(page)
    }
}

impl Page {
    fn push(&mut self, item: MaybeChat) {
        self.elements += 1;
        match item.0 {
            Some(chat) => self.chats.push(chat),
            None => self.skipped += 1,
        }
    }
}

/// A chat, or `None` for an element that is not one.
struct MaybeChat(Option<Chat>);

impl<'de> de::Deserialize<'de> for MaybeChat {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(ChatVisitor)
    }
}

struct ChatVisitor;

impl<'de> Visitor<'de> for ChatVisitor {
    type Value = MaybeChat;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a chat object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<MaybeChat, A::Error> {
        let mut id = None;
        let mut name = None;
        let mut unread = None;
        let mut inner_unread = None;
        let mut last_message = None;
        while let Some(key) = map.next_key::<KeyName>()? {
            match key.0.as_str() {
                "id" => id = map.next_value::<Loose>()?.into_id(),
                "name" => name = map.next_value::<Loose>()?.into_string(),
                "unreadCount" => unread = map.next_value::<Loose>()?.into_i64(),
                "_chat" => inner_unread = map.next_value::<InnerChat>()?.0,
                "lastMessage" => last_message = map.next_value::<MaybeLastMessage>()?.0,
                _ => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        Ok(MaybeChat(id.filter(|s: &String| !s.is_empty()).map(|id| {
            Chat {
                id,
                name,
                unread: unread.or(inner_unread),
                last_message,
            }
        })))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<MaybeChat, A::Error> {
        while seq.next_element::<IgnoredAny>()?.is_some() {}
        Ok(MaybeChat(None))
    }

    fn visit_unit<E>(self) -> Result<MaybeChat, E> {
        Ok(MaybeChat(None))
    }
    fn visit_bool<E>(self, _: bool) -> Result<MaybeChat, E> {
        Ok(MaybeChat(None))
    }
    fn visit_i64<E>(self, _: i64) -> Result<MaybeChat, E> {
        Ok(MaybeChat(None))
    }
    fn visit_u64<E>(self, _: u64) -> Result<MaybeChat, E> {
        Ok(MaybeChat(None))
    }
    fn visit_f64<E>(self, _: f64) -> Result<MaybeChat, E> {
        Ok(MaybeChat(None))
    }
    fn visit_str<E>(self, _: &str) -> Result<MaybeChat, E> {
        Ok(MaybeChat(None))
    }
}

/// Map keys, borrowed where the input allows, owned where it has escapes.
struct KeyName(String);

impl<'de> de::Deserialize<'de> for KeyName {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        Ok(KeyName(s.into_owned()))
    }
}

/// `_chat`: only its `unreadCount` matters.
struct InnerChat(Option<i64>);

impl<'de> de::Deserialize<'de> for InnerChat {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = InnerChat;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("an object")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<InnerChat, A::Error> {
                let mut unread = None;
                while let Some(key) = map.next_key::<KeyName>()? {
                    if key.0 == "unreadCount" {
                        unread = map.next_value::<Loose>()?.into_i64();
                    } else {
                        map.next_value::<IgnoredAny>()?;
                    }
                }
                Ok(InnerChat(unread))
            }
        }
        d.deserialize_any(LooseOr(V, || InnerChat(None)))
    }
}

struct MaybeLastMessage(Option<LastMessage>);

impl<'de> de::Deserialize<'de> for MaybeLastMessage {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = MaybeLastMessage;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a message object")
            }
            fn visit_map<A: MapAccess<'de>>(
                self,
                mut map: A,
            ) -> Result<MaybeLastMessage, A::Error> {
                let mut m = LastMessage::default();
                while let Some(key) = map.next_key::<KeyName>()? {
                    match key.0.as_str() {
                        "id" => m.id = map.next_value::<Loose>()?.into_id(),
                        "body" => m.body = map.next_value::<Loose>()?.into_string(),
                        "timestamp" => {
                            m.timestamp = map
                                .next_value::<Loose>()?
                                .into_f64()
                                .and_then(normalize_timestamp)
                        }
                        "fromMe" => m.from_me = map.next_value::<Loose>()?.into_bool(),
                        "hasMedia" => {
                            m.has_media = map.next_value::<Loose>()?.into_bool().unwrap_or(false)
                        }
                        _ => {
                            map.next_value::<IgnoredAny>()?;
                        }
                    }
                }
                Ok(MaybeLastMessage(Some(m)))
            }
        }
        d.deserialize_any(LooseOr(V, || MaybeLastMessage(None)))
    }
}

/// Wraps a map visitor so that any non-map value yields a fallback instead of an error.
struct LooseOr<V, F>(V, F);

impl<'de, V, F, T> Visitor<'de> for LooseOr<V, F>
where
    V: Visitor<'de, Value = T>,
    F: FnOnce() -> T,
{
    type Value = T;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        self.0.expecting(f)
    }
    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<T, A::Error> {
        self.0.visit_map(map)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<T, A::Error> {
        while seq.next_element::<IgnoredAny>()?.is_some() {}
        Ok((self.1)())
    }
    fn visit_unit<E>(self) -> Result<T, E> {
        Ok((self.1)())
    }
    fn visit_none<E>(self) -> Result<T, E> {
        Ok((self.1)())
    }
    fn visit_bool<E>(self, _: bool) -> Result<T, E> {
        Ok((self.1)())
    }
    fn visit_i64<E>(self, _: i64) -> Result<T, E> {
        Ok((self.1)())
    }
    fn visit_u64<E>(self, _: u64) -> Result<T, E> {
        Ok((self.1)())
    }
    fn visit_f64<E>(self, _: f64) -> Result<T, E> {
        Ok((self.1)())
    }
    fn visit_str<E>(self, _: &str) -> Result<T, E> {
        Ok((self.1)())
    }
}

/// Any leaf value, read leniently. Objects keep only a `_serialized` string (WAHA's id
/// objects); arrays are skipped.
enum Loose {
    Null,
    Bool(bool),
    Int(i64),
    Float(f64),
    Str(String),
    Serialized(Option<String>),
}

impl Loose {
    fn into_id(self) -> Option<String> {
        match self {
            Loose::Str(s) => Some(s),
            Loose::Serialized(s) => s,
            _ => None,
        }
    }
    fn into_string(self) -> Option<String> {
        match self {
            Loose::Str(s) => Some(s),
            _ => None,
        }
    }
    fn into_f64(self) -> Option<f64> {
        match self {
            Loose::Int(i) => Some(i as f64),
            Loose::Float(f) => Some(f),
            Loose::Str(s) => s.trim().parse().ok(),
            _ => None,
        }
    }
    fn into_i64(self) -> Option<i64> {
        match self {
            Loose::Int(i) => Some(i),
            Loose::Float(f) if f.is_finite() => Some(f as i64),
            Loose::Str(s) => s.trim().parse().ok(),
            _ => None,
        }
    }
    fn into_bool(self) -> Option<bool> {
        match self {
            Loose::Bool(b) => Some(b),
            Loose::Int(i) => Some(i != 0),
            Loose::Str(s) => match s.as_str() {
                "true" => Some(true),
                "false" => Some(false),
                _ => None,
            },
            _ => None,
        }
    }
}

impl<'de> de::Deserialize<'de> for Loose {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Loose;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("any JSON value")
            }
            fn visit_unit<E>(self) -> Result<Loose, E> {
                Ok(Loose::Null)
            }
            fn visit_none<E>(self) -> Result<Loose, E> {
                Ok(Loose::Null)
            }
            fn visit_bool<E>(self, b: bool) -> Result<Loose, E> {
                Ok(Loose::Bool(b))
            }
            fn visit_i64<E>(self, i: i64) -> Result<Loose, E> {
                Ok(Loose::Int(i))
            }
            fn visit_u64<E>(self, u: u64) -> Result<Loose, E> {
                Ok(i64::try_from(u)
                    .map(Loose::Int)
                    .unwrap_or(Loose::Float(u as f64)))
            }
            fn visit_f64<E>(self, f: f64) -> Result<Loose, E> {
                Ok(Loose::Float(f))
            }
            fn visit_str<E>(self, s: &str) -> Result<Loose, E> {
                Ok(Loose::Str(s.to_owned()))
            }
            fn visit_string<E>(self, s: String) -> Result<Loose, E> {
                Ok(Loose::Str(s))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Loose, A::Error> {
                while seq.next_element::<IgnoredAny>()?.is_some() {}
                Ok(Loose::Null)
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Loose, A::Error> {
                let mut serialized = None;
                while let Some(key) = map.next_key::<KeyName>()? {
                    if key.0 == "_serialized" {
                        serialized = map.next_value::<Loose>()?.into_string();
                    } else {
                        map.next_value::<IgnoredAny>()?;
                    }
                }
                Ok(Loose::Serialized(serialized))
            }
        }
        d.deserialize_any(V)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn one(json: &str) -> Chat {
        let page = parse(json.as_bytes()).unwrap();
        assert_eq!(page.chats.len(), 1, "{json}");
        page.chats.into_iter().next().unwrap()
    }

    #[test]
    fn the_seeds_object_keyed_by_index_parses() {
        let page = parse(
            br#"{"0": {"id": "201234567890@c.us", "name": "John Doe", "unreadCount": 5,
                 "lastMessage": {"id": "ABC123", "body": "Hello!", "timestamp": 1722170400}}}"#,
        )
        .unwrap();
        assert_eq!(
            page.chats,
            vec![Chat {
                id: "201234567890@c.us".into(),
                name: Some("John Doe".into()),
                unread: Some(5),
                last_message: Some(LastMessage {
                    id: Some("ABC123".into()),
                    body: Some("Hello!".into()),
                    timestamp: Some(1722170400),
                    from_me: None,
                    has_media: false,
                }),
            }]
        );
    }

    #[test]
    fn an_array_parses_and_unread_falls_back_to_underscore_chat() {
        let c = one(
            r#"[{"id": "1@c.us", "_chat": {"unreadCount": 3, "other": [1,2]}, "extra": {"x": 1}}]"#,
        );
        assert_eq!(c.unread, Some(3));
        let c = one(r#"[{"id": "1@c.us", "unreadCount": 2, "_chat": {"unreadCount": 9}}]"#);
        assert_eq!(c.unread, Some(2), "the top-level count wins");
        let c = one(r#"[{"id": "1@c.us", "unreadCount": null, "_chat": {"unreadCount": 9}}]"#);
        assert_eq!(c.unread, Some(9), "null is not present");
        let c = one(r#"[{"id": "1@c.us"}]"#);
        assert_eq!(c.unread, None);
    }

    #[test]
    fn milliseconds_become_seconds_and_nonsense_is_dropped() {
        let c = one(
            r#"[{"id": "1@c.us", "lastMessage": {"timestamp": 1722170400123, "fromMe": false}}]"#,
        );
        assert_eq!(c.last_message.unwrap().timestamp, Some(1722170400));
        let c = one(r#"[{"id": "1@c.us", "lastMessage": {"timestamp": "1722170400"}}]"#);
        assert_eq!(c.last_message.unwrap().timestamp, Some(1722170400));
        let c = one(r#"[{"id": "1@c.us", "lastMessage": {"timestamp": -5}}]"#);
        assert_eq!(c.last_message.unwrap().timestamp, None);
    }

    #[test]
    fn waha_id_objects_and_null_last_message_parse() {
        let c = one(
            r#"[{"id": {"server": "c.us", "user": "1", "_serialized": "1@c.us"}, "lastMessage": null}]"#,
        );
        assert_eq!(c.id, "1@c.us");
        assert_eq!(c.last_message, None);
    }

    #[test]
    fn elements_that_are_not_chats_are_counted_not_fatal() {
        let page = parse(br#"[null, 5, {"name": "no id"}, {"id": "1@c.us"}]"#).unwrap();
        assert_eq!((page.chats.len(), page.skipped, page.elements), (1, 3, 4));
    }

    #[test]
    fn an_error_object_is_not_an_empty_inbox() {
        let err = parse(br#"{"message": "session not ready"}"#).unwrap_err();
        assert!(err.to_string().contains("\"message\""), "{err}");
        assert_eq!(parse(b"{}").unwrap().chats.len(), 0);
        assert!(parse(b"<html>").is_err());
        assert!(parse(b"[{\"id\": \"1@c.us\"").is_err());
        assert!(parse(b"[] trailing").is_err());
    }
}
