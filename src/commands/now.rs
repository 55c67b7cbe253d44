//! `tcbackup --now`: one sync cycle under the store lock, with health-check
//! pings and the metrics file as a daemon cycle has, then the summary.

use std::sync::Arc;

use crate::context;
use tcbackup_core::config::Config;
use tcbackup_core::exit::Exit;
use tcbackup_core::service::healthcheck::{HealthCheck, Ping};
use tcbackup_core::service::history::History;
use tcbackup_core::sync::CycleReport;

use super::sync_context;

/// `tcbackup --now`: one cycle, then exit with the contract's code.
pub async fn now(config: Config) -> Exit {
    let shutdown = match context::shutdown_on_signals() {
        Ok(s) => s,
        Err(e) => {
            eprintln!("tcbackup: {e:#}");
            return Exit::Failed;
        }
    };
    let config = Arc::new(config);
    let ctx = match sync_context(config.clone(), context::progress_for_terminal()).await {
        Ok(ctx) => ctx,
        Err(code) => return code,
    };
    let lock = match ctx.store.lock() {
        Ok(lock) => lock,
        Err(e) => {
            // With its cause: "open lock file X" alone does not say why.
            eprintln!("tcbackup: {:#}", anyhow::Error::new(e));
            return Exit::Failed;
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
    let code = report.exit();
    if !report.interrupted {
        let mut history = History::seeded(config.metrics_file.as_deref());
        history.retain_configured(&config);
        history.record(&report);
        history.write(&config).await;
        if let Some(health) = &health {
            let ping = if code == Exit::Ok {
                Ping::Success
            } else {
                Ping::Fail
            };
            health.ping(ping, &report.summary()).await;
        }
    }
    if code == Exit::Interrupted && !shutdown.by_signal() {
        return Exit::Failed;
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
        for skipped in &instance.skipped {
            eprintln!(
                "  backup {} ({}): skipped: {}",
                skipped.backup_id, skipped.kind, skipped.reason
            );
        }
        if let Some(why) = &instance.retention_skipped {
            eprintln!("  retention not applied: {why}");
        }
    }
    eprintln!("{}", report.summary());
}
