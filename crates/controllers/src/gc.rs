//! Garbage collector: deletes dependents whose owners are gone, and carries
//! out foreground and orphan deletion (upstream
//! `pkg/controller/garbagecollector`). Level-triggered: after any change it
//! recomputes from the reflector stores of every kind.

use crate::informer::{kind_key, HasMeta, Informers, MetaView};
use crate::kinds::{self, Kind};
use crate::{AbortOnDrop, Ctx};
use kube::api::{Api, DeleteParams, DynamicObject, Patch, PatchParams, PropagationPolicy};
use serde_json::json;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Notify;
use tokio::task::JoinHandle;

/// One kind in the graph: what the shared informers hold of it.
struct Watched {
    kind: Kind,
    view: Arc<dyn MetaView>,
}

/// A custom kind followed while its CRD exists; the metadata informer's
/// task, when the collector made it, stops with it.
struct CustomKind {
    watched: Watched,
    /// Held for its `Drop`: the watch stops when the kind is dropped.
    _task: Option<AbortOnDrop>,
}

/// The built-in kinds come from the shared informers (typed ones where a
/// controller already watches the kind, metadata-only ones otherwise); the
/// custom kinds follow the CRDs, as upstream's collector resyncs its monitors
/// from discovery (`garbagecollector.go` `resyncMonitors`).
pub(crate) fn start(ctx: &Ctx, tasks: &mut Vec<JoinHandle<()>>) {
    let changed = Arc::new(Notify::new());
    let mut builtin = Vec::new();
    for kind in kinds::all() {
        let (view, task) = ctx.inf.meta_view(&kind.ar);
        tasks.extend(task);
        let n = changed.clone();
        view.on_any_change(Arc::new(move || n.notify_one()));
        builtin.push(Watched { kind, view });
    }
    let n = changed.clone();
    ctx.inf.crds.on_change(move |_, _| n.notify_one());
    tasks.push(tokio::spawn(run(ctx.client.clone(), ctx.inf.clone(), builtin, changed)));
}

async fn run(client: kube::Client, inf: Arc<Informers>, builtin: Vec<Watched>, changed: Arc<Notify>) {
    for w in &builtin {
        let _ = w.view.ready().wait_for(|r| *r).await;
    }
    inf.crds.wait_ready().await;
    let mut custom: HashMap<String, CustomKind> = HashMap::new();
    loop {
        follow_custom_kinds(&inf, &mut custom, &changed);
        // Kinds whose first listing is not in yet stay out of this pass: their
        // objects would look absent.
        let watched: Vec<&Watched> =
            builtin.iter().chain(custom.values().map(|c| &c.watched).filter(|w| *w.view.ready().borrow())).collect();
        if let Err(e) = pass(&client, &watched).await {
            tracing::warn!(error = %e, "garbage collection pass failed");
        }
        // Coalesce bursts of changes into one pass.
        tokio::select! {
            _ = changed.notified() => {}
            _ = tokio::time::sleep(Duration::from_secs(30)) => {}
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Start following the kinds of new CRDs and stop following deleted ones.
fn follow_custom_kinds(inf: &Informers, custom: &mut HashMap<String, CustomKind>, changed: &Arc<Notify>) {
    let wanted: HashMap<String, Kind> =
        inf.crds.list().iter().filter_map(|crd| kinds::of_crd(crd)).map(|k| (kind_key(&k.ar), k)).collect();
    custom.retain(|key, c| {
        let keep = wanted.contains_key(key);
        if !keep {
            inf.drop_metadata(&c.watched.kind.ar);
        }
        keep
    });
    for (key, kind) in wanted {
        if custom.contains_key(&key) {
            continue;
        }
        let (view, task) = inf.metadata(&kind.ar);
        let n = changed.clone();
        view.on_any_change(Arc::new(move || n.notify_one()));
        // Wake a pass once the first listing is in.
        let mut ready = view.ready();
        let n = changed.clone();
        tokio::spawn(async move {
            if ready.wait_for(|r| *r).await.is_ok() {
                n.notify_one();
            }
        });
        custom.insert(key, CustomKind { watched: Watched { kind, view }, _task: task.map(|t| AbortOnDrop(vec![t])) });
    }
}

struct Node {
    obj: Arc<dyn HasMeta>,
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

async fn pass(client: &kube::Client, watched: &[&Watched]) -> Result<(), kube::Error> {
    let mut resolved = Resolved::new();
    let mut by_uid: HashMap<String, Node> = HashMap::new();
    for (i, w) in watched.iter().enumerate() {
        for obj in w.view.metas() {
            if let Some(uid) = obj.object_meta().uid.clone() {
                by_uid.insert(uid, Node { obj, kind_idx: i });
            }
        }
    }
    // Dependents of each owner uid.
    let mut dependents: HashMap<String, Vec<&Node>> = HashMap::new();
    for node in by_uid.values() {
        for r in node.obj.object_meta().owner_references.iter().flatten() {
            dependents.entry(r.uid.clone()).or_default().push(node);
        }
    }
    for node in by_uid.values() {
        let obj = &node.obj;
        let ns = obj.object_meta().namespace.as_deref();
        let name = obj.object_meta().name.clone().unwrap_or_default();
        let kind = &watched[node.kind_idx].kind;
        let refs = obj.object_meta().owner_references.clone().unwrap_or_default();
        if refs.is_empty() {
            continue;
        }
        let mut live_owner = false;
        let mut orphaned_by: Vec<String> = Vec::new();
        let mut foreground = false;
        for r in &refs {
            match by_uid.get(&r.uid) {
                Some(owner) => {
                    let finalizers = owner.obj.object_meta().finalizers.clone().unwrap_or_default();
                    let deleting = owner.obj.object_meta().deletion_timestamp.is_some();
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
            let patch = json!({ "metadata": { "ownerReferences": refs, "uid": obj.object_meta().uid } });
            ignore_missing(api.patch(&name, &PatchParams::default(), &Patch::Merge(&patch)).await.map(|_| ()))?;
            continue;
        }
        if live_owner || obj.object_meta().deletion_timestamp.is_some() {
            continue;
        }
        let policy = if foreground { PropagationPolicy::Foreground } else { PropagationPolicy::Background };
        let dp = DeleteParams {
            propagation_policy: Some(policy),
            preconditions: obj
                .object_meta()
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
        if obj.object_meta().deletion_timestamp.is_none() {
            continue;
        }
        let finalizers = obj.object_meta().finalizers.clone().unwrap_or_default();
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
        let api = api_for(client, kind, obj.object_meta().namespace.as_deref());
        let patch =
            json!({ "metadata": { "finalizers": keep, "resourceVersion": obj.object_meta().resource_version } });
        let name = obj.object_meta().name.clone().unwrap_or_default();
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
    watched: &[&Watched],
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
