//! The fake CVM metadata service (reference §8.3) under `/latest/meta-data/`:
//! the bound role's name, and temporary credentials for it. Every issue
//! registers the new SecretId, key and token in the API's credential table
//! with the configured (short) lifetime, so that once they expire API calls
//! fail with `AuthFailure.TokenFailure` and the client's refresh path runs.

use std::sync::{Arc, Mutex, MutexGuard};

use axum::extract::{Path, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use chrono::{Duration, SecondsFormat};
use rand::distributions::Alphanumeric;
use rand::Rng;
use serde_json::json;

use super::state::EmulatorState;

/// Path prefix of the metadata service.
pub const METADATA_PREFIX: &str = "/latest/meta-data/";

/// Default role name.
pub const DEFAULT_ROLE: &str = "tcbackup-emulator-role";

/// Default lifetime of issued credentials: short, so that the SDKs' "refresh
/// when 300 s or less remain" rule triggers within a test.
pub const DEFAULT_LIFETIME_SECS: i64 = 900;

#[derive(Debug)]
struct Config {
    role: Option<String>,
    lifetime: Duration,
    region: String,
    issued: u64,
}

/// Handle to configure the metadata service while the emulator runs.
#[derive(Clone)]
pub struct MetadataHandle {
    config: Arc<Mutex<Config>>,
    state: EmulatorState,
}

impl std::fmt::Debug for MetadataHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MetadataHandle")
            .field("role", &self.lock().role)
            .finish_non_exhaustive()
    }
}

/// One set of issued temporary credentials (as the JSON answer carries them).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IssuedCredentials {
    /// `TmpSecretId`.
    pub secret_id: String,
    /// `TmpSecretKey`.
    pub secret_key: String,
    /// `Token`.
    pub token: String,
    /// `ExpiredTime`, Unix seconds.
    pub expired_time: i64,
}

impl MetadataHandle {
    pub(crate) fn new(state: EmulatorState, region: &str) -> Self {
        Self {
            config: Arc::new(Mutex::new(Config {
                role: Some(DEFAULT_ROLE.to_string()),
                lifetime: Duration::seconds(DEFAULT_LIFETIME_SECS),
                region: region.to_string(),
                issued: 0,
            })),
            state,
        }
    }

    fn lock(&self) -> MutexGuard<'_, Config> {
        // Plain values: usable even if a holder panicked.
        self.config.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Bind a role (`Some`) or none (`None`: the role listing answers 404).
    pub fn set_role(&self, role: Option<&str>) {
        self.lock().role = role.map(str::to_string);
    }

    /// The bound role.
    pub fn role(&self) -> Option<String> {
        self.lock().role.clone()
    }

    /// Lifetime of credentials issued from now on.
    pub fn set_lifetime(&self, lifetime: Duration) {
        self.lock().lifetime = lifetime;
    }

    /// How many credential sets have been issued.
    pub fn issued(&self) -> u64 {
        self.lock().issued
    }

    /// Issue a new set for the bound role and register it with the API.
    pub fn issue(&self) -> IssuedCredentials {
        let lifetime = {
            let mut config = self.lock();
            config.issued += 1;
            config.lifetime
        };
        let mut rng = rand::thread_rng();
        let mut random = |n: usize| -> String {
            (&mut rng)
                .sample_iter(&Alphanumeric)
                .take(n)
                .map(char::from)
                .collect()
        };
        let issued = IssuedCredentials {
            secret_id: format!("AKIDtmp{}", random(29)),
            secret_key: random(32),
            token: random(96),
            expired_time: (self.state.clock().now() + lifetime).timestamp(),
        };
        let expires = chrono::DateTime::from_timestamp(issued.expired_time, 0)
            .unwrap_or_else(|| self.state.clock().now());
        self.state.add_temporary_credential(
            &issued.secret_id,
            &issued.secret_key,
            &issued.token,
            expires,
        );
        issued
    }
}

/// The router for `/latest/meta-data/…`.
pub(crate) fn router(handle: MetadataHandle) -> Router {
    Router::new()
        .route(
            "/latest/meta-data/cam/security-credentials/",
            get(role_name),
        )
        .route(
            "/latest/meta-data/cam/security-credentials/{role}",
            get(role_credentials),
        )
        .route("/latest/meta-data/placement/region", get(region))
        .route("/latest/meta-data/{*rest}", get(not_found))
        .with_state(handle)
}

fn text(status: StatusCode, body: String) -> Response {
    let mut response = (status, body).into_response();
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain"));
    response
}

fn not_found_response() -> Response {
    text(StatusCode::NOT_FOUND, "404 - Not Found".to_string())
}

async fn not_found() -> Response {
    not_found_response()
}

async fn role_name(State(handle): State<MetadataHandle>) -> Response {
    match handle.role() {
        Some(role) => text(StatusCode::OK, role),
        None => not_found_response(),
    }
}

async fn region(State(handle): State<MetadataHandle>) -> Response {
    let region = handle.lock().region.clone();
    text(StatusCode::OK, region)
}

async fn role_credentials(
    State(handle): State<MetadataHandle>,
    Path(role): Path<String>,
) -> Response {
    if handle.role().as_deref() != Some(role.as_str()) {
        return not_found_response();
    }
    let issued = handle.issue();
    let expiration = chrono::DateTime::from_timestamp(issued.expired_time, 0)
        .map(|t| t.to_rfc3339_opts(SecondsFormat::Secs, true))
        .unwrap_or_default();
    let body = json!({
        "TmpSecretId": issued.secret_id,
        "TmpSecretKey": issued.secret_key,
        "ExpiredTime": issued.expired_time,
        "Expiration": expiration,
        "Token": issued.token,
        "Code": "Success",
    });
    let mut response = (StatusCode::OK, body.to_string()).into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    response
}
