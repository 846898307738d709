//! The value operations of structured-merge-diff on JSON objects with a
//! [`Shape`]: the field set an object sets (`typed/tofieldset.go`), the
//! comparison of two versions (`typed/compare.go` through the merging walker
//! of `typed/merge.go`), the merge of an applied configuration into the live
//! object, and the pruning of fields a manager stopped applying
//! (`merge/update.go` `prune`).

use super::path::{Path, PathElement};
use super::schema::Shape;
use super::set::Set;
use serde_json::{Map, Value};

/// Why a value does not fit its schema.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{path}: {message}")]
pub struct TypeError {
    /// Where, in `Path.String` form (`.spec.ports[0]`).
    pub path: String,
    pub message: String,
}

fn type_error(path: &[PathElement], message: impl Into<String>) -> TypeError {
    TypeError { path: super::path::display(path), message: message.into() }
}

/// The path element of list item `item` at `index` in a list of `shape`.
fn item_element(shape: &Shape, item: &Value, index: usize, path: &[PathElement]) -> Result<PathElement, TypeError> {
    match shape {
        Shape::ListSet => match item {
            Value::Object(_) | Value::Array(_) => {
                let mut p = path.to_vec();
                p.push(PathElement::Index(index));
                Err(type_error(&p, "expected scalar, got non-scalar in a set-typed list"))
            }
            v => Ok(PathElement::Value(v.clone())),
        },
        Shape::ListMap { keys, .. } => {
            let mut p = path.to_vec();
            p.push(PathElement::Index(index));
            let Value::Object(m) = item else {
                return Err(type_error(&p, "associative list with keys has an element that is not a map"));
            };
            let mut fields = Vec::with_capacity(keys.len());
            for (name, default) in keys.iter() {
                match (m.get(*name), default) {
                    (Some(v), _) if !v.is_null() => fields.push((name.to_string(), v.clone())),
                    (_, Some(d)) => fields.push((name.to_string(), Value::String(d.to_string()))),
                    _ => {
                        return Err(type_error(
                            &p,
                            format!(
                                "associative list with keys has an element that omits key field {name:?} (and doesn't have default value)"
                            ),
                        ))
                    }
                }
            }
            fields.sort_by(|a, b| a.0.cmp(&b.0));
            Ok(PathElement::Key(fields))
        }
        _ => Ok(PathElement::Index(index)),
    }
}

fn item_shape(shape: &'static Shape) -> &'static Shape {
    match shape {
        Shape::ListMap { item, .. } => item,
        _ => &Shape::Atomic,
    }
}

fn is_list_shape(shape: &Shape) -> bool {
    matches!(shape, Shape::ListMap { .. } | Shape::ListSet)
}

/// The items of a granular list with their path elements; duplicates are an error.
fn index_list<'v>(
    shape: &Shape,
    list: &'v [Value],
    path: &[PathElement],
) -> Result<Vec<(PathElement, &'v Value)>, TypeError> {
    let mut out: Vec<(PathElement, &Value)> = Vec::with_capacity(list.len());
    for (i, item) in list.iter().enumerate() {
        let pe = item_element(shape, item, i, path)?;
        if out.iter().any(|(p, _)| *p == pe) {
            let mut p = path.to_vec();
            p.push(pe);
            return Err(type_error(&p, "duplicate entries for key"));
        }
        out.push((pe, item));
    }
    Ok(out)
}

/// The fields `value` sets (`TypedValue.ToFieldSet`).
pub fn to_field_set(value: &Value, shape: &'static Shape) -> Result<Set, TypeError> {
    let mut set = Set::new();
    let mut path = Vec::new();
    walk_set(value, shape, &mut path, &mut set)?;
    Ok(set)
}

fn walk_set(value: &Value, shape: &'static Shape, path: &mut Path, set: &mut Set) -> Result<(), TypeError> {
    match (shape, value) {
        (Shape::Atomic, _) => set.insert(path),
        (Shape::ListMap { .. } | Shape::ListSet, Value::Array(items)) => {
            for (pe, item) in index_list(shape, items, path)? {
                path.push(pe);
                set.insert(path);
                walk_set(item, item_shape(shape), path, set)?;
                path.pop();
            }
        }
        (Shape::Struct(_) | Shape::Map(_) | Shape::Default, Value::Object(m)) => {
            for (k, v) in m {
                path.push(PathElement::Field(k.clone()));
                walk_set(v, shape.field(k), path, set)?;
                // Null or empty values and map keys are owned themselves.
                let empty = v.is_null() || v.as_object().is_some_and(Map::is_empty);
                if empty || shape.is_map() {
                    set.insert(path);
                }
                path.pop();
            }
        }
        // Scalars, atomic (unmarked) lists, and type mismatches are leaves.
        _ => set.insert(path),
    }
    Ok(())
}

/// What changed between two versions of an object (`typed.Comparison`).
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Comparison {
    pub added: Set,
    pub removed: Set,
    pub modified: Set,
}

/// Compare `lhs` (old) with `rhs` (new).
pub fn compare(lhs: &Value, rhs: &Value, shape: &'static Shape) -> Result<Comparison, TypeError> {
    let mut c = Comparison::default();
    let mut path = Vec::new();
    walk_compare(Some(lhs), Some(rhs), shape, &mut path, &mut c)?;
    Ok(c)
}

fn is_empty_container(v: Option<&Value>) -> bool {
    match v {
        None | Some(Value::Null) => true,
        Some(Value::Object(m)) => m.is_empty(),
        Some(Value::Array(a)) => a.is_empty(),
        _ => false,
    }
}

/// The merging walker's classification of a pair of values.
enum Walk<'v> {
    Leaf,
    Map(Option<&'v Map<String, Value>>, Option<&'v Map<String, Value>>),
    List(Option<&'v Vec<Value>>, Option<&'v Vec<Value>>),
}

fn classify<'v>(lhs: Option<&'v Value>, rhs: Option<&'v Value>, shape: &Shape) -> Walk<'v> {
    if matches!(shape, Shape::Atomic) {
        return Walk::Leaf;
    }
    // Both empty or null: a leaf, to keep the empty/null distinction.
    if is_empty_container(lhs) && is_empty_container(rhs) {
        return Walk::Leaf;
    }
    // A null is an absent container (`listValue`/`mapValue` of null).
    let as_map = |v: Option<&'v Value>| match v {
        None | Some(Value::Null) => Some(None),
        Some(Value::Object(m)) => Some(Some(m)),
        _ => None,
    };
    let as_list = |v: Option<&'v Value>| match v {
        None | Some(Value::Null) => Some(None),
        Some(Value::Array(a)) => Some(Some(a)),
        _ => None,
    };
    if is_list_shape(shape) {
        if let (Some(l), Some(r)) = (as_list(lhs), as_list(rhs)) {
            return Walk::List(l, r);
        }
        return Walk::Leaf;
    }
    if let (Some(l), Some(r)) = (as_map(lhs), as_map(rhs)) {
        return Walk::Map(l, r);
    }
    Walk::Leaf
}

fn walk_compare(
    lhs: Option<&Value>,
    rhs: Option<&Value>,
    shape: &'static Shape,
    path: &mut Path,
    c: &mut Comparison,
) -> Result<(), TypeError> {
    match classify(lhs, rhs, shape) {
        Walk::Leaf => match (lhs, rhs) {
            (None, Some(_)) => c.added.insert(path),
            (Some(_), None) => c.removed.insert(path),
            (Some(a), Some(b)) if a != b => c.modified.insert(path),
            _ => {}
        },
        Walk::Map(l, r) => {
            let mut keys: Vec<&String> = l.into_iter().flat_map(|m| m.keys()).collect();
            keys.extend(r.into_iter().flat_map(|m| m.keys()));
            keys.sort();
            keys.dedup();
            for k in keys {
                let (a, b) = (l.and_then(|m| m.get(k)), r.and_then(|m| m.get(k)));
                path.push(PathElement::Field(k.clone()));
                walk_compare(a, b, shape.field(k), path, c)?;
                post_item(a, b, path, c);
                path.pop();
            }
        }
        Walk::List(l, r) => {
            let li = index_list(shape, l.map(Vec::as_slice).unwrap_or_default(), path)?;
            let ri = index_list(shape, r.map(Vec::as_slice).unwrap_or_default(), path)?;
            let mut pes: Vec<&PathElement> = li.iter().map(|(p, _)| p).chain(ri.iter().map(|(p, _)| p)).collect();
            pes.sort();
            pes.dedup();
            for pe in pes {
                let a = li.iter().find(|(p, _)| p == pe).map(|(_, v)| *v);
                let b = ri.iter().find(|(p, _)| p == pe).map(|(_, v)| *v);
                path.push(pe.clone());
                walk_compare(a, b, item_shape(shape), path, c)?;
                post_item(a, b, path, c);
                path.pop();
            }
        }
    }
    Ok(())
}

/// The comparison's hook after each map or list item.
fn post_item(a: Option<&Value>, b: Option<&Value>, path: &[PathElement], c: &mut Comparison) {
    match (a, b) {
        (None, Some(_)) => c.added.insert(path),
        (Some(_), None) => c.removed.insert(path),
        _ => {}
    }
}

/// Merge the applied configuration `rhs` into the live object `lhs`
/// (`TypedValue.Merge`): the configuration wins at leaves and atomic values,
/// maps and granular lists merge item by item.
pub fn merge(lhs: &Value, rhs: &Value, shape: &'static Shape) -> Result<Value, TypeError> {
    let mut path = Vec::new();
    Ok(merge_values(Some(lhs), Some(rhs), shape, &mut path)?.unwrap_or(Value::Null))
}

fn merge_values(
    lhs: Option<&Value>,
    rhs: Option<&Value>,
    shape: &'static Shape,
    path: &mut Path,
) -> Result<Option<Value>, TypeError> {
    match classify(lhs, rhs, shape) {
        Walk::Leaf => Ok(rhs.or(lhs).cloned()),
        Walk::Map(l, r) => {
            let mut out = Map::new();
            let mut keys: Vec<&String> = l.into_iter().flat_map(|m| m.keys()).collect();
            keys.extend(r.into_iter().flat_map(|m| m.keys()));
            keys.sort();
            keys.dedup();
            for k in keys {
                path.push(PathElement::Field(k.clone()));
                let v = merge_values(l.and_then(|m| m.get(k)), r.and_then(|m| m.get(k)), shape.field(k), path)?;
                path.pop();
                if let Some(v) = v {
                    out.insert(k.clone(), v);
                }
            }
            Ok(Some(Value::Object(out)))
        }
        Walk::List(l, r) => {
            let li = index_list(shape, l.map(Vec::as_slice).unwrap_or_default(), path)?;
            let ri = index_list(shape, r.map(Vec::as_slice).unwrap_or_default(), path)?;
            let order = merged_order(&li, &ri);
            let mut out = Vec::with_capacity(order.len());
            for pe in order {
                let a = li.iter().find(|(p, _)| *p == pe).map(|(_, v)| *v);
                let b = ri.iter().find(|(p, _)| *p == pe).map(|(_, v)| *v);
                path.push(pe);
                let v = merge_values(a, b, item_shape(shape), path)?;
                path.pop();
                out.extend(v);
            }
            Ok(Some(Value::Array(out)))
        }
    }
}

/// The order of a merged granular list (`mergingWalker.visitListItems`): the
/// configuration's order for its items, live-only items where they were.
fn merged_order(lhs: &[(PathElement, &Value)], rhs: &[(PathElement, &Value)]) -> Vec<PathElement> {
    let in_rhs = |pe: &PathElement| rhs.iter().any(|(p, _)| p == pe);
    let in_lhs = |pe: &PathElement| lhs.iter().any(|(p, _)| p == pe);
    let mut shared: std::collections::VecDeque<&PathElement> =
        rhs.iter().map(|(p, _)| p).filter(|p| in_lhs(p)).collect();
    let mut next_shared = shared.pop_front();
    let mut merged: Vec<PathElement> = Vec::new();
    let mut out = Vec::new();
    let (mut li, mut ri) = (0, 0);
    while li < lhs.len() || ri < rhs.len() {
        if li < lhs.len() && ri < rhs.len() {
            let pe = &lhs[li].0;
            if *pe == rhs[ri].0 {
                merged.push(pe.clone());
                out.push(pe.clone());
                li += 1;
                ri += 1;
                next_shared = shared.pop_front();
                continue;
            }
            if in_rhs(pe) && next_shared.is_some_and(|n| n != pe) {
                li += 1;
                continue;
            }
        }
        if li < lhs.len() {
            let pe = &lhs[li].0;
            if !in_rhs(pe) {
                out.push(pe.clone());
                li += 1;
                continue;
            } else if merged.contains(pe) {
                li += 1;
            }
        }
        if ri < rhs.len() {
            let pe = &rhs[ri].0;
            merged.push(pe.clone());
            out.push(pe.clone());
            ri += 1;
            if next_shared.is_some_and(|n| n == pe) {
                next_shared = shared.pop_front();
            }
        }
    }
    out
}

/// Remove from `value` what the applying manager owned before (`last`) and
/// nobody owns now (`owned`: every manager's set, the applier's new one
/// included). A node that someone still owns something below is kept and
/// pruned inside. Like upstream, a struct field whose owned contents all went
/// away is removed as a whole.
pub fn prune(value: &mut Value, shape: &'static Shape, last: &Set, owned: &Set) -> Result<(), TypeError> {
    let mut path = Vec::new();
    prune_node(value, shape, last, Some(owned), &mut path)
}

fn prune_node(
    value: &mut Value,
    shape: &'static Shape,
    last: &Set,
    owned: Option<&Set>,
    path: &mut Path,
) -> Result<(), TypeError> {
    let touched = |pe: &PathElement, s: &Set| s.has(std::slice::from_ref(pe)) || s.child(pe).is_some();
    match (shape, value) {
        (Shape::Atomic, _) => {}
        (Shape::ListMap { .. } | Shape::ListSet, Value::Array(items)) => {
            let pes: Vec<PathElement> = index_list(shape, items, path)?.into_iter().map(|(p, _)| p).collect();
            let mut keep = Vec::with_capacity(items.len());
            for (pe, mut item) in pes.into_iter().zip(std::mem::take(items)) {
                if touched(&pe, last) {
                    if !owned.is_some_and(|o| touched(&pe, o)) {
                        continue;
                    }
                    if let Some(sub) = last.child(&pe) {
                        path.push(pe.clone());
                        prune_node(&mut item, item_shape(shape), sub, owned.and_then(|o| o.child(&pe)), path)?;
                        path.pop();
                    }
                }
                keep.push(item);
            }
            *items = keep;
        }
        (Shape::Struct(_) | Shape::Map(_) | Shape::Default, Value::Object(m)) => {
            let keys: Vec<String> = m.keys().cloned().collect();
            for k in keys {
                let pe = PathElement::Field(k.clone());
                if !touched(&pe, last) {
                    continue;
                }
                if !owned.is_some_and(|o| touched(&pe, o)) {
                    m.remove(&k);
                    continue;
                }
                if let (Some(sub), Some(v)) = (last.child(&pe), m.get_mut(&k)) {
                    path.push(pe.clone());
                    prune_node(v, shape.field(&k), sub, owned.and_then(|o| o.child(&pe)), path)?;
                    path.pop();
                }
            }
        }
        _ => {}
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::smd::schema::for_kind;
    use serde_json::json;

    fn dep() -> &'static Shape {
        for_kind("apps", "Deployment")
    }

    #[test]
    fn field_set_of_an_applied_deployment_is_upstreams() {
        let cfg = json!({
            "metadata": {"name": "web", "labels": {"app": "web"}},
            "spec": {"replicas": 2, "selector": {"matchLabels": {"app": "web"}},
                "template": {"metadata": {"labels": {"app": "web"}},
                    "spec": {"containers": [{"name": "nginx", "image": "nginx", "ports": [{"containerPort": 80}]}]}}}
        });
        let set = to_field_set(&cfg, dep()).unwrap();
        assert_eq!(
            set.to_fields_v1(),
            json!({
                "f:metadata": {"f:labels": {"f:app": {}}, "f:name": {}},
                "f:spec": {"f:replicas": {}, "f:selector": {}, "f:template": {
                    "f:metadata": {"f:labels": {"f:app": {}}},
                    "f:spec": {"f:containers": {"k:{\"name\":\"nginx\"}": {
                        ".": {}, "f:image": {}, "f:name": {},
                        "f:ports": {"k:{\"containerPort\":80,\"protocol\":\"TCP\"}": {".": {}, "f:containerPort": {}}}
                    }}}
                }}
            })
        );
    }

    #[test]
    fn compare_finds_added_removed_modified() {
        let a = json!({"spec": {"replicas": 1, "paused": true, "template": {"spec": {"containers": [{"name": "a", "image": "x"}]}}}});
        let b = json!({"spec": {"replicas": 2, "template": {"spec": {"containers": [{"name": "a", "image": "x"}, {"name": "b", "image": "y"}]}}}});
        let c = compare(&a, &b, dep()).unwrap();
        let f = |s: &str| PathElement::Field(s.into());
        assert!(c.modified.has(&[f("spec"), f("replicas")]));
        assert!(c.removed.has(&[f("spec"), f("paused")]));
        let item_b = PathElement::Key(vec![("name".into(), json!("b"))]);
        let containers = [f("spec"), f("template"), f("spec"), f("containers")];
        let mut p = containers.to_vec();
        p.push(item_b);
        assert!(c.added.has(&p));
        p.push(f("image"));
        assert!(c.added.has(&p));
        assert!(!c.modified.has(&containers));
    }

    #[test]
    fn merge_keeps_live_items_and_follows_config_order() {
        let live = json!({"spec": {"template": {"spec": {"containers": [{"name": "a", "image": "1"}, {"name": "side", "image": "s"}, {"name": "b", "image": "2"}]}}}});
        let cfg = json!({"spec": {"template": {"spec": {"containers": [{"name": "b", "image": "3"}, {"name": "a", "image": "1"}]}}}});
        let m = merge(&live, &cfg, dep()).unwrap();
        let names: Vec<&str> = m["spec"]["template"]["spec"]["containers"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c["name"].as_str().unwrap())
            .collect();
        assert_eq!(names, ["side", "b", "a"]);
        assert_eq!(m["spec"]["template"]["spec"]["containers"][1]["image"], "3");
        // Atomic selectors are replaced, not merged.
        let live = json!({"spec": {"selector": {"matchLabels": {"a": "1", "b": "2"}}}});
        let cfg = json!({"spec": {"selector": {"matchLabels": {"a": "1"}}}});
        assert_eq!(merge(&live, &cfg, dep()).unwrap(), cfg);
    }

    #[test]
    fn missing_key_without_default_is_an_error() {
        let cfg = json!({"spec": {"template": {"spec": {"containers": [{"image": "x"}]}}}});
        let e = to_field_set(&cfg, dep()).unwrap_err();
        assert_eq!(e.path, ".spec.template.spec.containers[0]");
        let dup = json!({"spec": {"template": {"spec": {"containers": [{"name": "a"}, {"name": "a"}]}}}});
        assert!(to_field_set(&dup, dep()).unwrap_err().message.contains("duplicate entries"));
    }

    #[test]
    fn prune_removes_what_only_the_applier_had() {
        let mut obj = json!({"spec": {"replicas": 3, "paused": true, "strategy": {"type": "Recreate"}}});
        let last =
            to_field_set(&json!({"spec": {"replicas": 3, "paused": true, "strategy": {"type": "Recreate"}}}), dep())
                .unwrap();
        let now = to_field_set(&json!({"spec": {"replicas": 3}}), dep()).unwrap();
        let mut other = Set::new();
        other.insert(&[PathElement::Field("spec".into()), PathElement::Field("paused".into())]);
        prune(&mut obj, dep(), &last, &now.union(&other)).unwrap();
        assert_eq!(obj, json!({"spec": {"replicas": 3, "paused": true}}));
    }
}
