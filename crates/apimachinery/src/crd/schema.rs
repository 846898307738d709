//! A structural schema applied to a custom object: [`prune`] drops fields the
//! schema does not declare (unless `x-kubernetes-preserve-unknown-fields`),
//! [`default`] fills `default`s of absent fields, [`validate`] checks types,
//! required fields, enums, bounds, lengths, patterns and item counts.
//! `apiVersion`, `kind` and `metadata` at the root are the API server's, not
//! the schema's.

use crate::field::FieldError;
use serde_json::Value;

/// The API server's fields of a custom object's root, never the schema's.
pub(super) const ROOT_FIELDS: &[&str] = &["apiVersion", "kind", "metadata"];

/// `path.name`, or `name` at the root.
pub(super) fn child_path(path: &str, name: &str) -> String {
    if path.is_empty() {
        name.to_string()
    } else {
        format!("{path}.{name}")
    }
}

fn preserves_unknown(schema: &Value) -> bool {
    schema.get("x-kubernetes-preserve-unknown-fields").and_then(Value::as_bool) == Some(true)
}

/// Remove fields `schema` does not declare; returns their paths (for
/// `fieldValidation` warnings or errors). Upstream: `pruning/algorithm.go`.
pub fn prune(obj: &mut Value, schema: &Value) -> Vec<String> {
    let mut pruned = Vec::new();
    prune_node(obj, schema, "", true, &mut pruned);
    pruned
}

fn prune_node(v: &mut Value, schema: &Value, path: &str, root: bool, out: &mut Vec<String>) {
    match v {
        Value::Object(m) => {
            let props = schema.get("properties").and_then(Value::as_object);
            let additional = schema.get("additionalProperties").filter(|a| a.is_object());
            let keys: Vec<String> = m.keys().cloned().collect();
            for k in keys {
                if root && ROOT_FIELDS.contains(&k.as_str()) {
                    continue;
                }
                let p = child_path(path, &k);
                match (props.and_then(|ps| ps.get(&k)), additional) {
                    (Some(sub), _) | (None, Some(sub)) => {
                        if let Some(c) = m.get_mut(&k) {
                            prune_node(c, sub, &p, false, out);
                        }
                    }
                    (None, None) if preserves_unknown(schema) => {}
                    (None, None) => {
                        m.remove(&k);
                        out.push(p);
                    }
                }
            }
        }
        Value::Array(items) => {
            if let Some(sub) = schema.get("items") {
                for (i, item) in items.iter_mut().enumerate() {
                    prune_node(item, sub, &format!("{path}[{i}]"), false, out);
                }
            }
        }
        _ => {}
    }
}

/// Set the `default` of every absent property (and recurse into present
/// ones). Upstream: `defaulting/algorithm.go`.
pub fn default(obj: &mut Value, schema: &Value) {
    match obj {
        Value::Object(m) => {
            if let Some(props) = schema.get("properties").and_then(Value::as_object) {
                for (k, sub) in props {
                    match m.get_mut(k) {
                        Some(c) => default(c, sub),
                        None => {
                            if let Some(d) = sub.get("default") {
                                let mut d = d.clone();
                                default(&mut d, sub);
                                m.insert(k.clone(), d);
                            }
                        }
                    }
                }
            }
            if let Some(add) = schema.get("additionalProperties").filter(|a| a.is_object()) {
                let declared = schema.get("properties").and_then(Value::as_object);
                for (k, c) in m.iter_mut() {
                    if !declared.is_some_and(|d| d.contains_key(k)) {
                        default(c, add);
                    }
                }
            }
        }
        Value::Array(items) => {
            if let Some(sub) = schema.get("items") {
                items.iter_mut().for_each(|i| default(i, sub));
            }
        }
        _ => {}
    }
}

/// JSON type names as kube-openapi reports them.
fn type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(n) if n.is_i64() || n.is_u64() => "integer",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

fn type_matches(want: &str, v: &Value) -> bool {
    match want {
        "object" => v.is_object(),
        "array" => v.is_array(),
        "string" => v.is_string(),
        "boolean" => v.is_boolean(),
        "integer" => v.is_i64() || v.is_u64(),
        "number" => v.is_number(),
        _ => true,
    }
}

/// A schema number as Go's `%v` prints a float64 (`10`, `1.5`).
fn go_number(v: &Value) -> String {
    match v.as_f64() {
        Some(f) if f.fract() == 0.0 && f.abs() < 1e15 => format!("{}", f as i64),
        Some(f) => format!("{f}"),
        None => v.to_string(),
    }
}

/// Check `obj` against `schema`; field paths as upstream prints them.
pub fn validate(obj: &Value, schema: &Value) -> Vec<FieldError> {
    let mut errs = Vec::new();
    validate_node(obj, schema, "", true, &mut errs);
    errs
}

fn validate_node(v: &Value, schema: &Value, path: &str, root: bool, errs: &mut Vec<FieldError>) {
    let invalid = |errs: &mut Vec<FieldError>, msg: String| errs.push(FieldError::invalid(path, v.clone(), msg));
    if v.is_null() {
        let nullable = schema.get("nullable").and_then(Value::as_bool) == Some(true);
        if let Some(t) = schema.get("type").and_then(Value::as_str).filter(|_| !nullable) {
            errs.push(FieldError::type_invalid(path, "null", format!("{path} in body must be of type {t}: \"null\"")));
        }
        return;
    }
    let int_or_string = schema.get("x-kubernetes-int-or-string").and_then(Value::as_bool) == Some(true);
    if int_or_string {
        if !(v.is_string() || v.is_i64() || v.is_u64()) {
            errs.push(FieldError::type_invalid(
                path,
                v.clone(),
                format!("{path} in body must be of type integer,string: {:?}", type_name(v)),
            ));
            return;
        }
    } else if let Some(t) = schema.get("type").and_then(Value::as_str) {
        if !type_matches(t, v) {
            errs.push(FieldError::type_invalid(
                path,
                v.clone(),
                format!("{path} in body must be of type {t}: {:?}", type_name(v)),
            ));
            return;
        }
    }
    if let Some(options) = schema.get("enum").and_then(Value::as_array) {
        if !options.contains(v) {
            let values: Vec<String> =
                options.iter().map(|o| o.as_str().map(String::from).unwrap_or_else(|| o.to_string())).collect();
            let refs: Vec<&str> = values.iter().map(String::as_str).collect();
            errs.push(FieldError::not_supported(path, v.clone(), &refs));
        }
    }
    match v {
        Value::Object(m) => {
            let props = schema.get("properties").and_then(Value::as_object);
            for req in schema.get("required").and_then(Value::as_array).into_iter().flatten().filter_map(Value::as_str)
            {
                if !m.contains_key(req) {
                    errs.push(FieldError::required(child_path(path, req), ""));
                }
            }
            let additional = schema.get("additionalProperties").filter(|a| a.is_object());
            for (k, c) in m {
                if root && ROOT_FIELDS.contains(&k.as_str()) {
                    continue;
                }
                match (props.and_then(|ps| ps.get(k)), additional) {
                    (Some(sub), _) | (None, Some(sub)) => validate_node(c, sub, &child_path(path, k), false, errs),
                    _ => {}
                }
            }
            if let Some(max) = schema.get("maxProperties").and_then(Value::as_u64) {
                if m.len() as u64 > max {
                    errs.push(FieldError::too_many(path, m.len(), max as usize));
                }
            }
            if let Some(min) = schema.get("minProperties").and_then(Value::as_u64) {
                if (m.len() as u64) < min {
                    invalid(errs, format!("{path} in body should have at least {min} properties"));
                }
            }
        }
        Value::Array(items) => {
            if let Some(max) = schema.get("maxItems").and_then(Value::as_u64) {
                if items.len() as u64 > max {
                    errs.push(FieldError::too_many(path, items.len(), max as usize));
                }
            }
            if let Some(min) = schema.get("minItems").and_then(Value::as_u64) {
                if (items.len() as u64) < min {
                    invalid(errs, format!("{path} in body should have at least {min} items"));
                }
            }
            if let Some(sub) = schema.get("items") {
                for (i, item) in items.iter().enumerate() {
                    validate_node(item, sub, &format!("{path}[{i}]"), false, errs);
                }
            }
        }
        Value::String(s) => {
            let len = s.chars().count() as u64;
            if let Some(max) = schema.get("maxLength").and_then(Value::as_u64) {
                if len > max {
                    errs.push(FieldError::too_long(path, max as usize));
                }
            }
            if let Some(min) = schema.get("minLength").and_then(Value::as_u64) {
                if len < min {
                    invalid(errs, format!("{path} in body should be at least {min} chars long"));
                }
            }
            if let Some(p) = schema.get("pattern").and_then(Value::as_str) {
                match regex::Regex::new(p) {
                    Ok(re) if re.is_match(s) => {}
                    Ok(_) => invalid(errs, format!("{path} in body should match '{p}'")),
                    Err(e) => invalid(errs, format!("{path} in body should match '{p}, but pattern is invalid: {e}'")),
                }
            }
        }
        Value::Number(n) => {
            let x = n.as_f64().unwrap_or(0.0);
            let flag = |k: &str| schema.get(k).and_then(Value::as_bool) == Some(true);
            if let Some(max) = schema.get("maximum") {
                let m = max.as_f64().unwrap_or(f64::INFINITY);
                if flag("exclusiveMaximum") && x >= m {
                    invalid(errs, format!("{path} in body should be less than {}", go_number(max)));
                } else if x > m {
                    invalid(errs, format!("{path} in body should be less than or equal to {}", go_number(max)));
                }
            }
            if let Some(min) = schema.get("minimum") {
                let m = min.as_f64().unwrap_or(f64::NEG_INFINITY);
                if flag("exclusiveMinimum") && x <= m {
                    invalid(errs, format!("{path} in body should be greater than {}", go_number(min)));
                } else if x < m {
                    invalid(errs, format!("{path} in body should be greater than or equal to {}", go_number(min)));
                }
            }
            if let Some(step) = schema.get("multipleOf").and_then(Value::as_f64).filter(|s| *s > 0.0) {
                if (x / step).fract().abs() > 1e-9 {
                    invalid(
                        errs,
                        format!("{path} in body should be a multiple of {}", go_number(&schema["multipleOf"])),
                    );
                }
            }
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::field::aggregate;
    use serde_json::json;

    fn schema() -> Value {
        json!({
            "type": "object",
            "properties": {
                "spec": {
                    "type": "object",
                    "required": ["size"],
                    "properties": {
                        "size": {"type": "string", "enum": ["small", "large"]},
                        "replicas": {"type": "integer", "minimum": 1, "maximum": 10, "default": 1},
                        "name": {"type": "string", "pattern": "^[a-z]+$", "maxLength": 5},
                        "tags": {"type": "array", "maxItems": 2, "items": {"type": "string"}},
                        "port": {"x-kubernetes-int-or-string": true},
                        "free": {"type": "object", "x-kubernetes-preserve-unknown-fields": true},
                        "labels": {"type": "object", "additionalProperties": {"type": "string"}}
                    }
                },
                "status": {"type": "object", "properties": {"ready": {"type": "boolean"}}}
            }
        })
    }

    #[test]
    fn prunes_unknown_fields_but_keeps_preserved_ones() {
        let mut obj = json!({"apiVersion": "x/v1", "kind": "K", "metadata": {"name": "a"},
            "spec": {"size": "small", "bogus": 1, "free": {"anything": {"goes": true}}, "labels": {"a": "b"}}, "extra": true});
        let pruned = prune(&mut obj, &schema());
        assert_eq!(pruned, ["extra", "spec.bogus"]);
        assert_eq!(obj["spec"]["free"]["anything"]["goes"], true);
        assert_eq!(obj["metadata"]["name"], "a");
        assert_eq!(obj["spec"]["labels"]["a"], "b");
    }

    #[test]
    fn defaults_absent_fields() {
        let mut obj = json!({"spec": {"size": "small"}});
        default(&mut obj, &schema());
        assert_eq!(obj["spec"]["replicas"], 1);
    }

    #[test]
    fn validation_messages_are_upstreams() {
        let obj = json!({"spec": {"size": "huge", "replicas": "two", "name": "Abcdefg", "tags": ["a", "b", "c"], "port": true}});
        let errs = validate(&obj, &schema());
        let text: Vec<String> = errs.iter().map(ToString::to_string).collect();
        assert!(
            text.contains(&r#"spec.size: Unsupported value: "huge": supported values: "small", "large""#.to_string()),
            "{text:?}"
        );
        assert!(
            text.contains(
                &r#"spec.replicas: Invalid value: "two": spec.replicas in body must be of type integer: "string""#
                    .to_string()
            ),
            "{text:?}"
        );
        assert!(text.contains(&"spec.name: Too long: must have at most 5 bytes".to_string()), "{text:?}");
        assert!(
            text.contains(
                &r#"spec.name: Invalid value: "Abcdefg": spec.name in body should match '^[a-z]+$'"#.to_string()
            ),
            "{text:?}"
        );
        assert!(text.contains(&"spec.tags: Too many: 3: must have at most 2 items".to_string()), "{text:?}");
        assert!(
            text.contains(
                &"spec.port: Invalid value: true: spec.port in body must be of type integer,string: \"boolean\""
                    .to_string()
            ),
            "{text:?}"
        );
        let errs = validate(&json!({"spec": {"replicas": 20}}), &schema());
        assert_eq!(
            aggregate(&errs),
            "[spec.size: Required value, spec.replicas: Invalid value: 20: spec.replicas in body should be less than or equal to 10]"
        );
        assert!(validate(&json!({"spec": {"size": "small", "port": "http"}}), &schema()).is_empty());
    }
}
