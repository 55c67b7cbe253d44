//! Types that hold secrets, and redaction of secrets inside text.
//!
//! A secret key, a session token and a presigned URL (its signature is a bearer
//! credential) never reach a log line: their `Debug` and `Display` print a
//! placeholder, and the only way to the value is an explicit `expose()`.

use std::fmt;

/// A secret string (secret key, token). Prints as `******`.
#[derive(Clone, PartialEq, Eq, Default)]
pub struct Secret(String);

impl Secret {
    /// Wrap a secret value.
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    /// The value itself, for signing. Never log what this returns.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// Whether the secret is the empty string.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(******)")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("******")
    }
}

/// A presigned download URL. `Display`/`Debug` show it with every signature
/// parameter (`q-signature`, `sign=`, `x-cos-security-token`) redacted.
#[derive(Clone, PartialEq, Eq)]
pub struct SignedUrl(String);

impl SignedUrl {
    /// Wrap a URL exactly as the API returned it (it is never re-encoded).
    pub fn new(url: impl Into<String>) -> Self {
        Self(url.into())
    }

    /// The URL to send. Never log what this returns.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for SignedUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SignedUrl({})", redact_url(&self.0))
    }
}

impl fmt::Display for SignedUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&redact_url(&self.0))
    }
}

/// Query parameters whose values are credentials.
const SECRET_PARAMS: &[&str] = &[
    "q-signature",
    "sign",
    "x-cos-security-token",
    "signature",
    "token",
];

/// Replace the value of every credential-bearing query parameter with `REDACTED`.
///
/// Works on any text that contains URLs (error messages from HTTP clients
/// embed the URL), not only on a bare URL.
pub fn redact_url(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(pos) = rest.find(['?', '&']) {
        let (head, tail) = rest.split_at(pos + 1);
        out.push_str(head);
        rest = tail;
        let name_end = rest.find('=').unwrap_or(rest.len());
        let name = &rest[..name_end];
        let is_param_name = !name.is_empty()
            && name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.');
        if is_param_name
            && name_end < rest.len()
            && SECRET_PARAMS.iter().any(|p| name.eq_ignore_ascii_case(p))
        {
            out.push_str(name);
            out.push_str("=REDACTED");
            let value = &rest[name_end + 1..];
            let value_end = value
                .find(|c: char| c == '&' || c.is_whitespace() || c == '"' || c == '\'' || c == ')')
                .unwrap_or(value.len());
            rest = &value[value_end..];
        }
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secret_never_prints() {
        let s = Secret::new("Gu5t9xGARNpq86cd98joQYCN3EXAMPLE");
        assert_eq!(format!("{s}"), "******");
        assert!(!format!("{s:?}").contains("Gu5t"));
        assert_eq!(s.expose(), "Gu5t9xGARNpq86cd98joQYCN3EXAMPLE");
    }

    #[test]
    fn redacts_top_level_cos_signature_and_token() {
        let url = "https://b.cos.ap-guangzhou.myqcloud.com/pgsql/x.tar.zst?q-sign-algorithm=sha1&q-ak=AKID&q-sign-time=1%3B2&q-signature=446657c2daa3&x-cos-security-token=EXAMPLEtok";
        let r = redact_url(url);
        assert!(!r.contains("446657c2daa3"), "{r}");
        assert!(!r.contains("EXAMPLEtok"), "{r}");
        assert!(r.contains("q-sign-time=1%3B2"), "{r}");
        assert!(r.contains("q-signature=REDACTED"), "{r}");
    }

    #[test]
    fn redacts_wrapped_redis_sign_parameter_inside_text() {
        let text = "error sending request for url (http://h/x.rdb?sign=q-sign-algorithm%3Dsha1%26q-signature%3Dabcdef0123): timed out";
        let r = redact_url(text);
        assert!(!r.contains("abcdef0123"), "{r}");
        assert!(r.ends_with("sign=REDACTED): timed out"), "{r}");
    }

    #[test]
    fn signed_url_display_is_redacted() {
        let u = SignedUrl::new("http://h/o?q-signature=deadbeef&x=1");
        assert_eq!(format!("{u}"), "http://h/o?q-signature=REDACTED&x=1");
        assert!(!format!("{u:?}").contains("deadbeef"));
    }
}
