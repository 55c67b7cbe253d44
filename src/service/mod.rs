//! What running under systemd needs beyond the sync cycle: readiness and
//! watchdog notifications, the metrics textfile, health-check pings and the
//! run lock that keeps two cycles from overlapping.

pub mod healthcheck;
pub mod metrics;
pub mod notify;
