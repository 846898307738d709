//! The RBAC authorizer's view of the cluster: every Role, ClusterRole and
//! binding, kept in memory from the store (one list, then a watch on
//! `/registry/rbac.authorization.k8s.io/`), so a request is authorized
//! without a store read (upstream reads them through informers). The rules
//! themselves are `apimachinery::rbac`'s.

use crate::store_view::{self, StoreView};
use apimachinery::rbac::Policy;
use std::sync::{Arc, RwLock};
use store::{Event, KeyValue, Store};

const PREFIX: &str = "/registry/rbac.authorization.k8s.io/";

/// The current RBAC objects, replaced whole on every change (readers keep
/// the snapshot they took).
#[derive(Debug, Default)]
pub struct RbacCache {
    policy: RwLock<Arc<Policy>>,
}

impl RbacCache {
    pub fn policy(&self) -> Arc<Policy> {
        self.policy.read().map(|p| p.clone()).unwrap_or_default()
    }

    fn set(&self, p: Policy) {
        if let Ok(mut w) = self.policy.write() {
            *w = Arc::new(p);
        }
    }

    /// Loads the objects and keeps them in step until the task is aborted.
    /// Returns once the first listing is in, so no request is judged on an
    /// empty policy.
    pub async fn start(store: Arc<dyn Store>) -> Result<(Arc<RbacCache>, tokio::task::JoinHandle<()>), store::Error> {
        let cache = Arc::new(RbacCache::default());
        let task = store_view::follow(store, PREFIX, "RBAC", cache.clone()).await?;
        Ok((cache, task))
    }
}

impl StoreView for RbacCache {
    fn reset(&self, kvs: &[KeyValue]) {
        let mut policy = Policy::default();
        for kv in kvs {
            put(&mut policy, &kv.key, &kv.value);
        }
        self.set(policy);
    }

    /// Readers keep the snapshot they took: the change goes into a copy.
    fn apply(&self, ev: &Event) {
        let mut policy = (*self.policy()).clone();
        apply(&mut policy, ev);
        self.set(policy);
    }
}

fn apply(policy: &mut Policy, ev: &Event) {
    match ev {
        Event::Put { kv, .. } => put(policy, &kv.key, &kv.value),
        Event::Delete { prev, .. } => remove(policy, &prev.key),
    }
}

/// (plural, namespace, name) of a key under [`PREFIX`].
fn split(key: &str) -> Option<(&str, Option<&str>, &str)> {
    let rest = key.strip_prefix(PREFIX)?;
    let parts: Vec<&str> = rest.split('/').collect();
    match parts.as_slice() {
        [plural, name] => Some((plural, None, name)),
        [plural, ns, name] => Some((plural, Some(ns), name)),
        _ => None,
    }
}

fn put(policy: &mut Policy, key: &str, value: &[u8]) {
    let Some((plural, ns, name)) = split(key) else { return };
    let parsed = match (plural, ns) {
        ("clusterroles", None) => serde_json::from_slice(value).map(|r| {
            policy.cluster_roles.insert(name.to_string(), r);
        }),
        ("clusterrolebindings", None) => serde_json::from_slice(value).map(|b| {
            policy.cluster_role_bindings.insert(name.to_string(), b);
        }),
        ("roles", Some(ns)) => serde_json::from_slice(value).map(|r| {
            policy.roles.insert((ns.to_string(), name.to_string()), r);
        }),
        ("rolebindings", Some(ns)) => serde_json::from_slice(value).map(|b| {
            policy.role_bindings.insert((ns.to_string(), name.to_string()), b);
        }),
        _ => Ok(()),
    };
    if let Err(e) = parsed {
        tracing::warn!(key, error = %e, "unreadable RBAC object left out of authorization");
    }
}

fn remove(policy: &mut Policy, key: &str) {
    let Some((plural, ns, name)) = split(key) else { return };
    match (plural, ns) {
        ("clusterroles", None) => drop(policy.cluster_roles.remove(name)),
        ("clusterrolebindings", None) => drop(policy.cluster_role_bindings.remove(name)),
        ("roles", Some(ns)) => drop(policy.roles.remove(&(ns.to_string(), name.to_string()))),
        ("rolebindings", Some(ns)) => drop(policy.role_bindings.remove(&(ns.to_string(), name.to_string()))),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_name_the_kind_namespace_and_object() {
        assert_eq!(
            split("/registry/rbac.authorization.k8s.io/clusterroles/view"),
            Some(("clusterroles", None, "view"))
        );
        assert_eq!(
            split("/registry/rbac.authorization.k8s.io/rolebindings/team/r"),
            Some(("rolebindings", Some("team"), "r"))
        );
        let mut p = Policy::default();
        put(
            &mut p,
            "/registry/rbac.authorization.k8s.io/roles/team/reader",
            br#"{"metadata":{"name":"reader"},"rules":[]}"#,
        );
        assert!(p.roles.contains_key(&("team".to_string(), "reader".to_string())));
        remove(&mut p, "/registry/rbac.authorization.k8s.io/roles/team/reader");
        assert!(p.roles.is_empty());
    }
}
