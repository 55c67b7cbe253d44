//! tcbackup keeps an off-cloud copy of Tencent Cloud Redis and PostgreSQL
//! backups: it lists backups through the cloud API, downloads every file
//! with resume, verifies it, publishes the set atomically and rotates old
//! copies. See ARCHITECTURE.md for the map.
//!
//! This crate is the product library. It depends on `tcbackup-signing` for
//! what both ends of the wire share, and never on the emulator; the
//! `tcbackup` binary puts the command line, the daemon and the demo on top.

pub mod backoff;
pub mod cloud;
pub mod config;
pub mod duration;
pub mod encryption;
pub mod exit;
pub mod meta;
pub mod model;
pub mod private_files;
pub mod progress;
pub mod retention;
pub mod service;
pub mod store;
pub mod sync;
pub mod token_bucket;
pub mod transfer;
pub mod verify;
