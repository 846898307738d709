//! Garbage collector: deletes dependents whose owners are gone, and carries
//! out foreground and orphan deletion (upstream
//! `pkg/controller/garbagecollector`). Level-triggered: after any change it
//! recomputes from the reflector stores of every kind.

use crate::kinds::{self, Kind};
use futures::StreamExt;
use kube::api::{Api, DeleteParams, DynamicObject, Patch, PatchParams, PropagationPolicy};
use kube::runtime::{reflector, watcher, WatchStreamExt};
use serde_json::json;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Notify;

struct Watched {
    kind: Kind,
    store: reflector::Store<DynamicObject>,
}

pub async fn run(client: kube::Client) {
    let changed = Arc::new(Notify::new());
    let mut watched = Vec::new();
    for kind in kinds::all() {
        let api: Api<DynamicObject> = Api::all_with(client.clone(), &kind.ar);
        let writer = reflector::store::Writer::new(kind.ar.clone());
        let reader = writer.as_reader();
        let notify = changed.clone();
        let stream = watcher(api, watcher::Config::default()).default_backoff().reflect(writer);
        tokio::spawn(async move {
            let mut stream = std::pin::pin!(stream);
            while let Some(ev) = stream.next().await {
                if let Err(e) = ev {
                    tracing::debug!(error = %e, "gc watch error");
                }
                notify.notify_one();
            }
        });
        watched.push(Watched { kind, store: reader });
    }
    for w in &watched {
        let _ = w.store.wait_until_ready().await;
    }
    loop {
        // Coalesce bursts of changes into one pass.
        tokio::select! {
            _ = changed.notified() => {}
            _ = tokio::time::sleep(Duration::from_secs(30)) => {}
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
        if let Err(e) = pass(&client, &watched).await {
            tracing::warn!(error = %e, "garbage collection pass failed");
        }
    }
}

struct Node {
    obj: Arc<DynamicObject>,
    kind_idx: usize,
}

fn api_for(client: &kube::Client, kind: &Kind, ns: Option<&str>) -> Api<DynamicObject> {
    match (kind.namespaced, ns) {
        (true, Some(ns)) => Api::namespaced_with(client.clone(), ns, &kind.ar),
        _ => Api::all_with(client.clone(), &kind.ar),
    }
}

/// Owner kinds resolved through discovery in one pass (`None`: not served).
type Resolved = HashMap<(String, String), Option<Kind>>;

async fn pass(client: &kube::Client, watched: &[Watched]) -> Result<(), kube::Error> {
    let mut resolved = Resolved::new();
    let mut by_uid: HashMap<String, Node> = HashMap::new();
    for (i, w) in watched.iter().enumerate() {
        for obj in w.store.state() {
            if let Some(uid) = obj.metadata.uid.clone() {
                by_uid.insert(uid, Node { obj, kind_idx: i });
            }
        }
    }
    // Dependents of each owner uid.
    let mut dependents: HashMap<String, Vec<&Node>> = HashMap::new();
    for node in by_uid.values() {
        for r in node.obj.metadata.owner_references.iter().flatten() {
            dependents.entry(r.uid.clone()).or_default().push(node);
        }
    }
    for node in by_uid.values() {
        let obj = &node.obj;
        let ns = obj.metadata.namespace.as_deref();
        let name = obj.metadata.name.clone().unwrap_or_default();
        let kind = &watched[node.kind_idx].kind;
        let refs = obj.metadata.owner_references.clone().unwrap_or_default();
        if refs.is_empty() {
            continue;
        }
        let mut live_owner = false;
        let mut orphaned_by: Vec<String> = Vec::new();
        let mut foreground = false;
        for r in &refs {
            match by_uid.get(&r.uid) {
                Some(owner) => {
                    let finalizers = owner.obj.metadata.finalizers.clone().unwrap_or_default();
                    let deleting = owner.obj.metadata.deletion_timestamp.is_some();
                    if deleting && finalizers.iter().any(|f| f == "orphan") {
                        orphaned_by.push(r.uid.clone());
                    } else if deleting && finalizers.iter().any(|f| f == "foregroundDeletion") {
                        foreground = true;
                    } else {
                        live_owner = true;
                    }
                }
                None => {
                    // Not in our cache: ask the API server before acting.
                    if owner_exists(client, watched, &mut resolved, r, ns).await? {
                        live_owner = true;
                    }
                }
            }
        }
        let api = api_for(client, kind, ns);
        if !orphaned_by.is_empty() {
            let keep: Vec<_> = refs.iter().filter(|r| !orphaned_by.contains(&r.uid)).cloned().collect();
            // `null` removes the field: an empty list would still be stored.
            let refs = if keep.is_empty() { serde_json::Value::Null } else { json!(keep) };
            let patch = json!({ "metadata": { "ownerReferences": refs, "uid": obj.metadata.uid } });
            ignore_missing(api.patch(&name, &PatchParams::default(), &Patch::Merge(&patch)).await.map(|_| ()))?;
            continue;
        }
        if live_owner || obj.metadata.deletion_timestamp.is_some() {
            continue;
        }
        let policy = if foreground { PropagationPolicy::Foreground } else { PropagationPolicy::Background };
        let dp = DeleteParams {
            propagation_policy: Some(policy),
            preconditions: obj
                .metadata
                .uid
                .clone()
                .map(|uid| kube::api::Preconditions { uid: Some(uid), resource_version: None }),
            ..Default::default()
        };
        tracing::info!(kind = %kind.ar.kind, namespace = ?ns, %name, "deleting dependent whose owners are gone");
        ignore_missing(api.delete(&name, &dp).await.map(|_| ()))?;
    }
    // Owners waiting for their dependents.
    for (uid, node) in &by_uid {
        let obj = &node.obj;
        if obj.metadata.deletion_timestamp.is_none() {
            continue;
        }
        let finalizers = obj.metadata.finalizers.clone().unwrap_or_default();
        let waiting = dependents.get(uid).map(|d| !d.is_empty()).unwrap_or(false);
        let mut remove = Vec::new();
        if finalizers.iter().any(|f| f == "orphan") && !waiting {
            remove.push("orphan");
        }
        if finalizers.iter().any(|f| f == "foregroundDeletion") && !waiting {
            remove.push("foregroundDeletion");
        }
        if remove.is_empty() {
            continue;
        }
        let keep: Vec<&String> = finalizers.iter().filter(|f| !remove.contains(&f.as_str())).collect();
        let kind = &watched[node.kind_idx].kind;
        let api = api_for(client, kind, obj.metadata.namespace.as_deref());
        let patch = json!({ "metadata": { "finalizers": keep, "resourceVersion": obj.metadata.resource_version } });
        let name = obj.metadata.name.clone().unwrap_or_default();
        match api.patch(&name, &PatchParams::default(), &Patch::Merge(&patch)).await {
            Ok(_) => {}
            Err(kube::Error::Api(e)) if e.code == 404 || e.code == 409 => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

async fn owner_exists(
    client: &kube::Client,
    watched: &[Watched],
    resolved: &mut Resolved,
    r: &k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference,
    ns: Option<&str>,
) -> Result<bool, kube::Error> {
    let api = match watched.iter().find(|w| w.kind.ar.api_version == r.api_version && w.kind.ar.kind == r.kind) {
        Some(w) => api_for(client, &w.kind, ns),
        None => {
            // Another kind (a custom resource, say): resolve it through discovery.
            // A kind discovery cannot resolve leaves the dependent alone, as
            // upstream's collector does with REST-mapping errors
            // (`pkg/controller/garbagecollector/garbagecollector.go` `isDangling`).
            let (group, version) = match r.api_version.split_once('/') {
                Some((g, v)) => (g, v),
                None => ("", r.api_version.as_str()),
            };
            let key = (r.api_version.clone(), r.kind.clone());
            if !resolved.contains_key(&key) {
                let gvk = kube::api::GroupVersionKind::gvk(group, version, &r.kind);
                let kind = match kube::discovery::pinned_kind(client, &gvk).await {
                    Ok((ar, caps)) => Some(Kind { ar, namespaced: caps.scope == kube::discovery::Scope::Namespaced }),
                    Err(e) => {
                        tracing::debug!(kind = %r.kind, api_version = %r.api_version, error = %e, "owner kind not resolvable; keeping its dependents");
                        None
                    }
                };
                resolved.insert(key.clone(), kind);
            }
            match resolved.get(&key).and_then(Option::as_ref) {
                Some(kind) => api_for(client, kind, ns),
                None => return Ok(true),
            }
        }
    };
    match api.get_opt(&r.name).await? {
        Some(o) => Ok(o.metadata.uid.as_deref() == Some(r.uid.as_str())),
        None => Ok(false),
    }
}

fn ignore_missing(r: Result<(), kube::Error>) -> Result<(), kube::Error> {
    match r {
        Err(kube::Error::Api(e)) if e.code == 404 || e.code == 409 => Ok(()),
        other => other,
    }
}
