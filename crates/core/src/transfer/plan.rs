//! How a file's download starts: resume from a sidecar that still matches
//! (same backup, name and size), or start over in one stream or in pieces;
//! and the part file opened for a pass, preallocated at full size.

use std::path::Path;

use super::ledger::ObjectId;
use super::sidecar::{self, PartialPaths, SegmentState};
use super::{FileJob, TransferConfig};
use crate::private_files::FileModes;

/// The most pieces a segmented file is cut into. Larger files get larger
/// pieces: the sidecar (one entry per piece, stored every
/// `checkpoint_bytes`) stays under about 100 KB, and a planned size can
/// never make the plan itself exhaust memory.
pub(super) const MAX_PIECES: u64 = 1024;

/// How a pass starts.
#[derive(Debug, Clone)]
pub(super) struct Plan {
    pub(super) segments: Vec<SegmentState>,
    pub(super) object: ObjectId,
    /// Truncate (and preallocate) the part file first.
    pub(super) fresh: bool,
    /// Bytes come from an earlier run.
    pub(super) from_disk: bool,
}

impl Plan {
    /// Start over: one segment, or pieces for a segmented download. The
    /// number of pieces is bounded by [`MAX_PIECES`] whatever the announced
    /// size (pieces grow instead), so the plan and its sidecar stay small
    /// even for an absurd size, which the free-space check then refuses.
    pub(super) fn fresh(size: u64, segmented: bool, config: &TransferConfig) -> Self {
        let pieces = if segmented {
            let by_size = size.div_ceil(config.piece_size.max(1)).min(MAX_PIECES);
            usize::try_from(by_size)
                .unwrap_or(usize::MAX)
                .max(config.segments)
                .min(MAX_PIECES as usize)
        } else {
            1
        };
        Self {
            segments: sidecar::split(size, pieces),
            object: ObjectId::default(),
            fresh: true,
            from_disk: false,
        }
    }

    pub(super) fn present(&self) -> u64 {
        sidecar::Sidecar::present(&self.segments)
    }
}

/// Whether a file of `size` bytes is fetched over several connections
/// (when the server honours ranges).
pub(super) fn segmentable(size: u64, config: &TransferConfig) -> bool {
    size >= config.segment_threshold && config.segments > 1
}

/// Decide how to start: resume from a matching sidecar or start over.
pub(super) fn plan_file(
    paths: &PartialPaths,
    job: &FileJob,
    config: &TransferConfig,
) -> std::io::Result<Plan> {
    paths.modes.create_dir_all(&job.partial_dir)?;
    let size = job.expected_size;
    let segmented = segmentable(size, config);
    let Some(state) = sidecar::load(&paths.sidecar)? else {
        return Ok(Plan::fresh(size, segmented, config));
    };
    if let Err(why) = state.check(&job.backup_id, &job.file_name, size) {
        tracing::info!(path = %paths.sidecar.display(), %why, "not resuming");
        return Ok(Plan::fresh(size, segmented, config));
    }
    let part_len = match std::fs::metadata(&paths.part) {
        Ok(m) => m.len(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Ok(Plan::fresh(size, segmented, config))
        }
        Err(e) => return Err(e),
    };
    let mut segments = state.trusted_segments(sidecar::boot_id());
    if let [only] = segments.as_mut_slice() {
        // A single stream's file length bounds what can be there.
        only.written = only.written.min(part_len);
        only.synced = only.synced.min(only.written);
    } else if part_len != size {
        return Ok(Plan::fresh(size, segmented, config));
    }
    let present = sidecar::Sidecar::present(&segments);
    Ok(Plan {
        segments,
        object: ObjectId {
            etag: state.etag,
            crc64: state.server_crc64,
        },
        fresh: false,
        from_disk: present > 0,
    })
}

/// Open the part file for a pass (with `modes`, never through a symbolic
/// link): truncate a fresh one, and give it its full size with the blocks
/// allocated up front. For a fresh plan the
/// caller has discarded the sidecar already.
pub(super) fn open_part(
    part: &Path,
    modes: FileModes,
    plan: &Plan,
    size: u64,
) -> std::io::Result<std::fs::File> {
    let f = modes.open(
        std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false),
        part,
    )?;
    if plan.fresh {
        f.set_len(0)?;
    }
    // Allocating now means no ENOSPC half-way, no fragmentation, and much
    // cheaper writes than delayed allocation page by page. Bytes past the
    // trusted offsets of a resumed file are simply overwritten. Where
    // fallocate is unsupported a sparse file does.
    if size > 0 {
        match fs4::fs_std::FileExt::allocate(&f, size) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::StorageFull => return Err(e),
            Err(_) => f.set_len(size)?,
        }
    }
    Ok(f)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_segmented_plan_stays_small_whatever_the_size() {
        let config = TransferConfig::default();
        for size in [1u64 << 60, u64::MAX, 150 << 30] {
            let plan = Plan::fresh(size, true, &config);
            assert!(plan.segments.len() as u64 <= MAX_PIECES, "{size}");
            assert!(sidecar::segments_tile(&plan.segments, size), "{size}");
        }
        // Below the cap, pieces keep their configured size.
        let plan = Plan::fresh(20 * config.piece_size, true, &config);
        assert_eq!(plan.segments.len(), 20);
        let plan = Plan::fresh(config.piece_size, true, &config);
        assert_eq!(plan.segments.len(), config.segments);
    }
}
