//! StatefulSet revisions (upstream `pkg/controller/history/controller_history.go`
//! and `stateful_set_utils.go` `getPatch`, `newRevision`, `ApplyRevision`): each
//! template is a ControllerRevision named `<set>-<hash>` whose data is the
//! strategic merge patch that restores `spec.template`; pods carry the revision
//! name in `controller-revision-hash`.

use k8s_openapi::api::apps::v1::ControllerRevision;
use k8s_openapi::api::core::v1::PodTemplateSpec;
use serde_json::{json, Value};

/// `getPatch`: `{"spec": {"template": {..., "$patch": "replace"}}}`.
pub(crate) fn template_patch(template: &PodTemplateSpec) -> Value {
    let mut t = serde_json::to_value(template).unwrap_or_else(|_| json!({}));
    if let Some(m) = t.as_object_mut() {
        m.insert("$patch".into(), json!("replace"));
    }
    json!({ "spec": { "template": t } })
}

/// Go's `hash/fnv.New32` (FNV-1, not FNV-1a).
fn fnv32(chunks: &[&[u8]]) -> u32 {
    let mut h: u32 = 0x811c_9dc5;
    for chunk in chunks {
        for b in *chunk {
            h = h.wrapping_mul(0x0100_0193);
            h ^= u32::from(*b);
        }
    }
    h
}

/// `HashControllerRevision`: the data and the collision count as a probe.
pub(crate) fn hash(data: &Value, collision_count: i32) -> String {
    let raw = serde_json::to_vec(data).unwrap_or_default();
    let probe = collision_count.to_string();
    crate::util::safe_encode(&fnv32(&[&raw, probe.as_bytes()]).to_string())
}

/// `ControllerRevisionName`.
pub(crate) fn name(set: &str, hash: &str) -> String {
    let prefix: String = set.chars().take(223).collect();
    format!("{prefix}-{hash}")
}

/// `ApplyRevision`: the pod template a revision restores.
pub(crate) fn template_of(rev: &ControllerRevision) -> Option<PodTemplateSpec> {
    let mut t = rev.data.as_ref()?.0.pointer("/spec/template")?.clone();
    if let Some(m) = t.as_object_mut() {
        m.remove("$patch");
    }
    serde_json::from_value(t).ok()
}

/// Whether a revision holds `data` (`history.EqualRevision`).
pub(crate) fn holds(rev: &ControllerRevision, data: &Value) -> bool {
    rev.data.as_ref().is_some_and(|d| &d.0 == data)
}

/// `SortControllerRevisions`: by revision number, then name.
pub(crate) fn sort(revs: &mut [ControllerRevision]) {
    revs.sort_by(|a, b| a.revision.cmp(&b.revision).then_with(|| a.metadata.name.cmp(&b.metadata.name)));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fnv1_matches_go() {
        // The FNV-1 test vector: "a" = 0x050c5d7e (FNV-1a gives 0xe40c292c).
        assert_eq!(fnv32(&[b"a"]), 0x050c_5d7e);
        assert_eq!(fnv32(&[b"hel", b"lo"]), fnv32(&[b"hello"]));
    }

    #[test]
    fn patch_name_and_template_round_trip() {
        let t: PodTemplateSpec = serde_json::from_value(json!({"metadata": {"labels": {"app": "web"}},
            "spec": {"containers": [{"name": "c", "image": "pause"}]}}))
        .unwrap();
        let patch = template_patch(&t);
        assert_eq!(patch["spec"]["template"]["$patch"], json!("replace"));
        let h = hash(&patch, 0);
        assert_ne!(h, hash(&patch, 1), "the collision count changes the hash");
        assert_eq!(name("web", &h), format!("web-{h}"));
        let rev = ControllerRevision {
            data: Some(k8s_openapi::apimachinery::pkg::runtime::RawExtension(patch.clone())),
            revision: 1,
            ..Default::default()
        };
        assert!(holds(&rev, &patch));
        assert_eq!(template_of(&rev), Some(t));
    }
}
