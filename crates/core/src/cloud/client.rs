//! `ApiClient`: one signed JSON POST per API call, with the envelope parsed
//! into typed answers or `ApiError`, retries with jittered backoff (every
//! attempt re-signed), the re-sign/refresh rules for expired signatures and
//! tokens, client-side rate limits, and timeouts.
//!
//! Where a call goes: with `[api] endpoint` set, to that URL, signing its
//! host (and port), as the official SDKs do with `HttpProfile(endpoint=…)`;
//! otherwise to the host `endpoint::api_host` picks for the service, the
//! site and the call's region. The `Host` header sent is always the one the
//! signature covers.
//!
//! No redirect is followed: a 3xx answer is [`ApiError::Redirect`], naming
//! the endpoint, and is not retried. Following one would re-send the signed
//! body and the `X-TC-Token` header to wherever `Location` points (another
//! host, plain http).
//!
//! Logs: `debug` one line per attempt (service, action, attempt, code,
//! request id); `trace` the request and the redacted answer. The
//! Authorization header, the key and the token are never logged.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use rand::rngs::StdRng;
use rand::{RngCore, SeedableRng};
use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::Value;

use crate::backoff::Backoff;
use crate::cloud::credentials::{CredentialProvider, Credentials};
use crate::cloud::endpoint::{api_url, Site};
use crate::cloud::error::{is_rate_limit_code, ApiError, TransportError, TransportKind};
use crate::cloud::ratelimit::{RateLimiter, RateLimits};
use crate::cloud::retry::{classify, RetryAction, RetryConfig};
use crate::model::Service;
use tcbackup_signing::clock::Clock;
use tcbackup_signing::cos::host_header;
use tcbackup_signing::secret::redact_url;
use tcbackup_signing::tc3::{sign, SignRequest};

/// The Content-Type sent and signed, byte for byte (no `; charset`).
pub const CONTENT_TYPE: &str = "application/json";

/// API answers are at most 50 MB (reference §1).
pub const MAX_RESPONSE_BYTES: usize = 50 * 1024 * 1024;

/// The API version each service is called with.
pub fn api_version(service: Service) -> &'static str {
    match service {
        Service::Redis => "2018-04-12",
        Service::Postgres => "2017-03-12",
    }
}

/// Client settings. Plain data; `Default` talks to the real cloud.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientConfig {
    /// A base URL used as written for every call of every service (e.g. an
    /// emulator at `http://127.0.0.1:9000`), whatever the site and region;
    /// `None` uses the host `endpoint::api_host` picks.
    pub endpoint: Option<String>,
    /// The site whose hosts serve the account (ignored with `endpoint`).
    pub site: Site,
    /// Time allowed to establish a connection.
    pub connect_timeout: Duration,
    /// Time allowed between two reads of the answer.
    pub read_timeout: Duration,
    /// Time allowed for one whole request.
    pub request_timeout: Duration,
    /// Retry policy.
    pub retry: RetryConfig,
    /// Client-side rate limits.
    pub rate_limits: RateLimits,
    /// `X-TC-Language`: the language of `Error.Message`.
    pub language: String,
}

impl Default for ClientConfig {
    fn default() -> Self {
        Self {
            endpoint: None,
            site: Site::China,
            connect_timeout: Duration::from_secs(10),
            read_timeout: Duration::from_secs(30),
            request_timeout: Duration::from_secs(60),
            retry: RetryConfig::default(),
            rate_limits: RateLimits::default(),
            language: "en-US".to_string(),
        }
    }
}

/// A client for the Redis and PostgreSQL APIs. Cheap to clone (shared state:
/// connection pool, rate limiter, credentials).
#[derive(Debug, Clone)]
pub struct ApiClient {
    inner: Arc<ClientInner>,
}

#[derive(Debug)]
struct ClientInner {
    http: reqwest::Client,
    config: ClientConfig,
    endpoint: Option<url::Url>,
    credentials: CredentialProvider,
    clock: Arc<dyn Clock>,
    limiter: RateLimiter,
    backoff: Backoff,
}

/// One attempt's outcome, with what the logs need.
struct Answer {
    response: Value,
    request_id: String,
}

impl ApiClient {
    /// A client with entropy-seeded backoff jitter.
    pub fn new(
        config: ClientConfig,
        credentials: CredentialProvider,
        clock: Arc<dyn Clock>,
    ) -> Result<Self, ApiError> {
        Self::with_rng(config, credentials, clock, Box::new(StdRng::from_entropy()))
    }

    /// A client drawing backoff jitter from `rng` (tests pass a seeded one).
    pub fn with_rng(
        config: ClientConfig,
        credentials: CredentialProvider,
        clock: Arc<dyn Clock>,
        rng: Box<dyn RngCore + Send>,
    ) -> Result<Self, ApiError> {
        let endpoint = match &config.endpoint {
            Some(text) => {
                let url = url::Url::parse(text).map_err(|e| ApiError::Setup {
                    message: format!("api endpoint {:?} is not a url: {e}", redact_url(text)),
                })?;
                if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none() {
                    return Err(ApiError::Setup {
                        message: format!(
                            "api endpoint {:?} must be an http(s) url with a host",
                            redact_url(text)
                        ),
                    });
                }
                Some(url)
            }
            None => None,
        };
        let http = reqwest::Client::builder()
            .connect_timeout(config.connect_timeout)
            .read_timeout(config.read_timeout)
            .timeout(config.request_timeout)
            .user_agent(concat!("tcbackup/", env!("CARGO_PKG_VERSION")))
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| ApiError::Setup {
                message: redact_url(&e.to_string()),
            })?;
        let limiter = RateLimiter::new(config.rate_limits.clone());
        let backoff = Backoff::with_rng(config.retry.cap, rng);
        Ok(Self {
            inner: Arc::new(ClientInner {
                http,
                config,
                endpoint,
                credentials,
                clock,
                limiter,
                backoff,
            }),
        })
    }

    /// The credentials provider in use.
    pub fn credentials(&self) -> &CredentialProvider {
        &self.inner.credentials
    }

    /// The URL requests for `service` in `region` are sent to.
    pub fn endpoint(&self, service: Service, region: Option<&str>) -> String {
        match &self.inner.endpoint {
            Some(url) => url.to_string(),
            None => api_url(service, self.inner.config.site, region),
        }
    }

    /// Call `action` of `service` with `request` as the JSON body and decode
    /// the `Response` object into `Resp`. Retries transient failures with
    /// backoff, re-signing each attempt; re-signs once on
    /// `AuthFailure.SignatureExpire`; refreshes temporary credentials once on
    /// `AuthFailure.TokenFailure`; fails at once on other auth failures.
    pub async fn call<Req: Serialize, Resp: DeserializeOwned>(
        &self,
        service: Service,
        action: &str,
        region: Option<&str>,
        request: &Req,
    ) -> Result<Resp, ApiError> {
        // Serialised once: every attempt signs and sends these exact bytes.
        let body =
            Bytes::from(
                serde_json::to_vec(request).map_err(|e| ApiError::InvalidRequest {
                    action: action.to_string(),
                    reason: format!("cannot serialise the request: {e}"),
                })?,
            );
        let region = region.filter(|r| !r.is_empty());
        let target = self.target(service, region)?;
        let max_attempts = self.inner.config.retry.max_attempts.max(1);
        let mut attempt = 0u32;
        let mut retries = 0u32;
        let mut resigned = false;
        let mut refreshed = false;
        loop {
            attempt += 1;
            self.inner.limiter.acquire(service, action).await;
            let creds = self.inner.credentials.credentials().await?;
            let started = tokio::time::Instant::now();
            let result = self
                .send_once(service, action, region, &target, &body, &creds)
                .await;
            let elapsed_ms = started.elapsed().as_millis() as u64;
            let err = match result {
                Ok(answer) => {
                    tracing::debug!(%service, action, attempt, request_id = %answer.request_id, elapsed_ms, "api call ok");
                    return serde_json::from_value(answer.response).map_err(|e| ApiError::Decode {
                        action: action.to_string(),
                        message: redact_url(&e.to_string()),
                    });
                }
                Err(err) => err,
            };
            tracing::debug!(
                %service,
                action,
                attempt,
                code = err.code().unwrap_or("-"),
                request_id = err.request_id().unwrap_or("-"),
                elapsed_ms,
                error = %err,
                "api call failed"
            );
            match classify(&err) {
                RetryAction::Resign if !resigned => {
                    // A fresh timestamp fixes a request that waited too long;
                    // a second expiry means the clocks disagree.
                    resigned = true;
                    tracing::debug!(%service, action, "signature expired, re-signing once");
                }
                RetryAction::RefreshCredentials
                    if !refreshed && self.inner.credentials.is_refreshable() =>
                {
                    refreshed = true;
                    tracing::debug!(%service, action, "token rejected, refreshing temporary credentials once");
                    self.inner.credentials.refresh(&creds).await?;
                }
                how @ (RetryAction::Backoff | RetryAction::SlowBackoff)
                    if retries + 1 < max_attempts =>
                {
                    let slow = how == RetryAction::SlowBackoff;
                    let delay = self.next_delay(retries, slow);
                    retries += 1;
                    tracing::debug!(%service, action, attempt, delay_ms = delay.as_millis() as u64, "retrying after backoff");
                    tokio::time::sleep(delay).await;
                }
                _ => return Err(finalize(err, attempt)),
            }
        }
    }

    fn next_delay(&self, retry: u32, slow: bool) -> Duration {
        let retry_config = &self.inner.config.retry;
        let base = if slow {
            retry_config.slow_base
        } else {
            retry_config.base
        };
        self.inner.backoff.delay(base, retry)
    }

    /// Where requests for `service` in `region` go, worked out once per
    /// call: the URL, and the `Host` that is both sent and signed.
    fn target(&self, service: Service, region: Option<&str>) -> Result<Target, ApiError> {
        let url = match &self.inner.endpoint {
            Some(url) => url.clone(),
            None => {
                let text = api_url(service, self.inner.config.site, region);
                url::Url::parse(&text).map_err(|e| ApiError::Setup {
                    message: format!("api endpoint {text:?} for region {region:?}: {e}"),
                })?
            }
        };
        let host = host_header(&url);
        Ok(Target { url, host })
    }

    /// Sign and send one request; parse the envelope.
    async fn send_once(
        &self,
        service: Service,
        action: &str,
        region: Option<&str>,
        target: &Target,
        body: &Bytes,
        creds: &Credentials,
    ) -> Result<Answer, ApiError> {
        let Target { url, host } = target;
        // The clock is read once: the header and the scope date agree.
        let timestamp = self.inner.clock.unix();
        let signed_headers = [("content-type", CONTENT_TYPE), ("host", host.as_str())];
        let signature = sign(
            &SignRequest {
                method: "POST",
                query: "",
                headers: &signed_headers,
                payload: body,
                unsigned_payload: false,
                service: service.as_str(),
                timestamp,
            },
            creds.secret_key.expose(),
        );
        let mut authorization =
            reqwest::header::HeaderValue::from_str(&signature.authorization(&creds.secret_id))
                .map_err(|_| credentials_not_header_safe(action))?;
        authorization.set_sensitive(true);

        let mut request = self
            .inner
            .http
            .post(url.clone())
            .header(reqwest::header::HOST, host.as_str())
            .header(reqwest::header::CONTENT_TYPE, CONTENT_TYPE)
            .header(reqwest::header::AUTHORIZATION, authorization)
            .header("X-TC-Action", action)
            .header("X-TC-Version", api_version(service))
            .header("X-TC-Timestamp", timestamp.to_string())
            .header("X-TC-Language", self.inner.config.language.as_str())
            .header(
                "X-TC-RequestClient",
                concat!("tcbackup_", env!("CARGO_PKG_VERSION")),
            );
        if let Some(region) = region {
            request = request.header("X-TC-Region", region);
        }
        if let Some(token) = &creds.token {
            let mut value = reqwest::header::HeaderValue::from_str(token.expose())
                .map_err(|_| credentials_not_header_safe(action))?;
            value.set_sensitive(true);
            request = request.header("X-TC-Token", value);
        }
        tracing::trace!(
            %service,
            action,
            region = region.unwrap_or("-"),
            endpoint = %redact_url(url.as_str()),
            host = %host,
            timestamp,
            secret_id = %crate::cloud::credentials::mask_id(&creds.secret_id),
            temporary = creds.token.is_some(),
            body = %String::from_utf8_lossy(body),
            "sending signed api request"
        );

        let transport = |e: reqwest::Error| ApiError::Transport {
            action: action.to_string(),
            source: TransportError::from_reqwest(&e),
        };
        let mut response = request.body(body.clone()).send().await.map_err(transport)?;
        let status = response.status();
        if status.is_redirection() {
            let location = response
                .headers()
                .get(reqwest::header::LOCATION)
                .map(|value| redact_url(&String::from_utf8_lossy(value.as_bytes())))
                .unwrap_or_else(|| "nowhere (no Location header)".to_string());
            return Err(ApiError::Redirect {
                action: action.to_string(),
                status: status.as_u16(),
                endpoint: redact_url(url.as_str()),
                location,
            });
        }
        if status != reqwest::StatusCode::OK {
            return Err(ApiError::Http {
                action: action.to_string(),
                status: status.as_u16(),
                endpoint: redact_url(url.as_str()),
            });
        }
        let mut raw = Vec::new();
        while let Some(chunk) = response.chunk().await.map_err(transport)? {
            if raw.len() + chunk.len() > MAX_RESPONSE_BYTES {
                return Err(ApiError::Transport {
                    action: action.to_string(),
                    source: TransportError {
                        kind: TransportKind::TooLarge,
                        message: format!("answer exceeds {MAX_RESPONSE_BYTES} bytes"),
                    },
                });
            }
            raw.extend_from_slice(&chunk);
        }
        tracing::trace!(%service, action, bytes = raw.len(), body = %redact_body(&raw), "api answer");
        parse_envelope(action, &raw)
    }
}

/// The URL of a service's endpoint and the Host header signed for it.
struct Target {
    url: url::Url,
    host: String,
}

fn credentials_not_header_safe(action: &str) -> ApiError {
    ApiError::InvalidRequest {
        action: action.to_string(),
        reason: "the SecretId or token contains characters not allowed in an http header"
            .to_string(),
    }
}

/// Answer fields whose string values are secrets (`DescribeBackupDetail`'s
/// key of an encrypted backup).
const SECRET_FIELDS: &[&str] = &["DecryptKey"];

/// Answer text safe for a trace line: JSON escapes that could hide a URL's
/// separators are undone first, then every signature parameter and the
/// value of every [`SECRET_FIELDS`] field is redacted.
fn redact_body(raw: &[u8]) -> String {
    let text = String::from_utf8_lossy(raw)
        .replace("\\u0026", "&")
        .replace("\\u003d", "=")
        .replace("\\u003D", "=")
        .replace("\\/", "/");
    let mut text = redact_url(&text);
    for field in SECRET_FIELDS {
        text = redact_json_string_field(&text, field);
    }
    text
}

/// Replace the string value of every `"field": "…"` in `text` with
/// `REDACTED` (a JSON string, escapes included, ends at its first
/// unescaped quote); `null` and other values are left as they are.
fn redact_json_string_field(text: &str, field: &str) -> String {
    let needle = format!("\"{field}\"");
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(pos) = rest.find(&needle) {
        let (head, tail) = rest.split_at(pos + needle.len());
        out.push_str(head);
        rest = tail;
        let after_colon = rest.trim_start().strip_prefix(':').map(str::trim_start);
        let Some(value) = after_colon.and_then(|v| v.strip_prefix('"')) else {
            continue;
        };
        let mut end = None;
        let mut escaped = false;
        for (i, c) in value.char_indices() {
            match c {
                _ if escaped => escaped = false,
                '\\' => escaped = true,
                '"' => {
                    end = Some(i);
                    break;
                }
                _ => {}
            }
        }
        out.push_str(&rest[..rest.len() - value.len()]);
        out.push_str("REDACTED\"");
        // An unterminated string: drop the rest rather than show it.
        rest = end.map_or("", |i| &value[i + 1..]);
    }
    out.push_str(rest);
    out
}

/// Parse `{"Response": {...}}`: an `Error` inside becomes `ApiError::Service`.
fn parse_envelope(action: &str, raw: &[u8]) -> Result<Answer, ApiError> {
    let decode = |message: String| ApiError::Decode {
        action: action.to_string(),
        message,
    };
    let mut value: Value = serde_json::from_slice(raw).map_err(|e| {
        decode(format!(
            "not json (line {} column {})",
            e.line(),
            e.column()
        ))
    })?;
    let Some(response) = value.get_mut("Response").map(Value::take) else {
        return Err(decode("no Response object".to_string()));
    };
    if !response.is_object() {
        return Err(decode("Response is not an object".to_string()));
    }
    let request_id = response
        .get("RequestId")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_string();
    if let Some(error) = response.get("Error") {
        let code = error.get("Code").and_then(Value::as_str);
        let message = error.get("Message").and_then(Value::as_str).unwrap_or("");
        let Some(code) = code else {
            return Err(decode(format!(
                "Response.Error without a Code (request id {request_id})"
            )));
        };
        return Err(ApiError::Service {
            action: action.to_string(),
            code: code.to_string(),
            message: redact_url(message),
            request_id,
        });
    }
    Ok(Answer {
        response,
        request_id,
    })
}

/// Turn the last error of an exhausted retry loop into what the caller sees.
fn finalize(err: ApiError, attempts: u32) -> ApiError {
    match err {
        ApiError::Service {
            action,
            code,
            message,
            request_id,
        } if is_rate_limit_code(&code) && attempts > 1 => ApiError::RateLimited {
            action,
            code,
            message,
            attempts,
            request_id,
        },
        other => other,
    }
}

#[cfg(test)]
#[path = "client_tests.rs"]
mod tests;
