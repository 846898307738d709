//! Field schemas of the OpenAPI documents: generated from the k8s-openapi types
//! (their `JsonSchema` impls carry upstream's descriptions, types and formats),
//! plus what k8s-openapi leaves out and clients read: the
//! `x-kubernetes-group-version-kind` of each kind, patch strategies and merge
//! keys (kubectl's strategic merge patch), list types, list-map keys and
//! atomic maps/structs (server-side apply), and enums with their "Possible enum
//! values" lines (`kubectl explain`). Upstream: kube-openapi's generators and
//! `api/openapi-spec/v3/*.json`.

use apimachinery::smd::schema::Shape;
use k8s_openapi::api::{
    apps::v1 as apps, batch::v1 as batch, coordination::v1 as coord, core::v1 as core, discovery::v1 as disc,
};
use serde_json::{json, Map, Value};
use std::sync::OnceLock;

/// Prefix of a reference to another schema.
pub const REF_PREFIX: &str = "#/components/schemas/";

/// (group, version, kind, schema name) of the kinds with field schemas.
pub static KINDS: &[(&str, &str, &str, &str)] = &[
    ("", "v1", "Namespace", "io.k8s.api.core.v1.Namespace"),
    ("", "v1", "Pod", "io.k8s.api.core.v1.Pod"),
    ("", "v1", "Service", "io.k8s.api.core.v1.Service"),
    ("", "v1", "Endpoints", "io.k8s.api.core.v1.Endpoints"),
    ("", "v1", "Node", "io.k8s.api.core.v1.Node"),
    ("", "v1", "Event", "io.k8s.api.core.v1.Event"),
    ("", "v1", "ConfigMap", "io.k8s.api.core.v1.ConfigMap"),
    ("", "v1", "Secret", "io.k8s.api.core.v1.Secret"),
    ("", "v1", "ServiceAccount", "io.k8s.api.core.v1.ServiceAccount"),
    ("apps", "v1", "ReplicaSet", "io.k8s.api.apps.v1.ReplicaSet"),
    ("apps", "v1", "Deployment", "io.k8s.api.apps.v1.Deployment"),
    ("apps", "v1", "DaemonSet", "io.k8s.api.apps.v1.DaemonSet"),
    ("apps", "v1", "StatefulSet", "io.k8s.api.apps.v1.StatefulSet"),
    ("batch", "v1", "Job", "io.k8s.api.batch.v1.Job"),
    ("batch", "v1", "CronJob", "io.k8s.api.batch.v1.CronJob"),
    ("discovery.k8s.io", "v1", "EndpointSlice", "io.k8s.api.discovery.v1.EndpointSlice"),
    ("coordination.k8s.io", "v1", "Lease", "io.k8s.api.coordination.v1.Lease"),
];

/// The schema name of `(group, version, kind)`, if it has field schemas.
pub fn kind_schema(group: &str, version: &str, kind: &str) -> Option<&'static str> {
    KINDS.iter().find(|(g, v, k, _)| *g == group && *v == version && *k == kind).map(|(_, _, _, n)| *n)
}

/// Every definition, keyed by schema name, with rkube's extensions. Built once.
pub fn definitions() -> &'static Map<String, Value> {
    static DEFS: OnceLock<Map<String, Value>> = OnceLock::new();
    DEFS.get_or_init(build)
}

fn build() -> Map<String, Value> {
    let mut gen = schemars::generate::SchemaSettings::openapi3().into_generator();
    gen.subschema_for::<core::Namespace>();
    gen.subschema_for::<core::Pod>();
    gen.subschema_for::<core::Service>();
    gen.subschema_for::<core::Endpoints>();
    gen.subschema_for::<core::Node>();
    gen.subschema_for::<core::Event>();
    gen.subschema_for::<core::ConfigMap>();
    gen.subschema_for::<core::Secret>();
    gen.subschema_for::<core::ServiceAccount>();
    gen.subschema_for::<apps::ReplicaSet>();
    gen.subschema_for::<apps::Deployment>();
    gen.subschema_for::<apps::DaemonSet>();
    gen.subschema_for::<apps::StatefulSet>();
    gen.subschema_for::<batch::Job>();
    gen.subschema_for::<batch::CronJob>();
    gen.subschema_for::<disc::EndpointSlice>();
    gen.subschema_for::<coord::Lease>();
    let mut defs = gen.take_definitions(true);
    for (group, version, kind, name) in KINDS {
        if let Some(d) = defs.get_mut(*name).and_then(Value::as_object_mut) {
            d.insert(
                "x-kubernetes-group-version-kind".into(),
                json!([{ "group": group, "kind": kind, "version": version }]),
            );
            // k8s-openapi's Rust types require `metadata`; upstream's schema does not.
            if let Some(Value::Array(req)) = d.get_mut("required") {
                req.retain(|f| f != "metadata");
                if req.is_empty() {
                    d.remove("required");
                }
            }
        }
        for f in apimachinery::strategic_merge::patch_fields(group, kind) {
            if let Some(prop) = resolve(&mut defs, name, &f.path) {
                prop.insert("x-kubernetes-patch-strategy".into(), json!(f.strategy));
                if !f.merge_key.is_empty() {
                    prop.insert("x-kubernetes-patch-merge-key".into(), json!(f.merge_key));
                }
            }
        }
        annotate_shape(&mut defs, name, apimachinery::smd::schema::for_kind(group, kind), &mut Vec::new());
    }
    add_enums(&mut defs);
    defs
}

/// The target schema name of a property that refers to another schema
/// (`$ref`, or `allOf: [{$ref}]` when the reference has siblings).
pub fn ref_target(prop: &Value) -> Option<&str> {
    let r = prop.get("$ref").or_else(|| prop.pointer("/allOf/0/$ref"))?;
    r.as_str()?.strip_prefix(REF_PREFIX)
}

/// The schema of the last field of `path`, starting at definition `root`
/// (passing through references and list items).
fn resolve<'a>(defs: &'a mut Map<String, Value>, root: &str, path: &[&str]) -> Option<&'a mut Map<String, Value>> {
    let (last, parents) = path.split_last()?;
    let mut def = root.to_string();
    for name in parents {
        let prop = defs.get(&def)?.pointer(&format!("/properties/{name}"))?;
        let through = if prop.get("type").and_then(Value::as_str) == Some("array") { prop.get("items")? } else { prop };
        def = ref_target(through)?.to_string();
    }
    defs.get_mut(&def)?.pointer_mut(&format!("/properties/{last}"))?.as_object_mut()
}

/// Server-side apply's view (`apimachinery::smd::schema`) as upstream's
/// extensions: list types and keys on list fields, `x-kubernetes-map-type:
/// atomic` on atomic maps and on the schemas of atomic structs.
fn annotate_shape(defs: &mut Map<String, Value>, root: &str, shape: &'static Shape, path: &mut Vec<&'static str>) {
    let Shape::Struct(fields) = shape else { return };
    for (name, child) in fields.iter() {
        path.push(name);
        let Some(prop) = resolve(defs, root, path) else {
            path.pop();
            continue;
        };
        let is_array = prop.get("type").and_then(Value::as_str) == Some("array");
        let is_map = prop.contains_key("additionalProperties");
        let target = ref_target(&Value::Object(prop.clone())).map(String::from);
        match child {
            Shape::ListMap { keys, item } => {
                prop.insert("x-kubernetes-list-type".into(), json!("map"));
                let names: Vec<&str> = keys.iter().map(|(k, _)| *k).collect();
                prop.insert("x-kubernetes-list-map-keys".into(), json!(names));
                if matches!(item, Shape::Atomic) {
                    if let Some(t) = prop.get("items").and_then(ref_target).map(String::from) {
                        set_map_type_atomic(defs, &t);
                    }
                } else {
                    annotate_shape(defs, root, item, path);
                }
            }
            Shape::ListSet => {
                prop.insert("x-kubernetes-list-type".into(), json!("set"));
            }
            Shape::Atomic if is_array => {
                prop.insert("x-kubernetes-list-type".into(), json!("atomic"));
            }
            Shape::Atomic if is_map => {
                prop.insert("x-kubernetes-map-type".into(), json!("atomic"));
            }
            Shape::Atomic => {
                if let Some(t) = target {
                    set_map_type_atomic(defs, &t);
                }
            }
            Shape::Struct(_) => annotate_shape(defs, root, child, path),
            Shape::Map(_) | Shape::Default => {}
        }
        path.pop();
    }
}

fn set_map_type_atomic(defs: &mut Map<String, Value>, name: &str) {
    if let Some(d) = defs.get_mut(name).and_then(Value::as_object_mut) {
        d.insert("x-kubernetes-map-type".into(), json!("atomic"));
    }
}

/// `enum` and the "Possible enum values" lines (kube-openapi `enum.go`).
fn add_enums(defs: &mut Map<String, Value>) {
    for (schema, field, values) in super::enums::ENUMS {
        let Some(prop) = defs.get_mut(*schema).and_then(|d| d.pointer_mut(&format!("/properties/{field}"))) else {
            continue;
        };
        let Some(prop) = prop.as_object_mut() else { continue };
        prop.insert("enum".into(), json!(values.iter().map(|(v, _)| *v).collect::<Vec<_>>()));
        let lines: Vec<String> = values
            .iter()
            .map(|(v, doc)| if doc.is_empty() { format!(" - `{v:?}`") } else { format!(" - `{v:?}` {doc}") })
            .collect();
        let desc = prop.get("description").and_then(Value::as_str).unwrap_or_default().to_string();
        let sep = if desc.is_empty() { "" } else { "\n\n" };
        prop.insert("description".into(), json!(format!("{desc}{sep}Possible enum values:\n{}", lines.join("\n"))));
    }
}

/// The names of `roots` and of every schema they refer to, transitively.
pub fn closure(roots: &[&str]) -> Vec<String> {
    let defs = definitions();
    let mut seen: Vec<String> = Vec::new();
    let mut todo: Vec<String> = roots.iter().map(|s| s.to_string()).collect();
    while let Some(name) = todo.pop() {
        if seen.contains(&name) {
            continue;
        }
        if let Some(d) = defs.get(&name) {
            collect_refs(d, &mut todo);
            seen.push(name);
        }
    }
    seen.sort();
    seen
}

fn collect_refs(v: &Value, out: &mut Vec<String>) {
    match v {
        Value::Object(m) => {
            if let Some(r) = m.get("$ref").and_then(Value::as_str).and_then(|r| r.strip_prefix(REF_PREFIX)) {
                out.push(r.to_string());
            }
            m.values().for_each(|x| collect_refs(x, out));
        }
        Value::Array(a) => a.iter().for_each(|x| collect_refs(x, out)),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn prop(schema: &str, field: &str) -> &'static Value {
        definitions().get(schema).and_then(|d| d.pointer(&format!("/properties/{field}"))).expect(field)
    }

    #[test]
    fn service_spec_carries_upstreams_extensions() {
        let ports = prop("io.k8s.api.core.v1.ServiceSpec", "ports");
        assert_eq!(ports["x-kubernetes-list-type"], "map");
        assert_eq!(ports["x-kubernetes-list-map-keys"], json!(["port", "protocol"]));
        assert_eq!(ports["x-kubernetes-patch-strategy"], "merge");
        assert_eq!(ports["x-kubernetes-patch-merge-key"], "port");
        assert_eq!(prop("io.k8s.api.core.v1.ServiceSpec", "selector")["x-kubernetes-map-type"], "atomic");
        let aff = prop("io.k8s.api.core.v1.ServiceSpec", "sessionAffinity");
        assert_eq!(aff["enum"], json!(["ClientIP", "None"]));
        assert!(aff["description"].as_str().unwrap().ends_with(
            "Possible enum values:\n - `\"ClientIP\"` is the Client IP based.\n - `\"None\"` - no session affinity."
        ));
        assert!(definitions()["io.k8s.api.core.v1.Pod"].get("required").is_none());
        assert_eq!(
            definitions()["io.k8s.api.core.v1.Service"]["x-kubernetes-group-version-kind"],
            json!([{"group": "", "kind": "Service", "version": "v1"}])
        );
    }

    #[test]
    fn pod_and_workload_extensions() {
        let c = prop("io.k8s.api.core.v1.PodSpec", "containers");
        assert_eq!(c["x-kubernetes-patch-merge-key"], "name");
        assert_eq!(c["x-kubernetes-list-map-keys"], json!(["name"]));
        assert_eq!(
            prop("io.k8s.api.core.v1.Container", "ports")["x-kubernetes-list-map-keys"],
            json!(["containerPort", "protocol"])
        );
        assert_eq!(prop("io.k8s.api.core.v1.PodSpec", "volumes")["x-kubernetes-patch-strategy"], "merge,retainKeys");
        assert_eq!(prop("io.k8s.api.apps.v1.DeploymentSpec", "strategy")["x-kubernetes-patch-strategy"], "retainKeys");
        assert_eq!(
            definitions()["io.k8s.apimachinery.pkg.apis.meta.v1.LabelSelector"]["x-kubernetes-map-type"],
            "atomic"
        );
        assert_eq!(
            prop("io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta", "finalizers")["x-kubernetes-list-type"],
            "set"
        );
        let spec = prop("io.k8s.api.apps.v1.Deployment", "spec");
        assert_eq!(ref_target(spec), Some("io.k8s.api.apps.v1.DeploymentSpec"));
        assert!(closure(&["io.k8s.api.apps.v1.Deployment"]).contains(&"io.k8s.api.core.v1.PodSpec".to_string()));
    }
}
