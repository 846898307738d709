//! Label and field selectors: parsing and matching
//! (upstream `k8s.io/apimachinery/pkg/labels/selector.go`, `pkg/fields`).

use serde_json::Value;
use std::collections::BTreeSet;

/// A label selector: all requirements must hold.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct LabelSelector(Vec<Requirement>);

#[derive(Clone, Debug, PartialEq)]
pub enum Requirement {
    Exists(String),
    DoesNotExist(String),
    Equals(String, String),
    NotEquals(String, String),
    In(String, BTreeSet<String>),
    NotIn(String, BTreeSet<String>),
    Gt(String, i64),
    Lt(String, i64),
}

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("unable to parse requirement: {0}")]
pub struct SelectorError(pub String);

impl LabelSelector {
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Parse the `labelSelector` query syntax: `a=b,c!=d,e in (x,y),!f,g`.
    pub fn parse(s: &str) -> Result<LabelSelector, SelectorError> {
        let mut reqs = Vec::new();
        for part in split_top_level(s) {
            let part = part.trim();
            if part.is_empty() {
                continue;
            }
            reqs.push(parse_requirement(part)?);
        }
        Ok(LabelSelector(reqs))
    }

    /// From a `metav1.LabelSelector` JSON (`matchLabels`, `matchExpressions`).
    /// An absent selector matches nothing in upstream's controllers; the caller decides.
    pub fn from_label_selector(sel: &Value) -> Result<LabelSelector, SelectorError> {
        let mut reqs = Vec::new();
        if let Some(m) = sel.get("matchLabels").and_then(Value::as_object) {
            for (k, v) in m {
                reqs.push(Requirement::Equals(k.clone(), v.as_str().unwrap_or_default().to_string()));
            }
        }
        if let Some(exprs) = sel.get("matchExpressions").and_then(Value::as_array) {
            for e in exprs {
                let key = e.get("key").and_then(Value::as_str).unwrap_or_default().to_string();
                let values: BTreeSet<String> = e
                    .get("values")
                    .and_then(Value::as_array)
                    .map(|a| a.iter().filter_map(|v| v.as_str().map(String::from)).collect())
                    .unwrap_or_default();
                let op = e.get("operator").and_then(Value::as_str).unwrap_or_default();
                reqs.push(match op {
                    "In" => Requirement::In(key, values),
                    "NotIn" => Requirement::NotIn(key, values),
                    "Exists" => Requirement::Exists(key),
                    "DoesNotExist" => Requirement::DoesNotExist(key),
                    other => return Err(SelectorError(format!("{other:?} is not a valid label selector operator"))),
                });
            }
        }
        Ok(LabelSelector(reqs))
    }

    /// A selector from a map (a Service's `spec.selector`): every pair must match.
    pub fn from_map<'a>(pairs: impl IntoIterator<Item = (&'a str, &'a str)>) -> LabelSelector {
        LabelSelector(pairs.into_iter().map(|(k, v)| Requirement::Equals(k.into(), v.into())).collect())
    }

    /// Whether labels given by `get` satisfy every requirement.
    pub fn matches<'a>(&self, get: impl Fn(&str) -> Option<&'a str>) -> bool {
        self.0.iter().all(|r| match r {
            Requirement::Exists(k) => get(k).is_some(),
            Requirement::DoesNotExist(k) => get(k).is_none(),
            Requirement::Equals(k, v) => get(k) == Some(v.as_str()),
            Requirement::NotEquals(k, v) => get(k) != Some(v.as_str()),
            Requirement::In(k, vs) => get(k).is_some_and(|x| vs.contains(x)),
            Requirement::NotIn(k, vs) => get(k).is_none_or(|x| !vs.contains(x)),
            Requirement::Gt(k, n) => get(k).and_then(|x| x.parse::<i64>().ok()).is_some_and(|x| x > *n),
            Requirement::Lt(k, n) => get(k).and_then(|x| x.parse::<i64>().ok()).is_some_and(|x| x < *n),
        })
    }

    /// Match against an object's `metadata.labels`.
    pub fn matches_object(&self, obj: &Value) -> bool {
        let labels = obj.get("metadata").and_then(|m| m.get("labels")).and_then(Value::as_object);
        self.matches(|k| labels.and_then(|l| l.get(k)).and_then(Value::as_str))
    }
}

/// Split on commas that are not inside parentheses.
fn split_top_level(s: &str) -> Vec<&str> {
    let mut parts = Vec::new();
    let (mut depth, mut start) = (0i32, 0usize);
    for (i, c) in s.char_indices() {
        match c {
            '(' => depth += 1,
            ')' => depth -= 1,
            ',' if depth == 0 => {
                parts.push(&s[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    parts.push(&s[start..]);
    parts
}

fn check_key(k: &str) -> Result<String, SelectorError> {
    let k = k.trim();
    let ok = !k.is_empty()
        && k.len() <= 316
        && k.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | '/'));
    if ok {
        Ok(k.to_string())
    } else {
        Err(SelectorError(format!("invalid label key {k:?}")))
    }
}

fn check_value(v: &str) -> Result<String, SelectorError> {
    let v = v.trim();
    let ok = v.len() <= 63 && v.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
    if ok {
        Ok(v.to_string())
    } else {
        Err(SelectorError(format!("invalid label value: {v:?}")))
    }
}

fn parse_set(s: &str) -> Result<BTreeSet<String>, SelectorError> {
    let s = s.trim();
    let inner = s
        .strip_prefix('(')
        .and_then(|x| x.strip_suffix(')'))
        .ok_or_else(|| SelectorError(format!("found '{s}', expected: '('")))?;
    inner.split(',').map(check_value).collect()
}

fn parse_requirement(p: &str) -> Result<Requirement, SelectorError> {
    if let Some(k) = p.strip_prefix('!') {
        return Ok(Requirement::DoesNotExist(check_key(k)?));
    }
    for (op, is_in) in [(" notin ", false), (" in ", true)] {
        if let Some(i) = p.find(op) {
            let key = check_key(&p[..i])?;
            let set = parse_set(&p[i + op.len()..])?;
            return Ok(if is_in { Requirement::In(key, set) } else { Requirement::NotIn(key, set) });
        }
    }
    if let Some((k, v)) = p.split_once("!=") {
        return Ok(Requirement::NotEquals(check_key(k)?, check_value(v)?));
    }
    if let Some((k, v)) = p.split_once("==").or_else(|| p.split_once('=')) {
        return Ok(Requirement::Equals(check_key(k)?, check_value(v)?));
    }
    for (op, gt) in [('>', true), ('<', false)] {
        if let Some((k, v)) = p.split_once(op) {
            let n: i64 = v
                .trim()
                .parse()
                .map_err(|_| SelectorError(format!("for 'Gt', 'Lt' operators, the value must be an integer: {v:?}")))?;
            let k = check_key(k)?;
            return Ok(if gt { Requirement::Gt(k, n) } else { Requirement::Lt(k, n) });
        }
    }
    Ok(Requirement::Exists(check_key(p)?))
}

/// A field selector: `metadata.name=x,status.phase!=Running`.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct FieldSelector(pub Vec<(String, bool, String)>);

impl FieldSelector {
    /// Parse, checking each field against the ones the resource supports.
    pub fn parse(s: &str, supported: &[&str]) -> Result<FieldSelector, String> {
        let mut terms = Vec::new();
        for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let (field, eq, value) = if let Some((f, v)) = part.split_once("!=") {
                (f, false, v)
            } else if let Some((f, v)) = part.split_once("==").or_else(|| part.split_once('=')) {
                (f, true, v)
            } else {
                return Err(format!("invalid selector: '{s}'; can't understand '{part}'"));
            };
            let field = field.trim();
            if !supported.contains(&field) && !matches!(field, "metadata.name" | "metadata.namespace") {
                return Err(format!("field label not supported: {field}"));
            }
            terms.push((field.to_string(), eq, value.trim().to_string()));
        }
        Ok(FieldSelector(terms))
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// `metadata.name=x` alone: lets list/watch read one key instead of a prefix.
    pub fn single_name(&self) -> Option<&str> {
        match self.0.as_slice() {
            [(f, true, v)] if f == "metadata.name" => Some(v),
            _ => None,
        }
    }

    pub fn matches_object(&self, obj: &Value) -> bool {
        self.0.iter().all(|(field, eq, want)| {
            let got = selectable_value(obj, field);
            (got == *want) == *eq
        })
    }
}

/// The value a field selector compares: the field's string value, with the
/// renames and zero values of upstream's `*ToSelectableFields`
/// (`pkg/registry/batch/job/strategy.go`: `status.successful` is
/// `status.succeeded`; integer and boolean fields read "0"/"false" when unset).
pub fn selectable_value(obj: &Value, field: &str) -> String {
    let (path, zero) = match field {
        "status.successful" => ("status.succeeded", "0"),
        "status.replicas" => ("status.replicas", "0"),
        "spec.unschedulable" | "spec.hostNetwork" => (field, "false"),
        other => (other, ""),
    };
    let v = field_value(obj, path);
    if v.is_empty() {
        zero.to_string()
    } else {
        v
    }
}

/// The string value of a dotted field path, `""` when absent (as upstream's field sets).
pub fn field_value(obj: &Value, path: &str) -> String {
    let mut cur = obj;
    for seg in path.split('.') {
        match cur.get(seg) {
            Some(v) => cur = v,
            None => return String::new(),
        }
    }
    match cur {
        Value::String(s) => s.clone(),
        Value::Null => String::new(),
        other => other.to_string(),
    }
}

/// Whether a `LabelSelector` selects `labels` (`LabelSelectorAsSelector`):
/// an empty selector selects everything.
pub fn label_selector_matches(
    sel: &k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector,
    labels: Option<&std::collections::BTreeMap<String, String>>,
) -> bool {
    let empty = std::collections::BTreeMap::new();
    let labels = labels.unwrap_or(&empty);
    for (k, v) in sel.match_labels.iter().flatten() {
        if labels.get(k) != Some(v) {
            return false;
        }
    }
    for e in sel.match_expressions.iter().flatten() {
        let values = e.values.as_deref().unwrap_or_default();
        let has = labels.get(&e.key);
        let ok = match e.operator.as_str() {
            "In" => has.is_some_and(|v| values.contains(v)),
            "NotIn" => has.is_none_or(|v| !values.contains(v)),
            "Exists" => has.is_some(),
            "DoesNotExist" => has.is_none(),
            _ => false,
        };
        if !ok {
            return false;
        }
    }
    true
}

/// A `metav1.LabelSelector` in its string form (`app=web,tier in (a,b)`), as
/// `LabelSelectorAsSelector(sel).String()` prints it: requirements sorted by
/// key, set values sorted. The Scale subresource reports it.
pub fn label_selector_string(sel: &Value) -> String {
    let mut parts: Vec<(String, String)> = Vec::new();
    if let Some(m) = sel.get("matchLabels").and_then(Value::as_object) {
        for (k, v) in m {
            parts.push((k.clone(), format!("{k}={}", v.as_str().unwrap_or_default())));
        }
    }
    for e in sel.get("matchExpressions").and_then(Value::as_array).into_iter().flatten() {
        let key = e.get("key").and_then(Value::as_str).unwrap_or_default();
        let values: BTreeSet<&str> =
            e.get("values").and_then(Value::as_array).into_iter().flatten().filter_map(Value::as_str).collect();
        let values = values.into_iter().collect::<Vec<_>>().join(",");
        let text = match e.get("operator").and_then(Value::as_str).unwrap_or_default() {
            "In" => format!("{key} in ({values})"),
            "NotIn" => format!("{key} notin ({values})"),
            "Exists" => key.to_string(),
            "DoesNotExist" => format!("!{key}"),
            _ => continue,
        };
        parts.push((key.to_string(), text));
    }
    parts.sort_by(|a, b| a.0.cmp(&b.0));
    parts.into_iter().map(|(_, t)| t).collect::<Vec<_>>().join(",")
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn label_selectors() {
        let obj = json!({"metadata": {"labels": {"app": "web", "tier": "fe", "n": "5"}}});
        for (sel, want) in [
            ("app=web", true),
            ("app==web", true),
            ("app!=web", false),
            ("app in (web,db)", true),
            ("app notin (web)", false),
            ("tier,app", true),
            ("!tier", false),
            ("!missing", true),
            ("missing", false),
            ("n>4", true),
            ("n<4", false),
            ("app=web,tier in (fe, be)", true),
            ("", true),
        ] {
            assert_eq!(LabelSelector::parse(sel).unwrap().matches_object(&obj), want, "{sel}");
        }
        assert!(LabelSelector::parse("a in x").is_err());
        assert!(LabelSelector::parse("a=b c").is_err());
    }

    #[test]
    fn from_label_selector_json() {
        let sel = json!({"matchLabels": {"app": "web"}, "matchExpressions": [{"key": "tier", "operator": "NotIn", "values": ["db"]}]});
        let s = LabelSelector::from_label_selector(&sel).unwrap();
        assert!(s.matches_object(&json!({"metadata": {"labels": {"app": "web"}}})));
        assert!(!s.matches_object(&json!({"metadata": {"labels": {"app": "web", "tier": "db"}}})));
    }

    #[test]
    fn field_selectors() {
        let pod = json!({"metadata": {"name": "p", "namespace": "default"}, "spec": {"nodeName": "n1"}, "status": {"phase": "Running"}});
        let f =
            FieldSelector::parse("spec.nodeName=n1,status.phase!=Pending", &["spec.nodeName", "status.phase"]).unwrap();
        assert!(f.matches_object(&pod));
        assert_eq!(FieldSelector::parse("metadata.name=p", &[]).unwrap().single_name(), Some("p"));
        assert_eq!(FieldSelector::parse("spec.foo=x", &[]).unwrap_err(), "field label not supported: spec.foo");
        assert!(FieldSelector::parse("spec.nodeName=", &["spec.nodeName"]).unwrap().matches_object(&json!({})));
        // Jobs: `status.successful` is status.succeeded, "0" when unset.
        let done = FieldSelector::parse("status.successful=1", &["status.successful"]).unwrap();
        assert!(done.matches_object(&json!({"status": {"succeeded": 1}})));
        let none = FieldSelector::parse("status.successful=0", &["status.successful"]).unwrap();
        assert!(none.matches_object(&json!({"status": {}})));
    }
}
