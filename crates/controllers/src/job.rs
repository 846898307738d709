//! Job controller (upstream v1.33 `pkg/controller/job/job_controller.go`,
//! `indexed_job_utils.go`, `pod_failure_policy.go`) and the TTL-after-finished
//! controller (`pkg/controller/ttlafterfinished`).
//!
//! Pods run up to `parallelism` until `completions` succeed (NonIndexed), or one
//! per completion index with `batch.kubernetes.io/job-completion-index` and
//! `JOB_COMPLETION_INDEX` (Indexed). Finished pods are counted as upstream does:
//! each pod carries the `batch.kubernetes.io/job-tracking` finalizer; a finished
//! pod's uid first goes to `status.uncountedTerminatedPods` (written before
//! anything else), then its finalizer is removed, then a later sync moves it
//! into `succeeded`/`failed`, so no pod is counted twice or lost. Failures beyond
//! `backoffLimit` (or restarts, for `OnFailure`), `activeDeadlineSeconds` and
//! pod failure policy `FailJob` rules add `FailureTarget`, success adds
//! `SuccessCriteriaMet`; active pods are then deleted and, once none is left,
//! `Failed` / `Complete` follow with the same reason. `suspend` deletes the
//! active pods and sets `Suspended`. Replacement pods after failures wait an
//! exponential back-off (10 s doubling, at most 6 min).

use crate::events::{Recorder, NORMAL, WARNING};
use crate::informer::Key;
use crate::queue::{resync, run_workers, Queue};
use crate::replicaset::Expectations;
use crate::{metrics, podcontrol, util, Ctx, SyncError};
use apimachinery::job::{COMPLETION_INDEX_ANNOTATION, TRACKING_FINALIZER};
use k8s_openapi::api::batch::v1::{Job, JobCondition, JobStatus, UncountedTerminatedPods};
use k8s_openapi::api::core::v1::{EnvVar, EnvVarSource, ObjectFieldSelector, Pod};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{OwnerReference, Time};
use k8s_openapi::jiff::SignedDuration;
use kube::api::{Api, DeleteParams, ObjectMeta, Patch, PatchParams, PostParams, PropagationPolicy};
use serde_json::json;
use std::collections::{BTreeSet, HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::task::JoinHandle;

const COMPONENT: &str = "job-controller";
const BACKOFF_BASE: Duration = Duration::from_secs(10);
const BACKOFF_MAX: Duration = Duration::from_secs(360);
/// How long a finalizer removal we made is trusted before the store shows it.
const REMOVED_TTL: Duration = Duration::from_secs(60);
/// How long a sync waits for the informer to show our own status write.
const WRITTEN_TTL: Duration = Duration::from_secs(10);

pub const REASON_BACKOFF: &str = "BackoffLimitExceeded";
pub const REASON_DEADLINE: &str = "DeadlineExceeded";
pub const REASON_POD_FAILURE_POLICY: &str = "PodFailurePolicy";
pub const REASON_COMPLETIONS: &str = "CompletionsReached";
const MSG_BACKOFF: &str = "Job has reached the specified backoff limit";
const MSG_DEADLINE: &str = "Job was active longer than specified deadline";
const MSG_COMPLETIONS: &str = "Reached expected number of succeeded pods";

pub fn start(ctx: &Ctx, tasks: &mut Vec<JoinHandle<()>>) {
    let (recorder, rec_task) = Recorder::new(ctx.client.clone(), COMPONENT);
    tasks.push(rec_task);
    let c = Arc::new(Jc {
        client: ctx.client.clone(),
        inf: ctx.inf.clone(),
        queue: Queue::new(metrics::register("job")),
        orphans: Queue::new(metrics::register("job-orphan-pods")),
        ttl: Queue::new(metrics::register("ttl-after-finished")),
        exp: Expectations::default(),
        removed: Mutex::new(HashMap::new()),
        written: Mutex::new(HashMap::new()),
        recorder,
    });
    ctx.inf.jobs.on_change_weak(&c, |h, old, new| h.on_job(old, new));
    ctx.inf.pods.on_change_weak(&c, |h, old, new| h.on_pod(old, new));
    let (workers, period) = (ctx.config.workers, ctx.config.resync_period);
    tasks.push(tokio::spawn(async move {
        c.inf.wait_ready().await;
        tracing::debug!(controller = c.queue.name(), "caches synced, starting workers");
        let k = c.clone();
        let keys = move || k.inf.jobs.list().iter().map(|j| Key::of(&**j)).collect();
        let k = c.clone();
        let orphan_keys = move || k.orphan_pods();
        let k = c.clone();
        let ttl_keys = move || k.inf.jobs.list().iter().map(|j| Key::of(&**j)).collect();
        let s = c.clone();
        let sync = move |key: Key| {
            let s = s.clone();
            async move { s.sync(&key).await }
        };
        let s = c.clone();
        let orphan = move |key: Key| {
            let s = s.clone();
            async move { s.sync_orphan(&key).await }
        };
        let s = c.clone();
        let ttl = move |key: Key| {
            let s = s.clone();
            async move { s.sync_ttl(&key).await }
        };
        tokio::join!(
            run_workers(c.queue.clone(), workers, sync),
            resync(c.queue.clone(), period, keys),
            run_workers(c.orphans.clone(), 1, orphan),
            resync(c.orphans.clone(), period, orphan_keys),
            run_workers(c.ttl.clone(), 1, ttl),
            resync(c.ttl.clone(), period, ttl_keys),
        );
    }));
}

// ---- pure rules ----

fn has_finalizer(pod: &Pod) -> bool {
    pod.metadata.finalizers.iter().flatten().any(|f| f == TRACKING_FINALIZER)
}

fn condition<'a>(st: &'a JobStatus, type_: &str) -> Option<&'a JobCondition> {
    st.conditions.iter().flatten().find(|c| c.type_ == type_)
}

fn is_true(st: &JobStatus, type_: &str) -> bool {
    condition(st, type_).is_some_and(|c| c.status == "True")
}

/// `IsJobFinished`: Complete or Failed is True.
pub(crate) fn is_finished(job: &Job) -> bool {
    job.status.as_ref().is_some_and(|s| is_true(s, "Complete") || is_true(s, "Failed"))
}

fn new_condition(type_: &str, status: &str, reason: &str, message: &str) -> JobCondition {
    let now = util::now();
    JobCondition {
        type_: type_.into(),
        status: status.into(),
        reason: (!reason.is_empty()).then(|| reason.to_string()),
        message: (!message.is_empty()).then(|| message.to_string()),
        last_probe_time: Some(now.clone()),
        last_transition_time: Some(now),
    }
}

/// `ensureJobConditionStatus`: set (or add) a condition; the transition time
/// changes only with the status. Returns whether anything changed.
fn set_condition(st: &mut JobStatus, c: JobCondition) -> bool {
    let conds = st.conditions.get_or_insert_with(Vec::new);
    match conds.iter_mut().find(|x| x.type_ == c.type_) {
        Some(x) if x.status == c.status && x.reason == c.reason && x.message == c.message => false,
        Some(x) => {
            if x.status != c.status {
                x.last_transition_time = c.last_transition_time.clone();
            }
            x.status = c.status;
            x.reason = c.reason;
            x.message = c.message;
            x.last_probe_time = c.last_probe_time;
            true
        }
        None => {
            conds.push(c);
            true
        }
    }
}

/// `isPodFailed` with the default `podReplacementPolicy: TerminatingOrFailed`:
/// Failed, or deleted before it succeeded (unless a pod failure policy or
/// `podReplacementPolicy: Failed` wants the Failed phase).
fn is_pod_failed(pod: &Pod, job: &Job) -> bool {
    if util::pod_phase(pod) == "Failed" {
        return true;
    }
    let spec = job.spec.as_ref();
    if spec.is_some_and(|s| s.pod_failure_policy.is_some())
        || spec.and_then(|s| s.pod_replacement_policy.as_deref()) == Some("Failed")
    {
        return false;
    }
    pod.metadata.deletion_timestamp.is_some() && util::pod_phase(pod) != "Succeeded"
}

fn completion_index(pod: &Pod) -> Option<i32> {
    pod.metadata.annotations.as_ref()?.get(COMPLETION_INDEX_ANNOTATION)?.parse().ok().filter(|i| *i >= 0)
}

/// `completedIndexes` text (`1,3-5,7`) to a set.
pub(crate) fn parse_indexes(s: &str) -> BTreeSet<i32> {
    let mut out = BTreeSet::new();
    for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        match part.split_once('-') {
            Some((a, b)) => {
                if let (Ok(a), Ok(b)) = (a.parse::<i32>(), b.parse::<i32>()) {
                    out.extend(a..=b);
                }
            }
            None => out.extend(part.parse::<i32>().ok()),
        }
    }
    out
}

/// A set of indexes as `completedIndexes` text: ranges of 3+ as `a-b`, pairs as `a,b`.
pub(crate) fn format_indexes(set: &BTreeSet<i32>) -> String {
    let mut parts = Vec::new();
    let mut it = set.iter().copied().peekable();
    while let Some(start) = it.next() {
        let mut end = start;
        while it.peek() == Some(&(end + 1)) {
            end = it.next().unwrap_or(end);
        }
        parts.push(if start == end { start.to_string() } else { format!("{start}-{end}") });
    }
    parts.join(",")
}

/// What a pod failure policy says about a failed pod.
#[derive(Debug, PartialEq)]
pub(crate) enum PolicyAction {
    /// `FailJob`, with the condition message.
    FailJob(String),
    Ignore,
    /// `Count`, or no rule matched.
    Count,
}

/// `matchPodFailurePolicy` (exit code and pod condition rules).
pub(crate) fn match_pod_failure_policy(job: &Job, pod: &Pod) -> PolicyAction {
    let Some(policy) = job.spec.as_ref().and_then(|s| s.pod_failure_policy.as_ref()) else {
        return PolicyAction::Count;
    };
    let ns = pod.metadata.namespace.as_deref().unwrap_or_default();
    let name = pod.metadata.name.as_deref().unwrap_or_default();
    let status = pod.status.clone().unwrap_or_default();
    let statuses: Vec<_> =
        status.init_container_statuses.iter().flatten().chain(status.container_statuses.iter().flatten()).collect();
    for (i, rule) in policy.rules.iter().enumerate() {
        let matched = if let Some(req) = &rule.on_exit_codes {
            statuses.iter().find_map(|cs| {
                let code = cs.state.as_ref()?.terminated.as_ref()?.exit_code;
                if code == 0 || req.container_name.as_ref().is_some_and(|n| *n != cs.name) {
                    return None;
                }
                let listed = req.values.contains(&code);
                let hit = if req.operator == "In" { listed } else { req.operator == "NotIn" && !listed };
                hit.then(|| {
                    format!(
                        "Container {} for pod {ns}/{name} failed with exit code {code} matching {} rule at index {i}",
                        cs.name, rule.action
                    )
                })
            })
        } else {
            rule.on_pod_conditions.iter().flatten().find_map(|pat| {
                let want = if pat.status.is_empty() { "True" } else { pat.status.as_str() };
                status.conditions.iter().flatten().find(|c| c.type_ == pat.type_ && c.status == want).map(|c| {
                    format!("Pod {ns}/{name} has condition {} matching {} rule at index {i}", c.type_, rule.action)
                })
            })
        };
        if let Some(message) = matched {
            return match rule.action.as_str() {
                "FailJob" => PolicyAction::FailJob(message),
                "Ignore" => PolicyAction::Ignore,
                _ => PolicyAction::Count,
            };
        }
    }
    PolicyAction::Count
}

/// `pastBackoffLimitOnFailure`: restarts of the active pods (OnFailure only).
fn past_backoff_on_failure(job: &Job, active: &[Arc<Pod>]) -> bool {
    let spec = job.spec.clone().unwrap_or_default();
    if spec.template.spec.as_ref().and_then(|s| s.restart_policy.as_deref()) != Some("OnFailure") {
        return false;
    }
    let restarts: i32 = active
        .iter()
        .filter_map(|p| p.status.as_ref())
        .flat_map(|s| s.init_container_statuses.iter().flatten().chain(s.container_statuses.iter().flatten()))
        .map(|c| c.restart_count)
        .sum();
    let limit = spec.backoff_limit.unwrap_or(6);
    if limit == 0 {
        return restarts > 0;
    }
    restarts >= limit
}

/// The back-off before the next pod after `failures` failures, the last at `last`.
pub(crate) fn remaining_backoff(failures: i32, last: Option<&Time>) -> Duration {
    if failures <= 0 {
        return Duration::ZERO;
    }
    let delay = BACKOFF_BASE.saturating_mul(2u32.saturating_pow((failures - 1).min(16) as u32)).min(BACKOFF_MAX);
    let Some(last) = last else { return Duration::ZERO };
    let elapsed = util::since(last);
    let elapsed = Duration::try_from(elapsed).unwrap_or(Duration::ZERO);
    delay.saturating_sub(elapsed)
}

/// When a failed pod finished: the latest container termination, else its Ready transition.
fn finish_time(pod: &Pod) -> Option<Time> {
    let st = pod.status.as_ref()?;
    st.container_statuses
        .iter()
        .flatten()
        .filter_map(|c| c.state.as_ref()?.terminated.as_ref()?.finished_at.clone())
        .max_by(|a, b| a.0.cmp(&b.0))
        .or_else(|| util::ready_condition(pod).and_then(|c| c.last_transition_time.clone()))
}

/// Whether the informer's `seen` resourceVersion is `written` or later.
/// rkube's resourceVersions are store revisions (integers); anything else
/// compares by equality only.
pub(crate) fn rv_reached(seen: &str, written: &str) -> bool {
    match (seen.parse::<u64>(), written.parse::<u64>()) {
        (Ok(s), Ok(w)) => s >= w,
        _ => seen == written,
    }
}

/// The counts of one sync, from the status and the pods (`syncJob`'s bookkeeping).
#[derive(Debug, Default)]
pub(crate) struct Counts {
    pub succeeded: i32,
    pub failed: i32,
    pub active: Vec<Arc<Pod>>,
    pub terminating: i32,
    pub ready: i32,
    /// Indexed: succeeded indexes (counted ones and those of uncounted pods).
    pub succeeded_indexes: BTreeSet<i32>,
    /// Finished pods with the finalizer not yet in `uncountedTerminatedPods`.
    pub new_succeeded: Vec<Arc<Pod>>,
    pub new_failed: Vec<Arc<Pod>>,
    /// Failed pods a pod failure policy `Ignore` rule does not count.
    pub ignored: Vec<Arc<Pod>>,
    /// A `FailJob` rule matched: its message.
    pub fail_job: Option<String>,
}

/// Promote the uncounted uids whose pod no longer has the finalizer (or is gone)
/// into `succeeded`/`failed`, then collect the newly finished pods.
pub(crate) fn count(job: &Job, st: &mut JobStatus, pods: &[Arc<Pod>], removed: &HashSet<String>) -> Counts {
    let by_uid: HashMap<&str, &Arc<Pod>> =
        pods.iter().filter_map(|p| p.metadata.uid.as_deref().map(|u| (u, p))).collect();
    let done = |uid: &str| removed.contains(uid) || by_uid.get(uid).is_none_or(|p| !has_finalizer(p));
    let mut uncounted = st.uncounted_terminated_pods.clone().unwrap_or_default();
    let (mut s_left, mut f_left) = (Vec::new(), Vec::new());
    for uid in uncounted.succeeded.take().unwrap_or_default() {
        if done(&uid) {
            st.succeeded = Some(st.succeeded.unwrap_or(0) + 1);
        } else {
            s_left.push(uid);
        }
    }
    for uid in uncounted.failed.take().unwrap_or_default() {
        if done(&uid) {
            st.failed = Some(st.failed.unwrap_or(0) + 1);
        } else {
            f_left.push(uid);
        }
    }
    let indexed = job.spec.as_ref().and_then(|s| s.completion_mode.as_deref()) == Some("Indexed");
    let completions = job.spec.as_ref().and_then(|s| s.completions).unwrap_or(0);
    let mut c = Counts {
        succeeded_indexes: parse_indexes(st.completed_indexes.as_deref().unwrap_or_default()),
        ..Default::default()
    };
    let known: HashSet<String> = s_left.iter().chain(f_left.iter()).cloned().collect();
    for p in pods {
        let uid = p.metadata.uid.clone().unwrap_or_default();
        let terminal = util::is_pod_terminal(p);
        if !terminal && p.metadata.deletion_timestamp.is_none() {
            c.ready += i32::from(util::is_pod_ready(p));
            c.active.push(p.clone());
        } else if !terminal {
            c.terminating += 1;
        }
        if !has_finalizer(p) || known.contains(&uid) || removed.contains(&uid) {
            continue;
        }
        if util::pod_phase(p) == "Succeeded" {
            if indexed {
                match completion_index(p).filter(|i| *i < completions) {
                    Some(i) => {
                        c.succeeded_indexes.insert(i);
                    }
                    // A pod without a valid index is not a completion.
                    None => {
                        c.ignored.push(p.clone());
                        continue;
                    }
                }
            }
            c.new_succeeded.push(p.clone());
        } else if is_pod_failed(p, job) {
            match match_pod_failure_policy(job, p) {
                PolicyAction::Ignore => c.ignored.push(p.clone()),
                PolicyAction::FailJob(msg) => {
                    c.fail_job.get_or_insert(msg);
                    c.new_failed.push(p.clone());
                }
                PolicyAction::Count => c.new_failed.push(p.clone()),
            }
        }
    }
    s_left.extend(c.new_succeeded.iter().filter_map(|p| p.metadata.uid.clone()));
    f_left.extend(c.new_failed.iter().filter_map(|p| p.metadata.uid.clone()));
    c.succeeded = st.succeeded.unwrap_or(0) + s_left.len() as i32;
    c.failed = st.failed.unwrap_or(0) + f_left.len() as i32;
    if indexed {
        st.completed_indexes = Some(format_indexes(&c.succeeded_indexes));
    }
    st.uncounted_terminated_pods = Some(UncountedTerminatedPods { succeeded: Some(s_left), failed: Some(f_left) });
    c
}

fn uncounted_empty(st: &JobStatus) -> bool {
    st.uncounted_terminated_pods
        .as_ref()
        .is_none_or(|u| u.succeeded.as_ref().is_none_or(Vec::is_empty) && u.failed.as_ref().is_none_or(Vec::is_empty))
}

/// The completion or failure this sync reaches, if any: (type, reason, message).
pub(crate) fn finish_target(job: &Job, st: &JobStatus, c: &Counts) -> Option<(&'static str, String, String)> {
    let spec = job.spec.clone().unwrap_or_default();
    if let Some(msg) = &c.fail_job {
        return Some(("FailureTarget", REASON_POD_FAILURE_POLICY.into(), msg.clone()));
    }
    if c.failed > spec.backoff_limit.unwrap_or(6) || past_backoff_on_failure(job, &c.active) {
        return Some(("FailureTarget", REASON_BACKOFF.into(), MSG_BACKOFF.into()));
    }
    let suspended = spec.suspend == Some(true);
    if let (Some(deadline), Some(start), false) = (spec.active_deadline_seconds, st.start_time.as_ref(), suspended) {
        if util::since(start) >= SignedDuration::from_secs(deadline) {
            return Some(("FailureTarget", REASON_DEADLINE.into(), MSG_DEADLINE.into()));
        }
    }
    let indexed = spec.completion_mode.as_deref() == Some("Indexed");
    let complete = match spec.completions {
        Some(n) if indexed => c.succeeded_indexes.len() as i32 >= n,
        Some(n) => c.succeeded >= n,
        // A work queue is done when one pod succeeded and none is running.
        None => c.succeeded > 0 && c.active.is_empty(),
    };
    complete.then(|| ("SuccessCriteriaMet", REASON_COMPLETIONS.into(), MSG_COMPLETIONS.into()))
}

/// How many pods (or which indexes) to start: `manageJob`'s `wantActive`.
pub(crate) fn want_active(job: &Job, c: &Counts) -> i32 {
    let spec = job.spec.clone().unwrap_or_default();
    let parallelism = spec.parallelism.unwrap_or(1).max(0);
    match spec.completions {
        None if c.succeeded > 0 => c.active.len() as i32,
        None => parallelism,
        Some(n) => {
            let done = if spec.completion_mode.as_deref() == Some("Indexed") {
                c.succeeded_indexes.len() as i32
            } else {
                c.succeeded
            };
            (n - done).clamp(0, parallelism)
        }
    }
}

/// Indexed: the lowest indexes that neither succeeded nor have an active pod.
pub(crate) fn missing_indexes(job: &Job, c: &Counts, n: usize) -> Vec<i32> {
    let completions = job.spec.as_ref().and_then(|s| s.completions).unwrap_or(0);
    let active: HashSet<i32> = c.active.iter().filter_map(|p| completion_index(p)).collect();
    (0..completions).filter(|i| !c.succeeded_indexes.contains(i) && !active.contains(i)).take(n).collect()
}

// ---- the controller ----

struct Jc {
    client: kube::Client,
    inf: Arc<crate::informer::Informers>,
    queue: Arc<Queue>,
    /// Pods with the tracking finalizer whose Job is gone.
    orphans: Arc<Queue>,
    /// Finished Jobs with `ttlSecondsAfterFinished`.
    ttl: Arc<Queue>,
    exp: Expectations,
    /// Pods whose finalizer we removed (uid -> when), until the store shows it.
    removed: Mutex<HashMap<String, Instant>>,
    /// Status writes the Job informer has not shown yet (key -> resourceVersion,
    /// when). Syncing on the older Job would miss the pods its write counted
    /// (their finalizers are gone) and start replacements for them.
    written: Mutex<HashMap<Key, (String, Instant)>>,
    recorder: Recorder,
}

impl Jc {
    fn on_job(&self, old: Option<&Job>, new: Option<&Job>) {
        match (old, new) {
            (_, Some(j)) => {
                self.observe_written(j);
                self.queue.add(Key::of(j));
                if is_finished(j) && j.spec.as_ref().and_then(|s| s.ttl_seconds_after_finished).is_some() {
                    self.ttl.add(Key::of(j));
                }
            }
            (Some(j), None) => {
                let key = Key::of(j);
                self.exp.delete(&key);
                self.written.lock().unwrap_or_else(|e| e.into_inner()).remove(&key);
                // Its pods lose their finalizers.
                for p in self.inf.pods.list_ns(&key.namespace) {
                    if has_finalizer(&p)
                        && util::controller_of(&p.metadata).is_some_and(|r| Some(&r.uid) == j.metadata.uid.as_ref())
                    {
                        self.orphans.add(Key::of(&*p));
                    }
                }
            }
            (None, None) => {}
        }
    }

    fn resolve(&self, namespace: &str, r: &OwnerReference) -> Option<Arc<Job>> {
        if r.kind != "Job" {
            return None;
        }
        let j = self.inf.jobs.get(namespace, &r.name)?;
        (j.metadata.uid.as_deref() == Some(r.uid.as_str())).then_some(j)
    }

    fn on_pod(&self, old: Option<&Pod>, new: Option<&Pod>) {
        let pod = match (old, new) {
            (_, Some(p)) | (Some(p), None) => p,
            (None, None) => return,
        };
        if new.is_none() {
            if let Some(uid) = &pod.metadata.uid {
                self.removed.lock().unwrap_or_else(|e| e.into_inner()).remove(uid);
            }
        } else if !has_finalizer(pod) {
            if let Some(uid) = &pod.metadata.uid {
                self.removed.lock().unwrap_or_else(|e| e.into_inner()).remove(uid);
            }
        }
        let ns = pod.metadata.namespace.as_deref().unwrap_or_default();
        match util::controller_of(&pod.metadata).and_then(|r| self.resolve(ns, r)) {
            Some(job) => {
                let key = Key::of(&*job);
                match (old, new) {
                    (None, Some(p)) if p.metadata.deletion_timestamp.is_none() => self.exp.creation_observed(&key),
                    (Some(o), None) => self.exp.deletion_observed(&key, &Key::of(o)),
                    (Some(o), Some(n))
                        if o.metadata.deletion_timestamp.is_none() && n.metadata.deletion_timestamp.is_some() =>
                    {
                        self.exp.deletion_observed(&key, &Key::of(n))
                    }
                    _ => {}
                }
                self.queue.add(key);
            }
            None => {
                if new.is_some() && has_finalizer(pod) {
                    self.orphans.add(Key::of(pod));
                }
            }
        }
    }

    fn orphan_pods(&self) -> Vec<Key> {
        self.inf
            .pods
            .list()
            .iter()
            .filter(|p| has_finalizer(p))
            .filter(|p| {
                let ns = p.metadata.namespace.as_deref().unwrap_or_default();
                util::controller_of(&p.metadata).and_then(|r| self.resolve(ns, r)).is_none()
            })
            .map(|p| Key::of(&**p))
            .collect()
    }

    /// Forgets a status write once the informer shows it (or something newer).
    fn observe_written(&self, job: &Job) {
        let key = Key::of(job);
        let mut m = self.written.lock().unwrap_or_else(|e| e.into_inner());
        if let Some((rv, _)) = m.get(&key) {
            if job.metadata.resource_version.as_deref().is_some_and(|seen| rv_reached(seen, rv)) {
                m.remove(&key);
            }
        }
    }

    /// True while our last status write for `key` is not in the informer yet.
    fn status_pending(&self, key: &Key, job: &Job) -> bool {
        let mut m = self.written.lock().unwrap_or_else(|e| e.into_inner());
        let Some((rv, at)) = m.get(key) else { return false };
        let seen = job.metadata.resource_version.as_deref().is_some_and(|seen| rv_reached(seen, rv));
        if seen || at.elapsed() >= WRITTEN_TTL {
            m.remove(key);
            return false;
        }
        true
    }

    fn removed_set(&self) -> HashSet<String> {
        let mut m = self.removed.lock().unwrap_or_else(|e| e.into_inner());
        m.retain(|_, at| at.elapsed() < REMOVED_TTL);
        m.keys().cloned().collect()
    }

    /// Removes the tracking finalizer (conditional on the pod's resourceVersion).
    async fn remove_finalizer(&self, pod: &Pod) -> Result<(), SyncError> {
        let rest: Vec<String> =
            pod.metadata.finalizers.iter().flatten().filter(|f| *f != TRACKING_FINALIZER).cloned().collect();
        let key = Key::of(pod);
        let api: Api<Pod> = Api::namespaced(self.client.clone(), &key.namespace);
        let value = if rest.is_empty() { serde_json::Value::Null } else { json!(rest) };
        let patch = json!({"metadata": {"finalizers": value, "resourceVersion": pod.metadata.resource_version}});
        match api.patch(&key.name, &PatchParams::default(), &Patch::Merge(&patch)).await {
            Ok(_) => {
                if let Some(uid) = &pod.metadata.uid {
                    self.removed.lock().unwrap_or_else(|e| e.into_inner()).insert(uid.clone(), Instant::now());
                }
                Ok(())
            }
            Err(e) if util::is_not_found(&e) => Ok(()),
            Err(e) => Err(e.into()),
        }
    }

    async fn sync_orphan(&self, key: &Key) -> Result<(), SyncError> {
        let Some(pod) = self.inf.pods.get_key(key) else { return Ok(()) };
        if !has_finalizer(&pod) {
            return Ok(());
        }
        let ns = pod.metadata.namespace.as_deref().unwrap_or_default();
        if util::controller_of(&pod.metadata).and_then(|r| self.resolve(ns, r)).is_some() {
            return Ok(());
        }
        self.remove_finalizer(&pod).await
    }

    /// `ttlafterfinished`: delete a finished Job `ttlSecondsAfterFinished` after it finished.
    async fn sync_ttl(&self, key: &Key) -> Result<(), SyncError> {
        let Some(job) = self.inf.jobs.get_key(key) else { return Ok(()) };
        let Some(ttl) = job.spec.as_ref().and_then(|s| s.ttl_seconds_after_finished) else { return Ok(()) };
        if !is_finished(&job) || job.metadata.deletion_timestamp.is_some() {
            return Ok(());
        }
        let st = job.status.clone().unwrap_or_default();
        let finished = ["Complete", "Failed"]
            .iter()
            .filter_map(|t| {
                condition(&st, t).filter(|c| c.status == "True").and_then(|c| c.last_transition_time.clone())
            })
            .next()
            .or(st.completion_time.clone());
        let Some(finished) = finished else { return Ok(()) };
        let left = SignedDuration::from_secs(i64::from(ttl)) - util::since(&finished);
        if left > SignedDuration::ZERO {
            self.ttl.add_after(
                key.clone(),
                Duration::try_from(left).unwrap_or(Duration::from_secs(1)) + Duration::from_millis(100),
            );
            return Ok(());
        }
        let api: Api<Job> = Api::namespaced(self.client.clone(), &key.namespace);
        let dp = DeleteParams {
            propagation_policy: Some(PropagationPolicy::Foreground),
            preconditions: Some(kube::api::Preconditions { uid: job.metadata.uid.clone(), resource_version: None }),
            ..Default::default()
        };
        match api.delete(&key.name, &dp).await {
            Ok(_) => {
                tracing::debug!(job = %key, "deleted after ttlSecondsAfterFinished");
                Ok(())
            }
            Err(e) if util::is_not_found(&e) || util::is_conflict(&e) => Ok(()),
            Err(e) => Err(e.into()),
        }
    }

    async fn sync(&self, key: &Key) -> Result<(), SyncError> {
        let Some(job) = self.inf.jobs.get_key(key) else {
            self.exp.delete(key);
            return Ok(());
        };
        if self.status_pending(key, &job) {
            // The informer's event for our write queues the Job again; the
            // requeue covers a write the watch never shows (a relist past it).
            self.queue.add_after(key.clone(), WRITTEN_TTL);
            return Ok(());
        }
        let uid = job.metadata.uid.clone().unwrap_or_default();
        let owned = |p: &Pod| util::controller_of(&p.metadata).is_some_and(|r| r.uid == uid);
        if job.metadata.deletion_timestamp.is_some() || is_finished(&job) {
            // Nothing more to track: every pod of the Job loses its finalizer.
            for p in self.inf.pods.list_ns(&key.namespace) {
                if has_finalizer(&p) && owned(&p) {
                    self.remove_finalizer(&p).await?;
                }
            }
            return Ok(());
        }
        let Some(spec) = job.spec.as_ref() else { return Ok(()) };
        let Some(selector) = spec.selector.clone() else { return Ok(()) };
        let pods = self.inf.pods.list_ns(&key.namespace);
        let pods = podcontrol::claim_pods(&self.client, &*job, "batch/v1", "Job", &selector, pods).await?;
        let old = job.status.clone().unwrap_or_default();
        let mut st = old.clone();
        let removed = self.removed_set();
        let c = count(&job, &mut st, &pods, &removed);
        let suspended = spec.suspend == Some(true);
        let mut to_delete: Vec<Arc<Pod>> = Vec::new();
        let mut create = 0usize;
        let mut create_indexes = Vec::new();
        let mut requeue: Option<Duration> = None;
        let mut events: Vec<(&'static str, String, String)> = Vec::new();

        let interim = ["FailureTarget", "SuccessCriteriaMet"].into_iter().find(|t| is_true(&st, t));
        let interim = match interim {
            Some(t) => Some(t),
            None => match finish_target(&job, &st, &c) {
                Some((t, reason, message)) => {
                    set_condition(&mut st, new_condition(t, "True", &reason, &message));
                    Some(t)
                }
                None => None,
            },
        };
        if let Some(t) = interim {
            // Finishing: no pod keeps running; the final condition follows once all are gone.
            to_delete.extend(c.active.iter().cloned());
            let cond = condition(&st, t).cloned().unwrap_or_else(|| new_condition(t, "True", "", ""));
            let reason = cond.reason.clone().unwrap_or_default();
            let message = cond.message.clone().unwrap_or_default();
            if c.active.is_empty()
                && c.terminating == 0
                && c.new_succeeded.is_empty()
                && c.new_failed.is_empty()
                && uncounted_empty(&st)
            {
                if t == "SuccessCriteriaMet" {
                    set_condition(&mut st, new_condition("Complete", "True", &reason, &message));
                    st.completion_time = Some(util::now());
                    events.push((NORMAL, "Completed".into(), "Job completed".into()));
                } else {
                    set_condition(&mut st, new_condition("Failed", "True", &reason, &message));
                    events.push((WARNING, reason.clone(), message.clone()));
                }
            }
        } else if suspended {
            to_delete.extend(c.active.iter().cloned());
            if set_condition(&mut st, new_condition("Suspended", "True", "JobSuspended", "Job suspended")) {
                events.push((NORMAL, "Suspended".into(), "Job suspended".into()));
            }
        } else {
            if condition(&st, "Suspended").is_some_and(|x| x.status == "True") {
                set_condition(&mut st, new_condition("Suspended", "False", "JobResumed", "Job resumed"));
                st.start_time = Some(util::now());
                events.push((NORMAL, "Resumed".into(), "Job resumed".into()));
            }
            if st.start_time.is_none() {
                st.start_time = Some(util::now());
            }
            if let (Some(deadline), Some(start)) = (spec.active_deadline_seconds, st.start_time.as_ref()) {
                let left = SignedDuration::from_secs(deadline) - util::since(start);
                requeue = Some(Duration::try_from(left).unwrap_or(Duration::ZERO) + Duration::from_millis(200));
            }
            let want = want_active(&job, &c) as usize;
            let active = c.active.len();
            if active > want {
                let mut extra = c.active.clone();
                // Not ready first, then the newest.
                extra.sort_by(|a, b| {
                    util::is_pod_ready(a)
                        .cmp(&util::is_pod_ready(b))
                        .then_with(|| b.metadata.creation_timestamp.cmp(&a.metadata.creation_timestamp))
                });
                to_delete.extend(extra.into_iter().take(active - want));
            } else if active < want && self.exp.satisfied(key) {
                let last_failure = pods
                    .iter()
                    .filter(|p| util::pod_phase(p) == "Failed")
                    .filter_map(|p| finish_time(p))
                    .max_by(|a, b| a.0.cmp(&b.0));
                let wait = remaining_backoff(c.failed, last_failure.as_ref());
                if wait.is_zero() {
                    create = want - active;
                    if spec.completion_mode.as_deref() == Some("Indexed") {
                        create_indexes = missing_indexes(&job, &c, create);
                        create = create_indexes.len();
                    }
                } else {
                    requeue = Some(requeue.map_or(wait, |r| r.min(wait)));
                }
            }
        }
        // `to_delete` only ever holds active pods.
        let active = c.active.len() as i32 - to_delete.len() as i32 + create as i32;
        st.active = (active != 0).then_some(active);
        st.ready = Some(c.ready);
        st.terminating = Some(c.terminating);
        if st != old {
            self.write_status(&job, st).await?;
        }
        for (type_, reason, message) in events {
            self.recorder.event(&*job, type_, &reason, message);
        }
        // The status now holds every finished pod: their finalizers can go.
        for p in c.new_succeeded.iter().chain(c.new_failed.iter()).chain(c.ignored.iter()) {
            self.remove_finalizer(p).await?;
        }
        let pending: Vec<Arc<Pod>> = pods
            .iter()
            .filter(|p| has_finalizer(p) && !removed.contains(p.metadata.uid.as_deref().unwrap_or_default()))
            .filter(|p| {
                let uid = p.metadata.uid.as_deref().unwrap_or_default();
                old.uncounted_terminated_pods
                    .as_ref()
                    .is_some_and(|u| u.succeeded.iter().flatten().chain(u.failed.iter().flatten()).any(|x| x == uid))
            })
            .cloned()
            .collect();
        for p in &pending {
            self.remove_finalizer(p).await?;
        }
        self.delete_pods(&job, &to_delete).await?;
        if create > 0 {
            self.create_pods(&job, create, &create_indexes).await?;
        }
        if let Some(d) = requeue {
            self.queue.add_after(key.clone(), d);
        }
        Ok(())
    }

    async fn write_status(&self, job: &Job, st: JobStatus) -> Result<(), SyncError> {
        let key = Key::of(job);
        let api: Api<Job> = Api::namespaced(self.client.clone(), &key.namespace);
        let mut obj = job.clone();
        obj.status = Some(st);
        // Conditional on the resourceVersion read: a stale view never overwrites counts.
        match api.replace_status(&key.name, &PostParams::default(), &obj).await {
            Ok(written) => {
                if let Some(rv) = written.metadata.resource_version {
                    self.written.lock().unwrap_or_else(|e| e.into_inner()).insert(key, (rv, Instant::now()));
                }
                Ok(())
            }
            Err(e) if util::is_not_found(&e) => Ok(()),
            Err(e) => Err(e.into()),
        }
    }

    async fn delete_pods(&self, job: &Job, pods: &[Arc<Pod>]) -> Result<(), SyncError> {
        if pods.is_empty() {
            return Ok(());
        }
        let key = Key::of(job);
        self.exp.expect_deletions(&key, pods.iter().map(|p| Key::of(&**p)).collect());
        let api: Api<Pod> = Api::namespaced(self.client.clone(), &key.namespace);
        let mut first_err = None;
        for p in pods {
            let name = p.metadata.name.clone().unwrap_or_default();
            match api.delete(&name, &DeleteParams::default()).await {
                Ok(_) => self.recorder.event(job, NORMAL, "SuccessfulDelete", format!("Deleted pod: {name}")),
                Err(e) => {
                    self.exp.deletion_observed(&key, &Key::of(&**p));
                    if !util::is_not_found(&e) {
                        self.recorder.event(
                            job,
                            WARNING,
                            "FailedDelete",
                            format!("Error deleting: {}", util::api_message(&e)),
                        );
                        first_err.get_or_insert(SyncError::from(e));
                    }
                }
            }
        }
        match first_err {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }

    /// `GetPodFromTemplate` + the Job's finalizer (and, Indexed, the index).
    fn pod_for(&self, job: &Job, index: Option<i32>) -> Pod {
        let key = Key::of(job);
        let template = job.spec.as_ref().map(|s| s.template.clone()).unwrap_or_default();
        let tmeta = template.metadata.unwrap_or_default();
        let mut labels = tmeta.labels.unwrap_or_default();
        let mut annotations = tmeta.annotations.unwrap_or_default();
        let mut spec = template.spec.unwrap_or_default();
        let mut generate_name = format!("{}-", key.name);
        if let Some(i) = index {
            annotations.insert(COMPLETION_INDEX_ANNOTATION.into(), i.to_string());
            labels.insert(COMPLETION_INDEX_ANNOTATION.into(), i.to_string());
            generate_name = format!("{}-{i}-", key.name);
            // `addCompletionIndexEnvVariables` and the stable hostname.
            let env = EnvVar {
                name: "JOB_COMPLETION_INDEX".into(),
                value: None,
                value_from: Some(EnvVarSource {
                    field_ref: Some(ObjectFieldSelector {
                        api_version: None,
                        field_path: format!("metadata.annotations['{COMPLETION_INDEX_ANNOTATION}']"),
                    }),
                    ..Default::default()
                }),
            };
            for c in spec.containers.iter_mut().chain(spec.init_containers.iter_mut().flatten()) {
                let vars = c.env.get_or_insert_with(Vec::new);
                if !vars.iter().any(|v| v.name == env.name) {
                    vars.push(env.clone());
                }
            }
            if spec.hostname.as_deref().is_none_or(str::is_empty) {
                spec.hostname = Some(format!("{}-{i}", key.name));
            }
        }
        let mut finalizers = tmeta.finalizers.unwrap_or_default();
        finalizers.push(TRACKING_FINALIZER.into());
        Pod {
            metadata: ObjectMeta {
                generate_name: Some(generate_name),
                namespace: Some(key.namespace.clone()),
                labels: Some(labels),
                annotations: (!annotations.is_empty()).then_some(annotations),
                finalizers: Some(finalizers),
                owner_references: Some(vec![util::new_controller_ref(&job.metadata, "batch/v1", "Job")]),
                ..Default::default()
            },
            spec: Some(spec),
            status: None,
        }
    }

    async fn create_pods(&self, job: &Job, n: usize, indexes: &[i32]) -> Result<(), SyncError> {
        let key = Key::of(job);
        self.exp.expect_creations(&key, n);
        let api: Api<Pod> = Api::namespaced(self.client.clone(), &key.namespace);
        let pods: Vec<Pod> = if indexes.is_empty() {
            (0..n).map(|_| self.pod_for(job, None)).collect()
        } else {
            indexes.iter().map(|i| self.pod_for(job, Some(*i))).collect()
        };
        let pp = PostParams::default();
        let results = futures::future::join_all(pods.iter().map(|p| api.create(&pp, p))).await;
        let mut first_err = None;
        for r in results {
            match r {
                Ok(p) => {
                    let name = p.metadata.name.unwrap_or_default();
                    self.recorder.event(job, NORMAL, "SuccessfulCreate", format!("Created pod: {name}"));
                }
                Err(e) => {
                    self.exp.creation_observed(&key);
                    if util::is_namespace_terminating(&e) {
                        continue;
                    }
                    self.recorder.event(
                        job,
                        WARNING,
                        "FailedCreate",
                        format!("Error creating: {}", util::api_message(&e)),
                    );
                    first_err.get_or_insert(SyncError::from(e));
                }
            }
        }
        match first_err {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn job(spec: serde_json::Value) -> Job {
        let mut spec = spec;
        spec["selector"] = json!({"matchLabels": {"batch.kubernetes.io/controller-uid": "u"}});
        if spec.get("template").is_none() {
            spec["template"] =
                json!({"spec": {"restartPolicy": "Never", "containers": [{"name": "c", "image": "busybox"}]}});
        }
        serde_json::from_value(json!({"metadata": {"name": "j", "namespace": "default", "uid": "u"}, "spec": spec}))
            .expect("job")
    }

    fn pod(name: &str, phase: &str, finalizer: bool, extra: serde_json::Value) -> Arc<Pod> {
        let mut v = json!({"metadata": {"name": name, "namespace": "default", "uid": format!("uid-{name}"),
            "ownerReferences": [{"apiVersion": "batch/v1", "kind": "Job", "name": "j", "uid": "u", "controller": true}]},
            "spec": {"containers": []}, "status": {"phase": phase}});
        if finalizer {
            v["metadata"]["finalizers"] = json!([TRACKING_FINALIZER]);
        }
        if let Some(a) = extra.get("annotations") {
            v["metadata"]["annotations"] = a.clone();
        }
        if let Some(st) = extra.get("status") {
            for (k, val) in st.as_object().unwrap() {
                v["status"][k] = val.clone();
            }
        }
        if extra.get("deleting").is_some() {
            v["metadata"]["deletionTimestamp"] = json!("2024-01-01T00:00:00Z");
        }
        Arc::new(serde_json::from_value(v).expect("pod"))
    }

    #[test]
    fn counting_goes_through_uncounted_pods() {
        let j = job(json!({"completions": 2, "parallelism": 2, "backoffLimit": 6}));
        let pods = vec![
            pod("ok", "Succeeded", true, json!({})),
            pod("bad", "Failed", true, json!({})),
            pod("run", "Running", true, json!({})),
            pod("gone", "Running", true, json!({"deleting": true})),
        ];
        let mut st = JobStatus::default();
        let c = count(&j, &mut st, &pods, &HashSet::new());
        // A deleted pod that did not succeed counts as failed (TerminatingOrFailed).
        assert_eq!((c.succeeded, c.failed, c.active.len(), c.terminating), (1, 2, 1, 1));
        let u = st.uncounted_terminated_pods.clone().unwrap();
        assert_eq!(u.succeeded.unwrap(), vec!["uid-ok".to_string()]);
        assert_eq!(u.failed.unwrap(), vec!["uid-bad".to_string(), "uid-gone".to_string()]);
        assert_eq!(st.succeeded, None);
        // The same pods seen again are not counted twice.
        let mut again = st.clone();
        let c2 = count(&j, &mut again, &pods, &HashSet::new());
        assert!(c2.new_succeeded.is_empty() && c2.new_failed.is_empty());
        assert_eq!((c2.succeeded, c2.failed), (1, 2));
        // Finalizers removed (or pods gone): the uids move into the counts.
        let removed: HashSet<String> = ["uid-ok", "uid-bad"].iter().map(|s| s.to_string()).collect();
        let pods2 = vec![pods[0].clone(), pods[1].clone(), pods[2].clone()];
        let mut done = st.clone();
        let c3 = count(&j, &mut done, &pods2, &removed);
        assert_eq!((done.succeeded, done.failed), (Some(1), Some(2)));
        assert_eq!((c3.succeeded, c3.failed), (1, 2));
        assert!(uncounted_empty(&done));
    }

    #[test]
    fn finishing_conditions() {
        let j = job(json!({"completions": 2, "parallelism": 1, "backoffLimit": 1}));
        let st = JobStatus::default();
        let mut c = Counts { succeeded: 2, ..Default::default() };
        assert_eq!(
            finish_target(&j, &st, &c).map(|t| (t.0, t.1)),
            Some(("SuccessCriteriaMet", REASON_COMPLETIONS.into()))
        );
        c.succeeded = 1;
        assert!(finish_target(&j, &st, &c).is_none());
        c.failed = 2;
        let t = finish_target(&j, &st, &c).unwrap();
        assert_eq!((t.0, t.1.as_str(), t.2.as_str()), ("FailureTarget", REASON_BACKOFF, MSG_BACKOFF));
        // activeDeadlineSeconds.
        let d = job(json!({"completions": 1, "activeDeadlineSeconds": 5}));
        let old = JobStatus {
            start_time: Some(Time(k8s_openapi::jiff::Timestamp::now() - SignedDuration::from_secs(6))),
            ..Default::default()
        };
        assert_eq!(finish_target(&d, &old, &Counts::default()).unwrap().1, REASON_DEADLINE);
        // A work queue (no completions) is done once one pod succeeded and none runs.
        let wq = job(json!({"parallelism": 3}));
        let c = Counts { succeeded: 1, ..Default::default() };
        assert!(finish_target(&wq, &st, &c).is_some());
        assert_eq!(want_active(&wq, &Counts::default()), 3);
        assert_eq!(want_active(&j, &Counts { succeeded: 1, ..Default::default() }), 1);
        assert_eq!(
            want_active(
                &job(json!({"completions": 5, "parallelism": 3})),
                &Counts { succeeded: 4, ..Default::default() }
            ),
            1
        );
    }

    #[test]
    fn indexed_jobs_track_indexes() {
        let j = job(json!({"completions": 4, "parallelism": 2, "completionMode": "Indexed"}));
        let idx = |i: i32| json!({"annotations": {COMPLETION_INDEX_ANNOTATION: i.to_string()}});
        let pods = vec![
            pod("a", "Succeeded", true, idx(0)),
            pod("b", "Running", true, idx(1)),
            pod("c", "Succeeded", true, idx(9)),
        ];
        let mut st = JobStatus { completed_indexes: Some("2".into()), ..Default::default() };
        let c = count(&j, &mut st, &pods, &HashSet::new());
        assert_eq!(st.completed_indexes.as_deref(), Some("0,2"));
        assert_eq!(c.ignored.len(), 1, "index out of range");
        assert_eq!(missing_indexes(&j, &c, 5), vec![3]);
        assert_eq!(format_indexes(&parse_indexes("1,3-5,7,8")), "1,3-5,7-8");
        assert_eq!(parse_indexes("0-2,4").into_iter().collect::<Vec<_>>(), vec![0, 1, 2, 4]);
    }

    #[test]
    fn pod_failure_policy_rules() {
        let j = job(json!({"completions": 1, "podFailurePolicy": {"rules": [
            {"action": "Ignore", "onPodConditions": [{"type": "DisruptionTarget"}]},
            {"action": "FailJob", "onExitCodes": {"operator": "In", "values": [42]}}]}}));
        let exit = |code: i32| {
            json!({"status": {"containerStatuses": [{"name": "c", "image": "i", "imageID": "", "ready": false,
            "restartCount": 0, "state": {"terminated": {"exitCode": code}}}]}})
        };
        assert_eq!(
            match_pod_failure_policy(&j, &pod("p", "Failed", true, exit(42))),
            PolicyAction::FailJob(
                "Container c for pod default/p failed with exit code 42 matching FailJob rule at index 1".into()
            )
        );
        assert_eq!(match_pod_failure_policy(&j, &pod("p", "Failed", true, exit(1))), PolicyAction::Count);
        let disrupted = json!({"status": {"conditions": [{"type": "DisruptionTarget", "status": "True"}]}});
        assert_eq!(match_pod_failure_policy(&j, &pod("p", "Failed", true, disrupted)), PolicyAction::Ignore);
        // With a pod failure policy only the Failed phase counts.
        assert!(!is_pod_failed(&pod("p", "Running", true, json!({"deleting": true})), &j));
    }

    #[test]
    fn resource_versions_reached() {
        assert!(rv_reached("12", "12"));
        assert!(rv_reached("13", "12"));
        assert!(!rv_reached("9", "12"));
        assert!(rv_reached("abc", "abc"));
        assert!(!rv_reached("abd", "abc"));
    }

    #[test]
    fn backoff_grows_and_caps() {
        let just_now = util::now();
        assert_eq!(remaining_backoff(0, Some(&just_now)), Duration::ZERO);
        let one = remaining_backoff(1, Some(&just_now));
        assert!(one > Duration::from_secs(8) && one <= BACKOFF_BASE, "{one:?}");
        assert!(remaining_backoff(3, Some(&just_now)) > Duration::from_secs(38));
        assert!(remaining_backoff(30, Some(&just_now)) <= BACKOFF_MAX);
        let long_ago = Time(k8s_openapi::jiff::Timestamp::now() - SignedDuration::from_secs(600));
        assert_eq!(remaining_backoff(3, Some(&long_ago)), Duration::ZERO);
    }
}
