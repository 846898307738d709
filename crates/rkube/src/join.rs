//! `rkube agent` joining a cluster, kubelet's TLS bootstrap the k3s way:
//!
//! 1. trust: the cluster CA comes from `--ca-file`, or from the server's
//!    `/cacerts`, accepted only if its SHA-256 is the one in the join token;
//! 2. credentials: with the join token (a bootstrap token, which may only ask
//!    for certificates) the agent posts a CertificateSigningRequest for
//!    `system:node:<name>` in `system:nodes`, waits for the controllers to
//!    approve and sign it, and keeps key and certificate in its data dir;
//! 3. from then on it talks to the API server as that node only. A restart
//!    reuses the certificate; the join token is not needed again.

use base64::Engine;
use k8s_openapi::api::certificates::v1::CertificateSigningRequest;
use kube::api::{Api, PostParams};
use serde_json::json;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// How long a join waits for its certificate.
const SIGN_TIMEOUT: Duration = Duration::from_secs(60);
/// A kept certificate closer than this to its end is renewed by joining again.
const RENEW_BEFORE: Duration = Duration::from_secs(3600);

/// What a joined agent talks to the cluster with.
pub struct Joined {
    pub ca_pem: String,
    /// A kubeconfig authenticating as `system:node:<name>`.
    pub kubeconfig: PathBuf,
}

fn cert_paths(data_dir: &Path) -> (PathBuf, PathBuf) {
    let dir = data_dir.join("pki");
    (dir.join("node-client.crt"), dir.join("node-client.key"))
}

/// The CA the agent trusts: `--ca-file`, else the server's `/cacerts` checked
/// against the token's hash.
async fn trusted_ca(server: &str, token: Option<&pki::JoinToken>, ca_file: Option<&Path>) -> Result<String, String> {
    if let Some(path) = ca_file {
        let ca = std::fs::read_to_string(path).map_err(|e| {
            format!("reading --ca-file {}: {e} (copy the server's <data-dir>/pki/ca.crt)", path.display())
        })?;
        if let Some(want) = token.and_then(|t| t.ca_hash.as_deref()) {
            let got = pki::ca_hash(&ca);
            if got != want {
                return Err(format!(
                    "--ca-file {} has CA hash {got}, but the join token names {want}: the token is for another cluster",
                    path.display()
                ));
            }
        }
        return Ok(ca);
    }
    let Some(want) = token.and_then(|t| t.ca_hash.clone()) else {
        return Err("the agent cannot trust the server: give --ca-file, or a join token with the CA hash \
                    (K10<ca-hash>::<id>.<secret>, as in the server's <data-dir>/node-token)"
            .into());
    };
    // Read without verification, then verify by hash (k3s `/cacerts`).
    let url: http::Uri = server.parse().map_err(|e| format!("--server {server:?}: {e}"))?;
    let mut cfg = kube::Config::new(url);
    cfg.accept_invalid_certs = true;
    let client = kube::Client::try_from(cfg).map_err(|e| format!("connecting to {server}: {e}"))?;
    let req = http::Request::get("/cacerts").body(Vec::new()).map_err(|e| e.to_string())?;
    let ca = tokio::time::timeout(Duration::from_secs(15), client.request_text(req))
        .await
        .map_err(|_| format!("cannot reach the API server at {server}: no answer within 15 s"))?
        .map_err(|e| format!("cannot reach the API server at {server}: {e}"))?;
    let got = pki::ca_hash(&ca);
    if got != want {
        return Err(format!(
            "the server at {server} presents a CA with hash {got}, but the join token names {want}: \
             the token is for another cluster, or something between you and the server is not the server"
        ));
    }
    Ok(ca)
}

/// A kept certificate for `node` that is still good for a while.
fn kept_certificate(data_dir: &Path, node: &str) -> Option<(String, String)> {
    let (crt, key) = cert_paths(data_dir);
    let cert = std::fs::read_to_string(crt).ok()?;
    let key = std::fs::read_to_string(key).ok()?;
    let (cn, _) = pki::subject_of_pem(&cert)?;
    let not_after = pki::not_after_of_pem(&cert)?;
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).ok()?.as_secs() as i64;
    (cn == pki::node_user(node) && not_after - now > RENEW_BEFORE.as_secs() as i64).then_some((cert, key))
}

/// A private file (0600) in the data dir, its directory made if needed.
fn write_private(path: &Path, contents: &str) -> Result<(), String> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(|e| format!("creating {}: {e}", dir.display()))?;
    }
    apiserver::write_private(path, contents).map_err(|e| e.to_string())
}

fn refused(server: &str, e: &kube::Error) -> String {
    match e {
        kube::Error::Api(s) if s.code == 401 => format!(
            "the server at {server} refused the join token (401 Unauthorized): it is wrong, expired or revoked; \
             make a new one on the server with `rkube token create`"
        ),
        kube::Error::Api(s) if s.code == 403 => {
            format!("the server at {server} does not let this token ask for node certificates: {}", s.message)
        }
        other => format!("asking {server} for the node's certificate: {other}"),
    }
}

/// Trades the join token for this node's certificate.
async fn request_certificate(
    server: &str,
    ca_pem: &str,
    token: &pki::JoinToken,
    node: &str,
    data_dir: &Path,
) -> Result<(String, String), String> {
    let bootstrap_kubeconfig = data_dir.join("bootstrap-kubeconfig.yaml");
    apiserver::write_kubeconfig(&bootstrap_kubeconfig, server, ca_pem, &token.bearer()).map_err(|e| e.to_string())?;
    let client = controllers::client_from_kubeconfig(&bootstrap_kubeconfig).await.map_err(|e| e.to_string());
    let _ = std::fs::remove_file(&bootstrap_kubeconfig);
    let client = client?;
    let (request, key_pem) = pki::node_request(node).map_err(|e| format!("making the node's key: {e}"))?;
    let csr: CertificateSigningRequest = serde_json::from_value(json!({
        "apiVersion": "certificates.k8s.io/v1",
        "kind": "CertificateSigningRequest",
        "metadata": { "generateName": "node-csr-" },
        "spec": {
            "request": base64::engine::general_purpose::STANDARD.encode(&request),
            "signerName": apimachinery::certificates::KUBELET_CLIENT_SIGNER,
            "usages": ["digital signature", "client auth"],
        },
    }))
    .map_err(|e| e.to_string())?;
    let api: Api<CertificateSigningRequest> = Api::all(client);
    let created = api.create(&PostParams::default(), &csr).await.map_err(|e| refused(server, &e))?;
    let name = created.metadata.name.unwrap_or_default();
    eprintln!("rkube agent: asked for the certificate of system:node:{node} (CertificateSigningRequest {name})");
    let deadline = tokio::time::Instant::now() + SIGN_TIMEOUT;
    loop {
        let c = api.get(&name).await.map_err(|e| refused(server, &e))?;
        let status = c.status.unwrap_or_default();
        for cond in status.conditions.iter().flatten() {
            if cond.type_ == "Denied" || cond.type_ == "Failed" {
                return Err(format!(
                    "the node's certificate request {name} was {}: {}",
                    cond.type_.to_lowercase(),
                    cond.message.clone().unwrap_or_default()
                ));
            }
        }
        if let Some(cert) = status.certificate {
            let pem = String::from_utf8(cert.0).map_err(|e| format!("the signed certificate is not PEM: {e}"))?;
            return Ok((pem, key_pem));
        }
        if tokio::time::Instant::now() >= deadline {
            return Err(format!(
                "the node's certificate request {name} was not signed within {SIGN_TIMEOUT:?}: \
                 are the server's controllers running (not `rkube server --api-only`)?"
            ));
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Joins through the first of `servers` that can be reached (the others are
/// tried when one cannot), writing a kubeconfig for `kubeconfig_server`.
pub async fn join_any(
    servers: &[String],
    token: Option<&str>,
    ca_file: Option<&Path>,
    data_dir: &Path,
    node: &str,
    kubeconfig_server: &str,
) -> Result<Joined, String> {
    let mut last = String::from("no --server given");
    for server in servers {
        match join(server, token, ca_file, data_dir, node, kubeconfig_server).await {
            Ok(j) => return Ok(j),
            Err(e) if e.contains("cannot reach") => {
                tracing::warn!(server = %server, error = %e, "trying the next server");
                last = e;
            }
            Err(e) => return Err(e),
        }
    }
    Err(last)
}

/// Joins `server` as `node`, or reuses the credentials of an earlier join;
/// the kubeconfig written names `kubeconfig_server`.
pub async fn join(
    server: &str,
    token: Option<&str>,
    ca_file: Option<&Path>,
    data_dir: &Path,
    node: &str,
    kubeconfig_server: &str,
) -> Result<Joined, String> {
    let token = token.map(pki::JoinToken::parse).transpose().map_err(|e| format!("--token: {e}"))?;
    let kept_ca = data_dir.join("pki").join("ca.crt");
    // A joined agent trusts the CA it joined with.
    let ca_pem = match (std::fs::read_to_string(&kept_ca), ca_file, &token) {
        (Ok(ca), None, None) => ca,
        _ => trusted_ca(server, token.as_ref(), ca_file).await?,
    };
    let (cert, key) = match kept_certificate(data_dir, node) {
        Some(ck) => ck,
        None => {
            let Some(token) = &token else {
                return Err(format!(
                    "node {node} has no certificate yet in {}: give --token (the server's <data-dir>/node-token)",
                    data_dir.display()
                ));
            };
            let (cert, key) = request_certificate(server, &ca_pem, token, node, data_dir).await?;
            let (crt_path, key_path) = cert_paths(data_dir);
            write_private(&key_path, &key)?;
            write_private(&crt_path, &cert)?;
            (cert, key)
        }
    };
    write_private(&kept_ca, &ca_pem)?;
    let kubeconfig = data_dir.join("kubeconfig.yaml");
    apiserver::write_kubeconfig_cert(&kubeconfig, kubeconfig_server, &ca_pem, &pki::node_user(node), &cert, &key)
        .map_err(|e| e.to_string())?;
    Ok(Joined { ca_pem, kubeconfig })
}
