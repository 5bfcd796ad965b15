//! Every rustls configuration popbridge uses is built here.
//!
//! Upstream (POP3/SMTP servers we connect to) is always verified: against the system's roots
//! (rustls-platform-verifier, with webpki-roots when the system has no CA bundle), against a private
//! CA (`ca_file`), or against a pinned SHA-256 fingerprint of the server's certificate (`pin_sha256`,
//! for self-signed servers). Every verifier records the certificate it was shown, so that a rejection
//! can print the fingerprint to pin — and hand the certificate itself back in the error
//! ([`Error::presented`]), for `account add` to show and offer to pin. TLS 1.2 is the floor (rustls
//! supports nothing older).
//!
//! Locally, `init` creates one long-lived self-signed certificate for the IMAP/SMTP listeners
//! ([`ensure_local_cert`]); it is never regenerated silently, so a client's stored exception stays valid.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, SignatureScheme};

use crate::config::{TrustSettings, format_fingerprint};
use crate::error::{Error, ErrorClass, Result};
use crate::files;
use crate::secret::ct_eq;

pub fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

pub fn sha256(der: &[u8]) -> [u8; 32] {
    let d = ring::digest::digest(&ring::digest::SHA256, der);
    let mut out = [0u8; 32];
    out.copy_from_slice(d.as_ref());
    out
}

/// What the server presented, filled in during the handshake (whether or not it was accepted).
#[derive(Debug, Default)]
pub struct Seen {
    pub fingerprint: Option<[u8; 32]>,
    /// The end-entity certificate itself (DER).
    pub end_entity: Option<Presented>,
}

/// A certificate the server presented; it lives with [`Error`] (the error that carries it).
pub use crate::error::Presented;

pub type SeenSlot = Arc<Mutex<Seen>>;

/// How the server's certificate was checked, for `account test`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TrustKind {
    System,
    WebpkiRoots,
    CaFile,
    Pinned,
}

impl TrustKind {
    pub fn describe(self) -> &'static str {
        match self {
            TrustKind::System => "verified against the system's certificate authorities",
            TrustKind::WebpkiRoots => "verified against the built-in Mozilla root list (the system has no CA bundle)",
            TrustKind::CaFile => "verified against the configured ca_file",
            TrustKind::Pinned => "accepted by its pinned SHA-256 fingerprint",
        }
    }
}

#[derive(Debug)]
struct Recording {
    inner: Arc<dyn ServerCertVerifier>,
    seen: SeenSlot,
}

impl Recording {
    fn record(&self, end_entity: &CertificateDer<'_>) {
        if let Ok(mut s) = self.seen.lock() {
            s.fingerprint = Some(sha256(end_entity));
            s.end_entity = Some(Presented::new(end_entity.as_ref().to_vec()));
        }
    }
}

impl ServerCertVerifier for Recording {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp: &[u8],
        now: UnixTime,
    ) -> std::result::Result<ServerCertVerified, rustls::Error> {
        self.record(end_entity);
        self.inner.verify_server_cert(end_entity, intermediates, server_name, ocsp, now)
    }
    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> std::result::Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls12_signature(message, cert, dss)
    }
    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> std::result::Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }
    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.inner.supported_verify_schemes()
    }
}

/// Accepts exactly one certificate, by its SHA-256, whatever its issuer, names or dates: the user
/// compared the fingerprint and chose to trust it. Handshake signatures are still verified, so the
/// server must hold that certificate's private key.
#[derive(Debug)]
struct Pinned {
    pin: [u8; 32],
    provider: Arc<CryptoProvider>,
}

impl ServerCertVerifier for Pinned {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp: &[u8],
        _now: UnixTime,
    ) -> std::result::Result<ServerCertVerified, rustls::Error> {
        if ct_eq(&sha256(end_entity), &self.pin) {
            Ok(ServerCertVerified::assertion())
        } else {
            Err(rustls::Error::General("the certificate does not match the pinned fingerprint".into()))
        }
    }
    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> std::result::Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.provider.signature_verification_algorithms)
    }
    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> std::result::Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.provider.signature_verification_algorithms)
    }
    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider.signature_verification_algorithms.supported_schemes()
    }
}

/// A client config for one upstream server, plus the slot the handshake fills.
pub struct Upstream {
    pub config: Arc<ClientConfig>,
    pub seen: SeenSlot,
    pub trust: TrustKind,
}

pub fn load_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>> {
    let certs: Vec<_> = CertificateDer::pem_file_iter(path)
        .map_err(|e| Error::config(format!("cannot read certificates from {}: {e}", path.display())))?
        .collect::<std::result::Result<_, _>>()
        .map_err(|e| Error::config(format!("{} is not a PEM certificate file: {e}", path.display())))?;
    if certs.is_empty() {
        return Err(Error::config(format!("{} holds no PEM certificate", path.display())));
    }
    Ok(certs)
}

pub fn upstream(trust: &TrustSettings) -> Result<Upstream> {
    let provider = provider();
    let (inner, kind): (Arc<dyn ServerCertVerifier>, TrustKind) = if let Some(pin) = trust.pin_sha256 {
        (Arc::new(Pinned { pin, provider: provider.clone() }), TrustKind::Pinned)
    } else if let Some(ca) = &trust.ca_file {
        let mut roots = rustls::RootCertStore::empty();
        for c in load_certs(ca)? {
            roots.add(c).map_err(|e| Error::config(format!("{}: not a usable CA certificate: {e}", ca.display())))?;
        }
        let v = rustls::client::WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider.clone())
            .build()
            .map_err(|e| Error::config(format!("{}: {e}", ca.display())))?;
        (v, TrustKind::CaFile)
    } else {
        match rustls_platform_verifier::Verifier::new(provider.clone()) {
            Ok(v) => (Arc::new(v), TrustKind::System),
            Err(_) => {
                // No system CA bundle (minimal containers): Mozilla's list compiled in.
                let roots = rustls::RootCertStore { roots: webpki_roots::TLS_SERVER_ROOTS.to_vec() };
                let v = rustls::client::WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider.clone())
                    .build()
                    .map_err(|e| Error::other(format!("cannot build the TLS verifier: {e}")))?;
                (v, TrustKind::WebpkiRoots)
            }
        }
    };
    let seen = SeenSlot::default();
    let verifier = Arc::new(Recording { inner, seen: seen.clone() });
    let config = ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .map_err(|e| Error::other(format!("TLS setup: {e}")))?
        .dangerous()
        .with_custom_certificate_verifier(verifier)
        .with_no_client_auth();
    Ok(Upstream { config: Arc::new(config), seen, trust: kind })
}

/// Turns a failed handshake into a user-facing error: certificate problems name the fingerprint to
/// pin, and carry the refused certificate ([`Error::presented`]).
pub fn handshake_error(host: &str, port: u16, err: &std::io::Error, seen: &SeenSlot) -> Error {
    let (fp, presented) = seen.lock().map(|s| (s.fingerprint, s.end_entity.clone())).unwrap_or_default();
    let tls_err = err.get_ref().and_then(|e| e.downcast_ref::<rustls::Error>());
    let why = match tls_err {
        Some(rustls::Error::InvalidCertificate(c)) => describe_cert_error(c),
        Some(rustls::Error::General(g)) => g.clone(),
        Some(e) => e.to_string(),
        None => err.to_string(),
    };
    let mut msg = format!("TLS with {host}:{port} failed: {why}");
    if let Some(fp) = fp {
        msg.push_str(&format!("; the server's certificate has SHA-256 fingerprint {}", format_fingerprint(&fp)));
    }
    match tls_err {
        // The verifier refused what it was shown (Pinned's mismatch is a `General`).
        Some(rustls::Error::InvalidCertificate(_) | rustls::Error::General(_)) => {
            Error::new(ErrorClass::Certificate, msg).with_presented(presented)
        }
        Some(_) => Error::new(ErrorClass::Certificate, msg),
        // EOF or reset during the handshake: most often a plaintext port given as TLS.
        None => Error::new(
            ErrorClass::Certificate,
            format!(
                "{msg} (is {port} really a TLS port? 995 is POP3 over TLS; 110 is plain, use tls = \"starttls\" there)"
            ),
        ),
    }
}

fn describe_cert_error(c: &rustls::CertificateError) -> String {
    use rustls::CertificateError as C;
    match c {
        C::UnknownIssuer => "the certificate is not signed by a trusted authority (self-signed or private CA)".into(),
        C::NotValidForName | C::NotValidForNameContext { .. } => "the certificate is for a different host name".into(),
        C::Expired | C::ExpiredContext { .. } => "the certificate has expired".into(),
        C::NotValidYet | C::NotValidYetContext { .. } => {
            "the certificate is not valid yet (check this machine's clock)".into()
        }
        C::Revoked => "the certificate has been revoked".into(),
        other => format!("the certificate was rejected ({other:?})"),
    }
}

/// The local listeners' certificate and key, as created by `init`.
pub struct LocalCert {
    pub cert: PathBuf,
    pub key: PathBuf,
}

impl LocalCert {
    pub fn in_dir(dir: &Path) -> LocalCert {
        LocalCert { cert: dir.join("cert.pem"), key: dir.join("key.pem") }
    }
    pub fn fingerprint(&self) -> Result<[u8; 32]> {
        let certs = load_certs(&self.cert)?;
        Ok(sha256(&certs[0]))
    }
    pub fn server_config(&self) -> Result<Arc<rustls::ServerConfig>> {
        let certs = load_certs(&self.cert)?;
        let key = PrivateKeyDer::from_pem_file(&self.key)
            .map_err(|e| Error::config(format!("cannot read the local TLS key {}: {e}", self.key.display())))?;
        let cfg = rustls::ServerConfig::builder_with_provider(provider())
            .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
            .map_err(|e| Error::other(format!("TLS setup: {e}")))?
            .with_no_client_auth()
            .with_single_cert(certs, key)
            .map_err(|e| Error::config(format!("the local certificate {} is unusable: {e}", self.cert.display())))?;
        Ok(Arc::new(cfg))
    }
}

/// Creates the local certificate if it does not exist yet; an existing one is kept as it is
/// (clients have accepted its fingerprint). Valid for 20 years; names localhost, 127.0.0.1, ::1.
pub fn ensure_local_cert(dir: &Path) -> Result<(LocalCert, bool)> {
    let lc = LocalCert::in_dir(dir);
    match (lc.cert.exists(), lc.key.exists()) {
        (true, true) => {
            files::check_private(&lc.key)?;
            return Ok((lc, false));
        }
        (false, false) => {}
        _ => {
            return Err(Error::config(format!(
                "only one of {} and {} exists; restore the missing one from a backup, or delete both to create a new certificate (clients will then ask to accept it again)",
                lc.cert.display(),
                lc.key.display()
            )));
        }
    }
    files::create_private_dir(dir)?;
    let mut params =
        rcgen::CertificateParams::new(vec!["localhost".to_string(), "127.0.0.1".to_string(), "::1".to_string()])
            .map_err(|e| Error::other(format!("certificate parameters: {e}")))?;
    params.distinguished_name.push(rcgen::DnType::CommonName, "popbridge on localhost");
    let now = std::time::SystemTime::now();
    params.not_before = (now - std::time::Duration::from_secs(86_400)).into();
    params.not_after = (now + std::time::Duration::from_secs(20 * 365 * 86_400)).into();
    let key = rcgen::KeyPair::generate().map_err(|e| Error::other(format!("key generation: {e}")))?;
    let cert = params.self_signed(&key).map_err(|e| Error::other(format!("certificate generation: {e}")))?;
    files::write_new_private(&lc.key, key.serialize_pem().as_bytes(), ErrorClass::Other)?;
    files::write_new_private(&lc.cert, cert.pem().as_bytes(), ErrorClass::Other)?;
    Ok((lc, true))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn local_cert_is_created_once() {
        let dir = crate::files::private_tempdir();
        let (lc, created) = ensure_local_cert(dir.path()).unwrap();
        assert!(created);
        let fp = lc.fingerprint().unwrap();
        let (lc2, created2) = ensure_local_cert(dir.path()).unwrap();
        assert!(!created2);
        assert_eq!(lc2.fingerprint().unwrap(), fp);
        lc2.server_config().unwrap();
        std::fs::remove_file(&lc.key).unwrap();
        assert!(ensure_local_cert(dir.path()).is_err(), "a lone certificate is never silently replaced");
    }

    #[test]
    fn constant_time_eq() {
        assert!(ct_eq(b"abc", b"abc"));
        assert!(!ct_eq(b"abc", b"abd"));
        assert!(!ct_eq(b"abc", b"ab"));
    }
}
