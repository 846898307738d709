//! The RBAC authorizer's view of the cluster: every Role, ClusterRole and
//! binding, kept in memory from the store (one list, then a watch on
//! `/registry/rbac.authorization.k8s.io/`), so a request is authorized
//! without a store read (upstream reads them through informers). The rules
//! themselves are `apimachinery::rbac`'s.

use apimachinery::rbac::Policy;
use futures::StreamExt;
use std::sync::{Arc, RwLock};
use store::{Event, ListOptions, Store};

const PREFIX: &str = "/registry/rbac.authorization.k8s.io/";
/// How long to wait before re-listing after the watch failed.
const RETRY: std::time::Duration = std::time::Duration::from_secs(1);

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
        let (policy, revision) = load(store.as_ref()).await?;
        cache.set(policy.clone());
        let c = cache.clone();
        let task = tokio::spawn(async move {
            let (mut policy, mut revision) = (policy, revision);
            loop {
                match store.watch(PREFIX, revision).await {
                    Ok(mut events) => {
                        while let Some(ev) = events.next().await {
                            match ev {
                                Ok(ev) => {
                                    revision = ev.revision();
                                    apply(&mut policy, &ev);
                                    c.set(policy.clone());
                                }
                                Err(e) => {
                                    tracing::warn!(error = %e, "RBAC watch failed; relisting");
                                    break;
                                }
                            }
                        }
                    }
                    Err(e) => tracing::warn!(error = %e, "RBAC watch could not start; relisting"),
                }
                tokio::time::sleep(RETRY).await;
                match load(store.as_ref()).await {
                    Ok((p, r)) => {
                        policy = p;
                        revision = r;
                        c.set(policy.clone());
                    }
                    Err(e) => tracing::warn!(error = %e, "listing RBAC objects failed"),
                }
            }
        });
        Ok((cache, task))
    }
}

async fn load(store: &dyn Store) -> Result<(Policy, store::Revision), store::Error> {
    let mut policy = Policy::default();
    let mut opts = ListOptions::default();
    let revision = loop {
        let page = store.list(PREFIX, opts.clone()).await?;
        for kv in &page.kvs {
            put(&mut policy, &kv.key, &kv.value);
        }
        if !page.more {
            break page.revision;
        }
        opts = ListOptions {
            revision: Some(page.revision),
            start_after: page.kvs.last().map(|kv| kv.key.clone()),
            ..Default::default()
        };
    };
    Ok((policy, revision))
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
