//! Namespace lifecycle: a namespace being deleted has its content deleted,
//! then its `kubernetes` finalizer removed through `/finalize`, which lets the
//! API server remove it (upstream `pkg/controller/namespace/deletion`).

use crate::kinds;
use futures::StreamExt;
use k8s_openapi::api::core::v1::Namespace;
use kube::api::{Api, DeleteParams, DynamicObject, ListParams, PostParams};
use kube::runtime::{reflector, watcher, WatchStreamExt};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Notify;

const FINALIZER: &str = "kubernetes";

pub async fn run(client: kube::Client) {
    let api: Api<Namespace> = Api::all(client.clone());
    let (reader, writer) = reflector::store();
    let changed = Arc::new(Notify::new());
    let notify = changed.clone();
    tokio::spawn(async move {
        let stream = watcher(api, watcher::Config::default()).default_backoff().reflect(writer);
        let mut stream = std::pin::pin!(stream);
        while stream.next().await.is_some() {
            notify.notify_one();
        }
    });
    let _ = reader.wait_until_ready().await;
    loop {
        let mut pending = false;
        for ns in reader.state().iter().filter(|n| n.metadata.deletion_timestamp.is_some()) {
            match finalize(&client, ns).await {
                Ok(done) => pending |= !done,
                Err(e) => {
                    pending = true;
                    tracing::warn!(namespace = ?ns.metadata.name, error = %e, "namespace cleanup failed");
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
async fn finalize(client: &kube::Client, ns: &Namespace) -> Result<bool, kube::Error> {
    let name = ns.metadata.name.clone().unwrap_or_default();
    let finalizers = ns.spec.as_ref().and_then(|s| s.finalizers.clone()).unwrap_or_default();
    if !finalizers.iter().any(|f| f == FINALIZER) {
        return Ok(true);
    }
    let mut remaining = 0;
    for kind in kinds::all().into_iter().filter(|k| k.namespaced) {
        let api: Api<DynamicObject> = Api::namespaced_with(client.clone(), &name, &kind.ar);
        let objs = api.list(&ListParams::default()).await?;
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
