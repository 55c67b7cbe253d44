//! Retention: which published sets to keep, as a pure function from (local
//! sets, policy, now) to a [`RetentionPlan`] with a human reason for every
//! set, and [`apply()`] which deletes what the plan marks through the store.
//!
//! Semantics (design.md §2 "Retention", peers.md §3):
//! - Per instance (the caller passes one instance's sets) and per kind.
//! - `keep_*` rules govern Redis sets and PostgreSQL base backups; a set is
//!   kept if **any** rule keeps it (restic `forget`):
//!   - `keep_last N`: the N newest sets;
//!   - `keep_daily N` / `keep_weekly N` / `keep_monthly N`: the newest set
//!     of each of the N most recent days / ISO weeks (Monday to Sunday) /
//!     months that have sets, computed in the policy's time zone (UTC+8 by
//!     default); when fewer than N such periods exist, the oldest set is
//!     kept too, so a young history is not thinned more than needed;
//!   - `keep_within D`: sets that started within D of the **newest set**
//!     (not of now, as restic does: when backups stop arriving, the last good
//!     ones do not age out).
//! - `keep_manual`: sets the API says a user started (Redis `BackupType`
//!   `"0"`, PostgreSQL `BackupMode` `manual`) are kept beside the rules
//!   above, like restic's `--keep-tag`; they still count for the other
//!   rules. As kept base backups they also keep the logs after them.
//! - The newest set of each kind is never deleted ("newest"); a set that
//!   starts after `now` (clock skew) is never deleted either.
//! - PostgreSQL log backups follow the log rule alone: a log backup is kept
//!   while it finished at or after the start of the oldest **kept** base
//!   backup, deleted once it finished before it; without any base backup
//!   every log is kept (there is nothing to anchor them to).
//! - Set times are start times (the log rule uses a log's finish).
//!
//! "Due" (which remote backups to fetch) asks the same rules, in rounds
//! that survive failed downloads: [`DueRounds`].

mod display;
mod due;

use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

use chrono::{DateTime, Datelike, FixedOffset, NaiveDate, Utc};

use crate::duration::format_duration;
use crate::model::BackupKind;

pub use due::DueRounds;

/// UTC+8, the default for retention's calendar days (the zone of the
/// API's times; defined once, in `tcbackup_signing::times`).
pub use tcbackup_signing::times::CHINA_STANDARD_TIME;

/// What to keep. Every rule is optional; the config refuses a policy with
/// none (an empty policy here keeps only the newest set of each kind).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Policy {
    /// Keep the N newest sets.
    pub keep_last: Option<u32>,
    /// Keep the newest set of each of the N most recent days with sets.
    pub keep_daily: Option<u32>,
    /// Keep the newest set of each of the N most recent ISO weeks with sets.
    pub keep_weekly: Option<u32>,
    /// Keep the newest set of each of the N most recent months with sets.
    pub keep_monthly: Option<u32>,
    /// Keep sets that started within this long before the newest set.
    pub keep_within: Option<Duration>,
    /// Keep every manual set (Redis sets and base backups).
    pub keep_manual: bool,
    /// The zone in which days, weeks and months are counted.
    pub time_zone: FixedOffset,
}

impl Default for Policy {
    fn default() -> Self {
        Self {
            keep_last: None,
            keep_daily: None,
            keep_weekly: None,
            keep_monthly: None,
            keep_within: None,
            keep_manual: false,
            time_zone: CHINA_STANDARD_TIME,
        }
    }
}

impl Policy {
    /// Whether no rule would keep anything (all absent or zero;
    /// `keep_manual` alone does not count, as it keeps nothing automatic).
    pub fn is_empty(&self) -> bool {
        let none = |count: Option<u32>| count.unwrap_or(0) == 0;
        none(self.keep_last)
            && none(self.keep_daily)
            && none(self.keep_weekly)
            && none(self.keep_monthly)
            && self.keep_within.is_none_or(|within| within.is_zero())
    }
}

impl fmt::Display for Policy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut rules = Vec::new();
        for (name, count) in [
            ("keep_last", self.keep_last),
            ("keep_daily", self.keep_daily),
            ("keep_weekly", self.keep_weekly),
            ("keep_monthly", self.keep_monthly),
        ] {
            if let Some(count) = count {
                rules.push(format!("{name} {count}"));
            }
        }
        if let Some(within) = self.keep_within {
            rules.push(format!("keep_within {}", format_duration(within)));
        }
        if self.keep_manual {
            rules.push("keep_manual".to_string());
        }
        if rules.is_empty() {
            rules.push("no keep rule".to_string());
        }
        write!(
            f,
            "{} (calendar in UTC{})",
            rules.join(", "),
            self.time_zone
        )
    }
}

/// One published set as retention sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SetInfo {
    /// Identifies the set within its instance (the store uses the set
    /// directory name).
    pub id: String,
    /// Redis, PostgreSQL base or PostgreSQL log.
    pub kind: BackupKind,
    /// When the backup started.
    pub start: DateTime<Utc>,
    /// When it finished, if known.
    pub finish: Option<DateTime<Utc>>,
    /// Whether the API says a user started it (`keep_manual`).
    pub manual: bool,
}

/// A calendar rule, for reasons.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CalendarRule {
    /// `keep_daily`.
    Daily,
    /// `keep_weekly`.
    Weekly,
    /// `keep_monthly`.
    Monthly,
}

impl CalendarRule {
    fn name(self) -> &'static str {
        match self {
            CalendarRule::Daily => "daily",
            CalendarRule::Weekly => "weekly",
            CalendarRule::Monthly => "monthly",
        }
    }
}

/// Why a set is kept or deleted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reason {
    /// The newest set of its kind, never deleted.
    Newest,
    /// Starts after `now` (clock skew), never deleted.
    FutureStart,
    /// Among the `of` newest sets (`keep_last`).
    Last {
        /// 1 for the newest.
        rank: u32,
        /// The rule's count.
        of: u32,
    },
    /// The newest set of this day (`keep_daily`).
    Daily(NaiveDate),
    /// The newest set of this ISO week (`keep_weekly`).
    Weekly {
        /// ISO week-numbering year.
        year: i32,
        /// ISO week 1..=53.
        week: u32,
    },
    /// The newest set of this month (`keep_monthly`).
    Monthly {
        /// Year.
        year: i32,
        /// Month 1..=12.
        month: u32,
    },
    /// Started within this window of the newest set (`keep_within`).
    Within(Duration),
    /// A manual backup (`keep_manual`).
    Manual,
    /// The oldest set, kept because a calendar rule has room left.
    Oldest {
        /// The rule with room.
        rule: CalendarRule,
        /// Periods the rule used.
        used: u32,
        /// The rule's count.
        of: u32,
    },
    /// A log backup that finished at or after the oldest kept base backup started.
    LogAfterBase {
        /// Start of the oldest kept base backup, in the policy's zone.
        base_start: DateTime<FixedOffset>,
    },
    /// A log backup kept because there is no base backup to anchor logs to.
    LogNoBase,
    /// A log backup whose finish time is unknown, kept to be safe.
    LogFinishUnknown,
    /// Deleted: a log backup that finished before the oldest kept base started.
    LogBeforeBase {
        /// Start of the oldest kept base backup, in the policy's zone.
        base_start: DateTime<FixedOffset>,
    },
    /// Deleted: no rule keeps it.
    NotKept,
}

impl Reason {
    /// Whether this reason keeps the set (false for the reasons that
    /// explain a deletion).
    pub fn keeps(&self) -> bool {
        !matches!(self, Reason::LogBeforeBase { .. } | Reason::NotKept)
    }
}

const TIME_FORMAT: &str = "%Y-%m-%d %H:%M:%S%:z";

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Reason::Newest => f.write_str("newest"),
            Reason::FutureStart => f.write_str("starts in the future (clock skew?)"),
            Reason::Last { rank, of } => write!(f, "keep_last {rank} of {of}"),
            Reason::Daily(day) => write!(f, "daily {day}"),
            Reason::Weekly { year, week } => write!(f, "weekly {year}-W{week:02}"),
            Reason::Monthly { year, month } => write!(f, "monthly {year}-{month:02}"),
            Reason::Within(window) => write!(f, "within {} of newest", format_duration(*window)),
            Reason::Manual => f.write_str("manual"),
            Reason::Oldest { rule, used, of } => {
                write!(f, "oldest, {} has room ({used} of {of} used)", rule.name())
            }
            Reason::LogAfterBase { base_start } => write!(
                f,
                "log: finished at or after oldest kept base {}",
                base_start.format(TIME_FORMAT)
            ),
            Reason::LogNoBase => f.write_str("log: no base backup to follow, all logs kept"),
            Reason::LogFinishUnknown => f.write_str("log: finish time unknown, kept"),
            Reason::LogBeforeBase { base_start } => write!(
                f,
                "log: finished before oldest kept base {}",
                base_start.format(TIME_FORMAT)
            ),
            Reason::NotKept => f.write_str("not kept by any rule"),
        }
    }
}

/// The decision for one set.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlanEntry {
    /// The set's id ([`SetInfo::id`]).
    pub id: String,
    /// Its kind.
    pub kind: BackupKind,
    /// Its start.
    pub start: DateTime<Utc>,
    /// Its finish, if known.
    pub finish: Option<DateTime<Utc>>,
    /// Keep (true) or delete (false).
    pub keep: bool,
    /// Every reason that applies; at least one.
    pub reasons: Vec<Reason>,
}

/// The plan for one instance: every set with keep or delete and why.
/// Entries are grouped by kind (Redis, base, log), newest first.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RetentionPlan {
    /// One entry per set given to [`plan`].
    pub entries: Vec<PlanEntry>,
    /// The zone times are shown in.
    pub time_zone: FixedOffset,
}

impl RetentionPlan {
    /// The entries to delete.
    pub fn to_delete(&self) -> impl Iterator<Item = &PlanEntry> {
        self.entries.iter().filter(|entry| !entry.keep)
    }

    /// The entries to keep.
    pub fn to_keep(&self) -> impl Iterator<Item = &PlanEntry> {
        self.entries.iter().filter(|entry| entry.keep)
    }
}

/// Plan retention for one instance's published sets.
pub fn plan(sets: &[SetInfo], policy: &Policy, now: DateTime<Utc>) -> RetentionPlan {
    let all: Vec<&SetInfo> = sets.iter().collect();
    let decisions = decide(&all, policy, now);
    let entries = decisions
        .into_iter()
        .map(|(index, keep, reasons)| {
            let set = all[index];
            PlanEntry {
                id: set.id.clone(),
                kind: set.kind,
                start: set.start,
                finish: set.finish,
                keep,
                reasons,
            }
        })
        .collect();
    RetentionPlan {
        entries,
        time_zone: policy.time_zone,
    }
}

/// Whether retention would keep `candidate` (a remote backup not yet
/// fetched) next to the `existing` published sets: the "due" rule fetches
/// only backups that retention would not delete right away.
pub fn would_keep(
    candidate: &SetInfo,
    existing: &[SetInfo],
    policy: &Policy,
    now: DateTime<Utc>,
) -> bool {
    would_keep_each(std::slice::from_ref(candidate), existing, policy, now)
        .first()
        .copied()
        .unwrap_or(true)
}

/// [`would_keep`] for many candidates judged together, as if all were
/// fetched: on a first run with `keep_last = 2` only the two newest of the
/// listed backups are worth fetching. Log candidates are judged against the
/// base sets among `existing` and `candidates`. One round of
/// [`DueRounds`], which judges again when a download fails.
pub fn would_keep_each(
    candidates: &[SetInfo],
    existing: &[SetInfo],
    policy: &Policy,
    now: DateTime<Utc>,
) -> Vec<bool> {
    let all: Vec<&SetInfo> = candidates.iter().chain(existing).collect();
    let mut keep = vec![true; candidates.len()];
    for (index, kept, _) in decide(&all, policy, now) {
        if let Some(slot) = keep.get_mut(index) {
            *slot = kept;
        }
    }
    keep
}

/// The decisions as (index into `sets`, keep, reasons), grouped by kind,
/// newest first.
fn decide(
    sets: &[&SetInfo],
    policy: &Policy,
    now: DateTime<Utc>,
) -> Vec<(usize, bool, Vec<Reason>)> {
    let mut by_kind: BTreeMap<BackupKind, Vec<usize>> = BTreeMap::new();
    for (index, set) in sets.iter().enumerate() {
        by_kind.entry(set.kind).or_default().push(index);
    }
    let mut decisions = Vec::with_capacity(sets.len());
    // `None` until a base group is seen; then `Some`, because a group's
    // newest set is always kept. `BackupKind` orders PgBase before PgLog.
    let mut oldest_kept_base: Option<DateTime<Utc>> = None;
    for (kind, mut indices) in by_kind {
        // Newest first; the id breaks ties so the plan does not depend on
        // listing order.
        indices.sort_by(|&a, &b| (sets[b].start, &sets[b].id).cmp(&(sets[a].start, &sets[a].id)));
        let group: Vec<&SetInfo> = indices.iter().map(|&index| sets[index]).collect();
        let reasons = match kind {
            BackupKind::Redis | BackupKind::PgBase => keep_rules(&group, policy, now),
            BackupKind::PgLog => log_rule(&group, oldest_kept_base, policy, now),
        };
        if kind == BackupKind::PgBase {
            oldest_kept_base = group
                .iter()
                .zip(&reasons)
                .filter(|(_, reasons)| reasons.iter().any(Reason::keeps))
                .map(|(set, _)| set.start)
                .min();
        }
        for (index, mut reasons) in indices.into_iter().zip(reasons) {
            let keep = reasons.iter().any(Reason::keeps);
            if reasons.is_empty() {
                reasons.push(Reason::NotKept);
            }
            decisions.push((index, keep, reasons));
        }
    }
    decisions
}

/// The `keep_*` rules for one kind; `group` is newest first. An empty
/// reason list means delete (`decide` adds [`Reason::NotKept`]).
fn keep_rules(group: &[&SetInfo], policy: &Policy, now: DateTime<Utc>) -> Vec<Vec<Reason>> {
    let mut reasons: Vec<Vec<Reason>> = vec![Vec::new(); group.len()];
    let Some(newest) = group.first() else {
        return reasons;
    };
    reasons[0].push(Reason::Newest);
    for (index, set) in group.iter().enumerate() {
        if set.start > now {
            reasons[index].push(Reason::FutureStart);
        }
    }
    if let Some(count) = policy.keep_last {
        for (index, slot) in reasons.iter_mut().enumerate().take(count as usize) {
            let rank = u32::try_from(index + 1).unwrap_or(u32::MAX);
            slot.push(Reason::Last { rank, of: count });
        }
    }
    for (rule, count) in [
        (CalendarRule::Daily, policy.keep_daily),
        (CalendarRule::Weekly, policy.keep_weekly),
        (CalendarRule::Monthly, policy.keep_monthly),
    ] {
        let Some(count) = count.filter(|&count| count > 0) else {
            continue;
        };
        let mut used = 0u32;
        let mut last_period = None;
        for (index, set) in group.iter().enumerate() {
            if used == count {
                break;
            }
            let reason = period(rule, set.start.with_timezone(&policy.time_zone));
            if last_period.as_ref() != Some(&reason) {
                last_period = Some(reason.clone());
                reasons[index].push(reason);
                used += 1;
            }
        }
        let oldest = group.len() - 1;
        let oldest_has_period = last_period.is_some_and(|reason| reasons[oldest].contains(&reason));
        if used < count && oldest > 0 && !oldest_has_period {
            reasons[oldest].push(Reason::Oldest {
                rule,
                used,
                of: count,
            });
        }
    }
    if let Some(window) = policy.keep_within {
        let window = chrono::TimeDelta::from_std(window).unwrap_or(chrono::TimeDelta::MAX);
        for (index, set) in group.iter().enumerate() {
            if newest.start - set.start <= window {
                reasons[index].push(Reason::Within(window.to_std().unwrap_or(Duration::MAX)));
            }
        }
    }
    if policy.keep_manual {
        for (index, set) in group.iter().enumerate() {
            if set.manual {
                reasons[index].push(Reason::Manual);
            }
        }
    }
    reasons
}

/// The calendar period of a local time for `rule`, as the reason it gives.
fn period(rule: CalendarRule, local: DateTime<FixedOffset>) -> Reason {
    match rule {
        CalendarRule::Daily => Reason::Daily(local.date_naive()),
        CalendarRule::Weekly => {
            let week = local.iso_week();
            Reason::Weekly {
                year: week.year(),
                week: week.week(),
            }
        }
        CalendarRule::Monthly => Reason::Monthly {
            year: local.year(),
            month: local.month(),
        },
    }
}

/// The log rule; `group` is newest first. `oldest_kept_base` is `None` when
/// the instance has no base backup at all. A log to delete gets
/// [`Reason::LogBeforeBase`], which does not keep it.
fn log_rule(
    group: &[&SetInfo],
    oldest_kept_base: Option<DateTime<Utc>>,
    policy: &Policy,
    now: DateTime<Utc>,
) -> Vec<Vec<Reason>> {
    let mut reasons: Vec<Vec<Reason>> = vec![Vec::new(); group.len()];
    for (index, set) in group.iter().enumerate() {
        let slot = &mut reasons[index];
        if index == 0 {
            slot.push(Reason::Newest);
        }
        if set.start > now {
            slot.push(Reason::FutureStart);
        }
        let Some(base_start) = oldest_kept_base else {
            slot.push(Reason::LogNoBase);
            continue;
        };
        let shown = base_start.with_timezone(&policy.time_zone);
        match set.finish {
            None => slot.push(Reason::LogFinishUnknown),
            Some(finish) if finish >= base_start => {
                slot.push(Reason::LogAfterBase { base_start: shown })
            }
            // Listed even when "newest" keeps the set, so the table shows
            // that nothing else would.
            Some(_) => slot.push(Reason::LogBeforeBase { base_start: shown }),
        }
    }
    reasons
}

#[cfg(test)]
mod tests;
