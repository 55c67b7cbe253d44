//! `[transfer] network` end to end: an intranet pull asks the API for
//! intranet links and downloads from the emulator's intranet COS host; a
//! public pull sends no restriction, and fails cleanly when the account
//! allows intranet downloads only; `check-config` reads that policy.

use serde_json::{json, Value};
use tcbackup_emulator::{redis_status, PgBackupKind, PgRestriction, RedisRestriction};

use crate::common::*;

/// The config for both sample instances with `[transfer] network`.
fn with_network(h: &Harness, network: &str) -> String {
    format!(
        "{}\n[transfer]\nnetwork = \"{network}\"\n",
        h.config_text(&Cfg::default())
    )
}

/// Make the account's policy intranet-only for both services, the PostgreSQL
/// one in the mixed case the real service answers.
fn intranet_only_policy(h: &Harness) {
    h.emulator
        .state()
        .set_redis_download_restriction(RedisRestriction {
            limit_type: "LimitOnlyIntranet".to_string(),
            ..Default::default()
        });
    h.emulator
        .state()
        .set_pg_download_restriction(PgRestriction {
            restriction_type: "Intranet".to_string(),
            ..Default::default()
        });
}

/// The COS keys of every finished backup of both sample instances.
fn finished_keys(h: &Harness) -> Vec<String> {
    let mut keys: Vec<String> = h
        .redis_backups()
        .iter()
        .filter(|b| b.status == redis_status::NORMAL)
        .flat_map(|b| b.files.iter().map(|f| f.cos_key.clone()))
        .collect();
    for kind in [PgBackupKind::Base, PgBackupKind::Log] {
        keys.extend(
            h.pg_backups(kind)
                .into_iter()
                .filter(|b| b.state == "finished")
                .map(|b| b.file.cos_key),
        );
    }
    keys
}

/// `network = "intranet"` fetches every finished backup of both services,
/// byte for byte, from the intranet host only, even where the account
/// allows intranet downloads only; every URL call asked for intranet links;
/// no URL signature reaches the logs.
#[test]
fn intranet_pull_asks_for_intranet_links_and_downloads_from_the_intranet_host() {
    let h = Harness::sample();
    intranet_only_policy(&h);
    h.write_config_text(&with_network(&h, "intranet"));
    let run = h.run(&["-vv", "--now"]);
    run.assert_code(0);

    let keys = finished_keys(&h);
    assert_eq!(keys.len(), 4 * 3 + 4 + 8);
    for key in &keys {
        let stats = h.emulator.cos().stats(key);
        assert!(stats.requests > 0, "{key} not fetched");
        assert_eq!(
            stats.intranet_requests() as u64,
            stats.requests,
            "{key} fetched from the public host: {stats:?}"
        );
    }
    for b in h
        .redis_backups()
        .iter()
        .filter(|b| b.status == redis_status::NORMAL)
    {
        let dir = h
            .instance_dir(REDIS)
            .join(set_dir(b.start, "redis", &b.backup_id));
        for f in &b.files {
            assert_eq!(crc64_file(&dir.join(&f.name)), h.object_crc64(&f.cos_key));
        }
    }
    for b in h.pg_backups(PgBackupKind::Base) {
        if b.state == "finished" {
            let dir = h.instance_dir(PG).join(set_dir(b.start, "base", &b.id));
            let path = dir.join(&b.file.name);
            assert_eq!(crc64_file(&path), h.object_crc64(&b.file.cos_key));
        }
    }

    let redis_calls = h.emulator.state().received_params("DescribeBackupUrl");
    assert!(!redis_calls.is_empty());
    for params in &redis_calls {
        assert_eq!(params["LimitType"], "LimitOnlyIntranet", "{params}");
    }
    let pg_calls = h
        .emulator
        .state()
        .received_params("DescribeBackupDownloadURL");
    assert_eq!(pg_calls.len(), 4 + 8);
    for params in &pg_calls {
        assert_eq!(
            params["BackupDownloadRestriction"],
            json!({"RestrictionType": "INTRANET"}),
            "{params}"
        );
    }

    let log = &run.stderr;
    assert!(
        log.contains("download url obtained"),
        "URLs are logged:\n{log}"
    );
    assert!(assert_redacted(log, "?sign=") > 0, "no Redis URL logged");
    assert!(
        assert_redacted(log, "q-signature=") > 0,
        "no PostgreSQL URL logged"
    );
    assert_redacted(log, "&sign=");
    assert!(
        log.contains(&h.emulator.intranet_endpoint()),
        "the intranet host is named in the logs"
    );
}

/// The default network sends no restriction parameter at all (the
/// account's own policy applies) and downloads from the public host.
#[test]
fn public_pull_sends_no_restriction_parameter() {
    let h = Harness::sample();
    let run = h.now();
    run.assert_code(0);
    let state = h.emulator.state();
    let redis_calls = state.received_params("DescribeBackupUrl");
    let pg_calls = state.received_params("DescribeBackupDownloadURL");
    assert!(!redis_calls.is_empty() && !pg_calls.is_empty());
    for params in &redis_calls {
        let sent: Vec<&String> = params.as_object().unwrap().keys().collect();
        assert_eq!(sent, ["BackupId", "InstanceId"], "{params}");
    }
    for params in &pg_calls {
        assert!(
            params.get("BackupDownloadRestriction").is_none(),
            "{params}"
        );
    }
    for key in finished_keys(&h) {
        assert_eq!(h.emulator.cos().stats(&key).intranet_requests(), 0, "{key}");
    }
}

/// Under an intranet-only account policy a public pull is refused by COS:
/// every set fails (exit 1), no byte is served and nothing is published,
/// and the message names the refusal and the fix.
#[test]
fn public_pull_under_an_intranet_only_policy_fails_without_publishing() {
    let h = Harness::sample();
    intranet_only_policy(&h);
    let run = h.now();
    run.assert_code(1);
    assert!(h.set_dirs(REDIS).is_empty(), "{:?}", h.set_dirs(REDIS));
    assert!(h.set_dirs(PG).is_empty(), "{:?}", h.set_dirs(PG));
    assert_eq!(h.served_total(), 0, "COS sent backup bytes");
    let log = &run.stderr;
    assert!(log.contains("AccessDenied"), "{log}");
    assert!(
        log.contains("network = \"intranet\""),
        "no hint at the fix:\n{log}"
    );
    assert_redacted(log, "?sign=");
    assert_redacted(log, "q-signature=");
}

/// `check-config` reads each service's policy once for the region in use and
/// warns (exit 0) when it refuses the configured public downloads; with
/// `network = "intranet"` it does not warn; when the policy cannot be read
/// it says so, also as a warning.
#[test]
fn check_config_warns_when_the_download_policy_refuses_the_configured_network() {
    let h = Harness::sample();
    let run = h.run(&["check-config"]);
    run.assert_code(0);
    assert!(
        run.stdout
            .contains("redis backup download policy in ap-guangzhou: no restriction"),
        "{}",
        run.stdout
    );
    assert!(!run.stderr.contains("WARN"), "{}", run.stderr);

    intranet_only_policy(&h);
    let run = h.run(&["check-config"]);
    run.assert_code(0);
    let warnings: Vec<&str> = run
        .stderr
        .lines()
        .filter(|l| l.contains("WARN") && l.contains("download policy"))
        .collect();
    assert_eq!(warnings.len(), 2, "{}", run.stderr);
    assert!(
        warnings[0].contains("intranet only (LimitType LimitOnlyIntranet)")
            && warnings[0].contains(REDIS),
        "{}",
        warnings[0]
    );
    assert!(
        warnings[1].contains("intranet only (RestrictionType Intranet)")
            && warnings[1].contains(PG),
        "{}",
        warnings[1]
    );
    assert_eq!(
        h.emulator
            .state()
            .request_count("DescribeBackupDownloadRestriction"),
        2 + 2,
        "once per service and region"
    );

    h.write_config_text(&with_network(&h, "intranet"));
    let run = h.run(&["check-config"]);
    run.assert_code(0);
    assert!(!run.stderr.contains("download policy"), "{}", run.stderr);

    h.emulator.state().inject_fault(
        "DescribeBackupDownloadRestriction",
        tcbackup_emulator::ApiFault::Code {
            code: "UnauthorizedOperation.NoCAMAuthed".to_string(),
            message: "no permission".to_string(),
        },
        1,
    );
    let run = h.run(&["check-config"]);
    run.assert_code(0);
    let line = run
        .stderr
        .lines()
        .find(|l| l.contains("cannot read the redis backup download policy"))
        .unwrap_or_else(|| panic!("no warning:\n{}", run.stderr));
    assert!(line.contains("WARN"), "{line}");
    assert!(line.contains("UnauthorizedOperation.NoCAMAuthed"), "{line}");
    let params: Vec<Value> = h
        .emulator
        .state()
        .received_params("DescribeBackupDownloadRestriction");
    assert!(params.iter().all(|p| p == &json!({})), "{params:?}");
}

/// Over the intranet, a Redis file the API gives no `InnerDownloadUrl`
/// fails its set with a message that names the file and the fix; the other
/// sets are published and nothing is fetched from the public host.
#[test]
fn intranet_pull_without_an_inner_download_url_fails_that_set_naming_the_file_and_the_fix() {
    let h = Harness::sample();
    let finished: Vec<_> = h
        .redis_backups()
        .into_iter()
        .filter(|b| b.status == redis_status::NORMAL)
        .collect();
    let broken = &finished[0];
    h.emulator
        .state()
        .set_redis_inner_url_missing(REDIS, &broken.backup_id, 1)
        .unwrap();
    h.write_config_text(&with_network(&h, "intranet"));
    let run = h.now();
    run.assert_code(1);
    let line = run
        .stderr
        .lines()
        .find(|l| l.contains("no InnerDownloadUrl"))
        .unwrap_or_else(|| panic!("no message:\n{}", run.stderr));
    assert!(line.contains(&broken.files[1].name), "{line}");
    assert!(line.contains(&broken.backup_id), "{line}");
    assert!(line.contains("network = \"public\""), "{line}");
    let published = h.set_dirs(REDIS);
    assert_eq!(published.len(), finished.len() - 1, "{published:?}");
    assert!(!published.contains(&set_dir(broken.start, "redis", &broken.backup_id)));
    for key in finished_keys(&h) {
        let stats = h.emulator.cos().stats(&key);
        assert_eq!(stats.intranet_requests() as u64, stats.requests, "{key}");
    }
}
