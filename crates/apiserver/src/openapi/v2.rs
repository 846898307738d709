//! `/openapi/v2`: the Swagger 2.0 document of everything served, built from
//! the same schemas as the v3 documents (`#/definitions/` instead of
//! `#/components/schemas/`). Clients that ask for the protobuf form get this
//! document through [`super::v2_proto`].

use super::schemas::{self, REF_PREFIX};
use crate::resources;
use serde_json::{json, Map, Value};

/// Whether `accept` allows the JSON document.
pub fn accepts_json(accept: &str) -> bool {
    accept.is_empty()
        || accept.split(',').any(|a| {
            let t = a.split(';').next().unwrap_or_default().trim();
            matches!(t, "application/json" | "*/*" | "application/*")
        })
}

/// Rewrite v3 references to v2 ones; `allOf: [{$ref}]` becomes `$ref` with
/// its siblings, as upstream's v2 spec has them; `nullable` (v3 only) goes.
fn to_v2(v: &Value) -> Value {
    match v {
        Value::Object(m) => {
            let mut out = Map::new();
            for (k, x) in m {
                match k.as_str() {
                    "nullable" => {}
                    "allOf" => match x.as_array().map(Vec::as_slice) {
                        Some([single]) if single.get("$ref").is_some() => {
                            if let Some(r) = single.get("$ref").and_then(Value::as_str) {
                                out.insert("$ref".into(), json!(r.replace(REF_PREFIX, "#/definitions/")));
                            }
                        }
                        _ => {
                            out.insert(k.clone(), to_v2(x));
                        }
                    },
                    "$ref" => {
                        let r = x.as_str().unwrap_or_default().replace(REF_PREFIX, "#/definitions/");
                        out.insert(k.clone(), json!(r));
                    }
                    _ => {
                        out.insert(k.clone(), to_v2(x));
                    }
                }
            }
            Value::Object(out)
        }
        Value::Array(a) => Value::Array(a.iter().map(to_v2).collect()),
        other => other.clone(),
    }
}

/// The whole document.
pub fn document() -> Value {
    let mut definitions = Map::new();
    let mut paths = Map::new();
    let mut gvs: Vec<String> = vec!["api/v1".into()];
    for (g, vs) in resources::groups() {
        gvs.extend(vs.iter().map(|v| format!("apis/{g}/{v}")));
    }
    for gv in gvs {
        let Some(doc) = super::gv_doc(&gv) else { continue };
        if let Some(defs) = doc.pointer("/components/schemas").and_then(Value::as_object) {
            for (k, d) in defs {
                definitions.insert(k.clone(), to_v2(d));
            }
        }
        if let Some(ps) = doc.get("paths").and_then(Value::as_object) {
            for (p, ops) in ps {
                paths.insert(p.clone(), path_v2(ops));
            }
        }
    }
    // Everything the built-in kinds refer to.
    for (k, d) in schemas::definitions() {
        definitions.entry(k.clone()).or_insert_with(|| to_v2(d));
    }
    json!({
        "swagger": "2.0",
        "info": { "title": "Kubernetes", "version": "v1.33.0" },
        "paths": paths,
        "definitions": definitions,
    })
}

/// A v3 path item as v2 operations: parameters stay, the body and response
/// schemas move to v2's places.
fn path_v2(ops: &Value) -> Value {
    let mut out = Map::new();
    for (verb, op) in ops.as_object().into_iter().flatten() {
        let mut o = Map::new();
        for k in ["operationId", "x-kubernetes-action", "x-kubernetes-group-version-kind"] {
            if let Some(v) = op.get(k) {
                o.insert(k.into(), v.clone());
            }
        }
        let mut params: Vec<Value> = op
            .get("parameters")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .map(|p| json!({ "name": p["name"], "in": p["in"], "type": "string", "uniqueItems": true }))
            .collect();
        if let Some(schema) =
            op.pointer("/requestBody/content").and_then(Value::as_object).and_then(|c| c.values().next())
        {
            params.push(json!({ "name": "body", "in": "body", "required": true, "schema": to_v2(&schema["schema"]) }));
            let consumes: Vec<&String> = op
                .pointer("/requestBody/content")
                .and_then(Value::as_object)
                .map(|c| c.keys().collect())
                .unwrap_or_default();
            o.insert("consumes".into(), json!(consumes));
        }
        o.insert("parameters".into(), json!(params));
        let resp =
            op.pointer("/responses/200/content/application~1json/schema").map(to_v2).unwrap_or_else(|| json!({}));
        o.insert("responses".into(), json!({ "200": { "description": "OK", "schema": resp } }));
        o.insert(
            "produces".into(),
            json!(["application/json", "application/yaml", "application/vnd.kubernetes.protobuf"]),
        );
        out.insert(verb.clone(), Value::Object(o));
    }
    Value::Object(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn swagger_document_has_definitions_with_v2_refs() {
        let d = document();
        assert_eq!(d["swagger"], "2.0");
        let svc = &d["definitions"]["io.k8s.api.core.v1.Service"];
        assert_eq!(svc["properties"]["spec"]["$ref"], "#/definitions/io.k8s.api.core.v1.ServiceSpec");
        assert_eq!(
            d["definitions"]["io.k8s.api.core.v1.ServiceSpec"]["properties"]["ports"]["x-kubernetes-patch-merge-key"],
            "port"
        );
        assert!(!d.to_string().contains("#/components/schemas/"));
        assert!(accepts_json("application/json"));
        assert!(!accepts_json("application/com.github.proto-openapi.spec.v2@v1.0+protobuf"));
    }
}
