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

/// Parses one overview page already in memory, in one pass. (Bodies read from the
/// network go through [`StreamParser`] instead, which never needs them whole.)
pub fn parse(body: &[u8]) -> Result<Page, ParseError> {
    let mut de = serde_json::Deserializer::from_slice(body);
    let page = de
        .deserialize_any(PageVisitor)
        .map_err(|e| ParseError::Json(e.to_string()))?;
    de.end().map_err(|e| ParseError::Json(e.to_string()))?;
    Ok(page)
}

/// Parses an overview as it arrives, chunk by chunk, one chat at a time.
///
/// It finds where each element of the top-level array (or each value of the keyed
/// object) ends and hands that slice to serde, so the whole body is never held: memory is
/// the parsed chats plus the element being read. Bytes are scanned where they arrive and
/// only an unfinished element's tail is copied. Anything that is not an array or an
/// object at the top is collected whole and parsed as one value, so its error reads the
/// same as serde's.
#[derive(Default)]
pub struct StreamParser {
    /// The unconsumed tail of earlier chunks (an element cut by a chunk boundary).
    buf: Vec<u8>,
    state: State,
}

#[derive(Default)]
struct State {
    /// Where the current element starts in the data being scanned, once found.
    element: Option<usize>,
    /// How far the current element has been scanned.
    scan: Scan,
    top: Top,
    page: Page,
}

#[derive(Default, Clone, Copy, PartialEq, Debug)]
enum Top {
    #[default]
    Start,
    Array,
    /// Inside the keyed object: before a key (`true`) or before its value (`false`).
    Object(bool),
    End,
    /// Not a container: collect everything, parse once at the end.
    Whole,
}

/// Resumable scan state of one element.
#[derive(Default, Clone, Copy)]
struct Scan {
    /// Next byte to look at.
    pos: usize,
    depth: u32,
    in_string: bool,
    /// For an object element parsed by serde directly: how many bytes from its start must
    /// be available before trying again. Doubling keeps a huge element linear.
    retry_len: usize,
}

impl StreamParser {
    pub fn feed(&mut self, chunk: &[u8]) -> Result<(), ParseError> {
        if self.state.top == Top::Whole {
            self.buf.extend_from_slice(chunk);
            return Ok(());
        }
        if self.buf.is_empty() {
            let keep = consume(chunk, &mut self.state)?;
            self.buf.extend_from_slice(&chunk[keep..]);
            self.state.shift(keep);
        } else {
            self.buf.extend_from_slice(chunk);
            let keep = consume(&self.buf, &mut self.state)?;
            self.buf.drain(..keep);
            self.state.shift(keep);
        }
        Ok(())
    }

    /// Ends the stream: the page, or an error if the overview is incomplete.
    pub fn finish(mut self) -> Result<Page, ParseError> {
        if self.state.element.is_some() {
            // An element whose retry was deferred for more bytes: there will be no more.
            self.state.scan.retry_len = 0;
            let keep = consume(&self.buf, &mut self.state)?;
            self.buf.drain(..keep);
            self.state.shift(keep);
        }
        match self.state.top {
            Top::End => {
                if self.buf.iter().any(|b| !b.is_ascii_whitespace()) {
                    return Err(ParseError::Json(
                        "trailing characters after the overview".into(),
                    ));
                }
                Ok(self.state.page)
            }
            Top::Whole | Top::Start => {
                let mut de = serde_json::Deserializer::from_slice(&self.buf);
                let page = de
                    .deserialize_any(PageVisitor)
                    .map_err(|e| ParseError::Json(e.to_string()))?;
                de.end().map_err(|e| ParseError::Json(e.to_string()))?;
                Ok(page)
            }
            _ => Err(ParseError::Json(
                "the response ended before the overview did (truncated)".into(),
            )),
        }
    }
}

impl State {
    /// Re-bases positions after the first `by` bytes were dropped.
    fn shift(&mut self, by: usize) {
        if let Some(start) = self.element.as_mut() {
            *start -= by;
            self.scan.pos -= by;
        }
    }
}

fn skip_ws(data: &[u8], mut i: usize) -> usize {
    while i < data.len() && data[i].is_ascii_whitespace() {
        i += 1;
    }
    i
}

/// Parses every complete element in `data`; returns the offset from which bytes must be
/// kept for the next chunk.
fn consume(data: &[u8], st: &mut State) -> Result<usize, ParseError> {
    let mut i = 0;
    loop {
        if let Some(start) = st.element {
            let Some((chat, end)) = element(data, start, &mut st.scan)? else {
                return Ok(start);
            };
            st.page.push(chat);
            st.element = None;
            i = end;
            if let Top::Object(_) = st.top {
                st.top = Top::Object(true);
            }
        }
        i = skip_ws(data, i);
        let Some(&b) = data.get(i) else { return Ok(i) };
        match st.top {
            Top::Start => match b {
                b'[' => st.top = Top::Array,
                b'{' => st.top = Top::Object(true),
                _ => {
                    st.top = Top::Whole;
                    return Ok(i);
                }
            },
            Top::Array => match b {
                b']' => st.top = Top::End,
                b',' => {}
                _ => {
                    st.begin(i);
                    continue;
                }
            },
            Top::Object(true) => match b {
                b'}' => st.top = Top::End,
                b',' => {}
                b'"' => {
                    let Some(end) = string_end(data, i) else {
                        return Ok(i);
                    };
                    let key = &data[i + 1..end - 1];
                    if key.is_empty() || !key.iter().all(u8::is_ascii_digit) {
                        let shown: String = String::from_utf8_lossy(key).chars().take(40).collect();
                        return Err(ParseError::Json(format!(
                            "an object with key \"{shown}\" is not an overview (expected keys \"0\", \"1\", …)"
                        )));
                    }
                    let j = skip_ws(data, end);
                    match data.get(j) {
                        None => return Ok(i),
                        Some(b':') => {
                            st.top = Top::Object(false);
                            i = j + 1;
                            continue;
                        }
                        Some(_) => return Err(ParseError::Json("expected `:` after a key".into())),
                    }
                }
                _ => {
                    return Err(ParseError::Json(format!(
                        "unexpected `{}` in the overview object",
                        b as char
                    )));
                }
            },
            Top::Object(false) => {
                st.begin(i);
                continue;
            }
            Top::End => {
                return Err(ParseError::Json(
                    "trailing characters after the overview".into(),
                ));
            }
            Top::Whole => return Ok(0),
        }
        i += 1;
    }
}

impl State {
    fn begin(&mut self, at: usize) {
        self.element = Some(at);
        self.scan = Scan {
            pos: at,
            ..Scan::default()
        };
    }
}

/// The element starting at `start` and where it ends, or `None` if more bytes are needed.
///
/// Objects (chats) go straight to serde, which finds their end while parsing them: an
/// element cut by a chunk boundary fails with "EOF" and is tried again once enough more
/// bytes are there. Anything else is delimited by [`scan_value`] first.
fn element(
    data: &[u8],
    start: usize,
    scan: &mut Scan,
) -> Result<Option<(MaybeChat, usize)>, ParseError> {
    let json = |e: serde_json::Error| ParseError::Json(e.to_string());
    if data[start] == b'{' {
        let available = data.len() - start;
        if available < scan.retry_len {
            return Ok(None);
        }
        let mut values =
            serde_json::Deserializer::from_slice(&data[start..]).into_iter::<MaybeChat>();
        return match values.next() {
            Some(Ok(chat)) => Ok(Some((chat, start + values.byte_offset()))),
            // Cut short: EOF, or a token cut in half ("0." of "0.5"): the scanner, which
            // knows nothing of tokens, says whether the object's bytes are all here.
            Some(Err(e)) if e.is_eof() || scan_value(data, start, scan).is_none() => {
                scan.retry_len = (available * 2).max(available + 1);
                Ok(None)
            }
            Some(Err(e)) => Err(json(e)),
            None => Ok(None),
        };
    }
    let Some(end) = scan_value(data, start, scan) else {
        return Ok(None);
    };
    let chat = serde_json::from_slice(&data[start..end]).map_err(json)?;
    Ok(Some((chat, end)))
}

/// The end (exclusive) of the value starting at `start`, or `None` if more bytes are
/// needed. A container resumes where the previous call stopped.
fn scan_value(data: &[u8], start: usize, scan: &mut Scan) -> Option<usize> {
    match data[start] {
        b'{' | b'[' => {}
        b'"' => return string_end(data, start),
        _ => {
            // A scalar ends at a delimiter.
            let len = data[start..]
                .iter()
                .position(|c| matches!(c, b',' | b']' | b'}') || c.is_ascii_whitespace())?;
            return Some(start + len);
        }
    }
    let (mut pos, mut depth, mut in_string) = (scan.pos, scan.depth, scan.in_string);
    let result = loop {
        if in_string {
            // Jump to the next quote or backslash: strings are most of an overview.
            match memchr::memchr2(b'"', b'\\', &data[pos..]) {
                None => {
                    pos = data.len();
                    break None;
                }
                Some(k) if data[pos + k] == b'\\' => {
                    if pos + k + 1 >= data.len() {
                        // The escaped byte is in the next chunk: rescan from the backslash.
                        pos += k;
                        break None;
                    }
                    pos += k + 2;
                }
                Some(k) => {
                    pos += k + 1;
                    in_string = false;
                }
            }
            continue;
        }
        let Some(&c) = data.get(pos) else { break None };
        pos += 1;
        match c {
            b'"' => in_string = true,
            b'{' | b'[' => depth += 1,
            b'}' | b']' => {
                depth = depth.saturating_sub(1);
                if depth == 0 {
                    break Some(pos);
                }
            }
            _ => {}
        }
    };
    *scan = Scan {
        pos,
        depth,
        in_string,
        ..*scan
    };
    result
}

/// The end (exclusive) of the JSON string starting at `start` (a `"`), if complete.
fn string_end(data: &[u8], start: usize) -> Option<usize> {
    let mut i = start + 1;
    loop {
        let k = memchr::memchr2(b'"', b'\\', data.get(i..)?)?;
        if data[i + k] == b'\\' {
            i += k + 2;
        } else {
            return Some(i + k + 1);
        }
    }
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

#[cfg(test)]
mod stream_tests {
    use super::*;

    const BODY: &str = r#" [ {"id": "1@c.us", "name": "A \"quoted\" {name} ]", "unreadCount": 2,
        "lastMessage": {"body": "x\\", "timestamp": 1722170400}}, null, 7, "str",
        {"id": "2@c.us", "_chat": {"unreadCount": [1, {"a": "]"}]}}, {"id": "3@c.us"} ] "#;

    #[test]
    fn any_chunking_gives_the_same_page_as_one_slice() {
        let whole = parse(BODY.as_bytes()).unwrap();
        assert_eq!(
            (whole.chats.len(), whole.skipped, whole.elements),
            (3, 3, 6)
        );
        assert_eq!(
            whole.chats[0].name.as_deref(),
            Some("A \"quoted\" {name} ]")
        );
        for size in 1..BODY.len() {
            let mut p = StreamParser::default();
            for chunk in BODY.as_bytes().chunks(size) {
                p.feed(chunk).unwrap();
            }
            let page = p.finish().unwrap();
            assert_eq!(page.chats, whole.chats, "chunk size {size}");
            assert_eq!(page.skipped, whole.skipped);
        }
    }

    #[test]
    fn keyed_objects_stream_too_and_bad_keys_fail_early() {
        let body = br#"{"0": {"id": "1@c.us"}, "1": {"id": "2@c.us", "unreadCount": 1}}"#;
        for size in [1, 3, 7, 100] {
            let mut p = StreamParser::default();
            for chunk in body.chunks(size) {
                p.feed(chunk).unwrap();
            }
            assert_eq!(p.finish().unwrap().chats.len(), 2);
        }
        let mut p = StreamParser::default();
        assert!(p.feed(br#"{"error": "x"}"#).is_err());
    }

    #[test]
    fn truncation_and_trailing_garbage_are_errors() {
        let mut p = StreamParser::default();
        p.feed(br#"[{"id": "1@c.us"}, {"id": "2@"#).unwrap();
        assert!(p.finish().unwrap_err().to_string().contains("truncated"));
        assert!(parse(b"[] x").is_err());
        assert!(parse(b"").is_err());
        assert!(parse(b"  ").is_err());
        assert!(parse(b"42").is_err());
    }
}
