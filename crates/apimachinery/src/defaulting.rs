//! Small helpers shared by the per-kind defaulting code (`SetDefaults_*`).

use serde_json::Value;

/// Set `key` of object `obj` to `v` unless it holds a non-null value.
pub(crate) fn set_if_absent(obj: &mut Value, key: &str, v: Value) {
    if let Some(m) = obj.as_object_mut() {
        if m.get(key).is_none_or(Value::is_null) {
            m.insert(key.to_string(), v);
        }
    }
}

/// Like [`set_if_absent`], but an empty string also counts as unset (Go's
/// zero value of a string field).
pub(crate) fn set_if_unset(obj: &mut Value, key: &str, v: Value) {
    if let Some(m) = obj.as_object_mut() {
        if m.get(key).is_none_or(|x| x.is_null() || x.as_str() == Some("")) {
            m.insert(key.to_string(), v);
        }
    }
}
