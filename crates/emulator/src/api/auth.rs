//! Checks a TC3-HMAC-SHA256 request exactly as reference §2 and §10.1.2 say:
//! parse `Authorization`, find the key, check the timestamp window, rebuild
//! the canonical request from the headers named in `SignedHeaders`, the raw
//! body and the raw query, compare, then check the temporary-credential token.
//! The signature itself is computed by [`tcbackup_signing::tc3`].

use http::HeaderMap;

use super::ApiError;
use crate::state::CredentialEntry;
use tcbackup_signing::tc3::{self, SignRequest, ALGORITHM, UNSIGNED_PAYLOAD};

/// The largest accepted distance between `X-TC-Timestamp` and server time.
pub(crate) const MAX_SKEW_SECS: i64 = 300;

/// Documented message of `AuthFailure.SignatureFailure`.
pub(crate) const SIGNATURE_FAILURE_MESSAGE: &str =
    "The provided credentials could not be validated. Please check your signature is correct.";

/// The parts of an `Authorization` header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Authorization {
    pub(crate) secret_id: String,
    pub(crate) date: String,
    pub(crate) service: String,
    pub(crate) signed_headers: Vec<String>,
    pub(crate) signature: String,
}

fn invalid_authorization(why: &str) -> ApiError {
    ApiError::new(
        "AuthFailure.InvalidAuthorization",
        format!("Authorization is invalid: {why}."),
    )
}

/// Parse `TC3-HMAC-SHA256 Credential=id/date/service/tc3_request, SignedHeaders=a;b, Signature=hex`.
pub(crate) fn parse_authorization(value: &str) -> Result<Authorization, ApiError> {
    let value = value.trim();
    let rest = value
        .strip_prefix(ALGORITHM)
        .filter(|rest| rest.starts_with(' '))
        .ok_or_else(|| invalid_authorization("the algorithm must be TC3-HMAC-SHA256"))?;
    let mut credential = None;
    let mut signed_headers = None;
    let mut signature = None;
    for part in rest.split(',') {
        let (name, val) = part
            .trim()
            .split_once('=')
            .ok_or_else(|| invalid_authorization("a field is not name=value"))?;
        let slot = match name {
            "Credential" => &mut credential,
            "SignedHeaders" => &mut signed_headers,
            "Signature" => &mut signature,
            _ => return Err(invalid_authorization("unknown field")),
        };
        if slot.replace(val.to_string()).is_some() {
            return Err(invalid_authorization("a field appears twice"));
        }
    }
    let credential = credential.ok_or_else(|| invalid_authorization("Credential is missing"))?;
    let signed_headers =
        signed_headers.ok_or_else(|| invalid_authorization("SignedHeaders is missing"))?;
    let signature = signature.ok_or_else(|| invalid_authorization("Signature is missing"))?;
    let scope: Vec<&str> = credential.split('/').collect();
    let [secret_id, date, service, terminator] = scope.as_slice() else {
        return Err(invalid_authorization(
            "Credential must be SecretId/Date/Service/tc3_request",
        ));
    };
    if secret_id.is_empty() || date.is_empty() || service.is_empty() || *terminator != "tc3_request"
    {
        return Err(invalid_authorization(
            "Credential must be SecretId/Date/Service/tc3_request",
        ));
    }
    let signed_headers: Vec<String> = signed_headers
        .split(';')
        .map(|h| h.trim().to_ascii_lowercase())
        .collect();
    if signed_headers.iter().any(String::is_empty) {
        return Err(invalid_authorization("SignedHeaders has an empty name"));
    }
    for required in ["content-type", "host"] {
        if !signed_headers.iter().any(|h| h == required) {
            return Err(invalid_authorization(
                "SignedHeaders must include content-type and host",
            ));
        }
    }
    if signature.len() != 64 || !signature.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(invalid_authorization("Signature must be 64 hex digits"));
    }
    Ok(Authorization {
        secret_id: (*secret_id).to_string(),
        date: (*date).to_string(),
        service: (*service).to_string(),
        signed_headers,
        signature: signature.to_ascii_lowercase(),
    })
}

/// Everything of the request the check needs.
#[derive(Debug)]
pub(crate) struct SignedRequest<'a> {
    pub(crate) method: &'a str,
    /// The raw query string, exactly as received (empty for none).
    pub(crate) query: &'a str,
    pub(crate) headers: &'a HeaderMap,
    pub(crate) body: &'a [u8],
}

fn header<'h>(headers: &'h HeaderMap, name: &str) -> Result<Option<&'h str>, ApiError> {
    match headers.get(name) {
        None => Ok(None),
        Some(v) => v
            .to_str()
            .map(Some)
            .map_err(|_| ApiError::new("InvalidParameter", format!("header {name} is not text"))),
    }
}

/// The request's `X-TC-Timestamp`.
pub(crate) fn timestamp(headers: &HeaderMap) -> Result<i64, ApiError> {
    let text = header(headers, "x-tc-timestamp")?.ok_or_else(|| {
        ApiError::new(
            "MissingParameter",
            "The request is missing a required parameter `Timestamp`.",
        )
    })?;
    text.trim().parse::<i64>().map_err(|_| {
        ApiError::new(
            "InvalidParameter",
            format!("The value of parameter `Timestamp` is invalid: {text:?}."),
        )
    })
}

/// Check the request's signature, timestamp and token.
///
/// `auth` is the parsed `Authorization`; `service` is the service the request
/// is for (from the host, else the scope); `lookup` finds a SecretId's entry;
/// `now` is server time in Unix seconds.
pub(crate) fn verify(
    req: &SignedRequest<'_>,
    auth: &Authorization,
    service: &str,
    lookup: impl FnOnce(&str) -> Option<CredentialEntry>,
    now: i64,
) -> Result<(), ApiError> {
    let entry = lookup(&auth.secret_id).ok_or_else(|| {
        ApiError::new(
            "AuthFailure.SecretIdNotFound",
            "The SecretId is not found, please ensure that your SecretId is correct.",
        )
    })?;
    let ts = timestamp(req.headers)?;
    if (now - ts).abs() > MAX_SKEW_SECS {
        return Err(ApiError::new(
            "AuthFailure.SignatureExpire",
            format!(
                "Signature expired. Timestamp is {ts}, server time is {now}; they may differ by at most {MAX_SKEW_SECS} seconds."
            ),
        ));
    }
    let signature_failure =
        || ApiError::new("AuthFailure.SignatureFailure", SIGNATURE_FAILURE_MESSAGE);
    // The scope must name the UTC date of the timestamp and the service asked.
    if auth.date != tc3::scope_date(ts) || auth.service != service {
        return Err(signature_failure());
    }
    let mut signed: Vec<(&str, &str)> = Vec::with_capacity(auth.signed_headers.len());
    for name in &auth.signed_headers {
        let value = header(req.headers, name)?.ok_or_else(|| {
            invalid_authorization("a header named in SignedHeaders is not in the request")
        })?;
        signed.push((name.as_str(), value));
    }
    let unsigned_payload =
        header(req.headers, "x-tc-content-sha256")?.is_some_and(|v| v.trim() == UNSIGNED_PAYLOAD);
    let expected = tc3::sign(
        &SignRequest {
            method: req.method,
            query: req.query,
            headers: &signed,
            payload: req.body,
            unsigned_payload,
            service,
            timestamp: ts,
        },
        &entry.secret_key,
    );
    if !tc3::signatures_match(&expected.signature, &auth.signature) {
        return Err(signature_failure());
    }
    if let Some(token) = &entry.token {
        let sent = header(req.headers, "x-tc-token")?;
        let expired = entry.expires.is_some_and(|at| at.timestamp() <= now);
        if sent != Some(token.as_str()) || expired {
            return Err(ApiError::new(
                "AuthFailure.TokenFailure",
                "The token is invalid or has expired.",
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::{HeaderName, HeaderValue};
    use serde_json::Value;

    fn vectors() -> Value {
        serde_json::from_str(include_str!("../../../../tests/data/tc3-vectors.json"))
            .expect("valid JSON")
    }

    struct Built {
        method: String,
        query: String,
        headers: HeaderMap,
        body: Vec<u8>,
        secret_id: String,
        entry: CredentialEntry,
        timestamp: i64,
        host_service: String,
    }

    /// A request as the vector's client sent it: every header it lists (or,
    /// for the doc vectors, the signed ones plus the X-TC ones), its payload
    /// and query.
    fn build(v: &Value) -> Built {
        let inp = &v["inputs"];
        let out = &v["outputs"];
        let s = |x: &Value| x.as_str().expect("string").to_string();
        let mut headers = HeaderMap::new();
        let mut put = |name: &str, value: &str| {
            headers.insert(
                HeaderName::from_bytes(name.to_ascii_lowercase().as_bytes()).expect("name"),
                HeaderValue::from_str(value).expect("value"),
            );
        };
        match out["request_headers"].as_object() {
            Some(sent) => {
                for (k, val) in sent {
                    put(k, val.as_str().expect("header"));
                }
            }
            None => {
                put("Content-Type", &s(&inp["content_type"]));
                put("Host", &s(&inp["host"]));
                put("X-TC-Action", &s(&inp["action"]));
                put("X-TC-Version", &s(&inp["version"]));
                put("X-TC-Timestamp", &inp["timestamp"].to_string());
                put("X-TC-Region", &s(&inp["region"]));
                put("Authorization", &s(&out["authorization"]));
            }
        }
        Built {
            method: s(&inp["http_method"]),
            query: inp["query_string"].as_str().unwrap_or("").to_string(),
            headers,
            body: hex::decode(s(&inp["payload_hex"])).expect("hex"),
            secret_id: s(&inp["secret_id"]),
            entry: CredentialEntry {
                secret_key: s(&inp["secret_key"]),
                token: inp["token"].as_str().map(str::to_string),
                expires: None,
            },
            timestamp: inp["timestamp"].as_i64().expect("timestamp"),
            host_service: s(&inp["service"]),
        }
    }

    fn check(b: &Built, now: i64) -> Result<(), ApiError> {
        let auth_header = b.headers["authorization"].to_str().expect("text");
        let auth = parse_authorization(auth_header)?;
        let req = SignedRequest {
            method: &b.method,
            query: &b.query,
            headers: &b.headers,
            body: &b.body,
        };
        let entry = b.entry.clone();
        let id = b.secret_id.clone();
        verify(
            &req,
            &auth,
            &b.host_service,
            |sid| (sid == id).then_some(entry),
            now,
        )
    }

    fn all_vectors() -> Vec<Value> {
        let v = vectors();
        let mut list: Vec<Value> = v["tc3_sdk_vectors"].as_array().expect("list").clone();
        list.extend(
            v["published_doc_vectors"]
                .as_array()
                .expect("list")
                .iter()
                .filter(|x| x["id"] == "tc3-doc-cvm-describeinstances-legacy")
                .cloned(),
        );
        assert_eq!(list.len(), 10);
        list
    }

    #[test]
    fn accepts_every_vector_at_its_timestamp() {
        for v in all_vectors() {
            let b = build(&v);
            check(&b, b.timestamp).unwrap_or_else(|e| panic!("{}: {e:?}", v["id"]));
            check(&b, b.timestamp + 299).unwrap_or_else(|e| panic!("{}: {e:?}", v["id"]));
        }
    }

    #[test]
    fn rejects_tampering_with_every_vector() {
        for v in all_vectors() {
            let id = v["id"].clone();
            let b = build(&v);
            // One byte of body more.
            let mut t = build(&v);
            t.body.push(b' ');
            if b.headers.contains_key("x-tc-content-sha256") {
                check(&t, b.timestamp).expect("an unsigned payload may change");
            } else {
                let err = check(&t, b.timestamp).expect_err("body changed");
                assert_eq!(err.code, "AuthFailure.SignatureFailure", "{id}");
                assert_eq!(err.message, SIGNATURE_FAILURE_MESSAGE);
            }
            // A different signed host.
            let mut t = build(&v);
            t.headers
                .insert("host", HeaderValue::from_static("evil.example"));
            assert_eq!(
                check(&t, b.timestamp).expect_err("host").code,
                "AuthFailure.SignatureFailure",
                "{id}"
            );
            // Wrong key.
            let mut t = build(&v);
            t.entry.secret_key.push('x');
            assert_eq!(
                check(&t, b.timestamp).expect_err("key").code,
                "AuthFailure.SignatureFailure",
                "{id}"
            );
            // Clock skew beyond 300 s either way.
            assert_eq!(
                check(&b, b.timestamp + 301).expect_err("late").code,
                "AuthFailure.SignatureExpire"
            );
            assert_eq!(
                check(&b, b.timestamp - 301).expect_err("early").code,
                "AuthFailure.SignatureExpire"
            );
            // Unknown SecretId.
            let mut t = build(&v);
            t.secret_id = "AKIDother".to_string();
            assert_eq!(
                check(&t, b.timestamp).expect_err("id").code,
                "AuthFailure.SecretIdNotFound"
            );
            // A token vector without its token.
            if b.entry.token.is_some() {
                let mut t = build(&v);
                t.headers.remove("x-tc-token");
                assert_eq!(
                    check(&t, b.timestamp).expect_err("token").code,
                    "AuthFailure.TokenFailure"
                );
            }
        }
    }

    #[test]
    fn unsigned_payload_ignores_the_body() {
        let v = vectors()["tc3_sdk_vectors"]
            .as_array()
            .expect("list")
            .iter()
            .find(|x| x["id"] == "tc3-redis-describebackupurl-unsigned-payload")
            .cloned()
            .expect("vector");
        let mut b = build(&v);
        b.body = b"{\"anything\": 1}".to_vec();
        check(&b, b.timestamp).expect("body is not signed");
        b.headers.remove("x-tc-content-sha256");
        assert_eq!(
            check(&b, b.timestamp).expect_err("now signed").code,
            "AuthFailure.SignatureFailure"
        );
    }

    #[test]
    fn scope_must_match_date_and_service() {
        let v = vectors()["tc3_sdk_vectors"][0].clone();
        let b = build(&v);
        let auth = b.headers["authorization"]
            .to_str()
            .expect("text")
            .to_string();
        let req = |h: &HeaderMap| {
            let a =
                parse_authorization(h["authorization"].to_str().expect("text")).expect("parses");
            let r = SignedRequest {
                method: "POST",
                query: "",
                headers: h,
                body: &b.body,
            };
            let e = b.entry.clone();
            verify(&r, &a, "redis", |_| Some(e), b.timestamp)
        };
        let mut h = b.headers.clone();
        h.insert(
            "authorization",
            HeaderValue::from_str(&auth.replace("/2023-11-14/", "/2023-11-15/")).expect("v"),
        );
        assert_eq!(
            req(&h).expect_err("date").code,
            "AuthFailure.SignatureFailure"
        );
        let mut h = b.headers.clone();
        h.insert(
            "authorization",
            HeaderValue::from_str(&auth.replace("/redis/", "/postgres/")).expect("v"),
        );
        assert_eq!(
            req(&h).expect_err("service").code,
            "AuthFailure.SignatureFailure"
        );
    }

    #[test]
    fn malformed_authorization_headers() {
        let good = "TC3-HMAC-SHA256 Credential=AKID/2023-11-14/redis/tc3_request, SignedHeaders=content-type;host, Signature=71a7b4e02fad205338d205a2af5e83e9705917a74c0f5845380200aa2f558705";
        let parsed = parse_authorization(good).expect("parses");
        assert_eq!(parsed.secret_id, "AKID");
        assert_eq!(parsed.signed_headers, vec!["content-type", "host"]);
        for bad in [
            "",
            "Bearer x",
            "TC3-HMAC-SHA1 Credential=AKID/2023-11-14/redis/tc3_request, SignedHeaders=content-type;host, Signature=71a7b4e02fad205338d205a2af5e83e9705917a74c0f5845380200aa2f558705",
            "TC3-HMAC-SHA256 Credential=AKID/2023-11-14/redis, SignedHeaders=content-type;host, Signature=71a7b4e02fad205338d205a2af5e83e9705917a74c0f5845380200aa2f558705",
            "TC3-HMAC-SHA256 Credential=AKID/2023-11-14/redis/tc3_request, SignedHeaders=host, Signature=71a7b4e02fad205338d205a2af5e83e9705917a74c0f5845380200aa2f558705",
            "TC3-HMAC-SHA256 Credential=AKID/2023-11-14/redis/tc3_request, SignedHeaders=content-type;host, Signature=xyz",
            "TC3-HMAC-SHA256 Credential=AKID/2023-11-14/redis/tc3_request, SignedHeaders=content-type;host",
        ] {
            assert_eq!(
                parse_authorization(bad).expect_err(bad).code,
                "AuthFailure.InvalidAuthorization",
                "{bad}"
            );
        }
    }
}
