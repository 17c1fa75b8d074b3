//! The status page for people and machines (docs/spec.md sections 8 and 11): HTTP Basic
//! against `http.users_file`, the bearer token for scripts, failed logins limited per
//! address, both re-read on SIGHUP; HTTPS with a certificate renewed by SIGHUP; and the
//! page on a phone and with hostile text, measured in a real Chromium.

mod common;
use common::browser::Browser;
use common::*;
use serde_json::{Value, json};
use std::path::Path;

const AMINA: &str = "amina";
const OMAR: &str = "omar";
const MACHINE_TOKEN: &str = "machine-tok-81c4d2e9";

/// `(status, headers, body)` of a GET with an optional `Authorization`.
fn fetch(url: &str, auth: Option<&str>) -> (u16, reqwest::header::HeaderMap, String) {
    rt().block_on(async {
        let mut req = reqwest::Client::new().get(url);
        if let Some(a) = auth {
            req = req.header("Authorization", a);
        }
        match req.send().await {
            Ok(r) => (
                r.status().as_u16(),
                r.headers().clone(),
                r.text().await.unwrap_or_default(),
            ),
            Err(e) => panic!("GET {url}: {e}"),
        }
    })
}

/// A users file with Amina and Omar, and a token file, in `dir`.
fn people(dir: &Path) -> (std::path::PathBuf, std::path::PathBuf) {
    let users = dir.join("users");
    std::fs::write(
        &users,
        format!(
            "# the support leads\n{}\n{}\n",
            htpasswd_line(AMINA, USER_PASSWORD),
            htpasswd_line(OMAR, USER_PASSWORD)
        ),
    )
    .unwrap();
    let token = dir.join("token");
    std::fs::write(&token, format!("{MACHINE_TOKEN}\n")).unwrap();
    (users, token)
}

fn with_people(setup: Setup, users: &Path, token: Option<&Path>) -> Setup {
    let setup = setup.set("http", "users_file", &toml_str(&users.to_string_lossy()));
    match token {
        Some(t) => setup.set("http", "auth_token_file", &toml_str(&t.to_string_lossy())),
        None => setup,
    }
}

fn assert_no_password_or_hash(text: &str, users: &Path) {
    assert!(!text.contains(USER_PASSWORD), "password leaked:\n{text}");
    assert!(!text.contains(MACHINE_TOKEN), "token leaked:\n{text}");
    let file = std::fs::read_to_string(users).unwrap_or_default();
    for line in file.lines().filter(|l| l.contains(':')) {
        let hash = line.split_once(':').unwrap().1;
        assert!(!text.contains(hash), "hash leaked:\n{text}");
    }
    assert!(!text.contains("$2y$"), "a hash leaked:\n{text}");
}

#[test]
fn people_sign_in_with_basic_and_machines_with_the_token_off_loopback() {
    let wawp = FakeWawp::start();
    wawp.chats(vec![breached_chat()]);
    let dir = tempfile::tempdir().unwrap();
    let (users, token) = people(dir.path());
    let env = Env::new(with_people(
        Setup::new(&wawp)
            .poll("1s")
            .channel(Channel::console())
            .set("http", "listen", "\"0.0.0.0:0\""),
        &users,
        Some(&token),
    ));
    let check = env.run(&["check"]);
    assert_eq!(check.code, 0, "{check}");
    assert!(
        check.stdout.contains("users_file")
            && check
                .stdout
                .contains("passwords cross the network in clear"),
        "Basic off loopback without TLS is warned about:\n{check}"
    );
    assert_no_password_or_hash(&check.stdout, &users);
    let daemon = env.start();
    let base = daemon.http_base().replace("0.0.0.0", "127.0.0.1");
    assert!(wait_for(PATIENCE, || get(&format!("{base}/healthz")).0 == 200));

    for path in ["/", "/api/v1/waiting", "/api/v1/report"] {
        let url = format!("{base}{path}");
        // A browser's first request: asked for a password, not refused as a failed login.
        let (code, headers, body) = fetch(&url, None);
        assert_eq!(code, 401, "{path}: {body}");
        assert_eq!(
            headers["www-authenticate"], "Basic realm=\"inbox-sla\"",
            "{path}: the browser must ask"
        );
        assert!(!body.contains("Amina"), "{path} leaked: {body}");
        let (code, _, body) = fetch(&url, Some(&basic(AMINA, USER_PASSWORD)));
        assert_eq!(code, 200, "{path}: {body}");
        let (code, _, _) = fetch(&url, Some(&format!("Bearer {MACHINE_TOKEN}")));
        assert_eq!(code, 200, "{path}: the machine's token");
        let (code, _, _) = fetch(&url, Some(&format!("bearer {MACHINE_TOKEN}")));
        assert_eq!(code, 200, "{path}: the scheme is case-insensitive");
    }
    let (code, _, page) = fetch(&format!("{base}/"), Some(&basic(OMAR, USER_PASSWORD)));
    assert_eq!(code, 200);
    assert!(page.contains("Amina"), "{page}");
    let (code, _, _) = fetch(&format!("{base}/"), Some(&basic(AMINA, "not-her-password")));
    assert_eq!(code, 401);
    let (code, _, _) = fetch(&format!("{base}/"), Some(&basic("mallory", USER_PASSWORD)));
    assert_eq!(code, 401);
    // The token is no password, and a password is no token.
    let (code, _, _) = fetch(&format!("{base}/"), Some(&basic(AMINA, MACHINE_TOKEN)));
    assert_eq!(code, 401);
    let (code, _, _) = fetch(
        &format!("{base}/"),
        Some(&format!("Bearer {USER_PASSWORD}")),
    );
    assert_eq!(code, 401);
    assert_eq!(fetch(&format!("{base}/healthz"), None).0, 200);
    let (code, _, metrics) = fetch(&format!("{base}/metrics"), None);
    assert_eq!(code, 200);
    assert_no_password_or_hash(&metrics, &users);

    assert!(daemon.wait_log("failed login"), "{}", daemon.log());
    let log = daemon.log();
    assert!(
        log.contains("failed login") && log.contains("\"mallory\"") && log.contains("no such user"),
        "failed logins are logged with the user name:\n{log}"
    );
    assert!(
        log.contains("the page and /api need a user or the bearer token"),
        "{log}"
    );
    assert_no_password_or_hash(&log, &users);
}

#[test]
fn failed_logins_are_limited_per_address_and_a_locked_out_address_is_told_when_to_retry() {
    let wawp = FakeWawp::start();
    let dir = tempfile::tempdir().unwrap();
    let (users, _) = people(dir.path());
    let env = Env::new(with_people(
        Setup::new(&wawp)
            .poll("1s")
            .channel(Channel::console())
            .http(),
        &users,
        None,
    ));
    let daemon = env.start();
    let base = daemon.http_base();
    let page = format!("{base}/");
    for k in 0..5 {
        let (code, _, body) = fetch(&page, Some(&basic(AMINA, &format!("guess-{k}"))));
        assert_eq!(code, 401, "guess {k}: {body}");
    }
    // Locked out: even the right password is not looked at (no bcrypt for a flood).
    let (code, headers, body) = fetch(&page, Some(&basic(AMINA, USER_PASSWORD)));
    assert_eq!(code, 429, "{body}");
    let retry: u64 = headers["retry-after"].to_str().unwrap().parse().unwrap();
    assert!((1..=60).contains(&retry), "Retry-After {retry}");
    // Probes are not behind the login.
    assert_eq!(fetch(&format!("{base}/healthz"), None).0, 200);
    assert!(
        daemon.wait_log("refusing this address for 60s"),
        "{}",
        daemon.log()
    );
    let log = daemon.log();
    assert_eq!(
        log.matches("failed login: a wrong password").count(),
        5,
        "{log}"
    );
    assert_no_password_or_hash(&log, &users);
}

/// Section 7: reload covers the users and the token. Remove a user and rotate the token,
/// SIGHUP: both stop working at once (the cache of verified passwords is emptied too),
/// the others go on.
#[test]
fn a_removed_user_and_a_rotated_token_stop_working_at_the_reload() {
    let wawp = FakeWawp::start();
    let dir = tempfile::tempdir().unwrap();
    let (users, token) = people(dir.path());
    let env = Env::new(with_people(
        Setup::new(&wawp)
            .poll("1s")
            .channel(Channel::console())
            .http(),
        &users,
        Some(&token),
    ));
    let daemon = env.start();
    let base = daemon.http_base();
    let page = format!("{base}/api/v1/waiting");
    assert_eq!(fetch(&page, Some(&basic(AMINA, USER_PASSWORD))).0, 200);
    assert_eq!(fetch(&page, Some(&basic(OMAR, USER_PASSWORD))).0, 200);
    assert_eq!(
        fetch(&page, Some(&format!("Bearer {MACHINE_TOKEN}"))).0,
        200
    );

    let file = std::fs::read_to_string(&users).unwrap();
    let without_amina: String = file
        .lines()
        .filter(|l| !l.starts_with("amina:"))
        .map(|l| format!("{l}\n"))
        .collect();
    std::fs::write(&users, without_amina).unwrap();
    std::fs::write(&token, "rotated-tok-55e0a19c\n").unwrap();
    daemon.signal("HUP");
    assert!(
        wait_for(PATIENCE, || fetch(
            &page,
            Some(&basic(AMINA, USER_PASSWORD))
        )
        .0 == 401),
        "the removed user still gets in:\n{}",
        daemon.log()
    );
    assert_eq!(
        fetch(&page, Some(&format!("Bearer {MACHINE_TOKEN}"))).0,
        401
    );
    assert_eq!(fetch(&page, Some(&basic(OMAR, USER_PASSWORD))).0, 200);
    assert_eq!(fetch(&page, Some("Bearer rotated-tok-55e0a19c")).0, 200);
    assert_no_password_or_hash(&daemon.log(), &users);
}

#[test]
fn check_refuses_an_open_listen_and_a_bad_users_file_or_key_without_quoting_them() {
    let wawp = FakeWawp::start();
    let dir = tempfile::tempdir().unwrap();
    let (users, _) = people(dir.path());
    let open = Env::new(Setup::new(&wawp).channel(Channel::console()).set(
        "http",
        "listen",
        "\"0.0.0.0:9187\"",
    ));
    let run = open.run(&["check"]);
    assert_eq!(run.code, 2, "{run}");
    assert!(
        run.stderr.contains("http.users_file") && run.stderr.contains("http.auth_token_file"),
        "{run}"
    );

    // Users alone are enough off loopback.
    let people_only = Env::new(with_people(
        Setup::new(&wawp)
            .channel(Channel::console())
            .set("http", "listen", "\"0.0.0.0:9187\""),
        &users,
        None,
    ));
    let run = people_only.run(&["check"]);
    assert_eq!(run.code, 0, "{run}");

    // A line that is not bcrypt (htpasswd's default MD5, SHA) is refused, naming the user.
    let bad = dir.path().join("bad-users");
    std::fs::write(
        &bad,
        format!(
            "{}\nomar:{{SHA}}{USER_PASSWORD}\n",
            htpasswd_line(AMINA, USER_PASSWORD)
        ),
    )
    .unwrap();
    let env = Env::new(with_people(
        Setup::new(&wawp).channel(Channel::console()).http(),
        &bad,
        None,
    ));
    let run = env.run(&["check"]);
    assert_eq!(run.code, 2, "{run}");
    assert!(
        run.stderr.contains("line 2") && run.stderr.contains("omar"),
        "{run}"
    );
    assert_no_password_or_hash(&run.stderr, &users);

    // A key that does not match its certificate; a certificate without a key.
    let (a, b) = (
        rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).unwrap(),
        rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).unwrap(),
    );
    let (cert, key) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
    std::fs::write(&cert, a.cert.pem()).unwrap();
    let key_pem = b.signing_key.serialize_pem();
    std::fs::write(&key, &key_pem).unwrap();
    let env = Env::new(
        Setup::new(&wawp)
            .channel(Channel::console())
            .http()
            .set("http", "tls_cert_file", &toml_str(&cert.to_string_lossy()))
            .set("http", "tls_key_file", &toml_str(&key.to_string_lossy())),
    );
    let run = env.run(&["check"]);
    assert_eq!(run.code, 2, "{run}");
    assert!(run.stderr.contains("does not match"), "{run}");
    let body = key_pem.lines().nth(1).unwrap();
    assert!(
        !run.stderr.contains(body) && !run.stdout.contains(body),
        "{run}"
    );
    let env = Env::new(Setup::new(&wawp).channel(Channel::console()).http().set(
        "http",
        "tls_cert_file",
        &toml_str(&cert.to_string_lossy()),
    ));
    let run = env.run(&["check"]);
    assert_eq!(run.code, 2, "{run}");
    assert!(run.stderr.contains("tls_key_file"), "{run}");
}

// ----------------------------------------------------------------------------- HTTPS

struct TestCa {
    issuer: rcgen::Issuer<'static, rcgen::KeyPair>,
    der: Vec<u8>,
}

impl TestCa {
    fn new() -> TestCa {
        let key = rcgen::KeyPair::generate().unwrap();
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "inbox-sla test CA");
        let cert = params.self_signed(&key).unwrap();
        TestCa {
            der: cert.der().to_vec(),
            issuer: rcgen::Issuer::new(params, key),
        }
    }

    /// A certificate for localhost with `serial`: (cert PEM, key PEM, cert DER).
    fn leaf(&self, serial: u64) -> (String, String, Vec<u8>) {
        let key = rcgen::KeyPair::generate().unwrap();
        let mut params = rcgen::CertificateParams::new(vec!["localhost".to_string()]).unwrap();
        params.serial_number = Some(rcgen::SerialNumber::from(serial));
        params.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ServerAuth];
        let cert = params.signed_by(&key, &self.issuer).unwrap();
        (cert.pem(), key.serialize_pem(), cert.der().to_vec())
    }
}

/// A GET over TLS trusting only `ca`: (the certificate served, the response's text).
fn tls_get(addr: &str, ca: &[u8], path: &str, auth: &str) -> (Vec<u8>, String) {
    use std::io::{Read, Write};
    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(rustls::pki_types::CertificateDer::from(ca.to_vec()))
        .unwrap();
    let config = rustls::ClientConfig::builder_with_provider(std::sync::Arc::new(
        rustls::crypto::aws_lc_rs::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
    let conn = rustls::ClientConnection::new(std::sync::Arc::new(config), name).unwrap();
    let tcp = std::net::TcpStream::connect(addr).unwrap();
    tcp.set_read_timeout(Some(PATIENCE)).unwrap();
    let mut tls = rustls::StreamOwned::new(conn, tcp);
    tls.write_all(
        format!(
            "GET {path} HTTP/1.1\r\nHost: localhost\r\nAuthorization: {auth}\r\nConnection: close\r\n\r\n"
        )
        .as_bytes(),
    )
    .unwrap_or_else(|e| panic!("TLS to {addr} with the test CA: {e}"));
    let mut response = Vec::new();
    let _ = tls.read_to_end(&mut response);
    let served = tls
        .conn
        .peer_certificates()
        .and_then(|c| c.first())
        .map(|c| c.to_vec())
        .unwrap_or_default();
    (served, String::from_utf8_lossy(&response).into_owned())
}

#[test]
fn https_serves_the_page_and_a_renewed_certificate_after_sighup() {
    let wawp = FakeWawp::start();
    wawp.chats(vec![breached_chat()]);
    let dir = tempfile::tempdir().unwrap();
    let (users, _) = people(dir.path());
    let ca = TestCa::new();
    let (cert_pem, key_pem, first) = ca.leaf(1001);
    let (cert, key) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
    std::fs::write(&cert, &cert_pem).unwrap();
    std::fs::write(&key, &key_pem).unwrap();
    let env = Env::new(with_people(
        Setup::new(&wawp)
            .poll("1s")
            .channel(Channel::console())
            .http()
            .set("http", "tls_cert_file", &toml_str(&cert.to_string_lossy()))
            .set("http", "tls_key_file", &toml_str(&key.to_string_lossy())),
        &users,
        None,
    ));
    let check = env.run(&["check"]);
    assert_eq!(check.code, 0, "{check}");
    assert!(
        !check.stdout.contains("in clear"),
        "loopback with TLS: no warning:\n{check}"
    );
    let daemon = env.start();
    let base = daemon.http_base();
    assert!(base.starts_with("https://"), "{base}");
    let addr = base.trim_start_matches("https://").to_string();

    let (served, response) = tls_get(&addr, &ca.der, "/", &basic(AMINA, USER_PASSWORD));
    assert_eq!(served, first, "the configured certificate");
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");
    assert!(response.contains("Amina"), "{response}");
    let (_, response) = tls_get(&addr, &ca.der, "/", "Basic bm9ib2R5Om5vdGhpbmc=");
    assert!(response.starts_with("HTTP/1.1 401"), "{response}");
    let (_, healthz) = tls_get(&addr, &ca.der, "/healthz", "");
    assert!(healthz.starts_with("HTTP/1.1"), "{healthz}");

    // Renewed on disk (a new key too, as certbot does), then SIGHUP: served at once.
    let (cert_pem, key_pem, renewed) = ca.leaf(1002);
    assert_ne!(renewed, first);
    std::fs::write(&cert, &cert_pem).unwrap();
    std::fs::write(&key, &key_pem).unwrap();
    daemon.signal("HUP");
    assert!(
        daemon.wait_log("configuration reloaded"),
        "{}",
        daemon.log()
    );
    let (served, response) = tls_get(&addr, &ca.der, "/", &basic(AMINA, USER_PASSWORD));
    assert_eq!(
        served, renewed,
        "the renewed certificate (serial 1002) after SIGHUP"
    );
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");

    // A broken renewal keeps the running certificate, loudly.
    std::fs::write(
        &key,
        "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n",
    )
    .unwrap();
    daemon.signal("HUP");
    assert!(
        daemon.wait_log("keeping the running one"),
        "{}",
        daemon.log()
    );
    let (served, _) = tls_get(&addr, &ca.der, "/healthz", "");
    assert_eq!(served, renewed);
    let log = daemon.log();
    assert!(!log.contains(key_pem.lines().nth(1).unwrap()), "{log}");
    assert_no_password_or_hash(&log, &users);
}

// ----------------------------------------------------------------------------- the page

/// The longest text a customer could put in each field: no space to break at, and
/// markup that must stay text.
fn hostile_chats(n: usize) -> Vec<Value> {
    let t = now();
    (0..n)
        .map(|k| {
            let name = format!("<b>{}</b>", "W".repeat(300));
            let jid = format!("2010{k:08}{}@c.us", "9".repeat(150));
            let preview = format!("{}&<script>", "x".repeat(500));
            chat(&jid, &name, 3, &preview, t - 3 * H - k as i64 * 60)
        })
        .collect()
}

#[test]
fn the_page_fits_a_phone_and_a_wide_screen_with_hostile_text_signed_in_in_chromium() {
    let wawp = FakeWawp::start();
    let chats = hostile_chats(3);
    wawp.chats(chats.clone());
    let dir = tempfile::tempdir().unwrap();
    let (users, _) = people(dir.path());
    let env = Env::new(with_people(
        Setup::new(&wawp)
            .poll("1s")
            .tier("2h", &["console"])
            .channel(Channel::console())
            .http(),
        &users,
        None,
    ));
    let run = env.run(&["once"]);
    assert_eq!(run.code, 0, "{run}");
    let run = env.run(&[
        "mute",
        chats[2]["id"].as_str().unwrap(),
        "--for",
        "4h",
        "--reason",
        &"r".repeat(400),
    ]);
    assert_eq!(run.code, 0, "{run}");
    let daemon = env.start();
    let base = daemon.http_base();
    let Some(mut browser) = Browser::start() else {
        return;
    };

    // Without credentials Chromium is refused (a person would be asked for a password).
    let anonymous = browser.tab(1280, 900, false, json!({}));
    browser.open(&anonymous, &format!("{base}/"));
    let html = browser.eval(&anonymous, "document.documentElement.outerHTML");
    let html = html.as_str().unwrap_or("");
    assert!(
        !html.contains("id=\"waiting\"") && !html.contains("WWW"),
        "{html}"
    );

    let measure = "JSON.stringify({sw: document.documentElement.scrollWidth, \
        vw: window.innerWidth, rows: document.querySelectorAll('#waiting tr[data-id]').length, \
        ids: [...document.querySelectorAll('#waiting tr[data-id]')].map(r => r.dataset.id), \
        bars: document.querySelectorAll('#attainment rect.bar, #attainment text.bar-empty').length, \
        chart: document.getElementById('attainment').getBoundingClientRect().width})";
    let mut seen = Vec::new();
    for (width, height, mobile) in [(390u32, 844u32, true), (1920, 1080, false)] {
        let tab = browser.tab(
            width,
            height,
            mobile,
            json!({"Authorization": basic(AMINA, USER_PASSWORD)}),
        );
        browser.open(&tab, &format!("{base}/"));
        let m: Value = serde_json::from_str(browser.eval(&tab, measure).as_str().unwrap_or("{}"))
            .unwrap_or_default();
        eprintln!("{width} px: {m}");
        assert_eq!(m["rows"], 3, "signed in, the waiting table: {m}");
        let sw = m["sw"].as_u64().unwrap_or(u64::MAX);
        assert!(
            sw <= width as u64,
            "{width} px: the page scrolls sideways ({sw} px wide): {m}"
        );
        // A phone would zoom out to fit a page wider than it: the viewport must stay put.
        assert_eq!(m["vw"], width, "the viewport: {m}");
        assert!(
            m["chart"].as_f64().unwrap_or(f64::MAX) <= width as f64,
            "the chart scales: {m}"
        );
        seen.push(m);
    }
    // data-id is the whole JID, never the shortened one shown.
    let ids: Vec<&str> = seen[0]["ids"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(Value::as_str)
        .collect();
    let mut expected: Vec<&str> = chats.iter().filter_map(|c| c["id"].as_str()).collect();
    expected.sort();
    let mut sorted = ids.clone();
    sorted.sort();
    assert_eq!(sorted, expected);
    assert!(ids.iter().all(|id| !id.contains('…')));

    // The API's days are the chart's days.
    let (code, _, body) = fetch(
        &format!("{base}/api/v1/report?since=7d"),
        Some(&basic(AMINA, USER_PASSWORD)),
    );
    assert_eq!(code, 200, "{body}");
    let report: Value = serde_json::from_str(&body).unwrap();
    let days = report["days"].as_array().map_or(0, Vec::len);
    assert_eq!(days, 7, "{report:#}");
    assert_eq!(seen[0]["bars"], days, "the chart draws the API's days");
    assert_no_password_or_hash(&daemon.log(), &users);
}

/// POSTs `body` (JSON, or a form when `form`) with `headers`; `(status, body)`.
fn post(url: &str, body: &str, form: bool, headers: &[(&str, &str)]) -> (u16, String) {
    rt().block_on(async {
        let client = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap();
        let mut req = client.post(url).body(body.to_string()).header(
            "Content-Type",
            if form {
                "application/x-www-form-urlencoded"
            } else {
                "application/json"
            },
        );
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        let r = req
            .send()
            .await
            .unwrap_or_else(|e| panic!("POST {url}: {e}"));
        (r.status().as_u16(), r.text().await.unwrap_or_default())
    })
}

/// Section 11, on call acts where the alert lands: signed in with Basic in Chromium, a
/// support lead presses *Acknowledge* on a chat whose next tier is due (held until then by
/// a mute), then *Unmute*: the chat shows who acknowledged it, the channel that was paged
/// hears it once, and the due tier does not fire. A cross-site post changes nothing; the
/// JSON API answers 404 for a chat that is not waiting and 400 naming a bad field.
#[test]
fn a_lead_acknowledges_from_the_page_in_chromium_and_the_next_tier_holds() {
    let wawp = FakeWawp::start();
    let customer = breached_chat(); // waiting 3h
    let jid = customer["id"].as_str().unwrap().to_string();
    wawp.chats(vec![customer]);
    let hook = Receiver::start();
    let dir = tempfile::tempdir().unwrap();
    let (users, token) = people(dir.path());
    let mut env = Env::new(with_people(
        Setup::new(&wawp)
            .poll("1s")
            .tier("2h", &["pager"])
            .channel(Channel::webhook("pager", &hook.url))
            .http(),
        &users,
        Some(&token),
    ));
    let run = env.run(&["once"]);
    assert_eq!(run.code, 0, "{run}");
    assert_eq!(hook.posts().len(), 1, "the 2h tier paged");
    // The 2h30m tier is due as soon as it exists: only the mute holds it, until the lead
    // unmutes the chat on the page (after acknowledging it).
    let run = env.run(&["mute", &jid, "--for", "1h"]);
    assert_eq!(run.code, 0, "{run}");
    env.update(|s| s.tier("2h30m", &["pager"]));
    let daemon = env.start();
    let base = daemon.http_base();
    assert!(wait_for(PATIENCE, || wawp.polls() >= 3), "the daemon polls");
    assert_eq!(hook.posts().len(), 1, "muted: nothing more");

    // Cross-site form posts are refused before anything else, credentials or not.
    let form = format!("chat={}", jid.replace('@', "%40"));
    let amina = basic(AMINA, USER_PASSWORD);
    for (name, value) in [
        ("Origin", "https://evil.example"),
        ("Sec-Fetch-Site", "cross-site"),
    ] {
        let (code, body) = post(
            &format!("{base}/api/v1/ack"),
            &form,
            true,
            &[("Authorization", &amina), (name, value)],
        );
        assert_eq!(code, 403, "{name}: {body}");
    }
    let alerts = env.alerts();
    assert!(
        alerts["episodes"][0]["acknowledged_by"].is_null(),
        "a refused post changed nothing: {alerts:#}"
    );

    let Some(mut browser) = Browser::start() else {
        return;
    };
    let tab = browser.tab(1280, 900, false, json!({"Authorization": amina}));
    browser.open(&tab, &format!("{base}/"));
    browser.click(&tab, "#waiting button.ack");
    let row = browser.eval(
        &tab,
        "document.querySelector('#waiting tr[data-id]').innerText",
    );
    let row = row.as_str().unwrap_or_default();
    assert!(
        row.contains("acknowledged by amina"),
        "the page shows who acknowledged: {row}"
    );
    let left = browser.eval(
        &tab,
        "document.querySelectorAll('#waiting button.ack').length",
    );
    assert_eq!(left, json!(0), "no second Acknowledge while it holds");
    browser.click(&tab, "#waiting button.unmute");
    let mutes = browser.eval(
        &tab,
        "document.querySelectorAll('#mutes tr[data-id]').length",
    );
    assert_eq!(mutes, json!(0), "unmuted from the page");

    assert!(
        wait_for(PATIENCE, || hook
            .posts()
            .iter()
            .any(|p| p["status"] == "acknowledged")),
        "the paged channel hears the acknowledgement: {:#?}",
        hook.posts()
    );
    let after = wawp.polls();
    assert!(wait_for(PATIENCE, || wawp.polls() >= after + 3));
    let posts = hook.posts();
    let statuses: Vec<&str> = posts.iter().filter_map(|p| p["status"].as_str()).collect();
    assert_eq!(
        statuses,
        ["firing", "acknowledged"],
        "the due tier holds: {posts:#?}"
    );
    let told = &posts[1]["chats"][0];
    assert_eq!(told["acknowledged_by"], "amina");
    assert!(told["acknowledged_at"].as_i64().is_some(), "{told}");
    let ep = &env.alerts()["episodes"][0];
    assert_eq!(ep["tiers_fired"], json!([7200]), "{ep}");
    assert_eq!(ep["acknowledged"], true, "{ep}");

    // Scripts: JSON in, JSON out; the errors name what is wrong.
    let bearer = format!("Bearer {MACHINE_TOKEN}");
    let auth = [("Authorization", bearer.as_str())];
    let api =
        |path: &str, body: Value| post(&format!("{base}{path}"), &body.to_string(), false, &auth);
    let (code, body) = api("/api/v1/ack", json!({"chat": "1@c.us", "by": "ops-bot"}));
    assert_eq!(code, 404, "{body}");
    let (code, body) = api("/api/v1/ack", json!({"chat": jid, "for": "soon"}));
    assert_eq!(code, 400, "{body}");
    assert!(body.contains("for"), "{body}");
    let (code, body) = api("/api/v1/ack", json!({"chat": jid, "who": "x"}));
    assert_eq!(code, 400, "{body}");
    assert!(body.contains("who"), "the unknown field is named: {body}");
    let (code, body) = api(
        "/api/v1/mute",
        json!({"chat": jid, "instance": "support", "for": "4h", "reason": "VIP, handled by phone"}),
    );
    assert_eq!(code, 200, "{body}");
    let ep: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(
        (ep["id"].as_str(), ep["muted"].as_bool()),
        (Some(jid.as_str()), Some(true))
    );
    let (code, body) = api(
        "/api/v1/ack",
        json!({"chat": jid, "by": "ops-bot", "for": "2h"}),
    );
    assert_eq!(code, 200, "{body}");
    let ep: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(ep["acknowledged_by"], "ops-bot", "{ep}");
    assert_no_password_or_hash(&daemon.log(), &users);
}
