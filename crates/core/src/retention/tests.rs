use chrono::{NaiveDateTime, TimeDelta};

use super::*;

/// A UTC instant from "YYYY-MM-DD hh:mm".
fn utc(text: &str) -> DateTime<Utc> {
    NaiveDateTime::parse_from_str(text, "%Y-%m-%d %H:%M")
        .unwrap()
        .and_utc()
}

fn set(id: &str, kind: BackupKind, start: &str) -> SetInfo {
    let start = utc(start);
    SetInfo {
        id: id.to_string(),
        kind,
        start,
        finish: Some(start + TimeDelta::minutes(20)),
        manual: false,
    }
}

fn redis(id: &str, start: &str) -> SetInfo {
    set(id, BackupKind::Redis, start)
}

fn log(id: &str, start: &str, finish: &str) -> SetInfo {
    SetInfo {
        id: id.to_string(),
        kind: BackupKind::PgLog,
        start: utc(start),
        finish: Some(utc(finish)),
        manual: false,
    }
}

fn utc_zone() -> FixedOffset {
    FixedOffset::east_opt(0).unwrap()
}

fn kept(plan: &RetentionPlan) -> Vec<&str> {
    plan.to_keep().map(|entry| entry.id.as_str()).collect()
}

fn deleted(plan: &RetentionPlan) -> Vec<&str> {
    plan.to_delete().map(|entry| entry.id.as_str()).collect()
}

fn reasons(plan: &RetentionPlan, id: &str) -> Vec<String> {
    plan.entries
        .iter()
        .find(|entry| entry.id == id)
        .unwrap()
        .reasons
        .iter()
        .map(ToString::to_string)
        .collect()
}

const NOW: &str = "2025-01-20 00:00";

/// Seven daily Redis sets, `d1` oldest (2025-01-01) to `d7` newest.
fn week_of_sets() -> Vec<SetInfo> {
    (1..=7)
        .map(|day| redis(&format!("d{day}"), &format!("2025-01-0{day} 02:00")))
        .collect()
}

#[test]
fn keep_last_two_leaves_exactly_the_two_newest() {
    let policy = Policy {
        keep_last: Some(2),
        ..Policy::default()
    };
    let plan = plan(&week_of_sets(), &policy, utc(NOW));
    assert_eq!(kept(&plan), ["d7", "d6"]);
    assert_eq!(deleted(&plan), ["d5", "d4", "d3", "d2", "d1"]);
    assert_eq!(reasons(&plan, "d7"), ["newest", "keep_last 1 of 2"]);
    assert_eq!(reasons(&plan, "d6"), ["keep_last 2 of 2"]);
    assert_eq!(reasons(&plan, "d1"), ["not kept by any rule"]);
}

#[test]
fn the_plan_does_not_depend_on_input_order_or_a_later_now() {
    let policy = Policy {
        keep_last: Some(3),
        keep_within: Some(Duration::from_secs(2 * 86_400)),
        ..Policy::default()
    };
    let mut sets = week_of_sets();
    let forward = plan(&sets, &policy, utc(NOW));
    sets.reverse();
    sets.swap(1, 4);
    assert_eq!(plan(&sets, &policy, utc(NOW)), forward);
    assert_eq!(plan(&sets, &policy, utc("2026-06-01 00:00")), forward);
}

#[test]
fn daily_days_are_counted_in_the_policy_time_zone() {
    // 15:30Z is 23:30 on Dec 31 in UTC+8; 16:30Z is already Jan 1 there.
    let sets = [
        redis("morning", "2024-12-31 02:00"),
        redis("late", "2024-12-31 15:30"),
        redis("later", "2024-12-31 16:30"),
    ];
    let china = Policy {
        keep_daily: Some(2),
        ..Policy::default()
    };
    let plan_china = plan(&sets, &china, utc(NOW));
    assert_eq!(kept(&plan_china), ["later", "late"]);
    assert_eq!(
        reasons(&plan_china, "later"),
        ["newest", "daily 2025-01-01"]
    );
    assert_eq!(reasons(&plan_china, "late"), ["daily 2024-12-31"]);
    assert_eq!(deleted(&plan_china), ["morning"]);

    let utc_policy = Policy {
        time_zone: utc_zone(),
        ..china
    };
    let plan_utc = plan(&sets, &utc_policy, utc(NOW));
    // One UTC day only: its newest set, plus the oldest because the rule
    // has room for a second day.
    assert_eq!(kept(&plan_utc), ["later", "morning"]);
    assert_eq!(reasons(&plan_utc, "later"), ["newest", "daily 2024-12-31"]);
    assert_eq!(
        reasons(&plan_utc, "morning"),
        ["oldest, daily has room (1 of 2 used)"]
    );
    assert_eq!(deleted(&plan_utc), ["late"]);
}

#[test]
fn weekly_weeks_start_on_monday_in_the_policy_time_zone() {
    // Sunday 2024-12-29 20:00Z is Monday 2024-12-30 04:00 in UTC+8, the
    // first day of ISO week 2025-W01.
    let sets = [
        redis("wed", "2024-12-25 02:00"),
        redis("sun-day", "2024-12-29 10:00"),
        redis("sun-night", "2024-12-29 20:00"),
    ];
    let china = Policy {
        keep_weekly: Some(2),
        ..Policy::default()
    };
    let plan_china = plan(&sets, &china, utc(NOW));
    assert_eq!(
        reasons(&plan_china, "sun-night"),
        ["newest", "weekly 2025-W01"]
    );
    assert_eq!(reasons(&plan_china, "sun-day"), ["weekly 2024-W52"]);
    assert_eq!(deleted(&plan_china), ["wed"]);

    let plan_utc = plan(
        &sets,
        &Policy {
            time_zone: utc_zone(),
            ..china
        },
        utc(NOW),
    );
    assert_eq!(
        reasons(&plan_utc, "sun-night"),
        ["newest", "weekly 2024-W52"]
    );
    assert_eq!(deleted(&plan_utc), ["sun-day"]);
}

#[test]
fn monthly_months_cross_the_boundary_in_the_policy_time_zone() {
    let sets = [
        redis("mid-jan", "2025-01-15 02:00"),
        redis("jan-31", "2025-01-31 10:00"),
        redis("feb-1-local", "2025-01-31 20:00"),
    ];
    let china = Policy {
        keep_monthly: Some(2),
        ..Policy::default()
    };
    let plan_china = plan(&sets, &china, utc("2025-03-01 00:00"));
    assert_eq!(
        reasons(&plan_china, "feb-1-local"),
        ["newest", "monthly 2025-02"]
    );
    assert_eq!(reasons(&plan_china, "jan-31"), ["monthly 2025-01"]);
    assert_eq!(deleted(&plan_china), ["mid-jan"]);

    let plan_utc = plan(
        &sets,
        &Policy {
            time_zone: utc_zone(),
            ..china
        },
        utc("2025-03-01 00:00"),
    );
    assert_eq!(kept(&plan_utc), ["feb-1-local", "mid-jan"]);
    assert_eq!(deleted(&plan_utc), ["jan-31"]);
}

#[test]
fn daily_keeps_the_newest_of_each_of_the_n_latest_days_with_sets() {
    // Two sets a day for five days; a gap day does not count.
    let mut sets = Vec::new();
    for day in [1, 2, 4, 5, 6] {
        sets.push(redis(&format!("{day}a"), &format!("2025-01-0{day} 01:00")));
        sets.push(redis(&format!("{day}b"), &format!("2025-01-0{day} 09:00")));
    }
    let policy = Policy {
        keep_daily: Some(3),
        time_zone: utc_zone(),
        ..Policy::default()
    };
    let plan = plan(&sets, &policy, utc(NOW));
    assert_eq!(kept(&plan), ["6b", "5b", "4b"]);
    assert_eq!(reasons(&plan, "4b"), ["daily 2025-01-04"]);
}

#[test]
fn keep_within_is_measured_from_the_newest_set_inclusive() {
    let sets = [
        redis("newest", "2025-01-20 00:00"),
        redis("13d", "2025-01-07 00:00"),
        redis("14d", "2025-01-06 00:00"),
        redis("15d", "2025-01-05 00:00"),
    ];
    let policy = Policy {
        keep_within: Some(Duration::from_secs(14 * 86_400)),
        ..Policy::default()
    };
    let now = utc("2025-01-20 00:00");
    let fresh = plan(&sets, &policy, now);
    assert_eq!(kept(&fresh), ["newest", "13d", "14d"]);
    assert_eq!(reasons(&fresh, "14d"), ["within 2w of newest"]);
    assert_eq!(deleted(&fresh), ["15d"]);
    // Backups stopped arriving a month ago: nothing more ages out.
    let stale = plan(&sets, &policy, now + TimeDelta::days(30));
    assert_eq!(kept(&stale), kept(&fresh));
}

#[test]
fn a_set_is_kept_if_any_rule_keeps_it() {
    let sets = [
        redis("dec", "2024-12-10 02:00"),
        redis("jan-a", "2025-01-10 02:00"),
        redis("jan-b", "2025-01-11 02:00"),
        redis("jan-c", "2025-01-12 02:00"),
    ];
    let policy = Policy {
        keep_last: Some(1),
        keep_monthly: Some(2),
        ..Policy::default()
    };
    let plan = plan(&sets, &policy, utc(NOW));
    assert_eq!(kept(&plan), ["jan-c", "dec"]);
    assert_eq!(
        reasons(&plan, "jan-c"),
        ["newest", "keep_last 1 of 1", "monthly 2025-01"]
    );
    assert_eq!(reasons(&plan, "dec"), ["monthly 2024-12"]);
}

#[test]
fn the_newest_set_is_never_deleted_even_by_an_empty_policy() {
    let sets = week_of_sets();
    for policy in [
        Policy::default(),
        Policy {
            keep_last: Some(0),
            keep_daily: Some(0),
            ..Policy::default()
        },
    ] {
        let plan = plan(&sets, &policy, utc(NOW));
        assert_eq!(kept(&plan), ["d7"], "{policy}");
        assert_eq!(reasons(&plan, "d7"), ["newest"]);
        assert_eq!(plan.to_delete().count(), 6);
    }
}

#[test]
fn sets_from_the_future_are_kept() {
    let sets = [
        redis("old", "2025-01-01 00:00"),
        redis("ahead", "2025-02-01 00:00"),
        redis("ahead-newer", "2025-02-02 00:00"),
    ];
    let plan = plan(&sets, &Policy::default(), utc(NOW));
    assert_eq!(kept(&plan), ["ahead-newer", "ahead"]);
    assert_eq!(
        reasons(&plan, "ahead"),
        ["starts in the future (clock skew?)"]
    );
}

#[test]
fn log_backups_follow_the_oldest_kept_base_backup() {
    let sets = [
        set("base-1", BackupKind::PgBase, "2025-01-01 00:00"),
        set("base-3", BackupKind::PgBase, "2025-01-03 00:00"),
        set("base-5", BackupKind::PgBase, "2025-01-05 00:00"),
        log("log-before", "2025-01-02 00:00", "2025-01-02 23:59"),
        log("log-at", "2025-01-02 12:00", "2025-01-03 00:00"),
        log("log-spanning", "2025-01-02 20:00", "2025-01-03 01:00"),
        log("log-after", "2025-01-04 00:00", "2025-01-04 01:00"),
        log("log-newest", "2025-01-06 00:00", "2025-01-06 01:00"),
    ];
    let keep_two = Policy {
        keep_last: Some(2),
        ..Policy::default()
    };
    let plan = plan(&sets, &keep_two, utc(NOW));
    assert_eq!(deleted(&plan), ["base-1", "log-before"]);
    assert_eq!(
        reasons(&plan, "log-before"),
        ["log: finished before oldest kept base 2025-01-03 08:00:00+08:00"]
    );
    assert_eq!(
        reasons(&plan, "log-at"),
        ["log: finished at or after oldest kept base 2025-01-03 08:00:00+08:00"]
    );
    assert!(plan.to_keep().any(|entry| entry.id == "log-spanning"));
    // keep_* rules do not apply to logs: keep_last 2 would drop log-after.
    assert!(plan.to_keep().any(|entry| entry.id == "log-after"));
    let kinds: Vec<BackupKind> = plan.entries.iter().map(|entry| entry.kind).collect();
    assert!(
        kinds.windows(2).all(|pair| pair[0] <= pair[1]),
        "grouped by kind"
    );
}

#[test]
fn logs_without_any_base_backup_are_all_kept_and_the_plan_says_why() {
    let sets = [
        log("l1", "2025-01-01 00:00", "2025-01-01 01:00"),
        log("l2", "2025-01-02 00:00", "2025-01-02 01:00"),
    ];
    let plan = plan(&sets, &Policy::default(), utc(NOW));
    assert_eq!(kept(&plan), ["l2", "l1"]);
    assert_eq!(
        reasons(&plan, "l1"),
        ["log: no base backup to follow, all logs kept"]
    );
}

#[test]
fn the_newest_log_is_kept_even_when_it_ended_before_the_oldest_kept_base() {
    let sets = [
        set("base", BackupKind::PgBase, "2025-01-05 00:00"),
        log("stale-log", "2025-01-01 00:00", "2025-01-01 01:00"),
        log("older-log", "2024-12-31 00:00", "2024-12-31 01:00"),
    ];
    let plan = plan(&sets, &Policy::default(), utc(NOW));
    assert_eq!(deleted(&plan), ["older-log"]);
    assert_eq!(
        reasons(&plan, "stale-log"),
        [
            "newest",
            "log: finished before oldest kept base 2025-01-05 08:00:00+08:00"
        ]
    );
}

#[test]
fn kinds_are_planned_independently() {
    let mut sets = week_of_sets();
    sets.push(set("base-old", BackupKind::PgBase, "2024-11-01 00:00"));
    sets.push(set("base-older", BackupKind::PgBase, "2024-10-01 00:00"));
    let policy = Policy {
        keep_last: Some(1),
        ..Policy::default()
    };
    let plan = plan(&sets, &policy, utc(NOW));
    assert_eq!(kept(&plan), ["d7", "base-old"]);
    assert_eq!(reasons(&plan, "base-old"), ["newest", "keep_last 1 of 1"]);
}

#[test]
fn would_keep_decides_whether_a_remote_backup_is_due() {
    let existing = week_of_sets();
    let policy = Policy {
        keep_last: Some(3),
        ..Policy::default()
    };
    let newer = redis("new", "2025-01-08 02:00");
    let older = redis("old", "2024-12-20 02:00");
    assert!(would_keep(&newer, &existing, &policy, utc(NOW)));
    assert!(!would_keep(&older, &existing, &policy, utc(NOW)));
    // First run: nothing local, five listed; only the newest two are worth it.
    let candidates: Vec<SetInfo> = week_of_sets().into_iter().take(5).collect();
    let keep_two = Policy {
        keep_last: Some(2),
        ..Policy::default()
    };
    assert_eq!(
        would_keep_each(&candidates, &[], &keep_two, utc(NOW)),
        [false, false, false, true, true]
    );
    // A log that ended before the oldest kept base is not fetched.
    let bases = [set("base", BackupKind::PgBase, "2025-01-05 00:00")];
    let stale_log = log("l", "2025-01-01 00:00", "2025-01-01 01:00");
    let fresh_log = log("m", "2025-01-05 00:00", "2025-01-05 01:00");
    assert_eq!(
        would_keep_each(
            &[stale_log, fresh_log],
            &bases,
            &Policy::default(),
            utc(NOW)
        ),
        [false, true]
    );
}

fn keep_one_policy() -> Policy {
    Policy {
        keep_last: Some(1),
        ..Policy::default()
    }
}

/// The ids of `rounds.next_round()`, sorted.
fn round_ids(rounds: &mut DueRounds, candidates: &[SetInfo]) -> Vec<String> {
    let mut ids: Vec<String> = rounds
        .next_round()
        .into_iter()
        .map(|index| candidates[index].id.clone())
        .collect();
    ids.sort();
    ids
}

#[test]
fn a_failed_newest_candidate_makes_the_next_older_one_due() {
    // First run, keep_last 2: d7 and d6 are due; d7 fails, so d5 is kept
    // in its place; d6 and d5 published, nothing more.
    let candidates = week_of_sets();
    let keep_two = Policy {
        keep_last: Some(2),
        ..Policy::default()
    };
    let mut rounds = DueRounds::new(candidates.clone(), Vec::new(), keep_two, utc(NOW));
    assert_eq!(round_ids(&mut rounds, &candidates), ["d6", "d7"]);
    rounds.published(5);
    assert_eq!(round_ids(&mut rounds, &candidates), ["d5"]);
    rounds.published(4);
    assert!(rounds.next_round().is_empty());
    let untried: Vec<&str> = rounds
        .untried()
        .into_iter()
        .map(|index| candidates[index].id.as_str())
        .collect();
    assert_eq!(untried, ["d1", "d2", "d3", "d4"]);
}

#[test]
fn a_failed_candidate_that_nothing_replaces_ends_the_rounds() {
    // d7 published before; keep_last 1: the new d8 is due; when it fails,
    // nothing older is kept in its place (d7 already is).
    let published = week_of_sets();
    let candidates = vec![redis("d8", "2025-01-08 02:00")];
    let mut rounds = DueRounds::new(candidates.clone(), published, keep_one_policy(), utc(NOW));
    assert_eq!(round_ids(&mut rounds, &candidates), ["d8"]);
    assert!(rounds.next_round().is_empty());
    assert!(rounds.untried().is_empty());
}

#[test]
fn logs_follow_the_published_base_when_a_newer_base_fails() {
    // keep_last 1, base b1 published; a newer base b2 is listed with logs
    // between the two and one after b2. Judged with b2, the logs between
    // are not kept; once b2 fails they follow b1 and become due.
    let published = vec![set("b1", BackupKind::PgBase, "2025-01-10 02:00")];
    let candidates = vec![
        set("b2", BackupKind::PgBase, "2025-01-11 02:00"),
        log("between-1", "2025-01-10 08:00", "2025-01-10 08:01"),
        log("between-2", "2025-01-10 14:00", "2025-01-10 14:01"),
        log("after", "2025-01-11 08:00", "2025-01-11 08:01"),
        log("before-b1", "2025-01-09 20:00", "2025-01-09 20:01"),
    ];
    let mut rounds = DueRounds::new(candidates.clone(), published, keep_one_policy(), utc(NOW));
    assert_eq!(round_ids(&mut rounds, &candidates), ["after", "b2"]);
    rounds.published(3);
    assert_eq!(
        round_ids(&mut rounds, &candidates),
        ["between-1", "between-2"]
    );
    rounds.published(1);
    rounds.published(2);
    assert!(rounds.next_round().is_empty());
    assert_eq!(rounds.untried(), [4]);

    // When b2 succeeds, the logs between stay not due.
    let published = vec![set("b1", BackupKind::PgBase, "2025-01-10 02:00")];
    let mut rounds = DueRounds::new(candidates.clone(), published, keep_one_policy(), utc(NOW));
    assert_eq!(round_ids(&mut rounds, &candidates), ["after", "b2"]);
    rounds.published(0);
    rounds.published(3);
    assert!(rounds.next_round().is_empty());
    assert_eq!(rounds.untried(), [1, 2, 4]);
}

#[test]
fn dry_run_table_shows_every_set_with_its_action_and_reasons() {
    let policy = Policy {
        keep_last: Some(1),
        ..Policy::default()
    };
    let sets = [
        redis("2025-01-01T020000Z_redis_a", "2025-01-01 02:00"),
        redis("2025-01-02T020000Z_redis_b", "2025-01-02 02:00"),
    ];
    let table = plan(&sets, &policy, utc(NOW)).to_string();
    let lines: Vec<&str> = table.lines().collect();
    assert_eq!(lines.len(), 4, "{table}");
    assert!(
        lines[0].starts_with("ACTION  KIND   START (UTC+08:00)"),
        "{table}"
    );
    assert!(lines[1].starts_with("keep    redis  2025-01-02 10:00:00  2025-01-02 10:20:00  2025-01-02T020000Z_redis_b  newest, keep_last 1 of 1"), "{table}");
    assert!(
        lines[2].starts_with("delete  redis  2025-01-01 10:00:00"),
        "{table}"
    );
    assert!(lines[2].ends_with("not kept by any rule"), "{table}");
    assert_eq!(lines[3], "1 kept, 1 to delete");
    assert_eq!(
        plan(&[], &policy, utc(NOW)).to_string(),
        "no published sets\n"
    );
}

#[test]
fn policy_emptiness_and_display() {
    assert!(Policy::default().is_empty());
    assert!(Policy {
        keep_last: Some(0),
        ..Policy::default()
    }
    .is_empty());
    let policy = Policy {
        keep_last: Some(7),
        keep_within: Some(Duration::from_secs(14 * 86_400)),
        ..Policy::default()
    };
    assert!(!policy.is_empty());
    assert_eq!(
        policy.to_string(),
        "keep_last 7, keep_within 2w (calendar in UTC+08:00)"
    );
}

fn manual(mut set: SetInfo) -> SetInfo {
    set.manual = true;
    set
}

#[test]
fn keep_manual_keeps_manual_sets_beside_the_other_rules() {
    let mut sets = week_of_sets();
    // d2 and d4 were started by a user.
    sets[1].manual = true;
    sets[3].manual = true;
    let without = Policy {
        keep_last: Some(2),
        ..Policy::default()
    };
    let plan_without = plan(&sets, &without, utc(NOW));
    assert_eq!(kept(&plan_without), ["d7", "d6"]);
    let with = Policy {
        keep_manual: true,
        ..without
    };
    let plan_with = plan(&sets, &with, utc(NOW));
    assert_eq!(kept(&plan_with), ["d7", "d6", "d4", "d2"]);
    assert_eq!(deleted(&plan_with), ["d5", "d3", "d1"]);
    assert_eq!(reasons(&plan_with, "d4"), ["manual"]);
    assert_eq!(reasons(&plan_with, "d2"), ["manual"]);
    // A manual set among the last still counts for keep_last.
    let mut newest_manual = week_of_sets();
    newest_manual[5].manual = true;
    let plan_newest = plan(&newest_manual, &with, utc(NOW));
    assert_eq!(kept(&plan_newest), ["d7", "d6"]);
    assert_eq!(reasons(&plan_newest, "d6"), ["keep_last 2 of 2", "manual"]);
}

#[test]
fn a_kept_manual_base_keeps_the_logs_after_it() {
    let policy = Policy {
        keep_last: Some(1),
        keep_manual: true,
        ..Policy::default()
    };
    let sets = [
        manual(set("b-old", BackupKind::PgBase, "2025-01-01 02:00")),
        set("b-mid", BackupKind::PgBase, "2025-01-05 02:00"),
        set("b-new", BackupKind::PgBase, "2025-01-10 02:00"),
        log("l-before", "2024-12-31 00:00", "2024-12-31 23:00"),
        log("l-after", "2025-01-02 00:00", "2025-01-02 23:00"),
    ];
    let plan = plan(&sets, &policy, utc(NOW));
    assert_eq!(kept(&plan), ["b-new", "b-old", "l-after"]);
    assert_eq!(deleted(&plan), ["b-mid", "l-before"]);
    assert_eq!(reasons(&plan, "b-old"), ["manual"]);
}

#[test]
fn keep_manual_makes_an_old_manual_backup_due() {
    let existing = [redis("new", "2025-01-10 02:00")];
    let old_manual = manual(redis("old-manual", "2025-01-01 02:00"));
    let old_auto = redis("old-auto", "2025-01-01 03:00");
    let keep_one = keep_one_policy();
    assert!(!would_keep(&old_manual, &existing, &keep_one, utc(NOW)));
    let with = Policy {
        keep_manual: true,
        ..keep_one
    };
    assert!(would_keep(&old_manual, &existing, &with, utc(NOW)));
    assert!(!would_keep(&old_auto, &existing, &with, utc(NOW)));
}

#[test]
fn keep_manual_shows_in_the_policy_and_the_dry_run_table() {
    let policy = Policy {
        keep_last: Some(1),
        keep_manual: true,
        ..Policy::default()
    };
    assert_eq!(
        policy.to_string(),
        "keep_last 1, keep_manual (calendar in UTC+08:00)"
    );
    assert!(Policy {
        keep_manual: true,
        ..Policy::default()
    }
    .is_empty());
    let sets = [
        manual(redis("2025-01-01T020000Z_redis_a", "2025-01-01 02:00")),
        redis("2025-01-02T020000Z_redis_b", "2025-01-02 02:00"),
    ];
    let table = plan(&sets, &policy, utc(NOW)).to_string();
    let lines: Vec<&str> = table.lines().collect();
    assert!(
        lines[2].starts_with("keep    redis  2025-01-01 10:00:00"),
        "{table}"
    );
    assert!(lines[2].ends_with("  manual"), "{table}");
}
