//! tcbackup keeps an off-cloud copy of Tencent Cloud Redis and PostgreSQL
//! backups: it lists backups through the cloud API, downloads every file
//! with resume, verifies it, publishes the set atomically and rotates old
//! copies. See ARCHITECTURE.md for the map.

pub mod app;
pub mod cli;
pub mod clock;
pub mod cloud;
pub mod commands;
pub mod config;
pub mod cos;
pub mod daemon;
pub mod demo;
pub mod emulator;
pub mod logging;
pub mod model;
pub mod output;
pub mod private_files;
pub mod progress;
pub mod retention;
pub mod secret;
pub mod service;
pub mod shutdown;
pub mod store;
pub mod sync;
pub mod transfer;
pub mod verify;
