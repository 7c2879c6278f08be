//! The duration syntax of the product: `45s`, `10m`, `1h30m`, `7d`.
//!
//! One or more `<integer><unit>` groups with units `s`, `m`, `h` and `d` (24 hours). No
//! fractions, no bare numbers, no zero or negative values. Durations print with the largest
//! units first (`1h30m`, `2d`). The original rejected `7d` and silently disabled every policy
//! that used it; here `d` is a unit like the others.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// The longest duration accepted anywhere: 100 years, far beyond every real limit, small
/// enough that adding it to any timestamp cannot overflow.
const MAX_SECONDS: u64 = 100 * 365 * 86_400;

/// A positive whole number of seconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Duration(u64);

/// Why a duration string was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid duration '{input}': {problem} (use forms like 45s, 10m, 1h30m, 7d)")]
pub struct DurationError {
    input: String,
    problem: &'static str,
}

impl Duration {
    /// A duration of `seconds` seconds; `None` for zero or beyond the supported range.
    pub fn from_seconds(seconds: u64) -> Option<Self> {
        (seconds > 0 && seconds <= MAX_SECONDS).then_some(Self(seconds))
    }

    /// The number of seconds.
    pub fn as_seconds(self) -> u64 {
        self.0
    }

    /// Parses the product's duration syntax.
    pub fn parse(input: &str) -> Result<Self, DurationError> {
        let fail = |problem| DurationError {
            input: truncate(input),
            problem,
        };
        if input.is_empty() {
            return Err(fail("it is empty"));
        }
        let mut total: u64 = 0;
        let mut digits = String::new();
        for c in input.chars() {
            if c.is_ascii_digit() {
                digits.push(c);
                continue;
            }
            let unit = match c {
                's' => 1,
                'm' => 60,
                'h' => 3_600,
                'd' => 86_400,
                '.' | ',' => return Err(fail("fractions are not allowed")),
                '-' => return Err(fail("negative values are not allowed")),
                _ => return Err(fail("units are s, m, h and d")),
            };
            if digits.is_empty() {
                return Err(fail("each unit needs a number before it"));
            }
            let n: u64 = digits
                .parse()
                .map_err(|_| fail("the number is too large"))?;
            digits.clear();
            total = n
                .checked_mul(unit)
                .and_then(|s| total.checked_add(s))
                .ok_or_else(|| fail("the duration is too long"))?;
        }
        if !digits.is_empty() {
            return Err(fail("a number needs a unit (s, m, h or d)"));
        }
        if total == 0 {
            return Err(fail("it must be longer than zero"));
        }
        Self::from_seconds(total).ok_or_else(|| fail("the duration is too long"))
    }
}

fn truncate(input: &str) -> String {
    input.chars().take(32).collect()
}

impl fmt::Display for Duration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut rest = self.0;
        for (unit, size) in [("d", 86_400), ("h", 3_600), ("m", 60), ("s", 1)] {
            if rest >= size {
                write!(f, "{}{unit}", rest / size)?;
                rest %= size;
            }
        }
        Ok(())
    }
}

impl FromStr for Duration {
    type Err = DurationError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

impl Serialize for Duration {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Duration {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        Self::parse(&text).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn parses_every_unit_and_combinations() {
        let cases = [
            ("45s", 45),
            ("10m", 600),
            ("1h30m", 5_400),
            ("7d", 604_800),
            ("1d2h3m4s", 93_784),
        ];
        for (text, seconds) in cases {
            assert_eq!(
                Duration::parse(text).map(Duration::as_seconds),
                Ok(seconds),
                "{text}"
            );
        }
    }

    #[test]
    fn refuses_what_the_syntax_excludes_with_a_reason() {
        let cases = [
            ("", "empty"),
            ("10", "needs a unit"),
            ("1.5h", "fractions"),
            ("-5m", "negative"),
            ("0s", "longer than zero"),
            ("5w", "units are"),
            ("h", "needs a number"),
            ("99999999999999999999s", "too large"),
            ("40000d", "too long"),
            ("1 h", "units are"),
        ];
        for (text, reason) in cases {
            let err = Duration::parse(text).expect_err(text).to_string();
            assert!(err.contains(reason), "{text}: {err}");
        }
    }

    #[test]
    fn prints_largest_units_first() {
        assert_eq!(
            Duration::parse("90m").map(|d| d.to_string()),
            Ok("1h30m".into())
        );
        assert_eq!(
            Duration::parse("48h").map(|d| d.to_string()),
            Ok("2d".into())
        );
        assert_eq!(
            Duration::parse("61s").map(|d| d.to_string()),
            Ok("1m1s".into())
        );
    }

    proptest! {
        #[test]
        fn printing_then_parsing_round_trips(seconds in 1..=MAX_SECONDS) {
            let d = Duration::from_seconds(seconds).expect("in range");
            prop_assert_eq!(Duration::parse(&d.to_string()), Ok(d));
        }
    }
}
