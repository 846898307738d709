//! Watch: a store watch turned into Kubernetes watch events
//! (`{"type":"ADDED","object":{...}}` lines), with label/field filtering that
//! turns objects leaving or entering the selection into DELETED/ADDED, as
//! upstream's watch cache does.

use crate::error::ApiError;
use crate::object;
use serde_json::{json, Value};

/// Filters applied to every event.
pub struct Filter {
    pub label: apimachinery::selector::LabelSelector,
    pub field: apimachinery::selector::FieldSelector,
    /// Only this key (a `metadata.name=` selector on a named key).
    pub exact_key: Option<String>,
}

impl Filter {
    pub fn matches(&self, obj: &Value) -> bool {
        self.label.matches_object(obj) && self.field.matches_object(obj)
    }
    fn key_ok(&self, key: &str) -> bool {
        self.exact_key.as_deref().is_none_or(|k| k == key)
    }
}

/// One watch event, or none when the change is invisible to this watcher.
pub fn translate(ev: &store::Event, filter: &Filter) -> Result<Option<(&'static str, Value)>, ApiError> {
    if !filter.key_ok(ev.key()) {
        return Ok(None);
    }
    let decode = |kv: &store::KeyValue, rv: i64| {
        object::decode(&kv.value, rv).map_err(|e| ApiError::internal(format!("decoding {}: {e}", kv.key)))
    };
    match ev {
        store::Event::Put { kv, prev } => {
            let new = decode(kv, kv.mod_revision)?;
            let now = filter.matches(&new);
            let before = match prev {
                Some(p) => Some(filter.matches(&decode(p, p.mod_revision)?)),
                None => None,
            };
            Ok(match (before, now) {
                (None | Some(false), true) => Some(("ADDED", new)),
                (Some(true), true) => Some(("MODIFIED", new)),
                // Left the selection: the watcher sees it go.
                (Some(true), false) => Some(("DELETED", new)),
                (_, false) => None,
            })
        }
        store::Event::Delete { prev, revision } => {
            let old = decode(prev, *revision)?;
            Ok(filter.matches(&old).then_some(("DELETED", old)))
        }
    }
}

/// The event line built from the stored bytes without parsing them, when
/// nothing needs to look inside the object (no label or field selector).
pub fn raw_line(ev: &store::Event, filter: &Filter) -> Option<Vec<u8>> {
    if !filter.label.is_empty() || !filter.field.is_empty() || !filter.key_ok(ev.key()) {
        return None;
    }
    let (kind, obj) = match ev {
        store::Event::Put { kv, prev } => (
            if prev.is_some() { "MODIFIED" } else { "ADDED" },
            object::with_resource_version(&kv.value, kv.mod_revision),
        ),
        store::Event::Delete { prev, revision } => ("DELETED", object::with_resource_version(&prev.value, *revision)),
    };
    let mut line = Vec::with_capacity(obj.len() + 32);
    line.extend_from_slice(b"{\"type\":\"");
    line.extend_from_slice(kind.as_bytes());
    line.extend_from_slice(b"\",\"object\":");
    line.extend_from_slice(&obj);
    line.extend_from_slice(b"}\n");
    Some(line)
}

/// The JSON line of one event.
pub fn event_line(kind: &str, obj: &Value) -> Vec<u8> {
    let mut v = serde_json::to_vec(&json!({ "type": kind, "object": obj })).unwrap_or_default();
    v.push(b'\n');
    v
}

/// A BOOKMARK event carrying only the resourceVersion.
pub fn bookmark(api_version: &str, kind: &str, rv: i64) -> Vec<u8> {
    event_line(
        "BOOKMARK",
        &json!({ "kind": kind, "apiVersion": api_version, "metadata": { "resourceVersion": rv.to_string() } }),
    )
}

/// An ERROR event (e.g. 410 Expired for a compacted resourceVersion).
pub fn error_line(err: &ApiError) -> Vec<u8> {
    event_line("ERROR", &err.to_status())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn raw_lines_match_parsed_lines() {
        let obj = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "a", "labels": {"x": "y"}}, "data": {"k": "v"}});
        let kv = store::KeyValue {
            key: "/registry/core/configmaps/default/a".into(),
            value: object::encode(&obj),
            create_revision: 5,
            mod_revision: 7,
        };
        let filter = Filter { label: Default::default(), field: Default::default(), exact_key: None };
        for ev in [
            store::Event::Put { kv: kv.clone(), prev: None },
            store::Event::Put { kv: kv.clone(), prev: Some(kv.clone()) },
            store::Event::Delete { prev: kv.clone(), revision: 9 },
        ] {
            let raw: Value = serde_json::from_slice(&raw_line(&ev, &filter).unwrap()).unwrap();
            let (t, o) = translate(&ev, &filter).unwrap().unwrap();
            let parsed: Value = serde_json::from_slice(&event_line(t, &o)).unwrap();
            assert_eq!(raw, parsed);
        }
        let labelled = Filter { label: apimachinery::selector::LabelSelector::parse("x=y").unwrap(), ..filter };
        assert!(raw_line(&store::Event::Put { kv, prev: None }, &labelled).is_none());
    }
}
