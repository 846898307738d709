//! Pod ownership shared by the DaemonSet and Job controllers (upstream
//! `PodControllerRefManager.ClaimPods` in `pkg/controller/controller_ref_manager.go`):
//! keep the pods whose controller reference is the owner and that it selects,
//! adopt matching orphans (after a fresh read shows the owner is not being
//! deleted) and release owned pods it no longer selects.

use crate::informer::Key;
use crate::{util, SyncError};
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, OwnerReference};
use k8s_openapi::NamespaceResourceScope;
use kube::api::Api;
use kube::Resource;
use serde::de::DeserializeOwned;
use serde_json::json;
use std::fmt::Debug;
use std::sync::Arc;

/// `ClaimPods` of `owner` (`api_version`/`kind`) over `pods` (one namespace).
pub async fn claim_pods<K>(
    client: &kube::Client,
    owner: &K,
    api_version: &str,
    kind: &str,
    selector: &LabelSelector,
    pods: Vec<Arc<Pod>>,
) -> Result<Vec<Arc<Pod>>, SyncError>
where
    K: Resource<DynamicType = (), Scope = NamespaceResourceScope> + Clone + DeserializeOwned + Debug,
{
    let meta = owner.meta();
    let uid = meta.uid.clone().unwrap_or_default();
    let deleting = meta.deletion_timestamp.is_some();
    let mut claimed = Vec::new();
    let mut errors: Vec<SyncError> = Vec::new();
    let mut can_adopt: Option<Result<(), String>> = None;
    for pod in pods {
        let matches = util::selector_matches(selector, pod.metadata.labels.as_ref());
        match util::controller_of(&pod.metadata) {
            Some(r) if r.uid != uid => {}
            Some(_) => {
                if matches {
                    claimed.push(pod);
                } else if !deleting {
                    let refs: Vec<OwnerReference> =
                        pod.metadata.owner_references.iter().flatten().filter(|r| r.uid != uid).cloned().collect();
                    let refs = if refs.is_empty() { serde_json::Value::Null } else { json!(refs) };
                    match util::patch_owner_refs(client, &*pod, refs).await {
                        Ok(_) => {}
                        Err(e) if util::is_not_found(&e) => {}
                        Err(e) => errors.push(e.into()),
                    }
                }
            }
            None => {
                if deleting || !matches || pod.metadata.deletion_timestamp.is_some() {
                    continue;
                }
                if can_adopt.is_none() {
                    can_adopt = Some(recheck_deletion(client, owner, kind).await);
                }
                if let Some(Err(e)) = &can_adopt {
                    errors.push(SyncError::from(format!("can't adopt Pod {}: {e}", Key::of(&*pod))));
                    continue;
                }
                let mut refs = pod.metadata.owner_references.clone().unwrap_or_default();
                refs.push(util::new_controller_ref(meta, api_version, kind));
                match util::patch_owner_refs(client, &*pod, json!(refs)).await {
                    Ok(p) => claimed.push(Arc::new(p)),
                    Err(e) if util::is_not_found(&e) => {}
                    Err(e) => errors.push(e.into()),
                }
            }
        }
    }
    match errors.into_iter().next() {
        Some(e) => Err(e),
        None => Ok(claimed),
    }
}

/// `RecheckDeletionTimestamp`: a fresh read before adopting.
async fn recheck_deletion<K>(client: &kube::Client, owner: &K, kind: &str) -> Result<(), String>
where
    K: Resource<DynamicType = (), Scope = NamespaceResourceScope> + Clone + DeserializeOwned + Debug,
{
    let key = Key::of(owner);
    let api: Api<K> = Api::namespaced(client.clone(), &key.namespace);
    let fresh = api.get(&key.name).await.map_err(|e| e.to_string())?;
    if fresh.meta().uid != owner.meta().uid {
        return Err(format!(
            "original {kind} {key} is gone: got uid {}, wanted {}",
            fresh.meta().uid.clone().unwrap_or_default(),
            owner.meta().uid.clone().unwrap_or_default()
        ));
    }
    if fresh.meta().deletion_timestamp.is_some() {
        return Err(format!("{kind} {key} has just been deleted"));
    }
    Ok(())
}
