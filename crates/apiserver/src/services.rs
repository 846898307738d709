//! Service ClusterIP and NodePort allocation, done synchronously in the
//! request like upstream's `pkg/registry/core/service/storage/alloc.go`, plus
//! the Service defaults and validation from `apimachinery::service`.

use apimachinery::allocator::{IpAllocator, PortAllocator};
use apimachinery::field::FieldError;
use apimachinery::service::{self as svc_rules, ServiceConfig};
use k8s_openapi::api::core::v1::Service;
use serde_json::{json, Value};
use std::collections::HashMap;
use std::net::Ipv4Addr;
use std::sync::{Arc, Mutex, MutexGuard};

type Errors = Vec<FieldError>;

struct Pools {
    ips: IpAllocator,
    ports: PortAllocator,
}

/// The cluster's IP and port pools. Rebuilt from stored Services at start.
pub struct ServiceAllocator {
    pools: Arc<Mutex<Pools>>,
    pub config: ServiceConfig,
}

/// What one write allocated (given back if the write fails) and what it frees
/// (given back only once the write succeeded).
#[must_use]
pub struct Allocation {
    pools: Option<Arc<Mutex<Pools>>>,
    ips: Vec<Ipv4Addr>,
    ports: Vec<u16>,
    free_ips: Vec<Ipv4Addr>,
    free_ports: Vec<u16>,
}

impl Allocation {
    pub fn none() -> Allocation {
        Allocation { pools: None, ips: vec![], ports: vec![], free_ips: vec![], free_ports: vec![] }
    }
    /// The write happened: keep what was taken, free what was dropped.
    pub fn commit(self) {
        if let Some(p) = &self.pools {
            let mut pools = lock(p);
            for ip in &self.free_ips {
                pools.ips.release(*ip);
            }
            for port in &self.free_ports {
                pools.ports.release(i64::from(*port));
            }
        }
    }
    /// The write failed: give back what was taken.
    pub fn release(self) {
        if let Some(p) = &self.pools {
            let mut pools = lock(p);
            for ip in &self.ips {
                pools.ips.release(*ip);
            }
            for port in &self.ports {
                pools.ports.release(i64::from(*port));
            }
        }
    }
}

fn lock(p: &Mutex<Pools>) -> MutexGuard<'_, Pools> {
    // A panic while holding the lock cannot leave the bitmaps half-updated in a
    // way that matters more than refusing every later request would.
    p.lock().unwrap_or_else(|e| e.into_inner())
}

fn cluster_ip(obj: &Value) -> Option<Ipv4Addr> {
    obj.pointer("/spec/clusterIP").and_then(Value::as_str).and_then(|s| s.parse().ok())
}

fn svc_type(obj: &Value) -> &str {
    obj.pointer("/spec/type").and_then(Value::as_str).unwrap_or("ClusterIP")
}

fn wants_node_ports(obj: &Value) -> bool {
    match svc_type(obj) {
        "NodePort" => true,
        "LoadBalancer" => obj.pointer("/spec/allocateLoadBalancerNodePorts").and_then(Value::as_bool) != Some(false),
        _ => false,
    }
}

fn node_ports(obj: &Value) -> Vec<u16> {
    let mut v: Vec<u16> = obj
        .pointer("/spec/ports")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|p| p.get("nodePort").and_then(Value::as_u64))
        .filter_map(|n| u16::try_from(n).ok())
        .collect();
    if let Some(h) = obj.pointer("/spec/healthCheckNodePort").and_then(Value::as_u64).and_then(|n| u16::try_from(n).ok()) {
        v.push(h);
    }
    v.sort_unstable();
    v.dedup();
    v
}

fn to_typed(obj: &Value) -> Result<Service, Errors> {
    serde_json::from_value(obj.clone()).map_err(|e| vec![FieldError::invalid("spec", Value::Null, e.to_string())])
}

fn to_value(svc: &Service) -> Result<Value, Errors> {
    serde_json::to_value(svc).map_err(|e| vec![FieldError::internal("spec", e.to_string())])
}

impl ServiceAllocator {
    pub fn new(config: ServiceConfig) -> ServiceAllocator {
        let pools = Pools { ips: IpAllocator::new(config.service_cidr), ports: PortAllocator::new(config.node_port_range.clone()) };
        ServiceAllocator { pools: Arc::new(Mutex::new(pools)), config }
    }

    /// Mark what stored Services hold (at start-up).
    pub fn restore(&self, services: &[Value]) {
        let mut pools = lock(&self.pools);
        for s in services {
            if let Some(ip) = cluster_ip(s) {
                let _ = pools.ips.allocate(ip);
            }
            for p in node_ports(s) {
                let _ = pools.ports.allocate(i64::from(p));
            }
        }
    }

    pub fn prepare_create(&self, obj: &mut Value) -> Result<Allocation, Errors> {
        let mut typed = to_typed(obj)?;
        svc_rules::set_defaults(&mut typed);
        let errs = svc_rules::validate(&typed, &self.config);
        if !errs.is_empty() {
            return Err(errs);
        }
        let status = json!({ "loadBalancer": {} });
        *obj = to_value(&typed)?;
        obj["status"] = status;
        let mut alloc = Allocation { pools: Some(self.pools.clone()), ..Allocation::none() };
        let mut pools = lock(&self.pools);
        if let Err(e) = allocate_ip(&mut pools, obj, &mut alloc) {
            drop(pools);
            alloc.release();
            return Err(e);
        }
        if let Err(e) = allocate_node_ports(&mut pools, obj, None, &mut alloc) {
            drop(pools);
            alloc.release();
            return Err(e);
        }
        Ok(alloc)
    }

    pub fn prepare_update(&self, obj: &mut Value, old: &Value) -> Result<Allocation, Errors> {
        let old_type = svc_type(old).to_string();
        let new_type = svc_type(obj).to_string();
        // Keep what was allocated when the client did not send it (kubectl apply
        // never sends clusterIP or nodePort): upstream `patchAllocatedValues`.
        if new_type != "ExternalName" && old_type != "ExternalName" {
            for f in ["clusterIP", "clusterIPs", "ipFamilies", "ipFamilyPolicy"] {
                let missing = obj.pointer(&format!("/spec/{f}")).is_none_or(|v| v.is_null() || v == "" || v == &json!([]));
                if missing {
                    if let Some(v) = old.pointer(&format!("/spec/{f}")) {
                        obj["spec"][f] = v.clone();
                    }
                }
            }
        }
        if wants_node_ports(obj) && wants_node_ports(old) {
            let old_ports: HashMap<(i64, String), i64> = old
                .pointer("/spec/ports")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .filter_map(|p| {
                    let key = (p.get("port")?.as_i64()?, p.get("protocol").and_then(Value::as_str).unwrap_or("TCP").to_string());
                    Some((key, p.get("nodePort")?.as_i64()?))
                })
                .collect();
            if let Some(ports) = obj.pointer_mut("/spec/ports").and_then(Value::as_array_mut) {
                for p in ports {
                    if p.get("nodePort").and_then(Value::as_i64).unwrap_or(0) == 0 {
                        let key = (
                            p.get("port").and_then(Value::as_i64).unwrap_or(0),
                            p.get("protocol").and_then(Value::as_str).unwrap_or("TCP").to_string(),
                        );
                        if let Some(np) = old_ports.get(&key) {
                            p["nodePort"] = json!(np);
                        }
                    }
                }
            }
        }
        // Type-dependent fields are dropped when the type no longer uses them
        // (upstream `dropTypeDependentFields`).
        if new_type == "ExternalName" {
            if let Some(spec) = obj.get_mut("spec").and_then(Value::as_object_mut) {
                if spec.get("clusterIP") == old.pointer("/spec/clusterIP") {
                    for f in ["clusterIP", "clusterIPs", "ipFamilies", "ipFamilyPolicy"] {
                        spec.remove(f);
                    }
                }
            }
        }
        if !wants_node_ports(obj) {
            if let Some(ports) = obj.pointer_mut("/spec/ports").and_then(Value::as_array_mut) {
                for p in ports {
                    if let Some(m) = p.as_object_mut() {
                        m.remove("nodePort");
                    }
                }
            }
        }
        let mut typed = to_typed(obj)?;
        svc_rules::set_defaults(&mut typed);
        let old_typed = to_typed(old)?;
        let errs = svc_rules::validate_update(&typed, &old_typed, &self.config);
        if !errs.is_empty() {
            return Err(errs);
        }
        let status = obj.get("status").cloned();
        *obj = to_value(&typed)?;
        if let Some(s) = status {
            obj["status"] = s;
        }
        let mut alloc = Allocation { pools: Some(self.pools.clone()), ..Allocation::none() };
        let mut pools = lock(&self.pools);
        // ClusterIP: kept, newly needed, or freed.
        let (old_ip, new_ip) = (cluster_ip(old), cluster_ip(obj));
        if new_type != "ExternalName" && new_ip.is_none() && !is_headless(obj) {
            if let Err(e) = allocate_ip(&mut pools, obj, &mut alloc) {
                drop(pools);
                alloc.release();
                return Err(e);
            }
        }
        if let Some(ip) = old_ip {
            if cluster_ip(obj) != Some(ip) {
                alloc.free_ips.push(ip);
            }
        }
        let keep: Vec<u16> = node_ports(old);
        if let Err(e) = allocate_node_ports(&mut pools, obj, Some(&keep), &mut alloc) {
            drop(pools);
            alloc.release();
            return Err(e);
        }
        let now = node_ports(obj);
        alloc.free_ports = keep.into_iter().filter(|p| !now.contains(p)).collect();
        Ok(alloc)
    }

    /// A Service was deleted: free its IP and ports.
    pub fn release_all(&self, obj: &Value) {
        let mut pools = lock(&self.pools);
        if let Some(ip) = cluster_ip(obj) {
            pools.ips.release(ip);
        }
        for p in node_ports(obj) {
            pools.ports.release(i64::from(p));
        }
    }
}

fn is_headless(obj: &Value) -> bool {
    obj.pointer("/spec/clusterIP").and_then(Value::as_str) == Some("None")
}

fn allocate_ip(pools: &mut Pools, obj: &mut Value, alloc: &mut Allocation) -> Result<(), Errors> {
    if svc_type(obj) == "ExternalName" || is_headless(obj) {
        return Ok(());
    }
    let requested = obj.pointer("/spec/clusterIP").and_then(Value::as_str).unwrap_or_default().to_string();
    let ip = if requested.is_empty() {
        pools.ips.allocate_next().map_err(|e| vec![FieldError::internal("spec.clusterIPs", format!("failed to allocate a serviceIP: {e}"))])?
    } else {
        let ip: Ipv4Addr = requested
            .parse()
            .map_err(|_| vec![FieldError::invalid("spec.clusterIPs[0]", requested.as_str(), "must be a valid IP address")])?;
        pools.ips.allocate(ip).map_err(|e| {
            vec![FieldError::invalid("spec.clusterIPs[0]", requested.as_str(), format!("failed to allocate IP {requested}: {e}"))]
        })?;
        ip
    };
    alloc.ips.push(ip);
    obj["spec"]["clusterIP"] = json!(ip.to_string());
    obj["spec"]["clusterIPs"] = json!([ip.to_string()]);
    Ok(())
}

/// Allocate missing node ports; ports in `keep` belong to this Service already.
fn allocate_node_ports(pools: &mut Pools, obj: &mut Value, keep: Option<&[u16]>, alloc: &mut Allocation) -> Result<(), Errors> {
    if !wants_node_ports(obj) {
        return Ok(());
    }
    let keep = keep.unwrap_or(&[]);
    // The same nodePort may serve one port number over TCP and UDP.
    let mut by_port: HashMap<i64, u16> = HashMap::new();
    let mut mine: Vec<u16> = Vec::new();
    let Some(ports) = obj.pointer_mut("/spec/ports").and_then(Value::as_array_mut) else {
        return Ok(());
    };
    for (i, p) in ports.iter_mut().enumerate() {
        let port = p.get("port").and_then(Value::as_i64).unwrap_or(0);
        let requested = p.get("nodePort").and_then(Value::as_u64).unwrap_or(0);
        let np = if requested != 0 {
            let np = u16::try_from(requested).map_err(|_| vec![FieldError::invalid(format!("spec.ports[{i}].nodePort"), requested, "must be between 1 and 65535, inclusive")])?;
            if !keep.contains(&np) && !mine.contains(&np) {
                pools.ports.allocate(i64::from(np)).map_err(|e| vec![FieldError::invalid(format!("spec.ports[{i}].nodePort"), requested, e.to_string())])?;
                alloc.ports.push(np);
                mine.push(np);
            }
            np
        } else if let Some(np) = by_port.get(&port) {
            *np
        } else {
            let np = pools
                .ports
                .allocate_next()
                .map_err(|e| vec![FieldError::internal(format!("spec.ports[{i}].nodePort"), format!("failed to allocate a nodePort: {e}"))])?;
            alloc.ports.push(np);
            mine.push(np);
            np
        };
        by_port.insert(port, np);
        p["nodePort"] = json!(np);
    }
    Ok(())
}
