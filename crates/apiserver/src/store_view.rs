//! In-memory views kept from the store (the RBAC policy, the Node authorizer's
//! graph): one listing of a key prefix, then a watch from its revision, and a fresh
//! listing whenever the watch fails. Upstream gets the same from informers.

use futures::StreamExt;
use std::sync::Arc;
use store::{Event, KeyValue, ListOptions, Revision, Store};

/// How long to wait before re-listing after the watch failed.
const RETRY: std::time::Duration = std::time::Duration::from_secs(1);

/// A view that a listing replaces and watch events update.
pub trait StoreView: Send + Sync + 'static {
    /// Replaces the whole view with a listing.
    fn reset(&self, kvs: &[KeyValue]);
    /// Applies one change.
    fn apply(&self, ev: &Event);
}

/// Every key under `prefix` at one revision, all pages.
pub async fn list_all(store: &dyn Store, prefix: &str) -> Result<(Vec<KeyValue>, Revision), store::Error> {
    let mut kvs = Vec::new();
    let mut opts = ListOptions::default();
    loop {
        let page = store.list(prefix, opts.clone()).await?;
        let (more, revision) = (page.more, page.revision);
        kvs.extend(page.kvs);
        if !more {
            return Ok((kvs, revision));
        }
        opts = ListOptions {
            revision: Some(revision),
            start_after: kvs.last().map(|kv| kv.key.clone()),
            ..Default::default()
        };
    }
}

/// Fills `view` from `prefix` and keeps it in step until the task is aborted.
/// Returns once the first listing is in, so nothing is judged on an empty view.
pub async fn follow(
    store: Arc<dyn Store>,
    prefix: &'static str,
    what: &'static str,
    view: Arc<dyn StoreView>,
) -> Result<tokio::task::JoinHandle<()>, store::Error> {
    let (kvs, mut revision) = list_all(store.as_ref(), prefix).await?;
    view.reset(&kvs);
    Ok(tokio::spawn(async move {
        loop {
            match store.watch(prefix, revision).await {
                Ok(mut events) => {
                    while let Some(ev) = events.next().await {
                        match ev {
                            Ok(ev) => {
                                revision = ev.revision();
                                view.apply(&ev);
                            }
                            Err(e) => {
                                tracing::warn!(view = what, error = %e, "watch failed; relisting");
                                break;
                            }
                        }
                    }
                }
                Err(e) => tracing::warn!(view = what, error = %e, "watch could not start; relisting"),
            }
            tokio::time::sleep(RETRY).await;
            match list_all(store.as_ref(), prefix).await {
                Ok((kvs, r)) => {
                    view.reset(&kvs);
                    revision = r;
                }
                Err(e) => tracing::warn!(view = what, error = %e, "listing failed"),
            }
        }
    }))
}
