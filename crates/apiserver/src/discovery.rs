//! Discovery documents, shaped as upstream serves them: the legacy ones (`/api`,
//! `/apis`, `/api/v1`, `/apis/<g>/<v>`) and aggregated discovery
//! (`apidiscovery.k8s.io/v2` `APIGroupDiscoveryList` on `/api` and `/apis`, one
//! request for everything; `staging/src/k8s.io/apiserver/pkg/endpoints/discovery/aggregated`).

use crate::resources::{self, Resource};
use serde_json::{json, Value};

pub fn api_versions(server_address: &str) -> Value {
    json!({
        "kind": "APIVersions",
        "versions": ["v1"],
        "serverAddressByClientCIDRs": [{ "clientCIDR": "0.0.0.0/0", "serverAddress": server_address }],
    })
}

/// An `APIGroup` entry; `versions` preferred first.
fn group_entry(name: &str, versions: &[String]) -> Value {
    let gvs: Vec<Value> =
        versions.iter().map(|v| json!({ "groupVersion": format!("{name}/{v}"), "version": v })).collect();
    let preferred = gvs.first().cloned().unwrap_or_default();
    json!({ "name": name, "versions": gvs, "preferredVersion": preferred })
}

pub fn api_group_list() -> Value {
    let groups: Vec<Value> = resources::groups().iter().map(|(g, vs)| group_entry(g, vs)).collect();
    json!({ "kind": "APIGroupList", "apiVersion": "v1", "groups": groups })
}

pub fn api_group(name: &str) -> Option<Value> {
    let (g, vs) = resources::groups().into_iter().find(|(g, _)| g == name)?;
    let mut e = group_entry(&g, &vs);
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
    for r in resources::all().into_iter().filter(|r| r.group == group && r.version == version) {
        list.push(resource_entry(r));
        if r.status {
            list.push(sub_entry(r, "status", None, r.kind, &["get", "patch", "update"]));
        }
        if r.scale {
            list.push(sub_entry(r, "scale", Some(("autoscaling", "v1")), "Scale", &["get", "patch", "update"]));
        }
        if r.plural == "pods" {
            list.push(sub_entry(r, "binding", None, "Binding", &["create"]));
            list.push(sub_entry(r, "eviction", Some(("policy", "v1")), "Eviction", &["create"]));
            list.push(sub_entry(r, "exec", None, "PodExecOptions", &["create", "get"]));
            list.push(sub_entry(r, "log", None, "Pod", &["get"]));
            list.push(sub_entry(r, "portforward", None, "PodPortForwardOptions", &["create", "get"]));
        }
        if r.plural == "namespaces" {
            list.push(sub_entry(r, "finalize", None, r.kind, &["update"]));
        }
        if r.plural == "serviceaccounts" {
            list.push(sub_entry(r, "token", Some(("authentication.k8s.io", "v1")), "TokenRequest", &["create"]));
        }
    }
    if list.is_empty() {
        return None;
    }
    let gv = if group.is_empty() { version.to_string() } else { format!("{group}/{version}") };
    Some(json!({ "kind": "APIResourceList", "apiVersion": "v1", "groupVersion": gv, "resources": list }))
}

/// The media type of aggregated discovery responses.
pub const AGGREGATED_V2: &str = "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList";

/// Whether an `Accept` header asks for aggregated discovery (v2; clients list
/// it before the legacy `application/json`).
pub fn wants_aggregated(accept: &str) -> bool {
    accept.split(',').any(|part| {
        let params: Vec<&str> = part.split(';').map(str::trim).collect();
        params.contains(&"g=apidiscovery.k8s.io")
            && params.contains(&"v=v2")
            && params.contains(&"as=APIGroupDiscoveryList")
    })
}

fn gvk_of(group: &str, version: &str, kind: &str) -> Value {
    json!({ "group": group, "version": version, "kind": kind })
}

/// `APIResourceDiscovery` of one resource with its subresources.
fn aggregated_resource(r: &Resource) -> Value {
    let mut subs = Vec::new();
    let mut sub = |name: &str, kind: Value, verbs: &[&str]| {
        subs.push(json!({ "subresource": name, "responseKind": kind, "verbs": verbs }));
    };
    if r.status {
        sub("status", gvk_of(r.group, r.version, r.kind), &["get", "patch", "update"]);
    }
    if r.scale {
        sub("scale", gvk_of("autoscaling", "v1", "Scale"), &["get", "patch", "update"]);
    }
    if r.plural == "pods" {
        sub("binding", gvk_of("", "v1", "Binding"), &["create"]);
        sub("eviction", gvk_of("policy", "v1", "Eviction"), &["create"]);
        sub("exec", gvk_of("", "v1", "PodExecOptions"), &["create", "get"]);
        sub("log", gvk_of("", "v1", "Pod"), &["get"]);
        sub("portforward", gvk_of("", "v1", "PodPortForwardOptions"), &["create", "get"]);
    }
    if r.plural == "namespaces" {
        sub("finalize", gvk_of("", "v1", "Namespace"), &["update"]);
    }
    if r.plural == "serviceaccounts" {
        sub("token", gvk_of("authentication.k8s.io", "v1", "TokenRequest"), &["create"]);
    }
    let mut e = json!({
        "resource": r.plural,
        "responseKind": gvk_of(r.group, r.version, r.kind),
        "scope": if r.namespaced { "Namespaced" } else { "Cluster" },
        "singularResource": r.singular,
        "verbs": r.verbs(),
    });
    if !r.short_names.is_empty() {
        e["shortNames"] = json!(r.short_names);
    }
    if !r.categories.is_empty() {
        e["categories"] = json!(r.categories);
    }
    if !subs.is_empty() {
        e["subresources"] = json!(subs);
    }
    e
}

fn aggregated_group(group: &str, versions: &[String]) -> Value {
    let versions: Vec<Value> = versions
        .iter()
        .map(|v| {
            let resources: Vec<Value> = resources::all()
                .into_iter()
                .filter(|r| r.group == group && r.version == *v)
                .map(aggregated_resource)
                .collect();
            json!({ "version": v, "resources": resources, "freshness": "Current" })
        })
        .collect();
    let metadata = if group.is_empty() {
        json!({ "creationTimestamp": null })
    } else {
        json!({ "name": group, "creationTimestamp": null })
    };
    json!({ "metadata": metadata, "versions": versions })
}

/// The aggregated discovery document of `/api` (`core`) or `/apis`.
pub fn aggregated(core: bool) -> Value {
    let items: Vec<Value> = if core {
        vec![aggregated_group("", &["v1".to_string()])]
    } else {
        resources::groups().iter().map(|(g, vs)| aggregated_group(g, vs)).collect()
    };
    json!({ "kind": "APIGroupDiscoveryList", "apiVersion": "apidiscovery.k8s.io/v2", "metadata": {}, "items": items })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn aggregated_discovery_lists_every_resource() {
        assert!(wants_aggregated("application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList,application/json;g=apidiscovery.k8s.io;v=v2beta1;as=APIGroupDiscoveryList,application/json"));
        assert!(!wants_aggregated("application/json, */*"));
        let core = aggregated(true);
        let pods = core["items"][0]["versions"][0]["resources"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["resource"] == "pods")
            .cloned()
            .unwrap();
        assert_eq!(pods["scope"], "Namespaced");
        assert_eq!(pods["shortNames"], json!(["po"]));
        assert!(pods["subresources"].as_array().unwrap().iter().any(|s| s["subresource"] == "log"));
        let apis = aggregated(false);
        assert!(apis["items"].as_array().unwrap().iter().any(|g| g["metadata"]["name"] == "apps"));
    }
}
