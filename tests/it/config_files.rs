//! Every config file shipped in `config/` loads, and the mistakes users make
//! most often produce a message with the file, the line, the key and the fix.

use std::path::{Path, PathBuf};

use tcbackup_core::config::{Config, ConfigError};

fn shipped_configs() -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("config");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.extension().is_some_and(|ext| ext == "toml"))
        .collect();
    files.sort();
    files
}

#[test]
fn every_shipped_config_loads() {
    let files = shipped_configs();
    assert!(
        files.len() >= 2,
        "expected the example and demo configs, found {files:?}"
    );
    for file in files {
        let config = Config::load(&file).unwrap_or_else(|err| panic!("{}:\n{err}", file.display()));
        assert!(config.download_dir.is_absolute(), "{}", file.display());
        assert!(!config.instances.is_empty(), "{}", file.display());
        for instance in &config.instances {
            assert!(!instance.retention.is_empty(), "{}", file.display());
        }
    }
}

#[test]
fn example_config_documents_every_key() {
    let text = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("config/tcbackup.example.toml"),
    )
    .unwrap();
    for key in [
        "download_dir",
        "lookback",
        "time_zone",
        "partial_grace",
        "metrics_file",
        "healthcheck_url",
        "group_readable",
        "stale_after",
        "[api]",
        "endpoint",
        "allow_http_downloads",
        "region",
        "metadata_url",
        "[credentials]",
        "secret_id",
        "secret_key",
        "token",
        "[transfer]",
        "concurrency",
        "bandwidth_limit",
        "segments",
        "segment_threshold",
        "url_lifetime_hours",
        "free_space_margin",
        "idle_timeout",
        "[retention]",
        "keep_last",
        "keep_daily",
        "keep_weekly",
        "keep_monthly",
        "keep_within",
        "[schedule]",
        "interval",
        "daily_at",
        "jitter",
        "[[redis]]",
        "instance_id",
        "[redis.retention]",
        "[[postgres]]",
        "backup_types",
        "[postgres.retention]",
    ] {
        assert!(
            text.contains(key),
            "the example config does not mention {key}"
        );
    }
}

#[test]
fn demo_config_resolves_its_relative_directory_against_the_current_directory() {
    let file = Path::new(env!("CARGO_MANIFEST_DIR")).join("config/demo.toml");
    let config = Config::load(&file).unwrap();
    let cwd = std::env::current_dir().unwrap();
    assert_eq!(config.download_dir, cwd.join("tcbackup-demo"));
    assert!(config.api.allow_http_downloads);
    assert!(config.api.endpoint.is_some());
}

/// The example config with `edit` applied, loaded from a temp file; returns
/// the file's path and the error's lines.
fn load_edited(edit: impl FnOnce(&str) -> String) -> (PathBuf, Vec<String>) {
    let example = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("config/tcbackup.example.toml"),
    )
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("tcbackup.toml");
    std::fs::write(&file, edit(&example)).unwrap();
    let err = Config::load(&file).expect_err("the edit must make the config invalid");
    assert!(matches!(err, ConfigError::Invalid { .. }));
    let lines = err.to_string().lines().map(str::to_string).collect();
    (file, lines)
}

fn line_of(text: &str, needle: &str) -> usize {
    text.lines()
        .position(|line| line.starts_with(needle))
        .unwrap()
        + 1
}

#[test]
fn misspelt_key_names_the_key_the_line_and_the_suggestion() {
    let mut line = 0;
    let (file, lines) = load_edited(|text| {
        line = line_of(text, "keep_last = 7");
        text.replace("keep_last = 7", "keep_lst = 7")
    });
    assert_eq!(
        lines,
        [format!(
            "{}:{line}: unknown key `keep_lst` in [retention] (did you mean `keep_last`?); expected one of keep_last, keep_daily, keep_weekly, keep_monthly, keep_within, keep_manual",
            file.display()
        )]
    );
}

#[test]
fn missing_download_dir_says_what_to_add() {
    let (file, lines) =
        load_edited(|text| text.replace("download_dir = \"/var/lib/tcbackup\"", ""));
    assert_eq!(
        lines,
        [format!(
            "{}: missing required key `download_dir` (where backups are copied to); add e.g. download_dir = \"/var/lib/tcbackup\" at the top of the file",
            file.display()
        )]
    );
}

#[test]
fn bad_duration_lists_the_accepted_forms() {
    let mut line = 0;
    let (file, lines) = load_edited(|text| {
        let edited = text.replace("# keep_within = \"14d\"", "keep_within = \"two weeks\"");
        line = line_of(&edited, "keep_within");
        edited
    });
    assert_eq!(
        lines,
        [format!(
            "{}:{line}: bad `keep_within` in [retention]: \"two weeks\" does not start with a number; expected a whole number and a unit: \"30s\", \"10m\", \"36h\", \"14d\", \"2w\", or a sum like \"1h30m\"",
            file.display()
        )]
    );
}

#[test]
fn bad_bandwidth_lists_the_accepted_forms() {
    let mut line = 0;
    let (file, lines) = load_edited(|text| {
        let edited = text.replace(
            "# bandwidth_limit = \"100MiB/s\"",
            "bandwidth_limit = \"100Mb/s\"",
        );
        line = line_of(&edited, "bandwidth_limit");
        edited
    });
    assert_eq!(
        lines,
        [format!(
            "{}:{line}: bad `bandwidth_limit` in [transfer]: unit \"Mb\" reads as bits; write \"MB\" for bytes (units are case-sensitive); expected a size per second: \"100MiB/s\", \"10MB/s\", \"500KiB/s\" (KiB/MiB/GiB are powers of 1024, kB/MB/GB powers of 1000)",
            file.display()
        )]
    );
}

#[test]
fn empty_retention_is_refused_not_treated_as_delete_everything() {
    let mut line = 0;
    let (file, lines) = load_edited(|text| {
        line = line_of(text, "[retention]");
        text.replace("keep_last = 7\n", "")
    });
    assert_eq!(
        lines,
        [format!(
            "{}:{line}: [retention] has no keep rule, so retention would not know what to keep; add at least one of keep_last, keep_daily, keep_weekly, keep_monthly, keep_within (e.g. keep_last = 7)",
            file.display()
        )]
    );
}

#[test]
fn several_mistakes_are_reported_together() {
    let (_, lines) = load_edited(|text| {
        text.replace("keep_last = 7", "keep_lst = 7\nkeep_within = \"14days\"")
            .replace(
                "# bandwidth_limit = \"100MiB/s\"",
                "bandwidth_limit = \"lots\"",
            )
            .replace("download_dir = \"/var/lib/tcbackup\"", "")
    });
    assert_eq!(lines.len(), 4, "{lines:#?}");
    assert!(lines[0].contains("missing required key `download_dir`"));
    assert!(lines[1].contains("`bandwidth_limit`"));
    assert!(lines[2].contains("`keep_lst`"));
    assert!(lines[3].contains("`keep_within`"));
}
