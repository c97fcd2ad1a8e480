//! Config values written the human way: sizes (`"256 KiB"`, `"50 MB"`, `1000`) and
//! durations (`"30s"`, `"5m"`, `"30d"`, humantime).

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

impl<'de> Deserialize<'de> for ByteSize {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Num(u64),
            Text(String),
        }
        match Raw::deserialize(d)? {
            Raw::Num(n) => Ok(ByteSize(n)),
            Raw::Text(t) => t.parse().map_err(serde::de::Error::custom),
        }
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
}
