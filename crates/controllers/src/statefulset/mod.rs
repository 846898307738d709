//! StatefulSet controller (upstream `pkg/controller/statefulset/stateful_set.go`,
//! `stateful_set_control.go`, `stateful_pod_control.go`): pods `<set>-<ordinal>`
//! with `hostname` = pod name and `subdomain` = `serviceName` (so the cluster
//! DNS has `<pod>.<service>.<ns>.svc` once the headless Service selects them),
//! labels `statefulset.kubernetes.io/pod-name`, `apps.kubernetes.io/pod-index`
//! and `controller-revision-hash` (the revision name). The rules of a sync are in
//! [`plan`]; template revisions (ControllerRevisions) in [`revision`]. Status as
//! `updateStatefulSetStatus` (with `completeRollingUpdate`).
//!
//! Not done: `volumeClaimTemplates` are ignored (there are no volumes yet) and
//! so is `persistentVolumeClaimRetentionPolicy`; `maxUnavailable` (alpha) is off.

mod plan;
mod revision;

use crate::events::{Recorder, NORMAL, WARNING};
use crate::informer::Key;
use crate::queue::{resync, run_workers, Queue};
use crate::{metrics, podcontrol, util, Ctx, SyncError};
use k8s_openapi::api::apps::v1::{ControllerRevision, StatefulSet, StatefulSetStatus};
use k8s_openapi::api::core::v1::{Pod, PodTemplateSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use k8s_openapi::apimachinery::pkg::runtime::RawExtension;
use kube::api::{Api, DeleteParams, ListParams, ObjectMeta, Patch, PatchParams, PostParams};
use plan::{Action, At, Input, POD_INDEX_LABEL, POD_NAME_LABEL, REVISION_LABEL};
use serde_json::json;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;
use tokio::task::JoinHandle;

const COMPONENT: &str = "statefulset-controller";

pub fn start(ctx: &Ctx, tasks: &mut Vec<JoinHandle<()>>) {
    let (recorder, rec_task) = Recorder::new(ctx.client.clone(), COMPONENT);
    tasks.push(rec_task);
    let c = Arc::new(Ssc {
        client: ctx.client.clone(),
        inf: ctx.inf.clone(),
        queue: Queue::new(metrics::register("statefulset")),
        recorder,
    });
    ctx.inf.statefulsets.on_change_weak(&c, |h, _, new| {
        if let Some(s) = new {
            h.queue.add(Key::of(s));
        }
    });
    ctx.inf.pods.on_change_weak(&c, |h, old, new| h.on_pod(old, new));
    let (workers, period) = (ctx.config.workers, ctx.config.resync_period);
    tasks.push(tokio::spawn(async move {
        c.inf.wait_ready().await;
        tracing::debug!(controller = c.queue.name(), "caches synced, starting workers");
        let k = c.clone();
        let keys = move || k.inf.statefulsets.list().iter().map(|s| Key::of(&**s)).collect();
        let s = c.clone();
        let sync = move |key: Key| {
            let s = s.clone();
            async move { s.sync(&key).await }
        };
        tokio::join!(run_workers(c.queue.clone(), workers, sync), resync(c.queue.clone(), period, keys));
    }));
}

struct Ssc {
    client: kube::Client,
    inf: Arc<crate::informer::Informers>,
    queue: Arc<Queue>,
    recorder: Recorder,
}

/// The two templates a sync works with.
struct Revisions {
    current: String,
    update: String,
    current_template: PodTemplateSpec,
    collision_count: i32,
    /// Every revision of the set, oldest first.
    all: Vec<ControllerRevision>,
}

impl Ssc {
    /// `addPod`/`updatePod`/`deletePod`: the owner, or for an orphan every set
    /// that selects it.
    fn on_pod(&self, old: Option<&Pod>, new: Option<&Pod>) {
        let Some(pod) = new.or(old) else { return };
        let ns = pod.metadata.namespace.as_deref().unwrap_or_default();
        match util::controller_of(&pod.metadata) {
            Some(r) if r.kind == "StatefulSet" => {
                if let Some(set) = self.inf.statefulsets.get(ns, &r.name) {
                    if set.metadata.uid.as_deref() == Some(r.uid.as_str()) {
                        self.queue.add(Key::of(&*set));
                        // A pod that just became ready is available after minReadySeconds.
                        let min_ready = set.spec.as_ref().and_then(|s| s.min_ready_seconds).unwrap_or(0);
                        let became_ready = old.is_some_and(|o| !util::is_pod_ready(o)) && util::is_pod_ready(pod);
                        if min_ready > 0 && became_ready {
                            self.queue.add_after(Key::of(&*set), Duration::from_secs(min_ready as u64 + 1));
                        }
                    }
                }
            }
            Some(_) => {}
            None => {
                for set in self.inf.statefulsets.list_ns(ns) {
                    let sel = set.spec.as_ref().map(|s| &s.selector);
                    if sel.is_some_and(|s| {
                        !util::selector_is_empty(s) && util::selector_matches(s, pod.metadata.labels.as_ref())
                    }) {
                        self.queue.add(Key::of(&*set));
                    }
                }
            }
        }
    }

    async fn sync(&self, key: &Key) -> Result<(), SyncError> {
        let Some(set) = self.inf.statefulsets.get_key(key) else { return Ok(()) };
        let Some(spec) = set.spec.as_ref() else { return Ok(()) };
        if util::selector_is_empty(&spec.selector) {
            self.recorder.event(
                &*set,
                WARNING,
                "SelectingAll",
                "This statefulset is selecting all pods. A non-empty selector is required.".into(),
            );
            return Ok(());
        }
        // `getPodsForStatefulSet`: members (by name) it selects or owns.
        let uid = set.metadata.uid.clone().unwrap_or_default();
        let candidates: Vec<Arc<Pod>> = self
            .inf
            .pods
            .list_ns(&key.namespace)
            .into_iter()
            .filter(|p| {
                plan::ordinal(&key.name, p.metadata.name.as_deref().unwrap_or_default()).is_some()
                    || util::controller_of(&p.metadata).is_some_and(|r| r.uid == uid)
            })
            .collect();
        let pods =
            podcontrol::claim_pods(&self.client, &*set, "apps/v1", "StatefulSet", &spec.selector, candidates).await?;
        let revs = self.revisions(&set).await?;
        let status = set.status.clone().unwrap_or_default();
        let strategy = spec.update_strategy.as_ref();
        let rolling = strategy.and_then(|s| s.type_.as_deref()).unwrap_or("RollingUpdate") == "RollingUpdate";
        let min_ready = spec.min_ready_seconds.unwrap_or(0);
        let inp = Input {
            name: &key.name,
            replicas: spec.replicas.unwrap_or(1),
            start: spec.ordinals.as_ref().and_then(|o| o.start).unwrap_or(0),
            monotonic: spec.pod_management_policy.as_deref() != Some("Parallel"),
            rolling,
            partition: strategy.and_then(|s| s.rolling_update.as_ref()).map(|r| r.partition.unwrap_or(0)),
            status_current_replicas: status.current_replicas.unwrap_or(0),
            min_ready_seconds: min_ready,
            update_revision: &revs.update,
            deleting: set.metadata.deletion_timestamp.is_some(),
        };
        let (actions, deleted_current) = plan::plan(&inp, &pods);
        let result = self.apply(&set, &revs, actions).await;
        let (replicas, ready, available, current, updated) =
            plan::counts(&pods, min_ready, &revs.current, &revs.update);
        let mut st = StatefulSetStatus {
            observed_generation: set.metadata.generation,
            replicas,
            ready_replicas: Some(ready),
            available_replicas: Some(available),
            current_replicas: Some((current - deleted_current).max(0)),
            updated_replicas: Some(updated),
            current_revision: Some(revs.current.clone()),
            update_revision: Some(revs.update.clone()),
            collision_count: Some(revs.collision_count),
            conditions: status.conditions.clone(),
        };
        // `completeRollingUpdate`.
        if rolling && updated == replicas && ready == replicas {
            st.current_replicas = Some(updated);
            st.current_revision = Some(revs.update.clone());
        }
        self.update_status(&set, st).await?;
        self.truncate_history(&set, &pods, &revs).await?;
        if min_ready > 0 {
            self.queue.add_after(key.clone(), Duration::from_secs(min_ready as u64));
        }
        result
    }

    /// `ListRevisions` + `getStatefulSetRevisions`: the update revision (created,
    /// or an older one renumbered on a rollback) and the current one.
    async fn revisions(&self, set: &StatefulSet) -> Result<Revisions, SyncError> {
        let key = Key::of(set);
        let spec = set.spec.clone().unwrap_or_default();
        let uid = set.metadata.uid.clone().unwrap_or_default();
        let status = set.status.clone().unwrap_or_default();
        let mut collision_count = status.collision_count.unwrap_or(0);
        let data = revision::template_patch(&spec.template);
        let api: Api<ControllerRevision> = Api::namespaced(self.client.clone(), &key.namespace);
        // `ListControllerRevisions`: the ones the set controls.
        let mut all: Vec<ControllerRevision> = match api.list(&ListParams::default()).await {
            Ok(list) => list
                .items
                .into_iter()
                .filter(|r| util::controller_of(&r.metadata).is_some_and(|o| o.uid == uid))
                .collect(),
            // An API server without ControllerRevisions: revisions are names only.
            Err(e) if util::is_not_found(&e) => {
                let update = revision::name(&key.name, &revision::hash(&data, collision_count));
                let current =
                    status.current_revision.clone().filter(|c| !c.is_empty()).unwrap_or_else(|| update.clone());
                return Ok(Revisions {
                    current,
                    update,
                    current_template: spec.template,
                    collision_count,
                    all: Vec::new(),
                });
            }
            Err(e) => return Err(e.into()),
        };
        revision::sort(&mut all);
        let next = all.last().map_or(1, |r| r.revision + 1);
        let equal: Vec<usize> = (0..all.len()).filter(|&i| revision::holds(&all[i], &data)).collect();
        let update = match equal.last() {
            Some(&i) if i + 1 == all.len() => all[i].metadata.name.clone().unwrap_or_default(),
            Some(&i) => {
                // Back to an older template: it becomes the newest revision.
                let name = all[i].metadata.name.clone().unwrap_or_default();
                let patch = json!({ "revision": next });
                let updated = api.patch(&name, &PatchParams::default(), &Patch::Merge(&patch)).await?;
                all[i] = updated;
                revision::sort(&mut all);
                name
            }
            None => {
                let rev = self.create_revision(&api, set, &data, next, &mut collision_count).await?;
                let name = rev.metadata.name.clone().unwrap_or_default();
                all.push(rev);
                name
            }
        };
        let current_rev =
            status.current_revision.as_deref().and_then(|c| all.iter().find(|r| r.metadata.name.as_deref() == Some(c)));
        let (current, current_template) = match current_rev {
            Some(r) => (
                r.metadata.name.clone().unwrap_or_default(),
                revision::template_of(r).unwrap_or_else(|| spec.template.clone()),
            ),
            None => (update.clone(), spec.template.clone()),
        };
        Ok(Revisions { current, update, current_template, collision_count, all })
    }

    /// `CreateControllerRevision`: a name taken by a different revision bumps the
    /// collision count and tries again.
    async fn create_revision(
        &self,
        api: &Api<ControllerRevision>,
        set: &StatefulSet,
        data: &serde_json::Value,
        number: i64,
        collision_count: &mut i32,
    ) -> Result<ControllerRevision, SyncError> {
        let set_name = set.metadata.name.clone().unwrap_or_default();
        let mut labels: BTreeMap<String, String> = set
            .spec
            .as_ref()
            .and_then(|s| s.template.metadata.as_ref())
            .and_then(|m| m.labels.clone())
            .unwrap_or_default();
        let label_hash = revision::hash(data, *collision_count);
        labels.insert(REVISION_LABEL.into(), label_hash);
        for _ in 0..10 {
            let name = revision::name(&set_name, &revision::hash(data, *collision_count));
            let rev = ControllerRevision {
                metadata: ObjectMeta {
                    name: Some(name.clone()),
                    labels: Some(labels.clone()),
                    owner_references: Some(vec![util::new_controller_ref(&set.metadata, "apps/v1", "StatefulSet")]),
                    ..Default::default()
                },
                data: Some(RawExtension(data.clone())),
                revision: number,
            };
            match api.create(&PostParams::default(), &rev).await {
                Ok(r) => return Ok(r),
                Err(e) if util::is_already_exists(&e) => {
                    let existing = api.get(&name).await?;
                    if revision::holds(&existing, data) {
                        return Ok(existing);
                    }
                    *collision_count += 1;
                }
                Err(e) => return Err(e.into()),
            }
        }
        Err(SyncError::from(format!("no free name for a revision of StatefulSet {}", Key::of(set))))
    }

    /// `truncateHistory`: delete the oldest revisions no pod and neither status
    /// revision uses, beyond `revisionHistoryLimit`.
    async fn truncate_history(&self, set: &StatefulSet, pods: &[Arc<Pod>], revs: &Revisions) -> Result<(), SyncError> {
        let limit = set.spec.as_ref().and_then(|s| s.revision_history_limit).unwrap_or(10);
        if limit < 0 {
            return Ok(());
        }
        let live = |n: &str| n == revs.current || n == revs.update || pods.iter().any(|p| plan::revision_of(p) == n);
        let old: Vec<&ControllerRevision> =
            revs.all.iter().filter(|r| !r.metadata.name.as_deref().is_some_and(live)).collect();
        let excess = old.len().saturating_sub(limit as usize);
        let api: Api<ControllerRevision> = Api::namespaced(self.client.clone(), &Key::of(set).namespace);
        for r in &old[..excess] {
            let name = r.metadata.name.clone().unwrap_or_default();
            match api.delete(&name, &DeleteParams::default()).await {
                Ok(_) => {}
                Err(e) if util::is_not_found(&e) => {}
                Err(e) => return Err(e.into()),
            }
        }
        Ok(())
    }

    /// Carry out the plan in order; the first failure stops it.
    async fn apply(&self, set: &StatefulSet, revs: &Revisions, actions: Vec<Action>) -> Result<(), SyncError> {
        let key = Key::of(set);
        let api: Api<Pod> = Api::namespaced(self.client.clone(), &key.namespace);
        for action in actions {
            match action {
                Action::Create(ord, at) => {
                    let pod = new_pod(set, revs, ord, at);
                    let name = pod.metadata.name.clone().unwrap_or_default();
                    match api.create(&PostParams::default(), &pod).await {
                        Ok(_) => self.recorder.event(
                            set,
                            NORMAL,
                            "SuccessfulCreate",
                            format!("create Pod {name} in StatefulSet {} successful", key.name),
                        ),
                        // Still in the store (terminating) or not yet seen: the
                        // pod's events bring the set back.
                        Err(e) if util::is_already_exists(&e) => return Ok(()),
                        Err(e) if util::is_namespace_terminating(&e) => return Ok(()),
                        Err(e) => {
                            self.recorder.event(
                                set,
                                WARNING,
                                "FailedCreate",
                                format!(
                                    "create Pod {name} in StatefulSet {} failed error: {}",
                                    key.name,
                                    util::api_message(&e)
                                ),
                            );
                            return Err(e.into());
                        }
                    }
                }
                Action::Delete(name) => match api.delete(&name, &DeleteParams::default()).await {
                    Ok(_) => self.recorder.event(
                        set,
                        NORMAL,
                        "SuccessfulDelete",
                        format!("delete Pod {name} in StatefulSet {} successful", key.name),
                    ),
                    Err(e) if util::is_not_found(&e) => {}
                    Err(e) => {
                        self.recorder.event(
                            set,
                            WARNING,
                            "FailedDelete",
                            format!(
                                "delete Pod {name} in StatefulSet {} failed error: {}",
                                key.name,
                                util::api_message(&e)
                            ),
                        );
                        return Err(e.into());
                    }
                },
                Action::Relabel(name, ord) => {
                    let patch =
                        json!({"metadata": {"labels": {POD_NAME_LABEL: name, POD_INDEX_LABEL: ord.to_string()}}});
                    match api.patch(&name, &PatchParams::default(), &Patch::Merge(&patch)).await {
                        Ok(_) => {}
                        Err(e) if util::is_not_found(&e) => {}
                        Err(e) => return Err(e.into()),
                    }
                }
            }
        }
        Ok(())
    }

    async fn update_status(&self, set: &StatefulSet, st: StatefulSetStatus) -> Result<(), SyncError> {
        if set.status.as_ref() == Some(&st) {
            return Ok(());
        }
        let key = Key::of(set);
        let api: Api<StatefulSet> = Api::namespaced(self.client.clone(), &key.namespace);
        let mut obj = set.clone();
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

/// `newStatefulSetPod` + `updateIdentity` + `setPodRevision`.
fn new_pod(set: &StatefulSet, revs: &Revisions, ord: i32, at: At) -> Pod {
    let spec = set.spec.clone().unwrap_or_default();
    let (template, rev) = match at {
        At::Current => (revs.current_template.clone(), revs.current.clone()),
        At::Update => (spec.template.clone(), revs.update.clone()),
    };
    let set_name = set.metadata.name.clone().unwrap_or_default();
    let name = format!("{set_name}-{ord}");
    let tmeta = template.metadata.unwrap_or_default();
    let mut labels = tmeta.labels.unwrap_or_default();
    labels.insert(POD_NAME_LABEL.into(), name.clone());
    labels.insert(POD_INDEX_LABEL.into(), ord.to_string());
    labels.insert(REVISION_LABEL.into(), rev);
    let mut pod_spec = template.spec.unwrap_or_default();
    pod_spec.hostname = Some(name.clone());
    pod_spec.subdomain = Some(spec.service_name.clone().unwrap_or_default()).filter(|s| !s.is_empty());
    let owner: OwnerReference = util::new_controller_ref(&set.metadata, "apps/v1", "StatefulSet");
    Pod {
        metadata: ObjectMeta {
            name: Some(name),
            namespace: set.metadata.namespace.clone(),
            labels: Some(labels),
            annotations: tmeta.annotations,
            finalizers: tmeta.finalizers,
            owner_references: Some(vec![owner]),
            ..Default::default()
        },
        spec: Some(pod_spec),
        status: None,
    }
}
