//! The systemd notify protocol (`Type=notify`), without ever blocking the daemon.
//!
//! `sd_notify` writes a datagram to `$NOTIFY_SOCKET`, and that write blocks when the
//! supervisor reads its socket slowly and the queue is full. So the daemon never writes: it
//! hands states to a [`Notifier`], whose own thread sends them. Lifecycle states (READY,
//! RELOADING, STOPPING) are sent in order; a newer STATUS or WATCHDOG replaces one not yet
//! sent, so a slow supervisor delays notifications and never queues stale ones. Without
//! `NOTIFY_SOCKET` the notifier does nothing.

use sd_notify::NotifyState;
use std::collections::VecDeque;
use std::sync::{Arc, Condvar, Mutex};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Lifecycle {
    Ready,
    Reloading,
    Stopping,
}

#[derive(Default)]
struct Slot {
    /// In order; each sent in its own datagram.
    lifecycle: VecDeque<Lifecycle>,
    /// The newest status not yet sent.
    status: Option<String>,
    watchdog: bool,
}

impl Slot {
    fn is_empty(&self) -> bool {
        self.lifecycle.is_empty() && self.status.is_none() && !self.watchdog
    }
}

struct Shared {
    slot: Mutex<Slot>,
    wake: Condvar,
}

/// Hands states to the notify thread; cheap to clone.
#[derive(Clone, Default)]
pub struct Notifier {
    /// `None` without a notify socket.
    shared: Option<Arc<Shared>>,
}

impl Notifier {
    /// A notifier for `$NOTIFY_SOCKET`, or one that does nothing when it is not set.
    pub fn from_env() -> Notifier {
        if std::env::var_os("NOTIFY_SOCKET").is_none() {
            return Notifier::default();
        }
        let shared = Arc::new(Shared {
            slot: Mutex::new(Slot::default()),
            wake: Condvar::new(),
        });
        let worker = shared.clone();
        let spawned = std::thread::Builder::new()
            .name("sd-notify".into())
            .spawn(move || send_loop(&worker));
        match spawned {
            Ok(_) => Notifier {
                shared: Some(shared),
            },
            Err(e) => {
                tracing::warn!(
                    "cannot start the systemd notify thread ({e}); not notifying systemd"
                );
                Notifier::default()
            }
        }
    }

    pub fn ready(&self, status: &str) {
        self.update(|s| {
            s.lifecycle.push_back(Lifecycle::Ready);
            s.status = Some(status.to_string());
        });
    }

    pub fn reloading(&self) {
        self.update(|s| s.lifecycle.push_back(Lifecycle::Reloading));
    }

    pub fn stopping(&self) {
        self.update(|s| s.lifecycle.push_back(Lifecycle::Stopping));
    }

    pub fn status(&self, status: &str) {
        self.update(|s| s.status = Some(status.to_string()));
    }

    /// A watchdog ping, with the status refreshed so "last poll 12s ago" stays true.
    pub fn watchdog(&self, status: &str) {
        self.update(|s| {
            s.watchdog = true;
            s.status = Some(status.to_string());
        });
    }

    fn update(&self, f: impl FnOnce(&mut Slot)) {
        let Some(shared) = &self.shared else { return };
        let mut slot = shared.slot.lock().unwrap_or_else(|p| p.into_inner());
        f(&mut slot);
        shared.wake.notify_one();
    }
}

fn send_loop(shared: &Shared) {
    loop {
        let taken = {
            let mut slot = shared.slot.lock().unwrap_or_else(|p| p.into_inner());
            while slot.is_empty() {
                slot = shared.wake.wait(slot).unwrap_or_else(|p| p.into_inner());
            }
            std::mem::take(&mut *slot)
        };
        for datagram in datagrams(&taken) {
            // Blocks while the supervisor's queue is full: this thread waits, nobody else.
            if let Err(e) = sd_notify::notify(&datagram) {
                tracing::debug!("sd_notify failed: {e}");
            }
        }
    }
}

/// The datagrams for what was taken: each lifecycle state alone, in order, the status
/// and watchdog riding with the last one (or on their own).
fn datagrams(slot: &Slot) -> Vec<Vec<NotifyState<'_>>> {
    let mut out: Vec<Vec<NotifyState<'_>>> = slot
        .lifecycle
        .iter()
        .map(|l| {
            vec![match l {
                Lifecycle::Ready => NotifyState::Ready,
                Lifecycle::Reloading => NotifyState::Reloading,
                Lifecycle::Stopping => NotifyState::Stopping,
            }]
        })
        .collect();
    let mut extra = Vec::new();
    if slot.watchdog {
        extra.push(NotifyState::Watchdog);
    }
    if let Some(status) = &slot.status {
        extra.push(NotifyState::Status(status));
    }
    match out.last_mut() {
        Some(last) => last.extend(extra),
        None if !extra.is_empty() => out.push(extra),
        None => {}
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(d: &[NotifyState]) -> String {
        d.iter()
            .map(|s| s.to_string())
            .collect::<Vec<_>>()
            .join(",")
    }

    #[test]
    fn lifecycle_states_go_in_order_and_only_the_newest_status_rides_along() {
        let mut slot = Slot::default();
        slot.lifecycle.push_back(Lifecycle::Reloading);
        slot.lifecycle.push_back(Lifecycle::Ready);
        slot.status = Some("reloaded".into());
        slot.watchdog = true;
        let d = datagrams(&slot);
        assert_eq!(d.len(), 2);
        assert_eq!(text(&d[0]), "RELOADING=1");
        assert_eq!(text(&d[1]), "READY=1,WATCHDOG=1,STATUS=reloaded");
        let only_status = Slot {
            status: Some("3 waiting".into()),
            ..Slot::default()
        };
        assert_eq!(text(&datagrams(&only_status)[0]), "STATUS=3 waiting");
        assert!(datagrams(&Slot::default()).is_empty());
    }

    #[test]
    fn without_a_socket_nothing_is_queued() {
        let n = Notifier::default();
        n.ready("x");
        n.watchdog("y");
        assert!(n.shared.is_none());
    }
}
