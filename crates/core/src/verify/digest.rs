//! Streaming digests of file contents: SHA-256 (for the manifest) together
//! with CRC-64/XZ (for the COS check), the byte count and, for a file whose
//! name says it is a compressed tar archive, the archive content check
//! ([`super::archive`]), or for one whose name ends in `.rdb` the RDB
//! structure check ([`super::rdb`]), fed once per byte.

use sha2::{Digest as _, Sha256};

use super::archive::{ArchiveChecker, ArchiveFormat, ContentCheck};
use super::crc64::Crc64;
use super::rdb::{RdbChecker, RdbError, RdbSummary};

/// Bytes read per `read` call when hashing a file: large enough that the
/// syscall cost disappears next to the hashing, small enough to stay in L2.
pub const READ_CHUNK: usize = 512 * 1024;

/// The digests of a complete file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Digests {
    /// Length in bytes.
    pub size: u64,
    /// SHA-256 of the content.
    pub sha256: [u8; 32],
    /// CRC-64/XZ of the content.
    pub crc64: u64,
    /// What the archive content check found.
    pub content: ContentCheck,
    /// What the RDB structure check found, when the file name called for
    /// one (`None`: not run on these bytes).
    pub rdb: Option<Result<RdbSummary, RdbError>>,
}

/// A running SHA-256.
#[derive(Clone, Default)]
pub struct Sha256Stream {
    inner: Sha256,
}

impl Sha256Stream {
    /// A fresh hash.
    pub fn new() -> Self {
        Self::default()
    }

    /// Feed more bytes.
    pub fn update(&mut self, bytes: &[u8]) {
        self.inner.update(bytes);
    }

    /// The digest of everything fed.
    pub fn finish(self) -> [u8; 32] {
        self.inner.finalize().into()
    }
}

/// SHA-256, CRC-64/XZ, length and the archive check, fed in file order.
#[derive(Default)]
pub struct FileDigest {
    sha256: Sha256Stream,
    crc64: Crc64,
    len: u64,
    archive: Option<Box<ArchiveChecker>>,
    rdb: Option<Box<RdbChecker>>,
}

impl std::fmt::Debug for FileDigest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FileDigest")
            .field("len", &self.len)
            .finish_non_exhaustive()
    }
}

impl FileDigest {
    /// A digest of the empty prefix, with no content check.
    pub fn new() -> Self {
        Self::default()
    }

    /// A digest of the empty prefix of the file named `file_name`, of
    /// `size` bytes in all, with the content check its name calls for, if
    /// any: the archive check, or the RDB structure check for `*.rdb` (the
    /// footer is found by the size).
    pub fn for_file(file_name: &str, size: u64) -> Self {
        let is_rdb = std::path::Path::new(file_name)
            .extension()
            .is_some_and(|e| e.eq_ignore_ascii_case("rdb"));
        Self {
            archive: ArchiveFormat::from_file_name(file_name)
                .map(|f| Box::new(ArchiveChecker::new(f))),
            rdb: is_rdb.then(|| Box::new(RdbChecker::new(size))),
            ..Self::default()
        }
    }

    /// Feed the next bytes of the file.
    pub fn update(&mut self, bytes: &[u8]) {
        self.sha256.update(bytes);
        self.crc64.update(bytes);
        self.len += bytes.len() as u64;
        if let Some(archive) = self.archive.as_mut() {
            archive.update(bytes);
        }
        if let Some(rdb) = self.rdb.as_mut() {
            rdb.update(bytes);
        }
    }

    /// Run the RDB structure check on these bytes whatever the file name
    /// (a file of `size` bytes the caller knows is an RDB).
    pub fn with_rdb_check(mut self, size: u64) -> Self {
        if self.rdb.is_none() {
            self.rdb = Some(Box::new(RdbChecker::new(size)));
        }
        self
    }

    /// Whether the RDB structure check runs on these bytes.
    pub fn checks_rdb(&self) -> bool {
        self.rdb.is_some()
    }

    /// How many bytes were fed.
    pub fn len(&self) -> u64 {
        self.len
    }

    /// Whether nothing was fed yet.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The finished digests.
    pub fn finish(self) -> Digests {
        Digests {
            size: self.len,
            crc64: self.crc64.value(),
            sha256: self.sha256.finish(),
            content: match self.archive {
                Some(archive) => ContentCheck::Archive(archive.finish()),
                None => ContentCheck::NotChecked,
            },
            rdb: self.rdb.map(|rdb| rdb.finish()),
        }
    }
}

/// SHA-256 of a buffer, as lowercase hex (for manifests and tests).
pub fn sha256_hex(bytes: &[u8]) -> String {
    let mut h = Sha256Stream::new();
    h.update(bytes);
    hex::encode(h.finish())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sha256_known_answer() {
        assert_eq!(
            sha256_hex(b"abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }

    #[test]
    fn file_digest_is_split_invariant() {
        let data: Vec<u8> = (0..70_001u32).map(|i| (i % 251) as u8).collect();
        let mut whole = FileDigest::new();
        whole.update(&data);
        let mut pieces = FileDigest::new();
        for piece in data.chunks(999) {
            pieces.update(piece);
        }
        let (a, b) = (whole.finish(), pieces.finish());
        assert_eq!(a, b);
        assert_eq!(a.size, 70_001);
        assert_eq!(a.crc64, crate::verify::crc64::checksum(&data));
        assert_eq!(hex::encode(a.sha256), sha256_hex(&data));
    }
}
