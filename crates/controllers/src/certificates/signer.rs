//! `csrsigning` (`pkg/controller/certificates/signer/signer.go`): an Approved
//! request for a client certificate (`kubernetes.io/kube-apiserver-client-kubelet`
//! or `kubernetes.io/kube-apiserver-client`) without a Denied or Failed
//! condition gets `status.certificate`, signed by the cluster CA, valid for the
//! shorter of `spec.expirationSeconds` and the signing duration.

use super::Signing;
use crate::informer::Key;
use crate::queue::{resync, run_workers, Queue};
use crate::{metrics, Ctx, SyncError};
use apimachinery::certificates::{self as csr, KUBELET_CLIENT_SIGNER, KUBE_APISERVER_CLIENT_SIGNER};
use base64::Engine;
use k8s_openapi::api::certificates::v1::CertificateSigningRequest;
use kube::api::{Api, PostParams};
use serde_json::{json, Value};
use std::sync::Arc;
use std::time::Duration;
use tokio::task::JoinHandle;

/// What to do with a request: sign it (for how long), fail it (why), or nothing.
#[derive(Debug, PartialEq, Eq)]
pub enum Decision {
    Sign(Duration),
    Fail(String),
    Skip,
}

/// `isRequestForSignerName`, `handle`'s checks and `duration`.
pub fn decide(obj: &Value, max: Duration) -> Decision {
    let signer = obj.pointer("/spec/signerName").and_then(Value::as_str).unwrap_or_default();
    if signer != KUBELET_CLIENT_SIGNER && signer != KUBE_APISERVER_CLIENT_SIGNER {
        return Decision::Skip;
    }
    if !csr::has_condition(obj, "Approved") || csr::has_condition(obj, "Denied") || csr::has_condition(obj, "Failed") {
        return Decision::Skip;
    }
    if obj.pointer("/status/certificate").and_then(Value::as_str).is_some_and(|c| !c.is_empty()) {
        return Decision::Skip;
    }
    let Some(req) = csr::request_bytes(obj).and_then(|b| csr::parse_request(&b).ok()) else {
        return Decision::Fail("unable to parse csr".into());
    };
    let usages: Vec<&str> =
        obj.pointer("/spec/usages").and_then(Value::as_array).into_iter().flatten().filter_map(Value::as_str).collect();
    // `validators`: client signers issue client auth certificates only.
    if let Some(bad) = usages.iter().find(|u| !matches!(**u, "digital signature" | "key encipherment" | "client auth"))
    {
        return Decision::Fail(format!("invalid usage for client certificate: {bad}"));
    }
    if signer == KUBELET_CLIENT_SIGNER && !csr::is_node_client_cert(obj, &req) {
        return Decision::Fail("CSR is not a valid kubelet client certificate request".into());
    }
    let wanted = obj.pointer("/spec/expirationSeconds").and_then(Value::as_u64).map(Duration::from_secs);
    Decision::Sign(wanted.map_or(max, |w| w.min(max)))
}

struct Signer {
    client: kube::Client,
    inf: Arc<crate::informer::Informers>,
    queue: Arc<Queue>,
    signing: Signing,
}

pub(crate) fn start(ctx: &Ctx, signing: Signing, tasks: &mut Vec<JoinHandle<()>>) {
    let s = Arc::new(Signer {
        client: ctx.client.clone(),
        inf: ctx.inf.clone(),
        queue: Queue::new(metrics::register("csrsigning")),
        signing,
    });
    ctx.inf.csrs.on_change_weak(&s, |h, _old, new| {
        if let Some(c) = new {
            h.queue.add(Key::of(c));
        }
    });
    let period = ctx.config.resync_period;
    tasks.push(tokio::spawn(async move {
        s.inf.csrs.wait_ready().await;
        let k = s.clone();
        let keys = move || k.inf.csrs.list().iter().map(|c| Key::of(&**c)).collect();
        let w = s.clone();
        let sync = move |key: Key| {
            let w = w.clone();
            async move { w.sync(&key).await }
        };
        tokio::join!(run_workers(s.queue.clone(), 1, sync), resync(s.queue.clone(), period, keys));
    }));
}

impl Signer {
    async fn sync(&self, key: &Key) -> Result<(), SyncError> {
        let Some(c) = self.inf.csrs.get_key(key) else { return Ok(()) };
        let mut obj = serde_json::to_value(&*c).map_err(|e| SyncError::from(e.to_string()))?;
        match decide(&obj, self.signing.duration) {
            Decision::Skip => return Ok(()),
            Decision::Fail(why) => {
                let mut conds = obj["status"]["conditions"].as_array().cloned().unwrap_or_default();
                conds.push(
                    json!({"type": "Failed", "status": "True", "reason": "SignerValidationFailure", "message": why}),
                );
                obj["status"]["conditions"] = json!(conds);
            }
            Decision::Sign(valid_for) => {
                // Read the CA on every signing: it may be rotated on disk.
                let ca = pki::Ca::load(&self.signing.ca_dir).map_err(|e| SyncError::from(e.to_string()))?;
                let request = csr::request_bytes(&obj).unwrap_or_default();
                let pem = ca
                    .sign_client_request(&String::from_utf8_lossy(&request), valid_for)
                    .map_err(|e| SyncError::from(format!("signing {}: {e}", key.name)))?;
                obj["status"]["certificate"] = json!(base64::engine::general_purpose::STANDARD.encode(pem));
            }
        }
        let api: Api<CertificateSigningRequest> = Api::all(self.client.clone());
        let body: CertificateSigningRequest =
            serde_json::from_value(obj).map_err(|e| SyncError::from(e.to_string()))?;
        match api.replace_status(&key.name, &PostParams::default(), &body).await {
            Ok(_) => {
                tracing::info!(csr = %key.name, "signed certificate request");
                Ok(())
            }
            Err(e) if crate::util::is_not_found(&e) || crate::util::is_conflict(&e) => Ok(()),
            Err(e) => Err(e.into()),
        }
    }
}
