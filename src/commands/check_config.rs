//! `tcbackup check-config`: the file, the credentials, and each instance
//! against the API, touching nothing on disk.

use std::sync::Arc;

use tcbackup_core::config::Config;
use tcbackup_core::exit::Exit;
use tcbackup_core::progress::{Progress, ProgressMode};

use super::sync_context;

/// `tcbackup check-config`: the file, the credentials, and each instance.
pub async fn check_config(config: Config) -> Exit {
    crate::outln!(
        "{}: valid, {} instance(s), download_dir {}",
        config.source.display(),
        config.instances.len(),
        config.download_dir.display()
    );
    // The warnings were logged when the config was loaded.
    let config = Arc::new(config);
    let ctx = match sync_context(config.clone(), Progress::new(ProgressMode::Quiet)).await {
        Ok(ctx) => ctx,
        Err(code) => return code,
    };
    crate::outln!(
        "credentials: {}",
        ctx.catalog.client().credentials().describe()
    );
    let mut code = Exit::Ok;
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
                code = code.and(if e.is_auth() {
                    Exit::Auth
                } else {
                    Exit::Config
                });
            }
        }
    }
    code
}
