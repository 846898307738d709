//! `kubectl get replicasets` and `deployments` (upstream `printReplicaSet`, `printDeployment`).

use super::*;

pub(super) fn replicaset_columns() -> Vec<Value> {
    vec![
        name_col(),
        col("Desired", "integer", "", desc::REPLICA_SET_SPEC_REPLICAS, 0),
        col("Current", "integer", "", desc::REPLICA_SET_STATUS_REPLICAS, 0),
        col("Ready", "integer", "", desc::REPLICA_SET_STATUS_READY_REPLICAS, 0),
        age_col(),
        col("Containers", "string", "", desc::TEMPLATE_CONTAINERS, 1),
        col("Images", "string", "", desc::TEMPLATE_IMAGES, 1),
        col("Selector", "string", "", desc::REPLICA_SET_SPEC_SELECTOR, 1),
    ]
}

pub(super) fn deployment_columns() -> Vec<Value> {
    vec![
        name_col(),
        col("Ready", "string", "", desc::DEPLOYMENT_READY, 0),
        col("Up-to-date", "string", "", desc::DEPLOYMENT_STATUS_UPDATED_REPLICAS, 0),
        col("Available", "string", "", desc::DEPLOYMENT_STATUS_AVAILABLE_REPLICAS, 0),
        age_col(),
        col("Containers", "string", "", desc::TEMPLATE_CONTAINERS, 1),
        col("Images", "string", "", desc::TEMPLATE_IMAGES, 1),
        col("Selector", "string", "", desc::DEPLOYMENT_SPEC_SELECTOR, 1),
    ]
}

/// Upstream `printReplicaSet`.
pub(super) fn replicaset_cells(rs: &Value, now: Timestamp) -> Vec<Value> {
    let (names, images) = layout_container_cells(arr_at(rs, "/spec/template/spec/containers"));
    vec![
        name(rs),
        int(int_at(rs, "/spec/replicas").unwrap_or(1)),
        int(int_at(rs, "/status/replicas").unwrap_or(0)),
        int(int_at(rs, "/status/readyReplicas").unwrap_or(0)),
        age(rs, now),
        s(names),
        s(images),
        s(format_label_selector(get(rs, "/spec/selector"))),
    ]
}

/// Upstream `printDeployment`.
pub(super) fn deployment_cells(deploy: &Value, now: Timestamp) -> Vec<Value> {
    let desired = int_at(deploy, "/spec/replicas").unwrap_or(1);
    let ready = int_at(deploy, "/status/readyReplicas").unwrap_or(0);
    let (names, images) = layout_container_cells(arr_at(deploy, "/spec/template/spec/containers"));
    let selector = label_selector_string(get(deploy, "/spec/selector")).unwrap_or_else(|()| "<invalid>".to_string());
    vec![
        name(deploy),
        s(format!("{ready}/{desired}")),
        int(int_at(deploy, "/status/updatedReplicas").unwrap_or(0)),
        int(int_at(deploy, "/status/availableReplicas").unwrap_or(0)),
        age(deploy, now),
        s(names),
        s(images),
        s(selector),
    ]
}
