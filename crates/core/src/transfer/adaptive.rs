//! How many connections a segmented file uses: a controller that starts
//! with a few and adds more while the measured total rate keeps rising.
//!
//! Links to COS are often capped per connection (long round trips,
//! per-connection shaping), so the connection count decides the wall time
//! and nobody can guess it in advance. The controller is pure logic: the
//! segmented driver feeds it one [`Sample`] per measuring interval (bytes
//! written in that interval, whether COS answered 503/429/SlowDown, whether
//! a process-wide limit stops more connections from helping) and reads the
//! new [`Controller::target`].
//!
//! The rule:
//! - **Double** while a step scales about linearly (the rate grew by at
//!   least [`LINEAR`] of what the added connections would add at the old
//!   per-connection rate): the link is capped per connection.
//! - **Stop at the knee** when a step paid, but less than that: the old
//!   per-connection rate tells how many connections the new total needs,
//!   and the count goes there.
//! - **Go back** to the count before the step when it did not raise the
//!   rate by more than [`GAIN`] (10%).
//! - **Probe** a settled count one small step up every [`PROBE_EVERY`]
//!   intervals, so a link that got faster is noticed.
//! - **Halve** on a throttling answer and hold for [`HOLD_AFTER_THROTTLE`]
//!   intervals.
//! - **Hold** while a process-wide limit (connection pool or bandwidth) is
//!   reached: more connections cannot add anything there.
//! - Never above `cap` (the operator's `segments`), never below one.
//!
//! The first sample after a change is not judged: new connections spend it
//! connecting and in slow start.

use std::time::Duration;

/// Connections a segmented file starts with (fewer if the cap is lower).
pub(crate) const START: usize = 4;
/// A step up must raise the rate by more than this fraction to count.
pub(crate) const GAIN: f64 = 0.10;
/// A step that brings at least this share of the linear gain doubles again.
pub(crate) const LINEAR: f64 = 0.8;
/// Intervals to hold a settled count before probing one step up again.
pub(crate) const PROBE_EVERY: u32 = 10;
/// Intervals to hold after halving for a throttling answer.
pub(crate) const HOLD_AFTER_THROTTLE: u32 = 20;

/// What happened during one measuring interval.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Sample {
    /// Bytes received (by all connections of the file) in the interval.
    pub(crate) bytes: u64,
    /// How long the interval was.
    pub(crate) elapsed: Duration,
    /// COS answered 503, 429 or SlowDown during the interval.
    pub(crate) throttled: bool,
    /// A process-wide limit is reached: the connection pool has nothing
    /// free, or the bandwidth limiter is spending its whole rate.
    pub(crate) limited: bool,
}

impl Sample {
    fn rate(&self) -> f64 {
        let secs = self.elapsed.as_secs_f64();
        if secs > 0.0 {
            self.bytes as f64 / secs
        } else {
            0.0
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Phase {
    /// The count just changed: the next sample is warm-up, not judged.
    Settling,
    /// Judging a step up from `from` connections that gave `rate`; `None`
    /// right after a settle with nothing to compare to yet.
    Growing { from: Option<(usize, f64)> },
    /// Keeping the count for this many more intervals.
    Holding { left: u32 },
}

/// The adaptive connection count of one segmented pass.
#[derive(Debug, Clone)]
pub(crate) struct Controller {
    cap: usize,
    target: usize,
    phase: Phase,
    /// The phase to enter once the current settle is over.
    after_settle: Phase,
}

impl Controller {
    /// A controller that allows at most `cap` connections (at least one).
    pub(crate) fn new(cap: usize) -> Self {
        let cap = cap.max(1);
        Self {
            cap,
            target: START.min(cap),
            phase: Phase::Settling,
            after_settle: Phase::Growing { from: None },
        }
    }

    /// The number of connections wanted now.
    pub(crate) fn target(&self) -> usize {
        self.target
    }

    /// Account for one interval; returns the new target.
    pub(crate) fn observe(&mut self, sample: Sample) -> usize {
        if sample.throttled {
            self.target = (self.target / 2).max(1);
            self.settle(Phase::Holding {
                left: HOLD_AFTER_THROTTLE,
            });
            return self.target;
        }
        let rate = sample.rate();
        match self.phase {
            Phase::Settling => self.phase = self.after_settle,
            Phase::Growing {
                from: Some((from, before)),
            } => self.judge(from, before, rate, sample.limited),
            Phase::Growing { from: None } => self.step_up(self.target, rate, sample.limited),
            Phase::Holding { left } if left > 1 => self.phase = Phase::Holding { left: left - 1 },
            Phase::Holding { .. } => {
                let probe = (self.target / 4).max(1);
                self.step_up(probe, rate, sample.limited)
            }
        }
        self.target
    }

    /// The step from `from` connections (which gave `before`) to the
    /// current count gave `rate`: keep doubling, stop at the knee, or go
    /// back.
    fn judge(&mut self, from: usize, before: f64, rate: f64, limited: bool) {
        let to = self.target;
        if rate <= before * (1.0 + GAIN) || from == 0 || to <= from {
            // The step did not pay: go back and stay there a while.
            self.target = from.max(1);
            self.settle(Phase::Holding { left: PROBE_EVERY });
            return;
        }
        let linear = before * (to - from) as f64 / from as f64;
        if rate - before >= linear * LINEAR {
            self.step_up(to, rate, limited);
            return;
        }
        // Past the knee: at the old per-connection rate, the total now
        // reached needs this many connections (2% allowed for noise).
        let per_connection = before / from as f64;
        let needed = (rate / per_connection * 0.98).ceil();
        let knee = if needed.is_finite() && needed >= 0.0 {
            (needed as usize).clamp(from + 1, to)
        } else {
            to
        };
        self.target = knee;
        if knee == to {
            self.phase = Phase::Holding { left: PROBE_EVERY };
        } else {
            self.settle(Phase::Holding { left: PROBE_EVERY });
        }
    }

    /// Add `step` connections (from a count that gave `rate`), unless the
    /// cap or a process-wide limit says more cannot help.
    fn step_up(&mut self, step: usize, rate: f64, limited: bool) {
        if limited || self.target >= self.cap {
            self.phase = Phase::Holding { left: PROBE_EVERY };
            return;
        }
        let from = self.target;
        self.target = (from + step.max(1)).min(self.cap);
        self.settle(Phase::Growing {
            from: Some((from, rate)),
        });
    }

    fn settle(&mut self, then: Phase) {
        self.phase = Phase::Settling;
        self.after_settle = then;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIB: f64 = 1024.0 * 1024.0;
    const TICK: Duration = Duration::from_millis(500);

    /// A simulated link: each connection carries at most `per_conn` bytes/s,
    /// all of them together at most `total`; past `crowded` connections
    /// (if set) the server slows everyone down by 15% per extra connection.
    #[derive(Clone, Copy)]
    struct Link {
        per_conn: f64,
        total: f64,
        crowded: Option<usize>,
    }

    impl Link {
        fn capped(per_conn_mib: f64) -> Self {
            Link {
                per_conn: per_conn_mib * MIB,
                total: 400.0 * MIB,
                crowded: None,
            }
        }

        fn rate(&self, n: usize) -> f64 {
            let raw = (n as f64 * self.per_conn).min(self.total);
            match self.crowded {
                Some(c) if n > c => raw * (1.0 - 0.15 * (n - c) as f64).max(0.1),
                _ => raw,
            }
        }

        /// What `n` connections deliver in one tick. Connections that have
        /// just been added deliver half (connecting, slow start).
        fn deliver(&self, n: usize, new: usize) -> u64 {
            let steady = self.rate(n - new.min(n));
            let all = self.rate(n);
            ((steady + (all - steady) / 2.0) * TICK.as_secs_f64()) as u64
        }

        /// The smallest count within 5% of the best rate up to `cap`.
        fn best(&self, cap: usize) -> usize {
            let top = (1..=cap).map(|n| self.rate(n)).fold(0.0, f64::max);
            (1..=cap)
                .find(|n| self.rate(*n) >= top * 0.95)
                .unwrap_or(cap)
        }
    }

    /// Drive a controller over `link` for `ticks` intervals; returns the
    /// counts it asked for, one per interval.
    fn drive(c: &mut Controller, link: &Link, ticks: usize) -> Vec<usize> {
        let mut counts = Vec::new();
        let mut prev = c.target();
        let mut new = prev;
        for _ in 0..ticks {
            let n = c.target();
            let bytes = link.deliver(n, new);
            let next = c.observe(Sample {
                bytes,
                elapsed: TICK,
                throttled: false,
                limited: false,
            });
            new = next.saturating_sub(prev);
            prev = next;
            counts.push(next);
        }
        counts
    }

    #[test]
    fn converges_near_the_best_count_for_per_connection_caps() {
        for (per_conn, cap) in [(5.0, 16), (20.0, 16), (80.0, 16), (20.0, 64)] {
            let link = Link::capped(per_conn);
            let best = link.best(cap);
            let mut c = Controller::new(cap);
            assert_eq!(c.target(), START);
            let counts = drive(&mut c, &link, 60);
            // Within 10 intervals (5 s) it has found its count: the one it
            // keeps most of the time from then on...
            let late = &counts[10..];
            let settled = (1..=cap)
                .max_by_key(|n| late.iter().filter(|c| *c == n).count())
                .unwrap_or(0);
            assert!(
                settled >= best && settled <= best + best / 2 + 1,
                "{per_conn} MiB/s per connection, cap {cap}: best {best}, \
                 settled at {settled}: {counts:?}"
            );
            let time_at_settled = late.iter().filter(|n| **n == settled).count();
            assert!(time_at_settled * 10 >= late.len() * 7, "{counts:?}");
            // ...leaving it only for short probes one small step up.
            for &n in late {
                assert!(n >= settled && n <= settled + settled / 4 + 1, "{counts:?}");
            }
            // The rate reached is close to the best the link can do.
            assert!(link.rate(settled) >= link.rate(best) * 0.95);
        }
    }

    #[test]
    fn a_link_that_gets_worse_with_more_connections_is_not_crowded() {
        let link = Link {
            per_conn: 40.0 * MIB,
            total: 1000.0 * MIB,
            crowded: Some(6),
        };
        let mut c = Controller::new(16);
        let counts = drive(&mut c, &link, 40);
        let late = &counts[10..];
        let settled = (1..=16)
            .max_by_key(|n| late.iter().filter(|c| *c == n).count())
            .unwrap_or(0);
        assert!((6..=9).contains(&settled), "{counts:?}");
        assert!(link.rate(settled) >= link.rate(6) * 0.85, "{counts:?}");
    }

    #[test]
    fn backs_off_on_throttling_and_holds() {
        let link = Link::capped(5.0);
        let mut c = Controller::new(16);
        drive(&mut c, &link, 30);
        assert_eq!(c.target(), 16);
        let throttled = Sample {
            bytes: 0,
            elapsed: TICK,
            throttled: true,
            limited: false,
        };
        assert_eq!(c.observe(throttled), 8);
        assert_eq!(c.observe(throttled), 4);
        // Held while the link would reward more, until the hold is over.
        let counts = drive(&mut c, &link, HOLD_AFTER_THROTTLE as usize);
        assert!(counts.iter().all(|n| *n == 4), "{counts:?}");
        let counts = drive(&mut c, &link, 10);
        assert!(counts.last().is_some_and(|n| *n > 4), "{counts:?}");
        // Never below one connection.
        for _ in 0..10 {
            c.observe(throttled);
        }
        assert_eq!(c.target(), 1);
    }

    #[test]
    fn a_reached_process_limit_stops_growth() {
        let mut c = Controller::new(16);
        for _ in 0..30 {
            c.observe(Sample {
                bytes: 10 * 1024 * 1024,
                elapsed: TICK,
                throttled: false,
                limited: true,
            });
        }
        assert_eq!(c.target(), START);
    }

    #[test]
    fn the_cap_bounds_everything() {
        for cap in [0, 1, 3] {
            let mut c = Controller::new(cap);
            drive(&mut c, &Link::capped(1.0), 40);
            assert_eq!(c.target(), cap.max(1));
        }
    }
}
