//! The NodePorts filter (upstream
//! `pkg/scheduler/framework/plugins/nodeports/node_ports.go`): a pod whose
//! containers ask for a `hostPort` fits only nodes where no other pod holds
//! that port for the same protocol and an overlapping host IP (`0.0.0.0`, the
//! default, overlaps every address). `hostNetwork` pods have their
//! `hostPort`s defaulted to the container ports by the API server, so two of
//! them listening on one port do not land on one node.

use k8s_openapi::api::core::v1::Pod;
use std::sync::Arc;

/// Upstream's `ErrReason`.
pub(super) const REASON: &str = "node(s) didn't have free ports for the requested pod ports";

/// (protocol, host IP, host port) of each container port with a `hostPort`
/// (upstream `schedutil.GetHostPorts` over `spec.containers`).
fn host_ports(pod: &Pod) -> Vec<(String, String, i32)> {
    let Some(spec) = &pod.spec else { return Vec::new() };
    spec.containers
        .iter()
        .flat_map(|c| c.ports.iter().flatten())
        .filter_map(|p| {
            let port = p.host_port.filter(|&h| h > 0)?;
            let ip = p.host_ip.clone().filter(|ip| !ip.is_empty()).unwrap_or_else(|| "0.0.0.0".into());
            Some((p.protocol.clone().unwrap_or_else(|| "TCP".into()), ip, port))
        })
        .collect()
}

/// Upstream `HostPortInfo.CheckConflict`: same protocol and port, and one of the
/// addresses is the wildcard or both are the same.
fn conflict(a: &(String, String, i32), b: &(String, String, i32)) -> bool {
    a.0 == b.0 && a.2 == b.2 && (a.1 == b.1 || a.1 == "0.0.0.0" || b.1 == "0.0.0.0")
}

/// `Some(REASON)` if a port `pod` wants is taken by one of `pods` (the node's).
pub(super) fn filter(pod: &Pod, pods: &[Arc<Pod>]) -> Option<&'static str> {
    let wanted = host_ports(pod);
    if wanted.is_empty() {
        return None;
    }
    let uid = pod.metadata.uid.as_deref();
    let taken = pods.iter().filter(|p| p.metadata.uid.as_deref() != uid || uid.is_none()).flat_map(|p| host_ports(p));
    for t in taken {
        if wanted.iter().any(|w| conflict(w, &t)) {
            return Some(REASON);
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn pod(uid: &str, ports: serde_json::Value) -> Arc<Pod> {
        Arc::new(
            serde_json::from_value(json!({
                "metadata": {"name": uid, "uid": uid},
                "spec": {"containers": [{"name": "c", "ports": ports}]},
            }))
            .expect("pod"),
        )
    }

    #[test]
    fn host_ports_conflict_by_protocol_port_and_address() {
        let dns = pod(
            "dns",
            json!([{"containerPort": 53, "hostPort": 53, "protocol": "UDP"}, {"containerPort": 53, "hostPort": 53}]),
        );
        let node = vec![dns.clone()];
        // The same UDP port on the wildcard address.
        assert_eq!(
            filter(&pod("a", json!([{"containerPort": 53, "hostPort": 53, "protocol": "UDP"}])), &node),
            Some(REASON)
        );
        // Another protocol or port is free.
        assert_eq!(filter(&pod("b", json!([{"containerPort": 53, "hostPort": 53, "protocol": "SCTP"}])), &node), None);
        assert_eq!(filter(&pod("c", json!([{"containerPort": 54, "hostPort": 54, "protocol": "UDP"}])), &node), None);
        // A specific address overlaps the wildcard; two different specific addresses do not.
        assert_eq!(
            filter(&pod("d", json!([{"containerPort": 53, "hostPort": 53, "hostIP": "10.0.0.1"}])), &node),
            Some(REASON)
        );
        let specific = vec![pod("e", json!([{"containerPort": 80, "hostPort": 8080, "hostIP": "10.0.0.1"}]))];
        assert_eq!(
            filter(&pod("f", json!([{"containerPort": 80, "hostPort": 8080, "hostIP": "10.0.0.2"}])), &specific),
            None
        );
        // Container ports without hostPort take nothing; a pod does not conflict with itself.
        assert_eq!(filter(&pod("g", json!([{"containerPort": 53}])), &node), None);
        assert_eq!(filter(&dns, &node), None);
    }
}
