//! One GET or HEAD request to the fake COS: status faults, presigned-URL
//! checks (signature, then validity window), traffic limit, conditional
//! headers, Range, and the success headers; the body is streamed by `body`.

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
use super::CosStore;
use crate::cos::{CosAuthError, UrlAuth};

/// `x-cos-traffic-limit` bounds in bit/s (§9.5).
const TRAFFIC_LIMIT_BITS: std::ops::RangeInclusive<u64> = 819_200..=838_860_800;

/// What a single request is about, for error bodies and headers.
struct Ctx {
    request_id: String,
    resource: String,
}

/// Serve one request (the axum handler of `router`).
pub(crate) async fn serve(
    State(store): State<Arc<CosStore>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
) -> Response {
    let raw_path = uri.path();
    let path = percent_decode_str(raw_path)
        .decode_utf8_lossy()
        .into_owned();
    let key = path.strip_prefix('/').unwrap_or(&path).to_string();
    let host = header_str(&headers, HOST.as_str()).unwrap_or_default();
    let ctx = Ctx {
        request_id: new_id(),
        // Host and path only: the query holds the signature.
        resource: format!("{host}{raw_path}"),
    };
    let range = header_str(&headers, RANGE.as_str());
    let record = store
        .key_stats(&key)
        .begin(method.as_str(), range.as_deref());
    let response = respond(&store, &method, &uri, &headers, &path, &key, &ctx, &record).await;
    record.set_status(response.status().as_u16());
    tracing::debug!(%method, %key, status = response.status().as_u16(), "emulated cos request");
    response
}

#[allow(clippy::too_many_arguments)]
async fn respond(
    store: &Arc<CosStore>,
    method: &Method,
    uri: &Uri,
    headers: &HeaderMap,
    path: &str,
    key: &str,
    ctx: &Ctx,
    record: &Arc<super::stats::LiveRecord>,
) -> Response {
    if key.is_empty() || key.starts_with("latest/meta-data/") {
        return no_such_key(ctx);
    }
    match store.faults().take_status(key) {
        Some(StatusFault::Deny) => {
            return error(ctx, StatusCode::FORBIDDEN, "AccessDenied", "Access Denied.");
        }
        Some(StatusFault::ServerError(code)) => {
            let status = StatusCode::from_u16(code)
                .ok()
                .filter(|s| s.is_server_error())
                .unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
            return if status == StatusCode::SERVICE_UNAVAILABLE {
                error(
                    ctx,
                    status,
                    "ServiceUnavailable",
                    "Please reduce your request rate.",
                )
            } else {
                error(
                    ctx,
                    status,
                    "InternalError",
                    "We encountered an internal error. Please try again.",
                )
            };
        }
        None => {}
    }

    let query = uri.query().unwrap_or("");
    let auth = match UrlAuth::from_query(query) {
        Ok(auth) => auth,
        Err(CosAuthError::MissingParam(_)) => {
            return error(ctx, StatusCode::FORBIDDEN, "AccessDenied", "Access Denied.");
        }
        Err(err) => {
            return error(ctx, StatusCode::FORBIDDEN, "AccessDenied", &err.to_string());
        }
    };
    if auth.access_key != store.secret_id {
        return error(
            ctx,
            StatusCode::FORBIDDEN,
            "InvalidAccessKeyId",
            "The access key Id you provided does not exist in our records.",
        );
    }
    let signed_header = |name: &str| header_str(headers, name);
    if !auth.verify(
        method.as_str(),
        path,
        signed_header,
        store.secret_key.expose(),
    ) {
        return error(
            ctx,
            StatusCode::FORBIDDEN,
            "SignatureDoesNotMatch",
            "The calculated signature does not match the signature you provided. Check your key and signing method.",
        );
    }
    // Checked once, when the request arrives: a response already streaming
    // is not affected by the URL expiring later.
    let now = store.clock.unix();
    let (start, end) = auth.validity();
    if now > end || now < start {
        return error(
            ctx,
            StatusCode::FORBIDDEN,
            "AccessDenied",
            "Request has expired",
        );
    }

    let traffic_limit = header_str(headers, "x-cos-traffic-limit")
        .or_else(|| auth.param("x-cos-traffic-limit").map(str::to_string));
    let traffic_rate = match traffic_limit {
        None => None,
        Some(value) => match value.trim().parse::<u64>() {
            Ok(bits) if TRAFFIC_LIMIT_BITS.contains(&bits) => Some(bits / 8),
            _ => {
                return error(
                    ctx,
                    StatusCode::BAD_REQUEST,
                    "InvalidArgument",
                    "x-cos-traffic-limit must be between 819200 and 838860800 bit/s",
                );
            }
        },
    };

    let Some(version) = store.version(key) else {
        return no_such_key(ctx);
    };
    let last_modified = version
        .last_modified
        .format("%a, %d %b %Y %H:%M:%S GMT")
        .to_string();
    if let Some(condition) = header_str(headers, IF_MATCH.as_str()) {
        if !etag_matches(&condition, &version.etag) {
            return error(
                ctx,
                StatusCode::PRECONDITION_FAILED,
                "PreconditionFailed",
                "At least one of the pre-conditions you specified did not hold.",
            );
        }
    }
    if let Some(condition) = header_str(headers, IF_NONE_MATCH.as_str()) {
        if etag_matches(&condition, &version.etag) {
            return build(
                base(StatusCode::NOT_MODIFIED, ctx)
                    .header(ETAG, &version.etag)
                    .header(LAST_MODIFIED, &last_modified),
                Body::empty(),
            );
        }
    }

    let crc = if version.opts.legacy_no_crc {
        None
    } else {
        match version.crc64().await {
            Ok(crc) => Some(crc),
            Err(err) => {
                tracing::warn!(%key, error = %err, "emulated cos cannot read object");
                return error(
                    ctx,
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "InternalError",
                    "We encountered an internal error. Please try again.",
                );
            }
        }
    };

    let len = version.len;
    let (status, first, last_exclusive) =
        match parse_range(header_str(headers, RANGE.as_str()).as_deref(), len) {
            RangeRequest::Whole => (StatusCode::OK, 0, len),
            RangeRequest::Unsatisfiable => {
                let mut response = error(
                    ctx,
                    StatusCode::RANGE_NOT_SATISFIABLE,
                    "InvalidRange",
                    "The requested range is not satisfiable",
                );
                if let Ok(value) = format!("bytes */{len}").parse() {
                    response.headers_mut().insert(CONTENT_RANGE, value);
                }
                return response;
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
    if *method == Method::HEAD || first == last_exclusive {
        return build(builder, Body::empty());
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
    build(builder, Body::from_stream(stream.into_stream()))
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

fn no_such_key(ctx: &Ctx) -> Response {
    error(
        ctx,
        StatusCode::NOT_FOUND,
        "NoSuchKey",
        "The specified key does not exist.",
    )
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
