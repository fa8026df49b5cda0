//! A TLS client for tests that look at the handshake itself: which certificate gale presented
//! for an SNI name, which ALPN protocol and TLS version it agreed to, and what it answers to a
//! ClientHello no modern library would send (TLS 1.1).
//!
//! The client (rustls, *ring*) accepts any certificate but still checks the handshake
//! signatures, so the server proved it holds the key of the certificate it presented; the
//! test then compares that certificate with the one it expected, byte for byte. Requests that
//! only need a verified HTTPS client use curl (see [`crate::curl`]).

use std::io::{self, Read, Write};
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpStream};
use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{CryptoProvider, verify_tls12_signature, verify_tls13_signature};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{ClientConfig, ClientConnection, DigitallySignedStruct, SignatureScheme, StreamOwned};

use crate::http::READ_TIMEOUT;

/// A TLS connection to gale, after the handshake.
pub type TlsStream = StreamOwned<ClientConnection, TcpStream>;

/// What a client asks for in its ClientHello.
#[derive(Clone, Debug)]
pub struct ClientOptions {
    /// The SNI name; `None` sends no SNI at all.
    pub sni: Option<String>,
    /// ALPN protocols offered, in preference order (empty: no ALPN extension).
    pub alpn: Vec<Vec<u8>>,
    /// Only TLS 1.2 (otherwise 1.3 and 1.2 are offered).
    pub tls12_only: bool,
}

impl ClientOptions {
    /// SNI `name`, ALPN `http/1.1`, TLS 1.3 and 1.2.
    pub fn sni(name: &str) -> Self {
        Self { sni: Some(name.to_owned()), alpn: vec![b"http/1.1".to_vec()], tls12_only: false }
    }

    /// No SNI extension (what a client connecting to a bare IP address sends).
    pub fn no_sni() -> Self {
        Self { sni: None, alpn: vec![b"http/1.1".to_vec()], tls12_only: false }
    }

    /// Offers these ALPN protocols instead.
    pub fn alpn(mut self, protocols: &[&[u8]]) -> Self {
        self.alpn = protocols.iter().map(|p| p.to_vec()).collect();
        self
    }

    /// Offers TLS 1.2 only.
    pub fn tls12_only(mut self) -> Self {
        self.tls12_only = true;
        self
    }
}

/// What a completed handshake agreed to.
#[derive(Clone, Debug)]
pub struct Handshake {
    /// The end-entity certificate gale presented, DER.
    pub cert: Vec<u8>,
    /// The ALPN protocol agreed, if any.
    pub alpn: Option<Vec<u8>>,
    /// `TLSv1_3` or `TLSv1_2`.
    pub version: String,
}

/// Connects to `addr` and completes a TLS handshake.
pub fn connect(addr: SocketAddr, options: &ClientOptions) -> io::Result<(TlsStream, Handshake)> {
    let config = client_config(options).map_err(io::Error::other)?;
    // A server name that is an IP address makes rustls send no SNI extension.
    let name = match &options.sni {
        Some(sni) => ServerName::try_from(sni.clone()).map_err(io::Error::other)?,
        None => ServerName::IpAddress(IpAddr::V4(Ipv4Addr::LOCALHOST).into()),
    };
    let mut conn = ClientConnection::new(config, name).map_err(io::Error::other)?;
    let mut sock = TcpStream::connect_timeout(&addr, READ_TIMEOUT)?;
    sock.set_read_timeout(Some(READ_TIMEOUT))?;
    sock.set_write_timeout(Some(READ_TIMEOUT))?;
    sock.set_nodelay(true)?;
    while conn.is_handshaking() {
        conn.complete_io(&mut sock)?;
    }
    let cert = conn
        .peer_certificates()
        .and_then(|chain| chain.first())
        .map(|c| c.to_vec())
        .ok_or_else(|| io::Error::other("the server presented no certificate"))?;
    let handshake = Handshake {
        cert,
        alpn: conn.alpn_protocol().map(<[u8]>::to_vec),
        version: conn.protocol_version().map(|v| format!("{v:?}")).unwrap_or_default(),
    };
    Ok((StreamOwned::new(conn, sock), handshake))
}

/// The handshake alone (the connection is closed right after).
#[track_caller]
pub fn handshake(addr: SocketAddr, options: &ClientOptions) -> Handshake {
    match connect(addr, options) {
        Ok((_, handshake)) => handshake,
        Err(e) => panic!("TLS handshake with {addr} ({options:?}) failed: {e}"),
    }
}

fn client_config(options: &ClientOptions) -> Result<Arc<ClientConfig>, rustls::Error> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let versions: &[&'static rustls::SupportedProtocolVersion] = if options.tls12_only {
        &[&rustls::version::TLS12]
    } else {
        &[&rustls::version::TLS13, &rustls::version::TLS12]
    };
    let mut config = ClientConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(versions)?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(AnyCertificate { provider }))
        .with_no_client_auth();
    config.alpn_protocols = options.alpn.clone();
    Ok(Arc::new(config))
}

/// Accepts whatever certificate is presented (the test compares it afterwards) but checks
/// the handshake signatures made with its key.
#[derive(Debug)]
struct AnyCertificate {
    provider: Arc<CryptoProvider>,
}

impl ServerCertVerifier for AnyCertificate {
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
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls12_signature(message, cert, dss, &self.provider.signature_verification_algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(message, cert, dss, &self.provider.signature_verification_algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider.signature_verification_algorithms.supported_schemes()
    }
}

/// The first TLS record a server sent back to a hand-made ClientHello.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum FirstRecord {
    /// An alert: (level, description). 70 is `protocol_version`.
    Alert(u8, u8),
    /// A handshake record whose first message has this type (2 = ServerHello).
    Handshake(u8),
    /// Some other record type.
    Other(u8),
    /// The server closed without sending a record.
    Closed,
}

/// Sends a hand-made ClientHello whose highest version is `version` (`0x0302` = TLS 1.1,
/// `0x0303` = TLS 1.2), offering ECDHE suites for both versions (CBC for 1.1, GCM for 1.2),
/// and returns the first record the server answers with. rustls cannot speak TLS 1.1, so this
/// is how a test plays an old client.
pub fn raw_client_hello(addr: SocketAddr, sni: &str, version: u16) -> FirstRecord {
    let mut sock = TcpStream::connect_timeout(&addr, READ_TIMEOUT).expect("connect for a raw ClientHello");
    sock.set_read_timeout(Some(READ_TIMEOUT)).expect("set_read_timeout");
    sock.write_all(&client_hello(sni, version)).expect("send the ClientHello");
    let mut head = [0u8; 5];
    if sock.read_exact(&mut head).is_err() {
        return FirstRecord::Closed;
    }
    let len = usize::from(u16::from_be_bytes([head[3], head[4]]));
    let mut body = vec![0; len];
    if sock.read_exact(&mut body).is_err() || body.is_empty() {
        return FirstRecord::Closed;
    }
    match head[0] {
        0x15 if body.len() >= 2 => FirstRecord::Alert(body[0], body[1]),
        0x16 => FirstRecord::Handshake(body[0]),
        other => FirstRecord::Other(other),
    }
}

/// The bytes of a ClientHello record (RFC 5246 7.4.1.2) with the extensions a server needs to
/// pick an ECDHE suite: server_name, supported_groups, ec_point_formats and
/// signature_algorithms.
fn client_hello(sni: &str, version: u16) -> Vec<u8> {
    let mut hello = Vec::new();
    hello.extend_from_slice(&version.to_be_bytes());
    hello.extend((0u8..32).map(|i| i.wrapping_mul(37).wrapping_add(11))); // random
    hello.push(0); // no session id
    let suites: &[u16] = &[
        0xc02b, // ECDHE_ECDSA_WITH_AES_128_GCM_SHA256 (TLS 1.2)
        0xc02f, // ECDHE_RSA_WITH_AES_128_GCM_SHA256 (TLS 1.2)
        0xc009, // ECDHE_ECDSA_WITH_AES_128_CBC_SHA (TLS 1.0/1.1)
        0xc013, // ECDHE_RSA_WITH_AES_128_CBC_SHA (TLS 1.0/1.1)
        0x002f, // RSA_WITH_AES_128_CBC_SHA (TLS 1.0/1.1)
    ];
    push_u16(&mut hello, u16::try_from(suites.len() * 2).expect("suites fit"));
    for s in suites {
        hello.extend_from_slice(&s.to_be_bytes());
    }
    hello.extend_from_slice(&[1, 0]); // compression: null only

    let mut ext = Vec::new();
    // server_name
    let name = sni.as_bytes();
    let name_len = u16::try_from(name.len()).expect("name fits");
    extension(&mut ext, 0x0000, &{
        let mut list = Vec::new();
        push_u16(&mut list, name_len + 3);
        list.push(0); // host_name
        push_u16(&mut list, name_len);
        list.extend_from_slice(name);
        list
    });
    // supported_groups: x25519, secp256r1
    extension(&mut ext, 0x000a, &[0, 4, 0x00, 0x1d, 0x00, 0x17]);
    // ec_point_formats: uncompressed
    extension(&mut ext, 0x000b, &[1, 0]);
    // signature_algorithms (TLS 1.2's, sent for every version so that the only thing that
    // differs between the hellos is the version): ecdsa_secp256r1_sha256,
    // rsa_pss_rsae_sha256, rsa_pkcs1_sha256.
    extension(&mut ext, 0x000d, &[0, 6, 0x04, 0x03, 0x08, 0x04, 0x04, 0x01]);
    push_u16(&mut hello, u16::try_from(ext.len()).expect("extensions fit"));
    hello.extend_from_slice(&ext);

    let mut handshake = vec![1]; // client_hello
    let len = u32::try_from(hello.len()).expect("hello fits").to_be_bytes();
    handshake.extend_from_slice(&len[1..]);
    handshake.extend_from_slice(&hello);

    let mut record = vec![0x16, 0x03, 0x01]; // handshake record, legacy record version
    push_u16(&mut record, u16::try_from(handshake.len()).expect("record fits"));
    record.extend_from_slice(&handshake);
    record
}

fn extension(out: &mut Vec<u8>, kind: u16, body: &[u8]) {
    push_u16(out, kind);
    push_u16(out, u16::try_from(body.len()).expect("extension fits"));
    out.extend_from_slice(body);
}

fn push_u16(out: &mut Vec<u8>, v: u16) {
    out.extend_from_slice(&v.to_be_bytes());
}
