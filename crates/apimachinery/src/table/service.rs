//! `kubectl get services` (upstream `printService`, `serviceColumnDefinitions`).

use super::*;

pub(super) fn service_columns() -> Vec<Value> {
    vec![
        name_col(),
        col("Type", "string", "", desc::SERVICE_SPEC_TYPE, 0),
        col("Cluster-IP", "string", "", desc::SERVICE_SPEC_CLUSTER_IP, 0),
        col("External-IP", "string", "", desc::SERVICE_SPEC_EXTERNAL_IPS, 0),
        col("Port(s)", "string", "", desc::SERVICE_SPEC_PORTS, 0),
        age_col(),
        col("Selector", "string", "", desc::SERVICE_SPEC_SELECTOR, 1),
    ]
}

/// Upstream `loadBalancerStatusStringer` (wide: never clipped): ingress IPs, else
/// hostnames, sorted and de-duplicated, joined by ",".
pub(super) fn load_balancer_status_string(svc: &Value) -> String {
    let mut result: BTreeSet<&str> = BTreeSet::new();
    for ingress in arr_at(svc, "/status/loadBalancer/ingress") {
        let ip = str_at(ingress, "/ip");
        let hostname = str_at(ingress, "/hostname");
        if !ip.is_empty() {
            result.insert(ip);
        } else if !hostname.is_empty() {
            result.insert(hostname);
        }
    }
    result.into_iter().collect::<Vec<_>>().join(",")
}

/// Upstream `getServiceExternalIP`.
pub(super) fn service_external_ip(svc: &Value, svc_type: &str) -> String {
    let external_ips: Vec<&str> = arr_at(svc, "/spec/externalIPs").iter().map(|v| v.as_str().unwrap_or("")).collect();
    match svc_type {
        "ClusterIP" | "NodePort" => {
            if external_ips.is_empty() {
                "<none>".to_string()
            } else {
                external_ips.join(",")
            }
        }
        "LoadBalancer" => {
            let lb_ips = load_balancer_status_string(svc);
            if !external_ips.is_empty() {
                let mut results: Vec<&str> = Vec::new();
                if !lb_ips.is_empty() {
                    results.extend(lb_ips.split(','));
                }
                results.extend(external_ips.iter().copied());
                return results.join(",");
            }
            if !lb_ips.is_empty() {
                return lb_ips;
            }
            "<pending>".to_string()
        }
        "ExternalName" => str_at(svc, "/spec/externalName").to_string(),
        _ => "<unknown>".to_string(),
    }
}

/// Upstream `makePortString`: `80/TCP`, `80:31111/TCP`, joined by ",".
pub(super) fn make_port_string(ports: &[Value]) -> String {
    ports
        .iter()
        .map(|p| {
            let port = int_at(p, "/port").unwrap_or(0);
            let protocol = match str_at(p, "/protocol") {
                "" => "TCP",
                proto => proto,
            };
            let node_port = int_at(p, "/nodePort").unwrap_or(0);
            if node_port > 0 {
                format!("{port}:{node_port}/{protocol}")
            } else {
                format!("{port}/{protocol}")
            }
        })
        .collect::<Vec<_>>()
        .join(",")
}

/// Upstream `printService`.
pub(super) fn service_cells(svc: &Value, now: Timestamp) -> Vec<Value> {
    let svc_type = match str_at(svc, "/spec/type") {
        "" => "ClusterIP",
        t => t,
    };
    // The v1 -> internal conversion fills clusterIPs from clusterIP.
    let internal_ip = match arr_at(svc, "/spec/clusterIPs").first() {
        Some(ip) => ip.as_str().unwrap_or("").to_string(),
        None => none_if_empty(str_at(svc, "/spec/clusterIP")),
    };
    let ports = make_port_string(arr_at(svc, "/spec/ports"));
    vec![
        name(svc),
        s(svc_type),
        s(internal_ip),
        s(service_external_ip(svc, svc_type)),
        s(none_if_empty(&ports)),
        age(svc, now),
        s(format_labels(map_at(svc, "/spec/selector"))),
    ]
}
