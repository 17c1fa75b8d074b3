//! What the daemon sees right now, for people: the status page at `GET /` and the JSON
//! under `/api/v1` (docs/spec.md section 11).
//!
//! Everything is read from the store at request time, so every node of an HA group shows
//! the same chats; polling health comes from the store (failures, leases) and, for the
//! instances this node polls, from its own last successful poll. The page is one
//! server-rendered document: inline CSS and SVG, no script, no external asset, so it works
//! on an air-gapped host and in any browser.

use crate::alert::{chat_kind, short_duration, utc_time};
use crate::config::Config;
use crate::report::{self, Report};
use crate::store::{Lease, Mute, SourceState, Store, StoreError};
use crate::untrusted;
use serde_json::{Value, json};
use std::collections::HashMap;
use std::fmt::Write;

/// How often the page reloads itself.
pub const REFRESH_SECONDS: u32 = 30;

/// A chat waiting now.
#[derive(Debug, Clone, PartialEq)]
pub struct WaitingChat {
    pub instance: String,
    pub jid: String,
    pub name: Option<String>,
    pub started_at: i64,
    /// Wall-clock age.
    pub age: i64,
    /// Age on the chat's SLA clock (business time where it applies).
    pub sla_age: i64,
    /// The tiers fired so far, by `after` (seconds).
    pub fired: Vec<u64>,
    /// The next tier that has not fired and the SLA-clock seconds left until it does
    /// (0: it fires at the next poll). `None` when every tier fired or the chat is no
    /// longer watched by the current policy.
    pub next_tier: Option<(u64, i64)>,
    pub unread: Option<i64>,
    pub preview: Option<String>,
    pub muted: bool,
    /// Who acknowledged the episode, when, and until when it holds the next tier.
    pub ack: Option<crate::sla::Ack>,
}

/// One instance's polling health.
#[derive(Debug, Clone, PartialEq)]
pub struct InstanceHealth {
    pub name: String,
    /// Seconds since this node last polled it successfully; `None` when it has not (yet),
    /// or another node polls it.
    pub polled_ago: Option<i64>,
    pub failing_since: Option<i64>,
    pub last_error: Option<String>,
    /// Under HA: the node holding its lease, while the lease is live.
    pub holder: Option<String>,
    pub healthy: bool,
}

/// Everything the page shows except the report.
#[derive(Debug, Clone, PartialEq)]
pub struct Now {
    pub generated_at: i64,
    pub node: Option<String>,
    pub instances: Vec<InstanceHealth>,
    /// Oldest first.
    pub waiting: Vec<WaitingChat>,
    pub mutes: Vec<Mute>,
    pub pending: u64,
    pub dead: u64,
}

/// This node's own view of when it last polled each instance successfully (seconds ago),
/// from the daemon's health tracker.
pub type PolledAgo = HashMap<String, i64>;

/// Reads what is waiting now.
pub async fn now(
    store: &Store,
    config: &Config,
    polled_ago: &PolledAgo,
    now: i64,
) -> Result<Now, StoreError> {
    let mutes = store.mutes(now).await?;
    let sources: HashMap<String, SourceState> = store.sources().await?.into_iter().collect();
    let leases: HashMap<String, Lease> = store
        .leases(now * 1000)
        .await?
        .into_iter()
        .filter(|l| l.live())
        .map(|l| (l.instance.clone(), l))
        .collect();
    let counts = store.outbox_counts().await?;
    let max_age = config.healthy_within().as_secs() as i64;
    let instances = config
        .instances
        .iter()
        .map(|i| {
            let source = sources.get(&i.name);
            let holder = leases.get(&i.name).map(|l| l.holder.clone());
            let polled_ago = polled_ago.get(&i.name).copied();
            let failing_since = source.and_then(|s| s.failing_since);
            let here = config
                .ha
                .as_ref()
                .is_none_or(|ha| holder.as_ref() == Some(&ha.node));
            let healthy = failing_since.is_none()
                && if here {
                    polled_ago.is_some_and(|a| a <= max_age)
                } else {
                    holder.is_some()
                };
            InstanceHealth {
                name: i.name.clone(),
                polled_ago,
                failing_since,
                last_error: source.and_then(|s| s.last_error.clone()),
                holder,
                healthy,
            }
        })
        .collect();
    let mut waiting: Vec<WaitingChat> = store
        .all_episodes()
        .await?
        .into_iter()
        .map(|(instance, ep)| {
            let chat = config.policy.for_chat(&ep.jid, ep.name.as_deref());
            let age = (now - ep.started_at).max(0);
            let sla_age = chat.map_or(age, |c| c.age(ep.started_at, now));
            let next_tier = chat.and_then(|c| {
                c.tiers
                    .iter()
                    .map(|t| t.after.as_secs())
                    .find(|after| !ep.fired.contains(after))
                    .map(|after| (after, (after as i64 - sla_age).max(0)))
            });
            WaitingChat {
                muted: mutes.iter().any(|m| m.jid == ep.jid),
                instance,
                name: ep.name,
                started_at: ep.started_at,
                age,
                sla_age,
                fired: ep.fired,
                next_tier,
                unread: ep.unread,
                preview: ep.last_message.and_then(|m| m.body),
                ack: ep.ack,
                jid: ep.jid,
            }
        })
        .collect();
    waiting.sort_by(|a, b| (a.started_at, &a.jid).cmp(&(b.started_at, &b.jid)));
    Ok(Now {
        generated_at: now,
        node: config.ha.as_ref().map(|h| h.node.clone()),
        instances,
        waiting,
        mutes,
        pending: counts.open(),
        dead: counts.dead,
    })
}

/// The report over the closed episodes of the last `since` seconds (whole days: that many
/// calendar days, see [`report::window_start`]), for `instance` or all.
pub async fn report(
    store: &Store,
    config: &Config,
    now: i64,
    since: i64,
    instance: Option<&str>,
) -> Result<Report, StoreError> {
    let from = report::window_start(now, since, report::timezone(&config.policy));
    let history = store.history(from, instance).await?;
    Ok(report::build(&history, &config.policy, from, now))
}

/// Why a report asked for `instance` would be a typo's empty report, if it would: the
/// instance is neither configured nor in the report's history. `report --instance` (exit
/// 2) and `GET /api/v1/report?instance=` (400) answer the same (section 11).
pub fn unknown_instance(config: &Config, report: &Report, instance: &str) -> Option<String> {
    if report.overall.episodes > 0 || config.instance(instance).is_some() {
        return None;
    }
    let known: Vec<&str> = config.instances.iter().map(|i| i.name.as_str()).collect();
    Some(format!(
        "no such instance in the config and no history for it (configured: {})",
        known.join(", ")
    ))
}

impl Now {
    /// `GET /api/v1/waiting`.
    pub fn json(&self) -> Value {
        json!({
            "generated_at": self.generated_at,
            "node": self.node,
            "instances": self.instances.iter().map(|i| json!({
                "instance": i.name, "healthy": i.healthy,
                "last_successful_poll_seconds_ago": i.polled_ago,
                "failing_since": i.failing_since, "last_error": i.last_error,
                "session": i.last_error.as_deref().and_then(crate::wawp::session_state_of),
                "lease_holder": i.holder,
            })).collect::<Vec<_>>(),
            "waiting": self.waiting.iter().map(|w| json!({
                "instance": w.instance, "id": w.jid, "name": w.name, "kind": chat_kind(&w.jid),
                "waiting_since": w.started_at, "waiting_seconds": w.age,
                "sla_seconds": w.sla_age, "tiers_fired": w.fired,
                "next_tier_seconds": w.next_tier.map(|(after, _)| after),
                "next_tier_in_seconds": w.next_tier.map(|(_, left)| left),
                "unread_count": w.unread, "last_message": w.preview, "muted": w.muted,
                "acknowledged": w.ack.as_ref().is_some_and(|a| a.holds(self.generated_at)),
                "acknowledged_by": w.ack.as_ref().map(|a| a.by.clone()),
                "acknowledged_at": w.ack.as_ref().map(|a| a.at),
                "acknowledged_until": w.ack.as_ref().map(|a| a.until),
            })).collect::<Vec<_>>(),
            "mutes": self.mutes.iter().map(|m| json!({
                "id": m.jid, "until": m.until, "reason": m.reason,
            })).collect::<Vec<_>>(),
            "outbox": {"pending": self.pending, "dead": self.dead},
        })
    }
}

/// Escapes text for HTML content and attribute values, after `untrusted::display` has
/// removed what could spoof the page (bidi overrides, invisible characters).
fn esc(text: &str, max: usize) -> String {
    escape(&untrusted::display(text, max))
}

/// The whole of `text` for an attribute a script or a test reads back (`data-id`): not
/// shortened, only escaped, control characters replaced (HTML forbids them).
fn attr(text: &str) -> String {
    let clean: String = text
        .chars()
        .map(|c| if c.is_control() { '\u{FFFD}' } else { c })
        .collect();
    escape(&clean)
}

fn escape(shown: &str) -> String {
    let mut out = String::with_capacity(shown.len());
    for c in shown.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// One button: a POST form to `api/v1/<action>` (relative, so it works wherever a proxy
/// mounts the page) with the chat, its instance and `extra` as hidden fields. No script:
/// the page stays script-free, and the cross-site check guards the POST.
fn form(
    action: &str,
    jid: &str,
    instance: Option<&str>,
    extra: &[(&str, &str)],
    label: &str,
) -> String {
    let mut f = format!(
        "<form method=\"post\" action=\"api/v1/{action}\"><input type=\"hidden\" name=\"chat\" value=\"{}\">",
        attr(jid)
    );
    if let Some(i) = instance {
        let _ = write!(
            f,
            "<input type=\"hidden\" name=\"instance\" value=\"{}\">",
            attr(i)
        );
    }
    for (name, value) in extra {
        let _ = write!(
            f,
            "<input type=\"hidden\" name=\"{name}\" value=\"{}\">",
            attr(value)
        );
    }
    let _ = write!(
        f,
        "<button type=\"submit\" class=\"{action}\">{label}</button></form>"
    );
    f
}

/// A waiting chat's buttons: *Acknowledge* (unless an acknowledgement holds), *Mute 1h*
/// and *Mute 4h*, or *Unmute* for a muted chat.
fn buttons(w: &WaitingChat, now: i64) -> String {
    let mut b = String::new();
    if !w.ack.as_ref().is_some_and(|a| a.holds(now)) {
        b.push_str(&form("ack", &w.jid, Some(&w.instance), &[], "Acknowledge"));
    }
    if w.muted {
        b.push_str(&form("unmute", &w.jid, None, &[], "Unmute"));
    } else {
        b.push_str(&form(
            "mute",
            &w.jid,
            Some(&w.instance),
            &[("for", "1h")],
            "Mute 1h",
        ));
        b.push_str(&form(
            "mute",
            &w.jid,
            Some(&w.instance),
            &[("for", "4h")],
            "Mute 4h",
        ));
    }
    b
}

/// Phones first: every cell may break anywhere (`overflow-wrap: anywhere` also lets the
/// tables shrink to the window), charts scale to the width, and below 40em the tables'
/// rows become labelled blocks, so nothing scrolls sideways at 390 px.
const STYLE: &str = "body{font:14px/1.4 system-ui,sans-serif;margin:1.5em;color:#1d2330;background:#fafbfc}\
h1{font-size:1.4em;margin:0 0 .2em}h2{font-size:1.1em;margin:1.6em 0 .4em}p{overflow-wrap:anywhere}\
table{border-collapse:collapse;background:#fff;max-width:100%}th,td{padding:.3em .7em;border-bottom:1px solid #e3e6eb;text-align:left;vertical-align:top;overflow-wrap:anywhere}\
th{font-weight:600;color:#4a5263;white-space:nowrap;overflow-wrap:normal}td.n{text-align:right;font-variant-numeric:tabular-nums}\
.ok{color:#157a3b}.bad{color:#b3261e;font-weight:600}.muted{color:#8a90a0}.due{color:#b3261e}\
.meta{color:#4a5263}.ack{color:#157a3b}td.act form{display:inline-block;margin:0 .3em .3em 0}\
td.act button{font:inherit;padding:.2em .6em;border:1px solid #c5cad3;border-radius:4px;background:#fff;cursor:pointer}td.act button.ack{border-color:#157a3b;color:#157a3b}.cards{display:flex;gap:1em;flex-wrap:wrap}.card{background:#fff;border:1px solid #e3e6eb;padding:.6em 1em;min-width:8em}\
.card b{display:block;font-size:1.5em}svg text{font:11px system-ui,sans-serif;fill:#4a5263}\
svg.chart{display:block;width:100%;height:auto}#attainment{max-width:560px}#distribution{max-width:510px}\
@media (max-width:40em){body{margin:.75em}.cards{gap:.5em}.card{min-width:6em}\
table.rows,table.rows tbody,table.rows tr,table.rows td{display:block}table.rows thead{display:none}\
table.rows tr{border-bottom:1px solid #e3e6eb;padding:.4em 0}table.rows td{border:0;padding:.1em .6em;text-align:left}\
table.rows td[data-label]::before{content:attr(data-label) \": \";color:#4a5263;font-weight:600}}";

/// The status page.
pub fn page(now: &Now, report: &Report) -> String {
    let mut h = String::with_capacity(16 * 1024);
    let _ = write!(
        h,
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta http-equiv=\"refresh\" content=\"{REFRESH_SECONDS}\">\
         <meta name=\"viewport\" content=\"width=device-width,initial-scale=1\">\
         <title>inbox-sla: {} waiting</title><style>{STYLE}</style></head><body>",
        now.waiting.len()
    );
    let breached = now.waiting.iter().filter(|w| !w.fired.is_empty()).count();
    let _ = write!(
        h,
        "<h1>inbox-sla</h1><p class=\"meta\">As of {}{}; this page refreshes every {REFRESH_SECONDS} s.</p>",
        utc_time(now.generated_at),
        now.node
            .as_ref()
            .map(|n| format!(", node {}", esc(n, 64)))
            .unwrap_or_default()
    );
    let attainment = report
        .overall
        .within_sla_percent()
        .map_or("-".to_string(), |p| format!("{p:.1}%"));
    let _ = write!(
        h,
        "<div class=\"cards\">\
         <div class=\"card\" id=\"card-waiting\"><b>{}</b>waiting now</div>\
         <div class=\"card\" id=\"card-breached\"><b class=\"{}\">{breached}</b>past a tier</div>\
         <div class=\"card\" id=\"card-sla\"><b>{attainment}</b>within SLA, 7 days</div>\
         <div class=\"card\" id=\"card-outbox\"><b class=\"{}\">{} / {}</b>outbox pending / dead</div></div>",
        now.waiting.len(),
        if breached > 0 { "bad" } else { "ok" },
        if now.dead > 0 { "bad" } else { "" },
        now.pending,
        now.dead,
    );

    h.push_str("<h2>Instances</h2><table id=\"instances\" class=\"rows\"><thead><tr><th>Instance</th><th>Health</th><th>Last successful poll</th><th>Polled by</th><th>Last error</th></tr></thead><tbody>");
    for i in &now.instances {
        let _ = write!(
            h,
            "<tr><td data-label=\"Instance\">{}</td><td data-label=\"Health\" class=\"{}\">{}</td>\
             <td data-label=\"Last successful poll\">{}</td><td data-label=\"Polled by\">{}</td>\
             <td data-label=\"Last error\">{}</td></tr>",
            esc(&i.name, 64),
            if i.healthy { "ok" } else { "bad" },
            if i.healthy {
                "polling".to_string()
            } else if let (Some(state), Some(since)) = (
                i.last_error
                    .as_deref()
                    .and_then(crate::wawp::session_state_of),
                i.failing_since,
            ) {
                format!(
                    "WhatsApp session {} for {}",
                    esc(state, 40),
                    short_duration(now.generated_at - since)
                )
            } else if let Some(since) = i.failing_since {
                format!("failing for {}", short_duration(now.generated_at - since))
            } else {
                "no recent poll".to_string()
            },
            i.polled_ago
                .map_or("-".to_string(), |a| format!("{} ago", short_duration(a))),
            i.holder
                .as_deref()
                .map_or("this node".to_string(), |n| esc(n, 64)),
            i.last_error
                .as_deref()
                .map_or(String::new(), |e| esc(e, 200)),
        );
    }
    h.push_str("</tbody></table>");

    let _ = write!(h, "<h2>Waiting now ({})</h2>", now.waiting.len());
    if now.waiting.is_empty() {
        h.push_str("<p id=\"waiting-none\" class=\"ok\">Nobody is waiting.</p>");
    } else {
        h.push_str("<table id=\"waiting\" class=\"rows\"><thead><tr><th>Waiting</th><th>Next tier</th><th>Chat</th><th>Instance</th><th>Unread</th><th>Last message</th><th>Act</th></tr></thead><tbody>");
        for w in &now.waiting {
            let acked = w.ack.as_ref().map_or(String::new(), |a| {
                format!(
                    "<br><span class=\"ack\">acknowledged by {} at {}{}</span>",
                    esc(&a.by, 60),
                    utc_time(a.at),
                    if a.holds(now.generated_at) {
                        format!(", holds {}", short_duration(a.until - now.generated_at))
                    } else {
                        ", ran out".to_string()
                    }
                )
            });
            let next = match w.next_tier {
                Some((after, 0)) => format!(
                    "<span class=\"due\">{} due now</span>",
                    short_duration(after as i64)
                ),
                Some((after, left)) => format!(
                    "{} in {}",
                    short_duration(after as i64),
                    short_duration(left)
                ),
                None if w.fired.is_empty() => "-".to_string(),
                None => "every tier fired".to_string(),
            };
            let _ = write!(
                h,
                "<tr class=\"{}\" data-id=\"{}\"><td class=\"n age\" data-label=\"Waiting\">{}{}</td>\
                 <td class=\"next\" data-label=\"Next tier\">{next}{}{acked}</td>\
                 <td data-label=\"Chat\"><span class=\"name\">{}</span><br><span class=\"muted\">{}</span></td>\
                 <td data-label=\"Instance\">{}</td><td class=\"n\" data-label=\"Unread\">{}</td>\
                 <td data-label=\"Last message\">{}</td><td class=\"act\" data-label=\"Act\">{}</td></tr>",
                if w.muted { "muted" } else { "" },
                attr(&w.jid),
                short_duration(w.age),
                if w.sla_age != w.age {
                    format!(
                        "<br><span class=\"muted\">{} open</span>",
                        short_duration(w.sla_age)
                    )
                } else {
                    String::new()
                },
                if w.muted { " (muted)" } else { "" },
                esc(w.name.as_deref().unwrap_or("(no name)"), 60),
                esc(&w.jid, 128),
                esc(&w.instance, 64),
                match w.unread {
                    Some(-1) => "marked".to_string(),
                    Some(n) => n.to_string(),
                    None => "?".to_string(),
                },
                w.preview.as_deref().map_or(String::new(), |p| esc(p, 120)),
                buttons(w, now.generated_at),
            );
        }
        h.push_str("</tbody></table>");
    }

    let _ = write!(h, "<h2>Muted chats ({})</h2>", now.mutes.len());
    if now.mutes.is_empty() {
        h.push_str("<p class=\"muted\">None.</p>");
    } else {
        h.push_str(
            "<table id=\"mutes\" class=\"rows\"><thead><tr><th>Chat</th><th>Until</th><th>Left</th><th>Reason</th><th>Act</th></tr></thead><tbody>",
        );
        for m in &now.mutes {
            let _ = write!(
                h,
                "<tr data-id=\"{}\"><td data-label=\"Chat\">{}</td><td data-label=\"Until\">{}</td>\
                 <td class=\"n\" data-label=\"Left\">{}</td><td data-label=\"Reason\">{}</td>\
                 <td class=\"act\" data-label=\"Act\">{}</td></tr>",
                attr(&m.jid),
                esc(&m.jid, 128),
                utc_time(m.until),
                short_duration(m.until - now.generated_at),
                m.reason.as_deref().map_or(String::new(), |r| esc(r, 120)),
                form("unmute", &m.jid, None, &[], "Unmute"),
            );
        }
        h.push_str("</tbody></table>");
    }

    let _ = write!(
        h,
        "<h2>SLA attainment, last {} days</h2>",
        report.days.len()
    );
    h.push_str(&attainment_chart(report));
    let _ = write!(
        h,
        "<h2>How long customers waited, last {} days</h2>",
        report.days.len()
    );
    h.push_str(&distribution_chart(report));
    let _ = writeln!(
        h,
        "<p class=\"meta\">Waits that ended, on the SLA clock ({}). \
         JSON: <a href=\"api/v1/waiting\">/api/v1/waiting</a>, \
         <a href=\"api/v1/report?since=7d\">/api/v1/report?since=7d</a>.</p></body></html>",
        report.timezone.name()
    );
    h
}

/// One bar per day: the share of that day's ended waits answered within the SLA.
fn attainment_chart(report: &Report) -> String {
    // Every day of the report, as `/api/v1/report` lists them: the chart and the API agree.
    let days: Vec<&report::Day> = report.days.iter().collect();
    let (hgt, left, bottom, bar, gap) = (200, 40, 30, 60, 14);
    let w = (left + 10 + days.len() as i32 * (bar + gap)).max(560);
    let plot = hgt - bottom - 10;
    // Width 100% (CSS caps it): the viewBox scales the chart down to a phone.
    let mut s = format!(
        "<svg id=\"attainment\" class=\"chart\" role=\"img\" aria-label=\"SLA attainment per day\" \
         xmlns=\"http://www.w3.org/2000/svg\" width=\"100%\" viewBox=\"0 0 {w} {hgt}\">"
    );
    for pct in [0, 50, 100] {
        let y = 10 + plot - plot * pct / 100;
        let _ = write!(
            s,
            "<line x1=\"{left}\" x2=\"{w}\" y1=\"{y}\" y2=\"{y}\" stroke=\"#e3e6eb\"/>\
             <text x=\"{}\" y=\"{}\" text-anchor=\"end\">{pct}%</text>",
            left - 6,
            y + 4
        );
    }
    for (k, d) in days.iter().enumerate() {
        let x = left + 10 + k as i32 * (bar + gap);
        let label = d.date.get(5..).unwrap_or(&d.date);
        let _ = write!(
            s,
            "<text x=\"{}\" y=\"{}\" text-anchor=\"middle\">{label}</text>",
            x + bar / 2,
            hgt - 10
        );
        if d.episodes == 0 {
            let _ = write!(
                s,
                "<text class=\"bar-empty\" x=\"{}\" y=\"{}\" text-anchor=\"middle\">none</text>",
                x + bar / 2,
                10 + plot - 4
            );
            continue;
        }
        let pct = 100.0 * d.within_sla as f64 / d.episodes as f64;
        let height = (plot as f64 * pct / 100.0).round() as i32;
        let colour = if pct >= 90.0 {
            "#2e8b57"
        } else if pct >= 70.0 {
            "#d4a017"
        } else {
            "#c0392b"
        };
        let _ = write!(
            s,
            "<rect class=\"bar\" data-date=\"{}\" x=\"{x}\" y=\"{}\" width=\"{bar}\" height=\"{height}\" fill=\"{colour}\">\
             <title>{}: {} of {} within SLA</title></rect>\
             <text x=\"{}\" y=\"{}\" text-anchor=\"middle\">{pct:.0}%</text>",
            d.date,
            10 + plot - height,
            d.date,
            d.within_sla,
            d.episodes,
            x + bar / 2,
            (10 + plot - height - 4).max(10),
        );
    }
    s.push_str("</svg>");
    s
}

/// Horizontal bars: how many ended waits fell in each bucket.
fn distribution_chart(report: &Report) -> String {
    let labels = report::bucket_labels();
    let max = report
        .distribution
        .iter()
        .copied()
        .max()
        .unwrap_or(0)
        .max(1);
    let (row, left, width) = (22, 70, 380);
    let hgt = row * labels.len() as i32 + 8;
    let mut s = format!(
        "<svg id=\"distribution\" class=\"chart\" role=\"img\" aria-label=\"Distribution of waits\" \
         xmlns=\"http://www.w3.org/2000/svg\" width=\"100%\" viewBox=\"0 0 {} {hgt}\">",
        left + width + 60
    );
    for (k, (label, n)) in labels.iter().zip(report.distribution.iter()).enumerate() {
        let y = 4 + k as i32 * row;
        let len = (width as f64 * *n as f64 / max as f64).round() as i32;
        let colour = "#5b8def";
        let _ = write!(
            s,
            "<text x=\"{}\" y=\"{}\" text-anchor=\"end\">{}</text>\
             <rect x=\"{left}\" y=\"{y}\" width=\"{len}\" height=\"{}\" fill=\"{colour}\"/>\
             <text x=\"{}\" y=\"{}\">{n}</text>",
            left - 8,
            y + 14,
            esc(label, 16),
            row - 6,
            left + len + 6,
            y + 14,
        );
    }
    s.push_str("</svg>");
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn customer_text_cannot_inject_markup_or_spoof_the_page() {
        assert_eq!(
            esc("<script>alert(\"x\")</script>&", 100),
            "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;&amp;"
        );
        assert!(!esc("abc\u{202E}def", 100).contains('\u{202E}'));
    }
}
