//! The one clock: what time it is, in Unix seconds and milliseconds.
//!
//! Everything that reads the wall clock (the poll loops, the engine's `now`, the outbox's
//! retry times) reads it through a [`Clock`] handed down from `main`, so a test or the demo
//! can move time: [`Clock::manual`] is set by hand, and [`Clock::tokio`] follows tokio's
//! clock, which `tokio::time::pause()` lets a test drive through a whole day in an instant.

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};

#[derive(Clone, Debug)]
pub enum Clock {
    /// The system's wall clock.
    System,
    /// Set by hand (tests, the demo).
    Manual(Arc<AtomicI64>),
    /// `unix_ms` at tokio's instant `at`, moving with tokio's (possibly paused) time.
    Tokio {
        unix_ms: i64,
        at: tokio::time::Instant,
    },
}

impl Clock {
    /// A hand-set clock starting at `unix_ms`.
    pub fn manual(unix_ms: i64) -> Clock {
        Clock::Manual(Arc::new(AtomicI64::new(unix_ms)))
    }

    /// A clock that reads `unix_ms` now and moves with tokio's time.
    pub fn tokio(unix_ms: i64) -> Clock {
        Clock::Tokio {
            unix_ms,
            at: tokio::time::Instant::now(),
        }
    }

    pub fn now_ms(&self) -> i64 {
        match self {
            Clock::System => chrono::Utc::now().timestamp_millis(),
            Clock::Manual(ms) => ms.load(Ordering::SeqCst),
            Clock::Tokio { unix_ms, at } => unix_ms + at.elapsed().as_millis() as i64,
        }
    }

    pub fn now(&self) -> i64 {
        self.now_ms().div_euclid(1000)
    }

    /// Moves a manual clock on (does nothing to the others).
    pub fn advance(&self, ms: i64) {
        if let Clock::Manual(m) = self {
            m.fetch_add(ms, Ordering::SeqCst);
        }
    }

    /// Sets a manual clock (does nothing to the others).
    pub fn set_ms(&self, ms: i64) {
        if let Clock::Manual(m) = self {
            m.store(ms, Ordering::SeqCst);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_manual_clock_moves_only_when_told() {
        let c = Clock::manual(1_500);
        assert_eq!((c.now_ms(), c.now()), (1_500, 1));
        c.advance(2_000);
        assert_eq!(c.now(), 3);
        c.set_ms(-1);
        assert_eq!(c.now(), -1);
        let system = Clock::System;
        system.advance(1_000_000);
        assert!((system.now() - chrono::Utc::now().timestamp()).abs() <= 1);
    }

    #[tokio::test(start_paused = true)]
    async fn a_tokio_clock_follows_paused_time() {
        let c = Clock::tokio(1_000_000);
        tokio::time::sleep(std::time::Duration::from_secs(3600)).await;
        assert_eq!(c.now_ms(), 1_000_000 + 3_600_000);
    }
}
