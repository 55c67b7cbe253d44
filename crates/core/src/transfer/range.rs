//! HTTP byte ranges, pure: the `Range` header we send, parsing of the
//! `Content-Range` we get back (RFC 9110 §14.4), and the strict check that a
//! 206 answers exactly the request we made for the object we expect.
//!
//! A server or proxy that bends Range (a 206 starting before the requested
//! offset, a different total, a length that disagrees with the range) has
//! corrupted downloads in other tools; nothing from such a response is
//! written.

/// A parsed `Content-Range` value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ContentRange {
    /// `bytes first-last/complete` (complete is `None` for `*`).
    Bytes {
        /// First byte position, inclusive.
        first: u64,
        /// Last byte position, inclusive.
        last: u64,
        /// The full length of the representation, when the server knows it.
        complete: Option<u64>,
    },
    /// `bytes */complete`, sent with 416.
    Unsatisfied {
        /// The full length of the representation.
        complete: u64,
    },
}

/// A `Content-Range` value that does not follow RFC 9110.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("malformed content-range {value:?}")]
pub struct ContentRangeSyntax {
    /// The header value, truncated to 80 characters.
    pub value: String,
}

/// Parse a `Content-Range` header value.
pub fn parse_content_range(value: &str) -> Result<ContentRange, ContentRangeSyntax> {
    let bad = || ContentRangeSyntax {
        value: value.chars().take(80).collect(),
    };
    let trimmed = value.trim();
    let (unit, rest) = trimmed.split_once(' ').ok_or_else(bad)?;
    if !unit.eq_ignore_ascii_case("bytes") {
        return Err(bad());
    }
    let (range, complete) = rest.trim_start().split_once('/').ok_or_else(bad)?;
    let complete = match complete {
        "*" => None,
        digits => Some(parse_u64(digits).ok_or_else(bad)?),
    };
    if range == "*" {
        return complete
            .map(|complete| ContentRange::Unsatisfied { complete })
            .ok_or_else(bad);
    }
    let (first, last) = range.split_once('-').ok_or_else(bad)?;
    let first = parse_u64(first).ok_or_else(bad)?;
    let last = parse_u64(last).ok_or_else(bad)?;
    if last < first || complete.is_some_and(|c| last >= c) {
        return Err(bad());
    }
    Ok(ContentRange::Bytes {
        first,
        last,
        complete,
    })
}

/// Strict decimal: ASCII digits only, no sign, no overflow.
fn parse_u64(s: &str) -> Option<u64> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

/// The `Range` header for bytes `start..end` (end exclusive; `None` means to
/// the end of the object).
pub fn range_header(start: u64, end: Option<u64>) -> String {
    match end {
        Some(end) if end > start => format!("bytes={start}-{}", end - 1),
        _ => format!("bytes={start}-"),
    }
}

/// How a 206 disagrees with what was asked.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RangeMismatch {
    /// The 206 carried no `Content-Range`, or an unparseable one.
    #[error("206 without a valid content-range")]
    Missing,
    /// The object has a different size than announced: it is not the file
    /// we were asked to fetch.
    #[error("object is {} bytes, expected {expected}", actual.map_or_else(|| "an unknown number of".to_owned(), |a| a.to_string()))]
    Total {
        /// The size we expect.
        expected: u64,
        /// The size the server reports (`None` for `*`).
        actual: Option<u64>,
    },
    /// The range does not start where we asked.
    #[error("206 starts at byte {got}, requested {requested}")]
    Start {
        /// The offset we asked for.
        requested: u64,
        /// The offset the server sent.
        got: u64,
    },
    /// The range ends past what we asked for.
    #[error("206 ends at byte {got}, requested at most {requested}")]
    End {
        /// The last byte we asked for.
        requested: u64,
        /// The last byte the server sent.
        got: u64,
    },
    /// `Content-Length` disagrees with the range.
    #[error("content-length {content_length} does not match range length {range_length}")]
    Length {
        /// The `Content-Length` header.
        content_length: u64,
        /// `last - first + 1`.
        range_length: u64,
    },
    /// A 416 or `*` range where a byte range was needed.
    #[error("content-range is unsatisfied")]
    Unsatisfied,
}

impl RangeMismatch {
    /// Whether the mismatch says the object itself differs (fatal for the
    /// file) rather than that this one response was bent (worth a retry).
    pub fn is_wrong_object(&self) -> bool {
        matches!(self, RangeMismatch::Total { .. })
    }
}

/// Check a 206 against the request `start..end` (end exclusive) for an
/// object of `expected_total` bytes. On success returns the end (exclusive)
/// of the bytes this response carries, which may be short of `end`: the
/// caller asks again for the rest.
pub fn check_partial(
    start: u64,
    end: u64,
    expected_total: u64,
    content_range: Option<&str>,
    content_length: Option<u64>,
) -> Result<u64, RangeMismatch> {
    let parsed = content_range
        .map(parse_content_range)
        .and_then(Result::ok)
        .ok_or(RangeMismatch::Missing)?;
    let (first, last, complete) = match parsed {
        ContentRange::Bytes {
            first,
            last,
            complete,
        } => (first, last, complete),
        ContentRange::Unsatisfied { .. } => return Err(RangeMismatch::Unsatisfied),
    };
    if complete != Some(expected_total) {
        return Err(RangeMismatch::Total {
            expected: expected_total,
            actual: complete,
        });
    }
    if first != start {
        return Err(RangeMismatch::Start {
            requested: start,
            got: first,
        });
    }
    let requested_last = end.saturating_sub(1);
    if last > requested_last {
        return Err(RangeMismatch::End {
            requested: requested_last,
            got: last,
        });
    }
    let range_length = last - first + 1;
    if let Some(content_length) = content_length {
        if content_length != range_length {
            return Err(RangeMismatch::Length {
                content_length,
                range_length,
            });
        }
    }
    Ok(last + 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_table() {
        use ContentRange::*;
        let ok: &[(&str, ContentRange)] = &[
            (
                "bytes 0-499/1234",
                Bytes {
                    first: 0,
                    last: 499,
                    complete: Some(1234),
                },
            ),
            (
                "bytes 500-1233/1234",
                Bytes {
                    first: 500,
                    last: 1233,
                    complete: Some(1234),
                },
            ),
            (
                "bytes 42-42/*",
                Bytes {
                    first: 42,
                    last: 42,
                    complete: None,
                },
            ),
            (
                "BYTES 0-0/1",
                Bytes {
                    first: 0,
                    last: 0,
                    complete: Some(1),
                },
            ),
            (
                "  bytes  7-9/10 ",
                Bytes {
                    first: 7,
                    last: 9,
                    complete: Some(10),
                },
            ),
            ("bytes */1234", Unsatisfied { complete: 1234 }),
            (
                "bytes 0-18446744073709551614/18446744073709551615",
                Bytes {
                    first: 0,
                    last: u64::MAX - 1,
                    complete: Some(u64::MAX),
                },
            ),
        ];
        for (input, want) in ok {
            assert_eq!(parse_content_range(input).as_ref(), Ok(want), "{input}");
        }
        let bad = [
            "",
            "bytes",
            "bytes 0-499",
            "bytes 500-499/1234",
            "bytes 0-1234/1234",
            "bytes -1-5/10",
            "bytes +1-5/10",
            "bytes 1-5/-10",
            "bytes */*",
            "items 0-1/2",
            "bytes 0-99999999999999999999/1",
            "bytes 1 - 5/10",
            "bytes 0x1-5/10",
        ];
        for input in bad {
            assert!(parse_content_range(input).is_err(), "{input:?} should fail");
        }
    }

    #[test]
    fn range_header_forms() {
        assert_eq!(range_header(0, None), "bytes=0-");
        assert_eq!(range_header(100, None), "bytes=100-");
        assert_eq!(range_header(0, Some(1024)), "bytes=0-1023");
        assert_eq!(range_header(5, Some(6)), "bytes=5-5");
    }

    #[test]
    fn check_partial_table() {
        // (start, end, total, content-range, content-length, expected)
        type Case<'a> = (
            u64,
            u64,
            u64,
            Option<&'a str>,
            Option<u64>,
            Result<u64, RangeMismatch>,
        );
        let cases: &[Case<'_>] = &[
            (
                100,
                1000,
                1000,
                Some("bytes 100-999/1000"),
                Some(900),
                Ok(1000),
            ),
            (0, 500, 1000, Some("bytes 0-499/1000"), Some(500), Ok(500)),
            (0, 500, 1000, Some("bytes 0-199/1000"), None, Ok(200)),
            (
                100,
                1000,
                1000,
                None,
                Some(900),
                Err(RangeMismatch::Missing),
            ),
            (
                100,
                1000,
                1000,
                Some("garbage"),
                None,
                Err(RangeMismatch::Missing),
            ),
            (
                100,
                1000,
                1000,
                Some("bytes 0-999/1000"),
                None,
                Err(RangeMismatch::Start {
                    requested: 100,
                    got: 0,
                }),
            ),
            (
                100,
                1000,
                1000,
                Some("bytes 90-999/1000"),
                None,
                Err(RangeMismatch::Start {
                    requested: 100,
                    got: 90,
                }),
            ),
            (
                100,
                1000,
                1000,
                Some("bytes 100-1999/2000"),
                None,
                Err(RangeMismatch::Total {
                    expected: 1000,
                    actual: Some(2000),
                }),
            ),
            (
                100,
                1000,
                1000,
                Some("bytes 100-999/*"),
                None,
                Err(RangeMismatch::Total {
                    expected: 1000,
                    actual: None,
                }),
            ),
            (
                0,
                500,
                1000,
                Some("bytes 0-599/1000"),
                None,
                Err(RangeMismatch::End {
                    requested: 499,
                    got: 599,
                }),
            ),
            (
                0,
                500,
                1000,
                Some("bytes 0-499/1000"),
                Some(499),
                Err(RangeMismatch::Length {
                    content_length: 499,
                    range_length: 500,
                }),
            ),
            (
                0,
                500,
                1000,
                Some("bytes */1000"),
                None,
                Err(RangeMismatch::Unsatisfied),
            ),
        ];
        for (start, end, total, cr, cl, want) in cases {
            assert_eq!(
                &check_partial(*start, *end, *total, *cr, *cl),
                want,
                "{start}..{end} of {total}, {cr:?}"
            );
        }
        assert!(RangeMismatch::Total {
            expected: 1,
            actual: None
        }
        .is_wrong_object());
        assert!(!RangeMismatch::Start {
            requested: 1,
            got: 0
        }
        .is_wrong_object());
    }
}
