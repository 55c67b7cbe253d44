//! The metrics file in node_exporter's textfile format, written to a
//! temporary name and renamed so the collector never reads half a file.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::io::{self, Write as _};
use std::path::Path;

/// What one instance did in the last cycle, and what it has on disk.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct InstanceMetrics {
    /// `redis` or `postgres`.
    pub service: String,
    /// Unix time of the last cycle in which the instance's pull succeeded.
    pub last_success_unix: Option<i64>,
    /// Unix time of the last cycle that ran for this instance.
    pub last_run_unix: i64,
    /// Whether the last cycle succeeded for this instance.
    pub last_run_ok: bool,
    /// Bytes downloaded in the last cycle.
    pub bytes_downloaded: u64,
    /// Sets published in the last cycle.
    pub sets_published: u64,
    /// Sets that failed in the last cycle.
    pub sets_failed: u64,
    /// Failures counted since the daemon started.
    pub failures_total: u64,
    /// Published sets on disk after retention.
    pub sets_on_disk: u64,
    /// Bytes of published sets on disk.
    pub bytes_on_disk: u64,
}

/// Render the textfile for every instance, keyed by instance id.
pub fn render(instances: &BTreeMap<String, InstanceMetrics>) -> String {
    let mut out = String::new();
    type Getter = fn(&InstanceMetrics) -> Option<f64>;
    let series: [(&str, &str, &str, Getter); 9] = [
        (
            "tcbackup_last_success_timestamp_seconds",
            "gauge",
            "Unix time of the last successful pull of the instance.",
            |m| m.last_success_unix.map(|t| t as f64),
        ),
        (
            "tcbackup_last_run_timestamp_seconds",
            "gauge",
            "Unix time of the last cycle for the instance.",
            |m| Some(m.last_run_unix as f64),
        ),
        (
            "tcbackup_last_run_success",
            "gauge",
            "1 when the last cycle for the instance succeeded, else 0.",
            |m| Some(if m.last_run_ok { 1.0 } else { 0.0 }),
        ),
        (
            "tcbackup_last_run_bytes",
            "gauge",
            "Bytes downloaded for the instance in the last cycle.",
            |m| Some(m.bytes_downloaded as f64),
        ),
        (
            "tcbackup_last_run_sets_published",
            "gauge",
            "Backup sets published for the instance in the last cycle.",
            |m| Some(m.sets_published as f64),
        ),
        (
            "tcbackup_last_run_sets_failed",
            "gauge",
            "Backup sets that failed for the instance in the last cycle.",
            |m| Some(m.sets_failed as f64),
        ),
        (
            "tcbackup_failures_total",
            "counter",
            "Failed backup sets since the process started.",
            |m| Some(m.failures_total as f64),
        ),
        (
            "tcbackup_sets",
            "gauge",
            "Published backup sets on disk.",
            |m| Some(m.sets_on_disk as f64),
        ),
        (
            "tcbackup_bytes",
            "gauge",
            "Bytes of published backup sets on disk.",
            |m| Some(m.bytes_on_disk as f64),
        ),
    ];
    for (name, kind, help, get) in series {
        let _ = writeln!(out, "# HELP {name} {help}");
        let _ = writeln!(out, "# TYPE {name} {kind}");
        for (instance, m) in instances {
            if let Some(value) = get(m) {
                let _ = writeln!(
                    out,
                    "{name}{{instance_id=\"{}\",service=\"{}\"}} {value}",
                    escape(instance),
                    escape(&m.service)
                );
            }
        }
    }
    out
}

fn escape(label: &str) -> String {
    label
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// Write `text` to `path` atomically (temporary file in the same directory, then rename).
pub fn write_atomically(path: &Path, text: &str) -> io::Result<()> {
    let file_name = path.file_name().ok_or_else(|| {
        io::Error::new(io::ErrorKind::InvalidInput, "metrics_file has no file name")
    })?;
    let tmp = path.with_file_name(format!(
        ".{}.{}.tmp",
        file_name.to_string_lossy(),
        std::process::id()
    ));
    let mut file = std::fs::File::create(&tmp)?;
    file.write_all(text.as_bytes())?;
    file.sync_all()?;
    drop(file);
    std::fs::rename(&tmp, path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_series_per_instance_and_writes_atomically() {
        let mut map = BTreeMap::new();
        map.insert(
            "crs-1".to_string(),
            InstanceMetrics {
                service: "redis".into(),
                last_success_unix: Some(1_700_000_000),
                last_run_unix: 1_700_000_100,
                last_run_ok: true,
                bytes_downloaded: 4096,
                sets_published: 2,
                sets_failed: 0,
                failures_total: 1,
                sets_on_disk: 7,
                bytes_on_disk: 1 << 20,
            },
        );
        let text = render(&map);
        assert!(text.contains("tcbackup_last_success_timestamp_seconds{instance_id=\"crs-1\",service=\"redis\"} 1700000000\n"), "{text}");
        assert!(text.contains(
            "tcbackup_last_run_sets_published{instance_id=\"crs-1\",service=\"redis\"} 2\n"
        ));
        assert!(text.contains("# TYPE tcbackup_failures_total counter\n"));
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("tcbackup.prom");
        write_atomically(&path, &text).unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), text);
        assert_eq!(
            std::fs::read_dir(dir.path()).unwrap().count(),
            1,
            "no temporary file left"
        );
    }
}
