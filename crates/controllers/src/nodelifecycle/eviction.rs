//! Taint-based eviction: pods on a node with `NoExecute` taints they do not
//! tolerate are deleted at once; pods that tolerate them for
//! `tolerationSeconds` are deleted when that ran out, unless the taints went
//! away first (upstream `pkg/controller/tainteviction/taint_eviction.go`).

use crate::events::{Recorder, NORMAL};
use crate::informer::{Informers, Key};
use crate::queue::{resync, run_workers, Queue};
use crate::scheduler::tolerates;
use crate::{metrics, util, Ctx, SyncError};
use k8s_openapi::api::core::v1::{Pod, Taint, Toleration};
use kube::api::{Api, DeleteParams, Patch, PatchParams};
use serde_json::json;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::task::JoinHandle;

/// What to do with a pod on a node with NoExecute taints.
#[derive(Clone, Debug, PartialEq)]
pub enum Plan {
    /// Every taint is tolerated forever.
    Keep,
    /// A taint is not tolerated (or only for 0 s): delete now.
    Now,
    /// Delete once the shortest toleration has run out.
    After(Duration),
}

/// `GetMatchingTolerations` + `getMinTolerationTime`: the first toleration of
/// each taint counts; the shortest `tolerationSeconds` among them decides.
pub fn plan(tolerations: &[Toleration], taints: &[Taint]) -> Plan {
    let mut used = Vec::new();
    for taint in taints {
        match tolerations.iter().find(|t| tolerates(t, taint)) {
            Some(t) => used.push(t),
            None => return Plan::Now,
        }
    }
    if used.is_empty() {
        return Plan::Keep;
    }
    let mut min: Option<i64> = None;
    for t in used {
        if let Some(s) = t.toleration_seconds {
            if s <= 0 {
                return Plan::Now;
            }
            min = Some(min.map_or(s, |m| m.min(s)));
        }
    }
    match min {
        None => Plan::Keep,
        Some(s) => Plan::After(Duration::from_secs(s.unsigned_abs())),
    }
}

struct TaintEviction {
    client: kube::Client,
    inf: Arc<Informers>,
    queue: Arc<Queue>,
    /// Pods whose deletion is scheduled, and since when (upstream keeps the
    /// first scheduling time, so a taint swap does not restart the clock).
    scheduled: Mutex<HashMap<Key, Instant>>,
    recorder: Recorder,
}

fn no_execute(taints: Option<&Vec<Taint>>) -> Vec<Taint> {
    taints.into_iter().flatten().filter(|t| t.effect == "NoExecute").cloned().collect()
}

pub(crate) fn start(ctx: &Ctx, tasks: &mut Vec<JoinHandle<()>>) {
    let (recorder, rec_task) = Recorder::new(ctx.client.clone(), "taint-eviction-controller");
    tasks.push(rec_task);
    let c = Arc::new(TaintEviction {
        client: ctx.client.clone(),
        inf: ctx.inf.clone(),
        queue: Queue::new(metrics::register("taint_eviction")),
        scheduled: Mutex::new(HashMap::new()),
        recorder,
    });
    ctx.inf.pods.on_change_weak(&c, |h, old, new| {
        if let Some(p) = new.or(old) {
            if !util::node_name(p).is_empty() {
                h.queue.add(Key::of(p));
            }
        }
    });
    ctx.inf.nodes.on_change_weak(&c, |h, old, new| {
        let taints = |n: Option<&k8s_openapi::api::core::v1::Node>| {
            no_execute(n.and_then(|n| n.spec.as_ref()).and_then(|s| s.taints.as_ref()))
        };
        if taints(old) == taints(new) {
            return;
        }
        let Some(name) = new.or(old).and_then(|n| n.metadata.name.clone()) else { return };
        for p in h.inf.pods.list().iter().filter(|p| util::node_name(p) == name) {
            h.queue.add(Key::of(&**p));
        }
    });
    let (workers, period) = (ctx.config.workers, ctx.config.resync_period);
    tasks.push(tokio::spawn(async move {
        c.inf.pods.wait_ready().await;
        c.inf.nodes.wait_ready().await;
        let k = c.clone();
        let keys = move || {
            k.inf.pods.list().iter().filter(|p| !util::node_name(p).is_empty()).map(|p| Key::of(&**p)).collect()
        };
        let s = c.clone();
        let sync = move |key: Key| {
            let s = s.clone();
            async move { s.sync(&key).await }
        };
        tokio::join!(run_workers(c.queue.clone(), workers, sync), resync(c.queue.clone(), period, keys));
    }));
}

impl TaintEviction {
    fn cancel(&self, key: &Key, pod: Option<&Pod>) {
        let was = self.scheduled.lock().unwrap_or_else(|e| e.into_inner()).remove(key).is_some();
        if let (true, Some(pod)) = (was, pod) {
            self.recorder.event(pod, NORMAL, "TaintManagerEviction", format!("Cancelling deletion of Pod {key}"));
        }
    }

    async fn sync(&self, key: &Key) -> Result<(), SyncError> {
        let Some(pod) = self.inf.pods.get_key(key) else {
            self.cancel(key, None);
            return Ok(());
        };
        if pod.metadata.deletion_timestamp.is_some() {
            self.cancel(key, None);
            return Ok(());
        }
        let node = self.inf.nodes.get("", util::node_name(&pod));
        let taints = no_execute(node.as_ref().and_then(|n| n.spec.as_ref()).and_then(|s| s.taints.as_ref()));
        if taints.is_empty() {
            self.cancel(key, Some(&pod));
            return Ok(());
        }
        let tolerations = pod.spec.as_ref().and_then(|s| s.tolerations.clone()).unwrap_or_default();
        match plan(&tolerations, &taints) {
            Plan::Keep => {
                self.cancel(key, Some(&pod));
                Ok(())
            }
            Plan::Now => self.evict(key, &pod).await,
            Plan::After(wait) => {
                let since = *self
                    .scheduled
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .entry(key.clone())
                    .or_insert_with(Instant::now);
                let left = wait.saturating_sub(since.elapsed());
                if left.is_zero() {
                    self.evict(key, &pod).await
                } else {
                    self.queue.add_after(key.clone(), left);
                    Ok(())
                }
            }
        }
    }

    /// Mark the pod (`DisruptionTarget`, as upstream) and delete it.
    async fn evict(&self, key: &Key, pod: &Pod) -> Result<(), SyncError> {
        self.scheduled.lock().unwrap_or_else(|e| e.into_inner()).remove(key);
        self.recorder.event(pod, NORMAL, "TaintManagerEviction", format!("Marking for deletion Pod {key}"));
        let api: Api<Pod> = Api::namespaced(self.client.clone(), &key.namespace);
        let conditions = super::with_condition(
            pod,
            "DisruptionTarget",
            "True",
            "DeletionByTaintManager",
            "Taint manager: deleting due to NoExecute taint",
        );
        let patch = json!({ "status": { "conditions": conditions } });
        match api.patch_status(&key.name, &PatchParams::default(), &Patch::Merge(&patch)).await {
            Ok(_) => {}
            Err(e) if util::is_not_found(&e) => return Ok(()),
            Err(e) => return Err(e.into()),
        }
        match api.delete(&key.name, &DeleteParams::default()).await {
            Ok(_) => {
                tracing::info!(pod = %key, "evicted: its node has a NoExecute taint it does not tolerate");
                Ok(())
            }
            Err(e) if util::is_not_found(&e) => Ok(()),
            Err(e) => Err(e.into()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn taint(key: &str) -> Taint {
        Taint { key: key.into(), effect: "NoExecute".into(), value: None, time_added: None }
    }

    fn toleration(key: &str, seconds: Option<i64>) -> Toleration {
        Toleration {
            key: Some(key.into()),
            operator: Some("Exists".into()),
            effect: Some("NoExecute".into()),
            toleration_seconds: seconds,
            value: None,
        }
    }

    #[test]
    fn the_shortest_matching_toleration_decides() {
        let unreachable = taint(super::super::taints::UNREACHABLE);
        let default = [toleration(super::super::taints::NOT_READY, Some(300)), toleration(&unreachable.key, Some(300))];
        assert_eq!(plan(&default, std::slice::from_ref(&unreachable)), Plan::After(Duration::from_secs(300)));
        assert_eq!(plan(&[], std::slice::from_ref(&unreachable)), Plan::Now);
        // DaemonSet pods tolerate it forever.
        assert_eq!(plan(&[toleration(&unreachable.key, None)], std::slice::from_ref(&unreachable)), Plan::Keep);
        assert_eq!(plan(&[toleration(&unreachable.key, Some(0))], std::slice::from_ref(&unreachable)), Plan::Now);
        // Two taints: each needs a toleration; the shorter one wins.
        let custom = taint("example.com/maintenance");
        let both = [toleration(&unreachable.key, Some(300)), toleration(&custom.key, Some(20))];
        assert_eq!(plan(&both, &[unreachable.clone(), custom.clone()]), Plan::After(Duration::from_secs(20)));
        assert_eq!(plan(&both[..1], &[unreachable, custom]), Plan::Now);
    }
}
