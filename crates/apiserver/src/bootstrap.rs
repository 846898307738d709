//! Objects every cluster has from its first start: the system namespaces and
//! the `kubernetes` Service with Endpoints and an EndpointSlice pointing at
//! this API server (upstream: `pkg/controlplane/controller/kubernetesservice`).

use crate::error::ApiResult;
use crate::registry::Registry;
use crate::resources;
use crate::Config;
use serde_json::{json, Value};
use std::net::Ipv4Addr;

/// The `IPAddressPool` in `kube-system` that holds the `--lb-pool` ranges.
pub const FLAG_POOL: &str = "rkube-lb-pool";
/// Label on objects rkube writes from its flags (so it may also remove them).
/// The field manager of the API server's own writes.
const MANAGER: &str = "rkube-apiserver";
const MANAGED_BY: (&str, &str) = ("app.kubernetes.io/managed-by", "rkube");

pub async fn run(reg: &Registry, cfg: &Config, kubernetes_ip: Ipv4Addr) -> ApiResult<()> {
    // Rebuild the allocators from what is stored before anything allocates.
    let svc = resources::find("", "v1", "services")
        .ok_or_else(|| crate::error::ApiError::internal("services resource missing"))?;
    let page = reg.list_raw(&svc.key_prefix(), store::ListOptions::default()).await?;
    let services: Vec<Value> = page.kvs.iter().filter_map(|kv| serde_json::from_slice(&kv.value).ok()).collect();
    reg.strategies.services.restore(&services);
    // Claims for what Services hold (a store written before claims existed).
    let made = crate::claims::restore(reg.store.as_ref(), &services).await?;
    if made > 0 {
        tracing::info!(claims = made, "claimed the addresses and ports of stored Services");
    }

    let ns = resources::find("", "v1", "namespaces")
        .ok_or_else(|| crate::error::ApiError::internal("namespaces resource missing"))?;
    for name in ["default", "kube-system", "kube-public", "kube-node-lease"] {
        if reg.get(ns, None, name).await.is_err() {
            let obj = json!({ "apiVersion": "v1", "kind": "Namespace", "metadata": { "name": name, "labels": { "kubernetes.io/metadata.name": name } } });
            create_ignoring_exists(reg, ns, None, obj).await?;
        }
    }

    rbac_defaults(reg).await?;

    let port = i64::from(cfg.port);
    let want_svc = json!({
        "apiVersion": "v1", "kind": "Service",
        "metadata": { "name": "kubernetes", "namespace": "default", "labels": { "component": "apiserver", "provider": "kubernetes" } },
        "spec": {
            "clusterIP": kubernetes_ip.to_string(),
            "ports": [{ "name": "https", "port": 443, "protocol": "TCP", "targetPort": port }],
            "sessionAffinity": "None",
            "type": "ClusterIP",
        },
    });
    match reg.get(svc, Some("default"), "kubernetes").await {
        Err(_) => {
            // Another API server starting at the same time may have claimed
            // its address first: then the Service is there now.
            if let Err(e) = create_ignoring_exists(reg, svc, Some("default"), want_svc).await {
                if reg.get(svc, Some("default"), "kubernetes").await.is_err() {
                    return Err(e);
                }
            }
        }
        Ok(cur) => {
            // Keep the target port in step with the API server's port.
            if cur.object.pointer("/spec/ports/0/targetPort") != Some(&json!(port)) {
                reg.modify(
                    svc,
                    Some("default"),
                    "kubernetes",
                    None,
                    false,
                    &crate::fieldmanager::Tracking::Update(MANAGER.into()),
                    |o| {
                        let mut o = o.clone();
                        o["spec"]["ports"] = want_svc["spec"]["ports"].clone();
                        Ok(o)
                    },
                )
                .await?;
            }
        }
    }

    // This server's address now; the master-lease loop adds the other live servers.
    crate::master_leases::reconcile(reg, &cfg.advertise_address.to_string(), cfg.port).await?;
    flag_pool(reg, cfg).await
}

/// Keeps the `--lb-pool` ranges as an `IPAddressPool` so they are visible
/// (`kubectl get ipaddresspools -A`) and allocated like any other pool; started
/// without the flag, a pool rkube created earlier from it is removed.
async fn flag_pool(reg: &Registry, cfg: &Config) -> ApiResult<()> {
    let r = resources::find("metallb.io", "v1beta1", "ipaddresspools")
        .ok_or_else(|| crate::error::ApiError::internal("ipaddresspools resource missing"))?;
    let ns = Some("kube-system");
    let addresses: Vec<String> = cfg.lb_pools.iter().map(ToString::to_string).collect();
    let current = reg.get(r, ns, FLAG_POOL).await.ok();
    let ours = |o: &Value| {
        o.pointer(&format!("/metadata/labels/{}", MANAGED_BY.0.replace('/', "~1"))) == Some(&json!(MANAGED_BY.1))
    };
    match current {
        None if addresses.is_empty() => Ok(()),
        None => {
            let obj = json!({
                "apiVersion": "metallb.io/v1beta1", "kind": "IPAddressPool",
                "metadata": { "name": FLAG_POOL, "namespace": "kube-system", "labels": { MANAGED_BY.0: MANAGED_BY.1 } },
                "spec": { "addresses": addresses, "autoAssign": true, "avoidBuggyIPs": false },
            });
            create_ignoring_exists(reg, r, ns, obj).await
        }
        Some(cur) if !ours(&cur.object) => Ok(()),
        Some(_) if addresses.is_empty() => {
            reg.delete(r, ns, FLAG_POOL, &crate::registry::DeleteOptions::default()).await.map(|_| ())
        }
        Some(cur) => {
            if cur.object.pointer("/spec/addresses") != Some(&json!(addresses)) {
                reg.modify(
                    r,
                    ns,
                    FLAG_POOL,
                    None,
                    false,
                    &crate::fieldmanager::Tracking::Update(MANAGER.into()),
                    |o| {
                        let mut o = o.clone();
                        o["spec"]["addresses"] = json!(addresses);
                        Ok(o)
                    },
                )
                .await?;
            }
            Ok(())
        }
    }
}

async fn create_ignoring_exists(
    reg: &Registry,
    r: &'static resources::Resource,
    ns: Option<&str>,
    obj: Value,
) -> ApiResult<()> {
    match reg.create(r, ns, obj, false, &crate::fieldmanager::Tracking::Update(MANAGER.into())).await {
        Ok(_) => Ok(()),
        Err(e) if e.code == 409 => Ok(()),
        Err(e) => Err(e),
    }
}

/// Create `want`, or make its `field` (and `ports`) equal to `want`'s.
pub(crate) async fn upsert(reg: &Registry, r: &'static resources::Resource, want: Value, field: &str) -> ApiResult<()> {
    match reg.get(r, Some("default"), "kubernetes").await {
        Err(_) => create_ignoring_exists(reg, r, Some("default"), want).await,
        Ok(cur) => {
            if cur.object.get(field) != want.get(field) || cur.object.get("ports") != want.get("ports") {
                reg.modify(
                    r,
                    Some("default"),
                    "kubernetes",
                    None,
                    false,
                    &crate::fieldmanager::Tracking::Update(MANAGER.into()),
                    |o| {
                        let mut o = o.clone();
                        o[field] = want[field].clone();
                        if let Some(p) = want.get("ports") {
                            o["ports"] = p.clone();
                        }
                        Ok(o)
                    },
                )
                .await?;
            }
            Ok(())
        }
    }
}

/// Upstream's bootstrap ClusterRoles and ClusterRoleBindings
/// (`apimachinery::rbac`), created when missing; a role marked
/// `rbac.authorization.kubernetes.io/autoupdate: "true"` also gets back the
/// rules it lost (upstream's reconciliation adds, never removes, rules).
async fn rbac_defaults(reg: &Registry) -> ApiResult<()> {
    let missing = |plural: &str| crate::error::ApiError::internal(format!("{plural} resource missing"));
    let roles =
        resources::find("rbac.authorization.k8s.io", "v1", "clusterroles").ok_or_else(|| missing("clusterroles"))?;
    let bindings = resources::find("rbac.authorization.k8s.io", "v1", "clusterrolebindings")
        .ok_or_else(|| missing("clusterrolebindings"))?;
    for role in apimachinery::rbac::bootstrap_cluster_roles() {
        let mut want = serde_json::to_value(&role).map_err(|e| crate::error::ApiError::internal(e.to_string()))?;
        want["apiVersion"] = json!("rbac.authorization.k8s.io/v1");
        want["kind"] = json!("ClusterRole");
        let name = role.metadata.name.clone().unwrap_or_default();
        match reg.get(roles, None, &name).await {
            Err(_) => create_ignoring_exists(reg, roles, None, want).await?,
            Ok(cur) => {
                let auto = cur.object.pointer("/metadata/annotations/rbac.authorization.kubernetes.io~1autoupdate")
                    != Some(&json!("false"));
                let have: Vec<Value> = cur.object["rules"].as_array().cloned().unwrap_or_default();
                let lost: Vec<Value> = want["rules"]
                    .as_array()
                    .cloned()
                    .unwrap_or_default()
                    .into_iter()
                    .filter(|r| !have.contains(r))
                    .collect();
                // Aggregated roles get their rules from the aggregation controller.
                if auto && !lost.is_empty() && role.aggregation_rule.is_none() {
                    reg.modify(
                        roles,
                        None,
                        &name,
                        None,
                        false,
                        &crate::fieldmanager::Tracking::Update(MANAGER.into()),
                        |o| {
                            let mut o = o.clone();
                            let mut rules = o["rules"].as_array().cloned().unwrap_or_default();
                            rules.extend(lost.iter().cloned());
                            o["rules"] = json!(rules);
                            Ok(o)
                        },
                    )
                    .await?;
                }
            }
        }
    }
    for binding in apimachinery::rbac::bootstrap_cluster_role_bindings() {
        let mut want = serde_json::to_value(&binding).map_err(|e| crate::error::ApiError::internal(e.to_string()))?;
        want["apiVersion"] = json!("rbac.authorization.k8s.io/v1");
        want["kind"] = json!("ClusterRoleBinding");
        let name = binding.metadata.name.clone().unwrap_or_default();
        if reg.get(bindings, None, &name).await.is_err() {
            create_ignoring_exists(reg, bindings, None, want).await?;
        }
    }
    Ok(())
}
