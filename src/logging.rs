//! Log setup. Logs go to stderr, in one of four shapes:
//! - `--log-format json`: one JSON object per line (`timestamp`, `level`,
//!   `message` and the event's fields at the top level);
//! - text on a terminal: colours and timestamps; for `--now` without `-v`,
//!   only warnings and errors, without timestamps: the progress bars, their
//!   one `published …` line per set and the end-of-run summary say the
//!   rest;
//! - text into systemd's journal (`$JOURNAL_STREAM` names stderr): no
//!   colours, no timestamps (the journal adds its own), and each line
//!   starts with its syslog priority (`<3>` error … `<7>` debug), so
//!   `journalctl -p warning` works;
//! - text anywhere else (a pipe, a file): no colours, with timestamps.
//!
//! Verbosity comes from `-v`/`-vv` unless `RUST_LOG` says otherwise.

use std::fmt;
use std::io::IsTerminal;

use tracing::{Event, Level, Subscriber};
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields};
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::EnvFilter;

use crate::cli::LogFormat;

/// Where stderr goes, as far as the text format cares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TextTarget {
    /// A terminal: colours and timestamps.
    Terminal,
    /// systemd's journal: priority prefixes, no timestamps.
    Journal,
    /// A pipe or a file: plain lines with timestamps.
    Plain,
}

impl TextTarget {
    /// Look at this process's stderr and `$JOURNAL_STREAM`.
    pub fn detect() -> Self {
        if std::io::stderr().is_terminal() {
            return TextTarget::Terminal;
        }
        let journal = std::env::var("JOURNAL_STREAM").ok();
        match (journal, stderr_identity()) {
            (Some(stream), Some((dev, ino))) if journal_stream_is(&stream, dev, ino) => {
                TextTarget::Journal
            }
            _ => TextTarget::Plain,
        }
    }
}

/// The device and inode of stderr, if it can be inspected.
fn stderr_identity() -> Option<(u64, u64)> {
    use std::os::fd::AsFd;
    use std::os::unix::fs::MetadataExt;
    let fd = std::io::stderr().as_fd().try_clone_to_owned().ok()?;
    let meta = std::fs::File::from(fd).metadata().ok()?;
    Some((meta.dev(), meta.ino()))
}

/// Whether `$JOURNAL_STREAM` (`"<device>:<inode>"`, as systemd sets it when
/// it connects stdout/stderr to the journal) names the file `dev`/`ino`.
/// systemd documents exactly this check: the variable is inherited by
/// children whose stderr was redirected elsewhere.
pub fn journal_stream_is(value: &str, dev: u64, ino: u64) -> bool {
    let Some((d, i)) = value.trim().split_once(':') else {
        return false;
    };
    d.parse::<u64>().ok() == Some(dev) && i.parse::<u64>().ok() == Some(ino)
}

/// The syslog priority of a level (`sd-daemon.h`'s `SD_ERR` … `SD_DEBUG`).
pub fn syslog_priority(level: Level) -> u8 {
    match level {
        Level::ERROR => 3,
        Level::WARN => 4,
        Level::INFO => 6,
        Level::DEBUG | Level::TRACE => 7,
    }
}

/// Prefixes each event with `<priority>` for the journal, then formats it
/// with the inner format.
struct JournalPrefix<F>(F);

impl<S, N, F> FormatEvent<S, N> for JournalPrefix<F>
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
    F: FormatEvent<S, N>,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        write!(writer, "<{}>", syslog_priority(*event.metadata().level()))?;
        self.0.format_event(ctx, writer, event)
    }
}

/// The filter used when `RUST_LOG` is unset. `quiet` (a `--now` run on a
/// terminal without `-v`) keeps only warnings and errors.
fn default_filter(verbose: u8, quiet: bool) -> &'static str {
    match verbose {
        0 if quiet => "warn",
        0 => "tcbackup=info,warn",
        1 => "tcbackup=debug,info",
        _ => "tcbackup=trace,debug",
    }
}

/// Whether a run logs in the quiet terminal shape: `--now` (`one_shot`)
/// with text output to a terminal and no `-v`.
pub fn quiet_terminal(one_shot: bool, verbose: u8, format: LogFormat) -> bool {
    one_shot
        && verbose == 0
        && format == LogFormat::Text
        && TextTarget::detect() == TextTarget::Terminal
}

/// Install the global subscriber. Safe to call once per process. `quiet`
/// comes from [`quiet_terminal`].
pub fn init(verbose: u8, format: LogFormat, quiet: bool) {
    let default = default_filter(verbose, quiet);
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(tcbackup_core::progress::StderrAboveBars)
        .with_target(verbose > 0);
    let result = match (format, TextTarget::detect()) {
        (LogFormat::Json, _) => builder
            .json()
            .flatten_event(true)
            .with_ansi(false)
            .try_init(),
        (LogFormat::Text, TextTarget::Terminal) if quiet => builder.without_time().try_init(),
        (LogFormat::Text, TextTarget::Terminal) => builder.try_init(),
        (LogFormat::Text, TextTarget::Journal) => {
            let inner = tracing_subscriber::fmt::format()
                .with_ansi(false)
                .without_time()
                .with_target(verbose > 0);
            builder
                .with_ansi(false)
                .event_format(JournalPrefix(inner))
                .try_init()
        }
        (LogFormat::Text, TextTarget::Plain) => builder.with_ansi(false).try_init(),
    };
    if let Err(error) = result {
        eprintln!("tcbackup: logging was already set up: {error}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn journal_stream_must_name_stderr_itself() {
        assert!(journal_stream_is("8:12345", 8, 12345));
        assert!(journal_stream_is("8:12345\n", 8, 12345));
        assert!(!journal_stream_is("8:12346", 8, 12345), "another file");
        assert!(!journal_stream_is("9:12345", 8, 12345), "another device");
        assert!(!journal_stream_is("", 8, 12345));
        assert!(!journal_stream_is("8-12345", 8, 12345));
    }

    #[test]
    fn a_quiet_terminal_shows_warnings_only_until_asked_for_more() {
        assert_eq!(default_filter(0, true), "warn");
        assert_eq!(default_filter(0, false), "tcbackup=info,warn");
        assert_eq!(default_filter(1, true), "tcbackup=debug,info", "-v wins");
        assert_eq!(default_filter(2, false), "tcbackup=trace,debug");
        // Not a one-shot run, or JSON, is never quiet (stderr aside).
        assert!(!quiet_terminal(false, 0, LogFormat::Text));
        assert!(!quiet_terminal(true, 1, LogFormat::Text));
        assert!(!quiet_terminal(true, 0, LogFormat::Json));
    }

    #[test]
    fn priorities_follow_sd_daemon() {
        assert_eq!(syslog_priority(Level::ERROR), 3);
        assert_eq!(syslog_priority(Level::WARN), 4);
        assert_eq!(syslog_priority(Level::INFO), 6);
        assert_eq!(syslog_priority(Level::DEBUG), 7);
        assert_eq!(syslog_priority(Level::TRACE), 7);
    }
}
