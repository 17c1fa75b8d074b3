//! The real binary delivering to real receivers: digests, tiers, resolved notices and
//! `test-notify`.

mod common;

use common::*;

fn channels(wawp: &FakeWawp, slack_url: &str, smtp_port: u16) -> Setup {
    Setup::new(wawp)
        .channel(Channel::slack("oncall", slack_url))
        .channel(Channel::email("leads", smtp_port))
}

#[test]
fn three_hundred_breaching_chats_are_one_slack_message_and_one_email() {
    let (wawp, slack, smtp) = (FakeWawp::start(), Receiver::start(), Smtp::start());
    let t = now();
    wawp.chats(
        (0..300)
            .map(|i| {
                chat(
                    &format!("2010{i:08}@c.us"),
                    &format!("Customer {i}"),
                    1,
                    "hello?",
                    t - 3 * H,
                )
            })
            .collect(),
    );
    let env = Env::new(channels(&wawp, &slack.url, smtp.port).wawp("page_size", "0"));
    let run = env.run(&["once"]);
    assert_eq!(run.code, 0, "{run}");
    let posts = slack.accepted();
    assert_eq!(posts.len(), 1, "one Slack message");
    assert!(
        posts[0]["text"]
            .as_str()
            .unwrap()
            .contains("300 chats waiting over 2h (support)")
    );
    assert!(posts[0].to_string().contains("+280 more"));
    let mails = smtp.mails();
    assert_eq!(mails.len(), 1, "one email");
    assert!(
        mails[0]
            .data
            .contains("Subject: [inbox-sla] 300 chats waiting over 2h (support)"),
        "{}",
        mails[0].data
    );
    assert!(
        mails[0].data.contains("Customer 299"),
        "the email lists every chat"
    );
}

#[test]
fn tiers_go_to_their_own_channels_and_resolved_goes_to_everyone_who_was_told() {
    let (wawp, slack, smtp) = (FakeWawp::start(), Receiver::start(), Smtp::start());
    let t = now();
    let jid = "201001234567@c.us";
    wawp.chats(vec![chat(jid, "Amina", 1, "hi", t - 3 * H)]);
    let env = Env::new(
        channels(&wawp, &slack.url, smtp.port)
            .tier("2h", &["oncall"])
            .tier("6h", &["leads"]),
    );
    assert_eq!(env.run(&["once"]).code, 0);
    assert_eq!(slack.accepted().len(), 1);
    assert_eq!(smtp.mails().len(), 0, "tier 2 is not due");

    // Read: resolved, and only Slack was told of the firing.
    wawp.chats(vec![chat(jid, "Amina", 0, "hi", t - 3 * H)]);
    assert_eq!(env.run(&["once"]).code, 0);
    let resolved = slack.accepted();
    assert_eq!(resolved.len(), 2);
    assert!(
        resolved[1]["text"]
            .as_str()
            .unwrap()
            .contains("1 chat no longer waiting"),
        "{}",
        resolved[1]
    );
    assert_eq!(
        smtp.mails().len(),
        0,
        "leads were never told, so they hear no resolution"
    );

    // A new episode first seen 7h after its message crosses both tiers at once.
    wawp.chats(vec![chat(jid, "Amina", 2, "again", t - 7 * H)]);
    assert_eq!(env.run(&["once"]).code, 0);
    assert_eq!(slack.accepted().len(), 3, "tier 1 of the new episode");
    let mails = smtp.mails();
    assert_eq!(mails.len(), 1, "tier 2 crossed in the same cycle fires too");
    assert!(
        mails[0]
            .data
            .contains("Subject: [inbox-sla] 1 chat waiting over 6h (support)"),
        "{}",
        mails[0].data
    );
}

#[test]
fn a_failed_delivery_exits_1_stays_queued_and_goes_out_on_the_next_run() {
    let (wawp, slack) = (FakeWawp::start(), Receiver::start());
    slack.script(&[Answer::Status(500)]);
    let t = now();
    wawp.chats(vec![chat("201001234567@c.us", "Amina", 1, "hi", t - 3 * H)]);
    let env = Env::new(Setup::new(&wawp).channel(Channel::slack("oncall", &slack.url)));
    let first = env.run(&["once"]);
    assert_eq!(first.code, 1, "{first}");
    assert!(first.stderr.contains("500"), "{first}");
    assert_eq!(outbox_count(&env.alerts(), "pending"), 1);
    // The retry is due 1s later (the schedule itself is tested on a hand-set clock): run
    // until it goes out, within a deadline.
    let mut runs = 0;
    assert!(wait_for(PATIENCE, || {
        runs += 1;
        let run = env.run(&["once"]);
        assert_eq!(run.code, 0, "{run}");
        !slack.accepted().is_empty()
    }));
    assert!(runs >= 1);
    assert_eq!(slack.accepted().len(), 1, "delivered once, by a later run");
    assert_eq!(
        slack.posts().len(),
        2,
        "one failed attempt, one delivered: nothing early, nothing twice"
    );
    assert_eq!(outbox_count(&env.alerts(), "pending"), 0);
}

#[test]
fn test_notify_reports_each_channel_and_fails_when_one_does() {
    let (wawp, slack, smtp, broken) = (
        FakeWawp::start(),
        Receiver::start(),
        Smtp::start(),
        Receiver::start(),
    );
    broken.script(&[Answer::Status(404)]);
    let env = Env::new(
        channels(&wawp, &slack.url, smtp.port).channel(Channel::webhook("pager", &broken.url)),
    );
    let run = env.run(&["test-notify", "--channel", "oncall"]);
    assert_eq!(run.code, 0, "{run}");
    assert!(
        run.stdout
            .contains("oncall (slack): delivered; the receiver said: ok"),
        "{run}"
    );
    let post = &slack.accepted()[0];
    assert!(post.to_string().contains("TEST"), "{post}");

    let run = env.run(&["test-notify"]);
    assert_eq!(run.code, 1, "{run}");
    assert!(run.stdout.contains("leads (email): delivered"), "{run}");
    assert!(
        run.stdout
            .contains("pager (webhook): FAILED: the receiver answered 404"),
        "{run}"
    );
    assert!(
        smtp.mails()[0]
            .data
            .contains("Subject: [inbox-sla] test message from inbox-sla"),
        "{}",
        smtp.mails()[0].data
    );
    assert_eq!(broken.posts()[0]["status"], "test");

    let run = env.run(&["test-notify", "--channel", "nope"]);
    assert_eq!(run.code, 2, "{run}");
    assert!(run.stderr.contains("no channel is named \"nope\""), "{run}");
}
