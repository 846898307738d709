//! Managed fields across the scale subresource (upstream
//! `k8s.io/apimachinery/pkg/util/managedfields/scalehandler.go`): a Scale
//! (`autoscaling/v1`) shows the managers of its parent's replicas field as
//! owners of its `.spec.replicas` ([`to_subresource`]); after a write to the
//! Scale, [`to_parent`] carries the result back: a manager that lost
//! `.spec.replicas` on the Scale loses the parent's replicas field, and a new
//! owner gets it in the parent's version.

use super::managed::Entry;
use super::path::{Path, PathElement};
use super::set::Set;

pub const SCALE_API_VERSION: &str = "autoscaling/v1";

/// `spec.replicas` of a Scale.
pub fn scale_replicas_path() -> Path {
    vec![PathElement::Field("spec".into()), PathElement::Field("replicas".into())]
}

/// A dot path such as `.spec.replicas` (a CRD's `specReplicasPath`) as a
/// field path.
pub fn field_path(dotted: &str) -> Path {
    dotted.trim_start_matches('.').split('.').filter(|s| !s.is_empty()).map(|s| PathElement::Field(s.into())).collect()
}

fn only(path: &Path) -> Set {
    let mut s = Set::new();
    s.insert(path);
    s
}

/// The Scale's entries: every parent entry that owns `replicas` (the
/// parent's replicas path), as an `autoscaling/v1` entry owning
/// `.spec.replicas`, with the same manager, operation, subresource and time.
pub fn to_subresource(parent: &[Entry], replicas: &Path) -> Vec<Entry> {
    parent
        .iter()
        .filter(|e| e.set.has(replicas))
        .map(|e| Entry { api_version: SCALE_API_VERSION.into(), set: only(&scale_replicas_path()), ..e.clone() })
        .collect()
}

/// Whether `a` (a parent entry) and `b` (a Scale entry) are one manager: the
/// Scale's entries keep their parent's identity but not its version.
fn same_identity(a: &Entry, b: &Entry) -> bool {
    a.manager == b.manager && a.operation == b.operation && a.subresource == b.subresource
}

/// The parent's entries after a write to the Scale left `scale` as the
/// Scale's entries (`ToParent`). `parent_api_version` is the version new
/// owners are recorded in.
pub fn to_parent(parent: &[Entry], scale: &[Entry], replicas: &Path, parent_api_version: &str) -> Vec<Entry> {
    let replicas_set = only(replicas);
    let mut out = Vec::new();
    let mut taken = vec![false; scale.len()];
    for e in parent {
        if !e.set.has(replicas) {
            out.push(e.clone());
            continue;
        }
        match scale.iter().position(|s| same_identity(e, s)) {
            // Still an owner on the Scale: the entry stays as it was, with
            // the Scale's time if the write moved it.
            Some(i) => {
                taken[i] = true;
                let time =
                    if scale[i].set.has(&scale_replicas_path()) { scale[i].time.clone() } else { e.time.clone() };
                out.push(Entry { time, ..e.clone() });
            }
            // "Stolen" by the write: the replicas field leaves this entry.
            None => {
                let rest = e.set.difference(&replicas_set);
                if !rest.is_empty() {
                    out.push(Entry { set: rest, ..e.clone() });
                }
            }
        }
    }
    for (s, _) in scale.iter().zip(&taken).filter(|(_, t)| !**t) {
        if !s.set.has(&scale_replicas_path()) {
            continue;
        }
        // A manager already in the parent for other fields gains the
        // replicas field; otherwise it is a new entry in the parent's version.
        match out.iter_mut().find(|e| same_identity(e, s) && e.api_version == parent_api_version) {
            Some(e) => {
                e.set = e.set.union(&replicas_set);
                e.time = s.time.clone();
            }
            None => out.push(Entry { api_version: parent_api_version.into(), set: replicas_set.clone(), ..s.clone() }),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::smd::managed::Operation;

    fn entry(manager: &str, op: Operation, sub: &str, fields: &[&Path]) -> Entry {
        let mut set = Set::new();
        for f in fields {
            set.insert(f);
        }
        Entry {
            manager: manager.into(),
            operation: op,
            api_version: "apps/v1".into(),
            time: Some("t0".into()),
            subresource: sub.into(),
            set,
        }
    }

    #[test]
    fn replicas_owners_cross_over_and_back() {
        let replicas = field_path(".spec.replicas");
        let image = field_path(".spec.template.spec.containers");
        let parent = vec![
            entry("helm", Operation::Apply, "", &[&replicas, &image]),
            entry("kubectl-edit", Operation::Update, "", &[&image]),
        ];
        let scale = to_subresource(&parent, &replicas);
        assert_eq!(scale.len(), 1);
        assert_eq!(scale[0].manager, "helm");
        assert_eq!(scale[0].api_version, "autoscaling/v1");
        assert!(scale[0].set.has(&scale_replicas_path()));

        // kubectl scale: an Update on the Scale takes .spec.replicas from helm.
        let after = vec![Entry {
            manager: "kubectl".into(),
            operation: Operation::Update,
            api_version: "autoscaling/v1".into(),
            time: Some("t1".into()),
            subresource: "scale".into(),
            set: only(&scale_replicas_path()),
        }];
        let back = to_parent(&parent, &after, &replicas, "apps/v1");
        assert_eq!(back.len(), 3, "{back:?}");
        assert!(!back[0].set.has(&replicas) && back[0].set.has(&image), "helm lost replicas only");
        assert_eq!(back[1], parent[1]);
        assert_eq!(back[2].manager, "kubectl");
        assert_eq!(back[2].api_version, "apps/v1");
        assert_eq!(back[2].subresource, "scale");
        assert!(back[2].set.has(&replicas));

        // A Scale write that leaves helm the owner changes nothing.
        assert_eq!(to_parent(&parent, &scale, &replicas, "apps/v1"), parent);
    }
}
