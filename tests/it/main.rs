#![allow(clippy::unwrap_used, clippy::expect_used)]
//! The integration tests, one binary (one link step instead of one per
//! file). Each module is one area, run against the real parts: the
//! emulator on `127.0.0.1:0`, the real `tcbackup` binary as a subprocess,
//! real files on disk (a real tmpfs for disk-full cases). Shared helpers
//! are in `common/`.
//!
//! - `cloud_api`, `credentials`: the API client and credential chain
//!   against the emulated API and metadata service.
//! - `emulator_api`, `cos_server`: the emulator itself, against the
//!   reference and the official SDK's models.
//! - `transfer`: the transfer engine against the fake COS, one test per
//!   fault.
//! - `now`: `tcbackup --now` and the commands end to end.
//! - `daemon`: the daemon as a subprocess (signals, sd_notify, reload).
//! - `chaos`: `tcbackup --now` SIGKILLed anywhere over many cycles.
//! - `config_files`: the shipped config files.

mod common;

mod chaos;
mod cloud_api;
mod config_files;
mod cos_server;
mod credentials;
mod daemon;
mod emulator_api;
mod now;
mod transfer;
