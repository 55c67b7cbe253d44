//! Applying a retention plan: deleting exactly the published sets a
//! [`RetentionPlan`] marks for deletion, after checks that the plan still
//! matches what is on disk. Retention only plans (a pure function); the
//! store, the only code that deletes sets, carries the plan out.

use std::collections::{BTreeSet, HashMap};

use super::{Store, StoreError};
use crate::model::BackupKind;
use crate::retention::RetentionPlan;

/// Why a plan was not applied at all.
#[derive(Debug, thiserror::Error)]
pub enum RetentionError {
    /// The plan keeps no set of a kind it deletes from; retention never
    /// deletes every set of a kind.
    #[error("refusing to prune {kind} sets of {instance_id}: the plan keeps none of them")]
    KeepsNothing {
        /// The instance.
        instance_id: String,
        /// The kind.
        kind: BackupKind,
    },
    /// None of the sets the plan keeps for a kind is on disk any more, so
    /// applying it would leave that kind empty.
    #[error("refusing to prune {kind} sets of {instance_id}: none of the sets the plan keeps is on disk any more (plan again)")]
    KeptSetsGone {
        /// The instance.
        instance_id: String,
        /// The kind.
        kind: BackupKind,
    },
    /// The instance's sets could not be listed.
    #[error("cannot list the published sets of {instance_id}")]
    List {
        /// The instance.
        instance_id: String,
        /// Why.
        #[source]
        source: StoreError,
    },
}

/// What [`Store::apply_plan`] did.
#[derive(Debug, Default)]
pub struct ApplyReport {
    /// Set ids deleted.
    pub deleted: Vec<String>,
    /// Set ids the plan deletes that were already gone.
    pub already_gone: Vec<String>,
    /// Set ids whose deletion failed, with why (the others still ran).
    pub failed: Vec<(String, StoreError)>,
}

impl Store {
    /// Delete the sets of `instance_id` that `plan` marks for deletion. Only
    /// published sets (listed by the store with a valid manifest) are touched;
    /// set ids are the set directory names. Blocking file I/O: call it from
    /// `spawn_blocking` in async code.
    pub fn apply_plan(
        &self,
        instance_id: &str,
        plan: &RetentionPlan,
    ) -> Result<ApplyReport, RetentionError> {
        apply(self, instance_id, plan)
    }
}

fn apply(
    store: &Store,
    instance_id: &str,
    plan: &RetentionPlan,
) -> Result<ApplyReport, RetentionError> {
    let kinds_deleted: BTreeSet<BackupKind> = plan.to_delete().map(|entry| entry.kind).collect();
    for &kind in &kinds_deleted {
        if !plan.to_keep().any(|entry| entry.kind == kind) {
            return Err(RetentionError::KeepsNothing {
                instance_id: instance_id.to_string(),
                kind,
            });
        }
    }
    let listing = store
        .list_sets(instance_id)
        .map_err(|source| RetentionError::List {
            instance_id: instance_id.to_string(),
            source,
        })?;
    let on_disk: HashMap<&str, _> = listing
        .sets
        .iter()
        .map(|set| (set.dir_name.as_str(), set))
        .collect();
    for &kind in &kinds_deleted {
        let kept_present = plan
            .to_keep()
            .any(|entry| entry.kind == kind && on_disk.contains_key(entry.id.as_str()));
        if !kept_present {
            return Err(RetentionError::KeptSetsGone {
                instance_id: instance_id.to_string(),
                kind,
            });
        }
    }
    let mut report = ApplyReport::default();
    for entry in plan.to_delete() {
        match on_disk.get(entry.id.as_str()) {
            None => report.already_gone.push(entry.id.clone()),
            Some(set) if set.manifest.kind != entry.kind => {
                // The id now names a set of another kind: the plan is stale.
                report.already_gone.push(entry.id.clone());
            }
            Some(set) => match store.delete_set(set) {
                Ok(()) => report.deleted.push(entry.id.clone()),
                Err(err) => report.failed.push((entry.id.clone(), err)),
            },
        }
    }
    Ok(report)
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use chrono::{DateTime, NaiveDateTime, Utc};
    use tcbackup_signing::clock::ManualClock;
    use tcbackup_signing::times::CHINA_STANDARD_TIME;

    use super::*;
    use crate::retention::{plan, PlanEntry, Policy, Reason};
    use crate::store::{FileRecord, SetToPublish};

    const NOW: &str = "2025-01-20 00:00";

    /// A UTC instant from "YYYY-MM-DD hh:mm".
    fn utc(text: &str) -> DateTime<Utc> {
        NaiveDateTime::parse_from_str(text, "%Y-%m-%d %H:%M")
            .unwrap()
            .and_utc()
    }

    fn publish(store: &Store, kind: BackupKind, backup_id: &str, start: &str) -> String {
        let partial = store.partial_dir("crs-a", kind, backup_id).unwrap();
        let path = partial.join("f.part");
        std::fs::write(&path, b"data").unwrap();
        let record = FileRecord {
            name: "f.rdb".to_string(),
            size: 4,
            sha256: "3a6eb0790f39ac87c94f3856b2dd2c5d110e6811602261a9a923d3bb23adc8b7".to_string(),
            crc64: 1,
            crc64_checked_against_cos: false,
            content_checks: None,
        };
        store
            .publish(&SetToPublish {
                instance_id: "crs-a".to_string(),
                region: "ap-guangzhou".to_string(),
                kind,
                backup_id: backup_id.to_string(),
                start: utc(start),
                finish: None,
                files: vec![(path, record)],
                encryption: None,
                meta: Default::default(),
            })
            .unwrap()
            .dir_name
    }

    #[test]
    fn apply_deletes_exactly_the_sets_marked_delete() {
        let root = tempfile::tempdir().unwrap();
        let store = Store::open(root.path(), Arc::new(ManualClock::fixed(utc(NOW))));
        let old = publish(&store, BackupKind::Redis, "r1", "2025-01-01 02:00");
        let mid = publish(&store, BackupKind::Redis, "r2", "2025-01-02 02:00");
        let new = publish(&store, BackupKind::Redis, "r3", "2025-01-03 02:00");
        let policy = Policy {
            keep_last: Some(2),
            ..Policy::default()
        };
        let listing = store.list_sets("crs-a").unwrap();
        let plan = plan(&listing.set_infos(), &policy, utc(NOW));
        let report = store.apply_plan("crs-a", &plan).unwrap();
        assert_eq!(report.deleted, std::slice::from_ref(&old));
        assert!(report.failed.is_empty() && report.already_gone.is_empty());
        let left: Vec<String> = store
            .list_sets("crs-a")
            .unwrap()
            .sets
            .into_iter()
            .map(|set| set.dir_name)
            .collect();
        assert_eq!(left, [mid, new]);
        // Applying the same plan again finds the set already gone.
        let again = store.apply_plan("crs-a", &plan).unwrap();
        assert_eq!(again.already_gone, [old]);
    }

    #[test]
    fn apply_refuses_a_plan_that_would_leave_a_kind_empty() {
        let root = tempfile::tempdir().unwrap();
        let store = Store::open(root.path(), Arc::new(ManualClock::fixed(utc(NOW))));
        let only = publish(&store, BackupKind::Redis, "r1", "2025-01-01 02:00");
        let doctored = RetentionPlan {
            entries: vec![PlanEntry {
                id: only.clone(),
                kind: BackupKind::Redis,
                start: utc("2025-01-01 02:00"),
                finish: None,
                keep: false,
                reasons: vec![Reason::NotKept],
            }],
            time_zone: CHINA_STANDARD_TIME,
        };
        let err = store.apply_plan("crs-a", &doctored).unwrap_err();
        assert!(matches!(err, RetentionError::KeepsNothing { .. }), "{err}");
        // A plan whose kept set vanished from disk is refused too.
        let stale = RetentionPlan {
            entries: vec![
                PlanEntry {
                    id: "2025-02-01T000000Z_redis_gone".to_string(),
                    keep: true,
                    reasons: vec![Reason::Newest],
                    ..doctored.entries[0].clone()
                },
                doctored.entries[0].clone(),
            ],
            time_zone: CHINA_STANDARD_TIME,
        };
        let err = store.apply_plan("crs-a", &stale).unwrap_err();
        assert!(matches!(err, RetentionError::KeptSetsGone { .. }), "{err}");
        assert_eq!(store.list_sets("crs-a").unwrap().sets.len(), 1);
    }
}
