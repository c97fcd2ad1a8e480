//! Config values written the human way: sizes (`"256 KiB"`, `"50 MB"`, `1000`), limits
//! (a size or `"unlimited"`) and durations (`"30s"`, `"5m"`, `"30d"`, humantime).

use std::time::Duration;

use serde::{Deserialize, Deserializer};

/// A size in bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct ByteSize(pub u64);

impl std::str::FromStr for ByteSize {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let s = s.trim();
        let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
        let (num, unit) = s.split_at(split);
        let n: u64 = num
            .parse()
            .map_err(|_| format!("`{s}` is not a size such as \"256 KiB\""))?;
        let mult: u64 = match unit.trim().to_ascii_lowercase().as_str() {
            "" | "b" => 1,
            "k" | "kb" => 1000,
            "kib" => 1024,
            "m" | "mb" => 1000 * 1000,
            "mib" => 1024 * 1024,
            "g" | "gb" => 1000 * 1000 * 1000,
            "gib" => 1024 * 1024 * 1024,
            other => return Err(format!("unknown size unit `{other}` in `{s}`")),
        };
        n.checked_mul(mult)
            .map(ByteSize)
            .ok_or_else(|| format!("`{s}` is too large"))
    }
}

/// A size as a config file writes it: a number of bytes or a string with a unit.
#[derive(Deserialize)]
#[serde(untagged)]
enum Raw {
    Num(u64),
    Text(String),
}

impl<'de> Deserialize<'de> for ByteSize {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        match Raw::deserialize(d)? {
            Raw::Num(n) => Ok(ByteSize(n)),
            Raw::Text(t) => t.parse().map_err(serde::de::Error::custom),
        }
    }
}

/// A limit in bytes, or `"unlimited"` (`None`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ByteLimit(pub Option<ByteSize>);

impl<'de> Deserialize<'de> for ByteLimit {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        match Raw::deserialize(d)? {
            Raw::Text(t) if t.trim() == "unlimited" => Ok(ByteLimit(None)),
            Raw::Num(n) => Ok(ByteLimit(Some(ByteSize(n)))),
            Raw::Text(t) => t
                .parse()
                .map(|b| ByteLimit(Some(b)))
                .map_err(serde::de::Error::custom),
        }
    }
}

impl ByteLimit {
    /// The limit as a signed count (what the store compares with), `None` for unlimited.
    pub fn bytes(self) -> Option<i64> {
        self.0.map(|b| i64::try_from(b.0).unwrap_or(i64::MAX))
    }
}

/// `#[serde(deserialize_with = "postern_core::config::bytes")]` for a plain `u64` field.
pub fn bytes<'de, D: Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
    ByteSize::deserialize(d).map(|b| b.0)
}

/// `#[serde(deserialize_with = "postern_core::config::duration")]`: `"30s"`, `"5m"`, `"2h"`.
pub fn duration<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
    let s = String::deserialize(d)?;
    humantime::parse_duration(&s).map_err(|e| {
        serde::de::Error::custom(format!("`{s}` is not a duration such as \"30s\": {e}"))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_parse_with_binary_and_decimal_units() {
        assert_eq!("256 KiB".parse::<ByteSize>(), Ok(ByteSize(262_144)));
        assert_eq!("50MiB".parse::<ByteSize>(), Ok(ByteSize(52_428_800)));
        assert_eq!("10MB".parse::<ByteSize>(), Ok(ByteSize(10_000_000)));
        assert_eq!("1000".parse::<ByteSize>(), Ok(ByteSize(1000)));
        assert!("12 parsecs".parse::<ByteSize>().is_err());
        assert!("KiB".parse::<ByteSize>().is_err());
        assert!("99999999999 GiB".parse::<ByteSize>().is_err());
    }

    #[test]
    fn config_values_deserialize_from_numbers_and_text() {
        #[derive(Deserialize)]
        struct C {
            #[serde(deserialize_with = "bytes")]
            size: u64,
            typed: ByteSize,
            #[serde(deserialize_with = "duration")]
            wait: Duration,
        }
        let c: C =
            serde_json::from_str(r#"{"size": "2 KiB", "typed": 5, "wait": "1m"}"#).expect("parses");
        assert_eq!(
            (c.size, c.typed, c.wait),
            (2048, ByteSize(5), Duration::from_secs(60))
        );
        assert!(serde_json::from_str::<C>(r#"{"size": 1, "typed": 1, "wait": "soon"}"#).is_err());
    }

    #[test]
    fn limits_are_sizes_or_unlimited() {
        let parse = |j: &str| serde_json::from_str::<ByteLimit>(j);
        assert_eq!(parse(r#""unlimited""#).expect("limit"), ByteLimit(None));
        assert_eq!(parse(r#""1 KiB""#).expect("limit").bytes(), Some(1024));
        assert_eq!(parse("7").expect("limit"), ByteLimit(Some(ByteSize(7))));
        assert!(parse(r#""lots""#).is_err());
    }
}
