//! The security suite: every path that could carry a secret is driven with recognisable
//! secrets, and everything the program prints is scanned for them (the harness does the
//! scanning on every run). Also: https enforcement, and values of secret keys in config
//! errors.

mod common;

use common::*;

/// Slack, webhook with a bearer header, and email with a password over STARTTLS.
fn all_channels(
    setup: Setup,
    ca_dir: &std::path::Path,
    slack: &Receiver,
    hook: &Receiver,
    smtp: &Smtp,
) -> Setup {
    let ca = ca_dir.join("ca.pem");
    std::fs::write(&ca, smtp.ca_pem.as_ref().unwrap()).unwrap();
    setup
        .channel(Channel::slack("oncall", &slack.url))
        .channel(Channel::webhook("pager", &hook.url))
        .channel(
            Channel::email("leads", smtp.port)
                .key("tls", "\"starttls\"")
                .key("username", "\"sla-bot\"")
                .key("password", &toml_str(SMTP_PASSWORD))
                .key("ca_file", &toml_str(&ca.display().to_string())),
        )
}

fn traced(env: &Env, args: &[&str]) -> Run {
    Run::from(env.command(args).env("RUST_LOG", "trace").output().unwrap())
}

#[test]
fn trace_level_logs_of_every_command_carry_no_secret() {
    let tls_dir = tempfile::tempdir().unwrap();
    let (wawp, slack, hook, smtp) = (
        FakeWawp::start(),
        Receiver::start(),
        Receiver::start(),
        Smtp::start_tls(tls_dir.path()),
    );
    wawp.chats(vec![breached_chat()]);
    let env = Env::new(all_channels(
        Setup::new(&wawp),
        tls_dir.path(),
        &slack,
        &hook,
        &smtp,
    ));

    let run = traced(&env, &["once"]);
    assert_eq!(run.code, 0, "{run}");
    assert!(
        run.stderr.contains("TRACE") || run.stderr.contains("DEBUG"),
        "really traced:\n{run}"
    );
    assert_eq!(
        (
            slack.accepted().len(),
            hook.accepted().len(),
            smtp.mails().len()
        ),
        (1, 1, 1)
    );

    wawp.set(Reply::Status(
        500,
        format!("failed: GET /v2/chats/overview?access_token={TOKEN}&instance_id=12345"),
    ));
    let run = traced(&env, &["once"]);
    assert_eq!(run.code, 1, "{run}");
    let run = traced(&env, &["test-notify"]);
    assert_eq!(run.code, 0, "{run}");
    for args in [
        &["check"][..],
        &["alerts", "--all"],
        &["alerts", "--format", "json"],
        &["once", "--dry-run"],
    ] {
        traced(&env, args);
    }
}

#[test]
fn receivers_that_echo_the_url_never_put_it_in_alerts_or_logs() {
    let (wawp, slack, hook) = (FakeWawp::start(), Receiver::start(), Receiver::start());
    slack.script(&[Answer::Echo(404)]);
    hook.script(&[Answer::Echo(404)]);
    wawp.chats(vec![breached_chat()]);
    let env = Env::new(
        Setup::new(&wawp)
            .channel(Channel::slack("oncall", &slack.url))
            .channel(Channel::webhook("pager", &hook.url)),
    );
    let run = env.run(&["once"]);
    assert_eq!(run.code, 1, "{run}");
    assert!(
        run.stderr.contains("404") && run.stderr.contains("no such hook: ***"),
        "{run}"
    );
    let alerts = env.alerts();
    assert_eq!(outbox_count(&alerts, "dead"), 2, "{alerts}");
    for dead in alerts["dead"].as_array().unwrap() {
        assert!(
            dead["last_error"]
                .as_str()
                .unwrap()
                .contains("no such hook: ***"),
            "{alerts}"
        );
    }
}

#[test]
fn config_errors_never_show_secret_values() {
    let wawp = FakeWawp::start();
    let env = Env::new(Setup::new(&wawp).channel(Channel::console()));
    let base = std::fs::read_to_string(&env.config).unwrap();
    let cases = [
        // A numeric token: serde would quote it in "invalid type".
        base.replace(
            &format!("access_token = \"{TOKEN}\""),
            "access_token = 385517449021",
        ),
        // A typo on the line holding the token: toml would print the line.
        base.replace("access_token =", "acess_token ="),
        // A Slack URL over plain http to a remote host.
        format!(
            "{base}\n[[channel]]\nname = \"s\"\ntype = \"slack\"\nwebhook_url = \"http://hooks.example.com/services/{HOOK_SECRET}\"\n"
        ),
        // A header value that is not a valid header.
        format!(
            "{base}\n[[channel]]\nname = \"w\"\ntype = \"webhook\"\nurl = \"https://example.com/x\"\nheaders = {{ Authorization = \"Bearer {HEADER_SECRET}\\n\" }}\n"
        ),
    ];
    for text in cases {
        std::fs::write(&env.config, &text).unwrap();
        let run = env.run(&["check"]);
        assert_eq!(run.code, 2, "{run}");
        assert!(!run.stderr.contains("385517449021"), "{run}");
    }
}

#[test]
fn plain_http_is_refused_off_loopback() {
    let wawp = FakeWawp::start();
    let env = Env::new(
        Setup::new(&wawp)
            .wawp("base_url", "\"http://api.wawp.net\"")
            .channel(Channel::console()),
    );
    let run = env.run(&["once"]);
    assert_eq!(run.code, 2, "{run}");
    assert!(run.stderr.contains("wawp.base_url must use https"), "{run}");
}

/// The status page's credentials (section 8): the users' passwords and hashes, the bearer
/// token and the TLS key never reach a log line at trace level, `check`, or an answer,
/// whether a login succeeds, fails or is locked out.
#[test]
fn status_page_passwords_hashes_tokens_and_the_tls_key_never_show() {
    let wawp = FakeWawp::start();
    wawp.chats(vec![breached_chat()]);
    let dir = tempfile::tempdir().unwrap();
    let line = htpasswd_line("amina", USER_PASSWORD);
    let hash = line.split_once(':').unwrap().1.to_string();
    let users = dir.path().join("users");
    std::fs::write(&users, format!("{line}\n")).unwrap();
    let token = dir.path().join("token");
    let status_token = "status-tok-9e1f3a7b22";
    std::fs::write(&token, status_token).unwrap();
    let tls = rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).unwrap();
    let key_pem = tls.signing_key.serialize_pem();
    let (cert, key) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
    std::fs::write(&cert, tls.cert.pem()).unwrap();
    std::fs::write(&key, &key_pem).unwrap();
    let path = |p: &std::path::Path| toml_str(&p.to_string_lossy());
    let env = Env::new(
        Setup::new(&wawp)
            .poll("1s")
            .channel(Channel::console())
            .set("http", "listen", "\"0.0.0.0:0\"")
            .set("http", "users_file", &path(&users))
            .set("http", "auth_token_file", &path(&token))
            .set("http", "tls_cert_file", &path(&cert))
            .set("http", "tls_key_file", &path(&key)),
    );
    let key_body: Vec<&str> = key_pem
        .lines()
        .filter(|l| !l.starts_with("-----"))
        .collect();
    let clean = |text: &str| {
        assert!(!text.contains(&hash), "a hash leaked:\n{text}");
        assert!(!text.contains("$2y$"), "a hash leaked:\n{text}");
        assert!(!text.contains(status_token), "the token leaked:\n{text}");
        for l in &key_body {
            assert!(!text.contains(l), "the TLS key leaked:\n{text}");
        }
    };
    let run = traced(&env, &["check"]);
    assert_eq!(run.code, 0, "{run}");
    clean(&run.stdout);
    clean(&run.stderr);

    let daemon = Daemon::start(&env, &[("RUST_LOG", "trace".to_string())]);
    let base = daemon.http_base().replace("0.0.0.0", "127.0.0.1");
    let client = reqwest::Client::builder()
        .tls_danger_accept_invalid_certs(true)
        .build()
        .unwrap();
    let status = |auth: &str| -> u16 {
        rt().block_on(async {
            client
                .get(format!("{base}/api/v1/waiting"))
                .header("Authorization", auth)
                .send()
                .await
                .map(|r| r.status().as_u16())
                .unwrap_or(0)
        })
    };
    assert!(
        wait_for(PATIENCE, || status(&basic("amina", USER_PASSWORD)) == 200),
        "{}",
        daemon.log()
    );
    assert_eq!(status(&format!("Bearer {status_token}")), 200);
    assert_eq!(status("Bearer wrong-token-0000"), 401);
    for guess in ["a", "b", "c", "d", "e"] {
        assert_eq!(status(&basic("amina", guess)), 401);
    }
    assert_eq!(status(&basic("amina", USER_PASSWORD)), 429);
    assert!(daemon.wait_log("refusing this address"), "{}", daemon.log());
    clean(&daemon.log());
}
