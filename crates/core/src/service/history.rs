//! What the metrics file remembers between cycles (and across restarts:
//! the last success times are read back from the previous file), shared by
//! the daemon and `--now` under a timer.

use std::collections::BTreeMap;
use std::io;
use std::path::Path;

use super::metrics::{self, InstanceMetrics};
use crate::sync::CycleReport;

/// What the metrics file shows, per instance.
#[derive(Debug, Default)]
pub struct History {
    /// Per instance id.
    pub instances: BTreeMap<String, InstanceMetrics>,
}

impl History {
    /// Start from the last success times in the previous metrics file.
    pub fn seeded(path: Option<&Path>) -> Self {
        let mut history = History::default();
        let Some(text) = path.and_then(|p| std::fs::read_to_string(p).ok()) else {
            return history;
        };
        for (instance, (service, at)) in metrics::read_last_success(&text) {
            history.instances.insert(
                instance,
                InstanceMetrics {
                    service,
                    last_success_unix: Some(at),
                    ..InstanceMetrics::default()
                },
            );
        }
        history
    }

    /// Take in a completed (not interrupted) cycle.
    pub fn record(&mut self, report: &CycleReport) {
        let at = report.started.timestamp();
        let ended = report.started + chrono::Duration::from_std(report.elapsed).unwrap_or_default();
        for i in &report.instances {
            let m = self.instances.entry(i.instance_id.clone()).or_default();
            m.service = i.service.to_string();
            m.last_run_unix = at;
            m.last_run_ok = i.ok();
            if i.ok() {
                m.last_success_unix = Some(at);
            }
            m.bytes_downloaded = i.bytes();
            m.sets_published = i.published.len() as u64;
            m.sets_failed = i.failures.len() as u64;
            m.failures_total += i.failures.len() as u64;
            m.sets_on_disk = i.sets_on_disk as u64;
            m.bytes_on_disk = i.bytes_on_disk;
            m.newest_set_unix = i.newest_set_start.map(|t| t.timestamp());
            m.newest_set_age_seconds = i.newest_set_start.map(|t| (ended - t).num_seconds().max(0));
        }
    }

    /// Forget instances that are no longer configured.
    pub fn retain_configured(&mut self, config: &crate::config::Config) {
        self.instances.retain(|id, _| config.instance(id).is_some());
    }

    /// Write the metrics file, if one is configured; failures are logged.
    pub async fn write(&self, config: &crate::config::Config) {
        let Some(path) = config.metrics_file.as_deref() else {
            return;
        };
        let text = metrics::render(&self.instances);
        let target = path.to_path_buf();
        let written =
            tokio::task::spawn_blocking(move || metrics::write_atomically(&target, &text))
                .await
                .map_err(io::Error::other)
                .and_then(|written| written);
        if let Err(e) = written {
            tracing::warn!(path = %path.display(), "metrics file not written: {e}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{BackupKind, Service};
    use crate::sync::{Failure, InstanceReport, Published, SetError};
    use chrono::{DateTime, Utc};
    use std::path::PathBuf;
    use std::time::Duration;

    fn at(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    fn instance(id: &str, service: Service) -> InstanceReport {
        InstanceReport::new(id, service)
    }

    #[test]
    fn history_keeps_the_last_success_through_failures() {
        let mut ok = instance("crs-1", Service::Redis);
        ok.published.push(Published {
            kind: BackupKind::Redis,
            backup_id: "b1".into(),
            dir: PathBuf::from("/d/crs-1/x"),
            bytes: 300,
            files: 3,
        });
        ok.sets_on_disk = 4;
        ok.newest_set_start = Some(at("2026-11-25T23:00:00Z"));
        ok.bytes_on_disk = 1200;
        let mut history = History::default();
        history.record(&CycleReport {
            started: at("2026-11-26T00:00:00Z"),
            elapsed: Duration::from_secs(3),
            instances: vec![ok],
            interrupted: false,
        });
        let m = &history.instances["crs-1"];
        assert_eq!(
            m.last_success_unix,
            Some(at("2026-11-26T00:00:00Z").timestamp())
        );
        assert_eq!((m.bytes_downloaded, m.sets_published), (300, 1));
        assert_eq!((m.sets_on_disk, m.bytes_on_disk), (4, 1200));
        assert_eq!(
            m.newest_set_age_seconds,
            Some(3603),
            "age when the cycle ended (3s after its start)"
        );

        let mut failed = instance("crs-1", Service::Redis);
        failed.failures.push(Failure {
            backup_id: Some("b2".into()),
            kind: Some(BackupKind::Redis),
            error: SetError::Refused("bad name".into()),
        });
        history.record(&CycleReport {
            started: at("2026-11-26T06:00:00Z"),
            elapsed: Duration::from_secs(3),
            instances: vec![failed],
            interrupted: false,
        });
        let m = &history.instances["crs-1"];
        assert_eq!(
            m.last_success_unix,
            Some(at("2026-11-26T00:00:00Z").timestamp()),
            "a failed run keeps the previous success time"
        );
        assert_eq!(m.last_run_unix, at("2026-11-26T06:00:00Z").timestamp());
        assert!(!m.last_run_ok);
        assert_eq!(
            (m.sets_failed, m.failures_total, m.sets_published),
            (1, 1, 0)
        );
    }

    #[test]
    fn history_is_seeded_from_the_previous_metrics_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("tcbackup.prom");
        let mut before = BTreeMap::new();
        before.insert(
            "crs-1".to_string(),
            InstanceMetrics {
                service: "redis".into(),
                last_success_unix: Some(1_700_000_000),
                ..InstanceMetrics::default()
            },
        );
        metrics::write_atomically(&path, &metrics::render(&before)).unwrap();
        let history = History::seeded(Some(&path));
        assert_eq!(
            history.instances["crs-1"].last_success_unix,
            Some(1_700_000_000)
        );
        assert!(History::seeded(Some(&dir.path().join("absent.prom")))
            .instances
            .is_empty());
        assert!(History::seeded(None).instances.is_empty());
    }
}
