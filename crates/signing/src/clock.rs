//! The clock, passed in so that signing, URL expiry, retention and the
//! emulator can be tested at any instant without sleeping.

use std::sync::{Arc, Mutex};

use chrono::{DateTime, Duration, Utc};

/// A source of the current time.
pub trait Clock: Send + Sync + std::fmt::Debug {
    /// The current instant.
    fn now(&self) -> DateTime<Utc>;

    /// The current Unix time in seconds.
    fn unix(&self) -> i64 {
        self.now().timestamp()
    }
}

/// The wall clock.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> DateTime<Utc> {
        Utc::now()
    }
}

/// A clock that follows the wall clock shifted by an adjustable offset, or
/// stands still at a fixed instant. Used by tests and by the emulator to
/// simulate clock skew and URL expiry.
#[derive(Debug, Clone, Default)]
pub struct ManualClock {
    state: Arc<Mutex<ManualState>>,
}

#[derive(Debug, Default)]
struct ManualState {
    fixed: Option<DateTime<Utc>>,
    offset: Duration,
}

impl ManualClock {
    /// A clock that follows the wall clock (offset zero) until told otherwise.
    pub fn new() -> Self {
        Self::default()
    }

    /// A clock frozen at `at`.
    pub fn fixed(at: DateTime<Utc>) -> Self {
        let clock = Self::default();
        clock.set(at);
        clock
    }

    /// Freeze the clock at `at`.
    pub fn set(&self, at: DateTime<Utc>) {
        self.lock().fixed = Some(at);
    }

    /// Move the clock by `by` (negative moves it back).
    pub fn advance(&self, by: Duration) {
        let mut state = self.lock();
        match state.fixed.as_mut() {
            Some(at) => *at += by,
            None => state.offset += by,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, ManualState> {
        // A poisoned lock only means another thread panicked mid-update of two
        // plain values; the values are still usable.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl Clock for ManualClock {
    fn now(&self) -> DateTime<Utc> {
        let state = self.lock();
        match state.fixed {
            Some(at) => at,
            None => Utc::now() + state.offset,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn manual_clock_advances() {
        let start = DateTime::from_timestamp(1_700_000_000, 0).expect("valid");
        let c = ManualClock::fixed(start);
        c.advance(Duration::seconds(301));
        assert_eq!(c.unix(), 1_700_000_301);
        let shifted = ManualClock::new();
        shifted.advance(Duration::seconds(-3600));
        assert!(shifted.now() < Utc::now() - Duration::seconds(3500));
    }
}
