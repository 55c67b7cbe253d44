//! Putting a configuration to use, at startup and on each reload: the
//! credentials are checked against the API for every configured instance
//! before `READY=1` (or before a reloaded configuration replaces the old).

use crate::context::SetupError;
use tcbackup_core::cloud::error::ApiError;
use tcbackup_core::exit::Exit;
use tcbackup_core::sync::SyncContext;

/// Why a configuration could not be put to use (at startup or on reload).
#[derive(Debug, thiserror::Error)]
pub enum PrepareError {
    /// The client, credentials or transfer engine could not be set up.
    #[error(transparent)]
    Setup(#[from] SetupError),
    /// The API refused the credentials for every configured instance.
    #[error("the API refused the credentials ({credentials}) for {service} instance {instance_id}: {error}")]
    Refused {
        /// Which credentials, masked (`config file, AKID…1234`).
        credentials: String,
        /// `redis` or `postgres`.
        service: tcbackup_core::model::Service,
        /// The first instance refused.
        instance_id: String,
        /// The API's answer.
        error: ApiError,
    },
    /// SIGTERM arrived before the check was done.
    #[error("stopped before the configuration was put to use")]
    Cancelled,
}

impl PrepareError {
    /// How the daemon ends when this stops it at startup.
    pub fn exit(&self) -> Exit {
        match self {
            PrepareError::Setup(e) => e.exit(),
            PrepareError::Refused { .. } => Exit::Auth,
            PrepareError::Cancelled => Exit::Ok,
        }
    }
}

/// Look every configured instance up: credentials the API refuses for all
/// of them are an error; anything else (a refused instance among accepted
/// ones, an unreachable API, an unknown instance) is a warning.
pub(super) async fn check_credentials(ctx: &SyncContext) -> Result<(), PrepareError> {
    let mut confirmed = false;
    let mut refused = Vec::new();
    for instance in &ctx.config.instances {
        let checked = ctx
            .catalog
            .check_instance(
                instance.service,
                &instance.instance_id,
                Some(&instance.region),
            )
            .await;
        match checked {
            Ok(_) => confirmed = true,
            Err(error) if error.is_auth() => refused.push((instance, error)),
            Err(error) => tracing::warn!(
                instance = %instance.instance_id,
                "could not check {} instance {} at startup (each cycle checks it again): {error}",
                instance.service,
                instance.instance_id
            ),
        }
    }
    if !confirmed {
        if let Some((instance, error)) = refused.into_iter().next() {
            return Err(PrepareError::Refused {
                credentials: ctx.catalog.client().credentials().describe(),
                service: instance.service,
                instance_id: instance.instance_id.clone(),
                error,
            });
        }
        return Ok(());
    }
    for (instance, error) in refused {
        tracing::warn!(
            instance = %instance.instance_id,
            "the API refuses access to {} instance {}; it will fail every cycle: {error}",
            instance.service,
            instance.instance_id
        );
    }
    Ok(())
}
