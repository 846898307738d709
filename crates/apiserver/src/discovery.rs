//! Legacy discovery documents (`/api`, `/apis`, `/api/v1`, `/apis/<g>/<v>`),
//! shaped as upstream serves them.

use crate::resources::{Resource, GROUPS, RESOURCES};
use serde_json::{json, Value};

pub fn api_versions(server_address: &str) -> Value {
    json!({
        "kind": "APIVersions",
        "versions": ["v1"],
        "serverAddressByClientCIDRs": [{ "clientCIDR": "0.0.0.0/0", "serverAddress": server_address }],
    })
}

fn group_entry(name: &str, version: &str) -> Value {
    let gv = json!({ "groupVersion": format!("{name}/{version}"), "version": version });
    json!({ "name": name, "versions": [gv.clone()], "preferredVersion": gv })
}

pub fn api_group_list() -> Value {
    let groups: Vec<Value> = GROUPS.iter().map(|(g, v)| group_entry(g, v)).collect();
    json!({ "kind": "APIGroupList", "apiVersion": "v1", "groups": groups })
}

pub fn api_group(name: &str) -> Option<Value> {
    let (g, v) = GROUPS.iter().find(|(g, _)| *g == name)?;
    let mut e = group_entry(g, v);
    e["kind"] = json!("APIGroup");
    e["apiVersion"] = json!("v1");
    Some(e)
}

fn resource_entry(r: &Resource) -> Value {
    let mut e = json!({
        "name": r.plural,
        "singularName": r.singular,
        "namespaced": r.namespaced,
        "kind": r.kind,
        "verbs": r.verbs(),
    });
    if !r.short_names.is_empty() {
        e["shortNames"] = json!(r.short_names);
    }
    if !r.categories.is_empty() {
        e["categories"] = json!(r.categories);
    }
    e
}

fn sub_entry(r: &Resource, sub: &str, group: Option<(&str, &str)>, kind: &str, verbs: &[&str]) -> Value {
    let mut e = json!({
        "name": format!("{}/{sub}", r.plural),
        "singularName": "",
        "namespaced": r.namespaced,
        "kind": kind,
        "verbs": verbs,
    });
    if let Some((g, v)) = group {
        e["group"] = json!(g);
        e["version"] = json!(v);
    }
    e
}

/// `APIResourceList` of one group version, or `None` if it is not served.
pub fn api_resource_list(group: &str, version: &str) -> Option<Value> {
    let mut list = Vec::new();
    for r in RESOURCES.iter().filter(|r| r.group == group && r.version == version) {
        list.push(resource_entry(r));
        if r.status {
            list.push(sub_entry(r, "status", None, r.kind, &["get", "patch", "update"]));
        }
        if r.scale {
            list.push(sub_entry(r, "scale", Some(("autoscaling", "v1")), "Scale", &["get", "patch", "update"]));
        }
        if r.plural == "pods" {
            list.push(sub_entry(r, "binding", None, "Binding", &["create"]));
            list.push(sub_entry(r, "exec", None, "PodExecOptions", &["create", "get"]));
            list.push(sub_entry(r, "log", None, "Pod", &["get"]));
        }
        if r.plural == "namespaces" {
            list.push(sub_entry(r, "finalize", None, r.kind, &["update"]));
        }
    }
    if list.is_empty() {
        return None;
    }
    let gv = if group.is_empty() { version.to_string() } else { format!("{group}/{version}") };
    Some(json!({ "kind": "APIResourceList", "apiVersion": "v1", "groupVersion": gv, "resources": list }))
}
