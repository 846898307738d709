//! The `kubernetes` Service's Endpoints and EndpointSlice list every live API
//! server, as upstream's lease endpoint reconciler
//! (`pkg/controlplane/reconcilers/lease.go`, the default `--endpoint-reconciler-type`):
//! each server keeps `/registry/masterleases/<ip>` fresh every 10 s, and
//! writes the Endpoints from the leases renewed within the last 15 s. A server
//! that stops cleanly removes its lease and its address at once; one that is
//! killed drops out when its lease goes stale.
//!
//! Upstream's leases are etcd keys with a TTL; here a lease carries its
//! renewal time, so the servers' clocks must roughly agree (within seconds).

use crate::error::{ApiError, ApiResult};
use crate::registry::Registry;
use crate::resources;
use serde_json::{json, Value};
use std::time::Duration;
use store::Store;

pub const PREFIX: &str = "/registry/masterleases/";
/// How often each server renews its lease and reconciles (upstream: 10 s).
pub const INTERVAL: Duration = Duration::from_secs(10);
/// How long a lease counts without renewal (upstream's endpoint reconciler TTL: 15 s).
pub const TTL: Duration = Duration::from_secs(15);

fn unix_ms() -> i64 {
    jiff::Timestamp::now().as_millisecond()
}

/// Writes this server's lease (`ip` serving on `port`) with the time now.
pub async fn renew(store: &dyn Store, ip: &str, port: u16) -> Result<(), store::Error> {
    let key = format!("{PREFIX}{ip}");
    let value = json!({ "ip": ip, "port": port, "renewedMs": unix_ms() }).to_string().into_bytes();
    for _ in 0..4 {
        let res = match store.get(&key, None).await? {
            Some(kv) => store.update(&key, value.clone(), kv.mod_revision).await.map(|_| ()),
            None => store.create(&key, value.clone()).await.map(|_| ()),
        };
        match res {
            Err(store::Error::Conflict { .. } | store::Error::AlreadyExists { .. } | store::Error::NotFound { .. }) => {
                continue
            }
            other => return other,
        }
    }
    Ok(())
}

/// Removes this server's lease (a clean stop).
pub async fn remove(store: &dyn Store, ip: &str) -> Result<(), store::Error> {
    match store.delete(&format!("{PREFIX}{ip}"), None).await {
        Ok(_) | Err(store::Error::NotFound { .. }) => Ok(()),
        Err(e) => Err(e),
    }
}

/// Addresses whose lease was renewed within [`TTL`], sorted.
pub async fn live(store: &dyn Store) -> Result<Vec<String>, store::Error> {
    let (kvs, _) = crate::store_view::list_all(store, PREFIX).await?;
    let now = unix_ms();
    let mut ips: Vec<String> = kvs
        .iter()
        .filter_map(|kv| serde_json::from_slice::<Value>(&kv.value).ok())
        .filter(|v| v["renewedMs"].as_i64().is_some_and(|t| now - t < TTL.as_millis() as i64))
        .filter_map(|v| v["ip"].as_str().map(String::from))
        .collect();
    ips.sort();
    ips.dedup();
    Ok(ips)
}

/// The `kubernetes` Endpoints and EndpointSlice for `ips` on `port`.
pub fn objects(ips: &[String], port: u16) -> (Value, Value) {
    let port = i64::from(port);
    let endpoints = json!({
        "apiVersion": "v1", "kind": "Endpoints",
        "metadata": { "name": "kubernetes", "namespace": "default", "labels": { "endpointslice.kubernetes.io/skip-mirror": "true" } },
        "subsets": [{
            "addresses": ips.iter().map(|ip| json!({ "ip": ip })).collect::<Vec<_>>(),
            "ports": [{ "name": "https", "port": port, "protocol": "TCP" }],
        }],
    });
    let slice = json!({
        "apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
        "metadata": { "name": "kubernetes", "namespace": "default", "labels": { "kubernetes.io/service-name": "kubernetes" } },
        "addressType": "IPv4",
        "endpoints": ips.iter().map(|ip| json!({ "addresses": [ip], "conditions": { "ready": true } })).collect::<Vec<_>>(),
        "ports": [{ "name": "https", "port": port, "protocol": "TCP" }],
    });
    (endpoints, slice)
}

/// Renews this server's lease and writes the Endpoints of every live server
/// (this one included even if the store read of the leases lags).
pub async fn reconcile(reg: &Registry, ip: &str, port: u16) -> ApiResult<()> {
    renew(reg.store.as_ref(), ip, port).await?;
    let mut ips = live(reg.store.as_ref()).await?;
    if !ips.iter().any(|i| i == ip) {
        ips.push(ip.to_string());
        ips.sort();
    }
    write(reg, &ips, port).await
}

/// Writes the Endpoints and EndpointSlice for `ips` (when they differ).
pub async fn write(reg: &Registry, ips: &[String], port: u16) -> ApiResult<()> {
    let (endpoints, slice) = objects(ips, port);
    let ep = resources::find("", "v1", "endpoints").ok_or_else(|| ApiError::internal("endpoints resource missing"))?;
    let es = resources::find("discovery.k8s.io", "v1", "endpointslices")
        .ok_or_else(|| ApiError::internal("endpointslices resource missing"))?;
    crate::bootstrap::upsert(reg, ep, endpoints, "subsets").await?;
    crate::bootstrap::upsert(reg, es, slice, "endpoints").await
}

/// On a clean stop: this server's lease goes, and the Endpoints list the others.
pub async fn withdraw(reg: &Registry, ip: &str, port: u16) -> ApiResult<()> {
    remove(reg.store.as_ref(), ip).await?;
    let ips = live(reg.store.as_ref()).await?;
    if ips.is_empty() {
        // The last server: leave its address, as upstream does for a lone master.
        return Ok(());
    }
    write(reg, &ips, port).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints_list_every_server() {
        let (ep, slice) = objects(&["10.0.0.1".into(), "10.0.0.2".into()], 6443);
        assert_eq!(ep["subsets"][0]["addresses"], json!([{ "ip": "10.0.0.1" }, { "ip": "10.0.0.2" }]));
        assert_eq!(slice["endpoints"][1]["addresses"], json!(["10.0.0.2"]));
        assert_eq!(slice["ports"][0]["port"], json!(6443));
    }
}
