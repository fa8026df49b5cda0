//! Value types that cannot hold a bad value: byte sizes and durations as
//! written in the config ("100M", "65s"), parsed with nginx's spellings.

use std::fmt;
use std::time::Duration;

/// A byte count written as nginx writes it: `100`, `8k`, `100M`, `1g`, or
/// with an explicit binary unit (`16KiB`, `16MiB`). Units are powers of 1024,
/// as in nginx.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ByteSize(pub u64);

impl ByteSize {
    /// The size in bytes.
    pub fn bytes(self) -> u64 {
        self.0
    }

    /// Parses `"100M"`-style text; the error says what is accepted.
    pub fn parse(text: &str) -> Result<Self, String> {
        let t = text.trim();
        let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
        let (digits, unit) = t.split_at(split);
        if digits.is_empty() {
            return Err(format!(
                "`{text}` is not a size: write a number with an optional unit, like `8k`, `100M` or `1G`"
            ));
        }
        let n: u64 = digits.parse().map_err(|_| format!("`{text}` is too large a size"))?;
        let mult: u64 = match unit.trim().to_ascii_lowercase().as_str() {
            "" | "b" => 1,
            "k" | "kb" | "kib" => 1 << 10,
            "m" | "mb" | "mib" => 1 << 20,
            "g" | "gb" | "gib" => 1 << 30,
            other => {
                return Err(format!("unknown size unit `{other}` in `{text}`: use k, M or G (powers of 1024)"));
            }
        };
        n.checked_mul(mult).map(ByteSize).ok_or_else(|| format!("`{text}` is too large a size"))
    }
}

impl fmt::Display for ByteSize {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// Parses a duration written as nginx writes it: `500ms`, `65s`, `5m`, `1h`,
/// `1d`, or a bare number of seconds.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let t = text.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (digits, unit) = t.split_at(split);
    if digits.is_empty() {
        return Err(format!("`{text}` is not a duration: write a number with a unit, like `500ms`, `65s` or `5m`"));
    }
    let n: u64 = digits.parse().map_err(|_| format!("`{text}` is too long a duration"))?;
    let d = match unit.trim() {
        "ms" => Duration::from_millis(n),
        "" | "s" => Duration::from_secs(n),
        "m" => Duration::from_secs(n.saturating_mul(60)),
        "h" => Duration::from_secs(n.saturating_mul(3600)),
        "d" => Duration::from_secs(n.saturating_mul(86_400)),
        other => {
            return Err(format!("unknown duration unit `{other}` in `{text}`: use ms, s, m, h or d"));
        }
    };
    Ok(d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_use_nginx_spellings() {
        assert_eq!(ByteSize::parse("100M"), Ok(ByteSize(100 << 20)));
        assert_eq!(ByteSize::parse("100m"), Ok(ByteSize(100 << 20)));
        assert_eq!(ByteSize::parse("8k"), Ok(ByteSize(8192)));
        assert_eq!(ByteSize::parse("16MiB"), Ok(ByteSize(16 << 20)));
        assert_eq!(ByteSize::parse("1G"), Ok(ByteSize(1 << 30)));
        assert_eq!(ByteSize::parse("1234"), Ok(ByteSize(1234)));
        assert!(ByteSize::parse("M").is_err());
        assert!(ByteSize::parse("10X").unwrap_err().contains("unknown size unit"));
        assert!(ByteSize::parse("99999999999999999999G").is_err());
    }

    #[test]
    fn durations_use_nginx_spellings() {
        assert_eq!(parse_duration("65s"), Ok(Duration::from_secs(65)));
        assert_eq!(parse_duration("65"), Ok(Duration::from_secs(65)));
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("5m"), Ok(Duration::from_secs(300)));
        assert_eq!(parse_duration("1h"), Ok(Duration::from_secs(3600)));
        assert!(parse_duration("fast").is_err());
        assert!(parse_duration("5y").unwrap_err().contains("unknown duration unit"));
    }
}
