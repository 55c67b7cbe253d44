//! What running under systemd needs beyond the sync cycle: readiness and
//! watchdog notifications, the metrics textfile and health-check pings.
//! (The run lock that keeps two cycles from overlapping is the store's.)

pub mod healthcheck;
pub mod history;
pub mod metrics;
pub mod notify;
