//! `tcbackup --now` end to end: the real binary as a subprocess against the
//! in-process emulator, checked by what a user notices (exit code, messages,
//! the bytes on disk, what is kept or deleted) and by what the emulator
//! served. The harness is `tests/it/common/mod.rs`.

mod archives;
mod commands;
mod encrypted;
mod leftovers;
mod meta;
mod modes;
mod network;
mod pull;
mod refusals;
mod resume;
mod retention;
mod space;
mod status;
