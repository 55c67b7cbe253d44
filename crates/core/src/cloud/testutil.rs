//! Test-only fakes for the cloud layer's unit tests: a scripted API server
//! that records and verifies every signed request, and a fake CVM metadata
//! service, both on 127.0.0.1:0.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use serde_json::{json, Value};

use crate::cloud::credentials::{CredentialProvider, MetadataConfig};
use tcbackup_signing::clock::Clock;
use tcbackup_signing::tc3::{sign, SignRequest};

/// One request as the fake API saw it.
#[derive(Debug, Clone)]
pub struct Captured {
    /// Lower-cased header names → values.
    pub headers: HashMap<String, String>,
    /// The raw body.
    pub body: Vec<u8>,
    /// Whether the TC3 signature matched the fake's secret key.
    pub signature_valid: bool,
}

impl Captured {
    /// A header value, or "" when absent.
    pub fn header(&self, name: &str) -> &str {
        self.headers.get(name).map(String::as_str).unwrap_or("")
    }

    /// The JSON body.
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).expect("request body is json")
    }

    /// The Signature= part of the Authorization header.
    pub fn signature(&self) -> String {
        self.header("authorization")
            .rsplit("Signature=")
            .next()
            .unwrap_or("")
            .to_string()
    }
}

/// What the fake answers.
pub enum Reply {
    /// HTTP 200 with `{"Response": fields + RequestId}`.
    Ok(Value),
    /// HTTP 200 with `{"Response": {"Error": {Code, Message}, RequestId}}`.
    Error(&'static str),
    /// A bare HTTP status with a text body.
    Status(u16),
}

type Handler = dyn Fn(usize, &Captured) -> Reply + Send + Sync;

struct ApiState {
    secret_key: String,
    requests: Mutex<Vec<Captured>>,
    handler: Box<Handler>,
}

/// A scripted API server.
pub struct FakeApi {
    /// `http://127.0.0.1:<port>`.
    pub endpoint: String,
    state: Arc<ApiState>,
}

impl FakeApi {
    /// Start a server that checks signatures against `secret_key` and answers
    /// request number `n` (0-based) with `handler(n, request)`.
    pub async fn start(
        secret_key: &str,
        handler: impl Fn(usize, &Captured) -> Reply + Send + Sync + 'static,
    ) -> Self {
        let state = Arc::new(ApiState {
            secret_key: secret_key.to_string(),
            requests: Mutex::new(Vec::new()),
            handler: Box::new(handler),
        });
        let router = Router::new()
            .fallback(api_handler)
            .with_state(Arc::clone(&state));
        let addr = serve(router).await;
        Self {
            endpoint: format!("http://{addr}"),
            state,
        }
    }

    /// Every request so far.
    pub fn requests(&self) -> Vec<Captured> {
        self.state.requests.lock().expect("lock").clone()
    }
}

async fn serve(router: Router) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind loopback");
    let addr = listener.local_addr().expect("local addr");
    tokio::spawn(async move {
        let _ = axum::serve(listener, router).await;
    });
    addr
}

fn verify(headers: &HashMap<String, String>, body: &[u8], secret_key: &str) -> bool {
    let get = |n: &str| headers.get(n).map(String::as_str).unwrap_or("");
    let auth = get("authorization");
    let Some(scope) = auth
        .split("Credential=")
        .nth(1)
        .and_then(|s| s.split(',').next())
    else {
        return false;
    };
    let id = scope.split('/').next().unwrap_or("");
    let service = scope.split('/').nth(2).unwrap_or("");
    let Ok(timestamp) = get("x-tc-timestamp").parse::<i64>() else {
        return false;
    };
    let signed = [("content-type", get("content-type")), ("host", get("host"))];
    let secret_key = key_for(id, secret_key);
    let expected = sign(
        &SignRequest {
            method: "POST",
            query: "",
            headers: &signed,
            payload: body,
            unsigned_payload: false,
            service,
            timestamp,
        },
        &secret_key,
    );
    auth == expected.authorization(id)
}

/// The key the fake expects for `secret_id`: temporary ids `tmp-id-N` pair
/// with `tmp-key-N` (as `FakeMetadata` hands them out), others with the
/// fake's configured key.
fn key_for(secret_id: &str, default_key: &str) -> String {
    match secret_id.strip_prefix("tmp-id-") {
        Some(n) => format!("tmp-key-{n}"),
        None => default_key.to_string(),
    }
}

async fn api_handler(
    State(state): State<Arc<ApiState>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let headers: HashMap<String, String> = headers
        .iter()
        .map(|(k, v)| {
            (
                k.as_str().to_ascii_lowercase(),
                v.to_str().unwrap_or("").to_string(),
            )
        })
        .collect();
    let captured = Captured {
        signature_valid: verify(&headers, &body, &state.secret_key),
        headers,
        body: body.to_vec(),
    };
    let index = {
        let mut requests = state.requests.lock().expect("lock");
        requests.push(captured.clone());
        requests.len() - 1
    };
    let request_id = format!("req-{index}");
    let reply = (state.handler)(index, &captured);
    let envelope = match reply {
        Reply::Ok(mut fields) => {
            fields["RequestId"] = json!(request_id);
            json!({ "Response": fields })
        }
        Reply::Error(code) => json!({ "Response": {
            "Error": { "Code": code, "Message": format!("fake {code}") },
            "RequestId": request_id,
        }}),
        Reply::Status(status) => {
            let status = StatusCode::from_u16(status).expect("status");
            return (status, "gateway says no").into_response();
        }
    };
    (
        [(axum::http::header::CONTENT_TYPE, "application/json")],
        envelope.to_string(),
    )
        .into_response()
}

/// A fake CVM metadata service handing out numbered temporary keys
/// (`tmp-id-N`, `tmp-key-N`, `tmp-token-N`, N from 1) that expire
/// `lifetime_secs` after the fake's `now()`.
pub struct FakeMetadata {
    /// The base URL (`…/latest/meta-data/`).
    pub base_url: String,
    fetches: Arc<AtomicUsize>,
}

struct MetaState {
    role: Option<String>,
    fetches: Arc<AtomicUsize>,
    expiry: Box<dyn Fn() -> i64 + Send + Sync>,
}

impl FakeMetadata {
    /// Start with `role` bound (None: 404 on the role list); each document's
    /// `ExpiredTime` is `expiry()`.
    pub async fn start(
        role: Option<&str>,
        expiry: impl Fn() -> i64 + Send + Sync + 'static,
    ) -> Self {
        let fetches = Arc::new(AtomicUsize::new(0));
        let state = Arc::new(MetaState {
            role: role.map(str::to_string),
            fetches: Arc::clone(&fetches),
            expiry: Box::new(expiry),
        });
        let router = Router::new()
            .route(
                "/latest/meta-data/cam/security-credentials/",
                get(role_list),
            )
            .route(
                "/latest/meta-data/cam/security-credentials/{role}",
                get(role_creds),
            )
            .with_state(state);
        let addr = serve(router).await;
        Self {
            base_url: format!("http://{addr}/latest/meta-data/"),
            fetches,
        }
    }

    /// A `CredentialProvider::cvm_role` reading this fake with the default
    /// settings; panics unless a role is bound (a test setup error).
    pub async fn role_provider(&self, clock: Arc<dyn Clock>) -> CredentialProvider {
        CredentialProvider::cvm_role(
            &MetadataConfig {
                base_url: self.base_url.clone(),
                ..MetadataConfig::default()
            },
            clock,
        )
        .await
        .expect("metadata answers")
        .expect("a role is bound")
    }

    /// How many credential documents were served.
    pub fn fetches(&self) -> usize {
        self.fetches.load(Ordering::SeqCst)
    }
}

async fn role_list(State(state): State<Arc<MetaState>>) -> Response {
    match &state.role {
        Some(role) => role.clone().into_response(),
        None => (StatusCode::NOT_FOUND, "no role").into_response(),
    }
}

async fn role_creds(State(state): State<Arc<MetaState>>, Path(role): Path<String>) -> Response {
    if state.role.as_deref() != Some(role.as_str()) {
        return (StatusCode::NOT_FOUND, "no such role").into_response();
    }
    let n = state.fetches.fetch_add(1, Ordering::SeqCst) + 1;
    let expired = (state.expiry)();
    let doc = json!({
        "TmpSecretId": format!("tmp-id-{n}"),
        "TmpSecretKey": format!("tmp-key-{n}"),
        "Token": format!("tmp-token-{n}"),
        "ExpiredTime": expired,
        "Expiration": "2030-01-01T00:00:00Z",
        "Code": "Success",
    });
    (
        [(axum::http::header::CONTENT_TYPE, "application/json")],
        doc.to_string(),
    )
        .into_response()
}
