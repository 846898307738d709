//! DaemonSet controller (upstream `pkg/controller/daemon/daemon_controller.go`,
//! `update.go`, `util/daemonset_util.go`): one pod per node the DaemonSet should
//! run on (node name, node selector and required node affinity, taints against
//! the template's tolerations plus the ones upstream adds to every daemon pod).
//! Pods are not bound here: each carries a required node affinity
//! `metadata.name In [<node>]` and the scheduler binds it. Pods carry the
//! `controller-revision-hash` of the template (ControllerRevisions in `history`)
//! and `pod-template-generation`. RollingUpdate replaces old pods within
//! `maxUnavailable` (or surges within `maxSurge`); OnDelete waits for the user
//! to delete them. Status as `updateDaemonSetStatus`.

use crate::events::{Recorder, NORMAL, WARNING};
use crate::informer::Key;
use crate::queue::{resync, run_workers, Queue};
use crate::replicaset::Expectations;
use crate::{deployment, metrics, podcontrol, scheduler, util, Ctx, SyncError};
use k8s_openapi::api::apps::v1::{DaemonSet, DaemonSetStatus};
use k8s_openapi::api::core::v1::{
    Affinity, Node, NodeAffinity, NodeSelector, NodeSelectorRequirement, NodeSelectorTerm, Pod, PodSpec, Taint,
    Toleration,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use kube::api::{Api, DeleteParams, ObjectMeta, PostParams};
use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;
use std::time::Duration;
use tokio::task::JoinHandle;

const COMPONENT: &str = "daemonset-controller";
/// `apps.ControllerRevisionHashLabelKey` (`DefaultDaemonSetUniqueLabelKey`).
pub const HASH_LABEL: &str = "controller-revision-hash";
/// `extensions.DaemonSetTemplateGenerationKey`.
pub const GENERATION_LABEL: &str = "pod-template-generation";
const GENERATION_ANNOTATION: &str = apimachinery::daemonset::TEMPLATE_GENERATION_ANNOTATION;
/// Upstream `BurstReplicas`.
const BURST_REPLICAS: usize = 250;

pub fn start(ctx: &Ctx, tasks: &mut Vec<JoinHandle<()>>) {
    let (recorder, rec_task) = Recorder::new(ctx.client.clone(), COMPONENT);
    tasks.push(rec_task);
    let c = Arc::new(Dsc {
        client: ctx.client.clone(),
        inf: ctx.inf.clone(),
        queue: Queue::new(metrics::register("daemonset")),
        exp: Expectations::default(),
        recorder,
    });
    ctx.inf.daemonsets.on_change_weak(&c, |h, old, new| h.on_ds(old, new));
    ctx.inf.pods.on_change_weak(&c, |h, old, new| h.on_pod(old, new));
    ctx.inf.nodes.on_change_weak(&c, |h, old, new| h.on_node(old, new));
    let (workers, period) = (ctx.config.workers, ctx.config.resync_period);
    tasks.push(tokio::spawn(async move {
        c.inf.wait_ready().await;
        tracing::debug!(controller = c.queue.name(), "caches synced, starting workers");
        let k = c.clone();
        let keys = move || k.inf.daemonsets.list().iter().map(|d| Key::of(&**d)).collect();
        let s = c.clone();
        let sync = move |key: Key| {
            let s = s.clone();
            async move { s.sync(&key).await }
        };
        tokio::join!(run_workers(c.queue.clone(), workers, sync), resync(c.queue.clone(), period, keys));
    }));
}

// ---- pure rules ----

fn toleration(key: &str, effect: &str) -> Toleration {
    Toleration {
        key: Some(key.into()),
        operator: Some("Exists".into()),
        effect: Some(effect.into()),
        value: None,
        toleration_seconds: None,
    }
}

/// `AddOrUpdateDaemonPodTolerations`: every daemon pod tolerates the node
/// conditions a node agent reports and cordoning.
pub(crate) fn add_daemon_tolerations(spec: &mut PodSpec) {
    let mut add = vec![
        toleration("node.kubernetes.io/not-ready", "NoExecute"),
        toleration("node.kubernetes.io/unreachable", "NoExecute"),
        toleration("node.kubernetes.io/disk-pressure", "NoSchedule"),
        toleration("node.kubernetes.io/memory-pressure", "NoSchedule"),
        toleration("node.kubernetes.io/pid-pressure", "NoSchedule"),
        toleration("node.kubernetes.io/unschedulable", "NoSchedule"),
    ];
    if spec.host_network == Some(true) {
        add.push(toleration("node.kubernetes.io/network-unavailable", "NoSchedule"));
    }
    let tolerations = spec.tolerations.get_or_insert_with(Vec::new);
    for t in add {
        // `AddOrUpdateTolerationInPodSpec`: replace one with the same key and effect.
        match tolerations.iter_mut().find(|x| x.key == t.key && x.effect == t.effect) {
            Some(x) => *x = t,
            None => tolerations.push(t),
        }
    }
}

/// `ReplaceDaemonSetPodNodeNameNodeAffinity`, keeping the template's
/// `matchExpressions` in each term so that the scheduler checks them too.
pub(crate) fn node_name_affinity(affinity: Option<Affinity>, node: &str) -> Affinity {
    let name = NodeSelectorRequirement {
        key: "metadata.name".into(),
        operator: "In".into(),
        values: Some(vec![node.to_string()]),
    };
    let mut affinity = affinity.unwrap_or_default();
    let na = affinity.node_affinity.get_or_insert_with(NodeAffinity::default);
    let terms: Vec<NodeSelectorTerm> = na
        .required_during_scheduling_ignored_during_execution
        .take()
        .map(|s| s.node_selector_terms)
        .unwrap_or_default()
        .into_iter()
        .filter(|t| t.match_expressions.as_ref().is_some_and(|e| !e.is_empty()))
        .map(|t| NodeSelectorTerm { match_expressions: t.match_expressions, match_fields: Some(vec![name.clone()]) })
        .collect();
    let terms = if terms.is_empty() {
        vec![NodeSelectorTerm { match_expressions: None, match_fields: Some(vec![name]) }]
    } else {
        terms
    };
    na.required_during_scheduling_ignored_during_execution = Some(NodeSelector { node_selector_terms: terms });
    affinity
}

/// The template as a pod, with the daemon tolerations (what the predicates see).
fn template_pod(ds: &DaemonSet) -> Pod {
    let template = ds.spec.as_ref().map(|s| s.template.clone()).unwrap_or_default();
    let mut spec = template.spec.unwrap_or_default();
    add_daemon_tolerations(&mut spec);
    Pod { metadata: template.metadata.unwrap_or_default(), spec: Some(spec), status: None }
}

/// `NodeShouldRunDaemonPod`: (should run, should continue running).
pub(crate) fn should_run(pod: &Pod, node: &Node) -> (bool, bool) {
    let node_name = node.metadata.name.as_deref().unwrap_or_default();
    let spec = pod.spec.as_ref();
    if let Some(n) = spec.and_then(|s| s.node_name.as_deref()).filter(|n| !n.is_empty()) {
        if n != node_name {
            return (false, false);
        }
    }
    if !scheduler::affinity_matches(pod, node) {
        return (false, false);
    }
    let tolerations: &[Toleration] = spec.and_then(|s| s.tolerations.as_deref()).unwrap_or_default();
    let untolerated = |t: &Taint| !tolerations.iter().any(|x| scheduler::tolerates(x, t));
    let taints = node.spec.as_ref().and_then(|s| s.taints.clone()).unwrap_or_default();
    let fits = !taints.iter().any(|t| (t.effect == "NoSchedule" || t.effect == "NoExecute") && untolerated(t));
    if !fits {
        let keep = !taints.iter().any(|t| t.effect == "NoExecute" && untolerated(t));
        return (false, keep);
    }
    (true, true)
}

fn template_generation(ds: &DaemonSet) -> Option<String> {
    ds.metadata.annotations.as_ref().and_then(|a| a.get(GENERATION_ANNOTATION)).cloned()
}

/// The hash of the current template (`controller-revision-hash`).
pub(crate) fn template_hash(ds: &DaemonSet) -> String {
    let spec = ds.spec.clone().unwrap_or_default();
    deployment::compute_hash(&spec.template, ds.status.as_ref().and_then(|s| s.collision_count))
}

/// `IsPodUpdated`: the pod has the current hash or template generation.
fn is_updated(pod: &Pod, hash: &str, generation: Option<&str>) -> bool {
    let labels = pod.metadata.labels.as_ref();
    let label = |k: &str| labels.and_then(|l| l.get(k)).map(String::as_str);
    label(HASH_LABEL) == Some(hash) || (generation.is_some() && label(GENERATION_LABEL) == generation)
}

/// The node a daemon pod is for: `spec.nodeName`, else its node-name affinity
/// (`util.GetTargetNodeName`).
pub(crate) fn target_node(pod: &Pod) -> Option<String> {
    let spec = pod.spec.as_ref()?;
    if let Some(n) = spec.node_name.as_ref().filter(|n| !n.is_empty()) {
        return Some(n.clone());
    }
    let terms = &spec
        .affinity
        .as_ref()?
        .node_affinity
        .as_ref()?
        .required_during_scheduling_ignored_during_execution
        .as_ref()?
        .node_selector_terms;
    terms.iter().flat_map(|t| t.match_fields.iter().flatten()).find_map(|r| {
        (r.key == "metadata.name" && r.operator == "In" && r.values.as_ref().is_some_and(|v| v.len() == 1))
            .then(|| r.values.as_ref().and_then(|v| v.first().cloned()))
            .flatten()
    })
}

/// `podByCreationTimestampAndPhase`: running before not running, then oldest first.
fn sort_pods(pods: &mut [Arc<Pod>]) {
    pods.sort_by(|a, b| {
        let (ra, rb) = (util::pod_phase(a) == "Running", util::pod_phase(b) == "Running");
        rb.cmp(&ra)
            .then_with(|| a.metadata.creation_timestamp.cmp(&b.metadata.creation_timestamp))
            .then_with(|| a.metadata.name.cmp(&b.metadata.name))
    });
}

type NodePods = BTreeMap<String, Vec<Arc<Pod>>>;
/// A node's up-to-date and old daemon pod.
type NewAndOld = (Option<Arc<Pod>>, Option<Arc<Pod>>);

/// What one sync does on nodes: pods to create (node names) and to delete (pod names).
#[derive(Debug, Default, PartialEq)]
pub(crate) struct Plan {
    pub create: Vec<String>,
    pub delete: Vec<String>,
}

/// `manage`'s `podsShouldBeOnNode` over every node, plus daemon pods of nodes that
/// no longer exist.
fn manage_plan(ds: &DaemonSet, nodes: &[Arc<Node>], by_node: &NodePods, hash: &str) -> Plan {
    let tmpl = template_pod(ds);
    let surge = max_surge_configured(ds);
    let min_ready = ds.spec.as_ref().and_then(|s| s.min_ready_seconds).unwrap_or(0);
    let mut plan = Plan::default();
    let mut names = HashSet::new();
    for node in nodes {
        let name = node.metadata.name.clone().unwrap_or_default();
        names.insert(name.clone());
        let (run, keep) = should_run(&tmpl, node);
        let pods = by_node.get(&name).cloned().unwrap_or_default();
        if run && pods.is_empty() {
            plan.create.push(name);
            continue;
        }
        if !keep {
            plan.delete.extend(
                pods.iter().filter(|p| p.metadata.deletion_timestamp.is_none()).filter_map(|p| p.metadata.name.clone()),
            );
            continue;
        }
        let mut running = Vec::new();
        for p in pods {
            if p.metadata.deletion_timestamp.is_some() {
                continue;
            }
            if util::pod_phase(&p) == "Failed" {
                plan.delete.extend(p.metadata.name.clone());
            } else {
                running.push(p);
            }
        }
        // Failed pods are deleted; their replacement comes with the next sync.
        if running.len() <= 1 {
            continue;
        }
        sort_pods(&mut running);
        if !surge {
            plan.delete.extend(running[1..].iter().filter_map(|p| p.metadata.name.clone()));
            continue;
        }
        // Surge: keep the oldest new pod and, while it is not available, the oldest ready old one.
        let (mut new_pod, mut old_pod) = (None, None);
        for p in &running {
            let updated = is_updated(p, hash, template_generation(ds).as_deref());
            if updated && new_pod.is_none() {
                new_pod = Some(p.clone());
            } else if !updated && old_pod.is_none() {
                old_pod = Some(p.clone());
            } else {
                plan.delete.extend(p.metadata.name.clone());
            }
        }
        if let (Some(n), Some(o)) = (new_pod, old_pod) {
            if !util::is_pod_ready(&o) || util::is_pod_available(&n, min_ready) {
                plan.delete.extend(o.metadata.name.clone());
            }
        }
    }
    for (node, pods) in by_node {
        if !names.contains(node) {
            plan.delete.extend(
                pods.iter().filter(|p| p.metadata.deletion_timestamp.is_none()).filter_map(|p| p.metadata.name.clone()),
            );
        }
    }
    plan
}

fn is_rolling(ds: &DaemonSet) -> bool {
    ds.spec
        .as_ref()
        .and_then(|s| s.update_strategy.as_ref())
        .and_then(|s| s.type_.as_deref())
        .unwrap_or("RollingUpdate")
        == "RollingUpdate"
}

fn rolling(ds: &DaemonSet) -> Option<&k8s_openapi::api::apps::v1::RollingUpdateDaemonSet> {
    ds.spec.as_ref()?.update_strategy.as_ref()?.rolling_update.as_ref()
}

/// `AllowsSurge`: RollingUpdate with a non-zero maxSurge.
fn max_surge_configured(ds: &DaemonSet) -> bool {
    is_rolling(ds) && deployment::scaled_value(rolling(ds).and_then(|r| r.max_surge.as_ref()), 100, true) != 0
}

/// `updatedDesiredNodeCounts`: (maxSurge, maxUnavailable) against the number of
/// nodes that should run the pod; both round up, and 0/0 becomes 0/1.
pub(crate) fn rolling_budget(ds: &DaemonSet, desired: i32) -> (i32, i32) {
    let ru = rolling(ds);
    let surge = deployment::scaled_value(ru.and_then(|r| r.max_surge.as_ref()), desired, true);
    let mut unavailable = deployment::scaled_value(ru.and_then(|r| r.max_unavailable.as_ref()), desired, true);
    if desired > 0 && surge == 0 && unavailable == 0 {
        unavailable = 1;
    }
    (surge, unavailable)
}

/// `findUpdatedPodsOnNode`: the node's (new, old) pod, `None` if there are several of either.
fn updated_and_old(pods: &[Arc<Pod>], hash: &str, generation: Option<&str>) -> Option<NewAndOld> {
    let (mut new_pod, mut old_pod): (Option<Arc<Pod>>, Option<Arc<Pod>>) = (None, None);
    for p in pods.iter().filter(|p| p.metadata.deletion_timestamp.is_none()) {
        let slot = if is_updated(p, hash, generation) { &mut new_pod } else { &mut old_pod };
        if slot.is_some() {
            return None;
        }
        *slot = Some(p.clone());
    }
    Some((new_pod, old_pod))
}

/// `rollingUpdate`: which old pods to delete (no surge), or on which nodes to
/// create new pods and which old pods to delete (surge).
pub(crate) fn rolling_plan(ds: &DaemonSet, nodes: &[Arc<Node>], by_node: &NodePods, hash: &str) -> Plan {
    let tmpl = template_pod(ds);
    let runnable: Vec<String> =
        nodes.iter().filter(|n| should_run(&tmpl, n).0).filter_map(|n| n.metadata.name.clone()).collect();
    let (max_surge, max_unavailable) = rolling_budget(ds, runnable.len() as i32);
    let min_ready = ds.spec.as_ref().and_then(|s| s.min_ready_seconds).unwrap_or(0);
    let generation = template_generation(ds);
    let mut plan = Plan::default();
    if max_surge == 0 {
        let mut unavailable = 0;
        let (mut replace, mut candidates) = (Vec::new(), Vec::new());
        for pods in by_node.values() {
            let Some((new_pod, old_pod)) = updated_and_old(pods, hash, generation.as_deref()) else {
                unavailable += 1;
                continue;
            };
            match (new_pod, old_pod) {
                (None, None) | (Some(_), Some(_)) => unavailable += 1,
                (Some(n), None) => {
                    if !util::is_pod_available(&n, min_ready) {
                        unavailable += 1;
                    }
                }
                (None, Some(o)) => {
                    if !util::is_pod_available(&o, min_ready) {
                        replace.extend(o.metadata.name.clone());
                    } else if unavailable < max_unavailable {
                        candidates.extend(o.metadata.name.clone());
                    }
                }
            }
        }
        let remaining = (max_unavailable - unavailable).clamp(0, candidates.len() as i32) as usize;
        plan.delete = replace;
        plan.delete.extend(candidates.into_iter().take(remaining));
        return plan;
    }
    let mut surging = 0;
    let (mut allowed, mut candidates) = (Vec::new(), Vec::new());
    for (node, pods) in by_node {
        let Some((new_pod, old_pod)) = updated_and_old(pods, hash, generation.as_deref()) else {
            surging += 1;
            continue;
        };
        match (new_pod, old_pod) {
            (_, None) => {}
            (None, Some(o)) => {
                if !util::is_pod_available(&o, min_ready) {
                    if runnable.contains(node) {
                        allowed.push(node.clone());
                    }
                } else if surging < max_surge {
                    candidates.push(node.clone());
                }
            }
            (Some(n), Some(o)) => {
                if !util::is_pod_available(&n, min_ready) {
                    surging += 1;
                } else {
                    plan.delete.extend(o.metadata.name.clone());
                }
            }
        }
    }
    let remaining = (max_surge - surging).clamp(0, candidates.len() as i32) as usize;
    plan.create = allowed;
    plan.create.extend(candidates.into_iter().take(remaining));
    plan
}

/// `updateDaemonSetStatus`'s counts.
pub(crate) fn calculate_status(ds: &DaemonSet, nodes: &[Arc<Node>], by_node: &NodePods, hash: &str) -> DaemonSetStatus {
    let tmpl = template_pod(ds);
    let min_ready = ds.spec.as_ref().and_then(|s| s.min_ready_seconds).unwrap_or(0);
    let generation = template_generation(ds);
    let mut st = DaemonSetStatus {
        collision_count: ds.status.as_ref().and_then(|s| s.collision_count),
        conditions: ds.status.as_ref().and_then(|s| s.conditions.clone()),
        ..Default::default()
    };
    let (mut available, mut updated) = (0, 0);
    for node in nodes {
        let name = node.metadata.name.clone().unwrap_or_default();
        let (run, _) = should_run(&tmpl, node);
        let mut pods = by_node.get(&name).cloned().unwrap_or_default();
        if !run {
            if !pods.is_empty() {
                st.number_misscheduled += 1;
            }
            continue;
        }
        st.desired_number_scheduled += 1;
        if pods.is_empty() {
            continue;
        }
        st.current_number_scheduled += 1;
        sort_pods(&mut pods);
        let pod = &pods[0];
        if util::is_pod_ready(pod) {
            st.number_ready += 1;
            if util::is_pod_available(pod, min_ready) {
                available += 1;
            }
        }
        if is_updated(pod, hash, generation.as_deref()) {
            updated += 1;
        }
    }
    st.number_available = Some(available);
    st.updated_number_scheduled = Some(updated);
    st.number_unavailable = Some(st.desired_number_scheduled - available);
    st.observed_generation = ds.metadata.generation;
    st
}

// ---- the controller ----

struct Dsc {
    client: kube::Client,
    inf: Arc<crate::informer::Informers>,
    queue: Arc<Queue>,
    exp: Expectations,
    recorder: Recorder,
}

impl Dsc {
    fn on_ds(&self, old: Option<&DaemonSet>, new: Option<&DaemonSet>) {
        match (old, new) {
            (_, Some(ds)) => self.queue.add(Key::of(ds)),
            (Some(ds), None) => {
                let key = Key::of(ds);
                self.exp.delete(&key);
                self.queue.add(key);
            }
            (None, None) => {}
        }
    }

    fn resolve(&self, namespace: &str, r: &OwnerReference) -> Option<Arc<DaemonSet>> {
        if r.kind != "DaemonSet" {
            return None;
        }
        let ds = self.inf.daemonsets.get(namespace, &r.name)?;
        (ds.metadata.uid.as_deref() == Some(r.uid.as_str())).then_some(ds)
    }

    fn on_pod(&self, old: Option<&Pod>, new: Option<&Pod>) {
        let pod = match (old, new) {
            (_, Some(p)) | (Some(p), None) => p,
            (None, None) => return,
        };
        let ns = pod.metadata.namespace.as_deref().unwrap_or_default();
        if let Some(ds) = util::controller_of(&pod.metadata).and_then(|r| self.resolve(ns, r)) {
            let key = Key::of(&*ds);
            match (old, new) {
                (None, Some(p)) if p.metadata.deletion_timestamp.is_none() => self.exp.creation_observed(&key),
                (Some(o), None) => self.exp.deletion_observed(&key, &Key::of(o)),
                (Some(o), Some(n)) => {
                    if o.metadata.deletion_timestamp.is_none() && n.metadata.deletion_timestamp.is_some() {
                        self.exp.deletion_observed(&key, &Key::of(n));
                    }
                    let min_ready = ds.spec.as_ref().and_then(|s| s.min_ready_seconds).unwrap_or(0);
                    if !util::is_pod_ready(o) && util::is_pod_ready(n) && min_ready > 0 {
                        self.queue.add_after(key.clone(), Duration::from_secs(min_ready as u64 + 1));
                    }
                }
                _ => {}
            }
            self.queue.add(key);
            return;
        }
        if util::controller_of(&pod.metadata).is_none() {
            // An orphan: every DaemonSet selecting it may adopt it.
            for ds in self.inf.daemonsets.list_ns(ns) {
                let sel = ds.spec.as_ref().map(|s| &s.selector);
                if sel.is_some_and(|s| {
                    !util::selector_is_empty(s) && util::selector_matches(s, pod.metadata.labels.as_ref())
                }) {
                    self.queue.add(Key::of(&*ds));
                }
            }
        }
    }

    fn on_node(&self, old: Option<&Node>, new: Option<&Node>) {
        let relevant =
            |n: &Node| (n.metadata.labels.clone(), n.spec.as_ref().map(|s| (s.taints.clone(), s.unschedulable)));
        let changed = match (old, new) {
            (Some(o), Some(n)) => relevant(o) != relevant(n),
            _ => true,
        };
        if changed {
            for ds in self.inf.daemonsets.list() {
                self.queue.add(Key::of(&*ds));
            }
        }
    }

    async fn sync(&self, key: &Key) -> Result<(), SyncError> {
        let Some(ds) = self.inf.daemonsets.get_key(key) else {
            self.exp.delete(key);
            return Ok(());
        };
        let Some(spec) = ds.spec.as_ref() else { return Ok(()) };
        if util::selector_is_empty(&spec.selector) {
            self.recorder.event(
                &*ds,
                WARNING,
                "SelectingAll",
                "This daemon set is selecting all pods. A non-empty selector is required.".into(),
            );
            return Ok(());
        }
        let pods: Vec<Arc<Pod>> = self
            .inf
            .pods
            .list_ns(&key.namespace)
            .into_iter()
            .filter(|p| !(util::is_pod_terminal(p) && p.metadata.deletion_timestamp.is_some()))
            .collect();
        let pods = podcontrol::claim_pods(&self.client, &*ds, "apps/v1", "DaemonSet", &spec.selector, pods).await?;
        let mut by_node: NodePods = BTreeMap::new();
        for p in pods {
            if let Some(n) = target_node(&p) {
                by_node.entry(n).or_default().push(p);
            }
        }
        let mut nodes = self.inf.nodes.list();
        nodes.sort_by(|a, b| a.metadata.name.cmp(&b.metadata.name));
        let hash = template_hash(&ds);
        if ds.metadata.deletion_timestamp.is_some() {
            return self.update_status(&ds, calculate_status(&ds, &nodes, &by_node, &hash)).await;
        }
        let mut result = Ok(());
        if self.exp.satisfied(key) {
            let plan = manage_plan(&ds, &nodes, &by_node, &hash);
            result = self.sync_nodes(&ds, plan, &hash).await;
            if result.is_ok() && is_rolling(&ds) && self.exp.satisfied(key) {
                let plan = rolling_plan(&ds, &nodes, &by_node, &hash);
                result = self.sync_nodes(&ds, plan, &hash).await;
            }
        }
        self.sync_history(&ds, &hash, &by_node).await?;
        self.update_status(&ds, calculate_status(&ds, &nodes, &by_node, &hash)).await?;
        let min_ready = spec.min_ready_seconds.unwrap_or(0);
        if min_ready > 0 {
            self.queue.add_after(key.clone(), Duration::from_secs(min_ready as u64));
        }
        result
    }

    /// `constructHistory` + `cleanupHistory`: the ControllerRevision of the
    /// current template (`kubectl rollout history|undo ds/...`).
    async fn sync_history(&self, ds: &DaemonSet, hash: &str, by_node: &NodePods) -> Result<(), SyncError> {
        let (Some(name), Some(ns), Some(uid)) = (&ds.metadata.name, &ds.metadata.namespace, &ds.metadata.uid) else {
            return Ok(());
        };
        let Some(spec) = ds.spec.as_ref() else { return Ok(()) };
        let template = serde_json::to_value(&spec.template).map_err(|e| SyncError::from(e.to_string()))?;
        let in_use: Vec<String> = by_node
            .values()
            .flatten()
            .filter_map(|p| p.metadata.labels.as_ref().and_then(|l| l.get(HASH_LABEL)).cloned())
            .collect();
        let api: Api<k8s_openapi::api::apps::v1::ControllerRevision> = Api::namespaced(self.client.clone(), ns);
        let current = crate::history::Current {
            owner: OwnerReference {
                api_version: "apps/v1".into(),
                kind: "DaemonSet".into(),
                name: name.clone(),
                uid: uid.clone(),
                controller: Some(true),
                block_owner_deletion: Some(true),
            },
            name: format!("{name}-{hash}"),
            hash,
            labels: spec.template.metadata.as_ref().and_then(|m| m.labels.clone()).unwrap_or_default(),
            change_cause: ds.metadata.annotations.as_ref().and_then(|a| a.get("kubernetes.io/change-cause")).cloned(),
            data: crate::history::template_patch(&template),
            history_limit: spec.revision_history_limit.unwrap_or(10).max(0) as usize,
        };
        crate::history::sync(&api, current, &in_use).await?;
        Ok(())
    }

    /// `syncNodes`: create the pods of `plan.create`, delete `plan.delete`.
    async fn sync_nodes(&self, ds: &DaemonSet, mut plan: Plan, hash: &str) -> Result<(), SyncError> {
        if plan.create.is_empty() && plan.delete.is_empty() {
            return Ok(());
        }
        let key = Key::of(ds);
        plan.create.truncate(BURST_REPLICAS);
        plan.delete.truncate(BURST_REPLICAS);
        let api: Api<Pod> = Api::namespaced(self.client.clone(), &key.namespace);
        let mut first_err: Option<SyncError> = None;
        if !plan.create.is_empty() {
            self.exp.expect_creations(&key, plan.create.len());
            let results =
                futures::future::join_all(plan.create.iter().map(|node| self.create_pod(&api, ds, node, hash))).await;
            for r in results {
                if let Err(e) = r {
                    self.exp.creation_observed(&key);
                    first_err.get_or_insert(e);
                }
            }
        }
        if !plan.delete.is_empty() {
            let keys = plan.delete.iter().map(|n| Key::new(&key.namespace, n)).collect();
            self.exp.expect_deletions(&key, keys);
            let results = futures::future::join_all(plan.delete.iter().map(|name| {
                let api = api.clone();
                async move { (name, api.delete(name, &DeleteParams::default()).await) }
            }))
            .await;
            for (name, r) in results {
                match r {
                    Ok(_) => self.recorder.event(ds, NORMAL, "SuccessfulDelete", format!("Deleted pod: {name}")),
                    Err(e) => {
                        self.exp.deletion_observed(&key, &Key::new(&key.namespace, name));
                        if !util::is_not_found(&e) {
                            self.recorder.event(
                                ds,
                                WARNING,
                                "FailedDelete",
                                format!("Error deleting: {}", util::api_message(&e)),
                            );
                            first_err.get_or_insert(e.into());
                        }
                    }
                }
            }
        }
        match first_err {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }

    async fn create_pod(&self, api: &Api<Pod>, ds: &DaemonSet, node: &str, hash: &str) -> Result<(), SyncError> {
        let key = Key::of(ds);
        let template = ds.spec.as_ref().map(|s| s.template.clone()).unwrap_or_default();
        let tmeta = template.metadata.unwrap_or_default();
        let mut labels = tmeta.labels.unwrap_or_default();
        labels.insert(HASH_LABEL.into(), hash.to_string());
        if let Some(g) = template_generation(ds) {
            labels.insert(GENERATION_LABEL.into(), g);
        }
        let mut spec = template.spec.unwrap_or_default();
        add_daemon_tolerations(&mut spec);
        spec.affinity = Some(node_name_affinity(spec.affinity.take(), node));
        let pod = Pod {
            metadata: ObjectMeta {
                generate_name: Some(format!("{}-", key.name)),
                namespace: Some(key.namespace.clone()),
                labels: Some(labels),
                annotations: tmeta.annotations,
                finalizers: tmeta.finalizers,
                owner_references: Some(vec![util::new_controller_ref(&ds.metadata, "apps/v1", "DaemonSet")]),
                ..Default::default()
            },
            spec: Some(spec),
            status: None,
        };
        match api.create(&PostParams::default(), &pod).await {
            Ok(p) => {
                let name = p.metadata.name.unwrap_or_default();
                self.recorder.event(ds, NORMAL, "SuccessfulCreate", format!("Created pod: {name}"));
                Ok(())
            }
            Err(e) if util::is_namespace_terminating(&e) => Ok(()),
            Err(e) => {
                self.recorder.event(ds, WARNING, "FailedCreate", format!("Error creating: {}", util::api_message(&e)));
                Err(e.into())
            }
        }
    }

    async fn update_status(&self, ds: &DaemonSet, st: DaemonSetStatus) -> Result<(), SyncError> {
        if ds.status.as_ref() == Some(&st) {
            return Ok(());
        }
        let key = Key::of(ds);
        let api: Api<DaemonSet> = Api::namespaced(self.client.clone(), &key.namespace);
        let mut obj = ds.clone();
        obj.status = Some(st.clone());
        match api.replace_status(&key.name, &PostParams::default(), &obj).await {
            Ok(_) => Ok(()),
            Err(e) if util::is_not_found(&e) => Ok(()),
            Err(e) if util::is_conflict(&e) => {
                let mut fresh = api.get(&key.name).await?;
                fresh.status = Some(st);
                api.replace_status(&key.name, &PostParams::default(), &fresh).await?;
                Ok(())
            }
            Err(e) => Err(e.into()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn node(name: &str, extra: serde_json::Value) -> Arc<Node> {
        let mut v = json!({"metadata": {"name": name, "labels": {"kubernetes.io/hostname": name}},
            "status": {"conditions": [{"type": "Ready", "status": "True"}]}});
        if let Some(spec) = extra.get("spec") {
            v["spec"] = spec.clone();
        }
        if let Some(labels) = extra.get("labels").and_then(|l| l.as_object()) {
            for (k, val) in labels {
                v["metadata"]["labels"][k] = val.clone();
            }
        }
        Arc::new(serde_json::from_value(v).expect("node"))
    }

    fn ds(strategy: serde_json::Value) -> DaemonSet {
        serde_json::from_value(json!({
            "metadata": {"name": "ds", "namespace": "default", "uid": "u", "generation": 1,
                "annotations": {GENERATION_ANNOTATION: "1"}},
            "spec": {"selector": {"matchLabels": {"app": "d"}}, "updateStrategy": strategy,
                "template": {"metadata": {"labels": {"app": "d"}}, "spec": {"containers": [{"name": "c", "image": "pause"}]}}}
        }))
        .expect("ds")
    }

    fn pod(name: &str, node: &str, hash: &str, ready: bool, age: i64) -> Arc<Pod> {
        let created = k8s_openapi::jiff::Timestamp::now() - k8s_openapi::jiff::SignedDuration::from_secs(age);
        Arc::new(
            serde_json::from_value(json!({
                "metadata": {"name": name, "namespace": "default", "labels": {"app": "d", HASH_LABEL: hash},
                    "creationTimestamp": created.to_string()},
                "spec": {"nodeName": node, "containers": []},
                "status": {"phase": "Running", "conditions": [{"type": "Ready", "status": if ready { "True" } else { "False" }}]}
            }))
            .expect("pod"),
        )
    }

    #[test]
    fn eligibility_selectors_and_taints() {
        let d = ds(json!({"type": "RollingUpdate"}));
        let tmpl = template_pod(&d);
        assert_eq!(should_run(&tmpl, &node("n1", json!({}))), (true, true));
        // Default daemon tolerations: cordoned and not-ready nodes still run it.
        let cordoned = node(
            "n2",
            json!({"spec": {"unschedulable": true, "taints": [
            {"key": "node.kubernetes.io/unschedulable", "effect": "NoSchedule"},
            {"key": "node.kubernetes.io/not-ready", "effect": "NoExecute"}]}}),
        );
        assert_eq!(should_run(&tmpl, &cordoned), (true, true));
        // A NoSchedule taint not tolerated: don't start, but keep running.
        let tainted =
            node("n3", json!({"spec": {"taints": [{"key": "dedicated", "value": "db", "effect": "NoSchedule"}]}}));
        assert_eq!(should_run(&tmpl, &tainted), (false, true));
        let evicting = node("n4", json!({"spec": {"taints": [{"key": "dedicated", "effect": "NoExecute"}]}}));
        assert_eq!(should_run(&tmpl, &evicting), (false, false));
        // Tolerated by the template.
        let mut tol = d.clone();
        tol.spec.as_mut().unwrap().template.spec.as_mut().unwrap().tolerations = Some(vec![Toleration {
            key: Some("dedicated".into()),
            operator: Some("Exists".into()),
            ..Default::default()
        }]);
        assert_eq!(should_run(&template_pod(&tol), &evicting), (true, true));
        // Node selector and required node affinity.
        let mut sel = d.clone();
        sel.spec.as_mut().unwrap().template.spec.as_mut().unwrap().node_selector =
            Some([("disk".to_string(), "ssd".to_string())].into());
        assert_eq!(should_run(&template_pod(&sel), &node("n1", json!({}))), (false, false));
        assert_eq!(should_run(&template_pod(&sel), &node("n5", json!({"labels": {"disk": "ssd"}}))), (true, true));
        // Host network pods tolerate network-unavailable.
        let mut spec = PodSpec { host_network: Some(true), ..Default::default() };
        add_daemon_tolerations(&mut spec);
        assert_eq!(spec.tolerations.as_ref().map(Vec::len), Some(7));
        add_daemon_tolerations(&mut spec);
        assert_eq!(spec.tolerations.as_ref().map(Vec::len), Some(7), "no duplicates");
    }

    #[test]
    fn node_affinity_targets_the_node() {
        let a = node_name_affinity(None, "n1");
        let p = Pod { spec: Some(PodSpec { affinity: Some(a), ..Default::default() }), ..Default::default() };
        assert_eq!(target_node(&p).as_deref(), Some("n1"));
        assert!(scheduler::affinity_matches(&p, &node("n1", json!({}))));
        assert!(!scheduler::affinity_matches(&p, &node("n2", json!({}))));
        // Template expressions are kept in each term.
        let with_expr: Affinity =
            serde_json::from_value(json!({"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution":
            {"nodeSelectorTerms": [{"matchExpressions": [{"key": "disk", "operator": "In", "values": ["ssd"]}]}]}}}))
            .unwrap();
        let a = node_name_affinity(Some(with_expr), "n5");
        let p = Pod { spec: Some(PodSpec { affinity: Some(a), ..Default::default() }), ..Default::default() };
        assert!(scheduler::affinity_matches(&p, &node("n5", json!({"labels": {"disk": "ssd"}}))));
        assert!(!scheduler::affinity_matches(&p, &node("n5", json!({}))));
    }

    fn by_node(pods: &[Arc<Pod>]) -> NodePods {
        let mut m = NodePods::new();
        for p in pods {
            m.entry(target_node(p).unwrap()).or_default().push(p.clone());
        }
        m
    }

    #[test]
    fn manage_creates_missing_and_removes_extra_pods() {
        let d = ds(json!({"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 1, "maxSurge": 0}}));
        let nodes = vec![node("n1", json!({})), node("n2", json!({})), node("n3", json!({}))];
        let pods =
            vec![pod("a", "n1", "h", true, 100), pod("b", "n1", "h", true, 10), pod("gone", "n9", "h", true, 10)];
        let plan = manage_plan(&d, &nodes, &by_node(&pods), "h");
        assert_eq!(plan.create, vec!["n2".to_string(), "n3".to_string()]);
        assert_eq!(plan.delete, vec!["b".to_string(), "gone".to_string()]);
    }

    #[test]
    fn rolling_update_respects_max_unavailable() {
        let nodes: Vec<Arc<Node>> = (1..=4).map(|i| node(&format!("n{i}"), json!({}))).collect();
        let old: Vec<Arc<Pod>> = (1..=4).map(|i| pod(&format!("p{i}"), &format!("n{i}"), "old", true, 100)).collect();
        let d = ds(json!({"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 1, "maxSurge": 0}}));
        assert_eq!(rolling_plan(&d, &nodes, &by_node(&old), "new").delete, vec!["p1".to_string()]);
        // 50% of 4 = 2 at once.
        let d2 = ds(json!({"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": "50%", "maxSurge": 0}}));
        assert_eq!(rolling_plan(&d2, &nodes, &by_node(&old), "new").delete.len(), 2);
        // One node mid-update (new pod not ready yet): the budget is used up.
        let mut mid = old.clone();
        mid[0] = pod("p1new", "n1", "new", false, 1);
        assert!(rolling_plan(&d, &nodes, &by_node(&mid), "new").delete.is_empty());
        // An old pod that is not available is replaced regardless of the budget.
        mid[1] = pod("p2", "n2", "old", false, 100);
        assert_eq!(rolling_plan(&d, &nodes, &by_node(&mid), "new").delete, vec!["p2".to_string()]);
        // Surge: create new pods next to old ones first.
        let s = ds(json!({"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 0, "maxSurge": 1}}));
        let plan = rolling_plan(&s, &nodes, &by_node(&old), "new");
        assert_eq!((plan.create, plan.delete), (vec!["n1".to_string()], vec![]));
        let mut surged = old.clone();
        surged.push(pod("p1new", "n1", "new", true, 1));
        let plan = rolling_plan(&s, &nodes, &by_node(&surged), "new");
        assert_eq!(plan.delete, vec!["p1".to_string()]);
        assert_eq!(rolling_budget(&d, 4), (0, 1));
        assert_eq!(
            rolling_budget(
                &ds(json!({"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 0, "maxSurge": 0}})),
                3
            ),
            (0, 1)
        );
    }

    #[test]
    fn status_counts() {
        let d = ds(json!({"type": "RollingUpdate"}));
        let nodes = vec![
            node("n1", json!({})),
            node("n2", json!({})),
            node("n3", json!({"spec": {"taints": [{"key": "x", "effect": "NoSchedule"}]}})),
        ];
        let pods = vec![pod("a", "n1", "h", true, 10), pod("b", "n2", "old", false, 10), pod("c", "n3", "h", true, 10)];
        let st = calculate_status(&d, &nodes, &by_node(&pods), "h");
        assert_eq!((st.desired_number_scheduled, st.current_number_scheduled, st.number_ready), (2, 2, 1));
        assert_eq!((st.number_available, st.updated_number_scheduled, st.number_misscheduled), (Some(1), Some(1), 1));
        assert_eq!(st.number_unavailable, Some(1));
        assert_eq!(st.observed_generation, Some(1));
    }
}
