//! The proxy as an API client: reflectors on Services and EndpointSlices, coalesced
//! syncs, metrics (upstream `cmd/kube-proxy` + `pkg/proxy/config`).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::core::v1::{Node, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::runtime::{reflector, watcher, WatchStreamExt};
use kube::Api;
use tokio::sync::Notify;

use crate::healthcheck::{health_checks, HealthServer};
use crate::model::ANNOTATION_LAST_CHANGE_TRIGGER_TIME;
use crate::{metrics, setup_node, ModelCache, Proxier, ProxyConfig, ProxyError};

/// The node label topology aware routing compares with endpoints' zone hints.
const LABEL_TOPOLOGY_ZONE: &str = "topology.kubernetes.io/zone";

/// Wait after a failed sync before the (full) retry.
const RETRY_AFTER: Duration = Duration::from_secs(1);

/// Trigger times of EndpointSlice changes not yet programmed.
#[derive(Default)]
struct Triggers {
    /// Last trigger time seen per slice (namespace/name), so a relist does not count twice.
    seen: HashMap<(String, String), String>,
    pending: Vec<jiff::Timestamp>,
}

fn note_slice(triggers: &Mutex<Triggers>, slice: &EndpointSlice, started: jiff::Timestamp) {
    let Some(value) = slice.metadata.annotations.as_ref().and_then(|a| a.get(ANNOTATION_LAST_CHANGE_TRIGGER_TIME))
    else {
        return;
    };
    let key = (slice.metadata.namespace.clone().unwrap_or_default(), slice.metadata.name.clone().unwrap_or_default());
    let mut t = triggers.lock().unwrap_or_else(|e| e.into_inner());
    if t.seen.get(&key) == Some(value) {
        return;
    }
    t.seen.insert(key, value.clone());
    // Upstream only measures changes made after the proxy started.
    if let Ok(ts) = value.parse::<jiff::Timestamp>() {
        if ts > started {
            t.pending.push(ts);
        }
    }
}

/// Runs the proxy until the watches end: prepares the node ([`crate::NodeSetup`]), waits
/// for the first complete list of Services and EndpointSlices, syncs, then syncs again after
/// every change, waiting `cfg.min_sync_period` to coalesce bursts. A failed sync is retried
/// (as a full sync) after a second. After each sync the health check node ports
/// ([`HealthServer`]) follow the Services. Metrics: [`crate::metrics()`].
pub async fn run(client: kube::Client, cfg: ProxyConfig) -> Result<(), ProxyError> {
    let setup_cfg = cfg.clone();
    let report = tokio::task::spawn_blocking(move || setup_node(&setup_cfg, &setup_cfg.node_setup))
        .await
        .map_err(|e| ProxyError::Command(format!("node setup task: {e}")))??;
    tracing::info!(?report, "node prepared for the service proxy");

    let started = jiff::Timestamp::now();
    let notify = Arc::new(Notify::new());
    let triggers = Arc::new(Mutex::new(Triggers::default()));

    let (svc_store, svc_writer) = reflector::store::<Service>();
    let svc_stream =
        watcher(Api::<Service>::all(client.clone()), watcher::Config::default()).default_backoff().reflect(svc_writer);
    let n = notify.clone();
    let svc_task = tokio::spawn(async move {
        svc_stream
            .for_each(|ev| {
                if let Err(e) = &ev {
                    tracing::warn!(error = %e, "service watch");
                }
                n.notify_one();
                futures::future::ready(())
            })
            .await;
    });

    let (eps_store, eps_writer) = reflector::store::<EndpointSlice>();
    let eps_stream = watcher(Api::<EndpointSlice>::all(client.clone()), watcher::Config::default())
        .default_backoff()
        .reflect(eps_writer);
    let (n, tr) = (notify.clone(), triggers.clone());
    let eps_task = tokio::spawn(async move {
        eps_stream
            .for_each(|ev| {
                match &ev {
                    Ok(watcher::Event::Apply(s)) | Ok(watcher::Event::InitApply(s)) => note_slice(&tr, s, started),
                    Ok(_) => {}
                    Err(e) => tracing::warn!(error = %e, "endpointslice watch"),
                }
                n.notify_one();
                futures::future::ready(())
            })
            .await;
    });

    // The proxy's own Node: its zone label (upstream `NodeTopologyConfig`). Not fatal and
    // not waited for: without a Node (or its label) there is no topology filtering.
    let node_zone: Arc<Mutex<Option<String>>> = Arc::new(Mutex::new(None));
    let node_task = (!cfg.node_name.is_empty()).then(|| {
        let api = Api::<Node>::all(client.clone());
        let config = watcher::Config::default().fields(&format!("metadata.name={}", cfg.node_name));
        let (n, zone) = (notify.clone(), node_zone.clone());
        tokio::spawn(async move {
            watcher(api, config)
                .default_backoff()
                .for_each(|ev| {
                    match &ev {
                        Ok(watcher::Event::Apply(node)) | Ok(watcher::Event::InitApply(node)) => {
                            let z = node.metadata.labels.as_ref().and_then(|l| l.get(LABEL_TOPOLOGY_ZONE)).cloned();
                            let mut cur = zone.lock().unwrap_or_else(|e| e.into_inner());
                            if *cur != z {
                                tracing::info!(zone = ?z, "node topology zone");
                                *cur = z;
                                n.notify_one();
                            }
                        }
                        Ok(_) => {}
                        Err(e) => tracing::debug!(error = %e, "node watch"),
                    }
                    futures::future::ready(())
                })
                .await;
        })
    });
    let _abort_node_watch = node_task.map(AbortOnDrop);

    let ready = async {
        svc_store.wait_until_ready().await?;
        eps_store.wait_until_ready().await
    };
    if ready.await.is_err() {
        return Err(ProxyError::Command("watch stores dropped before the first list".into()));
    }

    // The proxier and the model cache (only Services whose objects changed are converted
    // again: from_objects for all 10,000 took longer than the partial sync itself) move
    // into the blocking sync task and back.
    let mut worker = Some((Proxier::new(cfg.clone()), ModelCache::new(&cfg.node_name)));
    let mut health = HealthServer::new(cfg.netns.clone());
    let mut health_retry: Option<AbortOnDrop> = None;
    loop {
        if svc_task.is_finished() || eps_task.is_finished() {
            return Err(ProxyError::Command("service or endpointslice watch ended".into()));
        }
        let pending = std::mem::take(&mut triggers.lock().unwrap_or_else(|e| e.into_inner()).pending);
        let services = svc_store.state();
        let slices = eps_store.state();
        let Some((mut p, mut c)) = worker.take() else {
            return Err(ProxyError::Command("proxier lost".into()));
        };
        let zone = node_zone.lock().unwrap_or_else(|e| e.into_inner()).clone();
        let (p, c, res, checks) = tokio::task::spawn_blocking(move || {
            p.set_node_zone(zone);
            let desired = c.update(&services, &slices);
            let r = p.sync(&desired);
            let checks = health_checks(&desired);
            (p, c, r, checks)
        })
        .await
        .map_err(|e| ProxyError::Command(format!("sync task: {e}")))?;
        worker = Some((p, c));
        // Upstream syncs the health server after the rules (`syncProxyRules`).
        health.set_proxy_healthy(res.is_ok());
        let errors = health.sync(&checks);
        for e in &errors {
            tracing::warn!(error = %e, "health check");
        }
        if !errors.is_empty() && health_retry.as_ref().is_none_or(|t| t.0.is_finished()) {
            // A port still held (e.g. by a listener closing a moment ago): try again soon.
            let n = notify.clone();
            health_retry = Some(AbortOnDrop(tokio::spawn(async move {
                tokio::time::sleep(RETRY_AFTER).await;
                n.notify_one();
            })));
        }
        match res {
            Ok(stats) => {
                let now = jiff::Timestamp::now();
                for t in pending {
                    let d = now.duration_since(t);
                    metrics::observe_network_programming(Duration::try_from(d).unwrap_or(Duration::ZERO));
                }
                tracing::debug!(?stats, "proxy rules synced");
            }
            Err(e) => {
                tracing::warn!(error = %e, "proxy sync failed; retrying with a full sync");
                triggers.lock().unwrap_or_else(|e| e.into_inner()).pending.extend(pending);
                tokio::time::sleep(RETRY_AFTER).await;
                continue;
            }
        }
        notify.notified().await;
        tokio::time::sleep(cfg.min_sync_period).await;
    }
}

/// Aborts a background task when the runner returns.
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}
