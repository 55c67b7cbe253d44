//! tcbackup keeps an off-cloud copy of Tencent Cloud Redis and PostgreSQL
//! backups: it lists backups through the cloud API, downloads every file
//! with resume, verifies it, publishes the set atomically and rotates old
//! copies. See ARCHITECTURE.md for the map.

pub mod clock;
pub mod cloud;
pub mod cos;
pub mod emulator;
pub mod model;
pub mod secret;
pub mod transfer;
pub mod verify;
