//! The overview parser: worked examples, the open-episode look, streaming, and the
//! scanner against a reference reading of docs/spec.md section 2.

use super::*;

fn one(json: &str) -> Chat {
    let page = parse(json.as_bytes()).unwrap();
    assert_eq!(page.chats.len(), 1, "{json}");
    page.chats.into_iter().next().unwrap()
}

/// Who sent the last message decides "answered" in reply mode and auto-replies: it
/// must come through whatever form the engine sends it in.
#[test]
fn the_last_messages_sender_is_read_in_every_form() {
    for (from_me, expect) in [
        ("true", Some(true)),
        ("false", Some(false)),
        ("\"true\"", Some(true)),
        ("1", Some(true)),
        ("null", None),
    ] {
        let c = one(&format!(
            r#"[{{"id":"1@c.us","unreadCount":0,"lastMessage":{{"id":"M","body":"hi","timestamp":1722170400,"fromMe":{from_me}}}}}]"#
        ));
        let m = c.last_message.unwrap_or_default();
        assert_eq!(m.from_me, expect, "fromMe {from_me}");
        assert_eq!(m.body.as_deref(), Some("hi"));
    }
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
            fingerprint: page.chats[0].fingerprint,
            ..Chat::default()
        }]
    );
    assert_ne!(
        page.chats[0].fingerprint, 0,
        "every kept chat is fingerprinted"
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
    let c =
        one(r#"[{"id": "1@c.us", "lastMessage": {"timestamp": 1722170400123, "fromMe": false}}]"#);
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

/// A chat's messages come as a list, keyed, or in an envelope; a list of chats (what a
/// gateway that routes every path to the overview answers) is not one: its chats would
/// read as customer messages at the chats' times.
#[test]
fn a_chat_list_is_not_a_chats_messages() {
    let messages = r#"{"status":"success","data":[
        {"id":"m2","body":"hello?","timestamp":1700000100,"fromMe":false},
        {"id":"m1","body":"Sent","timestamp":1700000000,"fromMe":true}]}"#;
    let parsed = parse_messages(messages.as_bytes()).unwrap();
    assert_eq!(parsed.len(), 2);
    assert_eq!(parsed[1].from_me, Some(true));
    for chats in [
        r#"[{"id":"a@c.us","timestamp":1700000000,"unreadCount":0}]"#,
        r#"{"0":{"id":"a@c.us","timestamp":1700000000,"lastMessage":null}}"#,
    ] {
        let e = parse_messages(chats.as_bytes()).unwrap_err().to_string();
        assert!(e.contains("its elements are chats"), "{e}");
    }
}

mod interest {
    use super::*;

    const NOW: i64 = 1_800_000_000;

    fn parse_with(interest: Interest, body: &str) -> Page {
        let mut p = StreamParser::new(interest);
        p.feed(body.as_bytes()).unwrap();
        p.finish().unwrap()
    }

    /// Which chats a cycle reads whole, which only by id, and which not at all, given the
    /// open episodes' fingerprints and quiet_until (the daemon's warm path).
    #[test]
    fn a_chat_is_skipped_read_by_id_or_read_whole_as_its_episode_says() {
        let waiting = r#"{"id":"1@c.us","name":"A","unreadCount":2,"lastMessage":{"id":"M","timestamp":1799990000,"fromMe":false}}"#;
        let read = r#"{"id":"2@c.us","name":"B","unreadCount":0,"lastMessage":{"id":"R","timestamp":1799990000,"fromMe":true}}"#;
        let body = format!("[{waiting},{read}]");
        // Fingerprints as the parser computes them, seeded by the policy.
        let whole = parse_with(Interest::new(|_| None, 7, None, NOW), &body);
        assert_eq!(whole.chats.len(), 1, "no episode and read: skipped");
        let fp = whole.chats[0].fingerprint;
        assert_ne!(fp, 0);
        let other_seed = parse_with(Interest::new(|_| None, 8, None, NOW), &body);
        assert_ne!(
            other_seed.chats[0].fingerprint, fp,
            "the seed is the policy's"
        );

        let open = move |quiet_until: i64, fingerprint: u64| {
            move |id: &str| {
                (id == "1@c.us").then_some(OpenEpisode {
                    fingerprint,
                    quiet_until,
                    breached: true,
                })
            }
        };
        // Unchanged and not due before NOW + 60: quiet, counted as breached, not read.
        let page = parse_with(Interest::new(open(NOW + 60, fp), 7, None, NOW), &body);
        let c = &page.chats[0];
        assert!(c.same && c.quiet && c.breached && c.name.is_none(), "{c:?}");
        // Unchanged but due now (quiet_until reached): same, read by id only, not quiet.
        let page = parse_with(Interest::new(open(NOW, fp), 7, None, NOW), &body);
        let c = &page.chats[0];
        assert!(c.same && !c.quiet && !c.breached, "{c:?}");
        // Changed since the episode: read whole.
        let page = parse_with(Interest::new(open(NOW + 60, fp ^ 1), 7, None, NOW), &body);
        let c = &page.chats[0];
        assert!(!c.same && !c.quiet, "{c:?}");
        assert_eq!(c.name.as_deref(), Some("A"));
        assert_eq!(c.fingerprint, fp);
        // An episode keeps even a read chat in view (its wait must end).
        let open_read = |id: &str| {
            (id == "2@c.us").then_some(OpenEpisode {
                fingerprint: 0,
                quiet_until: 0,
                breached: false,
            })
        };
        let page = parse_with(Interest::new(open_read, 7, None, NOW), &body);
        assert_eq!(page.chats.len(), 2);
        assert_eq!(page.total, 2);
    }

    #[test]
    fn ids_are_collected_as_seeded_hashes_when_asked() {
        let body = r#"[{"id":"1@c.us","unreadCount":0},{"id":"2@c.us","unreadCount":0}]"#;
        let plain = parse_with(Interest::all(), body);
        assert!(plain.ids.is_empty());
        let interest = Interest::all().with_ids(99);
        let expect = [interest.id_hash("1@c.us"), interest.id_hash("2@c.us")];
        assert_ne!(expect[0], expect[1]);
        assert_ne!(expect[0], Interest::all().with_ids(100).id_hash("1@c.us"));
        let page = parse_with(interest, body);
        assert_eq!(page.ids, expect);
    }

    #[test]
    fn may_wait_is_sections_two_first_look() {
        // (unread, has last message, last timestamp, read since) → may wait
        let cases = [
            (Some(1), true, None, None, true),
            (Some(-1), true, None, None, true),
            (Some(0), true, Some(100), None, false),
            (Some(-2), true, Some(100), None, false),
            (None, true, None, None, true),
            (None, false, None, None, false),
            (Some(0), true, Some(101), Some(100), true),
            (Some(0), true, Some(100), Some(100), false),
            (Some(0), true, None, Some(100), false),
        ];
        for (unread, has_last, ts, since, expect) in cases {
            assert_eq!(
                may_wait(unread, has_last, ts, since),
                expect,
                "{unread:?} {has_last} {ts:?} {since:?}"
            );
        }
    }
}

mod stream {
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

/// The parser against a reference: docs/spec.md section 2's reading written the plain way,
/// on a `serde_json::Value` of each element, for thousands of generated chats in every
/// shape the engines send (and some they should not). The scanner, the serde fallback,
/// the streaming and the interest must all come to what the reference says.
mod reference {
    use super::*;
    use serde_json::Value;
    use std::collections::HashMap;

    /// A small deterministic generator (xorshift64*): the same chats on every run.
    struct Rng(u64);

    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 >> 12;
            self.0 ^= self.0 << 25;
            self.0 ^= self.0 >> 27;
            self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
        }
        fn below(&mut self, n: usize) -> usize {
            (self.next() % n as u64) as usize
        }
        fn chance(&mut self, percent: u64) -> bool {
            self.next() % 100 < percent
        }
        fn pick<'a>(&mut self, xs: &[&'a str]) -> &'a str {
            xs[self.below(xs.len())]
        }
    }

    /// Counts, in the forms engines send them and in forms they should not.
    const COUNTS: &[&str] = &[
        "0",
        "3",
        "-1",
        "-2",
        "null",
        "12",
        "2.0",
        "2.5",
        "\"4\"",
        "\" 4 \"",
        "true",
        "[1]",
        "{}",
        "1e2",
        "-0",
        "123456789012345678",
        "1234567890123456789",
        "12345678901234567890",
        "-123456789012345678",
    ];

    const TIMES: &[&str] = &[
        "1722170400",
        "1722170400123",
        "1000000000000",
        "1000000000001",
        "\"1722170400\"",
        "\" 1722170400 \"",
        "-5",
        "0",
        "1.7e9",
        "1722170400.9",
        "null",
        "\"soon\"",
        "true",
        "[1722170400]",
        "{\"t\":1}",
        "999999999999999999",
    ];

    const FLAGS: &[&str] = &[
        "true",
        "false",
        "\"true\"",
        "\"false\"",
        "\"yes\"",
        "1",
        "0",
        "-3",
        "1.0",
        "null",
        "[true]",
    ];

    const TEXTS: &[&str] = &[
        "\"hi\"",
        "\"a \\\"quoted\\\" {x} ]\"",
        "\"back\\\\\"",
        "\"\\u00e9t\\u00e9\"",
        "\"été\"",
        "\"\"",
        "null",
        "5",
        "{\"text\":\"hi\"}",
    ];

    /// Values of fields nobody reads, which the scanner must step over whole.
    const OTHER: &[&str] = &[
        "false",
        "-1.5e-3",
        "\"\\\"}]\\\\\"",
        "[1,\"]\",{\"a\":null,\"b\":[{}]}]",
        "{\"k\":\"\\\"}\",\"l\":[\"{\"]}",
        "\"\\u20ac\"",
        "[]",
        "{}",
        "null",
    ];

    /// Elements that are not chats.
    const NOT_CHATS: &[&str] = &[
        "null",
        "7",
        "-1.5e3",
        "true",
        "\"str \\\"]\\\" }\"",
        "[1,{\"id\":\"9@c.us\"},\"]\"]",
        "[]",
        "{}",
        "{\"name\":\"no id\",\"unreadCount\":4}",
        "{\"id\":\"\",\"unreadCount\":4}",
        "{\"id\":null}",
        "{\"id\":{\"user\":\"1\"}}",
    ];

    /// One member, spaced in one of the ways JSON writers space them.
    fn member(rng: &mut Rng, key: &str, value: &str) -> String {
        match rng.below(4) {
            0 => format!("\"{key}\":{value}"),
            1 => format!("\"{key}\": {value}"),
            2 => format!("\"{key}\" : {value} "),
            _ => format!("\n  \"{key}\":\t{value}"),
        }
    }

    fn object(rng: &mut Rng, mut members: Vec<String>) -> String {
        // Any order: shuffle.
        for i in (1..members.len()).rev() {
            members.swap(i, rng.below(i + 1));
        }
        let open = if rng.chance(20) { "{ " } else { "{" };
        format!(
            "{open}{}}}",
            members.join(if rng.chance(30) { " , " } else { "," })
        )
    }

    fn id(rng: &mut Rng, n: usize) -> String {
        match rng.below(20) {
            0 => format!("\"{n}\\u0040c.us\""),
            1 => format!("{{\"server\":\"c.us\",\"user\":\"{n}\",\"_serialized\":\"{n}@c.us\"}}"),
            2 => format!("{{ \"_serialized\" : \"{n}@c.us\" }}"),
            3 => format!("\"{n}@c.us-été\""),
            4 => match rng.below(6) {
                0 => "{\"_serialized\":5}".into(),
                1 => "{\"_serialized\":{\"_serialized\":\"x@c.us\"}}".into(),
                2 => "{\"_serialized\":\"\"}".into(),
                3 => "\"\"".into(),
                4 => "[\"1@c.us\"]".into(),
                _ => "7".into(),
            },
            _ => format!("\"{n}@c.us\""),
        }
    }

    fn last_message(rng: &mut Rng, n: usize) -> String {
        if rng.chance(12) {
            return rng
                .pick(&["null", "5", "\"x\"", "[{}]", "true", "{}"])
                .to_string();
        }
        let mut m = Vec::new();
        if rng.chance(70) {
            let id = if rng.chance(15) {
                format!("{{\"_serialized\":\"true_{n}@c.us_M\"}}")
            } else {
                format!("\"M{n}\"")
            };
            m.push(member(rng, "id", &id));
        }
        if rng.chance(70) {
            let body = rng.pick(TEXTS);
            m.push(member(rng, "body", body));
        }
        if rng.chance(85) {
            let t = if rng.chance(50) {
                "1722170400"
            } else {
                rng.pick(TIMES)
            };
            m.push(member(rng, "timestamp", t));
        }
        if rng.chance(70) {
            let f = rng.pick(FLAGS);
            m.push(member(rng, "fromMe", f));
        }
        if rng.chance(30) {
            let f = rng.pick(FLAGS);
            m.push(member(rng, "hasMedia", f));
        }
        if rng.chance(30) {
            let o = rng.pick(OTHER);
            m.push(member(rng, "ack", o));
        }
        object(rng, m)
    }

    /// One chat object as an engine might write it.
    fn chat(rng: &mut Rng, n: usize) -> String {
        let mut m = Vec::new();
        if rng.chance(96) {
            let id = id(rng, n);
            m.push(member(rng, "id", &id));
        }
        if rng.chance(60) {
            let name = rng.pick(TEXTS);
            m.push(member(rng, "name", name));
        }
        let count = |rng: &mut Rng| {
            if rng.chance(50) {
                rng.pick(&["0", "0", "0", "2", "-1", "null"])
            } else {
                rng.pick(COUNTS)
            }
        };
        if rng.chance(65) {
            let c = count(rng);
            m.push(member(rng, "unreadCount", c));
        }
        if rng.chance(40) {
            let inner = if rng.chance(15) {
                rng.pick(&["null", "7", "\"s\"", "[1]", "{}"]).to_string()
            } else {
                let mut inner = vec![];
                if rng.chance(80) {
                    let c = count(rng);
                    inner.push(member(rng, "unreadCount", c));
                }
                if rng.chance(50) {
                    let o = rng.pick(OTHER);
                    inner.push(member(rng, "archived", o));
                }
                object(rng, inner)
            };
            m.push(member(rng, "_chat", &inner));
        }
        if rng.chance(90) {
            let last = last_message(rng, n);
            m.push(member(rng, "lastMessage", &last));
        }
        for key in ["pinned", "isGroup", "picture"] {
            if rng.chance(30) {
                let o = rng.pick(OTHER);
                m.push(member(rng, key, o));
            }
        }
        if rng.chance(8) {
            // A key written with an escape (the scanner leaves those to serde).
            let c = count(rng);
            m.push(member(rng, "unread\\u0043ount", c));
        }
        if rng.chance(8) {
            // A repeated key: the last one counts, as in serde.
            let c = count(rng);
            let again = member(rng, "unreadCount", c);
            let mut o = object(rng, m);
            o.pop();
            let sep = if o.len() > 1 { "," } else { "" };
            return format!("{o}{sep}{again}}}");
        }
        object(rng, m)
    }

    fn int(v: &Value) -> Option<i64> {
        match v {
            Value::Number(n) => n
                .as_i64()
                .or_else(|| n.as_f64().filter(|f| f.is_finite()).map(|f| f as i64)),
            Value::String(s) => s.trim().parse().ok(),
            _ => None,
        }
    }

    fn time(v: &Value) -> Option<i64> {
        let t = match v {
            Value::Number(n) => n.as_f64(),
            Value::String(s) => s.trim().parse::<f64>().ok(),
            _ => None,
        }?;
        if !t.is_finite() || t <= 0.0 {
            return None;
        }
        // Above 10^12: milliseconds.
        Some(if t > 1_000_000_000_000.0 {
            t / 1000.0
        } else {
            t
        } as i64)
    }

    fn flag(v: &Value) -> Option<bool> {
        match v {
            Value::Bool(b) => Some(*b),
            Value::Number(n) => n.as_i64().map(|i| i != 0),
            Value::String(s) if s == "true" => Some(true),
            Value::String(s) if s == "false" => Some(false),
            _ => None,
        }
    }

    fn id_of(v: &Value) -> Option<String> {
        match v {
            Value::String(s) => Some(s.clone()),
            Value::Object(m) => m.get("_serialized")?.as_str().map(String::from),
            _ => None,
        }
    }

    fn text(v: Option<&Value>) -> Option<String> {
        v?.as_str().map(String::from)
    }

    /// What section 2 makes of one element: `None` if it is not a chat.
    fn expected(raw: &str) -> Option<(Chat, bool)> {
        let v: Value = serde_json::from_str(raw).expect("the generator writes JSON");
        let o = v.as_object()?;
        let id = o.get("id").and_then(id_of).filter(|id| !id.is_empty())?;
        let inner = o
            .get("_chat")
            .and_then(Value::as_object)
            .and_then(|c| c.get("unreadCount"))
            .and_then(int);
        let last = o.get("lastMessage").and_then(Value::as_object);
        let chat = Chat {
            id,
            name: text(o.get("name")),
            unread: o.get("unreadCount").and_then(int).or(inner),
            last_message: last.map(|m| LastMessage {
                id: m.get("id").and_then(id_of),
                body: text(m.get("body")),
                timestamp: m.get("timestamp").and_then(time),
                from_me: m.get("fromMe").and_then(flag),
                has_media: m.get("hasMedia").and_then(flag).unwrap_or(false),
            }),
            fingerprint: 0,
            ..Chat::default()
        };
        Some((chat, last.is_some()))
    }

    /// An element of a generated overview: its text, and what it must be read as.
    struct Element {
        raw: String,
        chat: Option<(Chat, bool)>,
    }

    fn overview(rng: &mut Rng, next_id: &mut usize) -> Vec<Element> {
        (0..rng.below(7))
            .map(|_| {
                let raw = if rng.chance(10) {
                    rng.pick(NOT_CHATS).to_string()
                } else {
                    *next_id += 1;
                    chat(rng, *next_id)
                };
                let chat = expected(&raw);
                Element { raw, chat }
            })
            .collect()
    }

    /// The overview as an array or as an object keyed "0", "1", …, spaced either way.
    fn body(rng: &mut Rng, elements: &[Element]) -> String {
        let keyed = rng.chance(30);
        let sep = rng.pick(&[",", ", ", ",\n  ", " ,"]);
        let items: Vec<String> = elements
            .iter()
            .enumerate()
            .map(|(i, e)| {
                if keyed {
                    format!("\"{i}\"{}{}", rng.pick(&[":", ": ", " :\n", "\t: "]), e.raw)
                } else {
                    e.raw.clone()
                }
            })
            .collect();
        let (open, close) = if keyed { ("{", "}") } else { ("[", "]") };
        let pad = rng.pick(&["", " ", "\n"]);
        format!("{pad}{open}{pad}{}{pad}{close}{pad}", items.join(sep))
    }

    /// The page the parser must produce for `elements` under an interest described by
    /// `episodes` (`None`: `Interest::all`), `seed`, `read_since`, `ids` and `now`.
    fn expected_page(
        elements: &[Element],
        episodes: Option<&HashMap<String, OpenEpisode>>,
        seed: u64,
        read_since: Option<i64>,
        ids: Option<u64>,
        now: i64,
    ) -> (Vec<Chat>, usize, usize, usize, Vec<u64>) {
        let (mut chats, mut total, mut skipped, mut hashes) = (vec![], 0, 0, vec![]);
        for e in elements {
            let Some((chat, has_last)) = &e.chat else {
                skipped += 1;
                continue;
            };
            total += 1;
            if let Some(s) = ids {
                hashes.push(xxhash_rust::xxh3::xxh3_64_with_seed(chat.id.as_bytes(), s));
            }
            let fingerprint = xxhash_rust::xxh3::xxh3_64_with_seed(e.raw.as_bytes(), seed);
            let episode = episodes.and_then(|m| m.get(&chat.id));
            let ts = chat.last_message.as_ref().and_then(|m| m.timestamp);
            if episodes.is_some()
                && episode.is_none()
                && !may_wait(chat.unread, *has_last, ts, read_since)
            {
                continue;
            }
            match episode {
                Some(ep) if ep.fingerprint == fingerprint => {
                    let quiet = now < ep.quiet_until;
                    chats.push(Chat {
                        id: chat.id.clone(),
                        unread: chat.unread,
                        fingerprint,
                        same: true,
                        quiet,
                        breached: quiet && ep.breached,
                        ..Chat::default()
                    });
                }
                _ => chats.push(Chat {
                    fingerprint,
                    ..chat.clone()
                }),
            }
        }
        (chats, total, skipped, elements.len(), hashes)
    }

    fn run(interest: Interest, body: &str, chunk: usize) -> Page {
        let mut p = StreamParser::new(interest);
        for c in body.as_bytes().chunks(chunk) {
            p.feed(c)
                .unwrap_or_else(|e| panic!("{e} (chunks of {chunk}): {body}"));
        }
        p.finish()
            .unwrap_or_else(|e| panic!("{e} (chunks of {chunk}): {body}"))
    }

    /// Every generated overview, whole and in chunks of every size from one byte, read
    /// with every kind of interest, is the page the reference says.
    #[test]
    fn every_chat_reads_as_section_two_says_in_any_chunks_and_under_any_interest() {
        const NOW: i64 = 1_722_170_500;
        let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
        let mut next_id = 0;
        let (mut kept, mut skipped_by_interest, mut same, mut quiet) = (0, 0, 0, 0);
        for round in 0..1000 {
            let elements = overview(&mut rng, &mut next_id);
            let text = body(&mut rng, &elements);
            let seed = rng.next();
            // Episodes for some chats: the same bytes (quiet or due), or changed.
            let mut episodes = HashMap::new();
            for e in &elements {
                let Some((chat, _)) = &e.chat else { continue };
                let fingerprint = xxhash_rust::xxh3::xxh3_64_with_seed(e.raw.as_bytes(), seed);
                let episode = |fingerprint, quiet_until, breached| OpenEpisode {
                    fingerprint,
                    quiet_until,
                    breached,
                };
                match rng.below(6) {
                    0 => episodes.insert(chat.id.clone(), episode(fingerprint, NOW + 1, true)),
                    1 => episodes.insert(chat.id.clone(), episode(fingerprint, NOW, true)),
                    2 => episodes.insert(chat.id.clone(), episode(fingerprint, NOW + 9, false)),
                    3 => episodes.insert(chat.id.clone(), episode(!fingerprint, NOW + 9, true)),
                    _ => None,
                };
            }
            let read_since = rng.chance(50).then_some(1_722_170_399);
            let ids = rng.chance(50).then(|| rng.next());
            let chunk = match round % 4 {
                0 => text.len().max(1),
                1 => 1,
                _ => 1 + rng.below(text.len().max(1)),
            };

            let all = run(Interest::all(), &text, chunk);
            let expect = expected_page(&elements, None, 0, None, None, NOW);
            assert_eq!(
                (all.chats, all.total, all.skipped, all.elements),
                (expect.0, expect.1, expect.2, expect.3),
                "Interest::all, chunks of {chunk}: {text}"
            );

            let open = episodes.clone();
            let mut interest =
                Interest::new(move |id| open.get(id).copied(), seed, read_since, NOW);
            if let Some(s) = ids {
                interest = interest.with_ids(s);
            }
            let page = run(interest, &text, chunk);
            let expect = expected_page(&elements, Some(&episodes), seed, read_since, ids, NOW);
            kept += expect.0.len();
            skipped_by_interest += expect.1 - expect.0.len();
            same += expect.0.iter().filter(|c| c.same).count();
            quiet += expect.0.iter().filter(|c| c.quiet).count();
            assert_eq!(
                (
                    page.chats,
                    page.total,
                    page.skipped,
                    page.elements,
                    page.ids
                ),
                expect,
                "episodes {episodes:?}, read since {read_since:?}, chunks of {chunk}: {text}"
            );
        }
        // The generator reaches every path.
        assert!(next_id > 2500, "{next_id} chats");
        assert!(
            kept > 1000 && skipped_by_interest > 150 && same > 500 && quiet > 300,
            "kept {kept}, skipped {skipped_by_interest}, same {same}, quiet {quiet}"
        );
    }
}

/// The byte scanner decides the chats engines usually send by itself (two to three times
/// faster than serde, and most chats are only ever read this way) and hands the rest to
/// serde; it never decides a chat from half its bytes.
mod scanner {
    use super::*;

    /// A chat, and what decides it: id, unread, has a last message, its time.
    type Decided = (
        &'static str,
        Option<&'static str>,
        Option<i64>,
        bool,
        Option<i64>,
    );

    const PLAIN: &[Decided] = &[
        (
            r#"{"id":"1@c.us","name":"A \" }","unreadCount":2,"lastMessage":{"id":"M","body":"x \\ ]","timestamp":1722170400,"fromMe":false}}"#,
            Some("1@c.us"),
            Some(2),
            true,
            Some(1722170400),
        ),
        (
            r#"{"id":"2@c.us","_chat":{"archived":false,"unreadCount":3},"lastMessage":null}"#,
            Some("2@c.us"),
            Some(3),
            false,
            None,
        ),
        (
            r#"{"id":"3@c.us","unreadCount":null,"_chat":null,"lastMessage":{"timestamp":null}}"#,
            Some("3@c.us"),
            None,
            true,
            None,
        ),
        (
            "{ \"id\" : \"4@c.us\" ,\n \"unreadCount\" :\t-1 , \"pinned\" : [1,\"]\",{\"a\":\"}\"}] }",
            Some("4@c.us"),
            Some(-1),
            false,
            None,
        ),
        (
            r#"{"lastMessage":{"timestamp":1722170400123,"fromMe":true},"unreadCount":0,"id":"5@c.us"}"#,
            Some("5@c.us"),
            Some(0),
            true,
            Some(1722170400),
        ),
        (
            r#"{"unreadCount":123456789012345678,"_chat":{"unreadCount":9}}"#,
            None,
            Some(123456789012345678),
            false,
            None,
        ),
        (
            r#"{"_chat":{"unreadCount":-7}}"#,
            None,
            Some(-7),
            false,
            None,
        ),
        (r#"{"id":"","lastMessage":{}}"#, Some(""), None, true, None),
        ("{}", None, None, false, None),
    ];

    /// Chats the scanner leaves to serde.
    const UNUSUAL: &[&str] = &[
        r#"{"id":{"_serialized":"1@c.us"}}"#,
        r#"{"id":"1\u0040c.us"}"#,
        r#"{"unread\u0043ount":1}"#,
        r#"{"unreadCount":2.5}"#,
        r#"{"unreadCount":"2"}"#,
        r#"{"unreadCount":1234567890123456789}"#,
        r#"{"unreadCount":-}"#,
        r#"{"unreadCount":true}"#,
        r#"{"_chat":{"unreadCount":1.5}}"#,
        r#"{"_chat":5}"#,
        r#"{"lastMessage":"x"}"#,
        r#"{"lastMessage":nope}"#,
        r#"{"lastMessage":{"timestamp":1.7e9}}"#,
        r#"{"lastMessage":{"timestamp":"1722170400"}}"#,
        r#"{5:1}"#,
        r#"{"id" "x"}"#,
    ];

    #[test]
    fn plain_chats_are_decided_by_the_scanner_from_their_whole_bytes() {
        for &(chat, id, unread, has_last, timestamp) in PLAIN {
            let data = chat.as_bytes();
            let Scanned::Done(d, end) = decide(data, 0) else {
                panic!("left to serde: {chat}");
            };
            assert_eq!(end, data.len(), "{chat}");
            assert_eq!(
                (d.id.as_deref(), d.unread(), d.has_last, d.timestamp),
                (id, unread, has_last, timestamp),
                "{chat}"
            );
            for cut in 1..data.len() {
                assert!(
                    matches!(decide(&data[..cut], 0), Scanned::NeedMore),
                    "decided from {:?}",
                    &chat[..cut]
                );
            }
            // Inside a longer buffer, at an offset: the same end.
            let padded = format!("[ {chat} ,1]");
            let Scanned::Done(_, end) = decide(padded.as_bytes(), 2) else {
                panic!("{padded}");
            };
            assert_eq!(end, 2 + data.len());
        }
    }

    #[test]
    fn anything_unusual_is_left_to_serde_and_never_decided_from_a_part() {
        for chat in UNUSUAL {
            let data = chat.as_bytes();
            assert!(
                matches!(decide(data, 0), Scanned::Unusual),
                "decided: {chat}"
            );
            for cut in 1..data.len() {
                assert!(
                    !matches!(decide(&data[..cut], 0), Scanned::Done(..)),
                    "decided from {:?}",
                    &chat[..cut]
                );
            }
        }
    }

    #[test]
    fn integers_are_read_as_json_writes_them() {
        for (text, expect) in [
            ("0,", Some(0)),
            ("7}", Some(7)),
            ("-1 ", Some(-1)),
            ("-0]", Some(0)),
            ("42\n", Some(42)),
            ("999999999999999999,", Some(999_999_999_999_999_999)),
            ("-999999999999999999,", Some(-999_999_999_999_999_999)),
        ] {
            match integer(text.as_bytes(), 0) {
                Integer::Value(n, end) => {
                    assert_eq!(Some(n), expect, "{text}");
                    assert_eq!(end, text.len() - 1, "{text}");
                }
                _ => panic!("not read: {text:?}"),
            }
        }
        assert!(matches!(integer(b"null,", 0), Integer::Null(4)));
        for unusual in [
            "1.5,",
            "1e3,",
            "\"1\",",
            "-,",
            "1-2,",
            "tru,",
            "1234567890123456789,",
        ] {
            assert!(
                matches!(integer(unusual.as_bytes(), 0), Integer::Unusual),
                "{unusual}"
            );
        }
        assert!(matches!(integer(b"12", 0), Integer::NeedMore));
    }

    #[test]
    fn values_are_skipped_to_their_last_byte() {
        for value in [
            "\"a\\\"b\"",
            "\"\\\\\"",
            "[1,[2,[3]],\"]\"]",
            "{\"a\":{\"b\":\"}\"},\"c\":[]}",
            "-1.5e3",
            "true",
            "null",
            "{}",
        ] {
            let data = format!("{value},");
            assert_eq!(skip(data.as_bytes(), 0), Some(value.len()), "{value}");
            for cut in 1..value.len() {
                assert_eq!(skip(&value.as_bytes()[..cut], 0), None, "{value}[..{cut}]");
            }
            assert_eq!(string_end(b"\"x\\\"y\" ", 0), Some(6));
        }
    }

    /// A container cut by chunks resumes where the last scan stopped, even with the
    /// buffer re-based under it, and an escape cut in half is looked at again.
    #[test]
    fn a_scan_resumes_across_chunks() {
        // The second has a bracket inside a string before an escape: a scan resumed
        // anywhere but at the backslash would count it.
        let values: [&[u8]; 2] = [br#"[1,{"a":"x\"]}"},"\\",[[]]]"#, br#"[["x]y\"", 1], 2]"#];
        for value in values {
            for cut in 1..value.len() {
                let mut scan = Scan::default();
                assert_eq!(scan_value(&value[..cut], 0, &mut scan), None, "cut {cut}");
                assert!(scan.pos <= cut);
                assert_eq!(
                    scan_value(value, 0, &mut scan),
                    Some(value.len()),
                    "cut {cut}"
                );
            }
        }
        // Re-based: the first 3 bytes dropped between chunks.
        let mut st = State::default();
        st.begin(3);
        assert_eq!(scan_value(b"   [1", 3, &mut st.scan), None);
        st.shift(3);
        assert_eq!((st.element, st.scan.pos, st.scan.depth), (Some(0), 2, 1));
        assert_eq!(scan_value(b"[1]", 0, &mut st.scan), Some(3));
    }

    /// A long chat arriving in small chunks is scanned again only once its bytes have
    /// doubled: reading it stays linear, not quadratic, in its size.
    #[test]
    fn a_chat_cut_by_chunks_is_rescanned_only_when_its_bytes_have_doubled() {
        for chat in [
            format!(
                r#"{{"id":"1@c.us","name":"{}","unreadCount":1}}"#,
                "n".repeat(300)
            ),
            format!(
                r#"{{"id":{{"_serialized":"1@c.us"}},"name":"{}"}}"#,
                "n".repeat(300)
            ),
        ] {
            let mut p = StreamParser::default();
            // The chat starts 2 bytes into the first chunk: 10 of its bytes are here.
            p.feed(format!("[ {}", &chat[..10]).as_bytes()).unwrap();
            assert_eq!(p.state.scan.retry_len, 20, "{chat}");
            p.feed(&chat.as_bytes()[10..19]).unwrap();
            assert_eq!(p.state.scan.retry_len, 20, "not rescanned before 20 bytes");
            p.feed(&chat.as_bytes()[19..20]).unwrap();
            assert_eq!(p.state.scan.retry_len, 40, "rescanned at 20 bytes");
            for b in chat.as_bytes()[20..].chunks(1) {
                p.feed(b).unwrap();
            }
            // The last bytes arrived short of the next rescan: finishing reads it.
            p.feed(b"]").unwrap();
            let page = p.finish().unwrap();
            assert_eq!(page.chats.len(), 1, "{chat}");
            assert_eq!(page.chats[0].id, "1@c.us");
        }
    }

    /// What an operator reads in the log when a poll's answer is not an overview.
    #[test]
    fn each_way_a_body_is_not_an_overview_is_named() {
        for (body, says) in [
            ("42", "found a number"),
            (" -1.5 ", "found a number"),
            ("\"ok\"", "found a string"),
            ("true", "found a boolean"),
            ("false", "found a boolean"),
            ("null", "found null"),
            ("<html>", "expected value at line 1 column 1"),
            ("", "EOF while parsing"),
            ("  \n", "EOF while parsing"),
            ("42 43", "trailing characters"),
            ("[] x", "trailing characters"),
            ("[{\"id\":\"1@c.us\"}", "truncated"),
            (
                "[{\"id\":{\"_serialized\":\"1@c.us\"},\"x\":tru}]",
                "expected ident",
            ),
            (
                "[{\"id\":\"1@c.us\",\"unreadCount\":2,\"x\":tru}]",
                "expected ident",
            ),
            (
                "[1 2]",
                "expected `,` or `]` after an element in the overview, found `2`",
            ),
            (
                "[{} {}]",
                "expected `,` or `]` after an element in the overview, found `{`",
            ),
            ("[1,]", "expected an element in the overview, found `]`"),
            ("[,1]", "expected an element in the overview, found `,`"),
            ("[1,,2]", "expected an element in the overview, found `,`"),
            ("{\"error\":\"x\"}", "key \"error\" is not an overview"),
            (
                "{\"0\" 5}",
                "expected `:` after a key in the overview, found `5`",
            ),
            (
                "{5}",
                "expected a key \"0\", \"1\", … in the overview, found `5`",
            ),
            (
                "{\"0\":{} \"1\":{}}",
                "expected `,` or `}` after an element in the overview, found `\"`",
            ),
            (
                "{\"0\":{},}",
                "expected a key \"0\", \"1\", … in the overview, found `}`",
            ),
            (
                "{,\"0\":{}}",
                "expected a key \"0\", \"1\", … in the overview, found `,`",
            ),
            (
                "{\"0\":}",
                "expected an element after its key in the overview, found `}`",
            ),
            (
                "{\"0\":,\"1\":{}}",
                "expected an element after its key in the overview, found `,`",
            ),
            ("[{}\u{7}]", "found `\\x07`"),
        ] {
            let err = parse(body.as_bytes()).expect_err(body).to_string();
            assert!(err.contains(says), "{body:?}: {err}");
            assert!(err.starts_with("the response is not JSON an overview can be read from"));
        }
    }
}
