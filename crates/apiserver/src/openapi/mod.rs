//! OpenAPI v3 documents: the operations of each group version and the field
//! schemas of its kinds (`schemas`), so that `kubectl explain` prints
//! upstream's text, kubectl finds the patch metadata of strategic merge
//! patches, and clients see that the server validates fields itself
//! (`fieldValidation`, what kubectl's `--validate=strict` checks for).

mod enums;
pub mod schemas;
pub mod v2;
pub mod v2_proto;

use crate::resources::{self, Resource};
use serde_json::{json, Value};

/// `/openapi/v3`: the index of group-version documents.
pub fn root() -> Value {
    let mut paths = serde_json::Map::new();
    let mut gvs: Vec<(String, String)> = vec![("api/v1".into(), String::new())];
    for (g, vs) in resources::groups() {
        gvs.extend(vs.iter().map(|v| (format!("apis/{g}/{v}"), String::new())));
    }
    for (p, _) in gvs {
        let hash = hash(&gv_doc(&p).map(|d| d.to_string()).unwrap_or_default());
        paths.insert(p.clone(), json!({ "serverRelativeURL": format!("/openapi/v3/{p}?hash={hash}") }));
    }
    json!({ "paths": paths })
}

fn hash(s: &str) -> String {
    // FNV-1a: stable across runs, good enough as a cache key.
    let mut h: u64 = 0xcbf29ce484222325;
    for b in s.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x100000001b3);
    }
    format!("{h:016X}")
}

fn gvk(r: &Resource) -> Value {
    json!({ "group": r.group, "version": r.version, "kind": r.kind })
}

fn schema_name(r: &Resource) -> String {
    if let Some(n) = schemas::kind_schema(r.group, r.version, r.kind) {
        return n.to_string();
    }
    if r.group == "metallb.io" || crate::crd::custom(r).is_some() {
        // A CRD's schema is named by its reversed group (`io.metallb.v1beta1.IPAddressPool`).
        let reversed: Vec<&str> = r.group.split('.').rev().collect();
        return format!("{}.{}.{}", reversed.join("."), r.version, r.kind);
    }
    let g = match r.group {
        "" => "core",
        "discovery.k8s.io" => "discovery",
        "coordination.k8s.io" => "coordination",
        other => other,
    };
    format!("io.k8s.api.{g}.{}.{}", r.version, r.kind)
}

fn operation(r: &Resource, verb: &str, id: &str, with_body: bool, patch: bool) -> Value {
    let mut params = vec![
        json!({ "name": "dryRun", "in": "query", "schema": { "type": "string", "uniqueItems": true } }),
        json!({ "name": "fieldManager", "in": "query", "schema": { "type": "string", "uniqueItems": true } }),
    ];
    if with_body {
        params.push(
            json!({ "name": "fieldValidation", "in": "query", "schema": { "type": "string", "uniqueItems": true } }),
        );
    }
    let reference = json!({ "$ref": format!("#/components/schemas/{}", schema_name(r)) });
    let mut op = json!({
        "operationId": id,
        "parameters": params,
        "responses": { "200": { "description": "OK", "content": { "application/json": { "schema": reference } } } },
        "x-kubernetes-action": verb,
        "x-kubernetes-group-version-kind": gvk(r),
    });
    if with_body {
        // Strategic merge patch is accepted, but not advertised here: without
        // full schemas kubectl computes apply patches from its built-in types.
        let types: &[&str] = if patch {
            &["application/json-patch+json", "application/merge-patch+json"]
        } else {
            &["application/json"]
        };
        let content: serde_json::Map<String, Value> =
            types.iter().map(|t| (t.to_string(), json!({ "schema": reference }))).collect();
        op["requestBody"] = json!({ "content": content, "required": true });
    }
    op
}

/// The document of one group version (`api/v1`, `apis/apps/v1`).
pub fn gv_doc(path: &str) -> Option<Value> {
    let (group, version) = match path.split('/').collect::<Vec<_>>().as_slice() {
        ["api", v] => ("", *v),
        ["apis", g, v] => (*g, *v),
        _ => return None,
    };
    let mut paths = serde_json::Map::new();
    let mut schemas = serde_json::Map::new();
    let mut found = false;
    for r in resources::all().into_iter().filter(|r| r.group == group && r.version == version) {
        found = true;
        let base =
            if r.group.is_empty() { format!("/api/{}", r.version) } else { format!("/apis/{}/{}", r.group, r.version) };
        let coll = if r.namespaced {
            format!("{base}/namespaces/{{namespace}}/{}", r.plural)
        } else {
            format!("{base}/{}", r.plural)
        };
        let item = format!("{coll}/{{name}}");
        paths.insert(coll, json!({ "post": operation(r, "post", &format!("create{}", r.kind), true, false), "get": operation(r, "list", &format!("list{}", r.kind), false, false) }));
        paths.insert(
            item.clone(),
            json!({
                "get": operation(r, "get", &format!("read{}", r.kind), false, false),
                "put": operation(r, "put", &format!("replace{}", r.kind), true, false),
                "patch": operation(r, "patch", &format!("patch{}", r.kind), true, true),
                "delete": operation(r, "delete", &format!("delete{}", r.kind), false, false),
            }),
        );
        if r.status {
            paths.insert(
                format!("{item}/status"),
                json!({
                    "get": operation(r, "get", &format!("read{}Status", r.kind), false, false),
                    "put": operation(r, "put", &format!("replace{}Status", r.kind), true, false),
                    "patch": operation(r, "patch", &format!("patch{}Status", r.kind), true, true),
                }),
            );
        }
        match schemas::kind_schema(r.group, r.version, r.kind) {
            Some(name) => {
                for dep in schemas::closure(&[name]) {
                    if let Some(d) = schemas::definitions().get(&dep) {
                        schemas.insert(dep, d.clone());
                    }
                }
            }
            None if crate::crd::custom(r).is_some_and(|c| c.version.schema.is_some()) => {
                let c = crate::crd::custom(r).and_then(|c| c.version.schema).unwrap_or_default();
                schemas.insert(schema_name(r), custom_schema(r, c));
                for dep in schemas::closure(&["io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta"]) {
                    if let Some(d) = schemas::definitions().get(&dep) {
                        schemas.insert(dep, d.clone());
                    }
                }
            }
            None => {
                schemas.insert(
                    schema_name(r),
                    json!({
                        "type": "object",
                        "x-kubernetes-group-version-kind": [gvk(r)],
                    }),
                );
            }
        }
    }
    found.then(|| {
        json!({
            "openapi": "3.0.0",
            "info": { "title": "Kubernetes", "version": "v1.33.0" },
            "paths": paths,
            "components": { "schemas": schemas },
        })
    })
}

/// A custom resource's schema: its CRD's `openAPIV3Schema` with the standard
/// `apiVersion`, `kind` and `metadata` (upstream `builder.go` of apiextensions).
fn custom_schema(r: &Resource, mut schema: Value) -> Value {
    if let Some(m) = schema.as_object_mut() {
        let props = m.entry("properties").or_insert_with(|| json!({}));
        if let Some(p) = props.as_object_mut() {
            p.insert("apiVersion".into(), json!({ "type": "string", "description": "APIVersion defines the versioned schema of this representation of an object. Servers should convert recognized schemas to the latest internal value, and may reject unrecognized values. More info: https://git.k8s.io/community/contributors/devel/sig-architecture/api-conventions.md#resources" }));
            p.insert("kind".into(), json!({ "type": "string", "description": "Kind is a string value representing the REST resource this object represents. Servers may infer this from the endpoint the client submits requests to. Cannot be updated. In CamelCase. More info: https://git.k8s.io/community/contributors/devel/sig-architecture/api-conventions.md#types-kinds" }));
            p.insert("metadata".into(), json!({ "allOf": [{ "$ref": format!("{}io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta", schemas::REF_PREFIX) }], "description": "Standard object's metadata. More info: https://git.k8s.io/community/contributors/devel/sig-architecture/api-conventions.md#metadata" }));
        }
        m.insert("x-kubernetes-group-version-kind".into(), json!([gvk(r)]));
    }
    schema
}
