//! The `autoscaling/v1` Scale subresource: which fields of an object it reads
//! and writes. Built-in kinds (ReplicaSet, Deployment, StatefulSet) scale
//! `.spec.replicas` and report their `.spec.selector`
//! (`pkg/registry/apps/*/storage/storage.go`); a custom resource scales the
//! paths its CRD names (`apiextensions-apiserver/pkg/registry/customresource/etcd.go`,
//! `scaleFromCustomResource`), read and written as `unstructured`'s nested
//! accessors do, with their error texts.

use crate::selector::label_selector_string;
use serde_json::{json, Map, Value};

/// Where the selector of a Scale comes from.
#[derive(Clone, Debug, PartialEq)]
pub enum Selector {
    /// A built-in kind's `metav1.LabelSelector` at `.spec.selector`, printed.
    SpecSelector,
    /// A custom resource's `labelSelectorPath`: a string field.
    Path(String),
    /// No `labelSelectorPath`: the Scale's selector is empty.
    None,
}

/// The fields a Scale maps to.
#[derive(Clone, Debug, PartialEq)]
pub struct ScalePaths {
    /// `.spec.replicas`, or a CRD's `specReplicasPath`.
    pub spec_replicas: String,
    /// `.status.replicas`, or a CRD's `statusReplicasPath`.
    pub status_replicas: String,
    pub selector: Selector,
}

impl ScalePaths {
    /// The paths of the built-in scalable kinds.
    pub fn builtin() -> ScalePaths {
        ScalePaths {
            spec_replicas: ".spec.replicas".into(),
            status_replicas: ".status.replicas".into(),
            selector: Selector::SpecSelector,
        }
    }

    /// A CRD version's `subresources.scale`.
    pub fn custom(spec_replicas: &str, status_replicas: &str, label_selector: Option<&str>) -> ScalePaths {
        ScalePaths {
            spec_replicas: spec_replicas.into(),
            status_replicas: status_replicas.into(),
            selector: match label_selector {
                Some(p) if !p.is_empty() => Selector::Path(p.into()),
                _ => Selector::None,
            },
        }
    }
}

/// A Scale read from an object.
#[derive(Clone, Debug, PartialEq)]
pub struct Scale {
    /// The `autoscaling/v1` Scale object.
    pub object: Value,
    /// Whether the spec replicas field exists (a custom resource's GET of a
    /// Scale without it is an error upstream).
    pub spec_replicas_found: bool,
}

/// Split a simple JSON path (`.spec.replicas`), ignoring the leading period.
fn fields(path: &str) -> Vec<&str> {
    path.strip_prefix('.').unwrap_or(path).split('.').collect()
}

/// `unstructured.jsonPath`.
fn json_path(fields: &[&str]) -> String {
    format!(".{}", fields.join("."))
}

/// How Go's `%v` and `%T` print a decoded JSON value (integers decode as int64).
fn go_value(v: &Value) -> (String, &'static str) {
    match v {
        Value::Null => ("<nil>".into(), "<nil>"),
        Value::Bool(b) => (b.to_string(), "bool"),
        Value::Number(n) if n.is_i64() || n.is_u64() => (n.to_string(), "int64"),
        Value::Number(n) => (n.to_string(), "float64"),
        Value::String(s) => (s.clone(), "string"),
        Value::Array(a) => {
            let items: Vec<String> = a.iter().map(|x| go_value(x).0).collect();
            (format!("[{}]", items.join(" ")), "[]interface {}")
        }
        Value::Object(m) => {
            let items: Vec<String> = m.iter().map(|(k, x)| format!("{k}:{}", go_value(x).0)).collect();
            (format!("map[{}]", items.join(" ")), "map[string]interface {}")
        }
    }
}

fn type_error(fields: &[&str], v: &Value, expected: &str) -> String {
    let (shown, ty) = go_value(v);
    format!("{} accessor error: {shown} is of the type {ty}, expected {expected}", json_path(fields))
}

/// `unstructured.NestedFieldNoCopy`: the value at `fields`, `None` when a
/// level is missing or null, an error when a level is not an object.
fn nested<'a>(obj: &'a Value, fields: &[&str]) -> Result<Option<&'a Value>, String> {
    let mut val = obj;
    for (i, f) in fields.iter().enumerate() {
        match val {
            Value::Null => return Ok(None),
            Value::Object(m) => match m.get(*f) {
                Some(v) => val = v,
                None => return Ok(None),
            },
            other => return Err(type_error(&fields[..i + 1], other, "map[string]interface{}")),
        }
    }
    Ok(Some(val))
}

/// `unstructured.NestedInt64`.
fn nested_int(obj: &Value, path: &str) -> Result<Option<i64>, String> {
    let f = fields(path);
    match nested(obj, &f)? {
        None => Ok(None),
        Some(v) => v.as_i64().filter(|_| !v.is_f64()).map(Some).ok_or_else(|| type_error(&f, v, "int64")),
    }
}

/// `unstructured.NestedString`.
fn nested_string(obj: &Value, path: &str) -> Result<Option<String>, String> {
    let f = fields(path);
    match nested(obj, &f)? {
        None => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(v) => Err(type_error(&f, v, "string")),
    }
}

/// The Scale of `obj` (missing replicas read as 0, as upstream).
pub fn scale_of(obj: &Value, paths: &ScalePaths) -> Result<Scale, String> {
    let spec = nested_int(obj, &paths.spec_replicas)?;
    let status = nested_int(obj, &paths.status_replicas)?.unwrap_or(0);
    let selector = match &paths.selector {
        Selector::SpecSelector => obj.pointer("/spec/selector").map(label_selector_string).unwrap_or_default(),
        Selector::Path(p) => nested_string(obj, p)?.unwrap_or_default(),
        Selector::None => String::new(),
    };
    let meta = obj.get("metadata").cloned().unwrap_or_default();
    let mut m = Map::new();
    for k in ["name", "namespace", "uid", "resourceVersion", "creationTimestamp"] {
        if let Some(v) = meta.get(k) {
            m.insert(k.into(), v.clone());
        }
    }
    // Scale's int32 fields, as the conversion to the typed object truncates.
    let object = json!({
        "kind": "Scale",
        "apiVersion": "autoscaling/v1",
        "metadata": m,
        "spec": { "replicas": spec.unwrap_or(0) as i32 },
        "status": { "replicas": status as i32, "selector": selector },
    });
    Ok(Scale { object, spec_replicas_found: spec.is_some() })
}

/// Write `replicas` at the spec replicas path, creating missing levels
/// (`unstructured.SetNestedField`).
pub fn set_spec_replicas(obj: &mut Value, paths: &ScalePaths, replicas: i64) -> Result<(), String> {
    let f = fields(&paths.spec_replicas);
    let Some((last, parents)) = f.split_last() else { return Ok(()) };
    let mut cur = obj;
    for (i, p) in parents.iter().enumerate() {
        let Value::Object(m) = cur else {
            return Err(format!(
                "value cannot be set because {} is not a map[string]interface{{}}",
                json_path(&f[..i])
            ));
        };
        let next = m.entry(p.to_string()).or_insert_with(|| json!({}));
        if !next.is_object() {
            return Err(format!(
                "value cannot be set because {} is not a map[string]interface{{}}",
                json_path(&f[..i + 1])
            ));
        }
        cur = next;
    }
    match cur {
        Value::Object(m) => {
            m.insert(last.to_string(), json!(replicas));
            Ok(())
        }
        _ => Err(format!("value cannot be set because {} is not a map[string]interface{{}}", json_path(parents))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn custom() -> ScalePaths {
        ScalePaths::custom(".spec.size", ".status.ready", Some(".status.podSelector"))
    }

    #[test]
    fn builtin_kinds_report_spec_selector() {
        let d = json!({"metadata": {"name": "web", "namespace": "default", "resourceVersion": "7"},
            "spec": {"replicas": 3, "selector": {"matchLabels": {"tier": "f", "app": "web"},
                "matchExpressions": [{"key": "env", "operator": "In", "values": ["prod", "dev"]}]}},
            "status": {"replicas": 2}});
        let s = scale_of(&d, &ScalePaths::builtin()).expect("scale");
        assert_eq!(s.object["spec"]["replicas"], 3);
        assert_eq!(s.object["status"], json!({"replicas": 2, "selector": "app=web,env in (dev,prod),tier=f"}));
        assert_eq!(s.object["metadata"], json!({"name": "web", "namespace": "default", "resourceVersion": "7"}));
    }

    #[test]
    fn custom_paths_read_and_write() {
        let mut w =
            json!({"metadata": {"name": "w"}, "spec": {"size": 2}, "status": {"ready": 1, "podSelector": "app=w"}});
        let s = scale_of(&w, &custom()).expect("scale");
        assert!(s.spec_replicas_found);
        assert_eq!(s.object["spec"]["replicas"], 2);
        assert_eq!(s.object["status"], json!({"replicas": 1, "selector": "app=w"}));
        set_spec_replicas(&mut w, &custom(), 5).expect("set");
        assert_eq!(w["spec"]["size"], 5);
        // Missing fields read as 0 and are created on write.
        let mut bare = json!({"metadata": {"name": "b"}});
        let s = scale_of(&bare, &custom()).expect("scale");
        assert!(!s.spec_replicas_found);
        assert_eq!(s.object["status"], json!({"replicas": 0, "selector": ""}));
        set_spec_replicas(&mut bare, &ScalePaths::custom(".spec.a.b", ".status.r", None), 1).expect("set");
        assert_eq!(bare["spec"], json!({"a": {"b": 1}}));
    }

    #[test]
    fn wrong_types_give_unstructureds_errors() {
        let w = json!({"spec": {"size": "two"}});
        assert_eq!(
            scale_of(&w, &custom()).unwrap_err(),
            ".spec.size accessor error: two is of the type string, expected int64"
        );
        let w = json!({"spec": {"size": 1.5}});
        assert_eq!(
            scale_of(&w, &custom()).unwrap_err(),
            ".spec.size accessor error: 1.5 is of the type float64, expected int64"
        );
        let w = json!({"spec": {"size": 1}, "status": {"podSelector": {"app": "w"}}});
        assert_eq!(
            scale_of(&w, &custom()).unwrap_err(),
            ".status.podSelector accessor error: map[app:w] is of the type map[string]interface {}, expected string"
        );
        let w = json!({"spec": 3});
        assert_eq!(
            scale_of(&w, &custom()).unwrap_err(),
            ".spec.size accessor error: 3 is of the type int64, expected map[string]interface{}"
        );
        let mut w = json!({"spec": {"size": [1]}});
        let deep = ScalePaths::custom(".spec.size.n", ".status.r", None);
        assert_eq!(
            set_spec_replicas(&mut w, &deep, 2).unwrap_err(),
            "value cannot be set because .spec.size is not a map[string]interface{}"
        );
    }
}
