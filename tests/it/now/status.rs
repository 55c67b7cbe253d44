//! `tcbackup status` against what `--now` runs left on disk and in the
//! metrics file: never run, fresh, stale and failed instances, the exit
//! code and the JSON. No API call is made by `status`. Time is not
//! mocked: the outcome is made certain by `stale_after` instead, "10000d"
//! (no sample set is that old) or "1s" (every sample backup started
//! minutes before the run that fetched it).

use serde_json::Value;

use crate::common::*;

/// The harness's config plus a metrics file and `stale_after`.
fn write_config(h: &Harness, cfg: &Cfg, stale_after: &str) {
    let metrics = h.download_dir.with_file_name("tcbackup.prom");
    let text = h.config_text(cfg).replacen(
        "\n",
        &format!(
            "\nmetrics_file = {:?}\nstale_after = {stale_after:?}\n",
            metrics.display().to_string()
        ),
        1,
    );
    h.write_config_text(&text);
}

fn status_json(h: &Harness, code: i32) -> Value {
    let run = h.run(&["status", "--json"]);
    run.assert_code(code);
    serde_json::from_str(&run.stdout).unwrap()
}

fn instance<'a>(status: &'a Value, id: &str) -> &'a Value {
    status["instances"]
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["instance_id"] == id)
        .unwrap_or_else(|| panic!("no {id} in {status:#}"))
}

/// Before any run: no set, no cycle, exit 1; the API is not called.
#[test]
fn status_before_any_run_says_never_backed_up() {
    let h = Harness::sample();
    write_config(&h, &Cfg::default(), "10000d");
    let run = h.run(&["status"]);
    run.assert_code(1);
    assert_eq!(run.stdout.lines().count(), 2, "{}", run.stdout);
    assert!(
        run.stdout.contains("NOT FRESH: no backup set on disk"),
        "{}",
        run.stdout
    );
    assert!(run.stdout.contains("last cycle unknown"), "{}", run.stdout);
    let status = status_json(&h, 1);
    assert_eq!(status["fresh"], false);
    assert_eq!(instance(&status, REDIS)["newest_set"], Value::Null);
    assert_eq!(instance(&status, PG)["last_cycle"], Value::Null);
    assert_eq!(
        h.emulator.state().total_requests(),
        0,
        "status calls no API"
    );
}

/// After a good run: every instance fresh, exit 0, the newest set and the
/// last cycle shown; the metrics file has the newest set's age.
#[test]
fn status_after_a_good_run_is_fresh_then_stale_with_a_short_stale_after() {
    let h = Harness::sample();
    write_config(&h, &Cfg::default(), "10000d");
    h.now().assert_code(0);
    let calls = h.emulator.state().total_requests();
    let status = status_json(&h, 0);
    assert_eq!(
        h.emulator.state().total_requests(),
        calls,
        "status calls no API"
    );
    assert_eq!(status["fresh"], true, "{status:#}");
    for id in [REDIS, PG] {
        let i = instance(&status, id);
        assert_eq!(i["fresh"], true, "{i:#}");
        assert_eq!(i["last_cycle"]["ok"], true, "{i:#}");
        assert!(
            i["newest_set"]["age_seconds"].as_i64().unwrap() > 0,
            "{i:#}"
        );
        let dir = i["newest_set"]["dir"].as_str().unwrap();
        assert!(
            std::path::Path::new(dir).join("manifest.json").is_file(),
            "{dir}"
        );
        assert!(
            i["next_run"].is_string(),
            "computed from the interval: {i:#}"
        );
    }
    let run = h.run(&["status"]);
    run.assert_code(0);
    assert!(
        run.stdout.contains(&format!("{REDIS} (redis): OK;")),
        "{}",
        run.stdout
    );

    let prom = std::fs::read_to_string(h.download_dir.with_file_name("tcbackup.prom")).unwrap();
    for (id, service) in [(REDIS, "redis"), (PG, "postgres")] {
        let prefix = format!(
            "tcbackup_newest_set_age_seconds{{instance_id=\"{id}\",service=\"{service}\"}} "
        );
        let age: f64 = prom
            .lines()
            .find_map(|l| l.strip_prefix(&prefix))
            .unwrap_or_else(|| panic!("no {prefix} in\n{prom}"))
            .parse()
            .unwrap();
        assert!(age > 0.0, "{prom}");
    }

    write_config(&h, &Cfg::default(), "1s");
    let status = status_json(&h, 1);
    for id in [REDIS, PG] {
        let problem = instance(&status, id)["problem"]
            .as_str()
            .unwrap()
            .to_string();
        assert!(problem.contains("more than stale_after (1s)"), "{problem}");
    }
}

/// A run that fails (the API refuses the key) leaves the old sets fresh
/// but marks the last cycle failed: status exits 1 and says why.
#[test]
fn status_after_a_failed_run_reports_the_failure() {
    let h = Harness::sample();
    write_config(&h, &Cfg::default(), "10000d");
    h.now().assert_code(0);
    let wrong_key = Cfg {
        secret_key: Some("not-the-key".into()),
        ..Cfg::default()
    };
    write_config(&h, &wrong_key, "10000d");
    h.now().assert_code(3);
    let status = status_json(&h, 1);
    for id in [REDIS, PG] {
        let i = instance(&status, id);
        assert_eq!(i["last_cycle"]["ok"], false, "{i:#}");
        assert!(i["last_cycle"]["last_success"].is_string(), "{i:#}");
        assert_eq!(i["problem"], "the last cycle failed", "{i:#}");
        assert!(i["newest_set"].is_object(), "the sets are still there");
    }
    let run = h.run(&["status"]);
    run.assert_code(1);
    assert!(run.stdout.contains("last cycle FAILED"), "{}", run.stdout);
}
