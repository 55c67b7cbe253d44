//! `tcbackup prune [--dry-run]`: the retention plan per instance, with the
//! reason for each set, and (without `--dry-run`) the plan carried out.

use crate::context;
use tcbackup_core::config::Config;
use tcbackup_core::exit::Exit;
use tcbackup_core::retention;
use tcbackup_core::store::Store;

/// `tcbackup prune [--dry-run]`: the retention plan, and with no
/// `--dry-run` its application.
pub async fn prune(config: Config, dry_run: bool) -> Exit {
    let clock = context::system_clock();
    let store =
        Store::open(config.download_dir.clone(), clock.clone()).with_modes(config.file_modes());
    let _lock = if dry_run {
        None
    } else {
        match store.lock() {
            Ok(lock) => Some(lock),
            Err(e) => {
                eprintln!("tcbackup: {:#}", anyhow::Error::new(e));
                return Exit::Failed;
            }
        }
    };
    let now = clock.now();
    let mut code = Exit::Ok;
    for instance in &config.instances {
        let listing = match store.list_sets(&instance.instance_id) {
            Ok(l) => l,
            Err(e) => {
                eprintln!("{}: {e}", instance.instance_id);
                code = Exit::Failed;
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
            match store.apply_plan(&instance.instance_id, &plan) {
                Ok(applied) => {
                    for id in &applied.deleted {
                        crate::outln!("deleted {id}");
                    }
                    for (id, e) in &applied.failed {
                        eprintln!("could not delete {id}: {e}");
                        code = Exit::Failed;
                    }
                }
                Err(e) => {
                    eprintln!("{}: {e}", instance.instance_id);
                    code = Exit::Failed;
                }
            }
        }
    }
    code
}
