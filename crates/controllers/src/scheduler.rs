//! A small `default-scheduler` (upstream `pkg/scheduler`): binds pending pods
//! (no `spec.nodeName`, `schedulerName: default-scheduler`) to a node through
//! `POST pods/<name>/binding`. Filters, in upstream's plugin order:
//! NodeUnschedulable, TaintToleration (NoSchedule/NoExecute taints; a node
//! whose Ready condition is not True counts as tainted `not-ready` /
//! `unreachable`, as the node lifecycle controller would taint it),
//! NodeAffinity (`nodeSelector` and required node affinity), NodePorts
//! (`hostPort`s, `ports.rs`), NodeResourcesFit (pod count, cpu and memory requests against allocatable)
//! PodTopologySpread (`DoNotSchedule` constraints, `topology.rs`) and
//! InterPodAffinity (required pod affinity/anti-affinity, `interpod.rs`).
//! Scores: the default profile's plugins (`score.rs`: TaintToleration,
//! NodeAffinity, LeastAllocated, BalancedAllocation, PodTopologySpread with
//! the system default constraints); ties go to the node with fewer pods,
//! then by name. A pod that fits nowhere gets `PodScheduled=False`,
//! reason `Unschedulable`, with upstream's `0/N nodes are available: ...`
//! message and a `FailedScheduling` event; it is retried when nodes change.

use crate::events::{Recorder, NORMAL, WARNING};
use crate::informer::Key;
use crate::queue::{resync, run_workers, Queue};
use crate::{metrics, util, Ctx, SyncError};
use k8s_openapi::api::core::v1::{
    Binding, Node, NodeSelectorRequirement, NodeSelectorTerm, ObjectReference, Pod, Taint, Toleration,
};
use kube::api::{Api, ObjectMeta, Patch, PatchParams, PostParams};
use serde_json::json;
use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::task::JoinHandle;

mod interpod;
mod ports;
mod score;
mod topology;

const COMPONENT: &str = "default-scheduler";
const SCHEDULER_NAME: &str = "default-scheduler";
const TAINT_NOT_READY: &str = "node.kubernetes.io/not-ready";
const TAINT_UNREACHABLE: &str = "node.kubernetes.io/unreachable";
const TAINT_UNSCHEDULABLE: &str = "node.kubernetes.io/unschedulable";
/// How long a binding we made is trusted before the store shows it.
const ASSUME_TTL: Duration = Duration::from_secs(30);

const REASON_UNSCHEDULABLE: &str = "node(s) were unschedulable";
const REASON_AFFINITY: &str = "node(s) didn't match Pod's node affinity/selector";
const REASON_TOO_MANY_PODS: &str = "Too many pods";
const NO_NODES: &str = "no nodes available to schedule pods";

pub fn start(ctx: &Ctx, tasks: &mut Vec<JoinHandle<()>>) {
    let (recorder, rec_task) = Recorder::new(ctx.client.clone(), COMPONENT);
    tasks.push(rec_task);
    let c = Arc::new(Scheduler {
        client: ctx.client.clone(),
        inf: ctx.inf.clone(),
        queue: Queue::new(metrics::register("scheduler")),
        assumed: Mutex::new(HashMap::new()),
        recorder,
    });
    ctx.inf.pods.on_change_weak(&c, |h, old, new| h.on_pod(old, new));
    ctx.inf.nodes.on_change_weak(&c, |h, old, new| {
        let relevant = |n: &Node| {
            let ready = n
                .status
                .as_ref()
                .and_then(|s| s.conditions.as_ref())
                .and_then(|c| c.iter().find(|c| c.type_ == "Ready").map(|c| c.status.clone()));
            let allocatable = n.status.as_ref().and_then(|s| s.allocatable.clone());
            (n.metadata.labels.clone(), n.spec.clone(), ready, allocatable)
        };
        let changed = match (old, new) {
            (Some(o), Some(n)) => relevant(o) != relevant(n),
            _ => true,
        };
        if changed {
            h.enqueue_pending();
        }
    });
    let (workers, period) = (ctx.config.workers, ctx.config.resync_period);
    tasks.push(tokio::spawn(async move {
        c.inf.wait_ready().await;
        tracing::debug!(controller = c.queue.name(), "caches synced, starting workers");
        let k = c.clone();
        let keys = move || k.pending();
        let s = c.clone();
        let sync = move |key: Key| {
            let s = s.clone();
            async move { s.sync(&key).await }
        };
        // One worker: each decision sees the previous bindings.
        let _ = workers;
        tokio::join!(run_workers(c.queue.clone(), 1, sync), resync(c.queue.clone(), period, keys));
    }));
}

/// Whether this scheduler should place `pod`.
fn needs_scheduling(pod: &Pod) -> bool {
    let spec = pod.spec.as_ref();
    spec.and_then(|s| s.node_name.as_deref()).unwrap_or_default().is_empty()
        && spec.and_then(|s| s.scheduler_name.as_deref()).unwrap_or(SCHEDULER_NAME) == SCHEDULER_NAME
        && pod.metadata.deletion_timestamp.is_none()
        && !util::is_pod_terminal(pod)
}

type PodsByNode = HashMap<String, Vec<Arc<Pod>>>;

struct Scheduler {
    client: kube::Client,
    inf: Arc<crate::informer::Informers>,
    queue: Arc<Queue>,
    /// Pods bound by us that the store may not show bound yet: uid -> (node, when).
    assumed: Mutex<HashMap<String, (String, Instant)>>,
    recorder: Recorder,
}

/// `ToleratesTaint`.
pub(crate) fn tolerates(t: &Toleration, taint: &Taint) -> bool {
    if t.effect.as_deref().is_some_and(|e| !e.is_empty() && e != taint.effect) {
        return false;
    }
    if t.key.as_deref().is_some_and(|k| !k.is_empty() && k != taint.key) {
        return false;
    }
    match t.operator.as_deref().unwrap_or("Equal") {
        "" | "Equal" => t.value.as_deref().unwrap_or_default() == taint.value.as_deref().unwrap_or_default(),
        "Exists" => true,
        _ => false,
    }
}

fn tolerated(pod: &Pod, taint: &Taint) -> bool {
    pod.spec.as_ref().and_then(|s| s.tolerations.as_ref()).into_iter().flatten().any(|t| tolerates(t, taint))
}

fn taint(key: &str, effect: &str) -> Taint {
    Taint { key: key.into(), effect: effect.into(), value: None, time_added: None }
}

/// The node's taints, with the ones the node lifecycle controller would add
/// for a node that is not Ready.
fn effective_taints(node: &Node) -> Vec<Taint> {
    let mut taints = node.spec.as_ref().and_then(|s| s.taints.clone()).unwrap_or_default();
    let ready = node
        .status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .and_then(|c| c.iter().find(|c| c.type_ == "Ready"))
        .map(|c| c.status.as_str());
    let synthetic = match ready {
        Some("True") => None,
        Some("Unknown") => Some(TAINT_UNREACHABLE),
        _ => Some(TAINT_NOT_READY),
    };
    if let Some(key) = synthetic {
        if !taints.iter().any(|t| t.key == key) {
            taints.push(taint(key, "NoSchedule"));
        }
    }
    taints
}

fn expression_matches(r: &NodeSelectorRequirement, value: Option<&str>) -> bool {
    let values = r.values.as_deref().unwrap_or_default();
    match r.operator.as_str() {
        "In" => value.is_some_and(|v| values.iter().any(|x| x == v)),
        "NotIn" => value.is_none_or(|v| !values.iter().any(|x| x == v)),
        "Exists" => value.is_some(),
        "DoesNotExist" => value.is_none(),
        "Gt" | "Lt" => {
            let (Some(v), Some(bound)) =
                (value.and_then(|v| v.parse::<i64>().ok()), values.first().and_then(|b| b.parse::<i64>().ok()))
            else {
                return false;
            };
            if r.operator == "Gt" {
                v > bound
            } else {
                v < bound
            }
        }
        _ => false,
    }
}

fn term_matches(term: &NodeSelectorTerm, node: &Node) -> bool {
    let labels = node.metadata.labels.clone().unwrap_or_default();
    let exprs = term.match_expressions.as_deref().unwrap_or_default();
    let fields = term.match_fields.as_deref().unwrap_or_default();
    if exprs.is_empty() && fields.is_empty() {
        return false;
    }
    exprs.iter().all(|r| expression_matches(r, labels.get(&r.key).map(String::as_str)))
        && fields.iter().all(|r| r.key == "metadata.name" && expression_matches(r, node.metadata.name.as_deref()))
}

/// NodeAffinity: `nodeSelector` and required node affinity.
pub(crate) fn affinity_matches(pod: &Pod, node: &Node) -> bool {
    let Some(spec) = pod.spec.as_ref() else { return true };
    if let Some(sel) = spec.node_selector.as_ref() {
        if !util::map_selector_matches(sel, node.metadata.labels.as_ref()) {
            return false;
        }
    }
    let required = spec
        .affinity
        .as_ref()
        .and_then(|a| a.node_affinity.as_ref())
        .and_then(|n| n.required_during_scheduling_ignored_during_execution.as_ref());
    match required {
        Some(r) => r.node_selector_terms.iter().any(|t| term_matches(t, node)),
        None => true,
    }
}

impl Scheduler {
    fn on_pod(&self, old: Option<&Pod>, new: Option<&Pod>) {
        let Some(pod) = new else {
            if let Some(uid) = old.and_then(|p| p.metadata.uid.as_ref()) {
                self.assumed.lock().unwrap_or_else(|e| e.into_inner()).remove(uid);
            }
            return;
        };
        if !util::node_name(pod).is_empty() {
            if let Some(uid) = pod.metadata.uid.as_ref() {
                self.assumed.lock().unwrap_or_else(|e| e.into_inner()).remove(uid);
            }
            // A pod leaving a node may make room for pending ones.
            if old.is_some_and(|o| !util::is_pod_terminal(o)) && util::is_pod_terminal(pod) {
                self.enqueue_pending();
            }
            return;
        }
        if !needs_scheduling(pod) {
            return;
        }
        // Status updates (ours included) are no reason to try again.
        let scheduling_changed = match old {
            None => true,
            Some(o) => o.spec != pod.spec || o.metadata.labels != pod.metadata.labels,
        };
        if scheduling_changed {
            self.queue.add(Key::of(pod));
        }
    }

    fn pending(&self) -> Vec<Key> {
        self.inf.pods.store().state_filter(needs_scheduling).iter().map(|p| Key::of(&**p)).collect()
    }

    fn enqueue_pending(&self) {
        for k in self.pending() {
            self.queue.add(k);
        }
    }

    /// Pods on each node (the store's plus the ones we just bound).
    fn pods_per_node(&self) -> (PodsByNode, HashMap<String, usize>) {
        let mut on_node: PodsByNode = HashMap::new();
        for p in self.inf.pods.list() {
            let n = util::node_name(&p);
            if !n.is_empty() && !util::is_pod_terminal(&p) {
                on_node.entry(n.to_string()).or_default().push(p.clone());
            }
        }
        let mut assumed_count: HashMap<String, usize> = HashMap::new();
        let mut assumed = self.assumed.lock().unwrap_or_else(|e| e.into_inner());
        assumed.retain(|_, (_, at)| at.elapsed() < ASSUME_TTL);
        // A pod we bound that the store still shows pending counts on its node
        // (with its labels, for spreading); one the store does not show, by count.
        let pending: HashMap<String, Arc<Pod>> = self
            .inf
            .pods
            .store()
            .state_filter(needs_scheduling)
            .into_iter()
            .filter_map(|p| p.metadata.uid.clone().map(|u| (u, p)))
            .collect();
        for (uid, (node, _)) in assumed.iter() {
            match pending.get(uid) {
                Some(p) => on_node.entry(node.clone()).or_default().push(p.clone()),
                None => *assumed_count.entry(node.clone()).or_default() += 1,
            }
        }
        (on_node, assumed_count)
    }

    /// The filters; `None` if the pod fits the node.
    fn filter(&self, pod: &Pod, node: &Node, pods: &[Arc<Pod>], extra: usize) -> Option<String> {
        // NodeUnschedulable.
        if node.spec.as_ref().and_then(|s| s.unschedulable).unwrap_or(false)
            && !tolerated(pod, &taint(TAINT_UNSCHEDULABLE, "NoSchedule"))
        {
            return Some(REASON_UNSCHEDULABLE.into());
        }
        // TaintToleration.
        for t in effective_taints(node) {
            if (t.effect == "NoSchedule" || t.effect == "NoExecute") && !tolerated(pod, &t) {
                return Some(format!(
                    "node(s) had untolerated taint {{{}: {}}}",
                    t.key,
                    t.value.as_deref().unwrap_or_default()
                ));
            }
        }
        // NodeAffinity.
        if !affinity_matches(pod, node) {
            return Some(REASON_AFFINITY.into());
        }
        // NodePorts.
        if let Some(reason) = ports::filter(pod, pods) {
            return Some(reason.into());
        }
        // NodeResourcesFit.
        let allocatable = node.status.as_ref().and_then(|s| s.allocatable.clone()).unwrap_or_default();
        if let Some(max) = allocatable.get("pods").and_then(apimachinery::quantity::value) {
            if (pods.len() + extra + 1) as f64 > max {
                return Some(REASON_TOO_MANY_PODS.into());
            }
        }
        let mut insufficient = Vec::new();
        // Effective requests (containers summed, at least the largest init
        // container), cpu in millicores: `score::requests`.
        let (want_cpu, want_mem) = score::requests(pod, false);
        let (used_cpu, used_mem) =
            pods.iter().map(|p| score::requests(p, false)).fold((0.0, 0.0), |(c, m), (a, b)| (c + a, m + b));
        for (res, want, used, per_unit) in [("cpu", want_cpu, used_cpu, 1000.0), ("memory", want_mem, used_mem, 1.0)] {
            if want <= 0.0 {
                continue;
            }
            let Some(have) = allocatable.get(res).and_then(apimachinery::quantity::value) else { continue };
            if used + want > have * per_unit {
                insufficient.push(format!("Insufficient {res}"));
            }
        }
        // Upstream lists each failing resource as its own reason; the first is enough here.
        insufficient.into_iter().next()
    }

    async fn sync(&self, key: &Key) -> Result<(), SyncError> {
        let Some(pod) = self.inf.pods.get_key(key) else { return Ok(()) };
        if !needs_scheduling(&pod) {
            return Ok(());
        }
        let uid = pod.metadata.uid.clone().unwrap_or_default();
        if self
            .assumed
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&uid)
            .is_some_and(|(_, at)| at.elapsed() < ASSUME_TTL)
        {
            return Ok(());
        }
        let nodes = self.inf.nodes.list();
        if nodes.is_empty() {
            return self.unschedulable(&pod, NO_NODES.to_string()).await;
        }
        let (on_node, assumed) = self.pods_per_node();
        let empty = Vec::new();
        let mut reasons: BTreeMap<String, usize> = BTreeMap::new();
        let mut resolvable = 0;
        let mut fits: Vec<(&Node, &Vec<Arc<Pod>>, usize)> = Vec::new();
        // Every node with its pods (bound or assumed), for the plugins that look across nodes.
        let placement: Vec<(&Node, &[Arc<Pod>])> = nodes
            .iter()
            .map(|n| (&**n, on_node.get(n.metadata.name.as_deref().unwrap_or_default()).map_or(&empty[..], |v| &v[..])))
            .collect();
        let hard = topology::prepare(&pod, placement.iter().copied(), |n| affinity_matches(&pod, n));
        for node in &nodes {
            let name = node.metadata.name.clone().unwrap_or_default();
            let pods = on_node.get(&name).unwrap_or(&empty);
            let extra = assumed.get(&name).copied().unwrap_or(0);
            let reason = self
                .filter(&pod, node, pods, extra)
                .or_else(|| topology::filter(&hard, node).map(String::from))
                .or_else(|| interpod::filter(&pod, node, &placement).map(String::from));
            match reason {
                Some(reason) => {
                    // What preemption could free (upstream: Unschedulable, not ...AndUnresolvable).
                    if reason == REASON_TOO_MANY_PODS || reason.starts_with("Insufficient") || reason == ports::REASON {
                        resolvable += 1;
                    }
                    *reasons.entry(reason).or_default() += 1;
                }
                None => fits.push((&**node, pods, extra)),
            }
        }
        if fits.is_empty() {
            return self.unschedulable(&pod, fit_error(nodes.len(), &reasons, resolvable)).await;
        }
        let candidates: Vec<score::Candidate<'_>> = fits
            .iter()
            .map(|(node, pods, _)| score::Candidate { node, pods: pods.iter().map(|p| &**p).collect() })
            .collect();
        let (constraints, system_default) = score::spread_constraints(&pod, self.default_selector(&pod));
        let mut totals = score::totals(&pod, &candidates, &constraints, system_default);
        let fit_nodes: Vec<&Node> = fits.iter().map(|(n, _, _)| *n).collect();
        for (t, s) in totals.iter_mut().zip(interpod::score(&pod, &fit_nodes, &placement)) {
            // InterPodAffinity's weight in the default profile.
            *t += 2 * s;
        }
        let best = fits
            .iter()
            .zip(&totals)
            .map(|((node, pods, extra), total)| {
                (*total, pods.len() + extra, node.metadata.name.clone().unwrap_or_default())
            })
            // Highest score, then fewest pods, then name.
            .min_by(|a, b| b.0.cmp(&a.0).then(a.1.cmp(&b.1)).then(a.2.cmp(&b.2)));
        let Some((_, _, node)) = best else {
            return self.unschedulable(&pod, fit_error(nodes.len(), &reasons, resolvable)).await;
        };
        self.bind(&pod, &node).await
    }

    /// `helper.DefaultSelector`: the selectors of the Services, ReplicaSets and
    /// StatefulSets in the pod's namespace that select it, all together.
    fn default_selector(&self, pod: &Pod) -> Option<k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector> {
        use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
        let ns = pod.metadata.namespace.as_deref().unwrap_or_default();
        let labels = pod.metadata.labels.as_ref();
        let mut out = LabelSelector::default();
        let mut any = false;
        let mut add = |sel: &LabelSelector| {
            any = true;
            out.match_labels.get_or_insert_with(Default::default).extend(sel.match_labels.clone().unwrap_or_default());
            out.match_expressions
                .get_or_insert_with(Vec::new)
                .extend(sel.match_expressions.clone().unwrap_or_default());
        };
        for svc in self.inf.services.list_ns(ns) {
            let Some(sel) = svc.spec.as_ref().and_then(|s| s.selector.as_ref()).filter(|s| !s.is_empty()) else {
                continue;
            };
            if util::map_selector_matches(sel, labels) {
                add(&LabelSelector { match_labels: Some(sel.clone()), match_expressions: None });
            }
        }
        let owners = self
            .inf
            .replicasets
            .list_ns(ns)
            .iter()
            .map(|r| r.spec.as_ref().map(|s| s.selector.clone()))
            .chain(self.inf.statefulsets.list_ns(ns).iter().map(|s| s.spec.as_ref().map(|s| s.selector.clone())))
            .flatten()
            .collect::<Vec<_>>();
        for sel in owners.iter().filter(|s| !util::selector_is_empty(s)) {
            if util::selector_matches(sel, labels) {
                add(sel);
            }
        }
        any.then_some(out)
    }

    async fn bind(&self, pod: &Pod, node: &str) -> Result<(), SyncError> {
        let key = Key::of(pod);
        let api: Api<Pod> = Api::namespaced(self.client.clone(), &key.namespace);
        let binding = Binding {
            metadata: ObjectMeta {
                name: Some(key.name.clone()),
                namespace: Some(key.namespace.clone()),
                uid: pod.metadata.uid.clone(),
                ..Default::default()
            },
            target: ObjectReference {
                api_version: Some("v1".into()),
                kind: Some("Node".into()),
                name: Some(node.to_string()),
                ..Default::default()
            },
        };
        let uid = pod.metadata.uid.clone().unwrap_or_default();
        self.assumed.lock().unwrap_or_else(|e| e.into_inner()).insert(uid.clone(), (node.to_string(), Instant::now()));
        match api
            .create_subresource::<Binding, serde_json::Value>("binding", &key.name, &PostParams::default(), &binding)
            .await
        {
            Ok(_) => {
                self.recorder.event(
                    pod,
                    NORMAL,
                    "Scheduled",
                    format!("Successfully assigned {}/{} to {node}", key.namespace, key.name),
                );
                Ok(())
            }
            Err(e) => {
                self.assumed.lock().unwrap_or_else(|e| e.into_inner()).remove(&uid);
                if util::is_not_found(&e) || util::is_conflict(&e) {
                    // Gone, or bound by someone else meanwhile.
                    return Ok(());
                }
                self.recorder.event(
                    pod,
                    WARNING,
                    "FailedScheduling",
                    format!("Binding rejected: {}", util::api_message(&e)),
                );
                Err(e.into())
            }
        }
    }

    /// `PodScheduled=False` with reason Unschedulable, and a FailedScheduling event.
    async fn unschedulable(&self, pod: &Pod, message: String) -> Result<(), SyncError> {
        self.recorder.event(pod, WARNING, "FailedScheduling", message.clone());
        let current = pod
            .status
            .as_ref()
            .and_then(|s| s.conditions.as_ref())
            .and_then(|c| c.iter().find(|c| c.type_ == "PodScheduled"));
        if current.is_some_and(|c| {
            c.status == "False"
                && c.reason.as_deref() == Some("Unschedulable")
                && c.message.as_deref() == Some(message.as_str())
        }) {
            return Ok(());
        }
        let transition = match current {
            Some(c) if c.status == "False" => c.last_transition_time.clone(),
            _ => None,
        }
        .unwrap_or_else(util::now);
        let key = Key::of(pod);
        let api: Api<Pod> = Api::namespaced(self.client.clone(), &key.namespace);
        let patch = json!({ "status": { "conditions": [{
            "type": "PodScheduled",
            "status": "False",
            "reason": "Unschedulable",
            "message": message,
            "lastProbeTime": null,
            "lastTransitionTime": transition,
        }]}});
        match api.patch_status(&key.name, &PatchParams::default(), &Patch::Strategic(&patch)).await {
            Ok(_) => Ok(()),
            Err(e) if util::is_not_found(&e) => Ok(()),
            Err(e) => Err(e.into()),
        }
    }
}

/// `FitError.Error()` plus the DefaultPreemption post-filter message.
fn fit_error(num_nodes: usize, reasons: &BTreeMap<String, usize>, resolvable: usize) -> String {
    let mut hist: Vec<String> = reasons.iter().map(|(r, n)| format!("{n} {r}")).collect();
    hist.sort();
    let mut msg = format!("0/{num_nodes} nodes are available: {}.", hist.join(", "));
    let mut pre = Vec::new();
    if num_nodes > resolvable {
        pre.push(format!("{} Preemption is not helpful for scheduling", num_nodes - resolvable));
    }
    if resolvable > 0 {
        pre.push(format!("{resolvable} No preemption victims found for incoming pod"));
    }
    pre.sort();
    msg.push_str(&format!(" preemption: 0/{num_nodes} nodes are available: {}.", pre.join(", ")));
    msg
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(v: serde_json::Value) -> Node {
        serde_json::from_value(v).expect("node")
    }

    fn pod(v: serde_json::Value) -> Pod {
        serde_json::from_value(v).expect("pod")
    }

    #[test]
    fn taints_tolerations_and_selectors() {
        let ready = json!([{"type": "Ready", "status": "True"}]);
        let n = node(json!({"metadata": {"name": "n1", "labels": {"disk": "ssd"}},
            "spec": {"taints": [{"key": "dedicated", "value": "db", "effect": "NoSchedule"}]},
            "status": {"conditions": ready}}));
        let plain = pod(json!({"metadata": {"name": "p"}, "spec": {"containers": []}}));
        assert_eq!(effective_taints(&n).len(), 1);
        let t = &effective_taints(&n)[0];
        assert!(!tolerated(&plain, t));
        let tol = pod(json!({"metadata": {"name": "p"}, "spec": {"containers": [],
            "tolerations": [{"key": "dedicated", "operator": "Equal", "value": "db", "effect": "NoSchedule"}]}}));
        assert!(tolerated(&tol, t));
        let all = pod(
            json!({"metadata": {"name": "p"}, "spec": {"containers": [], "tolerations": [{"operator": "Exists"}]}}),
        );
        assert!(tolerated(&all, t));
        let sel = pod(json!({"metadata": {"name": "p"}, "spec": {"containers": [], "nodeSelector": {"disk": "ssd"}}}));
        assert!(affinity_matches(&sel, &n));
        let other =
            pod(json!({"metadata": {"name": "p"}, "spec": {"containers": [], "nodeSelector": {"disk": "hdd"}}}));
        assert!(!affinity_matches(&other, &n));
        let aff = pod(json!({"metadata": {"name": "p"}, "spec": {"containers": [], "affinity": {"nodeAffinity": {
        "requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [
            {"matchExpressions": [{"key": "disk", "operator": "In", "values": ["nvme"]}]},
            {"matchFields": [{"key": "metadata.name", "operator": "In", "values": ["n1"]}]}
        ]}}}}}));
        assert!(affinity_matches(&aff, &n));
        // Not ready: tainted not-ready.
        let nr =
            node(json!({"metadata": {"name": "n2"}, "status": {"conditions": [{"type": "Ready", "status": "False"}]}}));
        assert_eq!(effective_taints(&nr)[0].key, TAINT_NOT_READY);
    }

    #[test]
    fn fit_error_message_matches_upstream() {
        let mut reasons = BTreeMap::new();
        reasons.insert(REASON_AFFINITY.to_string(), 1);
        reasons.insert("node(s) had untolerated taint {node.kubernetes.io/not-ready: }".to_string(), 1);
        assert_eq!(
            fit_error(2, &reasons, 0),
            "0/2 nodes are available: 1 node(s) didn't match Pod's node affinity/selector, 1 node(s) had untolerated taint {node.kubernetes.io/not-ready: }. preemption: 0/2 nodes are available: 2 Preemption is not helpful for scheduling."
        );
    }
}
