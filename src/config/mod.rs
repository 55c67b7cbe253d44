//! The configuration: parsers for the human-written values it holds.

pub mod duration;
pub mod units;
