//! Signals → one cancellation token. SIGINT and SIGTERM cancel the run (the
//! transfers stop at a safe point and leave resumable state); a second one
//! exits at once with 130. SIGHUP asks the daemon to reload its
//! configuration.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use tokio::signal::unix::{signal, SignalKind};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

/// The process-wide stop signal.
#[derive(Debug, Clone, Default)]
pub struct Shutdown {
    token: CancellationToken,
    by_signal: Arc<AtomicBool>,
}

impl Shutdown {
    /// A shutdown that only fires when `cancel` is called (tests, the demo).
    pub fn new() -> Self {
        Self::default()
    }

    /// Listen for SIGINT and SIGTERM and cancel when one arrives.
    pub fn install_signal_handlers(&self) -> std::io::Result<()> {
        let mut sigint = signal(SignalKind::interrupt())?;
        let mut sigterm = signal(SignalKind::terminate())?;
        let this = self.clone();
        tokio::spawn(async move {
            let name = tokio::select! {
                _ = sigint.recv() => "SIGINT",
                _ = sigterm.recv() => "SIGTERM",
                _ = this.token.cancelled() => return,
            };
            tracing::warn!("{name} received: stopping; partial downloads are kept for resume");
            this.by_signal.store(true, Ordering::SeqCst);
            this.token.cancel();
            // Once a handler is installed the default action never comes
            // back: a second signal (Ctrl-C pressed again) must still end
            // the process. The resume state on disk is always consistent
            // (each sidecar is replaced by a rename), so this loses only
            // the bytes since the last save.
            let name = tokio::select! {
                _ = sigint.recv() => "SIGINT",
                _ = sigterm.recv() => "SIGTERM",
            };
            tracing::error!("second {name}: exiting at once");
            std::process::exit(i32::from(tcbackup_core::exit::Exit::Interrupted.code()));
        });
        Ok(())
    }

    /// The token every task watches.
    pub fn token(&self) -> CancellationToken {
        self.token.clone()
    }

    /// Whether a signal (not a manual cancel) stopped the run: exit 130.
    pub fn by_signal(&self) -> bool {
        self.by_signal.load(Ordering::SeqCst)
    }
}

/// Deliver one message per SIGHUP (bounded: reload requests coalesce).
pub fn reload_requests() -> std::io::Result<mpsc::Receiver<()>> {
    let mut sighup = signal(SignalKind::hangup())?;
    let (tx, rx) = mpsc::channel(1);
    tokio::spawn(async move {
        while sighup.recv().await.is_some() {
            // A full channel means a reload is already pending: coalesce.
            if let Err(mpsc::error::TrySendError::Closed(())) = tx.try_send(()) {
                break;
            }
        }
    });
    Ok(rx)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn manual_cancel_is_not_a_signal() {
        let s = Shutdown::new();
        let token = s.token();
        s.token().cancel();
        token.cancelled().await;
        assert!(!s.by_signal());
    }
}
