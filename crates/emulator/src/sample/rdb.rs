//! Writes real Redis RDB files (format version 9, as Redis 5 to 6.2 write
//! them): magic `REDIS0009`, aux fields, `SELECTDB`, `RESIZEDB`, string and
//! list keys with optional expiry, `EOF` (0xFF) and the 8-byte little-endian
//! CRC-64/Jones footer over everything before it. `redis-check-rdb` accepts
//! them.

use std::io::{self, Write};

use crc::{Crc, Digest, CRC_64_REDIS};

/// The checksum Redis puts in the RDB footer (CRC-64/Jones, reflected).
pub static RDB_CRC: Crc<u64> = Crc::<u64>::new(&CRC_64_REDIS);

const OP_AUX: u8 = 0xFA;
const OP_RESIZEDB: u8 = 0xFB;
const OP_EXPIRETIME_MS: u8 = 0xFC;
const OP_SELECTDB: u8 = 0xFE;
const OP_EOF: u8 = 0xFF;
const TYPE_STRING: u8 = 0;
const TYPE_LIST: u8 = 1;

/// A value of one key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RdbValue {
    /// A string.
    String(Vec<u8>),
    /// A list (written with the plain `RDB_TYPE_LIST` encoding).
    List(Vec<Vec<u8>>),
}

/// One key of the dump.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RdbEntry {
    /// The key.
    pub key: Vec<u8>,
    /// The value.
    pub value: RdbValue,
    /// Absolute expiry in Unix milliseconds.
    pub expire_ms: Option<u64>,
}

/// Streams an RDB file into `W`, keeping the running checksum.
pub struct RdbWriter<W: Write> {
    out: W,
    digest: Digest<'static, u64>,
    written: u64,
}

impl<W: Write> RdbWriter<W> {
    /// Start a dump: writes the magic and the aux fields.
    pub fn new(out: W, ctime: i64) -> io::Result<Self> {
        let mut w = Self {
            out,
            digest: RDB_CRC.digest(),
            written: 0,
        };
        w.raw(b"REDIS0009")?;
        w.aux_str("redis-ver", "6.2.14")?;
        w.aux_int("redis-bits", 64)?;
        w.aux_int("ctime", ctime)?;
        w.aux_int("used-mem", 1_048_576)?;
        w.aux_int("aof-preamble", 0)?;
        Ok(w)
    }

    fn raw(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.out.write_all(bytes)?;
        self.digest.update(bytes);
        self.written += bytes.len() as u64;
        Ok(())
    }

    fn length(&mut self, len: u64) -> io::Result<()> {
        if len < 1 << 6 {
            self.raw(&[len as u8])
        } else if len < 1 << 14 {
            self.raw(&[0x40 | (len >> 8) as u8, (len & 0xFF) as u8])
        } else if let Ok(len) = u32::try_from(len) {
            self.raw(&[0x80])?;
            self.raw(&len.to_be_bytes())
        } else {
            self.raw(&[0x81])?;
            self.raw(&len.to_be_bytes())
        }
    }

    fn string(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.length(bytes.len() as u64)?;
        self.raw(bytes)
    }

    /// An integer-encoded string, as Redis writes numeric aux values.
    fn int_string(&mut self, value: i64) -> io::Result<()> {
        if let Ok(v) = i8::try_from(value) {
            self.raw(&[0xC0])?;
            self.raw(&v.to_le_bytes())
        } else if let Ok(v) = i16::try_from(value) {
            self.raw(&[0xC1])?;
            self.raw(&v.to_le_bytes())
        } else if let Ok(v) = i32::try_from(value) {
            self.raw(&[0xC2])?;
            self.raw(&v.to_le_bytes())
        } else {
            self.string(value.to_string().as_bytes())
        }
    }

    fn aux_str(&mut self, key: &str, value: &str) -> io::Result<()> {
        self.raw(&[OP_AUX])?;
        self.string(key.as_bytes())?;
        self.string(value.as_bytes())
    }

    fn aux_int(&mut self, key: &str, value: i64) -> io::Result<()> {
        self.raw(&[OP_AUX])?;
        self.string(key.as_bytes())?;
        self.int_string(value)
    }

    /// Select database `db` and announce its size hints.
    pub fn select_db(&mut self, db: u64, keys: u64, expires: u64) -> io::Result<()> {
        self.raw(&[OP_SELECTDB])?;
        self.length(db)?;
        self.raw(&[OP_RESIZEDB])?;
        self.length(keys)?;
        self.length(expires)
    }

    /// Write one key.
    pub fn entry(&mut self, entry: &RdbEntry) -> io::Result<()> {
        if let Some(ms) = entry.expire_ms {
            self.raw(&[OP_EXPIRETIME_MS])?;
            self.raw(&ms.to_le_bytes())?;
        }
        match &entry.value {
            RdbValue::String(value) => {
                self.raw(&[TYPE_STRING])?;
                self.string(&entry.key)?;
                self.string(value)
            }
            RdbValue::List(items) => {
                self.raw(&[TYPE_LIST])?;
                self.string(&entry.key)?;
                self.length(items.len() as u64)?;
                items.iter().try_for_each(|item| self.string(item))
            }
        }
    }

    /// Bytes written so far.
    pub fn written(&self) -> u64 {
        self.written
    }

    /// Write `EOF` and the checksum footer; returns the writer and the total length.
    pub fn finish(mut self) -> io::Result<(W, u64)> {
        self.raw(&[OP_EOF])?;
        let crc = self.digest.finalize();
        self.out.write_all(&crc.to_le_bytes())?;
        self.out.flush()?;
        Ok((self.out, self.written + 8))
    }
}

/// A whole RDB file in memory with `entries` in database 0.
pub fn build_rdb(entries: &[RdbEntry], ctime: i64) -> Vec<u8> {
    // Writing into a Vec cannot fail; map the impossible error to an empty
    // file rather than panicking.
    let build = || -> io::Result<Vec<u8>> {
        let mut w = RdbWriter::new(Vec::new(), ctime)?;
        let expires = entries.iter().filter(|e| e.expire_ms.is_some()).count() as u64;
        w.select_db(0, entries.len() as u64, expires)?;
        for entry in entries {
            w.entry(entry)?;
        }
        Ok(w.finish()?.0)
    };
    build().unwrap_or_default()
}

/// Whether `bytes` looks like an RDB file whose footer checksum is right.
pub fn footer_is_valid(bytes: &[u8]) -> bool {
    let Some(body_len) = bytes.len().checked_sub(8) else {
        return false;
    };
    if !bytes.starts_with(b"REDIS") || body_len == 0 || bytes[body_len - 1] != OP_EOF {
        return false;
    }
    let mut footer = [0u8; 8];
    footer.copy_from_slice(&bytes[body_len..]);
    RDB_CRC.checksum(&bytes[..body_len]) == u64::from_le_bytes(footer)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crc_is_the_redis_one() {
        // Check value of CRC-64/Jones as Redis' crc64.c documents it.
        assert_eq!(RDB_CRC.checksum(b"123456789"), 0xe9c6_d914_c4b8_d9ca);
    }

    #[test]
    fn an_empty_dump_has_magic_eof_and_footer() {
        let bytes = build_rdb(&[], 1_700_000_000);
        assert!(bytes.starts_with(b"REDIS0009"));
        assert!(footer_is_valid(&bytes));
        let mut broken = bytes.clone();
        broken[10] ^= 1;
        assert!(!footer_is_valid(&broken));
    }

    #[test]
    fn lengths_use_all_three_encodings() {
        let entries = vec![
            RdbEntry {
                key: b"short".to_vec(),
                value: RdbValue::String(vec![b'a'; 10]),
                expire_ms: Some(4_102_444_800_000),
            },
            RdbEntry {
                key: b"medium".to_vec(),
                value: RdbValue::String(vec![b'b'; 300]),
                expire_ms: None,
            },
            RdbEntry {
                key: b"long".to_vec(),
                value: RdbValue::List(vec![vec![b'c'; 20_000], b"x".to_vec()]),
                expire_ms: None,
            },
        ];
        let bytes = build_rdb(&entries, 1_700_000_000);
        assert!(footer_is_valid(&bytes));
        // 300 → 0x41 0x2C; 20000 → 0x80 + big-endian u32.
        assert!(bytes.windows(2).any(|w| w == [0x41, 0x2C]));
        assert!(bytes.windows(5).any(|w| w == [0x80, 0, 0, 0x4E, 0x20]));
    }
}
