//! `tokencleaner` (`pkg/controller/bootstrap/tokencleaner.go`): a bootstrap
//! token Secret is deleted once its `expiration` has passed, so an expired
//! join token cannot be found, let alone used.

use crate::informer::Key;
use crate::queue::{resync, run_workers, Queue};
use crate::{metrics, Ctx, SyncError};
use apimachinery::bootstrap_token;
use k8s_openapi::api::core::v1::Secret;
use kube::api::{Api, DeleteParams, Preconditions};
use std::sync::Arc;
use std::time::Duration;
use tokio::task::JoinHandle;

/// How long until the token in `secret` expires: `None` if it never does or is
/// not a bootstrap token, zero if it already has.
pub fn time_left(secret: &serde_json::Value, now: jiff::Timestamp) -> Option<Duration> {
    let info = bootstrap_token::parse_secret(secret)?;
    let exp: jiff::Timestamp = info.expiration?.parse().ok()?;
    let left = exp.duration_since(now);
    Some(Duration::try_from(left).unwrap_or(Duration::ZERO))
}

struct Cleaner {
    client: kube::Client,
    inf: Arc<crate::informer::Informers>,
    queue: Arc<Queue>,
}

pub(crate) fn start(ctx: &Ctx, tasks: &mut Vec<JoinHandle<()>>) {
    let c = Arc::new(Cleaner {
        client: ctx.client.clone(),
        inf: ctx.inf.clone(),
        queue: Queue::new(metrics::register("token-cleaner")),
    });
    ctx.inf.system_secrets.on_change_weak(&c, |h, _old, new| {
        if let Some(s) = new {
            h.queue.add(Key::of(s));
        }
    });
    let period = ctx.config.resync_period;
    tasks.push(tokio::spawn(async move {
        c.inf.system_secrets.wait_ready().await;
        let k = c.clone();
        let keys = move || k.inf.system_secrets.list().iter().map(|s| Key::of(&**s)).collect();
        let w = c.clone();
        let sync = move |key: Key| {
            let w = w.clone();
            async move { w.sync(&key).await }
        };
        tokio::join!(run_workers(c.queue.clone(), 1, sync), resync(c.queue.clone(), period, keys));
    }));
}

impl Cleaner {
    async fn sync(&self, key: &Key) -> Result<(), SyncError> {
        let Some(s) = self.inf.system_secrets.get_key(key) else { return Ok(()) };
        let obj = serde_json::to_value(&*s).map_err(|e| SyncError::from(e.to_string()))?;
        let Some(left) = time_left(&obj, jiff::Timestamp::now()) else { return Ok(()) };
        if !left.is_zero() {
            self.queue.add_after(key.clone(), left + Duration::from_millis(100));
            return Ok(());
        }
        let api: Api<Secret> = Api::namespaced(self.client.clone(), &key.namespace);
        let dp = DeleteParams {
            preconditions: Some(Preconditions { uid: s.metadata.uid.clone(), resource_version: None }),
            ..Default::default()
        };
        match api.delete(&key.name, &dp).await {
            Ok(_) => {
                tracing::info!(secret = %key.name, "deleted expired bootstrap token");
                Ok(())
            }
            Err(e) if crate::util::is_not_found(&e) || crate::util::is_conflict(&e) => Ok(()),
            Err(e) => Err(e.into()),
        }
    }
}
