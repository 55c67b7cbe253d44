//! The end-to-end harness: an in-process emulator on `127.0.0.1:0`, a
//! config file in a temporary directory that points tcbackup at it, the
//! real `tcbackup` binary run as a subprocess, and helpers that read what a
//! user would look at afterwards (exit code, stderr, the files on disk) and
//! what the emulator served.

#![allow(dead_code)]

pub mod fake_cos;
pub mod tmpfs;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use serde_json::Value;
use sha2::{Digest, Sha256};
use tcbackup_emulator::{
    sample, Emulator, EmulatorOptions, PgBackup, PgBackupKind, PgInstance, RedisBackup,
};

/// The sample Redis instance.
pub const REDIS: &str = sample::SAMPLE_REDIS_INSTANCE;
/// The sample PostgreSQL instance.
pub const PG: &str = sample::SAMPLE_PG_INSTANCE;
/// Their region.
pub const REGION: &str = sample::SAMPLE_REGION;

/// What goes into the config file; `Cfg::default()` is both sample instances
/// with `keep_last = 7`.
#[derive(Debug, Clone)]
pub struct Cfg {
    /// `[retention] keep_last`.
    pub keep_last: u32,
    /// `[[redis]]` instance ids.
    pub redis: Vec<String>,
    /// `[[postgres]]` instance ids.
    pub postgres: Vec<String>,
    /// The SecretId written into `[credentials]` (default: the emulator's).
    pub secret_id: Option<String>,
    /// The SecretKey written into `[credentials]` (default: the emulator's).
    pub secret_key: Option<String>,
    /// A temporary-credential token for `[credentials]`.
    pub token: Option<String>,
    /// Extra lines of the `[retention]` table (misspelt keys, more rules).
    pub retention_extra: Vec<String>,
}

impl Default for Cfg {
    fn default() -> Self {
        Self {
            keep_last: 7,
            redis: vec![REDIS.to_string()],
            postgres: vec![PG.to_string()],
            secret_id: None,
            secret_key: None,
            token: None,
            retention_extra: Vec::new(),
        }
    }
}

impl Cfg {
    /// Both sample instances with this `keep_last`.
    pub fn keep_last(keep_last: u32) -> Self {
        Self {
            keep_last,
            ..Self::default()
        }
    }

    /// Only the PostgreSQL sample instance.
    pub fn postgres_only(mut self) -> Self {
        self.redis.clear();
        self
    }
}

/// What one run of the binary did.
#[derive(Debug)]
pub struct Run {
    /// The exit code (`None` when killed by a signal).
    pub code: Option<i32>,
    /// Standard output.
    pub stdout: String,
    /// Standard error (logs and the summary).
    pub stderr: String,
}

impl Run {
    fn from_output(output: std::process::Output) -> Run {
        Run {
            code: output.status.code(),
            stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
        }
    }

    /// Panic with both streams unless the exit code is `code`.
    #[track_caller]
    pub fn assert_code(&self, code: i32) -> &Self {
        assert_eq!(
            self.code,
            Some(code),
            "exit code\n--- stdout ---\n{}\n--- stderr ---\n{}",
            self.stdout,
            self.stderr
        );
        self
    }
}

/// One emulator, one temporary directory, one config file.
pub struct Harness {
    /// The emulator (stopped when the harness drops).
    pub emulator: Emulator,
    /// Everything the test writes lies in here.
    pub tmp: tempfile::TempDir,
    /// `download_dir` of the config.
    pub download_dir: PathBuf,
    /// The config file.
    pub config_path: PathBuf,
    /// Runs the emulator's server; dropped last.
    runtime: tokio::runtime::Runtime,
}

impl Harness {
    /// An emulator with the demo data (3-shard Redis, PostgreSQL base and
    /// log backups) and a config with both instances, `keep_last = 7`.
    pub fn sample() -> Harness {
        let h = Harness::start(EmulatorOptions::new().sample(true));
        h.write_config(&Cfg::default());
        h
    }

    /// An emulator with only the sample PostgreSQL instance (no backups) and
    /// a config that names only it.
    pub fn empty_postgres() -> Harness {
        let h = Harness::start(EmulatorOptions::new());
        let now = h.emulator.clock().now();
        h.emulator
            .state()
            .add_pg_instance(PgInstance::new(PG, REGION, now))
            .unwrap();
        h.write_config(&Cfg::default().postgres_only());
        h
    }

    fn start(opts: EmulatorOptions) -> Harness {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        let emulator = runtime.block_on(Emulator::start(opts)).unwrap();
        let tmp = tempfile::tempdir().unwrap();
        // Nested, so that a name like `../../x.rdb` resolved against any
        // directory tcbackup uses would still land inside the temporary
        // directory, where the test can see it.
        let download_dir = tmp.path().join("var/lib/tcbackup");
        let config_path = tmp.path().join("tcbackup.toml");
        Harness {
            emulator,
            tmp,
            download_dir,
            config_path,
            runtime,
        }
    }

    /// The config text for `cfg`, pointing at this emulator.
    pub fn config_text(&self, cfg: &Cfg) -> String {
        let quote = |s: &str| toml::Value::String(s.to_string()).to_string();
        let key = cfg
            .secret_key
            .clone()
            .unwrap_or_else(|| self.emulator.secret_key().expose().to_string());
        let id = cfg
            .secret_id
            .clone()
            .unwrap_or_else(|| self.emulator.secret_id().to_string());
        let token = match &cfg.token {
            Some(token) => format!("token = {}\n", quote(token)),
            None => String::new(),
        };
        let mut text = format!(
            "download_dir = {}\n\n[api]\nendpoint = {}\nallow_http_downloads = true\nregion = {}\n\n\
             [credentials]\nsecret_id = {}\nsecret_key = {}\n{token}\n[retention]\nkeep_last = {}\n",
            quote(&self.download_dir.display().to_string()),
            quote(&self.emulator.endpoint()),
            quote(REGION),
            quote(&id),
            quote(&key),
            cfg.keep_last,
        );
        for line in &cfg.retention_extra {
            text.push_str(line);
            text.push('\n');
        }
        for id in &cfg.redis {
            text.push_str(&format!("\n[[redis]]\ninstance_id = {}\n", quote(id)));
        }
        for id in &cfg.postgres {
            text.push_str(&format!("\n[[postgres]]\ninstance_id = {}\n", quote(id)));
        }
        text
    }

    /// Write the config file for `cfg` (mode 600: it holds a key).
    pub fn write_config(&self, cfg: &Cfg) {
        self.write_config_text(&self.config_text(cfg));
    }

    /// Write `text` as the config file (mode 600).
    pub fn write_config_text(&self, text: &str) {
        use std::os::unix::fs::PermissionsExt;
        std::fs::write(&self.config_path, text).unwrap();
        std::fs::set_permissions(&self.config_path, std::fs::Permissions::from_mode(0o600))
            .unwrap();
    }

    /// The binary with `--config <file>` and a clean environment: no
    /// credentials from the environment, no profile file, no `RUST_LOG`.
    pub fn command(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_tcbackup"));
        cmd.arg("--config")
            .arg(&self.config_path)
            .args(args)
            .current_dir(self.tmp.path())
            .env("HOME", self.tmp.path())
            .env_remove("RUST_LOG")
            .env_remove("TENCENTCLOUD_SECRET_ID")
            .env_remove("TENCENTCLOUD_SECRET_KEY")
            .env_remove("TENCENTCLOUD_TOKEN")
            .env_remove("CREDENTIALS_DIRECTORY")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        cmd
    }

    /// Run the binary to the end.
    pub fn run(&self, args: &[&str]) -> Run {
        Run::from_output(self.command(args).output().unwrap())
    }

    /// `tcbackup --config FILE --now`.
    pub fn now(&self) -> Run {
        self.run(&["--now"])
    }

    /// Start the binary without waiting for it.
    pub fn spawn(&self, args: &[&str]) -> Child {
        self.command(args).spawn().unwrap()
    }

    /// Wait for a spawned binary to end.
    pub fn wait(&self, child: Child) -> Run {
        Run::from_output(child.wait_with_output().unwrap())
    }

    // ---- the emulator's side -------------------------------------------------

    /// The sample Redis instance's backups, in insertion order.
    pub fn redis_backups(&self) -> Vec<RedisBackup> {
        self.emulator.state().redis_backups(REDIS).unwrap()
    }

    /// The sample PostgreSQL instance's backups of `kind`.
    pub fn pg_backups(&self, kind: PgBackupKind) -> Vec<PgBackup> {
        self.emulator.state().pg_backups(PG, kind).unwrap()
    }

    /// Every COS key of every backup file the emulator holds.
    pub fn all_cos_keys(&self) -> Vec<String> {
        let mut keys = Vec::new();
        for instance in self.emulator.state().redis_instances() {
            for b in self
                .emulator
                .state()
                .redis_backups(&instance.instance_id)
                .unwrap()
            {
                keys.extend(b.files.iter().map(|f| f.cos_key.clone()));
            }
        }
        for instance in self.emulator.state().pg_instances() {
            for kind in [PgBackupKind::Base, PgBackupKind::Log] {
                for b in self
                    .emulator
                    .state()
                    .pg_backups(&instance.instance_id, kind)
                    .unwrap()
                {
                    keys.push(b.file.cos_key.clone());
                }
            }
        }
        keys
    }

    /// Body bytes COS served for `key` since the last stats reset.
    pub fn served(&self, key: &str) -> u64 {
        self.emulator.cos().stats(key).bytes_served
    }

    /// GET requests COS saw for `key` since the last stats reset.
    pub fn requests(&self, key: &str) -> u64 {
        self.emulator.cos().stats(key).requests
    }

    /// Body bytes COS served for every backup file.
    pub fn served_total(&self) -> u64 {
        self.all_cos_keys().iter().map(|k| self.served(k)).sum()
    }

    /// CRC-64/XZ of a COS object, as COS computes it.
    pub fn object_crc64(&self, key: &str) -> u64 {
        self.runtime
            .block_on(self.emulator.cos().crc64(key))
            .unwrap()
    }

    // ---- the disk ----------------------------------------------------------------

    /// `<download_dir>/<instance>`.
    pub fn instance_dir(&self, instance: &str) -> PathBuf {
        self.download_dir.join(instance)
    }

    /// Names of the visible set directories of `instance`, sorted.
    pub fn set_dirs(&self, instance: &str) -> BTreeSet<String> {
        entries(&self.instance_dir(instance))
            .into_iter()
            .filter(|n| !n.starts_with('.'))
            .collect()
    }

    /// Names of the hidden entries (staging, deleting) of `instance`.
    pub fn hidden_entries(&self, instance: &str) -> BTreeSet<String> {
        entries(&self.instance_dir(instance))
            .into_iter()
            .filter(|n| n.starts_with('.'))
            .collect()
    }

    /// Regular files under `<download_dir>/.partial/`, relative to it.
    pub fn partial_files(&self) -> Vec<PathBuf> {
        files_under(&self.download_dir.join(".partial"))
    }
}

/// The expected set directory name: `<UTC start>_<kind>_<backup id>`.
pub fn set_dir(start: DateTime<Utc>, kind: &str, backup_id: &str) -> String {
    format!("{}_{kind}_{backup_id}", start.format("%Y-%m-%dT%H%M%SZ"))
}

/// The directory names of `dir` (empty when it does not exist).
pub fn entries(dir: &Path) -> BTreeSet<String> {
    match std::fs::read_dir(dir) {
        Ok(rd) => rd
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => BTreeSet::new(),
        Err(e) => panic!("cannot list {}: {e}", dir.display()),
    }
}

/// Every regular file under `dir`, relative to it, sorted.
pub fn files_under(dir: &Path) -> Vec<PathBuf> {
    fn walk(root: &Path, dir: &Path, out: &mut Vec<PathBuf>) {
        let Ok(rd) = std::fs::read_dir(dir) else {
            return;
        };
        for entry in rd {
            let entry = entry.unwrap();
            let kind = entry.file_type().unwrap();
            if kind.is_dir() {
                walk(root, &entry.path(), out);
            } else {
                out.push(entry.path().strip_prefix(root).unwrap().to_path_buf());
            }
        }
    }
    let mut out = Vec::new();
    walk(dir, dir, &mut out);
    out.sort();
    out
}

/// SHA-256 of a file, lowercase hex.
pub fn sha256_file(path: &Path) -> String {
    hex::encode(Sha256::digest(std::fs::read(path).unwrap()))
}

/// CRC-64/XZ of a file.
pub fn crc64_file(path: &Path) -> u64 {
    let mut digest = crc64fast::Digest::new();
    digest.write(&std::fs::read(path).unwrap());
    digest.sum64()
}

/// Read `<set>/manifest.json`.
pub fn manifest(set: &Path) -> Value {
    serde_json::from_slice(&std::fs::read(set.join("manifest.json")).unwrap()).unwrap()
}

/// Check a published set as a user would: it holds exactly `files` plus
/// `manifest.json`, the manifest names the backup and lists every file
/// with the size and SHA-256 of the bytes on disk. `kind` is the name in
/// set directories and manifests (`redis`, `base`, `log`).
#[track_caller]
pub fn assert_published_set(set: &Path, kind: &str, backup_id: &str, files: &[String]) {
    let mut expected: BTreeSet<String> = files.iter().cloned().collect();
    expected.insert("manifest.json".to_string());
    assert_eq!(entries(set), expected, "files of {}", set.display());
    let m = manifest(set);
    assert_eq!(m["backup_id"], backup_id, "{}", set.display());
    assert_eq!(m["kind"], kind, "{}", set.display());
    let listed = m["files"].as_array().unwrap();
    assert_eq!(listed.len(), files.len(), "{}", set.display());
    for record in listed {
        let name = record["name"].as_str().unwrap();
        assert!(files.iter().any(|f| f == name), "{name} in {files:?}");
        let path = set.join(name);
        let size = std::fs::metadata(&path).unwrap().len();
        assert_eq!(record["size"].as_u64(), Some(size), "size of {name}");
        assert_eq!(
            record["sha256"].as_str(),
            Some(sha256_file(&path).as_str()),
            "sha256 of {name}"
        );
    }
}

/// Poll `condition` until it holds or `limit` passes; a bounded wait for a
/// condition on the file system (the binary is another process, so there
/// is no channel to wait on).
pub fn wait_for(limit: Duration, what: &str, mut condition: impl FnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while !condition() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// An instant with whole seconds (the APIs carry no fractions).
pub fn whole_seconds(t: DateTime<Utc>) -> DateTime<Utc> {
    DateTime::from_timestamp(t.timestamp(), 0).unwrap()
}

/// Bytes the sidecar at `sidecar` records as written (0 without one, or
/// while it cannot be read): the progress of a download whose part file is
/// preallocated at full size.
pub fn sidecar_recorded_bytes(sidecar: &Path) -> u64 {
    let Ok(bytes) = std::fs::read(sidecar) else {
        return 0;
    };
    let Ok(state) = serde_json::from_slice::<serde_json::Value>(&bytes) else {
        return 0;
    };
    state["segments"]
        .as_array()
        .map(|segments| {
            segments
                .iter()
                .map(|s| s["written"].as_u64().unwrap_or(0) - s["start"].as_u64().unwrap_or(0))
                .sum()
        })
        .unwrap_or(0)
}

/// Every occurrence of `param=` in `text` is followed by `REDACTED`.
#[track_caller]
pub fn assert_redacted(text: &str, param: &str) -> usize {
    let mut seen = 0;
    for (at, _) in text.match_indices(param) {
        let value = &text[at + param.len()..];
        assert!(
            value.starts_with("REDACTED"),
            "unredacted {param}: {}",
            &value[..value.len().min(40)]
        );
        seen += 1;
    }
    seen
}
