//! nginx's value syntaxes (times, sizes, `listen` addresses) in gale's terms.

/// An nginx time (`65`, `65s`, `1m30s`, `500ms`, `2h`, `1d`, `1w`, `1M`,
/// `1y`) in milliseconds; `None` when it is not one.
pub fn time_ms(text: &str) -> Option<u64> {
    let mut total: u64 = 0;
    let mut rest = text;
    if rest.is_empty() {
        return None;
    }
    while !rest.is_empty() {
        let digits = rest.find(|c: char| !c.is_ascii_digit()).unwrap_or(rest.len());
        if digits == 0 {
            return None;
        }
        let n: u64 = rest[..digits].parse().ok()?;
        rest = &rest[digits..];
        let (unit, len) = if rest.starts_with("ms") {
            (1, 2)
        } else {
            match rest.chars().next() {
                None => (1000, 0),
                Some('s') => (1000, 1),
                Some('m') => (60_000, 1),
                Some('h') => (3_600_000, 1),
                Some('d') => (86_400_000, 1),
                Some('w') => (7 * 86_400_000, 1),
                Some('M') => (30 * 86_400_000, 1),
                Some('y') => (365 * 86_400_000, 1),
                Some(_) => return None,
            }
        };
        total = total.checked_add(n.checked_mul(unit)?)?;
        rest = &rest[len..];
    }
    Some(total)
}

/// A duration for gale's config (`"65s"`, `"500ms"`).
pub fn duration(ms: u64) -> String {
    if ms.is_multiple_of(1000) { format!("\"{}s\"", ms / 1000) } else { format!("\"{ms}ms\"") }
}

/// An nginx size (`100M`, `8k`, `1g`, `1024`) as gale writes it, or `None`.
pub fn size(text: &str) -> Option<String> {
    let digits = text.find(|c: char| !c.is_ascii_digit()).unwrap_or(text.len());
    if digits == 0 {
        return None;
    }
    let unit = &text[digits..];
    match unit {
        "" => Some(text.to_owned()),
        "k" | "K" | "m" | "M" | "g" | "G" => Some(format!("{}{}", &text[..digits], unit.to_ascii_uppercase())),
        _ => None,
    }
}

/// One `listen` address: `80`, `*:80`, `127.0.0.1:8080`, `[::]:443`,
/// `localhost:80` -> a socket address for gale; `None` for what gale cannot
/// listen on (`unix:` sockets, names).
pub fn listen_addr(text: &str) -> Option<String> {
    if text.starts_with("unix:") {
        return None;
    }
    if text.chars().all(|c| c.is_ascii_digit()) {
        return Some(format!("0.0.0.0:{text}"));
    }
    if let Some(port) = text.strip_prefix("*:") {
        return port.parse::<u16>().ok().map(|p| format!("0.0.0.0:{p}"));
    }
    if let Some(port) = text.strip_prefix("localhost:") {
        return port.parse::<u16>().ok().map(|p| format!("127.0.0.1:{p}"));
    }
    if text == "localhost" {
        return Some("127.0.0.1:80".to_owned());
    }
    if let Ok(addr) = text.parse::<std::net::SocketAddr>() {
        return Some(addr.to_string());
    }
    // An address without a port: nginx listens on 80.
    if let Ok(ip) = text.trim_start_matches('[').trim_end_matches(']').parse::<std::net::IpAddr>() {
        return Some(std::net::SocketAddr::new(ip, 80).to_string());
    }
    None
}

/// An upstream `server` address (`127.0.0.1:8000`, `127.0.0.1` = port 80,
/// `localhost:8000`) as an IP socket address; `None` for a name gale would
/// have to resolve.
pub fn backend_addr(text: &str) -> Option<String> {
    if let Ok(addr) = text.parse::<std::net::SocketAddr>() {
        return Some(addr.to_string());
    }
    if let Ok(ip) = text.trim_start_matches('[').trim_end_matches(']').parse::<std::net::IpAddr>() {
        return Some(std::net::SocketAddr::new(ip, 80).to_string());
    }
    if let Some(port) = text.strip_prefix("localhost:") {
        return port.parse::<u16>().ok().map(|p| format!("127.0.0.1:{p}"));
    }
    None
}

/// Variables a header-policy template understands (plugins.md).
pub fn template_ok(value: &str) -> bool {
    let known = |name: &str| {
        let name = name.to_ascii_lowercase();
        matches!(
            name.as_str(),
            "remote_addr"
                | "remote_port"
                | "scheme"
                | "host"
                | "request_uri"
                | "uri"
                | "args"
                | "query_string"
                | "request_method"
        ) || name.starts_with("http_")
    };
    let mut rest = value;
    while let Some(i) = rest.find('$') {
        rest = &rest[i + 1..];
        if let Some(r) = rest.strip_prefix('$') {
            rest = r;
            continue;
        }
        let name: String = if let Some(r) = rest.strip_prefix('{') {
            let Some(end) = r.find('}') else { return false };
            let n = r[..end].to_owned();
            rest = &r[end + 1..];
            n
        } else {
            let end = rest.find(|c: char| !(c.is_ascii_alphanumeric() || c == '_')).unwrap_or(rest.len());
            let n = rest[..end].to_owned();
            rest = &rest[end..];
            n
        };
        if !known(&name) {
            return false;
        }
    }
    true
}
