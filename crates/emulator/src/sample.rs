//! Demo data: a Redis cluster instance (3 shards) with finished backups over
//! the last days plus one in progress, every shard a real RDB file; and a
//! PostgreSQL instance with finished base backups (real `.tar.gz` archives,
//! one `.tar.zst`),
//! log backups and one running base backup (one Redis backup and one base
//! backup were started by a user); a second PostgreSQL instance whose one
//! base backup is a `snapshot`, which tcbackup cannot fetch; and a
//! standalone Redis instance
//! whose two backups are encrypted (ciphertext-like files, one with its
//! `DecryptKey`, one whose key the API does not give out, as with KMS).
//! Contents are deterministic; times are relative to the emulator clock.
//! Also helpers that add large backups for benchmarks.

pub mod rdb;
pub mod targz;

use std::io::{self, BufWriter};
use std::path::Path;

use bytes::Bytes;
use chrono::{DateTime, Duration, FixedOffset, NaiveTime, TimeZone, Utc};
use tcbackup_signing::times::CHINA_STANDARD_TIME;

use self::rdb::{build_rdb, RdbEntry, RdbValue, RdbWriter};
use self::targz::{build_targz, build_tarzst, TarMember};
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
/// The sample Redis instance whose backups are encrypted (standalone: one
/// file per backup). Kept apart from [`SAMPLE_REDIS_INSTANCE`] so that
/// what is said about that one (four finished RDB backups) stays true.
pub const SAMPLE_REDIS_ENCRYPTED_INSTANCE: &str = "crs-enc8q2vd";
/// The sample PostgreSQL instance whose one base backup is a `snapshot`.
pub const SAMPLE_PG_SNAPSHOT_INSTANCE: &str = "postgres-snap9x2q";
/// `Remark` of the sample manual Redis backup.
pub const SAMPLE_MANUAL_REMARK: &str = "before the 6.2 to 7.0 upgrade";
/// Which of the finished sample Redis backups (0 the newest) is manual.
const REDIS_MANUAL_INDEX: usize = 1;
/// Which of the finished sample base backups (0 the newest) is manual.
const PG_MANUAL_INDEX: usize = 2;

/// `KmsKeyId` of the sample encrypted backup whose key the API withholds.
pub const SAMPLE_KMS_KEY_ID: &str = "kms-3f7c1a9e-emulated";

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
    /// The finished Redis backup a user started (`BackupType` `"0"`, with
    /// [`SAMPLE_MANUAL_REMARK`]); one of `redis_finished`.
    pub redis_manual: String,
    /// The PostgreSQL instance.
    pub pg_instance_id: String,
    /// Finished base backups, newest first.
    pub pg_base_finished: Vec<String>,
    /// The finished base backup a user started (`BackupMode` `manual`);
    /// one of `pg_base_finished`.
    pub pg_base_manual: String,
    /// The PostgreSQL instance whose one backup is a `snapshot`.
    pub pg_snapshot_instance_id: String,
    /// Its finished base backup with `BackupMethod` `snapshot`, which
    /// tcbackup lists but cannot fetch.
    pub pg_base_snapshot: String,
    /// The running base backup.
    pub pg_base_running: String,
    /// Finished log backups, newest first.
    pub pg_log_finished: Vec<String>,
    /// The Redis instance with encrypted backups.
    pub redis_encrypted_instance_id: String,
    /// Its finished encrypted backups, newest first: the newest comes with
    /// its `DecryptKey`, the older one with a `KmsKeyId` and no key.
    pub redis_encrypted: Vec<String>,
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
    CHINA_STANDARD_TIME
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

/// A base backup archive (`.tar.gz`): `PG_VERSION`, `backup_label`,
/// `global/pg_control`, a few relation files under `base/`, an empty `pg_wal/`.
pub fn sample_base_backup(seed: u64, start: DateTime<Utc>) -> io::Result<Vec<u8>> {
    build_targz(&base_backup_members(seed, start), mtime(start))
}

/// The same base backup as [`sample_base_backup`], as a `.tar.zst` (what
/// newer instances write).
pub fn sample_base_backup_zst(seed: u64, start: DateTime<Utc>) -> io::Result<Vec<u8>> {
    build_tarzst(&base_backup_members(seed, start), mtime(start))
}

fn mtime(start: DateTime<Utc>) -> u64 {
    start.timestamp().max(0) as u64
}

fn base_backup_members(seed: u64, start: DateTime<Utc>) -> Vec<TarMember> {
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
    vec![
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
    ]
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

/// How far behind `now` the newest finished backup of each daily series
/// lies at least, as a backup that just started would not be finished yet.
const FINISH_MARGIN_MINUTES: i64 = 30;

/// When each sample backup starts, worked out from `now` alone (no clock,
/// no I/O), so that its shape can be checked at any instant of the day.
///
/// The shape is the same whatever the time of day: four daily Redis
/// backups (03:00 UTC+8), four daily base backups (02:00 UTC+8), and eight
/// log backups six hours apart placed relative to the newest base backup,
/// not to the clock: one after the newest base, four between it and the
/// second-newest, three before that (all after the third-newest). Tests of
/// the log rule rely on logs on both sides of the second-newest base; an
/// earlier version placed the logs at fixed 6-hour marks, and between
/// 00:00 and 02:30 UTC+8 every log then finished after that base.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SampleTimes {
    /// Finished Redis backups, newest first.
    pub redis_finished: Vec<DateTime<Utc>>,
    /// The Redis backup in progress.
    pub redis_in_progress: DateTime<Utc>,
    /// Finished base backups, newest first.
    pub pg_base_finished: Vec<DateTime<Utc>>,
    /// The running base backup.
    pub pg_base_running: DateTime<Utc>,
    /// Finished log backups as (start, finish), newest first.
    pub pg_log_finished: Vec<(DateTime<Utc>, DateTime<Utc>)>,
}

impl SampleTimes {
    /// The sample's times as seen at `now`.
    pub fn at(now: DateTime<Utc>) -> SampleTimes {
        let settled = now - Duration::minutes(FINISH_MARGIN_MINUTES);
        let daily = |hour: u32| -> Vec<DateTime<Utc>> {
            let latest = latest_daily(settled, hour, 0);
            (0..4).map(|k| latest - Duration::days(k)).collect()
        };
        let pg_base_finished = daily(2);
        let newest_base = pg_base_finished[0];
        // The newest log starts 20 minutes after the newest base: at most
        // 10 minutes before `now`, and it finishes 20 s later.
        let pg_log_finished = (0..8)
            .map(|k| {
                let start = newest_base + Duration::minutes(20) - Duration::hours(6 * k);
                (start, start + Duration::seconds(20))
            })
            .collect();
        SampleTimes {
            redis_finished: daily(3),
            redis_in_progress: now - Duration::minutes(5),
            pg_base_finished,
            pg_base_running: now - Duration::minutes(2),
            pg_log_finished,
        }
    }
}

/// Add the demo instances and backups to `state`, placed relative to the
/// state's clock ([`SampleTimes::at`]).
pub fn load(state: &EmulatorState) -> Result<SampleInfo, StateError> {
    let now = state.clock().now();
    let times = SampleTimes::at(now);
    let mut ids = SplitMix::new(0x7463_6261_636b_7570);

    // ---- Redis: 4 finished daily backups, one in progress.
    state.add_redis_instance(
        RedisInstance::new(SAMPLE_REDIS_INSTANCE, SAMPLE_REGION, now).cluster(SAMPLE_REDIS_SHARDS),
    )?;
    let mut redis_finished = Vec::new();
    for (k, start) in (0u64..).zip(&times.redis_finished) {
        let remark = (redis_finished.len() == REDIS_MANUAL_INDEX).then_some(SAMPLE_MANUAL_REMARK);
        redis_finished.push(redis_backup(state, 5_832_225 + k, *start, false, remark)?);
    }
    let redis_in_progress = redis_backup(state, 5_832_300, times.redis_in_progress, true, None)?;

    // ---- PostgreSQL: 4 finished daily base backups, one running, and
    // log backups every 6 hours around them.
    state.add_pg_instance(PgInstance::new(SAMPLE_PG_INSTANCE, SAMPLE_REGION, now))?;
    let mut pg_base_finished = Vec::new();
    for (k, start) in (0u64..).zip(&times.pg_base_finished) {
        let start = *start;
        let id = uuid_like(&mut ids);
        // The second newest is a `.tar.zst`, as newer instances write.
        let (body, ext) = if k == 1 {
            (sample_base_backup_zst(100 + k, start), "tar.zst")
        } else {
            (sample_base_backup(100 + k, start), "tar.gz")
        };
        let body = body.map_err(io_to_state(&id))?;
        let manual = pg_base_finished.len() == PG_MANUAL_INDEX;
        let mode = if manual { "manual" } else { "automatic" };
        let spec = PgBackupSpec::finished(
            PgBackupKind::Base,
            id.clone(),
            start,
            format!("{mode}-{}.{ext}", compact(start)),
            ObjectBody::Bytes(Bytes::from(body)),
        );
        state.add_pg_backup(
            SAMPLE_PG_INSTANCE,
            if manual { spec.manual() } else { spec },
        )?;
        pg_base_finished.push(id);
    }
    let pg_base_manual = pg_base_finished
        .get(PG_MANUAL_INDEX)
        .cloned()
        .unwrap_or_default();

    let running_start = times.pg_base_running;
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
    let mut pg_log_finished = Vec::new();
    for (k, (start, finish)) in (0u64..).zip(&times.pg_log_finished) {
        let id = uuid_like(&mut ids);
        let segment = 0x40 - k;
        let body = sample_log_backup(300 + k, *start, segment).map_err(io_to_state(&id))?;
        let mut spec = PgBackupSpec::finished(
            PgBackupKind::Log,
            id.clone(),
            *start,
            format!("0000000100000000{segment:08X}.tar.gz"),
            ObjectBody::Bytes(Bytes::from(body)),
        );
        spec.finish = Some(*finish);
        state.add_pg_backup(SAMPLE_PG_INSTANCE, spec)?;
        pg_log_finished.push(id);
    }

    // ---- PostgreSQL with a snapshot base backup (BackupPlan's newer
    // method), which tcbackup lists but cannot fetch. Kept apart from the
    // main instance so that what is said about that one stays true.
    state.add_pg_instance(PgInstance::new(
        SAMPLE_PG_SNAPSHOT_INSTANCE,
        SAMPLE_REGION,
        now,
    ))?;
    let pg_base_snapshot = uuid_like(&mut ids);
    let snapshot_start = times.pg_base_finished[0];
    state.add_pg_backup(
        SAMPLE_PG_SNAPSHOT_INSTANCE,
        PgBackupSpec::finished(
            PgBackupKind::Base,
            pg_base_snapshot.clone(),
            snapshot_start,
            format!("snapshot-{}.snap", compact(snapshot_start)),
            ObjectBody::Bytes(Bytes::from_static(b"a disk snapshot, not an archive\n")),
        )
        .method("snapshot"),
    )?;

    // ---- Redis with encryption on: two finished encrypted backups.
    state.add_redis_instance(RedisInstance::new(
        SAMPLE_REDIS_ENCRYPTED_INSTANCE,
        SAMPLE_REGION,
        now,
    ))?;
    let mut redis_encrypted = Vec::new();
    for (k, start) in (0u64..).zip(times.redis_finished.iter().take(2)) {
        let number = ENCRYPTED_FIRST_NUMBER + k;
        let id = format!("165706342-{number}-{}", start.timestamp());
        let (key, kms) = if k == 0 {
            (sample_decrypt_key(number), String::new())
        } else {
            (String::new(), SAMPLE_KMS_KEY_ID.to_string())
        };
        let body = sample_encrypted_body(k);
        let spec = RedisBackupSpec::finished(id.clone(), *start)
            .encrypted(key, kms)
            .file(
                redis_file_name(number, 1),
                ObjectBody::Bytes(Bytes::from(body)),
            );
        state.add_redis_backup(SAMPLE_REDIS_ENCRYPTED_INSTANCE, spec)?;
        redis_encrypted.push(id);
    }

    Ok(SampleInfo {
        region: SAMPLE_REGION.to_string(),
        redis_instance_id: SAMPLE_REDIS_INSTANCE.to_string(),
        redis_manual: redis_finished
            .get(REDIS_MANUAL_INDEX)
            .cloned()
            .unwrap_or_default(),
        redis_finished,
        redis_in_progress,
        pg_instance_id: SAMPLE_PG_INSTANCE.to_string(),
        pg_base_manual,
        pg_snapshot_instance_id: SAMPLE_PG_SNAPSHOT_INSTANCE.to_string(),
        pg_base_snapshot,
        pg_base_finished,
        pg_base_running,
        pg_log_finished,
        redis_encrypted_instance_id: SAMPLE_REDIS_ENCRYPTED_INSTANCE.to_string(),
        redis_encrypted,
    })
}

/// Backup number of the newest sample encrypted backup (ids and names).
const ENCRYPTED_FIRST_NUMBER: u64 = 7_104_400;

/// The file of sample encrypted backup `k` (0 the newest) of
/// [`SAMPLE_REDIS_ENCRYPTED_INSTANCE`], exactly as COS serves it.
pub fn sample_encrypted_body(k: u64) -> Vec<u8> {
    let len = 48 * 1024 + usize::try_from(k).unwrap_or(0) * 4096;
    sample_ciphertext(ENCRYPTED_FIRST_NUMBER + k, len)
}

/// Bytes that look like an AES-256-CBC encrypted backup: a 16-byte IV and
/// whole 16-byte blocks of random-looking data, deterministic in `seed`
/// (no real cipher: tcbackup never decrypts, and the real layout is
/// undocumented). Never starts with the RDB magic.
pub fn sample_ciphertext(seed: u64, len: usize) -> Vec<u8> {
    let blocks = len.div_ceil(16).max(1);
    let mut bytes = SplitMix::new(seed ^ 0xC1F3_E7A1_0000_0000).bytes(16 + blocks * 16);
    if bytes.starts_with(b"REDIS") {
        bytes[0] ^= 0xFF;
    }
    bytes
}

/// A deterministic stand-in for a `DecryptKey`: 32 bytes as 64 hex digits.
pub fn sample_decrypt_key(seed: u64) -> String {
    let bytes = SplitMix::new(seed ^ 0x6B65_7900_0000_0000).bytes(32);
    bytes.iter().map(|b| format!("{b:02x}")).collect()
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
    manual_remark: Option<&str>,
) -> Result<String, StateError> {
    let id = format!("165706342-{number}-{}", start.timestamp());
    let mut spec = if in_progress {
        RedisBackupSpec::in_progress(id.clone(), start)
    } else {
        RedisBackupSpec::finished(id.clone(), start)
    };
    if let Some(remark) = manual_remark {
        spec = spec.manual(remark);
    }
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
/// not a tar) bytes to `instance_id`, for throughput benchmarks. Its name
/// ends in `.generated`, not `.tar.gz`: tcbackup checks the content of a
/// file named as an archive, and these bytes are none.
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
            format!("manual-{}.generated", compact(start)),
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

    /// 2026-12-03 00:00 UTC+8.
    fn midnight_china() -> DateTime<Utc> {
        DateTime::from_timestamp(1_796_227_200, 0).expect("valid")
    }

    /// The shape the demo and the end-to-end tests rely on holds at every
    /// instant of a day, checked every 30 minutes (and around the 02:00
    /// and 03:00 backups, where the newest of a series changes).
    #[test]
    fn the_sample_has_the_same_shape_at_every_time_of_day() {
        let day = midnight_china();
        let instants = (0..48).map(|k| day + Duration::minutes(30 * k)).chain(
            [119, 120, 149, 150, 151, 179, 180, 210, 211].map(|m| day + Duration::minutes(m)),
        );
        for now in instants {
            let t = SampleTimes::at(now);
            let at = now.with_timezone(&china()).format("%H:%M UTC+8");
            let margin = now - Duration::minutes(FINISH_MARGIN_MINUTES);
            // Daily series: four, a day apart, at their hour, none later
            // than the margin and the newest within a day of it.
            for (series, hour) in [(&t.redis_finished, 3), (&t.pg_base_finished, 2)] {
                assert_eq!(series.len(), 4, "{at}");
                assert!(
                    series[0] <= margin && series[0] > margin - Duration::days(1),
                    "{at}"
                );
                for pair in series.windows(2) {
                    assert_eq!(pair[0] - pair[1], Duration::days(1), "{at}");
                }
                let local = series[0].with_timezone(&china());
                assert_eq!(
                    local.format("%H:%M").to_string(),
                    format!("{hour:02}:00"),
                    "{at}"
                );
            }
            // Every log finished before now, newest first, six hours apart.
            assert_eq!(t.pg_log_finished.len(), 8, "{at}");
            assert!(t.pg_log_finished.iter().all(|(_, end)| *end < now), "{at}");
            for pair in t.pg_log_finished.windows(2) {
                assert_eq!(pair[0].0 - pair[1].0, Duration::hours(6), "{at}");
            }
            // Around the bases: 1 after the newest, 4 between it and the
            // second-newest, 3 before that, none before the third-newest.
            let bases = &t.pg_base_finished;
            let finished_before =
                |b: DateTime<Utc>| t.pg_log_finished.iter().filter(|(_, end)| *end < b).count();
            assert_eq!(finished_before(bases[0]), 7, "{at}");
            assert_eq!(finished_before(bases[1]), 3, "{at}");
            assert_eq!(finished_before(bases[2]), 0, "{at}");
            // The in-progress ones are newer than every finished one.
            assert!(t.redis_in_progress > t.redis_finished[0], "{at}");
            assert!(t.pg_base_running > t.pg_log_finished[0].1, "{at}");
            assert!(t.redis_in_progress < now && t.pg_base_running < now, "{at}");
        }
    }

    /// `load` places the backups where [`SampleTimes`] says, on the
    /// state's injected clock (here just after midnight UTC+8, the hour at
    /// which the old sample lost its shape).
    #[test]
    fn load_follows_the_injected_clock() {
        use crate::cos::CosStore;
        use tcbackup_signing::clock::ManualClock;
        let now = midnight_china() + Duration::minutes(40);
        let clock: std::sync::Arc<dyn tcbackup_signing::clock::Clock> =
            std::sync::Arc::new(ManualClock::fixed(now));
        let cos = CosStore::new(clock.clone(), "AKIDsample", "sample-key");
        let state = EmulatorState::new(cos, clock);
        let info = load(&state).expect("loads");
        let times = SampleTimes::at(now);
        let mut bases: Vec<_> = state
            .pg_backups(SAMPLE_PG_INSTANCE, PgBackupKind::Base)
            .expect("instance")
            .into_iter()
            .filter(|b| b.state == "finished")
            .map(|b| b.start)
            .collect();
        bases.sort_by(|a, b| b.cmp(a));
        assert_eq!(bases, times.pg_base_finished);
        // One manual backup of each service, and one snapshot base backup.
        let all_bases = state
            .pg_backups(SAMPLE_PG_INSTANCE, PgBackupKind::Base)
            .expect("instance");
        let manual: Vec<_> = all_bases.iter().filter(|b| b.mode == "manual").collect();
        assert_eq!(manual.len(), 1);
        assert_eq!(manual[0].id, info.pg_base_manual);
        assert!(manual[0].file.name.starts_with("manual-"));
        assert!(all_bases.iter().all(|b| b.method == "physical"));
        let snapshot = state
            .pg_backups(SAMPLE_PG_SNAPSHOT_INSTANCE, PgBackupKind::Base)
            .expect("instance");
        assert_eq!(snapshot.len(), 1);
        assert_eq!(snapshot[0].id, info.pg_base_snapshot);
        assert_eq!(snapshot[0].method, "snapshot");
        assert!(snapshot[0].finish.is_some_and(|f| f < now));
        let redis = state
            .redis_backups(SAMPLE_REDIS_INSTANCE)
            .expect("instance");
        let manual: Vec<_> = redis.iter().filter(|b| b.backup_type == "0").collect();
        assert_eq!(manual.len(), 1);
        assert_eq!(manual[0].backup_id, info.redis_manual);
        assert_eq!(manual[0].remark, SAMPLE_MANUAL_REMARK);
        assert_eq!(info.redis_finished[1], info.redis_manual);
        let mut logs: Vec<_> = state
            .pg_backups(SAMPLE_PG_INSTANCE, PgBackupKind::Log)
            .expect("instance")
            .into_iter()
            .map(|b| (b.start, b.finish.expect("finished")))
            .collect();
        logs.sort_by(|a, b| b.cmp(a));
        assert_eq!(logs, times.pg_log_finished);
        assert_eq!(info.redis_finished.len(), 4);
        assert_eq!(info.pg_log_finished.len(), 8);
        let encrypted = state
            .redis_backups(SAMPLE_REDIS_ENCRYPTED_INSTANCE)
            .expect("instance");
        assert_eq!(encrypted.len(), 2);
        assert!(encrypted.iter().all(|b| b.encrypted && b.files.len() == 1));
        let newest = encrypted
            .iter()
            .find(|b| b.backup_id == info.redis_encrypted[0])
            .expect("newest");
        assert_eq!(newest.decrypt_key.len(), 64);
        let kms = encrypted
            .iter()
            .find(|b| b.backup_id == info.redis_encrypted[1])
            .expect("older");
        assert!(kms.decrypt_key.is_empty());
        assert_eq!(kms.kms_key_id, SAMPLE_KMS_KEY_ID);
    }

    #[test]
    fn encrypted_samples_are_ciphertext_like_with_a_key() {
        let bytes = sample_ciphertext(1, 1000);
        assert_eq!(bytes.len(), 16 + 1008, "an IV and whole AES blocks");
        assert!(!bytes.starts_with(b"REDIS"));
        assert_eq!(bytes, sample_ciphertext(1, 1000), "deterministic");
        assert!(!rdb::footer_is_valid(&bytes));
        let key = sample_decrypt_key(1);
        assert_eq!(key.len(), 64);
        assert!(key.bytes().all(|b| b.is_ascii_hexdigit()));
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
