//! PodTopologySpread's filter (`pkg/scheduler/framework/plugins/podtopologyspread/filtering.go`):
//! for each of the pod's `whenUnsatisfiable: DoNotSchedule` constraints, a
//! node fits if placing the pod there keeps `matching pods in its domain + 1 -
//! the fewest in any domain` within `maxSkew`. Domains and counts come from
//! the nodes the pod's node selector and affinity allow; a node without the
//! constraint's key does not fit.

use k8s_openapi::api::core::v1::{Node, Pod};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use std::collections::HashMap;

/// `ErrReasonConstraintsNotMatch`.
pub const REASON_SKEW: &str = "node(s) didn't match pod topology spread constraints";
/// `ErrReasonNodeLabelNotMatch`.
pub const REASON_LABEL: &str = "node(s) didn't match pod topology spread constraints (missing required label)";

/// One hard constraint with its counts per domain.
#[derive(Debug)]
pub struct Hard {
    key: String,
    max_skew: i64,
    self_match: i64,
    counts: HashMap<String, i64>,
    min: i64,
}

/// The pod's DoNotSchedule constraints, counted over `nodes` (each with its
/// pods) that `eligible` allows.
pub fn prepare<'a>(
    pod: &Pod,
    nodes: impl IntoIterator<Item = (&'a Node, &'a [std::sync::Arc<Pod>])>,
    eligible: impl Fn(&Node) -> bool,
) -> Vec<Hard> {
    let Some(own) = pod.spec.as_ref().and_then(|s| s.topology_spread_constraints.as_ref()) else { return Vec::new() };
    let hard: Vec<_> = own.iter().filter(|c| c.when_unsatisfiable == "DoNotSchedule").collect();
    if hard.is_empty() {
        return Vec::new();
    }
    let ns = pod.metadata.namespace.as_deref().unwrap_or_default();
    let nodes: Vec<(&Node, &[std::sync::Arc<Pod>])> = nodes.into_iter().filter(|(n, _)| eligible(n)).collect();
    hard.into_iter()
        .map(|c| {
            let selector: LabelSelector = c.label_selector.clone().unwrap_or_default();
            let mut counts: HashMap<String, i64> = HashMap::new();
            for (node, pods) in &nodes {
                // Nodes must carry every hard constraint's key to count.
                let Some(domain) = node.metadata.labels.as_ref().and_then(|l| l.get(&c.topology_key)) else { continue };
                let n = pods
                    .iter()
                    .filter(|p| p.metadata.deletion_timestamp.is_none())
                    .filter(|p| p.metadata.namespace.as_deref().unwrap_or_default() == ns)
                    .filter(|p| crate::util::selector_matches(&selector, p.metadata.labels.as_ref()))
                    .count() as i64;
                *counts.entry(domain.clone()).or_default() += n;
            }
            let mut min = counts.values().copied().min().unwrap_or(0);
            // Fewer domains than minDomains: the global minimum is 0.
            if c.min_domains.is_some_and(|m| (counts.len() as i64) < i64::from(m)) {
                min = 0;
            }
            Hard {
                key: c.topology_key.clone(),
                max_skew: i64::from(c.max_skew),
                self_match: i64::from(crate::util::selector_matches(&selector, pod.metadata.labels.as_ref())),
                counts,
                min,
            }
        })
        .collect()
}

/// `None` if the node fits every hard constraint, else upstream's reason.
pub fn filter(hard: &[Hard], node: &Node) -> Option<&'static str> {
    for h in hard {
        let Some(domain) = node.metadata.labels.as_ref().and_then(|l| l.get(&h.key)) else {
            return Some(REASON_LABEL);
        };
        let matching = h.counts.get(domain).copied().unwrap_or(0);
        if matching + h.self_match - h.min > h.max_skew {
            return Some(REASON_SKEW);
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use std::sync::Arc;

    fn node(name: &str, zone: Option<&str>) -> Node {
        let mut labels = json!({"kubernetes.io/hostname": name});
        if let Some(z) = zone {
            labels["topology.kubernetes.io/zone"] = json!(z);
        }
        serde_json::from_value(json!({"metadata": {"name": name, "labels": labels}})).expect("node")
    }

    fn pod(app: &str, constraints: serde_json::Value) -> Arc<Pod> {
        Arc::new(
            serde_json::from_value(json!({
                "metadata": {"name": "p", "namespace": "default", "labels": {"app": app}},
                "spec": {"containers": [{"name": "c", "image": "x"}], "topologySpreadConstraints": constraints},
            }))
            .expect("pod"),
        )
    }

    #[test]
    fn max_skew_per_zone() {
        let c = json!([{"maxSkew": 1, "topologyKey": "topology.kubernetes.io/zone", "whenUnsatisfiable": "DoNotSchedule",
            "labelSelector": {"matchLabels": {"app": "web"}}}]);
        let incoming = pod("web", c);
        let web = pod("web", json!([]));
        let (a1, a2, b1, bare) = (node("a1", Some("a")), node("a2", Some("a")), node("b1", Some("b")), node("x", None));
        // Zone a has 2 web pods, zone b 1: a would make skew 3 - 1 = 2 > 1.
        let a1_pods = [web.clone(), web.clone()];
        let b1_pods = [web.clone()];
        let empty: Vec<Arc<Pod>> = Vec::new();
        let nodes = vec![(&a1, &a1_pods[..]), (&a2, &empty[..]), (&b1, &b1_pods[..]), (&bare, &empty[..])];
        let hard = prepare(&incoming, nodes.clone(), |_| true);
        assert_eq!(filter(&hard, &a2), Some(REASON_SKEW));
        assert_eq!(filter(&hard, &b1), None);
        assert_eq!(filter(&hard, &bare), Some(REASON_LABEL));
        // ScheduleAnyway constraints never filter.
        let soft = pod(
            "web",
            json!([{"maxSkew": 1, "topologyKey": "topology.kubernetes.io/zone", "whenUnsatisfiable": "ScheduleAnyway"}]),
        );
        assert!(prepare(&soft, nodes.clone(), |_| true).is_empty());
        // minDomains above the domains seen: the minimum counts as 0.
        let min_domains = pod(
            "web",
            json!([{"maxSkew": 2, "minDomains": 3, "topologyKey": "topology.kubernetes.io/zone",
            "whenUnsatisfiable": "DoNotSchedule", "labelSelector": {"matchLabels": {"app": "web"}}}]),
        );
        let hard = prepare(&min_domains, nodes, |_| true);
        assert_eq!(filter(&hard, &b1), None, "1 + 1 - 0 <= 2");
        assert_eq!(filter(&hard, &a2), Some(REASON_SKEW), "2 + 1 - 0 > 2");
    }
}
