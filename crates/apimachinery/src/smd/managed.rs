//! `metadata.managedFields`: decoding and encoding the entries, and the two
//! operations that change them — an Update (any write) and an Apply
//! (server-side apply). Upstream: `structured-merge-diff/merge/update.go`
//! (`Updater.Update`, `Updater.Apply`) and the wrappers of
//! `k8s.io/apimachinery/pkg/util/managedfields/internal` (stripmeta,
//! managedfieldsupdater, capmanagers, skipnonapplied, conflict.go).

#[cfg(test)]
use super::path::PathElement;
use super::path::{display, Path};
use super::schema::Shape;
use super::set::Set;
use super::typed::{self, TypeError};
use serde_json::{json, Map, Value};

/// Upstream's `DefaultMaxUpdateManagers`.
pub const MAX_UPDATE_MANAGERS: usize = 10;

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Operation {
    Apply,
    Update,
}

impl Operation {
    fn as_str(self) -> &'static str {
        match self {
            Operation::Apply => "Apply",
            Operation::Update => "Update",
        }
    }
}

/// One `ManagedFieldsEntry`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry {
    pub manager: String,
    pub operation: Operation,
    pub api_version: String,
    /// RFC 3339 time of the manager's last change.
    pub time: Option<String>,
    /// `""` for the main resource, else `status`, `scale`, ...
    pub subresource: String,
    pub set: Set,
}

impl Entry {
    /// `BuildManagerIdentifier`: appliers are one manager whatever the
    /// version; updaters are one per version.
    fn same_manager(&self, other: &Entry) -> bool {
        self.manager == other.manager
            && self.operation == other.operation
            && self.subresource == other.subresource
            && (self.operation == Operation::Apply || self.api_version == other.api_version)
    }

    /// How a conflict names this manager (`printManager`).
    fn describe(&self) -> String {
        let mut s = format!("{:?}", self.manager);
        if !self.subresource.is_empty() {
            s.push_str(&format!(" with subresource {:?}", self.subresource));
        }
        if self.operation == Operation::Update {
            s.push_str(&format!(" using {}", self.api_version));
        }
        s
    }
}

/// Decode `metadata.managedFields` (absent or null: no entries).
pub fn decode(v: Option<&Value>) -> Result<Vec<Entry>, String> {
    let Some(Value::Array(items)) = v else {
        return match v {
            None | Some(Value::Null) => Ok(Vec::new()),
            Some(_) => Err("managedFields is not a list".into()),
        };
    };
    let mut out = Vec::with_capacity(items.len());
    for (i, item) in items.iter().enumerate() {
        let s = |k: &str| item.get(k).and_then(Value::as_str).unwrap_or_default().to_string();
        let operation = match s("operation").as_str() {
            "Apply" => Operation::Apply,
            "Update" => Operation::Update,
            other => return Err(format!("managedFields[{i}]: operation {other:?} is neither Apply nor Update")),
        };
        let fields_type = s("fieldsType");
        if fields_type != "FieldsV1" {
            return Err(format!("managedFields[{i}]: fieldsType {fields_type:?} is not FieldsV1"));
        }
        let set = Set::from_fields_v1(item.get("fieldsV1").unwrap_or(&json!({})))
            .map_err(|e| format!("managedFields[{i}]: {e}"))?;
        out.push(Entry {
            manager: s("manager"),
            operation,
            api_version: s("apiVersion"),
            time: item.get("time").and_then(Value::as_str).map(String::from),
            subresource: s("subresource"),
            set,
        });
    }
    Ok(out)
}

/// Encode entries in upstream's order (`sortEncodedManagedFields`): appliers
/// first, then by time, manager, apiVersion, subresource.
pub fn encode(entries: &[Entry]) -> Value {
    let mut sorted: Vec<&Entry> = entries.iter().collect();
    sorted.sort_by(|p, q| {
        p.operation
            .cmp(&q.operation)
            .then_with(|| p.time.as_deref().unwrap_or("").cmp(q.time.as_deref().unwrap_or("")))
            .then_with(|| p.manager.cmp(&q.manager))
            .then_with(|| p.api_version.cmp(&q.api_version))
            .then_with(|| p.subresource.cmp(&q.subresource))
    });
    Value::Array(
        sorted
            .into_iter()
            .map(|e| {
                let mut m = Map::new();
                m.insert("manager".into(), json!(e.manager));
                m.insert("operation".into(), json!(e.operation.as_str()));
                m.insert("apiVersion".into(), json!(e.api_version));
                if let Some(t) = &e.time {
                    m.insert("time".into(), json!(t));
                }
                m.insert("fieldsType".into(), json!("FieldsV1"));
                m.insert("fieldsV1".into(), e.set.to_fields_v1());
                if !e.subresource.is_empty() {
                    m.insert("subresource".into(), json!(e.subresource));
                }
                Value::Object(m)
            })
            .collect(),
    )
}

/// The object as the field manager sees it (`stripmeta.go`): without
/// `apiVersion`, `kind`, server-set metadata and `managedFields`.
pub fn strip(obj: &Value) -> Value {
    let mut v = obj.clone();
    if let Some(m) = v.as_object_mut() {
        m.remove("apiVersion");
        m.remove("kind");
        if let Some(Value::Object(meta)) = m.get_mut("metadata") {
            for f in [
                "name",
                "namespace",
                "creationTimestamp",
                "selfLink",
                "uid",
                "clusterName",
                "generation",
                "managedFields",
                "resourceVersion",
            ] {
                meta.remove(f);
            }
        }
    }
    v
}

/// Who writes, and where.
#[derive(Clone, Debug)]
pub struct Writer<'a> {
    pub manager: &'a str,
    pub api_version: &'a str,
    pub subresource: &'a str,
    /// The time to record (RFC 3339).
    pub now: &'a str,
}

impl Writer<'_> {
    fn entry(&self, operation: Operation, set: Set) -> Entry {
        Entry {
            manager: self.manager.to_string(),
            operation,
            api_version: self.api_version.to_string(),
            time: Some(self.now.to_string()),
            subresource: self.subresource.to_string(),
            set,
        }
    }
}

/// An Update by `w` changed `live` into `new` (both stripped): the changed
/// fields move to `w`'s entry, removed fields leave every entry
/// (`Updater.Update`; updates never conflict).
pub fn update(
    mut entries: Vec<Entry>,
    live: &Value,
    new: &Value,
    shape: &'static Shape,
    w: &Writer<'_>,
) -> Result<Vec<Entry>, TypeError> {
    let c = typed::compare(live, new, shape)?;
    let changed = c.modified.union(&c.added);
    for e in &mut entries {
        e.set = e.set.difference(&changed).difference(&c.removed);
    }
    // The writer's entry (and its time) changes only if it took fields
    // (`managedfieldsupdater.go`).
    if !changed.is_empty() {
        let me = w.entry(Operation::Update, changed);
        match entries.iter_mut().find(|e| e.same_manager(&me)) {
            Some(e) => {
                e.set = e.set.union(&me.set);
                e.time = me.time;
            }
            None => entries.push(me),
        }
    }
    entries.retain(|e| !e.set.is_empty());
    Ok(cap_update_managers(entries))
}

/// Fields two managers disagree about.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Conflict {
    /// The other manager, as upstream prints it (`"kubectl" using apps/v1`).
    pub manager: String,
    pub path: Path,
}

impl Conflict {
    pub fn path_string(&self) -> String {
        display(&self.path)
    }
}

/// Why an apply failed.
#[derive(Debug, Clone, thiserror::Error)]
pub enum ApplyError {
    #[error("{0}")]
    Conflicts(ConflictList),
    /// The configuration or the live object does not fit the schema.
    #[error(transparent)]
    Type(#[from] TypeError),
}

#[derive(Debug, Clone)]
pub struct ConflictList(pub Vec<Conflict>);

impl std::fmt::Display for ConflictList {
    /// `getConflictMessage` of `managedfields/internal/conflict.go`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let cs = &self.0;
        if let [c] = cs.as_slice() {
            return write!(f, "Apply failed with 1 conflict: conflict with {}: {}", c.manager, c.path_string());
        }
        let mut managers: Vec<&str> = cs.iter().map(|c| c.manager.as_str()).collect();
        managers.sort();
        managers.dedup();
        let mut lines = Vec::new();
        for m in managers {
            lines.push(format!("conflicts with {m}:"));
            for c in cs.iter().filter(|c| c.manager == m) {
                lines.push(format!("- {}", c.path_string()));
            }
        }
        write!(f, "Apply failed with {} conflicts: {}", cs.len(), lines.join("\n"))
    }
}

/// An Apply of `config` by `w` to `live` (both stripped): the merged object
/// and the new entries (`Updater.Apply`). Fields `w` applied before and no
/// longer does are removed unless another manager owns them; fields other
/// managers own that the merge changes are conflicts unless `force`, which
/// takes them over.
pub fn apply(
    mut entries: Vec<Entry>,
    live: &Value,
    config: &Value,
    shape: &'static Shape,
    zero: &Value,
    w: &Writer<'_>,
    force: bool,
) -> Result<(Value, Vec<Entry>), ApplyError> {
    // An object written before fields were tracked: its contents belong to
    // "before-first-apply" (`skipnonapplied.go`).
    if entries.is_empty() && live != zero {
        let first = Writer { manager: "before-first-apply", ..w.clone() };
        entries = update(entries, zero, live, shape, &first)?;
    }
    let mut merged = typed::merge(live, config, shape)?;
    let mut me = w.entry(Operation::Apply, typed::to_field_set(config, shape)?);
    let previous = entries.iter().find(|e| e.same_manager(&me));
    let last = previous.map(|e| e.set.clone()).unwrap_or_default();
    let last_time = previous.and_then(|e| e.time.clone());
    entries.retain(|e| !e.same_manager(&me));
    let owned = entries.iter().fold(me.set.clone(), |acc, e| acc.union(&e.set));
    if !last.is_empty() {
        typed::prune(&mut merged, shape, &last, &owned)?;
    }
    let c = typed::compare(live, &merged, shape)?;
    let changed = c.modified.union(&c.added);
    let mut conflicts = Vec::new();
    for e in &entries {
        for path in e.set.intersection(&changed).paths() {
            conflicts.push(Conflict { manager: e.describe(), path });
        }
    }
    if !force && !conflicts.is_empty() {
        conflicts.sort_by(|a, b| a.manager.cmp(&b.manager).then_with(|| a.path.cmp(&b.path)));
        return Err(ApplyError::Conflicts(ConflictList(conflicts)));
    }
    for e in &mut entries {
        e.set = e.set.difference(&changed).difference(&c.removed);
    }
    entries.retain(|e| !e.set.is_empty());
    // A no-op apply keeps the applier's time (`managedfieldsupdater.go`).
    if merged == *live && last_time.is_some() {
        me.time = last_time;
    }
    if !me.set.is_empty() {
        entries.push(me);
    }
    Ok((merged, cap_update_managers(entries)))
}

/// At most [`MAX_UPDATE_MANAGERS`] Update entries: the oldest are merged
/// into `ancient-changes` (`capmanagers.go`).
fn cap_update_managers(mut entries: Vec<Entry>) -> Vec<Entry> {
    let count = |es: &[Entry]| es.iter().filter(|e| e.operation == Operation::Update).count();
    while count(&entries) > MAX_UPDATE_MANAGERS {
        let oldest = entries
            .iter()
            .enumerate()
            .filter(|(_, e)| e.operation == Operation::Update && e.manager != "ancient-changes")
            .min_by(|a, b| a.1.time.cmp(&b.1.time))
            .map(|(i, _)| i);
        let Some(i) = oldest else { break };
        let old = entries.remove(i);
        match entries.iter_mut().find(|e| e.manager == "ancient-changes" && e.operation == Operation::Update) {
            Some(a) => a.set = a.set.union(&old.set),
            None => entries.push(Entry { manager: "ancient-changes".into(), ..old }),
        }
    }
    entries
}

/// `metadata.managedFields` of a request object as upstream reads it
/// (`decodeLiveOrNew`): `[{}]` resets tracking, a valid non-empty list
/// replaces the live one, anything else keeps the live entries.
pub fn requested_or_live(requested: Option<&Value>, live: Vec<Entry>) -> Vec<Entry> {
    if let Some(Value::Array(items)) = requested {
        if items.len() == 1 && items[0].as_object().is_some_and(Map::is_empty) {
            return Vec::new();
        }
        if let Ok(es) = decode(requested) {
            if !es.is_empty() {
                return es;
            }
        }
    }
    live
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::smd::schema::{for_kind, zero_object};

    fn w<'a>(m: &'a str, now: &'a str) -> Writer<'a> {
        Writer { manager: m, api_version: "apps/v1", subresource: "", now }
    }

    fn dep(replicas: i64, image: &str) -> Value {
        json!({"metadata": {"labels": {"app": "web"}}, "spec": {"replicas": replicas, "selector": {"matchLabels": {"app": "web"}},
            "template": {"metadata": {"labels": {"app": "web"}}, "spec": {"containers": [{"name": "c", "image": image}]}}}})
    }

    #[test]
    fn create_as_update_owns_the_contents_not_the_zero_structs() {
        let shape = for_kind("apps", "Deployment");
        let zero = zero_object("apps", "Deployment");
        let es = update(vec![], &zero, &dep(1, "a"), shape, &w("kubectl-create", "t1")).unwrap();
        let v = encode(&es);
        assert_eq!(v[0]["manager"], "kubectl-create");
        assert_eq!(v[0]["operation"], "Update");
        let f = &v[0]["fieldsV1"];
        assert_eq!(f["f:metadata"]["f:labels"], json!({".": {}, "f:app": {}}));
        assert!(f["f:spec"].get(".").is_none());
        assert!(f["f:spec"]["f:template"]["f:spec"]["f:containers"].get(".").is_none());
        assert_eq!(decode(Some(&v)).unwrap(), es);
    }

    #[test]
    fn apply_conflicts_force_and_prune() {
        let shape = for_kind("apps", "Deployment");
        let zero = zero_object("apps", "Deployment");
        let (live, es) = apply(vec![], &zero, &dep(1, "a"), shape, &zero, &w("kubectl", "t1"), false).unwrap();
        assert_eq!(es.len(), 1);
        // Another manager changes replicas with an Update: it owns them now.
        let mut scaled = live.clone();
        scaled["spec"]["replicas"] = json!(5);
        let es = update(es, &live, &scaled, shape, &w("hpa", "t2")).unwrap();
        // Re-applying replicas: 1 conflicts with hpa.
        let err = apply(es.clone(), &scaled, &dep(1, "b"), shape, &zero, &w("kubectl", "t3"), false).unwrap_err();
        assert_eq!(
            err.to_string(),
            "Apply failed with 1 conflict: conflict with \"hpa\" using apps/v1: .spec.replicas"
        );
        // Forced, kubectl takes them back and hpa's entry is gone.
        let (forced, es2) = apply(es.clone(), &scaled, &dep(1, "b"), shape, &zero, &w("kubectl", "t3"), true).unwrap();
        assert_eq!(forced["spec"]["replicas"], 1);
        assert!(es2.iter().all(|e| e.manager != "hpa"));
        // Without replicas in the config, the applier no longer owns them;
        // hpa still does, so they stay.
        let mut cfg = dep(1, "b");
        cfg["spec"].as_object_mut().unwrap().remove("replicas");
        cfg["metadata"].as_object_mut().unwrap().remove("labels");
        let (pruned, _) = apply(es, &scaled, &cfg, shape, &zero, &w("kubectl", "t4"), false).unwrap();
        assert_eq!(pruned["spec"]["replicas"], 5);
        assert!(pruned["metadata"].get("labels").is_none(), "labels only kubectl had are removed");
    }

    #[test]
    fn many_conflicts_message() {
        let list = ConflictList(vec![
            Conflict { manager: "\"a\"".into(), path: vec![PathElement::Field("x".into())] },
            Conflict { manager: "\"a\"".into(), path: vec![PathElement::Field("y".into())] },
        ]);
        assert_eq!(list.to_string(), "Apply failed with 2 conflicts: conflicts with \"a\":\n- .x\n- .y");
    }

    #[test]
    fn updaters_are_capped() {
        let shape = for_kind("", "ConfigMap");
        let mut es = Vec::new();
        let mut live = json!({"data": {}});
        for i in 0..12 {
            let mut new = live.clone();
            new["data"][format!("k{i}")] = json!("v");
            let t = format!("t{i:02}");
            es = update(
                es,
                &live,
                &new,
                shape,
                &Writer { manager: &format!("m{i}"), api_version: "v1", subresource: "", now: &t },
            )
            .unwrap();
            live = new;
        }
        assert_eq!(es.len(), 10);
        assert!(es.iter().any(|e| e.manager == "ancient-changes"));
    }

    #[test]
    fn reset_and_fallback() {
        let live = vec![Entry {
            manager: "m".into(),
            operation: Operation::Update,
            api_version: "v1".into(),
            time: None,
            subresource: String::new(),
            set: Set::new(),
        }];
        assert!(requested_or_live(Some(&json!([{}])), live.clone()).is_empty());
        assert_eq!(requested_or_live(Some(&json!([])), live.clone()), live);
        assert_eq!(requested_or_live(None, live.clone()), live);
    }
}
