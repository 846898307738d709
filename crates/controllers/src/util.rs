//! Helpers shared by the controllers: time, pod state (upstream
//! `pkg/api/v1/pod/util.go`, `pkg/controller/controller_utils.go`), label
//! selectors (`apimachinery/pkg/labels`), controller references.

use k8s_openapi::api::core::v1::{Pod, PodCondition};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta, OwnerReference, Time};
use k8s_openapi::jiff::{SignedDuration, Timestamp};
use std::collections::BTreeMap;

/// Now, at the one-second precision API times are stored with (so that a
/// status computed now compares equal to the same status read back).
pub fn now() -> Time {
    let t = Timestamp::now();
    Time(Timestamp::from_second(t.as_second()).unwrap_or(t))
}

/// Seconds from `t` to now (negative if `t` is in the future).
pub fn since(t: &Time) -> SignedDuration {
    Timestamp::now().duration_since(t.0)
}

// ---- pods ----

pub fn pod_phase(pod: &Pod) -> &str {
    pod.status.as_ref().and_then(|s| s.phase.as_deref()).unwrap_or_default()
}

pub fn node_name(pod: &Pod) -> &str {
    pod.spec.as_ref().and_then(|s| s.node_name.as_deref()).unwrap_or_default()
}

pub fn ready_condition(pod: &Pod) -> Option<&PodCondition> {
    pod.status.as_ref()?.conditions.as_ref()?.iter().find(|c| c.type_ == "Ready")
}

/// `IsPodReady`: the Ready condition is True.
pub fn is_pod_ready(pod: &Pod) -> bool {
    ready_condition(pod).is_some_and(|c| c.status == "True")
}

/// `IsPodAvailable`: ready for at least `min_ready_seconds`.
pub fn is_pod_available(pod: &Pod, min_ready_seconds: i32) -> bool {
    if !is_pod_ready(pod) {
        return false;
    }
    if min_ready_seconds <= 0 {
        return true;
    }
    match ready_condition(pod).and_then(|c| c.last_transition_time.as_ref()) {
        Some(t) => since(t) > SignedDuration::from_secs(i64::from(min_ready_seconds)),
        None => false,
    }
}

/// `IsPodTerminal`: Succeeded or Failed.
pub fn is_pod_terminal(pod: &Pod) -> bool {
    matches!(pod_phase(pod), "Succeeded" | "Failed")
}

/// `IsPodActive`: not terminal and not being deleted.
pub fn is_pod_active(pod: &Pod) -> bool {
    !is_pod_terminal(pod) && pod.metadata.deletion_timestamp.is_none()
}

/// The pod's IPs (`status.podIPs`, else `status.podIP`).
pub fn pod_ips(pod: &Pod) -> Vec<String> {
    let Some(st) = pod.status.as_ref() else { return Vec::new() };
    let ips: Vec<String> = st.pod_ips.iter().flatten().map(|p| p.ip.clone()).filter(|ip| !ip.is_empty()).collect();
    if !ips.is_empty() {
        return ips;
    }
    st.pod_ip.iter().filter(|ip| !ip.is_empty()).cloned().collect()
}

// ---- selectors ----

pub use apimachinery::selector::label_selector_matches as selector_matches;

/// Whether a selector has no requirement at all (it selects everything).
pub fn selector_is_empty(sel: &LabelSelector) -> bool {
    sel.match_labels.as_ref().is_none_or(|m| m.is_empty())
        && sel.match_expressions.as_ref().is_none_or(|m| m.is_empty())
}

/// Whether a map selector (a Service's) selects `labels`.
pub fn map_selector_matches(sel: &BTreeMap<String, String>, labels: Option<&BTreeMap<String, String>>) -> bool {
    sel.iter().all(|(k, v)| labels.and_then(|l| l.get(k)) == Some(v))
}

// ---- controller references ----

/// The owner reference with `controller: true`, if any.
pub fn controller_of(meta: &ObjectMeta) -> Option<&OwnerReference> {
    meta.owner_references.as_ref()?.iter().find(|r| r.controller == Some(true))
}

/// `metav1.NewControllerRef`.
pub fn new_controller_ref(meta: &ObjectMeta, api_version: &str, kind: &str) -> OwnerReference {
    OwnerReference {
        api_version: api_version.to_string(),
        kind: kind.to_string(),
        name: meta.name.clone().unwrap_or_default(),
        uid: meta.uid.clone().unwrap_or_default(),
        controller: Some(true),
        block_owner_deletion: Some(true),
    }
}

/// Merge-patches an object's ownerReferences (adoption or release),
/// conditional on the resourceVersion it was read at (`null` removes them).
pub async fn patch_owner_refs<K>(client: &kube::Client, obj: &K, refs: serde_json::Value) -> Result<K, kube::Error>
where
    K: kube::Resource<DynamicType = (), Scope = k8s_openapi::NamespaceResourceScope>
        + Clone
        + serde::de::DeserializeOwned
        + std::fmt::Debug,
{
    let m = obj.meta();
    let api: kube::Api<K> = kube::Api::namespaced(client.clone(), m.namespace.as_deref().unwrap_or_default());
    let patch = serde_json::json!({ "metadata": { "ownerReferences": refs, "resourceVersion": m.resource_version } });
    let name = m.name.clone().unwrap_or_default();
    api.patch(&name, &kube::api::PatchParams::default(), &kube::api::Patch::Merge(&patch)).await
}

// ---- API errors ----

pub fn is_not_found(e: &kube::Error) -> bool {
    matches!(e, kube::Error::Api(s) if s.code == 404)
}

pub fn is_conflict(e: &kube::Error) -> bool {
    matches!(e, kube::Error::Api(s) if s.code == 409)
}

pub fn is_already_exists(e: &kube::Error) -> bool {
    matches!(e, kube::Error::Api(s) if s.code == 409 && s.reason == "AlreadyExists")
}

/// A create refused because the namespace is being deleted.
pub fn is_namespace_terminating(e: &kube::Error) -> bool {
    matches!(e, kube::Error::Api(s) if s.code == 403 && s.message.contains("being terminated"))
}

/// The message of an API error as upstream prints it (the Status message).
pub fn api_message(e: &kube::Error) -> String {
    match e {
        kube::Error::Api(s) => s.message.clone(),
        other => other.to_string(),
    }
}

/// FNV-1a, 32 bits (Go's `hash/fnv.New32a`).
pub struct Fnv32a(u32);

impl Fnv32a {
    pub fn new() -> Self {
        Fnv32a(0x811c_9dc5)
    }
    pub fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 ^= u32::from(*b);
            self.0 = self.0.wrapping_mul(0x0100_0193);
        }
    }
    pub fn sum32(&self) -> u32 {
        self.0
    }
}

/// `rand.SafeEncodeString`: maps each byte onto consonants and digits that
/// cannot form words (`bcdfghjklmnpqrstvwxz2456789`).
pub fn safe_encode(s: &str) -> String {
    const ALPHANUMS: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
    s.bytes().map(|b| ALPHANUMS[usize::from(b) % ALPHANUMS.len()] as char).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelectorRequirement;

    fn labels(kv: &[(&str, &str)]) -> BTreeMap<String, String> {
        kv.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    #[test]
    fn label_selectors() {
        let sel = LabelSelector {
            match_labels: Some(labels(&[("app", "a")])),
            match_expressions: Some(vec![LabelSelectorRequirement {
                key: "tier".into(),
                operator: "NotIn".into(),
                values: Some(vec!["db".into()]),
            }]),
        };
        assert!(selector_matches(&sel, Some(&labels(&[("app", "a")]))));
        assert!(selector_matches(&sel, Some(&labels(&[("app", "a"), ("tier", "web")]))));
        assert!(!selector_matches(&sel, Some(&labels(&[("app", "a"), ("tier", "db")]))));
        assert!(!selector_matches(&sel, None));
        assert!(selector_matches(&LabelSelector::default(), None));
        assert!(selector_is_empty(&LabelSelector::default()));
        assert!(map_selector_matches(&labels(&[("app", "a")]), Some(&labels(&[("app", "a"), ("x", "y")]))));
        assert!(!map_selector_matches(&labels(&[("app", "a")]), None));
    }

    #[test]
    fn fnv_and_safe_encoding_match_go() {
        // Go: fnv.New32a() over "hello" = 1335831723.
        let mut h = Fnv32a::new();
        h.write(b"hello");
        assert_eq!(h.sum32(), 1_335_831_723);
        // rand.SafeEncodeString("0123456789")
        assert_eq!(safe_encode("0123456789"), "456789bcdf");
    }
}
