//! `csrapproving` (`pkg/controller/certificates/approver/sarapprove.go`):
//! a `kubernetes.io/kube-apiserver-client-kubelet` request for a node client
//! certificate is approved when its requester is a bootstrapper
//! (`nodeclient`) or the very node it names, renewing (`selfnodeclient`).
//! Upstream asks a SubjectAccessReview for `certificatesigningrequests/nodeclient`;
//! until RBAC lands the same question is answered from the requester's groups.

use crate::informer::Key;
use crate::queue::{resync, run_workers, Queue};
use crate::{metrics, Ctx, SyncError};
use apimachinery::certificates::{self as csr, KUBELET_CLIENT_SIGNER};
use k8s_openapi::api::certificates::v1::CertificateSigningRequest;
use kube::api::{Api, PostParams};
use serde_json::{json, Value};
use std::sync::Arc;
use tokio::task::JoinHandle;

const REASON: &str = "AutoApproved";
const MESSAGE: &str = "Auto approving kubelet client certificate after SubjectAccessReview.";

/// What the approver does with a request.
#[derive(Debug, PartialEq, Eq)]
pub enum Verdict {
    Approve,
    /// Denied, with the reason and message of the `Denied` condition.
    Deny(&'static str, String),
    /// Not ours to decide (another signer, not a node request, decided already).
    Leave,
}

/// What to do with `obj` (a CSR's JSON). `ready_node(name)` says whether a
/// Node of that name exists and is Ready: a bootstrapper may not take over the
/// name of a live node (k3s refuses such joins too), while a node whose machine
/// is gone may be joined again under its name.
pub fn verdict(obj: &Value, ready_node: impl Fn(&str) -> bool) -> Verdict {
    if csr::has_condition(obj, "Approved") || csr::has_condition(obj, "Denied") {
        return Verdict::Leave;
    }
    if obj.pointer("/spec/signerName").and_then(Value::as_str) != Some(KUBELET_CLIENT_SIGNER) {
        return Verdict::Leave;
    }
    let Some(req) = csr::request_bytes(obj).and_then(|b| csr::parse_request(&b).ok()) else { return Verdict::Leave };
    if !csr::is_node_client_cert(obj, &req) {
        return Verdict::Leave;
    }
    let username = obj.pointer("/spec/username").and_then(Value::as_str).unwrap_or_default();
    let groups: Vec<&str> =
        obj.pointer("/spec/groups").and_then(Value::as_array).into_iter().flatten().filter_map(Value::as_str).collect();
    // nodeclient: a bootstrapper asks for some node's first certificate.
    let nodeclient = groups.contains(&"system:bootstrappers") || groups.contains(&"system:masters");
    // selfnodeclient: a node renews its own.
    let selfnodeclient = groups.contains(&"system:nodes") && username == req.common_name;
    if selfnodeclient {
        return Verdict::Approve;
    }
    if !nodeclient {
        return Verdict::Leave;
    }
    let node = req.common_name.trim_start_matches("system:node:");
    if ready_node(node) {
        return Verdict::Deny(
            "NodeNameInUse",
            format!(
                "node {node:?} already exists and is Ready: another machine runs under this name \
                 (choose another --node-name, or stop that node first)"
            ),
        );
    }
    Verdict::Approve
}

struct Approver {
    client: kube::Client,
    inf: Arc<crate::informer::Informers>,
    queue: Arc<Queue>,
}

pub(crate) fn start(ctx: &Ctx, tasks: &mut Vec<JoinHandle<()>>) {
    let a = Arc::new(Approver {
        client: ctx.client.clone(),
        inf: ctx.inf.clone(),
        queue: Queue::new(metrics::register("csrapproving")),
    });
    ctx.inf.csrs.on_change_weak(&a, |h, _old, new| {
        if let Some(c) = new {
            h.queue.add(Key::of(c));
        }
    });
    let period = ctx.config.resync_period;
    tasks.push(tokio::spawn(async move {
        a.inf.csrs.wait_ready().await;
        let k = a.clone();
        let keys = move || k.inf.csrs.list().iter().map(|c| Key::of(&**c)).collect();
        let s = a.clone();
        let sync = move |key: Key| {
            let s = s.clone();
            async move { s.sync(&key).await }
        };
        tokio::join!(run_workers(a.queue.clone(), 1, sync), resync(a.queue.clone(), period, keys));
    }));
}

impl Approver {
    async fn sync(&self, key: &Key) -> Result<(), SyncError> {
        let Some(c) = self.inf.csrs.get_key(key) else { return Ok(()) };
        let obj = serde_json::to_value(&*c).map_err(|e| SyncError::from(e.to_string()))?;
        let ready_node = |name: &str| {
            self.inf.nodes.get("", name).is_some_and(|n| crate::nodelifecycle::health::ready_status(&n) == Some("True"))
        };
        let condition = match verdict(&obj, ready_node) {
            Verdict::Leave => return Ok(()),
            Verdict::Approve => json!({"type": "Approved", "status": "True", "reason": REASON, "message": MESSAGE}),
            Verdict::Deny(reason, message) => {
                tracing::warn!(csr = %key.name, %message, "denied node client certificate request");
                json!({"type": "Denied", "status": "True", "reason": reason, "message": message})
            }
        };
        let mut approved = obj.clone();
        let mut conds = approved["status"]["conditions"].as_array().cloned().unwrap_or_default();
        conds.push(condition);
        approved["status"]["conditions"] = json!(conds);
        let api: Api<CertificateSigningRequest> = Api::all(self.client.clone());
        let body: CertificateSigningRequest =
            serde_json::from_value(approved).map_err(|e| SyncError::from(e.to_string()))?;
        match api.replace_subresource("approval", &key.name, &PostParams::default(), &body).await {
            Ok(_) => {
                tracing::info!(csr = %key.name, "decided node client certificate request");
                Ok(())
            }
            Err(e) if crate::util::is_not_found(&e) || crate::util::is_conflict(&e) => Ok(()),
            Err(e) => Err(e.into()),
        }
    }
}
