//! A realistic synthetic overview, shared by the benchmarks: about 30% unread, 1%
//! breached, groups, media, `@lid` ids, long and non-Latin names, WAHA's `_chat`.

const NAMES: [&str; 8] = [
    "Amina Hassan",
    "محمد عبد الرحمن",
    "王小明",
    "Σοφία Παπαδοπούλου",
    "VIP Nadia — Premium account, Alexandria branch, do not keep waiting",
    "Олег Иванов",
    "José María Fernández de la Cruz",
    "🌟 Fatma 🌟",
];
const BODIES: [&str; 6] = [
    "Hi, my order #1042 hasn't arrived yet, can you check?",
    "📷 Photo",
    "مرحبا، أريد الاستفسار عن الفاتورة الأخيرة من فضلك",
    "📄 Document",
    "hello??",
    "Is the store open on Friday? I would like to pick up the parcel before noon if possible.",
];

/// A realistic overview: a JSON array of `n` chats.
pub fn overview_body(n: usize, now: i64) -> Vec<u8> {
    let mut out = String::with_capacity(n * 330);
    out.push('[');
    for i in 0..n {
        if i > 0 {
            out.push(',');
        }
        let id = match i % 10 {
            0 => format!("1203630{i:011}@g.us"),
            1 => format!("{:015}@lid", 100_000_000_000_000u64 + i as u64),
            _ => format!("20{:010}@c.us", 1_000_000_000u64 + i as u64),
        };
        // 1% breached (waiting 3h), 29% waiting under the SLA, the rest read or answered.
        let (unread, age, from_me) = match i % 100 {
            0 => (3, 3 * 3600, false),
            1..=29 => (1 + (i % 4) as i64, 60 + (i % 5000) as i64, false),
            30..=64 => (0, 86_400 + i as i64, true),
            _ => (0, 7200 + i as i64, false),
        };
        let body = BODIES[i % BODIES.len()];
        let media = body.starts_with('📷') || body.starts_with('📄');
        let name = serde_json::to_string(NAMES[i % NAMES.len()]).unwrap();
        let text = serde_json::to_string(body).unwrap();
        let extra = if i % 3 == 0 {
            format!(
                r#","_chat":{{"unreadCount":{unread},"archived":false,"isGroup":{},"pinned":false}}"#,
                i % 10 == 0
            )
        } else {
            String::new()
        };
        out.push_str(&format!(
            r#"{{"id":"{id}","name":{name},"unreadCount":{unread},"timestamp":{ts},"lastMessage":{{"id":"true_{id}_3EB0{i:012X}","body":{text},"timestamp":{ts},"fromMe":{from_me},"hasMedia":{media},"ack":2}}{extra}}}"#,
            ts = now - age,
        ));
    }
    out.push(']');
    out.into_bytes()
}

/// The benchmark's configuration: one instance on `base_url`, the whole overview in one
/// response, a console channel. `extra` is appended (more tables).
#[allow(dead_code)] // the fleet bench writes its own, many-instance config
pub fn config(base_url: &str, store: &std::path::Path, extra: &str) -> String {
    format!(
        r#"[wawp]
base_url = "{base_url}"
page_size = 0
max_chats = 1000000
max_response_bytes = 1073741824

[[instance]]
name = "bench"
instance_id = "1"
access_token = "bench-token"

[store]
path = "{}"

[[channel]]
name = "console"
type = "console"
{extra}"#,
        store.display()
    )
}

/// What the engine answers to `POST|GET /v2/session/info`: a working session.
#[allow(dead_code)] // not every bench asks
pub const SESSION_WORKING: &str = r#"{"status":"success","data":{"name":"default","status":"WORKING","engine":{"engine":"WEBJS"},"me":{"id":"201000000000@c.us","pushName":"Support"}}}"#;

/// What the engine answers to `GET /v2/chats/messages` for `chat` with `limit`, newest
/// first: inbound messages a minute apart, the newest a minute before `now`, and, last,
/// the agent's reply before them. (A start moves back a few minutes at most: the inbox
/// stays as [`overview_body`] made it, 1 % breached.)
#[allow(dead_code)] // not every bench asks
pub fn messages_body(chat: &str, limit: usize, now: i64) -> String {
    let age = 60;
    let mut out = String::from("[");
    for k in 0..limit {
        if k > 0 {
            out.push(',');
        }
        let from_me = k + 1 == limit && limit > 1;
        out.push_str(&format!(
            r#"{{"id":"{from_me}_{chat}_3EB1{k:08X}","timestamp":{ts},"from":"{chat}","fromMe":{from_me},"body":"message {k}","hasMedia":false,"ack":2}}"#,
            ts = now - age - 60 * k as i64,
        ));
    }
    out.push(']');
    out
}
