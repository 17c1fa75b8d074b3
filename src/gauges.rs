//! The per-instance gauges of `/metrics` (what alerts use: chats waiting and breached,
//! the last successful poll, the session's state, the lease held), kept in one table and
//! written straight into the scrape.
//!
//! Through the metrics recorder each of these lines costs a key lookup, a label set built
//! and hashed and a few strings per scrape: at 10,000 instances (50,000 lines) that was
//! most of a 116 ms scrape. Here a line is a row of plain numbers written in order. The
//! table also forgets an instance the configuration no longer has ([`Gauges::retain`]),
//! where the recorder kept its last values for ever.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::{Arc, Mutex};

/// One instance's row; `None` is a series not served (not known yet).
#[derive(Debug, Default, Clone)]
struct Row {
    waiting: Option<u64>,
    breached: Option<u64>,
    last_ok: Option<i64>,
    working: Option<bool>,
    /// Under HA: this node's name and whether it polls the instance.
    held: Option<(Arc<str>, bool)>,
}

/// The table, shared by the poll loops (writers) and `/metrics` (the reader).
#[derive(Debug, Default)]
pub struct Gauges {
    rows: Mutex<BTreeMap<String, Row>>,
}

/// A family: its name, help text and how a row gives its value.
struct Family {
    name: &'static str,
    help: &'static str,
    value: fn(&Row) -> Option<i64>,
}

const FAMILIES: [Family; 5] = [
    Family {
        name: "inbox_sla_chats_waiting",
        help: "Chats waiting for an answer, by instance.",
        value: |r| r.waiting.map(|n| n as i64),
    },
    Family {
        name: "inbox_sla_chats_breached",
        help: "Waiting chats past at least one escalation tier, by instance.",
        value: |r| r.breached.map(|n| n as i64),
    },
    Family {
        name: "inbox_sla_last_successful_poll_timestamp_seconds",
        help: "Unix time of the last successful poll, by instance.",
        value: |r| r.last_ok,
    },
    Family {
        name: "inbox_sla_session_working",
        help: "1 while the instance's WhatsApp session (wawp_instance) is WORKING, 0 while it is not (unlinked, stopped, failed).",
        value: |r| r.working.map(i64::from),
    },
    Family {
        name: "inbox_sla_instance_held",
        help: "1 where this node (node) polls the instance (wawp_instance), 0 where it stands by.",
        value: |r| r.held.as_ref().map(|(_, held)| i64::from(*held)),
    },
];

impl Gauges {
    fn with(&self, instance: &str, f: impl FnOnce(&mut Row)) {
        let mut rows = self.rows.lock().unwrap_or_else(|p| p.into_inner());
        match rows.get_mut(instance) {
            Some(row) => f(row),
            None => f(rows.entry(instance.to_string()).or_default()),
        }
    }

    /// A successful poll at `now` (Unix seconds) that saw `waiting` chats waiting and
    /// `breached` of them past a tier.
    pub fn polled(&self, instance: &str, waiting: usize, breached: usize, now: i64) {
        self.with(instance, |r| {
            r.waiting = Some(waiting as u64);
            r.breached = Some(breached as u64);
            r.last_ok = Some(now);
        });
    }

    /// The session's state as the engine last gave it (`None`: not checked, not served).
    pub fn session(&self, instance: &str, working: Option<bool>) {
        self.with(instance, |r| r.working = working);
    }

    /// Whether `node` polls `instance` (HA). A node that stands by stops serving the
    /// instance's waiting, breached and session figures: they were true when it last
    /// polled, and the holder's are the ones that count.
    pub fn held(&self, instance: &str, node: &str, held: bool) {
        self.with(instance, |r| {
            match &mut r.held {
                Some((n, h)) if &**n == node => *h = held,
                other => *other = Some((Arc::from(node), held)),
            }
            if !held {
                r.waiting = None;
                r.breached = None;
                r.working = None;
            }
        });
    }

    /// Forgets the instances `keep` says no (removed from the configuration).
    pub fn retain(&self, keep: impl Fn(&str) -> bool) {
        let mut rows = self.rows.lock().unwrap_or_else(|p| p.into_inner());
        rows.retain(|name, _| keep(name));
    }

    /// Appends the families with at least one series, in the text exposition format,
    /// instances in name order.
    pub fn render(&self, out: &mut String) {
        let rows = self.rows.lock().unwrap_or_else(|p| p.into_inner());
        out.reserve(rows.len() * 5 * 80);
        for family in &FAMILIES {
            if !rows.values().any(|r| (family.value)(r).is_some()) {
                continue;
            }
            let _ = writeln!(out, "# HELP {} {}", family.name, family.help);
            let _ = writeln!(out, "# TYPE {} gauge", family.name);
            for (name, row) in rows.iter() {
                let Some(value) = (family.value)(row) else {
                    continue;
                };
                out.push_str(family.name);
                out.push_str("{wawp_instance=\"");
                escape(out, name);
                if let (Some((node, _)), "inbox_sla_instance_held") = (&row.held, family.name) {
                    out.push_str("\",node=\"");
                    escape(out, node);
                }
                let _ = writeln!(out, "\"}} {value}");
            }
            out.push('\n');
        }
    }
}

/// A label value as the exposition format writes it: `\`, `"` and newlines escaped.
fn escape(out: &mut String, value: &str) {
    if !value.contains(['\\', '"', '\n']) {
        out.push_str(value);
        return;
    }
    for c in value.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_each_known_series_once_in_name_order() {
        let g = Gauges::default();
        g.polled("south", 2, 1, 1_796_461_200);
        g.session("south", Some(true));
        g.polled("north", 0, 0, 1_796_461_260);
        g.held("north", "node-a", true);
        let mut out = String::new();
        g.render(&mut out);
        assert!(out.contains(
            "inbox_sla_chats_waiting{wawp_instance=\"north\"} 0\ninbox_sla_chats_waiting{wawp_instance=\"south\"} 2\n"
        ));
        assert!(out.contains("inbox_sla_chats_breached{wawp_instance=\"south\"} 1\n"));
        assert!(out.contains(
            "inbox_sla_last_successful_poll_timestamp_seconds{wawp_instance=\"north\"} 1796461260\n"
        ));
        // The session was asked of south only; north's state is not known, so not served.
        assert!(out.contains("inbox_sla_session_working{wawp_instance=\"south\"} 1\n"));
        assert!(!out.contains("inbox_sla_session_working{wawp_instance=\"north\"}"));
        assert!(
            out.contains("inbox_sla_instance_held{wawp_instance=\"north\",node=\"node-a\"} 1\n")
        );
        assert!(!out.contains("inbox_sla_instance_held{wawp_instance=\"south\""));
        assert_eq!(
            out.matches("# TYPE inbox_sla_chats_waiting gauge").count(),
            1
        );
    }

    #[test]
    fn a_node_that_stands_by_serves_no_stale_figures_for_the_instance() {
        let g = Gauges::default();
        g.polled("north", 12, 11, 1);
        g.session("north", Some(false));
        g.held("north", "node-a", false);
        let mut out = String::new();
        g.render(&mut out);
        assert!(
            out.contains("{wawp_instance=\"north\",node=\"node-a\"} 0\n"),
            "{out}"
        );
        assert!(out.contains("poll_timestamp_seconds{wawp_instance=\"north\"} 1\n"));
        for gone in ["chats_waiting", "chats_breached", "session_working"] {
            assert!(
                !out.contains(&format!("inbox_sla_{gone}{{")),
                "{gone}: {out}"
            );
        }
    }

    #[test]
    fn a_session_no_longer_checked_leaves_the_scrape() {
        let g = Gauges::default();
        g.session("north", Some(true));
        g.session("north", None);
        let mut out = String::new();
        g.render(&mut out);
        assert!(!out.contains("inbox_sla_session_working"), "{out}");
    }

    #[test]
    fn a_removed_instance_leaves_the_scrape_and_odd_names_are_escaped() {
        let g = Gauges::default();
        g.polled("gone", 1, 0, 1);
        g.polled("a \"quoted\"\\name", 1, 0, 1);
        g.retain(|n| n != "gone");
        let mut out = String::new();
        g.render(&mut out);
        assert!(!out.contains("\"gone\""));
        assert!(out.contains("{wawp_instance=\"a \\\"quoted\\\"\\\\name\"} 1\n"));
    }

    #[test]
    fn an_empty_table_writes_nothing() {
        let mut out = String::new();
        Gauges::default().render(&mut out);
        assert_eq!(out, "");
    }
}
