//! `tcbackup list [--json] [--local]`: remote backups beside their local
//! sets.

use std::sync::Arc;

use crate::context;
use serde::Serialize;
use tcbackup_core::config::Config;
use tcbackup_core::exit::Exit;
use tcbackup_core::model::{BackupKind, BackupMeta, RemoteBackup};
use tcbackup_core::store::{LocalSet, Store};

use tcbackup_core::progress::{Progress, ProgressMode};

use super::sync_context;

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
    /// The API's listing or the local manifest says the files are encrypted.
    encrypted: bool,
    /// For a local encrypted set: whether its key file was published with
    /// it (never the key itself). `None` when there is no such set.
    local_key_held: Option<bool>,
    /// The API (or the local manifest) says a user started this backup.
    manual: bool,
    /// Why tcbackup does not fetch this backup (an unknown backup method
    /// or file type); absent for backups it fetches.
    #[serde(skip_serializing_if = "Option::is_none")]
    not_fetched: Option<String>,
    /// What the API said about the backup (the listing's, or else the
    /// local manifest's): mode, remark, instance name, versions, file
    /// type, backup method.
    meta: BackupMeta,
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
        let meta = match (remote, local) {
            (Some(r), _) if !r.meta.is_empty() => &r.meta,
            (_, Some(l)) => &l.manifest.meta,
            (Some(r), None) => &r.meta,
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
            encrypted: remote.is_some_and(|r| r.encrypted)
                || local.is_some_and(|l| l.manifest.encrypted),
            local_key_held: local
                .and_then(|l| l.manifest.encryption.as_ref())
                .map(|e| e.key_file.is_some()),
            manual: meta.is_manual(),
            not_fetched: remote.and_then(|r| r.meta.unfetchable()),
            meta: meta.clone(),
        }
    }
}

/// `tcbackup list [--json] [--local]`: remote and local backups side by side.
pub async fn list(config: Config, json: bool, local_only: bool) -> Exit {
    let config = Arc::new(config);
    let store = Store::open(config.download_dir.clone(), context::system_clock());
    let ctx = if local_only {
        None
    } else {
        match sync_context(config.clone(), Progress::new(ProgressMode::Quiet)).await {
            Ok(ctx) => Some(ctx),
            Err(code) => return code,
        }
    };
    let mut code = Exit::Ok;
    let mut rows = Vec::new();
    for instance in &config.instances {
        let remote = match &ctx {
            Some(ctx) => match ctx.list_remote(instance, ctx.clock.now()).await {
                Ok(list) => list,
                Err(e) => {
                    eprintln!("{}: {e}", instance.instance_id);
                    code = code.and(if e.is_auth() {
                        Exit::Auth
                    } else {
                        Exit::Failed
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
                code = code.and(Exit::Failed);
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
                return Exit::Failed;
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
                _ if row.not_fetched.is_some() => "not fetched".to_string(),
                (Some(_), Some(true)) => "finished".to_string(),
                (Some(s), _) => format!("busy ({s})"),
                (None, _) => "-".to_string(),
            };
            let mut local = match (&row.local_dir, row.local_bytes) {
                (Some(dir), Some(bytes)) => {
                    format!("{} {}", tcbackup_core::progress::human_bytes(bytes), dir)
                }
                _ => "-".to_string(),
            };
            match (row.encrypted, row.local_key_held) {
                (false, _) => {}
                (true, Some(true)) => local.push_str(" [encrypted, key kept]"),
                (true, Some(false)) => local.push_str(" [encrypted, NO key held]"),
                (true, None) => local.push_str(" [encrypted]"),
            }
            if row.manual {
                local.push_str(" [manual]");
            }
            if let Some(why) = &row.not_fetched {
                local.push_str(&format!(" [{why}]"));
            }
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
