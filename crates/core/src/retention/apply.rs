//! Applying a [`RetentionPlan`]: deleting, through the store, exactly the
//! published sets the plan marks for deletion, after checks that the plan
//! still matches what is on disk.

use std::collections::{BTreeSet, HashMap};

use super::RetentionPlan;
use crate::model::BackupKind;
use crate::store::{Store, StoreError};

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

/// What [`apply`] did.
#[derive(Debug, Default)]
pub struct ApplyReport {
    /// Set ids deleted.
    pub deleted: Vec<String>,
    /// Set ids the plan deletes that were already gone.
    pub already_gone: Vec<String>,
    /// Set ids whose deletion failed, with why (the others still ran).
    pub failed: Vec<(String, StoreError)>,
}

/// Delete the sets of `instance_id` that `plan` marks for deletion. Only
/// published sets (listed by the store with a valid manifest) are touched;
/// set ids are the set directory names. Blocking file I/O: call it from
/// `spawn_blocking` in async code.
pub fn apply(
    instance_id: &str,
    plan: &RetentionPlan,
    store: &Store,
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
