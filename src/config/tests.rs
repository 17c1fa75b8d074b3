use super::*;

const MINIMAL: &str = r#"
[[instance]]
name = "support"
instance_id = "123"
access_token = "tok-SECRET-123"

[[channel]]
name = "console"
type = "console"
"#;

fn parse(text: &str) -> Result<Config, String> {
    Config::from_toml(text, Path::new("/etc/inbox-sla/config.toml")).map_err(|e| e.to_string())
}

fn with(extra: &str) -> Result<Config, String> {
    parse(&format!("{MINIMAL}\n{extra}"))
}

#[test]
fn defaults_fill_in() {
    let c = parse(MINIMAL).unwrap();
    assert_eq!(c.wawp.base_url.as_str(), "https://api.wawp.net/");
    assert_eq!(c.sla().threshold, Duration::from_secs(7200));
    assert_eq!(c.policy.tiers.len(), 1);
    assert_eq!(c.policy.tiers[0].notify, vec!["console"]);
    assert_eq!(c.policy.sla.stop_on, StopOn::Read);
    assert_eq!(c.sla().blind_after, Duration::from_secs(600));
    assert_eq!(c.sla().absent_polls, 3);
    assert!(c.sla().auto_replies.is_empty());
    assert_eq!(c.store.keep, Duration::from_secs(90 * 86400));
    assert_eq!(c.wawp.page_size, 100);
    assert!(c.secrets_read);
}

#[test]
fn an_unknown_key_is_an_error_that_names_it() {
    let err = parse(&MINIMAL.replace("[[channel]]", "[sla]\ntreshold = \"1h\"\n\n[[channel]]"))
        .unwrap_err();
    assert!(
        err.contains("treshold") && err.contains("in [sla]"),
        "{err}"
    );
    let err = with(
        "[[channel]]\nname = \"x\"\ntype = \"slack\"\nwebhook_url = \"https://h/1\"\nchanel = 1",
    )
    .unwrap_err();
    assert!(err.contains("chanel"), "{err}");
}

#[test]
fn an_unknown_table_after_another_is_named_at_the_top_level() {
    let err = with("[http]\nlisten = \"127.0.0.1:9187\"\n\n[hq]\nnode = \"a\"").unwrap_err();
    assert!(err.contains("unknown field `hq`"), "{err}");
    assert!(
        err.contains("(top level)") && !err.contains("in [http]"),
        "{err}"
    );
}

#[test]
fn durations_are_humantime_and_bad_or_absurd_ones_are_named() {
    let c = with("[sla]\nthreshold = \"1h 30m\"\npoll_interval = \"90s\"").unwrap();
    assert_eq!(c.sla().threshold, Duration::from_secs(5400));
    let err = with("[sla]\nthreshold = \"two hours\"").unwrap_err();
    assert!(
        err.contains("two hours") && err.contains("threshold"),
        "{err}"
    );
    let err = with("[sla]\npoll_interval = \"500ms\"").unwrap_err();
    assert!(err.contains("poll_interval"), "{err}");
    // The bound itself is allowed: "at least 1s".
    assert_eq!(
        with("[sla]\npoll_interval = \"1s\"").map(|c| c.sla().poll_interval),
        Ok(Duration::from_secs(1))
    );
    for key in ["threshold", "poll_interval", "repeat_after", "blind_after"] {
        let err = with(&format!("[sla]\n{key} = \"300000000000y\"")).unwrap_err();
        assert!(
            err.contains(key) && err.contains("300000000000y"),
            "{key}: {err}"
        );
    }
    let err = with("[sla]\nthreshold = \"11y\"").unwrap_err();
    assert!(err.contains("longer than 10 years"), "{err}");
    let err = with("[delivery]\nretry_for = \"20y\"").unwrap_err();
    assert!(err.contains("retry_for"), "{err}");
    let err = with("[[escalation]]\nafter = \"20y\"").unwrap_err();
    assert!(err.contains("after"), "{err}");
    assert!(with("[sla]\nthreshold = \"10y\"").is_ok());
}

#[test]
fn a_log_level_must_be_a_level_or_directives_with_levels() {
    for ok in [
        "info",
        "DEBUG",
        "warn,inbox_sla=debug",
        "inbox_sla=trace",
        "off",
        "error,hyper=warn",
    ] {
        assert!(with(&format!("[log]\nlevel = \"{ok}\"")).is_ok(), "{ok}");
    }
    for bad in [
        "inf",
        "",
        "inbox_sla",
        "warn,hyper",
        "info=",
        "inbox_sla=loud",
    ] {
        let err = with(&format!("[log]\nlevel = \"{bad}\"")).unwrap_err();
        assert!(
            err.contains("log.level") && err.contains("not a level"),
            "{bad}: {err}"
        );
    }
}

#[test]
fn sla_keys_parse_into_the_policy_the_engine_reads() {
    let c = with(
        "[sla]\nauto_replies = [\"Thanks for contacting*\", \"/^Our hours/\"]\nabsent_polls = 5\nstop_on = \"reply\"\nrepeat_after = \"1h\"",
    )
    .unwrap();
    assert_eq!(c.policy.sla.absent_polls, 5);
    assert!(c.policy.is_auto_reply(Some("Our hours are 9-6")));
    assert!(c.policy.uses_reply_mode());
    assert_eq!(c.policy.repeat_after(), Some(Duration::from_secs(3600)));
    let err = with("[sla]\nauto_replies = [\"/(/\"]").unwrap_err();
    assert!(
        err.contains("auto_replies") && err.contains("invalid regex"),
        "{err}"
    );
    let err = with("[sla]\nabsent_polls = 0").unwrap_err();
    assert!(err.contains("sla.absent_polls"), "{err}");
    let text = c.render();
    assert!(text.contains("auto_replies = ["), "{text}");
    assert!(text.contains("absent_polls = 5"), "{text}");
}

#[test]
fn secret_files_are_read_and_trimmed_and_exactly_one_is_allowed() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("token"), "file-token-xyz\n").unwrap();
    let text = MINIMAL.replace(
        "access_token = \"tok-SECRET-123\"",
        "access_token_file = \"token\"",
    );
    let c = Config::from_toml(&text, &dir.path().join("config.toml")).unwrap();
    assert_eq!(c.instances[0].access_token.expose(), "file-token-xyz");

    let both = MINIMAL.replace(
        "access_token = \"tok-SECRET-123\"",
        "access_token = \"a\"\naccess_token_file = \"token\"",
    );
    let err = Config::from_toml(&both, &dir.path().join("config.toml"))
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("either access_token or access_token_file"),
        "{err}"
    );

    let missing = MINIMAL.replace(
        "access_token = \"tok-SECRET-123\"",
        "access_token_file = \"nope\"",
    );
    let err = Config::from_toml(&missing, &dir.path().join("config.toml"))
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("access_token_file") && err.contains("nope"),
        "{err}"
    );
    // Commands that need no secret do not read it, and do not fail on it.
    let c = Config::parse(&missing, &dir.path().join("config.toml"), Secrets::None).unwrap();
    assert!(!c.secrets_read);
    assert!(c.warnings.is_empty());
}

#[test]
fn a_credential_only_the_service_can_read_is_a_warning_for_check_and_an_error_elsewhere() {
    let text = MINIMAL.replace(
        "access_token = \"tok-SECRET-123\"",
        "access_token_file = \"/run/credentials/inbox-sla-test-absent.service/support-token\"",
    );
    let path = Path::new("/etc/inbox-sla/config.toml");
    let c = Config::parse(&text, path, Secrets::Check).unwrap();
    assert!(!c.secrets_read);
    assert_eq!(c.warnings.len(), 1);
    assert!(
        c.warnings[0].contains("not checked here: only the service can read it"),
        "{:?}",
        c.warnings
    );
    let err = Config::parse(&text, path, Secrets::All)
        .unwrap_err()
        .to_string();
    assert!(err.contains("cannot read /run/credentials/"), "{err}");
    // Any other unreadable file is an error for check too.
    let other = MINIMAL.replace(
        "access_token = \"tok-SECRET-123\"",
        "access_token_file = \"/nonexistent/token\"",
    );
    let err = Config::parse(&other, path, Secrets::Check)
        .unwrap_err()
        .to_string();
    assert!(err.contains("/nonexistent/token"), "{err}");
}

#[test]
fn cross_references_are_checked() {
    let err = with("[[escalation]]\nafter = \"2h\"\nnotify = [\"pager\"]").unwrap_err();
    assert!(err.contains("no channel is named \"pager\""), "{err}");
    let err = with("[[escalation]]\nafter = \"6h\"\n[[escalation]]\nafter = \"2h\"").unwrap_err();
    assert!(err.contains("escalation[1].after"), "{err}");
    let err =
        with("[[escalation]]\nafter = \"2h\"\n[[escalation]]\nafter = \"2h 500ms\"").unwrap_err();
    assert!(
        err.contains("escalation[1].after"),
        "tiers are known by whole seconds: {err}"
    );
    let err = with("[[escalation]]\nafter = \"2h\"\nnotify = []").unwrap_err();
    assert!(err.contains("escalation[0].notify is empty"), "{err}");
    let err = with("[[channel]]\nname = \"console\"\ntype = \"console\"").unwrap_err();
    assert!(err.contains("used twice"), "{err}");
    let err = with("[[channel]]\nname = \"e\"\ntype = \"email\"\nsmtp_host = \"h\"\nfrom = \"a@b.c\"\nto = [\"x@y.z\"]\nwebhook_url = \"https://x\"").unwrap_err();
    assert!(
        err.contains("\"webhook_url\" does not apply to a email channel"),
        "{err}"
    );
}

#[test]
fn urls_must_be_https_unless_loopback_and_never_echo_the_url() {
    assert!(with("[wawp]\nbase_url = \"http://127.0.0.1:8080\"").is_ok());
    assert!(with("[wawp]\nbase_url = \"http://localhost:8080\"").is_ok());
    let err = with("[wawp]\nbase_url = \"http://api.wawp.net\"").unwrap_err();
    assert!(err.contains("wawp.base_url must use https"), "{err}");
    let err = with("[[channel]]\nname = \"s\"\ntype = \"slack\"\nwebhook_url = \"http://hooks.slack.com/services/T/B/SECRETPART\"")
        .unwrap_err();
    assert!(err.contains("must use https"), "{err}");
    assert!(!err.contains("SECRETPART"), "{err}");
}

#[test]
fn the_rendered_config_shows_every_secret_as_stars() {
    let c = with(
        "[[channel]]\nname = \"s\"\ntype = \"slack\"\nwebhook_url = \"https://hooks.slack.com/services/T/B/HOOKSECRET\"\n\
         [[channel]]\nname = \"w\"\ntype = \"webhook\"\nurl = \"https://example.com/x\"\nheaders = { Authorization = \"Bearer HDRSECRET\" }\n\
         [[channel]]\nname = \"m\"\ntype = \"email\"\nsmtp_host = \"smtp.example.com\"\nusername = \"bot\"\npassword = \"PWSECRET\"\nfrom = \"a@example.com\"\nto = [\"b@example.com\"]",
    )
    .unwrap();
    let text = c.render();
    for secret in ["tok-SECRET-123", "HOOKSECRET", "HDRSECRET", "PWSECRET"] {
        assert!(!text.contains(secret), "{secret} leaked:\n{text}");
    }
    assert!(text.contains("access_token = \"***\""), "{text}");
    assert!(text.contains("threshold = \"2h\""), "{text}");
    assert!(text.contains("[[escalation]]"), "{text}");
    let round: toml::Table = toml::from_str(&text).expect("renders valid TOML");
    assert!(
        round.contains_key("sla") && round.contains_key("channel"),
        "{text}"
    );
}

#[test]
fn business_hours_and_rules_are_validated_with_names() {
    let err =
        with("[sla.business_hours]\ntimezone = \"Mars/Base\"\nmon = \"09:00-18:00\"").unwrap_err();
    assert!(err.contains("Mars/Base"), "{err}");
    let err = with("[sla.business_hours]\ntimezone = \"Africa/Cairo\"\nmon = \"18:00-09:00\"")
        .unwrap_err();
    assert!(err.contains("sla.business_hours.mon"), "{err}");
    let err = with("[sla.business_hours]\ntimezone = \"Africa/Cairo\"\nmon = \"09:00-18:00\"\nholidays = [\"2026-13-01\"]")
        .unwrap_err();
    assert!(err.contains("2026-13-01"), "{err}");
    let err = with("[sla.business_hours]\ntimezone = \"Africa/Cairo\"\nmonday = \"09:00-18:00\"")
        .unwrap_err();
    assert!(err.contains("monday"), "{err}");
    let err = with("[[rule]]\nmatch = [\"name:/(/\"]\nignore = true").unwrap_err();
    assert!(err.contains("rule[0].match"), "{err}");
    let err = with("[[rule]]\nmatch = [\"x\"]\nbusiness_hours = true").unwrap_err();
    assert!(
        err.contains("[sla.business_hours] is not configured"),
        "{err}"
    );
    let c = with(
        "[[rule]]\nmatch = [\"2010*@c.us\"]\nescalation = [{ after = \"15m\", notify = [\"console\"] }]",
    )
    .unwrap();
    assert_eq!(
        c.policy.rules[0].escalation.as_ref().unwrap()[0].after,
        Duration::from_secs(900)
    );
    let c = with(
        "[sla.business_hours]\ntimezone = \"Africa/Cairo\"\ntue = \"09:00-13:00,14:00-18:00\"",
    )
    .unwrap();
    assert!(
        c.render().contains("tue = \"09:00-13:00,14:00-18:00\""),
        "{}",
        c.render()
    );
}

#[test]
fn a_readable_file_with_inline_secrets_gets_a_warning() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("config.toml");
    std::fs::write(&path, MINIMAL).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
    let c = Config::load(&path).unwrap();
    assert!(
        c.warnings
            .iter()
            .any(|w| w.contains("readable by group or others")),
        "{:?}",
        c.warnings
    );
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
    assert!(Config::load(&path).unwrap().warnings.is_empty());
}

#[test]
fn store_keep_and_delivery_limits_are_checked() {
    assert_eq!(
        with("[store]\nkeep = \"30d\"").unwrap().store.keep,
        Duration::from_secs(30 * 86400)
    );
    assert!(
        with("[store]\nkeep = \"1h\"")
            .unwrap_err()
            .contains("store.keep")
    );
    assert!(
        with("[delivery]\ntimeout = \"0s\"")
            .unwrap_err()
            .contains("delivery.timeout")
    );
    assert!(
        with("[delivery]\nretry_for = \"0s\"")
            .unwrap_err()
            .contains("delivery.retry_for")
    );
}

#[test]
fn a_channel_table_is_read_by_its_type_and_errors_name_the_channel_and_key() {
    // A key no type knows: the channel, its type, and only that type's keys.
    let err = with("[[channel]]\nname = \"s\"\ntype = \"slack\"\nwebhook_url = \"https://h/1\"\nwebhok_url_file = \"x\"")
        .unwrap_err();
    assert!(
        err.contains("line 15 in [[channel]]")
            && err.contains(
                "channel[1] (\"s\"): unknown field `webhok_url_file` for a slack channel"
            )
            && err.contains("expected one of `name`, `type`, `webhook_url`, `webhook_url_file`")
            && !err.contains("smtp_host"),
        "{err}"
    );
    // A key of another type says whose it is.
    let err = with("[[channel]]\nname = \"c\"\ntype = \"console\"\nrouting_key = \"SECRET-KEY-1\"")
        .unwrap_err();
    assert!(
        err.contains("line 14 in [[channel]]")
            && err.contains(
                "\"routing_key\" does not apply to a console channel (it is a key of pagerduty)"
            ),
        "{err}"
    );
    assert!(!err.contains("SECRET-KEY-1"), "{err}");
    // An unknown type lists every known one.
    let err = with("[[channel]]\nname = \"x\"\ntype = \"sms\"").unwrap_err();
    let types: Vec<&str> = crate::notify::TYPES.iter().map(|t| t.name()).collect();
    assert!(
        err.contains(&format!("type \"sms\" is not one of {}", types.join(", "))),
        "{err}"
    );
    assert_eq!(types.len(), 7, "{types:?}");
    let err = with("[[channel]]\ntype = \"console\"").unwrap_err();
    assert!(err.contains("channel[1]: missing field `name`"), "{err}");
    // The same in an inline table.
    let err = parse(&format!(
        "channel = [{{ name = \"c\", type = \"console\", severity = \"info\" }}]\n{}",
        MINIMAL.replace("[[channel]]\nname = \"console\"\ntype = \"console\"\n", "")
    ))
    .unwrap_err();
    assert!(
        err.contains("line 1, column 44") && err.contains("\"severity\" does not apply"),
        "{err}"
    );
    // A value of the wrong type names the key; a secret key's value is never quoted.
    let err = with("[[channel]]\nname = \"e\"\ntype = \"email\"\nsmtp_host = \"h\"\nsmtp_port = \"x\"\nfrom = \"a@b.c\"\nto = [\"x@y.z\"]").unwrap_err();
    assert!(
        err.contains("line 15 in [[channel]], column 13, key `smtp_port`: invalid type"),
        "{err}"
    );
    let err = with("[[channel]]\nname = \"w\"\ntype = \"webhook\"\nurl = \"https://e.com/x\"\n[channel.headers]\nAuthorization = 987654321").unwrap_err();
    assert!(
        err.contains("in [channel.headers]") && err.contains("the value of `headers` is not valid"),
        "{err}"
    );
    assert!(!err.contains("987654321"), "{err}");
}

#[test]
fn each_channel_type_declares_its_secrets_and_its_shape() {
    let c = with(
        "[[channel]]\nname = \"s\"\ntype = \"slack\"\nwebhook_url = \"https://hooks.slack.com/services/T/B/HOOKSECRET\"\n\
         [[channel]]\nname = \"w\"\ntype = \"webhook\"\nurl = \"https://example.com/URLSECRET\"\nheaders = { Authorization = \"Bearer HDRSECRET\" }\n\
         [[channel]]\nname = \"m\"\ntype = \"email\"\nsmtp_host = \"smtp.example.com\"\nusername = \"bot\"\npassword = \"PWSECRET\"\nfrom = \"a@example.com\"\nto = [\"b@example.com\"]\n\
         [[channel]]\nname = \"pd\"\ntype = \"pagerduty\"\nrouting_key = \"PDSECRET\"\n\
         [[channel]]\nname = \"am\"\ntype = \"alertmanager\"\nurls = [\"http://am:9093\"]\n\
         [[channel]]\nname = \"t\"\ntype = \"teams\"\nwebhook_url = \"https://example.com/workflows/TEAMSSECRET\"",
    )
    .unwrap();
    let secrets: Vec<String> = c.secrets().iter().map(|s| s.expose().to_string()).collect();
    let text = c.render();
    for secret in [
        "tok-SECRET-123",
        "HOOKSECRET",
        "URLSECRET",
        "HDRSECRET",
        "PWSECRET",
        "PDSECRET",
        "TEAMSSECRET",
    ] {
        assert!(!text.contains(secret), "{secret} rendered:\n{text}");
        assert!(
            secrets.iter().any(|s| s.contains(secret)),
            "{secret} is not declared: {}",
            secrets.len()
        );
    }
    let shapes: Vec<(&str, crate::alert::Shape)> = c
        .channels
        .iter()
        .map(|ch| (ch.type_name(), ch.shape()))
        .collect();
    use crate::alert::Shape::{Digest, PerChat};
    assert_eq!(
        shapes,
        [
            ("console", Digest),
            ("slack", Digest),
            ("webhook", Digest),
            ("email", Digest),
            ("pagerduty", PerChat),
            ("alertmanager", PerChat),
            ("teams", Digest)
        ]
    );
    // Each channel renders in its type's key order, after its name and type.
    assert!(
        text.contains("name = \"m\"\ntype = \"email\"\nsmtp_host = \"smtp.example.com\"\nsmtp_port = 587\ntls = \"starttls\"\nusername = \"bot\"\npassword = \"***\"\nfrom"),
        "{text}"
    );
    assert!(
        text.contains("name = \"pd\"\ntype = \"pagerduty\"\nrouting_key = \"***\"\nseverity = \"error\"\nurl = \"https://events.pagerduty.com/v2/enqueue\""),
        "{text}"
    );
}
