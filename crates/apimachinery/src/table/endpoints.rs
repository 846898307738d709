//! `kubectl get endpoints` and `endpointslices` (upstream `printEndpoints`, `printEndpointSlice`).

use super::*;

pub(super) fn endpoints_columns() -> Vec<Value> {
    vec![name_col(), col("Endpoints", "string", "", desc::ENDPOINTS_SUBSETS, 0), age_col()]
}

pub(super) fn endpointslice_columns() -> Vec<Value> {
    vec![
        name_col(),
        col("AddressType", "string", "", desc::ENDPOINT_SLICE_ADDRESS_TYPE, 0),
        col("Ports", "string", "", desc::ENDPOINT_SLICE_PORTS, 0),
        col("Endpoints", "string", "", desc::ENDPOINT_SLICE_ENDPOINTS, 0),
        age_col(),
    ]
}

/// Upstream `formatEndpoints(endpoints, nil)`.
pub(super) fn format_endpoints(ep: &Value) -> String {
    let subsets = arr_at(ep, "/subsets");
    if subsets.is_empty() {
        return "<none>".to_string();
    }
    const MAX: usize = 3;
    let mut list: Vec<String> = Vec::new();
    let mut more = false;
    let mut count = 0usize;
    for ss in subsets {
        let addresses = arr_at(ss, "/addresses");
        let ports = arr_at(ss, "/ports");
        if ports.is_empty() {
            // It's possible to have headless services with no ports.
            count += addresses.len();
            for addr in addresses {
                if list.len() == MAX {
                    more = true;
                    break;
                }
                list.push(str_at(addr, "/ip").to_string());
            }
            continue;
        }
        // "Normal" services with ports defined.
        for port in ports {
            count += addresses.len();
            for addr in addresses {
                if list.len() == MAX {
                    more = true;
                    break;
                }
                list.push(join_host_port(str_at(addr, "/ip"), int_at(port, "/port").unwrap_or(0)));
            }
        }
    }
    let ret = list.join(",");
    if more {
        return format!("{ret} + {} more...", count.saturating_sub(MAX));
    }
    ret
}

pub(super) fn endpoints_cells(ep: &Value, now: Timestamp) -> Vec<Value> {
    vec![name(ep), s(format_endpoints(ep)), age(ep, now)]
}

/// Upstream `formatDiscoveryPorts`.
pub(super) fn format_discovery_ports(ports: &[Value]) -> String {
    const MAX: usize = 3;
    let mut list: Vec<String> = Vec::new();
    let mut more = false;
    for port in ports {
        if list.len() < MAX {
            let text = if let Some(n) = int_at(port, "/port") {
                n.to_string()
            } else if let Some(name) = get(port, "/name").and_then(Value::as_str) {
                name.to_string()
            } else {
                "*".to_string()
            };
            list.push(text);
        } else if list.len() == MAX {
            more = true;
        }
    }
    list_with_more_string(&list, more, ports.len(), MAX)
}

/// Upstream `formatDiscoveryEndpoints`.
pub(super) fn format_discovery_endpoints(endpoints: &[Value]) -> String {
    const MAX: usize = 3;
    let mut list: Vec<String> = Vec::new();
    let mut more = false;
    let mut count = 0usize;
    for endpoint in endpoints {
        for address in arr_at(endpoint, "/addresses") {
            if list.len() < MAX {
                list.push(address.as_str().unwrap_or("").to_string());
            } else if list.len() == MAX {
                more = true;
            }
            count += 1;
        }
    }
    list_with_more_string(&list, more, count, MAX)
}

pub(super) fn endpointslice_cells(slice: &Value, now: Timestamp) -> Vec<Value> {
    vec![
        name(slice),
        s(str_at(slice, "/addressType")),
        s(format_discovery_ports(arr_at(slice, "/ports"))),
        s(format_discovery_endpoints(arr_at(slice, "/endpoints"))),
        age(slice, now),
    ]
}
