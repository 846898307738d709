//! Table columns of custom resources from the CRD version's
//! `additionalPrinterColumns` (upstream
//! `apiextensions-apiserver/pkg/registry/customresource/tableconvertor`):
//! `Name`, then each column, its cell the value at the column's `jsonPath`.
//! Without columns: `Name` and `Age`.

use serde_json::{json, Value};

/// Column definitions (`metav1.TableColumnDefinition`).
pub fn columns(printer_columns: &[Value]) -> Vec<Value> {
    let mut cols = vec![json!({
        "name": "Name", "type": "string", "format": "name", "priority": 0,
        "description": "Name must be unique within a namespace. Is required when creating resources, although some resources may allow a client to request the generation of an appropriate name automatically. Name is primarily intended for creation idempotence and configuration definition. Cannot be updated. More info: https://kubernetes.io/docs/concepts/overview/working-with-objects/names#names",
    })];
    if printer_columns.is_empty() {
        cols.push(json!({ "name": "Age", "type": "date", "format": "", "priority": 0, "description": "CreationTimestamp is a timestamp representing the server time when this object was created." }));
        return cols;
    }
    for c in printer_columns {
        let s = |k: &str| c.get(k).and_then(Value::as_str).unwrap_or_default().to_string();
        cols.push(json!({
            "name": s("name"),
            "type": s("type"),
            "format": s("format"),
            "description": s("description"),
            "priority": c.get("priority").and_then(Value::as_i64).unwrap_or(0),
        }));
    }
    cols
}

/// The cells of one object's row.
pub fn cells(printer_columns: &[Value], obj: &Value, now: jiff::Timestamp) -> Vec<Value> {
    let name = obj.pointer("/metadata/name").cloned().unwrap_or(Value::Null);
    let mut row = vec![name];
    if printer_columns.is_empty() {
        row.push(age(obj.pointer("/metadata/creationTimestamp"), now));
        return row;
    }
    for c in printer_columns {
        let path = c.get("jsonPath").and_then(Value::as_str).unwrap_or_default();
        let ty = c.get("type").and_then(Value::as_str).unwrap_or("string");
        let found = eval(obj, path);
        row.push(match (ty, found) {
            (_, None) => Value::Null,
            ("date", Some(v)) => age(Some(&v), now),
            ("integer" | "number" | "boolean", Some(v)) => v,
            (_, Some(Value::String(s))) => Value::String(s),
            (_, Some(v)) => Value::String(v.to_string()),
        });
    }
    row
}

fn age(ts: Option<&Value>, now: jiff::Timestamp) -> Value {
    match ts.and_then(Value::as_str).and_then(|s| s.parse::<jiff::Timestamp>().ok()) {
        Some(t) => Value::String(crate::table::human_duration_nanos(now.as_nanosecond() - t.as_nanosecond())),
        None => Value::String("<unknown>".into()),
    }
}

/// A printer column's JSONPath (`.spec.size`, `.status.items[0]`,
/// `.status.conditions[?(@.type=="Ready")].status`, with or without braces).
pub fn eval(obj: &Value, path: &str) -> Option<Value> {
    let path = path.trim().trim_start_matches('{').trim_end_matches('}');
    let path = path.strip_prefix('$').unwrap_or(path);
    let mut cur = obj.clone();
    for seg in split_segments(path) {
        let (name, index) = match seg.find('[') {
            Some(i) => (&seg[..i], Some(seg[i + 1..].trim_end_matches(']'))),
            None => (seg.as_str(), None),
        };
        if !name.is_empty() {
            cur = cur.get(name)?.clone();
        }
        match index {
            None => {}
            Some(filter) if filter.starts_with("?(") => {
                // ?(@.key=="value")
                let inner = filter.trim_start_matches("?(").trim_end_matches(')');
                let (lhs, rhs) = inner.split_once("==")?;
                let key = lhs.trim().strip_prefix("@.")?;
                let want = rhs.trim().trim_matches('"').trim_matches('\'');
                cur = cur.as_array()?.iter().find(|item| item.get(key).and_then(Value::as_str) == Some(want))?.clone();
            }
            Some(i) => cur = cur.as_array()?.get(i.parse::<usize>().ok()?)?.clone(),
        }
    }
    Some(cur)
}

/// Split `.a.b[?(@.x=="y.z")].c` at dots outside brackets.
fn split_segments(path: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut depth = 0;
    for ch in path.chars() {
        match ch {
            '[' => {
                depth += 1;
                cur.push(ch);
            }
            ']' => {
                depth -= 1;
                cur.push(ch);
            }
            '.' if depth == 0 => {
                if !cur.is_empty() {
                    out.push(std::mem::take(&mut cur));
                }
            }
            _ => cur.push(ch),
        }
    }
    if !cur.is_empty() {
        out.push(cur);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_paths_of_printer_columns() {
        let obj = json!({"spec": {"size": "small", "n": 3}, "status": {"conditions": [{"type": "Synced", "status": "False"}, {"type": "Ready", "status": "True"}]}});
        assert_eq!(eval(&obj, ".spec.size"), Some(json!("small")));
        assert_eq!(eval(&obj, ".status.conditions[?(@.type==\"Ready\")].status"), Some(json!("True")));
        assert_eq!(eval(&obj, ".status.conditions[0].type"), Some(json!("Synced")));
        assert_eq!(eval(&obj, ".spec.missing"), None);
        let cols = vec![
            json!({"name": "Size", "type": "string", "jsonPath": ".spec.size"}),
            json!({"name": "N", "type": "integer", "jsonPath": ".spec.n"}),
        ];
        let now = jiff::Timestamp::now();
        assert_eq!(
            cells(&cols, &json!({"metadata": {"name": "a"}, "spec": {"size": "small", "n": 3}}), now),
            vec![json!("a"), json!("small"), json!(3)]
        );
        assert_eq!(columns(&cols).len(), 3);
        assert_eq!(columns(&[]).len(), 2);
    }
}
