//! One GET or HEAD request to the fake COS: status faults, presigned-URL
//! checks (signature, then validity window), traffic limit, conditional
//! headers, Range, and the success headers; the body is streamed by `body`.

use std::borrow::Cow;
use std::sync::Arc;

use axum::body::Body;
use axum::extract::State;
use axum::http::header::{
    ACCEPT_RANGES, CONTENT_LENGTH, CONTENT_RANGE, CONTENT_TYPE, ETAG, HOST, IF_MATCH,
    IF_NONE_MATCH, LAST_MODIFIED, RANGE, SERVER,
};
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::Response;
use percent_encoding::percent_decode_str;

use super::body::BodyStream;
use super::faults::StatusFault;
use super::{CosNetwork, CosStore, Listener};
use tcbackup_signing::cos::{signatures_match, CosAuthError, UrlAuth};

/// `x-cos-traffic-limit` bounds in bit/s (§9.5).
const TRAFFIC_LIMIT_BITS: std::ops::RangeInclusive<u64> = 819_200..=838_860_800;

/// What a single request is about, for error bodies and headers.
struct Ctx {
    request_id: String,
    resource: String,
}

/// One request as the handler sees it.
struct Request<'a> {
    method: &'a Method,
    query: &'a str,
    headers: &'a HeaderMap,
    /// The decoded URI path, starting with `/` (what the signature covers).
    path: &'a str,
    /// The object key (the path without its leading `/`).
    key: &'a str,
    ctx: Ctx,
}

/// Serve one request (the axum handler of `router`).
pub(crate) async fn serve(
    State(listener): State<Listener>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
) -> Response {
    let raw_path = uri.path();
    let path = percent_decode_str(raw_path)
        .decode_utf8_lossy()
        .into_owned();
    let key = path.strip_prefix('/').unwrap_or(&path);
    let host = header_str(&headers, HOST.as_str()).unwrap_or_default();
    let range = header_str(&headers, RANGE.as_str());
    let store = &listener.store;
    let record = store.key_stats(key).begin(
        method.as_str(),
        range.as_deref(),
        listener.network == CosNetwork::Intranet,
    );
    let req = Request {
        method: &method,
        query: uri.query().unwrap_or(""),
        headers: &headers,
        path: &path,
        key,
        ctx: Ctx {
            request_id: new_id(),
            // Host and path only: the query holds the signature.
            resource: format!("{host}{raw_path}"),
        },
    };
    let response = match respond(store, listener.network, &req, &record).await {
        Ok(response) => response,
        Err(reject) => reject.render(&req.ctx),
    };
    record.set_status(response.status().as_u16());
    tracing::debug!(%method, %key, status = response.status().as_u16(), "emulated cos request");
    response
}

/// A status fault, if one fires for this request.
fn status_fault(store: &CosStore, req: &Request<'_>) -> Result<(), Reject> {
    match store.faults().take_status(req.key) {
        None => Ok(()),
        Some(StatusFault::Deny) => Err(Reject::new(
            StatusCode::FORBIDDEN,
            "AccessDenied",
            "Access Denied.",
        )),
        Some(StatusFault::ServerError(code)) => {
            let status = StatusCode::from_u16(code)
                .ok()
                .filter(|s| s.is_server_error())
                .unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
            Err(if status == StatusCode::SERVICE_UNAVAILABLE {
                Reject::new(
                    status,
                    "ServiceUnavailable",
                    "Please reduce your request rate.",
                )
            } else {
                Reject::new(
                    status,
                    "InternalError",
                    "We encountered an internal error. Please try again.",
                )
            })
        }
    }
}

/// The presigned-URL checks: parameters, SecretId, signature over the method,
/// then the validity window.
fn check_auth(store: &CosStore, req: &Request<'_>) -> Result<UrlAuth, Reject> {
    let auth = UrlAuth::from_query(req.query).map_err(|err| {
        let message = match err {
            CosAuthError::MissingParam(_) => "Access Denied.".to_string(),
            other => other.to_string(),
        };
        Reject::new(StatusCode::FORBIDDEN, "AccessDenied", message)
    })?;
    let secret_key = if auth.access_key == store.secret_id {
        store.secret_key.clone()
    } else if let Some(temp) = store.temporary_key(&auth.access_key) {
        let token = header_str(req.headers, "x-cos-security-token")
            .or_else(|| auth.param("x-cos-security-token").map(str::to_string));
        if !token.is_some_and(|t| signatures_match(&t, temp.token.expose())) {
            // Assumed answer: the COS error table names no code for a wrong token.
            return Err(Reject::new(
                StatusCode::FORBIDDEN,
                "AccessDenied",
                "Invalid security token.",
            ));
        }
        if store.clock.unix() > temp.expires {
            return Err(Reject::new(
                StatusCode::BAD_REQUEST,
                "ExpiredToken",
                "The provided token has expired.",
            ));
        }
        temp.secret_key
    } else {
        return Err(Reject::new(
            StatusCode::FORBIDDEN,
            "InvalidAccessKeyId",
            "The access key Id you provided does not exist in our records.",
        ));
    };
    let signed_header = |name: &str| header_str(req.headers, name);
    if !auth.verify(
        req.method.as_str(),
        req.path,
        signed_header,
        secret_key.expose(),
    ) {
        return Err(Reject::new(StatusCode::FORBIDDEN,
            "SignatureDoesNotMatch",
            "The calculated signature does not match the signature you provided. Check your key and signing method.",
        ));
    }
    // Checked once, when the request arrives: a response already streaming
    // is not affected by the URL expiring later.
    let now = store.clock.unix();
    let (start, end) = auth.validity();
    if now > end || now < start {
        return Err(Reject::new(
            StatusCode::FORBIDDEN,
            "AccessDenied",
            "Request has expired",
        ));
    }
    Ok(auth)
}

/// The `x-cos-traffic-limit` (header, else query) as bytes/s; 400 outside COS bounds.
fn traffic_rate(req: &Request<'_>, auth: &UrlAuth) -> Result<Option<u64>, Reject> {
    let value = header_str(req.headers, "x-cos-traffic-limit")
        .or_else(|| auth.param("x-cos-traffic-limit").map(str::to_string));
    let Some(value) = value else {
        return Ok(None);
    };
    match value.trim().parse::<u64>() {
        Ok(bits) if TRAFFIC_LIMIT_BITS.contains(&bits) => Ok(Some(bits / 8)),
        _ => Err(Reject::new(
            StatusCode::BAD_REQUEST,
            "InvalidArgument",
            "x-cos-traffic-limit must be between 819200 and 838860800 bit/s",
        )),
    }
}

async fn respond(
    store: &Arc<CosStore>,
    network: CosNetwork,
    req: &Request<'_>,
    record: &Arc<super::stats::LiveRecord>,
) -> Result<Response, Reject> {
    let (key, headers, ctx) = (req.key, req.headers, &req.ctx);
    if key.is_empty() || key.starts_with("latest/meta-data/") {
        return Err(Reject::no_such_key());
    }
    status_fault(store, req)?;
    let auth = check_auth(store, req)?;
    if network == CosNetwork::Public && store.is_intranet_only(&auth.signature) {
        // Assumed answer (reference §11): COS's code for a download from
        // outside an intranet-only policy is not documented.
        return Err(Reject::new(
            StatusCode::FORBIDDEN,
            "AccessDenied",
            "Access Denied.",
        ));
    }
    let traffic_rate = traffic_rate(req, &auth)?;

    let Some(version) = store.version(key) else {
        return Err(Reject::no_such_key());
    };
    let last_modified = version
        .last_modified
        .format("%a, %d %b %Y %H:%M:%S GMT")
        .to_string();
    if let Some(condition) = header_str(headers, IF_MATCH.as_str()) {
        if !etag_matches(&condition, &version.etag) {
            return Err(Reject::new(
                StatusCode::PRECONDITION_FAILED,
                "PreconditionFailed",
                "At least one of the pre-conditions you specified did not hold.",
            ));
        }
    }
    if let Some(condition) = header_str(headers, IF_NONE_MATCH.as_str()) {
        if etag_matches(&condition, &version.etag) {
            return Ok(build(
                base(StatusCode::NOT_MODIFIED, ctx)
                    .header(ETAG, &version.etag)
                    .header(LAST_MODIFIED, &last_modified),
                Body::empty(),
            ));
        }
    }

    let crc = if version.opts.legacy_no_crc {
        None
    } else {
        match version.crc64().await {
            Ok(crc) => Some(crc),
            Err(err) => {
                tracing::warn!(%key, error = %err, "emulated cos cannot read object");
                return Err(Reject::new(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "InternalError",
                    "We encountered an internal error. Please try again.",
                ));
            }
        }
    };

    let len = version.len;
    let (status, first, last_exclusive) =
        match parse_range(header_str(headers, RANGE.as_str()).as_deref(), len) {
            RangeRequest::Whole => (StatusCode::OK, 0, len),
            RangeRequest::Unsatisfiable => {
                let mut reject = Reject::new(
                    StatusCode::RANGE_NOT_SATISFIABLE,
                    "InvalidRange",
                    "The requested range is not satisfiable",
                );
                reject.unsatisfied_len = Some(len);
                return Err(reject);
            }
            RangeRequest::Single(a, b) => {
                if store.faults().take_ignore_range(key) {
                    (StatusCode::OK, 0, len)
                } else {
                    (StatusCode::PARTIAL_CONTENT, a, b + 1)
                }
            }
        };

    let mut builder = base(status, ctx)
        .header(CONTENT_TYPE, "application/octet-stream")
        .header(CONTENT_LENGTH, last_exclusive - first)
        .header(ACCEPT_RANGES, "bytes")
        .header(ETAG, &version.etag)
        .header(LAST_MODIFIED, &last_modified);
    if status == StatusCode::PARTIAL_CONTENT {
        builder = builder.header(
            CONTENT_RANGE,
            format!("bytes {first}-{}/{len}", last_exclusive - 1),
        );
    }
    if let Some(crc) = crc {
        // Always the whole-object value, on 206 too (§9.8).
        builder = builder.header("x-cos-hash-crc64ecma", crc.to_string());
    }
    if *req.method == Method::HEAD || first == last_exclusive {
        return Ok(build(builder, Body::empty()));
    }

    let mut plan = store.faults().take_body(key);
    plan.rate = [plan.rate, traffic_rate, store.rate_limit()]
        .into_iter()
        .flatten()
        .min();
    let stream = BodyStream::new(
        &version,
        first,
        last_exclusive,
        plan,
        Arc::clone(store),
        key.to_string(),
        Arc::clone(record),
    );
    Ok(build(builder, Body::from_stream(stream.into_stream())))
}

/// The parsed `Range` header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum RangeRequest {
    /// No usable single range: serve the whole object (also for multi-range).
    Whole,
    /// One range, inclusive bounds clamped to the object.
    Single(u64, u64),
    /// The first byte is at or past the end.
    Unsatisfiable,
}

fn parse_range(header: Option<&str>, len: u64) -> RangeRequest {
    let Some(spec) = header.and_then(|h| h.trim().strip_prefix("bytes=")) else {
        return RangeRequest::Whole;
    };
    if spec.contains(',') {
        // COS supports one range only; never answer multipart/byteranges.
        return RangeRequest::Whole;
    }
    let Some((first, last)) = spec.trim().split_once('-') else {
        return RangeRequest::Whole;
    };
    let (first, last) = (first.trim(), last.trim());
    if first.is_empty() {
        // Suffix range: the last `n` bytes.
        return match last.parse::<u64>() {
            Ok(0) => RangeRequest::Unsatisfiable,
            Ok(_) if len == 0 => RangeRequest::Unsatisfiable,
            Ok(n) => RangeRequest::Single(len - n.min(len), len - 1),
            Err(_) => RangeRequest::Whole,
        };
    }
    let Ok(first) = first.parse::<u64>() else {
        return RangeRequest::Whole;
    };
    let last = if last.is_empty() {
        None
    } else {
        match last.parse::<u64>() {
            Ok(l) if l >= first => Some(l),
            // An invalid range is ignored (RFC 9110 §14.2).
            _ => return RangeRequest::Whole,
        }
    };
    if first >= len {
        return RangeRequest::Unsatisfiable;
    }
    RangeRequest::Single(first, last.unwrap_or(u64::MAX).min(len - 1))
}

/// Whether an `If-Match`/`If-None-Match` value names `etag` (or is `*`).
fn etag_matches(condition: &str, etag: &str) -> bool {
    let bare = etag.trim_matches('"');
    condition.split(',').map(str::trim).any(|c| {
        let c = c.strip_prefix("W/").unwrap_or(c);
        c == "*" || c.trim_matches('"') == bare
    })
}

fn header_str(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
}

fn new_id() -> String {
    uuid::Uuid::new_v4().simple().to_string()
}

fn base(status: StatusCode, ctx: &Ctx) -> axum::http::response::Builder {
    Response::builder()
        .status(status)
        .header(SERVER, "tencent-cos")
        .header("x-cos-request-id", &ctx.request_id)
}

fn build(builder: axum::http::response::Builder, body: Body) -> Response {
    builder.body(body).unwrap_or_else(|err| {
        // Only our own header values go in; report rather than panic if one is bad.
        tracing::error!(error = %err, "emulated cos built an invalid response");
        let mut response = Response::new(Body::empty());
        *response.status_mut() = StatusCode::INTERNAL_SERVER_ERROR;
        response
    })
}

/// A COS error answer, before it is rendered as XML.
#[derive(Debug)]
struct Reject {
    status: StatusCode,
    code: &'static str,
    message: Cow<'static, str>,
    /// For 416: the object length, sent as `Content-Range: bytes */len`.
    unsatisfied_len: Option<u64>,
}

impl Reject {
    fn new(status: StatusCode, code: &'static str, message: impl Into<Cow<'static, str>>) -> Self {
        Self {
            status,
            code,
            message: message.into(),
            unsatisfied_len: None,
        }
    }

    fn no_such_key() -> Self {
        Self::new(
            StatusCode::NOT_FOUND,
            "NoSuchKey",
            "The specified key does not exist.",
        )
    }

    fn render(self, ctx: &Ctx) -> Response {
        let mut response = error(ctx, self.status, self.code, &self.message);
        if let Some(len) = self.unsatisfied_len {
            if let Ok(value) = format!("bytes */{len}").parse() {
                response.headers_mut().insert(CONTENT_RANGE, value);
            }
        }
        response
    }
}

fn xml_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            c => out.push(c),
        }
    }
    out
}

/// A COS error answer: `application/xml` `<Error>` body (§9.4).
fn error(ctx: &Ctx, status: StatusCode, code: &str, message: &str) -> Response {
    let body = format!(
        "<?xml version='1.0' encoding='utf-8' ?>\n<Error>\n\t<Code>{}</Code>\n\t<Message>{}</Message>\n\t<Resource>{}</Resource>\n\t<RequestId>{}</RequestId>\n\t<TraceId>{}</TraceId>\n</Error>\n",
        xml_escape(code),
        xml_escape(message),
        xml_escape(&ctx.resource),
        xml_escape(&ctx.request_id),
        new_id(),
    );
    build(
        base(status, ctx)
            .header(CONTENT_TYPE, "application/xml")
            .header(CONTENT_LENGTH, body.len()),
        Body::from(body),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_follow_cos_and_rfc_rules() {
        use RangeRequest::*;
        let cases: &[(Option<&str>, u64, RangeRequest)] = &[
            (None, 10, Whole),
            (Some("bytes=0-4"), 10, Single(0, 4)),
            (Some("bytes=5-"), 10, Single(5, 9)),
            (Some("bytes=5-100"), 10, Single(5, 9)),
            (Some("bytes=9-9"), 10, Single(9, 9)),
            (Some("bytes=10-"), 10, Unsatisfiable),
            (Some("bytes=10-20"), 10, Unsatisfiable),
            (Some("bytes=0-"), 0, Unsatisfiable),
            (Some("bytes=-3"), 10, Single(7, 9)),
            (Some("bytes=-30"), 10, Single(0, 9)),
            (Some("bytes=-0"), 10, Unsatisfiable),
            (Some("bytes=0-1,4-5"), 10, Whole),
            (Some("bytes=5-4"), 10, Whole),
            (Some("bytes=x-4"), 10, Whole),
            (Some("items=0-4"), 10, Whole),
        ];
        for (header, len, expected) in cases {
            assert_eq!(parse_range(*header, *len), *expected, "{header:?} of {len}");
        }
    }

    #[test]
    fn etag_conditions() {
        assert!(etag_matches("\"abc\"", "\"abc\""));
        assert!(etag_matches("abc", "\"abc\""));
        assert!(etag_matches("\"x\", W/\"abc\"", "\"abc\""));
        assert!(etag_matches("*", "\"abc\""));
        assert!(!etag_matches("\"abd\"", "\"abc\""));
    }

    #[test]
    fn xml_error_escapes_and_names_the_resource() {
        let ctx = Ctx {
            request_id: "rid".into(),
            resource: "h/a&b".into(),
        };
        let response = error(
            &ctx,
            StatusCode::FORBIDDEN,
            "AccessDenied",
            "Request has expired",
        );
        assert_eq!(response.status(), StatusCode::FORBIDDEN);
        assert_eq!(response.headers()[CONTENT_TYPE], "application/xml");
        assert_eq!(response.headers()[SERVER], "tencent-cos");
    }
}
