//! Health-check pings in the healthchecks.io convention: `<url>/start` when a
//! cycle starts, `<url>` on success, `<url>/fail` on failure (a query string
//! in the URL is kept). The body is a one-line summary of the cycle.
//!
//! A ping is a dead-man's switch, so a lost success ping raises a false
//! alarm: each ping is tried a few times. A ping that still cannot be
//! delivered is logged and never fails the backup. The URL carries the
//! check's secret id, so it never appears in a log line.

use std::time::Duration;

use url::Url;

use crate::backoff::Backoff;

/// Attempts per ping (the first and two retries).
const ATTEMPTS: u32 = 3;

/// Which ping to send.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ping {
    /// The cycle started.
    Start,
    /// The cycle succeeded.
    Success,
    /// The cycle failed.
    Fail,
}

impl Ping {
    fn as_str(self) -> &'static str {
        match self {
            Ping::Start => "start",
            Ping::Success => "success",
            Ping::Fail => "fail",
        }
    }
}

/// The URL for a ping kind: `/start` and `/fail` are appended to the path,
/// the query (if any) is kept.
pub fn ping_url(base: &Url, ping: Ping) -> Url {
    let suffix = match ping {
        Ping::Start => "start",
        Ping::Success => return base.clone(),
        Ping::Fail => "fail",
    };
    let mut url = base.clone();
    // Only `cannot-be-a-base` URLs (`mailto:`) have no segments, and the
    // config accepts http(s) URLs only.
    if let Ok(mut segments) = url.path_segments_mut() {
        segments.pop_if_empty().push(suffix);
    }
    url
}

/// Sends pings to one configured URL.
#[derive(Debug, Clone)]
pub struct HealthCheck {
    base: Url,
    http: reqwest::Client,
    timeout: Duration,
    retry_delay: Duration,
}

impl HealthCheck {
    /// A pinger for `base`: 10 s per attempt, about 2 s before the first
    /// retry and twice that before each next one (jittered).
    pub fn new(base: Url, http: reqwest::Client) -> Self {
        Self {
            base,
            http,
            timeout: Duration::from_secs(10),
            retry_delay: Duration::from_secs(2),
        }
    }

    /// Change the time allowed per attempt and the first pause between
    /// attempts.
    pub fn with_timing(mut self, timeout: Duration, retry_delay: Duration) -> Self {
        self.timeout = timeout;
        self.retry_delay = retry_delay;
        self
    }

    /// Send one ping with `body`; returns whether it was delivered (a 2xx
    /// answer). Failures are logged without the URL, never returned as errors.
    pub async fn ping(&self, ping: Ping, body: &str) -> bool {
        let url = ping_url(&self.base, ping);
        let mut last_error = String::new();
        for attempt in 1..=ATTEMPTS {
            let result = self
                .http
                .post(url.clone())
                .timeout(self.timeout)
                .body(body.to_string())
                .send()
                .await
                .and_then(|r| r.error_for_status());
            match result {
                Ok(_) => {
                    tracing::debug!(ping = ping.as_str(), "health-check ping delivered");
                    return true;
                }
                // The error without its URL: the URL is the check's secret.
                Err(error) => last_error = error.without_url().to_string(),
            }
            if attempt < ATTEMPTS {
                let wait = Backoff::new(self.retry_delay * 4).delay(self.retry_delay, attempt - 1);
                tokio::time::sleep(wait).await;
            }
        }
        tracing::warn!(
            ping = ping.as_str(),
            error = %last_error,
            "health-check ping not delivered after {ATTEMPTS} attempts"
        );
        false
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use axum::extract::State;
    use axum::http::{StatusCode, Uri};
    use axum::routing::post;
    use axum::Router;

    use super::*;

    fn url(s: &str) -> Url {
        Url::parse(s).unwrap()
    }

    #[test]
    fn urls_follow_healthchecks_io() {
        let base = url("https://hc-ping.com/abc");
        assert_eq!(
            ping_url(&url("https://hc-ping.com/abc/"), Ping::Start).as_str(),
            "https://hc-ping.com/abc/start"
        );
        assert_eq!(
            ping_url(&base, Ping::Success).as_str(),
            "https://hc-ping.com/abc"
        );
        assert_eq!(
            ping_url(&base, Ping::Fail).as_str(),
            "https://hc-ping.com/abc/fail"
        );
        assert_eq!(
            ping_url(&url("https://hc.example/ping/k/db?create=1"), Ping::Start).as_str(),
            "https://hc.example/ping/k/db/start?create=1"
        );
    }

    /// What the test server saw: (path and query, body), in order.
    type Hits = Arc<Mutex<Vec<(String, String)>>>;

    /// A local server that records every POST; the first `fail_first`
    /// requests are answered 503.
    async fn server(fail_first: usize) -> (Url, Hits) {
        let hits: Hits = Arc::default();
        let app = Router::new()
            .fallback(post(
                |State(hits): State<(Hits, usize)>, uri: Uri, body: String| async move {
                    let mut seen = hits.0.lock().unwrap();
                    seen.push((uri.to_string(), body));
                    if seen.len() <= hits.1 {
                        StatusCode::SERVICE_UNAVAILABLE
                    } else {
                        StatusCode::OK
                    }
                },
            ))
            .with_state((hits.clone(), fail_first));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await });
        (url(&format!("http://{addr}/ping/5f2c9a")), hits)
    }

    fn quick(base: Url) -> HealthCheck {
        HealthCheck::new(base, reqwest::Client::new())
            .with_timing(Duration::from_secs(5), Duration::from_millis(10))
    }

    #[tokio::test]
    async fn start_success_and_fail_reach_their_urls_with_the_summary() {
        let (base, hits) = server(0).await;
        let check = quick(base);
        assert!(check.ping(Ping::Start, "cycle started").await);
        assert!(check.ping(Ping::Success, "2 set(s) published").await);
        assert!(check.ping(Ping::Fail, "1 failed").await);
        let hits = hits.lock().unwrap().clone();
        assert_eq!(
            hits,
            vec![
                (
                    "/ping/5f2c9a/start".to_string(),
                    "cycle started".to_string()
                ),
                ("/ping/5f2c9a".to_string(), "2 set(s) published".to_string()),
                ("/ping/5f2c9a/fail".to_string(), "1 failed".to_string()),
            ]
        );
    }

    #[tokio::test]
    async fn a_refused_ping_is_retried_then_given_up_without_error() {
        let (base, hits) = server(1).await;
        assert!(quick(base.clone()).ping(Ping::Success, "ok").await);
        assert_eq!(hits.lock().unwrap().len(), 2, "one 503, then delivered");

        let (base, hits) = server(usize::MAX).await;
        assert!(!quick(base).ping(Ping::Fail, "x").await);
        assert_eq!(hits.lock().unwrap().len(), ATTEMPTS as usize);
    }

    #[tokio::test]
    async fn an_unreachable_url_is_not_an_error() {
        // A port that was just free: nothing listens there.
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        drop(listener);
        let check = quick(url(&format!("http://{addr}/ping/secret-uuid")));
        assert!(!check.ping(Ping::Start, "x").await);
    }
}
