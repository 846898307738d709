//! RBAC escalation prevention on Role, ClusterRole and binding writes, as upstream
//! (`pkg/registry/rbac/escalation_check.go`, `pkg/registry/rbac/validation/rule.go`
//! `ConfirmNoEscalation`): a user may write a role only with permissions the user
//! already holds where the role applies (or with the `escalate` verb on it), and may
//! bind a role only holding its permissions there (or with the `bind` verb on it).
//! `system:masters` hold everything.

use crate::authn::{User, MASTERS};
use crate::error::{ApiError, ApiResult};
use crate::resources::Resource;
use apimachinery::rbac::{Policy, Request};
use k8s_openapi::api::rbac::v1::{PolicyRule, RoleRef};
use serde_json::Value;

const GROUP: &str = "rbac.authorization.k8s.io";

/// Refuses a write of `obj` (a Role, ClusterRole, RoleBinding or ClusterRoleBinding
/// in `ns`) that would grant `user` more than the user holds.
pub fn check(user: &User, policy: &Policy, r: &Resource, ns: Option<&str>, obj: &Value) -> ApiResult<()> {
    if r.group != GROUP || user.in_group(MASTERS) {
        return Ok(());
    }
    let name = obj.pointer("/metadata/name").and_then(Value::as_str).unwrap_or_default();
    let scope = if r.namespaced { ns } else { None };
    // Upstream: "must have cluster-admin privileges to use the aggregationRule".
    if r.plural == "clusterroles" && obj.get("aggregationRule").is_some_and(|a| !a.is_null()) {
        let all = PolicyRule {
            api_groups: Some(vec!["*".into()]),
            resources: Some(vec!["*".into()]),
            verbs: vec!["*".into()],
            ..Default::default()
        };
        if !not_held(user, policy, None, &[all]).is_empty() {
            let name = obj.pointer("/metadata/name").and_then(Value::as_str).unwrap_or_default();
            return Err(ApiError::forbidden_message(
                r,
                Some(name),
                format!("clusterroles.rbac.authorization.k8s.io {name:?} is forbidden: must have cluster-admin privileges to use the aggregationRule"),
            ));
        }
    }
    let (rules, allowed_by) = match r.plural {
        "roles" | "clusterroles" => {
            let rules: Vec<PolicyRule> =
                serde_json::from_value(obj.get("rules").cloned().unwrap_or(Value::Array(Vec::new())))
                    .map_err(|e| ApiError::bad_request(format!("rules: {e}")))?;
            (rules, ("escalate", r.plural, name.to_string()))
        }
        "rolebindings" | "clusterrolebindings" => {
            let role_ref: RoleRef = serde_json::from_value(obj.get("roleRef").cloned().unwrap_or_default())
                .map_err(|e| ApiError::bad_request(format!("roleRef: {e}")))?;
            let plural = if role_ref.kind == "ClusterRole" { "clusterroles" } else { "roles" };
            let exists = match plural {
                "clusterroles" => policy.cluster_roles.contains_key(&role_ref.name),
                _ => policy.roles.contains_key(&(scope.unwrap_or_default().to_string(), role_ref.name.clone())),
            };
            // A missing role grants nothing yet, but everything it will hold once
            // made: only with `bind` on it (upstream answers NotFound).
            if !exists && !req_bind(user, policy, scope, plural, &role_ref.name) {
                return Err(ApiError::new(404, "NotFound", format!("{plural}.{GROUP} {:?} not found", role_ref.name)));
            }
            let rules = policy.rules_of(&role_ref, scope.unwrap_or_default()).to_vec();
            (rules, ("bind", plural, role_ref.name.clone()))
        }
        _ => return Ok(()),
    };
    let req = |verb: &'static str, resource: &'static str, name: &str| -> bool {
        policy.allows(&Request {
            user: &user.name,
            groups: &user.groups,
            verb,
            api_group: GROUP,
            resource,
            name: Some(name),
            namespace: scope,
            ..Default::default()
        })
    };
    let (verb, resource, target) = allowed_by;
    if req(verb, resource, &target) {
        return Ok(());
    }
    let missing = not_held(user, policy, scope, &rules);
    if missing.is_empty() {
        return Ok(());
    }
    let group = if r.group.is_empty() { String::new() } else { format!(".{}", r.group) };
    Err(ApiError::forbidden_message(
        r,
        Some(name),
        format!(
            "{}{group} {name:?} is forbidden: user {:?} (groups={:?}) is attempting to grant RBAC permissions not currently held:\n{}",
            r.plural,
            user.name,
            user.groups,
            missing.join("\n")
        ),
    ))
}

fn req_bind(user: &User, policy: &Policy, scope: Option<&str>, plural: &'static str, name: &str) -> bool {
    policy.allows(&Request {
        user: &user.name,
        groups: &user.groups,
        verb: "bind",
        api_group: GROUP,
        resource: plural,
        name: Some(name),
        namespace: scope,
        ..Default::default()
    })
}

/// Each permission of `rules` the user does not hold in `namespace` (cluster-wide
/// for `None`), one rule per group/resource/verb (upstream's `BreakdownRule`), in
/// upstream's text form.
fn not_held(user: &User, policy: &Policy, namespace: Option<&str>, rules: &[PolicyRule]) -> Vec<String> {
    let mut out = Vec::new();
    for rule in rules {
        let names: Vec<Option<&str>> = match rule.resource_names.as_deref() {
            Some(n) if !n.is_empty() => n.iter().map(|s| Some(s.as_str())).collect(),
            _ => vec![None],
        };
        for verb in &rule.verbs {
            for url in rule.non_resource_urls.iter().flatten() {
                let ok = policy.allows(&Request {
                    user: &user.name,
                    groups: &user.groups,
                    verb,
                    path: Some(url),
                    ..Default::default()
                });
                if !ok {
                    out.push(format!("{{NonResourceURLs:[{url:?}], Verbs:[{verb:?}]}}"));
                }
            }
            for group in rule.api_groups.iter().flatten() {
                for res in rule.resources.iter().flatten() {
                    let (resource, sub) = match res.split_once('/') {
                        Some((r, s)) => (r, Some(s)),
                        None => (res.as_str(), None),
                    };
                    for name in &names {
                        let ok = policy.allows(&Request {
                            user: &user.name,
                            groups: &user.groups,
                            verb,
                            api_group: group,
                            resource,
                            subresource: sub,
                            name: *name,
                            namespace,
                            path: None,
                        });
                        if !ok {
                            let names = name.map(|n| format!(", ResourceNames:[{n:?}]")).unwrap_or_default();
                            out.push(format!(
                                "{{APIGroups:[{group:?}], Resources:[{res:?}]{names}, Verbs:[{verb:?}]}}"
                            ));
                        }
                    }
                }
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy() -> Policy {
        let mut p = Policy::default();
        let role = serde_json::json!({
            "metadata": {"name": "pod-reader"},
            "rules": [{"apiGroups": [""], "resources": ["pods", "pods/log"], "verbs": ["get", "list"]}],
        });
        p.cluster_roles.insert("pod-reader".into(), serde_json::from_value(role).expect("role"));
        let rbac_writer = serde_json::json!({
            "metadata": {"name": "rbac-writer"},
            "rules": [{"apiGroups": [GROUP], "resources": ["roles", "rolebindings", "clusterroles"], "verbs": ["create", "update"]}],
        });
        p.cluster_roles.insert("rbac-writer".into(), serde_json::from_value(rbac_writer).expect("role"));
        for (name, role) in [("jane-reads", "pod-reader"), ("jane-writes", "rbac-writer")] {
            let b = serde_json::json!({
                "metadata": {"name": name},
                "roleRef": {"apiGroup": GROUP, "kind": "ClusterRole", "name": role},
                "subjects": [{"kind": "User", "apiGroup": GROUP, "name": "jane"}],
            });
            p.cluster_role_bindings.insert(name.into(), serde_json::from_value(b).expect("binding"));
        }
        p
    }

    fn resource(plural: &str) -> &'static Resource {
        crate::resources::find(GROUP, "v1", plural).expect("rbac resource")
    }

    #[test]
    fn roles_only_with_permissions_held() {
        let (p, jane) = (policy(), User::new("jane", ["system:authenticated".to_string()]));
        let role = |rules: Value| serde_json::json!({"metadata": {"name": "r", "namespace": "dev"}, "rules": rules});
        let held = role(serde_json::json!([{"apiGroups": [""], "resources": ["pods"], "verbs": ["get"]}]));
        assert!(check(&jane, &p, resource("roles"), Some("dev"), &held).is_ok());
        let more = role(serde_json::json!([{"apiGroups": [""], "resources": ["secrets", "pods"], "verbs": ["get"]}]));
        let e = check(&jane, &p, resource("roles"), Some("dev"), &more).expect_err("escalation");
        assert_eq!(e.code, 403);
        assert_eq!(
            e.message,
            "roles.rbac.authorization.k8s.io \"r\" is forbidden: user \"jane\" (groups=[\"system:authenticated\"]) is attempting to grant RBAC permissions not currently held:\n{APIGroups:[\"\"], Resources:[\"secrets\"], Verbs:[\"get\"]}"
        );
        let wildcard = role(serde_json::json!([{"apiGroups": [""], "resources": ["pods"], "verbs": ["*"]}]));
        assert!(check(&jane, &p, resource("roles"), Some("dev"), &wildcard).is_err(), "* is more than get+list");
        assert!(check(&User::admin(), &p, resource("roles"), Some("dev"), &more).is_ok());
    }

    #[test]
    fn bindings_only_of_roles_held_or_with_bind() {
        let (mut p, jane) = (policy(), User::new("jane", ["system:authenticated".to_string()]));
        let binding = |role: &str| {
            serde_json::json!({
                "metadata": {"name": "b", "namespace": "dev"},
                "roleRef": {"apiGroup": GROUP, "kind": "ClusterRole", "name": role},
                "subjects": [{"kind": "User", "apiGroup": GROUP, "name": "bob"}],
            })
        };
        assert!(check(&jane, &p, resource("rolebindings"), Some("dev"), &binding("pod-reader")).is_ok());
        assert_eq!(
            check(&jane, &p, resource("rolebindings"), Some("dev"), &binding("later")).expect_err("missing").code,
            404
        );
        let agg = serde_json::json!({"metadata": {"name": "mine"}, "aggregationRule": {"clusterRoleSelectors": [{"matchLabels": {"x": "y"}}]}});
        let e = check(&jane, &p, resource("clusterroles"), None, &agg).expect_err("aggregation");
        assert!(e.message.ends_with("must have cluster-admin privileges to use the aggregationRule"), "{}", e.message);
        let admin = serde_json::json!({"metadata": {"name": "admin"}, "rules": [{"apiGroups": ["*"], "resources": ["*"], "verbs": ["*"]}]});
        p.cluster_roles.insert("admin".into(), serde_json::from_value(admin).expect("role"));
        let e = check(&jane, &p, resource("rolebindings"), Some("dev"), &binding("admin")).expect_err("escalation");
        assert!(
            e.message.contains("not currently held:\n{APIGroups:[\"*\"], Resources:[\"*\"], Verbs:[\"*\"]}"),
            "{}",
            e.message
        );
        // The bind verb on that role allows it.
        let binder = serde_json::json!({"metadata": {"name": "binder"}, "rules": [{"apiGroups": [GROUP], "resources": ["clusterroles"], "verbs": ["bind"], "resourceNames": ["admin"]}]});
        p.cluster_roles.insert("binder".into(), serde_json::from_value(binder).expect("role"));
        let b = serde_json::json!({"metadata": {"name": "jane-binds"}, "roleRef": {"apiGroup": GROUP, "kind": "ClusterRole", "name": "binder"}, "subjects": [{"kind": "User", "apiGroup": GROUP, "name": "jane"}]});
        p.cluster_role_bindings.insert("jane-binds".into(), serde_json::from_value(b).expect("binding"));
        assert!(check(&jane, &p, resource("rolebindings"), Some("dev"), &binding("admin")).is_ok());
    }
}
