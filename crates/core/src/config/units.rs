//! Human-written sizes and clock values in the config: byte sizes
//! (`"64MiB"`), bandwidth (`"100MiB/s"`), UTC offsets (`"+08:00"`) and times
//! of day (`"03:30"`). Each parser's error lists the accepted forms.

use chrono::{FixedOffset, NaiveTime};

/// The accepted byte-size forms, quoted in errors.
pub const SIZE_FORMS: &str =
    "a number and a unit: \"512KiB\", \"64MiB\", \"1GiB\" (powers of 1024) \
     or \"500kB\", \"10MB\", \"1GB\" (powers of 1000), or \"4096B\"";

/// The accepted bandwidth forms, quoted in errors.
pub const BANDWIDTH_FORMS: &str =
    "a size per second: \"100MiB/s\", \"10MB/s\", \"500KiB/s\" (KiB/MiB/GiB are powers of 1024, kB/MB/GB powers of 1000)";

/// The accepted UTC-offset forms, quoted in errors.
pub const OFFSET_FORMS: &str = "a UTC offset: \"+08:00\", \"-05:30\", \"+08\" or \"UTC\"";

/// The accepted time-of-day forms, quoted in errors.
pub const TIME_OF_DAY_FORMS: &str = "a 24-hour time \"HH:MM\" such as \"03:30\" (or \"HH:MM:SS\")";

/// Why a size, bandwidth, offset or time of day was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{why}; expected {expected}")]
pub struct ValueError {
    /// What is wrong with the text.
    pub why: String,
    /// The accepted forms.
    pub expected: &'static str,
}

const SIZE_UNITS: &[(&str, u64)] = &[
    ("B", 1),
    ("kB", 1000),
    ("KB", 1000),
    ("MB", 1000 * 1000),
    ("GB", 1000 * 1000 * 1000),
    ("TB", 1000 * 1000 * 1000 * 1000),
    ("KiB", 1 << 10),
    ("MiB", 1 << 20),
    ("GiB", 1 << 30),
    ("TiB", 1 << 40),
];

/// Parse a byte size such as `"64MiB"`, `"1.5GiB"`, `"10MB"` or `"4096B"`.
///
/// Units are case-sensitive on purpose: `"mb"` or `"Mb"` could mean megabits,
/// so they are refused with a hint instead of guessed.
pub fn parse_size(text: &str) -> Result<u64, ValueError> {
    parse_size_with(text, SIZE_FORMS)
}

/// Parse a bandwidth such as `"100MiB/s"`, `"10MB/s"` or `"500KiB/s"` into
/// bytes per second. The `/s` may be left out. Zero is refused: leave the key
/// out for no limit.
pub fn parse_bandwidth(text: &str) -> Result<u64, ValueError> {
    let trimmed = text.trim();
    let size_text = trimmed
        .strip_suffix("/s")
        .or_else(|| trimmed.strip_suffix("ps"))
        .unwrap_or(trimmed);
    if let Some((_, per)) = size_text.split_once('/') {
        return Err(ValueError {
            why: format!("{text:?} is not per second (\"/{per}\")"),
            expected: BANDWIDTH_FORMS,
        });
    }
    let bytes = parse_size_with(size_text, BANDWIDTH_FORMS)?;
    if bytes == 0 {
        return Err(ValueError {
            why: "a bandwidth limit of zero would stop every download (leave the key out for no limit)"
                .to_string(),
            expected: BANDWIDTH_FORMS,
        });
    }
    Ok(bytes)
}

fn parse_size_with(text: &str, expected: &'static str) -> Result<u64, ValueError> {
    let refuse = |why: String| Err(ValueError { why, expected });
    let trimmed = text.trim();
    let number_end = trimmed
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(trimmed.len());
    let (number, unit) = trimmed.split_at(number_end);
    let unit = unit.trim_start();
    if number.is_empty() {
        return refuse(format!("{text:?} does not start with a number"));
    }
    if unit.is_empty() {
        return refuse(format!("{text:?} has no unit"));
    }
    let Some(&(_, multiplier)) = SIZE_UNITS.iter().find(|(name, _)| *name == unit) else {
        let close = SIZE_UNITS
            .iter()
            .find(|(name, _)| name.eq_ignore_ascii_case(unit));
        let why = match close {
            Some((name, _)) if unit.ends_with('b') => format!(
                "unit {unit:?} reads as bits; write {name:?} for bytes (units are case-sensitive)"
            ),
            Some((name, _)) => format!("unit {unit:?} should be written {name:?}"),
            None => format!("unknown unit {unit:?} in {text:?}"),
        };
        return refuse(why);
    };
    let (whole, fraction) = number.split_once('.').unwrap_or((number, ""));
    if whole.is_empty() || fraction.contains('.') || (number.contains('.') && fraction.is_empty()) {
        return refuse(format!("{number:?} is not a number"));
    }
    let Ok(whole_value) = whole.parse::<u64>() else {
        return refuse(format!("{text:?} is too large"));
    };
    let Some(mut bytes) = whole_value.checked_mul(multiplier) else {
        return refuse(format!("{text:?} is too large"));
    };
    if !fraction.is_empty() {
        // Exact decimal arithmetic on the digits so "1.5GiB" is exactly
        // 1.5 * 2^30 and no float rounding decides a byte count.
        let digits = fraction.len().min(12);
        let Ok(numerator) = fraction[..digits].parse::<u128>() else {
            return refuse(format!("{number:?} is not a number"));
        };
        let denominator = 10u128.pow(u32::try_from(digits).unwrap_or(12));
        let extra = numerator * u128::from(multiplier) / denominator;
        let Some(sum) = u64::try_from(extra)
            .ok()
            .and_then(|extra| bytes.checked_add(extra))
        else {
            return refuse(format!("{text:?} is too large"));
        };
        bytes = sum;
    }
    Ok(bytes)
}

/// Show a byte count in the largest binary unit that represents it exactly
/// (`64MiB`, `1GiB`, `1500B`).
pub fn format_size(bytes: u64) -> String {
    if bytes == 0 {
        return "0B".to_string();
    }
    let (unit, size) = [
        ("TiB", 1u64 << 40),
        ("GiB", 1 << 30),
        ("MiB", 1 << 20),
        ("KiB", 1 << 10),
    ]
    .into_iter()
    .find(|(_, size)| bytes.is_multiple_of(*size))
    .unwrap_or(("B", 1));
    format!("{}{unit}", bytes / size)
}

/// Parse a UTC offset: `"+08:00"`, `"-05:30"`, `"+0800"`, `"+08"`, `"UTC"`
/// or `"Z"`. Named zones (`"Asia/Shanghai"`) are refused with a hint: the
/// API's times carry no zone and China has no daylight saving time, so a
/// fixed offset is exact.
pub fn parse_offset(text: &str) -> Result<FixedOffset, ValueError> {
    let refuse = |why: String| {
        Err(ValueError {
            why,
            expected: OFFSET_FORMS,
        })
    };
    let trimmed = text.trim();
    if trimmed.eq_ignore_ascii_case("utc") || trimmed == "Z" {
        return FixedOffset::east_opt(0).map_or_else(|| refuse("zero offset".to_string()), Ok);
    }
    let (sign, rest) = match trimmed.as_bytes().first() {
        Some(b'+') => (1, &trimmed[1..]),
        Some(b'-') => (-1, &trimmed[1..]),
        _ if trimmed.contains('/') => {
            return refuse(format!(
            "named time zones such as {trimmed:?} are not supported (Asia/Shanghai is \"+08:00\")"
        ))
        }
        _ => return refuse(format!("{text:?} does not start with + or -")),
    };
    let (hours, minutes) = match (rest.split_once(':'), rest.len()) {
        (Some((h, m)), _) => (h, m),
        (None, 4) => rest.split_at(2),
        (None, _) => (rest, "0"),
    };
    let all_digits =
        |s: &str| !s.is_empty() && s.len() <= 2 && s.bytes().all(|b| b.is_ascii_digit());
    if !all_digits(hours) || !all_digits(minutes) {
        return refuse(format!("{text:?} is not an offset"));
    }
    let (Ok(h), Ok(m)) = (hours.parse::<i32>(), minutes.parse::<i32>()) else {
        return refuse(format!("{text:?} is not an offset"));
    };
    if h > 14 || m > 59 {
        return refuse(format!("{text:?} is out of range (at most 14 hours)"));
    }
    match FixedOffset::east_opt(sign * (h * 3600 + m * 60)) {
        Some(offset) => Ok(offset),
        None => refuse(format!("{text:?} is out of range")),
    }
}

/// Parse a time of day `"HH:MM"` or `"HH:MM:SS"` (24-hour clock).
pub fn parse_time_of_day(text: &str) -> Result<NaiveTime, ValueError> {
    let trimmed = text.trim();
    NaiveTime::parse_from_str(trimmed, "%H:%M")
        .or_else(|_| NaiveTime::parse_from_str(trimmed, "%H:%M:%S"))
        .map_err(|_| ValueError {
            why: format!("{text:?} is not a time of day"),
            expected: TIME_OF_DAY_FORMS,
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_in_both_unit_families() {
        for (text, bytes) in [
            ("4096B", 4096),
            ("64MiB", 64 << 20),
            ("1GiB", 1 << 30),
            ("1.5GiB", 3 << 29),
            ("500kB", 500_000),
            ("10MB", 10_000_000),
            ("2 TiB", 2 << 40),
        ] {
            assert_eq!(parse_size(text), Ok(bytes), "{text}");
        }
    }

    #[test]
    fn refuses_ambiguous_or_missing_units() {
        let err = parse_size("10Mb").expect_err("bits").to_string();
        assert!(err.contains("bits") && err.contains("\"MB\""), "{err}");
        assert!(parse_size("10mib")
            .expect_err("case")
            .to_string()
            .contains("\"MiB\""));
        for bad in ["", "64", "MiB", "1.2.3MiB", "5XB", "-1MiB", "1.MiB"] {
            let err = parse_size(bad).expect_err(bad).to_string();
            assert!(err.contains("\"64MiB\""), "{bad}: {err}");
        }
        assert!(parse_size("99999999999TiB").is_err());
    }

    #[test]
    fn bandwidth_accepts_the_documented_forms() {
        assert_eq!(parse_bandwidth("100MiB/s"), Ok(100 << 20));
        assert_eq!(parse_bandwidth("10MB/s"), Ok(10_000_000));
        assert_eq!(parse_bandwidth("500KiB/s"), Ok(500 << 10));
        assert_eq!(parse_bandwidth("1MiB"), Ok(1 << 20));
        for bad in ["0MiB/s", "100MiB/h", "fast", "100Mbps"] {
            let err = parse_bandwidth(bad).expect_err(bad).to_string();
            assert!(err.contains("\"100MiB/s\""), "{bad}: {err}");
        }
    }

    #[test]
    fn formats_sizes_exactly() {
        assert_eq!(format_size(64 << 20), "64MiB");
        assert_eq!(format_size(1500), "1500B");
        assert_eq!(format_size(0), "0B");
    }

    #[test]
    fn offsets() {
        let east8 = FixedOffset::east_opt(8 * 3600).expect("valid");
        assert_eq!(parse_offset("+08:00"), Ok(east8));
        assert_eq!(parse_offset("+0800"), Ok(east8));
        assert_eq!(parse_offset("+08"), Ok(east8));
        assert_eq!(
            parse_offset("-05:30"),
            Ok(FixedOffset::west_opt(5 * 3600 + 1800).expect("valid"))
        );
        assert_eq!(
            parse_offset("UTC"),
            Ok(FixedOffset::east_opt(0).expect("valid"))
        );
        let err = parse_offset("Asia/Shanghai")
            .expect_err("named")
            .to_string();
        assert!(err.contains("+08:00"), "{err}");
        for bad in ["8", "+25:00", "+08:60", "+8:0:0", ""] {
            assert!(parse_offset(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn times_of_day() {
        assert_eq!(
            parse_time_of_day("03:30"),
            Ok(NaiveTime::from_hms_opt(3, 30, 0).expect("valid"))
        );
        assert_eq!(
            parse_time_of_day("23:59:59"),
            Ok(NaiveTime::from_hms_opt(23, 59, 59).expect("valid"))
        );
        for bad in ["24:00", "3pm", ""] {
            assert!(parse_time_of_day(bad).is_err(), "{bad}");
        }
    }
}
