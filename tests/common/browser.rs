//! A real headless Chromium driven through the DevTools protocol over a pipe
//! (`--remote-debugging-pipe`: JSON messages ending in NUL on file descriptors 3 and 4), so
//! a test can set the viewport, send credentials and ask the page what it measures
//! (`scrollWidth`) with no WebDriver and no WebSocket crate. The shell maps the child's
//! descriptors 3 and 4 onto our pipes.

use serde_json::{Value, json};
use std::io::{BufRead, BufReader, Write};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// Headless Chromium, as Debian ships it; `None` (after a loud skip) without it.
pub fn chromium() -> Option<&'static str> {
    let found = ["chromium", "chromium-browser"].into_iter().find(|bin| {
        Command::new(bin)
            .arg("--version")
            .output()
            .is_ok_and(|o| o.status.success())
    });
    if found.is_none() {
        super::skip("chromium is not installed", true);
    }
    found
}

pub struct Browser {
    child: Child,
    to: ChildStdin,
    from: mpsc::Receiver<Value>,
    next_id: u64,
    /// Events seen while waiting for answers, oldest first.
    events: Vec<Value>,
    _profile: tempfile::TempDir,
}

/// One tab, at one viewport size.
pub struct Tab {
    session: String,
}

const WAIT: Duration = Duration::from_secs(60);

impl Browser {
    pub fn start() -> Option<Browser> {
        let bin = chromium()?;
        let profile = tempfile::tempdir().unwrap();
        let mut child = Command::new("bash")
            .arg("-c")
            .arg(r#"exec "$0" "$@" 3<&0 4>&1 0</dev/null 1>/dev/null"#)
            .arg(bin)
            .args([
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-dev-shm-usage",
                "--no-first-run",
                "--hide-scrollbars",
                "--remote-debugging-pipe",
            ])
            .arg(format!("--user-data-dir={}", profile.path().display()))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("start chromium");
        let to = child.stdin.take().unwrap();
        let out = child.stdout.take().unwrap();
        let (tx, from) = mpsc::channel();
        std::thread::spawn(move || {
            let mut reader = BufReader::new(out);
            loop {
                let mut buf = Vec::new();
                match reader.read_until(0, &mut buf) {
                    Ok(0) | Err(_) => return,
                    Ok(_) => {
                        buf.pop();
                        if let Ok(v) = serde_json::from_slice::<Value>(&buf)
                            && tx.send(v).is_err()
                        {
                            return;
                        }
                    }
                }
            }
        });
        Some(Browser {
            child,
            to,
            from,
            next_id: 0,
            events: Vec::new(),
            _profile: profile,
        })
    }

    /// Sends a command (to a tab's session, or the browser) and waits for its result.
    pub fn call(&mut self, session: Option<&str>, method: &str, params: Value) -> Value {
        self.next_id += 1;
        let id = self.next_id;
        let mut msg = json!({"id": id, "method": method, "params": params});
        if let Some(s) = session {
            msg["sessionId"] = json!(s);
        }
        let mut bytes = msg.to_string().into_bytes();
        bytes.push(0);
        self.to.write_all(&bytes).expect("write to chromium");
        self.to.flush().unwrap();
        let deadline = Instant::now() + WAIT;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let v = self
                .from
                .recv_timeout(left)
                .unwrap_or_else(|_| panic!("chromium did not answer {method}"));
            if v["id"].as_u64() == Some(id) {
                if let Some(e) = v.get("error") {
                    panic!("chromium: {method} failed: {e}");
                }
                return v["result"].clone();
            }
            self.events.push(v);
        }
    }

    /// Waits for an event of `method` in `session`, seen since the last wait.
    fn event(&mut self, session: &str, method: &str) -> Value {
        let deadline = Instant::now() + WAIT;
        loop {
            if let Some(k) = self
                .events
                .iter()
                .position(|e| e["method"] == method && e["sessionId"] == session)
            {
                let e = self.events.remove(k);
                self.events.clear();
                return e;
            }
            let left = deadline.saturating_duration_since(Instant::now());
            let v = self
                .from
                .recv_timeout(left)
                .unwrap_or_else(|_| panic!("chromium sent no {method}"));
            self.events.push(v);
        }
    }

    /// A new tab whose viewport is `width` × `height` CSS pixels (a phone when `mobile`),
    /// sending `headers` with every request.
    pub fn tab(&mut self, width: u32, height: u32, mobile: bool, headers: Value) -> Tab {
        let target = self.call(None, "Target.createTarget", json!({"url": "about:blank"}));
        let attached = self.call(
            None,
            "Target.attachToTarget",
            json!({"targetId": target["targetId"], "flatten": true}),
        );
        let session = attached["sessionId"].as_str().unwrap().to_string();
        let s = Some(session.as_str());
        self.call(s, "Page.enable", json!({}));
        self.call(s, "Network.enable", json!({}));
        self.call(
            s,
            "Network.setExtraHTTPHeaders",
            json!({ "headers": headers }),
        );
        self.call(
            s,
            "Emulation.setDeviceMetricsOverride",
            json!({"width": width, "height": height, "deviceScaleFactor": 1, "mobile": mobile}),
        );
        Tab { session }
    }

    /// Loads `url` in the tab and waits for its load event.
    pub fn open(&mut self, tab: &Tab, url: &str) {
        self.events.clear();
        self.call(Some(&tab.session), "Page.navigate", json!({ "url": url }));
        self.event(&tab.session, "Page.loadEventFired");
    }

    /// Clicks the first element `selector` finds (a form's button: the form posts, the
    /// answer redirects) and waits for the page it leads to.
    pub fn click(&mut self, tab: &Tab, selector: &str) {
        self.events.clear();
        let found = self.eval(
            tab,
            &format!(
                "(() => {{ const b = document.querySelector({}); if (!b) return false; b.click(); return true; }})()",
                serde_json::to_string(selector).unwrap()
            ),
        );
        assert_eq!(found, json!(true), "nothing to click at {selector}");
        self.event(&tab.session, "Page.loadEventFired");
    }

    /// Evaluates `expression` in the tab's page; its value (JSON).
    pub fn eval(&mut self, tab: &Tab, expression: &str) -> Value {
        let r = self.call(
            Some(&tab.session),
            "Runtime.evaluate",
            json!({"expression": expression, "returnByValue": true}),
        );
        r["result"]["value"].clone()
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
