//! ControllerRevisions: the template history of a DaemonSet (and, later, a
//! StatefulSet), so `kubectl rollout history` lists revisions and `kubectl
//! rollout undo` restores one. Upstream: `pkg/controller/history` and
//! `pkg/controller/daemon/update.go` (`constructHistory`, `cleanupHistory`,
//! `getPatch`).

use k8s_openapi::api::apps::v1::ControllerRevision;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use k8s_openapi::apimachinery::pkg::runtime::RawExtension;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use serde_json::{json, Value};
use std::collections::BTreeMap;

/// `getPatch`: the strategic merge patch that restores `spec.template`.
pub fn template_patch(template: &Value) -> Value {
    let mut t = template.clone();
    if let Some(m) = t.as_object_mut() {
        m.insert("$patch".into(), json!("replace"));
    }
    json!({ "spec": { "template": t } })
}

/// The owner's revisions (controlled by `owner_uid`), oldest first.
pub async fn owned(api: &Api<ControllerRevision>, owner_uid: &str) -> Result<Vec<ControllerRevision>, kube::Error> {
    let mut revs: Vec<ControllerRevision> = api
        .list(&ListParams::default())
        .await?
        .items
        .into_iter()
        .filter(|r| {
            r.metadata.owner_references.iter().flatten().any(|o| o.uid == owner_uid && o.controller == Some(true))
        })
        .collect();
    revs.sort_by_key(|r| r.revision);
    Ok(revs)
}

/// What the current revision is made from.
pub struct Current<'a> {
    pub owner: OwnerReference,
    /// `<owner>-<hash>`.
    pub name: String,
    pub hash: &'a str,
    pub labels: BTreeMap<String, String>,
    /// `kubernetes.io/change-cause` of the owner, copied as kubectl expects.
    pub change_cause: Option<String>,
    pub data: Value,
    pub history_limit: usize,
}

/// Make sure the current template has the newest revision (creating it, or
/// renumbering an old one the template went back to), then delete the
/// oldest revisions beyond the history limit. Returns the current revision number.
pub async fn sync(api: &Api<ControllerRevision>, cur: Current<'_>, in_use: &[String]) -> Result<i64, kube::Error> {
    let revs = owned(api, &cur.owner.uid).await?;
    let max = revs.iter().map(|r| r.revision).max().unwrap_or(0);
    let existing = revs.iter().find(|r| r.metadata.name.as_deref() == Some(cur.name.as_str()));
    let number = match existing {
        Some(r) if r.revision == max => max,
        Some(_) => {
            // Back to an older template: it becomes the newest revision.
            let patch = json!({ "revision": max + 1 });
            api.patch(&cur.name, &PatchParams::default(), &Patch::Merge(&patch)).await?;
            max + 1
        }
        None => {
            let mut annotations = BTreeMap::new();
            if let Some(c) = &cur.change_cause {
                annotations.insert("kubernetes.io/change-cause".to_string(), c.clone());
            }
            let mut labels = cur.labels.clone();
            labels.insert(crate::daemonset::HASH_LABEL.to_string(), cur.hash.to_string());
            let rev = ControllerRevision {
                metadata: ObjectMeta {
                    name: Some(cur.name.clone()),
                    labels: Some(labels),
                    annotations: (!annotations.is_empty()).then_some(annotations),
                    owner_references: Some(vec![cur.owner.clone()]),
                    ..Default::default()
                },
                data: Some(RawExtension(cur.data.clone())),
                revision: max + 1,
            };
            match api.create(&PostParams::default(), &rev).await {
                Ok(_) => {}
                Err(kube::Error::Api(e)) if e.code == 409 => {}
                Err(e) => return Err(e),
            }
            max + 1
        }
    };
    // `cleanupHistory`: keep the current revision and those live pods use.
    let old: Vec<&ControllerRevision> = revs
        .iter()
        .filter(|r| r.metadata.name.as_deref() != Some(cur.name.as_str()))
        .filter(|r| {
            let hash = r.metadata.labels.as_ref().and_then(|l| l.get(crate::daemonset::HASH_LABEL));
            !hash.is_some_and(|h| in_use.contains(h))
        })
        .collect();
    if old.len() > cur.history_limit {
        for r in &old[..old.len() - cur.history_limit] {
            if let Some(n) = &r.metadata.name {
                match api.delete(n, &DeleteParams::default()).await {
                    Ok(_) => {}
                    Err(kube::Error::Api(e)) if e.code == 404 => {}
                    Err(e) => return Err(e),
                }
            }
        }
    }
    Ok(number)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_patch_replaces_the_template() {
        let p = template_patch(&json!({"metadata": {"labels": {"a": "b"}}, "spec": {"containers": []}}));
        assert_eq!(p["spec"]["template"]["$patch"], "replace");
        assert_eq!(p["spec"]["template"]["metadata"]["labels"]["a"], "b");
    }
}
