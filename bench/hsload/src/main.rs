//! hsload: full TLS handshakes per second against one address, the load generator of
//! bench/run.sh's `tls-handshake` scenario.
//!
//! Why not an existing tool: wrk and h2load resume the TLS session when they reconnect (nginx logs
//! `$ssl_session_reused = r`), so they measure resumptions; `openssl s_time -new` does full
//! handshakes, but OpenSSL 3.0 spends more CPU per handshake on the client side (about 0.8 ms)
//! than the proxy spends on the server side, so with one core for the load it measures itself.
//! hsload is cheap on the client side: rustls with session resumption disabled, the server's
//! certificate and handshake signature not checked (a load generator on 127.0.0.1 against a
//! self-signed certificate; checking would only add client CPU), one blocking thread per client,
//! each doing one connection after the other: connect, full handshake, one `GET` with
//! `Connection: close`, read the answer to the end, close.
//!
//! ```text
//! hsload --connect 127.0.0.1:18080 [--clients 8] [--seconds 5] [--host localhost] [--path /] [--resume]
//! ```
//!
//! With `--resume` it measures the other case, returning clients: each connection resumes a TLS 1.3
//! session with a ticket from an earlier one (the clients share one ticket store, as the tabs of a
//! browser do), and only resumed handshakes count (the first connection of each client is full and
//! not counted; a full handshake later is an error, which shows when the server's session cache
//! forgets).
//!
//! Prints one line, `HSLOAD_JSON {...}`: connections completed with a full (resumed) handshake and a 200
//! answer, errors (the first one's message), wall seconds, bytes read, connection latency
//! percentiles (connect to close, µs), and the negotiated protocol version, cipher suite, ALPN.

use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rustls::client::Resumption;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{ClientConfig, ClientConnection, DigitallySignedStruct, HandshakeKind, SignatureScheme, StreamOwned};

/// The command line.
#[derive(Debug)]
struct Args {
    connect: SocketAddr,
    clients: usize,
    seconds: f64,
    host: String,
    path: String,
    resume: bool,
}

fn parse_args() -> Result<Args, String> {
    let mut connect = None;
    let mut args = Args {
        connect: ([127, 0, 0, 1], 0).into(),
        clients: 8,
        seconds: 5.0,
        host: "localhost".into(),
        path: "/".into(),
        resume: false,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        if flag == "--resume" {
            args.resume = true;
            continue;
        }
        let value = it.next().ok_or_else(|| format!("{flag} needs a value"))?;
        match flag.as_str() {
            "--connect" => connect = Some(value.parse().map_err(|e| format!("--connect {value}: {e}"))?),
            "--clients" => args.clients = value.parse().map_err(|e| format!("--clients {value}: {e}"))?,
            "--seconds" => args.seconds = value.parse().map_err(|e| format!("--seconds {value}: {e}"))?,
            "--host" => args.host = value,
            "--path" => args.path = value,
            _ => return Err(format!("unknown option {flag}")),
        }
    }
    args.connect = connect.ok_or("--connect ADDR:PORT is required")?;
    if args.clients == 0 || args.seconds <= 0.0 {
        return Err("--clients and --seconds must be positive".into());
    }
    Ok(args)
}

/// Accepts any certificate and any handshake signature (see the module doc).
#[derive(Debug)]
struct AcceptAnything(Vec<SignatureScheme>);

impl ServerCertVerifier for AcceptAnything {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        _message: &[u8],
        _cert: &CertificateDer<'_>,
        _dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        Ok(HandshakeSignatureValid::assertion())
    }

    fn verify_tls13_signature(
        &self,
        _message: &[u8],
        _cert: &CertificateDer<'_>,
        _dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        Ok(HandshakeSignatureValid::assertion())
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.clone()
    }
}

fn client_config(resume: bool) -> Result<Arc<ClientConfig>, rustls::Error> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let schemes = provider.signature_verification_algorithms.supported_schemes();
    let mut cfg = ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(AcceptAnything(schemes)))
        .with_no_client_auth();
    // Without --resume every connection is a full handshake: no tickets, no session IDs kept.
    cfg.resumption = if resume { Resumption::in_memory_sessions(1024) } else { Resumption::disabled() };
    // What a browser offering only HTTP/1.1 sends; the request below is HTTP/1.1.
    cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(cfg))
}

/// What one client thread saw.
#[derive(Debug, Default)]
struct Tally {
    ok: u64,
    errors: u64,
    bytes: u64,
    latencies_us: Vec<u32>,
    first_error: Option<String>,
    negotiated: Option<String>,
}

/// One connection: connect, handshake, the request, the whole answer. Returns the bytes read and
/// whether the handshake resumed a session.
fn one(
    config: &Arc<ClientConfig>,
    to: SocketAddr,
    name: &ServerName<'static>,
    request: &[u8],
    buf: &mut Vec<u8>,
    tally: &mut Tally,
) -> Result<(usize, bool), String> {
    let sock = TcpStream::connect(to).map_err(|e| format!("connect: {e}"))?;
    let _ = sock.set_nodelay(true);
    let _ = sock.set_read_timeout(Some(Duration::from_secs(10)));
    let conn = ClientConnection::new(config.clone(), name.clone()).map_err(|e| format!("client: {e}"))?;
    let mut tls = StreamOwned::new(conn, sock);
    tls.write_all(request).map_err(|e| format!("handshake or write: {e}"))?;
    buf.clear();
    match tls.read_to_end(buf) {
        Ok(_) => {}
        // Closed after the answer without close_notify.
        Err(e) if e.kind() == ErrorKind::UnexpectedEof && !buf.is_empty() => {}
        Err(e) => return Err(format!("read: {e}")),
    }
    if !(buf.starts_with(b"HTTP/1.1 200 ") || buf.starts_with(b"HTTP/1.0 200 ")) {
        let line = buf.split(|b| *b == b'\n').next().unwrap_or_default();
        return Err(format!("answer: {}", String::from_utf8_lossy(line).trim_end()));
    }
    let resumed = match tls.conn.handshake_kind() {
        Some(HandshakeKind::Full | HandshakeKind::FullWithHelloRetryRequest) => false,
        Some(HandshakeKind::Resumed) => true,
        None => return Err("no handshake".into()),
    };
    if tally.negotiated.is_none() {
        let c = &tls.conn;
        tally.negotiated = Some(format!(
            "\"protocol\":\"{:?}\",\"suite\":\"{:?}\",\"kx\":\"{:?}\",\"alpn\":\"{}\"",
            c.protocol_version().unwrap_or(rustls::ProtocolVersion::Unknown(0)),
            c.negotiated_cipher_suite().map(|s| s.suite()).unwrap_or(rustls::CipherSuite::Unknown(0)),
            c.negotiated_key_exchange_group().map(|g| g.name()).unwrap_or(rustls::NamedGroup::Unknown(0)),
            c.alpn_protocol().map(String::from_utf8_lossy).unwrap_or_default(),
        ));
    }
    Ok((buf.len(), resumed))
}

fn client(config: &Arc<ClientConfig>, args: &Args, until: Instant) -> Tally {
    let mut tally = Tally::default();
    let name = match ServerName::try_from(args.host.clone()) {
        Ok(n) => n,
        Err(e) => {
            tally.errors = 1;
            tally.first_error = Some(format!("--host: {e}"));
            return tally;
        }
    };
    let request = format!("GET {} HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n\r\n", args.path, args.host);
    let mut buf = Vec::with_capacity(4096);
    let mut first = true;
    while Instant::now() < until {
        let t0 = Instant::now();
        let outcome = match one(config, args.connect, &name, request.as_bytes(), &mut buf, &mut tally) {
            // A client's first connection has no ticket yet: not counted.
            Ok((_, false)) if args.resume && first => {
                first = false;
                continue;
            }
            Ok((_, false)) if args.resume => Err("a full handshake where a resumption was expected".to_string()),
            Ok((_, true)) if !args.resume => Err("a resumed handshake".to_string()),
            other => other.map(|(n, _)| n),
        };
        first = false;
        match outcome {
            Ok(n) => {
                tally.ok += 1;
                tally.bytes += n as u64;
                tally.latencies_us.push(u32::try_from(t0.elapsed().as_micros()).unwrap_or(u32::MAX));
            }
            Err(e) => {
                tally.errors += 1;
                tally.first_error.get_or_insert(e);
                // A refused connection would otherwise spin.
                std::thread::sleep(Duration::from_millis(1));
            }
        }
    }
    tally
}

/// This process's user+system CPU time in seconds (all threads), from /proc/self/stat: shows
/// whether the client, rather than the server, was the limit.
fn own_cpu_seconds() -> f64 {
    let Ok(stat) = std::fs::read_to_string("/proc/self/stat") else { return 0.0 };
    // Fields after the ")" closing the command name: state is the 3rd field, utime the 14th.
    let Some(rest) = stat.rfind(')').map(|i| &stat[i + 1..]) else { return 0.0 };
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    // sysconf(_SC_CLK_TCK) is 100 on every Linux platform this runs on.
    (ticks(11) + ticks(12)) / 100.0
}

fn percentile(sorted: &[u32], p: f64) -> u32 {
    if sorted.is_empty() {
        return 0;
    }
    let rank = ((p / 100.0 * sorted.len() as f64).round() as usize).clamp(1, sorted.len());
    sorted[rank - 1]
}

fn main() -> ExitCode {
    let args = match parse_args() {
        Ok(a) => a,
        Err(e) => {
            eprintln!(
                "hsload: {e}\nusage: hsload --connect ADDR:PORT [--clients 8] [--seconds 5] [--host localhost] [--path /] [--resume]"
            );
            return ExitCode::from(2);
        }
    };
    let config = match client_config(args.resume) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("hsload: {e}");
            return ExitCode::FAILURE;
        }
    };
    let start = Instant::now();
    let until = start + Duration::from_secs_f64(args.seconds);
    let tallies: Vec<Tally> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..args.clients).map(|_| s.spawn(|| client(&config, &args, until))).collect();
        handles.into_iter().filter_map(|h| h.join().ok()).collect()
    });
    let seconds = start.elapsed().as_secs_f64();
    let mut all = Tally::default();
    for t in tallies {
        all.ok += t.ok;
        all.errors += t.errors;
        all.bytes += t.bytes;
        all.latencies_us.extend(t.latencies_us);
        if all.first_error.is_none() {
            all.first_error = t.first_error;
        }
        if all.negotiated.is_none() {
            all.negotiated = t.negotiated;
        }
    }
    all.latencies_us.sort_unstable();
    let l = &all.latencies_us;
    let mean = if l.is_empty() { 0.0 } else { l.iter().map(|&v| f64::from(v)).sum::<f64>() / l.len() as f64 };
    println!(
        "HSLOAD_JSON {{\"resume\":{},\"connections\":{},\"errors\":{},\"first_error\":\"{}\",\"seconds\":{:.6},\"client_cpu_seconds\":{:.2},\"bytes\":{},\
         \"mean_us\":{:.1},\"p50_us\":{},\"p90_us\":{},\"p99_us\":{},\"max_us\":{},\"clients\":{}{}{}}}",
        args.resume,
        all.ok,
        all.errors,
        all.first_error.unwrap_or_default().replace(['"', '\\'], "'"),
        seconds,
        own_cpu_seconds(),
        all.bytes,
        mean,
        percentile(l, 50.0),
        percentile(l, 90.0),
        percentile(l, 99.0),
        l.last().copied().unwrap_or(0),
        args.clients,
        if all.negotiated.is_some() { "," } else { "" },
        all.negotiated.unwrap_or_default(),
    );
    if all.ok == 0 { ExitCode::FAILURE } else { ExitCode::SUCCESS }
}

#[cfg(test)]
mod tests {
    use super::percentile;

    #[test]
    fn percentile_is_the_nearest_rank() {
        let v: Vec<u32> = (1..=100).collect();
        assert_eq!(percentile(&v, 50.0), 50);
        assert_eq!(percentile(&v, 99.0), 99);
        assert_eq!(percentile(&v, 100.0), 100);
        assert_eq!(percentile(&[7], 99.0), 7);
        assert_eq!(percentile(&[], 50.0), 0);
    }
}
