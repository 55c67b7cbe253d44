//! When the daemon's next cycle starts: an interval (with jitter) counted
//! on the monotonic clock, and also due when the wall clock reaches it (time
//! spent suspended); or a daily time in the configured zone, a wall-clock
//! time looked at again every minute. A wall clock that NTP steps back
//! never stalls the schedule. Pure but for the sleep in [`until_due`].

use std::time::Duration;

use chrono::{DateTime, FixedOffset, NaiveTime, Utc};
use rand::Rng;
use tokio::time::Instant;

use tcbackup_core::config::{Schedule, ScheduleWhen};
use tcbackup_signing::clock::Clock;

/// The longest single sleep while waiting for the next run.
const WAKE_EVERY: Duration = Duration::from_secs(60);

/// When the next cycle starts after one that started at `last_start`:
/// `jitter` is the random delay drawn for it.
pub fn next_run(
    schedule: &Schedule,
    time_zone: FixedOffset,
    last_start: DateTime<Utc>,
    now: DateTime<Utc>,
    jitter: Duration,
) -> DateTime<Utc> {
    let jitter = chrono::Duration::from_std(jitter).unwrap_or_default();
    match schedule.when {
        ScheduleWhen::Every(interval) => {
            let interval =
                chrono::Duration::from_std(interval).unwrap_or(chrono::Duration::hours(6));
            let next = last_start + interval;
            next.max(now) + jitter
        }
        ScheduleWhen::DailyAt(at) => next_daily(at, time_zone, now) + jitter,
    }
}

/// When the first cycle starts: at once for an interval, at the next daily
/// time (plus `jitter`) for `daily_at`.
pub fn first_run(
    schedule: &Schedule,
    time_zone: FixedOffset,
    now: DateTime<Utc>,
    jitter: Duration,
) -> DateTime<Utc> {
    match schedule.when {
        ScheduleWhen::Every(_) => now,
        ScheduleWhen::DailyAt(at) => {
            next_daily(at, time_zone, now) + chrono::Duration::from_std(jitter).unwrap_or_default()
        }
    }
}

fn next_daily(at: NaiveTime, tz: FixedOffset, now: DateTime<Utc>) -> DateTime<Utc> {
    tcbackup_core::config::next_daily(at, tz, now)
}

/// When a cycle started, on the wall clock and on the monotonic clock.
#[derive(Debug, Clone, Copy)]
pub struct Started {
    /// Wall-clock time: the daily schedule, logs and `STATUS=`.
    pub wall: DateTime<Utc>,
    /// Monotonic time: the interval schedule.
    pub mono: Instant,
}

/// When the next cycle is due, and how to tell.
///
/// - **Interval**: counted on the monotonic clock (tokio's `Instant`), so a
///   wall clock that NTP steps back does not delay the run by the size of
///   the step. The run is also due once the wall clock reaches the time
///   shown: the monotonic clock stands still while the machine is
///   suspended, the wall clock does not. The earlier of the two wins: a
///   cycle a little early costs nothing, a late one leaves backups unfetched.
/// - **Daily at a time**: a wall-clock time by definition, looked at again
///   at least every minute (`WAKE_EVERY`) so that a step either way is noticed. A
///   time more than a day (plus jitter) away can only come from a clock
///   stepped back; it is worked out again from the clock as it now reads.
#[derive(Debug, Clone)]
pub struct NextRun {
    /// The wall-clock time it is due, as shown.
    at: DateTime<Utc>,
    /// For an interval schedule, the monotonic deadline.
    deadline: Option<Instant>,
    /// For a daily schedule, what to work the time out from again.
    daily: Option<DailyAt>,
}

#[derive(Debug, Clone, Copy)]
struct DailyAt {
    at: NaiveTime,
    time_zone: FixedOffset,
    jitter: Duration,
}

impl NextRun {
    /// The run after one that started at `last` (or the first, for `None`),
    /// with `jitter` drawn for it; `wall_now` and `mono_now` are the two
    /// clocks now.
    pub fn plan(
        schedule: &Schedule,
        time_zone: FixedOffset,
        last: Option<Started>,
        wall_now: DateTime<Utc>,
        mono_now: Instant,
        jitter: Duration,
    ) -> NextRun {
        let at = match last {
            Some(last) => next_run(schedule, time_zone, last.wall, wall_now, jitter),
            None => first_run(schedule, time_zone, wall_now, jitter),
        };
        match schedule.when {
            ScheduleWhen::Every(interval) => {
                let deadline = match last {
                    // An interval too long for the monotonic clock falls
                    // back to the wall clock alone.
                    Some(last) => last
                        .mono
                        .checked_add(interval)
                        .map(|due| due.max(mono_now))
                        .and_then(|due| due.checked_add(jitter)),
                    None => Some(mono_now),
                };
                NextRun {
                    at,
                    deadline,
                    daily: None,
                }
            }
            ScheduleWhen::DailyAt(daily_at) => NextRun {
                at,
                deadline: None,
                daily: Some(DailyAt {
                    at: daily_at,
                    time_zone,
                    jitter,
                }),
            },
        }
    }

    /// The wall-clock time the run is due, for `STATUS=` and logs.
    pub fn at(&self) -> DateTime<Utc> {
        self.at
    }

    /// Whether the run is due now. A daily time that a clock stepped back
    /// pushed more than a day away is worked out again first.
    pub fn is_due(&mut self, wall_now: DateTime<Utc>, mono_now: Instant) -> bool {
        if let Some(daily) = self.daily {
            let jitter = chrono::Duration::from_std(daily.jitter).unwrap_or_default();
            if self.at - wall_now > chrono::Duration::days(1) + jitter {
                let at = next_daily(daily.at, daily.time_zone, wall_now) + jitter;
                tracing::warn!(
                    was = %stamp(self.at),
                    now = %stamp(at),
                    "the wall clock moved back; next run worked out again"
                );
                self.at = at;
            }
        }
        wall_now >= self.at || self.deadline.is_some_and(|deadline| mono_now >= deadline)
    }

    /// How long to sleep before asking [`NextRun::is_due`] again: until
    /// the earlier of the two deadlines, and never longer than
    /// a minute (`WAKE_EVERY`).
    pub fn sleep_for(&self, wall_now: DateTime<Utc>, mono_now: Instant) -> Duration {
        let wall = (self.at - wall_now).to_std().unwrap_or_default();
        let mono = self.deadline.map_or(Duration::MAX, |deadline| {
            deadline.saturating_duration_since(mono_now)
        });
        wall.min(mono).min(WAKE_EVERY)
    }
}

/// Sleep until `next` is due, looking at both clocks at least every
/// minute (`WAKE_EVERY`). Cancel-safe: dropping it loses nothing.
pub async fn until_due(next: &mut NextRun, clock: &dyn Clock) {
    loop {
        let (wall, mono) = (clock.now(), Instant::now());
        if next.is_due(wall, mono) {
            return;
        }
        tokio::time::sleep(next.sleep_for(wall, mono)).await;
    }
}

pub(super) fn draw_jitter(max: Duration) -> Duration {
    if max.is_zero() {
        return Duration::ZERO;
    }
    Duration::from_millis(
        rand::thread_rng().gen_range(0..=max.as_millis().min(u128::from(u64::MAX)) as u64),
    )
}

/// An instant as the daemon's logs and `STATUS=` show it.
pub(super) fn stamp(t: DateTime<Utc>) -> String {
    t.format("%Y-%m-%d %H:%M:%S UTC").to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use tcbackup_signing::clock::ManualClock;
    use tokio::task::JoinHandle;

    fn at(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    fn cst() -> FixedOffset {
        tcbackup_signing::times::CHINA_STANDARD_TIME
    }

    #[test]
    fn interval_schedule_counts_from_the_last_start() {
        let s = Schedule {
            when: ScheduleWhen::Every(Duration::from_secs(3600)),
            jitter: Duration::ZERO,
        };
        let next = next_run(
            &s,
            cst(),
            at("2026-11-26T00:00:00Z"),
            at("2026-11-26T00:10:00Z"),
            Duration::from_secs(30),
        );
        assert_eq!(next, at("2026-11-26T01:00:30Z"));
        // A cycle longer than the interval: the next one starts right away.
        let next = next_run(
            &s,
            cst(),
            at("2026-11-26T00:00:00Z"),
            at("2026-11-26T02:00:00Z"),
            Duration::ZERO,
        );
        assert_eq!(next, at("2026-11-26T02:00:00Z"));
        // The first run of an interval schedule is at startup.
        let now = at("2026-11-26T05:07:00Z");
        assert_eq!(first_run(&s, cst(), now, Duration::from_secs(99)), now);
    }

    #[test]
    fn daily_schedule_uses_the_configured_zone() {
        let s = Schedule {
            when: ScheduleWhen::DailyAt(NaiveTime::from_hms_opt(3, 30, 0).unwrap()),
            jitter: Duration::ZERO,
        };
        // 03:30 at UTC+8 is 19:30 UTC the day before.
        assert_eq!(
            next_run(
                &s,
                cst(),
                at("2026-11-26T00:00:00Z"),
                at("2026-11-26T10:00:00Z"),
                Duration::ZERO
            ),
            at("2026-11-26T19:30:00Z")
        );
        assert_eq!(
            next_run(
                &s,
                cst(),
                at("2026-11-26T00:00:00Z"),
                at("2026-11-26T19:30:00Z"),
                Duration::ZERO
            ),
            at("2026-11-27T19:30:00Z")
        );
        // A daily schedule does not run at startup, but at its time.
        assert_eq!(
            first_run(
                &s,
                cst(),
                at("2026-11-26T10:00:00Z"),
                Duration::from_secs(60)
            ),
            at("2026-11-26T19:31:00Z")
        );
    }

    fn every(interval: Duration) -> Schedule {
        Schedule {
            when: ScheduleWhen::Every(interval),
            jitter: Duration::ZERO,
        }
    }

    /// A wall clock that keeps time with tokio's (paused) clock, minute by
    /// minute, until the task is aborted; steps are made on `clock` by hand.
    fn keep_time(clock: &ManualClock) -> JoinHandle<()> {
        let clock = clock.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval_at(
                Instant::now() + Duration::from_secs(60),
                Duration::from_secs(60),
            );
            loop {
                tick.tick().await;
                clock.advance(chrono::Duration::seconds(60));
            }
        })
    }

    /// Wait for `next` on `clock`; how long that took on tokio's clock.
    async fn waited(next: &mut NextRun, clock: &ManualClock) -> Duration {
        let begun = Instant::now();
        let limit = Duration::from_secs(3 * 86_400);
        tokio::time::timeout(limit, until_due(next, clock))
            .await
            .expect("the run never became due");
        begun.elapsed()
    }

    #[tokio::test(start_paused = true)]
    async fn an_interval_run_is_due_on_time_after_the_wall_clock_steps_back() {
        let t0 = at("2026-11-26T00:00:00Z");
        let clock = ManualClock::fixed(t0);
        let ticking = keep_time(&clock);
        let six_hours = Duration::from_secs(6 * 3600);
        let last = Started {
            wall: t0,
            mono: Instant::now(),
        };
        let mut next = NextRun::plan(
            &every(six_hours),
            cst(),
            Some(last),
            clock.now(),
            Instant::now(),
            Duration::ZERO,
        );
        // NTP steps the wall clock back an hour right after the cycle.
        clock.advance(chrono::Duration::hours(-1));
        let took = waited(&mut next, &clock).await;
        assert_eq!(
            took, six_hours,
            "due after the interval, not the interval plus the step"
        );
        ticking.abort();
    }

    #[tokio::test(start_paused = true)]
    async fn an_interval_run_is_due_when_the_wall_clock_passes_it_after_a_suspend() {
        // While suspended the monotonic clock stands still; on waking, the
        // wall clock is past the time and the run starts within a minute.
        let t0 = at("2026-11-26T00:00:00Z");
        let clock = ManualClock::fixed(t0);
        let last = Started {
            wall: t0,
            mono: Instant::now(),
        };
        let mut next = NextRun::plan(
            &every(Duration::from_secs(6 * 3600)),
            cst(),
            Some(last),
            t0,
            Instant::now(),
            Duration::ZERO,
        );
        clock.advance(chrono::Duration::hours(7));
        assert!(waited(&mut next, &clock).await <= WAKE_EVERY);
    }

    #[tokio::test(start_paused = true)]
    async fn a_daily_run_is_worked_out_again_when_the_wall_clock_steps_back_days() {
        let daily = Schedule {
            when: ScheduleWhen::DailyAt(NaiveTime::from_hms_opt(3, 30, 0).unwrap()),
            jitter: Duration::ZERO,
        };
        // 10:00 UTC: the next 03:30 UTC+8 is 19:30 UTC, 9.5 hours away.
        let t0 = at("2026-11-26T10:00:00Z");
        let clock = ManualClock::fixed(t0);
        let ticking = keep_time(&clock);
        let mut next = NextRun::plan(&daily, cst(), None, t0, Instant::now(), Duration::ZERO);
        assert_eq!(next.at(), at("2026-11-26T19:30:00Z"));
        // The clock was two days fast; NTP steps it back.
        clock.advance(chrono::Duration::days(-2));
        // Within a minute of 9.5 hours (the wall clock here ticks by the
        // minute), not two days and 9.5 hours.
        let took = waited(&mut next, &clock).await;
        let expected = Duration::from_secs(9 * 3600 + 1800);
        assert!(
            took >= expected && took <= expected + WAKE_EVERY,
            "{took:?}"
        );
        assert_eq!(next.at(), at("2026-11-24T19:30:00Z"));

        // The next run is a day away; an hour into the wait, the clock is
        // stepped forward past it: noticed within a minute.
        let mut next = NextRun::plan(
            &daily,
            cst(),
            None,
            clock.now(),
            Instant::now(),
            Duration::ZERO,
        );
        let hour = Duration::from_secs(3600);
        let stepper = {
            let clock = clock.clone();
            tokio::spawn(async move {
                tokio::time::sleep(hour).await;
                clock.advance(chrono::Duration::hours(25));
            })
        };
        let took = waited(&mut next, &clock).await;
        assert!(took >= hour && took <= hour + WAKE_EVERY, "{took:?}");
        stepper.await.unwrap();
        ticking.abort();
    }

    #[test]
    fn jitter_stays_within_its_bound() {
        assert_eq!(draw_jitter(Duration::ZERO), Duration::ZERO);
        for _ in 0..100 {
            assert!(draw_jitter(Duration::from_secs(2)) <= Duration::from_secs(2));
        }
    }
}
