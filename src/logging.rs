//! Log setup: text for the journal (colours only on a terminal) or JSON
//! lines, verbosity from `-v`/`-vv` unless `RUST_LOG` says otherwise. Logs go
//! to stderr.

use std::io::IsTerminal;

use tracing_subscriber::EnvFilter;

use crate::cli::LogFormat;

/// Install the global subscriber. Safe to call once per process.
pub fn init(verbose: u8, format: LogFormat) {
    let default = match verbose {
        0 => "tcbackup=info,warn",
        1 => "tcbackup=debug,info",
        _ => "tcbackup=trace,debug",
    };
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(verbose > 0);
    let result = match format {
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
        LogFormat::Text if std::io::stderr().is_terminal() => builder.try_init(),
        // Not a terminal (systemd's journal, a pipe): no colours, and the
        // journal adds its own timestamps.
        LogFormat::Text => builder.with_ansi(false).without_time().try_init(),
    };
    if let Err(error) = result {
        eprintln!("tcbackup: logging was already set up: {error}");
    }
}
