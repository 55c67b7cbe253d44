//! The API 3.0 fake on path `/`: routing by `X-TC-Action` / `X-TC-Version`,
//! the service from the host (`redis.…`, `postgres.…`) or else from the
//! credential scope, signature checking (over the `Host` the request
//! carries, so a signature made for another host fails), the host's region
//! rules (`host`), faults, rate limits, then the Redis or PostgreSQL action. Every processed request is answered with
//! HTTP 200, `Content-Type: application/json` and the
//! `{"Response":{…,"RequestId":…}}` envelope (reference §1.2, §10.1).

pub(crate) mod auth;
pub mod faults;
pub(crate) mod host;
pub(crate) mod params;
pub(crate) mod postgres;
pub(crate) mod ratelimit;
pub(crate) mod redis;

use std::sync::Arc;

use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode, Uri};
use axum::response::Response;
use axum::routing::any;
use axum::Router;
use chrono::{DateTime, Utc};
use serde_json::{json, Map, Value};

use self::params::Params;
use super::state::EmulatorState;
use tcbackup_signing::service::Service;

/// An error answer: `Response.Error.{Code,Message}`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ApiError {
    pub(crate) code: String,
    pub(crate) message: String,
}

impl ApiError {
    pub(crate) fn new(code: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            code: code.into(),
            message: message.into(),
        }
    }

    /// `RequestLimitExceeded` in the documented message form.
    pub(crate) fn rate_limited(seen: u32, limit: u32) -> Self {
        Self::new(
            "RequestLimitExceeded",
            format!(
                "Your current request times equals to `{seen}` in a second, which exceeds the frequency limit `{limit}` for a second. Please reduce the frequency of calls."
            ),
        )
    }
}

/// What the API router needs: the state and the base URL of the COS side.
#[derive(Clone)]
pub(crate) struct ApiContext {
    pub(crate) state: EmulatorState,
    /// `http://127.0.0.1:PORT`, the host of every public presigned URL.
    pub(crate) base_url: Arc<str>,
    /// The intranet COS host (`InnerDownloadUrl`, PostgreSQL `INTRANET`).
    pub(crate) intranet_base_url: Arc<str>,
}

/// One authenticated call, handed to an action.
pub(crate) struct Call<'a> {
    pub(crate) params: Params,
    /// `X-TC-Region`, when sent: only instances of that region are visible.
    pub(crate) region: Option<String>,
    pub(crate) now: DateTime<Utc>,
    pub(crate) ctx: &'a ApiContext,
}

impl Call<'_> {
    /// Whether an instance in `region` is visible to this call.
    pub(crate) fn sees_region(&self, region: &str) -> bool {
        self.region.as_deref().is_none_or(|r| r == region)
    }
}

/// An action's implementation: the output fields of `Response`.
pub(crate) type Action = fn(&Call<'_>) -> Result<Map<String, Value>, ApiError>;

/// The router that answers `/`.
pub(crate) fn router(ctx: ApiContext) -> Router {
    Router::new().route("/", any(handle)).with_state(ctx)
}

async fn handle(
    State(ctx): State<ApiContext>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let query = uri.query().unwrap_or("");
    match process(&ctx, &method, query, &headers, &body) {
        Outcome::Answer(fields) => json_response(fields),
        Outcome::Gateway(status) => gateway_response(status),
    }
}

enum Outcome {
    Answer(Map<String, Value>),
    Gateway(u16),
}

fn json_response(mut fields: Map<String, Value>) -> Response {
    fields.insert(
        "RequestId".to_string(),
        Value::String(uuid::Uuid::new_v4().to_string()),
    );
    let body = json!({ "Response": fields }).to_string();
    let mut response = Response::new(Body::from(body));
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    response
}

fn error_fields(err: &ApiError) -> Map<String, Value> {
    let mut fields = Map::new();
    fields.insert(
        "Error".to_string(),
        json!({ "Code": err.code, "Message": err.message }),
    );
    fields
}

fn gateway_response(status: u16) -> Response {
    let status = StatusCode::from_u16(status).unwrap_or(StatusCode::BAD_GATEWAY);
    let reason = status.canonical_reason().unwrap_or("Bad Gateway");
    let code = status.as_u16();
    let body = format!(
        "<html>\r\n<head><title>{code} {reason}</title></head>\r\n<body>\r\n<center><h1>{code} {reason}</h1></center>\r\n<hr><center>stgw</center>\r\n</body>\r\n</html>\r\n"
    );
    let mut response = Response::new(Body::from(body));
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static("text/html"));
    response
}

fn header_str<'h>(headers: &'h HeaderMap, name: &str) -> Option<&'h str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

fn service_from_name(name: &str) -> Option<Service> {
    match name {
        "redis" => Some(Service::Redis),
        "postgres" => Some(Service::Postgres),
        _ => None,
    }
}

fn version_of(service: Service) -> &'static str {
    match service {
        Service::Redis => redis::VERSION,
        Service::Postgres => postgres::VERSION,
    }
}

fn process(
    ctx: &ApiContext,
    method: &Method,
    query: &str,
    headers: &HeaderMap,
    body: &[u8],
) -> Outcome {
    let action = header_str(headers, "x-tc-action").unwrap_or("").to_string();
    // Gateway faults come before the API proper, as from a load balancer.
    let gateway = {
        let mut world = ctx.state.lock();
        *world.counters.entry(action.clone()).or_insert(0) += 1;
        match world
            .faults
            .get(&action)
            .and_then(|q| q.front())
            .or_else(|| world.faults.get("*").and_then(|q| q.front()))
        {
            Some(faults::ApiFault::Gateway(status)) => {
                let status = *status;
                world.take_fault(&action);
                Some(status)
            }
            _ => None,
        }
    };
    if let Some(status) = gateway {
        tracing::debug!(action = %action, status, "emulator: injected gateway answer");
        return Outcome::Gateway(status);
    }
    let result = authenticate_and_run(ctx, method, query, headers, body, &action);
    let fields = match result {
        Ok(fields) => fields,
        Err(err) => {
            tracing::debug!(action = %action, code = %err.code, "emulator: error answer");
            error_fields(&err)
        }
    };
    Outcome::Answer(fields)
}

fn authenticate_and_run(
    ctx: &ApiContext,
    method: &Method,
    query: &str,
    headers: &HeaderMap,
    body: &[u8],
    action: &str,
) -> Result<Map<String, Value>, ApiError> {
    if method != Method::POST && method != Method::GET {
        return Err(ApiError::new(
            "UnsupportedProtocol",
            format!("The HTTP method {method} is not supported; use POST or GET."),
        ));
    }
    let authorization = header_str(headers, "authorization").ok_or_else(|| {
        ApiError::new(
            "AuthFailure.InvalidAuthorization",
            "Authorization is invalid: the header is missing.",
        )
    })?;
    let auth = auth::parse_authorization(authorization)?;
    let host_name = header_str(headers, "host").unwrap_or("");
    let api_host = host::parse(host_name);
    let service_name = match api_host.service {
        Some(service) => service.as_str().to_string(),
        None => auth.service.clone(),
    };
    let clock = ctx.state.clock().clone();
    let now = clock.now();
    let signed = auth::SignedRequest {
        method: method.as_str(),
        query,
        headers,
        body,
    };
    auth::verify(
        &signed,
        &auth,
        &service_name,
        |id| ctx.state.lock().credentials.get(id).cloned(),
        now.timestamp(),
    )?;
    let service = service_from_name(&service_name).ok_or_else(|| {
        ApiError::new(
            "NoSuchProduct",
            format!("The product `{service_name}` is not served here."),
        )
    })?;
    let version = header_str(headers, "x-tc-version").unwrap_or("");
    if version.is_empty() {
        return Err(ApiError::new(
            "MissingParameter",
            "The request is missing a required parameter `Version`.",
        ));
    }
    if version != version_of(service) {
        return Err(ApiError::new(
            "NoSuchVersion",
            format!(
                "The requested version `{version}` of service `{service_name}` does not exist."
            ),
        ));
    }
    let handler = match service {
        Service::Redis => redis::action(action),
        Service::Postgres => postgres::action(action),
    }
    .ok_or_else(|| {
        ApiError::new(
            "InvalidAction",
            format!("The requested action `{action}` of service `{service_name}` does not exist."),
        )
    })?;
    let region = header_str(headers, "x-tc-region")
        .map(str::trim)
        .filter(|r| !r.is_empty())
        .map(str::to_string);
    host::check_region(host_name, &api_host.front, region.as_deref())?;
    {
        let mut world = ctx.state.lock();
        if let Some(fault) = world.take_fault(action) {
            if let Some(err) = fault.api_error() {
                return Err(err);
            }
        }
        world.rate.check(
            service,
            action,
            region.as_deref().unwrap_or(""),
            &auth.secret_id,
            tokio::time::Instant::now(),
        )?;
    }
    let invalid_code = match service {
        Service::Redis => redis::INVALID_VALUE,
        Service::Postgres => postgres::INVALID_VALUE,
    };
    let params = if method == Method::GET {
        Params::from_query(query, invalid_code)?
    } else {
        Params::from_json(body, invalid_code)?
    };
    ctx.state.lock().record_params(action, params.to_json());
    let call = Call {
        params,
        region,
        now,
        ctx,
    };
    handler(&call)
}

/// An action's output from a `json!({…})` object literal.
pub(crate) fn to_map(value: Value) -> Map<String, Value> {
    match value {
        Value::Object(map) => map,
        // Every caller passes a `json!({…})` object literal.
        _ => unreachable!("action output is an object literal"),
    }
}

/// `ord`, or its reverse when the caller asked for descending order.
pub(crate) fn directed(ord: std::cmp::Ordering, descending: bool) -> std::cmp::Ordering {
    if descending {
        ord.reverse()
    } else {
        ord
    }
}

/// A list answer: `TotalCount` (every item of the full result list) and,
/// under `key`, the items at `Offset`/`Limit` as JSON.
pub(crate) fn page<T>(
    key: &str,
    items: &[T],
    offset: usize,
    limit: usize,
    item_json: impl FnMut(&T) -> Value,
) -> Map<String, Value> {
    let set: Vec<Value> = items
        .iter()
        .skip(offset)
        .take(limit)
        .map(item_json)
        .collect();
    let mut out = Map::new();
    out.insert("TotalCount".to_string(), json!(items.len()));
    out.insert(key.to_string(), Value::Array(set));
    out
}
