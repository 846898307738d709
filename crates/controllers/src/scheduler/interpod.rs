//! InterPodAffinity (`pkg/scheduler/framework/plugins/interpodaffinity`):
//! the filter (`filtering.go`) for required pod affinity, required pod
//! anti-affinity, and the anti-affinity of pods already running; the score
//! (`scoring.go`) for the preferred terms of both sides. A term's domain is
//! the value of its `topologyKey` label on the node; its namespaces are
//! `namespaces`, all of them for an empty `namespaceSelector`, else the pod's own.

use k8s_openapi::api::core::v1::{Node, Pod, PodAffinityTerm};
use std::sync::Arc;

pub const REASON_AFFINITY: &str = "node(s) didn't match pod affinity rules";
pub const REASON_ANTI_AFFINITY: &str = "node(s) didn't match pod anti-affinity rules";
pub const REASON_EXISTING_ANTI_AFFINITY: &str = "node(s) didn't satisfy existing pods anti-affinity rules";

/// `hardPodAffinityWeight` (kube-scheduler's default).
const HARD_POD_AFFINITY_WEIGHT: i64 = 1;

/// Every node with the pods running on it.
pub type Placement<'a> = [(&'a Node, &'a [Arc<Pod>])];

fn ns_of(p: &Pod) -> &str {
    p.metadata.namespace.as_deref().unwrap_or_default()
}

/// Whether `term` of `owner` selects `other`.
fn term_selects(term: &PodAffinityTerm, owner: &Pod, other: &Pod) -> bool {
    let ns_ok = match (&term.namespaces, &term.namespace_selector) {
        (Some(list), _) if !list.is_empty() => list.iter().any(|n| n == ns_of(other)),
        // An empty namespaceSelector selects every namespace.
        (_, Some(sel)) if crate::util::selector_is_empty(sel) => true,
        (_, Some(_)) => false,
        _ => ns_of(owner) == ns_of(other),
    };
    ns_ok
        && other.metadata.deletion_timestamp.is_none()
        && term
            .label_selector
            .as_ref()
            .is_some_and(|s| crate::util::selector_matches(s, other.metadata.labels.as_ref()))
}

fn domain<'a>(node: &'a Node, key: &str) -> Option<&'a str> {
    node.metadata.labels.as_ref()?.get(key).map(String::as_str)
}

fn same_domain(a: &Node, b: &Node, key: &str) -> bool {
    matches!((domain(a, key), domain(b, key)), (Some(x), Some(y)) if x == y)
}

fn required_affinity(p: &Pod) -> Vec<PodAffinityTerm> {
    p.spec
        .as_ref()
        .and_then(|s| s.affinity.as_ref())
        .and_then(|a| a.pod_affinity.as_ref())
        .and_then(|a| a.required_during_scheduling_ignored_during_execution.clone())
        .unwrap_or_default()
}

fn required_anti_affinity(p: &Pod) -> Vec<PodAffinityTerm> {
    p.spec
        .as_ref()
        .and_then(|s| s.affinity.as_ref())
        .and_then(|a| a.pod_anti_affinity.as_ref())
        .and_then(|a| a.required_during_scheduling_ignored_during_execution.clone())
        .unwrap_or_default()
}

/// `None` if `node` passes InterPodAffinity's filter for `pod`.
pub fn filter(pod: &Pod, node: &Node, all: &Placement<'_>) -> Option<&'static str> {
    // Existing pods whose required anti-affinity the incoming pod would break.
    for (other_node, pods) in all {
        for other in pods.iter() {
            for term in required_anti_affinity(other) {
                if term_selects(&term, other, pod) && same_domain(node, other_node, &term.topology_key) {
                    return Some(REASON_EXISTING_ANTI_AFFINITY);
                }
            }
        }
    }
    // The incoming pod's required affinity: every term needs a matching pod in
    // the node's domain, unless no pod matches anywhere and the pod matches
    // its own term (the first of a group).
    let affinity = required_affinity(pod);
    if !affinity.is_empty() {
        let mut ok = true;
        let mut any_anywhere = false;
        for term in &affinity {
            let mut found = false;
            for (other_node, pods) in all {
                for other in pods.iter() {
                    if term_selects(term, pod, other) {
                        any_anywhere = true;
                        if same_domain(node, other_node, &term.topology_key) {
                            found = true;
                        }
                    }
                }
            }
            ok &= found;
        }
        let first_of_group = !any_anywhere
            && affinity.iter().all(|t| term_selects(t, pod, pod))
            && affinity.iter().all(|t| domain(node, &t.topology_key).is_some());
        if !ok && !first_of_group {
            return Some(REASON_AFFINITY);
        }
    }
    // The incoming pod's required anti-affinity.
    for term in required_anti_affinity(pod) {
        for (other_node, pods) in all {
            if pods.iter().any(|o| term_selects(&term, pod, o)) && same_domain(node, other_node, &term.topology_key) {
                return Some(REASON_ANTI_AFFINITY);
            }
        }
    }
    None
}

/// (weight, term) of a pod's preferred affinity (`sign` 1) or anti-affinity (-1).
fn preferred(p: &Pod) -> Vec<(i64, PodAffinityTerm)> {
    let a = p.spec.as_ref().and_then(|s| s.affinity.as_ref());
    let mut out = Vec::new();
    for w in a
        .and_then(|a| a.pod_affinity.as_ref())
        .and_then(|x| x.preferred_during_scheduling_ignored_during_execution.as_ref())
        .into_iter()
        .flatten()
    {
        out.push((i64::from(w.weight), w.pod_affinity_term.clone()));
    }
    for w in a
        .and_then(|a| a.pod_anti_affinity.as_ref())
        .and_then(|x| x.preferred_during_scheduling_ignored_during_execution.as_ref())
        .into_iter()
        .flatten()
    {
        out.push((-i64::from(w.weight), w.pod_affinity_term.clone()));
    }
    out
}

/// InterPodAffinity's normalized scores (0..100) for `candidates`.
pub fn score(pod: &Pod, candidates: &[&Node], all: &Placement<'_>) -> Vec<i64> {
    let mine = preferred(pod);
    let mut raw = vec![0i64; candidates.len()];
    for (other_node, pods) in all {
        for other in pods.iter() {
            // The incoming pod's preferences about existing pods, and existing
            // pods' preferences (and hard affinity) about the incoming one.
            let mut terms: Vec<(i64, PodAffinityTerm)> =
                mine.iter().filter(|(_, t)| term_selects(t, pod, other)).cloned().collect();
            terms.extend(preferred(other).into_iter().filter(|(_, t)| term_selects(t, other, pod)));
            terms.extend(
                required_affinity(other)
                    .into_iter()
                    .filter(|t| term_selects(t, other, pod))
                    .map(|t| (HARD_POD_AFFINITY_WEIGHT, t)),
            );
            for (weight, term) in terms {
                for (i, n) in candidates.iter().enumerate() {
                    if same_domain(n, other_node, &term.topology_key) {
                        raw[i] += weight;
                    }
                }
            }
        }
    }
    let (min, max) = (raw.iter().copied().min().unwrap_or(0), raw.iter().copied().max().unwrap_or(0));
    raw.iter()
        .map(|s| {
            if max > min {
                (super::score::MAX_SCORE as f64 * ((s - min) as f64 / (max - min) as f64)) as i64
            } else {
                0
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn node(name: &str, zone: &str) -> Node {
        serde_json::from_value(json!({"metadata": {"name": name, "labels": {
            "kubernetes.io/hostname": name, "topology.kubernetes.io/zone": zone}}}))
        .expect("node")
    }

    fn pod(app: &str, affinity: serde_json::Value) -> Arc<Pod> {
        Arc::new(
            serde_json::from_value(json!({
                "metadata": {"name": app, "namespace": "default", "labels": {"app": app}},
                "spec": {"containers": [{"name": "c", "image": "x"}], "affinity": affinity},
            }))
            .expect("pod"),
        )
    }

    fn term(app: &str, key: &str) -> serde_json::Value {
        json!({"labelSelector": {"matchLabels": {"app": app}}, "topologyKey": key})
    }

    #[test]
    fn required_affinity_and_anti_affinity() {
        let (a, b) = (node("a", "z1"), node("b", "z2"));
        let db = pod("db", json!({}));
        let on_a = [db.clone()];
        let none: Vec<Arc<Pod>> = Vec::new();
        let all = [(&a, &on_a[..]), (&b, &none[..])];
        // web must run in the zone of a db pod.
        let web = pod(
            "web",
            json!({"podAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [term("db", "topology.kubernetes.io/zone")]}}),
        );
        assert_eq!(filter(&web, &a, &all), None);
        assert_eq!(filter(&web, &b, &all), Some(REASON_AFFINITY));
        // The first of a group that wants to be with itself may go anywhere.
        let first = pod(
            "cache",
            json!({"podAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [term("cache", "kubernetes.io/hostname")]}}),
        );
        assert_eq!(filter(&first, &b, &all), None);
        // web may not share a node with a db pod.
        let apart = pod(
            "web",
            json!({"podAntiAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [term("db", "kubernetes.io/hostname")]}}),
        );
        assert_eq!(filter(&apart, &a, &all), Some(REASON_ANTI_AFFINITY));
        assert_eq!(filter(&apart, &b, &all), None);
        // An existing pod that keeps web away from its node.
        let loner = pod(
            "loner",
            json!({"podAntiAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [term("web", "kubernetes.io/hostname")]}}),
        );
        let on_b = [loner];
        let all = [(&a, &on_a[..]), (&b, &on_b[..])];
        assert_eq!(filter(&pod("web", json!({})), &b, &all), Some(REASON_EXISTING_ANTI_AFFINITY));
        assert_eq!(filter(&pod("web", json!({})), &a, &all), None);
    }

    #[test]
    fn preferred_terms_score() {
        let (a, b) = (node("a", "z1"), node("b", "z2"));
        let db = pod("db", json!({}));
        let on_a = [db];
        let none: Vec<Arc<Pod>> = Vec::new();
        let all = [(&a, &on_a[..]), (&b, &none[..])];
        let near = pod(
            "web",
            json!({"podAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": [
            {"weight": 10, "podAffinityTerm": term("db", "kubernetes.io/hostname")}]}}),
        );
        assert_eq!(score(&near, &[&a, &b], &all), vec![100, 0]);
        let far = pod(
            "web",
            json!({"podAntiAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": [
            {"weight": 10, "podAffinityTerm": term("db", "kubernetes.io/hostname")}]}}),
        );
        assert_eq!(score(&far, &[&a, &b], &all), vec![0, 100]);
        assert_eq!(score(&pod("web", json!({})), &[&a, &b], &all), vec![0, 0]);
    }
}
