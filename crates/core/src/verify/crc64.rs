//! CRC-64/XZ, the checksum COS reports in `x-cos-hash-crc64ecma` (decimal),
//! computed with the SIMD `crc64fast` implementation, and parsing of that
//! header value.

/// The CRC-64/XZ check value: the checksum of ASCII `123456789`.
pub const CHECK: u64 = 0x995D_C9BB_DF19_39FA;

/// A running CRC-64/XZ (polynomial 0x42F0E1EBA9EA3693 reflected, init and
/// xorout all ones), identical to Go's `crc64.ECMA` table and COS's value.
#[derive(Clone, Default)]
pub struct Crc64 {
    inner: crc64fast::Digest,
}

impl Crc64 {
    /// A fresh checksum (of the empty input, which is 0).
    pub fn new() -> Self {
        Self::default()
    }

    /// Feed more bytes.
    pub fn update(&mut self, bytes: &[u8]) {
        self.inner.write(bytes);
    }

    /// The checksum of everything fed so far.
    pub fn value(&self) -> u64 {
        self.inner.sum64()
    }
}

impl std::fmt::Debug for Crc64 {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Crc64({})", self.value())
    }
}

/// The CRC-64/XZ of a whole buffer.
pub fn checksum(bytes: &[u8]) -> u64 {
    let mut crc = Crc64::new();
    crc.update(bytes);
    crc.value()
}

/// Parse the `x-cos-hash-crc64ecma` header: an unsigned 64-bit decimal
/// number, surrounding whitespace allowed. `None` for anything else, so a
/// garbled header is treated like an absent one rather than a mismatch.
pub fn parse_header(value: &str) -> Option<u64> {
    let trimmed = value.trim();
    if trimmed.is_empty() || !trimmed.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    trimmed.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crc::{Crc, CRC_64_XZ};

    #[test]
    fn check_value_matches_catalogue() {
        assert_eq!(checksum(b"123456789"), CHECK);
        assert_eq!(CHECK, 11_051_210_869_376_104_954);
        assert_eq!(checksum(b""), 0);
    }

    #[test]
    fn streaming_equals_whole_buffer_and_reference() {
        let data: Vec<u8> = (0..100_003u32)
            .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
            .collect();
        let reference = Crc::<u64>::new(&CRC_64_XZ).checksum(&data);
        assert_eq!(checksum(&data), reference);
        let mut crc = Crc64::new();
        for piece in data.chunks(4093) {
            crc.update(piece);
        }
        assert_eq!(crc.value(), reference);
    }

    #[test]
    fn header_parsing() {
        assert_eq!(
            parse_header("15060521397700495958"),
            Some(15_060_521_397_700_495_958)
        );
        assert_eq!(parse_header(" 0 "), Some(0));
        assert_eq!(parse_header("18446744073709551615"), Some(u64::MAX));
        assert_eq!(parse_header("18446744073709551616"), None);
        assert_eq!(parse_header("-1"), None);
        assert_eq!(parse_header("0x10"), None);
        assert_eq!(parse_header(""), None);
    }
}
