//! The current download URL of one file, shared by its streams: obtained
//! from the [`UrlSource`] on first use, renewed before it expires and after
//! COS says it has, and checked for an allowed scheme.
//!
//! The renewal margin is `min(configured margin, half the URL's lifetime)`,
//! so a URL that lives only seconds is still used rather than renewed in a
//! loop. The expiry is read from the URL itself (`q-sign-time`/`q-key-time`,
//! either URL shape) by [`tcbackup_signing::cos::url_expiry`].

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Mutex;

use super::error::UrlSourceError;
use super::UrlSource;
use tcbackup_signing::clock::Clock;
use tcbackup_signing::secret::SignedUrl;

/// A URL handed to a stream, with the generation it belongs to.
#[derive(Debug, Clone)]
pub(crate) struct LeasedUrl {
    pub url: SignedUrl,
    pub generation: u64,
    /// Whether this URL replaced an earlier one just now.
    pub refreshed: bool,
}

/// Why no URL could be leased.
#[derive(Debug)]
pub(crate) enum LeaseError {
    Source(UrlSourceError),
    Insecure(String),
}

#[derive(Debug)]
struct Current {
    url: SignedUrl,
    expiry: Option<i64>,
    obtained: i64,
    generation: u64,
}

/// The URL of one file.
pub(crate) struct UrlLease {
    source: Arc<dyn UrlSource>,
    clock: Arc<dyn Clock>,
    margin: Duration,
    allow_http: bool,
    state: Mutex<(Option<Current>, u64)>,
}

impl UrlLease {
    pub(crate) fn new(
        source: Arc<dyn UrlSource>,
        clock: Arc<dyn Clock>,
        margin: Duration,
        allow_http: bool,
    ) -> Self {
        Self {
            source,
            clock,
            margin,
            allow_http,
            state: Mutex::new((None, 0)),
        }
    }

    /// A URL good for one more request. Concurrent callers share one renewal.
    pub(crate) async fn get(&self) -> Result<LeasedUrl, LeaseError> {
        let mut guard = self.state.lock().await;
        let (current, generations) = &mut *guard;
        if let Some(c) = current.as_ref() {
            if !self.expiring(c) {
                return Ok(LeasedUrl {
                    url: c.url.clone(),
                    generation: c.generation,
                    refreshed: false,
                });
            }
        }
        let url = self.source.fresh_url().await.map_err(LeaseError::Source)?;
        check_scheme(url.expose(), self.allow_http).map_err(LeaseError::Insecure)?;
        *generations += 1;
        let refreshed = *generations > 1;
        let fresh = Current {
            expiry: tcbackup_signing::cos::url_expiry(url.expose()),
            obtained: self.clock.unix(),
            url,
            generation: *generations,
        };
        tracing::debug!(url = %fresh.url, expiry = ?fresh.expiry, "download url obtained");
        let leased = LeasedUrl {
            url: fresh.url.clone(),
            generation: fresh.generation,
            refreshed,
        };
        *current = Some(fresh);
        Ok(leased)
    }

    /// The server said the URL of `generation` expired: drop it, unless a
    /// newer one already replaced it.
    pub(crate) async fn invalidate(&self, generation: u64) {
        let mut guard = self.state.lock().await;
        if guard.0.as_ref().is_some_and(|c| c.generation == generation) {
            guard.0 = None;
        }
    }

    /// Whether `c` is within its renewal margin.
    fn expiring(&self, c: &Current) -> bool {
        let Some(expiry) = c.expiry else {
            return false;
        };
        let lifetime = (expiry - c.obtained).max(0);
        let margin = (self.margin.as_secs() as i64).min(lifetime / 2);
        self.clock.unix() >= expiry - margin
    }
}

/// Accept `https://`, and `http://` only when allowed. Returns the scheme
/// of a refused URL (never the URL: it carries the signature).
fn check_scheme(url: &str, allow_http: bool) -> Result<(), String> {
    let scheme = url
        .split_once("://")
        .map(|(s, _)| s.to_ascii_lowercase())
        .unwrap_or_default();
    match scheme.as_str() {
        "https" => Ok(()),
        "http" if allow_http => Ok(()),
        _ => Err(scheme),
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicU32, Ordering};

    use chrono::DateTime;
    use futures::future::BoxFuture;

    use super::*;
    use tcbackup_signing::clock::ManualClock;

    const T0: i64 = 1_700_000_000;

    /// Hands out URLs valid for `lifetime` seconds from the clock's now.
    struct Minting {
        clock: ManualClock,
        lifetime: i64,
        calls: AtomicU32,
        scheme: &'static str,
    }

    impl UrlSource for Minting {
        fn fresh_url(&self) -> BoxFuture<'_, Result<SignedUrl, UrlSourceError>> {
            Box::pin(async move {
                let n = self.calls.fetch_add(1, Ordering::SeqCst);
                let now = self.clock.unix();
                Ok(SignedUrl::new(format!(
                    "{}://h/k?q-sign-algorithm=sha1&q-sign-time={}%3B{}&q-key-time={}%3B{}&q-signature=s{n}",
                    self.scheme,
                    now - 60,
                    now + self.lifetime,
                    now - 60,
                    now + self.lifetime
                )))
            })
        }
    }

    fn setup(
        lifetime: i64,
        margin_secs: u64,
        scheme: &'static str,
        allow_http: bool,
    ) -> (ManualClock, Arc<Minting>, UrlLease) {
        let clock = ManualClock::fixed(DateTime::from_timestamp(T0, 0).unwrap());
        let src = Arc::new(Minting {
            clock: clock.clone(),
            lifetime,
            calls: AtomicU32::new(0),
            scheme,
        });
        let lease = UrlLease::new(
            src.clone(),
            Arc::new(clock.clone()),
            Duration::from_secs(margin_secs),
            allow_http,
        );
        (clock, src, lease)
    }

    #[tokio::test]
    async fn renews_within_the_configured_margin() {
        let (clock, src, lease) = setup(21_600, 600, "https", false);
        let a = lease.get().await.unwrap();
        assert!(!a.refreshed);
        clock.advance(chrono::Duration::seconds(21_600 - 601));
        assert_eq!(lease.get().await.unwrap().generation, a.generation);
        clock.advance(chrono::Duration::seconds(1));
        let b = lease.get().await.unwrap();
        assert!(b.refreshed);
        assert_ne!(b.generation, a.generation);
        assert_eq!(src.calls.load(Ordering::SeqCst), 2);
    }

    #[tokio::test]
    async fn short_lived_urls_use_half_their_lifetime() {
        // 20 s of life: the margin is 10 s, not the configured 600 s.
        let (clock, src, lease) = setup(20, 600, "https", false);
        let a = lease.get().await.unwrap();
        clock.advance(chrono::Duration::seconds(9));
        assert_eq!(lease.get().await.unwrap().generation, a.generation);
        clock.advance(chrono::Duration::seconds(1));
        assert_ne!(lease.get().await.unwrap().generation, a.generation);
        assert_eq!(src.calls.load(Ordering::SeqCst), 2);
    }

    #[tokio::test]
    async fn invalidation_only_drops_the_named_generation() {
        let (_clock, src, lease) = setup(21_600, 600, "https", false);
        let a = lease.get().await.unwrap();
        lease.invalidate(a.generation).await;
        let b = lease.get().await.unwrap();
        // A second stream reporting the same old URL does not throw away b.
        lease.invalidate(a.generation).await;
        assert_eq!(lease.get().await.unwrap().generation, b.generation);
        assert_eq!(src.calls.load(Ordering::SeqCst), 2);
    }

    #[tokio::test]
    async fn plain_http_needs_permission() {
        let (_c, _s, lease) = setup(100, 10, "http", false);
        match lease.get().await {
            Err(LeaseError::Insecure(scheme)) => assert_eq!(scheme, "http"),
            other => panic!("expected refusal, got {other:?}"),
        }
        let (_c, _s, lease) = setup(100, 10, "http", true);
        assert!(lease.get().await.is_ok());
        assert_eq!(check_scheme("ftp://x", true), Err("ftp".into()));
        assert_eq!(check_scheme("HTTPS://x", false), Ok(()));
        assert_eq!(check_scheme("no-scheme", true), Err(String::new()));
    }
}
