//! Namespace lifecycle: a namespace being deleted has its content deleted,
//! then its `kubernetes` finalizer removed through `/finalize`, which lets the
//! API server remove it (upstream `pkg/controller/namespace/deletion`).

use crate::informer::Informers;
use crate::kinds::{self, Kind};
use crate::Ctx;
use k8s_openapi::api::core::v1::Namespace;
use kube::api::{Api, DeleteParams, DynamicObject, ListParams, PostParams};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Notify;
use tokio::task::JoinHandle;

const FINALIZER: &str = "kubernetes";

/// Reads namespaces from the shared informer; the content to delete is every
/// namespaced built-in kind and every namespaced custom kind (upstream finds
/// them through discovery).
pub(crate) fn start(ctx: &Ctx, tasks: &mut Vec<JoinHandle<()>>) {
    let changed = Arc::new(Notify::new());
    let n = changed.clone();
    ctx.inf.namespaces.on_change(move |_, new| {
        if new.is_some_and(|ns| ns.metadata.deletion_timestamp.is_some()) {
            n.notify_one();
        }
    });
    tasks.push(tokio::spawn(run(ctx.client.clone(), ctx.inf.clone(), changed)));
}

async fn run(client: kube::Client, inf: Arc<Informers>, changed: Arc<Notify>) {
    inf.namespaces.wait_ready().await;
    inf.crds.wait_ready().await;
    loop {
        let mut pending = false;
        let deleting: Vec<_> =
            inf.namespaces.list().into_iter().filter(|n| n.metadata.deletion_timestamp.is_some()).collect();
        if !deleting.is_empty() {
            let mut kinds: Vec<Kind> = kinds::all().into_iter().filter(|k| k.namespaced).collect();
            kinds.extend(inf.crds.list().iter().filter_map(|c| kinds::of_crd(c)).filter(|k| k.namespaced));
            for ns in &deleting {
                match finalize(&client, ns, &kinds).await {
                    Ok(done) => pending |= !done,
                    Err(e) => {
                        pending = true;
                        tracing::warn!(namespace = ?ns.metadata.name, error = %e, "namespace cleanup failed");
                    }
                }
            }
        }
        // Content still going away: look again soon; otherwise wait for a change.
        let wait = if pending { Duration::from_millis(500) } else { Duration::from_secs(60) };
        tokio::select! {
            _ = changed.notified() => {}
            _ = tokio::time::sleep(wait) => {}
        }
    }
}

/// Delete what is left in `ns`; once it is empty, drop the finalizer. Returns
/// whether the namespace is done.
async fn finalize(client: &kube::Client, ns: &Namespace, kinds: &[Kind]) -> Result<bool, kube::Error> {
    let name = ns.metadata.name.clone().unwrap_or_default();
    let finalizers = ns.spec.as_ref().and_then(|s| s.finalizers.clone()).unwrap_or_default();
    if !finalizers.iter().any(|f| f == FINALIZER) {
        return Ok(true);
    }
    let mut remaining = 0;
    for kind in kinds {
        let api: Api<DynamicObject> = Api::namespaced_with(client.clone(), &name, &kind.ar);
        let objs = match api.list(&ListParams::default()).await {
            Ok(l) => l,
            // A custom kind whose CRD went meanwhile has nothing left to delete.
            Err(kube::Error::Api(e)) if e.code == 404 => continue,
            Err(e) => return Err(e),
        };
        for o in objs.items {
            remaining += 1;
            if o.metadata.deletion_timestamp.is_none() {
                let oname = o.metadata.name.unwrap_or_default();
                match api.delete(&oname, &DeleteParams::background()).await {
                    Ok(_) => {}
                    Err(kube::Error::Api(e)) if e.code == 404 || e.code == 409 => {}
                    Err(e) => return Err(e),
                }
            }
        }
    }
    if remaining > 0 {
        return Ok(false);
    }
    let mut done = ns.clone();
    if let Some(spec) = done.spec.as_mut() {
        spec.finalizers = Some(finalizers.into_iter().filter(|f| f != FINALIZER).collect());
    }
    let api: Api<Namespace> = Api::all(client.clone());
    match api.replace_subresource("finalize", &name, &PostParams::default(), &done).await {
        Ok(_) => Ok(true),
        Err(kube::Error::Api(e)) if e.code == 404 || e.code == 409 => Ok(false),
        Err(e) => Err(e),
    }
}
