//! The `tcbackup` binary: the command line, the daemon, the demo and the
//! commands on top of the `tcbackup-core` library. `main` starts the
//! runtime and `run` dispatches to the mode the command line asks for;
//! every mode returns an [`Exit`], turned into the process exit code here.

mod cli;
mod commands;
mod context;
mod daemon;
mod demo;
mod logging;
mod output;
mod shutdown;

use std::process::ExitCode;

use clap::Parser;

use crate::cli::{Cli, Command};
use tcbackup_core::exit::Exit;

fn main() -> ExitCode {
    let cli = Cli::parse();
    let quiet = logging::quiet_terminal(
        cli.now && cli.command.is_none(),
        cli.verbose,
        cli.log_format,
    );
    logging::init(cli.verbose, cli.log_format, quiet);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("tcbackup: cannot start the async runtime: {e}");
            return Exit::Failed.into();
        }
    };
    let exit = runtime.block_on(run(cli));
    // A blocking task still running (an fsync on a dying disk, a transfer
    // abandoned after the stop grace) must not hold the exit: the resumable
    // state is already on disk, and systemd's stop timeout is near.
    runtime.shutdown_timeout(RUNTIME_SHUTDOWN_GRACE);
    exit.into()
}

/// How long the exit waits for blocking tasks still running.
const RUNTIME_SHUTDOWN_GRACE: std::time::Duration = std::time::Duration::from_secs(5);

/// Run the mode `cli` asks for.
async fn run(cli: Cli) -> Exit {
    match cli.command {
        Some(Command::Demo { dir }) => report(demo::run(&dir).await),
        Some(Command::Generate(what)) => commands::generate(&what),
        Some(Command::Emulator { listen }) => {
            let env = |name: &str| std::env::var(name).ok().filter(|v| !v.is_empty());
            let id = env("TENCENTCLOUD_SECRET_ID");
            let key = env("TENCENTCLOUD_SECRET_KEY");
            match tcbackup_emulator::run_standalone(listen, id, key).await {
                Ok(()) => Exit::Ok,
                Err(e) => {
                    eprintln!("tcbackup: emulator: {e}");
                    Exit::Failed
                }
            }
        }
        command => {
            let config = match context::load_config(&cli.config) {
                Ok(config) => config,
                Err(exit) => return exit,
            };
            match command {
                None if cli.now => commands::now(config).await,
                None => daemon::run(&cli.config, config).await,
                Some(Command::CheckConfig) => commands::check_config(config).await,
                Some(Command::List { json, local }) => commands::list(config, json, local).await,
                Some(Command::Verify) => commands::verify(config).await,
                Some(Command::Prune { dry_run }) => commands::prune(config, dry_run).await,
                Some(Command::Status { json }) => commands::status(config, json).await,
                Some(Command::Demo { .. } | Command::Emulator { .. } | Command::Generate(_)) => {
                    Exit::Config
                }
            }
        }
    }
}

fn report(result: anyhow::Result<Exit>) -> Exit {
    match result {
        Ok(exit) => exit,
        Err(e) => {
            eprintln!("tcbackup: {e:#}");
            Exit::Failed
        }
    }
}
