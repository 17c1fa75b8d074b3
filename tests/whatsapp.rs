//! What WhatsApp knows beyond the overview (PRODUCT.md sections 2, 4 and 7), through the
//! real binary against the loopback Wawp: an unlinked number is a blind monitor, the clock
//! starts at the first unanswered message, and webhooks ring a doorbell that makes the
//! instance poll at once. Every wait is a deadline loop, never a fixed sleep, except
//! where a test must show that something does *not* happen.

mod common;

use common::*;
use serde_json::Value;

const AMINA: &str = "201001234567@c.us";

fn slack(wawp: &FakeWawp, rx: &Receiver) -> Setup {
    Setup::new(wawp)
        .poll("1s")
        .channel(Channel::slack("oncall", &rx.url))
}

fn episode<'a>(alerts: &'a Value, jid: &str) -> Option<&'a Value> {
    alerts["episodes"]
        .as_array()
        .and_then(|e| e.iter().find(|e| e["id"] == jid))
}

fn metric(base: &str, name: &str) -> Option<String> {
    let (_, text) = get(&format!("{base}/metrics"));
    text.lines()
        .find(|l| l.starts_with(name) && !l.starts_with('#'))
        .map(str::to_owned)
}

// --------------------------------------------------------------------- session health

/// Section 7: the overview keeps answering the old list while the phone is unlinked. The
/// number goes blind after `blind_after`, naming the state and what to do; nothing
/// resolves meanwhile (the chat looks answered in the stale list); once the session is
/// WORKING again, one `recovered`, and only then does the chat resolve.
#[test]
fn an_unlinked_number_whose_overview_still_answers_goes_blind_then_recovers() {
    let (wawp, rx) = (FakeWawp::start(), Receiver::start());
    wawp.session("WORKING");
    wawp.chats(vec![breached_chat()]);
    let env = Env::new(slack(&wawp, &rx).set("sla", "blind_after", "\"2s\"").http());
    let d = env.start();
    assert!(
        wait_for(PATIENCE, || rx.accepted().len() == 1),
        "{}",
        d.log()
    );
    assert!(
        slack_texts(&rx)[0].contains("waiting over 2h"),
        "{:?}",
        slack_texts(&rx)
    );
    let base = d.http_base();
    assert!(
        wait_for(PATIENCE, || metric(&base, "inbox_sla_session_working")
            .is_some_and(
                |l| l.contains("wawp_instance=\"support\"") && l.ends_with(" 1")
            )),
        "{:?}",
        metric(&base, "inbox_sla_session_working")
    );

    // Unlinked: the engine still serves its last list, in which the chat now even looks
    // read; no resolved notice may come of it.
    wawp.session("SCAN_QR_CODE");
    wawp.chats(vec![answered(AMINA, "Amina", "on it", now() - 60)]);
    assert!(
        wait_for(PATIENCE, || rx.accepted().len() == 2),
        "{}",
        d.log()
    );
    let blind = rx.accepted()[1].to_string();
    assert_eq!(
        rx.accepted()[1]["text"]
            .as_str()
            .map(|t| t.contains("blind")),
        Some(true),
        "{blind}"
    );
    assert!(
        blind.contains("SCAN_QR_CODE"),
        "the state is named: {blind}"
    );
    assert!(
        blind.contains("scan the QR code in Wawp"),
        "what to do: {blind}"
    );
    assert!(
        wait_for(PATIENCE, || metric(&base, "inbox_sla_session_working")
            .is_some_and(|l| l.ends_with(" 0"))),
        "{:?}",
        metric(&base, "inbox_sla_session_working")
    );
    let alerts = env.alerts();
    let source = &alerts["sources"][0];
    assert_eq!(source["session"], "SCAN_QR_CODE", "{alerts}");
    assert!(source["session_since"].as_i64().is_some(), "{alerts}");
    assert!(episode(&alerts, AMINA).is_some(), "still open: {alerts}");
    let (_, page) = get(&format!("{base}/"));
    assert!(page.contains("WhatsApp session SCAN_QR_CODE for"), "{page}");
    let text = env.run(&["alerts"]);
    assert!(
        text.stdout
            .contains("WhatsApp session SCAN_QR_CODE (not WORKING) since"),
        "{text}"
    );
    let polls = wawp.polls();
    assert!(wait_for(PATIENCE, || wawp.polls() >= polls + 3));
    assert_eq!(
        rx.accepted().len(),
        2,
        "one blind alert; nothing resolved: {:?}",
        slack_texts(&rx)
    );

    wawp.session("WORKING");
    assert!(
        wait_for(PATIENCE, || rx.accepted().len() == 4),
        "{}",
        d.log()
    );
    // The recovered notice and the (now true) resolved one are of different subjects:
    // neither waits for the other.
    let texts = slack_texts(&rx);
    let posts = rx.accepted();
    let recovered = (2..4).find(|&i| texts[i].contains("monitor recovered"));
    let recovered = recovered.unwrap_or_else(|| panic!("{texts:?}"));
    assert!(
        posts[recovered].to_string().contains("WORKING again"),
        "{}",
        posts[recovered]
    );
    assert!(
        texts[5 - recovered].contains("no longer waiting"),
        "{texts:?}"
    );
    assert!(d.log().contains("SCAN_QR_CODE"), "{}", d.log());
}

/// Section 4: an engine without `/v2/session/info` (404) is said once and not asked
/// again; `session_check = false` never asks.
#[test]
fn an_engine_without_the_session_endpoint_is_said_once_and_session_check_false_never_asks() {
    let (wawp, rx) = (FakeWawp::start(), Receiver::start());
    let env = Env::new(slack(&wawp, &rx));
    let d = env.start();
    assert!(wait_for(PATIENCE, || wawp.polls() >= 4), "{}", d.log());
    assert_eq!(wawp.session_queries(), 1, "asked once: {}", d.log());
    assert_eq!(
        d.log().matches("does not serve /v2/session/info").count(),
        1,
        "{}",
        d.log()
    );
    drop(d);

    let wawp = FakeWawp::start();
    wawp.session("SCAN_QR_CODE");
    let env = Env::new(slack(&wawp, &rx).wawp("session_check", "false"));
    let run = env.run(&["once"]);
    assert_eq!(run.code, 0, "{run}");
    assert_eq!(wawp.session_queries(), 0);
}

/// `once` with a session that is not WORKING fails the poll (exit 1) and says why.
#[test]
fn once_says_the_session_is_not_working() {
    let (wawp, rx) = (FakeWawp::start(), Receiver::start());
    wawp.session("STOPPED");
    wawp.chats(vec![breached_chat()]);
    let env = Env::new(slack(&wawp, &rx));
    let run = env.run(&["once"]);
    assert_eq!(run.code, 1, "{run}");
    assert!(run.stderr.contains("STOPPED, not WORKING"), "{run}");
    assert!(rx.posts().is_empty(), "a stale list is not judged");
}
