//! The fake COS object server: an object store with presigned-URL checking,
//! GET/HEAD with Range, conditional requests, the CRC-64 header, a
//! per-connection rate cap and switchable faults (`tencentcloud-api.md` §10.2).
//!
//! `CosStore` holds the objects, the fault switches and the statistics;
//! `router` serves them over HTTP. The API emulator merges this router with
//! its own (which owns `/` and `/latest/meta-data/…`) and mints URLs with
//! `CosStore::presign`.
//!
//! The intranet: `intranet_router` serves the same store on a listener of
//! its own, the host of `InnerDownloadUrl`s. A URL minted under an
//! intranet-only download policy is marked (`CosStore::restrict_to_intranet`)
//! and the public listener refuses it with 403 `AccessDenied`, as COS
//! refuses a download from outside Tencent's network (reference §10.1.8).

mod body;
mod faults;
mod generate;
mod handler;
mod stats;

use std::collections::{HashMap, HashSet};
use std::io;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};

use axum::routing::get;
use axum::Router;
use bytes::Bytes;
use chrono::{DateTime, Duration, SubsecRound, Utc};
use tokio::sync::{watch, OnceCell};

use tcbackup_signing::clock::Clock;
use tcbackup_signing::cos::{presign_url, Presign, UrlAuth};
use tcbackup_signing::secret::Secret;

pub use faults::{Fault, FaultId, FaultTarget, Repeat};
pub use generate::fill_generated;
pub use stats::{ObjectStats, RequestRecord};
pub use tcbackup_signing::cos::UrlShape;

/// The content of an object.
#[derive(Debug, Clone)]
pub enum ObjectBody {
    /// Bytes in memory.
    Bytes(Bytes),
    /// A file on disk, read in chunks on every request; its length is taken at `put`.
    File(PathBuf),
    /// `len` deterministic pseudo-random bytes from `seed` (see `fill_generated`),
    /// produced on the fly at any offset, so a GiB object costs no memory.
    Generated {
        /// Selects the byte sequence.
        seed: u64,
        /// Object length in bytes.
        len: u64,
    },
}

/// Per-object settings.
#[derive(Debug, Clone, Default)]
pub struct ObjectOptions {
    /// Behave like an object stored before COS kept CRC-64: no
    /// `x-cos-hash-crc64ecma` header.
    pub legacy_no_crc: bool,
}

/// Metadata of the current version of an object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectInfo {
    /// Length in bytes.
    pub len: u64,
    /// The ETag, with its quotes, as sent in the header.
    pub etag: String,
    /// Last-Modified (whole seconds).
    pub last_modified: DateTime<Utc>,
}

/// One immutable version of an object; a `put` replaces it with a new one.
#[derive(Debug)]
pub(crate) struct Version {
    pub(crate) body: ObjectBody,
    pub(crate) len: u64,
    pub(crate) etag: String,
    pub(crate) last_modified: DateTime<Utc>,
    pub(crate) opts: ObjectOptions,
    crc: OnceCell<u64>,
}

impl Version {
    /// CRC-64/XZ of the whole object, computed once (off the runtime) on first use.
    pub(crate) async fn crc64(&self) -> io::Result<u64> {
        self.crc
            .get_or_try_init(|| {
                let body = self.body.clone();
                let len = self.len;
                async move {
                    tokio::task::spawn_blocking(move || crc64_of(&body, len))
                        .await
                        .map_err(io::Error::other)?
                }
            })
            .await
            .copied()
    }

    fn info(&self) -> ObjectInfo {
        ObjectInfo {
            len: self.len,
            etag: self.etag.clone(),
            last_modified: self.last_modified,
        }
    }
}

/// A GET of `key` with `host` signed and no extra parameters, as the SDKs
/// presign; the caller fills in the key id and the validity window.
fn get_request<'a>(base_url: &'a str, key: &'a str, shape: UrlShape) -> Presign<'a> {
    Presign {
        method: "GET",
        base_url,
        key,
        secret_id: "",
        start: 0,
        end: 0,
        params: &[],
        sign_host: true,
        shape,
    }
}

/// CRC-64/XZ (the `x-cos-hash-crc64ecma` variant) of an object body, streaming.
fn crc64_of(body: &ObjectBody, len: u64) -> io::Result<u64> {
    let mut digest = crc64fast::Digest::new();
    match body {
        ObjectBody::Bytes(b) => digest.write(b),
        ObjectBody::File(path) => {
            use std::io::Read;
            let mut file = std::fs::File::open(path)?.take(len);
            let mut buf = vec![0u8; 1 << 20];
            loop {
                let n = file.read(&mut buf)?;
                if n == 0 {
                    break;
                }
                digest.write(&buf[..n]);
            }
        }
        ObjectBody::Generated { seed, .. } => {
            let mut buf = vec![0u8; 1 << 20];
            let mut pos = 0u64;
            while pos < len {
                let n = (len - pos).min(buf.len() as u64) as usize;
                fill_generated(*seed, pos, &mut buf[..n]);
                digest.write(&buf[..n]);
                pos += n as u64;
            }
        }
    }
    Ok(digest.sum64())
}

/// A temporary key (STS style): URLs signed with it must carry its token.
#[derive(Debug, Clone)]
pub(crate) struct TemporaryKey {
    pub(crate) secret_key: Secret,
    pub(crate) token: Secret,
    /// Unix second after which the token is refused.
    pub(crate) expires: i64,
}

/// The fake COS bucket: objects, credentials, faults, rate cap and statistics.
#[derive(Debug)]
pub struct CosStore {
    clock: Arc<dyn Clock>,
    secret_id: String,
    secret_key: Secret,
    temporary: Mutex<HashMap<String, TemporaryKey>>,
    objects: RwLock<HashMap<String, Arc<Version>>>,
    stats: Mutex<HashMap<String, Arc<stats::KeyStats>>>,
    faults: Mutex<faults::Faults>,
    /// Server-wide per-connection cap in bytes/s; 0 means none.
    rate_limit: AtomicU64,
    stall_release: watch::Sender<u64>,
    /// How many responses have reached their stall point so far.
    stalls_reached: watch::Sender<u64>,
    /// `q-signature`s of URLs that only the intranet listener serves.
    /// Two URLs for one key minted in the same second are the same URL, so
    /// the latest mint decides.
    intranet_only: Mutex<HashSet<String>>,
}

/// Which listener of the fake COS a request reached.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CosNetwork {
    /// The public host (`DownloadUrl`, PostgreSQL's default URL).
    Public,
    /// The intranet host (`InnerDownloadUrl`, PostgreSQL under `INTRANET`).
    Intranet,
}

/// The state of one COS listener: the shared store and which network it is.
#[derive(Debug, Clone)]
pub(crate) struct Listener {
    pub(crate) store: Arc<CosStore>,
    pub(crate) network: CosNetwork,
}

impl CosStore {
    /// An empty store that accepts URLs signed with `secret_id`/`secret_key`.
    pub fn new(clock: Arc<dyn Clock>, secret_id: &str, secret_key: &str) -> Arc<CosStore> {
        Arc::new(CosStore {
            clock,
            secret_id: secret_id.to_string(),
            secret_key: Secret::new(secret_key),
            temporary: Mutex::new(HashMap::new()),
            objects: RwLock::new(HashMap::new()),
            stats: Mutex::new(HashMap::new()),
            faults: Mutex::new(faults::Faults::default()),
            rate_limit: AtomicU64::new(0),
            stall_release: watch::Sender::new(0),
            stalls_reached: watch::Sender::new(0),
            intranet_only: Mutex::new(HashSet::new()),
        })
    }

    /// Whether the presigned `url` is served on the intranet listener only
    /// (the public one answers it with 403 `AccessDenied`) or on both.
    /// Returns false (and changes nothing) when `url` carries no COS
    /// signature.
    pub fn restrict_to_intranet(&self, url: &str, intranet_only: bool) -> bool {
        let Ok(auth) = UrlAuth::from_url(url) else {
            return false;
        };
        let mut marks = self.intranet_marks();
        if intranet_only {
            marks.insert(auth.signature);
        } else {
            marks.remove(&auth.signature);
        }
        true
    }

    /// Whether a URL with this `q-signature` is served on the intranet only.
    pub(crate) fn is_intranet_only(&self, signature: &str) -> bool {
        self.intranet_marks().contains(signature)
    }

    fn intranet_marks(&self) -> std::sync::MutexGuard<'_, HashSet<String>> {
        self.intranet_only.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Store (or replace) the object `key` (without leading `/`). A
    /// replacement gets a new ETag and a later Last-Modified. Fails when a
    /// `File` body cannot be read or is not a regular file.
    pub fn put(&self, key: &str, body: ObjectBody, opts: ObjectOptions) -> io::Result<()> {
        let len = match &body {
            ObjectBody::Bytes(b) => b.len() as u64,
            ObjectBody::Generated { len, .. } => *len,
            ObjectBody::File(path) => {
                let meta = std::fs::metadata(path)?;
                if !meta.is_file() {
                    return Err(io::Error::new(
                        io::ErrorKind::InvalidInput,
                        format!("object source {} is not a regular file", path.display()),
                    ));
                }
                meta.len()
            }
        };
        let key = key.trim_start_matches('/').to_string();
        let mut objects = self.objects_mut();
        let mut last_modified = self.clock.now().trunc_subsecs(0);
        if let Some(old) = objects.get(&key) {
            if last_modified <= old.last_modified {
                last_modified = old.last_modified + Duration::seconds(1);
            }
        }
        let version = Version {
            body,
            len,
            etag: format!("\"{}\"", uuid::Uuid::new_v4().simple()),
            last_modified,
            opts,
            crc: OnceCell::new(),
        };
        objects.insert(key, Arc::new(version));
        Ok(())
    }

    /// Remove an object; returns whether it existed.
    pub fn remove(&self, key: &str) -> bool {
        self.objects_mut()
            .remove(key.trim_start_matches('/'))
            .is_some()
    }

    /// Metadata of the current version of `key`.
    pub fn info(&self, key: &str) -> Option<ObjectInfo> {
        self.version(key.trim_start_matches('/')).map(|v| v.info())
    }

    /// The CRC-64/XZ of the whole object `key` as the header would carry it
    /// (computed now if it was not yet); `None` for an unknown key or a read error.
    /// Also useful to warm the value before a benchmark.
    pub async fn crc64(&self, key: &str) -> Option<u64> {
        let version = self.version(key.trim_start_matches('/'))?;
        version.crc64().await.ok()
    }

    /// A presigned GET URL for `key`, path-style `base_url/<key>`, valid from
    /// now − 60 s to now + `lifetime_secs`, with `q-header-list=host`.
    pub fn presign(
        &self,
        base_url: &str,
        key: &str,
        lifetime_secs: i64,
        shape: UrlShape,
    ) -> String {
        let (start, end) = self.window_from_now(lifetime_secs);
        self.presign_window(base_url, key, start, end, shape)
    }

    /// A presigned GET URL for `key` with an explicit validity window (Unix seconds).
    pub fn presign_window(
        &self,
        base_url: &str,
        key: &str,
        start: i64,
        end: i64,
        shape: UrlShape,
    ) -> String {
        let req = Presign {
            secret_id: &self.secret_id,
            start,
            end,
            ..get_request(base_url, key, shape)
        };
        presign_url(&req, self.secret_key.expose()).0
    }

    /// Accept a temporary key as well: URLs signed with `secret_id` must carry
    /// `x-cos-security-token=<token>` (query or header) until `expires_unix`;
    /// after that they get 400 `ExpiredToken`.
    pub fn add_temporary_key(
        &self,
        secret_id: &str,
        secret_key: &str,
        token: &str,
        expires_unix: i64,
    ) {
        self.temporary_keys().insert(
            secret_id.to_string(),
            TemporaryKey {
                secret_key: Secret::new(secret_key),
                token: Secret::new(token),
                expires: expires_unix,
            },
        );
    }

    /// A presigned GET URL signed with the temporary key `secret_id`, the way
    /// service-issued links are: `x-cos-security-token` is a signed query
    /// parameter (`q-url-param-list=x-cos-security-token`). `None` if that key
    /// was never added.
    pub fn presign_temporary(
        &self,
        base_url: &str,
        key: &str,
        lifetime_secs: i64,
        shape: UrlShape,
        secret_id: &str,
    ) -> Option<String> {
        let temp = self.temporary_key(secret_id)?;
        let (start, end) = self.window_from_now(lifetime_secs);
        let token = [("x-cos-security-token", temp.token.expose())];
        let req = Presign {
            secret_id,
            start,
            end,
            params: &token,
            ..get_request(base_url, key, shape)
        };
        Some(presign_url(&req, temp.secret_key.expose()).0)
    }

    /// From now − 60 s (the SDKs' allowance for clock skew) to now + `lifetime_secs`.
    fn window_from_now(&self, lifetime_secs: i64) -> (i64, i64) {
        let now = self.clock.unix();
        (now - 60, now + lifetime_secs)
    }

    pub(crate) fn temporary_key(&self, secret_id: &str) -> Option<TemporaryKey> {
        self.temporary_keys().get(secret_id).cloned()
    }

    fn temporary_keys(&self) -> std::sync::MutexGuard<'_, HashMap<String, TemporaryKey>> {
        self.temporary.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Install a fault for the requests `target` selects; it fires `repeat` times.
    pub fn add_fault(&self, target: FaultTarget, fault: Fault, repeat: Repeat) -> FaultId {
        self.faults().add(target, fault, repeat)
    }

    /// Remove one fault; returns whether it was still installed.
    pub fn remove_fault(&self, id: FaultId) -> bool {
        self.faults().remove(id)
    }

    /// Remove every fault.
    pub fn clear_faults(&self) {
        self.faults().clear();
    }

    /// How many faults are still installed (counted ones vanish when used up).
    pub fn pending_faults(&self) -> usize {
        self.faults().len()
    }

    /// Let every stalled response go on. A response that started before this
    /// call and reaches its stall point afterwards does not stall either.
    pub fn release_stalls(&self) {
        self.stall_release.send_modify(|n| *n += 1);
    }

    /// Wait until `count` responses in all have reached their stall point
    /// (a [`Fault::StallAfter`]), so a test acts while a transfer is
    /// certainly held, without polling.
    pub async fn stalls_reached(&self, count: u64) {
        let mut reached = self.stalls_reached.subscribe();
        // The sender lives as long as `self`, so this cannot fail.
        let _ = reached.wait_for(|n| *n >= count).await;
    }

    pub(crate) fn note_stall_reached(&self) {
        self.stalls_reached.send_modify(|n| *n += 1);
    }

    /// Set the server-wide per-connection rate cap in bytes/s (`None` removes it).
    pub fn set_rate_limit(&self, bytes_per_sec: Option<u64>) {
        self.rate_limit
            .store(bytes_per_sec.unwrap_or(0), Ordering::Relaxed);
    }

    /// The server-wide per-connection rate cap in bytes/s.
    pub fn rate_limit(&self) -> Option<u64> {
        Some(self.rate_limit.load(Ordering::Relaxed)).filter(|r| *r > 0)
    }

    /// What was served for `key` so far (empty if it was never requested).
    pub fn stats(&self, key: &str) -> ObjectStats {
        let key = key.trim_start_matches('/');
        self.stats_map()
            .get(key)
            .map(|s| s.snapshot())
            .unwrap_or_default()
    }

    /// Forget all statistics.
    pub fn reset_stats(&self) {
        self.stats_map().clear();
    }

    pub(crate) fn key_stats(&self, key: &str) -> Arc<stats::KeyStats> {
        Arc::clone(self.stats_map().entry(key.to_string()).or_default())
    }

    pub(crate) fn version(&self, key: &str) -> Option<Arc<Version>> {
        self.objects_ref().get(key).cloned()
    }

    pub(crate) fn faults(&self) -> std::sync::MutexGuard<'_, faults::Faults> {
        // Poisoning only means a panic elsewhere; the fault list stays consistent
        // because every update is a single push/remove.
        self.faults.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn stats_map(&self) -> std::sync::MutexGuard<'_, HashMap<String, Arc<stats::KeyStats>>> {
        self.stats.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn objects_ref(&self) -> std::sync::RwLockReadGuard<'_, HashMap<String, Arc<Version>>> {
        self.objects.read().unwrap_or_else(|e| e.into_inner())
    }

    fn objects_mut(&self) -> std::sync::RwLockWriteGuard<'_, HashMap<String, Arc<Version>>> {
        self.objects.write().unwrap_or_else(|e| e.into_inner())
    }
}

/// The HTTP routes of the fake COS: GET and HEAD on every path but `/`.
/// Paths under `/latest/meta-data/` answer 404 here; they belong to the API
/// emulator, whose static routes win when the routers are merged.
pub fn router(store: Arc<CosStore>) -> Router {
    network_router(store, CosNetwork::Public)
}

/// The same routes for the intranet listener, which also serves the URLs
/// restricted to the intranet.
pub fn intranet_router(store: Arc<CosStore>) -> Router {
    network_router(store, CosNetwork::Intranet)
}

fn network_router(store: Arc<CosStore>, network: CosNetwork) -> Router {
    Router::new()
        .route("/{*key}", get(handler::serve))
        .with_state(Listener { store, network })
}

#[cfg(test)]
mod tests {
    use super::*;
    use tcbackup_signing::clock::ManualClock;

    fn store() -> Arc<CosStore> {
        let clock = ManualClock::fixed(DateTime::from_timestamp(1_700_000_000, 0).expect("valid"));
        CosStore::new(Arc::new(clock), "AKIDtest", "secret")
    }

    #[tokio::test]
    async fn crc_matches_the_check_value_for_every_body_kind() {
        let store = store();
        store
            .put(
                "a",
                ObjectBody::Bytes(Bytes::from_static(b"123456789")),
                ObjectOptions::default(),
            )
            .expect("put");
        assert_eq!(store.crc64("a").await, Some(0x995D_C9BB_DF19_39FA));
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("f");
        std::fs::write(&path, b"123456789").expect("write");
        store
            .put("f", ObjectBody::File(path), ObjectOptions::default())
            .expect("put");
        assert_eq!(store.crc64("/f").await, Some(0x995D_C9BB_DF19_39FA));
        let mut generated = vec![0u8; 3 << 20];
        fill_generated(9, 0, &mut generated);
        let mut expected = crc64fast::Digest::new();
        expected.write(&generated);
        store
            .put(
                "g",
                ObjectBody::Generated {
                    seed: 9,
                    len: 3 << 20,
                },
                ObjectOptions::default(),
            )
            .expect("put");
        assert_eq!(store.crc64("g").await, Some(expected.sum64()));
        store
            .put(
                "e",
                ObjectBody::Bytes(Bytes::new()),
                ObjectOptions::default(),
            )
            .expect("put");
        assert_eq!(store.crc64("e").await, Some(0));
    }

    #[test]
    fn replacing_gives_a_new_etag_and_a_later_last_modified() {
        let store = store();
        let body = || ObjectBody::Generated { seed: 1, len: 10 };
        store
            .put("k", body(), ObjectOptions::default())
            .expect("put");
        let first = store.info("k").expect("exists");
        store
            .put("/k", body(), ObjectOptions::default())
            .expect("put");
        let second = store.info("k").expect("exists");
        assert_ne!(first.etag, second.etag);
        assert!(second.last_modified > first.last_modified);
        assert!(first.etag.starts_with('"') && first.etag.ends_with('"'));
        assert!(store.remove("k"));
        assert_eq!(store.info("k"), None);
    }

    #[test]
    fn put_of_a_missing_file_or_directory_fails() {
        let store = store();
        let dir = tempfile::tempdir().expect("tempdir");
        assert!(store
            .put(
                "x",
                ObjectBody::File(dir.path().join("none")),
                ObjectOptions::default()
            )
            .is_err());
        let err = store
            .put(
                "x",
                ObjectBody::File(dir.path().to_path_buf()),
                ObjectOptions::default(),
            )
            .expect_err("a directory is not an object");
        assert!(err.to_string().contains("not a regular file"), "{err}");
    }

    #[test]
    fn only_marked_signatures_are_intranet_only() {
        let store = store();
        let marked = store.presign("http://127.0.0.1:9000", "k", 600, UrlShape::Wrapped);
        let other = store.presign("http://127.0.0.1:9001", "k", 600, UrlShape::TopLevel);
        assert!(store.restrict_to_intranet(&marked, true));
        assert!(!store.restrict_to_intranet("http://127.0.0.1:9000/k", true));
        let signature = |url: &str| UrlAuth::from_url(url).expect("signed").signature;
        assert!(store.is_intranet_only(&signature(&marked)));
        assert!(!store.is_intranet_only(&signature(&other)));
        assert!(store.restrict_to_intranet(&marked, false));
        assert!(!store.is_intranet_only(&signature(&marked)));
    }

    #[test]
    fn presign_uses_the_sdk_window_and_both_shapes() {
        let store = store();
        for shape in [UrlShape::TopLevel, UrlShape::Wrapped] {
            let url = store.presign("http://127.0.0.1:9000", "dir/k.rdb", 21_600, shape);
            assert!(url.starts_with("http://127.0.0.1:9000/dir/k.rdb?"), "{url}");
            assert_eq!(
                tcbackup_signing::cos::url_validity(&url),
                Some((1_700_000_000 - 60, 1_700_000_000 + 21_600))
            );
            let auth = tcbackup_signing::cos::UrlAuth::from_url(&url).expect("parses");
            assert_eq!(auth.header_list, "host");
            assert!(auth.verify(
                "GET",
                "/dir/k.rdb",
                |h| (h == "host").then(|| "127.0.0.1:9000".to_string()),
                "secret"
            ));
        }
    }
}
