//! RBAC: whether a set of Roles, ClusterRoles and their bindings allows a
//! request (`plugin/pkg/auth/authorizer/rbac/rbac.go`, rule matching from
//! `pkg/apis/rbac/v1/evaluation_helpers.go`, subjects from
//! `pkg/registry/rbac/validation/rule.go`), ClusterRole aggregation
//! (`pkg/controller/clusterroleaggregation`), and the bootstrap policy every
//! cluster starts with (`plugin/pkg/auth/authorizer/rbac/bootstrappolicy`).

use crate::serviceaccount;
use k8s_openapi::api::rbac::v1::{
    AggregationRule, ClusterRole, ClusterRoleBinding, PolicyRule, Role, RoleBinding, RoleRef, Subject,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};
use std::collections::BTreeMap;

pub const GROUP: &str = "rbac.authorization.k8s.io";

/// What is asked: a resource request or a non-resource path.
#[derive(Clone, Debug, Default)]
pub struct Request<'a> {
    pub user: &'a str,
    pub groups: &'a [String],
    pub verb: &'a str,
    pub api_group: &'a str,
    pub resource: &'a str,
    pub subresource: Option<&'a str>,
    pub name: Option<&'a str>,
    /// `None` for cluster-scoped requests.
    pub namespace: Option<&'a str>,
    /// A non-resource request (`/healthz`, `/metrics`, ...): only this is matched.
    pub path: Option<&'a str>,
}

/// The RBAC objects of the cluster, keyed by (namespace,) name.
#[derive(Clone, Debug, Default)]
pub struct Policy {
    pub cluster_roles: BTreeMap<String, ClusterRole>,
    pub cluster_role_bindings: BTreeMap<String, ClusterRoleBinding>,
    pub roles: BTreeMap<(String, String), Role>,
    pub role_bindings: BTreeMap<(String, String), RoleBinding>,
}

fn has(list: &[String], want: &str, all: &str) -> bool {
    list.iter().any(|v| v == all || v == want)
}

/// `RuleAllows`.
pub fn rule_allows(rule: &PolicyRule, r: &Request<'_>) -> bool {
    if !has(&rule.verbs, r.verb, "*") {
        return false;
    }
    if let Some(path) = r.path {
        return rule
            .non_resource_urls
            .iter()
            .flatten()
            .any(|u| u == "*" || u == path || (u.ends_with('*') && path.starts_with(u.trim_end_matches('*'))));
    }
    let groups = rule.api_groups.as_deref().unwrap_or_default();
    if !has(groups, r.api_group, "*") {
        return false;
    }
    let combined = match r.subresource {
        Some(s) => format!("{}/{s}", r.resource),
        None => r.resource.to_string(),
    };
    let resources = rule.resources.as_deref().unwrap_or_default();
    let resource_ok = resources.iter().any(|res| {
        res == "*"
            || *res == combined
            || r.subresource.is_some_and(|s| res.len() == s.len() + 2 && res.starts_with("*/") && res.ends_with(s))
    });
    if !resource_ok {
        return false;
    }
    match rule.resource_names.as_deref() {
        None | Some([]) => true,
        Some(names) => r.name.is_some_and(|n| names.iter().any(|x| x == n)),
    }
}

/// `appliesToUser`: a binding's subject names this user; a ServiceAccount
/// subject without a namespace takes the RoleBinding's.
pub fn applies_to(subject: &Subject, user: &str, groups: &[String], binding_namespace: &str) -> bool {
    match subject.kind.as_str() {
        "User" => subject.name == user,
        "Group" => groups.contains(&subject.name),
        "ServiceAccount" => {
            let ns = subject.namespace.as_deref().filter(|n| !n.is_empty()).unwrap_or(binding_namespace);
            !ns.is_empty() && serviceaccount::username(ns, &subject.name) == user
        }
        _ => false,
    }
}

impl Policy {
    /// The rules a binding's `roleRef` names (a Role in `namespace`, or a ClusterRole).
    pub fn rules_of(&self, role_ref: &RoleRef, namespace: &str) -> &[PolicyRule] {
        match role_ref.kind.as_str() {
            "ClusterRole" => {
                self.cluster_roles.get(&role_ref.name).and_then(|r| r.rules.as_deref()).unwrap_or_default()
            }
            "Role" => self
                .roles
                .get(&(namespace.to_string(), role_ref.name.clone()))
                .and_then(|r| r.rules.as_deref())
                .unwrap_or_default(),
            _ => &[],
        }
    }

    /// Every rule that applies to the user in `namespace` (cluster-wide ones
    /// included), for `auth can-i --list` and escalation checks.
    pub fn rules_for(&self, user: &str, groups: &[String], namespace: Option<&str>) -> Vec<PolicyRule> {
        let mut out = Vec::new();
        for b in self.cluster_role_bindings.values() {
            if b.subjects.iter().flatten().any(|s| applies_to(s, user, groups, "")) {
                out.extend_from_slice(self.rules_of(&b.role_ref, ""));
            }
        }
        if let Some(ns) = namespace.filter(|n| !n.is_empty()) {
            for ((bns, _), b) in self.role_bindings.range((ns.to_string(), String::new())..) {
                if bns != ns {
                    break;
                }
                if b.subjects.iter().flatten().any(|s| applies_to(s, user, groups, ns)) {
                    out.extend_from_slice(self.rules_of(&b.role_ref, ns));
                }
            }
        }
        out
    }

    /// Whether any binding grants the request.
    pub fn allows(&self, r: &Request<'_>) -> bool {
        for b in self.cluster_role_bindings.values() {
            if b.subjects.iter().flatten().any(|s| applies_to(s, r.user, r.groups, ""))
                && self.rules_of(&b.role_ref, "").iter().any(|rule| rule_allows(rule, r))
            {
                return true;
            }
        }
        let Some(ns) = r.namespace.filter(|n| !n.is_empty()) else { return false };
        for ((bns, _), b) in self.role_bindings.range((ns.to_string(), String::new())..) {
            if bns != ns {
                break;
            }
            if b.subjects.iter().flatten().any(|s| applies_to(s, r.user, r.groups, ns))
                && self.rules_of(&b.role_ref, ns).iter().any(|rule| rule_allows(rule, r))
            {
                return true;
            }
        }
        false
    }

    /// The rules an aggregated ClusterRole gets: those of every other
    /// ClusterRole its selectors match, in name order, each rule once.
    pub fn aggregated_rules(&self, aggregation: &AggregationRule, own_name: &str) -> Vec<PolicyRule> {
        let mut out: Vec<PolicyRule> = Vec::new();
        for (name, role) in &self.cluster_roles {
            if name == own_name {
                continue;
            }
            let labels = role.metadata.labels.clone().unwrap_or_default();
            let selected =
                aggregation.cluster_role_selectors.iter().flatten().any(|sel| selector_matches(sel, &labels));
            if selected {
                for rule in role.rules.iter().flatten() {
                    if !out.contains(rule) {
                        out.push(rule.clone());
                    }
                }
            }
        }
        out
    }
}

/// matchLabels and matchExpressions (In, NotIn, Exists, DoesNotExist); an
/// empty selector matches nothing here, as the aggregation controller treats it.
fn selector_matches(sel: &LabelSelector, labels: &BTreeMap<String, String>) -> bool {
    let ml = sel.match_labels.clone().unwrap_or_default();
    let me = sel.match_expressions.clone().unwrap_or_default();
    if ml.is_empty() && me.is_empty() {
        return false;
    }
    ml.iter().all(|(k, v)| labels.get(k) == Some(v))
        && me.iter().all(|e| {
            let values = e.values.clone().unwrap_or_default();
            match e.operator.as_str() {
                "In" => labels.get(&e.key).is_some_and(|v| values.contains(v)),
                "NotIn" => labels.get(&e.key).is_none_or(|v| !values.contains(v)),
                "Exists" => labels.contains_key(&e.key),
                "DoesNotExist" => !labels.contains_key(&e.key),
                _ => false,
            }
        })
}

// ---- the bootstrap policy ----

const READ: &[&str] = &["get", "list", "watch"];
const WRITE: &[&str] = &["create", "delete", "deletecollection", "patch", "update"];
const READ_WRITE: &[&str] = &["get", "list", "watch", "create", "update", "patch", "delete", "deletecollection"];

fn rule(verbs: &[&str], groups: &[&str], resources: &[&str]) -> PolicyRule {
    let s = |v: &[&str]| Some(v.iter().map(|x| x.to_string()).collect::<Vec<_>>());
    PolicyRule {
        verbs: verbs.iter().map(|v| v.to_string()).collect(),
        api_groups: s(groups),
        resources: s(resources),
        ..Default::default()
    }
}

fn url_rule(verbs: &[&str], urls: &[&str]) -> PolicyRule {
    PolicyRule {
        verbs: verbs.iter().map(|v| v.to_string()).collect(),
        non_resource_urls: Some(urls.iter().map(|u| u.to_string()).collect()),
        ..Default::default()
    }
}

fn bootstrap_meta(name: &str, labels: &[(&str, &str)]) -> ObjectMeta {
    let mut l: BTreeMap<String, String> = labels.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
    l.insert("kubernetes.io/bootstrapping".into(), "rbac-defaults".into());
    ObjectMeta {
        name: Some(name.into()),
        labels: Some(l),
        annotations: Some(BTreeMap::from([("rbac.authorization.kubernetes.io/autoupdate".into(), "true".into())])),
        ..Default::default()
    }
}

fn role(name: &str, labels: &[(&str, &str)], rules: Vec<PolicyRule>) -> ClusterRole {
    ClusterRole { metadata: bootstrap_meta(name, labels), rules: Some(rules), ..Default::default() }
}

fn aggregate(name: &str, labels: &[(&str, &str)], to: &str) -> ClusterRole {
    let sel = LabelSelector {
        match_labels: Some(BTreeMap::from([(format!("rbac.authorization.k8s.io/aggregate-to-{to}"), "true".into())])),
        ..Default::default()
    };
    ClusterRole {
        metadata: bootstrap_meta(name, labels),
        aggregation_rule: Some(AggregationRule { cluster_role_selectors: Some(vec![sel]) }),
        rules: Some(Vec::new()),
    }
}

/// The ClusterRoles every cluster starts with (upstream's, trimmed to the
/// resources rkube serves, plus kubeadm's `system:coredns`).
pub fn bootstrap_cluster_roles() -> Vec<ClusterRole> {
    let to = |r: &'static str| (r, "true");
    vec![
        role("cluster-admin", &[], vec![rule(&["*"], &["*"], &["*"]), url_rule(&["*"], &["*"])]),
        aggregate("admin", &[], "admin"),
        aggregate("edit", &[to("rbac.authorization.k8s.io/aggregate-to-admin")], "edit"),
        aggregate("view", &[to("rbac.authorization.k8s.io/aggregate-to-edit")], "view"),
        role(
            "system:aggregate-to-admin",
            &[to("rbac.authorization.k8s.io/aggregate-to-admin")],
            vec![
                rule(&["create"], &["authorization.k8s.io"], &["localsubjectaccessreviews"]),
                rule(READ_WRITE, &[GROUP], &["rolebindings", "roles"]),
            ],
        ),
        role(
            "system:aggregate-to-edit",
            &[to("rbac.authorization.k8s.io/aggregate-to-edit")],
            vec![
                rule(
                    READ,
                    &[""],
                    &["pods/attach", "pods/exec", "pods/portforward", "pods/proxy", "secrets", "services/proxy"],
                ),
                rule(&["impersonate"], &[""], &["serviceaccounts"]),
                rule(WRITE, &[""], &["pods", "pods/attach", "pods/exec", "pods/portforward", "pods/proxy"]),
                rule(&["create"], &[""], &["pods/eviction"]),
                rule(
                    WRITE,
                    &[""],
                    &[
                        "configmaps",
                        "events",
                        "persistentvolumeclaims",
                        "replicationcontrollers",
                        "replicationcontrollers/scale",
                        "secrets",
                        "serviceaccounts",
                        "services",
                        "services/proxy",
                    ],
                ),
                rule(&["create"], &[""], &["serviceaccounts/token"]),
                rule(
                    WRITE,
                    &["apps"],
                    &[
                        "daemonsets",
                        "deployments",
                        "deployments/rollback",
                        "deployments/scale",
                        "replicasets",
                        "replicasets/scale",
                        "statefulsets",
                        "statefulsets/scale",
                    ],
                ),
                rule(WRITE, &["autoscaling"], &["horizontalpodautoscalers"]),
                rule(WRITE, &["batch"], &["cronjobs", "jobs"]),
                rule(WRITE, &["networking.k8s.io"], &["ingresses", "networkpolicies"]),
                rule(WRITE, &["policy"], &["poddisruptionbudgets"]),
                rule(WRITE, &["discovery.k8s.io"], &["endpointslices"]),
            ],
        ),
        role(
            "system:aggregate-to-view",
            &[to("rbac.authorization.k8s.io/aggregate-to-view")],
            vec![
                rule(
                    READ,
                    &[""],
                    &[
                        "configmaps",
                        "endpoints",
                        "persistentvolumeclaims",
                        "persistentvolumeclaims/status",
                        "pods",
                        "replicationcontrollers",
                        "replicationcontrollers/scale",
                        "serviceaccounts",
                        "services",
                        "services/status",
                    ],
                ),
                rule(
                    READ,
                    &[""],
                    &[
                        "bindings",
                        "events",
                        "limitranges",
                        "namespaces/status",
                        "pods/log",
                        "pods/status",
                        "replicationcontrollers/status",
                        "resourcequotas",
                        "resourcequotas/status",
                    ],
                ),
                rule(READ, &[""], &["namespaces"]),
                rule(READ, &["discovery.k8s.io"], &["endpointslices"]),
                rule(
                    READ,
                    &["apps"],
                    &[
                        "controllerrevisions",
                        "daemonsets",
                        "daemonsets/status",
                        "deployments",
                        "deployments/scale",
                        "deployments/status",
                        "replicasets",
                        "replicasets/scale",
                        "replicasets/status",
                        "statefulsets",
                        "statefulsets/scale",
                        "statefulsets/status",
                    ],
                ),
                rule(READ, &["autoscaling"], &["horizontalpodautoscalers", "horizontalpodautoscalers/status"]),
                rule(READ, &["batch"], &["cronjobs", "cronjobs/status", "jobs", "jobs/status"]),
                rule(READ, &["networking.k8s.io"], &["ingresses", "ingresses/status", "networkpolicies"]),
                rule(READ, &["policy"], &["poddisruptionbudgets", "poddisruptionbudgets/status"]),
            ],
        ),
        role(
            "system:discovery",
            &[],
            vec![url_rule(
                &["get"],
                &[
                    "/api",
                    "/api/*",
                    "/apis",
                    "/apis/*",
                    "/healthz",
                    "/livez",
                    "/openapi",
                    "/openapi/*",
                    "/readyz",
                    "/version",
                    "/version/",
                ],
            )],
        ),
        role(
            "system:public-info-viewer",
            &[],
            vec![url_rule(&["get"], &["/healthz", "/livez", "/readyz", "/version", "/version/"])],
        ),
        role(
            "system:basic-user",
            &[],
            vec![
                rule(&["create"], &["authorization.k8s.io"], &["selfsubjectaccessreviews", "selfsubjectrulesreviews"]),
                rule(&["create"], &["authentication.k8s.io"], &["selfsubjectreviews"]),
            ],
        ),
        role(
            "system:service-account-issuer-discovery",
            &[],
            vec![url_rule(
                &["get"],
                &[
                    "/.well-known/openid-configuration",
                    "/.well-known/openid-configuration/",
                    "/openid/v1/jwks",
                    "/openid/v1/jwks/",
                ],
            )],
        ),
        role(
            "system:node-bootstrapper",
            &[],
            vec![rule(&["create", "get", "list", "watch"], &["certificates.k8s.io"], &["certificatesigningrequests"])],
        ),
        role(
            "system:certificates.k8s.io:certificatesigningrequests:nodeclient",
            &[],
            vec![rule(&["create"], &["certificates.k8s.io"], &["certificatesigningrequests/nodeclient"])],
        ),
        role(
            "system:coredns",
            &[],
            vec![
                rule(&["list", "watch"], &[""], &["endpoints", "services", "pods", "namespaces"]),
                rule(&["list", "watch"], &["discovery.k8s.io"], &["endpointslices"]),
            ],
        ),
    ]
}

fn binding(name: &str, role: &str, subjects: Vec<Subject>) -> ClusterRoleBinding {
    ClusterRoleBinding {
        metadata: bootstrap_meta(name, &[]),
        role_ref: RoleRef { api_group: GROUP.into(), kind: "ClusterRole".into(), name: role.into() },
        subjects: Some(subjects),
    }
}

fn group(name: &str) -> Subject {
    Subject { kind: "Group".into(), api_group: Some(GROUP.into()), name: name.into(), namespace: None }
}

/// The ClusterRoleBindings every cluster starts with.
pub fn bootstrap_cluster_role_bindings() -> Vec<ClusterRoleBinding> {
    vec![
        binding("cluster-admin", "cluster-admin", vec![group("system:masters")]),
        binding("system:discovery", "system:discovery", vec![group("system:authenticated")]),
        binding("system:basic-user", "system:basic-user", vec![group("system:authenticated")]),
        binding(
            "system:public-info-viewer",
            "system:public-info-viewer",
            vec![group("system:authenticated"), group("system:unauthenticated")],
        ),
        binding(
            "system:service-account-issuer-discovery",
            "system:service-account-issuer-discovery",
            vec![group("system:serviceaccounts")],
        ),
        // kubeadm's names for what lets a joining node ask for its certificate.
        binding("kubeadm:kubelet-bootstrap", "system:node-bootstrapper", vec![group("system:bootstrappers")]),
        binding(
            "kubeadm:node-autoapprove-bootstrap",
            "system:certificates.k8s.io:certificatesigningrequests:nodeclient",
            vec![group("system:bootstrappers")],
        ),
        binding(
            "system:coredns",
            "system:coredns",
            vec![Subject {
                kind: "ServiceAccount".into(),
                api_group: None,
                name: "coredns".into(),
                namespace: Some("kube-system".into()),
            }],
        ),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req<'a>(user: &'a str, groups: &'a [String], verb: &'a str, group: &'a str, resource: &'a str) -> Request<'a> {
        Request { user, groups, verb, api_group: group, resource, namespace: Some("team"), ..Default::default() }
    }

    fn bootstrapped() -> Policy {
        let mut p = Policy::default();
        for r in bootstrap_cluster_roles() {
            p.cluster_roles.insert(r.metadata.name.clone().unwrap_or_default(), r);
        }
        for b in bootstrap_cluster_role_bindings() {
            p.cluster_role_bindings.insert(b.metadata.name.clone().unwrap_or_default(), b);
        }
        // Aggregate to a fixed point, as the controller does over its passes.
        for _ in 0..3 {
            let names: Vec<String> = p.cluster_roles.keys().cloned().collect();
            for n in names {
                let Some(agg) = p.cluster_roles[&n].aggregation_rule.clone() else { continue };
                let rules = p.aggregated_rules(&agg, &n);
                if let Some(r) = p.cluster_roles.get_mut(&n) {
                    r.rules = Some(rules);
                }
            }
        }
        p
    }

    #[test]
    fn rules_match_verbs_groups_resources_subresources_and_names() {
        let g: Vec<String> = Vec::new();
        let mut r = rule(&["get"], &[""], &["pods", "*/status"]);
        assert!(rule_allows(&r, &req("u", &g, "get", "", "pods")));
        assert!(!rule_allows(&r, &req("u", &g, "list", "", "pods")));
        assert!(!rule_allows(&r, &req("u", &g, "get", "apps", "pods")));
        let status = Request { subresource: Some("status"), ..req("u", &g, "get", "", "deployments") };
        assert!(rule_allows(&r, &status), "*/status");
        let log = Request { subresource: Some("log"), ..req("u", &g, "get", "", "pods") };
        assert!(!rule_allows(&r, &log), "pods does not cover pods/log");
        r.resource_names = Some(vec!["web".into()]);
        assert!(rule_allows(&r, &Request { name: Some("web"), ..req("u", &g, "get", "", "pods") }));
        assert!(!rule_allows(&r, &Request { name: Some("db"), ..req("u", &g, "get", "", "pods") }));
        assert!(!rule_allows(&r, &req("u", &g, "get", "", "pods")), "a list is not a named get");
        let urls = url_rule(&["get"], &["/healthz", "/apis/*"]);
        assert!(rule_allows(&urls, &Request { path: Some("/apis/apps/v1"), verb: "get", ..Default::default() }));
        assert!(!rule_allows(&urls, &Request { path: Some("/metrics"), verb: "get", ..Default::default() }));
    }

    #[test]
    fn bindings_grant_to_users_groups_and_service_accounts() {
        let mut p = bootstrapped();
        let sa = "system:serviceaccount:team:robot";
        let sa_groups = vec!["system:serviceaccounts".to_string(), "system:authenticated".to_string()];
        assert!(!p.allows(&req(sa, &sa_groups, "list", "", "pods")), "nothing granted yet");
        // `kubectl create rolebinding r --clusterrole=view --serviceaccount=team:robot -n team`.
        p.role_bindings.insert(
            ("team".into(), "r".into()),
            RoleBinding {
                metadata: ObjectMeta { name: Some("r".into()), namespace: Some("team".into()), ..Default::default() },
                role_ref: RoleRef { api_group: GROUP.into(), kind: "ClusterRole".into(), name: "view".into() },
                subjects: Some(vec![Subject {
                    kind: "ServiceAccount".into(),
                    name: "robot".into(),
                    namespace: Some("team".into()),
                    api_group: None,
                }]),
            },
        );
        assert!(p.allows(&req(sa, &sa_groups, "list", "", "pods")), "view reads pods (aggregated)");
        assert!(!p.allows(&req(sa, &sa_groups, "list", "", "secrets")), "view never reads secrets");
        assert!(!p.allows(&req(sa, &sa_groups, "delete", "", "pods")));
        assert!(
            !p.allows(&Request { namespace: Some("other"), ..req(sa, &sa_groups, "list", "", "pods") }),
            "only in team"
        );
        let masters = vec!["system:masters".to_string()];
        assert!(p.allows(&req("jane", &masters, "delete", "apps", "deployments")));
        let authed = vec!["system:authenticated".to_string()];
        assert!(p.allows(&Request {
            path: Some("/version"),
            verb: "get",
            user: "x",
            groups: &authed,
            ..Default::default()
        }));
        let coredns = "system:serviceaccount:kube-system:coredns";
        assert!(p.allows(&Request {
            namespace: None,
            ..req(coredns, &sa_groups, "watch", "discovery.k8s.io", "endpointslices")
        }));
        assert!(!p.allows(&Request { namespace: None, ..req(coredns, &sa_groups, "get", "", "secrets") }));
    }

    #[test]
    fn aggregation_builds_view_into_edit_into_admin() {
        let p = bootstrapped();
        let rules = |n: &str| p.cluster_roles[n].rules.clone().unwrap_or_default();
        let view = rules("view");
        assert!(view.iter().any(|r| r.resources.as_ref().is_some_and(|x| x.contains(&"pods".to_string()))));
        let edit = rules("edit");
        assert!(view.iter().all(|r| edit.contains(r)), "edit has view's rules");
        let admin = rules("admin");
        assert!(edit.iter().all(|r| admin.contains(r)), "admin has edit's rules");
        assert!(admin.iter().any(|r| r.resources.as_ref().is_some_and(|x| x.contains(&"rolebindings".to_string()))));
    }
}
