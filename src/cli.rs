//! The command line: clap types only, no behaviour.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Parser, Subcommand, ValueEnum};

/// The exit codes (design.md §2), shown by `--help` and in the man page.
const EXIT_CODES: &str = "Exit codes of --now: 0 every due backup is published and verified (or \
nothing was new); 1 at least one backup failed (the others completed); 2 configuration or \
usage error (nothing was touched); 3 authentication or permission failure; 130 interrupted \
(partial downloads are kept for the next run). `tcbackup status` exits 0 when every instance \
is fresh, 1 when any is not.";

/// The default configuration file.
pub const DEFAULT_CONFIG: &str = "/etc/tcbackup/tcbackup.toml";

/// Keep an off-cloud copy of Tencent Cloud Redis and PostgreSQL backups.
///
/// Without a subcommand tcbackup runs as a daemon; with `--now` it runs one
/// sync cycle (list, download, verify, publish, retention) and exits.
#[derive(Debug, Parser)]
#[command(
    name = "tcbackup",
    version,
    about,
    long_about = None,
    after_long_help = EXIT_CODES
)]
pub struct Cli {
    /// Configuration file.
    #[arg(long, global = true, value_name = "PATH", default_value = DEFAULT_CONFIG)]
    pub config: PathBuf,

    /// Run one sync cycle for every configured instance, then exit.
    #[arg(long)]
    pub now: bool,

    /// More log output (-v debug, -vv trace). RUST_LOG overrides.
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,

    /// Log line format.
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,

    /// What to do instead of syncing.
    #[command(subcommand)]
    pub command: Option<Command>,
}

/// How log lines are written to stderr.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines (no colours when stderr is not a terminal).
    Text,
    /// One JSON object per line.
    Json,
}

/// Subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Parse and validate the configuration and the credentials, touch nothing.
    CheckConfig,
    /// List remote and local backups.
    List {
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
        /// Only local (published) sets; do not call the API.
        #[arg(long)]
        local: bool,
    },
    /// Re-check local copies against their manifests (size and SHA-256).
    Verify,
    /// Show or apply the retention plan for the local sets.
    Prune {
        /// Print the plan with the reason for each set; delete nothing.
        #[arg(long)]
        dry_run: bool,
    },
    /// Show whether every instance has a fresh local backup (no API call).
    ///
    /// Per instance: the newest local set and its age, the last cycle and
    /// the next run. Exit 0 when every instance is fresh (newest set
    /// younger than `stale_after`, last cycle not failed), 1 otherwise:
    /// usable as a Nagios/Icinga check.
    Status {
        /// Print JSON instead of one line per instance.
        #[arg(long)]
        json: bool,
    },
    /// Write the man pages or a shell completion script.
    ///
    /// Generated from this command line definition; needs no config file.
    #[command(subcommand)]
    Generate(Generate),
    /// Pull sample backups from the built-in emulator into ./tcbackup-demo/.
    Demo {
        /// Where to put the demo's downloads.
        #[arg(long, default_value = "tcbackup-demo")]
        dir: PathBuf,
    },
    /// Serve the emulator (both APIs and COS) with the demo data.
    Emulator {
        /// Address to listen on.
        #[arg(long, default_value = "127.0.0.1:9000")]
        listen: SocketAddr,
    },
}

/// What `tcbackup generate` writes.
#[derive(Debug, Subcommand)]
pub enum Generate {
    /// Man pages: tcbackup(1) to stdout, or with --dir one page per command.
    ///
    /// With --dir: tcbackup.1 and tcbackup-status.1, tcbackup-list.1, …
    Man {
        /// Write the pages into this directory instead of stdout.
        #[arg(long, value_name = "DIR")]
        dir: Option<PathBuf>,
    },
    /// A completion script for SHELL.
    Completions {
        /// The shell.
        #[arg(value_enum)]
        shell: clap_complete::Shell,
        /// Write the script into this directory (as tcbackup.bash,
        /// _tcbackup, tcbackup.fish, …) instead of stdout.
        #[arg(long, value_name = "DIR")]
        dir: Option<PathBuf>,
    },
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn cli_definition_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn now_with_config() {
        let cli = Cli::parse_from(["tcbackup", "--config", "/tmp/x.toml", "--now", "-vv"]);
        assert!(cli.now);
        assert_eq!(cli.verbose, 2);
        assert_eq!(cli.config, PathBuf::from("/tmp/x.toml"));
        assert!(cli.command.is_none());
    }

    #[test]
    fn prune_dry_run() {
        let cli = Cli::parse_from(["tcbackup", "prune", "--dry-run"]);
        assert!(matches!(
            cli.command,
            Some(Command::Prune { dry_run: true })
        ));
    }
}
