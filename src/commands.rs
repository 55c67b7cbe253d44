//! The one-shot commands: `--now`, `check-config`, `list`, `verify` and
//! `prune`. Each returns the process exit code.

use std::sync::Arc;

use serde::Serialize;

use crate::app::{self, exit};
use crate::config::Config;
use crate::model::{BackupKind, RemoteBackup};
use crate::progress::{Progress, ProgressMode};
use crate::retention;
use crate::service::healthcheck::{HealthCheck, Ping};
use crate::service::history::History;
use crate::store::{LocalSet, Store};
use crate::sync::{CycleReport, SyncContext};

/// The cycle's context, or the exit code after printing why it cannot be built.
async fn context(config: Arc<Config>, progress: Progress) -> Result<SyncContext, u8> {
    app::build_context(config, app::system_clock(), progress)
        .await
        .map_err(|e| {
            eprintln!("tcbackup: {e}");
            e.exit_code()
        })
}

/// `tcbackup --now`: one cycle, then exit with the contract's code.
pub async fn now(config: Config) -> u8 {
    let shutdown = match app::shutdown_on_signals() {
        Ok(s) => s,
        Err(e) => {
            eprintln!("tcbackup: {e:#}");
            return exit::FAILED;
        }
    };
    let config = Arc::new(config);
    let ctx = match context(config.clone(), app::progress_for_terminal()).await {
        Ok(ctx) => ctx,
        Err(code) => return code,
    };
    let lock = match ctx.store.lock() {
        Ok(lock) => lock,
        Err(e) => {
            // With its cause: "open lock file X" alone does not say why.
            eprintln!("tcbackup: {:#}", anyhow::Error::new(e));
            return exit::FAILED;
        }
    };
    // Under a timer (tcbackup-now.timer) this run is what the operator
    // monitors: it pings and writes the metrics file like a daemon cycle.
    let health = config
        .healthcheck_url
        .clone()
        .map(|url| HealthCheck::new(url, reqwest::Client::new()));
    if let Some(health) = &health {
        health.ping(Ping::Start, "tcbackup --now started").await;
    }
    let report = ctx.run_cycle(&lock, &shutdown.token()).await;
    print_summary(&report);
    let code = report.exit_code();
    if !report.interrupted {
        let mut history = History::seeded(config.metrics_file.as_deref());
        history.retain_configured(&config);
        history.record(&report);
        history.write(&config).await;
        if let Some(health) = &health {
            let ping = if code == exit::OK {
                Ping::Success
            } else {
                Ping::Fail
            };
            health.ping(ping, &report.summary()).await;
        }
    }
    if code == exit::INTERRUPTED && !shutdown.by_signal() {
        return exit::FAILED;
    }
    code
}

/// Print the end-of-run summary to stderr.
pub fn print_summary(report: &CycleReport) {
    for instance in &report.instances {
        // An interrupted instance with backups left to fetch is not "ok":
        // the next run has work to do even though nothing failed.
        let state = if !instance.ok() {
            "FAILED"
        } else if report.interrupted && instance.published.len() < instance.due {
            "INTERRUPTED"
        } else {
            "ok"
        };
        eprintln!(
            "{} ({}): {state}: {} listed, {} due, {} published, {} failed, {} pruned, {} set(s) on disk",
            instance.instance_id,
            instance.service,
            instance.listed,
            instance.due,
            instance.published.len(),
            instance.failures.len(),
            instance.pruned.len(),
            instance.sets_on_disk,
        );
        for failure in &instance.failures {
            match &failure.backup_id {
                Some(id) => eprintln!("  backup {id}: {}", failure.error),
                None => eprintln!("  {}", failure.error),
            }
        }
        if let Some(why) = &instance.retention_skipped {
            eprintln!("  retention not applied: {why}");
        }
    }
    eprintln!("{}", report.summary());
}

/// `tcbackup check-config`: the file, the credentials, and each instance.
pub async fn check_config(config: Config) -> u8 {
    crate::outln!(
        "{}: valid, {} instance(s), download_dir {}",
        config.source.display(),
        config.instances.len(),
        config.download_dir.display()
    );
    // The warnings were logged when the config was loaded.
    let config = Arc::new(config);
    let ctx = match context(config.clone(), Progress::new(ProgressMode::Quiet)).await {
        Ok(ctx) => ctx,
        Err(code) => return code,
    };
    crate::outln!(
        "credentials: {}",
        ctx.catalog.client().credentials().describe()
    );
    let mut code = exit::OK;
    for instance in &config.instances {
        match ctx
            .catalog
            .check_instance(
                instance.service,
                &instance.instance_id,
                Some(&instance.region),
            )
            .await
        {
            Ok(()) => crate::outln!(
                "{} {} in {}: found",
                instance.service,
                instance.instance_id,
                instance.region
            ),
            Err(e) => {
                eprintln!(
                    "{} {} in {}: {e}",
                    instance.service, instance.instance_id, instance.region
                );
                code = code.max(if e.is_auth() {
                    exit::AUTH
                } else {
                    exit::CONFIG
                });
            }
        }
    }
    code
}

/// One line of `list`: a backup the API lists, with its local copy if
/// there is one, or a local set the API no longer lists.
#[derive(Serialize)]
struct ListRow {
    instance_id: String,
    kind: BackupKind,
    backup_id: String,
    start: String,
    finish: Option<String>,
    remote_status: Option<String>,
    remote_finished: Option<bool>,
    local_dir: Option<String>,
    local_bytes: Option<u64>,
}

impl ListRow {
    fn new(instance_id: &str, remote: Option<&RemoteBackup>, local: Option<&LocalSet>) -> Self {
        let (kind, backup_id, start, finish) = match (remote, local) {
            (Some(r), _) => (r.kind, &r.backup_id, r.start, r.finish),
            (None, Some(l)) => (
                l.manifest.kind,
                &l.manifest.backup_id,
                l.manifest.start,
                l.manifest.finish,
            ),
            (None, None) => unreachable!("a row has a remote backup, a local set, or both"),
        };
        Self {
            instance_id: instance_id.to_string(),
            kind,
            backup_id: backup_id.clone(),
            start: start.to_rfc3339(),
            finish: finish.map(|f| f.to_rfc3339()),
            remote_status: remote.map(|r| r.status.clone()),
            remote_finished: remote.map(|r| r.finished),
            local_dir: local.map(|l| l.dir.display().to_string()),
            local_bytes: local.map(|l| l.manifest.total_size()),
        }
    }
}

/// `tcbackup list [--json] [--local]`: remote and local backups side by side.
pub async fn list(config: Config, json: bool, local_only: bool) -> u8 {
    let config = Arc::new(config);
    let store = Store::open(config.download_dir.clone(), app::system_clock());
    let ctx = if local_only {
        None
    } else {
        match context(config.clone(), Progress::new(ProgressMode::Quiet)).await {
            Ok(ctx) => Some(ctx),
            Err(code) => return code,
        }
    };
    let mut code = exit::OK;
    let mut rows = Vec::new();
    for instance in &config.instances {
        let remote = match &ctx {
            Some(ctx) => match ctx.list_remote(instance, ctx.clock.now()).await {
                Ok(list) => list,
                Err(e) => {
                    eprintln!("{}: {e}", instance.instance_id);
                    code = code.max(if e.is_auth() {
                        exit::AUTH
                    } else {
                        exit::FAILED
                    });
                    Vec::new()
                }
            },
            None => Vec::new(),
        };
        let local = match store.list_sets(&instance.instance_id) {
            Ok(listing) => listing,
            Err(e) => {
                eprintln!("{}: {e}", instance.instance_id);
                code = code.max(exit::FAILED);
                Default::default()
            }
        };
        for r in &remote {
            rows.push(ListRow::new(
                &instance.instance_id,
                Some(r),
                local.find(r.kind, &r.backup_id),
            ));
        }
        for l in &local.sets {
            let listed = remote
                .iter()
                .any(|r| r.kind == l.manifest.kind && r.backup_id == l.manifest.backup_id);
            if !listed {
                rows.push(ListRow::new(&instance.instance_id, None, Some(l)));
            }
        }
    }
    if json {
        match serde_json::to_string_pretty(&rows) {
            Ok(text) => crate::outln!("{text}"),
            Err(e) => {
                eprintln!("tcbackup: cannot encode the list: {e}");
                return exit::FAILED;
            }
        }
    } else {
        crate::outln!(
            "{:<20} {:<5} {:<40} {:<25} {:<12} LOCAL",
            "INSTANCE",
            "KIND",
            "BACKUP",
            "START (UTC)",
            "REMOTE"
        );
        for row in &rows {
            let remote = match (&row.remote_status, row.remote_finished) {
                (Some(_), Some(true)) => "finished".to_string(),
                (Some(s), _) => format!("busy ({s})"),
                (None, _) => "-".to_string(),
            };
            let local = match (&row.local_dir, row.local_bytes) {
                (Some(dir), Some(bytes)) => {
                    format!("{} {}", crate::progress::human_bytes(bytes), dir)
                }
                _ => "-".to_string(),
            };
            crate::outln!(
                "{:<20} {:<5} {:<40} {:<25} {:<12} {}",
                row.instance_id,
                row.kind.as_str(),
                row.backup_id,
                &row.start[..row.start.len().min(19)],
                remote,
                local
            );
        }
    }
    code
}

/// `tcbackup verify`: every published set against its manifest.
pub async fn verify(config: Config) -> u8 {
    let store = Arc::new(Store::open(
        config.download_dir.clone(),
        app::system_clock(),
    ));
    let result = tokio::task::spawn_blocking(
        move || -> Result<(usize, usize), crate::store::StoreError> {
            let listing = store.list_all()?;
            for ignored in &listing.ignored {
                eprintln!(
                    "not a published set: {} ({})",
                    ignored.path.display(),
                    ignored.reason
                );
            }
            let mut bad = 0;
            for set in &listing.sets {
                let report = store.verify_set(set)?;
                if report.is_ok() {
                    crate::outln!("ok      {}", set.dir.display());
                } else {
                    bad += 1;
                    crate::outln!("FAILED  {}", set.dir.display());
                    for file in report
                        .files
                        .iter()
                        .filter(|f| f.outcome != crate::store::FileOutcome::Ok)
                    {
                        crate::outln!("        {}: {}", file.name, file.outcome);
                    }
                }
            }
            Ok((listing.sets.len(), bad))
        },
    )
    .await;
    match result {
        Ok(Ok((total, 0))) => {
            crate::outln!("{total} set(s) verified");
            exit::OK
        }
        Ok(Ok((total, bad))) => {
            eprintln!("{bad} of {total} set(s) failed verification");
            exit::FAILED
        }
        Ok(Err(e)) => {
            eprintln!("tcbackup: {e}");
            exit::FAILED
        }
        Err(e) => {
            eprintln!("tcbackup: verification task failed: {e}");
            exit::FAILED
        }
    }
}

/// `tcbackup prune [--dry-run]`: the retention plan, and with no
/// `--dry-run` its application.
pub async fn prune(config: Config, dry_run: bool) -> u8 {
    let clock = app::system_clock();
    let store =
        Store::open(config.download_dir.clone(), clock.clone()).with_modes(config.file_modes());
    let _lock = if dry_run {
        None
    } else {
        match store.lock() {
            Ok(lock) => Some(lock),
            Err(e) => {
                eprintln!("tcbackup: {:#}", anyhow::Error::new(e));
                return exit::FAILED;
            }
        }
    };
    let now = clock.now();
    let mut code = exit::OK;
    for instance in &config.instances {
        let listing = match store.list_sets(&instance.instance_id) {
            Ok(l) => l,
            Err(e) => {
                eprintln!("{}: {e}", instance.instance_id);
                code = exit::FAILED;
                continue;
            }
        };
        let plan = retention::plan(&listing.set_infos(), &instance.retention, now);
        crate::outln!(
            "{} ({}), policy {}:",
            instance.instance_id,
            instance.service,
            instance.retention
        );
        crate::outln!("{plan}");
        if !dry_run {
            match retention::apply(&instance.instance_id, &plan, &store) {
                Ok(applied) => {
                    for id in &applied.deleted {
                        crate::outln!("deleted {id}");
                    }
                    for (id, e) in &applied.failed {
                        eprintln!("could not delete {id}: {e}");
                        code = exit::FAILED;
                    }
                }
                Err(e) => {
                    eprintln!("{}: {e}", instance.instance_id);
                    code = exit::FAILED;
                }
            }
        }
    }
    code
}
