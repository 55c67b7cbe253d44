//! COS presigned URLs: the `q-sign` HMAC-SHA1 signature (sign and verify),
//! and reading a URL's validity window. Pure: no I/O, no clock.
//!
//! The same code mints and checks URLs in the emulator and reads expiry on the
//! client side. A presigned URL is treated as opaque: nothing here re-encodes
//! one that came from outside. Reference: `tencentcloud-api.md` §9.

use hmac::{Hmac, Mac};
use percent_encoding::{percent_decode_str, utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};
use sha1::{Digest, Sha1};

type HmacSha1 = Hmac<Sha1>;

/// The only value COS accepts in `q-sign-algorithm`.
pub const ALGORITHM: &str = "sha1";

/// Characters COS leaves unescaped in signed keys and values: `-_.~` and alphanumerics.
const SIGN_SET: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'~');

/// The same set plus `/`, for object keys in the URL path.
const PATH_SET: &AsciiSet = &SIGN_SET.remove(b'/');

/// Where the `q-*` parameters sit in a presigned URL (§9.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum UrlShape {
    /// Top-level `q-*` query parameters, as the COS SDKs produce them.
    #[default]
    TopLevel,
    /// The whole `q-…` string URL-encoded inside one `sign=` parameter (Redis shape).
    Wrapped,
}

/// Why a URL's `q-*` parameters could not be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CosAuthError {
    /// A required `q-*` parameter is absent.
    #[error("presigned url has no {0} parameter")]
    MissingParam(&'static str),
    /// `q-sign-algorithm` is not `sha1`.
    #[error("presigned url uses unsupported signature algorithm {0:?}")]
    UnsupportedAlgorithm(String),
    /// `q-sign-time` or `q-key-time` is not `<start>;<end>` in Unix seconds.
    #[error("presigned url has malformed {param} {value:?}")]
    BadTimeWindow {
        /// The parameter name.
        param: &'static str,
        /// Its decoded value (a time window, not a secret).
        value: String,
    },
}

/// Everything that goes into one COS signature.
#[derive(Debug, Clone)]
pub struct CosSignInput<'a> {
    /// HTTP method (`GET`, `HEAD`); lower-cased here.
    pub method: &'a str,
    /// The decoded URI path, starting with `/`.
    pub path: &'a str,
    /// Signed query parameters as (name, decoded value).
    pub params: &'a [(&'a str, &'a str)],
    /// Signed headers as (name, value); the SDKs sign `host`.
    pub headers: &'a [(&'a str, &'a str)],
    /// `q-sign-time` exactly as sent: `<start>;<end>`.
    pub sign_time: &'a str,
    /// `q-key-time` exactly as sent (the SDKs make it equal to `sign_time`).
    pub key_time: &'a str,
}

/// The intermediate and final values of a COS signature, kept for tests and diagnostics.
#[derive(Clone, PartialEq, Eq)]
pub struct CosSignature {
    /// `q-sign-time`.
    pub sign_time: String,
    /// `q-key-time`.
    pub key_time: String,
    /// `q-header-list`: sorted, `;`-joined, lower-case encoded header names.
    pub header_list: String,
    /// `q-url-param-list`: the same for query parameters.
    pub url_param_list: String,
    /// hex(HMAC-SHA1(SecretKey, KeyTime)).
    pub sign_key: String,
    /// The four `\n`-terminated lines that describe the request.
    pub http_string: String,
    /// `sha1`, the sign time and hex(SHA1(HttpString)), each `\n`-terminated.
    pub string_to_sign: String,
    /// `q-signature`, lower-case hex.
    pub signature: String,
}

impl std::fmt::Debug for CosSignature {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The sign key and the signature are credentials, and the http string
        // may hold a signed token; the rest is not secret.
        f.debug_struct("CosSignature")
            .field("sign_time", &self.sign_time)
            .field("key_time", &self.key_time)
            .field("header_list", &self.header_list)
            .field("url_param_list", &self.url_param_list)
            .field("string_to_sign", &self.string_to_sign)
            .finish_non_exhaustive()
    }
}

impl CosSignature {
    /// The `q-*` query string (`q-sign-algorithm=sha1&q-ak=…&q-signature=…`).
    ///
    /// With `encode_semicolon` the `;` in the time windows is written `%3B`,
    /// as in top-level URLs; without it the string is ready to be wrapped.
    pub fn query(&self, secret_id: &str, encode_semicolon: bool) -> String {
        let enc = |s: &str| {
            if encode_semicolon {
                s.replace(';', "%3B")
            } else {
                s.to_string()
            }
        };
        format!(
            "q-sign-algorithm={ALGORITHM}&q-ak={}&q-sign-time={}&q-key-time={}&q-header-list={}&q-url-param-list={}&q-signature={}",
            utf8_percent_encode(secret_id, SIGN_SET),
            enc(&self.sign_time),
            enc(&self.key_time),
            enc(&self.header_list),
            enc(&self.url_param_list),
            self.signature
        )
    }
}

/// `<start>;<end>` as used in `q-sign-time` and `q-key-time`.
pub fn time_window(start: i64, end: i64) -> String {
    format!("{start};{end}")
}

fn hmac_sha1_hex(key: &[u8], message: &[u8]) -> String {
    // HMAC accepts keys of any length, so `new_from_slice` cannot fail.
    let mut mac = match HmacSha1::new_from_slice(key) {
        Ok(mac) => mac,
        Err(_) => unreachable!("HMAC takes keys of any length"),
    };
    mac.update(message);
    hex::encode(mac.finalize().into_bytes())
}

/// hex(HMAC-SHA1(secret_key, key_time)).
pub fn sign_key(secret_key: &str, key_time: &str) -> String {
    hmac_sha1_hex(secret_key.as_bytes(), key_time.as_bytes())
}

/// Encode (name, value) pairs the COS way: names lower-cased, both encoded
/// keeping `-_.~`, sorted by name. Returns (`k=v&…`, `k;k;…`).
fn canonical_pairs(pairs: &[(&str, &str)]) -> (String, String) {
    let mut encoded: Vec<(String, String)> = pairs
        .iter()
        .map(|(k, v)| {
            (
                utf8_percent_encode(k, SIGN_SET)
                    .to_string()
                    .to_ascii_lowercase(),
                utf8_percent_encode(v, SIGN_SET).to_string(),
            )
        })
        .collect();
    encoded.sort();
    let joined = encoded
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join("&");
    let names = encoded
        .iter()
        .map(|(k, _)| k.as_str())
        .collect::<Vec<_>>()
        .join(";");
    (joined, names)
}

/// Compute the signature of a request.
pub fn sign(input: &CosSignInput<'_>, secret_key: &str) -> CosSignature {
    let (param_string, url_param_list) = canonical_pairs(input.params);
    let (header_string, header_list) = canonical_pairs(input.headers);
    let http_string = format!(
        "{}\n{}\n{}\n{}\n",
        input.method.to_ascii_lowercase(),
        input.path,
        param_string,
        header_string
    );
    let string_to_sign = format!(
        "{ALGORITHM}\n{}\n{}\n",
        input.sign_time,
        hex::encode(Sha1::digest(http_string.as_bytes()))
    );
    let sign_key = sign_key(secret_key, input.key_time);
    let signature = hmac_sha1_hex(sign_key.as_bytes(), string_to_sign.as_bytes());
    CosSignature {
        sign_time: input.sign_time.to_string(),
        key_time: input.key_time.to_string(),
        header_list,
        url_param_list,
        sign_key,
        http_string,
        string_to_sign,
        signature,
    }
}

/// Constant-time comparison of two hex signatures.
pub fn signatures_match(a: &str, b: &str) -> bool {
    crate::tc3::signatures_match(a, b)
}

/// The `Host` header value a client sends for `base_url` (`host[:port]`,
/// the port only when it is not the scheme's default).
pub fn host_of(base_url: &str) -> String {
    if let Ok(url) = url::Url::parse(base_url) {
        if url.host_str().is_some() {
            return host_header(&url);
        }
    }
    // Not a URL the `url` crate understands: take the authority as written.
    let rest = base_url
        .split_once("://")
        .map_or(base_url, |(_, rest)| rest);
    rest.split(['/', '?', '#']).next().unwrap_or("").to_string()
}

/// The `Host` header value for a parsed URL: its host, plus the port when
/// it is not the scheme's default (what HTTP clients send, so what a server
/// verifies a signature over). Also used for the TC3-signed API requests.
pub fn host_header(url: &url::Url) -> String {
    let host = url.host_str().unwrap_or_default();
    match url.port() {
        Some(port) => format!("{host}:{port}"),
        None => host.to_string(),
    }
}

/// Encode an object key for the URL path (keeps `/` and `-_.~`).
pub fn encode_key(key: &str) -> String {
    utf8_percent_encode(key, PATH_SET).to_string()
}

/// What a presigned URL is made of.
#[derive(Debug, Clone)]
pub struct Presign<'a> {
    /// The HTTP method the URL is for (`GET`; a GET URL does not work for `HEAD`).
    pub method: &'a str,
    /// Scheme and authority, e.g. `https://bucket-1250000000.cos.ap-guangzhou.myqcloud.com`.
    pub base_url: &'a str,
    /// Object key without the leading `/`.
    pub key: &'a str,
    /// The SecretId that goes into `q-ak`.
    pub secret_id: &'a str,
    /// Start of validity, Unix seconds (the SDKs use now − 60).
    pub start: i64,
    /// End of validity, Unix seconds.
    pub end: i64,
    /// Extra signed query parameters (e.g. `x-cos-security-token`), appended to the URL.
    pub params: &'a [(&'a str, &'a str)],
    /// Whether `host` is signed (`q-header-list=host`) or nothing is (empty list).
    pub sign_host: bool,
    /// Where the `q-*` parameters go.
    pub shape: UrlShape,
}

/// Build a presigned URL the way the COS SDK does; returns the URL and the signature.
pub fn presign_url(req: &Presign<'_>, secret_key: &str) -> (String, CosSignature) {
    let base = req.base_url.trim_end_matches('/');
    let key = req.key.trim_start_matches('/');
    let path = format!("/{key}");
    let host = host_of(base);
    let host_header = [("host", host.as_str())];
    let headers: &[(&str, &str)] = if req.sign_host { &host_header } else { &[] };
    let window = time_window(req.start, req.end);
    let sig = sign(
        &CosSignInput {
            method: req.method,
            path: &path,
            params: req.params,
            headers,
            sign_time: &window,
            key_time: &window,
        },
        secret_key,
    );
    let auth = match req.shape {
        UrlShape::TopLevel => sig.query(req.secret_id, true),
        UrlShape::Wrapped => format!(
            "sign={}",
            utf8_percent_encode(&sig.query(req.secret_id, false), SIGN_SET)
        ),
    };
    let mut url = format!("{base}/{}?{auth}", encode_key(key));
    for (k, v) in req.params {
        url.push('&');
        url.push_str(&utf8_percent_encode(k, SIGN_SET).to_string());
        url.push('=');
        url.push_str(&utf8_percent_encode(v, SIGN_SET).to_string());
    }
    (url, sig)
}

/// Decode one query component (`+` is a space, as form decoding does on servers).
pub fn decode_component(s: &str) -> String {
    let spaced = s.replace('+', " ");
    percent_decode_str(&spaced).decode_utf8_lossy().into_owned()
}

/// The `name=value` pairs of a raw query string, decoded, in order.
fn decoded_pairs(query: &str) -> impl Iterator<Item = (String, String)> + '_ {
    query.split('&').filter(|p| !p.is_empty()).map(|part| {
        let (k, v) = part.split_once('=').unwrap_or((part, ""));
        (decode_component(k), decode_component(v))
    })
}

/// All query parameters of a raw query string as decoded (name, value) pairs,
/// with the `q-*` pairs found inside a `sign=` parameter spliced in.
fn query_pairs(query: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for (name, value) in decoded_pairs(query) {
        if name == "sign" {
            // The Redis shape: one parameter holding the URL-encoded q-string.
            out.extend(decoded_pairs(&value));
        }
        out.push((name, value));
    }
    out
}

/// The query part of a URL (between `?` and `#`), or "" if it has no `?`.
fn query_of(url: &str) -> &str {
    let without_fragment = url.split('#').next().unwrap_or(url);
    match without_fragment.split_once('?') {
        Some((_, q)) => q,
        None => "",
    }
}

/// The `q-*` authorization carried by a presigned URL, in either shape.
#[derive(Clone, PartialEq, Eq)]
pub struct UrlAuth {
    /// `q-sign-algorithm`.
    pub algorithm: String,
    /// `q-ak` (the SecretId).
    pub access_key: String,
    /// `q-sign-time`, decoded.
    pub sign_time: String,
    /// `q-key-time`, decoded.
    pub key_time: String,
    /// `q-header-list`, decoded.
    pub header_list: String,
    /// `q-url-param-list`, decoded.
    pub url_param_list: String,
    /// `q-signature`.
    pub signature: String,
    /// Every query parameter, decoded, in order (for the signed ones).
    pub params: Vec<(String, String)>,
}

impl std::fmt::Debug for UrlAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UrlAuth")
            .field("algorithm", &self.algorithm)
            .field("access_key", &self.access_key)
            .field("sign_time", &self.sign_time)
            .field("key_time", &self.key_time)
            .field("header_list", &self.header_list)
            .field("url_param_list", &self.url_param_list)
            .finish_non_exhaustive()
    }
}

impl UrlAuth {
    /// Read the authorization from a raw query string (without `?`).
    pub fn from_query(query: &str) -> Result<Self, CosAuthError> {
        let params = query_pairs(query);
        let get = |name: &'static str| -> Result<String, CosAuthError> {
            params
                .iter()
                .find(|(k, _)| k.eq_ignore_ascii_case(name))
                .map(|(_, v)| v.clone())
                .ok_or(CosAuthError::MissingParam(name))
        };
        let algorithm = get("q-sign-algorithm")?;
        if !algorithm.eq_ignore_ascii_case(ALGORITHM) {
            return Err(CosAuthError::UnsupportedAlgorithm(algorithm));
        }
        let auth = Self {
            algorithm,
            access_key: get("q-ak")?,
            sign_time: get("q-sign-time")?,
            key_time: get("q-key-time")?,
            header_list: get("q-header-list").unwrap_or_default(),
            url_param_list: get("q-url-param-list").unwrap_or_default(),
            signature: get("q-signature")?,
            params: Vec::new(),
        };
        parse_window("q-sign-time", &auth.sign_time)?;
        parse_window("q-key-time", &auth.key_time)?;
        Ok(Self { params, ..auth })
    }

    /// Read the authorization from a whole URL.
    pub fn from_url(url: &str) -> Result<Self, CosAuthError> {
        Self::from_query(query_of(url))
    }

    /// The validity window: the later start and the earlier end of the two windows.
    pub fn validity(&self) -> (i64, i64) {
        // Both were checked in `from_query`.
        let sign = parse_window("q-sign-time", &self.sign_time).unwrap_or((i64::MAX, i64::MIN));
        let key = parse_window("q-key-time", &self.key_time).unwrap_or((i64::MAX, i64::MIN));
        overlap(sign, key)
    }

    /// The decoded value of query parameter `name` (case-insensitive), if present.
    pub fn param(&self, name: &str) -> Option<&str> {
        self.params
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// Recompute the signature for `method` and `path` (decoded), taking the
    /// signed headers from `header` and the signed parameters from the URL,
    /// and compare it with `q-signature`. A listed header or parameter that is
    /// absent makes the check fail.
    pub fn verify(
        &self,
        method: &str,
        path: &str,
        header: impl Fn(&str) -> Option<String>,
        secret_key: &str,
    ) -> bool {
        let names = |list: &str| -> Vec<String> {
            list.split(';')
                .filter(|n| !n.is_empty())
                .map(str::to_ascii_lowercase)
                .collect()
        };
        let mut params = Vec::new();
        for name in names(&self.url_param_list) {
            match self.param(&name) {
                Some(v) => params.push((name.clone(), v.to_string())),
                None => return false,
            }
        }
        let mut headers = Vec::new();
        for name in names(&self.header_list) {
            match header(&name) {
                Some(v) => headers.push((name.clone(), v)),
                None => return false,
            }
        }
        let params: Vec<(&str, &str)> = params
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        let headers: Vec<(&str, &str)> = headers
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        let expected = sign(
            &CosSignInput {
                method,
                path,
                params: &params,
                headers: &headers,
                sign_time: &self.sign_time,
                key_time: &self.key_time,
            },
            secret_key,
        );
        signatures_match(&expected.signature, &self.signature.to_ascii_lowercase())
    }
}

fn parse_window(param: &'static str, value: &str) -> Result<(i64, i64), CosAuthError> {
    let bad = || CosAuthError::BadTimeWindow {
        param,
        value: value.to_string(),
    };
    let (start, end) = value.split_once(';').ok_or_else(bad)?;
    let start = start.trim().parse::<i64>().map_err(|_| bad())?;
    let end = end.trim().parse::<i64>().map_err(|_| bad())?;
    Ok((start, end))
}

/// The part of two `(start, end)` windows that lies in both: a URL works
/// only while both `q-sign-time` and `q-key-time` hold.
fn overlap(a: (i64, i64), b: (i64, i64)) -> (i64, i64) {
    (a.0.max(b.0), a.1.min(b.1))
}

/// The validity window `(start, end)` in Unix seconds of a presigned URL, from
/// `q-sign-time` and `q-key-time` (the later start, the earlier end), in either
/// URL shape. `None` when neither parameter is present or readable.
pub fn url_validity(url: &str) -> Option<(i64, i64)> {
    let params = query_pairs(query_of(url));
    let window = |name: &'static str| {
        params
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .and_then(|(_, v)| parse_window(name, v).ok())
    };
    match (window("q-sign-time"), window("q-key-time")) {
        (Some(a), Some(b)) => Some(overlap(a, b)),
        (Some(a), None) | (None, Some(a)) => Some(a),
        (None, None) => None,
    }
}

/// The Unix second at which a presigned URL stops working (the earlier end of
/// `q-sign-time` and `q-key-time`), in either URL shape.
pub fn url_expiry(url: &str) -> Option<i64> {
    url_validity(url).map(|(_, end)| end)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Value;

    fn vectors() -> Vec<Value> {
        let text = include_str!("../../../tests/data/tc3-vectors.json");
        let all: Value = serde_json::from_str(text).expect("test data is valid JSON");
        all["cos_presign_vectors"]
            .as_array()
            .expect("cos_presign_vectors is an array")
            .clone()
    }

    fn s<'a>(v: &'a Value, key: &str) -> &'a str {
        v[key]
            .as_str()
            .unwrap_or_else(|| panic!("vector field {key} is a string"))
    }

    #[test]
    fn reproduces_every_cos_presign_vector() {
        let vectors = vectors();
        assert_eq!(vectors.len(), 2);
        for v in &vectors {
            let inp = &v["inputs"];
            let out = &v["outputs"];
            let now = inp["now"].as_i64().expect("now");
            let expired = inp["expired_seconds"].as_i64().expect("expired_seconds");
            let base = format!(
                "https://{}.cos.{}.myqcloud.com",
                s(inp, "bucket"),
                s(inp, "region")
            );
            let params: Vec<(&str, &str)> = inp["signed_params"]
                .as_object()
                .expect("signed_params")
                .iter()
                .map(|(k, v)| (k.as_str(), v.as_str().expect("param value")))
                .collect();
            let (url, sig) = presign_url(
                &Presign {
                    method: "GET",
                    base_url: &base,
                    key: s(inp, "key"),
                    secret_id: s(inp, "secret_id"),
                    start: now - 60,
                    end: now + expired,
                    params: &params,
                    sign_host: true,
                    shape: UrlShape::TopLevel,
                },
                s(inp, "secret_key"),
            );
            let id = s(v, "id");
            assert_eq!(sig.sign_time, s(out, "q-sign-time"), "{id}");
            assert_eq!(sig.key_time, s(out, "q-key-time"), "{id}");
            assert_eq!(sig.header_list, s(out, "q-header-list"), "{id}");
            assert_eq!(sig.url_param_list, s(out, "q-url-param-list"), "{id}");
            assert_eq!(sig.sign_key, s(out, "sign_key_hex"), "{id}");
            assert_eq!(sig.http_string, s(out, "http_string"), "{id}");
            assert_eq!(sig.string_to_sign, s(out, "string_to_sign"), "{id}");
            assert_eq!(sig.signature, s(out, "q-signature"), "{id}");
            assert_eq!(url, s(out, "url"), "{id}");
            assert_eq!(url_expiry(&url), out["expiry_unix"].as_i64(), "{id} expiry");
            assert_eq!(
                url_validity(&url).map(|w| w.0),
                out["not_before_unix"].as_i64(),
                "{id} start"
            );
        }
    }

    #[test]
    fn vector_urls_verify_and_a_changed_method_does_not() {
        for v in vectors() {
            let inp = &v["inputs"];
            let url = s(&v["outputs"], "url");
            let host = host_of(url);
            let auth = UrlAuth::from_url(url).expect("vector url parses");
            let path = format!("/{}", s(inp, "key"));
            let header = |name: &str| (name == "host").then(|| host.clone());
            assert!(auth.verify("GET", &path, header, s(inp, "secret_key")));
            assert!(!auth.verify("HEAD", &path, header, s(inp, "secret_key")));
            assert!(!auth.verify("GET", &path, header, "wrong-key"));
            assert!(!auth.verify("GET", "/other", header, s(inp, "secret_key")));
            assert!(!auth.verify("GET", &path, |_| None, s(inp, "secret_key")));
        }
    }

    #[test]
    fn wrapped_shape_signs_the_same_and_verifies() {
        let params = [("x-cos-security-token", "tok+en/=")];
        let req = Presign {
            method: "GET",
            base_url: "http://127.0.0.1:8080/",
            key: "dir/a b.rdb",
            secret_id: "AKIDx",
            start: 100,
            end: 200,
            params: &params,
            sign_host: false,
            shape: UrlShape::Wrapped,
        };
        let (url, sig) = presign_url(&req, "sk");
        assert!(url.starts_with("http://127.0.0.1:8080/dir/a%20b.rdb?sign=q-sign-algorithm%3Dsha1%26q-ak%3DAKIDx%26q-sign-time%3D100%3B200"), "{url}");
        assert!(
            url.ends_with("&x-cos-security-token=tok%2Ben%2F%3D"),
            "{url}"
        );
        assert_eq!(sig.header_list, "");
        let (top, top_sig) = presign_url(
            &Presign {
                shape: UrlShape::TopLevel,
                ..req.clone()
            },
            "sk",
        );
        assert_eq!(
            sig.signature, top_sig.signature,
            "shape does not change the signature"
        );
        for u in [&url, &top] {
            let auth = UrlAuth::from_url(u).expect("parses");
            assert_eq!(auth.param("x-cos-security-token"), Some("tok+en/="));
            assert!(auth.verify("GET", "/dir/a b.rdb", |_| None, "sk"), "{u}");
        }
    }

    #[test]
    fn expiry_in_both_shapes_with_encoded_and_raw_semicolons() {
        let cases = [
            ("http://h/k?q-sign-algorithm=sha1&q-sign-time=10%3B20&q-key-time=10%3B20&q-signature=ab", (10, 20)),
            ("http://h/k?q-sign-time=10;20&q-key-time=10;20", (10, 20)),
            ("http://h/k?q-sign-time=10%3b20&q-key-time=5%3B15", (10, 15)),
            ("http://h/k?sign=q-sign-algorithm%3Dsha1%26q-ak%3DAK%26q-sign-time%3D1551952863%3B1551974523%26q-key-time%3D1551952863%3B1551974523%26q-header-list%3D%26q-url-param-list%3D%26q-signature%3Dabc", (1_551_952_863, 1_551_974_523)),
            ("http://h/k?sign=q-sign-time%3D1%253B9%26q-key-time%3D2%253B8", (2, 8)),
            ("http://h/k?x=1&sign=q-sign-time%3D1;9#frag", (1, 9)),
            ("http://h/k?q-key-time=3%3B4", (3, 4)),
        ];
        for (url, window) in cases {
            assert_eq!(url_validity(url), Some(window), "{url}");
            assert_eq!(url_expiry(url), Some(window.1), "{url}");
        }
    }

    #[test]
    fn expiry_absent_or_malformed_is_none() {
        for url in [
            "http://h/k",
            "http://h/k?",
            "http://h/k?q-signature=ab",
            "http://h/k?q-sign-time=10",
            "http://h/k?q-sign-time=a%3Bb",
            "http://h/k?sign=",
            "http://h/k#q-sign-time=1;2",
        ] {
            assert_eq!(url_expiry(url), None, "{url}");
            assert_eq!(url_validity(url), None, "{url}");
        }
    }

    #[test]
    fn missing_or_bad_auth_params_are_named() {
        assert_eq!(
            UrlAuth::from_url(
                "http://h/k?q-sign-algorithm=sha1&q-ak=a&q-sign-time=1%3B2&q-key-time=1%3B2"
            ),
            Err(CosAuthError::MissingParam("q-signature"))
        );
        assert_eq!(
            UrlAuth::from_url("http://h/k"),
            Err(CosAuthError::MissingParam("q-sign-algorithm"))
        );
        assert_eq!(
            UrlAuth::from_url("http://h/k?q-sign-algorithm=md5"),
            Err(CosAuthError::UnsupportedAlgorithm("md5".into()))
        );
        let err = UrlAuth::from_url(
            "http://h/k?q-sign-algorithm=sha1&q-ak=a&q-sign-time=x&q-key-time=1%3B2&q-signature=s",
        )
        .expect_err("bad window");
        assert_eq!(
            err.to_string(),
            "presigned url has malformed q-sign-time \"x\""
        );
    }

    #[test]
    fn debug_of_auth_and_signature_hides_credentials() {
        let (url, sig) = presign_url(
            &Presign {
                method: "GET",
                base_url: "http://h",
                key: "k",
                secret_id: "AK",
                start: 1,
                end: 2,
                params: &[("x-cos-security-token", "TOKENVALUE")],
                sign_host: true,
                shape: UrlShape::TopLevel,
            },
            "sk",
        );
        let auth = UrlAuth::from_url(&url).expect("parses");
        let shown = format!("{auth:?} {sig:?}");
        assert!(!shown.contains(&sig.signature), "{shown}");
        assert!(!shown.contains(&sig.sign_key), "{shown}");
        assert!(!shown.contains("TOKENVALUE"), "{shown}");
    }

    #[test]
    fn host_of_keeps_only_non_default_ports() {
        assert_eq!(host_of("http://127.0.0.1:8080"), "127.0.0.1:8080");
        assert_eq!(
            host_of("https://b.cos.ap-x.myqcloud.com:443/"),
            "b.cos.ap-x.myqcloud.com"
        );
        assert_eq!(host_of("http://h:80/x?y"), "h");
        assert_eq!(host_of("weird://[::1]:9"), "[::1]:9");
    }
}
