//! `[upstream.NAME]`: where a pool's backends come from (a `process`
//! section's children, literal addresses, DNS names), how names are
//! resolved, and the active health check.

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use toml::Spanned;

use super::diagnostics::Collector;
use super::raw::{self, Scalar};
use super::runtime::*;
use super::validate::{duration, int_in};

/// The default (and longest) time a DNS answer is kept when its TTL is
/// longer: nginx's `resolver ... valid=30s`.
const DEFAULT_RESOLVE_INTERVAL: Duration = Duration::from_secs(30);

/// How long an idle upstream connection is kept: nginx's upstream
/// `keepalive_timeout` default.
const DEFAULT_KEEPALIVE_TIMEOUT: Duration = Duration::from_secs(60);

pub(super) fn upstream(
    name: String,
    up: Spanned<raw::RawUpstream>,
    global_resolvers: Option<&[SocketAddr]>,
    base: &Path,
    c: &mut Collector<'_>,
) -> Option<Upstream> {
    let span = up.span();
    let up = up.into_inner();
    let mut servers = Vec::new();
    let mut named = Vec::new();
    let mut ok = true;
    // A `process` section's children come first: they are servers[0..count].
    let has_process = up.process.is_some();
    let process = match up.process {
        Some(p) => {
            let p = super::process::process(p, base, c);
            match &p {
                Some(p) => servers.extend(
                    (0..p.count).map(|i| Backend { addr: SocketAddr::from(([127, 0, 0, 1], p.port(i))), weight: 1 }),
                ),
                None => ok = false,
            }
            p
        }
        None => None,
    };
    match &up.servers {
        None if !has_process => {
            c.error(
                Some(span.clone()),
                format!(
                    "upstream `{name}` has no servers: add `servers = [\"127.0.0.1:8000\"]` or a `process` section"
                ),
            );
            ok = false;
        }
        Some(list) if list.get_ref().is_empty() && !has_process => {
            c.error(Some(list.span()), format!("upstream `{name}` has no servers"));
            ok = false;
        }
        _ => {}
    }
    for b in up.servers.map(Spanned::into_inner).unwrap_or_default() {
        let bspan = b.span();
        let b = b.into_inner();
        let weight = b.weight.unwrap_or(1);
        if !(1..=1000).contains(&weight) {
            c.error(Some(bspan.clone()), format!("weight must be between 1 and 1000, not {weight}"));
            ok = false;
        }
        // A literal address is used as it is; anything else that reads as
        // `name:port` is a DNS name.
        if b.address.parse::<SocketAddr>().is_err()
            && let Some((host, port)) = host_port(&b.address)
        {
            named.push(NamedBackend { host, port, weight: weight as u32 });
            continue;
        }
        let addr = b.address.parse::<SocketAddr>().ok();
        if addr.is_none() {
            c.error(
                Some(bspan.clone()),
                format!(
                    "`{}` is not a valid backend address: write IP:PORT or NAME:PORT, like `127.0.0.1:8000` or `app.internal:8000`",
                    b.address
                ),
            );
        }
        match addr {
            Some(addr) if process.is_some() && servers.iter().any(|s| s.addr == addr) => {
                c.error(
                    Some(bspan),
                    format!("`{addr}` is already one of this upstream's `process` children; list only other servers"),
                );
                ok = false;
            }
            Some(addr) => servers.push(Backend { addr, weight: weight as u32 }),
            None => ok = false,
        }
    }
    let own_resolvers = resolvers(up.resolvers, c);
    let resolve_interval = match up.resolve_interval {
        Some(v) => {
            let s = v.span();
            let d = duration(Some(v), DEFAULT_RESOLVE_INTERVAL, c);
            if d.is_some_and(|d| d < Duration::from_secs(1)) {
                c.error(Some(s), "resolve_interval must be at least 1s");
                None
            } else {
                d
            }
        }
        None => Some(DEFAULT_RESOLVE_INTERVAL),
    };
    let health_check = match up.health_check {
        Some(h) => match health_check(h.into_inner(), &name, c) {
            Some(h) => Some(h),
            None => {
                ok = false;
                None
            }
        },
        None => None,
    };
    let connect_timeout = duration(up.connect_timeout, Duration::from_secs(60), c);
    let read_timeout = duration(up.read_timeout, Duration::from_secs(60), c);
    let fail_timeout = duration(up.fail_timeout, Duration::from_secs(10), c);
    let max_fails = int_in(up.max_fails, 1, 0, 1_000_000, "max_fails", c);
    let keepalive = int_in(up.keepalive, 64, 0, 100_000, "keepalive", c);
    let keepalive_timeout = match up.keepalive_timeout {
        Some(v) => {
            let s = v.span();
            let d = duration(Some(v), DEFAULT_KEEPALIVE_TIMEOUT, c);
            if d.is_some_and(|d| d.is_zero()) {
                c.error(
                    Some(s),
                    "keepalive_timeout must be more than 0s (to keep no idle connections, set `keepalive = 0`)",
                );
                None
            } else {
                d
            }
        }
        None => Some(DEFAULT_KEEPALIVE_TIMEOUT),
    };
    if !ok {
        return None;
    }
    let resolvers = match own_resolvers {
        Some(r) if !r.is_empty() => r,
        Some(_) => global_resolvers.map(<[SocketAddr]>::to_vec).unwrap_or_default(),
        None => return None,
    };
    Some(Upstream {
        name,
        servers,
        balance: up.balance.unwrap_or_default(),
        next_upstream: up.next_upstream.unwrap_or_default(),
        connect_timeout: connect_timeout?,
        read_timeout: read_timeout?,
        max_fails: max_fails? as u32,
        fail_timeout: fail_timeout?,
        keepalive: keepalive? as usize,
        keepalive_timeout: keepalive_timeout?,
        process,
        named,
        resolvers,
        resolve_interval: resolve_interval?,
        health_check,
    })
}

/// `"name:port"` with a plausible DNS name (letters, digits, `-`, `_`,
/// dot-separated labels of at most 63 bytes, 253 in all, not all digits).
fn host_port(text: &str) -> Option<(String, u16)> {
    let (host, port) = text.rsplit_once(':')?;
    let port: u16 = port.parse().ok().filter(|p| *p != 0)?;
    let host = host.strip_suffix('.').unwrap_or(host);
    let label_ok = |l: &str| {
        !l.is_empty()
            && l.len() <= 63
            && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
            && !l.starts_with('-')
    };
    let plausible = !host.is_empty()
        && host.len() <= 253
        && host.split('.').all(label_ok)
        && !host.bytes().all(|b| b.is_ascii_digit() || b == b'.');
    plausible.then(|| (host.to_ascii_lowercase(), port))
}

/// `resolvers = ["10.0.0.2:53", "10.0.0.3"]` (port 53 when omitted);
/// `Some(empty)` when the key is absent.
pub(super) fn resolvers(v: Option<Spanned<Vec<Spanned<String>>>>, c: &mut Collector<'_>) -> Option<Vec<SocketAddr>> {
    let Some(list) = v else { return Some(Vec::new()) };
    if list.get_ref().is_empty() {
        c.error(
            Some(list.span()),
            "resolvers is empty: list DNS servers like \"10.0.0.2:53\", or leave it out to use the system's",
        );
        return None;
    }
    let mut out = Vec::new();
    let mut ok = true;
    for r in list.into_inner() {
        let text = r.get_ref();
        let parsed = text
            .parse::<SocketAddr>()
            .ok()
            .or_else(|| text.parse::<std::net::IpAddr>().ok().map(|ip| SocketAddr::new(ip, 53)));
        match parsed {
            Some(a) => out.push(a),
            None => {
                c.error(
                    Some(r.span()),
                    format!("`{text}` is not a DNS server address: write an IP address with an optional port, like `10.0.0.2:53`"),
                );
                ok = false;
            }
        }
    }
    ok.then_some(out)
}

fn health_check(h: raw::RawHealthCheck, upstream: &str, c: &mut Collector<'_>) -> Option<HealthCheck> {
    let path = match h.path {
        Some(p) if !p.get_ref().starts_with('/') || p.get_ref().bytes().any(|b| b <= b' ' || b == 0x7f) => {
            c.error(
                Some(p.span()),
                format!(
                    "health_check path `{}` must start with `/` and hold no spaces or control characters",
                    p.get_ref()
                ),
            );
            None
        }
        Some(p) => Some(p.into_inner()),
        None => Some("/".to_owned()),
    };
    let host = match h.host {
        Some(v) if v.get_ref().is_empty() || v.get_ref().bytes().any(|b| b <= b' ' || b == 0x7f) => {
            c.error(Some(v.span()), "health_check host must be a host name without spaces or control characters");
            None
        }
        Some(v) => Some(v.into_inner()),
        None => Some(upstream.to_owned()),
    };
    let interval = positive(h.interval, Duration::from_secs(5), "interval", c);
    let timeout = positive(h.timeout, Duration::from_secs(1), "timeout", c);
    let rise = int_in(h.rise, 2, 1, 1000, "rise", c);
    let fall = int_in(h.fall, 3, 1, 1000, "fall", c);
    let expect_status = match h.expect_status {
        Some(v) => match status_range(&v.get_ref().0) {
            Some(r) => Some(r),
            None => {
                c.error(
                    Some(v.span()),
                    format!(
                        "expect_status `{}` is not a status: write `200`, `\"2xx\"` or `\"200-399\"`",
                        v.get_ref().0
                    ),
                );
                None
            }
        },
        None => Some((200, 399)),
    };
    Some(HealthCheck {
        path: path?,
        host: host?,
        interval: interval?,
        timeout: timeout?,
        rise: rise? as u32,
        fall: fall? as u32,
        expect_status: expect_status?,
    })
}

fn positive(v: Option<Spanned<Scalar>>, default: Duration, what: &str, c: &mut Collector<'_>) -> Option<Duration> {
    let span = v.as_ref().map(Spanned::span);
    let d = duration(v, default, c)?;
    if d.is_zero() {
        c.error(span, format!("health_check {what} must be more than 0"));
        return None;
    }
    Some(d)
}

/// `200`, `2xx`, `200-399` as an inclusive range of statuses 100..=599.
fn status_range(text: &str) -> Option<(u16, u16)> {
    let t = text.trim();
    let (lo, hi) = if let Some(class) = t.strip_suffix("xx").or_else(|| t.strip_suffix("XX")) {
        let d: u16 = class.parse().ok().filter(|d| (1..=5).contains(d))?;
        (d * 100, d * 100 + 99)
    } else if let Some((a, b)) = t.split_once('-') {
        (a.trim().parse().ok()?, b.trim().parse().ok()?)
    } else {
        let s: u16 = t.parse().ok()?;
        (s, s)
    };
    ((100..=599).contains(&lo) && (100..=599).contains(&hi) && lo <= hi).then_some((lo, hi))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_ports() {
        assert_eq!(
            host_port("tornado.app.svc.cluster.local:8000"),
            Some(("tornado.app.svc.cluster.local".into(), 8000))
        );
        assert_eq!(host_port("Backend_1:80"), Some(("backend_1".into(), 80)));
        assert_eq!(host_port("127.0.0.300:80"), None, "digits and dots are a bad address, not a name");
        assert_eq!(host_port("app:0"), None);
        assert_eq!(host_port("app"), None);
        assert_eq!(host_port("a..b:80"), None);
        assert_eq!(host_port("a b:80"), None);
        assert_eq!(host_port(&format!("{}:80", "a".repeat(64))), None);
    }

    #[test]
    fn status_ranges() {
        assert_eq!(status_range("200"), Some((200, 200)));
        assert_eq!(status_range("2xx"), Some((200, 299)));
        assert_eq!(status_range("200-399"), Some((200, 399)));
        assert_eq!(status_range("6xx"), None);
        assert_eq!(status_range("399-200"), None);
        assert_eq!(status_range("ok"), None);
    }
}
