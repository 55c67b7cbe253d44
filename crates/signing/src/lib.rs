//! What both ends of tcbackup's wire agree on, with no I/O: the TC3-HMAC-SHA256
//! request signature (`tc3`), COS presigned URLs (`cos`: minting and checking
//! them, reading their validity), the APIs' zone-less time strings and their
//! UTC+8 default (`times`), the injected clock (`clock`), the service names
//! (`service`), and the types that keep secrets out of logs (`secret`).
//!
//! The product library (`tcbackup-core`) signs and reads URLs with this
//! crate; the emulator (`tcbackup-emulator`) checks signatures and mints URLs
//! with the same code, and depends on nothing else of the product.

pub mod clock;
pub mod cos;
pub mod secret;
pub mod service;
pub mod tc3;
pub mod times;
