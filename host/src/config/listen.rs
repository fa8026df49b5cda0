//! Where gale listens: the servers' addresses grouped into listeners, their
//! TLS certificates, and the admin listener (loopback unless allowed, never
//! on a public listener's socket).

use std::net::SocketAddr;
use std::path::Path;

use toml::Spanned;

use super::diagnostics::Collector;
use super::raw;
use super::runtime::*;
use super::validate::path_from;

pub(super) fn socket_addr(s: &Spanned<String>, what: &str, c: &mut Collector<'_>) -> Option<SocketAddr> {
    let text = s.get_ref();
    match text.parse::<SocketAddr>() {
        Ok(a) => Some(a),
        Err(_) => {
            let hint = if text.parse::<u16>().is_ok() {
                format!("; write `127.0.0.1:{text}` or `0.0.0.0:{text}`")
            } else if text.starts_with("localhost") {
                "; write `127.0.0.1:PORT` (names are not resolved)".to_owned()
            } else {
                "; write an IP address and a port, like `127.0.0.1:8000` or `[::1]:8000`".to_owned()
            };
            c.error(Some(s.span()), format!("`{text}` is not a valid {what} address{hint}"));
            None
        }
    }
}

/// Groups servers by listen address; the server marked `default_server`
/// (else the first) comes first.
pub(super) fn listeners(
    servers: &[Option<Server>],
    spans: &[std::ops::Range<usize>],
    c: &mut Collector<'_>,
) -> Option<Vec<Listener>> {
    let mut out: Vec<Listener> = Vec::new();
    for (i, s) in servers.iter().enumerate() {
        let s = s.as_ref()?;
        for addr in &s.listen {
            match out.iter_mut().find(|l| l.addr == *addr && addr.port() != 0) {
                Some(l) if l.tls != s.tls.is_some() => {
                    c.error(
                        Some(spans[i].clone()),
                        format!(
                            "{addr} is shared by a server with `tls` and one without: give them different addresses"
                        ),
                    );
                    return None;
                }
                Some(l) => {
                    if s.default_server {
                        l.servers.insert(0, i);
                    } else {
                        l.servers.push(i);
                    }
                }
                None => out.push(Listener { addr: *addr, servers: vec![i], tls: s.tls.is_some() }),
            }
        }
    }
    Some(out)
}

pub(super) fn server_tls(t: raw::RawTls, base: &Path, c: &mut Collector<'_>) -> Option<ServerTls> {
    let cert = path_from(base, t.cert.get_ref());
    let key = path_from(base, t.key.get_ref());
    match crate::tls::load_certified_key(&cert, &key) {
        Ok(certified) => Some(ServerTls { cert, key, certified }),
        Err(e) => {
            let span = match e {
                crate::tls::TlsError::Key { .. } => t.key.span(),
                _ => t.cert.span(),
            };
            c.error(Some(span), e.to_string());
            None
        }
    }
}

pub(super) fn admin(a: raw::RawAdmin, c: &mut Collector<'_>) -> Option<SocketAddr> {
    let addr = socket_addr(&a.listen, "admin listen", c)?;
    if !addr.ip().is_loopback() && !a.allow_remote {
        c.error(
            Some(a.listen.span()),
            format!("admin listener {addr} is not on loopback: its endpoints have no authentication; use 127.0.0.1, or set allow_remote = true"),
        );
        return None;
    }
    Some(addr)
}

/// The admin listener may not share a socket address with a public one:
/// one of the two would fail to bind, or the public one would take the
/// admin's connections. A wildcard address (`0.0.0.0`, `[::]`) covers every
/// address of its family on that port (gale binds IPv6 sockets v6-only).
pub(super) fn admin_apart(
    addr: SocketAddr,
    span: std::ops::Range<usize>,
    listeners: &[Listener],
    c: &mut Collector<'_>,
) {
    let overlaps = |public: &SocketAddr| {
        addr.port() != 0
            && addr.port() == public.port()
            && addr.is_ipv4() == public.is_ipv4()
            && (addr.ip() == public.ip() || addr.ip().is_unspecified() || public.ip().is_unspecified())
    };
    if let Some(public) = listeners.iter().map(|l| l.addr).find(overlaps) {
        c.error(
            Some(span),
            format!(
                "admin listener {addr} overlaps the public listener {public}: give the admin listener a port of its own"
            ),
        );
    }
}
