//! TLS termination with rustls: certificates loaded from PEM files,
//! chosen per connection by SNI (exact name, then the longest `*.`
//! wildcard, then the listener's default server, as for Host routing), and
//! ALPN offering HTTP/2 and HTTP/1.1. TLS 1.2 and 1.3 only, with rustls's
//! cipher suites (no RC4, CBC-SHA1 or RSA key exchange).

use std::path::Path;
use std::sync::Arc;

use rustls::ServerConfig;
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

use crate::config::ServerName;

/// Why a certificate could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("cannot read certificate {path}: {message}")]
    Cert { path: String, message: String },
    #[error("cannot read private key {path}: {message}")]
    Key { path: String, message: String },
    #[error("certificate {cert} and key {key} do not match: {message}")]
    Mismatch { cert: String, key: String, message: String },
}

/// Loads a PEM certificate chain and its private key.
pub fn load_certified_key(cert: &Path, key: &Path) -> Result<Arc<CertifiedKey>, TlsError> {
    let cert_name = cert.display().to_string();
    let key_name = key.display().to_string();
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert)
        .and_then(|it| it.collect::<Result<Vec<_>, _>>())
        .map_err(|e| TlsError::Cert { path: cert_name.clone(), message: e.to_string() })?;
    if chain.is_empty() {
        return Err(TlsError::Cert { path: cert_name, message: "no CERTIFICATE block in the file".into() });
    }
    let key_der = PrivateKeyDer::from_pem_file(key)
        .map_err(|e| TlsError::Key { path: key_name.clone(), message: e.to_string() })?;
    let signing = rustls::crypto::ring::sign::any_supported_type(&key_der)
        .map_err(|e| TlsError::Key { path: key_name.clone(), message: e.to_string() })?;
    let ck = CertifiedKey::new(chain, signing);
    ck.keys_match().map_err(|e| TlsError::Mismatch { cert: cert_name, key: key_name, message: e.to_string() })?;
    Ok(Arc::new(ck))
}

/// Picks a certificate by SNI for one listener.
#[derive(Debug)]
pub struct SniResolver {
    /// (names, key) per TLS server on the listener; the first is the default.
    entries: Vec<(Vec<ServerName>, Arc<CertifiedKey>)>,
}

impl SniResolver {
    /// A resolver over `entries`, the first being the listener's default.
    pub fn new(entries: Vec<(Vec<ServerName>, Arc<CertifiedKey>)>) -> Self {
        Self { entries }
    }

    /// The certificate for `sni` (lower-cased), falling back to the default.
    pub fn pick(&self, sni: Option<&str>) -> Option<Arc<CertifiedKey>> {
        let mut best: Option<(&Arc<CertifiedKey>, usize)> = None;
        if let Some(host) = sni {
            for (names, key) in &self.entries {
                for n in names {
                    match n {
                        ServerName::Exact(e) if e == host => return Some(key.clone()),
                        ServerName::Wildcard(suffix)
                            if host.len() > suffix.len()
                                && host.ends_with(suffix.as_str())
                                && best.is_none_or(|(_, len)| suffix.len() > len) =>
                        {
                            best = Some((key, suffix.len()));
                        }
                        _ => {}
                    }
                }
            }
        }
        best.map(|(k, _)| k.clone()).or_else(|| self.entries.first().map(|(_, k)| k.clone()))
    }
}

impl ResolvesServerCert for SniResolver {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        let sni = hello.server_name().map(|s| s.to_ascii_lowercase());
        self.pick(sni.as_deref())
    }
}

/// The rustls config for a listener: TLS 1.3 and 1.2, ALPN `h2` (when
/// enabled) then `http/1.1`, and stateless session tickets (rotated every
/// 6 hours by rustls; a reload starts a new key) so that every returning
/// client resumes, like nginx's default, instead of only the few hundred
/// that rustls's in-memory session cache holds. A resumed handshake costs a
/// quarter of a full one (docs/performance.md, tls-resume).
pub fn server_config(resolver: SniResolver, http2: bool) -> Result<Arc<ServerConfig>, rustls::Error> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut cfg = ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])?
        .with_no_client_auth()
        .with_cert_resolver(Arc::new(resolver));
    cfg.ticketer = rustls::crypto::ring::Ticketer::new()?;
    cfg.alpn_protocols = if http2 { vec![b"h2".to_vec(), b"http/1.1".to_vec()] } else { vec![b"http/1.1".to_vec()] };
    Ok(Arc::new(cfg))
}
