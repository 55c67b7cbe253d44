//! Demo data: a Redis cluster instance (3 shards) with finished backups over
//! the last days plus one in progress, every shard a real RDB file; and a
//! PostgreSQL instance with finished base backups (real `.tar.gz` archives),
//! log backups and one running base backup. Contents are deterministic;
//! times are relative to the emulator clock. Also helpers that add large
//! backups for benchmarks.

pub mod rdb;
pub mod targz;

use std::io::{self, BufWriter};
use std::path::Path;

use bytes::Bytes;
use chrono::{DateTime, Duration, FixedOffset, NaiveTime, TimeZone, Utc};

use self::rdb::{build_rdb, RdbEntry, RdbValue, RdbWriter};
use self::targz::{build_targz, TarMember};
use super::cos::ObjectBody;
use super::state::{
    EmulatorState, PgBackupKind, PgBackupSpec, PgInstance, RedisBackupSpec, RedisInstance,
    StateError,
};

/// Region of the sample instances.
pub const SAMPLE_REGION: &str = "ap-guangzhou";
/// The sample Redis cluster instance.
pub const SAMPLE_REDIS_INSTANCE: &str = "crs-4y9t57vt";
/// The sample PostgreSQL instance.
pub const SAMPLE_PG_INSTANCE: &str = "postgres-oamgybor";
/// Shards of the sample Redis instance.
pub const SAMPLE_REDIS_SHARDS: u32 = 3;

/// What [`load`] added, so tests can name it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SampleInfo {
    /// Region of both instances.
    pub region: String,
    /// The Redis instance.
    pub redis_instance_id: String,
    /// Finished Redis backups, newest first.
    pub redis_finished: Vec<String>,
    /// The Redis backup still in progress.
    pub redis_in_progress: String,
    /// The PostgreSQL instance.
    pub pg_instance_id: String,
    /// Finished base backups, newest first.
    pub pg_base_finished: Vec<String>,
    /// The running base backup.
    pub pg_base_running: String,
    /// Finished log backups, newest first.
    pub pg_log_finished: Vec<String>,
}

/// A small deterministic generator (SplitMix64) for sample contents.
#[derive(Debug, Clone)]
pub struct SplitMix(u64);

impl SplitMix {
    /// Seeded generator.
    pub fn new(seed: u64) -> Self {
        Self(seed)
    }

    /// Next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// `len` random bytes.
    pub fn bytes(&mut self, len: usize) -> Vec<u8> {
        let mut out = Vec::with_capacity(len + 8);
        while out.len() < len {
            out.extend_from_slice(&self.next_u64().to_le_bytes());
        }
        out.truncate(len);
        out
    }

    /// `len` printable characters (compress like real cache values).
    pub fn text(&mut self, len: usize) -> Vec<u8> {
        const WORDS: &[&str] = &[
            "user",
            "session",
            "cart",
            "item",
            "price",
            "token",
            "order",
            "status",
            "ok",
            "pending",
            "shipped",
            "guangzhou",
            "shanghai",
            "42",
            "2024",
            "true",
            "false",
        ];
        let mut out = Vec::with_capacity(len + 16);
        while out.len() < len {
            let word = WORDS[(self.next_u64() % WORDS.len() as u64) as usize];
            out.extend_from_slice(word.as_bytes());
            out.push(if self.next_u64().is_multiple_of(5) {
                b','
            } else {
                b' '
            });
        }
        out.truncate(len);
        out
    }
}

fn china() -> FixedOffset {
    match FixedOffset::east_opt(8 * 3600) {
        Some(offset) => offset,
        None => unreachable!("UTC+8 is a valid offset"),
    }
}

/// The latest instant at `hour`:`minute` UTC+8 that is not after `before`.
fn latest_daily(before: DateTime<Utc>, hour: u32, minute: u32) -> DateTime<Utc> {
    let local = before.with_timezone(&china());
    let Some(time) = NaiveTime::from_hms_opt(hour, minute, 0) else {
        return before;
    };
    let candidate = china()
        .from_local_datetime(&local.date_naive().and_time(time))
        .single()
        .map(|t| t.with_timezone(&Utc))
        .unwrap_or(before);
    if candidate > before {
        candidate - Duration::days(1)
    } else {
        candidate
    }
}

/// One shard's RDB: string keys with text values, a few lists, one key with an expiry.
pub fn sample_rdb(seed: u64, ctime: i64, shard: u32) -> Vec<u8> {
    let mut rng = SplitMix::new(seed);
    let mut entries = Vec::new();
    let strings = 150 + (rng.next_u64() % 100) as usize;
    for n in 0..strings {
        let len = 200 + (rng.next_u64() % 800) as usize;
        entries.push(RdbEntry {
            key: format!("shard{shard}:user:{n}").into_bytes(),
            value: RdbValue::String(rng.text(len)),
            expire_ms: None,
        });
    }
    for n in 0..5 {
        let items = (0..20 + n * 5).map(|_| rng.text(40)).collect();
        entries.push(RdbEntry {
            key: format!("shard{shard}:queue:{n}").into_bytes(),
            value: RdbValue::List(items),
            expire_ms: None,
        });
    }
    entries.push(RdbEntry {
        key: format!("shard{shard}:session:latest").into_bytes(),
        value: RdbValue::String(rng.bytes(64)),
        // Far in the future: still live whenever the file is loaded.
        expire_ms: Some(4_102_444_800_000),
    });
    build_rdb(&entries, ctime)
}

/// A base backup archive: `PG_VERSION`, `backup_label`, `global/pg_control`,
/// a few relation files under `base/`, an empty `pg_wal/`.
pub fn sample_base_backup(seed: u64, start: DateTime<Utc>) -> io::Result<Vec<u8>> {
    let mut rng = SplitMix::new(seed);
    let label_time = start
        .with_timezone(&china())
        .format("%Y-%m-%d %H:%M:%S CST");
    let segment = 3 + seed % 1000;
    let label = format!(
        "START WAL LOCATION: 0/{segment:X}000028 (file 0000000100000000{segment:08X})\n\
         CHECKPOINT LOCATION: 0/{segment:X}000060\nBACKUP METHOD: streamed\nBACKUP FROM: primary\n\
         START TIME: {label_time}\nLABEL: tcbackup emulator base backup\nSTART TIMELINE: 1\n"
    );
    // Relation pages: a header, rows of text, free space of zeros: partly compressible.
    let mut page_file = |pages: usize| {
        let mut out = Vec::with_capacity(pages * 8192);
        for _ in 0..pages {
            let mut page = vec![0u8; 8192];
            page[..24].copy_from_slice(&rng.bytes(24));
            let rows = rng.text(5000);
            page[8192 - rows.len()..].copy_from_slice(&rows);
            out.extend_from_slice(&page);
        }
        out
    };
    let members = vec![
        TarMember::File("backup_label".into(), label.into_bytes()),
        TarMember::File("PG_VERSION".into(), b"16\n".to_vec()),
        TarMember::File(
            "postgresql.auto.conf".into(),
            b"# Do not edit this file manually!\n".to_vec(),
        ),
        TarMember::Dir("global".into()),
        TarMember::File("global/pg_control".into(), page_file(1)),
        TarMember::Dir("base".into()),
        TarMember::Dir("base/1".into()),
        TarMember::File("base/1/PG_VERSION".into(), b"16\n".to_vec()),
        TarMember::File("base/1/1259".into(), page_file(4)),
        TarMember::Dir("base/16384".into()),
        TarMember::File("base/16384/PG_VERSION".into(), b"16\n".to_vec()),
        TarMember::File(
            "base/16384/16385".into(),
            page_file(24 + (seed % 8) as usize),
        ),
        TarMember::Dir("pg_wal".into()),
    ];
    build_targz(&members, start.timestamp().max(0) as u64)
}

/// A log backup archive holding one WAL-like segment (shortened to 64 KiB).
pub fn sample_log_backup(seed: u64, start: DateTime<Utc>, segment: u64) -> io::Result<Vec<u8>> {
    let mut rng = SplitMix::new(seed);
    const LEN: usize = 64 * 1024;
    let mut wal = Vec::with_capacity(LEN);
    while wal.len() < LEN {
        // XLOG page header magic of PostgreSQL 16 (0xD113), then records.
        wal.extend_from_slice(&[0x13, 0xD1, 0x02, 0x00]);
        wal.extend_from_slice(&rng.bytes(60));
        wal.extend_from_slice(&rng.text(8192 - 64));
    }
    wal.truncate(LEN);
    build_targz(
        &[TarMember::File(
            format!("pg_wal/0000000100000000{segment:08X}"),
            wal,
        )],
        start.timestamp().max(0) as u64,
    )
}

fn uuid_like(rng: &mut SplitMix) -> String {
    let high = u128::from(rng.next_u64());
    let low = u128::from(rng.next_u64());
    uuid::Uuid::from_u128((high << 64) | low).to_string()
}

fn compact(t: DateTime<Utc>) -> String {
    t.with_timezone(&china()).format("%Y%m%d%H%M%S").to_string()
}

fn io_to_state(key: &str) -> impl FnOnce(io::Error) -> StateError + '_ {
    move |source| StateError::Object {
        key: key.to_string(),
        source,
    }
}

/// Add the demo instances and backups to `state`.
pub fn load(state: &EmulatorState) -> Result<SampleInfo, StateError> {
    let now = state.clock().now();
    let mut ids = SplitMix::new(0x7463_6261_636b_7570);

    // ---- Redis: 4 finished daily backups at 03:00 UTC+8, one in progress.
    state.add_redis_instance(
        RedisInstance::new(SAMPLE_REDIS_INSTANCE, SAMPLE_REGION, now).cluster(SAMPLE_REDIS_SHARDS),
    )?;
    let latest = latest_daily(now - Duration::minutes(30), 3, 0);
    let mut redis_finished = Vec::new();
    for k in 0..4u32 {
        let start = latest - Duration::days(i64::from(k));
        let id = redis_backup(state, 5_832_225 + u64::from(k), start, false)?;
        redis_finished.push(id);
    }
    let redis_in_progress = redis_backup(state, 5_832_300, now - Duration::minutes(5), true)?;

    // ---- PostgreSQL: 4 finished daily base backups at 02:00 UTC+8, one
    // running, and 6-hourly log backups over the last two days.
    state.add_pg_instance(PgInstance::new(SAMPLE_PG_INSTANCE, SAMPLE_REGION, now))?;
    let latest = latest_daily(now - Duration::minutes(30), 2, 0);
    let mut pg_base_finished = Vec::new();
    for k in 0..4u32 {
        let start = latest - Duration::days(i64::from(k));
        let id = uuid_like(&mut ids);
        let body = sample_base_backup(100 + u64::from(k), start).map_err(io_to_state(&id))?;
        state.add_pg_backup(
            SAMPLE_PG_INSTANCE,
            PgBackupSpec::finished(
                PgBackupKind::Base,
                id.clone(),
                start,
                format!("automatic-{}.tar.gz", compact(start)),
                ObjectBody::Bytes(Bytes::from(body)),
            ),
        )?;
        pg_base_finished.push(id);
    }
    let running_start = now - Duration::minutes(2);
    let pg_base_running = uuid_like(&mut ids);
    let body = sample_base_backup(199, running_start).map_err(io_to_state(&pg_base_running))?;
    state.add_pg_backup(
        SAMPLE_PG_INSTANCE,
        PgBackupSpec::running(
            PgBackupKind::Base,
            pg_base_running.clone(),
            running_start,
            format!("automatic-{}.tar.gz", compact(running_start)),
            ObjectBody::Bytes(Bytes::from(body)),
        ),
    )?;
    let latest_log = latest_daily(now - Duration::minutes(30), 0, 0);
    let latest_log = (1..4)
        .rev()
        .map(|q| latest_log + Duration::hours(6 * q))
        .find(|t| *t <= now - Duration::minutes(30))
        .unwrap_or(latest_log);
    let mut pg_log_finished = Vec::new();
    for k in 0..8u64 {
        let start = latest_log - Duration::hours(6 * k as i64);
        let id = uuid_like(&mut ids);
        let segment = 0x40 - k;
        let body = sample_log_backup(300 + k, start, segment).map_err(io_to_state(&id))?;
        let mut spec = PgBackupSpec::finished(
            PgBackupKind::Log,
            id.clone(),
            start,
            format!("0000000100000000{segment:08X}.tar.gz"),
            ObjectBody::Bytes(Bytes::from(body)),
        );
        spec.finish = Some(start + Duration::seconds(20));
        state.add_pg_backup(SAMPLE_PG_INSTANCE, spec)?;
        pg_log_finished.push(id);
    }

    Ok(SampleInfo {
        region: SAMPLE_REGION.to_string(),
        redis_instance_id: SAMPLE_REDIS_INSTANCE.to_string(),
        redis_finished,
        redis_in_progress,
        pg_instance_id: SAMPLE_PG_INSTANCE.to_string(),
        pg_base_finished,
        pg_base_running,
        pg_log_finished,
    })
}

/// The shard file name the real service uses for shard `shard` (1-based).
pub fn redis_file_name(backup_number: u64, shard: u32) -> String {
    format!(
        "165706342-{backup_number}-redis-server-6.2.14-{}-ignore-{shard}-ignore.rdb",
        1_001_462 + u64::from(shard)
    )
}

fn redis_backup(
    state: &EmulatorState,
    number: u64,
    start: DateTime<Utc>,
    in_progress: bool,
) -> Result<String, StateError> {
    let id = format!("165706342-{number}-{}", start.timestamp());
    let mut spec = if in_progress {
        RedisBackupSpec::in_progress(id.clone(), start)
    } else {
        RedisBackupSpec::finished(id.clone(), start)
    };
    for shard in 1..=SAMPLE_REDIS_SHARDS {
        let body = sample_rdb(number * 16 + u64::from(shard), start.timestamp(), shard);
        spec = spec.file(
            redis_file_name(number, shard),
            ObjectBody::Bytes(Bytes::from(body)),
        );
    }
    state.add_redis_backup(SAMPLE_REDIS_INSTANCE, spec)?;
    Ok(id)
}

/// Add a finished PostgreSQL base backup of `len` generated (pseudo-random,
/// not a tar) bytes to `instance_id`, for throughput benchmarks.
pub fn add_generated_pg_base_backup(
    state: &EmulatorState,
    instance_id: &str,
    backup_id: &str,
    start: DateTime<Utc>,
    len: u64,
    seed: u64,
) -> Result<(), StateError> {
    state.add_pg_backup(
        instance_id,
        PgBackupSpec::finished(
            PgBackupKind::Base,
            backup_id,
            start,
            format!("manual-{}.tar.gz", compact(start)),
            ObjectBody::Generated { seed, len },
        ),
    )
}

/// Add a finished Redis backup with one generated object of `shard_len`
/// bytes per shard of the instance (pseudo-random: not a valid RDB; use
/// [`write_large_rdb`] and `ObjectBody::File` when the RDB check must pass).
pub fn add_generated_redis_backup(
    state: &EmulatorState,
    instance_id: &str,
    backup_id: &str,
    start: DateTime<Utc>,
    shard_len: u64,
    seed: u64,
) -> Result<(), StateError> {
    let shards = state
        .redis_instances()
        .into_iter()
        .find(|i| i.instance_id == instance_id)
        .map(|i| i.shard_count)
        .ok_or_else(|| StateError::UnknownInstance {
            instance_id: instance_id.to_string(),
        })?;
    let mut spec = RedisBackupSpec::finished(backup_id, start);
    for shard in 1..=shards {
        spec = spec.file(
            format!("{backup_id}-{shard}.rdb"),
            ObjectBody::Generated {
                seed: seed.wrapping_add(u64::from(shard)),
                len: shard_len,
            },
        );
    }
    state.add_redis_backup(instance_id, spec)
}

/// Write a valid RDB file of about `approx_len` bytes (at least the
/// header) to `path`, streaming; returns its exact length. For benchmarks
/// that need a large file the RDB check accepts. Blocking: call it from
/// `spawn_blocking` in async code.
pub fn write_large_rdb(path: &Path, approx_len: u64, seed: u64) -> io::Result<u64> {
    const VALUE_LEN: usize = 64 * 1024;
    let file = std::fs::File::create(path)?;
    let mut w = RdbWriter::new(BufWriter::new(file), 1_700_000_000)?;
    // Each entry costs the value, the key and a few length bytes.
    let per_entry = VALUE_LEN as u64 + 32;
    let keys = approx_len.saturating_sub(w.written()) / per_entry;
    w.select_db(0, keys, 0)?;
    let mut rng = SplitMix::new(seed);
    for n in 0..keys {
        w.entry(&RdbEntry {
            key: format!("bench:{n:016}").into_bytes(),
            value: RdbValue::String(rng.bytes(VALUE_LEN)),
            expire_ms: None,
        })?;
    }
    let (_, len) = w.finish()?;
    Ok(len)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    #[test]
    fn latest_daily_is_not_in_the_future() {
        // 2024-05-21 02:00 UTC+8.
        let now = DateTime::from_timestamp(1716228000, 0).expect("valid");
        let t = latest_daily(now, 3, 0);
        assert_eq!(t.timestamp(), 1716228000 - 23 * 3600);
        let t = latest_daily(now, 2, 0);
        assert_eq!(t, now);
    }

    #[test]
    fn sample_rdb_has_a_valid_footer() {
        let bytes = sample_rdb(7, 1_700_000_000, 1);
        assert!(rdb::footer_is_valid(&bytes));
        assert!(bytes.len() > 50_000, "{}", bytes.len());
        assert_eq!(bytes, sample_rdb(7, 1_700_000_000, 1), "deterministic");
    }

    #[test]
    fn base_backup_is_a_tar_gz_with_pg_files() {
        let start = DateTime::from_timestamp(1_700_000_000, 0).expect("valid");
        let bytes = sample_base_backup(1, start).expect("builds");
        let mut archive = tar::Archive::new(flate2::read::GzDecoder::new(bytes.as_slice()));
        let mut names = Vec::new();
        for entry in archive.entries().expect("entries") {
            let mut entry = entry.expect("entry");
            names.push(entry.path().expect("path").to_string_lossy().into_owned());
            let mut sink = Vec::new();
            entry.read_to_end(&mut sink).expect("read");
        }
        for expected in [
            "backup_label",
            "PG_VERSION",
            "global/pg_control",
            "base/1/1259",
        ] {
            assert!(
                names.iter().any(|n| n == expected),
                "{expected} in {names:?}"
            );
        }
    }

    #[test]
    fn large_rdb_streams_to_disk_with_a_valid_footer() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("big.rdb");
        let len = write_large_rdb(&path, 1 << 20, 3).expect("writes");
        let bytes = std::fs::read(&path).expect("reads");
        assert_eq!(bytes.len() as u64, len);
        assert!(len > 900_000 && len < 1_100_000, "{len}");
        assert!(rdb::footer_is_valid(&bytes));
    }
}
