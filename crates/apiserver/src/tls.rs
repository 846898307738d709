//! The cluster CA and the API server's serving certificate. The CA is created
//! once in the data dir; the serving certificate is re-issued at every start so
//! its SANs follow the advertise address and service CIDR.

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, IsCa, Issuer, KeyPair, KeyUsagePurpose, SanType,
};
use rustls_pki_types::{pem::PemObject, CertificateDer, PrivateKeyDer};
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("{action} {path}: {source}")]
    Io {
        action: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("generating {what}: {source}")]
    Generate {
        what: &'static str,
        #[source]
        source: rcgen::Error,
    },
    #[error("reading PEM {path}: {message}")]
    Pem { path: PathBuf, message: String },
    #[error("TLS configuration: {0}")]
    Rustls(#[from] rustls::Error),
}

/// PEM files of the cluster CA and the current serving certificate.
pub struct Certs {
    pub ca_pem: String,
    pub server_config: Arc<rustls::ServerConfig>,
}

fn ca_params() -> CertificateParams {
    let mut params = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, "rkube-ca");
    params.distinguished_name = dn;
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign, KeyUsagePurpose::DigitalSignature];
    params.not_before = rcgen::date_time_ymd(2024, 1, 1);
    params.not_after = rcgen::date_time_ymd(2124, 1, 1);
    params
}

fn read(path: &Path) -> Result<String, TlsError> {
    std::fs::read_to_string(path).map_err(|source| TlsError::Io { action: "reading", path: path.into(), source })
}

fn write(path: &Path, contents: &str, private: bool) -> Result<(), TlsError> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create(true).truncate(true).mode(if private { 0o600 } else { 0o644 });
    let io = |source| TlsError::Io { action: "writing", path: path.into(), source };
    let mut f = opts.open(path).map_err(io)?;
    f.write_all(contents.as_bytes()).map_err(io)
}

/// The cluster CA in `dir`, created on first use: its PEM and a signer.
fn load_or_create_ca(dir: &Path) -> Result<(String, Issuer<'static, KeyPair>), TlsError> {
    let (ca_crt, ca_key) = (dir.join("ca.crt"), dir.join("ca.key"));
    let gen = |what| move |source| TlsError::Generate { what, source };
    if !ca_crt.exists() || !ca_key.exists() {
        let key = KeyPair::generate().map_err(gen("CA key"))?;
        let cert = ca_params().self_signed(&key).map_err(gen("CA certificate"))?;
        write(&ca_key, &key.serialize_pem(), true)?;
        write(&ca_crt, &cert.pem(), false)?;
    }
    let ca_pem = read(&ca_crt)?;
    let key = KeyPair::from_pem(&read(&ca_key)?).map_err(gen("CA key (parse)"))?;
    Ok((ca_pem, Issuer::new(ca_params(), key)))
}

/// A serving certificate signed by the CA: (certificate PEM, key PEM).
fn issue(
    issuer: &Issuer<'static, KeyPair>,
    cn: &str,
    dns_names: &[String],
    ips: &[IpAddr],
) -> Result<(String, String), TlsError> {
    let gen = |what| move |source| TlsError::Generate { what, source };
    let mut params = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, cn);
    params.distinguished_name = dn;
    params.not_before = rcgen::date_time_ymd(2024, 1, 1);
    params.not_after = rcgen::date_time_ymd(2124, 1, 1);
    params.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ServerAuth];
    for name in dns_names {
        let n = name.clone().try_into().map_err(gen("SAN"))?;
        params.subject_alt_names.push(SanType::DnsName(n));
    }
    for ip in ips {
        params.subject_alt_names.push(SanType::IpAddress(*ip));
    }
    let key = KeyPair::generate().map_err(gen("serving key"))?;
    let cert = params.signed_by(&key, issuer).map_err(gen("serving certificate"))?;
    Ok((cert.pem(), key.serialize_pem()))
}

/// A rustls server configuration from PEMs (h2 and http/1.1 offered).
pub fn server_config(cert_pem: &str, key_pem: &str) -> Result<Arc<rustls::ServerConfig>, TlsError> {
    server_config_verifying(cert_pem, key_pem, None)
}

/// Roots holding the CA certificates of `ca_pem`.
fn roots(ca_pem: &str) -> Result<rustls::RootCertStore, TlsError> {
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(ca_pem.as_bytes()) {
        let cert = cert.map_err(|e| TlsError::Pem { path: PathBuf::from("<ca>"), message: e.to_string() })?;
        roots.add(cert)?;
    }
    Ok(roots)
}

/// [`server_config`] that also verifies client certificates against
/// `client_ca_pem` when a client presents one (clients without one still
/// connect: they may authenticate with a bearer token).
pub fn server_config_verifying(
    cert_pem: &str,
    key_pem: &str,
    client_ca_pem: Option<&str>,
) -> Result<Arc<rustls::ServerConfig>, TlsError> {
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(cert_pem.as_bytes())
        .collect::<Result<_, _>>()
        .map_err(|e| TlsError::Pem { path: PathBuf::from("<certificate>"), message: e.to_string() })?;
    let key_der = PrivateKeyDer::from_pem_slice(key_pem.as_bytes())
        .map_err(|e| TlsError::Pem { path: PathBuf::from("<key>"), message: e.to_string() })?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder =
        rustls::ServerConfig::builder_with_provider(provider.clone()).with_safe_default_protocol_versions()?;
    let builder = match client_ca_pem {
        Some(ca) => {
            let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(Arc::new(roots(ca)?), provider)
                .allow_unauthenticated()
                .build()
                .map_err(|e| rustls::Error::General(format!("client certificate verifier: {e}")))?;
            builder.with_client_cert_verifier(verifier)
        }
        None => builder.with_no_client_auth(),
    };
    let mut config = builder.with_single_cert(chain, key_der)?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// A client certificate and key (PEM) a TLS client presents.
#[derive(Clone)]
pub struct Identity {
    pub cert_pem: String,
    pub key_pem: String,
}

fn with_identity(
    b: rustls::ConfigBuilder<rustls::ClientConfig, rustls::client::WantsClientCert>,
    identity: Option<&Identity>,
) -> Result<rustls::ClientConfig, TlsError> {
    let Some(id) = identity else { return Ok(b.with_no_client_auth()) };
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(id.cert_pem.as_bytes())
        .collect::<Result<_, _>>()
        .map_err(|e| TlsError::Pem { path: PathBuf::from("<client certificate>"), message: e.to_string() })?;
    let key = PrivateKeyDer::from_pem_slice(id.key_pem.as_bytes())
        .map_err(|e| TlsError::Pem { path: PathBuf::from("<client key>"), message: e.to_string() })?;
    Ok(b.with_client_auth_cert(chain, key)?)
}

/// A client configuration trusting only the cluster CA (API server -> node
/// agents), presenting `identity` if given.
pub fn client_config(ca_pem: &str, identity: Option<&Identity>) -> Result<Arc<rustls::ClientConfig>, TlsError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let b = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots(ca_pem)?);
    let mut config = with_identity(b, identity)?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// The client certificate the API server presents to node agents
/// (`kube-apiserver-kubelet-client`, kubeadm's `apiserver-kubelet-client.crt`),
/// re-issued at every start.
pub fn issue_kubelet_client(pki_dir: &Path) -> Result<Identity, TlsError> {
    let ca = pki::Ca::load(pki_dir).map_err(|e| TlsError::Pem { path: pki_dir.into(), message: e.to_string() })?;
    let c = ca
        .issue_client(pki::APISERVER_KUBELET_CLIENT, &["system:masters"], std::time::Duration::from_secs(365 * 86400))
        .map_err(|e| TlsError::Pem { path: pki_dir.into(), message: e.to_string() })?;
    Ok(Identity { cert_pem: c.cert_pem, key_pem: c.key_pem })
}

/// A node agent's serving certificate, signed by the cluster CA in `pki_dir`
/// (only possible on the machine that holds the CA key, as with `rkube up`).
/// Returns (certificate PEM, key PEM, CA PEM).
pub fn issue_node_cert(pki_dir: &Path, node_name: &str, ips: &[IpAddr]) -> Result<(String, String, String), TlsError> {
    let (ca_pem, issuer) = load_or_create_ca(pki_dir)?;
    let (cert, key) = issue(&issuer, &format!("system:node:{node_name}"), &[node_name.to_string()], ips)?;
    Ok((cert, key, ca_pem))
}

/// Load (or create) the CA in `dir` and issue the API server's serving
/// certificate for `dns_names` and `ips`.
pub fn load_or_create(dir: &Path, dns_names: &[String], ips: &[IpAddr]) -> Result<Certs, TlsError> {
    let (ca_pem, issuer) = load_or_create_ca(dir)?;
    let (cert, key) = issue(&issuer, "kube-apiserver", dns_names, ips)?;
    write(&dir.join("apiserver.crt"), &cert, false)?;
    write(&dir.join("apiserver.key"), &key, true)?;
    Ok(Certs { server_config: server_config_verifying(&cert, &key, Some(&ca_pem))?, ca_pem })
}

/// Hex SHA-256 of a certificate's DER: how a node agent's self-signed serving
/// certificate is pinned in its Node object.
pub fn sha256_hex(der: &[u8]) -> String {
    ring::digest::digest(&ring::digest::SHA256, der).as_ref().iter().map(|b| format!("{b:02x}")).collect()
}

/// A self-signed serving certificate for a node agent that joins from another
/// machine (it cannot reach the CA key): (certificate PEM, key PEM, SHA-256 pin).
pub fn self_signed_node_cert(node_name: &str, ips: &[IpAddr]) -> Result<(String, String, String), TlsError> {
    let gen = |what| move |source| TlsError::Generate { what, source };
    let mut params = CertificateParams::new(vec![node_name.to_string()]).map_err(gen("node SAN"))?;
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, format!("system:node:{node_name}"));
    params.distinguished_name = dn;
    params.not_before = rcgen::date_time_ymd(2024, 1, 1);
    params.not_after = rcgen::date_time_ymd(2124, 1, 1);
    for ip in ips {
        params.subject_alt_names.push(SanType::IpAddress(*ip));
    }
    let key = KeyPair::generate().map_err(gen("node key"))?;
    let cert = params.self_signed(&key).map_err(gen("node certificate"))?;
    Ok((cert.pem(), key.serialize_pem(), sha256_hex(cert.der())))
}

/// Accepts exactly the certificate whose SHA-256 is pinned, with the usual
/// handshake signature checks.
#[derive(Debug)]
struct Pinned {
    sha256: String,
    provider: Arc<rustls::crypto::CryptoProvider>,
}

impl rustls::client::danger::ServerCertVerifier for Pinned {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &rustls_pki_types::ServerName<'_>,
        _ocsp: &[u8],
        _now: rustls_pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        if sha256_hex(end_entity.as_ref()) == self.sha256 {
            Ok(rustls::client::danger::ServerCertVerified::assertion())
        } else {
            Err(rustls::Error::InvalidCertificate(rustls::CertificateError::ApplicationVerificationFailure))
        }
    }
    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.provider.signature_verification_algorithms)
    }
    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.provider.signature_verification_algorithms)
    }
    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.provider.signature_verification_algorithms.supported_schemes()
    }
}

/// A client configuration that trusts one pinned certificate (API server ->
/// a node agent that joined with a self-signed serving certificate).
pub fn pinned_client_config(sha256: &str, identity: Option<&Identity>) -> Result<Arc<rustls::ClientConfig>, TlsError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let verifier = Arc::new(Pinned { sha256: sha256.to_string(), provider: provider.clone() });
    let b = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .dangerous()
        .with_custom_certificate_verifier(verifier);
    let mut config = with_identity(b, identity)?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}
