//! Which Secrets, ConfigMaps, ServiceAccounts and PersistentVolumeClaims the pods
//! bound to each node use: the graph of upstream's Node authorizer
//! (`plugin/pkg/auth/authorizer/node/graph.go`, `graph_populator.go`), kept in
//! memory from a store watch on pods, so that a node may read exactly the objects
//! its own pods reference.

use crate::store_view::{self, StoreView};
use k8s_openapi::api::core::v1::{Pod, PodSpec};
use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use store::{Event, KeyValue, Store};

const PREFIX: &str = "/registry/core/pods/";

/// The kinds a pod references.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RefKind {
    Secret,
    ConfigMap,
    ServiceAccount,
    PersistentVolumeClaim,
}

impl RefKind {
    /// The kind of a resource name (`secrets`, ...), if the graph tracks it.
    pub fn of_resource(group: &str, resource: &str) -> Option<RefKind> {
        match (group, resource) {
            ("", "secrets") => Some(RefKind::Secret),
            ("", "configmaps") => Some(RefKind::ConfigMap),
            ("", "serviceaccounts") => Some(RefKind::ServiceAccount),
            ("", "persistentvolumeclaims") => Some(RefKind::PersistentVolumeClaim),
            _ => None,
        }
    }
}

/// One object a pod uses (in the pod's namespace).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Ref {
    pub kind: RefKind,
    pub namespace: String,
    pub name: String,
}

/// The node a pod is bound to and what it references (volumes, projected sources,
/// env and envFrom of every container, imagePullSecrets, its ServiceAccount).
pub fn pod_refs(pod: &Pod) -> (Option<String>, Vec<Ref>) {
    let ns = pod.metadata.namespace.clone().unwrap_or_else(|| "default".into());
    let Some(spec) = pod.spec.as_ref() else { return (None, Vec::new()) };
    let node = spec.node_name.clone().filter(|n| !n.is_empty());
    let mut out = Vec::new();
    let mut add = |kind: RefKind, name: Option<&String>| {
        if let Some(name) = name.filter(|n| !n.is_empty()) {
            let r = Ref { kind, namespace: ns.clone(), name: name.clone() };
            if !out.contains(&r) {
                out.push(r);
            }
        }
    };
    spec_refs(spec, &mut add);
    (node, out)
}

fn spec_refs(spec: &PodSpec, add: &mut impl FnMut(RefKind, Option<&String>)) {
    add(RefKind::ServiceAccount, spec.service_account_name.as_ref().or(Some(&"default".to_string())));
    for s in spec.image_pull_secrets.iter().flatten() {
        add(RefKind::Secret, Some(&s.name));
    }
    for v in spec.volumes.iter().flatten() {
        if let Some(s) = &v.secret {
            add(RefKind::Secret, s.secret_name.as_ref());
        }
        if let Some(c) = &v.config_map {
            add(RefKind::ConfigMap, Some(&c.name));
        }
        if let Some(c) = &v.persistent_volume_claim {
            add(RefKind::PersistentVolumeClaim, Some(&c.claim_name));
        }
        for src in v.projected.iter().flat_map(|p| p.sources.iter().flatten()) {
            if let Some(s) = &src.secret {
                add(RefKind::Secret, Some(&s.name));
            }
            if let Some(c) = &src.config_map {
                add(RefKind::ConfigMap, Some(&c.name));
            }
        }
    }
    let containers = spec.containers.iter().chain(spec.init_containers.iter().flatten());
    for c in containers {
        for e in c.env.iter().flatten() {
            if let Some(from) = &e.value_from {
                if let Some(s) = &from.secret_key_ref {
                    add(RefKind::Secret, Some(&s.name));
                }
                if let Some(m) = &from.config_map_key_ref {
                    add(RefKind::ConfigMap, Some(&m.name));
                }
            }
        }
        for f in c.env_from.iter().flatten() {
            if let Some(s) = &f.secret_ref {
                add(RefKind::Secret, Some(&s.name));
            }
            if let Some(m) = &f.config_map_ref {
                add(RefKind::ConfigMap, Some(&m.name));
            }
        }
    }
}

#[derive(Debug, Default)]
struct Graph {
    /// Pod key -> (node, refs).
    pods: HashMap<String, (String, Vec<Ref>)>,
    /// (node, ref) -> how many of the node's pods use it.
    uses: HashMap<(String, Ref), usize>,
}

impl Graph {
    fn put(&mut self, key: &str, value: &[u8]) {
        self.remove(key);
        let Ok(pod) = serde_json::from_slice::<Pod>(value) else { return };
        let (Some(node), refs) = pod_refs(&pod) else { return };
        for r in &refs {
            *self.uses.entry((node.clone(), r.clone())).or_default() += 1;
        }
        self.pods.insert(key.to_string(), (node, refs));
    }

    fn remove(&mut self, key: &str) {
        let Some((node, refs)) = self.pods.remove(key) else { return };
        for r in refs {
            let k = (node.clone(), r);
            if let Some(n) = self.uses.get_mut(&k) {
                *n -= 1;
                if *n == 0 {
                    self.uses.remove(&k);
                }
            }
        }
    }
}

/// The graph, shared by every request.
#[derive(Debug, Default)]
pub struct NodeGraph {
    graph: RwLock<Graph>,
}

impl NodeGraph {
    /// Whether a pod bound to `node` references this object.
    pub fn uses(&self, node: &str, kind: RefKind, namespace: &str, name: &str) -> bool {
        let r = Ref { kind, namespace: namespace.to_string(), name: name.to_string() };
        self.graph.read().map(|g| g.uses.contains_key(&(node.to_string(), r))).unwrap_or(false)
    }

    /// Adds one pod's object (unit tests of the authorizer).
    #[cfg(test)]
    pub fn put_for_test(&self, key: &str, value: &[u8]) {
        self.with(|g| g.put(key, value));
    }

    fn with(&self, f: impl FnOnce(&mut Graph)) {
        if let Ok(mut g) = self.graph.write() {
            f(&mut g);
        }
    }

    /// Loads the pods and keeps the graph in step until the task is aborted;
    /// returns once the first listing is in.
    pub async fn start(store: Arc<dyn Store>) -> Result<(Arc<NodeGraph>, tokio::task::JoinHandle<()>), store::Error> {
        let graph = Arc::new(NodeGraph::default());
        let task = store_view::follow(store, PREFIX, "node graph", graph.clone()).await?;
        Ok((graph, task))
    }
}

impl StoreView for NodeGraph {
    fn reset(&self, kvs: &[KeyValue]) {
        let mut fresh = Graph::default();
        for kv in kvs {
            fresh.put(&kv.key, &kv.value);
        }
        self.with(|g| *g = fresh);
    }

    fn apply(&self, ev: &Event) {
        match ev {
            Event::Put { kv, .. } => self.with(|g| g.put(&kv.key, &kv.value)),
            Event::Delete { prev, .. } => self.with(|g| g.remove(&prev.key)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod(node: &str) -> Vec<u8> {
        serde_json::to_vec(&serde_json::json!({
            "metadata": {"name": "p", "namespace": "team"},
            "spec": {
                "nodeName": node,
                "serviceAccountName": "builder",
                "imagePullSecrets": [{"name": "pull"}],
                "containers": [{
                    "name": "c",
                    "env": [{"name": "A", "valueFrom": {"secretKeyRef": {"name": "env-secret", "key": "k"}}},
                            {"name": "B", "valueFrom": {"configMapKeyRef": {"name": "env-cm", "key": "k"}}}],
                    "envFrom": [{"configMapRef": {"name": "all-cm"}}],
                }],
                "volumes": [
                    {"name": "s", "secret": {"secretName": "vol-secret"}},
                    {"name": "t", "projected": {"sources": [{"configMap": {"name": "kube-root-ca.crt"}}, {"serviceAccountToken": {"path": "token"}}]}},
                    {"name": "d", "persistentVolumeClaim": {"claimName": "data"}},
                ],
            },
        }))
        .expect("json")
    }

    #[test]
    fn a_nodes_pods_reference_what_it_may_read() {
        let g = NodeGraph::default();
        g.with(|gr| gr.put("/registry/core/pods/team/p", &pod("node2")));
        g.with(|gr| gr.put("/registry/core/pods/team/q", &pod("node2")));
        for (kind, name) in [
            (RefKind::Secret, "env-secret"),
            (RefKind::Secret, "vol-secret"),
            (RefKind::Secret, "pull"),
            (RefKind::ConfigMap, "env-cm"),
            (RefKind::ConfigMap, "all-cm"),
            (RefKind::ConfigMap, "kube-root-ca.crt"),
            (RefKind::ServiceAccount, "builder"),
            (RefKind::PersistentVolumeClaim, "data"),
        ] {
            assert!(g.uses("node2", kind, "team", name), "{kind:?} {name}");
            assert!(!g.uses("node3", kind, "team", name), "not node3's: {kind:?} {name}");
            assert!(!g.uses("node2", kind, "other", name), "another namespace: {kind:?} {name}");
        }
        assert!(!g.uses("node2", RefKind::Secret, "team", "unrelated"));
        // One of two pods goes: still used; both go (or move): no longer.
        g.with(|gr| gr.remove("/registry/core/pods/team/p"));
        assert!(g.uses("node2", RefKind::Secret, "team", "vol-secret"));
        g.with(|gr| gr.put("/registry/core/pods/team/q", &pod("node3")));
        assert!(!g.uses("node2", RefKind::Secret, "team", "vol-secret"));
        assert!(g.uses("node3", RefKind::Secret, "team", "vol-secret"));
        // An unscheduled pod gives no node anything.
        g.with(|gr| gr.put("/registry/core/pods/team/r", &pod("")));
        assert_eq!(g.graph.read().map(|x| x.pods.len()).unwrap_or(0), 1);
    }
}
