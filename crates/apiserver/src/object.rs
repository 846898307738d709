//! Objects as stored: JSON with `metadata` first and no `resourceVersion`
//! (the store's revision is the resourceVersion, as with etcd in upstream), so
//! that reads can splice the revision in without re-parsing the object.

use serde_json::{Map, Value};

const PREFIX: &[u8] = b"{\"metadata\":{";

/// Serialize an object for the store: `{"metadata":{...},...rest}`, with
/// `metadata.resourceVersion` removed.
pub fn encode(obj: &Value) -> Vec<u8> {
    let Some(map) = obj.as_object() else {
        return serde_json::to_vec(obj).unwrap_or_default();
    };
    let mut meta = map.get("metadata").cloned().unwrap_or_else(|| Value::Object(Map::new()));
    if let Some(m) = meta.as_object_mut() {
        m.remove("resourceVersion");
    }
    let mut rest = map.clone();
    rest.remove("metadata");
    let mut out = Vec::with_capacity(1024);
    out.extend_from_slice(b"{\"metadata\":");
    // Serializing a `Value` cannot fail (all keys are strings).
    out.extend_from_slice(&serde_json::to_vec(&meta).unwrap_or_else(|_| b"{}".to_vec()));
    let rest = serde_json::to_vec(&Value::Object(rest)).unwrap_or_else(|_| b"{}".to_vec());
    if rest.len() > 2 {
        out.push(b',');
        out.extend_from_slice(&rest[1..]);
    } else {
        out.push(b'}');
    }
    out
}

/// The stored bytes with `metadata.resourceVersion` set to `rv`, as JSON bytes.
pub fn with_resource_version(stored: &[u8], rv: i64) -> Vec<u8> {
    if stored.starts_with(PREFIX) {
        let mut out = Vec::with_capacity(stored.len() + 32);
        out.extend_from_slice(PREFIX);
        out.extend_from_slice(b"\"resourceVersion\":\"");
        out.extend_from_slice(rv.to_string().as_bytes());
        out.push(b'"');
        if stored.get(PREFIX.len()) != Some(&b'}') {
            out.push(b',');
        }
        out.extend_from_slice(&stored[PREFIX.len()..]);
        out
    } else {
        // Written by something else: take the slow path.
        match serde_json::from_slice::<Value>(stored) {
            Ok(mut v) => {
                set_resource_version(&mut v, rv);
                serde_json::to_vec(&v).unwrap_or_default()
            }
            Err(_) => stored.to_vec(),
        }
    }
}

/// Parse stored bytes into an object with its resourceVersion.
pub fn decode(stored: &[u8], rv: i64) -> Result<Value, serde_json::Error> {
    let mut v: Value = serde_json::from_slice(stored)?;
    set_resource_version(&mut v, rv);
    Ok(v)
}

pub fn set_resource_version(obj: &mut Value, rv: i64) {
    if let Some(m) = meta_mut(obj) {
        m.insert("resourceVersion".into(), Value::String(rv.to_string()));
    }
}

/// `metadata` as a mutable map, created if missing.
pub fn meta_mut(obj: &mut Value) -> Option<&mut Map<String, Value>> {
    let map = obj.as_object_mut()?;
    let meta = map.entry("metadata").or_insert_with(|| Value::Object(Map::new()));
    if !meta.is_object() {
        *meta = Value::Object(Map::new());
    }
    meta.as_object_mut()
}

/// A string field of `metadata`.
pub fn meta_str<'a>(obj: &'a Value, field: &str) -> Option<&'a str> {
    obj.get("metadata")?.get(field)?.as_str()
}

pub fn name(obj: &Value) -> &str {
    meta_str(obj, "name").unwrap_or("")
}

/// `metadata.finalizers`.
pub fn finalizers(obj: &Value) -> Vec<String> {
    obj.get("metadata")
        .and_then(|m| m.get("finalizers"))
        .and_then(Value::as_array)
        .map(|a| a.iter().filter_map(|v| v.as_str().map(String::from)).collect())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn splices_resource_version() {
        let obj = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "a", "resourceVersion": "9"}, "data": {"k": "\"metadata\":{"}});
        let stored = encode(&obj);
        assert!(stored.starts_with(PREFIX));
        let back: Value = serde_json::from_slice(&with_resource_version(&stored, 42)).unwrap();
        let mut expected = obj.clone();
        expected["metadata"]["resourceVersion"] = json!("42");
        assert_eq!(back, expected);

        let empty = encode(&json!({"metadata": {}}));
        let back: Value = serde_json::from_slice(&with_resource_version(&empty, 3)).unwrap();
        assert_eq!(back, json!({"metadata": {"resourceVersion": "3"}}));
    }
}
