//! Server-side apply's view of a custom resource: a [`Shape`] built from the
//! CRD's structural schema and its `x-kubernetes-list-type`,
//! `x-kubernetes-list-map-keys`, `x-kubernetes-map-type` extensions (what
//! upstream's `managedfields` type converter reads from the CRD's OpenAPI).
//! Shapes are `'static`, so each one built is kept for the life of the
//! process; the API server builds one per CRD version it serves.

use crate::smd::schema::Shape;
use serde_json::Value;

fn leak<T>(v: T) -> &'static T {
    Box::leak(Box::new(v))
}

fn leak_str(s: &str) -> &'static str {
    Box::leak(s.to_string().into_boxed_str())
}

/// The shape of objects validated by `schema` (`openAPIV3Schema`).
pub fn from_schema(schema: &Value) -> &'static Shape {
    leak(build(schema))
}

fn build(s: &Value) -> Shape {
    let str_of = |k: &str| s.get(k).and_then(Value::as_str).unwrap_or_default();
    match str_of("type") {
        "array" => {
            let item = s.get("items").map(build).unwrap_or(Shape::Default);
            match str_of("x-kubernetes-list-type") {
                "map" => {
                    let item_props = s.pointer("/items/properties");
                    let keys: Vec<(&'static str, Option<&'static str>)> = s
                        .get("x-kubernetes-list-map-keys")
                        .and_then(Value::as_array)
                        .into_iter()
                        .flatten()
                        .filter_map(Value::as_str)
                        .map(|k| {
                            let default = item_props
                                .and_then(|p| p.get(k))
                                .and_then(|p| p.get("default"))
                                .and_then(Value::as_str)
                                .map(leak_str);
                            (leak_str(k), default)
                        })
                        .collect();
                    Shape::ListMap { keys: Box::leak(keys.into_boxed_slice()), item: leak(item) }
                }
                "set" => Shape::ListSet,
                _ => Shape::Atomic,
            }
        }
        "object" if str_of("x-kubernetes-map-type") == "atomic" => Shape::Atomic,
        "object" => {
            if let Some(props) = s.get("properties").and_then(Value::as_object) {
                let fields: Vec<(&'static str, &'static Shape)> =
                    props.iter().map(|(k, v)| (leak_str(k), leak(build(v)))).collect();
                Shape::Struct(Box::leak(fields.into_boxed_slice()))
            } else if let Some(add) = s.get("additionalProperties").filter(|a| a.is_object()) {
                Shape::Map(leak(build(add)))
            } else {
                Shape::Default
            }
        }
        _ => Shape::Default,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn list_types_become_shapes() {
        let schema = json!({"type": "object", "properties": {"spec": {"type": "object", "properties": {
            "ports": {"type": "array", "x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["port", "protocol"],
                "items": {"type": "object", "properties": {"port": {"type": "integer"}, "protocol": {"type": "string", "default": "TCP"}}}},
            "tags": {"type": "array", "x-kubernetes-list-type": "set", "items": {"type": "string"}},
            "selector": {"type": "object", "x-kubernetes-map-type": "atomic", "additionalProperties": {"type": "string"}}
        }}}});
        let shape = from_schema(&schema);
        let spec = shape.field("spec");
        match spec.field("ports") {
            Shape::ListMap { keys, .. } => assert_eq!(keys, &[("port", None), ("protocol", Some("TCP"))]),
            other => panic!("{other:?}"),
        }
        assert!(matches!(spec.field("tags"), Shape::ListSet));
        assert!(matches!(spec.field("selector"), Shape::Atomic));
        let set = crate::smd::typed::to_field_set(&json!({"spec": {"ports": [{"port": 80}]}}), shape).unwrap();
        assert!(set.to_fields_v1()["f:spec"]["f:ports"].get("k:{\"port\":80,\"protocol\":\"TCP\"}").is_some());
    }
}
