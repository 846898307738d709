//! `kubectl get daemonsets` (upstream `printDaemonSet` and
//! `daemonSetColumnDefinitions` in `pkg/printers/internalversion/printers.go`).

use super::{age, arr_at, col, format_label_selector, format_labels, get, int, int_at, layout_container_cells, map_at};
use super::{age_col, desc, name, name_col, s};
use jiff::Timestamp;
use serde_json::Value;

const DESIRED: &str = "The total number of nodes that should be running the daemon pod (including nodes correctly running the daemon pod). More info: https://kubernetes.io/docs/concepts/workloads/controllers/daemonset/";
const CURRENT: &str = "The number of nodes that are running at least 1 daemon pod and are supposed to run the daemon pod. More info: https://kubernetes.io/docs/concepts/workloads/controllers/daemonset/";
const READY: &str = "numberReady is the number of nodes that should be running the daemon pod and have one or more of the daemon pod running with a Ready Condition.";
const UPDATED: &str = "The total number of nodes that are running updated daemon pod";
const AVAILABLE: &str = "The number of nodes that should be running the daemon pod and have one or more of the daemon pod running and available (ready for at least spec.minReadySeconds)";
const NODE_SELECTOR: &str = "NodeSelector is a selector which must be true for the pod to fit on a node. Selector which must match a node's labels for the pod to be scheduled on that node. More info: https://kubernetes.io/docs/concepts/configuration/assign-pod-node/";
const SELECTOR: &str = "A label query over pods that are managed by the daemon set. Must match in order to be controlled. It must match the pod template's labels. More info: https://kubernetes.io/docs/concepts/overview/working-with-objects/labels/#label-selectors";

pub(super) fn columns() -> Vec<Value> {
    vec![
        name_col(),
        col("Desired", "integer", "", DESIRED, 0),
        col("Current", "integer", "", CURRENT, 0),
        col("Ready", "integer", "", READY, 0),
        col("Up-to-date", "integer", "", UPDATED, 0),
        col("Available", "integer", "", AVAILABLE, 0),
        col("Node Selector", "string", "", NODE_SELECTOR, 0),
        age_col(),
        col("Containers", "string", "", desc::TEMPLATE_CONTAINERS, 1),
        col("Images", "string", "", desc::TEMPLATE_IMAGES, 1),
        col("Selector", "string", "", SELECTOR, 1),
    ]
}

pub(super) fn cells(ds: &Value, now: Timestamp) -> Vec<Value> {
    let n = |ptr: &str| int(int_at(ds, ptr).unwrap_or(0));
    let (names, images) = layout_container_cells(arr_at(ds, "/spec/template/spec/containers"));
    vec![
        name(ds),
        n("/status/desiredNumberScheduled"),
        n("/status/currentNumberScheduled"),
        n("/status/numberReady"),
        n("/status/updatedNumberScheduled"),
        n("/status/numberAvailable"),
        s(format_labels(map_at(ds, "/spec/template/spec/nodeSelector"))),
        age(ds, now),
        s(names),
        s(images),
        s(format_label_selector(get(ds, "/spec/selector"))),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn daemonset_row() {
        let now: Timestamp = "2024-06-01T12:00:00Z".parse().unwrap();
        let ds = json!({
            "metadata": {"name": "nodelocaldns", "creationTimestamp": "2024-06-01T11:55:00Z"},
            "spec": {"selector": {"matchLabels": {"k8s-app": "nodelocaldns"}},
                "template": {"spec": {"nodeSelector": {"kubernetes.io/os": "linux"},
                    "containers": [{"name": "node-cache", "image": "registry.k8s.io/dns/k8s-dns-node-cache:1.22.28"}]}}},
            "status": {"desiredNumberScheduled": 3, "currentNumberScheduled": 3, "numberReady": 2,
                "updatedNumberScheduled": 3, "numberAvailable": 2, "numberMisscheduled": 0}
        });
        assert_eq!(
            cells(&ds, now),
            vec![
                json!("nodelocaldns"),
                json!(3),
                json!(3),
                json!(2),
                json!(3),
                json!(2),
                json!("kubernetes.io/os=linux"),
                json!("5m"),
                json!("node-cache"),
                json!("registry.k8s.io/dns/k8s-dns-node-cache:1.22.28"),
                json!("k8s-app=nodelocaldns"),
            ]
        );
        // No status yet, no node selector.
        let bare = json!({"metadata": {"name": "x"}, "spec": {"selector": {"matchLabels": {"a": "b"}}}});
        let row = cells(&bare, now);
        assert_eq!(row[1..6], [json!(0), json!(0), json!(0), json!(0), json!(0)]);
        assert_eq!(row[6], json!("<none>"));
        assert_eq!(row.len(), columns().len());
    }
}
