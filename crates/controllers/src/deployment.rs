//! Deployment controller (upstream `pkg/controller/deployment/`:
//! `deployment_controller.go`, `sync.go`, `rolling.go`, `recreate.go`,
//! `progress.go`, `util/deployment_util.go`): rolls a Deployment's pod
//! template out through ReplicaSets named `<deployment>-<pod-template-hash>`,
//! RollingUpdate (maxSurge/maxUnavailable) or Recreate, with proportional
//! scaling, revision annotations (what `kubectl rollout history|undo` read),
//! `revisionHistoryLimit` cleanup, and status with the Available and
//! Progressing conditions (what `kubectl rollout status` waits for).

use crate::events::{Recorder, NORMAL, WARNING};
use crate::informer::Key;
use crate::queue::{resync, run_workers, Queue};
use crate::replicaset::nonzero;
use crate::{metrics, util, Ctx, SyncError};
use k8s_openapi::api::apps::v1::{Deployment, DeploymentCondition, DeploymentStatus, ReplicaSet, ReplicaSetSpec};
use k8s_openapi::api::core::v1::{Pod, PodTemplateSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::api::{Api, DeleteParams, ObjectMeta, Patch, PatchParams, PostParams};
use serde_json::{json, Value};
use std::cmp::Ordering;
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;
use tokio::task::JoinHandle;

const COMPONENT: &str = "deployment-controller";
pub const REVISION: &str = "deployment.kubernetes.io/revision";
const REVISION_HISTORY: &str = "deployment.kubernetes.io/revision-history";
const DESIRED_REPLICAS: &str = "deployment.kubernetes.io/desired-replicas";
const MAX_REPLICAS: &str = "deployment.kubernetes.io/max-replicas";
const LAST_APPLIED: &str = "kubectl.kubernetes.io/last-applied-configuration";
const ROLLBACK_TO: &str = "deprecated.deployment.rollback.to";
pub const HASH_LABEL: &str = "pod-template-hash";
/// Upstream `maxRevHistoryLengthInChars`.
const MAX_REV_HISTORY_CHARS: usize = 2000;

// Condition reasons (upstream `util/deployment_util.go`).
const REASON_RS_UPDATED: &str = "ReplicaSetUpdated";
const REASON_FAILED_RS_CREATE: &str = "ReplicaSetCreateError";
const REASON_NEW_RS_CREATED: &str = "NewReplicaSetCreated";
const REASON_FOUND_NEW_RS: &str = "FoundNewReplicaSet";
const REASON_NEW_RS_AVAILABLE: &str = "NewReplicaSetAvailable";
const REASON_TIMED_OUT: &str = "ProgressDeadlineExceeded";
const REASON_PAUSED: &str = "DeploymentPaused";
const REASON_RESUMED: &str = "DeploymentResumed";
const REASON_MIN_AVAILABLE: &str = "MinimumReplicasAvailable";
const REASON_MIN_UNAVAILABLE: &str = "MinimumReplicasUnavailable";

pub fn start(ctx: &Ctx, tasks: &mut Vec<JoinHandle<()>>) {
    let (recorder, rec_task) = Recorder::new(ctx.client.clone(), COMPONENT);
    tasks.push(rec_task);
    let c = Arc::new(Dc {
        client: ctx.client.clone(),
        inf: ctx.inf.clone(),
        queue: Queue::new(metrics::register("deployment")),
        recorder,
    });
    ctx.inf.deployments.on_change_weak(&c, |h, old, new| {
        if let Some(d) = new.or(old) {
            h.queue.add(Key::of(d));
        }
    });
    ctx.inf.replicasets.on_change_weak(&c, |h, old, new| h.on_rs(old, new));
    ctx.inf.pods.on_change_weak(&c, |h, old, new| h.on_pod(old, new));
    let (workers, period) = (ctx.config.workers, ctx.config.resync_period);
    tasks.push(tokio::spawn(async move {
        c.inf.wait_ready().await;
        tracing::debug!(controller = c.queue.name(), "caches synced, starting workers");
        let k = c.clone();
        let keys = move || k.inf.deployments.list().iter().map(|d| Key::of(&**d)).collect();
        let s = c.clone();
        let sync = move |key: Key| {
            let s = s.clone();
            async move { s.sync(&key).await }
        };
        tokio::join!(run_workers(c.queue.clone(), workers, sync), resync(c.queue.clone(), period, keys));
    }));
}

struct Dc {
    client: kube::Client,
    inf: Arc<crate::informer::Informers>,
    queue: Arc<Queue>,
    recorder: Recorder,
}

// ---- small accessors ----

fn d_replicas(d: &Deployment) -> i32 {
    d.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1)
}

fn rs_replicas(rs: &ReplicaSet) -> i32 {
    rs.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1)
}

fn rs_status(rs: &ReplicaSet) -> (i32, i32, i32) {
    let st = rs.status.clone().unwrap_or_default();
    (st.replicas, st.ready_replicas.unwrap_or(0), st.available_replicas.unwrap_or(0))
}

fn annotation<'a>(meta: &'a ObjectMeta, key: &str) -> Option<&'a str> {
    meta.annotations.as_ref()?.get(key).map(String::as_str)
}

fn template(d: &Deployment) -> PodTemplateSpec {
    d.spec.as_ref().map(|s| s.template.clone()).unwrap_or_default()
}

fn is_rolling(d: &Deployment) -> bool {
    d.spec.as_ref().and_then(|s| s.strategy.as_ref()).and_then(|s| s.type_.as_deref()).unwrap_or("RollingUpdate")
        == "RollingUpdate"
}

fn is_paused(d: &Deployment) -> bool {
    d.spec.as_ref().and_then(|s| s.paused).unwrap_or(false)
}

fn progress_deadline(d: &Deployment) -> Option<i32> {
    d.spec.as_ref().and_then(|s| s.progress_deadline_seconds).filter(|s| *s != i32::MAX)
}

/// `Revision`: the revision annotation (missing = 0, unparsable = None).
fn revision(meta: &ObjectMeta) -> Option<i64> {
    match annotation(meta, REVISION) {
        None => Some(0),
        Some(v) => v.parse().ok(),
    }
}

fn max_revision(rss: &[ReplicaSet]) -> i64 {
    rss.iter().filter_map(|rs| revision(&rs.metadata)).max().unwrap_or(0)
}

/// `GetScaledValueFromIntOrPercent`.
pub(crate) fn scaled_value(v: Option<&IntOrString>, total: i32, round_up: bool) -> i32 {
    match v {
        None => 0,
        Some(IntOrString::Int(i)) => *i,
        Some(IntOrString::String(s)) => {
            let Some(p) = s.strip_suffix('%').and_then(|p| p.parse::<i64>().ok()) else { return 0 };
            let num = p * i64::from(total);
            let v = if round_up { (num + 99).div_euclid(100) } else { num.div_euclid(100) };
            v as i32
        }
    }
}

/// `ResolveFenceposts`: maxSurge rounds up, maxUnavailable down; both 0 gives
/// maxUnavailable 1.
fn resolve_fenceposts(d: &Deployment, desired: i32) -> (i32, i32) {
    let ru = d.spec.as_ref().and_then(|s| s.strategy.as_ref()).and_then(|s| s.rolling_update.as_ref());
    let surge = scaled_value(ru.and_then(|r| r.max_surge.as_ref()), desired, true);
    let mut unavailable = scaled_value(ru.and_then(|r| r.max_unavailable.as_ref()), desired, false);
    if surge == 0 && unavailable == 0 {
        unavailable = 1;
    }
    (surge, unavailable)
}

fn max_surge(d: &Deployment) -> i32 {
    if !is_rolling(d) {
        return 0;
    }
    resolve_fenceposts(d, d_replicas(d)).0
}

fn max_unavailable(d: &Deployment) -> i32 {
    if !is_rolling(d) || d_replicas(d) == 0 {
        return 0;
    }
    resolve_fenceposts(d, d_replicas(d)).1.min(d_replicas(d))
}

/// `controller.ComputeHash`: FNV-32a of the pod template (and the collision
/// count), safe-encoded. Upstream hashes Go's printed struct; we hash its
/// JSON, so values differ from a real cluster's but are stable and unique.
pub fn compute_hash(template: &PodTemplateSpec, collision_count: Option<i32>) -> String {
    let mut h = util::Fnv32a::new();
    h.write(&serde_json::to_vec(template).unwrap_or_default());
    if let Some(c) = collision_count {
        let mut bytes = [0u8; 8];
        bytes[..4].copy_from_slice(&(c as u32).to_le_bytes());
        h.write(&bytes);
    }
    util::safe_encode(&h.sum32().to_string())
}

/// JSON with empty maps, lists and nulls dropped: Go's semantic equality
/// treats nil and empty alike.
fn normalized(v: Value) -> Value {
    match v {
        Value::Object(m) => Value::Object(
            m.into_iter()
                .map(|(k, v)| (k, normalized(v)))
                .filter(|(_, v)| match v {
                    Value::Null => false,
                    Value::Object(m) => !m.is_empty(),
                    Value::Array(a) => !a.is_empty(),
                    _ => true,
                })
                .collect(),
        ),
        Value::Array(a) => Value::Array(a.into_iter().map(normalized).collect()),
        other => other,
    }
}

/// `EqualIgnoreHash`: templates equal apart from the pod-template-hash label.
pub fn equal_ignore_hash(a: &PodTemplateSpec, b: &PodTemplateSpec) -> bool {
    let strip = |t: &PodTemplateSpec| {
        let mut t = t.clone();
        if let Some(l) = t.metadata.as_mut().and_then(|m| m.labels.as_mut()) {
            l.remove(HASH_LABEL);
        }
        normalized(serde_json::to_value(t).unwrap_or_default())
    };
    strip(a) == strip(b)
}

fn by_creation(a: &ReplicaSet, b: &ReplicaSet) -> Ordering {
    let (ta, tb) = (&a.metadata.creation_timestamp, &b.metadata.creation_timestamp);
    if ta == tb {
        a.metadata.name.cmp(&b.metadata.name)
    } else {
        ta.as_ref().map(|t| t.0).cmp(&tb.as_ref().map(|t| t.0))
    }
}

fn by_size_older(a: &ReplicaSet, b: &ReplicaSet) -> Ordering {
    rs_replicas(b).cmp(&rs_replicas(a)).then_with(|| by_creation(a, b))
}

fn by_size_newer(a: &ReplicaSet, b: &ReplicaSet) -> Ordering {
    rs_replicas(b).cmp(&rs_replicas(a)).then_with(|| by_creation(b, a))
}

fn by_revision(a: &ReplicaSet, b: &ReplicaSet) -> Ordering {
    let (ra, rb) = (revision(&a.metadata).unwrap_or(0), revision(&b.metadata).unwrap_or(0));
    ra.cmp(&rb).then_with(|| by_creation(a, b))
}

fn active(rss: &[ReplicaSet]) -> Vec<ReplicaSet> {
    rss.iter().filter(|rs| rs_replicas(rs) > 0).cloned().collect()
}

fn sum_replicas(rss: &[&ReplicaSet]) -> i32 {
    rss.iter().map(|rs| rs_replicas(rs)).sum()
}

fn all_with(old: &[ReplicaSet], new: Option<&ReplicaSet>) -> Vec<ReplicaSet> {
    old.iter().cloned().chain(new.cloned()).collect()
}

/// `FindNewReplicaSet`: the oldest ReplicaSet whose template is the Deployment's.
fn find_new_rs(d: &Deployment, rs_list: &[ReplicaSet]) -> Option<ReplicaSet> {
    let t = template(d);
    let mut sorted: Vec<&ReplicaSet> = rs_list.iter().collect();
    sorted.sort_by(|a, b| by_creation(a, b));
    sorted
        .into_iter()
        .find(|rs| rs.spec.as_ref().and_then(|s| s.template.as_ref()).is_some_and(|rt| equal_ignore_hash(rt, &t)))
        .cloned()
}

/// `FindOldReplicaSets`: every ReplicaSet but the new one.
fn find_old_rss(d: &Deployment, rs_list: &[ReplicaSet]) -> Vec<ReplicaSet> {
    let new_uid = find_new_rs(d, rs_list).and_then(|rs| rs.metadata.uid);
    rs_list.iter().filter(|rs| new_uid.is_none() || rs.metadata.uid != new_uid).cloned().collect()
}

/// `NewRSNewReplicas`: how far the new ReplicaSet may be scaled up now.
fn new_rs_new_replicas(d: &Deployment, all: &[ReplicaSet], new_rs: &ReplicaSet) -> i32 {
    if !is_rolling(d) {
        return d_replicas(d);
    }
    let surge = scaled_value(
        d.spec
            .as_ref()
            .and_then(|s| s.strategy.as_ref())
            .and_then(|s| s.rolling_update.as_ref())
            .and_then(|r| r.max_surge.as_ref()),
        d_replicas(d),
        true,
    );
    let current: i32 = all.iter().map(rs_replicas).sum();
    let max_total = d_replicas(d) + surge;
    if current >= max_total {
        return rs_replicas(new_rs);
    }
    let up = (max_total - current).min(d_replicas(d) - rs_replicas(new_rs));
    rs_replicas(new_rs) + up
}

/// `SetReplicasAnnotations`; returns whether anything changed.
fn set_replicas_annotations(rs: &mut ReplicaSet, desired: i32, max: i32) -> bool {
    let ann = rs.metadata.annotations.get_or_insert_with(BTreeMap::new);
    let mut changed = false;
    for (k, v) in [(DESIRED_REPLICAS, desired), (MAX_REPLICAS, max)] {
        let v = v.to_string();
        if ann.get(k) != Some(&v) {
            ann.insert(k.to_string(), v);
            changed = true;
        }
    }
    changed
}

fn replicas_annotations_need_update(rs: &ReplicaSet, desired: i32, max: i32) -> bool {
    annotation(&rs.metadata, DESIRED_REPLICAS) != Some(desired.to_string().as_str())
        || annotation(&rs.metadata, MAX_REPLICAS) != Some(max.to_string().as_str())
}

fn skip_copy_annotation(k: &str) -> bool {
    matches!(k, LAST_APPLIED | REVISION | REVISION_HISTORY | DESIRED_REPLICAS | MAX_REPLICAS | ROLLBACK_TO)
}

/// `SetNewReplicaSetAnnotations`: copies the Deployment's annotations, sets
/// the revision (keeping the previous ones in revision-history on a rollback)
/// and, for a new ReplicaSet, the replicas annotations.
fn set_new_rs_annotations(d: &Deployment, rs: &mut ReplicaSet, new_revision: i64, exists: bool) -> bool {
    let mut changed = false;
    let ann = rs.metadata.annotations.get_or_insert_with(BTreeMap::new);
    for (k, v) in d.metadata.annotations.iter().flatten() {
        if skip_copy_annotation(k) || ann.get(k) == Some(v) {
            continue;
        }
        ann.insert(k.clone(), v.clone());
        changed = true;
    }
    let old_revision = ann.get(REVISION).cloned();
    let old_int = match old_revision.as_deref() {
        None | Some("") => 0,
        Some(v) => match v.parse::<i64>() {
            Ok(n) => n,
            Err(_) => return false,
        },
    };
    if old_int < new_revision {
        ann.insert(REVISION.to_string(), new_revision.to_string());
        changed = true;
        if let Some(old) = old_revision.filter(|o| !o.is_empty()) {
            let history = ann.get(REVISION_HISTORY).cloned().unwrap_or_default();
            if history.is_empty() {
                ann.insert(REVISION_HISTORY.to_string(), old);
            } else {
                let mut olds: Vec<&str> = history.split(',').collect();
                let mut total = history.len() + old.len() + 1;
                let mut start = 0;
                while total > MAX_REV_HISTORY_CHARS && start < olds.len() {
                    total -= olds[start].len() + 1;
                    start += 1;
                }
                if total <= MAX_REV_HISTORY_CHARS {
                    olds = olds.split_off(start);
                    olds.push(&old);
                    let joined = olds.join(",");
                    ann.insert(REVISION_HISTORY.to_string(), joined);
                }
            }
        }
    }
    if !exists && set_replicas_annotations(rs, d_replicas(d), d_replicas(d) + max_surge(d)) {
        changed = true;
    }
    changed
}

fn condition<'a>(st: &'a DeploymentStatus, type_: &str) -> Option<&'a DeploymentCondition> {
    st.conditions.as_ref()?.iter().find(|c| c.type_ == type_)
}

fn new_condition(type_: &str, status: &str, reason: &str, message: String) -> DeploymentCondition {
    let now = util::now();
    DeploymentCondition {
        type_: type_.to_string(),
        status: status.to_string(),
        reason: Some(reason.to_string()),
        message: Some(message),
        last_update_time: Some(now.clone()),
        last_transition_time: Some(now),
    }
}

/// `SetDeploymentCondition`: no change for the same status and reason; the
/// transition time is kept while the status stays.
fn set_condition(st: &mut DeploymentStatus, mut c: DeploymentCondition) {
    if let Some(cur) = condition(st, &c.type_) {
        if cur.status == c.status && cur.reason == c.reason {
            return;
        }
        if cur.status == c.status {
            c.last_transition_time = cur.last_transition_time.clone();
        }
    }
    remove_condition(st, &c.type_);
    st.conditions.get_or_insert_with(Vec::new).push(c);
}

fn remove_condition(st: &mut DeploymentStatus, type_: &str) {
    if let Some(cs) = st.conditions.as_mut() {
        cs.retain(|c| c.type_ != type_);
        if cs.is_empty() {
            st.conditions = None;
        }
    }
}

/// `DeploymentComplete`.
fn deployment_complete(d: &Deployment, st: &DeploymentStatus) -> bool {
    let n = d_replicas(d);
    st.updated_replicas.unwrap_or(0) == n
        && st.replicas.unwrap_or(0) == n
        && st.available_replicas.unwrap_or(0) == n
        && st.observed_generation.unwrap_or(0) >= d.metadata.generation.unwrap_or(0)
}

/// `DeploymentProgressing`.
fn deployment_progressing(d: &Deployment, new: &DeploymentStatus) -> bool {
    let old = d.status.clone().unwrap_or_default();
    let old_old = old.replicas.unwrap_or(0) - old.updated_replicas.unwrap_or(0);
    let new_old = new.replicas.unwrap_or(0) - new.updated_replicas.unwrap_or(0);
    new.updated_replicas.unwrap_or(0) > old.updated_replicas.unwrap_or(0)
        || new_old < old_old
        || new.ready_replicas.unwrap_or(0) > old.ready_replicas.unwrap_or(0)
        || new.available_replicas.unwrap_or(0) > old.available_replicas.unwrap_or(0)
}

/// `DeploymentTimedOut`.
fn deployment_timed_out(d: &Deployment, st: &DeploymentStatus) -> bool {
    let Some(deadline) = progress_deadline(d) else { return false };
    let Some(c) = condition(st, "Progressing") else { return false };
    match c.reason.as_deref() {
        Some(REASON_NEW_RS_AVAILABLE) => false,
        Some(REASON_TIMED_OUT) => true,
        _ => c
            .last_update_time
            .as_ref()
            .is_some_and(|t| util::since(t) > k8s_openapi::jiff::SignedDuration::from_secs(i64::from(deadline))),
    }
}

/// `calculateStatus` (sync.go).
fn calculate_status(all: &[ReplicaSet], new_rs: Option<&ReplicaSet>, d: &Deployment) -> DeploymentStatus {
    let available: i32 = all.iter().map(|rs| rs_status(rs).2).sum();
    let total: i32 = all.iter().map(rs_replicas).sum();
    let unavailable = (total - available).max(0);
    let cur = d.status.clone().unwrap_or_default();
    let mut st = DeploymentStatus {
        observed_generation: d.metadata.generation,
        replicas: nonzero(all.iter().map(|rs| rs_status(rs).0).sum()),
        updated_replicas: nonzero(new_rs.map(|rs| rs_status(rs).0).unwrap_or(0)),
        ready_replicas: nonzero(all.iter().map(|rs| rs_status(rs).1).sum()),
        available_replicas: nonzero(available),
        unavailable_replicas: nonzero(unavailable),
        collision_count: cur.collision_count,
        conditions: cur.conditions,
        terminating_replicas: None,
    };
    if available >= d_replicas(d) - max_unavailable(d) {
        let c = new_condition("Available", "True", REASON_MIN_AVAILABLE, "Deployment has minimum availability.".into());
        set_condition(&mut st, c);
    } else {
        let c = new_condition(
            "Available",
            "False",
            REASON_MIN_UNAVAILABLE,
            "Deployment does not have minimum availability.".into(),
        );
        set_condition(&mut st, c);
    }
    st
}

/// Statuses compare equal when they differ only in omitted zeros.
fn status_equal(a: &DeploymentStatus, b: &DeploymentStatus) -> bool {
    normalized(serde_json::to_value(a).unwrap_or_default()) == normalized(serde_json::to_value(b).unwrap_or_default())
}

impl Dc {
    // ---- event handlers ----

    fn resolve(&self, namespace: &str, r: &OwnerReference) -> Option<Arc<Deployment>> {
        if r.kind != "Deployment" {
            return None;
        }
        let d = self.inf.deployments.get(namespace, &r.name)?;
        (d.metadata.uid.as_deref() == Some(r.uid.as_str())).then_some(d)
    }

    /// `getDeploymentsForReplicaSet`: Deployments selecting an orphan ReplicaSet.
    fn deployments_for_rs(&self, rs: &ReplicaSet) -> Vec<Arc<Deployment>> {
        let ns = rs.metadata.namespace.as_deref().unwrap_or_default();
        self.inf
            .deployments
            .list_ns(ns)
            .into_iter()
            .filter(|d| {
                d.spec.as_ref().is_some_and(|s| {
                    !util::selector_is_empty(&s.selector)
                        && util::selector_matches(&s.selector, rs.metadata.labels.as_ref())
                })
            })
            .collect()
    }

    fn on_rs(&self, old: Option<&ReplicaSet>, new: Option<&ReplicaSet>) {
        let enqueue_owner = |rs: &ReplicaSet| {
            let ns = rs.metadata.namespace.as_deref().unwrap_or_default();
            match util::controller_of(&rs.metadata) {
                Some(r) => {
                    if let Some(d) = self.resolve(ns, r) {
                        self.queue.add(Key::of(&*d));
                    }
                    true
                }
                None => false,
            }
        };
        match (old, new) {
            (None, Some(rs)) => {
                if !enqueue_owner(rs) {
                    for d in self.deployments_for_rs(rs) {
                        self.queue.add(Key::of(&*d));
                    }
                }
            }
            (Some(old), Some(cur)) => {
                if old.metadata.resource_version == cur.metadata.resource_version {
                    return;
                }
                let (oref, cref) = (util::controller_of(&old.metadata), util::controller_of(&cur.metadata));
                if oref != cref && oref.is_some() {
                    enqueue_owner(old);
                }
                if enqueue_owner(cur) {
                    return;
                }
                if old.metadata.labels != cur.metadata.labels || oref != cref {
                    for d in self.deployments_for_rs(cur) {
                        self.queue.add(Key::of(&*d));
                    }
                }
            }
            (Some(rs), None) => {
                enqueue_owner(rs);
            }
            (None, None) => {}
        }
    }

    /// Pods going away wake a Recreate rollout waiting for old pods.
    fn on_pod(&self, old: Option<&Pod>, new: Option<&Pod>) {
        let gone = match (old, new) {
            (Some(p), None) => Some(p),
            (Some(o), Some(n))
                if o.metadata.deletion_timestamp.is_none() && n.metadata.deletion_timestamp.is_some() =>
            {
                Some(n)
            }
            (_, Some(n)) if util::is_pod_terminal(n) => Some(n),
            _ => None,
        };
        let Some(pod) = gone else { return };
        let ns = pod.metadata.namespace.as_deref().unwrap_or_default();
        let Some(r) = util::controller_of(&pod.metadata).filter(|r| r.kind == "ReplicaSet") else { return };
        let Some(rs) = self.inf.replicasets.get(ns, &r.name) else { return };
        if let Some(d) = util::controller_of(&rs.metadata).and_then(|r| self.resolve(ns, r)) {
            if !is_rolling(&d) {
                self.queue.add(Key::of(&*d));
            }
        }
    }

    // ---- sync ----

    async fn sync(&self, key: &Key) -> Result<(), SyncError> {
        let Some(cached) = self.inf.deployments.get_key(key) else { return Ok(()) };
        let mut d = (*cached).clone();
        let selector = d.spec.as_ref().map(|s| s.selector.clone()).unwrap_or_default();
        if util::selector_is_empty(&selector) {
            self.recorder.event(
                &d,
                WARNING,
                "SelectingAll",
                "This deployment is selecting all pods. A non-empty selector is required.".into(),
            );
            let st = d.status.get_or_insert_with(Default::default);
            if st.observed_generation.unwrap_or(0) < d.metadata.generation.unwrap_or(0) {
                st.observed_generation = d.metadata.generation;
                self.write_status(&mut d).await?;
            }
            return Ok(());
        }
        let mut rs_list = self.claim_replicasets(&d).await?;
        if d.metadata.deletion_timestamp.is_some() {
            let (new_rs, old) = self.get_all_rs_and_sync_revision(&mut d, &mut rs_list, false).await?;
            return self.sync_deployment_status(&all_with(&old, new_rs.as_ref()), new_rs.as_ref(), &mut d).await;
        }
        self.check_paused_conditions(&mut d).await?;
        if is_paused(&d) {
            return self.sync_scale(&mut d, &mut rs_list).await;
        }
        if self.is_scaling_event(&mut d, &mut rs_list).await? {
            return self.sync_scale(&mut d, &mut rs_list).await;
        }
        if is_rolling(&d) {
            self.rollout_rolling(&mut d, &mut rs_list).await
        } else {
            self.rollout_recreate(&mut d, &mut rs_list).await
        }
    }

    /// `ClaimReplicaSets`: adopt matching orphans, release non-matching ones.
    async fn claim_replicasets(&self, d: &Deployment) -> Result<Vec<ReplicaSet>, SyncError> {
        let ns = d.metadata.namespace.as_deref().unwrap_or_default();
        let uid = d.metadata.uid.clone().unwrap_or_default();
        let selector = d.spec.as_ref().map(|s| s.selector.clone()).unwrap_or_default();
        let deleting = d.metadata.deletion_timestamp.is_some();
        let mut claimed = Vec::new();
        let mut first_err: Option<SyncError> = None;
        let mut can_adopt: Option<Result<(), String>> = None;
        for rs in self.inf.replicasets.list_ns(ns) {
            let matches = util::selector_matches(&selector, rs.metadata.labels.as_ref());
            match util::controller_of(&rs.metadata) {
                Some(r) if r.uid != uid => {}
                Some(_) => {
                    if matches {
                        claimed.push((*rs).clone());
                    } else if !deleting {
                        let refs: Vec<&OwnerReference> =
                            rs.metadata.owner_references.iter().flatten().filter(|r| r.uid != uid).collect();
                        let refs = if refs.is_empty() { Value::Null } else { json!(refs) };
                        if let Err(e) = util::patch_owner_refs(&self.client, &*rs, refs).await {
                            if !util::is_not_found(&e) {
                                first_err.get_or_insert(e.into());
                            }
                        }
                    }
                }
                None => {
                    if deleting || !matches || rs.metadata.deletion_timestamp.is_some() {
                        continue;
                    }
                    if can_adopt.is_none() {
                        can_adopt = Some(self.recheck_deletion(d).await);
                    }
                    if let Some(Err(e)) = &can_adopt {
                        first_err
                            .get_or_insert(SyncError::from(format!("can't adopt ReplicaSet {}: {e}", Key::of(&*rs))));
                        continue;
                    }
                    let mut refs = rs.metadata.owner_references.clone().unwrap_or_default();
                    refs.push(util::new_controller_ref(&d.metadata, "apps/v1", "Deployment"));
                    match util::patch_owner_refs(&self.client, &*rs, json!(refs)).await {
                        Ok(updated) => claimed.push(updated),
                        Err(e) if util::is_not_found(&e) => {}
                        Err(e) => {
                            first_err.get_or_insert(e.into());
                        }
                    }
                }
            }
        }
        match first_err {
            Some(e) => Err(e),
            None => Ok(claimed),
        }
    }

    async fn recheck_deletion(&self, d: &Deployment) -> Result<(), String> {
        let key = Key::of(d);
        let api: Api<Deployment> = Api::namespaced(self.client.clone(), &key.namespace);
        let fresh = api.get(&key.name).await.map_err(|e| e.to_string())?;
        if fresh.metadata.uid != d.metadata.uid {
            return Err(format!("original Deployment {key} is gone"));
        }
        if fresh.metadata.deletion_timestamp.is_some() {
            return Err(format!("Deployment {key} has just been deleted"));
        }
        Ok(())
    }

    /// Pods of the Deployment's ReplicaSets, by ReplicaSet uid (`getPodMapForDeployment`).
    fn pod_map(&self, d: &Deployment, rs_list: &[ReplicaSet]) -> HashMap<String, Vec<Arc<Pod>>> {
        let ns = d.metadata.namespace.as_deref().unwrap_or_default();
        let selector = d.spec.as_ref().map(|s| s.selector.clone()).unwrap_or_default();
        let mut map: HashMap<String, Vec<Arc<Pod>>> = HashMap::new();
        for rs in rs_list {
            map.insert(rs.metadata.uid.clone().unwrap_or_default(), Vec::new());
        }
        for pod in self.inf.pods.list_ns(ns) {
            if !util::selector_matches(&selector, pod.metadata.labels.as_ref()) {
                continue;
            }
            if let Some(r) = util::controller_of(&pod.metadata) {
                if let Some(v) = map.get_mut(&r.uid) {
                    v.push(pod);
                }
            }
        }
        map
    }

    /// Writes the working copy's status (`UpdateStatus`) and takes the result.
    async fn write_status(&self, d: &mut Deployment) -> Result<(), SyncError> {
        let key = Key::of(&*d);
        let api: Api<Deployment> = Api::namespaced(self.client.clone(), &key.namespace);
        *d = api.replace_status(&key.name, &PostParams::default(), d).await?;
        Ok(())
    }

    /// Upstream writes the revision annotation with the status (its status
    /// strategy keeps metadata); here metadata goes through the main resource.
    async fn write_revision(&self, d: &mut Deployment, revision: &str) -> Result<(), SyncError> {
        let key = Key::of(&*d);
        let api: Api<Deployment> = Api::namespaced(self.client.clone(), &key.namespace);
        let patch = json!({ "metadata": {
            "annotations": { REVISION: revision },
            "resourceVersion": d.metadata.resource_version,
        }});
        let updated = api.patch(&key.name, &PatchParams::default(), &Patch::Merge(&patch)).await?;
        d.metadata = updated.metadata;
        Ok(())
    }

    /// `SetDeploymentRevision` + persist; returns whether it changed.
    async fn sync_revision_annotation(&self, d: &mut Deployment, revision: &str) -> Result<bool, SyncError> {
        if annotation(&d.metadata, REVISION) == Some(revision) {
            return Ok(false);
        }
        self.write_revision(d, revision).await?;
        Ok(true)
    }

    /// `getAllReplicaSetsAndSyncRevision`; a ReplicaSet it updates is updated
    /// in `rs_list` too.
    async fn get_all_rs_and_sync_revision(
        &self,
        d: &mut Deployment,
        rs_list: &mut Vec<ReplicaSet>,
        create: bool,
    ) -> Result<(Option<ReplicaSet>, Vec<ReplicaSet>), SyncError> {
        let old = find_old_rss(d, rs_list);
        let new_rs = self.get_new_rs(d, rs_list, &old, create).await?;
        if let Some(rs) = &new_rs {
            match rs_list.iter_mut().find(|r| r.metadata.uid == rs.metadata.uid) {
                Some(slot) => *slot = rs.clone(),
                None => rs_list.push(rs.clone()),
            }
        }
        Ok((new_rs, old))
    }

    /// `getNewReplicaSet`.
    async fn get_new_rs(
        &self,
        d: &mut Deployment,
        rs_list: &[ReplicaSet],
        old: &[ReplicaSet],
        create: bool,
    ) -> Result<Option<ReplicaSet>, SyncError> {
        let key = Key::of(&*d);
        let rs_api: Api<ReplicaSet> = Api::namespaced(self.client.clone(), &key.namespace);
        let new_revision = max_revision(old) + 1;
        if let Some(existing) = find_new_rs(d, rs_list) {
            let mut copy = existing.clone();
            let annotations_updated = set_new_rs_annotations(d, &mut copy, new_revision, true);
            let min_ready = d.spec.as_ref().and_then(|s| s.min_ready_seconds);
            let rs_min_ready = copy.spec.as_ref().and_then(|s| s.min_ready_seconds);
            if annotations_updated || min_ready.unwrap_or(0) != rs_min_ready.unwrap_or(0) {
                if let Some(spec) = copy.spec.as_mut() {
                    spec.min_ready_seconds = min_ready.filter(|m| *m != 0);
                }
                let name = copy.metadata.name.clone().unwrap_or_default();
                return Ok(Some(rs_api.replace(&name, &PostParams::default(), &copy).await?));
            }
            let rev = annotation(&copy.metadata, REVISION).unwrap_or_default().to_string();
            let mut needs_status = false;
            self.sync_revision_annotation(d, &rev).await?;
            let has_deadline = progress_deadline(d).is_some();
            let st = d.status.get_or_insert_with(Default::default);
            if has_deadline && condition(st, "Progressing").is_none() {
                let msg = format!("Found new replica set \"{}\"", copy.metadata.name.as_deref().unwrap_or_default());
                set_condition(st, new_condition("Progressing", "True", REASON_FOUND_NEW_RS, msg));
                needs_status = true;
            }
            if needs_status {
                self.write_status(d).await?;
            }
            return Ok(Some(copy));
        }
        if !create {
            return Ok(None);
        }
        let collision = d.status.as_ref().and_then(|s| s.collision_count);
        let mut tmpl = template(d);
        let hash = compute_hash(&tmpl, collision);
        tmpl.metadata
            .get_or_insert_with(Default::default)
            .labels
            .get_or_insert_with(BTreeMap::new)
            .insert(HASH_LABEL.into(), hash.clone());
        let mut selector = d.spec.as_ref().map(|s| s.selector.clone()).unwrap_or_default();
        selector.match_labels.get_or_insert_with(BTreeMap::new).insert(HASH_LABEL.into(), hash.clone());
        let name = format!("{}-{hash}", key.name);
        let mut new_rs = ReplicaSet {
            metadata: ObjectMeta {
                name: Some(name.clone()),
                namespace: Some(key.namespace.clone()),
                owner_references: Some(vec![util::new_controller_ref(&d.metadata, "apps/v1", "Deployment")]),
                labels: tmpl.metadata.as_ref().and_then(|m| m.labels.clone()),
                ..Default::default()
            },
            spec: Some(ReplicaSetSpec {
                replicas: Some(0),
                min_ready_seconds: d.spec.as_ref().and_then(|s| s.min_ready_seconds).filter(|m| *m != 0),
                selector,
                template: Some(tmpl),
            }),
            status: None,
        };
        let all = all_with(old, Some(&new_rs));
        let new_replicas = new_rs_new_replicas(d, &all, &new_rs);
        if let Some(spec) = new_rs.spec.as_mut() {
            spec.replicas = Some(new_replicas);
        }
        set_new_rs_annotations(d, &mut new_rs, new_revision, false);
        let mut already_exists = false;
        let created = match rs_api.create(&PostParams::default(), &new_rs).await {
            Ok(rs) => rs,
            Err(e) if util::is_already_exists(&e) => {
                already_exists = true;
                let found = match self.inf.replicasets.get(&key.namespace, &name) {
                    Some(rs) => (*rs).clone(),
                    None => rs_api.get(&name).await?,
                };
                let owned = util::controller_of(&found.metadata).map(|r| &r.uid) == d.metadata.uid.as_ref();
                let same = found
                    .spec
                    .as_ref()
                    .and_then(|s| s.template.as_ref())
                    .is_some_and(|t| equal_ignore_hash(t, &template(d)));
                if !(owned && same) {
                    // A hash collision: bump collisionCount and retry with a new name.
                    let st = d.status.get_or_insert_with(Default::default);
                    st.collision_count = Some(st.collision_count.unwrap_or(0) + 1);
                    self.write_status(d).await?;
                    return Err(e.into());
                }
                found
            }
            Err(e) if util::is_namespace_terminating(&e) => return Err(e.into()),
            Err(e) => {
                let msg = format!("Failed to create new replica set \"{name}\": {}", util::api_message(&e));
                if progress_deadline(d).is_some() {
                    let st = d.status.get_or_insert_with(Default::default);
                    set_condition(st, new_condition("Progressing", "False", REASON_FAILED_RS_CREATE, msg.clone()));
                    let _ = self.write_status(d).await;
                }
                self.recorder.event(&*d, WARNING, REASON_FAILED_RS_CREATE, msg);
                return Err(e.into());
            }
        };
        if !already_exists && new_replicas > 0 {
            self.recorder.event(
                &*d,
                NORMAL,
                "ScalingReplicaSet",
                format!("Scaled up replica set {name} from 0 to {new_replicas}"),
            );
        }
        self.sync_revision_annotation(d, &new_revision.to_string()).await?;
        if !already_exists && progress_deadline(d).is_some() {
            let st = d.status.get_or_insert_with(Default::default);
            let msg = format!("Created new replica set \"{name}\"");
            set_condition(st, new_condition("Progressing", "True", REASON_NEW_RS_CREATED, msg));
            self.write_status(d).await?;
        }
        Ok(Some(created))
    }

    /// `checkPausedConditions`.
    async fn check_paused_conditions(&self, d: &mut Deployment) -> Result<(), SyncError> {
        if progress_deadline(d).is_none() {
            return Ok(());
        }
        let paused = is_paused(d);
        let st = d.status.get_or_insert_with(Default::default);
        let cond = condition(st, "Progressing");
        if cond.is_some_and(|c| c.reason.as_deref() == Some(REASON_TIMED_OUT)) {
            return Ok(());
        }
        let paused_cond = cond.is_some_and(|c| c.reason.as_deref() == Some(REASON_PAUSED));
        if paused && !paused_cond {
            set_condition(st, new_condition("Progressing", "Unknown", REASON_PAUSED, "Deployment is paused".into()));
        } else if !paused && paused_cond {
            set_condition(st, new_condition("Progressing", "Unknown", REASON_RESUMED, "Deployment is resumed".into()));
        } else {
            return Ok(());
        }
        self.write_status(d).await
    }

    /// `isScalingEvent`: an active ReplicaSet was sized for another replica count.
    async fn is_scaling_event(&self, d: &mut Deployment, rs_list: &mut Vec<ReplicaSet>) -> Result<bool, SyncError> {
        let (new_rs, old) = self.get_all_rs_and_sync_revision(d, rs_list, false).await?;
        let want = d_replicas(d);
        Ok(active(&all_with(&old, new_rs.as_ref())).iter().any(|rs| {
            annotation(&rs.metadata, DESIRED_REPLICAS).and_then(|v| v.parse::<i32>().ok()).is_some_and(|v| v != want)
        }))
    }

    /// `sync`: scaling (and cleanup while paused), then status.
    async fn sync_scale(&self, d: &mut Deployment, rs_list: &mut Vec<ReplicaSet>) -> Result<(), SyncError> {
        let (new_rs, old) = self.get_all_rs_and_sync_revision(d, rs_list, false).await?;
        let (new_rs, old) = self.scale(d, new_rs, old).await?;
        if is_paused(d) {
            self.cleanup(&old, d).await?;
        }
        self.sync_deployment_status(&all_with(&old, new_rs.as_ref()), new_rs.as_ref(), d).await
    }

    /// `scale`: proportional scaling of the active ReplicaSets.
    async fn scale(
        &self,
        d: &Deployment,
        new_rs: Option<ReplicaSet>,
        mut old: Vec<ReplicaSet>,
    ) -> Result<(Option<ReplicaSet>, Vec<ReplicaSet>), SyncError> {
        let want = d_replicas(d);
        // FindActiveOrLatest.
        old.sort_by(|a, b| by_creation(b, a));
        let all_active = active(&all_with(&old, new_rs.as_ref()));
        let target = match all_active.len() {
            0 => new_rs.clone().or_else(|| old.first().cloned()),
            1 => all_active.first().cloned(),
            _ => None,
        };
        if let Some(rs) = target {
            if rs_replicas(&rs) != want {
                self.scale_rs_and_record(&rs, want, d).await?;
            }
            return Ok((new_rs, old));
        }
        // IsSaturated: the new ReplicaSet is complete, old ones go to zero.
        let saturated = new_rs.as_ref().is_some_and(|rs| {
            rs_replicas(rs) == want
                && annotation(&rs.metadata, DESIRED_REPLICAS).and_then(|v| v.parse::<i32>().ok()) == Some(want)
                && rs_status(rs).2 == want
        });
        if saturated {
            for rs in active(&old) {
                self.scale_rs_and_record(&rs, 0, d).await?;
            }
            return Ok((new_rs, old));
        }
        if is_rolling(d) {
            let mut all = all_active;
            let current: i32 = sum_replicas(&all.iter().collect::<Vec<_>>());
            let allowed = if want > 0 { want + max_surge(d) } else { 0 };
            let to_add = allowed - current;
            let op = match to_add.cmp(&0) {
                Ordering::Greater => {
                    all.sort_by(by_size_newer);
                    "up"
                }
                Ordering::Less => {
                    all.sort_by(by_size_older);
                    "down"
                }
                Ordering::Equal => "",
            };
            let mut added = 0;
            let mut sizes: Vec<i32> = Vec::with_capacity(all.len());
            for rs in &all {
                if to_add != 0 {
                    let p = proportion(rs, d, to_add, added);
                    sizes.push(rs_replicas(rs) + p);
                    added += p;
                } else {
                    sizes.push(rs_replicas(rs));
                }
            }
            for (i, rs) in all.iter().enumerate() {
                if i == 0 && to_add != 0 {
                    sizes[0] = (sizes[0] + to_add - added).max(0);
                }
                self.scale_rs(rs, sizes[i], d, op).await?;
            }
        }
        Ok((new_rs, old))
    }

    async fn scale_rs_and_record(
        &self,
        rs: &ReplicaSet,
        new_scale: i32,
        d: &Deployment,
    ) -> Result<(bool, ReplicaSet), SyncError> {
        if rs_replicas(rs) == new_scale {
            return Ok((false, rs.clone()));
        }
        let op = if rs_replicas(rs) < new_scale { "up" } else { "down" };
        self.scale_rs(rs, new_scale, d, op).await
    }

    /// `scaleReplicaSet`: size and replicas annotations, one event per resize.
    async fn scale_rs(
        &self,
        rs: &ReplicaSet,
        new_scale: i32,
        d: &Deployment,
        op: &str,
    ) -> Result<(bool, ReplicaSet), SyncError> {
        let size_changes = rs_replicas(rs) != new_scale;
        let max = d_replicas(d) + max_surge(d);
        if !size_changes && !replicas_annotations_need_update(rs, d_replicas(d), max) {
            return Ok((false, rs.clone()));
        }
        let old_scale = rs_replicas(rs);
        let mut copy = rs.clone();
        if let Some(spec) = copy.spec.as_mut() {
            spec.replicas = Some(new_scale);
        }
        set_replicas_annotations(&mut copy, d_replicas(d), max);
        let key = Key::of(rs);
        let api: Api<ReplicaSet> = Api::namespaced(self.client.clone(), &key.namespace);
        let updated = api.replace(&key.name, &PostParams::default(), &copy).await?;
        if size_changes {
            self.recorder.event(
                d,
                NORMAL,
                "ScalingReplicaSet",
                format!("Scaled {op} replica set {} from {old_scale} to {new_scale}", key.name),
            );
        }
        Ok((size_changes, updated))
    }

    /// `cleanupDeployment`: deletes the oldest fully scaled-down ReplicaSets
    /// beyond `revisionHistoryLimit`.
    async fn cleanup(&self, old: &[ReplicaSet], d: &Deployment) -> Result<(), SyncError> {
        let Some(limit) = d.spec.as_ref().and_then(|s| s.revision_history_limit) else { return Ok(()) };
        let mut cleanable: Vec<&ReplicaSet> =
            old.iter().filter(|rs| rs.metadata.deletion_timestamp.is_none()).collect();
        let diff = cleanable.len() as i64 - i64::from(limit);
        if diff <= 0 {
            return Ok(());
        }
        cleanable.sort_by(|a, b| by_revision(a, b));
        let api: Api<ReplicaSet> =
            Api::namespaced(self.client.clone(), d.metadata.namespace.as_deref().unwrap_or_default());
        for rs in cleanable.into_iter().take(diff as usize) {
            let st = rs.status.clone().unwrap_or_default();
            if st.replicas != 0
                || rs_replicas(rs) != 0
                || rs.metadata.generation.unwrap_or(0) > st.observed_generation.unwrap_or(0)
            {
                continue;
            }
            let name = rs.metadata.name.clone().unwrap_or_default();
            match api.delete(&name, &DeleteParams::default()).await {
                Ok(_) => {}
                Err(e) if util::is_not_found(&e) => {}
                Err(e) => return Err(e.into()),
            }
        }
        Ok(())
    }

    /// `syncDeploymentStatus`.
    async fn sync_deployment_status(
        &self,
        all: &[ReplicaSet],
        new_rs: Option<&ReplicaSet>,
        d: &mut Deployment,
    ) -> Result<(), SyncError> {
        let st = calculate_status(all, new_rs, d);
        if status_equal(&d.status.clone().unwrap_or_default(), &st) {
            return Ok(());
        }
        d.status = Some(st);
        self.write_status(d).await
    }

    /// `rolloutRolling`.
    async fn rollout_rolling(&self, d: &mut Deployment, rs_list: &mut Vec<ReplicaSet>) -> Result<(), SyncError> {
        let (new_rs, old) = self.get_all_rs_and_sync_revision(d, rs_list, true).await?;
        let Some(new_rs) = new_rs else { return Ok(()) };
        let all = all_with(&old, Some(&new_rs));
        // Scale up, if we can.
        let (scaled_up, new_rs) = self.reconcile_new_rs(&all, &new_rs, d).await?;
        if scaled_up {
            return self.sync_rollout_status(&all_with(&old, Some(&new_rs)), Some(&new_rs), d).await;
        }
        // Scale down, if we can.
        let (scaled_down, old) = self.reconcile_old_rss(&all, active(&old), &new_rs, d, old).await?;
        if scaled_down {
            return self.sync_rollout_status(&all_with(&old, Some(&new_rs)), Some(&new_rs), d).await;
        }
        if deployment_complete(d, &d.status.clone().unwrap_or_default()) {
            self.cleanup(&old, d).await?;
        }
        self.sync_rollout_status(&all_with(&old, Some(&new_rs)), Some(&new_rs), d).await
    }

    /// `reconcileNewReplicaSet`.
    async fn reconcile_new_rs(
        &self,
        all: &[ReplicaSet],
        new_rs: &ReplicaSet,
        d: &Deployment,
    ) -> Result<(bool, ReplicaSet), SyncError> {
        let want = d_replicas(d);
        match rs_replicas(new_rs).cmp(&want) {
            Ordering::Equal => Ok((false, new_rs.clone())),
            Ordering::Greater => self.scale_rs_and_record(new_rs, want, d).await,
            Ordering::Less => {
                let n = new_rs_new_replicas(d, all, new_rs);
                self.scale_rs_and_record(new_rs, n, d).await
            }
        }
    }

    /// `reconcileOldReplicaSets`; returns whether anything was scaled down and
    /// the (updated) old ReplicaSets.
    async fn reconcile_old_rss(
        &self,
        all: &[ReplicaSet],
        old_active: Vec<ReplicaSet>,
        new_rs: &ReplicaSet,
        d: &Deployment,
        mut all_old: Vec<ReplicaSet>,
    ) -> Result<(bool, Vec<ReplicaSet>), SyncError> {
        let old_pods: i32 = old_active.iter().map(rs_replicas).sum();
        if old_pods == 0 {
            return Ok((false, all_old));
        }
        let all_pods: i32 = all.iter().map(rs_replicas).sum();
        let min_available = d_replicas(d) - max_unavailable(d);
        let new_unavailable = rs_replicas(new_rs) - rs_status(new_rs).2;
        let max_scaled_down = all_pods - min_available - new_unavailable;
        if max_scaled_down <= 0 {
            return Ok((false, all_old));
        }
        let (old_active, cleaned) = self.cleanup_unhealthy(old_active, d, max_scaled_down).await?;
        let all = all_with(&old_active, Some(new_rs));
        let (old_active, scaled) = self.scale_down_old_for_rolling(&all, old_active, d).await?;
        // Carry the updated objects into the full list of old ReplicaSets.
        for rs in old_active {
            if let Some(slot) = all_old.iter_mut().find(|o| o.metadata.uid == rs.metadata.uid) {
                *slot = rs;
            }
        }
        Ok((cleaned + scaled > 0, all_old))
    }

    /// `cleanupUnhealthyReplicas`: scale down unavailable old pods first.
    async fn cleanup_unhealthy(
        &self,
        mut old: Vec<ReplicaSet>,
        d: &Deployment,
        max_cleanup: i32,
    ) -> Result<(Vec<ReplicaSet>, i32), SyncError> {
        old.sort_by(by_creation);
        let mut total = 0;
        for rs in old.iter_mut() {
            if total >= max_cleanup {
                break;
            }
            let replicas = rs_replicas(rs);
            let available = rs_status(rs).2;
            if replicas == 0 || replicas == available {
                continue;
            }
            let count = (max_cleanup - total).min(replicas - available);
            let new_count = replicas - count;
            if new_count > replicas {
                return Err(format!("when cleaning up unhealthy replicas, got invalid request to scale down {} {replicas} -> {new_count}", Key::of(&*rs)).into());
            }
            let (_, updated) = self.scale_rs_and_record(rs, new_count, d).await?;
            total += count;
            *rs = updated;
        }
        Ok((old, total))
    }

    /// `scaleDownOldReplicaSetsForRollingUpdate`.
    async fn scale_down_old_for_rolling(
        &self,
        all: &[ReplicaSet],
        mut old: Vec<ReplicaSet>,
        d: &Deployment,
    ) -> Result<(Vec<ReplicaSet>, i32), SyncError> {
        let min_available = d_replicas(d) - max_unavailable(d);
        let available: i32 = all.iter().map(|rs| rs_status(rs).2).sum();
        if available <= min_available {
            return Ok((old, 0));
        }
        old.sort_by(by_creation);
        let to_scale = available - min_available;
        let mut total = 0;
        for rs in old.iter_mut() {
            if total >= to_scale {
                break;
            }
            if rs_replicas(rs) == 0 {
                continue;
            }
            let count = rs_replicas(rs).min(to_scale - total);
            let (_, updated) = self.scale_rs_and_record(rs, rs_replicas(rs) - count, d).await?;
            total += count;
            *rs = updated;
        }
        Ok((old, total))
    }

    /// `rolloutRecreate`: old pods all gone before the new ReplicaSet scales up.
    async fn rollout_recreate(&self, d: &mut Deployment, rs_list: &mut Vec<ReplicaSet>) -> Result<(), SyncError> {
        let (mut new_rs, mut old) = self.get_all_rs_and_sync_revision(d, rs_list, false).await?;
        let mut scaled = false;
        for rs in active(&old) {
            let (s, _) = self.scale_rs_and_record(&rs, 0, d).await?;
            scaled |= s;
        }
        if scaled {
            return self.sync_rollout_status(&all_with(&old, new_rs.as_ref()), new_rs.as_ref(), d).await;
        }
        if self.old_pods_running(d, rs_list, new_rs.as_ref(), &old) {
            return self.sync_rollout_status(&all_with(&old, new_rs.as_ref()), new_rs.as_ref(), d).await;
        }
        if new_rs.is_none() {
            (new_rs, old) = self.get_all_rs_and_sync_revision(d, rs_list, true).await?;
        }
        if let Some(rs) = new_rs.as_ref() {
            let want = d_replicas(d);
            let (_, updated) = self.scale_rs_and_record(rs, want, d).await?;
            new_rs = Some(updated);
        }
        if deployment_complete(d, &d.status.clone().unwrap_or_default()) {
            self.cleanup(&old, d).await?;
        }
        self.sync_rollout_status(&all_with(&old, new_rs.as_ref()), new_rs.as_ref(), d).await
    }

    /// `oldPodsRunning`.
    fn old_pods_running(
        &self,
        d: &Deployment,
        rs_list: &[ReplicaSet],
        new_rs: Option<&ReplicaSet>,
        old: &[ReplicaSet],
    ) -> bool {
        if old.iter().map(|rs| rs_status(rs).0).sum::<i32>() > 0 {
            return true;
        }
        let new_uid = new_rs.and_then(|rs| rs.metadata.uid.clone());
        self.pod_map(d, rs_list).iter().any(|(uid, pods)| {
            Some(uid) != new_uid.as_ref() && pods.iter().any(|p| !matches!(util::pod_phase(p), "Failed" | "Succeeded"))
        })
    }

    /// `syncRolloutStatus` (progress.go).
    async fn sync_rollout_status(
        &self,
        all: &[ReplicaSet],
        new_rs: Option<&ReplicaSet>,
        d: &mut Deployment,
    ) -> Result<(), SyncError> {
        let mut st = calculate_status(all, new_rs, d);
        if progress_deadline(d).is_none() {
            remove_condition(&mut st, "Progressing");
        }
        let cur_status = d.status.clone().unwrap_or_default();
        let current = condition(&cur_status, "Progressing").cloned();
        let complete_before = st.replicas == st.updated_replicas
            && current.as_ref().is_some_and(|c| c.reason.as_deref() == Some(REASON_NEW_RS_AVAILABLE));
        let name = new_rs.and_then(|rs| rs.metadata.name.clone());
        if progress_deadline(d).is_some() && !complete_before {
            if deployment_complete(d, &st) {
                let msg = match &name {
                    Some(n) => format!("ReplicaSet \"{n}\" has successfully progressed."),
                    None => format!("Deployment \"{}\" has successfully progressed.", Key::of(&*d).name),
                };
                set_condition(&mut st, new_condition("Progressing", "True", REASON_NEW_RS_AVAILABLE, msg));
            } else if deployment_progressing(d, &st) {
                let msg = match &name {
                    Some(n) => format!("ReplicaSet \"{n}\" is progressing."),
                    None => format!("Deployment \"{}\" is progressing.", Key::of(&*d).name),
                };
                let mut c = new_condition("Progressing", "True", REASON_RS_UPDATED, msg);
                if let Some(cur) = &current {
                    if cur.status == "True" {
                        c.last_transition_time = cur.last_transition_time.clone();
                    }
                    remove_condition(&mut st, "Progressing");
                }
                set_condition(&mut st, c);
            } else if deployment_timed_out(d, &st) {
                let msg = match &name {
                    Some(n) => format!("ReplicaSet \"{n}\" has timed out progressing."),
                    None => format!("Deployment \"{}\" has timed out progressing.", Key::of(&*d).name),
                };
                set_condition(&mut st, new_condition("Progressing", "False", REASON_TIMED_OUT, msg));
            }
        }
        // ReplicaFailure conditions of the ReplicaSets (`getReplicaFailures`).
        let failure = new_rs
            .into_iter()
            .chain(all.iter())
            .filter_map(|rs| rs.status.as_ref()?.conditions.as_ref()?.iter().find(|c| c.type_ == "ReplicaFailure"))
            .next()
            .map(|c| DeploymentCondition {
                type_: "ReplicaFailure".into(),
                status: c.status.clone(),
                reason: c.reason.clone(),
                message: c.message.clone(),
                last_update_time: c.last_transition_time.clone(),
                last_transition_time: c.last_transition_time.clone(),
            });
        match failure {
            Some(c) => set_condition(&mut st, c),
            None => remove_condition(&mut st, "ReplicaFailure"),
        }
        if status_equal(&cur_status, &st) {
            self.requeue_stuck(d, &st);
            return Ok(());
        }
        d.status = Some(st);
        self.write_status(d).await
    }

    /// `requeueStuckDeployment`: look again when the progress deadline passes.
    fn requeue_stuck(&self, d: &Deployment, st: &DeploymentStatus) {
        let Some(deadline) = progress_deadline(d) else { return };
        let cur = d.status.clone().unwrap_or_default();
        let Some(c) = condition(&cur, "Progressing") else { return };
        if deployment_complete(d, st) || c.reason.as_deref() == Some(REASON_TIMED_OUT) {
            return;
        }
        let Some(updated) = c.last_update_time.as_ref() else { return };
        let left = k8s_openapi::jiff::SignedDuration::from_secs(i64::from(deadline)) - util::since(updated);
        let after = Duration::try_from(left).unwrap_or(Duration::ZERO);
        if after < Duration::from_secs(1) {
            self.queue.add_rate_limited(Key::of(d));
        } else {
            self.queue.add_after(Key::of(d), after + Duration::from_secs(1));
        }
    }
}

/// `GetReplicaSetProportion`.
fn proportion(rs: &ReplicaSet, d: &Deployment, to_add: i32, added: i32) -> i32 {
    if rs_replicas(rs) == 0 || to_add == 0 || to_add == added {
        return 0;
    }
    let fraction = fraction(rs, d);
    let allowed = to_add - added;
    if to_add > 0 {
        fraction.min(allowed)
    } else {
        fraction.max(allowed)
    }
}

/// `getReplicaSetFraction`.
fn fraction(rs: &ReplicaSet, d: &Deployment) -> i32 {
    if d_replicas(d) == 0 {
        return -rs_replicas(rs);
    }
    let max = d_replicas(d) + max_surge(d);
    let mut before = annotation(&rs.metadata, MAX_REPLICAS).and_then(|v| v.parse::<i32>().ok()).unwrap_or(0);
    if before == 0 {
        before = d.status.as_ref().and_then(|s| s.replicas).unwrap_or(0);
        if before == 0 {
            return rs_replicas(rs);
        }
    }
    let size = f64::from(rs_replicas(rs) * max) / f64::from(before);
    size.round() as i32 - rs_replicas(rs)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn deployment(replicas: i32, surge: impl Into<Value>, unavailable: impl Into<Value>) -> Deployment {
        let (surge, unavailable) = (surge.into(), unavailable.into());
        serde_json::from_value(json!({
            "metadata": {"name": "web", "namespace": "default", "generation": 1},
            "spec": {
                "replicas": replicas,
                "selector": {"matchLabels": {"app": "web"}},
                "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": surge, "maxUnavailable": unavailable}},
                "template": {"metadata": {"labels": {"app": "web"}}, "spec": {"containers": [{"name": "c", "image": "i"}]}}
            }
        }))
        .expect("deployment")
    }

    fn rs(name: &str, replicas: i32, available: i32) -> ReplicaSet {
        serde_json::from_value(json!({
            "metadata": {"name": name, "namespace": "default", "creationTimestamp": "2024-01-01T00:00:00Z"},
            "spec": {"replicas": replicas, "selector": {"matchLabels": {"app": "web"}}},
            "status": {"replicas": replicas, "availableReplicas": available}
        }))
        .expect("rs")
    }

    #[test]
    fn fenceposts_round_as_upstream() {
        // 25% of 10: surge rounds up to 3, unavailable down to 2.
        assert_eq!(resolve_fenceposts(&deployment(10, "25%", "25%"), 10), (3, 2));
        // 25% of 1: surge 1, unavailable 0.
        assert_eq!(resolve_fenceposts(&deployment(1, "25%", "25%"), 1), (1, 0));
        // Both zero: maxUnavailable becomes 1.
        assert_eq!(resolve_fenceposts(&deployment(3, "0%", "0%"), 3), (0, 1));
        assert_eq!(max_unavailable(&deployment(3, "0%", 10)), 3);
    }

    #[test]
    fn new_rs_scales_up_within_surge() {
        let d = deployment(4, "25%", "25%");
        let old = rs("old", 4, 4);
        let new = rs("new", 0, 0);
        // 4 + 1 surge = 5 pods at most: the new RS may get 1.
        assert_eq!(new_rs_new_replicas(&d, &[old.clone(), new.clone()], &new), 1);
        let new = rs("new", 4, 0);
        assert_eq!(new_rs_new_replicas(&d, &[rs("old", 0, 0), new.clone()], &new), 4);
    }

    #[test]
    fn hash_is_stable_and_collision_count_changes_it() {
        let d = deployment(1, "25%", "25%");
        let t = template(&d);
        let a = compute_hash(&t, None);
        assert_eq!(a, compute_hash(&t, None));
        assert_ne!(a, compute_hash(&t, Some(1)));
        assert!(a.chars().all(|c| "bcdfghjklmnpqrstvwxz2456789".contains(c)), "{a}");
        let mut labelled = t.clone();
        labelled.metadata.as_mut().and_then(|m| m.labels.as_mut()).map(|l| l.insert(HASH_LABEL.into(), a.clone()));
        assert!(equal_ignore_hash(&labelled, &t));
    }

    #[test]
    fn revision_history_is_kept_on_rollback() {
        let d = deployment(1, "25%", "25%");
        let mut r = rs("x", 1, 1);
        assert!(set_new_rs_annotations(&d, &mut r, 1, false));
        assert_eq!(annotation(&r.metadata, REVISION), Some("1"));
        assert_eq!(annotation(&r.metadata, DESIRED_REPLICAS), Some("1"));
        assert_eq!(annotation(&r.metadata, MAX_REPLICAS), Some("2"));
        assert!(set_new_rs_annotations(&d, &mut r, 3, true));
        assert_eq!(annotation(&r.metadata, REVISION), Some("3"));
        assert_eq!(annotation(&r.metadata, REVISION_HISTORY), Some("1"));
        assert!(set_new_rs_annotations(&d, &mut r, 5, true));
        assert_eq!(annotation(&r.metadata, REVISION_HISTORY), Some("1,3"));
        assert!(!set_new_rs_annotations(&d, &mut r, 5, true));
    }

    #[test]
    fn proportional_scaling_fractions() {
        let d = deployment(20, 3, 0);
        // An RS of 5 sized when the deployment allowed 13 (10 + 3) gets 5*23/13.
        let mut r = rs("a", 5, 5);
        r.metadata.annotations = Some([(MAX_REPLICAS.to_string(), "13".to_string())].into());
        assert_eq!(fraction(&r, &d), 4);
        assert_eq!(proportion(&r, &d, 10, 8), 2);
    }

    #[test]
    fn status_reports_availability() {
        let d = deployment(3, "25%", "25%");
        let new = rs("new", 3, 3);
        let st = calculate_status(std::slice::from_ref(&new), Some(&new), &d);
        assert_eq!(st.replicas, Some(3));
        assert_eq!(st.updated_replicas, Some(3));
        assert_eq!(st.unavailable_replicas, None);
        let c = condition(&st, "Available").expect("available");
        assert_eq!((c.status.as_str(), c.reason.as_deref()), ("True", Some(REASON_MIN_AVAILABLE)));
        assert!(deployment_complete(&d, &st));
    }
}
