//! `kubectl get rolebindings|clusterrolebindings` (upstream
//! `printRoleBinding`/`printClusterRoleBinding`, `roleBindingsColumnDefinitions`):
//! NAME, ROLE (`<kind>/<name>`), AGE, and wide USERS, GROUPS, SERVICEACCOUNTS.
//! Roles and ClusterRoles print upstream's default NAME, CREATED AT.

use super::*;

pub(super) fn binding_columns() -> Vec<Value> {
    vec![
        name_col(),
        col("Role", "string", "", "Role", 0),
        age_col(),
        col("Users", "string", "", "Users in the roleBinding", 1),
        col("Groups", "string", "", "Groups in the roleBinding", 1),
        col("ServiceAccounts", "string", "", "ServiceAccounts in the roleBinding", 1),
    ]
}

pub(super) fn binding_cells(obj: &Value, now: Timestamp) -> Vec<Value> {
    let role = format!("{}/{}", str_at(obj, "/roleRef/kind"), str_at(obj, "/roleRef/name"));
    let (mut users, mut groups, mut sas) = (Vec::new(), Vec::new(), Vec::new());
    for sub in arr_at(obj, "/subjects") {
        match str_at(sub, "/kind") {
            "User" => users.push(str_at(sub, "/name").to_string()),
            "Group" => groups.push(str_at(sub, "/name").to_string()),
            "ServiceAccount" => sas.push(format!("{}/{}", str_at(sub, "/namespace"), str_at(sub, "/name"))),
            _ => {}
        }
    }
    vec![name(obj), s(role), age(obj, now), s(users.join(", ")), s(groups.join(", ")), s(sas.join(", "))]
}
