//! The custom resources served: one [`Resource`] per served version of every
//! CustomResourceDefinition, rebuilt from the stored CRDs after each CRD write
//! (so a new kind is served as soon as its CRD is written). One API server per
//! process: the table is process-wide, like the static one in `resources`.

use crate::resources::Resource;
use apimachinery::crd::definition::{self, ServedVersion};
use serde_json::Value;
use std::collections::HashMap;
use std::sync::{Mutex, OnceLock, RwLock};

/// A served custom resource version.
#[derive(Clone, Debug)]
pub struct Custom {
    pub resource: &'static Resource,
    pub version: ServedVersion,
    /// Server-side apply's view of the version's schema.
    pub shape: &'static apimachinery::smd::schema::Shape,
}

fn served() -> &'static RwLock<Vec<Custom>> {
    static SERVED: OnceLock<RwLock<Vec<Custom>>> = OnceLock::new();
    SERVED.get_or_init(Default::default)
}

fn leak(s: &str) -> &'static str {
    Box::leak(s.to_string().into_boxed_str())
}

/// A `Resource` for these names, made once per distinct set of names (the
/// static table's entries live forever; so do these, one per CRD shape).
fn resource_for(crd: &Value, version: &ServedVersion) -> &'static Resource {
    static MADE: OnceLock<Mutex<HashMap<String, &'static Resource>>> = OnceLock::new();
    let s = |p: &str| crd.pointer(p).and_then(Value::as_str).unwrap_or_default().to_string();
    let list = |p: &str| -> Vec<String> {
        crd.pointer(p)
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(|v| v.as_str().map(String::from))
            .collect()
    };
    let (group, plural, singular, kind) =
        (s("/spec/group"), s("/spec/names/plural"), s("/spec/names/singular"), s("/spec/names/kind"));
    let namespaced = s("/spec/scope") == "Namespaced";
    let (short, cats) = (list("/spec/names/shortNames"), list("/spec/names/categories"));
    let key = format!(
        "{group}/{}/{plural}/{singular}/{kind}/{namespaced}/{short:?}/{cats:?}/{}/{}",
        version.name,
        version.status,
        version.scale.is_some()
    );
    let made = MADE.get_or_init(Default::default);
    let mut made = made.lock().unwrap_or_else(|e| e.into_inner());
    made.entry(key).or_insert_with(|| {
        let short: Vec<&'static str> = short.iter().map(|x| leak(x)).collect();
        let cats: Vec<&'static str> = cats.iter().map(|x| leak(x)).collect();
        Box::leak(Box::new(Resource {
            group: leak(&group),
            version: leak(&version.name),
            kind: leak(&kind),
            plural: leak(&plural),
            singular: leak(if singular.is_empty() { &plural } else { &singular }),
            namespaced,
            short_names: Box::leak(short.into_boxed_slice()),
            categories: Box::leak(cats.into_boxed_slice()),
            status: version.status,
            scale: version.scale.is_some(),
        }))
    })
}

/// The shape of a schema, built once per distinct schema.
fn shape_for(schema: Option<&Value>) -> &'static apimachinery::smd::schema::Shape {
    static MADE: OnceLock<Mutex<HashMap<String, &'static apimachinery::smd::schema::Shape>>> = OnceLock::new();
    let Some(schema) = schema else { return apimachinery::smd::schema::for_kind("", "") };
    let made = MADE.get_or_init(Default::default);
    let mut made = made.lock().unwrap_or_else(|e| e.into_inner());
    made.entry(schema.to_string()).or_insert_with(|| apimachinery::crd::shape::from_schema(schema))
}

/// Replace the served custom resources with those of `crds` (all stored CRDs).
/// CRDs being deleted are no longer served.
pub fn sync(crds: &[Value]) {
    let mut out = Vec::new();
    for crd in crds {
        if crd.pointer("/metadata/deletionTimestamp").is_some() {
            continue;
        }
        for v in definition::served_versions(crd) {
            let shape = shape_for(v.schema.as_ref());
            out.push(Custom { resource: resource_for(crd, &v), version: v, shape });
        }
    }
    *served().write().unwrap_or_else(|e| e.into_inner()) = out;
}

fn read() -> std::sync::RwLockReadGuard<'static, Vec<Custom>> {
    served().read().unwrap_or_else(|e| e.into_inner())
}

pub fn find(group: &str, version: &str, plural: &str) -> Option<&'static Resource> {
    read()
        .iter()
        .find(|c| c.resource.group == group && c.resource.version == version && c.resource.plural == plural)
        .map(|c| c.resource)
}

pub fn find_kind(api_version: &str, kind: &str) -> Option<&'static Resource> {
    read().iter().find(|c| c.resource.kind == kind && c.resource.api_version() == api_version).map(|c| c.resource)
}

/// The served custom resource `r` is, if it is one.
pub fn custom(r: &Resource) -> Option<Custom> {
    read()
        .iter()
        .find(|c| c.resource.group == r.group && c.resource.version == r.version && c.resource.plural == r.plural)
        .cloned()
}

/// Every served custom resource.
pub fn all() -> Vec<&'static Resource> {
    read().iter().map(|c| c.resource).collect()
}

/// The storage key prefixes of a CRD's objects (all versions share one).
pub fn key_prefix_of(crd: &Value) -> Option<String> {
    let group = crd.pointer("/spec/group").and_then(Value::as_str)?;
    let plural = crd.pointer("/spec/names/plural").and_then(Value::as_str)?;
    Some(format!("/registry/{group}/{plural}/"))
}

/// Kubernetes version priority (`v1` > `v1beta2` > `v1beta1` > `v1alpha1` >
/// other), as discovery orders versions (`version.CompareKubeAwareVersionStrings`).
pub fn version_priority(v: &str) -> (u8, u32, u32) {
    let rest = match v.strip_prefix('v') {
        Some(r) => r,
        None => return (0, 0, 0),
    };
    let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
    let Ok(major) = digits.parse::<u32>() else { return (0, 0, 0) };
    let tail = &rest[digits.len()..];
    let (rank, t) = if tail.is_empty() {
        (3, "")
    } else if let Some(t) = tail.strip_prefix("beta") {
        (2, t)
    } else if let Some(t) = tail.strip_prefix("alpha") {
        (1, t)
    } else {
        return (0, 0, 0);
    };
    let minor = if t.is_empty() { 0 } else { t.parse().unwrap_or(0) };
    if rank != 3 && t.is_empty() {
        return (0, 0, 0);
    }
    (rank, major, minor)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn crds_become_resources() {
        let crd = json!({"metadata": {"name": "gizmos.test.rkube.io"}, "spec": {"group": "test.rkube.io", "scope": "Cluster",
            "names": {"plural": "gizmos", "singular": "gizmo", "kind": "Gizmo", "shortNames": ["gz"]},
            "versions": [{"name": "v1", "served": true, "storage": true}, {"name": "v1beta1", "served": true, "storage": false}]}});
        sync(&[crd]);
        let r = find("test.rkube.io", "v1", "gizmos").expect("served");
        assert!(!r.namespaced);
        assert_eq!(r.short_names, ["gz"]);
        assert!(find_kind("test.rkube.io/v1beta1", "Gizmo").is_some());
        let mut vs = vec!["v1beta1", "v1", "v2alpha1", "v2"];
        vs.sort_by_key(|v| std::cmp::Reverse(version_priority(v)));
        assert_eq!(vs, ["v2", "v1", "v1beta1", "v2alpha1"]);
        sync(&[]);
        assert!(find("test.rkube.io", "v1", "gizmos").is_none());
    }
}
