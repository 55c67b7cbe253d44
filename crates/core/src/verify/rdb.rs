//! Redis RDB structure check: the `REDIS` magic with a four-digit version,
//! the `0xFF` end-of-file opcode, and the trailing 8-byte little-endian
//! CRC-64/Jones footer over everything before it (RDB version 5 and later;
//! a zero footer means the server ran with `rdbchecksum no`).

use crc::{Crc, Table, CRC_64_REDIS};

/// CRC-64/Jones as Redis computes it (`crc64.c`), slice-by-16 tables built
/// at compile time.
static JONES: Crc<u64, Table<16>> = Crc::<u64, Table<16>>::new(&CRC_64_REDIS);

/// Header length: `REDIS` plus four version digits.
const HEADER_LEN: usize = 9;
/// Footer length: the CRC-64 in little-endian order.
const FOOTER_LEN: u64 = 8;
/// The opcode that ends the data section.
const OPCODE_EOF: u8 = 0xFF;
/// The first RDB version that carries a checksum footer.
const FIRST_CHECKSUMMED_VERSION: u16 = 5;

/// What is wrong with an RDB file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum RdbError {
    /// The file does not start with `REDIS` and four digits.
    #[error("not a redis rdb file (no REDIS magic with a version)")]
    BadMagic,
    /// The file is too short, or the byte before the footer is not the
    /// end-of-file opcode.
    #[error("rdb file is truncated ({size} bytes, no end-of-file marker where expected)")]
    Truncated {
        /// The file length.
        size: u64,
    },
    /// The footer does not match the content.
    #[error("rdb checksum mismatch: footer says {expected:#018x}, content gives {actual:#018x}")]
    ChecksumMismatch {
        /// The CRC stored in the footer.
        expected: u64,
        /// The CRC computed over the content.
        actual: u64,
    },
}

/// What a successful check found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RdbSummary {
    /// The RDB format version from the header.
    pub version: u16,
    /// The footer checksum, `None` when the version has none or the server
    /// disabled it (zero footer).
    pub checksum: Option<u64>,
}

/// Checks an RDB file fed in order, without holding it in memory. The total
/// length must be known up front so the footer can be told apart.
pub struct RdbChecker {
    total: u64,
    pos: u64,
    header: [u8; HEADER_LEN],
    /// The last byte before the footer.
    eof_marker: Option<u8>,
    footer: [u8; FOOTER_LEN as usize],
    digest: crc::Digest<'static, u64, Table<16>>,
}

impl std::fmt::Debug for RdbChecker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RdbChecker")
            .field("total", &self.total)
            .field("pos", &self.pos)
            .finish_non_exhaustive()
    }
}

impl RdbChecker {
    /// A checker for a file of `total` bytes.
    pub fn new(total: u64) -> Self {
        Self {
            total,
            pos: 0,
            header: [0; HEADER_LEN],
            eof_marker: None,
            footer: [0; FOOTER_LEN as usize],
            digest: JONES.digest(),
        }
    }

    /// Feed the next bytes of the file.
    pub fn update(&mut self, bytes: &[u8]) {
        let start = self.pos;
        let end = start + bytes.len() as u64;
        self.pos = end;
        // Header bytes.
        if start < HEADER_LEN as u64 {
            let upto = end.min(HEADER_LEN as u64);
            let src = &bytes[..(upto - start) as usize];
            self.header[start as usize..upto as usize].copy_from_slice(src);
        }
        // Everything before the footer goes into the CRC, unless the header
        // already says this is no RDB (ciphertext of an encrypted backup):
        // then the CRC cannot matter and is not worth a pass.
        let footer_start = self.total.saturating_sub(FOOTER_LEN);
        let no_rdb = end >= HEADER_LEN as u64 && parse_header(&self.header).is_err();
        if start < footer_start && !no_rdb {
            let upto = end.min(footer_start);
            self.digest.update(&bytes[..(upto - start) as usize]);
        }
        // The byte right before the footer.
        if let Some(marker_pos) = footer_start.checked_sub(1) {
            if (start..end).contains(&marker_pos) {
                self.eof_marker = Some(bytes[(marker_pos - start) as usize]);
            }
        }
        // Footer bytes.
        if end > footer_start {
            let from = start.max(footer_start);
            let src = &bytes[(from - start) as usize..];
            let dst = (from - footer_start) as usize;
            let n = src.len().min(self.footer.len().saturating_sub(dst));
            self.footer[dst..dst + n].copy_from_slice(&src[..n]);
        }
    }

    /// Check what was fed against the header and footer rules.
    pub fn finish(self) -> Result<RdbSummary, RdbError> {
        let size = self.total;
        if self.pos < HEADER_LEN as u64 {
            return Err(RdbError::BadMagic);
        }
        let version = parse_header(&self.header)?;
        if version < FIRST_CHECKSUMMED_VERSION {
            return Ok(RdbSummary {
                version,
                checksum: None,
            });
        }
        if size < HEADER_LEN as u64 + 1 + FOOTER_LEN || self.pos != size {
            return Err(RdbError::Truncated { size });
        }
        if self.eof_marker != Some(OPCODE_EOF) {
            return Err(RdbError::Truncated { size });
        }
        let expected = u64::from_le_bytes(self.footer);
        if expected == 0 {
            return Ok(RdbSummary {
                version,
                checksum: None,
            });
        }
        let actual = self.digest.finalize();
        if actual != expected {
            return Err(RdbError::ChecksumMismatch { expected, actual });
        }
        Ok(RdbSummary {
            version,
            checksum: Some(expected),
        })
    }
}

/// Parse `REDIS` + four ASCII digits into the version number.
fn parse_header(header: &[u8; HEADER_LEN]) -> Result<u16, RdbError> {
    if &header[..5] != b"REDIS" {
        return Err(RdbError::BadMagic);
    }
    header[5..]
        .iter()
        .try_fold(0u16, |acc, b| {
            b.is_ascii_digit().then(|| acc * 10 + u16::from(b - b'0'))
        })
        .ok_or(RdbError::BadMagic)
}

/// Check a whole RDB image held in memory.
pub fn check_bytes(bytes: &[u8]) -> Result<RdbSummary, RdbError> {
    let mut checker = RdbChecker::new(bytes.len() as u64);
    checker.update(bytes);
    checker.finish()
}

/// Append the 0xFF opcode and a valid CRC-64/Jones footer to an RDB body
/// (magic, version, aux fields, keys). Used by tests and sample data.
pub fn seal(mut body: Vec<u8>) -> Vec<u8> {
    body.push(OPCODE_EOF);
    let crc = JONES.checksum(&body);
    body.extend_from_slice(&crc.to_le_bytes());
    body
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A small RDB version 9 body: magic, one aux field, a select-db and one
    /// string key, as `redis-server` writes them.
    fn sample_body() -> Vec<u8> {
        let mut b = b"REDIS0009".to_vec();
        b.extend_from_slice(b"\xfa\x09redis-ver\x057.0.0");
        b.extend_from_slice(b"\xfe\x00\xfb\x01\x00");
        b.extend_from_slice(b"\x00\x03foo\x03bar");
        b
    }

    #[test]
    fn jones_check_value_matches_redis_crc64_c() {
        // redis/src/crc64.c self-test: crc64(0, "123456789", 9) == 0xe9c6d914c4b8d9ca.
        assert_eq!(JONES.checksum(b"123456789"), 0xe9c6_d914_c4b8_d9ca);
    }

    #[test]
    fn sealed_file_passes_in_any_split() {
        let file = seal(sample_body());
        let whole = check_bytes(&file).unwrap();
        assert_eq!(whole.version, 9);
        assert!(whole.checksum.is_some());
        for split in 1..file.len() {
            let mut c = RdbChecker::new(file.len() as u64);
            c.update(&file[..split]);
            c.update(&file[split..]);
            assert_eq!(c.finish().unwrap(), whole, "split at {split}");
        }
    }

    #[test]
    fn flipped_byte_is_a_checksum_mismatch() {
        let mut file = seal(sample_body());
        file[20] ^= 0x01;
        match check_bytes(&file) {
            Err(RdbError::ChecksumMismatch { expected, actual }) => assert_ne!(expected, actual),
            other => panic!("expected mismatch, got {other:?}"),
        }
    }

    #[test]
    fn zero_footer_means_checksum_disabled() {
        let mut file = sample_body();
        file.push(OPCODE_EOF);
        file.extend_from_slice(&[0; 8]);
        assert_eq!(
            check_bytes(&file).unwrap(),
            RdbSummary {
                version: 9,
                checksum: None
            }
        );
    }

    #[test]
    fn bad_magic_and_truncation() {
        assert_eq!(
            check_bytes(b"REDIX0009xxxxxxxxxxxxxx"),
            Err(RdbError::BadMagic)
        );
        assert_eq!(
            check_bytes(b"REDIS00a9xxxxxxxxxxxxxx"),
            Err(RdbError::BadMagic)
        );
        assert_eq!(check_bytes(b"REDIS"), Err(RdbError::BadMagic));
        let file = seal(sample_body());
        let cut = &file[..file.len() - 3];
        assert!(matches!(check_bytes(cut), Err(RdbError::Truncated { .. })));
    }

    #[test]
    fn old_versions_have_no_footer() {
        let mut file = b"REDIS0004".to_vec();
        file.push(OPCODE_EOF);
        assert_eq!(check_bytes(&file).unwrap().checksum, None);
    }
}
