//! A repeated overview (docs/spec.md section 9, "an unchanged overview"): a poll whose
//! pages are byte for byte those of a poll that changed nothing is compared, not scanned;
//! anything else (a page that changed, a write to the store, a tier falling due) is
//! scanned and judged as always. Driven through `cycle::run` with a real SQLite store and
//! an engine that pages by `limit` and `offset`, counting its requests.

use bytes::Bytes;
use inbox_sla::config::{Config, Location, Secrets};
use inbox_sla::cycle::{self, Summary};
use inbox_sla::store::Store;
use inbox_sla::wawp::{Body, BoxFuture, Response, Transport, WawpClient};
use serde_json::{Value, json};
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

/// 2026-12-05 09:00:00 UTC.
const T0: i64 = 1_796_461_200;

/// An engine that serves one inbox in pages, as Wawp does with `limit` and `offset`.
#[derive(Clone, Default)]
struct Paged {
    chats: Arc<Mutex<Vec<Value>>>,
    requests: Arc<AtomicUsize>,
}

impl Transport for Paged {
    fn get<'a>(&'a self, url: &'a reqwest::Url) -> BoxFuture<'a, Result<Response, String>> {
        Box::pin(async move {
            self.requests.fetch_add(1, Ordering::SeqCst);
            let q = |k: &str| {
                url.query_pairs()
                    .find(|(n, _)| n == k)
                    .and_then(|(_, v)| v.parse::<usize>().ok())
            };
            let chats = self.chats.lock().unwrap().clone();
            let offset = q("offset").unwrap_or(0).min(chats.len());
            let end = q("limit").map_or(chats.len(), |l| (offset + l).min(chats.len()));
            let body = Value::Array(chats[offset..end].to_vec()).to_string();
            Ok(Response {
                status: reqwest::StatusCode::OK,
                content_length: Some(body.len() as u64),
                body: Body::Chunks(vec![Ok(Bytes::from(body))].into()),
            })
        })
    }
}

fn waiting(id: &str, at: i64) -> Value {
    json!({"id": id, "unreadCount": 1,
           "lastMessage": {"id": format!("m-{at}"), "body": "hello?", "timestamp": at, "fromMe": false}})
}

fn answered(id: &str, at: i64) -> Value {
    json!({"id": id, "unreadCount": 0,
           "lastMessage": {"id": format!("r-{at}"), "body": "done", "timestamp": at, "fromMe": true}})
}

struct Setup {
    engine: Paged,
    client: WawpClient,
    store: Store,
    config: Arc<Config>,
    _dir: tempfile::TempDir,
}

/// Five chats in pages of two (three requests a poll), a tier at 15 minutes to the
/// console, groups not watched; `chats` as the engine first answers.
async fn setup(chats: Vec<Value>) -> Setup {
    let dir = tempfile::tempdir().unwrap();
    let store_path = dir.path().join("state.db");
    let text = format!(
        "[wawp]\nbase_url = \"https://wawp.invalid\"\npage_size = 2\n\n\
         [store]\npath = \"{}\"\n\n\
         [sla]\ninclude_groups = false\n\n\
         [[channel]]\nname = \"ops\"\ntype = \"console\"\n\n\
         [[escalation]]\nafter = \"15m\"\nnotify = [\"ops\"]\n\n\
         [[instance]]\nname = \"support\"\ninstance_id = \"id-1\"\naccess_token = \"secret-token\"\n",
        store_path.display()
    );
    let config = Config::parse(&text, Path::new("config.toml"), Secrets::All).unwrap();
    let store = Store::open(&Location::Sqlite(store_path)).await.unwrap();
    let engine = Paged::default();
    *engine.chats.lock().unwrap() = chats;
    let client = WawpClient::with_transport(&config.wawp, Arc::new(engine.clone()));
    Setup {
        engine,
        client,
        store,
        config: Arc::new(config),
        _dir: dir,
    }
}

impl Setup {
    /// One cycle at `at`; how many requests it made.
    async fn poll(&self, at: i64) -> (Summary, usize) {
        let before = self.engine.requests.load(Ordering::SeqCst);
        let summary = cycle::run(
            &self.client,
            &self.store,
            &self.config,
            &self.config.instances[0],
            at,
            None,
            &|| {},
        )
        .await
        .unwrap();
        (
            summary,
            self.engine.requests.load(Ordering::SeqCst) - before,
        )
    }
}

/// Polls at T0 (episodes open), T0 + 60 (changes nothing: a rest is left) and T0 + 120,
/// which must rest.
async fn resting(chats: Vec<Value>) -> Setup {
    let s = setup(chats).await;
    s.poll(T0).await;
    s.poll(T0 + 60).await;
    assert!(s.poll(T0 + 120).await.0.rested, "the repeat rests");
    s
}

fn inbox() -> Vec<Value> {
    vec![
        answered("1@c.us", T0 - 900),
        waiting("2@c.us", T0 - 60),
        // A group the policy does not watch, with unread messages: kept by the scan,
        // judged by its bytes alone, so it does not stop the overview from resting.
        waiting("120363000000000003@g.us", T0 - 800),
        answered("4@c.us", T0 - 700),
        answered("5@c.us", T0 - 600),
    ]
}

#[tokio::test]
async fn a_repeated_overview_rests_until_a_tier_falls_due() {
    let s = setup(inbox()).await;
    let (first, _) = s.poll(T0).await;
    assert!(!first.rested && first.rows_written > 0, "the episode opens");
    let (second, _) = s.poll(T0 + 60).await;
    assert!(
        !second.rested,
        "the first quiet poll is scanned: {second:?}"
    );
    for minute in 2..14 {
        let (rest, requests) = s.poll(T0 + minute * 60).await;
        assert!(rest.rested, "minute {minute}: the repeat is not scanned");
        assert_eq!(requests, 3, "every page is still asked for");
        assert_eq!((rest.chats, rest.waiting, rest.breached), (5, 1, 0));
        assert_eq!(rest.enqueued, 0);
    }
    // The customer has waited 15 minutes (since T0 - 60): the tier is due.
    let (due, _) = s.poll(T0 + 14 * 60).await;
    assert!(!due.rested, "a tier falling due ends the rest");
    assert_eq!(due.escalated, 1, "the 15-minute tier is paged");
    assert_eq!(due.breached, 1);
}

#[tokio::test]
async fn a_page_that_changed_is_scanned_with_the_pages_held_before_it() {
    let s = resting(inbox()).await;
    // A customer writes in chat 4 (page two): pages one was held unscanned, and must
    // still count (its waiting chat stays waiting, not absent).
    s.engine.chats.lock().unwrap()[3] = waiting("4@c.us", T0 + 150);
    let (changed, requests) = s.poll(T0 + 180).await;
    assert!(!changed.rested);
    assert_eq!(requests, 3);
    assert_eq!((changed.chats, changed.waiting), (5, 2), "{changed:?}");
    assert!(changed.rows_written > 0, "chat 4's episode opens");
    // The last page changes (chat 5 answered again, later): found on the third request.
    s.poll(T0 + 240).await;
    assert!(s.poll(T0 + 300).await.0.rested);
    s.engine.chats.lock().unwrap()[4] = waiting("5@c.us", T0 + 310);
    let (last, _) = s.poll(T0 + 360).await;
    assert!(!last.rested);
    assert_eq!((last.chats, last.waiting), (5, 3), "{last:?}");
    // An inbox that grew a page: the old pages matched, the new one is asked for.
    s.poll(T0 + 420).await;
    assert!(s.poll(T0 + 480).await.0.rested);
    s.engine
        .chats
        .lock()
        .unwrap()
        .push(waiting("6@c.us", T0 + 490));
    let (grown, requests) = s.poll(T0 + 540).await;
    assert!(!grown.rested);
    assert_eq!(
        requests, 4,
        "pages of 2, 2, 2 (the third now full) and an empty one"
    );
    assert_eq!((grown.chats, grown.waiting), (6, 4), "{grown:?}");
}

#[tokio::test]
async fn an_acknowledgement_between_repeats_is_told_at_the_next_poll() {
    let s = setup(vec![waiting("2@c.us", T0 - 1000)]).await;
    let (paged, _) = s.poll(T0).await;
    assert_eq!(paged.escalated, 1, "waiting 16 minutes: the tier fires");
    s.poll(T0 + 60).await;
    assert!(s.poll(T0 + 120).await.0.rested);
    inbox_sla::act::acknowledge(
        &s.store,
        &s.config.policy,
        None,
        "2@c.us",
        "amina",
        None,
        T0 + 150,
    )
    .await
    .unwrap();
    let (told, _) = s.poll(T0 + 180).await;
    assert!(!told.rested, "the store moved: the repeat is judged again");
    assert_eq!(
        told.enqueued, 1,
        "ops, who was paged, hears the acknowledgement"
    );
    // A mute moves the store too: the poll after it is judged, then rests again.
    s.poll(T0 + 240).await;
    assert!(s.poll(T0 + 300).await.0.rested);
    s.store
        .mute("2@c.us", T0 + 7200, Some("vip"), T0 + 310)
        .await
        .unwrap();
    assert!(!s.poll(T0 + 360).await.0.rested);
}

#[tokio::test]
async fn a_page_that_changed_without_a_write_rests_at_the_next_repeat() {
    let s = resting(inbox()).await;
    // Chat 5 (the last page), answered, is answered again later: the bytes change, and
    // nothing is written. That poll is scanned; the repeat of its bytes then rests.
    s.engine.chats.lock().unwrap()[4] = answered("5@c.us", T0 + 130);
    let (changed, _) = s.poll(T0 + 180).await;
    assert!(!changed.rested, "the changed page is scanned");
    assert_eq!(changed.rows_written, 0, "an answered chat changes nothing");
    let (repeat, _) = s.poll(T0 + 240).await;
    assert!(
        repeat.rested,
        "the new bytes are what the last poll left: {repeat:?}"
    );
    assert_eq!((repeat.chats, repeat.waiting), (5, 1));
}
