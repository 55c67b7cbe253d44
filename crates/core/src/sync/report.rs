//! What a cycle reports: per instance, the sets published, the failures
//! (with the backup they belong to), what retention pruned or why it was
//! not applied; over the cycle, how it ended ([`CycleReport::exit`]) and
//! the one-line summary.

use std::path::PathBuf;
use std::time::Duration;

use chrono::{DateTime, Utc};

use crate::cloud::error::ApiError;
use crate::exit::Exit;
use crate::model::{BackupKind, Network, RemoteBackup};
use crate::store::StoreError;
use crate::transfer::TransferError;
use crate::verify::VerifyError;

/// Why one backup set (or a whole instance) failed.
#[derive(Debug, thiserror::Error)]
pub enum SetError {
    /// The cloud API refused or failed.
    #[error(transparent)]
    Api(#[from] ApiError),
    /// A file could not be downloaded. Every transfer error already names
    /// its backup and file, so the message is the source's alone.
    #[error("{source}")]
    Transfer {
        /// The file name.
        file: String,
        /// Why.
        #[source]
        source: TransferError,
    },
    /// COS refused a public download with 403 `AccessDenied`: the account
    /// probably allows intranet downloads only.
    #[error("{source}; the account's backup download policy may allow intranet downloads only (`tcbackup check-config` shows it): on a host inside Tencent Cloud set network = \"intranet\" ([transfer] or the instance's table), or ask the administrator to allow public downloads")]
    PublicDownloadDenied {
        /// The file name.
        file: String,
        /// Why.
        #[source]
        source: TransferError,
    },
    /// A downloaded file failed verification; it was discarded.
    #[error("{file}: verification failed, the download was discarded: {source}")]
    Verify {
        /// The file name.
        file: String,
        /// Why.
        #[source]
        source: VerifyError,
    },
    /// The store refused or failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The API gave an unusable answer for this set.
    #[error("{0}")]
    Refused(String),
    /// The run was interrupted.
    #[error("interrupted")]
    Cancelled,
    /// A blocking task died.
    #[error("internal task failed: {0}")]
    Task(String),
}

impl SetError {
    /// Whether this is an authentication or permission failure (exit 3).
    pub fn is_auth(&self) -> bool {
        matches!(self, SetError::Api(e) if e.is_auth())
    }

    /// The error of a download over `network`: a public download that COS
    /// refused with 403 `AccessDenied` becomes
    /// [`SetError::PublicDownloadDenied`], which names the likely cause and
    /// the fix; anything else is unchanged.
    pub(crate) fn over_network(self, network: Network) -> SetError {
        match self {
            SetError::Transfer { file, source }
                if network == Network::Public && is_access_denied(&source) =>
            {
                SetError::PublicDownloadDenied { file, source }
            }
            other => other,
        }
    }
}

fn is_access_denied(err: &TransferError) -> bool {
    matches!(err, TransferError::Denied { status: 403, code, .. } if code == "AccessDenied")
}

/// A set that was published in this cycle.
#[derive(Debug, Clone)]
pub struct Published {
    /// Redis, PostgreSQL base or log.
    pub kind: BackupKind,
    /// The API's backup id.
    pub backup_id: String,
    /// Where it now lies.
    pub dir: PathBuf,
    /// Bytes in the set.
    pub bytes: u64,
    /// Files in the set.
    pub files: usize,
}

/// A finished backup that tcbackup lists but does not fetch, because it
/// cannot fetch it (an unknown PostgreSQL backup method such as `snapshot`,
/// a Redis file type that is not an RDB). Never a failure.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Skipped {
    /// Redis, PostgreSQL base or log.
    pub kind: BackupKind,
    /// The API's backup id.
    pub backup_id: String,
    /// Why it is not fetched.
    pub reason: String,
}

/// A failure inside an instance: one set, or the instance as a whole.
#[derive(Debug)]
pub struct Failure {
    /// The backup, when one set failed; `None` when the instance failed.
    pub backup_id: Option<String>,
    /// The kind of that backup.
    pub kind: Option<BackupKind>,
    /// What went wrong.
    pub error: SetError,
}

/// What one instance did in a cycle.
#[derive(Debug)]
pub struct InstanceReport {
    /// The instance.
    pub instance_id: String,
    /// `redis` or `postgres`.
    pub service: crate::model::Service,
    /// Finished backups listed in the lookback window.
    pub listed: usize,
    /// Backups that were due.
    pub due: usize,
    /// Sets published.
    pub published: Vec<Published>,
    /// Sets (or the instance) that failed.
    pub failures: Vec<Failure>,
    /// Finished backups listed but not fetched (never a failure).
    pub skipped: Vec<Skipped>,
    /// Set directories deleted by retention.
    pub pruned: Vec<String>,
    /// Why retention did not run, when it did not.
    pub retention_skipped: Option<String>,
    /// Published sets on disk after the cycle.
    pub sets_on_disk: usize,
    /// Their bytes.
    pub bytes_on_disk: u64,
    /// The start time of the newest of them, of any kind.
    pub newest_set_start: Option<chrono::DateTime<chrono::Utc>>,
}

impl InstanceReport {
    /// An empty report for one instance.
    pub fn new(instance_id: &str, service: crate::model::Service) -> Self {
        Self {
            instance_id: instance_id.to_string(),
            service,
            listed: 0,
            due: 0,
            published: Vec::new(),
            failures: Vec::new(),
            skipped: Vec::new(),
            pruned: Vec::new(),
            retention_skipped: None,
            sets_on_disk: 0,
            newest_set_start: None,
            bytes_on_disk: 0,
        }
    }

    /// Whether everything due was published.
    pub fn ok(&self) -> bool {
        self.failures.is_empty()
    }

    /// Bytes published in this cycle.
    pub fn bytes(&self) -> u64 {
        self.published.iter().map(|p| p.bytes).sum()
    }

    pub(super) fn skip(&mut self, backup: &RemoteBackup, reason: String) {
        tracing::warn!(instance = %self.instance_id, backup_id = %backup.backup_id, kind = %backup.kind, "skipped: {reason}");
        self.skipped.push(Skipped {
            kind: backup.kind,
            backup_id: backup.backup_id.clone(),
            reason,
        });
    }

    pub(super) fn fail(&mut self, backup: Option<&RemoteBackup>, error: SetError) {
        match backup {
            Some(b) => {
                tracing::error!(instance = %self.instance_id, backup_id = %b.backup_id, kind = %b.kind, "backup failed: {error}")
            }
            None => tracing::error!(instance = %self.instance_id, "instance failed: {error}"),
        }
        self.failures.push(Failure {
            backup_id: backup.map(|b| b.backup_id.clone()),
            kind: backup.map(|b| b.kind),
            error,
        });
    }
}

/// What a cycle did.
#[derive(Debug)]
pub struct CycleReport {
    /// When it started.
    pub started: DateTime<Utc>,
    /// How long it took.
    pub elapsed: Duration,
    /// Per instance, in config order.
    pub instances: Vec<InstanceReport>,
    /// Whether it was interrupted.
    pub interrupted: bool,
}

impl CycleReport {
    /// How the cycle ended: interrupted, an authentication failure, a
    /// failed set, or success (the precedence is [`Exit::and`]'s).
    pub fn exit(&self) -> Exit {
        let failures = self.instances.iter().flat_map(|i| &i.failures);
        let interrupted = if self.interrupted {
            Exit::Interrupted
        } else {
            Exit::Ok
        };
        failures.fold(interrupted, |exit, f| {
            exit.and(if f.error.is_auth() {
                Exit::Auth
            } else {
                Exit::Failed
            })
        })
    }

    /// Sets published over all instances.
    pub fn published(&self) -> usize {
        self.instances.iter().map(|i| i.published.len()).sum()
    }

    /// Failures over all instances.
    pub fn failed(&self) -> usize {
        self.instances.iter().map(|i| i.failures.len()).sum()
    }

    /// Bytes published over all instances.
    pub fn bytes(&self) -> u64 {
        self.instances.iter().map(InstanceReport::bytes).sum()
    }

    /// A one-paragraph human summary.
    pub fn summary(&self) -> String {
        let mut out = format!(
            "{} set(s) published ({}), {} failed, {} pruned, in {:.1}s",
            self.published(),
            crate::progress::human_bytes(self.bytes()),
            self.failed(),
            self.instances.iter().map(|i| i.pruned.len()).sum::<usize>(),
            self.elapsed.as_secs_f64()
        );
        if self.interrupted {
            out.push_str(" (interrupted: partial downloads kept for the next run)");
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Service;

    fn denied(status: u16, code: &str) -> SetError {
        SetError::Transfer {
            file: "a.rdb".into(),
            source: TransferError::Denied {
                file: crate::transfer::FileRef {
                    backup_id: "b1".into(),
                    file_name: "a.rdb".into(),
                },
                status,
                code: code.into(),
                message: "Access Denied.".into(),
            },
        }
    }

    #[test]
    fn a_public_download_refused_with_access_denied_names_the_intranet_fix() {
        let err = denied(403, "AccessDenied").over_network(Network::Public);
        assert!(
            matches!(err, SetError::PublicDownloadDenied { .. }),
            "{err:?}"
        );
        let message = err.to_string();
        assert!(
            message.starts_with("b1/a.rdb: server answered 403 AccessDenied: Access Denied.; "),
            "{message}"
        );
        assert!(message.contains("network = \"intranet\""), "{message}");
        for (status, code, network) in [
            (403, "AccessDenied", Network::Intranet),
            (404, "NoSuchKey", Network::Public),
            (403, "SignatureDoesNotMatch", Network::Public),
        ] {
            let err = denied(status, code).over_network(network);
            assert!(matches!(err, SetError::Transfer { .. }), "{err:?}");
        }
    }

    fn api(code: &str) -> SetError {
        SetError::Api(ApiError::Service {
            action: "DescribeBackupUrl".into(),
            code: code.into(),
            message: "m".into(),
            request_id: "r".into(),
        })
    }

    fn failure(id: &str, error: SetError) -> Failure {
        Failure {
            backup_id: Some(id.to_string()),
            kind: Some(BackupKind::Redis),
            error,
        }
    }

    fn published(id: &str, bytes: u64) -> Published {
        Published {
            kind: BackupKind::Redis,
            backup_id: id.to_string(),
            dir: PathBuf::from(id),
            bytes,
            files: 1,
        }
    }

    fn cycle(instances: Vec<InstanceReport>, interrupted: bool) -> CycleReport {
        CycleReport {
            started: DateTime::from_timestamp(1_700_000_000, 0).expect("valid"),
            elapsed: Duration::from_millis(1500),
            instances,
            interrupted,
        }
    }

    #[test]
    fn the_cycle_ends_as_its_most_serious_failure() {
        let mut a = InstanceReport::new("crs-a", Service::Redis);
        a.published.push(published("b1", 1024));
        assert_eq!(cycle(vec![a], false).exit(), Exit::Ok);

        let mut a = InstanceReport::new("crs-a", Service::Redis);
        a.failures
            .push(failure("b1", SetError::Refused("no such file".into())));
        let mut b = InstanceReport::new("postgres-b", Service::Postgres);
        b.failures
            .push(failure("b2", api("AuthFailure.SignatureFailure")));
        // An authentication failure in one instance outranks a failed set
        // in another, whatever their order.
        assert_eq!(cycle(vec![a, b], false).exit(), Exit::Auth);

        let mut a = InstanceReport::new("crs-a", Service::Redis);
        a.failures
            .push(failure("b2", api("AuthFailure.SignatureFailure")));
        assert_eq!(cycle(vec![a], true).exit(), Exit::Interrupted);

        let mut a = InstanceReport::new("crs-a", Service::Redis);
        a.failures.push(failure("b3", api("InternalError")));
        assert!(!a.ok());
        assert_eq!(cycle(vec![a], false).exit(), Exit::Failed);
    }

    #[test]
    fn a_skipped_backup_is_recorded_with_its_reason_and_is_no_failure() {
        let backup = RemoteBackup {
            instance_id: "postgres-b".into(),
            region: "ap-guangzhou".into(),
            backup_id: "snap-1".into(),
            kind: BackupKind::PgBase,
            start: DateTime::from_timestamp(1_700_000_000, 0).expect("valid"),
            finish: None,
            expire: None,
            finished: true,
            status: "finished".into(),
            files: Vec::new(),
            encrypted: false,
            meta: Default::default(),
        };
        let mut b = InstanceReport::new("postgres-b", Service::Postgres);
        b.skip(
            &backup,
            "backup method \"snapshot\" is not one tcbackup can fetch".into(),
        );
        assert!(b.ok());
        assert_eq!(
            b.skipped,
            [Skipped {
                kind: BackupKind::PgBase,
                backup_id: "snap-1".into(),
                reason: "backup method \"snapshot\" is not one tcbackup can fetch".into(),
            }]
        );
        assert_eq!(cycle(vec![b], false).exit(), Exit::Ok);
    }

    #[test]
    fn the_summary_counts_over_every_instance() {
        let mut a = InstanceReport::new("crs-a", Service::Redis);
        a.published.push(published("b1", 1024));
        a.published.push(published("b2", 1024));
        a.pruned.push("old".into());
        let mut b = InstanceReport::new("postgres-b", Service::Postgres);
        b.failures.push(failure("b3", SetError::Cancelled));
        let report = cycle(vec![a, b], true);
        assert_eq!(
            (report.published(), report.failed(), report.bytes()),
            (2, 1, 2048)
        );
        let summary = report.summary();
        assert!(
            summary.starts_with("2 set(s) published (")
                && summary.contains("1 failed, 1 pruned, in 1.5s")
                && summary.ends_with("(interrupted: partial downloads kept for the next run)"),
            "{summary}"
        );
    }
}
