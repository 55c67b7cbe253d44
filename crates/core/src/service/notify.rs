//! sd_notify: READY, STATUS, WATCHDOG and STOPPING messages to systemd.
//!
//! The protocol is one datagram per message to the socket named in
//! `$NOTIFY_SOCKET` (a path, or an abstract name starting with `@`). Sending
//! is best effort: a lost status line must never stop a backup.

use std::io;
use std::os::unix::net::UnixDatagram;
use std::path::PathBuf;
use std::time::Duration;

/// Where notifications go; `None` when not started by systemd.
#[derive(Debug, Clone, Default)]
pub struct Notifier {
    socket: Option<String>,
    watchdog: Option<Duration>,
}

impl Notifier {
    /// From `$NOTIFY_SOCKET` and `$WATCHDOG_USEC`/`$WATCHDOG_PID` of this process.
    pub fn from_env() -> Self {
        let socket = std::env::var("NOTIFY_SOCKET")
            .ok()
            .filter(|s| !s.is_empty());
        let watchdog_for_us = match std::env::var("WATCHDOG_PID") {
            Ok(pid) => pid.trim() == std::process::id().to_string(),
            Err(_) => true,
        };
        let watchdog = std::env::var("WATCHDOG_USEC")
            .ok()
            .and_then(|v| v.trim().parse::<u64>().ok())
            .filter(|us| *us > 0 && watchdog_for_us)
            .map(Duration::from_micros);
        Self { socket, watchdog }
    }

    /// Send to an explicit socket (tests), with an optional watchdog period.
    pub fn to_socket(path: impl Into<PathBuf>, watchdog: Option<Duration>) -> Self {
        Self {
            socket: Some(path.into().to_string_lossy().into_owned()),
            watchdog,
        }
    }

    /// A notifier that sends nothing.
    pub fn disabled() -> Self {
        Self::default()
    }

    /// How often to send WATCHDOG=1 (half the configured WatchdogSec), if enabled.
    pub fn watchdog_interval(&self) -> Option<Duration> {
        self.watchdog.map(|d| d / 2)
    }

    /// READY=1 with a status line.
    pub fn ready(&self, status: &str) {
        self.send(&format!("READY=1\nSTATUS={}", one_line(status)));
    }

    /// STATUS=… shown by `systemctl status`.
    pub fn status(&self, status: &str) {
        self.send(&format!("STATUS={}", one_line(status)));
    }

    /// WATCHDOG=1.
    pub fn watchdog(&self) {
        self.send("WATCHDOG=1");
    }

    /// RELOADING=1 while a new configuration is read.
    pub fn reloading(&self) {
        self.send("RELOADING=1");
    }

    /// STOPPING=1 with a status line.
    pub fn stopping(&self, status: &str) {
        self.send(&format!("STOPPING=1\nSTATUS={}", one_line(status)));
    }

    fn send(&self, message: &str) {
        let Some(socket) = &self.socket else { return };
        if let Err(error) = send_datagram(socket, message) {
            tracing::debug!(%error, "sd_notify message not delivered");
        }
    }
}

fn one_line(text: &str) -> String {
    text.replace('\n', " ")
}

fn send_datagram(socket: &str, message: &str) -> io::Result<()> {
    let sock = UnixDatagram::unbound()?;
    if let Some(name) = socket.strip_prefix('@') {
        use std::os::linux::net::SocketAddrExt;
        let addr = std::os::unix::net::SocketAddr::from_abstract_name(name.as_bytes())?;
        sock.send_to_addr(message.as_bytes(), &addr)?;
    } else {
        sock.send_to(message.as_bytes(), socket)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_reach_the_socket() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("notify.sock");
        let server = UnixDatagram::bind(&path).unwrap();
        let n = Notifier::to_socket(&path, Some(Duration::from_secs(60)));
        n.ready("watching 2 instances\nnext run 03:30");
        n.watchdog();
        n.stopping("stopping");
        let mut buf = [0u8; 512];
        let mut got = Vec::new();
        for _ in 0..3 {
            let len = server.recv(&mut buf).unwrap();
            got.push(String::from_utf8_lossy(&buf[..len]).into_owned());
        }
        assert_eq!(
            got[0],
            "READY=1\nSTATUS=watching 2 instances next run 03:30"
        );
        assert_eq!(got[1], "WATCHDOG=1");
        assert_eq!(got[2], "STOPPING=1\nSTATUS=stopping");
        assert_eq!(n.watchdog_interval(), Some(Duration::from_secs(30)));
    }

    #[test]
    fn disabled_sends_nothing_and_never_fails() {
        Notifier::disabled().ready("x");
        Notifier::to_socket("/nonexistent/socket", None).status("lost, and that is fine");
    }
}
