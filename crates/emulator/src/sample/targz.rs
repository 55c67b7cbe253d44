//! Builds gzip- and zstd-compressed tar archives in memory for the
//! PostgreSQL sample backups, with the `tar`, `flate2` and `zstd` crates,
//! and archives that are
//! corrupt at the source ([`corrupt_targz`]): what a backup damaged before
//! COS stored it looks like (COS's CRC is then of the corrupt bytes).

use std::io::{self, Read, Write};

use flate2::read::MultiGzDecoder;
use flate2::write::GzEncoder;
use flate2::Compression;

/// How [`corrupt_targz`] damages an archive.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Corruption {
    /// The gzip trailer's CRC-32 no longer matches the content (the deflate
    /// stream and the tar inside are intact).
    GzipCrc,
    /// The first tar header's name is changed without updating its
    /// checksum; the gzip framing around it is valid.
    TarHeader,
}

/// `archive` (a `.tar.gz`) damaged as `how` says, keeping its length.
pub fn corrupt_targz(archive: &[u8], how: Corruption) -> io::Result<Vec<u8>> {
    match how {
        Corruption::GzipCrc => {
            let mut bad = archive.to_vec();
            let n = bad.len();
            if n < 18 {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidInput,
                    "not a gzip file",
                ));
            }
            bad[n - 8] ^= 0x01;
            Ok(bad)
        }
        Corruption::TarHeader => {
            let mut tar = Vec::new();
            MultiGzDecoder::new(archive).read_to_end(&mut tar)?;
            let Some(first) = tar.first_mut() else {
                return Err(io::Error::new(io::ErrorKind::InvalidInput, "empty archive"));
            };
            *first ^= 0x01;
            let mut encoder = GzEncoder::new(Vec::new(), Compression::default());
            encoder.write_all(&tar)?;
            encoder.finish()
        }
    }
}

/// One member of an archive.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TarMember {
    /// A directory (the path without a trailing slash).
    Dir(String),
    /// A regular file with its content.
    File(String, Vec<u8>),
}

/// A `.tar.gz` holding `members` in order, every entry dated `mtime` (Unix seconds).
pub fn build_targz(members: &[TarMember], mtime: u64) -> io::Result<Vec<u8>> {
    let encoder = GzEncoder::new(Vec::new(), Compression::default());
    append_members(tar::Builder::new(encoder), members, mtime)?.finish()
}

/// A `.tar.zst` holding `members` in order, every entry dated `mtime`,
/// its frame carrying a content checksum (as `zstd` and `pg_basebackup`
/// write it).
pub fn build_tarzst(members: &[TarMember], mtime: u64) -> io::Result<Vec<u8>> {
    let mut encoder = zstd::stream::Encoder::new(Vec::new(), 3)?;
    encoder.include_checksum(true)?;
    append_members(tar::Builder::new(encoder), members, mtime)?.finish()
}

/// Write `members` and the end-of-archive blocks into `builder`; give back
/// the compressor, to be finished.
fn append_members<W: Write>(
    mut builder: tar::Builder<W>,
    members: &[TarMember],
    mtime: u64,
) -> io::Result<W> {
    for member in members {
        let mut header = tar::Header::new_gnu();
        header.set_mtime(mtime);
        header.set_uid(26);
        header.set_gid(26);
        match member {
            TarMember::Dir(path) => {
                header.set_entry_type(tar::EntryType::Directory);
                header.set_mode(0o700);
                header.set_size(0);
                builder.append_data(&mut header, format!("{path}/"), io::empty())?;
            }
            TarMember::File(path, data) => {
                header.set_entry_type(tar::EntryType::Regular);
                header.set_mode(0o600);
                header.set_size(data.len() as u64);
                builder.append_data(&mut header, path, data.as_slice())?;
            }
        }
    }
    builder.into_inner()
}

#[cfg(test)]
mod tests {
    use super::*;
    use flate2::read::GzDecoder;
    use std::io::Read;

    #[test]
    fn corruptions_keep_the_gzip_or_the_tar_readable_but_wrong() {
        let good = build_targz(&[TarMember::File("PG_VERSION".into(), b"16\n".to_vec())], 1)
            .expect("builds");
        let bad = corrupt_targz(&good, Corruption::GzipCrc).expect("corrupts");
        assert_eq!(bad.len(), good.len());
        let mut out = Vec::new();
        assert!(GzDecoder::new(bad.as_slice())
            .read_to_end(&mut out)
            .is_err());
        let bad = corrupt_targz(&good, Corruption::TarHeader).expect("corrupts");
        let mut tar = Vec::new();
        GzDecoder::new(bad.as_slice())
            .read_to_end(&mut tar)
            .expect("the gzip framing is valid");
        let mut archive = tar::Archive::new(tar.as_slice());
        let first = archive.entries().expect("entries").next().expect("one");
        assert!(first.is_err(), "the tar header checksum is wrong");
    }

    #[test]
    fn zstd_archive_round_trips() {
        let bytes = build_tarzst(
            &[TarMember::File("PG_VERSION".into(), b"16\n".to_vec())],
            1_700_000_000,
        )
        .expect("builds");
        assert_eq!(&bytes[..4], &[0x28, 0xb5, 0x2f, 0xfd], "zstd magic");
        assert_ne!(bytes[4] & 0x04, 0, "the frame has a content checksum");
        let tar = zstd::stream::decode_all(bytes.as_slice()).expect("decodes");
        let mut archive = tar::Archive::new(tar.as_slice());
        let names: Vec<String> = archive
            .entries()
            .expect("entries")
            .map(|e| {
                e.expect("entry")
                    .path()
                    .expect("path")
                    .to_string_lossy()
                    .into_owned()
            })
            .collect();
        assert_eq!(names, vec!["PG_VERSION".to_string()]);
    }

    #[test]
    fn archive_round_trips() {
        let bytes = build_targz(
            &[
                TarMember::File("PG_VERSION".into(), b"16\n".to_vec()),
                TarMember::Dir("base".into()),
                TarMember::File("base/1/1259".into(), vec![7u8; 8192]),
            ],
            1_700_000_000,
        )
        .expect("builds");
        assert_eq!(&bytes[..2], &[0x1f, 0x8b], "gzip magic");
        let mut archive = tar::Archive::new(GzDecoder::new(bytes.as_slice()));
        let mut seen = Vec::new();
        for entry in archive.entries().expect("entries") {
            let mut entry = entry.expect("entry");
            let path = entry.path().expect("path").to_string_lossy().into_owned();
            let mut data = Vec::new();
            entry.read_to_end(&mut data).expect("read");
            seen.push((path, data.len()));
        }
        assert_eq!(
            seen,
            vec![
                ("PG_VERSION".to_string(), 3),
                ("base/".to_string(), 0),
                ("base/1/1259".to_string(), 8192)
            ]
        );
    }
}
