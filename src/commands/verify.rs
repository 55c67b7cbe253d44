//! `tcbackup verify`: every published set re-checked against its manifest,
//! and an encrypted set's key file (present, owner-only) with it.

use std::sync::Arc;

use crate::context;
use tcbackup_core::config::Config;
use tcbackup_core::exit::Exit;
use tcbackup_core::store::{FileOutcome, KeyOutcome, Store, KEY_FILE};

/// `tcbackup verify`: every published set against its manifest.
pub async fn verify(config: Config) -> Exit {
    let store = Arc::new(Store::open(
        config.download_dir.clone(),
        context::system_clock(),
    ));
    let result = tokio::task::spawn_blocking(
        move || -> Result<(usize, usize), tcbackup_core::store::StoreError> {
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
                // An encrypted set: its files are ciphertext (sizes and
                // SHA-256 checked, no RDB structure), and its key is checked.
                let encrypted = match &report.key {
                    KeyOutcome::NotEncrypted => String::new(),
                    KeyOutcome::Ok => format!(" (encrypted; key in {KEY_FILE})"),
                    KeyOutcome::NotHeld => " (encrypted; NO key held)".to_string(),
                    _ => " (encrypted)".to_string(),
                };
                if report.is_ok() {
                    crate::outln!("ok      {}{encrypted}", set.dir.display());
                    if report.key == KeyOutcome::NotHeld {
                        eprintln!("warning: {}: {}", set.dir.display(), report.key);
                    }
                } else {
                    bad += 1;
                    crate::outln!("FAILED  {}{encrypted}", set.dir.display());
                    for file in report.files.iter().filter(|f| f.outcome != FileOutcome::Ok) {
                        crate::outln!("        {}: {}", file.name, file.outcome);
                    }
                    if !report.key.is_ok() {
                        crate::outln!("        {}", report.key);
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
            Exit::Ok
        }
        Ok(Ok((total, bad))) => {
            eprintln!("{bad} of {total} set(s) failed verification");
            Exit::Failed
        }
        Ok(Err(e)) => {
            eprintln!("tcbackup: {e}");
            Exit::Failed
        }
        Err(e) => {
            eprintln!("tcbackup: verification task failed: {e}");
            Exit::Failed
        }
    }
}
