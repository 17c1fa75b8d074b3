//! Fault injection with the real binary: sources that drip, cut or lie; a store that
//! cannot be written; and `kill -9` at random points of cycles and deliveries, with the
//! invariants checked after every run: no episode lost, no notification lost, nothing sent
//! twice beyond the one message a crash may repeat.

mod common;

use common::*;
use serde_json::Value;
use std::collections::HashSet;
use std::io::Write;
use std::time::Duration;

fn config_for_port(env: &mut Env, port: u16, timeout: &str) {
    env.update(|s| {
        s.wawp("base_url", &toml_str(&format!("http://127.0.0.1:{port}")))
            .wawp("request_timeout", &toml_str(timeout))
    });
}

#[test]
fn a_source_that_drips_times_out_and_one_that_hangs_up_mid_body_is_an_error() {
    let wawp = FakeWawp::start();
    let mut env = Env::new(Setup::new(&wawp).channel(Channel::console()));

    let drip = raw_server(|mut s| {
        read_request_head(&mut s);
        let body =
            br#"[{"id": "201001234567@c.us", "unreadCount": 1, "lastMessage": {"timestamp": 1}}]"#;
        let _ = write!(
            s,
            "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
            body.len()
        );
        for b in body {
            if s.write_all(&[*b]).is_err() {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    });
    config_for_port(&mut env, drip, "1s");
    let run = env.run(&["once"]);
    assert_eq!(run.code, 1, "{run}");
    assert!(run.stderr.contains("timed out"), "{run}");

    let cut = raw_server(|mut s| {
        read_request_head(&mut s);
        let _ = s.write_all(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 5000\r\n\r\n[{\"id\": \"2010");
    });
    config_for_port(&mut env, cut, "5s");
    let run = env.run(&["once"]);
    assert_eq!(run.code, 1, "{run}");
    assert!(run.stderr.contains("instance \"support\""), "{run}");
    assert_eq!(
        env.alerts()["episodes"],
        serde_json::json!([]),
        "nothing recorded from a cut body"
    );
}

#[test]
fn a_read_only_store_is_a_clear_error_and_loses_no_notification() {
    if !is_root() {
        skip(
            "a_read_only_store: needs root to run the binary as another user",
            false,
        );
        return;
    }
    let (wawp, slack) = (FakeWawp::start(), Receiver::start());
    slack.script(&[Answer::Status(500)]);
    wawp.chats(vec![breached_chat()]);
    let env = Env::new(Setup::new(&wawp).channel(Channel::slack("oncall", &slack.url)));
    // Run as nobody, so that file modes bind (root ignores them).
    let chown = |mode: &str| {
        std::process::Command::new("chown")
            .args(["-R", "nobody:nogroup"])
            .arg(env.dir.path())
            .status()
            .unwrap();
        std::process::Command::new("chmod")
            .arg(mode)
            .arg(env.dir.path())
            .status()
            .unwrap();
    };
    let as_nobody = |args: &[&str]| {
        let mut cmd = std::process::Command::new("setpriv");
        cmd.args(["--reuid=nobody", "--regid=nogroup", "--clear-groups", "--"])
            .arg(env!("CARGO_BIN_EXE_inbox-sla"))
            .arg("--config")
            .arg(&env.config)
            .args(args)
            .env_remove("RUST_LOG");
        Run::from(cmd.output().unwrap())
    };
    chown("0755");
    let first = as_nobody(&["once"]);
    assert_eq!(first.code, 1, "the 500 fails the delivery:\n{first}");
    assert!(first.stderr.contains("500"), "{first}");

    // Now the directory and the store become read-only.
    std::process::Command::new("chmod")
        .args(["0444"])
        .arg(env.store())
        .status()
        .unwrap();
    std::process::Command::new("chmod")
        .args(["0555"])
        .arg(env.dir.path())
        .status()
        .unwrap();
    wawp.chats(vec![
        breached_chat(),
        chat("201009999999@c.us", "Omar", 1, "hi", now() - 4 * H),
    ]);
    let ro = as_nobody(&["once"]);
    assert_eq!(ro.code, 1, "{ro}");
    assert!(
        ro.stderr.contains("state.db") || ro.stderr.contains("readonly"),
        "{ro}"
    );

    // Writable again: the pending notification goes out, and Omar is escalated now.
    chown("0755");
    std::process::Command::new("chmod")
        .args(["0644"])
        .arg(env.store())
        .status()
        .unwrap();
    // The first retry is due 1s after the failure: run until both are out, within a deadline.
    assert!(wait_for(PATIENCE, || {
        let back = as_nobody(&["once"]);
        assert_eq!(back.code, 0, "{back}");
        slack.accepted().len() == 2
    }));
    let texts: Vec<String> = slack.accepted().iter().map(|p| p.to_string()).collect();
    assert_eq!(texts.len(), 2, "{texts:?}");
    assert!(
        texts.iter().any(|t| t.contains("Amina")) && texts.iter().any(|t| t.contains("Omar")),
        "{texts:?}"
    );
}

#[test]
fn a_full_disk_is_a_clear_error_and_loses_no_notification() {
    let mount_dir = tempfile::tempdir().unwrap();
    let mounted = std::process::Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=2m", "tmpfs"])
        .arg(mount_dir.path())
        .status()
        .is_ok_and(|s| s.success());
    if !mounted {
        // As root (CI) a tmpfs can always be mounted: failing to is a failure there.
        skip(
            "a_full_disk: cannot mount a small tmpfs here to fill it",
            is_root(),
        );
        return;
    }
    struct Unmount(std::path::PathBuf);
    impl Drop for Unmount {
        fn drop(&mut self) {
            let _ = std::process::Command::new("umount").arg(&self.0).status();
        }
    }
    let _guard = Unmount(mount_dir.path().to_owned());
    let (wawp, slack) = (FakeWawp::start(), Receiver::start());
    wawp.chats(vec![chat(
        "201001234567@c.us",
        "Amina",
        1,
        "hi",
        now() - 30 * 60,
    )]);
    let store = mount_dir.path().join("state.db");
    let env = Env::new(
        Setup::new(&wawp)
            .set("store", "path", &toml_str(&store.display().to_string()))
            .channel(Channel::slack("oncall", &slack.url)),
    );
    assert_eq!(env.run(&["once"]).code, 0, "an open episode below the SLA");

    // Fill the disk, then let 200 chats breach: the cycle cannot be recorded.
    let filler = mount_dir.path().join("filler");
    let _ = std::fs::write(&filler, vec![0u8; 4 << 20]);
    let many: Vec<Value> = (0..200)
        .map(|i| {
            chat(
                &format!("2010{i:08}@c.us"),
                &format!("Customer {i} {}", "x".repeat(200)),
                1,
                "hi",
                now() - 3 * H,
            )
        })
        .collect();
    wawp.chats(many);
    let full = env.run(&["once"]);
    assert_eq!(full.code, 1, "{full}");
    assert!(
        full.stderr.contains("state.db"),
        "the store is named:\n{full}"
    );
    assert!(
        full.stderr.contains("full") || full.stderr.contains("free space"),
        "{full}"
    );
    assert!(
        slack.accepted().is_empty(),
        "nothing sent for a cycle that was not recorded"
    );

    std::fs::remove_file(&filler).unwrap();
    let back = env.run(&["once"]);
    assert_eq!(back.code, 0, "{back}");
    let posts = slack.accepted();
    assert_eq!(posts.len(), 1, "one digest once there is room");
    assert!(
        posts[0]["text"]
            .as_str()
            .unwrap()
            .contains("200 chats waiting over 2h"),
        "{:?}",
        posts[0]["text"]
    );
}

#[test]
fn kill_9_at_random_points_never_loses_or_duplicates_beyond_one_resend_per_crash() {
    let (wawp, rx) = (FakeWawp::start(), Receiver::start());
    let t = now();
    let env = Env::new(
        Setup::new(&wawp)
            .poll("1s")
            .tier("2h", &["pager"])
            .tier("5h", &["pager"])
            .set("delivery", "timeout", "\"2s\"")
            .channel(Channel::webhook("pager", &rx.url)),
    );
    let mut rng = fastrand::Rng::with_seed(0x5EED);
    let mut chats: Vec<Value> = Vec::new();
    let mut read: HashSet<String> = HashSet::new();
    let kills = 24;
    for round in 0..kills {
        // Each round adds a breaching chat (some past both tiers) and reads an older one.
        let jid = format!("2010000{round:05}@c.us");
        let since = t - if round % 3 == 0 { 6 * H } else { 3 * H };
        chats.push(chat(&jid, &format!("Customer {round}"), 1, "hello?", since));
        if round % 4 == 3 {
            chats[round - 2]["unreadCount"] = 0.into();
            read.insert(chats[round - 2]["id"].as_str().unwrap().to_string());
        }
        wawp.chats(chats.clone());
        if round % 5 == 0 {
            rx.script(&[Answer::Status(503)]);
        }
        let polls = wawp.polls();
        let mut d = env.start();
        // Killed at a random point after its first poll began: mid-fetch, mid-commit,
        // mid-delivery or idle.
        assert!(wait_for(PATIENCE, || wawp.polls() > polls), "{}", d.log());
        std::thread::sleep(Duration::from_millis(rng.u64(0..800)));
        d.kill();
    }
    // Finally run cleanly until everything is delivered.
    let mut d = env.start();
    assert!(d.wait_log("inbox-sla is running"), "{}", d.log());
    let delivered_all = wait_for(Duration::from_secs(60), || {
        let a = env.alerts();
        outbox_count(&a, "pending") == 0
            && a["episodes"]
                .as_array()
                .unwrap()
                .iter()
                .all(|e| !read.contains(e["id"].as_str().unwrap()))
    });
    d.signal("TERM");
    assert_eq!(d.wait(PATIENCE), Some(0));
    assert!(delivered_all, "{}", env.alerts());

    let seen = seen(&rx.accepted());
    let mut expected_firings = HashSet::new();
    for c in &chats {
        let (id, since) = (
            c["id"].as_str().unwrap().to_string(),
            c["lastMessage"]["timestamp"].as_i64().unwrap(),
        );
        let tiers: &[u64] = if t - since >= 5 * H {
            &[7200, 18000]
        } else {
            &[7200]
        };
        let fired = seen.firings.contains_key(&(id.clone(), since, 7200));
        // A chat read before any daemon lived long enough to commit its first cycle was
        // never escalated, and needs no resolved notice; every other one fired each due
        // tier exactly once.
        let must_fire = !read.contains(&id) || fired;
        for &after in tiers {
            expected_firings.insert((id.clone(), since, after));
            let n = seen
                .firings
                .get(&(id.clone(), since, after))
                .copied()
                .unwrap_or(0);
            assert_eq!(
                n,
                usize::from(must_fire),
                "{id} tier {after}s was in {n} distinct notifications (lost or enqueued twice)"
            );
        }
        let resolved = seen
            .resolved
            .get(&(id.clone(), since))
            .copied()
            .unwrap_or(0);
        let want = usize::from(read.contains(&id) && fired);
        assert_eq!(
            resolved, want,
            "{id}: {resolved} resolved notices, want {want}"
        );
    }
    let unexpected: Vec<_> = seen
        .firings
        .keys()
        .filter(|k| !expected_firings.contains(*k))
        .collect();
    assert!(
        unexpected.is_empty(),
        "firings nobody was due: {unexpected:?}"
    );
    assert!(
        seen.resolved.keys().all(|(id, _)| read.contains(id)),
        "resolved notices for chats still waiting: {:?}",
        seen.resolved
    );
    assert!(
        seen.repeats <= kills,
        "{} resends for {kills} crashes",
        seen.repeats
    );
    assert_eq!(outbox_count(&env.alerts(), "dead"), 0);
    eprintln!(
        "{kills} crashes, {} resent messages, {} firings, {} resolved",
        seen.repeats,
        seen.firings.len(),
        seen.resolved.len()
    );
}
