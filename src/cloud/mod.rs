//! The only code that speaks to the Tencent Cloud API.

pub mod sign;
