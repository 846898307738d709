//! The taints the node lifecycle controller keeps on nodes, from their
//! conditions and `spec.unschedulable` (upstream `doNoScheduleTaintingPass`,
//! `doNoExecuteTaintingPass`, `nodeConditionToTaintKeyStatusMap`). Taints of
//! other owners are left as they are.

use k8s_openapi::api::core::v1::{Node, Taint};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

pub const NOT_READY: &str = "node.kubernetes.io/not-ready";
pub const UNREACHABLE: &str = "node.kubernetes.io/unreachable";
pub const UNSCHEDULABLE: &str = "node.kubernetes.io/unschedulable";
pub const MEMORY_PRESSURE: &str = "node.kubernetes.io/memory-pressure";
pub const DISK_PRESSURE: &str = "node.kubernetes.io/disk-pressure";
pub const PID_PRESSURE: &str = "node.kubernetes.io/pid-pressure";
pub const NETWORK_UNAVAILABLE: &str = "node.kubernetes.io/network-unavailable";

/// Every (key, effect) this controller owns.
const OWNED: [(&str, &str); 9] = [
    (NOT_READY, "NoExecute"),
    (UNREACHABLE, "NoExecute"),
    (NOT_READY, "NoSchedule"),
    (UNREACHABLE, "NoSchedule"),
    (UNSCHEDULABLE, "NoSchedule"),
    (MEMORY_PRESSURE, "NoSchedule"),
    (DISK_PRESSURE, "NoSchedule"),
    (PID_PRESSURE, "NoSchedule"),
    (NETWORK_UNAVAILABLE, "NoSchedule"),
];

fn owned(t: &Taint) -> bool {
    OWNED.iter().any(|(k, e)| t.key == *k && t.effect == *e)
}

/// The taints the node's state calls for.
pub fn wanted(node: &Node) -> Vec<(&'static str, &'static str)> {
    let status = |type_: &str| -> Option<String> {
        node.status.as_ref()?.conditions.as_ref()?.iter().find(|c| c.type_ == type_).map(|c| c.status.clone())
    };
    let mut out = Vec::new();
    match status("Ready").as_deref() {
        Some("False") => out.extend([(NOT_READY, "NoExecute"), (NOT_READY, "NoSchedule")]),
        Some("Unknown") => out.extend([(UNREACHABLE, "NoExecute"), (UNREACHABLE, "NoSchedule")]),
        _ => {}
    }
    for (type_, key) in [
        ("MemoryPressure", MEMORY_PRESSURE),
        ("DiskPressure", DISK_PRESSURE),
        ("PIDPressure", PID_PRESSURE),
        ("NetworkUnavailable", NETWORK_UNAVAILABLE),
    ] {
        if status(type_).as_deref() == Some("True") {
            out.push((key, "NoSchedule"));
        }
    }
    if node.spec.as_ref().and_then(|s| s.unschedulable) == Some(true) {
        out.push((UNSCHEDULABLE, "NoSchedule"));
    }
    out
}

/// The node's taints with the owned ones made `wanted` (kept ones keep their
/// `timeAdded`; a new NoExecute taint gets `now`), or `None` if nothing changes.
pub fn reconcile(current: &[Taint], wanted: &[(&str, &str)], now: &Time) -> Option<Vec<Taint>> {
    let mut out: Vec<Taint> = current
        .iter()
        .filter(|t| !owned(t) || wanted.iter().any(|(k, e)| t.key == *k && t.effect == *e))
        .cloned()
        .collect();
    for (key, effect) in wanted {
        if !out.iter().any(|t| t.key == *key && t.effect == *effect) {
            out.push(Taint {
                key: key.to_string(),
                effect: effect.to_string(),
                value: None,
                time_added: (*effect == "NoExecute").then(|| now.clone()),
            });
        }
    }
    (out != current).then_some(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn node(ready: &str, unschedulable: bool, taints: serde_json::Value) -> Node {
        serde_json::from_value(json!({
            "metadata": { "name": "n1" },
            "spec": { "unschedulable": unschedulable, "taints": taints },
            "status": { "conditions": [
                { "type": "Ready", "status": ready },
                { "type": "MemoryPressure", "status": "False" },
                { "type": "DiskPressure", "status": "True" },
            ] },
        }))
        .expect("node")
    }

    fn taints(n: &Node) -> Vec<Taint> {
        n.spec.as_ref().and_then(|s| s.taints.clone()).unwrap_or_default()
    }

    #[test]
    fn conditions_map_to_taints() {
        let n = node("Unknown", true, json!([]));
        assert_eq!(
            wanted(&n),
            [
                (UNREACHABLE, "NoExecute"),
                (UNREACHABLE, "NoSchedule"),
                (DISK_PRESSURE, "NoSchedule"),
                (UNSCHEDULABLE, "NoSchedule")
            ]
        );
        assert_eq!(
            wanted(&node("False", false, json!([])))[..2],
            [(NOT_READY, "NoExecute"), (NOT_READY, "NoSchedule")]
        );
        assert_eq!(wanted(&node("True", false, json!([]))), [(DISK_PRESSURE, "NoSchedule")]);
    }

    #[test]
    fn reconcile_swaps_owned_taints_and_keeps_others() {
        let now = Time("2026-12-06T10:00:00Z".parse().expect("time"));
        let n = node(
            "Unknown",
            false,
            json!([
                { "key": "dedicated", "value": "gpu", "effect": "NoSchedule" },
                { "key": NOT_READY, "effect": "NoExecute", "timeAdded": "2026-12-06T09:00:00Z" },
            ]),
        );
        let out = reconcile(&taints(&n), &wanted(&n), &now).expect("changed");
        let keys: Vec<(&str, &str)> = out.iter().map(|t| (t.key.as_str(), t.effect.as_str())).collect();
        assert_eq!(
            keys,
            [
                ("dedicated", "NoSchedule"),
                (UNREACHABLE, "NoExecute"),
                (UNREACHABLE, "NoSchedule"),
                (DISK_PRESSURE, "NoSchedule")
            ]
        );
        assert_eq!(out[1].time_added.as_ref(), Some(&now));
        assert!(out[2].time_added.is_none());
        // Applied: nothing more to do; back to Ready: only the foreign taint stays.
        assert!(reconcile(&out, &wanted(&n), &now).is_none());
        let back = node("True", false, json!([]));
        let out = reconcile(&out, &wanted(&back), &now).expect("changed");
        let keys: Vec<&str> = out.iter().map(|t| t.key.as_str()).collect();
        assert_eq!(keys, ["dedicated", DISK_PRESSURE]);
    }
}
