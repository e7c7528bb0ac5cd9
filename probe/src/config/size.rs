//! Sizes in config are strings with a binary unit: `"64KiB"`, `"1MiB"`,
//! `"1GiB"` (also `B`, and decimal `KB`/`MB`/`GB`). A bare number is rejected
//! because its unit would be a guess.

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A byte size written as a string with a unit.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Size(pub u64);

/// Parses `"<number><unit>"`.
pub fn parse_size(text: &str) -> Result<u64, String> {
    let t = text.trim();
    let split = t
        .find(|c: char| !c.is_ascii_digit() && c != '.')
        .unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let hint = "use a number and a unit (B, KiB, MiB, GiB), e.g. \"64KiB\" or \"1GiB\"";
    let n: f64 = num
        .parse()
        .map_err(|_| format!("invalid size {text:?}: {hint}"))?;
    let mult: u64 = match unit.trim() {
        "B" => 1,
        "KiB" => 1 << 10,
        "MiB" => 1 << 20,
        "GiB" => 1 << 30,
        "TiB" => 1 << 40,
        "KB" | "kB" => 1000,
        "MB" => 1_000_000,
        "GB" => 1_000_000_000,
        "" => return Err(format!("size {text:?} has no unit: {hint}")),
        _ => return Err(format!("invalid size unit in {text:?}: {hint}")),
    };
    let v = n * mult as f64;
    if !v.is_finite() || v < 0.0 || v > (1u64 << 50) as f64 {
        return Err(format!("size {text:?} is out of range"));
    }
    Ok(v as u64)
}

/// Formats in the largest binary unit that represents the size exactly.
pub fn format_size(b: u64) -> String {
    for (unit, size) in [("GiB", 1u64 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)] {
        if b >= size && b.is_multiple_of(size) {
            return format!("{}{unit}", b / size);
        }
    }
    format!("{b}B")
}

impl Size {
    /// Bytes.
    pub fn bytes(self) -> u64 {
        self.0
    }
}

impl fmt::Debug for Size {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&format_size(self.0))
    }
}

impl fmt::Display for Size {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&format_size(self.0))
    }
}

impl<'de> Deserialize<'de> for Size {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl serde::de::Visitor<'_> for V {
            type Value = Size;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a size string such as \"1MiB\"")
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Size, E> {
                parse_size(v).map(Size).map_err(E::custom)
            }
            fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<Size, E> {
                Err(E::custom(format!(
                    "size {v} has no unit: write it as a string, e.g. \"{v}B\" or \"1MiB\""
                )))
            }
            fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<Size, E> {
                self.visit_i64(v as i64)
            }
        }
        d.deserialize_any(V)
    }
}

/// The pattern [`parse_size`] accepts, for the JSON Schema.
pub const SIZE_PATTERN: &str = r"^\s*[0-9]+(\.[0-9]+)?\s*(B|KiB|MiB|GiB|TiB|KB|kB|MB|GB)\s*$";

// A string with a unit, not the integer a derive would describe.
impl schemars::JsonSchema for Size {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "Size".into()
    }

    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({
            "type": "string",
            "pattern": SIZE_PATTERN,
            "description": "A byte size: a number and a unit (B, KiB, MiB, GiB, TiB, or decimal KB, MB, GB), e.g. \"64KiB\", \"1GiB\". A bare number is refused.",
            "examples": ["64KiB", "1GiB"],
        })
    }
}

impl Serialize for Size {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&format_size(self.0))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_formats_sizes() {
        assert_eq!(parse_size("64KiB"), Ok(65536));
        assert_eq!(parse_size("1MiB"), Ok(1 << 20));
        assert_eq!(parse_size("1GiB"), Ok(1 << 30));
        assert_eq!(parse_size("10MB"), Ok(10_000_000));
        assert_eq!(parse_size("512B"), Ok(512));
        assert!(parse_size("10").is_err());
        assert!(parse_size("10XB").is_err());
        assert_eq!(format_size(1 << 20), "1MiB");
        assert_eq!(format_size(1000), "1000B");
    }

    #[test]
    fn the_schema_pattern_matches_what_parses() {
        let re = regex::Regex::new(SIZE_PATTERN).unwrap();
        for s in ["64KiB", "1GiB", "10MB", "512B", "1.5 MiB"] {
            assert!(re.is_match(s) && parse_size(s).is_ok(), "{s}");
        }
        for s in ["10", "10XB", "KiB", ""] {
            assert!(!re.is_match(s) && parse_size(s).is_err(), "{s}");
        }
    }
}
