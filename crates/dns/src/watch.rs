//! Feeding a [`ClusterView`] from the Kubernetes API with kube-rs watchers:
//! Services, EndpointSlices, Pods and Namespaces. Each watch's initial list (and
//! every relist) replaces that kind wholesale, so objects deleted while a watch
//! was down go away; after that, every event is applied as it arrives.

use crate::error::{Error, Result};
use crate::server::{ClusterDnsServer, DnsConfig};
use crate::view::ClusterView;
use futures::StreamExt;
use k8s_openapi::api::core::v1::{Namespace, Pod, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::api::Api;
use kube::runtime::{watcher, WatchStreamExt};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

/// How a kind goes into the view.
trait Feed: Clone + std::fmt::Debug + Send + Sync + 'static {
    const KIND: &'static str;
    fn apply(view: &ClusterView, obj: &Self);
    fn delete(view: &ClusterView, obj: &Self);
    fn replace(view: &ClusterView, objs: &[Self]);
}

impl Feed for Service {
    const KIND: &'static str = "Service";
    fn apply(view: &ClusterView, obj: &Self) {
        view.apply_service(obj)
    }
    fn delete(view: &ClusterView, obj: &Self) {
        view.delete_service(obj)
    }
    fn replace(view: &ClusterView, objs: &[Self]) {
        view.replace_services(objs)
    }
}

impl Feed for EndpointSlice {
    const KIND: &'static str = "EndpointSlice";
    fn apply(view: &ClusterView, obj: &Self) {
        view.apply_endpoint_slice(obj)
    }
    fn delete(view: &ClusterView, obj: &Self) {
        view.delete_endpoint_slice(obj)
    }
    fn replace(view: &ClusterView, objs: &[Self]) {
        view.replace_endpoint_slices(objs)
    }
}

impl Feed for Pod {
    const KIND: &'static str = "Pod";
    fn apply(view: &ClusterView, obj: &Self) {
        view.apply_pod(obj)
    }
    fn delete(view: &ClusterView, obj: &Self) {
        view.delete_pod(obj)
    }
    fn replace(view: &ClusterView, objs: &[Self]) {
        view.replace_pods(objs)
    }
}

impl Feed for Namespace {
    const KIND: &'static str = "Namespace";
    fn apply(view: &ClusterView, obj: &Self) {
        view.apply_namespace(obj)
    }
    fn delete(view: &ClusterView, obj: &Self) {
        view.delete_namespace(obj)
    }
    fn replace(view: &ClusterView, objs: &[Self]) {
        view.replace_namespaces(objs)
    }
}

const KINDS: usize = 4;

async fn feed<K>(api: Api<K>, view: ClusterView, synced: Arc<AtomicUsize>)
where
    K: Feed + kube::Resource + serde::de::DeserializeOwned,
    K::DynamicType: Default,
{
    let stream = watcher(api, watcher::Config::default()).default_backoff();
    let mut stream = std::pin::pin!(stream);
    let mut buffer: Vec<K> = Vec::new();
    let mut first = true;
    while let Some(event) = stream.next().await {
        match event {
            Ok(watcher::Event::Init) => buffer.clear(),
            Ok(watcher::Event::InitApply(obj)) => buffer.push(obj),
            Ok(watcher::Event::InitDone) => {
                K::replace(&view, &buffer);
                tracing::debug!(kind = K::KIND, count = buffer.len(), "cluster DNS view listed");
                buffer = Vec::new();
                if first {
                    first = false;
                    if synced.fetch_add(1, Ordering::AcqRel) + 1 == KINDS {
                        view.set_synced(true);
                        tracing::info!(stats = ?view.stats(), "cluster DNS view synced");
                    }
                }
            }
            Ok(watcher::Event::Apply(obj)) => K::apply(&view, &obj),
            Ok(watcher::Event::Delete(obj)) => K::delete(&view, &obj),
            Err(e) => tracing::warn!(kind = K::KIND, error = %e, "cluster DNS watch"),
        }
    }
}

/// Keep `view` in step with the cluster behind `client` (all namespaces). The
/// view answers SERVFAIL instead of NXDOMAIN until every kind has been listed once
/// (create it with [`ClusterView::new_unsynced`]). Runs until the task is dropped.
pub async fn watch(client: kube::Client, view: ClusterView) -> Result<()> {
    let synced = Arc::new(AtomicUsize::new(0));
    // A JoinSet aborts its tasks when dropped.
    let mut tasks = tokio::task::JoinSet::new();
    tasks.spawn(feed(Api::<Service>::all(client.clone()), view.clone(), synced.clone()));
    tasks.spawn(feed(Api::<EndpointSlice>::all(client.clone()), view.clone(), synced.clone()));
    tasks.spawn(feed(Api::<Pod>::all(client.clone()), view.clone(), synced.clone()));
    tasks.spawn(feed(Api::<Namespace>::all(client), view, synced));
    match tasks.join_next().await {
        Some(Err(e)) => Err(Error::Kube(format!("watch task failed: {e}"))),
        _ => Err(Error::Kube("watch ended".into())),
    }
}

/// The cluster DNS as a whole: an unsynced view, its watches, and the server.
/// Returns only if the watches end or the server cannot start.
pub async fn run(client: kube::Client, cfg: DnsConfig) -> Result<()> {
    let view = ClusterView::new_unsynced();
    let _server = ClusterDnsServer::start(cfg, view.clone()).await?;
    watch(client, view).await
}
