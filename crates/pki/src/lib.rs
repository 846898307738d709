//! rkube's certificates, used by the API server, the controllers and joining
//! agents: the cluster CA signing requests ([`Ca`]), a node's key pair and
//! PKCS#10 request ([`node_request`]), and join tokens that carry the CA's hash
//! ([`JoinToken`], k3s's `K10<ca-hash>::<id>.<secret>` form), and the ES256
//! JWTs of ServiceAccount tokens ([`jwt`]).
//!
//! Dependencies: rcgen (with x509-parser), ring, time, rand, base64, serde_json.

mod ca;
pub mod jwt;
mod token;

pub use ca::{client_request, node_request, Ca, ClientCert};
pub use token::{ca_hash, JoinToken, TokenError};

/// The subject of a DER certificate: (CN, O values). Kubernetes reads a client
/// certificate's CN as the user and its O values as the groups.
pub fn subject(der: &[u8]) -> Option<(String, Vec<String>)> {
    let (_, cert) = x509_parser::parse_x509_certificate(der).ok()?;
    let cn = cert.subject().iter_common_name().find_map(|a| a.as_str().ok())?.to_string();
    let orgs = cert.subject().iter_organization().filter_map(|a| a.as_str().ok().map(str::to_string)).collect();
    Some((cn, orgs))
}

/// The subject of the first certificate in a PEM bundle.
pub fn subject_of_pem(pem: &str) -> Option<(String, Vec<String>)> {
    let (_, block) = x509_parser::pem::parse_x509_pem(pem.as_bytes()).ok()?;
    subject(&block.contents)
}

/// The `notAfter` of the first certificate in a PEM bundle, as Unix seconds.
pub fn not_after_of_pem(pem: &str) -> Option<i64> {
    let (_, block) = x509_parser::pem::parse_x509_pem(pem.as_bytes()).ok()?;
    let (_, cert) = x509_parser::parse_x509_certificate(&block.contents).ok()?;
    Some(cert.validity().not_after.timestamp())
}

/// The common name a node's client certificate carries.
pub fn node_user(node_name: &str) -> String {
    format!("system:node:{node_name}")
}

/// The CN of the client certificate the API server presents to node agents
/// (kubeadm's `apiserver-kubelet-client`).
pub const APISERVER_KUBELET_CLIENT: &str = "kube-apiserver-kubelet-client";

/// What went wrong making or signing a certificate.
#[derive(Debug, thiserror::Error)]
pub enum PkiError {
    #[error("reading {path}: {source}")]
    Read {
        path: std::path::PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{what}: {source}")]
    Rcgen {
        what: &'static str,
        #[source]
        source: rcgen::Error,
    },
    #[error("{0}")]
    Invalid(String),
}
