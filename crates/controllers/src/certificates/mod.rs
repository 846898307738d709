//! Node credentials: the controllers behind a node's TLS bootstrap
//! (`pkg/controller/certificates` and `pkg/controller/bootstrap`).
//!
//! - [`approver`]: approves a node's client certificate request when the
//!   requester may ask for it (`csrapproving`);
//! - [`signer`]: signs approved client certificate requests with the cluster
//!   CA (`csrsigning`), when the controllers were given the CA;
//! - [`tokencleaner`]: deletes expired bootstrap tokens (`tokencleaner`).

pub mod approver;
pub mod signer;
pub mod tokencleaner;

use std::path::PathBuf;
use std::time::Duration;

/// The CA the signer uses (`--cluster-signing-cert-file`/`-key-file`, here the
/// directory holding `ca.crt` and `ca.key`) and how long certificates last
/// (`--cluster-signing-duration`, default one year).
#[derive(Debug, Clone)]
pub struct Signing {
    pub ca_dir: PathBuf,
    pub duration: Duration,
}

impl Signing {
    pub fn new(ca_dir: PathBuf) -> Signing {
        Signing { ca_dir, duration: Duration::from_secs(365 * 24 * 3600) }
    }
}

#[cfg(test)]
mod tests {
    use super::approver::{verdict, Verdict};
    use super::signer::{decide, Decision};
    use super::tokencleaner::time_left;
    use base64::Engine;
    use serde_json::{json, Value};
    use std::time::Duration;

    fn csr(username: &str, groups: &[&str], request_pem: &str) -> Value {
        json!({
            "metadata": {"name": "node-csr-x"},
            "spec": {
                "request": base64::engine::general_purpose::STANDARD.encode(request_pem),
                "signerName": "kubernetes.io/kube-apiserver-client-kubelet",
                "usages": ["digital signature", "client auth"],
                "username": username, "groups": groups,
            },
            "status": {},
        })
    }

    #[test]
    fn approves_bootstrappers_and_renewing_nodes_only() {
        let (req, _) = pki::node_request("n2").expect("request");
        let none = |_: &str| false;
        let bootstrap = csr("system:bootstrap:abcdef", &["system:bootstrappers", "system:authenticated"], &req);
        assert_eq!(verdict(&bootstrap, none), Verdict::Approve);
        assert_eq!(verdict(&csr("system:node:n2", &["system:nodes"], &req), none), Verdict::Approve);
        // Another node may not get n2's certificate; a random user neither.
        assert_eq!(verdict(&csr("system:node:n3", &["system:nodes"], &req), none), Verdict::Leave);
        assert_eq!(verdict(&csr("jane", &["system:authenticated"], &req), none), Verdict::Leave);
        // A join may not take the name of a live node; its own renewal may.
        assert!(matches!(
            verdict(&bootstrap, |n| n == "n2"),
            Verdict::Deny("NodeNameInUse", m) if m.contains("\"n2\" already exists")
        ));
        assert_eq!(verdict(&csr("system:node:n2", &["system:nodes"], &req), |n| n == "n2"), Verdict::Approve);
        // Already decided.
        let mut done = bootstrap.clone();
        done["status"]["conditions"] = json!([{"type": "Denied", "status": "True"}]);
        assert_eq!(verdict(&done, none), Verdict::Leave);
    }

    #[test]
    fn signs_approved_client_requests() {
        let (req, _) = pki::node_request("n2").expect("request");
        let year = Duration::from_secs(365 * 86400);
        let mut c = csr("system:bootstrap:abcdef", &["system:bootstrappers"], &req);
        assert_eq!(decide(&c, year), Decision::Skip, "not approved yet");
        c["status"]["conditions"] = json!([{"type": "Approved", "status": "True"}]);
        assert_eq!(decide(&c, year), Decision::Sign(year));
        c["spec"]["expirationSeconds"] = json!(3600);
        assert_eq!(decide(&c, year), Decision::Sign(Duration::from_secs(3600)));
        c["spec"]["usages"] = json!(["server auth"]);
        assert!(matches!(decide(&c, year), Decision::Fail(m) if m.contains("server auth")));
        c["spec"]["signerName"] = json!("example.com/other");
        assert_eq!(decide(&c, year), Decision::Skip);
    }

    #[test]
    fn expired_tokens_are_due() {
        let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s);
        let secret = |exp: Option<&str>| {
            let mut data = json!({"token-id": b64("abcdef"), "token-secret": b64("0123456789abcdef")});
            if let Some(e) = exp {
                data["expiration"] = json!(b64(e));
            }
            json!({"type": "bootstrap.kubernetes.io/token", "data": data})
        };
        let now: jiff::Timestamp = "2026-06-01T00:00:00Z".parse().expect("ts");
        assert_eq!(time_left(&secret(None), now), None);
        assert_eq!(time_left(&secret(Some("2026-05-01T00:00:00Z")), now), Some(Duration::ZERO));
        assert_eq!(time_left(&secret(Some("2026-06-01T00:01:00Z")), now), Some(Duration::from_secs(60)));
        assert_eq!(time_left(&json!({"type": "Opaque"}), now), None);
    }
}
