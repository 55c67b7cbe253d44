use std::path::Path;

use super::*;
use crate::config::ScheduleWhen;

const PATH: &str = "/etc/tcbackup/tcbackup.toml";

fn load(text: &str) -> Result<Config, ConfigError> {
    Config::from_str_in(text, PATH, Some(Path::new("/home/op")))
}

fn problems(text: &str) -> Vec<String> {
    match load(text) {
        Ok(config) => panic!("expected problems, got {config:#?}"),
        Err(err) => err
            .problems()
            .iter()
            .map(|problem| problem.located(Path::new(PATH)))
            .collect(),
    }
}

const MINIMAL: &str = r#"
download_dir = "/var/lib/tcbackup"

[retention]
keep_last = 7

[[redis]]
instance_id = "crs-4y9t57vt"
region = "ap-guangzhou"
"#;

#[test]
fn minimal_config_gets_the_documented_defaults() {
    let config = load(MINIMAL).unwrap();
    assert_eq!(config.download_dir, Path::new("/var/lib/tcbackup"));
    assert_eq!(config.lookback, Duration::from_secs(7 * 86_400));
    assert_eq!(config.time_zone, CHINA_STANDARD_TIME);
    assert_eq!(config.transfer, TransferConfig::default());
    assert_eq!(config.transfer.concurrency.get(), 4);
    assert_eq!(config.transfer.bandwidth_limit, None);
    assert_eq!(config.schedule, Schedule::default());
    assert!(config.credentials.is_none());
    assert!(config.warnings.is_empty(), "{:?}", config.warnings);
    let [instance] = config.instances.as_slice() else {
        panic!("one instance expected")
    };
    assert_eq!(instance.instance_id, "crs-4y9t57vt");
    assert_eq!(instance.service, Service::Redis);
    assert_eq!(instance.kinds, [BackupKind::Redis]);
    assert_eq!(instance.retention.keep_last, Some(7));
}

#[test]
fn every_key_is_read_into_its_typed_value() {
    let text = r#"
download_dir = "/srv/backups"
lookback = "3d"
time_zone = "UTC"
partial_grace = "2d"
metrics_file = "/var/lib/node_exporter/tcbackup.prom"
healthcheck_url = "https://hc-ping.com/0b2c"

[api]
endpoint = "http://127.0.0.1:9000"
allow_http_downloads = true
region = "ap-shanghai"
metadata_url = "http://127.0.0.1:9001/latest/meta-data/"

[credentials]
secret_id = "AKIDEXAMPLE"
secret_key = "Gu5t9xGARNpq86cd98joQYCN3EXAMPLE"
token = "tok"

[transfer]
concurrency = 8
bandwidth_limit = "10MB/s"
segments = 6
segment_threshold = "128MiB"
url_lifetime_hours = 36
free_space_margin = "2GiB"
idle_timeout = "2m"

[retention]
keep_daily = 7
keep_weekly = 4
keep_monthly = 6
keep_within = "2d"
keep_manual = true

[schedule]
daily_at = "03:30"
jitter = "5m"

[[redis]]
instance_id = "crs-a"

[[postgres]]
instance_id = "postgres-b"
region = "ap-guangzhou"
backup_types = ["base"]

[postgres.retention]
keep_last = 3
"#;
    let config = load(text).unwrap();
    assert_eq!(config.lookback, Duration::from_secs(3 * 86_400));
    assert_eq!(config.time_zone, FixedOffset::east_opt(0).unwrap());
    assert_eq!(config.partial_grace, Duration::from_secs(2 * 86_400));
    assert_eq!(
        config.metrics_file.as_deref(),
        Some(Path::new("/var/lib/node_exporter/tcbackup.prom"))
    );
    assert_eq!(
        config.api.endpoint.as_ref().map(Url::as_str),
        Some("http://127.0.0.1:9000/")
    );
    assert!(config.api.allow_http_downloads);
    let credentials = config.credentials.as_ref().unwrap();
    assert_eq!(credentials.secret_id, "AKIDEXAMPLE");
    assert_eq!(
        credentials.secret_key.expose(),
        "Gu5t9xGARNpq86cd98joQYCN3EXAMPLE"
    );
    assert!(!format!("{config:?}").contains("Gu5t9x"));
    assert_eq!(config.transfer.concurrency.get(), 8);
    assert_eq!(config.transfer.bandwidth_limit, Some(10_000_000));
    assert_eq!(config.transfer.segments.get(), 6);
    assert_eq!(config.transfer.segment_threshold, 128 << 20);
    assert_eq!(config.transfer.url_lifetime_hours, 36);
    assert_eq!(config.transfer.free_space_margin, 2 << 30);
    assert_eq!(config.transfer.idle_timeout, Duration::from_secs(120));
    assert_eq!(
        config.schedule.when,
        ScheduleWhen::DailyAt(chrono::NaiveTime::from_hms_opt(3, 30, 0).unwrap())
    );
    assert_eq!(config.schedule.jitter, Duration::from_secs(300));
    let redis = config.instance("crs-a").unwrap();
    assert_eq!(redis.region, "ap-shanghai", "falls back to [api] region");
    assert_eq!(redis.retention.keep_daily, Some(7));
    assert_eq!(
        redis.retention.keep_within,
        Some(Duration::from_secs(2 * 86_400))
    );
    assert_eq!(redis.retention.time_zone, FixedOffset::east_opt(0).unwrap());
    assert!(redis.retention.keep_manual);
    let postgres = config.instance("postgres-b").unwrap();
    assert_eq!(postgres.kinds, [BackupKind::PgBase]);
    assert_eq!(
        postgres.retention,
        Policy {
            keep_last: Some(3),
            time_zone: FixedOffset::east_opt(0).unwrap(),
            ..Policy::default()
        },
        "an instance's retention table replaces [retention] as a whole"
    );
}

#[test]
fn reports_every_problem_at_once_in_line_order() {
    let text = r#"lookback = "7days"

[transfer]
bandwidth_limit = "fast"

[retention]
keep_lst = 7

[[redis]]
instance_id = "crs-a"
region = "ap-guangzhou"
"#;
    let found = problems(text);
    assert_eq!(found.len(), 4, "{found:#?}");
    assert!(
        found[0].starts_with(&format!("{PATH}: missing required key `download_dir`")),
        "{found:#?}"
    );
    assert!(
        found[1].starts_with(&format!("{PATH}:1: bad `lookback`: unknown unit \"days\"")),
        "{found:#?}"
    );
    assert!(
        found[2].starts_with(&format!("{PATH}:4: bad `bandwidth_limit` in [transfer]")),
        "{found:#?}"
    );
    assert_eq!(
        found[3],
        format!("{PATH}:7: unknown key `keep_lst` in [retention] (did you mean `keep_last`?); expected one of keep_last, keep_daily, keep_weekly, keep_monthly, keep_within, keep_manual")
    );
}

#[test]
fn unknown_keys_are_reported_everywhere_with_their_home() {
    let text = r#"download_dir = "/d"
concurrency = 4

[api]
endpont = "http://x"

[retention]
keep_last = 2
[[postgres]]
instance_id = "postgres-a"
region = "ap-guangzhou"
backup_type = ["base"]
[postgres.retention]
keep-daily = 3
"#;
    let found = problems(text);
    assert_eq!(found.len(), 4, "{found:#?}");
    assert!(
        found[0]
            .contains(":2: unknown key `concurrency` at the top level (it belongs in [transfer])"),
        "{found:#?}"
    );
    assert!(
        found[1].contains(":5: unknown key `endpont` in [api] (did you mean `endpoint`?)"),
        "{found:#?}"
    );
    assert!(
        found[2].contains(
            ":12: unknown key `backup_type` in [[postgres]] (did you mean `backup_types`?)"
        ),
        "{found:#?}"
    );
    assert!(
        found[3].contains(
            ":14: unknown key `keep-daily` in [postgres.retention] (did you mean `keep_daily`?)"
        ),
        "{found:#?}"
    );
}

#[test]
fn wrong_types_name_the_expected_type_and_an_example() {
    let text = r#"download_dir = "/d"
[retention]
keep_last = "7"
[schedule]
daily_at = 03:30:00
[api]
allow_http_downloads = "yes"
[[redis]]
instance_id = "crs-a"
region = "ap-guangzhou"
"#;
    let found = problems(text);
    assert!(
        found.iter().any(|p| {
            p.ends_with(
        ":3: `keep_last` in [retention] must be an integer, found a string; write keep_last = 7"
    )
        }),
        "{found:#?}"
    );
    assert!(found.iter().any(|p| p.contains(
        ":5: `daily_at` in [schedule] must be a string, found a date-time (times must be quoted); write daily_at = \"03:30\""
    )), "{found:#?}");
    assert!(
        found
            .iter()
            .any(|p| p.contains(":7: `allow_http_downloads` in [api] must be true or false")),
        "{found:#?}"
    );
}

#[test]
fn toml_syntax_errors_point_at_their_line() {
    let found = problems("download_dir = \"/d\"\n[retention\nkeep_last = 1\n");
    assert_eq!(found.len(), 1, "{found:#?}");
    assert!(
        found[0].starts_with(&format!("{PATH}:2: not valid TOML")),
        "{found:#?}"
    );
}

#[test]
fn relative_download_dir_resolves_against_the_current_directory_with_a_warning() {
    let text = MINIMAL.replace("/var/lib/tcbackup", "./tcbackup-demo");
    let config = load(&text).unwrap();
    assert_eq!(config.download_dir, Path::new("/home/op/tcbackup-demo"));
    assert!(config.warnings[0]
        .message
        .contains("resolved against the current directory: /home/op/tcbackup-demo"));
    let refused = Config::from_str_in(&text, PATH, None)
        .unwrap_err()
        .to_string();
    assert!(
        refused.contains(":2: `download_dir` must be an absolute path"),
        "{refused}"
    );
    let tilde = problems(&MINIMAL.replace("/var/lib/tcbackup", "~/backups"));
    assert!(
        tilde[0].contains("`~`, which is not expanded"),
        "{tilde:#?}"
    );
}

#[test]
fn metrics_file_must_lie_outside_download_dir() {
    let text = MINIMAL.replace(
        "download_dir = \"/var/lib/tcbackup\"",
        "download_dir = \"/var/lib/tcbackup\"\nmetrics_file = \"/var/lib/tcbackup/m.prom\"",
    );
    let found = problems(&text);
    assert!(
        found[0].contains(":3: `metrics_file` must lie outside `download_dir`"),
        "{found:#?}"
    );
}

#[test]
fn an_empty_metrics_file_asks_for_a_path_not_a_directory() {
    let text = MINIMAL.replace(
        "download_dir = \"/var/lib/tcbackup\"",
        "download_dir = \"/var/lib/tcbackup\"\nmetrics_file = \"\"",
    );
    let found = problems(&text);
    assert!(
        found[0].contains(":3: `metrics_file` is empty; give an absolute path"),
        "{found:#?}"
    );
}

#[test]
fn credentials_must_come_in_pairs_and_are_never_echoed() {
    let key_only = MINIMAL.to_string() + "[credentials]\nsecret_key = \"TOPSECRETVALUE\"\n";
    let err = load(&key_only).unwrap_err().to_string();
    assert!(
        err.contains(":10: [credentials] has `secret_key` but no `secret_id`"),
        "{err}"
    );
    assert!(!err.contains("TOPSECRETVALUE"));
    let id_only = MINIMAL.to_string() + "[credentials]\nsecret_id = \"AKID\"\n";
    assert!(load(&id_only)
        .unwrap_err()
        .to_string()
        .contains("has `secret_id` but no `secret_key`"));
    let token_only = MINIMAL.to_string() + "[credentials]\ntoken = \"TOPSECRETVALUE\"\n";
    let err = load(&token_only).unwrap_err().to_string();
    assert!(
        err.contains("has a `token` but no `secret_id` and `secret_key`"),
        "{err}"
    );
    let padded = MINIMAL.to_string()
        + "[credentials]\nsecret_id = \"AKID\"\nsecret_key = \" TOPSECRETVALUE\"\n";
    let err = load(&padded).unwrap_err().to_string();
    assert!(
        err.contains(":12: `secret_key` in [credentials] has leading or trailing whitespace"),
        "{err}"
    );
    assert!(!err.contains("TOPSECRETVALUE"));
}

#[test]
fn instance_ids_are_checked_for_prefix_safety_and_duplicates() {
    let text = r#"download_dir = "/d"
[retention]
keep_last = 1
[[redis]]
instance_id = "postgres-x"
region = "ap-guangzhou"
[[redis]]
instance_id = "emulated-1"
region = "ap-guangzhou"
[[redis]]
instance_id = "../etc"
region = "ap-guangzhou"
[[postgres]]
instance_id = "emulated-1"
region = "ap-guangzhou"
[[postgres]]
region = "ap-guangzhou"
"#;
    let err = load(text).unwrap_err();
    let found: Vec<String> = err
        .problems()
        .iter()
        .map(|p| p.located(Path::new(PATH)))
        .collect();
    assert_eq!(found.len(), 4, "{found:#?}");
    assert!(
        found[0].contains(":5: instance `postgres-x` looks like a PostgreSQL instance"),
        "{found:#?}"
    );
    assert!(found[0].contains("move it to [[postgres]]"), "{found:#?}");
    assert!(
        found[1].contains(":11: `instance_id` in [[redis]] \"../etc\" may only hold"),
        "{found:#?}"
    );
    assert!(
        found[2].contains(":14: instance `emulated-1` is configured twice (first at line 8)"),
        "{found:#?}"
    );
    assert!(
        found[3].contains(":16: [[postgres]] table without `instance_id`"),
        "{found:#?}"
    );
    let warned = load(&MINIMAL.replace("crs-4y9t57vt", "emulated-1")).unwrap();
    assert!(
        warned.warnings[0]
            .message
            .contains("does not start with `crs-`"),
        "{:?}",
        warned.warnings
    );
}

#[test]
fn region_comes_from_the_instance_or_api_or_is_an_error_naming_both() {
    let text = MINIMAL.replace("region = \"ap-guangzhou\"\n", "");
    let found = problems(&text);
    assert_eq!(found.len(), 1, "{found:#?}");
    assert!(found[0].contains(":7: no region for instance `crs-4y9t57vt`: set `region` in this [[redis]] table or a default `region` in [api]"), "{found:#?}");
    let bad = problems(&MINIMAL.replace("ap-guangzhou", "AP Guangzhou"));
    assert!(bad[0].contains("is not a region name"), "{bad:#?}");
}

#[test]
fn backup_types_accept_only_base_and_log() {
    let base = MINIMAL.replace(
        "[[redis]]\ninstance_id = \"crs-4y9t57vt\"",
        "[[postgres]]\ninstance_id = \"postgres-a\"",
    );
    let config = load(&base).unwrap();
    assert_eq!(
        config.instances[0].kinds,
        [BackupKind::PgBase, BackupKind::PgLog]
    );
    let full = base.clone() + "backup_types = [\"full\", \"log\", \"log\"]\n";
    let found = problems(&full);
    assert!(
        found[0].contains(
            "unknown backup type \"full\" in `backup_types`; expected \"base\" or \"log\""
        ),
        "{found:#?}"
    );
    assert!(
        found[1].contains("backup type \"log\" is listed twice"),
        "{found:#?}"
    );
    let empty = problems(&(base.clone() + "backup_types = []\n"));
    assert!(
        empty[0].contains("`backup_types` in [[postgres]] is empty"),
        "{empty:#?}"
    );
    let log_only = load(&(base + "backup_types = [\"log\"]\n")).unwrap();
    assert!(log_only.warnings[0]
        .message
        .contains("log backups are never pruned"));
}

#[test]
fn retention_must_keep_something() {
    let empty_table = MINIMAL.replace("keep_last = 7\n", "");
    let found = problems(&empty_table);
    assert_eq!(
        found,
        [format!("{PATH}:4: [retention] has no keep rule, so retention would not know what to keep; add at least one of keep_last, keep_daily, keep_weekly, keep_monthly, keep_within (e.g. keep_last = 7)")]
    );
    let zero = problems(&MINIMAL.replace("keep_last = 7", "keep_last = 0"));
    assert!(
        zero[0].contains(":5: `keep_last` in [retention] = 0 keeps nothing by this rule"),
        "{zero:#?}"
    );
    let negative = problems(&MINIMAL.replace("keep_last = 7", "keep_weekly = -2"));
    assert!(
        negative[0].contains("must be a positive count, found -2"),
        "{negative:#?}"
    );
    let no_table = problems(&MINIMAL.replace("[retention]\nkeep_last = 7\n", ""));
    assert!(
        no_table[0].contains(
            "no [retention] table, and instance `crs-4y9t57vt` has no retention table of its own"
        ),
        "{no_table:#?}"
    );
    let own_only = MINIMAL.replace("[retention]\nkeep_last = 7\n", "")
        + "[redis.retention]\nkeep_within = \"14d\"\n";
    let config = load(&own_only).unwrap();
    assert_eq!(config.retention, None);
    assert_eq!(
        config.instances[0].retention.keep_within,
        Some(Duration::from_secs(14 * 86_400))
    );
}

#[test]
fn schedule_and_transfer_ranges() {
    let text = MINIMAL.to_string()
        + r#"[schedule]
interval = "1h"
daily_at = "03:30"
[transfer]
concurrency = 0
segments = 17
url_lifetime_hours = 48
segment_threshold = "1KiB"
"#;
    let found = problems(&text);
    assert!(
        found
            .iter()
            .any(|p| p.contains("sets both `interval` and `daily_at`")),
        "{found:#?}"
    );
    assert!(
        found
            .iter()
            .any(|p| p.contains("`concurrency` in [transfer] must be between 1 and 64, found 0")),
        "{found:#?}"
    );
    assert!(
        found
            .iter()
            .any(|p| p.contains("`segments` in [transfer] must be between 1 and 16, found 17")),
        "{found:#?}"
    );
    assert!(found.iter().any(|p| p.contains("`url_lifetime_hours` in [transfer] must be between 1 and 36 (the PostgreSQL API's limit), found 48")), "{found:#?}");
    assert!(
        found
            .iter()
            .any(|p| p.contains("`segment_threshold` in [transfer] must be at least 1MiB")),
        "{found:#?}"
    );
    let jitter =
        problems(&(MINIMAL.to_string() + "[schedule]\ninterval = \"10m\"\njitter = \"10m\"\n"));
    assert!(
        jitter[0].contains("must be shorter than the time between runs (10m)"),
        "{jitter:#?}"
    );
    let every = load(&(MINIMAL.to_string() + "[schedule]\ninterval = \"2h\"\n")).unwrap();
    assert_eq!(
        every.schedule.when,
        ScheduleWhen::Every(Duration::from_secs(7200))
    );
}

#[test]
fn intervals_under_a_minute_are_refused_naming_the_key_and_line() {
    for short in ["0s", "2s", "59s"] {
        let refused =
            problems(&(MINIMAL.to_string() + &format!("[schedule]\ninterval = \"{short}\"\n")));
        assert!(
            refused[0].contains("`interval` in [schedule] must be at least 1m"),
            "{short}: {refused:#?}"
        );
        assert!(refused[0].contains("tcbackup.toml:11: "), "{refused:#?}");
    }
    let minute =
        load(&(MINIMAL.to_string() + "[schedule]\ninterval = \"1m\"\njitter = \"0s\"\n")).unwrap();
    assert_eq!(
        minute.schedule.when,
        ScheduleWhen::Every(Duration::from_secs(60))
    );
    assert_eq!(minute.schedule.jitter, Duration::ZERO);
    assert!(minute.warnings.iter().all(|w| w.key != "schedule.interval"));
}

#[test]
fn urls_must_be_http_base_urls() {
    let endpoint = |value: &str| MINIMAL.to_string() + &format!("[api]\nendpoint = \"{value}\"\n");
    assert!(problems(&endpoint("ftp://h"))[0]
        .contains("`endpoint` in [api] \"ftp://h\" must use http or https"));
    assert!(problems(&endpoint("localhost:9000"))[0].contains("`endpoint` in [api]"));
    assert!(problems(&endpoint("http://h/?a=b"))[0].contains("without `?query`"));
    let secret_ping = MINIMAL.replace(
        "download_dir = \"/var/lib/tcbackup\"",
        "download_dir = \"/var/lib/tcbackup\"\nhealthcheck_url = \"gopher://hc/SECRETUUID\"",
    );
    let found = problems(&secret_ping);
    assert!(
        found[0].contains("`healthcheck_url` must use http or https"),
        "{found:#?}"
    );
    assert!(!found[0].contains("SECRETUUID"));
}

#[test]
fn no_instance_is_an_error() {
    let found = problems("download_dir = \"/d\"\n[retention]\nkeep_last = 1\n");
    assert_eq!(
        found,
        [format!("{PATH}: no instance configured; add a [[redis]] or [[postgres]] table with an instance_id")]
    );
}

#[test]
fn loading_touches_nothing_but_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let download_dir = dir.path().join("not-yet");
    let file = dir.path().join("tcbackup.toml");
    std::fs::write(
        &file,
        MINIMAL.replace("/var/lib/tcbackup", &download_dir.display().to_string()),
    )
    .unwrap();
    let config = Config::load(&file).unwrap();
    assert_eq!(config.download_dir, download_dir);
    assert!(!download_dir.exists());
    let missing = Config::load(dir.path().join("absent.toml")).unwrap_err();
    assert!(matches!(missing, ConfigError::Read { .. }));
    assert!(missing.to_string().starts_with("cannot read config file"));
}

#[cfg(unix)]
#[test]
fn a_readable_file_with_a_secret_key_is_flagged() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("tcbackup.toml");
    std::fs::write(
        &file,
        MINIMAL.to_string() + "[credentials]\nsecret_id = \"AKID\"\nsecret_key = \"k\"\n",
    )
    .unwrap();
    std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o644)).unwrap();
    let config = Config::load(&file).unwrap();
    let exposed = config.exposed_secret().expect("0644 with a key is exposed");
    let message = exposed.to_string();
    assert!(message.contains("(mode 0644)"), "{message}");
    assert!(
        message.contains(&format!("chmod 600 {}", file.display())),
        "{message}"
    );
    std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o600)).unwrap();
    assert_eq!(config.exposed_secret(), None);
    let keyless = Config::from_str_in(MINIMAL, &file, None).unwrap();
    std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o644)).unwrap();
    assert_eq!(
        keyless.exposed_secret(),
        None,
        "no secret in the file, nothing to flag"
    );
}

#[test]
fn group_readable_defaults_to_owner_only_and_must_be_a_bool() {
    use crate::private_files::FileModes;
    let config = load(MINIMAL).unwrap();
    assert!(!config.group_readable);
    assert_eq!(config.file_modes(), FileModes::PRIVATE);
    let config = load(&format!("group_readable = true\n{MINIMAL}")).unwrap();
    assert_eq!(config.file_modes(), FileModes::GROUP_READABLE);
    let found = problems(&format!("group_readable = \"yes\"\n{MINIMAL}"));
    assert!(
        found.iter().any(|p| p.ends_with(
            ":1: `group_readable` at the top level must be true or false, found a string; write group_readable = true"
        )),
        "{found:#?}"
    );
    let found = problems(&format!("group_readble = true\n{MINIMAL}"));
    assert!(
        found.iter().any(|p| p.contains("group_readable")),
        "a misspelling names the key: {found:#?}"
    );
}

#[test]
fn the_api_site_is_china_by_default_intl_when_asked_and_nothing_else() {
    assert_eq!(load(MINIMAL).unwrap().api.site, Site::China);
    let site = |value: &str| MINIMAL.to_string() + &format!("[api]\nsite = \"{value}\"\n");
    assert_eq!(load(&site("intl")).unwrap().api.site, Site::Intl);
    assert_eq!(load(&site("china")).unwrap().api.site, Site::China);
    let with_endpoint =
        MINIMAL.to_string() + "[api]\nsite = \"intl\"\nendpoint = \"http://127.0.0.1:9000\"\n";
    let config = load(&with_endpoint).unwrap();
    assert_eq!(config.api.site, Site::Intl);
    assert!(config.api.endpoint.is_some());
    for bad in ["international", "China", ""] {
        let found = problems(&site(bad));
        assert_eq!(found.len(), 1, "{found:#?}");
        assert!(
            found[0].contains(&format!(
                ":11: `site` in [api] {bad:?} is not a site; write \"china\" or \"intl\""
            )),
            "{found:#?}"
        );
    }
    let typo = problems(&(MINIMAL.to_string() + "[api]\nsites = \"intl\"\n"));
    assert!(
        typo[0].contains(":11: unknown key `sites` in [api] (did you mean `site`?)"),
        "{typo:#?}"
    );
    let not_text = problems(&(MINIMAL.to_string() + "[api]\nsite = 1\n"));
    assert!(not_text[0].contains(":11:"), "{not_text:#?}");
    assert!(not_text[0].contains("site"), "{not_text:#?}");
}

#[test]
fn network_is_public_by_default_set_in_transfer_and_overridden_per_instance() {
    let config = load(MINIMAL).unwrap();
    assert_eq!(config.transfer.network, Network::Public);
    assert_eq!(config.instances[0].network, Network::Public);

    let text = r#"
download_dir = "/var/lib/tcbackup"

[transfer]
network = "intranet"

[retention]
keep_last = 7

[[redis]]
instance_id = "crs-4y9t57vt"
region = "ap-guangzhou"

[[redis]]
instance_id = "crs-11111111"
region = "ap-guangzhou"
network = "public"

[[postgres]]
instance_id = "postgres-oamgybor"
region = "ap-guangzhou"
"#;
    let config = load(text).unwrap();
    assert_eq!(config.transfer.network, Network::Intranet);
    let networks: Vec<(&str, Network)> = config
        .instances
        .iter()
        .map(|i| (i.instance_id.as_str(), i.network))
        .collect();
    assert_eq!(
        networks,
        [
            ("crs-4y9t57vt", Network::Intranet),
            ("crs-11111111", Network::Public),
            ("postgres-oamgybor", Network::Intranet),
        ]
    );
    let own = MINIMAL.to_string() + "network = \"intranet\"\n";
    assert_eq!(load(&own).unwrap().instances[0].network, Network::Intranet);
}

#[test]
fn a_bad_network_names_the_key_its_line_and_both_values() {
    let in_transfer = MINIMAL.to_string() + "[transfer]\nnetwork = \"private\"\n";
    let found = problems(&in_transfer);
    assert_eq!(found.len(), 1, "{found:#?}");
    assert!(
        found[0].contains(
            ":11: `network` in [transfer] \"private\" is not a network; write \"public\""
        ),
        "{found:#?}"
    );
    assert!(found[0].contains("\"intranet\""), "{found:#?}");
    let per_instance = MINIMAL.to_string() + "network = \"Intranet\"\n";
    let found = problems(&per_instance);
    assert_eq!(found.len(), 1, "{found:#?}");
    assert!(
        found[0].contains(":10: `network` in [[redis]] \"Intranet\" is not a network"),
        "{found:#?}"
    );
    let not_text = problems(&(MINIMAL.to_string() + "network = true\n"));
    assert!(
        not_text[0].contains(":10: `network` in [[redis]] must be a string"),
        "{not_text:#?}"
    );
    let typo = problems(&(MINIMAL.to_string() + "[transfer]\nnetwrok = \"intranet\"\n"));
    assert!(
        typo[0].contains("unknown key `netwrok` in [transfer] (did you mean `network`?)"),
        "{typo:#?}"
    );
}

#[test]
fn keep_manual_is_a_boolean_beside_the_keep_rules() {
    let text = r#"download_dir = "/d"
[retention]
keep_last = 2
keep_manual = "yes"
[[redis]]
instance_id = "crs-a"
region = "ap-guangzhou"
"#;
    let found = problems(text);
    assert!(
        found.iter().any(|p| p.ends_with(
            ":4: `keep_manual` in [retention] must be true or false, found a string; write keep_manual = true"
        )),
        "{found:#?}"
    );
    // Alone it is not a keep rule: only manual sets would be kept.
    let alone = problems(
        "download_dir = \"/d\"\n[retention]\nkeep_manual = true\n[[redis]]\ninstance_id = \"crs-a\"\nregion = \"ap-guangzhou\"\n",
    );
    assert!(
        alone
            .iter()
            .any(|p| p.contains("[retention] has no keep rule")),
        "{alone:#?}"
    );
    let per_instance = load(
        "download_dir = \"/d\"\n[retention]\nkeep_last = 2\n[[redis]]\ninstance_id = \"crs-a\"\nregion = \"ap-guangzhou\"\n[redis.retention]\nkeep_last = 1\nkeep_manual = true\n",
    )
    .unwrap();
    assert!(
        per_instance
            .instance("crs-a")
            .unwrap()
            .retention
            .keep_manual
    );
    let default = load(
        "download_dir = \"/d\"\n[retention]\nkeep_last = 2\n[[redis]]\ninstance_id = \"crs-a\"\nregion = \"ap-guangzhou\"\n",
    )
    .unwrap();
    assert!(!default.instance("crs-a").unwrap().retention.keep_manual);
}
