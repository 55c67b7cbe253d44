//! The APIs' zone-less `YYYY-MM-DD hh:mm:ss` time strings: parsing them into
//! UTC instants and formatting request bounds, at a fixed UTC offset.
//!
//! Neither API states the zone of these strings; design.md §2 fixes UTC+8
//! (China Standard Time) unless the user configures another offset.

use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, FixedOffset, NaiveDateTime, TimeZone, Utc};

/// The `strftime` pattern of every API time string.
pub const API_TIME_FORMAT: &str = "%Y-%m-%d %H:%M:%S";

/// Offset of China Standard Time, the default zone of API time strings.
pub const DEFAULT_OFFSET_SECONDS: i32 = 8 * 3600;

/// Why a time string or an offset could not be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TimeError {
    /// A time string from the API is not `YYYY-MM-DD hh:mm:ss`.
    #[error("invalid api time {value:?}: expected YYYY-MM-DD hh:mm:ss ({reason})")]
    BadTime {
        /// The string as received.
        value: String,
        /// What the parser said.
        reason: String,
    },
    /// An offset is not of the form `+08:00`, `-05:30` or `Z`.
    #[error("invalid utc offset {value:?}: expected +hh:mm or -hh:mm, e.g. +08:00")]
    BadOffset {
        /// The offset as given.
        value: String,
    },
}

/// The fixed UTC offset in which the APIs' time strings are read and written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ApiTimeZone {
    offset: FixedOffset,
}

impl Default for ApiTimeZone {
    /// UTC+8.
    fn default() -> Self {
        Self::from_offset(CHINA_STANDARD_TIME)
    }
}

/// UTC+8 (China Standard Time): the default zone of API time strings and
/// of retention's calendar days. The one definition of it.
pub const CHINA_STANDARD_TIME: FixedOffset = match FixedOffset::east_opt(DEFAULT_OFFSET_SECONDS) {
    Some(offset) => offset,
    // Evaluated at compile time: 8 hours is well inside chrono's ±24 h range.
    None => panic!("+08:00 is a valid offset"),
};

impl ApiTimeZone {
    /// Read and write API times at `offset`.
    pub fn from_offset(offset: FixedOffset) -> Self {
        Self { offset }
    }

    /// Read and write API times at `seconds` east of UTC.
    pub fn from_offset_seconds(seconds: i32) -> Result<Self, TimeError> {
        FixedOffset::east_opt(seconds)
            .map(Self::from_offset)
            .ok_or_else(|| TimeError::BadOffset {
                value: seconds.to_string(),
            })
    }

    /// The offset in use.
    pub fn offset(&self) -> FixedOffset {
        self.offset
    }

    /// Parse an API time string into a UTC instant.
    pub fn parse(&self, value: &str) -> Result<DateTime<Utc>, TimeError> {
        let naive = NaiveDateTime::parse_from_str(value.trim(), API_TIME_FORMAT).map_err(|e| {
            TimeError::BadTime {
                value: value.to_string(),
                reason: e.to_string(),
            }
        })?;
        match self.offset.from_local_datetime(&naive).single() {
            Some(local) => Ok(local.with_timezone(&Utc)),
            // A fixed offset has neither gaps nor folds, but report rather than panic.
            None => Err(TimeError::BadTime {
                value: value.to_string(),
                reason: "not representable at this offset".to_string(),
            }),
        }
    }

    /// Parse a time the API may leave unset: an empty string and the zero
    /// date `0000-00-00 00:00:00` (as sent for unfinished backups) are `None`.
    pub fn parse_optional(&self, value: &str) -> Result<Option<DateTime<Utc>>, TimeError> {
        let trimmed = value.trim();
        if trimmed.is_empty() || trimmed.starts_with("0000-00-00") {
            return Ok(None);
        }
        self.parse(trimmed).map(Some)
    }

    /// Format a UTC instant as an API time string (sub-seconds are dropped).
    pub fn format(&self, at: DateTime<Utc>) -> String {
        at.with_timezone(&self.offset)
            .format(API_TIME_FORMAT)
            .to_string()
    }
}

impl fmt::Display for ApiTimeZone {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.offset)
    }
}

impl FromStr for ApiTimeZone {
    type Err = TimeError;

    /// Parse `+08:00`, `-05:30`, `+0800`, `+08` or `Z`/`UTC`.
    fn from_str(value: &str) -> Result<Self, Self::Err> {
        let bad = || TimeError::BadOffset {
            value: value.to_string(),
        };
        let text = value.trim();
        if text.eq_ignore_ascii_case("z") || text.eq_ignore_ascii_case("utc") {
            return Self::from_offset_seconds(0);
        }
        let (sign, rest) = match text.as_bytes().first() {
            Some(b'+') => (1, &text[1..]),
            Some(b'-') => (-1, &text[1..]),
            _ => return Err(bad()),
        };
        let (hours, minutes) = match rest.split_once(':') {
            Some((h, m)) => (h, m),
            None if rest.len() == 4 => rest.split_at(2),
            None => (rest, "0"),
        };
        let all_digits =
            |s: &str| !s.is_empty() && s.len() <= 2 && s.bytes().all(|b| b.is_ascii_digit());
        if !all_digits(hours) || !all_digits(minutes) {
            return Err(bad());
        }
        let hours: i32 = hours.parse().map_err(|_| bad())?;
        let minutes: i32 = minutes.parse().map_err(|_| bad())?;
        if hours > 23 || minutes > 59 {
            return Err(bad());
        }
        Self::from_offset_seconds(sign * (hours * 3600 + minutes * 60)).map_err(|_| bad())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_reads_times_as_utc_plus_8() {
        let tz = ApiTimeZone::default();
        let t = tz.parse("2019-02-26 00:44:25").expect("valid");
        assert_eq!(t.to_rfc3339(), "2019-02-25T16:44:25+00:00");
        assert_eq!(tz.format(t), "2019-02-26 00:44:25");
    }

    #[test]
    fn configured_offset_is_used_both_ways() {
        let tz: ApiTimeZone = "-05:30".parse().expect("offset");
        let t = tz.parse("2024-01-01 00:00:00").expect("valid");
        assert_eq!(t.to_rfc3339(), "2024-01-01T05:30:00+00:00");
        assert_eq!(tz.format(t), "2024-01-01 00:00:00");
        let utc: ApiTimeZone = "Z".parse().expect("offset");
        assert_eq!(utc.format(t), "2024-01-01 05:30:00");
        let compact: ApiTimeZone = "+0800".parse().expect("offset");
        assert_eq!(compact, ApiTimeZone::default());
    }

    #[test]
    fn bad_times_name_the_value_and_the_format() {
        let tz = ApiTimeZone::default();
        for bad in [
            "2024-13-01 00:00:00",
            "2024-01-01T00:00:00",
            "yesterday",
            "",
        ] {
            let err = tz.parse(bad).expect_err(bad);
            let text = err.to_string();
            assert!(text.contains("YYYY-MM-DD hh:mm:ss"), "{text}");
            assert!(text.contains(&format!("{bad:?}")), "{text}");
        }
    }

    #[test]
    fn unset_times_are_none() {
        let tz = ApiTimeZone::default();
        assert_eq!(tz.parse_optional("").expect("ok"), None);
        assert_eq!(tz.parse_optional("0000-00-00 00:00:00").expect("ok"), None);
        assert!(tz.parse_optional("2024-02-30 00:00:00").is_err());
        assert!(tz
            .parse_optional("2024-02-29 00:00:00")
            .expect("ok")
            .is_some());
    }

    #[test]
    fn bad_offsets_are_refused() {
        for bad in ["08:00", "+8:0:0", "+24:00", "+08:60", "east", "+"] {
            assert!(bad.parse::<ApiTimeZone>().is_err(), "{bad}");
        }
    }
}
