//! The handover between the running gale and the one an upgrade starts, on
//! a unix stream socket the old one listens on (its path in
//! `GALE_UPGRADE_SOCKET`, only the spawned child may connect):
//!
//! ```text
//! old -> new   one message with the listening sockets attached (SCM_RIGHTS), in order:
//!              `gale-upgrade 1` / `listen ADDR` or `admin ADDR` per socket /
//!              `child PORT PID INDEX UPSTREAM` per supervised child (PID `-`: not
//!              running) / `end`  (ADDR: the address the config names, `127.0.0.1:0` included)
//! new -> old   `ready PID` once it accepts on them (or it exits, or the timeout passes)
//! old -> new   `go`: the old one has stopped accepting and drains; the new one
//!              takes the pid file and the control socket
//! ```
//!
//! With supervised children the connection stays open: the old gale keeps
//! its children until the new one has replaced them (`supervisor/inherited.rs`).
//!
//! ```text
//! old -> new   `drained`: its client requests are over; the new one may stop its children
//! new -> old   `stop INDEX UPSTREAM`   old -> new   `stopped INDEX UPSTREAM` or `error MESSAGE`
//! new -> old   `done`: the old one exits (stopping any child still left)
//! ```

use std::io::{self, BufRead, IoSlice, IoSliceMut, Write};
use std::mem::MaybeUninit;
use std::net::SocketAddr;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};

use crate::supervisor::InheritedChild;
use rustix::net::{
    RecvAncillaryBuffer, RecvAncillaryMessage, RecvFlags, SendAncillaryBuffer, SendAncillaryMessage, SendFlags,
};

/// The first line of the handover message.
const HELLO: &str = "gale-upgrade 1";

/// The old gale's line once its client requests are over.
pub const DRAINED: &str = "drained\n";

/// Most sockets one handover carries (the kernel's SCM_MAX_FD is 253).
pub const MAX_SOCKETS: usize = 250;

/// What a handed-over socket is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// A public listener.
    Listen,
    /// The admin listener.
    Admin,
}

/// One listening socket and the configured address it was bound for.
#[derive(Debug)]
pub struct Socket<F> {
    pub role: Role,
    pub addr: SocketAddr,
    pub fd: F,
}

fn invalid(message: impl Into<String>) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, message.into())
}

/// The text part of the handover message.
fn describe(sockets: &[Socket<BorrowedFd<'_>>], children: &[InheritedChild]) -> String {
    let mut text = format!("{HELLO}\n");
    for s in sockets {
        let role = match s.role {
            Role::Listen => "listen",
            Role::Admin => "admin",
        };
        text.push_str(&format!("{role} {}\n", s.addr));
    }
    for c in children {
        let pid = c.pid.map_or_else(|| "-".to_owned(), |p| p.to_string());
        text.push_str(&format!("child {} {pid} {} {}\n", c.port, c.index, c.upstream));
    }
    text.push_str("end\n");
    text
}

/// What the text part names: one entry per attached socket, in order, and
/// the supervised children.
type Parsed = (Vec<(Role, SocketAddr)>, Vec<InheritedChild>);

/// Parses the text part.
fn parse(text: &str) -> io::Result<Parsed> {
    let mut lines = text.lines();
    if lines.next() != Some(HELLO) {
        return Err(invalid("not a gale upgrade handover (another version?)"));
    }
    let mut out = Vec::new();
    let mut children = Vec::new();
    for line in lines {
        if line == "end" {
            return Ok((out, children));
        }
        if let Some(rest) = line.strip_prefix("child ") {
            children.push(parse_child(rest).ok_or_else(|| invalid(format!("bad handover line {line:?}")))?);
            continue;
        }
        let (role, addr) = line.split_once(' ').ok_or_else(|| invalid(format!("bad handover line {line:?}")))?;
        let role = match role {
            "listen" => Role::Listen,
            "admin" => Role::Admin,
            _ => return Err(invalid(format!("bad handover line {line:?}"))),
        };
        let addr = addr.parse().map_err(|_| invalid(format!("bad address in handover line {line:?}")))?;
        out.push((role, addr));
    }
    Err(invalid("the handover message ended early"))
}

/// `PORT PID INDEX UPSTREAM` (the name last: it may hold spaces).
fn parse_child(rest: &str) -> Option<InheritedChild> {
    let mut words = rest.splitn(4, ' ');
    let port = words.next()?.parse().ok()?;
    let pid = match words.next()? {
        "-" => None,
        p => Some(p.parse().ok()?),
    };
    let index = words.next()?.parse().ok()?;
    let upstream = words.next().filter(|n| !n.is_empty())?.to_owned();
    Some(InheritedChild { upstream, index, port, pid })
}

/// What the new gale asks of the old one once it serves.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Request {
    /// Stop this child for good and answer once it has exited.
    Stop { index: usize, upstream: String },
    /// Every child is replaced: exit.
    Done,
}

impl Request {
    pub fn parse(line: &str) -> Option<Request> {
        if line == "done" {
            return Some(Request::Done);
        }
        let (index, upstream) = line.strip_prefix("stop ")?.split_once(' ')?;
        Some(Request::Stop { index: index.parse().ok()?, upstream: upstream.to_owned() })
    }

    pub fn line(&self) -> String {
        match self {
            Request::Stop { index, upstream } => format!("stop {index} {upstream}\n"),
            Request::Done => "done\n".to_owned(),
        }
    }
}

/// The old gale's answer to `stop`: `Ok` once the child has exited.
pub fn parse_answer(line: &str) -> Result<(), String> {
    if line.starts_with("stopped ") {
        return Ok(());
    }
    Err(line.strip_prefix("error ").unwrap_or(line).to_owned())
}

/// The old side: sends `sockets` over `stream` in one message, with the
/// supervised `children` it runs.
pub fn send(stream: impl AsFd, sockets: &[Socket<BorrowedFd<'_>>], children: &[InheritedChild]) -> io::Result<()> {
    if sockets.len() > MAX_SOCKETS {
        return Err(invalid(format!(
            "{} listening sockets; one handover carries at most {MAX_SOCKETS}",
            sockets.len()
        )));
    }
    let text = describe(sockets, children);
    let fds: Vec<BorrowedFd<'_>> = sockets.iter().map(|s| s.fd).collect();
    let mut space = vec![MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(fds.len().max(1)))];
    let mut control = SendAncillaryBuffer::new(&mut space);
    if !fds.is_empty() && !control.push(SendAncillaryMessage::ScmRights(&fds)) {
        return Err(invalid("the sockets do not fit the control message"));
    }
    let sent = rustix::net::sendmsg(&stream, &[IoSlice::new(text.as_bytes())], &mut control, SendFlags::NOSIGNAL)?;
    if sent != text.len() {
        // A fresh local stream socket takes a message this small whole.
        return Err(invalid("the handover message was cut short"));
    }
    Ok(())
}

/// The new side: receives the sockets sent by [`send`] (close-on-exec), and
/// the old gale's children.
pub fn receive(stream: &std::os::unix::net::UnixStream) -> io::Result<(Vec<Socket<OwnedFd>>, Vec<InheritedChild>)> {
    let mut buf = vec![0u8; 64 * 1024];
    let mut space = vec![MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(MAX_SOCKETS))];
    let mut control = RecvAncillaryBuffer::new(&mut space);
    let got = rustix::net::recvmsg(stream, &mut [IoSliceMut::new(&mut buf)], &mut control, RecvFlags::CMSG_CLOEXEC)?;
    let mut fds: Vec<OwnedFd> = Vec::new();
    for message in control.drain() {
        if let RecvAncillaryMessage::ScmRights(rights) = message {
            fds.extend(rights);
        }
    }
    let mut text = buf[..got.bytes].to_vec();
    // The sockets ride on the first bytes; the rest of the text may follow in later reads.
    let mut reader = io::BufReader::new(stream);
    while !text.ends_with(b"end\n") {
        let before = text.len();
        reader.read_until(b'\n', &mut text)?;
        if text.len() == before || text.len() > buf.len() {
            return Err(invalid("the handover message ended early"));
        }
    }
    let text = String::from_utf8(text).map_err(|_| invalid("the handover message is not UTF-8"))?;
    let (entries, children) = parse(&text)?;
    if entries.len() != fds.len() {
        return Err(invalid(format!("the handover names {} sockets but carries {}", entries.len(), fds.len())));
    }
    Ok((entries.into_iter().zip(fds).map(|((role, addr), fd)| Socket { role, addr, fd }).collect(), children))
}

/// The new side: says it accepts on the sockets, then waits for the old
/// side's `go` (or for it to go away, which ends the handover the same way:
/// `false`). Reads byte by byte: nothing past `go` may be taken from the
/// connection, which stays open while children are handed over.
pub fn ready(mut stream: &std::os::unix::net::UnixStream) -> io::Result<bool> {
    use std::io::Read as _;
    stream.write_all(format!("ready {}\n", std::process::id()).as_bytes())?;
    let mut line = Vec::new();
    let mut byte = [0u8; 1];
    while stream.read(&mut byte)? == 1 {
        if byte[0] == b'\n' {
            return Ok(line == b"go");
        }
        line.push(byte[0]);
    }
    Ok(false)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sockets_cross_a_socket_pair_with_their_roles_and_addresses() {
        let (a, b) = std::os::unix::net::UnixStream::pair().expect("socketpair");
        let public = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let admin = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let any: SocketAddr = "127.0.0.1:0".parse().expect("addr");
        let admin_addr = admin.local_addr().expect("addr");
        let sockets = [
            Socket { role: Role::Listen, addr: any, fd: public.as_fd() },
            Socket { role: Role::Admin, addr: admin_addr, fd: admin.as_fd() },
        ];
        let children = [
            InheritedChild { upstream: "app pool".into(), index: 1, port: 8001, pid: Some(42) },
            InheritedChild { upstream: "app".into(), index: 0, port: 8000, pid: None },
        ];
        send(&a, &sockets, &children).expect("send");
        let (got, got_children) = receive(&b).expect("receive");
        assert_eq!(got_children, children);
        assert_eq!(got.len(), 2);
        assert_eq!((got[0].role, got[0].addr), (Role::Listen, any));
        assert_eq!((got[1].role, got[1].addr), (Role::Admin, admin_addr));
        // The received descriptor is the same listening socket.
        let received = std::net::TcpListener::from(got.into_iter().next().expect("one").fd);
        assert_eq!(received.local_addr().expect("addr"), public.local_addr().expect("addr"));
    }

    #[test]
    fn a_foreign_or_truncated_message_is_refused() {
        assert!(parse("hello\nend\n").is_err());
        assert!(parse(&format!("{HELLO}\nlisten 127.0.0.1:80\n")).is_err());
        assert!(parse(&format!("{HELLO}\nlisten nowhere\nend\n")).is_err());
        assert!(parse(&format!("{HELLO}\nbind 127.0.0.1:80\nend\n")).is_err());
        assert!(parse(&format!("{HELLO}\nchild 8000 x 0 app\nend\n")).is_err());
        assert!(parse(&format!("{HELLO}\nchild 8000 12 0\nend\n")).is_err());
        assert!(parse(&format!("{HELLO}\nchild 99999 12 0 app\nend\n")).is_err());
        assert_eq!(parse(&format!("{HELLO}\nend\n")).expect("empty").0.len(), 0);
    }

    #[test]
    fn requests_after_the_handover_round_trip_and_junk_is_none() {
        for r in [Request::Stop { index: 3, upstream: "app pool".into() }, Request::Done] {
            assert_eq!(Request::parse(r.line().trim_end()), Some(r));
        }
        assert_eq!(Request::parse("stop x app"), None);
        assert_eq!(Request::parse("stop 1"), None);
        assert_eq!(Request::parse("exit"), None);
        assert_eq!(parse_answer("stopped 1 app"), Ok(()));
        assert_eq!(parse_answer("error no such child"), Err("no such child".to_owned()));
    }
}
