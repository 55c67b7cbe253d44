//! The emulator's COS object server alone on `127.0.0.1:0`, its clock
//! frozen (or the test's own), for tests that talk to COS directly: the
//! transfer engine's (`transfer.rs`) and the server's own (`cos_server.rs`).

use std::sync::Arc;

use chrono::DateTime;
use tcbackup_emulator::cos::{router, CosStore, ObjectBody, ObjectOptions, UrlShape};
use tcbackup_signing::clock::ManualClock;

/// A running fake COS.
pub struct FakeCos {
    /// Its objects, faults and statistics.
    pub store: Arc<CosStore>,
    /// Its clock (URL expiry is checked against it).
    pub clock: ManualClock,
    /// `http://127.0.0.1:PORT`.
    pub base: String,
}

impl FakeCos {
    /// A fake COS signing with this key pair, its clock frozen at
    /// 2023-11-14 22:13:20 UTC.
    pub async fn start(secret_id: &str, secret_key: &str) -> FakeCos {
        let clock = ManualClock::fixed(DateTime::from_timestamp(1_700_000_000, 0).unwrap());
        Self::with_clock(clock, secret_id, secret_key).await
    }

    /// A fake COS on `clock`.
    pub async fn with_clock(clock: ManualClock, secret_id: &str, secret_key: &str) -> FakeCos {
        let store = CosStore::new(Arc::new(clock.clone()), secret_id, secret_key);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let app = router(Arc::clone(&store));
        tokio::spawn(async move {
            axum::serve(listener, app).await.unwrap();
        });
        FakeCos {
            store,
            clock,
            base: format!("http://{addr}"),
        }
    }

    /// Store `body` under `key`.
    pub fn put(&self, key: &str, body: ObjectBody) {
        self.store.put(key, body, ObjectOptions::default()).unwrap();
    }

    /// A presigned GET URL for `key`.
    pub fn presign(&self, key: &str, lifetime: i64, shape: UrlShape) -> String {
        self.store.presign(&self.base, key, lifetime, shape)
    }

    /// Body bytes served for `key` so far.
    pub fn served(&self, key: &str) -> u64 {
        self.store.stats(key).bytes_served
    }
}
