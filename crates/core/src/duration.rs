//! Human-written durations in the config (`"30s"`, `"36h"`, `"14d"`, `"2w"`,
//! `"1h30m"`): parsing with an error that lists the accepted forms, and the
//! short form used when a duration is shown back to the user.

use std::time::Duration;

/// The accepted forms, quoted in every error about a duration.
pub const DURATION_FORMS: &str =
    "a whole number and a unit: \"30s\", \"10m\", \"36h\", \"14d\", \"2w\", or a sum like \"1h30m\"";

/// Why a duration string was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{why}; expected {DURATION_FORMS}")]
pub struct DurationError {
    /// What is wrong with the text.
    pub why: String,
}

const UNITS: &[(&str, u64)] = &[
    ("s", 1),
    ("sec", 1),
    ("m", 60),
    ("min", 60),
    ("h", 3600),
    ("d", 86_400),
    ("w", 7 * 86_400),
];

/// Parse a duration such as `"14d"`, `"36h"`, `"2w"`, `"90s"` or `"1h30m"`.
///
/// Units: `s`/`sec` seconds, `m`/`min` minutes, `h` hours, `d` days (24 h),
/// `w` weeks (7 d). Months and years are refused because their length varies.
/// Spaces between parts are allowed (`"1h 30m"`).
pub fn parse_duration(text: &str) -> Result<Duration, DurationError> {
    let refuse = |why: String| Err(DurationError { why });
    let trimmed = text.trim();
    if trimmed.is_empty() {
        return refuse("empty duration".to_string());
    }
    let mut total: u64 = 0;
    let mut rest = trimmed;
    while !rest.is_empty() {
        let digits_end = rest
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(rest.len());
        if digits_end == 0 {
            return refuse(if rest.len() == trimmed.len() {
                format!("{text:?} does not start with a number")
            } else {
                format!("{text:?} has no number before {rest:?}")
            });
        }
        let (digits, after_digits) = rest.split_at(digits_end);
        let unit_end = after_digits
            .find(|c: char| !c.is_ascii_alphabetic())
            .unwrap_or(after_digits.len());
        let (unit, after_unit) = after_digits.split_at(unit_end);
        if unit.is_empty() {
            let hint = if after_digits.starts_with('.') {
                "fractions are not accepted (write \"90m\" rather than \"1.5h\")".to_string()
            } else {
                format!("{text:?} has a number without a unit")
            };
            return refuse(hint);
        }
        let Some(&(_, seconds_per_unit)) = UNITS.iter().find(|(name, _)| *name == unit) else {
            let hint = match unit {
                "mo" | "month" | "months" | "y" | "year" | "years" => {
                    " (months and years vary in length; use days or weeks)"
                }
                "ms" | "us" | "ns" => " (sub-second durations are not needed here)",
                _ => "",
            };
            return refuse(format!("unknown unit {unit:?} in {text:?}{hint}"));
        };
        let Ok(count) = digits.parse::<u64>() else {
            return refuse(format!("{text:?} is too large"));
        };
        let Some(part) = count.checked_mul(seconds_per_unit) else {
            return refuse(format!("{text:?} is too large"));
        };
        let Some(sum) = total.checked_add(part) else {
            return refuse(format!("{text:?} is too large"));
        };
        total = sum;
        rest = after_unit.trim_start();
    }
    Ok(Duration::from_secs(total))
}

/// Show a duration in the largest single unit that represents it exactly
/// (`2w`, `10d`, `36h`, `90m`, `61s`); used in messages and retention reasons.
pub fn format_duration(duration: Duration) -> String {
    let seconds = duration.as_secs();
    if seconds == 0 {
        return "0s".to_string();
    }
    let (unit, size) = [("w", 7 * 86_400), ("d", 86_400), ("h", 3600), ("m", 60)]
        .into_iter()
        .find(|(_, size)| seconds.is_multiple_of(*size))
        .unwrap_or(("s", 1));
    format!("{}{unit}", seconds / size)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_the_documented_forms() {
        let cases = [
            ("30s", 30),
            ("10m", 600),
            ("90min", 5400),
            ("36h", 36 * 3600),
            ("14d", 14 * 86_400),
            ("2w", 14 * 86_400),
            ("1h30m", 5400),
            ("1h 30m", 5400),
            (" 7d ", 7 * 86_400),
            ("0s", 0),
        ];
        for (text, seconds) in cases {
            assert_eq!(
                parse_duration(text),
                Ok(Duration::from_secs(seconds)),
                "{text}"
            );
        }
    }

    #[test]
    fn refuses_with_the_accepted_forms_in_the_message() {
        for bad in ["", "14", "d", "1.5h", "3mo", "1y", "14 days", "-3d", "7D"] {
            let err = parse_duration(bad).expect_err(bad).to_string();
            assert!(err.contains("\"14d\""), "{bad}: {err}");
        }
        assert!(parse_duration("3mo")
            .expect_err("months")
            .to_string()
            .contains("months and years vary"));
        assert!(parse_duration("1.5h")
            .expect_err("fraction")
            .to_string()
            .contains("fractions"));
        assert!(parse_duration("99999999999999999999w").is_err());
    }

    #[test]
    fn formats_back_in_natural_units() {
        for (seconds, text) in [
            (14 * 86_400, "2w"),
            (10 * 86_400, "10d"),
            (36 * 3600, "36h"),
            (5400, "90m"),
            (0, "0s"),
            (61, "61s"),
        ] {
            assert_eq!(format_duration(Duration::from_secs(seconds)), text);
        }
    }
}
