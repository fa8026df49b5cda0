//! The listening sockets of a config: bound fresh (SO_REUSEADDR, IPv6
//! only for IPv6 addresses, a backlog of 1024), or, after an upgrade, the
//! ones the old gale handed over, matched by the address the config names.

use std::net::SocketAddr;

use tokio::net::TcpListener;

use crate::server::ServeError;
use crate::site::{ListenerKey, Site};

/// The address a listener is bound to (`0.0.0.0:0` if it cannot say).
pub(crate) fn local(l: &TcpListener) -> SocketAddr {
    l.local_addr().unwrap_or_else(|_| SocketAddr::from(([0, 0, 0, 0], 0)))
}

/// Binds the listeners of `site` that are not in `have`, taking a socket
/// from `inherited` where one was bound for the same configured address.
pub(crate) fn bind_all(
    site: &Site,
    have: &[ListenerKey],
    inherited: &mut Vec<(SocketAddr, std::net::TcpListener)>,
) -> Result<Vec<(ListenerKey, SocketAddr, TcpListener)>, ServeError> {
    let mut out = Vec::new();
    for (key, l) in site.listener_keys().iter().zip(&site.config.listeners) {
        if have.contains(key) {
            continue;
        }
        let listener = match inherited.iter().position(|(addr, _)| *addr == l.addr) {
            Some(i) => adopt(inherited.remove(i).1),
            None => bind_one(l.addr),
        }
        .map_err(|source| ServeError::Bind { addr: l.addr, cause: source })?;
        out.push((*key, l.addr, listener));
    }
    Ok(out)
}

/// A listening socket handed over by the gale being upgraded (public or
/// admin), made ready for tokio.
pub fn adopt(listener: std::net::TcpListener) -> std::io::Result<TcpListener> {
    listener.set_nonblocking(true)?;
    TcpListener::from_std(listener)
}

fn bind_one(addr: SocketAddr) -> std::io::Result<TcpListener> {
    let domain = socket2::Domain::for_address(addr);
    let socket = socket2::Socket::new(domain, socket2::Type::STREAM, Some(socket2::Protocol::TCP))?;
    socket.set_reuse_address(true)?;
    if addr.is_ipv6() {
        socket.set_only_v6(true)?;
    }
    socket.bind(&addr.into())?;
    socket.listen(1024)?;
    socket.set_nonblocking(true)?;
    TcpListener::from_std(socket.into())
}
