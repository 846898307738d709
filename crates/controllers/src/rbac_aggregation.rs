//! `clusterrole-aggregation` (`pkg/controller/clusterroleaggregation`): a
//! ClusterRole with an `aggregationRule` gets the rules of every ClusterRole
//! its selectors match, so `admin` holds `edit` holds `view`, and a CRD's
//! `aggregate-to-view` role extends `view`.

use crate::informer::Key;
use crate::queue::{resync, run_workers, Queue};
use crate::{metrics, Ctx, SyncError};
use apimachinery::rbac::Policy;
use k8s_openapi::api::rbac::v1::ClusterRole;
use kube::api::{Api, PostParams};
use std::sync::Arc;
use tokio::task::JoinHandle;

struct Aggregator {
    client: kube::Client,
    inf: Arc<crate::informer::Informers>,
    queue: Arc<Queue>,
}

pub(crate) fn start(ctx: &Ctx, tasks: &mut Vec<JoinHandle<()>>) {
    let c = Arc::new(Aggregator {
        client: ctx.client.clone(),
        inf: ctx.inf.clone(),
        queue: Queue::new(metrics::register("clusterrole-aggregation")),
    });
    // Any ClusterRole change may change what an aggregated one must hold.
    ctx.inf.cluster_roles.on_change_weak(&c, |h, _old, _new| {
        for r in h.inf.cluster_roles.list().iter().filter(|r| r.aggregation_rule.is_some()) {
            h.queue.add(Key::of(&**r));
        }
    });
    let period = ctx.config.resync_period;
    tasks.push(tokio::spawn(async move {
        c.inf.cluster_roles.wait_ready().await;
        let k = c.clone();
        let keys = move || {
            k.inf.cluster_roles.list().iter().filter(|r| r.aggregation_rule.is_some()).map(|r| Key::of(&**r)).collect()
        };
        let w = c.clone();
        let sync = move |key: Key| {
            let w = w.clone();
            async move { w.sync(&key).await }
        };
        tokio::join!(run_workers(c.queue.clone(), 1, sync), resync(c.queue.clone(), period, keys));
    }));
}

impl Aggregator {
    async fn sync(&self, key: &Key) -> Result<(), SyncError> {
        let Some(role) = self.inf.cluster_roles.get("", &key.name) else { return Ok(()) };
        let Some(agg) = &role.aggregation_rule else { return Ok(()) };
        let mut policy = Policy::default();
        for r in self.inf.cluster_roles.list() {
            policy.cluster_roles.insert(r.metadata.name.clone().unwrap_or_default(), (*r).clone());
        }
        let rules = policy.aggregated_rules(agg, &key.name);
        if role.rules.as_deref().unwrap_or_default() == rules.as_slice() {
            return Ok(());
        }
        let mut updated = (*role).clone();
        updated.rules = Some(rules);
        match Api::<ClusterRole>::all(self.client.clone()).replace(&key.name, &PostParams::default(), &updated).await {
            Ok(_) => Ok(()),
            // The next event brings the newer version.
            Err(e) if crate::util::is_conflict(&e) || crate::util::is_not_found(&e) => Ok(()),
            Err(e) => Err(e.into()),
        }
    }
}
