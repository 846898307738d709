//! What one StatefulSet sync does, as pure rules (upstream
//! `pkg/controller/statefulset/stateful_set_control.go` `updateStatefulSet`,
//! `processReplica`, `processCondemned`, and `stateful_set_utils.go`): pods
//! in the ordinal range are kept (created when missing, replaced when failed),
//! pods past it are condemned and deleted from the highest ordinal; with
//! OrderedReady ("monotonic") the first step that waits ends the sync, with
//! Parallel every pod is handled at once. RollingUpdate then replaces the
//! highest-ordinal pod not at the update revision, down to `partition`, one at a
//! time and only while the pods above are available.

use crate::util;
use k8s_openapi::api::core::v1::Pod;
use std::sync::Arc;

/// `apps.StatefulSetRevisionLabel`.
pub const REVISION_LABEL: &str = "controller-revision-hash";
/// `apps.StatefulSetPodNameLabel`.
pub const POD_NAME_LABEL: &str = "statefulset.kubernetes.io/pod-name";
/// `apps.PodIndexLabel` (PodIndexLabel, GA in v1.32).
pub const POD_INDEX_LABEL: &str = "apps.kubernetes.io/pod-index";

/// Which revision a new pod is made at.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum At {
    Current,
    Update,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    /// Create the pod of this ordinal.
    Create(i32, At),
    /// Delete a pod: failed or succeeded (to be recreated), condemned by a
    /// scale-down, or at an old revision (rolling update).
    Delete(String),
    /// Give a pod its identity labels.
    Relabel(String, i32),
}

/// The StatefulSet as the rules see it.
pub struct Input<'a> {
    pub name: &'a str,
    pub replicas: i32,
    /// `spec.ordinals.start`.
    pub start: i32,
    /// OrderedReady (not Parallel).
    pub monotonic: bool,
    /// `updateStrategy.type` RollingUpdate.
    pub rolling: bool,
    /// `updateStrategy.rollingUpdate.partition`; `None` without `rollingUpdate`.
    pub partition: Option<i32>,
    pub status_current_replicas: i32,
    pub min_ready_seconds: i32,
    pub update_revision: &'a str,
    pub deleting: bool,
}

/// `getParentNameAndOrdinal`: the ordinal of `<set>-<n>`, if the pod is one.
pub fn ordinal(set: &str, pod_name: &str) -> Option<i32> {
    let (parent, n) = pod_name.rsplit_once('-')?;
    if parent != set || n.is_empty() || !n.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    n.parse().ok()
}

pub fn revision_of(pod: &Pod) -> &str {
    pod.metadata.labels.as_ref().and_then(|l| l.get(REVISION_LABEL)).map(String::as_str).unwrap_or_default()
}

fn terminating(pod: &Pod) -> bool {
    pod.metadata.deletion_timestamp.is_some()
}

/// `isRunningAndReady`.
pub fn running_and_ready(pod: &Pod) -> bool {
    util::pod_phase(pod) == "Running" && util::is_pod_ready(pod)
}

/// `isRunningAndAvailable`.
pub fn running_and_available(pod: &Pod, min_ready: i32) -> bool {
    util::pod_phase(pod) == "Running" && util::is_pod_available(pod, min_ready)
}

/// `isUnavailable`: not healthy (running, ready, not terminating) or not available.
fn unavailable(pod: &Pod, min_ready: i32) -> bool {
    !(running_and_ready(pod) && !terminating(pod) && running_and_available(pod, min_ready))
}

fn name(pod: &Pod) -> String {
    pod.metadata.name.clone().unwrap_or_default()
}

/// `identityMatches` (the labels; name, namespace, hostname and subdomain are
/// set at creation and cannot change on a pod).
fn identity_matches(pod: &Pod, ord: i32) -> bool {
    let labels = pod.metadata.labels.as_ref();
    let label = |k: &str| labels.and_then(|l| l.get(k)).map(String::as_str);
    label(POD_NAME_LABEL) == pod.metadata.name.as_deref() && label(POD_INDEX_LABEL) == Some(&ord.to_string())
}

/// `newVersionedStatefulSetPod`'s choice, with upstream's operator precedence:
/// below the partition (or, without `rollingUpdate`, below the current
/// replica count) a missing pod comes back at the current revision.
pub fn revision_for(inp: &Input, ord: i32) -> At {
    let below_current = inp.rolling && inp.partition.is_none() && ord < inp.start + inp.status_current_replicas;
    let below_partition = inp.partition.is_some_and(|p| ord < inp.start + p);
    if below_current || below_partition {
        At::Current
    } else {
        At::Update
    }
}

enum Slot {
    Pod(Arc<Pod>),
    Missing(At),
}

/// The actions of one sync, in order, and how much `currentReplicas` drops
/// (a pod deleted for the update no longer counts).
pub fn plan(inp: &Input, pods: &[Arc<Pod>]) -> (Vec<Action>, i32) {
    let count = inp.replicas.max(0) as usize;
    let mut slots: Vec<Option<Arc<Pod>>> = vec![None; count];
    let mut condemned: Vec<(i32, Arc<Pod>)> = Vec::new();
    for p in pods {
        let Some(ord) = ordinal(inp.name, &name(p)) else { continue };
        let idx = ord - inp.start;
        if idx >= 0 && (idx as usize) < count {
            slots[idx as usize] = Some(p.clone());
        } else {
            condemned.push((ord, p.clone()));
        }
    }
    let slots: Vec<Slot> = slots
        .into_iter()
        .enumerate()
        .map(|(i, p)| match p {
            Some(p) => Slot::Pod(p),
            None => Slot::Missing(revision_for(inp, inp.start + i as i32)),
        })
        .collect();
    condemned.sort_by_key(|c| std::cmp::Reverse(c.0));
    let min_ready = inp.min_ready_seconds;
    // The first unhealthy pod: in the range first, else the lowest condemned one.
    let first_unhealthy: Option<String> = slots
        .iter()
        .enumerate()
        .find_map(|(i, s)| match s {
            Slot::Missing(_) => Some(format!("{}-{}", inp.name, inp.start + i as i32)),
            Slot::Pod(p) => unavailable(p, min_ready).then(|| name(p)),
        })
        .or_else(|| condemned.iter().rev().find(|(_, p)| unavailable(p, min_ready)).map(|(_, p)| name(p)));
    let mut actions = Vec::new();
    if inp.deleting {
        return (actions, 0);
    }
    let mono = inp.monotonic;
    for (i, slot) in slots.iter().enumerate() {
        let ord = inp.start + i as i32;
        match slot {
            Slot::Missing(at) => {
                actions.push(Action::Create(ord, *at));
                if mono {
                    return (actions, 0);
                }
            }
            Slot::Pod(p) if util::is_pod_terminal(p) => {
                if !terminating(p) {
                    actions.push(Action::Delete(name(p)));
                }
                if mono {
                    return (actions, 0);
                }
            }
            Slot::Pod(p) => {
                if mono && (terminating(p) || !running_and_ready(p) || !running_and_available(p, min_ready)) {
                    return (actions, 0);
                }
                if !identity_matches(p, ord) {
                    actions.push(Action::Relabel(name(p), ord));
                }
            }
        }
    }
    for (_, p) in &condemned {
        if terminating(p) {
            if mono {
                return (actions, 0);
            }
            continue;
        }
        let first = first_unhealthy.as_deref() == p.metadata.name.as_deref();
        if mono && !first && (!running_and_ready(p) || !running_and_available(p, min_ready)) {
            return (actions, 0);
        }
        actions.push(Action::Delete(name(p)));
        if mono {
            return (actions, 0);
        }
    }
    if !inp.rolling {
        // OnDelete: pods are replaced when the user deletes them.
        return (actions, 0);
    }
    let update_min = inp.partition.unwrap_or(0).max(0) as usize;
    for target in (update_min..slots.len()).rev() {
        let Slot::Pod(p) = &slots[target] else {
            // Just created: not available yet.
            return (actions, 0);
        };
        if revision_of(p) != inp.update_revision && !terminating(p) {
            actions.push(Action::Delete(name(p)));
            return (actions, 1);
        }
        if unavailable(p, min_ready) {
            return (actions, 0);
        }
    }
    (actions, 0)
}

/// `computeReplicaStatus` over the set's pods: (replicas, ready, available,
/// current, updated).
pub fn counts(pods: &[Arc<Pod>], min_ready: i32, current: &str, update: &str) -> (i32, i32, i32, i32, i32) {
    let (mut replicas, mut ready, mut available, mut cur, mut upd) = (0, 0, 0, 0, 0);
    for p in pods {
        // `isCreated`: every stored pod has a phase.
        replicas += 1;
        if running_and_ready(p) {
            ready += 1;
            if running_and_available(p, min_ready) {
                available += 1;
            }
        }
        if !terminating(p) {
            if revision_of(p) == current {
                cur += 1;
            }
            if revision_of(p) == update {
                upd += 1;
            }
        }
    }
    (replicas, ready, available, cur, upd)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn pod(name: &str, rev: &str, ready: bool, deleting: bool) -> Arc<Pod> {
        let ord = name.rsplit('-').next().unwrap_or_default();
        let mut v = json!({"metadata": {"name": name, "namespace": "default",
            "labels": {REVISION_LABEL: rev, POD_NAME_LABEL: name, POD_INDEX_LABEL: ord}},
            "spec": {"containers": []},
            "status": {"phase": "Running", "conditions": [{"type": "Ready", "status": if ready { "True" } else { "False" }}]}});
        if deleting {
            v["metadata"]["deletionTimestamp"] = json!("2024-06-01T00:00:00Z");
        }
        Arc::new(serde_json::from_value(v).unwrap())
    }

    fn input(replicas: i32, monotonic: bool) -> Input<'static> {
        Input {
            name: "web",
            replicas,
            start: 0,
            monotonic,
            rolling: true,
            partition: Some(0),
            status_current_replicas: 0,
            min_ready_seconds: 0,
            update_revision: "web-new",
            deleting: false,
        }
    }

    #[test]
    fn ordinals() {
        assert_eq!(ordinal("web", "web-0"), Some(0));
        assert_eq!(ordinal("web", "web-12"), Some(12));
        assert_eq!(ordinal("web", "web-x"), None);
        assert_eq!(ordinal("web", "other-1"), None);
        assert_eq!(ordinal("my-web", "my-web-3"), Some(3));
    }

    #[test]
    fn ordered_ready_creates_one_at_a_time() {
        let inp = input(3, true);
        assert_eq!(plan(&inp, &[]).0, vec![Action::Create(0, At::Update)]);
        // web-0 not ready yet: wait.
        assert!(plan(&inp, &[pod("web-0", "web-new", false, false)]).0.is_empty());
        assert_eq!(plan(&inp, &[pod("web-0", "web-new", true, false)]).0, vec![Action::Create(1, At::Update)]);
        // Parallel: all at once.
        assert_eq!(
            plan(&input(3, false), &[]).0,
            vec![Action::Create(0, At::Update), Action::Create(1, At::Update), Action::Create(2, At::Update)]
        );
    }

    #[test]
    fn scale_down_from_the_highest_ordinal() {
        let pods: Vec<Arc<Pod>> = (0..3).map(|i| pod(&format!("web-{i}"), "web-new", true, false)).collect();
        assert_eq!(plan(&input(1, true), &pods).0, vec![Action::Delete("web-2".into())]);
        // While web-2 terminates, web-1 waits.
        let mut p = pods.clone();
        p[2] = pod("web-2", "web-new", true, true);
        assert!(plan(&input(1, true), &p).0.is_empty());
        // Parallel deletes both.
        assert_eq!(
            plan(&input(1, false), &pods).0,
            vec![Action::Delete("web-2".into()), Action::Delete("web-1".into())]
        );
        // A failed pod in range is deleted (then recreated).
        let mut f = pods[..1].to_vec();
        let mut failed = (*f[0]).clone();
        failed.status.as_mut().unwrap().phase = Some("Failed".into());
        f[0] = Arc::new(failed);
        assert_eq!(plan(&input(1, true), &f).0, vec![Action::Delete("web-0".into())]);
    }

    #[test]
    fn rolling_update_goes_down_to_the_partition() {
        let old: Vec<Arc<Pod>> = (0..3).map(|i| pod(&format!("web-{i}"), "web-old", true, false)).collect();
        assert_eq!(plan(&input(3, true), &old), (vec![Action::Delete("web-2".into())], 1));
        // web-2 recreated at the new revision but not ready: wait.
        let mut p = old.clone();
        p[2] = pod("web-2", "web-new", false, false);
        assert!(plan(&input(3, true), &p).0.is_empty());
        p[2] = pod("web-2", "web-new", true, false);
        assert_eq!(plan(&input(3, true), &p).0, vec![Action::Delete("web-1".into())]);
        // Partition 2: web-1 and web-0 stay at the old revision, and come back at it.
        let mut part = input(3, true);
        part.partition = Some(2);
        assert!(plan(&part, &p).0.is_empty());
        assert_eq!(revision_for(&part, 1), At::Current);
        assert_eq!(revision_for(&part, 2), At::Update);
        // OnDelete: nothing is replaced.
        let mut od = input(3, true);
        od.rolling = false;
        od.partition = None;
        assert!(plan(&od, &old).0.is_empty());
    }

    #[test]
    fn status_counts() {
        let pods = vec![
            pod("web-0", "web-old", true, false),
            pod("web-1", "web-new", false, false),
            pod("web-2", "web-new", true, true),
        ];
        assert_eq!(counts(&pods, 0, "web-old", "web-new"), (3, 2, 2, 1, 1));
    }
}
