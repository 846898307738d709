//! `kubectl get statefulsets` (upstream `printStatefulSet` and
//! `statefulSetColumnDefinitions` in `pkg/printers/internalversion/printers.go`):
//! NAME READY AGE, and CONTAINERS IMAGES when wide.

use super::{age, age_col, arr_at, col, desc, int_at, layout_container_cells, name, name_col, s};
use jiff::Timestamp;
use serde_json::Value;

pub(super) fn columns() -> Vec<Value> {
    vec![
        name_col(),
        col("Ready", "string", "", desc::DEPLOYMENT_READY, 0),
        age_col(),
        col("Containers", "string", "", desc::TEMPLATE_CONTAINERS, 1),
        col("Images", "string", "", desc::TEMPLATE_IMAGES, 1),
    ]
}

pub(super) fn cells(sts: &Value, now: Timestamp) -> Vec<Value> {
    // `spec.replicas` is defaulted (1) on decode upstream.
    let desired = int_at(sts, "/spec/replicas").unwrap_or(1);
    let ready = int_at(sts, "/status/readyReplicas").unwrap_or(0);
    let (names, images) = layout_container_cells(arr_at(sts, "/spec/template/spec/containers"));
    vec![name(sts), s(format!("{ready}/{desired}")), age(sts, now), s(names), s(images)]
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn statefulset_row() {
        let now: Timestamp = "2024-06-01T12:00:00Z".parse().unwrap();
        let sts = json!({
            "metadata": {"name": "web", "creationTimestamp": "2024-06-01T11:57:00Z"},
            "spec": {"replicas": 3, "template": {"spec": {"containers": [
                {"name": "nginx", "image": "nginx:1.27"}, {"name": "sidecar", "image": "busybox"}]}}},
            "status": {"replicas": 3, "readyReplicas": 2}
        });
        assert_eq!(
            cells(&sts, now),
            vec![json!("web"), json!("2/3"), json!("3m"), json!("nginx,sidecar"), json!("nginx:1.27,busybox")]
        );
        let bare = json!({"metadata": {"name": "x"}});
        assert_eq!(cells(&bare, now)[1], json!("0/1"));
        assert_eq!(cells(&bare, now).len(), columns().len());
    }
}
