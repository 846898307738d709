//! EndpointSlice mirroring controller (upstream
//! `pkg/controller/endpointslicemirroring/`): a Service without a selector
//! whose Endpoints are written by hand gets EndpointSlices mirroring them
//! (one per address type and port set, up to 1000 endpoints), labelled
//! `endpointslice.kubernetes.io/managed-by: endpointslicemirroring-controller.k8s.io`
//! and owned by the Endpoints. Endpoints labelled
//! `endpointslice.kubernetes.io/skip-mirror: "true"` (like the API server's
//! own `kubernetes` Endpoints) are left alone.

use crate::endpoints::{repack_subsets, TRIGGER_TIME_ANNOTATION};
use crate::endpointslice::{label, slice_prefix, SliceTracker, LABEL_MANAGED_BY, LABEL_SERVICE_NAME};
use crate::events::{Recorder, WARNING};
use crate::informer::Key;
use crate::queue::{resync, run_workers, Queue};
use crate::{metrics, util, Ctx, SyncError};
use k8s_openapi::api::core::v1::Endpoints;
use k8s_openapi::api::discovery::v1::{Endpoint, EndpointConditions, EndpointPort, EndpointSlice};
use kube::api::{Api, DeleteParams, ObjectMeta, PostParams};
use std::collections::BTreeMap;
use std::sync::Arc;
use tokio::task::JoinHandle;

const COMPONENT: &str = "endpoint-slice-mirroring-controller";
pub const CONTROLLER_NAME: &str = "endpointslicemirroring-controller.k8s.io";
const LABEL_SKIP_MIRROR: &str = "endpointslice.kubernetes.io/skip-mirror";
const LEADER_ANNOTATION: &str = "control-plane.alpha.kubernetes.io/leader";
const LAST_APPLIED: &str = "kubectl.kubernetes.io/last-applied-configuration";
/// Upstream `--mirroring-max-endpoints-per-subset`.
const MAX_PER_SUBSET: usize = 1000;

pub fn start(ctx: &Ctx, tasks: &mut Vec<JoinHandle<()>>) {
    let (recorder, rec_task) = Recorder::new(ctx.client.clone(), COMPONENT);
    tasks.push(rec_task);
    let c = Arc::new(Mirror {
        client: ctx.client.clone(),
        inf: ctx.inf.clone(),
        queue: Queue::new(metrics::register("endpointslice_mirroring")),
        tracker: SliceTracker::default(),
        recorder,
    });
    ctx.inf.endpoints.on_change_weak(&c, |h, old, new| {
        if let Some(e) = new.or(old) {
            h.queue.add(Key::of(e));
        }
    });
    ctx.inf.services.on_change_weak(&c, |h, old, new| {
        if let Some(s) = new.or(old) {
            h.queue.add(Key::of(s));
        }
    });
    ctx.inf.slices.on_change_weak(&c, |h, old, new| {
        let Some(slice) = new.or(old) else { return };
        if label(slice, LABEL_MANAGED_BY) != Some(CONTROLLER_NAME) {
            return;
        }
        let Some(svc) = label(slice, LABEL_SERVICE_NAME) else { return };
        let key = Key::new(slice.metadata.namespace.as_deref().unwrap_or_default(), svc);
        h.tracker.observe(&key, slice, new.is_none());
        h.queue.add(key);
    });
    let (workers, period) = (ctx.config.workers, ctx.config.resync_period);
    tasks.push(tokio::spawn(async move {
        c.inf.wait_ready().await;
        tracing::debug!(controller = c.queue.name(), "caches synced, starting workers");
        let k = c.clone();
        let keys = move || k.inf.endpoints.list().iter().map(|e| Key::of(&**e)).collect();
        let s = c.clone();
        let sync = move |key: Key| {
            let s = s.clone();
            async move { s.sync(&key).await }
        };
        tokio::join!(run_workers(c.queue.clone(), workers, sync), resync(c.queue.clone(), period, keys));
    }));
}

struct Mirror {
    client: kube::Client,
    inf: Arc<crate::informer::Informers>,
    queue: Arc<Queue>,
    tracker: SliceTracker,
    recorder: Recorder,
}

/// `shouldMirror`.
fn should_mirror(ep: &Endpoints) -> bool {
    let skip = ep.metadata.labels.as_ref().and_then(|l| l.get(LABEL_SKIP_MIRROR)).is_some_and(|v| v == "true");
    let leader = ep.metadata.annotations.as_ref().is_some_and(|a| a.contains_key(LEADER_ANNOTATION));
    !skip && !leader
}

fn mirrored_annotations(ep: &Endpoints) -> BTreeMap<String, String> {
    ep.metadata
        .annotations
        .iter()
        .flatten()
        .filter(|(k, _)| k.as_str() != TRIGGER_TIME_ANNOTATION && k.as_str() != LAST_APPLIED)
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect()
}

/// `newEndpointSlice` (mirroring): the Endpoints' labels and annotations.
fn new_slice(ep: &Endpoints, ports: &[EndpointPort], address_type: &str, name: Option<String>) -> EndpointSlice {
    let ep_name = ep.metadata.name.clone().unwrap_or_default();
    let mut labels = ep.metadata.labels.clone().unwrap_or_default();
    labels.insert(LABEL_SERVICE_NAME.into(), ep_name.clone());
    labels.insert(LABEL_MANAGED_BY.into(), CONTROLLER_NAME.into());
    let annotations = mirrored_annotations(ep);
    EndpointSlice {
        metadata: ObjectMeta {
            generate_name: name.is_none().then(|| slice_prefix(&ep_name)),
            name,
            namespace: ep.metadata.namespace.clone(),
            labels: Some(labels),
            annotations: (!annotations.is_empty()).then_some(annotations),
            owner_references: Some(vec![util::new_controller_ref(&ep.metadata, "v1", "Endpoints")]),
            ..Default::default()
        },
        address_type: address_type.to_string(),
        endpoints: Vec::new(),
        ports: Some(ports.to_vec()),
    }
}

/// Desired endpoints by (address type, port set).
type Desired = BTreeMap<(String, String), (Vec<EndpointPort>, Vec<Endpoint>)>;

/// The slices an Endpoints object mirrors to, and the counts of invalid and
/// skipped addresses.
fn desired_slices(ep: &Endpoints) -> (Desired, usize, usize) {
    let mut desired: Desired = BTreeMap::new();
    let (mut invalid, mut skipped) = (0, 0);
    for subset in repack_subsets(ep.subsets.clone().unwrap_or_default()) {
        let ports: Vec<EndpointPort> = subset
            .ports
            .iter()
            .flatten()
            .map(|p| EndpointPort {
                name: Some(p.name.clone().unwrap_or_default()),
                port: Some(p.port),
                protocol: Some(p.protocol.clone().unwrap_or_else(|| "TCP".into())),
                app_protocol: p.app_protocol.clone(),
            })
            .collect();
        let pk = format!("{ports:?}");
        let addrs: Vec<(&k8s_openapi::api::core::v1::EndpointAddress, bool)> = subset
            .addresses
            .iter()
            .flatten()
            .map(|a| (a, true))
            .chain(subset.not_ready_addresses.iter().flatten().map(|a| (a, false)))
            .collect();
        let mut added = 0;
        for (a, ready) in &addrs {
            if added >= MAX_PER_SUBSET {
                break;
            }
            let Ok(ip) = a.ip.parse::<std::net::IpAddr>() else {
                invalid += 1;
                continue;
            };
            let address_type = if ip.is_ipv6() { "IPv6" } else { "IPv4" };
            let endpoint = Endpoint {
                addresses: vec![a.ip.clone()],
                conditions: Some(EndpointConditions { ready: Some(*ready), serving: None, terminating: None }),
                target_ref: a.target_ref.clone(),
                node_name: a.node_name.clone(),
                hostname: a.hostname.clone().filter(|h| !h.is_empty()),
                ..Default::default()
            };
            desired
                .entry((address_type.to_string(), pk.clone()))
                .or_insert_with(|| (ports.clone(), Vec::new()))
                .1
                .push(endpoint);
            added += 1;
        }
        skipped += addrs.len() - added;
    }
    (desired, invalid, skipped)
}

impl Mirror {
    fn mirrored(&self, key: &Key) -> Vec<EndpointSlice> {
        let mut v: Vec<EndpointSlice> = self
            .inf
            .slices
            .list_ns(&key.namespace)
            .into_iter()
            .filter(|s| {
                label(s, LABEL_SERVICE_NAME) == Some(key.name.as_str())
                    && label(s, LABEL_MANAGED_BY) == Some(CONTROLLER_NAME)
                    && s.metadata.deletion_timestamp.is_none()
            })
            .map(|s| (*s).clone())
            .collect();
        v.sort_by(|a, b| a.metadata.name.cmp(&b.metadata.name));
        v
    }

    async fn delete_mirrored(&self, key: &Key) -> Result<(), SyncError> {
        let api: Api<EndpointSlice> = Api::namespaced(self.client.clone(), &key.namespace);
        for s in self.mirrored(key) {
            let name = s.metadata.name.clone().unwrap_or_default();
            match api.delete(&name, &DeleteParams::default()).await {
                Ok(_) => self.tracker.expect_deletion(key, &name),
                Err(e) if util::is_not_found(&e) => {}
                Err(e) => return Err(e.into()),
            }
        }
        Ok(())
    }

    async fn sync(&self, key: &Key) -> Result<(), SyncError> {
        let Some(svc) = self.inf.services.get_key(key) else {
            self.tracker.delete_service(key);
            return self.delete_mirrored(key).await;
        };
        let spec = svc.spec.clone().unwrap_or_default();
        if spec.type_.as_deref() == Some("ExternalName") {
            return Ok(());
        }
        if spec.selector.is_some() {
            return self.delete_mirrored(key).await;
        }
        let Some(ep) = self.inf.endpoints.get_key(key) else { return self.delete_mirrored(key).await };
        if !should_mirror(&ep) {
            return self.delete_mirrored(key).await;
        }
        let existing = self.mirrored(key);
        let existing_arcs: Vec<Arc<EndpointSlice>> = existing.iter().cloned().map(Arc::new).collect();
        if self.tracker.stale(key, &existing_arcs) {
            return Err("EndpointSlice informer cache is out of date".into());
        }
        self.reconcile(key, &ep, existing).await
    }

    /// `reconcile` + `reconcileByPortMapping` + `finalize`.
    async fn reconcile(&self, key: &Key, ep: &Endpoints, existing: Vec<EndpointSlice>) -> Result<(), SyncError> {
        let (desired, invalid, skipped) = desired_slices(ep);
        if invalid > 0 {
            self.recorder.event(
                ep,
                WARNING,
                "InvalidIPAddress",
                format!("Skipped {invalid} invalid IP addresses when mirroring to EndpointSlices"),
            );
        }
        if skipped > invalid {
            self.recorder.event(
                ep,
                WARNING,
                "TooManyAddressesToMirror",
                format!(
                    "A max of {MAX_PER_SUBSET} addresses can be mirrored to EndpointSlices per Endpoints subset. {} addresses were skipped",
                    skipped - invalid
                ),
            );
        }
        let mut by_key: BTreeMap<(String, String), Vec<EndpointSlice>> = BTreeMap::new();
        for s in existing {
            let ports = s.ports.clone().unwrap_or_default();
            by_key.entry((s.address_type.clone(), format!("{ports:?}"))).or_default().push(s);
        }
        let (mut create, mut update, mut delete) = (Vec::new(), Vec::new(), Vec::new());
        for (k, (ports, endpoints)) in &desired {
            let existing = by_key.remove(k).unwrap_or_default();
            let mut want = new_slice(ep, ports, &k.0, existing.first().and_then(|s| s.metadata.name.clone()));
            want.endpoints = endpoints.clone();
            match existing.split_first() {
                None => create.push(want),
                Some((first, rest)) => {
                    delete.extend(rest.iter().cloned());
                    let same = first.endpoints == want.endpoints
                        && first.metadata.labels == want.metadata.labels
                        && first.metadata.annotations.clone().unwrap_or_default()
                            == want.metadata.annotations.clone().unwrap_or_default();
                    if !same {
                        want.metadata.resource_version = first.metadata.resource_version.clone();
                        update.push(want);
                    }
                }
            }
        }
        for (_, slices) in by_key {
            delete.extend(slices);
        }
        // Creates become updates of slices that would be deleted.
        while let (Some(_), Some(victim)) = (create.last(), delete.last()) {
            if victim.address_type != create[create.len() - 1].address_type {
                break;
            }
            let (Some(mut s), Some(victim)) = (create.pop(), delete.pop()) else { break };
            s.metadata.name = victim.metadata.name.clone();
            s.metadata.generate_name = None;
            s.metadata.resource_version = victim.metadata.resource_version.clone();
            update.push(s);
        }
        let api: Api<EndpointSlice> = Api::namespaced(self.client.clone(), &key.namespace);
        for s in create {
            match api.create(&PostParams::default(), &s).await {
                Ok(created) => self.tracker.written(key, &created),
                Err(e) if util::is_namespace_terminating(&e) => return Ok(()),
                Err(e) => return Err(e.into()),
            }
        }
        for s in update {
            let name = s.metadata.name.clone().unwrap_or_default();
            let updated = api.replace(&name, &PostParams::default(), &s).await?;
            self.tracker.written(key, &updated);
        }
        for s in delete {
            let name = s.metadata.name.clone().unwrap_or_default();
            match api.delete(&name, &DeleteParams::default()).await {
                Ok(_) => self.tracker.expect_deletion(key, &name),
                Err(e) if util::is_not_found(&e) => {}
                Err(e) => return Err(e.into()),
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn mirrors_addresses_by_family_and_ports() {
        let ep: Endpoints = serde_json::from_value(json!({
            "metadata": {"name": "ext", "namespace": "default", "uid": "u", "labels": {"a": "b"},
                         "annotations": {"endpoints.kubernetes.io/last-change-trigger-time": "x", "note": "y"}},
            "subsets": [
                {"addresses": [{"ip": "192.168.1.10"}, {"ip": "fd00::1"}], "notReadyAddresses": [{"ip": "192.168.1.11"}],
                 "ports": [{"name": "http", "port": 80, "protocol": "TCP"}]},
                {"addresses": [{"ip": "not-an-ip"}], "ports": [{"port": 53, "protocol": "UDP"}]}
            ]
        }))
        .expect("endpoints");
        assert!(should_mirror(&ep));
        let (desired, invalid, skipped) = desired_slices(&ep);
        assert_eq!((invalid, skipped), (1, 1));
        let v4: Vec<_> = desired.iter().filter(|(k, _)| k.0 == "IPv4").collect();
        assert_eq!(v4.len(), 1);
        let eps = &v4[0].1 .1;
        assert_eq!(eps.len(), 2);
        assert_eq!(eps.iter().filter(|e| e.conditions.as_ref().and_then(|c| c.ready) == Some(false)).count(), 1);
        assert!(desired.keys().any(|k| k.0 == "IPv6"));
        let s = new_slice(&ep, &[], "IPv4", None);
        let labels = s.metadata.labels.unwrap_or_default();
        assert_eq!(labels.get(LABEL_MANAGED_BY).map(String::as_str), Some(CONTROLLER_NAME));
        assert_eq!(labels.get("a").map(String::as_str), Some("b"));
        let ann = s.metadata.annotations.unwrap_or_default();
        assert!(ann.contains_key("note") && !ann.contains_key(TRIGGER_TIME_ANNOTATION));
        let mut skip = ep.clone();
        skip.metadata.labels = Some([(LABEL_SKIP_MIRROR.to_string(), "true".to_string())].into());
        assert!(!should_mirror(&skip));
    }
}
