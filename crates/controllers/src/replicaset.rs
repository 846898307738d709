//! ReplicaSet controller (upstream `pkg/controller/replicaset/replica_set.go`,
//! `replica_set_utils.go`, `pkg/controller/controller_utils.go`): keeps
//! `spec.replicas` active pods per ReplicaSet, adopts matching orphans and
//! releases pods that stop matching, and reports status. Creations and
//! deletions are tracked with expectations so that a sync never acts twice on
//! a stale store.

use crate::events::{Recorder, NORMAL, WARNING};
use crate::informer::Key;
use crate::queue::{resync, run_workers, Queue};
use crate::{metrics, util, Ctx, SyncError};
use k8s_openapi::api::apps::v1::{ReplicaSet, ReplicaSetCondition, ReplicaSetStatus};
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, OwnerReference, Time};
use kube::api::{Api, DeleteParams, ObjectMeta, PostParams};
use serde_json::json;
use std::cmp::Ordering;
use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::task::JoinHandle;

const COMPONENT: &str = "replicaset-controller";
/// Upstream `BurstReplicas`: at most this many creates or deletes per sync.
const BURST_REPLICAS: usize = 500;
/// Upstream `SlowStartInitialBatchSize`.
const SLOW_START_INITIAL_BATCH: usize = 1;
/// Upstream `ExpectationsTimeout`.
const EXPECTATIONS_TIMEOUT: Duration = Duration::from_secs(300);
const DELETION_COST_ANNOTATION: &str = "controller.kubernetes.io/pod-deletion-cost";

pub fn start(ctx: &Ctx, tasks: &mut Vec<JoinHandle<()>>) {
    let (recorder, rec_task) = Recorder::new(ctx.client.clone(), COMPONENT);
    tasks.push(rec_task);
    let c = Arc::new(Rsc {
        client: ctx.client.clone(),
        inf: ctx.inf.clone(),
        queue: Queue::new(metrics::register("replicaset")),
        exp: Expectations::default(),
        recorder,
    });
    ctx.inf.replicasets.on_change_weak(&c, |h, old, new| h.on_rs(old, new));
    ctx.inf.pods.on_change_weak(&c, |h, old, new| h.on_pod(old, new));
    let (workers, period) = (ctx.config.workers, ctx.config.resync_period);
    tasks.push(tokio::spawn(async move {
        c.inf.wait_ready().await;
        tracing::debug!(controller = c.queue.name(), "caches synced, starting workers");
        let k = c.clone();
        let keys = move || k.inf.replicasets.list().iter().map(|r| Key::of(&**r)).collect();
        let s = c.clone();
        let sync = move |key: Key| {
            let s = s.clone();
            async move { s.sync(&key).await }
        };
        tokio::join!(run_workers(c.queue.clone(), workers, sync), resync(c.queue.clone(), period, keys));
    }));
}

/// Creations and deletions a ReplicaSet waits to see in the store
/// (upstream `UIDTrackingControllerExpectations`).
#[derive(Default)]
pub(crate) struct Expectations {
    inner: Mutex<HashMap<Key, Expectation>>,
}

struct Expectation {
    add: i64,
    del: i64,
    del_keys: HashSet<Key>,
    at: Instant,
}

impl Expectations {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<Key, Expectation>> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }
    pub fn satisfied(&self, key: &Key) -> bool {
        match self.lock().get(key) {
            None => true,
            Some(e) => (e.add <= 0 && e.del <= 0) || e.at.elapsed() > EXPECTATIONS_TIMEOUT,
        }
    }
    pub fn expect_creations(&self, key: &Key, n: usize) {
        let e = Expectation { add: n as i64, del: 0, del_keys: HashSet::new(), at: Instant::now() };
        self.lock().insert(key.clone(), e);
    }
    pub fn expect_deletions(&self, key: &Key, pods: HashSet<Key>) {
        let e = Expectation { add: 0, del: pods.len() as i64, del_keys: pods, at: Instant::now() };
        self.lock().insert(key.clone(), e);
    }
    pub fn creation_observed(&self, key: &Key) {
        if let Some(e) = self.lock().get_mut(key) {
            e.add -= 1;
        }
    }
    pub fn deletion_observed(&self, key: &Key, pod: &Key) {
        if let Some(e) = self.lock().get_mut(key) {
            if e.del_keys.remove(pod) {
                e.del -= 1;
            }
        }
    }
    pub fn delete(&self, key: &Key) {
        self.lock().remove(key);
    }
}

struct Rsc {
    client: kube::Client,
    inf: Arc<crate::informer::Informers>,
    queue: Arc<Queue>,
    exp: Expectations,
    recorder: Recorder,
}

impl Rsc {
    // ---- event handlers (upstream addPod/updatePod/deletePod, addRS/updateRS/deleteRS) ----

    fn on_rs(&self, old: Option<&ReplicaSet>, new: Option<&ReplicaSet>) {
        match (old, new) {
            (_, Some(rs)) => self.queue.add(Key::of(rs)),
            (Some(rs), None) => {
                let key = Key::of(rs);
                self.exp.delete(&key);
                self.queue.add(key);
            }
            (None, None) => {}
        }
    }

    fn resolve(&self, namespace: &str, r: &OwnerReference) -> Option<Arc<ReplicaSet>> {
        if r.kind != "ReplicaSet" {
            return None;
        }
        let rs = self.inf.replicasets.get(namespace, &r.name)?;
        (rs.metadata.uid.as_deref() == Some(r.uid.as_str())).then_some(rs)
    }

    /// ReplicaSets whose selector matches an orphan pod.
    fn pod_replicasets(&self, pod: &Pod) -> Vec<Arc<ReplicaSet>> {
        let ns = pod.metadata.namespace.as_deref().unwrap_or_default();
        self.inf
            .replicasets
            .list_ns(ns)
            .into_iter()
            .filter(|rs| {
                let sel = rs.spec.as_ref().map(|s| &s.selector);
                sel.is_some_and(|s| {
                    !util::selector_is_empty(s) && util::selector_matches(s, pod.metadata.labels.as_ref())
                })
            })
            .collect()
    }

    fn on_pod(&self, old: Option<&Pod>, new: Option<&Pod>) {
        match (old, new) {
            (None, Some(pod)) => self.add_pod(pod),
            (Some(old), Some(cur)) => self.update_pod(old, cur),
            (Some(old), None) => self.delete_pod(old),
            (None, None) => {}
        }
    }

    fn add_pod(&self, pod: &Pod) {
        if pod.metadata.deletion_timestamp.is_some() {
            self.delete_pod(pod);
            return;
        }
        let ns = pod.metadata.namespace.as_deref().unwrap_or_default();
        if let Some(r) = util::controller_of(&pod.metadata) {
            if let Some(rs) = self.resolve(ns, r) {
                let key = Key::of(&*rs);
                self.exp.creation_observed(&key);
                self.queue.add(key);
            }
            return;
        }
        for rs in self.pod_replicasets(pod) {
            self.queue.add(Key::of(&*rs));
        }
    }

    fn update_pod(&self, old: &Pod, cur: &Pod) {
        if old.metadata.resource_version == cur.metadata.resource_version {
            return;
        }
        let label_changed = old.metadata.labels != cur.metadata.labels;
        if cur.metadata.deletion_timestamp.is_some() {
            self.delete_pod(cur);
            if label_changed {
                self.delete_pod(old);
            }
            return;
        }
        let ns = cur.metadata.namespace.as_deref().unwrap_or_default();
        let cur_ref = util::controller_of(&cur.metadata);
        let old_ref = util::controller_of(&old.metadata);
        let ref_changed = cur_ref != old_ref;
        if ref_changed {
            if let Some(rs) = old_ref.and_then(|r| self.resolve(ns, r)) {
                self.queue.add(Key::of(&*rs));
            }
        }
        if let Some(r) = cur_ref {
            if let Some(rs) = self.resolve(ns, r) {
                let key = Key::of(&*rs);
                let min_ready = rs.spec.as_ref().and_then(|s| s.min_ready_seconds).unwrap_or(0);
                if !util::is_pod_ready(old) && util::is_pod_ready(cur) && min_ready > 0 {
                    // The ready time does not count towards minReadySeconds: add a second.
                    self.queue.add_after(key.clone(), Duration::from_secs(min_ready as u64 + 1));
                }
                self.queue.add(key);
            }
            return;
        }
        if label_changed || ref_changed {
            for rs in self.pod_replicasets(cur) {
                self.queue.add(Key::of(&*rs));
            }
        }
    }

    fn delete_pod(&self, pod: &Pod) {
        let ns = pod.metadata.namespace.as_deref().unwrap_or_default();
        let Some(rs) = util::controller_of(&pod.metadata).and_then(|r| self.resolve(ns, r)) else { return };
        let key = Key::of(&*rs);
        self.exp.deletion_observed(&key, &Key::of(pod));
        self.queue.add(key);
    }

    // ---- sync ----

    async fn sync(&self, key: &Key) -> Result<(), SyncError> {
        let Some(rs) = self.inf.replicasets.get_key(key) else {
            self.exp.delete(key);
            return Ok(());
        };
        let needs_sync = self.exp.satisfied(key);
        let Some(spec) = rs.spec.as_ref() else { return Ok(()) };
        let selector = spec.selector.clone();
        let pods: Vec<Arc<Pod>> =
            self.inf.pods.list_ns(&key.namespace).into_iter().filter(|p| util::is_pod_active(p)).collect();
        let pods = self.claim_pods(&rs, &selector, pods).await?;
        let mut manage_err = None;
        if needs_sync && rs.metadata.deletion_timestamp.is_none() {
            if let Err(e) = self.manage_replicas(key, &pods, &rs).await {
                manage_err = Some(e);
            }
        }
        let status = calculate_status(&rs, &pods, manage_err.as_ref());
        let updated = self.update_status(&rs, status).await?;
        let replicas = spec.replicas.unwrap_or(1);
        let min_ready = updated.spec.as_ref().and_then(|s| s.min_ready_seconds).unwrap_or(0);
        let st = updated.status.clone().unwrap_or_default();
        if manage_err.is_none()
            && min_ready > 0
            && st.ready_replicas.unwrap_or(0) == replicas
            && st.available_replicas.unwrap_or(0) != replicas
        {
            self.queue.add_after(key.clone(), Duration::from_secs(min_ready as u64));
        }
        match manage_err {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }

    /// Upstream `PodControllerRefManager.ClaimPods`.
    async fn claim_pods(
        &self,
        rs: &ReplicaSet,
        selector: &LabelSelector,
        pods: Vec<Arc<Pod>>,
    ) -> Result<Vec<Arc<Pod>>, SyncError> {
        let uid = rs.metadata.uid.clone().unwrap_or_default();
        let rs_deleting = rs.metadata.deletion_timestamp.is_some();
        let mut claimed = Vec::new();
        let mut errors: Vec<SyncError> = Vec::new();
        let mut can_adopt: Option<Result<(), String>> = None;
        for pod in pods {
            let matches = util::selector_matches(selector, pod.metadata.labels.as_ref());
            match util::controller_of(&pod.metadata) {
                Some(r) if r.uid != uid => {}
                Some(_) => {
                    if matches {
                        claimed.push(pod);
                    } else if !rs_deleting {
                        if let Err(e) = self.release(rs, &pod).await {
                            if !util::is_not_found(&e) {
                                errors.push(e.into());
                            }
                        }
                    }
                }
                None => {
                    if rs_deleting || !matches || pod.metadata.deletion_timestamp.is_some() {
                        continue;
                    }
                    if can_adopt.is_none() {
                        can_adopt = Some(self.recheck_deletion(rs).await);
                    }
                    if let Some(Err(e)) = &can_adopt {
                        errors.push(SyncError::from(format!("can't adopt Pod {}: {e}", Key::of(&*pod))));
                        continue;
                    }
                    match self.adopt(rs, &pod).await {
                        Ok(()) => claimed.push(pod),
                        Err(e) if util::is_not_found(&e) => {}
                        Err(e) => errors.push(e.into()),
                    }
                }
            }
        }
        match errors.into_iter().next() {
            Some(e) => Err(e),
            None => Ok(claimed),
        }
    }

    /// Upstream `RecheckDeletionTimestamp`: a fresh read before adopting.
    async fn recheck_deletion(&self, rs: &ReplicaSet) -> Result<(), String> {
        let key = Key::of(rs);
        let api: Api<ReplicaSet> = Api::namespaced(self.client.clone(), &key.namespace);
        let fresh = api.get(&key.name).await.map_err(|e| e.to_string())?;
        if fresh.metadata.uid != rs.metadata.uid {
            return Err(format!(
                "original ReplicaSet {key} is gone: got uid {}, wanted {}",
                fresh.metadata.uid.unwrap_or_default(),
                rs.metadata.uid.clone().unwrap_or_default()
            ));
        }
        if fresh.metadata.deletion_timestamp.is_some() {
            return Err(format!("ReplicaSet {key} has just been deleted"));
        }
        Ok(())
    }

    async fn adopt(&self, rs: &ReplicaSet, pod: &Pod) -> Result<(), kube::Error> {
        let mut refs = pod.metadata.owner_references.clone().unwrap_or_default();
        refs.push(util::new_controller_ref(&rs.metadata, "apps/v1", "ReplicaSet"));
        util::patch_owner_refs(&self.client, pod, json!(refs)).await.map(|_| ())
    }

    async fn release(&self, rs: &ReplicaSet, pod: &Pod) -> Result<(), kube::Error> {
        let uid = rs.metadata.uid.clone().unwrap_or_default();
        let refs: Vec<OwnerReference> =
            pod.metadata.owner_references.iter().flatten().filter(|r| r.uid != uid).cloned().collect();
        let refs = if refs.is_empty() { serde_json::Value::Null } else { json!(refs) };
        util::patch_owner_refs(&self.client, pod, refs).await.map(|_| ())
    }

    /// Upstream `manageReplicas`.
    async fn manage_replicas(&self, key: &Key, pods: &[Arc<Pod>], rs: &ReplicaSet) -> Result<(), SyncError> {
        let replicas = rs.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1).max(0) as usize;
        if pods.len() < replicas {
            let diff = (replicas - pods.len()).min(BURST_REPLICAS);
            self.exp.expect_creations(key, diff);
            let (created, err) = slow_start_batch(diff, SLOW_START_INITIAL_BATCH, || self.create_pod(rs)).await;
            for _ in created..diff {
                self.exp.creation_observed(key);
            }
            return match err {
                Some(e) => Err(e),
                None => Ok(()),
            };
        }
        if pods.len() > replicas {
            let diff = (pods.len() - replicas).min(BURST_REPLICAS);
            let related = self.related_pods(rs);
            let victims = pods_to_delete(pods, &related, diff);
            self.exp.expect_deletions(key, victims.iter().map(|p| Key::of(&**p)).collect());
            let api: Api<Pod> = Api::namespaced(self.client.clone(), &key.namespace);
            let results = futures::future::join_all(victims.iter().map(|p| {
                let api = api.clone();
                async move {
                    let name = p.metadata.name.clone().unwrap_or_default();
                    (p, api.delete(&name, &DeleteParams::default()).await)
                }
            }))
            .await;
            let mut first_err = None;
            for (pod, result) in results {
                let name = pod.metadata.name.clone().unwrap_or_default();
                match result {
                    Ok(_) => self.recorder.event(rs, NORMAL, "SuccessfulDelete", format!("Deleted pod: {name}")),
                    Err(e) => {
                        self.exp.deletion_observed(key, &Key::of(&**pod));
                        if !util::is_not_found(&e) {
                            self.recorder.event(
                                rs,
                                WARNING,
                                "FailedDelete",
                                format!("Error deleting: {}", util::api_message(&e)),
                            );
                            first_err.get_or_insert(SyncError::from(e));
                        }
                    }
                }
            }
            if let Some(e) = first_err {
                return Err(e);
            }
        }
        Ok(())
    }

    /// Upstream `GetPodFromTemplate` + `CreatePodsWithControllerRef`.
    async fn create_pod(&self, rs: &ReplicaSet) -> Result<(), SyncError> {
        let key = Key::of(rs);
        let template = rs.spec.as_ref().and_then(|s| s.template.clone()).unwrap_or_default();
        let tmeta = template.metadata.unwrap_or_default();
        if tmeta.labels.as_ref().is_none_or(|l| l.is_empty()) {
            return Err("unable to create pods, no labels".into());
        }
        let pod = Pod {
            metadata: ObjectMeta {
                generate_name: Some(pod_prefix(&key.name)),
                namespace: Some(key.namespace.clone()),
                labels: tmeta.labels,
                annotations: tmeta.annotations,
                finalizers: tmeta.finalizers,
                owner_references: Some(vec![util::new_controller_ref(&rs.metadata, "apps/v1", "ReplicaSet")]),
                ..Default::default()
            },
            spec: template.spec,
            status: None,
        };
        let api: Api<Pod> = Api::namespaced(self.client.clone(), &key.namespace);
        match api.create(&PostParams::default(), &pod).await {
            Ok(p) => {
                let name = p.metadata.name.unwrap_or_default();
                self.recorder.event(rs, NORMAL, "SuccessfulCreate", format!("Created pod: {name}"));
                Ok(())
            }
            // The namespace is going away: every create would fail; nothing to do.
            Err(e) if util::is_namespace_terminating(&e) => Ok(()),
            Err(e) => {
                self.recorder.event(rs, WARNING, "FailedCreate", format!("Error creating: {}", util::api_message(&e)));
                Err(e.into())
            }
        }
    }

    /// Upstream `getIndirectlyRelatedPods`: pods of every ReplicaSet with the
    /// same controller (e.g. all ReplicaSets of one Deployment).
    fn related_pods(&self, rs: &ReplicaSet) -> Vec<Arc<Pod>> {
        let Some(cref) = util::controller_of(&rs.metadata) else { return Vec::new() };
        let ns = rs.metadata.namespace.as_deref().unwrap_or_default();
        let pods = self.inf.pods.list_ns(ns);
        let mut seen = HashSet::new();
        let mut out = Vec::new();
        for other in self.inf.replicasets.list_ns(ns) {
            if util::controller_of(&other.metadata).map(|r| &r.uid) != Some(&cref.uid) {
                continue;
            }
            let Some(sel) = other.spec.as_ref().map(|s| &s.selector) else { continue };
            for p in &pods {
                if util::selector_matches(sel, p.metadata.labels.as_ref()) && seen.insert(p.metadata.uid.clone()) {
                    out.push(p.clone());
                }
            }
        }
        out
    }

    /// Upstream `updateReplicaSetStatus`: one GET/PUT retry on conflict.
    async fn update_status(&self, rs: &ReplicaSet, mut st: ReplicaSetStatus) -> Result<ReplicaSet, SyncError> {
        let cur = rs.status.clone().unwrap_or_default();
        let generation = rs.metadata.generation.unwrap_or(0);
        if cur.replicas == st.replicas
            && cur.fully_labeled_replicas.unwrap_or(0) == st.fully_labeled_replicas.unwrap_or(0)
            && cur.ready_replicas.unwrap_or(0) == st.ready_replicas.unwrap_or(0)
            && cur.available_replicas.unwrap_or(0) == st.available_replicas.unwrap_or(0)
            && cur.observed_generation.unwrap_or(0) == generation
            && cur.conditions == st.conditions
        {
            return Ok(rs.clone());
        }
        st.observed_generation = Some(generation);
        let key = Key::of(rs);
        let api: Api<ReplicaSet> = Api::namespaced(self.client.clone(), &key.namespace);
        let mut obj = rs.clone();
        obj.status = Some(st.clone());
        match api.replace_status(&key.name, &PostParams::default(), &obj).await {
            Ok(r) => Ok(r),
            Err(e) if util::is_conflict(&e) => {
                let mut fresh = api.get(&key.name).await?;
                fresh.status = Some(st);
                Ok(api.replace_status(&key.name, &PostParams::default(), &fresh).await?)
            }
            Err(e) => Err(e.into()),
        }
    }
}

/// Upstream `getPodsPrefix`: `<name>-`.
fn pod_prefix(name: &str) -> String {
    format!("{name}-")
}

/// Upstream `slowStartBatch`: calls `f` `count` times in batches of
/// `initial`, doubling while every call of a batch succeeds. Returns the
/// number of successes and the first error.
async fn slow_start_batch<F, Fut>(count: usize, initial: usize, f: F) -> (usize, Option<SyncError>)
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = Result<(), SyncError>>,
{
    let mut remaining = count;
    let mut successes = 0;
    let mut batch = remaining.min(initial);
    while batch > 0 {
        let results = futures::future::join_all((0..batch).map(|_| f())).await;
        let mut first_err = None;
        for r in results {
            match r {
                Ok(()) => successes += 1,
                Err(e) => {
                    first_err.get_or_insert(e);
                }
            }
        }
        if first_err.is_some() {
            return (successes, first_err);
        }
        remaining -= batch;
        batch = (2 * batch).min(remaining);
    }
    (successes, None)
}

/// Upstream `calculateStatus`.
fn calculate_status(rs: &ReplicaSet, pods: &[Arc<Pod>], manage_err: Option<&SyncError>) -> ReplicaSetStatus {
    let mut st = rs.status.clone().unwrap_or_default();
    let spec = rs.spec.clone().unwrap_or_default();
    let template_labels = spec.template.as_ref().and_then(|t| t.metadata.as_ref()).and_then(|m| m.labels.clone());
    let min_ready = spec.min_ready_seconds.unwrap_or(0);
    let (mut fully, mut ready, mut available) = (0, 0, 0);
    for pod in pods {
        if template_labels.as_ref().is_none_or(|t| util::map_selector_matches(t, pod.metadata.labels.as_ref())) {
            fully += 1;
        }
        if util::is_pod_ready(pod) {
            ready += 1;
            if util::is_pod_available(pod, min_ready) {
                available += 1;
            }
        }
    }
    let has_failure = st.conditions.iter().flatten().any(|c| c.type_ == "ReplicaFailure");
    match manage_err {
        Some(e) if !has_failure => {
            let diff = pods.len() as i64 - i64::from(spec.replicas.unwrap_or(1));
            let reason = match diff.cmp(&0) {
                Ordering::Less => "FailedCreate",
                Ordering::Greater => "FailedDelete",
                Ordering::Equal => "",
            };
            st.conditions.get_or_insert_with(Vec::new).push(ReplicaSetCondition {
                type_: "ReplicaFailure".into(),
                status: "True".into(),
                reason: Some(reason.into()),
                message: Some(e.to_string()),
                last_transition_time: Some(util::now()),
            });
        }
        None if has_failure => {
            let rest: Vec<ReplicaSetCondition> =
                st.conditions.take().into_iter().flatten().filter(|c| c.type_ != "ReplicaFailure").collect();
            st.conditions = (!rest.is_empty()).then_some(rest);
        }
        _ => {}
    }
    st.replicas = pods.len() as i32;
    st.fully_labeled_replicas = nonzero(fully);
    st.ready_replicas = nonzero(ready);
    st.available_replicas = nonzero(available);
    st
}

/// Zero counts are omitted, as Go's `omitempty` does.
pub(crate) fn nonzero(n: i32) -> Option<i32> {
    (n != 0).then_some(n)
}

struct Ranked {
    pod: Arc<Pod>,
    rank: usize,
}

/// Upstream `getPodsToDelete`: the `diff` pods to delete, ranked by
/// `ActivePodsWithRanks` (related pods on the same node raise the rank).
fn pods_to_delete(pods: &[Arc<Pod>], related: &[Arc<Pod>], diff: usize) -> Vec<Arc<Pod>> {
    if diff >= pods.len() {
        return pods.to_vec();
    }
    let mut on_node: HashMap<&str, usize> = HashMap::new();
    for p in related {
        if util::is_pod_active(p) {
            *on_node.entry(util::node_name(p)).or_default() += 1;
        }
    }
    let mut ranked: Vec<Ranked> = pods
        .iter()
        .map(|p| Ranked { pod: p.clone(), rank: on_node.get(util::node_name(p)).copied().unwrap_or(0) })
        .collect();
    let now = k8s_openapi::jiff::Timestamp::now();
    ranked.sort_by(|a, b| {
        if less(a, b, now) {
            Ordering::Less
        } else if less(b, a, now) {
            Ordering::Greater
        } else {
            Ordering::Equal
        }
    });
    ranked.into_iter().take(diff).map(|r| r.pod).collect()
}

fn phase_ordinal(pod: &Pod) -> u8 {
    match util::pod_phase(pod) {
        "Unknown" => 1,
        "Running" => 2,
        _ => 0,
    }
}

fn deletion_cost(pod: &Pod) -> i32 {
    pod.metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(DELETION_COST_ANNOTATION))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

fn ready_time(pod: &Pod) -> Option<&Time> {
    if !util::is_pod_ready(pod) {
        return None;
    }
    util::ready_condition(pod).and_then(|c| c.last_transition_time.as_ref())
}

fn max_restarts(pod: &Pod) -> i32 {
    pod.status
        .as_ref()
        .and_then(|s| s.container_statuses.as_ref())
        .into_iter()
        .flatten()
        .map(|c| c.restart_count)
        .max()
        .unwrap_or(0)
}

/// `afterOrZero`: a zero time sorts first, otherwise the later one.
fn after_or_zero(t1: Option<&Time>, t2: Option<&Time>) -> bool {
    match (t1, t2) {
        (None, _) => true,
        (_, None) => false,
        (Some(a), Some(b)) => a.0 > b.0,
    }
}

/// `logarithmicRankDiff`: compares log2 of the ages (in nanoseconds).
fn log_rank_diff(t1: &Time, t2: &Time, now: k8s_openapi::jiff::Timestamp) -> i64 {
    let rank = |t: &Time| {
        let d = now.duration_since(t.0).as_nanos();
        if d > 0 {
            (d as f64).log2() as i64
        } else {
            -1
        }
    };
    rank(t1) - rank(t2)
}

/// Compares two times as upstream does with `LogarithmicScaleDown` on:
/// `Some(true)` if `a` goes first, `None` if they rank the same.
fn time_less(
    a: Option<&Time>,
    b: Option<&Time>,
    pa: &Pod,
    pb: &Pod,
    now: k8s_openapi::jiff::Timestamp,
) -> Option<bool> {
    if a == b {
        return None;
    }
    match (a, b) {
        (Some(x), Some(y)) => {
            let diff = log_rank_diff(x, y, now);
            if diff == 0 {
                Some(pa.metadata.uid < pb.metadata.uid)
            } else {
                Some(diff < 0)
            }
        }
        _ => Some(after_or_zero(a, b)),
    }
}

/// Upstream `ActivePodsWithRanks.Less`: whether `a` should be deleted before `b`.
fn less(a: &Ranked, b: &Ranked, now: k8s_openapi::jiff::Timestamp) -> bool {
    let (pa, pb) = (&*a.pod, &*b.pod);
    // 1. Unassigned < assigned.
    let (na, nb) = (util::node_name(pa), util::node_name(pb));
    if na != nb && (na.is_empty() || nb.is_empty()) {
        return na.is_empty();
    }
    // 2. Pending < Unknown < Running.
    if phase_ordinal(pa) != phase_ordinal(pb) {
        return phase_ordinal(pa) < phase_ordinal(pb);
    }
    // 3. Not ready < ready.
    let (ra, rb) = (util::is_pod_ready(pa), util::is_pod_ready(pb));
    if ra != rb {
        return !ra;
    }
    // 4. Lower pod-deletion-cost < higher.
    if deletion_cost(pa) != deletion_cost(pb) {
        return deletion_cost(pa) < deletion_cost(pb);
    }
    // 5. Doubled up < not doubled up.
    if a.rank != b.rank {
        return a.rank > b.rank;
    }
    // 6. Been ready for empty time < less time < more time.
    if ra && rb {
        if let Some(r) = time_less(ready_time(pa), ready_time(pb), pa, pb, now) {
            return r;
        }
    }
    // 7. More container restarts < fewer.
    if max_restarts(pa) != max_restarts(pb) {
        return max_restarts(pa) > max_restarts(pb);
    }
    // 8. Empty creation time < newer < older.
    if let Some(r) =
        time_less(pa.metadata.creation_timestamp.as_ref(), pb.metadata.creation_timestamp.as_ref(), pa, pb, now)
    {
        return r;
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{PodCondition, PodSpec, PodStatus};
    use k8s_openapi::jiff::{SignedDuration, Timestamp};

    fn pod(name: &str, node: &str, phase: &str, ready: bool, age_secs: i64) -> Arc<Pod> {
        let created = Timestamp::now() - SignedDuration::from_secs(age_secs);
        Arc::new(Pod {
            metadata: ObjectMeta {
                name: Some(name.into()),
                uid: Some(format!("uid-{name}")),
                creation_timestamp: Some(Time(created)),
                ..Default::default()
            },
            spec: Some(PodSpec { node_name: (!node.is_empty()).then(|| node.to_string()), ..Default::default() }),
            status: Some(PodStatus {
                phase: Some(phase.into()),
                conditions: ready.then(|| {
                    vec![PodCondition {
                        type_: "Ready".into(),
                        status: "True".into(),
                        last_transition_time: Some(Time(created)),
                        ..Default::default()
                    }]
                }),
                ..Default::default()
            }),
        })
    }

    fn names(pods: &[Arc<Pod>]) -> Vec<String> {
        pods.iter().map(|p| p.metadata.name.clone().unwrap_or_default()).collect()
    }

    #[test]
    fn scale_down_ranking_follows_upstream() {
        let pods = vec![
            pod("running-ready-old", "n1", "Running", true, 100_000),
            pod("running-ready-new", "n2", "Running", true, 10),
            pod("unscheduled", "", "Pending", false, 50),
            pod("pending", "n1", "Pending", false, 50),
            pod("running-notready", "n2", "Running", false, 50),
        ];
        let got = names(&pods_to_delete(&pods, &[], 4));
        assert_eq!(got, vec!["unscheduled", "pending", "running-notready", "running-ready-new"]);
        // Deleting all: no ranking needed.
        assert_eq!(pods_to_delete(&pods, &[], 9).len(), 5);
    }

    #[test]
    fn doubled_up_pods_go_first() {
        let a = pod("a", "n1", "Running", true, 1000);
        let b = pod("b", "n2", "Running", true, 1000);
        let c = pod("c", "n2", "Running", true, 1000);
        let all = vec![a.clone(), b.clone(), c.clone()];
        let got = names(&pods_to_delete(&[a, b], &all, 1));
        assert_eq!(got, vec!["b"]);
    }

    #[test]
    fn status_counts_ready_and_available() {
        let rs: ReplicaSet = serde_json::from_value(json!({
            "metadata": {"name": "rs", "namespace": "default", "generation": 2},
            "spec": {"replicas": 3, "minReadySeconds": 0, "selector": {"matchLabels": {"app": "x"}},
                     "template": {"metadata": {"labels": {"app": "x", "tier": "web"}}}}
        }))
        .expect("rs");
        let mut p1 = (*pod("p1", "n1", "Running", true, 10)).clone();
        p1.metadata.labels = Some([("app".to_string(), "x".to_string()), ("tier".into(), "web".into())].into());
        let p2 = pod("p2", "n1", "Pending", false, 10);
        let st = calculate_status(&rs, &[Arc::new(p1), p2], None);
        assert_eq!(st.replicas, 2);
        assert_eq!(st.fully_labeled_replicas, Some(1));
        assert_eq!(st.ready_replicas, Some(1));
        assert_eq!(st.available_replicas, Some(1));
        let err = SyncError::from("quota");
        let st = calculate_status(&rs, &[], Some(&err));
        let cond = st.conditions.expect("condition");
        assert_eq!(cond[0].reason.as_deref(), Some("FailedCreate"));
    }

    #[tokio::test]
    async fn slow_start_stops_at_first_failing_batch() {
        let calls = std::sync::atomic::AtomicUsize::new(0);
        let (ok, err) = slow_start_batch(10, 1, || {
            let n = calls.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            async move {
                if n >= 3 {
                    Err(SyncError::from("boom"))
                } else {
                    Ok(())
                }
            }
        })
        .await;
        // Batches of 1, 2, then 4 (which fails).
        assert_eq!(ok, 3);
        assert!(err.is_some());
        assert_eq!(calls.load(std::sync::atomic::Ordering::SeqCst), 7);
    }
}
