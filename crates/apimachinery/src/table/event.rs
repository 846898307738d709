//! `kubectl get events` (upstream `printEvent`, `eventColumnDefinitions`).

use super::*;

pub(super) fn event_columns() -> Vec<Value> {
    vec![
        col("Last Seen", "string", "", desc::EVENT_LAST_TIMESTAMP, 0),
        col("Type", "string", "", desc::EVENT_TYPE, 0),
        col("Reason", "string", "", desc::EVENT_REASON, 0),
        col("Object", "string", "", desc::EVENT_INVOLVED_OBJECT, 0),
        col("Subobject", "string", "", desc::OBJECT_REFERENCE_FIELD_PATH, 1),
        col("Source", "string", "", desc::EVENT_SOURCE, 1),
        col("Message", "string", "", desc::EVENT_MESSAGE, 0),
        col("First Seen", "string", "", desc::EVENT_FIRST_TIMESTAMP, 1),
        col("Count", "string", "", desc::EVENT_COUNT, 1),
        col("Name", "string", "name", desc::META_NAME, 1),
    ]
}

/// Upstream `formatEventSource`.
pub(super) fn format_event_source(event: &Value) -> String {
    let first_non_empty = |a: &str, b: &str| -> String {
        if a.is_empty() {
            b.to_string()
        } else {
            a.to_string()
        }
    };
    let component = first_non_empty(str_at(event, "/source/component"), str_at(event, "/reportingComponent"));
    let instance = first_non_empty(str_at(event, "/source/host"), str_at(event, "/reportingInstance"));
    if instance.is_empty() {
        component
    } else {
        format!("{component}, {instance}")
    }
}

/// Upstream `printEvent` (wide).
pub(super) fn event_cells(event: &Value, now: Timestamp) -> Vec<Value> {
    let first_timestamp = match time_at(event, "/firstTimestamp") {
        Some(ts) => since(Some(ts), now),
        None => since(time_at(event, "/eventTime"), now),
    };
    let mut last_timestamp = match time_at(event, "/lastTimestamp") {
        Some(ts) => since(Some(ts), now),
        None => first_timestamp.clone(),
    };
    let mut count = int_at(event, "/count").unwrap_or(0);
    if get(event, "/series").is_some() {
        last_timestamp = since(time_at(event, "/series/lastObservedTime"), now);
        count = int_at(event, "/series/count").unwrap_or(0);
    } else if count == 0 {
        // Singleton events don't have a count set in the new API.
        count = 1;
    }
    let kind = str_at(event, "/involvedObject/kind").to_lowercase();
    let involved_name = str_at(event, "/involvedObject/name");
    let target = if involved_name.is_empty() { kind } else { format!("{kind}/{involved_name}") };
    vec![
        s(last_timestamp),
        s(str_at(event, "/type")),
        s(str_at(event, "/reason")),
        s(target),
        s(str_at(event, "/involvedObject/fieldPath")),
        s(format_event_source(event)),
        s(str_at(event, "/message").trim()),
        s(first_timestamp),
        int(count),
        name(event),
    ]
}
