//! A small HTTP/1.1 client for the registry protocol: one connection per
//! request (pulls are a handful of large requests), TLS by rustls with the
//! system roots (plus a registry's own CA, or no verification when the
//! registry config says `insecure_skip_verify`), connect and idle timeouts so
//! a registry that hangs fails the pull instead of holding it.

use bytes::Bytes;
use http::{HeaderMap, Request, StatusCode};
use http_body_util::{BodyExt, Empty};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, ServerName};
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};
use std::time::Duration;
use tokio::net::TcpStream;

/// How long a connection (TCP and TLS) may take, and how long a response may
/// go without sending anything.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timeouts {
    pub connect: Duration,
    pub idle: Duration,
}

impl Default for Timeouts {
    fn default() -> Self {
        Timeouts { connect: Duration::from_secs(10), idle: Duration::from_secs(30) }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum HttpError {
    #[error("invalid URL {0:?}")]
    Url(String),
    #[error("connecting to {addr}: {source}")]
    Connect { addr: String, source: std::io::Error },
    #[error("connecting to {0}: no answer within {1:?}")]
    ConnectTimeout(String, Duration),
    #[error("TLS with {host}: {source}")]
    Tls { host: String, source: std::io::Error },
    #[error("TLS settings: {0}")]
    TlsConfig(String),
    #[error("HTTP with {host}: {source}")]
    Protocol { host: String, source: hyper::Error },
    #[error("{0}: no data for {1:?}")]
    Idle(String, Duration),
}

/// How to treat a server's certificate.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Trust {
    /// The system roots.
    System,
    /// The system roots plus this CA file.
    CaFile(PathBuf),
    /// Any certificate (`insecure_skip_verify`).
    Anything,
}

/// A response whose body is still to be read.
pub struct Response {
    pub status: StatusCode,
    pub headers: HeaderMap,
    body: Incoming,
    what: String,
    idle: Duration,
}

impl Response {
    /// A header as text.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// The next piece of the body; `None` at its end.
    pub async fn chunk(&mut self) -> Result<Option<Bytes>, HttpError> {
        loop {
            let frame = match tokio::time::timeout(self.idle, self.body.frame()).await {
                Err(_) => return Err(HttpError::Idle(self.what.clone(), self.idle)),
                Ok(None) => return Ok(None),
                Ok(Some(Err(source))) => return Err(HttpError::Protocol { host: self.what.clone(), source }),
                Ok(Some(Ok(f))) => f,
            };
            if let Ok(data) = frame.into_data() {
                if !data.is_empty() {
                    return Ok(Some(data));
                }
            }
        }
    }

    /// The whole body, at most `limit` bytes (more is an error text).
    pub async fn bytes(mut self, limit: usize) -> Result<Result<Vec<u8>, String>, HttpError> {
        let mut out = Vec::new();
        while let Some(c) = self.chunk().await? {
            if out.len() + c.len() > limit {
                return Ok(Err(format!("the response from {} is larger than {limit} bytes", self.what)));
            }
            out.extend_from_slice(&c);
        }
        Ok(Ok(out))
    }
}

/// GET `url` with `headers`.
pub async fn get(
    url: &url::Url,
    headers: &[(&str, String)],
    trust: &Trust,
    timeouts: Timeouts,
) -> Result<Response, HttpError> {
    let host = url.host_str().ok_or_else(|| HttpError::Url(url.to_string()))?.to_string();
    let tls = match url.scheme() {
        "https" => true,
        "http" => false,
        _ => return Err(HttpError::Url(url.to_string())),
    };
    let port = url.port_or_known_default().unwrap_or(if tls { 443 } else { 80 });
    // An IPv6 host keeps its brackets in the Host header only.
    let bare = host.trim_start_matches('[').trim_end_matches(']').to_string();
    let addr = format!("{host}:{port}");
    let tcp = match tokio::time::timeout(timeouts.connect, TcpStream::connect((bare.as_str(), port))).await {
        Err(_) => return Err(HttpError::ConnectTimeout(addr, timeouts.connect)),
        Ok(Err(source)) => return Err(HttpError::Connect { addr, source }),
        Ok(Ok(s)) => s,
    };
    let _ = tcp.set_nodelay(true);
    let host_header = match url.port() {
        Some(p) => format!("{host}:{p}"),
        None => host.clone(),
    };
    let path = match url.query() {
        Some(q) => format!("{}?{q}", url.path()),
        None => url.path().to_string(),
    };
    let mut req = Request::get(path).header("host", host_header).header("user-agent", "rkube");
    for (k, v) in headers {
        req = req.header(*k, v.as_str());
    }
    let req = req.body(Empty::<Bytes>::new()).map_err(|_| HttpError::Url(url.to_string()))?;
    let what = format!("{}://{addr}", url.scheme());
    let proto = |source| HttpError::Protocol { host: what.clone(), source };
    let resp = if tls {
        let config = client_config(trust)?;
        let name = ServerName::try_from(bare.clone()).map_err(|_| HttpError::Url(url.to_string()))?;
        let connector = tokio_rustls::TlsConnector::from(config);
        let stream = match tokio::time::timeout(timeouts.connect, connector.connect(name, tcp)).await {
            Err(_) => return Err(HttpError::ConnectTimeout(addr, timeouts.connect)),
            Ok(Err(source)) => return Err(HttpError::Tls { host: addr, source }),
            Ok(Ok(s)) => s,
        };
        let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await.map_err(proto)?;
        tokio::spawn(conn);
        send(&mut sender, req, &what, timeouts.idle).await?
    } else {
        let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tcp)).await.map_err(proto)?;
        tokio::spawn(conn);
        send(&mut sender, req, &what, timeouts.idle).await?
    };
    let (parts, body) = resp.into_parts();
    Ok(Response { status: parts.status, headers: parts.headers, body, what, idle: timeouts.idle })
}

async fn send(
    sender: &mut hyper::client::conn::http1::SendRequest<Empty<Bytes>>,
    req: Request<Empty<Bytes>>,
    what: &str,
    idle: Duration,
) -> Result<http::Response<Incoming>, HttpError> {
    match tokio::time::timeout(idle, sender.send_request(req)).await {
        Err(_) => Err(HttpError::Idle(what.to_string(), idle)),
        Ok(Err(source)) => Err(HttpError::Protocol { host: what.to_string(), source }),
        Ok(Ok(r)) => Ok(r),
    }
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// The system's trusted roots, loaded once.
fn system_roots() -> &'static rustls::RootCertStore {
    static ROOTS: OnceLock<rustls::RootCertStore> = OnceLock::new();
    ROOTS.get_or_init(|| {
        let mut roots = rustls::RootCertStore::empty();
        let found = rustls_native_certs::load_native_certs();
        for cert in found.certs {
            let _ = roots.add(cert);
        }
        roots
    })
}

fn client_config(trust: &Trust) -> Result<Arc<rustls::ClientConfig>, HttpError> {
    let cfg_err = |e: rustls::Error| HttpError::TlsConfig(e.to_string());
    let builder = rustls::ClientConfig::builder_with_provider(provider()).with_safe_default_protocol_versions();
    let builder = builder.map_err(cfg_err)?;
    let mut config = match trust {
        Trust::Anything => builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(AnyCertificate { provider: provider() }))
            .with_no_client_auth(),
        Trust::System => builder.with_root_certificates(system_roots().clone()).with_no_client_auth(),
        Trust::CaFile(path) => builder.with_root_certificates(roots_with(path)?).with_no_client_auth(),
    };
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

fn roots_with(path: &Path) -> Result<rustls::RootCertStore, HttpError> {
    let mut roots = system_roots().clone();
    let pem = std::fs::read(path).map_err(|e| HttpError::TlsConfig(format!("reading {}: {e}", path.display())))?;
    for cert in CertificateDer::pem_slice_iter(&pem) {
        let cert = cert.map_err(|e| HttpError::TlsConfig(format!("{}: {e}", path.display())))?;
        roots.add(cert).map_err(|e| HttpError::TlsConfig(format!("{}: {e}", path.display())))?;
    }
    Ok(roots)
}

/// `insecure_skip_verify`: any certificate, with the handshake's signature checks.
#[derive(Debug)]
struct AnyCertificate {
    provider: Arc<rustls::crypto::CryptoProvider>,
}

impl rustls::client::danger::ServerCertVerifier for AnyCertificate {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp: &[u8],
        _now: rustls_pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        Ok(rustls::client::danger::ServerCertVerified::assertion())
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
