//! `tcbackup check-config`: the file, the credentials, each instance
//! against the API, and the account's backup download policy of each
//! service and region in use against the instances' `network`, touching
//! nothing on disk.

use std::sync::Arc;

use tcbackup_core::cloud::Catalog;
use tcbackup_core::config::{Config, InstanceConfig};
use tcbackup_core::exit::Exit;
use tcbackup_core::model::{Network, Service};
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
            Ok(_) => crate::outln!(
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
    check_download_policies(&ctx.catalog, &config.instances).await;
    code
}

/// Read the download policy once per service and region in use and warn
/// when it refuses the downloads configured there (public links under an
/// intranet-only policy), or when it cannot be read. Warnings only: the
/// policy may change, and a host inside Tencent Cloud may still download.
async fn check_download_policies(catalog: &Catalog, instances: &[InstanceConfig]) {
    let mut places: Vec<(Service, &str)> = Vec::new();
    for instance in instances {
        let place = (instance.service, instance.region.as_str());
        if !places.contains(&place) {
            places.push(place);
        }
    }
    for (service, region) in places {
        let here: Vec<&InstanceConfig> = instances
            .iter()
            .filter(|i| i.service == service && i.region == region)
            .collect();
        let policy = match catalog.download_policy(service, Some(region)).await {
            Ok(policy) => policy,
            Err(e) => {
                tracing::warn!(
                    "cannot read the {service} backup download policy in {region} (DescribeBackupDownloadRestriction: {e}); downloads are not checked against it{}",
                    if e.is_auth() {
                        ", grant the CAM permission to check it"
                    } else {
                        ""
                    }
                );
                continue;
            }
        };
        crate::outln!("{service} backup download policy in {region}: {policy}");
        let refused: Vec<&str> = here
            .iter()
            .filter(|i| policy.refuses(i.network))
            .map(|i| i.instance_id.as_str())
            .collect();
        if !refused.is_empty() {
            tracing::warn!(
                "the {service} backup download policy in {region} is {policy}, but {} download{} over network = \"{}\", which COS refuses from outside Tencent Cloud; on a host inside Tencent Cloud in {region} set network = \"intranet\" ([transfer] or the instance's table), or ask the administrator to allow public downloads",
                refused.join(", "),
                if refused.len() == 1 { "s" } else { "" },
                Network::Public,
            );
        }
    }
}
