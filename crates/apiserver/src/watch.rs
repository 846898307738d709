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
