//! Test certificates, made at test time: a throwaway CA and leaf certificates it signs.
//!
//! Nothing is checked in: every test run makes fresh keys (rcgen, ECDSA P-256 on *ring*), so
//! no certificate can expire in the repository and no private key is ever committed. The CA
//! lets real clients (curl with `--cacert`) verify what gale presents, name included; the
//! leaf's DER lets a test say exactly which certificate a handshake presented.

use std::path::{Path, PathBuf};

use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair, KeyUsagePurpose};

/// A certificate authority that exists for one test.
pub struct TestCa {
    issuer: Issuer<'static, KeyPair>,
    pem: String,
}

/// A leaf certificate and its private key, as PEM (what gale reads) and DER (what a TLS
/// client receives).
#[derive(Clone, Debug)]
pub struct TestCert {
    /// The certificate, PEM.
    pub cert_pem: String,
    /// Its PKCS#8 private key, PEM.
    pub key_pem: String,
    /// The certificate, DER: compare with what a handshake presented.
    pub der: Vec<u8>,
}

impl TestCa {
    /// A fresh self-signed CA named `gale test CA`.
    pub fn new() -> TestCa {
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("CA params");
        params.distinguished_name.push(DnType::CommonName, "gale test CA");
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let key = KeyPair::generate().expect("CA key");
        let cert = params.self_signed(&key).expect("self-sign the CA");
        TestCa { pem: cert.pem(), issuer: Issuer::new(params, key) }
    }

    /// The CA certificate, PEM (for `curl --cacert`).
    pub fn pem(&self) -> &str {
        &self.pem
    }

    /// Writes the CA certificate to `dir/ca.pem` and returns the path.
    pub fn write(&self, dir: &Path) -> PathBuf {
        let path = dir.join("ca.pem");
        std::fs::write(&path, &self.pem).expect("write ca.pem");
        path
    }

    /// A leaf certificate for `names` (DNS names, `*.` wildcards allowed), with the first name
    /// as its common name, signed by this CA with a fresh key.
    pub fn issue(&self, names: &[&str]) -> TestCert {
        let sans: Vec<String> = names.iter().map(|n| (*n).to_owned()).collect();
        let mut params = CertificateParams::new(sans).expect("leaf params");
        if let Some(first) = names.first() {
            params.distinguished_name.push(DnType::CommonName, *first);
        }
        let key = KeyPair::generate().expect("leaf key");
        let cert = params.signed_by(&key, &self.issuer).expect("sign the leaf");
        TestCert { cert_pem: cert.pem(), key_pem: key.serialize_pem(), der: cert.der().to_vec() }
    }
}

impl Default for TestCa {
    fn default() -> Self {
        Self::new()
    }
}

impl TestCert {
    /// Writes `dir/STEM.pem` and `dir/STEM.key` (replacing them: a reload test swaps a
    /// certificate in place) and returns both paths.
    pub fn write(&self, dir: &Path, stem: &str) -> (PathBuf, PathBuf) {
        let cert = dir.join(format!("{stem}.pem"));
        let key = dir.join(format!("{stem}.key"));
        std::fs::write(&cert, &self.cert_pem).expect("write certificate");
        std::fs::write(&key, &self.key_pem).expect("write key");
        (cert, key)
    }
}

/// The TOML inline table `{ cert = "...", key = "..." }` for a `[[server]]`'s `tls`.
pub fn tls_table(cert: &Path, key: &Path) -> String {
    let quote = |p: &Path| serde_json::to_string(&p.display().to_string()).expect("path to JSON string");
    format!("{{ cert = {}, key = {} }}", quote(cert), quote(key))
}
