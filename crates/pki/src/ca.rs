//! The cluster CA as a signer (`pkg/controller/certificates/signer` uses the
//! `--cluster-signing-*-file` pair the same way), and a node's own request.

use crate::PkiError;
use rcgen::{
    CertificateParams, CertificateSigningRequestParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose,
};
use std::path::Path;
use std::time::Duration;

/// Certificates are backdated this much against clock skew (upstream signer's `backdate`).
const BACKDATE: Duration = Duration::from_secs(5 * 60);

/// The cluster CA: its certificate and a signer built from its key.
pub struct Ca {
    pub cert_pem: String,
    issuer: Issuer<'static, KeyPair>,
}

/// A signed client certificate and its key, PEM.
#[derive(Debug, Clone)]
pub struct ClientCert {
    pub cert_pem: String,
    pub key_pem: String,
}

fn rc(what: &'static str) -> impl FnOnce(rcgen::Error) -> PkiError {
    move |source| PkiError::Rcgen { what, source }
}

fn read(path: &Path) -> Result<String, PkiError> {
    std::fs::read_to_string(path).map_err(|source| PkiError::Read { path: path.to_path_buf(), source })
}

impl Ca {
    /// From the CA's certificate and key PEM.
    pub fn from_pem(cert_pem: &str, key_pem: &str) -> Result<Ca, PkiError> {
        let key = KeyPair::from_pem(key_pem).map_err(rc("parsing the CA key"))?;
        let issuer = Issuer::from_ca_cert_pem(cert_pem, key).map_err(rc("parsing the CA certificate"))?;
        Ok(Ca { cert_pem: cert_pem.to_string(), issuer })
    }

    /// From `ca.crt` and `ca.key` in `dir` (the server's `<data-dir>/pki`).
    pub fn load(dir: &Path) -> Result<Ca, PkiError> {
        Ca::from_pem(&read(&dir.join("ca.crt"))?, &read(&dir.join("ca.key"))?)
    }

    /// Signs a client certificate for a PKCS#10 request (PEM): subject and key
    /// from the request, valid from a few minutes ago for `valid_for`, usable
    /// only for client authentication (the signer's `kube-apiserver-client*`
    /// profiles). SANs in the request are dropped: client certificates need none.
    pub fn sign_client_request(&self, request_pem: &str, valid_for: Duration) -> Result<String, PkiError> {
        let mut csr = CertificateSigningRequestParams::from_pem(request_pem).map_err(rc("parsing the request"))?;
        let now = time::OffsetDateTime::now_utc();
        csr.params.not_before = now - BACKDATE;
        csr.params.not_after = now + valid_for;
        csr.params.is_ca = IsCa::ExplicitNoCa;
        csr.params.subject_alt_names.clear();
        csr.params.key_usages = vec![KeyUsagePurpose::DigitalSignature, KeyUsagePurpose::KeyEncipherment];
        csr.params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        csr.params.use_authority_key_identifier_extension = true;
        csr.params.serial_number = Some(random_serial());
        let cert = csr.signed_by(&self.issuer).map_err(rc("signing the certificate"))?;
        Ok(cert.pem())
    }

    /// A new key pair and client certificate for `cn` in `orgs`, signed here
    /// (for components on the machine that holds the CA key).
    pub fn issue_client(&self, cn: &str, orgs: &[&str], valid_for: Duration) -> Result<ClientCert, PkiError> {
        let (request, key_pem) = client_request(cn, orgs)?;
        Ok(ClientCert { cert_pem: self.sign_client_request(&request, valid_for)?, key_pem })
    }
}

fn random_serial() -> rcgen::SerialNumber {
    let mut bytes: [u8; 16] = rand::random();
    // Positive, as RFC 5280 wants.
    bytes[0] &= 0x7f;
    rcgen::SerialNumber::from_slice(&bytes)
}

/// A new key and a client certificate request for `cn` in `orgs`.
/// Returns (request PEM, key PEM).
pub fn client_request(cn: &str, orgs: &[&str]) -> Result<(String, String), PkiError> {
    let mut params = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, cn);
    for o in orgs {
        dn.push(DnType::OrganizationName, *o);
    }
    params.distinguished_name = dn;
    let key = KeyPair::generate().map_err(rc("generating a key"))?;
    let request = params.serialize_request(&key).map_err(rc("making the request"))?;
    Ok((request.pem().map_err(rc("encoding the request"))?, key.serialize_pem()))
}

/// A node's key and its client certificate request, as kubelet's TLS
/// bootstrap makes them: CN `system:node:<name>`, O `system:nodes`.
/// Returns (request PEM, key PEM).
pub fn node_request(node_name: &str) -> Result<(String, String), PkiError> {
    client_request(&format!("system:node:{node_name}"), &["system:nodes"])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn test_ca() -> Ca {
        let mut params = CertificateParams::default();
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CommonName, "test-ca");
        params.distinguished_name = dn;
        params.is_ca = IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::DigitalSignature];
        let key = KeyPair::generate().expect("key");
        let cert = params.self_signed(&key).expect("ca");
        Ca::from_pem(&cert.pem(), &key.serialize_pem()).expect("ca")
    }

    #[test]
    fn signs_node_requests_as_client_certificates() {
        let ca = test_ca();
        let (req, _key) = node_request("n2").expect("request");
        let pem = ca.sign_client_request(&req, Duration::from_secs(3600)).expect("sign");
        let der = x509_parser::pem::parse_x509_pem(pem.as_bytes()).expect("pem").1.contents;
        let (_, cert) = x509_parser::parse_x509_certificate(&der).expect("cert");
        let cn: Vec<&str> = cert.subject().iter_common_name().filter_map(|a| a.as_str().ok()).collect();
        assert_eq!(cn, ["system:node:n2"]);
        let o: Vec<&str> = cert.subject().iter_organization().filter_map(|a| a.as_str().ok()).collect();
        assert_eq!(o, ["system:nodes"]);
        assert_eq!(cert.issuer().iter_common_name().next().and_then(|a| a.as_str().ok()), Some("test-ca"));
        let eku = cert.extended_key_usage().expect("eku").expect("present").value;
        assert!(eku.client_auth && !eku.server_auth);
        let left = cert.validity().not_after.timestamp() - time::OffsetDateTime::now_utc().unix_timestamp();
        assert!((3500..=3600).contains(&left), "{left}");
        assert!(ca.sign_client_request("garbage", Duration::from_secs(60)).is_err());
        let issued = ca.issue_client("system:admin", &["system:masters"], Duration::from_secs(60)).expect("issue");
        assert!(issued.key_pem.contains("PRIVATE KEY"));
    }
}
