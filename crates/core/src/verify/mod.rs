//! Verification of a finished file: exact size, CRC-64/XZ against the value
//! COS announced, the Redis RDB header and footer, the content of a
//! PostgreSQL archive (gzip framing and tar headers, see [`archive`]), and
//! the SHA-256 that goes into the manifest.
//!
//! Everything here is synchronous and reads with large buffers; call it from
//! `tokio::task::spawn_blocking`. [`verify_with_digests`] reuses the digests
//! (and the archive or RDB check) the transfer computed while streaming, so
//! a file is not read again (only an RDB not named `*.rdb` is).

pub mod archive;
pub mod crc64;
pub mod digest;
pub mod rdb;

use std::fs::File;
use std::io::{ErrorKind, Read};
use std::path::{Path, PathBuf};

use archive::{ArchiveError, ContentCheck};
pub use digest::{Digests, FileDigest};
use rdb::{RdbChecker, RdbError};

/// What a file must satisfy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Expectations {
    /// The exact size in bytes the API announced.
    pub size: u64,
    /// The CRC-64/XZ COS announced in `x-cos-hash-crc64ecma`, when it did.
    pub server_crc64: Option<u64>,
    /// Whether the file is a Redis RDB dump (header and footer are checked).
    pub rdb: bool,
}

/// A file that passed every check, with the digests for its manifest entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Verified {
    /// Size in bytes.
    pub size: u64,
    /// SHA-256 of the content.
    pub sha256: [u8; 32],
    /// CRC-64/XZ of the content.
    pub crc64: u64,
    /// The archive content check: `NotChecked`, or a passed archive.
    pub content: ContentCheck,
}

impl From<Digests> for Verified {
    fn from(d: Digests) -> Self {
        Self {
            size: d.size,
            sha256: d.sha256,
            crc64: d.crc64,
            content: d.content,
        }
    }
}

impl Verified {
    /// The SHA-256 as lowercase hex.
    pub fn sha256_hex(&self) -> String {
        hex::encode(self.sha256)
    }
}

/// Why a file failed verification.
#[derive(Debug, thiserror::Error)]
pub enum VerifyError {
    /// The file is not the announced size.
    #[error("{}: size is {actual} bytes, expected {expected}", path.display())]
    SizeMismatch {
        /// The file.
        path: PathBuf,
        /// The announced size.
        expected: u64,
        /// The size on disk.
        actual: u64,
    },
    /// The content does not match the CRC-64 COS announced.
    #[error("{}: crc64 is {actual}, cos announced {expected}", path.display())]
    Crc64Mismatch {
        /// The file.
        path: PathBuf,
        /// The value from `x-cos-hash-crc64ecma`.
        expected: u64,
        /// The value computed over the content.
        actual: u64,
    },
    /// The file does not start with the RDB magic.
    #[error("{}: not a redis rdb file (no REDIS magic with a version)", path.display())]
    RdbBadMagic {
        /// The file.
        path: PathBuf,
    },
    /// The RDB file ends before its end-of-file marker and footer.
    #[error("{}: rdb file is truncated ({size} bytes)", path.display())]
    RdbTruncated {
        /// The file.
        path: PathBuf,
        /// Its size.
        size: u64,
    },
    /// The RDB footer does not match the content.
    #[error("{}: rdb checksum mismatch: footer {expected:#018x}, content {actual:#018x}", path.display())]
    RdbChecksumMismatch {
        /// The file.
        path: PathBuf,
        /// The CRC-64/Jones stored in the footer.
        expected: u64,
        /// The CRC-64/Jones of the content.
        actual: u64,
    },
    /// The file is a compressed tar archive whose content is corrupt.
    #[error("{}: corrupt archive: {source}", path.display())]
    Archive {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        #[source]
        source: ArchiveError,
    },
    /// Reading the file failed.
    #[error("cannot read {}: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
}

impl VerifyError {
    fn io(path: &Path, source: std::io::Error) -> Self {
        Self::Io {
            path: path.to_path_buf(),
            source,
        }
    }

    fn from_rdb(path: &Path, err: RdbError) -> Self {
        let path = path.to_path_buf();
        match err {
            RdbError::BadMagic => Self::RdbBadMagic { path },
            RdbError::Truncated { size } => Self::RdbTruncated { path, size },
            RdbError::ChecksumMismatch { expected, actual } => Self::RdbChecksumMismatch {
                path,
                expected,
                actual,
            },
        }
    }
}

/// Read `path` once and check it against `expect`, computing SHA-256 and
/// CRC-64/XZ and running the archive check its name calls for on the way.
/// Blocking.
pub fn verify_file(path: &Path, expect: &Expectations) -> Result<Verified, VerifyError> {
    let (mut file, actual) = open_sized(path, expect.size)?;
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy())
        .unwrap_or_default();
    let mut digest = FileDigest::for_file(&name, actual);
    if expect.rdb {
        digest = digest.with_rdb_check(actual);
    }
    read_all(&mut file, path, |chunk| digest.update(chunk))?;
    let digests = digest.finish();
    check_digests(path, &digests, expect)?;
    if let (true, Some(found)) = (expect.rdb, digests.rdb) {
        found.map_err(|e| VerifyError::from_rdb(path, e))?;
    }
    Ok(digests.into())
}

/// Check `path` against `expect` using digests already computed while the
/// file was written. The RDB check comes from the same bytes when the
/// digests carry it (a `*.rdb` name); only an RDB under another name is
/// read again. Blocking.
pub fn verify_with_digests(
    path: &Path,
    digests: &Digests,
    expect: &Expectations,
) -> Result<Verified, VerifyError> {
    let (mut file, actual) = open_sized(path, expect.size)?;
    check_digests(path, digests, expect)?;
    if expect.rdb {
        let found = match digests.rdb {
            Some(streamed) => streamed,
            None => {
                let mut rdb = RdbChecker::new(actual);
                read_all(&mut file, path, |chunk| rdb.update(chunk))?;
                rdb.finish()
            }
        };
        found.map_err(|e| VerifyError::from_rdb(path, e))?;
    }
    Ok((*digests).into())
}

/// Open the file and check its length before reading anything.
fn open_sized(path: &Path, expected: u64) -> Result<(File, u64), VerifyError> {
    let file = File::open(path).map_err(|e| VerifyError::io(path, e))?;
    let actual = file.metadata().map_err(|e| VerifyError::io(path, e))?.len();
    if actual != expected {
        return Err(VerifyError::SizeMismatch {
            path: path.to_path_buf(),
            expected,
            actual,
        });
    }
    Ok((file, actual))
}

fn check_digests(path: &Path, digests: &Digests, expect: &Expectations) -> Result<(), VerifyError> {
    if digests.size != expect.size {
        return Err(VerifyError::SizeMismatch {
            path: path.to_path_buf(),
            expected: expect.size,
            actual: digests.size,
        });
    }
    if let Some(expected) = expect.server_crc64 {
        if digests.crc64 != expected {
            return Err(VerifyError::Crc64Mismatch {
                path: path.to_path_buf(),
                expected,
                actual: digests.crc64,
            });
        }
    }
    if let ContentCheck::Archive(Err(source)) = digests.content {
        return Err(VerifyError::Archive {
            path: path.to_path_buf(),
            source,
        });
    }
    Ok(())
}

/// Feed the whole file to `sink` in [`digest::READ_CHUNK`] pieces.
fn read_all(file: &mut File, path: &Path, mut sink: impl FnMut(&[u8])) -> Result<(), VerifyError> {
    let mut buf = vec![0u8; digest::READ_CHUNK];
    loop {
        match file.read(&mut buf) {
            Ok(0) => return Ok(()),
            Ok(n) => sink(&buf[..n]),
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) => return Err(VerifyError::io(path, e)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(dir: &Path, name: &str, bytes: &[u8]) -> PathBuf {
        let p = dir.join(name);
        std::fs::write(&p, bytes).unwrap();
        p
    }

    fn rdb_file() -> Vec<u8> {
        let mut body = b"REDIS0011".to_vec();
        body.extend_from_slice(b"\xfa\x09redis-ver\x057.2.4\xfe\x00\xfb\x01\x00\x00\x01k\x01v");
        rdb::seal(body)
    }

    #[test]
    fn good_file_gives_digests() {
        let dir = tempfile::tempdir().unwrap();
        let data = b"123456789";
        let p = write(dir.path(), "a", data);
        let v = verify_file(
            &p,
            &Expectations {
                size: 9,
                server_crc64: Some(crc64::CHECK),
                rdb: false,
            },
        )
        .unwrap();
        assert_eq!(v.crc64, crc64::CHECK);
        assert_eq!(v.sha256_hex(), digest::sha256_hex(data));
    }

    #[test]
    fn size_and_crc_mismatch_name_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let p = write(dir.path(), "a", b"123456789");
        let err = verify_file(
            &p,
            &Expectations {
                size: 10,
                server_crc64: None,
                rdb: false,
            },
        )
        .unwrap_err();
        assert!(
            matches!(
                err,
                VerifyError::SizeMismatch {
                    expected: 10,
                    actual: 9,
                    ..
                }
            ),
            "{err}"
        );
        assert!(err.to_string().contains(&*p.to_string_lossy()));
        let err = verify_file(
            &p,
            &Expectations {
                size: 9,
                server_crc64: Some(1),
                rdb: false,
            },
        )
        .unwrap_err();
        assert!(
            matches!(
                err,
                VerifyError::Crc64Mismatch {
                    expected: 1,
                    actual: crc64::CHECK,
                    ..
                }
            ),
            "{err}"
        );
    }

    #[test]
    fn rdb_footer_is_checked_both_ways() {
        let dir = tempfile::tempdir().unwrap();
        let good = rdb_file();
        let size = good.len() as u64;
        let p = write(dir.path(), "ok.rdb", &good);
        let expect = Expectations {
            size,
            server_crc64: None,
            rdb: true,
        };
        let v = verify_file(&p, &expect).unwrap();
        let via_digests = verify_with_digests(
            &p,
            &Digests {
                size,
                sha256: v.sha256,
                crc64: v.crc64,
                content: ContentCheck::NotChecked,
                rdb: None,
            },
            &expect,
        )
        .unwrap();
        assert_eq!(v, via_digests);

        let mut bad = good.clone();
        bad[12] ^= 0x40;
        let p = write(dir.path(), "bad.rdb", &bad);
        assert!(matches!(
            verify_file(&p, &expect),
            Err(VerifyError::RdbChecksumMismatch { .. })
        ));
        let mut not_rdb = good;
        not_rdb[0] = b'X';
        let p = write(dir.path(), "x.rdb", &not_rdb);
        assert!(matches!(
            verify_file(&p, &expect),
            Err(VerifyError::RdbBadMagic { .. })
        ));
    }

    /// One pass over the bytes: the RDB check of a `*.rdb` file runs in the
    /// transfer's digest, and `verify_with_digests` takes its answer instead
    /// of reading the file again. Shown with a file on disk that is no RDB
    /// at all: only the streamed answer is used.
    #[test]
    fn the_rdb_check_streamed_with_the_digests_is_not_read_again() {
        let dir = tempfile::tempdir().unwrap();
        let good = rdb_file();
        let size = good.len() as u64;
        let expect = Expectations {
            size,
            server_crc64: None,
            rdb: true,
        };
        let p = write(dir.path(), "dump.rdb", &vec![0u8; good.len()]);

        let mut streamed = FileDigest::for_file("dump.rdb", size);
        assert!(streamed.checks_rdb());
        for piece in good.chunks(7) {
            streamed.update(piece);
        }
        let digests = streamed.finish();
        assert!(matches!(digests.rdb, Some(Ok(_))), "{:?}", digests.rdb);
        verify_with_digests(&p, &digests, &expect).expect("the streamed check stands");

        let mut bad = good.clone();
        bad[12] ^= 0x40;
        let mut streamed = FileDigest::for_file("dump.rdb", size);
        streamed.update(&bad);
        let digests = streamed.finish();
        assert!(matches!(
            verify_with_digests(&p, &digests, &expect),
            Err(VerifyError::RdbChecksumMismatch { .. })
        ));

        // Without a streamed answer (a name that is not `*.rdb`) the file
        // is read, and the zeros on disk are no RDB.
        let digests = Digests {
            rdb: None,
            ..digests
        };
        assert!(matches!(
            verify_with_digests(&p, &digests, &expect),
            Err(VerifyError::RdbBadMagic { .. })
        ));
        assert!(!FileDigest::for_file("dump.tar.gz", size).checks_rdb());
    }

    #[test]
    fn digests_that_disagree_with_expectations_fail_without_reading() {
        let dir = tempfile::tempdir().unwrap();
        let p = write(dir.path(), "a", b"123456789");
        let digests = Digests {
            size: 9,
            sha256: [0; 32],
            crc64: 5,
            content: ContentCheck::NotChecked,
            rdb: None,
        };
        let err = verify_with_digests(
            &p,
            &digests,
            &Expectations {
                size: 9,
                server_crc64: Some(6),
                rdb: false,
            },
        )
        .unwrap_err();
        assert!(matches!(
            err,
            VerifyError::Crc64Mismatch {
                expected: 6,
                actual: 5,
                ..
            }
        ));
    }

    fn targz(entries: usize) -> Vec<u8> {
        use std::io::Write;
        let mut builder = tar::Builder::new(Vec::new());
        for i in 0..entries {
            let mut header = tar::Header::new_gnu();
            header.set_size(600);
            header.set_cksum();
            builder
                .append_data(&mut header, format!("f{i}"), &[i as u8; 600][..])
                .unwrap();
        }
        let tar = builder.into_inner().unwrap();
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        gz.write_all(&tar).unwrap();
        gz.finish().unwrap()
    }

    #[test]
    fn archive_content_is_checked_by_name_in_the_same_read() {
        let dir = tempfile::tempdir().unwrap();
        let good = targz(3);
        let expect = Expectations {
            size: good.len() as u64,
            server_crc64: None,
            rdb: false,
        };
        let p = write(dir.path(), "base.tar.gz", &good);
        let v = verify_file(&p, &expect).unwrap();
        assert!(
            matches!(v.content, ContentCheck::Archive(Ok(s)) if s.entries == 3),
            "{v:?}"
        );
        // The same bytes under a name that says no archive: not checked.
        let p = write(dir.path(), "base.bin", &good);
        assert_eq!(
            verify_file(&p, &expect).unwrap().content,
            ContentCheck::NotChecked
        );
        // A corrupt gzip trailer: the error names the file and the problem.
        let mut bad = good;
        let n = bad.len();
        bad[n - 6] ^= 0x10;
        let p = write(dir.path(), "bad.tar.gz", &bad);
        let err = verify_file(&p, &expect).unwrap_err();
        assert!(matches!(err, VerifyError::Archive { .. }), "{err}");
        let text = err.to_string();
        assert!(
            text.contains("bad.tar.gz") && text.contains("gzip CRC-32 mismatch"),
            "{text}"
        );
        // Digests carried from the transfer with a failed check fail too.
        let mut digest = FileDigest::for_file("bad.tar.gz", bad.len() as u64);
        digest.update(&bad);
        let digests = digest.finish();
        let err = verify_with_digests(&p, &digests, &expect).unwrap_err();
        assert!(matches!(err, VerifyError::Archive { .. }), "{err}");
    }

    #[test]
    fn missing_file_is_io_error_with_path() {
        let err = verify_file(
            Path::new("/nonexistent/x"),
            &Expectations {
                size: 0,
                server_crc64: None,
                rdb: false,
            },
        )
        .unwrap_err();
        assert!(matches!(err, VerifyError::Io { .. }));
        assert!(err.to_string().contains("/nonexistent/x"));
    }
}
