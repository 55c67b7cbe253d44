//! `tcbackup verify`: every published set re-checked against its manifest.

use std::sync::Arc;

use crate::context;
use tcbackup_core::config::Config;
use tcbackup_core::exit::Exit;
use tcbackup_core::store::Store;

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
                if report.is_ok() {
                    crate::outln!("ok      {}", set.dir.display());
                } else {
                    bad += 1;
                    crate::outln!("FAILED  {}", set.dir.display());
                    for file in report
                        .files
                        .iter()
                        .filter(|f| f.outcome != tcbackup_core::store::FileOutcome::Ok)
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
