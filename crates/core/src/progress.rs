//! Progress reporting: indicatif bars on a terminal (one per file in flight
//! plus a total), periodic plain log lines otherwise (systemd's journal must
//! not fill with bar redraws). Nothing else in the crate knows indicatif.

use std::collections::HashMap;
use std::io::{self, Write};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use indicatif::{HumanBytes, MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};

/// The bars on screen, if any, so that log lines can be printed above them
/// instead of through them. The one piece of process-wide state here: a
/// terminal has one set of bars, and the log writer is installed once.
static ON_SCREEN: Mutex<Option<MultiProgress>> = Mutex::new(None);

fn on_screen() -> std::sync::MutexGuard<'static, Option<MultiProgress>> {
    match ON_SCREEN.lock() {
        Ok(guard) => guard,
        Err(poisoned) => poisoned.into_inner(),
    }
}

/// A `tracing_subscriber` writer for stderr that hides the bars while a log
/// line is written, so lines appear above the bars and never inside them.
#[derive(Debug, Clone, Copy, Default)]
pub struct StderrAboveBars;

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for StderrAboveBars {
    type Writer = StderrAboveBars;

    fn make_writer(&'a self) -> Self::Writer {
        *self
    }
}

impl Write for StderrAboveBars {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let bars = on_screen().clone();
        match bars {
            Some(multi) => multi
                .suspend(|| io::stderr().write_all(buf))
                .map(|()| buf.len()),
            None => io::stderr().write(buf),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        io::stderr().flush()
    }
}

/// `n` bytes for people ("1.71 MiB"), for summaries and status lines, so
/// that the rest of the crate need not know indicatif.
pub fn human_bytes(n: u64) -> impl std::fmt::Display {
    HumanBytes(n)
}

/// How progress is shown.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProgressMode {
    /// Bars on stderr (a terminal).
    Bars,
    /// A log line every `interval` while transfers run.
    Log {
        /// Time between two lines.
        interval: Duration,
    },
    /// Nothing.
    Quiet,
}

impl ProgressMode {
    /// Bars when stderr is a terminal, log lines every 30 s otherwise.
    pub fn detect() -> Self {
        use std::io::IsTerminal;
        if std::io::stderr().is_terminal() {
            ProgressMode::Bars
        } else {
            ProgressMode::Log {
                interval: Duration::from_secs(30),
            }
        }
    }
}

/// Shared progress state of one sync cycle. Cheap to clone.
#[derive(Clone)]
pub struct Progress {
    inner: Arc<Inner>,
}

struct Inner {
    mode: ProgressMode,
    multi: Option<MultiProgress>,
    total_bar: Option<ProgressBar>,
    bytes_done: AtomicU64,
    bytes_total: AtomicU64,
    started: Instant,
    files: Mutex<HashMap<String, FileState>>,
    last_log: Mutex<Instant>,
}

struct FileState {
    bar: Option<ProgressBar>,
    /// Bytes of this file counted in `bytes_done`.
    done: u64,
}

impl std::fmt::Debug for Progress {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Progress")
            .field("mode", &self.inner.mode)
            .finish()
    }
}

fn bar_style(template: &str) -> ProgressStyle {
    ProgressStyle::with_template(template)
        .unwrap_or_else(|_| ProgressStyle::default_bar())
        .progress_chars("=> ")
}

impl Progress {
    /// Start reporting in `mode`.
    pub fn new(mode: ProgressMode) -> Self {
        let (multi, total_bar) = match mode {
            ProgressMode::Bars => {
                let multi = MultiProgress::with_draw_target(ProgressDrawTarget::stderr());
                let total = multi.add(ProgressBar::new(0));
                total.set_style(bar_style(
                    "{prefix:>24} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec} eta {eta}",
                ));
                total.set_prefix("total");
                *on_screen() = Some(multi.clone());
                (Some(multi), Some(total))
            }
            _ => (None, None),
        };
        Self {
            inner: Arc::new(Inner {
                mode,
                multi,
                total_bar,
                bytes_done: AtomicU64::new(0),
                bytes_total: AtomicU64::new(0),
                started: Instant::now(),
                files: Mutex::new(HashMap::new()),
                last_log: Mutex::new(Instant::now()),
            }),
        }
    }

    /// A file transfer started: `total` bytes, `resumed_from` already on disk.
    pub fn file_started(&self, label: &str, total: u64, resumed_from: u64) {
        self.inner.bytes_total.fetch_add(total, Ordering::Relaxed);
        self.inner
            .bytes_done
            .fetch_add(resumed_from, Ordering::Relaxed);
        let bar = self.inner.multi.as_ref().map(|multi| {
            let bar = multi.add(ProgressBar::new(total));
            bar.set_style(bar_style(
                "{prefix:>24} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec} {msg}",
            ));
            bar.set_prefix(short_label(label));
            bar.set_position(resumed_from);
            if resumed_from > 0 {
                bar.set_message(format!("resumed at {}", HumanBytes(resumed_from)));
            }
            bar
        });
        if let Some(total_bar) = &self.inner.total_bar {
            total_bar.set_length(self.inner.bytes_total.load(Ordering::Relaxed));
            total_bar.set_position(self.inner.bytes_done.load(Ordering::Relaxed));
        }
        if matches!(self.inner.mode, ProgressMode::Log { .. }) {
            if resumed_from > 0 {
                tracing::info!(file = label, size = total, resumed_from, "download resumed");
            } else {
                tracing::info!(file = label, size = total, "download started");
            }
        }
        self.lock_files().insert(
            label.to_string(),
            FileState {
                bar,
                done: resumed_from,
            },
        );
    }

    /// `n` more bytes of `label` are on disk.
    pub fn advance(&self, label: &str, n: u64) {
        self.inner.bytes_done.fetch_add(n, Ordering::Relaxed);
        if let Some(total_bar) = &self.inner.total_bar {
            total_bar.inc(n);
        }
        if let Some(state) = self.lock_files().get_mut(label) {
            state.done += n;
            if let Some(bar) = &state.bar {
                bar.inc(n);
            }
        }
        self.maybe_log();
    }

    /// The file starts over from byte 0 (the object changed, a 200
    /// answered a range): its bytes so far no longer count.
    pub fn restart(&self, label: &str, reason: &str) {
        let mut files = self.lock_files();
        let Some(state) = files.get_mut(label) else {
            return;
        };
        let lost = std::mem::take(&mut state.done);
        let _ = self
            .inner
            .bytes_done
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |v| {
                Some(v.saturating_sub(lost))
            });
        if let Some(bar) = &state.bar {
            bar.set_position(0);
            bar.set_message(reason.to_string());
        }
        drop(files);
        if let Some(total_bar) = &self.inner.total_bar {
            total_bar.set_position(self.inner.bytes_done.load(Ordering::Relaxed));
        }
        if self.inner.multi.is_none() {
            tracing::warn!(file = label, "{reason}");
        }
    }

    /// A remark about one file (retrying, URL refreshed) shown beside its bar or logged.
    pub fn note(&self, label: &str, message: &str) {
        match self.lock_files().get(label).and_then(|s| s.bar.clone()) {
            Some(bar) => bar.set_message(message.to_string()),
            None => tracing::info!(file = label, "{message}"),
        }
    }

    /// The file is done (successfully or not); its bar goes away.
    pub fn file_finished(&self, label: &str) {
        if let Some(state) = self.lock_files().remove(label) {
            if let (Some(bar), Some(multi)) = (state.bar, &self.inner.multi) {
                bar.finish_and_clear();
                multi.remove(&bar);
            }
        }
    }

    /// Print a line above the bars (or log it).
    pub fn println(&self, line: &str) {
        match &self.inner.multi {
            Some(multi) => {
                if multi.println(line).is_err() {
                    eprintln!("{line}");
                }
            }
            None => tracing::info!("{line}"),
        }
    }

    /// Bytes on disk so far and bytes expected, over all files started.
    pub fn totals(&self) -> (u64, u64) {
        (
            self.inner.bytes_done.load(Ordering::Relaxed),
            self.inner.bytes_total.load(Ordering::Relaxed),
        )
    }

    /// Remove the bars (end of the cycle).
    pub fn finish(&self) {
        if let Some(total_bar) = &self.inner.total_bar {
            total_bar.finish_and_clear();
        }
        if let Some(multi) = &self.inner.multi {
            let _ = multi.clear();
            *on_screen() = None;
        }
    }

    fn maybe_log(&self) {
        let ProgressMode::Log { interval } = self.inner.mode else {
            return;
        };
        let mut last = match self.inner.last_log.lock() {
            Ok(last) => last,
            Err(poisoned) => poisoned.into_inner(),
        };
        if last.elapsed() < interval {
            return;
        }
        *last = Instant::now();
        drop(last);
        let (done, total) = self.totals();
        let secs = self.inner.started.elapsed().as_secs_f64().max(0.001);
        let in_flight = self.lock_files().len();
        tracing::info!(
            "progress: {} of {} ({} files in flight, {}/s average)",
            HumanBytes(done),
            HumanBytes(total),
            in_flight,
            HumanBytes((done as f64 / secs) as u64)
        );
    }

    fn lock_files(&self) -> std::sync::MutexGuard<'_, HashMap<String, FileState>> {
        match self.inner.files.lock() {
            Ok(files) => files,
            Err(poisoned) => poisoned.into_inner(),
        }
    }
}

/// The last 24 characters of a label, so long RDB names keep their shard number.
fn short_label(label: &str) -> String {
    let chars: Vec<char> = label.chars().collect();
    if chars.len() <= 24 {
        label.to_string()
    } else {
        let tail: String = chars[chars.len() - 23..].iter().collect();
        format!("…{tail}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn totals_follow_events() {
        let p = Progress::new(ProgressMode::Quiet);
        p.file_started("a.rdb", 100, 40);
        p.file_started("b.rdb", 50, 0);
        p.advance("a.rdb", 60);
        p.advance("b.rdb", 10);
        assert_eq!(p.totals(), (110, 150));
        p.restart("b.rdb", "object changed, starting over");
        assert_eq!(p.totals(), (100, 150));
        p.restart("a.rdb", "range ignored");
        assert_eq!(p.totals(), (0, 150));
        p.file_finished("a.rdb");
        p.finish();
    }

    #[test]
    fn labels_keep_their_tail() {
        let long = "9527208-4633789-redis-server-4.0.8-1001463-ignore-3-ignore.rdb";
        let short = short_label(long);
        assert!(short.ends_with("ignore-3-ignore.rdb"));
        assert_eq!(short.chars().count(), 24);
        assert_eq!(short_label("x.rdb"), "x.rdb");
    }
}
