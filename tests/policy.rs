//! Policies as support teams run them, through the real binary: business hours and
//! holidays, rules (24/7 VIPs with their own tier, ignored groups), and mutes.

mod common;

use common::*;

#[test]
fn rules_business_hours_and_mutes_decide_who_hears_about_which_chat() {
    let (wawp, oncall, pager) = (FakeWawp::start(), Receiver::start(), Receiver::start());
    let t = now();
    wawp.chats(vec![
        chat("201011111111@c.us", "VIP Nadia", 1, "urgent", t - 20 * 60),
        chat("201022222222@c.us", "Regular Rami", 1, "hello", t - 3 * H),
        chat(
            "120363000000000001@g.us",
            "Warehouse team",
            4,
            "truck?",
            t - 5 * H,
        ),
        chat(
            "201933333333@c.us",
            "Night Shift Noor",
            1,
            "still there?",
            t - 3 * H,
        ),
    ]);
    // The business is on holiday from two days ago to tomorrow (UTC): office-hours chats
    // accumulate no SLA time at all, whatever the time of day the test runs.
    let day = |offset: i64| {
        chrono::DateTime::from_timestamp(t + offset * 86400, 0)
            .unwrap()
            .format("%Y-%m-%d")
            .to_string()
    };
    let holidays = (-2..=1)
        .map(|d| format!("\"{}\"", day(d)))
        .collect::<Vec<_>>()
        .join(", ");
    let env = Env::new(
        Setup::new(&wawp)
            .set("sla", "threshold", "\"2h\"")
            .tier("2h", &["oncall"])
            .channel(Channel::slack("oncall", &oncall.url))
            .channel(Channel::webhook("pager", &pager.url))
            .raw(&format!(
                r#"[sla.business_hours]
timezone = "UTC"
mon = "00:00-24:00"
tue = "00:00-24:00"
wed = "00:00-24:00"
thu = "00:00-24:00"
fri = "00:00-24:00"
sat = "00:00-24:00"
sun = "00:00-24:00"
holidays = [{holidays}]

[[rule]]
match = ["name:/^VIP /"]
business_hours = false
escalation = [{{ after = "15m", notify = ["pager"] }}]

[[rule]]
match = ["*@g.us"]
ignore = true

[[rule]]
match = ["2019*@c.us"]
business_hours = false
"#
            )),
    );

    let muted = env.run(&[
        "mute",
        "201933333333@c.us",
        "--for",
        "4h",
        "--reason",
        "night shift handles it",
    ]);
    assert_eq!(muted.code, 0, "{muted}");
    assert!(
        muted.stdout.contains("Muted 201933333333@c.us until"),
        "{muted}"
    );

    let run = env.run(&["once"]);
    assert_eq!(run.code, 0, "{run}");
    let paged = pager.accepted();
    assert_eq!(paged.len(), 1, "{paged:?}");
    let ids: Vec<&str> = paged[0]["chats"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["id"].as_str().unwrap())
        .collect();
    assert_eq!(
        ids,
        vec!["201011111111@c.us"],
        "only the VIP, on its 15m tier"
    );
    assert_eq!(paged[0]["tier"]["after_seconds"], 900);
    assert!(
        oncall.accepted().is_empty(),
        "holiday: no business time; the 24/7 chat is muted"
    );

    let json = env.alerts();
    assert_eq!(json["mutes"][0]["id"], "201933333333@c.us", "{json}");
    assert_eq!(json["mutes"][0]["reason"], "night shift handles it");
    let tracked: Vec<&str> = json["episodes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["id"].as_str().unwrap())
        .collect();
    assert!(
        tracked.contains(&"201933333333@c.us"),
        "a muted chat is still tracked: {json}"
    );
    assert!(
        !tracked.contains(&"120363000000000001@g.us"),
        "the ignored group is not tracked"
    );
    let noor = json["episodes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["id"] == "201933333333@c.us")
        .unwrap();
    assert_eq!(noor["muted"], true);
    let alerts = env.run(&["alerts", "--all"]);
    assert!(alerts.stdout.contains("Mutes: 1"), "{alerts}");
    assert!(
        alerts.stdout.contains("reason: night shift handles it"),
        "{alerts}"
    );
    assert!(alerts.stdout.contains("(muted)"), "{alerts}");

    let unmuted = env.run(&["unmute", "201933333333@c.us"]);
    assert!(unmuted.stdout.contains("Unmuted"), "{unmuted}");
    assert_eq!(env.run(&["once"]).code, 0);
    let told = oncall.accepted();
    assert_eq!(
        told.len(),
        1,
        "the unmuted chat escalates at the next cycle"
    );
    assert!(told[0].to_string().contains("Night Shift Noor"));
    assert!(!told[0].to_string().contains("Regular Rami"));
    assert_eq!(pager.accepted().len(), 1, "the VIP is not paged twice");

    let bad = env.run(&["mute", "not-a-jid", "--for", "4h"]);
    assert_eq!(bad.code, 2, "{bad}");
    let bad = env.run(&["mute", "1@c.us", "--for", "soon"]);
    assert_eq!(bad.code, 2, "{bad}");
    assert!(bad.stderr.contains("\"soon\" is not a duration"), "{bad}");
    for absurd in ["300000000000y", "11y"] {
        let bad = env.run(&["mute", "1@c.us", "--for", absurd]);
        assert_eq!(bad.code, 2, "{bad}");
        assert!(
            bad.stderr.contains("--for") && bad.stderr.contains(absurd),
            "{bad}"
        );
        assert!(!bad.stdout.contains("until"), "{bad}");
    }
}
