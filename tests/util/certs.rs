//! Test PKI built with rcgen (no openssl): a private CA, leaf certificates signed by it
//! (valid, expired, for any host names), self-signed leaves, and rustls server configs.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair,
    KeyUsagePurpose, date_time_ymd,
};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

/// The ring crypto provider, passed explicitly (no process-wide default needed).
pub fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// A private certificate authority (ECDSA P-256).
pub struct TestCa {
    issuer: CertifiedIssuer<'static, KeyPair>,
}

impl Default for TestCa {
    fn default() -> Self {
        Self::new()
    }
}

impl TestCa {
    pub fn new() -> Self {
        let nanos =
            std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos()).unwrap_or(0);
        let mut params = CertificateParams::default();
        params.distinguished_name = rcgen::DistinguishedName::new();
        params.distinguished_name.push(DnType::CommonName, format!("popbridge test CA {nanos}"));
        params.distinguished_name.push(DnType::OrganizationName, "popbridge tests");
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages =
            vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign, KeyUsagePurpose::DigitalSignature];
        params.not_before = date_time_ymd(2020, 1, 1);
        params.not_after = date_time_ymd(2049, 1, 1);
        let key = KeyPair::generate().expect("generate CA key");
        let issuer = CertifiedIssuer::self_signed(params, key).expect("self-sign CA");
        TestCa { issuer }
    }

    /// The CA certificate (PEM), i.e. what a client should trust.
    pub fn ca_pem(&self) -> String {
        self.issuer.pem()
    }

    /// A server certificate for `names` (IP addresses become IP SANs), valid 2020..2049.
    pub fn issue(&self, names: &[&str]) -> CertPair {
        self.issue_with(names, false)
    }

    /// Like [`issue`](Self::issue), but expired (valid 2020-01-01 .. 2021-01-01).
    pub fn issue_expired(&self, names: &[&str]) -> CertPair {
        self.issue_with(names, true)
    }

    fn issue_with(&self, names: &[&str], expired: bool) -> CertPair {
        let mut params = leaf_params(names);
        if expired {
            params.not_after = date_time_ymd(2021, 1, 1);
        }
        params.use_authority_key_identifier_extension = true;
        let key = KeyPair::generate().expect("generate leaf key");
        let cert = params.signed_by(&key, &self.issuer).expect("sign leaf");
        CertPair { cert_pem: cert.pem(), key_pem: key.serialize_pem() }
    }
}

fn leaf_params(names: &[&str]) -> CertificateParams {
    let names: Vec<String> = names.iter().map(|s| s.to_string()).collect();
    let mut params = CertificateParams::new(names.clone()).expect("leaf names");
    params.distinguished_name = rcgen::DistinguishedName::new();
    params.distinguished_name.push(DnType::CommonName, names.first().cloned().unwrap_or_else(|| "localhost".into()));
    params.is_ca = IsCa::ExplicitNoCa;
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    params.not_before = date_time_ymd(2020, 1, 1);
    params.not_after = date_time_ymd(2049, 1, 1);
    params
}

/// A self-signed leaf for `names` (not a CA): a verifying client must reject it,
/// unless it pins exactly this certificate.
pub fn self_signed(names: &[&str]) -> CertPair {
    let params = leaf_params(names);
    let key = KeyPair::generate().expect("generate key");
    let cert = params.self_signed(&key).expect("self-sign");
    CertPair { cert_pem: cert.pem(), key_pem: key.serialize_pem() }
}

/// A certificate (PEM) and its private key (PKCS#8 PEM).
#[derive(Clone, Debug)]
pub struct CertPair {
    pub cert_pem: String,
    pub key_pem: String,
}

impl CertPair {
    /// The leaf certificate in DER.
    pub fn cert_der(&self) -> CertificateDer<'static> {
        CertificateDer::from_pem_slice(self.cert_pem.as_bytes()).expect("parse cert PEM")
    }

    /// SHA-256 of the leaf DER, lowercase hex, no colons (for fingerprint pinning).
    pub fn sha256_hex(&self) -> String {
        let digest = ring::digest::digest(&ring::digest::SHA256, self.cert_der().as_ref());
        digest.as_ref().iter().map(|b| format!("{b:02x}")).collect()
    }

    /// A rustls server config presenting this certificate (ring provider, TLS 1.2 + 1.3).
    pub fn server_config(&self) -> Arc<rustls::ServerConfig> {
        let key = PrivateKeyDer::from_pem_slice(self.key_pem.as_bytes()).expect("parse key PEM");
        let config = rustls::ServerConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .expect("protocol versions")
            .with_no_client_auth()
            .with_single_cert(vec![self.cert_der()], key)
            .expect("server cert/key");
        Arc::new(config)
    }
}

/// A rustls client config trusting exactly the given PEM certificates (a CA, or a pinned leaf).
pub fn client_config(trusted_pem: &str) -> Arc<rustls::ClientConfig> {
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(trusted_pem.as_bytes()) {
        roots.add(cert.expect("parse trusted PEM")).expect("add root");
    }
    let config = rustls::ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .expect("protocol versions")
        .with_root_certificates(roots)
        .with_no_client_auth();
    Arc::new(config)
}

/// Write `pem` to `dir/name` and return the path.
pub fn write(dir: &Path, name: &str, pem: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, pem).unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
    path
}
