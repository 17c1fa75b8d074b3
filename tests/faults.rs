//! Fault injection with the real binary: sources that drip, cut or lie; a store that
//! cannot be written; and `kill -9` at random points of cycles and deliveries, with the
//! invariants checked after every run: no episode lost, no notification lost, nothing sent
//! twice beyond the one message a crash may repeat.

mod common;

use common::*;
use serde_json::Value;
use std::collections::HashMap;
use std::io::Write;
use std::time::Duration;

const H: i64 = 3600;

fn config_for_port(env: &Env, port: u16, timeout: &str) {
    let text = std::fs::read_to_string(&env.config).unwrap();
    let start = text.find("base_url = ").unwrap();
    let end = start + text[start..].find('\n').unwrap();
    let text = format!(
        "{}base_url = \"http://127.0.0.1:{port}\"{}",
        &text[..start],
        &text[end..]
    )
    .replace(
        "request_timeout = \"5s\"",
        &format!("request_timeout = \"{timeout}\""),
    );
    std::fs::write(&env.config, text).unwrap();
}

#[test]
fn a_source_that_drips_times_out_and_one_that_hangs_up_mid_body_is_an_error() {
    let wawp = FakeWawp::start();
    let env = Env::new(&wawp, CONSOLE);

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
    config_for_port(&env, drip, "1s");
    let run = env.run(&["once"]);
    assert_eq!(run.code, 1, "{run}");
    assert!(run.stderr.contains("timed out"), "{run}");

    let cut = raw_server(|mut s| {
        read_request_head(&mut s);
        let _ = s.write_all(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 5000\r\n\r\n[{\"id\": \"2010");
    });
    config_for_port(&env, cut, "5s");
    let run = env.run(&["once"]);
    assert_eq!(run.code, 1, "{run}");
    assert!(run.stderr.contains("instance \"support\""), "{run}");
    assert!(
        !env.run(&["alerts"]).stdout.contains("@c.us"),
        "nothing recorded from a cut body"
    );
}

#[test]
fn a_read_only_store_is_a_clear_error_and_loses_no_notification() {
    let (wawp, slack) = (FakeWawp::start(), Receiver::start());
    slack.script(&[Answer::Status(500)]);
    wawp.chats(vec![breached_chat()]);
    let env = Env::new(
        &wawp,
        &format!(
            "[[channel]]\nname = \"oncall\"\ntype = \"slack\"\nwebhook_url = \"{}\"\n",
            slack.url
        ),
    );
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
    std::thread::sleep(Duration::from_millis(1100)); // the first retry is due after at most 1s
    let back = as_nobody(&["once"]);
    assert_eq!(back.code, 0, "{back}");
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
        eprintln!("SKIPPED: cannot mount a small tmpfs here to fill it");
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
    let env = Env::new(
        &wawp,
        &format!(
            "[[channel]]\nname = \"oncall\"\ntype = \"slack\"\nwebhook_url = \"{}\"\n",
            slack.url
        ),
    );
    let store = mount_dir.path().join("state.db");
    let text = std::fs::read_to_string(&env.config).unwrap().replace(
        &env.store().display().to_string(),
        &store.display().to_string(),
    );
    std::fs::write(&env.config, text).unwrap();
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

/// `inbox-sla run` with its output discarded.
fn quiet_daemon(env: &Env) -> std::process::Child {
    env.command(&["run"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap()
}

/// Every firing (chat, episode start, tier) the receiver accepted, and in how many
/// distinct documents it appeared.
fn firings(accepted: &[Value]) -> (HashMap<(String, i64, u64), usize>, usize) {
    let mut docs: Vec<&Value> = Vec::new();
    let mut repeats = 0;
    for doc in accepted {
        if docs.contains(&doc) {
            repeats += 1; // the same document again: a resend after a crash
        } else {
            docs.push(doc);
        }
    }
    let mut seen = HashMap::new();
    for doc in docs.iter().filter(|d| d["status"] == "firing") {
        for c in doc["chats"].as_array().unwrap() {
            let key = (
                c["id"].as_str().unwrap().to_string(),
                c["waiting_since"].as_i64().unwrap(),
                c["tier"].as_u64().unwrap(),
            );
            *seen.entry(key).or_insert(0) += 1;
        }
    }
    (seen, repeats)
}

#[test]
fn kill_9_at_random_points_never_loses_or_duplicates_beyond_one_resend_per_crash() {
    let (wawp, rx) = (FakeWawp::start(), Receiver::start());
    let t = now();
    let env = Env::new(
        &wawp,
        &format!(
            "[sla]\npoll_interval = \"1s\"\n[[escalation]]\nafter = \"2h\"\n[[escalation]]\nafter = \"5h\"\n\
             [[channel]]\nname = \"pager\"\ntype = \"webhook\"\nurl = \"{}\"\n",
            rx.url
        ),
    );
    let mut rng = fastrand::Rng::with_seed(0x5EED);
    let mut expected: Vec<(String, i64)> = Vec::new();
    let mut chats: Vec<Value> = Vec::new();
    let kills = 24;
    for round in 0..kills {
        // Each round adds a breaching chat (some past both tiers) and reads an older one.
        let jid = format!("2010000{round:05}@c.us");
        let since = t - if round % 3 == 0 { 6 * H } else { 3 * H };
        chats.push(chat(&jid, &format!("Customer {round}"), 1, "hello?", since));
        expected.push((jid, since));
        if round % 4 == 3 {
            chats[round - 2]["unreadCount"] = 0.into();
        }
        wawp.chats(chats.clone());
        if round % 5 == 0 {
            rx.script(&[Answer::Status(503)]);
        }
        let mut child = quiet_daemon(&env);
        std::thread::sleep(Duration::from_millis(rng.u64(50..1500)));
        child.kill().unwrap();
        child.wait().unwrap();
    }
    // Finally run cleanly until everything is delivered.
    let mut child = quiet_daemon(&env);
    let delivered_all = wait_for(Duration::from_secs(30), || {
        env.run(&["alerts"])
            .stdout
            .contains("Pending notifications: 0")
    });
    std::process::Command::new("kill")
        .arg("-TERM")
        .arg(child.id().to_string())
        .status()
        .unwrap();
    child.wait().unwrap();
    assert!(delivered_all, "{}", env.run(&["alerts"]));

    let (seen, repeats) = firings(&rx.accepted());
    for (jid, since) in &expected {
        let tiers = if t - since >= 5 * H { 2 } else { 1 };
        for tier in 0..tiers {
            let n = seen.get(&(jid.clone(), *since, tier)).copied().unwrap_or(0);
            assert_eq!(
                n, 1,
                "{jid} tier {tier} was in {n} distinct notifications (lost or enqueued twice)"
            );
        }
    }
    assert!(repeats <= kills, "{repeats} resends for {kills} crashes");
    let alerts = env.run(&["alerts"]);
    assert!(alerts.stdout.contains("Dead notifications: 0"), "{alerts}");
    eprintln!(
        "{kills} crashes, {repeats} resent messages, {} firings",
        seen.len()
    );
}
