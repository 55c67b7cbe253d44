//! The metrics file in node_exporter's textfile format, written to a
//! temporary name and renamed so the collector never reads half a file.
//! The file is made readable by all (mode 0644) whatever the umask: it holds
//! no secret, and node_exporter runs as another user.
//!
//! Series, each labelled `instance_id` and `service`:
//! `tcbackup_last_success_timestamp_seconds`, `tcbackup_last_run_timestamp_seconds`,
//! `tcbackup_last_run_success`, `tcbackup_last_run_bytes`,
//! `tcbackup_last_run_sets_published`, `tcbackup_last_run_sets_failed`,
//! `tcbackup_failures_total`, `tcbackup_sets`, `tcbackup_bytes`,
//! `tcbackup_newest_set_timestamp_seconds` (start of the newest local set)
//! and `tcbackup_newest_set_age_seconds` (its age when the cycle ended; the
//! timestamp is the one to alert on with `time() - …`, which keeps counting
//! when no cycle runs). The last two are absent while no set is on disk.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::io;
use std::path::Path;

use crate::private_files::{replace_file, Durability};

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
    /// Unix start time of the newest published set on disk, if any.
    pub newest_set_unix: Option<i64>,
    /// Its age in seconds when the last cycle ended.
    pub newest_set_age_seconds: Option<i64>,
}

/// Render the textfile for every instance, keyed by instance id.
pub fn render(instances: &BTreeMap<String, InstanceMetrics>) -> String {
    let mut out = String::new();
    type Getter = fn(&InstanceMetrics) -> Option<f64>;
    let series: [(&str, &str, &str, Getter); 11] = [
        (
            LAST_SUCCESS,
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
        (
            "tcbackup_newest_set_timestamp_seconds",
            "gauge",
            "Unix start time of the newest published backup set on disk.",
            |m| m.newest_set_unix.map(|t| t as f64),
        ),
        (
            "tcbackup_newest_set_age_seconds",
            "gauge",
            "Age of the newest published backup set when the last cycle ended.",
            |m| m.newest_set_age_seconds.map(|t| t as f64),
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

/// The name of the success series, which outlives a restart (see [`read_last_success`]).
const LAST_SUCCESS: &str = "tcbackup_last_success_timestamp_seconds";

/// The last success time of each instance in a metrics file written by
/// [`render`]: instance id → (service, unix time). A restarted daemon seeds
/// itself with it, so `tcbackup_last_success_timestamp_seconds` does not
/// vanish (and silence an alert on its age) until the next success.
/// Lines it does not understand are skipped.
pub fn read_last_success(text: &str) -> BTreeMap<String, (String, i64)> {
    read_series(text, LAST_SUCCESS)
        .into_iter()
        .map(|(instance, (service, value))| (instance, (service, value as i64)))
        .collect()
}

/// What a metrics file written by [`render`] says about each instance's
/// last cycle, for `tcbackup status`: instance id → (service, last run
/// unix time, whether it succeeded, last success unix time).
pub fn read_last_runs(text: &str) -> BTreeMap<String, LastRun> {
    let ok = read_series(text, "tcbackup_last_run_success");
    let success = read_last_success(text);
    read_series(text, "tcbackup_last_run_timestamp_seconds")
        .into_iter()
        .map(|(instance, (service, at))| {
            let run = LastRun {
                service,
                at_unix: at as i64,
                ok: ok.get(&instance).is_some_and(|(_, v)| *v == 1.0),
                last_success_unix: success.get(&instance).map(|(_, t)| *t),
            };
            (instance, run)
        })
        .collect()
}

/// One instance's last cycle as the metrics file records it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LastRun {
    /// `redis` or `postgres`.
    pub service: String,
    /// Unix time the cycle started.
    pub at_unix: i64,
    /// Whether the instance's pull succeeded in it.
    pub ok: bool,
    /// Unix time of the last cycle in which it succeeded, if any.
    pub last_success_unix: Option<i64>,
}

/// The samples of series `name`: instance id → (service, value). Lines it
/// does not understand are skipped.
fn read_series(text: &str, name: &str) -> BTreeMap<String, (String, f64)> {
    let mut out = BTreeMap::new();
    for line in text.lines() {
        let Some(rest) = line.strip_prefix(name) else {
            continue;
        };
        let Some((labels, value)) = rest
            .strip_prefix('{')
            .and_then(|rest| rest.rsplit_once("} "))
        else {
            continue;
        };
        let labels = parse_labels(labels);
        let (Some(instance), Some(service), Ok(value)) = (
            labels.get("instance_id"),
            labels.get("service"),
            value.trim().parse::<f64>(),
        ) else {
            continue;
        };
        out.insert(instance.clone(), (service.clone(), value));
    }
    out
}

/// `a="x",b="y\"z"` → {a: x, b: y"z}, undoing [`escape`].
fn parse_labels(text: &str) -> BTreeMap<String, String> {
    let mut labels = BTreeMap::new();
    let mut rest = text;
    while let Some((name, after)) = rest.split_once("=\"") {
        let mut value = String::new();
        let mut chars = after.char_indices();
        let mut end = after.len();
        while let Some((i, c)) = chars.next() {
            match c {
                '\\' => match chars.next() {
                    Some((_, 'n')) => value.push('\n'),
                    Some((_, other)) => value.push(other),
                    None => {}
                },
                '"' => {
                    end = i + 1;
                    break;
                }
                other => value.push(other),
            }
        }
        labels.insert(name.trim_start_matches(',').trim().to_string(), value);
        rest = &after[end..];
    }
    labels
}

/// Write `text` to `path` atomically: a temporary file in the same
/// directory (named `.<name>.<pid>.tmp`, which the textfile collector
/// ignores), fsynced, made mode 0644, then renamed over `path`. Blocking.
pub fn write_atomically(path: &Path, text: &str) -> io::Result<()> {
    let file_name = path.file_name().ok_or_else(|| {
        io::Error::new(io::ErrorKind::InvalidInput, "metrics_file has no file name")
    })?;
    let tmp = path.with_file_name(format!(
        ".{}.{}.tmp",
        file_name.to_string_lossy(),
        std::process::id()
    ));
    // 0644: node_exporter, another user, reads it; it holds nothing private.
    replace_file(&tmp, path, text.as_bytes(), 0o644, Durability::Synced)
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
                newest_set_unix: Some(1_699_990_000),
                newest_set_age_seconds: Some(10_100),
            },
        );
        let text = render(&map);
        assert!(text.contains(
            "tcbackup_newest_set_age_seconds{instance_id=\"crs-1\",service=\"redis\"} 10100\n"
        ));
        assert!(text.contains(
            "tcbackup_newest_set_timestamp_seconds{instance_id=\"crs-1\",service=\"redis\"} 1699990000\n"
        ));
        assert_eq!(
            read_last_runs(&text)["crs-1"],
            LastRun {
                service: "redis".into(),
                at_unix: 1_700_000_100,
                ok: true,
                last_success_unix: Some(1_700_000_000),
            }
        );
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
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o644, "readable by node_exporter");
    }

    #[test]
    fn the_last_success_survives_a_round_trip() {
        let mut map = BTreeMap::new();
        for (id, service, success) in [
            ("crs-1", "redis", Some(1_700_000_000)),
            ("postgres-2", "postgres", Some(1_700_000_500)),
            ("odd\"id\\x", "redis", Some(5)),
            ("crs-never", "redis", None),
        ] {
            map.insert(
                id.to_string(),
                InstanceMetrics {
                    service: service.into(),
                    last_success_unix: success,
                    ..InstanceMetrics::default()
                },
            );
        }
        let read = read_last_success(&render(&map));
        assert_eq!(read.len(), 3, "{read:?}");
        assert_eq!(read["crs-1"], ("redis".to_string(), 1_700_000_000));
        assert_eq!(read["postgres-2"], ("postgres".to_string(), 1_700_000_500));
        assert_eq!(read["odd\"id\\x"], ("redis".to_string(), 5));
        assert!(
            read_last_success("garbage\ntcbackup_last_success_timestamp_seconds{x} 1\n").is_empty()
        );
    }

    #[test]
    fn last_runs_read_back_a_failure_and_a_missing_set() {
        let mut map = BTreeMap::new();
        map.insert(
            "postgres-2".to_string(),
            InstanceMetrics {
                service: "postgres".into(),
                last_run_unix: 1_700_000_100,
                last_run_ok: false,
                ..InstanceMetrics::default()
            },
        );
        let text = render(&map);
        assert!(!text.contains("tcbackup_newest_set_age_seconds{"), "{text}");
        let runs = read_last_runs(&text);
        assert_eq!(
            runs["postgres-2"],
            LastRun {
                service: "postgres".into(),
                at_unix: 1_700_000_100,
                ok: false,
                last_success_unix: None,
            }
        );
        assert!(read_last_runs("garbage\n").is_empty());
    }

    #[test]
    fn a_failed_write_leaves_nothing_behind() {
        let dir = tempfile::tempdir().unwrap();
        // The target is a non-empty directory: the rename fails.
        let path = dir.path().join("metrics.prom");
        std::fs::create_dir(&path).unwrap();
        std::fs::write(path.join("x"), "x").unwrap();
        assert!(write_atomically(&path, "x 1\n").is_err());
        let names: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, vec![std::ffi::OsString::from("metrics.prom")]);
    }
}
