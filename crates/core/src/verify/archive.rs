//! Streaming content check of a PostgreSQL backup archive: the compression
//! framing (each gzip member's header, deflate stream, CRC-32 and ISIZE;
//! each zstd frame, with its content checksum when it has one) and the tar
//! headers inside (header checksum, size, end-of-archive blocks).
//!
//! [`ArchiveChecker`] is fed the file's bytes in order, in pieces of any
//! size, by whoever is already reading them (the transfer's inline or
//! trailing hasher, or `verify_file`): the file is never read a second time
//! for it. Memory is bounded: one output buffer for the decompressor and one
//! 512-byte tar header (and libzstd's window, at most its default limit of
//! 128 MiB, for a zstd frame); tar entry data is skipped, not kept. The
//! first problem found is latched and later bytes are ignored.
//!
//! Which check applies is chosen from the file name
//! ([`ArchiveFormat::from_file_name`]): `.tar.gz`/`.tgz` and
//! `.tar.zst`/`.tzst` are checked; any other name is not, and
//! [`ContentCheck::NotChecked`] says so.

use flate2::{Crc, Decompress, FlushDecompress, Status};

/// Size of a tar block.
const BLOCK: usize = 512;
/// Decompressed bytes produced per `decompress` call.
const OUT_CHUNK: usize = 64 * 1024;

/// An archive format this module checks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ArchiveFormat {
    /// A tar archive compressed with gzip (one or more members).
    TarGz,
    /// A tar archive compressed with zstd (one or more frames).
    TarZst,
}

impl ArchiveFormat {
    /// The format a file name says, or `None` for a name this module does
    /// not check.
    pub fn from_file_name(name: &str) -> Option<Self> {
        let lower = name.to_ascii_lowercase();
        if lower.ends_with(".tar.gz") || lower.ends_with(".tgz") {
            Some(Self::TarGz)
        } else if lower.ends_with(".tar.zst") || lower.ends_with(".tzst") {
            Some(Self::TarZst)
        } else {
            None
        }
    }

    /// How the manifest names the format.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::TarGz => "tar.gz",
            Self::TarZst => "tar.zst",
        }
    }
}

/// The zstd check that a frame without a content checksum cannot have.
pub const ZSTD_CHECKSUM_CHECK: &str = "zstd frame checksums";

/// The checks that do not apply to a file whose name names no known
/// archive format, as the manifest records them.
pub const SKIPPED_UNKNOWN: &[&str] = &["compression framing", "tar headers"];

/// What the content check of one file found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ContentCheck {
    /// The name names no archive format: nothing was checked.
    NotChecked,
    /// The archive was checked.
    Archive(Result<ArchiveSummary, ArchiveError>),
}

impl ArchiveSummary {
    /// The checks the archive passed, as the manifest records them.
    pub fn passed(&self) -> Vec<&'static str> {
        match self.format {
            ArchiveFormat::TarGz => vec!["gzip CRC-32 and length", "tar headers"],
            ArchiveFormat::TarZst if self.without_checksum == 0 => {
                vec!["zstd framing", ZSTD_CHECKSUM_CHECK, "tar headers"]
            }
            ArchiveFormat::TarZst => vec!["zstd framing", "tar headers"],
        }
    }

    /// The checks that could not be made (a zstd frame with no checksum).
    pub fn skipped(&self) -> Vec<&'static str> {
        if self.without_checksum > 0 {
            vec![ZSTD_CHECKSUM_CHECK]
        } else {
            Vec::new()
        }
    }
}

/// A well-formed archive.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ArchiveSummary {
    /// Its format.
    pub format: ArchiveFormat,
    /// Compressed members (gzip members, zstd frames other than skippable
    /// ones).
    pub members: u32,
    /// zstd frames written without a content checksum (their content was
    /// decompressed, and so checked as far as the framing goes, but no
    /// checksum vouches for it).
    pub without_checksum: u32,
    /// Tar entries (headers, including long-name and pax headers).
    pub entries: u64,
    /// Decompressed bytes.
    pub uncompressed: u64,
}

/// What is wrong with an archive. Offsets into the compressed file are
/// "offset", into the decompressed tar stream "tar offset".
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ArchiveError {
    /// The file is empty.
    #[error("empty file, not a compressed archive")]
    Empty,
    /// A gzip member does not start with the gzip magic and deflate method.
    #[error("not a gzip member at offset {offset}")]
    GzipBadHeader {
        /// Where the member starts.
        offset: u64,
    },
    /// The deflate data of a gzip member is corrupt.
    #[error("corrupt deflate data in the gzip member starting at offset {member}")]
    GzipCorrupt {
        /// Where the member starts.
        member: u64,
    },
    /// A gzip member's trailer disagrees with its content's CRC-32.
    #[error("gzip CRC-32 mismatch in the member starting at offset {member}: trailer {expected:#010x}, content {actual:#010x}")]
    GzipCrcMismatch {
        /// Where the member starts.
        member: u64,
        /// The CRC-32 in the trailer.
        expected: u32,
        /// The CRC-32 of the decompressed content.
        actual: u32,
    },
    /// A gzip member's trailer disagrees with its content's length.
    #[error("gzip length mismatch in the member starting at offset {member}: trailer {expected}, content {actual} (mod 2^32)")]
    GzipLengthMismatch {
        /// Where the member starts.
        member: u64,
        /// ISIZE from the trailer.
        expected: u32,
        /// The decompressed length modulo 2^32.
        actual: u32,
    },
    /// The file ends inside a gzip member.
    #[error("gzip data is truncated: the file ends inside the member starting at offset {member}")]
    GzipTruncated {
        /// Where the last member starts.
        member: u64,
    },
    /// A zstd frame's content checksum disagrees with its content.
    #[error("zstd frame checksum mismatch in the frame starting at offset {frame}")]
    ZstdChecksumMismatch {
        /// Where the frame starts.
        frame: u64,
    },
    /// libzstd refused a frame.
    #[error("corrupt zstd data in the frame starting at offset {frame}: {why}")]
    ZstdCorrupt {
        /// Where the frame starts.
        frame: u64,
        /// libzstd's reason.
        why: &'static str,
    },
    /// The file ends inside a zstd frame.
    #[error("zstd data is truncated: the file ends inside the frame starting at offset {frame}")]
    ZstdTruncated {
        /// Where the last frame starts.
        frame: u64,
    },
    /// A tar header's checksum field disagrees with the header.
    #[error("tar header checksum mismatch at tar offset {offset}")]
    TarHeaderChecksum {
        /// Where the header starts in the decompressed stream.
        offset: u64,
    },
    /// A tar header's size field is not a number.
    #[error("tar header with an unreadable size field at tar offset {offset}")]
    TarBadSize {
        /// Where the header starts in the decompressed stream.
        offset: u64,
    },
    /// The tar stream ends before its two zero blocks.
    #[error("tar archive is truncated at tar offset {offset} (no end-of-archive blocks)")]
    TarTruncated {
        /// The length of the decompressed stream.
        offset: u64,
    },
}

/// Walks tar headers over the decompressed stream, keeping one header.
#[derive(Debug)]
struct TarWalker {
    /// Bytes of the decompressed stream seen.
    pos: u64,
    /// Entry data (rounded up to whole blocks) still to skip.
    skip: u64,
    header: [u8; BLOCK],
    filled: usize,
    /// Consecutive zero blocks seen where a header was expected.
    zero_blocks: u8,
    entries: u64,
}

impl TarWalker {
    fn new() -> Self {
        Self {
            pos: 0,
            skip: 0,
            header: [0; BLOCK],
            filled: 0,
            zero_blocks: 0,
            entries: 0,
        }
    }

    fn ended(&self) -> bool {
        self.zero_blocks >= 2
    }

    fn update(&mut self, mut bytes: &[u8]) -> Result<(), ArchiveError> {
        while !bytes.is_empty() {
            if self.ended() {
                // Writers pad the archive to a record size with zeros, and
                // tar readers stop at the end blocks whatever follows: what
                // comes after them is no part of the archive, and a backup
                // is not refused for it.
                self.pos += bytes.len() as u64;
                return Ok(());
            }
            if self.skip > 0 {
                let n = self.skip.min(bytes.len() as u64) as usize;
                self.skip -= n as u64;
                self.pos += n as u64;
                bytes = &bytes[n..];
                continue;
            }
            let n = (BLOCK - self.filled).min(bytes.len());
            self.header[self.filled..self.filled + n].copy_from_slice(&bytes[..n]);
            self.filled += n;
            self.pos += n as u64;
            bytes = &bytes[n..];
            if self.filled == BLOCK {
                self.filled = 0;
                self.header_done(self.pos - BLOCK as u64)?;
            }
        }
        Ok(())
    }

    fn header_done(&mut self, offset: u64) -> Result<(), ArchiveError> {
        let h = &self.header;
        if h.iter().all(|&b| b == 0) {
            self.zero_blocks += 1;
            return Ok(());
        }
        if self.zero_blocks > 0 {
            // A lone zero block inside the archive: GNU tar reads on.
            self.zero_blocks = 0;
        }
        let stored =
            parse_number(&h[148..156]).ok_or(ArchiveError::TarHeaderChecksum { offset })?;
        let unsigned: u64 = h
            .iter()
            .enumerate()
            .map(|(i, &b)| {
                if (148..156).contains(&i) {
                    32
                } else {
                    u64::from(b)
                }
            })
            .sum();
        // Some old writers summed signed bytes.
        let signed: i64 = h
            .iter()
            .enumerate()
            .map(|(i, &b)| {
                if (148..156).contains(&i) {
                    32
                } else {
                    i64::from(b as i8)
                }
            })
            .sum();
        if stored != unsigned && i64::try_from(stored).ok() != Some(signed) {
            return Err(ArchiveError::TarHeaderChecksum { offset });
        }
        let size = parse_number(&h[124..136]).ok_or(ArchiveError::TarBadSize { offset })?;
        // Links, directories and devices carry no data whatever the field says.
        let typeflag = h[156];
        let has_data = !matches!(typeflag, b'1' | b'2' | b'3' | b'4' | b'5' | b'6');
        self.skip = if has_data {
            size.div_ceil(BLOCK as u64)
                .checked_mul(BLOCK as u64)
                .ok_or(ArchiveError::TarBadSize { offset })?
        } else {
            0
        };
        self.entries += 1;
        Ok(())
    }

    fn finish(&self) -> Result<u64, ArchiveError> {
        if self.ended() {
            Ok(self.entries)
        } else {
            Err(ArchiveError::TarTruncated { offset: self.pos })
        }
    }
}

/// A tar numeric field: octal digits (space or NUL terminated, leading
/// spaces allowed) or GNU base-256 (high bit of the first byte set).
fn parse_number(field: &[u8]) -> Option<u64> {
    let first = *field.first()?;
    if first & 0x80 != 0 {
        if first & 0x40 != 0 {
            return None; // negative
        }
        let mut v: u64 = u64::from(first & 0x3f);
        for &b in &field[1..] {
            v = v.checked_mul(256)?.checked_add(u64::from(b))?;
        }
        return Some(v);
    }
    let trimmed = field
        .iter()
        .skip_while(|&&b| b == b' ')
        .take_while(|&&b| b != 0 && b != b' ');
    let mut v: u64 = 0;
    let mut digits = 0;
    for &b in trimmed {
        if !(b'0'..=b'7').contains(&b) {
            return None;
        }
        v = v.checked_mul(8)?.checked_add(u64::from(b - b'0'))?;
        digits += 1;
    }
    (digits > 0).then_some(v)
}

/// Where the gzip parser is within the current member.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum GzState {
    /// The fixed 10 bytes (`need` still to come).
    Fixed,
    /// FEXTRA's two length bytes.
    ExtraLen,
    /// FEXTRA's data.
    Extra(u32),
    /// FNAME, up to its NUL.
    Name,
    /// FCOMMENT, up to its NUL.
    Comment,
    /// FHCRC's two bytes.
    HeaderCrc,
    /// The deflate stream.
    Deflate,
    /// The 8-byte trailer.
    Trailer,
    /// Between members: the next byte starts one, or the file ends.
    Between,
}

/// The gzip framing: one member after another, each a header, a raw
/// deflate stream and a trailer with the CRC-32 and length of its content.
struct GzipFraming {
    /// Compressed bytes seen.
    pos: u64,
    state: GzState,
    /// Small fixed fields being gathered (header, extra length, trailer).
    field: [u8; 10],
    filled: usize,
    flags: u8,
    member_start: u64,
    members: u32,
    inflate: Decompress,
    crc: Crc,
}

const FHCRC: u8 = 0x02;
const FEXTRA: u8 = 0x04;
const FNAME: u8 = 0x08;
const FCOMMENT: u8 = 0x10;

impl GzipFraming {
    fn new() -> Self {
        Self {
            pos: 0,
            state: GzState::Fixed,
            field: [0; 10],
            filled: 0,
            flags: 0,
            member_start: 0,
            members: 0,
            inflate: Decompress::new(false),
            crc: Crc::new(),
        }
    }

    /// Gather `want` bytes into `field`; true once complete.
    fn gather(&mut self, bytes: &mut &[u8], want: usize) -> bool {
        let n = (want - self.filled).min(bytes.len());
        self.field[self.filled..self.filled + n].copy_from_slice(&bytes[..n]);
        self.filled += n;
        self.pos += n as u64;
        *bytes = &bytes[n..];
        if self.filled == want {
            self.filled = 0;
            true
        } else {
            false
        }
    }

    /// After the fixed header or an optional field: the next optional field.
    fn next_header_state(&mut self) {
        self.state = if self.flags & FNAME != 0 {
            self.flags &= !FNAME;
            GzState::Name
        } else if self.flags & FCOMMENT != 0 {
            self.flags &= !FCOMMENT;
            GzState::Comment
        } else if self.flags & FHCRC != 0 {
            self.flags &= !FHCRC;
            GzState::HeaderCrc
        } else {
            self.inflate.reset(false);
            self.crc.reset();
            GzState::Deflate
        };
    }

    fn feed(
        &mut self,
        mut bytes: &[u8],
        out: &mut [u8],
        sink: &mut Sink<'_>,
    ) -> Result<(), ArchiveError> {
        while !bytes.is_empty() {
            match self.state {
                GzState::Between => {
                    if bytes[0] != 0x1f {
                        return Err(ArchiveError::GzipBadHeader { offset: self.pos });
                    }
                    self.member_start = self.pos;
                    self.state = GzState::Fixed;
                }
                GzState::Fixed => {
                    if self.gather(&mut bytes, 10) {
                        let h = self.field;
                        if h[0] != 0x1f || h[1] != 0x8b || h[2] != 8 || h[3] & 0xe0 != 0 {
                            return Err(ArchiveError::GzipBadHeader {
                                offset: self.member_start,
                            });
                        }
                        self.flags = h[3];
                        if self.flags & FEXTRA != 0 {
                            self.state = GzState::ExtraLen;
                        } else {
                            self.next_header_state();
                        }
                    }
                }
                GzState::ExtraLen => {
                    if self.gather(&mut bytes, 2) {
                        let len = u32::from(u16::from_le_bytes([self.field[0], self.field[1]]));
                        if len == 0 {
                            self.next_header_state();
                        } else {
                            self.state = GzState::Extra(len);
                        }
                    }
                }
                GzState::Extra(left) => {
                    let n = (left as usize).min(bytes.len());
                    self.pos += n as u64;
                    bytes = &bytes[n..];
                    let left = left - n as u32;
                    if left == 0 {
                        self.next_header_state();
                    } else {
                        self.state = GzState::Extra(left);
                    }
                }
                GzState::Name | GzState::Comment => match bytes.iter().position(|&b| b == 0) {
                    Some(i) => {
                        self.pos += i as u64 + 1;
                        bytes = &bytes[i + 1..];
                        self.next_header_state();
                    }
                    None => {
                        self.pos += bytes.len() as u64;
                        bytes = &[];
                    }
                },
                GzState::HeaderCrc => {
                    if self.gather(&mut bytes, 2) {
                        self.next_header_state();
                    }
                }
                GzState::Deflate => {
                    let consumed = self.inflate_some(bytes, out, sink)?;
                    self.pos += consumed as u64;
                    bytes = &bytes[consumed..];
                }
                GzState::Trailer => {
                    if self.gather(&mut bytes, 8) {
                        let f = self.field;
                        let expected = u32::from_le_bytes([f[0], f[1], f[2], f[3]]);
                        let isize = u32::from_le_bytes([f[4], f[5], f[6], f[7]]);
                        let member = self.member_start;
                        if expected != self.crc.sum() {
                            return Err(ArchiveError::GzipCrcMismatch {
                                member,
                                expected,
                                actual: self.crc.sum(),
                            });
                        }
                        if isize != self.crc.amount() {
                            return Err(ArchiveError::GzipLengthMismatch {
                                member,
                                expected: isize,
                                actual: self.crc.amount(),
                            });
                        }
                        self.members += 1;
                        self.state = GzState::Between;
                    }
                }
            }
        }
        Ok(())
    }

    /// Run the inflater over `input` until it is consumed or the member's
    /// deflate stream ends; returns the input bytes consumed.
    fn inflate_some(
        &mut self,
        input: &[u8],
        out: &mut [u8],
        sink: &mut Sink<'_>,
    ) -> Result<usize, ArchiveError> {
        let member = self.member_start;
        let mut used = 0usize;
        loop {
            let (in_before, out_before) = (self.inflate.total_in(), self.inflate.total_out());
            let status = self
                .inflate
                .decompress(&input[used..], out, FlushDecompress::None)
                .map_err(|_| ArchiveError::GzipCorrupt { member })?;
            let took = (self.inflate.total_in() - in_before) as usize;
            let made = (self.inflate.total_out() - out_before) as usize;
            used += took;
            if made > 0 {
                self.crc.update(&out[..made]);
                sink(&out[..made])?;
            }
            match status {
                Status::StreamEnd => {
                    self.state = GzState::Trailer;
                    return Ok(used);
                }
                Status::Ok | Status::BufError => {
                    // Input used up and the output not filled (so nothing
                    // is pending: an empty call lands here too): wait for
                    // more input. A full output may have more behind it.
                    if used == input.len() && made < out.len() {
                        return Ok(used);
                    }
                    if took == 0 && made == 0 {
                        return Err(ArchiveError::GzipCorrupt { member });
                    }
                }
            }
        }
    }

    fn finish(&self) -> Result<(u32, u32), ArchiveError> {
        match self.state {
            GzState::Between => Ok((self.members, 0)),
            GzState::Fixed if self.pos == 0 => Err(ArchiveError::Empty),
            _ => Err(ArchiveError::GzipTruncated {
                member: self.member_start,
            }),
        }
    }
}

/// The zstd magic number, little-endian on disk.
const ZSTD_MAGIC: [u8; 4] = [0x28, 0xb5, 0x2f, 0xfd];
/// What libzstd calls a content checksum that does not match.
const ZSTD_CHECKSUM_WRONG: &str = "Restored data doesn't match checksum";

/// The zstd framing: frames one after another (skippable ones included),
/// each checked by libzstd against its content checksum when it has one.
struct ZstdFraming {
    dctx: zstd::zstd_safe::DCtx<'static>,
    /// Compressed bytes consumed.
    pos: u64,
    frame_start: u64,
    /// Bytes of the current frame consumed so far.
    frame_consumed: u64,
    /// The first five bytes of the current frame: magic and descriptor.
    head: [u8; 5],
    frames: u32,
    without_checksum: u32,
}

impl ZstdFraming {
    fn new() -> Self {
        Self {
            dctx: zstd::zstd_safe::DCtx::create(),
            pos: 0,
            frame_start: 0,
            frame_consumed: 0,
            head: [0; 5],
            frames: 0,
            without_checksum: 0,
        }
    }

    fn feed(
        &mut self,
        bytes: &[u8],
        out: &mut [u8],
        sink: &mut Sink<'_>,
    ) -> Result<(), ArchiveError> {
        use zstd::zstd_safe::{InBuffer, OutBuffer};
        let mut used = 0usize;
        loop {
            // Keep the frame's first bytes before libzstd takes them.
            let mut k = self.frame_consumed as usize;
            let mut i = used;
            while k < self.head.len() && i < bytes.len() {
                self.head[k] = bytes[i];
                k += 1;
                i += 1;
            }
            let frame = self.frame_start;
            let mut input = InBuffer::around(&bytes[used..]);
            let mut output = OutBuffer::around(&mut *out);
            let result = self.dctx.decompress_stream(&mut output, &mut input);
            let (took, made) = (input.pos(), output.pos());
            used += took;
            self.pos += took as u64;
            self.frame_consumed += took as u64;
            if made > 0 {
                sink(&out[..made])?;
            }
            match result {
                Err(code) => {
                    let why = zstd::zstd_safe::get_error_name(code);
                    return Err(if why == ZSTD_CHECKSUM_WRONG {
                        ArchiveError::ZstdChecksumMismatch { frame }
                    } else {
                        ArchiveError::ZstdCorrupt { frame, why }
                    });
                }
                Ok(0) => {
                    self.frame_done();
                    if used == bytes.len() {
                        return Ok(());
                    }
                }
                Ok(_) => {
                    if used == bytes.len() && made < out.len() {
                        return Ok(());
                    }
                    if took == 0 && made == 0 {
                        return Err(ArchiveError::ZstdCorrupt {
                            frame,
                            why: "no progress",
                        });
                    }
                }
            }
        }
    }

    fn frame_done(&mut self) {
        if self.head[..4] == ZSTD_MAGIC {
            self.frames += 1;
            // Frame_Header_Descriptor bit 2: Content_Checksum_flag.
            if self.head[4] & 0x04 == 0 {
                self.without_checksum += 1;
            }
        }
        self.frame_start = self.pos;
        self.frame_consumed = 0;
    }

    fn finish(&self) -> Result<(u32, u32), ArchiveError> {
        if self.pos == 0 {
            Err(ArchiveError::Empty)
        } else if self.frame_consumed > 0 {
            Err(ArchiveError::ZstdTruncated {
                frame: self.frame_start,
            })
        } else {
            Ok((self.frames, self.without_checksum))
        }
    }
}

/// Where decompressed bytes go: the tar walker.
type Sink<'a> = dyn FnMut(&[u8]) -> Result<(), ArchiveError> + 'a;

enum Framing {
    Gzip(GzipFraming),
    Zstd(ZstdFraming),
}

/// The streaming checker of one archive.
pub struct ArchiveChecker {
    format: ArchiveFormat,
    framing: Framing,
    out: Vec<u8>,
    tar: TarWalker,
    uncompressed: u64,
    error: Option<ArchiveError>,
}

impl std::fmt::Debug for ArchiveChecker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ArchiveChecker")
            .field("format", &self.format)
            .field("uncompressed", &self.uncompressed)
            .field("error", &self.error)
            .finish_non_exhaustive()
    }
}

impl ArchiveChecker {
    /// A checker for a file of `format`.
    pub fn new(format: ArchiveFormat) -> Self {
        let framing = match format {
            ArchiveFormat::TarGz => Framing::Gzip(GzipFraming::new()),
            ArchiveFormat::TarZst => Framing::Zstd(ZstdFraming::new()),
        };
        Self {
            format,
            framing,
            out: vec![0; OUT_CHUNK],
            tar: TarWalker::new(),
            uncompressed: 0,
            error: None,
        }
    }

    /// Feed the next bytes of the file.
    pub fn update(&mut self, bytes: &[u8]) {
        if self.error.is_some() {
            return;
        }
        let (tar, uncompressed) = (&mut self.tar, &mut self.uncompressed);
        let mut sink = |out: &[u8]| {
            *uncompressed += out.len() as u64;
            tar.update(out)
        };
        let result = match &mut self.framing {
            Framing::Gzip(g) => g.feed(bytes, &mut self.out, &mut sink),
            Framing::Zstd(z) => z.feed(bytes, &mut self.out, &mut sink),
        };
        if let Err(e) = result {
            self.error = Some(e);
        }
    }

    /// The verdict once the whole file was fed.
    pub fn finish(self) -> Result<ArchiveSummary, ArchiveError> {
        if let Some(e) = self.error {
            return Err(e);
        }
        let (members, without_checksum) = match &self.framing {
            Framing::Gzip(g) => g.finish()?,
            Framing::Zstd(z) => z.finish()?,
        };
        let entries = self.tar.finish()?;
        Ok(ArchiveSummary {
            format: self.format,
            members,
            without_checksum,
            entries,
            uncompressed: self.uncompressed,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn tar_bytes(files: &[(&str, usize)]) -> Vec<u8> {
        let mut builder = tar::Builder::new(Vec::new());
        for (name, len) in files {
            let data: Vec<u8> = (0..*len).map(|i| (i % 251) as u8).collect();
            let mut header = tar::Header::new_gnu();
            header.set_size(*len as u64);
            header.set_mode(0o600);
            header.set_cksum();
            builder.append_data(&mut header, name, &data[..]).unwrap();
        }
        builder.into_inner().unwrap()
    }

    fn gzip(bytes: &[u8]) -> Vec<u8> {
        let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        enc.write_all(bytes).unwrap();
        enc.finish().unwrap()
    }

    fn gzip_named(bytes: &[u8]) -> Vec<u8> {
        let mut enc = flate2::GzBuilder::new()
            .filename("base.tar")
            .comment("pg")
            .extra(vec![1, 2, 3])
            .write(Vec::new(), flate2::Compression::default());
        enc.write_all(bytes).unwrap();
        enc.finish().unwrap()
    }

    fn check(bytes: &[u8], piece: usize) -> Result<ArchiveSummary, ArchiveError> {
        let mut c = ArchiveChecker::new(ArchiveFormat::TarGz);
        for chunk in bytes.chunks(piece.max(1)) {
            c.update(chunk);
        }
        c.finish()
    }

    fn sample() -> Vec<u8> {
        tar_bytes(&[("PG_VERSION", 3), ("base/1/1259", 200_000), ("empty", 0)])
    }

    #[test]
    fn names_choose_the_format() {
        assert_eq!(
            ArchiveFormat::from_file_name("a_base.tar.gz"),
            Some(ArchiveFormat::TarGz)
        );
        assert_eq!(
            ArchiveFormat::from_file_name("A.TGZ"),
            Some(ArchiveFormat::TarGz)
        );
        assert_eq!(
            ArchiveFormat::from_file_name("x.tar.zst"),
            Some(ArchiveFormat::TarZst)
        );
        assert_eq!(ArchiveFormat::from_file_name("x.zst"), None);
        assert_eq!(ArchiveFormat::from_file_name("dump.rdb"), None);
    }

    #[test]
    fn good_archive_passes_in_any_pieces() {
        let tar = sample();
        let gz = gzip(&tar);
        for piece in [1, 7, 512, 4096, gz.len()] {
            let s = check(&gz, piece).unwrap();
            assert_eq!(s.members, 1);
            assert_eq!(s.entries, 3);
            assert_eq!(s.uncompressed, tar.len() as u64);
        }
        // Header with FEXTRA, FNAME and FCOMMENT.
        assert_eq!(check(&gzip_named(&tar), 3).unwrap().entries, 3);
    }

    #[test]
    fn concatenated_members_are_one_stream() {
        let tar = sample();
        let (a, b) = tar.split_at(1000);
        let mut gz = gzip(a);
        gz.extend(gzip_named(b));
        let s = check(&gz, 333).unwrap();
        assert_eq!(s.members, 2);
        assert_eq!(s.entries, 3);
    }

    #[test]
    fn crc_and_length_mismatches_are_named() {
        let gz = gzip(&sample());
        let n = gz.len();
        let mut bad = gz.clone();
        bad[n - 8] ^= 1;
        assert!(matches!(
            check(&bad, 4096),
            Err(ArchiveError::GzipCrcMismatch { member: 0, .. })
        ));
        let e = check(&bad, 4096).unwrap_err().to_string();
        assert!(e.contains("gzip CRC-32 mismatch"), "{e}");
        let mut bad = gz;
        bad[n - 1] ^= 1;
        assert!(matches!(
            check(&bad, 4096),
            Err(ArchiveError::GzipLengthMismatch { .. })
        ));
    }

    #[test]
    fn corrupt_deflate_or_header_fails() {
        let gz = gzip(&sample());
        let mut bad = gz.clone();
        bad[0] = 0x1e;
        assert_eq!(
            check(&bad, 100),
            Err(ArchiveError::GzipBadHeader { offset: 0 })
        );
        // Flip bits in the middle of the deflate data: either the deflate
        // stream or the CRC catches it, never a pass.
        let mut bad = gz;
        let mid = bad.len() / 2;
        bad[mid] ^= 0xff;
        bad[mid + 1] ^= 0x55;
        assert!(check(&bad, 100).is_err());
        assert_eq!(check(&[], 1), Err(ArchiveError::Empty));
    }

    #[test]
    fn truncation_is_caught_everywhere() {
        let gz = gzip(&sample());
        for cut in [5, 11, gz.len() / 2, gz.len() - 4, gz.len() - 1] {
            assert!(
                matches!(
                    check(&gz[..cut], 1000),
                    Err(ArchiveError::GzipTruncated { member: 0 })
                ),
                "cut at {cut}"
            );
        }
        // A whole gzip of a tar cut short: the tar walker notices.
        let tar = sample();
        let gz = gzip(&tar[..tar.len() - 1024]);
        assert!(matches!(
            check(&gz, 1000),
            Err(ArchiveError::TarTruncated { .. })
        ));
    }

    #[test]
    fn trailing_garbage_after_a_member_fails() {
        let mut gz = gzip(&sample());
        gz.extend_from_slice(b"junk");
        assert!(matches!(
            check(&gz, 1000),
            Err(ArchiveError::GzipBadHeader { .. })
        ));
    }

    #[test]
    fn tar_header_checksum_is_checked_with_its_offset() {
        let mut tar = sample();
        // The second header: after the first (512) and its 3 data bytes (512).
        tar[1024 + 10] ^= 0x01;
        let e = check(&gzip(&tar), 777).unwrap_err();
        assert_eq!(e, ArchiveError::TarHeaderChecksum { offset: 1024 });
        assert!(e.to_string().contains("tar header checksum"), "{e}");
        // A bad size field, with a checksum made to match.
        let mut tar = sample();
        tar[124..136].copy_from_slice(b"99999999999\0");
        let sum: u32 = tar[..512]
            .iter()
            .enumerate()
            .map(|(i, &b)| {
                if (148..156).contains(&i) {
                    32
                } else {
                    u32::from(b)
                }
            })
            .sum();
        tar[148..156].copy_from_slice(format!("{sum:06o}\0 ").as_bytes());
        assert_eq!(
            check(&gzip(&tar), 512),
            Err(ArchiveError::TarBadSize { offset: 0 })
        );
    }

    #[test]
    fn what_follows_the_end_blocks_is_not_read_but_one_zero_block_is_no_end() {
        let mut tar = sample();
        tar.extend_from_slice(&[0u8; 10240]);
        tar.extend_from_slice(&[7u8; 600]);
        assert_eq!(check(&gzip(&tar), 4096).unwrap().entries, 3);
        // A single zero block, then the stream ends: no end of archive.
        let mut tar = sample();
        tar.truncate(tar.len() - 1024);
        tar.extend_from_slice(&[0u8; 512]);
        let len = tar.len() as u64;
        assert_eq!(
            check(&gzip(&tar), 4096),
            Err(ArchiveError::TarTruncated { offset: len })
        );
        // The stream ends in the middle of an entry's data.
        let tar = sample();
        let cut = &tar[..2048 + 100];
        assert_eq!(
            check(&gzip(cut), 4096),
            Err(ArchiveError::TarTruncated { offset: 2148 })
        );
    }

    fn zstd(bytes: &[u8], checksum: bool) -> Vec<u8> {
        let mut enc = zstd::stream::Encoder::new(Vec::new(), 3).unwrap();
        enc.include_checksum(checksum).unwrap();
        enc.write_all(bytes).unwrap();
        enc.finish().unwrap()
    }

    fn check_zst(bytes: &[u8], piece: usize) -> Result<ArchiveSummary, ArchiveError> {
        let mut c = ArchiveChecker::new(ArchiveFormat::TarZst);
        for chunk in bytes.chunks(piece.max(1)) {
            c.update(chunk);
        }
        c.finish()
    }

    #[test]
    fn zstd_archive_passes_with_its_checksums_in_any_pieces() {
        let tar = sample();
        let zst = zstd(&tar, true);
        for piece in [1, 13, 4096, zst.len()] {
            let s = check_zst(&zst, piece).unwrap();
            assert_eq!((s.members, s.without_checksum, s.entries), (1, 0, 3));
            assert_eq!(s.uncompressed, tar.len() as u64);
            assert!(s.passed().contains(&ZSTD_CHECKSUM_CHECK));
            assert!(s.skipped().is_empty());
        }
        // Two frames, the second without a checksum: passes, says so.
        let (a, b) = tar.split_at(3000);
        let mut two = zstd(a, true);
        two.extend(zstd(b, false));
        let s = check_zst(&two, 1000).unwrap();
        assert_eq!((s.members, s.without_checksum, s.entries), (2, 1, 3));
        assert_eq!(s.skipped(), vec![ZSTD_CHECKSUM_CHECK]);
        assert!(!s.passed().contains(&ZSTD_CHECKSUM_CHECK));
    }

    #[test]
    fn zstd_corruption_and_truncation_fail() {
        let zst = zstd(&sample(), true);
        let n = zst.len();
        // The last four bytes are the frame's checksum.
        let mut bad = zst.clone();
        bad[n - 2] ^= 0x01;
        let e = check_zst(&bad, 4096).unwrap_err();
        assert_eq!(e, ArchiveError::ZstdChecksumMismatch { frame: 0 });
        assert!(
            e.to_string().contains("zstd frame checksum mismatch"),
            "{e}"
        );
        let mut bad = zst.clone();
        bad[0] ^= 0x01;
        assert!(matches!(
            check_zst(&bad, 4096),
            Err(ArchiveError::ZstdCorrupt { frame: 0, .. })
        ));
        for cut in [3, n / 2, n - 1] {
            assert_eq!(
                check_zst(&zst[..cut], 1000),
                Err(ArchiveError::ZstdTruncated { frame: 0 }),
                "cut at {cut}"
            );
        }
        assert_eq!(check_zst(&[], 1), Err(ArchiveError::Empty));
        // Valid zstd around a bad tar header.
        let mut tar = sample();
        tar[3] ^= 0x20;
        assert_eq!(
            check_zst(&zstd(&tar, true), 999),
            Err(ArchiveError::TarHeaderChecksum { offset: 0 })
        );
    }

    /// A decompressed stream that fills the output buffer exactly, fed
    /// whole or in pieces: nothing is left pending nor taken for corrupt.
    #[test]
    fn output_that_fills_the_buffer_exactly_passes() {
        let tar = tar_bytes(&[("x", 2 * OUT_CHUNK - BLOCK - 2 * BLOCK)]);
        assert_eq!(tar.len(), 2 * OUT_CHUNK);
        for piece in [1, 4096, usize::MAX] {
            assert_eq!(check(&gzip(&tar), piece).unwrap().entries, 1);
            assert_eq!(check_zst(&zstd(&tar, true), piece).unwrap().entries, 1);
        }
    }

    #[test]
    fn numbers_parse_octal_and_base256() {
        assert_eq!(parse_number(b"00000000012\0"), Some(10));
        assert_eq!(parse_number(b"     12 \0\0\0\0"), Some(10));
        assert_eq!(parse_number(b"0000008\0"), None);
        assert_eq!(parse_number(b"\0\0\0\0"), None);
        let mut big = [0u8; 12];
        big[0] = 0x80;
        big[11] = 1;
        big[10] = 1;
        assert_eq!(parse_number(&big), Some(257));
    }
}
