//! Rules about LoadBalancer Services that the address allocator (`controllers`) and
//! the L2 announcer (`l2`) must agree on: which Services rkube handles, their ingress,
//! which Nodes may carry LoadBalancer traffic, and where a Service's ready endpoints
//! run. Pure functions over `k8s-openapi` types.

use k8s_openapi::api::core::v1::{LoadBalancerIngress, Node, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use std::collections::BTreeSet;
use std::net::Ipv4Addr;

/// Upstream label: Nodes that must not carry LoadBalancer traffic.
pub const EXCLUDE_LABEL: &str = "node.kubernetes.io/exclude-from-external-load-balancers";
/// Label on an EndpointSlice naming its Service.
pub const SERVICE_NAME_LABEL: &str = "kubernetes.io/service-name";

/// `type: LoadBalancer` without a `spec.loadBalancerClass`: rkube's to serve.
pub fn is_handled(svc: &Service) -> bool {
    svc.spec.as_ref().is_some_and(|s| s.type_.as_deref() == Some("LoadBalancer") && s.load_balancer_class.is_none())
}

/// `status.loadBalancer.ingress`.
pub fn ingress(svc: &Service) -> &[LoadBalancerIngress] {
    svc.status.as_ref().and_then(|s| s.load_balancer.as_ref()).and_then(|lb| lb.ingress.as_deref()).unwrap_or_default()
}

/// `externalTrafficPolicy: Local`.
pub fn is_local(svc: &Service) -> bool {
    svc.spec.as_ref().and_then(|s| s.external_traffic_policy.as_deref()) == Some("Local")
}

/// Ready (condition Ready=True) and not being deleted.
pub fn node_ready(n: &Node) -> bool {
    let ready = n
        .status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"));
    ready && n.metadata.deletion_timestamp.is_none()
}

/// Labelled [`EXCLUDE_LABEL`].
pub fn node_excluded(n: &Node) -> bool {
    n.metadata.labels.as_ref().is_some_and(|l| l.contains_key(EXCLUDE_LABEL))
}

/// (InternalIP, ExternalIP) IPv4 addresses of a Node.
pub fn node_addresses(n: &Node) -> (Vec<Ipv4Addr>, Vec<Ipv4Addr>) {
    let mut internal = Vec::new();
    let mut external = Vec::new();
    for a in n.status.as_ref().and_then(|s| s.addresses.as_ref()).into_iter().flatten() {
        let Ok(ip) = a.address.parse::<Ipv4Addr>() else { continue };
        match a.type_.as_str() {
            "InternalIP" => internal.push(ip),
            "ExternalIP" => external.push(ip),
            _ => {}
        }
    }
    (internal, external)
}

/// The slice belongs to Service `name` (of the slice's namespace).
pub fn slice_of(slice: &EndpointSlice, name: &str) -> bool {
    slice.metadata.labels.as_ref().and_then(|l| l.get(SERVICE_NAME_LABEL)).map(String::as_str) == Some(name)
}

/// The Nodes running a ready endpoint (conditions.ready nil means true) of `slices`.
pub fn ready_endpoint_nodes<'a>(slices: impl IntoIterator<Item = &'a EndpointSlice>) -> BTreeSet<String> {
    slices
        .into_iter()
        .flat_map(|s| s.endpoints.iter())
        .filter(|e| e.conditions.as_ref().and_then(|c| c.ready).unwrap_or(true))
        .filter_map(|e| e.node_name.clone())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn services_nodes_and_endpoints() {
        let svc: Service = serde_json::from_value(json!({
            "spec": {"type": "LoadBalancer", "externalTrafficPolicy": "Local"},
            "status": {"loadBalancer": {"ingress": [{"ip": "192.168.122.200", "ipMode": "VIP"}]}}
        }))
        .expect("svc");
        assert!(is_handled(&svc) && is_local(&svc));
        assert_eq!(ingress(&svc)[0].ip.as_deref(), Some("192.168.122.200"));
        let classed: Service =
            serde_json::from_value(json!({"spec": {"type": "LoadBalancer", "loadBalancerClass": "x/y"}})).expect("svc");
        assert!(!is_handled(&classed) && ingress(&classed).is_empty());

        let node: Node = serde_json::from_value(json!({
            "metadata": {"name": "n1", "labels": {EXCLUDE_LABEL: ""}},
            "status": {"conditions": [{"type": "Ready", "status": "True"}],
                       "addresses": [{"type": "InternalIP", "address": "192.168.122.11"},
                                     {"type": "Hostname", "address": "n1"}]}
        }))
        .expect("node");
        assert!(node_ready(&node) && node_excluded(&node));
        assert_eq!(node_addresses(&node), (vec![Ipv4Addr::new(192, 168, 122, 11)], vec![]));

        let slice: EndpointSlice = serde_json::from_value(json!({
            "metadata": {"labels": {SERVICE_NAME_LABEL: "web"}}, "addressType": "IPv4",
            "endpoints": [{"addresses": ["10.244.1.2"], "nodeName": "n2"},
                          {"addresses": ["10.244.1.3"], "nodeName": "n3", "conditions": {"ready": false}}]
        }))
        .expect("slice");
        assert!(slice_of(&slice, "web") && !slice_of(&slice, "db"));
        assert_eq!(ready_endpoint_nodes([&slice]), ["n2".to_string()].into());
    }
}
