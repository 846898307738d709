//! Path elements of a field path, ordered and printed as
//! `sigs.k8s.io/structured-merge-diff/v4/fieldpath` does (`element.go`,
//! `serialize-pe.go`, `value/value.go` `Compare`).

use serde_json::Value;
use std::cmp::Ordering;
use std::fmt;

/// One step of a path: a struct field or map key, an associative-list key, a
/// set value, or a list index.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PathElement {
    Field(String),
    /// Key fields of an associative-list item, sorted by name.
    Key(Vec<(String, Value)>),
    /// A member of a set-typed list.
    Value(Value),
    Index(usize),
}

/// A sequence of path elements from the object's root.
pub type Path = Vec<PathElement>;

impl PathElement {
    /// `PathElement.Compare`: fields before keys before values before indexes.
    fn rank(&self) -> u8 {
        match self {
            PathElement::Field(_) => 0,
            PathElement::Key(_) => 1,
            PathElement::Value(_) => 2,
            PathElement::Index(_) => 3,
        }
    }

    /// The fieldsV1 map key: `f:name`, `k:{"name":"x"}`, `v:"a"`, `i:0`.
    pub fn to_fields_v1_key(&self) -> String {
        match self {
            PathElement::Field(f) => format!("f:{f}"),
            PathElement::Key(fields) => {
                let m: serde_json::Map<String, Value> = fields.iter().cloned().collect();
                format!("k:{}", Value::Object(m))
            }
            PathElement::Value(v) => format!("v:{v}"),
            PathElement::Index(i) => format!("i:{i}"),
        }
    }

    /// Parse a fieldsV1 map key (`DeserializePathElement`).
    pub fn from_fields_v1_key(s: &str) -> Result<PathElement, String> {
        let (kind, rest) = s.split_once(':').ok_or_else(|| format!("missing colon: {s}"))?;
        match kind {
            "f" => Ok(PathElement::Field(rest.to_string())),
            "v" => serde_json::from_str(rest).map(PathElement::Value).map_err(|e| format!("{s}: {e}")),
            "k" => {
                let v: Value = serde_json::from_str(rest).map_err(|e| format!("{s}: {e}"))?;
                let Value::Object(m) = v else { return Err(format!("{s}: key is not a JSON object")) };
                let mut fields: Vec<(String, Value)> = m.into_iter().collect();
                fields.sort_by(|a, b| a.0.cmp(&b.0));
                Ok(PathElement::Key(fields))
            }
            "i" => rest.parse().map(PathElement::Index).map_err(|e| format!("{s}: {e}")),
            _ => Err(format!("unknown path element type: {s}")),
        }
    }
}

impl Ord for PathElement {
    fn cmp(&self, other: &Self) -> Ordering {
        match (self, other) {
            (PathElement::Field(a), PathElement::Field(b)) => a.cmp(b),
            (PathElement::Key(a), PathElement::Key(b)) => compare_fields(a, b),
            (PathElement::Value(a), PathElement::Value(b)) => compare_values(a, b),
            (PathElement::Index(a), PathElement::Index(b)) => a.cmp(b),
            _ => self.rank().cmp(&other.rank()),
        }
    }
}

impl PartialOrd for PathElement {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

/// `FieldList.Compare`: element-wise by name then value, shorter first.
fn compare_fields(a: &[(String, Value)], b: &[(String, Value)]) -> Ordering {
    for (x, y) in a.iter().zip(b.iter()) {
        let c = x.0.cmp(&y.0).then_with(|| compare_values(&x.1, &y.1));
        if c != Ordering::Equal {
            return c;
        }
    }
    a.len().cmp(&b.len())
}

/// `value.Compare`: a total order over JSON values: numbers < strings <
/// booleans < lists < maps < null.
pub fn compare_values(a: &Value, b: &Value) -> Ordering {
    fn rank(v: &Value) -> u8 {
        match v {
            Value::Number(_) => 0,
            Value::String(_) => 1,
            Value::Bool(_) => 2,
            Value::Array(_) => 3,
            Value::Object(_) => 4,
            Value::Null => 5,
        }
    }
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => match (x.as_i64(), y.as_i64()) {
            (Some(i), Some(j)) => i.cmp(&j),
            _ => {
                let (f, g) = (x.as_f64().unwrap_or(0.0), y.as_f64().unwrap_or(0.0));
                f.partial_cmp(&g).unwrap_or(Ordering::Equal)
            }
        },
        (Value::String(x), Value::String(y)) => x.cmp(y),
        (Value::Bool(x), Value::Bool(y)) => x.cmp(y),
        (Value::Array(x), Value::Array(y)) => {
            for (p, q) in x.iter().zip(y.iter()) {
                let c = compare_values(p, q);
                if c != Ordering::Equal {
                    return c;
                }
            }
            x.len().cmp(&y.len())
        }
        (Value::Object(x), Value::Object(y)) => {
            // `MapCompare`: by sorted keys, then values, then size.
            let mut xs: Vec<_> = x.iter().collect();
            let mut ys: Vec<_> = y.iter().collect();
            xs.sort_by(|p, q| p.0.cmp(q.0));
            ys.sort_by(|p, q| p.0.cmp(q.0));
            for (p, q) in xs.iter().zip(ys.iter()) {
                let c = p.0.cmp(q.0).then_with(|| compare_values(p.1, q.1));
                if c != Ordering::Equal {
                    return c;
                }
            }
            xs.len().cmp(&ys.len())
        }
        _ => rank(a).cmp(&rank(b)),
    }
}

impl fmt::Display for PathElement {
    /// `PathElement.String`: `.name`, `[name="x",protocol="TCP"]`, `[="v"]`, `[0]`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PathElement::Field(n) => write!(f, ".{n}"),
            PathElement::Key(fields) => {
                let parts: Vec<String> = fields.iter().map(|(k, v)| format!("{k}={v}")).collect();
                write!(f, "[{}]", parts.join(","))
            }
            PathElement::Value(v) => write!(f, "[={v}]"),
            PathElement::Index(i) => write!(f, "[{i}]"),
        }
    }
}

/// `Path.String`: the elements concatenated (`.spec.ports[port=80,protocol="TCP"]`).
pub fn display(path: &[PathElement]) -> String {
    path.iter().map(ToString::to_string).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn keys_round_trip_and_print_as_upstream() {
        let pe = PathElement::from_fields_v1_key(r#"k:{"protocol":"TCP","containerPort":80}"#).unwrap();
        assert_eq!(pe.to_fields_v1_key(), r#"k:{"containerPort":80,"protocol":"TCP"}"#);
        let path = vec![PathElement::Field("spec".into()), PathElement::Field("ports".into()), pe];
        assert_eq!(display(&path), r#".spec.ports[containerPort=80,protocol="TCP"]"#);
        assert_eq!(PathElement::Value(json!("a")).to_string(), r#"[="a"]"#);
    }

    #[test]
    fn order_is_fields_keys_values_indexes() {
        let mut v = [
            PathElement::Index(0),
            PathElement::Value(json!("x")),
            PathElement::Key(vec![("name".into(), json!("a"))]),
            PathElement::Field("b".into()),
            PathElement::Field("a".into()),
        ];
        v.sort();
        assert_eq!(v[0], PathElement::Field("a".into()));
        assert_eq!(v[2].rank(), 1);
        assert_eq!(v[4], PathElement::Index(0));
        assert_eq!(compare_values(&json!(2), &json!("1")), Ordering::Less);
    }
}
