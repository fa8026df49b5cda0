//! A small authoritative DNS server for the tests of upstreams given by name: UDP and TCP on one
//! loopback port, answering A and AAAA questions from a table the test changes while gale runs.
//! Hand-rolled (RFC 1035 wire format; it is test code): names it does not know get NXDOMAIN, and
//! a name can be made to misbehave (silence, garbage, a huge answer). An answer too large for
//! one UDP datagram is sent truncated (TC), and whole over TCP, as a real server does.

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::{IpAddr, SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

/// How the server answers questions about one name.
#[derive(Clone, Debug)]
pub enum Answer {
    /// These addresses (A for IPv4, AAAA for IPv6) with this TTL in seconds.
    Addresses(Vec<IpAddr>, u32),
    /// NXDOMAIN.
    NxDomain,
    /// No answer at all (the resolver times out).
    Silent,
    /// A reply with the query's id that does not parse.
    Garbage,
}

/// The largest UDP answer sent whole (the EDNS size resolvers advertise).
const UDP_MAX: usize = 1232;

#[derive(Default)]
struct State {
    answers: HashMap<String, Answer>,
    /// Questions received, per lower-case name.
    queries: HashMap<String, u64>,
}

/// The running server; stops when dropped.
pub struct DnsServer {
    addr: SocketAddr,
    state: Arc<Mutex<State>>,
    stop: Arc<AtomicBool>,
    threads: Vec<JoinHandle<()>>,
}

impl DnsServer {
    /// Starts on 127.0.0.1, UDP and TCP on one port the OS picked.
    pub fn start() -> DnsServer {
        DnsServer::start_on(IpAddr::from([127, 0, 0, 1]))
    }

    /// Starts on `ip` (in the calling thread's network namespace), UDP and TCP on one port the
    /// OS picked.
    pub fn start_on(ip: IpAddr) -> DnsServer {
        let (udp, tcp) = (0..50)
            .find_map(|_| {
                let udp = UdpSocket::bind(SocketAddr::new(ip, 0)).ok()?;
                let tcp = TcpListener::bind(udp.local_addr().ok()?).ok()?;
                Some((udp, tcp))
            })
            .expect("a loopback port free for both UDP and TCP");
        let addr = udp.local_addr().expect("local_addr");
        udp.set_read_timeout(Some(Duration::from_millis(50))).expect("udp timeout");
        tcp.set_nonblocking(true).expect("nonblocking listener");
        let state = Arc::new(Mutex::new(State::default()));
        let stop = Arc::new(AtomicBool::new(false));
        let udp_thread = {
            let (state, stop) = (state.clone(), stop.clone());
            std::thread::spawn(move || {
                let mut buf = [0u8; 4096];
                while !stop.load(Ordering::SeqCst) {
                    let Ok((n, peer)) = udp.recv_from(&mut buf) else { continue };
                    if let Some(mut reply) = respond(&state, &buf[..n]) {
                        if reply.len() > UDP_MAX {
                            reply = truncated(&buf[..n]);
                        }
                        let _ = udp.send_to(&reply, peer);
                    }
                }
            })
        };
        let tcp_thread = {
            let (state, stop) = (state.clone(), stop.clone());
            std::thread::spawn(move || {
                while !stop.load(Ordering::SeqCst) {
                    match tcp.accept() {
                        Ok((stream, _)) => serve_tcp(stream, &state),
                        Err(_) => std::thread::sleep(Duration::from_millis(20)),
                    }
                }
            })
        };
        DnsServer { addr, state, stop, threads: vec![udp_thread, tcp_thread] }
    }

    /// Where it listens (UDP and TCP).
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// From now on, answers `name` so.
    pub fn set(&self, name: &str, answer: Answer) {
        self.lock().answers.insert(name.to_ascii_lowercase(), answer);
    }

    /// Questions received about `name` so far (A and AAAA, UDP and TCP).
    pub fn queries(&self, name: &str) -> u64 {
        self.lock().queries.get(&name.to_ascii_lowercase()).copied().unwrap_or(0)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl Drop for DnsServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

fn serve_tcp(mut stream: TcpStream, state: &Mutex<State>) {
    let _ = stream.set_nonblocking(false);
    let _ = stream.set_read_timeout(Some(Duration::from_secs(2)));
    loop {
        let mut len = [0u8; 2];
        if stream.read_exact(&mut len).is_err() {
            return;
        }
        let mut query = vec![0u8; usize::from(u16::from_be_bytes(len))];
        if stream.read_exact(&mut query).is_err() {
            return;
        }
        let Some(reply) = respond(state, &query) else { return };
        let Ok(n) = u16::try_from(reply.len()) else { return };
        if stream.write_all(&n.to_be_bytes()).and_then(|()| stream.write_all(&reply)).is_err() {
            return;
        }
    }
}

/// The question: name (lower case), type, and where the question section ends.
fn question(query: &[u8]) -> Option<(String, u16, usize)> {
    let mut i = 12;
    let mut labels = Vec::new();
    loop {
        let len = usize::from(*query.get(i)?);
        i += 1;
        if len == 0 {
            break;
        }
        labels.push(String::from_utf8_lossy(query.get(i..i + len)?).to_ascii_lowercase());
        i += len;
    }
    let qtype = u16::from_be_bytes([*query.get(i)?, *query.get(i + 1)?]);
    Some((labels.join("."), qtype, i + 4))
}

fn header(query: &[u8], rcode: u8, truncated: bool, answers: u16) -> Vec<u8> {
    let mut out = Vec::with_capacity(512);
    out.extend_from_slice(&query[..2]);
    // QR, the query's opcode and RD; AA; TC when truncated.
    let mut flags1 = 0x80 | (query[2] & 0x79) | 0x04;
    if truncated {
        flags1 |= 0x02;
    }
    out.push(flags1);
    out.push(0x80 | rcode);
    out.extend_from_slice(&1u16.to_be_bytes());
    out.extend_from_slice(&answers.to_be_bytes());
    out.extend_from_slice(&[0, 0, 0, 0]);
    out
}

fn truncated(query: &[u8]) -> Vec<u8> {
    let end = question(query).map_or(12, |(_, _, end)| end);
    let mut out = header(query, 0, true, 0);
    out.extend_from_slice(&query[12..end]);
    out
}

fn respond(state: &Mutex<State>, query: &[u8]) -> Option<Vec<u8>> {
    if query.len() < 12 {
        return None;
    }
    let (name, qtype, end) = question(query)?;
    let answer = {
        let mut s = state.lock().unwrap_or_else(|e| e.into_inner());
        *s.queries.entry(name.clone()).or_default() += 1;
        s.answers.get(&name).cloned().unwrap_or(Answer::NxDomain)
    };
    let q = &query[12..end];
    match answer {
        Answer::Silent => None,
        Answer::NxDomain => {
            let mut out = header(query, 3, false, 0);
            out.extend_from_slice(q);
            Some(out)
        }
        Answer::Garbage => {
            let mut out = header(query, 0, false, 3);
            out.extend_from_slice(q);
            out.extend_from_slice(&[0xc0, 0x0c, 0x00, 0x01, 0xff, 0xff, 0x13, 0x37]);
            Some(out)
        }
        Answer::Addresses(addrs, ttl) => {
            let records: Vec<Vec<u8>> = addrs
                .iter()
                .filter_map(|a| match (a, qtype) {
                    (IpAddr::V4(v4), 1) => Some(v4.octets().to_vec()),
                    (IpAddr::V6(v6), 28) => Some(v6.octets().to_vec()),
                    _ => None,
                })
                .collect();
            let mut out = header(query, 0, false, u16::try_from(records.len()).ok()?);
            out.extend_from_slice(q);
            for rdata in records {
                // The name as a pointer to the question's.
                out.extend_from_slice(&[0xc0, 0x0c]);
                out.extend_from_slice(&qtype.to_be_bytes());
                out.extend_from_slice(&1u16.to_be_bytes());
                out.extend_from_slice(&ttl.to_be_bytes());
                out.extend_from_slice(&u16::try_from(rdata.len()).ok()?.to_be_bytes());
                out.extend_from_slice(&rdata);
            }
            Some(out)
        }
    }
}
