//! `kubectl get nodes` (upstream `printNode`, `nodeColumnDefinitions`).

use super::*;

pub(super) fn node_columns() -> Vec<Value> {
    vec![
        name_col(),
        col("Status", "string", "", desc::NODE_STATUS, 0),
        col("Roles", "string", "", desc::NODE_ROLES, 0),
        age_col(),
        col("Version", "string", "", desc::NODE_INFO_KUBELET_VERSION, 0),
        col("Internal-IP", "string", "", desc::NODE_STATUS_ADDRESSES, 1),
        col("External-IP", "string", "", desc::NODE_STATUS_ADDRESSES, 1),
        col("OS-Image", "string", "", desc::NODE_INFO_OS_IMAGE, 1),
        col("Kernel-Version", "string", "", desc::NODE_INFO_KERNEL_VERSION, 1),
        col("Container-Runtime", "string", "", desc::NODE_INFO_CONTAINER_RUNTIME_VERSION, 1),
    ]
}

pub(super) const LABEL_NODE_ROLE_PREFIX: &str = "node-role.kubernetes.io/";
pub(super) const NODE_LABEL_ROLE: &str = "kubernetes.io/role";

/// Upstream `printNode`.
pub(super) fn node_cells(node: &Value, now: Timestamp) -> Vec<Value> {
    // Only the Ready condition is shown; the last one of a type wins (map insert).
    let mut ready: Option<&Value> = None;
    for c in arr_at(node, "/status/conditions") {
        if str_at(c, "/type") == "Ready" {
            ready = Some(c);
        }
    }
    let mut status: Vec<&str> = Vec::new();
    match ready {
        Some(c) if str_at(c, "/status") == "True" => status.push("Ready"),
        Some(_) => status.push("NotReady"),
        None => status.push("Unknown"),
    }
    if bool_at(node, "/spec/unschedulable") {
        status.push("SchedulingDisabled");
    }

    // findNodeRoles
    let mut roles: BTreeSet<&str> = BTreeSet::new();
    if let Some(labels) = map_at(node, "/metadata/labels") {
        for (k, v) in labels {
            if let Some(role) = k.strip_prefix(LABEL_NODE_ROLE_PREFIX) {
                if !role.is_empty() {
                    roles.insert(role);
                }
            } else if k == NODE_LABEL_ROLE {
                let v = v.as_str().unwrap_or("");
                if !v.is_empty() {
                    roles.insert(v);
                }
            }
        }
    }
    let roles = none_if_empty(&roles.into_iter().collect::<Vec<_>>().join(","));

    let address = |ty: &str| -> String {
        arr_at(node, "/status/addresses")
            .iter()
            .find(|a| str_at(a, "/type") == ty)
            .map_or_else(|| "<none>".to_string(), |a| str_at(a, "/address").to_string())
    };
    let info = |field: &str| -> String {
        match str_at(node, &format!("/status/nodeInfo/{field}")) {
            "" => "<unknown>".to_string(),
            v => v.to_string(),
        }
    };

    vec![
        name(node),
        s(status.join(",")),
        s(roles),
        age(node, now),
        s(str_at(node, "/status/nodeInfo/kubeletVersion")),
        s(address("InternalIP")),
        s(address("ExternalIP")),
        s(info("osImage")),
        s(info("kernelVersion")),
        s(info("containerRuntimeVersion")),
    ]
}
