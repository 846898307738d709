//! What a user may do (upstream's authorizer chain, `pkg/kubeapiserver/authorizer`):
//!
//! - `system:masters`: everything, never asking RBAC (as upstream);
//! - `system:nodes` (`node_rules`): their own Node and node Lease only, among
//!   those kinds (upstream's NodeRestriction); Secrets, ConfigMaps, PVCs and
//!   ServiceAccount tokens only of their own pods (upstream's Node authorizer,
//!   over `node_graph.rs`); everything else for now;
//! - everyone else: RBAC (`apimachinery::rbac`) over the cluster's Roles,
//!   ClusterRoles and bindings (`rbac.rs` keeps them in memory), starting from
//!   upstream's bootstrap policy: `system:bootstrappers` may ask for node
//!   certificates (`system:node-bootstrapper`), every authenticated user may
//!   read discovery, `/version`, `/healthz` (`system:discovery`,
//!   `system:public-info-viewer`) and ask what it may do (`system:basic-user`).

use crate::authn::{User, MASTERS, NODES};
use crate::node_graph::{NodeGraph, RefKind};
use apimachinery::rbac::{Policy, Request};

/// `authorizer.Attributes` of a resource request.
#[derive(Debug, Clone, Copy)]
pub struct Attributes<'a> {
    pub verb: &'a str,
    pub group: &'a str,
    pub resource: &'a str,
    pub subresource: Option<&'a str>,
    pub namespace: Option<&'a str>,
    pub name: Option<&'a str>,
}

/// The Kubernetes verb of a request (`endpoints/request.RequestInfoFactory`).
pub fn verb(method: &http::Method, named: bool, watch: bool) -> &'static str {
    match (method.as_str(), named) {
        ("GET" | "HEAD", true) if watch => "watch",
        ("GET" | "HEAD", true) => "get",
        ("GET" | "HEAD", false) if watch => "watch",
        ("GET" | "HEAD", false) => "list",
        ("POST", _) => "create",
        ("PUT", _) => "update",
        ("PATCH", _) => "patch",
        ("DELETE", true) => "delete",
        ("DELETE", false) => "deletecollection",
        _ => "",
    }
}

/// Allowed (with why, for access reviews), or upstream's forbidden message
/// (`forbiddenMessage` in
/// `staging/src/k8s.io/apiserver/pkg/endpoints/handlers/responsewriters/errors.go`).
pub fn authorize(
    user: &User,
    a: &Attributes<'_>,
    policy: &Policy,
    graph: Option<&NodeGraph>,
) -> Result<String, String> {
    if user.in_group(MASTERS) {
        return Ok(format!("{MASTERS} may do anything"));
    }
    if user.in_group(NODES) {
        return node_rules(user, a, graph);
    }
    let req = Request {
        user: &user.name,
        groups: &user.groups,
        verb: a.verb,
        api_group: a.group,
        resource: a.resource,
        subresource: a.subresource,
        name: a.name,
        namespace: a.namespace,
        path: None,
    };
    if policy.allows(&req) {
        return Ok("RBAC: allowed".into());
    }
    Err(forbidden_message(user, a))
}

/// What a node (`system:node:<name>` in `system:nodes`) may do. As upstream's
/// NodeRestriction (`plugin/pkg/admission/noderestriction/admission.go`) a node
/// changes only its own Node object and its own Lease in `kube-node-lease`; the
/// rest stays open to nodes for now (the node agent also runs the Service proxy,
/// the L2 announcer and the pod network with these credentials), until the
/// graph-based parts of upstream's Node authorizer land (secrets and configMaps
/// only of the node's pods).
fn node_rules(user: &User, a: &Attributes<'_>, graph: Option<&NodeGraph>) -> Result<String, String> {
    const WRITES: &[&str] = &["create", "update", "patch", "delete", "deletecollection"];
    let own = user.name.strip_prefix("system:node:");
    let writes = WRITES.contains(&a.verb);
    let deny = |reason: String| Err(format!("{}: {reason}", forbidden_message(user, a)));
    // What no node needs and that would lift it past every rule here: acting as
    // someone else, approving certificates (its own with O=system:masters), and
    // making or binding pods (NodeRestriction allows only mirror pods; rkube's
    // agent makes none), which would hand it their Secrets through the graph.
    if a.verb == "impersonate" {
        return deny("nodes may not impersonate".into());
    }
    if a.group == "certificates.k8s.io" && a.subresource == Some("approval") {
        return deny("nodes may not approve certificate signing requests".into());
    }
    if a.group.is_empty()
        && a.resource == "pods"
        && (a.subresource == Some("binding") || (a.verb == "create" && a.subresource.is_none()))
    {
        return deny("nodes may not create or bind pods".into());
    }
    match (a.group, a.resource, RefKind::of_resource(a.group, a.resource)) {
        ("", "nodes", _) if writes => match (own, a.name) {
            (None, _) => deny(format!("{:?} is not a node name (system:node:<name>)", user.name)),
            (Some(me), Some(name)) if name != me => deny(other_node(me, name)),
            (_, None) if a.verb == "deletecollection" => deny("a node cannot delete nodes".into()),
            _ => Ok(format!("{NODES}: its own Node")),
        },
        ("coordination.k8s.io", "leases", _) if writes && a.namespace == Some("kube-node-lease") => {
            match (own, a.name) {
                (Some(me), Some(name)) if name != me => deny(OTHER_LEASE.into()),
                (Some(_), _) if a.verb != "deletecollection" => Ok(format!("{NODES}: its own Lease")),
                _ => deny(OTHER_LEASE.into()),
            }
        }
        (_, _, Some(kind)) => {
            let known = match (own, a.namespace, a.name, graph) {
                (Some(me), Some(ns), Some(name), Some(g)) if graph_request(a, kind) => g.uses(me, kind, ns, name),
                _ => false,
            };
            if known {
                Ok(format!("{NODES}: referenced by a pod bound to the node"))
            } else {
                deny(format!("no relationship found between node '{}' and this object", own.unwrap_or(&user.name)))
            }
        }
        _ => Ok(format!(
            "{NODES}: allowed to nodes (upstream's narrower rules for the other kinds are not in place yet)"
        )),
    }
}

/// NodeRestriction's reasons (`plugin/pkg/admission/noderestriction/admission.go`).
const OTHER_LEASE: &str = "can only access node lease with the same name as the requesting node";

fn other_node(me: &str, name: &str) -> String {
    format!("node {me:?} is not allowed to modify node {name:?}")
}

/// A node creating a Node or a node Lease names only itself (NodeRestriction; a
/// create carries its name in the body, not the URL the authorizer saw).
pub fn node_create_allowed(
    user: &User,
    group: &str,
    resource: &str,
    namespace: Option<&str>,
    name: &str,
) -> Result<(), String> {
    if !user.in_group(NODES) {
        return Ok(());
    }
    let own = user.name.strip_prefix("system:node:");
    let lease = group == "coordination.k8s.io" && resource == "leases" && namespace == Some("kube-node-lease");
    let node = group.is_empty() && resource == "nodes";
    match own {
        _ if !lease && !node => Ok(()),
        Some(me) if me == name => Ok(()),
        Some(me) if node => Err(other_node(me, name)),
        _ => Err(OTHER_LEASE.into()),
    }
}

/// What the graph can allow a node: a `get` of the object, or a token for a
/// ServiceAccount.
fn graph_request(a: &Attributes<'_>, kind: RefKind) -> bool {
    let read = a.verb == "get" && a.subresource.is_none();
    read || (kind == RefKind::ServiceAccount && a.verb == "create" && a.subresource == Some("token"))
}

/// A node's read of a Secret, ConfigMap, PersistentVolumeClaim or ServiceAccount (or a
/// token for it) that the graph does not know yet: true if a pod bound to the node
/// references it in the store (the graph follows the store a moment behind).
pub async fn node_reference_in_store(user: &User, a: &Attributes<'_>, store: &dyn store::Store) -> bool {
    let (Some(me), Some(kind), Some(ns), Some(name)) = (
        user.name.strip_prefix("system:node:").filter(|_| user.in_group(NODES)),
        RefKind::of_resource(a.group, a.resource),
        a.namespace,
        a.name,
    ) else {
        return false;
    };
    if !graph_request(a, kind) {
        return false;
    }
    let Ok((pods, _)) = crate::store_view::list_all(store, &format!("/registry/core/pods/{ns}/")).await else {
        return false;
    };
    pods.iter().filter_map(|kv| serde_json::from_slice(&kv.value).ok()).any(|pod| {
        let (node, refs) = crate::node_graph::pod_refs(&pod);
        node.as_deref() == Some(me) && refs.iter().any(|r| r.kind == kind && r.name == name)
    })
}

/// Whether a non-resource request (`/metrics`, `/healthz`, ...) is allowed.
pub fn authorize_path(user: &User, verb: &str, path: &str, policy: &Policy) -> bool {
    if user.in_group(MASTERS) || user.in_group(NODES) {
        return true;
    }
    let req = Request { user: &user.name, groups: &user.groups, verb, path: Some(path), ..Default::default() };
    policy.allows(&req)
}

fn forbidden_message(user: &User, a: &Attributes<'_>) -> String {
    let mut qualified = a.resource.to_string();
    if !a.group.is_empty() {
        qualified = format!("{qualified}.{}", a.group);
    }
    let resource = match a.subresource {
        Some(s) => format!("{}/{s}", a.resource),
        None => a.resource.to_string(),
    };
    let who = match a.namespace {
        Some(ns) => format!(
            "User {:?} cannot {} resource {resource:?} in API group {:?} in the namespace {ns:?}",
            user.name, a.verb, a.group
        ),
        None => format!(
            "User {:?} cannot {} resource {resource:?} in API group {:?} at the cluster scope",
            user.name, a.verb, a.group
        ),
    };
    match a.name {
        Some(n) => format!("{qualified} {n:?} is forbidden: {who}"),
        None => format!("{qualified} is forbidden: {who}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn attrs<'a>(verb: &'a str, group: &'a str, resource: &'a str, ns: Option<&'a str>) -> Attributes<'a> {
        Attributes { verb, group, resource, subresource: None, namespace: ns, name: None }
    }

    fn bootstrap_policy() -> Policy {
        let mut p = Policy::default();
        for r in apimachinery::rbac::bootstrap_cluster_roles() {
            p.cluster_roles.insert(r.metadata.name.clone().unwrap_or_default(), r);
        }
        for b in apimachinery::rbac::bootstrap_cluster_role_bindings() {
            p.cluster_role_bindings.insert(b.metadata.name.clone().unwrap_or_default(), b);
        }
        p
    }

    #[test]
    fn bootstrappers_only_ask_for_certificates() {
        let p = bootstrap_policy();
        let b = User::new("system:bootstrap:abcdef", [crate::authn::BOOTSTRAPPERS.to_string()]);
        assert!(authorize(&b, &attrs("create", "certificates.k8s.io", "certificatesigningrequests", None), &p, None)
            .is_ok());
        assert!(
            authorize(&b, &attrs("watch", "certificates.k8s.io", "certificatesigningrequests", None), &p, None).is_ok()
        );
        let mut approve = attrs("update", "certificates.k8s.io", "certificatesigningrequests", None);
        approve.subresource = Some("approval");
        assert!(authorize(&b, &approve, &p, None).is_err());
        assert_eq!(
            authorize(&b, &attrs("list", "", "secrets", Some("kube-system")), &p, None).unwrap_err(),
            "secrets is forbidden: User \"system:bootstrap:abcdef\" cannot list resource \"secrets\" in API group \"\" in the namespace \"kube-system\""
        );
        let mut named = attrs("get", "", "nodes", None);
        named.name = Some("n1");
        assert_eq!(
            authorize(&b, &named, &p, None).unwrap_err(),
            "nodes \"n1\" is forbidden: User \"system:bootstrap:abcdef\" cannot get resource \"nodes\" in API group \"\" at the cluster scope"
        );
        assert!(authorize(&User::admin(), &attrs("delete", "", "secrets", Some("x")), &p, None).is_ok());
        let nobody = User::new("jane", []);
        assert!(authorize(&nobody, &attrs("get", "", "pods", Some("default")), &p, None).is_err());
        assert!(authorize_path(&nobody, "get", "/version", &p), "system:public-info-viewer");
        assert!(!authorize_path(&nobody, "get", "/metrics", &p));
    }

    #[test]
    fn nodes_change_only_their_own_node_and_lease() {
        let p = bootstrap_policy();
        let n2 = User::new("system:node:node2", [NODES.to_string()]);
        let named = |verb: &'static str, resource: &'static str, ns: Option<&'static str>, name: &'static str| {
            let group = if resource == "leases" { "coordination.k8s.io" } else { "" };
            Attributes { name: Some(name), ..attrs(verb, group, resource, ns) }
        };
        assert!(authorize(&n2, &named("patch", "nodes", None, "node2"), &p, None).is_ok());
        let mut status = named("patch", "nodes", None, "node2");
        status.subresource = Some("status");
        assert!(authorize(&n2, &status, &p, None).is_ok());
        assert!(authorize(&n2, &attrs("create", "", "nodes", None), &p, None).is_ok(), "registering itself");
        assert_eq!(
            authorize(&n2, &named("patch", "nodes", None, "node3"), &p, None).unwrap_err(),
            "nodes \"node3\" is forbidden: User \"system:node:node2\" cannot patch resource \"nodes\" in API group \"\" at the cluster scope: node \"node2\" is not allowed to modify node \"node3\""
        );
        assert!(authorize(&n2, &named("delete", "nodes", None, "node1"), &p, None).is_err());
        assert!(authorize(&n2, &attrs("deletecollection", "", "nodes", None), &p, None).is_err());
        assert!(authorize(&n2, &named("get", "nodes", None, "node3"), &p, None).is_ok(), "reads stay open");
        assert!(authorize(&n2, &named("update", "leases", Some("kube-node-lease"), "node2"), &p, None).is_ok());
        let e = authorize(&n2, &named("update", "leases", Some("kube-node-lease"), "node3"), &p, None).unwrap_err();
        assert!(e.ends_with(": can only access node lease with the same name as the requesting node"), "{e}");
        assert!(authorize(&n2, &named("update", "leases", Some("kube-system"), "rkube-l2-node2"), &p, None).is_ok());
        // A node identity that names no node changes no Node.
        let odd = User::new("someone", [NODES.to_string()]);
        assert!(authorize(&odd, &named("patch", "nodes", None, "node2"), &p, None).is_err());
    }

    #[test]
    fn nodes_create_only_their_own_node_and_lease() {
        let n2 = User::new("system:node:node2", [NODES.to_string()]);
        assert!(node_create_allowed(&n2, "", "nodes", None, "node2").is_ok());
        assert!(node_create_allowed(&n2, "", "nodes", None, "node9").is_err());
        assert!(node_create_allowed(&n2, "coordination.k8s.io", "leases", Some("kube-node-lease"), "node9").is_err());
        assert!(
            node_create_allowed(&n2, "coordination.k8s.io", "leases", Some("kube-system"), "rkube-l2-node2").is_ok()
        );
        assert!(node_create_allowed(&User::admin(), "", "nodes", None, "node9").is_ok());
    }

    #[test]
    fn nodes_cannot_step_outside_their_rules() {
        let p = bootstrap_policy();
        let n2 = User::new("system:node:node2", [NODES.to_string()]);
        assert!(authorize(&n2, &attrs("impersonate", "", "groups", None), &p, None).is_err());
        let mut approve = attrs("update", "certificates.k8s.io", "certificatesigningrequests", None);
        approve.subresource = Some("approval");
        assert!(authorize(&n2, &approve, &p, None).is_err());
        assert!(authorize(&n2, &attrs("create", "", "pods", Some("default")), &p, None).is_err());
        let mut bind = attrs("create", "", "pods", Some("default"));
        bind.subresource = Some("binding");
        assert!(authorize(&n2, &bind, &p, None).is_err());
        let mut status = attrs("patch", "", "pods", Some("default"));
        status.subresource = Some("status");
        assert!(authorize(&n2, &status, &p, None).is_ok(), "pod status stays the node's to write");
    }

    #[test]
    fn nodes_read_only_what_their_pods_reference() {
        let p = bootstrap_policy();
        let g = NodeGraph::default();
        let pod = serde_json::json!({
            "metadata": {"name": "web", "namespace": "shop"},
            "spec": {"nodeName": "node2", "containers": [{"name": "c", "envFrom": [{"secretRef": {"name": "db"}}]}]},
        });
        g.put_for_test("/registry/core/pods/shop/web", &serde_json::to_vec(&pod).unwrap_or_default());
        let n2 = User::new("system:node:node2", [NODES.to_string()]);
        let n3 = User::new("system:node:node3", [NODES.to_string()]);
        let get = |resource: &'static str, name: &'static str| Attributes {
            name: Some(name),
            ..attrs("get", "", resource, Some("shop"))
        };
        assert!(authorize(&n2, &get("secrets", "db"), &p, Some(&g)).is_ok());
        assert_eq!(
            authorize(&n3, &get("secrets", "db"), &p, Some(&g)).unwrap_err(),
            "secrets \"db\" is forbidden: User \"system:node:node3\" cannot get resource \"secrets\" in API group \"\" in the namespace \"shop\": no relationship found between node 'node3' and this object"
        );
        assert!(authorize(&n2, &get("secrets", "other"), &p, Some(&g)).is_err());
        assert!(authorize(&n2, &attrs("list", "", "secrets", Some("shop")), &p, Some(&g)).is_err(), "no listing");
        assert!(authorize(&n2, &get("configmaps", "db"), &p, Some(&g)).is_err(), "a Secret, not a ConfigMap");
        let mut token = Attributes { name: Some("default"), ..attrs("create", "", "serviceaccounts", Some("shop")) };
        token.subresource = Some("token");
        assert!(authorize(&n2, &token, &p, Some(&g)).is_ok(), "the pod's ServiceAccount");
        assert!(authorize(&n3, &token, &p, Some(&g)).is_err());
        assert!(authorize(&n2, &get("secrets", "db"), &p, None).is_err(), "no graph, no reads");
    }

    #[test]
    fn verbs() {
        assert_eq!(verb(&http::Method::GET, false, true), "watch");
        assert_eq!(verb(&http::Method::GET, true, false), "get");
        assert_eq!(verb(&http::Method::DELETE, false, false), "deletecollection");
    }
}
