//! The one-shot commands, one file each: `--now` (`now`), `check-config`,
//! `list`, `verify`, `prune`, `status` and `generate`. Each prints for a human (or JSON) and
//! returns how it ended ([`Exit`]).

use std::sync::Arc;

use crate::context;
use tcbackup_core::config::Config;
use tcbackup_core::exit::Exit;
use tcbackup_core::progress::Progress;
use tcbackup_core::sync::SyncContext;

mod check_config;
mod generate;
mod list;
mod now;
mod prune;
mod status;
mod verify;

pub use check_config::check_config;
pub use generate::generate;
pub use list::list;
pub use now::{now, print_summary};
pub use prune::prune;
pub use status::status;
pub use verify::verify;

/// The cycle's context, or how the run ends after printing why it cannot be built.
pub(crate) async fn sync_context(
    config: Arc<Config>,
    progress: Progress,
) -> Result<SyncContext, Exit> {
    context::build_context(config, context::system_clock(), progress)
        .await
        .map_err(|e| {
            eprintln!("tcbackup: {e}");
            e.exit()
        })
}
