//! TC3-HMAC-SHA256 request signing (API 3.0), pure: no I/O, no clock.
//!
//! The caller passes the timestamp, the credentials and the exact bytes and
//! headers it will send; the same code verifies signatures in the emulator.
//! Reference: `tencentcloud-api.md` §2.

use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};

type HmacSha256 = Hmac<Sha256>;

/// The algorithm name that starts the string to sign and the Authorization header.
pub const ALGORITHM: &str = "TC3-HMAC-SHA256";

/// Hash used instead of the body hash when `X-TC-Content-SHA256: UNSIGNED-PAYLOAD` is sent.
pub const UNSIGNED_PAYLOAD: &str = "UNSIGNED-PAYLOAD";

/// Everything that goes into one TC3 signature.
#[derive(Debug, Clone)]
pub struct SignRequest<'a> {
    /// Upper-case HTTP method, `POST` or `GET`.
    pub method: &'a str,
    /// The query string exactly as sent (empty for POST).
    pub query: &'a str,
    /// Signed headers as (name, value); names are lower-cased and sorted here.
    pub headers: &'a [(&'a str, &'a str)],
    /// The exact body bytes.
    pub payload: &'a [u8],
    /// Whether the body hash is replaced by the hash of `UNSIGNED-PAYLOAD`.
    pub unsigned_payload: bool,
    /// Product name of the scope (`redis`, `postgres`).
    pub service: &'a str,
    /// Unix seconds, the same value that is sent in `X-TC-Timestamp`.
    pub timestamp: i64,
}

/// The intermediate and final values of a signature, kept for tests and diagnostics.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Signature {
    /// The canonical request (six LF-joined fields).
    pub canonical_request: String,
    /// `<date>/<service>/tc3_request`.
    pub credential_scope: String,
    /// The string that is HMAC-ed with the signing key.
    pub string_to_sign: String,
    /// `content-type;host` and any other signed header names.
    pub signed_headers: String,
    /// Lower-case hex signature.
    pub signature: String,
}

impl Signature {
    /// The `Authorization` header value for `secret_id`.
    pub fn authorization(&self, secret_id: &str) -> String {
        format!(
            "{ALGORITHM} Credential={secret_id}/{}, SignedHeaders={}, Signature={}",
            self.credential_scope, self.signed_headers, self.signature
        )
    }
}

/// UTC calendar date (`YYYY-MM-DD`) of a Unix timestamp, as used in the scope.
pub fn scope_date(timestamp: i64) -> String {
    match chrono::DateTime::from_timestamp(timestamp, 0) {
        Some(t) => t.format("%Y-%m-%d").to_string(),
        // Out of chrono's range: no real request has such a timestamp; an
        // impossible date makes the signature fail instead of panicking.
        None => "0000-00-00".to_string(),
    }
}

/// Lower-case hex SHA-256.
pub fn sha256_hex(data: &[u8]) -> String {
    hex::encode(Sha256::digest(data))
}

fn hmac(key: &[u8], message: &[u8]) -> Vec<u8> {
    // HMAC accepts keys of any length, so `new_from_slice` cannot fail.
    let mut mac = match HmacSha256::new_from_slice(key) {
        Ok(mac) => mac,
        Err(_) => unreachable!("HMAC takes keys of any length"),
    };
    mac.update(message);
    mac.finalize().into_bytes().to_vec()
}

/// The derived signing key: HMAC chain over date, service and `tc3_request`.
pub fn signing_key(secret_key: &str, date: &str, service: &str) -> Vec<u8> {
    let secret_date = hmac(format!("TC3{secret_key}").as_bytes(), date.as_bytes());
    let secret_service = hmac(&secret_date, service.as_bytes());
    hmac(&secret_service, b"tc3_request")
}

/// Build the canonical request, scope and string to sign (everything but the key).
pub fn string_to_sign(req: &SignRequest<'_>) -> Signature {
    let mut headers: Vec<(String, String)> = req
        .headers
        .iter()
        .map(|(name, value)| {
            (
                name.trim().to_ascii_lowercase(),
                value.trim().to_ascii_lowercase(),
            )
        })
        .collect();
    headers.sort();
    let canonical_headers: String = headers.iter().map(|(n, v)| format!("{n}:{v}\n")).collect();
    let signed_headers = headers
        .iter()
        .map(|(n, _)| n.as_str())
        .collect::<Vec<_>>()
        .join(";");
    let payload_hash = if req.unsigned_payload {
        sha256_hex(UNSIGNED_PAYLOAD.as_bytes())
    } else {
        sha256_hex(req.payload)
    };
    let canonical_request = format!(
        "{}\n/\n{}\n{}\n{}\n{}",
        req.method.to_ascii_uppercase(),
        req.query,
        canonical_headers,
        signed_headers,
        payload_hash
    );
    let credential_scope = format!("{}/{}/tc3_request", scope_date(req.timestamp), req.service);
    let string_to_sign = format!(
        "{ALGORITHM}\n{}\n{}\n{}",
        req.timestamp,
        credential_scope,
        sha256_hex(canonical_request.as_bytes())
    );
    Signature {
        canonical_request,
        credential_scope,
        string_to_sign,
        signed_headers,
        signature: String::new(),
    }
}

/// Sign with an already derived signing key (lets tests start from a published key).
pub fn sign_with_key(req: &SignRequest<'_>, key: &[u8]) -> Signature {
    let mut sig = string_to_sign(req);
    sig.signature = hex::encode(hmac(key, sig.string_to_sign.as_bytes()));
    sig
}

/// Sign a request with a secret key.
pub fn sign(req: &SignRequest<'_>, secret_key: &str) -> Signature {
    let key = signing_key(secret_key, &scope_date(req.timestamp), req.service);
    sign_with_key(req, &key)
}

/// Constant-time comparison of two signatures (hex strings).
pub fn signatures_match(a: &str, b: &str) -> bool {
    a.len() == b.len()
        && a.bytes()
            .zip(b.bytes())
            .fold(0u8, |acc, (x, y)| acc | (x ^ y))
            == 0
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Value;

    fn vectors() -> Value {
        let text = include_str!("../../../tests/data/tc3-vectors.json");
        serde_json::from_str(text).expect("test data is valid JSON")
    }

    fn s<'a>(v: &'a Value, key: &str) -> &'a str {
        v[key]
            .as_str()
            .unwrap_or_else(|| panic!("vector field {key} is a string"))
    }

    fn check(vector: &Value) {
        let inp = &vector["inputs"];
        let out = &vector["outputs"];
        let payload = hex::decode(s(inp, "payload_hex")).expect("payload_hex is hex");
        let mut headers: Vec<(&str, &str)> = vec![
            ("content-type", s(inp, "content_type")),
            ("host", s(inp, "host")),
        ];
        if let Some(extra) = inp["extra_signed_header"].as_object() {
            for (k, v) in extra {
                headers.push((k.as_str(), v.as_str().expect("header value")));
            }
        }
        let req = SignRequest {
            method: s(inp, "http_method"),
            query: inp["query_string"].as_str().unwrap_or(""),
            headers: &headers,
            payload: &payload,
            unsigned_payload: inp["unsigned_payload"].as_bool().unwrap_or(false),
            service: s(inp, "service"),
            timestamp: inp["timestamp"].as_i64().expect("timestamp"),
        };
        let id = s(vector, "id");
        let got = if s(inp, "secret_key").starts_with("(masked") {
            let key = hex::decode(s(&out["derived_keys_hex"], "secret_signing")).expect("hex");
            sign_with_key(&req, &key)
        } else {
            let keys = &out["derived_keys_hex"];
            let key = signing_key(
                s(inp, "secret_key"),
                &scope_date(req.timestamp),
                req.service,
            );
            assert_eq!(
                hex::encode(&key),
                s(keys, "secret_signing"),
                "{id}: signing key"
            );
            sign(&req, s(inp, "secret_key"))
        };
        assert_eq!(
            got.canonical_request,
            s(out, "canonical_request"),
            "{id}: canonical request"
        );
        assert_eq!(
            got.credential_scope,
            s(out, "credential_scope"),
            "{id}: scope"
        );
        assert_eq!(
            got.string_to_sign,
            s(out, "string_to_sign"),
            "{id}: string to sign"
        );
        assert_eq!(got.signature, s(out, "signature"), "{id}: signature");
        if let Some(auth) = out["authorization"].as_str() {
            assert_eq!(
                got.authorization(s(inp, "secret_id")),
                auth,
                "{id}: authorization"
            );
        }
    }

    #[test]
    fn reproduces_every_sdk_vector() {
        let v = vectors();
        let list = v["tc3_sdk_vectors"].as_array().expect("list");
        assert_eq!(list.len(), 9);
        list.iter().for_each(check);
    }

    #[test]
    fn reproduces_the_published_doc_vectors() {
        let v = vectors();
        let list: Vec<&Value> = v["published_doc_vectors"]
            .as_array()
            .expect("list")
            .iter()
            .filter(|v| s(v, "kind") == ALGORITHM)
            .collect();
        assert_eq!(list.len(), 2);
        list.into_iter().for_each(check);
    }

    #[test]
    fn scope_date_is_utc_not_beijing() {
        // 2019-02-26 00:44 in Beijing is still the 25th in UTC.
        assert_eq!(scope_date(1551113065), "2019-02-25");
        assert_eq!(scope_date(1735689599), "2024-12-31");
        assert_eq!(scope_date(1735689600), "2025-01-01");
    }

    #[test]
    fn signature_comparison() {
        assert!(signatures_match("abc", "abc"));
        assert!(!signatures_match("abc", "abd"));
        assert!(!signatures_match("abc", "ab"));
    }
}
